//! End-to-end runs of the built binary against real local servers and
//! processes: every verdict and its exit code, the journal and the JUnit file.

mod support;

use std::time::{Duration, Instant};
use support::*;

fn experiment(url: &str, method: &str, extra: &str) -> String {
    format!(
        r#"
title: runner test
hypothesis: the server keeps answering
steady_state:
  interval: 100ms
  probes:
    - name: web
      http: {{url: "{url}"}}
      timeout: 1s
      before: {{samples: 2}}
      after: {{within: 3s, successes: 2}}
{extra}
method:
{method}
"#
    )
}

#[test]
fn hypothesis_held_exits_0_with_journal_and_junit() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let f = sb.write("e.yaml", &experiment(&srv.url(), "  - pause: 500ms", ""));
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j = sb.journal();
    assert_eq!(j["outcome"]["verdict"], "held");
    assert_eq!(j["outcome"]["exit_code"], 0);
    let p = &j["probes"][0];
    assert_eq!(p["before"]["samples"], 2);
    assert!(p["during"]["samples"].as_u64().unwrap() >= 3, "{p}");
    assert!(p["after"]["samples"].as_u64().unwrap() >= 2);
    // Every sample is in the journal and the counts agree with them.
    let total = p["samples"].as_array().unwrap().len() as u64;
    let counted: u64 = ["before", "during", "after"]
        .iter()
        .map(|ph| p[ph]["samples"].as_u64().unwrap())
        .sum();
    assert_eq!(total, counted);
    assert!(sb.path().join("junit.xml").exists());
    assert!(sb.path().join("report.md").exists());
    // Nothing is left in the state directory.
    let st = sb.status();
    assert_eq!(st.status.code(), Some(0), "{}", text(&st));
}

#[test]
fn failing_during_the_method_deviates_with_exit_1() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let flag = srv.fail_flag.display().to_string();
    let method = format!(
        "  - command: {{run: [touch, \"{flag}\"]}}\n  - pause: 600ms\n  - command: {{run: [rm, -f, \"{flag}\"]}}"
    );
    let exp = experiment(&srv.url(), &method, "").replace(
        "      before: {samples: 2}",
        "      before: {samples: 2}\n      during: {min_success: 100%}",
    );
    let f = sb.write("e.yaml", &exp);
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let j = sb.journal();
    assert_eq!(j["outcome"]["verdict"], "deviated");
    assert!(j["probes"][0]["during"]["failures"].as_u64().unwrap() >= 1);
    assert_eq!(j["probes"][0]["during"]["met"], false);
    assert!(j["timings"]["time_to_detect_ms"].is_null(), "no fault was injected");
}

#[test]
fn abort_condition_stops_the_method_with_exit_2() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let flag = srv.fail_flag.display().to_string();
    let method = format!("  - command: {{run: [touch, \"{flag}\"]}}\n  - pause: 20s");
    let abort = "abort:\n  - probe: web\n    consecutive_failures: 2";
    let f = sb.write("e.yaml", &experiment(&srv.url(), &method, abort));
    let t = Instant::now();
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(t.elapsed() < Duration::from_secs(15), "the abort cut the 20s pause short");
    let j = sb.journal();
    assert_eq!(j["outcome"]["verdict"], "aborted");
    assert_eq!(j["abort"]["probe"], "web");
    assert!(j["abort"]["reason"].as_str().unwrap().contains("in a row"));
    assert!(String::from_utf8_lossy(&o.stdout).contains("ABORTED"), "{}", text(&o));
}

#[test]
fn not_steady_before_injects_nothing_and_exits_3() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    std::fs::write(&srv.fail_flag, "").unwrap();
    let marker = sb.path().join("method-ran");
    let method = format!("  - command: {{run: [touch, \"{}\"]}}", marker.display());
    let f = sb.write("e.yaml", &experiment(&srv.url(), &method, ""));
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(!marker.exists(), "the method must not run when the steady state does not hold");
    let j = sb.journal();
    assert_eq!(j["outcome"]["verdict"], "not_steady");
    assert!(j["outcome"]["reason"].as_str().unwrap().contains("500"), "{}", j["outcome"]);
}

#[test]
fn a_probe_whose_program_is_missing_fails_preflight_with_69() {
    let sb = Sandbox::new();
    let exp = r#"
title: missing probe
hypothesis: h
steady_state:
  probes:
    - name: cli
      command: {run: [definitely-not-installed-faultline-test]}
method:
  - pause: 1s
"#;
    let f = sb.write("e.yaml", exp);
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    assert!(text(&o).contains("definitely-not-installed-faultline-test"), "{}", text(&o));
}

#[test]
fn ctrl_c_rolls_back_and_exits_130_and_stops_setup_processes() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let pidfile = sb.path().join("setup.pid");
    let exp = format!(
        r#"
title: interrupted
hypothesis: h
setup:
  - name: helper
    start: [sh, -c, "echo $$ > {pid}; exec sleep 300"]
steady_state:
  interval: 100ms
  probes:
    - name: web
      http: {{url: "{url}"}}
      before: {{samples: 1}}
method:
  - pause: 30s
"#,
        pid = pidfile.display(),
        url = srv.url()
    );
    let f = sb.write("e.yaml", &exp);
    let child = sb
        .cmd()
        .arg("run")
        .arg(&f)
        .args(["--journal", "journal.json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || pidfile.exists()));
    std::thread::sleep(Duration::from_millis(500));
    let setup_pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let t = Instant::now();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(
        wait_until(Duration::from_secs(5), || proc_state(setup_pid).is_none_or(|s| s == 'Z')),
        "the setup process was stopped"
    );
    assert_eq!(sb.journal()["outcome"]["verdict"], "interrupted");
    assert_eq!(sb.status().status.code(), Some(0));
}

#[test]
fn a_bad_output_path_fails_before_anything_runs() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let marker = sb.path().join("method-ran");
    let method = format!("  - command: {{run: [touch, \"{}\"]}}", marker.display());
    let f = sb.write("e.yaml", &experiment(&srv.url(), &method, ""));
    let o = sb
        .cmd()
        .arg("run")
        .arg(&f)
        .args(["--junit", "/nonexistent-dir/x.xml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(text(&o).contains("/nonexistent-dir/x.xml"));
    assert!(!marker.exists());
}

#[test]
fn events_stream_is_json_lines_with_run_id() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let f = sb.write("e.yaml", &experiment(&srv.url(), "  - pause: 300ms", ""));
    let o = sb.run(&f, &["--events", "-"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let run_id = events[0]["run_id"].as_str().unwrap().to_string();
    assert!(events.iter().all(|e| e["run_id"] == run_id.as_str() && e["at"].is_string()));
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    for k in ["run_started", "phase_started", "sample", "step_started", "run_finished"] {
        assert!(kinds.contains(&k), "missing {k} in {kinds:?}");
    }
}
