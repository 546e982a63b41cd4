//! Game days: the big red button. `faultline stop` from a second invocation
//! stops a real run in the middle of its method (a paused `sleep`), which
//! rolls back and ends ABORTED; `faultline halt` stops running experiments
//! and keeps new ones from starting until `--clear`. Real processes, real
//! signals, a private state directory; no root needed.

mod support;

use std::process::{Child, Output, Stdio};
use std::time::Duration;
use support::*;

fn experiment(pid: i32, duration: &str) -> String {
    format!(
        r#"
title: game day
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
method:
  - name: pause the sleeper
    fault:
      process_pause:
        target: {{pid: {pid}}}
    duration: {duration}
"#
    )
}

fn me() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .unwrap()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// The runner in the background (SIGKILLed if the test fails first).
struct Runner(Option<Child>);
impl Runner {
    fn start(sb: &Sandbox, file: &std::path::Path) -> Runner {
        let child = sb
            .cmd()
            .env_remove("SUDO_USER")
            .arg("run")
            .arg(file)
            .args([
                "--journal",
                "journal.json",
                "--junit",
                "junit.xml",
                "--markdown",
                "report.md",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Runner(Some(child))
    }
    fn wait(mut self) -> Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}
impl Drop for Runner {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn faultline(sb: &Sandbox, args: &[&str]) -> Output {
    sb.cmd()
        .env_remove("SUDO_USER")
        .args(args)
        .output()
        .unwrap()
}

fn paused(pid: i32) -> bool {
    wait_until(Duration::from_secs(30), || proc_state(pid) == Some('T'))
}

fn stop_files(sb: &Sandbox) -> Vec<String> {
    std::fs::read_dir(sb.state_dir().join("runs"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".stop"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn faultline_stop_from_a_second_terminal_rolls_back_a_run_mid_method() {
    let sb = Sandbox::new();
    let target = sleeper(300);
    let f = sb.write("e.yaml", &experiment(target.pid(), "60s"));
    let runner = Runner::start(&sb, &f);
    assert!(paused(target.pid()), "the fault was injected");

    let stop = faultline(&sb, &["stop", "--reason", "the pager went off"]);
    assert_eq!(stop.status.code(), Some(0), "{}", text(&stop));
    let said = String::from_utf8_lossy(&stop.stdout);
    assert!(said.contains("stopping "), "{said}");
    assert!(
        said.contains("stopped; everything was rolled back"),
        "{said}"
    );
    // `stop` returned after the rollback: the process runs again.
    let s = proc_state(target.pid()).unwrap();
    assert!(s == 'S' || s == 'R', "resumed, state {s}");

    let o = runner.wait();
    assert_eq!(o.status.code(), Some(2), "ABORTED: {}", text(&o));
    let stopped_by = format!("stopped by {} via faultline stop", me());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("ABORTED (exit 2)") && out.contains(&stopped_by),
        "{out}"
    );
    assert!(out.contains("the pager went off"), "{out}");
    let j = sb.journal();
    assert_eq!(j["outcome"]["verdict"], "aborted", "{j:#}");
    assert_eq!(j["abort"]["condition"], stopped_by.as_str(), "{j:#}");
    assert_eq!(j["faults"][0]["rolled_back"], true, "{j:#}");
    let junit = std::fs::read_to_string(sb.path().join("junit.xml")).unwrap();
    assert!(junit.contains(&stopped_by), "{junit}");
    let md = std::fs::read_to_string(sb.path().join("report.md")).unwrap();
    assert!(md.contains(&stopped_by), "{md}");

    let st = sb.status();
    assert_eq!(st.status.code(), Some(0), "{}", text(&st));
    assert!(stop_files(&sb).is_empty(), "{:?}", stop_files(&sb));
}

#[test]
fn stop_names_what_it_cannot_stop() {
    let sb = Sandbox::new();
    let o = faultline(&sb, &["stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing to stop"));
    let o = faultline(&sb, &["stop", "--all"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = faultline(&sb, &["stop", "../halt"]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a run id"));
    let o = faultline(&sb, &["stop", "20260101-000000-abcd"]);
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no experiment with run id"));
    assert!(!sb.state_dir().join("halt").exists());
}

#[test]
fn halt_stops_a_running_experiment_and_refuses_new_ones_until_cleared() {
    let sb = Sandbox::new();
    let target = sleeper(300);
    let f = sb.write("e.yaml", &experiment(target.pid(), "60s"));

    // A running experiment stops when the switch is set.
    let runner = Runner::start(&sb, &f);
    assert!(paused(target.pid()), "the fault was injected");
    let h = faultline(&sb, &["halt", "--reason", "incident 4711"]);
    assert_eq!(h.status.code(), Some(0), "{}", text(&h));
    let said = String::from_utf8_lossy(&h.stdout);
    assert!(said.contains("emergency stop set"), "{said}");
    assert!(
        said.contains("stopped; everything was rolled back"),
        "{said}"
    );
    let o = runner.wait();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("stopped by {} via faultline halt", me())),
        "{out}"
    );
    assert!(out.contains("incident 4711"), "{out}");
    let s = proc_state(target.pid()).unwrap();
    assert!(s == 'S' || s == 'R', "resumed, state {s}");

    // `status` shows the switch; a new run refuses with exit 69 naming it.
    let st = sb.status();
    let st_out = String::from_utf8_lossy(&st.stdout);
    assert!(
        st_out.contains("HALTED") && st_out.contains("incident 4711"),
        "{}",
        text(&st)
    );
    let st = faultline(&sb, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v[0]["emergency_stop"]["reason"], "incident 4711", "{v:#}");
    assert_eq!(v[0]["emergency_stop"]["by"], me().as_str(), "{v:#}");

    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    let all = text(&o);
    assert!(all.contains("emergency stop is set"), "{all}");
    assert!(
        all.contains(&sb.state_dir().join("halt").display().to_string()),
        "{all}"
    );
    assert!(
        all.contains(&me()) && all.contains("incident 4711"),
        "{all}"
    );
    assert_eq!(proc_state(target.pid()), Some('S'), "nothing injected");

    // Cleared: runs start again.
    let c = faultline(&sb, &["halt", "--clear"]);
    assert_eq!(c.status.code(), Some(0), "{}", text(&c));
    assert!(String::from_utf8_lossy(&c.stdout).contains("emergency stop cleared"));
    assert!(!sb.state_dir().join("halt").exists());
    let f = sb.write("short.yaml", &experiment(target.pid(), "200ms"));
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let st = sb.status();
    assert_eq!(st.status.code(), Some(0), "{}", text(&st));
    assert!(!String::from_utf8_lossy(&st.stdout).contains("HALTED"));
}

#[test]
fn a_stop_request_that_others_could_have_written_is_not_honoured() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let target = sleeper(300);
    let f = sb.write("e.yaml", &experiment(target.pid(), "1500ms"));
    let runner = Runner::start(&sb, &f);
    assert!(paused(target.pid()), "the fault was injected");
    // A world-writable stop request for the live run.
    let runs = sb.state_dir().join("runs");
    let id = std::fs::read_dir(&runs)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find_map(|n| n.strip_suffix(".jsonl").map(str::to_string))
        .expect("a live run file");
    let planted = runs.join(format!("{id}.stop"));
    std::fs::write(
        &planted,
        r#"{"by":"mallory","uid":0,"pid":1,"at":"2026-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = runner.wait();
    assert_eq!(o.status.code(), Some(0), "ran to the end: {}", text(&o));
    let all = text(&o);
    assert!(!all.contains("mallory"), "{all}");
    assert!(all.contains("ignoring a stop request"), "{all}");
    assert!(!planted.exists(), "the runner removes its request file");
}

/// A daily UTC window from `from_h` to `to_h` hours from now (minutes kept).
fn window_experiment(from_h: i64, to_h: i64, max_duration: &str) -> String {
    let now = chrono::Utc::now();
    let at = |h: i64| {
        (now + chrono::Duration::hours(h))
            .format("%H:%M")
            .to_string()
    };
    format!(
        r#"
title: windowed
hypothesis: true stays true
limits: {{max_duration: {max_duration}}}
schedule:
  window: "daily {}-{}"
  timezone: UTC
steady_state:
  interval: 100ms
  probes:
    - name: shell
      command: {{run: ["true"]}}
      before: {{samples: 1}}
      after: {{within: 5s, successes: 1}}
method:
  - pause: 100ms
"#,
        at(from_h),
        at(to_h)
    )
}

#[test]
fn a_run_outside_its_schedule_window_is_refused_with_the_next_window() {
    let sb = Sandbox::new();
    let f = sb.write("outside.yaml", &window_experiment(2, 3, "1m"));
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("outside the experiment's schedule window daily"),
        "{err}"
    );
    assert!(
        err.contains("the next window opens")
            && (err.contains("(in 1h 59m)") || err.contains("(in 2h 0m)")),
        "{err}"
    );
    assert!(err.contains("--outside-window"), "{err}");
    assert!(!sb.path().join("journal.json").exists(), "nothing was run");

    let p = faultline(&sb, &["plan", f.to_str().unwrap()]);
    assert_eq!(p.status.code(), Some(69), "{}", text(&p));
    let plan = String::from_utf8_lossy(&p.stdout);
    assert!(plan.contains("now outside the window"), "{plan}");
    assert!(plan.contains("[FAIL] schedule window"), "{plan}");

    let o = sb.run(&f, &["--outside-window"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Inside: it runs; but not when the run could outlast the window.
    let f = sb.write("inside.yaml", &window_experiment(-1, 2, "1m"));
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let p = faultline(&sb, &["plan", "--format", "json", f.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&p.stdout).unwrap();
    assert_eq!(v["schedule"]["inside"], true, "{v:#}");
    let f = sb.write("long.yaml", &window_experiment(-1, 2, "3h"));
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("may take up to 3h") && err.contains("closes at"),
        "{err}"
    );
}

/// A webhook receiver on loopback: records every POST (path and JSON body)
/// in order and answers 200; `hang` accepts and never answers.
struct Receiver {
    port: u16,
    got: std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    fn start(hang: bool) -> Receiver {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, st) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !st.load(Ordering::SeqCst) {
                let Ok((mut s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                if hang {
                    held.push(s);
                    continue;
                }
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, len) = loop {
                    let Ok(n) = s.read(&mut chunk) else {
                        break (0, 0);
                    };
                    if n == 0 {
                        break (0, 0);
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (i + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    match s.read(&mut chunk) {
                        Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => break,
                    }
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let body = serde_json::from_slice(&buf[head_end..]).unwrap_or_default();
                g.lock().unwrap().push((path, body));
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
        Receiver { port, got, stop }
    }
    fn events(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b["event"].as_str().unwrap_or("?").to_string())
            .collect()
    }
    fn bodies(&self) -> Vec<serde_json::Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn with_notify(exp: String, notify: &str) -> String {
    format!("{exp}notify:\n{notify}\n")
}

#[test]
fn webhooks_hear_start_injection_and_the_verdict_in_order_and_no_secret_leaks() {
    let sb = Sandbox::new();
    let target = sleeper(300);
    let (json, slack, cli) = (
        Receiver::start(false),
        Receiver::start(false),
        Receiver::start(false),
    );
    let secret = "s3cr3t-t0ken-4711";
    let exp = with_notify(
        experiment(target.pid(), "300ms"),
        &format!(
            "  - url_env: FAULTLINE_TEST_HOOK\n  - url: http://127.0.0.1:{}/slack\n    format: slack",
            slack.port
        ),
    );
    let f = sb.write("e.yaml", &exp);
    let o = sb
        .cmd()
        .env(
            "FAULTLINE_TEST_HOOK",
            format!("http://127.0.0.1:{}/hook?token={secret}", json.port),
        )
        .arg("run")
        .arg(&f)
        .args([
            "--journal",
            "journal.json",
            "--markdown",
            "report.md",
            "--junit",
            "junit.xml",
        ])
        .args(["--notify", &format!("http://127.0.0.1:{}/cli", cli.port)])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(json.events(), ["started", "fault_injected", "finished"]);
    assert_eq!(cli.events(), ["started", "fault_injected", "finished"]);
    let b = json.bodies();
    assert_eq!(
        json.got.lock().unwrap()[0].0,
        format!("/hook?token={secret}")
    );
    assert_eq!(b[0]["experiment"], "game day");
    assert_eq!(b[0]["steps"][0]["label"], "pause the sleeper", "{:#}", b[0]);
    assert_eq!(b[1]["kind"], "process_pause");
    assert_eq!(b[2]["verdict"], "held");
    assert_eq!(b[2]["exit_code"], 0);
    let journal = b[2]["journal"].as_str().unwrap();
    assert!(
        journal.ends_with("journal.json") && std::path::Path::new(journal).exists(),
        "{journal}"
    );
    let texts: Vec<String> = slack
        .bodies()
        .iter()
        .map(|b| b["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(
        texts[0].contains("*game day* is about to start"),
        "{texts:?}"
    );
    assert!(texts[2].contains("finished: HELD (exit 0)"), "{texts:?}");
    // The token appears nowhere a person or a file would see it.
    let mut seen = text(&o);
    for f in ["journal.json", "report.md", "junit.xml"] {
        seen.push_str(&std::fs::read_to_string(sb.path().join(f)).unwrap());
    }
    assert!(!seen.contains(secret), "{seen}");
}

#[test]
fn a_receiver_that_is_down_or_hangs_costs_the_rollback_nothing_and_is_a_warning() {
    let sb = Sandbox::new();
    let target = sleeper(300);
    let hang = Receiver::start(true);
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let exp = with_notify(
        experiment(target.pid(), "300ms"),
        &format!(
            "  - url: http://127.0.0.1:{down}/down?key=abcdef123\n  - url: http://127.0.0.1:{}/hang",
            hang.port
        ),
    );
    let f = sb.write("e.yaml", &exp);
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(0), "held all the same: {}", text(&o));
    let j = sb.journal();
    let rollback = j["timings"]["rollback_ms"].as_f64().unwrap();
    assert!(rollback < 1000.0, "rollback took {rollback}ms: {j:#}");
    let warnings: Vec<String> = j["warnings"]
        .as_array()
        .expect("warnings in the journal")
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    let all = warnings.join("\n");
    assert!(
        all.contains(&format!("http://127.0.0.1:{down}/*** failed"))
            && all.contains("cannot connect"),
        "{all}"
    );
    assert!(all.contains("no answer within"), "{all}");
    assert!(!all.contains("abcdef123"), "{all}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Warnings"), "{out}");
    let md = std::fs::read_to_string(sb.path().join("report.md")).unwrap();
    assert!(md.contains("## Warnings"), "{md}");
}

#[test]
fn a_stopped_run_notifies_aborted_then_finished() {
    let sb = Sandbox::new();
    let target = sleeper(300);
    let rx = Receiver::start(false);
    let exp = with_notify(
        experiment(target.pid(), "60s"),
        &format!("  - url: http://127.0.0.1:{}/", rx.port),
    );
    let f = sb.write("e.yaml", &exp);
    let runner = Runner::start(&sb, &f);
    assert!(paused(target.pid()));
    let s = faultline(&sb, &["stop"]);
    assert_eq!(s.status.code(), Some(0), "{}", text(&s));
    let o = runner.wait();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(
        rx.events(),
        ["started", "fault_injected", "aborted", "finished"]
    );
    let b = rx.bodies();
    assert!(
        b[2]["condition"]
            .as_str()
            .unwrap()
            .contains("via faultline stop"),
        "{:#}",
        b[2]
    );
    assert_eq!(b[3]["verdict"], "aborted");
}
