//! Chaos Toolkit experiments run unchanged by the built binary, against a
//! real HTTP server on 127.0.0.1 and real processes.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};
use support::{text, FlagServer, Sandbox};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/chaostoolkit")
        .join(name)
}

/// A sandbox, a server, and the environment the fixtures read.
struct Ctk {
    sb: Sandbox,
    server: FlagServer,
}

impl Ctk {
    fn new() -> Ctk {
        let sb = Sandbox::new();
        let server = FlagServer::start(sb.path());
        Ctk { sb, server }
    }

    fn cmd(&self, args: &[&str]) -> Output {
        self.sb
            .cmd()
            .args(args)
            .env("CTK_TEST_BASE", self.server.url())
            .env("CTK_TEST_FLAG", &self.server.fail_flag)
            .env("CTK_TEST_OUT", self.sb.path())
            .env("CTK_TEST_TOKEN", "s3cret")
            .env("PYTHONPATH", fixture(""))
            .output()
            .unwrap()
    }

    /// `faultline run FIXTURE --journal-format chaostoolkit --journal ctk.json ...`.
    fn run(&self, name: &str, extra: &[&str]) -> Output {
        let f = fixture(name);
        let mut args = vec![
            "run",
            f.to_str().unwrap(),
            "--journal-format",
            "chaostoolkit",
            "--journal",
            "ctk.json",
        ];
        args.extend_from_slice(extra);
        self.cmd(&args)
    }

    fn journal(&self) -> serde_json::Value {
        let t = std::fs::read_to_string(self.sb.path().join("ctk.json")).expect("journal written");
        serde_json::from_str(&t).expect("journal is JSON")
    }

    fn out(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.sb.path().join(name))
            .ok()
            .map(|s| s.trim().to_string())
    }
}

fn have_python() -> bool {
    std::process::Command::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn every_fixture_but_the_missing_extension_validates() {
    let c = Ctk::new();
    let mut names = vec![
        "tolerance-scalar.json",
        "tolerance-list.yaml",
        "tolerance-range.json",
        "tolerance-regex.yaml",
        "tolerance-jsonpath.json",
        "realistic.yaml",
        "continuous.json",
    ];
    if have_python() {
        names.push("provider-python.json");
    }
    for n in names {
        let f = fixture(n);
        let o = c.cmd(&["validate", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{n}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stdout).starts_with("ok"), "{n}");
    }
}

#[test]
fn scalar_tolerance_holds_and_journal_has_ctk_fields() {
    let c = Ctk::new();
    let o = c.run("tolerance-scalar.json", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j = c.journal();
    for key in [
        "chaoslib-version",
        "platform",
        "node",
        "experiment",
        "start",
        "end",
        "duration",
        "status",
        "deviated",
        "steady_states",
        "run",
        "rollbacks",
    ] {
        assert!(j.get(key).is_some(), "journal lacks `{key}`: {j:#}");
    }
    assert_eq!(j["status"], "completed");
    assert_eq!(j["deviated"], false);
    assert_eq!(j["experiment"]["title"], "The service answers 200");
    let before = &j["steady_states"]["before"];
    assert_eq!(before["steady_state_met"], true);
    assert_eq!(before["probes"][0]["activity"]["name"], "service-answers");
    assert_eq!(before["probes"][0]["tolerance_met"], true);
    assert_eq!(j["steady_states"]["after"]["steady_state_met"], true);
    assert_eq!(j["run"][0]["activity"]["name"], "do-nothing");
    assert_eq!(j["run"][0]["status"], "succeeded");
}

#[test]
fn scalar_tolerance_not_met_before_injects_nothing() {
    let c = Ctk::new();
    std::fs::write(&c.server.fail_flag, "").unwrap();
    let o = c.run("tolerance-scalar.json", &[]);
    // faultline: exit 3 (Chaos Toolkit ends "completed" and exits 0 here).
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let j = c.journal();
    assert_eq!(j["steady_states"]["before"]["steady_state_met"], false);
    assert_eq!(
        j["steady_states"]["before"]["probes"][0]["tolerance_met"],
        false
    );
    assert_eq!(j["run"].as_array().unwrap().len(), 0, "{j:#}");
    assert_eq!(j["deviated"], false);
}

#[test]
fn list_tolerance_deviates_when_the_method_breaks_the_service() {
    let c = Ctk::new();
    let o = c.run("tolerance-list.yaml", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let j = c.journal();
    assert_eq!(j["deviated"], true);
    assert_eq!(j["status"], "completed");
    assert_eq!(j["steady_states"]["before"]["steady_state_met"], true);
    assert_eq!(j["steady_states"]["after"]["steady_state_met"], false);
    // The rollback ran (faultline's default: always) and repaired the service.
    assert_eq!(j["rollbacks"][0]["activity"]["name"], "repair-the-service");
    assert_eq!(j["rollbacks"][0]["status"], "succeeded");
    assert!(!c.server.fail_flag.exists());
}

#[test]
fn rollback_strategy_never_and_deviated() {
    let c = Ctk::new();
    let o = c.run("tolerance-list.yaml", &["--rollback-strategy", "never"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        c.server.fail_flag.exists(),
        "never: the rollback must not run"
    );
    assert_eq!(c.journal()["rollbacks"].as_array().unwrap().len(), 0);
    std::fs::remove_file(&c.server.fail_flag).unwrap();

    let o = c.run("tolerance-list.yaml", &["--rollback-strategy", "deviated"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(!c.server.fail_flag.exists(), "deviated: the rollback runs");
}

#[test]
fn range_tolerance_on_stdout_holds_and_fails_out_of_range() {
    let c = Ctk::new();
    let o = c.run("tolerance-range.json", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // --var overrides the configuration: 99 is out of [40, 50].
    let o = c.run("tolerance-range.json", &["--var", "depth=99"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let j = c.journal();
    assert_eq!(
        j["steady_states"]["before"]["probes"][0]["tolerance_met"],
        false
    );
    // A method probe runs and is recorded.
    let o = c.run("tolerance-range.json", &[]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(c.journal()["run"][0]["activity"]["name"], "look");
}

#[test]
fn var_file_json_and_yaml_set_configuration() {
    let c = Ctk::new();
    c.sb.write("v.json", r#"{"configuration": {"depth": "45"}}"#);
    let o = c.run("tolerance-range.json", &["--var-file", "v.json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    c.sb.write("v.yaml", "configuration:\n  depth: '7'\n");
    let o = c.run("tolerance-range.json", &["--var-file", "v.yaml"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}

#[test]
fn regex_tolerance_on_body_and_stderr() {
    let c = Ctk::new();
    let o = c.run("tolerance-regex.yaml", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The server answering "broken" no longer matches ^ok$.
    std::fs::write(&c.server.fail_flag, "").unwrap();
    let o = c.run("tolerance-regex.yaml", &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("does not match"),
        "{}",
        text(&o)
    );
}

#[test]
fn jsonpath_tolerance_expect_and_count() {
    let c = Ctk::new();
    let o = c.run("tolerance-jsonpath.json", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j = c.journal();
    assert_eq!(
        j["steady_states"]["before"]["probes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn python_provider_and_probe_tolerance() {
    if !have_python() {
        println!("skipped: python3 is not installed");
        return;
    }
    let c = Ctk::new();
    let o = c.run("provider-python.json", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j = c.journal();
    assert_eq!(j["steady_states"]["before"]["steady_state_met"], true);
    assert_eq!(j["run"][0]["status"], "succeeded");
    // The tolerance probe sees the http result: a 500 is not ok.
    std::fs::write(&c.server.fail_flag, "").unwrap();
    let o = c.run("provider-python.json", &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}

#[test]
fn missing_python_extension_is_named_with_what_to_install() {
    let c = Ctk::new();
    let f = fixture("provider-python-missing.yaml");
    let o = c.cmd(&["validate", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("all-pods-healthy"), "{err}");
    if have_python() {
        assert!(err.contains("chaosk8s.pod.probes"), "{err}");
        assert!(err.contains("pip install chaostoolkit-kubernetes"), "{err}");
    } else {
        assert!(err.contains("python3"), "{err}");
    }
    // The error points at the line of the module in the file.
    assert!(err.contains("provider-python-missing.yaml:"), "{err}");
}

#[test]
fn realistic_experiment_configuration_secrets_pauses_background_refs_rollbacks() {
    let c = Ctk::new();
    let t0 = Instant::now();
    let o = c.run("realistic.yaml", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The pauses (0.1 in the background, 0.3 after) were waited.
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(c.out("background.txt").as_deref(), Some("loaded"));
    assert_eq!(c.out("flushed.txt").as_deref(), Some("fallback"));
    assert_eq!(c.out("user.txt").as_deref(), Some("inline-user"));
    assert_eq!(c.out("rollback.txt").as_deref(), Some("s3cret"));
    let j = c.journal();
    let names: Vec<&str> = j["run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["activity"]["name"].as_str().unwrap())
        .collect();
    for n in [
        "background-load",
        "flush-cache",
        "api-answers",
        "record-user",
    ] {
        assert!(names.contains(&n), "{n} not in {names:?}");
    }
    let rb: Vec<&str> = j["rollbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["activity"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(rb, ["write-token", "api-answers"]);
    // The experiment is kept as written (substitution happens at run time).
    assert_eq!(
        j["experiment"]["steady-state-hypothesis"]["probes"][0]["provider"]["headers"]
            ["Authorization"],
        "Bearer ${token}"
    );
}

#[test]
fn missing_env_configuration_is_an_error_naming_it() {
    let c = Ctk::new();
    let f = fixture("realistic.yaml");
    let o =
        c.sb.cmd()
            .args(["validate", f.to_str().unwrap()])
            .env_remove("CTK_TEST_BASE")
            .env("CTK_TEST_OUT", c.sb.path())
            .env("CTK_TEST_TOKEN", "x")
            .output()
            .unwrap();
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("configuration.base_url"), "{err}");
    assert!(err.contains("CTK_TEST_BASE"), "{err}");
}

#[test]
fn continuously_with_fail_fast_stops_at_the_first_failed_check() {
    let c = Ctk::new();
    let t0 = Instant::now();
    let o = c.run(
        "continuous.json",
        &[
            "--hypothesis-strategy",
            "continuously",
            "--hypothesis-frequency",
            "0.1",
            "--fail-fast",
            "--rollback-strategy",
            "default",
        ],
    );
    let took = t0.elapsed();
    // Aborted (exit 2), long before the 20 s action would end.
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(took < Duration::from_secs(12), "took {took:?}");
    let j = c.journal();
    assert_eq!(j["status"], "failed");
    let during = j["steady_states"]["during"].as_array().unwrap();
    assert!(!during.is_empty(), "{j:#}");
    assert_eq!(during.last().unwrap()["steady_state_met"], false);
    // Chaos Toolkit's default rollback strategy skips rollbacks on failure.
    assert!(c.out("rolled-back").is_none());
    assert!(c.server.fail_flag.exists());
}

#[test]
fn continuously_without_flags_from_file_runtime_and_always_rollbacks() {
    let c = Ctk::new();
    // The same experiment with the strategy in its `runtime` section.
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("continuous.json")).unwrap())
            .unwrap();
    v["runtime"] = serde_json::json!({"hypothesis": {"strategy": "continuously"}});
    v["method"][1]["provider"]["arguments"] = serde_json::json!(["1"]);
    let f = c.sb.write("cont.json", &v.to_string());
    let o = c.cmd(&[
        "run",
        f.to_str().unwrap(),
        "--hypothesis-frequency",
        "0.2",
        "--journal-format",
        "chaostoolkit",
        "--journal",
        "ctk.json",
    ]);
    // Without --fail-fast the method goes on; the failed checks deviate it.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // No strategy given for rollbacks: faultline's default (always) ran them.
    assert!(c.out("rolled-back").is_some(), "{}", text(&o));
    assert!(!c.server.fail_flag.exists());
}

#[test]
fn after_method_only_skips_the_before_check() {
    let c = Ctk::new();
    std::fs::write(&c.server.fail_flag, "").unwrap();
    let o = c.run(
        "tolerance-list.yaml",
        &["--hypothesis-strategy", "after-method-only"],
    );
    // The service was broken before, yet the method ran (no before check);
    // the after check, made before the rollbacks as in Chaos Toolkit, deviates.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let j = c.journal();
    assert!(j["steady_states"]["before"].is_null(), "{j:#}");
    assert_eq!(j["steady_states"]["after"]["steady_state_met"], false);
    assert_eq!(j["run"][0]["activity"]["name"], "break-the-service");
    assert!(
        !c.server.fail_flag.exists(),
        "the rollback ran after the check"
    );
}

#[test]
fn dry_prints_the_plan_and_runs_nothing() {
    let c = Ctk::new();
    let o = c.run("tolerance-list.yaml", &["--dry"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!c.server.fail_flag.exists());
    assert!(String::from_utf8_lossy(&o.stdout).contains("break-the-service"));
}

#[test]
fn ctk_flags_on_a_faultline_file_are_refused_and_var_names_a_faultline_variable() {
    let c = Ctk::new();
    let f = c.sb.write(
        "fl.yaml",
        &format!(
            "title: t\nhypothesis: h\nsteady_state:\n  probes:\n    - name: p\n      http: {{url: \"{}\"}}\nmethod:\n  - pause: 100ms\n",
            c.server.url()
        ),
    );
    let o = c.cmd(&["run", f.to_str().unwrap(), "--var", "a=b", "--no-journal"]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    // --var sets a faultline variable now; this file declares none.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--var a") && err.contains("does not declare"),
        "{err}"
    );
    let o = c.cmd(&[
        "run",
        f.to_str().unwrap(),
        "--ignore-controls",
        "--no-journal",
    ]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--ignore-controls applies to Chaos Toolkit")
    );
    // ...and the file itself is not mistaken for a Chaos Toolkit experiment.
    let o = c.cmd(&["validate", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn invalid_ctk_experiment_names_activity_and_field() {
    let c = Ctk::new();
    let f = c.sb.write(
        "bad.json",
        r#"{
  "title": "bad",
  "steady-state-hypothesis": {"title": "h", "probes": [
    {"type": "probe", "name": "p1", "tolerance": {"type": "regex"},
     "provider": {"type": "process", "path": "true"}}
  ]},
  "method": [
    {"type": "action", "name": "a1", "provider": {"type": "process", "path": "no-such-program-xyz"}},
    {"ref": "nope"}
  ]
}"#,
    );
    let o = c.cmd(&["validate", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("steady-state-hypothesis.probes[0].tolerance"),
        "{err}"
    );
    assert!(err.contains("pattern"), "{err}");
    assert!(err.contains("method[0].provider.path"), "{err}");
    assert!(err.contains("no-such-program-xyz"), "{err}");
    assert!(err.contains("method[1].ref"), "{err}");
    // Located at the line of the field.
    assert!(err.contains("bad.json:4:"), "{err}");
}

#[test]
fn faultline_experiments_can_use_jsonpath_and_tolerance() {
    let c = Ctk::new();
    let exp = |equals: &str| {
        format!(
            r#"title: jsonpath
hypothesis: the document says up
steady_state:
  interval: 100ms
  probes:
    - name: doc
      command: {{run: [printf, '{{"state": "up", "items": [1, 2, 3]}}']}}
      expect:
        jsonpath: {{path: "$.state", equals: {equals}}}
      before: {{samples: 1}}
      after: {{successes: 1, within: 2s}}
    - name: items
      command: {{run: [printf, '{{"state": "up", "items": [1, 2, 3]}}']}}
      expect:
        tolerance: {{type: jsonpath, path: "$.items[*]", count: 3, target: stdout}}
      before: {{samples: 1}}
      after: {{successes: 1, within: 2s}}
    - name: web
      http: {{url: "{}"}}
      expect:
        tolerance: [200, 204]
      before: {{samples: 1}}
      after: {{successes: 1, within: 2s}}
method:
  - pause: 100ms
"#,
            c.server.url()
        )
    };
    let f = c.sb.write("ok.yaml", &exp("up"));
    let o = c.cmd(&["run", f.to_str().unwrap(), "--no-journal"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let f = c.sb.write("bad.yaml", &exp("down"));
    let o = c.cmd(&["run", f.to_str().unwrap(), "--no-journal"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("$.state"),
        "{}",
        text(&o)
    );
    // A bad path is a validation error at the field.
    let f = c.sb.write("inv.yaml", &exp("up").replace("$.state", "$[["));
    let o = c.cmd(&["validate", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("expect.jsonpath.path"),
        "{}",
        text(&o)
    );
}
