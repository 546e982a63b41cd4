//! process_kill and process_pause against real processes: a small shell
//! supervisor that keeps N `sleep` workers alive, lone workers, real signals.
//!
//! Every worker runs through a symlink to `sleep` with a name unique to this
//! test (the kernel names a process after the file it executed), so selectors
//! never reach anything but the test's own processes. The test process plays
//! the runner: its children are protected unless they are (under) a setup pid.

use faultline::experiment::model::Fault as FaultSpec;
use faultline::fault::process::{ProcessKillSpec, ProcessPauseSpec};
use faultline::fault::target::{ProcessTarget, TargetMode};
use faultline::fault::{self, FaultContext, FaultError, FaultImpl, Protected, UndoLog};
use faultline::journal::undo::{Applied, UndoOp};
use faultline::sys::proc;
use faultline::units::{Duration, Percent, Signal};
use nix::sys::signal::{kill, killpg, Signal as Sig};
use nix::unistd::Pid;
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration as StdDuration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A process name (at most 15 characters) unique to this test process and call.
fn unique_name() -> String {
    format!(
        "flw{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The undo log of a test: a plain list.
#[derive(Default)]
struct VecUndo(Vec<(String, UndoOp)>);

impl UndoLog for VecUndo {
    fn record(&mut self, target: &str, op: UndoOp) -> anyhow::Result<()> {
        self.0.push((target.to_string(), op));
        Ok(())
    }
}

impl VecUndo {
    /// Replays the undo like the runner does: newest first.
    fn replay(&self) -> Vec<Applied> {
        self.0
            .iter()
            .rev()
            .map(|(_, op)| op.apply().expect("undo applies"))
            .collect()
    }
}

/// A symlink to `sleep` with a unique name, in a temporary directory.
struct WorkerBin {
    _dir: tempfile::TempDir,
    name: String,
    path: PathBuf,
}

impl WorkerBin {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name();
        let path = dir.path().join(&name);
        let sleep = ["/usr/bin/sleep", "/bin/sleep"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("sleep (coreutils) is installed");
        std::os::unix::fs::symlink(sleep, &path).unwrap();
        WorkerBin {
            _dir: dir,
            name,
            path,
        }
    }

    /// Live (non-zombie) workers: (pid, start time), in pid order.
    fn live(&self) -> Vec<(i32, u64)> {
        proc::list()
            .into_iter()
            .filter(|i| i.comm == self.name && i.state != 'Z' && i.state != 'X')
            .map(|i| (i.pid, i.start_time))
            .collect()
    }

    /// Waits (generously) until exactly `n` workers run.
    fn wait_for(&self, n: usize) -> Vec<(i32, u64)> {
        let deadline = Instant::now() + StdDuration::from_secs(15);
        loop {
            let l = self.live();
            if l.len() == n {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} workers named {}, found {l:?}",
                self.name
            );
            std::thread::sleep(StdDuration::from_millis(20));
        }
    }
}

/// A shell running workers, in its own process group; dropping it kills the group.
struct Workers {
    bin: WorkerBin,
    sup: Child,
}

impl Workers {
    /// A supervisor that keeps `n` workers alive, restarting each as it dies.
    fn supervised(n: usize) -> Self {
        Self::spawn(
            n,
            r#"w="$1"; n="$2"; i=0
while [ "$i" -lt "$n" ]; do
  ( while :; do "$w" 3600; done ) &
  i=$((i+1))
done
wait"#,
        )
    }

    /// `n` workers that are direct children of the shell, never restarted.
    fn flat(n: usize) -> Self {
        Self::spawn(
            n,
            r#"w="$1"; n="$2"; i=0
while [ "$i" -lt "$n" ]; do
  "$w" 3600 &
  i=$((i+1))
done
wait"#,
        )
    }

    fn spawn(n: usize, script: &str) -> Self {
        let bin = WorkerBin::new();
        let sup = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(&bin.path)
            .arg(n.to_string())
            .process_group(0)
            .stdin(Stdio::null())
            // The shell reports each killed job ("Killed") on stderr.
            .stderr(Stdio::null())
            .spawn()
            .expect("sh runs");
        let w = Workers { bin, sup };
        w.bin.wait_for(n);
        w
    }

    fn pid(&self) -> i32 {
        self.sup.id() as i32
    }

    /// The run as the runner would describe it: the supervisor is a setup process.
    fn ctx(&self) -> FaultContext {
        ctx_with_setup("sup", self.pid())
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.pid()), Sig::SIGKILL);
        let _ = self.sup.wait();
    }
}

/// One worker started by the test (a child of the "runner").
struct Lone {
    bin: WorkerBin,
    child: Child,
}

impl Lone {
    fn spawn() -> Self {
        let bin = WorkerBin::new();
        let child = Command::new(&bin.path)
            .arg("3600")
            .process_group(0)
            .spawn()
            .expect("sleep runs");
        let l = Lone { bin, child };
        l.bin.wait_for(1);
        l
    }
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    fn start_time(&self) -> u64 {
        proc::start_time(self.pid()).unwrap()
    }
    fn state(&self) -> char {
        proc::info(self.pid()).unwrap().state
    }
}

impl Drop for Lone {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.pid()), Sig::SIGKILL);
        let _ = self.child.wait();
    }
}

fn ctx_with_setup(name: &str, pid: i32) -> FaultContext {
    let mut ctx = FaultContext {
        run_id: "test".into(),
        protected: Protected::for_this_process(),
        ..Default::default()
    };
    ctx.setup_pids.insert(name.to_string(), pid);
    ctx
}

fn by_name(name: &str) -> ProcessTarget {
    ProcessTarget {
        name: Some(name.to_string()),
        ..Default::default()
    }
}

fn kill_fault(target: ProcessTarget, signal: Sig, every: Option<u64>) -> Box<dyn FaultImpl> {
    fault::build(&FaultSpec::ProcessKill(ProcessKillSpec {
        target,
        signal: Signal(signal),
        every: every.map(Duration::from_millis),
        expect_restart_within: None,
    }))
}

fn pause_fault(target: ProcessTarget) -> Box<dyn FaultImpl> {
    fault::build(&FaultSpec::ProcessPause(ProcessPauseSpec { target }))
}

/// Calls `tick` at the fault's own period for `dur`.
fn drive(f: &mut dyn FaultImpl, ctx: &FaultContext, undo: &mut VecUndo, dur: StdDuration) {
    let end = Instant::now() + dur;
    while Instant::now() < end {
        std::thread::sleep(f.tick_every().expect("process_kill ticks"));
        f.tick(ctx, undo).expect("tick");
    }
}

/// Ticks until `done(observations)` or a generous timeout; returns the observations.
fn drive_until(
    f: &mut dyn FaultImpl,
    ctx: &FaultContext,
    undo: &mut VecUndo,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let end = Instant::now() + StdDuration::from_secs(15);
    loop {
        let obs = f.observations();
        if done(&obs) || Instant::now() >= end {
            return obs;
        }
        std::thread::sleep(f.tick_every().expect("process_kill ticks"));
        f.tick(ctx, undo).expect("tick");
    }
}

fn hit_pids(obs: &Value) -> Vec<i32> {
    obs["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["pid"].as_i64().unwrap() as i32)
        .collect()
}

fn still_running(pid: i32, start: u64) -> bool {
    matches!(proc::info(pid), Some(i) if i.start_time == start && i.state != 'Z')
}

/// Injects and verifies; returns (hit pids, survivors of `before`).
fn kill_and_check(
    f: &mut dyn FaultImpl,
    ctx: &FaultContext,
    undo: &mut VecUndo,
    before: &[(i32, u64)],
) -> (Vec<i32>, Vec<i32>) {
    f.preflight(ctx).expect("preflight");
    f.inject(ctx, undo).expect("inject");
    let evidence = f.verify(ctx).expect("verify");
    assert!(evidence.contains("gone"), "{evidence}");
    assert!(undo.0.is_empty(), "a kill records no undo: {:?}", undo.0);
    let hits = hit_pids(&f.observations());
    for p in &hits {
        assert!(
            before.iter().any(|(b, _)| b == p),
            "hit {p} was not a worker"
        );
    }
    let survivors: Vec<i32> = before
        .iter()
        .filter(|(p, s)| still_running(*p, *s))
        .map(|(p, _)| *p)
        .collect();
    for p in &hits {
        assert!(!survivors.contains(p), "pid {p} was hit but still runs");
    }
    (hits, survivors)
}

#[test]
fn kill_one_of_four_and_time_the_restart() {
    let w = Workers::supervised(4);
    let ctx = w.ctx();
    let before = w.bin.wait_for(4);
    let mut f = kill_fault(
        ProcessTarget {
            mode: TargetMode::One,
            ..by_name(&w.bin.name)
        },
        Sig::SIGKILL,
        None,
    );
    assert_eq!(f.kind(), "process_kill");
    assert!(f.target().contains(&w.bin.name) && f.target().contains("one"));
    let plan = f.plan(&ctx);
    assert_eq!(plan.len(), 1, "{plan:?}");
    assert!(plan[0].action.starts_with("SIGKILL pid "), "{plan:?}");
    assert!(plan[0].action.contains(&w.bin.name), "{plan:?}");

    let mut undo = VecUndo::default();
    let (hits, survivors) = kill_and_check(f.as_mut(), &ctx, &mut undo, &before);
    assert_eq!(hits.len(), 1);
    assert_eq!(survivors.len(), 3, "exactly one worker died");

    let obs = drive_until(f.as_mut(), &ctx, &mut undo, |o| {
        !o["restarts"].as_array().unwrap().is_empty()
    });
    f.before_rollback(&ctx);
    let obs2 = f.observations();
    assert_eq!(obs2["kills"], 1);
    let r = &obs["restarts"][0];
    assert_eq!(r["killed_pid"].as_i64().unwrap() as i32, hits[0], "{obs}");
    let new_pid = r["new_pid"].as_i64().unwrap() as i32;
    assert!(!before.iter().any(|(p, _)| *p == new_pid), "{obs}");
    assert!(r["restart_ms"].as_u64().unwrap() < 15_000, "{obs}");
    assert!(r["detected_ms"].as_u64().is_some(), "{obs}");
    assert_eq!(obs2["not_restarted"].as_array().unwrap().len(), 0);
    let hit = &obs["hits"][0];
    assert_eq!(hit["signal"], "SIGKILL");
    assert_eq!(hit["name"], w.bin.name.as_str());
    assert!(hit["cmdline"].as_str().unwrap().ends_with(" 3600"));
    assert!(hit["start_time"].as_u64().is_some() && hit["at"].is_string());
    w.bin.wait_for(4);
}

#[test]
fn kill_all_four() {
    let w = Workers::supervised(4);
    let ctx = w.ctx();
    let before = w.bin.wait_for(4);
    let mut f = kill_fault(by_name(&w.bin.name), Sig::SIGKILL, None);
    let mut undo = VecUndo::default();
    let (hits, survivors) = kill_and_check(f.as_mut(), &ctx, &mut undo, &before);
    assert_eq!(hits.len(), 4);
    assert!(survivors.is_empty());
    let obs = drive_until(f.as_mut(), &ctx, &mut undo, |o| {
        o["restarts"].as_array().unwrap().len() == 4
    });
    assert_eq!(obs["restarts"].as_array().unwrap().len(), 4, "{obs}");
    assert_eq!(obs["kills"], 4);
}

#[test]
fn percent_fifty_of_four_hits_two() {
    // Direct children of the shell, selected with children_of; no restarts.
    let w = Workers::flat(4);
    let ctx = w.ctx();
    let before = w.bin.wait_for(4);
    let mut f = kill_fault(
        ProcessTarget {
            children_of: Some(w.pid()),
            mode: TargetMode::Percent,
            percent: Some(Percent(50.0)),
            ..Default::default()
        },
        Sig::SIGTERM,
        None,
    );
    let mut undo = VecUndo::default();
    let (hits, survivors) = kill_and_check(f.as_mut(), &ctx, &mut undo, &before);
    assert_eq!(hits.len(), 2);
    assert_eq!(survivors.len(), 2);
    assert_eq!(f.observations()["hits"][0]["signal"], "SIGTERM");
}

#[test]
fn count_three_by_cmdline() {
    let w = Workers::supervised(4);
    let ctx = w.ctx();
    let before = w.bin.wait_for(4);
    let re = format!("^{} 3600$", regex::escape(&w.bin.path.to_string_lossy()));
    let mut f = kill_fault(
        ProcessTarget {
            cmdline: Some(re),
            mode: TargetMode::Count,
            count: Some(3),
            seed: Some(7),
            ..Default::default()
        },
        Sig::SIGKILL,
        None,
    );
    // With a seed, the plan names exactly the processes injection then hits.
    let planned: Vec<i32> = f
        .plan(&ctx)
        .iter()
        .map(|op| {
            op.action["SIGKILL pid ".len()..]
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let mut undo = VecUndo::default();
    let (hits, survivors) = kill_and_check(f.as_mut(), &ctx, &mut undo, &before);
    assert_eq!(hits.len(), 3);
    assert_eq!(survivors.len(), 1);
    assert_eq!(planned, hits);
}

#[test]
fn children_of_pidfile_pauses_every_worker() {
    let w = Workers::flat(3);
    let before = w.bin.wait_for(3);
    let ctx = w.ctx();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("sup.pid");
    std::fs::write(&pidfile, w.pid().to_string()).unwrap();
    let mut f = pause_fault(ProcessTarget {
        children_of_pidfile: Some(pidfile.to_string_lossy().into_owned()),
        ..Default::default()
    });
    assert_eq!(f.plan(&ctx).len(), 3);
    let mut undo = VecUndo::default();
    f.inject(&ctx, &mut undo).unwrap();
    f.verify(&ctx).unwrap();
    assert_eq!(undo.0.len(), 3);
    for (p, _) in &before {
        assert_eq!(proc::info(*p).unwrap().state, 'T', "pid {p}");
    }
    // The shell itself (the pid in the file) is not a child of itself.
    assert_ne!(proc::info(w.pid()).unwrap().state, 'T');
    assert_eq!(undo.replay(), vec![Applied::Done; 3]);
    f.verify_rollback(&ctx).unwrap();
    for (p, _) in &before {
        assert_ne!(proc::info(*p).unwrap().state, 'T', "pid {p}");
    }
}

#[test]
fn crash_loop_kills_repeatedly() {
    let w = Workers::supervised(2);
    let ctx = w.ctx();
    let mut f = kill_fault(
        ProcessTarget {
            mode: TargetMode::One,
            ..by_name(&w.bin.name)
        },
        Sig::SIGKILL,
        Some(500),
    );
    assert!(f
        .plan(&ctx)
        .iter()
        .any(|op| op.action.contains("every 500ms")));
    let mut undo = VecUndo::default();
    f.preflight(&ctx).unwrap();
    f.inject(&ctx, &mut undo).unwrap();
    f.verify(&ctx).unwrap();
    drive(f.as_mut(), &ctx, &mut undo, StdDuration::from_secs(3));
    f.before_rollback(&ctx);
    let obs = f.observations();
    let kills = obs["kills"].as_u64().unwrap();
    assert!(kills >= 3, "only {kills} kills in 3 s: {obs}");
    assert!(obs["rounds"].as_u64().unwrap() >= 3, "{obs}");
    assert!(!obs["restarts"].as_array().unwrap().is_empty(), "{obs}");
    let distinct: std::collections::BTreeSet<i32> = hit_pids(&obs).into_iter().collect();
    assert!(
        distinct.len() >= 3,
        "each round kills a fresh worker: {obs}"
    );
    assert!(undo.0.is_empty());
}

#[test]
fn pidfile_target_sigterm() {
    let l = Lone::spawn();
    let ctx = ctx_with_setup("w", l.pid());
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("w.pid");
    std::fs::write(&pidfile, format!("{}\n", l.pid())).unwrap();
    let mut f = kill_fault(
        ProcessTarget {
            pidfile: Some(pidfile.to_string_lossy().into_owned()),
            ..Default::default()
        },
        Sig::SIGTERM,
        None,
    );
    let plan = f.plan(&ctx);
    assert!(
        plan[0]
            .action
            .starts_with(&format!("SIGTERM pid {} ({}", l.pid(), l.bin.name)),
        "{plan:?}"
    );
    let before = vec![(l.pid(), l.start_time())];
    let mut undo = VecUndo::default();
    let (hits, survivors) = kill_and_check(f.as_mut(), &ctx, &mut undo, &before);
    assert_eq!(hits, vec![l.pid()]);
    assert!(survivors.is_empty());
}

#[test]
fn a_signal_that_does_not_kill_is_verified_as_delivered() {
    let mut sh = Command::new("sh")
        .arg("-c")
        .arg("trap 'echo hup' HUP; while :; do sleep 0.1; done")
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = sh.id() as i32;
    struct Group(i32);
    impl Drop for Group {
        fn drop(&mut self) {
            let _ = killpg(Pid::from_raw(self.0), Sig::SIGKILL);
        }
    }
    let _g = Group(pid);
    std::thread::sleep(StdDuration::from_millis(200)); // let the trap be installed
    let ctx = ctx_with_setup("sh", pid);
    let mut f = kill_fault(
        ProcessTarget {
            setup: Some("sh".into()),
            ..Default::default()
        },
        Sig::SIGHUP,
        None,
    );
    let mut undo = VecUndo::default();
    f.inject(&ctx, &mut undo).unwrap();
    let ev = f.verify(&ctx).unwrap();
    assert!(
        ev.contains("SIGHUP delivered") && ev.contains(&pid.to_string()),
        "{ev}"
    );
    assert!(proc::alive(pid), "the shell handles SIGHUP and lives on");
    assert_eq!(f.observations()["kills"], 1);
    drop(_g);
    let _ = sh.wait();
}

#[test]
fn pause_and_resume_a_setup_process() {
    let l = Lone::spawn();
    let target = ProcessTarget {
        setup: Some("api".into()),
        ..Default::default()
    };
    // Before setup has started it: the plan defers, injection refuses.
    let early = FaultContext {
        protected: Protected::for_this_process(),
        ..Default::default()
    };
    let f0 = pause_fault(target.clone());
    let plan = f0.plan(&early);
    assert!(plan[0].action.contains("resolved at run time"), "{plan:?}");
    let mut f0 = pause_fault(target.clone());
    f0.preflight(&early)
        .expect("a setup target is checked at run time");
    let e = f0.inject(&early, &mut VecUndo::default()).unwrap_err();
    assert_eq!(e.code, 69, "{e}");
    assert!(e.message.contains("api"), "{e}");

    let ctx = ctx_with_setup("api", l.pid());
    let st = l.start_time();
    let mut f = pause_fault(target);
    assert_eq!(f.kind(), "process_pause");
    let plan = f.plan(&ctx);
    assert_eq!(plan.len(), 1);
    assert!(
        plan[0]
            .action
            .starts_with(&format!("SIGSTOP pid {} ({}: ", l.pid(), l.bin.name)),
        "{plan:?}"
    );
    assert_eq!(
        plan[0].undo.as_deref(),
        Some(
            format!(
                "SIGCONT pid {} if it still started at {st} (clock ticks since boot)",
                l.pid()
            )
            .as_str()
        )
    );
    f.preflight(&ctx).unwrap();
    let mut undo = VecUndo::default();
    f.inject(&ctx, &mut undo).unwrap();
    assert_eq!(
        undo.0.iter().map(|(_, op)| op.clone()).collect::<Vec<_>>(),
        vec![UndoOp::ResumeProcess {
            pid: l.pid(),
            start_time: st
        }]
    );
    assert!(undo.0[0].0.contains(&l.pid().to_string()));
    let ev = f.verify(&ctx).unwrap();
    assert!(ev.contains(&l.pid().to_string()), "{ev}");
    assert_eq!(l.state(), 'T');
    let obs = f.observations();
    assert_eq!(obs["paused"][0]["pid"].as_i64().unwrap() as i32, l.pid());

    f.before_rollback(&ctx);
    assert_eq!(undo.replay(), vec![Applied::Done]);
    f.verify_rollback(&ctx).unwrap();
    let s = l.state();
    assert!(s == 'S' || s == 'R', "state after resume: {s}");
}

#[test]
fn undo_never_signals_a_different_process() {
    // A record whose start time does not match (the pid was reused): no SIGCONT.
    let a = Lone::spawn();
    let ctx = ctx_with_setup("a", a.pid());
    let mut f = pause_fault(ProcessTarget {
        pid: Some(a.pid()),
        ..Default::default()
    });
    let mut undo = VecUndo::default();
    f.inject(&ctx, &mut undo).unwrap();
    f.verify(&ctx).unwrap();
    let wrong = UndoOp::ResumeProcess {
        pid: a.pid(),
        start_time: a.start_time() + 1,
    };
    assert_eq!(wrong.apply().unwrap(), Applied::AlreadyGone);
    std::thread::sleep(StdDuration::from_millis(100));
    assert_eq!(
        a.state(),
        'T',
        "a record for another process must not resume this one"
    );
    assert_eq!(undo.replay(), vec![Applied::Done]);

    // A paused process that died before rollback: the undo reports it gone.
    let b = Lone::spawn();
    let ctx = ctx_with_setup("b", b.pid());
    let mut f = pause_fault(ProcessTarget {
        setup: Some("b".into()),
        ..Default::default()
    });
    let mut undo = VecUndo::default();
    f.inject(&ctx, &mut undo).unwrap();
    f.verify(&ctx).unwrap();
    kill(Pid::from_raw(b.pid()), Sig::SIGKILL).unwrap();
    let deadline = Instant::now() + StdDuration::from_secs(5);
    while proc::alive(b.pid()) && Instant::now() < deadline {
        std::thread::sleep(StdDuration::from_millis(10));
    }
    assert_eq!(undo.replay(), vec![Applied::AlreadyGone]);
    f.verify_rollback(&ctx).unwrap();
}

#[test]
fn protected_processes_are_never_selected() {
    let ctx = FaultContext {
        protected: Protected::for_this_process(),
        ..Default::default()
    };
    // The runner itself.
    let me = std::process::id() as i32;
    let mut f = kill_fault(
        ProcessTarget {
            pid: Some(me),
            ..Default::default()
        },
        Sig::SIGKILL,
        None,
    );
    let e = f.preflight(&ctx).unwrap_err();
    assert_eq!(e.code, 69);
    assert!(
        e.message.contains("protected") && e.message.contains(&format!("pid {me}")),
        "{e}"
    );
    assert!(e.message.contains("runner itself"), "{e}");
    let e = f.inject(&ctx, &mut VecUndo::default()).unwrap_err();
    assert_eq!(e.code, 69);

    // A child of the runner that is not a setup process (like a probe).
    let probe = Lone::spawn();
    for target in [
        by_name(&probe.bin.name),
        ProcessTarget {
            pid: Some(probe.pid()),
            ..Default::default()
        },
    ] {
        let mut f = pause_fault(target);
        let mut undo = VecUndo::default();
        let e = f.inject(&ctx, &mut undo).unwrap_err();
        assert_eq!(e.code, 69, "{e}");
        assert!(
            e.message.contains("only protected processes")
                && e.message.contains(&format!("pid {}", probe.pid()))
                && e.message.contains("not a setup process"),
            "{e}"
        );
        assert!(undo.0.is_empty());
        let plan = f.plan(&ctx);
        assert!(plan[0].action.contains("protected"), "{plan:?}");
    }
    assert_ne!(probe.state(), 'T');
}

#[test]
fn zero_matches_is_a_precondition_error_unless_allowed() {
    let ctx = FaultContext {
        protected: Protected::for_this_process(),
        ..Default::default()
    };
    let name = unique_name();
    let mut f = kill_fault(by_name(&name), Sig::SIGKILL, None);
    let e: FaultError = f.preflight(&ctx).unwrap_err();
    assert_eq!(e.code, 69);
    assert!(e.message.contains(&format!("name={name}")), "{e}");
    assert!(e.message.contains("allow_none"), "{e}");
    assert_eq!(
        f.inject(&ctx, &mut VecUndo::default()).unwrap_err().code,
        69
    );
    assert_eq!(faultline::exit::ExitError::from(e).code, 69);

    let dir = tempfile::tempdir().unwrap();
    let mut f = pause_fault(ProcessTarget {
        pidfile: Some(dir.path().join("none.pid").to_string_lossy().into_owned()),
        ..Default::default()
    });
    let e = f.preflight(&ctx).unwrap_err();
    assert_eq!(e.code, 69);
    assert!(e.message.contains("cannot read pid file"), "{e}");

    let mut f = kill_fault(
        ProcessTarget {
            allow_none: true,
            ..by_name(&name)
        },
        Sig::SIGKILL,
        Some(200),
    );
    let mut undo = VecUndo::default();
    f.preflight(&ctx).unwrap();
    assert!(f.plan(&ctx)[0].action.contains("nothing"));
    f.inject(&ctx, &mut undo).unwrap();
    let ev = f.verify(&ctx).unwrap();
    assert!(ev.contains("no process was signalled"), "{ev}");
    drive(f.as_mut(), &ctx, &mut undo, StdDuration::from_millis(500));
    let obs = f.observations();
    assert_eq!(obs["kills"], 0);
    assert!(obs["hits"].as_array().unwrap().is_empty());
    assert!(undo.0.is_empty());
}

#[test]
fn blast_radius_limits_refuse_before_anything_is_signalled() {
    let w = Workers::flat(4);
    let before = w.bin.wait_for(4);
    let mut ctx = w.ctx();
    let mut f = kill_fault(
        ProcessTarget {
            max_targets: Some(2),
            ..by_name(&w.bin.name)
        },
        Sig::SIGKILL,
        None,
    );
    let e = f.preflight(&ctx).unwrap_err();
    assert_eq!(e.code, 69);
    assert!(
        e.message.contains("would hit 4") && e.message.contains("limit is 2"),
        "{e}"
    );
    let e = f.inject(&ctx, &mut VecUndo::default()).unwrap_err();
    assert_eq!(e.code, 69);

    ctx.blast_radius.max_targets = Some(3);
    let mut f = pause_fault(by_name(&w.bin.name));
    let mut undo = VecUndo::default();
    let e = f.inject(&ctx, &mut undo).unwrap_err();
    assert_eq!(e.code, 69);
    assert!(e.message.contains("limits.blast_radius.max_targets"), "{e}");
    assert!(undo.0.is_empty());
    for (p, s) in before {
        assert!(still_running(p, s));
        assert_ne!(proc::info(p).unwrap().state, 'T');
    }
}

#[test]
fn cgroup_target() {
    if !is_root() {
        println!("skipped: creating a cgroup needs root");
        return;
    }
    // A writable hierarchy: cgroup v2 at the root, the hybrid `unified` mount, or v1 `pids`.
    let root = Path::new("/sys/fs/cgroup");
    let Some(base) = ["", "unified", "pids"]
        .into_iter()
        .map(|b| root.join(b))
        .find(|b| b.join("cgroup.procs").is_file())
    else {
        println!("skipped: no cgroup hierarchy with cgroup.procs under /sys/fs/cgroup");
        return;
    };
    let name = format!("faultline-test-{}", unique_name());
    let dir = base.join(&name);
    if let Err(e) = std::fs::create_dir(&dir) {
        println!("skipped: cannot create cgroup {}: {e}", dir.display());
        return;
    }
    struct Cg(PathBuf);
    impl Drop for Cg {
        fn drop(&mut self) {
            for _ in 0..100 {
                if std::fs::remove_dir(&self.0).is_ok() {
                    return;
                }
                std::thread::sleep(StdDuration::from_millis(20));
            }
        }
    }
    let _cg = Cg(dir.clone());
    let l = Lone::spawn(); // dropped (killed, reaped) before the cgroup
    std::fs::write(dir.join("cgroup.procs"), l.pid().to_string()).unwrap();
    let rel = dir
        .strip_prefix(root)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let ctx = ctx_with_setup("w", l.pid());
    let mut f = pause_fault(ProcessTarget {
        cgroup: Some(rel),
        ..Default::default()
    });
    let mut undo = VecUndo::default();
    f.inject(&ctx, &mut undo).unwrap();
    f.verify(&ctx).unwrap();
    assert_eq!(l.state(), 'T');
    assert_eq!(undo.replay(), vec![Applied::Done]);
    f.verify_rollback(&ctx).unwrap();
    drop(l);
}

#[test]
fn systemd_unit_without_systemd_says_so() {
    let ctx = FaultContext::default();
    let mut f = kill_fault(
        ProcessTarget {
            systemd_unit: Some(format!("faultline-none-{}", unique_name())),
            ..Default::default()
        },
        Sig::SIGKILL,
        None,
    );
    let e = f.preflight(&ctx).unwrap_err();
    assert_eq!(e.code, 69);
    if proc::systemd_running() {
        assert!(e.message.contains("no process matches"), "{e}");
    } else {
        assert!(e.message.contains("systemd is not running"), "{e}");
    }
}

/// In a forked child that drops to uid 65534, a fault aimed at a root-owned
/// process fails with exit 77 naming the process, and nothing is recorded.
#[test]
fn signalling_another_users_process_is_a_privileges_error() {
    if !is_root() {
        println!("skipped: needs root to run a check as another uid against a root-owned process");
        return;
    }
    let l = Lone::spawn();
    let pid = l.pid();
    let nobody_locks = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => std::path::PathBuf::from(d).join("faultline-locks"),
        _ => std::env::temp_dir().join("faultline-locks-65534"),
    };
    let nobody_locks_existed = nobody_locks.exists();
    let (rd, wr) = nix::unistd::pipe().unwrap();
    // SAFETY: the child only builds and runs the fault, writes to a pipe and
    // leaves with _exit; it never returns into the test harness.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            drop(rd);
            let out = (|| -> String {
                let nobody = nix::unistd::Uid::from_raw(65534);
                let nogroup = nix::unistd::Gid::from_raw(65534);
                if nix::unistd::setgroups(&[]).is_err()
                    || nix::unistd::setgid(nogroup).is_err()
                    || nix::unistd::setuid(nobody).is_err()
                {
                    return "cannot drop privileges".into();
                }
                let ctx = ctx_with_setup("w", pid);
                let target = ProcessTarget {
                    pid: Some(pid),
                    seed: Some(1),
                    ..Default::default()
                };
                let mut k = kill_fault(target.clone(), Sig::SIGKILL, None);
                let pre = k.preflight(&ctx).err();
                let mut undo = VecUndo::default();
                let inj = k.inject(&ctx, &mut undo).err();
                let mut p = pause_fault(target);
                let pinj = p.inject(&ctx, &mut undo).err();
                let code = |e: &Option<FaultError>| e.as_ref().map(|e| e.code).unwrap_or(0);
                format!(
                    "{} {} {} {}\n{}",
                    code(&pre),
                    code(&inj),
                    code(&pinj),
                    undo.0.len(),
                    inj.map(|e| e.message).unwrap_or_default()
                )
            })();
            let b = out.as_bytes();
            // SAFETY: plain write(2) and _exit(2) on a valid fd and buffer.
            unsafe {
                use std::os::fd::AsRawFd;
                libc::write(wr.as_raw_fd(), b.as_ptr().cast(), b.len());
                libc::_exit(0);
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(wr);
            let mut out = String::new();
            use std::io::Read;
            std::fs::File::from(rd).read_to_string(&mut out).unwrap();
            nix::sys::wait::waitpid(child, None).unwrap();
            // The lock directory the child made as uid 65534 (it never
            // released its locks: it only ran the fault's calls).
            if !nobody_locks_existed {
                let _ = std::fs::remove_dir_all(&nobody_locks);
            }
            let (codes, msg) = out.split_once('\n').unwrap_or((&out, ""));
            assert_eq!(codes, "77 77 77 0", "child said: {out}");
            assert!(
                msg.contains(&format!("pid {pid} ({})", l.bin.name)) && msg.contains("uid 0"),
                "{msg}"
            );
            assert!(msg.contains("root") && msg.contains("CAP_KILL"), "{msg}");
            assert!(proc::alive(pid));
            assert_ne!(l.state(), 'T');
        }
    }
}
