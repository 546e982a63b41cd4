//! Native variables of faultline experiment files, end to end through the
//! built binary: `vars:` defaults, `--var`, `--var-file`, `${env:NAME}`,
//! hostile values, located errors, and secrets that are never written.

mod support;

use support::*;

/// An experiment whose probe URL port and sampling interval are variables.
fn experiment(extra_vars: &str, header: &str) -> String {
    format!(
        r#"
title: vars test
hypothesis: the server keeps answering
vars:
  port: {{default: 1, type: integer}}
  interval: {{default: 50ms}}
{extra_vars}
steady_state:
  interval: ${{interval}}
  probes:
    - name: web
      http:
        url: "http://127.0.0.1:${{port}}/"
{header}
      timeout: 1s
      before: {{samples: 2}}
      after: {{within: 3s, successes: 2}}
method:
  - pause: 1500ms
"#
    )
}

/// The smallest gap between consecutive samples of the method phase, ms.
fn min_during_gap(j: &serde_json::Value) -> f64 {
    let at: Vec<f64> = j["probes"][0]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["phase"] == "during")
        .map(|s| s["at_ms"].as_f64().unwrap())
        .collect();
    assert!(at.len() >= 2, "too few samples during the method: {at:?}");
    at.windows(2)
        .map(|w| w[1] - w[0])
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn var_changes_a_probe_port_and_the_interval_of_a_real_run() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let f = sb.write("e.yaml", &experiment("", ""));
    let port = format!("port={}", srv.port);
    let o = sb.run(&f, &["--var", &port, "--var", "interval=400ms"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j = sb.journal();
    assert_eq!(j["outcome"]["verdict"], "held");
    let target = j["probes"][0]["target"].as_str().unwrap();
    assert!(
        target.contains(&format!("127.0.0.1:{}/", srv.port)),
        "{target}"
    );
    // Samples are never closer than the interval (later is fine on a busy machine).
    let gap = min_during_gap(&j);
    assert!(gap >= 350.0, "samples {gap} ms apart with a 400ms interval");
    assert_eq!(j["experiment"]["vars"]["port"], srv.port as u64);
    assert_eq!(j["experiment"]["vars"]["interval"], "400ms");
}

#[test]
fn defaults_apply_and_var_files_give_values() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let f = sb.write("e.yaml", &experiment("", ""));
    // Default port 1: nothing listens there, the hypothesis cannot hold.
    let o = sb.run(&f, &[]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    let j = sb.journal();
    assert!(j["probes"][0]["target"]
        .as_str()
        .unwrap()
        .contains("127.0.0.1:1/"));
    assert_eq!(j["experiment"]["vars"]["port"], 1);
    assert_eq!(j["experiment"]["vars"]["interval"], "50ms");

    // YAML var file, and a .env var file.
    let yaml = sb.write("v.yaml", &format!("port: {}\n", srv.port));
    let o = sb.run(&f, &["--var-file", yaml.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let env = sb.write("v.env", &format!("# comment\nport={}\n", srv.port));
    let o = sb
        .cmd()
        .args([
            "plan",
            "--format",
            "json",
            f.to_str().unwrap(),
            "--var-file",
        ])
        .arg(&env)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("127.0.0.1:{}/", srv.port)),
        "{}",
        text(&o)
    );
}

#[test]
fn env_variables_are_read() {
    let sb = Sandbox::new();
    let f = sb.write(
        "e.yaml",
        &experiment("", "").replace("${port}", "${env:FAULTLINE_TEST_PORT}"),
    );
    let o = sb
        .cmd()
        .args(["plan", f.to_str().unwrap()])
        .env("FAULTLINE_TEST_PORT", "4321")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("127.0.0.1:4321/"),
        "{}",
        text(&o)
    );
    let o = sb
        .cmd()
        .args(["validate", f.to_str().unwrap()])
        .env_remove("FAULTLINE_TEST_PORT")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(
        text(&o).contains("FAULTLINE_TEST_PORT` is not set"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("e.yaml:13:"), "{}", text(&o));
}

#[test]
fn hostile_values_stay_one_string() {
    let sb = Sandbox::new();
    let f = sb.write(
        "e.yaml",
        "title: t\nhypothesis: ${t}\nvars:\n  t: {type: string}\nsteady_state:\n  probes:\n    - name: p\n      tcp: {host: 127.0.0.1, port: 1}\nmethod:\n  - pause: 1s\n",
    );
    for hostile in [
        "x\nsteady_state: {}",
        "a: b",
        "\"quoted' }",
        "{x: 1}",
        "- a",
    ] {
        let o = sb
            .cmd()
            .args(["plan", "--format", "json", f.to_str().unwrap()])
            .arg("--var")
            .arg(format!("t={hostile}"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{hostile:?}: {}", text(&o));
        let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(plan["hypothesis"], hostile, "{plan}");
        // The document kept its structure: the probe is still there.
        assert!(String::from_utf8_lossy(&o.stdout).contains("127.0.0.1"));
    }
}

#[test]
fn unknown_undeclared_and_missing_variables_are_located_errors() {
    let sb = Sandbox::new();
    let f = sb.write("e.yaml", &experiment("", "").replace("${port}", "${prot}"));
    let o = sb
        .cmd()
        .args(["validate", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("e.yaml:13:14:"), "{t}");
    assert!(
        t.contains("unknown variable `prot` (did you mean `port`?)"),
        "{t}"
    );

    let f = sb.write("e.yaml", &experiment("", ""));
    let o = sb
        .cmd()
        .args(["validate", f.to_str().unwrap(), "--var", "prot=80"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("e.yaml:4:1:"), "{t}");
    assert!(t.contains("does not declare"), "{t}");
    assert!(t.contains("did you mean `port`?"), "{t}");

    let f = sb.write("e.yaml", &experiment("  token: {secret: true}", ""));
    let o = sb
        .cmd()
        .args(["plan", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("e.yaml:7:3:"), "{t}");
    assert!(t.contains("--var token=VALUE"), "{t}");

    let o = sb
        .cmd()
        .args(["validate", f.to_str().unwrap(), "--var", "token=t"])
        .args(["--var", "port=http"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(text(&o).contains("takes a whole number"), "{}", text(&o));
}

#[test]
fn secret_variables_are_never_shown_nor_written() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let secret = "s3cr3t-Tok3n-value-91";
    let f = sb.write(
        "e.yaml",
        &experiment(
            "  token: {secret: true}",
            "        headers: {Authorization: \"Bearer ${token}\"}",
        ),
    );
    let port = format!("port={}", srv.port);
    let token = format!("token={secret}");
    let o = sb.run(&f, &["--var", &port, "--var", &token]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!text(&o).contains(secret), "{}", text(&o));
    let journal = std::fs::read_to_string(sb.path().join("journal.json")).unwrap();
    assert!(!journal.contains(secret));
    let j = sb.journal();
    assert_eq!(j["experiment"]["vars"]["token"], "***");
    let md = std::fs::read_to_string(sb.path().join("report.md")).unwrap();
    assert!(!md.contains(secret));
    let junit = std::fs::read_to_string(sb.path().join("junit.xml")).unwrap();
    assert!(!junit.contains(secret));
    // plan and a type error do not show it either.
    let o = sb
        .cmd()
        .args(["plan", "--format", "json", f.to_str().unwrap()])
        .args(["--var", &token])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!text(&o).contains(secret), "{}", text(&o));
}
