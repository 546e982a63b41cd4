//! `process` probe.

use super::Sample;
use crate::experiment::model::{Expect, ProcessProbe};
use std::time::Duration;

pub struct ProcessCheck {
    spec: ProcessProbe,
}

impl ProcessCheck {
    pub fn new(spec: &ProcessProbe, _expect: &Expect) -> Result<Self, String> {
        Ok(ProcessCheck { spec: spec.clone() })
    }

    pub fn describe(&self) -> String {
        format!("{:?}", self.spec)
    }

    pub async fn sample(&self) -> Sample {
        Sample::error(Duration::ZERO, "the process probe is not implemented yet")
    }
}
