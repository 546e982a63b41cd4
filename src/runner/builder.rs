//! Builds the [`RunRecord`] (the journal every report renders) from the event
//! stream, so the record and the live outputs can never disagree.

use super::events::{Event, EventSink, TimedEvent};
use crate::report::record::*;
use crate::report::samples::{LatencyAcc, SampleSpool, WINDOW};
use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

pub struct RecordBuilder {
    pub rec: RunRecord,
    open_phases: Vec<(Phase, DateTime<Utc>)>,
    first_injection_ms: Option<f64>,
    rollback_end_ms: Option<f64>,
    /// Per probe, per [`SamplePhase`]: counts and latencies in fixed memory.
    acc: Vec<[PhaseAcc; 3]>,
    /// Where the spool goes (see [`RecordBuilder::spool_in`]).
    spool_dirs: Vec<std::path::PathBuf>,
}

/// One probe's samples of one phase, counted as they come.
#[derive(Clone, Debug, Default)]
struct PhaseAcc {
    samples: u32,
    successes: u32,
    failures: u32,
    errors: u32,
    latency: LatencyAcc,
}

fn phase_index(p: SamplePhase) -> usize {
    match p {
        SamplePhase::Before => 0,
        SamplePhase::During => 1,
        SamplePhase::After => 2,
    }
}

impl RecordBuilder {
    pub fn new(run_id: &str, file: &str, host: &str) -> Self {
        let now = Utc::now();
        RecordBuilder {
            rec: RunRecord {
                schema_version: SCHEMA_VERSION,
                faultline_version: env!("CARGO_PKG_VERSION").to_string(),
                run_id: run_id.to_string(),
                experiment: ExperimentInfo {
                    title: String::new(),
                    hypothesis: String::new(),
                    description: None,
                    file: file.to_string(),
                    tags: vec![],
                    sha256: None,
                    source: None,
                    as_run: None,
                },
                host: host.to_string(),
                user: None,
                started_at: now,
                ended_at: now,
                outcome: Outcome {
                    verdict: Verdict::Precondition,
                    exit_code: crate::exit::PRECONDITION,
                    reason: String::new(),
                },
                phases: vec![],
                probes: vec![],
                steps: vec![],
                faults: vec![],
                abort: None,
                rollbacks: vec![],
                timings: Timings::default(),
                manual_recovery: vec![],
                inconclusive: vec![],
                warnings: vec![],
                complete: true,
                ended_by: None,
                last_phase: None,
                escalation: None,
                groups: vec![],
                spool: None,
            },
            open_phases: vec![],
            first_injection_ms: None,
            rollback_end_ms: None,
            acc: vec![],
            spool_dirs: vec![],
        }
    }

    /// Spools samples to disk in the first of `dirs` that takes the files,
    /// keeping only a window of them in memory (see `report::samples`).
    /// Without it (or when no directory takes them) every sample stays in
    /// memory.
    pub fn spool_in(&mut self, dirs: Vec<std::path::PathBuf>) {
        self.spool_dirs = dirs;
    }

    /// A fault record for a method step, with nothing measured yet.
    fn new_fault(&self, step: usize, kind: &str, target: &str) -> FaultRecord {
        FaultRecord {
            step,
            label: self
                .rec
                .steps
                .get(step)
                .map(|s| s.label.clone())
                .unwrap_or_default(),
            kind: kind.to_string(),
            target: target.to_string(),
            operations: vec![],
            injected_at_ms: None,
            inject_ms: None,
            verify_ms: None,
            verified: None,
            inject_error: None,
            rolled_back_at_ms: None,
            rollback_ms: None,
            rolled_back: false,
            irreversible: irreversible_kind(kind),
            rollback_error: None,
            observations: serde_json::Value::Null,
            effect: None,
            health: vec![],
            expectation: None,
        }
    }

    fn fault_mut(&mut self, step: usize) -> Option<&mut FaultRecord> {
        self.rec.faults.iter_mut().rev().find(|f| f.step == step)
    }

    fn handle(&mut self, ev: &TimedEvent) {
        let ms = ev.elapsed_ms;
        match &ev.event {
            Event::RunStarted {
                title,
                hypothesis,
                file,
                probes,
                steps,
            } => {
                self.rec.started_at = ev.at;
                self.rec.experiment.title = title.clone();
                self.rec.experiment.hypothesis = hypothesis.clone();
                self.rec.experiment.file = file.clone();
                self.rec.probes = probes
                    .iter()
                    .map(|p| ProbeRecord {
                        name: p.name.clone(),
                        kind: p.kind.clone(),
                        target: p.target.clone(),
                        before: PhaseStats::default(),
                        during: PhaseStats::default(),
                        after: PhaseStats::default(),
                        recovered_after_ms: None,
                        group: p.group.clone(),
                        samples: vec![],
                        samples_omitted: 0,
                        samples_thinned: 0,
                    })
                    .collect();
                self.acc = vec![Default::default(); probes.len()];
                self.rec.spool =
                    SampleSpool::create_in(&self.spool_dirs, probes.len()).map(Arc::new);
                self.rec.steps = steps
                    .iter()
                    .enumerate()
                    .map(|(i, s)| StepRecord {
                        index: i,
                        label: s.label.clone(),
                        kind: s.kind.clone(),
                        status: StepStatus::Skipped,
                        started_ms: None,
                        ended_ms: None,
                        detail: String::new(),
                        output: None,
                    })
                    .collect();
            }
            Event::PhaseStarted { phase } => self.open_phases.push((*phase, ev.at)),
            Event::PhaseEnded { phase } => {
                if let Some(i) = self.open_phases.iter().rposition(|(p, _)| p == phase) {
                    let (p, start) = self.open_phases.remove(i);
                    self.rec.phases.push(PhaseSpan {
                        phase: p,
                        started_at: start,
                        ended_at: ev.at,
                    });
                    if p == Phase::Rollback {
                        self.rollback_end_ms = Some(ms);
                    }
                }
            }
            Event::SetupStarted { .. }
            | Event::SetupReady { .. }
            | Event::SetupStopped { .. }
            | Event::SetupExited { .. } => {}
            Event::Sample {
                probe,
                phase,
                latency_ms,
                status,
                detail,
                output,
                ..
            } => {
                if *phase == SamplePhase::During
                    && *status != SampleStatus::Success
                    && self.rec.timings.time_to_detect_ms.is_none()
                {
                    if let Some(first) = self.first_injection_ms {
                        self.rec.timings.time_to_detect_ms = Some(ms - first);
                    }
                }
                if let Some(a) = self.acc.get_mut(*probe) {
                    let a = &mut a[phase_index(*phase)];
                    a.samples += 1;
                    match status {
                        SampleStatus::Success => a.successes += 1,
                        SampleStatus::Failure => a.failures += 1,
                        SampleStatus::Error => a.errors += 1,
                    }
                    a.latency.record(*latency_ms);
                }
                if *probe < self.rec.probes.len() {
                    let s = SampleRecord {
                        phase: *phase,
                        at_ms: ms,
                        latency_ms: *latency_ms,
                        status: *status,
                        detail: detail.clone(),
                        // Not for every sample during the method: the journal
                        // would grow with the run's length.
                        output: if *phase == SamplePhase::During {
                            None
                        } else {
                            output.clone()
                        },
                    };
                    if let Some(sp) = &self.rec.spool {
                        if let Err(e) = sp.append(*probe, &s) {
                            // Keep every sample in memory from now on.
                            self.rec.spool = None;
                            self.rec.warnings.push(format!(
                                "cannot spool samples to disk ({e}): the {} earlier samples of some probes are missing from the journal",
                                self.rec.probes.iter().map(|p| p.samples_omitted).sum::<u64>()
                            ));
                        }
                    }
                    let p = &mut self.rec.probes[*probe];
                    p.samples.push(s);
                    // Spooled: keep the latest WINDOW to 2 * WINDOW.
                    if self.rec.spool.is_some() && p.samples.len() >= 2 * WINDOW {
                        let drop = p.samples.len() - WINDOW;
                        p.samples.drain(..drop);
                        p.samples_omitted += drop as u64;
                    }
                }
            }
            Event::Sampling {
                probe,
                phase,
                expected,
                skipped,
                cut,
                start_jitter_ms,
                ..
            } => {
                if let Some(p) = self.rec.probes.get_mut(*probe) {
                    let s = match phase {
                        SamplePhase::Before => &mut p.before,
                        SamplePhase::During => &mut p.during,
                        SamplePhase::After => &mut p.after,
                    };
                    s.expected = Some(*expected);
                    s.skipped = *skipped;
                    s.cut = *cut;
                    s.start_jitter_ms = *start_jitter_ms;
                }
            }
            Event::SteadyState { .. } => {}
            Event::StepStarted { index, .. } => {
                if let Some(s) = self.rec.steps.get_mut(*index) {
                    s.started_ms = Some(ms);
                }
            }
            Event::StepEnded {
                index,
                status,
                detail,
            } => {
                if let Some(s) = self.rec.steps.get_mut(*index) {
                    s.status = *status;
                    s.ended_ms = Some(ms);
                    s.detail = detail.clone();
                }
            }
            Event::FaultInjected {
                step,
                kind,
                target,
                inject_ms,
                operations,
            } => {
                if self.first_injection_ms.is_none() {
                    self.first_injection_ms = Some(ms);
                }
                let mut f = self.new_fault(*step, kind, target);
                f.operations = operations.clone();
                f.injected_at_ms = Some(ms);
                f.inject_ms = Some(*inject_ms);
                self.rec.faults.push(f);
            }
            Event::FaultInjectFailed {
                step,
                kind,
                target,
                error,
            } => {
                let mut f = self.new_fault(*step, kind, target);
                f.inject_error = Some(error.clone());
                self.rec.faults.push(f);
            }
            Event::FaultVerified {
                step,
                verify_ms,
                evidence,
            } => {
                if let Some(f) = self.fault_mut(*step) {
                    f.verify_ms = Some(*verify_ms);
                    f.verified = Some(evidence.clone());
                }
            }
            Event::FaultVerifyFailed { step, error } => {
                if let Some(f) = self.fault_mut(*step) {
                    f.inject_error = Some(format!("not verified: {error}"));
                }
            }
            Event::FaultRolledBack {
                step,
                rollback_ms,
                ok,
                error,
                observations,
            } => {
                if let Some(f) = self.fault_mut(*step) {
                    f.rolled_back_at_ms = Some(ms);
                    f.rollback_ms = Some(*rollback_ms);
                    f.rolled_back = *ok;
                    f.rollback_error = error.clone();
                    f.observations = observations.clone();
                }
            }
            Event::FaultHealth { step, point } => {
                if let Some(f) = self.fault_mut(*step) {
                    if f.health.len() < crate::fault::health::MAX_POINTS || point.change.is_some() {
                        f.health.push(point.clone());
                    }
                }
            }
            // Already in the fault's observations (kills, restarts).
            Event::FaultActivity { .. } => {}
            Event::FaultEffect { step, effect } => {
                if let Some(f) = self.fault_mut(*step) {
                    f.effect = Some(effect.clone());
                }
            }
            Event::EscalationLevel {
                step,
                level,
                param,
                value,
                in_place,
                operations,
                ..
            } => {
                let label = self
                    .rec
                    .steps
                    .get(*step)
                    .map(|s| s.label.clone())
                    .unwrap_or_default();
                let e = self.rec.escalation.get_or_insert_with(|| EscalationRecord {
                    step: *step,
                    label,
                    param: param.clone(),
                    ..Default::default()
                });
                if let Some(last) = e.levels.last_mut() {
                    last.ended_ms.get_or_insert(ms);
                }
                e.levels.push(LevelRecord {
                    index: *level,
                    value: value.clone(),
                    started_ms: ms,
                    in_place: *in_place,
                    operations: operations.clone(),
                    ..Default::default()
                });
            }
            Event::EscalationJudged {
                level,
                held,
                probes,
                ..
            } => {
                if let Some(e) = &mut self.rec.escalation {
                    if let Some(l) = e.levels.iter_mut().rev().find(|l| l.index == *level) {
                        l.held = *held;
                        l.probes = probes.clone();
                        l.ended_ms.get_or_insert(ms);
                    }
                    if *held == Some(false) && e.first_broken.is_none() {
                        e.first_broken = Some(
                            e.levels
                                .iter()
                                .find(|l| l.index == *level)
                                .map(|l| l.value.clone())
                                .unwrap_or_default(),
                        );
                    }
                    if e.first_broken.is_none() && *held == Some(true) {
                        e.last_held = e
                            .levels
                            .iter()
                            .find(|l| l.index == *level)
                            .map(|l| l.value.clone());
                    }
                }
            }
            Event::AbortTriggered {
                probe,
                condition,
                reason,
            } => {
                if self.rec.abort.is_none() {
                    self.rec.abort = Some(AbortRecord {
                        condition: condition.clone(),
                        probe: probe.clone(),
                        at_ms: ms,
                        reason: reason.clone(),
                    });
                    if let Some(first) = self.first_injection_ms {
                        self.rec.timings.time_to_abort_ms = Some(ms - first);
                        // Samples still running past their interval tripped
                        // it: no failing sample may have finished yet.
                        self.rec.timings.time_to_detect_ms.get_or_insert(ms - first);
                    }
                }
            }
            Event::Interrupted { .. } | Event::Note { .. } => {}
            Event::Inconclusive { reason } => {
                let mut r = reason.clone();
                r.at_ms.get_or_insert(ms);
                self.rec.inconclusive.push(r);
            }
            Event::ActionFinished {
                label,
                command,
                rollback,
                exit_code,
                ok,
                duration_ms,
                detail,
                output,
            } => {
                if *rollback {
                    self.rec.rollbacks.push(ActionRecord {
                        label: label.clone(),
                        command: command.clone(),
                        exit_code: *exit_code,
                        ok: *ok,
                        duration_ms: *duration_ms,
                        detail: detail.clone(),
                        output: output.clone(),
                    });
                } else if let Some(s) =
                    self.rec.steps.iter_mut().find(|s| {
                        &s.label == label && s.started_ms.is_some() && s.ended_ms.is_none()
                    })
                {
                    // The step this action ran for: started, not given an output yet.
                    s.output = output.clone();
                }
            }
            Event::Recovered { probe, after_ms } => {
                if let Some(p) = self.rec.probes.iter_mut().find(|p| &p.name == probe) {
                    p.recovered_after_ms = *after_ms;
                }
            }
            Event::RunFinished {
                verdict,
                exit_code,
                reason,
            } => {
                self.rec.outcome = Outcome {
                    verdict: *verdict,
                    exit_code: *exit_code,
                    reason: reason.clone(),
                };
                self.rec.ended_at = ev.at;
                self.rec.timings.total_ms = ms;
            }
        }
    }

    /// Puts the per-phase statistics (counted as the samples came) into
    /// the record and returns a copy of it.
    pub fn finish(&mut self) -> RunRecord {
        for (i, p) in self.rec.probes.iter_mut().enumerate() {
            for phase in SamplePhase::ALL {
                let a = self
                    .acc
                    .get(i)
                    .map(|a| a[phase_index(phase)].clone())
                    .unwrap_or_default();
                let stats = PhaseStats {
                    samples: a.samples,
                    successes: a.successes,
                    failures: a.failures,
                    errors: a.errors,
                    latency_ms: a.latency.stats(),
                    requirement: None,
                    met: None,
                    ..Default::default()
                };
                let old = match phase {
                    SamplePhase::Before => &mut p.before,
                    SamplePhase::During => &mut p.during,
                    SamplePhase::After => &mut p.after,
                };
                // Keep what the runner set: the requirement and the schedule.
                *old = PhaseStats {
                    requirement: old.requirement.take(),
                    met: old.met,
                    expected: old.expected,
                    skipped: old.skipped,
                    cut: old.cut,
                    start_jitter_ms: old.start_jitter_ms,
                    longest_outage_ms: old.longest_outage_ms,
                    max_outage_ms: old.max_outage_ms,
                    ..stats
                };
            }
        }
        let recovered: Vec<Option<f64>> = self
            .rec
            .probes
            .iter()
            .filter(|p| p.after.samples > 0)
            // A probe that never failed had nothing to recover from.
            .filter(|p| !crate::report::summary::held_throughout(p))
            .map(|p| p.recovered_after_ms)
            .collect();
        if !recovered.is_empty() && recovered.iter().all(Option::is_some) {
            self.rec.timings.time_to_recover_ms =
                recovered.iter().flatten().copied().reduce(f64::max);
        }
        self.rec.groups = self.compare_groups();
        self.rec.clone()
    }

    /// Sets a phase requirement's text and whether it was met.
    pub fn set_requirement(
        &mut self,
        probe: usize,
        phase: SamplePhase,
        text: String,
        met: Option<bool>,
    ) {
        if let Some(p) = self.rec.probes.get_mut(probe) {
            let s = match phase {
                SamplePhase::Before => &mut p.before,
                SamplePhase::During => &mut p.during,
                SamplePhase::After => &mut p.after,
            };
            s.requirement = Some(text);
            s.met = met;
        }
    }

    /// Calls `f` with every sample of probe `probe`, in the order they
    /// finished: from the spool when samples are spooled (nothing held in
    /// memory), else from the record.
    fn each_sample(&self, probe: usize, mut f: impl FnMut(&SampleRecord)) {
        if let Some(sp) = &self.rec.spool {
            if sp.for_each(probe, |s| f(&s)).is_ok() {
                return;
            }
        }
        if let Some(p) = self.rec.probes.get(probe) {
            p.samples.iter().for_each(f);
        }
    }

    /// The samples of probe `probe` that finished in `phase` and started in
    /// `[from_ms, to_ms)`, as (start ms, latency ms, success), in the order
    /// they started.
    fn samples_where(
        &self,
        probe: usize,
        phase: SamplePhase,
        from_ms: f64,
        to_ms: f64,
    ) -> Vec<(f64, f64, bool)> {
        let mut v = Vec::new();
        self.each_sample(probe, |s| {
            let start = s.at_ms - s.latency_ms;
            if s.phase == phase && start >= from_ms && start < to_ms {
                v.push((start, s.latency_ms, s.status == SampleStatus::Success));
            }
        });
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    }

    /// The samples of probe `probe` that finished in `phase`, as
    /// (start ms, latency ms, success), in the order they started
    /// (24 bytes a sample in memory; see [`RecordBuilder::scan_phase`] for
    /// what needs no more than fixed memory).
    pub fn phase_samples(&self, probe: usize, phase: SamplePhase) -> Vec<(f64, f64, bool)> {
        self.samples_where(probe, phase, f64::NEG_INFINITY, f64::INFINITY)
    }

    /// One pass over probe `probe`'s samples of `phase` in fixed memory: the
    /// longest outage (samples put back in start order through a small
    /// buffer: at most the sampler's in-flight bound finish out of order)
    /// and the latency statistics.
    pub fn scan_phase(&self, probe: usize, phase: SamplePhase, end_ms: f64) -> PhaseScan {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        /// Start time, ordered.
        #[derive(PartialEq)]
        struct Start(f64, bool);
        impl Eq for Start {}
        impl PartialOrd for Start {
            fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for Start {
            fn cmp(&self, o: &Self) -> std::cmp::Ordering {
                self.0.total_cmp(&o.0)
            }
        }
        const REORDER: usize = 1024;
        let mut heap: BinaryHeap<Reverse<Start>> = BinaryHeap::new();
        let mut outage = OutageScan::default();
        let mut latency = LatencyAcc::default();
        self.each_sample(probe, |s| {
            if s.phase != phase {
                return;
            }
            latency.record(s.latency_ms);
            heap.push(Reverse(Start(
                s.at_ms - s.latency_ms,
                s.status == SampleStatus::Success,
            )));
            if heap.len() > REORDER {
                if let Some(Reverse(Start(at, ok))) = heap.pop() {
                    outage.push(at, ok);
                }
            }
        });
        while let Some(Reverse(Start(at, ok))) = heap.pop() {
            outage.push(at, ok);
        }
        PhaseScan {
            longest_outage_ms: outage.finish(end_ms),
            latency,
        }
    }

    /// The experiment group against the control group per phase, on every
    /// sample (read from the spool).
    pub fn compare_groups(&self) -> Vec<crate::report::stats::GroupComparison> {
        crate::report::stats::compare_with(&self.rec, |i, phase| {
            self.phase_samples(i, phase)
                .into_iter()
                .map(|(_, latency, ok)| (latency, ok))
                .collect()
        })
    }

    /// Records the longest outage of a phase and the limit it had.
    pub fn set_outage(
        &mut self,
        probe: usize,
        phase: SamplePhase,
        longest_ms: f64,
        max_ms: Option<f64>,
    ) {
        if let Some(p) = self.rec.probes.get_mut(probe) {
            let s = match phase {
                SamplePhase::Before => &mut p.before,
                SamplePhase::During => &mut p.during,
                SamplePhase::After => &mut p.after,
            };
            s.longest_outage_ms = Some(longest_ms);
            s.max_outage_ms = max_ms;
        }
    }

    /// Records what a fault's expectation gave.
    pub fn set_fault_expectation(&mut self, step: usize, e: FaultExpectation) {
        if let Some(f) = self.fault_mut(step) {
            f.expectation = Some(e);
        }
    }

    /// Starts an escalation's record: every level, the hold and the level
    /// the hypothesis promises.
    pub fn start_escalation(
        &mut self,
        step: usize,
        label: &str,
        e: &crate::experiment::escalate::Escalate,
    ) {
        self.rec.escalation = Some(EscalationRecord {
            step,
            label: label.to_string(),
            param: e.param.clone(),
            values: e.levels.iter().map(|l| l.to_string()).collect(),
            hold_ms: e.hold.as_millis_f64(),
            must_hold: e.levels[e.must_hold_index()].to_string(),
            ..Default::default()
        });
    }

    /// The samples of probe `probe` that started in `[from_ms, to_ms)`,
    /// as (start ms, latency ms, success).
    pub fn window_samples(&self, probe: usize, from_ms: f64, to_ms: f64) -> Vec<(f64, f64, bool)> {
        self.samples_where(probe, SamplePhase::During, from_ms, to_ms)
    }

    pub fn rollback_end_ms(&self) -> Option<f64> {
        self.rollback_end_ms
    }
}

/// The builder as a sink, shared with the runner, which reads it at the end.
pub struct SharedBuilder(pub Arc<Mutex<RecordBuilder>>);

impl EventSink for SharedBuilder {
    fn emit(&mut self, ev: &TimedEvent) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).handle(ev);
    }
}

/// The longest run of failing samples, in ms: from a failing sample's start
/// to the start of the next successful one, or to `end_ms` when none
/// followed. `samples` are (start ms, success), in the order they started.
pub fn longest_outage(samples: &[(f64, bool)], end_ms: f64) -> f64 {
    let mut o = OutageScan::default();
    for &(start, ok) in samples {
        o.push(start, ok);
    }
    o.finish(end_ms)
}

/// [`longest_outage`], one sample at a time (in start order).
#[derive(Default)]
pub struct OutageScan {
    longest: f64,
    open: Option<f64>,
}

impl OutageScan {
    pub fn push(&mut self, start: f64, ok: bool) {
        match (ok, self.open) {
            (false, None) => self.open = Some(start),
            (true, Some(from)) => {
                self.longest = self.longest.max(start - from);
                self.open = None;
            }
            _ => {}
        }
    }

    pub fn finish(self, end_ms: f64) -> f64 {
        let mut longest = self.longest;
        if let Some(from) = self.open {
            longest = longest.max(end_ms - from);
        }
        longest.max(0.0)
    }
}

/// What [`RecordBuilder::scan_phase`] finds.
pub struct PhaseScan {
    pub longest_outage_ms: f64,
    pub latency: LatencyAcc,
}
/// The `p`th percentile (nearest rank, as the reports' latency figures).
pub fn percentile(values: &[f64], p: u32) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p as f64 / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outage_runs_from_first_failure_to_next_success() {
        let s = [
            (0.0, true),
            (100.0, false),
            (200.0, false),
            (300.0, true),
            (400.0, false),
            (450.0, true),
        ];
        assert_eq!(longest_outage(&s, 1000.0), 200.0);
        // Still failing at the end: until the phase end.
        let s = [(0.0, true), (100.0, false), (200.0, false)];
        assert_eq!(longest_outage(&s, 900.0), 800.0);
        assert_eq!(longest_outage(&[(0.0, true)], 500.0), 0.0);
        assert_eq!(longest_outage(&[], 500.0), 0.0);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(|x| x as f64).collect();
        assert_eq!(percentile(&v, 95), Some(19.0));
        assert_eq!(percentile(&v, 50), Some(10.0));
        assert_eq!(percentile(&v, 99), Some(20.0));
        assert_eq!(percentile(&[], 95), None);
    }
}
