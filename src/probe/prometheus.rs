//! `prometheus` probe: an instant query (`GET {url}/api/v1/query`) whose
//! result must be exactly one number: a scalar, or a vector with one sample.
//! No data, several series, NaN, or an error answer are error samples (the
//! check could not measure); a number outside `expect.value` is a failure.

use super::http::{error_chain, parse_url, root_cause};
use super::process::bounds_text;
use super::{check_latency, ProbeContext, Sample, RUN_ID_HEADER};
use crate::experiment::model::{Bounds, Expect, PrometheusProbe};
use reqwest::{Client, Url};
use serde::Deserialize;
use std::time::{Duration, Instant};

pub struct PrometheusCheck {
    client: Client,
    endpoint: Url,
    query: String,
    run_id: String,
    timeout: Duration,
    value: Option<Bounds>,
    expect: Expect,
}

impl PrometheusCheck {
    pub fn new(
        spec: &PrometheusProbe,
        expect: &Expect,
        timeout: Duration,
        ctx: &ProbeContext,
    ) -> Result<Self, String> {
        let base = parse_url(&spec.url, "prometheus.url")?;
        // Keep a path prefix (`http://host/prometheus`), drop query/fragment.
        let mut endpoint = base.clone();
        endpoint.set_query(None);
        endpoint.set_fragment(None);
        let path = format!("{}/api/v1/query", base.path().trim_end_matches('/'));
        endpoint.set_path(&path);
        if spec.query.trim().is_empty() {
            return Err(
                "prometheus.query is empty; write a PromQL query, e.g. `up{job=\"api\"}`".into(),
            );
        }
        let (client, no_roots) = super::http::build_client(|| {
            Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .no_proxy()
                .user_agent(concat!("faultline/", env!("CARGO_PKG_VERSION")))
        })
        .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))?;
        if no_roots && endpoint.scheme() == "https" {
            return Err(super::http::no_roots_message("prometheus.url"));
        }
        Ok(PrometheusCheck {
            client,
            endpoint,
            query: spec.query.clone(),
            run_id: ctx.run_id.clone(),
            timeout,
            value: expect.value.clone(),
            expect: expect.clone(),
        })
    }

    pub fn describe(&self) -> String {
        let base = self.endpoint.as_str().trim_end_matches("/api/v1/query");
        match &self.value {
            Some(b) => format!("prometheus {base} `{}` {}", self.query, bounds_text(b)),
            None => format!("prometheus {base} `{}` is a number", self.query),
        }
    }

    pub async fn sample(&self) -> Sample {
        let started = Instant::now();
        let req = self
            .client
            .get(self.endpoint.clone())
            .query(&[("query", self.query.as_str())])
            .header(RUN_ID_HEADER, self.run_id.as_str());
        let result = async {
            let resp = req.send().await?;
            let code = resp.status().as_u16();
            let body = resp.bytes().await?;
            Ok::<_, reqwest::Error>((code, body))
        }
        .await;
        let latency = started.elapsed();
        let (code, body) = match result {
            Ok(v) => v,
            Err(e) => return Sample::error(latency, self.explain(&e)),
        };
        let sample = match extract_value(code, &body) {
            Err(e) => Sample::error(latency, e),
            Ok(v) => judge(v, self.value.as_ref(), latency),
        };
        check_latency(&self.expect, sample)
    }

    fn explain(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            return format!(
                "prometheus did not answer: timed out after {}",
                crate::units::Duration(self.timeout)
            );
        }
        if e.is_connect() {
            let host = self.endpoint.host_str().unwrap_or("?");
            let port = self.endpoint.port_or_known_default().unwrap_or(0);
            return format!(
                "cannot connect to prometheus at {host}:{port}: {}",
                root_cause(e)
            );
        }
        error_chain(e)
    }
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

/// The single number an instant-query answer holds, or why there is none.
fn extract_value(code: u16, body: &[u8]) -> Result<f64, String> {
    let resp: ApiResponse = serde_json::from_slice(body).map_err(|_| {
        let text = String::from_utf8_lossy(body);
        let hint: String = text.trim().chars().take(200).collect();
        format!("HTTP {code}, not a Prometheus API answer (is the url the Prometheus server?): {hint:?}")
    })?;
    if resp.status != "success" {
        return Err(format!(
            "prometheus answered an error (HTTP {code}, {}): {}",
            resp.error_type.as_deref().unwrap_or("no errorType"),
            resp.error.as_deref().unwrap_or("no message")
        ));
    }
    let data = resp
        .data
        .ok_or_else(|| format!("HTTP {code}, the answer has no `data`"))?;
    let pair = match data.result_type.as_str() {
        "scalar" => data.result,
        "vector" => {
            let series = data.result.as_array().cloned().unwrap_or_default();
            match series.len() {
                0 => return Err("the query returned no data (empty vector)".into()),
                1 => series[0].get("value").cloned().unwrap_or_default(),
                n => {
                    let labels: Vec<String> = series
                        .iter()
                        .take(3)
                        .map(|s| s.get("metric").map(|m| m.to_string()).unwrap_or_default())
                        .collect();
                    return Err(format!(
                        "the query returned {n} series, expected one (aggregate it, e.g. `sum(...)`): {}{}",
                        labels.join(", "),
                        if n > 3 { ", ..." } else { "" }
                    ));
                }
            }
        }
        other => {
            return Err(format!(
            "the query returned a {other}, expected one number (a scalar or a one-sample vector)"
        ))
        }
    };
    let raw = pair
        .get(1)
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("unexpected sample format: {pair}"))?;
    let v = parse_prom_float(raw).ok_or_else(|| format!("the value {raw:?} is not a number"))?;
    if v.is_nan() {
        return Err("the query's value is NaN".into());
    }
    Ok(v)
}

/// Prometheus writes floats as Go does: `1`, `0.5`, `1e+06`, `NaN`, `+Inf`, `-Inf`.
fn parse_prom_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

fn judge(v: f64, bounds: Option<&Bounds>, latency: Duration) -> Sample {
    match bounds {
        Some(b) if !b.contains(v) => {
            Sample::failure(latency, format!("value {v}, expected {}", bounds_text(b)))
        }
        _ => Sample::success(latency, format!("value {v}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::record::SampleStatus;

    #[test]
    fn one_sample_vector_and_scalar() {
        let vec1 = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"x"},"value":[1700000000.1,"3"]}]}}"#;
        assert_eq!(extract_value(200, vec1), Ok(3.0));
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.1,"1e+06"]}}"#;
        assert_eq!(extract_value(200, scalar), Ok(1e6));
        let inf = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}}"#;
        assert_eq!(extract_value(200, inf), Ok(f64::INFINITY));
    }

    #[test]
    fn no_single_number_is_an_error() {
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(extract_value(200, empty).unwrap_err().contains("no data"));
        let two = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"i":"a"},"value":[1,"1"]},{"metric":{"i":"b"},"value":[1,"2"]}]}}"#;
        let e = extract_value(200, two).unwrap_err();
        assert!(e.contains("2 series"), "{e}");
        assert!(e.contains(r#""i":"b""#), "{e}");
        let nan = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#;
        assert!(extract_value(200, nan).unwrap_err().contains("NaN"));
        let err = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        let e = extract_value(400, err).unwrap_err();
        assert!(e.contains("bad_data") && e.contains("parse error"), "{e}");
        assert!(extract_value(502, b"<html>bad gateway</html>")
            .unwrap_err()
            .contains("not a Prometheus API answer"));
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(extract_value(200, matrix).unwrap_err().contains("matrix"));
    }

    #[test]
    fn bounds_decide_failure() {
        let b = Bounds {
            min: Some(1.0),
            max: None,
        };
        let s = judge(0.0, Some(&b), Duration::ZERO);
        assert_eq!(s.status, SampleStatus::Failure);
        assert_eq!(s.detail, "value 0, expected at least 1");
        assert_eq!(judge(2.5, Some(&b), Duration::ZERO).detail, "value 2.5");
        assert!(judge(-7.0, None, Duration::ZERO).is_success());
    }
}
