//! Trust in the state directory. Its undo records are run as whoever runs
//! faultline (root, usually), so a record is read only when nobody else could
//! have written it, the way ssh treats its files: the state directory, its
//! `runs/` directory, the lock and every run file must not be symbolic links,
//! must belong to the effective user (or root), and must not be writable by
//! group or others; the directories above the state directory must belong to
//! root or the effective user and be writable by others only when sticky
//! (`/tmp`). Anything else is refused with exit 77 and a message on how to fix it.

use crate::exit::{self, ExitError};
use std::fs::{self, File, Metadata, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("uid {uid} ({})", u.name),
        _ => format!("uid {uid}"),
    }
}

/// Why `meta` (of `path`) is not trusted, or `None`.
fn untrusted_reason(path: &Path, meta: &Metadata, want_dir: bool) -> Option<String> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        let to = fs::read_link(path)
            .map(|t| format!(" (to {})", t.display()))
            .unwrap_or_default();
        return Some(format!(
            "it is a symbolic link{to}; someone may have planted it. Remove the link (`rm {}`) and run again",
            path.display()
        ));
    }
    if want_dir && !ft.is_dir() {
        return Some(
            "it is not a directory. Remove it or choose another state directory (--state-dir)"
                .to_string(),
        );
    }
    if !want_dir && !ft.is_file() {
        return Some("it is not a regular file. Remove it".to_string());
    }
    let me = euid();
    if meta.uid() != me && meta.uid() != 0 {
        return Some(format!(
            "it belongs to {}, not to you ({}), so that user could have written its undo records. \
             Use your own state directory (--state-dir, or unset it for the default); \
             never recover another user's state directory as root",
            user_name(meta.uid()),
            user_name(me)
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!(
            "it is writable by {} (mode {:04o}), so others could plant undo records that faultline would run as you. Fix it with `chmod go-w {}`",
            if meta.mode() & 0o002 != 0 { "everyone" } else { "its group" },
            meta.mode() & 0o7777,
            path.display()
        ));
    }
    None
}

fn refused(what: &str, path: &Path, reason: String) -> ExitError {
    ExitError::new(
        exit::PRIVILEGES,
        format!("refusing the {what} {}: {reason}", path.display()),
    )
}

/// Checks a directory faultline keeps state in (the state directory or its
/// `runs/`), without following a symbolic link.
pub fn check_dir(what: &str, dir: &Path) -> Result<(), ExitError> {
    let meta = fs::symlink_metadata(dir).map_err(|e| {
        ExitError::new(
            io_code(&e),
            format!("cannot read the {what} {}: {e}", dir.display()),
        )
    })?;
    match untrusted_reason(dir, &meta, true) {
        Some(r) => Err(refused(what, dir, r)),
        None => Ok(()),
    }
}

/// Checks the directories above the state directory: owned by root or the
/// effective user, and writable by others only when sticky.
fn check_ancestors(state_dir: &Path) -> Result<(), ExitError> {
    let abs = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    let Some(parent) = abs.parent() else {
        return Ok(());
    };
    // Symbolic links above the state directory are resolved; each directory
    // on the real path is checked.
    let real = match fs::canonicalize(parent) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()), // we create it
        Err(e) => {
            return Err(ExitError::new(
                io_code(&e),
                format!("cannot read {}: {e}", parent.display()),
            ))
        }
    };
    for dir in real.ancestors() {
        let Ok(meta) = fs::metadata(dir) else {
            continue;
        };
        let me = euid();
        if meta.uid() != me && meta.uid() != 0 {
            return Err(refused(
                "state directory",
                state_dir,
                format!(
                    "{} above it belongs to {}, who could replace it. Choose a state directory under a directory of yours or root's (--state-dir)",
                    dir.display(),
                    user_name(meta.uid())
                ),
            ));
        }
        if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
            return Err(refused(
                "state directory",
                state_dir,
                format!(
                    "{} above it is writable by others (mode {:04o}) and not sticky, so anyone could replace it. Choose another place (--state-dir) or `chmod go-w {}`",
                    dir.display(),
                    meta.mode() & 0o7777,
                    dir.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks the state directory, the directories above it, and its `runs/`
/// (when present). `Ok(false)` when the state directory does not exist.
pub fn check_state_dir(state_dir: &Path) -> Result<bool, ExitError> {
    match fs::symlink_metadata(state_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        _ => {}
    }
    check_ancestors(state_dir)?;
    check_dir("state directory", state_dir)?;
    let runs = state_dir.join("runs");
    if fs::symlink_metadata(&runs).is_ok() {
        check_dir("state directory", &runs)?;
    }
    Ok(true)
}

/// Creates the state directory and its `runs/` (mode 0700) when missing,
/// then checks both.
pub fn ensure_state_dir(state_dir: &Path) -> Result<(), ExitError> {
    let cannot = |e: std::io::Error| {
        ExitError::new(
            io_code(&e),
            format!(
                "cannot create the state directory {}: {e} (set --state-dir or FAULTLINE_STATE_DIR to a directory of yours)",
                state_dir.display()
            ),
        )
    };
    check_ancestors(state_dir)?;
    let mkdir = |d: &Path, recursive: bool| {
        use std::os::unix::fs::DirBuilderExt;
        match fs::DirBuilder::new()
            .recursive(recursive)
            .mode(0o700)
            .create(d)
        {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            r => r,
        }
    };
    if fs::symlink_metadata(state_dir).is_err() {
        if let Some(parent) = state_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            mkdir(parent, true).map_err(cannot)?;
        }
        mkdir(state_dir, false).map_err(cannot)?;
    }
    check_ancestors(state_dir)?;
    check_dir("state directory", state_dir)?;
    let runs = state_dir.join("runs");
    if fs::symlink_metadata(&runs).is_err() {
        mkdir(&runs, false).map_err(cannot)?;
    }
    check_dir("state directory", &runs)
}

/// The exit code for an I/O error on the state directory: 77 when it is a
/// permission problem, 69 otherwise.
pub fn io_code(e: &std::io::Error) -> i32 {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        exit::PRIVILEGES
    } else {
        exit::PRECONDITION
    }
}

/// The exit code for an error from the state directory: the code of an
/// [`ExitError`] in its chain, 77 for a permission error, else 69.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<ExitError>() {
            return e.code;
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            return io_code(e);
        }
    }
    exit::PRECONDITION
}

/// Opens a state file (a run file or the lock) without following a symbolic
/// link, and checks it is a regular file of ours that others cannot write.
pub fn open_file(path: &Path, opts: &mut OpenOptions) -> Result<File, anyhow::Error> {
    let file = opts
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                anyhow::Error::new(refused(
                    "state file",
                    path,
                    format!(
                        "it is a symbolic link; someone may have planted it. Remove it (`rm {}`)",
                        path.display()
                    ),
                ))
            } else {
                anyhow::Error::new(ExitError::new(
                    io_code(&e),
                    format!("cannot open {}: {e}", path.display()),
                ))
            }
        })?;
    let meta = file
        .metadata()
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    if let Some(r) = untrusted_reason(path, &meta, false) {
        return Err(refused("state file", path, r).into());
    }
    Ok(file)
}

/// Checks the directories a run file sits in (`STATE/runs/`, `STATE`).
pub fn check_run_file_dirs(path: &Path) -> Result<(), ExitError> {
    let runs: PathBuf = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let runs = if runs.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        runs
    };
    check_dir("state directory", &runs)?;
    if let Some(state) = runs.parent().filter(|p| !p.as_os_str().is_empty()) {
        check_ancestors(state)?;
        check_dir("state directory", state)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_directory_is_trusted_and_loose_ones_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let sd = t.path().join("state");
        ensure_state_dir(&sd).unwrap();
        let mode = fs::metadata(&sd).unwrap().mode() & 0o777;
        assert_eq!(
            mode & 0o077,
            0,
            "created without access for others: {mode:o}"
        );
        assert!(check_state_dir(&sd).unwrap());

        fs::set_permissions(&sd, fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_state_dir(&sd).unwrap_err();
        assert_eq!(e.code, exit::PRIVILEGES);
        assert!(
            e.message.contains("writable by everyone") && e.message.contains("chmod go-w"),
            "{}",
            e.message
        );
        fs::set_permissions(&sd, fs::Permissions::from_mode(0o720)).unwrap();
        assert!(check_state_dir(&sd)
            .unwrap_err()
            .message
            .contains("its group"));
        fs::set_permissions(&sd, fs::Permissions::from_mode(0o700)).unwrap();

        let link = t.path().join("link");
        std::os::unix::fs::symlink(&sd, &link).unwrap();
        let e = check_state_dir(&link).unwrap_err();
        assert!(e.message.contains("symbolic link"), "{}", e.message);
        assert!(ensure_state_dir(&link).is_err());

        assert!(!check_state_dir(&t.path().join("none")).unwrap());
    }

    #[test]
    fn state_files_are_opened_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        fs::write(&real, "x").unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = open_file(&link, OpenOptions::new().read(true)).unwrap_err();
        assert_eq!(exit_code(&e), exit::PRIVILEGES);
        assert!(format!("{e:#}").contains("symbolic link"));
        fs::set_permissions(&real, fs::Permissions::from_mode(0o666)).unwrap();
        let e = open_file(&real, OpenOptions::new().read(true)).unwrap_err();
        assert!(format!("{e:#}").contains("writable by everyone"));
        fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(open_file(&real, OpenOptions::new().read(true)).is_ok());
    }
}
