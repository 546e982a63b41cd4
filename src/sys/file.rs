//! Files a fault corrupts and restores: opened without following symbolic
//! links, hashed, backed up (a copy-on-write clone via FICLONE where the file
//! system supports it, else a copy), and restored atomically (a temporary
//! file in the same directory, renamed over the path) with their metadata.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What a restore needs to know about the original file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Original {
    pub sha256: String,
    pub size: u64,
    /// Permission bits (no file type).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// (seconds, nanoseconds) since the epoch.
    pub atime: (i64, i64),
    pub mtime: (i64, i64),
}

/// Opens `path` for reading without following a symbolic link in its last
/// component, and checks it is a regular file.
pub fn open_regular(path: &Path, write: bool) -> Result<File, String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                format!("{} is a symbolic link", path.display())
            } else {
                format!("{}: {e}", path.display())
            }
        })?;
    let md = f
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !md.file_type().is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    Ok(f)
}

/// The sha256 of everything readable from `f`, from its start (hex).
pub fn sha256_of(f: &mut File) -> Result<String, String> {
    f.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// The sha256 of the regular file at `path` (not following a link), or
/// `None` when nothing is there.
pub fn sha256_path(path: &Path) -> Result<Option<String>, String> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        _ => {}
    }
    let mut f = open_regular(path, false)?;
    sha256_of(&mut f).map(Some)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Reads what a restore needs from an open file.
pub fn original_of(f: &mut File) -> Result<Original, String> {
    let md = f.metadata().map_err(|e| e.to_string())?;
    Ok(Original {
        sha256: sha256_of(f)?,
        size: md.len(),
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        atime: (md.atime(), md.atime_nsec()),
        mtime: (md.mtime(), md.mtime_nsec()),
    })
}

/// Copies `src` into `dst` (both open files): a copy-on-write clone
/// (FICLONE) where the file system supports it, else a byte copy. Returns
/// `true` when it was a clone.
pub fn clone_or_copy(src: &mut File, dst: &mut File) -> Result<bool, String> {
    // SAFETY: FICLONE takes the source descriptor as its argument; both are
    // open files we own for the duration of the call.
    let r = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
    if r == 0 {
        return Ok(true);
    }
    src.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    dst.set_len(0).map_err(|e| e.to_string())?;
    dst.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    std::io::copy(src, dst).map_err(|e| format!("copying: {e}"))?;
    Ok(false)
}

/// Creates the backup file `backup` (which must not exist, mode 0600) as a
/// byte-exact copy of `src`, syncs it and its directory, and checks its
/// sha256 is `want`. Returns whether it is a copy-on-write clone.
pub fn make_backup(src: &mut File, backup: &Path, want: &str) -> Result<bool, String> {
    let mut dst = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(backup)
        .map_err(|e| format!("creating the backup {}: {e}", backup.display()))?;
    let fail = |m: String| {
        let _ = std::fs::remove_file(backup);
        m
    };
    let cloned = clone_or_copy(src, &mut dst).map_err(fail)?;
    dst.sync_all()
        .map_err(|e| fail(format!("syncing the backup: {e}")))?;
    if let Some(dir) = backup.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    let got = sha256_of(&mut dst).map_err(fail)?;
    if got != want {
        return Err(fail(format!(
            "the file changed while it was backed up (sha256 {got}, expected {want})"
        )));
    }
    Ok(cloned)
}

/// Creates `dir` (and its parents) with mode 0700 when missing.
pub fn ensure_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let md = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !md.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    Ok(())
}

/// Sets mode, owner and timestamps of an open file.
fn set_metadata(f: &File, o: &Original) -> Result<(), String> {
    let fd = f.as_fd();
    let want_owner = (o.uid, o.gid);
    let md = f.metadata().map_err(|e| e.to_string())?;
    if (md.uid(), md.gid()) != want_owner {
        nix::unistd::fchown(
            fd,
            Some(nix::unistd::Uid::from_raw(o.uid)),
            Some(nix::unistd::Gid::from_raw(o.gid)),
        )
        .map_err(|e| format!("setting owner {}:{}: {e}", o.uid, o.gid))?;
    }
    nix::sys::stat::fchmod(fd, nix::sys::stat::Mode::from_bits_truncate(o.mode))
        .map_err(|e| format!("setting mode {:04o}: {e}", o.mode))?;
    let ts = |(s, ns): (i64, i64)| nix::sys::time::TimeSpec::new(s, ns);
    nix::sys::stat::futimens(fd, &ts(o.atime), &ts(o.mtime))
        .map_err(|e| format!("setting timestamps: {e}"))?;
    Ok(())
}

/// Does the open file's metadata match the original's (mode, owner, mtime)?
fn metadata_matches(f: &File, o: &Original) -> bool {
    f.metadata().is_ok_and(|md| {
        md.mode() & 0o7777 == o.mode
            && md.uid() == o.uid
            && md.gid() == o.gid
            && (md.mtime(), md.mtime_nsec()) == o.mtime
    })
}

fn cstr(b: &[u8]) -> Result<std::ffi::CString, String> {
    std::ffi::CString::new(b).map_err(|_| "a path with a NUL byte".to_string())
}

fn openat(dir: &OwnedFd, name: &[u8], flags: i32, mode: u32) -> std::io::Result<File> {
    let c = cstr(name).map_err(std::io::Error::other)?;
    // SAFETY: a valid directory descriptor and NUL-terminated name.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, mode) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// The type of `name` in `dir`, not following a link: `None` when absent.
fn type_at(dir: &OwnedFd, name: &[u8]) -> Result<Option<u32>, String> {
    let c = cstr(name)?;
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, NUL-terminated name and a stat buffer.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        return Ok(Some(st.st_mode & libc::S_IFMT));
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(None)
    } else {
        Err(e.to_string())
    }
}

/// Opens the directory `dir` and checks it still is that directory: no
/// symbolic link was put anywhere in its path since it was recorded.
fn open_dir_exact(dir: &Path) -> Result<OwnedFd, String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| {
            if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
                format!(
                    "the directory {} now is a symbolic link (it resolves to {}); not followed",
                    dir.display(),
                    std::fs::read_link(dir)
                        .map(|t| t.display().to_string())
                        .unwrap_or_default()
                )
            } else {
                format!("opening the directory {}: {e}", dir.display())
            }
        })?;
    let fd: OwnedFd = f.into();
    let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| format!("resolving {}: {e}", dir.display()))?;
    if real != dir {
        return Err(format!(
            "the directory {} now resolves to {} (a symbolic link was put in its path)",
            dir.display(),
            real.display()
        ));
    }
    Ok(fd)
}

/// Restores `path` from `backup`: byte-exact (checked by sha256 before and
/// after), with the original's mode, owner and timestamps, atomically (a
/// temporary file in the same directory renamed over the path). Never follows
/// a symbolic link: a link or another non-regular file now at `path` is
/// refused and left alone, as is a directory path that now resolves
/// elsewhere. Removes the backup once the original is back. Returns `false`
/// when the file already was the original (nothing written).
pub fn restore(path: &Path, backup: &Path, o: &Original) -> Result<bool, String> {
    let dir = path
        .parent()
        .ok_or_else(|| format!("{} has no directory", path.display()))?;
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} has no file name", path.display()))?
        .as_bytes()
        .to_vec();
    let dfd = open_dir_exact(dir)?;
    let nofollow = libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
    match type_at(&dfd, &name)? {
        None => {}
        Some(libc::S_IFREG) => {
            let mut cur = openat(&dfd, &name, libc::O_RDONLY | nofollow, 0)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if cur.metadata().is_ok_and(|m| m.len() == o.size) && sha256_of(&mut cur)? == o.sha256
            {
                let same = metadata_matches(&cur, o);
                if !same {
                    set_metadata(&cur, o)?;
                }
                remove_backup(backup);
                return Ok(!same);
            }
        }
        Some(t) => {
            return Err(format!(
                "{} is now {}, not a regular file; it is left alone (not followed). The original is in {}",
                path.display(),
                if t == libc::S_IFLNK { "a symbolic link" } else { "something else" },
                backup.display()
            ))
        }
    }
    let mut src = open_regular(backup, false).map_err(|e| format!("the backup {e}"))?;
    let bmd = src.metadata().map_err(|e| e.to_string())?;
    let me = nix::unistd::geteuid().as_raw();
    if (bmd.uid() != me && bmd.uid() != 0) || bmd.mode() & 0o022 != 0 {
        return Err(format!(
            "the backup {} is not a private file of yours (owner uid {}, mode {:04o}); not used",
            backup.display(),
            bmd.uid(),
            bmd.mode() & 0o7777
        ));
    }
    let got = sha256_of(&mut src)?;
    if got != o.sha256 {
        return Err(format!(
            "the backup {} does not hold the original (sha256 {got}, recorded {})",
            backup.display(),
            o.sha256
        ));
    }
    let mut tmp_name = b".faultline-restore-".to_vec();
    tmp_name.extend_from_slice(format!("{}-", std::process::id()).as_bytes());
    tmp_name.extend_from_slice(&name[..name.len().min(100)]);
    let mut tmp = openat(
        &dfd,
        &tmp_name,
        libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | nofollow,
        0o600,
    )
    .map_err(|e| format!("creating a temporary file in {}: {e}", dir.display()))?;
    let unlink_tmp = || {
        if let Ok(c) = cstr(&tmp_name) {
            // SAFETY: valid descriptor and NUL-terminated name.
            unsafe { libc::unlinkat(dfd.as_raw_fd(), c.as_ptr(), 0) };
        }
    };
    let r = (|| {
        clone_or_copy(&mut src, &mut tmp)?;
        tmp.flush().map_err(|e| e.to_string())?;
        set_metadata(&tmp, o)?;
        tmp.sync_all().map_err(|e| format!("fsync: {e}"))?;
        let (a, b) = (cstr(&tmp_name)?, cstr(&name)?);
        // SAFETY: valid descriptors and NUL-terminated names. renameat
        // replaces whatever is at `name` (a link itself, never its target).
        let r = unsafe { libc::renameat(dfd.as_raw_fd(), a.as_ptr(), dfd.as_raw_fd(), b.as_ptr()) };
        if r != 0 {
            return Err(format!(
                "renaming into place: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    })();
    if let Err(e) = r {
        unlink_tmp();
        return Err(format!("restoring {}: {e}", path.display()));
    }
    // SAFETY: valid descriptor.
    unsafe { libc::fsync(dfd.as_raw_fd()) };
    let mut back = openat(&dfd, &name, libc::O_RDONLY | nofollow, 0)
        .map_err(|e| format!("reading {} back: {e}", path.display()))?;
    let now = sha256_of(&mut back)?;
    if now != o.sha256 {
        return Err(format!(
            "{} was restored but reads back with sha256 {now}, not {}; the backup is kept in {}",
            path.display(),
            o.sha256,
            backup.display()
        ));
    }
    remove_backup(backup);
    Ok(true)
}

/// Removes a used backup, and its run's directory and `STATE/backups`
/// when they are now empty (remove_dir fails on a non-empty one: another
/// run's backups stay).
fn remove_backup(backup: &Path) {
    let _ = std::fs::remove_file(backup);
    if let Some(run_dir) = backup.parent() {
        if std::fs::remove_dir(run_dir).is_ok() {
            if let Some(all) = run_dir.parent().filter(|p| p.ends_with("backups")) {
                let _ = std::fs::remove_dir(all);
            }
        }
    }
}

/// Deletes the regular file `path` if it still is the file `f` (same device
/// and inode), without following a link.
pub fn unlink_if_same(path: &Path, f: &File) -> Result<(), String> {
    let md = f.metadata().map_err(|e| e.to_string())?;
    let now = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if now.dev() != md.dev() || now.ino() != md.ino() {
        return Err(format!(
            "{} was replaced by another file before it could be deleted",
            path.display()
        ));
    }
    std::fs::remove_file(path).map_err(|e| format!("deleting {}: {e}", path.display()))
}

/// The canonical path of `p` (links resolved), for recording.
pub fn canonical(p: &Path) -> Result<PathBuf, String> {
    std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))
}
