//! Probes: one file per kind, one entry point. A probe never panics and never
//! hangs: every sample is bounded by the probe's timeout, and a check that
//! could not run at all is an `Error` sample with the reason, which is not the
//! same as a `Failure` (the check ran and the system was not as expected).

pub mod command;
pub mod http;
pub mod process;
pub mod prometheus;
pub mod tcp;

use crate::experiment::model::{Expect, Probe, ProbeKind, ReadyCheck};
use crate::report::record::SampleStatus;
use std::time::Duration;

/// Header sent with every HTTP probe request, carrying the run id.
pub const RUN_ID_HEADER: &str = "X-Faultline-Run-Id";

/// One measurement.
#[derive(Clone, Debug)]
pub struct Sample {
    pub status: SampleStatus,
    pub latency: Duration,
    /// Why it failed or errored; for a success a short summary (e.g. `200`, `value 3`).
    pub detail: String,
    /// The result a tolerance judged (`{status, stdout, stderr}`,
    /// `{status, headers, body}`, a python value), for the Chaos Toolkit journal.
    pub output: Option<serde_json::Value>,
}

impl Sample {
    pub fn success(latency: Duration, detail: impl Into<String>) -> Self {
        Sample {
            status: SampleStatus::Success,
            latency,
            detail: detail.into(),
            output: None,
        }
    }
    pub fn failure(latency: Duration, detail: impl Into<String>) -> Self {
        Sample {
            status: SampleStatus::Failure,
            latency,
            detail: detail.into(),
            output: None,
        }
    }
    pub fn error(latency: Duration, detail: impl Into<String>) -> Self {
        Sample {
            status: SampleStatus::Error,
            latency,
            detail: detail.into(),
            output: None,
        }
    }
    pub fn with_output(mut self, v: serde_json::Value) -> Self {
        self.output = Some(v);
        self
    }
    pub fn is_success(&self) -> bool {
        self.status == SampleStatus::Success
    }
}

/// Things every probe kind may need.
#[derive(Clone, Debug, Default)]
pub struct ProbeContext {
    pub run_id: String,
}

/// A probe ready to sample, built once per run.
pub struct ProbeRunner {
    pub name: String,
    pub kind: ProbeKind,
    timeout: Duration,
    imp: Kind,
}

enum Kind {
    Http(http::HttpCheck),
    Tcp(tcp::TcpCheck),
    Command(command::CommandCheck),
    Process(process::ProcessCheck),
    Prometheus(prometheus::PrometheusCheck),
}

impl ProbeRunner {
    /// Builds the probe. Errors here are preflight failures: the probe cannot
    /// run at all (e.g. its program is not installed) and map to exit 69.
    pub fn new(spec: &Probe, ctx: &ProbeContext) -> Result<Self, String> {
        let expect = &spec.expect;
        let (kind, imp) = if let Some(h) = &spec.http {
            (
                ProbeKind::Http,
                Kind::Http(http::HttpCheck::new(h, expect, spec.timeout.std(), ctx)?),
            )
        } else if let Some(t) = &spec.tcp {
            (
                ProbeKind::Tcp,
                Kind::Tcp(tcp::TcpCheck::new(t, expect, spec.timeout.std())?),
            )
        } else if let Some(c) = &spec.command {
            (
                ProbeKind::Command,
                Kind::Command(command::CommandCheck::new(c, expect, ctx)?),
            )
        } else if let Some(p) = &spec.process {
            (
                ProbeKind::Process,
                Kind::Process(process::ProcessCheck::new(p, expect)?),
            )
        } else if let Some(p) = &spec.prometheus {
            (
                ProbeKind::Prometheus,
                Kind::Prometheus(prometheus::PrometheusCheck::new(
                    p,
                    expect,
                    spec.timeout.std(),
                    ctx,
                )?),
            )
        } else {
            return Err(format!("probe `{}` has no kind", spec.name));
        };
        Ok(ProbeRunner {
            name: spec.name.clone(),
            kind,
            timeout: spec.timeout.std(),
            imp,
        })
    }

    /// The longest one sample may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A probe for a setup process's `ready` check.
    pub fn for_ready(name: &str, ready: &ReadyCheck, ctx: &ProbeContext) -> Result<Self, String> {
        let probe = Probe {
            name: name.to_string(),
            http: ready.http.clone(),
            tcp: ready.tcp.clone(),
            command: ready.command.clone(),
            process: None,
            prometheus: None,
            timeout: crate::units::Duration::from_secs(2),
            expect: ready.expect.clone().unwrap_or_default(),
            before: Default::default(),
            during: None,
            after: Default::default(),
            group: Default::default(),
        };
        Self::new(&probe, ctx)
    }

    /// What the probe checks, in words (`GET http://...`, `tcp 127.0.0.1:6379`).
    pub fn describe(&self) -> String {
        match &self.imp {
            Kind::Http(c) => c.describe(),
            Kind::Tcp(c) => c.describe(),
            Kind::Command(c) => c.describe(),
            Kind::Process(c) => c.describe(),
            Kind::Prometheus(c) => c.describe(),
        }
    }

    /// Takes one sample, never longer than the probe's timeout (plus a little
    /// for killing a command's process group).
    pub async fn sample(&self) -> Sample {
        let started = std::time::Instant::now();
        let fut = async {
            match &self.imp {
                Kind::Http(c) => c.sample().await,
                Kind::Tcp(c) => c.sample().await,
                Kind::Command(c) => c.sample(self.timeout).await,
                Kind::Process(c) => c.sample().await,
                Kind::Prometheus(c) => c.sample().await,
            }
        };
        // Commands enforce their own timeout (they must kill the child); the
        // outer bound is a backstop for everything else.
        match tokio::time::timeout(self.timeout + Duration::from_millis(500), fut).await {
            Ok(s) => s,
            Err(_) => Sample::error(
                started.elapsed(),
                format!("timed out after {}", crate::units::Duration(self.timeout)),
            ),
        }
    }
}

/// Applies `latency_below` to a sample that otherwise succeeded.
pub fn check_latency(expect: &Expect, sample: Sample) -> Sample {
    match expect.latency_below {
        Some(max) if sample.is_success() && sample.latency > max.std() => Sample::failure(
            sample.latency,
            format!(
                "took {:.1}ms, expected below {}",
                sample.latency.as_secs_f64() * 1000.0,
                max
            ),
        ),
        _ => sample,
    }
}

/// `expect.jsonpath`, parsed, with what it must find.
pub type ParsedJsonPath = (
    serde_json_path::JsonPath,
    crate::experiment::model::JsonPathExpect,
);

/// Parses `expect.tolerance` and `expect.jsonpath` once, at probe build time
/// (shared by the http and command probes, which judge a structured result).
pub fn parse_result_checks(
    expect: &Expect,
) -> Result<
    (
        Option<crate::chaostoolkit::tolerance::Tolerance>,
        Option<ParsedJsonPath>,
    ),
    String,
> {
    let tolerance = match &expect.tolerance {
        Some(t) => Some(
            crate::chaostoolkit::tolerance::Tolerance::parse(t)
                .map_err(|e| format!("expect.tolerance: {e}"))?,
        ),
        None => None,
    };
    let jsonpath = match &expect.jsonpath {
        Some(j) => Some((
            crate::chaostoolkit::tolerance::parse_jsonpath(&j.path)
                .map_err(|e| format!("expect.jsonpath.path: {e}"))?,
            j.clone(),
        )),
        None => None,
    };
    Ok((tolerance, jsonpath))
}
