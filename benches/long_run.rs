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
    // Abort conditions as a real experiment has them: one per probe.
    exp.push_str("abort:\n");
    for i in 0..PROBES {
        if i % 2 == 0 {
            exp.push_str(&format!("  - {{probe: p{i}, consecutive_failures: 5}}\n"));
        } else {
            exp.push_str(&format!(
                "  - {{probe: p{i}, failure_ratio: 50%, window: 100}}\n"
            ));
        }
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
    // Counted as the journal streams by (it is 700 MiB after 4 hours).
    #[derive(serde::Deserialize)]
    struct J {
        probes: Vec<P>,
    }
    #[derive(serde::Deserialize)]
    struct P {
        samples: Vec<serde::de::IgnoredAny>,
        during: D,
    }
    #[derive(serde::Deserialize)]
    struct D {
        samples: u64,
    }
    let journal_bytes = std::fs::metadata(&journal).map_or(0, |m| m.len());
    let parsed: Option<J> = std::fs::File::open(&journal)
        .ok()
        .and_then(|f| serde_json::from_reader(std::io::BufReader::new(f)).ok());
    let (samples, during) = parsed.map_or((0, 0), |j| {
        (
            j.probes.iter().map(|p| p.samples.len()).sum::<usize>(),
            j.probes.iter().map(|p| p.during.samples).sum::<u64>(),
        )
    });
    // What a reader of the journal costs: `report` (table, HTML) and
    // `history`, each its peak RSS and wall time.
    let mut readers = Vec::new();
    for (what, args) in [
        ("report --format table", vec!["report", "--format", "table"]),
        ("report --format html", vec!["report", "--format", "html"]),
        ("history --format json", vec!["history", "--format", "json"]),
    ] {
        let t = Instant::now();
        let c = Command::new(&bin)
            .args(&args)
            .arg(&journal)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut st = 0;
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::wait4(c.id() as i32, &mut st, 0, &mut ru) };
        let ok = libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0;
        readers.push(format!(
            "{what}: {}, peak RSS {:.1} MiB, {:.1} s",
            if ok { "exit 0" } else { "FAILED" },
            ru.ru_maxrss as f64 / 1024.0,
            t.elapsed().as_secs_f64()
        ));
    }

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
    // After the first minute, and over the second half.
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
        journal_bytes as f64 / (1024.0 * 1024.0),
        last_journal_size as f64 / 1024.0
    );
    for r in readers {
        println!("{r}");
    }
}
