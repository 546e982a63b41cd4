//! `validate` of 1 MiB files (`cargo bench --bench validate`), against the
//! release binary: the size limit of experiment files, filled with
//!
//! 1. a valid faultline file: thousands of probes;
//! 2. a broken faultline file: thousands of probes and thousands of abort
//!    conditions naming probes that do not exist (each would list every probe
//!    and look for a "did you mean" among them);
//! 3. a broken Chaos Toolkit file: thousands of probes and thousands of
//!    `ref`s to activities that do not exist.
//!
//! For each: wall time and CPU time (p50 and max of 10 runs), peak RSS and
//! the bytes written to stdout+stderr. Results go into docs/performance.md.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 10;
const SIZE: usize = 1024 * 1024 - 4096;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_faultline")
}

fn valid_yaml() -> String {
    let mut s =
        String::from("title: big\nhypothesis: h\nsteady_state:\n  interval: 1s\n  probes:\n");
    let mut i = 0;
    while s.len() < SIZE - 64 {
        s.push_str(&format!(
            "    - name: probe-number-{i}\n      command: {{run: [\"true\"]}}\n"
        ));
        i += 1;
    }
    s + "method:\n  - pause: 1s\n"
}

fn broken_yaml() -> String {
    let mut s =
        String::from("title: big\nhypothesis: h\nsteady_state:\n  interval: 1s\n  probes:\n");
    for i in 0..4000 {
        s.push_str(&format!(
            "    - name: probe-number-{i}\n      command: {{run: [\"true\"]}}\n"
        ));
    }
    s.push_str("method:\n  - pause: 1s\nabort:\n");
    let mut i = 0;
    while s.len() < SIZE - 64 {
        s.push_str(&format!(
            "  - probe: probe-numbr-{i}\n    consecutive_failures: 1\n"
        ));
        i += 1;
    }
    s
}

fn broken_ctk() -> String {
    let probes: Vec<String> = (0..3000)
        .map(|i| {
            format!(
                r#"{{"type":"probe","name":"probe-number-{i}","tolerance":0,"provider":{{"type":"process","path":"true"}}}}"#
            )
        })
        .collect();
    let mut s = format!(
        r#"{{"title":"t","steady-state-hypothesis":{{"title":"h","probes":[{}]}},"method":["#,
        probes.join(",")
    );
    let mut i = 0;
    while s.len() < SIZE - 64 {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(r#"{{"ref":"probe-numbr-{i}"}}"#));
        i += 1;
    }
    s + "]}"
}

/// Wall time, CPU time (user+system), peak RSS in KiB, output bytes, exit code.
/// The child is reaped by `wait4` (for its rusage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn run_measured(file: &std::path::Path) -> (Duration, Duration, i64, usize, i32) {
    let t = Instant::now();
    let mut child = Command::new(bin())
        .arg("validate")
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let e = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v.len()
    });
    let mut v = Vec::new();
    let _ = out.read_to_end(&mut v);
    let bytes = v.len() + e.join().unwrap();
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    let wall = t.elapsed();
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let cpu = tv(ru.ru_utime) + tv(ru.ru_stime);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (wall, cpu, ru.ru_maxrss, bytes, code)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "valid faultline YAML, many probes",
            "valid.yaml",
            valid_yaml(),
            0,
        ),
        (
            "broken faultline YAML, many unknown probe names",
            "broken.yaml",
            broken_yaml(),
            64,
        ),
        (
            "broken Chaos Toolkit JSON, many unknown refs",
            "broken.json",
            broken_ctk(),
            64,
        ),
    ];
    println!("| file (1 MiB) | wall p50 | wall max | CPU p50 | CPU max | peak RSS | output |");
    println!("|---|---|---|---|---|---|---|");
    for (what, name, text, want) in cases {
        assert!(text.len() <= 1024 * 1024, "{name} is {} bytes", text.len());
        let p = dir.path().join(name);
        std::fs::write(&p, &text).unwrap();
        let (mut walls, mut cpus, mut rss, mut bytes) = (Vec::new(), Vec::new(), 0, 0);
        for _ in 0..RUNS {
            let (w, c, r, b, code) = run_measured(&p);
            assert_eq!(code, want, "{name}: exit code");
            walls.push(w);
            cpus.push(c);
            rss = rss.max(r);
            bytes = bytes.max(b);
        }
        walls.sort();
        cpus.sort();
        println!(
            "| {what} ({} KiB) | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.1} MiB | {:.1} KiB |",
            text.len() / 1024,
            ms(walls[RUNS / 2]),
            ms(walls[RUNS - 1]),
            ms(cpus[RUNS / 2]),
            ms(cpus[RUNS - 1]),
            rss as f64 / 1024.0,
            bytes as f64 / 1024.0
        );
    }
}
