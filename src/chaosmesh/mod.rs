//! Reading Chaos Mesh manifests into faultline's model, so `run`, `plan` and
//! `validate` take them as they are (one document or several): NetworkChaos,
//! StressChaos, PodChaos, IOChaos, DNSChaos, StatusCheck, Schedule and
//! Workflow. Pod selectors become container selectors (`labelSelectors` ->
//! container labels, a namespace -> the Compose project label), and the
//! fault runs locally with faultline's undo and report. A field faultline
//! cannot honour is an error that names it; a field it honours differently is
//! a warning. docs/chaos-mesh.md has the mapping.
//!
//! `translate` produces faultline's model as JSON, which is then typed and
//! validated like any experiment file.

mod translate;

use crate::experiment::yaml::{self, SpanIndex};
use crate::experiment::Diagnostic;
use serde_json::Value;

pub use translate::{translate, Translation};

/// One YAML document of a manifest file, with where it starts.
#[derive(Clone, Debug)]
pub struct Doc {
    pub value: Value,
    pub spans: SpanIndex,
    /// Lines before the document in the file.
    pub line_offset: usize,
}

/// A problem at a field of one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub doc: usize,
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(doc: usize, path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            doc,
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Cheap check on raw text: could this be a Chaos Mesh manifest?
pub fn may_be_chaos_mesh(text: &str) -> bool {
    text.contains("chaos-mesh.org/")
}

/// Splits a YAML stream at its `---` document markers: (first line index, text).
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    let mut start = 0;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_end();
        if t == "---" || t.starts_with("--- ") || t == "..." {
            if !cur.trim().is_empty() && !only_comments(&cur) {
                docs.push((start, std::mem::take(&mut cur)));
            }
            cur.clear();
            start = i + 1;
            // `--- {inline}`: the rest of the line is the document's start.
            if let Some(rest) = t.strip_prefix("--- ") {
                cur.push_str(&" ".repeat(4));
                cur.push_str(rest);
                cur.push('\n');
                start = i;
            }
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
    }
    if !cur.trim().is_empty() && !only_comments(&cur) {
        docs.push((start, cur));
    }
    docs
}

fn only_comments(s: &str) -> bool {
    s.lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
}

/// Parses every document, with the same hostile-input checks as experiment files.
pub fn parse(file: &str, text: &str) -> Result<Vec<Doc>, Diagnostic> {
    let mut out = Vec::new();
    for (offset, chunk) in split_documents(text) {
        let shift = |mut d: Diagnostic| {
            d.line += offset;
            d
        };
        let spans = yaml::index(file, &chunk).map_err(shift)?;
        let value: Value = yaml::from_str(file, &chunk, &spans).map_err(shift)?;
        out.push(Doc {
            value,
            spans,
            line_offset: offset,
        });
    }
    Ok(out)
}

/// Whether parsed documents are Chaos Mesh objects (the first one's
/// `apiVersion` is `chaos-mesh.org/...`).
pub fn looks_like_chaos_mesh(docs: &[Doc]) -> bool {
    docs.first()
        .and_then(|d| d.value.get("apiVersion"))
        .and_then(Value::as_str)
        .is_some_and(|a| a.starts_with("chaos-mesh.org/"))
}

/// A problem as a diagnostic with file, line and column.
pub fn diagnostic(file: &str, docs: &[Doc], p: &Problem) -> Diagnostic {
    let (line, col) = match docs.get(p.doc) {
        Some(d) => {
            let (l, c) = d.spans.locate(&p.path);
            (l + d.line_offset, c)
        }
        None => (1, 1),
    };
    let path = if docs.len() > 1 {
        format!("(document {}) {}", p.doc + 1, p.path)
    } else {
        p.path.clone()
    };
    Diagnostic::at(file, &path, (line, col), p.message.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_split_with_their_lines() {
        let text = "# c\n---\na: 1\n---\nb: 2\n...\n";
        let d = split_documents(text);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].0, 2);
        assert_eq!(d[1].0, 4);
        let docs = parse("f", text).unwrap();
        assert_eq!(docs[1].value["b"], 2);
    }

    #[test]
    fn errors_point_into_the_right_document() {
        let text = "a: 1\n---\nb: [\n";
        let e = parse("f", text).unwrap_err();
        assert!(e.line >= 3, "{e}");
    }
}
