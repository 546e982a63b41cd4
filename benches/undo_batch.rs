//! Undo records for many targets (`cargo bench --bench undo_batch`): pausing
//! N real processes and resuming them, with faultline's record path against
//! the durable limit.
//!
//! - **faultline**: `RunJournal::record_batch` (what `process_pause` uses:
//!   one JSON line per process, with its uid read from /proc, one write and
//!   one fsync for the batch), then SIGSTOP to each; rollback is
//!   `RunJournal::replay` (SIGCONT after checking each pid's start time, a
//!   `done` line each, one fsync).
//! - **durable loop**: the least any crash-safe pause can do: one short line
//!   per process in one write + fdatasync, SIGSTOP to each; rollback SIGCONT
//!   to each, a done line each, one fdatasync.
//! - **one by one** (N = 1,000 only): the previous path, one fsync per record.
//!
//! The processes are forked children blocked in pause(2). The state
//! directory is on disk (CARGO_TARGET_TMPDIR, under target/). Results go
//! into docs/performance.md.

use faultline::journal::store::{RunHeader, RunJournal, UndoItem};
use faultline::journal::undo::UndoOp;
use faultline::sys::proc::Pinned;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUNDS: usize = 15;

/// Forked children that wait in pause(2); killed on drop.
struct Children(Vec<(i32, u64)>);

impl Children {
    fn spawn(n: usize) -> Children {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
            if pid == 0 {
                loop {
                    unsafe { libc::pause() };
                }
            }
            v.push(pid);
        }
        let v = v
            .into_iter()
            .map(|p| {
                // Wait until /proc shows it (its start time identifies it).
                let st = loop {
                    if let Some(st) = faultline::sys::proc::start_time(p) {
                        break st;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                };
                (p, st)
            })
            .collect();
        Children(v)
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (p, _) in &self.0 {
            unsafe {
                libc::kill(*p, libc::SIGKILL);
            }
        }
        for (p, _) in &self.0 {
            unsafe {
                libc::waitpid(*p, std::ptr::null_mut(), 0);
            }
        }
    }
}

fn header(run_id: &str) -> RunHeader {
    let me = std::process::id() as i32;
    RunHeader {
        run_id: run_id.into(),
        title: "bench".into(),
        file: "bench.yaml".into(),
        runner_pid: me,
        runner_start_time: faultline::sys::proc::start_time(me).unwrap_or(0),
        started_at: chrono::Utc::now(),
        deadline: chrono::Utc::now() + chrono::Duration::hours(1),
        targets: vec![],
        journal: None,
    }
}

fn sig(pid: i32, s: i32) {
    unsafe {
        libc::kill(pid, s);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (pin ms, inject ms, rollback ms) with faultline's path. `pin` is what
/// `process_pause` does for each chosen process before recording: open a
/// pidfd and check, through /proc/PID/stat, that it is still the process
/// with the recorded start time and not stopped already. `inject` is the
/// undo records (one write, one fsync) and SIGSTOP through each pidfd;
/// rollback is the runner's replay, SIGCONT through the pidfds.
fn faultline_path(
    state: &Path,
    kids: &Children,
    round: usize,
    one_by_one: bool,
) -> (f64, f64, f64) {
    let mut j = RunJournal::create(state, header(&format!("bench-{round}-{one_by_one}"))).unwrap();
    let uid = unsafe { libc::getuid() };
    let t = Instant::now();
    if one_by_one {
        for (p, st) in &kids.0 {
            j.record(
                0,
                "pause",
                "process_pause",
                &format!("pid {p}"),
                UndoOp::ResumeProcess {
                    pid: *p,
                    start_time: *st,
                },
            )
            .unwrap();
            sig(*p, libc::SIGSTOP);
        }
        let inject = ms(t.elapsed());
        let t = Instant::now();
        let pending = j.pending();
        let results = j.replay(&pending, "runner", 1);
        let rollback = ms(t.elapsed());
        assert!(results.iter().all(|r| r.result.is_ok()));
        j.finish().unwrap();
        return (0.0, inject, rollback);
    }
    faultline::sys::proc::make_fd_room(kids.0.len());
    let pins: Vec<Arc<Pinned>> = kids
        .0
        .iter()
        .map(|(p, st)| {
            let (pin, state) = Pinned::open(*p, *st).expect("pinned");
            assert_ne!(state, 'T');
            Arc::new(pin)
        })
        .collect();
    let pin_ms = ms(t.elapsed());
    let t = Instant::now();
    let batch = kids
        .0
        .iter()
        .zip(&pins)
        .map(|((p, st), pin)| UndoItem {
            target: format!("pid {p}"),
            op: UndoOp::ResumeProcess {
                pid: *p,
                start_time: *st,
            },
            uid: Some(uid),
            pin: Some(pin.clone()),
        })
        .collect();
    j.record_batch(0, "pause", "process_pause", batch).unwrap();
    if std::env::var_os("UNDO_BENCH_SPLIT").is_some() {
        eprintln!("faultline record {:.1}", ms(t.elapsed()));
    }
    for pin in &pins {
        pin.signal(nix::sys::signal::Signal::SIGSTOP).unwrap();
    }
    let inject = ms(t.elapsed());
    drop(pins);
    let t = Instant::now();
    let pending = j.pending();
    let results = j.replay(&pending, "runner", 1);
    let rollback = ms(t.elapsed());
    assert!(results
        .iter()
        .all(|r| matches!(r.result, Ok(faultline::journal::undo::Applied::Done))));
    j.finish().unwrap();
    (pin_ms, inject, rollback)
}

/// (inject ms, rollback ms) with the minimal durable loop.
fn durable_loop(dir: &Path, kids: &Children, round: usize) -> (f64, f64) {
    let path = dir.join(format!("loop-{round}.log"));
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    let t = Instant::now();
    let mut buf = String::with_capacity(kids.0.len() * 48);
    for (i, (p, st)) in kids.0.iter().enumerate() {
        buf.push_str(&format!("{{\"id\":{i},\"pid\":{p},\"start\":{st}}}\n"));
    }
    f.write_all(buf.as_bytes()).unwrap();
    f.sync_data().unwrap();
    if std::env::var_os("UNDO_BENCH_SPLIT").is_some() {
        eprintln!("durable record {:.1}", ms(t.elapsed()));
    }
    for (p, _) in &kids.0 {
        sig(*p, libc::SIGSTOP);
    }
    let inject = ms(t.elapsed());
    let t = Instant::now();
    let mut done = String::with_capacity(kids.0.len() * 24);
    for (i, (p, _)) in kids.0.iter().enumerate().rev() {
        sig(*p, libc::SIGCONT);
        done.push_str(&format!("{{\"done\":{i}}}\n"));
    }
    f.write_all(done.as_bytes()).unwrap();
    f.sync_data().unwrap();
    let rollback = ms(t.elapsed());
    drop(f);
    let _ = std::fs::remove_file(&path);
    (inject, rollback)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("undo-batch-bench");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let state = base.join("state");
    let sizes: Vec<usize> = std::env::var("UNDO_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000]);
    println!(
        "undo records for N paused processes, median of {ROUNDS} rounds (ms), state dir {}",
        state.display()
    );
    println!(
        "{:>7}  {:>8}  {:>22}  {:>22}  {:>14}  {:>22}",
        "N",
        "pin",
        "faultline inject/rollb",
        "durable inject/rollb",
        "ratio (total)",
        "one-by-one inject/rollb"
    );
    for n in sizes {
        let kids = Children::spawn(n);
        let (mut fp, mut fi, mut fr, mut di, mut dr, mut oi, mut or) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        // Each round's own ratio: both paths ran back to back there, so a
        // burst of load from elsewhere shifts both.
        let (mut ri, mut rr, mut rt) = (vec![], vec![], vec![]);
        for round in 0..ROUNDS {
            // Alternate the order so neither gains from a warm cache.
            let (f, d) = if round % 2 == 0 {
                let f = faultline_path(&state, &kids, round, false);
                (f, durable_loop(&base, &kids, round))
            } else {
                let d = durable_loop(&base, &kids, round);
                (faultline_path(&state, &kids, round, false), d)
            };
            ri.push(f.1 / d.0);
            rr.push(f.2 / d.1);
            rt.push((f.1 + f.2) / (d.0 + d.1));
            fp.push(f.0);
            fi.push(f.1);
            fr.push(f.2);
            di.push(d.0);
            dr.push(d.1);
            if n <= 1_000 {
                let (_, a, b) = faultline_path(&state, &kids, round, true);
                oi.push(a);
                or.push(b);
            }
        }
        let (fp, fi, fr, di, dr) = (median(fp), median(fi), median(fr), median(di), median(dr));
        let obo = if oi.is_empty() {
            "—".to_string()
        } else {
            format!("{:.1} / {:.1}", median(oi), median(or))
        };
        println!(
            "{n:>7}  {:>8}  {:>22}  {:>22}  {:>14}  {:>22}",
            format!("{fp:.1}"),
            format!("{fi:.1} / {fr:.1}"),
            format!("{di:.1} / {dr:.1}"),
            format!("{:.2}x", median(rt)),
            obo
        );
        println!(
            "         median of per-round ratios: inject {:.2}x, rollback {:.2}x; with pinning {:.2}x in all",
            median(ri),
            median(rr),
            (fp + fi + fr) / (di + dr)
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}
