//! Setup: start the experiment's own processes (recorded as undo so a dead
//! runner's watchdog stops them too), wait until they are ready, then check
//! the faults' targets again now that they exist.

use super::*;

pub(super) async fn setup(ctx: &Arc<Ctx>) -> Result<(), PreflightError> {
    let pctx = ProbeContext {
        run_id: ctx.fctx.run_id.clone(),
    };
    let mut setup_pids = BTreeMap::new();
    for s in &ctx.exp.setup {
        if ctx.cancelled() {
            break;
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
        {
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
            });
        }
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
        // The child is reaped by tokio when dropped? No: keep it in a task that waits.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
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
