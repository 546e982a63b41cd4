//! `faultline history`: journals of real runs (a process_pause on a real
//! `sleep`, a command probe reading its state) and crafted ones (partial,
//! ended by the watchdog, stopped, Chaos Toolkit format, malformed, huge, a
//! FIFO), grouped per experiment, with the resilience score and its inputs
//! checked against a hand computation from the journals.

mod support;

use serde_json::{json, Value};
use std::path::Path;
use support::*;

/// A pause of the sleeper `pid` for `pause`, probed by a command that fails
/// while the process is stopped.
fn pause_experiment(pid: i32, pause: &str, abort: bool) -> String {
    let abort = if abort {
        "abort:\n  - probe: resumed\n    consecutive_failures: 1\n"
    } else {
        ""
    };
    format!(
        r#"title: sleeper survives a pause
hypothesis: the sleeper runs again after the pause
limits:
  max_duration: 1m
steady_state:
  interval: 100ms
  probes:
    - name: resumed
      command:
        run: [sh, -c, "! grep -q 'T (stopped)' /proc/{pid}/status"]
      timeout: 2s
      before: {{samples: 1}}
      after: {{within: 5s, successes: 1}}
{abort}method:
  - name: pause the sleeper
    fault:
      process_pause:
        target: {{pid: {pid}}}
    duration: {pause}
"#
    )
}

fn run_into(sb: &Sandbox, exp: &Path, journal: &str) -> std::process::Output {
    sb.cmd()
        .arg("run")
        .arg(exp.file_name().unwrap()) // as a user types it, relative
        .args(["--yes", "--quiet", "--journal", journal])
        .output()
        .unwrap()
}

fn history(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    sb.cmd().arg("history").args(args).output().unwrap()
}

fn history_json(sb: &Sandbox, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["--format", "json"]);
    let o = history(sb, &a);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Nearest-rank percentile, as docs/history.md defines it.
fn nearest_rank(mut v: Vec<f64>, p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

fn experiment_titled<'a>(h: &'a Value, title: &str) -> &'a Value {
    h["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["title"] == title)
        .unwrap_or_else(|| panic!("no experiment {title} in {h:#}"))
}

#[test]
fn real_runs_give_counts_times_and_the_score() {
    let sb = Sandbox::new();
    let target = sleeper(300);
    std::fs::create_dir(sb.path().join("j")).unwrap();
    let exp = sb.write(
        "pause.yaml",
        &pause_experiment(target.pid(), "600ms", false),
    );
    for (i, want) in [(1, 0), (2, 0)] {
        let o = run_into(&sb, &exp, &format!("j/run{i}.json"));
        assert_eq!(o.status.code(), Some(want), "{}", text(&o));
    }
    // The same file, now with an abort condition: the first failing sample
    // of the paused sleeper aborts the run.
    std::fs::write(&exp, pause_experiment(target.pid(), "5s", true)).unwrap();
    let o = run_into(&sb, &exp, "j/run3.json");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_ne!(proc_state(target.pid()), Some('T'), "rolled back");

    // A second experiment that injects nothing: a run, not counted.
    let noop = pause_experiment(target.pid(), "1s", false)
        .replace("title: sleeper survives a pause", "title: nothing injected");
    let noop = format!(
        "{}method:\n  - pause: 200ms\n",
        &noop[..noop.find("method:").unwrap()]
    );
    let other = sb.write("noop.yaml", &noop);
    let o = run_into(&sb, &other, "j/run4.json");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let js: Vec<Value> = (1..=3)
        .map(|i| read(&sb.path().join(format!("j/run{i}.json"))))
        .collect();
    let h = history_json(&sb, &["j"]);
    assert_eq!(h["journals_read"], 4, "{h:#}");
    assert_eq!(h["skipped"].as_array().unwrap().len(), 0);
    assert_eq!(h["experiments"].as_array().unwrap().len(), 2);

    let e = experiment_titled(&h, "sleeper survives a pause");
    assert_eq!(e["file"], "pause.yaml");
    assert_eq!(e["runs"], 3);
    assert_eq!(e["verdicts"], "HHA");
    assert_eq!(
        e["versions"].as_array().unwrap().len(),
        2,
        "the file changed once"
    );
    assert_eq!(e["last_run"], js[2]["started_at"]);
    // Score: 2 held runs recovered by themselves, 1 abort.
    let s = &e["score"];
    assert_eq!(s["automatic"], 2, "{s:#}");
    assert_eq!(s["interventions"], 1);
    assert_eq!(s["by_kind"]["aborted"], 1);
    assert_eq!(s["not_counted"], 0);
    let pct = s["percent"].as_f64().unwrap();
    assert!((pct - 200.0 / 3.0).abs() < 1e-9, "{pct}");

    // Time to detect and to recover: p50/p95 of the journals' own timings.
    for (field, key) in [
        ("time_to_detect_ms", "time_to_detect_ms"),
        ("time_to_recover_ms", "time_to_recover_ms"),
    ] {
        let v: Vec<f64> = js
            .iter()
            .filter_map(|j| j["timings"][key].as_f64())
            .collect();
        assert_eq!(e[field]["runs"], v.len(), "{field}");
        assert_eq!(
            e[field]["p50"].as_f64(),
            nearest_rank(v.clone(), 50.0),
            "{field}"
        );
        assert_eq!(e[field]["p95"].as_f64(), nearest_rank(v, 95.0), "{field}");
    }
    // The aborted run saw the sleeper stopped: at least that detection.
    assert!(e["time_to_detect_ms"]["runs"].as_u64().unwrap() >= 1);

    // The probe's trend: first and last run's `during` results.
    let p = &e["probes"][0];
    assert_eq!(p["name"], "resumed");
    let during = |j: &Value| j["probes"][0]["during"].clone();
    let with_samples: Vec<&Value> = js
        .iter()
        .filter(|j| during(j)["samples"].as_u64().unwrap() > 0)
        .collect();
    assert_eq!(p["runs"], with_samples.len());
    let first = during(with_samples[0]);
    let last = during(with_samples.last().unwrap());
    assert_eq!(p["first"]["p95_ms"], first["latency_ms"]["p95"]);
    assert_eq!(p["last"]["p95_ms"], last["latency_ms"]["p95"]);
    let ratio = |d: &Value| d["successes"].as_f64().unwrap() / d["samples"].as_f64().unwrap();
    assert!((p["last"]["success"].as_f64().unwrap() - ratio(&last)).abs() < 1e-9);

    let n = experiment_titled(&h, "nothing injected");
    assert_eq!(n["runs"], 1);
    assert_eq!(n["verdicts"], "H");
    assert_eq!(n["score"]["not_counted"], 1);
    assert!(n["score"]["percent"].is_null());

    // The table and Markdown say the same.
    let o = history(&sb, &["j"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = String::from_utf8(o.stdout).unwrap();
    assert!(t.contains("HHA"), "{t}");
    assert!(t.contains("67% (2/3)"), "{t}");
    assert!(t.contains("1 aborted"), "{t}");
    let o = history(&sb, &["j", "--format", "markdown"]);
    let m = String::from_utf8(o.stdout).unwrap();
    assert!(
        m.contains("| sleeper survives a pause | pause.yaml | 3 | `HHA` |"),
        "{m}"
    );
}

/// A faultline journal from the fixture, changed by `edit`.
fn crafted(edit: impl FnOnce(&mut Value)) -> String {
    let mut j: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-held.json"),
        )
        .unwrap(),
    )
    .unwrap();
    j["experiment"]["title"] = json!("crafted");
    j["experiment"]["file"] = json!("crafted.yaml");
    edit(&mut j);
    serde_json::to_string_pretty(&j).unwrap()
}

fn at(j: &mut Value, day: u32) {
    j["started_at"] = json!(format!("2026-12-{day:02}T10:00:00Z"));
    j["run_id"] = json!(format!("run-{day}"));
}

/// A Chaos Toolkit journal as chaoslib writes it (naive UTC times).
fn ctk_journal(status: &str, after_met: bool, rollback: &str) -> String {
    let probe = |end: &str, met: bool| {
        json!({"activity": {"type": "probe", "name": "api-up"}, "status": "succeeded",
               "start": "2026-12-03T10:00:01.000000", "end": end, "duration": 0.05,
               "tolerance_met": met, "output": 200})
    };
    serde_json::to_string(&json!({
        "chaoslib-version": "1.42.0",
        "platform": "Linux",
        "node": "h",
        "experiment": {"title": "ctk api", "description": "x", "method": []},
        "start": "2026-12-03T10:00:00.000000",
        "status": status,
        "deviated": !after_met,
        "steady_states": {
            "before": {"steady_state_met": true, "probes": []},
            "after": {"steady_state_met": after_met, "probes": []},
            "during": [
                {"steady_state_met": true, "probes": [probe("2026-12-03T10:00:01.100000", true)]},
                {"steady_state_met": false, "probes": [probe("2026-12-03T10:00:01.350000", false)]}
            ]
        },
        "run": [{"activity": {"type": "action", "name": "kill"}, "status": "succeeded",
                 "start": "2026-12-03T10:00:01.000000", "end": "2026-12-03T10:00:01.010000"}],
        "rollbacks": [{"activity": {"type": "action", "name": "restart"}, "status": rollback}],
        "end": "2026-12-03T10:00:05.000000",
        "duration": 5.0
    }))
    .unwrap()
}

#[test]
fn crafted_journals_count_as_the_formula_says() {
    let sb = Sandbox::new();
    let d = sb.path().join("j");
    std::fs::create_dir(&d).unwrap();
    let w = |name: &str, s: &str| std::fs::write(d.join(name), s).unwrap();
    // Held, automatic (the fixture injects a fault, every probe recovered).
    w("a-held.json", &crafted(|j| at(j, 1)));
    // Stopped with `faultline stop`.
    w(
        "b-stop.json",
        &crafted(|j| {
            at(j, 2);
            j["outcome"]["verdict"] = json!("aborted");
            j["abort"] = json!({"condition": "stopped by alice via faultline stop",
                "probe": "", "at_ms": 1.0, "reason": "requested at 10:00:01 UTC"});
        }),
    );
    // The runner died; the watchdog rolled back.
    w(
        "c-watchdog.json",
        &crafted(|j| {
            at(j, 3);
            j["complete"] = json!(false);
            j["outcome"]["verdict"] = json!("interrupted");
            j["ended_by"] = json!({"by": "watchdog", "at": "2026-12-03T10:01:00Z",
                "reason": "the runner (pid 1) died", "restored": ["tc qdisc del ..."]});
        }),
    );
    // Partial and unmarked: still running, or died without a watchdog.
    w(
        "d-partial.json",
        &crafted(|j| {
            at(j, 4);
            j["complete"] = json!(false);
            j["outcome"]["verdict"] = json!("interrupted");
        }),
    );
    // Rollback failed: someone ran `faultline recover`.
    w(
        "e-rollback.json",
        &crafted(|j| {
            at(j, 5);
            j["outcome"]["verdict"] = json!("rollback_failed");
            j["manual_recovery"] = json!(["tc qdisc del dev veth0 root"]);
        }),
    );
    // Deviated but recovered after rollback: automatic.
    w(
        "f-deviated.json",
        &crafted(|j| {
            at(j, 6);
            j["outcome"]["verdict"] = json!("deviated");
            j["experiment"]["title"] = json!("crafted\x1b[31m red");
        }),
    );
    // Chaos Toolkit journals: one recovered, one whose rollback failed.
    w("g-ctk.json", &ctk_journal("completed", true, "succeeded"));
    w("h-ctk.json", &ctk_journal("completed", true, "failed"));
    // Not journals.
    w("m-broken.json", "{\"schema_version\": 2, \"run_id\": ");
    w(
        "n-badfield.json",
        &crafted(|j| j["outcome"]["verdict"] = json!("maybe")),
    );
    w(
        "o-experiment.json",
        r#"{"title": "a CTK experiment", "method": []}"#,
    );
    // 65 MiB of zero bytes: streamed (past 8 MiB), and not JSON.
    let huge = std::fs::File::create(d.join("p-huge.json")).unwrap();
    huge.set_len(65 * 1024 * 1024).unwrap();
    // A long run's journal (over 8 MiB with every sample) is streamed and
    // counted like any other.
    w(
        "r-long.json",
        &crafted(|j| {
            at(j, 7);
            j["experiment"]["title"] = json!("long game day");
            let sample = j["probes"][0]["samples"][0].clone();
            j["probes"][0]["samples"] = Value::Array(vec![sample; 120_000]);
        }),
    );
    assert!(std::fs::metadata(d.join("r-long.json")).unwrap().len() > 8 * 1024 * 1024);
    nix::unistd::mkfifo(&d.join("q-fifo.json"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    w("notes.txt", "not looked at");

    let o = history(&sb, &["j", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let h: Value = serde_json::from_slice(&o.stdout).unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 5, "one line per skipped file: {err}");
    for (f, why) in [
        ("m-broken.json", "not valid JSON"),
        ("n-badfield.json", "outcome.verdict"),
        ("o-experiment.json", "not a journal"),
        ("p-huge.json", "not valid JSON"),
        ("q-fifo.json", "not a regular file"),
    ] {
        assert!(
            err.lines().any(|l| l.contains(f) && l.contains(why)),
            "{f}: {why} in {err}"
        );
    }
    assert_eq!(h["journals_read"], 9);
    assert_eq!(experiment_titled(&h, "long game day")["verdicts"], "H");
    assert_eq!(h["skipped"].as_array().unwrap().len(), 5);

    let c = experiment_titled(&h, "crafted");
    assert_eq!(c["runs"], 5);
    assert_eq!(c["verdicts"], "HAX?R");
    let s = &c["score"];
    assert_eq!(s["automatic"], 1, "{s:#}");
    assert_eq!(s["interventions"], 3);
    assert_eq!(s["by_kind"]["stopped"], 1);
    assert_eq!(s["by_kind"]["watchdog"], 1);
    assert_eq!(s["by_kind"]["rollback_failed"], 1);
    assert_eq!(s["by_kind"]["aborted"], 0);
    assert_eq!(s["not_counted"], 1, "the unmarked partial journal");
    assert_eq!(s["percent"], 25.0);

    let red = experiment_titled(&h, "crafted\x1b[31m red");
    assert_eq!(red["verdicts"], "D");
    assert_eq!(red["score"]["automatic"], 1);

    let k = experiment_titled(&h, "ctk api");
    assert_eq!(k["runs"], 2);
    assert_eq!(k["journal_formats"], json!(["chaostoolkit"]));
    assert_eq!(k["verdicts"], "HH");
    assert_eq!(k["score"]["automatic"], 1);
    assert_eq!(k["score"]["by_kind"]["rollback_failed"], 1);
    // From the method's start (10:00:01.000) to the failing check's end (.350).
    assert_eq!(k["time_to_detect_ms"]["p50"], 350.0);
    assert_eq!(k["probes"][0]["name"], "api-up");
    assert_eq!(k["probes"][0]["last"]["success"], 0.5);
    assert_eq!(k["probes"][0]["last"]["p95_ms"], 50.0);

    // The table escapes what journals say.
    let o = history(&sb, &["j"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!o.stdout.contains(&0x1b), "raw escape in the table");
    let t = String::from_utf8(o.stdout).unwrap();
    assert!(t.contains("crafted\\x1b[31m red"), "{t}");
    assert!(t.contains("25% (1/4)"), "{t}");
}

#[test]
fn directories_files_and_usage_errors() {
    let sb = Sandbox::new();
    let d = sb.path().join("j");
    std::fs::create_dir_all(d.join("deeper")).unwrap();
    std::fs::write(d.join("one.json"), crafted(|j| at(j, 1))).unwrap();
    std::fs::write(d.join("deeper/two.json"), crafted(|j| at(j, 2))).unwrap();

    assert_eq!(history_json(&sb, &["j"])["journals_read"], 1);
    assert_eq!(history_json(&sb, &["j", "--recursive"])["journals_read"], 2);
    assert_eq!(
        history_json(&sb, &["j/deeper/two.json", "j/one.json"])["experiments"][0]["verdicts"],
        "HH"
    );
    // The current directory by default.
    std::fs::write(sb.path().join("three.json"), crafted(|j| at(j, 3))).unwrap();
    assert_eq!(history_json(&sb, &[])["journals_read"], 1);

    let o = history(&sb, &["missing-dir"]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(text(&o).contains("cannot read missing-dir"), "{}", text(&o));
    let o = history(&sb, &["j/deeper/../../j/deeper/nothing.json"]);
    assert_eq!(o.status.code(), Some(64));
    std::fs::create_dir(sb.path().join("empty")).unwrap();
    let o = history(&sb, &["empty"]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(text(&o).contains("no journal could be read in empty"));

    let out = sb.path().join("h.md");
    let o = history(
        &sb,
        &["j", "--format", "markdown", "-o", out.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .starts_with("# Experiment history\n"));
}

/// A Chaos Toolkit experiment run by faultline with `--journal-format
/// chaostoolkit`: its rollback action succeeds or fails.
#[test]
fn real_chaostoolkit_journals_are_read() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.path().join("j")).unwrap();
    let exp = |rollback: &str| {
        json!({"title": "ctk tiny", "description": "d",
            "steady-state-hypothesis": {"title": "ok", "probes": [
                {"type": "probe", "name": "true-probe", "tolerance": 0,
                 "provider": {"type": "process", "path": "true"}}]},
            "method": [{"type": "action", "name": "nap",
                "provider": {"type": "process", "path": "sleep", "arguments": "0.1"}}],
            "rollbacks": [{"type": "action", "name": "fix",
                "provider": {"type": "process", "path": rollback}}]})
        .to_string()
    };
    for (i, rb) in [(1, "true"), (2, "false")] {
        let f = sb.write("c.json", &exp(rb));
        let o = sb
            .cmd()
            .arg("run")
            .arg(f.file_name().unwrap())
            .args([
                "--yes",
                "--quiet",
                "--journal-format",
                "chaostoolkit",
                "--journal",
            ])
            .arg(format!("j/ctk{i}.json"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    let h = history_json(&sb, &["j"]);
    let e = experiment_titled(&h, "ctk tiny");
    assert_eq!(e["journal_formats"], json!(["chaostoolkit"]));
    assert_eq!(e["runs"], 2);
    assert_eq!(e["verdicts"], "HH");
    assert_eq!(e["score"]["automatic"], 1);
    assert_eq!(e["score"]["by_kind"]["rollback_failed"], 1);
    assert_eq!(e["score"]["percent"], 50.0);
}
