//! Chaos Toolkit experiments, run unchanged: detection, translation into
//! faultline's model, tolerances with Chaos Toolkit's meaning, runtime
//! strategies, and a journal in Chaos Toolkit's format. See docs/chaostoolkit.md.

pub mod journal;
pub mod python;
pub mod tolerance;
pub mod translate;
pub mod vars;

use crate::experiment::model::{Policy, RollbackPolicy};
use crate::experiment::secrets::Redactor;
use crate::experiment::{validate, yaml, Diagnostic, Loaded};
use serde_json::Value;

/// When the steady-state hypothesis is checked (`--hypothesis-strategy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HypothesisStrategy {
    /// Before and after the method.
    #[default]
    Default,
    BeforeMethodOnly,
    AfterMethodOnly,
    DuringMethodOnly,
    /// Before, during (every `--hypothesis-frequency` seconds) and after.
    Continuously,
}

impl HypothesisStrategy {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "default" => Self::Default,
            "before-method-only" => Self::BeforeMethodOnly,
            "after-method-only" => Self::AfterMethodOnly,
            "during-method-only" => Self::DuringMethodOnly,
            // chaoslib still accepts the old misspelling.
            "continuously" | "continously" => Self::Continuously,
            _ => return None,
        })
    }
    pub fn before(self) -> bool {
        matches!(
            self,
            Self::Default | Self::BeforeMethodOnly | Self::Continuously
        )
    }
    pub fn after(self) -> bool {
        matches!(
            self,
            Self::Default | Self::AfterMethodOnly | Self::Continuously
        )
    }
}

/// When user rollbacks run (`--rollback-strategy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RollbackStrategy {
    /// Chaos Toolkit's default: not when the run was interrupted or failed.
    #[default]
    Default,
    Always,
    Never,
    Deviated,
}

impl RollbackStrategy {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "default" => Self::Default,
            "always" => Self::Always,
            "never" => Self::Never,
            "deviated" => Self::Deviated,
            _ => return None,
        })
    }
    pub fn policy(self) -> RollbackPolicy {
        match self {
            Self::Default => RollbackPolicy::UnlessInterrupted,
            // As chaoslib: also after a failed before check.
            Self::Always => RollbackPolicy::Unconditional,
            Self::Never => RollbackPolicy::Never,
            Self::Deviated => RollbackPolicy::Deviated,
        }
    }
}

/// Choices from the command line. `None` means: the file's `runtime`
/// section, else Chaos Toolkit's default.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub extra: vars::ExtraVars,
    pub hypothesis_strategy: Option<HypothesisStrategy>,
    pub rollback_strategy: Option<RollbackStrategy>,
    pub frequency: Option<f64>,
    pub fail_fast: bool,
    /// Resolved by `load`: what the translation uses.
    strategy: HypothesisStrategy,
}

/// A Chaos Toolkit experiment, loaded and translated.
pub struct CtkLoaded {
    pub loaded: Loaded,
    /// The experiment as written (for the journal's `experiment`).
    pub raw: Value,
    pub translation: translate::Translation,
    pub hypothesis_strategy: HypothesisStrategy,
    /// `None`: neither the command line nor the file chose one; faultline's
    /// default then runs rollbacks whenever the method ran.
    pub rollback_strategy: Option<RollbackStrategy>,
}

impl CtkLoaded {
    /// The run policy of the strategies. faultline's own fault undo is not
    /// part of it: that always happens.
    pub fn policy(&self) -> Policy {
        Policy {
            check_before: self.hypothesis_strategy.before(),
            check_after: self.hypothesis_strategy.after(),
            user_rollbacks: self
                .rollback_strategy
                .map_or(RollbackPolicy::Always, RollbackStrategy::policy),
            check_after_before_rollbacks: true,
        }
    }
}

/// Whether parsed text looks like a Chaos Toolkit experiment.
pub fn looks_like_ctk(v: &Value) -> bool {
    let Some(m) = v.as_object() else { return false };
    if m.contains_key("steady-state-hypothesis") {
        return true;
    }
    let is_activity = |a: &Value| {
        a.get("provider").is_some()
            || a.get("ref").is_some()
            || matches!(
                a.get("type").and_then(Value::as_str),
                Some("action") | Some("probe")
            )
    };
    m.get("method")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(is_activity))
}

/// Cheap pre-check on the text before parsing it twice.
pub fn may_be_ctk(text: &str) -> bool {
    text.contains("steady-state") || text.contains("provider") || text.contains("layer")
}

/// Whether parsed text is a Chaos Toolkit experiment in the format before
/// its 1.0 specification, which neither Chaos Toolkit nor faultline reads
/// any more: `(path, message)` pointing at what gives it away.
pub fn legacy_format(v: &Value) -> Option<(String, String)> {
    let m = v.as_object()?;
    // faultline's own files and current Chaos Toolkit files are not legacy.
    if m.contains_key("steady-state-hypothesis")
        || m.contains_key("steady_state")
        || m.contains_key("hypothesis")
    {
        return None;
    }
    // An activity of the old format: the provider's fields on the activity.
    let old_activity = |a: &Value| {
        a.get("provider").is_none()
            && (a.get("layer").is_some()
                || (matches!(
                    a.get("type").and_then(Value::as_str),
                    Some("python") | Some("process") | Some("http")
                ) && (a.get("module").is_some()
                    || a.get("path").is_some()
                    || a.get("url").is_some())))
    };
    let mut found = None;
    if m.contains_key("steady-state") {
        found = Some((
            "steady-state".to_string(),
            "a `steady-state` section".to_string(),
        ));
    }
    if let Some(method) = m.get("method").and_then(Value::as_array) {
        for (i, step) in method.iter().enumerate() {
            if found.is_some() {
                break;
            }
            if step.get("action").is_some() || step.get("probes").is_some() {
                found = Some((
                    format!("method[{i}]"),
                    "method steps with `action` and `probes`".to_string(),
                ));
            } else if old_activity(step) {
                found = Some((
                    format!("method[{i}]"),
                    "activities with `layer`/`type: python` and no `provider`".to_string(),
                ));
            }
        }
    }
    let (path, what) = found?;
    Some((
        path,
        format!(
            "this is a Chaos Toolkit experiment in the format from before Chaos Toolkit 1.0 ({what}), which current Chaos Toolkit and faultline do not read: write the checks as a `steady-state-hypothesis` with `probes`, each with a `tolerance`, and each activity as `{{type: action|probe, name, provider: {{type: python|process|http, ...}}}}` (see docs/chaostoolkit.md)"
        ),
    ))
}

fn diag(file: &str, spans: &yaml::SpanIndex, path: &str, message: String) -> Diagnostic {
    Diagnostic::at(file, path, spans.locate(path), message)
}

/// Parses JSON or YAML text into a value, with its span index.
pub fn parse(file: &str, bytes: &[u8]) -> Result<(Value, yaml::SpanIndex), Diagnostic> {
    let text = yaml::check_bytes(file, bytes)?;
    let spans = yaml::index(file, text).unwrap_or_default();
    let trimmed = text.trim_start();
    let v: Result<Value, String> = if trimmed.starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
    } else {
        serde_yaml::from_str(text).map_err(|e| format!("not valid YAML: {e}"))
    };
    match v {
        Ok(v) => Ok((v, spans)),
        Err(m) => Err(Diagnostic::at(file, "", (1, 1), m)),
    }
}

/// Reads a runtime strategy from the file's `runtime` section.
fn runtime_str<'a>(raw: &'a Value, section: &str) -> Option<&'a str> {
    raw.get("runtime")?.get(section)?.get("strategy")?.as_str()
}

/// Translates an already parsed Chaos Toolkit experiment.
pub fn load_value(
    file: &str,
    raw: Value,
    spans: yaml::SpanIndex,
    opts: &Options,
) -> Result<CtkLoaded, Vec<Diagnostic>> {
    // Known secrets are masked in every message, as everywhere else.
    let mut redactor = Redactor::default();
    if let Ok(sec) = vars::load_secrets(raw.get("secrets"), &opts.extra) {
        redactor.add_all(&Value::Object(sec));
    }
    let hide = |mut ds: Vec<Diagnostic>| {
        for d in &mut ds {
            d.message = redactor.text(&d.message);
        }
        ds
    };
    let mut problems = Vec::new();
    // Strategies: command line, else the file's `runtime`, else the default.
    let hypothesis_strategy = match opts.hypothesis_strategy {
        Some(s) => s,
        None => match runtime_str(&raw, "hypothesis") {
            None => HypothesisStrategy::Default,
            Some(s) => HypothesisStrategy::parse(s).unwrap_or_else(|| {
                problems.push(diag(
                    file,
                    &spans,
                    "runtime.hypothesis.strategy",
                    format!("`{s}` is not one of default, before-method-only, after-method-only, during-method-only, continuously"),
                ));
                HypothesisStrategy::Default
            }),
        },
    };
    // `None`: faultline's own default (user rollbacks whenever the method ran).
    let rollback_strategy = opts.rollback_strategy.or_else(|| {
        runtime_str(&raw, "rollbacks").map(|s| {
            RollbackStrategy::parse(s).unwrap_or_else(|| {
                problems.push(diag(
                    file,
                    &spans,
                    "runtime.rollbacks.strategy",
                    format!("`{s}` is not one of default, always, never, deviated"),
                ));
                RollbackStrategy::Default
            })
        })
    });
    let mut o = opts.clone();
    o.strategy = hypothesis_strategy;
    let t = match translate::translate(&raw, &o) {
        Ok(t) => t,
        Err(ps) => {
            problems.extend(ps.into_iter().map(|(p, m)| diag(file, &spans, &p, m)));
            return Err(hide(problems));
        }
    };
    if !problems.is_empty() {
        return Err(hide(problems));
    }
    // Validate the translation like any experiment; report at the Chaos
    // Toolkit activity.
    let checked = validate::validate(&t.experiment, file, &Default::default());
    if !checked.is_empty() {
        return Err(hide(
            checked
                .into_iter()
                .map(|d| {
                    let hit = t
                        .paths
                        .iter()
                        .filter(|(fl, _, _)| d.path == *fl || d.path.starts_with(&format!("{fl}.")))
                        .max_by_key(|(fl, _, _)| fl.len());
                    match hit {
                        Some((_, ctk, name)) => diag(
                            file,
                            &spans,
                            ctk,
                            format!(
                                "activity `{name}`: {} (translated field `{}`)",
                                d.message, d.path
                            ),
                        ),
                        None => diag(
                            file,
                            &spans,
                            "",
                            format!("{} (translated field `{}`)", d.message, d.path),
                        ),
                    }
                })
                .collect(),
        ));
    }
    // Credentials in the activities as substituted (an http rollback's
    // headers are not in the translated model: they travel to curl).
    redactor.merge(&Redactor::for_experiment(&t.experiment));
    redactor.merge(&Redactor::for_experiment(&t.probes));
    redactor.merge(&Redactor::for_experiment(&t.rollbacks));
    for s in &t.steps {
        if let translate::StepOrigin::Activity { activity, .. } = s {
            redactor.merge(&Redactor::for_experiment(activity));
        }
    }
    Ok(CtkLoaded {
        loaded: Loaded {
            file: file.to_string(),
            experiment: t.experiment.clone(),
            spans,
            redactor,
            vars: Default::default(),
        },
        raw,
        translation: t,
        hypothesis_strategy,
        rollback_strategy,
    })
}

impl Options {
    /// The hypothesis strategy in force (set by `load`).
    pub fn strategy(&self) -> HypothesisStrategy {
        self.strategy
    }
}
