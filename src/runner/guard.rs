//! What stops a run from the outside: signals, the hard deadline, and
//! panics (whose hook replays the pending undo records first).

use super::*;

pub(super) async fn watch_signals(ctx: Arc<Ctx>) {
    use tokio::signal::unix::{signal, SignalKind};
    let kinds = [
        (SignalKind::interrupt(), libc::SIGINT),
        (SignalKind::terminate(), libc::SIGTERM),
        (SignalKind::hangup(), libc::SIGHUP),
        (SignalKind::quit(), libc::SIGQUIT),
    ];
    let mut streams = Vec::new();
    for (k, n) in kinds {
        if let Ok(s) = signal(k) {
            streams.push((s, n));
        }
    }
    let mut count = 0u32;
    loop {
        let futs = streams.iter_mut().map(|(s, n)| {
            let n = *n;
            Box::pin(async move {
                s.recv().await;
                n
            })
        });
        let (n, _, _) = futures_select_all(futs.collect()).await;
        count += 1;
        let name = nix::sys::signal::Signal::try_from(n)
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        ctx.emit.emit(Event::Interrupted {
            signal: name,
            count,
        });
        if count >= 2 {
            ctx.hurry.send_replace(true);
        }
        ctx.stop_with(Stop::Signal(n));
    }
}

static EARLY_SIGNAL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn note_early_signal(sig: libc::c_int) {
    EARLY_SIGNAL.store(sig, std::sync::atomic::Ordering::SeqCst);
}

const EARLY_SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// The handlers [`catch_early_signals`] replaced, restored when it is turned
/// off: a second experiment in the same process must get back the handler
/// the first one's signal watcher installed (the default action would kill
/// the runner mid-fault).
static PREVIOUS_HANDLERS: std::sync::Mutex<Vec<(libc::c_int, libc::sigaction)>> =
    std::sync::Mutex::new(Vec::new());

/// During preflight SIGINT/SIGTERM/SIGHUP/SIGQUIT are noted instead of
/// killing the runner at once, so preflight's throwaway network namespaces
/// are removed; `on` false restores the handlers that were there before.
pub(super) fn catch_early_signals(on: bool) {
    let mut previous = PREVIOUS_HANDLERS.lock().unwrap_or_else(|e| e.into_inner());
    if !on {
        for (sig, sa) in previous.drain(..) {
            // SAFETY: restores a handler sigaction returned earlier.
            unsafe {
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
        return;
    }
    if !previous.is_empty() {
        return; // already catching
    }
    for sig in EARLY_SIGNALS {
        // SAFETY: the handler only stores into an atomic.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = note_early_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, &sa, &mut old) == 0 {
                previous.push((sig, old));
            }
        }
    }
}

/// Between the experiments of `faultline run a.yaml b.yaml`: signals are
/// noted (see [`early_signal`]) so the remaining experiments are not started.
/// Signal watchers installed later by a run chain to this handler.
pub fn note_signals_between_runs() {
    for sig in EARLY_SIGNALS {
        // SAFETY: the handler only stores into an atomic.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = note_early_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The signal noted by [`catch_early_signals`], if one came.
pub fn early_signal() -> Option<i32> {
    match EARLY_SIGNAL.load(std::sync::atomic::Ordering::SeqCst) {
        0 => None,
        n => Some(n),
    }
}

/// A tiny select_all over boxed futures (avoids a dependency for one use).
pub(super) async fn futures_select_all<F>(futs: Vec<std::pin::Pin<Box<F>>>) -> (i32, usize, ())
where
    F: std::future::Future<Output = i32> + ?Sized,
{
    let mut futs = futs;
    std::future::poll_fn(move |cx| {
        for (i, f) in futs.iter_mut().enumerate() {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                return std::task::Poll::Ready((v, i, ()));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

pub(super) async fn watch_deadline(ctx: Arc<Ctx>) {
    let max = ctx.exp.limits.max_duration.std();
    let remaining = max.saturating_sub(ctx.start.elapsed());
    tokio::time::sleep(remaining).await;
    ctx.emit.emit(Event::AbortTriggered {
        probe: String::new(),
        condition: format!(
            "limits.max_duration ({}) reached",
            ctx.exp.limits.max_duration
        ),
        reason: "the run took longer than its hard limit".into(),
    });
    ctx.stop_with(Stop::Abort);
}

/// Stops the run (as an abort: everything rolls back, the verdict is
/// ABORTED) when `faultline stop` asks for it or `faultline halt` sets the
/// emergency stop; see [`super::control`].
pub(super) async fn watch_stop_requests(ctx: Arc<Ctx>, state_dir: PathBuf, run_id: String) {
    let mut warned = false;
    loop {
        let found = super::control::stop_requested(&state_dir, &run_id, &mut warned, |message| {
            ctx.emit.emit(Event::Note { message })
        });
        if let Some((condition, reason)) = found {
            ctx.emit.emit(Event::AbortTriggered {
                probe: String::new(),
                condition,
                reason,
            });
            ctx.stop_with(Stop::Abort);
            return;
        }
        tokio::time::sleep(super::control::POLL).await;
    }
}

/// The run file the panic hook rolls back, while a run is active.
pub(super) static PANIC_RUN: Mutex<Option<PathBuf>> = Mutex::new(None);

pub(super) fn set_panic_run(p: Option<PathBuf>) {
    *PANIC_RUN.lock().unwrap_or_else(|e| e.into_inner()) = p;
}

/// Installs a panic hook that replays the active run's pending undo records
/// before the default hook reports the panic.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // The terminal first: the messages below must be readable.
        super::console::restore_terminal();
        let path = PANIC_RUN.lock().ok().and_then(|g| g.clone());
        if let Some(path) = path {
            if let Ok(st) = store::read_run(&path) {
                let pending: Vec<UndoRecord> = st.pending().into_iter().cloned().collect();
                if !pending.is_empty() {
                    eprintln!(
                        "faultline: internal error; rolling back {} pending operation(s) first",
                        pending.len()
                    );
                    if let Ok(mut f) = store::open_append(&path) {
                        for r in store::replay(&mut f, &pending, "panic", 3) {
                            if let Err(e) = r.result {
                                eprintln!(
                                    "faultline: rollback failed: {} ({e})",
                                    r.record.op.manual_command()
                                );
                            }
                        }
                    }
                }
            }
        }
        default(info);
    }));
}

/// Test knob: `FAULTLINE_TEST_PANIC_AT=<point>` makes the runner panic there
/// (points: setup, method, injected), to prove that a panic rolls back.
pub(super) fn maybe_test_panic(point: &str) {
    if std::env::var("FAULTLINE_TEST_PANIC_AT").is_ok_and(|v| v == point) {
        panic!("FAULTLINE_TEST_PANIC_AT={point}");
    }
}
