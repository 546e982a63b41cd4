//! Which processes a process or cgroup fault hits, and how many of them
//! (the blast radius).

use crate::fault::{FaultContext, FaultError};
use crate::sys::proc::{self, ProcInfo};
use crate::units::Percent;
use rand::seq::IndexedRandom;
use rand::SeedableRng;

/// The generator that picks targets: seedable (`seed:` repeats a choice) and
/// cheap to copy, so `plan` and the run can preview the same choice.
pub type TargetRng = rand::rngs::Xoshiro256PlusPlus;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// The direct children of this process id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children_of: Option<i32>,
    /// The children of the process whose id is in this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children_of_pidfile: Option<String>,
    /// Every process in this cgroup and its descendant cgroups (a path under
    /// /sys/fs/cgroup, or relative to it: `system.slice/app.service` on cgroup
    /// v2, `pids/app` or `systemd/system.slice/app.service` on v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Every process of this systemd unit (e.g. `nginx.service`; a name
    /// without a suffix means `.service`). Needs systemd as the init system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
    /// The process started by the `setup` entry of this name: that process
    /// itself, not its children (use `children_of_pidfile`, `name` or `cmdline`
    /// to hit a setup process's workers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<String>,
    /// Every process of this container (a name or an id), found through the
    /// Docker Engine API (or Podman's compatible socket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Every process of every running container carrying all these labels,
    /// e.g. `{app: cache-service}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Every process of every running container of a Compose service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose: Option<crate::fault::container::ComposeService>,

    /// Which of the matching processes to hit. Default `all`. With a
    /// container selector the processes of all matching containers are the
    /// candidates (cgroup faults act on each container's own cgroup instead).
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
        v.extend(crate::fault::container::ContainerFields::container_selectors(self));
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
        } else if let Some(c) = crate::fault::container::ContainerFields::container_selector(self) {
            c.describe()
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

/// How many processes one fault may hit when neither the target nor
/// `limits.blast_radius` sets `max_targets`.
pub const DEFAULT_MAX_TARGETS: u32 = 10;

/// Where cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// A process a target picked, identified by pid AND start time (clock ticks
/// since boot), so that a later signal never reaches a process that reused the pid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetProcess {
    pub pid: i32,
    pub start_time: u64,
    /// The process name (/proc/PID/comm).
    pub name: String,
    /// The full command line, arguments joined by spaces.
    pub cmdline: String,
    /// Real and effective user id, when /proc still had them.
    #[serde(skip)]
    pub uids: Option<(u32, u32)>,
}

impl TargetProcess {
    /// `4242 (redis-server: /usr/bin/redis-server *:6379)`, the command line cut
    /// to a readable length.
    pub fn label(&self) -> String {
        let mut cmd: String = self.cmdline.chars().take(100).collect();
        if cmd.len() < self.cmdline.len() {
            cmd.push('…');
        }
        if cmd.is_empty() {
            format!("{} ({})", self.pid, self.name)
        } else {
            format!("{} ({}: {cmd})", self.pid, self.name)
        }
    }
}

/// A matched process that may never be hit, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExcludedProcess {
    pub pid: i32,
    pub name: String,
    pub reason: String,
}

/// What the selector matches right now, split into the processes that may be
/// hit and the protected ones.
#[derive(Clone, Debug, Default)]
pub struct Candidates {
    pub selectable: Vec<TargetProcess>,
    pub excluded: Vec<ExcludedProcess>,
    /// Why nothing matched, when that is known (e.g. the pid file is missing).
    pub why_none: Option<String>,
    /// The real user id faultline runs as; processes of any other user need
    /// `limits.blast_radius.other_users` (unknown: the rule is not applied).
    pub own_uid: Option<u32>,
}

/// The processes a fault hits now.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// How many selectable processes the selector matched (before `mode`).
    pub matched: usize,
    /// The processes to hit, in pid order.
    pub chosen: Vec<TargetProcess>,
    /// Matched processes left out because they are protected.
    pub excluded: Vec<ExcludedProcess>,
}

/// A target resolved now, or one that can only be resolved during the run
/// (a `setup` process that has not been started yet).
#[derive(Clone, Debug)]
pub enum Resolved {
    Now(Selection),
    AtRunTime(String),
}

/// A snapshot of the process table: pid -> what /proc said.
#[derive(Clone, Debug, Default)]
pub struct ProcTable {
    by_pid: BTreeMap<i32, ProcInfo>,
}

impl ProcTable {
    /// Reads every process from /proc.
    pub fn snapshot() -> Self {
        Self::from_infos(proc::list())
    }
    pub fn from_infos(infos: Vec<ProcInfo>) -> Self {
        ProcTable {
            by_pid: infos.into_iter().map(|i| (i.pid, i)).collect(),
        }
    }
    pub fn get(&self, pid: i32) -> Option<&ProcInfo> {
        self.by_pid.get(&pid)
    }
    pub fn iter(&self) -> impl Iterator<Item = &ProcInfo> {
        self.by_pid.values()
    }
    /// The ancestors of `pid`, parent first (bounded, in case of a torn snapshot).
    pub fn ancestors(&self, pid: i32) -> Vec<i32> {
        let mut out = Vec::new();
        let mut cur = pid;
        for _ in 0..4096 {
            let Some(info) = self.by_pid.get(&cur) else {
                break;
            };
            if info.ppid <= 0 || info.ppid == cur || out.contains(&info.ppid) {
                break;
            }
            out.push(info.ppid);
            cur = info.ppid;
        }
        out
    }
}

/// Why a process may never be hit, or `None` when it may. The rules, in order:
/// the context's protected pids (PID 1, the runner, its ancestors, the
/// watchdog), kernel threads, zombies, and descendants of the runner that are
/// not at or under a setup process (probe and action children of the run).
pub fn protection_reason(
    info: &ProcInfo,
    table: &ProcTable,
    ctx: &FaultContext,
    runner: i32,
) -> Option<String> {
    let pid = info.pid;
    if pid == 1 {
        return Some("PID 1 (init) is never a target".into());
    }
    if pid == runner {
        return Some("it is the faultline runner itself".into());
    }
    if ctx.protected.contains(pid) {
        return Some(if table.ancestors(runner).contains(&pid) {
            "it is an ancestor of the faultline runner (e.g. its shell)".into()
        } else {
            "it is protected by the runner (PID 1, the runner, its ancestors, its watchdog)".into()
        });
    }
    if info.kernel_thread {
        return Some("it is a kernel thread".into());
    }
    if info.state == 'Z' || info.state == 'X' {
        return Some("it is a zombie (it has already exited)".into());
    }
    let ancestors = table.ancestors(pid);
    if ancestors.contains(&runner) {
        let setup: Vec<i32> = ctx.setup_pids.values().copied().collect();
        let under_setup = setup.contains(&pid) || ancestors.iter().any(|a| setup.contains(a));
        if !under_setup {
            return Some(
                "it is a child of the faultline runner that is not a setup process (a probe or action of this run)"
                    .into(),
            );
        }
    }
    None
}

/// How many of `n` matching processes `mode` hits: `all` n, `one` 1, `count`
/// min(count, n), `percent` floor(n * percent), at least one. 0 when n is 0.
pub fn how_many(mode: TargetMode, count: Option<u32>, percent: Option<Percent>, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let k = match mode {
        TargetMode::All => n,
        TargetMode::One => 1,
        TargetMode::Count => count.unwrap_or(1) as usize,
        TargetMode::Percent => {
            let p = percent.map(|p| p.0).unwrap_or(100.0);
            // The epsilon keeps 50% of 4 at 2 despite float rounding.
            ((n as f64) * p / 100.0 + 1e-9).floor() as usize
        }
    };
    k.clamp(1, n)
}

/// The directory of a `cgroup:` selector: an absolute path under `root` as
/// given, anything else relative to `root` (a leading `/` is dropped, so
/// `/system.slice/x.service` from /proc/PID/cgroup works too).
pub fn cgroup_dir(spec: &str, root: &Path) -> PathBuf {
    let p = Path::new(spec);
    if p.starts_with(root) {
        p.to_path_buf()
    } else {
        root.join(spec.trim_start_matches('/'))
    }
}

/// The cgroup directory of a systemd unit: its `ControlGroup` (from
/// `systemctl show`, else `/system.slice/UNIT`) under the v2 mount, the
/// hybrid `unified` mount or the v1 `name=systemd` hierarchy.
fn systemd_unit_dir(unit: &str, root: &Path) -> Option<PathBuf> {
    let mut groups = Vec::new();
    if let Ok(out) = std::process::Command::new("systemctl")
        .args(["show", "-p", "ControlGroup", "--value", unit])
        .output()
    {
        let cg = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && cg.starts_with('/') {
            groups.push(cg);
        }
    }
    groups.push(format!("/system.slice/{unit}"));
    for cg in &groups {
        for base in [
            root.to_path_buf(),
            root.join("unified"),
            root.join("systemd"),
        ] {
            let dir = base.join(cg.trim_start_matches('/'));
            if dir.join("cgroup.procs").is_file() {
                return Some(dir);
            }
        }
    }
    None
}

struct Matched {
    pids: Vec<i32>,
    why_none: Option<String>,
}

impl Matched {
    fn pids(pids: Vec<i32>) -> Self {
        Matched {
            pids,
            why_none: None,
        }
    }
    fn none(why: String) -> Self {
        Matched {
            pids: Vec::new(),
            why_none: Some(why),
        }
    }
}

impl ProcessTarget {
    /// A random number generator for `mode`: seeded with `seed` when given
    /// (the same seed picks the same processes from the same set), else from entropy.
    pub fn rng(&self) -> TargetRng {
        match self.seed {
            Some(s) => TargetRng::seed_from_u64(s),
            None => rand::make_rng(),
        }
    }

    /// The pids the selector matches in `table`, before protection and mode.
    /// `Ok(None)`: a setup process not started yet (resolved at run time).
    fn match_pids(
        &self,
        ctx: &FaultContext,
        table: &ProcTable,
    ) -> Result<Option<Matched>, FaultError> {
        let exists = |pid: i32| table.get(pid).is_some();
        if let Some(pid) = self.pid {
            return Ok(Some(if exists(pid) {
                Matched::pids(vec![pid])
            } else {
                Matched::none(format!("no process has pid {pid}"))
            }));
        }
        if let Some(f) = &self.pidfile {
            return Ok(Some(match proc::read_pidfile(Path::new(f)) {
                Ok(pid) if exists(pid) => Matched::pids(vec![pid]),
                Ok(pid) => Matched::none(format!(
                    "pid file {f} names pid {pid}, which is not running"
                )),
                Err(e) => Matched::none(e),
            }));
        }
        if let Some(n) = &self.name {
            return Ok(Some(Matched::pids(
                table
                    .iter()
                    .filter(|i| &i.comm == n)
                    .map(|i| i.pid)
                    .collect(),
            )));
        }
        if let Some(re) = &self.cmdline {
            let re = regex::Regex::new(re).map_err(|e| {
                FaultError::precondition(format!(
                    "target.cmdline `{re}` is not a valid regular expression: {e}"
                ))
            })?;
            return Ok(Some(Matched::pids(
                table
                    .iter()
                    .filter(|i| !i.kernel_thread)
                    .filter(|i| proc::cmdline(i.pid).is_some_and(|c| re.is_match(&c)))
                    .map(|i| i.pid)
                    .collect(),
            )));
        }
        let children = |parent: i32| -> Vec<i32> {
            table
                .iter()
                .filter(|i| i.ppid == parent)
                .map(|i| i.pid)
                .collect()
        };
        if let Some(parent) = self.children_of {
            return Ok(Some(if exists(parent) {
                Matched::pids(children(parent))
            } else {
                Matched::none(format!("the parent pid {parent} is not running"))
            }));
        }
        if let Some(f) = &self.children_of_pidfile {
            return Ok(Some(match proc::read_pidfile(Path::new(f)) {
                Ok(pid) if exists(pid) => Matched::pids(children(pid)),
                Ok(pid) => Matched::none(format!(
                    "pid file {f} names pid {pid}, which is not running"
                )),
                Err(e) => Matched::none(e),
            }));
        }
        if let Some(cg) = &self.cgroup {
            let dir = cgroup_dir(cg, Path::new(CGROUP_ROOT));
            return Ok(Some(match proc::pids_in_cgroup_tree(&dir) {
                Ok(pids) => Matched::pids(pids),
                Err(e) => Matched::none(format!(
                    "cannot read the cgroup {} ({e}); give a cgroup directory under {CGROUP_ROOT} (on cgroup v1 include the hierarchy, e.g. `pids/app`)",
                    dir.display()
                )),
            }));
        }
        if let Some(unit) = &self.systemd_unit {
            if !proc::systemd_running() {
                return Err(FaultError::precondition(format!(
                    "target.systemd_unit `{unit}` needs systemd, but systemd is not running on this host (no /run/systemd/system); select the processes with `cgroup`, `name`, `cmdline` or `pidfile` instead"
                )));
            }
            let unit = if unit.contains('.') {
                unit.clone()
            } else {
                format!("{unit}.service")
            };
            return Ok(Some(match systemd_unit_dir(&unit, Path::new(CGROUP_ROOT)) {
                Some(dir) => match proc::pids_in_cgroup_tree(&dir) {
                    Ok(pids) => Matched::pids(pids),
                    Err(e) => Matched::none(format!("cannot read the cgroup of {unit}: {e}")),
                },
                None => Matched::none(format!(
                    "systemd unit {unit} has no cgroup under {CGROUP_ROOT} (is it running? `systemctl status {unit}`)"
                )),
            }));
        }
        if let Some(sel) = crate::fault::container::ContainerFields::container_selector(self) {
            let found = crate::fault::container::resolve(&sel)?;
            if found.is_empty() {
                return Ok(Some(Matched::none(format!(
                    "no running container matches {} (see `docker ps`)",
                    sel.describe()
                ))));
            }
            let mut pids = Vec::new();
            for c in &found {
                pids.extend(crate::fault::container::pids(c)?);
            }
            pids.sort();
            pids.dedup();
            return Ok(Some(Matched::pids(pids)));
        }
        if let Some(name) = &self.setup {
            return Ok(match ctx.setup_pids.get(name) {
                None => None,
                Some(&pid) if exists(pid) => Some(Matched::pids(vec![pid])),
                Some(&pid) => Some(Matched::none(format!(
                    "the setup process `{name}` (pid {pid}) has exited"
                ))),
            });
        }
        Err(FaultError::precondition(
            "the target has no selector; give one of `pid`, `pidfile`, `name`, `cmdline`, `children_of`, `children_of_pidfile`, `cgroup`, `systemd_unit`, `setup`, `container`, `labels`, `compose`",
        ))
    }

    /// What the selector matches now, split into selectable and protected
    /// processes. `Ok(None)` for a setup process that has not been started yet.
    pub fn candidates(&self, ctx: &FaultContext) -> Result<Option<Candidates>, FaultError> {
        let table = ProcTable::snapshot();
        let runner = std::process::id() as i32;
        let Some(m) = self.match_pids(ctx, &table)? else {
            return Ok(None);
        };
        let mut c = classify(&table, &m.pids, m.why_none, ctx, runner, &|pid| {
            proc::cmdline(pid).unwrap_or_default()
        });
        // Every faultline runner and watchdog on the host is out of reach,
        // not only this run's.
        let (theirs, others): (Vec<_>, Vec<_>) = c
            .selectable
            .into_iter()
            .partition(|p| proc::is_faultline_control(p.pid));
        c.selectable = others;
        for p in &mut c.selectable {
            p.uids = proc::uids(p.pid).map(|u| (u[0], u[1]));
        }
        c.own_uid = Some(nix::unistd::getuid().as_raw());
        c.excluded
            .extend(theirs.into_iter().map(|p| {
                ExcludedProcess {
                    pid: p.pid,
                    name: p.name,
                    reason:
                        "it is a faultline process (the runner, watchdog or stress worker of a run)"
                            .into(),
                }
            }));
        Ok(Some(c))
    }

    /// Resolves the target now: match, drop protected processes, apply `mode`,
    /// enforce `max_targets` and `limits.blast_radius.max_targets`.
    pub fn select(&self, ctx: &FaultContext, rng: &mut TargetRng) -> Result<Resolved, FaultError> {
        match self.candidates(ctx)? {
            None => Ok(Resolved::AtRunTime(format!(
                "resolved at run time: the process started by setup `{}`",
                self.setup.as_deref().unwrap_or_default()
            ))),
            Some(c) => match choose(self, c, ctx, rng) {
                Err(e) if ctx.setup_pending => Ok(Resolved::AtRunTime(format!(
                    "checked again after setup has started its processes (now: {})",
                    e.message
                ))),
                r => {
                    let sel = r?;
                    lock_processes(&sel.chosen, ctx)?;
                    Ok(Resolved::Now(sel))
                }
            },
        }
    }

    /// Like [`select`](Self::select), for injection time: a setup process that
    /// has not been started is an error.
    pub fn select_now(
        &self,
        ctx: &FaultContext,
        rng: &mut TargetRng,
    ) -> Result<Selection, FaultError> {
        match self.select(ctx, rng)? {
            Resolved::Now(s) => Ok(s),
            Resolved::AtRunTime(_) => Err(FaultError::precondition(format!(
                "target `{}`: the setup process `{}` is not running (it was not started by this run's `setup`)",
                self.describe(),
                self.setup.as_deref().unwrap_or_default()
            ))),
        }
    }

    /// The blast-radius limit for this target, and where it comes from:
    /// the smaller of the target's and the experiment's `max_targets`, else
    /// [`DEFAULT_MAX_TARGETS`].
    pub fn limit(&self, ctx: &FaultContext) -> (u32, &'static str) {
        match (self.max_targets, ctx.blast_radius.max_targets) {
            (Some(a), Some(b)) if b < a => (b, "limits.blast_radius.max_targets"),
            (Some(a), _) => (a, "the target's max_targets"),
            (None, Some(b)) => (b, "limits.blast_radius.max_targets"),
            (None, None) => (
                DEFAULT_MAX_TARGETS,
                "the default blast radius; set limits.blast_radius.max_targets to allow more",
            ),
        }
    }

    /// Whether the selector names one process itself (`pid`, `pidfile`,
    /// `setup`): those are not held to the other-users rule, patterns are.
    pub fn names_one_process(&self) -> bool {
        self.pid.is_some()
            || self.pidfile.is_some()
            || self.setup.is_some()
            || crate::fault::container::ContainerFields::container_selector(self).is_some()
    }

    /// The blast-radius rules in one line, for plans.
    pub fn rules(&self, ctx: &FaultContext) -> String {
        let (max, from) = self.limit(ctx);
        let users = if self.names_one_process() {
            "any user's process (the selector names it)"
        } else if ctx.blast_radius.other_users {
            "processes of every user (limits.blast_radius.other_users)"
        } else {
            "only processes of the user running faultline (set limits.blast_radius.other_users to allow others)"
        };
        let what = if max == 1 { "process" } else { "processes" };
        format!("at most {max} {what} ({from}); {users}")
    }
}

/// Splits matched pids into selectable and protected processes (pure: the
/// process table and the command-line reader are given).
pub fn classify(
    table: &ProcTable,
    pids: &[i32],
    why_none: Option<String>,
    ctx: &FaultContext,
    runner: i32,
    cmdline_of: &dyn Fn(i32) -> String,
) -> Candidates {
    let mut c = Candidates {
        why_none,
        ..Default::default()
    };
    for &pid in pids {
        let Some(info) = table.get(pid) else {
            continue;
        };
        match protection_reason(info, table, ctx, runner) {
            Some(reason) => c.excluded.push(ExcludedProcess {
                pid,
                name: info.comm.clone(),
                reason,
            }),
            None => c.selectable.push(TargetProcess {
                pid,
                start_time: info.start_time,
                name: info.comm.clone(),
                cmdline: cmdline_of(pid),
                uids: None,
            }),
        }
    }
    c.selectable.sort_by_key(|p| p.pid);
    c
}

/// Applies the zero-match, protection, mode and blast-radius rules to the
/// candidates (pure, given the random number generator).
pub fn choose(
    t: &ProcessTarget,
    c: Candidates,
    ctx: &FaultContext,
    rng: &mut TargetRng,
) -> Result<Selection, FaultError> {
    let n = c.selectable.len();
    if n == 0 && !t.allow_none {
        if !c.excluded.is_empty() {
            let list: Vec<String> = c
                .excluded
                .iter()
                .map(|e| format!("pid {} ({}): {}", e.pid, e.name, e.reason))
                .collect();
            return Err(FaultError::precondition(format!(
                "target `{}` matches only protected processes, which are never hit: {}; narrow the selector to the system under test (start it from `setup` to target it while it runs under faultline)",
                t.describe(),
                list.join("; ")
            )));
        }
        let why = c.why_none.map(|w| format!(": {w}")).unwrap_or_default();
        return Err(FaultError::precondition(format!(
            "no process matches target `{}`{why}; check the selector, or set `allow_none: true` if matching nothing is fine",
            t.describe()
        )));
    }
    // Every match counts here, not only the chosen: with `mode: one` the
    // random pick must not decide whether another user's process is hit.
    if let (Some(own), false, false) = (
        c.own_uid,
        ctx.blast_radius.other_users,
        t.names_one_process(),
    ) {
        let theirs: Vec<&TargetProcess> = c
            .selectable
            .iter()
            .filter(|p| p.uids.is_some_and(|(r, e)| r != own || e != own))
            .collect();
        if !theirs.is_empty() {
            let shown: Vec<String> = theirs
                .iter()
                .take(5)
                .map(|p| {
                    let (r, _) = p.uids.unwrap_or_default();
                    format!("pid {} ({}, user {})", p.pid, p.name, user_name(r))
                })
                .collect();
            let more = if theirs.len() > 5 {
                format!(" and {} more", theirs.len() - 5)
            } else {
                String::new()
            };
            return Err(FaultError::precondition(format!(
                "target `{}` matches {} process{} of other users than {} (who runs faultline): {}{more}; narrow the selector, or set `limits.blast_radius.other_users: true` if the experiment means to hit them",
                t.describe(),
                theirs.len(),
                if theirs.len() == 1 { "" } else { "es" },
                user_name(own),
                shown.join(", "),
            )));
        }
    }
    let k = how_many(t.mode, t.count, t.percent, n);
    let mut chosen: Vec<TargetProcess> = if k == n {
        c.selectable
    } else {
        c.selectable.sample(rng, k).cloned().collect()
    };
    chosen.sort_by_key(|p| p.pid);
    let (max, from) = t.limit(ctx);
    if chosen.len() > max as usize {
        return Err(FaultError::precondition(format!(
            "target `{}` would hit {} processes ({n} matched) but the blast-radius limit is {max} ({from}); narrow the selector, use `mode: one`, `count` or `percent`, or raise the limit",
            t.describe(),
            chosen.len(),
        )));
    }
    Ok(Selection {
        matched: n,
        chosen,
        excluded: c.excluded,
    })
}

/// Takes the host-wide lock on every chosen process (a plan only checks
/// them), so that no other run, through any selector or state directory,
/// injects into the same process at the same time.
fn lock_processes(chosen: &[TargetProcess], ctx: &FaultContext) -> Result<(), FaultError> {
    let holder = format!(
        "faultline run {} (runner pid {})",
        ctx.run_id,
        std::process::id()
    );
    for p in chosen {
        let r = crate::sys::hostlock::Resource::process(p.pid, p.start_time);
        crate::sys::hostlock::hold(&r, &holder, ctx.dry_run)
            .map_err(|m| FaultError::precondition(format!("target `{}`: {m}", p.label())))?;
    }
    Ok(())
}

/// `name (uid N)`, or `uid N` when the user has no name.
fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("{} (uid {uid})", u.name),
        _ => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Protected;

    fn p(pid: i32, ppid: i32) -> ProcInfo {
        ProcInfo {
            pid,
            ppid,
            state: 'S',
            start_time: 1000 + pid as u64,
            comm: format!("p{pid}"),
            kernel_thread: false,
        }
    }

    /// 1 init -> 10 shell -> 20 runner -> {30 setup -> 31 worker -> 32, 40 probe -> 41};
    /// 1 -> 50 unrelated; 2 kthreadd -> 3 kworker; 60 zombie.
    fn table() -> ProcTable {
        let mut k = p(3, 2);
        k.kernel_thread = true;
        let mut z = p(60, 1);
        z.state = 'Z';
        ProcTable::from_infos(vec![
            p(1, 0),
            p(2, 0),
            k,
            p(10, 1),
            p(20, 10),
            p(30, 20),
            p(31, 30),
            p(32, 31),
            p(40, 20),
            p(41, 40),
            p(50, 1),
            z,
        ])
    }

    fn ctx() -> FaultContext {
        let mut c = FaultContext {
            protected: Protected {
                pids: [1, 10, 20].into_iter().collect(),
            },
            ..Default::default()
        };
        c.setup_pids.insert("app".into(), 30);
        c
    }

    fn reason(pid: i32) -> Option<String> {
        let t = table();
        protection_reason(t.get(pid).unwrap(), &t, &ctx(), 20)
    }

    #[test]
    fn protection_rules() {
        assert!(reason(1).unwrap().contains("PID 1"));
        assert!(reason(10).unwrap().contains("ancestor"));
        assert!(reason(20).unwrap().contains("runner itself"));
        assert!(reason(3).unwrap().contains("kernel thread"));
        assert!(reason(60).unwrap().contains("zombie"));
        // Probe/action children of the runner, and their children.
        assert!(reason(40).unwrap().contains("not a setup process"));
        assert!(reason(41).unwrap().contains("not a setup process"));
        // The setup process and everything under it stay targetable.
        assert_eq!(reason(30), None);
        assert_eq!(reason(31), None);
        assert_eq!(reason(32), None);
        // Processes outside the runner's tree are targetable.
        assert_eq!(reason(50), None);
    }

    #[test]
    fn without_setup_every_runner_child_is_protected() {
        let t = table();
        let mut c = ctx();
        c.setup_pids.clear();
        assert!(protection_reason(t.get(31).unwrap(), &t, &c, 20).is_some());
    }

    #[test]
    fn counts_per_mode() {
        use TargetMode::*;
        assert_eq!(how_many(All, None, None, 4), 4);
        assert_eq!(how_many(One, None, None, 4), 1);
        assert_eq!(how_many(Count, Some(3), None, 4), 3);
        assert_eq!(how_many(Count, Some(9), None, 4), 4);
        assert_eq!(
            how_many(Percent, None, Some(crate::units::Percent(50.0)), 4),
            2
        );
        assert_eq!(
            how_many(Percent, None, Some(crate::units::Percent(99.0)), 4),
            3
        );
        assert_eq!(
            how_many(Percent, None, Some(crate::units::Percent(10.0)), 4),
            1
        );
        assert_eq!(
            how_many(Percent, None, Some(crate::units::Percent(100.0)), 7),
            7
        );
        assert_eq!(
            how_many(Percent, None, Some(crate::units::Percent(30.0)), 10),
            3
        );
        assert_eq!(how_many(All, None, None, 0), 0);
    }

    fn cands(pids: &[i32]) -> Candidates {
        Candidates {
            selectable: pids
                .iter()
                .map(|&pid| TargetProcess {
                    pid,
                    start_time: 7,
                    name: "w".into(),
                    cmdline: "w 1".into(),
                    uids: Some((0, 0)),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn chosen(
        t: &ProcessTarget,
        c: Candidates,
        ctx: &FaultContext,
    ) -> Result<Vec<i32>, FaultError> {
        choose(t, c, ctx, &mut t.rng()).map(|s| s.chosen.iter().map(|p| p.pid).collect())
    }

    #[test]
    fn seeded_selection_is_repeatable() {
        let t = ProcessTarget {
            mode: TargetMode::Count,
            count: Some(3),
            seed: Some(42),
            ..Default::default()
        };
        let all: Vec<i32> = (100..120).collect();
        let a = chosen(&t, cands(&all), &FaultContext::default()).unwrap();
        let b = chosen(&t, cands(&all), &FaultContext::default()).unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "sorted, distinct: {a:?}");
        // Another seed picks differently (for this input it does).
        let t2 = ProcessTarget {
            seed: Some(7),
            ..t.clone()
        };
        let c = chosen(&t2, cands(&all), &FaultContext::default()).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn limits_zero_matches_and_protected_only() {
        let mut t = ProcessTarget {
            name: Some("w".into()),
            max_targets: Some(2),
            ..Default::default()
        };
        let e = chosen(&t, cands(&[1, 2, 3, 4]), &FaultContext::default()).unwrap_err();
        assert_eq!(e.code, crate::exit::PRECONDITION);
        assert!(
            e.message.contains("would hit 4") && e.message.contains("limit is 2"),
            "{}",
            e.message
        );
        t.max_targets = None;
        let mut ctx = FaultContext::default();
        ctx.blast_radius.max_targets = Some(3);
        let e = chosen(&t, cands(&[1, 2, 3, 4]), &ctx).unwrap_err();
        assert!(
            e.message.contains("limits.blast_radius.max_targets"),
            "{}",
            e.message
        );
        t.mode = TargetMode::One;
        assert_eq!(chosen(&t, cands(&[1, 2, 3, 4]), &ctx).unwrap().len(), 1);

        let e = chosen(&t, cands(&[]), &ctx).unwrap_err();
        assert_eq!(e.code, crate::exit::PRECONDITION);
        assert!(
            e.message
                .contains("no process matches target `name=w (one)`"),
            "{}",
            e.message
        );

        let prot = Candidates {
            excluded: vec![ExcludedProcess {
                pid: 77,
                name: "probe".into(),
                reason: "it is a kernel thread".into(),
            }],
            ..Default::default()
        };
        let e = chosen(&t, prot.clone(), &ctx).unwrap_err();
        assert!(
            e.message.contains("only protected")
                && e.message.contains("pid 77 (probe): it is a kernel thread"),
            "{}",
            e.message
        );
        t.allow_none = true;
        assert_eq!(chosen(&t, prot, &ctx).unwrap(), Vec::<i32>::new());
    }

    #[test]
    fn classify_splits_protected() {
        let t = table();
        let c = classify(&t, &[31, 40, 50, 99], None, &ctx(), 20, &|pid| {
            format!("cmd {pid}")
        });
        let sel: Vec<i32> = c.selectable.iter().map(|p| p.pid).collect();
        assert_eq!(sel, vec![31, 50]);
        assert_eq!(c.selectable[0].start_time, 1031);
        assert_eq!(c.selectable[0].cmdline, "cmd 31");
        assert_eq!(c.excluded.len(), 1);
        assert_eq!(c.excluded[0].pid, 40);
    }

    #[test]
    fn cgroup_paths() {
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(
            cgroup_dir("/sys/fs/cgroup/pids/app", root),
            PathBuf::from("/sys/fs/cgroup/pids/app")
        );
        assert_eq!(
            cgroup_dir("system.slice/a.service", root),
            PathBuf::from("/sys/fs/cgroup/system.slice/a.service")
        );
        assert_eq!(
            cgroup_dir("/system.slice/a.service", root),
            PathBuf::from("/sys/fs/cgroup/system.slice/a.service")
        );
    }

    #[test]
    fn labels() {
        let tp = TargetProcess {
            pid: 4242,
            start_time: 1,
            name: "redis-server".into(),
            cmdline: "/usr/bin/redis-server *:6379".into(),
            uids: None,
        };
        assert_eq!(
            tp.label(),
            "4242 (redis-server: /usr/bin/redis-server *:6379)"
        );
    }

    #[test]
    fn the_default_blast_radius_and_other_users_need_an_opt_in() {
        let ctx = FaultContext::default();
        let all = ProcessTarget {
            name: Some("w".into()),
            ..Default::default()
        };
        let mut rng = TargetRng::seed_from_u64(1);
        // 10 processes are fine, 11 are not without a limit set.
        let pids: Vec<i32> = (100..110).collect();
        assert_eq!(
            choose(&all, cands(&pids), &ctx, &mut rng)
                .unwrap()
                .chosen
                .len(),
            10
        );
        let pids: Vec<i32> = (100..111).collect();
        let e = choose(&all, cands(&pids), &ctx, &mut rng).unwrap_err();
        assert!(e.message.contains("the default blast radius"), "{e}");
        let mut wide = ctx.clone();
        wide.blast_radius.max_targets = Some(11);
        assert_eq!(
            choose(&all, cands(&pids), &wide, &mut rng)
                .unwrap()
                .chosen
                .len(),
            11
        );
        // A process of uid 1000 among root's: refused for patterns, even
        // when `mode: one` might pick another.
        let mut c = cands(&[100, 101]);
        c.own_uid = Some(0);
        c.selectable[1].uids = Some((1000, 1000));
        let one = ProcessTarget {
            mode: TargetMode::One,
            ..all.clone()
        };
        let e = choose(&one, c.clone(), &ctx, &mut rng).unwrap_err();
        assert!(e.message.contains("pid 101"), "{e}");
        assert!(e.message.contains("limits.blast_radius.other_users"), "{e}");
        // A setuid process (effective uid differs) counts as another user's.
        let mut s = c.clone();
        s.selectable[1].uids = Some((0, 1000));
        assert!(choose(&one, s, &ctx, &mut rng).is_err());
        let mut opted = ctx.clone();
        opted.blast_radius.other_users = true;
        assert_eq!(
            choose(&all, c.clone(), &opted, &mut rng)
                .unwrap()
                .chosen
                .len(),
            2
        );
        // A pid names its process: no opt-in needed.
        let by_pid = ProcessTarget {
            pid: Some(101),
            ..Default::default()
        };
        let mut c1 = cands(&[101]);
        c1.own_uid = Some(0);
        c1.selectable[0].uids = Some((1000, 1000));
        assert!(choose(&by_pid, c1, &ctx, &mut rng).is_ok());
    }
}
