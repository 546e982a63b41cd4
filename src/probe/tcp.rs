//! `tcp` probe: a connect to host:port within the timeout, then closed.
//! Host names are resolved on every sample (a DNS failure is an error sample),
//! and every resolved address is tried in order until one accepts.

use super::{check_latency, Sample};
use crate::experiment::model::{Expect, TcpProbe};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

pub struct TcpCheck {
    host: String,
    port: u16,
    timeout: Duration,
    expect: Expect,
}

impl TcpCheck {
    pub fn new(spec: &TcpProbe, expect: &Expect, timeout: Duration) -> Result<Self, String> {
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
            port: spec.port,
            timeout,
            expect: expect.clone(),
        })
    }

    pub fn describe(&self) -> String {
        format!("tcp connect {}", self.target())
    }

    fn target(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub async fn sample(&self) -> Sample {
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
