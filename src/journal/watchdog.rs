//! The watchdog: a small separate process (this same binary, `faultline
//! watchdog`, in its own session) that a run starts before it changes
//! anything. It holds the read end of a pipe whose write end only the runner
//! has. When the runner dies in any way, even SIGKILL, the kernel closes that
//! end and the watchdog wakes at once and replays the run's pending undo
//! records. It also replays them when the run's hard deadline passes while
//! the runner is stuck. It never acts while the runner is alive and within
//! its deadline, and it exits quietly when the runner says the run ended.

use super::store::{self, Line};
use anyhow::{Context, Result};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long after the deadline the watchdog steps in (the runner enforces
/// the deadline itself first; this is for a runner that cannot).
pub const DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// The runner's side: the pipe's write end and the watchdog's pid.
pub struct WatchdogHandle {
    pipe: Option<File>,
    pub pid: i32,
    child: Option<std::process::Child>,
}

impl WatchdogHandle {
    /// Tells the watchdog the run ended cleanly (everything rolled back). It
    /// exits on its own; if we exit first, init reaps it.
    pub fn finish(mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(b"done\n");
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.try_wait();
        }
    }
}

/// How long the runner waits for the watchdog to say it is watching.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The fd number the watchdog's end of the handshake pipe gets.
const READY_FD: i32 = 3;

/// Starts the watchdog for a run whose file is already in the state
/// directory, and waits until it says it is watching: a run must not change
/// anything without one.
pub fn spawn(state_dir: &Path, run_id: &str) -> Result<WatchdogHandle> {
    let (read_end, write_end): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("cannot create a pipe")?;
    let (ready_read, ready_write): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("cannot create a pipe")?;
    let exe = std::env::current_exe()
        .context("cannot find the faultline binary to start the watchdog")?;
    let log_path = state_dir
        .join("runs")
        .join(format!("{run_id}.watchdog.log"));
    // Private, like every file faultline writes about a run.
    let log = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--state-dir")
        .arg(state_dir)
        .arg("watchdog")
        .arg("--run-id")
        .arg(run_id)
        .arg("--ready-fd")
        .arg(READY_FD.to_string())
        .stdin(Stdio::from(read_end))
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
    // Its own session: no terminal signals (Ctrl-C goes to the runner's
    // process group only) and it survives the runner's process group.
    let ready_raw = ready_write.as_raw_fd();
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            // dup2 clears close-on-exec on the copy.
            if libc::dup2(ready_raw, READY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the watchdog")?;
    drop(ready_write);
    let pid = child.id() as i32;
    if let Err(why) = wait_ready(ready_read, READY_TIMEOUT) {
        let _ = child.kill();
        let _ = child.wait();
        anyhow::bail!(
            "the watchdog did not start ({why}; its log is {}), so nothing was changed: \
             without it a killed run could not be rolled back. Check that the state \
             directory's filesystem has free space and that the faultline binary can run",
            log_path.display()
        );
    }
    Ok(WatchdogHandle {
        pipe: Some(File::from(write_end)),
        pid,
        child: Some(child),
    })
}

/// Waits for the watchdog's `ready` line on the handshake pipe.
fn wait_ready(fd: OwnedFd, timeout: Duration) -> std::result::Result<(), String> {
    let deadline = std::time::Instant::now() + timeout;
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(format!("no answer within {}s", timeout.as_secs()));
        }
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n <= 0 {
            continue;
        }
        let mut buf = [0u8; 16];
        let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if r <= 0 {
            return Err("it exited before it was watching".into());
        }
        got.extend_from_slice(&buf[..r as usize]);
        if got.windows(5).any(|w| w == b"ready") {
            return Ok(());
        }
    }
}

/// What woke the watchdog.
enum Wake {
    RunnerDone,
    RunnerGone,
    Timeout,
}

fn wait_stdin(timeout: Duration) -> Wake {
    let fd = std::io::stdin().as_raw_fd();
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n == 0 {
        return Wake::Timeout;
    }
    if n < 0 {
        // EINTR: treat as a timeout and loop.
        return Wake::Timeout;
    }
    let mut buf = [0u8; 64];
    let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if r > 0 {
        if buf[..r as usize].windows(4).any(|w| w == b"done") {
            Wake::RunnerDone
        } else {
            Wake::Timeout
        }
    } else {
        Wake::RunnerGone
    }
}

/// Best effort: a full or broken log must never stop the watchdog.
fn log(msg: &str) {
    let _ = writeln!(
        std::io::stdout(),
        "{} watchdog: {msg}",
        chrono::Utc::now().to_rfc3339()
    );
}

/// What a replay did: undo operations applied and failed, each with the
/// index of its fault and a description for the journal.
#[derive(Default)]
struct Replayed {
    restored: Vec<(usize, String)>,
    failed: Vec<(usize, String)>,
    /// Records that could not even be read.
    unreadable: bool,
}

impl Replayed {
    fn left(&self) -> usize {
        self.failed.len() + usize::from(self.unreadable)
    }
}

/// Replays every pending record of the run.
fn replay_pending(path: &Path, why: &str) -> Replayed {
    let mut out = Replayed::default();
    let st = match store::read_run(path) {
        Ok(s) => s,
        Err(e) => {
            log(&format!("cannot read {}: {e:#}", path.display()));
            out.unreadable = true;
            return out;
        }
    };
    let pending: Vec<_> = st.pending().into_iter().cloned().collect();
    if pending.is_empty() {
        return out;
    }
    log(&format!(
        "{why}: rolling back {} pending operation(s)",
        pending.len()
    ));
    let mut file = match store::open_append(path) {
        Ok(f) => f,
        Err(e) => {
            log(&format!("{e:#}"));
            out.failed = pending
                .iter()
                .map(|r| (r.fault, r.op.manual_command()))
                .collect();
            return out;
        }
    };
    let results = store::replay(&mut file, &pending, "watchdog", 5);
    for r in results {
        match r.result {
            Ok(a) => {
                log(&format!(
                    "{} ({}): {:?}",
                    r.record.op.manual_command(),
                    r.record.target,
                    a
                ));
                let what = match a {
                    crate::journal::undo::Applied::Done => "",
                    crate::journal::undo::Applied::AlreadyGone => ", already gone",
                };
                out.restored.push((
                    r.record.fault,
                    format!(
                        "{} ({} `{}` on {}{what})",
                        r.record.op.manual_command(),
                        r.record.kind,
                        r.record.fault_label,
                        r.record.target
                    ),
                ));
            }
            Err(e) => {
                log(&format!("FAILED {}: {e}", r.record.op.manual_command()));
                out.failed
                    .push((r.record.fault, r.record.op.manual_command()));
            }
        }
    }
    out
}

/// Marks the run's JSON journal as ended by the watchdog, with what it
/// restored, when the runner left it unfinished. Best effort: the host
/// comes first, and a journal that cannot be read is left as it is.
fn mark_journal(header: &store::RunHeader, done: &Replayed) {
    let Some(path) = &header.journal else { return };
    // A write the runner did not finish leaves its temporary file.
    let _ = std::fs::remove_file(crate::report::persist::temp_path(
        path,
        header.runner_pid as u32,
    ));
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            log(&format!("cannot read the journal {}: {e}", path.display()));
            return;
        }
    };
    let mut rec = match crate::report::json::parse(&text) {
        Ok(r) => r,
        Err(e) => {
            log(&format!(
                "the journal {} is not readable: {e}",
                path.display()
            ));
            return;
        }
    };
    if rec.complete || rec.run_id != header.run_id {
        return;
    }
    rec.mark_ended_by_watchdog(
        header.runner_pid,
        &done.restored,
        &done.failed,
        chrono::Utc::now(),
    );
    match crate::report::persist::write_atomic(path, &crate::report::json::render(&rec)) {
        Ok(()) => log(&format!(
            "marked the journal {} as ended by the watchdog",
            path.display()
        )),
        Err(e) => log(&format!(
            "cannot update the journal {}: {e}",
            path.display()
        )),
    }
}

/// Body of `faultline watchdog --run-id ID`.
pub fn main(state_dir: &Path, run_id: &str, ready_fd: Option<i32>) -> i32 {
    // Terminal signals are for the runner; the watchdog must outlive them.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
    let path = store::run_file(state_dir, run_id);
    let header = match store::read_run(&path) {
        Ok(st) => match st.header {
            Some(h) => h,
            None => {
                log("the run file has no header; nothing to watch");
                return 1;
            }
        },
        Err(e) => {
            log(&format!("{e:#}"));
            return 1;
        }
    };
    if let Ok(mut f) = store::open_append(&path) {
        let me = std::process::id() as i32;
        let _ = store::append_line(
            &mut f,
            &Line::Watchdog {
                pid: me,
                start_time: crate::sys::proc::start_time(me).unwrap_or(0),
            },
        );
    }
    if std::env::var("FAULTLINE_TEST_PANIC_AT").is_ok_and(|v| v == "watchdog") {
        panic!("FAULTLINE_TEST_PANIC_AT=watchdog");
    }
    if let Some(fd) = ready_fd {
        // SAFETY: the runner passed this fd for the handshake only.
        let mut ready = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        if ready.write_all(b"ready\n").is_err() {
            log("the runner is gone before the handshake");
        }
    }
    log(&format!(
        "watching run {run_id} (runner pid {}, deadline {})",
        header.runner_pid, header.deadline
    ));
    let deadline = header.deadline + chrono::Duration::from_std(DEADLINE_GRACE).unwrap();
    let mut deadline_passed = false;
    loop {
        let now = chrono::Utc::now();
        let timeout = if deadline_passed {
            Duration::from_millis(500)
        } else {
            (deadline - now).to_std().unwrap_or(Duration::ZERO)
        };
        match wait_stdin(timeout) {
            Wake::RunnerDone => {
                log("the run ended; exiting");
                return 0;
            }
            Wake::RunnerGone => {
                settle_host_children(header.runner_pid);
                let done = replay_pending(&path, "the runner died");
                let left = done.left();
                mark_journal(&header, &done);
                finish_file(&path, left);
                return if left == 0 {
                    0
                } else {
                    crate::exit::ROLLBACK_FAILED
                };
            }
            Wake::Timeout => {
                if chrono::Utc::now() >= deadline {
                    if !deadline_passed {
                        log("the run's deadline (limits.max_duration) passed");
                    }
                    deadline_passed = true;
                    settle_host_children(header.runner_pid);
                    replay_pending(&path, "deadline passed");
                }
            }
        }
    }
}

/// Kills the runner's `tc`/`nft`/`ip` children still in flight and waits
/// until they are gone: one finishing after the replay would re-apply what
/// the replay found "already gone".
fn settle_host_children(runner_pid: i32) {
    let left = crate::sys::exec::reap_host_children(runner_pid, Duration::from_secs(10));
    if !left.is_empty() {
        log(&format!(
            "the runner's host commands {left:?} are still running after SIGKILL; rolling back anyway"
        ));
    }
}

/// After the runner died: end the run file, and remove it when nothing is left.
fn finish_file(path: &Path, left: usize) {
    if let Ok(mut f) = store::open_append(path) {
        let _ = store::append_line(
            &mut f,
            &Line::End {
                at: chrono::Utc::now(),
            },
        );
    }
    if left == 0 {
        let _ = std::fs::remove_file(path);
        log("everything rolled back");
    } else {
        log(&format!(
            "{left} operation(s) could not be rolled back; run `faultline status` and `faultline recover`"
        ));
    }
}
