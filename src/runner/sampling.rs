//! Sampling the steady state: the before phase (a fixed number of samples),
//! the samplers that run during the method, and the after phase (until
//! recovered or out of time).

use super::*;

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

pub(super) async fn before(ctx: &Arc<Ctx>) -> bool {
    let interval = ctx.exp.steady_state.interval.std();
    let mut tasks = Vec::new();
    for (i, spec) in ctx.exp.steady_state.probes.iter().enumerate() {
        let ctx = ctx.clone();
        let n = spec.before.samples;
        let min = spec.before.min_success;
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u32;
            let mut taken = 0u32;
            let mut next = tokio::time::Instant::now();
            for _ in 0..n {
                if ctx.cancelled() {
                    break;
                }
                let Some(s) = sample_unless_hurried(&ctx, i).await else {
                    break;
                };
                emit_sample(&ctx, i, SamplePhase::Before, &s);
                taken += 1;
                if s.is_success() {
                    ok += 1;
                }
                next += interval;
                if taken < n {
                    let mut rx = ctx.cancel_rx.clone();
                    tokio::select! {
                        _ = tokio::time::sleep_until(next) => {}
                        _ = rx.wait_for(|c| *c) => break,
                    }
                }
            }
            let met = taken == n && (ok as f64) >= min.fraction() * n as f64 - 1e-9;
            ctx.builder.lock().unwrap().set_requirement(
                i,
                SamplePhase::Before,
                format!("at least {min} of {n} samples succeed"),
                Some(met),
            );
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

/// Samples every probe at the interval until `stop` turns true, sending each
/// sample's index, status and latency to `tx`.
pub(super) fn spawn_samplers(
    ctx: &Arc<Ctx>,
    stop: watch::Receiver<bool>,
    tx: mpsc::UnboundedSender<(usize, SampleStatus, f64, String)>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let interval = ctx.exp.steady_state.interval.std();
    (0..ctx.probes.len())
        .map(|i| {
            let ctx = ctx.clone();
            let tx = tx.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let mut next = tokio::time::Instant::now();
                loop {
                    if *stop.borrow() {
                        break;
                    }
                    let s = tokio::select! {
                        s = ctx.probes[i].sample() => s,
                        _ = stop.wait_for(|v| *v) => break,
                    };
                    emit_sample(&ctx, i, SamplePhase::During, &s);
                    let _ = tx.send((
                        i,
                        s.status,
                        s.latency.as_secs_f64() * 1000.0,
                        s.detail.clone(),
                    ));
                    next += interval;
                    let now = tokio::time::Instant::now();
                    if next < now {
                        // A slow sample: start the next one at once, no backlog.
                        next = now;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep_until(next) => {}
                        _ = stop.wait_for(|v| *v) => break,
                    }
                }
            })
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
            let recovered = loop {
                if ctx.cancelled() && matches!(ctx.stop_reason(), Some(Stop::Signal(_))) {
                    break None;
                }
                let Some(s) = sample_unless_hurried(&ctx, i).await else {
                    break None;
                };
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
