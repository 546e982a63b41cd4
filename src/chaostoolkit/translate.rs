//! A Chaos Toolkit experiment (as JSON) -> faultline's `Experiment`.
//!
//! Every problem is reported with the path of the Chaos Toolkit field
//! (`method[2].provider.path`) and the activity's name.

use super::python;
use super::tolerance::{self, Tolerance};
use super::vars::{self, ExtraVars, Lookup};
use super::{HypothesisStrategy, Options};
use crate::experiment::model::*;
use crate::units::{Duration, Percent};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Where a faultline method step came from.
#[derive(Clone, Debug)]
pub enum StepOrigin {
    /// The activity itself (refs resolved, values substituted).
    Activity { index: usize, activity: Value },
    /// A `pauses.before`/`pauses.after` of the method activity `index`.
    Pause { index: usize, before: bool },
    /// The stand-in step of an empty method (`"method": []`).
    Empty,
}

/// The translated experiment and what is needed to map results back.
#[derive(Clone, Debug)]
pub struct Translation {
    pub experiment: Experiment,
    /// Hypothesis probes (substituted), one per faultline probe.
    pub probes: Vec<Value>,
    pub steps: Vec<StepOrigin>,
    /// Rollback activities (substituted), one per faultline rollback.
    pub rollbacks: Vec<Value>,
    /// Whether the file has a steady-state hypothesis with probes.
    pub has_hypothesis: bool,
    /// faultline path prefix -> (Chaos Toolkit path, activity name).
    pub paths: Vec<(String, String, String)>,
    pub warnings: Vec<String>,
    /// Controls that may guard what they are attached to (a prompt, a
    /// safeguard): `run` refuses to go on without them unless told to.
    pub guarding_controls: Vec<String>,
}

type Problems = Vec<(String, String)>;

/// Default timeouts where Chaos Toolkit has none (it would wait forever).
const HTTP_TIMEOUT: f64 = 30.0;
const PROCESS_PROBE_TIMEOUT: f64 = 60.0;
const ACTION_TIMEOUT: f64 = 3600.0;

pub fn translate(raw: &Value, opts: &Options) -> Result<Translation, Problems> {
    let mut p: Problems = Vec::new();
    let Some(top) = raw.as_object() else {
        return Err(vec![(
            String::new(),
            "a Chaos Toolkit experiment is a mapping (JSON object)".into(),
        )]);
    };
    let extra: &ExtraVars = &opts.extra;
    let configuration =
        vars::load_configuration(top.get("configuration"), extra).unwrap_or_else(|e| {
            p.extend(e);
            Map::new()
        });
    let secrets = vars::load_secrets(top.get("secrets"), extra).unwrap_or_else(|e| {
        p.extend(e);
        Map::new()
    });
    let lookup = Lookup {
        configuration: &configuration,
        secrets: &secrets,
    };
    let ctx = Ctx {
        configuration: &configuration,
        secrets: &secrets,
    };
    let sub = |v: &Value| vars::substitute(v, &lookup);
    let sub_activity = |a: &Value| substitute_activity(a, &lookup);

    let title = match top.get("title").map(&sub) {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        _ => {
            p.push(("title".into(), "the experiment needs a `title`".into()));
            String::new()
        }
    };
    let description = top.get("description").map(&sub).and_then(|v| match v {
        Value::String(s) => Some(s),
        _ => None,
    });
    let tags: Vec<String> = top
        .get("tags")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|t| vars::py_str(&sub(t))).collect())
        .unwrap_or_default();
    let mut warnings = Vec::new();
    let mut guarding_controls = Vec::new();
    controls(
        top.get("controls"),
        "controls",
        &mut warnings,
        &mut guarding_controls,
    );

    // Every named activity, for `ref` (a later definition wins, as chaoslib's cache).
    let mut by_name: BTreeMap<String, Value> = BTreeMap::new();
    let ssh = top.get("steady-state-hypothesis");
    let ssh_probes: Vec<Value> = ssh
        .and_then(|h| h.get("probes"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let method: Vec<Value> = match top.get("method") {
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            p.push((
                "method".into(),
                "`method` must be a list of activities".into(),
            ));
            vec![]
        }
        None => {
            p.push((
                "method".into(),
                "the experiment needs a `method`: a list of actions and probes".into(),
            ));
            vec![]
        }
    };
    let rollbacks: Vec<Value> = top
        .get("rollbacks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for a in ssh_probes.iter().chain(&method).chain(&rollbacks) {
        if a.get("ref").is_none() {
            if let Some(n) = a.get("name").and_then(Value::as_str) {
                by_name.insert(n.to_string(), a.clone());
            }
        }
    }
    let names: Vec<String> = by_name.keys().cloned().collect();
    let suggester = std::cell::RefCell::new(crate::experiment::yaml::Suggester::default());
    let resolve = |a: &Value, path: &str, p: &mut Problems| -> Option<Value> {
        match a.get("ref") {
            None => Some(a.clone()),
            Some(Value::String(r)) => match by_name.get(r) {
                Some(found) => Some(found.clone()),
                None => {
                    let mut msg = format!("`ref: {r}` names no activity");
                    if let Some(b) = suggester.borrow_mut().suggest(r, &names) {
                        msg.push_str(&format!(" (did you mean `{b}`?)"));
                    }
                    p.push((format!("{path}.ref"), msg));
                    None
                }
            },
            Some(_) => {
                p.push((
                    format!("{path}.ref"),
                    "`ref` is the name of another activity".into(),
                ));
                None
            }
        }
    };

    let mut paths = Vec::new();
    // Steady-state hypothesis.
    let strategy = opts.strategy;
    let during = matches!(
        strategy,
        HypothesisStrategy::DuringMethodOnly | HypothesisStrategy::Continuously
    );
    let frequency = opts.frequency.unwrap_or(1.0);
    if let Err(m) = seconds(&Value::from(frequency)).and_then(|f| {
        let min = crate::experiment::validate::MIN_INTERVAL
            .std()
            .as_secs_f64();
        if f <= 0.0 {
            Err("it must be more than 0".into())
        } else if f < min {
            Err(format!("the minimum is {min} seconds"))
        } else {
            Ok(f)
        }
    }) {
        p.push((
            String::new(),
            format!("--hypothesis-frequency {frequency}: {m}"),
        ));
    }
    let mut probes = Vec::new();
    let mut probe_acts = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let hypothesis_title = match ssh {
        Some(h) => match h.get("title").map(&sub) {
            Some(Value::String(t)) if !t.trim().is_empty() => t,
            _ => {
                p.push((
                    "steady-state-hypothesis.title".into(),
                    "the steady-state hypothesis needs a `title`".into(),
                ));
                String::new()
            }
        },
        None => String::new(),
    };
    for (i, a) in ssh_probes.iter().enumerate() {
        let path = format!("steady-state-hypothesis.probes[{i}]");
        let Some(a) = resolve(a, &path, &mut p) else {
            continue;
        };
        let a = sub_activity(&a);
        let name = activity_name(&a, &path, &mut p);
        controls(
            a.get("controls"),
            &format!("{path}.controls"),
            &mut warnings,
            &mut guarding_controls,
        );
        if a.get("tolerance").is_none() {
            p.push((
                format!("{path}.tolerance"),
                format!("hypothesis probe `{name}` needs a `tolerance`: what its result must be"),
            ));
            continue;
        }
        match build_probe(&a, &path, &ctx) {
            Ok(mut probe) => {
                probe.name = unique(&name, &mut names);
                probe.before = BeforeRequirement {
                    samples: 1,
                    min_success: Percent(100.0),
                    ..Default::default()
                };
                // One check after the method, as Chaos Toolkit.
                probe.after = AfterRequirement {
                    within: Duration::from_millis(1),
                    successes: 1,
                };
                if during {
                    probe.during = Some(DuringRequirement {
                        min_success: Some(Percent(100.0)),
                        max_outage: None,
                        p50_below: None,
                        p95_below: None,
                        p99_below: None,
                        p50_within: None,
                        p95_within: None,
                    });
                }
                paths.push((
                    format!("steady_state.probes[{}]", probes.len()),
                    path.clone(),
                    name.clone(),
                ));
                probes.push(probe);
                probe_acts.push(a);
            }
            Err(e) => p.extend(e),
        }
    }
    let has_hypothesis = !probes.is_empty();
    if !has_hypothesis {
        // faultline measures something in every run; a check that always
        // passes stands in for the missing hypothesis.
        probes.push(Probe {
            name: "no steady-state hypothesis".into(),
            http: None,
            tcp: None,
            command: Some(CommandProbe {
                run: vec!["true".into()],
                cwd: None,
                env: BTreeMap::new(),
            }),
            process: None,
            prometheus: None,
            timeout: Duration::from_secs(5),
            expect: Expect::default(),
            before: BeforeRequirement {
                samples: 1,
                min_success: Percent(100.0),
                ..Default::default()
            },
            during: None,
            after: AfterRequirement {
                within: Duration::from_millis(1),
                successes: 1,
            },
            group: Default::default(),
        });
    }

    // Method.
    let mut steps = Vec::new();
    let mut origins = Vec::new();
    let mut waits = 0.0f64;
    for (i, a) in method.iter().enumerate() {
        let path = format!("method[{i}]");
        let Some(a) = resolve(a, &path, &mut p) else {
            continue;
        };
        let a = sub_activity(&a);
        let name = activity_name(&a, &path, &mut p);
        controls(
            a.get("controls"),
            &format!("{path}.controls"),
            &mut warnings,
            &mut guarding_controls,
        );
        let background = match a.get("background") {
            None | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) => true,
            Some(_) => {
                p.push((
                    format!("{path}.background"),
                    "`background` is true or false".into(),
                ));
                false
            }
        };
        let (before, after) = pauses(&a, &path, &mut p);
        waits += before + after;
        let step = match build_action(&a, &path, &ctx, ACTION_TIMEOUT) {
            Ok(s) => s,
            Err(e) => {
                p.extend(e);
                continue;
            }
        };
        if background && (before > 0.0 || after > 0.0) {
            // The pauses belong to the background activity only.
            match wrap_pauses(step, before, after) {
                Ok(s) => {
                    paths.push((
                        format!("method[{}]", steps.len()),
                        path.clone(),
                        name.clone(),
                    ));
                    origins.push(StepOrigin::Activity {
                        index: i,
                        activity: a.clone(),
                    });
                    steps.push(Step {
                        background: true,
                        ..s
                    });
                }
                Err(m) => p.push((format!("{path}.pauses"), m)),
            }
            continue;
        }
        if before > 0.0 {
            paths.push((
                format!("method[{}]", steps.len()),
                format!("{path}.pauses.before"),
                name.clone(),
            ));
            origins.push(StepOrigin::Pause {
                index: i,
                before: true,
            });
            steps.push(pause_step(&name, before, true));
        }
        paths.push((
            format!("method[{}]", steps.len()),
            path.clone(),
            name.clone(),
        ));
        origins.push(StepOrigin::Activity {
            index: i,
            activity: a.clone(),
        });
        steps.push(Step { background, ..step });
        if after > 0.0 {
            paths.push((
                format!("method[{}]", steps.len()),
                format!("{path}.pauses.after"),
                name.clone(),
            ));
            origins.push(StepOrigin::Pause {
                index: i,
                before: false,
            });
            steps.push(pause_step(&name, after, false));
        }
    }

    if method.is_empty() && p.is_empty() {
        // Chaos Toolkit runs an empty method: the steady state is checked
        // only. faultline's model needs a step; this one does nothing.
        paths.push(("method[0]".into(), "method".into(), "(empty method)".into()));
        origins.push(StepOrigin::Empty);
        steps.push(Step {
            name: Some("(empty method: the steady state is checked only)".into()),
            fault: None,
            pause: Some(Duration::from_millis(1)),
            command: None,
            http: None,
            chaos_mesh: None,
            duration: None,
            background: false,
            min_effect: None,
            max_missing: None,
            escalate: None,
        });
    }

    // Rollbacks.
    let mut rb = Vec::new();
    let mut rb_acts = Vec::new();
    for (i, a) in rollbacks.iter().enumerate() {
        let path = format!("rollbacks[{i}]");
        let Some(a) = resolve(a, &path, &mut p) else {
            continue;
        };
        let a = sub_activity(&a);
        let name = activity_name(&a, &path, &mut p);
        controls(
            a.get("controls"),
            &format!("{path}.controls"),
            &mut warnings,
            &mut guarding_controls,
        );
        let (before, after) = pauses(&a, &path, &mut p);
        match build_rollback(&a, &path, &ctx) {
            Ok(mut c) => {
                if before > 0.0 || after > 0.0 {
                    c.run = sleep_wrap(&c.run, before, after);
                    c.timeout =
                        Duration(c.timeout.std().saturating_add(secs(before + after).std()));
                }
                c.name = Some(name.clone());
                paths.push((format!("rollbacks[{}]", rb.len()), path.clone(), name));
                rb.push(c);
                rb_acts.push(a);
            }
            Err(e) => p.extend(e),
        }
    }

    let abort = if during && opts.fail_fast {
        probes
            .iter()
            .map(|pr| AbortCondition {
                probe: pr.name.clone(),
                consecutive_failures: Some(1),
                failure_ratio: None,
                latency_above: None,
                percentile: None,
                window: None,
            })
            .collect()
    } else {
        vec![]
    };
    let interval = if frequency.is_finite() && frequency > 0.0 {
        secs(frequency)
    } else {
        Duration::from_secs(1)
    };
    if !p.is_empty() {
        return Err(p);
    }
    let experiment = Experiment {
        title,
        vars: Default::default(),
        description,
        hypothesis: if has_hypothesis {
            hypothesis_title
        } else {
            "(no steady-state hypothesis: exploring)".into()
        },
        tags,
        limits: Limits {
            // Chaos Toolkit has no overall limit; keep a generous one.
            max_duration: Duration(
                std::time::Duration::from_secs(86_400).saturating_add(secs(waits).std()),
            ),
            blast_radius: BlastRadius::default(),
        },
        setup: vec![],
        steady_state: SteadyState { interval, probes },
        method: steps,
        abort,
        rollbacks: rb,
        schedule: None,
        notify: vec![],
        silence: None,
    };
    Ok(Translation {
        experiment,
        probes: probe_acts,
        steps: origins,
        rollbacks: rb_acts,
        has_hypothesis,
        paths,
        warnings,
        guarding_controls,
    })
}

/// Substitutes `${name}` in an activity. A process provider's string of
/// arguments runs through `sh -c`: values pasted into it are shell-quoted,
/// so a value cannot add commands.
fn substitute_activity(a: &Value, l: &Lookup) -> Value {
    let mut out = vars::substitute(a, l);
    let is_process = a.pointer("/provider/type").and_then(Value::as_str) == Some("process");
    if let (true, Some(Value::String(raw))) = (is_process, a.pointer("/provider/arguments")) {
        if let Some(args) = out.pointer_mut("/provider/arguments") {
            *args = Value::String(vars::substitute_for_shell(raw, l));
        }
    }
    out
}

/// Module names of controls that only observe a run (tracing, logs,
/// notifications): ignoring them changes nothing that runs.
const OBSERVING_CONTROLS: [&str; 12] = [
    "trac",
    "log",
    "otel",
    "opentelemetry",
    "metric",
    "report",
    "slack",
    "notif",
    "prometheus",
    "datadog",
    "journal",
    "reliably",
];

/// Warns about every control (faultline cannot run them) and lists those
/// that may guard what they are attached to.
fn controls(v: Option<&Value>, path: &str, warnings: &mut Vec<String>, guarding: &mut Vec<String>) {
    let Some(v) = v else { return };
    let list: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => return,
        other => vec![other],
    };
    for (i, c) in list.iter().enumerate() {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("(unnamed)");
        let module = c
            .pointer("/provider/module")
            .and_then(Value::as_str)
            .unwrap_or("");
        let what = if module.is_empty() {
            format!("`{path}[{i}]` (`{name}`)")
        } else {
            format!("`{path}[{i}]` (`{name}`, module `{module}`)")
        };
        let words = format!("{name} {module}").to_ascii_lowercase();
        if OBSERVING_CONTROLS.iter().any(|w| words.contains(w)) {
            warnings.push(format!(
                "control {what} is not supported and is ignored: faultline cannot run Chaos Toolkit controls (its events stream with `--events`)"
            ));
        } else {
            warnings.push(format!(
                "control {what} is not supported: it may guard what it is attached to (a prompt, a safeguard); `faultline run` refuses to run without it unless you pass --ignore-controls"
            ));
            guarding.push(what);
        }
    }
}

struct Ctx<'a> {
    configuration: &'a Map<String, Value>,
    secrets: &'a Map<String, Value>,
}

/// Never panics: values come from `seconds`, which bounds them; anything
/// else becomes 0 or the bound.
fn secs(s: f64) -> Duration {
    let s = if s.is_nan() {
        0.0
    } else {
        s.clamp(0.0, MAX_SECONDS)
    };
    Duration(std::time::Duration::from_secs_f64(s))
}

fn unique(name: &str, taken: &mut Vec<String>) -> String {
    let mut n = name.to_string();
    let mut k = 2;
    while taken.contains(&n) {
        n = format!("{name} ({k})");
        k += 1;
    }
    taken.push(n.clone());
    n
}

fn activity_name(a: &Value, path: &str, p: &mut Problems) -> String {
    match a.get("name").and_then(Value::as_str) {
        Some(n) if !n.trim().is_empty() => n.to_string(),
        _ => {
            p.push((format!("{path}.name"), "an activity needs a `name`".into()));
            format!("({path})")
        }
    }
}

/// The longest pause or timeout accepted: a year, as faultline's durations.
const MAX_SECONDS: f64 = 366.0 * 86_400.0;

/// A number of seconds: a number or a numeric string (after substitution),
/// from 0 to a year.
fn seconds(v: &Value) -> Result<f64, String> {
    let x = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("{v} is not a number of seconds"))?;
    if x.is_nan() {
        Err("NaN is not a number of seconds".into())
    } else if x < 0.0 {
        Err(format!("{v} is negative; give a number of seconds from 0"))
    } else if x > MAX_SECONDS {
        Err(format!(
            "{v} seconds is longer than a year ({MAX_SECONDS} s); that is surely a mistake"
        ))
    } else {
        Ok(x)
    }
}

fn pauses(a: &Value, path: &str, p: &mut Problems) -> (f64, f64) {
    let Some(ps) = a.get("pauses") else {
        return (0.0, 0.0);
    };
    let mut get = |k: &str| match ps.get(k) {
        None | Some(Value::Null) => 0.0,
        Some(v) => seconds(v).unwrap_or_else(|m| {
            p.push((format!("{path}.pauses.{k}"), format!("a pause: {m}")));
            0.0
        }),
    };
    (get("before"), get("after"))
}

fn pause_step(name: &str, s: f64, before: bool) -> Step {
    Step {
        name: Some(format!(
            "pause {} `{name}` ({s}s)",
            if before { "before" } else { "after" }
        )),
        fault: None,
        pause: Some(secs(s)),
        command: None,
        http: None,
        chaos_mesh: None,
        duration: None,
        background: false,
        min_effect: None,
        max_missing: None,
        escalate: None,
    }
}

fn sleep_wrap(argv: &[String], before: f64, after: f64) -> Vec<String> {
    let mut v = vec![
        "sh".to_string(),
        "-c".to_string(),
        format!("sleep {before}; \"$@\"; rc=$?; sleep {after}; exit $rc"),
        "sh".to_string(),
    ];
    v.extend(argv.iter().cloned());
    v
}

/// Pauses of a background activity delay only it: its command is wrapped.
fn wrap_pauses(mut s: Step, before: f64, after: f64) -> Result<Step, String> {
    match &mut s.command {
        Some(c) => {
            c.run = sleep_wrap(&c.run, before, after);
            c.timeout = Duration(c.timeout.std() + secs(before + after).std());
            Ok(s)
        }
        None => Err("pauses on a background http activity are not supported; use a process activity (e.g. curl) or drop `background`".into()),
    }
}

fn provider<'a>(a: &'a Value, path: &str) -> Result<(&'a Map<String, Value>, &'a str), Problems> {
    let Some(pr) = a.get("provider").and_then(Value::as_object) else {
        return Err(vec![(
            format!("{path}.provider"),
            "an activity needs a `provider` (type http, process or python)".into(),
        )]);
    };
    let t = pr.get("type").and_then(Value::as_str).unwrap_or("");
    if !["http", "process", "python"].contains(&t) {
        return Err(vec![(
            format!("{path}.provider.type"),
            format!("provider type `{t}` is not one of http, process, python"),
        )]);
    }
    Ok((pr, t))
}

/// An activity's timeout, in seconds.
#[derive(Clone, Copy, Debug)]
struct Timeout {
    /// What bounds the whole activity.
    total: f64,
    /// `[connect, read]`: each applies on its own, as in Python requests.
    split: Option<(f64, f64)>,
}

impl Timeout {
    fn split(&self) -> Option<SplitTimeout> {
        self.split.map(|(c, r)| SplitTimeout {
            connect: secs(c),
            read: secs(r),
        })
    }
}

/// Timeout: the provider's (a number, or `[connect, read]`), else the activity's.
fn timeout_of(
    a: &Value,
    pr: &Map<String, Value>,
    path: &str,
    default: f64,
) -> Result<Timeout, Problems> {
    let bad = |k: &str, m: String| {
        vec![(
            k.to_string(),
            format!("a timeout is a number of seconds (or `[connect, read]` for http): {m}"),
        )]
    };
    let at = format!("{path}.provider.timeout");
    match pr.get("timeout") {
        Some(Value::Array(v)) => {
            let parts = v
                .iter()
                .map(seconds)
                .collect::<Result<Vec<f64>, String>>()
                .map_err(|m| bad(&at, m))?;
            match parts[..] {
                [c, r] if c > 0.0 && r > 0.0 => {
                    return Ok(Timeout {
                        total: c + r,
                        split: Some((c, r)),
                    })
                }
                [c, r] => {
                    return Err(bad(
                        &at,
                        format!("[{c}, {r}]: both parts must be more than 0"),
                    ))
                }
                _ => {
                    return Err(bad(
                        &at,
                        format!("a list has two numbers, not {}", parts.len()),
                    ))
                }
            }
        }
        Some(Value::Null) | None => {}
        Some(v) => {
            let t = seconds(v).map_err(|m| bad(&at, m))?;
            if t > 0.0 {
                return Ok(Timeout {
                    total: t,
                    split: None,
                });
            }
        }
    }
    let total = match a.get("timeout") {
        Some(Value::Null) | None => default,
        Some(v) => match seconds(v) {
            Ok(t) if t > 0.0 => t,
            Ok(_) => {
                return Err(bad(
                    &format!("{path}.timeout"),
                    "it must be more than 0".into(),
                ))
            }
            Err(m) => return Err(bad(&format!("{path}.timeout"), m)),
        },
    };
    Ok(Timeout { total, split: None })
}

/// An http provider's request: (url, method, headers, body).
struct Request {
    url: String,
    method: String,
    headers: BTreeMap<String, String>,
    body: Option<String>,
    insecure: bool,
}

fn http_request(pr: &Map<String, Value>, path: &str) -> Result<Request, Problems> {
    let url = match pr.get("url") {
        Some(Value::String(u)) if !u.is_empty() => u.clone(),
        _ => {
            return Err(vec![(
                format!("{path}.provider.url"),
                "an http activity needs a `url`".into(),
            )])
        }
    };
    let method = pr
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("GET")
        .to_ascii_uppercase();
    let mut headers = BTreeMap::new();
    match pr.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (k, v) in h {
                headers.insert(k.clone(), vars::py_str(v));
            }
        }
        Some(_) => {
            return Err(vec![(
                format!("{path}.provider.headers"),
                "headers are a mapping of names to values".into(),
            )])
        }
    }
    let mut url = url;
    let mut body = None;
    match pr.get("arguments") {
        None | Some(Value::Null) => {}
        Some(args) if method == "GET" => {
            if let Some(q) = form_encode(args) {
                if !q.is_empty() {
                    url.push(if url.contains('?') { '&' } else { '?' });
                    url.push_str(&q);
                }
            } else {
                return Err(vec![(
                    format!("{path}.provider.arguments"),
                    "GET arguments are a mapping of query parameters".into(),
                )]);
            }
        }
        Some(args) => {
            if headers.get("Content-Type").map(String::as_str) == Some("application/json") {
                body = Some(args.to_string());
            } else if let Value::String(s) = args {
                body = Some(s.clone());
            } else if let Some(f) = form_encode(args) {
                body = Some(f);
                if !headers
                    .keys()
                    .any(|k| k.eq_ignore_ascii_case("content-type"))
                {
                    headers.insert(
                        "Content-Type".into(),
                        "application/x-www-form-urlencoded".into(),
                    );
                }
            } else {
                return Err(vec![(
                    format!("{path}.provider.arguments"),
                    "arguments are a mapping (form fields, or JSON with `Content-Type: application/json`)".into(),
                )]);
            }
        }
    }
    let insecure = pr.get("verify_tls") == Some(&Value::Bool(false));
    Ok(Request {
        url,
        method,
        headers,
        body,
        insecure,
    })
}

/// `a=1&b=x+y` (lists repeat the key), as Python requests does.
fn form_encode(v: &Value) -> Option<String> {
    let m = v.as_object()?;
    let mut parts = Vec::new();
    for (k, x) in m {
        let vals: Vec<&Value> = match x {
            Value::Array(a) => a.iter().collect(),
            Value::Null => vec![],
            other => vec![other],
        };
        for y in vals {
            parts.push(format!("{}={}", enc(k), enc(&vars::py_str(y))));
        }
    }
    Some(parts.join("&"))
}

fn enc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                o.push(b as char)
            }
            b' ' => o.push('+'),
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

/// `expected_status` (a code or a list), if given.
fn expected_status(pr: &Map<String, Value>, path: &str) -> Result<Option<StatusSet>, Problems> {
    let v = match pr.get("expected_status") {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let codes: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut set = Vec::new();
    for c in codes {
        match c.as_u64().filter(|c| (100..=599).contains(c)) {
            Some(c) => set.push((c as u16, c as u16)),
            None => {
                return Err(vec![(
                    format!("{path}.provider.expected_status"),
                    format!("`{c}` is not an HTTP status code"),
                )])
            }
        }
    }
    Ok(Some(StatusSet(set)))
}

/// A process provider's argv, as chaoslib builds it: a string of arguments
/// goes through the shell; a list is passed as is; a mapping as key, value pairs.
fn process_argv(pr: &Map<String, Value>, path: &str) -> Result<Vec<String>, Problems> {
    let raw = match pr.get("path").and_then(Value::as_str) {
        Some(p) if !p.is_empty() => p,
        _ => {
            return Err(vec![(
                format!("{path}.provider.path"),
                "a process activity needs a `path`: the program to run".into(),
            )])
        }
    };
    let expanded = match (raw.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => raw.to_string(),
    };
    let program = match crate::sys::exec::find_program(&expanded) {
        Some(p) => p.display().to_string(),
        None => {
            return Err(vec![(
                format!("{path}.provider.path"),
                format!("program `{raw}` cannot be found (is it installed and on PATH?)"),
            )])
        }
    };
    match pr.get("arguments") {
        None | Some(Value::Null) => Ok(vec![program]),
        // `s` was substituted with shell-quoted values (`substitute_activity`).
        Some(Value::String(s)) => Ok(vec![
            "sh".into(),
            "-c".into(),
            format!("{} {s}", vars::shell_quote(&program)),
        ]),
        Some(Value::Array(a)) => {
            let mut v = vec![program];
            v.extend(
                a.iter()
                    .filter(|x| !x.is_null() && x.as_str() != Some(""))
                    .map(vars::py_str),
            );
            Ok(v)
        }
        Some(Value::Object(m)) => {
            let mut v = vec![program];
            for (k, x) in m {
                v.push(k.clone());
                if !x.is_null() && x.as_str() != Some("") {
                    v.push(vars::py_str(x));
                }
            }
            Ok(v)
        }
        Some(_) => Err(vec![(
            format!("{path}.provider.arguments"),
            "process arguments are a string, a list or a mapping".into(),
        )]),
    }
}

/// The JSON the python3 runner reads.
fn python_spec(pr: &Map<String, Value>, ctx: &Ctx, mode: &str, tol: Option<&Value>) -> Value {
    let mut spec = Map::new();
    spec.insert("mode".into(), Value::String(mode.into()));
    spec.insert("provider".into(), Value::Object(pr.clone()));
    spec.insert(
        "configuration".into(),
        Value::Object(ctx.configuration.clone()),
    );
    // Only the scopes the provider (or its tolerance probe) lists, as chaoslib.
    let mut scopes = Map::new();
    let listed = |p: Option<&Value>| -> Vec<String> {
        p.and_then(|p| p.get("secrets"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut names = listed(Some(&Value::Object(pr.clone())));
    names.extend(listed(tol.and_then(|t| t.get("provider"))));
    for n in names {
        if let Some(v) = ctx.secrets.get(&n) {
            scopes.insert(n, v.clone());
        }
    }
    spec.insert("secrets".into(), Value::Object(scopes));
    if let Some(t) = tol {
        spec.insert("tolerance".into(), t.clone());
    }
    Value::Object(spec)
}

fn check_python_provider(pr: &Map<String, Value>, path: &str, name: &str) -> Result<(), Problems> {
    let module = match pr.get("module").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m,
        _ => {
            return Err(vec![(
                format!("{path}.provider.module"),
                "a python activity needs a `module`".into(),
            )])
        }
    };
    if pr
        .get("func")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(vec![(
            format!("{path}.provider.func"),
            "a python activity needs a `func`".into(),
        )]);
    }
    python::check_module(module).map_err(|e| {
        vec![(
            format!("{path}.provider.module"),
            format!("activity `{name}`: {e}"),
        )]
    })
}

fn build_probe(a: &Value, path: &str, ctx: &Ctx) -> Result<Probe, Problems> {
    let (pr, kind) = provider(a, path)?;
    let name = a.get("name").and_then(Value::as_str).unwrap_or("?");
    let tol = a.get("tolerance").cloned().unwrap_or(Value::Null);
    let mut probe = Probe {
        name: name.to_string(),
        http: None,
        tcp: None,
        command: None,
        process: None,
        prometheus: None,
        timeout: Duration::from_secs(5),
        expect: Expect::default(),
        before: BeforeRequirement::default(),
        group: Default::default(),
        during: None,
        after: AfterRequirement::default(),
    };
    if tolerance::is_probe(&tol) {
        // Run the provider and the tolerance probe together in python3.
        let tpath = format!("{path}.tolerance");
        let (tpr, tkind) = provider(&tol, &tpath)?;
        if tkind != "python" {
            return Err(vec![(
                format!("{tpath}.provider.type"),
                "a probe tolerance must use a python provider (it is called with `value=`)".into(),
            )]);
        }
        check_python_provider(tpr, &tpath, name)?;
        if kind == "python" {
            check_python_provider(pr, path, name)?;
        } else {
            python::check_python().map_err(|e| vec![(tpath.clone(), e)])?;
        }
        let (run, env) = python::command(&python_spec(pr, ctx, "tolerance", Some(&tol)));
        probe.command = Some(CommandProbe {
            run,
            cwd: None,
            env,
        });
        probe.timeout = secs(timeout_of(a, pr, path, PROCESS_PROBE_TIMEOUT)?.total);
        return Ok(probe);
    }
    Tolerance::parse(&tol)
        .map_err(|e| vec![(format!("{path}.tolerance"), format!("probe `{name}`: {e}"))])?;
    probe.expect.tolerance = Some(tol);
    match kind {
        "http" => {
            let r = http_request(pr, path)?;
            let timeout = timeout_of(a, pr, path, HTTP_TIMEOUT)?;
            probe.http = Some(HttpProbe {
                url: r.url,
                container: None,
                port: None,
                path: None,
                method: r.method,
                headers: r.headers,
                body: r.body,
                insecure: r.insecure,
                split_timeout: timeout.split(),
            });
            // Any status is a result; the tolerance judges it.
            probe.expect.status =
                Some(expected_status(pr, path)?.unwrap_or(StatusSet(vec![(100, 599)])));
            probe.timeout = secs(timeout.total);
        }
        "process" => {
            probe.command = Some(CommandProbe {
                run: process_argv(pr, path)?,
                cwd: None,
                env: BTreeMap::new(),
            });
            probe.timeout = secs(timeout_of(a, pr, path, PROCESS_PROBE_TIMEOUT)?.total);
        }
        _ => {
            check_python_provider(pr, path, name)?;
            let (run, env) = python::command(&python_spec(pr, ctx, "run", None));
            probe.command = Some(CommandProbe {
                run,
                cwd: None,
                env,
            });
            probe.expect.result_on_stdout = true;
            probe.timeout = secs(timeout_of(a, pr, path, PROCESS_PROBE_TIMEOUT)?.total);
        }
    }
    Ok(probe)
}

/// A method activity (action or probe) as a step. Failures are recorded but
/// never stop the method, as in Chaos Toolkit.
fn build_action(a: &Value, path: &str, ctx: &Ctx, default_timeout: f64) -> Result<Step, Problems> {
    let (pr, kind) = provider(a, path)?;
    let name = a
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    let mut step = Step {
        name: Some(name.clone()),
        fault: None,
        pause: None,
        command: None,
        http: None,
        chaos_mesh: None,
        duration: None,
        background: false,
        min_effect: None,
        max_missing: None,
        escalate: None,
    };
    match kind {
        "http" => {
            let r = http_request(pr, path)?;
            if r.insecure {
                // HttpAction has no TLS switch; say so rather than fail later.
                return Err(vec![(
                    format!("{path}.provider.verify_tls"),
                    "`verify_tls: false` is supported on hypothesis probes only".into(),
                )]);
            }
            let timeout = timeout_of(a, pr, path, HTTP_TIMEOUT)?;
            step.http = Some(HttpAction {
                name: Some(name),
                url: r.url,
                method: r.method,
                headers: r.headers,
                body: r.body,
                timeout: secs(timeout.total),
                split_timeout: timeout.split(),
                expect_status: Some(
                    expected_status(pr, path)?.unwrap_or(StatusSet(vec![(100, 599)])),
                ),
                ignore_failure: true,
            });
        }
        "process" => {
            step.command = Some(CommandAction {
                name: Some(name),
                run: process_argv(pr, path)?,
                cwd: None,
                env: BTreeMap::new(),
                timeout: secs(timeout_of(a, pr, path, default_timeout)?.total),
                expect_exit: 0,
                ignore_failure: true,
            });
        }
        _ => {
            check_python_provider(pr, path, &name)?;
            let (run, env) = python::command(&python_spec(pr, ctx, "run", None));
            step.command = Some(CommandAction {
                name: Some(name),
                run,
                cwd: None,
                env,
                timeout: secs(timeout_of(a, pr, path, default_timeout)?.total),
                expect_exit: 0,
                ignore_failure: true,
            });
        }
    }
    Ok(step)
}

/// A rollback as a command: process and python as in the method; http
/// through curl (or python3 when curl is missing).
fn build_rollback(a: &Value, path: &str, ctx: &Ctx) -> Result<CommandAction, Problems> {
    let (pr, kind) = provider(a, path)?;
    if kind != "http" {
        let s = build_action(a, path, ctx, ACTION_TIMEOUT)?;
        return Ok(s.command.expect("process/python actions are commands"));
    }
    let name = a
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    let r = http_request(pr, path)?;
    let timeout = timeout_of(a, pr, path, HTTP_TIMEOUT)?;
    let run = if crate::sys::exec::find_program("curl").is_some() {
        // Headers, body and URL may carry credentials: they reach curl as a
        // config on its stdin, from an environment variable (readable by
        // this user only), never on argv where every user can read them.
        let mut cfg = vec![
            "silent".to_string(),
            "show-error".into(),
            format!("output = {}", curl_quote("/dev/null")),
            // The status on stdout, for the journal's `output`.
            format!("write-out = {}", curl_quote("%{http_code}")),
            format!("request = {}", curl_quote(&r.method)),
        ];
        for (k, val) in &r.headers {
            cfg.push(format!("header = {}", curl_quote(&format!("{k}: {val}"))));
        }
        if let Some(b) = &r.body {
            // `data-raw`: a body starting with `@` is not a file name.
            cfg.push(format!("data-raw = {}", curl_quote(b)));
        }
        if r.insecure {
            cfg.push("insecure".into());
        }
        if let Some((c, rd)) = timeout.split {
            // As requests: connect and read apart; a read stalls when
            // nothing arrives for `rd` seconds.
            cfg.push(format!("connect-timeout = {c}"));
            cfg.push(format!(
                "speed-limit = 1\nspeed-time = {}",
                rd.ceil().max(1.0)
            ));
        }
        cfg.push(format!("max-time = {}", timeout.total));
        cfg.push(format!("url = {}", curl_quote(&r.url)));
        let mut env = BTreeMap::new();
        env.insert(CURL_CONFIG_ENV.to_string(), cfg.join("\n") + "\n");
        (
            vec![
                "sh".into(),
                "-c".into(),
                format!("printf '%s' \"${CURL_CONFIG_ENV}\" | exec curl --config -"),
            ],
            env,
        )
    } else {
        python::check_python().map_err(|e| {
            vec![(
                format!("{path}.provider"),
                format!("http rollback `{name}` needs curl or python3: {e}"),
            )]
        })?;
        python::command(&python_spec(pr, ctx, "run", None))
    };
    Ok(CommandAction {
        name: Some(name),
        run: run.0,
        cwd: None,
        env: run.1,
        timeout: secs(timeout.total + 5.0),
        expect_exit: 0,
        ignore_failure: true,
    })
}

/// Environment variable that carries an http rollback's curl config.
const CURL_CONFIG_ENV: &str = "FAULTLINE_CTK_CURL";

/// A value in a curl config file: double-quoted, with curl's escapes.
fn curl_quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}
