//! cgroup limits on target processes: `cpu_limit`, `memory_limit`, `io_limit`.

use super::{FaultContext, FaultError, FaultImpl, PlannedOp, UndoLog};
use crate::fault::container::{ContainerFields, ContainerInfo};
use crate::fault::target::ProcessTarget;
use crate::journal::undo::UndoOp;
use crate::sys::cgroup::{Cgroup, CgroupError, Cgroups, Hierarchy, Version};
use crate::sys::proc;
use crate::units::Size;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CpuLimitSpec {
    pub target: ProcessTarget,
    /// CPU quota in CPUs, e.g. `0.2` (a fifth of one CPU) or `1.5`.
    pub cpus: f64,
    /// Also limit the targets' descendants (threads always go with their
    /// process), found when the fault starts and on every check while it is
    /// active. `false`: only the selected processes (their children forked
    /// later still inherit the cgroup). Default `true`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub include_descendants: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
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
    /// Also limit the targets' descendants (threads always go with their
    /// process), found when the fault starts and on every check while it is
    /// active. `false`: only the selected processes (their children forked
    /// later still inherit the cgroup). Default `true`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub include_descendants: bool,
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
    /// Also limit the targets' descendants (threads always go with their
    /// process), found when the fault starts and on every check while it is
    /// active. `false`: only the selected processes (their children forked
    /// later still inherit the cgroup). Default `true`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub include_descendants: bool,
}

/// The CFS period used for `cpu_limit` quotas (100 ms, the kernel default).
pub const CPU_PERIOD_US: u64 = 100_000;

pub fn build_cpu_limit(s: &CpuLimitSpec) -> Box<dyn FaultImpl> {
    if s.target.container_selector().is_some() {
        return Box::new(ContainerLimit::new(
            "cpu_limit",
            s.target.clone(),
            Limit::Cpu { cpus: s.cpus },
        ));
    }
    Box::new(
        CgroupLimit::new("cpu_limit", s.target.clone(), Limit::Cpu { cpus: s.cpus })
            .descendants(s.include_descendants),
    )
}
pub fn build_memory_limit(s: &MemoryLimitSpec) -> Box<dyn FaultImpl> {
    if s.target.container_selector().is_some() {
        return Box::new(ContainerLimit::new(
            "memory_limit",
            s.target.clone(),
            Limit::Memory {
                bytes: s.limit.bytes(),
                kind: s.kind,
            },
        ));
    }
    Box::new(
        CgroupLimit::new(
            "memory_limit",
            s.target.clone(),
            Limit::Memory {
                bytes: s.limit.bytes(),
                kind: s.kind,
            },
        )
        .descendants(s.include_descendants),
    )
}
pub fn build_io_limit(s: &IoLimitSpec) -> Box<dyn FaultImpl> {
    if s.target.container_selector().is_some() {
        return Box::new(super::NotYetSupported {
            kind: "io_limit on a container",
            target: s.target.describe(),
        });
    }
    Box::new(
        CgroupLimit::new(
            "io_limit",
            s.target.clone(),
            Limit::Io {
                device: s.device.clone(),
                read_bps: s.read_bytes_per_sec.map(|z| z.bytes()),
                write_bps: s.write_bytes_per_sec.map(|z| z.bytes()),
                read_iops: s.read_iops,
                write_iops: s.write_iops,
            },
        )
        .descendants(s.include_descendants),
    )
}

/// What a cgroup fault limits.
#[derive(Clone, Debug)]
enum Limit {
    Cpu {
        cpus: f64,
    },
    Memory {
        bytes: u64,
        kind: MemoryLimitKind,
    },
    Io {
        device: String,
        read_bps: Option<u64>,
        write_bps: Option<u64>,
        read_iops: Option<u64>,
        write_iops: Option<u64>,
    },
}

impl Limit {
    /// The controller's name in the hierarchy that holds it.
    fn controller(&self, v: Version) -> &'static str {
        match (self, v) {
            (Limit::Cpu { .. }, _) => "cpu",
            (Limit::Memory { .. }, _) => "memory",
            (Limit::Io { .. }, Version::V1) => "blkio",
            (Limit::Io { .. }, Version::V2) => "io",
        }
    }

    /// The hierarchy holding this limit's controller (v1 name first).
    fn hierarchy<'a>(&self, layout: &'a Cgroups) -> Option<&'a Hierarchy> {
        match self {
            Limit::Io { .. } => layout
                .hierarchy_for("blkio")
                .or_else(|| layout.hierarchy_for("io")),
            _ => layout.hierarchy_for(self.controller(Version::V1)),
        }
    }

    /// The control files to write in the run's cgroup, in order.
    fn settings(&self, v: Version, dev: Option<(u64, u64)>) -> Vec<(String, String)> {
        match self {
            Limit::Cpu { cpus } => {
                let quota = cpu_quota_us(*cpus);
                match v {
                    Version::V1 => vec![
                        ("cpu.cfs_period_us".into(), CPU_PERIOD_US.to_string()),
                        ("cpu.cfs_quota_us".into(), quota.to_string()),
                    ],
                    Version::V2 => vec![("cpu.max".into(), format!("{quota} {CPU_PERIOD_US}"))],
                }
            }
            Limit::Memory { bytes, kind } => {
                let file = match (v, kind) {
                    (Version::V1, MemoryLimitKind::Hard) => "memory.limit_in_bytes",
                    (Version::V1, MemoryLimitKind::Soft) => "memory.soft_limit_in_bytes",
                    (Version::V2, MemoryLimitKind::Hard) => "memory.max",
                    (Version::V2, MemoryLimitKind::Soft) => "memory.high",
                };
                vec![(file.into(), bytes.to_string())]
            }
            Limit::Io {
                read_bps,
                write_bps,
                read_iops,
                write_iops,
                ..
            } => {
                let (maj, min) = dev.unwrap_or((0, 0));
                let all = [
                    ("read_bps", "rbps", read_bps),
                    ("write_bps", "wbps", write_bps),
                    ("read_iops", "riops", read_iops),
                    ("write_iops", "wiops", write_iops),
                ];
                match v {
                    Version::V1 => all
                        .iter()
                        .filter_map(|(f, _, val)| {
                            val.map(|x| {
                                (
                                    format!("blkio.throttle.{f}_device"),
                                    format!("{maj}:{min} {x}"),
                                )
                            })
                        })
                        .collect(),
                    Version::V2 => {
                        let keys: Vec<String> = all
                            .iter()
                            .filter_map(|(_, k, val)| val.map(|x| format!("{k}={x}")))
                            .collect();
                        vec![("io.max".into(), format!("{maj}:{min} {}", keys.join(" ")))]
                    }
                }
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Limit::Cpu { cpus } => format!("{cpus} CPUs"),
            Limit::Memory { bytes, kind } => format!(
                "{} memory limit of {}",
                match kind {
                    MemoryLimitKind::Hard => "hard",
                    MemoryLimitKind::Soft => "soft",
                },
                Size(*bytes)
            ),
            Limit::Io { device, .. } => format!("I/O limit on {device}"),
        }
    }
}

/// The CFS quota for `cpus` CPUs per [`CPU_PERIOD_US`] (the kernel's minimum is 1 ms).
pub fn cpu_quota_us(cpus: f64) -> u64 {
    ((cpus * CPU_PERIOD_US as f64).round() as u64).max(1000)
}

/// Does a control file's content show the value we wrote? The kernel rounds
/// memory limits down to whole pages and lists throttles per device.
fn setting_matches(file: &str, wanted: &str, actual: &str) -> bool {
    let actual = actual.trim();
    if file.starts_with("memory.") {
        let (Ok(w), Ok(a)) = (wanted.parse::<u64>(), actual.parse::<u64>()) else {
            return false;
        };
        return a <= w && w - a < 64 * 1024;
    }
    if file.starts_with("blkio.throttle.") {
        return actual
            .lines()
            .any(|l| l.split_whitespace().eq(wanted.split_whitespace()));
    }
    if file == "io.max" {
        let mut w = wanted.split_whitespace();
        let dev = w.next().unwrap_or_default();
        let keys: Vec<&str> = w.collect();
        return actual.lines().any(|l| {
            let mut it = l.split_whitespace();
            it.next() == Some(dev) && {
                let have: Vec<&str> = it.collect();
                keys.iter().all(|k| have.contains(k))
            }
        });
    }
    actual.split_whitespace().eq(wanted.split_whitespace())
}

/// `MAJ:MIN`, or a block device path such as `/dev/vda`; a whole disk, since
/// the kernel throttles per disk (a partition is refused with its disk's name).
fn resolve_device(dev: &str) -> Result<(u64, u64), FaultError> {
    let (maj, min) = device_numbers(dev)?;
    let sys = PathBuf::from(format!("/sys/dev/block/{maj}:{min}"));
    if sys.join("partition").exists() {
        let disk = std::fs::canonicalize(&sys)
            .ok()
            .and_then(|p| Some(p.parent()?.file_name()?.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "its disk".into());
        return Err(FaultError::precondition(format!(
            "io_limit.device `{dev}` is a partition; cgroup I/O limits apply to whole disks: give /dev/{disk}"
        )));
    }
    Ok((maj, min))
}

fn device_numbers(dev: &str) -> Result<(u64, u64), FaultError> {
    if let Some((a, b)) = dev.split_once(':') {
        if let (Ok(a), Ok(b)) = (a.trim().parse(), b.trim().parse()) {
            return Ok((a, b));
        }
    }
    let st = nix::sys::stat::stat(dev).map_err(|e| {
        FaultError::precondition(format!(
            "io_limit.device `{dev}`: {e}; give a block device path like /dev/vda or MAJOR:MINOR (see `lsblk`)"
        ))
    })?;
    if st.st_mode & libc::S_IFMT != libc::S_IFBLK {
        return Err(FaultError::precondition(format!(
            "io_limit.device `{dev}` is not a block device; give a disk such as /dev/vda or MAJOR:MINOR (see `lsblk`)"
        )));
    }
    Ok((
        nix::sys::stat::major(st.st_rdev),
        nix::sys::stat::minor(st.st_rdev),
    ))
}

/// Numbers for run cgroup names, unique within this process.
static NEXT_SEQ: AtomicU32 = AtomicU32::new(1);

/// A process that will be (or was) moved.
#[derive(Clone, Debug)]
struct Member {
    pid: i32,
    start_time: u64,
    comm: String,
    original: Cgroup,
}

/// One cgroup the run creates and the processes that go into it.
#[derive(Clone, Debug)]
struct Group {
    /// The run's cgroup.
    cgroup: Cgroup,
    /// v2 only: cgroups whose `cgroup.subtree_control` gets `+controller`, top-down.
    enable: Vec<Cgroup>,
    members: Vec<Member>,
}

/// Everything `inject` will do, computed from the host as it is now.
#[derive(Clone, Debug)]
struct Prepared {
    hierarchy: Hierarchy,
    controller: &'static str,
    device: Option<(u64, u64)>,
    groups: Vec<Group>,
}

/// `cpu_limit`, `memory_limit` and `io_limit`: move the targets into a cgroup
/// the run creates, with the limit set on it.
pub struct CgroupLimit {
    kind: &'static str,
    target: ProcessTarget,
    limit: Limit,
    seq: u32,
    /// Set by `inject`: what was actually done.
    done: Option<Prepared>,
    /// Pids moved, including children found later in the run's cgroups.
    moved: BTreeSet<(i32, u64)>,
    started: Option<Instant>,
    ticks_at_start: BTreeMap<i32, u64>,
    observations: serde_json::Map<String, serde_json::Value>,
    /// Also move the targets' descendants.
    include_descendants: bool,
    /// Whether the last health check found the fault in place: descendants
    /// are adopted only then (a removed fault is never re-applied).
    in_place: bool,
}

impl CgroupLimit {
    fn new(kind: &'static str, target: ProcessTarget, limit: Limit) -> Self {
        CgroupLimit {
            kind,
            target,
            limit,
            seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
            done: None,
            moved: BTreeSet::new(),
            started: None,
            ticks_at_start: BTreeMap::new(),
            observations: serde_json::Map::new(),
            include_descendants: true,
            in_place: true,
        }
    }

    fn descendants(mut self, yes: bool) -> Self {
        self.include_descendants = yes;
        self
    }

    /// `faultline-<run>-<kind>-<n>[-<group>]`.
    fn cgroup_name(&self, ctx: &FaultContext, group: usize, groups: usize) -> String {
        let run = ctx.run_slug();
        let mut name = format!("faultline-{run}-{}-{}", self.kind, self.seq);
        if groups > 1 {
            name.push_str(&format!("-{}", group + 1));
        }
        name
    }

    /// Resolves targets and computes the cgroups to create. Read-only.
    fn prepare(&self, ctx: &FaultContext) -> Result<Prepared, FaultError> {
        let layout = Cgroups::detect().map_err(|e| {
            FaultError::precondition(format!("{}: cannot read the cgroup layout: {e}", self.kind))
        })?;
        let Some(h) = self.limit.hierarchy(&layout).cloned() else {
            let ctl = self.limit.controller(Version::V2);
            let v1 = self.limit.controller(Version::V1);
            return Err(FaultError::precondition(format!(
                "{}: the `{v1}` cgroup controller is not available: no cgroup v1 hierarchy has it and the cgroup v2 root{} does not list `{ctl}` in cgroup.controllers; enable it in the kernel (CONFIG_CGROUP_*) or mount it",
                self.kind,
                layout
                    .unified()
                    .map(|u| format!(" ({})", u.mount_point.display()))
                    .unwrap_or_default()
            )));
        };
        let controller = self.limit.controller(h.version);
        let device = match &self.limit {
            Limit::Io { device, .. } => Some(resolve_device(device)?),
            _ => None,
        };
        let mut procs = resolve_targets(&self.target, ctx)?;
        if self.include_descendants {
            let all = proc::list();
            let chosen: BTreeSet<i32> = procs.iter().map(|p| p.pid).collect();
            procs.extend(
                descendants_of(&chosen, &all)
                    .into_iter()
                    .filter(|p| !ctx.protected.contains(p.pid)),
            );
        }
        let mut members = Vec::new();
        for p in procs {
            if !proc::is_same(p.pid, p.start_time) {
                continue; // exited since it was listed
            }
            let original = layout.cgroup_of(p.pid, &h).map_err(|e| {
                FaultError::precondition(format!(
                    "{}: cannot find the {} cgroup of pid {} ({}): {e}",
                    self.kind, controller, p.pid, p.comm
                ))
            })?;
            members.push(Member {
                pid: p.pid,
                start_time: p.start_time,
                comm: p.comm,
                original,
            });
        }
        // Where each member's run cgroup goes (its parent), and what must be enabled.
        let mut by_parent: BTreeMap<PathBuf, (Cgroup, Vec<Cgroup>, Vec<Member>)> = BTreeMap::new();
        for m in members {
            let (parent, enable) = match h.version {
                // v1 has no "no internal processes" rule: nest the run's cgroup
                // under the process's own, so the limits it had stay in force.
                Version::V1 => {
                    let probe = self.limit.settings(Version::V1, device);
                    if let Some((f, _)) = probe.first() {
                        if !m.original.has_file(f) {
                            return Err(FaultError::precondition(format!(
                                "{}: {} has no {f}; this kernel lacks the feature (for cpu: CONFIG_CFS_BANDWIDTH, for blkio: CONFIG_BLK_DEV_THROTTLING)",
                                self.kind,
                                m.original.dir.display()
                            )));
                        }
                    }
                    (m.original.clone(), Vec::new())
                }
                Version::V2 => v2_placement(&m.original, controller).map_err(|e| {
                    FaultError::precondition(format!(
                        "{}: cannot place pid {} ({}) from {} into a cgroup with the `{controller}` controller: {e}",
                        self.kind,
                        m.pid,
                        m.comm,
                        m.original.dir.display()
                    ))
                })?,
            };
            by_parent
                .entry(parent.dir.clone())
                .or_insert_with(|| (parent, enable, Vec::new()))
                .2
                .push(m);
        }
        let n = by_parent.len();
        let mut groups = Vec::new();
        for (i, (_, (parent, enable, members))) in by_parent.into_iter().enumerate() {
            let mut cgroup = parent.child(&self.cgroup_name(ctx, i, n));
            // Never adopt a cgroup someone else made: pick a free name.
            let mut k = 1;
            while cgroup.exists() {
                k += 1;
                cgroup = parent.child(&format!("{}.{k}", self.cgroup_name(ctx, i, n)));
            }
            groups.push(Group {
                cgroup,
                enable,
                members,
            });
        }
        Ok(Prepared {
            hierarchy: h,
            controller,
            device,
            groups,
        })
    }

    fn undo_target(&self) -> String {
        format!("{} {}", self.kind, self.target.describe())
    }

    /// Reads the cgroups' counters and the targets' CPU use into observations.
    fn measure(&mut self) {
        let Some(done) = &self.done else { return };
        let mut obs = serde_json::Map::new();
        obs.insert("hierarchy".into(), done.hierarchy.describe().into());
        obs.insert(
            "cgroups".into(),
            done.groups
                .iter()
                .map(|g| g.cgroup.dir.display().to_string())
                .collect::<Vec<_>>()
                .into(),
        );
        let targets: Vec<serde_json::Value> = done
            .groups
            .iter()
            .flat_map(|g| g.members.iter())
            .map(|m| {
                serde_json::json!({
                    "pid": m.pid,
                    "comm": m.comm,
                    "from": m.original.dir.display().to_string(),
                    "alive": proc::is_same(m.pid, m.start_time),
                })
            })
            .collect();
        obs.insert("targets".into(), targets.into());
        if let Some(t0) = self.started {
            let secs = t0.elapsed().as_secs_f64();
            let hz = super::stress::clock_ticks_per_sec() as f64;
            let mut used = 0u64;
            for (pid, start) in &self.ticks_at_start {
                if let Some(now) = super::stress::cpu_ticks(*pid) {
                    used += now.saturating_sub(*start);
                }
            }
            obs.insert("active_seconds".into(), round3(secs).into());
            if secs > 0.0 {
                obs.insert(
                    "target_cpus_used".into(),
                    round3(used as f64 / hz / secs).into(),
                );
            }
        }
        match &self.limit {
            Limit::Cpu { cpus } => {
                obs.insert("limit_cpus".into(), (*cpus).into());
                let (mut periods, mut throttled) = (0, 0);
                for g in &done.groups {
                    if let Ok(st) = g.cgroup.keyed("cpu.stat") {
                        periods += st.get("nr_periods").copied().unwrap_or(0);
                        throttled += st.get("nr_throttled").copied().unwrap_or(0);
                    }
                }
                obs.insert("nr_periods".into(), periods.into());
                obs.insert("nr_throttled".into(), throttled.into());
            }
            Limit::Memory { bytes, .. } => {
                obs.insert("limit_bytes".into(), (*bytes).into());
                let (mut oom_kills, mut ooms, mut limit_hits, mut peak) = (0, 0, 0, 0u64);
                let mut under_oom = false;
                for g in &done.groups {
                    match done.hierarchy.version {
                        Version::V1 => {
                            if let Ok(oc) = g.cgroup.keyed("memory.oom_control") {
                                oom_kills += oc.get("oom_kill").copied().unwrap_or(0);
                                under_oom |= oc.get("under_oom").copied().unwrap_or(0) > 0;
                            }
                            limit_hits += g.cgroup.read_u64("memory.failcnt").unwrap_or(0);
                            peak = peak
                                .max(g.cgroup.read_u64("memory.max_usage_in_bytes").unwrap_or(0));
                        }
                        Version::V2 => {
                            if let Ok(ev) = g.cgroup.keyed("memory.events") {
                                oom_kills += ev.get("oom_kill").copied().unwrap_or(0);
                                ooms += ev.get("oom").copied().unwrap_or(0);
                                limit_hits += ev.get("max").copied().unwrap_or(0)
                                    + ev.get("high").copied().unwrap_or(0);
                            }
                            peak = peak.max(g.cgroup.read_u64("memory.peak").unwrap_or(0));
                        }
                    }
                }
                obs.insert("oom_kills".into(), oom_kills.into());
                if done.hierarchy.version == Version::V2 {
                    obs.insert("oom_events".into(), ooms.into());
                } else {
                    obs.insert("under_oom".into(), under_oom.into());
                }
                obs.insert("limit_hits".into(), limit_hits.into());
                if peak > 0 {
                    obs.insert("peak_usage_bytes".into(), peak.into());
                }
            }
            Limit::Io { device, .. } => {
                obs.insert("device".into(), device.clone().into());
                let stat_file = match done.hierarchy.version {
                    Version::V1 => "blkio.throttle.io_service_bytes",
                    Version::V2 => "io.stat",
                };
                let stats: Vec<String> = done
                    .groups
                    .iter()
                    .filter_map(|g| g.cgroup.read(stat_file).ok())
                    .map(|s| s.trim().to_string())
                    .collect();
                obs.insert(stat_file.into(), stats.into());
            }
        }
        self.observations = obs;
    }

    fn check_in_place(&self, done: &Prepared) -> super::FaultHealth {
        use super::FaultHealth;
        let Ok(layout) = Cgroups::detect() else {
            return FaultHealth::present("cgroup layout unreadable; not checked");
        };
        let mut procs = 0;
        for g in &done.groups {
            if !g.cgroup.exists() {
                return FaultHealth::missing(format!("cgroup {} removed", g.cgroup.dir.display()));
            }
            for (f, v) in self.limit.settings(done.hierarchy.version, done.device) {
                match g.cgroup.read(&f) {
                    Ok(actual) if setting_matches(&f, &v, &actual) => {}
                    Ok(actual) => {
                        return FaultHealth::missing(format!(
                            "{} reads `{}`, not `{v}`",
                            g.cgroup.file(&f).display(),
                            crate::sys::text::escape(actual.trim()).into_owned()
                        ))
                    }
                    Err(e) => return FaultHealth::missing(format!("{e}")),
                }
            }
            let tasks: Option<BTreeSet<i32>> = match done.hierarchy.version {
                Version::V1 => g.cgroup.read("tasks").ok().map(|t| {
                    t.split_whitespace()
                        .filter_map(|x| x.parse().ok())
                        .collect()
                }),
                Version::V2 => None,
            };
            for m in &g.members {
                if !proc::is_same(m.pid, m.start_time) {
                    continue;
                }
                match layout.cgroup_of(m.pid, &done.hierarchy) {
                    Ok(now) if now == g.cgroup => {}
                    Ok(now) => {
                        return FaultHealth::missing(format!(
                            "pid {} ({}) was moved out, to {}",
                            m.pid,
                            crate::sys::text::escape(&m.comm).into_owned(),
                            now.dir.display()
                        ))
                    }
                    Err(_) => continue, // exited meanwhile
                }
                procs += 1;
                if let Some(tasks) = &tasks {
                    let dir = proc::proc_root().join(m.pid.to_string()).join("task");
                    let tids = std::fs::read_dir(dir).into_iter().flatten().flatten();
                    for tid in tids.filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()) {
                        if !tasks.contains(&tid) && proc::alive(tid) {
                            return FaultHealth::missing(format!(
                                "thread {tid} of pid {} ({}) was moved out of {}",
                                m.pid,
                                crate::sys::text::escape(&m.comm).into_owned(),
                                g.cgroup.dir.display()
                            ));
                        }
                    }
                }
            }
        }
        FaultHealth::present(format!(
            "{}; {procs} target process(es) in place",
            self.limit.describe()
        ))
    }

    /// Moves into the run's cgroup every descendant of a process in it that
    /// is outside (forked before the move, or moved by a race), recording the
    /// way back first. A process moved out on purpose is left where it is.
    fn adopt_descendants(
        &mut self,
        ctx: &FaultContext,
        undo: &mut dyn UndoLog,
    ) -> Result<(), FaultError> {
        let Some(done) = self.done.as_mut() else {
            return Ok(());
        };
        let Ok(layout) = Cgroups::detect() else {
            return Ok(());
        };
        let all = proc::list();
        for gi in 0..done.groups.len() {
            let Ok(inside) = done.groups[gi].cgroup.procs() else {
                continue;
            };
            let inside: BTreeSet<i32> = inside.into_iter().collect();
            for p in descendants_of(&inside, &all) {
                if inside.contains(&p.pid)
                    || ctx.protected.contains(p.pid)
                    || self.moved.contains(&(p.pid, p.start_time))
                {
                    continue;
                }
                let Ok(original) = layout.cgroup_of(p.pid, &done.hierarchy) else {
                    continue;
                };
                if done.groups.iter().any(|g| g.cgroup == original) {
                    continue;
                }
                let g = &mut done.groups[gi];
                undo.record(
                    &format!("{} {}", self.kind, self.target.describe()),
                    UndoOp::MoveToCgroup {
                        pid: p.pid,
                        start_time: p.start_time,
                        procs_file: original.procs_file(),
                    },
                )
                .map_err(|e| FaultError::failed(format!("cannot write the undo record: {e:#}")))?;
                self.moved.insert((p.pid, p.start_time));
                match g.cgroup.add_process(p.pid) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => continue,
                    Err(e) => return Err(cg_err(self.kind, e)),
                }
                if let Some(t) = super::stress::cpu_ticks(p.pid) {
                    self.ticks_at_start.insert(p.pid, t);
                }
                g.members.push(Member {
                    pid: p.pid,
                    start_time: p.start_time,
                    comm: p.comm.clone(),
                    original,
                });
            }
        }
        Ok(())
    }

    /// Processes in the run's cgroups that were not moved there by us
    /// (children forked meanwhile), with the cgroup they should go back to.
    fn strays(&self) -> Vec<(i32, u64, Cgroup)> {
        let Some(done) = &self.done else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for g in &done.groups {
            let Ok(pids) = g.cgroup.procs() else { continue };
            for pid in pids {
                let Some(info) = proc::info(pid) else {
                    continue;
                };
                if self.moved.contains(&(pid, info.start_time)) {
                    continue;
                }
                // Back to where its parent came from, else the first member's.
                let home = g
                    .members
                    .iter()
                    .find(|m| m.pid == info.ppid)
                    .or(g.members.first())
                    .map(|m| m.original.clone())
                    .unwrap_or_else(|| g.cgroup.parent().unwrap_or_else(|| g.cgroup.clone()));
                out.push((pid, info.start_time, home));
            }
        }
        out
    }
}

/// cgroup v2: where to create a cgroup for a process now in `current`, and
/// which cgroups need `+controller` in `cgroup.subtree_control` (top-down).
/// Next to `current` when its parent allows it, else under the root: a
/// non-root cgroup with processes of its own cannot delegate controllers.
fn v2_placement(current: &Cgroup, controller: &str) -> Result<(Cgroup, Vec<Cgroup>), String> {
    let root = Cgroup {
        dir: current.mount_point.clone(),
        version: Version::V2,
        mount_point: current.mount_point.clone(),
    };
    let candidate = current.parent().unwrap_or_else(|| root.clone());
    match enable_chain(&candidate, controller) {
        Ok(chain) => Ok((candidate, chain)),
        Err(first) if !candidate.is_root() => match enable_chain(&root, controller) {
            Ok(chain) => Ok((root, chain)),
            Err(second) => Err(format!("{first}; and under the root: {second}")),
        },
        Err(e) => Err(e),
    }
}

/// The cgroups from the top down whose `cgroup.subtree_control` must get
/// `+controller` so that children of `at` have it.
fn enable_chain(at: &Cgroup, controller: &str) -> Result<Vec<Cgroup>, String> {
    let mut chain = Vec::new();
    let mut cur = at.clone();
    loop {
        let sub = cur.subtree_control().map_err(|e| e.to_string())?;
        if sub.iter().any(|c| c == controller) {
            break;
        }
        if !cur.is_root() {
            let procs = cur.procs().map_err(|e| e.to_string())?;
            if !procs.is_empty() {
                return Err(format!(
                    "{} holds processes ({}) and does not delegate `{controller}` to its children (cgroup v2 allows controllers only in cgroups without processes of their own)",
                    cur.dir.display(),
                    procs.iter().take(5).map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        let available = cur.controllers().map_err(|e| e.to_string())?;
        chain.push(cur.clone());
        if available.iter().any(|c| c == controller) {
            break;
        }
        match cur.parent() {
            Some(p) => cur = p,
            None => {
                return Err(format!(
                    "the `{controller}` controller is not in {} (it may be bound to a cgroup v1 hierarchy, or not built into the kernel)",
                    cur.file("cgroup.controllers").display()
                ))
            }
        }
    }
    chain.reverse();
    Ok(chain)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn cg_err(kind: &str, e: CgroupError) -> FaultError {
    let hint = match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => {
            " (needs root, and a cgroup tree this user may write)"
        }
        Some(libc::EBUSY) => " (the cgroup is busy: processes or child cgroups use it)",
        Some(libc::EINVAL) => " (the kernel rejected the value)",
        _ => "",
    };
    FaultError::failed(format!("{kind}: {e}{hint}"))
}

impl FaultImpl for CgroupLimit {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn target(&self) -> String {
        self.target.describe()
    }

    fn preflight(&mut self, ctx: &FaultContext) -> Result<(), FaultError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(FaultError::privileges(format!(
                "{} creates cgroups and moves processes under /sys/fs/cgroup, which needs root; run faultline as root (e.g. with sudo)",
                self.kind
            )));
        }
        self.prepare(ctx).map(|_| ())
    }

    fn plan(&self, ctx: &FaultContext) -> Vec<PlannedOp> {
        let prep = match self.prepare(ctx) {
            Ok(p) => p,
            Err(e) => {
                return vec![PlannedOp {
                    action: format!("cannot plan {}: {e}", self.kind),
                    command: None,
                    undo: None,
                }]
            }
        };
        let mut ops = Vec::new();
        for g in &prep.groups {
            for en in &g.enable {
                let f = en.file("cgroup.subtree_control");
                ops.push(PlannedOp {
                    action: format!("enable the `{}` controller for the children of {} (+{} in cgroup.subtree_control)", prep.controller, en.dir.display(), prep.controller),
                    command: None,
                    undo: Some(format!("echo -{} > {}", prep.controller, f.display())),
                });
            }
            ops.push(PlannedOp {
                action: format!("create cgroup {}", g.cgroup.dir.display()),
                command: None,
                undo: Some(format!("rmdir {}", g.cgroup.dir.display())),
            });
            for (f, v) in self.limit.settings(prep.hierarchy.version, prep.device) {
                ops.push(PlannedOp {
                    action: format!(
                        "write `{v}` to {} ({})",
                        g.cgroup.file(&f).display(),
                        self.limit.describe()
                    ),
                    command: None,
                    undo: Some("goes with the cgroup".into()),
                });
            }
            for m in &g.members {
                ops.push(PlannedOp {
                    action: format!(
                        "move pid {} ({}) from {} into it",
                        m.pid,
                        m.comm,
                        m.original.dir.display()
                    ),
                    command: None,
                    undo: Some(format!(
                        "echo {} > {}",
                        m.pid,
                        m.original.procs_file().display()
                    )),
                });
            }
        }
        if prep.groups.is_empty() {
            ops.push(PlannedOp {
                action: format!("nothing: no process matches {}", self.target.describe()),
                command: None,
                undo: None,
            });
        }
        ops
    }

    fn inject(&mut self, ctx: &FaultContext, undo: &mut dyn UndoLog) -> Result<(), FaultError> {
        if ctx.dry_run {
            return Ok(());
        }
        let prep = self.prepare(ctx)?;
        let who = self.undo_target();
        let rec = |undo: &mut dyn UndoLog, op: UndoOp| {
            undo.record(&who, op)
                .map_err(|e| FaultError::failed(format!("cannot write the undo record: {e:#}")))
        };
        let mut done = Prepared {
            groups: Vec::new(),
            ..prep.clone()
        };
        // Enabled once for all groups: the first group's undo replays last.
        let mut enabled = BTreeSet::new();
        for g in &prep.groups {
            for en in &g.enable {
                if !enabled.insert(en.dir.clone()) {
                    continue;
                }
                rec(
                    undo,
                    UndoOp::WriteFile {
                        path: en.file("cgroup.subtree_control"),
                        contents: format!("-{}", prep.controller),
                    },
                )?;
                en.write("cgroup.subtree_control", &format!("+{}", prep.controller))
                    .map_err(|e| cg_err(self.kind, e))?;
            }
            rec(
                undo,
                UndoOp::RemoveCgroup {
                    path: g.cgroup.dir.clone(),
                    leftovers_to: g.members.first().map(|m| m.original.procs_file()),
                },
            )?;
            g.cgroup.create().map_err(|e| cg_err(self.kind, e))?;
            // Recorded as done before anything moves in, so measurements and
            // verify_rollback know of the cgroup even if inject fails midway.
            done.groups.push(Group {
                members: Vec::new(),
                ..g.clone()
            });
            self.done = Some(done.clone());
            for (f, v) in self.limit.settings(prep.hierarchy.version, prep.device) {
                g.cgroup.write(&f, &v).map_err(|e| cg_err(self.kind, e))?;
            }
            for m in &g.members {
                if !proc::is_same(m.pid, m.start_time) {
                    continue; // exited since it was selected
                }
                rec(
                    undo,
                    UndoOp::MoveToCgroup {
                        pid: m.pid,
                        start_time: m.start_time,
                        procs_file: m.original.procs_file(),
                    },
                )?;
                match g.cgroup.add_process(m.pid) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => continue,
                    Err(e) => return Err(cg_err(self.kind, e)),
                }
                self.moved.insert((m.pid, m.start_time));
                if let Some(t) = super::stress::cpu_ticks(m.pid) {
                    self.ticks_at_start.insert(m.pid, t);
                }
                if let Some(d) = done.groups.last_mut() {
                    d.members.push(m.clone());
                }
            }
            self.done = Some(done.clone());
        }
        self.done = Some(done);
        self.started = Some(Instant::now());
        Ok(())
    }

    fn verify(&mut self, _ctx: &FaultContext) -> Result<String, FaultError> {
        let Some(done) = &self.done else {
            return Err(FaultError::failed(format!(
                "{} was not injected",
                self.kind
            )));
        };
        let layout = Cgroups::detect().map_err(|e| FaultError::failed(e.to_string()))?;
        let mut evidence = Vec::new();
        let mut gone = Vec::new();
        for g in &done.groups {
            for (f, v) in self.limit.settings(done.hierarchy.version, done.device) {
                let actual = g.cgroup.read(&f).map_err(|e| cg_err(self.kind, e))?;
                if !setting_matches(&f, &v, &actual) {
                    return Err(FaultError::failed(format!(
                        "{}: {} reads `{}`, expected `{v}`",
                        self.kind,
                        g.cgroup.file(&f).display(),
                        actual.trim()
                    )));
                }
                evidence.push(format!("{}={}", f, actual.trim().replace('\n', "; ")));
            }
            for m in &g.members {
                if !proc::is_same(m.pid, m.start_time) {
                    gone.push(m.pid);
                    continue;
                }
                let now = layout
                    .cgroup_of(m.pid, &done.hierarchy)
                    .map_err(|e| FaultError::failed(e.to_string()))?;
                if now != g.cgroup {
                    return Err(FaultError::failed(format!(
                        "{}: pid {} ({}) is in {}, not in {} (something moved it back; is systemd managing it? see docs/resource-faults.md)",
                        self.kind,
                        m.pid,
                        m.comm,
                        now.dir.display(),
                        g.cgroup.dir.display()
                    )));
                }
                evidence.push(format!("pid {} in {}", m.pid, g.cgroup.rel_path()));
            }
        }
        if !gone.is_empty() {
            evidence.push(format!("exited since: {gone:?}"));
        }
        Ok(evidence.join(", "))
    }

    fn tick_every(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(1))
    }

    /// Records how to move back children the targets forked into the run's
    /// cgroups, and moves in descendants of the targets that are outside.
    fn tick(&mut self, ctx: &FaultContext, undo: &mut dyn UndoLog) -> Result<(), FaultError> {
        let who = self.undo_target();
        for (pid, start_time, home) in self.strays() {
            undo.record(
                &who,
                UndoOp::MoveToCgroup {
                    pid,
                    start_time,
                    procs_file: home.procs_file(),
                },
            )
            .map_err(|e| FaultError::failed(format!("cannot write the undo record: {e:#}")))?;
            self.moved.insert((pid, start_time));
        }
        if self.include_descendants && self.in_place {
            self.adopt_descendants(ctx, undo)?;
        }
        Ok(())
    }

    /// The run's cgroups are still there, hold their limits and every target
    /// (threads included, on cgroup v1). Read-only.
    fn health(&mut self, _ctx: &FaultContext) -> Option<super::FaultHealth> {
        let done = self.done.as_ref()?;
        let h = self.check_in_place(done);
        self.in_place = h.present;
        Some(h)
    }

    fn before_rollback(&mut self, _ctx: &FaultContext) {
        self.measure();
        // Children forked since the last tick have no undo record: move them
        // back now, or the run's cgroup could not be removed.
        for (pid, start_time, home) in self.strays() {
            if proc::is_same(pid, start_time) {
                let _ = home.add_process(pid);
            }
        }
    }

    fn verify_rollback(&mut self, _ctx: &FaultContext) -> Result<(), FaultError> {
        let Some(done) = &self.done else {
            return Ok(());
        };
        let layout = Cgroups::detect().map_err(|e| FaultError::failed(e.to_string()))?;
        let mut problems = Vec::new();
        for g in &done.groups {
            for m in &g.members {
                if !proc::is_same(m.pid, m.start_time) {
                    continue;
                }
                match layout.cgroup_of(m.pid, &done.hierarchy) {
                    Ok(now) if now == m.original => {}
                    Ok(now) => problems.push(format!(
                        "pid {} is in {}, not back in {}",
                        m.pid,
                        now.dir.display(),
                        m.original.dir.display()
                    )),
                    Err(e) => problems.push(e.to_string()),
                }
            }
            if g.cgroup.exists() {
                problems.push(format!("cgroup {} still exists", g.cgroup.dir.display()));
            }
            for en in &g.enable {
                if let Ok(sub) = en.subtree_control() {
                    if sub.iter().any(|c| c == done.controller) {
                        problems.push(format!(
                            "`{}` is still enabled in {}",
                            done.controller,
                            en.file("cgroup.subtree_control").display()
                        ));
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(FaultError::failed(format!(
                "{}: {}",
                self.kind,
                problems.join("; ")
            )))
        }
    }

    fn observations(&self) -> serde_json::Value {
        if self.observations.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::Object(self.observations.clone())
        }
    }
}

/// Every process whose parent chain reaches one of `roots` (not the roots),
/// from one listing of /proc.
fn descendants_of(roots: &BTreeSet<i32>, all: &[proc::ProcInfo]) -> Vec<proc::ProcInfo> {
    let mut children: BTreeMap<i32, Vec<&proc::ProcInfo>> = BTreeMap::new();
    for p in all {
        if !p.kernel_thread {
            children.entry(p.ppid).or_default().push(p);
        }
    }
    let mut out = Vec::new();
    let mut seen: BTreeSet<i32> = roots.clone();
    let mut stack: Vec<i32> = roots.iter().copied().collect();
    while let Some(pid) = stack.pop() {
        for c in children.get(&pid).map(|v| v.as_slice()).unwrap_or_default() {
            if seen.insert(c.pid) {
                stack.push(c.pid);
                out.push((*c).clone());
            }
        }
    }
    out
}

/// Resolves a [`ProcessTarget`] to live processes, with the same selection,
/// protection and blast-radius rules as the process faults. Empty while the
/// target is a setup process that has not started yet (checked again after
/// setup).
pub(crate) fn resolve_targets(
    t: &ProcessTarget,
    ctx: &FaultContext,
) -> Result<Vec<proc::ProcInfo>, FaultError> {
    use crate::fault::target::Resolved;
    let chosen = match t.select(ctx, &mut t.rng())? {
        Resolved::Now(sel) => sel.chosen,
        // Setup has not started the target yet: checked again after setup.
        Resolved::AtRunTime(_) if ctx.setup_pending || ctx.dry_run => return Ok(vec![]),
        Resolved::AtRunTime(_) => t.select_now(ctx, &mut t.rng())?.chosen,
    };
    Ok(chosen
        .into_iter()
        .filter_map(|c| proc::info(c.pid).filter(|i| i.start_time == c.start_time))
        .collect())
}

// ------------------------------------------------------------ containers

/// One container a [`ContainerLimit`] set its limit on.
#[derive(Clone, Debug)]
struct LimitedContainer {
    info: ContainerInfo,
    cgroup: Cgroup,
    /// (control file, value written, value it had before).
    writes: Vec<(String, String, String)>,
    event: Option<String>,
}

/// `cpu_limit` and `memory_limit` on containers: the limit is written into
/// each container's OWN cgroup (the one Docker made), after its original
/// value was recorded as a `WriteFile` undo, so the runner, the watchdog and
/// `recover` put back exactly what was there. `docker update` is never used:
/// the engine's own view of the container's limits is not changed.
/// `mode`/`count`/`percent`/`max_targets` count containers here.
pub struct ContainerLimit {
    kind: &'static str,
    target: ProcessTarget,
    limit: Limit,
    rng: crate::fault::target::TargetRng,
    done: Vec<LimitedContainer>,
    notes: Vec<String>,
}

impl ContainerLimit {
    fn new(kind: &'static str, target: ProcessTarget, limit: Limit) -> Self {
        ContainerLimit {
            kind,
            rng: target.rng(),
            target,
            limit,
            done: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The containers to limit now, each with its cgroup in the limit's
    /// hierarchy and the settings to write (value, current value).
    fn prepare(&self, ctx: &FaultContext) -> Result<Vec<LimitedContainer>, FaultError> {
        let sel = self
            .target
            .container_selector()
            .expect("a container target");
        let mut found = crate::fault::container::resolve_some(&sel)?;
        let k = crate::fault::target::how_many(
            self.target.mode,
            self.target.count,
            self.target.percent,
            found.len(),
        );
        if k < found.len() {
            use rand::seq::IndexedRandom;
            let mut rng = self.rng.clone();
            let mut picked: Vec<ContainerInfo> = found.sample(&mut rng, k).cloned().collect();
            picked.sort_by(|a, b| a.id.cmp(&b.id));
            found = picked;
        }
        let (max, from) = self.target.limit(ctx);
        if found.len() > max as usize {
            return Err(FaultError::precondition(format!(
                "{}: `{}` would limit {} containers but the blast-radius limit is {max} ({from}); narrow the selector or use `mode: one`/`count`",
                self.kind,
                sel.describe(),
                found.len()
            )));
        }
        let layout = Cgroups::detect().map_err(|e| {
            FaultError::precondition(format!("{}: cannot read the cgroup layout: {e}", self.kind))
        })?;
        let Some(h) = self.limit.hierarchy(&layout).cloned() else {
            return Err(FaultError::precondition(format!(
                "{}: the `{}` cgroup controller is not available on this host",
                self.kind,
                self.limit.controller(Version::V1)
            )));
        };
        let mut out = Vec::new();
        for c in found {
            let cg = crate::fault::container::cgroup_in(&c, &layout, &h)?;
            if cg.is_root() {
                return Err(FaultError::precondition(format!(
                    "{}: container {} runs in the root cgroup; its limit would be the host's",
                    self.kind,
                    c.label()
                )));
            }
            let mut writes = Vec::new();
            for (f, v) in self.limit.settings(h.version, None) {
                let now = cg.read(&f).map_err(|e| {
                    FaultError::precondition(format!(
                        "{}: container {}: {e} (for cpu this kernel needs CONFIG_CFS_BANDWIDTH)",
                        self.kind,
                        c.label()
                    ))
                })?;
                writes.push((f, v, now.trim_end().to_string()));
            }
            out.push(LimitedContainer {
                info: c,
                cgroup: cg,
                writes,
                event: None,
            });
        }
        Ok(out)
    }

    fn read_back(&self, c: &LimitedContainer) -> Result<String, String> {
        let mut ev = Vec::new();
        for (f, v, _) in &c.writes {
            let actual = c.cgroup.read(f).map_err(|e| e.to_string())?;
            if !setting_matches(f, v, &actual) {
                return Err(format!(
                    "{} reads `{}`, expected `{v}`",
                    c.cgroup.file(f).display(),
                    actual.trim()
                ));
            }
            ev.push(format!("{f}={}", actual.trim()));
        }
        Ok(format!("container {}: {}", c.info.label(), ev.join(", ")))
    }

    /// What became of the container, `None` while it is the same process.
    fn event_of(c: &LimitedContainer) -> Option<String> {
        if proc::is_same(c.info.pid, c.info.start_time) {
            return None;
        }
        Some(match crate::sys::docker::inspect(&c.info.id) {
            Ok(Some(now)) => format!(
                "container {} restarted (main pid {} -> {}, restart count {} -> {}); its cgroup was made again with the engine's settings, so the limit is no longer in force (not re-applied)",
                c.info.label(),
                c.info.pid,
                now.pid,
                c.info.restart_count,
                now.restart_count
            ),
            _ => match crate::sys::docker::inspect(&c.info.name).ok().flatten() {
                Some(n) if n.id != c.info.id => format!(
                    "container {} was removed and a new container {} took its name; the limit is not applied to the new one",
                    c.info.label(),
                    n.label()
                ),
                _ => format!(
                    "container {} stopped or was removed (main pid {} is gone)",
                    c.info.label(),
                    c.info.pid
                ),
            },
        })
    }
}

impl FaultImpl for ContainerLimit {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn target(&self) -> String {
        self.target.describe()
    }

    fn preflight(&mut self, ctx: &FaultContext) -> Result<(), FaultError> {
        match self.prepare(ctx) {
            Err(e) if ctx.setup_pending => {
                self.notes.push(format!("checked again after setup: {e}"));
                Ok(())
            }
            r => r.map(|_| ()),
        }
    }

    fn plan(&self, ctx: &FaultContext) -> Vec<PlannedOp> {
        match self.prepare(ctx) {
            Err(e) => vec![PlannedOp {
                action: format!("cannot run: {e}"),
                command: None,
                undo: None,
            }],
            Ok(list) => {
                let mut ops = Vec::new();
                for c in list {
                    ops.push(PlannedOp {
                        action: c.info.describe(),
                        command: None,
                        undo: None,
                    });
                    for (f, v, was) in &c.writes {
                        let path = c.cgroup.file(f);
                        ops.push(PlannedOp {
                            action: format!(
                                "set {} on container {}: write `{v}` to {} (now `{was}`)",
                                self.limit.describe(),
                                c.info.label(),
                                path.display()
                            ),
                            command: None,
                            undo: Some(
                                UndoOp::WriteFile {
                                    path,
                                    contents: was.clone(),
                                }
                                .manual_command(),
                            ),
                        });
                    }
                }
                ops
            }
        }
    }

    fn inject(&mut self, ctx: &FaultContext, undo: &mut dyn UndoLog) -> Result<(), FaultError> {
        if ctx.dry_run {
            return Ok(());
        }
        let list = self.prepare(ctx)?;
        for mut c in list {
            let target = format!("{} container {}", self.kind, c.info.label());
            let mut writes = Vec::new();
            for (f, v, _) in &c.writes {
                // Read again right before the write: that is what comes back.
                let was = c
                    .cgroup
                    .read(f)
                    .map_err(|e| cg_err(self.kind, e))?
                    .trim_end()
                    .to_string();
                undo.record(
                    &target,
                    UndoOp::WriteFile {
                        path: c.cgroup.file(f),
                        contents: was.clone(),
                    },
                )
                .map_err(|e| {
                    FaultError::failed(format!(
                        "{}: cannot record the undo (nothing was changed by it): {e:#}",
                        self.kind
                    ))
                })?;
                c.cgroup.write(f, v).map_err(|e| cg_err(self.kind, e))?;
                writes.push((f.clone(), v.clone(), was));
            }
            c.writes = writes;
            self.done.push(c);
        }
        Ok(())
    }

    fn verify(&mut self, _ctx: &FaultContext) -> Result<String, FaultError> {
        let mut ev = Vec::new();
        for c in &self.done {
            ev.push(
                self.read_back(c)
                    .map_err(|e| FaultError::failed(format!("{}: {e}", self.kind)))?,
            );
        }
        Ok(ev.join("; "))
    }

    fn health(&mut self, _ctx: &FaultContext) -> Option<super::FaultHealth> {
        let mut missing = Vec::new();
        let mut present = Vec::new();
        for i in 0..self.done.len() {
            if self.done[i].event.is_none() {
                let ev = Self::event_of(&self.done[i]);
                if let Some(e) = &ev {
                    self.notes.push(e.clone());
                }
                self.done[i].event = ev;
            }
            let c = &self.done[i];
            if let Some(e) = &c.event {
                missing.push(e.clone());
                continue;
            }
            match self.read_back(c) {
                Ok(e) => present.push(e),
                Err(e) => missing.push(e),
            }
        }
        Some(if missing.is_empty() {
            super::FaultHealth::present(present.join("; "))
        } else {
            super::FaultHealth::missing(missing.join("; "))
        })
    }

    fn before_rollback(&mut self, _ctx: &FaultContext) {
        for c in &mut self.done {
            // Looked at again: a container seen stopped mid-restart is
            // running again by now, and the report should say "restarted".
            let now = Self::event_of(c);
            if now.is_some() && now != c.event {
                self.notes.extend(now.clone());
                c.event = now;
            }
        }
    }

    fn verify_rollback(&mut self, _ctx: &FaultContext) -> Result<(), FaultError> {
        for c in &self.done {
            if !c.cgroup.exists() {
                continue; // the container is gone, and its cgroup with it
            }
            for (f, _, was) in &c.writes {
                let now = c.cgroup.read(f).map_err(|e| cg_err(self.kind, e))?;
                if now.trim_end() != was {
                    return Err(FaultError::failed(format!(
                        "{}: {} reads `{}` after rollback, but was `{was}`",
                        self.kind,
                        c.cgroup.file(f).display(),
                        now.trim()
                    )));
                }
            }
        }
        Ok(())
    }

    fn observations(&self) -> serde_json::Value {
        let containers: Vec<serde_json::Value> = self
            .done
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.info.id,
                    "name": c.info.name,
                    "pid": c.info.pid,
                    "start_time": c.info.start_time,
                    "cgroup": c.cgroup.dir.display().to_string(),
                    "restart_policy": c.info.restart_policy,
                    "writes": c.writes.iter().map(|(f, v, was)| serde_json::json!({"file": f, "value": v, "original": was})).collect::<Vec<_>>(),
                    "event": c.event,
                })
            })
            .collect();
        serde_json::json!({
            "target": self.target.describe(),
            "limit": self.limit.describe(),
            "containers": containers,
            "notes": self.notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quota_rounds_and_has_a_floor() {
        assert_eq!(cpu_quota_us(0.2), 20_000);
        assert_eq!(cpu_quota_us(1.5), 150_000);
        assert_eq!(cpu_quota_us(0.001), 1000);
    }

    #[test]
    fn settings_per_version() {
        let cpu = Limit::Cpu { cpus: 0.2 };
        assert_eq!(
            cpu.settings(Version::V1, None),
            vec![
                ("cpu.cfs_period_us".to_string(), "100000".to_string()),
                ("cpu.cfs_quota_us".to_string(), "20000".to_string())
            ]
        );
        assert_eq!(
            cpu.settings(Version::V2, None),
            vec![("cpu.max".to_string(), "20000 100000".to_string())]
        );
        let soft = Limit::Memory {
            bytes: 1 << 26,
            kind: MemoryLimitKind::Soft,
        };
        assert_eq!(soft.settings(Version::V2, None)[0].0, "memory.high");
        assert_eq!(
            soft.settings(Version::V1, None)[0].0,
            "memory.soft_limit_in_bytes"
        );
        let io = Limit::Io {
            device: "8:0".into(),
            read_bps: Some(1048576),
            write_bps: None,
            read_iops: None,
            write_iops: Some(100),
        };
        assert_eq!(
            io.settings(Version::V1, Some((8, 0))),
            vec![
                (
                    "blkio.throttle.read_bps_device".to_string(),
                    "8:0 1048576".to_string()
                ),
                (
                    "blkio.throttle.write_iops_device".to_string(),
                    "8:0 100".to_string()
                )
            ]
        );
        assert_eq!(
            io.settings(Version::V2, Some((8, 0))),
            vec![(
                "io.max".to_string(),
                "8:0 rbps=1048576 wiops=100".to_string()
            )]
        );
    }

    #[test]
    fn read_back_matching() {
        assert!(setting_matches("memory.max", "67108865", "67108864\n"));
        assert!(!setting_matches("memory.max", "67108864", "max\n"));
        assert!(setting_matches("cpu.max", "20000 100000", "20000 100000\n"));
        assert!(!setting_matches("cpu.max", "20000 100000", "max 100000\n"));
        assert!(setting_matches(
            "blkio.throttle.read_bps_device",
            "7:0 1048576",
            "7:1 5\n7:0 1048576\n"
        ));
        assert!(setting_matches(
            "io.max",
            "8:0 rbps=1048576",
            "8:0 rbps=1048576 wbps=max riops=max wiops=max\n"
        ));
        assert!(!setting_matches(
            "io.max",
            "8:0 rbps=1048576",
            "8:16 rbps=1048576\n"
        ));
    }

    #[test]
    fn device_numbers() {
        assert_eq!(resolve_device("254:0").unwrap(), (254, 0));
        assert!(resolve_device("/etc/hostname").is_err());
        assert_eq!(
            resolve_device("/nonexistent").unwrap_err().code,
            crate::exit::PRECONDITION
        );
    }

    /// A fake v2 tree: root with controllers, /app (processes, nothing delegated).
    fn fake_v2(sub_root: &str, app_procs: &str) -> (tempfile::TempDir, Cgroup) {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("app/svc")).unwrap();
        std::fs::write(r.join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
        std::fs::write(r.join("cgroup.subtree_control"), sub_root).unwrap();
        std::fs::write(r.join("cgroup.procs"), "1\n").unwrap();
        std::fs::write(r.join("app/cgroup.controllers"), sub_root).unwrap();
        std::fs::write(r.join("app/cgroup.subtree_control"), "").unwrap();
        std::fs::write(r.join("app/cgroup.procs"), app_procs).unwrap();
        std::fs::write(r.join("app/svc/cgroup.procs"), "100\n").unwrap();
        let svc = Cgroup {
            dir: r.join("app/svc"),
            version: Version::V2,
            mount_point: r.to_path_buf(),
        };
        (t, svc)
    }

    #[test]
    fn v2_placement_next_to_the_target_when_allowed() {
        let (t, svc) = fake_v2("cpu memory\n", "");
        let (parent, chain) = v2_placement(&svc, "cpu").unwrap();
        assert_eq!(parent.dir, t.path().join("app"));
        assert_eq!(chain.len(), 1);
        assert_eq!(chain[0].dir, t.path().join("app"));
    }

    #[test]
    fn v2_placement_enables_from_the_root_down() {
        let (t, svc) = fake_v2("", "");
        std::fs::write(t.path().join("app/cgroup.controllers"), "").unwrap();
        let (parent, chain) = v2_placement(&svc, "memory").unwrap();
        assert_eq!(parent.dir, t.path().join("app"));
        let dirs: Vec<_> = chain.iter().map(|c| c.dir.clone()).collect();
        assert_eq!(dirs, vec![t.path().to_path_buf(), t.path().join("app")]);
    }

    #[test]
    fn v2_placement_falls_back_to_the_root_when_the_parent_has_processes() {
        let (t, svc) = fake_v2("cpu\n", "55\n");
        let (parent, chain) = v2_placement(&svc, "cpu").unwrap();
        assert_eq!(parent.dir, t.path().to_path_buf());
        assert!(chain.is_empty());
        let err = v2_placement(&svc, "rdma").unwrap_err();
        assert!(err.contains("cgroup.controllers"), "{err}");
    }

    #[test]
    fn resolves_pid_and_protects() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let t = ProcessTarget {
            pid: Some(pid),
            ..Default::default()
        };
        // A child of the runner is protected unless setup started it.
        let e = resolve_targets(&t, &FaultContext::default()).unwrap_err();
        assert_eq!(e.code, crate::exit::PRECONDITION);
        let ctx = FaultContext {
            setup_pids: [("svc".to_string(), pid)].into_iter().collect(),
            ..Default::default()
        };
        assert_eq!(resolve_targets(&t, &ctx).unwrap()[0].pid, pid);
        let t = ProcessTarget {
            pid: Some(pid),
            allow_none: true,
            ..Default::default()
        };
        assert!(resolve_targets(&t, &FaultContext::default())
            .unwrap()
            .is_empty());
        let _ = child.kill();
        let _ = child.wait();
    }
}
