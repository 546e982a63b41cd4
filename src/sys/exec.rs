//! Running the experiment's own commands (actions, rollbacks, setup
//! processes): argv without a shell, each in its own process group so a
//! timeout or an interruption kills the whole tree, output kept bounded.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// Most output kept per stream (the tail is what matters).
pub const OUTPUT_LIMIT: usize = 64 * 1024;

#[derive(Clone, Debug)]
pub struct ExecResult {
    /// `None` when killed (timeout, interruption) or ended by a signal.
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub timed_out: bool,
    pub cancelled: bool,
}

/// Builds a command in its own process group.
pub fn command(argv: &[String], cwd: Option<&str>, env: &BTreeMap<String, String>) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    cmd.envs(env);
    cmd.process_group(0);
    cmd.kill_on_drop(true);
    cmd
}

/// Finds a program the way exec would: a name with a `/` is a path
/// (relative to `cwd` if given), anything else is looked up in `path_var`
/// (empty entries mean the current directory).
pub fn find_program_in(
    program: &str,
    path_var: &str,
    cwd: Option<&std::path::Path>,
) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    let is_exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let under_cwd = |p: &str| match cwd {
        Some(dir) if Path::new(p).is_relative() => dir.join(p),
        _ => PathBuf::from(p),
    };
    if program.is_empty() {
        return None;
    }
    if program.contains('/') {
        let p = under_cwd(program);
        return is_exec(&p).then_some(p);
    }
    path_var
        .split(':')
        .map(|dir| under_cwd(if dir.is_empty() { "." } else { dir }).join(program))
        .find(|p| is_exec(p))
}

/// [`find_program_in`] with this process's PATH.
pub fn find_program(prog: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    find_program_in(prog, &path, None)
}

/// Kills a child's whole process group and reaps the child.
pub async fn kill_group(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    let _ = child.wait().await;
}

async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(r: Option<R>) -> String {
    let Some(mut r) = r else {
        return String::new();
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > OUTPUT_LIMIT * 2 {
                    kept.drain(..kept.len() - OUTPUT_LIMIT);
                }
            }
        }
    }
    if kept.len() > OUTPUT_LIMIT {
        kept.drain(..kept.len() - OUTPUT_LIMIT);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// Runs a command to completion, killing its process group on timeout or
/// when `cancel` turns true.
pub async fn run(
    argv: &[String],
    cwd: Option<&str>,
    env: &BTreeMap<String, String>,
    timeout: Duration,
    mut cancel: tokio::sync::watch::Receiver<bool>,
) -> Result<ExecResult, String> {
    if argv.is_empty() {
        return Err("empty command".into());
    }
    let started = Instant::now();
    let mut child = command(argv, cwd, env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{}`: {e}", argv[0]))?;
    let out = tokio::spawn(read_bounded(child.stdout.take()));
    let err = tokio::spawn(read_bounded(child.stderr.take()));
    let mut timed_out = false;
    let mut cancelled = false;
    let status = tokio::select! {
        s = child.wait() => s.ok(),
        _ = tokio::time::sleep(timeout) => { timed_out = true; None }
        _ = cancel.wait_for(|c| *c) => { cancelled = true; None }
    };
    if status.is_none() {
        kill_group(&mut child).await;
    } else if let Some(pid) = child.id() {
        // The leader exited; do not leave its children behind.
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    let stdout = out.await.unwrap_or_default();
    let stderr = err.await.unwrap_or_default();
    Ok(ExecResult {
        exit_code: status.and_then(|s| s.code()),
        stdout,
        stderr,
        elapsed: started.elapsed(),
        timed_out,
        cancelled,
    })
}

/// Environment variable set on every host-changing child (`tc`, `nft`,
/// `ip`) the runner starts: its value is the runner's pid, so a watchdog can
/// find the children still in flight after the runner died.
pub const HOST_CHILD_MARKER: &str = "FAULTLINE_HOST_CHILD_OF";

/// Makes a child die with this process: SIGKILL on the parent's death
/// (PR_SET_PDEATHSIG), checked again after setting it in case the parent
/// died in between, plus [`HOST_CHILD_MARKER`]. Only for children the calling
/// thread waits for (the signal follows the thread that forked).
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    cmd.env(HOST_CHILD_MARKER, parent.to_string());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(137);
            }
            Ok(())
        });
    }
}

/// Pids of live processes carrying [`HOST_CHILD_MARKER`]`=runner_pid`.
pub fn host_children_of(runner_pid: i32) -> Vec<i32> {
    let want = format!("{HOST_CHILD_MARKER}={runner_pid}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|d| d.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == want.as_bytes()))
        })
        .collect()
}

/// After the runner died: kills its host-changing children still in flight
/// and waits (up to `timeout`) until they are gone, so an undo that finds
/// nothing to undo is not overtaken by a `tc`/`nft` finishing late.
/// Returns the pids that were still there when the wait ended.
pub fn reap_host_children(runner_pid: i32, timeout: Duration) -> Vec<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = host_children_of(runner_pid);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        for pid in &left {
            let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `n` lines of some output, for error messages.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A command line as a person would type it, each word quoted when needed.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes a word for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("eth0"), "eth0");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
