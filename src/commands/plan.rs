//! `faultline plan FILE`: the dry run. Prints every phase and the exact
//! operations each fault would perform, runs every preflight check, and
//! changes nothing on the host.

use crate::cli::PlanFormat;
use crate::exit;
use crate::experiment::model::{Experiment, Step};
use crate::experiment::Loaded;
use crate::fault::{self, FaultContext, PlannedOp, Protected};
use crate::probe::{ProbeContext, ProbeRunner};
use crate::sys::exec::shell_words;
use crate::sys::text::escape_text;
use serde::Serialize;
use std::path::Path;

#[derive(Serialize)]
pub struct Plan {
    pub title: String,
    pub file: String,
    pub hypothesis: String,
    pub max_duration: String,
    /// The schedule window and whether now is inside it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<PlannedSchedule>,
    /// The Alertmanager silence the run creates, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silence: Option<String>,
    pub preflight: Vec<Check>,
    pub setup: Vec<String>,
    pub probes: Vec<PlannedProbe>,
    pub steps: Vec<PlannedStep>,
    pub abort: Vec<String>,
    pub rollbacks: Vec<String>,
    pub after: Vec<String>,
    /// Exit code `run` would stop with at preflight (0 when every check passes).
    pub exit_code: i32,
}

#[derive(Serialize)]
pub struct PlannedSchedule {
    pub window: String,
    pub inside: bool,
    /// When the current window closes (inside) or the next opens (outside).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closes: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_opens: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Serialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Serialize)]
pub struct PlannedProbe {
    pub name: String,
    pub checks: String,
    pub before: String,
    pub during: String,
}

#[derive(Serialize)]
pub struct PlannedStep {
    pub index: usize,
    pub label: String,
    pub kind: String,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<PlannedOp>,
}

pub fn run(
    file: &Path,
    format: PlanFormat,
    chaostoolkit: bool,
    opts: &crate::chaostoolkit::Options,
    inputs: &crate::experiment::vars::Inputs,
) -> i32 {
    let (loaded, ctk) = match crate::load::load(file, chaostoolkit, opts, inputs) {
        Ok(l) => l,
        Err(problems) => {
            for p in &problems {
                eprintln!("{}", escape_text(&p.to_string()));
            }
            return exit::INVALID;
        }
    };
    let mut plan = build(&loaded);
    check_controls(&mut plan, ctk.as_ref(), false);
    let r = &loaded.redactor;
    match format {
        PlanFormat::Json => println!("{}", r.text(&serde_json::to_string_pretty(&plan).unwrap())),
        PlanFormat::Text => print!("{}", r.text(&render_text(&plan))),
    }
    plan.exit_code
}

/// A Chaos Toolkit file whose controls may guard an activity: `run` stops
/// with exit 69 unless `--ignore-controls` (`ignored`).
pub fn check_controls(
    plan: &mut Plan,
    ctk: Option<&crate::chaostoolkit::CtkLoaded>,
    ignored: bool,
) {
    let Some(c) = ctk else { return };
    let guards = &c.translation.guarding_controls;
    if guards.is_empty() {
        return;
    }
    plan.preflight.push(Check {
        what: "Chaos Toolkit controls".into(),
        ok: ignored,
        detail: format!(
            "{} cannot run here and may guard what they are attached to; {}",
            guards.join(", "),
            if ignored {
                "run without them (--ignore-controls)"
            } else {
                "`run` needs --ignore-controls to go on without them"
            }
        ),
    });
    if !ignored && plan.exit_code == exit::HELD {
        plan.exit_code = exit::PRECONDITION;
    }
}

pub fn build(loaded: &Loaded) -> Plan {
    let exp: &Experiment = &loaded.experiment;
    let ctx = FaultContext {
        run_id: "plan".into(),
        protected: Protected::for_this_process(),
        setup_pids: Default::default(),
        blast_radius: exp.limits.blast_radius.clone(),
        dry_run: true,
        setup_pending: !exp.setup.is_empty(),
    };
    let mut preflight = Vec::new();
    let mut exit_code = exit::HELD;
    let fail = |code: i32, exit_code: &mut i32| {
        if *exit_code == exit::HELD {
            *exit_code = code;
        }
    };
    preflight.push(Check {
        what: "experiment file".into(),
        ok: true,
        detail: "valid".into(),
    });
    let root = nix::unistd::geteuid().is_root();
    preflight.push(Check {
        what: "privileges".into(),
        ok: true,
        detail: if root {
            "running as root".into()
        } else {
            "not root: faults that need CAP_NET_ADMIN or cgroup writes will fail preflight".into()
        },
    });
    let schedule = exp.schedule.as_ref().map(|s| {
        use crate::experiment::schedule::{self, Now};
        let now = chrono::Utc::now();
        let refused = schedule::refusal(s, now, exp.limits.max_duration);
        if refused.is_some() {
            fail(exit::PRECONDITION, &mut exit_code);
        }
        let (inside, closes, next_opens, state) = match s.at(now) {
            Now::Inside(w) => (
                true,
                Some(w.closes),
                None,
                format!("now is inside; it closes {}", s.show(w.closes)),
            ),
            Now::Outside(next) => (
                false,
                None,
                next.map(|w| w.opens),
                match next {
                    Some(w) => format!("now is outside; the next window opens {}", s.show(w.opens)),
                    None => "now is outside; no window opens within a year".into(),
                },
            ),
        };
        preflight.push(Check {
            what: "schedule window".into(),
            ok: refused.is_none(),
            detail: match &refused {
                Some(why) if inside => why.clone(),
                _ => format!("{}: {state}", s.describe()),
            },
        });
        PlannedSchedule {
            window: s.describe(),
            inside,
            closes,
            next_opens,
        }
    });

    let pctx = ProbeContext {
        run_id: "plan".into(),
    };
    let mut probes = Vec::new();
    for p in &exp.steady_state.probes {
        let checks = match ProbeRunner::new(p, &pctx) {
            Ok(r) => {
                preflight.push(Check {
                    what: format!("probe `{}`", p.name),
                    ok: true,
                    detail: "can run".into(),
                });
                r.describe()
            }
            Err(e) => {
                fail(exit::PRECONDITION, &mut exit_code);
                preflight.push(Check {
                    what: format!("probe `{}`", p.name),
                    ok: false,
                    detail: e.clone(),
                });
                format!("(cannot run: {e})")
            }
        };
        probes.push(PlannedProbe {
            name: p.name.clone(),
            checks,
            before: format!(
                "{} samples, at least {} succeed",
                p.before.samples, p.before.min_success
            ),
            during: match &p.during {
                Some(d) => during_words(d),
                None => "reported only".into(),
            },
        });
    }

    let mut steps = Vec::new();
    for (i, s) in exp.method.iter().enumerate() {
        steps.push(plan_step(i, s, &ctx, &mut preflight, &mut exit_code));
    }

    let setup = exp
        .setup
        .iter()
        .map(|s| {
            let ready = match &s.ready {
                Some(r) => format!("ready when its check passes (within {})", r.timeout),
                None => "ready when it stays up for 200ms".into(),
            };
            format!("start `{}` as `{}`; {ready}", shell_words(&s.start), s.name)
        })
        .collect();
    let abort = exp.abort.iter().map(|a| a.describe()).collect();
    let mut rollbacks =
        vec!["undo every injected fault, newest first, from its undo records".to_string()];
    rollbacks.extend(
        exp.rollbacks
            .iter()
            .map(|r| format!("run `{}` (timeout {})", r.run.join(" "), r.timeout)),
    );
    let after = exp
        .steady_state
        .probes
        .iter()
        .map(|p| {
            format!(
                "{}: {} successes in a row within {}",
                p.name, p.after.successes, p.after.within
            )
        })
        .collect();
    Plan {
        title: exp.title.clone(),
        file: loaded.file.clone(),
        hypothesis: exp.hypothesis.clone(),
        max_duration: exp.limits.max_duration.to_string(),
        schedule,
        silence: exp.silence.as_ref().map(|s| {
            let at = match (&s.url, &s.url_env) {
                (Some(u), _) => crate::runner::notify::redact_url(u),
                (None, Some(v)) => format!("${v}"),
                (None, None) => "?".into(),
            };
            let m: Vec<String> = s
                .matchers
                .iter()
                .map(|m| {
                    let op = match (m.is_regex, m.is_equal) {
                        (false, true) => "=",
                        (false, false) => "!=",
                        (true, true) => "=~",
                        (true, false) => "!~",
                    };
                    format!("{}{op}\"{}\"", m.name, m.value)
                })
                .collect();
            format!(
                "Alertmanager at {at}: alerts matching {} are silenced from the start of the run until the rollback",
                m.join(", ")
            )
        }),
        preflight,
        setup,
        probes,
        steps,
        abort,
        rollbacks,
        after,
        exit_code,
    }
}

/// How many processes a process or cgroup fault hits now, and the
/// blast-radius rules it is held to (a refusal is the fault's own check).
fn blast_radius_check(
    label: &str,
    t: &crate::fault::target::ProcessTarget,
    ctx: &FaultContext,
) -> Check {
    use crate::fault::target::Resolved;
    let (ok, now) = match t.select(ctx, &mut t.rng()) {
        Ok(Resolved::Now(sel)) => (
            true,
            format!(
                "hits {} of {} matching process{}",
                sel.chosen.len(),
                sel.matched,
                if sel.matched == 1 { "" } else { "es" }
            ),
        ),
        Ok(Resolved::AtRunTime(_)) => (true, "counted once setup has started its processes".into()),
        Err(_) => (false, "refused (see the fault's check)".into()),
    };
    Check {
        what: format!("blast radius of `{label}`"),
        ok,
        detail: format!("{now}; rules: {}", t.rules(ctx)),
    }
}

fn plan_step(
    i: usize,
    s: &Step,
    ctx: &FaultContext,
    preflight: &mut Vec<Check>,
    exit_code: &mut i32,
) -> PlannedStep {
    let label = s.label(i);
    if let Some(f) = &s.first_fault() {
        let mut imp = fault::build(f);
        let check = match imp.preflight(ctx) {
            Ok(()) => Check {
                what: format!("fault `{label}` ({})", imp.kind()),
                ok: true,
                detail: format!("target {}", imp.target()),
            },
            Err(e) => {
                if *exit_code == exit::HELD {
                    *exit_code = e.code;
                }
                Check {
                    what: format!("fault `{label}` ({})", imp.kind()),
                    ok: false,
                    detail: e.message,
                }
            }
        };
        preflight.push(check);
        if let Some(t) = f.process_target() {
            preflight.push(blast_radius_check(&label, t, ctx));
        }
        let duration = s
            .fault_duration()
            .map(|d| d.to_string())
            .unwrap_or_default();
        if let (Some(esc), Some(base)) = (&s.escalate, &s.fault) {
            let levels = esc.level_faults(base).unwrap_or_default();
            let n = levels.len();
            let head = |k: usize, how: &str| PlannedOp {
                action: format!(
                    "level {}/{n}: {} for {}{how}",
                    k + 1,
                    esc.describe_level(k),
                    esc.hold
                ),
                command: None,
                undo: None,
            };
            let mut ops = vec![head(0, "")];
            ops.extend(imp.plan(ctx));
            for (k, lf) in levels.iter().enumerate().skip(1) {
                match imp.plan_change(ctx, lf) {
                    Some(change) => {
                        ops.push(head(k, ", changed in place"));
                        ops.extend(change);
                    }
                    None => {
                        ops.push(head(
                            k,
                            ", after rolling the level before back (this kind cannot change in place)",
                        ));
                        ops.extend(fault::build(lf).plan(ctx));
                    }
                }
            }
            return PlannedStep {
                index: i + 1,
                label,
                kind: imp.kind().to_string(),
                detail: format!(
                    "on {}: escalate {} over {n} levels, {} each ({duration} at most); each level is judged on its own samples and the escalation stops at the first that does not hold (the hypothesis covers levels up to {}); rolled back after",
                    imp.target(),
                    esc.param,
                    esc.hold,
                    esc.levels[esc.must_hold_index()]
                ),
                operations: ops,
            };
        }
        PlannedStep {
            index: i + 1,
            label,
            kind: imp.kind().to_string(),
            detail: format!(
                "on {} for {duration}{}; verified after injection, rolled back after",
                imp.target(),
                if s.background {
                    " in the background"
                } else {
                    ""
                }
            ),
            operations: imp.plan(ctx),
        }
    } else if let Some(p) = s.pause {
        PlannedStep {
            index: i + 1,
            label,
            kind: "pause".into(),
            detail: format!("wait {p} while probes sample"),
            operations: vec![],
        }
    } else if let Some(c) = &s.command {
        PlannedStep {
            index: i + 1,
            label,
            kind: "command".into(),
            detail: format!(
                "run `{}` (timeout {}, expect exit {})",
                c.run.join(" "),
                c.timeout,
                c.expect_exit
            ),
            operations: vec![],
        }
    } else {
        PlannedStep {
            index: i + 1,
            label,
            kind: "none".into(),
            detail: String::new(),
            operations: vec![],
        }
    }
}

pub fn render_text(p: &Plan) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "Plan: {} ({})", p.title, p.file);
    let _ = writeln!(o, "Hypothesis: {}", p.hypothesis);
    let _ = writeln!(
        o,
        "Hard limit: {} (the watchdog rolls back at the deadline, even if the runner is stuck)",
        p.max_duration
    );
    if let Some(s) = &p.schedule {
        let _ = writeln!(
            o,
            "Schedule: {} · now {} the window (`run` refuses outside it unless --outside-window)",
            s.window,
            if s.inside { "inside" } else { "outside" }
        );
    }
    if let Some(s) = &p.silence {
        let _ = writeln!(o, "Silence: {}", crate::sys::text::escape(s));
    }
    let _ = writeln!(o, "\n1. preflight");
    for c in &p.preflight {
        let _ = writeln!(
            o,
            "   [{}] {}: {}",
            if c.ok { "ok" } else { "FAIL" },
            c.what,
            c.detail
        );
    }
    let _ = writeln!(o, "\n2. setup");
    if p.setup.is_empty() {
        let _ = writeln!(o, "   (nothing to start)");
    }
    for s in &p.setup {
        let _ = writeln!(o, "   - {s}");
    }
    let _ = writeln!(
        o,
        "\n3. before: sample every probe; if the steady state does not hold, inject nothing (exit 3)"
    );
    for pr in &p.probes {
        let _ = writeln!(o, "   - {}: {} ({})", pr.name, pr.checks, pr.before);
    }
    let _ = writeln!(
        o,
        "\n4. method (probes keep sampling; abort conditions checked on every sample)"
    );
    for s in &p.steps {
        let _ = writeln!(o, "   {}) {} [{}]: {}", s.index, s.label, s.kind, s.detail);
        for op in &s.operations {
            match &op.command {
                Some(cmd) => {
                    let _ = writeln!(o, "        $ {}", shell_words(cmd));
                }
                None => {
                    let _ = writeln!(o, "        - {}", op.action);
                }
            }
            if let Some(u) = &op.undo {
                let _ = writeln!(o, "          undo: {u}");
            }
        }
    }
    if p.abort.is_empty() {
        let _ = writeln!(o, "   abort conditions: none");
    } else {
        let _ = writeln!(o, "   abort when:");
        for a in &p.abort {
            let _ = writeln!(o, "     - {a}");
        }
    }
    let _ = writeln!(
        o,
        "\n5. rollback (always: also after an abort, an error or a signal)"
    );
    for r in &p.rollbacks {
        let _ = writeln!(o, "   - {r}");
    }
    let _ = writeln!(o, "\n6. after: sample until the steady state holds again");
    for a in &p.after {
        let _ = writeln!(o, "   - {a}");
    }
    let _ = writeln!(o, "\n7. teardown: stop setup processes in reverse order");
    let _ = writeln!(o, "8. report");
    if p.exit_code == exit::HELD {
        let _ = writeln!(o, "\nPreflight passed; nothing was changed on this host.");
    } else {
        let _ = writeln!(
            o,
            "\nPreflight FAILED: `faultline run` would stop here with exit {} ({}). Nothing was changed.",
            p.exit_code,
            exit::meaning(p.exit_code)
        );
    }
    crate::sys::text::escape_text(&o).into_owned()
}

/// A `during` requirement in words: `at least 95% succeed, outage at most 5s`.
fn during_words(d: &crate::experiment::model::DuringRequirement) -> String {
    let mut parts = Vec::new();
    if let Some(m) = d.min_success {
        parts.push(format!("at least {m} succeed"));
    }
    if let Some(m) = d.max_outage {
        parts.push(format!("outage at most {m}"));
    }
    for (p, l) in d.latency_limits() {
        parts.push(format!("p{p} latency at most {l}"));
    }
    parts.join(", ")
}
