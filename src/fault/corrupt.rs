//! `file_corrupt`: flip bits in, overwrite byte ranges of, truncate or delete
//! files matching a path or glob. Each file is backed up byte-exact (a
//! copy-on-write clone where the file system supports it) into the run's
//! state directory, and the undo record naming the backup and the
//! original's sha256, size, mode, owner and timestamps is durable before the
//! file is touched; rollback puts the original back atomically and checks
//! its sha256 (see `UndoOp::RestoreFile`).

use super::{FaultContext, FaultError, FaultImpl, PlannedOp, UndoLog};
use crate::journal::undo::{UndoOp, PROTECTED_TREES};
use crate::sys::file::{self as sysfile, Original};
use crate::sys::text::escape;
use crate::units::Size;
use rand::{Rng, RngExt, SeedableRng};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CorruptMode {
    /// Flip `bits` randomly chosen bits.
    FlipBits,
    /// Overwrite byte ranges with zeros.
    Zero,
    /// Overwrite byte ranges with random bytes.
    Random,
    /// Cut the file to `truncate_to` bytes (default 0).
    Truncate,
    /// Delete the file.
    Delete,
}

impl CorruptMode {
    fn name(self) -> &'static str {
        match self {
            CorruptMode::FlipBits => "flip_bits",
            CorruptMode::Zero => "zero",
            CorruptMode::Random => "random",
            CorruptMode::Truncate => "truncate",
            CorruptMode::Delete => "delete",
        }
    }
}

/// A byte range of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ByteRange {
    /// Where the range starts (bytes from the start of the file).
    pub offset: Size,
    /// How long it is; a range running past the end of a file stops there.
    pub length: Size,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileCorruptSpec {
    /// An absolute path, or a glob (`*`, `?`, `[abc]` within a path
    /// component, e.g. `/var/lib/app/*.db`). Hidden files match only a
    /// pattern component that starts with `.`.
    pub path: String,
    /// The path is inside this container's filesystem (a name or id): it
    /// is reached through /proc/PID/root of the container's main process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// What to do to each file.
    pub mode: CorruptMode,
    /// `flip_bits`: how many bits to flip in each file (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits: Option<u64>,
    /// `zero`/`random`: the byte ranges to overwrite...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<ByteRange>,
    /// ...or the length of one range at a random offset (default 4KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<Size>,
    /// `truncate`: the new length (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate_to: Option<Size>,
    /// Seed for the random bits, offsets and bytes, so a run (and `plan`)
    /// picks the same ones again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Refuse when the path matches more files than this (default 10, or
    /// `limits.blast_radius.max_targets`, whichever is given; both: the lower).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_files: Option<u32>,
    /// Refuse files larger than this (default 256MiB): each is backed up first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<Size>,
    /// Also change files that belong to another user (as root). Default: refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_other_owners: bool,
}

/// Files one fault may change when neither `max_files` nor
/// `limits.blast_radius.max_targets` says otherwise.
pub const DEFAULT_MAX_FILES: u32 = 10;
/// The largest file backed up and changed unless `max_size` says otherwise.
pub const DEFAULT_MAX_SIZE: u64 = 256 << 20;
/// The overwritten range when neither `ranges` nor `length` is given.
const DEFAULT_LENGTH: u64 = 4096;

/// Problems in the spec found without touching the host: (field after the
/// fault's path, message).
pub fn check_spec(s: &FileCorruptSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut err = |f: &str, m: String| out.push((f.to_string(), m));
    if !s.path.starts_with('/') {
        err(".path", "give an absolute path (or glob)".into());
    }
    if s.path.split('/').any(|c| c == "..") {
        err(".path", "`..` is not allowed in the path".into());
    }
    if s.path.contains("**") {
        err(
            ".path",
            "`**` is not supported; use `*` within one directory".into(),
        );
    }
    if let Some(t) = PROTECTED_TREES
        .iter()
        .find(|t| Path::new(&s.path).starts_with(t))
    {
        err(
            ".path",
            format!("files under {t} are never corrupted (they are not data)"),
        );
    }
    let only = |field: &str, set: bool, modes: &[CorruptMode], out: &mut Vec<(String, String)>| {
        if set && !modes.contains(&s.mode) {
            out.push((
                format!(".{field}"),
                format!(
                    "`{field}` applies to mode {}, not `{}`",
                    modes
                        .iter()
                        .map(|m| format!("`{}`", m.name()))
                        .collect::<Vec<_>>()
                        .join(" or "),
                    s.mode.name()
                ),
            ));
        }
    };
    only("bits", s.bits.is_some(), &[CorruptMode::FlipBits], &mut out);
    let over = [CorruptMode::Zero, CorruptMode::Random];
    only("ranges", !s.ranges.is_empty(), &over, &mut out);
    only("length", s.length.is_some(), &over, &mut out);
    only(
        "truncate_to",
        s.truncate_to.is_some(),
        &[CorruptMode::Truncate],
        &mut out,
    );
    if s.bits == Some(0) {
        out.push((".bits".into(), "0 bits changes nothing".into()));
    }
    if !s.ranges.is_empty() && s.length.is_some() {
        out.push((
            ".length".into(),
            "give `ranges` or `length` (one range at a random offset), not both".into(),
        ));
    }
    if s.length.is_some_and(|l| l.bytes() == 0) || s.ranges.iter().any(|r| r.length.bytes() == 0) {
        out.push((
            ".length".into(),
            "a range of 0 bytes changes nothing".into(),
        ));
    }
    if s.max_files == Some(0) {
        out.push((
            ".max_files".into(),
            "0 forbids the fault; give at least 1".into(),
        ));
    }
    out
}

/// What is done to one file.
#[derive(Clone, Debug, PartialEq)]
enum Change {
    FlipBits(Vec<u64>),
    Overwrite {
        ranges: Vec<(u64, u64)>,
        /// Seed of the random bytes (`None`: zeros).
        random: Option<u64>,
    },
    Truncate(u64),
    Delete,
}

#[derive(Clone, Debug)]
struct Target {
    path: PathBuf,
    size: u64,
    change: Change,
}

/// A file changed by `inject`, and what it was.
#[derive(Clone, Debug)]
struct Changed {
    path: PathBuf,
    original: Original,
    /// Size and mtime right after the change (to skip hashing an untouched file).
    after: Option<(u64, (i64, i64))>,
    after_sha256: Option<String>,
    cloned: bool,
}

pub fn build_file_corrupt(s: &FileCorruptSpec) -> Box<dyn FaultImpl> {
    if let Some(c) = &s.container {
        let mut spec = s.clone();
        // One seed for plan and run alike.
        spec.seed = Some(s.seed.unwrap_or_else(|| rand::rng().next_u64()));
        return Box::new(crate::fault::container::InContainerPath::new(
            c.clone(),
            s.path.clone(),
            Box::new(move |p| {
                let mut t = spec.clone();
                (t.path, t.container) = (p.to_string(), None);
                build_file_corrupt(&t)
            }),
        ));
    }
    Box::new(FileCorrupt {
        seed: s.seed.unwrap_or_else(|| rand::rng().next_u64()),
        spec: s.clone(),
        changed: Vec::new(),
        observations: serde_json::Value::Null,
    })
}

pub struct FileCorrupt {
    spec: FileCorruptSpec,
    /// The given seed, or one drawn once, so `plan` and `inject` of one run agree.
    seed: u64,
    changed: Vec<Changed>,
    observations: serde_json::Value,
}

/// Does `name` match the glob component `pat` (`*`, `?`, `[...]`, `[!...]`)?
pub fn glob_match(pat: &[u8], name: &[u8]) -> bool {
    if pat.first() != Some(&b'.') && name.first() == Some(&b'.') {
        return false;
    }
    fn m(p: &[u8], n: &[u8]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some(b'*') => (0..=n.len()).any(|i| m(&p[1..], &n[i..])),
            Some(b'?') => !n.is_empty() && m(&p[1..], &n[1..]),
            Some(b'[') => {
                let Some(end) = p.iter().skip(2).position(|c| *c == b']').map(|i| i + 2) else {
                    return n.first() == Some(&b'[') && m(&p[1..], &n[1..]);
                };
                let Some(c) = n.first() else { return false };
                let (neg, set) = match p[1] {
                    b'!' | b'^' => (true, &p[2..end]),
                    _ => (false, &p[1..end]),
                };
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == b'-' {
                        hit |= (set[i]..=set[i + 2]).contains(c);
                        i += 3;
                    } else {
                        hit |= set[i] == *c;
                        i += 1;
                    }
                }
                hit != neg && m(&p[end + 1..], &n[1..])
            }
            Some(c) => n.first() == Some(c) && m(&p[1..], &n[1..]),
        }
    }
    m(pat, name)
}

/// Every existing path matching the absolute glob `pattern`, sorted.
pub fn expand(pattern: &str) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut cur = vec![PathBuf::from("/")];
    for comp in pattern.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let wild = comp.contains(['*', '?', '[']);
        let mut next = Vec::new();
        for dir in &cur {
            if !wild {
                next.push(dir.join(comp));
                continue;
            }
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in rd.flatten() {
                if glob_match(comp.as_bytes(), e.file_name().as_bytes()) {
                    next.push(dir.join(e.file_name()));
                }
            }
        }
        cur = next;
    }
    let mut out: Vec<PathBuf> = cur
        .into_iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Picks `n` distinct values in `0..max` (n <= max).
fn distinct(rng: &mut impl RngExt, n: u64, max: u64) -> Vec<u64> {
    let mut set = std::collections::BTreeSet::new();
    while (set.len() as u64) < n {
        set.insert(rng.random_range(0..max));
    }
    set.into_iter().collect()
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

impl FileCorrupt {
    fn limit(&self, ctx: &FaultContext) -> (u32, String) {
        match (self.spec.max_files, ctx.blast_radius.max_targets) {
            (Some(a), Some(b)) if b < a => (b, "limits.blast_radius.max_targets".into()),
            (Some(a), _) => (a, "the fault's max_files".into()),
            (None, Some(b)) => (b, "limits.blast_radius.max_targets".into()),
            (None, None) => (
                DEFAULT_MAX_FILES,
                format!("the default of {DEFAULT_MAX_FILES}; raise it with max_files"),
            ),
        }
    }

    /// Checks one matched file and decides what to do to it. Read-only.
    fn check_file(&self, p: &Path, state_dir: Option<&Path>) -> Result<(PathBuf, u64), FaultError> {
        let shown = escape(&p.display().to_string()).into_owned();
        let md = std::fs::symlink_metadata(p)
            .map_err(|e| FaultError::precondition(format!("file_corrupt {shown}: {e}")))?;
        if md.file_type().is_symlink() {
            return Err(FaultError::precondition(format!(
                "file_corrupt: {shown} is a symbolic link; give the file it points to"
            )));
        }
        if !md.is_file() {
            return Err(FaultError::precondition(format!(
                "file_corrupt: {shown} is not a regular file; narrow the path"
            )));
        }
        let real = sysfile::canonical(p).map_err(FaultError::precondition)?;
        let real_shown = escape(&real.display().to_string()).into_owned();
        if PROTECTED_TREES.iter().any(|t| real.starts_with(t)) {
            return Err(FaultError::precondition(format!(
                "file_corrupt: {real_shown} is under /proc, /sys or /dev, which are never corrupted"
            )));
        }
        for sd in state_dir.into_iter().chain(std::iter::once(
            crate::journal::store::resolve_state_dir(None).as_path(),
        )) {
            let sd = std::fs::canonicalize(sd).unwrap_or_else(|_| sd.to_path_buf());
            if real.starts_with(&sd) {
                return Err(FaultError::precondition(format!(
                    "file_corrupt: {real_shown} is in faultline's state directory, which is never corrupted"
                )));
            }
        }
        if md.nlink() > 1 {
            return Err(FaultError::precondition(format!(
                "file_corrupt: {real_shown} has {} hard links; it could not be restored atomically under every name",
                md.nlink()
            )));
        }
        if md.mode() & 0o6000 != 0 {
            return Err(FaultError::precondition(format!(
                "file_corrupt: {real_shown} is setuid/setgid (mode {:04o}); such files are never corrupted",
                md.mode() & 0o7777
            )));
        }
        let max = self
            .spec
            .max_size
            .map(|s| s.bytes())
            .unwrap_or(DEFAULT_MAX_SIZE);
        if md.len() > max {
            return Err(FaultError::precondition(format!(
                "file_corrupt: {real_shown} is {}, larger than max_size {} (each file is backed up first); raise max_size or narrow the path",
                Size(md.len()),
                Size(max)
            )));
        }
        let euid = nix::unistd::geteuid().as_raw();
        if md.uid() != euid && !self.spec.allow_other_owners {
            return Err(FaultError::privileges(format!(
                "file_corrupt: {real_shown} belongs to uid {}, not to you (uid {euid}); set allow_other_owners: true to change it anyway",
                md.uid()
            )));
        }
        let want = if self.spec.mode == CorruptMode::Delete {
            // Deleting needs the directory writable, not the file.
            real.parent().unwrap_or(&real).to_path_buf()
        } else {
            real.clone()
        };
        if nix::unistd::access(&want, nix::unistd::AccessFlags::W_OK).is_err() {
            return Err(FaultError::privileges(format!(
                "file_corrupt cannot write {}: permission denied",
                escape(&want.display().to_string())
            )));
        }
        Ok((real, md.len()))
    }

    /// Resolves the files and what to do to each. Read-only.
    fn compute(
        &self,
        ctx: &FaultContext,
        state_dir: Option<&Path>,
    ) -> Result<Vec<Target>, FaultError> {
        let pat_shown = escape(&self.spec.path).into_owned();
        let found = expand(&self.spec.path);
        if found.is_empty() {
            return Err(FaultError::precondition(format!(
                "file_corrupt.path {pat_shown} matches no file"
            )));
        }
        let (limit, why) = self.limit(ctx);
        if found.len() > limit as usize {
            return Err(FaultError::precondition(format!(
                "file_corrupt.path {pat_shown} matches {} files, more than the blast-radius limit of {limit} ({why}); narrow the path",
                found.len()
            )));
        }
        let mut rng = super::target::TargetRng::seed_from_u64(self.seed);
        let mut out = Vec::new();
        for p in &found {
            let (path, size) = self.check_file(p, state_dir)?;
            let shown = escape(&path.display().to_string()).into_owned();
            let change = match self.spec.mode {
                CorruptMode::FlipBits => {
                    let bits = self.spec.bits.unwrap_or(1);
                    if size == 0 {
                        return Err(FaultError::precondition(format!(
                            "file_corrupt: {shown} is empty; there is no bit to flip"
                        )));
                    }
                    if bits > size.saturating_mul(8) {
                        return Err(FaultError::precondition(format!(
                            "file_corrupt: {shown} has only {} bits, fewer than bits {bits}",
                            size * 8
                        )));
                    }
                    Change::FlipBits(distinct(&mut rng, bits, size * 8))
                }
                CorruptMode::Zero | CorruptMode::Random => {
                    let mut ranges = Vec::new();
                    if self.spec.ranges.is_empty() {
                        let len = self
                            .spec
                            .length
                            .map(|l| l.bytes())
                            .unwrap_or(DEFAULT_LENGTH)
                            .min(size);
                        if len > 0 {
                            let off = rng.random_range(0..=size - len);
                            ranges.push((off, len));
                        }
                    }
                    for r in &self.spec.ranges {
                        let off = r.offset.bytes();
                        if off < size {
                            ranges.push((off, r.length.bytes().min(size - off)));
                        }
                    }
                    if ranges.is_empty() {
                        return Err(FaultError::precondition(format!(
                            "file_corrupt: no range lies within {shown} (size {size} bytes)"
                        )));
                    }
                    let random = (self.spec.mode == CorruptMode::Random).then(|| rng.next_u64());
                    Change::Overwrite { ranges, random }
                }
                CorruptMode::Truncate => {
                    let to = self.spec.truncate_to.map(|s| s.bytes()).unwrap_or(0);
                    if to >= size {
                        return Err(FaultError::precondition(format!(
                            "file_corrupt: {shown} is {size} bytes, not longer than truncate_to {to}; nothing to cut"
                        )));
                    }
                    Change::Truncate(to)
                }
                CorruptMode::Delete => Change::Delete,
            };
            out.push(Target { path, size, change });
        }
        Ok(out)
    }

    fn describe(t: &Target) -> String {
        let shown = escape(&t.path.display().to_string()).into_owned();
        match &t.change {
            Change::FlipBits(bits) => {
                let list: Vec<String> = bits
                    .iter()
                    .take(16)
                    .map(|b| format!("{}:{}", b / 8, b % 8))
                    .collect();
                let more = if bits.len() > 16 {
                    format!(" and {} more", bits.len() - 16)
                } else {
                    String::new()
                };
                format!(
                    "flip {} bit(s) of {shown} ({} bytes) at byte:bit {}{more}",
                    bits.len(),
                    t.size,
                    list.join(", ")
                )
            }
            Change::Overwrite { ranges, random } => format!(
                "overwrite {} of {shown} ({} bytes) with {}",
                ranges
                    .iter()
                    .map(|(o, l)| format!("bytes {o}..{}", o + l))
                    .collect::<Vec<_>>()
                    .join(", "),
                t.size,
                if random.is_some() {
                    "random bytes"
                } else {
                    "zeros"
                }
            ),
            Change::Truncate(to) => format!("truncate {shown} from {} to {to} bytes", t.size),
            Change::Delete => format!("delete {shown} ({} bytes)", t.size),
        }
    }

    /// Changes one open file as planned.
    fn apply(t: &Target, f: &mut std::fs::File) -> Result<(), String> {
        match &t.change {
            Change::FlipBits(bits) => {
                for b in bits {
                    let mut byte = [0u8; 1];
                    f.read_exact_at(&mut byte, b / 8)
                        .map_err(|e| e.to_string())?;
                    byte[0] ^= 1 << (b % 8);
                    f.write_all_at(&byte, b / 8).map_err(|e| e.to_string())?;
                }
            }
            Change::Overwrite { ranges, random } => {
                let mut rng = random.map(super::target::TargetRng::seed_from_u64);
                for (off, len) in ranges {
                    f.seek(SeekFrom::Start(*off)).map_err(|e| e.to_string())?;
                    let mut left = *len;
                    let mut buf = vec![0u8; (*len).min(1 << 16) as usize];
                    while left > 0 {
                        let n = left.min(buf.len() as u64) as usize;
                        if let Some(r) = rng.as_mut() {
                            r.fill_bytes(&mut buf[..n]);
                        }
                        f.write_all(&buf[..n]).map_err(|e| e.to_string())?;
                        left -= n as u64;
                    }
                }
            }
            Change::Truncate(to) => f.set_len(*to).map_err(|e| e.to_string())?,
            Change::Delete => return sysfile::unlink_if_same(&t.path, f),
        }
        f.sync_all().map_err(|e| format!("fsync: {e}"))
    }

    /// The file's state now: `None` when gone, else its sha256.
    fn current(c: &Changed) -> Result<Option<String>, String> {
        if let (Some((size, mtime)), Some(sha)) = (c.after, &c.after_sha256) {
            if let Ok(md) = std::fs::symlink_metadata(&c.path) {
                if md.is_file() && md.len() == size && (md.mtime(), md.mtime_nsec()) == mtime {
                    return Ok(Some(sha.clone()));
                }
            }
        }
        sysfile::sha256_path(&c.path)
    }
}

impl FaultImpl for FileCorrupt {
    fn kind(&self) -> &'static str {
        "file_corrupt"
    }

    fn target(&self) -> String {
        self.spec.path.clone()
    }

    fn preflight(&mut self, ctx: &FaultContext) -> Result<(), FaultError> {
        match self.compute(ctx, None) {
            // `setup` may create the files; preflight runs again after it.
            Err(e) if ctx.setup_pending && e.message.contains("matches no file") => Ok(()),
            r => r.map(|_| ()),
        }
    }

    fn plan(&self, ctx: &FaultContext) -> Vec<PlannedOp> {
        match self.compute(ctx, None) {
            Ok(targets) => targets
                .iter()
                .map(|t| PlannedOp {
                    action: format!(
                        "{} (seed {}); first a byte-exact backup (copy-on-write clone, else a copy) into the run's state directory, recorded with its sha256, mode, owner and timestamps",
                        Self::describe(t),
                        self.seed
                    ),
                    command: None,
                    undo: Some(format!(
                        "restore {} from the backup (atomic rename, sha256 checked), with its mode, owner and timestamps",
                        escape(&t.path.display().to_string())
                    )),
                })
                .collect(),
            Err(e) => vec![PlannedOp {
                action: format!("cannot plan file_corrupt: {e}"),
                command: None,
                undo: None,
            }],
        }
    }

    fn inject(&mut self, ctx: &FaultContext, undo: &mut dyn UndoLog) -> Result<(), FaultError> {
        if ctx.dry_run {
            return Ok(());
        }
        let dir = undo.backup_dir().ok_or_else(|| {
            FaultError::precondition("file_corrupt needs the run's state directory for its backups")
        })?;
        let state_dir = dir.parent().and_then(Path::parent).map(Path::to_path_buf);
        let targets = self.compute(ctx, state_dir.as_deref())?;
        sysfile::ensure_private_dir(&dir).map_err(FaultError::failed)?;
        let dir = sysfile::canonical(&dir).map_err(FaultError::failed)?;
        for t in &targets {
            let shown = escape(&t.path.display().to_string()).into_owned();
            let failed = |m: String| FaultError::failed(format!("file_corrupt {shown}: {m}"));
            let mut f =
                sysfile::open_regular(&t.path, t.change != Change::Delete).map_err(failed)?;
            let original = sysfile::original_of(&mut f).map_err(failed)?;
            let mut n = 1u64;
            let backup = loop {
                let b = dir.join(format!("file-{n}"));
                if std::fs::symlink_metadata(&b).is_err() {
                    break b;
                }
                n += 1;
            };
            // Write-ahead: the record naming the backup and the original is
            // durable before the backup exists and before the file changes.
            undo.record(
                &format!("file_corrupt {}", t.path.display()),
                UndoOp::RestoreFile {
                    path: t.path.clone(),
                    backup: backup.clone(),
                    sha256: original.sha256.clone(),
                    size: original.size,
                    mode: original.mode,
                    uid: original.uid,
                    gid: original.gid,
                    atime: original.atime,
                    mtime: original.mtime,
                },
            )
            .map_err(|e| failed(format!("cannot write the undo record: {e:#}")))?;
            let cloned = sysfile::make_backup(&mut f, &backup, &original.sha256).map_err(failed)?;
            Self::apply(t, &mut f).map_err(failed)?;
            let mut c = Changed {
                path: t.path.clone(),
                original,
                after: None,
                after_sha256: None,
                cloned,
            };
            if t.change != Change::Delete {
                if let Ok(md) = f.metadata() {
                    c.after = Some((md.len(), (md.mtime(), md.mtime_nsec())));
                }
                c.after_sha256 = sysfile::sha256_of(&mut f).ok();
            }
            self.changed.push(c);
        }
        Ok(())
    }

    fn verify(&mut self, _ctx: &FaultContext) -> Result<String, FaultError> {
        if self.changed.is_empty() {
            return Err(FaultError::failed("file_corrupt was not injected"));
        }
        let mut lines = Vec::new();
        for c in &self.changed {
            let shown = escape(&c.path.display().to_string()).into_owned();
            match Self::current(c).map_err(FaultError::failed)? {
                None => lines.push(format!("{shown} is gone")),
                Some(sha) if sha == c.original.sha256 => {
                    return Err(FaultError::failed(format!(
                        "file_corrupt: {shown} still has its original content (sha256 {})",
                        short(&sha)
                    )))
                }
                Some(sha) => lines.push(format!(
                    "{shown}: sha256 {} -> {}",
                    short(&c.original.sha256),
                    short(&sha)
                )),
            }
        }
        Ok(format!(
            "{} file(s) changed: {}",
            lines.len(),
            lines.join("; ")
        ))
    }

    /// Each file still differs from its original (achieved/target: files
    /// still changed / files changed); a file someone restored is named.
    fn health(&mut self, _ctx: &FaultContext) -> Option<super::FaultHealth> {
        if self.changed.is_empty() {
            return None;
        }
        let mut restored = Vec::new();
        for c in &self.changed {
            if let Ok(Some(sha)) = Self::current(c) {
                if sha == c.original.sha256 {
                    restored.push(escape(&c.path.display().to_string()).into_owned());
                }
            }
        }
        let total = self.changed.len();
        let still = total - restored.len();
        let h = if restored.len() == total {
            super::FaultHealth::missing(format!(
                "restored by someone else (original content back): {}",
                restored.join(", ")
            ))
        } else if restored.is_empty() {
            super::FaultHealth::present(format!("{total} file(s) still changed"))
        } else {
            super::FaultHealth::present(format!(
                "{still} of {total} file(s) still changed; restored by someone else: {}",
                restored.join(", ")
            ))
        };
        Some(h.measured(still as f64, total as f64))
    }

    fn before_rollback(&mut self, _ctx: &FaultContext) {
        let files: Vec<serde_json::Value> = self
            .changed
            .iter()
            .map(|c| {
                let now = Self::current(c).ok().flatten();
                serde_json::json!({
                    "path": c.path.display().to_string(),
                    "original_sha256": c.original.sha256,
                    "original_size": c.original.size,
                    "sha256_before_rollback": now,
                    "backup": if c.cloned { "clone" } else { "copy" },
                })
            })
            .collect();
        self.observations = serde_json::json!({
            "mode": self.spec.mode.name(),
            "seed": self.seed,
            "files": files,
        });
    }

    fn verify_rollback(&mut self, _ctx: &FaultContext) -> Result<(), FaultError> {
        let mut bad = Vec::new();
        for c in &self.changed {
            match sysfile::sha256_path(&c.path) {
                Ok(Some(sha)) if sha == c.original.sha256 => {}
                Ok(Some(sha)) => bad.push(format!(
                    "{} has sha256 {}, not the original {}",
                    c.path.display(),
                    short(&sha),
                    short(&c.original.sha256)
                )),
                Ok(None) => bad.push(format!("{} is missing", c.path.display())),
                Err(e) => bad.push(e),
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(FaultError::failed(format!(
                "file_corrupt: not restored: {}",
                escape(&bad.join("; "))
            )))
        }
    }

    fn observations(&self) -> serde_json::Value {
        self.observations.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match(b"*.db", b"a.db"));
        assert!(!glob_match(b"*.db", b".a.db"));
        assert!(glob_match(b".*", b".hidden"));
        assert!(glob_match(b"f?[0-9]", b"fx7"));
        assert!(!glob_match(b"f?[!0-9]", b"fx7"));
        assert!(!glob_match(b"a*", b"ba"));
    }

    #[test]
    fn specs_with_fields_of_another_mode_are_refused() {
        let s: FileCorruptSpec =
            serde_yaml::from_str("{path: relative, mode: truncate, bits: 3}").unwrap();
        let p = check_spec(&s);
        assert!(p.iter().any(|(f, _)| f == ".path"), "{p:?}");
        assert!(
            p.iter()
                .any(|(f, m)| f == ".bits" && m.contains("flip_bits")),
            "{p:?}"
        );
        let s: FileCorruptSpec =
            serde_yaml::from_str("{path: /proc/1/environ, mode: delete}").unwrap();
        assert!(check_spec(&s)[0].1.contains("/proc"));
    }
}
