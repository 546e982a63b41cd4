//! Abort conditions, evaluated on every sample taken while the method runs.
//! A sample that errored (the check could not run) counts as failing: a
//! service that refuses connections during a fault is down.

use crate::experiment::model::AbortCondition;
use crate::report::record::SampleStatus;
use std::collections::VecDeque;

/// The recent samples of one probe during the method.
#[derive(Default, Debug)]
pub struct History {
    samples: VecDeque<(SampleStatus, f64)>,
    consecutive_failures: u32,
}

/// Keep at most this many samples per probe for windowed conditions.
const MAX_WINDOW: usize = 10_000;

impl History {
    pub fn push(&mut self, status: SampleStatus, latency_ms: f64) {
        if status == SampleStatus::Success {
            self.consecutive_failures = 0;
        } else {
            self.consecutive_failures += 1;
        }
        self.samples.push_back((status, latency_ms));
        if self.samples.len() > MAX_WINDOW {
            self.samples.pop_front();
        }
    }

    fn last(&self, n: usize) -> impl Iterator<Item = &(SampleStatus, f64)> {
        self.samples
            .iter()
            .skip(self.samples.len().saturating_sub(n))
    }
}

/// Evaluates one condition against a probe's history; `Some(reason)` trips it.
/// Windowed conditions need a full window of samples before they can trip.
pub fn evaluate(cond: &AbortCondition, h: &History) -> Option<String> {
    if let Some(n) = cond.consecutive_failures {
        if h.consecutive_failures >= n {
            return Some(format!(
                "{} failing samples in a row (limit {n})",
                h.consecutive_failures
            ));
        }
        return None;
    }
    let window = cond.window();
    if h.samples.len() < window {
        return None;
    }
    if let Some(ratio) = cond.failure_ratio {
        let failed = h
            .last(window)
            .filter(|(s, _)| *s != SampleStatus::Success)
            .count();
        let share = failed as f64 / window as f64;
        if share > ratio.fraction() {
            return Some(format!(
                "{failed} of the last {window} samples failed ({:.0}% > {ratio})",
                share * 100.0
            ));
        }
        return None;
    }
    if let Some(limit) = cond.latency_above {
        let pct = cond.percentile.unwrap_or(95.0);
        let mut lat: Vec<f64> = h.last(window).map(|(_, l)| *l).collect();
        lat.sort_by(|a, b| a.total_cmp(b));
        let rank = ((pct / 100.0) * lat.len() as f64).ceil() as usize;
        let value = lat[rank.clamp(1, lat.len()) - 1];
        if value > limit.as_millis_f64() {
            return Some(format!(
                "p{pct} latency of the last {window} samples is {value:.1}ms (> {limit})"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{Duration, Percent};

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

    #[test]
    fn consecutive_failures_reset_on_success() {
        let c = AbortCondition {
            consecutive_failures: Some(3),
            ..cond()
        };
        let mut h = History::default();
        h.push(SampleStatus::Failure, 1.0);
        h.push(SampleStatus::Error, 1.0);
        assert!(evaluate(&c, &h).is_none());
        h.push(SampleStatus::Success, 1.0);
        h.push(SampleStatus::Failure, 1.0);
        h.push(SampleStatus::Failure, 1.0);
        assert!(evaluate(&c, &h).is_none());
        h.push(SampleStatus::Error, 1.0);
        assert!(evaluate(&c, &h).unwrap().contains("3 failing samples"));
    }

    #[test]
    fn failure_ratio_needs_a_full_window() {
        let c = AbortCondition {
            failure_ratio: Some(Percent(50.0)),
            window: Some(4),
            ..cond()
        };
        let mut h = History::default();
        for _ in 0..3 {
            h.push(SampleStatus::Failure, 1.0);
        }
        assert!(evaluate(&c, &h).is_none(), "window not full yet");
        h.push(SampleStatus::Success, 1.0);
        assert!(evaluate(&c, &h).is_some(), "3 of 4 > 50%");
        h.push(SampleStatus::Success, 1.0);
        assert!(evaluate(&c, &h).is_none(), "2 of 4 is not more than 50%");
    }

    #[test]
    fn latency_percentile() {
        let c = AbortCondition {
            latency_above: Some(Duration::from_millis(100)),
            percentile: Some(50.0),
            window: Some(4),
            ..cond()
        };
        let mut h = History::default();
        for l in [10.0, 20.0, 200.0, 300.0] {
            h.push(SampleStatus::Success, l);
        }
        assert!(evaluate(&c, &h).is_none(), "p50 is 20ms");
        h.push(SampleStatus::Success, 400.0);
        assert!(evaluate(&c, &h).unwrap().contains("p50"));
    }
}
