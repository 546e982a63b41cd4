//! The JSON journal: the run record as pretty JSON, and reading it back with
//! errors that say what is wrong with the file. The schema is documented in
//! docs/journal.md.

use super::record::{RunRecord, SCHEMA_VERSION};
use serde_json::Value;

/// The record as pretty-printed JSON, ending with a newline.
pub fn render(rec: &RunRecord) -> String {
    let mut s = serde_json::to_string_pretty(rec).expect("a RunRecord always serializes");
    s.push('\n');
    s
}

/// Reads a journal back. Errors say whether the text is not JSON, not a
/// faultline journal (e.g. a Chaos Toolkit journal), written by a newer
/// faultline, or which field is malformed.
pub fn parse(text: &str) -> Result<RunRecord, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "not valid JSON ({e}); a faultline journal is the JSON file written by `faultline run --journal FILE`"
        )
    })?;
    let Some(obj) = value.as_object() else {
        return Err(format!(
            "not a faultline journal: the top level is {}, expected an object with `schema_version` and `run_id`",
            kind_of(&value)
        ));
    };
    let Some(version) = obj.get("schema_version") else {
        let hint = if obj.contains_key("steady_states") || obj.contains_key("chaoslib-version") {
            " (this looks like a Chaos Toolkit journal, which `faultline report` cannot render; use the journal faultline writes by default)"
        } else {
            ""
        };
        return Err(format!(
            "not a faultline journal: no `schema_version` field{hint}"
        ));
    };
    let Some(version) = version.as_u64() else {
        return Err(format!(
            "not a faultline journal: `schema_version` is {}, expected a positive integer",
            version
        ));
    };
    check_version(version)?;
    if !obj.contains_key("run_id") {
        return Err("not a faultline journal: no `run_id` field".into());
    }
    serde_path_to_error::deserialize::<_, RunRecord>(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            format!("invalid faultline journal: {inner}")
        } else {
            format!("invalid faultline journal at `{path}`: {inner}")
        }
    })
}

/// Journals up to this size are read into memory and checked field by field
/// ([`parse`]) when they do not load; larger ones are streamed.
const SMALL: u64 = 64 * 1024 * 1024;

/// Reads a journal file without holding its text: the JSON is parsed as it
/// streams from the file, straight into the record (while a
/// [`super::thin::Thinning`] is alive, with thinned samples). A journal
/// that does not load gets the same explanation as [`parse`] gives; a very
/// large one gets the parser's own message with the field's path.
pub fn read_file(path: &std::path::Path) -> Result<RunRecord, String> {
    let open = || {
        std::fs::File::open(path)
            .map_err(|e| format!("cannot read journal {}: {e}", path.display()))
    };
    let file = open()?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut de = serde_json::Deserializer::from_reader(reader);
    let loaded = serde_path_to_error::deserialize::<_, RunRecord>(&mut de)
        .map_err(|e| {
            let path = e.path().to_string();
            (path, e.into_inner())
        })
        .and_then(|r| de.end().map(|()| r).map_err(|e| (String::new(), e)));
    let with_path = |e: String| format!("{}: {e}", path.display());
    match loaded {
        Ok(rec) => check_version(u64::from(rec.schema_version))
            .map(|()| rec)
            .map_err(with_path),
        Err(_) if size <= SMALL => {
            use std::io::Read;
            let mut text = String::new();
            open()?
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read journal {}: {e}", path.display()))?;
            // The field-by-field checks say what is wrong.
            parse(&text).map_err(with_path)
        }
        Err((_, e)) if e.is_syntax() || e.is_eof() => Err(with_path(format!(
            "not valid JSON ({e}); a faultline journal is the JSON file written by `faultline run --journal FILE`"
        ))),
        Err((field, e)) if field.is_empty() || field == "." => {
            Err(with_path(format!("invalid faultline journal: {e}")))
        }
        Err((field, e)) => Err(with_path(format!(
            "invalid faultline journal at `{field}`: {e}"
        ))),
    }
}

fn check_version(version: u64) -> Result<(), String> {
    if version > u64::from(SCHEMA_VERSION) {
        return Err(format!(
            "journal schema_version {version} is newer than this faultline understands (up to {SCHEMA_VERSION}); upgrade faultline to render it"
        ));
    }
    if version == 0 {
        return Err("not a faultline journal: `schema_version` is 0 (versions start at 1)".into());
    }
    Ok(())
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::super::summary::testdata;
    use super::*;

    #[test]
    fn round_trips() {
        for r in [testdata::held(), testdata::bare()] {
            let text = render(&r);
            let back = parse(&text).unwrap();
            assert_eq!(render(&back), text);
        }
    }

    #[test]
    fn optional_fields_are_left_out() {
        let text = render(&testdata::bare());
        assert!(!text.contains("\"abort\""));
        assert!(!text.contains("manual_recovery"));
        assert!(!text.contains("time_to_detect_ms"));
    }

    #[test]
    fn optional_fields_may_be_missing() {
        let mut v: Value = serde_json::from_str(&render(&testdata::held())).unwrap();
        for k in ["rollbacks", "manual_recovery", "abort"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v["experiment"].as_object_mut().unwrap().remove("tags");
        v["experiment"]
            .as_object_mut()
            .unwrap()
            .remove("description");
        v["faults"][0]
            .as_object_mut()
            .unwrap()
            .remove("observations");
        v["faults"][0].as_object_mut().unwrap().remove("operations");
        let r = parse(&v.to_string()).unwrap();
        assert!(r.rollbacks.is_empty() && r.experiment.tags.is_empty());
        assert!(r.faults[0].observations.is_null());
        let mut v: Value = serde_json::from_str(&render(&testdata::held())).unwrap();
        v.as_object_mut().unwrap().remove("run_id");
        assert!(parse(&v.to_string()).unwrap_err().contains("no `run_id`"));
    }

    #[test]
    fn clear_errors() {
        let e = parse("{ nope").unwrap_err();
        assert!(e.starts_with("not valid JSON"), "{e}");
        let e = parse("[1, 2]").unwrap_err();
        assert!(e.contains("the top level is an array"), "{e}");
        let e = parse(r#"{"chaoslib-version": "1.0", "steady_states": {}}"#).unwrap_err();
        assert!(e.contains("Chaos Toolkit"), "{e}");
        let mut v: Value = serde_json::from_str(&render(&testdata::held())).unwrap();
        v["schema_version"] = 99.into();
        let e = parse(&v.to_string()).unwrap_err();
        assert!(e.contains("schema_version 99 is newer"), "{e}");
        v["schema_version"] = 1.into();
        v["probes"][0]["before"]["samples"] = "many".into();
        let e = parse(&v.to_string()).unwrap_err();
        assert!(e.contains("at `probes[0].before.samples`"), "{e}");
    }
}
