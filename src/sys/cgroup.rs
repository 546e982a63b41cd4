//! cgroup files: the only code that reads or writes under /sys/fs/cgroup.
//!
//! The layout is detected from mountinfo (youki-style): every cgroup v1
//! hierarchy (one mount per controller set, e.g. `cpu` or `cpu,cpuacct`) and
//! the cgroup v2 unified mount, if any. A host is `V1` (legacy), `V2`
//! (unified), or `Hybrid` (v1 controllers plus a v2 mount, usually at
//! /sys/fs/cgroup/unified). Everything is rooted at paths taken from the
//! mountinfo text and a proc root, so unit tests point it at a temporary
//! folder of fake control files. Every error carries the file it concerns.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// cgroup version of one hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Version {
    V1,
    V2,
}

/// The host's overall layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayoutKind {
    /// Only cgroup v1 hierarchies.
    V1,
    /// Only the cgroup v2 unified hierarchy.
    V2,
    /// v1 controller hierarchies plus a v2 mount.
    Hybrid,
    /// No cgroup filesystem mounted.
    None,
}

/// One mounted cgroup hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    pub version: Version,
    /// Where it is mounted, e.g. /sys/fs/cgroup/cpu.
    pub mount_point: PathBuf,
    /// The cgroup shown at the mount point (field 4 of mountinfo): `/` unless
    /// the mount is a bind mount of a sub-cgroup or inside a cgroup namespace.
    pub mount_root: String,
    /// v1: the controllers bound to it (`cpu`, `cpuacct`, `name=systemd`);
    /// v2: the controllers in the root's `cgroup.controllers`.
    pub controllers: Vec<String>,
}

impl Hierarchy {
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
    /// The root cgroup of this hierarchy as far as this mount shows it.
    pub fn root(&self) -> Cgroup {
        Cgroup {
            dir: self.mount_point.clone(),
            version: self.version,
            mount_point: self.mount_point.clone(),
        }
    }
    /// `v1 /sys/fs/cgroup/cpu` — for messages and reports.
    pub fn describe(&self) -> String {
        let v = match self.version {
            Version::V1 => "v1",
            Version::V2 => "v2",
        };
        format!("cgroup {v} at {}", self.mount_point.display())
    }
}

/// A failed cgroup file operation: what was done, on which path, and why.
#[derive(Debug)]
pub struct CgroupError {
    pub action: String,
    pub path: PathBuf,
    pub source: io::Error,
}

impl CgroupError {
    fn new(action: impl Into<String>, path: &Path, source: io::Error) -> Self {
        CgroupError {
            action: action.into(),
            path: path.to_path_buf(),
            source,
        }
    }
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

impl fmt::Display for CgroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.action,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for CgroupError {}

/// One line of /proc/PID/cgroup: `ID:CONTROLLERS:PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcCgroupLine {
    pub id: u32,
    /// Empty for the v2 line (`0::/path`).
    pub controllers: Vec<String>,
    pub path: String,
}

/// Parses the text of /proc/PID/cgroup.
pub fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroupLine> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let id = it.next()?.trim().parse().ok()?;
            let ctl = it.next()?;
            let path = it.next()?.to_string();
            let controllers = if ctl.is_empty() {
                Vec::new()
            } else {
                ctl.split(',').map(str::to_string).collect()
            };
            Some(ProcCgroupLine {
                id,
                controllers,
                path,
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup hierarchies of a host, found from mountinfo.
#[derive(Clone, Debug)]
pub struct Cgroups {
    hierarchies: Vec<Hierarchy>,
    proc_root: PathBuf,
}

impl Cgroups {
    /// Reads /proc/self/mountinfo and the v2 root's `cgroup.controllers`.
    pub fn detect() -> Result<Self, CgroupError> {
        let p = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(p).map_err(|e| CgroupError::new("reading", p, e))?;
        Ok(Self::from_mountinfo(&text, "/proc"))
    }

    /// Builds the layout from mountinfo text; `/proc/PID/cgroup` is read
    /// under `proc_root`. v2 controllers come from `<mount>/cgroup.controllers`.
    pub fn from_mountinfo(mountinfo: &str, proc_root: impl Into<PathBuf>) -> Self {
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let l: Vec<&str> = left.split_whitespace().collect();
            let r: Vec<&str> = right.split_whitespace().collect();
            if l.len() < 5 || r.is_empty() {
                continue;
            }
            let fstype = r[0];
            let mount_root = unescape_mount(l[3]);
            let mount_point = PathBuf::from(unescape_mount(l[4]));
            let h = match fstype {
                "cgroup" => {
                    let opts = r.get(2).copied().unwrap_or("");
                    let controllers: Vec<String> = opts
                        .split(',')
                        .filter(|o| {
                            !matches!(
                                *o,
                                "rw" | "ro"
                                    | "nosuid"
                                    | "nodev"
                                    | "noexec"
                                    | "relatime"
                                    | "noatime"
                                    | "clone_children"
                                    | "xattr"
                                    | "noprefix"
                                    | "cpuset_v2_mode"
                                    | "favordynmods"
                            ) && !o.starts_with("release_agent=")
                                && !o.is_empty()
                        })
                        .map(str::to_string)
                        .collect();
                    Hierarchy {
                        version: Version::V1,
                        mount_point,
                        mount_root,
                        controllers,
                    }
                }
                "cgroup2" => {
                    let controllers =
                        std::fs::read_to_string(mount_point.join("cgroup.controllers"))
                            .map(|s| s.split_whitespace().map(str::to_string).collect())
                            .unwrap_or_default();
                    Hierarchy {
                        version: Version::V2,
                        mount_point,
                        mount_root,
                        controllers,
                    }
                }
                _ => continue,
            };
            // The same hierarchy may be mounted twice (bind mounts); keep the first.
            let dup = hierarchies.iter().any(|o| {
                o.version == h.version
                    && (h.version == Version::V2 || o.controllers == h.controllers)
            });
            if !dup {
                hierarchies.push(h);
            }
        }
        Cgroups {
            hierarchies,
            proc_root: proc_root.into(),
        }
    }

    pub fn hierarchies(&self) -> &[Hierarchy] {
        &self.hierarchies
    }

    pub fn kind(&self) -> LayoutKind {
        let v1 = self.hierarchies.iter().any(|h| h.version == Version::V1);
        let v2 = self.hierarchies.iter().any(|h| h.version == Version::V2);
        match (v1, v2) {
            (true, true) => LayoutKind::Hybrid,
            (true, false) => LayoutKind::V1,
            (false, true) => LayoutKind::V2,
            (false, false) => LayoutKind::None,
        }
    }

    /// The unified (v2) hierarchy, if mounted.
    pub fn unified(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.version == Version::V2)
    }

    /// The hierarchy that holds `controller`: a v1 hierarchy bound to it, or
    /// else the v2 hierarchy when its root offers it. (A controller is in at
    /// most one of the two: the kernel binds it to one.)
    pub fn hierarchy_for(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies
            .iter()
            .find(|h| h.version == Version::V1 && h.has(controller))
            .or_else(|| {
                self.hierarchies
                    .iter()
                    .find(|h| h.version == Version::V2 && h.has(controller))
            })
    }

    /// Reads /proc/PID/cgroup.
    pub fn proc_cgroup(&self, pid: i32) -> Result<Vec<ProcCgroupLine>, CgroupError> {
        let p = self.proc_root.join(pid.to_string()).join("cgroup");
        let text = std::fs::read_to_string(&p).map_err(|e| CgroupError::new("reading", &p, e))?;
        Ok(parse_proc_cgroup(&text))
    }

    /// The cgroup `pid` is in within hierarchy `h`, as a directory on disk.
    pub fn cgroup_of(&self, pid: i32, h: &Hierarchy) -> Result<Cgroup, CgroupError> {
        let p = self.proc_root.join(pid.to_string()).join("cgroup");
        let lines = self.proc_cgroup(pid)?;
        let line = lines.iter().find(|l| match h.version {
            Version::V2 => l.id == 0 && l.controllers.is_empty(),
            Version::V1 => {
                l.id != 0 && {
                    let mut a = l.controllers.clone();
                    let mut b = h.controllers.clone();
                    a.sort();
                    b.sort();
                    a == b
                }
            }
        });
        let Some(line) = line else {
            return Err(CgroupError::new(
                format!("finding the {} line in", h.controllers.join(",")),
                &p,
                io::Error::new(io::ErrorKind::NotFound, "no such hierarchy line"),
            ));
        };
        let root = h.mount_root.trim_end_matches('/');
        let rel = match line.path.strip_prefix(root) {
            Some(r) if root.is_empty() || r.is_empty() || r.starts_with('/') => r,
            _ => {
                return Err(CgroupError::new(
                    format!(
                        "locating cgroup `{}` (outside the mounted subtree `{}`) from",
                        line.path, h.mount_root
                    ),
                    &p,
                    io::Error::new(io::ErrorKind::NotFound, "cgroup not visible here"),
                ))
            }
        };
        let rel = rel.trim_start_matches('/');
        let dir = if rel.is_empty() {
            h.mount_point.clone()
        } else {
            h.mount_point.join(rel)
        };
        Ok(Cgroup {
            dir,
            version: h.version,
            mount_point: h.mount_point.clone(),
        })
    }
}

/// One cgroup: a directory in a mounted hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cgroup {
    pub dir: PathBuf,
    pub version: Version,
    pub mount_point: PathBuf,
}

impl Cgroup {
    pub fn is_root(&self) -> bool {
        self.dir == self.mount_point
    }
    pub fn parent(&self) -> Option<Cgroup> {
        if self.is_root() {
            return None;
        }
        Some(Cgroup {
            dir: self.dir.parent()?.to_path_buf(),
            version: self.version,
            mount_point: self.mount_point.clone(),
        })
    }
    pub fn child(&self, name: &str) -> Cgroup {
        Cgroup {
            dir: self.dir.join(name),
            version: self.version,
            mount_point: self.mount_point.clone(),
        }
    }
    /// The path inside the hierarchy, e.g. `/system.slice/x.service`.
    pub fn rel_path(&self) -> String {
        let rel = self
            .dir
            .strip_prefix(&self.mount_point)
            .unwrap_or(&self.dir);
        format!("/{}", rel.display())
    }
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    pub fn has_file(&self, name: &str) -> bool {
        self.dir.join(name).exists()
    }
    pub fn procs_file(&self) -> PathBuf {
        self.file("cgroup.procs")
    }
    pub fn read(&self, name: &str) -> Result<String, CgroupError> {
        let p = self.file(name);
        std::fs::read_to_string(&p).map_err(|e| CgroupError::new("reading", &p, e))
    }
    pub fn write(&self, name: &str, value: &str) -> Result<(), CgroupError> {
        let p = self.file(name);
        std::fs::write(&p, value)
            .map_err(|e| CgroupError::new(format!("writing `{}` to", value.trim_end()), &p, e))
    }
    /// Creates the directory (its parent must exist). Fails if it exists.
    pub fn create(&self) -> Result<(), CgroupError> {
        std::fs::create_dir(&self.dir)
            .map_err(|e| CgroupError::new("creating cgroup", &self.dir, e))
    }
    /// Removes the (empty) cgroup directory.
    pub fn remove(&self) -> Result<(), CgroupError> {
        std::fs::remove_dir(&self.dir)
            .map_err(|e| CgroupError::new("removing cgroup", &self.dir, e))
    }
    /// The processes in this cgroup (not its children).
    pub fn procs(&self) -> Result<Vec<i32>, CgroupError> {
        Ok(self
            .read("cgroup.procs")?
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect())
    }
    /// Moves a process (all its threads) into this cgroup.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        self.write("cgroup.procs", &pid.to_string())
    }
    /// v2: the controllers this cgroup may use (`cgroup.controllers`).
    pub fn controllers(&self) -> Result<Vec<String>, CgroupError> {
        Ok(self
            .read("cgroup.controllers")?
            .split_whitespace()
            .map(str::to_string)
            .collect())
    }
    /// v2: the controllers enabled for its children (`cgroup.subtree_control`).
    pub fn subtree_control(&self) -> Result<Vec<String>, CgroupError> {
        Ok(self
            .read("cgroup.subtree_control")?
            .split_whitespace()
            .map(str::to_string)
            .collect())
    }
    /// Reads a flat keyed file (`key value` per line: cpu.stat,
    /// memory.events, memory.oom_control). Values that are not numbers are skipped.
    pub fn keyed(&self, name: &str) -> Result<BTreeMap<String, u64>, CgroupError> {
        Ok(parse_keyed(&self.read(name)?))
    }
    /// Reads a file holding one number (`max` reads as `u64::MAX`).
    pub fn read_u64(&self, name: &str) -> Result<u64, CgroupError> {
        let s = self.read(name)?;
        let t = s.trim();
        if t == "max" {
            return Ok(u64::MAX);
        }
        t.parse::<i64>()
            .map(|v| if v < 0 { u64::MAX } else { v as u64 })
            .map_err(|_| {
                CgroupError::new(
                    format!("parsing `{t}` as a number from"),
                    &self.file(name),
                    io::Error::new(io::ErrorKind::InvalidData, "not a number"),
                )
            })
    }
}

/// Parses `key value` lines.
pub fn parse_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

/// Moves every process out of the cgroup directory `dir` (so it can be
/// removed): into the cgroup whose `cgroup.procs` is `to`, or when that
/// fails into the root cgroup of the hierarchy (the highest directory above
/// `dir` with a `cgroup.procs`). Repeats while processes keep appearing
/// (a target forking); best effort, bounded.
pub fn evacuate(dir: &Path, to: Option<&Path>) {
    let root_procs = dir
        .ancestors()
        .skip(1)
        .filter(|d| d.join("cgroup.procs").is_file())
        .last()
        .map(|d| d.join("cgroup.procs"));
    for _ in 0..20 {
        let Ok(list) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
            return;
        };
        let pids: Vec<&str> = list.split_whitespace().collect();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // Only ever into an existing cgroup.procs file: never create one.
            let moved = to.is_some_and(|t| {
                t.file_name() == Some(std::ffi::OsStr::new("cgroup.procs"))
                    && std::fs::OpenOptions::new()
                        .write(true)
                        .open(t)
                        .and_then(|mut f| std::io::Write::write_all(&mut f, pid.as_bytes()))
                        .is_ok()
            });
            if !moved {
                if let Some(r) = &root_procs {
                    let _ = std::fs::write(r, pid);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fake hybrid host: v1 cpu and memory, name=systemd, v2 at unified.
    fn fake_host() -> (tempfile::TempDir, Cgroups) {
        let t = tempfile::tempdir().unwrap();
        let base = t.path();
        for d in ["cpu/app", "memory/slice/app", "systemd", "unified/x"] {
            fs::create_dir_all(base.join(d)).unwrap();
        }
        fs::write(base.join("unified/cgroup.controllers"), "hugetlb\n").unwrap();
        fs::create_dir_all(base.join("proc/42")).unwrap();
        fs::write(
            base.join("proc/42/cgroup"),
            "9:name=systemd:/\n4:memory:/slice/app\n1:cpu:/app\n0::/x\n",
        )
        .unwrap();
        let b = base.display();
        let mi = format!(
            "31 23 0:28 / {b} rw,relatime - tmpfs tmpfs rw,mode=755\n\
             32 31 0:29 / {b}/cpu rw,relatime - cgroup cgroup rw,cpu\n\
             35 31 0:32 / {b}/memory rw,relatime - cgroup cgroup rw,memory\n\
             40 31 0:37 / {b}/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/x,name=systemd\n\
             41 31 0:38 / {b}/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n"
        );
        let c = Cgroups::from_mountinfo(&mi, base.join("proc"));
        (t, c)
    }

    #[test]
    fn detects_hybrid_layout() {
        let (t, c) = fake_host();
        assert_eq!(c.kind(), LayoutKind::Hybrid);
        assert_eq!(c.hierarchies().len(), 4);
        let cpu = c.hierarchy_for("cpu").unwrap();
        assert_eq!(cpu.version, Version::V1);
        assert_eq!(cpu.mount_point, t.path().join("cpu"));
        let sd = c.hierarchies().iter().find(|h| h.has("name=systemd"));
        assert!(sd.is_some(), "{:?}", c.hierarchies());
        assert_eq!(c.hierarchy_for("hugetlb").unwrap().version, Version::V2);
        assert!(c.hierarchy_for("io").is_none());
    }

    #[test]
    fn finds_a_process_cgroup_per_hierarchy() {
        let (t, c) = fake_host();
        let mem = c.hierarchy_for("memory").unwrap().clone();
        let cg = c.cgroup_of(42, &mem).unwrap();
        assert_eq!(cg.dir, t.path().join("memory/slice/app"));
        assert_eq!(cg.rel_path(), "/slice/app");
        assert!(!cg.is_root());
        assert_eq!(cg.parent().unwrap().dir, t.path().join("memory/slice"));
        let v2 = c.unified().unwrap().clone();
        assert_eq!(
            c.cgroup_of(42, &v2).unwrap().dir,
            t.path().join("unified/x")
        );
        let err = c.cgroup_of(43, &mem).unwrap_err();
        assert!(err.to_string().contains("proc/43/cgroup"), "{err}");
    }

    #[test]
    fn pure_v2_and_namespaced_roots() {
        let t = tempfile::tempdir().unwrap();
        let b = t.path();
        fs::create_dir_all(b.join("cg/svc")).unwrap();
        fs::write(
            b.join("cg/cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        fs::create_dir_all(b.join("proc/7")).unwrap();
        fs::write(b.join("proc/7/cgroup"), "0::/ns/svc\n").unwrap();
        let mi = format!(
            "30 1 0:26 /ns {} rw - cgroup2 cgroup2 rw\n",
            b.join("cg").display()
        );
        let c = Cgroups::from_mountinfo(&mi, b.join("proc"));
        assert_eq!(c.kind(), LayoutKind::V2);
        let h = c.hierarchy_for("memory").unwrap().clone();
        assert_eq!(c.cgroup_of(7, &h).unwrap().dir, b.join("cg/svc"));
        fs::write(b.join("proc/7/cgroup"), "0::/other\n").unwrap();
        assert!(c.cgroup_of(7, &h).is_err());
    }

    #[test]
    fn control_files_and_errors_name_the_path() {
        let (t, c) = fake_host();
        let cpu = c.hierarchy_for("cpu").unwrap().root();
        let child = cpu.child("faultline-x");
        child.create().unwrap();
        child.write("cpu.cfs_quota_us", "20000").unwrap();
        assert_eq!(child.read_u64("cpu.cfs_quota_us").unwrap(), 20000);
        fs::write(child.file("memory.events"), "low 0\nhigh 3\noom_kill 2\n").unwrap();
        assert_eq!(child.keyed("memory.events").unwrap()["oom_kill"], 2);
        let e = child.read("nope").unwrap_err();
        assert!(e
            .to_string()
            .contains(&*t.path().join("cpu/faultline-x/nope").to_string_lossy()));
        assert_eq!(
            child.create().unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        fs::write(child.file("cpu.max"), "max 100000\n").unwrap();
        assert!(child.read_u64("cpu.max").is_err());
        fs::write(child.file("memory.max"), "max\n").unwrap();
        assert_eq!(child.read_u64("memory.max").unwrap(), u64::MAX);
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mount(r"/a\040b"), "/a b");
        assert_eq!(unescape_mount(r"/plain"), "/plain");
        assert_eq!(unescape_mount(r"/end\04"), r"/end\04");
    }

    #[test]
    fn this_host_layout_is_readable() {
        // Whatever this host has, detection must not fail and every process
        // can be located in every hierarchy it reports.
        let c = Cgroups::detect().unwrap();
        let me = std::process::id() as i32;
        for h in c.hierarchies() {
            let cg = c.cgroup_of(me, h).unwrap();
            assert!(cg.dir.starts_with(&h.mount_point));
        }
    }
}
