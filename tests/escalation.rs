//! Escalation against real services, checked against independent
//! measurements: a cpu_limit escalation of a real HTTP service on the host
//! (its breaking point predicted from the CPU cost per request measured
//! here), and a bandwidth escalation in network namespaces the test creates
//! (its breaking point measured here with the same tbf set by hand). Every
//! level is undone exactly: cgroup membership and qdiscs equal to before.
//! Takes the host lock /tmp/faultline-itest.lock.

#[path = "vm/netns.rs"]
mod netns;
mod support;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// A single-threaded HTTP server that burns `cost` seconds of CPU per request.
const CPU_SERVER: &str = r#"
import http.server, sys, time
cost = float(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        t = time.process_time()
        while time.process_time() - t < cost:
            pass
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn cpu_server(cost_s: f64) -> (ChildGuard, u16) {
    let port = free_port();
    let child = ChildGuard(
        Command::new("python3")
            .args(["-c", CPU_SERVER, &port.to_string(), &cost_s.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_until(Duration::from_secs(10), || get(port).is_some()),
        "the test server did not start"
    );
    (child, port)
}

/// One GET; its latency.
fn get(port: u16) -> Option<Duration> {
    use std::io::{Read, Write};
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut b = Vec::new();
    s.read_to_end(&mut b).ok()?;
    b.starts_with(b"HTTP/1.0 200").then(|| t.elapsed())
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: i32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = s[s.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / faultline::fault::stress::clock_ticks_per_sec() as f64
}

fn cpu_cgroup_available() -> bool {
    std::fs::read_to_string("/proc/self/cgroup")
        .map(|c| {
            c.lines()
                .any(|l| l.contains(":cpu,") || l.contains(":cpu:") || l.starts_with("0::"))
        })
        .unwrap_or(false)
}

/// cpu_limit 0.5 -> 0.05 -> 0.01 on a service that burns 10 ms of CPU per
/// request, with a probe that fails above 500 ms. The breaking point must
/// be the first level where the measured CPU cost per request divided by
/// the CPU share exceeds 500 ms; with `must_hold` on the level before it,
/// the run is HELD and still reports the breaking point.
#[test]
fn cpu_limit_escalation_breaks_where_the_measured_cost_says() {
    if !is_root() {
        eprintln!("skipped: needs root (cgroups)");
        return;
    }
    if !cpu_cgroup_available() {
        eprintln!("skipped: no cpu cgroup controller");
        return;
    }
    let _lock = host_lock();
    let (server, port) = cpu_server(0.010);
    let pid = server.pid();
    // Independent measurement: the CPU cost of one request.
    let c0 = cpu_seconds(pid);
    let n = 30;
    for _ in 0..n {
        get(port).expect("the server answers");
    }
    let cost_ms = (cpu_seconds(pid) - c0) / n as f64 * 1000.0;
    let limit_ms = 500.0;
    let levels = [0.5, 0.05, 0.01];
    let predicted = levels
        .iter()
        .position(|c| cost_ms / c > limit_ms)
        .expect("some level must break");
    eprintln!(
        "cost per request {cost_ms:.1}ms; predicted breaking level {}",
        predicted + 1
    );
    // Each prediction is far from the limit, so scheduling noise cannot flip it.
    for c in levels {
        let ratio = cost_ms / c / limit_ms;
        assert!(
            !(0.6..1.5).contains(&ratio),
            "level {c}: predicted {:.0}ms is too close to the limit for a clear test",
            cost_ms / c
        );
    }
    let cgroup_before = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let must = levels[predicted - 1];
    let sb = Sandbox::new();
    let file = sb.write(
        "esc.yaml",
        &format!(
            r#"
title: cpu escalation
hypothesis: the service answers within 500ms down to {must} CPUs
steady_state:
  interval: 500ms
  probes:
    - name: web
      http: {{url: "http://127.0.0.1:{port}/"}}
      timeout: 3s
      expect: {{latency_below: 500ms}}
      during: {{min_success: 70%}}
      after: {{within: 30s}}
method:
  - name: squeeze
    fault:
      cpu_limit: {{target: {{pid: {pid}}}, cpus: 0.5}}
    escalate: {{param: cpus, levels: [0.5, 0.05, 0.01], hold: 5s, must_hold: {must}}}
"#
        ),
    );
    let plan = sb.cmd().arg("plan").arg(&file).output().unwrap();
    let ptext = text(&plan);
    assert!(ptext.contains("level 1/3: cpus 0.5"), "{ptext}");
    assert!(
        ptext.contains("level 3/3: cpus 0.01 for 5s, changed in place"),
        "{ptext}"
    );
    assert!(
        ptext.contains("1000"),
        "the 0.01 quota (1000us) is planned: {ptext}"
    );

    let o = sb.run(&file, &[]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let j = sb.journal();
    let e = &j["escalation"];
    let reached = e["levels"].as_array().unwrap();
    assert_eq!(reached.len(), predicted + 1, "{e:#}");
    assert_eq!(e["first_broken"], levels[predicted].to_string(), "{e:#}");
    assert_eq!(e["last_held"], levels[predicted - 1].to_string(), "{e:#}");
    for (k, l) in reached.iter().enumerate() {
        assert_eq!(l["held"], serde_json::json!(k != predicted), "{l:#}");
        assert_eq!(l["in_place"], serde_json::json!(k > 0), "{l:#}");
        assert!(l["probes"][0]["samples"].as_u64().unwrap() >= 5, "{l:#}");
    }
    // A level changed in place rewrites the quota file only.
    let ops = reached[1]["operations"].to_string();
    assert!(
        ops.contains("cpu.cfs_quota_us") || ops.contains("cpu.max"),
        "{ops}"
    );
    assert!(j["outcome"]["reason"]
        .as_str()
        .unwrap()
        .contains("breaking point: cpus"));
    let md = std::fs::read_to_string(sb.path().join("report.md")).unwrap();
    assert!(md.contains("## Escalation of `cpus`"), "{md}");
    let junit = std::fs::read_to_string(sb.path().join("junit.xml")).unwrap();
    assert!(
        junit.contains("escalation / level 3 (cpus 0.01)"),
        "{junit}"
    );
    // Undone exactly: back in its own cgroup, no run cgroup left.
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap(),
        cgroup_before
    );
    let obs = j["faults"][0]["observations"].to_string();
    for dir in obs.split('"').filter(|s| s.contains("faultline-")) {
        assert!(!std::path::Path::new(dir).exists(), "{dir} left behind");
    }
    assert!(get(port).unwrap() < Duration::from_millis(400));
}

/// Serves a 256 KiB file from namespace `ns` on 10.201.0.2:PORT.
fn blob_server(ns: &str, dir: &std::path::Path) -> (ChildGuard, u16) {
    std::fs::write(dir.join("blob"), vec![7u8; 256 * 1024]).unwrap();
    let port = 18000 + (std::process::id() % 1000) as u16;
    let child = ChildGuard(
        Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-m", "http.server"])
            .arg(port.to_string())
            .args(["--bind", netns::B_IP, "--directory"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    (child, port)
}

/// A download of the blob from namespace `from` with curl's 0.4 s limit:
/// its wall time, or None when it failed or timed out.
fn download(from: &str, port: u16) -> Option<Duration> {
    let t = Instant::now();
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            from,
            "curl",
            "-sf",
            "-o",
            "/dev/null",
            "-m",
            "0.4",
        ])
        .arg(format!("http://{}:{port}/blob", netns::B_IP))
        .output()
        .ok()?;
    o.status.success().then(|| t.elapsed())
}

/// bandwidth 100mbit -> 10mbit -> 2mbit -> 200kbit on the server side of a
/// veth pair, probed by a 256 KiB download that must finish in 0.4 s. The
/// reported breaking point must equal the first level at which the same
/// download, under the same tbf set by hand, fails.
#[test]
fn bandwidth_escalation_changes_tbf_in_place_and_matches_a_manual_measurement() {
    if !is_root() || !netns::which("tc") || !netns::which("curl") {
        eprintln!("skipped: needs root, tc and curl");
        return;
    }
    let _lock = host_lock();
    let pair = netns::NsPair::new();
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = blob_server(&pair.b, dir.path());
    assert!(
        wait_until(Duration::from_secs(10), || download(&pair.a, port)
            .is_some()),
        "the blob server did not start"
    );
    let before = pair.snapshot();
    let levels = ["100mbit", "10mbit", "2mbit", "200kbit"];
    let sb = Sandbox::new();
    let file = sb.write(
        "bw.yaml",
        &format!(
            r#"
title: bandwidth escalation
hypothesis: a 256 KiB download takes under 0.4s at every level
steady_state:
  interval: 500ms
  probes:
    - name: download
      command: {{run: [ip, netns, exec, {a}, curl, -sf, -o, /dev/null, -m, "0.4", "http://{ip}:{port}/blob"]}}
      timeout: 3s
      during: {{min_success: 70%}}
method:
  - fault:
      bandwidth: {{interface: vb, netns: {b}, rate: 100mbit}}
    escalate: {{param: rate, levels: [{levels}], hold: 4s}}
"#,
            a = pair.a,
            b = pair.b,
            ip = netns::B_IP,
            levels = levels.join(", ")
        ),
    );
    let o = sb.run(&file, &[]);
    let out = text(&o);
    // Every level is part of the hypothesis: a breaking point is DEVIATED.
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("breaking point: rate"), "{out}");
    let j = sb.journal();
    let e = &j["escalation"];
    let reached = e["levels"].as_array().unwrap();
    for l in &reached[1..] {
        assert_eq!(l["in_place"], true, "{l:#}");
        assert!(
            l["operations"]
                .to_string()
                .contains("qdisc change dev vb root handle"),
            "{l:#}"
        );
    }
    assert_eq!(pair.snapshot(), before, "qdiscs differ after the run");

    // Independent measurement: the same tbf set by hand, one level at a time.
    let mut measured = None;
    for (k, rate) in levels.iter().enumerate() {
        netns::sh(&[
            "tc", "-n", &pair.b, "qdisc", "add", "dev", "vb", "root", "tbf", "rate", rate, "burst",
            "32768b", "latency", "50ms",
        ]);
        let ok = (0..3).filter(|_| download(&pair.a, port).is_some()).count();
        netns::sh(&["tc", "-n", &pair.b, "qdisc", "del", "dev", "vb", "root"]);
        eprintln!("{rate}: {ok}/3 downloads within 0.4s");
        if ok < 2 {
            measured = Some(k);
            break;
        }
    }
    let measured = measured.expect("the slowest level must break");
    assert_eq!(e["first_broken"], levels[measured], "{e:#}");
    if measured > 0 {
        assert_eq!(e["last_held"], levels[measured - 1], "{e:#}");
    }
    assert_eq!(reached.len(), measured + 1);
    assert_eq!(pair.snapshot(), before);
}

/// A runner SIGKILLed at the second level (changed in place): the watchdog
/// replays the undo recorded at the first injection, and the qdiscs are as
/// before the escalation.
#[test]
fn runner_killed_mid_escalation_leaves_the_original_qdiscs() {
    if !is_root() || !netns::which("tc") {
        eprintln!("skipped: needs root and tc");
        return;
    }
    let _lock = host_lock();
    let pair = netns::NsPair::new();
    let before = pair.snapshot();
    let sb = Sandbox::new();
    let file = sb.write(
        "kill.yaml",
        &format!(
            r#"
title: killed mid-escalation
hypothesis: the link answers
steady_state:
  interval: 500ms
  probes:
    - name: ns
      command: {{run: ["true"]}}
      during: {{min_success: 50%}}
method:
  - fault:
      bandwidth: {{interface: vb, netns: {b}, rate: 100mbit}}
    escalate: {{param: rate, levels: [100mbit, 10mbit, 1mbit], hold: 3s}}
"#,
            b = pair.b
        ),
    );
    let child = ChildGuard(
        sb.cmd()
            .arg("run")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let qd = || netns::sh(&["tc", "-n", &pair.b, "qdisc", "show", "dev", "vb"]);
    assert!(
        wait_until(Duration::from_secs(30), || qd().contains("rate 10Mbit")),
        "level 2 never appeared: {}",
        qd()
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || pair.snapshot() == before),
        "the watchdog did not restore the qdiscs: {}",
        qd()
    );
    drop(child);
    let st = sb.status();
    assert_eq!(st.status.code(), Some(0), "{}", text(&st));
}
