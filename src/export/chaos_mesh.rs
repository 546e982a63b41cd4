//! `faultline export --to chaos-mesh`: the Kubernetes manifests that run the
//! same experiment on Chaos Mesh. One `Workflow` (or a `Schedule` holding it
//! when the experiment has a schedule window): its http probes become
//! `StatusCheck` tasks before, during (aborting the workflow when the
//! experiment has abort conditions on them) and after the method, and each
//! fault becomes a chaos task. Container, label and Compose targets become
//! pod selectors; host targets (pids, process names, interfaces) become
//! `PhysicalMachineChaos` run by chaosd. Everything Chaos Mesh cannot express
//! is returned in [`Export::dropped`] with the reason, and written into the
//! output as comments and an annotation. docs/chaos-mesh.md has the mapping.

use super::Dropped;
use crate::experiment::model::{Experiment, Fault, HttpProbe, Probe, Step};
use crate::fault::corrupt::CorruptMode;
use crate::fault::network::{Direction, DropAction, Protocol, TrafficFilter};
use crate::fault::target::{ProcessTarget, TargetMode};
use crate::units::{Duration, Percent};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

pub const API_VERSION: &str = "chaos-mesh.org/v1alpha1";
/// The label a Compose project sets on its containers; a Kubernetes namespace
/// stands for it (and back, when a manifest is run locally).
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";
/// The label a Compose service sets on its containers.
pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";
/// The port chaosd listens on by default.
pub const CHAOSD_PORT: u16 = 31767;

#[derive(Clone, Debug)]
pub struct Options {
    /// The namespace the manifests are created in (`metadata.namespace`), and
    /// the one container names are looked up in.
    pub namespace: String,
    /// chaosd addresses for `PhysicalMachineChaos` (default: this host's name
    /// on chaosd's port).
    pub chaosd_addresses: Vec<String>,
    /// Where the experiment came from, for an annotation.
    pub source: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: "default".into(),
            chaosd_addresses: Vec::new(),
            source: String::new(),
        }
    }
}

/// The manifests, and what could not be expressed.
#[derive(Clone, Debug, Default)]
pub struct Export {
    pub documents: Vec<Value>,
    pub dropped: Vec<Dropped>,
    /// What is expressed, but differs (printed like the drops, never fatal).
    pub differences: Vec<String>,
}

/// Where a fault's selector points.
enum Place {
    /// Pods (containers locally): a Chaos Mesh selector, mode and value.
    Pods {
        selector: Value,
        mode: &'static str,
        value: Option<String>,
    },
    /// The host itself: chaosd through `PhysicalMachineChaos`.
    Host,
}

struct Builder<'a> {
    opts: &'a Options,
    templates: Vec<Value>,
    names: BTreeSet<String>,
    dropped: Vec<Dropped>,
    differences: Vec<String>,
    /// Setup entry name -> its program's file name (a chaosd process name).
    setups: std::collections::BTreeMap<String, String>,
}

/// Lowercase letters, digits and `-`, at most `max` long: a Kubernetes name.
pub fn k8s_name(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.truncate(max);
    let out = out.trim_matches('-').to_string();
    if out.is_empty() {
        "experiment".into()
    } else {
        out
    }
}

/// A Go duration Chaos Mesh accepts (`30s`, `1500ms`, `5m`).
fn go_duration(d: Duration) -> String {
    d.to_string()
}

/// Why a pod's incoming traffic cannot be impaired as faultline does it.
const INGRESS_WHY: &str = "Chaos Mesh impairs a pod's incoming traffic (`from`, `both`) only towards a `target` selection of pods, not from everywhere; only `egress` is exported";

/// A bandwidth as Chaos Mesh's bandwidth action takes it: a whole number
/// with `bps`, `kbps` or `mbps` (bytes per second, as tc reads them).
fn bytes_rate(bits_per_sec: u64) -> String {
    let bytes = (bits_per_sec / 8).max(1);
    if bytes.is_multiple_of(1_000_000) {
        format!("{}mbps", bytes / 1_000_000)
    } else if bytes.is_multiple_of(1000) {
        format!("{}kbps", bytes / 1000)
    } else {
        format!("{bytes}bps")
    }
}

/// Whole seconds, at least 1 (StatusCheck intervals and timeouts).
fn whole_secs(d: Duration) -> u64 {
    (d.std().as_secs_f64().ceil() as u64).max(1)
}

/// A percentage as Chaos Mesh's netem strings want it: `50`, `12.5`.
fn pct(p: Percent) -> String {
    let s = format!("{}", p.0);
    s.trim_end_matches(".0").to_string()
}

impl<'a> Builder<'a> {
    fn drop(&mut self, what: impl Into<String>, why: impl Into<String>) {
        self.dropped.push(Dropped {
            what: what.into(),
            why: why.into(),
        });
    }
    fn differs(&mut self, what: &str, how: impl Into<String>) {
        self.differences.push(format!("{what}: {}", how.into()));
    }
    fn name(&mut self, base: &str) -> String {
        let base = k8s_name(base, 50);
        let mut n = base.clone();
        let mut i = 2;
        while self.names.contains(&n) {
            n = format!("{base}-{i}");
            i += 1;
        }
        self.names.insert(n.clone());
        n
    }
    fn add(&mut self, t: Value) -> String {
        let n = t["name"].as_str().unwrap_or_default().to_string();
        self.templates.push(t);
        n
    }
    fn group(&mut self, base: &str, kind: &str, children: Vec<String>) -> String {
        let name = self.name(base);
        self.add(json!({"name": name, "templateType": kind, "children": children}))
    }
    fn addresses(&self) -> Vec<String> {
        if !self.opts.chaosd_addresses.is_empty() {
            return self.opts.chaosd_addresses.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            })
            .unwrap_or_else(|| "localhost".into());
        vec![format!("http://{host}:{CHAOSD_PORT}")]
    }

    /// The container, label or Compose selectors of a spec (serialized), as
    /// a Chaos Mesh selector.
    fn selector_of(&mut self, v: &Value, what: &str) -> Option<Value> {
        let mut labels = Map::new();
        let mut namespaces: Vec<String> = Vec::new();
        let mut pods = None;
        if let Some(c) = v.get("container").and_then(Value::as_str) {
            pods = Some(json!({ self.opts.namespace.clone(): [c] }));
            self.differs(
                what,
                format!(
                    "container `{c}` is selected as pod `{c}` in namespace `{}`",
                    self.opts.namespace
                ),
            );
        }
        if let Some(l) = v.get("labels").and_then(Value::as_object) {
            for (k, val) in l {
                if k == COMPOSE_PROJECT_LABEL {
                    if let Some(s) = val.as_str() {
                        namespaces.push(s.to_string());
                    }
                } else {
                    labels.insert(k.clone(), val.clone());
                }
            }
        }
        if let Some(c) = v.get("compose").and_then(Value::as_object) {
            if let Some(p) = c.get("project").and_then(Value::as_str) {
                namespaces.push(p.to_string());
            }
            if let Some(s) = c.get("service").and_then(Value::as_str) {
                labels.insert(COMPOSE_SERVICE_LABEL.into(), json!(s));
            }
        }
        if pods.is_none() && labels.is_empty() && namespaces.is_empty() {
            return None;
        }
        let mut sel = Map::new();
        if let Some(p) = pods {
            sel.insert("pods".into(), p);
        }
        if !labels.is_empty() {
            sel.insert("labelSelectors".into(), Value::Object(labels));
        }
        if !namespaces.is_empty() {
            sel.insert("namespaces".into(), json!(namespaces));
        }
        Some(Value::Object(sel))
    }

    fn place_of_target(&mut self, t: &ProcessTarget, what: &str) -> Place {
        let v = serde_json::to_value(t).unwrap_or(Value::Null);
        match self.selector_of(&v, what) {
            Some(selector) => {
                let (mode, value) = match t.mode {
                    TargetMode::All => ("all", None),
                    TargetMode::One => ("one", None),
                    TargetMode::Count => ("fixed", Some(t.count.unwrap_or(1).to_string())),
                    TargetMode::Percent => (
                        "fixed-percent",
                        Some(format!(
                            "{}",
                            t.percent.map(|p| p.0.floor() as u64).unwrap_or(100).max(1)
                        )),
                    ),
                };
                if t.seed.is_some() {
                    self.differs(what, "`seed` is not exported: Chaos Mesh picks pods itself");
                }
                if t.max_targets.is_some() {
                    self.differs(
                        what,
                        "`max_targets` is not exported: Chaos Mesh has no blast-radius cap",
                    );
                }
                Place::Pods {
                    selector,
                    mode,
                    value,
                }
            }
            None => Place::Host,
        }
    }

    fn place_of_spec<S: serde::Serialize>(&mut self, spec: &S, what: &str) -> Place {
        let v = serde_json::to_value(spec).unwrap_or(Value::Null);
        match self.selector_of(&v, what) {
            Some(selector) => Place::Pods {
                selector,
                mode: "all",
                value: None,
            },
            None => Place::Host,
        }
    }

    /// A chaos task: `{name, templateType: KIND, deadline, <field>: spec}`.
    fn chaos(
        &mut self,
        base: &str,
        kind: &str,
        field: &str,
        spec: Value,
        d: Option<Duration>,
    ) -> String {
        let name = self.name(base);
        let mut t = json!({"name": name, "templateType": kind, field: spec});
        if let Some(d) = d {
            t["deadline"] = json!(go_duration(d));
        }
        self.add(t)
    }

    fn pod_spec(place: &Place, extra: Value) -> Value {
        let Place::Pods {
            selector,
            mode,
            value,
        } = place
        else {
            unreachable!("pod_spec is only called for pods")
        };
        let mut spec = json!({"selector": selector, "mode": mode});
        if let Some(v) = value {
            spec["value"] = json!(v);
        }
        if let (Some(m), Value::Object(e)) = (spec.as_object_mut(), extra) {
            m.extend(e);
        }
        spec
    }

    fn host_spec(&self, action: &str, extra: Value) -> Value {
        json!({
            "action": action,
            "mode": "all",
            "address": self.addresses(),
            action: extra,
        })
    }

    fn direction(d: Direction) -> &'static str {
        match d {
            Direction::Egress => "to",
            Direction::Ingress => "from",
            Direction::Both => "both",
        }
    }

    /// The parts of a traffic filter NetworkChaos can express
    /// (`externalTargets`); the rest is listed.
    fn filter(
        &mut self,
        f: Option<&TrafficFilter>,
        dir: Direction,
        what: &str,
    ) -> Option<Vec<String>> {
        let f = f?;
        if !f.ports.is_empty() || !f.source_ports.is_empty() {
            self.drop(
                format!("{what}: filter ports"),
                "NetworkChaos cannot filter by port: the manifest impairs all ports",
            );
        }
        if matches!(f.protocol, Some(p) if p != Protocol::All) {
            self.drop(
                format!("{what}: filter protocol"),
                "NetworkChaos cannot filter by protocol: the manifest impairs every protocol",
            );
        }
        let peers: Vec<String> = match dir {
            Direction::Egress => f.destination.clone(),
            Direction::Ingress => f.source.clone(),
            Direction::Both => f.destination.iter().chain(&f.source).cloned().collect(),
        };
        let other = match dir {
            Direction::Egress => &f.source,
            Direction::Ingress => &f.destination,
            Direction::Both => &f.source,
        };
        if !other.is_empty() && dir != Direction::Both {
            self.drop(
                format!(
                    "{what}: filter {}",
                    if dir == Direction::Egress {
                        "source"
                    } else {
                        "destination"
                    }
                ),
                "NetworkChaos names the other side of the traffic only (externalTargets)",
            );
        }
        (!peers.is_empty()).then_some(peers)
    }

    fn step(&mut self, i: usize, step: &Step) -> Option<String> {
        let label = step.label(i);
        let what = format!("method[{i}] ({label})");
        if let (Some(esc), Some(fault)) = (&step.escalate, &step.fault) {
            // One task per level, in order, each held for `hold`.
            let levels = match esc.level_faults(fault) {
                Ok(l) => l,
                Err(e) => {
                    self.drop(format!("{what}: escalate"), e);
                    return None;
                }
            };
            self.differs(
                &what,
                "escalate: every level runs in turn for `hold`; Chaos Mesh does not judge each level or stop at the first that breaks (a StatusCheck with abortWithStatusCheck stops the whole workflow)",
            );
            let mut kids = Vec::new();
            for (k, f) in levels.into_iter().enumerate() {
                let mut one = step.clone();
                one.escalate = None;
                one.fault = Some(f);
                one.duration = Some(esc.hold);
                one.name = Some(format!("{label} level {}", k + 1));
                kids.extend(self.step(i, &one));
            }
            if kids.is_empty() {
                return None;
            }
            return Some(self.group(&format!("{}-{label}-levels", i + 1), "Serial", kids));
        }
        if let Some(p) = step.pause {
            let name = self.name(&format!("pause-{i}"));
            return Some(self.add(
                json!({"name": name, "templateType": "Suspend", "deadline": go_duration(p)}),
            ));
        }
        if step.command.is_some() {
            self.drop(
                format!("{what}: command"),
                "a Workflow task runs a container image, not a command on the host; run it yourself",
            );
            return None;
        }
        if step.http.is_some() {
            self.drop(
                format!("{what}: http"),
                "a Workflow task runs a container image; an HTTP action has no equivalent",
            );
            return None;
        }
        let f = step.fault.as_ref()?;
        let d = step.duration;
        if step.min_effect.is_some() || step.max_missing.is_some() {
            self.differs(&what, "`min_effect` / `max_missing` are not exported: Chaos Mesh does not measure a fault's effect");
        }
        let what = format!("{what}: {}", f.kind_name());
        let base = format!("{}-{label}", i + 1);
        match f {
            Fault::ProcessKill(s) => {
                let place = self.place_of_target(&s.target, &what);
                if s.expect_restart_within.is_some() {
                    self.differs(
                        &what,
                        "`expect_restart_within` is not judged by Chaos Mesh; add a StatusCheck",
                    );
                }
                let sig = s.signal.number();
                let (kind, field, spec) = match &place {
                    Place::Pods { .. } => {
                        let grace = match sig {
                            9 => 0,
                            15 => {
                                self.differs(&what, "SIGTERM: pod-kill with a 30s grace period (SIGTERM, then SIGKILL)");
                                30
                            }
                            _ => {
                                self.drop(
                                    what,
                                    format!("PodChaos can only kill a pod (SIGTERM or SIGKILL); {} has no equivalent", s.signal),
                                );
                                return None;
                            }
                        };
                        (
                            "PodChaos",
                            "podChaos",
                            Self::pod_spec(
                                &place,
                                json!({"action": "pod-kill", "gracePeriod": grace}),
                            ),
                        )
                    }
                    Place::Host => {
                        let p = self.host_process(&s.target, &what)?;
                        (
                            "PhysicalMachineChaos",
                            "physicalmachineChaos",
                            self.host_spec("process", json!({"process": p, "signal": sig})),
                        )
                    }
                };
                if let Some(every) = s.every {
                    // A crash loop: the kill again and again for the step's duration.
                    let name = self.name(&base);
                    let mut sched = json!({
                        "schedule": format!("@every {}", go_duration(every)),
                        "type": kind,
                        "concurrencyPolicy": "Allow",
                        "historyLimit": 1,
                    });
                    sched[field] = spec;
                    let mut t =
                        json!({"name": name, "templateType": "Schedule", "schedule": sched});
                    if let Some(d) = d {
                        t["deadline"] = json!(go_duration(d));
                    }
                    return Some(self.add(t));
                }
                Some(self.chaos(&base, kind, field, spec, d))
            }
            Fault::ProcessPause(s) => {
                let place = self.place_of_target(&s.target, &what);
                match place {
                    Place::Pods { .. } => {
                        self.differs(
                            &what,
                            "PodChaos pod-failure: the pod's containers are replaced by a pause image for the duration (they restart); process_pause freezes the processes with their state",
                        );
                        let spec = Self::pod_spec(&place, json!({"action": "pod-failure"}));
                        Some(self.chaos(&base, "PodChaos", "podChaos", spec, d))
                    }
                    Place::Host => {
                        self.drop(what, "chaosd sends a signal once; nothing would send SIGCONT when the pause ends");
                        None
                    }
                }
            }
            Fault::Network(s) => {
                let place = self.place_of_spec(s, &what);
                let mut netem = Map::new();
                if let Some(dl) = &s.delay {
                    let mut v = json!({"latency": go_duration(dl.time)});
                    if let Some(j) = dl.jitter {
                        v["jitter"] = json!(go_duration(j));
                    }
                    if let Some(c) = dl.correlation {
                        v["correlation"] = json!(pct(c));
                    }
                    if dl.distribution.is_some() {
                        self.drop(
                            format!("{what}: delay.distribution"),
                            "NetworkChaos has no delay distribution",
                        );
                    }
                    netem.insert("delay".into(), v);
                }
                if let Some(r) = &s.reorder {
                    let mut v = json!({"reorder": pct(r.percent), "gap": r.gap.unwrap_or(5)});
                    if let Some(c) = r.correlation {
                        v["correlation"] = json!(pct(c));
                    }
                    match netem.get_mut("delay") {
                        Some(dl) => dl["reorder"] = v,
                        None => self.drop(
                            format!("{what}: reorder"),
                            "NetworkChaos reorders only together with a delay",
                        ),
                    }
                }
                if let Some(l) = &s.loss {
                    if l.gilbert_elliott.is_some() {
                        self.drop(
                            format!("{what}: loss.gilbert_elliott"),
                            "NetworkChaos has no Gilbert-Elliott loss model",
                        );
                    }
                    if let Some(p) = l.percent {
                        let mut v = json!({"loss": pct(p)});
                        if let Some(c) = l.correlation {
                            v["correlation"] = json!(pct(c));
                        }
                        netem.insert("loss".into(), v);
                    }
                }
                for (key, c) in [("duplicate", &s.duplicate), ("corrupt", &s.corrupt)] {
                    if let Some(c) = c {
                        let mut v = json!({key: pct(c.percent)});
                        if let Some(cor) = c.correlation {
                            v["correlation"] = json!(pct(cor));
                        }
                        netem.insert(key.into(), v);
                    }
                }
                if let Some(r) = s.rate {
                    netem.insert("rate".into(), json!({"rate": r.to_string()}));
                }
                if s.replace_existing_qdisc {
                    self.differs(&what, "`replace_existing_qdisc` is not exported");
                }
                match place {
                    Place::Pods { .. } => {
                        if s.direction != Direction::Egress {
                            self.drop(what, INGRESS_WHY);
                            return None;
                        }
                        let mut extra = Map::new();
                        extra.insert("action".into(), json!("netem"));
                        extra.insert("direction".into(), json!(Self::direction(s.direction)));
                        extra.insert("device".into(), json!(s.interface));
                        if let Some(t) = self.filter(s.filter.as_ref(), s.direction, &what) {
                            extra.insert("externalTargets".into(), json!(t));
                        }
                        extra.extend(netem);
                        let spec = Self::pod_spec(&place, Value::Object(extra));
                        Some(self.chaos(&base, "NetworkChaos", "networkChaos", spec, d))
                    }
                    Place::Host => self.host_netem(&base, &what, s, netem, d),
                }
            }
            Fault::PacketLoss(s) => {
                let place = self.place_of_spec(s, &what);
                let dir = s.direction.unwrap_or_default();
                match place {
                    Place::Pods { .. } => {
                        if dir != Direction::Egress {
                            self.drop(what, INGRESS_WHY);
                            return None;
                        }
                        let mut extra = json!({
                            "action": "loss",
                            "direction": Self::direction(dir),
                            "loss": {"loss": pct(s.percent)},
                        });
                        if let Some(t) = self.filter(s.filter.as_ref(), dir, &what) {
                            extra["externalTargets"] = json!(t);
                        }
                        let spec = Self::pod_spec(&place, extra);
                        Some(self.chaos(&base, "NetworkChaos", "networkChaos", spec, d))
                    }
                    Place::Host => {
                        self.drop(
                            what,
                            if s.netns.is_some() {
                                "chaosd works in the host's own network namespace and cannot enter a named one"
                            } else {
                                "chaosd's network-loss needs a device; packet_loss names none (use `network` with an interface)"
                            },
                        );
                        None
                    }
                }
            }
            Fault::Blackhole(s) | Fault::Partition(s) => {
                let place = self.place_of_spec(s, &what);
                let partition = matches!(f, Fault::Partition(_));
                let dir = s.direction.unwrap_or(if partition {
                    Direction::Both
                } else {
                    Direction::Egress
                });
                if s.action == DropAction::Reject {
                    self.differs(&what, "`action: reject`: NetworkChaos partition drops (peers see timeouts, not refusals)");
                }
                if !s.ports.is_empty() {
                    self.drop(
                        format!("{what}: ports"),
                        "NetworkChaos cannot partition by port: all ports are cut",
                    );
                }
                if matches!(s.protocol, Some(p) if p != Protocol::All) {
                    self.drop(
                        format!("{what}: protocol"),
                        "NetworkChaos cannot partition by protocol: every protocol is cut",
                    );
                }
                match place {
                    Place::Pods { .. } => {
                        let mut extra =
                            json!({"action": "partition", "direction": Self::direction(dir)});
                        if !s.peers.is_empty() {
                            extra["externalTargets"] = json!(s.peers);
                        }
                        let spec = Self::pod_spec(&place, extra);
                        Some(self.chaos(&base, "NetworkChaos", "networkChaos", spec, d))
                    }
                    Place::Host => {
                        if s.netns.is_some() {
                            self.drop(what, "chaosd works in the host's own network namespace and cannot enter a named one");
                            return None;
                        }
                        if s.peers.len() != 1 {
                            self.drop(what, "chaosd's network-partition cuts one address; give exactly one peer");
                            return None;
                        }
                        let spec = self.host_spec(
                            "network-partition",
                            json!({"ip-address": s.peers[0], "direction": Self::direction(dir)}),
                        );
                        Some(self.chaos(
                            &base,
                            "PhysicalMachineChaos",
                            "physicalmachineChaos",
                            spec,
                            d,
                        ))
                    }
                }
            }
            Fault::Dns(s) => {
                let place = self.place_of_spec(s, &what);
                match place {
                    Place::Pods { .. } => {
                        if !s.resolvers.is_empty() {
                            self.differs(&what, "`resolvers`: DNSChaos answers through Chaos Mesh's own DNS server, for every resolver");
                        }
                        if s.action == DropAction::Drop {
                            self.differs(&what, "DNSChaos `error` answers with an error at once; `drop` made lookups time out");
                        }
                        let spec = Self::pod_spec(&place, json!({"action": "error"}));
                        Some(self.chaos(&base, "DNSChaos", "dnsChaos", spec, d))
                    }
                    Place::Host => {
                        self.drop(what, "DNSChaos needs pods; chaosd's network-dns rewrites resolv.conf instead of failing lookups");
                        None
                    }
                }
            }
            Fault::Bandwidth(s) => {
                let place = self.place_of_spec(s, &what);
                let burst = s.burst.map(|b| b.bytes()).unwrap_or(32 * 1024);
                let latency = s.latency.unwrap_or(Duration::from_millis(50));
                // tbf's queue limit in bytes: what the rate drains in `latency`, plus the bucket.
                let limit =
                    (s.rate.bits_per_sec as f64 / 8.0 * latency.std().as_secs_f64()) as u64 + burst;
                let bw = json!({"rate": bytes_rate(s.rate.bits_per_sec), "limit": limit, "buffer": burst});
                match place {
                    Place::Pods { .. } => {
                        let spec = Self::pod_spec(
                            &place,
                            json!({"action": "bandwidth", "direction": "to", "device": s.interface, "bandwidth": bw}),
                        );
                        Some(self.chaos(&base, "NetworkChaos", "networkChaos", spec, d))
                    }
                    Place::Host => {
                        if s.netns.is_some() {
                            self.drop(what, "chaosd works in the host's own network namespace and cannot enter a named one");
                            return None;
                        }
                        let mut bw = bw;
                        bw["device"] = json!(s.interface);
                        let spec = self.host_spec("network-bandwidth", bw);
                        Some(self.chaos(
                            &base,
                            "PhysicalMachineChaos",
                            "physicalmachineChaos",
                            spec,
                            d,
                        ))
                    }
                }
            }
            Fault::CpuLimit(_) | Fault::MemoryLimit(_) | Fault::IoLimit(_) => {
                self.drop(
                    what,
                    "Chaos Mesh has no cgroup limit fault (StressChaos adds load, it does not lower a limit)",
                );
                None
            }
            Fault::CpuStress(s) => {
                let place = self.place_of_spec(s, &what);
                let workers = s.workers.unwrap_or_else(|| {
                    let n = std::thread::available_parallelism()
                        .map(|n| n.get() as u32)
                        .unwrap_or(1);
                    self.differs(
                        &what,
                        format!(
                            "workers: one per CPU of this host ({n}); Chaos Mesh needs a number"
                        ),
                    );
                    n
                });
                let load = s.load.map(|l| l.0.round() as u64).unwrap_or(100);
                match place {
                    Place::Pods { .. } => {
                        let spec = Self::pod_spec(
                            &place,
                            json!({"stressors": {"cpu": {"workers": workers, "load": load}}}),
                        );
                        Some(self.chaos(&base, "StressChaos", "stressChaos", spec, d))
                    }
                    Place::Host => {
                        let spec =
                            self.host_spec("stress-cpu", json!({"workers": workers, "load": load}));
                        Some(self.chaos(
                            &base,
                            "PhysicalMachineChaos",
                            "physicalmachineChaos",
                            spec,
                            d,
                        ))
                    }
                }
            }
            Fault::MemoryStress(s) => {
                let place = self.place_of_spec(s, &what);
                if s.ramp.is_some() {
                    self.differs(&what, "`ramp` is not exported: the memory is taken at once");
                }
                let size = match (s.size, s.percent) {
                    (Some(z), _) => format!("{}B", z.bytes()),
                    (None, Some(p)) => format!("{}%", p.0.round() as u64),
                    (None, None) => {
                        self.drop(what, "neither size nor percent");
                        return None;
                    }
                };
                match place {
                    Place::Pods { .. } => {
                        let spec = Self::pod_spec(
                            &place,
                            json!({"stressors": {"memory": {"workers": 1, "size": size}}}),
                        );
                        Some(self.chaos(&base, "StressChaos", "stressChaos", spec, d))
                    }
                    Place::Host => {
                        let spec = self.host_spec("stress-mem", json!({"size": size}));
                        Some(self.chaos(
                            &base,
                            "PhysicalMachineChaos",
                            "physicalmachineChaos",
                            spec,
                            d,
                        ))
                    }
                }
            }
            Fault::DiskFill(s) => {
                if s.container.is_some() {
                    self.drop(
                        what,
                        "Chaos Mesh has no disk fill inside a pod (chaosd fills a host path)",
                    );
                    return None;
                }
                let Some(size) = s.size else {
                    self.drop(
                        what,
                        "chaosd's disk-fill takes a size; `fill_to` (a level of the filesystem) has no equivalent",
                    );
                    return None;
                };
                if s.reserve.is_some() {
                    self.differs(
                        &what,
                        "`reserve` is not exported: chaosd fills the size it is given",
                    );
                }
                let spec = self.host_spec(
                    "disk-fill",
                    json!({"path": s.path, "size": format!("{}M", size.bytes().div_ceil(1024 * 1024)), "fill-by-fallocate": true}),
                );
                Some(self.chaos(
                    &base,
                    "PhysicalMachineChaos",
                    "physicalmachineChaos",
                    spec,
                    d,
                ))
            }
            Fault::FileCorrupt(s)
                if s.container.is_some()
                    && matches!(s.mode, CorruptMode::Zero | CorruptMode::Random) =>
            {
                let c = s.container.clone().unwrap_or_default();
                let place = Place::Pods {
                    selector: json!({"pods": {self.opts.namespace.clone(): [c]}}),
                    mode: "all",
                    value: None,
                };
                let (vol, file) = match s.path.rsplit_once('/') {
                    Some(("", f)) => ("/".to_string(), f.to_string()),
                    Some((d, f)) => (d.to_string(), f.to_string()),
                    None => ("/".to_string(), s.path.clone()),
                };
                self.differs(
                    &what,
                    "IOChaos `mistake`: reads through a FUSE mount of the volume are garbled while the fault lasts; the file itself stays intact (file_corrupt changes its bytes and restores them)",
                );
                let filling = if s.mode == CorruptMode::Zero {
                    "zero"
                } else {
                    "random"
                };
                let mut mistake = json!({"filling": filling, "maxOccurrences": 1});
                if let Some(l) = s.length {
                    mistake["maxLength"] = json!(l.bytes());
                }
                let spec = Self::pod_spec(
                    &place,
                    json!({"action": "mistake", "volumePath": vol, "path": file, "mistake": mistake, "percent": 100}),
                );
                Some(self.chaos(&base, "IOChaos", "ioChaos", spec, d))
            }
            Fault::SyscallError(_) => {
                self.drop(
                    what,
                    "Chaos Mesh has no per-process system call failure (IOChaos `fault` returns an errno for file operations through a FUSE mount of a pod's volume, by path, for every process; it cannot fail `connect` or a host process's calls)",
                );
                None
            }
            Fault::FileCorrupt(_) => {
                self.drop(
                    what,
                    "Chaos Mesh does not corrupt a file's bytes and restore them (IOChaos `mistake` garbles reads through a FUSE mount of a pod's volume, leaving the file intact)",
                );
                None
            }
        }
    }

    /// chaosd's `process` field: a pid or a process name.
    fn host_process(&mut self, t: &ProcessTarget, what: &str) -> Option<String> {
        if let Some(p) = t.pid {
            return Some(p.to_string());
        }
        if let Some(n) = &t.name {
            return Some(n.clone());
        }
        if let Some(s) = &t.setup {
            if let Some(prog) = self.setups.get(s).cloned() {
                self.differs(
                    what,
                    format!("target `setup: {s}`: chaosd signals every process named `{prog}`"),
                );
                return Some(prog);
            }
        }
        let sel = t.selectors().first().copied().unwrap_or("(none)");
        self.drop(
            what.to_string(),
            format!("chaosd finds a process by pid or name only; the `{sel}` selector has no equivalent"),
        );
        None
    }

    /// A host `network` fault: one PhysicalMachineChaos per impairment (chaosd
    /// has one action per kind), run in parallel.
    fn host_netem(
        &mut self,
        base: &str,
        what: &str,
        s: &crate::fault::network::NetworkSpec,
        netem: Map<String, Value>,
        d: Option<Duration>,
    ) -> Option<String> {
        if s.netns.is_some() {
            self.drop(
                what.to_string(),
                "chaosd works in the host's own network namespace and cannot enter a named one",
            );
            return None;
        }
        let mut common = json!({"device": s.interface});
        if let Some(f) = &s.filter {
            if f.destination.len() == 1 {
                common["ip-address"] = json!(f.destination[0]);
            } else if !f.destination.is_empty() {
                self.drop(
                    format!("{what}: filter destination"),
                    "chaosd filters on one address",
                );
            }
            if let Some(p) = f.protocol.filter(|p| *p != Protocol::All) {
                common["ip-protocol"] = json!(format!("{p:?}").to_ascii_lowercase());
            }
            if !f.ports.is_empty() {
                common["egress-port"] = json!(f
                    .ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(","));
            }
            if !f.source_ports.is_empty() {
                common["source-port"] = json!(f
                    .source_ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(","));
            }
            if !f.source.is_empty() {
                self.drop(
                    format!("{what}: filter source"),
                    "chaosd filters on the destination only",
                );
            }
        }
        let mut kids = Vec::new();
        for (key, v) in netem {
            let mut body = common.clone();
            let action = match key.as_str() {
                "delay" => {
                    body["latency"] = v["latency"].clone();
                    for k in ["jitter", "correlation"] {
                        if !v[k].is_null() {
                            body[k] = v[k].clone();
                        }
                    }
                    if !v["reorder"].is_null() {
                        self.drop(
                            format!("{what}: reorder"),
                            "chaosd's network-delay has no reordering",
                        );
                    }
                    "network-delay"
                }
                "loss" | "duplicate" | "corrupt" => {
                    body["percent"] = v[key.as_str()].clone();
                    if !v["correlation"].is_null() {
                        body["correlation"] = v["correlation"].clone();
                    }
                    match key.as_str() {
                        "loss" => "network-loss",
                        "duplicate" => "network-duplicate",
                        _ => "network-corrupt",
                    }
                }
                _ => {
                    self.drop(
                        format!("{what}: {key}"),
                        "chaosd has no netem rate (use `bandwidth`)",
                    );
                    continue;
                }
            };
            let spec = self.host_spec(action, body);
            kids.push(self.chaos(
                &format!("{base}-{key}"),
                "PhysicalMachineChaos",
                "physicalmachineChaos",
                spec,
                d,
            ));
        }
        match kids.len() {
            0 => None,
            1 => kids.pop(),
            _ => Some(self.group(base, "Parallel", kids)),
        }
    }

    /// The steps from `from` on, in order; a background step runs in
    /// parallel with everything after it.
    fn serial(&mut self, base: &str, steps: &[Step], from: usize) -> String {
        let mut kids = Vec::new();
        let mut i = from;
        while i < steps.len() {
            let t = self.step(i, &steps[i]);
            if steps[i].background && i + 1 < steps.len() {
                let rest = self.serial(&format!("{base}-after-{}", i + 1), steps, i + 1);
                let mut par = Vec::new();
                par.extend(t);
                par.push(rest);
                kids.push(self.group(&format!("{base}-with-{}", i + 1), "Parallel", par));
                break;
            }
            kids.extend(t);
            i += 1;
        }
        self.group(base, "Serial", kids)
    }

    /// The StatusCheck of an http probe, or why there is none.
    fn status_check(&mut self, p: &Probe, h: &HttpProbe, what: &str) -> Option<Value> {
        if p.group == crate::experiment::model::ProbeGroup::Control {
            self.differs(
                what,
                "`group: control`: a StatusCheck like any other; Chaos Mesh does not compare an experiment group with a control group",
            );
        }
        let method = h.method.to_ascii_uppercase();
        if method != "GET" && method != "POST" {
            self.drop(
                what.to_string(),
                format!("StatusCheck sends GET or POST only, not {method}"),
            );
            return None;
        }
        let code = match &p.expect.status {
            None => "200-299".to_string(),
            Some(s) => {
                if s.0.len() > 1 {
                    self.drop(
                        format!("{what}: expect.status"),
                        "StatusCheck accepts one code or one range; only the first is exported",
                    );
                }
                match s.0.first() {
                    Some((lo, hi)) if lo == hi => lo.to_string(),
                    Some((lo, hi)) => format!("{lo}-{hi}"),
                    None => "200-299".into(),
                }
            }
        };
        let e = &p.expect;
        for (set, field) in [
            (e.body_contains.is_some(), "body_contains"),
            (e.body_matches.is_some(), "body_matches"),
            (e.json.is_some(), "json"),
            (e.jsonpath.is_some(), "jsonpath"),
            (e.tolerance.is_some(), "tolerance"),
        ] {
            if set {
                self.drop(
                    format!("{what}: expect.{field}"),
                    "StatusCheck judges the status code only",
                );
            }
        }
        if h.insecure {
            self.drop(
                format!("{what}: insecure"),
                "StatusCheck has no switch for untrusted certificates",
            );
        }
        let mut timeout = whole_secs(p.timeout);
        if let Some(l) = e.latency_below {
            timeout = timeout.min(whole_secs(l));
            self.differs(
                what,
                format!("latency_below {l}: the request's timeout ({timeout}s, whole seconds)"),
            );
        }
        let url = match &h.container {
            Some(c) if h.url.is_empty() => {
                let u = format!(
                    "http://{c}:{}{}",
                    h.port.unwrap_or(80),
                    h.path.as_deref().unwrap_or("/")
                );
                self.differs(
                    what,
                    format!("container `{c}` is requested as the Kubernetes Service `{c}` ({u})"),
                );
                u
            }
            _ => h.url.clone(),
        };
        let mut http = json!({"url": url, "method": method, "criteria": {"statusCode": code}});
        if !h.headers.is_empty() {
            let hs: Map<String, Value> = h
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), json!([v])))
                .collect();
            http["headers"] = Value::Object(hs);
        }
        if let Some(b) = &h.body {
            http["body"] = json!(b);
        }
        Some(json!({"type": "HTTP", "http": http, "timeoutSeconds": timeout}))
    }
}

/// How long the method runs: non-background steps one after another,
/// background ones from where they start.
fn method_length(steps: &[Step]) -> Duration {
    let mut t = std::time::Duration::ZERO;
    let mut end = t;
    for s in steps {
        let d = s.duration.or(s.pause).map(|d| d.std()).unwrap_or_default();
        if s.background {
            end = end.max(t + d);
        } else {
            t += d;
        }
    }
    Duration(t.max(end))
}

/// The manifests for an experiment.
pub fn export(exp: &Experiment, opts: &Options) -> Export {
    let mut b = Builder {
        opts,
        templates: Vec::new(),
        names: BTreeSet::new(),
        dropped: Vec::new(),
        differences: Vec::new(),
        setups: exp
            .setup
            .iter()
            .filter_map(|s| {
                let prog = s.start.first()?;
                let base = std::path::Path::new(prog).file_name()?.to_str()?;
                // The kernel's process name is at most 15 characters.
                Some((s.name.clone(), base.chars().take(15).collect()))
            })
            .collect(),
    };
    b.names.insert("entry".into());
    for (i, s) in exp.setup.iter().enumerate() {
        b.drop(
            format!("setup[{i}] ({})", s.name),
            "Chaos Mesh starts nothing: deploy the system under test yourself",
        );
    }
    let interval = exp.steady_state.interval;
    let mut before = Vec::new();
    let mut during = Vec::new();
    let mut after = Vec::new();
    let length = method_length(&exp.method);
    for (i, p) in exp.steady_state.probes.iter().enumerate() {
        let what = format!("steady_state.probes[{i}] ({})", p.name);
        let Some(h) = &p.http else {
            let kind = p.kinds().first().map(|k| k.name()).unwrap_or("?");
            b.drop(
                what,
                format!("StatusCheck does HTTP only; a {kind} probe has no equivalent"),
            );
            continue;
        };
        let Some(check) = b.status_check(p, h, &what) else {
            continue;
        };
        let every = whole_secs(interval);
        if p.before.p50_below.is_some()
            || p.before.p95_below.is_some()
            || p.before.p99_below.is_some()
        {
            b.drop(
                format!("{what}: before percentiles"),
                "StatusCheck has no latency percentiles",
            );
        }
        // Before: `samples` successes in a row, none failing.
        let mut c = check.clone();
        c["mode"] = json!("Synchronous");
        c["intervalSeconds"] = json!(every);
        c["successThreshold"] = json!(p.before.samples.max(1));
        c["failureThreshold"] = json!(1);
        let name = b.name(&format!("before-{}", p.name));
        let deadline = Duration(interval.std() * (p.before.samples.max(1) + 1) + p.timeout.std());
        // A failed check before the method stops the workflow: nothing is injected.
        before.push(b.add(json!({"name": name, "templateType": "StatusCheck", "deadline": go_duration(deadline), "abortWithStatusCheck": true, "statusCheck": c})));
        // During: continuously; abort conditions stop the workflow.
        let aborts: Vec<_> = exp.abort.iter().filter(|a| a.probe == p.name).collect();
        if p.during.is_some() || !aborts.is_empty() {
            if let Some(dr) = &p.during {
                if dr.min_success.is_some()
                    || dr.max_outage.is_some()
                    || dr.p50_below.is_some()
                    || dr.p95_below.is_some()
                    || dr.p99_below.is_some()
                {
                    b.drop(
                        format!("{what}: during"),
                        "a StatusCheck records results during the method but judges only consecutive failures (abort conditions)",
                    );
                }
            }
            let mut threshold = None;
            for a in &aborts {
                if let Some(n) = a.consecutive_failures {
                    threshold = Some(threshold.map_or(n, |t: u32| t.min(n)));
                } else if let Some(r) = a.failure_ratio {
                    let n = ((r.fraction() * a.window() as f64).ceil() as u32).max(1);
                    b.differs(
                        &format!("abort ({})", a.describe()),
                        format!("as {n} consecutive failures"),
                    );
                    threshold = Some(threshold.map_or(n, |t: u32| t.min(n)));
                } else {
                    b.drop(
                        format!("abort ({})", a.describe()),
                        "StatusCheck has no latency percentile",
                    );
                }
            }
            if !length.is_zero() {
                let mut c = check.clone();
                c["mode"] = json!("Continuous");
                c["intervalSeconds"] = json!(every);
                c["successThreshold"] = json!(1);
                c["failureThreshold"] = json!(threshold.unwrap_or(u32::MAX >> 1));
                let name = b.name(&format!("during-{}", p.name));
                let mut t = json!({"name": name, "templateType": "StatusCheck", "deadline": go_duration(length), "statusCheck": c});
                if threshold.is_some() {
                    t["abortWithStatusCheck"] = json!(true);
                }
                during.push(b.add(t));
            }
        }
        // After: `successes` in a row within `within`.
        let mut c = check;
        c["mode"] = json!("Synchronous");
        c["intervalSeconds"] = json!(every);
        c["successThreshold"] = json!(p.after.successes.max(1));
        c["failureThreshold"] = json!((whole_secs(p.after.within) / every).max(1) + 1);
        let name = b.name(&format!("after-{}", p.name));
        after.push(b.add(json!({"name": name, "templateType": "StatusCheck", "deadline": go_duration(p.after.within), "statusCheck": c})));
    }
    for a in &exp.abort {
        let http = exp
            .steady_state
            .probes
            .iter()
            .any(|p| p.name == a.probe && p.http.is_some());
        if !http {
            b.drop(
                format!("abort ({})", a.describe()),
                "only http probes become StatusChecks",
            );
        }
    }
    let method = b.serial("method", &exp.method, 0);
    let mut entry_kids = before;
    if during.is_empty() {
        entry_kids.push(method);
    } else {
        let mut par = during;
        par.push(method);
        entry_kids.push(b.group("method-and-checks", "Parallel", par));
    }
    entry_kids.extend(after);
    for (i, r) in exp.rollbacks.iter().enumerate() {
        b.drop(
            format!(
                "rollbacks[{i}] ({})",
                r.name.clone().unwrap_or_else(|| r.run.join(" "))
            ),
            "Chaos Mesh recovers its own faults; a command rollback has no equivalent",
        );
    }
    for (i, n) in exp.notify.iter().enumerate() {
        let _ = n;
        b.drop(
            format!("notify[{i}]"),
            "Chaos Mesh records Kubernetes events instead of calling webhooks",
        );
    }
    let mut templates = vec![json!({
        "name": "entry",
        "templateType": "Serial",
        "deadline": go_duration(exp.limits.max_duration),
        "children": entry_kids,
    })];
    templates.append(&mut b.templates);
    let workflow = json!({"entry": "entry", "templates": templates});

    let name = k8s_name(&exp.title, 63);
    let mut annotations = Map::new();
    if !opts.source.is_empty() {
        annotations.insert("faultline.dev/source".into(), json!(opts.source));
    }
    annotations.insert("faultline.dev/hypothesis".into(), json!(exp.hypothesis));
    if !b.dropped.is_empty() {
        let lines: Vec<String> = b.dropped.iter().map(|d| d.to_string()).collect();
        annotations.insert("faultline.dev/not-exported".into(), json!(lines.join("\n")));
    }
    if !b.differences.is_empty() {
        annotations.insert(
            "faultline.dev/differences".into(),
            json!(b.differences.join("\n")),
        );
    }
    let metadata = json!({"name": name, "namespace": opts.namespace, "annotations": annotations});
    let doc = match exp.schedule.as_ref().and_then(|s| s.opening_cron()) {
        Some((cron, length, zone)) => {
            b.differences.push(format!(
                "schedule: the Schedule starts the workflow when each window opens ({}); Chaos Mesh does not close the window, the workflow's deadline ({}) bounds each run",
                cron,
                exp.limits.max_duration
            ));
            let _ = length;
            let cron = match zone {
                Some(z) => format!("CRON_TZ={z} {cron}"),
                None => cron,
            };
            json!({
                "apiVersion": API_VERSION,
                "kind": "Schedule",
                "metadata": metadata,
                "spec": {
                    "schedule": cron,
                    "type": "Workflow",
                    "concurrencyPolicy": "Forbid",
                    "historyLimit": 5,
                    "workflow": workflow,
                },
            })
        }
        None => json!({
            "apiVersion": API_VERSION,
            "kind": "Workflow",
            "metadata": metadata,
            "spec": workflow,
        }),
    };
    Export {
        documents: vec![doc],
        dropped: b.dropped,
        differences: b.differences,
    }
}

/// The manifests as YAML documents, after comment lines listing what was
/// not exported and what differs.
pub fn to_yaml(e: &Export, title: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# Chaos Mesh manifests written by `faultline export --to chaos-mesh`\n# from: {}\n",
        one_line(title)
    ));
    if !e.dropped.is_empty() {
        out.push_str("#\n# Not exported (no Chaos Mesh equivalent):\n");
        for d in &e.dropped {
            out.push_str(&format!("#   - {}\n", one_line(&d.to_string())));
        }
    }
    if !e.differences.is_empty() {
        out.push_str("#\n# Exported, but different:\n");
        for d in &e.differences {
            out.push_str(&format!("#   - {}\n", one_line(d)));
        }
    }
    for d in &e.documents {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(d).unwrap_or_default());
    }
    out
}

/// Text for a comment line: control characters and line breaks become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_names() {
        assert_eq!(
            k8s_name("What happens when our cache sees 50% loss", 63),
            "what-happens-when-our-cache-sees-50-loss"
        );
        assert_eq!(k8s_name("--", 63), "experiment");
        assert_eq!(k8s_name(&"a".repeat(100), 63).len(), 63);
        assert_eq!(k8s_name("ab-cd", 3), "ab");
    }

    #[test]
    fn percentages_and_durations() {
        assert_eq!(pct(Percent(50.0)), "50");
        assert_eq!(pct(Percent(12.5)), "12.5");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(whole_secs(Duration::from_millis(1500)), 2);
        assert_eq!(whole_secs(Duration::from_millis(1)), 1);
        assert_eq!(bytes_rate(1_000_000), "125kbps");
        assert_eq!(bytes_rate(80_000_000), "10mbps");
        assert_eq!(bytes_rate(12), "1bps");
    }

    #[test]
    fn window_opens_as_cron() {
        let s: crate::experiment::schedule::Schedule =
            serde_yaml::from_str("window: Mon-Fri 09:30-17:00\ntimezone: UTC").unwrap();
        let (cron, len, zone) = s.opening_cron().unwrap();
        assert_eq!(cron, "30 9 * * 1,2,3,4,5");
        assert_eq!(len, chrono::Duration::minutes(450));
        assert_eq!(zone.as_deref(), Some("UTC"));
        let s: crate::experiment::schedule::Schedule =
            serde_yaml::from_str("window: Sun 22:00-02:00").unwrap();
        assert_eq!(s.opening_cron().unwrap().0, "0 22 * * 0");
        let s: crate::experiment::schedule::Schedule =
            serde_yaml::from_str("cron: 0 14 * * 1-5\nduration: 1h").unwrap();
        assert_eq!(s.opening_cron().unwrap().0, "0 14 * * 1-5");
    }
}
