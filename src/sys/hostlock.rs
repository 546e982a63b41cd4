//! Host-wide locks on the concrete resources a fault changes: a process (pid
//! and start time), an interface in a network namespace, a cgroup. Two runs,
//! whatever their state directories or selectors, never inject into the same
//! one. A lock is an flock on a file in [`lock_dir`]; the kernel drops it when
//! the runner exits, however it exits, and a run holds its locks until it
//! ends (the watchdog, not a lock, covers the time after a SIGKILL).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Something a fault changes, as a lock file name and as words for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    key: String,
    shown: String,
}

impl Resource {
    /// A process, by pid and start time (a reused pid is another process).
    pub fn process(pid: i32, start_time: u64) -> Resource {
        Resource {
            key: format!("pid-{pid}-{start_time}"),
            shown: format!("process {pid}"),
        }
    }

    /// An interface in a network namespace (`None`: the host's).
    pub fn interface(netns: Option<&str>, interface: &str) -> Resource {
        let ns = netns.unwrap_or("");
        Resource {
            key: format!("if-{}-{}", encode(ns), encode(interface)),
            shown: match netns {
                Some(n) => format!("interface {interface} in network namespace {n}"),
                None => format!("interface {interface}"),
            },
        }
    }

    /// A cgroup directory.
    pub fn cgroup(path: &Path) -> Resource {
        let p = path.to_string_lossy();
        Resource {
            key: format!("cg-{}", encode(&p)),
            shown: format!("cgroup {p}"),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

/// A file name from any text: `[A-Za-z0-9_-]` kept, every other byte as
/// `.XX`; long names are cut and end in a stable hash of the whole.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!(".{b:02x}"));
        }
    }
    if out.len() > 96 {
        // FNV-1a: stable across builds, unlike std's hasher.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in s.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        out.truncate(80);
        out.push_str(&format!("~{h:016x}"));
    }
    out
}

/// Where lock files live: `/run/faultline/locks` for root, else a
/// directory of this user's own (`$XDG_RUNTIME_DIR/faultline-locks`, or
/// `/tmp/faultline-locks-UID`).
pub fn lock_dir() -> PathBuf {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return PathBuf::from("/run/faultline/locks");
    }
    match std::env::var("XDG_RUNTIME_DIR") {
        Ok(d) if !d.is_empty() => PathBuf::from(d).join("faultline-locks"),
        _ => std::env::temp_dir().join(format!("faultline-locks-{uid}")),
    }
}

/// Creates the lock directory (0700) or checks the one there: a real
/// directory of this user that no one else can write.
fn ensure_dir(dir: &Path) -> Result<(), String> {
    let fix = |why: &str| {
        format!(
            "the lock directory {} {why}; remove it (faultline creates it again)",
            dir.display()
        )
    };
    match std::fs::symlink_metadata(dir) {
        Err(_) => {
            if let Some(parent) = dir.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
            }
            ensure_existing(dir, &fix)
        }
        Ok(_) => ensure_existing(dir, &fix),
    }
}

fn ensure_existing(dir: &Path, fix: &dyn Fn(&str) -> String) -> Result<(), String> {
    let m = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if m.file_type().is_symlink() || !m.is_dir() {
        return Err(fix("is not a directory (a symbolic link?)"));
    }
    if m.uid() != nix::unistd::geteuid().as_raw() {
        return Err(fix("belongs to another user"));
    }
    if m.permissions().mode() & 0o022 != 0 {
        return Err(fix("can be written by other users"));
    }
    Ok(())
}

/// The locks this process holds, by key: closed (and so released) at exit.
static HELD: Mutex<Option<HashMap<String, (PathBuf, File)>>> = Mutex::new(None);

/// Takes the lock on `r` for this run (`holder` names it in the other run's
/// message), or says who holds it. With `check_only` (plans), the lock is
/// tried and given back at once. Taking a lock this process already holds is
/// fine.
pub fn hold(r: &Resource, holder: &str, check_only: bool) -> Result<(), String> {
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    let map = held.get_or_insert_with(HashMap::new);
    if map.contains_key(&r.key) {
        return Ok(());
    }
    let dir = lock_dir();
    if check_only {
        // A plan changes nothing: no directory, no file is created.
        if !dir.is_dir() {
            return Ok(());
        }
    } else {
        ensure_dir(&dir)?;
        if map.is_empty() {
            // Once per run, before its first lock.
            sweep_stale();
        }
    }
    let path = dir.join(&r.key);
    for _ in 0..8 {
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .write(!check_only)
            .create(!check_only)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&path);
        let mut f = match opened {
            Ok(f) => f,
            Err(e) if check_only && e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            // Another run, releasing its last lock, removed the emptied directory.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                ensure_dir(&dir)?;
                continue;
            }
            Err(e) => return Err(format!("cannot open the lock file {}: {e}", path.display())),
        };
        use std::os::fd::AsRawFd;
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut text = Vec::new();
            let _ = (&mut f).take(512).read_to_end(&mut text);
            let who = String::from_utf8_lossy(&text).trim().to_string();
            let who = if who.is_empty() {
                "another faultline run".to_string()
            } else {
                who
            };
            return Err(format!(
                "{} is already held by {who} (lock {}); wait for that run to end or stop it first",
                r.shown,
                path.display()
            ));
        }
        // The file may have been unlinked by a run that released it between
        // our open and our flock: then lock the new one.
        if check_only {
            return Ok(());
        }
        let same = match (f.metadata(), std::fs::symlink_metadata(&path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if !same {
            continue;
        }
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = writeln!(f, "{holder}");
        map.insert(r.key.clone(), (path, f));
        return Ok(());
    }
    Err(format!(
        "cannot take the lock {}: it keeps being replaced",
        path.display()
    ))
}

/// Removes lock files nobody holds (left by a runner that was killed, or
/// by a program that used faults without the runner): each is locked first,
/// so a file in use is never removed, and a run that opened a file just
/// before it was removed notices (it compares inodes) and locks a new one.
pub fn sweep_stale() {
    let dir = lock_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten().take(100_000) {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("pid-") || name.starts_with("if-") || name.starts_with("cg-")) {
            continue;
        }
        let path = e.path();
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&path)
        else {
            continue;
        };
        use std::os::fd::AsRawFd;
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue;
        }
        let same = match (f.metadata(), std::fs::symlink_metadata(&path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Gives back every lock of this process and removes their files.
pub fn release_all() {
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(map) = held.take() {
        for (_, (path, file)) in map {
            // Unlinked while still locked, so no one locks a file that is gone.
            let _ = std::fs::remove_file(&path);
            drop(file);
        }
    }
    drop(held);
    sweep_stale();
    // Nothing left behind: the directory goes once no run holds a lock in
    // it (remove_dir fails on a directory that is not empty).
    let _ = std::fs::remove_dir(lock_dir());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_file_names() {
        assert_eq!(Resource::process(42, 7).key(), "pid-42-7");
        assert_eq!(
            Resource::interface(Some("ns/../x"), "eth0").key(),
            "if-ns.2f.2e.2e.2fx-eth0"
        );
        assert_eq!(Resource::interface(None, "lo").key(), "if--lo");
        let long = Resource::cgroup(Path::new(&"/sys/fs/cgroup/a".repeat(40)));
        assert!(long.key().len() < 120, "{}", long.key());
        assert!(!long.key().contains('/'));
        let other = Resource::cgroup(Path::new(&"/sys/fs/cgroup/b".repeat(40)));
        assert_ne!(long.key(), other.key());
    }
}
