//! The method: steps in order (faults, pauses, commands, HTTP actions), each
//! fault injected, verified, held and rolled back; abort conditions checked
//! on every sample meanwhile.

use super::sampling::{sleep_or_cancel, spawn_samplers, SamplerMsg, Taken};
use super::*;
use crate::fault::health::{self, HealthPoint, HealthTracker};
use crate::report::record::InconclusiveReason;
use crate::report::samples::LatencyAcc;

/// Runs the method with probes sampling and abort conditions checked.
/// Returns whether the `during` requirements were met.
pub(super) async fn method(ctx: &Arc<Ctx>, faults: Vec<Option<Box<dyn FaultImpl>>>) -> bool {
    ctx.emit.emit(Event::PhaseStarted {
        phase: Phase::Method,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let samplers = spawn_samplers(ctx, stop_rx, tx);

    let exec = {
        let ctx = ctx.clone();
        tokio::spawn(async move { execute_steps(ctx, faults).await })
    };
    tokio::pin!(exec);

    let interval = ctx.exp.steady_state.interval.std();
    let mut histories: Vec<abort::History> = ctx
        .probes
        .iter()
        .map(|p| {
            let window =
                abort::History::window_for(ctx.exp.abort.iter().filter(|c| c.probe == p.name));
            abort::History::new(interval, window)
        })
        .collect();
    // A running sample turning overdue counts as failing from then on: the
    // conditions are evaluated at each such moment after the last look (a
    // moment already past, e.g. while a message was handled, is due at once).
    let mut looked = Instant::now();
    let exec_result = loop {
        let wake = histories
            .iter()
            .filter_map(|h| h.next_overdue(looked))
            .min();
        tokio::select! {
            r = &mut exec => break r,
            Some(msg) = rx.recv() => {
                let i = match msg {
                    SamplerMsg::Started { probe, seq, at } => {
                        histories[probe].started(seq, at);
                        let ms = ctx.emit.elapsed_ms() - at.elapsed().as_secs_f64() * 1000.0;
                        ctx.inflight.lock().unwrap().insert((probe, seq), ms);
                        continue;
                    }
                    SamplerMsg::Cut { probe, seq } => {
                        histories[probe].cut(seq);
                        ctx.inflight.lock().unwrap().remove(&(probe, seq));
                        continue;
                    }
                    SamplerMsg::Finished { probe, seq, status, latency_ms } => {
                        histories[probe].finished(seq, status, latency_ms);
                        ctx.inflight.lock().unwrap().remove(&(probe, seq));
                        probe
                    }
                };
                check_abort(ctx, i, &histories[i]);
            }
            _ = tokio::time::sleep_until(wake.map(tokio::time::Instant::from_std).unwrap_or_else(tokio::time::Instant::now)), if wake.is_some() => {
                looked = Instant::now();
                for (i, h) in histories.iter().enumerate() {
                    if check_abort(ctx, i, h) {
                        break;
                    }
                }
            }
        }
    };
    if let Err(e) = exec_result {
        // A panic inside the method task: the panic hook already replayed
        // the undo records; record it as a failed step.
        ctx.stop_with(Stop::StepFailed(
            exit::INTERNAL,
            format!("internal error in the method: {e}"),
        ));
    }
    // No new samples; the ones in flight are waited for (or cut when the run
    // is stopping), each bounded by its probe's timeout.
    let _ = stop_tx.send(true);
    let mut taken = Vec::new();
    for s in samplers {
        taken.push(s.await.unwrap_or_default());
    }
    while rx.try_recv().is_ok() {}
    ctx.emit.emit(Event::PhaseEnded {
        phase: Phase::Method,
    });

    let end_ms = ctx.emit.elapsed_ms();
    let mut ok = true;
    let escalation = ctx.exp.method.iter().find_map(|s| s.escalate.clone());
    let specs = &ctx.exp.steady_state.probes;
    // One probe at a time, in fixed memory (a 4-hour method at 50 ms is
    // 288,000 samples a probe). Only limits relative to the control group
    // read every latency, of this probe and of the control's.
    let latencies_of = |i: usize| -> Vec<f64> {
        let b = ctx.builder.lock().unwrap();
        b.phase_samples(i, SamplePhase::During)
            .into_iter()
            .map(|s| s.1)
            .collect()
    };
    let control = |of: &str| -> Vec<f64> {
        specs
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                p.group == crate::experiment::model::ProbeGroup::Control
                    && (of == "control" || p.name == of)
            })
            .flat_map(|(i, _)| latencies_of(i))
            .collect()
    };
    for (i, spec) in specs.iter().enumerate() {
        let scan = ctx
            .builder
            .lock()
            .unwrap()
            .scan_phase(i, SamplePhase::During, end_ms);
        let longest = scan.longest_outage_ms;
        let max_ms = spec
            .during
            .as_ref()
            .and_then(|d| d.max_outage)
            .map(|d| d.std().as_secs_f64() * 1000.0);
        if scan.latency.count() > 0 {
            ctx.builder
                .lock()
                .unwrap()
                .set_outage(i, SamplePhase::During, longest, max_ms);
        }
        let Some(req) = &spec.during else { continue };
        // A control probe's requirement says whether the control degraded;
        // it does not decide the verdict on its own.
        let counts = spec.group.is_experiment();
        if let Some(esc) = &escalation {
            // Judged per level: the method fails when a level up to
            // `must_hold` did not hold for this probe.
            let (met, text) = escalation_requirement(ctx, i, esc);
            if counts {
                ok &= met != Some(false);
            }
            ctx.builder
                .lock()
                .unwrap()
                .set_requirement(i, SamplePhase::During, text, met);
            continue;
        }
        match judge_during(
            req,
            taken[i],
            longest,
            &scan.latency,
            &|| latencies_of(i),
            &control,
        ) {
            During::Untested(text, why) => {
                ctx.builder
                    .lock()
                    .unwrap()
                    .set_requirement(i, SamplePhase::During, text, None);
                if counts {
                    for w in why {
                        ctx.inconclusive(InconclusiveReason::too_few_samples(&spec.name, w));
                    }
                }
            }
            During::Judged(met, text) => {
                if counts {
                    ok &= met;
                }
                ctx.builder.lock().unwrap().set_requirement(
                    i,
                    SamplePhase::During,
                    text,
                    Some(met),
                );
            }
        }
    }
    ok &= judge_fault_expectations(ctx);
    ok
}

/// A probe's `during` requirement over an escalation: met unless it failed
/// at a level up to `must_hold`; in words, where it failed first.
fn escalation_requirement(
    ctx: &Arc<Ctx>,
    probe: usize,
    esc: &crate::experiment::escalate::Escalate,
) -> (Option<bool>, String) {
    let b = ctx.builder.lock().unwrap();
    let Some(rec) = &b.rec.escalation else {
        return (
            None,
            "judged per escalation level (no level was reached)".into(),
        );
    };
    let must = esc.must_hold_index();
    let name = &ctx.exp.steady_state.probes[probe].name;
    let mut judged = 0;
    for l in &rec.levels {
        let Some(lp) = l.probes.iter().find(|p| &p.name == name) else {
            continue;
        };
        match lp.met {
            Some(false) => {
                let text = format!(
                    "at level {} ({} {}): {}",
                    l.index + 1,
                    rec.param,
                    l.value,
                    lp.requirement
                );
                return (Some(l.index > must), text);
            }
            Some(true) => judged += 1,
            None => {}
        }
    }
    if judged == 0 {
        return (
            None,
            "judged per escalation level (no level was judged)".into(),
        );
    }
    (
        Some(true),
        format!("held at each of {judged} escalation level(s) judged"),
    )
}

/// `process_kill`'s `expect_restart_within`, from the restarts the fault
/// measured (its observations): returns false when a restart was too slow
/// or missing; a kill watched for less than the limit makes the run
/// INCONCLUSIVE.
fn judge_fault_expectations(ctx: &Arc<Ctx>) -> bool {
    let mut ok = true;
    for (step, s) in ctx.exp.method.iter().enumerate() {
        let Some(crate::experiment::model::Fault::ProcessKill(k)) = &s.fault else {
            continue;
        };
        let Some(within) = k.expect_restart_within else {
            continue;
        };
        let label = s.label(step);
        let obs = {
            let b = ctx.builder.lock().unwrap();
            b.rec
                .faults
                .iter()
                .rev()
                .find(|f| f.step == step)
                .map(|f| f.observations.get("expect_restart").cloned())
        };
        // Never injected: the step failed, which is judged on its own.
        let Some(Some(check)) = obs else { continue };
        let e = restart_expectation(&check, within);
        match e.met {
            Some(false) => ok = false,
            None => ctx.inconclusive(InconclusiveReason::restart_not_watched(
                step,
                &label,
                e.detail.clone(),
            )),
            Some(true) => {}
        }
        ctx.builder.lock().unwrap().set_fault_expectation(step, e);
    }
    ok
}

/// Reads a `process_kill`'s `expect_restart` observation into a judgement.
fn restart_expectation(
    check: &serde_json::Value,
    within: crate::units::Duration,
) -> crate::report::record::FaultExpectation {
    use crate::sys::text::escape_text;
    let list = |k: &str| check[k].as_array().cloned().unwrap_or_default();
    let who = |v: &serde_json::Value| {
        format!(
            "`{}` (pid {})",
            escape_text(v["name"].as_str().unwrap_or("?")),
            v["pid"]
        )
    };
    let ms = |v: &serde_json::Value| super::human_ms(v.as_f64().unwrap_or(0.0));
    let mut bad: Vec<String> = list("slow")
        .iter()
        .map(|v| {
            format!(
                "{} restarted after {} (new pid {})",
                who(v),
                ms(&v["restart_ms"]),
                v["new_pid"]
            )
        })
        .collect();
    bad.extend(list("missing").iter().map(|v| {
        format!(
            "{} did not restart (watched for {} after the kill)",
            who(v),
            ms(&v["watched_ms"])
        )
    }));
    let unjudged: Vec<String> = list("unjudged")
        .iter()
        .map(|v| {
            format!(
                "{} had not restarted when the step ended, {} after the kill",
                who(v),
                ms(&v["watched_ms"])
            )
        })
        .collect();
    let kills = check["kills"].as_u64().unwrap_or(0);
    let restarts = check["restarts"].as_u64().unwrap_or(0);
    let requirement = format!("every killed process restarts within {within}");
    if !bad.is_empty() {
        return crate::report::record::FaultExpectation {
            requirement,
            met: Some(false),
            detail: format!("{}, expected within {within}", bad.join("; ")),
        };
    }
    if !unjudged.is_empty() {
        return crate::report::record::FaultExpectation {
            requirement,
            met: None,
            detail: format!(
                "{}: cannot tell whether it restarts within {within}; make the step's duration longer",
                unjudged.join("; ")
            ),
        };
    }
    crate::report::record::FaultExpectation {
        requirement,
        met: Some(true),
        detail: format!("{restarts} of {kills} killed restarted within {within}"),
    }
}

/// Evaluates probe `i`'s abort conditions; on the first that trips, records
/// it and stops the run. Returns whether one tripped.
fn check_abort(ctx: &Arc<Ctx>, i: usize, h: &abort::History) -> bool {
    if ctx.cancelled() {
        return false;
    }
    let name = &ctx.probes[i].name;
    let now = Instant::now();
    for cond in ctx.exp.abort.iter().filter(|c| &c.probe == name) {
        if let Some(reason) = abort::evaluate(cond, h, now) {
            ctx.emit.emit(Event::AbortTriggered {
                probe: name.clone(),
                condition: cond.describe(),
                reason,
            });
            ctx.stop_with(Stop::Abort);
            return true;
        }
    }
    false
}

/// A `during` requirement's outcome.
#[derive(Debug, PartialEq)]
pub(super) enum During {
    /// Met or not, with the requirement in words.
    Judged(bool, String),
    /// Nothing failed, but some part could not be judged: the requirement
    /// in words and why each part was not tested.
    Untested(String, Vec<String>),
}

/// Judges a `during` requirement: `min_success` on the samples taken,
/// `max_outage` on the longest outage (ms), the latency percentiles on the
/// latencies of every finished sample. A part that fails wins over a part
/// that could not be judged.
/// [`during_verdict`], and the limits relative to the control group
/// (`p50_within`, `p95_within`) on `control(of)`'s latencies.
pub(super) fn judge_during(
    req: &crate::experiment::model::DuringRequirement,
    t: Taken,
    longest_outage_ms: f64,
    latency: &LatencyAcc,
    all_latencies: &dyn Fn() -> Vec<f64>,
    control: &dyn Fn(&str) -> Vec<f64>,
) -> During {
    let base = during_verdict(req, t, longest_outage_ms, latency);
    let rel = req.relative_limits();
    if rel.is_empty() || t.taken == 0 {
        return base;
    }
    let latencies = all_latencies();
    let latencies = latencies.as_slice();
    let (mut met, text, mut untested) = match base {
        During::Judged(m, text) => (m, text, vec![]),
        During::Untested(text, why) => (true, text, why),
    };
    let mut texts: Vec<String> = if text.is_empty() { vec![] } else { vec![text] };
    for (pct, r) in rel {
        let ctl = control(&r.of);
        let (m, t) = crate::report::stats::judge_relative(pct, r.percent.0, latencies, &ctl);
        texts.push(t);
        match m {
            Some(false) => met = false,
            Some(true) => {}
            None => untested.push(format!(
                "`p{pct}_within` needs at least {} finished samples of this probe and of the control, got {} and {}, so it was not tested; make the method longer or the interval shorter",
                crate::experiment::model::min_samples_for_percentile(pct),
                latencies.len(),
                ctl.len()
            )),
        }
    }
    let text = texts.join("; ");
    if !met || untested.is_empty() {
        During::Judged(met, text)
    } else {
        During::Untested(text, untested)
    }
}

fn during_verdict(
    req: &crate::experiment::model::DuringRequirement,
    t: Taken,
    longest_outage_ms: f64,
    latency: &LatencyAcc,
) -> During {
    use crate::experiment::model::min_samples_for_percentile;
    let mut texts = Vec::new();
    let mut untested = Vec::new();
    let mut met = true;
    if t.taken == 0 {
        let cut = match t.cut {
            0 => String::new(),
            n => format!(" ({n} cut unfinished when the run stopped)"),
        };
        let mut text = Vec::new();
        if let Some(m) = req.min_success {
            text.push(format!("at least {m} of samples succeed (got 0/0)"));
        }
        if let Some(m) = req.max_outage {
            text.push(format!("outage at most {m}"));
        }
        for (p, d) in req.latency_limits() {
            text.push(format!("p{p} latency at most {d}"));
        }
        return During::Untested(
            text.join("; "),
            vec![format!(
                "no sample finished during the method{cut}, so its `during` requirement was not tested"
            )],
        );
    }
    if let Some(min_success) = req.min_success {
        let ok = t.successes as f64 >= min_success.fraction() * t.taken as f64 - 1e-9;
        met &= ok;
        texts.push(format!(
            "at least {min_success} of samples succeed (got {}/{})",
            t.successes, t.taken
        ));
    }
    if let Some(max) = req.max_outage {
        let max_ms = max.std().as_secs_f64() * 1000.0;
        met &= longest_outage_ms <= max_ms + 1e-9;
        texts.push(format!(
            "longest outage {} (max {max})",
            crate::report::summary::fmt_ms(longest_outage_ms)
        ));
    }
    for (p, limit) in req.latency_limits() {
        let need = min_samples_for_percentile(p);
        let n = latency.count() as u32;
        if n < need {
            texts.push(format!(
                "p{p} latency at most {limit} (not judged: {n} samples)"
            ));
            untested.push(format!(
                "`p{p}_below` needs at least {need} finished samples during the method, got {n}, so it was not tested; make the method longer or the interval shorter"
            ));
            continue;
        }
        let v = latency.quantile(p).unwrap_or(0.0);
        let limit_ms = limit.std().as_secs_f64() * 1000.0;
        met &= v <= limit_ms + 1e-9;
        texts.push(format!(
            "p{p} latency {} (max {limit}, {n} samples)",
            crate::report::summary::fmt_ms(v)
        ));
    }
    let text = texts.join("; ");
    if !met || untested.is_empty() {
        During::Judged(met, text)
    } else {
        During::Untested(text, untested)
    }
}

pub(super) async fn execute_steps(ctx: Arc<Ctx>, mut faults: Vec<Option<Box<dyn FaultImpl>>>) {
    let mut background: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let (method_over_tx, method_over_rx) = watch::channel(false);
    for (i, step) in ctx.exp.method.iter().enumerate() {
        if ctx.cancelled() {
            break;
        }
        let label = step.label(i);
        ctx.emit.emit(Event::StepStarted {
            index: i,
            label: label.clone(),
            kind: step_kind(step).to_string(),
        });
        if let Some(d) = step.pause {
            let completed = sleep_or_cancel(&ctx, d.std()).await;
            ctx.emit.emit(Event::StepEnded {
                index: i,
                status: if completed {
                    StepStatus::Completed
                } else {
                    StepStatus::Interrupted
                },
                detail: String::new(),
            });
        } else if step.command.is_some() || step.http.is_some() {
            if step.background {
                let ctx2 = ctx.clone();
                let step = step.clone();
                let label = label.clone();
                background.push(tokio::spawn(async move {
                    run_action_step(&ctx2, i, &step, &label).await;
                }));
            } else if !run_action_step(&ctx, i, step, &label).await {
                break;
            }
        } else if let (Some(imp), Some(_)) = (
            faults[i].take_if(|_| step.escalate.is_some()),
            &step.escalate,
        ) {
            super::escalation::run_escalation(&ctx, i, &label, imp, method_over_rx.clone()).await;
        } else if let Some(imp) = faults[i].take() {
            let duration = step.duration.map(|d| d.std()).unwrap_or_default();
            if step.background {
                let ctx2 = ctx.clone();
                let over = method_over_rx.clone();
                let label2 = label.clone();
                background.push(tokio::spawn(async move {
                    run_fault(&ctx2, i, &label2, imp, duration, over).await;
                }));
            } else {
                run_fault(&ctx, i, &label, imp, duration, method_over_rx.clone()).await;
            }
        }
    }
    let _ = method_over_tx.send(true);
    for b in background {
        let _ = b.await;
    }
}

/// Runs a command or HTTP step; returns false when the method must stop.
pub(super) async fn run_action_step(ctx: &Arc<Ctx>, i: usize, step: &Step, label: &str) -> bool {
    let (ok, ignore) = match (&step.command, &step.http) {
        (Some(a), _) => (run_action(ctx, a, label, false).await, a.ignore_failure),
        (None, Some(h)) => (run_http_action(ctx, h, label).await, h.ignore_failure),
        (None, None) => (true, true),
    };
    let status = if ok {
        StepStatus::Completed
    } else if ctx.cancelled() {
        StepStatus::Interrupted
    } else {
        StepStatus::Failed
    };
    ctx.emit.emit(Event::StepEnded {
        index: i,
        status,
        detail: if status == StepStatus::Failed && ignore {
            "failed (ignored: ignore_failure)".into()
        } else {
            String::new()
        },
    });
    if status == StepStatus::Failed && !ignore {
        ctx.stop_with(Stop::StepFailed(
            exit::DEVIATED,
            format!("step {} `{label}` failed", i + 1),
        ));
        return false;
    }
    true
}

/// Sends one HTTP request (an action step).
pub(super) async fn run_http_action(
    ctx: &Arc<Ctx>,
    h: &crate::experiment::model::HttpAction,
    label: &str,
) -> bool {
    let t0 = Instant::now();
    let result: Result<(u16, serde_json::Value), String> = async {
        let (client, _) = crate::probe::http::build_client(|| {
            let mut builder = reqwest::Client::builder().timeout(h.timeout.std());
            if let Some(t) = h.split_timeout {
                builder = builder
                    .connect_timeout(t.connect.std())
                    .read_timeout(t.read.std());
            }
            builder.no_proxy()
        })
        .map_err(|e| e.to_string())?;
        let method = reqwest::Method::from_bytes(h.method.to_ascii_uppercase().as_bytes())
            .map_err(|e| e.to_string())?;
        let mut req = client
            .request(method, &h.url)
            .header(crate::probe::RUN_ID_HEADER, ctx.fctx.run_id.as_str());
        for (k, v) in &h.headers {
            req = req.header(k, v);
        }
        if let Some(b) = &h.body {
            req = req.body(b.clone());
        }
        let mut rx = ctx.cancel_rx.clone();
        tokio::select! {
            r = async {
                let r = req.send().await.map_err(|e| e.to_string())?;
                Ok((r.status().as_u16(), http_output(r).await))
            } => r,
            _ = rx.wait_for(|c| *c) => Err("interrupted".into()),
        }
    }
    .await;
    let (ok, code, detail, output) = match result {
        Ok((code, output)) => {
            let ok = match &h.expect_status {
                Some(set) => set.contains(code),
                None => (200..300).contains(&code),
            };
            (ok, Some(code as i32), format!("HTTP {code}"), Some(output))
        }
        Err(e) => (false, None, e, None),
    };
    ctx.emit.emit(Event::ActionFinished {
        label: label.to_string(),
        command: vec![h.method.clone(), h.url.clone()],
        rollback: false,
        exit_code: code,
        ok,
        duration_ms: t0.elapsed().as_secs_f64() * 1000.0,
        detail,
        output,
    });
    ok
}

/// `{status, headers, body}` of a response, as Chaos Toolkit records it: the
/// body is parsed JSON when the response says `application/json`. At most
/// `OUTPUT_LIMIT` bytes of the body are read.
async fn http_output(mut r: reqwest::Response) -> serde_json::Value {
    let status = r.status().as_u16();
    let headers: serde_json::Map<String, serde_json::Value> = r
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned().into(),
            )
        })
        .collect();
    let json = r
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/json");
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = r.chunk().await {
        let room = crate::sys::exec::OUTPUT_LIMIT.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let body = match json {
        true => serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        false => serde_json::Value::String(text),
    };
    serde_json::json!({"status": status, "headers": headers, "body": body})
}

/// What the fault did since it was last asked (crash-loop rounds, restarts).
fn emit_activity(ctx: &Ctx, index: usize, imp: &mut Box<dyn FaultImpl>, t0: Instant) {
    let at_s = t0.elapsed().as_secs_f64();
    for message in imp.take_activity() {
        ctx.emit.emit(Event::FaultActivity {
            step: index,
            at_s,
            message,
        });
    }
}

/// Inject -> verify -> hold (ticking) -> roll back, for one fault.
pub(super) async fn run_fault(
    ctx: &Arc<Ctx>,
    index: usize,
    label: &str,
    mut imp: Box<dyn FaultImpl>,
    duration: Duration,
    mut method_over: watch::Receiver<bool>,
) {
    let fctx = fault_ctx(ctx);
    let t0 = Instant::now();
    let mut failed = inject_verify(ctx, index, label, &mut imp, &fctx).err();
    let mut status = StepStatus::Completed;
    if failed.is_none() {
        let mut holder = Holder::new(ctx, index, imp.as_ref(), t0);
        let end = tokio::time::Instant::now() + duration.saturating_sub(t0.elapsed());
        match hold(
            ctx,
            index,
            label,
            &mut imp,
            &fctx,
            end,
            &mut holder,
            &mut method_over,
        )
        .await
        {
            HoldEnd::Elapsed | HoldEnd::MethodOver => {}
            HoldEnd::Interrupted => status = StepStatus::Interrupted,
            HoldEnd::Failed(code, msg) => failed = Some((code, msg)),
        }
        finish_health(ctx, index, label, &mut imp, &fctx, holder);
    }
    roll_back_fault(ctx, index, label, &mut imp, &fctx, t0);
    end_fault_step(ctx, index, status, failed);
}

/// The fault context with the setup processes known now.
pub(super) fn fault_ctx(ctx: &Ctx) -> crate::fault::FaultContext {
    let mut fctx = ctx.fctx.clone();
    fctx.setup_pids = ctx.setup_pids.lock().unwrap().clone();
    fctx
}

/// A fault's operations in words, as the journal lists them.
pub(super) fn operation_words(ops: Vec<crate::fault::PlannedOp>) -> Vec<String> {
    ops.into_iter()
        .map(|op| match op.command {
            Some(c) => c.join(" "),
            None => op.action,
        })
        .collect()
}

/// Injects a fault and verifies it, emitting the events; `Err` is the
/// exit code and message that stop the run.
pub(super) fn inject_verify(
    ctx: &Arc<Ctx>,
    index: usize,
    label: &str,
    imp: &mut Box<dyn FaultImpl>,
    fctx: &crate::fault::FaultContext,
) -> Result<(), (i32, String)> {
    let kind = imp.kind().to_string();
    let target = imp.target();
    let operations = operation_words(imp.plan(fctx));
    let t0 = Instant::now();
    let res = tokio::task::block_in_place(|| {
        let mut log = JournalLog {
            journal: &ctx.journal,
            fault: index,
            label: label.to_string(),
            kind: kind.clone(),
        };
        imp.inject(fctx, &mut log)
    });
    let inject_ms = t0.elapsed().as_secs_f64() * 1000.0;
    if let Err(e) = res {
        ctx.emit.emit(Event::FaultInjectFailed {
            step: index,
            kind: kind.clone(),
            target: target.clone(),
            error: e.message.clone(),
        });
        return Err((
            e.code,
            format!(
                "step {} `{label}`: injection failed: {}",
                index + 1,
                e.message
            ),
        ));
    }
    ctx.emit.emit(Event::FaultInjected {
        step: index,
        kind: kind.clone(),
        target: target.clone(),
        inject_ms,
        operations,
    });
    maybe_test_panic("injected");
    verify_fault(ctx, index, label, imp, fctx)
}

/// Reads the host back after an injection or a change of level.
pub(super) fn verify_fault(
    ctx: &Arc<Ctx>,
    index: usize,
    label: &str,
    imp: &mut Box<dyn FaultImpl>,
    fctx: &crate::fault::FaultContext,
) -> Result<(), (i32, String)> {
    let t1 = Instant::now();
    match tokio::task::block_in_place(|| imp.verify(fctx)) {
        Ok(evidence) => {
            ctx.emit.emit(Event::FaultVerified {
                step: index,
                verify_ms: t1.elapsed().as_secs_f64() * 1000.0,
                evidence,
            });
            Ok(())
        }
        Err(e) => {
            ctx.emit.emit(Event::FaultVerifyFailed {
                step: index,
                error: e.message.clone(),
            });
            Err((
                exit::DEVIATED,
                format!(
                    "step {} `{label}`: the fault did not take effect: {}",
                    index + 1,
                    e.message
                ),
            ))
        }
    }
}

/// What watches an active fault: its health over time and its ticks.
pub(super) struct Holder {
    watch: HealthTracker,
    watched: bool,
    last_point: f64,
    t0: Instant,
    tick: Option<Duration>,
    next_tick: Option<tokio::time::Instant>,
    health_every: Duration,
}

impl Holder {
    pub(super) fn new(ctx: &Ctx, index: usize, imp: &dyn FaultImpl, t0: Instant) -> Holder {
        let step = &ctx.exp.method[index];
        let tick = imp.tick_every();
        Holder {
            watch: HealthTracker::new(
                imp.kind(),
                t0.elapsed().as_secs_f64(),
                step.min_effect
                    .map(|p| p.fraction())
                    .unwrap_or(health::DEFAULT_MIN_EFFECT),
                step.max_missing
                    .map(|p| p.fraction())
                    .unwrap_or(health::DEFAULT_MAX_MISSING),
            ),
            watched: false,
            last_point: f64::NEG_INFINITY,
            t0,
            tick,
            next_tick: tick.map(|t| tokio::time::Instant::now() + t),
            health_every: ctx
                .exp
                .steady_state
                .interval
                .std()
                .min(health::MAX_HEALTH_INTERVAL),
        }
    }

    fn look(
        &mut self,
        ctx: &Ctx,
        index: usize,
        imp: &mut Box<dyn FaultImpl>,
        fctx: &crate::fault::FaultContext,
        always: bool,
    ) {
        if let Some(h) = tokio::task::block_in_place(|| imp.health(fctx)) {
            self.watched = true;
            let at = self.t0.elapsed().as_secs_f64();
            let change = self.watch.observe(at, &h);
            // One point a second in the journal, and every change.
            if always || change.is_some() || at - self.last_point >= 1.0 {
                self.last_point = at;
                ctx.emit.emit(Event::FaultHealth {
                    step: index,
                    point: HealthPoint::new(at, &h, change.as_ref()),
                });
            }
        }
    }
}

/// How holding a fault ended.
pub(super) enum HoldEnd {
    Elapsed,
    Interrupted,
    MethodOver,
    Failed(i32, String),
}

/// Holds an active fault until `end`, ticking when the fault asks to and
/// checking its health at every probe interval (or faster).
#[allow(clippy::too_many_arguments)]
pub(super) async fn hold(
    ctx: &Arc<Ctx>,
    index: usize,
    label: &str,
    imp: &mut Box<dyn FaultImpl>,
    fctx: &crate::fault::FaultContext,
    end: tokio::time::Instant,
    h: &mut Holder,
    method_over: &mut watch::Receiver<bool>,
) -> HoldEnd {
    let kind = imp.kind().to_string();
    let mut next_health = tokio::time::Instant::now() + h.health_every;
    let mut rx = ctx.cancel_rx.clone();
    if *rx.borrow() {
        return HoldEnd::Interrupted;
    }
    loop {
        let wake = h.next_tick.unwrap_or(end).min(next_health).min(end);
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = rx.wait_for(|c| *c) => return HoldEnd::Interrupted,
            _ = method_over.wait_for(|c| *c) => return HoldEnd::MethodOver,
        }
        let now = tokio::time::Instant::now();
        if now >= end {
            return HoldEnd::Elapsed;
        }
        if now >= next_health {
            next_health = now + h.health_every;
            h.look(ctx, index, imp, fctx, false);
        }
        if let (Some(t), Some(due)) = (h.tick, h.next_tick) {
            if now < due {
                continue;
            }
            h.next_tick = Some(now + t);
            let r = tokio::task::block_in_place(|| {
                let mut log = JournalLog {
                    journal: &ctx.journal,
                    fault: index,
                    label: label.to_string(),
                    kind: kind.clone(),
                };
                imp.tick(fctx, &mut log)
            });
            emit_activity(ctx, index, imp, h.t0);
            if let Err(e) = r {
                return HoldEnd::Failed(
                    e.code,
                    format!("step {} `{label}`: {}", index + 1, e.message),
                );
            }
        }
    }
}

/// A last look just before rollback, and what the fault delivered over its
/// window (missing or weak makes the run INCONCLUSIVE).
pub(super) fn finish_health(
    ctx: &Arc<Ctx>,
    index: usize,
    label: &str,
    imp: &mut Box<dyn FaultImpl>,
    fctx: &crate::fault::FaultContext,
    mut h: Holder,
) {
    h.look(ctx, index, imp, fctx, true);
    if !h.watched {
        return;
    }
    let effect = h.watch.finish(h.t0.elapsed().as_secs_f64());
    let problem = effect.problem.clone();
    ctx.emit.emit(Event::FaultEffect {
        step: index,
        effect,
    });
    match problem {
        Some(health::Problem::Missing(m)) => {
            ctx.inconclusive(InconclusiveReason::fault_missing(index, label, m))
        }
        Some(health::Problem::UnderDelivered(m)) => {
            ctx.inconclusive(InconclusiveReason::fault_under_delivered(index, label, m))
        }
        None => {}
    }
}

/// Rolls this fault back now: its recorded undo operations, then a check
/// that the host is back. A failure goes to the run's rollback errors.
pub(super) fn roll_back_fault(
    ctx: &Arc<Ctx>,
    index: usize,
    label: &str,
    imp: &mut Box<dyn FaultImpl>,
    fctx: &crate::fault::FaultContext,
    injected: Instant,
) -> bool {
    let t2 = Instant::now();
    tokio::task::block_in_place(|| imp.before_rollback(fctx));
    emit_activity(ctx, index, imp, injected);
    let failures = rollback_pending(ctx, Some(index), "runner");
    let verify_back = tokio::task::block_in_place(|| imp.verify_rollback(fctx));
    let error = if !failures.is_empty() {
        Some(format!("undo failed: {}", failures.join("; ")))
    } else {
        verify_back
            .err()
            .map(|e| format!("host not back to its previous state: {}", e.message))
    };
    ctx.emit.emit(Event::FaultRolledBack {
        step: index,
        rollback_ms: t2.elapsed().as_secs_f64() * 1000.0,
        ok: error.is_none(),
        error: error.clone(),
        observations: imp.observations(),
    });
    if let Some(e) = &error {
        // A failed undo or a host not back to normal decides the verdict.
        ctx.rollback_errors
            .lock()
            .unwrap()
            .push(format!("step {} `{label}`: {e}", index + 1));
    }
    error.is_none()
}

/// Ends a fault step: a failure stops the run.
pub(super) fn end_fault_step(
    ctx: &Arc<Ctx>,
    index: usize,
    mut status: StepStatus,
    failed: Option<(i32, String)>,
) {
    if let Some((code, msg)) = &failed {
        status = StepStatus::Failed;
        ctx.stop_with(Stop::StepFailed(*code, msg.clone()));
    }
    let error = ctx
        .builder
        .lock()
        .unwrap()
        .rec
        .faults
        .iter()
        .rev()
        .find(|f| f.step == index)
        .and_then(|f| f.rollback_error.clone());
    ctx.emit.emit(Event::StepEnded {
        index,
        status,
        detail: failed.map(|f| f.1).or(error).unwrap_or_default(),
    });
}

/// Runs a command action (a method step or a user rollback).
pub(super) async fn run_action(
    ctx: &Arc<Ctx>,
    a: &CommandAction,
    label: &str,
    rollback: bool,
) -> bool {
    // Rollbacks run even when the run was cancelled (the sender is kept
    // alive so the flag never turns).
    let never = watch::channel(false);
    let cancel = if rollback {
        never.1.clone()
    } else {
        ctx.cancel_rx.clone()
    };
    let res =
        crate::sys::exec::run(&a.run, a.cwd.as_deref(), &a.env, a.timeout.std(), cancel).await;
    let mut output = None;
    let (ok, exit_code, ms, detail) = match res {
        Ok(r) => {
            // chaoslib's process result; a signal is a negative status there,
            // here the status is null.
            output = Some(serde_json::json!({
                "status": r.exit_code,
                "stdout": r.stdout,
                "stderr": r.stderr,
            }));
            let ok = !r.timed_out && !r.cancelled && r.exit_code == Some(a.expect_exit);
            let detail = if r.timed_out {
                format!("timed out after {}", a.timeout)
            } else if r.cancelled {
                "interrupted".into()
            } else if !ok {
                format!(
                    "exit {} (expected {}): {}",
                    r.exit_code
                        .map(|c| c.to_string())
                        .unwrap_or("by signal".into()),
                    a.expect_exit,
                    crate::sys::exec::tail(&r.stderr, 3)
                )
            } else {
                String::new()
            };
            (ok, r.exit_code, r.elapsed.as_secs_f64() * 1000.0, detail)
        }
        Err(e) => (false, None, 0.0, e),
    };
    ctx.emit.emit(Event::ActionFinished {
        label: a.name.clone().unwrap_or_else(|| label.to_string()),
        command: a.run.clone(),
        rollback,
        exit_code,
        ok,
        duration_ms: ms,
        detail,
        output,
    });
    ok
}

#[cfg(test)]
mod tests {

    fn acc(v: &[f64]) -> LatencyAcc {
        LatencyAcc::from_values(v)
    }
    use super::*;
    use crate::experiment::model::DuringRequirement;
    use crate::units::Percent;

    fn taken(taken: u32, successes: u32, cut: u32) -> Taken {
        Taken {
            taken,
            successes,
            cut,
        }
    }

    fn req(min: f64) -> DuringRequirement {
        DuringRequirement {
            min_success: Some(Percent(min)),
            max_outage: None,
            p50_below: None,
            p95_below: None,
            p99_below: None,
            p50_within: None,
            p95_within: None,
        }
    }

    fn v(r: &DuringRequirement, t: Taken) -> During {
        during_verdict(r, t, 0.0, &acc(&vec![1.0; t.taken as usize]))
    }

    /// `0/0` is never a failure: untested, whether or not samples were cut.
    #[test]
    fn no_finished_sample_is_untested_not_failed() {
        for t in [taken(0, 0, 0), taken(0, 0, 3)] {
            match v(&req(90.0), t) {
                During::Untested(_, why) => {
                    assert!(why[0].contains("no sample finished"), "{why:?}")
                }
                other => panic!("{other:?}"),
            }
        }
        match v(&req(90.0), taken(0, 0, 2)) {
            During::Untested(_, why) => assert!(why[0].contains("2 cut unfinished"), "{why:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cut_samples_are_not_failures() {
        assert_eq!(
            v(&req(100.0), taken(4, 4, 5)),
            During::Judged(true, "at least 100% of samples succeed (got 4/4)".into())
        );
        assert!(matches!(
            v(&req(90.0), taken(10, 8, 0)),
            During::Judged(false, _)
        ));
    }

    #[test]
    fn outage_and_percentiles_are_judged() {
        let mut r = req(0.0);
        r.min_success = None;
        r.max_outage = Some(crate::units::Duration::from_secs(5));
        let lat = vec![10.0; 30];
        match during_verdict(&r, taken(30, 20, 0), 1200.0, &acc(&lat)) {
            During::Judged(true, t) => assert_eq!(t, "longest outage 1.20s (max 5s)"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            during_verdict(&r, taken(30, 20, 0), 5001.0, &acc(&lat)),
            During::Judged(false, _)
        ));
        r.max_outage = None;
        r.p95_below = Some(crate::units::Duration::from_millis(100));
        let mut slow = vec![10.0; 18];
        slow.extend([150.0, 150.0]);
        // Nearest rank of 20: the 19th value.
        assert!(matches!(
            during_verdict(&r, taken(20, 20, 0), 0.0, &acc(&slow)),
            During::Judged(false, _)
        ));
        // One slow sample in 20 is the 5% above p95.
        let mut fast = vec![10.0; 19];
        fast.push(150.0);
        assert!(matches!(
            during_verdict(&r, taken(20, 20, 0), 0.0, &acc(&fast)),
            During::Judged(true, _)
        ));
        // Too few samples for p95: not judged, whatever the latency.
        match during_verdict(&r, taken(19, 19, 0), 0.0, &acc(&slow[..19])) {
            During::Untested(_, why) => assert!(why[0].contains("at least 20"), "{why:?}"),
            other => panic!("{other:?}"),
        }
        // A part that fails wins over one that could not be judged.
        r.max_outage = Some(crate::units::Duration::from_secs(1));
        assert!(matches!(
            during_verdict(&r, taken(19, 19, 0), 2000.0, &acc(&slow[..19])),
            During::Judged(false, _)
        ));
    }
}
