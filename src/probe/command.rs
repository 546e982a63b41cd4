//! `command` probe.

use super::{ProbeContext, Sample};
use crate::experiment::model::{CommandProbe, Expect};
use std::time::Duration;

pub struct CommandCheck {
    spec: CommandProbe,
}

impl CommandCheck {
    pub fn new(spec: &CommandProbe, _expect: &Expect, _ctx: &ProbeContext) -> Result<Self, String> {
        Ok(CommandCheck { spec: spec.clone() })
    }

    pub fn describe(&self) -> String {
        format!("{:?}", self.spec)
    }

    pub async fn sample(&self, _timeout: Duration) -> Sample {
        Sample::error(Duration::ZERO, "the command probe is not implemented yet")
    }
}
