//! `faultline stop` and `faultline halt`: the big red button, from any
//! terminal. Both leave a request file the running runners poll (see
//! [`crate::runner::control`]) and wait until those runs have rolled back.

use crate::exit;
use crate::journal::store::{self, RunState};
use crate::journal::trust;
use crate::runner::control::{self, Found, Request};
use crate::sys::text::escape_text;
use std::path::Path;
use std::time::{Duration, Instant};

macro_rules! out {
    ($($t:tt)*) => { println!("{}", escape_text(&format!($($t)*))) };
}
macro_rules! err {
    ($($t:tt)*) => { eprintln!("{}", escape_text(&format!($($t)*))) };
}

/// How `stop` and `halt` wait for the runs they stop.
pub struct Wait {
    pub wait: bool,
    pub timeout: Duration,
}

fn live_runs(state_dir: &Path) -> Result<Vec<RunState>, i32> {
    match store::read_all(state_dir) {
        Ok(runs) => Ok(runs
            .into_iter()
            .filter(|r| r.untrusted.is_none() && r.header.is_some() && r.is_live())
            .collect()),
        Err(e) => {
            err!("faultline: {e:#}");
            Err(trust::exit_code(&e))
        }
    }
}

fn describe(st: &RunState) -> String {
    let h = st.header.as_ref().expect("live runs have a header");
    format!(
        "{} (\"{}\", runner pid {})",
        h.run_id, h.title, h.runner_pid
    )
}

/// `faultline stop [RUN_ID|--all]`.
pub fn stop(
    state_dir: &Path,
    run_id: Option<&str>,
    all: bool,
    reason: Option<String>,
    wait: Wait,
) -> i32 {
    if let Some(id) = run_id {
        if !control::valid_run_id(id) {
            err!("faultline: `{id}` is not a run id (they look like 20261127-145103-3f2a; `faultline status` lists runs)");
            return exit::INVALID;
        }
    }
    let live = match live_runs(state_dir) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let chosen: Vec<RunState> = match (run_id, all) {
        (Some(id), _) => {
            let found: Vec<RunState> = live.into_iter().filter(|r| r.run_id() == id).collect();
            if found.is_empty() {
                err!(
                    "faultline: no experiment with run id {id} is running in {} (it may have ended; `faultline status` shows what is pending)",
                    state_dir.display()
                );
                return exit::PRECONDITION;
            }
            found
        }
        (None, true) => live,
        (None, false) if live.len() > 1 => {
            err!(
                "faultline: {} experiments are running; name one, or stop them all with `faultline stop --all`:",
                live.len()
            );
            for r in &live {
                err!("  {}", describe(r));
            }
            return exit::INVALID;
        }
        (None, false) => live,
    };
    if chosen.is_empty() {
        out!("nothing to stop: no experiment is running");
        return exit::HELD;
    }
    let req = Request::from_me(reason);
    for st in &chosen {
        let path = control::stop_path(state_dir, &st.run_id());
        if let Err(e) = control::write(&path, &req) {
            err!(
                "faultline: cannot ask run {} to stop: cannot write {}: {e}",
                st.run_id(),
                path.display()
            );
            return trust::io_code(&e);
        }
        out!("stopping {}", describe(st));
    }
    let code = wait_for(&chosen, &wait);
    if wait.wait {
        for st in &chosen {
            let _ = control::remove(&control::stop_path(state_dir, &st.run_id()));
        }
    }
    code
}

/// `faultline halt [--reason TEXT]`: sets the switch, then waits for every
/// running experiment to stop.
pub fn halt(state_dir: &Path, reason: Option<String>, wait: Wait) -> i32 {
    if let Err(e) = trust::ensure_state_dir(state_dir) {
        err!("faultline: {}", e.message);
        return e.code;
    }
    let path = control::halt_path(state_dir);
    match control::read(&path) {
        Found::Request(r) => out!(
            "the emergency stop was already set ({}, by {})",
            path.display(),
            r.describe()
        ),
        Found::Untrusted(why) => {
            err!("faultline: {why}");
            return exit::PRIVILEGES;
        }
        Found::None => {
            let req = Request::from_me(reason);
            if let Err(e) = control::write(&path, &req) {
                err!(
                    "faultline: cannot set the emergency stop: cannot write {}: {e}",
                    path.display()
                );
                return trust::io_code(&e);
            }
            out!(
                "emergency stop set ({}, by {}): running experiments stop and roll back; new ones refuse to start until `faultline halt --clear`",
                path.display(),
                req.describe()
            );
        }
    }
    let live = match live_runs(state_dir) {
        Ok(l) => l,
        Err(code) => return code,
    };
    for st in &live {
        out!("stopping {}", describe(st));
    }
    wait_for(&live, &wait)
}

/// `faultline halt --clear`.
pub fn clear(state_dir: &Path) -> i32 {
    let path = control::halt_path(state_dir);
    let was = control::read(&path);
    if was == Found::None {
        out!("the emergency stop is not set; experiments may start");
        return exit::HELD;
    }
    // An untrusted file in its place is removed too: clearing is what the
    // user asked for, and nothing in it is read.
    if let Err(e) = control::remove(&path) {
        err!(
            "faultline: cannot clear the emergency stop: cannot remove {}: {e}",
            path.display()
        );
        return trust::io_code(&e);
    }
    match was {
        Found::Request(r) => out!(
            "emergency stop cleared (it was set by {}); experiments may start again",
            r.describe()
        ),
        _ => out!(
            "emergency stop cleared ({} removed); experiments may start again",
            path.display()
        ),
    }
    exit::HELD
}

/// Waits until every run in `runs` has ended, and says how each ended.
fn wait_for(runs: &[RunState], wait: &Wait) -> i32 {
    if !wait.wait || runs.is_empty() {
        return exit::HELD;
    }
    let end = Instant::now() + wait.timeout;
    let mut left: Vec<&RunState> = runs.iter().collect();
    let mut code = exit::HELD;
    while !left.is_empty() {
        let mut still = Vec::new();
        for st in left {
            let now = store::read_run(&st.path).ok();
            match now {
                Some(n) if n.is_live() => still.push(st),
                Some(n) => {
                    let pending = n.pending().len();
                    if pending == 0 {
                        out!("run {} stopped; everything was rolled back", st.run_id());
                    } else {
                        err!(
                            "run {} ended with {pending} operation(s) not rolled back; run `faultline recover {}`",
                            st.run_id(),
                            st.run_id()
                        );
                        code = exit::ROLLBACK_FAILED;
                    }
                }
                // The run file is gone: a run that ends with nothing pending removes it.
                None if !st.path.exists() => {
                    out!("run {} stopped; everything was rolled back", st.run_id())
                }
                None => still.push(st),
            }
        }
        left = still;
        if left.is_empty() {
            break;
        }
        if Instant::now() >= end {
            for st in &left {
                err!(
                    "faultline: run {} has not ended after {}s; it is still rolling back or stuck. `faultline status` shows it; `faultline recover --force {}` rolls it back from here",
                    st.run_id(),
                    wait.timeout.as_secs(),
                    st.run_id()
                );
            }
            return exit::PRECONDITION;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    code
}
