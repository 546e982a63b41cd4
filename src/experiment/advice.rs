//! Warnings for experiments that are valid but may not measure what they
//! say: a `during` percentage resting on a handful of samples, or a probe
//! timeout that an abort condition never lets run out. `validate` prints
//! them; they never make a file invalid.

use super::model::Experiment;
use crate::units::Duration as D;
use std::time::Duration;

/// Fewer samples than this make a percentage coarse: one sample moves it by
/// more than 10 points.
pub const MIN_SAMPLES_FOR_PERCENT: u64 = 10;

/// A warning at a field path (as in `Diagnostic::path`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub path: String,
    pub message: String,
}

/// The method's known length: pauses and foreground fault durations in
/// order, or the longest background fault if that is longer. Commands and
/// HTTP actions add an unknown time, so this is a lower bound.
pub fn method_length(exp: &Experiment) -> Duration {
    let mut fg = Duration::ZERO;
    let mut bg = Duration::ZERO;
    for s in &exp.method {
        if let Some(p) = s.pause {
            fg += p.std();
        }
        if let (Some(_), Some(d)) = (&s.fault, s.fault_duration()) {
            if s.background {
                bg = bg.max(d.std());
            } else {
                fg += d.std();
            }
        }
    }
    fg.max(bg)
}

/// Samples one probe starts during a method of `len`: one at its start and
/// one every `interval` after.
pub fn samples_in(len: Duration, interval: Duration) -> u64 {
    (len.as_nanos() / interval.as_nanos().max(1)) as u64 + 1
}

pub fn warnings(exp: &Experiment) -> Vec<Warning> {
    let mut out = Vec::new();
    let interval = exp.steady_state.interval.std();
    let len = method_length(exp);
    let n = samples_in(len, interval);
    for (i, p) in exp.steady_state.probes.iter().enumerate() {
        let Some(req) = &p.during else { continue };
        let Some(min_success) = req.min_success else {
            continue;
        };
        if n >= MIN_SAMPLES_FOR_PERCENT {
            continue;
        }
        let need = interval * (MIN_SAMPLES_FOR_PERCENT as u32 - 1);
        let mut fix = format!("make the method at least {} long", D(need));
        if !len.is_zero() {
            let shorter = len / (MIN_SAMPLES_FOR_PERCENT as u32 - 1);
            fix.push_str(&format!(
                " or steady_state.interval at most {}",
                D(Duration::from_millis(shorter.as_millis() as u64))
            ));
        }
        out.push(Warning {
            path: format!("steady_state.probes[{i}].during.min_success"),
            message: format!(
                "warning: `min_success: {}` can rest on {n} sample{} (a method of {} of pauses and faults at a {} interval): one sample moves it by {:.0} points; {fix}, for {MIN_SAMPLES_FOR_PERCENT} samples",
                min_success,
                if n == 1 { "" } else { "s" },
                D(len),
                exp.steady_state.interval,
                100.0 / n as f64,
            ),
        });
    }
    for (i, p) in exp.steady_state.probes.iter().enumerate() {
        let Some(req) = &p.during else { continue };
        for (pct, _) in req.latency_limits() {
            let need = crate::experiment::model::min_samples_for_percentile(pct) as u64;
            if n >= need {
                continue;
            }
            let more = interval * (need as u32 - 1);
            out.push(Warning {
                path: format!("steady_state.probes[{i}].during.p{pct}_below"),
                message: format!(
                    "warning: `p{pct}_below` needs at least {need} samples and the method ({} of pauses and faults at a {} interval) takes about {n}: the run will be INCONCLUSIVE; make the method at least {} long or the interval shorter",
                    D(len),
                    exp.steady_state.interval,
                    D(more),
                ),
            });
        }
    }
    for (k, cond) in exp.abort.iter().enumerate() {
        let Some(count) = cond.consecutive_failures else {
            continue;
        };
        let Some((i, p)) = exp
            .steady_state
            .probes
            .iter()
            .enumerate()
            .find(|(_, p)| p.name == cond.probe)
        else {
            continue;
        };
        let allows = interval.saturating_mul(count);
        if p.timeout.std() > allows {
            out.push(Warning {
                path: format!("steady_state.probes[{i}].timeout"),
                message: format!(
                    "warning: timeout {} is longer than abort[{k}] allows ({count} consecutive failures x {} interval = {}): a sample still running after its interval counts as failing, so samples slower than about {} trip the abort before their timeout; set timeout to {} or less, or allow more failures",
                    p.timeout,
                    exp.steady_state.interval,
                    D(allows),
                    D(allows),
                    D(allows),
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(yaml: &str) -> Experiment {
        crate::experiment::load_bytes("t.yaml", yaml.as_bytes())
            .unwrap()
            .experiment
    }

    const BASE: &str = r#"
title: t
hypothesis: h
steady_state:
  interval: 200ms
  probes:
    - name: web
      http: {url: "http://127.0.0.1:1/"}
      timeout: 5s
      during: {min_success: 90%}
"#;

    #[test]
    fn a_percentile_on_too_short_a_method_warns() {
        let base = BASE.replace("{min_success: 90%}", "{p95_below: 100ms}");
        let w = warnings(&exp(&format!("{base}method:\n  - pause: 2s\n")));
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].path, "steady_state.probes[0].during.p95_below");
        assert!(
            w[0].message.contains("at least 20 samples"),
            "{}",
            w[0].message
        );
        let w = warnings(&exp(&format!("{base}method:\n  - pause: 4s\n")));
        assert_eq!(w, vec![]);
    }

    #[test]
    fn a_short_method_and_a_long_timeout_warn() {
        let e = exp(&format!(
            "{BASE}method:\n  - pause: 1s\nabort:\n  - probe: web\n    consecutive_failures: 3\n"
        ));
        let w = warnings(&e);
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(w[0].path, "steady_state.probes[0].during.min_success");
        assert!(
            w[0].message.contains("can rest on 6 samples") && w[0].message.contains("1800ms"),
            "{}",
            w[0].message
        );
        assert_eq!(w[1].path, "steady_state.probes[0].timeout");
        assert!(
            w[1].message
                .contains("abort[0] allows (3 consecutive failures x 200ms interval = 600ms)"),
            "{}",
            w[1].message
        );
    }

    #[test]
    fn enough_samples_and_a_short_timeout_do_not_warn() {
        let e = exp(&format!(
            "{BASE}method:\n  - pause: 1800ms\nabort:\n  - probe: web\n    consecutive_failures: 25\n"
        ));
        assert_eq!(warnings(&e), vec![]);
        assert_eq!(
            samples_in(Duration::from_millis(1800), Duration::from_millis(200)),
            10
        );
    }

    #[test]
    fn background_faults_count_by_their_longest() {
        let e = exp(&format!(
            "{BASE}method:\n  - pause: 1s\n  - fault: {{cpu_stress: {{workers: 1, load: 10%}}}}\n    duration: 3s\n    background: true\n"
        ));
        assert_eq!(method_length(&e), Duration::from_secs(3));
        assert_eq!(warnings(&e), vec![]);
    }
}
