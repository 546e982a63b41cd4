//! The runner: preflight -> setup -> before -> method -> rollback -> after ->
//! teardown -> report. Rollback ALWAYS happens once anything was changed:
//! after an abort, an error, a signal or a panic.
//!
//! Concurrency: one sampling task per probe sends samples to the main loop,
//! which evaluates abort conditions on each; the method runs in its own task;
//! a cancel flag (a `watch` channel) stops waits everywhere at once. Fault
//! calls are blocking and run in `block_in_place`.

pub mod abort;
pub mod builder;
pub mod events;
pub mod live;

use crate::exit;
use crate::experiment::model::{CommandAction, Experiment, Step};
use crate::experiment::Loaded;
use crate::fault::{self, FaultContext, FaultImpl, Protected, UndoLog};
use crate::journal::store::{self, RunHeader, RunJournal, UndoRecord};
use crate::journal::undo::UndoOp;
use crate::journal::watchdog::{self, WatchdogHandle};
use crate::probe::{ProbeContext, ProbeRunner};
use crate::report::record::{Phase, RunRecord, SamplePhase, SampleStatus, StepStatus, Verdict};
use builder::{RecordBuilder, SharedBuilder};
use events::{Emitter, Event, EventSink, ProbeInfo, StepInfo};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Records of setup processes use this fault index.
const SETUP: usize = usize::MAX;

pub struct RunOptions {
    pub state_dir: PathBuf,
    pub run_id: String,
    pub sinks: Vec<Box<dyn EventSink>>,
    pub policy: Policy,
}

/// Which checks gate the run, and when user rollbacks run. faultline's own
/// defaults are all `true` / `Always`; Chaos Toolkit strategies change them.
/// Automatic undo of faults is not affected: it always happens.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// The steady state must hold before the method (else exit 3).
    pub check_before: bool,
    /// Sample after rollback until recovered.
    pub check_after: bool,
    pub user_rollbacks: RollbackPolicy,
    /// Chaos Toolkit's order: check the steady state after the method and
    /// only then run the user rollbacks (faultline's: rollback, then check
    /// recovery). Fault undo is not affected.
    pub check_after_before_rollbacks: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            check_before: true,
            check_after: true,
            user_rollbacks: RollbackPolicy::Always,
            check_after_before_rollbacks: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollbackPolicy {
    /// Whenever the method ran, also after an abort or a signal (faultline's default).
    Always,
    /// Never run user rollbacks.
    Never,
    /// Only when the hypothesis deviated (or the run was aborted).
    Deviated,
    /// Chaos Toolkit's default: unless the run was interrupted or aborted.
    UnlessInterrupted,
}

/// Why the run stopped early, if it did.
#[derive(Clone, Debug, PartialEq)]
enum Stop {
    Abort,
    Signal(i32),
    /// A step failed (fault not injected or not verified, action failed).
    StepFailed(i32, String),
}

/// Everything the phases share.
struct Ctx {
    exp: Experiment,
    emit: Emitter,
    probes: Arc<Vec<ProbeRunner>>,
    journal: Arc<Mutex<RunJournal>>,
    cancel_tx: watch::Sender<bool>,
    cancel_rx: watch::Receiver<bool>,
    /// Set on a second Ctrl-C: don't wait for in-flight probe samples.
    hurry: watch::Sender<bool>,
    stop: Arc<Mutex<Option<Stop>>>,
    fctx: FaultContext,
    /// Filled by setup; read when faults are injected.
    setup_pids: Mutex<BTreeMap<String, i32>>,
    /// Rollbacks that failed or left the host different (manual commands).
    rollback_errors: Mutex<Vec<String>>,
    builder: Arc<Mutex<RecordBuilder>>,
    start: Instant,
    policy: Policy,
}

impl Ctx {
    fn cancelled(&self) -> bool {
        *self.cancel_rx.borrow()
    }
    fn stop_with(&self, s: Stop) {
        let mut g = self.stop.lock().unwrap();
        if g.is_none() {
            *g = Some(s);
        }
        drop(g);
        let _ = self.cancel_tx.send(true);
    }
    fn stop_reason(&self) -> Option<Stop> {
        self.stop.lock().unwrap().clone()
    }
}

/// Writes undo records of one fault into the run's journal.
struct JournalLog<'a> {
    journal: &'a Mutex<RunJournal>,
    fault: usize,
    label: String,
    kind: String,
}

impl UndoLog for JournalLog<'_> {
    fn record(&mut self, target: &str, op: UndoOp) -> anyhow::Result<()> {
        self.journal
            .lock()
            .unwrap()
            .record(self.fault, &self.label, &self.kind, target, op)
            .map(|_| ())
    }
}

/// A preflight failure: the verdict and why.
pub struct PreflightError {
    pub code: i32,
    pub message: String,
}

/// The result of a run: its record (already finished) and its exit code.
pub struct Finished {
    pub record: RunRecord,
    pub exit_code: i32,
}

fn verdict_for_code(code: i32) -> Verdict {
    match code {
        exit::PRIVILEGES => Verdict::Privileges,
        exit::INVALID => Verdict::Invalid,
        exit::PRECONDITION => Verdict::Precondition,
        exit::DEVIATED => Verdict::Deviated,
        _ => Verdict::Precondition,
    }
}

pub fn new_run_id() -> String {
    let now = chrono::Local::now();
    let rand: u16 = rand::random();
    format!("{}-{rand:04x}", now.format("%Y%m%d-%H%M%S"))
}

/// Builds probes and faults and runs every preflight check.
/// The method's faults by step index (`None` for pauses and commands).
type StepFaults = Vec<Option<Box<dyn FaultImpl>>>;

fn preflight(
    exp: &Experiment,
    run_id: &str,
    fctx: &FaultContext,
) -> Result<(Vec<ProbeRunner>, StepFaults), PreflightError> {
    let pctx = ProbeContext {
        run_id: run_id.to_string(),
    };
    let mut probes = Vec::new();
    for p in &exp.steady_state.probes {
        probes.push(ProbeRunner::new(p, &pctx).map_err(|e| PreflightError {
            code: exit::PRECONDITION,
            message: format!("probe `{}` cannot run: {e}", p.name),
        })?);
    }
    for s in &exp.setup {
        if crate::sys::exec::find_program(&s.start[0]).is_none() {
            return Err(PreflightError {
                code: exit::PRECONDITION,
                message: format!(
                    "setup `{}`: program `{}` not found (is it installed and on PATH?)",
                    s.name, s.start[0]
                ),
            });
        }
    }
    let mut faults = Vec::new();
    for (i, step) in exp.method.iter().enumerate() {
        match &step.fault {
            Some(f) => {
                let mut imp = fault::build(f);
                imp.preflight(fctx).map_err(|e| PreflightError {
                    code: e.code,
                    message: format!(
                        "step {} `{}` ({}): {}",
                        i + 1,
                        step.label(i),
                        imp.kind(),
                        e.message
                    ),
                })?;
                faults.push(Some(imp));
            }
            None => faults.push(None),
        }
    }
    Ok((probes, faults))
}

/// Refuses to start when a live run already targets one of our targets.
fn check_conflicts(state_dir: &std::path::Path, targets: &[String]) -> Result<(), PreflightError> {
    let runs = store::read_all(state_dir).map_err(|e| PreflightError {
        code: exit::PRECONDITION,
        message: format!("{e:#}"),
    })?;
    for st in runs {
        if !st.is_live() {
            continue;
        }
        let Some(h) = &st.header else { continue };
        if let Some(t) = targets.iter().find(|t| h.targets.contains(t)) {
            return Err(PreflightError {
                code: exit::PRECONDITION,
                message: format!(
                    "run {} (pid {}, \"{}\") is already injecting into {t}; wait for it to end or stop it first",
                    h.run_id, h.runner_pid, h.title
                ),
            });
        }
    }
    Ok(())
}

/// Target keys for conflict detection; targets of this run's own setup
/// processes are private to it.
fn target_keys(faults: &[Option<Box<dyn FaultImpl>>]) -> Vec<String> {
    faults
        .iter()
        .flatten()
        .map(|f| f.target())
        .filter(|t| !t.starts_with("setup="))
        .collect()
}

/// Runs the experiment. `confirm` is asked (after preflight, before anything
/// changes) whether to go on.
pub async fn run(
    loaded: &Loaded,
    opts: RunOptions,
    confirm: impl FnOnce(&Experiment) -> bool,
) -> Finished {
    let exp = loaded.experiment.clone();
    let start = Instant::now();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let builder = Arc::new(Mutex::new(RecordBuilder::new(
        &opts.run_id,
        &loaded.file,
        &host,
    )));
    let mut sinks = opts.sinks;
    sinks.push(Box::new(SharedBuilder(builder.clone())));
    let emit = Emitter::new(&opts.run_id, start, sinks);

    let mut fctx = FaultContext {
        run_id: opts.run_id.clone(),
        protected: Protected::for_this_process(),
        setup_pids: BTreeMap::new(),
        blast_radius: exp.limits.blast_radius.clone(),
        dry_run: false,
        setup_pending: !exp.setup.is_empty(),
    };

    let probe_infos = |probes: &[ProbeRunner]| -> Vec<ProbeInfo> {
        probes
            .iter()
            .map(|p| ProbeInfo {
                name: p.name.clone(),
                kind: p.kind.name().to_string(),
                target: p.describe(),
            })
            .collect()
    };
    let steps: Vec<StepInfo> = exp
        .method
        .iter()
        .enumerate()
        .map(|(i, s)| StepInfo {
            label: s.label(i),
            kind: step_kind(s).to_string(),
        })
        .collect();

    // Preflight.
    let pre = preflight(&exp, &opts.run_id, &fctx);
    let started = |probes: Vec<ProbeInfo>| Event::RunStarted {
        title: exp.title.clone(),
        hypothesis: exp.hypothesis.clone(),
        file: loaded.file.clone(),
        probes,
        steps: steps.clone(),
    };
    let (probes, faults) = match pre {
        Ok(v) => v,
        Err(e) => {
            emit.emit(started(vec![]));
            return finish_early(&emit, &builder, verdict_for_code(e.code), e.code, e.message);
        }
    };
    emit.emit(started(probe_infos(&probes)));
    emit.emit(Event::PhaseStarted {
        phase: Phase::Preflight,
    });
    let targets = target_keys(&faults);
    let _lock = match store::StateLock::acquire(&opts.state_dir) {
        Ok(l) => l,
        Err(e) => {
            let code = if nix::unistd::geteuid().is_root() {
                exit::PRECONDITION
            } else {
                exit::PRIVILEGES
            };
            return finish_early(
                &emit,
                &builder,
                verdict_for_code(code),
                code,
                format!("{e:#}"),
            );
        }
    };
    if let Err(e) = check_conflicts(&opts.state_dir, &targets) {
        return finish_early(&emit, &builder, Verdict::Precondition, e.code, e.message);
    }
    if !confirm(&exp) {
        return finish_early(
            &emit,
            &builder,
            Verdict::Interrupted,
            exit::INTERRUPTED,
            "not confirmed; nothing was changed".into(),
        );
    }
    // Register the run (synced) and start the watchdog before changing anything.
    let me = std::process::id() as i32;
    let header = RunHeader {
        run_id: opts.run_id.clone(),
        title: exp.title.clone(),
        file: loaded.file.clone(),
        runner_pid: me,
        runner_start_time: crate::sys::proc::start_time(me).unwrap_or(0),
        started_at: chrono::Utc::now(),
        deadline: chrono::Utc::now()
            + chrono::Duration::from_std(exp.limits.max_duration.std())
                .unwrap_or(chrono::Duration::MAX),
        targets,
    };
    let journal = match RunJournal::create(&opts.state_dir, header) {
        Ok(j) => j,
        Err(e) => {
            return finish_early(
                &emit,
                &builder,
                Verdict::Precondition,
                exit::PRECONDITION,
                format!("{e:#}"),
            )
        }
    };
    drop(_lock);
    let journal_path = journal.path().to_path_buf();
    set_panic_run(Some(journal_path.clone()));
    let wd = match watchdog::spawn(&opts.state_dir, &opts.run_id) {
        Ok(w) => w,
        Err(e) => {
            let _ = store::finish(journal);
            set_panic_run(None);
            return finish_early(
                &emit,
                &builder,
                Verdict::Precondition,
                exit::PRECONDITION,
                format!("{e:#}"),
            );
        }
    };
    fctx.protected.pids.insert(wd.pid);
    emit.emit(Event::PhaseEnded {
        phase: Phase::Preflight,
    });

    let (cancel_tx, cancel_rx) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        exp,
        emit,
        probes: Arc::new(probes),
        journal: Arc::new(Mutex::new(journal)),
        cancel_tx,
        cancel_rx,
        hurry: watch::channel(false).0,
        stop: Arc::new(Mutex::new(None)),
        fctx,
        setup_pids: Mutex::new(BTreeMap::new()),
        rollback_errors: Mutex::new(Vec::new()),
        builder: builder.clone(),
        start,
        policy: opts.policy,
    });
    let signals = tokio::spawn(watch_signals(ctx.clone()));
    let deadline = tokio::spawn(watch_deadline(ctx.clone()));

    let code = run_phases(ctx.clone(), faults, wd, &journal_path).await;
    signals.abort();
    deadline.abort();
    set_panic_run(None);
    let record = builder.lock().unwrap().finish();
    Finished {
        record,
        exit_code: code,
    }
}

fn step_kind(s: &Step) -> &'static str {
    if let Some(f) = &s.fault {
        f.kind_name()
    } else if s.pause.is_some() {
        "pause"
    } else if s.http.is_some() {
        "http"
    } else {
        "command"
    }
}

fn finish_early(
    emit: &Emitter,
    builder: &Arc<Mutex<RecordBuilder>>,
    verdict: Verdict,
    code: i32,
    reason: String,
) -> Finished {
    emit.emit(Event::RunFinished {
        verdict,
        exit_code: code,
        reason,
    });
    let record = builder.lock().unwrap().finish();
    Finished {
        record,
        exit_code: code,
    }
}

/// The phases after preflight. Returns the exit code.
async fn run_phases(
    ctx: Arc<Ctx>,
    mut faults: Vec<Option<Box<dyn FaultImpl>>>,
    wd: WatchdogHandle,
    journal_path: &std::path::Path,
) -> i32 {
    maybe_test_panic("setup");
    // Setup.
    ctx.emit.emit(Event::PhaseStarted {
        phase: Phase::Setup,
    });
    let mut setup_ok = setup(&ctx).await;
    if setup_ok.is_ok() && !ctx.exp.setup.is_empty() && !ctx.cancelled() {
        // Targets may be processes that setup started: check them now.
        setup_ok = preflight_after_setup(&ctx, &mut faults);
    }
    ctx.emit.emit(Event::PhaseEnded {
        phase: Phase::Setup,
    });

    let mut steady_before = false;
    let mut method_ran = false;
    let mut during_ok = true;
    if setup_ok.is_ok() && !ctx.cancelled() {
        ctx.emit.emit(Event::PhaseStarted {
            phase: Phase::Before,
        });
        steady_before = if ctx.policy.check_before {
            before(&ctx).await
        } else {
            true
        };
        ctx.emit.emit(Event::PhaseEnded {
            phase: Phase::Before,
        });
        if steady_before && !ctx.cancelled() {
            maybe_test_panic("method");
            let (ok, _injected) = method(&ctx, faults).await;
            during_ok = ok;
            method_ran = true;
        }
    }

    // Chaos Toolkit's order: the after check comes before user rollbacks.
    let mut recovered = true;
    let mut after_done = false;
    let mut early_undo = Vec::new();
    if ctx.policy.check_after_before_rollbacks
        && method_ran
        && ctx.policy.check_after
        && !matches!(ctx.stop_reason(), Some(Stop::Signal(_)))
    {
        // Faults are undone first, whatever the order of the rest.
        early_undo = rollback_pending(&ctx, None, "runner");
        ctx.emit.emit(Event::PhaseStarted {
            phase: Phase::After,
        });
        recovered = after(&ctx).await;
        ctx.emit.emit(Event::PhaseEnded {
            phase: Phase::After,
        });
        after_done = true;
    }

    // Rollback: everything still pending from faults (newest first), then the
    // user's rollbacks (when the method ran).
    ctx.emit.emit(Event::PhaseStarted {
        phase: Phase::Rollback,
    });
    let rollback_start = Instant::now();
    let mut rollback_failures = std::mem::take(&mut *ctx.rollback_errors.lock().unwrap());
    rollback_failures.extend(early_undo);
    rollback_failures.extend(rollback_pending(&ctx, None, "runner"));
    let stop = ctx.stop_reason();
    let run_user_rollbacks = method_ran
        && match ctx.policy.user_rollbacks {
            RollbackPolicy::Always => true,
            RollbackPolicy::Never => false,
            RollbackPolicy::Deviated => !during_ok || !recovered || stop.is_some(),
            RollbackPolicy::UnlessInterrupted => {
                !matches!(stop, Some(Stop::Signal(_)) | Some(Stop::Abort))
            }
        };
    if run_user_rollbacks {
        for (i, r) in ctx.exp.rollbacks.iter().enumerate() {
            run_action(&ctx, r, &format!("rollback {}", i + 1), true).await;
        }
    }
    ctx.emit.emit(Event::PhaseEnded {
        phase: Phase::Rollback,
    });
    let rollback_ms = rollback_start.elapsed().as_secs_f64() * 1000.0;
    ctx.builder.lock().unwrap().rec.timings.rollback_ms = Some(rollback_ms);

    // After: whenever the method ran and we were not interrupted.
    let interrupted = matches!(ctx.stop_reason(), Some(Stop::Signal(_)));
    if method_ran && !interrupted && ctx.policy.check_after && !after_done {
        ctx.emit.emit(Event::PhaseStarted {
            phase: Phase::After,
        });
        recovered = after(&ctx).await;
        ctx.emit.emit(Event::PhaseEnded {
            phase: Phase::After,
        });
    }

    // Teardown: stop setup processes, newest first.
    ctx.emit.emit(Event::PhaseStarted {
        phase: Phase::Teardown,
    });
    rollback_failures.extend(rollback_pending(&ctx, Some(SETUP), "teardown"));
    ctx.emit.emit(Event::PhaseEnded {
        phase: Phase::Teardown,
    });

    // The verdict.
    let stop = ctx.stop_reason();
    let (verdict, code, reason) = if !rollback_failures.is_empty() {
        ctx.builder.lock().unwrap().rec.manual_recovery = rollback_failures.clone();
        (
            Verdict::RollbackFailed,
            exit::ROLLBACK_FAILED,
            format!(
                "{} undo operation(s) failed; faults may remain. Run `faultline recover`, or by hand: {}",
                rollback_failures.len(),
                rollback_failures.join("; ")
            ),
        )
    } else if let Some(Stop::Signal(sig)) = stop {
        let name = nix::sys::signal::Signal::try_from(sig)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| sig.to_string());
        (
            Verdict::Interrupted,
            128 + sig,
            format!("interrupted by {name}; everything was rolled back"),
        )
    } else if let Err(e) = setup_ok {
        (verdict_for_code(e.code), e.code, e.message)
    } else if stop == Some(Stop::Abort) {
        let a = ctx.builder.lock().unwrap().rec.abort.clone();
        (
            Verdict::Aborted,
            exit::ABORTED,
            match a {
                Some(a) => format!(
                    "aborted: {} ({}); everything was rolled back",
                    a.condition, a.reason
                ),
                None => "aborted; everything was rolled back".into(),
            },
        )
    } else if !steady_before {
        (
            Verdict::NotSteady,
            exit::NOT_STEADY,
            not_steady_reason(&ctx),
        )
    } else if let Some(Stop::StepFailed(code, msg)) = stop {
        (verdict_for_code(code), code, msg)
    } else if !during_ok || !recovered {
        (Verdict::Deviated, exit::DEVIATED, deviation_reason(&ctx))
    } else {
        (Verdict::Held, exit::HELD, held_reason(&ctx))
    };
    ctx.emit.emit(Event::RunFinished {
        verdict,
        exit_code: code,
        reason,
    });

    // Close the journal: the watchdog is told the run ended.
    let finished = ctx.journal.lock().unwrap().finish();
    if let Err(e) = finished {
        ctx.emit.emit(Event::Note {
            message: format!("warning: {e:#}"),
        });
    }
    wd.finish();
    let log = journal_path.with_extension("watchdog.log");
    if !journal_path.exists() {
        let _ = std::fs::remove_file(log);
    }
    code
}

/// `850ms`, `3.2s`.
pub fn human_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{:.1}s", ms / 1000.0)
    }
}

fn not_steady_reason(ctx: &Ctx) -> String {
    let b = ctx.builder.lock().unwrap();
    let failing: Vec<String> = b
        .rec
        .probes
        .iter()
        .filter(|p| p.before.met == Some(false))
        .map(|p| {
            let last = p
                .samples
                .iter()
                .rev()
                .find(|s| s.phase == SamplePhase::Before && s.status != SampleStatus::Success)
                .map(|s| s.detail.clone())
                .unwrap_or_default();
            format!("`{}` ({last})", p.name)
        })
        .collect();
    if failing.is_empty() {
        "the steady state could not be measured; nothing was injected".into()
    } else {
        format!(
            "steady state not met before injection: {}; nothing was injected",
            failing.join(", ")
        )
    }
}

fn deviation_reason(ctx: &Ctx) -> String {
    let b = ctx.builder.lock().unwrap();
    let mut parts = Vec::new();
    for p in &b.rec.probes {
        if p.during.met == Some(false) {
            parts.push(format!(
                "`{}` during the method: {}",
                p.name,
                p.during.requirement.clone().unwrap_or_default()
            ));
        }
        if p.after.met == Some(false) {
            parts.push(format!(
                "`{}` did not recover ({})",
                p.name,
                p.after.requirement.clone().unwrap_or_default()
            ));
        }
    }
    if parts.is_empty() {
        "the hypothesis deviated".into()
    } else {
        parts.join("; ")
    }
}

fn held_reason(ctx: &Ctx) -> String {
    let b = ctx.builder.lock().unwrap();
    let rec: Vec<String> = b
        .rec
        .probes
        .iter()
        .filter_map(|p| {
            p.recovered_after_ms
                .map(|ms| format!("`{}` recovered {} after rollback", p.name, human_ms(ms)))
        })
        .collect();
    if rec.is_empty() {
        "every probe met its requirements".into()
    } else {
        rec.join(", ")
    }
}

/// Replays pending undo records (all faults' when `only` is None, else that
/// index's). Returns the manual commands for operations that failed.
fn rollback_pending(ctx: &Ctx, only: Option<usize>, by: &str) -> Vec<String> {
    let mut j = ctx.journal.lock().unwrap();
    let records: Vec<UndoRecord> = j
        .pending()
        .into_iter()
        .filter(|r| match only {
            Some(i) => r.fault == i,
            None => r.fault != SETUP,
        })
        .collect();
    if records.is_empty() {
        return vec![];
    }
    let results = tokio::task::block_in_place(|| j.replay(&records, by, 5));
    results
        .into_iter()
        .filter_map(|r| {
            r.result
                .err()
                .map(|e| format!("{} ({e})", r.record.op.manual_command()))
        })
        .collect()
}

// ---------------------------------------------------------------- setup

async fn setup(ctx: &Arc<Ctx>) -> Result<(), PreflightError> {
    let pctx = ProbeContext {
        run_id: ctx.fctx.run_id.clone(),
    };
    let mut setup_pids = BTreeMap::new();
    for s in &ctx.exp.setup {
        if ctx.cancelled() {
            break;
        }
        let mut cmd = crate::sys::exec::command(&s.start, s.cwd.as_deref(), &s.env);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(false);
        let mut child = cmd.spawn().map_err(|e| PreflightError {
            code: exit::PRECONDITION,
            message: format!(
                "setup `{}`: cannot start `{}`: {e}",
                s.name,
                s.start.join(" ")
            ),
        })?;
        let pid = child.id().unwrap_or(0) as i32;
        let start_time = crate::sys::proc::start_time(pid).unwrap_or(0);
        let grace_ms = s.stop_timeout.std().as_millis() as u64;
        {
            let mut j = ctx.journal.lock().unwrap();
            let _ = j.record(
                SETUP,
                &s.name,
                "setup",
                &format!("pid {pid} ({})", s.start.join(" ")),
                UndoOp::StopProcessGroup {
                    pgid: pid,
                    start_time,
                    grace_ms,
                    signal: s.stop_signal.map(|sig| sig.number()),
                },
            );
        }
        ctx.emit.emit(Event::SetupStarted {
            name: s.name.clone(),
            pid,
            command: s.start.clone(),
        });
        let stderr = child.stderr.take();
        // Keep the last lines of its stderr for error messages.
        let err_tail = Arc::new(Mutex::new(String::new()));
        {
            let tail = err_tail.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                if let Some(e) = stderr {
                    let mut lines = tokio::io::BufReader::new(e).lines();
                    while let Ok(Some(l)) = lines.next_line().await {
                        let mut t = tail.lock().unwrap();
                        t.push_str(&l);
                        t.push('\n');
                        if t.len() > 4096 {
                            let cut = t.len() - 2048;
                            t.drain(..cut);
                        }
                    }
                }
            });
        }
        let t0 = Instant::now();
        let ready = match &s.ready {
            Some(r) => {
                let probe =
                    ProbeRunner::for_ready(&s.name, r, &pctx).map_err(|e| PreflightError {
                        code: exit::PRECONDITION,
                        message: format!("setup `{}`: ready check cannot run: {e}", s.name),
                    })?;
                let deadline = t0 + r.timeout.std();
                let mut last;
                loop {
                    if let Ok(Some(st)) = child.try_wait() {
                        break Err(format!("exited ({st}) before it was ready"));
                    }
                    let sample = probe.sample().await;
                    if sample.is_success() {
                        break Ok(());
                    }
                    last = sample.detail;
                    if Instant::now() >= deadline {
                        break Err(format!(
                            "not ready within {} (last check: {last})",
                            r.timeout
                        ));
                    }
                    let mut rx = ctx.cancel_rx.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = rx.wait_for(|c| *c) => break Err("interrupted".into()),
                    }
                }
            }
            None => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                match child.try_wait() {
                    Ok(Some(st)) => Err(format!("exited ({st}) right after starting")),
                    _ => Ok(()),
                }
            }
        };
        // The child is reaped by tokio when dropped? No: keep it in a task that waits.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        if let Err(e) = ready {
            if ctx.cancelled() {
                break;
            }
            let tail = crate::sys::exec::tail(&err_tail.lock().unwrap(), 5);
            return Err(PreflightError {
                code: exit::PRECONDITION,
                message: format!(
                    "setup `{}` (`{}`): {e}{}",
                    s.name,
                    s.start.join(" "),
                    if tail.is_empty() {
                        String::new()
                    } else {
                        format!("; its last output: {tail}")
                    }
                ),
            });
        }
        ctx.emit.emit(Event::SetupReady {
            name: s.name.clone(),
            ready_ms: t0.elapsed().as_secs_f64() * 1000.0,
        });
        setup_pids.insert(s.name.clone(), pid);
    }
    *ctx.setup_pids.lock().unwrap() = setup_pids;
    Ok(())
}

/// The fault preflight again, now that setup's processes exist.
fn preflight_after_setup(ctx: &Ctx, faults: &mut StepFaults) -> Result<(), PreflightError> {
    let mut fctx = ctx.fctx.clone();
    fctx.setup_pending = false;
    fctx.setup_pids = ctx.setup_pids.lock().unwrap().clone();
    for (i, f) in faults.iter_mut().enumerate() {
        if let Some(imp) = f {
            tokio::task::block_in_place(|| imp.preflight(&fctx)).map_err(|e| PreflightError {
                code: e.code,
                message: format!(
                    "step {} `{}` ({}): {}",
                    i + 1,
                    ctx.exp.method[i].label(i),
                    imp.kind(),
                    e.message
                ),
            })?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- sampling

fn emit_sample(ctx: &Ctx, idx: usize, phase: SamplePhase, s: &crate::probe::Sample) {
    ctx.emit.emit(Event::Sample {
        probe: idx,
        name: ctx.probes[idx].name.clone(),
        phase,
        latency_ms: s.latency.as_secs_f64() * 1000.0,
        status: s.status,
        detail: s.detail.clone(),
    });
}

/// Takes a sample; `None` when a second interrupt says not to wait for it.
async fn sample_unless_hurried(ctx: &Ctx, i: usize) -> Option<crate::probe::Sample> {
    let mut hurry = ctx.hurry.subscribe();
    if *hurry.borrow() {
        return None;
    }
    tokio::select! {
        s = ctx.probes[i].sample() => Some(s),
        _ = hurry.wait_for(|h| *h) => None,
    }
}

/// Waits `d`, or less when cancelled. Returns false when cancelled.
async fn sleep_or_cancel(ctx: &Ctx, d: Duration) -> bool {
    let mut rx = ctx.cancel_rx.clone();
    if *rx.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = rx.wait_for(|c| *c) => false,
    }
}

async fn before(ctx: &Arc<Ctx>) -> bool {
    let interval = ctx.exp.steady_state.interval.std();
    let mut tasks = Vec::new();
    for (i, spec) in ctx.exp.steady_state.probes.iter().enumerate() {
        let ctx = ctx.clone();
        let n = spec.before.samples;
        let min = spec.before.min_success;
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u32;
            let mut taken = 0u32;
            let mut next = tokio::time::Instant::now();
            for _ in 0..n {
                if ctx.cancelled() {
                    break;
                }
                let Some(s) = sample_unless_hurried(&ctx, i).await else {
                    break;
                };
                emit_sample(&ctx, i, SamplePhase::Before, &s);
                taken += 1;
                if s.is_success() {
                    ok += 1;
                }
                next += interval;
                if taken < n {
                    let mut rx = ctx.cancel_rx.clone();
                    tokio::select! {
                        _ = tokio::time::sleep_until(next) => {}
                        _ = rx.wait_for(|c| *c) => break,
                    }
                }
            }
            let met = taken == n && (ok as f64) >= min.fraction() * n as f64 - 1e-9;
            ctx.builder.lock().unwrap().set_requirement(
                i,
                SamplePhase::Before,
                format!("at least {min} of {n} samples succeed"),
                Some(met),
            );
            met
        }));
    }
    let mut all = true;
    for t in tasks {
        all &= t.await.unwrap_or(false);
    }
    ctx.emit.emit(Event::SteadyState {
        phase: SamplePhase::Before,
        held: all,
        detail: if all {
            "steady state holds".into()
        } else {
            "steady state does not hold; nothing will be injected".into()
        },
    });
    all
}

/// Samples every probe at the interval until `stop` turns true, sending each
/// sample's index, status and latency to `tx`.
fn spawn_samplers(
    ctx: &Arc<Ctx>,
    stop: watch::Receiver<bool>,
    tx: mpsc::UnboundedSender<(usize, SampleStatus, f64, String)>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let interval = ctx.exp.steady_state.interval.std();
    (0..ctx.probes.len())
        .map(|i| {
            let ctx = ctx.clone();
            let tx = tx.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let mut next = tokio::time::Instant::now();
                loop {
                    if *stop.borrow() {
                        break;
                    }
                    let s = tokio::select! {
                        s = ctx.probes[i].sample() => s,
                        _ = stop.wait_for(|v| *v) => break,
                    };
                    emit_sample(&ctx, i, SamplePhase::During, &s);
                    let _ = tx.send((
                        i,
                        s.status,
                        s.latency.as_secs_f64() * 1000.0,
                        s.detail.clone(),
                    ));
                    next += interval;
                    let now = tokio::time::Instant::now();
                    if next < now {
                        // A slow sample: start the next one at once, no backlog.
                        next = now;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep_until(next) => {}
                        _ = stop.wait_for(|v| *v) => break,
                    }
                }
            })
        })
        .collect()
}

// ---------------------------------------------------------------- method

/// Runs the method with probes sampling and abort conditions checked.
/// Returns (during requirements met, anything injected).
async fn method(ctx: &Arc<Ctx>, faults: Vec<Option<Box<dyn FaultImpl>>>) -> (bool, bool) {
    ctx.emit.emit(Event::PhaseStarted {
        phase: Phase::Method,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let samplers = spawn_samplers(ctx, stop_rx, tx);
    let injected = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let exec = {
        let ctx = ctx.clone();
        let injected = injected.clone();
        tokio::spawn(async move { execute_steps(ctx, faults, injected).await })
    };
    tokio::pin!(exec);

    let mut histories: Vec<abort::History> = (0..ctx.probes.len())
        .map(|_| abort::History::default())
        .collect();
    let mut during: Vec<(u32, u32)> = vec![(0, 0); ctx.probes.len()];
    let exec_result = loop {
        tokio::select! {
            r = &mut exec => break r,
            Some((i, status, latency, _detail)) = rx.recv() => {
                during[i].0 += 1;
                if status == SampleStatus::Success { during[i].1 += 1; }
                histories[i].push(status, latency);
                if ctx.cancelled() { continue; }
                let name = &ctx.probes[i].name;
                for cond in ctx.exp.abort.iter().filter(|c| &c.probe == name) {
                    if let Some(reason) = abort::evaluate(cond, &histories[i]) {
                        ctx.emit.emit(Event::AbortTriggered {
                            probe: name.clone(),
                            condition: cond.describe(),
                            reason,
                        });
                        ctx.stop_with(Stop::Abort);
                        break;
                    }
                }
            }
        }
    };
    if let Err(e) = exec_result {
        // A panic inside the method task: the panic hook already replayed
        // the undo records; record it as a failed step.
        ctx.stop_with(Stop::StepFailed(
            exit::INTERNAL,
            format!("internal error in the method: {e}"),
        ));
    }
    // Keep sampling through rollback so the record shows it; the caller
    // rolls back right after this returns, so stop samplers now unless hurrying.
    let _ = stop_tx.send(true);
    if *ctx.hurry.borrow() {
        for s in &samplers {
            s.abort();
        }
    }
    for s in samplers {
        let _ = s.await;
    }
    while let Ok((i, status, _, _)) = rx.try_recv() {
        during[i].0 += 1;
        if status == SampleStatus::Success {
            during[i].1 += 1;
        }
    }
    ctx.emit.emit(Event::PhaseEnded {
        phase: Phase::Method,
    });

    let mut ok = true;
    for (i, spec) in ctx.exp.steady_state.probes.iter().enumerate() {
        if let Some(req) = &spec.during {
            let (n, good) = during[i];
            let met = n > 0 && good as f64 >= req.min_success.fraction() * n as f64 - 1e-9;
            ok &= met;
            ctx.builder.lock().unwrap().set_requirement(
                i,
                SamplePhase::During,
                format!(
                    "at least {} of samples succeed (got {good}/{n})",
                    req.min_success
                ),
                Some(met),
            );
        }
    }
    (ok, injected.load(std::sync::atomic::Ordering::SeqCst))
}

async fn execute_steps(
    ctx: Arc<Ctx>,
    mut faults: Vec<Option<Box<dyn FaultImpl>>>,
    injected: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut background: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let (method_over_tx, method_over_rx) = watch::channel(false);
    for (i, step) in ctx.exp.method.iter().enumerate() {
        if ctx.cancelled() {
            break;
        }
        let label = step.label(i);
        ctx.emit.emit(Event::StepStarted {
            index: i,
            label: label.clone(),
            kind: step_kind(step).to_string(),
        });
        if let Some(d) = step.pause {
            let completed = sleep_or_cancel(&ctx, d.std()).await;
            ctx.emit.emit(Event::StepEnded {
                index: i,
                status: if completed {
                    StepStatus::Completed
                } else {
                    StepStatus::Interrupted
                },
                detail: String::new(),
            });
        } else if step.command.is_some() || step.http.is_some() {
            if step.background {
                let ctx2 = ctx.clone();
                let step = step.clone();
                let label = label.clone();
                background.push(tokio::spawn(async move {
                    run_action_step(&ctx2, i, &step, &label).await;
                }));
            } else if !run_action_step(&ctx, i, step, &label).await {
                break;
            }
        } else if let Some(imp) = faults[i].take() {
            let duration = step.duration.map(|d| d.std()).unwrap_or_default();
            if step.background {
                let ctx2 = ctx.clone();
                let injected = injected.clone();
                let over = method_over_rx.clone();
                let label2 = label.clone();
                background.push(tokio::spawn(async move {
                    run_fault(&ctx2, i, &label2, imp, duration, over, &injected).await;
                }));
            } else {
                run_fault(
                    &ctx,
                    i,
                    &label,
                    imp,
                    duration,
                    method_over_rx.clone(),
                    &injected,
                )
                .await;
            }
        }
    }
    let _ = method_over_tx.send(true);
    for b in background {
        let _ = b.await;
    }
}

/// Runs a command or HTTP step; returns false when the method must stop.
async fn run_action_step(ctx: &Arc<Ctx>, i: usize, step: &Step, label: &str) -> bool {
    let (ok, ignore) = match (&step.command, &step.http) {
        (Some(a), _) => (run_action(ctx, a, label, false).await, a.ignore_failure),
        (None, Some(h)) => (run_http_action(ctx, h, label).await, h.ignore_failure),
        (None, None) => (true, true),
    };
    let status = if ok {
        StepStatus::Completed
    } else if ctx.cancelled() {
        StepStatus::Interrupted
    } else {
        StepStatus::Failed
    };
    ctx.emit.emit(Event::StepEnded {
        index: i,
        status,
        detail: if status == StepStatus::Failed && ignore {
            "failed (ignored: ignore_failure)".into()
        } else {
            String::new()
        },
    });
    if status == StepStatus::Failed && !ignore {
        ctx.stop_with(Stop::StepFailed(
            exit::DEVIATED,
            format!("step {} `{label}` failed", i + 1),
        ));
        return false;
    }
    true
}

/// Sends one HTTP request (an action step).
async fn run_http_action(
    ctx: &Arc<Ctx>,
    h: &crate::experiment::model::HttpAction,
    label: &str,
) -> bool {
    let t0 = Instant::now();
    let result: Result<u16, String> = async {
        let client = reqwest::Client::builder()
            .timeout(h.timeout.std())
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        let method = reqwest::Method::from_bytes(h.method.to_ascii_uppercase().as_bytes())
            .map_err(|e| e.to_string())?;
        let mut req = client
            .request(method, &h.url)
            .header(crate::probe::RUN_ID_HEADER, ctx.fctx.run_id.as_str());
        for (k, v) in &h.headers {
            req = req.header(k, v);
        }
        if let Some(b) = &h.body {
            req = req.body(b.clone());
        }
        let mut rx = ctx.cancel_rx.clone();
        tokio::select! {
            r = req.send() => r.map(|r| r.status().as_u16()).map_err(|e| e.to_string()),
            _ = rx.wait_for(|c| *c) => Err("interrupted".into()),
        }
    }
    .await;
    let (ok, code, detail) = match result {
        Ok(code) => {
            let ok = match &h.expect_status {
                Some(set) => set.contains(code),
                None => (200..300).contains(&code),
            };
            (ok, Some(code as i32), format!("HTTP {code}"))
        }
        Err(e) => (false, None, e),
    };
    ctx.emit.emit(Event::ActionFinished {
        label: label.to_string(),
        command: vec![h.method.clone(), h.url.clone()],
        rollback: false,
        exit_code: code,
        ok,
        duration_ms: t0.elapsed().as_secs_f64() * 1000.0,
        detail,
    });
    ok
}

/// Inject -> verify -> hold (ticking) -> roll back, for one fault.
async fn run_fault(
    ctx: &Arc<Ctx>,
    index: usize,
    label: &str,
    mut imp: Box<dyn FaultImpl>,
    duration: Duration,
    mut method_over: watch::Receiver<bool>,
    injected: &std::sync::atomic::AtomicBool,
) {
    let kind = imp.kind().to_string();
    let target = imp.target();
    let mut fctx = ctx.fctx.clone();
    fctx.setup_pids = ctx.setup_pids.lock().unwrap().clone();
    let operations: Vec<String> = imp
        .plan(&fctx)
        .into_iter()
        .map(|op| match op.command {
            Some(c) => c.join(" "),
            None => op.action,
        })
        .collect();
    let t0 = Instant::now();
    let res = tokio::task::block_in_place(|| {
        let mut log = JournalLog {
            journal: &ctx.journal,
            fault: index,
            label: label.to_string(),
            kind: kind.clone(),
        };
        imp.inject(&fctx, &mut log)
    });
    let inject_ms = t0.elapsed().as_secs_f64() * 1000.0;
    injected.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut failed: Option<(i32, String)> = None;
    match res {
        Err(e) => {
            ctx.emit.emit(Event::FaultInjectFailed {
                step: index,
                kind: kind.clone(),
                target: target.clone(),
                error: e.message.clone(),
            });
            failed = Some((
                e.code,
                format!(
                    "step {} `{label}`: injection failed: {}",
                    index + 1,
                    e.message
                ),
            ));
        }
        Ok(()) => {
            ctx.emit.emit(Event::FaultInjected {
                step: index,
                kind: kind.clone(),
                target: target.clone(),
                inject_ms,
                operations,
            });
            maybe_test_panic("injected");
            let t1 = Instant::now();
            match tokio::task::block_in_place(|| imp.verify(&fctx)) {
                Ok(evidence) => ctx.emit.emit(Event::FaultVerified {
                    step: index,
                    verify_ms: t1.elapsed().as_secs_f64() * 1000.0,
                    evidence,
                }),
                Err(e) => {
                    ctx.emit.emit(Event::FaultVerifyFailed {
                        step: index,
                        error: e.message.clone(),
                    });
                    failed = Some((
                        exit::DEVIATED,
                        format!(
                            "step {} `{label}`: the fault did not take effect: {}",
                            index + 1,
                            e.message
                        ),
                    ));
                }
            }
        }
    }
    let mut status = StepStatus::Completed;
    if failed.is_none() {
        // Hold the fault for its duration, ticking when the fault asks to.
        let end = tokio::time::Instant::now() + duration.saturating_sub(t0.elapsed());
        let tick = imp.tick_every();
        let mut rx = ctx.cancel_rx.clone();
        loop {
            let wake = match tick {
                Some(t) => (tokio::time::Instant::now() + t).min(end),
                None => end,
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = rx.wait_for(|c| *c) => { status = StepStatus::Interrupted; break; }
                _ = method_over.wait_for(|c| *c) => { break; }
            }
            if tokio::time::Instant::now() >= end {
                break;
            }
            if tick.is_some() {
                let r = tokio::task::block_in_place(|| {
                    let mut log = JournalLog {
                        journal: &ctx.journal,
                        fault: index,
                        label: label.to_string(),
                        kind: kind.clone(),
                    };
                    imp.tick(&fctx, &mut log)
                });
                if let Err(e) = r {
                    failed = Some((
                        e.code,
                        format!("step {} `{label}`: {}", index + 1, e.message),
                    ));
                    break;
                }
            }
        }
    }
    // Roll this fault back now.
    let t2 = Instant::now();
    tokio::task::block_in_place(|| imp.before_rollback(&fctx));
    let failures = rollback_pending(ctx, Some(index), "runner");
    let verify_back = tokio::task::block_in_place(|| imp.verify_rollback(&fctx));
    let error = if !failures.is_empty() {
        Some(format!("undo failed: {}", failures.join("; ")))
    } else {
        verify_back
            .err()
            .map(|e| format!("host not back to its previous state: {}", e.message))
    };
    ctx.emit.emit(Event::FaultRolledBack {
        step: index,
        rollback_ms: t2.elapsed().as_secs_f64() * 1000.0,
        ok: error.is_none(),
        error: error.clone(),
        observations: imp.observations(),
    });
    if let Some(e) = &error {
        // A failed undo or a host not back to normal decides the verdict.
        ctx.rollback_errors
            .lock()
            .unwrap()
            .push(format!("step {} `{label}`: {e}", index + 1));
    }
    if let Some((code, msg)) = &failed {
        status = StepStatus::Failed;
        ctx.stop_with(Stop::StepFailed(*code, msg.clone()));
    }
    ctx.emit.emit(Event::StepEnded {
        index,
        status,
        detail: failed.map(|f| f.1).or(error).unwrap_or_default(),
    });
}

/// Runs a command action (a method step or a user rollback).
async fn run_action(ctx: &Arc<Ctx>, a: &CommandAction, label: &str, rollback: bool) -> bool {
    // Rollbacks run even when the run was cancelled (the sender is kept
    // alive so the flag never turns).
    let never = watch::channel(false);
    let cancel = if rollback {
        never.1.clone()
    } else {
        ctx.cancel_rx.clone()
    };
    let res =
        crate::sys::exec::run(&a.run, a.cwd.as_deref(), &a.env, a.timeout.std(), cancel).await;
    let (ok, exit_code, ms, detail) = match res {
        Ok(r) => {
            let ok = !r.timed_out && !r.cancelled && r.exit_code == Some(a.expect_exit);
            let detail = if r.timed_out {
                format!("timed out after {}", a.timeout)
            } else if r.cancelled {
                "interrupted".into()
            } else if !ok {
                format!(
                    "exit {} (expected {}): {}",
                    r.exit_code
                        .map(|c| c.to_string())
                        .unwrap_or("by signal".into()),
                    a.expect_exit,
                    crate::sys::exec::tail(&r.stderr, 3)
                )
            } else {
                String::new()
            };
            (ok, r.exit_code, r.elapsed.as_secs_f64() * 1000.0, detail)
        }
        Err(e) => (false, None, 0.0, e),
    };
    ctx.emit.emit(Event::ActionFinished {
        label: a.name.clone().unwrap_or_else(|| label.to_string()),
        command: a.run.clone(),
        rollback,
        exit_code,
        ok,
        duration_ms: ms,
        detail,
    });
    ok
}

// ---------------------------------------------------------------- after

async fn after(ctx: &Arc<Ctx>) -> bool {
    let interval = ctx.exp.steady_state.interval.std();
    let mut tasks = Vec::new();
    for (i, spec) in ctx.exp.steady_state.probes.iter().enumerate() {
        let ctx = ctx.clone();
        let need = spec.after.successes;
        let within = spec.after.within;
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let deadline = tokio::time::Instant::now() + within.std();
            let mut streak = 0u32;
            let mut first_ok: Option<Instant> = None;
            let mut next = tokio::time::Instant::now();
            let recovered = loop {
                if ctx.cancelled() && matches!(ctx.stop_reason(), Some(Stop::Signal(_))) {
                    break None;
                }
                let Some(s) = sample_unless_hurried(&ctx, i).await else {
                    break None;
                };
                emit_sample(&ctx, i, SamplePhase::After, &s);
                if s.is_success() {
                    if streak == 0 {
                        first_ok = Some(Instant::now());
                    }
                    streak += 1;
                    if streak >= need {
                        // Time to recover: until the first of the good streak.
                        let at = first_ok.unwrap_or_else(Instant::now);
                        break Some(at.duration_since(t0).as_secs_f64() * 1000.0);
                    }
                } else {
                    streak = 0;
                }
                next += interval;
                if next >= deadline {
                    break None;
                }
                tokio::time::sleep_until(next.max(tokio::time::Instant::now())).await;
            };
            ctx.builder.lock().unwrap().set_requirement(
                i,
                SamplePhase::After,
                format!("{need} successes in a row within {within}"),
                Some(recovered.is_some()),
            );
            ctx.emit.emit(Event::Recovered {
                probe: ctx.probes[i].name.clone(),
                after_ms: recovered,
            });
            recovered.is_some()
        }));
    }
    let mut all = true;
    for t in tasks {
        all &= t.await.unwrap_or(false);
    }
    all
}

// ---------------------------------------------------------------- signals, deadline, panics

async fn watch_signals(ctx: Arc<Ctx>) {
    use tokio::signal::unix::{signal, SignalKind};
    let kinds = [
        (SignalKind::interrupt(), libc::SIGINT),
        (SignalKind::terminate(), libc::SIGTERM),
        (SignalKind::hangup(), libc::SIGHUP),
        (SignalKind::quit(), libc::SIGQUIT),
    ];
    let mut streams = Vec::new();
    for (k, n) in kinds {
        if let Ok(s) = signal(k) {
            streams.push((s, n));
        }
    }
    let mut count = 0u32;
    loop {
        let futs = streams.iter_mut().map(|(s, n)| {
            let n = *n;
            Box::pin(async move {
                s.recv().await;
                n
            })
        });
        let (n, _, _) = futures_select_all(futs.collect()).await;
        count += 1;
        let name = nix::sys::signal::Signal::try_from(n)
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        ctx.emit.emit(Event::Interrupted {
            signal: name,
            count,
        });
        if count >= 2 {
            ctx.hurry.send_replace(true);
        }
        ctx.stop_with(Stop::Signal(n));
    }
}

/// A tiny select_all over boxed futures (avoids a dependency for one use).
async fn futures_select_all<F>(futs: Vec<std::pin::Pin<Box<F>>>) -> (i32, usize, ())
where
    F: std::future::Future<Output = i32> + ?Sized,
{
    let mut futs = futs;
    std::future::poll_fn(move |cx| {
        for (i, f) in futs.iter_mut().enumerate() {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                return std::task::Poll::Ready((v, i, ()));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

async fn watch_deadline(ctx: Arc<Ctx>) {
    let max = ctx.exp.limits.max_duration.std();
    let remaining = max.saturating_sub(ctx.start.elapsed());
    tokio::time::sleep(remaining).await;
    ctx.emit.emit(Event::AbortTriggered {
        probe: String::new(),
        condition: format!(
            "limits.max_duration ({}) reached",
            ctx.exp.limits.max_duration
        ),
        reason: "the run took longer than its hard limit".into(),
    });
    ctx.stop_with(Stop::Abort);
}

/// The run file the panic hook rolls back, while a run is active.
static PANIC_RUN: Mutex<Option<PathBuf>> = Mutex::new(None);

fn set_panic_run(p: Option<PathBuf>) {
    *PANIC_RUN.lock().unwrap_or_else(|e| e.into_inner()) = p;
}

/// Installs a panic hook that replays the active run's pending undo records
/// before the default hook reports the panic.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let path = PANIC_RUN.lock().ok().and_then(|g| g.clone());
        if let Some(path) = path {
            if let Ok(st) = store::read_run(&path) {
                let pending: Vec<UndoRecord> = st.pending().into_iter().cloned().collect();
                if !pending.is_empty() {
                    eprintln!(
                        "faultline: internal error; rolling back {} pending operation(s) first",
                        pending.len()
                    );
                    if let Ok(mut f) = store::open_append(&path) {
                        for r in store::replay(&mut f, &pending, "panic", 3) {
                            if let Err(e) = r.result {
                                eprintln!(
                                    "faultline: rollback failed: {} ({e})",
                                    r.record.op.manual_command()
                                );
                            }
                        }
                    }
                }
            }
        }
        default(info);
    }));
}

/// Test knob: `FAULTLINE_TEST_PANIC_AT=<point>` makes the runner panic there
/// (points: setup, method, injected), to prove that a panic rolls back.
fn maybe_test_panic(point: &str) {
    if std::env::var("FAULTLINE_TEST_PANIC_AT").is_ok_and(|v| v == point) {
        panic!("FAULTLINE_TEST_PANIC_AT={point}");
    }
}
