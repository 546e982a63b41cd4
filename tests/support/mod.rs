//! Helpers shared by the integration tests: a controllable HTTP server, the
//! built binary, temporary experiment files and process guards.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_faultline")
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A tiny HTTP server on 127.0.0.1: answers 200 `ok`, or 500 while the file
/// `fail_flag` exists (so an experiment's command step can break it).
pub struct FlagServer {
    pub port: u16,
    pub fail_flag: PathBuf,
    stop: Arc<AtomicBool>,
}

impl FlagServer {
    pub fn start(dir: &Path) -> FlagServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let fail_flag = dir.join(format!("fail-{port}"));
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, stop2) = (fail_flag.clone(), stop.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let flag = flag.clone();
                        std::thread::spawn(move || {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                            let mut buf = [0u8; 4096];
                            let _ = s.read(&mut buf);
                            let (code, body) = if flag.exists() {
                                ("500 Internal Server Error", "broken")
                            } else {
                                ("200 OK", "ok")
                            };
                            let _ = write!(
                                s,
                                "HTTP/1.1 {code}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            );
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FlagServer {
            port,
            fail_flag,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for FlagServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A temporary directory with an isolated state dir and helpers to run the binary.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.current_dir(self.path())
            .env("FAULTLINE_STATE_DIR", self.state_dir())
            .env("NO_COLOR", "1")
            .env_remove("FAULTLINE_TEST_PANIC_AT")
            .stdin(Stdio::null());
        c
    }
    /// `faultline run FILE --journal journal.json --junit junit.xml`.
    pub fn run(&self, file: &Path, extra: &[&str]) -> Output {
        self.cmd()
            .arg("run")
            .arg(file)
            .args([
                "--journal",
                "journal.json",
                "--junit",
                "junit.xml",
                "--markdown",
                "report.md",
            ])
            .args(extra)
            .output()
            .unwrap()
    }
    pub fn journal(&self) -> serde_json::Value {
        let text =
            std::fs::read_to_string(self.path().join("journal.json")).expect("journal written");
        serde_json::from_str(&text).expect("journal is JSON")
    }
    pub fn status(&self) -> Output {
        self.cmd().arg("status").output().unwrap()
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A child process killed (with its process group) when dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let pid = self.0.id() as i32;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGCONT,
        );
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sleep N` in its own process group.
pub fn sleeper(secs: u32) -> ChildGuard {
    use std::os::unix::process::CommandExt;
    ChildGuard(
        Command::new("sleep")
            .arg(secs.to_string())
            .process_group(0)
            .spawn()
            .unwrap(),
    )
}

/// The one-letter state of a process (`T` when stopped), or None when gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = s.rfind(')')?;
    s[close + 1..].trim_start().chars().next()
}

/// Polls `f` until it is true or `timeout` passes; returns whether it became true.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The file lock every test that touches the host (netns, nft, tc, cgroups,
/// containers, stressors) holds while it runs: /tmp/faultline-itest.lock.
/// Released when the returned file is dropped.
pub fn host_lock() -> std::fs::File {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/faultline-itest.lock")
        .expect("open /tmp/faultline-itest.lock");
    // SAFETY: flock on a descriptor we own; it blocks until the lock is free.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(r, 0, "flock /tmp/faultline-itest.lock");
    f
}
