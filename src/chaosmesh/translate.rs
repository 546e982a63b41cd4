//! Chaos Mesh objects -> faultline's model (as JSON, typed and validated
//! afterwards like any experiment). Field by field in docs/chaos-mesh.md.

use super::{Doc, Problem};
use crate::fault::container::COMPOSE_PROJECT_LABEL;
use crate::units::Duration;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// What a set of manifests says, in faultline's terms.
#[derive(Clone, Debug, Default)]
pub struct Translation {
    pub title: String,
    /// Names of the objects, for the description.
    pub objects: Vec<String>,
    /// http probes from StatusChecks (faultline `Probe`s as JSON).
    pub probes: Vec<Value>,
    /// Method steps (faultline `Step`s as JSON).
    pub method: Vec<Value>,
    /// Abort conditions (from `abortWithStatusCheck`).
    pub abort: Vec<Value>,
    /// A schedule window (from a `Schedule`'s cron).
    pub schedule: Option<Value>,
    /// The shortest StatusCheck interval, in seconds.
    pub interval: Option<u64>,
    /// Container selectors the faults use, for the default probe.
    pub targets: Vec<Map<String, Value>>,
    /// What is honoured differently; shown as warnings.
    pub warnings: Vec<String>,
    /// How long the method lasts.
    pub length: std::time::Duration,
}

struct Cx {
    doc: usize,
    problems: Vec<Problem>,
    t: Translation,
}

/// A StatusCheck on its way to becoming a probe.
#[derive(Default)]
struct Check {
    name: String,
    http: Map<String, Value>,
    status: Option<String>,
    timeout: Option<u64>,
    before: Option<u64>,
    during: bool,
    after: Option<(Duration, u64)>,
    abort_after: Option<u64>,
}

const SELECTOR_KEYS: [&str; 3] = ["labelSelectors", "namespaces", "pods"];

fn s(v: &Value) -> Option<&str> {
    v.as_str()
}

impl Cx {
    fn err(&mut self, path: &str, msg: impl Into<String>) {
        self.problems.push(Problem::new(self.doc, path, msg));
    }
    fn warn(&mut self, path: &str, msg: impl Into<String>) {
        self.t.warnings.push(format!("{path}: {}", msg.into()));
    }

    /// Every key of `v` must be in `known`; the others are named.
    fn keys(&mut self, v: &Value, path: &str, known: &[&str], why: &str) {
        if let Some(m) = v.as_object() {
            for k in m.keys() {
                if !known.contains(&k.as_str()) {
                    self.err(
                        &join(path, k),
                        format!(
                            "`{}` is not supported by faultline{why}",
                            crate::sys::text::escape(k)
                        ),
                    );
                }
            }
        }
    }

    fn duration(&mut self, v: &Value, path: &str) -> Option<Duration> {
        let text = s(v)
            .map(str::to_string)
            .or_else(|| v.as_u64().map(|n| format!("{n}s")));
        let Some(text) = text else {
            self.err(path, "a duration must be a string such as `30s` or `5m`");
            return None;
        };
        match text.parse::<Duration>() {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.err(path, "a duration of zero does nothing");
                None
            }
            Err(e) => {
                self.err(path, e);
                None
            }
        }
    }

    /// `"50"` (Chaos Mesh's percentages are bare numbers) -> `"50%"`.
    fn percent(&mut self, v: &Value, path: &str) -> Option<String> {
        let n = match v {
            Value::String(t) => t.trim().trim_end_matches('%').parse::<f64>().ok(),
            Value::Number(n) => n.as_f64(),
            _ => None,
        };
        match n {
            Some(n) if (0.0..=100.0).contains(&n) => Some(format!("{n}%")),
            _ => {
                self.err(path, "must be a percentage between 0 and 100, e.g. \"50\"");
                None
            }
        }
    }

    /// The container selector of a chaos spec: faultline target fields.
    fn selector(&mut self, spec: &Value, path: &str) -> Option<Map<String, Value>> {
        let sp = join(path, "selector");
        let Some(sel) = spec.get("selector") else {
            self.err(&sp, "missing: faultline needs a selector (labelSelectors, namespaces or pods) to find the containers");
            return None;
        };
        self.keys(
            sel,
            &sp,
            &SELECTOR_KEYS,
            ": locally, containers are selected by labelSelectors (container labels), namespaces (the Compose project) or pods (container names)",
        );
        let mut labels = BTreeMap::new();
        if let Some(l) = sel.get("labelSelectors") {
            match l.as_object() {
                Some(m) => {
                    for (k, v) in m {
                        match s(v) {
                            Some(v) => {
                                labels.insert(k.clone(), v.to_string());
                            }
                            None => self.err(
                                &join(&join(&sp, "labelSelectors"), k),
                                "a label value is a string",
                            ),
                        }
                    }
                }
                None => self.err(
                    &join(&sp, "labelSelectors"),
                    "a map of label names to values",
                ),
            }
        }
        if let Some(ns) = sel.get("namespaces") {
            let list: Vec<&str> = ns
                .as_array()
                .map(|a| a.iter().filter_map(s).collect())
                .unwrap_or_default();
            match list.as_slice() {
                [one] => {
                    labels.insert(COMPOSE_PROJECT_LABEL.into(), one.to_string());
                }
                _ => self.err(
                    &join(&sp, "namespaces"),
                    "give exactly one namespace: locally a namespace is one Compose project (the label com.docker.compose.project)",
                ),
            }
        }
        let mut out = Map::new();
        if let Some(p) = sel.get("pods") {
            let names: Vec<&str> = p
                .as_object()
                .map(|m| {
                    m.values()
                        .filter_map(Value::as_array)
                        .flatten()
                        .filter_map(s)
                        .collect()
                })
                .unwrap_or_default();
            match names.as_slice() {
                [one] if labels.is_empty() => {
                    out.insert("container".into(), json!(one));
                    self.warn(&join(&sp, "pods"), format!("pod `{one}` is the local container of that name; its namespace is not checked"));
                }
                [_] => self.err(&join(&sp, "pods"), "give pods or labelSelectors/namespaces, not both"),
                _ => self.err(&join(&sp, "pods"), "give exactly one pod: it is the local container of that name (select several by labelSelectors)"),
            }
        } else if labels.is_empty() {
            self.err(&sp, "an empty selector would select every container; give labelSelectors, namespaces or pods");
            return None;
        } else {
            out.insert("labels".into(), json!(labels));
        }
        if out.is_empty() {
            return None;
        }
        if !self.t.targets.contains(&out) {
            self.t.targets.push(out.clone());
        }
        Some(out)
    }

    /// `mode` (and `value`) as process-target fields; `only_all` for faults
    /// that act on every matching container.
    fn mode(&mut self, spec: &Value, path: &str, only_all: bool) -> Option<Map<String, Value>> {
        let mode = spec.get("mode").and_then(s).unwrap_or("");
        let value = spec.get("value").and_then(s).unwrap_or("");
        let mp = join(path, "mode");
        let mut m = Map::new();
        if only_all && mode != "all" {
            self.err(&mp, format!("`{}`: faultline applies this fault to every matching container; use `mode: all` and narrow the selector", crate::sys::text::escape(mode)));
            return None;
        }
        match mode {
            "all" => {
                m.insert("mode".into(), json!("all"));
            }
            "one" => {
                m.insert("mode".into(), json!("one"));
            }
            "fixed" => match value.parse::<u32>() {
                Ok(n) if n > 0 => {
                    m.insert("mode".into(), json!("count"));
                    m.insert("count".into(), json!(n));
                }
                _ => self.err(
                    &join(path, "value"),
                    "with `mode: fixed`, a number of pods such as \"2\"",
                ),
            },
            "fixed-percent" | "random-max-percent" => match value.parse::<f64>() {
                Ok(n) if n > 0.0 && n <= 100.0 => {
                    if mode == "random-max-percent" {
                        self.warn(&mp, format!("random-max-percent {n}: faultline takes exactly {n}% (not a random share up to it)"));
                    }
                    m.insert("mode".into(), json!("percent"));
                    m.insert("percent".into(), json!(format!("{n}%")));
                }
                _ => self.err(
                    &join(path, "value"),
                    format!("with `mode: {mode}`, a percentage such as \"50\""),
                ),
            },
            "" => self.err(
                &mp,
                "missing: one of one, all, fixed, fixed-percent, random-max-percent",
            ),
            other => self.err(
                &mp,
                format!(
                    "`{}` is not one of one, all, fixed, fixed-percent, random-max-percent",
                    crate::sys::text::escape(other)
                ),
            ),
        }
        (!m.is_empty()).then_some(m)
    }

    /// The fields every chaos spec shares, checked; returns the duration.
    fn common(
        &mut self,
        spec: &Value,
        path: &str,
        deadline: Option<Duration>,
        default: Option<Duration>,
    ) -> Option<Duration> {
        for (k, why) in [
            ("containerNames", "locally a pod is one container; select the container itself (pods or labelSelectors)"),
            ("remoteCluster", "faultline runs on this host only"),
        ] {
            if spec.get(k).is_some() {
                self.err(&join(path, k), format!("not supported: {why}"));
            }
        }
        let own = spec
            .get("duration")
            .and_then(|d| self.duration(d, &join(path, "duration")));
        match (own, deadline) {
            (Some(a), Some(b)) => Some(if a.std() < b.std() { a } else { b }),
            (Some(a), None) => Some(a),
            (None, Some(b)) => Some(b),
            (None, None) => {
                if default.is_none() {
                    self.err(
                        &join(path, "duration"),
                        "missing: without a duration Chaos Mesh keeps the fault until the object is deleted; faultline needs an end, e.g. `duration: 5m`",
                    );
                }
                default
            }
        }
    }

    fn step(&mut self, name: &str, fault: &str, spec: Value, d: Duration) -> Value {
        self.t.length = self.t.length.max(d.std());
        json!({"name": name, "fault": {fault: spec}, "duration": d.to_string()})
    }

    /// One chaos object (kind and spec) as method steps.
    fn chaos(
        &mut self,
        kind: &str,
        spec: &Value,
        path: &str,
        name: &str,
        deadline: Option<Duration>,
    ) -> Vec<Value> {
        match kind {
            "NetworkChaos" => self.network(spec, path, name, deadline),
            "StressChaos" => self.stress(spec, path, name, deadline),
            "PodChaos" => self.pod(spec, path, name, deadline),
            "IOChaos" => self.io(spec, path, name, deadline),
            "DNSChaos" => self.dns(spec, path, name, deadline),
            "TimeChaos" => {
                self.err(
                    path,
                    "TimeChaos is not supported: faultline has no clock fault",
                );
                vec![]
            }
            "HTTPChaos"
            | "JVMChaos"
            | "KernelChaos"
            | "BlockChaos"
            | "AWSChaos"
            | "GCPChaos"
            | "AzureChaos"
            | "PhysicalMachineChaos" => {
                self.err(path, format!("{kind} is not supported by faultline's reader (NetworkChaos, StressChaos, PodChaos, IOChaos, DNSChaos, Schedule and Workflow are)"));
                vec![]
            }
            other => {
                self.err(
                    path,
                    format!(
                        "`{}` is not a Chaos Mesh kind faultline knows",
                        crate::sys::text::escape(other)
                    ),
                );
                vec![]
            }
        }
    }

    fn network(
        &mut self,
        spec: &Value,
        path: &str,
        name: &str,
        deadline: Option<Duration>,
    ) -> Vec<Value> {
        self.keys(
            spec,
            path,
            &[
                "action",
                "selector",
                "mode",
                "value",
                "duration",
                "direction",
                "device",
                "externalTargets",
                "loss",
                "delay",
                "duplicate",
                "corrupt",
                "bandwidth",
                "rate",
                "target",
                "targetDevice",
                "containerNames",
                "remoteCluster",
            ],
            "",
        );
        let sel = self.selector(spec, path);
        let _ = self.mode(spec, path, true);
        let d = self.common(spec, path, deadline, None);
        if spec.get("target").is_some() {
            self.err(&join(path, "target"), "not supported: traffic between two selected sets of pods; name the other side's addresses in externalTargets");
        }
        if spec.get("targetDevice").is_some() {
            self.err(
                &join(path, "targetDevice"),
                "not supported (it goes with `target`)",
            );
        }
        let action = spec.get("action").and_then(s).unwrap_or("");
        let direction = match spec.get("direction").and_then(s).unwrap_or("to") {
            "to" => "egress",
            "from" => "ingress",
            "both" => "both",
            other => {
                self.err(
                    &join(path, "direction"),
                    format!(
                        "`{}` is not one of to, from, both",
                        crate::sys::text::escape(other)
                    ),
                );
                "egress"
            }
        };
        let peers: Vec<String> = spec
            .get("externalTargets")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(s).map(str::to_string).collect())
            .unwrap_or_default();
        for (i, p) in peers.iter().enumerate() {
            if crate::units::parse_cidr(p).is_err() && p.parse::<std::net::IpAddr>().is_err() {
                self.err(
                    &format!("{path}.externalTargets[{i}]"),
                    format!(
                        "`{}`: faultline takes addresses or CIDRs here, not host names",
                        crate::sys::text::escape(p)
                    ),
                );
            }
        }
        let filter = |dir: &str| -> Option<Value> {
            if peers.is_empty() {
                return None;
            }
            Some(match dir {
                "ingress" => json!({"source": peers}),
                _ => json!({"destination": peers}),
            })
        };
        let (Some(sel), Some(d)) = (sel, d) else {
            return vec![];
        };
        let device = spec.get("device").and_then(s);
        let mut out = Map::new();
        out.extend(sel);
        match action {
            "loss" => {
                let lp = join(path, "loss");
                let Some(l) = spec.get("loss") else {
                    self.err(&lp, "missing: `action: loss` needs `loss: {loss: \"50\"}`");
                    return vec![];
                };
                self.keys(l, &lp, &["loss", "correlation"], "");
                let Some(p) = l
                    .get("loss")
                    .and_then(|v| self.percent(v, &join(&lp, "loss")))
                else {
                    return vec![];
                };
                if let Some(c) = l.get("correlation") {
                    if self
                        .percent(c, &join(&lp, "correlation"))
                        .is_some_and(|c| c != "0%")
                    {
                        self.warn(&join(&lp, "correlation"), "faultline drops each packet independently (nftables `numgen random`, which needs no sch_netem); the correlation is not reproduced");
                    }
                }
                if device.is_some() {
                    self.warn(
                        &join(path, "device"),
                        "the loss applies to every interface of the container",
                    );
                }
                out.insert("percent".into(), json!(p));
                out.insert("direction".into(), json!(direction));
                if let Some(f) = filter(direction) {
                    if direction == "both" {
                        self.err(&join(path, "externalTargets"), "with `direction: both`, faultline cannot filter by address; use to or from");
                    }
                    out.insert("filter".into(), f);
                }
                vec![self.step(name, "packet_loss", Value::Object(out), d)]
            }
            "partition" => {
                if peers.is_empty() {
                    self.err(&join(path, "externalTargets"), "missing: faultline cuts the selected containers off from these addresses (CIDRs); it has no partition from everything");
                    return vec![];
                }
                out.insert("direction".into(), json!(direction));
                if !peers.is_empty() {
                    out.insert("peers".into(), json!(peers));
                }
                vec![self.step(name, "partition", Value::Object(out), d)]
            }
            "bandwidth" => {
                let bp = join(path, "bandwidth");
                let Some(b) = spec.get("bandwidth") else {
                    self.err(
                        &bp,
                        "missing: `action: bandwidth` needs `bandwidth: {rate, limit, buffer}`",
                    );
                    return vec![];
                };
                self.keys(
                    b,
                    &bp,
                    &["rate", "limit", "buffer"],
                    " (minburst and peakrate have no tbf equivalent here)",
                );
                let rate = b.get("rate").and_then(s).unwrap_or("");
                let Ok(r) = rate.parse::<crate::units::Rate>() else {
                    self.err(
                        &join(&bp, "rate"),
                        format!(
                            "`{}` is not a rate faultline reads (e.g. 1mbps, 500kbit)",
                            crate::sys::text::escape(rate)
                        ),
                    );
                    return vec![];
                };
                let buffer = b
                    .get("buffer")
                    .and_then(Value::as_u64)
                    .unwrap_or(32 * 1024)
                    .max(1);
                let limit = b.get("limit").and_then(Value::as_u64).unwrap_or(buffer);
                // tbf's queue limit in bytes -> the longest a packet waits.
                let wait_ms = ((limit.saturating_sub(buffer)) as f64 * 8.0 / r.bits_per_sec as f64
                    * 1000.0)
                    .ceil() as u64;
                if direction != "egress" {
                    self.err(
                        &join(path, "direction"),
                        "bandwidth is limited on egress (`to`) only",
                    );
                }
                out.insert("interface".into(), json!(device.unwrap_or("eth0")));
                out.insert("rate".into(), json!(r.to_string()));
                out.insert("burst".into(), json!(buffer.to_string()));
                out.insert("latency".into(), json!(format!("{}ms", wait_ms.max(1))));
                vec![self.step(name, "bandwidth", Value::Object(out), d)]
            }
            "netem" | "delay" | "duplicate" | "corrupt" | "rate" => {
                if direction == "both" {
                    self.err(
                        &join(path, "direction"),
                        "netem impairs one direction; use to or from",
                    );
                }
                out.insert("interface".into(), json!(device.unwrap_or("eth0")));
                out.insert("direction".into(), json!(direction));
                let want: &[&str] = match action {
                    "netem" => &["delay", "loss", "duplicate", "corrupt", "rate"],
                    a => std::slice::from_ref(match a {
                        "delay" => &"delay",
                        "duplicate" => &"duplicate",
                        "corrupt" => &"corrupt",
                        _ => &"rate",
                    }),
                };
                for key in want {
                    let Some(v) = spec.get(*key) else {
                        if action != "netem" {
                            self.err(
                                &join(path, key),
                                format!("missing: `action: {action}` needs `{key}`"),
                            );
                        }
                        continue;
                    };
                    let kp = join(path, key);
                    match *key {
                        "delay" => {
                            self.keys(v, &kp, &["latency", "jitter", "correlation", "reorder"], "");
                            let mut dl = Map::new();
                            if let Some(l) = v
                                .get("latency")
                                .and_then(|x| self.duration(x, &join(&kp, "latency")))
                            {
                                dl.insert("time".into(), json!(l.to_string()));
                            }
                            if let Some(j) = v
                                .get("jitter")
                                .and_then(|x| self.duration(x, &join(&kp, "jitter")))
                            {
                                dl.insert("jitter".into(), json!(j.to_string()));
                            }
                            if let Some(c) = v
                                .get("correlation")
                                .and_then(|x| self.percent(x, &join(&kp, "correlation")))
                            {
                                dl.insert("correlation".into(), json!(c));
                            }
                            out.insert("delay".into(), Value::Object(dl));
                            if let Some(r) = v.get("reorder") {
                                let rp = join(&kp, "reorder");
                                self.keys(r, &rp, &["reorder", "correlation", "gap"], "");
                                let mut ro = Map::new();
                                if let Some(p) = r
                                    .get("reorder")
                                    .and_then(|x| self.percent(x, &join(&rp, "reorder")))
                                {
                                    ro.insert("percent".into(), json!(p));
                                }
                                if let Some(c) = r
                                    .get("correlation")
                                    .and_then(|x| self.percent(x, &join(&rp, "correlation")))
                                {
                                    ro.insert("correlation".into(), json!(c));
                                }
                                if let Some(g) = r.get("gap").and_then(Value::as_u64) {
                                    ro.insert("gap".into(), json!(g));
                                }
                                out.insert("reorder".into(), Value::Object(ro));
                            }
                        }
                        "loss" | "duplicate" | "corrupt" => {
                            self.keys(v, &kp, &[key, "correlation"], "");
                            let mut c = Map::new();
                            if let Some(p) =
                                v.get(*key).and_then(|x| self.percent(x, &join(&kp, key)))
                            {
                                c.insert("percent".into(), json!(p));
                            }
                            if let Some(p) = v
                                .get("correlation")
                                .and_then(|x| self.percent(x, &join(&kp, "correlation")))
                            {
                                c.insert("correlation".into(), json!(p));
                            }
                            out.insert((*key).into(), Value::Object(c));
                        }
                        _ => {
                            self.keys(v, &kp, &["rate"], "");
                            match v
                                .get("rate")
                                .and_then(s)
                                .map(|r| r.parse::<crate::units::Rate>())
                            {
                                Some(Ok(r)) => {
                                    out.insert("rate".into(), json!(r.to_string()));
                                }
                                _ => {
                                    self.err(&join(&kp, "rate"), "a rate such as 1mbps or 500kbit")
                                }
                            }
                        }
                    }
                }
                if let Some(f) = filter(direction) {
                    out.insert("filter".into(), f);
                }
                vec![self.step(name, "network", Value::Object(out), d)]
            }
            "" => {
                self.err(
                    &join(path, "action"),
                    "missing: one of netem, delay, loss, duplicate, corrupt, partition, bandwidth",
                );
                vec![]
            }
            other => {
                self.err(
                    &join(path, "action"),
                    format!(
                        "`{}` is not a NetworkChaos action",
                        crate::sys::text::escape(other)
                    ),
                );
                vec![]
            }
        }
    }

    fn stress(
        &mut self,
        spec: &Value,
        path: &str,
        name: &str,
        deadline: Option<Duration>,
    ) -> Vec<Value> {
        self.keys(
            spec,
            path,
            &[
                "selector",
                "mode",
                "value",
                "duration",
                "stressors",
                "stressngStressors",
                "containerNames",
                "remoteCluster",
            ],
            "",
        );
        if spec.get("stressngStressors").is_some() {
            self.err(
                &join(path, "stressngStressors"),
                "not supported: faultline's stressors are built in (no stress-ng); use `stressors`",
            );
        }
        let sel = self.selector(spec, path);
        let _ = self.mode(spec, path, true);
        let d = self.common(spec, path, deadline, None);
        let sp = join(path, "stressors");
        let Some(st) = spec.get("stressors") else {
            self.err(&sp, "missing: `stressors: {cpu: ...}` or `{memory: ...}`");
            return vec![];
        };
        self.keys(st, &sp, &["cpu", "memory"], "");
        let (Some(sel), Some(d)) = (sel, d) else {
            return vec![];
        };
        let mut steps = Vec::new();
        if let Some(c) = st.get("cpu") {
            let cp = join(&sp, "cpu");
            self.keys(
                c,
                &cp,
                &["workers", "load"],
                " (stress-ng options have no built-in equivalent)",
            );
            let mut out = sel.clone();
            if let Some(w) = c.get("workers").and_then(Value::as_u64) {
                out.insert("workers".into(), json!(w));
            }
            if let Some(l) = c.get("load").and_then(Value::as_u64) {
                if l == 0 || l > 100 {
                    self.err(&join(&cp, "load"), "a load between 1 and 100 (percent)");
                }
                out.insert("load".into(), json!(format!("{l}%")));
            }
            steps.push(self.step(name, "cpu_stress", Value::Object(out), d));
        }
        if let Some(m) = st.get("memory") {
            let mp = join(&sp, "memory");
            self.keys(
                m,
                &mp,
                &["workers", "size", "oomScoreAdj"],
                " (stress-ng options have no built-in equivalent)",
            );
            if m.get("oomScoreAdj").is_some() {
                self.warn(
                    &join(&mp, "oomScoreAdj"),
                    "ignored: the built-in stressor keeps the kernel's default OOM score",
                );
            }
            let workers = m.get("workers").and_then(Value::as_u64).unwrap_or(1).max(1);
            let size = m.get("size").and_then(s).unwrap_or("");
            let mut out = sel.clone();
            if let Some(p) = size.strip_suffix('%') {
                match p.trim().parse::<f64>() {
                    Ok(n) if n > 0.0 && n <= 100.0 => {
                        out.insert("percent".into(), json!(format!("{n}%")));
                    }
                    _ => self.err(
                        &join(&mp, "size"),
                        "a size such as 256MB or a percentage such as 50%",
                    ),
                }
            } else {
                match size.parse::<crate::units::Size>() {
                    Ok(z) => {
                        if workers > 1 {
                            self.warn(&join(&mp, "workers"), format!("{workers} workers of {size} each: one built-in stressor holds the total"));
                        }
                        out.insert(
                            "size".into(),
                            json!(crate::units::Size(z.bytes() * workers).exact()),
                        );
                    }
                    Err(_) => self.err(
                        &join(&mp, "size"),
                        format!(
                            "`{}` is not a size faultline reads (e.g. 256MB, 1GiB, 50%)",
                            crate::sys::text::escape(size)
                        ),
                    ),
                }
            }
            let mut step = self.step(name, "memory_stress", Value::Object(out), d);
            if !steps.is_empty() {
                // cpu and memory together, as Chaos Mesh runs them.
                steps[0]["background"] = json!(true);
                step["name"] = json!(format!("{name} (memory)"));
            }
            steps.push(step);
        }
        if steps.is_empty() {
            self.err(&sp, "no stressor: give `cpu` or `memory`");
        }
        steps
    }

    fn pod(
        &mut self,
        spec: &Value,
        path: &str,
        name: &str,
        deadline: Option<Duration>,
    ) -> Vec<Value> {
        self.keys(
            spec,
            path,
            &[
                "action",
                "selector",
                "mode",
                "value",
                "duration",
                "gracePeriod",
                "containerNames",
                "remoteCluster",
            ],
            "",
        );
        let sel = self.selector(spec, path);
        let mode = self.mode(spec, path, false);
        let action = spec.get("action").and_then(s).unwrap_or("");
        // A kill has no duration of its own: the step watches for 10s.
        let default = (action != "pod-failure").then(|| Duration::from_secs(10));
        let d = self.common(spec, path, deadline, default);
        let (Some(sel), Some(mode), Some(d)) = (sel, mode, d) else {
            return vec![];
        };
        let mut target = sel;
        target.extend(mode);
        match action {
            "pod-kill" | "container-kill" => {
                let grace = spec.get("gracePeriod").and_then(Value::as_i64).unwrap_or(0);
                let signal = if grace > 0 {
                    self.warn(
                        &join(path, "gracePeriod"),
                        format!(
                            "{grace}s: faultline sends SIGTERM and does not follow up with SIGKILL"
                        ),
                    );
                    "SIGTERM"
                } else {
                    "SIGKILL"
                };
                vec![self.step(
                    name,
                    "process_kill",
                    json!({"target": target, "signal": signal}),
                    d,
                )]
            }
            "pod-failure" => {
                self.warn(&join(path, "action"), "pod-failure: faultline pauses the container's processes (SIGSTOP, SIGCONT at the end) instead of swapping its image");
                vec![self.step(name, "process_pause", json!({"target": target}), d)]
            }
            "" => {
                self.err(
                    &join(path, "action"),
                    "missing: one of pod-kill, pod-failure, container-kill",
                );
                vec![]
            }
            other => {
                self.err(
                    &join(path, "action"),
                    format!(
                        "`{}` is not a PodChaos action",
                        crate::sys::text::escape(other)
                    ),
                );
                vec![]
            }
        }
    }

    fn io(
        &mut self,
        spec: &Value,
        path: &str,
        name: &str,
        deadline: Option<Duration>,
    ) -> Vec<Value> {
        self.keys(
            spec,
            path,
            &["action", "selector", "mode", "value", "duration", "volumePath", "path", "mistake", "methods", "percent", "containerNames", "remoteCluster"],
            " (IOChaos `mistake` is read as a file corruption; latency, fault and attrOverride have no local equivalent)",
        );
        let action = spec.get("action").and_then(s).unwrap_or("");
        if action != "mistake" {
            self.err(
                &join(path, "action"),
                format!("`{}`: faultline reads IOChaos `mistake` only (as file_corrupt); latency, fault and attrOverride need Chaos Mesh's FUSE sidecar", crate::sys::text::escape(action)),
            );
            return vec![];
        }
        let sel = self.selector(spec, path);
        let _ = self.mode(spec, path, true);
        let d = self.common(spec, path, deadline, None);
        let Some(container) = sel.as_ref().and_then(|m| m.get("container")).cloned() else {
            if sel.is_some() {
                self.err(
                    &join(path, "selector"),
                    "IOChaos needs one container: select it with `pods: {NAMESPACE: [NAME]}`",
                );
            }
            return vec![];
        };
        let vol = spec.get("volumePath").and_then(s).unwrap_or("");
        if !vol.starts_with('/') {
            self.err(
                &join(path, "volumePath"),
                "an absolute path inside the container",
            );
            return vec![];
        }
        let file = spec.get("path").and_then(s).unwrap_or("*");
        let full = if file.starts_with('/') {
            file.to_string()
        } else {
            format!("{}/{file}", vol.trim_end_matches('/'))
        };
        let m = spec.get("mistake").cloned().unwrap_or(json!({}));
        self.keys(
            &m,
            &join(path, "mistake"),
            &["filling", "maxLength", "maxOccurrences"],
            "",
        );
        let mode = match m.get("filling").and_then(s).unwrap_or("random") {
            "zero" => "zero",
            _ => "random",
        };
        let mut out = json!({"container": container, "path": full, "mode": mode});
        if let Some(l) = m.get("maxLength").and_then(Value::as_u64) {
            out["length"] = json!(l.to_string());
        }
        for k in ["methods", "percent"] {
            if spec.get(k).is_some() {
                self.warn(&join(path, k), "ignored: faultline changes the file's bytes once (restored byte-exact at the end) instead of garbling some reads");
            }
        }
        self.warn(path, "IOChaos mistake: faultline corrupts the file itself (backed up first, restored at the end); Chaos Mesh garbles reads through a FUSE mount");
        let Some(d) = d else {
            return vec![];
        };
        vec![self.step(name, "file_corrupt", out, d)]
    }

    fn dns(
        &mut self,
        spec: &Value,
        path: &str,
        name: &str,
        deadline: Option<Duration>,
    ) -> Vec<Value> {
        self.keys(
            spec,
            path,
            &[
                "action",
                "selector",
                "mode",
                "value",
                "duration",
                "patterns",
                "containerNames",
                "remoteCluster",
            ],
            "",
        );
        let sel = self.selector(spec, path);
        let _ = self.mode(spec, path, true);
        let d = self.common(spec, path, deadline, None);
        match spec.get("action").and_then(s).unwrap_or("") {
            "error" => {}
            other => {
                self.err(&join(path, "action"), format!("`{}`: faultline makes lookups fail (`error`); it cannot answer with random addresses", crate::sys::text::escape(other)));
                return vec![];
            }
        }
        if let Some(p) = spec.get("patterns").and_then(Value::as_array) {
            if !(p.is_empty() || p.iter().all(|x| s(x) == Some("*"))) {
                self.err(&join(path, "patterns"), "faultline fails every lookup (it blocks port 53); it cannot pick domains: remove `patterns`");
            }
        }
        let (Some(sel), Some(d)) = (sel, d) else {
            return vec![];
        };
        let mut out = sel;
        out.insert("action".into(), json!("reject"));
        vec![self.step(name, "dns", Value::Object(out), d)]
    }

    /// A StatusCheck spec (standalone or a workflow task's `statusCheck`).
    fn check(&mut self, sc: &Value, path: &str, name: &str) -> Option<Check> {
        self.keys(
            sc,
            path,
            &[
                "type",
                "mode",
                "duration",
                "timeoutSeconds",
                "intervalSeconds",
                "failureThreshold",
                "successThreshold",
                "recordsHistoryLimit",
                "http",
            ],
            "",
        );
        if sc.get("type").and_then(s) != Some("HTTP") {
            self.err(&join(path, "type"), "only HTTP status checks exist");
            return None;
        }
        let hp = join(path, "http");
        let h = sc.get("http").cloned().unwrap_or(json!({}));
        self.keys(
            &h,
            &hp,
            &["url", "method", "headers", "body", "criteria"],
            "",
        );
        let url = h.get("url").and_then(s).unwrap_or("");
        if url.is_empty() {
            self.err(&join(&hp, "url"), "missing: the URL to check");
            return None;
        }
        let mut http = Map::new();
        http.insert("url".into(), json!(url));
        http.insert(
            "method".into(),
            json!(h.get("method").and_then(s).unwrap_or("GET")),
        );
        if let Some(hs) = h.get("headers").and_then(Value::as_object) {
            let mut out = Map::new();
            for (k, v) in hs {
                let vals: Vec<&str> = v
                    .as_array()
                    .map(|a| a.iter().filter_map(s).collect())
                    .unwrap_or_default();
                out.insert(k.clone(), json!(vals.join(", ")));
            }
            http.insert("headers".into(), Value::Object(out));
        }
        if let Some(b) = h.get("body").and_then(s) {
            http.insert("body".into(), json!(b));
        }
        let status = h
            .get("criteria")
            .and_then(|c| c.get("statusCode"))
            .and_then(s)
            .map(str::to_string);
        if status.is_none() {
            self.err(
                &join(&hp, "criteria.statusCode"),
                "missing: the expected status code, e.g. \"200\" or \"200-299\"",
            );
        }
        if let Some(i) = sc.get("intervalSeconds").and_then(Value::as_u64) {
            let i = i.max(1);
            self.t.interval = Some(self.t.interval.map_or(i, |x| x.min(i)));
        }
        Some(Check {
            name: name.to_string(),
            http,
            status,
            timeout: sc.get("timeoutSeconds").and_then(Value::as_u64),
            ..Default::default()
        })
    }

    fn add_check(&mut self, c: Check) {
        let mut p = json!({"name": c.name, "http": c.http});
        if let Some(st) = &c.status {
            p["expect"] = json!({"status": st});
        }
        if let Some(t) = c.timeout {
            p["timeout"] = json!(format!("{}s", t.max(1)));
        }
        if let Some(n) = c.before {
            p["before"] = json!({"samples": n.max(1)});
        }
        // A check during the faults records; it judges through abort only.
        let _ = c.during;
        if let Some((within, n)) = c.after {
            p["after"] = json!({"within": within.to_string(), "successes": n.max(1)});
        }
        if let Some(n) = c.abort_after {
            self.t
                .abort
                .push(json!({"probe": c.name, "consecutive_failures": n.max(1)}));
        }
        self.t.probes.push(p);
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The field of a Workflow task or Schedule that holds a kind's spec.
fn field_of(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "NetworkChaos" => "networkChaos",
        "StressChaos" => "stressChaos",
        "PodChaos" => "podChaos",
        "IOChaos" => "ioChaos",
        "DNSChaos" => "dnsChaos",
        "TimeChaos" => "timeChaos",
        "HTTPChaos" => "httpChaos",
        "JVMChaos" => "jvmChaos",
        "KernelChaos" => "kernelChaos",
        "PhysicalMachineChaos" => "physicalmachineChaos",
        _ => return None,
    })
}

/// Where a workflow walk is relative to the chaos tasks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Before,
    After,
}

struct Walk<'a> {
    templates: BTreeMap<String, (usize, &'a Value)>,
    path: String,
    checks: Vec<Check>,
    seen: Vec<String>,
    /// How deep the walk is (a hostile file must not exhaust the stack).
    depth: usize,
}

/// How deep Serial/Parallel tasks may nest.
const MAX_DEPTH: usize = 64;

impl Cx {
    fn workflow(&mut self, wf: &Value, path: &str) {
        self.keys(wf, path, &["entry", "templates"], "");
        let list = wf
            .get("templates")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut w = Walk {
            templates: BTreeMap::new(),
            path: join(path, "templates"),
            checks: Vec::new(),
            seen: Vec::new(),
            depth: 0,
        };
        for (i, t) in list.iter().enumerate() {
            if let Some(n) = t.get("name").and_then(s) {
                w.templates.insert(n.to_string(), (i, t));
            }
        }
        let Some(entry) = wf.get("entry").and_then(s) else {
            self.err(
                &join(path, "entry"),
                "missing: the name of the first template",
            );
            return;
        };
        let mut phase = Phase::Before;
        self.node(&mut w, entry, &mut phase, false);
        for c in std::mem::take(&mut w.checks) {
            self.add_check(c);
        }
    }

    fn node(&mut self, w: &mut Walk, name: &str, phase: &mut Phase, parallel: bool) {
        w.depth += 1;
        if w.depth > MAX_DEPTH {
            self.err(
                &w.path,
                format!("templates nested more than {MAX_DEPTH} deep"),
            );
        } else {
            self.node_inner(w, name, phase, parallel);
        }
        w.depth -= 1;
    }

    fn node_inner(&mut self, w: &mut Walk, name: &str, phase: &mut Phase, parallel: bool) {
        let Some(&(i, t)) = w.templates.get(name) else {
            self.err(
                &w.path,
                format!("no template is named `{}`", crate::sys::text::escape(name)),
            );
            return;
        };
        if w.seen.iter().any(|n| n == name) {
            self.err(
                &format!("{}[{i}]", w.path),
                "a template used twice (or a cycle) is not supported",
            );
            return;
        }
        w.seen.push(name.to_string());
        let tp = format!("{}[{i}]", w.path);
        let kind = t.get("templateType").and_then(s).unwrap_or("");
        let mut known = vec![
            "name",
            "templateType",
            "deadline",
            "children",
            "abortWithStatusCheck",
        ];
        if let Some(f) = field_of(kind) {
            known.push(f);
        }
        if kind == "StatusCheck" {
            known.push("statusCheck");
        }
        if kind == "Schedule" {
            known.push("schedule");
        }
        self.keys(t, &tp, &known, " (conditional branches, container tasks and nested schedules are not run by faultline)");
        let deadline = t
            .get("deadline")
            .and_then(|d| self.duration(d, &join(&tp, "deadline")));
        let children: Vec<String> = t
            .get("children")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(s).map(str::to_string).collect())
            .unwrap_or_default();
        match kind {
            "Serial" => {
                for c in &children {
                    self.node(w, c, phase, false);
                }
            }
            "Parallel" => {
                // Chaos tasks among the children start together, each in the
                // background; status checks watch meanwhile; other children
                // (a Serial, a Suspend) run in order after those started; a
                // pause then waits for the longest background task.
                let mut longest = std::time::Duration::ZERO;
                let mut in_order = std::time::Duration::ZERO;
                let direct = |c: &str| {
                    w.templates
                        .get(c)
                        .and_then(|(_, t)| t.get("templateType"))
                        .and_then(s)
                        .is_some_and(|k| field_of(k).is_some() || k == "StatusCheck" || k == "Schedule")
                };
                let (first, rest): (Vec<String>, Vec<String>) = children.iter().cloned().partition(|c| direct(c));
                for c in first.iter().chain(&rest) {
                    let background = first.contains(c);
                    let start = self.t.method.len();
                    self.node(w, c, phase, background);
                    for st in &mut self.t.method[start..] {
                        let d = st
                            .get("duration")
                            .or_else(|| st.get("pause"))
                            .and_then(s)
                            .and_then(|d| d.parse::<Duration>().ok())
                            .map(|d| d.std())
                            .unwrap_or_default();
                        if background && st.get("fault").is_some() {
                            st["background"] = json!(true);
                            longest = longest.max(d);
                        } else if st.get("background").is_none() {
                            in_order += d;
                        }
                    }
                }
                let wait = longest.saturating_sub(in_order);
                if !wait.is_zero() {
                    self.t.method.push(json!({"name": format!("{name} (wait)"), "pause": Duration(wait).to_string()}));
                }
            }
            "Schedule" => self.crash_loop(t, &tp, name, deadline),
            "Suspend" => match deadline {
                Some(d) => self.t.method.push(json!({"name": name, "pause": d.to_string()})),
                None => self.err(&join(&tp, "deadline"), "missing: how long to suspend"),
            },
            "StatusCheck" => {
                let sc = t.get("statusCheck").cloned().unwrap_or(json!({}));
                let Some(mut c) = self.check(&sc, &join(&tp, "statusCheck"), name) else {
                    return;
                };
                let mode = sc.get("mode").and_then(s).unwrap_or("Synchronous");
                let success = sc.get("successThreshold").and_then(Value::as_u64).unwrap_or(1);
                let failure = sc.get("failureThreshold").and_then(Value::as_u64).unwrap_or(3);
                let abort = t.get("abortWithStatusCheck").and_then(Value::as_bool).unwrap_or(false);
                // The same URL checked again is one probe with several requirements.
                let idx = w.checks.iter().position(|o| o.http == c.http && o.status == c.status);
                let target = match idx {
                    Some(k) => &mut w.checks[k],
                    None => {
                        w.checks.push(std::mem::take(&mut c));
                        w.checks.last_mut().expect("just pushed")
                    }
                };
                match (mode, parallel, *phase) {
                    ("Continuous", _, _) | (_, true, _) => {
                        target.during = true;
                        if abort {
                            target.abort_after = Some(failure);
                        }
                    }
                    (_, false, Phase::Before) => target.before = Some(success),
                    (_, false, Phase::After) => {
                        target.after = Some((deadline.unwrap_or(Duration::from_secs(30)), success));
                    }
                }
                if mode != "Continuous" && mode != "Synchronous" {
                    self.err(&join(&tp, "statusCheck.mode"), "one of Synchronous, Continuous");
                }
            }
            k => match field_of(k) {
                Some(f) => {
                    let spec = t.get(f).cloned().unwrap_or(Value::Null);
                    if spec.is_null() {
                        self.err(&join(&tp, f), format!("missing: the {k} spec"));
                        return;
                    }
                    let steps = self.chaos(k, &spec, &join(&tp, f), name, deadline);
                    self.t.method.extend(steps);
                    *phase = Phase::After;
                }
                None => self.err(
                    &join(&tp, "templateType"),
                    format!("`{}` is not supported: faultline runs Serial, Parallel, Suspend, StatusCheck and chaos tasks", crate::sys::text::escape(k)),
                ),
            },
        }
    }

    /// A task that repeats a PodChaos kill `@every` N for its deadline: a
    /// crash loop (`process_kill` with `every`).
    fn crash_loop(&mut self, t: &Value, tp: &str, name: &str, deadline: Option<Duration>) {
        let sp = join(tp, "schedule");
        let sch = t.get("schedule").cloned().unwrap_or(json!({}));
        self.keys(
            &sch,
            &sp,
            &[
                "schedule",
                "type",
                "podChaos",
                "concurrencyPolicy",
                "historyLimit",
                "startingDeadlineSeconds",
            ],
            " (in a workflow, faultline repeats a PodChaos kill only)",
        );
        let every = sch
            .get("schedule")
            .and_then(s)
            .and_then(|c| c.strip_prefix("@every "))
            .map(str::trim);
        let Some(every) = every.and_then(|e| self.duration(&json!(e), &join(&sp, "schedule")))
        else {
            self.err(
                &join(&sp, "schedule"),
                "in a workflow, faultline repeats a kill `@every DURATION` (a crash loop)",
            );
            return;
        };
        if sch.get("type").and_then(s) != Some("PodChaos") {
            self.err(
                &join(&sp, "type"),
                "in a workflow, faultline repeats a PodChaos kill only",
            );
            return;
        }
        let Some(d) = deadline else {
            self.err(&join(tp, "deadline"), "missing: how long the kills repeat");
            return;
        };
        let pc = sch.get("podChaos").cloned().unwrap_or(Value::Null);
        let mut steps = self.pod(&pc, &join(&sp, "podChaos"), name, Some(d));
        for st in &mut steps {
            if let Some(k) = st.pointer_mut("/fault/process_kill") {
                k["every"] = json!(every.to_string());
                st["duration"] = json!(d.to_string());
            } else {
                self.err(
                    &join(&sp, "podChaos.action"),
                    "only pod-kill and container-kill repeat",
                );
            }
        }
        self.t.length = self.t.length.max(d.std());
        self.t.method.extend(steps);
    }

    fn schedule(&mut self, spec: &Value, path: &str, name: &str) {
        self.keys(
            spec,
            path,
            &[
                "schedule",
                "type",
                "concurrencyPolicy",
                "historyLimit",
                "startingDeadlineSeconds",
                "workflow",
                "networkChaos",
                "stressChaos",
                "podChaos",
                "ioChaos",
                "dnsChaos",
                "timeChaos",
            ],
            "",
        );
        for k in [
            "concurrencyPolicy",
            "historyLimit",
            "startingDeadlineSeconds",
        ] {
            if spec.get(k).is_some() {
                self.warn(
                    &join(path, k),
                    "ignored: it concerns Chaos Mesh's controller, not one run",
                );
            }
        }
        let cron = spec
            .get("schedule")
            .and_then(s)
            .unwrap_or("")
            .trim()
            .to_string();
        let kind = spec.get("type").and_then(s).unwrap_or("");
        if kind == "Workflow" {
            match spec.get("workflow") {
                Some(wf) => self.workflow(wf, &join(path, "workflow")),
                None => self.err(&join(path, "workflow"), "missing: the workflow to schedule"),
            }
        } else {
            match field_of(kind) {
                Some(f) => match spec.get(f) {
                    Some(cs) => {
                        let steps = self.chaos(kind, cs, &join(path, f), name, None);
                        self.t.method.extend(steps);
                    }
                    None => self.err(&join(path, f), format!("missing: the {kind} spec")),
                },
                None => self.err(
                    &join(path, "type"),
                    format!(
                        "`{}` is not a kind faultline schedules",
                        crate::sys::text::escape(kind)
                    ),
                ),
            }
        }
        // The window: the cron's moments, open as long as the run.
        let (zone, expr) = match cron
            .strip_prefix("CRON_TZ=")
            .or_else(|| cron.strip_prefix("TZ="))
        {
            Some(rest) => match rest.split_once(' ') {
                Some((z, e)) => (Some(z.to_string()), e.trim().to_string()),
                None => (None, rest.to_string()),
            },
            None => (None, cron.clone()),
        };
        if expr.starts_with('@') {
            self.err(
                &join(path, "schedule"),
                format!("`{}`: faultline's schedule windows take a five-field cron expression; run faultline from a timer for repeated runs", crate::sys::text::escape(&expr)),
            );
            return;
        }
        let minutes = (self.t.length.as_secs().div_ceil(60) + 1).max(1);
        let mut sch = json!({"cron": expr, "duration": format!("{minutes}m")});
        if let Some(z) = zone {
            sch["timezone"] = json!(z);
        }
        self.warn(
            &join(path, "schedule"),
            "a window: `faultline run` runs the fault once when started inside it (or with --outside-window); it does not wait for the cron",
        );
        self.t.schedule = Some(sch);
    }
}

/// Translates the documents of a manifest file.
pub fn translate(docs: &[Doc]) -> Result<Translation, Vec<Problem>> {
    let mut cx = Cx {
        doc: 0,
        problems: Vec::new(),
        t: Translation::default(),
    };
    let mut chaos_docs = 0;
    let mut standalone_checks = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        cx.doc = i;
        let v = &d.value;
        let api = v.get("apiVersion").and_then(s).unwrap_or("");
        if !api.starts_with("chaos-mesh.org/") {
            cx.err("apiVersion", "not a Chaos Mesh object (apiVersion chaos-mesh.org/v1alpha1); a manifest file holds Chaos Mesh objects only");
            continue;
        }
        cx.keys(
            v,
            "",
            &["apiVersion", "kind", "metadata", "spec", "status"],
            "",
        );
        let kind = v.get("kind").and_then(s).unwrap_or("").to_string();
        let name = v
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(s)
            .unwrap_or(&kind)
            .to_string();
        cx.t.objects.push(format!("{kind} {name}"));
        let spec = v.get("spec").cloned().unwrap_or(Value::Null);
        if spec.is_null() {
            cx.err("spec", "missing");
            continue;
        }
        match kind.as_str() {
            "Workflow" => cx.workflow(&spec, "spec"),
            "Schedule" => cx.schedule(&spec, "spec", &name),
            "StatusCheck" => {
                if let Some(mut c) = cx.check(&spec, "spec", &name) {
                    if spec.get("mode").and_then(s) == Some("Continuous") {
                        c.during = true;
                    } else {
                        c.before = Some(
                            spec.get("successThreshold")
                                .and_then(Value::as_u64)
                                .unwrap_or(1),
                        );
                        c.after = Some((Duration::from_secs(30), 1));
                    }
                    standalone_checks.push(c);
                }
            }
            k => {
                chaos_docs += 1;
                let steps = cx.chaos(k, &spec, "spec", &name, None);
                cx.t.method.extend(steps);
            }
        }
    }
    for c in standalone_checks {
        cx.add_check(c);
    }
    // Several chaos objects applied together start together.
    if chaos_docs > 1 {
        let longest = cx.t.length;
        for st in &mut cx.t.method {
            st["background"] = json!(true);
        }
        cx.t.method
            .push(json!({"name": "wait for the faults", "pause": Duration(longest).to_string()}));
    }
    if cx.t.method.is_empty() && cx.problems.is_empty() {
        cx.err("", "no chaos to run: the manifest has no NetworkChaos, StressChaos, PodChaos, IOChaos or DNSChaos");
    }
    cx.t.title = match cx.t.objects.as_slice() {
        [one] => format!("Chaos Mesh {one}"),
        many => format!("Chaos Mesh: {}", many.join(", ")),
    };
    if cx.problems.is_empty() {
        Ok(cx.t)
    } else {
        Err(cx.problems)
    }
}

impl Translation {
    /// A faultline experiment (as JSON) running the translated manifest.
    pub fn experiment(&self, file: &str) -> Value {
        let mut probes = self.probes.clone();
        let hypothesis = if probes.is_empty() {
            "The selected containers keep running, and every fault is in effect for its whole duration"
        } else {
            "The status checks pass before, during and after the faults, and every fault is in effect for its whole duration"
        };
        if probes.is_empty() {
            // Chaos Mesh judges nothing; faultline needs a steady state: the
            // selected containers are running (through the docker CLI).
            let mut run = vec![
                "docker".to_string(),
                "ps".into(),
                "--quiet".into(),
                "--filter".into(),
                "status=running".into(),
            ];
            for t in self.targets.iter().take(1) {
                if let Some(c) = t.get("container").and_then(s) {
                    run.push("--filter".into());
                    run.push(format!("name=^/?{c}$"));
                }
                if let Some(l) = t.get("labels").and_then(Value::as_object) {
                    for (k, v) in l {
                        run.push("--filter".into());
                        run.push(format!("label={k}={}", v.as_str().unwrap_or_default()));
                    }
                }
            }
            probes.push(json!({
                "name": "targets running",
                "command": {"run": run},
                "expect": {"stdout_matches": "\\S"},
                "before": {"samples": 1},
            }));
        }
        let mut exp = json!({
            "title": self.title,
            "description": format!("Translated from the Chaos Mesh manifest {file} ({}). See docs/chaos-mesh.md.", self.objects.join(", ")),
            "hypothesis": hypothesis,
            "tags": ["chaos-mesh"],
            "limits": {"max_duration": format!("{}s", self.length.as_secs() * 2 + 300)},
            "steady_state": {"interval": format!("{}s", self.interval.unwrap_or(1)), "probes": probes},
            "method": self.method,
        });
        if !self.abort.is_empty() {
            exp["abort"] = json!(self.abort);
        }
        if let Some(sch) = &self.schedule {
            exp["schedule"] = sch.clone();
        }
        exp
    }
}
