//! Long-run memory bench (`cargo bench --bench long_run`): does the runner's
//! memory stay flat however long a run lasts?
//!
//! 20 TCP probes x 50ms against a loopback listener this bench runs, during
//! a `pause` method of `FAULTLINE_BENCH_SECS` seconds (default 1800), with a
//! journal. Every `FAULTLINE_BENCH_EVERY` seconds (default 5) it reads the
//! runner's VmRSS from /proc/PID/status; at the end it prints the series
//! (once a minute), the least-squares slope after the first minute
//! (KiB/min), the RSS extrapolated to a 4-hour run, the peak RSS (wait4,
//! including the final journal write), the samples in the journal and its
//! size.
//!
//! `FAULTLINE_BIN` runs another binary (e.g. an older build, for a before /
//! after comparison). `cargo test --bench long_run` runs it against the dev
//! build without a release build. Results go into docs/performance.md.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PROBES: usize = 20;

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (VmRSS, RssAnon) in KiB: RssAnon leaves out the binary's mapped pages
/// (large for a dev build).
fn vm_rss_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        s.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("RssAnon:")?))
}

/// Least-squares slope of (minutes, KiB) points, in KiB per minute.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

// The child is reaped by `wait4` (for its rusage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn main() {
    let secs = env_secs("FAULTLINE_BENCH_SECS", 1800);
    let every = env_secs("FAULTLINE_BENCH_EVERY", 5).max(1);
    let bin = std::env::var("FAULTLINE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_faultline").to_string());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");

    // Accepts and closes: a TCP probe only connects.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });

    let mut exp = String::from(
        "title: long run memory\nhypothesis: memory stays flat\nsteady_state:\n  interval: 50ms\n  probes:\n",
    );
    for i in 0..PROBES {
        exp.push_str(&format!(
            "    - name: p{i}\n      tcp: {{host: 127.0.0.1, port: {port}}}\n      timeout: 1s\n      before: {{samples: 1}}\n      after: {{successes: 1}}\n"
        ));
    }
    exp.push_str(&format!(
        "limits:\n  max_duration: {}s\nmethod:\n  - pause: {secs}s\n",
        secs + 120
    ));
    let file = dir.path().join("long.yaml");
    std::fs::write(&file, exp).unwrap();
    let journal = dir.path().join("journal.json");

    let t0 = Instant::now();
    let child = Command::new(&bin)
        .args([
            "run",
            file.to_str().unwrap(),
            "--journal",
            journal.to_str().unwrap(),
            "-q",
        ])
        .current_dir(dir.path())
        .env("FAULTLINE_STATE_DIR", &state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr.txt")).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut series: Vec<(f64, u64, u64)> = Vec::new();
    let mut last_journal_size = 0;
    // Until the method ends (the process then writes the journal and exits).
    while let Some((kib, anon)) = vm_rss_kib(pid) {
        let min = t0.elapsed().as_secs_f64() / 60.0;
        // A zombie has no VmRSS line: the loop ends.
        series.push((min, kib, anon));
        if let Ok(m) = std::fs::metadata(&journal) {
            last_journal_size = m.len();
        }
        std::thread::sleep(Duration::from_secs(every));
    }
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(pid as i32, &mut status, 0, &mut ru) };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let wall = t0.elapsed();

    if code != 0 {
        let err = std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap_or_default();
        eprintln!("the run exited {code}:\n{err}");
    }
    let text = std::fs::read_to_string(&journal).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let samples: usize = v["probes"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| p["samples"].as_array().map_or(0, |s| s.len()))
                .sum()
        })
        .unwrap_or(0);
    let during: u64 = v["probes"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| p["during"]["samples"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);

    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("faultline long-run memory bench: {PROBES} tcp probes x 50ms, pause {secs}s");
    println!("binary: {bin}");
    println!(
        "exit code {code}, wall {:.1} min, load average at the end: {}",
        wall.as_secs_f64() / 60.0,
        loadavg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("| minute | VmRSS (KiB) | RssAnon (KiB) |");
    println!("|---|---|---|");
    let mut next = 0.0;
    for &(m, k, a) in &series {
        if m >= next {
            println!("| {m:.1} | {k} | {a} |");
            // Every point of a short run, one a minute of a long one.
            next = if secs <= 300 { 0.0 } else { m.floor() + 1.0 };
        }
    }
    if let Some(&(m, k, a)) = series.last() {
        println!("| {m:.1} (last) | {k} | {a} |");
    }
    // After the first minute, and over the second half (the abort
    // conditions' window of 10,000 samples per probe fills in the first
    // 8.3 minutes at 50ms).
    let half = series.last().map_or(0.0, |p| p.0) / 2.0;
    for (what, col, from) in [
        ("VmRSS", 1, 1.0),
        ("RssAnon", 2, 1.0),
        ("VmRSS, second half", 1, half),
        ("RssAnon, second half", 2, half),
    ] {
        let steady: Vec<(f64, f64)> = series
            .iter()
            .filter(|p| p.0 >= from)
            .map(|p| (p.0, if col == 1 { p.1 } else { p.2 } as f64))
            .collect();
        let s = slope(&steady);
        let n = steady.len().max(1) as f64;
        let (mx, my) = (
            steady.iter().map(|p| p.0).sum::<f64>() / n,
            steady.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let peak = steady.iter().map(|p| p.1).fold(0.0, f64::max);
        // The fitted line at 240 min (the RSS saw-tooths with each
        // journal snapshot: the fit, not the last point).
        let at_4h = my + s * (240.0 - mx);
        println!(
            "{what}: slope from minute {from:.1} {s:.2} KiB/min ({} points, mean {:.1} MiB, highest {:.1} MiB); fitted at 4 h: {:.1} MiB",
            steady.len(),
            my / 1024.0,
            peak / 1024.0,
            at_4h / 1024.0
        );
    }
    println!("target: VmRSS flat and under 32 MiB over 4 h");
    println!(
        "peak RSS (wait4, including the final journal write): {:.1} MiB",
        ru.ru_maxrss as f64 / 1024.0
    );
    println!(
        "journal: {:.1} MiB, {samples} samples in it ({during} during the method); last snapshot seen while running: {:.1} KiB",
        text.len() as f64 / (1024.0 * 1024.0),
        last_journal_size as f64 / 1024.0
    );
}
