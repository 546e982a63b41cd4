//! `syscall_error` against a real program that must handle the error: a
//! Python writer committing rows to SQLite (`synchronous=FULL`) in a loop,
//! counting the commits that succeeded and the ones that failed. The fault
//! fails a share of its `fdatasync`/`fsync` calls on the database and its
//! journal with EIO; a probe checks `PRAGMA integrity_check` and that every
//! commit the writer was told succeeded is in the database. After the run
//! (and after the runner is SIGKILLed: the watchdog) the writer runs
//! untraced (TracerPid 0), is not stopped, and commits again without errors.
//! A tracer killed from outside mid-run makes the run INCONCLUSIVE (the fault
//! went missing); a target already traced is refused.
//!
//! Needs root (ptrace of a process that is not a child), strace and python3
//! with sqlite3; prints `skipped: ...` otherwise. Run under
//! `flock /tmp/faultline-itest.lock`.

mod support;

use faultline::journal::undo::{Applied, RunBounds, TraceeRef, UndoOp};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const WRITER: &str = r#"
import json, os, sqlite3, sys, time
db, stats = sys.argv[1], sys.argv[2]
con = sqlite3.connect(db, isolation_level=None, timeout=5)
con.execute("PRAGMA synchronous=FULL")
con.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
ok = err = 0
last = ""
i = 0
while True:
    i += 1
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO t(v) VALUES (?)", ("row %d" % i,))
        con.execute("COMMIT")
        ok += 1
    except sqlite3.Error as e:
        err += 1
        last = str(e)
        try:
            con.execute("ROLLBACK")
        except sqlite3.Error:
            pass
    tmp = stats + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"ok": ok, "err": err, "last_error": last}, f)
    os.replace(tmp, stats)
    time.sleep(0.01)
"#;

/// Exit 0 when the database passes integrity_check and holds every commit
/// the writer counted: at least the commits counted before the rows are
/// counted, at most those counted after (plus one in flight), and the
/// writer is alive.
const CHECK: &str = r#"
import json, os, sqlite3, sys
db, stats, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.kill(pid, 0)
before = json.load(open(stats))
con = sqlite3.connect(db, timeout=5)
ic = con.execute("PRAGMA integrity_check").fetchone()[0]
n = con.execute("SELECT count(*) FROM t").fetchone()[0]
after = json.load(open(stats))
print("integrity", ic, "rows", n, "committed", before["ok"], "..", after["ok"], "failed", after["err"])
sys.exit(0 if ic == "ok" and before["ok"] <= n <= after["ok"] + 1 else 1)
"#;

fn have(p: &str) -> bool {
    faultline::sys::exec::find_program(p).is_some()
}

/// Why this test cannot run here, if it cannot.
fn missing() -> Option<String> {
    if !is_root() {
        return Some("needs root (ptrace of a process that is not a child)".into());
    }
    if !have("strace") {
        return Some("needs strace (apt-get install strace)".into());
    }
    let sqlite = Command::new("python3")
        .args(["-c", "import sqlite3"])
        .output();
    if !sqlite.is_ok_and(|o| o.status.success()) {
        return Some("needs python3 with sqlite3".into());
    }
    None
}

struct Writer {
    guard: ChildGuard,
    db: PathBuf,
    stats: PathBuf,
    check: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Stats {
    ok: u64,
    err: u64,
}

impl Writer {
    fn start(dir: &Path) -> Writer {
        let script = dir.join("writer.py");
        std::fs::write(&script, WRITER).unwrap();
        let check = dir.join("check.py");
        std::fs::write(&check, CHECK).unwrap();
        let db = dir.join("data.db");
        let stats = dir.join("stats.json");
        let child = Command::new("python3")
            .arg(&script)
            .arg(&db)
            .arg(&stats)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let w = Writer {
            guard: ChildGuard(child),
            db,
            stats,
            check,
        };
        assert!(
            wait_until(Duration::from_secs(30), || w
                .stats()
                .is_some_and(|s| s.ok >= 3)),
            "the writer commits"
        );
        w
    }
    fn pid(&self) -> i32 {
        self.guard.pid()
    }
    fn stats(&self) -> Option<Stats> {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&self.stats).ok()?).ok()?;
        Some(Stats {
            ok: v["ok"].as_u64()?,
            err: v["err"].as_u64()?,
        })
    }
    fn last_error(&self) -> String {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&self.stats).unwrap()).unwrap();
        v["last_error"].as_str().unwrap_or_default().to_string()
    }
    /// The integrity probe's command line, as YAML flow list items.
    fn check_argv(&self) -> String {
        format!(
            "[python3, \"{}\", \"{}\", \"{}\", \"{}\"]",
            self.check.display(),
            self.db.display(),
            self.stats.display(),
            self.pid()
        )
    }
    /// Runs the integrity check now.
    fn intact(&self) -> (bool, String) {
        let o = Command::new("python3")
            .arg(&self.check)
            .arg(&self.db)
            .arg(&self.stats)
            .arg(self.pid().to_string())
            .output()
            .unwrap();
        (o.status.success(), text(&o))
    }
    /// Untraced, not stopped, and committing without new errors again.
    fn assert_free_and_healthy(&self) {
        let pid = self.pid();
        assert!(
            wait_until(Duration::from_secs(10), || tracer_pid(pid) == Some(0)),
            "pid {pid} still traced: TracerPid {:?}",
            tracer_pid(pid)
        );
        let st = proc_state(pid);
        assert!(
            st.is_some_and(|s| s != 'T' && s != 't' && s != 'Z'),
            "the writer is not left stopped (or dead): state {st:?}"
        );
        let before = self.stats().unwrap();
        assert!(
            wait_until(Duration::from_secs(30), || self
                .stats()
                .is_some_and(|s| s.ok >= before.ok + 5)),
            "the writer commits again after the fault ({before:?} -> {:?})",
            self.stats()
        );
        let after = self.stats().unwrap();
        assert_eq!(
            after.err, before.err,
            "no failed commit once the fault is gone"
        );
        let (ok, out) = self.intact();
        assert!(ok, "the database is intact: {out}");
    }
}

fn tracer_pid(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
}

fn experiment(w: &Writer, duration: &str, extra_fault: &str) -> String {
    let db = w.db.display();
    format!(
        r#"
title: SQLite writer under fdatasync EIO
hypothesis: The writer reports failed commits and goes on; no committed row is lost and the database stays intact.
steady_state:
  interval: 500ms
  probes:
    - name: database intact
      command:
        run: {check}
      timeout: 10s
      before: {{samples: 1}}
      during: {{min_success: 100%}}
      after: {{within: 20s, successes: 1}}
method:
  - name: fail a quarter of the syncs
    fault:
      syscall_error:
        target: {{pid: {pid}}}
        syscalls: [fdatasync, fsync]
        errno: EIO
        percent: 25%
        paths: ["{db}", "{db}-journal"]
        {extra_fault}
    duration: {duration}
"#,
        check = w.check_argv(),
        pid = w.pid(),
    )
}

fn events(sb: &Sandbox) -> String {
    std::fs::read_to_string(sb.path().join("events.jsonl")).unwrap_or_default()
}

/// strace processes tracing `pid` right now (by TracerPid).
fn strace_of(pid: i32) -> Option<i32> {
    tracer_pid(pid).filter(|t| *t != 0)
}

#[test]
fn a_sqlite_writer_sees_eio_handles_it_and_runs_untraced_after_the_run() {
    if let Some(why) = missing() {
        println!("skipped: {why}");
        return;
    }
    let sb = Sandbox::new();
    let w = Writer::start(sb.path());
    let before = w.stats().unwrap();
    let exp = sb.write("e.yaml", &experiment(&w, "4s", ""));
    let o = sb.run(&exp, &["--events", "events.jsonl"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let j = sb.journal();
    let f = &j["faults"][0];
    assert_eq!(f["kind"], "syscall_error", "{f}");
    assert!(
        f["verified"]
            .as_str()
            .is_some_and(|v| v.contains("is the tracer (TracerPid)")),
        "{f}"
    );
    let failed = f["observations"]["calls_failed"].as_u64().unwrap_or(0);
    let matched = f["observations"]["calls_matched"].as_u64().unwrap_or(0);
    println!(
        "strace failed {failed} of {matched} matching calls; the writer: {before:?} before, {:?} after",
        w.stats()
    );
    assert!(failed > 0, "strace failed some calls: {f}");
    // One call in four, per system call and thread: about a quarter.
    assert!(
        failed * 4 <= matched + 4 && failed * 4 + 8 >= matched,
        "about 25% of the matching calls failed: {failed} of {matched}"
    );
    assert!(
        f["observations"]["first_failed_call"]
            .as_str()
            .is_some_and(|c| c.contains("EIO")),
        "{f}"
    );
    // The writer saw the errno as SQLite reports it, and handled it.
    let s = w.stats().unwrap();
    assert!(s.err > before.err, "the writer saw failed commits: {s:?}");
    assert!(s.ok > before.ok, "and committed meanwhile: {s:?}");
    assert_eq!(w.last_error(), "disk I/O error");
    assert_eq!(f["rolled_back"], true, "{f}");
    assert_eq!(f["effect"]["problem"], serde_json::Value::Null, "{f}");
    w.assert_free_and_healthy();
    assert_eq!(sb.status().status.code(), Some(0), "nothing left pending");
}

#[test]
fn the_watchdog_detaches_strace_after_the_runner_is_killed() {
    if let Some(why) = missing() {
        println!("skipped: {why}");
        return;
    }
    let sb = Sandbox::new();
    let w = Writer::start(sb.path());
    let exp = sb.write("e.yaml", &experiment(&w, "120s", ""));
    let mut child = sb
        .cmd()
        .arg("run")
        .arg(&exp)
        .args(["--no-journal", "--events", "events.jsonl"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runner = child.id() as i32;
    let verified = wait_until(Duration::from_secs(60), || {
        events(&sb).contains("\"event\":\"fault_verified\"")
    });
    let strace = strace_of(w.pid());
    let base = w.stats().unwrap();
    let saw_errors = wait_until(Duration::from_secs(30), || {
        w.stats().is_some_and(|s| s.err > base.err)
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(runner),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.wait();
    assert!(verified, "{}", events(&sb));
    let strace = strace.expect("strace traced the writer while the fault was active");
    assert!(saw_errors, "the writer saw failed commits");
    assert!(
        wait_until(Duration::from_secs(10), || !support_alive(strace)),
        "strace pid {strace} is stopped after the runner died"
    );
    w.assert_free_and_healthy();
    // The watchdog replayed the record. strace also gets SIGTERM when the
    // runner dies (PR_SET_PDEATHSIG), so the watchdog may find it gone already.
    let log = watchdog_log(&sb);
    assert!(
        log.contains(&format!("kill -TERM {strace}")) && log.contains("everything rolled back"),
        "{log}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || sb.status().status.code()
            == Some(0)),
        "nothing left pending: {}",
        text(&sb.status())
    );
}

fn watchdog_log(sb: &Sandbox) -> String {
    let Ok(rd) = std::fs::read_dir(sb.state_dir().join("runs")) else {
        return String::new();
    };
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".watchdog.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

fn support_alive(pid: i32) -> bool {
    proc_state(pid).is_some_and(|s| s != 'Z' && s != 'X')
}

#[test]
fn strace_killed_from_outside_makes_the_run_inconclusive() {
    if let Some(why) = missing() {
        println!("skipped: {why}");
        return;
    }
    let sb = Sandbox::new();
    let w = Writer::start(sb.path());
    let exp = sb.write("e.yaml", &experiment(&w, "6s", ""));
    let child = sb
        .cmd()
        .arg("run")
        .arg(&exp)
        .args(["--journal", "journal.json", "--events", "events.jsonl"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || events(&sb)
            .contains("\"event\":\"fault_verified\"")),
        "{}",
        events(&sb)
    );
    let strace = strace_of(w.pid()).expect("strace traces the writer");
    // SIGKILL: the kernel detaches the writer; the fault is gone.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(strace),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(5), "INCONCLUSIVE: {out}");
    let j = sb.journal();
    let reasons = j["inconclusive"].to_string();
    assert!(reasons.contains("fault_missing"), "{reasons}");
    assert!(
        out.contains("syscall_error removed externally"),
        "the live view says so: {out}"
    );
    w.assert_free_and_healthy();
    assert_eq!(sb.status().status.code(), Some(0));
}

#[test]
fn a_target_already_traced_is_refused_and_a_typo_gets_a_suggestion() {
    if let Some(why) = missing() {
        println!("skipped: {why}");
        return;
    }
    let sb = Sandbox::new();
    // `strace sleep`: the sleep is traced by that strace.
    let tracer = ChildGuard(
        Command::new("strace")
            .args(["-qq", "-o", "/dev/null", "sleep", "300"])
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let mut sleep_pid = None;
    assert!(wait_until(Duration::from_secs(10), || {
        sleep_pid = faultline::sys::proc::list()
            .into_iter()
            .find(|p| p.ppid == tracer.pid() && p.comm == "sleep")
            .map(|p| p.pid);
        sleep_pid.is_some_and(|p| tracer_pid(p) == Some(tracer.pid()))
    }));
    let f = sb.write(
        "e.yaml",
        &format!(
            r#"
title: t
hypothesis: h
steady_state:
  probes:
    - name: ok
      command: {{run: ["true"]}}
      before: {{samples: 1}}
method:
  - fault:
      syscall_error:
        target: {{pid: {}}}
        syscalls: [write]
        errno: EIO
    duration: 1s
"#,
            sleep_pid.unwrap()
        ),
    );
    let o = sb.cmd().arg("run").arg(&f).output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(69), "{out}");
    assert!(out.contains("already traced by pid"), "{out}");
    assert_eq!(
        tracer_pid(sleep_pid.unwrap()),
        Some(tracer.pid()),
        "left alone"
    );

    let typo = sb.write(
        "typo.yaml",
        &std::fs::read_to_string(&f)
            .unwrap()
            .replace("[write]", "[fsycn]")
            .replace("EIO", "EOI"),
    );
    let o = sb.cmd().arg("validate").arg(&typo).output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(64), "{out}");
    assert!(out.contains("did you mean `fsync`"), "{out}");
    assert!(out.contains("did you mean `EIO`"), "{out}");

    // Without strace on PATH: a clear precondition naming the package.
    let o = sb
        .cmd()
        .env("PATH", sb.path())
        .arg("plan")
        .arg(&f)
        .output()
        .unwrap();
    let out = text(&o);
    assert!(out.contains("apt-get install strace"), "{out}");
}

/// The undo record alone (as the watchdog and `recover` replay it) stops a
/// real strace, leaves its tracee running untraced, and resumes a tracee
/// that was left stopped; a record naming a process that is not strace is
/// refused.
#[test]
fn the_stop_tracer_record_detaches_and_resumes() {
    if let Some(why) = missing() {
        println!("skipped: {why}");
        return;
    }
    let target = sleeper(300);
    let pid = target.pid();
    let st = faultline::sys::proc::start_time(pid).unwrap();
    let strace = ChildGuard(
        Command::new("strace")
            .args([
                "-qq",
                "-f",
                "-o",
                "/dev/null",
                "-e",
                "trace=nanosleep,clock_nanosleep",
            ])
            .args(["-p", &pid.to_string()])
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    assert!(wait_until(Duration::from_secs(10), || tracer_pid(pid)
        == Some(strace.pid())));
    // A stop strace would have kept pending: the record resumes it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let op = UndoOp::StopTracer {
        pid: strace.pid(),
        start_time: faultline::sys::proc::start_time(strace.pid()).unwrap(),
        tracees: vec![TraceeRef {
            pid,
            start_time: st,
            uid: Some(0),
        }],
    };
    let bounds = RunBounds {
        run_id: "sc-run".into(),
        runner_start_time: 0,
        state_dir: None,
    };
    assert_eq!(op.out_of_bounds(&bounds, Some(0)), None);
    let not_strace = UndoOp::StopTracer {
        pid,
        start_time: st,
        tracees: vec![],
    };
    assert!(not_strace
        .out_of_bounds(&bounds, Some(0))
        .is_some_and(|w| w.contains("not strace")));
    let t0 = Instant::now();
    assert_eq!(op.apply(), Ok(Applied::Done));
    println!("detached in {:?}", t0.elapsed());
    assert_eq!(tracer_pid(pid), Some(0));
    assert!(
        wait_until(Duration::from_secs(5), || proc_state(pid)
            .is_some_and(|s| s != 'T' && s != 't')),
        "resumed: {:?}",
        proc_state(pid)
    );
    assert_eq!(op.apply(), Ok(Applied::AlreadyGone), "idempotent");
}
