//! `syscall_error`: make a target process's system calls fail (`write` or
//! `fsync` with `EIO`, `openat` with `EACCES`, `connect` with
//! `ECONNREFUSED`...), on every call, a share of calls or after the first N,
//! optionally only on given paths.
//!
//! The mechanism is strace's syscall tampering (`strace --inject`), attached
//! to the target's pid with `-f` (every thread, and children forked while
//! the fault is active). strace is proven, packaged everywhere, and detaches
//! cleanly on SIGTERM; when it dies anyway (SIGKILL), the kernel detaches its
//! tracees. See docs/architecture.md for why not seccomp user notification.
//!
//! Write-ahead: strace is forked, but held before `exec` on a pipe until the
//! undo record ([`UndoOp::StopTracer`], naming the forked pid and start time
//! and every target's pid, start time and uid) is durable. Only then does it
//! become strace and attach. Rollback (the runner, the watchdog, `recover`)
//! SIGTERMs that strace, waits until every target runs untraced, and resumes
//! a target left stopped.

use super::stress::spawn_from_stable_thread;
use super::target::TargetRng;
use crate::fault::target::{ExcludedProcess, ProcessTarget, Resolved, TargetProcess};
use crate::fault::{FaultContext, FaultError, FaultHealth, FaultImpl, PlannedOp, UndoLog};
use crate::journal::undo::{TraceeRef, UndoOp};
use crate::sys::proc;
use crate::sys::text::escape;
use crate::units::Percent;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyscallErrorSpec {
    /// The processes whose calls fail (every thread, and children they fork
    /// while the fault is active).
    pub target: ProcessTarget,
    /// System call names as in `man 2` (`write`, `fsync`, `openat`, `connect`).
    pub syscalls: Vec<String>,
    /// The error the calls return: an errno name such as `EIO`, `ENOSPC`,
    /// `EACCES`, `ECONNREFUSED`.
    pub errno: String,
    /// Fail this share of the matching calls: strace fails every Nth call,
    /// so the share must be 100%/N (`50%`, `25%`, `10%`, `1%`...). Default 100%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<Percent>,
    /// Let the first N matching calls succeed, then start failing them
    /// (counted per system call and per thread, as strace does). Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u32>,
    /// Only calls on these files (strace `-P`): exact absolute paths, which
    /// need not exist yet. Calls on file descriptors count when the
    /// descriptor refers to one of them. Default: every call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

pub fn build_syscall_error(s: &SyscallErrorSpec) -> Box<dyn FaultImpl> {
    Box::new(SyscallError::new(s.clone()))
}

/// The Debian/Ubuntu package that has strace.
pub const STRACE_PACKAGE: &str = "strace";
/// strace's limit for the numbers in `when=first+step`.
const WHEN_MAX: u64 = 65_535;
/// At most this many `paths`.
const MAX_PATHS: usize = 32;
/// How long strace may take to attach to every target (a busy host is slow).
const ATTACH_WAIT: Duration = Duration::from_secs(10);
/// How long the forked tracer may take to say it is ready to become strace.
const FORK_WAIT: Duration = Duration::from_secs(10);
/// How long a detach may take to show in /proc after strace is gone.
const DETACH_WAIT: Duration = Duration::from_secs(5);
/// strace's own messages kept for errors and the report.
const MAX_DIAGNOSTICS: usize = 8;

/// System call names (x86_64 list; strace checks the name for this host's
/// architecture again in preflight).
const SYSCALL_NAMES: &str = "
    _sysctl accept accept4 access acct add_key adjtimex afs_syscall alarm arch_prctl bind
    bpf brk capget capset chdir chmod chown chroot clock_adjtime clock_getres clock_gettime
    clock_nanosleep clock_settime clone clone3 close close_range connect copy_file_range creat
    create_module delete_module dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
    epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
    exit_group faccessat faccessat2 fadvise64 fallocate fanotify_init fanotify_mark fchdir
    fchmod fchmodat fchown fchownat fcntl fdatasync fgetxattr finit_module flistxattr flock
    fork fremovexattr fsconfig fsetxattr fsmount fsopen fspick fstat fstatfs fsync ftruncate
    futex futex_waitv futimesat get_kernel_syms get_mempolicy get_robust_list get_thread_area
    getcpu getcwd getdents getdents64 getegid geteuid getgid getgroups getitimer getpeername
    getpgid getpgrp getpid getpmsg getppid getpriority getrandom getresgid getresuid
    getrlimit getrusage getsid getsockname getsockopt gettid gettimeofday getuid getxattr
    init_module inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel
    io_destroy io_getevents io_pgetevents io_setup io_submit io_uring_enter io_uring_register
    io_uring_setup ioctl ioperm iopl ioprio_get ioprio_set kcmp kexec_file_load kexec_load keyctl
    kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lgetxattr
    link linkat listen listxattr llistxattr lookup_dcookie lremovexattr lseek lsetxattr lstat
    madvise mbind membarrier memfd_create memfd_secret migrate_pages mincore mkdir mkdirat mknod
    mknodat mlock mlock2 mlockall mmap modify_ldt mount mount_setattr move_mount move_pages
    mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedsend mq_unlink mremap
    msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep
    newfstatat nfsservctl open open_by_handle_at open_tree openat openat2 pause perf_event_open
    personality pidfd_getfd pidfd_open pidfd_send_signal pipe pipe2 pivot_root pkey_alloc
    pkey_free pkey_mprotect poll ppoll prctl pread64 preadv preadv2 prlimit64 process_madvise
    process_mrelease process_vm_readv process_vm_writev pselect6 ptrace putpmsg pwrite64 pwritev
    pwritev2 query_module quotactl quotactl_fd read readahead readlink readlinkat readv reboot
    recvfrom recvmmsg recvmsg remap_file_pages removexattr rename renameat renameat2 request_key
    restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo
    rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_tgsigqueueinfo sched_get_priority_max
    sched_get_priority_min sched_getaffinity sched_getattr sched_getparam sched_getscheduler
    sched_rr_get_interval sched_setaffinity sched_setattr sched_setparam sched_setscheduler
    sched_yield seccomp security select semctl semget semop semtimedop sendfile sendmmsg sendmsg
    sendto set_mempolicy set_mempolicy_home_node set_robust_list set_thread_area set_tid_address
    setdomainname setfsgid setfsuid setgid setgroups sethostname setitimer setns setpgid
    setpriority setregid setresgid setresuid setreuid setrlimit setsid setsockopt settimeofday
    setuid setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 socket
    socketpair splice stat statfs statx swapoff swapon symlink symlinkat sync sync_file_range
    syncfs sysfs sysinfo syslog tee tgkill time timer_create timer_delete timer_getoverrun
    timer_gettime timer_settime timerfd_create timerfd_gettime timerfd_settime times tkill
    truncate tuxcall umask umount2 uname unlink unlinkat unshare uselib userfaultfd ustat
    utime utimensat utimes vfork vhangup vmsplice vserver wait4 waitid write writev
";

/// Errno names strace accepts besides those libc has numbers for.
const ERRNO_ALIASES: [&str; 3] = ["EWOULDBLOCK", "EDEADLOCK", "ENOTSUP"];

fn syscall_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| SYSCALL_NAMES.split_whitespace().map(String::from).collect())
}

fn errno_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut v: Vec<String> = (1..256)
            .map(nix::errno::Errno::from_raw)
            .filter(|e| *e != nix::errno::Errno::UnknownErrno)
            .map(|e| format!("{e:?}"))
            .chain(ERRNO_ALIASES.iter().map(|s| s.to_string()))
            .collect();
        v.sort();
        v.dedup();
        v
    })
}

/// Is `name` a system call faultline knows?
pub fn is_syscall(name: &str) -> bool {
    syscall_names().iter().any(|n| n == name)
}

/// Is `name` an errno name strace accepts?
pub fn is_errno(name: &str) -> bool {
    errno_names().iter().any(|n| n == name)
}

/// strace fails every `step`-th matching call: the step for `percent`, when
/// 100%/step is within 5% of it.
pub fn step_for(percent: f64) -> Result<u64, String> {
    if percent <= 0.0 || !percent.is_finite() {
        return Err(
            "0% fails no call; give e.g. `10%`, or leave `percent` out for every call".into(),
        );
    }
    let exact = 100.0 / percent;
    let n = exact.round().max(1.0);
    if n > WHEN_MAX as f64 {
        return Err(format!(
            "{percent}% is less than strace can do (one call in {WHEN_MAX})"
        ));
    }
    let achieved = 100.0 / n;
    if (achieved - percent).abs() / percent > 0.05 {
        let lo = exact.floor().max(1.0);
        let hi = exact.ceil().max(lo + 1.0);
        return Err(format!(
            "strace fails every Nth call, so the share must be 100%/N; {percent}% is not: use {} (every {}) or {} (every {})",
            share(lo),
            nth(lo as u64),
            share(hi),
            nth(hi as u64)
        ));
    }
    Ok(n as u64)
}

fn share(n: f64) -> String {
    let p = 100.0 / n;
    let s = format!("{p:.2}");
    format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
}

fn nth(n: u64) -> String {
    match n {
        1 => "call".into(),
        2 => "2nd call".into(),
        3 => "3rd call".into(),
        n => format!("{n}th call"),
    }
}

/// strace's `when=` for "let `after` calls pass, then fail every `step`-th";
/// `None` for every call.
pub fn when_expr(after: u64, step: u64) -> Option<String> {
    match (after, step) {
        (0, 1) => None,
        (a, 1) => Some(format!("{}+", a + 1)),
        (a, s) => Some(format!("{}+{s}", a + s)),
    }
}

/// Problems in the spec found without touching the host: (field after the
/// fault's path, message).
pub fn check_spec(s: &SyscallErrorSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if s.syscalls.is_empty() {
        out.push((
            ".syscalls".into(),
            "give at least one system call, e.g. `[write]` or `[fsync, fdatasync]`".into(),
        ));
    }
    for (i, name) in s.syscalls.iter().enumerate() {
        if is_syscall(name) {
            if s.syscalls[..i].contains(name) {
                out.push((
                    format!(".syscalls[{i}]"),
                    format!("`{name}` is listed twice"),
                ));
            }
            continue;
        }
        let hint = crate::experiment::yaml::did_you_mean(name, syscall_names())
            .map(|m| format!("; did you mean `{m}`?"))
            .unwrap_or_else(|| {
                "; give a name as in `man 2 syscalls`, e.g. `write`, `fsync`, `openat`, `connect`"
                    .into()
            });
        out.push((
            format!(".syscalls[{i}]"),
            format!("`{}` is not a system call{hint}", escape(name)),
        ));
    }
    if !is_errno(&s.errno) {
        let hint = crate::experiment::yaml::did_you_mean(&s.errno, errno_names())
            .map(|m| format!("; did you mean `{m}`?"))
            .unwrap_or_else(|| {
                "; give a name such as `EIO`, `ENOSPC`, `EACCES`, `ECONNREFUSED`".into()
            });
        out.push((
            ".errno".into(),
            format!("`{}` is not an errno name{hint}", escape(&s.errno)),
        ));
    }
    let mut step = 1;
    if let Some(p) = s.percent {
        match step_for(p.0) {
            Ok(n) => step = n,
            Err(m) => out.push((".percent".into(), m)),
        }
    }
    let after = u64::from(s.after.unwrap_or(0));
    if after + step > WHEN_MAX {
        out.push((
            ".after".into(),
            format!(
                "strace counts calls up to {WHEN_MAX}: `after` plus one in every {step} must stay within it"
            ),
        ));
    }
    if s.paths.len() > MAX_PATHS {
        out.push((
            ".paths".into(),
            format!("at most {MAX_PATHS} paths; strace matches each exactly"),
        ));
    }
    for (i, p) in s.paths.iter().enumerate() {
        let field = format!(".paths[{i}]");
        if !p.starts_with('/') {
            out.push((field, "give an absolute path".into()));
        } else if p.split('/').any(|c| c == "..") {
            out.push((field, "`..` is not allowed in the path".into()));
        } else if p.contains(['*', '?', '[']) {
            out.push((
                field,
                "strace matches exact paths, not patterns: list each file (it need not exist yet, e.g. a SQLite `-journal`)".into(),
            ));
        } else if p.chars().any(char::is_control) {
            out.push((field, "the path has control characters".into()));
        }
    }
    out
}

// ---------------------------------------------------------------- /proc

/// A `Key:\tvalue` line of /proc/PID/status (or a task's status).
fn status_field(path: &str, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    s.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        Some(v.trim().to_string())
    })
}

/// Who traces `pid` (0: nobody); `None` when it is gone.
pub fn tracer_of(pid: i32) -> Option<i32> {
    status_field(&format!("/proc/{pid}/status"), "TracerPid")?
        .parse()
        .ok()
}

/// Every thread of `pid` and who traces it.
fn thread_tracers(pid: i32) -> Vec<(i32, i32)> {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let tid: i32 = e.file_name().to_str()?.parse().ok()?;
            let t = status_field(&format!("/proc/{pid}/task/{tid}/status"), "TracerPid")?;
            Some((tid, t.parse().ok()?))
        })
        .collect()
}

/// The state letter of `pid` if it is still the process that started at
/// `start_time` and has not exited.
fn live_state(pid: i32, start_time: u64) -> Option<char> {
    proc::info(pid)
        .filter(|i| i.start_time == start_time && i.state != 'Z' && i.state != 'X')
        .map(|i| i.state)
}

fn is_stopped(state: char) -> bool {
    state == 'T' || state == 't'
}

/// `kernel.yama.ptrace_scope`, where Yama is built in.
fn ptrace_scope() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()?
        .trim()
        .parse()
        .ok()
}

const CAP_SYS_PTRACE_BIT: u64 = 1 << 19;

/// Why this process may not attach to `p`, if it may not.
fn ptrace_refusal(p: &TargetProcess) -> Option<FaultError> {
    let scope = ptrace_scope();
    if scope == Some(3) {
        return Some(FaultError::privileges(
            "kernel.yama.ptrace_scope is 3: ptrace is disabled on this host until it reboots, so syscall_error cannot attach strace",
        ));
    }
    let cap = proc::own_effective_caps() & CAP_SYS_PTRACE_BIT != 0;
    if cap {
        return None;
    }
    let who = escape(&p.label()).into_owned();
    if let Some(s) = scope.filter(|s| *s >= 1) {
        return Some(FaultError::privileges(format!(
            "syscall_error cannot attach to pid {who}: kernel.yama.ptrace_scope is {s}, which lets a process without CAP_SYS_PTRACE trace only its own descendants; run faultline as root (or with CAP_SYS_PTRACE)"
        )));
    }
    let me = nix::unistd::getuid().as_raw();
    match proc::uids(p.pid) {
        Some(u) if u[0] == me && u[1] == me && u[2] == me => None,
        Some(u) => Some(FaultError::privileges(format!(
            "syscall_error cannot attach to pid {who}: it runs as uid {}, faultline as uid {me} without CAP_SYS_PTRACE; run faultline as root or as that user",
            u[1]
        ))),
        None => None,
    }
}

/// Why `p` cannot be a target now: already traced, or stopped.
fn target_refusal(p: &TargetProcess) -> Option<FaultError> {
    let who = escape(&p.label()).into_owned();
    if let Some(t) = tracer_of(p.pid).filter(|t| *t != 0) {
        let name = proc::info(t)
            .map(|i| escape(&i.comm).into_owned())
            .unwrap_or_else(|| "?".into());
        return Some(FaultError::precondition(format!(
            "syscall_error: pid {who} is already traced by pid {t} ({name}), and a process has only one tracer; detach that debugger or tracer (or end the other syscall_error) first"
        )));
    }
    if let Some(s) = live_state(p.pid, p.start_time).filter(|s| is_stopped(*s)) {
        return Some(FaultError::precondition(format!(
            "syscall_error: pid {who} is stopped (state {s}); resume it first (`kill -CONT {}`): a stopped process would be resumed at rollback",
            p.pid
        )));
    }
    None
}

// ---------------------------------------------------------------- strace

/// What strace's output said so far.
#[derive(Clone, Debug, Default, Serialize)]
struct TraceCounts {
    /// Matching calls that completed (failed or not).
    calls: u64,
    /// Calls strace made fail.
    injected: u64,
    /// The first failed call, as strace printed it (escaped, cut).
    first_injected: Option<String>,
    /// strace's own messages (escaped, cut), the last few.
    diagnostics: Vec<String>,
}

impl TraceCounts {
    fn line(&mut self, raw: &[u8]) {
        let l = String::from_utf8_lossy(raw);
        let l = l.trim_end();
        if l.is_empty() {
            return;
        }
        if l.starts_with("strace: ") {
            if self.diagnostics.len() == MAX_DIAGNOSTICS {
                self.diagnostics.remove(0);
            }
            self.diagnostics.push(cut(l));
            return;
        }
        if l.contains(" = ") {
            self.calls += 1;
        }
        if l.ends_with("(INJECTED)") {
            self.injected += 1;
            if self.first_injected.is_none() {
                self.first_injected = Some(cut(l));
            }
        }
    }
}

/// One line for a report: runs of white space (strace's column padding)
/// made one space, at most 200 characters, escaped.
fn cut(l: &str) -> String {
    let s: String = l
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect();
    escape(&s).into_owned()
}

/// Drains strace's output (its stderr) so strace never blocks on it: every
/// line is counted and dropped; memory stays bounded.
fn drain(mut from: impl Read, counts: Arc<Mutex<TraceCounts>>) {
    const LINE_MAX: usize = 4096;
    let mut chunk = [0u8; 64 * 1024];
    let mut line: Vec<u8> = Vec::with_capacity(512);
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
        for &b in &chunk[..n] {
            if b == b'\n' {
                c.line(&line);
                line.clear();
            } else if line.len() < LINE_MAX {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        counts.lock().unwrap_or_else(|e| e.into_inner()).line(&line);
    }
}

/// The strace command line (program first) for these target pids.
fn strace_argv(strace: &str, s: &SyscallErrorSpec, pids: &[i32]) -> Vec<String> {
    let set = s.syscalls.join(",");
    let step = s.percent.and_then(|p| step_for(p.0).ok()).unwrap_or(1);
    let after = u64::from(s.after.unwrap_or(0));
    let mut inject = format!("{set}:error={}", s.errno);
    if let Some(w) = when_expr(after, step) {
        inject.push_str(&format!(":when={w}"));
    }
    let mut v: Vec<String> = vec![
        strace.into(),
        "-qq".into(),
        "-f".into(),
        "-s".into(),
        "16".into(),
        "-e".into(),
        "signal=none".into(),
        "-e".into(),
        format!("trace={set}"),
        "-e".into(),
        format!("inject={inject}"),
    ];
    for p in &s.paths {
        v.push("-P".into());
        v.push(p.clone());
    }
    for pid in pids {
        v.push("-p".into());
        v.push(pid.to_string());
    }
    v
}

fn find_strace() -> Result<PathBuf, FaultError> {
    crate::sys::exec::find_program("strace").ok_or_else(|| {
        FaultError::precondition(format!(
            "syscall_error needs strace, which is not installed: apt-get install {STRACE_PACKAGE} (Debian/Ubuntu; `dnf install strace` on Fedora)"
        ))
    })
}

/// Asks this host's strace whether it accepts the system calls and errno
/// (its names are per architecture): traces `true` with an injection that
/// never fires.
fn strace_accepts(strace: &PathBuf, s: &SyscallErrorSpec) -> Result<(), FaultError> {
    let Some(t) = crate::sys::exec::find_program("true") else {
        return Ok(());
    };
    let set = s.syscalls.join(",");
    let out = Command::new(strace)
        .args(["-qq", "-o", "/dev/null", "-e"])
        .arg(format!("trace={set}"))
        .arg("-e")
        .arg(format!("inject={set}:error={}:when={WHEN_MAX}", s.errno))
        .arg(t)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .map_err(|e| FaultError::precondition(format!("cannot run strace: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err.lines().next().unwrap_or("").trim();
    Err(FaultError::precondition(format!(
        "syscall_error: strace on this host refuses `{}` with `{}`: {}",
        escape(&set),
        escape(&s.errno),
        cut(first)
    )))
}

/// Forks the tracer held before `exec`, gives its pid to `record`, and lets
/// it become strace only when `record` succeeded. The fork dies with this
/// process (SIGTERM, on which strace detaches) and never execs when this
/// process dies first or `record` fails.
fn spawn_gated(
    argv: &[String],
    record: impl FnOnce(i32, u64) -> Result<(), FaultError>,
) -> Result<Child, FaultError> {
    use nix::fcntl::OFlag;
    let pipe = || {
        nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| FaultError::failed(format!("syscall_error: cannot create a pipe: {e}")))
    };
    let (hello_r, hello_w): (OwnedFd, OwnedFd) = pipe()?;
    let (go_r, go_w): (OwnedFd, OwnedFd) = pipe()?;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own group: a Ctrl-C at the terminal goes to the runner, which
        // rolls back, not to strace directly.
        .process_group(0);
    let parent = std::process::id() as libc::pid_t;
    let (hw, gr, gw) = (hello_w.as_raw_fd(), go_r.as_raw_fd(), go_w.as_raw_fd());
    // SAFETY: only async-signal-safe calls (prctl, getppid, getpid, write,
    // close, read) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::other("parent exited"));
            }
            let me = libc::getpid().to_ne_bytes();
            if libc::write(hw, me.as_ptr().cast(), me.len()) != me.len() as isize {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(gw);
            let mut b = 0u8;
            loop {
                let n = libc::read(gr, (&mut b as *mut u8).cast(), 1);
                if n == 1 && b == b'g' {
                    return Ok(());
                }
                if n < 0 && *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                return Err(std::io::Error::other("not released"));
            }
        });
    }
    std::thread::scope(|s| {
        let h = s.spawn(move || spawn_from_stable_thread(cmd));
        let mut hello = std::fs::File::from(hello_r);
        let deadline = Instant::now() + FORK_WAIT;
        let pid = loop {
            let mut fds = [nix::poll::PollFd::new(
                hello.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)) {
                Ok(n) if n > 0 => {
                    let mut b = [0u8; 4];
                    match hello.read_exact(&mut b) {
                        Ok(()) => break Some(i32::from_ne_bytes(b)),
                        Err(_) => break None,
                    }
                }
                _ if h.is_finished() || Instant::now() >= deadline => break None,
                _ => {}
            }
        };
        drop(hello_w);
        let release = match pid {
            Some(pid) => {
                let st = proc::start_time(pid).unwrap_or(0);
                record(pid, st)
            }
            None => Err(FaultError::failed(
                "syscall_error: the tracer process did not start",
            )),
        };
        let released = match &release {
            Ok(()) => {
                let mut go = std::fs::File::from(go_w);
                std::io::Write::write_all(&mut go, b"g").is_ok()
            }
            Err(_) => {
                drop(go_w);
                false
            }
        };
        drop(go_r);
        let spawned = h
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the spawning thread panicked")));
        release?;
        match spawned {
            Ok(c) if released => Ok(c),
            Ok(mut c) => {
                let _ = c.kill();
                let _ = c.wait();
                Err(FaultError::failed(
                    "syscall_error: cannot release the tracer",
                ))
            }
            Err(e) => Err(FaultError::failed(format!(
                "syscall_error: cannot start strace ({}): {e}",
                argv[0]
            ))),
        }
    })
}

// ---------------------------------------------------------------- the fault

/// One process strace was attached to.
#[derive(Clone, Debug, Serialize)]
struct Traced {
    pid: i32,
    name: String,
    cmdline: String,
    start_time: u64,
}

/// `syscall_error`: strace attached to the chosen processes, injecting errors.
pub struct SyscallError {
    spec: SyscallErrorSpec,
    rng: TargetRng,
    strace_checked: bool,
    started: Option<(Instant, DateTime<Utc>)>,
    tracer: Option<(Child, i32, u64)>,
    argv: Vec<String>,
    traced: Vec<Traced>,
    counts: Arc<Mutex<TraceCounts>>,
    excluded: Vec<ExcludedProcess>,
    notes: Vec<String>,
    exit: Option<String>,
}

impl SyscallError {
    pub fn new(spec: SyscallErrorSpec) -> Self {
        SyscallError {
            rng: spec.target.rng(),
            spec,
            strace_checked: false,
            started: None,
            tracer: None,
            argv: Vec::new(),
            traced: Vec::new(),
            counts: Arc::default(),
            excluded: Vec::new(),
            notes: Vec::new(),
            exit: None,
        }
    }

    fn what(&self) -> String {
        let step = self
            .spec
            .percent
            .and_then(|p| step_for(p.0).ok())
            .unwrap_or(1);
        let after = self.spec.after.unwrap_or(0);
        let mut w = format!(
            "fail {} with {}",
            self.spec.syscalls.join(", "),
            self.spec.errno
        );
        w.push_str(&match step {
            1 => " on every call".to_string(),
            n => format!(" on every {} ({})", nth(n), share(n as f64)),
        });
        if after > 0 {
            w.push_str(&format!(" after the first {after} (per thread)"));
        }
        if !self.spec.paths.is_empty() {
            w.push_str(&format!(" on {}", self.spec.paths.join(", ")));
        }
        escape(&w).into_owned()
    }

    fn counts(&self) -> TraceCounts {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn diagnostics(&self) -> String {
        let d = self.counts().diagnostics;
        if d.is_empty() {
            String::new()
        } else {
            format!(": {}", d.join("; "))
        }
    }

    /// Whether strace exited (and reaps it); records how.
    fn tracer_exited(&mut self) -> Option<String> {
        if let Some(e) = &self.exit {
            return Some(e.clone());
        }
        let (child, pid, _) = self.tracer.as_mut()?;
        match child.try_wait() {
            Ok(Some(st)) => {
                let e = format!("strace (pid {pid}) exited ({st})");
                self.exit = Some(e.clone());
                Some(e)
            }
            _ => None,
        }
    }

    /// The traced processes still alive.
    fn alive(&self) -> Vec<&Traced> {
        self.traced
            .iter()
            .filter(|t| live_state(t.pid, t.start_time).is_some())
            .collect()
    }
}

impl Drop for SyscallError {
    fn drop(&mut self) {
        // The undo stopped strace; reap it so no zombie is left.
        if let Some((c, _, _)) = self.tracer.as_mut() {
            let _ = c.try_wait();
        }
    }
}

impl FaultImpl for SyscallError {
    fn kind(&self) -> &'static str {
        "syscall_error"
    }

    fn target(&self) -> String {
        self.spec.target.describe()
    }

    fn preflight(&mut self, ctx: &FaultContext) -> Result<(), FaultError> {
        if let Some((field, m)) = check_spec(&self.spec).into_iter().next() {
            return Err(FaultError::precondition(format!(
                "syscall_error{field}: {m}"
            )));
        }
        let strace = find_strace()?;
        if !self.strace_checked {
            strace_accepts(&strace, &self.spec)?;
            self.strace_checked = true;
        }
        match self.spec.target.select(ctx, &mut self.rng.clone())? {
            Resolved::Now(sel) => {
                for p in &sel.chosen {
                    if let Some(e) = ptrace_refusal(p).or_else(|| target_refusal(p)) {
                        return Err(e);
                    }
                }
                Ok(())
            }
            Resolved::AtRunTime(_) => Ok(()),
        }
    }

    fn plan(&self, ctx: &FaultContext) -> Vec<PlannedOp> {
        let strace = crate::sys::exec::find_program("strace")
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "strace".into());
        let undo = Some(
            "SIGTERM strace, which detaches (SIGKILL after 3 s: the kernel then detaches), then SIGCONT any target left stopped".to_string(),
        );
        let note = |action: String| PlannedOp {
            action,
            command: None,
            undo: None,
        };
        match self.spec.target.select(ctx, &mut self.rng.clone()) {
            Ok(Resolved::Now(sel)) if sel.chosen.is_empty() => vec![note(format!(
                "nothing: no process matches `{}` now (allow_none)",
                self.spec.target.describe()
            ))],
            Ok(Resolved::Now(sel)) => {
                let pids: Vec<i32> = sel.chosen.iter().map(|p| p.pid).collect();
                let who = sel
                    .chosen
                    .iter()
                    .map(|p| escape(&p.label()).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ");
                vec![PlannedOp {
                    action: format!(
                        "attach strace to pid {who} (every thread and new children) to {}",
                        self.what()
                    ),
                    command: Some(strace_argv(&strace, &self.spec, &pids)),
                    undo,
                }]
            }
            Ok(Resolved::AtRunTime(_)) => vec![PlannedOp {
                action: format!(
                    "attach strace to the process started by setup `{}` (resolved at run time) to {}",
                    escape(self.spec.target.setup.as_deref().unwrap_or_default()),
                    self.what()
                ),
                command: Some({
                    let mut argv = strace_argv(&strace, &self.spec, &[]);
                    argv.push("-p".into());
                    argv.push(format!(
                        "<pid of setup `{}`>",
                        escape(self.spec.target.setup.as_deref().unwrap_or_default())
                    ));
                    argv
                }),
                undo,
            }],
            Err(e) => vec![note(format!("cannot run: {e}"))],
        }
    }

    fn inject(&mut self, ctx: &FaultContext, undo: &mut dyn UndoLog) -> Result<(), FaultError> {
        if ctx.dry_run {
            return Ok(());
        }
        let strace = find_strace()?;
        let sel = self.spec.target.select_now(ctx, &mut self.rng)?;
        self.excluded = sel.excluded;
        self.started = Some((Instant::now(), Utc::now()));
        let mut chosen = Vec::new();
        for p in sel.chosen {
            if live_state(p.pid, p.start_time).is_none() {
                self.notes.push(format!(
                    "pid {} exited before strace could attach; skipped",
                    escape(&p.label())
                ));
                continue;
            }
            if let Some(e) = ptrace_refusal(&p).or_else(|| target_refusal(&p)) {
                return Err(e);
            }
            chosen.push(p);
        }
        if chosen.is_empty() {
            self.notes.push(format!(
                "no process matched `{}` (allow_none); nothing traced",
                self.spec.target.describe()
            ));
            return Ok(());
        }
        let pids: Vec<i32> = chosen.iter().map(|p| p.pid).collect();
        self.argv = strace_argv(&strace.display().to_string(), &self.spec, &pids);
        let tracees: Vec<TraceeRef> = chosen
            .iter()
            .map(|p| TraceeRef {
                pid: p.pid,
                start_time: p.start_time,
                uid: p
                    .uids
                    .map(|u| u.0)
                    .or_else(|| proc::uids(p.pid).map(|u| u[0])),
            })
            .collect();
        let labels = pids
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let mut recorded = None;
        let child = spawn_gated(&self.argv, |pid, start_time| {
            recorded = Some((pid, start_time));
            undo.record(
                &format!("strace tracing pid {labels}"),
                UndoOp::StopTracer {
                    pid,
                    start_time,
                    tracees,
                },
            )
            .map_err(|e| {
                FaultError::failed(format!(
                    "cannot record the undo (stop strace), so strace was not started: {e:#}"
                ))
            })
        })?;
        let (pid, start_time) = recorded.unwrap_or((child.id() as i32, 0));
        let mut child = child;
        if let Some(err) = child.stderr.take() {
            let counts = self.counts.clone();
            std::thread::Builder::new()
                .name("faultline-strace".into())
                .spawn(move || drain(err, counts))
                .map_err(|e| FaultError::failed(format!("cannot read strace's output: {e}")))?;
        }
        self.tracer = Some((child, pid, start_time));
        self.traced = chosen
            .into_iter()
            .map(|p| Traced {
                pid: p.pid,
                name: p.name,
                cmdline: p.cmdline,
                start_time: p.start_time,
            })
            .collect();
        Ok(())
    }

    /// Every thread of every target that still runs has strace as its tracer
    /// (/proc/PID/task/TID/status TracerPid).
    fn verify(&mut self, _ctx: &FaultContext) -> Result<String, FaultError> {
        if self.started.is_none() {
            return Err(FaultError::failed(
                "syscall_error was not injected, so there is nothing to verify",
            ));
        }
        let Some(spid) = self.tracer.as_ref().map(|t| t.1) else {
            let why = self.notes.last().cloned().unwrap_or_default();
            return Ok(format!("nothing traced ({why})"));
        };
        let deadline = Instant::now() + ATTACH_WAIT;
        loop {
            if let Some(e) = self.tracer_exited() {
                return Err(FaultError::failed(format!(
                    "syscall_error: {e} before it attached{}",
                    self.diagnostics()
                )));
            }
            let mut waiting = None;
            let mut threads = 0;
            for t in self.alive() {
                for (tid, tracer) in thread_tracers(t.pid) {
                    threads += 1;
                    if tracer != spid {
                        waiting = Some((t.pid, tid, tracer));
                    }
                }
            }
            let Some((pid, tid, tracer)) = waiting else {
                let alive = self.alive().len();
                if alive == 0 {
                    return Err(FaultError::failed(
                        "syscall_error: every target exited before strace attached",
                    ));
                }
                return Ok(format!(
                    "strace pid {spid} is the tracer (TracerPid) of {threads} thread(s) of {alive} process(es): {}; it will {}",
                    self.alive()
                        .iter()
                        .map(|t| format!("{} ({})", t.pid, escape(&t.name)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    self.what()
                ));
            };
            if Instant::now() >= deadline {
                return Err(FaultError::failed(format!(
                    "syscall_error: thread {tid} of pid {pid} is traced by {tracer}, not by strace pid {spid}, {} s after strace started{}",
                    ATTACH_WAIT.as_secs(),
                    self.diagnostics()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// strace still runs and still traces every target that runs. A target
    /// that exited is not a missing fault (it makes no calls to fail).
    fn health(&mut self, _ctx: &FaultContext) -> Option<FaultHealth> {
        self.started?;
        let spid = self.tracer.as_ref()?.1;
        let alive: Vec<(i32, String)> = self
            .alive()
            .iter()
            .map(|t| (t.pid, escape(&t.name).into_owned()))
            .collect();
        if alive.is_empty() {
            return Some(FaultHealth::present(
                "every target exited; no calls left to fail",
            ));
        }
        if let Some(e) = self.tracer_exited() {
            return Some(FaultHealth::missing(format!(
                "{e}; the targets run untraced{}",
                self.diagnostics()
            )));
        }
        for (pid, name) in &alive {
            match tracer_of(*pid) {
                Some(t) if t == spid => {}
                Some(t) => {
                    return Some(FaultHealth::missing(format!(
                    "pid {pid} ({name}) is no longer traced by strace pid {spid} (TracerPid {t})"
                )))
                }
                None => {}
            }
        }
        let c = self.counts();
        Some(FaultHealth::present(format!(
            "strace pid {spid} traces {} process(es); {} of {} matching call(s) failed with {}",
            alive.len(),
            c.injected,
            c.calls,
            escape(&self.spec.errno)
        )))
    }

    /// strace is gone (reaped) and every target that still runs is untraced
    /// and not stopped.
    fn verify_rollback(&mut self, _ctx: &FaultContext) -> Result<(), FaultError> {
        let Some(spid) = self.tracer.as_ref().map(|t| t.1) else {
            return Ok(());
        };
        let deadline = Instant::now() + DETACH_WAIT;
        loop {
            let gone = self.tracer_exited().is_some();
            let stuck = self.traced.iter().find_map(|t| {
                let state = live_state(t.pid, t.start_time)?;
                let tracer = tracer_of(t.pid).unwrap_or(0);
                (tracer == spid || is_stopped(state)).then_some((t, state, tracer))
            });
            match stuck {
                None if gone => return Ok(()),
                _ if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                None => {
                    return Err(FaultError::failed(format!(
                        "syscall_error: strace pid {spid} still runs after rollback; stop it with `kill {spid}`"
                    )))
                }
                Some((t, state, tracer)) => {
                    return Err(FaultError::failed(format!(
                        "syscall_error: pid {} ({}) is still {} after rollback; {}",
                        t.pid,
                        escape(&t.name),
                        if tracer == spid {
                            format!("traced by strace pid {spid}")
                        } else {
                            format!("stopped (state {state})")
                        },
                        if tracer == spid {
                            format!("stop it with `kill {spid}`")
                        } else {
                            format!("resume it with `kill -CONT {}`", t.pid)
                        }
                    )))
                }
            }
        }
    }

    fn observations(&self) -> serde_json::Value {
        let c = self.counts();
        json!({
            "target": self.spec.target.describe(),
            "syscalls": self.spec.syscalls,
            "errno": self.spec.errno,
            "what": self.what(),
            "injected_at": self.started.map(|(_, t)| t),
            "strace_pid": self.tracer.as_ref().map(|t| t.1),
            "command": self.argv,
            "traced": self.traced,
            "calls_matched": c.calls,
            "calls_failed": c.injected,
            "first_failed_call": c.first_injected,
            "strace_messages": c.diagnostics,
            "strace_exit": self.exit,
            "excluded": self.excluded,
            "notes": self.notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> SyscallErrorSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn shares_map_to_every_nth_call() {
        assert_eq!(step_for(100.0), Ok(1));
        assert_eq!(step_for(50.0), Ok(2));
        assert_eq!(step_for(33.0), Ok(3));
        assert_eq!(step_for(10.0), Ok(10));
        assert_eq!(step_for(1.0), Ok(100));
        let e = step_for(30.0).unwrap_err();
        assert!(
            e.contains("33.33% (every 3rd call)") && e.contains("25% (every 4th call)"),
            "{e}"
        );
        assert!(step_for(0.0).is_err());
        assert!(step_for(0.001).is_err());
    }

    #[test]
    fn when_expressions() {
        assert_eq!(when_expr(0, 1), None);
        assert_eq!(when_expr(5, 1).as_deref(), Some("6+"));
        assert_eq!(when_expr(0, 10).as_deref(), Some("10+10"));
        assert_eq!(when_expr(100, 4).as_deref(), Some("104+4"));
    }

    #[test]
    fn the_strace_command_line() {
        let s = spec(
            "target: {pid: 42}\nsyscalls: [fsync, fdatasync]\nerrno: EIO\npercent: 25%\nafter: 3\npaths: [/srv/db.sqlite]\n",
        );
        assert_eq!(
            strace_argv("strace", &s, &[42, 43]).join(" "),
            "strace -qq -f -s 16 -e signal=none -e trace=fsync,fdatasync -e inject=fsync,fdatasync:error=EIO:when=7+4 -P /srv/db.sqlite -p 42 -p 43"
        );
    }

    #[test]
    fn names_are_checked_with_suggestions() {
        assert!(check_spec(&spec(
            "target: {pid: 42}\nsyscalls: [write, openat, connect]\nerrno: ECONNREFUSED\n"
        ))
        .is_empty());
        let p = check_spec(&spec(
            "target: {pid: 42}\nsyscalls: [fsycn, write, write]\nerrno: eio\npercent: 30%\npaths: [data.db, /srv/*.db]\n",
        ));
        let all = format!("{p:?}");
        assert!(all.contains("did you mean `fsync`"), "{all}");
        assert!(all.contains("listed twice"), "{all}");
        assert!(all.contains("did you mean `EIO`"), "{all}");
        assert!(all.contains("100%/N"), "{all}");
        assert!(all.contains("absolute"), "{all}");
        assert!(all.contains("exact paths"), "{all}");
        let none = check_spec(&spec(
            "target: {pid: 42}\nsyscalls: []\nerrno: EIO\nafter: 65535\n",
        ));
        assert_eq!(none.len(), 2, "{none:?}");
    }

    #[test]
    fn errno_table_has_the_usual_names() {
        for e in [
            "EIO",
            "ENOSPC",
            "EACCES",
            "ECONNREFUSED",
            "EAGAIN",
            "EWOULDBLOCK",
            "EDQUOT",
        ] {
            assert!(is_errno(e), "{e}");
        }
        assert!(!is_errno("UnknownErrno") && !is_errno("eio"));
    }

    /// The tracer runs only once its record is written: the record names
    /// the very process (pid and start time) that then execs; a record that
    /// fails leaves no process behind.
    #[test]
    fn the_tracer_execs_only_after_its_record() {
        let argv: Vec<String> = vec!["sleep".into(), "30".into()];
        let mut seen = None;
        let mut child = spawn_gated(&argv, |pid, st| {
            // Not exec'd yet: still a fork of this test binary.
            let comm = proc::info(pid).map(|i| i.comm).unwrap_or_default();
            seen = Some((pid, st, comm));
            Ok(())
        })
        .unwrap();
        let (pid, st, comm) = seen.unwrap();
        assert_eq!(pid, child.id() as i32);
        assert_ne!(comm, "sleep", "the record came before exec");
        assert!(proc::is_same(pid, st), "same process after exec");
        let execd = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            proc::info(pid).is_some_and(|i| i.comm == "sleep")
        });
        let _ = child.kill();
        let _ = child.wait();
        assert!(execd);

        let mut refused = None;
        let e = spawn_gated(&argv, |pid, _| {
            refused = Some(pid);
            Err(FaultError::failed("disk full"))
        })
        .unwrap_err();
        assert!(e.message.contains("disk full"), "{}", e.message);
        let pid = refused.unwrap();
        assert!(
            proc::info(pid).is_none_or(|i| i.comm != "sleep"),
            "nothing ran"
        );
    }

    #[test]
    fn strace_output_is_counted() {
        let counts = Arc::new(Mutex::new(TraceCounts::default()));
        let text = b"[pid  7] write(3, \"x\", 1) = 1\n[pid  7] write(3, \"x\", 1) = -1 EIO (Input/output error) (INJECTED)\nstrace: Process 7 detached\n[pid 8] fsync(3 <unfinished ...>\n";
        drain(&text[..], counts.clone());
        let c = counts.lock().unwrap().clone();
        assert_eq!((c.calls, c.injected), (2, 1));
        assert_eq!(
            c.diagnostics,
            vec!["strace: Process 7 detached".to_string()]
        );
        assert!(c.first_injected.unwrap().contains("EIO"));
    }
}
