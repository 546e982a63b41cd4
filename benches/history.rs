//! `faultline history` on 10,000 journals (`cargo bench --bench history`).
//!
//! Writes 10,000 realistic journals into a temporary directory: the held
//! journal of tests/fixtures (25 KiB: two probes, every sample of a 40 s
//! run, a network fault with its observations) with 25 experiments, a mix of
//! verdicts, timings, latencies and start times, plus 2% in Chaos Toolkit's
//! format. Then runs the release binary's `faultline history DIR --format
//! json` 5 times (the first one on a cold-ish page cache right after writing)
//! and prints wall time p50/max and peak RSS. Figures go into
//! docs/performance.md.

use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const JOURNALS: usize = 10_000;
const EXPERIMENTS: usize = 25;
const RUNS: usize = 5;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_faultline")
}

/// A small deterministic generator (no dependency on a seed crate).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn write_journals(dir: &Path) -> u64 {
    let template: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-held.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut rng = Lcg(42);
    let mut bytes = 0;
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    for i in 0..JOURNALS {
        let exp = i % EXPERIMENTS;
        let start = t0 + chrono::Duration::minutes(i as i64 * 7);
        let text = if i % 50 == 49 {
            serde_json::to_string_pretty(&json!({
                "chaoslib-version": "1.42.0",
                "experiment": {"title": format!("ctk experiment {}", exp % 5), "method": []},
                "start": start.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
                "status": "completed",
                "deviated": false,
                "steady_states": {"before": {"steady_state_met": true, "probes": []},
                                  "after": {"steady_state_met": true, "probes": []},
                                  "during": []},
                "run": [{"activity": {"name": "kill"}, "status": "succeeded",
                         "start": start.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()}],
                "rollbacks": [],
                "duration": 12.5
            }))
            .unwrap()
        } else {
            let mut j = template.clone();
            j["run_id"] = json!(format!("{}-{i:05}", start.format("%Y%m%d-%H%M%S")));
            j["experiment"]["title"] = json!(format!("experiment {exp}: web survives a fault"));
            j["experiment"]["file"] = json!(format!("experiments/e{exp}.yaml"));
            j["experiment"]["sha256"] = json!(format!("{:064x}", exp));
            j["started_at"] = json!(start.to_rfc3339());
            let (verdict, code) = match rng.below(20) {
                0..=13 => ("held", 0),
                14..=16 => ("deviated", 1),
                17 => ("aborted", 2),
                18 => ("not_steady", 3),
                _ => ("rollback_failed", 4),
            };
            j["outcome"]["verdict"] = json!(verdict);
            j["outcome"]["exit_code"] = json!(code);
            j["timings"]["time_to_detect_ms"] = json!(50.0 + rng.below(2000) as f64);
            j["timings"]["time_to_recover_ms"] = json!(100.0 + rng.below(5000) as f64);
            for p in j["probes"].as_array_mut().unwrap() {
                p["during"]["latency_ms"]["p95"] = json!(5.0 + rng.below(300) as f64);
            }
            serde_json::to_string_pretty(&j).unwrap()
        };
        bytes += text.len() as u64;
        std::fs::write(dir.join(format!("faultline-{i:05}.json")), text).unwrap();
    }
    bytes
}

/// Runs the binary, reaped by `wait4` for its peak RSS (KiB).
#[allow(clippy::zombie_processes)]
fn measured(dir: &Path) -> (Duration, i64) {
    let t = Instant::now();
    let child = Command::new(bin())
        .args(["history", "--format", "json"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    let elapsed = t.elapsed();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "faultline history failed"
    );
    (elapsed, ru.ru_maxrss)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let bytes = write_journals(dir.path());
    let wrote = t.elapsed();
    let mut times = Vec::new();
    let mut rss = 0;
    for _ in 0..RUNS {
        let (d, r) = measured(dir.path());
        times.push(d);
        rss = rss.max(r);
    }
    let first = times[0];
    times.sort();
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("faultline history benchmark");
    println!(
        "machine: {cpus} CPUs, load {}; {} journals, {:.0} MiB (written in {:.1}s)",
        loadavg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        JOURNALS,
        bytes as f64 / (1024.0 * 1024.0),
        wrote.as_secs_f64()
    );
    println!(
        "history --format json over {JOURNALS} journals: first {:.0} ms, p50 {:.0} ms, max {:.0} ms ({RUNS} runs); peak RSS {:.1} MiB",
        first.as_secs_f64() * 1000.0,
        times[RUNS / 2].as_secs_f64() * 1000.0,
        times[RUNS - 1].as_secs_f64() * 1000.0,
        rss as f64 / 1024.0
    );
}
