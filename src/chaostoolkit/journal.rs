//! A journal in Chaos Toolkit's format (chaoslib's `initialize_run_journal`
//! and run records), rendered from faultline's `RunRecord`, so tools that
//! read `journal.json` (reports, dashboards) can read faultline runs.
//! A `faultline` key adds the run id, verdict and exit code.

use super::translate::StepOrigin;
use super::CtkLoaded;
use crate::report::record::{
    RunRecord, SamplePhase, SampleRecord, SampleStatus, StepStatus, Verdict,
};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde_json::{json, Map, Value};

fn at(rec: &RunRecord, ms: f64) -> DateTime<Utc> {
    rec.started_at + ChronoDuration::microseconds((ms * 1000.0) as i64)
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

/// Python's `platform.platform()`, near enough: `Linux-<release>-<arch>`.
fn platform() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("Linux-{release}-{}", std::env::consts::ARCH)
}

/// One probe run in a steady-state check.
fn probe_run(rec: &RunRecord, activity: &Value, s: &SampleRecord) -> Value {
    // `at_ms` is when the sample was recorded (its end).
    let end = at(rec, s.at_ms);
    let start = end - ChronoDuration::microseconds((s.latency_ms * 1000.0) as i64);
    let mut run = json!({
        "activity": activity,
        "output": match &s.output {
            Some(o) => o.clone(),
            None if s.detail.is_empty() => Value::Null,
            None => Value::String(s.detail.clone()),
        },
        "start": iso(start),
        "status": if s.status == SampleStatus::Error { "failed" } else { "succeeded" },
        "end": iso(end),
        "duration": s.latency_ms / 1000.0,
        "tolerance_met": s.status == SampleStatus::Success,
    });
    if s.status == SampleStatus::Error {
        run["exception"] = json!([s.detail]);
    }
    run
}

/// What an activity returned, as chaoslib records it: `{status, stdout,
/// stderr}` for a process, `{status, headers, body}` for http, the function's
/// return value for python (printed as JSON by the runner script). An http
/// rollback ran through curl: its status.
fn returned(activity: &Value, output: Option<&Value>) -> Value {
    let Some(out) = output else {
        return Value::Null;
    };
    let stdout = out.get("stdout").and_then(Value::as_str);
    match activity.pointer("/provider/type").and_then(Value::as_str) {
        Some("python") => stdout
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null),
        Some("http") if stdout.is_some() => {
            json!({"status": stdout.and_then(|s| s.trim().parse::<u16>().ok())})
        }
        _ => out.clone(),
    }
}

/// A steady-state check made of the `k`-th sample of each probe in `phase`.
fn state(rec: &RunRecord, ctk: &CtkLoaded, phase: SamplePhase, k: usize) -> Option<Value> {
    let mut probes = Vec::new();
    let mut met = true;
    for (i, p) in rec.probes.iter().enumerate() {
        let Some(act) = ctk.translation.probes.get(i) else {
            continue;
        };
        let Some(s) = p.samples.iter().filter(|s| s.phase == phase).nth(k) else {
            continue;
        };
        met &= s.status == SampleStatus::Success;
        probes.push(probe_run(rec, act, s));
        if s.status != SampleStatus::Success {
            // chaoslib stops a check at the first probe out of tolerance.
            break;
        }
    }
    if probes.is_empty() {
        return None;
    }
    Some(json!({"steady_state_met": met, "probes": probes}))
}

/// The journal, as pretty JSON.
pub fn render(rec: &RunRecord, ctk: &CtkLoaded) -> String {
    let mut j = Map::new();
    j.insert(
        "chaoslib-version".into(),
        json!(format!("faultline {}", env!("CARGO_PKG_VERSION"))),
    );
    j.insert("platform".into(), json!(platform()));
    j.insert("node".into(), json!(rec.host));
    j.insert("experiment".into(), ctk.raw.clone());
    j.insert("start".into(), json!(iso(rec.started_at)));

    let after_failed = rec.probes.iter().any(|p| p.after.met == Some(false));
    let deviated = rec.outcome.verdict == Verdict::Deviated || after_failed;
    let any_error = |phase: SamplePhase| {
        rec.probes.iter().any(|p| {
            p.samples
                .iter()
                .any(|s| s.phase == phase && s.status == SampleStatus::Error)
        })
    };
    let status = match rec.outcome.verdict {
        Verdict::Held => "completed",
        // As chaoslib: "failed" when a probe of the failing check could not run.
        Verdict::Deviated if any_error(SamplePhase::After) => "failed",
        Verdict::Deviated => "completed",
        Verdict::NotSteady if any_error(SamplePhase::Before) => "failed",
        Verdict::NotSteady => "completed",
        // `--fail-fast` stops the run with "failed" in chaoslib.
        Verdict::Aborted | Verdict::RollbackFailed | Verdict::Internal => "failed",
        // The experiment did not test what it said: not a completed run.
        Verdict::Inconclusive => "failed",
        Verdict::Interrupted => "interrupted",
        Verdict::Invalid | Verdict::Precondition | Verdict::Privileges => "aborted",
    };
    j.insert("status".into(), json!(status));
    j.insert("deviated".into(), json!(deviated));

    let has = ctk.translation.has_hypothesis;
    let before = if has {
        state(rec, ctk, SamplePhase::Before, 0)
    } else {
        None
    };
    let after = if has {
        state(rec, ctk, SamplePhase::After, 0)
    } else {
        None
    };
    let mut during = Vec::new();
    if has {
        let rounds = rec
            .probes
            .iter()
            .map(|p| p.during.samples as usize)
            .max()
            .unwrap_or(0);
        // Only checks of a during strategy are part of the hypothesis.
        let checked = rec.probes.iter().any(|p| p.during.requirement.is_some());
        if checked {
            for k in 0..rounds {
                if let Some(s) = state(rec, ctk, SamplePhase::During, k) {
                    during.push(s);
                }
            }
        }
    }
    j.insert(
        "steady_states".into(),
        json!({"before": before, "after": after, "during": during}),
    );

    // Method activities that ran.
    let mut runs = Vec::new();
    for s in &rec.steps {
        let Some(StepOrigin::Activity { activity, .. }) = ctk.translation.steps.get(s.index) else {
            continue;
        };
        if s.status == StepStatus::Skipped {
            continue;
        }
        let start = s.started_ms.map(|m| at(rec, m)).unwrap_or(rec.started_at);
        let end = s.ended_ms.map(|m| at(rec, m)).unwrap_or(start);
        let ok = s.status == StepStatus::Completed;
        let mut r = json!({
            "activity": activity,
            "output": returned(activity, s.output.as_ref()),
            "start": iso(start),
            "status": if ok { "succeeded" } else { "failed" },
            "end": iso(end),
            "duration": (end - start).num_microseconds().unwrap_or(0) as f64 / 1e6,
        });
        if !ok {
            r["exception"] = json!([if s.detail.is_empty() {
                format!("{:?}", s.status).to_lowercase()
            } else {
                s.detail.clone()
            }]);
        }
        runs.push(r);
    }
    j.insert("run".into(), Value::Array(runs));

    // User rollbacks that ran, one after the other from the rollback phase.
    let mut t = rec
        .phases
        .iter()
        .find(|p| p.phase == crate::report::record::Phase::Rollback)
        .map(|p| p.started_at)
        .unwrap_or(rec.ended_at);
    let mut rbs = Vec::new();
    for (i, a) in rec.rollbacks.iter().enumerate() {
        let act = ctk
            .translation
            .rollbacks
            .get(i)
            .cloned()
            .unwrap_or(Value::Null);
        let end = t + ChronoDuration::microseconds((a.duration_ms * 1000.0) as i64);
        let mut r = json!({
            "activity": act,
            "output": returned(&act, a.output.as_ref()),
            "start": iso(t),
            "status": if a.ok { "succeeded" } else { "failed" },
            "end": iso(end),
            "duration": a.duration_ms / 1000.0,
        });
        if !a.ok {
            r["exception"] = json!([a.detail]);
        }
        rbs.push(r);
        t = end;
    }
    j.insert("rollbacks".into(), Value::Array(rbs));
    j.insert("end".into(), json!(iso(rec.ended_at)));
    j.insert(
        "duration".into(),
        json!(
            (rec.ended_at - rec.started_at)
                .num_microseconds()
                .unwrap_or(0) as f64
                / 1e6
        ),
    );
    j.insert(
        "faultline".into(),
        json!({
            "run_id": rec.run_id,
            "verdict": rec.outcome.verdict,
            "exit_code": rec.outcome.exit_code,
            "reason": rec.outcome.reason,
        }),
    );
    let mut j = Value::Object(j);
    // The experiment as written may hold inline secrets; activities hold
    // substituted ones.
    ctk.loaded.redactor.value(&mut j);
    let mut out = serde_json::to_string_pretty(&j).expect("JSON serializes");
    out.push('\n');
    out
}
