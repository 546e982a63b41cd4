//! `process` probe: counts live processes (zombies excluded) found by exact
//! name (/proc/PID/comm), by pidfile, or by a regex on the command line.
//!
//! `expect.running` (default `true` when `count` is not given) asks for at
//! least one (`true`) or none (`false`); `expect.count` bounds the number.
//! A missing pidfile counts as no process; an unreadable or garbled one is an
//! error. faultline's own process is never counted. /proc is read on a
//! blocking thread, since reading another process's cmdline can stall.

use super::Sample;
use crate::experiment::model::{Bounds, Expect, ProcessProbe};
use crate::sys::proc;
use regex::Regex;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct ProcessCheck {
    selector: Selector,
    running: Option<bool>,
    count: Option<Bounds>,
}

#[derive(Clone)]
enum Selector {
    Name(String),
    Pidfile(PathBuf),
    Cmdline(Regex),
}

/// Longest name the kernel keeps in /proc/PID/comm.
const COMM_MAX: usize = 15;

impl ProcessCheck {
    pub fn new(spec: &ProcessProbe, expect: &Expect) -> Result<Self, String> {
        let selector = match (&spec.name, &spec.pidfile, &spec.cmdline) {
            (Some(n), None, None) => {
                if n.is_empty() {
                    return Err("process.name is empty".into());
                }
                if n.len() > COMM_MAX {
                    return Err(format!(
                        "process.name `{n}` is longer than {COMM_MAX} bytes; the kernel truncates names to {COMM_MAX} (it would be `{}`), so use `cmdline` to match it",
                        truncate_bytes(n, COMM_MAX)
                    ));
                }
                Selector::Name(n.clone())
            }
            (None, Some(p), None) => {
                if p.trim().is_empty() {
                    return Err("process.pidfile is empty".into());
                }
                Selector::Pidfile(PathBuf::from(p))
            }
            (None, None, Some(re)) => Selector::Cmdline(
                Regex::new(re)
                    .map_err(|e| format!("process.cmdline `{re}` is not a valid regex: {e}"))?,
            ),
            _ => {
                return Err(
                    "a process probe needs exactly one of `name`, `pidfile` or `cmdline`".into(),
                )
            }
        };
        Ok(ProcessCheck {
            selector,
            running: expect.running,
            count: expect.count.clone(),
        })
    }

    pub fn describe(&self) -> String {
        let what = self.selector.what();
        match (&self.count, self.running) {
            (Some(b), _) => format!("processes {what}: {}", bounds_text(b)),
            (None, Some(false)) => format!("no process {what}"),
            _ => format!("a process {what}"),
        }
    }

    pub async fn sample(&self) -> Sample {
        let started = Instant::now();
        let selector = self.selector.clone();
        let found = tokio::task::spawn_blocking(move || selector.find()).await;
        let latency = started.elapsed();
        match found {
            Ok(Ok(f)) => judge(
                &f,
                &self.selector.what(),
                self.running,
                self.count.as_ref(),
                latency,
            ),
            Ok(Err(e)) => Sample::error(latency, e),
            Err(e) => Sample::error(latency, format!("reading /proc failed: {e}")),
        }
    }
}

/// What a scan found.
#[derive(Debug, Default)]
struct Found {
    pids: Vec<i32>,
    /// Why nothing was found, when it is not obvious (missing pidfile).
    note: Option<String>,
}

impl Selector {
    fn what(&self) -> String {
        match self {
            Selector::Name(n) => format!("named `{n}`"),
            Selector::Pidfile(p) => format!("in pidfile {}", p.display()),
            Selector::Cmdline(r) => format!("with command line matching /{}/", r.as_str()),
        }
    }

    fn find(&self) -> Result<Found, String> {
        let me = std::process::id() as i32;
        match self {
            Selector::Pidfile(path) => {
                let pid = match proc::read_pidfile_if_exists(path)? {
                    Some(pid) => pid,
                    None => {
                        return Ok(Found {
                            pids: vec![],
                            note: Some(format!("pidfile {} does not exist", path.display())),
                        })
                    }
                };
                if proc::alive(pid) {
                    Ok(Found {
                        pids: vec![pid],
                        note: None,
                    })
                } else {
                    Ok(Found {
                        pids: vec![],
                        note: Some(format!(
                            "pid {pid} from pidfile {} is not running",
                            path.display()
                        )),
                    })
                }
            }
            Selector::Name(name) => {
                let pids = scan(|pid, info| {
                    pid != me && &info.comm == name && !matches!(info.state, 'Z' | 'X')
                })?;
                Ok(Found { pids, note: None })
            }
            Selector::Cmdline(re) => {
                let pids = scan(|pid, info| {
                    pid != me
                        && !info.kernel_thread
                        && !matches!(info.state, 'Z' | 'X')
                        && proc::cmdline(pid).is_some_and(|c| !c.is_empty() && re.is_match(&c))
                })?;
                Ok(Found { pids, note: None })
            }
        }
    }
}

/// Pids of every process in /proc for which `keep` holds (sorted).
fn scan(keep: impl Fn(i32, &proc::ProcInfo) -> bool) -> Result<Vec<i32>, String> {
    let root = proc::proc_root();
    let dir = std::fs::read_dir(&root)
        .map_err(|e| format!("cannot list {}: {e}; is /proc mounted?", root.display()))?;
    let mut pids: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| proc::info(pid).is_some_and(|i| keep(pid, &i)))
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

fn judge(
    found: &Found,
    what: &str,
    running: Option<bool>,
    count: Option<&Bounds>,
    latency: Duration,
) -> Sample {
    let n = found.pids.len();
    let listed = pid_list(&found.pids);
    let why = found
        .note
        .as_ref()
        .map(|w| format!(" ({w})"))
        .unwrap_or_default();
    let running = running.or(if count.is_none() { Some(true) } else { None });
    match running {
        Some(true) if n == 0 => {
            return Sample::failure(latency, format!("no process {what} is running{why}"))
        }
        Some(false) if n > 0 => {
            return Sample::failure(
                latency,
                format!("{} {what} running{listed}, expected none", plural(n)),
            )
        }
        _ => {}
    }
    if let Some(b) = count {
        if !b.contains(n as f64) {
            return Sample::failure(
                latency,
                format!(
                    "{} {what}{listed}{why}, expected {}",
                    plural(n),
                    bounds_text(b)
                ),
            );
        }
    }
    Sample::success(latency, plural(n))
}

fn plural(n: usize) -> String {
    match n {
        0 => "0 processes".into(),
        1 => "1 process".into(),
        n => format!("{n} processes"),
    }
}

fn pid_list(pids: &[i32]) -> String {
    if pids.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = pids.iter().take(10).map(|p| p.to_string()).collect();
    let more = if pids.len() > 10 { ", ..." } else { "" };
    format!(" (pid {}{more})", shown.join(", "))
}

pub(crate) fn bounds_text(b: &Bounds) -> String {
    match (b.min, b.max) {
        (Some(lo), Some(hi)) if lo == hi => format!("exactly {lo}"),
        (Some(lo), Some(hi)) => format!("between {lo} and {hi}"),
        (Some(lo), None) => format!("at least {lo}"),
        (None, Some(hi)) => format!("at most {hi}"),
        (None, None) => "any number".into(),
    }
}

fn truncate_bytes(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::record::SampleStatus;

    fn found(pids: &[i32]) -> Found {
        Found {
            pids: pids.to_vec(),
            note: None,
        }
    }

    #[test]
    fn running_defaults_to_at_least_one() {
        let s = judge(&found(&[]), "named `x`", None, None, Duration::ZERO);
        assert_eq!(s.status, SampleStatus::Failure);
        assert_eq!(s.detail, "no process named `x` is running");
        let s = judge(&found(&[7, 8]), "named `x`", None, None, Duration::ZERO);
        assert!(s.is_success());
        assert_eq!(s.detail, "2 processes");
    }

    #[test]
    fn running_false_expects_none() {
        assert!(judge(&found(&[]), "n", Some(false), None, Duration::ZERO).is_success());
        let s = judge(
            &found(&[42]),
            "named `x`",
            Some(false),
            None,
            Duration::ZERO,
        );
        assert_eq!(s.status, SampleStatus::Failure);
        assert!(s.detail.contains("pid 42"), "{}", s.detail);
    }

    #[test]
    fn count_bounds() {
        let b = Bounds {
            min: Some(2.0),
            max: Some(3.0),
        };
        assert!(judge(&found(&[1, 2]), "w", None, Some(&b), Duration::ZERO).is_success());
        let s = judge(&found(&[1, 2, 3, 4]), "w", None, Some(&b), Duration::ZERO);
        assert_eq!(s.status, SampleStatus::Failure);
        assert!(
            s.detail.contains("expected between 2 and 3"),
            "{}",
            s.detail
        );
        // `count: {max: 0}` alone means "none", without the default `running: true`.
        let none = Bounds {
            min: None,
            max: Some(0.0),
        };
        assert!(judge(&found(&[]), "w", None, Some(&none), Duration::ZERO).is_success());
    }

    #[test]
    fn long_names_are_rejected() {
        let spec = ProcessProbe {
            name: Some("a-very-long-process-name".into()),
            pidfile: None,
            cmdline: None,
        };
        let e = ProcessCheck::new(&spec, &Expect::default()).err().unwrap();
        assert!(e.contains("use `cmdline`"), "{e}");
    }
}
