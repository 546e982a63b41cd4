//! Webhook notifications: a JSON POST to each URL when a run is about to
//! start (with the plan summary), when a fault is injected, when the run is
//! aborted and when it finishes (verdict, journal path). A generic JSON body,
//! or Slack's shape (`{"text": ...}`, which Mattermost accepts too).
//!
//! Notifications never block or fail the run: the sink only queues; one
//! worker thread posts in order, each with a short timeout and one retry.
//! What could not be delivered becomes a warning in the report. URLs are
//! shown only as [`redact_url`] makes them: credentials, path and query hidden.

use super::events::{Event, EventSink, StepInfo, TimedEvent};
use serde::{Deserialize, Serialize};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One attempt's limit, connecting included.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts per notification.
const ATTEMPTS: u32 = 2;

/// The body a webhook gets.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `{"event": "started", "run_id": ..., "experiment": ..., ...}`.
    #[default]
    Json,
    /// `{"text": "..."}` for Slack and Mattermost incoming webhooks.
    Slack,
}

/// Where to send, resolved (an environment variable already read).
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub format: Format,
}

/// `https://hooks.example.com/***`: scheme, host and port only; the path
/// and query often carry a token, and user info always does.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let user = if u.username().is_empty() && u.password().is_none() {
                ""
            } else {
                "***@"
            };
            let rest = if u.path() == "/" && u.query().is_none() {
                "/"
            } else {
                "/***"
            };
            format!("{}://{user}{host}{port}{rest}", u.scheme())
        }
        Err(_) => "(an invalid URL)".into(),
    }
}

/// Checks a webhook URL: http or https with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host_str().is_some() => {
            Ok(())
        }
        Ok(_) => Err(format!(
            "{} is not an http(s) URL with a host",
            redact_url(url)
        )),
        Err(e) => Err(format!("not a URL ({e})")),
    }
}

/// The sending side: the sink queues, [`Notifier::finish`] waits (bounded).
pub struct Notifier {
    tx: Option<mpsc::Sender<serde_json::Value>>,
    done: mpsc::Receiver<()>,
    warnings: Arc<Mutex<Vec<String>>>,
    targets: usize,
}

/// What the sink keeps between events.
pub struct NotifySink {
    tx: mpsc::Sender<serde_json::Value>,
    run_id: String,
    title: String,
    steps: Vec<StepInfo>,
    journal: Option<String>,
}

impl Notifier {
    /// Starts the worker; `None` when there is nowhere to send.
    pub fn start(
        targets: Vec<Target>,
        run_id: &str,
        journal: Option<String>,
    ) -> Option<(Notifier, NotifySink)> {
        if targets.is_empty() {
            return None;
        }
        let (tx, rx) = mpsc::channel::<serde_json::Value>();
        let (done_tx, done) = mpsc::channel();
        let warnings = Arc::new(Mutex::new(Vec::new()));
        let w = warnings.clone();
        let n = targets.len();
        std::thread::Builder::new()
            .name("notify".into())
            .spawn(move || {
                worker(targets, rx, w);
                let _ = done_tx.send(());
            })
            .ok()?;
        Some((
            Notifier {
                tx: Some(tx.clone()),
                done,
                warnings,
                targets: n,
            },
            NotifySink {
                tx,
                run_id: run_id.to_string(),
                title: String::new(),
                steps: vec![],
                journal,
            },
        ))
    }

    /// Waits up to `limit` for the queue to drain (after the run, nothing
    /// waits on it), then returns the warnings for the report.
    pub fn finish(mut self, limit: Duration) -> Vec<String> {
        drop(self.tx.take());
        if self.done.recv_timeout(limit).is_err() {
            self.warnings.lock().unwrap().push(format!(
                "notifications: not all were delivered to the {} webhook(s) within {}s; the rest were dropped",
                self.targets,
                limit.as_secs()
            ));
        }
        std::mem::take(&mut *self.warnings.lock().unwrap())
    }
}

fn worker(
    targets: Vec<Target>,
    rx: mpsc::Receiver<serde_json::Value>,
    warnings: Arc<Mutex<Vec<String>>>,
) {
    let warn = |m: String| warnings.lock().unwrap().push(m);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return warn(format!("notifications: cannot start: {e}")),
    };
    // The client's timers need the runtime's context.
    let _in_runtime = rt.enter();
    let client = match reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("faultline/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => return warn(format!("notifications: cannot start: {e}")),
    };
    // A target that failed twice in a row is given up for this run, so a
    // receiver that is down costs its timeout once or twice, not per event.
    let mut dead = vec![false; targets.len()];
    for body in rx {
        let event = body["event"].as_str().unwrap_or("?").to_string();
        for (i, t) in targets.iter().enumerate() {
            if dead[i] {
                warn(format!(
                    "notification `{event}` to {} not sent (it failed before)",
                    redact_url(&t.url)
                ));
                continue;
            }
            let payload = match t.format {
                Format::Json => body.clone(),
                Format::Slack => serde_json::json!({"text": slack_text(&body)}),
            };
            let mut last = String::new();
            let mut ok = false;
            for attempt in 0..ATTEMPTS {
                if attempt > 0 {
                    std::thread::sleep(Duration::from_millis(200));
                }
                match rt.block_on(client.post(&t.url).json(&payload).send()) {
                    Ok(r) if r.status().is_success() => {
                        ok = true;
                        break;
                    }
                    Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
                    // reqwest's error text contains the URL: never shown.
                    Err(e) if e.is_timeout() => {
                        last = format!("no answer within {}s", TIMEOUT.as_secs())
                    }
                    Err(e) if e.is_connect() => last = "cannot connect".into(),
                    Err(_) => last = "request failed".into(),
                }
            }
            if !ok {
                dead[i] = true;
                warn(format!(
                    "notification `{event}` to {} failed after {ATTEMPTS} attempts: {last}",
                    redact_url(&t.url)
                ));
            }
        }
    }
}

/// One line of text for chat webhooks.
fn slack_text(b: &serde_json::Value) -> String {
    let s = |k: &str| b[k].as_str().unwrap_or("").to_string();
    let title = s("experiment");
    match b["event"].as_str() {
        Some("started") => format!(
            ":test_tube: faultline: *{title}* is about to start (run {}). Hypothesis: {}. Steps: {}.",
            s("run_id"),
            s("hypothesis"),
            b["steps"]
                .as_array()
                .map(|a| a
                    .iter()
                    .map(|x| format!("{} ({})", x["label"].as_str().unwrap_or(""), x["kind"].as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        ),
        Some("fault_injected") => format!(
            ":zap: faultline: *{title}*: fault `{}` ({}) injected into {}",
            s("step"),
            s("kind"),
            s("target")
        ),
        Some("aborted") => format!(
            ":octagonal_sign: faultline: *{title}* aborted: {} ({}); rolling back",
            s("condition"),
            s("reason")
        ),
        Some("finished") => format!(
            "faultline: *{title}* finished: {} (exit {}): {}{}",
            s("verdict").to_uppercase(),
            b["exit_code"],
            s("reason"),
            b["journal"]
                .as_str()
                .map(|j| format!(". Report: {j}"))
                .unwrap_or_default()
        ),
        _ => format!("faultline: {title}: {}", s("event")),
    }
}

impl EventSink for NotifySink {
    fn emit(&mut self, ev: &TimedEvent) {
        let base = |event: &str, title: &str| {
            serde_json::json!({
                "event": event,
                "run_id": ev.run_id,
                "at": ev.at,
                "experiment": title,
            })
        };
        let mut body = match &ev.event {
            Event::RunStarted {
                title,
                hypothesis,
                file,
                probes,
                steps,
            } => {
                self.title = title.clone();
                self.steps = steps.clone();
                let mut b = base("started", title);
                b["hypothesis"] = hypothesis.clone().into();
                b["file"] = file.clone().into();
                b["probes"] = serde_json::json!(probes.iter().map(|p| &p.name).collect::<Vec<_>>());
                b["steps"] = serde_json::json!(steps);
                b
            }
            Event::FaultInjected {
                step, kind, target, ..
            } => {
                let mut b = base("fault_injected", &self.title);
                b["step"] = self
                    .steps
                    .get(*step)
                    .map(|s| s.label.clone())
                    .unwrap_or_else(|| format!("step {}", step + 1))
                    .into();
                b["kind"] = kind.clone().into();
                b["target"] = target.clone().into();
                b
            }
            Event::AbortTriggered {
                condition, reason, ..
            } => {
                let mut b = base("aborted", &self.title);
                b["condition"] = condition.clone().into();
                b["reason"] = reason.clone().into();
                b
            }
            Event::RunFinished {
                verdict,
                exit_code,
                reason,
            } => {
                let mut b = base("finished", &self.title);
                b["verdict"] = serde_json::to_value(verdict).unwrap_or_default();
                b["exit_code"] = (*exit_code).into();
                b["reason"] = reason.clone().into();
                if let Some(j) = &self.journal {
                    b["journal"] = j.clone().into();
                }
                b
            }
            _ => return,
        };
        body["run_id"] = self.run_id.clone().into();
        let _ = self.tx.send(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_anything_secret() {
        assert_eq!(
            redact_url("https://user:pw@hooks.slack.com/services/T0/B0/abcdef?token=x"),
            "https://***@hooks.slack.com/***"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:8080/"),
            "http://127.0.0.1:8080/"
        );
        assert_eq!(redact_url("http://h/?key=secret"), "http://h/***");
        assert_eq!(redact_url("not a url secret"), "(an invalid URL)");
        assert!(check_url("ftp://x/").is_err());
        assert!(check_url("http://127.0.0.1:1/x").is_ok());
    }
}

/// A webhook in the experiment file: `url`, or `url_env` naming an
/// environment variable that holds it (so a token stays out of the file).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, try_from = "RawNotify")]
pub struct NotifySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    #[serde(default)]
    pub format: Format,
}

/// A webhook that gets a JSON POST when the run is about to start, when a
/// fault is injected, when the run is aborted and when it finishes. Give
/// `url` or `url_env`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Notify")]
struct RawNotify {
    /// The webhook URL (http or https). Prefer `url_env` when it holds a token.
    #[serde(default)]
    url: Option<String>,
    /// The name of an environment variable holding the URL.
    #[serde(default)]
    url_env: Option<String>,
    /// `json` (default: faultline's own body) or `slack` (`{"text": ...}`,
    /// for Slack and Mattermost incoming webhooks).
    #[serde(default)]
    format: Format,
}

impl TryFrom<RawNotify> for NotifySpec {
    type Error = String;
    fn try_from(r: RawNotify) -> Result<Self, String> {
        match (&r.url, &r.url_env) {
            (Some(_), Some(_)) => return Err("give `url` or `url_env`, not both".into()),
            (None, None) => {
                return Err(
                    "needs `url` or `url_env` (an environment variable holding the URL)".into(),
                )
            }
            (Some(u), None) => check_url(u)?,
            (None, Some(v)) if v.is_empty() || v.contains('=') || v.contains('\0') => {
                return Err(format!("url_env `{v}` is not an environment variable name"))
            }
            _ => {}
        }
        Ok(NotifySpec {
            url: r.url,
            url_env: r.url_env,
            format: r.format,
        })
    }
}

/// The webhooks of a run: the experiment's and `--notify URL`s. Problems
/// (an unset variable, a bad URL) are warnings: notifications never stop a run.
pub fn targets(specs: &[NotifySpec], cli: &[String]) -> (Vec<Target>, Vec<String>) {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for s in specs {
        match (&s.url, &s.url_env) {
            (Some(u), _) => out.push(Target {
                url: u.clone(),
                format: s.format,
            }),
            (None, Some(var)) => match std::env::var(var) {
                Ok(u) if check_url(&u).is_ok() => out.push(Target {
                    url: u,
                    format: s.format,
                }),
                Ok(u) => warnings.push(format!(
                    "notify: ${var} does not hold a webhook URL ({}); nothing is sent there",
                    check_url(&u).unwrap_err()
                )),
                Err(_) => warnings.push(format!(
                    "notify: the environment variable {var} is not set; nothing is sent to that webhook"
                )),
            },
            (None, None) => {}
        }
    }
    for u in cli {
        match check_url(u) {
            Ok(()) => out.push(Target {
                url: u.clone(),
                format: Format::Json,
            }),
            Err(e) => warnings.push(format!("--notify: {e}; nothing is sent there")),
        }
    }
    (out, warnings)
}
