//! `http` probe: one request per sample, judged on status, body and JSON.
//!
//! One `reqwest` client is built per probe (connection reuse across samples,
//! like a real client). It ignores proxy variables from the environment: a
//! chaos probe measures the path to the service itself, and an inherited
//! `http_proxy` would silently measure the proxy instead. Redirects are not
//! followed, so `expect.status` sees what the service answered (write
//! `status: 3xx` to accept a redirect). `body_matches` is a multi-line regex:
//! `^` and `$` match at line starts and ends, as in grep.

use super::{check_latency, ProbeContext, Sample, RUN_ID_HEADER};
use crate::experiment::model::{Expect, HttpProbe, JsonExpect, StatusSet};
use regex::{Regex, RegexBuilder};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, Url};
use std::time::{Duration, Instant};

/// Builds an HTTP client from `make`. Where the host has no CA certificates
/// (a minimal VM or container), rustls' platform verifier cannot start and
/// the build fails even for plain `http://`; then the client is built again
/// trusting no roots, and the second value is true: `https://` cannot be
/// verified with it (see [`no_roots_message`]).
pub fn build_client(
    make: impl Fn() -> reqwest::ClientBuilder,
) -> Result<(Client, bool), reqwest::Error> {
    match make().build() {
        Ok(c) => Ok((c, false)),
        Err(first) => match make().tls_certs_only(Vec::new()).build() {
            Ok(c) => Ok((c, true)),
            Err(_) => Err(first),
        },
    }
}

/// What to do about an `https://` target on a host without CA certificates.
pub fn no_roots_message(field: &str) -> String {
    format!(
        "{field} is https://, but this host has no CA certificates to verify it with (Debian: apt-get install ca-certificates); or set `insecure: true` on the probe to skip verification"
    )
}

/// At most this much of a body is kept for matching; the rest is read and dropped.
const MAX_BODY: usize = 1024 * 1024;

/// `http://IP:PORT/PATH` for a container's address.
fn container_url(ip: &str, port: u16, path: &str) -> Result<Url, String> {
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    parse_url(&format!("http://{host}:{port}{path}"), "http.path")
}

pub struct HttpCheck {
    client: Client,
    method: Method,
    url: Url,
    /// `container:` (name, port, path): the URL's host is looked up through
    /// Docker before every sample (a recreated container gets a new address).
    container: Option<(String, u16, String)>,
    body: Option<String>,
    timeout: Duration,
    status: StatusSet,
    body_contains: Option<String>,
    body_matches: Option<Regex>,
    json: Option<JsonExpect>,
    expect: Expect,
    /// `expect.tolerance`, parsed (Chaos Toolkit semantics).
    tolerance: Option<crate::chaostoolkit::tolerance::Tolerance>,
    /// `expect.jsonpath`, parsed.
    jsonpath: Option<super::ParsedJsonPath>,
}

impl HttpCheck {
    pub fn new(
        spec: &HttpProbe,
        expect: &Expect,
        timeout: Duration,
        ctx: &ProbeContext,
    ) -> Result<Self, String> {
        let container = spec.container.as_ref().map(|c| {
            (
                c.clone(),
                spec.port.unwrap_or(80),
                spec.path.clone().unwrap_or_else(|| "/".into()),
            )
        });
        let url = match &container {
            Some((c, port, path)) => {
                let ip = crate::sys::docker::address(c)?;
                container_url(&ip, *port, path)?
            }
            None => parse_url(&spec.url, "http.url")?,
        };
        let method = Method::from_bytes(spec.method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| {
                format!(
                    "http.method `{}` is not an HTTP method; use GET, POST, PUT, DELETE, HEAD, PATCH or OPTIONS",
                    spec.method
                )
            })?;
        let mut headers = HeaderMap::new();
        for (k, v) in &spec.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("http.headers: `{k}` is not a valid header name"))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| format!("http.headers.{k}: the value is not a valid header value"))?;
            headers.insert(name, value);
        }
        let run_id = HeaderValue::from_str(&ctx.run_id)
            .map_err(|_| format!("run id `{}` cannot be sent as a header", ctx.run_id))?;
        headers.insert(
            HeaderName::from_bytes(RUN_ID_HEADER.as_bytes()).expect("a valid header name"),
            run_id,
        );

        let make = || {
            let mut builder = Client::builder().timeout(timeout).connect_timeout(timeout);
            if let Some(t) = spec.split_timeout {
                builder = builder
                    .connect_timeout(t.connect.std())
                    .read_timeout(t.read.std());
            }
            builder
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .danger_accept_invalid_certs(spec.insecure)
                .default_headers(headers.clone())
                .user_agent(concat!("faultline/", env!("CARGO_PKG_VERSION")))
        };
        let (client, no_roots) = build_client(make)
            .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))?;
        if no_roots && url.scheme() == "https" && !spec.insecure {
            return Err(no_roots_message("http.url"));
        }

        let body_matches = match &expect.body_matches {
            Some(re) => Some(
                RegexBuilder::new(re)
                    .multi_line(true)
                    .build()
                    .map_err(|e| format!("expect.body_matches `{re}` is not a valid regex: {e}"))?,
            ),
            None => None,
        };
        if let Some(j) = &expect.json {
            if !(j.pointer.is_empty() || j.pointer.starts_with('/')) {
                return Err(format!(
                    "expect.json.pointer `{}` is not a JSON pointer; it starts with `/`, e.g. `/status`",
                    j.pointer
                ));
            }
        }
        let (tolerance, jsonpath) = super::parse_result_checks(expect)?;
        // With a tolerance, any status is a result for it to judge.
        let default_status = if tolerance.is_some() {
            StatusSet(vec![(100, 599)])
        } else {
            StatusSet(vec![(200, 299)])
        };
        Ok(HttpCheck {
            tolerance,
            jsonpath,
            client,
            method,
            url,
            container,
            body: spec.body.clone(),
            timeout,
            status: expect.status.clone().unwrap_or(default_status),
            body_contains: expect.body_contains.clone(),
            body_matches,
            json: expect.json.clone(),
            expect: expect.clone(),
        })
    }

    pub fn describe(&self) -> String {
        let mut s = format!("{} {}", self.method, self.url);
        if let Some((c, _, _)) = &self.container {
            s.push_str(&format!(
                " (container {}, address looked up before each sample)",
                crate::sys::text::escape(c)
            ));
        }
        s.push_str(&format!(" expecting {}", self.status));
        if let Some(c) = &self.body_contains {
            s.push_str(&format!(", body containing {c:?}"));
        }
        if let Some(r) = &self.body_matches {
            s.push_str(&format!(", body matching /{}/", r.as_str()));
        }
        if let Some(j) = &self.json {
            s.push_str(&format!(", JSON {} = {}", j.pointer, j.equals));
        }
        if let Some((_, j)) = &self.jsonpath {
            s.push_str(&format!(", JSONPath {}", j.path));
        }
        if let Some(t) = &self.expect.tolerance {
            s.push_str(&format!(", tolerance {t}"));
        }
        s
    }

    pub async fn sample(&self) -> Sample {
        let url = match &self.container {
            None => self.url.clone(),
            Some((c, port, path)) => {
                let t0 = Instant::now();
                let name = c.clone();
                let ip =
                    tokio::task::spawn_blocking(move || crate::sys::docker::address(&name)).await;
                match ip {
                    Ok(Ok(ip)) => match container_url(&ip, *port, path) {
                        Ok(u) => u,
                        Err(e) => return Sample::error(t0.elapsed(), e),
                    },
                    Ok(Err(e)) => return Sample::error(t0.elapsed(), e),
                    Err(e) => {
                        return Sample::error(t0.elapsed(), format!("address lookup failed: {e}"))
                    }
                }
            }
        };
        let started = Instant::now();
        let mut req = self.client.request(self.method.clone(), url);
        if let Some(b) = &self.body {
            req = req.body(b.clone());
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Sample::error(started.elapsed(), self.explain(&e)),
        };
        let code = resp.status().as_u16();
        let headers = if self.tolerance.is_some() {
            Some(resp.headers().clone())
        } else {
            None
        };
        let mut body = Vec::new();
        let mut truncated = false;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_BODY.saturating_sub(body.len());
                    if chunk.len() > room {
                        truncated = true;
                    }
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) => break,
                Err(e) => {
                    return Sample::error(
                        started.elapsed(),
                        format!("status {code}, reading the body: {}", self.explain(&e)),
                    )
                }
            }
        }
        let latency = started.elapsed();
        let sample = judge(
            code,
            &body,
            truncated,
            &self.status,
            self.body_contains.as_deref(),
            self.body_matches.as_ref(),
            self.json.as_ref(),
            latency,
        );
        let sample = self.check_extra(code, headers.as_ref(), &body, sample);
        check_latency(&self.expect, sample)
    }

    /// `expect.jsonpath` and `expect.tolerance`, on a sample that otherwise succeeded.
    fn check_extra(
        &self,
        code: u16,
        headers: Option<&HeaderMap>,
        body: &[u8],
        sample: Sample,
    ) -> Sample {
        if !sample.is_success() {
            return sample;
        }
        let latency = sample.latency;
        if let Some((path, j)) = &self.jsonpath {
            let doc: serde_json::Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => {
                    return Sample::error(
                        latency,
                        format!(
                            "status {code}, body is not JSON ({e}), cannot query {}",
                            j.path
                        ),
                    )
                }
            };
            let found: Vec<serde_json::Value> =
                path.query(&doc).all().into_iter().cloned().collect();
            if let Err(why) = crate::chaostoolkit::tolerance::jsonpath_verdict(
                &found,
                &j.path,
                j.equals.as_ref(),
                j.count,
                "body",
            ) {
                return Sample::failure(latency, format!("status {code}, {why}"));
            }
            if let Some(b) = &j.value {
                if let Err(why) = b.judge_found(&found, &j.path) {
                    return Sample::failure(latency, format!("status {code}, {why}"));
                }
            }
        }
        if let Some(t) = &self.tolerance {
            let mut hmap = serde_json::Map::new();
            let mut json_body = false;
            if let Some(h) = headers {
                for (k, v) in h {
                    let v = String::from_utf8_lossy(v.as_bytes()).to_string();
                    if k.as_str() == "content-type" && v == "application/json" {
                        json_body = true;
                    }
                    hmap.insert(k.as_str().to_string(), serde_json::Value::String(v));
                }
            }
            // As Python requests: the body is parsed when the server says JSON.
            let body_value = if json_body {
                serde_json::from_slice(body).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(body).to_string())
                })
            } else {
                serde_json::Value::String(String::from_utf8_lossy(body).to_string())
            };
            let result = serde_json::json!({"status": code, "headers": hmap, "body": body_value});
            let sample = match t.check(&result, Some("body")) {
                Ok(_) => Sample::success(latency, format!("status {code}, within tolerance")),
                Err(why) => Sample::failure(latency, format!("tolerance not met: {why}")),
            };
            return sample.with_output(result);
        }
        sample
    }

    fn explain(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            return format!("timed out after {}", crate::units::Duration(self.timeout));
        }
        if e.is_connect() {
            let host = self.url.host_str().unwrap_or("?");
            let port = self.url.port_or_known_default().unwrap_or(0);
            return format!("cannot connect to {host}:{port}: {}", root_cause(e));
        }
        error_chain(e)
    }
}

/// Judges a complete response. Pure, so it is unit-tested without a server.
#[allow(clippy::too_many_arguments)]
fn judge(
    code: u16,
    body: &[u8],
    truncated: bool,
    status: &StatusSet,
    contains: Option<&str>,
    matches: Option<&Regex>,
    json: Option<&JsonExpect>,
    latency: Duration,
) -> Sample {
    if !status.contains(code) {
        return Sample::failure(
            latency,
            format!("status {code}, expected {status}{}", body_hint(body)),
        );
    }
    let text = String::from_utf8_lossy(body);
    if let Some(c) = contains {
        if !text.contains(c) {
            return Sample::failure(
                latency,
                format!(
                    "status {code}, body does not contain {c:?}{}",
                    body_hint(body)
                ),
            );
        }
    }
    if let Some(re) = matches {
        if !re.is_match(&text) {
            return Sample::failure(
                latency,
                format!(
                    "status {code}, body does not match /{}/{}",
                    re.as_str(),
                    body_hint(body)
                ),
            );
        }
    }
    if let Some(j) = json {
        let doc: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                let why = if truncated {
                    format!("it is larger than {} KiB", MAX_BODY / 1024)
                } else {
                    e.to_string()
                };
                return Sample::error(
                    latency,
                    format!(
                        "status {code}, body is not JSON ({why}), cannot read {}{}",
                        j.pointer,
                        body_hint(body)
                    ),
                );
            }
        };
        match doc.pointer(&j.pointer) {
            None => {
                return Sample::failure(
                    latency,
                    format!("status {code}, JSON has no value at {}", j.pointer),
                )
            }
            Some(v) if !json_equal(v, &j.equals) => {
                return Sample::failure(
                    latency,
                    format!(
                        "status {code}, JSON {} is {}, expected {}",
                        j.pointer,
                        short(&v.to_string()),
                        short(&j.equals.to_string())
                    ),
                )
            }
            Some(_) => {}
        }
    }
    Sample::success(latency, code.to_string())
}

/// JSON equality where two numbers are equal when they are numerically equal
/// (`1`, `1.0` and `1e0` are the same value: YAML and JSON spell numbers differently).
pub(crate) fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as V;
    match (a, b) {
        (V::Number(x), V::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return x == y;
            }
            if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                return x == y;
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            }
        }
        (V::Array(x), V::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (V::Object(x), V::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Parses a probe URL; only http and https are accepted.
pub(crate) fn parse_url(raw: &str, field: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| {
        format!("{field} `{raw}` is not a URL ({e}); write e.g. `http://127.0.0.1:8080/health`")
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "{field} `{raw}`: the scheme must be http or https, not `{}`",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{field} `{raw}` has no host"));
    }
    Ok(url)
}

/// The error and its sources, joined, without repeating a message a source
/// already contains.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let m = s.to_string();
        if !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// The innermost error message (e.g. `Connection refused (os error 111)`).
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(s) = cur.source() {
        cur = s;
    }
    cur.to_string()
}

fn short(s: &str) -> String {
    const MAX: usize = 120;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let t: String = s.chars().take(MAX).collect();
        format!("{t}...")
    }
}

/// `; body: "..."` with the start of a non-empty body, for failure details.
fn body_hint(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let t = text.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!("; body: {:?}", short(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::record::SampleStatus;
    use serde_json::json;

    fn ok_2xx() -> StatusSet {
        StatusSet(vec![(200, 299)])
    }

    fn run(code: u16, body: &str, json: Option<JsonExpect>) -> Sample {
        judge(
            code,
            body.as_bytes(),
            false,
            &ok_2xx(),
            None,
            None,
            json.as_ref(),
            Duration::from_millis(3),
        )
    }

    #[test]
    fn json_numbers_compare_numerically() {
        assert!(json_equal(&json!(1), &json!(1.0)));
        assert!(json_equal(
            &json!({"a": [1, 2.5]}),
            &json!({"a": [1.0, 2.5]})
        ));
        assert!(!json_equal(&json!(1), &json!(2)));
        assert!(!json_equal(&json!(1), &json!("1")));
        assert!(!json_equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(json_equal(&json!(u64::MAX), &json!(u64::MAX)));
        assert!(!json_equal(&json!(u64::MAX), &json!(u64::MAX - 1)));
        assert!(json_equal(&json!(null), &json!(null)));
    }

    #[test]
    fn yaml_number_equals_json_number() {
        let from_yaml: serde_json::Value = serde_yaml::from_str("3.0").unwrap();
        assert!(json_equal(&from_yaml, &json!(3)));
    }

    #[test]
    fn status_outside_set_is_a_failure() {
        let s = run(503, "down", None);
        assert_eq!(s.status, SampleStatus::Failure);
        assert!(s.detail.contains("503"), "{}", s.detail);
        assert!(s.detail.contains("2xx"), "{}", s.detail);
        let s = run(204, "", None);
        assert_eq!(s.status, SampleStatus::Success);
        assert_eq!(s.detail, "204");
    }

    #[test]
    fn json_pointer_checks() {
        let want = |v| {
            Some(JsonExpect {
                pointer: "/checks/0/ok".into(),
                equals: v,
            })
        };
        let body = r#"{"checks":[{"ok":true}]}"#;
        assert!(run(200, body, want(json!(true))).is_success());
        let s = run(200, body, want(json!(false)));
        assert_eq!(s.status, SampleStatus::Failure);
        assert!(s.detail.contains("is true, expected false"), "{}", s.detail);
        let s = run(200, r#"{"checks":[]}"#, want(json!(true)));
        assert_eq!(s.status, SampleStatus::Failure);
        assert!(
            s.detail.contains("no value at /checks/0/ok"),
            "{}",
            s.detail
        );
        let s = run(200, "<html>", want(json!(true)));
        assert_eq!(s.status, SampleStatus::Error);
        assert!(s.detail.contains("not JSON"), "{}", s.detail);
    }

    #[test]
    fn body_expectations() {
        let re = Regex::new(r"^ok \d+$").unwrap();
        let j = |b: &str| {
            judge(
                200,
                b.as_bytes(),
                false,
                &ok_2xx(),
                Some("ok"),
                Some(&re),
                None,
                Duration::ZERO,
            )
        };
        assert!(j("ok 12").is_success());
        assert_eq!(j("nope").status, SampleStatus::Failure);
        let s = j("ok twelve");
        assert_eq!(s.status, SampleStatus::Failure);
        assert!(s.detail.contains("does not match"), "{}", s.detail);
    }

    #[test]
    fn urls_are_checked() {
        assert!(parse_url("http://127.0.0.1:80/x", "u").is_ok());
        assert!(parse_url("ftp://x/", "u")
            .unwrap_err()
            .contains("http or https"));
        assert!(parse_url("not a url", "u")
            .unwrap_err()
            .contains("not a URL"));
    }
}
