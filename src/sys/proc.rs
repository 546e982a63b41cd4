//! Reading /proc and signalling processes. A process is identified by its pid
//! AND its start time (clock ticks since boot, field 22 of /proc/PID/stat), so
//! a pid reused by another process is never signalled by mistake.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs;
use std::path::PathBuf;

/// What /proc says of one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    /// One-letter state: R, S, D, T (stopped), t, Z, X, I.
    pub state: char,
    pub start_time: u64,
    pub comm: String,
    /// Kernel threads have flag PF_KTHREAD (0x00200000).
    pub kernel_thread: bool,
}

pub fn proc_root() -> PathBuf {
    PathBuf::from("/proc")
}

/// Parses /proc/PID/stat. `None` when the process does not exist (any more).
pub fn info(pid: i32) -> Option<ProcInfo> {
    let raw = fs::read_to_string(proc_root().join(pid.to_string()).join("stat")).ok()?;
    parse_stat(&raw)
}

/// Parses the text of /proc/PID/stat. The comm field may contain spaces and
/// parentheses, so it is everything between the first `(` and the last `)`.
pub fn parse_stat(raw: &str) -> Option<ProcInfo> {
    let open = raw.find('(')?;
    let close = raw.rfind(')')?;
    let pid: i32 = raw[..open].trim().parse().ok()?;
    let comm = raw[open + 1..close].to_string();
    let rest: Vec<&str> = raw[close + 1..].split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let state = rest.first()?.chars().next()?;
    let ppid: i32 = rest.get(1)?.parse().ok()?;
    let flags: u64 = rest.get(6)?.parse().ok()?;
    let start_time: u64 = rest.get(19)?.parse().ok()?;
    Some(ProcInfo {
        pid,
        ppid,
        state,
        start_time,
        comm,
        kernel_thread: flags & 0x0020_0000 != 0,
    })
}

/// The start time of `pid`, if it exists.
pub fn start_time(pid: i32) -> Option<u64> {
    info(pid).map(|i| i.start_time)
}

/// The full command line, arguments joined by spaces (empty for kernel threads).
pub fn cmdline(pid: i32) -> Option<String> {
    let raw = fs::read(proc_root().join(pid.to_string()).join("cmdline")).ok()?;
    let parts: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    Some(parts.join(" "))
}

/// Is `pid` still the process that started at `start_time`?
pub fn is_same(pid: i32, start_time: u64) -> bool {
    self::start_time(pid) == Some(start_time)
}

/// What happened when we tried to signal a recorded process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalOutcome {
    Sent,
    /// The process is gone, or its pid now belongs to another process.
    Gone,
}

/// Sends `sig` to `pid` only if it is still the process that started at `start_time`.
pub fn signal_if_same(pid: i32, start_time: u64, sig: Signal) -> nix::Result<SignalOutcome> {
    if !is_same(pid, start_time) {
        return Ok(SignalOutcome::Gone);
    }
    match kill(Pid::from_raw(pid), sig) {
        Ok(()) => Ok(SignalOutcome::Sent),
        Err(nix::errno::Errno::ESRCH) => Ok(SignalOutcome::Gone),
        Err(e) => Err(e),
    }
}

/// Is the process alive and not a zombie?
pub fn alive(pid: i32) -> bool {
    matches!(info(pid), Some(i) if i.state != 'Z' && i.state != 'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let raw = "1234 (my (odd) proc) T 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let i = parse_stat(raw).unwrap();
        assert_eq!(i.pid, 1234);
        assert_eq!(i.comm, "my (odd) proc");
        assert_eq!(i.state, 'T');
        assert_eq!(i.ppid, 1);
        assert_eq!(i.start_time, 98765);
        assert!(!i.kernel_thread);
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id() as i32;
        let i = info(me).unwrap();
        assert_eq!(i.pid, me);
        assert!(is_same(me, i.start_time));
        assert!(!is_same(me, i.start_time + 1));
    }
}
