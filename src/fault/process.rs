//! Process faults: `process_kill` (once or as a crash loop) and `process_pause`.
//!
//! Targets are resolved when the fault is injected (and, for display, by
//! `plan`/`preflight`), and every chosen process is remembered by pid AND start
//! time, so neither a later signal nor the undo ever reaches a process that
//! reused the pid. `process_pause` records `ResumeProcess` before each SIGSTOP;
//! `process_kill` has nothing to undo but reports what it hit and how long the
//! system took to start a replacement (found by re-running the selector).

use super::target::TargetRng;
use crate::fault::target::{ExcludedProcess, ProcessTarget, Resolved, TargetProcess};
use crate::fault::{FaultContext, FaultError, FaultImpl, PlannedOp, UndoLog};
use crate::journal::store::UndoItem;
use crate::journal::undo::UndoOp;
use crate::sys::proc::{self as sysproc, PinError, Pinned, SignalOutcome};
use crate::units::{Duration, Signal};
use chrono::{DateTime, Utc};
use nix::sys::signal::Signal as Sig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

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
    /// Each killed process must be replaced (by its supervisor) within this
    /// long: a slower restart, or none, makes the hypothesis DEVIATED. A kill
    /// watched for less than this (too near the step's end) is not judged
    /// and makes the run INCONCLUSIVE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_restart_within: Option<Duration>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessPauseSpec {
    pub target: ProcessTarget,
}

pub fn build_kill(s: &ProcessKillSpec) -> Box<dyn FaultImpl> {
    Box::new(ProcessKill::new(s.clone()))
}

pub fn build_pause(s: &ProcessPauseSpec) -> Box<dyn FaultImpl> {
    Box::new(ProcessPause::new(s.clone()))
}

/// How often a `process_kill` polls for replacements of the processes it killed.
const RESTART_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Signals whose default action ends the process and which programs do not
/// normally survive; for these `verify` checks the processes are gone. Other
/// signals (SIGHUP, SIGUSR1, ...) are often handled (reload, rotate logs), so
/// for them `verify` can only check the signal was delivered.
pub fn terminates(sig: Sig) -> bool {
    use Sig::*;
    matches!(
        sig,
        SIGKILL
            | SIGTERM
            | SIGINT
            | SIGQUIT
            | SIGABRT
            | SIGSEGV
            | SIGBUS
            | SIGILL
            | SIGFPE
            | SIGSYS
            | SIGTRAP
            | SIGXCPU
            | SIGXFSZ
    )
}

/// Signals that stop a process: `process_kill` refuses them, as nothing would
/// resume the processes (`process_pause` does, through its undo).
fn stops(sig: Sig) -> bool {
    matches!(
        sig,
        Sig::SIGSTOP | Sig::SIGTSTP | Sig::SIGTTIN | Sig::SIGTTOU
    )
}

/// The state letter of the process if it is still the one that started at
/// `start_time` and has not exited (zombies count as exited).
fn running_state(pid: i32, start_time: u64) -> Option<char> {
    sysproc::info(pid)
        .filter(|i| i.start_time == start_time && i.state != 'Z' && i.state != 'X')
        .map(|i| i.state)
}

fn is_stopped(state: char) -> bool {
    state == 'T' || state == 't'
}

fn privileges_error(p: &TargetProcess, sig: &str) -> FaultError {
    let owner = sysproc::uids(p.pid)
        .map(|u| u[0].to_string())
        .unwrap_or_else(|| "(unknown)".into());
    let me = nix::unistd::geteuid();
    FaultError::privileges(format!(
        "not allowed to send {sig} to pid {} ({}), owned by uid {owner}: faultline runs as uid {me} without CAP_KILL; run faultline as root, as the process owner (uid {owner}), or with CAP_KILL",
        p.pid, p.name
    ))
}

/// Fails before anything is signalled when one of the processes may not be.
fn check_privileges(chosen: &[TargetProcess], sig: &str) -> Result<(), FaultError> {
    let rights = sysproc::SignalRights::mine();
    for p in chosen {
        if rights.may_signal(p.pid) == Some(false) {
            return Err(privileges_error(p, sig));
        }
    }
    Ok(())
}

/// Sends `sig` if `p` is still the same process: `Ok(true)` sent, `Ok(false)`
/// it is gone (exited, or its pid reused) and was skipped.
fn send(p: &TargetProcess, sig: Sig) -> Result<bool, FaultError> {
    send_via(p, None, sig)
}

/// [`send`], through the process's pidfd when it is pinned.
fn send_via(p: &TargetProcess, pin: Option<&Pinned>, sig: Sig) -> Result<bool, FaultError> {
    let sent = match pin {
        Some(pin) => pin.signal(sig),
        None => sysproc::signal_if_same(p.pid, p.start_time, sig),
    };
    match sent {
        Ok(SignalOutcome::Sent) => Ok(true),
        Ok(SignalOutcome::Gone) => Ok(false),
        Err(nix::errno::Errno::EPERM) => Err(privileges_error(p, sig.as_str())),
        Err(e) => Err(FaultError::failed(format!(
            "sending {} to pid {} failed: {e}",
            sig.as_str(),
            p.label()
        ))),
    }
}

/// The plan of a process fault: one operation per process the target picks now.
/// The operations for the processes the target selects now. `rng` is a copy
/// of the fault's own generator, so an unseeded `one`/`count`/`percent` plan
/// names the same processes that `inject` then hits.
fn plan_ops(
    target: &ProcessTarget,
    mut rng: TargetRng,
    ctx: &FaultContext,
    op: impl Fn(&TargetProcess) -> PlannedOp,
    at_run_time: PlannedOp,
) -> Vec<PlannedOp> {
    let note = |action: String| PlannedOp {
        action,
        command: None,
        undo: None,
    };
    // A container target: first the containers it resolves to.
    let mut ops: Vec<PlannedOp> =
        match crate::fault::container::ContainerFields::container_selector(target) {
            Some(sel) => match crate::fault::container::resolve(&sel) {
                Ok(list) => list.iter().map(|c| note(c.describe())).collect(),
                Err(_) => Vec::new(),
            },
            None => Vec::new(),
        };
    ops.extend(match target.select(ctx, &mut rng) {
        Ok(Resolved::Now(sel)) if sel.chosen.is_empty() => vec![note(format!(
            "nothing: no process matches `{}` now (allow_none)",
            target.describe()
        ))],
        Ok(Resolved::Now(sel)) => sel.chosen.iter().map(op).collect(),
        Ok(Resolved::AtRunTime(_)) => vec![at_run_time],
        Err(e) => vec![note(format!("cannot run: {e}"))],
    });
    ops
}

fn ms_since(t: Option<(Instant, DateTime<Utc>)>) -> u64 {
    t.map(|(i, _)| i.elapsed().as_millis() as u64).unwrap_or(0)
}

/// One signal sent (or attempted) by `process_kill`.
#[derive(Clone, Debug, Serialize)]
struct Hit {
    pid: i32,
    name: String,
    cmdline: String,
    start_time: u64,
    signal: String,
    at: DateTime<Utc>,
    ms_since_inject: u64,
    round: u32,
    /// `signalled`, or `gone` when it exited between selection and the signal.
    outcome: &'static str,
    /// When the signal was sent, in ms since boot (the clock of start times).
    #[serde(skip)]
    boot_ms: u64,
}

/// A process that took the place of a killed one.
#[derive(Clone, Debug, Serialize)]
struct Restart {
    killed_pid: i32,
    killed_at_ms: u64,
    new_pid: i32,
    new_name: String,
    new_start_time: u64,
    /// From the kill to the replacement's start, rounded down to `resolution_ms`.
    restart_ms: u64,
    /// Start times are counted in clock ticks (usually 10 ms).
    resolution_ms: u64,
    /// From the kill to when faultline saw the replacement.
    detected_ms: u64,
}

/// `process_kill`: a signal to each chosen process, once, or every `every` (a
/// crash loop, re-selecting each time).
pub struct ProcessKill {
    spec: ProcessKillSpec,
    rng: TargetRng,
    started: Option<(Instant, DateTime<Utc>)>,
    last_round: Option<Instant>,
    rounds: u32,
    hits: Vec<Hit>,
    last_round_hits: Vec<usize>,
    /// Processes (pid, start time) seen matching; never counted as replacements.
    known: BTreeSet<(i32, u64)>,
    /// Kills (indices into `hits`) still waiting for a replacement, oldest first.
    pending: Vec<usize>,
    restarts: Vec<Restart>,
    excluded: BTreeMap<i32, ExcludedProcess>,
    notes: Vec<String>,
    /// How many hits, restarts and notes `take_activity` already told.
    told: (usize, usize, usize),
    /// With a container target: each container as resolved at injection,
    /// and as the engine reported it before rollback.
    containers: Vec<(
        crate::fault::container::ContainerInfo,
        Option<crate::fault::container::ContainerInfo>,
    )>,
}

impl ProcessKill {
    pub fn new(spec: ProcessKillSpec) -> Self {
        ProcessKill {
            rng: spec.target.rng(),
            spec,
            started: None,
            last_round: None,
            rounds: 0,
            hits: Vec::new(),
            last_round_hits: Vec::new(),
            known: BTreeSet::new(),
            pending: Vec::new(),
            restarts: Vec::new(),
            excluded: BTreeMap::new(),
            notes: Vec::new(),
            told: (0, 0, 0),
            containers: Vec::new(),
        }
    }

    /// The containers' restart policy and restarts, for the report.
    fn container_report(&self) -> Vec<serde_json::Value> {
        self.containers
            .iter()
            .map(|(b, a)| {
                let (what, after_count, after_pid) = match a {
                    Some(a) if a.restart_count > b.restart_count || a.pid != b.pid => (
                        format!(
                            "restarted by the engine (restart policy {}): main pid {} -> {}, restart count {} -> {}",
                            b.restart_policy, b.pid, a.pid, b.restart_count, a.restart_count
                        ),
                        Some(a.restart_count),
                        Some(a.pid),
                    ),
                    Some(a) => (
                        "still running its original main process".to_string(),
                        Some(a.restart_count),
                        Some(a.pid),
                    ),
                    None if b.restart_policy == "no" => (
                        "not running at rollback: its restart policy is `no`, so the engine does not restart it".to_string(),
                        None,
                        None,
                    ),
                    None => (
                        format!(
                            "not running at rollback (restart policy {}: not restarted yet, or removed)",
                            b.restart_policy
                        ),
                        None,
                        None,
                    ),
                };
                json!({
                    "id": b.id,
                    "name": b.name,
                    "restart_policy": b.restart_policy,
                    "pid_before": b.pid,
                    "pid_after": after_pid,
                    "restart_count_before": b.restart_count,
                    "restart_count_after": after_count,
                    "outcome": what,
                })
            })
            .collect()
    }

    fn sig(&self) -> Sig {
        self.spec.signal.0
    }

    fn check_signal(&self) -> Result<(), FaultError> {
        if stops(self.sig()) {
            return Err(FaultError::precondition(format!(
                "process_kill with {} would leave the processes stopped with nothing to resume them; use the `process_pause` fault, which resumes them at rollback",
                self.sig().as_str()
            )));
        }
        Ok(())
    }

    /// One round: select, check privileges, signal. At injection (`strict`)
    /// a selection problem is an error; in a crash loop's later rounds it is
    /// noted and the round skipped (nothing is signalled).
    fn round(&mut self, ctx: &FaultContext, strict: bool) -> Result<(), FaultError> {
        let at_ms = ms_since(self.started);
        self.last_round = Some(Instant::now());
        self.rounds += 1;
        let round = self.rounds;
        let sel = match self.spec.target.select_now(ctx, &mut self.rng) {
            Ok(s) => s,
            Err(e) if !strict => {
                self.notes.push(format!(
                    "round {round} at {at_ms} ms: nothing signalled: {e}"
                ));
                self.last_round_hits.clear();
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let sig = self.sig();
        for e in sel.excluded {
            if !self.hits.iter().any(|h| h.pid == e.pid) {
                self.excluded.entry(e.pid).or_insert(e);
            }
        }
        if sel.chosen.is_empty() {
            self.notes.push(format!(
                "round {round} at {at_ms} ms: no process matched `{}` (allow_none)",
                self.spec.target.describe()
            ));
        }
        check_privileges(&sel.chosen, sig.as_str())?;
        self.last_round_hits.clear();
        for p in sel.chosen {
            self.known.insert((p.pid, p.start_time));
            let boot_ms = sysproc::boot_time_ms();
            let at = Utc::now();
            let ms = ms_since(self.started);
            let sent = send(&p, sig)?;
            if !sent {
                self.notes.push(format!(
                    "pid {} exited before {} reached it; skipped",
                    p.label(),
                    sig.as_str()
                ));
            }
            let idx = self.hits.len();
            self.hits.push(Hit {
                pid: p.pid,
                name: p.name,
                cmdline: p.cmdline,
                start_time: p.start_time,
                signal: sig.as_str().to_string(),
                at,
                ms_since_inject: ms,
                round,
                outcome: if sent { "signalled" } else { "gone" },
                boot_ms,
            });
            self.last_round_hits.push(idx);
            if sent && terminates(sig) {
                self.pending.push(idx);
            }
        }
        Ok(())
    }

    /// Re-runs the selector and pairs each new matching process with the
    /// oldest kill it started after: that is the replacement, and the time
    /// between the kill and its start is the time to restart.
    pub fn poll_restarts(&mut self, ctx: &FaultContext) {
        if self.pending.is_empty() {
            return;
        }
        let Ok(Some(c)) = self.spec.target.candidates(ctx) else {
            return;
        };
        let now_boot = sysproc::boot_time_ms();
        let tick_ms = 1000 / sysproc::clock_ticks_per_sec().max(1);
        let mut fresh: Vec<TargetProcess> = c
            .selectable
            .into_iter()
            .filter(|p| !self.known.contains(&(p.pid, p.start_time)))
            .collect();
        fresh.sort_by_key(|p| (p.start_time, p.pid));
        for p in fresh {
            self.known.insert((p.pid, p.start_time));
            let start_ms = sysproc::ticks_to_ms(p.start_time);
            // Start times are truncated to clock ticks: allow one tick.
            let Some(pos) = self
                .pending
                .iter()
                .position(|&i| start_ms + tick_ms >= self.hits[i].boot_ms)
            else {
                continue; // it was there before any pending kill
            };
            let h = &self.hits[self.pending.remove(pos)];
            self.restarts.push(Restart {
                killed_pid: h.pid,
                killed_at_ms: h.ms_since_inject,
                new_pid: p.pid,
                new_name: p.name,
                new_start_time: p.start_time,
                restart_ms: start_ms.saturating_sub(h.boot_ms),
                resolution_ms: tick_ms,
                detected_ms: now_boot.saturating_sub(h.boot_ms),
            });
            if self.pending.is_empty() {
                break;
            }
        }
    }

    /// `expect_restart_within`, judged on what was seen so far: kills whose
    /// replacement started too late (`slow`), kills watched at least that long
    /// with no replacement (`missing`), and kills watched for less (`unjudged`).
    fn restart_check(&self) -> Option<serde_json::Value> {
        let within = self.spec.expect_restart_within?;
        let within_ms = within.std().as_millis() as u64;
        let now_ms = ms_since(self.started);
        let slow: Vec<serde_json::Value> = self
            .restarts
            .iter()
            .filter(|r| r.restart_ms > within_ms)
            .map(|r| {
                let name = self
                    .hits
                    .iter()
                    .find(|h| h.pid == r.killed_pid && h.ms_since_inject == r.killed_at_ms)
                    .map(|h| h.name.clone())
                    .unwrap_or_default();
                json!({"pid": r.killed_pid, "name": name, "restart_ms": r.restart_ms, "new_pid": r.new_pid})
            })
            .collect();
        let (mut missing, mut unjudged) = (Vec::new(), Vec::new());
        for &i in &self.pending {
            let h = &self.hits[i];
            let watched_ms = now_ms.saturating_sub(h.ms_since_inject);
            let v = json!({"pid": h.pid, "name": h.name, "watched_ms": watched_ms});
            if watched_ms >= within_ms {
                missing.push(v);
            } else {
                unjudged.push(v);
            }
        }
        Some(json!({
            "within_ms": within_ms,
            "kills": self.kills(),
            "restarts": self.restarts.len(),
            "slow": slow,
            "missing": missing,
            "unjudged": unjudged,
        }))
    }

    fn kills(&self) -> usize {
        self.hits
            .iter()
            .filter(|h| h.outcome == "signalled")
            .count()
    }
}

impl FaultImpl for ProcessKill {
    fn kind(&self) -> &'static str {
        "process_kill"
    }

    fn target(&self) -> String {
        self.spec.target.describe()
    }

    fn preflight(&mut self, ctx: &FaultContext) -> Result<(), FaultError> {
        self.check_signal()?;
        match self.spec.target.select(ctx, &mut self.rng.clone())? {
            Resolved::Now(sel) => check_privileges(&sel.chosen, self.sig().as_str()),
            Resolved::AtRunTime(_) => Ok(()),
        }
    }

    fn plan(&self, ctx: &FaultContext) -> Vec<PlannedOp> {
        let sig = self.sig().as_str();
        let mut ops = plan_ops(
            &self.spec.target,
            self.rng.clone(),
            ctx,
            |p| PlannedOp {
                action: format!("{sig} pid {}", p.label()),
                command: None,
                undo: None,
            },
            PlannedOp {
                action: format!(
                    "{sig} the process started by setup `{}` (resolved at run time)",
                    self.spec.target.setup.as_deref().unwrap_or_default()
                ),
                command: None,
                undo: None,
            },
        );
        if let Some(every) = self.spec.every {
            ops.push(PlannedOp {
                action: format!(
                    "then every {every} until the step ends: select `{}` again and send {sig} (a crash loop)",
                    self.spec.target.describe()
                ),
                command: None,
                undo: None,
            });
        }
        ops
    }

    fn inject(&mut self, ctx: &FaultContext, _undo: &mut dyn UndoLog) -> Result<(), FaultError> {
        self.check_signal()?;
        if ctx.dry_run {
            return Ok(());
        }
        self.started = Some((Instant::now(), Utc::now()));
        if let Some(sel) =
            crate::fault::container::ContainerFields::container_selector(&self.spec.target)
        {
            self.containers = crate::fault::container::resolve(&sel)?
                .into_iter()
                .map(|c| (c, None))
                .collect();
        }
        self.round(ctx, true)
    }

    /// For SIGKILL, SIGTERM and other terminating signals: every process of
    /// the last round is gone (exited, a zombie, or its pid reused). For
    /// signals that need not end a process (SIGHUP, SIGUSR1, ...): that
    /// kill(2) succeeded, which is all that can be observed.
    fn verify(&mut self, ctx: &FaultContext) -> Result<String, FaultError> {
        let sig = self.sig();
        let name = sig.as_str();
        if self.started.is_none() {
            return Err(FaultError::failed(
                "process_kill was not injected, so there is nothing to verify",
            ));
        }
        let round: Vec<Hit> = self
            .last_round_hits
            .iter()
            .map(|&i| self.hits[i].clone())
            .filter(|h| h.outcome == "signalled")
            .collect();
        if round.is_empty() {
            let why = self
                .notes
                .last()
                .cloned()
                .unwrap_or_else(|| "no process matched".into());
            return Ok(format!("no process was signalled ({why})"));
        }
        let labels = round
            .iter()
            .map(|h| format!("{} ({})", h.pid, h.name))
            .collect::<Vec<_>>()
            .join(", ");
        if !terminates(sig) {
            return Ok(format!(
                "{name} delivered to {labels} (kill succeeded); {name} does not end a process by itself, so delivery is what is verified"
            ));
        }
        let wait = if sig == Sig::SIGKILL { 3 } else { 10 };
        let deadline = Instant::now() + std::time::Duration::from_secs(wait);
        loop {
            self.poll_restarts(ctx);
            let alive: Vec<&Hit> = round
                .iter()
                .filter(|h| running_state(h.pid, h.start_time).is_some())
                .collect();
            let Some(h) = alive.first() else {
                break;
            };
            if Instant::now() >= deadline {
                return Err(FaultError::failed(format!(
                    "pid {} ({}) is still running {wait} s after {name}: it handles or ignores {name}; use SIGKILL, or check the target",
                    h.pid, h.name
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let pids: BTreeSet<i32> = round.iter().map(|h| h.pid).collect();
        let seen: Vec<String> = self
            .restarts
            .iter()
            .filter(|r| pids.contains(&r.killed_pid))
            .map(|r| {
                format!(
                    "pid {} replaced by {} after {} ms",
                    r.killed_pid, r.new_pid, r.restart_ms
                )
            })
            .collect();
        let restarts = if seen.is_empty() {
            "no replacement seen yet".to_string()
        } else {
            seen.join(", ")
        };
        Ok(format!("{name}: gone: {labels}; {restarts}"))
    }

    fn tick_every(&self) -> Option<std::time::Duration> {
        let poll = match self.spec.every {
            Some(e) if e.std() < RESTART_POLL => e.std(),
            _ => RESTART_POLL,
        };
        Some(poll.max(std::time::Duration::from_millis(10)))
    }

    fn tick(&mut self, ctx: &FaultContext, _undo: &mut dyn UndoLog) -> Result<(), FaultError> {
        if self.started.is_none() || ctx.dry_run {
            return Ok(());
        }
        self.poll_restarts(ctx);
        if let Some(every) = self.spec.every {
            if self.last_round.is_none_or(|t| t.elapsed() >= every.std()) {
                self.round(ctx, false)?;
            }
        }
        Ok(())
    }

    fn before_rollback(&mut self, ctx: &FaultContext) {
        self.poll_restarts(ctx);
        for (b, a) in &mut self.containers {
            // A container its policy restarts may be between its stop and
            // its start right now: give the engine up to 2 s to finish.
            let until = Instant::now() + std::time::Duration::from_secs(2);
            loop {
                *a = crate::sys::docker::inspect(&b.id).ok().flatten();
                if a.is_some() || b.restart_policy == "no" || Instant::now() >= until {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }

    fn take_activity(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for h in &self.hits[self.told.0.min(self.hits.len())..] {
            let what = if h.outcome == "signalled" {
                format!("sent {} to", h.signal)
            } else {
                format!("{} missed (already gone):", h.signal)
            };
            out.push(format!(
                "round {} at {}: {what} pid {} ({})",
                h.round,
                h.at.with_timezone(&chrono::Local).format("%H:%M:%S%.3f"),
                h.pid,
                h.name
            ));
        }
        for r in &self.restarts[self.told.1.min(self.restarts.len())..] {
            out.push(format!(
                "pid {} restarted as pid {} ({}) after {} ms",
                r.killed_pid, r.new_pid, r.new_name, r.restart_ms
            ));
        }
        for n in &self.notes[self.told.2.min(self.notes.len())..] {
            out.push(n.clone());
        }
        self.told = (self.hits.len(), self.restarts.len(), self.notes.len());
        out
    }

    fn observations(&self) -> serde_json::Value {
        let not_restarted: Vec<i32> = self.pending.iter().map(|&i| self.hits[i].pid).collect();
        json!({
            "containers": self.container_report(),
            "target": self.spec.target.describe(),
            "signal": self.sig().as_str(),
            "every": self.spec.every.map(|e| e.to_string()),
            "injected_at": self.started.map(|(_, t)| t),
            "kills": self.kills(),
            "rounds": self.rounds,
            "hits": self.hits,
            "restarts": self.restarts,
            "not_restarted": not_restarted,
            "expect_restart": self.restart_check(),
            "excluded": self.excluded.values().collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }
}

/// One process `process_pause` stopped.
#[derive(Clone, Debug, Serialize)]
struct Paused {
    pid: i32,
    name: String,
    cmdline: String,
    start_time: u64,
    at: DateTime<Utc>,
    ms_since_inject: u64,
}

/// `process_pause`: SIGSTOP each chosen process; the undo (recorded first)
/// sends SIGCONT, only to the same process (pid and start time).
pub struct ProcessPause {
    spec: ProcessPauseSpec,
    rng: TargetRng,
    started: Option<(Instant, DateTime<Utc>)>,
    paused: Vec<Paused>,
    excluded: Vec<ExcludedProcess>,
    notes: Vec<String>,
}

impl ProcessPause {
    pub fn new(spec: ProcessPauseSpec) -> Self {
        ProcessPause {
            rng: spec.target.rng(),
            spec,
            started: None,
            paused: Vec::new(),
            excluded: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// How long a state change (stopped / running again) may take to show in /proc.
const STATE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl FaultImpl for ProcessPause {
    fn kind(&self) -> &'static str {
        "process_pause"
    }

    fn target(&self) -> String {
        self.spec.target.describe()
    }

    fn preflight(&mut self, ctx: &FaultContext) -> Result<(), FaultError> {
        match self.spec.target.select(ctx, &mut self.rng.clone())? {
            Resolved::Now(sel) => check_privileges(&sel.chosen, "SIGSTOP"),
            Resolved::AtRunTime(_) => Ok(()),
        }
    }

    fn plan(&self, ctx: &FaultContext) -> Vec<PlannedOp> {
        plan_ops(
            &self.spec.target,
            self.rng.clone(),
            ctx,
            |p| PlannedOp {
                action: format!("SIGSTOP pid {}", p.label()),
                command: None,
                undo: Some(format!(
                    "SIGCONT pid {} if it still started at {} (clock ticks since boot)",
                    p.pid, p.start_time
                )),
            },
            PlannedOp {
                action: format!(
                    "SIGSTOP the process started by setup `{}` (resolved at run time)",
                    self.spec.target.setup.as_deref().unwrap_or_default()
                ),
                command: None,
                undo: Some(
                    "SIGCONT it if it still has the start time recorded at injection".into(),
                ),
            },
        )
    }

    fn inject(&mut self, ctx: &FaultContext, undo: &mut dyn UndoLog) -> Result<(), FaultError> {
        if ctx.dry_run {
            return Ok(());
        }
        let sel = self.spec.target.select_now(ctx, &mut self.rng)?;
        check_privileges(&sel.chosen, "SIGSTOP")?;
        self.excluded = sel.excluded;
        self.started = Some((Instant::now(), Utc::now()));
        if sel.chosen.is_empty() {
            self.notes.push(format!(
                "no process matched `{}` (allow_none); nothing paused",
                self.spec.target.describe()
            ));
        }
        // Every undo (SIGCONT) is recorded, in one synced batch, before the
        // first SIGSTOP: one fsync for the fault, not one per process. Each
        // process is pinned by a pidfd first and then checked (start time,
        // state): the pause and the runner's rollback signal through it.
        sysproc::make_fd_room(sel.chosen.len());
        let mut chosen = Vec::with_capacity(sel.chosen.len());
        for p in sel.chosen {
            let (state, pin) = match Pinned::open(p.pid, p.start_time) {
                Ok((pin, state)) => (Some(state), Some(Arc::new(pin))),
                Err(PinError::Gone) => (None, None),
                Err(PinError::Unavailable(_)) => (running_state(p.pid, p.start_time), None),
            };
            match state {
                None => {
                    self.notes.push(format!(
                        "pid {} exited before it could be paused; skipped",
                        p.label()
                    ));
                    continue;
                }
                Some(s) if is_stopped(s) => {
                    self.notes.push(format!(
                        "pid {} was already stopped before the fault; left as it was (not resumed at rollback)",
                        p.label()
                    ));
                    continue;
                }
                Some(_) => chosen.push((p, pin)),
            }
        }
        let batch = chosen
            .iter()
            .map(|(p, pin)| UndoItem {
                target: format!("pid {}", p.label()),
                op: UndoOp::ResumeProcess {
                    pid: p.pid,
                    start_time: p.start_time,
                },
                uid: p.uids.map(|(real, _)| real),
                pin: pin.clone(),
            })
            .collect();
        undo.record_batch(batch).map_err(|e| {
            FaultError::failed(format!(
                "cannot record the undo (SIGCONT) for the {} process(es) to pause, so none was paused: {e}",
                chosen.len()
            ))
        })?;
        for (p, pin) in chosen {
            let at = Utc::now();
            if send_via(&p, pin.as_deref(), Sig::SIGSTOP)? {
                self.paused.push(Paused {
                    pid: p.pid,
                    name: p.name,
                    cmdline: p.cmdline,
                    start_time: p.start_time,
                    at,
                    ms_since_inject: ms_since(self.started),
                });
            } else {
                self.notes.push(format!(
                    "pid {} exited before SIGSTOP reached it; skipped",
                    p.label()
                ));
            }
        }
        Ok(())
    }

    /// Every paused process shows state T (stopped) in /proc/PID/stat.
    fn verify(&mut self, _ctx: &FaultContext) -> Result<String, FaultError> {
        if self.started.is_none() {
            return Err(FaultError::failed(
                "process_pause was not injected, so there is nothing to verify",
            ));
        }
        if self.paused.is_empty() {
            let why = self.notes.last().cloned().unwrap_or_default();
            return Ok(format!("no process was paused ({why})"));
        }
        let deadline = Instant::now() + STATE_WAIT;
        loop {
            let mut waiting = None;
            for p in &self.paused {
                match running_state(p.pid, p.start_time) {
                    None => {
                        return Err(FaultError::failed(format!(
                            "pid {} ({}) exited while it was to be paused",
                            p.pid, p.name
                        )))
                    }
                    Some(s) if is_stopped(s) => {}
                    Some(s) => waiting = Some((p, s)),
                }
            }
            let Some((p, s)) = waiting else {
                break;
            };
            if Instant::now() >= deadline {
                return Err(FaultError::failed(format!(
                    "pid {} ({}) is in state {s}, not T (stopped), {} s after SIGSTOP",
                    p.pid,
                    p.name,
                    STATE_WAIT.as_secs()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(format!(
            "stopped (state T): {}",
            self.paused
                .iter()
                .map(|p| format!("{} ({})", p.pid, p.name))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    /// Every paused process is still stopped (state T). One that exited is
    /// not a missing fault (it is no less unavailable); one that runs again
    /// was resumed by someone else.
    fn health(&mut self, _ctx: &FaultContext) -> Option<super::FaultHealth> {
        self.started?;
        let mut exited = Vec::new();
        for p in &self.paused {
            match running_state(p.pid, p.start_time) {
                None => exited.push(p.pid),
                Some(s) if is_stopped(s) => {}
                Some(s) => {
                    return Some(super::FaultHealth::missing(format!(
                        "pid {} ({}) runs again (state {s}): someone sent it SIGCONT",
                        p.pid,
                        crate::sys::text::escape(&p.name).into_owned()
                    )))
                }
            }
        }
        let stopped = self.paused.len() - exited.len();
        Some(super::FaultHealth::present(if exited.is_empty() {
            format!("{stopped} process(es) stopped")
        } else {
            format!("{stopped} process(es) stopped; exited since: {exited:?}")
        }))
    }

    /// Every paused process that still exists runs again (state not T).
    fn verify_rollback(&mut self, _ctx: &FaultContext) -> Result<(), FaultError> {
        let deadline = Instant::now() + STATE_WAIT;
        loop {
            let still = self
                .paused
                .iter()
                .find(|p| running_state(p.pid, p.start_time).is_some_and(is_stopped));
            let Some(p) = still else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(FaultError::failed(format!(
                    "pid {} ({}) is still stopped (state T) after rollback; resume it with `kill -CONT {}`",
                    p.pid, p.name, p.pid
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn observations(&self) -> serde_json::Value {
        json!({
            "target": self.spec.target.describe(),
            "injected_at": self.started.map(|(_, t)| t),
            "paused": self.paused,
            "excluded": self.excluded,
            "notes": self.notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_classes() {
        assert!(terminates(Sig::SIGKILL) && terminates(Sig::SIGTERM));
        assert!(!terminates(Sig::SIGHUP) && !terminates(Sig::SIGUSR1));
        assert!(stops(Sig::SIGSTOP) && !stops(Sig::SIGCONT));
    }

    #[test]
    fn kill_refuses_stop_signals() {
        let spec = ProcessKillSpec {
            target: ProcessTarget {
                pid: Some(999_999),
                ..Default::default()
            },
            signal: Signal(Sig::SIGSTOP),
            every: None,
            expect_restart_within: None,
        };
        let mut f = ProcessKill::new(spec);
        let e = f.preflight(&FaultContext::default()).unwrap_err();
        assert_eq!(e.code, crate::exit::PRECONDITION);
        assert!(e.message.contains("process_pause"), "{}", e.message);
    }

    #[test]
    fn crash_loop_polls_faster_than_it_kills() {
        let mut spec = ProcessKillSpec {
            target: ProcessTarget::default(),
            signal: Signal::default(),
            every: Some(Duration::from_millis(500)),
            expect_restart_within: None,
        };
        assert_eq!(
            ProcessKill::new(spec.clone()).tick_every(),
            Some(RESTART_POLL)
        );
        spec.every = None;
        assert_eq!(
            ProcessKill::new(spec.clone()).tick_every(),
            Some(RESTART_POLL)
        );
        spec.every = Some(Duration::from_millis(30));
        assert_eq!(
            ProcessKill::new(spec).tick_every(),
            Some(std::time::Duration::from_millis(30))
        );
    }
}
