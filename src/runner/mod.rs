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
pub mod console;
pub mod control;
mod escalation;
pub mod events;
mod guard;
pub mod live;
mod method;
pub mod notify;
mod sampling;
mod setup;
pub mod silence;

pub use guard::install_panic_hook;
pub use guard::{early_signal, note_signals_between_runs};
use guard::{maybe_test_panic, set_panic_run, watch_deadline, watch_signals};
use method::{method, run_action};
use sampling::{after, before};
use setup::{preflight_after_setup, setup};

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
/// The Alertmanager silence's record uses this one (rolled back with the
/// faults, at the rollback phase).
const SILENCE: usize = usize::MAX - 1;

/// Creates the experiment's Alertmanager silence, if it asks for one, until
/// the run's hard deadline (plus a minute). Its undo record is written
/// before the request, so the watchdog expires it if the runner dies.
/// A silence that cannot be created stops the run before anything changes.
fn start_silence(ctx: &Ctx) -> Result<(), PreflightError> {
    let Some(spec) = &ctx.exp.silence else {
        return Ok(());
    };
    let fail = |message: String| PreflightError {
        code: exit::PRECONDITION,
        message: format!("silence: {message}; nothing was changed"),
    };
    let url = silence::resolve_url(spec.url.as_deref(), spec.url_env.as_deref()).map_err(fail)?;
    let run_id = ctx.fctx.run_id.clone();
    let marker = silence::marker(&run_id);
    let shown = notify::redact_url(&url);
    let op = UndoOp::ExpireSilence {
        // A URL from a variable may hold credentials: only its name is kept.
        url: spec.url.clone(),
        url_env: if spec.url.is_some() {
            None
        } else {
            spec.url_env.clone()
        },
        marker: marker.clone(),
    };
    let record = ctx
        .journal
        .lock()
        .unwrap()
        .record(SILENCE, "silence", "silence", &shown, op)
        .map_err(|e| fail(format!("cannot record its undo: {e:#}")))?;
    let left = ctx
        .exp
        .limits
        .max_duration
        .std()
        .saturating_sub(ctx.start.elapsed())
        + Duration::from_secs(60);
    let ends =
        chrono::Utc::now() + chrono::Duration::from_std(left).unwrap_or(chrono::Duration::MAX);
    let by = control::who_am_i();
    match tokio::task::block_in_place(|| silence::create(&url, spec, &run_id, ends, &by)) {
        Ok(id) => {
            ctx.emit.emit(Event::Note {
                message: format!(
                    "silence {id} created in Alertmanager at {shown} until {} ({} matcher(s)); it is expired at rollback",
                    ends.with_timezone(&chrono::Local).format("%H:%M:%S"),
                    spec.matchers.len()
                ),
            });
            Ok(())
        }
        Err((false, e)) => {
            // Nothing was created: nothing to expire.
            let _ = ctx.journal.lock().unwrap().mark_done(
                record,
                crate::journal::undo::Applied::AlreadyGone,
                "runner",
            );
            Err(fail(format!("{e}; no silence was created")))
        }
        Err((true, e)) => {
            // It may exist: expire whatever carries the marker now; if that
            // fails too, the rollback says so.
            let failures = rollback_pending(ctx, Some(SILENCE), "runner");
            ctx.rollback_errors.lock().unwrap().extend(failures);
            Err(PreflightError {
                code: exit::PRECONDITION,
                message: format!("silence: {e}; the run did not start"),
            })
        }
    }
}

pub struct RunOptions {
    pub state_dir: PathBuf,
    pub run_id: String,
    pub sinks: Vec<Box<dyn EventSink>>,
    pub policy: Policy,
    /// The JSON journal, written as the run goes (see `report::persist`).
    pub journal: Option<Arc<crate::report::persist::JournalFile>>,
}

pub use crate::experiment::model::{Policy, RollbackPolicy};

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
    /// Set when teardown starts: setup processes exiting from then on are expected.
    setup_over: std::sync::atomic::AtomicBool,
    builder: Arc<Mutex<RecordBuilder>>,
    start: Instant,
    policy: Policy,
    /// Samples started and not finished yet: (probe, seq) -> start, in ms
    /// since the run started (an escalation level is judged once the
    /// samples it started have finished).
    inflight: Mutex<BTreeMap<(usize, u64), f64>>,
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
    /// Records why the experiment did not test what it said (a fault gone or
    /// weak, a setup process dead, too few samples). The run goes on; a run
    /// that would have held ends INCONCLUSIVE (exit 5) with every reason;
    /// DEVIATED, ABORTED, NOT STEADY and the rest keep their precedence.
    pub(crate) fn inconclusive(&self, reason: crate::report::record::InconclusiveReason) {
        self.emit.emit(Event::Inconclusive { reason });
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
    fn record_batch(&mut self, items: Vec<crate::journal::store::UndoItem>) -> anyhow::Result<()> {
        self.journal
            .lock()
            .unwrap()
            .record_batch(self.fault, &self.label, &self.kind, items)
            .map(|_| ())
    }
    fn backup_dir(&self) -> Option<std::path::PathBuf> {
        let j = self.journal.lock().unwrap();
        let run_id = j.path().file_stem()?.to_str()?.to_string();
        Some(crate::journal::store::backup_dir(j.state_dir()?, &run_id))
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
        exit::INTERNAL => Verdict::Internal,
        exit::INCONCLUSIVE => Verdict::Inconclusive,
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
        match step.first_fault() {
            Some(f) => {
                let mut imp = fault::build(&f);
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
        code: crate::journal::trust::exit_code(&e),
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
/// changes) whether to go on; it may call the function it is given for what
/// each fault will do to the targets preflight resolved (as `plan` shows
/// it), which is only worked out when someone is asked.
pub async fn run(
    loaded: &Loaded,
    opts: RunOptions,
    confirm: impl FnOnce(&Experiment, &dyn Fn() -> Vec<String>) -> bool,
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
    // Samples go to disk beside the journal (else the state directory):
    // memory stays flat however long the run.
    builder.lock().unwrap().spool_in(
        opts.journal
            .iter()
            .filter(|j| j.atomic())
            .filter_map(|j| j.path.parent().map(|d| d.to_path_buf()))
            .chain([
                opts.state_dir.clone(),
                std::path::PathBuf::from("/var/tmp"),
                std::env::temp_dir(),
            ])
            .collect(),
    );
    let mut sinks = opts.sinks;
    sinks.push(Box::new(SharedBuilder(builder.clone())));
    // After the builder: a snapshot includes the event that asked for it.
    // Dropped (its last write done) before this function returns.
    let checkpointer = opts
        .journal
        .as_ref()
        .filter(|j| j.atomic())
        .map(|j| crate::report::persist::Checkpointer::start(j.clone(), builder.clone()));
    if let Some(c) = &checkpointer {
        sinks.push(Box::new(c.sink()));
    }
    let emit = Emitter::new(&opts.run_id, start, sinks).with_redactor(loaded.redactor.clone());

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
            .zip(&exp.steady_state.probes)
            .map(|(p, spec)| ProbeInfo {
                name: p.name.clone(),
                kind: p.kind.name().to_string(),
                target: p.describe(),
                group: (!spec.group.is_experiment()).then(|| spec.group.name().to_string()),
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
    guard::catch_early_signals(true);
    let pre = preflight(&exp, &opts.run_id, &fctx);
    guard::catch_early_signals(false);
    if let Some(sig) = guard::early_signal() {
        let name = nix::sys::signal::Signal::try_from(sig)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| sig.to_string());
        return finish_early(
            &emit,
            &builder,
            Verdict::Interrupted,
            exit::INTERRUPTED,
            format!("interrupted by {name} during preflight; nothing was changed"),
        );
    }
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
            let code = crate::journal::trust::exit_code(&e);
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
        return finish_early(&emit, &builder, verdict_for_code(e.code), e.code, e.message);
    }
    if let Err(e) = control::check_not_halted(&opts.state_dir) {
        return finish_early(&emit, &builder, verdict_for_code(e.code), e.code, e.message);
    }
    let planned = || -> Vec<String> {
        faults
            .iter()
            .enumerate()
            .filter_map(|(i, f)| Some((i, f.as_ref()?)))
            .flat_map(|(i, f)| {
                let label = exp.method[i].label(i);
                f.plan(&fctx)
                    .into_iter()
                    .map(move |op| format!("{}. {label}: {}", i + 1, op.action))
            })
            .collect()
    };
    let asked = Instant::now();
    let confirmed = confirm(&exp, &planned);
    // The time at the prompt is not the run's: not in its timings, nor in
    // max_duration.
    let at_prompt = asked.elapsed();
    emit.exclude(at_prompt);
    let start = start + at_prompt;
    if !confirmed {
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
        journal: opts
            .journal
            .as_ref()
            .filter(|j| j.watchdog_may_mark)
            .map(|j| j.path.clone()),
    };
    let journal = match RunJournal::create(&opts.state_dir, header) {
        Ok(j) => j,
        Err(e) => {
            let code = crate::journal::trust::exit_code(&e);
            return finish_early(
                &emit,
                &builder,
                verdict_for_code(code),
                code,
                format!("{e:#}"),
            );
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
        setup_over: std::sync::atomic::AtomicBool::new(false),
        builder: builder.clone(),
        start,
        policy: opts.policy,
        inflight: Mutex::new(BTreeMap::new()),
    });
    let signals = tokio::spawn(watch_signals(ctx.clone()));
    let deadline = tokio::spawn(watch_deadline(ctx.clone()));
    let requests = tokio::spawn(guard::watch_stop_requests(
        ctx.clone(),
        opts.state_dir.clone(),
        opts.run_id.clone(),
    ));

    let code = run_phases(ctx.clone(), faults, wd, &journal_path).await;
    crate::sys::hostlock::release_all();
    signals.abort();
    deadline.abort();
    requests.abort();
    let _ = control::remove(&control::stop_path(&opts.state_dir, &opts.run_id));
    set_panic_run(None);
    drop(checkpointer);
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
    crate::sys::hostlock::release_all();
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
    let mut setup_ok = match start_silence(&ctx) {
        Ok(()) => setup(&ctx).await,
        Err(e) => Err(e),
    };
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
            let ok = method(&ctx, faults).await;
            during_ok = ok;
            method_ran = true;
        }
    }

    // Chaos Toolkit's order: the after check comes before user rollbacks.
    let mut recovered = true;
    let mut after_done = false;
    let mut early_undo = Vec::new();
    let mut undo_ms = 0.0;
    if ctx.policy.check_after_before_rollbacks
        && method_ran
        && ctx.policy.check_after
        && !matches!(ctx.stop_reason(), Some(Stop::Signal(_)))
    {
        // Faults are undone first, whatever the order of the rest.
        (early_undo, undo_ms) = timed_rollback(&ctx);
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
    let mut rollback_failures = std::mem::take(&mut *ctx.rollback_errors.lock().unwrap());
    rollback_failures.extend(early_undo);
    let (left, rollback_phase_undo_ms) = timed_rollback(&ctx);
    rollback_failures.extend(left);
    let stop = ctx.stop_reason();
    let run_user_rollbacks = match ctx.policy.user_rollbacks {
        RollbackPolicy::Unconditional => setup_ok.is_ok(),
        policy => {
            method_ran
                && match policy {
                    RollbackPolicy::Always | RollbackPolicy::Unconditional => true,
                    RollbackPolicy::Never => false,
                    RollbackPolicy::Deviated => !during_ok || !recovered || stop.is_some(),
                    RollbackPolicy::UnlessInterrupted => {
                        !matches!(stop, Some(Stop::Signal(_)) | Some(Stop::Abort))
                    }
                }
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
    // The faults' own rollback times (the fault table's "took"), the undo
    // done here for faults cut short, and the user rollback actions: one
    // sum, so the timings line and the fault table agree.
    let unattributed_ms = undo_ms + rollback_phase_undo_ms;
    {
        let mut b = ctx.builder.lock().unwrap();
        let faults: f64 = b.rec.faults.iter().filter_map(|f| f.rollback_ms).sum();
        let actions: f64 = b.rec.rollbacks.iter().map(|r| r.duration_ms).sum();
        b.rec.timings.rollback_ms = Some(faults + unattributed_ms + actions);
    }

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
    ctx.setup_over
        .store(true, std::sync::atomic::Ordering::SeqCst);
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
    } else if let Some(Stop::StepFailed(code, msg)) = stop {
        // Before NOT STEADY: a setup process that died during the before
        // phase stops the run with its own verdict.
        (verdict_for_code(code), code, msg)
    } else if !steady_before {
        (
            Verdict::NotSteady,
            exit::NOT_STEADY,
            not_steady_reason(&ctx),
        )
    } else if let Some(reason) = (!during_ok && recovered)
        .then(|| control_explains(&ctx))
        .flatten()
    {
        ctx.inconclusive(crate::report::record::InconclusiveReason::control_degraded(
            reason,
        ));
        let reason = inconclusive_reason(&ctx).unwrap_or_default();
        (Verdict::Inconclusive, exit::INCONCLUSIVE, reason)
    } else if !during_ok || !recovered {
        (Verdict::Deviated, exit::DEVIATED, deviation_reason(&ctx))
    } else if let Some(reason) = inconclusive_reason(&ctx) {
        (Verdict::Inconclusive, exit::INCONCLUSIVE, reason)
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

/// The control probes that failed their own `during` requirement, and the
/// comparison of the groups during the method.
fn control_state(ctx: &Ctx) -> (Vec<String>, Option<crate::report::stats::GroupComparison>) {
    let b = ctx.builder.lock().unwrap();
    let degraded: Vec<String> = b
        .rec
        .probes
        .iter()
        .filter(|p| p.group.as_deref() == Some("control") && p.during.met == Some(false))
        .map(|p| format!("`{}`", p.name))
        .collect();
    let during = b
        .compare_groups()
        .into_iter()
        .find(|c| c.phase == SamplePhase::During);
    (degraded, during)
}

/// When the experiment group deviated: `Some(why)` if the control group
/// degraded too and the groups do not differ significantly (the run is
/// then INCONCLUSIVE, not DEVIATED).
fn control_explains(ctx: &Ctx) -> Option<String> {
    let (degraded, during) = control_state(ctx);
    if degraded.is_empty() {
        return None;
    }
    let c = during?;
    if c.significant {
        return None;
    }
    Some(format!(
        "the experiment group deviated, but the control group degraded too ({} failed its `during` requirement) and the groups do not differ significantly ({}); the change is not the fault's",
        degraded.join(", "),
        c.summary
    ))
}

fn deviation_reason(ctx: &Ctx) -> String {
    let (degraded, during) = control_state(ctx);
    let b = ctx.builder.lock().unwrap();
    let mut parts = Vec::new();
    if let Some(e) = &b.rec.escalation {
        parts.push(e.summary());
    }
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
    for f in &b.rec.faults {
        if let Some(e) = f.expectation.as_ref().filter(|e| e.met == Some(false)) {
            parts.push(format!("fault {} `{}`: {}", f.step + 1, f.label, e.detail));
        }
    }
    if !degraded.is_empty() {
        parts.push(format!(
            "the control group degraded too ({}), but significantly less: {}",
            degraded.join(", "),
            during.map(|c| c.summary).unwrap_or_default()
        ));
    }
    if parts.is_empty() {
        "the hypothesis deviated".into()
    } else {
        parts.join("; ")
    }
}

/// Every recorded reason in one sentence, or `None` when there is none.
fn inconclusive_reason(ctx: &Ctx) -> Option<String> {
    let b = ctx.builder.lock().unwrap();
    if b.rec.inconclusive.is_empty() {
        return None;
    }
    let parts: Vec<String> = b
        .rec
        .inconclusive
        .iter()
        .map(|r| format!("{}: {}", r.subject, r.message))
        .collect();
    Some(parts.join("; "))
}

fn held_reason(ctx: &Ctx) -> String {
    let b = ctx.builder.lock().unwrap();
    let rec: Vec<String> = b
        .rec
        .probes
        .iter()
        // A probe that never failed had nothing to recover from.
        .filter(|p| !crate::report::summary::held_throughout(p))
        .filter_map(|p| {
            p.recovered_after_ms
                .map(|ms| format!("`{}` recovered {} after rollback", p.name, human_ms(ms)))
        })
        .collect();
    let mut text = if rec.is_empty() {
        "every probe met its requirements".to_string()
    } else {
        rec.join(", ")
    };
    if let Some(e) = &b.rec.escalation {
        text = format!("{}; {text}", e.summary());
    }
    text
}

/// Rolls back every fault's pending undo records outside their steps (after
/// an abort, an error or a signal cut a step short). Returns the manual
/// commands for failures and the time it took, 0 when nothing was pending.
fn timed_rollback(ctx: &Ctx) -> (Vec<String>, f64) {
    let any = ctx
        .journal
        .lock()
        .unwrap()
        .pending()
        .iter()
        .any(|r| r.fault != SETUP);
    if !any {
        return (vec![], 0.0);
    }
    let t = Instant::now();
    let failures = rollback_pending(ctx, None, "runner");
    (failures, t.elapsed().as_secs_f64() * 1000.0)
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
    drop(j);
    let mut failures = Vec::new();
    for r in results {
        match r.result {
            Ok(_) if r.record.fault == SETUP => ctx.emit.emit(Event::SetupStopped {
                name: r.record.fault_label,
            }),
            Ok(_) => {}
            Err(e) => failures.push(format!("{} ({e})", r.record.op.manual_command())),
        }
    }
    failures
}
