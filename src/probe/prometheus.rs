//! `prometheus` probe.

use super::{ProbeContext, Sample};
use crate::experiment::model::{Expect, PrometheusProbe};
use std::time::Duration;

pub struct PrometheusCheck {
    spec: PrometheusProbe,
}

impl PrometheusCheck {
    pub fn new(
        spec: &PrometheusProbe,
        _expect: &Expect,
        _timeout: Duration,
        _ctx: &ProbeContext,
    ) -> Result<Self, String> {
        Ok(PrometheusCheck { spec: spec.clone() })
    }

    pub fn describe(&self) -> String {
        format!("{:?}", self.spec)
    }

    pub async fn sample(&self) -> Sample {
        Sample::error(
            Duration::ZERO,
            "the prometheus probe is not implemented yet",
        )
    }
}
