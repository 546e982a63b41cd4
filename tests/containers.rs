//! Faults on real containers (Docker Engine, or Podman's compatible
//! socket): a process kill observed through the restart policy, packet loss
//! in a container's network namespace measured by a probe that finds the
//! container by name, a cpu_limit on the container's own cgroup, a
//! cpu_stress inside it, and all of them at once with the runner SIGKILLed
//! (the watchdog restores). After every test the host's nftables/iptables
//! rules and the container's cgroup settings are what they were before.
//!
//! Images are built locally (`FROM scratch` + /bin/busybox from
//! busybox-static); nothing is pulled. Needs root and a Docker socket;
//! prints `skipped: ...` otherwise. Holds /tmp/faultline-itest.lock.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::*;

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker")
}

fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(o.status.success(), "docker {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Why these tests cannot run here, if they cannot. With
/// FAULTLINE_REQUIRE_DOCKER=1 (set by .ci/run) a missing engine fails the
/// test instead.
fn skip_reason() -> Option<String> {
    let why = skip_reason_here();
    if let Some(w) = &why {
        if std::env::var("FAULTLINE_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("FAULTLINE_REQUIRE_DOCKER=1 but {w}");
        }
    }
    why
}

fn skip_reason_here() -> Option<String> {
    if !is_root() {
        return Some("needs root (cgroups, network namespaces)".into());
    }
    if faultline::sys::exec::find_program("docker").is_none() {
        return Some("the docker CLI is not installed".into());
    }
    if let Err(e) = faultline::sys::docker::available() {
        return Some(format!("no Docker engine: {e}"));
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("/bin/busybox missing (apt-get install busybox-static)".into());
    }
    None
}

/// A locally built image and the containers a test started, removed on drop.
struct Env {
    tag: String,
    containers: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Env {
    fn new(test: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let bb = dir.path().join("busybox");
        std::fs::copy("/bin/busybox", &bb).unwrap();
        std::fs::create_dir(dir.path().join("www")).unwrap();
        std::fs::write(dir.path().join("www/index.html"), "hello\n").unwrap();
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\nCMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n",
        )
        .unwrap();
        let tag = format!("faultline-itest-{test}:{}", std::process::id());
        let env = Env {
            tag,
            containers: Vec::new(),
            _dir: dir,
        };
        let o = Command::new("docker")
            .args(["build", "-q", "-t", &env.tag])
            .arg(env._dir.path())
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .unwrap();
        assert!(o.status.success(), "docker build: {}", text(&o));
        env
    }

    /// Starts a container from the image (httpd on port 80); returns its name.
    fn run(&mut self, name: &str, extra: &[&str]) -> String {
        let name = format!("fl-itest-{}-{name}", std::process::id());
        let _ = docker(&["rm", "-f", &name]);
        self.containers.push(name.clone());
        let mut args = vec!["run", "-d", "--name", &name];
        args.extend(extra);
        args.push(&self.tag);
        docker_ok(&args);
        assert!(
            wait_until(Duration::from_secs(10), || faultline::sys::docker::inspect(
                &name
            )
            .is_ok_and(|c| c.is_some())),
            "container {name} runs"
        );
        name
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = docker(&["rm", "-f", c]);
        }
        let _ = docker(&["rmi", "-f", &self.tag]);
    }
}

fn info(name: &str) -> faultline::sys::docker::ContainerInfo {
    faultline::sys::docker::inspect(name)
        .unwrap()
        .expect("the container runs")
}

/// The host's firewall rules without counters: Docker's own rules must be
/// the same before and after a run.
fn host_rules() -> String {
    let nft = Command::new("nft").args(["-s", "list", "ruleset"]).output();
    let ipt = Command::new("iptables-save").output();
    let counters = regex::Regex::new(r"\[\d+:\d+\]").unwrap();
    let mut out = String::new();
    if let Ok(o) = nft {
        out.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    if let Ok(o) = ipt {
        for l in String::from_utf8_lossy(&o.stdout).lines() {
            if !l.starts_with('#') {
                out.push_str(&counters.replace_all(l, ""));
                out.push('\n');
            }
        }
    }
    out
}

/// Every settings file of the container's cgroups (all hierarchies) with
/// its value, and every sub-cgroup: what a run must leave as it found it.
/// Counters and statistics are left out.
fn cgroup_settings(id: &str) -> Vec<(PathBuf, String)> {
    let skip = [
        "stat",
        "usage",
        "peak",
        "procs",
        "tasks",
        "threads",
        "events",
        "failcnt",
        "pressure",
        "current",
        "numa",
        "max_usage",
        "kmem",
        "memsw",
        "effective",
        "throttled",
        "io_serviced",
        "io_service",
        "sectors",
        "time",
        "io_wait",
        "io_merged",
        "io_queued",
    ];
    let c = info(id);
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = faultline::fault::container::all_cgroups(&c)
        .unwrap()
        .into_iter()
        .map(|g| g.dir)
        .collect();
    while let Some(d) = dirs.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            if p.is_dir() {
                out.push((p.clone(), "<dir>".into()));
                dirs.push(p);
                continue;
            }
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if skip.iter().any(|s| name.contains(s)) {
                continue;
            }
            if let Ok(v) = std::fs::read_to_string(&p) {
                out.push((p, v));
            }
        }
    }
    out.sort();
    out
}

/// The names faultline gave this container's network namespace
/// (`fl-<run>-<short id>`) that are still there.
fn run_netns_names(id: &str) -> Vec<String> {
    let suffix = format!("-{}", &id[..12]);
    std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with("fl-") && n.ends_with(&suffix))
                .collect()
        })
        .unwrap_or_default()
}

/// The processes in the container's cpu cgroup whose command line says
/// they are faultline stress workers.
fn stress_workers_in(id: &str) -> Vec<i32> {
    let c = info(id);
    let pids = faultline::fault::container::pids(&c).unwrap_or_default();
    pids.into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("stress-worker"))
        })
        .collect()
}

/// Stress workers started by the runner with this pid, wherever they are.
fn stress_workers_of(runner: u32) -> usize {
    let parent = format!("--parent\0{runner}\0");
    faultline::sys::proc::list()
        .into_iter()
        .filter(|i| {
            std::fs::read(format!("/proc/{}/cmdline", i.pid)).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("stress-worker") && c.contains(&parent)
            })
        })
        .count()
}

/// Takes the snapshots, returns a checker to call at the end.
struct Unchanged {
    id: String,
    rules: String,
    cgroups: Vec<(PathBuf, String)>,
}

impl Unchanged {
    fn take(container: &str) -> Unchanged {
        let id = info(container).id;
        Unchanged {
            rules: host_rules(),
            cgroups: cgroup_settings(&id),
            id,
        }
    }
    fn check(&self) {
        assert_eq!(
            host_rules(),
            self.rules,
            "the host's nftables/iptables rules are unchanged"
        );
        let now = cgroup_settings(&self.id);
        let diff: Vec<String> = self
            .cgroups
            .iter()
            .zip(now.iter())
            .filter(|(a, b)| a != b)
            .map(|(a, b)| format!("{a:?} -> {b:?}"))
            .collect();
        assert!(
            diff.is_empty() && now.len() == self.cgroups.len(),
            "the container's cgroup settings are unchanged: {diff:?} ({} vs {} entries)",
            self.cgroups.len(),
            now.len()
        );
        assert!(
            run_netns_names(&self.id).is_empty(),
            "no netns name left: {:?}",
            run_netns_names(&self.id)
        );
    }
}

#[test]
fn process_kill_in_a_container_is_restarted_by_its_restart_policy() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let _lock = host_lock();
    let mut env = Env::new("kill");
    let web = env.run("web", &["--restart", "always"]);
    let before = info(&web);
    let sb = Sandbox::new();
    let file = sb.write(
        "kill.yaml",
        &format!(
            r#"title: kill the web container's server
hypothesis: the engine restarts it
steady_state:
  interval: 250ms
  probes:
    - name: web
      http: {{container: {web}, port: 80, path: /index.html}}
      timeout: 1s
      during: {{min_success: 0%}}
      after: {{within: 20s, successes: 2}}
method:
  - name: kill
    fault:
      process_kill:
        target: {{container: {web}}}
        signal: SIGKILL
        expect_restart_within: 4s
    duration: 5s
"#
        ),
    );
    let o = sb.run(&file, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let j = sb.journal();
    let obs = &j["faults"][0]["observations"];
    let c = &obs["containers"][0];
    assert_eq!(c["restart_policy"], "always", "{obs}");
    assert!(
        c["restart_count_after"].as_i64().unwrap_or(0)
            > c["restart_count_before"].as_i64().unwrap(),
        "the engine restarted it: {obs}"
    );
    assert!(
        c["outcome"]
            .as_str()
            .unwrap()
            .contains("restarted by the engine"),
        "{obs}"
    );
    assert!(
        !obs["restarts"].as_array().unwrap().is_empty(),
        "the replacement process was seen: {obs}"
    );
    let after = info(&web);
    assert_eq!(after.id, before.id, "the same container");
    assert_ne!(after.pid, before.pid, "with a new main process");
    assert!(run_netns_names(&after.id).is_empty());
}

#[test]
fn packet_loss_in_a_container_network_namespace_is_measured_by_a_probe() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    if faultline::sys::exec::find_program("nft").is_none() {
        println!("skipped: nft not installed (apt-get install nftables)");
        return;
    }
    let _lock = host_lock();
    let mut env = Env::new("loss");
    let web = env.run("web", &[]);
    let snap = Unchanged::take(&web);
    let sb = Sandbox::new();
    // Each connect needs the container's SYN-ACK: with half of its packets
    // dropped, about half of the connects miss a timeout shorter than the
    // 1 s SYN retransmit.
    let file = sb.write(
        "loss.yaml",
        &format!(
            r#"title: packet loss in a container
hypothesis: about half of the connects fail
steady_state:
  interval: 200ms
  probes:
    - name: web
      tcp: {{container: {web}, port: 80}}
      timeout: 700ms
      during: {{min_success: 0%}}
method:
  - name: loss
    fault:
      packet_loss:
        container: {web}
        percent: 50%
        direction: egress
    duration: 10s
"#
        ),
    );
    // `plan` shows the container (pid, netns, cgroup) and the exact
    // operations, and leaves nothing behind.
    let plan = sb.cmd().arg("plan").arg(&file).output().unwrap();
    let shown = String::from_utf8_lossy(&plan.stdout).to_string();
    let c = info(&web);
    for want in [
        format!("main pid {}", c.pid),
        format!("netns net:[{}]", c.netns_inode.unwrap()),
        "cgroup /".to_string(),
        format!("ip netns attach fl-plan-{}", c.short_id()),
        "numgen random mod 200".to_string(),
    ] {
        assert!(shown.contains(&want), "plan shows {want}: {shown}");
    }
    assert!(run_netns_names(&c.id).is_empty(), "plan leaves no name");
    let o = sb.run(&file, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let j = sb.journal();
    let during = &j["probes"][0]["during"];
    let n = during["samples"].as_f64().unwrap();
    let ok = during["successes"].as_f64().unwrap() / n;
    println!("packet loss 50%: {ok:.2} of {n} connects succeeded");
    assert!(n >= 15.0, "enough samples: {during}");
    assert!(
        (0.15..=0.85).contains(&ok),
        "about half of the connects succeed under 50% loss: {ok:.2} ({during})"
    );
    assert_eq!(
        j["probes"][0]["before"]["successes"], 3,
        "{}",
        j["probes"][0]
    );
    let obs = &j["faults"][0]["observations"]["containers"][0];
    assert!(
        obs["netns_name"].as_str().unwrap().starts_with("fl-"),
        "{obs}"
    );
    assert_eq!(obs["netns_inode"], info(&web).netns_inode.unwrap(), "{obs}");
    snap.check();
}

#[test]
fn cpu_limit_on_a_container_cgroup_is_restored_exactly() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let _lock = host_lock();
    let mut env = Env::new("cpulimit");
    // A limit of its own, so "restored exactly" is more than "back to -1".
    let web = env.run("web", &["--cpus", "0.7"]);
    let snap = Unchanged::take(&web);
    let sb = Sandbox::new();
    let file = sb.write(
        "cpu.yaml",
        &format!(
            r#"title: cpu limit on a container
hypothesis: it serves under a fifth of a CPU
steady_state:
  interval: 250ms
  probes:
    - name: web
      http: {{container: {web}, port: 80, path: /index.html}}
      timeout: 1s
method:
  - name: limit
    fault:
      cpu_limit:
        target: {{container: {web}}}
        cpus: 0.2
    duration: 2s
"#
        ),
    );
    let o = sb.run(&file, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let j = sb.journal();
    let f = &j["faults"][0];
    assert!(
        f["verified"]
            .as_str()
            .unwrap_or_default()
            .contains("cpu.cfs_quota_us=20000")
            || f["verified"]
                .as_str()
                .unwrap_or_default()
                .contains("cpu.max=20000"),
        "{f}"
    );
    let writes = &f["observations"]["containers"][0]["writes"];
    assert!(
        writes
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["original"] == "70000" || w["original"] == "70000 100000"),
        "the original quota (--cpus 0.7) was recorded: {writes}"
    );
    snap.check();
}

#[test]
fn cpu_stress_runs_inside_the_container_cgroup() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let _lock = host_lock();
    let mut env = Env::new("stress");
    let web = env.run("web", &[]);
    let id = info(&web).id;
    let snap = Unchanged::take(&web);
    let sb = Sandbox::new();
    let file = sb.write(
        "stress.yaml",
        &format!(
            r#"title: cpu stress in a container
hypothesis: it serves while its cgroup burns a CPU
steady_state:
  interval: 250ms
  probes:
    - name: web
      tcp: {{container: {web}, port: 80}}
      timeout: 1s
method:
  - name: stress
    fault:
      cpu_stress: {{container: {web}, workers: 1, load: 60%}}
    duration: 4s
"#
        ),
    );
    let mut child = sb
        .cmd()
        .arg("run")
        .arg(&file)
        .args(["--journal", "journal.json", "--events", "events.jsonl"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let events = sb.path().join("events.jsonl");
    assert!(
        wait_until(Duration::from_secs(30), || std::fs::read_to_string(&events)
            .is_ok_and(|s| s.contains("\"event\":\"fault_verified\""))),
        "verified: {}",
        std::fs::read_to_string(&events).unwrap_or_default()
    );
    let inside = stress_workers_in(&id);
    assert_eq!(inside.len(), 1, "one worker in the container's cgroup");
    let st = child.wait().unwrap();
    // On a busy host the worker may fall short of its load: INCONCLUSIVE
    // (5) says so honestly. Anything else is a failure.
    assert!(
        matches!(st.code(), Some(0) | Some(5)),
        "exit {:?}: {}",
        st.code(),
        std::fs::read_to_string(&events).unwrap_or_default()
    );
    let j = sb.journal();
    let obs = &j["faults"][0]["observations"];
    assert_eq!(obs["containers"][0]["id"], id.as_str(), "{obs}");
    assert!(stress_workers_in(&id).is_empty(), "the worker is gone");
    snap.check();
}

#[test]
fn the_watchdog_restores_a_container_after_the_runner_is_sigkilled() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    if faultline::sys::exec::find_program("nft").is_none() {
        println!("skipped: nft not installed (apt-get install nftables)");
        return;
    }
    let _lock = host_lock();
    let mut env = Env::new("watchdog");
    let web = env.run("web", &["--cpus", "0.5"]);
    let c = info(&web);
    let snap = Unchanged::take(&web);
    let sb = Sandbox::new();
    let file = sb.write(
        "all.yaml",
        &format!(
            r#"title: everything at once on a container
hypothesis: the watchdog cleans up
steady_state:
  interval: 500ms
  probes:
    - name: web
      tcp: {{container: {web}, port: 80}}
      timeout: 1s
      during: {{min_success: 0%}}
method:
  - name: limit
    background: true
    fault:
      cpu_limit:
        target: {{container: {web}}}
        cpus: 0.1
    duration: 60s
  - name: loss
    background: true
    fault:
      packet_loss: {{container: {web}, percent: 30%}}
    duration: 60s
  - name: stress
    fault:
      cpu_stress: {{container: {web}, workers: 1, load: 30%}}
    duration: 60s
"#
        ),
    );
    let mut child = sb
        .cmd()
        .arg("run")
        .arg(&file)
        .args(["--no-journal", "--events", "events.jsonl"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let events = sb.path().join("events.jsonl");
    assert!(
        wait_until(Duration::from_secs(40), || std::fs::read_to_string(&events)
            .is_ok_and(
                |s| s.matches("\"event\":\"fault_verified\"").count() >= 3
            )),
        "all three verified: {}",
        std::fs::read_to_string(&events).unwrap_or_default()
    );
    // In effect: the quota, the netns name, the worker.
    let cpu = faultline::fault::container::all_cgroups(&c)
        .unwrap()
        .into_iter()
        .find(|g| g.has_file("cpu.cfs_quota_us") || g.has_file("cpu.max"))
        .unwrap();
    let quota = cpu
        .read("cpu.cfs_quota_us")
        .or_else(|_| cpu.read("cpu.max"))
        .unwrap();
    assert!(quota.starts_with("10000"), "the limit is in force: {quota}");
    assert_eq!(
        run_netns_names(&c.id).len(),
        1,
        "{:?}",
        run_netns_names(&c.id)
    );
    assert_eq!(stress_workers_in(&c.id).len(), 1);
    let runner = child.id();
    assert_eq!(stress_workers_of(runner), 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(runner as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
    assert!(
        wait_until(Duration::from_secs(10), || run_netns_names(&c.id)
            .is_empty()
            && stress_workers_of(runner) == 0
            && cpu
                .read("cpu.cfs_quota_us")
                .or_else(|_| cpu.read("cpu.max"))
                .is_ok_and(|q| q.starts_with("50000"))),
        "the watchdog restored the container: netns names {:?}, workers {}, quota {:?}",
        run_netns_names(&c.id),
        stress_workers_of(runner),
        cpu.read("cpu.cfs_quota_us")
            .or_else(|_| cpu.read("cpu.max"))
    );
    // Nothing of the run is left in the container's namespace either.
    let o = Command::new("nsenter")
        .args([
            "-t",
            &info(&web).pid.to_string(),
            "-n",
            "nft",
            "list",
            "tables",
        ])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("faultline"),
        "{}",
        text(&o)
    );
    // The watchdog finishes its replay (and exits) a moment after the
    // host is back; then nothing is pending.
    assert!(
        wait_until(Duration::from_secs(15), || String::from_utf8_lossy(
            &sb.status().stdout
        )
        .contains("nothing pending")),
        "{}",
        text(&sb.status())
    );
    snap.check();
}

/// `docker compose` (v2) or `docker-compose` (v1), whichever works.
fn compose_available() -> bool {
    Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success())
        || Command::new("docker-compose")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
}

/// The compose-shop stack (experiments/compose-shop), taken down and its
/// images removed on drop.
struct Shop(PathBuf);

impl Shop {
    fn up() -> Shop {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/compose-shop");
        let shop = Shop(dir);
        let o = Command::new("sh")
            .arg(shop.0.join("shop.sh"))
            .arg("up")
            .output()
            .unwrap();
        assert!(o.status.success(), "shop.sh up: {}", text(&o));
        shop
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg(self.0.join("shop.sh"))
            .arg("down")
            .output();
    }
}

/// The example experiments against the compose stack hold, as .ci/run
/// runs them: packet loss on the service labelled `app: cache-service`
/// (the web app falls back to its database) and a SIGKILL of the cache
/// that its restart policy undoes.
#[test]
fn the_compose_shop_examples_hold() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    if !compose_available() {
        println!("skipped: neither `docker compose` nor `docker-compose` works");
        return;
    }
    if !Path::new("/usr/bin/redis-server").exists() {
        println!("skipped: redis-server missing (apt-get install redis-server)");
        return;
    }
    let _lock = host_lock();
    let _shop = Shop::up();
    let snap = Unchanged::take("shop-cache");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/compose-shop");
    let sb = Sandbox::new();
    let o = sb.run(&dir.join("cache-packet-loss.yaml"), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let j = sb.journal();
    let obs = &j["faults"][0]["observations"]["containers"];
    assert_eq!(obs.as_array().unwrap().len(), 1, "{obs}");
    assert_eq!(obs[0]["name"], "shop-cache", "{obs}");
    let during = &j["probes"][0]["during"];
    println!("item page during 50% cache loss: {during}");
    snap.check();

    let sb = Sandbox::new();
    let o = sb.run(&dir.join("cache-crash.yaml"), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let j = sb.journal();
    let c = &j["faults"][0]["observations"]["containers"][0];
    assert!(
        c["outcome"]
            .as_str()
            .unwrap()
            .contains("restarted by the engine"),
        "{c}"
    );
}

/// Runs `file` in the background; once `n` faults are verified calls
/// `meanwhile`, then waits for the run; returns its exit code.
fn run_and_meanwhile(sb: &Sandbox, file: &Path, n: usize, meanwhile: impl FnOnce()) -> Option<i32> {
    let mut child = sb
        .cmd()
        .arg("run")
        .arg(file)
        .args(["--journal", "journal.json", "--events", "events.jsonl"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let events = sb.path().join("events.jsonl");
    assert!(
        wait_until(Duration::from_secs(40), || std::fs::read_to_string(&events)
            .is_ok_and(
                |s| s.matches("\"event\":\"fault_verified\"").count() >= n
            )),
        "verified: {}",
        std::fs::read_to_string(&events).unwrap_or_default()
    );
    meanwhile();
    child.wait().unwrap().code()
}

/// A container restarted, then one removed and recreated under the same
/// name, while a network fault and a cgroup limit are in it: the faults
/// count as missing from then on (INCONCLUSIVE, never HELD), the report says
/// what happened, nothing is applied to the new container, and everything
/// is cleaned up.
#[test]
fn a_container_restarted_or_recreated_during_a_fault_is_reported() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    if faultline::sys::exec::find_program("nft").is_none() {
        println!("skipped: nft not installed (apt-get install nftables)");
        return;
    }
    let _lock = host_lock();
    let mut env = Env::new("restart");
    let web = env.run("web", &["--cpus", "0.5"]);
    let first = info(&web);
    let snap = Unchanged::take(&web);
    let experiment = format!(
        r#"title: the container goes away under the faults
hypothesis: faultline notices
steady_state:
  interval: 250ms
  probes:
    - name: web
      tcp: {{container: {web}, port: 80}}
      timeout: 1s
      during: {{min_success: 0%}}
      after: {{within: 20s, successes: 2}}
method:
  - name: limit
    background: true
    fault:
      cpu_limit:
        target: {{container: {web}}}
        cpus: 0.2
    duration: 6s
  - name: loss
    fault:
      packet_loss: {{container: {web}, percent: 10%}}
    duration: 6s
"#
    );
    // 1. Restarted: same id, new main process, new namespace and cgroup.
    let sb = Sandbox::new();
    let file = sb.write("restart.yaml", &experiment);
    let code = run_and_meanwhile(&sb, &file, 2, || {
        docker_ok(&["restart", "-t", "0", &web]);
    });
    assert_eq!(code, Some(5), "INCONCLUSIVE: {}", sb.journal()["outcome"]);
    let j = sb.journal();
    let text_of = |v: &serde_json::Value| v.to_string();
    let net = text_of(&j["faults"][1]["observations"]);
    assert!(net.contains("restarted"), "{net}");
    let lim = text_of(&j["faults"][0]["observations"]);
    assert!(lim.contains("restarted"), "{lim}");
    let second = info(&web);
    assert_eq!(second.id, first.id);
    assert_ne!(second.netns_inode, first.netns_inode, "a new namespace");
    snap.check();

    // 2. Removed and recreated under the same name: a different container.
    let sb = Sandbox::new();
    let file = sb.write("recreate.yaml", &experiment);
    let tag = env.tag.clone();
    let code = run_and_meanwhile(&sb, &file, 2, || {
        docker_ok(&["rm", "-f", &web]);
        docker_ok(&["run", "-d", "--name", &web, "--cpus", "0.5", &tag]);
    });
    assert_eq!(code, Some(5), "INCONCLUSIVE: {}", sb.journal()["outcome"]);
    let j = sb.journal();
    let net = text_of(&j["faults"][1]["observations"]);
    assert!(
        net.contains("a new container") && net.contains("took its name"),
        "{net}"
    );
    let third = info(&web);
    assert_ne!(third.id, first.id);
    // The new container got none of it: its own namespace has no faultline
    // table, its limit is the engine's.
    let o = Command::new("nsenter")
        .args(["-t", &third.pid.to_string(), "-n", "nft", "list", "tables"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&o.stdout).contains("faultline"));
    let fresh = Unchanged::take(&web);
    assert!(
        fresh
            .cgroups
            .iter()
            .any(|(p, v)| p.ends_with("cpu.cfs_quota_us") && v.trim() == "50000")
            || fresh
                .cgroups
                .iter()
                .any(|(p, v)| p.ends_with("cpu.max") && v.starts_with("50000")),
        "the new container keeps its own limit"
    );
    assert_eq!(host_rules(), snap.rules, "the host's rules are unchanged");
    assert!(run_netns_names(&first.id).is_empty());
    assert!(run_netns_names(&third.id).is_empty());
}

/// disk_fill and file_corrupt on paths as the container sees them: the
/// fill files appear inside the container and are gone after the run; the
/// corrupted file is restored byte for byte.
#[test]
fn file_faults_reach_paths_inside_a_container() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let _lock = host_lock();
    let mut env = Env::new("files");
    let web = env.run("web", &[]);
    let read = |path: &str| docker_ok(&["exec", &web, "/bin/busybox", "cat", path]);
    let listing = || docker_ok(&["exec", &web, "/bin/busybox", "ls", "-a", "/www"]);
    let original = read("/www/index.html");
    let sb = Sandbox::new();
    let file = sb.write(
        "files.yaml",
        &format!(
            r#"title: file faults in a container
hypothesis: they land inside it and are undone
steady_state:
  interval: 250ms
  probes:
    - name: web
      tcp: {{container: {web}, port: 80}}
      timeout: 1s
method:
  - name: fill
    background: true
    fault:
      disk_fill: {{container: {web}, path: /www, size: 1MiB}}
    duration: 4s
  - name: corrupt
    fault:
      file_corrupt: {{container: {web}, path: /www/index.html, mode: zero}}
    duration: 4s
"#
        ),
    );
    let mut seen = (String::new(), String::new());
    let code = run_and_meanwhile(&sb, &file, 2, || {
        seen = (listing(), read("/www/index.html"));
    });
    assert_eq!(code, Some(0), "{}", sb.journal()["outcome"]);
    assert!(
        seen.0.contains(".faultline-fill-"),
        "fill file inside: {}",
        seen.0
    );
    assert_ne!(
        seen.1, original,
        "the file was corrupted inside the container"
    );
    assert!(!listing().contains(".faultline-fill-"), "{}", listing());
    assert_eq!(read("/www/index.html"), original, "restored exactly");
}

/// `faultline targets containers` lists a running container with the
/// selector to paste, and a Compose service's selector from its labels.
#[test]
fn targets_lists_containers_with_their_selectors() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let _lock = host_lock();
    let mut env = Env::new("targets");
    let web = env.run(
        "listed",
        &[
            "--label",
            "com.docker.compose.project=shop",
            "--label",
            "com.docker.compose.service=web",
        ],
    );
    let o = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["targets", "containers", "--format", "json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = v["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == web.as_str())
        .unwrap_or_else(|| panic!("{web} is listed: {v}"));
    assert_eq!(row["selector"], format!("{{container: {web}}}"));
    assert_eq!(
        row["compose_selector"],
        "{compose: {project: shop, service: web}}"
    );
    assert_eq!(row["pid"], info(&web).pid);
}
