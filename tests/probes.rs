//! The five probe kinds against real servers, processes and a real Prometheus.

use faultline::experiment::model::Probe;
use faultline::probe::{ProbeContext, ProbeRunner, Sample};
use faultline::report::record::SampleStatus;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RUN_ID: &str = "run-test-1234";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A string unique to this test process and call.
fn unique() -> String {
    format!(
        "{}{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

fn probe(yaml: &str) -> Probe {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("bad probe yaml: {e}\n{yaml}"))
}

fn runner(yaml: &str) -> ProbeRunner {
    ProbeRunner::new(
        &probe(yaml),
        &ProbeContext {
            run_id: RUN_ID.into(),
        },
    )
    .unwrap_or_else(|e| panic!("probe cannot run: {e}\n{yaml}"))
}

fn build_err(yaml: &str) -> String {
    match ProbeRunner::new(&probe(yaml), &ProbeContext::default()) {
        Ok(r) => panic!("expected `new` to fail, got a probe: {}", r.describe()),
        Err(e) => e,
    }
}

fn assert_status(s: &Sample, want: SampleStatus) {
    assert_eq!(s.status, want, "sample: {s:?}");
}

/// A port that was bound and closed again: connecting to it is refused.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------- HTTP server

#[derive(Clone, Debug, Default)]
struct Request {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

/// A tiny HTTP/1.1 server on 127.0.0.1:0, one thread per connection.
/// Routes: `/ok`, `/status/<code>`, `/json`, `/slow/<ms>`, `/echo`.
struct TestServer {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs, stopped) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let reqs = reqs.clone();
                std::thread::spawn(move || handle(conn, reqs));
            }
        });
        TestServer {
            port,
            requests,
            stop,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests_to(&self, path: &str) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn handle(conn: TcpStream, reqs: Arc<Mutex<Vec<Request>>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    let _ = reader.read_exact(&mut body);
    let req = Request {
        method,
        path: path.clone(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    reqs.lock().unwrap().push(req.clone());

    let (code, ctype, text) = if path == "/ok" {
        (200, "text/plain", "hello, all ok".to_string())
    } else if let Some(c) = path.strip_prefix("/status/") {
        (
            c.parse().unwrap_or(500),
            "text/plain",
            format!("status {c}"),
        )
    } else if path == "/json" {
        (
            200,
            "application/json",
            r#"{"status":"up","n":3,"ratio":0.5,"checks":[{"name":"db","ok":true}]}"#.into(),
        )
    } else if let Some(ms) = path.strip_prefix("/slow/") {
        std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(5000)));
        (200, "text/plain", "finally".into())
    } else if path == "/echo" {
        (200, "text/plain", format!("{} {}", req.method, req.body))
    } else {
        (404, "text/plain", "not found".into())
    };
    let mut w = conn;
    let _ = write!(
        w,
        "HTTP/1.1 {code} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = w.flush();
}

// ---------------------------------------------------------------- http

#[tokio::test]
async fn http_success_carries_the_run_id_header() {
    let srv = TestServer::start();
    let r = runner(&format!(
        "name: web\nhttp:\n  url: {}\nexpect:\n  body_contains: all ok\n",
        srv.url("/ok")
    ));
    assert!(r.describe().contains("GET"), "{}", r.describe());
    let s = r.sample().await;
    assert_status(&s, SampleStatus::Success);
    assert_eq!(s.detail, "200");
    let got = srv.requests_to("/ok");
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].headers.get("x-faultline-run-id").map(String::as_str),
        Some(RUN_ID),
        "headers: {:?}",
        got[0].headers
    );
}

#[tokio::test]
async fn http_status_expectations() {
    let srv = TestServer::start();
    let s = runner(&format!(
        "name: w\nhttp:\n  url: {}\n",
        srv.url("/status/503")
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Failure);
    assert!(
        s.detail.contains("503") && s.detail.contains("2xx"),
        "{}",
        s.detail
    );

    let s = runner(&format!(
        "name: w\nhttp:\n  url: {}\nexpect:\n  status: [503, \"200-204\"]\n",
        srv.url("/status/503")
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Success);
    assert_eq!(s.detail, "503");

    // Redirects are not followed: the service's own answer is judged.
    let s = runner(&format!(
        "name: w\nhttp:\n  url: {}\n",
        srv.url("/status/302")
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Failure);
    assert!(s.detail.contains("302"), "{}", s.detail);
}

#[tokio::test]
async fn http_body_and_json_expectations() {
    let srv = TestServer::start();
    let json = srv.url("/json");
    // A YAML float equals a JSON integer when the numbers are equal.
    let s = runner(&format!(
        "name: j\nhttp:\n  url: {json}\nexpect:\n  json:\n    pointer: /n\n    equals: 3.0\n"
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Success);

    let s = runner(&format!(
        "name: j\nhttp:\n  url: {json}\nexpect:\n  json:\n    pointer: /checks/0/ok\n    equals: true\n"
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Success);

    let s = runner(&format!(
        "name: j\nhttp:\n  url: {json}\nexpect:\n  json:\n    pointer: /status\n    equals: down\n"
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Failure);
    assert!(
        s.detail.contains(r#"/status is "up", expected "down""#),
        "{}",
        s.detail
    );

    // A JSON expectation on a non-JSON body: the check cannot run.
    let s = runner(&format!(
        "name: j\nhttp:\n  url: {}\nexpect:\n  json:\n    pointer: /status\n    equals: up\n",
        srv.url("/ok")
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Error);
    assert!(s.detail.contains("not JSON"), "{}", s.detail);

    let s = runner(&format!(
        "name: b\nhttp:\n  url: {}\nexpect:\n  body_matches: '^hello, \\w+ ok$'\n",
        srv.url("/ok")
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Success);

    let s = runner(&format!(
        "name: b\nhttp:\n  url: {}\nexpect:\n  body_matches: '^\\d+$'\n",
        srv.url("/ok")
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Failure);
    assert!(s.detail.contains("does not match"), "{}", s.detail);
}

#[tokio::test]
async fn http_method_headers_and_body_are_sent() {
    let srv = TestServer::start();
    let s = runner(&format!(
        "name: p\nhttp:\n  url: {}\n  method: post\n  headers:\n    X-Test: yes-please\n  body: ping\nexpect:\n  body_contains: POST ping\n",
        srv.url("/echo")
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Success);
    let got = srv.requests_to("/echo");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].body, "ping");
    assert_eq!(
        got[0].headers.get("x-test").map(String::as_str),
        Some("yes-please")
    );
    assert_eq!(
        got[0].headers.get("x-faultline-run-id").map(String::as_str),
        Some(RUN_ID)
    );
}

#[tokio::test]
async fn http_refused_connection_is_an_error() {
    let port = closed_port();
    let s = runner(&format!(
        "name: r\nhttp:\n  url: http://127.0.0.1:{port}/\ntimeout: 2s\n"
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Error);
    assert!(
        s.detail
            .contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{}",
        s.detail
    );
    assert!(s.detail.to_lowercase().contains("refused"), "{}", s.detail);
}

#[tokio::test]
async fn http_timeout_is_an_error_within_the_timeout() {
    let srv = TestServer::start();
    let r = runner(&format!(
        "name: slow\nhttp:\n  url: {}\ntimeout: 300ms\n",
        srv.url("/slow/5000")
    ));
    let t = Instant::now();
    let s = r.sample().await;
    let took = t.elapsed();
    assert_status(&s, SampleStatus::Error);
    assert!(s.detail.contains("timed out after 300ms"), "{}", s.detail);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(took >= Duration::from_millis(250), "took {took:?}");
}

#[tokio::test]
async fn http_latency_below_fails_a_slow_answer() {
    let srv = TestServer::start();
    let s = runner(&format!(
        "name: slow\nhttp:\n  url: {}\ntimeout: 5s\nexpect:\n  latency_below: 50ms\n",
        srv.url("/slow/400")
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Failure);
    assert!(s.detail.contains("expected below 50ms"), "{}", s.detail);
    assert!(s.latency >= Duration::from_millis(400), "{:?}", s.latency);
}

#[tokio::test]
async fn http_bad_specs_fail_at_new() {
    let e = build_err("name: x\nhttp:\n  url: not-a-url\n");
    assert!(e.contains("not-a-url") && e.contains("not a URL"), "{e}");
    let e = build_err("name: x\nhttp:\n  url: http://127.0.0.1:1/\nexpect:\n  body_matches: '('\n");
    assert!(e.contains("body_matches") && e.contains("regex"), "{e}");
    let e = build_err("name: x\nhttp:\n  url: http://127.0.0.1:1/\n  method: 'GE T'\n");
    assert!(e.contains("not an HTTP method"), "{e}");
}

// ---------------------------------------------------------------- tcp

#[tokio::test]
async fn tcp_connect_ok_and_refused() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let s = runner(&format!(
        "name: t\ntcp:\n  host: 127.0.0.1\n  port: {port}\n"
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Success);
    assert!(s.detail.contains(&port.to_string()), "{}", s.detail);

    // Host names are resolved.
    let s = runner(&format!(
        "name: t\ntcp:\n  host: localhost\n  port: {port}\n"
    ))
    .sample()
    .await;
    // localhost may resolve to ::1 first; the IPv4 address is tried too.
    assert_status(&s, SampleStatus::Success);
    drop(l);

    let port = closed_port();
    let s = runner(&format!(
        "name: t\ntcp:\n  host: 127.0.0.1\n  port: {port}\n"
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Error);
    assert!(s.detail.to_lowercase().contains("refused"), "{}", s.detail);
}

#[tokio::test]
async fn tcp_unresolvable_host_is_an_error() {
    let t = Instant::now();
    let s = runner("name: t\ntcp:\n  host: no-such-host.invalid\n  port: 80\ntimeout: 2s\n")
        .sample()
        .await;
    assert_status(&s, SampleStatus::Error);
    assert!(
        s.detail.contains("no-such-host.invalid") || s.detail.contains("timed out"),
        "{}",
        s.detail
    );
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

#[tokio::test]
async fn tcp_latency_below_applies() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    // Nothing connects in under a nanosecond... but 1us is the smallest unit.
    let s = runner(&format!(
        "name: t\ntcp:\n  host: 127.0.0.1\n  port: {port}\nexpect:\n  latency_below: 1us\n"
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Failure);
    assert!(s.detail.contains("expected below 1us"), "{}", s.detail);
}

// ---------------------------------------------------------------- command

/// Pids of live (non-zombie) processes whose command line contains `needle`.
fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if cmd.contains(needle) && !zombie {
            out.push(pid);
        }
    }
    out
}

/// A `sleep` duration that is unique in the process table (`30.<unique>`).
fn unique_sleep() -> String {
    format!("30.{}", unique())
}

#[tokio::test]
async fn command_exit_codes() {
    let s = runner("name: c\ncommand:\n  run: [sh, -c, 'echo oops >&2; exit 3']\n")
        .sample()
        .await;
    assert_status(&s, SampleStatus::Failure);
    assert!(s.detail.contains("exit 3, expected exit 0"), "{}", s.detail);
    assert!(s.detail.contains("oops"), "{}", s.detail);

    let s = runner("name: c\ncommand:\n  run: [sh, -c, 'exit 3']\nexpect:\n  exit_code: 3\n")
        .sample()
        .await;
    assert_status(&s, SampleStatus::Success);
    assert_eq!(s.detail, "exit 3");

    let s = runner("name: c\ncommand:\n  run: ['true']\n")
        .sample()
        .await;
    assert_status(&s, SampleStatus::Success);
    assert_eq!(s.detail, "exit 0");
}

#[tokio::test]
async fn command_output_env_and_cwd() {
    let s = runner(
        "name: c\ncommand:\n  run: [sh, -c, 'echo version 1.22.3']\nexpect:\n  stdout_matches: '^version \\d+\\.\\d+\\.\\d+$'\n",
    )
    .sample()
    .await;
    assert_status(&s, SampleStatus::Success);

    let s = runner(
        "name: c\ncommand:\n  run: [sh, -c, 'echo version one']\nexpect:\n  stdout_matches: 'version \\d+'\n",
    )
    .sample()
    .await;
    assert_status(&s, SampleStatus::Failure);
    assert!(s.detail.contains("stdout does not match"), "{}", s.detail);
    assert!(s.detail.contains("version one"), "{}", s.detail);

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let s = runner(&format!(
        "name: c\ncommand:\n  run: [sh, -c, 'echo \"$GREETING $FAULTLINE_RUN_ID\"; pwd; echo warn >&2']\n  cwd: {d}\n  env:\n    GREETING: hi\nexpect:\n  stdout_contains: \"hi {RUN_ID}\\n{d}\"\n  stderr_contains: warn\n"
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Success);
}

#[tokio::test]
async fn command_chatty_output_is_bounded_and_does_not_block() {
    // 20 MB on stdout: the probe must drain it (no pipe deadlock) and finish.
    let t = Instant::now();
    let s = runner(
        "name: c\ncommand:\n  run: [sh, -c, 'head -c 20000000 /dev/zero; echo done >&2']\ntimeout: 20s\nexpect:\n  stderr_contains: done\n",
    )
    .sample()
    .await;
    assert_status(&s, SampleStatus::Success);
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
}

#[tokio::test]
async fn command_timeout_kills_the_child_and_is_an_error() {
    let arg = unique_sleep();
    let r = runner(&format!(
        "name: c\ncommand:\n  run: [sleep, '{arg}']\ntimeout: 300ms\n"
    ));
    let task = tokio::spawn(async move {
        let t = Instant::now();
        let s = r.sample().await;
        (s, t.elapsed())
    });
    // See the child while it runs, so we know its pid.
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = pids_with_cmdline(&format!("sleep {arg}"));
        if !seen.is_empty() || task.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (s, took) = task.await.unwrap();
    assert_status(&s, SampleStatus::Error);
    assert!(s.detail.contains("timed out after 300ms"), "{}", s.detail);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(seen.len(), 1, "the sleep child was never seen running");
    let pid = seen[0];
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "sleep child {pid} is still there (alive or unreaped)"
    );
    assert!(pids_with_cmdline(&format!("sleep {arg}")).is_empty());
}

#[tokio::test]
async fn command_timeout_kills_the_whole_process_group() {
    let a = unique_sleep();
    let b = unique_sleep();
    let s = runner(&format!(
        "name: c\ncommand:\n  run: [sh, -c, 'sleep {a} & sleep {b}; wait']\ntimeout: 500ms\n"
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Error);
    // SIGKILL is asynchronous for grandchildren (reaped by init): allow a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left: Vec<i32> = [&a, &b]
            .iter()
            .flat_map(|x| pids_with_cmdline(&format!("sleep {x}")))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn command_background_child_holding_stdout_is_killed() {
    let a = unique_sleep();
    let t = Instant::now();
    let s = runner(&format!(
        "name: c\ncommand:\n  run: [sh, -c, 'sleep {a} & echo started']\ntimeout: 700ms\n"
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Error);
    assert!(s.detail.contains("kept stdout/stderr open"), "{}", s.detail);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let deadline = Instant::now() + Duration::from_secs(3);
    while !pids_with_cmdline(&format!("sleep {a}")).is_empty() {
        assert!(Instant::now() < deadline, "background sleep left behind");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn command_missing_program_fails_at_new() {
    let e = build_err("name: c\ncommand:\n  run: [faultline-no-such-program, --version]\n");
    assert!(e.contains("`faultline-no-such-program`"), "{e}");
    assert!(e.contains("not on PATH"), "{e}");
    let e = build_err("name: c\ncommand:\n  run: [/nonexistent/bin/tool]\n");
    assert!(e.contains("/nonexistent/bin/tool"), "{e}");
    let e = build_err("name: c\ncommand:\n  run: ['true']\n  cwd: /nonexistent/dir\n");
    assert!(e.contains("/nonexistent/dir"), "{e}");
    let e = build_err("name: c\ncommand:\n  run: ['true']\nexpect:\n  stdout_matches: '[a-'\n");
    assert!(e.contains("stdout_matches"), "{e}");
}

// ---------------------------------------------------------------- process

/// Children killed and reaped when dropped.
struct Kids(Vec<Child>);

impl Kids {
    fn spawn(program: &Path, arg: &str, n: usize) -> Self {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(
                Command::new(program)
                    .arg(arg)
                    .stdin(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display())),
            );
        }
        Kids(v)
    }
    fn kill_all(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        self.kill_all();
    }
}

fn which(prog: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(prog);
        if p.is_file() {
            return p;
        }
    }
    panic!("{prog} not found on PATH");
}

#[tokio::test]
async fn process_by_cmdline_with_count_bounds() {
    let arg = unique_sleep();
    let re = format!("(^|/)sleep {}$", arg.replace('.', "\\\\."));
    let mut kids = Kids::spawn(&which("sleep"), &arg, 2);
    let base = format!("name: p\nprocess:\n  cmdline: \"{re}\"\n");

    let s = runner(&base).sample().await;
    assert_status(&s, SampleStatus::Success);
    assert_eq!(s.detail, "2 processes");

    let s = runner(&format!(
        "{base}expect:\n  count:\n    min: 2\n    max: 2\n"
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Success);

    let s = runner(&format!("{base}expect:\n  count:\n    max: 1\n"))
        .sample()
        .await;
    assert_status(&s, SampleStatus::Failure);
    assert!(s.detail.contains("2 processes"), "{}", s.detail);
    assert!(s.detail.contains("at most 1"), "{}", s.detail);
    for k in &kids.0 {
        assert!(s.detail.contains(&k.id().to_string()), "{}", s.detail);
    }

    let s = runner(&format!("{base}expect:\n  running: false\n"))
        .sample()
        .await;
    assert_status(&s, SampleStatus::Failure);

    kids.kill_all();
    let s = runner(&base).sample().await;
    assert_status(&s, SampleStatus::Failure);
    assert!(s.detail.contains("no process"), "{}", s.detail);
    let s = runner(&format!("{base}expect:\n  running: false\n"))
        .sample()
        .await;
    assert_status(&s, SampleStatus::Success);
}

#[tokio::test]
async fn process_by_exact_name() {
    // A copy of `sleep` under a unique name (<= 15 chars, the comm limit).
    let dir = tempfile::tempdir().unwrap();
    let name = format!("fls{}", unique());
    let name = &name[..name.len().min(15)];
    let bin = dir.path().join(name);
    std::fs::copy(which("sleep"), &bin).unwrap();
    let mut kids = Kids::spawn(&bin, "30", 1);
    // Wait until exec has replaced the comm.
    let pid = kids.0[0].id();
    for _ in 0..100 {
        if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    let s = runner(&format!(
        "name: p\nprocess:\n  name: {name}\nexpect:\n  count:\n    min: 1\n    max: 1\n"
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Success);
    assert_eq!(s.detail, "1 process");

    // Exact, not a prefix.
    let s = runner(&format!(
        "name: p\nprocess:\n  name: {}\n",
        &name[..name.len() - 1]
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Failure);

    kids.kill_all();
    let s = runner(&format!("name: p\nprocess:\n  name: {name}\n"))
        .sample()
        .await;
    assert_status(&s, SampleStatus::Failure);
}

#[tokio::test]
async fn process_by_pidfile_excludes_zombies() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("svc.pid");
    let yaml = format!("name: p\nprocess:\n  pidfile: {}\n", pidfile.display());

    // No pidfile: no process.
    let s = runner(&yaml).sample().await;
    assert_status(&s, SampleStatus::Failure);
    assert!(s.detail.contains("does not exist"), "{}", s.detail);

    let mut kids = Kids::spawn(&which("sleep"), &unique_sleep(), 1);
    let pid = kids.0[0].id();
    std::fs::write(&pidfile, format!("{pid}\n")).unwrap();
    let s = runner(&yaml).sample().await;
    assert_status(&s, SampleStatus::Success);
    assert_eq!(s.detail, "1 process");

    // Killed but not reaped: a zombie is not running.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    }) {
        assert!(Instant::now() < deadline, "child never became a zombie");
        std::thread::sleep(Duration::from_millis(10));
    }
    let s = runner(&yaml).sample().await;
    assert_status(&s, SampleStatus::Failure);
    assert!(s.detail.contains(&pid.to_string()), "{}", s.detail);
    kids.kill_all();

    std::fs::write(&pidfile, "garbage").unwrap();
    let s = runner(&yaml).sample().await;
    assert_status(&s, SampleStatus::Error);
    assert!(s.detail.contains("does not hold a pid"), "{}", s.detail);
}

#[tokio::test]
async fn process_bad_specs_fail_at_new() {
    let e = build_err("name: p\nprocess:\n  cmdline: '(('\n");
    assert!(e.contains("cmdline") && e.contains("regex"), "{e}");
    let e = build_err("name: p\nprocess:\n  name: a\n  cmdline: b\n");
    assert!(e.contains("exactly one"), "{e}");
}

// ---------------------------------------------------------------- prometheus

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A real Prometheus on 127.0.0.1 scraping itself every second; killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = closed_port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Waits for /-/ready.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready = runner(&format!(
            "name: ready\nhttp:\n  url: {}/-/ready\ntimeout: 2s\n",
            self.url()
        ));
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("prometheus exited ({st}):\n{}", self.log());
            }
            if ready.sample().await.is_success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready after 60s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn probe(&self, query: &str, expect: &str) -> ProbeRunner {
        runner(&format!(
            "name: prom\nprometheus:\n  url: {}\n  query: '{}'\ntimeout: 5s\n{expect}",
            self.url(),
            query.replace('\'', "''")
        ))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn prometheus_queries_against_a_real_server() {
    if !Path::new(PROMETHEUS).exists() {
        println!("skipped: prometheus not installed (apt-get install prometheus)");
        return;
    }
    let mut prom = Prometheus::start();
    prom.wait_ready().await;

    // `up` has data only after the first scrape: poll.
    let up = prom.probe("up", "expect:\n  value:\n    min: 1\n    max: 1\n");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut s = up.sample().await;
    while !s.is_success() {
        assert!(
            Instant::now() < deadline,
            "`up` never became 1: {s:?}\n{}",
            prom.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        s = up.sample().await;
    }
    assert_eq!(s.detail, "value 1");

    let s = prom.probe("prometheus_build_info", "").sample().await;
    assert_status(&s, SampleStatus::Success);
    assert_eq!(s.detail, "value 1");

    let s = prom.probe("count(up)", "").sample().await;
    assert_status(&s, SampleStatus::Success);
    assert_eq!(s.detail, "value 1");

    // A scalar result.
    let s = prom.probe("scalar(up) + 41", "").sample().await;
    assert_status(&s, SampleStatus::Success);
    assert_eq!(s.detail, "value 42");

    // Out of bounds: the check ran and the value is wrong.
    let s = prom
        .probe("up", "expect:\n  value:\n    min: 2\n")
        .sample()
        .await;
    assert_status(&s, SampleStatus::Failure);
    assert_eq!(s.detail, "value 1, expected at least 2");

    // Invalid PromQL: Prometheus answers an error.
    let s = prom.probe("up{", "").sample().await;
    assert_status(&s, SampleStatus::Error);
    assert!(s.detail.contains("bad_data"), "{}", s.detail);

    // No such series: empty vector.
    let s = prom.probe("up{job=\"no-such-job\"}", "").sample().await;
    assert_status(&s, SampleStatus::Error);
    assert!(s.detail.contains("no data"), "{}", s.detail);

    // Two series.
    let s = prom
        .probe(
            "up or label_replace(up, \"copy\", \"yes\", \"job\", \".*\")",
            "",
        )
        .sample()
        .await;
    assert_status(&s, SampleStatus::Error);
    assert!(s.detail.contains("2 series"), "{}", s.detail);

    // NaN.
    let s = prom.probe("vector(0/0)", "").sample().await;
    assert_status(&s, SampleStatus::Error);
    assert!(s.detail.contains("NaN"), "{}", s.detail);

    // The run id reaches Prometheus too (it ignores it): nothing to assert
    // there, but an unreachable server is an error sample.
    let port = closed_port();
    let s = runner(&format!(
        "name: prom\nprometheus:\n  url: http://127.0.0.1:{port}\n  query: up\ntimeout: 2s\n"
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Error);
    assert!(
        s.detail.contains("cannot connect to prometheus"),
        "{}",
        s.detail
    );
}

#[tokio::test]
async fn prometheus_answering_garbage_is_an_error() {
    // An ordinary web server at the Prometheus url: not an API answer.
    let srv = TestServer::start();
    let s = runner(&format!(
        "name: prom\nprometheus:\n  url: {}\n  query: up\n",
        srv.url("")
    ))
    .sample()
    .await;
    assert_status(&s, SampleStatus::Error);
    assert!(
        s.detail.contains("not a Prometheus API answer"),
        "{}",
        s.detail
    );
    let got = srv.requests_to("/api/v1/query?query=up");
    assert_eq!(got.len(), 1, "{:?}", srv.requests.lock().unwrap());
    assert_eq!(
        got[0].headers.get("x-faultline-run-id").map(String::as_str),
        Some(RUN_ID)
    );
}

/// A host without CA certificates (a minimal VM or container): plain http
/// probes still work, and an https target is refused up front with what to
/// install. The binary runs with rustls pointed at an empty certificate store.
#[test]
fn without_ca_certificates_http_works_and_https_says_what_to_install() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::write(certs.join("empty.pem"), "").unwrap();
    let run = |scheme: &str| {
        let exp = dir.path().join(format!("{scheme}.yaml"));
        std::fs::write(
            &exp,
            format!(
                "title: no CA\nhypothesis: h\nsteady_state:\n  interval: 100ms\n  probes:\n    - name: web\n      http: {{url: \"{scheme}://127.0.0.1:{port}/\"}}\n      before: {{samples: 2}}\nmethod:\n  - pause: 100ms\n"
            ),
        )
        .unwrap();
        Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args(["run", "-q", "--no-journal"])
            .arg(&exp)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .env("SSL_CERT_FILE", certs.join("empty.pem"))
            .env("SSL_CERT_DIR", &certs)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let o = run("http");
    let text =
        String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "http without CA certificates: {text}"
    );
    let o = run("https");
    let text =
        String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(69), "{text}");
    assert!(
        text.contains("ca-certificates"),
        "says what to install: {text}"
    );
}
