//! `faultline history`: one summary per run read from a journal (faultline's
//! own or Chaos Toolkit's format), grouped by experiment, with verdicts over
//! time, time to detect, time to recover, probe trends and the resilience
//! score. The definitions are documented in docs/history.md.
//!
//! Journals are hostile input: parsing never panics, a journal that is not
//! one is an `Err` with the reason, and only the few fields needed are kept.

use super::record::{Verdict, SCHEMA_VERSION};
use super::summary::{fmt_ms, fmt_pct};
use chrono::{DateTime, NaiveDateTime, Utc};
use comfy_table::{
    presets, Cell, CellAlignment, ColumnConstraint, ContentArrangement, Table, Width,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Format version of `faultline history --format json`.
pub const HISTORY_SCHEMA_VERSION: u32 = 1;

/// How many verdict letters the table and Markdown show (the newest ones);
/// JSON has them all.
pub const SPARK_MAX: usize = 40;

/// Longest experiment title or file shown in the table (characters).
const TITLE_MAX: usize = 60;

/// The format a journal was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalKind {
    Faultline,
    Chaostoolkit,
}

/// A run's verdict as history knows it: faultline's verdicts, plus what a
/// Chaos Toolkit journal can say (`failed`) and a partial journal no one
/// finished (`unfinished`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunVerdict {
    Held,
    Deviated,
    Aborted,
    NotSteady,
    RollbackFailed,
    Inconclusive,
    Interrupted,
    Invalid,
    Precondition,
    Privileges,
    Internal,
    /// A Chaos Toolkit run with status `failed` and no deviation (an
    /// activity failed).
    Failed,
    /// A partial journal (`complete: false`) that no watchdog marked: the run
    /// was still going on, or its runner died without a watchdog.
    Unfinished,
}

impl RunVerdict {
    fn of(v: Verdict) -> Self {
        match v {
            Verdict::Held => Self::Held,
            Verdict::Deviated => Self::Deviated,
            Verdict::Aborted => Self::Aborted,
            Verdict::NotSteady => Self::NotSteady,
            Verdict::RollbackFailed => Self::RollbackFailed,
            Verdict::Inconclusive => Self::Inconclusive,
            Verdict::Interrupted => Self::Interrupted,
            Verdict::Invalid => Self::Invalid,
            Verdict::Precondition => Self::Precondition,
            Verdict::Privileges => Self::Privileges,
            Verdict::Internal => Self::Internal,
        }
    }

    /// One letter for the verdict sparkline (legend in docs/history.md).
    pub fn letter(self) -> char {
        match self {
            Self::Held => 'H',
            Self::Deviated => 'D',
            Self::Aborted => 'A',
            Self::NotSteady => 'N',
            Self::RollbackFailed => 'R',
            Self::Inconclusive => 'I',
            Self::Interrupted => 'X',
            Self::Invalid | Self::Precondition | Self::Privileges | Self::Internal => 'E',
            Self::Failed => 'F',
            Self::Unfinished => '?',
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Deviated => "deviated",
            Self::Aborted => "aborted",
            Self::NotSteady => "not_steady",
            Self::RollbackFailed => "rollback_failed",
            Self::Inconclusive => "inconclusive",
            Self::Interrupted => "interrupted",
            Self::Invalid => "invalid",
            Self::Precondition => "precondition",
            Self::Privileges => "privileges",
            Self::Internal => "internal",
            Self::Failed => "failed",
            Self::Unfinished => "unfinished",
        }
    }
}

/// What a person had to do (or what stepped in) to bring the system back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Intervention {
    /// An abort condition stopped the method.
    Aborted,
    /// Stopped with `faultline stop`.
    Stopped,
    /// Stopped by the emergency stop, `faultline halt`.
    Halted,
    /// Interrupted by a signal (Ctrl-C, `kill`).
    Interrupted,
    /// A rollback failed: someone must run `faultline recover` or the
    /// manual commands.
    RollbackFailed,
    /// The runner died and its watchdog rolled the host back.
    Watchdog,
    /// Rolled back, but a probe's `after` requirement was not met: the system
    /// did not come back by itself.
    NotRecovered,
}

impl Intervention {
    const ALL: [Intervention; 7] = [
        Self::Aborted,
        Self::Stopped,
        Self::Halted,
        Self::Interrupted,
        Self::RollbackFailed,
        Self::Watchdog,
        Self::NotRecovered,
    ];

    fn key(self) -> &'static str {
        match self {
            Self::Aborted => "aborted",
            Self::Stopped => "stopped",
            Self::Halted => "halted",
            Self::Interrupted => "interrupted",
            Self::RollbackFailed => "rollback_failed",
            Self::Watchdog => "watchdog",
            Self::NotRecovered => "not_recovered",
        }
    }
}

/// How a run counts toward the resilience score.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScoreClass {
    /// A fault was injected, everything was rolled back automatically and
    /// every probe met its `after` requirement.
    Automatic,
    Intervention(Intervention),
    /// Not a test of resilience (nothing injected, unfinished, an error of
    /// faultline or of the experiment): left out of the score.
    NotCounted,
}

/// One probe in one run: its `during` results.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeRun {
    pub name: String,
    pub samples: u64,
    pub successes: u64,
    pub p95_ms: Option<f64>,
}

/// All that history keeps of one journal.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub kind: JournalKind,
    pub title: String,
    pub file: String,
    pub sha256: Option<String>,
    pub run_id: String,
    pub started_at: Option<DateTime<Utc>>,
    pub verdict: RunVerdict,
    pub class: ScoreClass,
    pub time_to_detect_ms: Option<f64>,
    pub time_to_recover_ms: Option<f64>,
    pub probes: Vec<ProbeRun>,
}

// ---------------------------------------------------------------- parsing

/// The fields of both journal formats that history reads; everything else
/// (samples, sources, outputs) is skipped by the parser without being kept.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Raw {
    schema_version: Option<serde_json::Value>,
    run_id: Option<String>,
    experiment: Option<RawExperiment>,
    started_at: Option<DateTime<Utc>>,
    outcome: Option<RawOutcome>,
    probes: Vec<RawProbe>,
    faults: Vec<RawFault>,
    abort: Option<RawAbort>,
    rollbacks: Vec<RawRollback>,
    timings: Option<RawTimings>,
    manual_recovery: Vec<serde::de::IgnoredAny>,
    complete: Option<bool>,
    ended_by: Option<RawEndedBy>,
    // Chaos Toolkit
    status: Option<String>,
    deviated: Option<bool>,
    steady_states: Option<RawSteadyStates>,
    run: Vec<RawActivityRun>,
    start: Option<String>,
    #[serde(rename = "chaoslib-version")]
    chaoslib_version: Option<serde::de::IgnoredAny>,
    faultline: Option<RawFaultlineKey>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawExperiment {
    title: Option<String>,
    file: Option<String>,
    sha256: Option<String>,
}

#[derive(Deserialize)]
struct RawOutcome {
    verdict: Verdict,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawProbe {
    name: String,
    during: Option<RawStats>,
    after: Option<RawStats>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawStats {
    samples: u64,
    successes: u64,
    latency_ms: Option<RawLatency>,
    met: Option<bool>,
}

#[derive(Deserialize)]
struct RawLatency {
    p95: f64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawFault {
    kind: String,
    injected_at_ms: Option<f64>,
    rolled_back: Option<bool>,
    irreversible: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawAbort {
    condition: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawRollback {
    ok: Option<bool>,
    status: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawTimings {
    time_to_detect_ms: Option<f64>,
    time_to_recover_ms: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawEndedBy {
    restored: Vec<serde::de::IgnoredAny>,
    not_restored: Vec<serde::de::IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawSteadyStates {
    after: Option<RawSteadyState>,
    during: Vec<RawSteadyState>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawSteadyState {
    steady_state_met: Option<bool>,
    probes: Vec<RawProbeRun>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawProbeRun {
    activity: Option<RawActivity>,
    end: Option<String>,
    duration: Option<f64>,
    tolerance_met: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawActivity {
    name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawActivityRun {
    start: Option<String>,
}

#[derive(Deserialize)]
struct RawFaultlineKey {
    run_id: Option<String>,
    verdict: Option<Verdict>,
}

/// A duration read from a journal: finite and not negative, else ignored.
fn ms(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite() && *x >= 0.0)
}

/// A Chaos Toolkit time: RFC 3339, or chaoslib's naive ISO time (UTC).
fn ctk_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// Reads one journal's bytes into its summary; `Err` says why it is not a
/// journal history can read (one line).
pub fn summarize(bytes: &[u8]) -> Result<RunSummary, String> {
    summarize_from(serde_json::Deserializer::from_slice(bytes))
}

/// [`summarize`], parsing as the bytes stream in: memory does not grow with
/// the journal's size (samples are skipped, not kept).
pub fn summarize_reader(r: impl std::io::Read) -> Result<RunSummary, String> {
    summarize_from(serde_json::Deserializer::from_reader(r))
}

fn summarize_from<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
) -> Result<RunSummary, String> {
    let raw: Raw = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = if inner.is_syntax() || inner.is_eof() {
            "not valid JSON"
        } else {
            "malformed journal"
        };
        if path.is_empty() || path == "." {
            format!("{what}: {inner}")
        } else {
            format!("{what} at `{path}`: {inner}")
        }
    })?;
    de.end().map_err(|e| format!("not valid JSON: {e}"))?;
    if raw.schema_version.is_some() {
        faultline_summary(raw)
    } else if raw.status.is_some() || raw.steady_states.is_some() || raw.chaoslib_version.is_some()
    {
        ctk_summary(raw)
    } else {
        Err("not a journal: neither a faultline journal (`schema_version`) nor a Chaos Toolkit journal (`status`, `steady_states`)".into())
    }
}

fn faultline_summary(raw: Raw) -> Result<RunSummary, String> {
    let version = raw
        .schema_version
        .as_ref()
        .and_then(|v| v.as_u64())
        .ok_or("malformed journal: `schema_version` is not a positive integer")?;
    if version == 0 || version > u64::from(SCHEMA_VERSION) {
        return Err(format!(
            "journal schema_version {version} is not one this faultline understands (1 to {SCHEMA_VERSION})"
        ));
    }
    let run_id = raw.run_id.ok_or("malformed journal: no `run_id`")?;
    let exp = raw.experiment.ok_or("malformed journal: no `experiment`")?;
    let title = exp
        .title
        .ok_or("malformed journal: no `experiment.title`")?;
    let outcome = raw.outcome.ok_or("malformed journal: no `outcome`")?;
    let started_at = raw.started_at.ok_or("malformed journal: no `started_at`")?;
    let complete = raw.complete.unwrap_or(true);
    let verdict = if !complete && raw.ended_by.is_none() {
        RunVerdict::Unfinished
    } else {
        RunVerdict::of(outcome.verdict)
    };
    let injected = raw.faults.iter().any(|f| f.injected_at_ms.is_some());
    let left_behind = raw.faults.iter().any(|f| {
        f.rolled_back == Some(false)
            && !(f.irreversible.unwrap_or(false) || super::record::irreversible_kind(&f.kind))
    });
    let class = if verdict == RunVerdict::Unfinished {
        ScoreClass::NotCounted
    } else if let Some(e) = &raw.ended_by {
        if injected || !e.restored.is_empty() || !e.not_restored.is_empty() {
            ScoreClass::Intervention(Intervention::Watchdog)
        } else {
            ScoreClass::NotCounted
        }
    } else if !injected {
        ScoreClass::NotCounted
    } else if outcome.verdict == Verdict::RollbackFailed
        || !raw.manual_recovery.is_empty()
        || left_behind
        || raw.rollbacks.iter().any(|r| r.ok == Some(false))
    {
        ScoreClass::Intervention(Intervention::RollbackFailed)
    } else if outcome.verdict == Verdict::Aborted {
        let cond = raw.abort.map(|a| a.condition).unwrap_or_default();
        ScoreClass::Intervention(if cond.ends_with("via faultline stop") {
            Intervention::Stopped
        } else if cond.ends_with("via faultline halt") {
            Intervention::Halted
        } else {
            Intervention::Aborted
        })
    } else if outcome.verdict == Verdict::Interrupted {
        ScoreClass::Intervention(Intervention::Interrupted)
    } else if !matches!(
        outcome.verdict,
        Verdict::Held | Verdict::Deviated | Verdict::Inconclusive
    ) {
        ScoreClass::NotCounted
    } else if raw
        .probes
        .iter()
        .any(|p| p.after.as_ref().and_then(|a| a.met) == Some(false))
    {
        ScoreClass::Intervention(Intervention::NotRecovered)
    } else {
        ScoreClass::Automatic
    };
    let timings = raw.timings.unwrap_or_default();
    Ok(RunSummary {
        kind: JournalKind::Faultline,
        title,
        file: exp.file.unwrap_or_default(),
        sha256: exp.sha256,
        run_id,
        started_at: Some(started_at),
        verdict,
        class,
        time_to_detect_ms: ms(timings.time_to_detect_ms),
        time_to_recover_ms: ms(timings.time_to_recover_ms),
        probes: raw
            .probes
            .into_iter()
            .map(|p| {
                let d = p.during.unwrap_or_default();
                ProbeRun {
                    name: p.name,
                    samples: d.samples,
                    successes: d.successes.min(d.samples),
                    p95_ms: ms(d.latency_ms.map(|l| l.p95)),
                }
            })
            .collect(),
    })
}

fn ctk_summary(raw: Raw) -> Result<RunSummary, String> {
    let exp = raw.experiment.unwrap_or_default();
    let title = exp
        .title
        .ok_or("malformed Chaos Toolkit journal: no `experiment.title`")?;
    let status = raw.status.unwrap_or_default();
    let deviated = raw.deviated.unwrap_or(false);
    let states = raw.steady_states.unwrap_or_default();
    let fl = raw.faultline;
    let verdict = match fl.as_ref().and_then(|f| f.verdict) {
        Some(v) => RunVerdict::of(v),
        None => match status.as_str() {
            "completed" if deviated => RunVerdict::Deviated,
            "completed" => RunVerdict::Held,
            "failed" if deviated => RunVerdict::Deviated,
            "failed" if raw.run.is_empty() => RunVerdict::NotSteady,
            "failed" => RunVerdict::Failed,
            "aborted" => RunVerdict::Aborted,
            "interrupted" => RunVerdict::Interrupted,
            "running" | "" => RunVerdict::Unfinished,
            other => {
                return Err(format!(
                    "malformed Chaos Toolkit journal: unknown `status` {:?}",
                    crate::sys::text::escape(&other.chars().take(40).collect::<String>())
                ))
            }
        },
    };
    let injected = !raw.run.is_empty();
    let class = if verdict == RunVerdict::Unfinished || !injected {
        ScoreClass::NotCounted
    } else if verdict == RunVerdict::RollbackFailed
        || raw
            .rollbacks
            .iter()
            .any(|r| r.status.as_deref() == Some("failed"))
    {
        ScoreClass::Intervention(Intervention::RollbackFailed)
    } else if verdict == RunVerdict::Aborted {
        ScoreClass::Intervention(Intervention::Aborted)
    } else if verdict == RunVerdict::Interrupted {
        ScoreClass::Intervention(Intervention::Interrupted)
    } else if !matches!(
        verdict,
        RunVerdict::Held | RunVerdict::Deviated | RunVerdict::Inconclusive
    ) {
        ScoreClass::NotCounted
    } else if states.after.as_ref().and_then(|a| a.steady_state_met) == Some(false) {
        ScoreClass::Intervention(Intervention::NotRecovered)
    } else {
        ScoreClass::Automatic
    };
    // Time to detect: the first method activity's start to the end of the
    // first probe run out of tolerance in a `during` check.
    let method_start = raw
        .run
        .iter()
        .filter_map(|r| r.start.as_deref().and_then(ctk_time))
        .min();
    let first_fail = states
        .during
        .iter()
        .flat_map(|s| s.probes.iter())
        .filter(|p| p.tolerance_met == Some(false))
        .filter_map(|p| p.end.as_deref().and_then(ctk_time))
        .min();
    let ttd = match (method_start, first_fail) {
        (Some(a), Some(b)) if b >= a => (b - a).num_microseconds().map(|us| us as f64 / 1000.0),
        _ => None,
    };
    // Probes: every `during` check's runs, per probe name.
    let mut probes: Vec<(ProbeRun, Vec<f64>)> = Vec::new();
    for p in states.during.iter().flat_map(|s| s.probes.iter()) {
        let name = p
            .activity
            .as_ref()
            .and_then(|a| a.name.clone())
            .unwrap_or_default();
        let i = match probes.iter().position(|(q, _)| q.name == name) {
            Some(i) => i,
            None => {
                probes.push((
                    ProbeRun {
                        name,
                        samples: 0,
                        successes: 0,
                        p95_ms: None,
                    },
                    Vec::new(),
                ));
                probes.len() - 1
            }
        };
        let (q, lat) = &mut probes[i];
        q.samples += 1;
        q.successes += u64::from(p.tolerance_met == Some(true));
        if let Some(d) = ms(p.duration.map(|s| s * 1000.0)) {
            lat.push(d);
        }
    }
    let probes = probes
        .into_iter()
        .map(|(mut q, mut lat)| {
            q.p95_ms = percentile(&mut lat, 95.0);
            q
        })
        .collect();
    Ok(RunSummary {
        kind: JournalKind::Chaostoolkit,
        title,
        file: exp.file.unwrap_or_default(),
        sha256: exp.sha256,
        run_id: fl.and_then(|f| f.run_id).unwrap_or_default(),
        started_at: raw.start.as_deref().and_then(ctk_time),
        verdict,
        class,
        time_to_detect_ms: ttd,
        time_to_recover_ms: None,
        probes,
    })
}

/// Nearest-rank percentile (as the run reports use); `None` when empty.
pub fn percentile(v: &mut [f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

// ---------------------------------------------------------------- grouping

/// p50 and p95 of a measure over the runs that have it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Spread {
    /// How many runs had the measure.
    pub runs: usize,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
}

fn spread(mut v: Vec<f64>) -> Spread {
    Spread {
        runs: v.len(),
        p50: percentile(&mut v, 50.0),
        p95: percentile(&mut v, 95.0),
    }
}

/// The resilience score of one experiment and its inputs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Score {
    /// `100 * automatic / (automatic + interventions)`; `null` when no run
    /// counted.
    pub percent: Option<f64>,
    /// Runs that recovered without human intervention.
    pub automatic: usize,
    /// Runs that needed an intervention (the sum of `by_kind`).
    pub interventions: usize,
    /// Runs left out: nothing injected, unfinished, or an error.
    pub not_counted: usize,
    /// Interventions by kind.
    pub by_kind: BTreeMap<&'static str, usize>,
}

/// One probe's `during` results in one run, for the trend.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ProbePoint {
    pub run_id: String,
    pub started_at: Option<DateTime<Utc>>,
    pub p95_ms: Option<f64>,
    /// successes / samples, 0 to 1.
    pub success: f64,
}

/// A probe's trend over the experiment's runs: its first and last run with
/// `during` samples, and the change.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ProbeTrend {
    pub name: String,
    /// Runs in which it took `during` samples.
    pub runs: usize,
    pub first: ProbePoint,
    pub last: ProbePoint,
    /// last - first, when both have a p95.
    pub p95_change_ms: Option<f64>,
    /// last - first success ratio.
    pub success_change: f64,
    /// Every run's point, oldest first (the trend plot of `--format html`).
    pub points: Vec<ProbePoint>,
}

/// One run in an experiment's timeline.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RunPoint {
    pub run_id: String,
    pub started_at: Option<DateTime<Utc>>,
    /// The verdict's key (`held`, `deviated`, ...).
    pub verdict: &'static str,
    pub time_to_detect_ms: Option<f64>,
    pub time_to_recover_ms: Option<f64>,
}

/// Everything history shows about one experiment.
#[derive(Clone, Debug, Serialize)]
pub struct ExperimentHistory {
    pub title: String,
    pub file: String,
    /// Distinct experiment sha256s seen (edits of the file), oldest first.
    pub versions: Vec<String>,
    pub journal_formats: Vec<JournalKind>,
    pub runs: usize,
    pub first_run: Option<DateTime<Utc>>,
    pub last_run: Option<DateTime<Utc>>,
    /// One letter per run, oldest to newest (legend in docs/history.md).
    pub verdicts: String,
    pub verdict_counts: BTreeMap<&'static str, usize>,
    pub time_to_detect_ms: Spread,
    pub time_to_recover_ms: Spread,
    pub score: Score,
    pub probes: Vec<ProbeTrend>,
    /// Every run, oldest first.
    pub timeline: Vec<RunPoint>,
}

/// A journal that was not read, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub file: String,
    pub reason: String,
}

/// The whole history: `faultline history --format json`.
#[derive(Clone, Debug, Serialize)]
pub struct History {
    pub schema_version: u32,
    pub journals_read: usize,
    pub skipped: Vec<Skipped>,
    pub score_formula: &'static str,
    pub experiments: Vec<ExperimentHistory>,
}

pub const SCORE_FORMULA: &str =
    "score = 100 * automatic / (automatic + interventions); interventions = aborted + stopped + halted + interrupted + rollback_failed + watchdog + not_recovered";

/// Groups runs by experiment (title and file) and computes each one's
/// history. Experiments are ordered by title, then file.
pub fn build(runs: Vec<RunSummary>, skipped: Vec<Skipped>) -> History {
    let journals_read = runs.len();
    let mut groups: BTreeMap<(String, String), Vec<RunSummary>> = BTreeMap::new();
    for r in runs {
        groups
            .entry((r.title.clone(), r.file.clone()))
            .or_default()
            .push(r);
    }
    let experiments = groups
        .into_iter()
        .map(|((title, file), mut runs)| {
            // Oldest first; runs without a time last, in run id order.
            runs.sort_by(|a, b| {
                (a.started_at.is_none(), a.started_at, &a.run_id).cmp(&(
                    b.started_at.is_none(),
                    b.started_at,
                    &b.run_id,
                ))
            });
            experiment(title, file, &runs)
        })
        .collect();
    History {
        schema_version: HISTORY_SCHEMA_VERSION,
        journals_read,
        skipped,
        score_formula: SCORE_FORMULA,
        experiments,
    }
}

fn experiment(title: String, file: String, runs: &[RunSummary]) -> ExperimentHistory {
    let mut versions: Vec<String> = Vec::new();
    let mut formats = Vec::new();
    let mut counts = BTreeMap::new();
    let mut by_kind: BTreeMap<&'static str, usize> =
        Intervention::ALL.iter().map(|k| (k.key(), 0)).collect();
    let (mut automatic, mut interventions, mut not_counted) = (0, 0, 0);
    for r in runs {
        if let Some(s) = &r.sha256 {
            if !versions.contains(s) {
                versions.push(s.clone());
            }
        }
        if !formats.contains(&r.kind) {
            formats.push(r.kind);
        }
        *counts.entry(r.verdict.key()).or_insert(0) += 1;
        match r.class {
            ScoreClass::Automatic => automatic += 1,
            ScoreClass::Intervention(k) => {
                interventions += 1;
                *by_kind.entry(k.key()).or_insert(0) += 1;
            }
            ScoreClass::NotCounted => not_counted += 1,
        }
    }
    let counted = automatic + interventions;
    let percent = (counted > 0).then(|| 100.0 * automatic as f64 / counted as f64);

    // Probe trends, in the order probes first appear.
    let mut trends: Vec<ProbeTrend> = Vec::new();
    for r in runs {
        for p in r.probes.iter().filter(|p| p.samples > 0) {
            let point = ProbePoint {
                run_id: r.run_id.clone(),
                started_at: r.started_at,
                p95_ms: p.p95_ms,
                success: p.successes as f64 / p.samples as f64,
            };
            match trends.iter_mut().find(|t| t.name == p.name) {
                Some(t) => {
                    t.runs += 1;
                    t.points.push(point.clone());
                    t.last = point;
                }
                None => trends.push(ProbeTrend {
                    name: p.name.clone(),
                    runs: 1,
                    first: point.clone(),
                    last: point.clone(),
                    p95_change_ms: None,
                    success_change: 0.0,
                    points: vec![point],
                }),
            }
        }
    }
    for t in &mut trends {
        t.p95_change_ms = match (t.first.p95_ms, t.last.p95_ms) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        t.success_change = t.last.success - t.first.success;
    }

    ExperimentHistory {
        title,
        file,
        versions,
        journal_formats: formats,
        runs: runs.len(),
        first_run: runs.iter().filter_map(|r| r.started_at).min(),
        last_run: runs.iter().filter_map(|r| r.started_at).max(),
        verdicts: runs.iter().map(|r| r.verdict.letter()).collect(),
        verdict_counts: counts,
        time_to_detect_ms: spread(runs.iter().filter_map(|r| r.time_to_detect_ms).collect()),
        time_to_recover_ms: spread(runs.iter().filter_map(|r| r.time_to_recover_ms).collect()),
        score: Score {
            percent,
            automatic,
            interventions,
            not_counted,
            by_kind,
        },
        probes: trends,
        timeline: runs
            .iter()
            .map(|r| RunPoint {
                run_id: r.run_id.clone(),
                started_at: r.started_at,
                verdict: r.verdict.key(),
                time_to_detect_ms: r.time_to_detect_ms,
                time_to_recover_ms: r.time_to_recover_ms,
            })
            .collect(),
    }
}

// ---------------------------------------------------------------- rendering

/// At most `max` characters of `s`, escaped for a terminal, with `…` when cut.
fn short(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    crate::sys::text::escape(&out).into_owned()
}

/// The newest `SPARK_MAX` letters, `…` in front when there are more.
fn spark(v: &str) -> String {
    let n = v.chars().count();
    if n <= SPARK_MAX {
        v.to_string()
    } else {
        format!("…{}", v.chars().skip(n - SPARK_MAX).collect::<String>())
    }
}

fn p50_p95(s: &Spread) -> String {
    match (s.p50, s.p95) {
        (Some(a), Some(b)) => format!("{} / {}", fmt_ms(a), fmt_ms(b)),
        _ => "—".into(),
    }
}

fn score_text(s: &Score) -> String {
    match s.percent {
        Some(p) => format!(
            "{}% ({}/{})",
            p.round() as i64,
            s.automatic,
            s.automatic + s.interventions
        ),
        None => "—".into(),
    }
}

fn interventions_text(s: &Score) -> String {
    let parts: Vec<String> = s
        .by_kind
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{n} {}", k.replace('_', " ")))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn last_run_text(e: &ExperimentHistory) -> String {
    e.last_run
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "—".into())
}

fn trend_p95(t: &ProbeTrend) -> String {
    let f = |v: Option<f64>| v.map_or("—".to_string(), fmt_ms);
    if t.runs == 1 {
        return f(t.last.p95_ms);
    }
    let change = match t.p95_change_ms {
        Some(c) if c >= 0.0 => format!(" (+{})", fmt_ms(c)),
        Some(c) => format!(" (-{})", fmt_ms(-c)),
        None => String::new(),
    };
    format!("{} → {}{change}", f(t.first.p95_ms), f(t.last.p95_ms))
}

fn trend_success(t: &ProbeTrend) -> String {
    if t.runs == 1 {
        return fmt_pct(t.last.success);
    }
    format!("{} → {}", fmt_pct(t.first.success), fmt_pct(t.last.success))
}

const LEGEND: &str = "Verdicts, oldest to newest: H held, D deviated, A aborted, N not steady, R rollback failed, I inconclusive, X interrupted, E error, F failed (Chaos Toolkit), ? unfinished.";

fn experiment_name(e: &ExperimentHistory) -> String {
    if e.file.is_empty() {
        short(&e.title, TITLE_MAX)
    } else {
        format!(
            "{}\n{}",
            short(&e.title, TITLE_MAX),
            short(&e.file, TITLE_MAX)
        )
    }
}

/// The terminal table (no colour; fixed width like the run report).
pub fn render_table(h: &History) -> String {
    let mut out = String::new();
    if h.experiments.is_empty() {
        out.push_str("No runs in the journals read.\n");
        return out;
    }
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(super::table::WIDTH)
        .set_header(vec![
            "Experiment",
            "Runs",
            "Verdicts",
            "Last run",
            "Detect p50 / p95",
            "Recover p50 / p95",
            "Score",
            "Interventions",
        ]);
    if let Some(c) = t.column_mut(0) {
        c.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(34)));
    }
    for e in &h.experiments {
        t.add_row(vec![
            Cell::new(experiment_name(e)),
            Cell::new(e.runs).set_alignment(CellAlignment::Right),
            Cell::new(spark(&e.verdicts)),
            Cell::new(last_run_text(e)),
            Cell::new(p50_p95(&e.time_to_detect_ms)),
            Cell::new(p50_p95(&e.time_to_recover_ms)),
            Cell::new(score_text(&e.score)),
            Cell::new(interventions_text(&e.score)),
        ]);
    }
    out.push_str(&t.to_string());
    out.push('\n');
    let mut p = Table::new();
    p.load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(super::table::WIDTH)
        .set_header(vec![
            "Experiment",
            "Probe",
            "Runs",
            "During p95: first → last",
            "During success: first → last",
        ]);
    let mut any = false;
    for e in &h.experiments {
        for tr in &e.probes {
            any = true;
            p.add_row(vec![
                Cell::new(short(&e.title, 40)),
                Cell::new(short(&tr.name, 40)),
                Cell::new(tr.runs).set_alignment(CellAlignment::Right),
                Cell::new(trend_p95(tr)),
                Cell::new(trend_success(tr)),
            ]);
        }
    }
    if any {
        out.push_str(&p.to_string());
        out.push('\n');
    }
    out.push_str(LEGEND);
    out.push('\n');
    out.push_str("Resilience score: runs recovered without human intervention / runs counted (");
    out.push_str(SCORE_FORMULA);
    out.push_str("); see docs/history.md.\n");
    out.push_str(&format!("{} journal(s) read", h.journals_read));
    if !h.skipped.is_empty() {
        out.push_str(&format!(
            ", {} skipped (listed on standard error)",
            h.skipped.len()
        ));
    }
    out.push_str(".\n");
    out
}

/// A Markdown table cell: escaped for a terminal and for Markdown/HTML.
fn md(s: &str) -> String {
    super::markdown::cell(&crate::sys::text::escape(s))
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('`', "\\`")
}

/// The history as Markdown (for a knowledge base page).
pub fn render_markdown(h: &History) -> String {
    let mut o = String::from("# Experiment history\n\n");
    o.push_str(&format!(
        "{} journal(s) read, {} skipped, {} experiment(s).\n\n",
        h.journals_read,
        h.skipped.len(),
        h.experiments.len()
    ));
    o.push_str("| Experiment | File | Runs | Verdicts (oldest → newest) | Last run | Time to detect p50 / p95 | Time to recover p50 / p95 | Resilience score | Interventions |\n");
    o.push_str("|---|---|---:|---|---|---|---|---|---|\n");
    for e in &h.experiments {
        o.push_str(&format!(
            "| {} | {} | {} | `{}` | {} | {} | {} | {} | {} |\n",
            md(&e.title),
            md(&e.file),
            e.runs,
            spark(&e.verdicts),
            last_run_text(e),
            p50_p95(&e.time_to_detect_ms),
            p50_p95(&e.time_to_recover_ms),
            score_text(&e.score),
            interventions_text(&e.score)
        ));
    }
    if h.experiments.iter().any(|e| !e.probes.is_empty()) {
        o.push_str("\n## Probe trends (during the method)\n\n");
        o.push_str("| Experiment | Probe | Runs | p95: first → last | Success: first → last |\n");
        o.push_str("|---|---|---:|---|---|\n");
        for e in &h.experiments {
            for t in &e.probes {
                o.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    md(&e.title),
                    md(&t.name),
                    t.runs,
                    trend_p95(t),
                    trend_success(t)
                ));
            }
        }
    }
    if !h.skipped.is_empty() {
        o.push_str("\n## Skipped journals\n\n| File | Reason |\n|---|---|\n");
        for s in &h.skipped {
            o.push_str(&format!("| {} | {} |\n", md(&s.file), md(&s.reason)));
        }
    }
    o.push_str(&format!(
        "\n{LEGEND}\n\nResilience score: `{SCORE_FORMULA}` (see docs/history.md).\n"
    ));
    o
}

/// The history as pretty JSON. Strings from journals are kept as they are
/// (JSON escapes control characters itself).
pub fn render_json(h: &History) -> String {
    let mut s = serde_json::to_string_pretty(h).expect("history serializes");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&mut v, 50.0), Some(3.0));
        assert_eq!(percentile(&mut v, 95.0), Some(5.0));
        assert_eq!(percentile(&mut [], 50.0), None);
    }

    #[test]
    fn not_a_journal_says_why() {
        assert!(summarize(b"{").unwrap_err().starts_with("not valid JSON"));
        assert!(summarize(b"[1]")
            .unwrap_err()
            .starts_with("malformed journal"));
        assert!(summarize(b"{}").unwrap_err().starts_with("not a journal"));
        let deep = "[".repeat(10_000);
        assert!(summarize(deep.as_bytes()).is_err());
        let e = summarize(br#"{"schema_version": 2, "run_id": "x", "outcome": {"verdict": 7}}"#)
            .unwrap_err();
        assert!(e.contains("outcome.verdict"), "{e}");
        let e = summarize(br#"{"schema_version": 9, "run_id": "x"}"#).unwrap_err();
        assert!(e.contains("schema_version 9"), "{e}");
    }

    #[test]
    fn ctk_naive_times_are_utc() {
        let t = ctk_time("2024-01-02T03:04:05.123456").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-01-02T03:04:05.123456+00:00");
        assert!(ctk_time("yesterday").is_none());
    }

    #[test]
    fn sparkline_keeps_the_newest() {
        let v = "H".repeat(50) + "D";
        let s = spark(&v);
        assert!(s.starts_with('…') && s.ends_with('D'));
        assert_eq!(s.chars().count(), SPARK_MAX + 1);
    }

    #[test]
    fn markdown_cells_cannot_break_the_table() {
        assert_eq!(md("a|b<script>\x1b"), "a\\|b&lt;script&gt;\\\\x1b");
    }
}
