//! The command line as a user meets it: the built binary run on the example
//! and invalid experiment files, plan, schema, completions, help and version.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_faultline");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs faultline in the crate root (so file names are relative, as a user types them).
fn faultline<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(BIN)
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("run the faultline binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally, not by a signal")
}

/// `experiments/NAME` paths, relative to the crate root, sorted.
fn files_in(dir: &str, ext: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter(|e| ext.is_none_or(|x| e.path().extension().is_some_and(|y| y == x)))
        .map(|e| format!("{dir}/{}", e.file_name().to_string_lossy()))
        .collect();
    v.sort();
    v
}

fn examples() -> Vec<String> {
    let v = files_in("experiments", Some("yaml"));
    assert!(
        v.len() >= 7,
        "expected the quickstart and at least six more examples, found {v:?}"
    );
    v
}

fn invalid_files() -> Vec<String> {
    let v = files_in("experiments/invalid", None);
    assert!(
        v.len() >= 20,
        "expected at least 20 invalid examples, found {}",
        v.len()
    );
    v
}

// ---------------------------------------------------------------- validate

#[test]
fn validate_accepts_every_example_with_one_line_per_file() {
    let files = examples();
    let o = faultline(
        ["validate"]
            .iter()
            .map(|s| s.to_string())
            .chain(files.clone()),
    );
    assert_eq!(
        code(&o),
        0,
        "stdout:\n{}\nstderr:\n{}",
        stdout(&o),
        stderr(&o)
    );
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), files.len(), "one line per file:\n{out}");
    for (line, f) in lines.iter().zip(&files) {
        assert!(
            line.starts_with("ok ") && line.contains(f.as_str()),
            "line `{line}` for {f}"
        );
    }
    assert!(
        stderr(&o).is_empty(),
        "no diagnostics expected:\n{}",
        stderr(&o)
    );
}

#[test]
fn every_example_starts_with_the_schema_line_and_says_what_it_needs() {
    for f in examples() {
        let text = std::fs::read_to_string(root().join(&f)).unwrap();
        assert_eq!(
            text.lines().next(),
            Some("# yaml-language-server: $schema=../docs/faultline.schema.json"),
            "{f}: the first line must point editors at the schema"
        );
        let head: String = text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        if f.ends_with("quickstart.yaml") {
            continue; // the lead's file says it in its description
        }
        assert!(
            head.contains("Needs"),
            "{f}: the opening comment must say what it needs"
        );
        let uses_netns = text.contains("netns:");
        if uses_netns {
            assert!(
                head.contains("netns-demo.sh up") || head.contains("ip netns add"),
                "{f}: a network example must say how to create its namespace"
            );
        }
    }
}

/// Every probe kind, fault kind and abort kind appears in some example.
#[test]
fn examples_cover_every_probe_fault_and_abort_kind() {
    use faultline::experiment::model::{Fault, FAULT_KINDS};
    let mut probes = std::collections::BTreeSet::new();
    let mut faults = std::collections::BTreeSet::new();
    let mut aborts = std::collections::BTreeSet::new();
    let (mut crash_loop, mut filtered_network, mut rollbacks, mut setup, mut seed_article) =
        (false, false, false, false, false);
    for f in examples() {
        let l = faultline::experiment::load_file(&root().join(&f))
            .unwrap_or_else(|d| panic!("{f}: {d:?}"));
        let e = &l.experiment;
        for p in &e.steady_state.probes {
            for k in p.kinds() {
                probes.insert(k.name());
            }
        }
        for s in &e.method {
            if let Some(fault) = &s.fault {
                faults.insert(fault.kind_name());
                match fault {
                    Fault::ProcessKill(k) if k.every.is_some() => crash_loop = true,
                    Fault::Network(n) if n.filter.is_some() && n.netns.is_some() => {
                        filtered_network = true
                    }
                    Fault::PacketLoss(p)
                        if p.percent.0 == 50.0
                            && p.netns.is_some()
                            && e.setup
                                .iter()
                                .any(|s| s.start.iter().any(|a| a == "redis-server")) =>
                    {
                        seed_article =
                            e.steady_state.probes.iter().any(|p| {
                                p.command.as_ref().is_some_and(|c| c.run[0] == "redis-cli")
                            })
                    }
                    _ => {}
                }
                // Network faults only go into a named namespace in the examples.
                let netns = match fault {
                    Fault::Network(n) => Some(&n.netns),
                    Fault::Blackhole(b) | Fault::Partition(b) => Some(&b.netns),
                    Fault::Dns(d) => Some(&d.netns),
                    Fault::PacketLoss(p) => Some(&p.netns),
                    Fault::Bandwidth(b) => Some(&b.netns),
                    _ => None,
                };
                if let Some(ns) = netns {
                    assert!(
                        ns.is_some(),
                        "{f}: a network fault without `netns` would hit the host"
                    );
                }
            }
        }
        for a in &e.abort {
            if a.consecutive_failures.is_some() {
                aborts.insert("consecutive_failures");
            }
            if a.failure_ratio.is_some() {
                aborts.insert("failure_ratio");
            }
            if a.latency_above.is_some() {
                aborts.insert("latency_above");
            }
        }
        rollbacks |= !e.rollbacks.is_empty();
        setup |= e.setup.iter().any(|s| s.ready.is_some());
    }
    assert_eq!(
        probes.into_iter().collect::<Vec<_>>(),
        ["command", "http", "process", "prometheus", "tcp"]
    );
    let mut all: Vec<&str> = FAULT_KINDS.to_vec();
    all.sort();
    assert_eq!(
        faults.into_iter().collect::<Vec<_>>(),
        all,
        "fault kinds used by the examples"
    );
    assert_eq!(
        aborts.into_iter().collect::<Vec<_>>(),
        ["consecutive_failures", "failure_ratio", "latency_above"]
    );
    assert!(
        crash_loop,
        "no example has a crash loop (process_kill with `every`)"
    );
    assert!(
        filtered_network,
        "no example has a filtered network fault in a namespace"
    );
    assert!(rollbacks, "no example has rollbacks");
    assert!(setup, "no example has a setup process with a ready check");
    assert!(
        seed_article,
        "the 50% packet loss on a Redis cache example is missing"
    );
}

/// The `# expect...` header of an invalid example.
struct Expectation {
    message: String,
    line: Option<usize>,
    path: Option<String>,
}

fn expectation(file: &str) -> Expectation {
    let text = String::from_utf8_lossy(&std::fs::read(root().join(file)).unwrap()).into_owned();
    if file.ends_with("/empty.yaml") {
        // An empty file cannot carry a comment.
        assert!(text.is_empty(), "{file} must stay empty");
        return Expectation {
            message: "the file is empty".into(),
            line: Some(1),
            path: None,
        };
    }
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let message = first
        .strip_prefix("# expect: ")
        .unwrap_or_else(|| {
            panic!("{file}: the first line must be `# expect: <part of the message>`")
        })
        .to_string();
    let (mut line, mut path) = (None, None);
    for l in lines.take(3) {
        if let Some(n) = l.strip_prefix("# expect-line: ") {
            line = Some(
                n.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{file}: bad expect-line")),
            );
        }
        if let Some(p) = l.strip_prefix("# expect-path: ") {
            path = Some(p.trim().to_string());
        }
    }
    Expectation {
        message,
        line,
        path,
    }
}

/// Checks one rejected file's output: exit 64, an `invalid` line on stdout,
/// and a `FILE:LINE:COLUMN: [PATH: ]MESSAGE` diagnostic on stderr.
fn assert_rejected(file: &str, o: &Output, exp: &Expectation) {
    let (out, err) = (stdout(o), stderr(o));
    assert_eq!(
        code(o),
        64,
        "{file}: exit code\nstdout: {out}\nstderr: {err}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("invalid ") && l.contains(file)),
        "{file}: stdout must say it is invalid:\n{out}"
    );
    let diag = err
        .lines()
        .find(|l| l.starts_with(&format!("{file}:")))
        .unwrap_or_else(|| panic!("{file}: no `{file}:LINE:COLUMN:` diagnostic on stderr:\n{err}"));
    let rest = &diag[file.len() + 1..];
    let mut parts = rest.splitn(3, ':');
    let line: usize = parts
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{file}: no line in `{diag}`"));
    let column: usize = parts
        .next()
        .unwrap_or("")
        .parse()
        .unwrap_or_else(|_| panic!("{file}: no column in `{diag}`"));
    assert!(line >= 1 && column >= 1, "{file}: `{diag}`");
    if let Some(want) = exp.line {
        assert_eq!(line, want, "{file}: wrong line in `{diag}`");
    }
    if let Some(p) = &exp.path {
        assert!(
            diag.contains(&format!(": {p}: ")),
            "{file}: the diagnostic must name the field `{p}`:\n{diag}"
        );
    }
    assert!(
        err.contains(&exp.message),
        "{file}: stderr must contain `{}`:\n{err}",
        exp.message
    );
}

#[test]
fn every_invalid_example_is_rejected_at_the_right_place() {
    for f in invalid_files() {
        let exp = expectation(&f);
        let o = faultline(["validate", f.as_str()]);
        assert_rejected(&f, &o, &exp);
    }
}

#[test]
fn invalid_examples_are_also_rejected_by_plan() {
    for f in invalid_files() {
        let o = faultline(["plan", f.as_str()]);
        assert_eq!(code(&o), 64, "{f}: plan of an invalid file\n{}", stderr(&o));
        assert!(stderr(&o).contains(&format!("{f}:")), "{f}: {}", stderr(&o));
        assert!(
            stdout(&o).is_empty(),
            "{f}: plan printed a plan for an invalid file"
        );
    }
}

/// A temporary directory under the crate's target dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Files that are awkward to commit are made here: binary, not UTF-8, huge.
#[test]
fn binary_non_utf8_and_huge_files_are_rejected() {
    let dir = TempDir::new("generated");
    let mut huge = b"title: huge\nhypothesis: h\ndescription: |\n".to_vec();
    while huge.len() <= 1024 * 1024 {
        huge.extend_from_slice(b"  The quick brown fox jumps over the lazy dog again and again.\n");
    }
    let cases: Vec<(&str, Vec<u8>, &str, usize)> = vec![
        (
            "binary.yaml",
            b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x03\x00>\x00".to_vec(),
            "binary file",
            1,
        ),
        (
            "latin1.yaml",
            b"title: caf\xe9\nhypothesis: h\n".to_vec(),
            "not UTF-8",
            1,
        ),
        ("huge.yaml", huge, "larger than 1048576 bytes", 1),
        (
            "control.yaml",
            b"title: ok\nhypothesis: a\x1b[31mred\n".to_vec(),
            "control character U+001B",
            2,
        ),
    ];
    for (name, bytes, message, line) in cases {
        let path = dir.0.join(name);
        std::fs::write(&path, &bytes).unwrap();
        let shown = path.display().to_string();
        let o = faultline(["validate", shown.as_str()]);
        assert_rejected(
            &shown,
            &o,
            &Expectation {
                message: message.into(),
                line: Some(line),
                path: None,
            },
        );
    }
}

/// Runs faultline with a deadline, so a hang fails the test instead of blocking it.
fn faultline_within(args: &[&str], limit: std::time::Duration) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let start = std::time::Instant::now();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !waiter.is_finished() {
        if start.elapsed() > limit {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = waiter.join();
            panic!("faultline {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    waiter.join().unwrap()
}

#[test]
fn a_fifo_or_a_device_is_refused_without_waiting_for_a_writer() {
    let dir = TempDir::new("fifo");
    let fifo = dir.0.join("exp.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let state = dir.0.join("state");
    let fifo_s = fifo.display().to_string();
    let state_s = state.display().to_string();
    let runs: [&[&str]; 3] = [
        &["validate", &fifo_s],
        &["plan", &fifo_s],
        &[
            "--state-dir",
            &state_s,
            "run",
            "--yes",
            "--no-journal",
            &fifo_s,
        ],
    ];
    for args in runs {
        // A writer that never comes must not hang it (the pipe idle limit is 5s).
        let o = faultline_within(args, std::time::Duration::from_secs(30));
        assert_eq!(code(&o), 64, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("FIFO (named pipe) and nothing was written to it"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    for dev in ["/dev/zero", "/dev/null"] {
        let o = faultline_within(&["validate", dev], std::time::Duration::from_secs(30));
        assert_eq!(code(&o), 64, "{dev}: {}", stderr(&o));
        assert!(stderr(&o).contains("this is a device"), "{}", stderr(&o));
    }
    // A pipe that is written to, as `validate <(...)` gives, is read.
    let quickstart = std::fs::read(root().join(&examples()[0])).unwrap();
    let mut c = Command::new(BIN)
        .args(["validate", "/dev/stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = c.stdin.take().unwrap();
        stdin.write_all(&quickstart).unwrap();
    }
    let o = c.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn a_utf8_byte_order_mark_is_accepted_in_yaml_and_json() {
    let dir = TempDir::new("bom");
    let yaml = std::fs::read(root().join(&examples()[0])).unwrap();
    let json = br#"{"title": "t", "method": [{"type": "action", "name": "a",
        "provider": {"type": "process", "path": "true"}}]}"#;
    for (name, body) in [("bom.yaml", &yaml[..]), ("bom.json", &json[..])] {
        let p = dir.0.join(name);
        let mut bytes = b"\xef\xbb\xbf".to_vec();
        bytes.extend_from_slice(body);
        std::fs::write(&p, bytes).unwrap();
        let shown = p.display().to_string();
        let o = faultline(["validate", shown.as_str()]);
        assert_eq!(code(&o), 0, "{name}: {}", stderr(&o));
    }
    // Positions are not shifted by the mark: an error on line 2 says line 2, column 1.
    let p = dir.0.join("bad.yaml");
    std::fs::write(&p, b"\xef\xbb\xbftitle: t\nhypotesis: h\n").unwrap();
    let shown = p.display().to_string();
    let o = faultline(["validate", shown.as_str()]);
    assert_eq!(code(&o), 64);
    assert!(
        stderr(&o).contains(&format!("{shown}:2:1:")),
        "{}",
        stderr(&o)
    );
}

#[test]
fn absurdly_short_intervals_and_timeouts_are_refused_with_the_minimum() {
    let dir = TempDir::new("floors");
    let quick = std::fs::read_to_string(root().join(&examples()[0])).unwrap();
    assert!(
        quick.contains("interval:"),
        "the quickstart sets an interval"
    );
    for (value, ok) in [("1ns", false), ("9ms", false), ("10ms", true)] {
        let text: String = quick
            .lines()
            .map(|l| match l.split_once("interval:") {
                Some((indent, _)) => format!("{indent}interval: {value}\n"),
                None => format!("{l}\n"),
            })
            .collect();
        let p = dir.0.join("e.yaml");
        std::fs::write(&p, text).unwrap();
        let shown = p.display().to_string();
        let o = faultline(["validate", shown.as_str()]);
        if ok {
            assert_eq!(code(&o), 0, "{value}: {}", stderr(&o));
        } else {
            assert_eq!(code(&o), 64, "{value}: {}", stderr(&o));
            assert!(
                stderr(&o).contains(&format!(
                    "steady_state.interval: {value} is below the minimum interval of 10ms"
                )),
                "{}",
                stderr(&o)
            );
        }
    }
}

/// A file near the size limit, with thousands of probes and thousands of
/// abort conditions naming probes that do not exist, in both formats.
#[test]
fn a_huge_broken_file_prints_a_bounded_report() {
    let dir = TempDir::new("huge-broken");
    let mut yaml = String::from("title: big\nhypothesis: h\nsteady_state:\n  probes:\n");
    for i in 0..4000 {
        yaml.push_str(&format!(
            "    - name: probe-number-{i}\n      command: {{run: [\"true\"]}}\n"
        ));
    }
    yaml.push_str("method:\n  - pause: 1s\nabort:\n");
    let mut bad = 0;
    while yaml.len() < 1000 * 1024 {
        yaml.push_str(&format!(
            "  - probe: probe-numbr-{bad}\n    consecutive_failures: 1\n"
        ));
        bad += 1;
    }
    let mut json = String::from(r#"{"title": "t", "method": ["#);
    let mut refs = 0;
    while json.len() < 1000 * 1024 {
        json.push_str(&format!(r#"{{"ref": "activity-{refs}"}},"#));
        refs += 1;
    }
    json.push_str(
        r#"{"type": "action", "name": "a", "provider": {"type": "process", "path": "true"}}]}"#,
    );
    for (name, text, total) in [("big.yaml", yaml, bad), ("big.json", json, refs)] {
        let p = dir.0.join(name);
        std::fs::write(&p, text).unwrap();
        let shown = p.display().to_string();
        let o = faultline(["validate", shown.as_str()]);
        assert_eq!(code(&o), 64, "{name}");
        let (out, err) = (stdout(&o), stderr(&o));
        // 50 problems and a count of the rest; each message is short.
        assert!(
            err.len() < 64 * 1024,
            "{name}: {} bytes of errors, first line: {}",
            err.len(),
            err.lines().next().unwrap_or_default()
        );
        assert_eq!(err.lines().count(), 51, "{name}: {err}");
        assert!(
            err.lines().last().unwrap().ends_with(&format!(
                "{} more problems not shown; fix the ones above and validate again",
                total - 50
            )),
            "{name}: {err}"
        );
        assert!(
            out.contains(&format!("({total} problems)")),
            "{name}: {out}"
        );
        for cmd in ["plan", "run"] {
            let o = faultline([cmd, shown.as_str()]);
            assert_eq!(code(&o), 64, "{cmd} {name}");
            assert_eq!(stderr(&o).lines().count(), 51, "{cmd} {name}");
        }
    }
    // Suggestions and lists stay, shortened.
    let o = faultline(["validate", dir.0.join("big.yaml").to_str().unwrap()]);
    let first = stderr(&o).lines().next().unwrap().to_string();
    assert!(
        first.contains("(did you mean `probe-number-0`?)")
            && first.ends_with("probe-number-9 and 3990 more"),
        "{first}"
    );
}

#[test]
fn missing_file_and_directory_are_reported() {
    let o = faultline(["validate", "experiments/no-such-file.yaml"]);
    assert_eq!(code(&o), 64);
    assert!(
        stderr(&o).contains("experiments/no-such-file.yaml:1:1: cannot read the file"),
        "{}",
        stderr(&o)
    );
    let o = faultline(["validate", "experiments"]);
    assert_eq!(code(&o), 64);
    assert!(stderr(&o).contains("this is a directory"), "{}", stderr(&o));
}

#[test]
fn validate_of_a_mix_reports_each_file_and_exits_64() {
    let good = examples();
    let bad = invalid_files();
    let mix = vec![
        good[0].clone(),
        bad[0].clone(),
        good[1].clone(),
        bad[1].clone(),
    ];
    let o = faultline(
        ["validate"]
            .iter()
            .map(|s| s.to_string())
            .chain(mix.clone()),
    );
    assert_eq!(code(&o), 64);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), mix.len(), "one line per file:\n{out}");
    for (i, (line, f)) in lines.iter().zip(&mix).enumerate() {
        let want = if i % 2 == 0 { "ok " } else { "invalid " };
        assert!(
            line.starts_with(want) && line.contains(f.as_str()),
            "line `{line}` for {f}"
        );
    }
    // Diagnostics name only the invalid files.
    let err = stderr(&o);
    assert!(err.contains(&format!("{}:", bad[0])) && err.contains(&format!("{}:", bad[1])));
    assert!(!err.contains(&format!("{}:", good[0])), "{err}");
}

#[test]
fn validate_json_lists_problems_with_positions() {
    let good = &examples()[0];
    let bad = "experiments/invalid/abort-unknown-probe.yaml";
    let o = faultline(["validate", "--format", "json", good.as_str(), bad]);
    assert_eq!(code(&o), 64);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON on stdout");
    let arr = v.as_array().expect("an array, one entry per file");
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["valid"], true);
    assert_eq!(arr[0]["file"], good.as_str());
    assert_eq!(arr[1]["valid"], false);
    let p = &arr[1]["problems"][0];
    assert_eq!(p["path"], "abort[0].probe");
    assert_eq!(p["line"], expectation(bad).line.unwrap());
    assert!(p["message"]
        .as_str()
        .unwrap()
        .contains("did you mean `web`"));
}

// ---------------------------------------------------------------- plan

#[test]
fn plan_prints_every_phase_for_every_example() {
    const PHASES: [&str; 6] = [
        "1. preflight",
        "2. setup",
        "3. before",
        "4. method",
        "5. rollback",
        "6. after",
    ];
    for f in examples() {
        let l = faultline::experiment::load_file(&root().join(&f)).unwrap();
        let o = faultline(["plan", f.as_str()]);
        let (out, c) = (stdout(&o), code(&o));
        assert!(
            [0, 69, 77].contains(&c),
            "{f}: plan exit {c}\nstdout:\n{out}\nstderr:\n{}",
            stderr(&o)
        );
        let mut at = 0;
        for phase in PHASES {
            let i = out[at..]
                .find(&format!("\n{phase}"))
                .unwrap_or_else(|| panic!("{f}: phase `{phase}` missing or out of order:\n{out}"));
            at += i + 1;
        }
        assert!(
            out.contains(&l.experiment.title),
            "{f}: the plan names the experiment"
        );
        // Every step is listed with its number and kind.
        for (i, s) in l.experiment.method.iter().enumerate() {
            let kind = match (&s.fault, s.pause, &s.command) {
                (Some(fault), _, _) => fault.kind_name(),
                (_, Some(_), _) => "pause",
                _ => "command",
            };
            let head = format!("   {}) {} [{kind}]", i + 1, s.label(i));
            assert!(out.contains(&head), "{f}: step `{head}` missing:\n{out}");
        }
        for a in &l.experiment.abort {
            assert!(
                out.contains(&a.describe()),
                "{f}: abort condition missing:\n{out}"
            );
        }
        for p in &l.experiment.steady_state.probes {
            assert!(
                out.contains(&p.name),
                "{f}: probe `{}` missing:\n{out}",
                p.name
            );
        }
        if c == 0 {
            assert!(out.contains("Preflight passed"), "{f}:\n{out}");
        } else {
            assert!(
                out.contains("[FAIL]"),
                "{f}: a failing preflight names its check:\n{out}"
            );
            assert!(
                out.contains(&format!(
                    "Preflight FAILED: `faultline run` would stop here with exit {c}"
                )),
                "{f}:\n{out}"
            );
        }
    }
}

#[test]
fn plan_json_has_the_steps_and_the_exit_code() {
    let f = "experiments/network-delay.yaml";
    let l = faultline::experiment::load_file(&root().join(f)).unwrap();
    let o = faultline(["plan", "--format", "json", f]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON plan");
    assert_eq!(
        v["steps"].as_array().unwrap().len(),
        l.experiment.method.len()
    );
    assert_eq!(v["exit_code"].as_i64().unwrap() as i32, code(&o));
    assert_eq!(v["title"], l.experiment.title.as_str());
    assert!(v["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["what"] == "experiment file"));
}

// ---------------------------------------------------------------- schema, completions, help

#[test]
fn schema_is_json_and_matches_the_committed_file() {
    let o = faultline(["schema"]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("the schema is JSON");
    let props = v["properties"].as_object().expect("top-level properties");
    for k in [
        "title",
        "hypothesis",
        "steady_state",
        "method",
        "abort",
        "rollbacks",
        "limits",
        "setup",
    ] {
        assert!(props.contains_key(k), "schema lacks `{k}`");
    }
    let fault = v["$defs"]["Fault"]["properties"]
        .as_object()
        .expect("Fault definition");
    for k in faultline::experiment::model::FAULT_KINDS {
        assert!(fault.contains_key(k), "schema lacks fault kind `{k}`");
    }
    let committed = std::fs::read(root().join("docs/faultline.schema.json")).unwrap_or_default();
    assert!(
        committed == o.stdout,
        "docs/faultline.schema.json is out of date: run `faultline schema > docs/faultline.schema.json`"
    );
}

#[test]
fn completions_match_the_committed_files() {
    for (shell, file) in [
        ("bash", "completions/faultline.bash"),
        ("zsh", "completions/_faultline"),
        ("fish", "completions/faultline.fish"),
    ] {
        let o = faultline(["completions", shell]);
        assert_eq!(code(&o), 0, "{shell}: {}", stderr(&o));
        assert!(
            stdout(&o).contains("validate"),
            "{shell} completions lack subcommands"
        );
        let committed = std::fs::read(root().join(file)).unwrap_or_default();
        assert!(
            committed == o.stdout,
            "{file} is out of date: run `faultline completions {shell} > {file}`"
        );
    }
}

#[test]
fn man_pages_match_the_committed_files() {
    let dir = tempfile::tempdir().unwrap();
    let o = faultline(["man", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let names = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let fresh = names(dir.path());
    let committed = names(&root().join("docs/man"));
    let fix = "run `faultline man --dir docs/man` (after `rm docs/man/*`)";
    assert_eq!(fresh, committed, "docs/man is out of date: {fix}");
    for page in ["faultline.1", "faultline-run.1", "faultline-recover.1"] {
        assert!(fresh.iter().any(|f| f == page), "no {page} among {fresh:?}");
    }
    assert!(
        !fresh
            .iter()
            .any(|f| f.contains("watchdog") || f.contains("stress-worker")),
        "internal commands get no page: {fresh:?}"
    );
    for f in &fresh {
        let a = std::fs::read(dir.path().join(f)).unwrap();
        let b = std::fs::read(root().join("docs/man").join(f)).unwrap();
        assert!(a == b, "docs/man/{f} is out of date: {fix}");
    }
    // The top page on stdout is the committed faultline.1, with the exit codes.
    let o = faultline(["man"]);
    assert_eq!(code(&o), 0);
    assert_eq!(
        o.stdout,
        std::fs::read(root().join("docs/man/faultline.1")).unwrap()
    );
    let page = stdout(&o);
    assert!(
        page.starts_with(".ie \\n(.g") || page.contains(".TH faultline 1"),
        "roff: {page}"
    );
    assert!(
        page.contains("rollback failed"),
        "the exit codes are in the page"
    );
}

#[test]
fn help_of_every_subcommand_shows_an_example() {
    for sub in [
        "run",
        "validate",
        "plan",
        "status",
        "recover",
        "report",
        "history",
        "export",
        "schema",
        "completions",
        "man",
    ] {
        let o = faultline([sub, "--help"]);
        assert_eq!(code(&o), 0, "{sub} --help: {}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.contains("Example"),
            "`faultline {sub} --help` shows no example:\n{out}"
        );
        assert!(
            out.contains("faultline "),
            "`faultline {sub} --help` example lacks a command:\n{out}"
        );
    }
    let o = faultline(["--help"]);
    assert_eq!(code(&o), 0);
    let out = stdout(&o);
    for c in ["64", "69", "77", "130"] {
        assert!(
            out.contains(c),
            "top-level --help lacks exit code {c}:\n{out}"
        );
    }
    // Hidden internals stay hidden.
    assert!(
        !out.contains("stress-worker") && !out.contains("watchdog"),
        "{out}"
    );
}

#[test]
fn version_is_the_crate_version() {
    let o = faultline(["--version"]);
    assert_eq!(code(&o), 0);
    assert_eq!(
        stdout(&o).trim(),
        format!("faultline {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_64() {
    let o = faultline(["validate"]);
    assert_eq!(code(&o), 64, "no file given: {}", stderr(&o));
    let o = faultline(["no-such-command"]);
    assert_eq!(code(&o), 64, "{}", stderr(&o));
}

// ---------------------------------------------------------------- docs

/// docs/experiment-format.md names every field of the schema, every fault
/// kind has its own section, every exit code is in its table, and its
/// complete example is valid.
#[test]
fn the_format_doc_covers_every_field_and_its_example_is_valid() {
    let doc = std::fs::read_to_string(root().join("docs/experiment-format.md")).unwrap();
    let schema: serde_json::Value =
        serde_json::from_slice(&faultline(["schema"]).stdout).expect("schema JSON");
    let mut fields = std::collections::BTreeSet::new();
    fn collect(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::Object(props)) = m.get("properties") {
                    out.extend(props.keys().cloned());
                }
                m.values().for_each(|x| collect(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    collect(&schema, &mut fields);
    assert!(
        fields.len() > 80,
        "too few fields found in the schema: {fields:?}"
    );
    let missing: Vec<&String> = fields
        .iter()
        .filter(|f| !doc.contains(&format!("`{f}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/experiment-format.md does not describe: {missing:?}"
    );
    for k in faultline::experiment::model::FAULT_KINDS {
        assert!(
            doc.contains(&format!("\n### {k}\n")),
            "no `### {k}` section in the format doc"
        );
    }
    use faultline::exit::*;
    for c in [
        HELD,
        DEVIATED,
        ABORTED,
        NOT_STEADY,
        ROLLBACK_FAILED,
        INCONCLUSIVE,
        INVALID,
        PRECONDITION,
        PRIVILEGES,
        INTERNAL,
        INTERRUPTED,
    ] {
        assert!(
            doc.contains(&format!("\n| {c} | ")),
            "exit code {c} missing from the format doc's table"
        );
    }
    let example = doc
        .split("## A complete example")
        .nth(1)
        .and_then(|s| s.split("```yaml\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("a yaml block after `## A complete example`");
    if let Err(d) = faultline::experiment::load_bytes("docs example", example.as_bytes()) {
        panic!("the complete example in the format doc is invalid: {d:?}");
    }
}

// ---------------------------------------------------------------- CI never prompts

/// Runs faultline on a pseudo-terminal (util-linux `script`), feeding `input`.
/// None when `script` is missing.
fn on_a_terminal(args: &str, ci: Option<&str>, input: &str) -> Option<(i32, String)> {
    on_a_terminal_after(args, ci, input, std::time::Duration::from_millis(1500))
}

/// As [`on_a_terminal`], answering after `delay`.
fn on_a_terminal_after(
    args: &str,
    ci: Option<&str>,
    input: &str,
    delay: std::time::Duration,
) -> Option<(i32, String)> {
    use std::io::Write;
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &format!("'{BIN}' {args}"), "/dev/null"])
        .current_dir(root())
        .env("NO_COLOR", "1")
        .env_remove("CI")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(v) = ci {
        cmd.env("CI", v);
    }
    let mut child = cmd.spawn().ok()?;
    let mut stdin = child.stdin.take()?;
    // The answer arrives after the question is asked (or is never read).
    let input = input.to_string();
    let feeder = std::thread::spawn(move || {
        std::thread::sleep(delay);
        let _ = stdin.write_all(input.as_bytes());
    });
    let o = child.wait_with_output().ok()?;
    let _ = feeder.join();
    Some((
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    ))
}

#[test]
fn in_ci_a_run_that_would_ask_fails_at_once_and_says_to_pass_yes() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` (a pseudo-terminal) is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().join("state");
    let args = format!(
        "run experiments/quickstart.yaml --no-journal --state-dir '{}'",
        sd.display()
    );
    let (code, out) = on_a_terminal(&args, Some("true"), "y\n").unwrap();
    assert_eq!(code, 64, "CI with a terminal must not prompt: {out}");
    assert!(out.contains("--yes"), "says what to pass: {out}");
    assert!(!out.contains("Continue?"), "never asks in CI: {out}");
    assert!(
        !out.contains("── setup ──"),
        "nothing ran before refusing: {out}"
    );

    // Outside CI the same terminal is asked, and "no" changes nothing.
    let (code, out) = on_a_terminal(&args, None, "n\n").unwrap();
    assert!(out.contains("Continue? [y/N]"), "asks on a terminal: {out}");
    assert_eq!(code, 130, "declined: {out}");
    assert!(out.contains("not confirmed"), "{out}");

    // CI=false is not CI.
    let (code, out) = on_a_terminal(&args, Some("false"), "n\n").unwrap();
    assert!(out.contains("Continue? [y/N]"), "CI=false asks: {out}");
    assert_eq!(code, 130, "{out}");
}

#[test]
fn time_at_the_confirmation_prompt_is_not_the_runs() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` (a pseudo-terminal) is not installed");
        return;
    }
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: the quickstart needs python3");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().join("state");
    let journal = dir.path().join("j.json");
    let args = format!(
        "run experiments/quickstart.yaml --state-dir '{}' --journal '{}'",
        sd.display(),
        journal.display()
    );
    let wait = std::time::Duration::from_secs(5);
    let t0 = std::time::Instant::now();
    let (code, out) = on_a_terminal_after(&args, None, "y\n", wait).unwrap();
    let wall_ms = t0.elapsed().as_secs_f64() * 1000.0;
    assert!(out.contains("Continue? [y/N]"), "asked: {out}");
    assert_eq!(code, 0, "the quickstart held once confirmed: {out}");
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&journal).expect("a journal")).unwrap();
    let total = j["timings"]["total_ms"].as_f64().expect("timings.total_ms");
    // The answer came 5 s after the start; at least 4 s of that was spent
    // at the prompt (preflight takes well under a second even when busy).
    assert!(
        total <= wall_ms - 4000.0,
        "the run's total ({total:.0} ms) counts the prompt (wall {wall_ms:.0} ms)"
    );
    assert!(
        total > 3000.0,
        "the 3 s pause is still counted: {total:.0} ms"
    );
}

#[test]
fn the_confirmation_prompt_lists_the_resolved_targets() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` (a pseudo-terminal) is not installed");
        return;
    }
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = sleeper.id();
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("e.yaml");
    std::fs::write(
        &exp,
        format!(
            "title: prompt\nhypothesis: h\nsteady_state:\n  interval: 100ms\n  probes:\n    - name: t\n      command: {{run: [\"true\"]}}\n      before: {{samples: 1}}\nmethod:\n  - name: freeze it\n    fault:\n      process_pause:\n        target: {{pid: {pid}}}\n    duration: 1s\n"
        ),
    )
    .unwrap();
    let args = format!(
        "run '{}' --state-dir '{}' --no-journal",
        exp.display(),
        dir.path().join("state").display()
    );
    let got = on_a_terminal(&args, None, "n\n");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let (code, out) = got.unwrap();
    assert_eq!(code, 130, "declined: {out}");
    let prompt = out.split("Continue?").next().unwrap_or_default();
    assert!(
        prompt.contains("On the targets found now:") && prompt.contains(&pid.to_string()),
        "the prompt names the process it would pause: {out}"
    );
}
