//! The host is left as it was found, whatever happens to the runner: real
//! runs of the binary, SIGKILLed at the worst moment, with a slow `tc` shim
//! on PATH, a nearly full state filesystem (a small tmpfs), forking targets.
//! Needs root; tc/nft only inside network namespaces the tests create.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

fn sh(cmd: &[&str]) -> std::process::Output {
    Command::new(cmd[0]).args(&cmd[1..]).output().unwrap()
}

/// A network namespace with a veth pair `v0`/`v1` inside, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("flhh{tag}{}", std::process::id());
        let _ = sh(&["ip", "netns", "del", &name]);
        let o = sh(&["ip", "netns", "add", &name]);
        assert!(o.status.success(), "{}", text(&o));
        let ns = Netns(name);
        let o = sh(&[
            "ip", "-n", &ns.0, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        for dev in ["v0", "v1"] {
            sh(&["ip", "-n", &ns.0, "link", "set", dev, "up"]);
        }
        ns
    }
    fn qdiscs(&self, dev: &str) -> String {
        let o = sh(&["tc", "-n", &self.0, "qdisc", "show", "dev", dev]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.0]);
    }
}

/// Starts `faultline run FILE` with an events file in the sandbox.
fn spawn_run(sb: &Sandbox, file: &Path, envs: &[(&str, String)]) -> std::process::Child {
    let mut c = sb.cmd();
    c.arg("run")
        .arg(file)
        .args(["--no-journal", "--events", "events.jsonl"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in envs {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

fn events(sb: &Sandbox) -> String {
    std::fs::read_to_string(sb.path().join("events.jsonl")).unwrap_or_default()
}

fn sigkill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// A directory with a `tc` that sleeps `secs` (after touching `started`)
/// before it runs the real tc, when its arguments add or replace a qdisc in
/// namespace `ns`.
fn slow_tc_shim(dir: &Path, ns: &str, secs: u32) -> (PathBuf, PathBuf) {
    let real = faultline::sys::exec::find_program("tc").expect("tc installed");
    let bin = dir.join("shim");
    std::fs::create_dir_all(&bin).unwrap();
    let started = dir.join("tc-started");
    let script = format!(
        "#!/bin/sh\ncase \"$*\" in\n  *\"-n {ns} qdisc add\"*|*\"-n {ns} qdisc replace\"*)\n    \
         touch '{}'; sleep {secs};;\nesac\nexec '{}' \"$@\"\n",
        started.display(),
        real.display()
    );
    let p = bin.join("tc");
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    (bin, started)
}

fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

// ------------------------------------------------------------------ item 8

#[test]
fn a_tc_still_running_when_the_runner_is_killed_does_not_apply_its_fault_later() {
    if !is_root() {
        println!("skipped: needs root (network namespaces, tc)");
        return;
    }
    if faultline::sys::exec::find_program("tc").is_none() {
        println!("skipped: tc not installed (apt-get install iproute2)");
        return;
    }
    let sb = Sandbox::new();
    let ns = Netns::new("tc");
    let before = ns.qdiscs("v0");
    let (shim, started) = slow_tc_shim(sb.path(), &ns.0, 3);
    let exp = format!(
        r#"
title: slow tc
hypothesis: h
steady_state:
  interval: 200ms
  probes:
    - name: alive
      command: {{run: ["true"]}}
      before: {{samples: 1}}
method:
  - fault:
      bandwidth:
        netns: {ns}
        interface: v0
        rate: 1mbit
    duration: 60s
"#,
        ns = ns.0
    );
    let f = sb.write("e.yaml", &exp);
    let mut run = spawn_run(&sb, &f, &[("PATH", path_with(&shim))]);
    assert!(
        wait_until(Duration::from_secs(30), || started.exists()),
        "the runner started its tc: {}",
        events(&sb)
    );
    sigkill(run.id() as i32);
    let _ = run.wait();
    // Past the shim's sleep: an orphaned tc would have added its qdisc by now.
    std::thread::sleep(Duration::from_secs(5));
    let after = ns.qdiscs("v0");
    assert!(
        !after.contains("tbf") && !after.contains("fa17"),
        "no qdisc of the run is left: {after}"
    );
    assert_eq!(after, before, "v0's qdiscs are as before");
    let st = sb.status();
    assert_eq!(st.status.code(), Some(0), "status is clean: {}", text(&st));
}

// ------------------------------------------------------------------ item 9

/// A small tmpfs mounted as the sandbox's state dir, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let o = sh(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
            at.to_str().unwrap(),
        ]);
        o.status.success().then(|| Tmpfs(at.to_path_buf()))
    }
    /// Fills it up, then frees `pages` pages.
    fn fill_leaving(&self, pages: u64) {
        use std::io::Write;
        let p = self.0.join("filler");
        let mut f = std::fs::File::create(&p).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let len = std::fs::metadata(&p).unwrap().len() / 4096 * 4096;
        f.set_len(len.saturating_sub(pages * 4096)).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = sh(&["umount", "-l", self.0.to_str().unwrap()]);
    }
}

fn pause_experiment(pid: i32) -> String {
    format!(
        r#"
title: pause
hypothesis: h
steady_state:
  interval: 200ms
  probes:
    - name: alive
      command: {{run: ["true"]}}
      before: {{samples: 1}}
method:
  - fault:
      process_pause:
        target: {{pid: {pid}}}
    duration: 60s
"#
    )
}

#[test]
fn a_full_state_filesystem_does_not_kill_the_watchdog() {
    if !is_root() {
        println!("skipped: needs root (mount tmpfs)");
        return;
    }
    let sb = Sandbox::new();
    let Some(fs) = Tmpfs::mount(&sb.state_dir(), "256k") else {
        println!("skipped: cannot mount a tmpfs");
        return;
    };
    // Room for the run file only: the watchdog's log cannot grow.
    fs.fill_leaving(1);
    let target = sleeper(120);
    let f = sb.write("e.yaml", &pause_experiment(target.pid()));
    let mut run = spawn_run(&sb, &f, &[]);
    let verified = wait_until(Duration::from_secs(20), || {
        events(&sb).contains("\"event\":\"fault_verified\"")
            || matches!(run.try_wait(), Ok(Some(_)))
    });
    assert!(verified, "the run went on: {}", events(&sb));
    if let Ok(Some(st)) = run.try_wait() {
        // Refusing to start without a watchdog is also correct.
        assert_eq!(st.code(), Some(69), "{}", events(&sb));
        assert_ne!(proc_state(target.pid()), Some('T'));
        return;
    }
    assert_eq!(proc_state(target.pid()), Some('T'), "the target is paused");
    sigkill(run.id() as i32);
    let _ = run.wait();
    assert!(
        wait_until(Duration::from_secs(5), || proc_state(target.pid())
            != Some('T')),
        "the watchdog resumed the target although its log could not be written"
    );
    drop(fs);
}

#[test]
fn a_run_whose_watchdog_does_not_start_changes_nothing_and_exits_69() {
    if !is_root() {
        println!("skipped: needs root (process_pause of a test process)");
        return;
    }
    let sb = Sandbox::new();
    let target = sleeper(120);
    let f = sb.write("e.yaml", &pause_experiment(target.pid()));
    let o = sb
        .cmd()
        .arg("run")
        .arg(&f)
        .args(["--no-journal", "--events", "events.jsonl"])
        .env("FAULTLINE_TEST_PANIC_AT", "watchdog")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    assert!(
        text(&o).contains("watchdog did not start"),
        "says why: {}",
        text(&o)
    );
    assert!(!events(&sb).contains("fault_injected"), "{}", events(&sb));
    assert_ne!(proc_state(target.pid()), Some('T'));
    let st = sb.status();
    assert_eq!(st.status.code(), Some(0), "status is clean: {}", text(&st));
}

// ------------------------------------------------------- item 17 (cpu_stress)

#[test]
fn cpu_stress_at_one_to_three_percent_passes_its_own_verification() {
    let sb = Sandbox::new();
    for load in ["1%", "2%", "3%"] {
        let exp = format!(
            r#"
title: low cpu
hypothesis: h
steady_state:
  interval: 200ms
  probes:
    - name: alive
      command: {{run: ["true"]}}
      before: {{samples: 1}}
method:
  - fault:
      cpu_stress:
        workers: 4
        load: {load}
    duration: 1s
"#
        );
        let f = sb.write("e.yaml", &exp);
        let o = sb.run(&f, &[]);
        assert_eq!(o.status.code(), Some(0), "load {load}: {}", text(&o));
        let j = sb.journal();
        let s = j.to_string();
        assert!(s.contains("workers alive"), "load {load}: verified: {s}");
    }
}

// ------------------------------------------------------------------ item 11

/// The cgroup v1 cpu hierarchy path of a process (or the v2 path).
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

/// The children of `pid` whose command line starts with `prefix`.
fn children_named(pid: i32, prefix: &str) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse::<i32>().ok())
        .filter(|c| {
            std::fs::read(format!("/proc/{c}/cmdline")).is_ok_and(|b| {
                String::from_utf8_lossy(&b)
                    .replace('\0', " ")
                    .starts_with(prefix)
            })
        })
        .collect()
}

/// Cgroup directories removed on drop (when a failed test left them).
struct CgroupDirs(Vec<String>);

impl Drop for CgroupDirs {
    fn drop(&mut self) {
        for d in &self.0 {
            if Path::new(d).exists() {
                faultline::sys::cgroup::evacuate(Path::new(d), None);
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

#[test]
fn a_child_forked_by_a_cgroup_target_does_not_keep_the_runs_cgroup_alive() {
    if !is_root() {
        println!("skipped: needs root (cgroups)");
        return;
    }
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::new();
    let go = sb.path().join("go");
    // Forks a long-lived child once `go` exists (inside the run's cgroup).
    let target = ChildGuard(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while [ ! -e '{}' ]; do sleep 0.05; done; sleep 301 & wait",
                go.display()
            ))
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let original = cpu_cgroup(target.pid());
    let exp = format!(
        r#"
title: cpu limit of a forking target
hypothesis: h
steady_state:
  interval: 200ms
  probes:
    - name: alive
      command: {{run: ["true"]}}
      before: {{samples: 1}}
method:
  - fault:
      cpu_limit:
        target: {{pid: {pid}}}
        cpus: 0.5
    duration: 60s
"#,
        pid = target.pid()
    );
    let f = sb.write("e.yaml", &exp);
    let mut run = spawn_run(&sb, &f, &[]);
    assert!(
        wait_until(Duration::from_secs(20), || events(&sb)
            .contains("\"event\":\"fault_verified\"")),
        "the fault was verified: {}",
        events(&sb)
    );
    let limited = cpu_cgroup(target.pid());
    assert!(limited.contains("faultline"), "{limited}");
    std::fs::write(&go, "").unwrap();
    let mut forked = Vec::new();
    assert!(wait_until(Duration::from_secs(5), || {
        forked = children_named(target.pid(), "sleep 301");
        !forked.is_empty()
    }));
    // Read before the runner dies: its watchdog moves everything out at
    // once, so afterwards the child may already be back where it came from.
    let born_in = cpu_cgroup(forked[0]);
    // Before the runner's next look for strays.
    sigkill(run.id() as i32);
    let _ = run.wait();
    assert_eq!(born_in, limited, "the child was born in the run's cgroup");
    let dirs: Vec<String> = ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup"]
        .iter()
        .map(|root| format!("{root}{limited}"))
        .collect();
    let _cleanup = CgroupDirs(dirs.clone());
    assert!(
        wait_until(Duration::from_secs(5), || dirs
            .iter()
            .all(|d| !Path::new(d).exists())),
        "the watchdog removed the run's cgroup {dirs:?}"
    );
    assert_eq!(cpu_cgroup(target.pid()), original);
    assert_eq!(
        cpu_cgroup(forked[0]),
        original,
        "the forked child went back too"
    );
    let st = sb.status();
    assert_eq!(st.status.code(), Some(0), "status is clean: {}", text(&st));
}

// ------------------------------------------------------------------ item 12

/// The probe namespaces a runner pid created that still exist.
fn probe_namespaces_of(pid: i32) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(&format!("faultline-probe-{pid}-")))
                .collect()
        })
        .unwrap_or_default()
}

/// Deletes whatever probe namespaces of `pid` a failed test left.
struct ProbeNamespaces(i32);

impl Drop for ProbeNamespaces {
    fn drop(&mut self) {
        for n in probe_namespaces_of(self.0) {
            let _ = sh(&["ip", "netns", "del", &n]);
        }
    }
}

/// A `tc` that sleeps inside preflight's probe namespaces.
fn slow_probe_shim(dir: &Path) -> (PathBuf, PathBuf) {
    let real = faultline::sys::exec::find_program("tc").expect("tc installed");
    let bin = dir.join("probe-shim");
    std::fs::create_dir_all(&bin).unwrap();
    let started = dir.join("probe-started");
    let script = format!(
        "#!/bin/sh\ncase \"$*\" in\n  *\"-n faultline-probe-\"*)\n    touch '{}'; sleep 2;;\nesac\nexec '{}' \"$@\"\n",
        started.display(),
        real.display()
    );
    let p = bin.join("tc");
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    (bin, started)
}

fn bandwidth_experiment(ns: &str) -> String {
    format!(
        r#"
title: bandwidth
hypothesis: h
steady_state:
  interval: 200ms
  probes:
    - name: alive
      command: {{run: ["true"]}}
      before: {{samples: 1}}
method:
  - fault:
      bandwidth:
        netns: {ns}
        interface: v0
        rate: 1mbit
    duration: 1s
"#
    )
}

#[test]
fn signals_during_preflight_leave_no_probe_namespace_and_status_finds_stale_ones() {
    if !is_root() {
        println!("skipped: needs root (network namespaces)");
        return;
    }
    if faultline::sys::exec::find_program("tc").is_none() {
        println!("skipped: tc not installed (apt-get install iproute2)");
        return;
    }
    let sb = Sandbox::new();
    let ns = Netns::new("pr");
    let f = sb.write("e.yaml", &bandwidth_experiment(&ns.0));
    let (shim, started) = slow_probe_shim(sb.path());

    // SIGTERM (and SIGINT) during preflight: the run stops, cleaning up.
    for sig in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
    ] {
        let _ = std::fs::remove_file(&started);
        let mut run = sb
            .cmd()
            .arg("run")
            .arg(&f)
            .args(["--no-journal"])
            .env("PATH", path_with(&shim))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = run.id() as i32;
        let _guard = ProbeNamespaces(pid);
        assert!(wait_until(Duration::from_secs(20), || started.exists()));
        assert_eq!(probe_namespaces_of(pid).len(), 1, "preflight is probing");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
        let st = run.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(run.stdout.as_mut().unwrap(), &mut err).unwrap();
        assert_eq!(st.code(), Some(130), "{sig}: {err}");
        assert!(err.contains("during preflight"), "{sig}: {err}");
        assert!(
            probe_namespaces_of(pid).is_empty(),
            "{sig}: namespace removed"
        );
        assert!(!ns.qdiscs("v0").contains("tbf"), "nothing was injected");
    }

    // SIGKILL cannot be handled: `status` reports the namespace, `recover` removes it.
    let _ = std::fs::remove_file(&started);
    let mut run = spawn_run(&sb, &f, &[("PATH", path_with(&shim))]);
    let pid = run.id() as i32;
    let _guard = ProbeNamespaces(pid);
    assert!(wait_until(Duration::from_secs(20), || started.exists()));
    sigkill(pid);
    let _ = run.wait();
    let left = probe_namespaces_of(pid);
    assert_eq!(left.len(), 1, "SIGKILL leaves the probe namespace");
    let st = sb.status();
    assert_eq!(st.status.code(), Some(1), "{}", text(&st));
    assert!(
        text(&st).contains(&left[0]),
        "status names it: {}",
        text(&st)
    );
    let rec = sb.cmd().arg("recover").output().unwrap();
    assert_eq!(rec.status.code(), Some(0), "{}", text(&rec));
    assert!(text(&rec).contains(&left[0]), "{}", text(&rec));
    assert!(probe_namespaces_of(pid).is_empty(), "recover removed it");
}

// ------------------------------------------------------------------ item 10

#[test]
fn another_runs_runner_and_watchdog_are_never_targets() {
    if !is_root() {
        println!("skipped: needs root (process_pause of a test process)");
        return;
    }
    let sb = Sandbox::new();
    let target = sleeper(120);
    let f = sb.write("e.yaml", &pause_experiment(target.pid()));
    let first = ChildGuard(spawn_run(&sb, &f, &[]));
    assert!(
        wait_until(Duration::from_secs(20), || events(&sb)
            .contains("\"event\":\"fault_verified\"")),
        "{}",
        events(&sb)
    );
    // Matches exactly the first run's runner (its file) and watchdog (its state dir).
    let selector = sb.path().display().to_string().replace('.', "\\\\.");
    let g = sb.write(
        "kill.yaml",
        &format!(
            r#"
title: kill other runs
hypothesis: h
steady_state:
  probes:
    - name: alive
      command: {{run: ["true"]}}
method:
  - fault:
      process_kill:
        target: {{cmdline: "{selector}", mode: all}}
    duration: 1s
"#
        ),
    );
    let o = sb.cmd().arg("plan").arg(&g).output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(69), "{out}");
    assert!(out.contains("faultline process"), "{out}");
    assert!(
        out.contains(&first.pid().to_string()),
        "names the runner: {out}"
    );
    assert!(
        proc_state(first.pid()).is_some(),
        "the first runner is alive"
    );
}

#[test]
fn memory_stress_at_all_available_memory_and_a_tiny_disk_reserve_are_refused() {
    let sb = Sandbox::new();
    let f = sb.write(
        "m.yaml",
        r#"
title: too much
hypothesis: h
steady_state:
  probes:
    - name: alive
      command: {run: ["true"]}
method:
  - fault:
      memory_stress: {percent: 100%}
    duration: 1s
  - fault:
      disk_fill: {path: /tmp, fill_to: 50%, reserve: 0}
    duration: 1s
"#,
    );
    let o = sb.cmd().arg("validate").arg(&f).output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(64), "{out}");
    assert!(out.contains("percent") && out.contains("OOM"), "{out}");
    assert!(out.contains("reserve") && out.contains("at least"), "{out}");
}

// ------------------------------------------------------------------ item 13

/// The run's id from its events file (`run_started`).
fn run_id_of(sb: &Sandbox) -> String {
    let ev = events(sb);
    let line = ev
        .lines()
        .find(|l| l.contains("\"run_id\""))
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    v["run_id"].as_str().unwrap_or_default().to_string()
}

#[test]
fn the_same_process_through_another_selector_and_state_dir_is_refused() {
    if !is_root() {
        println!("skipped: needs root (process_pause of a test process, /run/faultline/locks)");
        return;
    }
    let (sb1, sb2) = (Sandbox::new(), Sandbox::new());
    assert_ne!(sb1.state_dir(), sb2.state_dir());
    // A command line no other test's process has.
    let secs = format!("120.{}1", std::process::id());
    let target = {
        use std::os::unix::process::CommandExt;
        ChildGuard(
            Command::new("sleep")
                .arg(&secs)
                .process_group(0)
                .spawn()
                .unwrap(),
        )
    };
    let f = sb1.write("e.yaml", &pause_experiment(target.pid()));
    let first = ChildGuard(spawn_run(&sb1, &f, &[]));
    assert!(
        wait_until(Duration::from_secs(20), || events(&sb1)
            .contains("\"event\":\"fault_verified\"")),
        "{}",
        events(&sb1)
    );
    assert_eq!(proc_state(target.pid()), Some('T'));
    let run1 = run_id_of(&sb1);
    assert!(!run1.is_empty(), "{}", events(&sb1));
    // The same process by its command line, from another state directory.
    let g = sb2.write(
        "e.yaml",
        &format!(
            r#"
title: second
hypothesis: h
steady_state:
  interval: 200ms
  probes:
    - name: alive
      command: {{run: ["true"]}}
      before: {{samples: 1}}
method:
  - fault:
      process_pause:
        target: {{cmdline: "^sleep {re}$", mode: all}}
    duration: 2s
"#,
            re = secs.replace('.', "\\\\.")
        ),
    );
    let want = format!(
        "process {} is already held by faultline run {run1} (runner pid {})",
        target.pid(),
        first.pid()
    );
    for args in [&["plan"][..], &["run", "--no-journal"]] {
        let o = sb2.cmd().args(args).arg(&g).output().unwrap();
        assert_eq!(o.status.code(), Some(69), "{args:?}: {}", text(&o));
        assert!(
            text(&o).contains(&want),
            "{args:?}: want {want}\n{}",
            text(&o)
        );
    }
    assert_eq!(
        proc_state(target.pid()),
        Some('T'),
        "still paused by the first run"
    );
    // The first run ends: the process runs again and no lock file is left.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.pid()),
        nix::sys::signal::Signal::SIGINT,
    );
    assert!(wait_until(Duration::from_secs(30), || proc_state(
        first.pid()
    )
    .is_none_or(|s| s == 'Z')));
    assert_ne!(proc_state(target.pid()), Some('T'));
    let start = faultline::sys::proc::start_time(target.pid()).unwrap();
    let lock = faultline::sys::hostlock::lock_dir().join(format!("pid-{}-{start}", target.pid()));
    assert!(!lock.exists(), "{} left behind", lock.display());
    // A lock file left by a runner that was killed (nobody holds it) is
    // removed by the next run.
    let stale = faultline::sys::hostlock::lock_dir().join("pid-999999999-1");
    std::fs::write(&stale, "faultline run gone (runner pid 999999999)\n").unwrap();
    // Now the second run may pause it.
    let o = sb2
        .cmd()
        .args(["run", "--no-journal"])
        .arg(&g)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!stale.exists(), "{} left behind", stale.display());
    assert!(!lock.exists(), "{} left behind", lock.display());
}
