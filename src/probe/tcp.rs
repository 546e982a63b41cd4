//! `tcp` probe: a connect to host:port within the timeout, then closed.
//! Host names are resolved on every sample (a DNS failure is an error sample),
//! and every resolved address is tried in order until one accepts.

use super::{check_latency, Sample};
use crate::experiment::model::{Expect, TcpProbe};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

pub struct TcpCheck {
    host: String,
    /// `container:`: its address is looked up through Docker before every sample.
    container: Option<String>,
    port: u16,
    timeout: Duration,
    expect: Expect,
}

impl TcpCheck {
    pub fn new(spec: &TcpProbe, expect: &Expect, timeout: Duration) -> Result<Self, String> {
        if let Some(c) = &spec.container {
            if spec.port == 0 {
                return Err("tcp.port is 0; give the port the service listens on".into());
            }
            let host = crate::sys::docker::address(c)?;
            return Ok(TcpCheck {
                host,
                container: Some(c.clone()),
                port: spec.port,
                timeout,
                expect: expect.clone(),
            });
        }
        let host = spec.host.trim();
        if host.is_empty() {
            return Err("tcp.host is empty; write e.g. `127.0.0.1` or `db.internal`".into());
        }
        if spec.port == 0 {
            return Err("tcp.port is 0; give the port the service listens on".into());
        }
        // `[::1]` is how people write IPv6 hosts in URLs; lookup wants `::1`.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(TcpCheck {
            host,
            container: None,
            port: spec.port,
            timeout,
            expect: expect.clone(),
        })
    }

    pub fn describe(&self) -> String {
        match &self.container {
            Some(c) => format!(
                "tcp connect container {} port {} (now {})",
                crate::sys::text::escape(c),
                self.port,
                self.target()
            ),
            None => format!("tcp connect {}", self.target()),
        }
    }

    fn target(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub async fn sample(&self) -> Sample {
        if let Some(c) = &self.container {
            // The container may have been recreated with a new address.
            let name = c.clone();
            let t0 = Instant::now();
            let host =
                tokio::task::spawn_blocking(move || crate::sys::docker::address(&name)).await;
            let host = match host {
                Ok(Ok(h)) => h,
                Ok(Err(e)) => return Sample::error(t0.elapsed(), e),
                Err(e) => {
                    return Sample::error(t0.elapsed(), format!("address lookup failed: {e}"))
                }
            };
            let me = TcpCheck {
                host,
                container: None,
                port: self.port,
                timeout: self.timeout,
                expect: self.expect.clone(),
            };
            return Box::pin(me.sample()).await;
        }
        let started = Instant::now();
        match tokio::time::timeout(self.timeout, self.connect(started)).await {
            Ok(s) => check_latency(&self.expect, s),
            Err(_) => Sample::error(
                started.elapsed(),
                format!(
                    "connecting to {} timed out after {}",
                    self.target(),
                    crate::units::Duration(self.timeout)
                ),
            ),
        }
    }

    async fn connect(&self, started: Instant) -> Sample {
        let addrs: Vec<_> = match tokio::net::lookup_host((self.host.as_str(), self.port)).await {
            Ok(a) => a.collect(),
            Err(e) => {
                return Sample::error(
                    started.elapsed(),
                    format!("cannot resolve host `{}`: {e}", self.host),
                )
            }
        };
        if addrs.is_empty() {
            return Sample::error(
                started.elapsed(),
                format!("host `{}` resolved to no address", self.host),
            );
        }
        let mut errors = Vec::new();
        for addr in &addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let latency = started.elapsed();
                    drop(stream);
                    return Sample::success(latency, format!("connected to {addr}"));
                }
                Err(e) => errors.push(format!("{addr}: {e}")),
            }
        }
        Sample::error(
            started.elapsed(),
            format!("cannot connect to {}: {}", self.target(), errors.join("; ")),
        )
    }
}
