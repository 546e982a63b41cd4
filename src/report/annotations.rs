//! `faultline validate --format github|gitlab`: problems in experiment files
//! as CI services show them on a pull request's lines.
//!
//! - GitHub Actions workflow commands, one line per problem:
//!   `::error file=F,line=L,col=C,title=T::message`. Properties and the
//!   message are escaped as the Actions toolkit does (`%`, `\r`, `\n`; in
//!   properties also `:` and `,`), so a message can never end the command
//!   and start another one; other control characters are shown as visible
//!   escapes first.
//! - GitLab code quality report (JSON array): `description`, `check_name`,
//!   `fingerprint`, `severity`, `location.path`, `location.lines.begin`. The
//!   fingerprint is the sha256 of the file, the field path and the message
//!   (not the line, so a problem keeps its fingerprint when lines move).

use crate::experiment::Diagnostic;
use crate::sys::text::escape_text;
use sha2::{Digest, Sha256};
use std::collections::HashSet;

/// The message part of a workflow command.
fn escape_data(s: &str) -> String {
    escape_text(s)
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A property value of a workflow command.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// One `::error` line per problem.
pub fn github(problems: &[Diagnostic]) -> String {
    let mut out = String::new();
    for p in problems {
        let mut props = vec![format!("file={}", escape_property(&p.file))];
        if p.line > 0 {
            props.push(format!("line={}", p.line));
            if p.column > 0 {
                props.push(format!("col={}", p.column));
            }
        }
        let title = if p.path.is_empty() {
            "faultline validate".to_string()
        } else {
            format!("faultline validate: {}", p.path)
        };
        props.push(format!("title={}", escape_property(&title)));
        out.push_str(&format!(
            "::error {}::{}\n",
            props.join(","),
            escape_data(&p.message)
        ));
    }
    out
}

/// The GitLab code quality report (a JSON array, empty when all is valid).
pub fn gitlab(problems: &[Diagnostic]) -> String {
    let mut seen = HashSet::new();
    let issues: Vec<serde_json::Value> = problems
        .iter()
        .map(|p| {
            let mut h = Sha256::new();
            for part in [&p.file, &p.path, &p.message] {
                h.update(part.as_bytes());
                h.update([0u8]);
            }
            let mut fingerprint = hex(&h.finalize());
            // The same problem twice at one place: still unique.
            let mut n = 1;
            while !seen.insert(fingerprint.clone()) {
                n += 1;
                fingerprint = format!("{}-{n}", &fingerprint[..64]);
            }
            let description = if p.path.is_empty() {
                p.message.clone()
            } else {
                format!("{}: {}", p.path, p.message)
            };
            serde_json::json!({
                "type": "issue",
                "description": description,
                "check_name": "faultline-validate",
                "fingerprint": fingerprint,
                "severity": "major",
                "location": {
                    "path": p.file,
                    "lines": { "begin": p.line.max(1) },
                },
            })
        })
        .collect();
    serde_json::to_string_pretty(&issues).expect("JSON into memory")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(file: &str, path: &str, line: usize, msg: &str) -> Diagnostic {
        Diagnostic::at(file, path, (line, 3), msg)
    }

    #[test]
    fn github_escapes_what_would_end_or_forge_a_command() {
        let out = github(&[diag(
            "dir,x/a:b.yaml",
            "method[0].fault",
            7,
            "100% bad\nline two\r::warning::forged",
        )]);
        assert_eq!(
            out,
            "::error file=dir%2Cx/a%3Ab.yaml,line=7,col=3,title=faultline validate%3A method[0].fault::100%25 bad%0Aline two\\r::warning::forged\n"
        );
        assert_eq!(out.lines().count(), 1, "one command per problem");
        // Terminal control characters are shown, not passed on.
        let out = github(&[diag("a.yaml", "", 1, "bad \x1b[31mred")]);
        assert!(out.contains("bad \\x1b[31mred"), "{out}");
        assert!(out.contains("title=faultline validate::"), "{out}");
    }

    #[test]
    fn gitlab_has_the_code_quality_fields_and_unique_fingerprints() {
        let p = diag(
            "e.yaml",
            "steady_state.probes[0]",
            12,
            "unknown field `htp`",
        );
        let v: serde_json::Value =
            serde_json::from_str(&gitlab(&[p.clone(), p.clone(), diag("e.yaml", "", 0, "x")]))
                .unwrap();
        let a = &v[0];
        assert_eq!(
            a["description"],
            "steady_state.probes[0]: unknown field `htp`"
        );
        assert_eq!(a["check_name"], "faultline-validate");
        assert_eq!(a["severity"], "major");
        assert_eq!(a["location"]["path"], "e.yaml");
        assert_eq!(a["location"]["lines"]["begin"], 12);
        assert_eq!(a["fingerprint"].as_str().unwrap().len(), 64);
        assert_ne!(v[0]["fingerprint"], v[1]["fingerprint"]);
        assert_eq!(v[2]["location"]["lines"]["begin"], 1, "lines start at 1");
        // Stable when the line moves.
        let moved = diag(
            "e.yaml",
            "steady_state.probes[0]",
            40,
            "unknown field `htp`",
        );
        let w: serde_json::Value = serde_json::from_str(&gitlab(&[moved])).unwrap();
        assert_eq!(w[0]["fingerprint"], a["fingerprint"]);
        assert_eq!(gitlab(&[]), "[]");
    }
}
