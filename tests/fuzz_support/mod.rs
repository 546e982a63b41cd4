//! A structured fuzzer for the experiment loader, shared by the quick run in
//! `cargo test --test fuzz_loader` and the long run in
//! `cargo run --release --example fuzz_loader -- --seconds 600`.
//!
//! Inputs come from a seeded RNG, so every input is reproducible from
//! `(seed, case)`. Each one is a valid example file or a random YAML document,
//! put through a few structure-aware mutations (byte flips, truncation,
//! duplicated or deleted lines, random keys and values, deep nesting,
//! anchors and aliases, huge numbers, odd unicode). It is loaded with
//! `faultline::experiment::load_bytes` on a worker thread, and the run fails
//! on a panic, on an input that takes longer than the per-input limit (a
//! hang), or on a broken invariant:
//! - every diagnostic points inside the file (line and column >= 1, line at
//!   most one past the last line) and has a message;
//! - an experiment that loads serializes to JSON, and that JSON (JSON is YAML)
//!   loads again to the same experiment (the journal depends on this).
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Field names of the format: random keys are mostly drawn from these so the
/// mutations get past `deny_unknown_fields` and reach deeper code.
pub const KEYS: &[&str] = &[
    "title",
    "description",
    "hypothesis",
    "tags",
    "limits",
    "max_duration",
    "blast_radius",
    "max_targets",
    "setup",
    "name",
    "start",
    "cwd",
    "env",
    "ready",
    "stop_signal",
    "stop_timeout",
    "timeout",
    "steady_state",
    "interval",
    "probes",
    "http",
    "tcp",
    "command",
    "process",
    "prometheus",
    "url",
    "method",
    "headers",
    "body",
    "insecure",
    "host",
    "port",
    "run",
    "pidfile",
    "cmdline",
    "query",
    "expect",
    "status",
    "latency_below",
    "body_contains",
    "body_matches",
    "json",
    "pointer",
    "equals",
    "exit_code",
    "stdout_contains",
    "stdout_matches",
    "stderr_contains",
    "stderr_matches",
    "running",
    "count",
    "value",
    "min",
    "max",
    "before",
    "samples",
    "min_success",
    "during",
    "after",
    "within",
    "successes",
    "fault",
    "pause",
    "duration",
    "background",
    "abort",
    "probe",
    "consecutive_failures",
    "failure_ratio",
    "latency_above",
    "percentile",
    "window",
    "rollbacks",
    "expect_exit",
    "process_kill",
    "process_pause",
    "network",
    "blackhole",
    "partition",
    "dns",
    "packet_loss",
    "bandwidth",
    "cpu_limit",
    "memory_limit",
    "io_limit",
    "cpu_stress",
    "memory_stress",
    "disk_fill",
    "target",
    "pid",
    "children_of",
    "children_of_pidfile",
    "cgroup",
    "systemd_unit",
    "mode",
    "percent",
    "seed",
    "allow_none",
    "signal",
    "every",
    "interface",
    "netns",
    "direction",
    "delay",
    "time",
    "jitter",
    "correlation",
    "distribution",
    "loss",
    "gilbert_elliott",
    "p",
    "r",
    "bad_loss",
    "good_loss",
    "corrupt",
    "duplicate",
    "reorder",
    "gap",
    "rate",
    "filter",
    "destination",
    "source",
    "ports",
    "source_ports",
    "protocol",
    "replace_existing_qdisc",
    "action",
    "peers",
    "resolvers",
    "burst",
    "latency",
    "cpus",
    "limit",
    "kind",
    "device",
    "read_bytes_per_sec",
    "write_bytes_per_sec",
    "read_iops",
    "write_iops",
    "workers",
    "load",
    "size",
    "ramp",
    "path",
    "fill_to",
    "reserve",
];

/// Scalar values, typical and hostile.
pub const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "3",
    "65535",
    "65536",
    "2147483647",
    "-2147483648",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999999",
    "1e308",
    "1e309",
    "-1e309",
    ".inf",
    "-.inf",
    ".nan",
    "0.0000001",
    "1.5",
    "0x1F",
    "0o17",
    "~",
    "null",
    "true",
    "false",
    "yes",
    "no",
    "on",
    "\"\"",
    "''",
    "1s",
    "0s",
    "250ms",
    "1m30s",
    "99999999h",
    "0.0000000001s",
    "1.5.5s",
    "5 m",
    "1ns",
    "50%",
    "100%",
    "100.5%",
    "-5%",
    "0%",
    "1e2%",
    "NaN%",
    "64MiB",
    "1GiB",
    "0B",
    "1e30GiB",
    "99999999999999TiB",
    "1mbit",
    "0bit",
    "9999999gbit",
    "SIGKILL",
    "KILL",
    "sigterm",
    "9",
    "0",
    "64",
    "SIGRTMIN",
    "2xx",
    "\"200-299\"",
    "[200, 204]",
    "\"600\"",
    "\"299-200\"",
    "http://127.0.0.1:8080/",
    "https://[::1]:443/x",
    "ftp://x/",
    "http://",
    "not a url",
    "10.0.0.0/24",
    "::1/129",
    "10.0.0.1/33",
    "\"[a-z\"",
    "\"(?P<x\"",
    "\"a{99999999}\"",
    "egress",
    "ingress",
    "both",
    "all",
    "one",
    "count",
    "percent",
    "soft",
    "hard",
    "drop",
    "reject",
    "tcp",
    "udp",
    "icmp",
    "/tmp",
    "relative/path",
    "\"\\u0000\"",
    "\"\\uFFFF\"",
    "\"\\uD800\"",
    "\"é́́\"",
    "\"\u{202e}evil\"",
    "\"\u{1F4A5}\"",
    "\"\u{FEFF}bom\"",
    "\"ǅ\"",
    "!!binary aGVsbG8=",
    "!!str 5",
    "!!int \"x\"",
    "!!float abc",
    "!custom {}",
    "!!map []",
    "{}",
    "[]",
    "[[]]",
    "{a: {b: {c: d}}}",
    "[1, [2, [3, [4]]]]",
    "*undefined",
    "&a 1",
    "|\n  block",
    ">-\n  fold",
    "\"multi\nline\"",
    "? complex\n: key",
    "<<: *a",
    "--- ",
    "...",
    "%YAML 1.2",
    "@reserved",
    "`reserved",
    "\t",
    "- - -",
];

/// Odd unicode and control characters to splice into inputs.
pub const ODD: &[&str] = &[
    "\u{0}",
    "\u{7}",
    "\u{1b}[31m",
    "\u{85}",
    "\u{2028}",
    "\u{2029}",
    "\u{feff}",
    "\u{200b}",
    "\u{202e}",
    "\u{fffd}",
    "\u{10ffff}",
    "\u{1F600}",
    "é",
    "\u{301}\u{301}\u{301}",
    "\r",
    "\r\n",
    "\t",
    "\\",
    "\"",
    "'",
    ":",
    ": ",
    " #",
    "- ",
    "? ",
    "&x ",
    "*x",
    "!",
    "|",
    ">",
    "{",
    "}",
    "[",
    "]",
    ",",
    "%",
    "@",
    "`",
];

/// The seed inputs: valid example experiments and invalid ones.
pub struct Corpus {
    pub valid: Vec<Vec<u8>>,
    pub invalid: Vec<Vec<u8>>,
}

/// Reads the seed corpus: every example experiment and every invalid example.
pub fn load_corpus(root: &Path) -> Corpus {
    Corpus {
        valid: read_dir_files(&root.join("experiments")),
        invalid: read_dir_files(&root.join("experiments/invalid")),
    }
}

fn read_dir_files(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return out;
        };
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                if let Ok(b) = std::fs::read(&p) {
                    if b.len() <= 64 * 1024 {
                        out.push(b);
                    }
                }
            }
        }
    }
    assert!(!out.is_empty(), "no seed corpus found in {}", dir.display());
    out
}

/// The RNG of one case: independent of every other case, so `(seed, case)`
/// regenerates exactly the same input.
pub fn case_rng(seed: u64, case: u64) -> StdRng {
    // splitmix64 of the pair, so neighbouring cases get unrelated streams.
    let mut z = seed ^ case.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

fn pick<T: Copy>(rng: &mut StdRng, xs: &[T]) -> T {
    xs[rng.random_range(0..xs.len())]
}

/// A random scalar: from the table, a random number, or random text.
fn random_scalar(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        0..=5 => pick(rng, VALUES).to_string(),
        6 => rng.random::<i64>().to_string(),
        7 => format!(
            "{}",
            rng.random::<f64>() * 10f64.powi(rng.random_range(-20..40))
        ),
        8 => {
            let n = rng.random_range(1..6);
            format!(
                "{}{}",
                rng.random_range(0..100_000),
                pick(
                    rng,
                    &["ms", "s", "m", "h", "us", "%", "MiB", "mbit", "kbps", "", "x"]
                )
                .repeat(n.min(2))
            )
        }
        _ => {
            let len = rng.random_range(0..12);
            let s: String = (0..len).map(|_| pick(rng, ODD).to_string()).collect();
            format!("{:?}", s)
        }
    }
}

/// A random YAML document, mostly shaped like an experiment.
pub fn random_yaml(rng: &mut StdRng) -> String {
    let mut out = String::new();
    if rng.random_bool(0.3) {
        out.push_str("# yaml-language-server: $schema=../docs/faultline.schema.json\n");
    }
    let top = rng.random_range(1..8);
    for _ in 0..top {
        let key = pick(rng, KEYS);
        out.push_str(key);
        out.push(':');
        random_node(rng, &mut out, 1, 0);
    }
    out
}

fn random_node(rng: &mut StdRng, out: &mut String, indent: usize, depth: usize) {
    let pad = "  ".repeat(indent);
    let choice = if depth > 5 { 0 } else { rng.random_range(0..6) };
    match choice {
        0 | 1 => {
            out.push(' ');
            out.push_str(&random_scalar(rng));
            out.push('\n');
        }
        2 => {
            // Block mapping.
            out.push('\n');
            for _ in 0..rng.random_range(1..5) {
                out.push_str(&pad);
                out.push_str(pick(rng, KEYS));
                out.push(':');
                random_node(rng, out, indent + 1, depth + 1);
            }
        }
        3 => {
            // Block sequence of mappings.
            out.push('\n');
            for _ in 0..rng.random_range(1..4) {
                out.push_str(&pad);
                out.push_str("- ");
                out.push_str(pick(rng, KEYS));
                out.push(':');
                random_node(rng, out, indent + 2, depth + 1);
            }
        }
        4 => {
            // Flow mapping.
            out.push_str(" {");
            for i in 0..rng.random_range(0..4) {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(pick(rng, KEYS));
                out.push_str(": ");
                out.push_str(&random_scalar(rng).replace('\n', " "));
            }
            out.push_str("}\n");
        }
        _ => {
            // Flow sequence.
            out.push_str(" [");
            for i in 0..rng.random_range(0..5) {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&random_scalar(rng).replace('\n', " "));
            }
            out.push_str("]\n");
        }
    }
}

fn lines_of(input: &[u8]) -> Vec<Vec<u8>> {
    input
        .split_inclusive(|b| *b == b'\n')
        .map(|l| l.to_vec())
        .collect()
}

fn indent_of(line: &[u8]) -> usize {
    line.iter().take_while(|b| **b == b' ').count()
}

/// One random mutation of `input`.
pub fn mutate(rng: &mut StdRng, input: &mut Vec<u8>) {
    let len = input.len();
    match rng.random_range(0..20) {
        // Byte-level.
        0 if len > 0 => {
            let i = rng.random_range(0..len);
            input[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.random_range(0..len);
            input[i] = rng.random();
        }
        2 => {
            let i = rng.random_range(0..=len);
            let odd = pick(rng, ODD).as_bytes().to_vec();
            input.splice(i..i, odd);
        }
        3 if len > 0 => {
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(64));
            input.drain(i..i + n);
        }
        4 if len > 0 => {
            input.truncate(rng.random_range(0..len));
        }
        // Line-level.
        5 | 6 => {
            let mut lines = lines_of(input);
            if !lines.is_empty() {
                let i = rng.random_range(0..lines.len());
                let copies = if rng.random_bool(0.9) {
                    1
                } else {
                    rng.random_range(2..50)
                };
                for _ in 0..copies {
                    let l = lines[i].clone();
                    lines.insert(i, l);
                }
                *input = lines.concat();
            }
        }
        7 => {
            let mut lines = lines_of(input);
            if !lines.is_empty() {
                lines.remove(rng.random_range(0..lines.len()));
                *input = lines.concat();
            }
        }
        8 => {
            let mut lines = lines_of(input);
            if lines.len() > 1 {
                let a = rng.random_range(0..lines.len());
                let b = rng.random_range(0..lines.len());
                lines.swap(a, b);
                *input = lines.concat();
            }
        }
        // Structure-aware: insert `key: value` at the indentation of a line.
        9..=11 => {
            let mut lines = lines_of(input);
            let i = rng.random_range(0..=lines.len());
            let ind = lines.get(i).map(|l| indent_of(l)).unwrap_or(0);
            let key = pick(rng, KEYS);
            let line = format!("{}{}: {}\n", " ".repeat(ind), key, random_scalar(rng));
            lines.insert(i, line.into_bytes());
            *input = lines.concat();
        }
        // Replace the value of a `key: value` line.
        12..=14 => {
            let mut lines = lines_of(input);
            let with_value: Vec<usize> = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| {
                    let s = String::from_utf8_lossy(l);
                    s.contains(": ") && !s.trim_start().starts_with('#')
                })
                .map(|(i, _)| i)
                .collect();
            if !with_value.is_empty() {
                let i = pick(rng, &with_value);
                let s = String::from_utf8_lossy(&lines[i]).into_owned();
                let (k, _) = s.split_once(": ").unwrap();
                let v = random_scalar(rng).replace('\n', " ");
                lines[i] = format!("{k}: {v}\n").into_bytes();
                *input = lines.concat();
            }
        }
        // Deep nesting, flow or block.
        15 => {
            let depth = rng.random_range(1..200);
            let nested = if rng.random_bool(0.5) {
                format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
            } else {
                format!("{}1{}", "{a: ".repeat(depth), "}".repeat(depth))
            };
            let key = pick(rng, KEYS);
            input.extend_from_slice(format!("\n{key}: {nested}\n").as_bytes());
        }
        // Anchors and aliases: name a value and reuse it, maybe a lot.
        16 => {
            let mut lines = lines_of(input);
            if lines.len() > 2 {
                let a = rng.random_range(0..lines.len());
                let s = String::from_utf8_lossy(&lines[a]).into_owned();
                if let Some((k, v)) = s.split_once(": ") {
                    lines[a] = format!("{k}: &anc{a} {v}").into_bytes();
                    let n = if rng.random_bool(0.8) {
                        1
                    } else {
                        rng.random_range(2..100)
                    };
                    for _ in 0..n {
                        let b = rng.random_range(0..lines.len());
                        let t = String::from_utf8_lossy(&lines[b]).into_owned();
                        if let Some((k2, _)) = t.split_once(": ") {
                            lines[b] = format!("{k2}: *anc{a}\n").into_bytes();
                        }
                    }
                    *input = lines.concat();
                }
            }
        }
        17 => {
            // A merge key or a billion-laughs fragment.
            let frag = if rng.random_bool(0.5) {
                "base: &base {title: t, hypothesis: h}\nother:\n  <<: *base\n".to_string()
            } else {
                let mut s = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x]\n");
                for i in 1..rng.random_range(2..12) {
                    let p = i - 1;
                    s.push_str(&format!(
                        "l{i}: &l{i} [*l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}]\n"
                    ));
                }
                s
            };
            let at = if rng.random_bool(0.5) { 0 } else { input.len() };
            input.splice(at..at, frag.into_bytes());
        }
        // Splice a chunk of a random document in.
        18 => {
            let doc = random_yaml(rng);
            let at = rng.random_range(0..=input.len());
            input.splice(at..at, doc.into_bytes());
        }
        // Change indentation of one line.
        _ => {
            let mut lines = lines_of(input);
            if !lines.is_empty() {
                let i = rng.random_range(0..lines.len());
                let l = &mut lines[i];
                if rng.random_bool(0.5) {
                    let n = rng.random_range(1..5);
                    l.splice(0..0, std::iter::repeat_n(b' ', n));
                } else {
                    let n = indent_of(l).min(rng.random_range(1..5));
                    l.drain(0..n);
                }
                *input = lines.concat();
            }
        }
    }
}

/// The input of case `case` of run `seed`.
pub fn generate(corpus: &Corpus, seed: u64, case: u64) -> Vec<u8> {
    let mut rng = case_rng(seed, case);
    let mut input = match rng.random_range(0..10) {
        0..=5 => corpus.valid[rng.random_range(0..corpus.valid.len())].clone(),
        6 | 7 => corpus.invalid[rng.random_range(0..corpus.invalid.len())].clone(),
        _ => random_yaml(&mut rng).into_bytes(),
    };
    // Mostly a few mutations; sometimes none (the round trip of valid files
    // is checked too), sometimes many.
    let n = match rng.random_range(0..10) {
        0 => 0,
        1..=7 => rng.random_range(1..4),
        _ => rng.random_range(4..30),
    };
    for _ in 0..n {
        mutate(&mut rng, &mut input);
    }
    input
}

/// Why an input failed.
#[derive(Debug)]
pub enum Finding {
    Panic(String),
    Hang(Duration),
    Invariant(String),
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Panic(m) => write!(f, "the loader panicked: {m}"),
            Finding::Hang(d) => write!(f, "the loader took longer than {d:?} (a hang)"),
            Finding::Invariant(m) => write!(f, "broken invariant: {m}"),
        }
    }
}

/// JSON with the characters the loader does not allow raw (C0/C1 controls,
/// DEL, the line separators U+2028/U+2029, U+FFFE, U+FFFF) written as `\uXXXX` escapes, which both JSON and YAML
/// double-quoted strings read back as the same character. Such characters can
/// only come from escapes in the input, and only stand inside strings.
fn yaml_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for ch in json.chars() {
        let c = ch as u32;
        let printable = matches!(c, 0x9 | 0xA | 0xD | 0x20..=0x7E | 0xA0..=0x2027 | 0x202A..=0xD7FF | 0xE000..=0xFFFD | 0x10000..);
        if printable {
            out.push(ch);
        } else {
            out.push_str(&format!("\\u{c:04X}"));
        }
    }
    out
}

/// Loads `input` and checks the invariants. Runs on the worker thread.
pub fn check_one(input: &[u8]) -> Result<bool, String> {
    let file = "fuzz.yaml";
    match faultline::experiment::load_bytes(file, input) {
        Err(diags) => {
            if diags.is_empty() {
                return Err("load_bytes returned an error with no diagnostics".into());
            }
            // YAML breaks lines at `\n`, `\r\n` and a lone `\r`.
            let lines = input
                .iter()
                .enumerate()
                .filter(|(i, b)| **b == b'\n' || (**b == b'\r' && input.get(i + 1) != Some(&b'\n')))
                .count()
                + 1;
            for d in &diags {
                if d.line == 0 || d.column == 0 {
                    return Err(format!("diagnostic at line/column 0: {d}"));
                }
                if d.line > lines + 1 {
                    return Err(format!(
                        "diagnostic past the end of the file ({lines} lines): {d}"
                    ));
                }
                if d.message.trim().is_empty() {
                    return Err(format!(
                        "diagnostic without a message at {}:{}",
                        d.line, d.column
                    ));
                }
                if d.file != file {
                    return Err(format!("diagnostic names file `{}`, not `{file}`", d.file));
                }
            }
            Ok(false)
        }
        Ok(loaded) => {
            let json = serde_json::to_string_pretty(&loaded.experiment)
                .map_err(|e| format!("a loaded experiment does not serialize to JSON: {e}"))?;
            let again = faultline::experiment::load_bytes("roundtrip.json", yaml_safe(&json).as_bytes())
                .map_err(|d| {
                    let msgs: Vec<String> = d.iter().map(|d| d.to_string()).collect();
                    format!(
                        "a loaded experiment, serialized to JSON, does not load again:\n{}\n--- JSON ---\n{json}",
                        msgs.join("\n")
                    )
                })?;
            let json2 = serde_json::to_string_pretty(&again.experiment).unwrap_or_default();
            if json != json2 {
                return Err(format!(
                    "the JSON round trip changed the experiment:\n--- first ---\n{json}\n--- second ---\n{json2}"
                ));
            }
            Ok(true)
        }
    }
}

/// Runs inputs on one worker thread with a time limit each.
pub struct Runner {
    tx: mpsc::Sender<Vec<u8>>,
    rx: mpsc::Receiver<Result<bool, String>>,
    limit: Duration,
}

impl Runner {
    /// A runner of the loader check [`check_one`].
    pub fn new(limit: Duration) -> Self {
        Self::with_check(limit, check_one)
    }

    /// A runner of any check (the tests of the runner itself use this).
    pub fn with_check(limit: Duration, check: fn(&[u8]) -> Result<bool, String>) -> Self {
        // Panics on the worker are expected and reported by us; any other
        // thread's panic (a failing test) is printed as usual.
        static QUIET_WORKERS: std::sync::Once = std::sync::Once::new();
        QUIET_WORKERS.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if std::thread::current().name() != Some("fuzz-worker") {
                    previous(info)
                }
            }));
        });
        let (tx, in_rx) = mpsc::channel::<Vec<u8>>();
        let (out_tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("fuzz-worker".into())
            .stack_size(64 * 1024 * 1024)
            .spawn(move || {
                for input in in_rx {
                    let r = std::panic::catch_unwind(|| check(&input)).unwrap_or_else(|p| {
                        let msg = p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "(no message)".into());
                        Err(format!("PANIC: {msg}"))
                    });
                    if out_tx.send(r).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn the fuzz worker");
        Runner { tx, rx, limit }
    }

    /// Ok(true) when the input loaded, Ok(false) when it was rejected cleanly.
    pub fn run(&self, input: Vec<u8>) -> Result<bool, Finding> {
        let start = Instant::now();
        self.tx
            .send(input)
            .map_err(|_| Finding::Panic("the worker thread is gone".into()))?;
        match self.rx.recv_timeout(self.limit) {
            Ok(Ok(loaded)) => Ok(loaded),
            Ok(Err(m)) => match m.strip_prefix("PANIC: ") {
                Some(p) => Err(Finding::Panic(p.to_string())),
                None => Err(Finding::Invariant(m)),
            },
            Err(_) => Err(Finding::Hang(start.elapsed())),
        }
    }
}

/// Writes a failing input next to a note on how to reproduce it; returns its path.
pub fn save_failure(dir: &Path, seed: u64, case: u64, input: &[u8], finding: &Finding) -> PathBuf {
    let _ = std::fs::create_dir_all(dir);
    let path = dir.join(format!("seed{seed}-case{case}.yaml"));
    let _ = std::fs::write(&path, input);
    let _ = std::fs::write(
        dir.join(format!("seed{seed}-case{case}.txt")),
        format!(
            "{finding}\n\nreproduce: cargo run --release --example fuzz_loader -- --seed {seed} --case {case}\nor:        cargo run --release --example fuzz_loader -- --replay {}\n",
            path.display()
        ),
    );
    path
}

/// Outcome of a fuzz run.
pub struct Summary {
    pub inputs: u64,
    pub loaded: u64,
    pub elapsed: Duration,
}

/// Fuzzes until `max_inputs` or `max_time`, whichever is first. On a finding,
/// saves the input under `fail_dir` and returns a message naming the seed,
/// the case and the file.
pub fn fuzz(
    root: &Path,
    fail_dir: &Path,
    seed: u64,
    max_inputs: u64,
    max_time: Duration,
    limit: Duration,
    mut progress: impl FnMut(&Summary),
) -> Result<Summary, String> {
    let corpus = load_corpus(root);
    let runner = Runner::new(limit);
    let start = Instant::now();
    let mut s = Summary {
        inputs: 0,
        loaded: 0,
        elapsed: Duration::ZERO,
    };
    let mut last_report = Instant::now();
    for case in 0..max_inputs {
        if start.elapsed() >= max_time {
            break;
        }
        let input = generate(&corpus, seed, case);
        match runner.run(input.clone()) {
            Ok(true) => s.loaded += 1,
            Ok(false) => {}
            Err(f) => {
                let path = save_failure(fail_dir, seed, case, &input, &f);
                return Err(format!(
                    "fuzz input failed (seed {seed}, case {case}): {f}\ninput saved to {}\nreproduce: cargo run --release --example fuzz_loader -- --seed {seed} --case {case}",
                    path.display()
                ));
            }
        }
        s.inputs += 1;
        if last_report.elapsed() >= Duration::from_secs(10) {
            s.elapsed = start.elapsed();
            progress(&s);
            last_report = Instant::now();
        }
    }
    s.elapsed = start.elapsed();
    Ok(s)
}
