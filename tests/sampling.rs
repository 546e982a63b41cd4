//! Sampling and the INCONCLUSIVE verdict, end to end with the built binary
//! against real TCP/HTTP servers on loopback: a service that answers slowly,
//! one that accepts and never answers, and what the verdict says about them.
//!
//! Samples start on a fixed schedule (one per interval, several in flight),
//! a sample running past its interval counts as failing for abort
//! conditions, and the method's end waits for the samples in flight.
//! Timing is checked against the schedule with wide margins (a busy 2-core
//! machine must pass): the figures themselves are in benches/sampling.rs.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{text, Sandbox};

/// An HTTP server on 127.0.0.1 that answers 200 after `delay` (one thread per
/// connection), or, with `delay: None` or while the file `hang` exists,
/// accepts and never answers (a hung target: connections stay open until
/// the server is dropped).
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(delay: Option<Duration>) -> Server {
        Self::start_with(delay, None)
    }

    fn start_with(delay: Option<Duration>, hang: Option<PathBuf>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let hung = hang.as_ref().is_some_and(|f| f.exists());
                        let delay = match delay {
                            Some(d) if !hung => d,
                            _ => {
                                held.lock().unwrap().push(s);
                                continue;
                            }
                        };
                        let stop3 = stop2.clone();
                        std::thread::spawn(move || answer(s, delay, &stop3));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Server { port, stop }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

fn answer(mut s: TcpStream, delay: Duration, stop: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4096];
    let _ = s.read(&mut buf);
    let end = Instant::now() + delay;
    while Instant::now() < end && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    );
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// Expected = taken + cut + skipped: no scheduled sample is silently lost.
fn assert_accounted(phase: &serde_json::Value) {
    let (exp, taken, cut, skipped) = (
        num(&phase["expected"]),
        num(&phase["samples"]),
        num(&phase["cut"]),
        num(&phase["skipped"]),
    );
    assert!(exp >= 1.0, "{phase}");
    assert_eq!(exp, taken + cut + skipped, "{phase}");
}

fn reasons(j: &serde_json::Value) -> Vec<(String, String)> {
    j["inconclusive"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["kind"].as_str().unwrap_or_default().to_string(),
                        r["subject"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A hung target (accepts, never answers) with a 5 s probe timeout and
/// `consecutive_failures: 3` at a 200 ms interval: samples keep starting on
/// schedule and each counts as failing once it is one interval old, so the
/// run aborts about 3 x 200 ms after the target hangs, not after 3 timeouts
/// (15 s) or even one (5 s). The hung samples are cut, not failures.
#[test]
fn a_hung_target_aborts_after_interval_times_count_not_after_timeouts() {
    let sb = Sandbox::new();
    let flag = sb.path().join("hang");
    let srv = Server::start_with(Some(Duration::ZERO), Some(flag.clone()));
    let f = sb.write(
        "hung.yaml",
        &format!(
            r#"title: hung target
hypothesis: the service keeps answering
steady_state:
  interval: 200ms
  probes:
    - name: web
      http: {{url: "{url}"}}
      timeout: 5s
      before: {{samples: 2}}
      after: {{within: 10s, successes: 1}}
method:
  - command: {{run: [touch, "{flag}"]}}
  - pause: 20s
abort:
  - probe: web
    consecutive_failures: 3
rollbacks:
  - run: [rm, -f, "{flag}"]
"#,
            url = srv.url(),
            flag = flag.display()
        ),
    );
    let t = Instant::now();
    let o = sb.run(&f, &[]);
    let wall = t.elapsed();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let j = sb.journal();
    assert_eq!(j["outcome"]["verdict"], "aborted", "{j:#}");
    let abort = &j["abort"];
    assert_eq!(abort["condition"], "web: 3 consecutive failures", "{j:#}");
    let reason = abort["reason"].as_str().unwrap();
    assert!(
        reason.contains("3 failing samples in a row (limit 3)") && reason.contains("still running"),
        "{reason}"
    );
    // From the moment the target hung (the touch step started) to the abort:
    // at least the schedule's 3 x 200ms, and well under one 5 s timeout.
    let hung_at = num(&j["steps"][0]["started_ms"]);
    let after = num(&abort["at_ms"]) - hung_at;
    assert!(
        after >= 550.0,
        "aborted {after:.0}ms after the hang: too early"
    );
    assert!(
        after < 5000.0,
        "aborted {after:.0}ms after the hang; the probe timeout is 5000ms"
    );
    // Nothing waited for a timeout: the samples in flight were cut.
    let during = &j["probes"][0]["during"];
    assert!(num(&during["cut"]) >= 3.0, "{during}");
    assert_eq!(
        num(&during["failures"]) + num(&during["errors"]),
        0.0,
        "{during}"
    );
    assert_accounted(during);
    assert!(
        wall < Duration::from_secs(15),
        "the whole run took {wall:?}: {}",
        text(&o)
    );
    drop(srv);
}

/// A service that answers in 600 ms, sampled every 100 ms for 2 s: samples
/// overlap (up to timeout / interval + 1 in flight) so the schedule is kept,
/// where one sample at a time gave 3 or 4. The ones in flight when the
/// method ends are waited for.
#[test]
fn a_slow_service_is_sampled_on_schedule_with_samples_in_flight() {
    let sb = Sandbox::new();
    let slow = Server::start(Some(Duration::from_millis(600)));
    let f = sb.write(
        "slow.yaml",
        &format!(
            r#"title: slow but healthy
hypothesis: the slow service answers
steady_state:
  interval: 100ms
  probes:
    - name: slow
      http: {{url: "{}"}}
      timeout: 2s
      before: {{samples: 3}}
      during: {{min_success: 100%}}
      after: {{within: 10s, successes: 1}}
method:
  - pause: 2s
"#,
            slow.url()
        ),
    );
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j = sb.journal();
    let p = &j["probes"][0];
    let during = &p["during"];
    assert_accounted(during);
    let (exp, taken) = (num(&during["expected"]), num(&during["samples"]));
    assert!((19.0..=40.0).contains(&exp), "2s / 100ms: {during}");
    // Achieved vs expected, with room for a busy machine.
    assert!(taken >= 0.75 * exp, "{taken} of {exp} samples: {during}");
    assert_eq!(num(&during["successes"]), taken, "{during}");
    assert_eq!(num(&during["cut"]), 0.0, "waited for, not cut: {during}");
    assert!(during["start_jitter_ms"]["p50"].is_number(), "{during}");
    // Before: exactly its count, on the same schedule.
    assert_eq!(p["before"]["expected"], 3, "{p}");
    assert_eq!(p["before"]["samples"], 3, "{p}");
}

/// A hung target with more of the timeout than the in-flight bound covers
/// (5 s / 100 ms, capped at 16): once 16 samples hang, ticks are skipped and
/// counted as skipped. The method ends normally, so the samples in flight are
/// waited for: each ends at its timeout, an error.
#[test]
fn ticks_beyond_the_in_flight_bound_are_counted_as_skipped() {
    let sb = Sandbox::new();
    let flag = sb.path().join("hang");
    let srv = Server::start_with(Some(Duration::ZERO), Some(flag.clone()));
    let f = sb.write(
        "bound.yaml",
        &format!(
            r#"title: in-flight bound
hypothesis: the service keeps answering
steady_state:
  interval: 100ms
  probes:
    - name: web
      http: {{url: "{url}"}}
      timeout: 5s
      before: {{samples: 1}}
      during: {{min_success: 50%}}
      after: {{within: 10s, successes: 1}}
method:
  - command: {{run: [touch, "{flag}"]}}
  - pause: 2500ms
  - command: {{run: [rm, -f, "{flag}"]}}
"#,
            url = srv.url(),
            flag = flag.display()
        ),
    );
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let j = sb.journal();
    let during = &j["probes"][0]["during"];
    assert_accounted(during);
    let skipped = num(&during["skipped"]);
    assert!(skipped >= 5.0, "2.5s at 100ms with 16 in flight: {during}");
    // Every hung sample ended at its timeout, as an error.
    assert!(num(&during["errors"]) >= 14.0, "{during}");
    assert_eq!(num(&during["cut"]), 0.0, "{during}");
    drop(srv);
}

/// A slow service (1.5 s per answer) and a method much shorter than one
/// sample: the sample started with the method is waited for, so the
/// `during` requirement rests on it (1/1), not on `0/0`, and a healthy
/// system is never DEVIATED.
#[test]
fn a_method_shorter_than_one_sample_waits_for_it() {
    let sb = Sandbox::new();
    let slow = Server::start(Some(Duration::from_millis(1500)));
    let f = sb.write(
        "short.yaml",
        &format!(
            r#"title: short method
hypothesis: the slow service answers while nothing happens
steady_state:
  interval: 1s
  probes:
    - name: slow
      http: {{url: "{}"}}
      timeout: 5s
      before: {{samples: 1}}
      during: {{min_success: 90%}}
      after: {{within: 10s, successes: 1}}
method:
  - pause: 200ms
"#,
            slow.url()
        ),
    );
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j = sb.journal();
    let during = &j["probes"][0]["during"];
    assert_eq!(during["samples"], 1, "{during}");
    assert_eq!(during["expected"], 1, "{during}");
    assert_eq!(during["met"], true, "{during}");
    assert!(
        during["requirement"]
            .as_str()
            .unwrap()
            .contains("(got 1/1)"),
        "{during}"
    );
}

/// DEVIATED wins: a probe that failed its requirement while the method ran
/// decides the verdict even when there is a reason for INCONCLUSIVE too (a
/// stressor asking for twice the CPUs there are delivers at most half).
#[test]
fn a_failed_hypothesis_is_deviated_even_with_a_reason_for_inconclusive() {
    let sb = Sandbox::new();
    let flaky = support::FlagServer::start(sb.path());
    let flag = flaky.fail_flag.display().to_string();
    let cpus = std::thread::available_parallelism().unwrap().get();
    let f = sb.write(
        "deviated.yaml",
        &format!(
            r#"title: deviated beats inconclusive
hypothesis: the service keeps answering while its flag is set
steady_state:
  interval: 100ms
  probes:
    - name: flaky
      http: {{url: "{}"}}
      timeout: 2s
      before: {{samples: 1}}
      during: {{min_success: 100%}}
      after: {{within: 10s, successes: 1}}
method:
  - command: {{run: [touch, "{flag}"]}}
  - fault:
      cpu_stress: {{workers: {}, load: 100%}}
    duration: 2s
  - command: {{run: [rm, -f, "{flag}"]}}
"#,
            flaky.url(),
            cpus * 2
        ),
    );
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let j = sb.journal();
    assert_eq!(j["outcome"]["verdict"], "deviated", "{j:#}");
    assert_eq!(j["probes"][0]["during"]["met"], false, "{j:#}");
    // The reason for INCONCLUSIVE is still recorded, for whoever reads the journal.
    assert!(
        reasons(&j)
            .iter()
            .any(|(k, _)| k == "fault_under_delivered"),
        "{j:#}"
    );
}

/// `validate` warns (exit 0, the file is valid) when a `during` percentage
/// can rest on fewer than 10 samples and when a probe's timeout is longer
/// than an abort condition lets a sample run; each warning points at the
/// field to change, in text and in JSON.
#[test]
fn validate_warns_about_few_samples_and_a_timeout_abort_never_reaches() {
    let sb = Sandbox::new();
    sb.write(
        "warn.yaml",
        r#"title: coarse
hypothesis: h
steady_state:
  interval: 500ms
  probes:
    - name: web
      http: {url: "http://127.0.0.1:9/"}
      timeout: 5s
      during: {min_success: 90%}
method:
  - pause: 2s
abort:
  - probe: web
    consecutive_failures: 3
"#,
    );
    let o = sb.cmd().args(["validate", "warn.yaml"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("warn.yaml:9:16: steady_state.probes[0].during.min_success: warning: `min_success: 90%` can rest on 5 samples"),
        "{err}"
    );
    assert!(
        err.contains("warn.yaml:8:7: steady_state.probes[0].timeout: warning: timeout 5s is longer than abort[0] allows (3 consecutive failures x 500ms interval = 1500ms)"),
        "{err}"
    );
    let o = sb
        .cmd()
        .args(["validate", "--format", "json", "warn.yaml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["valid"], true);
    let w = v[0]["warnings"].as_array().unwrap();
    assert_eq!(w.len(), 2, "{v:#}");
    assert_eq!(w[1]["path"], "steady_state.probes[0].timeout");
    assert_eq!(w[1]["line"], 8);
}

/// Chaos Toolkit's `check-file-exists` shape with `continuously`: the method
/// (one quick action) is far shorter than one sample interval. The sample
/// that started with the method is waited for, so the hypothesis rests on
/// it: HELD, never a DEVIATED from `0/0`.
#[test]
fn a_chaos_toolkit_method_shorter_than_one_sample_holds() {
    let sb = Sandbox::new();
    let file = sb.path().join("exists.txt");
    std::fs::write(&file, "x").unwrap();
    let f = sb.write(
        "check-file-exists.json",
        &serde_json::json!({
            "title": "Does the file exist?",
            "description": "a method shorter than one sample",
            "steady-state-hypothesis": {
                "title": "The file must be around",
                "probes": [{
                    "type": "probe", "name": "file-must-exist", "tolerance": 0,
                    "provider": {"type": "process", "path": "test",
                                 "arguments": ["-e", file.display().to_string()]}
                }]
            },
            "method": [{
                "type": "action", "name": "quick",
                "provider": {"type": "process", "path": "true"}
            }]
        })
        .to_string(),
    );
    for strategy in ["continuously", "during-method-only"] {
        let o = sb
            .cmd()
            .arg("run")
            .arg(&f)
            .args(["--hypothesis-strategy", strategy])
            .args(["--hypothesis-frequency", "1", "--journal", "journal.json"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{strategy}: {}", text(&o));
        let j = sb.journal();
        let during = &j["probes"][0]["during"];
        assert!(num(&during["samples"]) >= 1.0, "{strategy}: {during}");
        assert_eq!(during["met"], true, "{strategy}: {during}");
        assert_accounted(during);
    }
}
