//! Sampling benchmarks (`cargo bench --bench sampling`), against the release
//! binary and local HTTP servers this bench controls:
//!
//! 1. abort latency on a hung target: interval 200ms, probe timeout 5s,
//!    `consecutive_failures: 3`; at a point of the sampling period that
//!    varies from run to run, the bench makes the server accept and never
//!    answer; measured from that moment to the `abort_triggered` event (both
//!    wall clock). 10 runs, p50/p95/max. The schedule's bound is about
//!    (count + 1) x interval = 800ms (the first hung sample starts within
//!    one interval of the hang, then 3 intervals until the third is overdue).
//! 2. sampling fidelity: 20 probes x 50ms for `FAULTLINE_BENCH_SECS` (default
//!    30) seconds of method, against a fast server (answers at once) and a
//!    slow one (250ms per answer, so about 5 samples of each probe overlap):
//!    samples taken vs expected, skipped, and how late samples started
//!    against their schedule (p50: median over the probes; p95: worst probe).
//!
//! Results and the machine go into docs/performance.md.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_faultline")
}

/// A local HTTP server answering 200 after `delay`; while `hang` is set it
/// accepts and never answers (the connections are kept open).
fn server(delay: Duration, hang: Arc<AtomicBool>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            if hang.load(Ordering::SeqCst) {
                held.lock().unwrap().push(s);
                continue;
            }
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf);
                std::thread::sleep(delay);
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
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

/// Runs an experiment; returns its events (`--events -`) and its journal.
/// `on_event` sees each event as it comes.
fn run(
    dir: &Path,
    file: &Path,
    mut on_event: impl FnMut(&serde_json::Value),
) -> (Vec<serde_json::Value>, serde_json::Value) {
    let journal = dir.join("journal.json");
    let _ = std::fs::remove_file(&journal);
    let mut child = Command::new(bin())
        .args(["run", file.to_str().unwrap(), "--events", "-", "-q"])
        .arg("--journal")
        .arg(&journal)
        .current_dir(dir)
        .env("FAULTLINE_STATE_DIR", dir.join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut events = Vec::new();
    for line in out.lines().map_while(Result::ok) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            on_event(&v);
            events.push(v);
        }
    }
    let _ = child.wait();
    let j = serde_json::from_str(&std::fs::read_to_string(&journal).unwrap()).unwrap();
    (events, j)
}

fn abort_latency(dir: &Path, runs: usize) -> Vec<f64> {
    let hang = Arc::new(AtomicBool::new(false));
    let port = server(Duration::ZERO, hang.clone());
    let file = dir.join("hung.yaml");
    std::fs::write(
        &file,
        format!(
            r#"
title: hung target
hypothesis: h
steady_state:
  interval: 200ms
  probes:
    - name: web
      http: {{url: "http://127.0.0.1:{port}/"}}
      timeout: 5s
      before: {{samples: 1}}
      after: {{within: 5s, successes: 1}}
method:
  - pause: 20s
abort:
  - probe: web
    consecutive_failures: 3
"#
        ),
    )
    .unwrap();
    let mut lat = Vec::new();
    for i in 0..runs {
        hang.store(false, Ordering::SeqCst);
        let mut hung_at = None;
        let mut abort_at = None;
        let (_, j) = run(dir, &file, |e| match e["event"].as_str() {
            Some("step_started") => {
                // Hang at a different point of the sampling period each run.
                std::thread::sleep(Duration::from_millis(300 + (i as u64 * 37) % 200));
                hung_at = Some(chrono::Utc::now());
                hang.store(true, Ordering::SeqCst);
            }
            Some("abort_triggered") => {
                abort_at = e["at"].as_str().and_then(|a| a.parse().ok());
                hang.store(false, Ordering::SeqCst);
            }
            _ => {}
        });
        match (hung_at, abort_at) {
            (Some(h), Some(a)) => {
                let a: chrono::DateTime<chrono::Utc> = a;
                let ms = (a - h).num_microseconds().unwrap() as f64 / 1000.0;
                let d = &j["probes"][0]["during"];
                eprintln!(
                    "run {i}: hang -> abort {ms:.0} ms (during: {} taken, {} skipped, {} cut, start jitter max {} ms)",
                    d["samples"], d["skipped"], d["cut"], d["start_jitter_ms"]["max"]
                );
                lat.push(ms)
            }
            _ => panic!("run {i} did not abort"),
        }
    }
    lat
}

struct Fidelity {
    expected: f64,
    taken: f64,
    skipped: f64,
    skipped_in_flight: f64,
    jitter_p50: f64,
    jitter_p95: f64,
    jitter_max: f64,
}

fn fidelity(dir: &Path, delay: Duration, secs: u64) -> Fidelity {
    let port = server(delay, Arc::default());
    let mut probes = String::new();
    for i in 0..20 {
        probes.push_str(&format!(
            "    - name: p{i}\n      http: {{url: \"http://127.0.0.1:{port}/\"}}\n      timeout: 2s\n      before: {{samples: 1}}\n      during: {{min_success: 100%}}\n      after: {{within: 5s, successes: 1}}\n"
        ));
    }
    let file = dir.join("fidelity.yaml");
    std::fs::write(
        &file,
        format!(
            "title: fidelity\nhypothesis: h\nlimits: {{max_duration: 1h}}\nsteady_state:\n  interval: 50ms\n  probes:\n{probes}method:\n  - pause: {secs}s\n"
        ),
    )
    .unwrap();
    let (events, j) = run(dir, &file, |_| {});
    let skipped_in_flight: f64 = events
        .iter()
        .filter(|e| e["event"] == "sampling" && e["phase"] == "during")
        .map(|e| e["skipped_in_flight"].as_f64().unwrap_or(0.0))
        .sum();
    let mut f = Fidelity {
        expected: 0.0,
        taken: 0.0,
        skipped: 0.0,
        skipped_in_flight,
        jitter_p50: 0.0,
        jitter_p95: 0.0,
        jitter_max: 0.0,
    };
    let mut p50s = Vec::new();
    for p in j["probes"].as_array().unwrap() {
        let d = &p["during"];
        f.expected += d["expected"].as_f64().unwrap_or(0.0);
        f.taken += d["samples"].as_f64().unwrap_or(0.0);
        f.skipped += d["skipped"].as_f64().unwrap_or(0.0);
        let jit = &d["start_jitter_ms"];
        p50s.push(jit["p50"].as_f64().unwrap_or(0.0));
        f.jitter_p95 = f.jitter_p95.max(jit["p95"].as_f64().unwrap_or(0.0));
        f.jitter_max = f.jitter_max.max(jit["max"].as_f64().unwrap_or(0.0));
    }
    f.jitter_p50 = percentile(&mut p50s, 50.0);
    f
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let dir = tempfile::tempdir().unwrap();
    let secs: u64 = std::env::var("FAULTLINE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let runs = 20;
    let mut lat = abort_latency(dir.path(), runs);
    let fast = fidelity(dir.path(), Duration::ZERO, secs);
    let slow = fidelity(dir.path(), Duration::from_millis(250), secs);

    println!("faultline sampling benchmarks");
    println!();
    println!("| measure | p50 | p95 | max | bound |");
    println!("|---|---|---|---|---|");
    println!(
        "| hung target -> abort (200ms interval, 3 consecutive failures, 5s timeout; {runs} runs) | {:.0} ms | {:.0} ms | {:.0} ms | about 800 ms |",
        percentile(&mut lat, 50.0),
        percentile(&mut lat, 95.0),
        percentile(&mut lat, 100.0)
    );
    println!();
    println!("| 20 probes x 50ms, {secs}s | expected | taken | skipped (in-flight bound) | taken/expected | start jitter p50 | p95 | max |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, f) in [("fast target", &fast), ("250ms target", &slow)] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} ({:.0}) | {:.2}% | {:.1} ms | {:.1} ms | {:.1} ms |",
            f.expected,
            f.taken,
            f.skipped,
            f.skipped_in_flight,
            100.0 * f.taken / f.expected.max(1.0),
            f.jitter_p50,
            f.jitter_p95,
            f.jitter_max
        );
    }
}
