//! The requirements teams write, end to end with the built binary against
//! real servers and processes: `during.max_outage`, latency percentiles,
//! numeric `value` on command output and JSON fields, and `process_kill`'s
//! `expect_restart_within`.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;

/// An HTTP server on 127.0.0.1 that answers every request with `body`
/// (JSON) after `delay`.
struct SlowServer {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl SlowServer {
    fn start(delay: Duration, body: &'static str) -> SlowServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        std::thread::spawn(move || {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                            let mut buf = [0u8; 4096];
                            let _ = s.read(&mut buf);
                            std::thread::sleep(delay);
                            let _ = write!(
                                s,
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            );
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        SlowServer { port, stop }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for SlowServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn exp(interval: &str, probe: &str, method: &str) -> String {
    format!(
        r#"
title: requirements test
hypothesis: the service answers as the team expects
steady_state:
  interval: {interval}
  probes:
{probe}
method:
{method}
"#
    )
}

/// The flag server fails for a known stretch (about 1s, between two
/// commands of the method): the longest outage is about that long.
fn outage_run(max_outage: &str) -> (std::process::Output, serde_json::Value, Sandbox) {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let flag = srv.fail_flag.display().to_string();
    let probe = format!(
        "    - name: web\n      http: {{url: \"{}\"}}\n      timeout: 1s\n      before: {{samples: 2}}\n      during: {{max_outage: {max_outage}}}\n      after: {{within: 5s, successes: 2}}",
        srv.url()
    );
    let method = format!(
        "  - pause: 300ms\n  - command: {{run: [touch, \"{flag}\"]}}\n  - pause: 1s\n  - command: {{run: [rm, -f, \"{flag}\"]}}\n  - pause: 500ms"
    );
    let f = sb.write("e.yaml", &exp("100ms", &probe, &method));
    let o = sb.run(&f, &[]);
    let j = sb.journal();
    (o, j, sb)
}

#[test]
fn an_outage_within_max_outage_holds_and_is_reported() {
    let (o, j, sb) = outage_run("5s");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let d = &j["probes"][0]["during"];
    let longest = d["longest_outage_ms"].as_f64().unwrap();
    // The server failed for 1s: the outage starts at the first failing
    // sample (at most an interval after the flag appeared, or later on a
    // busy host) and ends at the first good sample after it went.
    assert!((500.0..5000.0).contains(&longest), "{d}");
    assert_eq!(d["max_outage_ms"], 5000.0);
    assert_eq!(d["met"], true);
    assert!(
        d["requirement"]
            .as_str()
            .unwrap()
            .starts_with("longest outage "),
        "{d}"
    );
    let md = std::fs::read_to_string(sb.path().join("report.md")).unwrap();
    assert!(
        md.contains("longest outage") && md.contains("(max 5s)"),
        "{md}"
    );
    assert!(text(&o).contains("longest outage"), "{}", text(&o));
}

#[test]
fn an_outage_longer_than_max_outage_deviates_naming_it() {
    let (o, j, _sb) = outage_run("300ms");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(j["outcome"]["verdict"], "deviated");
    let d = &j["probes"][0]["during"];
    assert!(d["longest_outage_ms"].as_f64().unwrap() > 300.0, "{d}");
    assert_eq!(d["met"], false);
    let reason = j["outcome"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("longest outage") && reason.contains("(max 300ms)"),
        "{reason}"
    );
}

/// A server that takes 150ms per answer, sampled every 50ms for 2.5s.
fn latency_run(requirement: &str, pause: &str) -> (std::process::Output, serde_json::Value) {
    let sb = Sandbox::new();
    let srv = SlowServer::start(Duration::from_millis(150), "{}");
    let probe = format!(
        "    - name: api\n      http: {{url: \"{}\"}}\n      timeout: 2s\n      before: {{samples: 1}}\n      during: {{{requirement}}}\n      after: {{within: 5s, successes: 1}}",
        srv.url()
    );
    let f = sb.write(
        "e.yaml",
        &exp("50ms", &probe, &format!("  - pause: {pause}")),
    );
    let o = sb.run(&f, &[]);
    let j = sb.journal();
    (o, j)
}

#[test]
fn p95_above_the_limit_deviates_and_below_it_holds() {
    let (o, j) = latency_run("p95_below: 100ms", "2500ms");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let d = &j["probes"][0]["during"];
    assert!(d["samples"].as_u64().unwrap() >= 20, "{d}");
    assert_eq!(d["met"], false);
    let req = d["requirement"].as_str().unwrap();
    assert!(
        req.starts_with("p95 latency ") && req.contains("(max 100ms"),
        "{req}"
    );

    let (o, j) = latency_run("p95_below: 5s, min_success: 100%", "2500ms");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let d = &j["probes"][0]["during"];
    assert_eq!(d["met"], true, "{d}");
    // The measured p95 is the real answer time: at least the server's delay.
    assert!(d["latency_ms"]["p95"].as_f64().unwrap() >= 150.0, "{d}");
}

#[test]
fn a_percentile_on_too_few_samples_is_inconclusive_not_held() {
    // 300ms at 50ms: at most 7 samples, p95 needs 20.
    let (o, j) = latency_run("p95_below: 5s", "300ms");
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert_eq!(j["outcome"]["verdict"], "inconclusive");
    let r = &j["inconclusive"][0];
    assert_eq!(r["kind"], "too_few_samples", "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("at least 20"),
        "{r}"
    );
    assert!(j["probes"][0]["during"]["met"].is_null());
}

fn before_only(probe_kind: &str, expect: &str) -> std::process::Output {
    let sb = Sandbox::new();
    let probe = format!(
        "    - name: num\n      {probe_kind}\n      expect: {expect}\n      before: {{samples: 2}}\n      after: {{within: 2s, successes: 1}}"
    );
    let f = sb.write("e.yaml", &exp("100ms", &probe, "  - pause: 100ms"));
    sb.run(&f, &[])
}

#[test]
fn a_command_output_is_compared_as_a_number() {
    let ok = before_only(
        "command: {run: [echo, \"  42\"]}",
        "{value: {min: 10, max: 50}}",
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let bad = before_only("command: {run: [echo, \"42\"]}", "{value: {max: 10}}");
    assert_eq!(bad.status.code(), Some(3), "{}", text(&bad));
    assert!(
        text(&bad).contains("value 42, expected at most 10"),
        "{}",
        text(&bad)
    );
    let nan = before_only("command: {run: [echo, \"ready\"]}", "{value: {max: 10}}");
    assert_eq!(nan.status.code(), Some(3), "{}", text(&nan));
    assert!(text(&nan).contains("is not a number"), "{}", text(&nan));
}

#[test]
fn a_json_field_is_compared_as_a_number() {
    let srv = SlowServer::start(Duration::ZERO, r#"{"replication": {"lag_seconds": 3.5}}"#);
    let http = format!("http: {{url: \"{}\"}}", srv.url());
    let ok = before_only(
        &http,
        "{jsonpath: {path: $.replication.lag_seconds, value: {max: 10}}}",
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let bad = before_only(
        &http,
        "{jsonpath: {path: $.replication.lag_seconds, value: {max: 1}}}",
    );
    assert_eq!(bad.status.code(), Some(3), "{}", text(&bad));
    assert!(
        text(&bad).contains("value 3.5, expected at most 1"),
        "{}",
        text(&bad)
    );
}

/// A supervisor (a shell loop) that restarts a uniquely named `sleep`
/// `delay` after it dies; `process_kill` kills the sleep.
fn restart_run(
    delay: &str,
    within: &str,
    duration: &str,
) -> (std::process::Output, serde_json::Value) {
    let sb = Sandbox::new();
    // Unique per run: the tests run in parallel and must not kill each
    // other's workers.
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let tag = format!(
        "{}.{}",
        1000 + N.fetch_add(1, Ordering::SeqCst),
        std::process::id()
    );
    let text_ = format!(
        r#"
title: restart test
hypothesis: the supervisor restarts the worker in time
setup:
  - name: supervisor
    start: [sh, -c, "while :; do sleep {tag} & wait $!; sleep {delay}; done"]
steady_state:
  interval: 100ms
  probes:
    - name: alive
      command: {{run: ["true"]}}
      before: {{samples: 1}}
      after: {{within: 2s, successes: 1}}
method:
  - fault:
      process_kill:
        target: {{cmdline: "^sleep {tag}$"}}
        expect_restart_within: {within}
    duration: {duration}
"#
    );
    let f = sb.write("e.yaml", &text_);
    let o = sb.run(&f, &[]);
    let j = sb.journal();
    (o, j)
}

#[test]
fn a_restart_in_time_holds() {
    let (o, j) = restart_run("0.1", "3s", "3s");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let e = &j["faults"][0]["expectation"];
    assert_eq!(e["met"], true, "{e}");
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("1 of 1 killed restarted"),
        "{e}"
    );
}

#[test]
fn a_slow_restart_deviates_naming_the_process_and_the_time() {
    let (o, j) = restart_run("2", "500ms", "4s");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(j["outcome"]["verdict"], "deviated");
    let reason = j["outcome"]["reason"].as_str().unwrap();
    // The restart took the supervisor's 2s (at least), measured from the
    // kill to the new process's start.
    assert!(
        reason.contains("`sleep` (pid ") && reason.contains("restarted after"),
        "{reason}"
    );
    assert!(reason.contains("expected within 500ms"), "{reason}");
    let ms = j["faults"][0]["observations"]["restarts"][0]["restart_ms"]
        .as_u64()
        .unwrap();
    assert!(ms >= 1900, "{ms}");
}

#[test]
fn no_restart_at_all_deviates() {
    // The supervisor waits longer than the step: no restart is seen.
    let (o, j) = restart_run("30", "1s", "2s");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let reason = j["outcome"]["reason"].as_str().unwrap();
    assert!(reason.contains("did not restart"), "{reason}");
}
