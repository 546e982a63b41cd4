//! Runner benchmarks (`cargo bench --bench runner`), against the release binary:
//!
//! 1. failure -> rollback: a 100ms probe interval and an abort on the first
//!    failing sample; the target (a local HTTP server) starts failing while a
//!    process_pause fault is active; measured from the moment the server
//!    fails to the `fault_rolled_back` event. 20 runs, p50/p95/max.
//! 2. overhead: a one-probe, one-step experiment (a 1s pause, one sample
//!    before and after): wall time minus the configured 1s.
//! 3. peak RSS of the runner process (from wait4's rusage).
//!
//! Results and the machine go into docs/performance.md.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUNS: usize = 20;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_faultline")
}

/// A local HTTP server answering 200, or 500 while `failing` is set.
fn server(failing: Arc<AtomicBool>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let failing = failing.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf);
                let (code, body) = if failing.load(Ordering::SeqCst) {
                    ("500 Internal Server Error", "no")
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
    });
    port
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Runs the binary, returns (wall time, peak RSS in KiB, exit code).
/// The child is reaped by `wait4` (for its rusage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn run_measured(args: &[&str], dir: &Path, state: &Path) -> (Duration, i64, i32) {
    let t = Instant::now();
    let child = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env("FAULTLINE_STATE_DIR", state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (rss, code) = wait_rusage(child.id() as i32);
    (t.elapsed(), rss, code)
}

fn wait_rusage(pid: i32) -> (i64, i32) {
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (ru.ru_maxrss, code)
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let dir = tempfile::tempdir().unwrap();
    // The default state directory (/run/faultline as root: a tmpfs), as users get it.
    let state = faultline::journal::store::default_state_dir();
    let failing = Arc::new(AtomicBool::new(false));
    let port = server(failing.clone());

    // 1. Failure -> rollback.
    let mut target = Command::new("sleep")
        .arg("3600")
        .process_group(0)
        .spawn()
        .unwrap();
    let exp = format!(
        r#"
title: failure to rollback
hypothesis: h
steady_state:
  interval: 100ms
  probes:
    - name: web
      http: {{url: "http://127.0.0.1:{port}/"}}
      timeout: 1s
      before: {{samples: 1}}
      after: {{within: 2s, successes: 1}}
abort:
  - probe: web
    consecutive_failures: 1
method:
  - fault:
      process_pause:
        target: {{pid: {pid}}}
    duration: 30s
"#,
        pid = target.id()
    );
    let file = dir.path().join("detect.yaml");
    std::fs::write(&file, exp).unwrap();
    let mut latencies = Vec::new();
    for i in 0..RUNS {
        failing.store(false, Ordering::SeqCst);
        let mut child = Command::new(bin())
            .args([
                "run",
                file.to_str().unwrap(),
                "--no-journal",
                "--events",
                "-",
                "-q",
            ])
            .current_dir(dir.path())
            .env("FAULTLINE_STATE_DIR", &state)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut failed_at: Option<chrono::DateTime<chrono::Utc>> = None;
        for line in out.lines() {
            let Ok(line) = line else { break };
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            match v["event"].as_str() {
                Some("fault_verified") => {
                    // Fail at a random point of the sampling period.
                    std::thread::sleep(Duration::from_millis((i as u64 * 37) % 100));
                    failed_at = Some(chrono::Utc::now());
                    failing.store(true, Ordering::SeqCst);
                }
                Some("fault_rolled_back") => {
                    let at: chrono::DateTime<chrono::Utc> =
                        v["at"].as_str().unwrap().parse().unwrap();
                    if let Some(f) = failed_at {
                        latencies.push((at - f).num_microseconds().unwrap() as f64 / 1000.0);
                    }
                    failing.store(false, Ordering::SeqCst);
                }
                _ => {}
            }
        }
        let _ = child.wait();
    }
    let _ = target.kill();
    let _ = target.wait();
    let p50 = percentile(&mut latencies, 50.0);
    let p95 = percentile(&mut latencies, 95.0);
    let max = percentile(&mut latencies, 100.0);

    // 2 and 3. Overhead and RSS of a one-probe, one-step run.
    let exp = format!(
        r#"
title: overhead
hypothesis: h
steady_state:
  interval: 100ms
  probes:
    - name: web
      http: {{url: "http://127.0.0.1:{port}/"}}
      before: {{samples: 1}}
      after: {{successes: 1}}
method:
  - pause: 1s
"#
    );
    let file = dir.path().join("overhead.yaml");
    std::fs::write(&file, exp).unwrap();
    failing.store(false, Ordering::SeqCst);
    let mut overheads = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..RUNS {
        let (wall, kib, code) = run_measured(
            &["run", file.to_str().unwrap(), "--no-journal", "-q"],
            dir.path(),
            &state,
        );
        assert_eq!(code, 0, "the overhead experiment must hold");
        overheads.push(wall.as_secs_f64() * 1000.0 - 1000.0);
        rss.push(kib as f64 / 1024.0);
    }
    let (_, vkib, vcode) = run_measured(&["validate", file.to_str().unwrap()], dir.path(), &state);
    assert_eq!(vcode, 0);

    let o50 = percentile(&mut overheads, 50.0);
    let o95 = percentile(&mut overheads, 95.0);
    let rss_max = percentile(&mut rss, 100.0);
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let size = std::fs::metadata(bin()).map_or(0, |m| m.len());
    println!("faultline runner benchmarks ({RUNS} runs each)");
    println!(
        "machine: {cpus} CPUs; load average at the end: {}; binary: {} ({:.1} MiB, the bench profile = the release profile that is shipped)",
        loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        bin(),
        size as f64 / (1024.0 * 1024.0)
    );
    println!("| measure | p50 | p95 | max | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| target failing -> fault rolled back (100ms interval, abort on first failure) | {p50:.0} ms | {p95:.0} ms | {max:.0} ms | p95 < 250 ms |"
    );
    println!(
        "| runner overhead beyond configured waits (1 probe, 1 step) | {o50:.0} ms | {o95:.0} ms | {:.0} ms | < 50 ms |",
        percentile(&mut overheads, 100.0)
    );
    println!("| peak RSS of `run` | | | {rss_max:.1} MiB | < 20 MiB |");
    println!(
        "| peak RSS of `validate` | | | {:.1} MiB | |",
        vkib as f64 / 1024.0
    );
}
