//! `disk_fill`: fill a filesystem to a level, never past a safety reserve.

use crate::units::{Percent, Size};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskFillSpec {
    /// A directory on the filesystem to fill; the fault's files are created here.
    pub path: String,
    /// Fill the filesystem until it is this full...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_to: Option<Percent>,
    /// ...or write this much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
    /// Always leave at least this much free (default 64MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve: Option<Size>,
}

pub fn build_disk_fill(s: &DiskFillSpec) -> Box<dyn super::FaultImpl> {
    Box::new(super::NotYetSupported {
        kind: "disk_fill",
        target: s.path.clone(),
    })
}
