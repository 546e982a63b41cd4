//! An escalation of netem delay against a stock distribution kernel (which
//! has sch_netem), booted in QEMU (see tests/vm/mod.rs). The build machine's
//! kernel has no netem, so this is where a delay escalation runs for real.
//!
//! How: the host test copies this test binary and faultline into the VM and
//! runs `FAULTLINE_VM_GUEST=1 --exact guest_escalation_checks` there. The
//! guest side joins the root namespace to namespace `b` with a veth pair,
//! serves HTTP in `b`, runs `faultline run` on a delay escalation (50ms ->
//! 150ms -> 2s on `b`'s side, a probe that fails above 2 s),
//! then measures on its own, with the same netem delay set by hand, at which
//! level an HTTP GET takes longer than 2 s: the reported breaking point
//! must be that level, every level after the first must have been changed in
//! place, and the qdiscs must be as before.

#[path = "vm/netns.rs"]
mod netns;
#[path = "vm/mod.rs"]
mod vm;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

// Under TCG emulation a GET through faultline's HTTP client takes 200-500 ms
// even without delay (twice that on a loaded host), so the levels are far
// apart and the limit is 2 s.
const LEVELS: [&str; 3] = ["50ms", "150ms", "2s"];
const LIMIT_MS: f64 = 2000.0;

#[test]
fn delay_escalation_in_a_stock_kernel_vm() {
    let Some(mut vm) = vm::Vm::new() else { return };
    let me = std::env::current_exe().expect("the test binary's path");
    vm.add_binary(&me, "/bin/vmtest")
        .add_binary(env!("CARGO_BIN_EXE_faultline"), "/bin/faultline")
        .add_modules(&["veth", "sch_netem"]);
    let log = vm.run(
        "FAULTLINE_VM_GUEST=1 /bin/vmtest --exact guest_escalation_checks --nocapture --test-threads=1\n\
         echo \"VMTEST guest_exit PASS $?\"\n",
        Duration::from_secs(600),
    );
    for c in ["delay_escalation_breaking_point", "guest_exit"] {
        println!("{c}: {}", log.assert_pass(c));
    }
    log.assert_all_pass();
}

/// Runs inside the VM only (FAULTLINE_VM_GUEST=1); a no-op on the host.
#[test]
fn guest_escalation_checks() {
    if std::env::var("FAULTLINE_VM_GUEST").as_deref() != Ok("1") {
        println!("guest_escalation_checks runs inside the test VM");
        return;
    }
    match std::panic::catch_unwind(delay_escalation) {
        Ok(detail) => println!("VMTEST delay_escalation_breaking_point PASS {detail}"),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            println!(
                "VMTEST delay_escalation_breaking_point FAIL {}",
                msg.replace('\n', " | ")
            );
        }
    }
}

/// One HTTP GET of 10.201.0.2:8080 from the root namespace: its time in
/// ms, or None when it failed.
fn get_ms() -> Option<f64> {
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect_timeout(
        &"10.201.0.2:8080".parse().unwrap(),
        Duration::from_secs(8),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(8))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut b = Vec::new();
    s.read_to_end(&mut b).ok()?;
    b.starts_with(b"HTTP/1.")
        .then(|| t.elapsed().as_secs_f64() * 1000.0)
}

fn qdiscs() -> String {
    netns::sh(&["tc", "-n", "b", "qdisc", "show"])
}

fn delay_escalation() -> String {
    for argv in [
        &["ip", "netns", "add", "b"][..],
        &[
            "ip", "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", "b",
        ],
        &["ip", "addr", "add", "10.201.0.1/24", "dev", "va"],
        &["ip", "link", "set", "va", "up"],
        &["ip", "-n", "b", "addr", "add", "10.201.0.2/24", "dev", "vb"],
        &["ip", "-n", "b", "link", "set", "vb", "up"],
        &["ip", "-n", "b", "link", "set", "lo", "up"],
    ] {
        netns::sh(argv);
    }
    std::fs::create_dir_all("/www").unwrap();
    std::fs::write("/www/index.html", "hello\n").unwrap();
    netns::sh(&[
        "ip",
        "netns",
        "exec",
        "b",
        "busybox",
        "httpd",
        "-p",
        "10.201.0.2:8080",
        "-h",
        "/www",
    ]);
    let start = Instant::now();
    while get_ms().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "httpd did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = qdiscs();
    let exp = format!(
        r#"
title: delay escalation
hypothesis: the web server answers within 2s at every level
limits:
  max_duration: 3m
steady_state:
  interval: 500ms
  probes:
    - name: web
      http: {{url: "http://10.201.0.2:8080/"}}
      timeout: 8s
      expect: {{latency_below: 2s}}
      before: {{samples: 2}}
      during: {{min_success: 70%}}
      after: {{within: 10s, successes: 2}}
method:
  - name: more and more delay
    fault:
      network: {{netns: b, interface: vb, delay: {{time: 20ms}}}}
    escalate: {{param: delay.time, levels: [{}], hold: 5s}}
"#,
        LEVELS.join(", ")
    );
    std::fs::write("/tmp/esc.yaml", exp).unwrap();
    let o = Command::new("faultline")
        .args(["run", "/tmp/esc.yaml", "--journal", "/tmp/esc.json"])
        .env("FAULTLINE_STATE_DIR", "/tmp/state")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let after = qdiscs();
    assert_eq!(after, before, "qdiscs differ after the run");
    assert_eq!(o.status.code(), Some(1), "expected DEVIATED: {out}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("/tmp/esc.json").unwrap()).unwrap();
    let e = &j["escalation"];
    let reached = e["levels"].as_array().expect("levels");
    for l in &reached[1..] {
        assert_eq!(l["in_place"], true, "{l}");
        assert!(
            l["operations"]
                .to_string()
                .contains("qdisc change dev vb root handle fa17: netem delay"),
            "{l}"
        );
    }

    // Independent measurement: the same delay by hand, median of 5 GETs.
    let mut measured = Vec::new();
    let mut predicted = None;
    for (k, d) in LEVELS.iter().enumerate() {
        netns::sh(&[
            "tc", "-n", "b", "qdisc", "add", "dev", "vb", "root", "netem", "delay", d,
        ]);
        let mut t: Vec<f64> = (0..5).map(|_| get_ms().unwrap_or(f64::INFINITY)).collect();
        netns::sh(&["tc", "-n", "b", "qdisc", "del", "dev", "vb", "root"]);
        t.sort_by(|a, b| a.total_cmp(b));
        measured.push(format!("{d}: {:.0}ms", t[2]));
        if t[2] > LIMIT_MS && predicted.is_none() {
            predicted = Some(k);
        }
    }
    let predicted = predicted.unwrap_or_else(|| panic!("no level broke by hand: {measured:?}"));
    assert_eq!(
        e["first_broken"], LEVELS[predicted],
        "measured by hand {measured:?}; faultline: {e}"
    );
    assert_eq!(reached.len(), predicted + 1, "{e}");
    assert_eq!(qdiscs(), before);
    format!(
        "breaking point {} (last held {}), measured by hand: {}",
        e["first_broken"],
        e["last_held"],
        measured.join(", ")
    )
}
