//! The kernel VM test tier: boots a stock distribution kernel (which has
//! `sch_netem` as a module and a pure cgroup v2 hierarchy) under QEMU/TCG with
//! an initramfs built here, runs a shell script as `/init`, and parses the
//! `VMTEST <name> PASS|FAIL <detail>` lines the script prints.
//!
//! Include it from a test file with
//!
//! ```ignore
//! #[path = "vm/mod.rs"]
//! mod vm;
//!
//! #[test]
//! fn netem_in_a_real_kernel() {
//!     let Some(mut vm) = vm::Vm::new() else { return }; // prints `skipped: ...`
//!     vm.add_binary(env!("CARGO_BIN_EXE_faultline"), "/bin/faultline")
//!         .add_modules(&["sch_netem"]);
//!     let log = vm.run(
//!         r#"/sbin/tc qdisc add dev lo root netem delay 10ms && echo "VMTEST netem PASS" || echo "VMTEST netem FAIL tc failed""#,
//!         std::time::Duration::from_secs(120),
//!     );
//!     log.assert_pass("netem");
//! }
//! ```
//!
//! What the guest has:
//! - busybox (static) as /bin/busybox with a link for every applet except
//!   `ip`, `tc` and `nft`; the host's real /sbin/ip, /sbin/tc (+ the netem
//!   distribution tables) and /usr/sbin/nft (when installed), each with the
//!   libraries `ldd` lists, at the same paths. `PATH` is
//!   `/sbin:/usr/sbin:/bin:/usr/bin`.
//! - /proc, /sys, /dev (devtmpfs), /run and /tmp (tmpfs) mounted, `lo` up, and
//!   `/sys/fs/cgroup` with cgroup2 mounted.
//! - the kernel modules asked for with [`Vm::add_modules`] (and their
//!   dependencies, from the kernel's modules.dep and modules.softdep), loaded
//!   with `insmod` in dependency order before the script runs. Modules built
//!   into the kernel are skipped. `/sbin/modprobe` is busybox's, with a
//!   modules.dep for the copied modules, so kernel auto-loading of those works.
//! - whatever was added with [`Vm::add_file`], [`Vm::add_binary`] (with its
//!   `ldd` libraries, debug info stripped) and [`Vm::add_bytes`].
//!
//! The script is sourced by busybox `sh` as root; the harness powers the VM
//! off after it. Busybox's shell runs its own applets before looking at
//! PATH (and its `ip`/`tc` know no netns or netem), so `ip`, `tc` and `nft`
//! are predefined as shell functions calling /sbin/ip, /sbin/tc and
//! /usr/sbin/nft; programs started from the script (like faultline) find the
//! real tools on PATH. Print one `VMTEST` marker per check. The shell function `vmcheck NAME CMD...` is predefined: it runs CMD
//! and prints `VMTEST NAME PASS` or `VMTEST NAME FAIL exit <code>`.
//!
//! Caching: the initramfs (everything but `/init`) is written once per set of
//! inputs under `$CARGO_TARGET_TMPDIR/vm-initrd/` (keyed by paths, sizes and
//! modification times), and `/init` is appended per run as a second cpio
//! archive, which the kernel unpacks on top.
//!
//! Environment: `FAULTLINE_VM_KERNEL=/boot/vmlinuz-X` picks the kernel (default:
//! the newest /boot/vmlinuz-* with a /lib/modules/<version>);
//! `FAULTLINE_REQUIRE_VM=1` turns a missing QEMU or kernel into a test failure
//! instead of a skip (for CI); `FAULTLINE_VM_VERBOSE=1` echoes the guest's
//! console to stderr as it arrives.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Bump when the archive layout changes, so stale caches are not reused.
const LAYOUT_VERSION: u32 = 1;

/// Serializes initramfs builds within one test binary.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// A VM to boot: kernel, QEMU and the files that go into its initramfs.
#[derive(Clone, Debug)]
pub struct Vm {
    qemu: PathBuf,
    kernel: PathBuf,
    kver: String,
    entries: Vec<Entry>,
    modules: Vec<String>,
    memory_mb: u32,
    smp: u32,
}

#[derive(Clone, Debug)]
enum Entry {
    File {
        host: PathBuf,
        guest: String,
    },
    Binary {
        host: PathBuf,
        guest: String,
    },
    Bytes {
        guest: String,
        data: Vec<u8>,
        mode: u32,
    },
}

/// What a boot printed, with the `VMTEST` markers parsed out.
#[derive(Clone, Debug)]
pub struct VmLog {
    /// Everything the guest printed on its console.
    pub output: String,
    /// `(name, passed, detail)` in the order printed.
    pub markers: Vec<(String, bool, String)>,
    /// The script ran to its end (the harness printed its closing line).
    pub completed: bool,
    /// The boot was killed after the timeout.
    pub timed_out: bool,
    pub elapsed: Duration,
}

const END_LINE: &str = "VMHARNESS script finished";

impl Vm {
    /// A VM with the newest installed kernel, or `None` (after printing
    /// `skipped: <reason>`) when QEMU or a kernel image is missing.
    pub fn new() -> Option<Vm> {
        match Self::find() {
            Ok(vm) => Some(vm),
            Err(why) => {
                if std::env::var("FAULTLINE_REQUIRE_VM").is_ok_and(|v| v == "1") {
                    panic!("FAULTLINE_REQUIRE_VM=1 but the VM tier cannot run: {why}");
                }
                println!("skipped: {why}");
                eprintln!("skipped: {why}");
                None
            }
        }
    }

    fn find() -> Result<Vm, String> {
        let qemu = which("qemu-system-x86_64").ok_or(
            "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)".to_string(),
        )?;
        if !Path::new("/bin/busybox").exists() && which("busybox").is_none() {
            return Err("busybox is not installed (Debian package busybox-static)".into());
        }
        let kernel = match std::env::var_os("FAULTLINE_VM_KERNEL") {
            Some(k) => PathBuf::from(k),
            None => newest_kernel().ok_or(
                "no /boot/vmlinuz-<version> with a matching /lib/modules/<version> (Debian package linux-image-amd64)"
                    .to_string(),
            )?,
        };
        let kver = kernel
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("vmlinuz-"))
            .ok_or(format!(
                "{} is not named vmlinuz-<version>",
                kernel.display()
            ))?
            .to_string();
        if std::fs::File::open(&kernel).is_err() {
            return Err(format!(
                "cannot read {} (the VM tier needs root or a readable kernel image)",
                kernel.display()
            ));
        }
        if !Path::new(&format!("/lib/modules/{kver}/modules.dep")).exists() {
            return Err(format!("/lib/modules/{kver}/modules.dep is missing"));
        }
        Ok(Vm {
            qemu,
            kernel,
            kver,
            entries: Vec::new(),
            modules: Vec::new(),
            memory_mb: 512,
            smp: 2,
        })
    }

    /// The kernel version booted (`6.1.0-26-amd64`).
    pub fn kernel_version(&self) -> &str {
        &self.kver
    }

    /// Copies a host file into the guest (mode kept).
    pub fn add_file(&mut self, host: impl AsRef<Path>, guest: &str) -> &mut Self {
        self.entries.push(Entry::File {
            host: host.as_ref().to_path_buf(),
            guest: guest.to_string(),
        });
        self
    }

    /// Copies an executable into the guest with every library `ldd` lists for
    /// it (debug info stripped when `strip` is installed).
    pub fn add_binary(&mut self, host: impl AsRef<Path>, guest: &str) -> &mut Self {
        self.entries.push(Entry::Binary {
            host: host.as_ref().to_path_buf(),
            guest: guest.to_string(),
        });
        self
    }

    /// Puts `data` at `guest` (mode 0755 when `executable`, else 0644).
    pub fn add_bytes(
        &mut self,
        guest: &str,
        data: impl Into<Vec<u8>>,
        executable: bool,
    ) -> &mut Self {
        self.entries.push(Entry::Bytes {
            guest: guest.to_string(),
            data: data.into(),
            mode: if executable { 0o755 } else { 0o644 },
        });
        self
    }

    /// Kernel modules to load before the script (e.g. `sch_netem`, `ifb`).
    pub fn add_modules(&mut self, names: &[&str]) -> &mut Self {
        self.modules.extend(names.iter().map(|s| s.to_string()));
        self
    }

    pub fn memory_mb(&mut self, mb: u32) -> &mut Self {
        self.memory_mb = mb;
        self
    }

    /// Boots the VM, runs `script` as root, powers off. The whole boot is
    /// killed after `timeout`.
    pub fn run(&self, script: &str, timeout: Duration) -> VmLog {
        let base = self.base_archive();
        let dir = tmp_root().join("runs");
        std::fs::create_dir_all(&dir).expect("creating the VM run folder");
        let mut initrd = tempfile::Builder::new()
            .prefix("initrd-")
            .suffix(".cpio")
            .tempfile_in(&dir)
            .expect("creating the per-run initrd");
        {
            let mut f = std::fs::File::open(&base).expect("reading the cached initramfs");
            std::io::copy(&mut f, initrd.as_file_mut()).expect("copying the initramfs");
            let mut cpio = Cpio::default();
            cpio.file("init", self.init_script(script).as_bytes(), 0o755);
            initrd
                .as_file_mut()
                .write_all(&cpio.finish())
                .expect("writing the per-run initrd");
            initrd.as_file_mut().flush().unwrap();
        }
        self.boot(initrd.path(), timeout)
    }

    fn init_script(&self, script: &str) -> String {
        let order = self.module_order();
        let mut s = String::new();
        s.push_str(
            r#"#!/bin/sh
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /run /tmp /root /var
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
ln -s /run /var/run
mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null
echo /sbin/modprobe > /proc/sys/kernel/modprobe 2>/dev/null
"#,
        );
        for m in &order {
            s.push_str(&format!(
                "insmod /lib/modules/{kver}/{m} 2>/tmp/insmod.err || grep -q 'File exists' /tmp/insmod.err || echo \"VMHARNESS insmod {m} failed: $(cat /tmp/insmod.err)\"\n",
                kver = self.kver
            ));
        }
        s.push_str(
            r#"# busybox's shell runs its own applets before PATH; these use the real tools.
ip() { /sbin/ip "$@"; }
tc() { /sbin/tc "$@"; }
[ -x /usr/sbin/nft ] && nft() { /usr/sbin/nft "$@"; }
ip link set lo up
vmcheck() {
  name="$1"; shift
  if "$@"; then echo "VMTEST $name PASS"; else echo "VMTEST $name FAIL exit $?"; fi
}
echo "VMHARNESS script starting"
cat > /tmp/script.sh <<'VMHARNESS_EOF'
"#,
        );
        s.push_str(script);
        s.push_str(
            "\nVMHARNESS_EOF\n. /tmp/script.sh\necho \"VMHARNESS script finished\"\nsync\npoweroff -f\n",
        );
        s
    }

    fn boot(&self, initrd: &Path, timeout: Duration) -> VmLog {
        let started = Instant::now();
        let mut child = Command::new(&self.qemu)
            .args([
                "-accel",
                "tcg",
                "-cpu",
                "max",
                "-smp",
                &self.smp.to_string(),
            ])
            .args(["-m", &self.memory_mb.to_string()])
            .args([
                "-nographic",
                "-no-reboot",
                "-nodefaults",
                "-serial",
                "stdio",
            ])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(initrd)
            .args(["-append", "console=ttyS0 panic=-1 quiet"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.qemu.display()));
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let verbose = std::env::var("FAULTLINE_VM_VERBOSE").is_ok_and(|v| v == "1");
        let reader = std::thread::spawn(move || {
            let mut out = String::new();
            let mut r = BufReader::new(stdout);
            let mut line = Vec::new();
            while r.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                let text = String::from_utf8_lossy(&line).replace('\r', "");
                if verbose {
                    eprint!("[vm] {text}");
                }
                out.push_str(&text);
                line.clear();
            }
            out
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let mut timed_out = false;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if started.elapsed() > timeout {
                timed_out = true;
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut output = reader.join().unwrap_or_default();
        let err = err_reader.join().unwrap_or_default();
        if !err.trim().is_empty() {
            output.push_str("\n[qemu stderr] ");
            output.push_str(&err);
        }
        VmLog::parse(output, timed_out, started.elapsed())
    }

    /// The module files (relative to /lib/modules/<ver>) in load order.
    fn module_order(&self) -> Vec<String> {
        let db = ModuleDb::load(&self.kver);
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for m in &self.modules {
            match db.find(m) {
                Some(rel) => db.visit(&rel, &mut seen, &mut order),
                None if db.is_builtin(m) => {}
                None => panic!(
                    "kernel module `{m}` is neither in /lib/modules/{}/modules.dep nor built in",
                    self.kver
                ),
            }
        }
        order
    }

    /// Builds (or reuses) the archive of everything except /init.
    fn base_archive(&self) -> PathBuf {
        let key = self.cache_key();
        let dir = tmp_root().join("vm-initrd");
        std::fs::create_dir_all(&dir).expect("creating the initramfs cache folder");
        let path = dir.join(format!("base-{key:016x}.cpio"));
        let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if path.exists() {
            if let Ok(f) = std::fs::File::options().append(true).open(&path) {
                let _ = f.set_modified(SystemTime::now());
            }
            return path;
        }
        prune_old(&dir);
        let mut cpio = Cpio::default();
        let mut libs = BTreeSet::new();
        let busybox = if Path::new("/bin/busybox").exists() {
            PathBuf::from("/bin/busybox")
        } else {
            which("busybox").unwrap()
        };
        cpio.host_file("bin/busybox", &busybox, Some(0o755));
        let list = Command::new(&busybox)
            .arg("--list")
            .output()
            .expect("running busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            let applet = applet.trim();
            if applet.is_empty() || ["busybox", "ip", "tc", "nft"].contains(&applet) {
                continue;
            }
            if applet == "modprobe" || applet == "insmod" || applet == "rmmod" || applet == "lsmod"
            {
                cpio.symlink(&format!("sbin/{applet}"), "/bin/busybox");
            }
            cpio.symlink(&format!("bin/{applet}"), "busybox");
        }
        for (host, guest) in [
            ("/usr/sbin/ip", "sbin/ip"),
            ("/usr/sbin/tc", "sbin/tc"),
            ("/usr/sbin/nft", "usr/sbin/nft"),
        ] {
            let host = if Path::new(host).exists() {
                PathBuf::from(host)
            } else {
                match which(Path::new(host).file_name().unwrap().to_str().unwrap()) {
                    Some(p) => p,
                    None if guest.ends_with("nft") => continue,
                    None => panic!("{host} is missing (Debian package iproute2)"),
                }
            };
            cpio.host_file(guest, &host, Some(0o755));
            libs.extend(ldd(&host));
        }
        // netem's delay distribution tables.
        for d in ["/usr/lib/x86_64-linux-gnu/tc", "/usr/lib/tc", "/lib/tc"] {
            if let Ok(rd) = std::fs::read_dir(d) {
                for e in rd.flatten() {
                    let p = e.path();
                    cpio.host_file(
                        &format!("{}/{}", &d[1..], e.file_name().to_string_lossy()),
                        &p,
                        None,
                    );
                }
            }
        }
        for e in &self.entries {
            match e {
                Entry::File { host, guest } => {
                    cpio.host_file(guest.trim_start_matches('/'), host, None);
                }
                Entry::Binary { host, guest } => {
                    let data = stripped(host);
                    cpio.file(guest.trim_start_matches('/'), &data, 0o755);
                    libs.extend(ldd(host));
                }
                Entry::Bytes { guest, data, mode } => {
                    cpio.file(guest.trim_start_matches('/'), data, *mode);
                }
            }
        }
        for lib in libs {
            let guest = lib.to_string_lossy().trim_start_matches('/').to_string();
            cpio.host_file(&guest, &lib, Some(0o755));
        }
        // Modules, with a modules.dep for busybox modprobe (kernel auto-loading).
        let order = self.module_order();
        let db = ModuleDb::load(&self.kver);
        let mut dep = String::new();
        for rel in &order {
            let host = PathBuf::from(format!("/lib/modules/{}/{rel}", self.kver));
            cpio.host_file(
                &format!("lib/modules/{}/{rel}", self.kver),
                &host,
                Some(0o644),
            );
            let deps = db.deps.get(rel).cloned().unwrap_or_default();
            dep.push_str(&format!("{rel}: {}\n", deps.join(" ")));
        }
        cpio.file(
            &format!("lib/modules/{}/modules.dep", self.kver),
            dep.as_bytes(),
            0o644,
        );
        for d in ["proc", "sys", "dev", "run", "tmp", "root", "etc"] {
            cpio.dir(d);
        }
        cpio.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644);
        cpio.file("etc/group", b"root:x:0:\n", 0o644);
        let tmp = dir.join(format!("base-{key:016x}.{}.partial", std::process::id()));
        std::fs::write(&tmp, cpio.finish()).expect("writing the initramfs");
        std::fs::rename(&tmp, &path).expect("moving the initramfs into the cache");
        path
    }

    fn cache_key(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        LAYOUT_VERSION.hash(&mut h);
        self.kver.hash(&mut h);
        self.modules.hash(&mut h);
        let stamp = |p: &Path, h: &mut std::collections::hash_map::DefaultHasher| {
            p.hash(h);
            if let Ok(m) = std::fs::metadata(p) {
                m.len().hash(h);
                m.modified()
                    .ok()
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .hash(h);
            }
        };
        for p in [
            "/bin/busybox",
            "/usr/sbin/ip",
            "/usr/sbin/tc",
            "/usr/sbin/nft",
        ] {
            stamp(Path::new(p), &mut h);
        }
        for e in &self.entries {
            match e {
                Entry::File { host, guest } | Entry::Binary { host, guest } => {
                    guest.hash(&mut h);
                    stamp(host, &mut h);
                }
                Entry::Bytes { guest, data, mode } => {
                    guest.hash(&mut h);
                    data.hash(&mut h);
                    mode.hash(&mut h);
                }
            }
        }
        h.finish()
    }
}

impl VmLog {
    /// Parses a console log (public so the marker parsing itself can be tested).
    pub fn parse(output: String, timed_out: bool, elapsed: Duration) -> VmLog {
        let mut markers = Vec::new();
        for line in output.lines() {
            let Some(idx) = line.find("VMTEST ") else {
                continue;
            };
            let mut parts = line[idx + 7..].splitn(3, ' ');
            let (Some(name), Some(verdict)) = (parts.next(), parts.next()) else {
                continue;
            };
            let detail = parts.next().unwrap_or("").trim().to_string();
            match verdict.trim() {
                "PASS" => markers.push((name.to_string(), true, detail)),
                "FAIL" => markers.push((name.to_string(), false, detail)),
                _ => {}
            }
        }
        let completed = output.contains(END_LINE);
        VmLog {
            output,
            markers,
            completed,
            timed_out,
            elapsed,
        }
    }

    /// The detail of the PASS marker `name`; panics with the console log when
    /// the marker is missing or FAIL.
    pub fn assert_pass(&self, name: &str) -> String {
        let found: Vec<_> = self.markers.iter().filter(|m| m.0 == name).collect();
        if found.is_empty() {
            panic!(
                "VM check `{name}` printed no VMTEST marker{}\n{}",
                self.why_incomplete(),
                self.tail()
            );
        }
        if let Some(f) = found.iter().find(|m| !m.1) {
            panic!("VM check `{name}` FAILED: {}\n{}", f.2, self.tail());
        }
        found[0].2.clone()
    }

    /// Asserts every marker printed passed and the script completed.
    pub fn assert_all_pass(&self) {
        let failed: Vec<_> = self.markers.iter().filter(|m| !m.1).collect();
        if !failed.is_empty() || !self.completed {
            panic!(
                "VM checks failed: {:?}{}\n{}",
                failed,
                self.why_incomplete(),
                self.tail()
            );
        }
    }

    fn why_incomplete(&self) -> String {
        if self.timed_out {
            format!(" (the VM was killed after {:.0?})", self.elapsed)
        } else if !self.completed {
            " (the script did not finish)".into()
        } else {
            String::new()
        }
    }

    /// The last 200 lines of the console, for failure messages.
    pub fn tail(&self) -> String {
        let lines: Vec<_> = self.output.lines().collect();
        let start = lines.len().saturating_sub(200);
        format!(
            "--- VM console (last {} lines) ---\n{}",
            lines.len() - start,
            lines[start..].join("\n")
        )
    }
}

/// Deletes cached archives unused for a day (each rebuild of a test binary
/// makes a new one; recent ones may be in use by another test binary).
fn prune_old(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(86400));
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn tmp_root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn newest_kernel() -> Option<PathBuf> {
    let mut found: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir("/boot")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let ver = name.strip_prefix("vmlinuz-")?.to_string();
            if !Path::new(&format!("/lib/modules/{ver}/modules.dep")).exists() {
                return None;
            }
            let key = ver
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            Some((key, e.path()))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

/// The libraries `ldd` lists for a binary (absolute paths).
fn ldd(bin: &Path) -> Vec<PathBuf> {
    let out = match Command::new("ldd").arg(bin).output() {
        Ok(o) => o,
        Err(_) => return Vec::new(),
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let p = match l.split_once("=>") {
                Some((_, rhs)) => rhs.trim().split(' ').next()?,
                None => l.split(' ').next()?,
            };
            p.starts_with('/').then(|| PathBuf::from(p))
        })
        .collect()
}

/// The binary with debug info removed (smaller initramfs), or as is.
fn stripped(bin: &Path) -> Vec<u8> {
    let tmp = tempfile::NamedTempFile::new_in(tmp_root()).ok();
    if let Some(tmp) = &tmp {
        let ok = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(tmp.path())
            .arg(bin)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            if let Ok(d) = std::fs::read(tmp.path()) {
                return d;
            }
        }
    }
    std::fs::read(bin).unwrap_or_else(|e| panic!("reading {}: {e}", bin.display()))
}

/// The kernel's modules.dep / modules.softdep / modules.alias / modules.builtin.
struct ModuleDb {
    kver: String,
    /// relative path -> relative paths of its dependencies
    deps: BTreeMap<String, Vec<String>>,
    /// module name -> relative path
    by_name: BTreeMap<String, String>,
    /// module name -> names to load first (softdep pre)
    soft: BTreeMap<String, Vec<String>>,
    alias: BTreeMap<String, Vec<String>>,
    builtin: BTreeSet<String>,
}

fn mod_name(rel: &str) -> String {
    let base = rel.rsplit('/').next().unwrap_or(rel);
    let base = base.split(".ko").next().unwrap_or(base);
    base.replace('-', "_")
}

impl ModuleDb {
    fn load(kver: &str) -> ModuleDb {
        let root = format!("/lib/modules/{kver}");
        let read = |f: &str| std::fs::read_to_string(format!("{root}/{f}")).unwrap_or_default();
        let mut deps = BTreeMap::new();
        let mut by_name = BTreeMap::new();
        for line in read("modules.dep").lines() {
            let Some((m, d)) = line.split_once(':') else {
                continue;
            };
            by_name.insert(mod_name(m), m.to_string());
            deps.insert(
                m.to_string(),
                d.split_whitespace().map(str::to_string).collect(),
            );
        }
        let mut soft = BTreeMap::new();
        for line in read("modules.softdep").lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.len() >= 4 && w[0] == "softdep" && w[2] == "pre:" {
                soft.insert(
                    w[1].replace('-', "_"),
                    w[3..].iter().map(|s| s.to_string()).collect(),
                );
            }
        }
        let mut alias: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in read("modules.alias").lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.len() == 3 && w[0] == "alias" {
                alias
                    .entry(w[1].to_string())
                    .or_default()
                    .push(w[2].replace('-', "_"));
            }
        }
        let builtin = read("modules.builtin").lines().map(mod_name).collect();
        ModuleDb {
            kver: kver.to_string(),
            deps,
            by_name,
            soft,
            alias,
            builtin,
        }
    }

    fn find(&self, name: &str) -> Option<String> {
        self.by_name.get(&name.replace('-', "_")).cloned()
    }

    fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&name.replace('-', "_"))
    }

    /// Depth-first: dependencies (hard, then soft `pre:`) before the module.
    fn visit(&self, rel: &str, seen: &mut BTreeSet<String>, order: &mut Vec<String>) {
        if !seen.insert(rel.to_string()) {
            return;
        }
        let name = mod_name(rel);
        if let Some(pre) = self.soft.get(&name) {
            for p in pre {
                let targets = match self.find(p) {
                    Some(r) => vec![r],
                    None => self
                        .alias
                        .get(p)
                        .into_iter()
                        .flatten()
                        .filter_map(|n| self.find(n))
                        .collect(),
                };
                for t in targets {
                    self.visit(&t, seen, order);
                }
            }
        }
        // modules.dep lists the deepest dependencies last.
        if let Some(d) = self.deps.get(rel) {
            for dep in d.iter().rev() {
                self.visit(dep, seen, order);
            }
        }
        order.push(rel.to_string());
    }
}

/// A minimal `newc` cpio writer (the initramfs format).
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let namesize = name.len() + 1;
        let hdr = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            if mode & 0o170000 == 0o040000 { 2 } else { 1 },
            0,
            data.len(),
            0,
            0,
            0,
            0,
            namesize,
            0
        );
        self.out.extend_from_slice(hdr.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn parents(&mut self, path: &str) {
        let mut acc = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for p in &parts[..parts.len().saturating_sub(1)] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(p);
            if self.dirs.insert(acc.clone()) {
                let a = acc.clone();
                self.entry(&a, 0o040755, &[]);
            }
        }
    }

    fn dir(&mut self, path: &str) {
        self.parents(path);
        if self.dirs.insert(path.to_string()) {
            self.entry(path, 0o040755, &[]);
        }
    }

    fn file(&mut self, path: &str, data: &[u8], mode: u32) {
        self.parents(path);
        self.entry(path, 0o100000 | mode, data);
    }

    /// Copies a host file (following symlinks); `mode` defaults to the host's.
    fn host_file(&mut self, path: &str, host: &Path, mode: Option<u32>) {
        use std::os::unix::fs::PermissionsExt;
        let data =
            std::fs::read(host).unwrap_or_else(|e| panic!("reading {}: {e}", host.display()));
        let mode = mode.unwrap_or_else(|| {
            std::fs::metadata(host)
                .map(|m| m.permissions().mode() & 0o7777)
                .unwrap_or(0o644)
        });
        self.file(path, &data, mode);
    }

    fn symlink(&mut self, path: &str, target: &str) {
        self.parents(path);
        self.entry(path, 0o120777, target.as_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        while !self.out.len().is_multiple_of(512) {
            self.out.push(0);
        }
        self.out
    }
}
