//! Reading /proc and signalling processes. A process is identified by its pid
//! AND its start time (clock ticks since boot, field 22 of /proc/PID/stat), so
//! a pid reused by another process is never signalled by mistake.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs;
use std::path::{Path, PathBuf};

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

/// Reads a small /proc file (`stat`, `status`) of `pid` into `buf`: one
/// open, one read (a line-ended result is complete: the kernel writes these
/// files in one go), one close. `fs::read_to_string` costs two more system
/// calls per file, which matters when thousands of processes are checked.
fn read_proc_file<'a>(pid: i32, name: &str, buf: &'a mut [u8]) -> Option<&'a str> {
    use std::io::Read;
    let mut f = fs::File::open(format!("/proc/{pid}/{name}")).ok()?;
    let mut n = 0;
    loop {
        let got = f.read(&mut buf[n..]).ok()?;
        n += got;
        if got == 0 || buf[..n].ends_with(b"\n") || n == buf.len() {
            break;
        }
    }
    std::str::from_utf8(&buf[..n]).ok()
}

/// Parses /proc/PID/stat. `None` when the process does not exist (any more).
pub fn info(pid: i32) -> Option<ProcInfo> {
    let mut buf = [0u8; 2048];
    parse_stat(read_proc_file(pid, "stat", &mut buf)?)
}

/// State and start time from /proc/PID/stat, without allocating: the check
/// made before every signal.
pub fn state_and_start(pid: i32) -> Option<(char, u64)> {
    let mut buf = [0u8; 2048];
    let raw = read_proc_file(pid, "stat", &mut buf)?;
    let rest = &raw[raw.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // field 3 is the state; field 22 (the start time) comes 19 later.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some((state, start_time))
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
    state_and_start(pid).map(|(_, st)| st)
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

/// Sends `sig` to `pid` only if it is still the process that started at
/// `start_time` and has not exited (a zombie counts as gone: it can no longer
/// act on a signal).
pub fn signal_if_same(pid: i32, start_time: u64, sig: Signal) -> nix::Result<SignalOutcome> {
    match state_and_start(pid) {
        Some((state, st)) if st == start_time && state != 'Z' && state != 'X' => {}
        _ => return Ok(SignalOutcome::Gone),
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

/// Every process (thread-group leader) in /proc, in pid order. Processes
/// that exit while the list is read are left out.
pub fn list() -> Vec<ProcInfo> {
    let Ok(dir) = fs::read_dir(proc_root()) else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    pids.sort_unstable();
    pids.into_iter().filter_map(info).collect()
}

/// The user ids of a process from /proc/PID/status: real, effective, saved, filesystem.
pub fn uids(pid: i32) -> Option<[u32; 4]> {
    let mut buf = [0u8; 8192];
    parse_status_ids(read_proc_file(pid, "status", &mut buf)?, "Uid:")
}

/// Parses a `Uid:`/`Gid:` line of /proc/PID/status.
pub fn parse_status_ids(status: &str, key: &str) -> Option<[u32; 4]> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let v: Vec<u32> = line[key.len()..]
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    Some([v[0], v[1], v[2], v[3]])
}

/// The effective capability set of this process (`CapEff` in /proc/self/status).
pub fn own_effective_caps() -> u64 {
    fs::read_to_string(proc_root().join("self").join("status"))
        .ok()
        .and_then(|s| parse_cap_eff(&s))
        .unwrap_or(0)
}

/// Parses the `CapEff:` line of /proc/PID/status (hexadecimal).
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
}

/// Bit of CAP_KILL in a capability set.
pub const CAP_KILL_BIT: u64 = 1 << 5;

/// Whether this process may send (most) signals to `pid`, following the
/// kernel's rule: CAP_KILL, or our real or effective uid equals the target's
/// real or saved uid. `None` when the target's uids cannot be read.
pub fn may_signal(pid: i32) -> Option<bool> {
    SignalRights::mine().may_signal(pid)
}

/// This process's side of the kill(2) permission rule, read once for
/// checking many targets.
pub struct SignalRights {
    ruid: u32,
    euid: u32,
    cap_kill: bool,
}

impl SignalRights {
    pub fn mine() -> SignalRights {
        SignalRights {
            ruid: nix::unistd::getuid().as_raw(),
            euid: nix::unistd::geteuid().as_raw(),
            cap_kill: own_effective_caps() & CAP_KILL_BIT != 0,
        }
    }

    /// [`may_signal`] for `pid` (no /proc read when we hold CAP_KILL).
    pub fn may_signal(&self, pid: i32) -> Option<bool> {
        if self.cap_kill {
            return Some(true);
        }
        let target = uids(pid)?;
        Some(may_signal_ids(
            self.ruid, self.euid, false, target[0], target[2],
        ))
    }
}

/// The kernel's permission rule for kill(2) (SIGCONT within a session aside).
pub fn may_signal_ids(ruid: u32, euid: u32, cap_kill: bool, t_ruid: u32, t_suid: u32) -> bool {
    cap_kill || ruid == t_ruid || ruid == t_suid || euid == t_ruid || euid == t_suid
}

/// At most this many bytes of a pid file are read: a pid and some whitespace.
const PIDFILE_MAX: usize = 64;

/// Reads a pid file: one positive number, surrounding whitespace allowed.
/// Only a regular file is read (not a FIFO or a device such as /dev/zero),
/// and at most a few bytes of it; errors name the file, never its content.
pub fn read_pidfile(path: &Path) -> Result<i32, String> {
    match read_pidfile_if_exists(path)? {
        Some(pid) => Ok(pid),
        None => Err(format!(
            "cannot read pid file {}: it does not exist",
            path.display()
        )),
    }
}

/// Like [`read_pidfile`], but a missing file is `Ok(None)`.
pub fn read_pidfile_if_exists(path: &Path) -> Result<Option<i32>, String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read pid file {}: {e}", path.display())),
    };
    let ft = file
        .metadata()
        .map_err(|e| format!("cannot read pid file {}: {e}", path.display()))?
        .file_type();
    if !ft.is_file() {
        let what = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_dir() {
            "a directory"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(format!(
            "pid file {} is {what}; give a regular file that holds a process id",
            path.display()
        ));
    }
    let mut buf = Vec::with_capacity(PIDFILE_MAX);
    file.take(PIDFILE_MAX as u64)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read pid file {}: {e}", path.display()))?;
    let not_a_pid = || {
        format!(
            "pid file {} does not hold a pid (its content is not shown)",
            path.display()
        )
    };
    let text = std::str::from_utf8(&buf).map_err(|_| not_a_pid())?;
    let mut words = text.split_ascii_whitespace();
    let first = words.next().unwrap_or("");
    // A pid that runs up to the read limit may be cut short: not a pid.
    if buf.len() == PIDFILE_MAX && words.next().is_none() && !text.ends_with(char::is_whitespace) {
        return Err(not_a_pid());
    }
    match first.parse::<i32>() {
        Ok(p) if p > 0 && first.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(p)),
        _ => Err(not_a_pid()),
    }
}

/// The pids in a cgroup directory's `cgroup.procs` and in those of all its
/// descendant cgroups (works for v1 and v2 directories).
pub fn pids_in_cgroup_tree(dir: &Path) -> std::io::Result<Vec<i32>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let procs = d.join("cgroup.procs");
        match fs::read_to_string(&procs) {
            Ok(raw) => out.extend(raw.split_whitespace().filter_map(|x| x.parse::<i32>().ok())),
            // The top directory must be a cgroup; a sub-cgroup may vanish meanwhile.
            Err(e) if d == dir => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", procs.display()),
                ))
            }
            Err(_) => continue,
        }
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(e.path());
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The cgroups of a process, one `(hierarchy-id, controllers, path)` per line
/// of /proc/PID/cgroup (`0::/path` for cgroup v2).
pub fn cgroups(pid: i32) -> Option<Vec<(u32, String, String)>> {
    let raw = fs::read_to_string(proc_root().join(pid.to_string()).join("cgroup")).ok()?;
    Some(
        raw.lines()
            .filter_map(|l| {
                let mut it = l.splitn(3, ':');
                let id = it.next()?.parse().ok()?;
                let ctrl = it.next()?.to_string();
                let path = it.next()?.to_string();
                Some((id, ctrl, path))
            })
            .collect(),
    )
}

/// Is systemd the init system (the test `sd_booted()` makes)?
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Clock ticks per second, the unit of [`ProcInfo::start_time`].
pub fn clock_ticks_per_sec() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    }
}

/// A start time (clock ticks since boot) in milliseconds since boot.
pub fn ticks_to_ms(ticks: u64) -> u64 {
    ticks.saturating_mul(1000) / clock_ticks_per_sec()
}

/// Milliseconds since boot now (CLOCK_BOOTTIME, the clock process start times use).
pub fn boot_time_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Whether `pid` is a faultline runner or watchdog (any faultline process
/// but a `stress-worker`): its executable is this one (same device and
/// inode, also after an upgrade replaced the file) or a file whose name
/// starts with `faultline`; when /proc/PID/exe cannot be read (another
/// user's process, as non-root), its name. A process can pretend to be
/// faultline only to protect itself, never to expose another.
pub fn is_faultline_control(pid: i32) -> bool {
    let worker = cmdline_args(pid)
        .get(1)
        .is_some_and(|a| a == "stress-worker");
    !worker && runs_faultline(pid)
}

fn cmdline_args(pid: i32) -> Vec<String> {
    std::fs::read(proc_root().join(pid.to_string()).join("cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn runs_faultline(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let exe = proc_root().join(pid.to_string()).join("exe");
    if let (Ok(theirs), Ok(ours)) = (
        std::fs::metadata(&exe),
        std::fs::metadata(proc_root().join("self/exe")),
    ) {
        if theirs.dev() == ours.dev() && theirs.ino() == ours.ino() {
            return true;
        }
    }
    match std::fs::read_link(&exe) {
        Ok(target) => target
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("faultline")),
        Err(_) => info(pid).is_some_and(|i| i.comm.starts_with("faultline")),
    }
}

/// The real user running faultline: uid, account name, and `SUDO_USER`
/// (who asked for root through sudo), for the journal.
pub fn current_user() -> (u32, Option<String>, Option<String>) {
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name);
    let sudo = std::env::var("SUDO_USER").ok().filter(|s| !s.is_empty());
    (uid.as_raw(), name, sudo)
}

#[cfg(test)]
mod tests {

    /// A pinned process is signalled through its pidfd; its exit shows on
    /// the pidfd, once reaped it is gone (even if its pid were reused), and a
    /// wrong start time is never pinned.
    #[test]
    fn pinned_process_signals_and_sees_its_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let st = loop {
            if let Some(st) = start_time(pid) {
                break st;
            }
        };
        assert_eq!(Pinned::open(pid, st + 1).unwrap_err(), PinError::Gone);
        let (pin, state) = Pinned::open(pid, st).expect("pinned");
        assert_ne!(state, 'T');
        assert_eq!(pin.signal(Signal::SIGSTOP), Ok(SignalOutcome::Sent));
        let stopped = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(5));
            info(pid).is_some_and(|i| i.state == 'T')
        });
        assert!(stopped, "SIGSTOP through the pidfd stopped it");
        assert_eq!(pin.signal(Signal::SIGCONT), Ok(SignalOutcome::Sent));
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        // Not reaped yet: a zombie, which counts as gone.
        let gone = (0..400).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(5));
            pin.exited()
        });
        assert!(gone, "the pidfd reports the exit");
        child.wait().unwrap();
        assert_eq!(pin.signal(Signal::SIGCONT), Ok(SignalOutcome::Gone));
    }

    #[test]
    fn state_and_start_agrees_with_the_full_parse() {
        let me = std::process::id() as i32;
        let i = info(me).unwrap();
        assert_eq!(state_and_start(me), Some((i.state, i.start_time)));
        assert!(uids(me).is_some());
    }
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

    #[test]
    fn parses_status_ids_and_caps() {
        let st = "Name:\tsleep\nUid:\t1000\t1001\t1002\t1003\nGid:\t5\t5\t5\t5\nCapEff:\t0000000000000020\n";
        assert_eq!(parse_status_ids(st, "Uid:"), Some([1000, 1001, 1002, 1003]));
        assert_eq!(parse_cap_eff(st), Some(CAP_KILL_BIT));
        assert!(may_signal_ids(1000, 1000, false, 1000, 1000));
        assert!(may_signal_ids(1, 1000, false, 5, 1000));
        assert!(!may_signal_ids(1000, 1000, false, 0, 0));
        assert!(may_signal_ids(1000, 1000, true, 0, 0));
    }

    #[test]
    fn lists_this_process_and_reads_pidfiles() {
        let me = std::process::id() as i32;
        assert!(list().iter().any(|p| p.pid == me));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.pid");
        fs::write(&f, " 4242\n").unwrap();
        assert_eq!(read_pidfile(&f), Ok(4242));
        fs::write(&f, "root:$6$secret:19000:0:99999:7:::\n").unwrap();
        let e = read_pidfile(&f).unwrap_err();
        assert!(
            e.contains("does not hold a pid") && !e.contains("secret"),
            "{e}"
        );
        fs::write(&f, "+12").unwrap();
        assert!(read_pidfile(&f).is_err());
        assert_eq!(read_pidfile_if_exists(&dir.path().join("none")), Ok(None));
        let e = read_pidfile(Path::new("/dev/zero")).unwrap_err();
        assert!(e.contains("a device"), "{e}");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(read_pidfile(&fifo).unwrap_err().contains("a FIFO"));
        assert!(read_pidfile(&dir.path().join("none"))
            .unwrap_err()
            .contains("cannot read"));
    }

    #[test]
    fn reads_cgroup_trees_from_a_plain_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cgroup.procs"), "10\n11\n").unwrap();
        fs::create_dir(dir.path().join("child")).unwrap();
        fs::write(dir.path().join("child/cgroup.procs"), "12\n10\n").unwrap();
        assert_eq!(pids_in_cgroup_tree(dir.path()).unwrap(), vec![10, 11, 12]);
        assert!(pids_in_cgroup_tree(&dir.path().join("nope")).is_err());
    }

    #[test]
    fn start_times_are_on_the_boot_clock() {
        let me = std::process::id() as i32;
        let started = ticks_to_ms(start_time(me).unwrap());
        let now = boot_time_ms();
        assert!(started <= now + 20, "started {started} now {now}");
        assert!(cgroups(me).is_some_and(|c| !c.is_empty()));
    }
}

/// A process pinned by a pidfd (Linux 5.3+): a signal sent through it
/// reaches that very process or none, never another that reused its pid.
/// The runner keeps one per paused process, so rollback needs no /proc read
/// per process and has no window in which a pid can be reused.
#[derive(Debug)]
pub struct Pinned {
    fd: std::os::fd::OwnedFd,
    pub pid: i32,
}

/// Why a process could not be pinned.
#[derive(Debug, PartialEq, Eq)]
pub enum PinError {
    /// It exited, or its pid now belongs to a process with another start time.
    Gone,
    /// No pidfd could be opened (old kernel, file descriptor limit): the
    /// caller falls back to checking the start time before each signal.
    Unavailable(nix::errno::Errno),
}

impl std::os::fd::AsRawFd for Pinned {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl Pinned {
    /// Pins `pid` and checks, after the pidfd is open, that it is the
    /// process that started at `start_time` and has not exited. Returns its
    /// state letter too.
    pub fn open(pid: i32, start_time: u64) -> Result<(Pinned, char), PinError> {
        use std::os::fd::FromRawFd;
        if pid <= 0 {
            return Err(PinError::Gone);
        }
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(match nix::errno::Errno::last() {
                nix::errno::Errno::ESRCH => PinError::Gone,
                e => PinError::Unavailable(e),
            });
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
        match state_and_start(pid) {
            Some((state, st)) if st == start_time && state != 'Z' && state != 'X' => {
                Ok((Pinned { fd, pid }, state))
            }
            _ => Err(PinError::Gone),
        }
    }

    /// Has the process exited (a zombie counts)? The pidfd turns readable
    /// then. Only the tests ask: [`Pinned::signal`] does not, to save a
    /// system call per process.
    #[cfg(test)]
    fn exited(&self) -> bool {
        use std::os::fd::AsRawFd;
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n > 0 && p.revents & (libc::POLLIN | libc::POLLHUP) != 0
    }

    /// Sends `sig` to the pinned process; `Gone` once it has been reaped.
    /// (A zombie not yet reaped takes the signal and ignores it: checking
    /// for that first would cost a system call per process.)
    pub fn signal(&self, sig: Signal) -> nix::Result<SignalOutcome> {
        use std::os::fd::AsRawFd;
        // SAFETY: pidfd_send_signal(fd, sig, NULL info, 0 flags).
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig as i32,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r == 0 {
            return Ok(SignalOutcome::Sent);
        }
        match nix::errno::Errno::last() {
            nix::errno::Errno::ESRCH => Ok(SignalOutcome::Gone),
            e => Err(e),
        }
    }
}

/// Makes room for `n` more open files: raises this process's soft limit
/// (often 1,024) toward its hard limit when pinning `n` targets needs it.
/// Left as it is otherwise, so the commands faultline runs inherit the usual
/// limit. Errors are ignored: pinning then falls back per process.
pub fn make_fd_room(n: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let open = fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(64) as u64;
    let want = open + n as u64 + 256;
    if want > soft {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard);
    }
}
