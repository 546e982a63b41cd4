//! Values that are never shown or written: Chaos Toolkit secrets, passwords
//! in URLs, and the values of `Authorization`, `Cookie` and
//! `Proxy-Authorization` headers. The `Redactor` is built once at load time
//! and applied to every event as it is emitted, to the run record before any
//! report is written, and to `plan`'s output.

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

/// What a hidden value is replaced with.
pub const MASK: &str = "***";

/// Shorter values are not masked: masking every `a` would make output
/// unreadable, and such a value is no secret.
pub const MIN_LEN: usize = 4;

/// Header names whose values are credentials.
const SENSITIVE_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

pub fn is_sensitive_header(name: &str) -> bool {
    SENSITIVE_HEADERS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name.trim()))
}

#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// Longest first, so a secret containing another is masked whole.
    values: Vec<String>,
}

impl Redactor {
    /// The credentials an experiment carries: URL passwords and sensitive
    /// header values, wherever they appear in it.
    pub fn for_experiment<T: Serialize>(exp: &T) -> Redactor {
        let mut r = Redactor::default();
        if let Ok(v) = serde_json::to_value(exp) {
            r.collect_credentials(&v);
        }
        r
    }

    fn collect_credentials(&mut self, v: &Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("headers", Value::Object(h)) => {
                            for (name, val) in h {
                                if is_sensitive_header(name) {
                                    if let Value::String(s) = val {
                                        self.add(s);
                                        // `Bearer TOKEN`: the token alone too.
                                        if let Some((_, tok)) = s.trim().split_once(' ') {
                                            self.add(tok.trim());
                                        }
                                    }
                                }
                            }
                        }
                        (_, Value::String(s)) => {
                            if let Some(p) = url_password(s) {
                                self.add(p);
                            }
                        }
                        _ => {}
                    }
                    self.collect_credentials(x);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| self.collect_credentials(x)),
            _ => {}
        }
    }

    /// Every string (and number) inside `v`, e.g. Chaos Toolkit's secrets.
    pub fn add_all(&mut self, v: &Value) {
        match v {
            Value::String(s) => self.add(s),
            Value::Number(n) => self.add(&n.to_string()),
            Value::Array(a) => a.iter().for_each(|x| self.add_all(x)),
            Value::Object(m) => m.values().for_each(|x| self.add_all(x)),
            _ => {}
        }
    }

    pub fn add(&mut self, s: &str) {
        if s.chars().count() < MIN_LEN || self.values.iter().any(|v| v == s) {
            return;
        }
        self.values.push(s.to_string());
        // Also its form inside JSON text (quotes, backslashes, control chars).
        if let Ok(j) = serde_json::to_string(s) {
            let inner = &j[1..j.len() - 1];
            if inner != s && !self.values.iter().any(|v| v == inner) {
                self.values.push(inner.to_string());
            }
        }
        self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    pub fn merge(&mut self, other: &Redactor) {
        for v in &other.values {
            self.add(v);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `s` with every known value and every URL password masked.
    pub fn text(&self, s: &str) -> String {
        let mut out = mask_url_passwords(s);
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }

    /// Masks every string inside a JSON value (keys are kept).
    pub fn value(&self, v: &mut Value) {
        match v {
            Value::String(s) => {
                let t = self.text(s);
                if t != *s {
                    *s = t;
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.value(x)),
            Value::Object(m) => m.values_mut().for_each(|x| self.value(x)),
            _ => {}
        }
    }

    /// A copy of `t` with every string masked (through its JSON form).
    /// `None` when the copy cannot be rebuilt; the caller must then not
    /// show `t` at all.
    pub fn serde<T: Serialize + DeserializeOwned>(&self, t: &T) -> Option<T> {
        let mut v = serde_json::to_value(t).ok()?;
        self.value(&mut v);
        serde_json::from_value(v).ok()
    }
}

/// The password of `scheme://user:password@host/...`, if any.
pub fn url_password(s: &str) -> Option<&str> {
    let (start, end) = password_span(s, 0)?;
    Some(&s[start..end])
}

/// Byte range of the first URL password at or after `from`.
fn password_span(s: &str, from: usize) -> Option<(usize, usize)> {
    let mut at = from;
    while let Some(p) = s[at..].find("://") {
        let auth_start = at + p + 3;
        let rest = &s[auth_start..];
        let auth_end = rest
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"')
            .unwrap_or(rest.len());
        let authority = &rest[..auth_end];
        if let Some(atsign) = authority.rfind('@') {
            if let Some(colon) = authority[..atsign].find(':') {
                if colon + 1 < atsign {
                    return Some((auth_start + colon + 1, auth_start + atsign));
                }
            }
        }
        at = auth_start;
    }
    None
}

/// Masks the password of every URL in `s` (`https://user:***@host/`).
pub fn mask_url_passwords(s: &str) -> String {
    if !s.contains("://") {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    while let Some((a, b)) = password_span(s, last) {
        out.push_str(&s[last..a]);
        out.push_str(MASK);
        last = b;
    }
    out.push_str(&s[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn url_passwords_headers_and_known_values_are_masked() {
        let exp = json!({"probes": [{"http": {
            "url": "http://bob:hunter22@127.0.0.1:8/x",
            "headers": {"authorization": "Bearer tok-123", "X-Other": "shown"}}}]});
        let mut r = Redactor::for_experiment(&exp);
        r.add_all(&json!({"api": {"token": "s3cret", "short": "ab"}}));
        assert_eq!(
            r.text("GET http://bob:hunter22@127.0.0.1:8/x with tok-123, s3cret, ab, shown"),
            "GET http://bob:***@127.0.0.1:8/x with ***, ***, ab, shown"
        );
        // Unknown URLs in free text too.
        assert_eq!(
            r.text("see https://u:p4ss@h/ and ftp://h/a:b@c"),
            "see https://u:***@h/ and ftp://h/a:b@c"
        );
        let mut v = json!({"a": ["x s3cret", {"b": "Bearer tok-123"}]});
        r.value(&mut v);
        assert_eq!(v, json!({"a": ["x ***", {"b": "***"}]}));
        // The JSON-escaped form of a secret is masked in JSON text.
        let mut r = Redactor::default();
        r.add("pa\"ss");
        assert_eq!(r.text(r#"{"h":"pa\"ss"}"#), r#"{"h":"***"}"#);
    }
}
