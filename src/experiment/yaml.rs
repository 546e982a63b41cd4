//! All YAML handling lives here, so the YAML crate could be swapped.
//!
//! Two passes over the text: a cheap event pass (yaml-rust2) that rejects
//! hostile input (too deep, too many aliases) and records where every field
//! path starts, then serde_yaml with serde_path_to_error for the typed model.
//! Errors from either pass carry file, field path, line and column.

use super::Diagnostic;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Largest experiment file accepted. Real experiments are a few KiB.
pub const MAX_FILE_SIZE: usize = 1024 * 1024;
/// Deepest nesting accepted (the model itself is less than 10 deep).
pub const MAX_DEPTH: usize = 64;
/// Most aliases (`*name`) accepted in one file.
pub const MAX_ALIASES: usize = 64;

/// Where each field path (`method[2].fault.network.loss`) starts in the file.
#[derive(Debug, Default, Clone)]
pub struct SpanIndex {
    keys: HashMap<String, (usize, usize)>,
    values: HashMap<String, (usize, usize)>,
    /// Paths whose value is a scalar (not a mapping or a list).
    scalars: std::collections::HashSet<String>,
}

impl SpanIndex {
    /// Line and column (1-based) of the key of `path`, or of its value, or of
    /// the nearest parent that is known.
    pub fn locate(&self, path: &str) -> (usize, usize) {
        let mut p = path.to_string();
        loop {
            if let Some(&lc) = self.keys.get(&p).or_else(|| self.values.get(&p)) {
                return lc;
            }
            match parent_path(&p) {
                Some(parent) => p = parent,
                None => return self.values.get("").copied().unwrap_or((1, 1)),
            }
        }
    }

    /// Line and column of the scalar value at exactly `path`, if there is one.
    pub fn exact_scalar(&self, path: &str) -> Option<(usize, usize)> {
        if self.scalars.contains(path) {
            self.values.get(path).copied()
        } else {
            None
        }
    }

    /// Line and column of the key of exactly `path`, if it is in the file.
    pub fn exact_key(&self, path: &str) -> Option<(usize, usize)> {
        self.keys.get(path).copied()
    }

    /// Line and column of the value at `path` (falls back to `locate`).
    pub fn locate_value(&self, path: &str) -> (usize, usize) {
        self.values
            .get(path)
            .copied()
            .unwrap_or_else(|| self.locate(path))
    }
}

fn parent_path(p: &str) -> Option<String> {
    if p.is_empty() {
        return None;
    }
    if p.ends_with(']') {
        if let Some(i) = p.rfind('[') {
            return Some(p[..i].to_string());
        }
    }
    match p.rfind('.') {
        Some(i) => Some(p[..i].to_string()),
        None => Some(String::new()),
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
        start: Marker,
    },
    Seq {
        path: String,
        index: usize,
        start: Marker,
    },
}

impl Frame {
    fn start(&self) -> &Marker {
        match self {
            Frame::Map { start, .. } | Frame::Seq { start, .. } => start,
        }
    }
}

struct Indexer {
    stack: Vec<Frame>,
    index: SpanIndex,
    aliases: usize,
    max_depth_seen: usize,
    error: Option<(String, Marker)>,
}

impl Indexer {
    /// The path of the node that starts now, and whether it is a mapping key.
    fn next_node_path(&mut self) -> (String, bool) {
        match self.stack.last_mut() {
            None => (String::new(), false),
            Some(Frame::Map { path, key, .. }) => match key.take() {
                None => (path.clone(), true),
                Some(k) => (join(path, &k), false),
            },
            Some(Frame::Seq { path, index, .. }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                (p, false)
            }
        }
    }

    fn lc(m: &Marker) -> (usize, usize) {
        (m.line(), m.col() + 1)
    }
}

impl MarkedEventReceiver for Indexer {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::Scalar(value, ..) => {
                let (path, is_key) = self.next_node_path();
                if is_key {
                    let full = join(&path, &value);
                    self.index.keys.entry(full).or_insert(Self::lc(&mark));
                    if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                        *key = Some(value);
                    }
                } else {
                    self.index
                        .values
                        .entry(path.clone())
                        .or_insert(Self::lc(&mark));
                    self.index.scalars.insert(path);
                }
            }
            Event::Alias(_) => {
                self.aliases += 1;
                if self.aliases > MAX_ALIASES {
                    self.error = Some((
                        format!("more than {MAX_ALIASES} aliases (`*name`); experiment files do not need that many, and this looks like a YAML bomb"),
                        mark,
                    ));
                    return;
                }
                let (path, is_key) = self.next_node_path();
                if is_key {
                    // An alias used as a key: give it a placeholder name.
                    if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                        *key = Some("<alias>".into());
                    }
                } else {
                    self.index.values.entry(path).or_insert(Self::lc(&mark));
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let (path, is_key) = self.next_node_path();
                if is_key {
                    self.error = Some((
                        "a mapping or list used as a key; keys must be plain names".into(),
                        mark,
                    ));
                    return;
                }
                self.index
                    .values
                    .entry(path.clone())
                    .or_insert(Self::lc(&mark));
                if self.stack.len() >= MAX_DEPTH {
                    self.error = Some((
                        format!("nested more than {MAX_DEPTH} levels deep; experiment files are far flatter"),
                        mark,
                    ));
                    return;
                }
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map {
                        path,
                        key: None,
                        start: mark,
                    }
                } else {
                    Frame::Seq {
                        path,
                        index: 0,
                        start: mark,
                    }
                });
                self.max_depth_seen = self.max_depth_seen.max(self.stack.len());
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

fn diag(file: &str, path: &str, at: (usize, usize), message: String) -> Diagnostic {
    Diagnostic::at(file, path, at, message)
}

/// Checks the raw bytes of a file: size, emptiness, text.
pub fn check_bytes<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str, Diagnostic> {
    if bytes.len() > MAX_FILE_SIZE {
        return Err(diag(
            file,
            "",
            (1, 1),
            format!(
                "the file is {} bytes; experiment files are limited to {} bytes",
                bytes.len(),
                MAX_FILE_SIZE
            ),
        ));
    }
    if bytes.contains(&0) {
        return Err(diag(
            file,
            "",
            (1, 1),
            "this is a binary file, not a YAML experiment".into(),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        diag(
            file,
            "",
            (line, 1),
            "the file is not UTF-8 text; save it as UTF-8".into(),
        )
    })?;
    // A UTF-8 byte order mark, as some Windows editors write: not content.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Characters YAML does not allow raw, and line separators the two YAML
    // parsers count differently (which would make every line number wrong).
    for (i, line) in text.split('\n').enumerate() {
        for (col, ch) in line.chars().enumerate() {
            let c = ch as u32;
            let allowed = matches!(c, 0x9 | 0xD | 0x20..=0x7E | 0xA0..=0x2027 | 0x202A..=0xD7FF | 0xE000..=0xFFFD | 0x10000..);
            if !allowed {
                return Err(diag(
                    file,
                    "",
                    (i + 1, col + 1),
                    format!(
                        "the file contains the {} U+{c:04X}, which YAML does not allow here; delete it (write it as `\\u{c:04X}` inside a double-quoted string if you need it)",
                        if c == 0x2028 || c == 0x2029 { "line separator" } else { "control character" }
                    ),
                ));
            }
        }
    }
    if text.trim().is_empty()
        || text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(diag(
            file,
            "",
            (1, 1),
            "the file is empty; an experiment needs at least `title`, `hypothesis`, `steady_state` and `method`".into(),
        ));
    }
    Ok(text)
}

/// Builds the span index, rejecting hostile structure.
pub fn index(file: &str, text: &str) -> Result<SpanIndex, Diagnostic> {
    let mut ix = Indexer {
        stack: Vec::new(),
        index: SpanIndex::default(),
        aliases: 0,
        max_depth_seen: 0,
        error: None,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut ix, false) {
        let m = e.marker();
        // A `[` or `{` left open on an earlier line makes the parser fail
        // somewhere later; point at the bracket, which is what needs fixing.
        if let Some(open) = ix.stack.last().map(Frame::start) {
            let ch = text.chars().nth(open.index());
            if matches!(ch, Some('[') | Some('{')) && open.line() < m.line() {
                let close = if ch == Some('[') { ']' } else { '}' };
                return Err(diag(
                    file,
                    "",
                    Indexer::lc(open),
                    format!(
                        "not valid YAML: this `{}` is never closed with `{close}` (the parser gave up at line {}, column {}: {})",
                        ch.unwrap_or('['),
                        m.line(),
                        m.col() + 1,
                        e.info()
                    ),
                ));
            }
        }
        return Err(diag(
            file,
            "",
            (m.line(), m.col() + 1),
            format!("not valid YAML: {}", e.info()),
        ));
    }
    if let Some((msg, m)) = ix.error {
        return Err(diag(file, "", Indexer::lc(&m), msg));
    }
    Ok(ix.index)
}

/// Deserializes `text` into `T`, with the field path and position of the first error.
pub fn from_str<T: DeserializeOwned>(
    file: &str,
    text: &str,
    spans: &SpanIndex,
) -> Result<T, Diagnostic> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, T>(de).map_err(|e| located(file, spans, e))
}

/// Deserializes an already parsed (and variable-substituted) document into
/// `T`; errors are located through the span index of the original text.
pub fn from_value<T: DeserializeOwned>(
    file: &str,
    value: serde_yaml::Value,
    spans: &SpanIndex,
) -> Result<T, Diagnostic> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| located(file, spans, e))
}

fn located(
    file: &str,
    spans: &SpanIndex,
    e: serde_path_to_error::Error<serde_yaml::Error>,
) -> Diagnostic {
    {
        {
            let path = clean_path(&e.path().to_string());
            let inner = e.into_inner();
            let mut message = strip_location(&inner.to_string());
            // serde_yaml prefixes its own copy of the path; we print ours.
            if let Some((prefix, rest)) = message.split_once(": ") {
                if !prefix.is_empty() && !prefix.contains(' ') && path.starts_with(prefix) {
                    message = rest.to_string();
                }
            }
            let mut at_path = path.clone();
            if let Some((unknown, expected)) = parse_unknown(&message) {
                let last = path.rsplit(['.', '[']).next().unwrap_or("");
                if last != unknown {
                    at_path = join(&path, &unknown);
                }
                message = unknown_message(&message, &unknown, &expected);
            }
            // serde_yaml places errors raised by our own value parsers
            // (durations, sizes, ...) at the enclosing mapping; the span index
            // knows where the value itself is. An unknown field, or a problem
            // with a whole mapping or list, is shown at its key.
            let unknown_field = message.starts_with("unknown ");
            let lc = match (spans.exact_scalar(&at_path), spans.exact_key(&at_path)) {
                (Some(lc), _) if !unknown_field => lc,
                (_, Some(lc)) => lc,
                _ => match inner.location() {
                    Some(l) if l.line() > 0 => (l.line(), l.column()),
                    _ => spans.locate(&at_path),
                },
            };
            message = humanize(&message);
            // serde_yaml places missing-field errors at the mapping; name the field.
            if let Some(field) = message
                .strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
            {
                message = format!("missing required field `{field}`");
            }
            diag(file, &at_path, lc, message)
        }
    }
}

/// Rewrites serde's type names into the words of the experiment format:
/// `expected u16` -> `expected a whole number from 0 to 65535`.
fn humanize(m: &str) -> String {
    const WORDS: [(&str, &str); 14] = [
        ("expected u16", "expected a whole number from 0 to 65535"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        (
            "expected u64",
            "expected a whole number from 0 to 18446744073709551615",
        ),
        (
            "expected i32",
            "expected a whole number from -2147483648 to 2147483647",
        ),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected `true` or `false`"),
        ("expected a sequence", "expected a list"),
        ("expected a string", "expected a text value"),
        ("invalid type: sequence", "invalid type: a list"),
        ("invalid type: map", "invalid type: a mapping"),
        ("invalid type: unit value", "invalid type: an empty value"),
        ("invalid value: integer", "invalid value: the number"),
        ("invalid type: integer", "invalid type: the number"),
    ];
    let mut out = m.to_string();
    for (from, to) in WORDS {
        out = out.replace(from, to);
    }
    // `expected struct Limits` / `expected struct Experiment`.
    if let Some(i) = out.find("expected struct ") {
        let rest = &out[i + "expected struct ".len()..];
        let name_end = rest
            .find(|c: char| !c.is_alphanumeric())
            .unwrap_or(rest.len());
        out = format!(
            "{}expected a mapping (`field: value` lines){}",
            &out[..i],
            &rest[name_end..]
        );
    }
    out
}

/// serde_path_to_error prints `.` for the root and `?` for unknown segments.
fn clean_path(p: &str) -> String {
    if p == "." || p == "?" {
        String::new()
    } else {
        p.to_string()
    }
}

/// Removes serde_yaml's own " at line X column Y" suffix (we print our own).
fn strip_location(m: &str) -> String {
    match m.find(" at line ") {
        Some(i) => m[..i].to_string(),
        None => m.to_string(),
    }
}

/// Parses "unknown field `x`, expected one of `a`, `b`" (and the variant form).
fn parse_unknown(m: &str) -> Option<(String, Vec<String>)> {
    let rest = m
        .strip_prefix("unknown field `")
        .or_else(|| m.strip_prefix("unknown variant `"))?;
    let (name, tail) = rest.split_once('`')?;
    let expected = tail
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect();
    Some((name.to_string(), expected))
}

fn unknown_message(original: &str, unknown: &str, expected: &[String]) -> String {
    let what = if original.starts_with("unknown variant") {
        "kind"
    } else {
        "field"
    };
    let mut msg = format!("unknown {what} `{unknown}`");
    if let Some(best) = did_you_mean(unknown, expected) {
        msg.push_str(&format!(" (did you mean `{best}`?)"));
    }
    if expected.is_empty() {
        msg.push_str("; no fields are accepted here");
    } else {
        msg.push_str(&format!("; accepted here: {}", expected.join(", ")));
    }
    msg
}

/// The closest candidate, if it is close enough to be a likely typo: a
/// Jaro-Winkler similarity above 0.8, or at most one edit (two for longer
/// words) where swapping two neighbouring letters counts as one edit.
pub fn did_you_mean<'a>(word: &str, candidates: &'a [String]) -> Option<&'a str> {
    Suggester::default().suggest(word, candidates)
}

/// Names longer than this get no "did you mean" (nor are they suggested).
const SUGGEST_MAX_CHARS: usize = 64;
/// Work allowed for all suggestions of one file, in character pairs compared:
/// a file with thousands of misspelt references stays linear, later
/// problems just go without a suggestion.
const SUGGEST_BUDGET: usize = 20_000_000;

/// [`did_you_mean`] with a work budget shared by every call on one file.
#[derive(Debug, Clone)]
pub struct Suggester {
    pairs_left: usize,
}

impl Default for Suggester {
    fn default() -> Self {
        Suggester {
            pairs_left: SUGGEST_BUDGET,
        }
    }
}

impl Suggester {
    /// Like [`did_you_mean`]; `None` also once the budget is spent.
    pub fn suggest<'a>(&mut self, word: &str, candidates: &'a [String]) -> Option<&'a str> {
        let w = word.to_lowercase();
        let wn = w.chars().count();
        if wn > SUGGEST_MAX_CHARS {
            return None;
        }
        let max_edits = if wn > 6 { 2 } else { 1 };
        let mut best: Option<(usize, f64, &'a String)> = None;
        for c in candidates {
            let cn = c.chars().count();
            if cn > SUGGEST_MAX_CHARS {
                continue;
            }
            let cost = (wn.max(1)) * (cn.max(1)) * 2;
            if cost > self.pairs_left {
                self.pairs_left = 0;
                break;
            }
            self.pairs_left -= cost;
            let lc = c.to_lowercase();
            let edits = strsim::osa_distance(&w, &lc);
            let jw = strsim::jaro_winkler(&w, &lc);
            let close = (edits <= max_edits && edits < cn) || jw > 0.8;
            if close && best.is_none_or(|(e, j, _)| (edits, -jw) < (e, j)) {
                best = Some((edits, -jw, c));
            }
        }
        best.map(|(_, _, c)| c.as_str())
    }
}

/// At most this many names are listed in one message.
const LIST_MAX: usize = 10;

/// `a, b, c`, or the first few names and how many more there are.
pub fn list_names(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(LIST_MAX)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LIST_MAX {
        s.push_str(&format!(" and {} more", names.len() - LIST_MAX));
    }
    s
}

/// A YAML/JSON value from text, for formats other than faultline's own
/// (Chaos Toolkit files), with the same hostile-input checks.
pub fn value_from_str(file: &str, text: &str) -> Result<serde_json::Value, Diagnostic> {
    let spans = index(file, text)?;
    from_str(file, text, &spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_located() {
        let text =
            "title: x\nmethod:\n  - pause: 1s\n  - fault:\n      network:\n        loss: 1\n";
        let ix = index("f", text).unwrap();
        assert_eq!(ix.locate("title"), (1, 1));
        assert_eq!(ix.locate("method[1].fault.network.loss"), (6, 9));
        assert_eq!(ix.locate_value("method[0].pause"), (3, 12));
        // Unknown children fall back to their parent.
        assert_eq!(ix.locate("method[1].fault.network.nope"), (5, 7));
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let text = "a: ".to_string() + &"[".repeat(200) + &"]".repeat(200);
        let e = index("f", &text).unwrap_err();
        assert!(e.message.contains("nested more than"), "{}", e.message);
    }

    #[test]
    fn alias_bombs_are_rejected() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
        for i in 0..10 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("b{}", i - 1)
            };
            text.push_str(&format!(
                "b{i}: &b{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        let e = index("f", &text).unwrap_err();
        assert!(e.message.contains("aliases"), "{}", e.message);
    }

    #[test]
    fn typos_get_suggestions() {
        let c = vec!["title".to_string(), "hypothesis".to_string()];
        assert_eq!(did_you_mean("titel", &c), Some("title"));
        assert_eq!(did_you_mean(&"titel".repeat(20), &c), None);
        assert_eq!(did_you_mean("hypotesis", &c), Some("hypothesis"));
        assert_eq!(did_you_mean("zzz", &c), None);
        let p = vec!["web".to_string(), "redis ping".to_string()];
        assert_eq!(did_you_mean("wbe", &p), Some("web"));
        assert_eq!(did_you_mean("redis pnig", &p), Some("redis ping"));
        assert_eq!(did_you_mean("x", &p), None);
    }

    #[test]
    fn bytes_are_checked() {
        assert!(check_bytes("f", b"").unwrap_err().message.contains("empty"));
        assert!(check_bytes("f", b"# only\n\n")
            .unwrap_err()
            .message
            .contains("empty"));
        assert!(check_bytes("f", b"a\0b")
            .unwrap_err()
            .message
            .contains("binary"));
        let e = check_bytes("f", "a: 1\nb: x\u{85}y\n".as_bytes()).unwrap_err();
        assert!(e.message.contains("U+0085"), "{}", e.message);
        assert_eq!((e.line, e.column), (2, 5));
        assert!(check_bytes("f", "a: \u{7}\n".as_bytes()).is_err());
        assert!(check_bytes("f", "a: \u{2028}\n".as_bytes()).is_err());
        assert!(check_bytes("f", "a: é \u{1F600}\tb\r\n".as_bytes()).is_ok());
        assert!(check_bytes("f", &[b'a', 0xff, 0xfe])
            .unwrap_err()
            .message
            .contains("UTF-8"));
        let big = vec![b'a'; MAX_FILE_SIZE + 1];
        assert!(check_bytes("f", &big)
            .unwrap_err()
            .message
            .contains("limited"));
    }

    #[test]
    fn suggestions_share_one_budget_per_file() {
        let names: Vec<String> = (0..10_000).map(|i| format!("probe-number-{i}")).collect();
        let mut s = Suggester::default();
        let found = (0..10_000)
            .filter(|i| s.suggest(&format!("probe-numbr-{i}"), &names).is_some())
            .count();
        // The first ones get their suggestion, then the budget is spent.
        assert!(found >= 5, "{found}");
        assert!(found < 100, "{found}");
        assert_eq!(s.suggest("probe-numbr-1", &names), None);
        assert_eq!(
            Suggester::default().suggest("probe-numbr-1", &names),
            Some("probe-number-1")
        );
    }
}
