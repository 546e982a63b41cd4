//! Chaos Toolkit tolerances, with chaoslib's meaning (chaoslib/hypothesis.py):
//!
//! - `true`/`false`, a string: the result must equal it.
//! - an integer: the result's `status` (HTTP status, exit code) must equal
//!   it; a result without `status` must equal it.
//! - a list: the result's `status` must be in it; without `status`, a
//!   2-item list is an inclusive range, a longer list a set of values.
//! - `{type: range, range: [a, b], target?}`: the target (default `status`
//!   for http/process results) read as a number, inclusive.
//! - `{type: regex, pattern, target?}`: searched in the target (default
//!   `body` for http, `stdout` for process; chaoslib has no default).
//! - `{type: jsonpath, path, expect?, count?, target?}`: the query must find
//!   something (or `count` values, or exactly `expect`); without a target it
//!   runs on the whole result (`$.status`, `$.body.x`), as in chaoslib.
//! - `{type: probe, ...}` is not judged here: the translation runs it
//!   through python3 (see `python.rs`).
//!
//! A result is a JSON value: http `{status, headers, body}` (body parsed as
//! JSON when the response says `application/json`), process
//! `{status, stdout, stderr}`, python: what the function returned.

use regex::Regex;
use serde_json::Value;
use serde_json_path::JsonPath;

/// A parsed tolerance, ready to judge results.
#[derive(Debug, Clone)]
pub enum Tolerance {
    Bool(bool),
    Str(String),
    Int(i64),
    List(Vec<Value>),
    Range {
        lo: f64,
        hi: f64,
        target: Option<String>,
    },
    Regex {
        re: Regex,
        target: Option<String>,
    },
    JsonPath {
        path: JsonPath,
        source: String,
        expect: Option<Value>,
        count: Option<usize>,
        target: Option<String>,
    },
}

/// What a tolerance of `type: probe` needs; handled by the translation.
pub fn is_probe(t: &Value) -> bool {
    t.get("type").and_then(Value::as_str) == Some("probe")
}

impl Tolerance {
    /// Parses and checks a tolerance as chaoslib's validation does. The error
    /// says what to write instead.
    pub fn parse(t: &Value) -> Result<Tolerance, String> {
        match t {
            Value::Bool(b) => Ok(Tolerance::Bool(*b)),
            Value::String(s) => Ok(Tolerance::Str(s.clone())),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Ok(Tolerance::Int(i)),
                None => Err(format!(
                    "a number tolerance is an integer (`{n}` is not); for a range write `[low, high]` or `{{type: range, range: [low, high]}}`"
                )),
            },
            Value::Array(items) => Ok(Tolerance::List(items.clone())),
            Value::Object(m) => {
                let kind = m.get("type").and_then(Value::as_str).unwrap_or("");
                let target = match m.get("target") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => {
                        return Err(format!("`target` is a key of the result, e.g. `body`; not {other}"))
                    }
                };
                match kind {
                    "range" => {
                        let r = m.get("range").ok_or(
                            "a range tolerance needs `range: [low, high]`".to_string(),
                        )?;
                        let arr = r
                            .as_array()
                            .ok_or("`range` must be a list of two numbers".to_string())?;
                        if arr.len() != 2 {
                            return Err("`range` must be made of two values: `[low, high]`".into());
                        }
                        let lo = arr[0]
                            .as_f64()
                            .ok_or("the range's lower boundary must be a number")?;
                        let hi = arr[1]
                            .as_f64()
                            .ok_or("the range's upper boundary must be a number")?;
                        Ok(Tolerance::Range { lo, hi, target })
                    }
                    "regex" => {
                        let p = m
                            .get("pattern")
                            .ok_or("a regex tolerance needs a `pattern`".to_string())?
                            .as_str()
                            .ok_or("the regex `pattern` must be a string")?;
                        let re = Regex::new(p).map_err(|e| {
                            format!(
                                "the pattern `{p}` is not a regular expression faultline can use ({e}); lookaround and backreferences are Python-only"
                            )
                        })?;
                        Ok(Tolerance::Regex { re, target })
                    }
                    "jsonpath" => {
                        let p = m
                            .get("path")
                            .ok_or("a jsonpath tolerance needs a `path`".to_string())?
                            .as_str()
                            .ok_or("the JSON `path` must be a string")?
                            .trim()
                            .to_string();
                        if p.is_empty() {
                            return Err("the JSON path is empty".into());
                        }
                        let path = parse_jsonpath(&p)?;
                        let count = match m.get("count") {
                            None | Some(Value::Null) => None,
                            Some(c) => Some(
                                c.as_u64()
                                    .ok_or("`count` must be a whole number")?
                                    as usize,
                            ),
                        };
                        Ok(Tolerance::JsonPath {
                            path,
                            source: p,
                            expect: m.get("expect").cloned(),
                            count,
                            target,
                        })
                    }
                    "probe" => Err(
                        "a probe tolerance is run through python3, not judged directly".into(),
                    ),
                    other => Err(format!(
                        "tolerance type `{other}` is not one of range, regex, jsonpath, probe"
                    )),
                }
            }
            Value::Null => Err("the tolerance is empty; give a value, a list or a `{type: ...}` mapping".into()),
        }
    }

    /// Judges a result: `Ok(summary)` when within tolerance, `Err(why)` when not.
    /// `default_target` is the key regex tolerances read without a `target`
    /// (`body` for http, `stdout` for process).
    pub fn check(&self, value: &Value, default_target: Option<&str>) -> Result<String, String> {
        let status = value.as_object().and_then(|m| m.get("status"));
        match self {
            Tolerance::Bool(b) => verdict(value == &Value::Bool(*b), || {
                format!("result {} (expected {b})", short(value))
            }),
            Tolerance::Str(s) => verdict(value.as_str() == Some(s.as_str()), || {
                format!("result {} (expected {s:?})", short(value))
            }),
            Tolerance::Int(i) => {
                let (got, what) = match status {
                    Some(s) => (s, "status"),
                    None => (value, "result"),
                };
                verdict(py_eq(got, &Value::from(*i)), || {
                    format!("{what} {} (expected {i})", short(got))
                })
            }
            Tolerance::List(items) => {
                if let Some(s) = status {
                    return verdict(items.iter().any(|x| py_eq(x, s)), || {
                        format!("status {} (expected one of {})", short(s), list_text(items))
                    });
                }
                if items.len() == 2 {
                    let ok = match (py_cmp(&items[0], value), py_cmp(value, &items[1])) {
                        (Some(a), Some(b)) => a.is_le() && b.is_le(),
                        _ => false,
                    };
                    return verdict(ok, || {
                        format!(
                            "result {} (expected between {} and {})",
                            short(value),
                            items[0],
                            items[1]
                        )
                    });
                }
                verdict(items.iter().any(|x| py_eq(x, value)), || {
                    format!(
                        "result {} (expected one of {})",
                        short(value),
                        list_text(items)
                    )
                })
            }
            Tolerance::Range { lo, hi, target } => {
                let (got, what) = pick(value, target.as_deref(), Some("status"));
                let n = match got {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                };
                match n {
                    None => Err(format!("{what} {} is not a number", short(got))),
                    Some(n) => verdict(*lo <= n && n <= *hi, || {
                        format!("{what} {} (expected between {lo} and {hi})", fmt_num(n))
                    }),
                }
            }
            Tolerance::Regex { re, target } => {
                let (got, what) = pick(value, target.as_deref(), default_target);
                let text = match got {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                // Python's `$` also matches before a final newline.
                let ok =
                    re.is_match(&text) || text.strip_suffix('\n').is_some_and(|t| re.is_match(t));
                verdict(ok, || {
                    format!(
                        "{what} does not match /{}/: {}",
                        re.as_str(),
                        short_str(&text)
                    )
                })
            }
            Tolerance::JsonPath {
                path,
                source,
                expect,
                count,
                target,
            } => {
                let (got, what) = pick(value, target.as_deref(), None);
                let parsed;
                let doc = match got {
                    Value::String(s) => match serde_json::from_str::<Value>(s) {
                        Ok(v) => {
                            parsed = v;
                            &parsed
                        }
                        Err(_) => got,
                    },
                    other => other,
                };
                let found: Vec<Value> = path.query(doc).all().into_iter().cloned().collect();
                jsonpath_verdict(&found, source, expect.as_ref(), *count, &what)
            }
        }
    }
}

/// chaoslib's rule for what a JSONPath query must find.
pub fn jsonpath_verdict(
    found: &[Value],
    source: &str,
    expect: Option<&Value>,
    count: Option<usize>,
    what: &str,
) -> Result<String, String> {
    let shown = || short(&Value::Array(found.to_vec()));
    if let Some(e) = expect {
        let want: Vec<Value> = match e {
            Value::Array(v) => v.clone(),
            other => vec![other.clone()],
        };
        let ok = want.len() == found.len() && want.iter().zip(found).all(|(a, b)| py_eq(a, b));
        return verdict(ok, || {
            format!("{what}: {source} found {}, expected {}", shown(), short(e))
        });
    }
    if let Some(c) = count {
        return verdict(found.len() == c, || {
            format!(
                "{what}: {source} found {} value(s), expected {c}",
                found.len()
            )
        });
    }
    verdict(!found.is_empty(), || {
        format!("{what}: {source} found nothing")
    })
}

/// Parses a JSONPath, also accepting the `=` comparisons of Python's
/// `jsonpath2` (`[?(@.name = "x")]`) by reading them as `==`.
pub fn parse_jsonpath(p: &str) -> Result<JsonPath, String> {
    match JsonPath::parse(p) {
        Ok(j) => Ok(j),
        Err(e) => {
            let fixed = single_eq_to_double(p);
            if fixed != p {
                if let Ok(j) = JsonPath::parse(&fixed) {
                    return Ok(j);
                }
            }
            Err(format!("`{p}` is not a JSON path ({e})"))
        }
    }
}

fn single_eq_to_double(p: &str) -> String {
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::new();
    let mut quote: Option<char> = None;
    for (i, &c) in chars.iter().enumerate() {
        if let Some(q) = quote {
            out.push(c);
            if c == q && chars.get(i.wrapping_sub(1)) != Some(&'\\') {
                quote = None;
            }
            continue;
        }
        if c == '"' || c == '\'' {
            quote = Some(c);
            out.push(c);
            continue;
        }
        if c == '=' {
            let prev = if i > 0 { chars[i - 1] } else { ' ' };
            let next = chars.get(i + 1).copied().unwrap_or(' ');
            if !matches!(prev, '=' | '!' | '<' | '>') && next != '=' {
                out.push_str("==");
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// The value under `target` (or `default` when no target is given), as
/// chaoslib's `value.get(target, value)`: the whole result when absent.
fn pick<'a>(value: &'a Value, target: Option<&str>, default: Option<&str>) -> (&'a Value, String) {
    let key = target.or(default);
    match (key, value.as_object()) {
        (Some(k), Some(m)) => match m.get(k) {
            Some(v) => (v, k.to_string()),
            None => (value, "result".into()),
        },
        _ => (value, "result".into()),
    }
}

fn verdict(ok: bool, why: impl FnOnce() -> String) -> Result<String, String> {
    if ok {
        Ok("within tolerance".into())
    } else {
        Err(why())
    }
}

/// Python's `==` on JSON values: numbers compare by value (1 == 1.0).
pub fn py_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| py_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Python's ordering where it is defined (numbers with numbers, strings with strings).
fn py_cmp(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

fn list_text(items: &[Value]) -> String {
    let v: Vec<String> = items.iter().map(|x| x.to_string()).collect();
    format!("[{}]", v.join(", "))
}

fn short(v: &Value) -> String {
    short_str(&v.to_string())
}

fn short_str(s: &str) -> String {
    const MAX: usize = 120;
    let s = s.trim_end();
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let t: String = s.chars().take(MAX).collect();
        format!("{t:?}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(t: Value, v: Value, def: Option<&str>) -> bool {
        Tolerance::parse(&t).unwrap().check(&v, def).is_ok()
    }

    fn http(status: u16, body: Value) -> Value {
        json!({"status": status, "headers": {"Content-Type": "application/json"}, "body": body})
    }

    fn process(code: i32, out: &str) -> Value {
        json!({"status": code, "stdout": out, "stderr": ""})
    }

    #[test]
    fn scalar_compares_status_or_whole_value() {
        assert!(ok(json!(200), http(200, json!("x")), Some("body")));
        assert!(!ok(json!(200), http(503, json!("x")), Some("body")));
        assert!(ok(json!(0), process(0, "hi"), Some("stdout")));
        assert!(!ok(json!(0), process(2, "hi"), Some("stdout")));
        assert!(ok(json!(3), json!(3.0), None));
        assert!(ok(json!(true), json!(true), None));
        assert!(!ok(json!(true), json!(1), None));
        assert!(ok(json!("up"), json!("up"), None));
        // A string never equals an http result (as in chaoslib).
        assert!(!ok(json!("up"), http(200, json!("up")), Some("body")));
    }

    #[test]
    fn lists_are_membership_on_status_else_range_or_set() {
        // With a status, any list is membership (chaoslib), even 2 items.
        assert!(ok(json!([200, 204]), http(204, json!("")), None));
        assert!(!ok(json!([200, 204]), http(201, json!("")), None));
        // Without a status: 2 items = inclusive range.
        assert!(ok(json!([1, 5]), json!(5), None));
        assert!(ok(json!([1, 5]), json!(1), None));
        assert!(ok(json!([1, 5]), json!(3.5), None));
        assert!(!ok(json!([1, 5]), json!(6), None));
        assert!(!ok(json!([1, 5]), json!("3"), None));
        // Longer: membership.
        assert!(ok(json!([1, 5, 9]), json!(9), None));
        assert!(!ok(json!([1, 5, 9]), json!(3), None));
        assert!(ok(json!(["a", "b", "c"]), json!("b"), None));
    }

    #[test]
    fn range_reads_target_or_status_as_number() {
        let t = json!({"type": "range", "range": [200, 299]});
        assert!(ok(t.clone(), http(250, json!("")), None));
        assert!(!ok(t, http(404, json!("")), None));
        let t = json!({"type": "range", "range": [1, 10], "target": "stdout"});
        assert!(ok(t.clone(), process(0, " 7\n"), None));
        assert!(!ok(t.clone(), process(0, "11"), None));
        assert!(!ok(t, process(0, "seven"), None));
        let t = json!({"type": "range", "range": [0.5, 1.5]});
        assert!(ok(t.clone(), json!(1.5), None));
        assert!(!ok(t, json!(1.51), None));
        assert!(Tolerance::parse(&json!({"type": "range", "range": [1]})).is_err());
        assert!(Tolerance::parse(&json!({"type": "range", "range": ["a", 2]})).is_err());
    }

    #[test]
    fn regex_searches_target_with_defaults() {
        let t = json!({"type": "regex", "pattern": "^ok$"});
        assert!(ok(t.clone(), process(0, "ok\n"), Some("stdout")));
        assert!(!ok(t.clone(), process(0, "not ok\n"), Some("stdout")));
        let t = json!({"type": "regex", "pattern": "warn", "target": "stderr"});
        let v = json!({"status": 0, "stdout": "", "stderr": "a warning"});
        assert!(ok(t, v, Some("stdout")));
        let t = json!({"type": "regex", "pattern": "ready"});
        assert!(ok(t.clone(), http(200, json!("all ready")), Some("body")));
        assert!(!ok(t, http(200, json!("starting")), Some("body")));
        assert!(Tolerance::parse(&json!({"type": "regex", "pattern": "(?<=a)b"})).is_err());
        assert!(Tolerance::parse(&json!({"type": "regex"})).is_err());
    }

    #[test]
    fn jsonpath_finds_counts_and_expects() {
        let body = json!({"foo": [{"baz": 1}, {"baz": 2}, {"bar": 3}], "state": "up"});
        let t = json!({"type": "jsonpath", "path": "$.foo[?(@.baz)].baz", "expect": [1, 2], "target": "body"});
        assert!(ok(t, http(200, body.clone()), None));
        let t = json!({"type": "jsonpath", "path": "$.foo[*].baz", "count": 2, "target": "body"});
        assert!(ok(t, http(200, body.clone()), None));
        let t = json!({"type": "jsonpath", "path": "$.state", "expect": "up", "target": "body"});
        assert!(ok(t, http(200, body.clone()), None));
        let t = json!({"type": "jsonpath", "path": "$.state", "expect": "down", "target": "body"});
        assert!(!ok(t, http(200, body.clone()), None));
        let t = json!({"type": "jsonpath", "path": "$.nothing", "target": "body"});
        assert!(!ok(t, http(200, body.clone()), None));
        // Without target: the whole result, as chaoslib.
        let t = json!({"type": "jsonpath", "path": "$.status", "expect": 200});
        assert!(ok(t, http(200, body), None));
        // A body that is a JSON string is parsed.
        let t = json!({"type": "jsonpath", "path": "$.n", "expect": 3, "target": "stdout"});
        assert!(ok(t, process(0, "{\"n\": 3}\n"), None));
        // jsonpath2's `=` comparison.
        let t = json!({"type": "jsonpath", "path": "$.items[?(@.name = \"a\")].v", "expect": 1});
        assert!(ok(
            t,
            json!({"items": [{"name": "a", "v": 1}, {"name": "b", "v": 2}]}),
            None
        ));
        assert!(Tolerance::parse(&json!({"type": "jsonpath", "path": "$[["})).is_err());
    }

    #[test]
    fn invalid_tolerances_say_what_to_write() {
        let e = Tolerance::parse(&json!(1.5)).unwrap_err();
        assert!(e.contains("integer"), "{e}");
        let e = Tolerance::parse(&json!({"type": "between"})).unwrap_err();
        assert!(e.contains("range, regex, jsonpath"), "{e}");
        assert!(Tolerance::parse(&Value::Null).is_err());
    }
}
