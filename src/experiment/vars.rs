//! Native variables of faultline experiment files: `vars:` declarations
//! with defaults, values from `--var NAME=VALUE` and `--var-file FILE`, and
//! `${name}` / `${env:NAME}` substitution.
//!
//! Substitution runs on the parsed document, never on its text: it only
//! replaces text inside scalar string values, so a value holding a newline,
//! a colon or a quote cannot change the document's structure. A scalar that
//! is exactly `${name}` takes the variable's value with its type (a number
//! stays a number); elsewhere the value is written into the text. `$${`
//! is a literal `${` (for a shell variable in a command).

use super::yaml::{self, SpanIndex};
use super::Diagnostic;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One declared variable.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VarDecl {
    /// Used when no `--var`/`--var-file` gives a value. Without a default,
    /// a value must be given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// The kind of value accepted; values from `--var` are converted to it.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<VarType>,
    /// A password or token: its value is never shown nor written (`***`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    /// What the variable is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The type of a variable's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VarType {
    String,
    Integer,
    Number,
    Boolean,
}

impl VarType {
    fn word(self) -> &'static str {
        match self {
            VarType::String => "a text value",
            VarType::Integer => "a whole number",
            VarType::Number => "a number",
            VarType::Boolean => "`true` or `false`",
        }
    }
}

/// What the command line says about variables: `--var` specs and
/// `--var-file` paths, read when the file turns out to be a faultline file.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub vars: Vec<String>,
    pub files: Vec<PathBuf>,
    /// Why the same flags could not be read the Chaos Toolkit way (shown
    /// only if the file is a Chaos Toolkit experiment).
    pub ctk_error: Option<String>,
}

impl Inputs {
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty() && self.files.is_empty()
    }
}

/// The values of the variables of one run.
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    values: BTreeMap<String, Value>,
    secret: Vec<String>,
}

impl Resolved {
    /// The variables used, for the journal: secrets as `***`.
    pub fn for_journal(&self) -> BTreeMap<String, serde_json::Value> {
        self.values
            .iter()
            .map(|(k, v)| {
                let shown = if self.secret.contains(k) {
                    serde_json::Value::String("***".into())
                } else {
                    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
                };
                (k.clone(), shown)
            })
            .collect()
    }

    /// The text of every secret value (to redact).
    pub fn secret_texts(&self) -> Vec<String> {
        self.secret
            .iter()
            .filter_map(|k| self.values.get(k))
            .map(scalar_text)
            .filter(|s| !s.is_empty())
            .collect()
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim_end()
            .to_string(),
    }
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
}

/// Whether a document needs the variable pass at all: it declares `vars`
/// or uses `${`. Files without either are loaded exactly as before.
pub fn needed(text: &str, inputs: &Inputs) -> bool {
    !inputs.is_empty() || text.contains("${") || text.contains("vars")
}

/// A value given on the command line or in a var file, and where from.
struct Given {
    value: Value,
    /// `--var` text (converted by the declaration) or a typed file value.
    from_text: bool,
    origin: String,
}

/// Reads `--var-file`s then `--var`s (later ones win).
fn read_inputs(inputs: &Inputs) -> Result<BTreeMap<String, Given>, String> {
    let mut out = BTreeMap::new();
    for f in &inputs.files {
        let shown = crate::sys::text::escape(&f.display().to_string()).to_string();
        let bytes = super::read_capped(f).map_err(|e| format!("--var-file {shown}: {e}"))?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| format!("--var-file {shown}: not UTF-8 text"))?;
        let ext = f
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        if matches!(ext.as_str(), "yaml" | "yml" | "json") {
            let v: Value = yaml::value_from_str(&shown, text)
                .map_err(|d| format!("--var-file {d}"))
                .and_then(|j: serde_json::Value| {
                    serde_yaml::to_value(j).map_err(|e| format!("--var-file {shown}: {e}"))
                })?;
            let m = match v {
                Value::Mapping(m) => m,
                Value::Null => continue,
                _ => {
                    return Err(format!(
                        "--var-file {shown}: expected a mapping of `name: value` lines"
                    ))
                }
            };
            for (k, v) in m {
                let Value::String(k) = k else {
                    return Err(format!("--var-file {shown}: every name must be text"));
                };
                if matches!(v, Value::Mapping(_) | Value::Sequence(_)) {
                    return Err(format!(
                        "--var-file {shown}: `{}` must be a single value (text, number or true/false), not a list or mapping",
                        crate::sys::text::escape(&k)
                    ));
                }
                out.insert(
                    k,
                    Given {
                        value: v,
                        from_text: false,
                        origin: format!("--var-file {shown}"),
                    },
                );
            }
        } else {
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let line = line.strip_prefix("export ").unwrap_or(line);
                let (k, v) = line.split_once('=').ok_or_else(|| {
                    format!(
                        "--var-file {shown}:{}: expected NAME=value (or give the file a .yaml name)",
                        n + 1
                    )
                })?;
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|x| x.strip_suffix('"'))
                    .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                    .unwrap_or(v);
                out.insert(
                    k.trim().to_string(),
                    Given {
                        value: Value::String(v.to_string()),
                        from_text: true,
                        origin: format!("--var-file {shown}"),
                    },
                );
            }
        }
    }
    for spec in &inputs.vars {
        let (k, v) = spec.split_once('=').ok_or_else(|| {
            format!(
                "--var `{}`: write NAME=VALUE",
                crate::sys::text::escape(spec)
            )
        })?;
        if k.is_empty() {
            return Err(format!(
                "--var `{}`: the name is empty",
                crate::sys::text::escape(spec)
            ));
        }
        out.insert(
            k.to_string(),
            Given {
                value: Value::String(v.to_string()),
                from_text: true,
                origin: format!("--var {}", crate::sys::text::escape(k)),
            },
        );
    }
    Ok(out)
}

/// Converts command-line text to the declared type (or the default's type;
/// without either, a whole number or `true`/`false` is taken as such).
fn convert(text: &str, kind: Option<VarType>, default: Option<&Value>) -> Result<Value, VarType> {
    let kind = kind.or(match default {
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(VarType::Integer),
        Some(Value::Number(_)) => Some(VarType::Number),
        Some(Value::Bool(_)) => Some(VarType::Boolean),
        Some(_) => Some(VarType::String),
        None => None,
    });
    let t = text.trim();
    match kind {
        Some(VarType::String) => Ok(Value::String(text.to_string())),
        Some(VarType::Integer) => t
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| VarType::Integer),
        Some(VarType::Number) => t
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|f| {
                if let Ok(i) = t.parse::<i64>() {
                    Value::from(i)
                } else {
                    Value::from(f)
                }
            })
            .ok_or(VarType::Number),
        Some(VarType::Boolean) => match t {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(VarType::Boolean),
        },
        None => Ok(if let Ok(i) = t.parse::<i64>() {
            Value::from(i)
        } else if t == "true" || t == "false" {
            Value::Bool(t == "true")
        } else {
            Value::String(text.to_string())
        }),
    }
}

fn type_ok(v: &Value, kind: VarType) -> bool {
    match (kind, v) {
        (VarType::String, Value::String(_)) => true,
        (VarType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (VarType::Number, Value::Number(_)) => true,
        (VarType::Boolean, Value::Bool(_)) => true,
        _ => false,
    }
}

/// Resolves the declared variables and substitutes them into `doc` (the
/// whole parsed file). Returns every problem found, each located.
pub fn apply(
    file: &str,
    doc: &mut Value,
    spans: &SpanIndex,
    inputs: &Inputs,
) -> Result<Resolved, Vec<Diagnostic>> {
    let decls: BTreeMap<String, VarDecl> = match doc.get("vars") {
        None | Some(Value::Null) => BTreeMap::new(),
        // A malformed `vars` is reported, located, by the typed pass.
        Some(v) => serde_yaml::from_value(v.clone()).unwrap_or_default(),
    };
    let mut problems = Vec::new();
    let names: Vec<String> = decls.keys().cloned().collect();
    for (name, d) in &decls {
        let at = spans.locate(&format!("vars.{name}"));
        if !valid_name(name) {
            problems.push(Diagnostic::at(
                file,
                &format!("vars.{name}"),
                at,
                "a variable name is letters, digits, `_` and `-`, starting with a letter or `_`",
            ));
        }
        if let Some(def) = &d.default {
            if def.is_object() || def.is_array() || def.is_null() {
                problems.push(Diagnostic::at(
                    file,
                    &format!("vars.{name}.default"),
                    spans.locate(&format!("vars.{name}.default")),
                    "a default is a single value: text, a number or true/false",
                ));
            } else if let Some(k) = d.kind {
                let v = serde_yaml::to_value(def).unwrap_or(Value::Null);
                if !type_ok(&v, k) {
                    problems.push(Diagnostic::at(
                        file,
                        &format!("vars.{name}.default"),
                        spans.locate(&format!("vars.{name}.default")),
                        format!("the default must be {} (`type: {k:?}`)", k.word())
                            .replace(&format!("{k:?}"), &format!("{k:?}").to_lowercase()),
                    ));
                }
            }
        }
    }
    let given = match read_inputs(inputs) {
        Ok(g) => g,
        Err(e) => {
            problems.push(Diagnostic::at(file, "", (1, 1), e));
            return Err(problems);
        }
    };
    let mut suggest = yaml::Suggester::default();
    for (name, g) in &given {
        if !decls.contains_key(name) {
            let mut msg = format!(
                "{} sets the variable `{}`, which this file does not declare",
                g.origin,
                crate::sys::text::escape(name)
            );
            if let Some(best) = suggest.suggest(name, &names) {
                msg.push_str(&format!(" (did you mean `{best}`?)"));
            }
            if names.is_empty() {
                msg.push_str("; declare it under `vars:` (e.g. `vars: {NAME: {default: ...}}`)");
            } else {
                msg.push_str(&format!("; declared: {}", yaml::list_names(&names)));
            }
            let at = spans.locate("vars");
            problems.push(Diagnostic::at(file, "vars", at, msg));
        }
    }
    let mut resolved = Resolved::default();
    for (name, d) in &decls {
        let default = d
            .default
            .as_ref()
            .and_then(|j| serde_yaml::to_value(j).ok());
        let path = format!("vars.{name}");
        let value = match given.get(name) {
            Some(g) if g.from_text => {
                let Value::String(t) = &g.value else {
                    unreachable!()
                };
                match convert(t, d.kind, default.as_ref()) {
                    Ok(v) => v,
                    Err(k) => {
                        let shown = if d.secret {
                            "***".to_string()
                        } else {
                            crate::sys::text::escape(t).to_string()
                        };
                        problems.push(Diagnostic::at(
                            file,
                            &path,
                            spans.locate(&path),
                            format!(
                                "{} gives `{shown}`, but `{name}` takes {}",
                                g.origin,
                                k.word()
                            ),
                        ));
                        continue;
                    }
                }
            }
            Some(g) => {
                if let Some(k) = d.kind {
                    if !type_ok(&g.value, k) {
                        problems.push(Diagnostic::at(
                            file,
                            &path,
                            spans.locate(&path),
                            format!(
                                "{} gives a value of the wrong type: `{name}` takes {}",
                                g.origin,
                                k.word()
                            ),
                        ));
                        continue;
                    }
                }
                g.value.clone()
            }
            None => match default {
                Some(v) => v,
                None => {
                    problems.push(Diagnostic::at(
                        file,
                        &path,
                        spans.locate(&path),
                        format!(
                            "the variable `{name}` has no default and no value was given; pass `--var {name}=VALUE`, put `{name}: VALUE` in a `--var-file`, or add `default:` here"
                        ),
                    ));
                    continue;
                }
            },
        };
        if d.secret {
            resolved.secret.push(name.clone());
        }
        resolved.values.insert(name.clone(), value);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if let Value::Mapping(m) = doc {
        for (k, v) in m.iter_mut() {
            let key = match k {
                Value::String(s) => s.clone(),
                _ => continue,
            };
            if key == "vars" {
                continue;
            }
            walk(
                v,
                &key,
                &mut |path, s| {
                    substitute(s, &resolved, &decls).map_err(|msg| {
                        let at = spans
                            .exact_scalar(path)
                            .unwrap_or_else(|| spans.locate(path));
                        Diagnostic::at(file, path, at, msg)
                    })
                },
                &mut problems,
            );
        }
    }
    if problems.is_empty() {
        Ok(resolved)
    } else {
        Err(problems)
    }
}

type Sub<'a> = dyn FnMut(&str, &str) -> Result<Option<Value>, Diagnostic> + 'a;

/// Visits every string scalar (not mapping keys) with its field path.
fn walk(v: &mut Value, path: &str, f: &mut Sub<'_>, problems: &mut Vec<Diagnostic>) {
    match v {
        Value::String(s) => match f(path, s) {
            Ok(Some(new)) => *v = new,
            Ok(None) => {}
            Err(d) => problems.push(d),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &format!("{path}[{i}]"), f, problems);
            }
        }
        Value::Mapping(m) => {
            for (k, item) in m.iter_mut() {
                if let Value::String(k) = k {
                    let p = format!("{path}.{k}");
                    walk(item, &p, f, problems);
                }
            }
        }
        Value::Tagged(t) => walk(&mut t.value, path, f, problems),
        _ => {}
    }
}

/// The new value of one string scalar, or None when it has no `${`.
fn substitute(
    s: &str,
    vars: &Resolved,
    decls: &BTreeMap<String, VarDecl>,
) -> Result<Option<Value>, String> {
    if !s.contains("${") {
        return Ok(None);
    }
    let mut out = String::new();
    let mut rest = s;
    let mut whole: Option<Value> = None;
    let mut parts = 0;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(r) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = r;
            parts += 2;
            continue;
        }
        let Some(r) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let end = r.find('}').ok_or_else(|| {
            "a `${` is never closed with `}`; write `${name}`, or `$${` for a literal `${`"
                .to_string()
        })?;
        let name = &r[..end];
        let value = if let Some(env) = name.strip_prefix("env:") {
            match std::env::var(env) {
                Ok(v) => Value::String(v),
                Err(_) => {
                    return Err(format!(
                        "`${{env:{}}}`: the environment variable `{}` is not set (or is not UTF-8); set it, or use a variable declared under `vars:`",
                        crate::sys::text::escape(env),
                        crate::sys::text::escape(env)
                    ))
                }
            }
        } else {
            match vars.values.get(name) {
                Some(v) => v.clone(),
                None => {
                    let names: Vec<String> = decls.keys().cloned().collect();
                    let mut msg = format!("unknown variable `{}`", crate::sys::text::escape(name));
                    if let Some(best) = yaml::did_you_mean(name, &names) {
                        msg.push_str(&format!(" (did you mean `{best}`?)"));
                    }
                    if names.is_empty() {
                        msg.push_str("; declare it under `vars:`");
                    } else {
                        msg.push_str(&format!("; declared: {}", yaml::list_names(&names)));
                    }
                    msg.push_str(", use `${env:NAME}` for an environment variable, or write `$${` for a literal `${` (a shell variable)");
                    return Err(msg);
                }
            }
        };
        out.push_str(&scalar_text(&value));
        whole = Some(value);
        parts += 1;
        rest = &r[end + 1..];
    }
    out.push_str(rest);
    // Exactly `${name}`: the value keeps its type.
    if parts == 1 && s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1 {
        if let Some(v) = whole {
            return Ok(Some(v));
        }
    }
    Ok(Some(Value::String(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, vars: &[&str]) -> Result<Value, Vec<Diagnostic>> {
        let spans = yaml::index("t", text).unwrap();
        let mut doc: Value = serde_yaml::from_str(text).unwrap();
        let inputs = Inputs {
            vars: vars.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        apply("t", &mut doc, &spans, &inputs).map(|_| doc)
    }

    #[test]
    fn whole_scalars_keep_their_type_and_text_is_spliced() {
        let t = "vars:\n  port: {default: 80}\n  on: {default: true}\na: ${port}\nb: \"http://h:${port}/x\"\nc: ${on}\nd: \"$${HOME} $x\"\n";
        let d = run(t, &["port=8080"]).unwrap();
        assert_eq!(d["a"], Value::from(8080));
        assert_eq!(d["b"], Value::from("http://h:8080/x"));
        assert_eq!(d["c"], Value::Bool(true));
        assert_eq!(d["d"], Value::from("${HOME} $x"));
    }

    #[test]
    fn hostile_values_stay_one_string() {
        let t = "vars:\n  x: {type: string}\na: ${x}\nb: \"<${x}>\"\n";
        let d = run(t, &["x=x\nsteady_state: {}"]).unwrap();
        assert_eq!(d["a"], Value::from("x\nsteady_state: {}"));
        assert!(d.get("steady_state").is_none());
        let d = run(t, &["x=a: b"]).unwrap();
        assert_eq!(d["a"], Value::from("a: b"));
        assert_eq!(d["b"], Value::from("<a: b>"));
    }

    #[test]
    fn problems_are_located() {
        let t = "vars:\n  port: {default: 80}\na:\n  b: \"x${prot}\"\n";
        let e = run(t, &[]).unwrap_err();
        assert_eq!((e[0].line, e[0].column), (4, 6), "{e:?}");
        assert!(e[0].message.contains("did you mean `port`"), "{}", e[0]);
        let e = run(t, &["prot=1"]).unwrap_err();
        assert!(e[0].message.contains("does not declare"), "{}", e[0]);
        assert!(e[0].message.contains("did you mean `port`"), "{}", e[0]);
        let e = run("vars:\n  need: {}\na: ${need}\n", &[]).unwrap_err();
        assert!(e[0].message.contains("--var need=VALUE"), "{}", e[0]);
        assert_eq!(e[0].line, 2);
        let e = run("vars:\n  n: {type: integer}\na: ${n}\n", &["n=abc"]).unwrap_err();
        assert!(e[0].message.contains("whole number"), "{}", e[0]);
    }
}
