//! cgroup limits on a pure cgroup v2 hierarchy: a stock kernel booted in QEMU
//! (see tests/vm/mod.rs). This host is hybrid v1, so the v2 code path —
//! placement next to or under the root, `+cpu` in cgroup.subtree_control and
//! its restore, cpu.max, memory.max, memory.events — is proved here.
//!
//! The host side copies this test binary and the faultline binary into the
//! guest and runs this same test there with `FAULTLINE_VM_GUEST=1`; in that
//! role it drives the faults through the library API and prints one
//! `VMTEST <name> PASS|FAIL <detail>` line per check.

#[path = "vm/mod.rs"]
mod vm;

use faultline::experiment::model::Fault;
use faultline::fault::cgroup::{CpuLimitSpec, MemoryLimitKind, MemoryLimitSpec};
use faultline::fault::target::ProcessTarget;
use faultline::fault::{FaultContext, FaultImpl, Protected, UndoLog};
use faultline::journal::undo::UndoOp;
use faultline::sys::cgroup::{Cgroups, Version};
use faultline::units::Size;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GUEST_ENV: &str = "FAULTLINE_VM_GUEST";
const MIB: u64 = 1 << 20;

#[test]
fn cgroup_v2_cpu_and_memory_limits_in_a_vm() {
    if std::env::var_os(GUEST_ENV).is_some() {
        guest();
        return;
    }
    let Some(mut vm) = vm::Vm::new() else { return };
    vm.add_binary(env!("CARGO_BIN_EXE_faultline"), "/bin/faultline")
        .add_binary(std::env::current_exe().unwrap(), "/bin/vm_cgroup_test");
    let log = vm.run(
        &format!(
            "echo \"VMTEST layout PASS $(cat /sys/fs/cgroup/cgroup.controllers)\"\n\
             {GUEST_ENV}=1 /bin/vm_cgroup_test cgroup_v2_cpu_and_memory_limits_in_a_vm --exact --nocapture --test-threads 1 \
             || echo \"VMTEST guest_binary FAIL exit $?\"\n"
        ),
        Duration::from_secs(600),
    );
    eprintln!("{}", log.tail());
    for name in [
        "v2_layout",
        "cpu_limit_v2_throttles",
        "cpu_limit_v2_rollback",
        "memory_limit_v2_oom",
        "memory_limit_v2_rollback",
        "cpu_limit_v2_nested_placement",
    ] {
        let detail = log.assert_pass(name);
        eprintln!("{name}: {detail}");
    }
    log.assert_all_pass();
}

// ------------------------------------------------------------ guest side

fn report(name: &str, r: Result<String, String>) {
    match r {
        Ok(d) => println!("VMTEST {name} PASS {d}"),
        Err(e) => println!("VMTEST {name} FAIL {}", e.replace('\n', " ")),
    }
}

#[derive(Default)]
struct VecUndo(Vec<UndoOp>);

impl UndoLog for VecUndo {
    fn record(&mut self, _target: &str, op: UndoOp) -> anyhow::Result<()> {
        self.0.push(op);
        Ok(())
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The test process plays the runner, whose children are protected unless
/// setup started them: `pid` is registered as the system under test.
fn ctx(name: &str, pid: i32) -> FaultContext {
    FaultContext {
        run_id: format!("vm-{name}"),
        protected: Protected::for_this_process(),
        setup_pids: [("target".to_string(), pid)].into_iter().collect(),
        ..Default::default()
    }
}

fn target(pid: i32) -> ProcessTarget {
    ProcessTarget {
        pid: Some(pid),
        ..Default::default()
    }
}

fn v2_cgroup_of(pid: i32) -> Result<PathBuf, String> {
    let l = Cgroups::detect().map_err(|e| e.to_string())?;
    let h = l.unified().ok_or("no cgroup2 mount")?.clone();
    l.cgroup_of(pid, &h)
        .map(|c| c.dir)
        .map_err(|e| e.to_string())
}

fn subtree_control() -> String {
    std::fs::read_to_string("/sys/fs/cgroup/cgroup.subtree_control")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// preflight, inject, verify.
fn start(f: &mut dyn FaultImpl, c: &FaultContext, undo: &mut VecUndo) -> Result<String, String> {
    f.preflight(c).map_err(|e| format!("preflight: {e}"))?;
    f.inject(c, undo).map_err(|e| format!("inject: {e}"))?;
    f.verify(c).map_err(|e| format!("verify: {e}"))
}

/// before_rollback, replay in reverse, verify_rollback; returns observations.
fn roll_back(
    f: &mut dyn FaultImpl,
    c: &FaultContext,
    undo: &VecUndo,
) -> Result<serde_json::Value, String> {
    f.before_rollback(c);
    for op in undo.0.iter().rev() {
        op.apply().map_err(|e| format!("undo {op:?}: {e}"))?;
    }
    f.verify_rollback(c)
        .map_err(|e| format!("verify_rollback: {e}"))?;
    Ok(f.observations())
}

fn guest() {
    faultline::fault::stress::set_worker_executable("/bin/faultline");
    report("v2_layout", {
        let l = Cgroups::detect().unwrap();
        match l.hierarchy_for("cpu") {
            Some(h) if h.version == Version::V2 => Ok(format!("{:?}", l.kind())),
            other => Err(format!("cpu controller in {other:?}")),
        }
    });
    cpu_limit();
    memory_limit();
    nested_cpu_limit();
}

/// A target in /app/svc: the run's cgroup goes next to it in /app, and `cpu`
/// must be enabled top-down in / and /app, then disabled again on rollback.
fn nested_cpu_limit() {
    let root = PathBuf::from("/sys/fs/cgroup");
    let svc = root.join("app/svc");
    let r = (|| {
        std::fs::create_dir_all(&svc).map_err(|e| e.to_string())?;
        let sleeper = Proc(
            Command::new("sleep")
                .arg("60")
                .stdin(Stdio::null())
                .spawn()
                .map_err(|e| e.to_string())?,
        );
        let pid = sleeper.0.id() as i32;
        std::fs::write(svc.join("cgroup.procs"), pid.to_string()).map_err(|e| e.to_string())?;
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p.join("cgroup.subtree_control"))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let (root_before, app_before) = (read(&root), read(&root.join("app")));
        let c = ctx("nested", pid);
        let mut f = faultline::fault::build(&Fault::CpuLimit(CpuLimitSpec {
            target: target(pid),
            cpus: 0.5,
            include_descendants: true,
        }));
        let mut undo = VecUndo::default();
        let ev = start(f.as_mut(), &c, &mut undo)?;
        let during = v2_cgroup_of(pid)?;
        if during.parent() != Some(root.join("app").as_path()) {
            return Err(format!(
                "placed in {}, not next to {}",
                during.display(),
                svc.display()
            ));
        }
        let (root_during, app_during) = (read(&root), read(&root.join("app")));
        roll_back(f.as_mut(), &c, &undo)?;
        let after = v2_cgroup_of(pid)?;
        if after != svc {
            return Err(format!(
                "back in {}, not {}",
                after.display(),
                svc.display()
            ));
        }
        if read(&root) != root_before || read(&root.join("app")) != app_before {
            return Err(format!(
                "subtree_control not restored: / `{}` (was `{root_before}`), /app `{}` (was `{app_before}`)",
                read(&root),
                read(&root.join("app"))
            ));
        }
        Ok(format!(
            "in {} with / `{root_during}` and /app `{app_during}` delegated, restored to `{root_before}`/`{app_before}` ({ev})",
            during.display()
        ))
    })();
    let _ = std::fs::remove_dir(&svc);
    let _ = std::fs::remove_dir(root.join("app"));
    report("cpu_limit_v2_nested_placement", r);
}

fn cpu_limit() {
    let busy = Proc(
        Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = busy.0.id() as i32;
    let before = v2_cgroup_of(pid).unwrap_or_default();
    let sub_before = subtree_control();
    let c = ctx("cpu", pid);
    let mut f = faultline::fault::build(&Fault::CpuLimit(CpuLimitSpec {
        target: target(pid),
        cpus: 0.2,
        include_descendants: true,
    }));
    let mut undo = VecUndo::default();
    let hz = faultline::fault::stress::clock_ticks_per_sec() as f64;
    report(
        "cpu_limit_v2_throttles",
        (|| {
            let ev = start(f.as_mut(), &c, &mut undo)?;
            let now = v2_cgroup_of(pid)?;
            if now == before {
                return Err("the process was not moved".into());
            }
            let max = std::fs::read_to_string(now.join("cpu.max")).map_err(|e| e.to_string())?;
            let a = faultline::fault::stress::cpu_ticks(pid).ok_or("no stat")?;
            let t = Instant::now();
            std::thread::sleep(Duration::from_secs(3));
            let b = faultline::fault::stress::cpu_ticks(pid).ok_or("no stat")?;
            let used = (b - a) as f64 / hz / t.elapsed().as_secs_f64();
            let stat = std::fs::read_to_string(now.join("cpu.stat")).unwrap_or_default();
            let throttled = stat
                .lines()
                .find_map(|l| l.strip_prefix("nr_throttled "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            let detail = format!(
                "used {used:.3} CPUs, cpu.max `{}`, nr_throttled {throttled}, in {} ({ev})",
                max.trim(),
                now.display()
            );
            if (0.15..=0.25).contains(&used) && throttled > 0 {
                Ok(detail)
            } else {
                Err(detail)
            }
        })(),
    );
    report(
        "cpu_limit_v2_rollback",
        (|| {
            let obs = roll_back(f.as_mut(), &c, &undo)?;
            let now = v2_cgroup_of(pid)?;
            if now != before {
                return Err(format!(
                    "pid {pid} is in {}, not {}",
                    now.display(),
                    before.display()
                ));
            }
            let sub = subtree_control();
            if sub != sub_before {
                return Err(format!("subtree_control `{sub}`, was `{sub_before}`"));
            }
            for cg in obs["cgroups"].as_array().ok_or("no cgroups observed")? {
                if PathBuf::from(cg.as_str().unwrap_or_default()).exists() {
                    return Err(format!("{cg} still exists"));
                }
            }
            let enabled = undo
                .0
                .iter()
                .any(|op| matches!(op, UndoOp::WriteFile { contents, .. } if contents == "-cpu"));
            Ok(format!(
                "back in {}, subtree_control `{sub}` (enabled cpu for the run: {enabled}), obs {obs}",
                now.display()
            ))
        })(),
    );
}

fn memory_limit() {
    // Grows to 256MiB over 3 s: past a 32MiB limit early on.
    let mut grower = Proc(
        Command::new("/bin/faultline")
            .args([
                "stress-worker",
                "memory",
                "--size",
                &(256 * MIB).to_string(),
            ])
            .args(["--ramp-ms", "3000"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = grower.0.id() as i32;
    let sub_before = subtree_control();
    let c = ctx("mem", pid);
    let mut f = faultline::fault::build(&Fault::MemoryLimit(MemoryLimitSpec {
        target: target(pid),
        limit: Size(32 * MIB),
        kind: MemoryLimitKind::Hard,
        include_descendants: true,
    }));
    let mut undo = VecUndo::default();
    report(
        "memory_limit_v2_oom",
        (|| {
            let ev = start(f.as_mut(), &c, &mut undo)?;
            let t = Instant::now();
            let status = loop {
                if let Some(st) = grower.0.try_wait().map_err(|e| e.to_string())? {
                    break st;
                }
                if t.elapsed() > Duration::from_secs(60) {
                    return Err("not OOM-killed within 60 s".into());
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            use std::os::unix::process::ExitStatusExt;
            if status.signal() != Some(9) {
                return Err(format!("the process ended with {status}, not SIGKILL"));
            }
            Ok(format!(
                "killed after {:.1}s ({ev})",
                t.elapsed().as_secs_f64()
            ))
        })(),
    );
    report(
        "memory_limit_v2_rollback",
        (|| {
            let obs = roll_back(f.as_mut(), &c, &undo)?;
            let kills = obs["oom_kills"].as_u64().unwrap_or(0);
            if kills < 1 {
                return Err(format!("observations show no OOM kill: {obs}"));
            }
            let sub = subtree_control();
            if sub != sub_before {
                return Err(format!("subtree_control `{sub}`, was `{sub_before}`"));
            }
            for cg in obs["cgroups"].as_array().ok_or("no cgroups observed")? {
                if PathBuf::from(cg.as_str().unwrap_or_default()).exists() {
                    return Err(format!("{cg} still exists"));
                }
            }
            Ok(format!("oom_kills {kills}, obs {obs}"))
        })(),
    );
}
