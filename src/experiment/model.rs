//! The experiment file, as data. Every struct rejects unknown fields so a typo
//! is an error with a "did you mean", never a silently ignored setting.
//!
//! Fault specs live next to their implementation in `crate::fault::*`; this
//! file holds everything else and the enum that names every fault kind.

use crate::fault::cgroup::{CpuLimitSpec, IoLimitSpec, MemoryLimitSpec};
use crate::fault::corrupt::FileCorruptSpec;
use crate::fault::disk::DiskFillSpec;
use crate::fault::network::{BandwidthSpec, BlackholeSpec, DnsSpec, NetworkSpec, PacketLossSpec};
use crate::fault::process::{ProcessKillSpec, ProcessPauseSpec};
use crate::fault::stress::{CpuStressSpec, MemoryStressSpec};
use crate::fault::syscall::SyscallErrorSpec;
use crate::units::{Duration, Percent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A hypothesis-driven chaos experiment.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Short name of the experiment, shown in reports.
    pub title: String,
    /// What the experiment is about, for the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The one-sentence claim this experiment tests, e.g. "The API keeps answering
    /// within 500 ms while the cache is paused".
    pub hypothesis: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Variables used as `${name}` in values, with their defaults; set them
    /// with `--var NAME=VALUE` or `--var-file FILE`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, crate::experiment::vars::VarDecl>,
    #[serde(default)]
    pub limits: Limits,
    /// Helper processes started first (in order) and stopped last (in reverse).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setup: Vec<SetupProcess>,
    pub steady_state: SteadyState,
    /// Ordered steps: faults, pauses and command actions.
    pub method: Vec<Step>,
    /// Conditions that stop the method and roll back at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub abort: Vec<AbortCondition>,
    /// Your own actions, run after the automatic undo of every fault.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollbacks: Vec<CommandAction>,
    /// When the experiment may run: `run` refuses outside this window
    /// (exit 69) unless `--outside-window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::experiment::schedule::Schedule>,
    /// Webhooks told when the run is about to start, a fault is injected,
    /// the run is aborted and when it finishes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<crate::runner::notify::NotifySpec>,
    /// An Alertmanager silence for the run's window (so on-call is not
    /// paged by the experiment), expired at rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence: Option<crate::runner::silence::SilenceSpec>,
}

/// Hard limits of a run.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Hard cap on the whole run. When it passes, faults are rolled back, by the
    /// watchdog if the runner itself is stuck. Default 10m.
    #[serde(default = "default_max_duration")]
    pub max_duration: Duration,
    /// Blast-radius guards that apply to every fault of the experiment.
    #[serde(default)]
    pub blast_radius: BlastRadius,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_duration: default_max_duration(),
            blast_radius: BlastRadius::default(),
        }
    }
}

fn default_max_duration() -> Duration {
    Duration::from_secs(600)
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlastRadius {
    /// No single fault may hit more processes than this. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_targets: Option<u32>,
    /// Let `name`, `cmdline`, `children_of`, `cgroup` and `systemd_unit`
    /// targets match processes of users other than the one running faultline.
    /// Default `false`: such a match fails preflight.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub other_users: bool,
}

/// A process the experiment starts before anything else, e.g. the system under test.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupProcess {
    /// Name other parts of the experiment use to refer to it (`target: {setup: NAME}`).
    pub name: String,
    /// Program and arguments (no shell; write `[sh, -c, "..."]` for one).
    pub start: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// How to know it is up. Without it, the process only has to stay alive for 200ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<ReadyCheck>,
    /// Signal sent at teardown (default SIGTERM), then SIGKILL after `stop_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<crate::units::Signal>,
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: Duration,
    /// The process is part of the hypothesis: if it exits before teardown,
    /// the run is DEVIATED. Otherwise its exit makes the run INCONCLUSIVE
    /// (the experiment no longer tests what it said).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub must_stay_up: bool,
}

fn default_stop_timeout() -> Duration {
    Duration::from_secs(5)
}

/// A readiness check: one probe kind, retried until it passes or `timeout` ends.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadyCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
    /// Give up (and fail preflight with exit 69) after this long. Default 10s.
    #[serde(default = "default_ready_timeout")]
    pub timeout: Duration,
}

fn default_ready_timeout() -> Duration {
    Duration::from_secs(10)
}

/// How the steady state is measured.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SteadyState {
    /// Sampling period of every probe, in every phase. Default 1s.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    pub probes: Vec<Probe>,
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}

/// One measurement of the system: exactly one probe kind plus what a good sample is.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusProbe>,
    /// How long one sample may take before it counts as an error. Default 5s.
    #[serde(default = "default_probe_timeout")]
    pub timeout: Duration,
    /// What a successful sample looks like (the per-sample tolerance).
    #[serde(default)]
    pub expect: Expect,
    #[serde(default)]
    pub before: BeforeRequirement,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub during: Option<DuringRequirement>,
    #[serde(default)]
    pub after: AfterRequirement,
    /// `experiment` (default) or `control`: control probes watch an
    /// untouched replica; the report compares the groups, and a control
    /// probe's requirements do not decide the verdict on their own.
    #[serde(default, skip_serializing_if = "ProbeGroup::is_experiment")]
    pub group: ProbeGroup,
}

/// Which group a probe belongs to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProbeGroup {
    /// Watches what the faults hit (default).
    #[default]
    Experiment,
    /// Watches an untouched replica, for comparison.
    Control,
}

impl ProbeGroup {
    pub fn is_experiment(&self) -> bool {
        *self == ProbeGroup::Experiment
    }
    pub fn name(self) -> &'static str {
        match self {
            ProbeGroup::Experiment => "experiment",
            ProbeGroup::Control => "control",
        }
    }
}

fn default_probe_timeout() -> Duration {
    Duration::from_secs(5)
}

/// The probe kinds, for messages and dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Http,
    Tcp,
    Command,
    Process,
    Prometheus,
}

impl ProbeKind {
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Http => "http",
            ProbeKind::Tcp => "tcp",
            ProbeKind::Command => "command",
            ProbeKind::Process => "process",
            ProbeKind::Prometheus => "prometheus",
        }
    }
}

impl Probe {
    /// The kinds this probe sets (validation requires exactly one).
    pub fn kinds(&self) -> Vec<ProbeKind> {
        let mut k = Vec::new();
        if self.http.is_some() {
            k.push(ProbeKind::Http);
        }
        if self.tcp.is_some() {
            k.push(ProbeKind::Tcp);
        }
        if self.command.is_some() {
            k.push(ProbeKind::Command);
        }
        if self.process.is_some() {
            k.push(ProbeKind::Process);
        }
        if self.prometheus.is_some() {
            k.push(ProbeKind::Prometheus);
        }
        k
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    /// The URL to request; leave it out when `container` is given.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// Request `http://<the container's address>:<port><path>` instead of
    /// `url`; the address is looked up through Docker when the run starts
    /// and again before every sample (a recreated container gets a new one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// With `container`: the port inside the container (default 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// With `container`: the path and query (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// GET (default), POST, PUT, DELETE, HEAD, PATCH, OPTIONS.
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Accept invalid TLS certificates (self-signed test servers).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// Chaos Toolkit's `timeout: [connect, read]`, kept apart as requests
    /// does; set by its translation only, not part of the file format.
    #[serde(skip)]
    #[schemars(skip)]
    pub split_timeout: Option<SplitTimeout>,
}

/// A connect timeout and a read timeout (the longest wait for the server's
/// next bytes), each on its own, as Python requests applies `(connect, read)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SplitTimeout {
    pub connect: Duration,
    pub read: Duration,
}

fn default_method() -> String {
    "GET".into()
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpProbe {
    /// The host to connect to; leave it out when `container` is given.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    pub port: u16,
    /// Connect to this container's address (looked up through Docker)
    /// instead of `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandProbe {
    /// Program and arguments; no shell unless you write `[sh, -c, "..."]`.
    pub run: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// Finds processes by one of `name`, `pidfile` or `cmdline`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessProbe {
    /// Exact process name (as in /proc/PID/comm, 15 characters at most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pidfile: Option<String>,
    /// Regular expression matched against the full command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusProbe {
    /// Base URL of the Prometheus server, e.g. `http://127.0.0.1:9090`.
    pub url: String,
    /// PromQL instant query; it must return exactly one number.
    pub query: String,
}

/// What a successful sample looks like. Fields that do not apply to the
/// probe's kind are rejected by validation.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// http: accepted status codes: `200`, `[200, 204]`, `"2xx"`, `"200-299"`.
    /// Default: any 2xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusSet>,
    /// http, tcp, command, prometheus: the sample fails when it takes longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_below: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// http: regular expression the body must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_matches: Option<String>,
    /// http: a JSON pointer in the body and the value it must equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<JsonExpect>,
    /// command: expected exit code (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_matches: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_matches: Option<String>,
    /// process: `true` (default) expects at least one match, `false` expects none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,
    /// process: number of matching processes, inclusive bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<Bounds>,
    /// prometheus: the query's value; command: stdout read as one number
    /// (surrounding white space ignored). Inclusive bounds, e.g. `{min: 0.5}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Bounds>,
    /// http, command: a JSONPath (RFC 9535) query on the body (http) or on
    /// stdout (command), read as JSON; it must find at least one value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonpath: Option<JsonPathExpect>,
    /// http, command: a Chaos Toolkit tolerance, with Chaos Toolkit's meaning,
    /// judged on the probe's result (http: `{status, headers, body}`, command:
    /// `{status, stdout, stderr}`). See docs/chaostoolkit.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<serde_json::Value>,
    /// command, with `tolerance`: the command prints its result as JSON on
    /// stdout (a Chaos Toolkit `python` provider); the tolerance judges that.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub result_on_stdout: bool,
}

/// A JSONPath query and what it must find.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonPathExpect {
    /// e.g. `$.checks[?@.ok == false]` or `$.status`.
    pub path: String,
    /// The values found, in order, must equal this list (a single value: the
    /// query must find exactly that one value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    /// The query must find exactly this many values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// Every value found must be a number (or a string holding one) within
    /// these inclusive bounds, e.g. `{max: 10}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Bounds>,
}

/// Inclusive numeric bounds; either may be left out.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

impl Bounds {
    pub fn contains(&self, v: f64) -> bool {
        self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }

    /// Judges a number written as text (`" 42\n"`, `1e3`): `Ok(value)` within
    /// the bounds, else why not, in words.
    pub fn judge_text(&self, text: &str) -> Result<f64, String> {
        let t = text.trim();
        let v: f64 = t.parse().map_err(|_| {
            format!(
                "{} is not a number",
                crate::sys::text::escape_text(&t.chars().take(60).collect::<String>())
            )
        })?;
        if v.is_nan() {
            return Err("the value is NaN".into());
        }
        if self.contains(v) {
            Ok(v)
        } else {
            Err(format!("value {v}, expected {}", self.describe()))
        }
    }

    /// Judges the values a JSONPath query found: each must be a number (or
    /// a string holding one) within the bounds. `Err` says which is not.
    pub fn judge_found(&self, found: &[serde_json::Value], source: &str) -> Result<(), String> {
        for v in found {
            let text = match v {
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::String(s) => s.clone(),
                other => {
                    let mut t = other.to_string();
                    t.truncate(60);
                    return Err(format!(
                        "{source} found {}, not a number",
                        crate::sys::text::escape_text(&t)
                    ));
                }
            };
            self.judge_text(&text)
                .map_err(|why| format!("{source}: {why}"))?;
        }
        Ok(())
    }

    /// `between 1 and 5`, `at least 0.5`, `at most 10`.
    pub fn describe(&self) -> String {
        crate::probe::process::bounds_text(self)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonExpect {
    /// RFC 6901 JSON pointer, e.g. `/status` or `/checks/0/ok`.
    pub pointer: String,
    /// The value found there must equal this (any JSON/YAML value).
    pub equals: serde_json::Value,
}

/// HTTP status codes a sample accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusSet(pub Vec<(u16, u16)>);

impl StatusSet {
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| code >= lo && code <= hi)
    }
    fn parse_one(s: &str) -> Result<(u16, u16), String> {
        let t = s.trim();
        let bad = || format!("`{s}` is not a status; write e.g. `200`, `\"2xx\"` or `\"200-299\"`");
        if t.len() == 3 && t.ends_with("xx") {
            let d: u16 = t[..1].parse().map_err(|_| bad())?;
            if !(1..=5).contains(&d) {
                return Err(bad());
            }
            return Ok((d * 100, d * 100 + 99));
        }
        let (lo, hi) = match t.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<u16>().map_err(|_| bad())?,
                b.trim().parse::<u16>().map_err(|_| bad())?,
            ),
            None => {
                let v = t.parse::<u16>().map_err(|_| bad())?;
                (v, v)
            }
        };
        if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
            return Err(format!("`{s}`: status codes are between 100 and 599"));
        }
        Ok((lo, hi))
    }
}

impl std::fmt::Display for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else if a % 100 == 0 && b == a + 99 {
                    format!("{}xx", a / 100)
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        f.write_str(&parts.join(", "))
    }
}

impl StatusSet {
    /// One range as written in a file: `200`, `"2xx"` or `"200-299"`.
    fn one_value(lo: u16, hi: u16) -> serde_json::Value {
        if lo == hi {
            serde_json::Value::from(lo)
        } else {
            StatusSet(vec![(lo, hi)]).to_string().into()
        }
    }
}

/// Serializes to the form the file accepts (a code, a string, or a list of
/// those), so a journal's copy of the experiment loads again.
impl Serialize for StatusSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [(lo, hi)] => Self::one_value(*lo, *hi).serialize(s),
            many => many
                .iter()
                .map(|(lo, hi)| Self::one_value(*lo, *hi))
                .collect::<Vec<_>>()
                .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for StatusSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum One {
            N(u16),
            S(String),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(One),
            Many(Vec<One>),
        }
        let items = match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "a status is a code (`200`), a class (`\"2xx\"`), a range (`\"200-299\"`) or a list of those",
            )
        })? {
            Raw::One(o) => vec![o],
            Raw::Many(v) => v,
        };
        if items.is_empty() {
            return Err(serde::de::Error::custom("the status list is empty"));
        }
        let mut out = Vec::new();
        for it in items {
            let s = match it {
                One::N(n) => n.to_string(),
                One::S(s) => s,
            };
            // `"200, 204"` is accepted as a list too.
            for part in s.split(',') {
                out.push(StatusSet::parse_one(part).map_err(serde::de::Error::custom)?);
            }
        }
        Ok(StatusSet(out))
    }
}

impl JsonSchema for StatusSet {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StatusSet".into()
    }
    fn json_schema(gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
        #[derive(JsonSchema)]
        #[allow(dead_code)]
        #[serde(untagged)]
        enum One {
            N(u16),
            S(String),
        }
        #[derive(JsonSchema)]
        #[allow(dead_code)]
        #[serde(untagged)]
        enum Raw {
            One(One),
            Many(Vec<One>),
        }
        Raw::json_schema(gen)
    }
}

/// Before injecting anything, the probe must meet this, or nothing is injected (exit 3).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BeforeRequirement {
    /// How many samples to take before the method. Default 3.
    #[serde(default = "default_before_samples")]
    pub samples: u32,
    /// Share of those samples that must succeed. Default 100%.
    #[serde(default = "full")]
    pub min_success: Percent,
    /// The median latency of the samples must stay at or under this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_below: Option<Duration>,
    /// The 95th percentile latency must stay at or under this (needs at
    /// least 20 samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_below: Option<Duration>,
    /// The 99th percentile latency must stay at or under this (needs at
    /// least 100 samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_below: Option<Duration>,
}

impl Default for BeforeRequirement {
    fn default() -> Self {
        BeforeRequirement {
            samples: default_before_samples(),
            min_success: full(),
            p50_below: None,
            p95_below: None,
            p99_below: None,
        }
    }
}

impl BeforeRequirement {
    /// The latency percentiles required, as (percentile, limit).
    pub fn latency_limits(&self) -> Vec<(u32, Duration)> {
        latency_limits(self.p50_below, self.p95_below, self.p99_below)
    }
}

fn latency_limits(
    p50: Option<Duration>,
    p95: Option<Duration>,
    p99: Option<Duration>,
) -> Vec<(u32, Duration)> {
    [(50, p50), (95, p95), (99, p99)]
        .into_iter()
        .filter_map(|(p, d)| d.map(|d| (p, d)))
        .collect()
}

/// The fewest samples a latency percentile can rest on: 10 for the median,
/// and enough that one sample lies above the percentile (20 for p95, 100
/// for p99). With fewer, the requirement is not judged (INCONCLUSIVE).
pub fn min_samples_for_percentile(p: u32) -> u32 {
    let tail = 100u32.saturating_sub(p).max(1);
    100u32.div_ceil(tail).max(10)
}

fn default_before_samples() -> u32 {
    3
}

fn full() -> Percent {
    Percent(100.0)
}

/// While the method runs. Without it, samples during the method are only reported.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DuringRequirement {
    /// Share of samples during the method that must succeed for the hypothesis to hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_success: Option<Percent>,
    /// The longest outage allowed: from the start of a failing sample to the
    /// start of the next successful one (or the end of the method).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_outage: Option<Duration>,
    /// The median latency of the samples (all that finished, failed ones
    /// too) must stay at or under this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_below: Option<Duration>,
    /// The 95th percentile latency must stay at or under this (needs at
    /// least 20 samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_below: Option<Duration>,
    /// The 99th percentile latency must stay at or under this (needs at
    /// least 100 samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_below: Option<Duration>,
    /// Relative to the control group: this probe's median latency stays
    /// within `percent` above the control's (judged with Mann-Whitney U).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_within: Option<Relative>,
    /// Relative to the control group: this probe's p95 latency stays within
    /// `percent` above the control's (judged with Mann-Whitney U).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_within: Option<Relative>,
}

/// A latency limit relative to the control group.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Relative {
    /// `control` (every control probe's samples together) or the name of
    /// one control probe.
    #[serde(default = "control_word")]
    pub of: String,
    /// How much higher than the control's it may be, e.g. `20%`.
    pub percent: Percent,
}

fn control_word() -> String {
    "control".into()
}

impl DuringRequirement {
    /// The relative limits given, as (percentile, limit).
    pub fn relative_limits(&self) -> Vec<(u32, &Relative)> {
        [
            (50, self.p50_within.as_ref()),
            (95, self.p95_within.as_ref()),
        ]
        .into_iter()
        .filter_map(|(p, r)| r.map(|r| (p, r)))
        .collect()
    }

    /// The latency percentiles required, as (percentile, limit).
    pub fn latency_limits(&self) -> Vec<(u32, Duration)> {
        latency_limits(self.p50_below, self.p95_below, self.p99_below)
    }

    /// Whether any requirement is given.
    pub fn is_empty(&self) -> bool {
        self.min_success.is_none()
            && self.max_outage.is_none()
            && self.latency_limits().is_empty()
            && self.relative_limits().is_empty()
    }
}

/// After rollback the probe must recover: `successes` good samples in a row within `within`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AfterRequirement {
    /// Recovery deadline after rollback. Default 30s.
    #[serde(default = "default_within")]
    pub within: Duration,
    /// Consecutive successful samples that count as recovered. Default 3.
    #[serde(default = "default_successes")]
    pub successes: u32,
}

impl Default for AfterRequirement {
    fn default() -> Self {
        AfterRequirement {
            within: default_within(),
            successes: default_successes(),
        }
    }
}

fn default_within() -> Duration {
    Duration::from_secs(30)
}

fn default_successes() -> u32 {
    3
}

/// One step of the method: a fault, a pause, or a command action.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Name shown in the live view and the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Inject a fault for `duration`, then roll it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// Wait, with probes sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Duration>,
    /// Run a command (an action on the system, e.g. a load generator or a deploy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandAction>,
    /// Send an HTTP request (an action, e.g. an admin endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpAction>,
    /// Run the chaos of a Chaos Mesh manifest file (NetworkChaos,
    /// StressChaos, PodChaos, IOChaos, DNSChaos, Schedule or Workflow; a
    /// path relative to this file) as this step, with this experiment's
    /// probes around it; `duration` replaces the manifest's durations. See
    /// docs/chaos-mesh.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos_mesh: Option<String>,
    /// With `fault`: how long the fault stays active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    /// Start the step and go on to the next one at once. A fault is rolled back
    /// when its duration ends or at the end of the method, whichever is first;
    /// a command or HTTP action is waited for at the end of the method.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub background: bool,
    /// With `fault`: the share of its target the fault must deliver on
    /// average while active (CPU load, memory, disk space) for the run to
    /// count; less makes the run INCONCLUSIVE. Default 80%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_effect: Option<crate::units::Percent>,
    /// With `fault`: how much of its duration the fault may be missing
    /// (removed or undone by someone else) before the run is INCONCLUSIVE.
    /// Default 5%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_missing: Option<crate::units::Percent>,
    /// With `fault`: raise one of its parameters over levels, each held for
    /// `hold` and judged on its own, stopping at the first level that breaks
    /// the hypothesis (the breaking point). Replaces `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate: Option<crate::experiment::escalate::Escalate>,
}

impl Step {
    /// The fault the step injects first: the fault as written, or its first
    /// level when it escalates.
    pub fn first_fault(&self) -> Option<Fault> {
        let f = self.fault.as_ref()?;
        match &self.escalate {
            Some(e) => Some(e.level_fault(f, 0).unwrap_or_else(|_| f.clone())),
            None => Some(f.clone()),
        }
    }

    /// How long the fault stays: `duration`, or hold x levels.
    pub fn fault_duration(&self) -> Option<Duration> {
        match &self.escalate {
            Some(e) => Some(e.total()),
            None => self.duration,
        }
    }

    pub fn label(&self, index: usize) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        if let Some(f) = &self.fault {
            return f.kind_name().to_string();
        }
        if let Some(p) = &self.pause {
            return format!("pause {p}");
        }
        if let Some(c) = &self.command {
            return c.name.clone().unwrap_or_else(|| c.run.join(" "));
        }
        if let Some(h) = &self.http {
            return h
                .name
                .clone()
                .unwrap_or_else(|| format!("{} {}", h.method, h.url));
        }
        format!("step {}", index + 1)
    }
}

/// A fault: exactly one kind. Written in YAML as a map with one key, the
/// kind (`process_pause: {target: ...}`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    ProcessKill(ProcessKillSpec),
    ProcessPause(ProcessPauseSpec),
    Network(NetworkSpec),
    Blackhole(BlackholeSpec),
    Partition(BlackholeSpec),
    Dns(DnsSpec),
    PacketLoss(PacketLossSpec),
    Bandwidth(BandwidthSpec),
    CpuLimit(CpuLimitSpec),
    MemoryLimit(MemoryLimitSpec),
    IoLimit(IoLimitSpec),
    CpuStress(CpuStressSpec),
    MemoryStress(MemoryStressSpec),
    DiskFill(DiskFillSpec),
    FileCorrupt(FileCorruptSpec),
    SyscallError(SyscallErrorSpec),
}

/// The YAML form of [`Fault`]: one optional field per kind. (serde_yaml reads
/// externally tagged enums only from `!tags`, so the map form is parsed here.)
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultFields {
    /// Send a signal to processes, once or every `every` (a crash loop).
    #[serde(default)]
    pub process_kill: Option<ProcessKillSpec>,
    /// SIGSTOP processes for the duration, SIGCONT on rollback.
    #[serde(default)]
    pub process_pause: Option<ProcessPauseSpec>,
    /// tc/netem impairment on an interface: delay, loss, corruption, rate...
    #[serde(default)]
    pub network: Option<NetworkSpec>,
    /// nftables drop or reject of matching traffic.
    #[serde(default)]
    pub blackhole: Option<BlackholeSpec>,
    /// nftables: cut traffic to and from peers, both directions.
    #[serde(default)]
    pub partition: Option<BlackholeSpec>,
    /// Make DNS fail (drop or reject port 53).
    #[serde(default)]
    pub dns: Option<DnsSpec>,
    /// Random packet loss through nftables (works without sch_netem).
    #[serde(default)]
    pub packet_loss: Option<PacketLossSpec>,
    /// Rate-limit an interface (tbf).
    #[serde(default)]
    pub bandwidth: Option<BandwidthSpec>,
    /// Limit processes to a CPU quota in a cgroup the run creates.
    #[serde(default)]
    pub cpu_limit: Option<CpuLimitSpec>,
    /// Limit processes' memory in a cgroup the run creates.
    #[serde(default)]
    pub memory_limit: Option<MemoryLimitSpec>,
    /// Limit processes' block I/O in a cgroup the run creates.
    #[serde(default)]
    pub io_limit: Option<IoLimitSpec>,
    /// Built-in CPU burners holding a load.
    #[serde(default)]
    pub cpu_stress: Option<CpuStressSpec>,
    /// Allocate and hold memory.
    #[serde(default)]
    pub memory_stress: Option<MemoryStressSpec>,
    /// Fill a filesystem to a level.
    #[serde(default)]
    pub disk_fill: Option<DiskFillSpec>,
    /// Corrupt, truncate or delete files (backed up first, restored byte-exact).
    #[serde(default)]
    pub file_corrupt: Option<FileCorruptSpec>,
    /// Make a process's system calls fail with an errno (strace --inject).
    #[serde(default)]
    pub syscall_error: Option<SyscallErrorSpec>,
}

impl TryFrom<FaultFields> for Fault {
    type Error = String;
    fn try_from(f: FaultFields) -> Result<Self, String> {
        let mut found: Vec<Fault> = Vec::new();
        macro_rules! take {
            ($($field:ident => $variant:ident),*) => {
                $( if let Some(s) = f.$field { found.push(Fault::$variant(s)); } )*
            };
        }
        take!(process_kill => ProcessKill, process_pause => ProcessPause, network => Network,
              blackhole => Blackhole, partition => Partition, dns => Dns, packet_loss => PacketLoss,
              bandwidth => Bandwidth, cpu_limit => CpuLimit, memory_limit => MemoryLimit,
              io_limit => IoLimit, cpu_stress => CpuStress, memory_stress => MemoryStress,
              disk_fill => DiskFill, file_corrupt => FileCorrupt,
              syscall_error => SyscallError);
        match found.len() {
            1 => Ok(found.pop().unwrap()),
            0 => Err(format!("the fault has no kind; give exactly one of {}", FAULT_KINDS.join(", "))),
            _ => Err(format!(
                "a fault has exactly one kind; this one has `{}` and `{}`: split it into two steps (use `background: true` to run them together)",
                found[0].kind_name(),
                found[1].kind_name()
            )),
        }
    }
}

/// Every fault kind, as written in experiment files.
pub const FAULT_KINDS: [&str; 16] = [
    "process_kill",
    "process_pause",
    "network",
    "blackhole",
    "partition",
    "dns",
    "packet_loss",
    "bandwidth",
    "cpu_limit",
    "memory_limit",
    "io_limit",
    "cpu_stress",
    "memory_stress",
    "disk_fill",
    "file_corrupt",
    "syscall_error",
];

impl<'de> Deserialize<'de> for Fault {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Fault::try_from(FaultFields::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Fault {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Fault".into()
    }
    fn json_schema(gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut s = FaultFields::json_schema(gen);
        // Exactly one kind.
        s.insert("minProperties".into(), 1.into());
        s.insert("maxProperties".into(), 1.into());
        s
    }
}

impl Fault {
    /// The process target of a process or cgroup fault.
    pub fn process_target(&self) -> Option<&crate::fault::target::ProcessTarget> {
        match self {
            Fault::ProcessKill(s) => Some(&s.target),
            Fault::ProcessPause(s) => Some(&s.target),
            Fault::CpuLimit(s) => Some(&s.target),
            Fault::MemoryLimit(s) => Some(&s.target),
            Fault::IoLimit(s) => Some(&s.target),
            Fault::SyscallError(s) => Some(&s.target),
            _ => None,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            Fault::ProcessKill(_) => "process_kill",
            Fault::ProcessPause(_) => "process_pause",
            Fault::Network(_) => "network",
            Fault::Blackhole(_) => "blackhole",
            Fault::Partition(_) => "partition",
            Fault::Dns(_) => "dns",
            Fault::PacketLoss(_) => "packet_loss",
            Fault::Bandwidth(_) => "bandwidth",
            Fault::CpuLimit(_) => "cpu_limit",
            Fault::MemoryLimit(_) => "memory_limit",
            Fault::IoLimit(_) => "io_limit",
            Fault::CpuStress(_) => "cpu_stress",
            Fault::MemoryStress(_) => "memory_stress",
            Fault::DiskFill(_) => "disk_fill",
            Fault::FileCorrupt(_) => "file_corrupt",
            Fault::SyscallError(_) => "syscall_error",
        }
    }
}

/// A command the experiment runs as an action or a rollback.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Program and arguments; no shell unless you write `[sh, -c, "..."]`.
    pub run: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Kill it (process group) after this long. Default 60s.
    #[serde(default = "default_action_timeout")]
    pub timeout: Duration,
    /// Exit code that counts as success. Default 0.
    #[serde(default)]
    pub expect_exit: i32,
    /// A failure is recorded but does not stop the method.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_failure: bool,
}

/// An HTTP request the method sends (not a probe: it is sent once).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub url: String,
    /// GET (default), POST, PUT, DELETE, HEAD, PATCH, OPTIONS.
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Default 30s.
    #[serde(default = "default_http_action_timeout")]
    pub timeout: Duration,
    /// See `HttpProbe::split_timeout`.
    #[serde(skip)]
    #[schemars(skip)]
    pub split_timeout: Option<SplitTimeout>,
    /// Status codes that count as success (default any 2xx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<StatusSet>,
    /// A failure is recorded but does not stop the method.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_failure: bool,
}

fn default_http_action_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_action_timeout() -> Duration {
    Duration::from_secs(60)
}

/// A condition on a probe that stops the method and rolls back at once.
/// Exactly one of `consecutive_failures`, `failure_ratio` or `latency_above`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AbortCondition {
    /// Name of the probe in `steady_state.probes`.
    pub probe: String,
    /// Abort after this many failing samples in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// Abort when more than this share of the last `window` samples failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_ratio: Option<Percent>,
    /// Abort when the `percentile` latency of the last `window` samples exceeds this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_above: Option<Duration>,
    /// With `latency_above`: which percentile (default 95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile: Option<f64>,
    /// Samples the ratio or percentile is computed over (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<u32>,
}

impl AbortCondition {
    pub fn window(&self) -> usize {
        self.window.unwrap_or(10).max(1) as usize
    }
    pub fn describe(&self) -> String {
        if let Some(n) = self.consecutive_failures {
            format!("{}: {n} consecutive failures", self.probe)
        } else if let Some(r) = self.failure_ratio {
            format!(
                "{}: more than {r} of the last {} samples failed",
                self.probe,
                self.window()
            )
        } else if let Some(l) = self.latency_above {
            format!(
                "{}: p{} latency of the last {} samples above {l}",
                self.probe,
                self.percentile.unwrap_or(95.0),
                self.window()
            )
        } else {
            format!("{}: (no condition)", self.probe)
        }
    }
}

/// Which checks gate the run, and when user rollbacks run. faultline's own
/// defaults are all `true` / `Always`; Chaos Toolkit strategies change them.
/// Automatic undo of faults is not affected: it always happens.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// The steady state must hold before the method (else exit 3).
    pub check_before: bool,
    /// Sample after rollback until recovered.
    pub check_after: bool,
    pub user_rollbacks: RollbackPolicy,
    /// Chaos Toolkit's order: check the steady state after the method and
    /// only then run the user rollbacks (faultline's: rollback, then check
    /// recovery). Fault undo is not affected.
    pub check_after_before_rollbacks: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            check_before: true,
            check_after: true,
            user_rollbacks: RollbackPolicy::Always,
            check_after_before_rollbacks: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollbackPolicy {
    /// Whenever the method ran, also after an abort or a signal (faultline's default).
    Always,
    /// Never run user rollbacks.
    Never,
    /// Only when the hypothesis deviated (or the run was aborted).
    Deviated,
    /// Chaos Toolkit's default: unless the run was interrupted or aborted.
    UnlessInterrupted,
    /// Chaos Toolkit's explicit `always`: also when the method did not run
    /// because the steady state did not hold before it.
    Unconditional,
}
