//! Alert silences for known experiments: `silence:` in the experiment
//! creates an Alertmanager silence (API v2) for the run's window, so on-call
//! is not paged by the experiment, and expires it at rollback.
//!
//! The undo record ([`UndoOp::ExpireSilence`]) is written (and synced)
//! BEFORE the silence is created. It names the silence by a marker in its
//! comment (`[faultline run RUN_ID]`), not by id: a runner killed between
//! the POST and its answer still leaves a record the watchdog can replay.
//! Expiring looks the marker up (GET /api/v2/silences) and deletes every
//! silence that carries it and is not expired yet (DELETE
//! /api/v2/silence/{id}); none left is "already gone".
//!
//! The URL may come from an environment variable (`url_env`) when it holds
//! credentials; then the record holds only the variable's name, and whoever
//! replays it (the runner, the watchdog it started, `faultline recover`)
//! reads the variable. URLs are only ever shown redacted.

use crate::journal::undo::Applied;
use crate::runner::notify::{check_url, redact_url};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One HTTP call's limit, connecting included.
const TIMEOUT: Duration = Duration::from_secs(3);

/// `silence:` in the experiment.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, try_from = "RawSilence")]
pub struct SilenceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    pub matchers: Vec<Matcher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// An Alertmanager silence for the run's window, expired at rollback. Give
/// `url` or `url_env`, and at least one matcher.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Silence")]
struct RawSilence {
    /// Alertmanager's base URL, e.g. `http://alertmanager:9093`. Prefer
    /// `url_env` when it holds credentials.
    #[serde(default)]
    url: Option<String>,
    /// The name of an environment variable holding the URL.
    #[serde(default)]
    url_env: Option<String>,
    /// Which alerts to silence, as Alertmanager writes them:
    /// `alertname="HighLatency"`, `service=~"api|web"`, `env!="prod"`.
    matchers: Vec<String>,
    /// Why (shown in Alertmanager). faultline adds `[faultline run RUN_ID]`.
    #[serde(default)]
    comment: Option<String>,
    /// Who created it (default: the user running faultline).
    #[serde(default, rename = "created_by", alias = "createdBy")]
    created_by: Option<String>,
}

/// One matcher, as Alertmanager's API v2 takes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Matcher {
    pub name: String,
    pub value: String,
    #[serde(rename = "isRegex")]
    pub is_regex: bool,
    #[serde(rename = "isEqual")]
    pub is_equal: bool,
}

impl Matcher {
    /// `name="value"`, `name=~"re"`, `name!="value"`, `name!~"re"` (quotes
    /// optional).
    pub fn parse(s: &str) -> Result<Matcher, String> {
        let bad = |why: &str| {
            format!(
                "matcher `{}` {why}; write e.g. `alertname=\"HighLatency\"` or `service=~\"api|web\"`",
                crate::sys::text::escape(s)
            )
        };
        let ops = [
            ("=~", true, true),
            ("!~", true, false),
            ("!=", false, false),
            ("=", false, true),
        ];
        let (at, op, is_regex, is_equal) = ops
            .iter()
            .filter_map(|(op, r, e)| s.find(op).map(|i| (i, *op, *r, *e)))
            .min_by_key(|(i, op, ..)| (*i, std::cmp::Reverse(op.len())))
            .ok_or_else(|| bad("has no operator (=, !=, =~ or !~)"))?;
        let name = s[..at].trim();
        let mut value = s[at + op.len()..].trim();
        if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
            value = &value[1..value.len() - 1];
        }
        let name_ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok {
            return Err(bad("has no valid label name before the operator"));
        }
        if is_regex {
            regex::Regex::new(value).map_err(|e| bad(&format!("has an invalid regex ({e})")))?;
        }
        if value.is_empty() && is_equal && !is_regex {
            return Err(bad("matches only alerts without the label; give a value"));
        }
        Ok(Matcher {
            name: name.to_string(),
            value: value.to_string(),
            is_regex,
            is_equal,
        })
    }
}

impl TryFrom<RawSilence> for SilenceSpec {
    type Error = String;
    fn try_from(r: RawSilence) -> Result<Self, String> {
        match (&r.url, &r.url_env) {
            (Some(_), Some(_)) => return Err("give `url` or `url_env`, not both".into()),
            (None, None) => {
                return Err(
                    "needs `url` or `url_env` (an environment variable holding Alertmanager's URL)"
                        .into(),
                )
            }
            (Some(u), None) => check_url(u)?,
            (None, Some(v)) if !env_name(v) => {
                return Err(format!("url_env `{v}` is not an environment variable name"))
            }
            _ => {}
        }
        if r.matchers.is_empty() {
            return Err(
                "needs at least one matcher, e.g. `matchers: [alertname=\"HighLatency\"]` (a silence without one would silence everything)"
                    .into(),
            );
        }
        let matchers = r
            .matchers
            .iter()
            .map(|m| Matcher::parse(m))
            .collect::<Result<Vec<_>, _>>()?;
        if matchers.iter().all(|m| m.is_regex && m.value == ".*") {
            return Err("matchers that match every alert would silence everything".into());
        }
        Ok(SilenceSpec {
            url: r.url,
            url_env: r.url_env,
            matchers,
            comment: r.comment,
            created_by: r.created_by,
        })
    }
}

pub fn env_name(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !v.starts_with(|c: char| c.is_ascii_digit())
}

/// The comment marker that names a run's silences.
pub fn marker(run_id: &str) -> String {
    format!("[faultline run {run_id}]")
}

/// The URL from `url` or the variable `url_env`.
pub fn resolve_url(url: Option<&str>, url_env: Option<&str>) -> Result<String, String> {
    match (url, url_env) {
        (Some(u), _) => Ok(u.to_string()),
        (None, Some(v)) => match std::env::var(v) {
            Ok(u) => check_url(&u)
                .map(|_| u)
                .map_err(|e| format!("${v} does not hold Alertmanager's URL ({e})")),
            Err(_) => Err(format!(
                "the environment variable {v} (Alertmanager's URL) is not set"
            )),
        },
        (None, None) => Err("no Alertmanager URL".into()),
    }
}

/// `base` + `path`, with any user info taken out for basic auth.
fn endpoint(base: &str, path: &str) -> Result<(reqwest::Url, Option<(String, String)>), String> {
    let mut u = reqwest::Url::parse(base).map_err(|e| format!("not a URL ({e})"))?;
    let auth = if u.username().is_empty() && u.password().is_none() {
        None
    } else {
        let user = percent_decode(u.username());
        let pw = percent_decode(u.password().unwrap_or(""));
        let _ = u.set_username("");
        let _ = u.set_password(None);
        Some((user, pw))
    };
    let joined = format!("{}{}", u.path().trim_end_matches('/'), path);
    u.set_path(&joined);
    Ok((u, auth))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a call failed, and whether the request may have reached the server
/// (`false`: it certainly did not, e.g. the connection was refused).
struct CallError {
    reached: bool,
    message: String,
}

impl From<CallError> for String {
    fn from(e: CallError) -> String {
        e.message
    }
}

fn unsent(message: String) -> CallError {
    CallError {
        reached: false,
        message,
    }
}

/// One HTTP call on a thread of its own (callers may be inside the async
/// runtime or not): the status and the body.
fn call(
    method: reqwest::Method,
    base: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, String), CallError> {
    let (url, auth) = endpoint(base, path).map_err(unsent)?;
    let shown = redact_url(base);
    let t = std::thread::spawn(move || -> Result<(u16, String), CallError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| unsent(format!("cannot start an HTTP client: {e}")))?;
        rt.block_on(async move {
            let client = reqwest::Client::builder()
                .timeout(TIMEOUT)
                .connect_timeout(TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("faultline/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| unsent(format!("cannot start an HTTP client: {e}")))?;
            let mut req = client.request(method, url);
            if let Some((u, p)) = auth {
                req = req.basic_auth(u, Some(p));
            }
            if let Some(b) = body {
                req = req.json(&b);
            }
            // reqwest's error text contains the URL: never shown.
            let r = req.send().await.map_err(|e| {
                if e.is_connect() {
                    unsent(format!("cannot connect to Alertmanager at {shown}"))
                } else if e.is_timeout() {
                    CallError {
                        reached: true,
                        message: format!(
                            "Alertmanager at {shown} did not answer within {}s",
                            TIMEOUT.as_secs()
                        ),
                    }
                } else {
                    CallError {
                        reached: true,
                        message: format!("the request to Alertmanager at {shown} failed"),
                    }
                }
            })?;
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            Ok((status, text))
        })
    });
    t.join().map_err(|_| CallError {
        reached: true,
        message: "the HTTP client failed".into(),
    })?
}

/// A short, printable piece of an answer body for error messages.
fn snippet(s: &str) -> String {
    let one: String = s.chars().take(200).collect();
    crate::sys::text::escape(one.trim()).into_owned()
}

/// Creates the silence: `comment` gets the run's marker. Returns its id, or
/// why not and whether a silence may have been created all the same
/// (`true` unless the request surely never arrived or was refused).
pub fn create(
    url: &str,
    spec: &SilenceSpec,
    run_id: &str,
    ends: chrono::DateTime<chrono::Utc>,
    created_by: &str,
) -> Result<String, (bool, String)> {
    let comment = match spec.comment.as_deref().map(str::trim) {
        Some(c) if !c.is_empty() => format!("{c} {}", marker(run_id)),
        _ => format!("chaos experiment {}", marker(run_id)),
    };
    let body = serde_json::json!({
        "matchers": spec.matchers,
        "startsAt": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "endsAt": ends.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "createdBy": spec.created_by.clone().unwrap_or_else(|| created_by.to_string()),
        "comment": comment,
    });
    let (status, text) = call(reqwest::Method::POST, url, "/api/v2/silences", Some(body))
        .map_err(|e| (e.reached, e.message))?;
    if !(200..300).contains(&status) {
        return Err((
            false,
            format!(
                "Alertmanager at {} refused the silence: HTTP {status} {}",
                redact_url(url),
                snippet(&text)
            ),
        ));
    }
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["silenceID"]
        .as_str()
        .map(|s| crate::sys::text::escape(s).into_owned())
        .ok_or_else(|| {
            (
                true,
                format!(
                    "Alertmanager at {} answered without a silenceID",
                    redact_url(url)
                ),
            )
        })
}

/// Expires every silence carrying `marker` that is not expired yet.
pub fn expire(url: &str, marker: &str) -> Result<Applied, String> {
    let (status, text) = call(reqwest::Method::GET, url, "/api/v2/silences", None)?;
    if status != 200 {
        return Err(format!(
            "Alertmanager at {} did not list its silences: HTTP {status} {}",
            redact_url(url),
            snippet(&text)
        ));
    }
    let all: Vec<serde_json::Value> = serde_json::from_str(&text).map_err(|_| {
        format!(
            "Alertmanager at {} listed its silences as something that is not a JSON list",
            redact_url(url)
        )
    })?;
    let ours: Vec<String> = all
        .iter()
        .filter(|s| s["comment"].as_str().is_some_and(|c| c.contains(marker)))
        .filter(|s| s["status"]["state"].as_str() != Some("expired"))
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect();
    if ours.is_empty() {
        return Ok(Applied::AlreadyGone);
    }
    for id in ours {
        // An id from the server becomes a path segment: only its own characters.
        if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || id.len() > 64 {
            return Err(format!(
                "Alertmanager at {} gave a silence id that is not one: {}",
                redact_url(url),
                snippet(&id)
            ));
        }
        let (status, text) = call(
            reqwest::Method::DELETE,
            url,
            &format!("/api/v2/silence/{id}"),
            None,
        )?;
        if !(200..300).contains(&status) {
            return Err(format!(
                "Alertmanager at {} did not expire silence {id}: HTTP {status} {}",
                redact_url(url),
                snippet(&text)
            ));
        }
    }
    Ok(Applied::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_parse_like_alertmanager_writes_them() {
        let m = Matcher::parse("alertname=\"HighLatency\"").unwrap();
        assert_eq!(
            (m.name.as_str(), m.value.as_str(), m.is_regex, m.is_equal),
            ("alertname", "HighLatency", false, true)
        );
        let m = Matcher::parse("service=~api|web").unwrap();
        assert!(m.is_regex && m.is_equal && m.value == "api|web");
        let m = Matcher::parse("env != \"prod\"").unwrap();
        assert!(!m.is_regex && !m.is_equal && m.name == "env" && m.value == "prod");
        let m = Matcher::parse("env!~\"pr.*\"").unwrap();
        assert!(m.is_regex && !m.is_equal);
        // `a=b=c`: the value holds `=`.
        assert_eq!(Matcher::parse("a=b=c").unwrap().value, "b=c");
        for bad in ["nothing", "=x", "1a=x", "a=~(", "a=\"\""] {
            let e = Matcher::parse(bad).unwrap_err();
            assert!(e.contains("write e.g."), "{bad}: {e}");
        }
    }

    #[test]
    fn user_info_becomes_basic_auth_and_the_path_is_joined() {
        let (u, a) = endpoint("http://am:s%40cret@127.0.0.1:9093/am/", "/api/v2/silences").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:9093/am/api/v2/silences");
        assert_eq!(a, Some(("am".into(), "s@cret".into())));
        assert_eq!(marker("x"), "[faultline run x]");
        assert!(env_name("AM_URL") && !env_name("A=B") && !env_name("1X"));
    }
}
