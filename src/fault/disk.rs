//! `disk_fill`: fill a filesystem to a level, never past a safety reserve.

use super::{FaultContext, FaultError, FaultImpl, PlannedOp, UndoLog};
use crate::journal::undo::UndoOp;
use crate::units::{Percent, Size};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskFillSpec {
    /// A directory on the filesystem to fill; the fault's files are created here.
    pub path: String,
    /// The path is inside this container's filesystem (a name or id): it
    /// is reached through /proc/PID/root of the container's main process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Fill the filesystem until it is this full...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_to: Option<Percent>,
    /// ...or write this much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
    /// Always leave at least this much free (default 64MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve: Option<Size>,
}

/// The reserve when none is given: never leave less than this free.
pub const DEFAULT_RESERVE: u64 = 64 << 20;
/// The smallest reserve accepted.
pub const MIN_RESERVE: u64 = 4 << 20;
/// The largest single fill file (some filesystems cap file sizes at 4GiB).
const MAX_FILE: u64 = 1 << 30;

pub fn build_disk_fill(s: &DiskFillSpec) -> Box<dyn FaultImpl> {
    if let Some(c) = &s.container {
        let spec = s.clone();
        return Box::new(crate::fault::container::InContainerPath::new(
            c.clone(),
            s.path.clone(),
            Box::new(move |p| {
                let mut t = spec.clone();
                (t.path, t.container) = (p.to_string(), None);
                build_disk_fill(&t)
            }),
        ));
    }
    Box::new(DiskFill {
        spec: s.clone(),
        files: Vec::new(),
        planned: None,
        bytes_written: 0,
        observations: serde_json::Map::new(),
    })
}

/// Space on one filesystem, in bytes, as `df` counts it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FsSpace {
    pub total: u64,
    /// Free, counting blocks reserved for root.
    pub free: u64,
    /// Free for unprivileged users (what `df` shows as Avail).
    pub avail: u64,
    pub block: u64,
}

impl FsSpace {
    pub fn of(path: &Path) -> Result<FsSpace, String> {
        let st = nix::sys::statvfs::statvfs(path)
            .map_err(|e| format!("statvfs {}: {e}", path.display()))?;
        let frsize = st.fragment_size().max(1) as u64;
        Ok(FsSpace {
            total: st.blocks() as u64 * frsize,
            free: st.blocks_free() as u64 * frsize,
            avail: st.blocks_available() as u64 * frsize,
            block: frsize,
        })
    }
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.free)
    }
    /// Fill level in percent, as `df` shows it: used / (used + avail).
    pub fn level(&self) -> f64 {
        let denom = self.used() + self.avail;
        if denom == 0 {
            0.0
        } else {
            self.used() as f64 * 100.0 / denom as f64
        }
    }
    /// Bytes to add to reach `percent` (None when already there or above).
    pub fn bytes_to_level(&self, percent: f64) -> Option<u64> {
        let denom = (self.used() + self.avail) as f64;
        let target = (denom * percent / 100.0) as u64;
        target.checked_sub(self.used()).filter(|n| *n > 0)
    }
}

/// What `disk_fill` computed from the filesystem as it is now.
#[derive(Clone, Debug)]
struct Planned {
    dir: PathBuf,
    space: FsSpace,
    bytes: u64,
    reserve: u64,
}

pub struct DiskFill {
    spec: DiskFillSpec,
    files: Vec<PathBuf>,
    planned: Option<Planned>,
    bytes_written: u64,
    observations: serde_json::Map<String, serde_json::Value>,
}

impl DiskFill {
    fn reserve(&self) -> u64 {
        self.spec
            .reserve
            .map(|r| r.bytes().max(MIN_RESERVE))
            .unwrap_or(DEFAULT_RESERVE)
    }

    /// Checks the path and computes how much to write. Read-only.
    fn compute(&self) -> Result<Planned, FaultError> {
        let dir = PathBuf::from(&self.spec.path);
        let md = std::fs::metadata(&dir).map_err(|e| {
            FaultError::precondition(format!("disk_fill.path {}: {e}", dir.display()))
        })?;
        if !md.is_dir() {
            return Err(FaultError::precondition(format!(
                "disk_fill.path {} is not a directory; give a directory on the filesystem to fill",
                dir.display()
            )));
        }
        match nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK) {
            Ok(()) => {}
            Err(nix::errno::Errno::EROFS) => {
                return Err(FaultError::precondition(format!(
                    "disk_fill.path {} is on a read-only filesystem",
                    dir.display()
                )))
            }
            Err(_) => return Err(FaultError::privileges(format!(
                "disk_fill cannot create files in {}: permission denied; run faultline as root or as the owner of that directory",
                dir.display()
            ))),
        }
        let space = FsSpace::of(&dir).map_err(FaultError::precondition)?;
        let reserve = self.reserve();
        let bytes = match (self.spec.fill_to, self.spec.size) {
            (Some(p), _) => space.bytes_to_level(p.0).ok_or_else(|| {
                FaultError::precondition(format!(
                    "the filesystem of {} is already {:.1}% full, at or above fill_to {}; nothing to fill",
                    dir.display(),
                    space.level(),
                    p
                ))
            })?,
            (None, Some(z)) => z.bytes(),
            (None, None) => {
                return Err(FaultError::precondition(
                    "disk_fill needs `fill_to` or `size`",
                ))
            }
        };
        let bytes = bytes / space.block * space.block;
        if space.avail < bytes.saturating_add(reserve) {
            return Err(FaultError::precondition(format!(
                "disk_fill would write {} to {} but only {} is free there; the reserve of {} must stay free; lower {} or `reserve`",
                Size(bytes),
                dir.display(),
                Size(space.avail),
                Size(reserve),
                if self.spec.fill_to.is_some() { "`fill_to`" } else { "`size`" }
            )));
        }
        Ok(Planned {
            dir,
            space,
            bytes,
            reserve,
        })
    }

    fn file_base(ctx: &FaultContext) -> String {
        format!(".faultline-fill-{}", ctx.run_slug())
    }

    /// Bytes our files occupy on disk.
    fn allocated(&self) -> u64 {
        self.files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.blocks() * 512)
            .sum()
    }
}

/// Allocates `len` bytes to `file`: fallocate, or zeros where unsupported.
/// Stops writing zeros when the filesystem's free space drops to `reserve`.
fn fill_file(file: &mut std::fs::File, dir: &Path, len: u64, reserve: u64) -> Result<u64, String> {
    match nix::fcntl::fallocate(&*file, nix::fcntl::FallocateFlags::empty(), 0, len as i64) {
        Ok(()) => return Ok(len),
        Err(nix::errno::Errno::EOPNOTSUPP) | Err(nix::errno::Errno::ENOSYS) => {}
        Err(e) => return Err(format!("fallocate: {e}")),
    }
    let zeros = vec![0u8; 1 << 20];
    let mut written = 0u64;
    while written < len {
        if written.is_multiple_of(64 << 20) {
            let space = FsSpace::of(dir)?;
            if space.avail <= reserve {
                break;
            }
        }
        let n = (len - written).min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])
            .map_err(|e| format!("writing zeros: {e}"))?;
        written += n as u64;
    }
    file.sync_all().map_err(|e| format!("fsync: {e}"))?;
    Ok(written)
}

impl FaultImpl for DiskFill {
    fn kind(&self) -> &'static str {
        "disk_fill"
    }

    fn target(&self) -> String {
        self.spec.path.clone()
    }

    fn preflight(&mut self, _ctx: &FaultContext) -> Result<(), FaultError> {
        self.compute().map(|_| ())
    }

    fn plan(&self, ctx: &FaultContext) -> Vec<PlannedOp> {
        match self.compute() {
            Ok(p) => {
                let files = p.bytes.div_ceil(MAX_FILE).max(1);
                vec![PlannedOp {
                    action: format!(
                        "write {} to {} file(s) {}/{}-N (fallocate, or zeros): the filesystem goes from {:.1}% to about {:.1}% full, leaving {} free (reserve {})",
                        Size(p.bytes),
                        files,
                        p.dir.display(),
                        Self::file_base(ctx),
                        p.space.level(),
                        FsSpace { free: p.space.free - p.bytes, avail: p.space.avail - p.bytes, ..p.space }.level(),
                        Size(p.space.avail - p.bytes),
                        Size(p.reserve)
                    ),
                    command: None,
                    undo: Some(format!("rm -f {}/{}-*", p.dir.display(), Self::file_base(ctx))),
                }]
            }
            Err(e) => vec![PlannedOp {
                action: format!("cannot plan disk_fill: {e}"),
                command: None,
                undo: None,
            }],
        }
    }

    fn inject(&mut self, ctx: &FaultContext, undo: &mut dyn UndoLog) -> Result<(), FaultError> {
        if ctx.dry_run {
            return Ok(());
        }
        let p = self.compute()?;
        let base = Self::file_base(ctx);
        let mut left = p.bytes;
        let mut n = 0;
        while left > 0 {
            let mut path;
            loop {
                n += 1;
                path = p.dir.join(format!("{base}-{n}"));
                if !path.exists() {
                    break;
                }
            }
            undo.record(
                &format!("disk_fill {}", p.dir.display()),
                UndoOp::RemoveFile { path: path.clone() },
            )
            .map_err(|e| {
                FaultError::failed(format!("disk_fill: cannot write the undo record: {e:#}"))
            })?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| {
                    FaultError::failed(format!("disk_fill: creating {}: {e}", path.display()))
                })?;
            self.files.push(path.clone());
            let len = left.min(MAX_FILE);
            let done = fill_file(&mut f, &p.dir, len, p.reserve).map_err(|e| {
                FaultError::failed(format!("disk_fill: filling {}: {e}", path.display()))
            })?;
            self.bytes_written += done;
            if done < len {
                break; // the reserve was reached (someone else is writing too)
            }
            left -= len;
        }
        self.planned = Some(p);
        Ok(())
    }

    fn verify(&mut self, _ctx: &FaultContext) -> Result<String, FaultError> {
        let Some(p) = &self.planned else {
            return Err(FaultError::failed("disk_fill was not injected"));
        };
        let now = FsSpace::of(&p.dir).map_err(FaultError::failed)?;
        let allocated = self.allocated();
        if let Some(want) = self.spec.fill_to {
            let level = now.level();
            if (level - want.0).abs() > 1.0 {
                return Err(FaultError::failed(format!(
                    "disk_fill: the filesystem of {} is {level:.2}% full, not {} (within 1%)",
                    p.dir.display(),
                    want
                )));
            }
            Ok(format!(
                "{} is {level:.2}% full (target {want}), {} in {} file(s), {} free",
                p.dir.display(),
                Size(allocated),
                self.files.len(),
                Size(now.avail)
            ))
        } else {
            if (allocated as f64) < p.bytes as f64 * 0.99 {
                return Err(FaultError::failed(format!(
                    "disk_fill: only {} of {} is allocated in {}",
                    Size(allocated),
                    Size(p.bytes),
                    p.dir.display()
                )));
            }
            Ok(format!(
                "{} allocated in {} file(s) under {}; the filesystem is {:.2}% full, {} free",
                Size(allocated),
                self.files.len(),
                p.dir.display(),
                now.level(),
                Size(now.avail)
            ))
        }
    }

    /// The fill files are still there and still hold their space
    /// (achieved/target: bytes allocated / bytes written).
    fn health(&mut self, _ctx: &FaultContext) -> Option<super::FaultHealth> {
        let p = self.planned.as_ref()?;
        let gone: Vec<String> = self
            .files
            .iter()
            .filter(|f| !f.exists())
            .map(|f| f.display().to_string())
            .collect();
        if !gone.is_empty() && gone.len() == self.files.len() {
            return Some(super::FaultHealth::missing(format!(
                "fill file(s) deleted: {}",
                crate::sys::text::escape(&gone.join(", ")).into_owned()
            )));
        }
        let allocated = self.allocated();
        let level = FsSpace::of(&p.dir).map(|s| s.level()).unwrap_or(0.0);
        let detail = if gone.is_empty() {
            format!("{} allocated, filesystem {level:.1}% full", Size(allocated))
        } else {
            format!(
                "{} allocated, filesystem {level:.1}% full; deleted: {}",
                Size(allocated),
                crate::sys::text::escape(&gone.join(", ")).into_owned()
            )
        };
        Some(
            super::FaultHealth::present(detail)
                .measured(allocated as f64, self.bytes_written.max(1) as f64),
        )
    }

    fn before_rollback(&mut self, _ctx: &FaultContext) {
        let mut obs = serde_json::Map::new();
        obs.insert("path".into(), self.spec.path.clone().into());
        obs.insert(
            "files".into(),
            self.files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .into(),
        );
        obs.insert("bytes_written".into(), self.bytes_written.into());
        obs.insert("bytes_allocated".into(), self.allocated().into());
        if let Some(p) = &self.planned {
            obs.insert(
                "level_before_percent".into(),
                round2(p.space.level()).into(),
            );
            if let Ok(now) = FsSpace::of(&p.dir) {
                obs.insert("level_percent".into(), round2(now.level()).into());
                obs.insert("free_bytes".into(), now.avail.into());
            }
        }
        self.observations = obs;
    }

    fn verify_rollback(&mut self, _ctx: &FaultContext) -> Result<(), FaultError> {
        let left: Vec<String> = self
            .files
            .iter()
            .filter(|f| f.exists())
            .map(|f| f.display().to_string())
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(FaultError::failed(format!(
                "disk_fill: files still present: {}",
                left.join(", ")
            )))
        }
    }

    fn observations(&self) -> serde_json::Value {
        if self.observations.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::Object(self.observations.clone())
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_like_df() {
        let s = FsSpace {
            total: 1000,
            free: 600,
            avail: 550,
            block: 1,
        };
        assert_eq!(s.used(), 400);
        assert!((s.level() - 400.0 * 100.0 / 950.0).abs() < 1e-9);
        assert_eq!(s.bytes_to_level(50.0), Some(75));
        assert_eq!(s.bytes_to_level(40.0), None);
    }

    #[test]
    fn refuses_a_file_a_missing_path_and_the_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let mk = |path: &Path, size: u64| DiskFill {
            spec: DiskFillSpec {
                path: path.display().to_string(),
                container: None,
                fill_to: None,
                size: Some(Size(size)),
                reserve: None,
            },
            files: Vec::new(),
            planned: None,
            bytes_written: 0,
            observations: serde_json::Map::new(),
        };
        assert_eq!(
            mk(&file, 1).compute().unwrap_err().code,
            crate::exit::PRECONDITION
        );
        assert_eq!(
            mk(&dir.path().join("no"), 1).compute().unwrap_err().code,
            crate::exit::PRECONDITION
        );
        let avail = FsSpace::of(dir.path()).unwrap().avail;
        let e = mk(dir.path(), avail).compute().unwrap_err();
        assert_eq!(e.code, crate::exit::PRECONDITION);
        assert!(e.message.contains("reserve"), "{}", e.message);
        assert!(mk(dir.path(), 4096).compute().is_ok());
    }
}
