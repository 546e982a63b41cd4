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
    /// Remove a cgroup directory the run created. Processes still in it
    /// (children a target forked since the last record) are moved first to
    /// `leftovers_to` (a `cgroup.procs` file: the targets' original cgroup),
    /// else to the root cgroup of the hierarchy.
    RemoveCgroup {
        path: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leftovers_to: Option<PathBuf>,
    },
    /// Delete a file the run created.
    RemoveFile { path: PathBuf },
    /// Put back a file `file_corrupt` changed or deleted: byte-exact from
    /// the backup the run made in its state directory (checked by sha256),
    /// with the recorded mode, owner and timestamps, atomically (rename).
    /// Never follows a symbolic link at `path`.
    RestoreFile {
        path: PathBuf,
        backup: PathBuf,
        sha256: String,
        size: u64,
        mode: u32,
        uid: u32,
        gid: u32,
        /// (seconds, nanoseconds) since the epoch.
        atime: (i64, i64),
        mtime: (i64, i64),
    },
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
            UndoOp::RemoveCgroup { path, .. } => format!("rmdir {}", path.display()),
            UndoOp::RemoveFile { path } => format!("rm -f {}", path.display()),
            UndoOp::RestoreFile { path, backup, .. } => format!(
                "cp --preserve=all --remove-destination {} {}",
                shell_quote(&backup.display().to_string()),
                shell_quote(&path.display().to_string())
            ),
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
            UndoOp::RemoveCgroup { path, leftovers_to } => {
                if !path.exists() {
                    return Ok(Applied::AlreadyGone);
                }
                crate::sys::cgroup::evacuate(path, leftovers_to.as_deref());
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
            UndoOp::RestoreFile {
                path,
                backup,
                sha256,
                size,
                mode,
                uid,
                gid,
                atime,
                mtime,
            } => {
                let o = crate::sys::file::Original {
                    sha256: sha256.clone(),
                    size: *size,
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                    atime: *atime,
                    mtime: *mtime,
                };
                // Paths come from the host: escaped before anyone shows them.
                match crate::sys::file::restore(path, backup, &o)
                    .map_err(|e| crate::sys::text::escape(&e).into_owned())?
                {
                    true => Ok(Applied::Done),
                    false => Ok(Applied::AlreadyGone),
                }
            }
        }
    }
}

/// What a run's own undo records may touch, from the run file's header. A
/// record read back from a state file (by the watchdog, `recover` or the
/// panic hook) is run only when it is something faultline itself records
/// ([`UndoOp::out_of_bounds`]); anything else is refused, never executed.
#[derive(Clone, Debug)]
pub struct RunBounds {
    pub run_id: String,
    /// The runner's start time: processes the run started are not older.
    pub runner_start_time: u64,
    /// The state directory the run file is in: backups of files the run
    /// changed are kept under its `backups/<run>/`.
    pub state_dir: Option<PathBuf>,
}

/// The run id as faultline puts it in cgroup and fill-file names
/// (`FaultContext::run_slug`).
pub(crate) fn run_slug(run_id: &str) -> String {
    let slug: String = run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if slug.is_empty() {
        "run".into()
    } else {
        slug
    }
}

/// A word faultline puts in a tc/ip/nft command: a name, a handle, a number;
/// never an option (leading `-`), a path or whitespace.
fn plain_word(w: &str) -> bool {
    !w.is_empty()
        && w.len() <= 64
        && !w.starts_with('-')
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:@".contains(c))
}

/// A network namespace name (a file in /run/netns): no `/`, not `.`/`..`.
fn netns_name(w: &str) -> bool {
    !w.is_empty()
        && w.len() <= 64
        && !w.starts_with('-')
        && w != "."
        && w != ".."
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-@".contains(c))
}

/// An interface name as the kernel allows it (at most 15 bytes; no `/`, `:`
/// or whitespace).
fn ifname(w: &str) -> bool {
    !w.is_empty()
        && w.len() <= 15
        && !w.starts_with('-')
        && w.chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != ':')
}

/// An absolute path without `.`/`..` components.
fn clean_absolute(p: &std::path::Path) -> bool {
    use std::path::Component;
    p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// Is `p` on a cgroup (v1 or v2) file system?
fn on_cgroupfs(p: &std::path::Path) -> bool {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
    statfs(p).is_ok_and(|s| {
        s.filesystem_type() == CGROUP_SUPER_MAGIC || s.filesystem_type() == CGROUP2_SUPER_MAGIC
    })
}

fn file_name(p: &std::path::Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

impl UndoOp {
    /// Why this op is not one faultline records for the run `b` (`None` when
    /// it is). `uid` is the uid recorded for the process the op acts on.
    pub fn out_of_bounds(&self, b: &RunBounds, uid: Option<u32>) -> Option<String> {
        let slug = run_slug(&b.run_id);
        let process = |pid: i32, start_time: u64, started_by_run: bool| -> Option<String> {
            if pid <= 1 {
                return Some(format!("pid {pid} is never a target"));
            }
            if started_by_run && start_time < b.runner_start_time {
                return Some(format!(
                    "pid {pid} is older than the run's runner, so the run did not start it"
                ));
            }
            // Gone or reused: apply() finds it gone and does nothing.
            if !proc::is_same(pid, start_time) {
                return None;
            }
            let now = proc::uids(pid).map(|u| u[0]);
            match (uid, now) {
                (Some(want), Some(got)) if want == got => None,
                (None, _) => Some(format!(
                    "no uid is recorded for pid {pid} (faultline records one with every process)"
                )),
                (Some(want), got) => Some(format!(
                    "pid {pid} now runs as uid {}, not uid {want} as recorded",
                    got.map(|u| u.to_string()).unwrap_or_else(|| "?".into())
                )),
            }
        };
        match self {
            UndoOp::ResumeProcess { pid, start_time } => process(*pid, *start_time, false),
            UndoOp::KillProcess { pid, start_time } => {
                // Only stressor workers are killed: `faultline stress-worker ...`.
                let worker = || {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| c.split(|b| *b == 0).nth(1) == Some(b"stress-worker"))
                };
                if proc::is_same(*pid, *start_time) && !worker() {
                    return Some(format!(
                        "pid {pid} is not a stressor worker (`faultline stress-worker`), the only process faultline kills"
                    ));
                }
                process(*pid, *start_time, true)
            }
            UndoOp::StopProcessGroup {
                pgid, start_time, ..
            } => process(*pgid, *start_time, true),
            UndoOp::MoveToCgroup {
                pid,
                start_time,
                procs_file,
            } => {
                let parent = procs_file.parent().unwrap_or(procs_file);
                if !clean_absolute(procs_file)
                    || file_name(procs_file) != "cgroup.procs"
                    || !on_cgroupfs(parent)
                {
                    return Some(format!(
                        "{} is not a cgroup.procs file on a cgroup file system",
                        procs_file.display()
                    ));
                }
                process(*pid, *start_time, false)
            }
            UndoOp::RemoveCgroup { path, leftovers_to } => {
                if let Some(to) = leftovers_to {
                    let parent = to.parent().unwrap_or(to);
                    if !clean_absolute(to)
                        || file_name(to) != "cgroup.procs"
                        || (parent.exists() && !on_cgroupfs(parent))
                    {
                        return Some(format!(
                            "{} (where leftover processes go) is not a cgroup.procs file on a cgroup file system",
                            to.display()
                        ));
                    }
                }
                let prefix = format!("faultline-{slug}-");
                if !clean_absolute(path) || !file_name(path).starts_with(&prefix) {
                    return Some(format!(
                        "{} is not a cgroup of this run (its name starts with {prefix})",
                        path.display()
                    ));
                }
                if path.exists() && !on_cgroupfs(path) {
                    return Some(format!("{} is not on a cgroup file system", path.display()));
                }
                None
            }
            UndoOp::WriteFile { path, contents } => {
                let parent = path.parent().unwrap_or(path);
                let in_ours = file_name(parent).starts_with(&format!("faultline-{slug}-"));
                let disable = file_name(path) == "cgroup.subtree_control"
                    && contents.trim_end().strip_prefix('-').is_some_and(|c| {
                        !c.is_empty() && c.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    });
                let container = container_limit_write(path, contents);
                if !clean_absolute(path)
                    || !(in_ours || disable || container)
                    || !on_cgroupfs(parent)
                {
                    return Some(format!(
                        "writing {} is not an undo faultline records (only cgroup control files)",
                        path.display()
                    ));
                }
                None
            }
            UndoOp::RemoveFile { path } => {
                let prefix = format!(".faultline-fill-{slug}-");
                let ok = clean_absolute(path)
                    && file_name(path)
                        .strip_prefix(&prefix)
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
                if ok {
                    None
                } else {
                    Some(format!(
                        "{} is not a disk_fill file of this run (named {prefix}N)",
                        path.display()
                    ))
                }
            }
            UndoOp::Command { argv, .. } => command_out_of_bounds(argv, b),
            UndoOp::RestoreFile {
                path,
                backup,
                sha256,
                mode,
                ..
            } => restore_out_of_bounds(path, backup, sha256, *mode, b),
        }
    }
}

/// A container cgroup limit's undo: one of the limit files `cpu_limit` and
/// `memory_limit` write, in a cgroup whose name holds a 64-hex container id
/// (`/docker/<id>`, `docker-<id>.scope`, `libpod-<id>.scope`), with a plain
/// value (digits, `-1`, `max`, `max 100000`).
fn container_limit_write(path: &std::path::Path, contents: &str) -> bool {
    const FILES: [&str; 7] = [
        "cpu.cfs_period_us",
        "cpu.cfs_quota_us",
        "cpu.max",
        "memory.limit_in_bytes",
        "memory.soft_limit_in_bytes",
        "memory.max",
        "memory.high",
    ];
    let Some(parent) = path.parent() else {
        return false;
    };
    let dir = file_name(parent);
    let has_id = dir
        .split(['-', '.'])
        .any(|w| w.len() == 64 && w.bytes().all(|c| c.is_ascii_hexdigit()));
    let value = contents.trim_end();
    FILES.contains(&file_name(path))
        && has_id
        && !value.is_empty()
        && value.len() <= 64
        && value.split(' ').all(|w| {
            w == "max"
                || w.strip_prefix('-')
                    .unwrap_or(w)
                    .bytes()
                    .all(|c| c.is_ascii_digit())
                    && !w.is_empty()
        })
}

/// Paths `file_corrupt` never touches (and so never restores).
pub const PROTECTED_TREES: [&str; 3] = ["/proc", "/sys", "/dev"];

/// A restore writes only a regular path outside /proc, /sys, /dev and the
/// state directory, from a backup named `file-N` in this run's own backup
/// directory (`STATE/backups/<run>/`), with plain permission bits (never
/// setuid/setgid: `file_corrupt` refuses such files).
fn restore_out_of_bounds(
    path: &std::path::Path,
    backup: &std::path::Path,
    sha256: &str,
    mode: u32,
    b: &RunBounds,
) -> Option<String> {
    if !clean_absolute(path) || path.parent().is_none() {
        return Some(format!("{} is not a clean absolute path", path.display()));
    }
    if PROTECTED_TREES.iter().any(|t| path.starts_with(t)) {
        return Some(format!(
            "{} is under /proc, /sys or /dev, which file_corrupt never changes",
            path.display()
        ));
    }
    let Some(state) = &b.state_dir else {
        return Some(
            "the run's state directory is unknown, so its backups cannot be checked".into(),
        );
    };
    let state = std::fs::canonicalize(state).unwrap_or_else(|_| state.clone());
    if path.starts_with(&state) {
        return Some(format!(
            "{} is in the state directory, which file_corrupt never changes",
            path.display()
        ));
    }
    let dir = state.join("backups").join(run_slug(&b.run_id));
    let named = file_name(backup)
        .strip_prefix("file-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()));
    if !clean_absolute(backup) || backup.parent() != Some(dir.as_path()) || !named {
        return Some(format!(
            "the backup {} is not a file-N in this run's backup directory {}",
            backup.display(),
            dir.display()
        ));
    }
    if sha256.len() != 64
        || !sha256
            .bytes()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Some(format!("`{sha256}` is not a sha256 (64 hex digits)"));
    }
    if mode & !0o1777 != 0 {
        return Some(format!(
            "mode {mode:04o} has setuid/setgid bits, which file_corrupt never restores"
        ));
    }
    None
}

/// The tc, ip and nft commands faultline records as undo: deleting its own
/// qdiscs (handle `fa17:`, the ingress `ffff:`), re-creating a saved root
/// qdisc, deleting its IFB device and its own nft table.
fn command_out_of_bounds(argv: &[String], b: &RunBounds) -> Option<String> {
    let refuse = |why: &str| {
        Some(format!(
            "`{}` is not an undo command faultline records: {why}",
            shell_words(argv)
        ))
    };
    let a: Vec<&str> = argv.iter().map(String::as_str).collect();
    let table_ok = |t: &str| {
        let prefix = format!(
            "faultline_{}_",
            crate::fault::network::sanitize_run_id(&b.run_id)
        );
        t.starts_with(&prefix) && plain_word(t)
    };
    let nft_ok = |rest: &[&str]| matches!(rest, ["delete", "table", "inet", t] if table_ok(t));
    // `tool [-n NS] rest...`
    let strip_ns = |rest: &[&str]| -> Option<Vec<String>> {
        match rest {
            ["-n", ns, tail @ ..] if netns_name(ns) => {
                Some(tail.iter().map(|s| s.to_string()).collect())
            }
            ["-n", ..] => None,
            _ => Some(rest.iter().map(|s| s.to_string()).collect()),
        }
    };
    match a.as_slice() {
        ["nft", rest @ ..] => {
            if nft_ok(rest) {
                None
            } else {
                refuse("nft may only delete this run's own table (inet faultline_<run>_...)")
            }
        }
        ["ip", "netns", "exec", ns, "nft", rest @ ..] => {
            if netns_name(ns) && nft_ok(rest) {
                None
            } else {
                refuse("nft may only delete this run's own table (inet faultline_<run>_...)")
            }
        }
        ["ip", "netns", "delete", ns] => {
            // The name a container network fault gave a container's
            // namespace: `fl-<run slug, 24 at most>-<12 hex digits>`.
            let mut run = run_slug(&b.run_id);
            run.truncate(24);
            let ok = ns
                .strip_prefix(&format!("fl-{run}-"))
                .is_some_and(|id| id.len() == 12 && id.bytes().all(|c| c.is_ascii_hexdigit()));
            if ok {
                None
            } else {
                refuse("ip netns delete may only remove this run's name for a container's namespace (fl-<run>-<container id>)")
            }
        }
        ["ip", rest @ ..] => {
            let Some(tail) = strip_ns(rest) else {
                return refuse("not a network namespace name");
            };
            let t: Vec<&str> = tail.iter().map(String::as_str).collect();
            match t.as_slice() {
                ["link", "del", "dev", dev]
                    if dev.strip_prefix("flifb").is_some_and(|h| {
                        h.len() == 8 && h.bytes().all(|b| b.is_ascii_hexdigit())
                    }) =>
                {
                    None
                }
                _ => refuse("ip may only delete faultline's IFB device (flifbXXXXXXXX)"),
            }
        }
        ["tc", rest @ ..] => {
            let Some(tail) = strip_ns(rest) else {
                return refuse("not a network namespace name");
            };
            let t: Vec<&str> = tail.iter().map(String::as_str).collect();
            match t.as_slice() {
                ["qdisc", "del", "dev", dev, "root", "handle", "fa17:"]
                | ["qdisc", "del", "dev", dev, "handle", "ffff:", "ingress"]
                    if ifname(dev) =>
                {
                    None
                }
                ["qdisc", "replace", "dev", dev, where_ @ ..] if ifname(dev) => {
                    let opts: &[&str] = match where_ {
                        ["root", "handle", h, o @ ..] if plain_word(h) => o,
                        ["root", o @ ..] => o,
                        ["parent", p, o @ ..] if plain_word(p) => o,
                        _ => return refuse("a qdisc is restored at the root or under a parent"),
                    };
                    if !opts.is_empty() && opts.iter().all(|w| plain_word(w)) {
                        None
                    } else {
                        refuse("a restored qdisc has a kind and plain options only")
                    }
                }
                _ => refuse("tc may only delete faultline's qdiscs (handle fa17:, ffff: ingress) or re-create a saved root qdisc"),
            }
        }
        _ => refuse("only tc, ip and nft are run to undo a fault"),
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

    fn bounds() -> RunBounds {
        RunBounds {
            run_id: "20261202-101500-ab12".into(),
            runner_start_time: 0,
            state_dir: Some("/run/faultline".into()),
        }
    }

    fn cmd(line: &str) -> UndoOp {
        UndoOp::Command {
            argv: line.split(' ').map(String::from).collect(),
            gone_if: vec![],
        }
    }

    #[test]
    fn container_undo_records_are_bounded() {
        let b = bounds();
        assert_eq!(
            cmd("ip netns delete fl-20261202-101500-ab12-0123456789ab").out_of_bounds(&b, None),
            None
        );
        for bad in [
            "ip netns delete fl-othrun-0123456789ab",
            "ip netns delete fl-20261202-101500-ab12-xyz",
            "ip netns delete app",
        ] {
            assert!(cmd(bad).out_of_bounds(&b, None).is_some(), "{bad}");
        }
        let id = "a".repeat(64);
        let ok = |file: &str, v: &str| {
            container_limit_write(
                std::path::Path::new(&format!("/sys/fs/cgroup/cpu/docker/{id}/{file}")),
                v,
            )
        };
        assert!(ok("cpu.cfs_quota_us", "-1"));
        assert!(ok("cpu.cfs_quota_us", "70000\n"));
        assert!(ok("cpu.max", "max 100000"));
        assert!(!ok("cgroup.procs", "1"));
        assert!(!ok("cpu.cfs_quota_us", "1; rm -rf /"));
        assert!(!container_limit_write(
            std::path::Path::new("/sys/fs/cgroup/cpu/system.slice/cpu.cfs_quota_us"),
            "-1"
        ));
        assert!(container_limit_write(
            std::path::Path::new(&format!(
                "/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.max"
            )),
            "max"
        ));
    }

    #[test]
    fn undo_commands_faultline_records_are_within_bounds() {
        let b = bounds();
        for line in [
            "tc qdisc del dev eth0 root handle fa17:",
            "tc -n app qdisc del dev veth0 root handle fa17:",
            "tc -n app qdisc del dev eth0 handle ffff: ingress",
            "tc qdisc replace dev eth0 root handle 8001: tbf rate 125000bps burst 1600b mtu 2047b latency 50000us",
            "tc qdisc replace dev eth0 root fq_codel",
            "tc qdisc replace dev eth0 parent 8001:1 pfifo_fast",
            "ip -n app link del dev flifb0a1b2c3d",
            "nft delete table inet faultline_20261202_101500_ab12_packet_loss_0a1b2c",
            "ip netns exec app nft delete table inet faultline_20261202_101500_ab12_block_0a1b2c",
        ] {
            assert_eq!(cmd(line).out_of_bounds(&b, None), None, "{line}");
        }
    }

    #[test]
    fn crafted_undo_commands_are_refused() {
        let b = bounds();
        for line in [
            "touch /tmp/pwned",
            "sh -c id",
            "/usr/sbin/tc qdisc del dev eth0 root handle fa17:",
            "tc -batch /tmp/cmds",
            "tc qdisc add dev eth0 root netem loss 100%",
            "tc qdisc del dev eth0 root",
            "tc qdisc replace dev eth0 root handle 1: tbf -batch x",
            "tc qdisc del dev ../x root handle fa17:",
            "ip link del dev eth0",
            "ip netns exec app sh",
            "ip netns exec ../../proc/1/ns/net nft delete table inet faultline_20261202_101500_ab12_x",
            "nft flush ruleset",
            "nft delete table inet faultline_other_run_block_0a1b2c",
            "nft -f /tmp/rules",
        ] {
            let why = cmd(line).out_of_bounds(&b, None);
            assert!(why.is_some(), "{line} was accepted");
        }
        assert!(UndoOp::Command {
            argv: vec![],
            gone_if: vec![]
        }
        .out_of_bounds(&b, None)
        .is_some());
    }

    #[test]
    fn paths_are_limited_to_the_runs_own_files_and_cgroups() {
        let b = bounds();
        let ok = UndoOp::RemoveFile {
            path: "/srv/data/.faultline-fill-20261202-101500-ab12-3".into(),
        };
        assert_eq!(ok.out_of_bounds(&b, None), None);
        for p in [
            "/etc/passwd",
            "relative/.faultline-fill-20261202-101500-ab12-3",
            "/srv/.faultline-fill-20261202-101500-ab12-3/../../etc/shadow",
            "/srv/.faultline-fill-otherrun-3",
            "/srv/.faultline-fill-20261202-101500-ab12-x",
        ] {
            let op = UndoOp::RemoveFile { path: p.into() };
            assert!(op.out_of_bounds(&b, None).is_some(), "{p}");
        }
        let cg = UndoOp::RemoveCgroup {
            path: "/sys/fs/cgroup/faultline-20261202-101500-ab12-cpu_limit-1".into(),
            leftovers_to: None,
        };
        assert_eq!(cg.out_of_bounds(&b, None), None);
        let home = UndoOp::RemoveCgroup {
            path: "/home/alice".into(),
            leftovers_to: None,
        };
        assert!(home.out_of_bounds(&b, None).is_some());
        // Leftover processes may only be written to a cgroup.procs file.
        for to in [
            "/etc/crontab",
            "relative/cgroup.procs",
            "/sys/fs/cgroup/a/../../etc/cgroup.procs",
        ] {
            let op = UndoOp::RemoveCgroup {
                path: "/sys/fs/cgroup/faultline-20261202-101500-ab12-cpu_limit-1".into(),
                leftovers_to: Some(to.into()),
            };
            assert!(op.out_of_bounds(&b, None).is_some(), "{to}");
        }
        let w = UndoOp::WriteFile {
            path: "/etc/sudoers".into(),
            contents: "alice ALL=(ALL) NOPASSWD: ALL".into(),
        };
        assert!(w.out_of_bounds(&b, None).is_some());
        let m = UndoOp::MoveToCgroup {
            pid: std::process::id() as i32,
            start_time: 0,
            procs_file: "/tmp/cgroup.procs".into(),
        };
        assert!(m.out_of_bounds(&b, None).is_some());
    }

    #[test]
    fn processes_must_match_their_recorded_uid_and_age() {
        let me = std::process::id() as i32;
        let st = proc::start_time(me).unwrap();
        let my_uid = proc::uids(me).unwrap()[0];
        let resume = UndoOp::ResumeProcess {
            pid: me,
            start_time: st,
        };
        let b = bounds();
        assert_eq!(resume.out_of_bounds(&b, Some(my_uid)), None);
        assert!(resume
            .out_of_bounds(&b, Some(my_uid + 1))
            .unwrap()
            .contains("uid"));
        assert!(resume.out_of_bounds(&b, None).unwrap().contains("no uid"));
        // A process the run started is not older than its runner.
        let kill = UndoOp::StopProcessGroup {
            pgid: me,
            start_time: st,
            grace_ms: 0,
            signal: None,
        };
        let not_a_worker = UndoOp::KillProcess {
            pid: me,
            start_time: st,
        };
        assert!(not_a_worker
            .out_of_bounds(&b, Some(my_uid))
            .unwrap()
            .contains("stress-worker"));
        let later = RunBounds {
            runner_start_time: st + 1,
            ..bounds()
        };
        assert!(kill
            .out_of_bounds(&later, Some(my_uid))
            .unwrap()
            .contains("older"));
        let init = UndoOp::ResumeProcess {
            pid: 1,
            start_time: proc::start_time(1).unwrap_or(0),
        };
        assert!(init.out_of_bounds(&b, Some(0)).is_some());
        // Gone or reused: nothing to refuse, apply() does nothing.
        let gone = UndoOp::ResumeProcess {
            pid: me,
            start_time: st + 1,
        };
        assert_eq!(gone.out_of_bounds(&b, None), None);
    }
}
