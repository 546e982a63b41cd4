//! Built-in stressors: `cpu_stress` and `memory_stress` (no stress-ng needed).

use super::{FaultContext, FaultError, FaultImpl, PlannedOp, UndoLog};
use crate::fault::container::ContainerFields;
use crate::journal::undo::UndoOp;
use crate::sys::cgroup::Cgroup;
use crate::sys::proc;
use crate::units::{Duration, Percent, Size};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration as StdDuration, Instant};

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CpuStressSpec {
    /// Number of workers (default: one per CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<u32>,
    /// Load each worker holds on its CPU (default 100%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<Percent>,
    /// Run the stressor inside this container's cgroup (a name or id), so
    /// it counts against the container's own limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Run one stressor inside the cgroup of every running container
    /// carrying all these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// Run one stressor inside the cgroup of every running container of
    /// this Compose service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose: Option<crate::fault::container::ComposeService>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryStressSpec {
    /// How much to allocate and touch...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
    /// ...or a share of the memory available when the fault starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<Percent>,
    /// Grow to the size over this long instead of at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<Duration>,
    /// Run the stressor inside this container's cgroup (a name or id), so
    /// it counts against the container's own limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Run one stressor inside the cgroup of every running container
    /// carrying all these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// Run one stressor inside the cgroup of every running container of
    /// this Compose service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose: Option<crate::fault::container::ComposeService>,
}

pub fn build_cpu_stress(s: &CpuStressSpec) -> Box<dyn FaultImpl> {
    let mut f = Stress::new(Load::Cpu {
        workers: s.workers,
        load: s.load.map(|p| p.fraction()).unwrap_or(1.0),
    });
    f.containers = crate::fault::network::ContainerSelectorOwned::of(s);
    Box::new(f)
}
pub fn build_memory_stress(s: &MemoryStressSpec) -> Box<dyn FaultImpl> {
    let mut f = Stress::new(Load::Memory {
        size: s.size.map(|z| z.bytes()),
        percent: s.percent.map(|p| p.fraction()),
        ramp: s.ramp.map(|d| d.std()),
    });
    f.containers = crate::fault::network::ContainerSelectorOwned::of(s);
    Box::new(f)
}

// ---------------------------------------------------------------- /proc helpers

/// Clock ticks per second (`getconf CLK_TCK`), the unit of utime/stime.
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as u64
    } else {
        100
    }
}

/// utime + stime of `pid` in clock ticks (fields 14 and 15 of /proc/PID/stat).
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    let raw = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = raw[raw.rfind(')')? + 1..].split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The largest share of MemAvailable a memory_stress may take.
pub const MAX_MEMORY_SHARE: f64 = 0.9;

/// CPU time a process used, in seconds, and the resolution of that number:
/// /proc/PID/schedstat (nanoseconds) where the kernel has it, else clock
/// ticks from /proc/PID/stat (10 ms at the usual 100 Hz).
fn cpu_seconds(pid: i32) -> Option<(f64, f64)> {
    if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/schedstat")) {
        if let Some(ns) = s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        {
            return Some((ns as f64 / 1e9, 1e-6));
        }
    }
    let hz = clock_ticks_per_sec() as f64;
    cpu_ticks(pid).map(|t| (t as f64 / hz, 1.0 / hz))
}

/// How long verify watches the workers: 500 ms, longer (up to 3 s) when a
/// low load would use less than a few units of what can be measured.
fn verify_window(load: f64, resolution: f64) -> StdDuration {
    let needed = if load > 0.0 {
        3.0 * resolution / load
    } else {
        0.0
    };
    StdDuration::from_secs_f64(needed.clamp(0.5, 3.0))
}

/// Whether a worker that used `used` s of CPU in `secs` s shows it is not
/// running: no CPU at all, when its share was at least three units of the
/// measurement's resolution (below that, zero proves nothing).
fn looks_idle(used: f64, load: f64, secs: f64, resolution: f64) -> bool {
    used <= 0.0 && load * secs >= 3.0 * resolution
}

/// A `kB` field of /proc/PID/status (VmRSS, VmHWM), in bytes.
pub fn status_bytes(pid: i32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    meminfo_field(&s, field)
}

/// A `kB` field of /proc/meminfo-style text, in bytes.
fn meminfo_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

/// MemAvailable from /proc/meminfo, in bytes.
pub fn mem_available() -> Option<u64> {
    meminfo_field(
        &std::fs::read_to_string("/proc/meminfo").ok()?,
        "MemAvailable",
    )
}

// ---------------------------------------------------------------- spawning

static WORKER_EXE: OnceLock<PathBuf> = OnceLock::new();

/// Overrides the program started as `PROGRAM stress-worker ...` (by default
/// this executable). Library users whose binary is not faultline — such as
/// integration tests — point it at the faultline binary. First call wins.
pub fn set_worker_executable(path: impl Into<PathBuf>) {
    let _ = WORKER_EXE.set(path.into());
}

/// The program to run workers with.
pub fn worker_executable() -> PathBuf {
    if let Some(p) = WORKER_EXE.get() {
        return p.clone();
    }
    match std::env::current_exe() {
        // A replaced binary shows as "... (deleted)"; /proc/self/exe still runs it.
        Ok(p) if p.exists() => p,
        _ => PathBuf::from("/proc/self/exe"),
    }
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Starts a worker from one long-lived thread. PR_SET_PDEATHSIG fires when
/// the *thread* that forked the child exits, and the runner calls faults from
/// a pool whose threads come and go; forking from a thread that lives as long
/// as the process ties the workers' lives to the process, as intended.
fn spawn_from_stable_thread(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("faultline-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("cannot start the stressor spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.lock()
        .map_err(|_| io::Error::other("the stressor spawner thread is gone"))?
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("the stressor spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the stressor spawner thread is gone"))?
}

/// The command for one worker: its own process group, SIGKILLed when this
/// process dies, silent.
fn worker_command(args: &[String]) -> Command {
    let mut cmd = Command::new(worker_executable());
    cmd.arg("stress-worker").args(args);
    let parent = std::process::id() as i32;
    cmd.arg("--parent").arg(parent.to_string());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the prctl took effect.
            if libc::getppid() != parent {
                return Err(io::Error::other("parent exited"));
            }
            Ok(())
        });
    }
    cmd
}

// ---------------------------------------------------------------- the fault

#[derive(Clone, Debug)]
enum Load {
    Cpu {
        workers: Option<u32>,
        /// 0 < load <= 1.
        load: f64,
    },
    Memory {
        size: Option<u64>,
        /// 0 < percent <= 1, of MemAvailable.
        percent: Option<f64>,
        ramp: Option<StdDuration>,
    },
}

struct Worker {
    child: Child,
    pid: i32,
    start_time: u64,
    /// CPU seconds the worker had used when the fault's window began.
    cpu_at_start: f64,
}

/// `cpu_stress` and `memory_stress`: worker processes running
/// `faultline stress-worker`.
pub struct Stress {
    load: Load,
    workers: Vec<Worker>,
    started: Option<Instant>,
    /// memory: the RSS the worker aims at.
    target_bytes: u64,
    observations: serde_json::Map<String, serde_json::Value>,
    /// The previous health check: when, and each worker's CPU seconds then.
    last_health: Option<(Instant, Vec<f64>)>,
    /// Run the workers inside these containers' cgroups (a set of workers
    /// per container) instead of the runner's.
    containers: Option<crate::fault::network::ContainerSelectorOwned>,
    /// The containers the workers were put in, with their cgroups.
    placed: Vec<(crate::fault::container::ContainerInfo, Vec<String>)>,
}

impl Stress {
    fn new(load: Load) -> Self {
        Stress {
            load,
            workers: Vec::new(),
            started: None,
            target_bytes: 0,
            observations: serde_json::Map::new(),
            last_health: None,
            containers: None,
            placed: Vec::new(),
        }
    }

    fn kind_name(&self) -> &'static str {
        match self.load {
            Load::Cpu { .. } => "cpu_stress",
            Load::Memory { .. } => "memory_stress",
        }
    }

    fn worker_count(&self) -> usize {
        match self.load {
            Load::Cpu { workers, .. } => workers.map(|w| w as usize).unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            }),
            Load::Memory { .. } => 1,
        }
    }

    /// The memory target in bytes, from `size` or `percent` of MemAvailable now.
    fn memory_target(&self) -> Result<u64, FaultError> {
        let Load::Memory { size, percent, .. } = self.load else {
            return Ok(0);
        };
        let avail = mem_available().ok_or_else(|| {
            FaultError::precondition("memory_stress: cannot read MemAvailable from /proc/meminfo")
        })?;
        let want = match (size, percent) {
            (Some(s), _) => s,
            (None, Some(p)) => (avail as f64 * p) as u64,
            (None, None) => {
                return Err(FaultError::precondition(
                    "memory_stress needs `size` or `percent`",
                ))
            }
        };
        let most = (avail as f64 * MAX_MEMORY_SHARE) as u64;
        if want > most {
            return Err(FaultError::precondition(format!(
                "memory_stress of {} is more than {}% of the memory available now ({}); it would only set off the OOM killer; give a smaller `size` or a `percent`",
                Size(want),
                MAX_MEMORY_SHARE * 100.0,
                Size(avail)
            )));
        }
        Ok(want)
    }

    fn worker_args(&self) -> Vec<String> {
        match self.load {
            Load::Cpu { load, .. } => vec![
                "cpu".into(),
                "--load".into(),
                format!("{}", (load * 100.0 * 1000.0).round() / 1000.0),
            ],
            Load::Memory { ramp, .. } => {
                let mut v = vec![
                    "memory".into(),
                    "--size".into(),
                    self.target_bytes.to_string(),
                ];
                if let Some(r) = ramp {
                    v.push("--ramp-ms".into());
                    v.push(r.as_millis().to_string());
                }
                v
            }
        }
    }

    /// Kills every worker started so far (used when inject fails midway).
    fn kill_all(&mut self) {
        for w in &mut self.workers {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
    }

    /// The RSS a memory worker should have reached by now.
    fn expected_rss_now(&self) -> u64 {
        let Load::Memory { ramp, .. } = self.load else {
            return 0;
        };
        let frac = match (ramp, self.started) {
            (Some(r), Some(t0)) if !r.is_zero() => {
                (t0.elapsed().as_secs_f64() / r.as_secs_f64()).min(1.0)
            }
            _ => 1.0,
        };
        (self.target_bytes as f64 * frac) as u64
    }

    /// Any worker that exited, as a message.
    fn dead_worker(&mut self) -> Option<String> {
        for w in &mut self.workers {
            match w.child.try_wait() {
                Ok(Some(st)) => {
                    return Some(format!(
                        "worker pid {} exited ({st}){}",
                        w.pid,
                        if st.code().is_none() {
                            " — killed, by the OOM killer or someone else"
                        } else {
                            ""
                        }
                    ))
                }
                Ok(None) => {}
                Err(e) => return Some(format!("worker pid {}: {e}", w.pid)),
            }
        }
        None
    }

    fn measure(&mut self) {
        let mut obs = serde_json::Map::new();
        obs.insert(
            "pids".into(),
            self.workers
                .iter()
                .map(|w| w.pid)
                .collect::<Vec<_>>()
                .into(),
        );
        let secs = self
            .started
            .map(|t| t.elapsed().as_secs_f64())
            .unwrap_or(0.0);
        obs.insert("active_seconds".into(), round3(secs).into());
        match self.load {
            Load::Cpu { load, .. } => {
                let loads: Vec<f64> = self
                    .workers
                    .iter()
                    .map(|w| {
                        let now = cpu_seconds(w.pid).map_or(w.cpu_at_start, |c| c.0);
                        if secs > 0.0 {
                            round3((now - w.cpu_at_start).max(0.0) / secs)
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let mean = if loads.is_empty() {
                    0.0
                } else {
                    loads.iter().sum::<f64>() / loads.len() as f64
                };
                obs.insert("workers".into(), self.workers.len().into());
                obs.insert("load_target".into(), load.into());
                obs.insert("load_achieved_mean".into(), round3(mean).into());
                obs.insert("load_achieved".into(), loads.into());
            }
            Load::Memory { .. } => {
                obs.insert("target_bytes".into(), self.target_bytes.into());
                if let Some(w) = self.workers.first() {
                    if let Some(rss) = status_bytes(w.pid, "VmRSS") {
                        obs.insert("rss_bytes".into(), rss.into());
                    }
                    if let Some(hwm) = status_bytes(w.pid, "VmHWM") {
                        obs.insert("peak_rss_bytes".into(), hwm.into());
                    }
                }
            }
        }
        self.observations = obs;
    }
}

impl Drop for Stress {
    fn drop(&mut self) {
        // Reap workers the undo already killed; never leave zombies behind.
        for w in &mut self.workers {
            let _ = w.child.try_wait();
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl FaultImpl for Stress {
    fn kind(&self) -> &'static str {
        self.kind_name()
    }

    fn target(&self) -> String {
        match &self.containers {
            Some(c) => format!("inside the cgroup of {}", c.describe()),
            None => "this host".into(),
        }
    }

    fn preflight(&mut self, _ctx: &FaultContext) -> Result<(), FaultError> {
        let exe = worker_executable();
        if !exe.exists() {
            return Err(FaultError::precondition(format!(
                "{}: the worker program {} does not exist",
                self.kind_name(),
                exe.display()
            )));
        }
        if let Load::Cpu { load, .. } = self.load {
            if !(load > 0.0 && load <= 1.0) {
                return Err(FaultError::precondition(format!(
                    "cpu_stress.load must be above 0% and at most 100% (got {}%)",
                    load * 100.0
                )));
            }
        }
        self.memory_target()?;
        if let Some(sel) = &self.containers {
            let sel = sel.container_selector().expect("a container selector");
            match crate::fault::container::resolve_some(&sel) {
                Err(_) if _ctx.setup_pending => return Ok(()),
                Err(e) => return Err(e),
                Ok(list) => {
                    crate::fault::container::check_blast_radius(
                        self.kind_name(),
                        &sel,
                        list.len(),
                        _ctx,
                    )?;
                    for c in &list {
                        crate::fault::container::all_cgroups(c)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn plan(&self, _ctx: &FaultContext) -> Vec<PlannedOp> {
        let mut me = Stress::new(self.load.clone());
        me.target_bytes = self.memory_target().unwrap_or(0);
        let mut argv = vec![
            worker_executable().display().to_string(),
            "stress-worker".to_string(),
        ];
        argv.extend(me.worker_args());
        argv.push("--parent".into());
        argv.push(std::process::id().to_string());
        let n = self.worker_count();
        let what = match self.load {
            Load::Cpu { load, .. } => format!(
                "start {n} CPU worker process(es), each holding {}% of one CPU",
                load * 100.0
            ),
            Load::Memory { ramp, .. } => format!(
                "start 1 memory worker that allocates and touches {}{}",
                Size(me.target_bytes),
                ramp.map(|r| format!(" over {}", Duration(r)))
                    .unwrap_or_default()
            ),
        };
        let Some(sel) = &self.containers else {
            return vec![PlannedOp {
                action: what,
                command: Some(argv),
                undo: Some("kill -KILL <each worker pid>".into()),
            }];
        };
        let sel = sel.container_selector().expect("a container selector");
        let list = match crate::fault::container::resolve_some(&sel) {
            Ok(l) => l,
            Err(e) => {
                return vec![PlannedOp {
                    action: format!("cannot run: {e}"),
                    command: None,
                    undo: None,
                }]
            }
        };
        let mut ops = Vec::new();
        for c in list {
            ops.push(PlannedOp {
                action: c.describe(),
                command: None,
                undo: None,
            });
            let cgs: Vec<String> = crate::fault::container::all_cgroups(&c)
                .map(|v| {
                    v.iter()
                        .map(|g| g.procs_file().display().to_string())
                        .collect()
                })
                .unwrap_or_default();
            ops.push(PlannedOp {
                action: format!(
                    "{what}, then move each into container {}'s cgroups (write its pid to {})",
                    c.label(),
                    cgs.join(", ")
                ),
                command: Some(argv.clone()),
                undo: Some(
                    "kill -KILL <each worker pid> (a dead process leaves the container's cgroups)"
                        .into(),
                ),
            });
        }
        ops
    }

    fn inject(&mut self, ctx: &FaultContext, undo: &mut dyn UndoLog) -> Result<(), FaultError> {
        if ctx.dry_run {
            return Ok(());
        }
        if let Load::Memory { .. } = self.load {
            self.target_bytes = self.memory_target()?;
        }
        let args = self.worker_args();
        let kind = self.kind_name();
        // Where the workers go: the runner's own cgroups, or one set of
        // workers inside each matching container's cgroups.
        let mut groups: Vec<Option<(crate::fault::container::ContainerInfo, Vec<Cgroup>)>> =
            vec![None];
        if let Some(sel) = &self.containers {
            let sel = sel.container_selector().expect("a container selector");
            groups.clear();
            let found = crate::fault::container::resolve_some(&sel)?;
            crate::fault::container::check_blast_radius(kind, &sel, found.len(), ctx)?;
            for c in found {
                let cgs = crate::fault::container::all_cgroups(&c)?;
                groups.push(Some((c, cgs)));
            }
        }
        for group in groups {
            if let Some((c, cgs)) = &group {
                self.placed.push((
                    c.clone(),
                    cgs.iter().map(|g| g.dir.display().to_string()).collect(),
                ));
            }
            for _ in 0..self.worker_count() {
                let child = match spawn_from_stable_thread(worker_command(&args)) {
                    Ok(c) => c,
                    Err(e) => {
                        self.kill_all();
                        return Err(FaultError::failed(format!(
                            "{kind}: cannot start a worker ({} stress-worker): {e}",
                            worker_executable().display()
                        )));
                    }
                };
                let pid = child.id() as i32;
                let start_time = proc::start_time(pid).unwrap_or(0);
                let cpu = cpu_seconds(pid).map_or(0.0, |c| c.0);
                self.workers.push(Worker {
                    child,
                    pid,
                    start_time,
                    cpu_at_start: cpu,
                });
                if let Err(e) = undo.record(
                    &format!("{kind} worker"),
                    UndoOp::KillProcess { pid, start_time },
                ) {
                    self.kill_all();
                    return Err(FaultError::failed(format!(
                        "{kind}: cannot write the undo record: {e:#}"
                    )));
                }
                if let Some((c, cgs)) = &group {
                    for cg in cgs {
                        if let Err(e) = cg.add_process(pid) {
                            self.kill_all();
                            return Err(FaultError::failed(format!(
                                "{kind}: cannot move worker {pid} into container {}'s cgroup: {e}",
                                c.label()
                            )));
                        }
                    }
                }
            }
        }
        for w in &mut self.workers {
            w.cpu_at_start = cpu_seconds(w.pid).map_or(w.cpu_at_start, |c| c.0);
        }
        self.started = Some(Instant::now());
        Ok(())
    }

    fn verify(&mut self, _ctx: &FaultContext) -> Result<String, FaultError> {
        let kind = self.kind_name();
        match self.load {
            Load::Cpu { load, .. } => {
                let before: Vec<(f64, f64)> = self
                    .workers
                    .iter()
                    .map(|w| cpu_seconds(w.pid).unwrap_or((0.0, 0.0)))
                    .collect();
                let resolution = before.iter().map(|b| b.1).fold(0.0, f64::max);
                let t0 = Instant::now();
                std::thread::sleep(verify_window(load, resolution));
                if let Some(d) = self.dead_worker() {
                    return Err(FaultError::failed(format!("{kind}: {d}")));
                }
                let secs = t0.elapsed().as_secs_f64();
                let mut idle = Vec::new();
                let mut total = 0.0;
                for (w, b) in self.workers.iter().zip(before) {
                    let (now, res) = cpu_seconds(w.pid).unwrap_or(b);
                    let used = (now - b.0).max(0.0);
                    total += used / secs;
                    if looks_idle(used, load, secs, res) {
                        idle.push(w.pid);
                    }
                }
                if !idle.is_empty() {
                    return Err(FaultError::failed(format!(
                        "{kind}: workers {idle:?} used no CPU in {secs:.1}s"
                    )));
                }
                Ok(format!(
                    "{} workers alive, using {:.2} CPUs together (target {:.2})",
                    self.workers.len(),
                    total,
                    load * self.workers.len() as f64
                ))
            }
            Load::Memory { .. } => {
                let Some(pid) = self.workers.first().map(|w| w.pid) else {
                    return Err(FaultError::failed("memory_stress: no worker running"));
                };
                // Touching pages takes time, more on a busy host: wait as long
                // as the worker keeps growing; fail when it exits, stalls
                // (no growth for STALL) or is still short after MAX_RAMP_WAIT.
                let t0 = Instant::now();
                let mut progress = (Instant::now(), 0u64);
                loop {
                    if let Some(d) = self.dead_worker() {
                        return Err(FaultError::failed(format!("{kind}: {d}")));
                    }
                    let rss = status_bytes(pid, "VmRSS").unwrap_or(0);
                    // Slack: one batch of chunks plus 5%.
                    let want = (self.expected_rss_now() as f64 * 0.95) as u64;
                    let want = want.saturating_sub((MEM_CHUNK * TOUCH_THREADS) as u64);
                    if rss >= want {
                        return Ok(format!(
                            "worker pid {pid} holds {} (expected so far {}, target {})",
                            Size(rss),
                            Size(self.expected_rss_now()),
                            Size(self.target_bytes)
                        ));
                    }
                    if rss > progress.1 + (MEM_CHUNK as u64) {
                        progress = (Instant::now(), rss);
                    }
                    if progress.0.elapsed() > STALL || t0.elapsed() > MAX_RAMP_WAIT {
                        return Err(FaultError::failed(format!(
                            "memory_stress: worker pid {pid} holds only {} after {:.1}s ({}); expected {}",
                            Size(rss),
                            t0.elapsed().as_secs_f64(),
                            if progress.0.elapsed() > STALL {
                                format!("no growth for {}s", STALL.as_secs())
                            } else {
                                "still growing".to_string()
                            },
                            Size(want)
                        )));
                    }
                    std::thread::sleep(StdDuration::from_millis(50));
                }
            }
        }
    }

    /// Every worker is alive and delivers its load: CPU time used since the
    /// previous check (cpu_stress, in CPUs), or resident memory against what
    /// the ramp should have reached (memory_stress, in bytes).
    fn health(&mut self, _ctx: &FaultContext) -> Option<super::FaultHealth> {
        self.started?;
        if let Some(d) = self.dead_worker() {
            return Some(super::FaultHealth::missing(d));
        }
        match self.load {
            Load::Cpu { load, .. } => {
                let now = Instant::now();
                let mut resolution: f64 = 0.0;
                let cpu: Vec<f64> = self
                    .workers
                    .iter()
                    .map(|w| {
                        cpu_seconds(w.pid).map_or(0.0, |(c, res)| {
                            resolution = resolution.max(res);
                            c
                        })
                    })
                    .collect();
                let workers = self.workers.len() as f64;
                let target = load * workers;
                let prev = self.last_health.replace((now, cpu.clone()));
                let (t0, before) = match prev {
                    Some(p) => p,
                    None => (
                        self.started.unwrap_or(now),
                        self.workers.iter().map(|w| w.cpu_at_start).collect(),
                    ),
                };
                let secs = now.duration_since(t0).as_secs_f64();
                // Measure over at least two of the workers' slices, and long
                // enough that the CPU time used is 20 units of what can be
                // measured (clock ticks where schedstat is missing), at most 5 s.
                let min_window = (2.0 * SLICE.as_secs_f64())
                    .max((20.0 * resolution / target.max(1e-6)).min(5.0));
                if secs < min_window {
                    self.last_health = Some((t0, before));
                    return Some(super::FaultHealth::present(format!(
                        "{} workers alive",
                        self.workers.len()
                    )));
                }
                let used: f64 = cpu.iter().zip(&before).map(|(n, b)| (n - b).max(0.0)).sum();
                let cpus = used / secs;
                // A worker spends its share once per slice, so a window's
                // edges can shift up to one slice's share into the next
                // window: credit that much above target (a late slice makes
                // up for the window before), never more.
                let carry = workers * load * SLICE.as_secs_f64() / secs;
                Some(
                    super::FaultHealth::present(format!(
                        "{} workers using {cpus:.2} CPUs (target {target:.2})",
                        self.workers.len()
                    ))
                    .measured(cpus.min(target + carry), target),
                )
            }
            Load::Memory { .. } => {
                let pid = self.workers.first()?.pid;
                let rss = status_bytes(pid, "VmRSS").unwrap_or(0);
                let want = self.expected_rss_now();
                Some(
                    super::FaultHealth::present(format!(
                        "worker pid {pid} holds {} (expected {})",
                        Size(rss),
                        Size(want)
                    ))
                    .measured(rss.min(want) as f64, want.max(1) as f64),
                )
            }
        }
    }

    fn before_rollback(&mut self, _ctx: &FaultContext) {
        self.measure();
    }

    fn verify_rollback(&mut self, _ctx: &FaultContext) -> Result<(), FaultError> {
        // A killed worker frees its memory before it is gone: gigabytes take
        // seconds on a busy host. Allow 3 s plus 3 s per GiB held.
        let deadline = Instant::now()
            + StdDuration::from_secs(3)
            + StdDuration::from_secs_f64(3.0 * self.target_bytes as f64 / (1u64 << 30) as f64);
        let mut alive = Vec::new();
        for w in &mut self.workers {
            loop {
                match w.child.try_wait() {
                    Ok(Some(_)) => break,
                    // Not our child any more (reaped elsewhere): go by /proc.
                    Err(_) if !proc::is_same(w.pid, w.start_time) => break,
                    Err(_) => {
                        alive.push(w.pid);
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(StdDuration::from_millis(20))
                    }
                    Ok(None) => {
                        alive.push(w.pid);
                        break;
                    }
                }
            }
        }
        if alive.is_empty() {
            Ok(())
        } else {
            Err(FaultError::failed(format!(
                "{}: workers {alive:?} are still running after rollback",
                self.kind_name()
            )))
        }
    }

    fn observations(&self) -> serde_json::Value {
        let mut obs = self.observations.clone();
        if !self.placed.is_empty() {
            obs.insert(
                "containers".into(),
                self.placed
                    .iter()
                    .map(|(c, cgs)| {
                        serde_json::json!({
                            "id": c.id,
                            "name": c.name,
                            "pid": c.pid,
                            "cgroups": cgs,
                        })
                    })
                    .collect::<Vec<_>>()
                    .into(),
            );
        }
        if obs.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::Object(obs)
        }
    }
}

/// `memory_stress` verification: the worker failed when it did not grow for this long...
const STALL: StdDuration = StdDuration::from_secs(10);
/// ...or is still short of its size after this long, however steadily it grows.
const MAX_RAMP_WAIT: StdDuration = StdDuration::from_secs(180);

// ---------------------------------------------------------------- the worker

/// Length of one CPU duty-cycle slice.
const SLICE: StdDuration = StdDuration::from_millis(100);

/// CPU time this process has used.
fn process_cpu_time() -> StdDuration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    StdDuration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Worker options, parsed from `--key value` pairs.
#[derive(Debug, Default, PartialEq)]
struct WorkerArgs {
    kind: String,
    load: Option<f64>,
    size: Option<u64>,
    ramp_ms: Option<u64>,
    parent: Option<i32>,
}

fn parse_worker_args(args: &[String]) -> Result<WorkerArgs, String> {
    let mut it = args.iter();
    let mut w = WorkerArgs {
        kind: it
            .next()
            .cloned()
            .ok_or("missing worker kind (cpu or memory)")?,
        ..Default::default()
    };
    while let Some(k) = it.next() {
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        let bad = || format!("bad value `{v}` for {k}");
        match k.as_str() {
            "--load" => w.load = Some(v.parse().map_err(|_| bad())?),
            "--size" => w.size = Some(v.parse().map_err(|_| bad())?),
            "--ramp-ms" => w.ramp_ms = Some(v.parse().map_err(|_| bad())?),
            "--parent" => w.parent = Some(v.parse().map_err(|_| bad())?),
            _ => return Err(format!("unknown option {k}")),
        }
    }
    Ok(w)
}

/// Has the process that started us (`--parent`) gone? Belt and braces next
/// to PDEATHSIG. Without `--parent` (run by hand) the worker runs until killed.
fn orphaned(parent: Option<i32>) -> bool {
    // SAFETY: getppid has no preconditions.
    parent.is_some_and(|p| unsafe { libc::getppid() } != p)
}

/// Entry point of `faultline stress-worker ...` (a hidden subcommand): the
/// body of one built-in stressor process. Returns the exit code.
///
/// `cpu --load PCT`: holds PCT% of one CPU, measured in this process's own
/// CPU time over 100 ms slices (time lost to contention is made up within a
/// slice's worth). `memory --size BYTES [--ramp-ms MS]`: grows its resident
/// set to BYTES (its own baseline included), touching every page, then holds.
/// Both exit when the parent given with `--parent PID` is gone.
pub fn worker_main(args: &[String]) -> i32 {
    let w = match parse_worker_args(args) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("faultline stress-worker: {e}");
            return crate::exit::INVALID;
        }
    };
    match w.kind.as_str() {
        "cpu" => {
            let load = w.load.unwrap_or(100.0) / 100.0;
            if !(load > 0.0 && load <= 1.0) {
                eprintln!("faultline stress-worker: --load must be in (0, 100]");
                return crate::exit::INVALID;
            }
            cpu_worker(load, w.parent)
        }
        "memory" => {
            let Some(size) = w.size else {
                eprintln!("faultline stress-worker: memory needs --size BYTES");
                return crate::exit::INVALID;
            };
            memory_worker(size, w.ramp_ms.map(StdDuration::from_millis), w.parent)
        }
        other => {
            eprintln!("faultline stress-worker: unknown worker kind `{other}` (cpu or memory)");
            crate::exit::INVALID
        }
    }
}

fn cpu_worker(load: f64, parent: Option<i32>) -> i32 {
    let t0 = Instant::now();
    let c0 = process_cpu_time();
    // CPU time we gave up on (starved for longer than a slice).
    let mut forgiven = StdDuration::ZERO;
    let mut slice_end = t0;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    loop {
        slice_end += SLICE;
        let now = Instant::now();
        if slice_end < now {
            slice_end = now + SLICE; // overslept (suspended): start afresh
        }
        let should = (slice_end - t0).mul_f64(load);
        let used = process_cpu_time() - c0 + forgiven;
        if should > used + SLICE {
            forgiven += should - used - SLICE;
        }
        // Spin until this slice's share is used or the slice ends.
        loop {
            for _ in 0..2000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            std::hint::black_box(x);
            if process_cpu_time() - c0 + forgiven >= should || Instant::now() >= slice_end {
                break;
            }
        }
        let now = Instant::now();
        if now < slice_end {
            std::thread::sleep(slice_end - now);
        }
        if orphaned(parent) {
            return 0;
        }
    }
}

/// Allocation step for the memory worker.
const MEM_CHUNK: usize = 16 << 20;
/// Chunks the memory worker touches in parallel.
const TOUCH_THREADS: usize = 4;

fn memory_worker(size: u64, ramp: Option<StdDuration>, parent: Option<i32>) -> i32 {
    // Be the OOM killer's first choice rather than the service under test.
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
    let me = std::process::id() as i32;
    let baseline = status_bytes(me, "VmRSS").unwrap_or(0);
    let target = size.saturating_sub(baseline) as usize;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut held = 0usize;
    let t0 = Instant::now();
    let page = 4096;
    loop {
        let frac = match ramp {
            Some(r) if !r.is_zero() => (t0.elapsed().as_secs_f64() / r.as_secs_f64()).min(1.0),
            _ => 1.0,
        };
        let want = (target as f64 * frac) as usize;
        // Touch up to TOUCH_THREADS chunks at once: on a busy host each
        // thread gets its own share of CPU, so the ramp keeps its pace.
        while held < want {
            let mut batch = Vec::new();
            while held < want && batch.len() < TOUCH_THREADS {
                let n = MEM_CHUNK.min(target - held);
                batch.push(vec![0u8; n]);
                held += n;
            }
            std::thread::scope(|s| {
                for v in batch.iter_mut() {
                    s.spawn(move || {
                        let n = v.len();
                        for i in (0..n).step_by(page) {
                            // Volatile: the write must happen, so the page is really resident.
                            // SAFETY: i < n = v.len().
                            unsafe { std::ptr::write_volatile(v.as_mut_ptr().add(i), 1) };
                        }
                    });
                }
            });
            chunks.extend(batch);
        }
        if orphaned(parent) {
            return 0;
        }
        std::thread::sleep(StdDuration::from_millis(if held < target {
            20
        } else {
            100
        }));
        std::hint::black_box(&chunks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_worker_args() {
        let a: Vec<String> = ["cpu", "--load", "60", "--parent", "12"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let w = parse_worker_args(&a).unwrap();
        assert_eq!(w.kind, "cpu");
        assert_eq!(w.load, Some(60.0));
        assert_eq!(w.parent, Some(12));
        assert!(parse_worker_args(&["cpu".into(), "--bogus".into(), "1".into()]).is_err());
        assert!(parse_worker_args(&["cpu".into(), "--load".into()]).is_err());
        assert_eq!(worker_main(&["disk".into()]), crate::exit::INVALID);
    }

    #[test]
    fn reads_own_cpu_and_memory() {
        let me = std::process::id() as i32;
        assert!(cpu_ticks(me).is_some());
        assert!(status_bytes(me, "VmRSS").unwrap() > 0);
        assert!(mem_available().unwrap() > 0);
        assert_eq!(
            meminfo_field("VmRSS:\t  1024 kB\n", "VmRSS"),
            Some(1024 * 1024)
        );
        assert_eq!(meminfo_field("VmRSSX: 1 kB\n", "VmRSS"), None);
    }

    #[test]
    fn memory_target_refuses_more_than_available() {
        let s = Stress::new(Load::Memory {
            size: Some(u64::MAX / 2),
            percent: None,
            ramp: None,
        });
        assert_eq!(
            s.memory_target().unwrap_err().code,
            crate::exit::PRECONDITION
        );
        let s = Stress::new(Load::Memory {
            size: None,
            percent: Some(0.01),
            ramp: None,
        });
        assert!(s.memory_target().unwrap() > 0);
    }

    #[test]
    fn a_low_load_worker_is_idle_only_when_its_share_was_measurable() {
        // 1% over 0.5 s is 5 ms: below three 10 ms ticks, zero ticks prove nothing.
        assert!(!looks_idle(0.0, 0.01, 0.5, 0.01));
        assert_eq!(verify_window(0.01, 0.01), StdDuration::from_secs(3));
        assert!(looks_idle(0.0, 0.01, 3.0, 0.01));
        // With nanosecond accounting 0.5 s is plenty, and zero is idle.
        assert_eq!(verify_window(0.01, 1e-6), StdDuration::from_millis(500));
        assert!(looks_idle(0.0, 0.01, 0.5, 1e-6));
        assert!(!looks_idle(0.004, 0.01, 0.5, 1e-6));
        assert!(looks_idle(0.0, 1.0, 0.5, 0.01));
    }
}
