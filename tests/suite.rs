//! `faultline run a.yaml b.yaml dir/` as a CI job runs it: no terminal,
//! `CI=true`, several real experiments (a local HTTP server, a real process
//! paused), one JUnit file read by a real JUnit consumer (Python's
//! junitparser), one summary table and the worst exit code.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::*;

/// An experiment probing `url`; `method` is the YAML of its steps.
fn experiment(title: &str, url: &str, during: &str, method: &str) -> String {
    format!(
        r#"
title: {title}
hypothesis: the server keeps answering
steady_state:
  interval: 100ms
  probes:
    - name: web
      http: {{url: "{url}"}}
      timeout: 1s
      before: {{samples: 2}}
      after: {{within: 3s, successes: 1}}
{during}
method:
{method}
"#
    )
}

fn held(url: &str) -> String {
    experiment("holds", url, "", "  - pause: 300ms")
}

/// Breaks the server for 600ms while the probe requires 100% success.
fn deviates(url: &str, flag: &Path) -> String {
    let flag = flag.display();
    experiment(
        "deviates",
        url,
        "      during: {min_success: 100%}",
        &format!(
            "  - command: {{run: [touch, \"{flag}\"]}}\n  - pause: 600ms\n  - command: {{run: [rm, -f, \"{flag}\"]}}"
        ),
    )
}

/// Writes `marker` if its method ever runs.
fn marks(url: &str, marker: &Path) -> String {
    experiment(
        "marks",
        url,
        "",
        &format!("  - command: {{run: [touch, \"{}\"]}}", marker.display()),
    )
}

/// Fails preflight: the probe's program is not installed (exit 69).
const MISSING_PROGRAM: &str = r#"
title: missing program
hypothesis: h
steady_state:
  probes:
    - name: cli
      command: {run: [definitely-not-installed-faultline-test]}
method:
  - pause: 1s
"#;

/// `faultline run ARGS...` as in CI: `CI=true`, no terminal.
fn ci_run(sb: &Sandbox, args: &[&str]) -> Output {
    sb.cmd()
        .env("CI", "true")
        .arg("run")
        .args(args)
        .output()
        .unwrap()
}

fn journals(sb: &Sandbox) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(sb.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("faultline-") && n.ends_with(".json")
        })
        .collect();
    v.sort();
    v
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The JUnit file as junitparser reads it: per suite its counts and per
/// case its classname and result kinds. None (after `skipped: ...`) when
/// junitparser is not installed.
fn junitparser(xml: &Path) -> Option<serde_json::Value> {
    let have = Command::new("python3")
        .args(["-c", "import junitparser"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        println!("skipped: junitparser not installed (pip install junitparser)");
        return None;
    }
    let script = r#"
import json, sys
from junitparser import JUnitXml
out = []
for suite in JUnitXml.fromfile(sys.argv[1]):
    cases = []
    for case in suite:
        cases.append({"name": case.name, "classname": case.classname,
                      "results": [type(r).__name__ for r in case.result]})
    out.append({"name": suite.name, "tests": suite.tests, "failures": suite.failures,
                "errors": suite.errors, "skipped": suite.skipped, "cases": cases})
print(json.dumps(out))
"#;
    let o = Command::new("python3")
        .args(["-c", script])
        .arg(xml)
        .output()
        .unwrap();
    assert!(o.status.success(), "junitparser failed: {}", text(&o));
    Some(serde_json::from_slice(&o.stdout).unwrap())
}

/// Result kinds of every case in a suite, e.g. ["Failure"] per case.
fn kinds(suite: &serde_json::Value, kind: &str) -> usize {
    suite["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["results"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| *r == kind)
                .count()
        })
        .sum()
}

#[test]
fn a_directory_and_files_run_in_order_with_one_junit_and_the_worst_exit_code() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let dir = sb.path().join("suite");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a-holds.yaml"), held(&srv.url())).unwrap();
    std::fs::write(
        dir.join("b-deviates.yml"),
        deviates(&srv.url(), &srv.fail_flag),
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not an experiment").unwrap();
    std::fs::write(dir.join(".hidden.yaml"), "not: valid").unwrap();
    let missing = sb.write("c-missing.yaml", MISSING_PROGRAM);
    let o = ci_run(
        &sb,
        &[
            dir.to_str().unwrap(),
            missing.to_str().unwrap(),
            "--junit",
            "junit.xml",
        ],
    );
    // Deviated (1) is worse than a missing precondition (69): a finding
    // about the system outranks an experiment that could not start.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    // One journal per experiment, none overwritten, in the order given.
    let js: Vec<serde_json::Value> = journals(&sb).iter().map(|p| read_json(p)).collect();
    assert_eq!(js.len(), 3, "{}", text(&o));
    let mut by_start = js.clone();
    by_start.sort_by_key(|j| j["started_at"].as_str().unwrap().to_string());
    let titles: Vec<&str> = by_start
        .iter()
        .map(|j| j["experiment"]["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["holds", "deviates", "missing program"]);
    let verdicts: Vec<&str> = by_start
        .iter()
        .map(|j| j["outcome"]["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["held", "deviated", "precondition"]);

    // The summary table names every experiment, its verdict, exit code and journal.
    let out = String::from_utf8_lossy(&o.stdout);
    let summary = &out[out.rfind("Summary").expect("a summary table")..];
    for (needle, what) in [
        ("a-holds.yaml", "first file"),
        ("b-deviates.yml", "second file"),
        ("c-missing.yaml", "third file"),
        ("HELD", "verdict"),
        ("DEVIATED", "verdict"),
        ("PRECONDITION MISSING", "verdict"),
        ("69", "exit code"),
        ("faultline-", "journal"),
    ] {
        assert!(summary.contains(needle), "{what} {needle}: {summary}");
    }
    assert!(!summary.contains("notes.txt") && !summary.contains(".hidden"));
    assert!(out.contains("3 experiments: exit 1"), "{out}");

    // The JUnit file, as a CI server's parser reads it.
    let Some(report) = junitparser(&sb.path().join("junit.xml")) else {
        return;
    };
    let suites = report.as_array().unwrap();
    assert_eq!(suites.len(), 3, "{report}");
    let names: Vec<&str> = suites.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["holds", "deviates", "missing program"]);
    for (s, stem) in suites.iter().zip(["a-holds", "b-deviates", "c-missing"]) {
        for c in s["cases"].as_array().unwrap() {
            assert_eq!(c["classname"], stem, "{s}");
        }
    }
    let (a, b, c) = (&suites[0], &suites[1], &suites[2]);
    assert_eq!(
        (a["failures"].as_u64(), a["errors"].as_u64()),
        (Some(0), Some(0)),
        "{a}"
    );
    // The deviation is one failure (the probe's during phase), no error.
    assert_eq!(kinds(b, "Failure"), 1, "{b}");
    assert_eq!(
        (b["failures"].as_u64(), b["errors"].as_u64()),
        (Some(1), Some(0)),
        "{b}"
    );
    let failed: Vec<&str> = b["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["results"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == "Failure")
        })
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["web / during"], "{b}");
    // The missing program is an error, and the phases that never ran are skipped.
    assert_eq!(kinds(c, "Error"), 1, "{c}");
    assert_eq!(
        (c["failures"].as_u64(), c["errors"].as_u64()),
        (Some(0), Some(1)),
        "{c}"
    );
    assert_eq!(kinds(c, "Skipped"), 3, "{c}");
    assert_eq!(c["skipped"].as_u64(), Some(3), "{c}");
}

#[test]
fn fail_fast_stops_at_the_first_experiment_that_did_not_hold() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let marker = sb.path().join("second-ran");
    let a = sb.write("a.yaml", &deviates(&srv.url(), &srv.fail_flag));
    let b = sb.write("b.yaml", &marks(&srv.url(), &marker));
    let o = ci_run(
        &sb,
        &[
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--fail-fast",
            "--junit",
            "junit.xml",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(!marker.exists(), "the second experiment did not run");
    assert_eq!(journals(&sb).len(), 1);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("NOT RUN"), "{out}");
    assert!(out.contains("--fail-fast"), "{out}");
    let Some(report) = junitparser(&sb.path().join("junit.xml")) else {
        return;
    };
    let second = &report[1];
    assert_eq!(second["skipped"].as_u64(), Some(1), "{report}");
    assert_eq!(second["cases"][0]["classname"], "b");

    // Without --fail-fast both run.
    let o = ci_run(&sb, &[a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(marker.exists(), "{}", text(&o));
}

#[test]
fn ctrl_c_rolls_back_and_stops_the_remaining_experiments() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let target = sleeper(120);
    let marker = sb.path().join("third-ran");
    let first = sb.write("1.yaml", &held(&srv.url()));
    // The second experiment runs in the same process as the first: its
    // Ctrl-C must still roll back (not kill the runner mid-fault).
    let second = sb.write(
        "2.yaml",
        &experiment(
            "pauses",
            &srv.url(),
            "",
            &format!(
                "  - name: pause the target\n    fault:\n      process_pause:\n        target: {{pid: {}}}\n    duration: 30s",
                target.pid()
            ),
        ),
    );
    let third = sb.write("3.yaml", &marks(&srv.url(), &marker));
    let child = sb
        .cmd()
        .env("CI", "true")
        .arg("run")
        .args([&first, &second, &third])
        .args(["--junit", "junit.xml", "--events", "events.jsonl"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let events = sb.path().join("events.jsonl");
    assert!(
        wait_until(Duration::from_secs(20), || {
            std::fs::read_to_string(&events)
                .is_ok_and(|s| s.contains("\"event\":\"fault_verified\""))
        }),
        "the second experiment's fault was not verified"
    );
    assert_eq!(
        proc_state(target.pid()),
        Some('T'),
        "paused by the second experiment"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert_ne!(proc_state(target.pid()), Some('T'), "resumed before exit");
    assert!(!marker.exists(), "the third experiment did not start");
    let ev = std::fs::read_to_string(&events).unwrap();
    let runs: std::collections::BTreeSet<String> = ev
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["run_id"].to_string())
        .collect();
    assert_eq!(runs.len(), 2, "events of two runs in one stream");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("INTERRUPTED") && out.contains("NOT RUN"),
        "{out}"
    );
    assert_eq!(sb.status().status.code(), Some(0), "nothing pending");
    let xml = std::fs::read_to_string(sb.path().join("junit.xml")).unwrap();
    assert_eq!(xml.matches("<testsuite ").count(), 3, "{xml}");
    if let Some(report) = junitparser(&sb.path().join("junit.xml")) {
        assert_eq!(report[0]["failures"].as_u64(), Some(0), "{report}");
        assert_eq!(
            report[1]["errors"].as_u64(),
            Some(1),
            "interrupted: {report}"
        );
        assert_eq!(report[2]["skipped"].as_u64(), Some(1), "{report}");
    }
}

#[test]
fn several_experiments_refuse_what_would_overwrite_or_fail_late() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let marker = sb.path().join("ran");
    let a = sb.write("a.yaml", &marks(&srv.url(), &marker));
    let b = sb.write("b.yaml", &held(&srv.url()));
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());

    for flag in ["--journal", "--markdown"] {
        let o = ci_run(&sb, &[a, b, flag, "out.file"]);
        assert_eq!(o.status.code(), Some(64), "{flag}: {}", text(&o));
        assert!(text(&o).contains(flag), "{}", text(&o));
        assert!(!marker.exists() && !sb.path().join("out.file").exists());
    }

    // An invalid file anywhere in the list: nothing runs.
    let bad = sb.write("z.yaml", "title: broken\nmethod: 3\n");
    let o = ci_run(&sb, &[a, b, bad.to_str().unwrap(), "--junit", "junit.xml"]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(text(&o).contains("z.yaml"), "{}", text(&o));
    assert!(!marker.exists(), "nothing ran before the invalid file");
    assert!(!sb.path().join("junit.xml").exists());

    // A directory without experiments.
    let empty = sb.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = ci_run(&sb, &[empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(text(&o).contains("no experiment file"), "{}", text(&o));
    assert!(journals(&sb).is_empty());
}

#[test]
fn validate_annotates_the_line_of_each_problem_for_github_and_gitlab() {
    let sb = Sandbox::new();
    let good = sb.write("good.yaml", &held("http://127.0.0.1:9/"));
    // The unknown field is on line 7, column 7.
    let bad = sb.write(
        "bad,one.yaml",
        "title: t\nhypothesis: h\nsteady_state:\n  probes:\n    - name: web\n      http: {url: \"http://127.0.0.1:9/\"}\n      htp: 1\nmethod:\n  - pause: 1s\n",
    );
    let validate = |format: &str| {
        sb.cmd()
            .args(["validate", "--format", format])
            .arg(&good)
            .arg(&bad)
            .output()
            .unwrap()
    };
    let o = validate("github");
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one annotation, for the bad file: {out}");
    let shown = bad.display().to_string().replace(',', "%2C");
    assert!(
        lines[0].starts_with(&format!("::error file={shown},line=7,col=7,title=")),
        "{out}"
    );
    assert!(lines[0].contains("htp"), "{out}");

    let o = validate("gitlab");
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let issues = v.as_array().unwrap();
    assert_eq!(issues.len(), 1, "{v}");
    assert_eq!(issues[0]["location"]["path"], bad.display().to_string());
    assert_eq!(issues[0]["location"]["lines"]["begin"], 7);
    assert!(issues[0]["description"].as_str().unwrap().contains("htp"));
    for key in ["check_name", "fingerprint", "severity"] {
        assert!(issues[0][key].is_string(), "{key}: {v}");
    }

    // All valid: no annotation, an empty report, exit 0.
    for (format, expected) in [("github", ""), ("gitlab", "[]\n")] {
        let o = sb
            .cmd()
            .args(["validate", "--format", format])
            .arg(&good)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout), expected);
    }
}

#[test]
fn the_journal_embeds_the_experiment_as_run_with_its_sha256_and_who_ran_it() {
    use sha2::Digest;
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let written = held(&srv.url());
    let f = sb.write("e.yaml", &written);
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The file changes after the run: the journal still has what ran.
    std::fs::write(&f, "changed").unwrap();
    let j = sb.journal();
    assert_eq!(j["experiment"]["source"], written.as_str());
    let sha: String = sha2::Sha256::digest(written.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(j["experiment"]["sha256"], sha.as_str());
    assert_eq!(
        j["user"]["uid"].as_u64(),
        Some(u64::from(nix::unistd::getuid().as_raw()))
    );
    assert_eq!(j["faultline_version"], env!("CARGO_PKG_VERSION"));
    assert!(!j["host"].as_str().unwrap().is_empty());

    // A credential written in the file is masked in the embedded text.
    let url = srv.url();
    let secret = held(&url).replace(
        &format!("http: {{url: \"{url}\"}}"),
        &format!("http: {{url: \"{url}\", headers: {{Authorization: \"Bearer s3cr3t-t0ken\"}}}}"),
    );
    assert!(secret.contains("s3cr3t-t0ken"));
    let f = sb.write("secret.yaml", &secret);
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let raw = std::fs::read_to_string(sb.path().join("journal.json")).unwrap();
    assert!(!raw.contains("s3cr3t-t0ken"), "{raw}");
    let j = sb.journal();
    assert!(j["experiment"]["source"]
        .as_str()
        .unwrap()
        .contains("Authorization"));
}
