//! The JSON journal survives the runner: a runner SIGKILLed in the middle of
//! the method leaves a valid journal marked unfinished, the watchdog marks it
//! as ended by it with what it restored, and `faultline report` renders it.
//! Also the wording a user reads about a run: `process_kill` is irreversible,
//! a probe that never failed "held throughout", and the timings line agrees
//! with the fault table on the rollback time. Real processes, no root needed.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use support::*;

fn experiment(url: &str, fault: &str, duration: &str) -> String {
    format!(
        r#"
title: journal test
hypothesis: the web server keeps answering
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
method:
  - name: the fault
    fault:
{fault}
    duration: {duration}
"#
    )
}

fn read_journal(sb: &Sandbox) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(sb.path().join("journal.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_runner_killed_mid_method_leaves_a_partial_journal_the_watchdog_marks() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let target = sleeper(120);
    let fault = format!(
        "      process_pause:\n        target: {{pid: {}}}",
        target.pid()
    );
    let f = sb.write("e.yaml", &experiment(&srv.url(), &fault, "60s"));
    let mut child = sb
        .cmd()
        .arg("run")
        .arg(&f)
        .args(["--journal", "journal.json", "--events", "events.jsonl"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let kill_on_failure = scopeguard(child.id() as i32);
    // While the run goes on, the journal is already valid and says the
    // method is in progress (written at the injection's phase boundary).
    assert!(
        wait_until(Duration::from_secs(20), || read_journal(&sb).is_some_and(
            |j| j["last_phase"] == "method" && j["faults"][0]["verified"].is_string()
        )),
        "a partial journal during the method: {:?}",
        std::fs::read_to_string(sb.path().join("journal.json"))
    );
    assert_eq!(proc_state(target.pid()), Some('T'));
    let live = read_journal(&sb).unwrap();
    assert_eq!(live["complete"], false);
    assert_eq!(mode(&sb.path().join("journal.json")), 0o600);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
    // Reaped: its pid may be reused, so it must not be signalled again.
    std::mem::forget(kill_on_failure);
    assert!(
        wait_until(Duration::from_secs(5), || proc_state(target.pid())
            != Some('T')),
        "the watchdog resumed the process"
    );
    assert!(
        wait_until(Duration::from_secs(5), || read_journal(&sb)
            .is_some_and(|j| j["ended_by"].is_object())),
        "the watchdog marked the journal: {:?}",
        std::fs::read_to_string(sb.path().join("journal.json"))
    );
    let j = read_journal(&sb).unwrap();
    assert_eq!(j["complete"], false, "{j:#}");
    assert_eq!(j["ended_by"]["by"], "watchdog", "{j:#}");
    assert_eq!(j["outcome"]["verdict"], "interrupted", "{j:#}");
    let restored = j["ended_by"]["restored"].to_string();
    let resume = format!("kill -CONT {}", target.pid());
    assert!(restored.contains(&resume), "{restored}");
    assert!(
        j["ended_by"]["reason"]
            .as_str()
            .unwrap()
            .contains("died during the method phase"),
        "{j:#}"
    );
    assert_eq!(j["faults"][0]["rolled_back"], true, "{j:#}");
    assert_eq!(mode(&sb.path().join("journal.json")), 0o600);
    // No temporary file is left beside the journal.
    let names: Vec<String> = std::fs::read_dir(sb.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with(".tmp")),
        "temporary files left: {names:?}"
    );
    // The watchdog's log is private too.
    let logs: Vec<_> = std::fs::read_dir(sb.state_dir().join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".watchdog.log"))
        .collect();
    for l in &logs {
        assert_eq!(mode(l), 0o600, "{}", l.display());
    }

    // `faultline report` renders it, saying the run did not finish and why.
    let r = sb.cmd().args(["report", "journal.json"]).output().unwrap();
    assert_eq!(r.status.code(), Some(0), "{}", text(&r));
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(
        out.contains("UNFINISHED (ended by the watchdog): the runner (pid"),
        "{out}"
    );
    assert!(
        out.contains("Unfinished: the runner did not end this run"),
        "{out}"
    );
    assert!(out.contains(&format!("✓ restored: {resume}")), "{out}");
    let md = sb
        .cmd()
        .args(["report", "journal.json", "--format", "markdown"])
        .output()
        .unwrap();
    assert_eq!(md.status.code(), Some(0), "{}", text(&md));
    let md = String::from_utf8_lossy(&md.stdout);
    assert!(md.contains("This run did not finish"), "{md}");
    assert!(md.contains(&format!("restored: {resume}")), "{md}");
    assert_eq!(sb.status().status.code(), Some(0), "nothing pending");
}

#[test]
fn process_kill_is_irreversible_and_a_probe_that_never_failed_held_throughout() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let target = sleeper(120);
    let fault = format!(
        "      process_kill:\n        target: {{pid: {}}}\n        signal: SIGKILL",
        target.pid()
    );
    let f = sb.write("e.yaml", &experiment(&srv.url(), &fault, "300ms"));
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("– irreversible"), "{out}");
    assert!(out.contains("(killed processes are not restored)"), "{out}");
    assert!(!out.contains("rolled back"), "{out}");
    assert!(out.contains("held throughout"), "{out}");
    assert!(!out.contains("recovered"), "{out}");
    // The live view (stderr) does not call the fault's end a rollback either.
    let live = String::from_utf8_lossy(&o.stderr);
    assert!(
        live.contains("irreversible, killed processes are not restored"),
        "{live}"
    );
    assert!(!live.contains("rolled back ("), "{live}");
    let j = sb.journal();
    assert!(j.get("complete").is_none(), "a complete journal: {j:#}");
    assert_eq!(j["faults"][0]["irreversible"], true, "{j:#}");
    let md = std::fs::read_to_string(sb.path().join("report.md")).unwrap();
    assert!(
        md.contains("irreversible: killed processes are not restored"),
        "{md}"
    );
    assert!(!md.contains("✅ rolled back"), "{md}");
    assert!(md.contains("`web` held throughout"), "{md}");
    assert!(!md.contains("recovered"), "{md}");
}

#[test]
fn the_timings_line_and_the_fault_table_agree_on_the_rollback_time() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let target = sleeper(120);
    let fault = format!(
        "      process_pause:\n        target: {{pid: {}}}",
        target.pid()
    );
    let f = sb.write("e.yaml", &experiment(&srv.url(), &fault, "300ms"));
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j = sb.journal();
    let fault_ms = j["faults"][0]["rollback_ms"].as_f64().unwrap();
    let total = j["timings"]["rollback_ms"].as_f64().unwrap();
    assert_eq!(fault_ms, total, "{j:#}");
    let shown = faultline::report::summary::fmt_ms(fault_ms);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("took {shown}")), "{out}");
    assert!(out.contains(&format!("rollback {shown} ·")), "{out}");
}

/// SIGKILLs the runner if the test fails before it does (no stray run).
struct KillOnDrop(i32);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
fn scopeguard(pid: i32) -> KillOnDrop {
    KillOnDrop(pid)
}
