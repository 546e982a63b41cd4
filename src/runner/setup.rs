//! Setup: start the experiment's own processes (recorded as undo so a dead
//! runner's watchdog stops them too), wait until they are ready, then check
//! the faults' targets again now that they exist.

use super::*;
use crate::experiment::model::{ReadyCheck, SetupProcess};
use crate::report::record::InconclusiveReason;

pub(super) async fn setup(ctx: &Arc<Ctx>) -> Result<(), PreflightError> {
    let pctx = ProbeContext {
        run_id: ctx.fctx.run_id.clone(),
    };
    let mut setup_pids = BTreeMap::new();
    for s in &ctx.exp.setup {
        if ctx.cancelled() {
            break;
        }
        if let Some(r) = &s.ready {
            refuse_if_taken(s, r, &pctx).await?;
        }
        let mut cmd = crate::sys::exec::command(&s.start, s.cwd.as_deref(), &s.env);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(false);
        let mut child = cmd.spawn().map_err(|e| PreflightError {
            code: exit::PRECONDITION,
            message: format!(
                "setup `{}`: cannot start `{}`: {e}",
                s.name,
                s.start.join(" ")
            ),
        })?;
        let pid = child.id().unwrap_or(0) as i32;
        let start_time = crate::sys::proc::start_time(pid).unwrap_or(0);
        let grace_ms = s.stop_timeout.std().as_millis() as u64;
        {
            let mut j = ctx.journal.lock().unwrap();
            let _ = j.record(
                SETUP,
                &s.name,
                "setup",
                &format!("pid {pid} ({})", s.start.join(" ")),
                UndoOp::StopProcessGroup {
                    pgid: pid,
                    start_time,
                    grace_ms,
                    signal: s.stop_signal.map(|sig| sig.number()),
                },
            );
        }
        ctx.emit.emit(Event::SetupStarted {
            name: s.name.clone(),
            pid,
            command: s.start.clone(),
        });
        let stderr = child.stderr.take();
        // Keep the last lines of its stderr for error messages.
        let err_tail = Arc::new(Mutex::new(String::new()));
        let reader = {
            let tail = err_tail.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                if let Some(e) = stderr {
                    let mut lines = tokio::io::BufReader::new(e).lines();
                    while let Ok(Some(l)) = lines.next_line().await {
                        let mut t = tail.lock().unwrap();
                        t.push_str(&l);
                        t.push('\n');
                        if t.len() > 4096 {
                            let cut = t.len() - 2048;
                            t.drain(..cut);
                        }
                    }
                }
            })
        };
        let t0 = Instant::now();
        let ready = match &s.ready {
            Some(r) => {
                let probe =
                    ProbeRunner::for_ready(&s.name, r, &pctx).map_err(|e| PreflightError {
                        code: exit::PRECONDITION,
                        message: format!("setup `{}`: ready check cannot run: {e}", s.name),
                    })?;
                let deadline = t0 + r.timeout.std();
                let mut last;
                loop {
                    if let Ok(Some(st)) = child.try_wait() {
                        break Err(format!("exited ({st}) before it was ready"));
                    }
                    let sample = probe.sample().await;
                    if sample.is_success() {
                        break Ok(());
                    }
                    last = sample.detail;
                    if Instant::now() >= deadline {
                        break Err(format!(
                            "not ready within {} (last check: {last})",
                            r.timeout
                        ));
                    }
                    let mut rx = ctx.cancel_rx.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = rx.wait_for(|c| *c) => break Err("interrupted".into()),
                    }
                }
            }
            None => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                match child.try_wait() {
                    Ok(Some(st)) => Err(format!("exited ({st}) right after starting")),
                    _ => Ok(()),
                }
            }
        };
        // Reap the child, and report it when it exits before teardown.
        {
            let ctx = ctx.clone();
            let tail = err_tail.clone();
            let (name, must_stay_up) = (s.name.clone(), s.must_stay_up);
            let watched = ready.is_ok();
            tokio::spawn(async move {
                let st = child.wait().await;
                if !watched || ctx.setup_over.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                // Its last words may still be in the pipe.
                let _ = tokio::time::timeout(Duration::from_millis(500), reader).await;
                let status = match st {
                    Ok(st) => st.to_string(),
                    Err(e) => e.to_string(),
                };
                let last = crate::sys::exec::tail(&tail.lock().unwrap(), 5);
                setup_exited(&ctx, &name, pid, must_stay_up, status, last);
            });
        }
        if let Err(e) = ready {
            if ctx.cancelled() {
                break;
            }
            let tail = crate::sys::exec::tail(&err_tail.lock().unwrap(), 5);
            return Err(PreflightError {
                code: exit::PRECONDITION,
                message: format!(
                    "setup `{}` (`{}`): {e}{}",
                    s.name,
                    s.start.join(" "),
                    if tail.is_empty() {
                        String::new()
                    } else {
                        format!("; its last output: {tail}")
                    }
                ),
            });
        }
        ctx.emit.emit(Event::SetupReady {
            name: s.name.clone(),
            ready_ms: t0.elapsed().as_secs_f64() * 1000.0,
        });
        setup_pids.insert(s.name.clone(), pid);
    }
    *ctx.setup_pids.lock().unwrap() = setup_pids;
    Ok(())
}

/// The fault preflight again, now that setup's processes exist.
pub(super) fn preflight_after_setup(
    ctx: &Ctx,
    faults: &mut StepFaults,
) -> Result<(), PreflightError> {
    let mut fctx = ctx.fctx.clone();
    fctx.setup_pending = false;
    fctx.setup_pids = ctx.setup_pids.lock().unwrap().clone();
    for (i, f) in faults.iter_mut().enumerate() {
        if let Some(imp) = f {
            tokio::task::block_in_place(|| imp.preflight(&fctx)).map_err(|e| PreflightError {
                code: e.code,
                message: format!(
                    "step {} `{}` ({}): {}",
                    i + 1,
                    ctx.exp.method[i].label(i),
                    imp.kind(),
                    e.message
                ),
            })?;
        }
    }
    Ok(())
}

/// A setup process exited during the run: the run stops, DEVIATED when the
/// experiment says it must stay up, else INCONCLUSIVE.
fn setup_exited(
    ctx: &Arc<Ctx>,
    name: &str,
    pid: i32,
    must_stay_up: bool,
    status: String,
    last_stderr: String,
) {
    let at = human_ms(ctx.emit.elapsed_ms());
    let stderr = crate::sys::text::escape_text(&last_stderr).into_owned();
    let mut message =
        format!("setup `{name}` (pid {pid}) exited during the run at {at} ({status})");
    if stderr.trim().is_empty() {
        message.push_str("; it wrote nothing to stderr");
    } else {
        message.push_str(&format!("; its last stderr: {}", stderr.trim_end()));
    }
    ctx.emit.emit(Event::SetupExited {
        name: name.to_string(),
        pid,
        status,
        last_stderr: stderr,
        must_stay_up,
    });
    if must_stay_up {
        ctx.stop_with(Stop::StepFailed(
            exit::DEVIATED,
            format!("{message}; the experiment says it must stay up"),
        ));
    } else {
        ctx.inconclusive(InconclusiveReason::setup_died(name, message.clone()));
        ctx.stop_with(Stop::StepFailed(exit::INCONCLUSIVE, message));
    }
}

/// Where a ready check connects, when that is this host: its TCP port.
fn local_port(r: &ReadyCheck) -> Option<u16> {
    let local = |h: &str| {
        let h = h.trim_start_matches('[').trim_end_matches(']');
        h == "localhost"
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
    };
    if let Some(t) = &r.tcp {
        return local(&t.host).then_some(t.port);
    }
    let u = reqwest::Url::parse(&r.http.as_ref()?.url).ok()?;
    local(u.host_str()?).then_some(u.port_or_known_default()?)
}

/// Before a setup process starts: if its ready check already passes, or its
/// port is already held, something else would be tested. Refuse (exit 69)
/// and name who holds the port.
async fn refuse_if_taken(
    s: &SetupProcess,
    r: &ReadyCheck,
    pctx: &ProbeContext,
) -> Result<(), PreflightError> {
    let probe = ProbeRunner::for_ready(&s.name, r, pctx).map_err(|e| PreflightError {
        code: exit::PRECONDITION,
        message: format!("setup `{}`: ready check cannot run: {e}", s.name),
    })?;
    let port = local_port(r);
    let answers = probe.sample().await.is_success();
    let holders = port.map(crate::sys::sockets::listeners).unwrap_or_default();
    if !answers && holders.is_empty() {
        return Ok(());
    }
    let who = match (port, holders.is_empty()) {
        (Some(p), false) => format!(
            "port {p} is already held by {}",
            holders
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (Some(p), true) => {
            format!("something already answers on port {p} (its process is not visible from here)")
        }
        (None, _) => "something already answers it".into(),
    };
    Err(PreflightError {
        code: exit::PRECONDITION,
        message: format!(
            "setup `{}`: its ready check ({}) {} before `{}` was started: {who}; the run would test that instead. Stop it or give the setup process another port",
            s.name,
            probe.describe(),
            if answers { "already passes" } else { "targets a port in use" },
            crate::sys::text::escape(&crate::sys::exec::shell_words(&s.start)).into_owned()
        ),
    })
}
