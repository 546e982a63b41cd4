//! Helpers shared by the report formats: number and duration formatting,
//! whether a phase was reached, the verdict sentence, and a compact summary of
//! a fault's free-form observations.

use super::record::{
    FaultRecord, Phase, PhaseStats, ProbeRecord, RunRecord, SamplePhase, SampleStatus, Verdict,
};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde_json::Value;

/// A duration in milliseconds for people: `850ms`, `1.2s`, `2m 03s`, `1h 02m`.
pub fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() {
        return "—".into();
    }
    let neg = ms < 0.0;
    let ms = ms.abs();
    let s = if ms < 1.0 {
        format!("{ms:.2}ms")
    } else if ms < 10.0 {
        format!("{ms:.1}ms")
    } else if ms < 1000.0 {
        format!("{}ms", ms.round() as u64)
    } else if ms < 60_000.0 {
        let secs = ms / 1000.0;
        if secs < 10.0 {
            format!("{secs:.2}s")
        } else {
            format!("{secs:.1}s")
        }
    } else if ms < 3_600_000.0 {
        let total = (ms / 1000.0).round() as u64;
        format!("{}m {:02}s", total / 60, total % 60)
    } else {
        let total = (ms / 60_000.0).round() as u64;
        format!("{}h {:02}m", total / 60, total % 60)
    };
    if neg {
        format!("-{s}")
    } else {
        s
    }
}

/// An optional duration, `—` when absent.
pub fn fmt_opt_ms(ms: Option<f64>) -> String {
    ms.map(fmt_ms).unwrap_or_else(|| "—".into())
}

/// A point in the run, as an offset from its start: `+12.3s`.
pub fn fmt_offset(ms: f64) -> String {
    format!("+{}", fmt_ms(ms))
}

/// A latency for a table cell: `3.1ms`, `1.20s`.
pub fn fmt_latency(ms: f64) -> String {
    fmt_ms(ms)
}

/// The success ratio of a phase, `—` without samples.
pub fn fmt_success(stats: &PhaseStats) -> String {
    match stats.success_ratio() {
        Some(r) => fmt_pct(r),
        None => "—".into(),
    }
}

/// A ratio as a percentage: `100%`, `97.5%`, `0%`.
pub fn fmt_pct(ratio: f64) -> String {
    let p = ratio * 100.0;
    if (p - p.round()).abs() < 0.05 {
        format!("{}%", p.round() as i64)
    } else {
        format!("{p:.1}%")
    }
}

/// An absolute time, to the second, in UTC.
pub fn fmt_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The absolute time of an offset (milliseconds since the run started).
pub fn at_offset(rec: &RunRecord, ms: f64) -> DateTime<Utc> {
    rec.started_at + ChronoDuration::microseconds((ms * 1000.0).round() as i64)
}

/// The run phases a sample phase spans.
fn run_phases(p: SamplePhase) -> &'static [Phase] {
    match p {
        SamplePhase::Before => &[Phase::Before],
        SamplePhase::During => &[Phase::Method, Phase::Rollback],
        SamplePhase::After => &[Phase::After],
    }
}

/// Whether the run got to a sample phase at all (the phase span is recorded,
/// or some probe took a sample in it). A NOT STEADY run never reaches
/// `during` and `after`.
pub fn phase_reached(rec: &RunRecord, p: SamplePhase) -> bool {
    let spans = run_phases(p);
    rec.phases.iter().any(|s| spans.contains(&s.phase))
        || rec.probes.iter().any(|pr| pr.phase(p).samples > 0)
}

/// Start and end of a sample phase, from the recorded phase spans.
pub fn phase_window(rec: &RunRecord, p: SamplePhase) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let spans = run_phases(p);
    let mut it = rec.phases.iter().filter(|s| spans.contains(&s.phase));
    let first = it.next()?;
    let (mut start, mut end) = (first.started_at, first.ended_at);
    for s in it {
        start = start.min(s.started_at);
        end = end.max(s.ended_at);
    }
    Some((start, end))
}

/// How a probe fared in one phase, for every format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhaseResult {
    /// The requirement was met.
    Met,
    /// The requirement was not met.
    NotMet,
    /// The phase ran but had no requirement for this probe (observed only).
    Unchecked,
    /// The phase ran with a requirement but this probe took no sample.
    NoSamples,
    /// The run never got to this phase.
    NotReached,
}

impl PhaseResult {
    pub fn of(rec: &RunRecord, stats: &PhaseStats, p: SamplePhase) -> PhaseResult {
        match stats.met {
            Some(true) => PhaseResult::Met,
            Some(false) => PhaseResult::NotMet,
            None if !phase_reached(rec, p) => PhaseResult::NotReached,
            None if stats.requirement.is_none() => PhaseResult::Unchecked,
            None if stats.samples == 0 => PhaseResult::NoSamples,
            None => PhaseResult::Unchecked,
        }
    }

    /// A short word for a table cell (no colour, no symbol).
    pub fn word(self) -> &'static str {
        match self {
            PhaseResult::Met => "met",
            PhaseResult::NotMet => "not met",
            PhaseResult::Unchecked => "not checked",
            PhaseResult::NoSamples => "no samples",
            PhaseResult::NotReached => "not reached",
        }
    }

    /// The symbol shown before the word.
    pub fn symbol(self) -> &'static str {
        match self {
            PhaseResult::Met => "✓",
            PhaseResult::NotMet => "✗",
            PhaseResult::Unchecked => "·",
            PhaseResult::NoSamples => "?",
            PhaseResult::NotReached => "–",
        }
    }
}

/// `ok 18 · fail 1 · err 1`.
pub fn fmt_counts(s: &PhaseStats) -> String {
    format!(
        "ok {} · fail {} · err {}",
        s.successes, s.failures, s.errors
    )
}

/// The verdict sentence without colour: `HELD (exit 0): hypothesis held — reason`.
/// A journal the runner did not finish says so instead:
/// `UNFINISHED (ended by the watchdog): the runner (pid 42) died during ...`.
pub fn verdict_text(rec: &RunRecord) -> (String, String) {
    if !rec.complete {
        let head = match (rec.outcome.verdict, &rec.ended_by) {
            (Verdict::RollbackFailed, _) => "UNFINISHED, ROLLBACK FAILED".to_string(),
            (_, Some(e)) => format!("UNFINISHED (ended by the {})", e.by),
            (_, None) => "UNFINISHED".to_string(),
        };
        return (head, format!(": {}", rec.outcome.reason.trim()));
    }
    let code = rec.outcome.exit_code;
    let head = format!("{} (exit {code})", rec.outcome.verdict.label());
    let mut tail = format!(": {}", crate::exit::meaning(code));
    let reason = rec.outcome.reason.trim();
    if !reason.is_empty() {
        tail.push_str(" — ");
        tail.push_str(reason);
    }
    (head, tail)
}

/// The probe had no failing or erroring sample after the steady state was
/// checked (during the method and after it): there was nothing to recover
/// from, so reports say "held throughout", not "recovered".
pub fn held_throughout(p: &ProbeRecord) -> bool {
    !p.samples
        .iter()
        .any(|s| s.phase != SamplePhase::Before && s.status != SampleStatus::Success)
        && p.during.failures + p.during.errors + p.after.failures + p.after.errors == 0
}

/// `longest outage 1.2s (max 5s)`, or without a limit `longest outage
/// 1.2s` when some sample failed; `None` when there is nothing to say.
pub fn fmt_outage(s: &PhaseStats) -> Option<String> {
    let longest = s.longest_outage_ms?;
    match s.max_outage_ms {
        Some(max) => Some(format!(
            "longest outage {} (max {})",
            fmt_ms(longest),
            fmt_ms(max)
        )),
        None if longest > 0.0 => Some(format!("longest outage {}", fmt_ms(longest))),
        None => None,
    }
}

/// A fault's expectation in one line: `✓ every killed process restarts
/// within 10s: 1 of 1 killed restarted within 10s`.
pub fn fmt_expectation(e: &super::record::FaultExpectation) -> String {
    let word = match e.met {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not judged",
    };
    format!("expects {} ({word}): {}", e.requirement, e.detail)
}

/// How a fault ended, in words every format shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollbackResult {
    /// Never injected: nothing to undo.
    NothingToUndo,
    /// Injected, and it cannot be undone (`process_kill`).
    Irreversible,
    RolledBack,
    NotRolledBack,
}

impl RollbackResult {
    pub fn of(f: &FaultRecord) -> RollbackResult {
        let never_injected = f.injected_at_ms.is_none() && f.inject_error.is_none();
        if f.rolled_back && never_injected {
            RollbackResult::NothingToUndo
        } else if f.irreversible && f.rolled_back {
            RollbackResult::Irreversible
        } else if f.rolled_back {
            RollbackResult::RolledBack
        } else {
            RollbackResult::NotRolledBack
        }
    }

    /// The words after the symbol.
    pub fn words(self) -> &'static str {
        match self {
            RollbackResult::NothingToUndo => "nothing to undo",
            RollbackResult::Irreversible => "irreversible",
            RollbackResult::RolledBack => "rolled back",
            RollbackResult::NotRolledBack => "NOT rolled back",
        }
    }
}

/// One line per top-level key of a fault's observations, e.g.
/// `processes: 2 (pid=4242 comm=nginx; pid=4243 comm=nginx)`.
pub fn observation_lines(v: &Value) -> Vec<String> {
    match v {
        Value::Null => Vec::new(),
        Value::Object(map) => map
            .iter()
            // Shown elsewhere (target, times) or empty: not worth a line.
            .filter(|(k, _)| !SHOWN_ELSEWHERE.contains(&k.as_str()))
            .map(|(k, val)| (k, compact(val, 0)))
            .filter(|(_, text)| text != "none")
            .map(|(k, text)| format!("{}: {text}", k.replace('_', " ")))
            .collect(),
        other => vec![compact(other, 0)],
    }
}

/// Observation keys the reports already show in their own columns.
const SHOWN_ELSEWHERE: [&str; 4] = ["target", "injected_at", "at", "expect_restart"];

/// Inside lists of objects (processes hit, restarts...), these keys say
/// enough; the full objects stay in the JSON journal.
const KEY_FIELDS: [&str; 9] = [
    "comm",
    "pid",
    "name",
    "signal",
    "outcome",
    "new_pid",
    "restart_ms",
    "oom_kills",
    "path",
];

const MAX_ITEMS: usize = 5;

/// A compact one-line rendering of any JSON value.
fn compact(v: &Value, depth: usize) -> String {
    match v {
        Value::Null => "none".into(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            if items.is_empty() {
                return "none".into();
            }
            let shown: Vec<String> = items
                .iter()
                .take(MAX_ITEMS)
                .map(|i| compact(i, depth + 1))
                .collect();
            let more = items.len().saturating_sub(MAX_ITEMS);
            let more = if more > 0 {
                format!("; +{more} more")
            } else {
                String::new()
            };
            if items.iter().any(|i| i.is_object() || i.is_array()) {
                format!("{} ({}{more})", items.len(), shown.join("; "))
            } else {
                format!("{}{more}", shown.join(", "))
            }
        }
        Value::Object(map) => {
            if depth > 2 {
                return Value::Object(map.clone()).to_string();
            }
            let key_only = depth > 0 && map.keys().any(|k| KEY_FIELDS.contains(&k.as_str()));
            map.iter()
                .filter(|(k, _)| !key_only || KEY_FIELDS.contains(&k.as_str()))
                .map(|(k, val)| format!("{k}={}", compact(val, depth + 1)))
                .collect::<Vec<_>>()
                .join(" ")
        }
    }
}

/// A record shared by the unit tests of every format.
#[cfg(test)]
pub(crate) mod testdata {
    use super::super::record::*;
    use chrono::TimeZone;

    fn stats(
        samples: u32,
        ok: u32,
        fail: u32,
        err: u32,
        req: Option<&str>,
        met: Option<bool>,
    ) -> PhaseStats {
        PhaseStats {
            samples,
            successes: ok,
            failures: fail,
            errors: err,
            latency_ms: (samples > 0).then_some(LatencyStats {
                p50: 3.0,
                p95: 8.5,
                p99: 12.0,
                max: 12.0,
            }),
            requirement: req.map(String::from),
            met,
            ..Default::default()
        }
    }

    /// A held run with one probe (`web | api`, a pipe in its name on purpose)
    /// and one fault.
    pub fn held() -> RunRecord {
        let t0 = chrono::Utc
            .with_ymd_and_hms(2026, 11, 27, 14, 51, 3)
            .unwrap();
        let ms = |m: i64| t0 + chrono::Duration::milliseconds(m);
        RunRecord {
            schema_version: SCHEMA_VERSION,
            faultline_version: "0.1.0".into(),
            run_id: "20261127-145103-3f2a".into(),
            experiment: ExperimentInfo {
                title: "Web survives a paused worker".into(),
                hypothesis: "web answers 95% of requests while a worker is paused".into(),
                description: Some("Pauses one worker for 10s.".into()),
                file: "experiments/pause.yaml".into(),
                tags: vec!["web".into()],
                sha256: None,
                source: None,
                as_run: None,
            },
            host: "box1".into(),
            user: None,
            started_at: t0,
            ended_at: ms(30_000),
            outcome: Outcome {
                verdict: Verdict::Held,
                exit_code: 0,
                reason: "web | api recovered 1.2s after rollback".into(),
            },
            phases: vec![
                PhaseSpan {
                    phase: Phase::Before,
                    started_at: ms(0),
                    ended_at: ms(5_000),
                },
                PhaseSpan {
                    phase: Phase::Method,
                    started_at: ms(5_000),
                    ended_at: ms(15_000),
                },
                PhaseSpan {
                    phase: Phase::Rollback,
                    started_at: ms(15_000),
                    ended_at: ms(15_050),
                },
                PhaseSpan {
                    phase: Phase::After,
                    started_at: ms(15_050),
                    ended_at: ms(30_000),
                },
            ],
            probes: vec![ProbeRecord {
                name: "web | api".into(),
                kind: "http".into(),
                target: "GET http://127.0.0.1:8080/health".into(),
                before: stats(5, 5, 0, 0, Some("100% success"), Some(true)),
                during: stats(10, 9, 1, 0, Some(">= 95% success"), Some(true)),
                after: stats(5, 5, 0, 0, Some("100% success"), Some(true)),
                recovered_after_ms: Some(1200.0),
                group: None,
                samples: vec![SampleRecord {
                    phase: SamplePhase::Before,
                    at_ms: 10.0,
                    latency_ms: 3.0,
                    status: SampleStatus::Success,
                    detail: "200".into(),
                    output: None,
                }],
                samples_omitted: 0,
                samples_thinned: 0,
            }],
            steps: vec![StepRecord {
                index: 0,
                label: "pause worker".into(),
                kind: "fault".into(),
                status: StepStatus::Completed,
                started_ms: Some(5_000.0),
                ended_ms: Some(15_000.0),
                detail: String::new(),
                output: None,
            }],
            faults: vec![FaultRecord {
                step: 0,
                label: "pause worker".into(),
                kind: "process_pause".into(),
                target: "process name=worker".into(),
                operations: vec!["SIGSTOP pid 4242 (worker)".into()],
                injected_at_ms: Some(5_010.0),
                inject_ms: Some(2.0),
                verify_ms: Some(1.0),
                verified: Some("pid 4242 state T (stopped)".into()),
                inject_error: None,
                rolled_back_at_ms: Some(15_000.0),
                rollback_ms: Some(3.0),
                rolled_back: true,
                irreversible: false,
                rollback_error: None,
                observations: serde_json::json!({"processes": [{"pid": 4242, "comm": "worker"}]}),
                effect: None,
                health: vec![],
                expectation: None,
            }],
            abort: None,
            rollbacks: vec![],
            timings: Timings {
                total_ms: 30_000.0,
                time_to_detect_ms: Some(800.0),
                time_to_abort_ms: None,
                time_to_recover_ms: Some(1200.0),
                rollback_ms: Some(50.0),
            },
            manual_recovery: vec![],
            inconclusive: vec![],
            warnings: vec![],
            complete: true,
            ended_by: None,
            last_phase: None,
            escalation: None,
            groups: vec![],
            spool: None,
        }
    }

    /// A NOT STEADY run with no faults, no samples after `before`, no latency.
    pub fn bare() -> RunRecord {
        let mut r = held();
        r.outcome = Outcome {
            verdict: Verdict::NotSteady,
            exit_code: 3,
            reason: String::new(),
        };
        r.phases.truncate(1);
        r.faults.clear();
        r.steps.clear();
        r.experiment.description = None;
        r.timings = Timings::default();
        let p = &mut r.probes[0];
        p.before = PhaseStats {
            samples: 3,
            successes: 0,
            failures: 0,
            errors: 3,
            latency_ms: None,
            requirement: Some("100% success".into()),
            met: Some(false),
            ..Default::default()
        };
        p.during = PhaseStats::default();
        p.after = PhaseStats::default();
        p.recovered_after_ms = None;
        p.samples.clear();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_ms(0.5), "0.50ms");
        assert_eq!(fmt_ms(3.04), "3.0ms");
        assert_eq!(fmt_ms(850.0), "850ms");
        assert_eq!(fmt_ms(1234.0), "1.23s");
        assert_eq!(fmt_ms(12_345.0), "12.3s");
        assert_eq!(fmt_ms(123_000.0), "2m 03s");
        assert_eq!(fmt_ms(3_720_000.0), "1h 02m");
        assert_eq!(fmt_ms(f64::NAN), "—");
        assert_eq!(fmt_pct(1.0), "100%");
        assert_eq!(fmt_pct(0.975), "97.5%");
    }

    #[test]
    fn phases_not_reached_in_a_not_steady_run() {
        let r = testdata::bare();
        assert!(phase_reached(&r, SamplePhase::Before));
        assert!(!phase_reached(&r, SamplePhase::During));
        assert!(!phase_reached(&r, SamplePhase::After));
        let p = &r.probes[0];
        assert_eq!(
            PhaseResult::of(&r, &p.during, SamplePhase::During),
            PhaseResult::NotReached
        );
        assert_eq!(
            PhaseResult::of(&r, &p.before, SamplePhase::Before),
            PhaseResult::NotMet
        );
    }

    #[test]
    fn observations_are_summarised() {
        let v = serde_json::json!({
            "processes_hit": [{"pid": 1, "comm": "a"}, {"pid": 2, "comm": "b"}],
            "signal": "SIGSTOP",
            "restarts": 0,
        });
        let lines = observation_lines(&v);
        assert!(lines.contains(&"processes hit: 2 (comm=a pid=1; comm=b pid=2)".to_string()));
        assert!(lines.contains(&"signal: SIGSTOP".to_string()));
        assert!(observation_lines(&Value::Null).is_empty());
        let many: Vec<i32> = (0..8).collect();
        assert_eq!(
            observation_lines(&serde_json::json!({ "pids": many })),
            vec!["pids: 0, 1, 2, 3, 4; +3 more".to_string()]
        );
    }
}

#[cfg(test)]
mod unfinished_tests {
    use super::testdata;
    use super::*;

    #[test]
    fn a_watchdog_that_could_not_restore_everything_says_rollback_failed() {
        let mut r = testdata::held();
        r.mark_unfinished(Some(Phase::Method), r.started_at);
        r.mark_ended_by_watchdog(
            42,
            &[(0, "kill -CONT 1 (x)".into())],
            &[(0, "nft delete table inet fl".into())],
            r.started_at,
        );
        assert!(!r.complete);
        assert_eq!(r.outcome.verdict, Verdict::RollbackFailed);
        assert_eq!(r.manual_recovery, vec!["nft delete table inet fl"]);
        assert!(!r.faults[0].rolled_back);
        let (head, tail) = verdict_text(&r);
        assert_eq!(head, "UNFINISHED, ROLLBACK FAILED");
        assert!(
            tail.contains("the runner (pid 42) died during the method phase")
                && tail.contains("1 FAILED: nft delete table inet fl"),
            "{tail}"
        );
        let text = crate::report::json::render(&r);
        let back = crate::report::json::parse(&text).unwrap();
        assert!(!back.complete && back.ended_by.is_some());
        assert!(text.contains("\"complete\": false"));
    }

    #[test]
    fn a_complete_journal_has_no_complete_field_and_reads_as_complete() {
        let text = crate::report::json::render(&testdata::held());
        assert!(!text.contains("\"complete\""));
        assert!(crate::report::json::parse(&text).unwrap().complete);
    }
}
