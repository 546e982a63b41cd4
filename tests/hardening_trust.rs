//! Hostile state directories, undo records, pid files and terminal text,
//! with real second users (useradd), real processes and the built binary.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn unique() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{:08x}", n ^ (std::process::id() << 8))
}

/// A throwaway local user, deleted on drop.
struct TempUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TempUser {
    fn create(tag: &str) -> Option<TempUser> {
        let name = format!("fl{tag}{}", unique());
        let ok = Command::new("useradd")
            .args(["--no-create-home", "--user-group", "--shell", "/bin/false"])
            .arg(&name)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return None;
        }
        let u = nix::unistd::User::from_name(&name).ok().flatten()?;
        Some(TempUser {
            name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        })
    }

    fn chown(&self, p: &Path) {
        std::os::unix::fs::lchown(p, Some(self.uid), Some(self.gid)).unwrap();
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// Two real users, or `None` (and a `skipped:` line) when that is not possible.
fn users(tags: &[&str]) -> Option<Vec<TempUser>> {
    if !is_root() {
        println!("skipped: needs root to create users");
        return None;
    }
    let mut v = Vec::new();
    for t in tags {
        match TempUser::create(t) {
            Some(u) => v.push(u),
            None => {
                println!("skipped: useradd is not available");
                return None;
            }
        }
    }
    Some(v)
}

/// A path that must never appear: the crafted record's `touch` target.
struct Pwned(PathBuf);

impl Drop for Pwned {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A run file an attacker wrote by hand: a dead runner, a `command` undo
/// that runs `touch PWNED`, and a SIGKILL of `victim` (an unrelated process).
fn crafted_run_file(runs: &Path, run_id: &str, pwned: &Path, victim: i32) -> PathBuf {
    std::fs::create_dir_all(runs).unwrap();
    let start = faultline::sys::proc::start_time(victim).unwrap();
    let now = chrono::Utc::now().to_rfc3339();
    let lines = [
        serde_json::json!({"type": "run", "run_id": run_id, "title": "t", "file": "f",
            "runner_pid": 999_999, "runner_start_time": 0, "started_at": now, "deadline": now}),
        serde_json::json!({"type": "undo", "id": 1, "fault": 0,
            "fault_label": "net \u{1b}[2J\u{1b}]0;owned\u{7}", "kind": "network",
            "target": "eth0", "at": now,
            "op": {"op": "command", "argv": ["touch", pwned], "gone_if": []}}),
        serde_json::json!({"type": "undo", "id": 2, "fault": 0, "fault_label": "stress",
            "kind": "cpu_stress", "target": "worker", "at": now, "uid": 0,
            "op": {"op": "kill_process", "pid": victim, "start_time": start}}),
    ];
    let path = runs.join(format!("{run_id}.jsonl"));
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn faultline(state_dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--state-dir")
        .arg(state_dir)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

const TRIVIAL: &str = r#"
title: trivial
hypothesis: true stays true
steady_state:
  interval: 100ms
  probes:
    - name: ok
      command: {run: ["true"]}
      before: {samples: 1}
      after: {within: 3s, successes: 1}
method:
  - pause: 200ms
"#;

fn assert_untouched(pwned: &Path, victim: &ChildGuard) {
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !pwned.exists(),
        "the crafted command ran: {} exists",
        pwned.display()
    );
    assert!(
        faultline::sys::proc::alive(victim.pid()),
        "the crafted SIGKILL reached pid {}",
        victim.pid()
    );
}

#[test]
fn a_state_dir_another_user_owns_or_can_write_is_refused_and_nothing_in_it_runs() {
    let Some(u) = users(&["a"]) else { return };
    let attacker = &u[0];
    let sb = Sandbox::new();
    let victim = sleeper(120);
    let pwned = Pwned(PathBuf::from(format!("/tmp/pwned-{}", unique())));
    let exp = sb.write("e.yaml", TRIVIAL);

    // 1. Owned by another user.
    let sd = sb.path().join("theirs");
    crafted_run_file(&sd.join("runs"), "run-x", &pwned.0, victim.pid());
    for p in [&sd, &sd.join("runs"), &sd.join("runs/run-x.jsonl")] {
        attacker.chown(p);
    }
    std::fs::set_permissions(&sd, std::fs::Permissions::from_mode(0o700)).unwrap();
    for args in [
        &["status"][..],
        &["recover"],
        &["recover", "--force", "run-x"],
    ] {
        let o = faultline(&sd, args);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(77), "{args:?}: {out}");
        assert!(
            out.contains(&sd.display().to_string()) && out.contains(&attacker.name),
            "{args:?}: the message names the directory and its owner: {out}"
        );
        assert_untouched(&pwned.0, &victim);
    }
    let o = faultline(&sd, &["run", "--no-journal", exp.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(77), "{}", text(&o));
    assert!(text(&o).contains("belongs to"), "{}", text(&o));
    // The watchdog replays through the same reader (stdin at EOF: the
    // runner is gone).
    let o = faultline(&sd, &["watchdog", "--run-id", "run-x"]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert_untouched(&pwned.0, &victim);

    // 2. Ours, but writable by others.
    let sd2 = sb.path().join("loose");
    crafted_run_file(&sd2.join("runs"), "run-y", &pwned.0, victim.pid());
    std::fs::set_permissions(&sd2, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = faultline(&sd2, &["recover"]);
    assert_eq!(o.status.code(), Some(77), "{}", text(&o));
    assert!(
        text(&o).contains("chmod go-w"),
        "says how to fix it: {}",
        text(&o)
    );
    assert_untouched(&pwned.0, &victim);

    // 3. A private directory holding a run file the other user owns, and a
    //    run file that is a symbolic link to theirs.
    let sd3 = sb.path().join("mine");
    let f = crafted_run_file(&sd3.join("runs"), "run-z", &pwned.0, victim.pid());
    attacker.chown(&f);
    let elsewhere = sb.path().join("planted.jsonl");
    crafted_run_file(sb.path(), "planted", &pwned.0, victim.pid());
    std::os::unix::fs::symlink(&elsewhere, sd3.join("runs/run-l.jsonl")).unwrap();
    let o = faultline(&sd3, &["status"]);
    assert_eq!(o.status.code(), Some(77), "{}", text(&o));
    assert!(
        text(&o).contains("run-z.jsonl") && text(&o).contains("symbolic link"),
        "{}",
        text(&o)
    );
    let o = faultline(&sd3, &["recover"]);
    assert_eq!(o.status.code(), Some(77), "{}", text(&o));
    assert_untouched(&pwned.0, &victim);
}

#[test]
fn crafted_records_in_a_trusted_dir_are_refused_by_recover_and_the_watchdog() {
    if !is_root() {
        println!("skipped: needs root (the records would run as root)");
        return;
    }
    let sb = Sandbox::new();
    let victim = sleeper(120);
    let pwned = Pwned(PathBuf::from(format!("/tmp/pwned-{}", unique())));
    let sd = sb.state_dir();
    std::fs::create_dir(&sd).unwrap();
    std::fs::set_permissions(&sd, std::fs::Permissions::from_mode(0o700)).unwrap();
    let runs = sd.join("runs");
    crafted_run_file(&runs, "run-r", &pwned.0, victim.pid());
    std::fs::set_permissions(&runs, std::fs::Permissions::from_mode(0o700)).unwrap();

    let st = faultline(&sd, &["status"]);
    let out = text(&st);
    assert_eq!(st.status.code(), Some(1), "{out}");
    assert!(out.contains("refused") && out.contains("touch"), "{out}");
    assert!(
        !out.contains('\u{1b}') && out.contains("\\x1b[2J"),
        "state-file text is escaped: {out:?}"
    );

    let r = faultline(&sd, &["recover"]);
    let out = text(&r);
    assert_eq!(r.status.code(), Some(4), "{out}");
    assert!(
        out.contains("REFUSED") && out.contains("run-r.jsonl"),
        "{out}"
    );
    assert!(out.contains("only tc, ip and nft"), "{out}");
    assert!(out.contains("not a stressor worker"), "{out}");
    assert!(
        !out.contains("by hand"),
        "a refused record is not offered to run by hand: {out}"
    );
    assert_untouched(&pwned.0, &victim);

    // The watchdog of that run (its runner is gone: stdin at EOF).
    let w = faultline(&sd, &["watchdog", "--run-id", "run-r"]);
    assert_eq!(w.status.code(), Some(4), "{}", text(&w));
    assert_untouched(&pwned.0, &victim);
    let log = std::fs::read_to_string(runs.join("run-r.jsonl")).unwrap();
    assert!(log.contains("refused, not run"), "{log}");
}

#[test]
fn the_fallback_state_dir_in_tmp_is_refused_when_another_user_planted_it() {
    let Some(u) = users(&["v", "m"]) else { return };
    let (victim, attacker) = (&u[0], &u[1]);
    let fallback = PathBuf::from(format!("/tmp/faultline-{}", victim.uid));
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _c = Cleanup(fallback.clone());
    let _ = std::fs::remove_dir_all(&fallback);
    let sb = Sandbox::new();
    std::fs::set_permissions(sb.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exp = sb.write("e.yaml", TRIVIAL);
    std::fs::set_permissions(&exp, std::fs::Permissions::from_mode(0o644)).unwrap();
    let as_victim = |args: &[&str]| -> Output {
        Command::new(bin())
            .args(args)
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("FAULTLINE_STATE_DIR")
            .env("NO_COLOR", "1")
            .current_dir(sb.path())
            .stdin(Stdio::null())
            .uid(victim.uid)
            .gid(victim.gid)
            .output()
            .unwrap()
    };

    // A symbolic link planted by the other user, to a directory of theirs.
    let target = sb.path().join("attacker-dir");
    std::fs::create_dir(&target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o777)).unwrap();
    attacker.chown(&target);
    std::os::unix::fs::symlink(&target, &fallback).unwrap();
    attacker.chown(&fallback);
    for args in [
        &["status"][..],
        &["recover"],
        &["run", "--no-journal", "e.yaml"],
    ] {
        let o = as_victim(args);
        assert_eq!(o.status.code(), Some(77), "{args:?}: {}", text(&o));
        assert!(
            text(&o).contains("symbolic link")
                && text(&o).contains(&fallback.display().to_string()),
            "{args:?}: {}",
            text(&o)
        );
    }
    assert!(
        std::fs::read_dir(&target).unwrap().next().is_none(),
        "nothing was created through the link"
    );

    // A directory the other user created there.
    std::fs::remove_file(&fallback).unwrap();
    std::fs::create_dir(&fallback).unwrap();
    std::fs::set_permissions(&fallback, std::fs::Permissions::from_mode(0o777)).unwrap();
    attacker.chown(&fallback);
    let o = as_victim(&["status"]);
    assert_eq!(o.status.code(), Some(77), "{}", text(&o));
    assert!(text(&o).contains(&attacker.name), "{}", text(&o));

    // Gone: the victim's run creates its own, private one.
    std::fs::remove_dir(&fallback).unwrap();
    let o = as_victim(&["run", "--no-journal", "e.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let meta = std::fs::symlink_metadata(&fallback).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert!(meta.is_dir());
    assert_eq!(meta.uid(), victim.uid);
    assert_eq!(meta.mode() & 0o777, 0o700);
}

#[test]
fn status_and_recover_exit_77_when_the_state_dir_is_not_theirs_to_read() {
    let Some(u) = users(&["r"]) else { return };
    let sb = Sandbox::new();
    std::fs::set_permissions(sb.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // root's private state directory, with a run in it.
    let sd = sb.state_dir();
    faultline::journal::store::ensure_state_dir(&sd).unwrap();
    std::fs::write(sd.join("runs/r.jsonl"), "").unwrap();
    for args in [&["status"][..], &["recover"]] {
        let o = Command::new(bin())
            .arg("--state-dir")
            .arg(&sd)
            .args(args)
            .stdin(Stdio::null())
            .uid(u[0].uid)
            .gid(u[0].gid)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(77), "{args:?}: {}", text(&o));
        assert!(text(&o).contains("ermission denied"), "{}", text(&o));
    }
}

/// Runs the binary with a deadline; a hang fails the test instead of blocking it.
fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let start = Instant::now();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !waiter.is_finished() {
        if start.elapsed() > limit {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = waiter.join();
            panic!("faultline did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    waiter.join().unwrap()
}

#[test]
fn pid_files_are_read_bounded_and_never_echoed() {
    let sb = Sandbox::new();
    let secret = sb.write(
        "shadow",
        "root:$6$S3cr3tHashNeverShown$xyz:19000:0:99999:7:::\n",
    );
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let fifo = sb.path().join("fifo.pid");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    for (pidfile, expect) in [
        (secret.clone(), "does not hold a pid"),
        (PathBuf::from("/dev/zero"), "a device"),
        (fifo.clone(), "a FIFO"),
    ] {
        let f = sb.write(
            "p.yaml",
            &format!(
                r#"
title: pidfile
hypothesis: h
steady_state:
  probes:
    - name: ok
      command: {{run: ["true"]}}
method:
  - fault:
      process_pause:
        target: {{pidfile: "{}"}}
    duration: 1s
"#,
                pidfile.display()
            ),
        );
        let o = output_within(sb.cmd().arg("plan").arg(&f), Duration::from_secs(60));
        let out = text(&o);
        assert!(out.contains(expect), "{}: {out}", pidfile.display());
        assert!(
            !out.contains("S3cr3t"),
            "the pid file's content is shown: {out}"
        );
    }
    // The process probe reads pid files the same way, during a run.
    let f = sb.write(
        "probe.yaml",
        &format!(
            r#"
title: pidfile probe
hypothesis: h
steady_state:
  interval: 100ms
  probes:
    - name: svc
      process: {{pidfile: "{}"}}
      before: {{samples: 1}}
method:
  - pause: 100ms
"#,
            secret.display()
        ),
    );
    let o = output_within(
        sb.cmd()
            .args(["run", "--markdown", "r.md", "--journal", "j.json"])
            .arg(&f),
        Duration::from_secs(120),
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let mut all = text(&o);
    for f in ["r.md", "j.json"] {
        all.push_str(&std::fs::read_to_string(sb.path().join(f)).unwrap());
    }
    assert!(all.contains("does not hold a pid"), "{all}");
    assert!(!all.contains("S3cr3t"), "{all}");
}

#[test]
fn escape_sequences_from_the_experiment_are_printed_escaped() {
    let sb = Sandbox::new();
    // An unknown key: validate's own message quotes it.
    let bad = sb.write(
        "bad.yaml",
        "title: t\nhypothesis: h\n\"x\\e[31mred\\e]0;owned\\a\": 1\nsteady_state: {probes: []}\nmethod: []\n",
    );
    let o = sb.cmd().arg("validate").arg(&bad).output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(64), "{out}");
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(out.contains("\\x1b[31m"), "{out:?}");

    let exp = sb.write(
        "e.yaml",
        r#"
title: escapes
hypothesis: h
steady_state:
  interval: 100ms
  probes:
    - name: ok
      command: {run: ["true", "\e[2J\e]0;owned\a\u202e"]}
      before: {samples: 1}
      after: {within: 3s, successes: 1}
method:
  - command: {run: ["true", "\e[5m\x9b31m"]}
"#,
    );
    let o = sb.cmd().arg("validate").arg(&exp).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let plan = sb.cmd().arg("plan").arg(&exp).output().unwrap();
    let hostile = [
        "\u{1b}[2J",
        "\u{1b}]0;",
        "\u{7}",
        "\u{202e}",
        "\u{1b}[5m",
        "\u{9b}",
    ];
    let check = |what: &str, s: &str| {
        for h in hostile {
            assert!(!s.contains(h), "{what} prints {h:?} raw: {s:?}");
        }
        // Markdown lists the steps but not the probes' commands.
        let shown = if what == "markdown" {
            ["\\x1b[5m", "\\u{9b}"]
        } else {
            ["\\x1b[2J", "\\u{202e}"]
        };
        for e in shown {
            assert!(s.contains(e), "{what} does not show {e}: {s:?}");
        }
    };
    check("plan", &text(&plan));
    // With colors on, faultline's own escapes stay and the file's do not.
    let run = sb
        .cmd()
        .args(["--color", "always"])
        .arg("run")
        .arg(&exp)
        .args(["--markdown", "report.md", "--journal", "j.json"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    check("run", &text(&run));
    assert!(
        text(&run).contains("\u{1b}[1;32m"),
        "colors still on: {}",
        text(&run)
    );
    let md = std::fs::read_to_string(sb.path().join("report.md")).unwrap();
    check("markdown", &md);
    let report = sb.cmd().args(["report", "j.json"]).output().unwrap();
    check("report", &text(&report));
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn qdiscs(ns: &str) -> String {
    let o = Command::new("tc")
        .args(["-n", ns, "qdisc", "show", "dev", "lo"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The bounds let through what faultline records: a tbf that replaced the
/// user's own root qdisc, rolled back by the watchdog from the run file
/// after the runner is SIGKILLed (delete `fa17:`, re-create the saved root).
#[test]
fn the_watchdog_still_runs_the_tc_records_faultline_writes() {
    if !is_root() || faultline::sys::exec::find_program("tc").is_none() {
        println!("skipped: needs root and tc (iproute2)");
        return;
    }
    let ns = Netns(format!("flht{}", std::process::id()));
    let _ = Command::new("ip").args(["netns", "del", &ns.0]).output();
    let o = Command::new("ip")
        .args(["netns", "add", &ns.0])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = Command::new("tc")
        .args([
            "-n", &ns.0, "qdisc", "add", "dev", "lo", "root", "handle", "1:",
        ])
        .args(["pfifo", "limit", "77"])
        .output()
        .unwrap();
    if !o.status.success() {
        println!("skipped: cannot add a pfifo qdisc: {}", text(&o));
        return;
    }
    let sb = Sandbox::new();
    let f = sb.write(
        "bw.yaml",
        &format!(
            r#"
title: bandwidth
hypothesis: h
steady_state:
  interval: 200ms
  probes:
    - name: alive
      command: {{run: ["true"]}}
      before: {{samples: 1}}
method:
  - fault:
      bandwidth: {{interface: lo, netns: {ns}, rate: 1mbit, replace_existing_qdisc: true}}
    duration: 60s
"#,
            ns = ns.0
        ),
    );
    let mut child = sb
        .cmd()
        .arg("run")
        .arg(&f)
        .args(["--no-journal", "--events", "events.jsonl"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let events = sb.path().join("events.jsonl");
    let verified = wait_until(Duration::from_secs(30), || {
        std::fs::read_to_string(&events).is_ok_and(|s| s.contains("\"event\":\"fault_verified\""))
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.wait();
    if !verified {
        let ev = std::fs::read_to_string(&events).unwrap_or_default();
        if ev.contains("sch_tbf") || ev.contains("Specified qdisc kind is unknown") {
            println!("skipped: this kernel has no tbf: {ev}");
            return;
        }
        panic!("the fault was not injected and verified: {ev}");
    }
    assert!(
        wait_until(Duration::from_secs(10), || {
            let q = qdiscs(&ns.0);
            !q.contains("tbf") && q.contains("pfifo 1:") && q.contains("limit 77")
        }),
        "the watchdog restored the saved root qdisc: {}",
        qdiscs(&ns.0)
    );
    assert!(wait_until(Duration::from_secs(5), || sb
        .status()
        .status
        .code()
        == Some(0)));
}

// ------------------------------------------------------------ item 10

/// `process_pause` of every `sleep SECS` for 1s, with `limits` as given.
fn pause_all(secs: &str, limits: &str) -> String {
    format!(
        r#"
title: pause by command line
hypothesis: h
{limits}
steady_state:
  interval: 100ms
  probes:
    - name: alive
      command: {{run: ["true"]}}
      before: {{samples: 1}}
method:
  - fault:
      process_pause:
        target: {{cmdline: "^sleep {secs}$"}}
    duration: 1s
"#
    )
}

/// `sleep SECS` in its own process group, as `uid` when given.
fn sleep_as(secs: &str, user: Option<&TempUser>) -> ChildGuard {
    let mut c = Command::new("sleep");
    c.arg(secs).process_group(0);
    if let Some(u) = user {
        c.uid(u.uid).gid(u.gid);
    }
    ChildGuard(c.spawn().unwrap())
}

#[test]
fn selectors_matching_other_users_or_many_processes_need_an_opt_in() {
    let Some(u) = users(&["b"]) else { return };
    let sb = Sandbox::new();
    // A command line no other process has: `sleep 4PPP.NNNNN1`.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let secs = format!(
        "{}.{:05}1",
        4000 + std::process::id() % 1000,
        nanos % 100_000
    );
    let theirs = sleep_as(&secs, Some(&u[0]));
    let mine = sleep_as(&secs, None);
    assert!(wait_until(Duration::from_secs(5), || {
        faultline::sys::proc::cmdline(theirs.pid()).is_some_and(|c| c.starts_with("sleep"))
    }));
    let f = sb.write("e.yaml", &pause_all(&secs, ""));
    let o = sb.cmd().arg("plan").arg(&f).output().unwrap();
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains(&format!("pid {} (sleep, user {}", theirs.pid(), u[0].name))
            && t.contains("limits.blast_radius.other_users: true")
            && !t.contains(&format!("pid {} (sleep, user", mine.pid())),
        "{t}"
    );
    let o = sb
        .cmd()
        .args(["run", "--no-journal"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    assert_ne!(proc_state(theirs.pid()), Some('T'));
    assert_ne!(proc_state(mine.pid()), Some('T'));
    // The experiment opts in: both are paused, and plan says how many.
    let f = sb.write(
        "opt-in.yaml",
        &pause_all(&secs, "limits:\n  blast_radius: {other_users: true}"),
    );
    let o = sb.cmd().arg("plan").arg(&f).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains(
            "hits 2 of 2 matching processes; rules: at most 10 processes (the default blast radius"
        ),
        "{}",
        text(&o)
    );
    let run = sb
        .cmd()
        .args(["run", "--no-journal"])
        .arg(&f)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let both_paused = wait_until(Duration::from_secs(20), || {
        proc_state(theirs.pid()) == Some('T') && proc_state(mine.pid()) == Some('T')
    });
    let out = run.wait_with_output().unwrap();
    assert!(both_paused, "{}", text(&out));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    drop((theirs, mine));

    // More than the default 10 processes: refused unless max_targets allows it.
    let secs = format!("{secs}2");
    let many: Vec<ChildGuard> = (0..11).map(|_| sleep_as(&secs, None)).collect();
    assert!(wait_until(Duration::from_secs(5), || many.iter().all(
        |c| { faultline::sys::proc::cmdline(c.pid()).is_some_and(|c| c.starts_with("sleep")) }
    )));
    let f = sb.write("many.yaml", &pause_all(&secs, ""));
    let o = sb.cmd().arg("plan").arg(&f).output().unwrap();
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    assert!(
        text(&o).contains("would hit 11 processes (11 matched) but the blast-radius limit is 10 (the default blast radius"),
        "{}",
        text(&o)
    );
    let f = sb.write(
        "many-ok.yaml",
        &pause_all(&secs, "limits:\n  blast_radius: {max_targets: 11}"),
    );
    let o = sb.cmd().arg("plan").arg(&f).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("hits 11 of 11 matching processes"),
        "{}",
        text(&o)
    );
}
