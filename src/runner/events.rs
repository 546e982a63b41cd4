//! The event stream. The runner emits events; the live view, the `--events`
//! JSON-lines writer and the record builder (which becomes the journal and
//! every report) all consume the same stream. Matches over `Event` have no
//! catch-all arm, so a new event makes every consumer decide what to do.

use crate::experiment::secrets::Redactor;
use crate::fault::health::{FaultEffect, HealthPoint};
use crate::report::record::{
    InconclusiveReason, LatencyStats, Phase, SamplePhase, SampleStatus, StepStatus, Verdict,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        title: String,
        hypothesis: String,
        file: String,
        probes: Vec<ProbeInfo>,
        steps: Vec<StepInfo>,
    },
    PhaseStarted {
        phase: Phase,
    },
    PhaseEnded {
        phase: Phase,
    },
    SetupStarted {
        name: String,
        pid: i32,
        command: Vec<String>,
    },
    SetupReady {
        name: String,
        ready_ms: f64,
    },
    SetupStopped {
        name: String,
    },
    /// A setup process exited before teardown.
    SetupExited {
        name: String,
        pid: i32,
        status: String,
        /// Its last lines of stderr, escaped.
        last_stderr: String,
        must_stay_up: bool,
    },
    Sample {
        probe: usize,
        name: String,
        phase: SamplePhase,
        latency_ms: f64,
        status: SampleStatus,
        detail: String,
        /// What the tolerance judged (Chaos Toolkit probes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<serde_json::Value>,
    },
    /// How a probe's schedule went in one phase (once per probe and phase,
    /// at its end): samples expected, skipped and cut, start jitter.
    Sampling {
        probe: usize,
        name: String,
        phase: SamplePhase,
        expected: u32,
        skipped: u32,
        /// Of `skipped`: ticks that found `max_in_flight` samples running
        /// (the rest came a whole interval late).
        #[serde(default)]
        skipped_in_flight: u32,
        cut: u32,
        /// The most samples this probe may have in flight at once.
        max_in_flight: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_jitter_ms: Option<LatencyStats>,
    },
    SteadyState {
        phase: SamplePhase,
        held: bool,
        detail: String,
    },
    StepStarted {
        index: usize,
        label: String,
        kind: String,
    },
    StepEnded {
        index: usize,
        status: StepStatus,
        detail: String,
    },
    FaultInjected {
        step: usize,
        kind: String,
        target: String,
        inject_ms: f64,
        operations: Vec<String>,
    },
    FaultInjectFailed {
        step: usize,
        kind: String,
        target: String,
        error: String,
    },
    FaultVerified {
        step: usize,
        verify_ms: f64,
        evidence: String,
    },
    FaultVerifyFailed {
        step: usize,
        error: String,
    },
    FaultRolledBack {
        step: usize,
        rollback_ms: f64,
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        observations: serde_json::Value,
    },
    /// A health check of an active fault (at most about one a second, and
    /// every change).
    FaultHealth {
        step: usize,
        #[serde(flatten)]
        point: HealthPoint,
    },
    /// Something an active fault did or saw while it held: a crash loop's
    /// round (who was signalled), a killed process's replacement starting.
    FaultActivity {
        step: usize,
        /// Seconds since the fault was injected.
        at_s: f64,
        message: String,
    },
    /// What a fault delivered over its window, just before its rollback.
    FaultEffect {
        step: usize,
        effect: FaultEffect,
    },
    /// An escalating step reached a level: injected (the first), changed in
    /// place, or rolled back and injected afresh. Its window starts now.
    EscalationLevel {
        step: usize,
        level: usize,
        levels: usize,
        param: String,
        value: String,
        in_place: bool,
        operations: Vec<String>,
    },
    /// A level's window ended and was judged.
    EscalationJudged {
        step: usize,
        level: usize,
        held: Option<bool>,
        probes: Vec<crate::report::record::LevelProbe>,
    },
    AbortTriggered {
        probe: String,
        condition: String,
        reason: String,
    },
    Interrupted {
        signal: String,
        count: u32,
    },
    ActionFinished {
        label: String,
        command: Vec<String>,
        rollback: bool,
        exit_code: Option<i32>,
        ok: bool,
        duration_ms: f64,
        detail: String,
        /// What it returned: `{status, stdout, stderr}` or `{status, headers, body}`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<serde_json::Value>,
    },
    Recovered {
        probe: String,
        after_ms: Option<f64>,
    },
    Note {
        message: String,
    },
    /// The experiment did not test what it said: a run that would have held
    /// ends INCONCLUSIVE (exit 5) with this reason. Emit it through
    /// `Ctx::inconclusive` in the runner; anything holding an `Emitter` may
    /// emit it directly. The record builder stamps `at_ms`.
    Inconclusive {
        reason: InconclusiveReason,
    },
    RunFinished {
        verdict: Verdict,
        exit_code: i32,
        reason: String,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeInfo {
    pub name: String,
    pub kind: String,
    pub target: String,
    /// `control` for a control-group probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepInfo {
    pub label: String,
    pub kind: String,
}

/// An event with its time: wall clock and milliseconds since the run started.
#[derive(Clone, Debug, Serialize)]
pub struct TimedEvent {
    pub run_id: String,
    pub at: DateTime<Utc>,
    pub elapsed_ms: f64,
    #[serde(flatten)]
    pub event: Event,
}

pub trait EventSink: Send {
    fn emit(&mut self, ev: &TimedEvent);
}

/// Fans every event out to all sinks, in order.
#[derive(Clone)]
pub struct Emitter {
    inner: Arc<Mutex<Vec<Box<dyn EventSink>>>>,
    run_id: String,
    start: Instant,
    /// Nanoseconds not counted in the run's times (waiting at the prompt).
    excluded_ns: Arc<std::sync::atomic::AtomicU64>,
    redactor: Arc<Redactor>,
}

impl Emitter {
    pub fn new(run_id: &str, start: Instant, sinks: Vec<Box<dyn EventSink>>) -> Self {
        Emitter {
            inner: Arc::new(Mutex::new(sinks)),
            run_id: run_id.to_string(),
            start,
            excluded_ns: Arc::default(),
            redactor: Arc::default(),
        }
    }

    /// Masks secrets in every event before any sink sees it.
    pub fn with_redactor(mut self, r: Redactor) -> Self {
        self.redactor = Arc::new(r);
        self
    }

    pub fn elapsed_ms(&self) -> f64 {
        let excluded = std::time::Duration::from_nanos(
            self.excluded_ns.load(std::sync::atomic::Ordering::Relaxed),
        );
        self.start.elapsed().saturating_sub(excluded).as_secs_f64() * 1000.0
    }

    /// Leaves `d` out of every later event's time and the run's total: the
    /// time a person took to answer the confirmation prompt is not the run's.
    pub fn exclude(&self, d: std::time::Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.excluded_ns
            .fetch_add(ns, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn emit(&self, event: Event) {
        let event = if self.redactor.is_empty() {
            event
        } else {
            self.redactor.serde(&event).unwrap_or(Event::Note {
                message: "(an event was withheld: it could not be checked for secrets)".into(),
            })
        };
        let ev = TimedEvent {
            run_id: self.run_id.clone(),
            at: Utc::now(),
            elapsed_ms: self.elapsed_ms(),
            event,
        };
        let mut sinks = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for s in sinks.iter_mut() {
            s.emit(&ev);
        }
    }
}

/// `--events FILE|-`: one JSON object per line.
pub struct JsonLines {
    out: Box<dyn Write + Send>,
}

impl JsonLines {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        JsonLines { out }
    }
}

impl EventSink for JsonLines {
    fn emit(&mut self, ev: &TimedEvent) {
        if let Ok(s) = serde_json::to_string(ev) {
            let _ = writeln!(self.out, "{s}");
            let _ = self.out.flush();
        }
    }
}
