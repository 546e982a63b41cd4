//! Watching a fault while it is active. The runner calls
//! [`FaultImpl::health`](super::FaultImpl::health) on a steady tick; a
//! [`HealthTracker`] turns the answers into effective seconds, the share of
//! its target the fault delivered, and the moments it disappeared or weakened.
//! A fault that disappears is never re-injected: the run becomes INCONCLUSIVE.

use serde::{Deserialize, Serialize};

/// A fault must deliver at least this share of its target on average
/// (`min_effect` on the step overrides it).
pub const DEFAULT_MIN_EFFECT: f64 = 0.80;
/// A fault may be missing for at most this share of its window
/// (`max_missing` on the step overrides it).
pub const DEFAULT_MAX_MISSING: f64 = 0.05;
/// The health tick: every probe interval, but at least this often.
pub const MAX_HEALTH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// What one health check found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultHealth {
    /// The fault is still in place (nothing removed or undid it).
    pub present: bool,
    /// What it delivered since the previous check, in the unit of `target`
    /// (CPUs, bytes...); `None` for faults with nothing to measure.
    pub achieved: Option<f64>,
    /// What it should deliver.
    pub target: Option<f64>,
    /// What was found, in words ("nft table gone", "pid 41 resumed (state S)").
    pub detail: String,
}

impl FaultHealth {
    pub fn present(detail: impl Into<String>) -> Self {
        FaultHealth {
            present: true,
            achieved: None,
            target: None,
            detail: detail.into(),
        }
    }
    pub fn missing(detail: impl Into<String>) -> Self {
        FaultHealth {
            present: false,
            achieved: None,
            target: None,
            detail: detail.into(),
        }
    }
    pub fn measured(mut self, achieved: f64, target: f64) -> Self {
        self.achieved = Some(achieved);
        self.target = Some(target);
        self
    }
    /// achieved / target of this check, when both are known and target > 0.
    pub fn ratio(&self) -> Option<f64> {
        match (self.achieved, self.target) {
            (Some(a), Some(t)) if t > 0.0 => Some(a / t),
            _ => None,
        }
    }
}

/// One point of a fault's health over time, as kept in the journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthPoint {
    /// Seconds since the fault was injected.
    pub at_s: f64,
    pub present: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub achieved: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Set when the fault disappeared, came back or weakened at this check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
}

/// A fault's effect over its whole window, as kept in the journal.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultEffect {
    /// From injection to the start of rollback.
    pub window_s: f64,
    /// Seconds the fault was seen in place.
    pub effective_s: f64,
    /// Seconds it was missing (counted from the last check that saw it).
    pub missing_s: f64,
    /// Health checks made.
    pub checks: u32,
    /// Mean delivered and mean target (time-weighted), for faults that measure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub achieved_mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_mean: Option<f64>,
    /// The thresholds it was held to.
    pub min_effect: f64,
    pub max_missing: f64,
    /// Why it does not count, when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

/// Why a fault did not test what the experiment said.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum Problem {
    Missing(String),
    UnderDelivered(String),
}

impl Problem {
    pub fn message(&self) -> &str {
        match self {
            Problem::Missing(m) | Problem::UnderDelivered(m) => m,
        }
    }
}

/// A change worth a line in the live view and the journal.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// The fault was in place and is gone now.
    Removed(String),
    /// It is back (someone re-applied it; faultline never does).
    Back(String),
    /// It delivers less than `min_effect` of its target (first time).
    Weakened(String),
}

impl Change {
    pub fn message(&self) -> &str {
        match self {
            Change::Removed(m) | Change::Back(m) | Change::Weakened(m) => m,
        }
    }
}

/// Accumulates health checks over a fault's window.
#[derive(Debug)]
pub struct HealthTracker {
    kind: String,
    min_effect: f64,
    max_missing: f64,
    last_s: f64,
    present: bool,
    effective_s: f64,
    missing_s: f64,
    checks: u32,
    achieved_integral: f64,
    target_integral: f64,
    measured_s: f64,
    weak_reported: bool,
    first_missing: Option<(f64, String)>,
}

impl HealthTracker {
    /// Starts at `t0_s` seconds after injection (when verify proved the fault in place).
    pub fn new(kind: &str, t0_s: f64, min_effect: f64, max_missing: f64) -> Self {
        HealthTracker {
            kind: kind.to_string(),
            min_effect,
            max_missing,
            last_s: t0_s,
            present: true,
            effective_s: t0_s,
            missing_s: 0.0,
            checks: 0,
            achieved_integral: 0.0,
            target_integral: 0.0,
            measured_s: 0.0,
            weak_reported: false,
            first_missing: None,
        }
    }

    /// Adds the check made at `t_s` seconds after injection. The time since
    /// the previous check counts as missing when the fault is missing now.
    pub fn observe(&mut self, t_s: f64, h: &FaultHealth) -> Option<Change> {
        let dt = (t_s - self.last_s).max(0.0);
        self.last_s = t_s;
        self.checks += 1;
        if h.present {
            self.effective_s += dt;
        } else {
            self.missing_s += dt;
        }
        if let (Some(a), Some(t)) = (h.achieved, h.target) {
            self.achieved_integral += a * dt;
            self.target_integral += t * dt;
            self.measured_s += dt;
        }
        let change = match (self.present, h.present) {
            (true, false) => {
                let msg = format!(
                    "{} removed externally at +{t_s:.1}s: {}",
                    self.kind, h.detail
                );
                if self.first_missing.is_none() {
                    self.first_missing = Some((t_s, h.detail.clone()));
                }
                Some(Change::Removed(msg))
            }
            (false, true) => Some(Change::Back(format!(
                "{} in place again at +{t_s:.1}s (not by faultline): {}",
                self.kind, h.detail
            ))),
            _ => match h.ratio() {
                Some(r) if h.present && r < self.min_effect && !self.weak_reported => {
                    self.weak_reported = true;
                    Some(Change::Weakened(format!(
                        "{} weakened at +{t_s:.1}s: {} ({:.0}% of its target)",
                        self.kind,
                        h.detail,
                        r * 100.0
                    )))
                }
                _ => None,
            },
        };
        self.present = h.present;
        change
    }

    /// The effect over the window that ended at `end_s` seconds after injection.
    pub fn finish(&self, end_s: f64) -> FaultEffect {
        // The tail after the last check counts like the last check.
        let tail = (end_s - self.last_s).max(0.0);
        let (effective_s, missing_s) = if self.present {
            (self.effective_s + tail, self.missing_s)
        } else {
            (self.effective_s, self.missing_s + tail)
        };
        let window_s = end_s.max(effective_s + missing_s);
        let (achieved_mean, target_mean) = if self.measured_s > 0.0 {
            (
                Some(round4(self.achieved_integral / self.measured_s)),
                Some(round4(self.target_integral / self.measured_s)),
            )
        } else {
            (None, None)
        };
        let mut problem = None;
        if window_s > 0.0 && missing_s > self.max_missing * window_s {
            let (at, why) = self.first_missing.clone().unwrap_or((0.0, String::new()));
            problem = Some(Problem::Missing(format!(
                "{} removed externally at +{at:.1}s ({why}); missing {missing_s:.1}s of its {window_s:.1}s window ({:.0}%, more than the {:.0}% allowed by max_missing)",
                self.kind,
                missing_s / window_s * 100.0,
                self.max_missing * 100.0
            )));
        } else if let (Some(a), Some(t)) = (achieved_mean, target_mean) {
            if t > 0.0 && a / t < self.min_effect {
                problem = Some(Problem::UnderDelivered(format!(
                    "{} under-delivered: {:.0}% of its target on average ({} of {}), less than the {:.0}% required by min_effect",
                    self.kind,
                    a / t * 100.0,
                    short(a),
                    short(t),
                    self.min_effect * 100.0
                )));
            }
        }
        FaultEffect {
            window_s: round4(window_s),
            effective_s: round4(effective_s),
            missing_s: round4(missing_s),
            checks: self.checks,
            achieved_mean,
            target_mean,
            min_effect: self.min_effect,
            max_missing: self.max_missing,
            problem,
        }
    }
}

impl HealthPoint {
    /// The point for check `h` made `at_s` seconds after injection.
    pub fn new(at_s: f64, h: &FaultHealth, change: Option<&Change>) -> Self {
        HealthPoint {
            at_s: (at_s * 1000.0).round() / 1000.0,
            present: h.present,
            achieved: h.achieved.map(round4),
            target: h.target.map(round4),
            detail: h.detail.clone(),
            change: change.map(|c| c.message().to_string()),
        }
    }
}

/// The journal keeps at most this many health points per fault (then only
/// changes).
pub const MAX_POINTS: usize = 2000;

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// A number for a sentence: `1.8`, `0.45`, `4.4e9` stays readable.
fn short(x: f64) -> String {
    if x.abs() >= 1e6 {
        format!("{x:.3e}")
    } else {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(a: f64, t: f64) -> FaultHealth {
        FaultHealth::present("ok").measured(a, t)
    }

    #[test]
    fn a_fault_in_place_all_along_counts() {
        let mut tr = HealthTracker::new("cpu_stress", 0.5, 0.8, 0.05);
        for i in 1..=20 {
            assert_eq!(tr.observe(0.5 + i as f64 * 0.25, &ok(1.7, 1.8)), None);
        }
        let e = tr.finish(5.6);
        assert_eq!(e.problem, None, "{e:?}");
        assert!((e.effective_s - 5.6).abs() < 1e-6, "{e:?}");
        assert_eq!(e.missing_s, 0.0);
        assert_eq!(e.achieved_mean, Some(1.7));
        assert_eq!(e.checks, 20);
    }

    #[test]
    fn removal_is_reported_once_with_its_time_and_makes_it_missing() {
        let mut tr = HealthTracker::new("cpu_limit", 0.1, 0.8, 0.05);
        assert_eq!(tr.observe(2.0, &FaultHealth::present("ok")), None);
        let c = tr.observe(4.1, &FaultHealth::missing("cgroup gone"));
        assert_eq!(
            c,
            Some(Change::Removed(
                "cpu_limit removed externally at +4.1s: cgroup gone".into()
            ))
        );
        assert_eq!(tr.observe(4.35, &FaultHealth::missing("cgroup gone")), None);
        let e = tr.finish(30.0);
        // From the last good check (2.0s) to the end.
        assert!((e.missing_s - 28.0).abs() < 1e-6, "{e:?}");
        assert!((e.effective_s - 2.0).abs() < 1e-6, "{e:?}");
        match e.problem {
            Some(Problem::Missing(m)) => {
                assert!(m.contains("removed externally at +4.1s"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_short_gap_within_max_missing_is_tolerated() {
        let mut tr = HealthTracker::new("process_pause", 0.0, 0.8, 0.05);
        for i in 1..=100 {
            let t = i as f64 * 0.25;
            let h = if i == 50 {
                FaultHealth::missing("pid 9 resumed (state S)")
            } else {
                FaultHealth::present("ok")
            };
            let c = tr.observe(t, &h);
            if i == 50 {
                assert!(matches!(c, Some(Change::Removed(_))));
            }
            if i == 51 {
                assert!(matches!(c, Some(Change::Back(_))));
            }
        }
        let e = tr.finish(25.0);
        assert!((e.missing_s - 0.25).abs() < 1e-6);
        assert_eq!(e.problem, None);
    }

    #[test]
    fn under_delivery_is_judged_on_the_time_weighted_mean() {
        let mut tr = HealthTracker::new("cpu_stress", 0.0, 0.8, 0.05);
        let mut weak = 0;
        for i in 1..=10 {
            let a = if i % 2 == 0 { 1.8 } else { 0.6 };
            if let Some(Change::Weakened(m)) = tr.observe(i as f64, &ok(a, 1.8)) {
                assert!(m.contains("weakened at +1.0s"), "{m}");
                weak += 1;
            }
        }
        assert_eq!(weak, 1, "the first weak check is reported, once");
        let e = tr.finish(10.0);
        assert_eq!(e.achieved_mean, Some(1.2));
        match e.problem {
            Some(Problem::UnderDelivered(m)) => assert!(m.contains("67%"), "{m}"),
            other => panic!("{other:?}"),
        }
        // The same run with a lower bar passes.
        let mut tr = HealthTracker::new("cpu_stress", 0.0, 0.6, 0.05);
        for i in 1..=10 {
            tr.observe(i as f64, &ok(if i % 2 == 0 { 1.8 } else { 0.6 }, 1.8));
        }
        assert_eq!(tr.finish(10.0).problem, None);
    }
}
