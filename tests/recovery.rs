//! `faultline status` and `faultline recover` against state files left by a
//! run whose runner and watchdog are gone, with real processes and files.

mod support;

use faultline::journal::store::{RunHeader, RunJournal};
use faultline::journal::undo::UndoOp;
use std::io::Write;
use std::time::Duration;
use support::*;

/// A header for a run whose runner is dead (a child that already exited).
fn dead_header(run_id: &str) -> RunHeader {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id() as i32;
    let start_time = faultline::sys::proc::start_time(pid).unwrap_or(1);
    c.wait().unwrap();
    RunHeader {
        journal: None,
        run_id: run_id.into(),
        title: "left behind".into(),
        file: "x.yaml".into(),
        runner_pid: pid,
        runner_start_time: start_time,
        started_at: chrono::Utc::now(),
        deadline: chrono::Utc::now(),
        targets: vec![],
    }
}

fn paused_sleeper() -> (ChildGuard, u64) {
    let s = sleeper(60);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.pid()),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(2), || proc_state(s.pid()) == Some('T')));
    let st = faultline::sys::proc::start_time(s.pid()).unwrap();
    (s, st)
}

#[test]
fn recover_undoes_what_a_dead_run_left_and_is_idempotent() {
    let sb = Sandbox::new();
    let (proc_, start_time) = paused_sleeper();
    // Named as disk_fill names its files: recover removes nothing else.
    let fill = sb.path().join(".faultline-fill-run-a-1");
    std::fs::write(&fill, "x").unwrap();
    let mut j = RunJournal::create(&sb.state_dir(), dead_header("run-a")).unwrap();
    j.record(
        0,
        "pause it",
        "process_pause",
        "pid",
        UndoOp::ResumeProcess {
            pid: proc_.pid(),
            start_time,
        },
    )
    .unwrap();
    j.record(
        1,
        "fill",
        "disk_fill",
        "fill",
        UndoOp::RemoveFile { path: fill.clone() },
    )
    .unwrap();
    drop(j);

    let st = sb.status();
    assert_eq!(st.status.code(), Some(1), "{}", text(&st));
    let out = text(&st);
    assert!(
        out.contains("run-a") && out.contains("process_pause") && out.contains("dead"),
        "{out}"
    );

    let r = sb.cmd().arg("recover").output().unwrap();
    assert_eq!(r.status.code(), Some(0), "{}", text(&r));
    assert!(wait_until(Duration::from_secs(2), || proc_state(
        proc_.pid()
    ) != Some('T')));
    assert!(!fill.exists());
    assert_eq!(sb.status().status.code(), Some(0));

    let again = sb.cmd().arg("recover").output().unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(text(&again).contains("nothing to recover"));
}

#[test]
fn a_corrupted_state_file_is_reported_and_the_rest_recovered() {
    let sb = Sandbox::new();
    let (proc_, start_time) = paused_sleeper();
    let mut j = RunJournal::create(&sb.state_dir(), dead_header("run-b")).unwrap();
    j.record(
        0,
        "pause it",
        "process_pause",
        "pid",
        UndoOp::ResumeProcess {
            pid: proc_.pid(),
            start_time,
        },
    )
    .unwrap();
    let path = j.path().to_path_buf();
    drop(j);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"this is not json\n{\"type\":\"undo\",\"id\":2,\"fau")
        .unwrap();
    drop(f);

    let st = sb.status();
    assert_eq!(st.status.code(), Some(1));
    assert!(text(&st).contains("damaged"), "{}", text(&st));

    let r = sb.cmd().arg("recover").output().unwrap();
    assert_eq!(r.status.code(), Some(0), "{}", text(&r));
    assert!(text(&r).contains("could not be read"), "{}", text(&r));
    assert!(wait_until(Duration::from_secs(2), || proc_state(
        proc_.pid()
    ) != Some('T')));
    assert!(
        path.with_extension("jsonl.damaged").exists(),
        "kept for inspection"
    );
    assert_eq!(sb.status().status.code(), Some(0));
}

#[test]
fn recover_leaves_a_live_run_alone_unless_forced() {
    let sb = Sandbox::new();
    let me = std::process::id() as i32;
    let fill = sb.path().join(".faultline-fill-run-c-1");
    std::fs::write(&fill, "x").unwrap();
    let mut h = dead_header("run-c");
    h.runner_pid = me;
    h.runner_start_time = faultline::sys::proc::start_time(me).unwrap();
    let mut j = RunJournal::create(&sb.state_dir(), h).unwrap();
    j.record(
        0,
        "fill",
        "disk_fill",
        "fill",
        UndoOp::RemoveFile { path: fill.clone() },
    )
    .unwrap();
    let r = sb.cmd().arg("recover").output().unwrap();
    // 69 (busy), not 4: nothing failed, the run is still going on.
    assert_eq!(r.status.code(), Some(69), "{}", text(&r));
    let t = text(&r);
    assert!(
        t.contains("run run-c is still running (runner pid")
            && t.contains("nothing of it was rolled back")
            && t.contains("faultline recover --force run-c"),
        "{t}"
    );
    assert!(
        !t.contains("FAILED") && !t.contains("Not everything could be rolled back"),
        "a live run is not a failed rollback: {t}"
    );
    assert!(fill.exists());
    let forced = sb
        .cmd()
        .args(["recover", "--force", "run-c"])
        .output()
        .unwrap();
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced));
    assert!(!fill.exists());
}

#[test]
fn an_undo_that_cannot_be_applied_reports_the_manual_command_and_exits_4() {
    let sb = Sandbox::new();
    let mut j = RunJournal::create(&sb.state_dir(), dead_header("run-d")).unwrap();
    j.record(
        0,
        "net",
        "network",
        "eth-test",
        // An undo faultline records, in a network namespace that is gone.
        UndoOp::Command {
            argv: [
                "ip",
                "-n",
                "fl-no-such-ns-d",
                "link",
                "del",
                "dev",
                "flifb0000000d",
            ]
            .map(String::from)
            .to_vec(),
            gone_if: vec!["Cannot find".into()],
        },
    )
    .unwrap();
    drop(j);
    let r = sb.cmd().arg("recover").output().unwrap();
    assert_eq!(r.status.code(), Some(4), "{}", text(&r));
    let out = text(&r);
    assert!(
        out.contains("fl-no-such-ns-d") && out.contains("by hand"),
        "{out}"
    );
    let st = sb.status();
    assert_eq!(st.status.code(), Some(1));
    assert!(
        text(&st).contains("last rollback attempt failed"),
        "{}",
        text(&st)
    );
}

#[test]
fn recover_of_an_unknown_run_id_is_a_usage_error() {
    let sb = Sandbox::new();
    let r = sb.cmd().args(["recover", "no-such-run"]).output().unwrap();
    assert_eq!(r.status.code(), Some(64), "{}", text(&r));
}
