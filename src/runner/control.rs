//! The big red button: stop requests and the emergency-stop switch, as
//! files in the state directory that a running runner polls.
//!
//! ```text
//! STATE/runs/RUN_ID.stop   written by `faultline stop`: stop that run
//! STATE/halt               written by `faultline halt`: stop every run and
//!                          refuse new ones until `faultline halt --clear`
//! ```
//! Both hold one small JSON object ([`Request`]). The state directory is the
//! effective user's (0700, see [`crate::journal::trust`]), so only that user
//! or root can write them. They are still read as hostile input: opened
//! without following links, honoured only when they belong to the effective
//! user or root and nobody else can write them, read up to 4 KiB, and their
//! text is cut to one short printable line before it goes anywhere.
//!
//! The runner checks both every [`POLL`] (a stat each), so a run notices a
//! request within about a quarter of a second, whatever phase it is in.

use crate::exit::{self, ExitError};
use crate::journal::trust;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often a running runner looks for a stop request or the switch.
pub const POLL: Duration = Duration::from_millis(250);

/// Longest text kept from a request (`by`, `reason`).
const MAX_TEXT: usize = 200;

/// What a stop request or the switch says.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Request {
    /// Who asked, in words (`alice`, or `alice (as root)` under sudo).
    pub by: String,
    pub uid: u32,
    pub pid: i32,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Request {
    /// A request from this process, now.
    pub fn from_me(reason: Option<String>) -> Request {
        Request {
            by: who_am_i(),
            uid: nix::unistd::getuid().as_raw(),
            pid: std::process::id() as i32,
            at: Utc::now(),
            reason: reason.map(|r| clean(&r)),
        }
    }

    /// `alice at 2026-05-01 14:03:12 UTC (reason: ...)`.
    pub fn describe(&self) -> String {
        let mut s = format!("{} at {}", self.by, self.at.format("%Y-%m-%d %H:%M:%S UTC"));
        if let Some(r) = &self.reason {
            s.push_str(&format!(" (reason: {r})"));
        }
        s
    }

    /// Cuts every text field to one short printable line.
    fn cleaned(mut self) -> Request {
        self.by = clean(&self.by);
        self.reason = self.reason.map(|r| clean(&r));
        self
    }
}

/// One printable line of at most [`MAX_TEXT`] characters.
fn clean(s: &str) -> String {
    let one: String = s.chars().take(MAX_TEXT).collect();
    let cut = if s.chars().count() > MAX_TEXT {
        "…"
    } else {
        ""
    };
    format!("{}{cut}", crate::sys::text::escape(one.trim()))
}

/// The user's name: the real user's, and the sudo caller's when root
/// runs under sudo (`alice (as root)`).
pub fn who_am_i() -> String {
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {uid}"));
    if uid.is_root() {
        if let Some(s) = std::env::var("SUDO_USER").ok().filter(|s| !s.is_empty()) {
            return clean(&format!("{s} (as root)"));
        }
    }
    clean(&name)
}

pub fn halt_path(state_dir: &Path) -> PathBuf {
    state_dir.join("halt")
}

pub fn stop_path(state_dir: &Path, run_id: &str) -> PathBuf {
    state_dir.join("runs").join(format!("{run_id}.stop"))
}

/// Run ids are `YYYYMMDD-HHMMSS-xxxx`; anything else never becomes a path.
pub fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// What is at a request path.
#[derive(Debug, PartialEq)]
pub enum Found {
    None,
    /// A trusted request.
    Request(Request),
    /// Something is there that faultline will not honour, and why.
    Untrusted(String),
}

/// Reads a request file as hostile input (see the module docs).
pub fn read(path: &Path) -> Found {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Found::None,
        _ => {}
    }
    let file = match trust::open_file(path, std::fs::OpenOptions::new().read(true)) {
        Ok(f) => f,
        Err(e) => {
            // Gone between the two calls: nothing there.
            if std::fs::symlink_metadata(path).is_err() {
                return Found::None;
            }
            return Found::Untrusted(format!("{e:#}"));
        }
    };
    let mut bytes = Vec::new();
    if let Err(e) = file.take(4096).read_to_end(&mut bytes) {
        return Found::Untrusted(format!("cannot read {}: {e}", path.display()));
    }
    match serde_json::from_slice::<Request>(&bytes) {
        Ok(r) => Found::Request(r.cleaned()),
        Err(e) => Found::Untrusted(format!(
            "{} is not a faultline request ({e}); remove it",
            path.display()
        )),
    }
}

/// Writes a request file atomically (a private temporary file renamed over
/// it), so a runner never reads half of one.
pub fn write(path: &Path, req: &Request) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("req"),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec(req).expect("request serializes"))?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Removes a request file; missing is fine.
pub fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Refuses a new run while the switch is set (exit 69 naming it, who set
/// it, when and why), or while something untrusted sits in its place.
pub fn check_not_halted(state_dir: &Path) -> Result<(), ExitError> {
    let path = halt_path(state_dir);
    match read(&path) {
        Found::None => Ok(()),
        Found::Request(r) => Err(ExitError::new(
            exit::PRECONDITION,
            format!(
                "the emergency stop is set ({}, by {}); no experiment starts until it is cleared with `faultline halt --clear`",
                path.display(),
                r.describe()
            ),
        )),
        Found::Untrusted(why) => Err(ExitError::new(
            exit::PRIVILEGES,
            format!(
                "something is in the place of the emergency stop switch and it is not trusted, so no experiment starts: {why}"
            ),
        )),
    }
}

/// Why a running run must stop, if it must: a stop request for it, or the
/// switch. Untrusted files are reported once through `warn` and ignored
/// (only the effective user or root may stop a run).
pub fn stop_requested(
    state_dir: &Path,
    run_id: &str,
    warned: &mut bool,
    warn: impl Fn(String),
) -> Option<(String, String)> {
    let mut untrusted = None;
    match read(&stop_path(state_dir, run_id)) {
        Found::Request(r) => {
            return Some((
                format!("stopped by {} via faultline stop", r.by),
                match &r.reason {
                    Some(why) => format!("requested at {}: {why}", r.at.format("%H:%M:%S UTC")),
                    None => format!("requested at {}", r.at.format("%H:%M:%S UTC")),
                },
            ))
        }
        Found::Untrusted(w) => untrusted = Some(w),
        Found::None => {}
    }
    match read(&halt_path(state_dir)) {
        Found::Request(r) => {
            return Some((
                format!("stopped by {} via faultline halt", r.by),
                format!(
                    "the emergency stop was set at {}{}",
                    r.at.format("%H:%M:%S UTC"),
                    r.reason.map(|w| format!(": {w}")).unwrap_or_default()
                ),
            ))
        }
        Found::Untrusted(w) => untrusted = untrusted.or(Some(w)),
        Found::None => {}
    }
    if let Some(w) = untrusted {
        if !*warned {
            *warned = true;
            warn(format!("warning: ignoring a stop request: {w}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn state() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let sd = t.path().join("state");
        trust::ensure_state_dir(&sd).unwrap();
        (t, sd)
    }

    #[test]
    fn a_written_request_reads_back_and_its_text_is_cut_and_escaped() {
        let (_t, sd) = state();
        let p = stop_path(&sd, "20260101-000000-abcd");
        let mut r = Request::from_me(Some("x".repeat(500)));
        r.by = "mallory\x1b[2J\nroot".into();
        write(&p, &r).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let Found::Request(back) = read(&p) else {
            panic!("{:?}", read(&p))
        };
        assert_eq!(back.by, "mallory\\x1b[2J\\nroot");
        assert!(back.reason.unwrap().chars().count() <= MAX_TEXT + 1);
        let mut warned = false;
        let (cond, _) = stop_requested(&sd, "20260101-000000-abcd", &mut warned, |_| {}).unwrap();
        assert!(cond.starts_with("stopped by mallory\\x1b"), "{cond}");
        remove(&p).unwrap();
        remove(&p).unwrap();
        assert_eq!(read(&p), Found::None);
    }

    #[test]
    fn loose_or_linked_or_garbage_requests_are_not_honoured() {
        let (t, sd) = state();
        let id = "20260101-000000-abcd";
        let p = stop_path(&sd, id);
        write(&p, &Request::from_me(None)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        let mut warned = false;
        let warnings = std::cell::RefCell::new(Vec::new());
        assert!(stop_requested(&sd, id, &mut warned, |w| warnings.borrow_mut().push(w)).is_none());
        assert!(stop_requested(&sd, id, &mut warned, |w| warnings.borrow_mut().push(w)).is_none());
        assert_eq!(warnings.borrow().len(), 1, "warned once");
        assert!(warnings.borrow()[0].contains("writable by everyone"));
        remove(&p).unwrap();

        let elsewhere = t.path().join("elsewhere");
        write(&elsewhere, &Request::from_me(None)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &p).unwrap();
        assert!(matches!(read(&p), Found::Untrusted(w) if w.contains("symbolic link")));
        remove(&p).unwrap();

        std::fs::write(&p, "not json").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(read(&p), Found::Untrusted(w) if w.contains("not a faultline request")));
    }

    #[test]
    fn the_switch_refuses_new_runs_until_cleared() {
        let (_t, sd) = state();
        assert!(check_not_halted(&sd).is_ok());
        write(
            &halt_path(&sd),
            &Request::from_me(Some("database migration".into())),
        )
        .unwrap();
        let e = check_not_halted(&sd).unwrap_err();
        assert_eq!(e.code, exit::PRECONDITION);
        assert!(e.message.contains("emergency stop is set"), "{}", e.message);
        assert!(e.message.contains("database migration"), "{}", e.message);
        assert!(e.message.contains(&who_am_i()), "{}", e.message);
        let mut warned = false;
        let (cond, reason) = stop_requested(&sd, "any", &mut warned, |_| {}).unwrap();
        assert!(cond.ends_with("via faultline halt"), "{cond}");
        assert!(reason.contains("database migration"), "{reason}");
        remove(&halt_path(&sd)).unwrap();
        assert!(check_not_halted(&sd).is_ok());
    }

    #[test]
    fn run_ids_that_could_be_paths_are_not_valid() {
        assert!(valid_run_id("20261127-145103-3f2a"));
        for bad in ["", "../halt", "a/b", "x y", "a\n", &"a".repeat(65)] {
            assert!(!valid_run_id(bad), "{bad:?}");
        }
    }
}
