//! A control group: two real replicas of a web service (two processes on
//! loopback), probes of the first in the experiment group and of the second
//! in the control group. A cpu_limit on the first must be reported as a
//! significant difference (and fail the relative `p95_within`); the same
//! experiment with the fault on neither must report none and hold.
//! Takes the host lock /tmp/faultline-itest.lock.

mod support;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

/// A single-threaded HTTP server that burns 5 ms of CPU per request.
const SERVER: &str = r#"
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        t = time.process_time()
        while time.process_time() - t < 0.005:
            pass
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

fn replica() -> (ChildGuard, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = ChildGuard(
        Command::new("python3")
            .args(["-c", SERVER, &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }),
        "replica did not start"
    );
    (child, port)
}

fn experiment(p1: u16, p2: u16, step: &str) -> String {
    format!(
        r#"
title: canary vs control
hypothesis: the canary's p95 stays within 50% of the control replica's
steady_state:
  interval: 200ms
  probes:
    - name: canary
      http: {{url: "http://127.0.0.1:{p1}/"}}
      timeout: 3s
      during: {{p95_within: {{of: control, percent: 50%}}}}
    - name: replica
      group: control
      http: {{url: "http://127.0.0.1:{p2}/"}}
      timeout: 3s
method:
{step}
"#
    )
}

fn during(j: &serde_json::Value) -> serde_json::Value {
    j["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["phase"] == "during")
        .cloned()
        .expect("a comparison during the method")
}

#[test]
fn fault_on_one_replica_is_significant_and_on_neither_is_not() {
    if !is_root() {
        eprintln!("skipped: needs root (cgroups)");
        return;
    }
    let _lock = host_lock();
    let (web, p1) = replica();
    let (_control, p2) = replica();

    // The fault on the canary only.
    let sb = Sandbox::new();
    let step = format!(
        "  - fault: {{cpu_limit: {{target: {{pid: {}}}, cpus: 0.02}}}}\n    duration: 8s",
        web.pid()
    );
    let file = sb.write("fault.yaml", &experiment(p1, p2, &step));
    let o = sb.run(&file, &[]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let j = sb.journal();
    let d = during(&j);
    assert_eq!(d["significant"], true, "{d:#}");
    assert!(
        d["latency_test"]["p_value"].as_f64().unwrap() < 0.05,
        "{d:#}"
    );
    assert!(d["latency_test"]["z"].as_f64().unwrap() > 0.0, "{d:#}");
    assert_eq!(j["probes"][1]["group"], "control");
    assert_eq!(
        j["probes"][0]["during"]["met"], false,
        "{:#}",
        j["probes"][0]
    );
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("Experiment group vs control group"), "{out}");
    assert!(table.contains("significant difference"), "{out}");

    // The fault on neither: the same probes, a pause.
    let sb = Sandbox::new();
    let file = sb.write("none.yaml", &experiment(p1, p2, "  - pause: 8s"));
    let o = sb.run(&file, &[]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let j = sb.journal();
    let d = during(&j);
    assert_eq!(d["significant"], false, "{d:#}");
    assert!(d["experiment"]["samples"].as_u64().unwrap() >= 20, "{d:#}");
    assert!(out.contains("no significant difference"), "{out}");
}
