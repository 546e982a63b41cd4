//! Alert silences against a real Alertmanager (Debian's
//! `prometheus-alertmanager`, started on a loopback port with a temporary
//! config and storage): the silence is active while the run injects and
//! expired after it, also when the runner is SIGKILLed (the watchdog
//! expires it); a URL with credentials from `url_env` never reaches a file;
//! an Alertmanager that is down stops the run before anything changes.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;

const AM: &str = "prometheus-alertmanager";

struct Alertmanager {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    fn start() -> Option<Alertmanager> {
        let found = Command::new(AM)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("am.yml");
        std::fs::write(
            &cfg,
            "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(AM)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // No gossip: a single instance on loopback.
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let am = Alertmanager {
            child,
            port,
            _dir: dir,
        };
        let ready = wait_until(Duration::from_secs(30), || {
            get(am.port, "/-/ready").is_some_and(|(s, _)| s == 200)
        });
        assert!(ready, "Alertmanager did not become ready");
        Some(am)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn silences(&self) -> Vec<serde_json::Value> {
        let (s, body) = get(self.port, "/api/v2/silences").expect("Alertmanager answers");
        assert_eq!(s, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The silences of this test's runs (there is only ever one per test).
    fn ours(&self) -> Vec<serde_json::Value> {
        self.silences()
            .into_iter()
            .filter(|s| {
                s["comment"]
                    .as_str()
                    .is_some_and(|c| c.contains("[faultline run "))
            })
            .collect()
    }

    fn state_of_ours(&self) -> Option<String> {
        let ours = self.ours();
        assert!(ours.len() <= 1, "{ours:#?}");
        ours.first()
            .and_then(|s| s["status"]["state"].as_str())
            .map(str::to_string)
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET on loopback: status and body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn experiment(pid: i32, duration: &str, silence: &str) -> String {
    format!(
        r#"
title: silenced game day
hypothesis: the sleeper sleeps on
limits:
  max_duration: 2m
steady_state:
  interval: 100ms
  probes:
    - name: shell
      command: {{run: ["true"]}}
      before: {{samples: 1}}
      after: {{within: 5s, successes: 1}}
silence:
{silence}
method:
  - name: pause the sleeper
    fault:
      process_pause:
        target: {{pid: {pid}}}
    duration: {duration}
"#
    )
}

fn silence_yaml(url_line: &str) -> String {
    format!(
        r#"  {url_line}
  matchers: ['alertname="FaultlineTest"', 'service=~"api|web"']
  comment: game day, see the runbook
  created_by: facilitator"#
    )
}

fn spawn_run(sb: &Sandbox, file: &std::path::Path, env: &[(&str, &str)]) -> Child {
    let mut c = sb.cmd();
    c.arg("run")
        .arg(file)
        .args(["--journal", "journal.json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

struct Kill(Option<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn paused(pid: i32) -> bool {
    wait_until(Duration::from_secs(30), || proc_state(pid) == Some('T'))
}

fn resumed(pid: i32) -> bool {
    wait_until(Duration::from_secs(30), || {
        matches!(proc_state(pid), Some('S') | Some('R'))
    })
}

#[test]
fn the_silence_is_active_during_the_run_and_expired_after_it() {
    let Some(am) = Alertmanager::start() else {
        eprintln!("skipped: {AM} is not installed");
        return;
    };
    let sb = Sandbox::new();
    let target = sleeper(300);
    let f = sb.write(
        "e.yaml",
        &experiment(
            target.pid(),
            "4s",
            &silence_yaml(&format!("url: {}", am.url())),
        ),
    );
    let mut run = Kill(Some(spawn_run(&sb, &f, &[])));
    assert!(paused(target.pid()), "the fault was injected");
    // While the fault is in: the silence is there and active.
    let ours = am.ours();
    assert_eq!(ours.len(), 1, "{ours:#?}");
    let s = &ours[0];
    assert_eq!(s["status"]["state"], "active", "{s:#}");
    assert_eq!(s["createdBy"], "facilitator", "{s:#}");
    let comment = s["comment"].as_str().unwrap();
    assert!(
        comment.starts_with("game day, see the runbook [faultline run "),
        "{comment}"
    );
    let matchers = s["matchers"].as_array().unwrap();
    assert!(matchers.iter().any(|m| m["name"] == "alertname"
        && m["value"] == "FaultlineTest"
        && m["isRegex"] == false));
    assert!(matchers
        .iter()
        .any(|m| m["name"] == "service" && m["value"] == "api|web" && m["isRegex"] == true));

    let o = run.0.take().unwrap().wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("silence "),
        "{}",
        text(&o)
    );
    assert_eq!(am.state_of_ours().as_deref(), Some("expired"));
    let st = sb.status();
    assert_eq!(st.status.code(), Some(0), "{}", text(&st));
}

#[test]
fn the_watchdog_expires_the_silence_when_the_runner_is_killed() {
    let Some(am) = Alertmanager::start() else {
        eprintln!("skipped: {AM} is not installed");
        return;
    };
    let sb = Sandbox::new();
    let target = sleeper(300);
    let f = sb.write(
        "e.yaml",
        &experiment(
            target.pid(),
            "60s",
            &silence_yaml(&format!("url: {}", am.url())),
        ),
    );
    let mut run = Kill(Some(spawn_run(&sb, &f, &[])));
    assert!(paused(target.pid()), "the fault was injected");
    assert_eq!(am.state_of_ours().as_deref(), Some("active"));

    let mut child = run.0.take().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
    // The watchdog rolls back: the process runs again, the silence expires.
    assert!(resumed(target.pid()), "the watchdog resumed the process");
    let mut state = None;
    let expired = wait_until(Duration::from_secs(30), || {
        state = am.state_of_ours();
        state.as_deref() == Some("expired")
    });
    assert!(expired, "silence state {state:?}");
}

#[test]
fn a_url_with_credentials_from_the_environment_is_never_written() {
    let Some(am) = Alertmanager::start() else {
        eprintln!("skipped: {AM} is not installed");
        return;
    };
    let sb = Sandbox::new();
    let target = sleeper(300);
    let secret = "s3cr3t-t0ken";
    let url = format!("http://faultline:{secret}@127.0.0.1:{}", am.port);
    let f = sb.write(
        "e.yaml",
        &experiment(target.pid(), "1s", &silence_yaml("url_env: AM_URL")),
    );
    let run = spawn_run(&sb, &f, &[("AM_URL", &url)]);
    let o = run.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!text(&o).contains(secret), "{}", text(&o));
    assert_eq!(am.state_of_ours().as_deref(), Some("expired"));
    // Nothing under the sandbox (journal, state files, watchdog log) holds it.
    let mut files = vec![sb.path().to_path_buf()];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if let Ok(b) = std::fs::read(&p) {
            let t = String::from_utf8_lossy(&b);
            assert!(!t.contains(secret), "{} holds the secret", p.display());
        }
    }
}

#[test]
fn an_alertmanager_that_is_down_stops_the_run_before_anything_changes() {
    let sb = Sandbox::new();
    let target = sleeper(300);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = sb.write(
        "e.yaml",
        &experiment(
            target.pid(),
            "5s",
            &silence_yaml(&format!("url: http://127.0.0.1:{port}")),
        ),
    );
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("cannot connect to Alertmanager"), "{out}");
    assert!(out.contains("no silence was created"), "{out}");
    assert_ne!(proc_state(target.pid()), Some('T'));
    let j = sb.journal();
    assert!(j["faults"].as_array().is_none_or(|f| f.is_empty()), "{j:#}");
}

#[test]
fn validate_names_what_is_wrong_with_a_silence() {
    let sb = Sandbox::new();
    for (silence, says) in [
        ("  matchers: ['a=\"b\"']", "needs `url` or `url_env`"),
        (
            "  url: http://127.0.0.1:9093\n  matchers: []",
            "needs at least one matcher",
        ),
        (
            "  url: http://127.0.0.1:9093\n  matchers: ['nothing here']",
            "has no operator",
        ),
        (
            "  url: ftp://x\n  matchers: ['a=\"b\"']",
            "not an http(s) URL",
        ),
    ] {
        let f = sb.write("bad.yaml", &experiment(1234, "1s", silence));
        let o = sb.cmd().arg("validate").arg(&f).output().unwrap();
        assert_eq!(o.status.code(), Some(64), "{}", text(&o));
        assert!(text(&o).contains(says), "{says}: {}", text(&o));
    }
}
