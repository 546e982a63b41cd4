//! Which processes a process or cgroup fault hits, and how many of them
//! (the blast radius).

use crate::units::Percent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Selects processes by exactly one selector, then narrows them by `mode`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessTarget {
    /// A process id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// A file holding a process id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pidfile: Option<String>,
    /// Exact process name, as in /proc/PID/comm (at most 15 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Regular expression matched against the full command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// The children of this process id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children_of: Option<i32>,
    /// The children of the process whose id is in this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children_of_pidfile: Option<String>,
    /// Every process in this cgroup (a path under /sys/fs/cgroup, or relative to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Every process of this systemd unit (e.g. `nginx.service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
    /// The process started by the `setup` entry of this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<String>,

    /// Which of the matching processes to hit. Default `all`.
    #[serde(default)]
    pub mode: TargetMode,
    /// With `mode: count`: how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// With `mode: percent`: what share (rounded down, at least one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<Percent>,
    /// Seed for `one`, `count` and `percent`, so a run can be repeated exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Refuse to run when more processes than this would be hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_targets: Option<u32>,
    /// Matching no process is fine (the fault then does nothing). Default: it fails preflight.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_none: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetMode {
    /// One process chosen at random (seedable).
    One,
    /// Every matching process.
    #[default]
    All,
    /// `count` processes chosen at random.
    Count,
    /// `percent` of the processes chosen at random.
    Percent,
}

impl ProcessTarget {
    /// The selectors that are set, by field name (validation wants exactly one).
    pub fn selectors(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.pid.is_some() {
            v.push("pid");
        }
        if self.pidfile.is_some() {
            v.push("pidfile");
        }
        if self.name.is_some() {
            v.push("name");
        }
        if self.cmdline.is_some() {
            v.push("cmdline");
        }
        if self.children_of.is_some() {
            v.push("children_of");
        }
        if self.children_of_pidfile.is_some() {
            v.push("children_of_pidfile");
        }
        if self.cgroup.is_some() {
            v.push("cgroup");
        }
        if self.systemd_unit.is_some() {
            v.push("systemd_unit");
        }
        if self.setup.is_some() {
            v.push("setup");
        }
        v
    }

    /// A short description for plans and reports, e.g. `name=redis-server (all)`.
    pub fn describe(&self) -> String {
        let sel = if let Some(p) = self.pid {
            format!("pid={p}")
        } else if let Some(p) = &self.pidfile {
            format!("pidfile={p}")
        } else if let Some(n) = &self.name {
            format!("name={n}")
        } else if let Some(c) = &self.cmdline {
            format!("cmdline=~/{c}/")
        } else if let Some(p) = self.children_of {
            format!("children of pid {p}")
        } else if let Some(p) = &self.children_of_pidfile {
            format!("children of pidfile {p}")
        } else if let Some(c) = &self.cgroup {
            format!("cgroup={c}")
        } else if let Some(u) = &self.systemd_unit {
            format!("unit={u}")
        } else if let Some(s) = &self.setup {
            format!("setup={s}")
        } else {
            "(no selector)".to_string()
        };
        let mode = match self.mode {
            TargetMode::All => "all".to_string(),
            TargetMode::One => "one".to_string(),
            TargetMode::Count => format!("count {}", self.count.unwrap_or(1)),
            TargetMode::Percent => self.percent.map(|p| p.to_string()).unwrap_or_default(),
        };
        format!("{sel} ({mode})")
    }
}
