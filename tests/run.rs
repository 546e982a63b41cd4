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
    // The JUnit file is well-formed XML with a passing case per probe phase.
    let xml = std::fs::read_to_string(sb.path().join("junit.xml")).unwrap();
    let mut reader = quick_xml::Reader::from_str(&xml);
    let (mut cases, mut failures) = (0, 0);
    loop {
        match reader.read_event().expect("junit.xml is well-formed XML") {
            quick_xml::events::Event::Eof => break,
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                match e.name().as_ref() {
                    b"testcase" => cases += 1,
                    b"failure" => failures += 1,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    assert!(cases >= 3, "one case per probe and phase: {xml}");
    assert_eq!(failures, 0, "{xml}");
    let md = std::fs::read_to_string(sb.path().join("report.md")).unwrap();
    assert!(
        md.contains("the server keeps answering") && md.contains("HELD"),
        "{md}"
    );
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
    assert!(
        j["timings"]["time_to_detect_ms"].is_null(),
        "no fault was injected"
    );
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
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "the abort cut the 20s pause short"
    );
    let j = sb.journal();
    assert_eq!(j["outcome"]["verdict"], "aborted");
    assert_eq!(j["abort"]["probe"], "web");
    assert!(j["abort"]["reason"].as_str().unwrap().contains("in a row"));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ABORTED"),
        "{}",
        text(&o)
    );
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
    assert!(
        !marker.exists(),
        "the method must not run when the steady state does not hold"
    );
    let j = sb.journal();
    assert_eq!(j["outcome"]["verdict"], "not_steady");
    assert!(
        j["outcome"]["reason"].as_str().unwrap().contains("500"),
        "{}",
        j["outcome"]
    );
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
    assert!(
        text(&o).contains("definitely-not-installed-faultline-test"),
        "{}",
        text(&o)
    );
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
    let setup_pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
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
        wait_until(Duration::from_secs(5), || proc_state(setup_pid)
            .is_none_or(|s| s == 'Z')),
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
    assert!(events
        .iter()
        .all(|e| e["run_id"] == run_id.as_str() && e["at"].is_string()));
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for k in [
        "run_started",
        "phase_started",
        "sample",
        "step_started",
        "run_finished",
    ] {
        assert!(kinds.contains(&k), "missing {k} in {kinds:?}");
    }
}

// ------------------------------------------------------------ process_pause: rollback on every path

/// An experiment pausing `pid` for `duration`, probing the flag server.
fn pause_experiment(url: &str, pid: i32, duration: &str, extra: &str) -> String {
    format!(
        r#"
title: pause test
hypothesis: the target is resumed whatever happens
limits:
  max_duration: 2m
steady_state:
  interval: 100ms
  probes:
    - name: web
      http: {{url: "{url}"}}
      timeout: 1s
      before: {{samples: 1}}
      after: {{within: 3s, successes: 1}}
{extra}
method:
  - name: pause the target
    fault:
      process_pause:
        target: {{pid: {pid}}}
    duration: {duration}
"#
    )
}

/// Starts `faultline run` in the background with an events file.
fn spawn_run(sb: &Sandbox, file: &std::path::Path, envs: &[(&str, &str)]) -> std::process::Child {
    let mut c = sb.cmd();
    c.arg("run")
        .arg(file)
        .args(["--journal", "journal.json", "--events", "events.jsonl"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

/// Starts a run and returns once its fault is injected and verified.
fn spawn_until_verified(sb: &Sandbox, file: &std::path::Path) -> std::process::Child {
    let child = spawn_run(sb, file, &[]);
    assert!(
        wait_for_event(sb, "fault_verified", Duration::from_secs(10)),
        "the fault was not verified within 10s"
    );
    child
}

/// `faultline status` reports nothing pending (within 3s).
fn assert_nothing_pending(sb: &Sandbox) {
    assert!(
        wait_until(Duration::from_secs(3), || sb.status().status.code()
            == Some(0)),
        "{}",
        text(&sb.status())
    );
}

fn wait_for_event(sb: &Sandbox, event: &str, timeout: Duration) -> bool {
    let p = sb.path().join("events.jsonl");
    let needle = format!("\"event\":\"{event}\"");
    wait_until(timeout, || {
        std::fs::read_to_string(&p).is_ok_and(|s| s.contains(&needle))
    })
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

fn watchdog_pid(sb: &Sandbox) -> Option<i32> {
    let runs = sb.state_dir().join("runs");
    for e in std::fs::read_dir(runs).ok()? {
        let p = e.ok()?.path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            for line in std::fs::read_to_string(&p).ok()?.lines() {
                let v: serde_json::Value = serde_json::from_str(line).ok()?;
                if v["type"] == "watchdog" {
                    return v["pid"].as_i64().map(|p| p as i32);
                }
            }
        }
    }
    None
}

#[test]
fn abort_resumes_the_paused_process() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let target = sleeper(120);
    // The server breaks as soon as the fault is in place: the abort fires.
    let abort = format!(
        "abort:\n  - probe: web\n    consecutive_failures: 1\nrollbacks:\n  - run: [rm, -f, \"{}\"]",
        srv.fail_flag.display()
    );
    let f = sb.write(
        "e.yaml",
        &pause_experiment(&srv.url(), target.pid(), "30s", &abort),
    );
    let child = spawn_until_verified(&sb, &f);
    assert_eq!(
        proc_state(target.pid()),
        Some('T'),
        "paused during the fault"
    );
    std::fs::write(&srv.fail_flag, "").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_ne!(
        proc_state(target.pid()),
        Some('T'),
        "resumed by the rollback"
    );
    let j = sb.journal();
    assert_eq!(j["faults"][0]["rolled_back"], true);
    assert!(j["faults"][0]["verified"].as_str().unwrap().contains("T"));
    assert!(j["timings"]["time_to_abort_ms"].as_f64().is_some());
    assert_eq!(
        j["rollbacks"][0]["ok"], true,
        "user rollbacks run after an abort"
    );
}

fn interrupted_by(sig: nix::sys::signal::Signal, code: i32) {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let target = sleeper(120);
    let f = sb.write(
        "e.yaml",
        &pause_experiment(&srv.url(), target.pid(), "30s", ""),
    );
    let child = spawn_until_verified(&sb, &f);
    assert_eq!(proc_state(target.pid()), Some('T'));
    signal(child.id() as i32, sig);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(code), "{sig}: {}", text(&o));
    assert_ne!(
        proc_state(target.pid()),
        Some('T'),
        "{sig}: resumed before exit"
    );
    assert_eq!(sb.journal()["outcome"]["verdict"], "interrupted");
    assert_eq!(
        sb.status().status.code(),
        Some(0),
        "nothing pending after {sig}"
    );
}

#[test]
fn sigint_rolls_back_and_exits_130() {
    interrupted_by(nix::sys::signal::Signal::SIGINT, 130);
}

#[test]
fn sigterm_rolls_back_and_exits_143() {
    interrupted_by(nix::sys::signal::Signal::SIGTERM, 143);
}

#[test]
fn sighup_rolls_back_and_exits_129() {
    interrupted_by(nix::sys::signal::Signal::SIGHUP, 129);
}

#[test]
fn a_panic_rolls_back_before_exiting() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let target = sleeper(120);
    let f = sb.write(
        "e.yaml",
        &pause_experiment(&srv.url(), target.pid(), "30s", ""),
    );
    let o = spawn_run(&sb, &f, &[("FAULTLINE_TEST_PANIC_AT", "injected")])
        .wait_with_output()
        .unwrap();
    assert_eq!(o.status.code(), Some(70), "{}", text(&o));
    assert!(text(&o).contains("rolling back"), "{}", text(&o));
    assert_ne!(proc_state(target.pid()), Some('T'));
    assert_eq!(sb.journal()["outcome"]["verdict"], "internal");
    assert_eq!(sb.status().status.code(), Some(0), "{}", text(&sb.status()));
}

#[test]
fn sigkill_of_the_runner_mid_fault_is_undone_by_the_watchdog() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let target = sleeper(120);
    let f = sb.write(
        "e.yaml",
        &pause_experiment(&srv.url(), target.pid(), "60s", ""),
    );
    let mut child = spawn_until_verified(&sb, &f);
    assert_eq!(proc_state(target.pid()), Some('T'));
    signal(child.id() as i32, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
    let t = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(2), || proc_state(target.pid())
            != Some('T')),
        "the watchdog resumed the process within 2s"
    );
    eprintln!(
        "watchdog restored the state {:?} after the runner died",
        t.elapsed()
    );
    assert_nothing_pending(&sb);
}

#[test]
fn when_the_watchdog_dies_too_recover_restores_and_is_harmless_twice() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let target = sleeper(120);
    let f = sb.write(
        "e.yaml",
        &pause_experiment(&srv.url(), target.pid(), "60s", ""),
    );
    let mut child = spawn_until_verified(&sb, &f);
    let wd = watchdog_pid(&sb).expect("the watchdog registered itself");
    signal(wd, nix::sys::signal::Signal::SIGKILL);
    signal(child.id() as i32, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        proc_state(target.pid()),
        Some('T'),
        "nobody rolled back yet"
    );
    let st = sb.status();
    assert_eq!(st.status.code(), Some(1), "{}", text(&st));
    assert!(text(&st).contains("process_pause"));
    let r = sb.cmd().arg("recover").output().unwrap();
    assert_eq!(r.status.code(), Some(0), "{}", text(&r));
    assert!(wait_until(Duration::from_secs(2), || proc_state(
        target.pid()
    ) != Some('T')));
    let again = sb.cmd().arg("recover").output().unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(sb.status().status.code(), Some(0));
}

#[test]
fn a_stuck_runner_is_rolled_back_by_the_watchdog_at_the_deadline() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let target = sleeper(120);
    let exp = pause_experiment(&srv.url(), target.pid(), "3s", "")
        .replace("max_duration: 2m", "max_duration: 4s");
    let f = sb.write("e.yaml", &exp);
    let mut child = spawn_run(&sb, &f, &[]);
    let t0 = std::time::Instant::now();
    assert!(wait_for_event(
        &sb,
        "fault_verified",
        Duration::from_secs(10)
    ));
    // The runner freezes with the fault active.
    signal(child.id() as i32, nix::sys::signal::Signal::SIGSTOP);
    assert!(
        wait_until(Duration::from_secs(10), || proc_state(target.pid())
            != Some('T')),
        "the watchdog resumed the target at the deadline"
    );
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(3),
        "not before the deadline ({waited:?})"
    );
    assert_eq!(
        proc_state(child.id() as i32),
        Some('T'),
        "while the runner is still stuck"
    );
    signal(child.id() as i32, nix::sys::signal::Signal::SIGCONT);
    let _ = child.wait();
    assert_nothing_pending(&sb);
}

#[test]
fn a_second_run_on_the_same_target_refuses_naming_the_first() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let target = sleeper(120);
    let f = sb.write(
        "e.yaml",
        &pause_experiment(&srv.url(), target.pid(), "30s", ""),
    );
    let first = spawn_until_verified(&sb, &f);
    let journal = std::fs::read_to_string(sb.path().join("events.jsonl")).unwrap();
    let first_id: serde_json::Value =
        serde_json::from_str(journal.lines().next().unwrap()).unwrap();
    let first_id = first_id["run_id"].as_str().unwrap().to_string();
    let second = sb
        .cmd()
        .arg("run")
        .arg(&f)
        .arg("--no-journal")
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(69), "{}", text(&second));
    assert!(text(&second).contains(&first_id), "{}", text(&second));
    signal(first.id() as i32, nix::sys::signal::Signal::SIGINT);
    let o = first.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130));
    assert_ne!(proc_state(target.pid()), Some('T'));
}

#[test]
fn a_second_ctrl_c_stops_waiting_for_a_slow_probe() {
    let sb = Sandbox::new();
    let exp = r#"
title: slow probe
hypothesis: h
steady_state:
  probes:
    - name: slow
      command: {run: [sleep, "30"]}
      timeout: 40s
method:
  - pause: 1s
"#;
    let f = sb.write("e.yaml", exp);
    let child = spawn_run(&sb, &f, &[]);
    assert!(wait_for_event(
        &sb,
        "phase_started\",\"phase\":\"before",
        Duration::from_secs(10)
    ));
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id() as i32;
    signal(pid, nix::sys::signal::Signal::SIGINT);
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        proc_state(pid).is_some_and(|s| s != 'Z'),
        "the first Ctrl-C waits for the in-flight sample"
    );
    let t = Instant::now();
    signal(pid, nix::sys::signal::Signal::SIGINT);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the second Ctrl-C did not wait ({:?})",
        t.elapsed()
    );
    let events = std::fs::read_to_string(sb.path().join("events.jsonl")).unwrap();
    assert_eq!(events.matches("\"event\":\"interrupted\"").count(), 2);
}
