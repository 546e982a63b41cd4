//! Semantic checks the types alone cannot make. Every problem is reported
//! (not just the first) with the field path and its position in the file.

use super::model::*;
use super::yaml::{list_names, SpanIndex, Suggester};
use super::Diagnostic;
use crate::fault::target::{ProcessTarget, TargetMode};
use std::collections::HashSet;

/// Collects problems with their location.
pub struct Checker<'a> {
    file: &'a str,
    spans: &'a SpanIndex,
    pub problems: Vec<Diagnostic>,
    /// "Did you mean", with one work budget for the whole file.
    suggester: Suggester,
}

impl<'a> Checker<'a> {
    pub fn new(file: &'a str, spans: &'a SpanIndex) -> Self {
        Checker {
            file,
            spans,
            problems: Vec::new(),
            suggester: Suggester::default(),
        }
    }

    /// Reports a problem at the key of `path`.
    pub fn error(&mut self, path: &str, message: impl Into<String>) {
        let at = self.spans.locate(path);
        self.problems
            .push(Diagnostic::at(self.file, path, at, message));
    }

    /// Reports a problem at the value of `path`.
    pub fn value_error(&mut self, path: &str, message: impl Into<String>) {
        let at = self.spans.locate_value(path);
        self.problems
            .push(Diagnostic::at(self.file, path, at, message));
    }

    fn nonzero(&mut self, path: &str, d: crate::units::Duration) {
        if d.is_zero() {
            self.value_error(
                path,
                "a duration of zero; give a positive duration like `1s`",
            );
        }
    }

    /// A duration that must not be absurdly short: zero is refused as by
    /// `nonzero`, anything under `floor` with the minimum named.
    fn at_least(
        &mut self,
        path: &str,
        d: crate::units::Duration,
        floor: crate::units::Duration,
        what: &str,
    ) {
        if d.is_zero() {
            self.nonzero(path, d);
        } else if d < floor {
            self.value_error(
                path,
                format!("{d} is below the minimum {what} of {floor}; give at least `{floor}`"),
            );
        }
    }

    fn regex(&mut self, path: &str, re: &Option<String>) {
        if let Some(r) = re {
            if let Err(e) = regex::Regex::new(r) {
                self.value_error(path, format!("not a valid regular expression: {e}"));
            }
        }
    }

    /// Names and titles are printed on terminals and in reports: control
    /// characters (written as escapes like `"\e[2J"`) are refused there.
    fn printable(&mut self, path: &str, text: &str, newlines_ok: bool) {
        if let Some(ch) = text
            .chars()
            .find(|ch| ch.is_control() && !(newlines_ok && (*ch == '\n' || *ch == '\t')))
        {
            self.value_error(
                path,
                format!(
                    "contains the control character U+{:04X}; names and titles are shown on terminals, remove it",
                    ch as u32
                ),
            );
        }
    }

    fn argv(&mut self, path: &str, argv: &[String]) {
        if argv.is_empty() || argv[0].trim().is_empty() {
            self.value_error(
                path,
                "the command is empty; give the program and its arguments, e.g. `[curl, -fsS, http://127.0.0.1:8080/]`",
            );
        }
    }
}

/// Shortest sampling interval (`steady_state.interval`) and repeat period
/// (`every`): below it, sampling only loads the host and the system under test.
pub const MIN_INTERVAL: crate::units::Duration =
    crate::units::Duration(std::time::Duration::from_millis(10));
/// Shortest timeout of a probe, ready check or action: less cannot even start a process.
pub const MIN_TIMEOUT: crate::units::Duration =
    crate::units::Duration(std::time::Duration::from_millis(10));
/// Shortest `limits.max_duration`.
pub const MIN_MAX_DURATION: crate::units::Duration =
    crate::units::Duration(std::time::Duration::from_secs(1));

pub fn validate(exp: &Experiment, file: &str, spans: &SpanIndex) -> Vec<Diagnostic> {
    let mut c = Checker::new(file, spans);
    if exp.title.trim().is_empty() {
        c.value_error("title", "the title is empty");
    }
    if exp.hypothesis.trim().is_empty() {
        c.value_error(
            "hypothesis",
            "the hypothesis is empty; state in one sentence what you expect to stay true",
        );
    }
    c.printable("title", &exp.title, false);
    c.printable("hypothesis", &exp.hypothesis, true);
    if let Some(d) = &exp.description {
        c.printable("description", d, true);
    }
    for (i, t) in exp.tags.iter().enumerate() {
        c.printable(&format!("tags[{i}]"), t, false);
    }
    for (i, s) in exp.method.iter().enumerate() {
        if let Some(n) = &s.name {
            c.printable(&format!("method[{i}].name"), n, false);
        }
    }
    c.at_least(
        "limits.max_duration",
        exp.limits.max_duration,
        MIN_MAX_DURATION,
        "max_duration",
    );
    if exp.limits.blast_radius.max_targets == Some(0) {
        c.value_error(
            "limits.blast_radius.max_targets",
            "max_targets of 0 would forbid every fault; remove it or give at least 1",
        );
    }

    let setup_names = check_setup(&mut c, exp);
    let probe_names = check_steady_state(&mut c, exp);
    check_method(&mut c, exp, &setup_names);
    check_abort(&mut c, exp, &probe_names);
    for (i, r) in exp.rollbacks.iter().enumerate() {
        check_action(&mut c, &format!("rollbacks[{i}]"), r);
    }
    check_total_duration(&mut c, exp);
    c.problems
}

fn check_setup(c: &mut Checker, exp: &Experiment) -> Vec<String> {
    let mut names = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for (i, s) in exp.setup.iter().enumerate() {
        let p = format!("setup[{i}]");
        if s.name.trim().is_empty() {
            c.value_error(&format!("{p}.name"), "the name is empty");
        } else if !seen.insert(s.name.as_str()) {
            c.value_error(
                &format!("{p}.name"),
                format!("a setup process named `{}` already exists", s.name),
            );
        }
        names.push(s.name.clone());
        c.printable(&format!("{p}.name"), &s.name, false);
        c.argv(&format!("{p}.start"), &s.start);
        c.at_least(
            &format!("{p}.stop_timeout"),
            s.stop_timeout,
            MIN_TIMEOUT,
            "timeout",
        );
        if let Some(r) = &s.ready {
            let rp = format!("{p}.ready");
            let kinds = [r.http.is_some(), r.tcp.is_some(), r.command.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if kinds != 1 {
                c.error(
                    &rp,
                    "a ready check needs exactly one of `http`, `tcp` or `command`",
                );
            }
            c.at_least(&format!("{rp}.timeout"), r.timeout, MIN_TIMEOUT, "timeout");
            if let Some(h) = &r.http {
                check_http_where(c, &format!("{rp}.http"), h);
            }
            if let Some(cmd) = &r.command {
                c.argv(&format!("{rp}.command.run"), &cmd.run);
            }
            if let Some(e) = &r.expect {
                let kind = if r.http.is_some() {
                    ProbeKind::Http
                } else if r.tcp.is_some() {
                    ProbeKind::Tcp
                } else {
                    ProbeKind::Command
                };
                check_expect(c, &format!("{rp}.expect"), kind, e);
            }
        }
    }
    names
}

/// An http probe's `url`, or `container` (+ `port`, `path`) instead.
fn check_http_where(c: &mut Checker, path: &str, h: &HttpProbe) {
    match &h.container {
        None => {
            if h.url.is_empty() {
                c.error(
                    path,
                    "give `url` (e.g. `http://127.0.0.1:8080/health`) or `container` (+ `port`, `path`)",
                );
            } else {
                check_url(c, &format!("{path}.url"), &h.url);
            }
            if h.port.is_some() || h.path.is_some() {
                let f = if h.port.is_some() { "port" } else { "path" };
                c.error(
                    &format!("{path}.{f}"),
                    format!("`{f}` goes with `container`; with `url`, put it in the URL"),
                );
            }
        }
        Some(name) => {
            if !h.url.is_empty() {
                c.error(
                    &format!("{path}.container"),
                    "give `url` or `container`, not both",
                );
            }
            check_container_name(c, path, &Some(name.clone()));
            if h.port == Some(0) {
                c.value_error(&format!("{path}.port"), "port 0 cannot be connected to");
            }
            if let Some(p) = &h.path {
                if !p.starts_with('/') {
                    c.value_error(
                        &format!("{path}.path"),
                        "the path starts with `/`, e.g. `/health`",
                    );
                }
            }
        }
    }
}

fn check_url(c: &mut Checker, path: &str, url: &str) {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
            if u.host_str().is_none_or(|h| h.is_empty()) {
                c.value_error(path, format!("`{url}` has no host"));
            }
        }
        Ok(u) => c.value_error(
            path,
            format!(
                "`{url}` uses `{}`; only http:// and https:// URLs are supported",
                u.scheme()
            ),
        ),
        Err(e) => c.value_error(
            path,
            format!("`{url}` is not a URL ({e}); write e.g. `http://127.0.0.1:8080/health`"),
        ),
    }
}

fn check_steady_state(c: &mut Checker, exp: &Experiment) -> Vec<String> {
    let ss = &exp.steady_state;
    c.at_least(
        "steady_state.interval",
        ss.interval,
        MIN_INTERVAL,
        "interval",
    );
    if ss.probes.is_empty() {
        c.error(
            "steady_state.probes",
            "no probes; the steady state needs at least one probe to measure",
        );
    }
    let mut names: Vec<String> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for (i, p) in ss.probes.iter().enumerate() {
        let path = format!("steady_state.probes[{i}]");
        if p.name.trim().is_empty() {
            c.value_error(&format!("{path}.name"), "the probe name is empty");
        } else if !seen.insert(p.name.as_str()) {
            c.value_error(
                &format!("{path}.name"),
                format!(
                    "a probe named `{}` already exists; names must be unique",
                    p.name
                ),
            );
        }
        names.push(p.name.clone());
        c.printable(&format!("{path}.name"), &p.name, false);
        let kinds = p.kinds();
        match kinds.len() {
            0 => c.error(
                &path,
                "the probe has no kind; give exactly one of `http`, `tcp`, `command`, `process`, `prometheus`",
            ),
            1 => {}
            _ => c.error(
                &format!("{path}.{}", kinds[1].name()),
                format!(
                    "the probe has two kinds (`{}` and `{}`); give exactly one per probe",
                    kinds[0].name(),
                    kinds[1].name()
                ),
            ),
        }
        c.at_least(
            &format!("{path}.timeout"),
            p.timeout,
            MIN_TIMEOUT,
            "timeout",
        );
        if let Some(h) = &p.http {
            check_http_where(c, &format!("{path}.http"), h);
            let m = h.method.to_ascii_uppercase();
            if !["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"].contains(&m.as_str()) {
                c.value_error(
                    &format!("{path}.http.method"),
                    format!("`{}` is not an HTTP method; use GET, POST, PUT, DELETE, HEAD, PATCH or OPTIONS", h.method),
                );
            }
        }
        if let Some(t) = &p.tcp {
            if t.port == 0 {
                c.value_error(&format!("{path}.tcp.port"), "port 0 cannot be connected to");
            }
            match (&t.container, t.host.trim().is_empty()) {
                (None, true) => c.error(
                    &format!("{path}.tcp"),
                    "give `host` (e.g. `127.0.0.1`) or `container` (a container name or id)",
                ),
                (Some(_), false) => c.error(
                    &format!("{path}.tcp.container"),
                    "give `host` or `container`, not both",
                ),
                _ => {}
            }
            if let Some(n) = &t.container {
                check_container_name(c, &format!("{path}.tcp"), &Some(n.clone()));
            }
        }
        if let Some(cmd) = &p.command {
            c.argv(&format!("{path}.command.run"), &cmd.run);
        }
        if let Some(pr) = &p.process {
            let n = [
                pr.name.is_some(),
                pr.pidfile.is_some(),
                pr.cmdline.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if n != 1 {
                c.error(
                    &format!("{path}.process"),
                    "a process probe needs exactly one of `name`, `pidfile` or `cmdline`",
                );
            }
            c.regex(&format!("{path}.process.cmdline"), &pr.cmdline);
        }
        if let Some(pm) = &p.prometheus {
            check_url(c, &format!("{path}.prometheus.url"), &pm.url);
            if pm.query.trim().is_empty() {
                c.value_error(&format!("{path}.prometheus.query"), "the query is empty");
            }
        }
        if let Some(kind) = kinds.first() {
            check_expect(c, &format!("{path}.expect"), *kind, &p.expect);
        }
        if p.before.samples == 0 {
            c.value_error(
                &format!("{path}.before.samples"),
                "0 samples cannot show a steady state; take at least 1",
            );
        }
        for (pct, _) in p.before.latency_limits() {
            let need = crate::experiment::model::min_samples_for_percentile(pct);
            if p.before.samples < need {
                c.value_error(
                    &format!("{path}.before.p{pct}_below"),
                    format!(
                        "a p{pct} latency needs at least {need} samples and `before.samples` is {}; set `before: {{samples: {need}}}` or more",
                        p.before.samples
                    ),
                );
            }
        }
        if let Some(d) = &p.during {
            if d.is_empty() {
                c.error(
                    &format!("{path}.during"),
                    "`during` has no requirement; give `min_success`, `max_outage` or a latency percentile (`p50_below`, `p95_below`, `p99_below`), or leave `during` out to only report",
                );
            }
            if let Some(m) = d.max_outage {
                c.nonzero(&format!("{path}.during.max_outage"), m);
            }
            for (pct, l) in d.latency_limits() {
                c.nonzero(&format!("{path}.during.p{pct}_below"), l);
            }
            for (pct, r) in d.relative_limits() {
                let field = format!("{path}.during.p{pct}_within");
                if p.group == ProbeGroup::Control {
                    c.error(
                        &field,
                        "a control probe is what others are compared with; put `p{pct}_within` on an experiment probe",
                    );
                }
                let controls: Vec<String> = exp
                    .steady_state
                    .probes
                    .iter()
                    .filter(|q| q.group == ProbeGroup::Control)
                    .map(|q| q.name.clone())
                    .collect();
                if controls.is_empty() {
                    c.error(
                        &field,
                        "no probe has `group: control`; add a probe of the untouched replica with `group: control` to compare with",
                    );
                } else if r.of != "control" && !controls.contains(&r.of) {
                    c.value_error(
                        &format!("{field}.of"),
                        format!(
                            "`{}` is neither `control` nor a control probe; give `control` or one of: {}",
                            r.of,
                            list_names(&controls)
                        ),
                    );
                }
                if r.percent.0 > 1000.0 {
                    c.value_error(
                        &format!("{field}.percent"),
                        "more than 1000% above the control compares nothing; give e.g. `20%`",
                    );
                }
            }
        }
        if p.after.successes == 0 {
            c.value_error(&format!("{path}.after.successes"), "give at least 1");
        }
        c.nonzero(&format!("{path}.after.within"), p.after.within);
    }
    names
}

fn check_expect(c: &mut Checker, path: &str, kind: ProbeKind, e: &Expect) {
    use ProbeKind::*;
    let fields: [(&str, bool, &[ProbeKind]); 16] = [
        ("status", e.status.is_some(), &[Http]),
        (
            "latency_below",
            e.latency_below.is_some(),
            &[Http, Tcp, Command, Prometheus],
        ),
        ("body_contains", e.body_contains.is_some(), &[Http]),
        ("body_matches", e.body_matches.is_some(), &[Http]),
        ("json", e.json.is_some(), &[Http]),
        ("exit_code", e.exit_code.is_some(), &[Command]),
        ("stdout_contains", e.stdout_contains.is_some(), &[Command]),
        ("stdout_matches", e.stdout_matches.is_some(), &[Command]),
        ("stderr_contains", e.stderr_contains.is_some(), &[Command]),
        ("stderr_matches", e.stderr_matches.is_some(), &[Command]),
        ("running", e.running.is_some(), &[Process]),
        ("count", e.count.is_some(), &[Process]),
        ("value", e.value.is_some(), &[Prometheus, Command]),
        ("jsonpath", e.jsonpath.is_some(), &[Http, Command]),
        ("tolerance", e.tolerance.is_some(), &[Http, Command]),
        ("result_on_stdout", e.result_on_stdout, &[Command]),
    ];
    for (name, set, kinds) in fields {
        if set && !kinds.contains(&kind) {
            let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
            c.error(
                &format!("{path}.{name}"),
                format!(
                    "`{name}` applies to {} probes, not to a {} probe",
                    names.join("/"),
                    kind.name()
                ),
            );
        }
    }
    c.regex(&format!("{path}.body_matches"), &e.body_matches);
    c.regex(&format!("{path}.stdout_matches"), &e.stdout_matches);
    c.regex(&format!("{path}.stderr_matches"), &e.stderr_matches);
    if let Some(j) = &e.json {
        if !(j.pointer.is_empty() || j.pointer.starts_with('/')) {
            c.value_error(
                &format!("{path}.json.pointer"),
                format!(
                    "`{}` is not a JSON pointer; it starts with `/`, e.g. `/status`",
                    j.pointer
                ),
            );
        }
    }
    if let Some(d) = e.latency_below {
        c.nonzero(&format!("{path}.latency_below"), d);
    }
    if let Some(j) = &e.jsonpath {
        if let Err(m) = crate::chaostoolkit::tolerance::parse_jsonpath(&j.path) {
            c.value_error(&format!("{path}.jsonpath.path"), m);
        }
    }
    if let Some(t) = &e.tolerance {
        if let Err(m) = crate::chaostoolkit::tolerance::Tolerance::parse(t) {
            c.value_error(&format!("{path}.tolerance"), m);
        }
    }
    if e.result_on_stdout && e.tolerance.is_none() {
        c.error(
            &format!("{path}.result_on_stdout"),
            "`result_on_stdout` goes with `tolerance`",
        );
    }
    let jp_value = e.jsonpath.as_ref().and_then(|j| j.value.clone());
    if let Some(j) = &e.jsonpath {
        if j.value.is_some() && (j.equals.is_some() || j.count.is_some()) {
            c.error(
                &format!("{path}.jsonpath.value"),
                "`value` compares every value found; it does not go with `equals` or `count`",
            );
        }
    }
    if e.value.is_some() && kind == Command && (e.tolerance.is_some() || e.jsonpath.is_some()) {
        c.error(
            &format!("{path}.value"),
            "`value` reads all of stdout as one number; for a field of JSON output use `jsonpath: {path: ..., value: {...}}`",
        );
    }
    for (name, b) in [
        ("count", &e.count),
        ("value", &e.value),
        ("jsonpath.value", &jp_value),
    ] {
        if let Some(b) = b {
            for (bound, v) in [("min", b.min), ("max", b.max)] {
                if v.is_some_and(|v| !v.is_finite()) {
                    c.value_error(
                        &format!("{path}.{name}.{bound}"),
                        "give a finite number (not .nan or .inf); leave the bound out for no limit",
                    );
                }
            }
            if let (Some(lo), Some(hi)) = (b.min, b.max) {
                if lo > hi {
                    c.error(
                        &format!("{path}.{name}"),
                        format!("min ({lo}) is greater than max ({hi})"),
                    );
                }
            }
        }
    }
    if e.running == Some(false) && e.count.is_some() {
        c.error(
            &format!("{path}.count"),
            "`running: false` and `count` contradict each other; use one",
        );
    }
}

fn check_method(c: &mut Checker, exp: &Experiment, setup_names: &[String]) {
    if exp.method.is_empty() {
        c.error(
            "method",
            "the method is empty; add at least one step (a fault, a pause or a command)",
        );
    }
    for (i, s) in exp.method.iter().enumerate() {
        let p = format!("method[{i}]");
        let set: Vec<&str> = [
            ("fault", s.fault.is_some()),
            ("pause", s.pause.is_some()),
            ("command", s.command.is_some()),
            ("http", s.http.is_some()),
            ("chaos_mesh", s.chaos_mesh.is_some()),
        ]
        .iter()
        .filter(|(_, b)| *b)
        .map(|(n, _)| *n)
        .collect();
        match set.len() {
            0 => c.error(
                &p,
                "the step does nothing; give one of `fault`, `pause`, `command`, `http` or `chaos_mesh`",
            ),
            1 => {}
            _ => c.error(
                &format!("{p}.{}", set[1]),
                format!(
                    "a step is one thing; this one has `{}` and `{}`, split it into two steps",
                    set[0], set[1]
                ),
            ),
        }
        if let Some(pause) = s.pause {
            c.nonzero(&format!("{p}.pause"), pause);
        }
        if let Some(a) = &s.command {
            check_action(c, &format!("{p}.command"), a);
        }
        if let Some(e) = &s.escalate {
            match &s.fault {
                None => c.error(
                    &format!("{p}.escalate"),
                    "`escalate` raises a parameter of the step's fault; add a `fault` to the step",
                ),
                Some(f) => {
                    for pr in e.check(f) {
                        c.value_error(&format!("{p}.{}", pr.field), pr.message);
                    }
                    if let Ok(levels) = e.level_faults(f) {
                        for (k, lf) in levels.iter().enumerate() {
                            let before = c.problems.len();
                            check_fault(
                                c,
                                &format!("{p}.fault.{}", lf.kind_name()),
                                lf,
                                Some(e.hold),
                                exp,
                                setup_names,
                            );
                            for d in &mut c.problems[before..] {
                                d.message =
                                    format!("at level {} ({}): {}", k + 1, e.levels[k], d.message);
                            }
                        }
                    }
                }
            }
            if s.duration.is_some() {
                c.error(
                    &format!("{p}.duration"),
                    "an escalating step lasts `hold` x levels; remove `duration`",
                );
            }
            if s.background {
                c.error(
                    &format!("{p}.background"),
                    "an escalation judges each level on the probes' samples, so it cannot run in the background; remove `background`",
                );
            }
            if !exp
                .steady_state
                .probes
                .iter()
                .any(|q| q.group.is_experiment() && q.during.is_some())
            {
                c.error(
                    &format!("{p}.escalate"),
                    "each level is judged on the probes' `during` requirements, and no experiment probe has one; add e.g. `during: {min_success: 95%}` to a probe",
                );
            }
            if exp.method[..i].iter().any(|o| o.escalate.is_some()) {
                c.error(
                    &format!("{p}.escalate"),
                    "only one step of a method may escalate (each level is its own `during` window); split the experiment",
                );
            }
        }
        match (&s.fault, s.duration) {
            (Some(_), None) if s.escalate.is_some() => {}
            (Some(_), None) => c.error(
                &format!("{p}.fault"),
                "a fault needs a `duration` (how long it stays active), e.g. `duration: 30s`",
            ),
            (Some(_), Some(d)) => c.nonzero(&format!("{p}.duration"), d),
            (None, Some(d)) if s.chaos_mesh.is_some() => c.nonzero(&format!("{p}.duration"), d),
            (None, Some(_)) => c.error(
                &format!("{p}.duration"),
                "`duration` applies to fault steps only; use `pause` to wait",
            ),
            (None, None) => {}
        }
        for (field, set) in [
            ("min_effect", s.min_effect.is_some()),
            ("max_missing", s.max_missing.is_some()),
        ] {
            if set && s.fault.is_none() {
                c.error(
                    &format!("{p}.{field}"),
                    format!("`{field}` applies to fault steps only; remove it or add a `fault`"),
                );
            }
        }
        if s.background && s.pause.is_some() {
            c.error(
                &format!("{p}.background"),
                "a pause in the background does nothing; remove `background`",
            );
        }
        if let Some(h) = &s.http {
            check_url(c, &format!("{p}.http.url"), &h.url);
            c.at_least(
                &format!("{p}.http.timeout"),
                h.timeout,
                MIN_TIMEOUT,
                "timeout",
            );
        }
        if let (Some(f), None) = (&s.fault, &s.escalate) {
            check_fault(
                c,
                &format!("{p}.fault.{}", f.kind_name()),
                f,
                s.duration,
                exp,
                setup_names,
            );
        }
    }
}

fn check_action(c: &mut Checker, path: &str, a: &CommandAction) {
    c.argv(&format!("{path}.run"), &a.run);
    c.at_least(
        &format!("{path}.timeout"),
        a.timeout,
        MIN_TIMEOUT,
        "timeout",
    );
}

fn check_abort(c: &mut Checker, exp: &Experiment, probes: &[String]) {
    let known: HashSet<&str> = probes.iter().map(String::as_str).collect();
    for (i, a) in exp.abort.iter().enumerate() {
        let p = format!("abort[{i}]");
        if !known.contains(a.probe.as_str()) {
            let mut msg = format!("no probe is named `{}`", a.probe);
            if let Some(best) = c.suggester.suggest(&a.probe, probes) {
                msg.push_str(&format!(" (did you mean `{best}`?)"));
            }
            if !probes.is_empty() {
                msg.push_str(&format!("; probes: {}", list_names(probes)));
            }
            c.value_error(&format!("{p}.probe"), msg);
        }
        let set = [
            a.consecutive_failures.is_some(),
            a.failure_ratio.is_some(),
            a.latency_above.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set != 1 {
            c.error(
                &p,
                "an abort condition needs exactly one of `consecutive_failures`, `failure_ratio` or `latency_above`",
            );
        }
        if a.consecutive_failures == Some(0) {
            c.value_error(&format!("{p}.consecutive_failures"), "give at least 1");
        }
        if a.window == Some(0) {
            c.value_error(
                &format!("{p}.window"),
                "a window of 0 samples; give at least 1",
            );
        }
        if let Some(pc) = a.percentile {
            if !(pc > 0.0 && pc <= 100.0) {
                c.value_error(
                    &format!("{p}.percentile"),
                    "a percentile is between 0 (exclusive) and 100",
                );
            }
            if a.latency_above.is_none() {
                c.error(
                    &format!("{p}.percentile"),
                    "`percentile` goes with `latency_above`",
                );
            }
        }
        if a.window.is_some() && a.consecutive_failures.is_some() {
            c.error(
                &format!("{p}.window"),
                "`window` goes with `failure_ratio` or `latency_above`, not `consecutive_failures`",
            );
        }
        if let Some(l) = a.latency_above {
            c.nonzero(&format!("{p}.latency_above"), l);
        }
    }
}

/// The method's own waiting time (fault durations in the foreground and pauses)
/// plus the before-phase sampling must fit in `max_duration`.
fn check_total_duration(c: &mut Checker, exp: &Experiment) {
    let mut method = std::time::Duration::ZERO;
    for s in &exp.method {
        if let Some(p) = s.pause {
            method += p.std();
        }
        if let (Some(_), Some(d), false) = (&s.fault, s.fault_duration(), s.background) {
            method += d.std();
        }
    }
    let before_samples = exp
        .steady_state
        .probes
        .iter()
        .map(|p| p.before.samples)
        .max()
        .unwrap_or(0);
    let before = exp.steady_state.interval.std() * before_samples.saturating_sub(1);
    let max = exp.limits.max_duration.std();
    if method + before > max && !max.is_zero() {
        c.value_error(
            "limits.max_duration",
            format!(
                "max_duration {} is shorter than the method ({} of faults and pauses, plus {} of before-sampling); raise it to at least {}",
                exp.limits.max_duration,
                crate::units::Duration(method),
                crate::units::Duration(before),
                crate::units::Duration(std::time::Duration::from_secs((method + before).as_secs() + 1)),
            ),
        );
    }
}

fn check_fault(
    c: &mut Checker,
    path: &str,
    f: &Fault,
    duration: Option<crate::units::Duration>,
    exp: &Experiment,
    setup_names: &[String],
) {
    match f {
        Fault::ProcessKill(s) => {
            check_target(c, &format!("{path}.target"), &s.target, exp, setup_names);
            if let Some(w) = s.expect_restart_within {
                let p = format!("{path}.expect_restart_within");
                c.nonzero(&p, w);
                if !crate::fault::process::terminates(s.signal.0) {
                    c.value_error(
                        &p,
                        format!(
                            "{} does not end a process, so nothing restarts; use SIGKILL or SIGTERM, or leave `expect_restart_within` out",
                            s.signal.0.as_str()
                        ),
                    );
                } else if duration.is_none_or(|d| d < w) {
                    let d = duration.map_or("none".to_string(), |d| d.to_string());
                    c.value_error(
                        &p,
                        format!(
                            "the restart is watched while the step lasts; its duration ({d}) is shorter than `expect_restart_within: {w}`: give the step `duration: {w}` or more"
                        ),
                    );
                }
            }
            if let Some(every) = s.every {
                c.at_least(&format!("{path}.every"), every, MIN_INTERVAL, "interval");
                if let Some(d) = duration {
                    if every > d {
                        c.value_error(
                            &format!("{path}.every"),
                            format!("`every: {every}` is longer than the step's duration ({d}); the signal would be sent only once"),
                        );
                    }
                }
            }
        }
        Fault::ProcessPause(s) => {
            check_target(c, &format!("{path}.target"), &s.target, exp, setup_names)
        }
        Fault::CpuLimit(s) => {
            check_target(c, &format!("{path}.target"), &s.target, exp, setup_names);
            if !(s.cpus > 0.0 && s.cpus.is_finite()) {
                c.value_error(
                    &format!("{path}.cpus"),
                    "give a positive number of CPUs, e.g. `0.2`",
                );
            } else if s.cpus < 0.01 {
                c.value_error(&format!("{path}.cpus"), "the smallest quota is 0.01 CPUs");
            }
        }
        Fault::MemoryLimit(s) => {
            check_target(c, &format!("{path}.target"), &s.target, exp, setup_names);
            if s.limit.0 < 1024 * 1024 {
                c.value_error(
                    &format!("{path}.limit"),
                    "a memory limit under 1MiB would kill any process at once; give e.g. `64MiB`",
                );
            }
        }
        Fault::IoLimit(s) => {
            check_target(c, &format!("{path}.target"), &s.target, exp, setup_names);
            if s.read_bytes_per_sec.is_none()
                && s.write_bytes_per_sec.is_none()
                && s.read_iops.is_none()
                && s.write_iops.is_none()
            {
                c.error(path, "give at least one of `read_bytes_per_sec`, `write_bytes_per_sec`, `read_iops`, `write_iops`");
            }
        }
        Fault::Network(s) => check_network(c, path, s),
        Fault::Blackhole(s) | Fault::Partition(s) => {
            check_where(c, path, Some(&s.netns), s);
            for (i, peer) in s.peers.iter().enumerate() {
                check_cidr(c, &format!("{path}.peers[{i}]"), peer);
            }
            if matches!(f, Fault::Partition(_)) && s.peers.is_empty() {
                c.error(
                    path,
                    "a partition needs `peers`: the addresses or CIDRs to cut off",
                );
            }
            if s.peers.is_empty() && s.ports.is_empty() {
                c.error(path, "give `peers` or `ports`; without either this would cut all traffic, including your own session");
            }
            check_ports(c, &format!("{path}.ports"), &s.ports);
        }
        Fault::Dns(s) => {
            check_where(c, path, Some(&s.netns), s);
            for (i, r) in s.resolvers.iter().enumerate() {
                check_cidr(c, &format!("{path}.resolvers[{i}]"), r);
            }
        }
        Fault::PacketLoss(s) => {
            check_where(c, path, Some(&s.netns), s);
            if s.percent.0 == 0.0 {
                c.value_error(&format!("{path}.percent"), "0% loss does nothing");
            }
            if let Some(fl) = &s.filter {
                check_filter(c, &format!("{path}.filter"), fl);
            }
        }
        Fault::Bandwidth(s) => {
            check_where(c, path, Some(&s.netns), s);
            check_ifname(c, &format!("{path}.interface"), &s.interface);
            if let Some(l) = s.latency {
                c.nonzero(&format!("{path}.latency"), l);
            }
        }
        Fault::CpuStress(s) => {
            check_where(c, path, None, s);
            if s.workers == Some(0) {
                c.value_error(&format!("{path}.workers"), "give at least 1 worker");
            }
            if s.workers.is_some_and(|w| w > 1024) {
                c.value_error(
                    &format!("{path}.workers"),
                    "more than 1024 workers is surely a mistake",
                );
            }
            if s.load.is_some_and(|l| l.0 == 0.0) {
                c.value_error(&format!("{path}.load"), "a load of 0% does nothing");
            }
        }
        Fault::MemoryStress(s) => {
            check_where(c, path, None, s);
            if s.size.is_some() == s.percent.is_some() {
                c.error(
                    path,
                    "give exactly one of `size` (e.g. `256MiB`) or `percent` (of available memory)",
                );
            }
            if s.size.is_some_and(|z| z.0 == 0) {
                c.value_error(&format!("{path}.size"), "a size of 0 does nothing");
            }
            if s.percent
                .is_some_and(|p| p.fraction() > crate::fault::stress::MAX_MEMORY_SHARE)
            {
                c.value_error(
                    &format!("{path}.percent"),
                    format!(
                        "at most {}% of the available memory: more only sets off the OOM killer on the host",
                        crate::fault::stress::MAX_MEMORY_SHARE * 100.0
                    ),
                );
            }
            if let Some(r) = s.ramp {
                c.nonzero(&format!("{path}.ramp"), r);
                if let Some(d) = duration {
                    if r > d {
                        c.value_error(
                            &format!("{path}.ramp"),
                            format!("the ramp ({r}) is longer than the step's duration ({d})"),
                        );
                    }
                }
            }
        }
        Fault::FileCorrupt(s) => check_file_corrupt(c, path, s),
        Fault::SyscallError(s) => {
            check_target(c, &format!("{path}.target"), &s.target, exp, setup_names);
            for (field, message) in crate::fault::syscall::check_spec(s) {
                c.value_error(&format!("{path}{field}"), message);
            }
        }
        Fault::DiskFill(s) => {
            check_container_name(c, path, &s.container);
            if s.fill_to.is_some() == s.size.is_some() {
                c.error(
                    path,
                    "give exactly one of `fill_to` (e.g. `90%`) or `size` (e.g. `1GiB`)",
                );
            }
            if !s.path.starts_with('/') {
                c.value_error(&format!("{path}.path"), "give an absolute path");
            }
            if s.fill_to.is_some_and(|p| p.0 == 0.0) {
                c.value_error(&format!("{path}.fill_to"), "0% does nothing");
            }
            if s.reserve
                .is_some_and(|r| r.bytes() < crate::fault::disk::MIN_RESERVE)
            {
                c.value_error(
                    &format!("{path}.reserve"),
                    format!(
                        "the reserve must be at least {}: a full filesystem breaks the host (logs, package manager, faultline's own state)",
                        crate::units::Size(crate::fault::disk::MIN_RESERVE)
                    ),
                );
            }
        }
    }
}

/// The values of a spec's `container`, `labels` or `compose`.
fn check_containers<T: crate::fault::container::ContainerFields + ?Sized>(
    c: &mut Checker,
    path: &str,
    s: &T,
) {
    for (field, message) in crate::fault::container::check_selector(s) {
        c.value_error(&format!("{path}{field}"), message);
    }
}

/// A network or stress fault: at most one of `netns` (when it has one),
/// `container`, `labels`, `compose`, and their values.
fn check_where<T: crate::fault::container::ContainerFields + ?Sized>(
    c: &mut Checker,
    path: &str,
    netns: Option<&Option<String>>,
    s: &T,
) {
    let mut set: Vec<&str> = Vec::new();
    if netns.is_some_and(|n| n.is_some()) {
        set.push("netns");
    }
    set.extend(s.container_selectors());
    if set.len() > 1 {
        c.error(
            &format!("{path}.{}", set[1]),
            format!(
                "`{}` and `{}` both say where the fault runs; give at most one",
                set[0], set[1]
            ),
        );
    }
    check_containers(c, path, s);
}

/// A `container:` beside a path (disk_fill, file_corrupt).
fn check_container_name(c: &mut Checker, path: &str, name: &Option<String>) {
    if let Some(n) = name {
        let n = n.trim_start_matches('/');
        if n.is_empty()
            || !n
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch))
        {
            c.value_error(
                &format!("{path}.container"),
                "give a container name or id (letters, digits, `_`, `.`, `-`)",
            );
        }
    }
}

fn check_file_corrupt(c: &mut Checker, path: &str, s: &crate::fault::corrupt::FileCorruptSpec) {
    check_container_name(c, path, &s.container);
    for (field, message) in crate::fault::corrupt::check_spec(s) {
        c.value_error(&format!("{path}{field}"), message);
    }
}

fn check_network(c: &mut Checker, path: &str, s: &crate::fault::network::NetworkSpec) {
    check_where(c, path, Some(&s.netns), s);
    check_ifname(c, &format!("{path}.interface"), &s.interface);
    if s.delay.is_none()
        && s.loss.is_none()
        && s.corrupt.is_none()
        && s.duplicate.is_none()
        && s.reorder.is_none()
        && s.rate.is_none()
    {
        c.error(
            path,
            "the network fault impairs nothing; give at least one of `delay`, `loss`, `corrupt`, `duplicate`, `reorder`, `rate`",
        );
    }
    if matches!(s.direction, crate::fault::network::Direction::Both) {
        c.value_error(
            &format!("{path}.direction"),
            "a network fault is `egress` or `ingress`; use two steps with `background: true` for both",
        );
    }
    if let Some(d) = &s.delay {
        c.nonzero(&format!("{path}.delay.time"), d.time);
        if let Some(dist) = &d.distribution {
            if !["uniform", "normal", "pareto", "paretonormal"].contains(&dist.as_str()) {
                c.value_error(
                    &format!("{path}.delay.distribution"),
                    format!("`{dist}` is not a distribution; use uniform, normal, pareto or paretonormal"),
                );
            } else if d.jitter.is_none() {
                c.error(
                    &format!("{path}.delay.distribution"),
                    "a distribution needs `jitter`",
                );
            }
        }
    }
    if let Some(l) = &s.loss {
        if l.percent.is_some() == l.gilbert_elliott.is_some() {
            c.error(
                &format!("{path}.loss"),
                "give exactly one of `percent` or `gilbert_elliott`",
            );
        }
        if l.correlation.is_some() && l.gilbert_elliott.is_some() {
            c.error(
                &format!("{path}.loss.correlation"),
                "`correlation` goes with `percent`, not `gilbert_elliott`",
            );
        }
    }
    if let Some(r) = &s.reorder {
        if s.delay.is_none() {
            c.error(
                &format!("{path}.reorder"),
                "netem reorders only delayed packets; add a `delay`",
            );
        }
        if r.gap == Some(0) {
            c.value_error(
                &format!("{path}.reorder.gap"),
                "a gap of 0; give at least 1",
            );
        }
    }
    if let Some(f) = &s.filter {
        check_filter(c, &format!("{path}.filter"), f);
    }
}

fn check_filter(c: &mut Checker, path: &str, f: &crate::fault::network::TrafficFilter) {
    for (i, d) in f.destination.iter().enumerate() {
        check_cidr(c, &format!("{path}.destination[{i}]"), d);
    }
    for (i, d) in f.source.iter().enumerate() {
        check_cidr(c, &format!("{path}.source[{i}]"), d);
    }
    check_ports(c, &format!("{path}.ports"), &f.ports);
    check_ports(c, &format!("{path}.source_ports"), &f.source_ports);
}

fn check_ports(c: &mut Checker, path: &str, ports: &[u16]) {
    for (i, p) in ports.iter().enumerate() {
        if *p == 0 {
            c.value_error(&format!("{path}[{i}]"), "port 0 is not a port");
        }
    }
}

fn check_ifname(c: &mut Checker, path: &str, name: &str) {
    if name.is_empty()
        || name.len() > 15
        || name.contains('/')
        || name.chars().any(|ch| ch.is_whitespace())
    {
        c.value_error(
            path,
            format!("`{name}` is not an interface name (1-15 characters, no spaces or `/`)"),
        );
    }
}

fn check_cidr(c: &mut Checker, path: &str, s: &str) {
    if let Err(e) = crate::units::parse_cidr(s) {
        c.value_error(path, e);
    }
}

fn check_target(
    c: &mut Checker,
    path: &str,
    t: &ProcessTarget,
    exp: &Experiment,
    setup_names: &[String],
) {
    let sel = t.selectors();
    match sel.len() {
        0 => c.error(
            path,
            "the target has no selector; give exactly one of `pid`, `pidfile`, `name`, `cmdline`, `children_of`, `children_of_pidfile`, `cgroup`, `systemd_unit`, `setup`, `container`, `labels`, `compose`",
        ),
        1 => {}
        _ => c.error(
            &format!("{path}.{}", sel[1]),
            format!(
                "the target has two selectors (`{}` and `{}`); give exactly one",
                sel[0], sel[1]
            ),
        ),
    }
    if let Some(pid) = t.pid {
        if pid == 1 {
            c.value_error(
                &format!("{path}.pid"),
                "PID 1 (init) is never a target: signalling or limiting it can take the whole host down",
            );
        } else if pid <= 0 {
            c.value_error(&format!("{path}.pid"), "a pid is a positive number");
        }
    }
    if let Some(pid) = t.children_of {
        if pid <= 0 {
            c.value_error(&format!("{path}.children_of"), "a pid is a positive number");
        }
    }
    if let Some(name) = &t.name {
        if name.is_empty() {
            c.value_error(&format!("{path}.name"), "the name is empty");
        } else if name.len() > 15 {
            c.value_error(
                &format!("{path}.name"),
                format!("`{name}` is longer than 15 characters; the kernel keeps only the first 15 (`{}`), use that or `cmdline`", &name[..15]),
            );
        } else if name == "init" || name == "systemd" {
            c.value_error(
                &format!("{path}.name"),
                format!("`{name}` is PID 1 on most hosts and is never a target"),
            );
        }
    }
    c.regex(&format!("{path}.cmdline"), &t.cmdline);
    check_containers(c, path, t);
    if let Some(s) = &t.setup {
        if !setup_names.contains(s) {
            let mut msg = format!("no setup process is named `{s}`");
            if let Some(best) = c.suggester.suggest(s, setup_names) {
                msg.push_str(&format!(" (did you mean `{best}`?)"));
            }
            c.value_error(&format!("{path}.setup"), msg);
        }
    }
    match t.mode {
        TargetMode::Count => match t.count {
            None => c.error(&format!("{path}.mode"), "`mode: count` needs `count`"),
            Some(0) => c.value_error(&format!("{path}.count"), "give at least 1"),
            _ => {}
        },
        TargetMode::Percent => match t.percent {
            None => c.error(&format!("{path}.mode"), "`mode: percent` needs `percent`"),
            Some(p) if p.0 == 0.0 => c.value_error(&format!("{path}.percent"), "0% hits nothing"),
            _ => {}
        },
        _ => {}
    }
    if t.count.is_some() && t.mode != TargetMode::Count {
        c.error(&format!("{path}.count"), "`count` goes with `mode: count`");
    }
    if t.percent.is_some() && t.mode != TargetMode::Percent {
        c.error(
            &format!("{path}.percent"),
            "`percent` goes with `mode: percent`",
        );
    }
    if t.max_targets == Some(0) {
        c.value_error(
            &format!("{path}.max_targets"),
            "max_targets of 0 forbids the fault; give at least 1",
        );
    }
    if let Some(n) = t.count {
        let (max, from) = match (t.max_targets, exp.limits.blast_radius.max_targets) {
            (Some(a), Some(b)) => (a.min(b), "max_targets"),
            (Some(a), None) | (None, Some(a)) => (a, "max_targets"),
            (None, None) => (
                crate::fault::target::DEFAULT_MAX_TARGETS,
                "the default; set limits.blast_radius.max_targets to allow more",
            ),
        };
        if n > max {
            c.value_error(
                &format!("{path}.count"),
                format!("count {n} is above the blast-radius limit of {max} ({from})"),
            );
        }
    }
}
