//! The runner is SIGKILLed while a network fault (an nftables table in a
//! network namespace the test creates) or a cgroup limit is active: the
//! watchdog must restore the host within 2 seconds, and `faultline status`
//! must then report nothing pending. Needs root.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

/// Runs the experiment, calls `while_active` once the fault is verified,
/// then SIGKILLs the runner; returns when it is dead.
fn kill_runner_when_verified(sb: &Sandbox, file: &std::path::Path, while_active: impl FnOnce()) {
    let mut child = sb
        .cmd()
        .arg("run")
        .arg(file)
        .args(["--no-journal", "--events", "events.jsonl"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let events = sb.path().join("events.jsonl");
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read_to_string(&events)
            .is_ok_and(|s| s.contains("\"event\":\"fault_verified\""))),
        "the fault was injected and verified: {}",
        std::fs::read_to_string(&events).unwrap_or_default()
    );
    while_active();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("flwd{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let o = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        Netns(name)
    }
    fn tables(&self) -> String {
        let o = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft", "list", "tables"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

#[test]
fn watchdog_removes_an_nftables_fault_after_the_runner_is_killed() {
    if !is_root() {
        println!("skipped: needs root (network namespaces, nftables)");
        return;
    }
    if faultline::sys::exec::find_program("nft").is_none() {
        println!("skipped: nft not installed (apt-get install nftables)");
        return;
    }
    let sb = Sandbox::new();
    let ns = Netns::new();
    let before = ns.tables();
    let exp = format!(
        r#"
title: packet loss in a namespace
hypothesis: h
steady_state:
  interval: 200ms
  probes:
    - name: alive
      command: {{run: ["true"]}}
      before: {{samples: 1}}
method:
  - fault:
      packet_loss:
        netns: {ns}
        percent: 30%
    duration: 60s
"#,
        ns = ns.0
    );
    let f = sb.write("e.yaml", &exp);
    kill_runner_when_verified(&sb, &f, || {
        assert!(
            ns.tables().contains("faultline"),
            "the fault's table is in place"
        );
    });
    let t = Instant::now();
    assert!(
        wait_until(Duration::from_secs(2), || !ns
            .tables()
            .contains("faultline")),
        "the watchdog deleted the run's nftables table within 2s"
    );
    eprintln!("restored after {:?}", t.elapsed());
    assert_eq!(ns.tables(), before, "the ruleset is exactly as before");
    assert!(wait_until(Duration::from_secs(3), || sb
        .status()
        .status
        .code()
        == Some(0)));
}

/// The cgroup v1 cpu hierarchy path of a process ("" when not on v1).
fn cpu_cgroup(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctl, path) = (parts.next()?, parts.next()?, parts.next()?);
            (ctl.split(',').any(|c| c == "cpu") || ctl.is_empty()).then(|| path.to_string())
        })
        .unwrap_or_default()
}

#[test]
fn watchdog_moves_a_cpu_limited_process_back_after_the_runner_is_killed() {
    if !is_root() {
        println!("skipped: needs root (cgroups)");
        return;
    }
    let sb = Sandbox::new();
    let target = sleeper(120);
    let original = cpu_cgroup(target.pid());
    let exp = format!(
        r#"
title: cpu limit
hypothesis: h
steady_state:
  interval: 200ms
  probes:
    - name: alive
      process: {{cmdline: "^sleep 120"}}
      before: {{samples: 1}}
method:
  - fault:
      cpu_limit:
        target: {{pid: {pid}}}
        cpus: 0.2
    duration: 60s
"#,
        pid = target.pid()
    );
    let f = sb.write("e.yaml", &exp);
    let mut limited = String::new();
    kill_runner_when_verified(&sb, &f, || {
        limited = cpu_cgroup(target.pid());
        assert!(
            limited.contains("faultline"),
            "moved into the run's cgroup: {limited}"
        );
    });
    assert!(
        wait_until(Duration::from_secs(2), || cpu_cgroup(target.pid())
            == original),
        "the watchdog moved the process back to {original} within 2s (now {})",
        cpu_cgroup(target.pid())
    );
    assert!(wait_until(Duration::from_secs(3), || sb
        .status()
        .status
        .code()
        == Some(0)));
    // The run's cgroup is gone.
    let dirs: Vec<String> = ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup"]
        .iter()
        .map(|root| format!("{root}{limited}"))
        .collect();
    assert!(
        dirs.iter().all(|d| !std::path::Path::new(d).exists()),
        "{dirs:?}"
    );
}
