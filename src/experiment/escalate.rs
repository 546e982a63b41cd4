//! `escalate` on a fault step: one parameter of the fault raised over levels
//! (delay 50ms -> 100ms -> 200ms), each held for `hold` and judged on its
//! own, stopping at the first level that breaks the hypothesis.
//!
//! A level is the step's fault with one field replaced: the fault is
//! serialized to its JSON form, the field at `param` (a dotted path inside
//! the fault kind's fields) is set to the level's value as written, and the
//! result is read back as a fault, so a level goes through exactly the same
//! parsing and validation as a fault written by hand.

use super::model::Fault;
use crate::units::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Raise one parameter of the step's fault over levels.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Escalate {
    /// The parameter, as a path inside the fault's fields: `delay.time`,
    /// `loss.percent`, `rate`, `percent`, `cpus`, `limit`, `target.percent`...
    /// (docs/escalation-and-control.md lists them per fault kind).
    pub param: String,
    /// The values, mildest first, each more severe than the one before; at
    /// least 2. Written as the parameter is (`50ms`, `10%`, `0.5`, `1mbit`).
    pub levels: Vec<Level>,
    /// How long each level is held; each level is its own `during` window.
    pub hold: Duration,
    /// The most severe level the hypothesis promises to hold at. A level
    /// beyond it that breaks is reported as the breaking point without
    /// failing the run. Default: the last level (every level must hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_hold: Option<Level>,
}

/// One level's value as written: a number or a text (`50ms`, `10%`).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum Level {
    Number(f64),
    Text(String),
}

impl Level {
    fn json(&self) -> serde_json::Value {
        match self {
            Level::Number(n) => serde_json::json!(n),
            Level::Text(t) => serde_json::Value::String(t.clone()),
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Level::Number(n) => write!(f, "{n}"),
            Level::Text(t) => f.write_str(&crate::sys::text::escape_text(t)),
        }
    }
}

/// How a parameter's values are read, to order the levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Duration,
    Percent,
    Rate,
    Size,
    Number,
    Count,
}

/// A parameter that can be escalated: fault kind, path, type, and whether a
/// higher value is more severe.
struct Param {
    kind: &'static str,
    path: &'static str,
    ty: Ty,
    worse_higher: bool,
}

const fn p(kind: &'static str, path: &'static str, ty: Ty, worse_higher: bool) -> Param {
    Param {
        kind,
        path,
        ty,
        worse_higher,
    }
}

/// Every parameter `escalate` accepts.
const PARAMS: &[Param] = &[
    p("network", "delay.time", Ty::Duration, true),
    p("network", "delay.jitter", Ty::Duration, true),
    p("network", "loss.percent", Ty::Percent, true),
    p("network", "corrupt.percent", Ty::Percent, true),
    p("network", "duplicate.percent", Ty::Percent, true),
    p("network", "rate", Ty::Rate, false),
    p("packet_loss", "percent", Ty::Percent, true),
    p("bandwidth", "rate", Ty::Rate, false),
    p("cpu_limit", "cpus", Ty::Number, false),
    p("memory_limit", "limit", Ty::Size, false),
    p("cpu_stress", "load", Ty::Percent, true),
    p("cpu_stress", "workers", Ty::Count, true),
    p("memory_stress", "size", Ty::Size, true),
    p("memory_stress", "percent", Ty::Percent, true),
    p("disk_fill", "fill_to", Ty::Percent, true),
    p("disk_fill", "size", Ty::Size, true),
    p("process_pause", "target.percent", Ty::Percent, true),
    p("process_pause", "target.count", Ty::Count, true),
    p("process_kill", "target.percent", Ty::Percent, true),
    p("process_kill", "target.count", Ty::Count, true),
];

/// The parameters `kind` accepts, for messages.
pub fn params_of(kind: &str) -> Vec<&'static str> {
    PARAMS
        .iter()
        .filter(|p| p.kind == kind)
        .map(|p| p.path)
        .collect()
}

fn param(kind: &str, path: &str) -> Option<&'static Param> {
    PARAMS.iter().find(|p| p.kind == kind && p.path == path)
}

/// A level's value as a number on the parameter's scale (ms, %, bits/s,
/// bytes, count), or why it does not parse.
fn magnitude(ty: Ty, v: &Level) -> Result<f64, String> {
    let j = v.json();
    match ty {
        Ty::Duration => serde_json::from_value::<Duration>(j)
            .map(|d| d.as_millis_f64())
            .map_err(|e| e.to_string()),
        Ty::Percent => serde_json::from_value::<crate::units::Percent>(j)
            .map(|p| p.0)
            .map_err(|e| e.to_string()),
        Ty::Rate => serde_json::from_value::<crate::units::Rate>(j)
            .map(|r| r.bits_per_sec as f64)
            .map_err(|e| e.to_string()),
        Ty::Size => serde_json::from_value::<crate::units::Size>(j)
            .map(|s| s.bytes() as f64)
            .map_err(|e| e.to_string()),
        Ty::Number => match v {
            Level::Number(n) if n.is_finite() => Ok(*n),
            _ => Err(format!("`{v}` is not a number; write e.g. `0.5`")),
        },
        Ty::Count => match v {
            Level::Number(n) if *n >= 1.0 && n.fract() == 0.0 => Ok(*n),
            _ => Err(format!("`{v}` is not a whole number of at least 1")),
        },
    }
}

/// A problem with an `escalate`, at a field path relative to the step.
#[derive(Debug, PartialEq)]
pub struct Problem {
    /// `escalate.param`, `escalate.levels[2]`...
    pub field: String,
    pub message: String,
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        field: field.into(),
        message: message.into(),
    }
}

impl Escalate {
    /// Every problem with this escalation of `fault`; empty when it can run.
    pub fn check(&self, fault: &Fault) -> Vec<Problem> {
        let kind = fault.kind_name();
        let Some(def) = param(kind, &self.param) else {
            let known = params_of(kind);
            let msg = if known.is_empty() {
                format!("a `{kind}` fault cannot be escalated; escalate a fault with a level, e.g. `network` (`delay.time`) or `cpu_limit` (`cpus`)")
            } else {
                format!(
                    "`{}` is not a parameter of `{kind}` that can be escalated; use one of: {}",
                    crate::sys::text::escape_text(&self.param),
                    known.join(", ")
                )
            };
            return vec![problem("escalate.param", msg)];
        };
        let mut out = Vec::new();
        if self.levels.len() < 2 {
            out.push(problem(
                "escalate.levels",
                "give at least 2 levels, mildest first, e.g. `[50ms, 100ms, 200ms]`",
            ));
        }
        if self.levels.len() > 20 {
            out.push(problem(
                "escalate.levels",
                "at most 20 levels; each is held for `hold`",
            ));
        }
        if self.hold.is_zero() {
            out.push(problem(
                "escalate.hold",
                "a hold of zero; give how long each level stays, e.g. `20s`",
            ));
        }
        let mut mags = Vec::new();
        for (i, l) in self.levels.iter().enumerate() {
            match magnitude(def.ty, l) {
                Ok(m) => mags.push(Some(m)),
                Err(e) => {
                    out.push(problem(
                        format!("escalate.levels[{i}]"),
                        format!("not a value for `{}`: {e}", self.param),
                    ));
                    mags.push(None);
                    continue;
                }
            }
            if let Err(e) = self.level_fault(fault, i) {
                out.push(problem(format!("escalate.levels[{i}]"), e));
            }
        }
        for i in 1..mags.len() {
            let (Some(a), Some(b)) = (mags[i - 1], mags[i]) else {
                continue;
            };
            let ok = if def.worse_higher { b > a } else { b < a };
            if !ok {
                out.push(problem(
                    format!("escalate.levels[{i}]"),
                    format!(
                        "levels must grow more severe, mildest first: for `{}` each level is {} than the one before, but {} follows {}",
                        self.param,
                        if def.worse_higher { "higher" } else { "lower" },
                        self.levels[i],
                        self.levels[i - 1]
                    ),
                ));
            }
        }
        if let Some(m) = &self.must_hold {
            if !self.levels.contains(m) {
                out.push(problem(
                    "escalate.must_hold",
                    format!(
                        "`{m}` is not one of the levels; give one of: {}",
                        self.levels
                            .iter()
                            .map(|l| format!("`{l}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        out
    }

    /// The fault of level `k` (0-based): `fault` with `param` set to the
    /// level's value.
    pub fn level_fault(&self, fault: &Fault, k: usize) -> Result<Fault, String> {
        let level = self
            .levels
            .get(k)
            .ok_or_else(|| format!("no level {}", k + 1))?;
        let kind = fault.kind_name();
        let mut doc = serde_json::to_value(fault).map_err(|e| e.to_string())?;
        let mut at = doc
            .get_mut(kind)
            .ok_or_else(|| format!("the `{kind}` fault has no fields"))?;
        let parts: Vec<&str> = self.param.split('.').collect();
        for (n, part) in parts.iter().enumerate() {
            let obj = match at {
                serde_json::Value::Null => {
                    *at = serde_json::Value::Object(Default::default());
                    at.as_object_mut().unwrap()
                }
                serde_json::Value::Object(o) => o,
                _ => {
                    return Err(format!(
                        "`{}` is not a map in this fault",
                        parts[..n].join(".")
                    ))
                }
            };
            if n + 1 == parts.len() {
                obj.insert(part.to_string(), level.json());
                break;
            }
            at = obj
                .entry(part.to_string())
                .or_insert(serde_json::Value::Null);
        }
        serde_json::from_value::<Fault>(doc)
            .map_err(|e| format!("with {} = {level}, the fault is not valid: {e}", self.param))
    }

    /// Every level's fault, in order.
    pub fn level_faults(&self, fault: &Fault) -> Result<Vec<Fault>, String> {
        (0..self.levels.len())
            .map(|k| self.level_fault(fault, k))
            .collect()
    }

    /// Index of the level the hypothesis promises (the last by default).
    pub fn must_hold_index(&self) -> usize {
        self.must_hold
            .as_ref()
            .and_then(|m| self.levels.iter().position(|l| l == m))
            .unwrap_or(self.levels.len().saturating_sub(1))
    }

    /// The whole escalation's length: hold x levels.
    pub fn total(&self) -> Duration {
        Duration(self.hold.std() * self.levels.len() as u32)
    }

    /// `delay.time 50ms`.
    pub fn describe_level(&self, k: usize) -> String {
        match self.levels.get(k) {
            Some(l) => format!("{} {l}", self.param),
            None => self.param.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(y: &str) -> Fault {
        serde_yaml::from_str(y).unwrap()
    }

    fn esc(y: &str) -> Escalate {
        serde_yaml::from_str(y).unwrap()
    }

    #[test]
    fn a_level_is_the_fault_with_the_parameter_replaced() {
        let f = fault("network: {interface: veth0, netns: app, delay: {time: 10ms}}");
        let e = esc("{param: delay.time, levels: [50ms, 100ms, 200ms], hold: 10s}");
        assert!(e.check(&f).is_empty(), "{:?}", e.check(&f));
        let Fault::Network(n) = e.level_fault(&f, 1).unwrap() else {
            panic!()
        };
        assert_eq!(n.delay.unwrap().time, Duration::from_millis(100));
        assert_eq!(n.interface, "veth0");
        // The map is created when the fault as written does not have it.
        let f = fault("network: {interface: veth0, loss: {percent: 1%}}");
        let Fault::Network(n) = e.level_fault(&f, 0).unwrap() else {
            panic!()
        };
        assert_eq!(n.delay.unwrap().time, Duration::from_millis(50));
        let f = fault("cpu_limit: {target: {pid: 1}, cpus: 0.9}");
        let e = esc("{param: cpus, levels: [0.8, 0.4, 0.2], hold: 5s}");
        assert!(e.check(&f).is_empty(), "{:?}", e.check(&f));
        let Fault::CpuLimit(c) = e.level_fault(&f, 2).unwrap() else {
            panic!()
        };
        assert_eq!(c.cpus, 0.2);
        assert_eq!(e.must_hold_index(), 2);
    }

    #[test]
    fn clear_errors() {
        let f = fault("network: {interface: veth0, delay: {time: 10ms}}");
        let e = esc("{param: delay.tim, levels: [50ms, 100ms], hold: 10s}");
        let p = e.check(&f);
        assert_eq!(p[0].field, "escalate.param");
        assert!(p[0].message.contains("delay.time"), "{p:?}");
        let e = esc("{param: delay.time, levels: [50ms, 20ms, fast], hold: 10s}");
        let p = e.check(&f);
        assert!(
            p.iter()
                .any(|p| p.field == "escalate.levels[2]" && p.message.contains("not a duration")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.field == "escalate.levels[1]" && p.message.contains("more severe")),
            "{p:?}"
        );
        // cpus grow more severe downwards.
        let f = fault("cpu_limit: {target: {pid: 1}, cpus: 0.9}");
        let e = esc("{param: cpus, levels: [0.2, 0.4], hold: 5s, must_hold: 0.3}");
        let p = e.check(&f);
        assert!(p.iter().any(|p| p.message.contains("lower")), "{p:?}");
        assert!(p.iter().any(|p| p.field == "escalate.must_hold"), "{p:?}");
        let e = esc("{param: cpus, levels: [0.5], hold: 0s}");
        let p = e.check(&f);
        assert!(p.iter().any(|p| p.message.contains("at least 2")), "{p:?}");
        assert!(p.iter().any(|p| p.field == "escalate.hold"), "{p:?}");
        let f = fault("dns: {}");
        let e = esc("{param: x, levels: [1, 2], hold: 1s}");
        assert!(e.check(&f)[0].message.contains("cannot be escalated"));
    }
}
