//! `tcp` probe.

use super::Sample;
use crate::experiment::model::{Expect, TcpProbe};
use std::time::Duration;

pub struct TcpCheck {
    spec: TcpProbe,
}

impl TcpCheck {
    pub fn new(spec: &TcpProbe, _expect: &Expect) -> Result<Self, String> {
        Ok(TcpCheck { spec: spec.clone() })
    }

    pub fn describe(&self) -> String {
        format!("{:?}", self.spec)
    }

    pub async fn sample(&self) -> Sample {
        Sample::error(Duration::ZERO, "the tcp probe is not implemented yet")
    }
}
