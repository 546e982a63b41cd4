//! Sampling the steady state: the before phase (a fixed number of samples),
//! the samplers that run during the method, and the after phase (until
//! recovered or out of time).
//!
//! Before and during the method every probe samples on a fixed schedule: one
//! sample starts every `steady_state.interval`, however long earlier samples
//! take, each in its own task, with at most [`in_flight_bound`] of one probe
//! running at once. A tick that finds the bound reached, or that comes a
//! whole interval late (the runner could not run), is skipped and counted.
//! At the end of a phase the samples still running are waited for (each is
//! bounded by the probe's timeout), unless an abort or a failed step stops
//! the run, or a second Ctrl-C says not to wait: then they are cut and
//! counted as cut, never as failures. The after phase samples one at a time: recovery is "N good
//! samples in a row", which needs them in order.

use super::*;
use crate::experiment::model::min_samples_for_percentile;
use crate::report::record::LatencyStats;
use std::collections::BTreeSet;
use tokio::task::JoinSet;

pub(super) fn emit_sample(ctx: &Ctx, idx: usize, phase: SamplePhase, s: &crate::probe::Sample) {
    ctx.emit.emit(Event::Sample {
        probe: idx,
        name: ctx.probes[idx].name.clone(),
        phase,
        latency_ms: s.latency.as_secs_f64() * 1000.0,
        status: s.status,
        detail: s.detail.clone(),
        output: s.output.clone(),
    });
}

/// Takes a sample; `None` when a second interrupt says not to wait for it.
pub(super) async fn sample_unless_hurried(ctx: &Ctx, i: usize) -> Option<crate::probe::Sample> {
    let mut hurry = ctx.hurry.subscribe();
    if *hurry.borrow() {
        return None;
    }
    tokio::select! {
        s = ctx.probes[i].sample() => Some(s),
        _ = hurry.wait_for(|h| *h) => None,
    }
}

/// Waits `d`, or less when cancelled. Returns false when cancelled.
pub(super) async fn sleep_or_cancel(ctx: &Ctx, d: Duration) -> bool {
    let mut rx = ctx.cancel_rx.clone();
    if *rx.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = rx.wait_for(|c| *c) => false,
    }
}

/// The most samples of one probe in flight at once, whatever its timeout.
pub const MAX_IN_FLIGHT: usize = 16;

/// How many samples of one probe may run at once: enough that samples which
/// each take up to the probe's timeout never hold up the schedule
/// (`ceil(timeout / interval) + 1`), at most [`MAX_IN_FLIGHT`].
pub fn in_flight_bound(timeout: Duration, interval: Duration) -> usize {
    let n = timeout.as_nanos().div_ceil(interval.as_nanos().max(1)) + 1;
    (n.min(MAX_IN_FLIGHT as u128) as usize).max(1)
}

/// What a probe's sampler tells the method's loop, in order per probe.
/// Sequence numbers count started samples: 0, 1, 2...
#[derive(Debug)]
pub(super) enum SamplerMsg {
    Started {
        probe: usize,
        seq: u64,
        at: Instant,
    },
    Finished {
        probe: usize,
        seq: u64,
        status: SampleStatus,
        latency_ms: f64,
    },
    Cut {
        probe: usize,
        seq: u64,
    },
}

/// What one probe's schedule gave in one phase.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Taken {
    /// Samples that finished.
    pub taken: u32,
    pub successes: u32,
    /// Samples stopped unfinished.
    pub cut: u32,
}

/// How late samples started: 0.1 ms buckets up to 100 ms, then 10 ms
/// buckets up to 10 s (fixed memory for any run length), and the maximum.
struct Jitter {
    fine: Vec<u32>,
    coarse: Vec<u32>,
    n: u64,
    max_ms: f64,
}

const FINE_MS: f64 = 0.1;
const COARSE_MS: f64 = 10.0;
const BUCKETS: usize = 1000;

impl Jitter {
    fn new() -> Self {
        Jitter {
            fine: vec![0; BUCKETS],
            coarse: vec![0; BUCKETS],
            n: 0,
            max_ms: 0.0,
        }
    }

    fn record(&mut self, late: Duration) {
        let ms = late.as_secs_f64() * 1000.0;
        self.n += 1;
        self.max_ms = self.max_ms.max(ms);
        let f = (ms / FINE_MS) as usize;
        if f < BUCKETS {
            self.fine[f] += 1;
        } else {
            self.coarse[((ms / COARSE_MS) as usize).min(BUCKETS - 1)] += 1;
        }
    }

    /// The upper bound of the bucket holding percentile `p`, at most the max.
    fn percentile(&self, p: f64) -> f64 {
        let rank = ((p / 100.0) * self.n as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, c) in self.fine.iter().enumerate() {
            seen += *c as u64;
            if seen >= rank {
                return ((i + 1) as f64 * FINE_MS).min(self.max_ms);
            }
        }
        for (i, c) in self.coarse.iter().enumerate() {
            seen += *c as u64;
            if seen >= rank {
                return ((i + 1) as f64 * COARSE_MS).min(self.max_ms);
            }
        }
        self.max_ms
    }

    fn stats(&self) -> Option<LatencyStats> {
        (self.n > 0).then(|| LatencyStats {
            p50: self.percentile(50.0),
            p95: self.percentile(95.0),
            p99: self.percentile(99.0),
            max: self.max_ms,
        })
    }
}

/// Samples probe `i` on the fixed schedule (see the module comment) until
/// `count` samples started (`Some`) or `stop` turns true (`None`), then
/// waits for or cuts the samples still running. Reports every start, end
/// and cut to `tx` and the schedule's figures as an `Event::Sampling`.
pub(super) async fn sample_on_schedule(
    ctx: Arc<Ctx>,
    i: usize,
    phase: SamplePhase,
    count: Option<u32>,
    mut stop: watch::Receiver<bool>,
    tx: Option<mpsc::UnboundedSender<SamplerMsg>>,
) -> Taken {
    let interval = ctx.exp.steady_state.interval.std();
    let bound = in_flight_bound(ctx.probes[i].timeout(), interval);
    let send = |m: SamplerMsg| {
        if let Some(tx) = &tx {
            let _ = tx.send(m);
        }
    };
    let t0 = tokio::time::Instant::now();
    let mut next = t0;
    let mut started = 0u32;
    let mut skipped = 0u32;
    let mut skipped_in_flight = 0u32;
    let mut running: JoinSet<(u64, crate::probe::Sample)> = JoinSet::new();
    let mut in_flight: BTreeSet<u64> = BTreeSet::new();
    let mut out = Taken::default();
    let mut jitter = Jitter::new();
    let mut done = |r: Result<(u64, crate::probe::Sample), tokio::task::JoinError>,
                    in_flight: &mut BTreeSet<u64>| {
        // A task that panicked or was aborted stays in `in_flight`: cut.
        if let Ok((seq, s)) = r {
            in_flight.remove(&seq);
            emit_sample(&ctx, i, phase, &s);
            send(SamplerMsg::Finished {
                probe: i,
                seq,
                status: s.status,
                latency_ms: s.latency.as_secs_f64() * 1000.0,
            });
            out.taken += 1;
            if s.is_success() {
                out.successes += 1;
            }
        }
    };
    loop {
        if count.is_some_and(|n| started >= n) {
            break;
        }
        // The during phase always starts its first tick, even when the
        // method was over before this task first ran (a method shorter
        // than one sample on a busy host): `during` is never 0/0 by chance.
        let may_stop = started > 0 || count.is_some();
        tokio::select! {
            biased;
            _ = stop.wait_for(|v| *v), if may_stop => break,
            Some(r) = running.join_next(), if !running.is_empty() => done(r, &mut in_flight),
            _ = tokio::time::sleep_until(next) => {
                let now = tokio::time::Instant::now();
                if running.len() < bound {
                    jitter.record(now - next);
                    let seq = started as u64;
                    started += 1;
                    in_flight.insert(seq);
                    send(SamplerMsg::Started { probe: i, seq, at: now.into_std() });
                    let ctx = ctx.clone();
                    running.spawn(async move { (seq, ctx.probes[i].sample().await) });
                } else {
                    skipped += 1;
                    skipped_in_flight += 1;
                }
                next += interval;
                // Ticks a whole interval late are missed, not started in a burst.
                while next + interval <= now {
                    skipped += 1;
                    next += interval;
                }
            }
        }
    }
    let end = tokio::time::Instant::now();
    // During: every tick due by the end (at least half an interval before
    // it, so a tick that falls on the stop itself is neither expected nor
    // skipped); before: the fixed count (ticks skipped on the way were made
    // up by later ticks).
    let expected = match count {
        Some(n) => n,
        None => {
            let due = (end - t0)
                .checked_sub(interval / 2)
                .map_or(0, |d| d.as_nanos() / interval.as_nanos().max(1) + 1);
            (due.min(u32::MAX as u128) as u32).max(started + skipped)
        }
    };
    if count.is_none() {
        skipped = expected - started;
    }
    // An abort or a failed step cuts at once (a hung target would hold the
    // run for its timeout); after a first Ctrl-C the samples are waited
    // for, a second one cuts them.
    let stopping = || {
        *ctx.hurry.borrow()
            || matches!(
                ctx.stop_reason(),
                Some(Stop::Abort) | Some(Stop::StepFailed(..))
            )
    };
    if !running.is_empty() && !stopping() {
        let mut cancel = ctx.cancel_rx.clone();
        let mut hurry = ctx.hurry.subscribe();
        let mut watch_cancel = true;
        loop {
            tokio::select! {
                r = running.join_next() => match r {
                    Some(r) => done(r, &mut in_flight),
                    None => break,
                },
                _ = cancel.wait_for(|c| *c), if watch_cancel => {
                    if stopping() {
                        break;
                    }
                    watch_cancel = false;
                }
                _ = hurry.wait_for(|h| *h) => break,
            }
        }
    }
    running.abort_all();
    for seq in std::mem::take(&mut in_flight) {
        send(SamplerMsg::Cut { probe: i, seq });
        out.cut += 1;
    }
    ctx.emit.emit(Event::Sampling {
        probe: i,
        name: ctx.probes[i].name.clone(),
        phase,
        expected,
        skipped,
        skipped_in_flight,
        cut: out.cut,
        max_in_flight: bound as u32,
        start_jitter_ms: jitter.stats(),
    });
    out
}

pub(super) async fn before(ctx: &Arc<Ctx>) -> bool {
    let mut tasks = Vec::new();
    for (i, spec) in ctx.exp.steady_state.probes.iter().enumerate() {
        let ctx = ctx.clone();
        let n = spec.before.samples;
        let min = spec.before.min_success;
        tasks.push(tokio::spawn(async move {
            let stop = ctx.cancel_rx.clone();
            let t =
                sample_on_schedule(ctx.clone(), i, SamplePhase::Before, Some(n), stop, None).await;
            let mut met = t.taken == n && (t.successes as f64) >= min.fraction() * n as f64 - 1e-9;
            let mut text = format!("at least {min} of {n} samples succeed");
            // Latency percentiles over every finished sample (validation
            // makes `samples` enough for each percentile asked for).
            let limits = ctx.exp.steady_state.probes[i].before.latency_limits();
            if !limits.is_empty() {
                let lat: Vec<f64> = ctx
                    .builder
                    .lock()
                    .unwrap()
                    .phase_samples(i, SamplePhase::Before)
                    .iter()
                    .map(|s| s.1)
                    .collect();
                for (p, limit) in limits {
                    match super::builder::percentile(&lat, p) {
                        Some(v) if lat.len() as u32 >= min_samples_for_percentile(p) => {
                            met &= v <= limit.std().as_secs_f64() * 1000.0 + 1e-9;
                            text.push_str(&format!(
                                "; p{p} latency {} (max {limit})",
                                crate::report::summary::fmt_ms(v)
                            ));
                        }
                        _ => {
                            met = false;
                            text.push_str(&format!(
                                "; p{p} latency at most {limit} (only {} samples finished)",
                                lat.len()
                            ));
                        }
                    }
                }
            }
            ctx.builder
                .lock()
                .unwrap()
                .set_requirement(i, SamplePhase::Before, text, Some(met));
            met
        }));
    }
    let mut all = true;
    for t in tasks {
        all &= t.await.unwrap_or(false);
    }
    ctx.emit.emit(Event::SteadyState {
        phase: SamplePhase::Before,
        held: all,
        detail: if all {
            "steady state holds".into()
        } else {
            "steady state does not hold; nothing will be injected".into()
        },
    });
    all
}

/// Samples every probe on the schedule until `stop` turns true, sending
/// every start, end and cut to `tx`. Each task returns what it took.
pub(super) fn spawn_samplers(
    ctx: &Arc<Ctx>,
    stop: watch::Receiver<bool>,
    tx: mpsc::UnboundedSender<SamplerMsg>,
) -> Vec<tokio::task::JoinHandle<Taken>> {
    (0..ctx.probes.len())
        .map(|i| {
            let ctx = ctx.clone();
            tokio::spawn(sample_on_schedule(
                ctx,
                i,
                SamplePhase::During,
                None,
                stop.clone(),
                Some(tx.clone()),
            ))
        })
        .collect()
}

pub(super) async fn after(ctx: &Arc<Ctx>) -> bool {
    let interval = ctx.exp.steady_state.interval.std();
    let mut tasks = Vec::new();
    for (i, spec) in ctx.exp.steady_state.probes.iter().enumerate() {
        let ctx = ctx.clone();
        let need = spec.after.successes;
        let within = spec.after.within;
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let deadline = tokio::time::Instant::now() + within.std();
            let mut streak = 0u32;
            let mut first_ok: Option<Instant> = None;
            let mut next = tokio::time::Instant::now();
            let mut taken = 0u32;
            let mut cut = 0u32;
            let recovered = loop {
                if ctx.cancelled() && matches!(ctx.stop_reason(), Some(Stop::Signal(_))) {
                    break None;
                }
                let Some(s) = sample_unless_hurried(&ctx, i).await else {
                    cut += 1;
                    break None;
                };
                taken += 1;
                emit_sample(&ctx, i, SamplePhase::After, &s);
                if s.is_success() {
                    if streak == 0 {
                        first_ok = Some(Instant::now());
                    }
                    streak += 1;
                    if streak >= need {
                        // Time to recover: until the first of the good streak.
                        let at = first_ok.unwrap_or_else(Instant::now);
                        break Some(at.duration_since(t0).as_secs_f64() * 1000.0);
                    }
                } else {
                    streak = 0;
                }
                next += interval;
                if next >= deadline {
                    break None;
                }
                tokio::time::sleep_until(next.max(tokio::time::Instant::now())).await;
            };
            // One sample at a time: a slow sample delays the next, and the
            // ticks it covered count as skipped.
            let due = (t0.elapsed().as_nanos() / interval.as_nanos().max(1) + 1) as u32;
            let expected = due.max(taken + cut);
            ctx.emit.emit(Event::Sampling {
                probe: i,
                name: ctx.probes[i].name.clone(),
                phase: SamplePhase::After,
                expected,
                skipped: expected - taken - cut,
                skipped_in_flight: 0,
                cut,
                max_in_flight: 1,
                start_jitter_ms: None,
            });
            ctx.builder.lock().unwrap().set_requirement(
                i,
                SamplePhase::After,
                format!("{need} successes in a row within {within}"),
                Some(recovered.is_some()),
            );
            ctx.emit.emit(Event::Recovered {
                probe: ctx.probes[i].name.clone(),
                after_ms: recovered,
            });
            recovered.is_some()
        }));
    }
    let mut all = true;
    for t in tasks {
        all &= t.await.unwrap_or(false);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_bound_covers_the_timeout_and_is_capped() {
        let ms = Duration::from_millis;
        assert_eq!(in_flight_bound(ms(100), ms(1000)), 2);
        assert_eq!(in_flight_bound(ms(1000), ms(1000)), 2);
        assert_eq!(in_flight_bound(ms(1001), ms(1000)), 3);
        assert_eq!(in_flight_bound(ms(5000), ms(1000)), 6);
        assert_eq!(in_flight_bound(ms(5000), ms(200)), MAX_IN_FLIGHT);
        assert_eq!(in_flight_bound(ms(5000), Duration::ZERO), MAX_IN_FLIGHT);
    }

    #[test]
    fn jitter_percentiles_from_fixed_buckets() {
        let mut j = Jitter::new();
        assert!(j.stats().is_none());
        for us in 0..95 {
            j.record(Duration::from_micros(100 + us));
        }
        for _ in 0..5 {
            j.record(Duration::from_millis(250));
        }
        let s = j.stats().unwrap();
        assert!((0.1..=0.3).contains(&s.p50), "{s:?}");
        assert!((0.1..=0.3).contains(&s.p95), "{s:?}");
        assert!((250.0..=260.0).contains(&s.p99), "{s:?}");
        assert_eq!(s.max, 250.0);
    }
}
