//! The complete record of one run: what `--journal` writes, what every report
//! renders, and what `faultline report JOURNAL` reads back. Its JSON form is
//! documented in docs/journal.md; bump `SCHEMA_VERSION` on breaking changes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// 2: the `inconclusive` verdict and the `inconclusive` list of reasons.
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub schema_version: u32,
    pub faultline_version: String,
    pub run_id: String,
    pub experiment: ExperimentInfo,
    pub host: String,
    /// Who ran it (`faultline run`'s real user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<RunUser>,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub outcome: Outcome,
    /// Phases in the order they ran.
    pub phases: Vec<PhaseSpan>,
    pub probes: Vec<ProbeRecord>,
    pub steps: Vec<StepRecord>,
    pub faults: Vec<FaultRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<AbortRecord>,
    /// User rollback actions (after the automatic undo).
    #[serde(default)]
    pub rollbacks: Vec<ActionRecord>,
    pub timings: Timings,
    /// Undo commands a person must still run (after a failed rollback).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manual_recovery: Vec<String>,
    /// Why the experiment did not test what it said (any makes a run that
    /// would have held INCONCLUSIVE), in the order they were found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inconclusive: Vec<InconclusiveReason>,
    /// Things that went wrong without touching the verdict (a webhook
    /// notification that could not be delivered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// False while the run is going on and when it never finished: the
    /// runner writes the journal at every phase boundary and every few
    /// seconds, and marks it complete only at the end. Written only when
    /// false; missing means true.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub complete: bool,
    /// Who ended a run whose runner died (the watchdog), and what it restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<EndedBy>,
    /// In a journal that is not complete: the phase in progress when it was
    /// last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_phase: Option<Phase>,
    /// An escalating step's levels and its breaking point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<EscalationRecord>,
    /// The experiment group against the control group, per phase (when
    /// some probes have `group: control`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<crate::report::stats::GroupComparison>,
    /// While the run goes on and until the final journal is written: every
    /// sample, on disk (`probes[].samples` holds only the latest).
    #[serde(skip)]
    pub spool: Option<std::sync::Arc<super::samples::SampleSpool>>,
}

/// An escalation: every level reached, how each was judged, and where the
/// system broke.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EscalationRecord {
    /// Index of the method step.
    pub step: usize,
    pub label: String,
    /// The parameter raised, e.g. `delay.time`.
    pub param: String,
    /// Every level as written, mildest first (also those never reached).
    pub values: Vec<String>,
    pub hold_ms: f64,
    /// The most severe level the hypothesis promises (`must_hold`, by
    /// default the last).
    pub must_hold: String,
    /// The levels reached, in order.
    pub levels: Vec<LevelRecord>,
    /// The last level that held before the first that did not (or the
    /// last level when every one held).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_held: Option<String>,
    /// The first level that did not hold: the breaking point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_broken: Option<String>,
}

impl EscalationRecord {
    /// The breaking point in words.
    pub fn summary(&self) -> String {
        let held = self.levels.iter().filter(|l| l.held == Some(true)).count();
        match (&self.first_broken, &self.last_held) {
            (Some(b), Some(h)) => format!(
                "breaking point: {} {b} (last level that held: {h})",
                self.param
            ),
            (Some(b), None) => format!(
                "breaking point: {} {b}, the first level (no level held)",
                self.param
            ),
            (None, _) if held == self.values.len() => format!(
                "every level held, up to {} {} (no breaking point found)",
                self.param,
                self.values.last().cloned().unwrap_or_default()
            ),
            (None, Some(h)) => format!(
                "no breaking point found: {held} of {} levels judged held, the last {} {h}",
                self.values.len(),
                self.param
            ),
            (None, None) => format!("no level of {} was judged", self.param),
        }
    }
}

impl LevelRecord {
    /// `level 2 (100ms): held · api 20/20 ok, p50 101ms, p95 104ms`.
    pub fn line(&self) -> String {
        let word = match self.held {
            Some(true) => "held",
            Some(false) => "DID NOT HOLD",
            None => "not judged",
        };
        let figures: Vec<String> = self
            .probes
            .iter()
            .map(|p| {
                let mut f = format!("{} {}/{} ok", p.name, p.successes, p.samples);
                if let Some(l) = &p.latency_ms {
                    f.push_str(&format!(
                        ", p50 {}, p95 {}",
                        crate::report::summary::fmt_ms(l.p50),
                        crate::report::summary::fmt_ms(l.p95)
                    ));
                }
                if !p.group.is_empty() {
                    f.push_str(&format!(" ({})", p.group));
                }
                if p.met == Some(false) {
                    f.push_str(&format!(" [{}]", p.requirement));
                }
                f
            })
            .collect();
        format!(
            "level {} ({}{}): {word} · {}",
            self.index + 1,
            self.value,
            if self.in_place {
                ", changed in place"
            } else {
                ""
            },
            figures.join("; ")
        )
    }
}

/// One level of an escalation.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LevelRecord {
    /// 0-based.
    pub index: usize,
    /// The value as written, e.g. `100ms`.
    pub value: String,
    pub started_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<f64>,
    /// Changed in place from the level before (`tc qdisc change`, a cgroup
    /// file rewritten), rather than rolled back and injected afresh.
    #[serde(default)]
    pub in_place: bool,
    /// The host operations that set this level.
    #[serde(default)]
    pub operations: Vec<String>,
    /// `None`: not judged (too few samples, or the run stopped first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<bool>,
    /// Each probe's figures over the level's window.
    #[serde(default)]
    pub probes: Vec<LevelProbe>,
}

/// A probe's figures over one level's window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LevelProbe {
    pub name: String,
    /// `experiment` or `control`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    pub samples: u32,
    pub successes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<LatencyStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longest_outage_ms: Option<f64>,
    /// The `during` requirement judged on this level, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requirement: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// How a run whose runner died was ended, written into its journal by the
/// watchdog after it rolled the host back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EndedBy {
    /// `watchdog`.
    pub by: String,
    pub at: DateTime<Utc>,
    /// What happened, in words.
    pub reason: String,
    /// The undo operations it applied, e.g. `kill -CONT 4242 (pid 4242 sleep)`.
    #[serde(default)]
    pub restored: Vec<String>,
    /// The undo operations that failed, as commands to run by hand.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_restored: Vec<String>,
}

/// Fault kinds that cannot be undone: a killed process stays killed (what
/// replaced it is observed, not restored).
pub fn irreversible_kind(kind: &str) -> bool {
    kind == "process_kill"
}

impl RunRecord {
    /// Marks a snapshot taken while the run is going on: not complete, and an
    /// outcome that says so, in case the runner never writes another one.
    /// `phase` is the phase in progress, if known.
    pub fn mark_unfinished(&mut self, phase: Option<Phase>, now: DateTime<Utc>) {
        self.complete = false;
        if phase.is_some() {
            self.last_phase = phase;
        }
        self.ended_at = now;
        self.timings.total_ms = (now - self.started_at)
            .num_microseconds()
            .map_or(0.0, |us| us as f64 / 1000.0)
            .max(0.0);
        let during = self
            .last_phase
            .map(|p| format!(" during the {} phase", p.name()))
            .unwrap_or_default();
        self.outcome = Outcome {
            verdict: Verdict::Interrupted,
            exit_code: crate::exit::INTERRUPTED,
            reason: format!(
                "the run did not finish: this journal was last written {}s into the run{during}, and the runner never wrote its end (it was still running, or it was killed)",
                (self.timings.total_ms / 100.0).round() / 10.0
            ),
        };
    }

    /// The watchdog's mark on the journal of a run whose runner died: what it
    /// restored (`restored`, as `(fault index, description)`), what it could
    /// not (`failed`, manual commands), and the outcome that follows.
    pub fn mark_ended_by_watchdog(
        &mut self,
        runner_pid: i32,
        restored: &[(usize, String)],
        failed: &[(usize, String)],
        now: DateTime<Utc>,
    ) {
        self.mark_unfinished(None, now);
        let died = match self.last_phase {
            Some(p) => format!(
                "the runner (pid {runner_pid}) died during the {} phase",
                p.name()
            ),
            None => format!("the runner (pid {runner_pid}) died before the run finished"),
        };
        let what = if restored.is_empty() && failed.is_empty() {
            "; nothing was left to roll back".to_string()
        } else if failed.is_empty() {
            format!(
                "; the watchdog rolled back {} operation(s): {}",
                restored.len(),
                restored
                    .iter()
                    .map(|r| r.1.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        } else {
            format!(
                "; the watchdog rolled back {} operation(s) and {} FAILED: {}",
                restored.len(),
                failed.len(),
                failed
                    .iter()
                    .map(|r| r.1.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        for f in &mut self.faults {
            let mine = |l: &[(usize, String)]| l.iter().any(|(i, _)| *i == f.step);
            if mine(failed) {
                f.rolled_back = false;
                f.rollback_error = Some("the watchdog could not undo it".into());
            } else if mine(restored) && !f.rolled_back {
                f.rolled_back = true;
                f.rollback_error = None;
            }
        }
        self.outcome = if failed.is_empty() {
            Outcome {
                verdict: Verdict::Interrupted,
                exit_code: crate::exit::INTERRUPTED,
                reason: format!("{died}{what}"),
            }
        } else {
            self.manual_recovery = failed.iter().map(|f| f.1.clone()).collect();
            Outcome {
                verdict: Verdict::RollbackFailed,
                exit_code: crate::exit::ROLLBACK_FAILED,
                reason: format!("{died}{what}"),
            }
        };
        self.ended_by = Some(EndedBy {
            by: "watchdog".into(),
            at: now,
            reason: died,
            restored: restored.iter().map(|r| r.1.clone()).collect(),
            not_restored: failed.iter().map(|r| r.1.clone()).collect(),
        });
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExperimentInfo {
    pub title: String,
    pub hypothesis: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub file: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// sha256 (hex) of the experiment file's bytes as read for this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The experiment file's text as read for this run (secrets redacted),
    /// so the run can be reproduced even after the file changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The experiment as run, after variables were substituted (secrets
    /// redacted), when the file uses variables: `source` holds `${...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_run: Option<serde_json::Value>,
}

/// The user who ran faultline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunUser {
    pub uid: u32,
    /// The account name, when the password database has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `SUDO_USER`, when run through sudo: who asked for root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo_user: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Held,
    Deviated,
    Aborted,
    NotSteady,
    RollbackFailed,
    Invalid,
    Precondition,
    Privileges,
    Interrupted,
    /// A bug in faultline stopped the run (pending faults were rolled back first).
    Internal,
    /// The experiment did not test what it said, so it cannot be HELD; the
    /// record's `inconclusive` list says why.
    Inconclusive,
}

impl Verdict {
    pub fn exit_code(self) -> i32 {
        use crate::exit;
        match self {
            Verdict::Held => exit::HELD,
            Verdict::Deviated => exit::DEVIATED,
            Verdict::Aborted => exit::ABORTED,
            Verdict::NotSteady => exit::NOT_STEADY,
            Verdict::RollbackFailed => exit::ROLLBACK_FAILED,
            Verdict::Invalid => exit::INVALID,
            Verdict::Precondition => exit::PRECONDITION,
            Verdict::Privileges => exit::PRIVILEGES,
            Verdict::Interrupted => exit::INTERRUPTED,
            Verdict::Internal => exit::INTERNAL,
            Verdict::Inconclusive => exit::INCONCLUSIVE,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Held => "HELD",
            Verdict::Deviated => "DEVIATED",
            Verdict::Aborted => "ABORTED",
            Verdict::NotSteady => "NOT STEADY",
            Verdict::RollbackFailed => "ROLLBACK FAILED",
            Verdict::Invalid => "INVALID",
            Verdict::Precondition => "PRECONDITION MISSING",
            Verdict::Privileges => "INSUFFICIENT PRIVILEGES",
            Verdict::Interrupted => "INTERRUPTED",
            Verdict::Internal => "INTERNAL ERROR",
            Verdict::Inconclusive => "INCONCLUSIVE",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outcome {
    pub verdict: Verdict,
    pub exit_code: i32,
    /// One sentence on why, e.g. "probe `api` recovered 3.2s after rollback".
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Preflight,
    Setup,
    Before,
    Method,
    Rollback,
    After,
    Teardown,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Preflight => "preflight",
            Phase::Setup => "setup",
            Phase::Before => "before",
            Phase::Method => "method",
            Phase::Rollback => "rollback",
            Phase::After => "after",
            Phase::Teardown => "teardown",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseSpan {
    pub phase: Phase,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
}

/// Samples are grouped by the phase they were taken in: before, during (the
/// method, including rollback) and after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplePhase {
    Before,
    During,
    After,
}

impl SamplePhase {
    pub fn name(self) -> &'static str {
        match self {
            SamplePhase::Before => "before",
            SamplePhase::During => "during",
            SamplePhase::After => "after",
        }
    }
    pub const ALL: [SamplePhase; 3] =
        [SamplePhase::Before, SamplePhase::During, SamplePhase::After];
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeRecord {
    pub name: String,
    /// `http`, `tcp`, `command`, `process` or `prometheus`.
    pub kind: String,
    /// What it checks, e.g. `GET http://127.0.0.1:8080/health`.
    pub target: String,
    pub before: PhaseStats,
    pub during: PhaseStats,
    pub after: PhaseStats,
    /// After rollback: time from the end of rollback to recovery, if recovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_after_ms: Option<f64>,
    /// `control` for a probe of the control group; absent for the
    /// experiment group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Every sample, in order. A journal written while the run was going
    /// on holds only the latest (see `samples_omitted`).
    #[serde(deserialize_with = "super::thin::samples")]
    pub samples: Vec<SampleRecord>,
    /// Earlier samples left out of `samples` (only in a journal written
    /// while the run was going on: the final journal holds every sample).
    #[serde(default, skip_serializing_if = "is_zero64")]
    pub samples_omitted: u64,
    /// Samples left out when the journal was read for a report in bounded
    /// memory (see `report::thin`); never written.
    #[serde(skip)]
    pub samples_thinned: u64,
}

fn is_zero64(n: &u64) -> bool {
    *n == 0
}

impl ProbeRecord {
    pub fn phase(&self, p: SamplePhase) -> &PhaseStats {
        match p {
            SamplePhase::Before => &self.before,
            SamplePhase::During => &self.during,
            SamplePhase::After => &self.after,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PhaseStats {
    pub samples: u32,
    pub successes: u32,
    /// The check ran and the system did not meet `expect`.
    pub failures: u32,
    /// The check could not run (timeout, connection refused, DNS...).
    pub errors: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<LatencyStats>,
    /// The requirement for this phase, in words (none for an unchecked phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirement: Option<String>,
    /// Whether the requirement was met (none when there was none or no sample).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
    /// Samples the schedule called for: `before.samples` before; during and
    /// after, one per interval of the phase's length. `samples` is how many
    /// were taken (finished).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<u32>,
    /// Scheduled samples not started: the probe already had its most
    /// samples in flight, or the runner fell a whole interval behind.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u32,
    /// Samples stopped unfinished when the run stopped early (abort, signal,
    /// failed step); neither successes nor failures.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cut: u32,
    /// How late samples started against their schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_jitter_ms: Option<LatencyStats>,
    /// The longest run of failing samples, in ms: from the first failing
    /// sample's start to the next successful sample's start (or the phase
    /// end). Zero when no sample failed; set for `during` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longest_outage_ms: Option<f64>,
    /// `during.max_outage`, in ms, when the experiment sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_outage_ms: Option<f64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl PhaseStats {
    pub fn success_ratio(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.successes as f64 / self.samples as f64)
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencyStats {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleStatus {
    Success,
    Failure,
    Error,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SampleRecord {
    pub phase: SamplePhase,
    /// Milliseconds since the run started.
    pub at_ms: f64,
    pub latency_ms: f64,
    pub status: SampleStatus,
    /// Why it failed or errored; for successes a short summary (status code, value).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The result a tolerance judged, before and after the method only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Completed,
    Failed,
    /// Cut short by an abort condition or a signal.
    Interrupted,
    /// Never started (an earlier step failed or the run was aborted).
    Skipped,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepRecord {
    pub index: usize,
    pub label: String,
    /// `fault`, `pause` or `command`.
    pub kind: String,
    pub status: StepStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// What a command or HTTP step returned (see `ActionRecord::output`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultRecord {
    /// Index of the method step.
    pub step: usize,
    pub label: String,
    /// Fault kind, e.g. `process_pause`.
    pub kind: String,
    pub target: String,
    /// The operations performed (as planned).
    #[serde(default)]
    pub operations: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injected_at_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_ms: Option<f64>,
    /// Read-back evidence that the fault was in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_at_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_ms: Option<f64>,
    /// True when every undo operation was applied (or was already gone).
    pub rolled_back: bool,
    /// The fault cannot be undone (`process_kill`): `rolled_back` then only
    /// says nothing was left to undo, and reports say "irreversible".
    #[serde(default, skip_serializing_if = "is_false")]
    pub irreversible: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_error: Option<String>,
    /// Fault-specific findings: processes hit, load achieved, OOM kills...
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub observations: serde_json::Value,
    /// What the fault delivered while active: effective seconds, mean
    /// achieved/target, and why it does not count if it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<crate::fault::health::FaultEffect>,
    /// Its health checks over time (about one a second, and every change).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health: Vec<crate::fault::health::HealthPoint>,
    /// What the hypothesis expects of the system after this fault
    /// (`process_kill`'s `expect_restart_within`), and whether it was met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expectation: Option<FaultExpectation>,
}

/// A requirement on how the system answered a fault.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FaultExpectation {
    /// In words: `every killed process restarted within 10s`.
    pub requirement: String,
    /// `None`: it could not be judged (the run is INCONCLUSIVE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
    /// What was measured: `nginx (pid 42) restarted after 1.2s`.
    pub detail: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AbortRecord {
    /// The condition, in words.
    pub condition: String,
    pub probe: String,
    pub at_ms: f64,
    /// The samples that tripped it, in words.
    pub reason: String,
}

/// What kind of gap made a run INCONCLUSIVE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InconclusiveKind {
    /// A fault was not in effect for part of its window (removed from outside).
    FaultMissing,
    /// A fault delivered less than its documented share of the target.
    FaultUnderDelivered,
    /// A setup process exited while the run needed it.
    SetupDied,
    /// A requirement rests on fewer samples than its minimum.
    TooFewSamples,
    /// A killed process was watched for less than `expect_restart_within`
    /// (the step ended first), so its restart could not be judged.
    RestartNotWatched,
    /// The experiment group deviated, but the control group degraded too
    /// and the two do not differ significantly: the change is not the
    /// fault's.
    ControlDegraded,
}

impl InconclusiveKind {
    pub fn name(self) -> &'static str {
        match self {
            InconclusiveKind::FaultMissing => "fault_missing",
            InconclusiveKind::FaultUnderDelivered => "fault_under_delivered",
            InconclusiveKind::SetupDied => "setup_died",
            InconclusiveKind::TooFewSamples => "too_few_samples",
            InconclusiveKind::RestartNotWatched => "restart_not_watched",
            InconclusiveKind::ControlDegraded => "control_degraded",
        }
    }
}

/// One reason why a run is INCONCLUSIVE. Build it with the constructors
/// (`InconclusiveReason::fault_missing(step, label, message)`...) and emit it as
/// `Event::Inconclusive { reason }`; the record builder stamps `at_ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InconclusiveReason {
    pub kind: InconclusiveKind,
    /// What it concerns, in words: "fault 2 `cpu limit`", "probe `api`",
    /// "setup `web`".
    pub subject: String,
    /// Index of the method step, for a fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// The probe or setup process's name, for those.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// One sentence for a person, e.g. "nft table gone at +4.1s".
    pub message: String,
    /// When it was found, in milliseconds since the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<f64>,
}

impl InconclusiveReason {
    fn fault(kind: InconclusiveKind, step: usize, label: &str, message: String) -> Self {
        InconclusiveReason {
            kind,
            subject: format!("fault {} `{label}`", step + 1),
            step: Some(step),
            name: None,
            message,
            at_ms: None,
        }
    }
    /// The fault of method step `step` (0-based) was missing for part of its window.
    pub fn fault_missing(step: usize, label: &str, message: impl Into<String>) -> Self {
        Self::fault(InconclusiveKind::FaultMissing, step, label, message.into())
    }
    /// The fault of method step `step` (0-based) delivered too little.
    pub fn fault_under_delivered(step: usize, label: &str, message: impl Into<String>) -> Self {
        Self::fault(
            InconclusiveKind::FaultUnderDelivered,
            step,
            label,
            message.into(),
        )
    }
    /// A restart of the fault of step `step` could not be judged.
    pub fn restart_not_watched(step: usize, label: &str, message: impl Into<String>) -> Self {
        Self::fault(
            InconclusiveKind::RestartNotWatched,
            step,
            label,
            message.into(),
        )
    }
    /// The setup process `name` died during the run.
    pub fn setup_died(name: &str, message: impl Into<String>) -> Self {
        InconclusiveReason {
            kind: InconclusiveKind::SetupDied,
            subject: format!("setup `{name}`"),
            step: None,
            name: Some(name.to_string()),
            message: message.into(),
            at_ms: None,
        }
    }
    /// A requirement of probe `name` rests on too few samples.
    pub fn too_few_samples(probe: &str, message: impl Into<String>) -> Self {
        InconclusiveReason {
            kind: InconclusiveKind::TooFewSamples,
            subject: format!("probe `{probe}`"),
            step: None,
            name: Some(probe.to_string()),
            message: message.into(),
            at_ms: None,
        }
    }
    /// The control group degraded as much as the experiment group.
    pub fn control_degraded(message: impl Into<String>) -> Self {
        InconclusiveReason {
            kind: InconclusiveKind::ControlDegraded,
            subject: "control group".into(),
            step: None,
            name: None,
            message: message.into(),
            at_ms: None,
        }
    }
    /// `fault 2 `cpu limit` (fault_missing): nft table gone at +4.1s`.
    pub fn describe(&self) -> String {
        format!("{} ({}): {}", self.subject, self.kind.name(), self.message)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ActionRecord {
    pub label: String,
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub ok: bool,
    pub duration_ms: f64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// What it returned: `{status, stdout, stderr}` for a command (output
    /// cut at 64 KiB), `{status, headers, body}` for an HTTP request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Timings {
    pub total_ms: f64,
    /// From the first injection to the first failing sample of any probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_detect_ms: Option<f64>,
    /// From the first injection to the abort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_abort_ms: Option<f64>,
    /// From the end of rollback until every probe recovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_recover_ms: Option<f64>,
    /// Time spent rolling back (automatic undo and user rollbacks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_ms: Option<f64>,
}

/// p50/p95/p99/max of a set of latencies (nearest-rank).
pub fn latency_stats(values: &[f64]) -> Option<LatencyStats> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| {
        let rank = ((q / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    };
    Some(LatencyStats {
        p50: pick(50.0),
        p95: pick(95.0),
        p99: pick(99.0),
        max: *v.last().unwrap(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(|x| x as f64).collect();
        let s = latency_stats(&v).unwrap();
        assert_eq!((s.p50, s.p95, s.p99, s.max), (50.0, 95.0, 99.0, 100.0));
        let one = latency_stats(&[7.0]).unwrap();
        assert_eq!(one.p50, 7.0);
        assert!(latency_stats(&[]).is_none());
    }
}
