//! Reading a long run's journal for a report in bounded memory.
//!
//! A 4-hour run at 20 probes x 50 ms writes about 5.8 million samples (some
//! 700 MiB of JSON). The table, Markdown and JUnit reports need only each
//! phase's statistics (already in the journal) and the failing samples; the
//! HTML plot needs a few thousand points. So while a journal is read for
//! those reports, each probe's sample list is thinned as it streams by:
//!
//! - every failing sample is kept, up to [`FAILING_PER_PHASE`] per phase
//!   (the JUnit report lists the first 10 of each phase);
//! - of all samples, at most `2 x points` stay for the plot: the samples are
//!   taken in groups, and the one with the highest latency of each group is
//!   kept, so spikes survive; when the list is full, neighbours are merged
//!   and the groups double.
//!
//! Nothing is thinned when a probe has at most `points` samples, so short
//! runs render exactly as before. `faultline report --format json` reads the
//! whole journal (it writes every sample back).

use super::record::{SamplePhase, SampleRecord, SampleStatus};
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use std::cell::{Cell, RefCell};

/// Failing samples kept per phase of a probe.
pub const FAILING_PER_PHASE: usize = 1_000;

thread_local! {
    /// Plot points per probe while a [`Thinning`] is alive on this thread.
    static POINTS: Cell<Option<usize>> = const { Cell::new(None) };
    /// Samples left out, per sample list read, in the order read.
    static LEFT_OUT: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// While alive, journals read on this thread have their samples thinned.
pub struct Thinning(());

impl Thinning {
    pub fn start(points: usize) -> Thinning {
        POINTS.with(|p| p.set(Some(points.max(1))));
        LEFT_OUT.with(|l| l.borrow_mut().clear());
        Thinning(())
    }

    /// How many samples each sample list read so far left out, in order
    /// (one per probe).
    pub fn left_out(&self) -> Vec<u64> {
        LEFT_OUT.with(|l| l.borrow().clone())
    }
}

impl Drop for Thinning {
    fn drop(&mut self) {
        POINTS.with(|p| p.set(None));
        LEFT_OUT.with(|l| l.borrow_mut().clear());
    }
}

/// `deserialize_with` for a probe's samples: all of them, or thinned while a
/// [`Thinning`] is alive.
pub fn samples<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SampleRecord>, D::Error> {
    match POINTS.with(Cell::get) {
        None => Vec::deserialize(d),
        Some(points) => {
            let (kept, left_out) = d.deserialize_seq(ThinVisitor { points })?;
            LEFT_OUT.with(|l| l.borrow_mut().push(left_out));
            Ok(kept)
        }
    }
}

struct ThinVisitor {
    points: usize,
}

impl<'de> Visitor<'de> for ThinVisitor {
    type Value = (Vec<SampleRecord>, u64);

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of samples")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut t = Thinner::new(self.points);
        while let Some(s) = seq.next_element::<SampleRecord>()? {
            t.push(s);
        }
        Ok(t.finish())
    }
}

/// The thinning itself, one sample at a time.
pub struct Thinner {
    points: usize,
    /// Every sample, in order, while there are at most `points`.
    all: Vec<SampleRecord>,
    /// Past `points`: one sample (the slowest) per group of `group`.
    series: Vec<(usize, SampleRecord)>,
    group: usize,
    /// The slowest sample of the group being filled.
    current: Option<(usize, SampleRecord)>,
    failing: Vec<(usize, SampleRecord)>,
    failing_per_phase: [usize; 3],
    seen: usize,
}

fn phase_index(p: SamplePhase) -> usize {
    match p {
        SamplePhase::Before => 0,
        SamplePhase::During => 1,
        SamplePhase::After => 2,
    }
}

fn slower(a: (usize, SampleRecord), b: (usize, SampleRecord)) -> (usize, SampleRecord) {
    if b.1.latency_ms > a.1.latency_ms {
        b
    } else {
        a
    }
}

impl Thinner {
    pub fn new(points: usize) -> Thinner {
        Thinner {
            points: points.max(1),
            all: Vec::new(),
            series: Vec::new(),
            group: 1,
            current: None,
            failing: Vec::new(),
            failing_per_phase: [0; 3],
            seen: 0,
        }
    }

    pub fn push(&mut self, s: SampleRecord) {
        let i = self.seen;
        self.seen += 1;
        if self.series.is_empty() && self.all.len() < self.points {
            self.all.push(s);
            return;
        }
        if self.series.is_empty() {
            // The first sample past `points`: from now on, thin. What was
            // kept so far goes through the same path.
            for (j, old) in std::mem::take(&mut self.all).into_iter().enumerate() {
                self.thin(j, old);
            }
        }
        self.thin(i, s);
    }

    fn thin(&mut self, i: usize, s: SampleRecord) {
        if s.status != SampleStatus::Success {
            let n = &mut self.failing_per_phase[phase_index(s.phase)];
            if *n < FAILING_PER_PHASE {
                *n += 1;
                self.failing.push((i, s.clone()));
            }
        }
        let cur = match self.current.take() {
            None => (i, s),
            Some(c) => slower(c, (i, s)),
        };
        if (i + 1).is_multiple_of(self.group) {
            self.series.push(cur);
            if self.series.len() >= 2 * self.points {
                // Merge neighbours: half the points, groups twice as long.
                let old = std::mem::take(&mut self.series);
                let mut it = old.into_iter();
                while let Some(a) = it.next() {
                    self.series.push(match it.next() {
                        Some(b) => slower(a, b),
                        None => a,
                    });
                }
                self.group *= 2;
            }
        } else {
            self.current = Some(cur);
        }
    }

    /// The kept samples in their original order, and how many were left out.
    pub fn finish(mut self) -> (Vec<SampleRecord>, u64) {
        if self.series.is_empty() {
            return (self.all, 0);
        }
        if let Some(c) = self.current.take() {
            self.series.push(c);
        }
        let mut kept = self.series;
        kept.append(&mut self.failing);
        kept.sort_by_key(|(i, _)| *i);
        kept.dedup_by_key(|(i, _)| *i);
        let left_out = (self.seen - kept.len()) as u64;
        (kept.into_iter().map(|(_, s)| s).collect(), left_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: usize, status: SampleStatus) -> SampleRecord {
        SampleRecord {
            phase: if i < 100 {
                SamplePhase::Before
            } else {
                SamplePhase::During
            },
            at_ms: i as f64 * 50.0,
            latency_ms: if i == 7_777 { 900.0 } else { (i % 10) as f64 },
            status,
            detail: String::new(),
            output: None,
        }
    }

    #[test]
    fn few_samples_are_kept_as_they_are() {
        let mut t = Thinner::new(100);
        for i in 0..100 {
            t.push(sample(i, SampleStatus::Success));
        }
        let (kept, out) = t.finish();
        assert_eq!((kept.len(), out), (100, 0));
    }

    /// 100,000 samples into 500 points: at most 1,000 series points, every
    /// failing sample (up to the cap), the spike, in order.
    #[test]
    fn many_samples_keep_failures_spikes_and_order() {
        let mut t = Thinner::new(500);
        for i in 0..100_000 {
            let st = if i % 1000 == 3 {
                SampleStatus::Failure
            } else {
                SampleStatus::Success
            };
            t.push(sample(i, st));
        }
        let (kept, out) = t.finish();
        let failing = kept
            .iter()
            .filter(|s| s.status != SampleStatus::Success)
            .count();
        assert_eq!(failing, 100, "every failing sample");
        assert!(kept.len() <= 1_000 + 100 + 1, "{}", kept.len());
        assert!(kept.len() >= 500, "{}", kept.len());
        assert_eq!(out as usize, 100_000 - kept.len());
        assert!(kept.iter().any(|s| s.latency_ms == 900.0), "the spike");
        assert!(kept.windows(2).all(|w| w[0].at_ms < w[1].at_ms), "in order");
        // Spread over the whole run, not only its start.
        assert!(kept.last().unwrap().at_ms > 99_000.0 * 50.0);
    }

    #[test]
    fn failing_samples_are_capped_per_phase() {
        let mut t = Thinner::new(10);
        for i in 0..5_000 {
            t.push(sample(i, SampleStatus::Error));
        }
        let (kept, _) = t.finish();
        let before = kept
            .iter()
            .filter(|s| s.phase == SamplePhase::Before)
            .count();
        let during = kept
            .iter()
            .filter(|s| s.phase == SamplePhase::During)
            .count();
        assert_eq!(before, 100);
        assert!(
            (FAILING_PER_PHASE..FAILING_PER_PHASE + 25).contains(&during),
            "{during}"
        );
    }
}
