//! Built-in stressors: `cpu_stress` and `memory_stress` (no stress-ng needed).

use crate::units::{Duration, Percent, Size};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CpuStressSpec {
    /// Number of workers (default: one per CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<u32>,
    /// Load each worker holds on its CPU (default 100%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<Percent>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryStressSpec {
    /// How much to allocate and touch...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
    /// ...or a share of the memory available when the fault starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<Percent>,
    /// Grow to the size over this long instead of at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<Duration>,
}

pub fn build_cpu_stress(_s: &CpuStressSpec) -> Box<dyn super::FaultImpl> {
    Box::new(super::NotYetSupported {
        kind: "cpu_stress",
        target: "this host".into(),
    })
}
pub fn build_memory_stress(_s: &MemoryStressSpec) -> Box<dyn super::FaultImpl> {
    Box::new(super::NotYetSupported {
        kind: "memory_stress",
        target: "this host".into(),
    })
}

/// Entry point of `faultline stress-worker ...` (a hidden subcommand): the
/// body of one built-in stressor process. Returns the exit code.
pub fn worker_main(args: &[String]) -> i32 {
    eprintln!("faultline stress-worker: not yet supported ({args:?})");
    crate::exit::PRECONDITION
}
