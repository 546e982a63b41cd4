//! cgroup limits on target processes: `cpu_limit`, `memory_limit`, `io_limit`.

use crate::fault::target::ProcessTarget;
use crate::units::Size;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CpuLimitSpec {
    pub target: ProcessTarget,
    /// CPU quota in CPUs, e.g. `0.2` (a fifth of one CPU) or `1.5`.
    pub cpus: f64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemoryLimitKind {
    /// memory.max (v2) / memory.limit_in_bytes (v1): the OOM killer acts past it.
    #[default]
    Hard,
    /// memory.high (v2) / memory.soft_limit_in_bytes (v1): reclaim pressure, no kill.
    Soft,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryLimitSpec {
    pub target: ProcessTarget,
    pub limit: Size,
    #[serde(default)]
    pub kind: MemoryLimitKind,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IoLimitSpec {
    pub target: ProcessTarget,
    /// Block device as `MAJOR:MINOR` or a path like `/dev/vda`.
    pub device: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_bytes_per_sec: Option<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_bytes_per_sec: Option<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_iops: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_iops: Option<u64>,
}

pub fn build_cpu_limit(s: &CpuLimitSpec) -> Box<dyn super::FaultImpl> {
    Box::new(super::NotYetSupported {
        kind: "cpu_limit",
        target: s.target.describe(),
    })
}
pub fn build_memory_limit(s: &MemoryLimitSpec) -> Box<dyn super::FaultImpl> {
    Box::new(super::NotYetSupported {
        kind: "memory_limit",
        target: s.target.describe(),
    })
}
pub fn build_io_limit(s: &IoLimitSpec) -> Box<dyn super::FaultImpl> {
    Box::new(super::NotYetSupported {
        kind: "io_limit",
        target: s.target.describe(),
    })
}
