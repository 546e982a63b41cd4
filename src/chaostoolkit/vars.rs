//! Configuration, secrets, `--var`/`--var-file` and `${name}` substitution,
//! with chaoslib's meaning (chaoslib/configuration.py, secret.py, __init__.py).

use serde_json::{Map, Value};
use std::path::Path;

/// Values from the command line: `--var` and `--var-file`.
#[derive(Clone, Debug, Default)]
pub struct ExtraVars {
    pub configuration: Map<String, Value>,
    /// Scope -> name -> value.
    pub secrets: Map<String, Value>,
    /// From `.env` files: looked up before the process environment.
    pub env: Vec<(String, String)>,
}

impl ExtraVars {
    /// Parses `--var name[:type]=value` (type: str, int, float, bytes, bool, json).
    pub fn add_var(&mut self, spec: &str) -> Result<(), String> {
        let (k, v) = spec.split_once('=').ok_or_else(|| {
            format!("--var `{spec}`: write `name=value` or `name:type=value` (type: str, int, float, bool, json)")
        })?;
        let (name, typ) = match k.rsplit_once(':') {
            Some((n, t)) => (n, Some(t)),
            None => (k, None),
        };
        if name.is_empty() {
            return Err(format!("--var `{spec}`: the name is empty"));
        }
        let value = convert(typ, v).map_err(|e| format!("--var `{spec}`: {e}"))?;
        self.configuration.insert(name.to_string(), value);
        Ok(())
    }

    /// Reads a `--var-file`: JSON or YAML with `configuration` and/or
    /// `secrets`, or a `.env` file of `NAME=value` lines (environment values).
    pub fn add_file(&mut self, path: &Path) -> Result<(), String> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--var-file {shown}: cannot read it: {e}"))?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let data: Option<Value> = match ext.as_str() {
            "json" => Some(
                serde_json::from_str(&text)
                    .map_err(|e| format!("--var-file {shown}: not valid JSON: {e}"))?,
            ),
            "yaml" | "yml" => Some(
                serde_yaml::from_str(&text)
                    .map_err(|e| format!("--var-file {shown}: not valid YAML: {e}"))?,
            ),
            _ => None,
        };
        match data {
            Some(Value::Object(m)) => {
                for key in m.keys() {
                    if key != "configuration" && key != "secrets" {
                        return Err(format!(
                            "--var-file {shown}: unknown key `{key}`; a var file has `configuration` and `secrets`"
                        ));
                    }
                }
                if let Some(c) = m.get("configuration") {
                    let c = c.as_object().ok_or_else(|| {
                        format!("--var-file {shown}: `configuration` must be a mapping")
                    })?;
                    for (k, v) in c {
                        self.configuration.insert(k.clone(), v.clone());
                    }
                }
                if let Some(s) = m.get("secrets") {
                    let s = s.as_object().ok_or_else(|| {
                        format!("--var-file {shown}: `secrets` must be a mapping of scopes")
                    })?;
                    for (scope, vals) in s {
                        match (self.secrets.get_mut(scope), vals) {
                            (Some(Value::Object(have)), Value::Object(new)) => {
                                for (k, v) in new {
                                    have.insert(k.clone(), v.clone());
                                }
                            }
                            _ => {
                                self.secrets.insert(scope.clone(), vals.clone());
                            }
                        }
                    }
                }
                Ok(())
            }
            Some(Value::Null) => Ok(()),
            Some(_) => Err(format!(
                "--var-file {shown}: expected a mapping with `configuration` and/or `secrets`"
            )),
            None => {
                for (n, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let line = line.strip_prefix("export ").unwrap_or(line);
                    let (k, v) = line.split_once('=').ok_or_else(|| {
                        format!(
                            "--var-file {shown}:{}: expected NAME=value (or give the file a .json/.yaml name)",
                            n + 1
                        )
                    })?;
                    let v = v.trim();
                    let v = v
                        .strip_prefix('"')
                        .and_then(|x| x.strip_suffix('"'))
                        .unwrap_or(v);
                    self.env.push((k.trim().to_string(), v.to_string()));
                }
                Ok(())
            }
        }
    }

    /// An environment variable, from `.env` var files first.
    pub fn env_var(&self, key: &str) -> Option<String> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(key).ok())
    }
}

/// chaoslib's `convert_to_type`.
pub fn convert(typ: Option<&str>, v: &str) -> Result<Value, String> {
    match typ {
        None | Some("str") | Some("string") | Some("bytes") => Ok(Value::String(v.to_string())),
        Some("int") | Some("integer") => v
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("`{v}` is not an integer")),
        Some("float") | Some("number") => v
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("`{v}` is not a number")),
        Some("bool") => Ok(Value::Bool(!matches!(
            v.to_ascii_lowercase().as_str(),
            "false" | "0" | "no"
        ))),
        Some("json") => {
            if v.is_empty() {
                Ok(Value::String(String::new()))
            } else {
                serde_json::from_str(v).map_err(|e| format!("`{v}` is not JSON: {e}"))
            }
        }
        Some(t) => Err(format!(
            "unknown type `{t}`; use str, int, float, bool or json"
        )),
    }
}

/// A problem with a configuration or secret entry: (path in the file, message).
pub type VarError = (String, String);

/// chaoslib's `load_configuration`: inline values and `{type: env, key,
/// default?, env_var_type?}`; `--var` values win.
pub fn load_configuration(
    cfg: Option<&Value>,
    extra: &ExtraVars,
) -> Result<Map<String, Value>, Vec<VarError>> {
    let mut out = Map::new();
    let mut errs = Vec::new();
    let empty = Map::new();
    let cfg = match cfg {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(vec![(
                "configuration".into(),
                "`configuration` must be a mapping of names to values".into(),
            )])
        }
    };
    for (key, value) in cfg {
        let path = format!("configuration.{key}");
        if let Some(v) = extra.configuration.get(key) {
            out.insert(key.clone(), v.clone());
            continue;
        }
        match value.as_object().and_then(|m| m.get("type")).and_then(Value::as_str) {
            Some("env") => {
                let m = value.as_object().expect("checked");
                let Some(env_key) = m.get("key").and_then(Value::as_str) else {
                    errs.push((path, "an env configuration needs `key`: the environment variable".into()));
                    continue;
                };
                let raw = match (extra.env_var(env_key), m.get("default")) {
                    (Some(v), _) => Value::String(v),
                    (None, Some(d)) => d.clone(),
                    (None, None) => {
                        errs.push((
                            path,
                            format!(
                                "the environment variable `{env_key}` is not set and there is no `default`; set it, add `default`, or pass `--var {key}=VALUE` (run, validate and plan take it)"
                            ),
                        ));
                        continue;
                    }
                };
                let typ = m.get("env_var_type").and_then(Value::as_str);
                let v = match (&raw, typ) {
                    (Value::String(s), Some(_)) => match convert(typ, s) {
                        Ok(v) => v,
                        Err(e) => {
                            errs.push((format!("{path}.env_var_type"), e));
                            continue;
                        }
                    },
                    _ => raw,
                };
                out.insert(key.clone(), v);
            }
            Some("probe") => errs.push((
                path,
                "a configuration value from a probe (dynamic configuration) is not supported; give the value inline, from `type: env`, or with `--var`".into(),
            )),
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    // Unlike chaoslib, `--var` names not declared in `configuration` are
    // usable too.
    for (k, v) in &extra.configuration {
        out.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

/// chaoslib's `load_secrets`: scopes of inline and `{type: env, key}` values.
pub fn load_secrets(
    secrets: Option<&Value>,
    extra: &ExtraVars,
) -> Result<Map<String, Value>, Vec<VarError>> {
    let mut out = Map::new();
    let mut errs = Vec::new();
    let empty = Map::new();
    let scopes = match secrets {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(vec![(
                "secrets".into(),
                "`secrets` must be a mapping of scopes, each a mapping of names to values".into(),
            )])
        }
    };
    for (scope, entries) in scopes {
        let Some(entries) = entries.as_object() else {
            errs.push((
                format!("secrets.{scope}"),
                "a secrets scope is a mapping of names to values".into(),
            ));
            continue;
        };
        let mut got = Map::new();
        for (name, v) in entries {
            let path = format!("secrets.{scope}.{name}");
            if let Some(x) = extra.secrets.get(scope).and_then(|s| s.get(name)) {
                got.insert(name.clone(), x.clone());
                continue;
            }
            match v.as_object().and_then(|m| m.get("type")).and_then(Value::as_str) {
                Some("env") => {
                    let Some(k) = v.get("key").and_then(Value::as_str) else {
                        errs.push((path, "an env secret needs `key`: the environment variable".into()));
                        continue;
                    };
                    match extra.env_var(k) {
                        Some(val) => {
                            got.insert(name.clone(), Value::String(val));
                        }
                        None => errs.push((
                            path,
                            format!("the environment variable `{k}` is not set; set it before running"),
                        )),
                    }
                }
                Some("vault") => errs.push((
                    path,
                    "Vault secrets are not supported; read the secret into an environment variable and use `{type: env, key: NAME}`".into(),
                )),
                _ => {
                    got.insert(name.clone(), v.clone());
                }
            }
        }
        if let Some(Value::Object(more)) = extra.secrets.get(scope) {
            for (k, v) in more {
                got.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        out.insert(scope.clone(), Value::Object(got));
    }
    for (scope, vals) in &extra.secrets {
        if !out.contains_key(scope) {
            out.insert(scope.clone(), vals.clone());
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

/// What `${name}` can refer to: configuration first, then every secret
/// (the second level of every scope), as chaoslib's ChainMap.
pub struct Lookup<'a> {
    pub configuration: &'a Map<String, Value>,
    pub secrets: &'a Map<String, Value>,
}

impl Lookup<'_> {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.configuration.get(name).or_else(|| {
            self.secrets
                .values()
                .filter_map(Value::as_object)
                .find_map(|m| m.get(name))
        })
    }
}

/// Substitutes in every string of `v` (keys are kept).
pub fn substitute(v: &Value, l: &Lookup) -> Value {
    match v {
        Value::String(s) => substitute_str(s, l),
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, l)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), substitute(x, l)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn is_ident_start(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphabetic()
}

fn is_ident(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric()
}

/// Python's `string.Template.safe_substitute` plus chaoslib's typed rule: a
/// string that is exactly `${name}` (or `$name`) takes the value's own type.
pub fn substitute_str(s: &str, l: &Lookup) -> Value {
    // Whole-string reference keeps the type.
    let whole = if let Some(inner) = s.strip_prefix("${").and_then(|x| x.strip_suffix('}')) {
        Some(inner)
    } else {
        s.strip_prefix('$')
    };
    if let Some(name) = whole {
        let nb = name.as_bytes();
        if !nb.is_empty() && is_ident_start(nb[0]) && nb.iter().all(|c| is_ident(*c)) {
            if let Some(v) = l.get(name) {
                return v.clone();
            }
        }
    }
    Value::String(substitute_with(s, l, py_str))
}

/// Substitution into a string that `sh -c` runs: every value is one
/// shell word, quoted, so it cannot add commands or split into words.
pub fn substitute_for_shell(s: &str, l: &Lookup) -> String {
    substitute_with(s, l, |v| shell_quote(&py_str(v)))
}

/// Quotes a word for a POSIX shell (always, so no character is special).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `string.Template.safe_substitute`, with `show` turning a value into text.
fn substitute_with(s: &str, l: &Lookup, show: impl Fn(&Value) -> String) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            let next = s[i..].find('$').map(|p| i + p).unwrap_or(b.len());
            out.push_str(&s[i..next]);
            i = next;
            continue;
        }
        // b[i] == '$'
        if i + 1 < b.len() && b[i + 1] == b'$' {
            out.push('$');
            i += 2;
            continue;
        }
        let (name, end) = if i + 1 < b.len() && b[i + 1] == b'{' {
            let start = i + 2;
            let mut j = start;
            while j < b.len() && is_ident(b[j]) {
                j += 1;
            }
            if j > start && is_ident_start(b[start]) && j < b.len() && b[j] == b'}' {
                (Some(&s[start..j]), j + 1)
            } else {
                (None, i + 1)
            }
        } else {
            let start = i + 1;
            let mut j = start;
            while j < b.len() && is_ident(b[j]) {
                j += 1;
            }
            if j > start && is_ident_start(b[start]) {
                (Some(&s[start..j]), j)
            } else {
                (None, i + 1)
            }
        };
        match name.and_then(|n| l.get(n)) {
            Some(v) => {
                out.push_str(&show(v));
                i = end;
            }
            None => {
                // Unknown names and stray `$` stay as written.
                out.push_str(&s[i..end]);
                i = end;
            }
        }
    }
    out
}

/// Python's `str()` of a JSON value, as an argument or a substituted string.
pub fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup_with(cfg: Value, sec: Value) -> (Map<String, Value>, Map<String, Value>) {
        (
            cfg.as_object().unwrap().clone(),
            sec.as_object().unwrap().clone(),
        )
    }

    #[test]
    fn substitution_follows_python_template() {
        let (c, s) = lookup_with(
            json!({"host": "127.0.0.1", "port": 8080, "flag": true}),
            json!({"api": {"token": "t0k"}}),
        );
        let l = Lookup {
            configuration: &c,
            secrets: &s,
        };
        assert_eq!(
            substitute_str("http://${host}:${port}/", &l),
            json!("http://127.0.0.1:8080/")
        );
        assert_eq!(substitute_str("$host:$port", &l), json!("127.0.0.1:8080"));
        // Exactly one reference keeps the value's type.
        assert_eq!(substitute_str("${port}", &l), json!(8080));
        assert_eq!(substitute_str("$port", &l), json!(8080));
        assert_eq!(substitute_str("x${flag}", &l), json!("xTrue"));
        // Secrets are found by name in any scope.
        assert_eq!(substitute_str("Bearer ${token}", &l), json!("Bearer t0k"));
        // Unknown names, `$$` and stray dollars.
        assert_eq!(substitute_str("${nope} $nope", &l), json!("${nope} $nope"));
        assert_eq!(substitute_str("cost: $$5 ${", &l), json!("cost: $5 ${"));
        assert_eq!(substitute_str("$1 and $", &l), json!("$1 and $"));
        assert_eq!(substitute_str("${host}x", &l), json!("127.0.0.1x"));
        // Into `sh -c`: one quoted word, whatever the value holds.
        let (c2, s2) = lookup_with(json!({"x": "1; id > /tmp/p", "q": "it's"}), json!({}));
        let l2 = Lookup {
            configuration: &c2,
            secrets: &s2,
        };
        assert_eq!(
            substitute_for_shell("-n ${x} $q $$ ${nope}", &l2),
            "-n '1; id > /tmp/p' 'it'\\''s' $ ${nope}"
        );
        let v = substitute(&json!({"a": ["${host}", 1, {"b": "${port}"}]}), &l);
        assert_eq!(v, json!({"a": ["127.0.0.1", 1, {"b": 8080}]}));
    }

    #[test]
    fn configuration_env_default_type_and_var_override() {
        let extra = ExtraVars {
            env: vec![("FL_CTK_T_PORT".into(), "9000".into())],
            ..Default::default()
        };
        let cfg = json!({
            "a": "inline",
            "p": {"type": "env", "key": "FL_CTK_T_PORT", "env_var_type": "int"},
            "d": {"type": "env", "key": "FL_CTK_T_UNSET_1", "default": "dflt"},
        });
        let c = load_configuration(Some(&cfg), &extra).unwrap();
        assert_eq!(c["a"], json!("inline"));
        assert_eq!(c["p"], json!(9000));
        assert_eq!(c["d"], json!("dflt"));

        let bad = json!({"m": {"type": "env", "key": "FL_CTK_T_UNSET_2"}});
        let e = load_configuration(Some(&bad), &extra).unwrap_err();
        assert_eq!(e[0].0, "configuration.m");
        assert!(e[0].1.contains("FL_CTK_T_UNSET_2"), "{:?}", e);

        let mut extra = ExtraVars::default();
        extra.add_var("m=given").unwrap();
        extra.add_var("n:int=5").unwrap();
        let c = load_configuration(Some(&bad), &extra).unwrap();
        assert_eq!(c["m"], json!("given"));
        assert_eq!(c["n"], json!(5));
        assert!(extra.add_var("novalue").is_err());
        assert!(extra.add_var("x:int=abc").is_err());
    }

    #[test]
    fn secrets_inline_env_and_unsupported() {
        let extra = ExtraVars {
            env: vec![("FL_CTK_T_SECRET".into(), "s3cret".into())],
            ..Default::default()
        };
        let s = json!({"api": {"token": {"type": "env", "key": "FL_CTK_T_SECRET"}, "user": "bob"}});
        let got = load_secrets(Some(&s), &extra).unwrap();
        assert_eq!(got["api"]["token"], json!("s3cret"));
        assert_eq!(got["api"]["user"], json!("bob"));
        let v = json!({"k": {"p": {"type": "vault", "path": "x"}}});
        let e = load_secrets(Some(&v), &extra).unwrap_err();
        assert!(e[0].1.contains("Vault"));
    }

    #[test]
    fn var_files_json_yaml_env() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("v.json");
        std::fs::write(
            &j,
            r#"{"configuration": {"a": 1}, "secrets": {"s": {"k": "v"}}}"#,
        )
        .unwrap();
        let y = dir.path().join("v.yaml");
        std::fs::write(&y, "configuration:\n  b: two\n").unwrap();
        let e = dir.path().join("v.env");
        std::fs::write(&e, "# comment\nFL_X=1\nexport FL_Y=\"two\"\n").unwrap();
        let mut x = ExtraVars::default();
        x.add_file(&j).unwrap();
        x.add_file(&y).unwrap();
        x.add_file(&e).unwrap();
        assert_eq!(x.configuration["a"], json!(1));
        assert_eq!(x.configuration["b"], json!("two"));
        assert_eq!(x.secrets["s"]["k"], json!("v"));
        assert_eq!(x.env_var("FL_Y").as_deref(), Some("two"));
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"{"config": {}}"#).unwrap();
        assert!(x.add_file(&bad).unwrap_err().contains("unknown key"));
    }
}
