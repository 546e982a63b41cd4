//! `http` probe.

use super::{ProbeContext, Sample};
use crate::experiment::model::{Expect, HttpProbe};
use std::time::Duration;

pub struct HttpCheck {
    spec: HttpProbe,
}

impl HttpCheck {
    pub fn new(
        spec: &HttpProbe,
        _expect: &Expect,
        _timeout: Duration,
        _ctx: &ProbeContext,
    ) -> Result<Self, String> {
        Ok(HttpCheck { spec: spec.clone() })
    }

    pub fn describe(&self) -> String {
        format!("{:?}", self.spec)
    }

    pub async fn sample(&self) -> Sample {
        Sample::error(Duration::ZERO, "the http probe is not implemented yet")
    }
}
