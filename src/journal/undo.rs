//! Undo operations: the exact inverse of what a fault did to the host, written
//! to the state file (and fsynced) BEFORE the fault touches anything. The
//! runner, the watchdog and `faultline recover` all replay them the same way,
//! through [`apply`], so an undo that works in a normal run also works after
//! the runner died.
//!
//! Every operation is idempotent: when its effect is already gone it reports
//! [`Applied::AlreadyGone`] instead of failing.

use crate::sys::exec::{shell_quote, shell_words};
use crate::sys::proc::{self, SignalOutcome};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::Command;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum UndoOp {
    /// SIGCONT a paused process, if it is still the same process.
    ResumeProcess { pid: i32, start_time: u64 },
    /// SIGKILL a process the run started (a stressor worker), if it is still the same.
    KillProcess { pid: i32, start_time: u64 },
    /// Stop a process group the run started (a setup process): SIGTERM, then
    /// SIGKILL after `grace_ms`, if its leader is still the same process.
    StopProcessGroup {
        pgid: i32,
        start_time: u64,
        #[serde(default)]
        grace_ms: u64,
        /// The polite signal (default SIGTERM).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
    },
    /// Run a command (tc, nft, ip). Its failure counts as "already gone" when
    /// stderr contains one of `gone_if` (e.g. "Cannot find device").
    Command {
        argv: Vec<String>,
        #[serde(default)]
        gone_if: Vec<String>,
    },
    /// Move a process back into a cgroup by writing its pid to that cgroup's
    /// `cgroup.procs` (one record per hierarchy), if it is still the same process.
    MoveToCgroup {
        pid: i32,
        start_time: u64,
        procs_file: PathBuf,
    },
    /// Write a value back into a file (a cgroup control file, for example).
    WriteFile { path: PathBuf, contents: String },
    /// Remove a cgroup directory the run created (after its processes left).
    RemoveCgroup { path: PathBuf },
    /// Delete a file the run created.
    RemoveFile { path: PathBuf },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    Done,
    AlreadyGone,
}

impl UndoOp {
    /// The shell line a person would type to do this by hand (for `recover`
    /// messages and the "commands left to run" list after a failed rollback).
    pub fn manual_command(&self) -> String {
        match self {
            UndoOp::ResumeProcess { pid, .. } => format!("kill -CONT {pid}"),
            UndoOp::KillProcess { pid, .. } => format!("kill -KILL {pid}"),
            UndoOp::StopProcessGroup { pgid, signal, .. } => {
                format!("kill -{} -- -{pgid}", signal.unwrap_or(libc::SIGTERM))
            }
            UndoOp::Command { argv, .. } => shell_words(argv),
            UndoOp::MoveToCgroup {
                pid, procs_file, ..
            } => format!("echo {pid} > {}", procs_file.display()),
            UndoOp::WriteFile { path, contents } => {
                format!(
                    "echo {} > {}",
                    shell_quote(contents.trim_end()),
                    path.display()
                )
            }
            UndoOp::RemoveCgroup { path } => format!("rmdir {}", path.display()),
            UndoOp::RemoveFile { path } => format!("rm -f {}", path.display()),
        }
    }

    /// Performs the operation. Idempotent.
    pub fn apply(&self) -> Result<Applied, String> {
        match self {
            UndoOp::ResumeProcess { pid, start_time } => {
                match proc::signal_if_same(*pid, *start_time, Signal::SIGCONT) {
                    Ok(SignalOutcome::Sent) => Ok(Applied::Done),
                    Ok(SignalOutcome::Gone) => Ok(Applied::AlreadyGone),
                    Err(e) => Err(format!("SIGCONT to pid {pid} failed: {e}")),
                }
            }
            UndoOp::KillProcess { pid, start_time } => {
                match proc::signal_if_same(*pid, *start_time, Signal::SIGKILL) {
                    Ok(SignalOutcome::Sent) => Ok(Applied::Done),
                    Ok(SignalOutcome::Gone) => Ok(Applied::AlreadyGone),
                    Err(e) => Err(format!("SIGKILL to pid {pid} failed: {e}")),
                }
            }
            UndoOp::StopProcessGroup {
                pgid,
                start_time,
                grace_ms,
                signal,
            } => stop_group(*pgid, *start_time, *grace_ms, *signal),
            UndoOp::Command { argv, gone_if } => {
                let Some((prog, args)) = argv.split_first() else {
                    return Err("empty command".into());
                };
                let out = Command::new(prog)
                    .args(args)
                    .output()
                    .map_err(|e| format!("cannot run `{prog}`: {e}"))?;
                if out.status.success() {
                    return Ok(Applied::Done);
                }
                let stderr = String::from_utf8_lossy(&out.stderr);
                if gone_if.iter().any(|g| stderr.contains(g.as_str())) {
                    return Ok(Applied::AlreadyGone);
                }
                Err(format!(
                    "`{}` failed ({}): {}",
                    self.manual_command(),
                    out.status,
                    stderr.trim()
                ))
            }
            UndoOp::MoveToCgroup {
                pid,
                start_time,
                procs_file,
            } => {
                if !proc::is_same(*pid, *start_time) {
                    return Ok(Applied::AlreadyGone);
                }
                match std::fs::write(procs_file, pid.to_string()) {
                    Ok(()) => Ok(Applied::Done),
                    // ESRCH: the process exited between the check and the write.
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(Applied::AlreadyGone),
                    Err(e) => Err(format!(
                        "moving pid {pid} back to {}: {e}",
                        procs_file.display()
                    )),
                }
            }
            UndoOp::WriteFile { path, contents } => {
                if !path.exists() {
                    return Ok(Applied::AlreadyGone);
                }
                std::fs::write(path, contents)
                    .map(|_| Applied::Done)
                    .map_err(|e| format!("writing {}: {e}", path.display()))
            }
            UndoOp::RemoveCgroup { path } => {
                if !path.exists() {
                    return Ok(Applied::AlreadyGone);
                }
                // Processes may take a moment to leave (exiting, being moved).
                let mut last = None;
                for _ in 0..50 {
                    match std::fs::remove_dir(path) {
                        Ok(()) => return Ok(Applied::Done),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            return Ok(Applied::AlreadyGone)
                        }
                        Err(e) => last = Some(e),
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(format!(
                    "removing cgroup {}: {}",
                    path.display(),
                    last.map(|e| e.to_string()).unwrap_or_default()
                ))
            }
            UndoOp::RemoveFile { path } => match std::fs::remove_file(path) {
                Ok(()) => Ok(Applied::Done),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Applied::AlreadyGone),
                Err(e) => Err(format!("removing {}: {e}", path.display())),
            },
        }
    }
}

/// SIGTERM to a process group whose leader is still the recorded process,
/// then SIGKILL to the group if the leader outlives `grace_ms`.
fn stop_group(
    pgid: i32,
    start_time: u64,
    grace_ms: u64,
    signal: Option<i32>,
) -> Result<Applied, String> {
    use nix::sys::signal::killpg;
    use nix::unistd::Pid;
    if !proc::is_same(pgid, start_time) {
        // The leader is gone; members may remain, but the pgid may also have
        // been reused, so only signal the group while its leader is ours.
        return Ok(Applied::AlreadyGone);
    }
    let sig = signal
        .and_then(|n| Signal::try_from(n).ok())
        .unwrap_or(Signal::SIGTERM);
    match killpg(Pid::from_raw(pgid), sig) {
        Ok(()) => {}
        Err(nix::errno::Errno::ESRCH) => return Ok(Applied::AlreadyGone),
        Err(e) => return Err(format!("{sig} to process group {pgid} failed: {e}")),
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(grace_ms);
    while std::time::Instant::now() < deadline {
        if !proc::alive(pgid) {
            return Ok(Applied::Done);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    Ok(Applied::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_ops_round_trip_as_json() {
        let op = UndoOp::Command {
            argv: vec!["tc".into(), "qdisc".into(), "del".into()],
            gone_if: vec!["Cannot find".into()],
        };
        let s = serde_json::to_string(&op).unwrap();
        assert!(s.contains("\"op\":\"command\""), "{s}");
        assert_eq!(serde_json::from_str::<UndoOp>(&s).unwrap(), op);
    }

    #[test]
    fn removing_a_missing_file_is_already_gone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, "1").unwrap();
        let op = UndoOp::RemoveFile { path: p.clone() };
        assert_eq!(op.apply().unwrap(), Applied::Done);
        assert_eq!(op.apply().unwrap(), Applied::AlreadyGone);
    }

    #[test]
    fn resuming_a_reused_pid_does_nothing() {
        let me = std::process::id() as i32;
        let st = proc::start_time(me).unwrap();
        let op = UndoOp::ResumeProcess {
            pid: me,
            start_time: st + 1,
        };
        assert_eq!(op.apply().unwrap(), Applied::AlreadyGone);
    }
}
