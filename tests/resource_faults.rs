//! Resource faults against the real host (as root): cgroup limits on real
//! processes, the built-in stressors, and disk_fill on a tmpfs the test mounts.
//! Each test drives a fault through the library API the way the runner does:
//! preflight, inject (undo recorded into a Vec), verify, before_rollback, the
//! undo replayed in reverse with `UndoOp::apply`, verify_rollback.

use faultline::experiment::model::Fault;
use faultline::fault::cgroup::{CpuLimitSpec, IoLimitSpec, MemoryLimitKind, MemoryLimitSpec};
use faultline::fault::disk::DiskFillSpec;
use faultline::fault::stress::{CpuStressSpec, MemoryStressSpec};
use faultline::fault::target::ProcessTarget;
use faultline::fault::{FaultContext, FaultImpl, Protected, UndoLog};
use faultline::journal::undo::UndoOp;
use faultline::sys::cgroup::Cgroups;
use faultline::units::{Percent, Size};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

macro_rules! need_root {
    () => {
        if !is_root() {
            println!("skipped: needs root");
            return;
        }
    };
}

fn setup() {
    faultline::fault::stress::set_worker_executable(env!("CARGO_BIN_EXE_faultline"));
}

fn ctx(name: &str) -> FaultContext {
    static N: AtomicU32 = AtomicU32::new(0);
    FaultContext {
        run_id: format!(
            "t{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            name
        ),
        protected: Protected::for_this_process(),
        ..Default::default()
    }
}

/// The undo log, in memory.
#[derive(Default)]
struct VecUndo(Vec<UndoOp>);

impl UndoLog for VecUndo {
    fn record(&mut self, _target: &str, op: UndoOp) -> anyhow::Result<()> {
        self.0.push(op);
        Ok(())
    }
}

/// A fault under test. Rolls back on drop if the test did not (a failed assert).
struct Run {
    fault: Box<dyn FaultImpl>,
    ctx: FaultContext,
    undo: VecUndo,
    rolled_back: bool,
}

impl Run {
    fn new(spec: Fault, name: &str) -> Run {
        setup();
        let mut ctx = ctx(name);
        // The test process plays the runner, whose children are protected
        // unless setup started them: register the target as the system
        // under test, as `setup` would.
        let target = match &spec {
            Fault::CpuLimit(s) => s.target.pid,
            Fault::MemoryLimit(s) => s.target.pid,
            Fault::IoLimit(s) => s.target.pid,
            _ => None,
        };
        if let Some(pid) = target {
            ctx.setup_pids.insert("target".into(), pid);
        }
        Run {
            fault: faultline::fault::build(&spec),
            ctx,
            undo: VecUndo::default(),
            rolled_back: false,
        }
    }
    fn inject(&mut self) -> String {
        self.fault.preflight(&self.ctx).expect("preflight");
        let plan = self.fault.plan(&self.ctx);
        assert!(!plan.is_empty());
        self.fault
            .inject(&self.ctx, &mut self.undo)
            .expect("inject");
        self.fault.verify(&self.ctx).expect("verify")
    }
    /// before_rollback, replay the undo in reverse, verify_rollback.
    fn rollback(&mut self) -> serde_json::Value {
        self.rolled_back = true;
        self.fault.before_rollback(&self.ctx);
        for op in self.undo.0.iter().rev() {
            op.apply()
                .unwrap_or_else(|e| panic!("undo {op:?} failed: {e}"));
        }
        self.fault
            .verify_rollback(&self.ctx)
            .expect("verify_rollback");
        self.fault.observations()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.rolled_back {
            for op in self.undo.0.iter().rev() {
                let _ = op.apply();
            }
        }
    }
}

/// A child process, SIGKILLed and reaped on drop.
struct Proc(Child);

impl Proc {
    fn sh(script: &str) -> Proc {
        Proc(
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn sh"),
        )
    }
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn target_pid(pid: i32) -> ProcessTarget {
    ProcessTarget {
        pid: Some(pid),
        ..Default::default()
    }
}

/// A cgroup with the highest CPU weight for the processes a test measures.
/// Other builds share this machine's two CPUs, each in its own autogroup, so
/// without it a measurement tests the load on the machine, not the fault (a
/// limit is only an upper bound, and a stressor holds its share of a CPU only
/// when the scheduler lets it run). Processes go back up on drop.
struct Priority {
    cg: faultline::sys::cgroup::Cgroup,
}

impl Priority {
    fn new(name: &str) -> Priority {
        let l = Cgroups::detect().unwrap();
        let h = l.hierarchy_for("cpu").expect("a cpu controller").clone();
        let home = l.cgroup_of(std::process::id() as i32, &h).unwrap();
        let cg = home.child(&format!(
            "faultline-test-prio-{}-{name}",
            std::process::id()
        ));
        cg.create().unwrap();
        match h.version {
            faultline::sys::cgroup::Version::V1 => cg.write("cpu.shares", "262144").unwrap(),
            faultline::sys::cgroup::Version::V2 => {
                let _ = cg.write("cpu.weight", "10000");
            }
        }
        Priority { cg }
    }
    fn add(&self, pid: i32) {
        self.cg.add_process(pid).unwrap();
    }
}

impl Drop for Priority {
    fn drop(&mut self) {
        let parent = self.cg.parent().unwrap();
        for _ in 0..100 {
            for p in self.cg.procs().unwrap_or_default() {
                let _ = parent.add_process(p);
            }
            if self.cg.remove().is_ok() || !self.cg.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// CPUs used by `pid` over `d` (from utime + stime in /proc/PID/stat).
fn cpus_used(pid: i32, d: Duration) -> f64 {
    let hz = faultline::fault::stress::clock_ticks_per_sec() as f64;
    let a = faultline::fault::stress::cpu_ticks(pid).unwrap();
    let t = Instant::now();
    std::thread::sleep(d);
    let b = faultline::fault::stress::cpu_ticks(pid).unwrap();
    (b - a) as f64 / hz / t.elapsed().as_secs_f64()
}

/// `pid`'s cgroup directory in the hierarchy holding `controller`.
fn cgroup_dir(pid: i32, controller: &str) -> PathBuf {
    let l = Cgroups::detect().unwrap();
    let h = l.hierarchy_for(controller).unwrap().clone();
    l.cgroup_of(pid, &h).unwrap().dir
}

fn obs_cgroups(obs: &serde_json::Value) -> Vec<PathBuf> {
    obs["cgroups"]
        .as_array()
        .unwrap_or_else(|| panic!("no cgroups in observations: {obs}"))
        .iter()
        .map(|v| PathBuf::from(v.as_str().unwrap()))
        .collect()
}

#[test]
fn cpu_limit_holds_a_busy_loop_to_its_quota_and_rolls_back() {
    need_root!();
    let prio = Priority::new("cpulimit");
    let busy = Proc::sh("while :; do :; done");
    let pid = busy.pid();
    prio.add(pid);
    std::thread::sleep(Duration::from_millis(200));
    let before = cgroup_dir(pid, "cpu");
    let mut run = Run::new(
        Fault::CpuLimit(CpuLimitSpec {
            target: target_pid(pid),
            cpus: 0.2,
            include_descendants: true,
        }),
        "cpulimit",
    );
    let evidence = run.inject();
    assert!(evidence.contains("cpu"), "{evidence}");
    let limited = cgroup_dir(pid, "cpu");
    assert_ne!(limited, before, "the busy loop was not moved");
    assert!(limited
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("faultline-"));
    let used = cpus_used(pid, Duration::from_secs(3));
    assert!(
        (0.15..=0.25).contains(&used),
        "a busy loop limited to 0.2 CPUs used {used:.3} CPUs"
    );
    let obs = run.rollback();
    assert_eq!(cgroup_dir(pid, "cpu"), before, "not moved back");
    for cg in obs_cgroups(&obs) {
        assert!(!cg.exists(), "{} was not removed", cg.display());
    }
    assert!(obs["nr_throttled"].as_u64().unwrap() > 0, "{obs}");
    let seen = obs["target_cpus_used"].as_f64().unwrap();
    assert!((0.1..=0.3).contains(&seen), "{obs}");
    // Unlimited again.
    let used = cpus_used(pid, Duration::from_secs(1));
    assert!(
        used > 0.4,
        "after rollback the loop gets only {used:.2} CPUs"
    );
}

#[test]
fn memory_limit_oom_kills_a_process_that_grows_past_it() {
    need_root!();
    setup();
    // A process that grows to 512MiB over 4 s: past a 64MiB limit early on.
    let mut grower = Proc(
        Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args([
                "stress-worker",
                "memory",
                "--size",
                &(512 * MIB).to_string(),
            ])
            .args(["--ramp-ms", "4000"])
            .spawn()
            .unwrap(),
    );
    let pid = grower.pid();
    let before = cgroup_dir(pid, "memory");
    let mut run = Run::new(
        Fault::MemoryLimit(MemoryLimitSpec {
            target: target_pid(pid),
            limit: Size(64 * MIB),
            kind: MemoryLimitKind::Hard,
            include_descendants: true,
        }),
        "memlimit",
    );
    let evidence = run.inject();
    assert!(evidence.contains("67108864"), "{evidence}");
    assert_ne!(cgroup_dir(pid, "memory"), before);
    let t = Instant::now();
    let status = loop {
        if let Some(st) = grower.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the process was not OOM-killed within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status}");
    let obs = run.rollback();
    assert!(
        obs["oom_kills"].as_u64().unwrap() >= 1,
        "observations do not report the OOM kill: {obs}"
    );
    assert_eq!(obs["targets"][0]["alive"], false, "{obs}");
    for cg in obs_cgroups(&obs) {
        assert!(!cg.exists(), "{} was not removed", cg.display());
    }
}

#[test]
fn soft_memory_limit_is_set_and_read_back() {
    need_root!();
    let sleeper = Proc::sh("sleep 60");
    let before = cgroup_dir(sleeper.pid(), "memory");
    let mut run = Run::new(
        Fault::MemoryLimit(MemoryLimitSpec {
            target: target_pid(sleeper.pid()),
            limit: Size(32 * MIB),
            kind: MemoryLimitKind::Soft,
            include_descendants: true,
        }),
        "memsoft",
    );
    let evidence = run.inject();
    let dir = cgroup_dir(sleeper.pid(), "memory");
    let file = if dir.join("memory.soft_limit_in_bytes").exists() {
        dir.join("memory.soft_limit_in_bytes")
    } else {
        dir.join("memory.high")
    };
    let v: u64 = std::fs::read_to_string(&file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(v, 32 * MIB, "{evidence}");
    let obs = run.rollback();
    assert_eq!(cgroup_dir(sleeper.pid(), "memory"), before);
    assert_eq!(obs["oom_kills"], 0, "{obs}");
}

#[test]
fn children_forked_while_limited_go_back_too() {
    need_root!();
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let parent = Proc::sh(&format!(
        "while [ ! -e {g} ]; do sleep 0.05; done; sleep 60 & echo $! > {g}.child; wait",
        g = go.display()
    ));
    let before = cgroup_dir(parent.pid(), "cpu");
    let mut run = Run::new(
        Fault::CpuLimit(CpuLimitSpec {
            target: target_pid(parent.pid()),
            cpus: 0.5,
            include_descendants: true,
        }),
        "fork",
    );
    run.inject();
    std::fs::write(&go, "").unwrap();
    let child_file = dir.path().join("go.child");
    let t = Instant::now();
    while !child_file.exists()
        || std::fs::read_to_string(&child_file)
            .unwrap()
            .trim()
            .is_empty()
    {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    let child: i32 = std::fs::read_to_string(&child_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(cgroup_dir(child, "cpu"), cgroup_dir(parent.pid(), "cpu"));
    let ctx = run.ctx.clone();
    run.fault.tick(&ctx, &mut run.undo).unwrap();
    assert!(
        run.undo
            .0
            .iter()
            .any(|op| matches!(op, UndoOp::MoveToCgroup { pid, .. } if *pid == child)),
        "tick recorded no undo for the forked child {child}: {:?}",
        run.undo.0
    );
    run.rollback();
    assert_eq!(cgroup_dir(child, "cpu"), before);
    assert_eq!(cgroup_dir(parent.pid(), "cpu"), before);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), nix::sys::signal::SIGKILL);
}

#[test]
fn cgroup_faults_refuse_missing_and_protected_targets() {
    need_root!();
    setup();
    let c = ctx("refuse");
    let mut f = faultline::fault::build(&Fault::CpuLimit(CpuLimitSpec {
        target: target_pid(std::process::id() as i32),
        cpus: 0.5,
        include_descendants: true,
    }));
    let e = f.preflight(&c).unwrap_err();
    assert_eq!(e.code, 69, "{e}");
    let mut f = faultline::fault::build(&Fault::CpuLimit(CpuLimitSpec {
        target: ProcessTarget {
            name: Some("no-such-proc-xyz".into()),
            ..Default::default()
        },
        cpus: 0.5,
        include_descendants: true,
    }));
    let e = f.preflight(&c).unwrap_err();
    assert_eq!(e.code, 69);
    assert!(e.message.contains("no-such-proc-xyz"), "{e}");
    let mut f = faultline::fault::build(&Fault::IoLimit(IoLimitSpec {
        target: target_pid(1),
        device: "/etc/hostname".into(),
        read_bytes_per_sec: Some(Size(MIB)),
        write_bytes_per_sec: None,
        read_iops: None,
        write_iops: None,
        include_descendants: true,
    }));
    let e = f.preflight(&c).unwrap_err();
    assert_eq!(e.code, 69);
    assert!(e.message.contains("block device"), "{e}");
}

/// A loop device over a file, detached on drop.
struct LoopDev(String);

impl LoopDev {
    fn new(backing: &Path) -> Option<LoopDev> {
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(backing)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        Some(LoopDev(
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ))
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn io_limit_throttles_direct_reads_from_a_loop_device() {
    need_root!();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    std::fs::write(&img, vec![7u8; 16 * MIB as usize]).unwrap();
    let Some(dev) = LoopDev::new(&img) else {
        println!("skipped: cannot attach a loop device (losetup, package mount)");
        return;
    };
    let go = dir.path().join("go");
    // Waits for the go file, then reads 4MiB with O_DIRECT (bypassing the cache).
    let mut reader = Proc::sh(&format!(
        "while [ ! -e {g} ]; do sleep 0.05; done; exec dd if={d} of=/dev/null bs=64k count=64 iflag=direct status=none",
        g = go.display(),
        d = dev.0
    ));
    let mut run = Run::new(
        Fault::IoLimit(IoLimitSpec {
            target: target_pid(reader.pid()),
            device: dev.0.clone(),
            read_bytes_per_sec: Some(Size(MIB)),
            write_bytes_per_sec: None,
            read_iops: None,
            write_iops: None,
            include_descendants: true,
        }),
        "io",
    );
    let evidence = run.inject();
    assert!(evidence.contains("1048576"), "{evidence}");
    let t = Instant::now();
    std::fs::write(&go, "").unwrap();
    let st = reader.0.wait().unwrap();
    let took = t.elapsed();
    assert!(st.success(), "dd failed: {st}");
    // 4MiB at 1MiB/s: about 4 s; unthrottled it takes milliseconds.
    assert!(
        took >= Duration::from_millis(2500),
        "4MiB read in {took:?} despite a 1MiB/s limit"
    );
    let obs = run.rollback();
    for cg in obs_cgroups(&obs) {
        assert!(!cg.exists());
    }
}

#[test]
fn cpu_stress_holds_half_a_cpu() {
    need_root!();
    let prio = Priority::new("cpustress");
    let mut run = Run::new(
        Fault::CpuStress(CpuStressSpec {
            container: None,
            labels: None,
            compose: None,
            workers: Some(1),
            load: Some(Percent(50.0)),
        }),
        "cpustress",
    );
    run.fault.preflight(&run.ctx).unwrap();
    let ctx = run.ctx.clone();
    run.fault.inject(&ctx, &mut run.undo).unwrap();
    let pids = worker_pids(&run);
    assert_eq!(pids.len(), 1);
    prio.add(pids[0]);
    let evidence = run.fault.verify(&ctx).unwrap();
    assert!(evidence.contains("1 workers alive"), "{evidence}");
    let used = cpus_used(pids[0], Duration::from_secs(5));
    assert!(
        (0.45..=0.55).contains(&used),
        "a 50% worker used {used:.3} CPUs over 5 s"
    );
    let obs = run.rollback();
    let mean = obs["load_achieved_mean"].as_f64().unwrap();
    assert!((0.4..=0.6).contains(&mean), "{obs}");
    assert!(
        !faultline::sys::proc::alive(pids[0]),
        "worker survived rollback"
    );
}

/// The worker pids from the KillProcess undo records.
fn worker_pids(run: &Run) -> Vec<i32> {
    run.undo
        .0
        .iter()
        .filter_map(|op| match op {
            UndoOp::KillProcess { pid, .. } => Some(*pid),
            _ => None,
        })
        .collect()
}

#[test]
fn memory_stress_reaches_its_size() {
    need_root!();
    let mut run = Run::new(
        Fault::MemoryStress(MemoryStressSpec {
            container: None,
            labels: None,
            compose: None,
            size: Some(Size(256 * MIB)),
            percent: None,
            ramp: None,
        }),
        "memstress",
    );
    run.inject();
    let pids = worker_pids(&run);
    assert_eq!(pids.len(), 1);
    // verify() returned once the worker was close; give it time to finish
    // touching pages on this busy machine, then check where it settled.
    let t = Instant::now();
    while faultline::fault::stress::status_bytes(pids[0], "VmRSS").unwrap() < 250 * MIB
        && t.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let rss = faultline::fault::stress::status_bytes(pids[0], "VmRSS").unwrap();
    assert!(
        (250 * MIB..=262 * MIB).contains(&rss),
        "RSS is {} MiB",
        rss / MIB
    );
    let obs = run.rollback();
    assert_eq!(obs["target_bytes"], 256 * MIB);
    assert!(obs["rss_bytes"].as_u64().unwrap() >= 250 * MIB, "{obs}");
    assert!(!faultline::sys::proc::alive(pids[0]));
}

#[test]
fn memory_stress_ramps_up() {
    need_root!();
    let mut run = Run::new(
        Fault::MemoryStress(MemoryStressSpec {
            container: None,
            labels: None,
            compose: None,
            size: Some(Size(128 * MIB)),
            percent: None,
            ramp: Some(faultline::units::Duration::from_secs(3)),
        }),
        "memramp",
    );
    run.inject();
    let pid = worker_pids(&run)[0];
    let early = faultline::fault::stress::status_bytes(pid, "VmRSS").unwrap();
    assert!(early < 100 * MIB, "no ramp: {} MiB at once", early / MIB);
    std::thread::sleep(Duration::from_millis(3500));
    let ctx = run.ctx.clone();
    run.fault.verify(&ctx).expect("verify after the ramp");
    let late = faultline::fault::stress::status_bytes(pid, "VmRSS").unwrap();
    assert!(late >= 120 * MIB, "after the ramp only {} MiB", late / MIB);
    run.rollback();
}

/// A tmpfs mounted in a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs failed");
        Tmpfs { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn fill_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(".faultline-fill-"))
        .collect()
}

#[test]
fn disk_fill_reaches_its_level_on_a_tmpfs_and_cleans_up() {
    need_root!();
    let fs = Tmpfs::new("64m");
    std::fs::write(fs.path().join("keep"), vec![1u8; 4 * MIB as usize]).unwrap();
    let level = |p: &Path| faultline::fault::disk::FsSpace::of(p).unwrap().level();
    let before = level(fs.path());
    let mut run = Run::new(
        Fault::DiskFill(DiskFillSpec {
            container: None,
            path: fs.path().display().to_string(),
            fill_to: Some(Percent(75.0)),
            size: None,
            reserve: Some(Size(8 * MIB)),
        }),
        "fill",
    );
    let evidence = run.inject();
    let now = level(fs.path());
    assert!((now - 75.0).abs() <= 1.0, "level {now:.2}%: {evidence}");
    assert!(!fill_files(fs.path()).is_empty());
    let obs = run.rollback();
    assert!(fill_files(fs.path()).is_empty(), "fill files left behind");
    assert!(
        fs.path().join("keep").exists(),
        "a file the fault did not create was removed"
    );
    assert!((level(fs.path()) - before).abs() < 0.5);
    assert!(obs["bytes_allocated"].as_u64().unwrap() > 40 * MIB, "{obs}");
}

#[test]
fn disk_fill_by_size_and_refusing_the_reserve() {
    need_root!();
    let fs = Tmpfs::new("64m");
    let mut run = Run::new(
        Fault::DiskFill(DiskFillSpec {
            container: None,
            path: fs.path().display().to_string(),
            fill_to: None,
            size: Some(Size(16 * MIB)),
            reserve: Some(Size(8 * MIB)),
        }),
        "fillsize",
    );
    run.inject();
    let sp = faultline::fault::disk::FsSpace::of(fs.path()).unwrap();
    assert!(
        sp.used() >= 16 * MIB && sp.used() < 17 * MIB,
        "used {}",
        sp.used()
    );
    run.rollback();
    assert!(fill_files(fs.path()).is_empty());

    // 95% of 64MiB would leave ~3MiB free, under the 8MiB reserve: refused.
    let mut f = faultline::fault::build(&Fault::DiskFill(DiskFillSpec {
        container: None,
        path: fs.path().display().to_string(),
        fill_to: Some(Percent(95.0)),
        size: None,
        reserve: Some(Size(8 * MIB)),
    }));
    let e = f.preflight(&ctx("fillrefuse")).unwrap_err();
    assert_eq!(e.code, 69, "{e}");
    assert!(e.message.contains("reserve"), "{e}");
    // The default reserve (64MiB) is more than this whole filesystem.
    let mut f = faultline::fault::build(&Fault::DiskFill(DiskFillSpec {
        container: None,
        path: fs.path().display().to_string(),
        fill_to: None,
        size: Some(Size(MIB)),
        reserve: None,
    }));
    assert_eq!(f.preflight(&ctx("fillrefuse2")).unwrap_err().code, 69);
    assert!(fill_files(fs.path()).is_empty());
}

const CHILD_ENV: &str = "FAULTLINE_TEST_STRESS_CHILD";

/// Workers die with the process that started them (PR_SET_PDEATHSIG), even
/// though the thread that called `inject` exited long before.
#[test]
fn stress_workers_die_with_their_parent() {
    if std::env::var_os(CHILD_ENV).is_some() {
        // Child role: start a stressor from a short-lived thread, report the
        // worker pids, and wait to be killed.
        let handle = std::thread::spawn(|| {
            let mut run = Run::new(
                Fault::CpuStress(CpuStressSpec {
                    container: None,
                    labels: None,
                    compose: None,
                    workers: Some(2),
                    load: Some(Percent(20.0)),
                }),
                "orphan",
            );
            run.inject();
            let pids = worker_pids(&run);
            run.rolled_back = true; // leave them running
            pids
        });
        let pids = handle.join().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let pids: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
        println!("WORKERS {}", pids.join(" "));
        std::thread::sleep(Duration::from_secs(120));
        return;
    }
    need_root!();
    let mut child = Proc(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "stress_workers_die_with_their_parent",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD_ENV, "1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    use std::io::BufRead;
    let out = child.0.stdout.take().unwrap();
    let mut pids = Vec::new();
    for line in std::io::BufReader::new(out).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("WORKERS ") {
            pids = rest
                .split_whitespace()
                .map(|p| p.parse::<i32>().unwrap())
                .collect();
            break;
        }
    }
    assert_eq!(pids.len(), 2, "the child did not report its workers");
    for p in &pids {
        assert!(
            faultline::sys::proc::alive(*p),
            "worker {p} died with the thread that started it"
        );
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.pid()),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let _ = child.0.wait();
    let t = Instant::now();
    while pids.iter().any(|p| faultline::sys::proc::alive(*p)) {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "workers {pids:?} outlived their parent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
