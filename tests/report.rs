//! The report formats and `faultline report`, on hand-written journals of
//! four kinds of run (tests/fixtures/journal-*.json): held, aborted (a paused
//! process), not steady (during/after never reached) and failed rollback
//! (manual recovery needed).

use faultline::report::record::{RunRecord, Verdict};
use faultline::report::{json, junit, markdown, table};
use std::path::{Path, PathBuf};
use std::process::Command;

const FIXTURES: [&str; 4] = [
    "journal-held.json",
    "journal-aborted.json",
    "journal-not-steady.json",
    "journal-rollback-failed.json",
];

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn fixture(name: &str) -> RunRecord {
    let text = std::fs::read_to_string(fixture_path(name)).unwrap();
    json::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

// ---------------------------------------------------------------- a tiny DOM over quick-xml

#[derive(Debug, Default)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<Element>,
}

impl Element {
    fn attr(&self, k: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
    fn all<'a>(&'a self, name: &str, out: &mut Vec<&'a Element>) {
        for c in &self.children {
            if c.name == name {
                out.push(c);
            }
            c.all(name, out);
        }
    }
}

/// Parses XML strictly (mismatched end tags, bad entities and trailing
/// garbage are errors) into a tree.
fn parse_xml(xml: &str) -> Element {
    use quick_xml::events::{BytesStart, Event};
    fn element(e: &BytesStart) -> Element {
        let mut el = Element {
            name: String::from_utf8(e.name().as_ref().to_vec()).unwrap(),
            ..Default::default()
        };
        for a in e.attributes() {
            let a = a.expect("well-formed attribute");
            el.attrs.push((
                String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .expect("valid attribute value")
                    .into_owned(),
            ));
        }
        el
    }
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack = vec![Element::default()];
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => stack.push(element(&e)),
            Event::Empty(e) => {
                let el = element(&e);
                stack.last_mut().unwrap().children.push(el);
            }
            Event::End(_) => {
                let el = stack.pop().unwrap();
                stack.last_mut().expect("balanced tags").children.push(el);
            }
            Event::Text(t) => stack
                .last_mut()
                .unwrap()
                .text
                .push_str(&t.decode().unwrap()),
            Event::GeneralRef(r) => {
                let name = r.decode().unwrap();
                let s = match name.as_ref() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    other => panic!("unexpected entity &{other};"),
                };
                stack.last_mut().unwrap().text.push_str(s);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(stack.len(), 1, "unclosed elements");
    let mut root = stack.pop().unwrap();
    assert_eq!(root.children.len(), 1, "exactly one root element");
    root.children.pop().unwrap()
}

fn testcases(root: &Element) -> Vec<&Element> {
    let mut v = Vec::new();
    root.all("testcase", &mut v);
    v
}

fn case<'a>(root: &'a Element, name: &str) -> &'a Element {
    testcases(root)
        .into_iter()
        .find(|c| c.attr("name") == Some(name))
        .unwrap_or_else(|| panic!("no testcase named {name:?}"))
}

// ---------------------------------------------------------------- JSON

#[test]
fn journals_round_trip_through_json() {
    for name in FIXTURES {
        let text = std::fs::read_to_string(fixture_path(name)).unwrap();
        let rec = json::parse(&text).unwrap();
        let rendered = json::render(&rec);
        // Nothing is lost or added compared with the file...
        let original: serde_json::Value = serde_json::from_str(&text).unwrap();
        let again: serde_json::Value = serde_json::from_str(&rendered).unwrap();
        assert_eq!(original, again, "{name}: JSON changed on a round trip");
        // ...and rendering is stable.
        assert_eq!(json::render(&json::parse(&rendered).unwrap()), rendered);
    }
}

#[test]
fn the_documented_example_is_a_valid_journal() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/journal.md"))
            .unwrap();
    let start = doc
        .find("```json\n")
        .expect("a JSON example in docs/journal.md")
        + 8;
    let len = doc[start..].find("```").unwrap();
    let rec = json::parse(&doc[start..start + len]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rec.outcome.verdict, Verdict::Aborted);
    assert_eq!(
        rec.schema_version,
        faultline::report::record::SCHEMA_VERSION
    );
}

#[test]
fn fixtures_are_the_runs_they_claim() {
    assert_eq!(fixture("journal-held.json").outcome.verdict, Verdict::Held);
    let aborted = fixture("journal-aborted.json");
    assert_eq!(aborted.outcome.verdict, Verdict::Aborted);
    assert!(aborted.abort.is_some());
    assert_eq!(aborted.faults[0].kind, "process_pause");
    let ns = fixture("journal-not-steady.json");
    assert_eq!(ns.outcome.exit_code, 3);
    assert_eq!(ns.probes[0].during.samples, 0);
    let rb = fixture("journal-rollback-failed.json");
    assert!(!rb.faults[0].rolled_back);
    assert!(!rb.manual_recovery.is_empty());
    // The stats agree with the samples they summarise.
    for name in FIXTURES {
        for p in &fixture(name).probes {
            for phase in faultline::report::record::SamplePhase::ALL {
                let n = p.samples.iter().filter(|s| s.phase == phase).count() as u32;
                assert_eq!(p.phase(phase).samples, n, "{name} {} {phase:?}", p.name);
            }
        }
    }
}

// ---------------------------------------------------------------- JUnit

#[test]
fn junit_is_xml_with_one_case_per_probe_phase_fault_and_abort() {
    for name in FIXTURES {
        let rec = fixture(name);
        let xml = junit::render(&rec);
        let root = parse_xml(&xml);
        assert_eq!(root.name, "testsuites");
        let suite = root.child("testsuite").expect("one testsuite");
        assert_eq!(suite.attr("name"), Some(rec.experiment.title.as_str()));
        let cases = testcases(&root);
        let expected = rec.probes.len() * 3
            + rec.faults.len() * 2
            + usize::from(rec.abort.is_some())
            + rec.rollbacks.len();
        let others = cases
            .iter()
            .filter(|c| c.attr("name") != Some("verdict"))
            .count();
        assert_eq!(others, expected, "{name}: {xml}");
        assert_eq!(suite.attr("tests"), Some(cases.len().to_string().as_str()));
        for (kind, attr) in [("failure", "failures"), ("error", "errors")] {
            let n = cases.iter().filter(|c| c.child(kind).is_some()).count();
            assert_eq!(suite.attr(attr), Some(n.to_string().as_str()), "{name}");
        }
        // Every failure and error says why; every case's classname is the
        // experiment file's stem.
        let stem = std::path::Path::new(&rec.experiment.file)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for c in &cases {
            assert_eq!(c.attr("classname"), Some(stem.as_str()), "{name}");
            for kind in ["failure", "error"] {
                if let Some(f) = c.child(kind) {
                    assert!(
                        f.attr("message").is_some_and(|m| !m.is_empty()),
                        "{name}: {kind} without a message in {:?}",
                        c.attr("name")
                    );
                }
            }
        }
        // A run that did not hold shows at least one failure or error, and
        // a run that held none.
        let bad = cases
            .iter()
            .filter(|c| c.child("failure").is_some() || c.child("error").is_some())
            .count();
        assert_eq!(bad == 0, rec.outcome.verdict == Verdict::Held, "{name}");
    }
}

#[test]
fn junit_held_run_has_no_failure() {
    let root = parse_xml(&junit::render(&fixture("journal-held.json")));
    assert_eq!(root.attr("failures"), Some("0"));
    let during = case(&root, "web / during");
    assert!(during.child("failure").is_none() && during.child("skipped").is_none());
    assert!(during.attr("time").is_some(), "phase duration recorded");
    assert!(case(&root, "db / during")
        .child("system-out")
        .unwrap()
        .text
        .contains("observed only"));
}

#[test]
fn junit_aborted_run_carries_the_reasons() {
    let root = parse_xml(&junit::render(&fixture("journal-aborted.json")));
    let during = case(&root, "api / during").child("failure").unwrap();
    let msg = during.attr("message").unwrap();
    assert!(msg.contains(">= 90% success not met"), "{msg}");
    assert!(msg.contains("4/7 successful"), "{msg}");
    assert!(
        during.text.contains("timed out after 1s"),
        "{}",
        during.text
    );
    let abort = case(&root, "abort").child("failure").unwrap();
    assert!(abort
        .attr("message")
        .unwrap()
        .contains("3 samples in a row errored"));
    assert!(abort.text.contains("3 consecutive failures of api"));
    let inject = case(
        &root,
        "fault 1 pause one api worker (process_pause) / inject",
    );
    assert!(inject.child("failure").is_none());
    assert!(inject
        .child("system-out")
        .unwrap()
        .text
        .contains("pid 31337 state T (stopped)"));
    assert!(case(&root, "api / after").child("failure").is_none());
}

#[test]
fn junit_not_steady_run_skips_what_never_ran() {
    let root = parse_xml(&junit::render(&fixture("journal-not-steady.json")));
    for probe in ["cache", "redis running"] {
        assert!(case(&root, &format!("{probe} / before"))
            .child("failure")
            .is_some());
        for phase in ["during", "after"] {
            let skipped = case(&root, &format!("{probe} / {phase}"))
                .child("skipped")
                .unwrap_or_else(|| panic!("{probe} / {phase} not skipped"));
            assert!(skipped.attr("message").unwrap().contains("not reached"));
        }
    }
    assert!(
        case(&root, "fault 1 cap redis at 64MiB (memory_limit) / inject")
            .child("skipped")
            .is_some()
    );
    let before = case(&root, "cache / before").child("failure").unwrap();
    assert!(before.text.contains("connection refused"));
}

#[test]
fn junit_failed_rollback_lists_manual_commands() {
    let rec = fixture("journal-rollback-failed.json");
    let root = parse_xml(&junit::render(&rec));
    let rb = case(
        &root,
        "fault 1 drop 20% of packets to the gateway (packet_loss) / rollback",
    )
    .child("error")
    .expect("a failed rollback is an <error>");
    assert_eq!(rb.attr("type"), Some("rollback_failed"));
    assert!(rb
        .attr("message")
        .unwrap()
        .contains("RTNETLINK answers: Operation not permitted"));
    assert!(rb.text.contains(&rec.manual_recovery[0]), "{}", rb.text);
    assert!(rb.text.contains("faultline recover 20261201-033000-5d0d"));
    let action = case(&root, "rollback action: restart the payments pod proxy")
        .child("error")
        .unwrap();
    assert!(action.attr("message").unwrap().contains("exited with 1"));
}

// ---------------------------------------------------------------- Markdown

/// `|` not escaped by a backslash.
fn unescaped_pipes(line: &str) -> usize {
    let (mut n, mut escaped) = (0, false);
    for c in line.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '|' {
            n += 1;
        }
    }
    n
}

#[test]
fn markdown_has_verdict_hypothesis_and_well_formed_tables() {
    for name in FIXTURES {
        let rec = fixture(name);
        let md = markdown::render(&rec);
        assert!(
            md.contains(&format!("**Verdict: {}", rec.outcome.verdict.label())),
            "{name}"
        );
        assert!(md.contains(&format!("(exit {})", rec.outcome.exit_code)));
        assert!(md.contains(
            faultline::exit::meaning(rec.outcome.exit_code)
                .split('`')
                .next()
                .unwrap()
        ));
        let hyp = rec.experiment.hypothesis.replace('|', "\\|");
        assert!(md.contains(&format!("> **Hypothesis:** {hyp}")), "{name}");
        assert!(md.contains("## Results"));

        let lines: Vec<&str> = md.lines().collect();
        let mut tables = 0;
        let mut i = 0;
        while i < lines.len() {
            if !lines[i].starts_with('|') {
                i += 1;
                continue;
            }
            tables += 1;
            let header = unescaped_pipes(lines[i]);
            assert!(
                lines[i + 1].starts_with("|---"),
                "{name}: no separator after {}",
                lines[i]
            );
            while i < lines.len() && lines[i].starts_with('|') {
                assert_eq!(
                    unescaped_pipes(lines[i]),
                    header,
                    "{name}: ragged table row {}",
                    lines[i]
                );
                assert!(lines[i].ends_with('|'), "{name}: {}", lines[i]);
                i += 1;
            }
            assert!(
                i == lines.len() || lines[i].is_empty(),
                "{name}: table not followed by a blank line"
            );
        }
        assert!(tables >= 3, "{name}: about, results, timings tables");
        // One results row per probe and phase.
        for p in &rec.probes {
            let name_cell = format!("| {} |", p.name.replace('|', "\\|"));
            assert_eq!(
                lines.iter().filter(|l| l.starts_with(&name_cell)).count(),
                3,
                "{name}: {}",
                p.name
            );
        }
    }
}

#[test]
fn markdown_details_per_run() {
    let md = markdown::render(&fixture("journal-aborted.json"));
    assert!(md.contains("## Abort"));
    assert!(md.contains("3 samples in a row errored"));
    assert!(md.contains("processes: 1 (comm=gunicorn pid=31337)"));
    assert!(md.contains("| Time to abort | 4.09s |"));

    let md = markdown::render(&fixture("journal-rollback-failed.json"));
    assert!(md.contains("❌ **not rolled back**"));
    assert!(md.contains(
        "**Verdict: ROLLBACK FAILED (exit 4)**: rollback failed: faults may remain (run `faultline recover`) — the packet-loss"
    ));
    assert!(
        md.contains("```sh\nip netns exec fl-pay tc qdisc del dev fl-pay0 root handle 1f1:\n```")
    );
    // A pipe inside a command in a table cell is escaped.
    assert!(md.contains("systemctl restart pay-proxy \\| logger"));

    let md = markdown::render(&fixture("journal-not-steady.json"));
    assert!(md.contains("| cache | during | — | — | — | — | >= 99% success | — not reached |"));
    assert!(!md.contains("## Abort"));
    assert!(md.contains("| 1. cap redis at 64MiB | — nothing to undo |"));
    assert!(md.contains("- Planned operations (not performed):"));
}

#[test]
fn table_not_steady_run_shows_the_fault_was_never_injected() {
    let out = table::render(&fixture("journal-not-steady.json"), false);
    assert!(out.contains("not injected"));
    assert!(out.contains("– nothing to undo"));
    assert!(out.contains("planned:"));
    assert!(!out.contains("✓ rolled back"));
    assert_eq!(out.matches("– not reached").count(), 4, "{out}");
}

// ---------------------------------------------------------------- terminal table

#[test]
fn table_without_color_is_plain_and_complete() {
    for name in FIXTURES {
        let rec = fixture(name);
        let out = table::render(&rec, false);
        assert!(!out.contains('\x1b'), "{name}: escape code without color");
        for p in &rec.probes {
            assert!(out.contains(&p.name), "{name}: probe {} missing", p.name);
        }
        let verdict = table::verdict_line(&rec, false);
        assert!(verdict.starts_with(&format!(
            "{} (exit {}): ",
            rec.outcome.verdict.label(),
            rec.outcome.exit_code
        )));
        assert!(verdict.contains(&rec.outcome.reason));
        assert_eq!(out.lines().last(), Some(verdict.as_str()), "{name}");
        // Fixed width, whatever the terminal; the verdict is one line by contract.
        for line in out.lines().filter(|l| *l != verdict) {
            assert!(line.chars().count() <= 120, "{name}: too wide: {line}");
        }
        let colored = table::render(&rec, true);
        assert!(colored.contains('\x1b'));
    }
    let rb = table::render(&fixture("journal-rollback-failed.json"), false);
    assert!(rb.contains("Manual recovery needed"));
    assert!(rb.contains("    ip netns exec fl-pay tc qdisc del dev fl-pay0 root handle 1f1:"));
    assert!(rb.contains("✗ NOT rolled back"));
    let ab = table::render(&fixture("journal-aborted.json"), false);
    assert!(ab.contains("aborted at +9.30s: 3 consecutive failures of api (probe api)"));
    assert!(ab.contains("time to detect 2.04s"));
}

// ---------------------------------------------------------------- the command

fn faultline(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .expect("run faultline")
}

#[test]
fn report_command_prints_what_the_library_renders() {
    for name in FIXTURES {
        let rec = fixture(name);
        let path = fixture_path(name);
        let path = path.to_str().unwrap();
        for (format, expected) in [
            ("table", table::render(&rec, false)),
            ("markdown", markdown::render(&rec)),
            ("junit", junit::render(&rec)),
            ("json", json::render(&rec)),
        ] {
            let out = faultline(&["report", path, "--format", format]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{name} {format}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                String::from_utf8(out.stdout).unwrap(),
                expected,
                "{name} {format}"
            );
        }
    }
}

#[test]
fn report_command_writes_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("report.md");
    let src = fixture_path("journal-rollback-failed.json");
    let out = faultline(&[
        "report",
        src.to_str().unwrap(),
        "--format",
        "markdown",
        "-o",
        dest.to_str().unwrap(),
    ]);
    // `report` re-renders; it does not re-judge (the run itself exited 4).
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let written = std::fs::read_to_string(&dest).unwrap();
    assert_eq!(
        written,
        markdown::render(&fixture("journal-rollback-failed.json"))
    );
    // The default format is the table.
    let out = faultline(&["--color", "never", "report", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("ROLLBACK FAILED (exit 4)"));

    let unwritable = dir.path().join("no/such/dir/report.xml");
    let out = faultline(&[
        "report",
        src.to_str().unwrap(),
        "--format",
        "junit",
        "-o",
        unwritable.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write the report to"));
}

#[test]
fn bad_journals_exit_64_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let held = std::fs::read_to_string(fixture_path("journal-held.json")).unwrap();
    let mut newer: serde_json::Value = serde_json::from_str(&held).unwrap();
    newer["schema_version"] = 99.into();
    let mut broken: serde_json::Value = serde_json::from_str(&held).unwrap();
    broken["outcome"]["verdict"] = "great".into();
    let cases: Vec<(&str, String, &str)> = vec![
        ("garbage.json", "this is not json".into(), "not valid JSON"),
        (
            "ctk.json",
            r#"{"chaoslib-version": "1.42.0", "status": "completed", "steady_states": {}}"#.into(),
            "Chaos Toolkit",
        ),
        (
            "newer.json",
            newer.to_string(),
            "journal schema_version 99 is newer than this faultline understands",
        ),
        (
            "broken.json",
            broken.to_string(),
            "invalid faultline journal at `outcome.verdict`",
        ),
    ];
    for (file, content, expected) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, content).unwrap();
        let out = faultline(&["report", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(64), "{file}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{file}: {err}");
        assert!(
            err.contains(file),
            "{file}: the message names the file: {err}"
        );
        assert!(out.stdout.is_empty());
    }
    let missing = dir.path().join("missing.json");
    let out = faultline(&["report", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read journal") && err.contains("missing.json"),
        "{err}"
    );
}

#[test]
fn kb_files_an_entry_per_run_with_the_knowledge_base_sections_and_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let kb = dir.path().join("kb");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    // A journal whose title tries to climb out of the knowledge base.
    let mut hostile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("journal-held.json")).unwrap())
            .unwrap();
    hostile["experiment"]["title"] = "../../escape <b>".into();
    hostile["run_id"] = "../20991231-000000-zzzz".into();
    let hostile_path = dir.path().join("hostile.json");
    std::fs::write(&hostile_path, hostile.to_string()).unwrap();
    for j in [
        fixtures.join("journal-held.json"),
        fixtures.join("journal-aborted.json"),
        hostile_path,
    ] {
        let o = faultline(&["report", j.to_str().unwrap(), "--kb", kb.to_str().unwrap()]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // Every entry stays inside the knowledge base.
    let mut entries = Vec::new();
    for d in std::fs::read_dir(&kb).unwrap().flatten() {
        if d.path().is_dir() {
            for f in std::fs::read_dir(d.path()).unwrap().flatten() {
                entries.push(f.path());
            }
        }
    }
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert!(
        !dir.path().join("escape").exists() && !dir.path().join("20991231-000000-zzzz.md").exists()
    );
    for e in &entries {
        let md = std::fs::read_to_string(e).unwrap();
        for section in [
            "## Knowledge base entry",
            "### Experiment design",
            "### Observed behaviour",
            "### Root cause analysis",
            "### Remediation",
        ] {
            assert!(md.contains(section), "{} lacks {section}", e.display());
        }
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(e).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let index = std::fs::read_to_string(kb.join("index.md")).unwrap();
    assert_eq!(index.matches("](").count(), 3, "one link per run: {index}");
    assert!(
        index.contains("HELD") && index.contains("ABORTED"),
        "{index}"
    );
}

/// A long run's journal (60,000 samples of one probe, failing ones among
/// them): `faultline report` streams it and thins the samples for every
/// format but JSON, and renders the table, Markdown and JUnit exactly as
/// from the whole record; the HTML plot says how many samples it shows.
#[test]
fn a_long_runs_journal_renders_the_same_from_thinned_samples() {
    let mut j: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_path("journal-aborted.json")).unwrap(),
    )
    .unwrap();
    let orig = j["probes"][0]["samples"].as_array().unwrap().clone();
    let mut samples = Vec::with_capacity(60_000);
    for i in 0..60_000usize {
        let mut s = orig[i % orig.len()].clone();
        s["at_ms"] = serde_json::json!(i as f64 * 50.0);
        samples.push(s);
    }
    // The phases' counts, as the runner writes them, agree with the list.
    for phase in ["before", "during", "after"] {
        let of = |st: &str| {
            samples
                .iter()
                .filter(|s| s["phase"] == phase && (st.is_empty() || s["status"] == st))
                .count()
        };
        let ph = &mut j["probes"][0][phase];
        ph["samples"] = serde_json::json!(of(""));
        ph["successes"] = serde_json::json!(of("success"));
        ph["failures"] = serde_json::json!(of("failure"));
        ph["errors"] = serde_json::json!(of("error"));
    }
    j["probes"][0]["samples"] = serde_json::Value::Array(samples);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.json");
    std::fs::write(&path, serde_json::to_string(&j).unwrap()).unwrap();
    let full = json::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let failing = full.probes[0]
        .samples
        .iter()
        .filter(|s| s.status != faultline::report::record::SampleStatus::Success)
        .count();
    assert!(failing > 1_000, "{failing} failing samples");
    for (format, want) in [
        ("table", table::render(&full, false)),
        ("markdown", markdown::render(&full)),
        ("junit", junit::render(&full)),
        ("json", json::render(&full)),
    ] {
        let o = faultline(&[
            "report",
            path.to_str().unwrap(),
            "--format",
            format,
            "--color",
            "never",
        ]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{format}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout), want, "{format}");
    }
    let o = faultline(&["report", path.to_str().unwrap(), "--format", "html"]);
    let html = String::from_utf8_lossy(&o.stdout);
    let note = html
        .lines()
        .find(|l| l.contains("class=\"muted thinned\""))
        .expect("the plot says it is thinned");
    assert!(note.contains("of 60000 samples"), "{note}");
    let circles = html.matches("class=\"failed-sample\"").count();
    assert!(
        (1_000..=3_000 + 8_000).contains(&circles),
        "failing samples marked, up to the cap: {circles}"
    );
}
