//! Faults. Each kind is data first: `plan` lists the exact host operations
//! (for `faultline plan` and the journal) without touching anything; `inject`
//! records each operation's inverse in the undo log BEFORE performing it;
//! `verify` reads the host back to prove the fault landed. Rollback is not a
//! method: the runner (or the watchdog, or `recover`) replays the recorded
//! undo operations, so every path out of a run undoes the same way.

pub mod cgroup;
pub mod container;
pub mod corrupt;
pub mod disk;
pub mod health;
pub mod network;
pub mod process;
pub mod stress;
pub mod syscall;
pub mod target;

use crate::exit;
use crate::experiment::model::{BlastRadius, Fault as FaultSpec};
use crate::journal::undo::UndoOp;
pub use health::FaultHealth;
use std::collections::{BTreeMap, BTreeSet};

/// What every fault may need to know about the run.
#[derive(Clone, Debug, Default)]
pub struct FaultContext {
    pub run_id: String,
    /// Processes no fault may ever touch: PID 1, the runner and its ancestors,
    /// the watchdog, probe and action children of this run.
    pub protected: Protected,
    /// Processes started by `setup`, by name (targets for `target: {setup: NAME}`).
    pub setup_pids: BTreeMap<String, i32>,
    /// Blast-radius limits from `limits.blast_radius`.
    pub blast_radius: BlastRadius,
    /// `true` for `faultline plan`: nothing on the host may change.
    pub dry_run: bool,
    /// `true` during the first preflight of an experiment with `setup`: its
    /// targets may not exist yet. Target checks that fail then are deferred;
    /// the runner runs preflight again right after setup, before injecting.
    pub setup_pending: bool,
}

impl FaultContext {
    /// The run id made safe for file and cgroup names (`[A-Za-z0-9_-]`,
    /// never empty).
    pub fn run_slug(&self) -> String {
        let slug: String = self
            .run_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if slug.is_empty() {
            "run".into()
        } else {
            slug
        }
    }
}

/// Pids that are never selectable, whatever the selector.
#[derive(Clone, Debug, Default)]
pub struct Protected {
    pub pids: BTreeSet<i32>,
}

impl Protected {
    /// PID 1, this process and all its ancestors.
    pub fn for_this_process() -> Self {
        let mut pids = BTreeSet::new();
        pids.insert(1);
        let mut pid = std::process::id() as i32;
        while pid > 1 {
            pids.insert(pid);
            match crate::sys::proc::info(pid) {
                Some(i) => pid = i.ppid,
                None => break,
            }
        }
        Protected { pids }
    }
    pub fn contains(&self, pid: i32) -> bool {
        self.pids.contains(&pid)
    }
}

/// Where a fault writes the inverse of each host change before making it.
pub trait UndoLog {
    /// Appends `op` (with a human description of the target) and syncs it to disk.
    fn record(&mut self, target: &str, op: UndoOp) -> anyhow::Result<()>;
    /// Records many operations at once, durable before it returns; the
    /// journal syncs once for the whole batch and keeps pinned processes
    /// for its rollback.
    fn record_batch(&mut self, items: Vec<crate::journal::store::UndoItem>) -> anyhow::Result<()> {
        for item in items {
            self.record(&item.target, item.op)?;
        }
        Ok(())
    }
    /// Where faults that change files keep byte-exact backups of them (the
    /// run's `STATE/backups/<run>/`); `None` when this log has no state
    /// directory, and such faults then refuse to inject.
    fn backup_dir(&self) -> Option<std::path::PathBuf> {
        None
    }
}

/// One host operation, as shown by `faultline plan`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlannedOp {
    /// What it does, in words.
    pub action: String,
    /// The exact command, when the operation is a command (`tc ...`, `nft ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// How it is undone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<String>,
}

/// Why a fault could not run; `code` is the exit code it maps to.
#[derive(Debug)]
pub struct FaultError {
    pub code: i32,
    pub message: String,
}

impl FaultError {
    /// A missing tool, kernel feature or target (exit 69).
    pub fn precondition(m: impl Into<String>) -> Self {
        FaultError {
            code: exit::PRECONDITION,
            message: m.into(),
        }
    }
    /// Not allowed (exit 77).
    pub fn privileges(m: impl Into<String>) -> Self {
        FaultError {
            code: exit::PRIVILEGES,
            message: m.into(),
        }
    }
    /// The fault did not take effect, or failed midway (the run fails, exit 1).
    pub fn failed(m: impl Into<String>) -> Self {
        FaultError {
            code: exit::DEVIATED,
            message: m.into(),
        }
    }
}

impl std::fmt::Display for FaultError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FaultError {}

impl From<FaultError> for exit::ExitError {
    fn from(e: FaultError) -> Self {
        exit::ExitError::new(e.code, e.message)
    }
}

/// A fault kind's implementation. Calls are blocking; the runner runs them off
/// its async threads.
pub trait FaultImpl: Send {
    /// The fault kind, e.g. `process_pause`.
    fn kind(&self) -> &'static str;
    /// The target in words, e.g. `name=redis-server (all)` or `veth0 in netns app`.
    fn target(&self) -> String;
    /// Checks made before anything is injected: tools, kernel features,
    /// privileges, targets. Read-only. Also run by `faultline plan`.
    fn preflight(&mut self, ctx: &FaultContext) -> Result<(), FaultError>;
    /// The exact operations `inject` will perform, computed without touching
    /// the host (targets resolved as they are now).
    fn plan(&self, ctx: &FaultContext) -> Vec<PlannedOp>;
    /// Performs the fault. Each inverse goes to `undo` before the change is made.
    fn inject(&mut self, ctx: &FaultContext, undo: &mut dyn UndoLog) -> Result<(), FaultError>;
    /// Reads the host back to prove the fault is in effect; returns the evidence.
    fn verify(&mut self, ctx: &FaultContext) -> Result<String, FaultError>;
    /// For faults that act repeatedly (a crash loop): how often to call `tick`.
    fn tick_every(&self) -> Option<std::time::Duration> {
        None
    }
    /// Repeated action while active.
    fn tick(&mut self, _ctx: &FaultContext, _undo: &mut dyn UndoLog) -> Result<(), FaultError> {
        Ok(())
    }
    /// What the fault did since the last call, one line each (a crash
    /// loop's rounds, replacements of killed processes), for the live view.
    fn take_activity(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// Checks, while the fault is active, that it is still in place and what
    /// it delivers; called on the runner's health tick after `verify`.
    /// Read-only: a fault found missing is reported, never re-applied.
    /// `None` when the kind has nothing to watch.
    fn health(&mut self, _ctx: &FaultContext) -> Option<FaultHealth> {
        None
    }
    /// Escalation: changes this injected fault in place to `next` (the same
    /// kind with one parameter changed), e.g. `tc qdisc change` or a cgroup
    /// file rewritten. The undo records written by `inject` still restore
    /// the state from before the first level, so nothing new is recorded.
    /// `Ok(false)`: this kind cannot change in place; the runner rolls the
    /// fault back and injects the next level afresh.
    fn change_to(&mut self, _ctx: &FaultContext, _next: &FaultSpec) -> Result<bool, FaultError> {
        Ok(false)
    }
    /// The operations `change_to(next)` would perform, for `faultline plan`;
    /// `None` when this kind cannot change in place.
    fn plan_change(&self, _ctx: &FaultContext, _next: &FaultSpec) -> Option<Vec<PlannedOp>> {
        None
    }
    /// Called just before the undo operations are replayed, to take final
    /// measurements (OOM kills, achieved load, restarts).
    fn before_rollback(&mut self, _ctx: &FaultContext) {}
    /// Called after the undo operations were replayed: checks the host is back.
    fn verify_rollback(&mut self, _ctx: &FaultContext) -> Result<(), FaultError> {
        Ok(())
    }
    /// What the report should say about this fault: processes hit, measured
    /// load, time to restart, OOM kills... (free-form JSON object).
    fn observations(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Builds the implementation for a fault spec.
pub fn build(spec: &FaultSpec) -> Box<dyn FaultImpl> {
    match spec {
        FaultSpec::ProcessKill(s) => process::build_kill(s),
        FaultSpec::ProcessPause(s) => process::build_pause(s),
        FaultSpec::Network(s) => network::build_network(s),
        FaultSpec::Blackhole(s) => network::build_blackhole(s, false),
        FaultSpec::Partition(s) => network::build_blackhole(s, true),
        FaultSpec::Dns(s) => network::build_dns(s),
        FaultSpec::PacketLoss(s) => network::build_packet_loss(s),
        FaultSpec::Bandwidth(s) => network::build_bandwidth(s),
        FaultSpec::CpuLimit(s) => cgroup::build_cpu_limit(s),
        FaultSpec::MemoryLimit(s) => cgroup::build_memory_limit(s),
        FaultSpec::IoLimit(s) => cgroup::build_io_limit(s),
        FaultSpec::CpuStress(s) => stress::build_cpu_stress(s),
        FaultSpec::MemoryStress(s) => stress::build_memory_stress(s),
        FaultSpec::DiskFill(s) => disk::build_disk_fill(s),
        FaultSpec::FileCorrupt(s) => corrupt::build_file_corrupt(s),
        FaultSpec::SyscallError(s) => syscall::build_syscall_error(s),
    }
}

/// Stand-in for a fault kind whose implementation has not landed yet: it
/// fails preflight with exit 69 and a clear message, and plans nothing.
pub struct NotYetSupported {
    pub kind: &'static str,
    pub target: String,
}

impl FaultImpl for NotYetSupported {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn target(&self) -> String {
        self.target.clone()
    }
    fn preflight(&mut self, _ctx: &FaultContext) -> Result<(), FaultError> {
        Err(FaultError::precondition(format!(
            "the `{}` fault is not supported by this build of faultline yet",
            self.kind
        )))
    }
    fn plan(&self, _ctx: &FaultContext) -> Vec<PlannedOp> {
        vec![PlannedOp {
            action: format!("`{}` is not supported by this build yet", self.kind),
            command: None,
            undo: None,
        }]
    }
    fn inject(&mut self, ctx: &FaultContext, _undo: &mut dyn UndoLog) -> Result<(), FaultError> {
        self.preflight(ctx)
    }
    fn verify(&mut self, ctx: &FaultContext) -> Result<String, FaultError> {
        self.preflight(ctx).map(|_| String::new())
    }
}
