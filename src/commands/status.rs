//! `faultline status` and `faultline recover`.

use crate::exit;
use crate::journal::store::{self, Line, RunState};
use crate::journal::trust;
use crate::journal::undo::Applied;
use crate::sys::text::escape_text;
use std::path::Path;

// State files are read as hostile text: everything printed goes through
// `escape_text`.
macro_rules! out {
    ($($t:tt)*) => { println!("{}", escape_text(&format!($($t)*))) };
}
macro_rules! err {
    ($($t:tt)*) => { eprintln!("{}", escape_text(&format!($($t)*))) };
}

fn alive_text(st: &RunState) -> String {
    match &st.header {
        Some(h) => {
            let runner = if st.runner_alive() { "alive" } else { "dead" };
            let wd = match st.watchdog {
                Some((p, t)) if crate::sys::proc::is_same(p, t) => format!(", watchdog {p} alive"),
                Some((p, _)) => format!(", watchdog {p} gone"),
                None => String::new(),
            };
            format!("runner {} {runner}{wd}", h.runner_pid)
        }
        None => "runner unknown (no header)".into(),
    }
}

pub fn status(state_dir: &Path, json: bool) -> i32 {
    let runs = match store::read_all(state_dir) {
        Ok(r) => r,
        Err(e) => {
            err!("faultline: {e:#}");
            return trust::exit_code(&e);
        }
    };
    let mut pending_total = 0;
    let mut untrusted = 0;
    let mut out = Vec::new();
    for st in &runs {
        if let Some(why) = &st.untrusted {
            untrusted += 1;
            if json {
                out.push(serde_json::json!({"file": st.path, "untrusted": why}));
            } else {
                err!("untrusted  {why}");
            }
            continue;
        }
        let pending = st.pending();
        if pending.is_empty() && st.damaged.is_empty() {
            continue;
        }
        pending_total += pending.len();
        if json {
            out.push(serde_json::json!({
                "run_id": st.run_id(),
                "file": st.path,
                "title": st.header.as_ref().map(|h| h.title.clone()),
                "runner_pid": st.header.as_ref().map(|h| h.runner_pid),
                "runner_alive": st.runner_alive(),
                "pending": pending.iter().map(|r| serde_json::json!({
                    "id": r.id, "fault": r.fault_label, "kind": r.kind, "target": r.target,
                    "since": r.at, "undo": r.op.manual_command(),
                    "last_error": st.last_error.get(&r.id),
                    "refused": r.refused,
                })).collect::<Vec<_>>(),
                "damaged_lines": st.damaged.iter().map(|(n, e)| serde_json::json!({"line": n, "error": e})).collect::<Vec<_>>(),
            }));
            continue;
        }
        out!(
            "run {} ({}; {})",
            st.run_id(),
            st.header.as_ref().map(|h| h.title.as_str()).unwrap_or("?"),
            alive_text(st)
        );
        for r in &pending {
            if let Some(why) = &r.refused {
                out!(
                    "  refused  {} [{}] on {} since {}: {why}; faultline will not run it (inspect {})",
                    r.fault_label,
                    r.kind,
                    r.target,
                    r.at.format("%Y-%m-%d %H:%M:%S UTC"),
                    st.path.display()
                );
                continue;
            }
            out!(
                "  pending  {} [{}] on {} since {}  undo: {}",
                r.fault_label,
                r.kind,
                r.target,
                r.at.format("%Y-%m-%d %H:%M:%S UTC"),
                r.op.manual_command()
            );
            if let Some(e) = st.last_error.get(&r.id) {
                out!("           last rollback attempt failed: {e}");
            }
        }
        for (n, e) in &st.damaged {
            out!("  damaged  {}:{n}: {e}", st.path.display());
        }
    }
    emergency_stop(state_dir, json, &mut out);
    let stale = crate::sys::net::stale_probe_netns();
    for ns in &stale {
        let line =
            format!("stale   network namespace {ns} (left by a runner that died during preflight)");
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    pending_total += stale.len();
    if json {
        out!("{}", serde_json::to_string_pretty(&out).unwrap());
    } else if pending_total == 0 && out.is_empty() && untrusted == 0 {
        out!("nothing pending: no fault from any run is active on this host");
    } else if pending_total > 0 {
        out!("{pending_total} pending; run `faultline recover` to roll back");
    }
    if untrusted > 0 {
        exit::PRIVILEGES
    } else if pending_total == 0 {
        exit::HELD
    } else {
        1
    }
}

/// The emergency stop switch, when set (see `faultline halt`).
fn emergency_stop(state_dir: &Path, json: bool, out: &mut Vec<serde_json::Value>) {
    use crate::runner::control::{self, Found};
    let path = control::halt_path(state_dir);
    match control::read(&path) {
        Found::None => {}
        Found::Request(r) if json => out.push(serde_json::json!({
            "emergency_stop": {"file": path, "by": r.by, "at": r.at, "reason": r.reason}
        })),
        Found::Untrusted(why) if json => out.push(serde_json::json!({
            "emergency_stop": {"file": path, "untrusted": why}
        })),
        Found::Request(r) => out!(
            "HALTED  the emergency stop is set ({}, by {}); no experiment starts until `faultline halt --clear`",
            path.display(),
            r.describe()
        ),
        Found::Untrusted(why) => out!(
            "HALTED  something untrusted is in the place of the emergency stop switch, so no experiment starts: {why}"
        ),
    }
}

pub fn recover(state_dir: &Path, run_id: Option<&str>, force: bool) -> i32 {
    let runs = match store::read_all(state_dir) {
        Ok(r) => r,
        Err(e) => {
            err!("faultline: {e:#}");
            return trust::exit_code(&e);
        }
    };
    let mut matched = false;
    let mut failed = Vec::new();
    let mut refused = 0;
    let mut untrusted = 0;
    let mut done = 0;
    // Live runs left alone: not a failed rollback, the run is busy.
    let mut busy = 0;
    for st in runs {
        let id = st.run_id();
        if run_id.is_some_and(|r| r != id) {
            continue;
        }
        matched = true;
        if let Some(why) = &st.untrusted {
            err!("faultline: {why}; nothing in it was run");
            untrusted += 1;
            continue;
        }
        for (n, e) in &st.damaged {
            err!(
                "warning: {}:{n} could not be read ({e}); recovering everything else in the file",
                st.path.display()
            );
        }
        let pending: Vec<_> = st.pending().into_iter().cloned().collect();
        if st.is_live() && !force {
            if !pending.is_empty() {
                let pid = st.header.as_ref().map(|h| h.runner_pid).unwrap_or(0);
                err!(
                    "run {id} is still running (runner pid {pid} is alive), so nothing of it was rolled back: its runner rolls back its {} pending operation(s) itself when the run ends, and its watchdog does if the runner dies. Wait for it to end, stop it with `kill -TERM {pid}` (it rolls back, then exits), or roll back under it now with `faultline recover --force {id}`.",
                    pending.len()
                );
                busy += 1;
            }
            continue;
        }
        let mut file = match store::open_append(&st.path) {
            Ok(f) => f,
            Err(e) => {
                err!("faultline: {e:#}");
                return trust::exit_code(&e);
            }
        };
        let results = store::replay(&mut file, &pending, "recover", 3);
        for r in &results {
            match &r.result {
                Ok(a) => {
                    done += 1;
                    out!(
                        "{} {} [{}] on {}: {}",
                        id,
                        r.record.fault_label,
                        r.record.kind,
                        r.record.target,
                        match a {
                            Applied::Done => "rolled back",
                            Applied::AlreadyGone => "already gone (nothing to do)",
                        }
                    );
                }
                Err(e) if r.record.refused.is_some() => {
                    err!(
                        "{} {} [{}] on {}: REFUSED: {e} (in {}; inspect the file, then remove it)",
                        id,
                        r.record.fault_label,
                        r.record.kind,
                        r.record.target,
                        st.path.display()
                    );
                    refused += 1;
                }
                Err(e) => {
                    err!(
                        "{} {} [{}] on {}: FAILED: {e}",
                        id,
                        r.record.fault_label,
                        r.record.kind,
                        r.record.target
                    );
                    failed.push(r.record.op.manual_command());
                }
            }
        }
        let left = results.iter().filter(|r| r.result.is_err()).count();
        if left == 0 {
            let _ = store::append_line(
                &mut file,
                &Line::End {
                    at: chrono::Utc::now(),
                },
            );
            drop(file);
            if st.damaged.is_empty() {
                let _ = std::fs::remove_file(&st.path);
            } else {
                let kept = st.path.with_extension("jsonl.damaged");
                let _ = std::fs::rename(&st.path, &kept);
                err!(
                    "the damaged run file was kept as {} for inspection",
                    kept.display()
                );
            }
        }
    }
    if run_id.is_none() {
        for ns in crate::sys::net::stale_probe_netns() {
            match crate::sys::net::remove_probe_netns(&ns) {
                Ok(()) => {
                    done += 1;
                    println!("network namespace {ns} (stale preflight probe): removed");
                }
                Err(e) => {
                    eprintln!("network namespace {ns} (stale preflight probe): FAILED: {e}");
                    failed.push(format!("ip netns del {ns}"));
                }
            }
        }
    }
    if let Some(r) = run_id {
        if !matched {
            err!(
                "faultline: no run `{r}` in {}; `faultline status` lists runs with pending faults",
                state_dir.display()
            );
            return exit::INVALID;
        }
    }
    if untrusted > 0 {
        return exit::PRIVILEGES;
    }
    if failed.is_empty() && refused == 0 {
        if busy > 0 {
            // 69 (unavailable): the run is busy, not broken; 4 would say a
            // rollback failed.
            return exit::PRECONDITION;
        }
        if done == 0 {
            out!("nothing to recover");
        }
        exit::HELD
    } else {
        if !failed.is_empty() {
            err!("Not everything could be rolled back. Left to do by hand:");
            for f in &failed {
                err!("  {f}");
            }
        }
        exit::ROLLBACK_FAILED
    }
}
