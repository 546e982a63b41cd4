//! Process faults: `process_kill` (once or as a crash loop) and `process_pause`.

use crate::fault::target::ProcessTarget;
use crate::units::{Duration, Signal};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessKillSpec {
    pub target: ProcessTarget,
    /// Signal to send (default SIGKILL).
    #[serde(default)]
    pub signal: Signal,
    /// Send it again every this long for the step's duration (a crash loop),
    /// re-selecting targets each time. Without it the signal is sent once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Duration>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessPauseSpec {
    pub target: ProcessTarget,
}

pub fn build_kill(s: &ProcessKillSpec) -> Box<dyn super::FaultImpl> {
    Box::new(super::NotYetSupported {
        kind: "process_kill",
        target: s.target.describe(),
    })
}

pub fn build_pause(s: &ProcessPauseSpec) -> Box<dyn super::FaultImpl> {
    Box::new(super::NotYetSupported {
        kind: "process_pause",
        target: s.target.describe(),
    })
}
