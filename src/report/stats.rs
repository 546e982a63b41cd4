//! The control-group comparison: the Mann-Whitney U test (a rank test that
//! suits small, skewed latency samples) and the per-phase comparison of
//! the experiment group with the control group.
//!
//! No well-kept crate fits: statrs has distributions but no rank tests, and
//! the crates that have them are unmaintained. The test is small: ranks
//! with ties averaged, U of the first sample, the normal approximation with
//! the tie correction of the variance and a continuity correction of 0.5,
//! and a two-sided p-value. It matches `scipy.stats.mannwhitneyu(x, y,
//! method="asymptotic")` (the unit tests check known values).

use super::record::{latency_stats, LatencyStats, RunRecord, SamplePhase, SampleStatus};
use serde::{Deserialize, Serialize};

/// Differences with a p-value under this are significant.
pub const ALPHA: f64 = 0.05;

/// A latency difference counts only when the medians also differ by at
/// least this share of the control's median (and [`MIN_LATENCY_EFFECT_MS`]):
/// with many samples a rank test finds differences too small to matter.
pub const MIN_LATENCY_EFFECT: f64 = 0.20;
pub const MIN_LATENCY_EFFECT_MS: f64 = 1.0;
/// A success difference counts only when the success ratios differ by at
/// least this much (10 points).
pub const MIN_SUCCESS_EFFECT: f64 = 0.10;

/// The fewest samples per group the test is run on; with fewer, the normal
/// approximation is too rough and nothing is called significant.
pub const MIN_SAMPLES: usize = 8;

/// The result of a two-sided Mann-Whitney U test of `x` against `y`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct MannWhitney {
    /// U of the first sample: the number of pairs where x > y (ties half).
    pub u: f64,
    pub n1: usize,
    pub n2: usize,
    /// The normal deviate, continuity-corrected and tie-corrected; positive
    /// when the first sample tends to be larger.
    pub z: f64,
    pub p_value: f64,
}

/// Two-sided Mann-Whitney U test; `None` when a sample is empty. When every
/// value is tied the p-value is 1.
pub fn mann_whitney(x: &[f64], y: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool)> = x
        .iter()
        .map(|v| (*v, true))
        .chain(y.iter().map(|v| (*v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = all.len();
    let mut r1 = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1..=j+1 share their average.
        let rank = (i + j + 2) as f64 / 2.0;
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        r1 += rank * all[i..=j].iter().filter(|v| v.1).count() as f64;
        i = j + 1;
    }
    let (f1, f2, fnn) = (n1 as f64, n2 as f64, n as f64);
    let u = r1 - f1 * (f1 + 1.0) / 2.0;
    let mu = f1 * f2 / 2.0;
    let var = f1 * f2 / 12.0 * ((fnn + 1.0) - tie_term / (fnn * (fnn - 1.0)).max(1.0));
    if var <= 0.0 {
        return Some(MannWhitney {
            u,
            n1,
            n2,
            z: 0.0,
            p_value: 1.0,
        });
    }
    let d = u - mu;
    let corrected = if d.abs() <= 0.5 {
        0.0
    } else {
        d - 0.5 * d.signum()
    };
    let z = corrected / var.sqrt();
    let p = erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0);
    Some(MannWhitney {
        u,
        n1,
        n2,
        z,
        p_value: p,
    })
}

/// The complementary error function (Numerical Recipes' `erfcc`,
/// fractional error below 1.2e-7 everywhere).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// One group's samples in one phase.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct GroupStats {
    pub probes: Vec<String>,
    pub samples: u32,
    pub successes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<LatencyStats>,
}

/// The experiment group against the control group in one phase.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GroupComparison {
    pub phase: SamplePhase,
    pub experiment: GroupStats,
    pub control: GroupStats,
    /// The latencies of every finished sample, experiment vs control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_test: Option<MannWhitney>,
    /// Success (1) or not (0) per sample, experiment vs control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_test: Option<MannWhitney>,
    /// Either test's p-value is under [`ALPHA`].
    pub significant: bool,
    /// In words, e.g. `experiment p50 210ms vs control 12ms: significant
    /// (Mann-Whitney p=0.0001)`.
    pub summary: String,
}

/// `p=0.0312`, `p<0.0001`.
pub fn p_text(p: f64) -> String {
    if p < 0.0001 {
        "p<0.0001".into()
    } else {
        format!("p={p:.4}")
    }
}

/// Compares two groups' samples (latency ms, success).
pub fn compare_samples(
    phase: SamplePhase,
    exp_names: Vec<String>,
    ctl_names: Vec<String>,
    exp: &[(f64, bool)],
    ctl: &[(f64, bool)],
) -> GroupComparison {
    let stats = |names: Vec<String>, s: &[(f64, bool)]| GroupStats {
        probes: names,
        samples: s.len() as u32,
        successes: s.iter().filter(|x| x.1).count() as u32,
        latency_ms: latency_stats(&s.iter().map(|x| x.0).collect::<Vec<_>>()),
    };
    let e = stats(exp_names, exp);
    let c = stats(ctl_names, ctl);
    let enough = exp.len() >= MIN_SAMPLES && ctl.len() >= MIN_SAMPLES;
    let lat = |s: &[(f64, bool)]| s.iter().map(|x| x.0).collect::<Vec<_>>();
    let ok = |s: &[(f64, bool)]| {
        s.iter()
            .map(|x| if x.1 { 1.0 } else { 0.0 })
            .collect::<Vec<_>>()
    };
    let (latency_test, success_test) = if enough {
        (
            mann_whitney(&lat(exp), &lat(ctl)),
            mann_whitney(&ok(exp), &ok(ctl)),
        )
    } else {
        (None, None)
    };
    let sig = |t: &Option<MannWhitney>| t.is_some_and(|t| t.p_value < ALPHA);
    let med = |g: &GroupStats| g.latency_ms.map(|l| l.p50).unwrap_or(0.0);
    let ratio = |g: &GroupStats| g.successes as f64 / g.samples.max(1) as f64;
    let latency_effect =
        (med(&e) - med(&c)).abs() >= (MIN_LATENCY_EFFECT * med(&c)).max(MIN_LATENCY_EFFECT_MS);
    let success_effect = (ratio(&e) - ratio(&c)).abs() >= MIN_SUCCESS_EFFECT;
    let significant =
        (sig(&latency_test) && latency_effect) || (sig(&success_test) && success_effect);
    let p50 = |g: &GroupStats| {
        g.latency_ms
            .map(|l| crate::report::summary::fmt_ms(l.p50))
            .unwrap_or_else(|| "-".into())
    };
    let rate = |g: &GroupStats| format!("{}/{}", g.successes, g.samples);
    let summary = if !enough {
        format!(
            "experiment p50 {} ({} ok) vs control {} ({} ok): not tested, fewer than {MIN_SAMPLES} samples in a group",
            p50(&e),
            rate(&e),
            p50(&c),
            rate(&c)
        )
    } else {
        let lp = latency_test.map(|t| p_text(t.p_value)).unwrap_or_default();
        let sp = success_test.map(|t| p_text(t.p_value)).unwrap_or_default();
        format!(
            "experiment p50 {} ({} ok) vs control {} ({} ok): {} (Mann-Whitney: latency {lp}, success {sp})",
            p50(&e),
            rate(&e),
            p50(&c),
            rate(&c),
            if significant {
                "significant difference"
            } else {
                "no significant difference"
            }
        )
    };
    GroupComparison {
        phase,
        experiment: e,
        control: c,
        latency_test,
        success_test,
        significant,
        summary,
    }
}

/// Every phase in which both groups have samples, compared; empty when no
/// probe is in the control group.
pub fn compare(rec: &RunRecord) -> Vec<GroupComparison> {
    compare_with(rec, |i, phase| {
        rec.probes[i]
            .samples
            .iter()
            .filter(|x| x.phase == phase)
            .map(|x| (x.latency_ms, x.status == SampleStatus::Success))
            .collect()
    })
}

/// [`compare`] with the samples of probe `i` in a phase, as (latency ms,
/// success), from `samples_of` (while running, the builder reads them from
/// its spool: the record holds only the latest).
pub fn compare_with(
    rec: &RunRecord,
    samples_of: impl Fn(usize, SamplePhase) -> Vec<(f64, bool)>,
) -> Vec<GroupComparison> {
    let is_control =
        |p: &&crate::report::record::ProbeRecord| p.group.as_deref() == Some("control");
    if !rec.probes.iter().any(|p| is_control(&p)) {
        return vec![];
    }
    let mut out = Vec::new();
    for phase in SamplePhase::ALL {
        let gather = |control: bool| {
            let mut names = Vec::new();
            let mut s = Vec::new();
            for (i, p) in rec
                .probes
                .iter()
                .enumerate()
                .filter(|(_, p)| is_control(p) == control)
            {
                names.push(p.name.clone());
                s.extend(samples_of(i, phase));
            }
            (names, s)
        };
        let (en, es) = gather(false);
        let (cn, cs) = gather(true);
        if es.is_empty() || cs.is_empty() {
            continue;
        }
        out.push(compare_samples(phase, en, cn, &es, &cs));
    }
    out
}

/// Judges a relative latency limit (`p95_within`): the experiment probe's
/// `pct` percentile may be at most `percent` above the control's. It fails
/// only when it is above AND the latencies differ significantly (so noise
/// in small samples does not fail a run). `None`: too few samples.
pub fn judge_relative(pct: u32, percent: f64, exp: &[f64], ctl: &[f64]) -> (Option<bool>, String) {
    use crate::report::summary::fmt_ms;
    let need = crate::experiment::model::min_samples_for_percentile(pct) as usize;
    if exp.len() < need || ctl.len() < need {
        return (
            None,
            format!(
                "p{pct} within {percent}% of the control (not judged: {} and {} samples, need {need} each)",
                exp.len(),
                ctl.len()
            ),
        );
    }
    let pe = crate::runner::builder::percentile(exp, pct).unwrap_or(0.0);
    let pc = crate::runner::builder::percentile(ctl, pct).unwrap_or(0.0);
    let limit = pc * (1.0 + percent / 100.0);
    let test = mann_whitney(exp, ctl);
    let sig = test.is_some_and(|t| t.p_value < ALPHA && t.z > 0.0);
    let above = pe > limit + 1e-9;
    let diff = if pc > 0.0 {
        format!("{:+.0}%", (pe / pc - 1.0) * 100.0)
    } else {
        "control 0".into()
    };
    let p = test.map(|t| p_text(t.p_value)).unwrap_or_default();
    let text = format!(
        "p{pct} latency {} vs control {} ({diff}, max +{percent}%; Mann-Whitney {p})",
        fmt_ms(pe),
        fmt_ms(pc)
    );
    (Some(!(above && sig)), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// scipy.stats.mannwhitneyu(males, females, method="asymptotic"), the
    /// example in scipy's documentation: U=17, p=0.11134688653314041.
    #[test]
    fn scipy_documentation_example() {
        let males = [19.0, 22.0, 16.0, 29.0, 24.0];
        let females = [20.0, 11.0, 17.0, 12.0];
        let t = mann_whitney(&males, &females).unwrap();
        assert_eq!(t.u, 17.0);
        assert!(close(t.p_value, 0.111_346_886_533_140_41, 1e-6), "{t:?}");
        // Symmetric: the other way round, U2 = n1 n2 - U1, same p.
        let r = mann_whitney(&females, &males).unwrap();
        assert_eq!(r.u, 3.0);
        assert!(close(r.p_value, t.p_value, 1e-12));
    }

    /// With ties: x = [1, 2, 2, 3, 4], y = [2, 3, 5, 6, 7, 8]. By hand:
    /// ranks of x 1, 3, 3, 5.5, 7 -> R1 19.5, U1 4.5; mu 15; ties (2: t=3,
    /// 3: t=2) -> sum t^3-t = 24 + 6 = 30; var = 30/12 * (12 - 30/110) =
    /// 29.318...; z = (4.5 - 15 + 0.5) / sqrt(var) = -1.84682...;
    /// p = 0.064769.
    #[test]
    fn ties_are_corrected() {
        let t = mann_whitney(&[1.0, 2.0, 2.0, 3.0, 4.0], &[2.0, 3.0, 5.0, 6.0, 7.0, 8.0]).unwrap();
        assert_eq!(t.u, 4.5);
        let var: f64 = 30.0 / 12.0 * (12.0 - 30.0 / 110.0);
        assert!(close(t.z, -10.0 / var.sqrt(), 1e-12), "{t:?}");
        assert!(close(t.p_value, 0.064_769, 1e-6), "{t:?}");
    }

    #[test]
    fn identical_and_separated_samples() {
        let t = mann_whitney(&[5.0; 10], &[5.0; 10]).unwrap();
        assert_eq!(t.p_value, 1.0);
        let a: Vec<f64> = (0..20).map(|i| 100.0 + i as f64).collect();
        let b: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let t = mann_whitney(&a, &b).unwrap();
        assert_eq!(t.u, 400.0);
        assert!(t.p_value < 1e-6 && t.z > 0.0, "{t:?}");
        assert!(mann_whitney(&[], &b).is_none());
    }

    #[test]
    fn erfc_known_values() {
        assert!(close(erfc(0.0), 1.0, 1e-7));
        assert!(close(erfc(1.0), 0.157_299_207, 1e-7));
        assert!(close(erfc(2.0), 0.004_677_735, 1e-8));
        assert!(close(erfc(-1.0), 1.842_700_793, 1e-7));
    }

    #[test]
    fn relative_limit_needs_excess_and_significance() {
        let ctl: Vec<f64> = (0..30).map(|i| 10.0 + (i % 5) as f64).collect();
        let slow: Vec<f64> = ctl.iter().map(|v| v * 3.0).collect();
        let (met, text) = judge_relative(95, 20.0, &slow, &ctl);
        assert_eq!(met, Some(false), "{text}");
        let same: Vec<f64> = ctl.iter().rev().cloned().collect();
        assert_eq!(judge_relative(95, 20.0, &same, &ctl).0, Some(true));
        assert_eq!(judge_relative(95, 20.0, &slow[..5], &ctl).0, None);
    }
}
