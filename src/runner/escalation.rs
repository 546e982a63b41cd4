//! An escalating fault step: the first level is injected, then each level
//! is held for `hold`, judged on the samples that started in its window,
//! and replaced by the next (in place when the fault kind can change in
//! place, else rolled back and injected afresh), stopping at the first
//! level that does not hold. The undo records of the first injection
//! restore the state from before the escalation whatever level was reached.

use super::method::{
    end_fault_step, fault_ctx, finish_health, hold, inject_verify, judge_during, operation_words,
    roll_back_fault, verify_fault, During, HoldEnd, Holder,
};
use super::sampling::Taken;
use super::*;
use crate::report::record::{latency_stats, InconclusiveReason, LevelProbe};

/// The longest wait, after a level's hold, for the samples it started.
const MAX_WAIT: Duration = Duration::from_secs(30);

pub(super) async fn run_escalation(
    ctx: &Arc<Ctx>,
    index: usize,
    label: &str,
    mut imp: Box<dyn FaultImpl>,
    mut method_over: watch::Receiver<bool>,
) {
    let step = &ctx.exp.method[index];
    let (Some(esc), Some(base)) = (step.escalate.clone(), step.fault.clone()) else {
        return;
    };
    let levels = match esc.level_faults(&base) {
        Ok(l) => l,
        Err(e) => {
            end_fault_step(ctx, index, StepStatus::Failed, Some((exit::INVALID, e)));
            return;
        }
    };
    ctx.builder
        .lock()
        .unwrap()
        .start_escalation(index, label, &esc);
    let n = levels.len();
    let fctx = fault_ctx(ctx);
    let t0 = Instant::now();
    let mut ops = operation_words(imp.plan(&fctx));
    let mut status = StepStatus::Completed;
    let mut failed = inject_verify(ctx, index, label, &mut imp, &fctx).err();
    if failed.is_none() {
        let mut holder = Some(Holder::new(ctx, index, imp.as_ref(), t0));
        let mut k = 0;
        let mut in_place = false;
        loop {
            ctx.emit.emit(Event::EscalationLevel {
                step: index,
                level: k,
                levels: n,
                param: esc.param.clone(),
                value: esc.levels[k].to_string(),
                in_place,
                operations: ops.clone(),
            });
            let from_ms = ctx.emit.elapsed_ms();
            let end = tokio::time::Instant::now() + esc.hold.std();
            let h = holder.as_mut().expect("a holder while the fault is active");
            match hold(ctx, index, label, &mut imp, &fctx, end, h, &mut method_over).await {
                HoldEnd::Elapsed => {}
                HoldEnd::Interrupted => {
                    status = StepStatus::Interrupted;
                    break;
                }
                HoldEnd::MethodOver => break,
                HoldEnd::Failed(code, msg) => {
                    failed = Some((code, msg));
                    break;
                }
            }
            let to_ms = ctx.emit.elapsed_ms();
            // The level stays in effect while the samples it started finish.
            if !wait_for_window(ctx, to_ms).await {
                status = StepStatus::Interrupted;
                break;
            }
            let held = judge_level(ctx, index, k, &esc, from_ms, to_ms);
            if held == Some(false) || k + 1 == n {
                break;
            }
            k += 1;
            let next = &levels[k];
            let planned = imp.plan_change(&fctx, next);
            match tokio::task::block_in_place(|| imp.change_to(&fctx, next)) {
                Ok(true) => {
                    in_place = true;
                    ops = operation_words(planned.unwrap_or_default());
                    if let Err(f) = verify_fault(ctx, index, label, &mut imp, &fctx) {
                        failed = Some(f);
                        break;
                    }
                }
                Ok(false) => {
                    // Rolled back and injected afresh: one fault record per level.
                    if let Some(h) = holder.take() {
                        finish_health(ctx, index, label, &mut imp, &fctx, h);
                    }
                    if !roll_back_fault(ctx, index, label, &mut imp, &fctx, t0) {
                        failed = Some((
                            exit::ROLLBACK_FAILED,
                            format!(
                                "step {} `{label}`: level {} was not rolled back, so level {} was not injected",
                                index + 1,
                                k,
                                k + 1
                            ),
                        ));
                        break;
                    }
                    let mut fresh = crate::fault::build(next);
                    if let Err(e) = tokio::task::block_in_place(|| fresh.preflight(&fctx)) {
                        imp = fresh;
                        failed = Some((
                            e.code,
                            format!(
                                "step {} `{label}`: level {} ({}): {}",
                                index + 1,
                                k + 1,
                                esc.describe_level(k),
                                e.message
                            ),
                        ));
                        break;
                    }
                    ops = operation_words(fresh.plan(&fctx));
                    imp = fresh;
                    in_place = false;
                    if let Err(f) = inject_verify(ctx, index, label, &mut imp, &fctx) {
                        failed = Some(f);
                        break;
                    }
                    holder = Some(Holder::new(ctx, index, imp.as_ref(), Instant::now()));
                }
                Err(e) => {
                    failed = Some((
                        e.code,
                        format!(
                            "step {} `{label}`: cannot change to level {} ({}): {}",
                            index + 1,
                            k + 1,
                            esc.describe_level(k),
                            e.message
                        ),
                    ));
                    break;
                }
            }
        }
        if let Some(h) = holder.take() {
            finish_health(ctx, index, label, &mut imp, &fctx, h);
        }
    }
    roll_back_fault(ctx, index, label, &mut imp, &fctx, t0);
    end_fault_step(ctx, index, status, failed);
}

/// Waits until every sample that started before `to_ms` has finished (at
/// most the longest probe timeout, and [`MAX_WAIT`]). False when the run
/// was cancelled meanwhile.
async fn wait_for_window(ctx: &Arc<Ctx>, to_ms: f64) -> bool {
    let longest = ctx
        .exp
        .steady_state
        .probes
        .iter()
        .map(|p| p.timeout.std())
        .max()
        .unwrap_or_default()
        .min(MAX_WAIT);
    let give_up = Instant::now() + longest + Duration::from_millis(250);
    // A sample whose start the main loop has not seen yet.
    tokio::time::sleep(Duration::from_millis(20)).await;
    loop {
        if ctx.cancelled() {
            return false;
        }
        let pending = ctx
            .inflight
            .lock()
            .unwrap()
            .values()
            .any(|start| *start < to_ms);
        if !pending || Instant::now() >= give_up {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Judges level `k` on the samples that started in `[from_ms, to_ms)`:
/// `Some(false)` when an experiment probe failed its `during` requirement,
/// `None` when one could not be judged (the run is then INCONCLUSIVE).
fn judge_level(
    ctx: &Arc<Ctx>,
    index: usize,
    k: usize,
    esc: &crate::experiment::escalate::Escalate,
    from_ms: f64,
    to_ms: f64,
) -> Option<bool> {
    use crate::experiment::model::ProbeGroup;
    let specs = &ctx.exp.steady_state.probes;
    let windows: Vec<Vec<(f64, f64, bool)>> = {
        let b = ctx.builder.lock().unwrap();
        (0..specs.len())
            .map(|i| b.window_samples(i, from_ms, to_ms))
            .collect()
    };
    let control = |of: &str| -> Vec<f64> {
        specs
            .iter()
            .zip(&windows)
            .filter(|(p, _)| p.group == ProbeGroup::Control && (of == "control" || p.name == of))
            .flat_map(|(_, w)| w.iter().map(|s| s.1))
            .collect()
    };
    let mut held = Some(true);
    let mut probes = Vec::new();
    for (spec, w) in specs.iter().zip(&windows) {
        let lat: Vec<f64> = w.iter().map(|s| s.1).collect();
        let starts: Vec<(f64, bool)> = w.iter().map(|s| (s.0, s.2)).collect();
        let longest = super::builder::longest_outage(&starts, to_ms);
        let taken = Taken {
            taken: w.len() as u32,
            successes: w.iter().filter(|s| s.2).count() as u32,
            cut: 0,
        };
        let mut lp = LevelProbe {
            name: spec.name.clone(),
            group: if spec.group.is_experiment() {
                String::new()
            } else {
                spec.group.name().to_string()
            },
            samples: taken.taken,
            successes: taken.successes,
            latency_ms: latency_stats(&lat),
            longest_outage_ms: (!w.is_empty()).then_some(longest),
            ..Default::default()
        };
        if let Some(req) = &spec.during {
            let acc = crate::report::samples::LatencyAcc::from_values(&lat);
            match judge_during(req, taken, longest, &acc, &|| lat.clone(), &control) {
                During::Judged(met, text) => {
                    lp.requirement = text;
                    lp.met = Some(met);
                    if !met && spec.group.is_experiment() {
                        held = Some(false);
                    }
                }
                During::Untested(text, why) => {
                    lp.requirement = text;
                    if spec.group.is_experiment() {
                        if held == Some(true) {
                            held = None;
                        }
                        for w in why {
                            ctx.inconclusive(InconclusiveReason::too_few_samples(
                                &spec.name,
                                format!(
                                    "at level {} ({}): {w}; make `escalate.hold` longer or the interval shorter",
                                    k + 1,
                                    esc.describe_level(k)
                                ),
                            ));
                        }
                    }
                }
            }
        }
        probes.push(lp);
    }
    ctx.emit.emit(Event::EscalationJudged {
        step: index,
        level: k,
        held,
        probes,
    });
    held
}
