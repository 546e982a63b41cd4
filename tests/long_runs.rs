//! Long runs keep flat memory: samples are spooled to disk and only a window
//! stays in memory (see `report::samples`). These tests run the built binary
//! with more samples than the window and check that the final journal still
//! holds every sample, in order, redacted, and that a snapshot written while
//! the run goes on is valid and says how many samples it leaves out.

mod support;

use std::process::Stdio;
use std::time::Duration;
use support::*;

/// Samples of the window kept in memory (`report::samples::WINDOW`): the
/// runs below take several times more per probe.
const WINDOW: u64 = faultline::report::samples::WINDOW as u64;

fn experiment(url: &str, pause: &str) -> String {
    format!(
        r#"
title: long run
hypothesis: every sample reaches the journal
vars:
  token: {{secret: true, default: "s3cr3t-spool-Tok3n-77"}}
steady_state:
  interval: 10ms
  probes:
    - name: web
      http: {{url: "{url}"}}
      timeout: 1s
      before: {{samples: 3}}
      after: {{within: 3s, successes: 2}}
    - name: secretive
      command:
        run: [sh, -c, "if [ -e flag ]; then echo 'token ${{token}}' >&2; exit 2; fi"]
      timeout: 2s
      before: {{samples: 3}}
      after: {{within: 3s, successes: 2}}
method:
  - command:
      run: [touch, flag]
  - pause: {pause}
  - command:
      run: [rm, -f, flag]
"#
    )
}

fn counted(p: &serde_json::Value) -> u64 {
    ["before", "during", "after"]
        .iter()
        .map(|ph| p[ph]["samples"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn every_spooled_sample_reaches_the_final_journal_in_order_and_redacted() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let f = sb.write("e.yaml", &experiment(&srv.url(), "3s"));
    let o = sb.run(&f, &[]);
    // The command probe fails while `flag` exists: DEVIATED is expected.
    assert!(matches!(o.status.code(), Some(0) | Some(1)), "{}", text(&o));
    let raw = std::fs::read_to_string(sb.path().join("journal.json")).unwrap();
    assert!(
        !raw.contains("s3cr3t-spool-Tok3n-77"),
        "a secret reached the journal"
    );
    assert!(
        !raw.contains("@@faultline-spooled-samples"),
        "a placeholder was left"
    );
    let j = sb.journal();
    assert_eq!(
        j["complete"],
        serde_json::Value::Null,
        "the final journal is complete"
    );
    for p in j["probes"].as_array().unwrap() {
        let samples = p["samples"].as_array().unwrap();
        assert!(p.get("samples_omitted").is_none(), "{}", p["name"]);
        // More than the window (the cheap HTTP probe; the command probe
        // spawns a shell a sample, fewer on a busy machine), and every one.
        assert!(
            p["name"] != "web" || samples.len() as u64 > 2 * WINDOW,
            "{}: only {} samples",
            p["name"],
            samples.len()
        );
        assert_eq!(samples.len() as u64, counted(p), "{}", p["name"]);
        let at: Vec<f64> = samples
            .iter()
            .map(|s| s["at_ms"].as_f64().unwrap())
            .collect();
        assert!(
            at.windows(2).all(|w| w[0] <= w[1]),
            "{}: out of order",
            p["name"]
        );
        // Exact percentiles below 2048 samples: the journal's figures are
        // the nearest-rank percentiles of its own samples.
        let mut lat: Vec<f64> = samples
            .iter()
            .filter(|s| s["phase"] == "during")
            .map(|s| s["latency_ms"].as_f64().unwrap())
            .collect();
        lat.sort_by(|a, b| a.total_cmp(b));
        let rank = ((0.95 * lat.len() as f64).ceil() as usize).clamp(1, lat.len());
        assert_eq!(
            p["during"]["latency_ms"]["p95"].as_f64().unwrap(),
            lat[rank - 1]
        );
    }
    // The secret's failures are in the journal, masked.
    let secretive = &j["probes"][1];
    assert!(secretive["during"]["failures"].as_u64().unwrap() > 0);
    assert!(
        raw.contains("token ***"),
        "the masked failure detail is there"
    );
    // `report` reads it back.
    let o = sb
        .cmd()
        .args(["report", "journal.json", "--format", "html"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The spool leaves no file behind.
    let names: Vec<String> = std::fs::read_dir(sb.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.contains("samples") && !n.ends_with(".tmp")),
        "{names:?}"
    );
}

#[test]
fn a_snapshot_while_running_is_valid_and_counts_what_it_leaves_out() {
    let sb = Sandbox::new();
    let srv = FlagServer::start(sb.path());
    let f = sb.write("e.yaml", &experiment(&srv.url(), "8s"));
    let child = sb
        .cmd()
        .arg("run")
        .arg(&f)
        .args(["--journal", "journal.json", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    let mut seen = None;
    let found = wait_until(Duration::from_secs(60), || {
        let Ok(text) = std::fs::read_to_string(sb.path().join("journal.json")) else {
            return false;
        };
        // Every snapshot is a whole JSON document.
        let v: serde_json::Value = serde_json::from_str(&text).expect("a valid snapshot");
        if v["complete"] != false {
            return false;
        }
        let omitted = v["probes"][0]["samples_omitted"].as_u64().unwrap_or(0);
        if omitted > 0 {
            seen = Some(v);
            return true;
        }
        false
    });
    assert!(found, "no snapshot left samples out within 60s");
    let v = seen.unwrap();
    for p in v["probes"].as_array().unwrap() {
        let kept = p["samples"].as_array().unwrap().len() as u64;
        let omitted = p["samples_omitted"].as_u64().unwrap_or(0);
        assert!(
            kept <= 2 * WINDOW,
            "{}: {kept} samples in memory",
            p["name"]
        );
        assert_eq!(kept + omitted, counted(p), "{}", p["name"]);
    }
    let status = child.0.wait().unwrap();
    assert!(matches!(status.code(), Some(0) | Some(1)), "{status:?}");
    let j = sb.journal();
    let p = &j["probes"][0];
    assert_eq!(p["samples"].as_array().unwrap().len() as u64, counted(p));
}
