//! Abort conditions, evaluated while the method runs: whenever a sample
//! finishes and whenever a running sample outlives its interval.
//!
//! A sample that errored (the check could not run) counts as failing: a
//! service that refuses connections during a fault is down. A sample still
//! running past its interval counts as failing *so far* (with its age as its
//! latency): a hung target trips `consecutive_failures: N` after about
//! `N x interval`, not after N probe timeouts. A sample younger than one
//! interval is not counted yet; a sample cut when the run stopped never is.

use crate::experiment::model::AbortCondition;
use crate::report::record::SampleStatus;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
enum Slot {
    Running(Instant),
    Done(SampleStatus, f64),
    Cut,
}

/// How one sample counts for the conditions at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Seen {
    Ok(f64),
    Failed(f64),
    /// Still running past its interval: failing so far, latency = its age.
    Overdue(f64),
}

impl Seen {
    fn failing(self) -> bool {
        !matches!(self, Seen::Ok(_))
    }
    fn latency(self) -> f64 {
        match self {
            Seen::Ok(l) | Seen::Failed(l) | Seen::Overdue(l) => l,
        }
    }
}

/// The recent samples of one probe during the method, in the order they
/// started (sequence numbers from the sampler, 0, 1, 2...).
#[derive(Debug)]
pub struct History {
    slots: VecDeque<Slot>,
    /// Sequence number of `slots[0]`.
    first: u64,
    /// The running samples' start times, by sequence number (a few: the
    /// sampler bounds them), so finding the next to turn overdue does not
    /// walk the whole window.
    running: BTreeMap<u64, Instant>,
    /// A running sample older than this counts as failing so far.
    overdue_after: Duration,
    /// How many slots to keep: the largest window the probe's conditions
    /// look at, plus room for the samples that do not count yet.
    keep: usize,
}

impl History {
    /// `window` is the most samples any of the probe's conditions looks at
    /// (0 when it has none). The samples that do not count (young or cut)
    /// are at most the sampler's in-flight bound, so that many more slots
    /// are kept: memory stays fixed however long the run.
    pub fn new(interval: Duration, window: usize) -> Self {
        History {
            slots: VecDeque::new(),
            first: 0,
            running: BTreeMap::new(),
            overdue_after: interval,
            keep: window + super::sampling::MAX_IN_FLIGHT + 1,
        }
    }

    /// The most samples `conds` look at.
    pub fn window_for<'a>(conds: impl Iterator<Item = &'a AbortCondition>) -> usize {
        conds
            .map(|c| match c.consecutive_failures {
                Some(n) => n as usize,
                None => c.window(),
            })
            .max()
            .unwrap_or(0)
    }

    fn slot(&mut self, seq: u64) -> Option<&mut Slot> {
        let i = seq.checked_sub(self.first)? as usize;
        self.slots.get_mut(i)
    }

    /// Sample `seq` started at `at`. Sequence numbers come in order.
    pub fn started(&mut self, seq: u64, at: Instant) {
        let next = self.first + self.slots.len() as u64;
        if seq < next {
            return;
        }
        // A gap (should not happen): the missing ones never count.
        for _ in next..seq {
            self.slots.push_back(Slot::Cut);
        }
        self.slots.push_back(Slot::Running(at));
        self.running.insert(seq, at);
        while self.slots.len() > self.keep {
            self.slots.pop_front();
            self.running.remove(&self.first);
            self.first += 1;
        }
    }

    pub fn finished(&mut self, seq: u64, status: SampleStatus, latency_ms: f64) {
        self.running.remove(&seq);
        if let Some(s) = self.slot(seq) {
            *s = Slot::Done(status, latency_ms);
        }
    }

    /// Sample `seq` was stopped unfinished; it never counts.
    pub fn cut(&mut self, seq: u64) {
        self.running.remove(&seq);
        if let Some(s) = self.slot(seq) {
            *s = Slot::Cut;
        }
    }

    /// A sample that started and finished at once (tests, and samples whose
    /// start was not seen).
    pub fn push(&mut self, status: SampleStatus, latency_ms: f64) {
        let seq = self.first + self.slots.len() as u64;
        self.started(seq, Instant::now());
        self.finished(seq, status, latency_ms);
    }

    /// The first moment after `since` (the last evaluation) at which a
    /// running sample turns overdue: conditions must be evaluated then (at
    /// once, if that moment has already passed).
    pub fn next_overdue(&self, since: Instant) -> Option<Instant> {
        self.running
            .values()
            .map(|at| *at + self.overdue_after)
            .filter(|t| *t > since)
            .min()
    }

    /// The samples that count at `now`, newest first.
    fn seen_newest_first(&self, now: Instant) -> impl Iterator<Item = Seen> + '_ {
        self.slots.iter().rev().filter_map(move |s| match *s {
            Slot::Done(SampleStatus::Success, l) => Some(Seen::Ok(l)),
            Slot::Done(_, l) => Some(Seen::Failed(l)),
            Slot::Running(at) => {
                let age = now.saturating_duration_since(at);
                (age >= self.overdue_after).then_some(Seen::Overdue(age.as_secs_f64() * 1000.0))
            }
            Slot::Cut => None,
        })
    }
}

fn still_running(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => ", 1 of them still running past its interval".into(),
        n => format!(", {n} of them still running past their interval"),
    }
}

/// Evaluates one condition against a probe's history at `now`;
/// `Some(reason)` trips it. Windowed conditions need a full window of
/// samples before they can trip.
pub fn evaluate(cond: &AbortCondition, h: &History, now: Instant) -> Option<String> {
    if let Some(n) = cond.consecutive_failures {
        let run: Vec<Seen> = h
            .seen_newest_first(now)
            .take_while(|s| s.failing())
            .take(n as usize)
            .collect();
        if run.len() >= n as usize {
            let overdue = run.iter().filter(|s| matches!(s, Seen::Overdue(_))).count();
            return Some(format!(
                "{} failing samples in a row (limit {n}){}",
                run.len(),
                still_running(overdue)
            ));
        }
        return None;
    }
    let window = cond.window();
    let last: Vec<Seen> = h.seen_newest_first(now).take(window).collect();
    if last.len() < window {
        return None;
    }
    let overdue = last
        .iter()
        .filter(|s| matches!(s, Seen::Overdue(_)))
        .count();
    if let Some(ratio) = cond.failure_ratio {
        let failed = last.iter().filter(|s| s.failing()).count();
        let share = failed as f64 / window as f64;
        if share > ratio.fraction() {
            return Some(format!(
                "{failed} of the last {window} samples failed ({:.0}% > {ratio}){}",
                share * 100.0,
                still_running(overdue)
            ));
        }
        return None;
    }
    if let Some(limit) = cond.latency_above {
        let pct = cond.percentile.unwrap_or(95.0);
        let mut lat: Vec<f64> = last.iter().map(|s| s.latency()).collect();
        lat.sort_by(|a, b| a.total_cmp(b));
        let rank = ((pct / 100.0) * lat.len() as f64).ceil() as usize;
        let value = lat[rank.clamp(1, lat.len()) - 1];
        if value > limit.as_millis_f64() {
            return Some(format!(
                "p{pct} latency of the last {window} samples is {value:.1}ms (> {limit}){}",
                still_running(overdue)
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{Duration as D, Percent};

    fn cond() -> AbortCondition {
        AbortCondition {
            probe: "p".into(),
            consecutive_failures: None,
            failure_ratio: None,
            latency_above: None,
            percentile: None,
            window: None,
        }
    }

    fn hist() -> History {
        History::new(Duration::from_millis(200), 10)
    }

    fn now() -> Instant {
        Instant::now()
    }

    #[test]
    fn consecutive_failures_reset_on_success() {
        let c = AbortCondition {
            consecutive_failures: Some(3),
            ..cond()
        };
        let mut h = hist();
        h.push(SampleStatus::Failure, 1.0);
        h.push(SampleStatus::Error, 1.0);
        assert!(evaluate(&c, &h, now()).is_none());
        h.push(SampleStatus::Success, 1.0);
        h.push(SampleStatus::Failure, 1.0);
        h.push(SampleStatus::Failure, 1.0);
        assert!(evaluate(&c, &h, now()).is_none());
        h.push(SampleStatus::Error, 1.0);
        assert!(evaluate(&c, &h, now())
            .unwrap()
            .contains("3 failing samples"));
    }

    /// A hung target: samples start every 200ms and never finish. Each one
    /// counts as failing once it is one interval old, so three in a row trip
    /// the condition 600ms after the first started, whatever the timeout.
    #[test]
    fn running_samples_count_as_failing_once_past_their_interval() {
        let c = AbortCondition {
            consecutive_failures: Some(3),
            ..cond()
        };
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut h = hist();
        h.started(0, ms(0));
        h.started(1, ms(200));
        h.started(2, ms(400));
        assert_eq!(h.next_overdue(ms(450)), Some(ms(600)));
        // Sample 3 starts on the same tick as sample 2 turns overdue: the
        // moment is measured from the last evaluation, not from now, so it
        // is not skipped when the start is handled first.
        h.started(3, ms(600));
        assert_eq!(h.next_overdue(ms(450)), Some(ms(600)));
        assert!(
            evaluate(&c, &h, ms(599)).is_none(),
            "two overdue, one young"
        );
        let r = evaluate(&c, &h, ms(600)).expect("trips at 3 x interval");
        assert!(r.contains("3 failing samples in a row (limit 3)"), "{r}");
        assert!(r.contains("3 of them still running"), "{r}");
        assert_eq!(h.next_overdue(ms(600)), Some(ms(800)), "sample 3");

        // The oldest answers after all: the run of failures is broken.
        h.finished(0, SampleStatus::Success, 650.0);
        assert!(evaluate(&c, &h, ms(700)).is_none());
        assert!(evaluate(&c, &h, ms(800)).is_some(), "1, 2, 3 overdue");
    }

    /// A slow but healthy sample is not a failure before its interval is
    /// over; a cut sample never counts.
    #[test]
    fn young_and_cut_samples_do_not_count() {
        let c = AbortCondition {
            consecutive_failures: Some(2),
            ..cond()
        };
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut h = hist();
        h.started(0, ms(0));
        h.finished(0, SampleStatus::Failure, 5.0);
        h.started(1, ms(200));
        assert!(evaluate(&c, &h, ms(399)).is_none(), "sample 1 is young");
        h.cut(1);
        assert!(
            evaluate(&c, &h, ms(1000)).is_none(),
            "a cut sample is no failure"
        );
        h.started(2, ms(1000));
        h.finished(2, SampleStatus::Error, 3.0);
        assert!(evaluate(&c, &h, ms(1001)).is_some(), "0 and 2 are in a row");
    }

    #[test]
    fn failure_ratio_needs_a_full_window() {
        let c = AbortCondition {
            failure_ratio: Some(Percent(50.0)),
            window: Some(4),
            ..cond()
        };
        let mut h = hist();
        for _ in 0..3 {
            h.push(SampleStatus::Failure, 1.0);
        }
        assert!(evaluate(&c, &h, now()).is_none(), "window not full yet");
        h.push(SampleStatus::Success, 1.0);
        assert!(evaluate(&c, &h, now()).is_some(), "3 of 4 > 50%");
        h.push(SampleStatus::Success, 1.0);
        assert!(
            evaluate(&c, &h, now()).is_none(),
            "2 of 4 is not more than 50%"
        );
    }

    #[test]
    fn latency_percentile() {
        let c = AbortCondition {
            latency_above: Some(D::from_millis(100)),
            percentile: Some(50.0),
            window: Some(4),
            ..cond()
        };
        let mut h = hist();
        for l in [10.0, 20.0, 200.0, 300.0] {
            h.push(SampleStatus::Success, l);
        }
        assert!(evaluate(&c, &h, now()).is_none(), "p50 is 20ms");
        h.push(SampleStatus::Success, 400.0);
        assert!(evaluate(&c, &h, now()).unwrap().contains("p50"));
    }

    /// A long run keeps only what the conditions look at: a window of 4
    /// after 100,000 samples still judges the last 4, in fixed memory.
    #[test]
    fn memory_is_bounded_by_the_window() {
        let c = AbortCondition {
            failure_ratio: Some(Percent(50.0)),
            window: Some(4),
            ..cond()
        };
        let mut h = History::new(
            Duration::from_millis(200),
            History::window_for([&c].into_iter()),
        );
        for i in 0..100_000 {
            let st = if i % 2 == 0 {
                SampleStatus::Success
            } else {
                SampleStatus::Failure
            };
            h.push(st, 1.0);
        }
        assert!(h.slots.len() <= 4 + crate::runner::sampling::MAX_IN_FLIGHT + 1);
        assert!(evaluate(&c, &h, now()).is_none(), "2 of 4");
        h.push(SampleStatus::Failure, 1.0);
        h.push(SampleStatus::Failure, 1.0);
        assert!(evaluate(&c, &h, now()).is_some(), "3 of 4");
        // Young running samples (the sampler's bound) do not push the
        // window out.
        let base = h.first + h.slots.len() as u64;
        let t = Instant::now();
        for k in 0..crate::runner::sampling::MAX_IN_FLIGHT as u64 {
            h.started(base + k, t);
        }
        assert!(
            evaluate(&c, &h, t).is_some(),
            "still 3 of the last 4 finished"
        );
    }

    /// An overdue sample's latency so far is its age.
    #[test]
    fn latency_of_a_running_sample_is_its_age() {
        let c = AbortCondition {
            latency_above: Some(D::from_millis(250)),
            percentile: Some(100.0),
            window: Some(2),
            ..cond()
        };
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut h = hist();
        h.started(0, ms(0));
        h.finished(0, SampleStatus::Success, 10.0);
        h.started(1, ms(200));
        assert!(evaluate(&c, &h, ms(420)).is_none(), "220ms so far");
        let r = evaluate(&c, &h, ms(460)).expect("260ms so far");
        assert!(r.contains("still running"), "{r}");
    }
}
