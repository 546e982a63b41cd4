//! Network faults inside containers: the fault runs in each matching
//! container's network namespace, addressed by the container's own
//! interface names (`eth0`).
//!
//! How: the container's namespace gets a name owned by the run
//! (`ip netns attach fl-<run>-<container id> <main pid>`, a bind mount of
//! /proc/PID/ns/net under /run/netns), and the ordinary fault runs with
//! `netns:` set to that name, so the tc/nft code and its undo records are the
//! same as for any named namespace. The name's removal (`ip netns delete`)
//! is recorded BEFORE the name is made, so it is replayed after the fault's
//! own undo records (newest first), by the runner or by the watchdog.
//!
//! Why a name and not `nsenter -t PID`: the name pins the namespace itself
//! (an inode), not a pid. If the container restarts during the fault, its
//! old namespace (with the fault in it) stays reachable through the name and
//! is cleaned exactly; a recycled pid can never send an undo into another
//! namespace (the host's, or another container's).

use super::super::{FaultContext, FaultError, FaultHealth, FaultImpl, PlannedOp, UndoLog};
use crate::fault::container::{self, ComposeService, ContainerFields, ContainerInfo};
use crate::journal::undo::UndoOp;
use crate::sys::net;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

/// The container selector of a network spec, owned.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    pub container: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub compose: Option<ComposeService>,
}

impl ContainerFields for Selector {
    fn container_fields(
        &self,
    ) -> (
        &Option<String>,
        &Option<BTreeMap<String, String>>,
        &Option<ComposeService>,
    ) {
        (&self.container, &self.labels, &self.compose)
    }
}

impl Selector {
    pub fn of<T: ContainerFields>(s: &T) -> Option<Selector> {
        let (c, l, k) = s.container_fields();
        if c.is_none() && l.is_none() && k.is_none() {
            return None;
        }
        Some(Selector {
            container: c.clone(),
            labels: l.clone(),
            compose: k.clone(),
        })
    }
    pub fn describe(&self) -> String {
        self.container_selector()
            .map(|s| s.describe())
            .unwrap_or_default()
    }
}

type Make = Box<dyn Fn(&str) -> Box<dyn FaultImpl> + Send>;

struct Attached {
    info: ContainerInfo,
    ns: String,
    fault: Box<dyn FaultImpl>,
    /// What happened to the container while the fault was in it, if anything.
    event: Option<String>,
}

/// One network fault run in the namespace of every matching container.
pub struct InContainers {
    kind: &'static str,
    what: String,
    sel: Selector,
    make: Make,
    inner: Vec<Attached>,
    notes: Vec<String>,
}

impl InContainers {
    /// `make(netns_name)` builds the fault for one named namespace.
    pub fn new(what: String, sel: Selector, make: Make) -> Self {
        let kind = make("probe").kind();
        InContainers {
            kind,
            what,
            sel,
            make,
            inner: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn resolve(&self, ctx: &FaultContext) -> Result<Vec<ContainerInfo>, FaultError> {
        let sel = self
            .sel
            .container_selector()
            .expect("a container selector is set");
        let found = container::resolve_some(&sel)?;
        container::check_blast_radius(self.kind, &sel, found.len(), ctx)?;
        Ok(found)
    }
}

/// The run-owned name of a container's network namespace.
pub fn ns_name(ctx: &FaultContext, c: &ContainerInfo) -> String {
    let mut run = ctx.run_slug();
    run.truncate(24);
    format!("fl-{run}-{}", c.short_id())
}

fn ns_path(name: &str) -> std::path::PathBuf {
    Path::new("/run/netns").join(name)
}

fn ns_inode_of(name: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(ns_path(name)).ok().map(|m| m.ino())
}

fn attach_argv(ns: &str, pid: i32) -> Vec<String> {
    vec![
        "ip".into(),
        "netns".into(),
        "attach".into(),
        ns.into(),
        pid.to_string(),
    ]
}

fn delete_argv(ns: &str) -> Vec<String> {
    vec!["ip".into(), "netns".into(), "delete".into(), ns.into()]
}

fn delete_undo(ns: &str) -> UndoOp {
    UndoOp::Command {
        argv: delete_argv(ns),
        gone_if: vec!["No such file or directory".into()],
    }
}

/// Names the container's namespace, checking that the name now points at
/// that namespace (the pid was not reused meanwhile).
fn attach(ns: &str, c: &ContainerInfo) -> Result<(), FaultError> {
    if ns_path(ns).exists() {
        if ns_inode_of(ns) == c.netns_inode && c.netns_inode.is_some() {
            return Ok(());
        }
        return Err(FaultError::precondition(format!(
            "the network namespace name {ns} exists already and is not container {}'s; remove it (`ip netns delete {ns}`) if no run uses it",
            c.label()
        )));
    }
    net::run_ok(&attach_argv(ns, c.pid)).map_err(|e| {
        FaultError::failed(format!(
            "cannot name the network namespace of container {}: {e}",
            c.label()
        ))
    })?;
    if !crate::sys::proc::is_same(c.pid, c.start_time) || ns_inode_of(ns) != c.netns_inode {
        let _ = net::run_ok(&delete_argv(ns));
        return Err(FaultError::failed(format!(
            "container {} restarted while its network namespace was being named (pid {} is gone); try again",
            c.label(),
            c.pid
        )));
    }
    Ok(())
}

/// A name made only to read the namespace (preflight, plan, rollback
/// check); removed when dropped.
struct Transient(Option<String>);

impl Transient {
    fn new(ns: &str, c: &ContainerInfo) -> Result<Transient, FaultError> {
        let existed = ns_path(ns).exists();
        attach(ns, c)?;
        Ok(Transient(if existed { None } else { Some(ns.into()) }))
    }
}

impl Drop for Transient {
    fn drop(&mut self) {
        if let Some(ns) = self.0.take() {
            let _ = net::run_ok(&delete_argv(&ns));
        }
    }
}

/// What became of a container since `c` was resolved, `None` when it is
/// still the same process in the same namespace.
fn what_happened(c: &ContainerInfo) -> Option<String> {
    if crate::sys::proc::is_same(c.pid, c.start_time)
        && crate::sys::docker::netns_inode(c.pid) == c.netns_inode
    {
        return None;
    }
    Some(match crate::sys::docker::inspect(&c.id) {
        Ok(Some(now)) => format!(
            "container {} restarted (main pid {} -> {}, restart count {} -> {}): it has a new network namespace without the fault; the fault stayed in the old one until rollback and is not re-applied",
            c.label(),
            c.pid,
            now.pid,
            c.restart_count,
            now.restart_count
        ),
        Ok(None) => {
            let by_name = crate::sys::docker::inspect(&c.name).ok().flatten();
            match by_name {
                Some(n) if n.id != c.id => format!(
                    "container {} was removed and a new container {} took its name; the fault is not applied to the new one",
                    c.label(),
                    n.label()
                ),
                _ => format!(
                    "container {} stopped or was removed (main pid {} is gone)",
                    c.label(),
                    c.pid
                ),
            }
        }
        Err(e) => format!(
            "container {}'s main pid {} is gone and Docker cannot be asked what happened: {e}",
            c.label(),
            c.pid
        ),
    })
}

impl FaultImpl for InContainers {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn target(&self) -> String {
        format!("{} in {}", self.what, self.sel.describe())
    }

    fn preflight(&mut self, ctx: &FaultContext) -> Result<(), FaultError> {
        super::check_privileges()?;
        super::check_tool("ip", "iproute2")?;
        let found = match self.resolve(ctx) {
            Err(e) if ctx.setup_pending => {
                self.notes.push(format!("checked again after setup: {e}"));
                return Ok(());
            }
            r => r?,
        };
        for c in &found {
            let ns = ns_name(ctx, c);
            let _t = Transient::new(&ns, c)?;
            let mut f = (self.make)(&ns);
            f.preflight(ctx).map_err(|e| FaultError {
                code: e.code,
                message: format!("in container {}: {}", c.label(), e.message),
            })?;
        }
        Ok(())
    }

    fn plan(&self, ctx: &FaultContext) -> Vec<PlannedOp> {
        let found = match self.resolve(ctx) {
            Ok(f) => f,
            Err(e) => {
                return vec![PlannedOp {
                    action: format!("cannot run: {e}"),
                    command: None,
                    undo: None,
                }]
            }
        };
        let mut ops = Vec::new();
        for c in &found {
            let ns = ns_name(ctx, c);
            ops.push(PlannedOp {
                action: c.describe(),
                command: None,
                undo: None,
            });
            ops.push(PlannedOp {
                action: format!(
                    "name container {}'s network namespace {ns} (net:[{}])",
                    c.label(),
                    c.netns_inode.unwrap_or(0)
                ),
                command: Some(attach_argv(&ns, c.pid)),
                undo: Some(delete_argv(&ns).join(" ")),
            });
            match Transient::new(&ns, c) {
                Ok(_t) => ops.extend((self.make)(&ns).plan(ctx)),
                Err(e) => ops.push(PlannedOp {
                    action: format!("cannot read the namespace: {e}"),
                    command: None,
                    undo: None,
                }),
            }
        }
        ops
    }

    fn inject(&mut self, ctx: &FaultContext, undo: &mut dyn UndoLog) -> Result<(), FaultError> {
        if ctx.dry_run {
            return Ok(());
        }
        let found = self.resolve(ctx)?;
        for c in found {
            let ns = ns_name(ctx, &c);
            let target = format!("{} netns of container {}", self.kind, c.label());
            undo.record(&target, delete_undo(&ns)).map_err(|e| {
                FaultError::failed(format!(
                    "cannot record the undo of naming {ns} (nothing was changed): {e:#}"
                ))
            })?;
            attach(&ns, &c)?;
            let mut f = (self.make)(&ns);
            let r = f.preflight(ctx).and_then(|_| f.inject(ctx, undo));
            self.inner.push(Attached {
                info: c.clone(),
                ns,
                fault: f,
                event: None,
            });
            r.map_err(|e| FaultError {
                code: e.code,
                message: format!("in container {}: {}", c.label(), e.message),
            })?;
        }
        Ok(())
    }

    fn verify(&mut self, ctx: &FaultContext) -> Result<String, FaultError> {
        let mut out = Vec::new();
        for a in &mut self.inner {
            let ev = a.fault.verify(ctx).map_err(|e| FaultError {
                code: e.code,
                message: format!("in container {}: {}", a.info.label(), e.message),
            })?;
            out.push(format!("container {}: {ev}", a.info.label()));
        }
        Ok(out.join("; "))
    }

    fn tick_every(&self) -> Option<std::time::Duration> {
        self.inner.iter().filter_map(|a| a.fault.tick_every()).min()
    }

    fn tick(&mut self, ctx: &FaultContext, undo: &mut dyn UndoLog) -> Result<(), FaultError> {
        for a in &mut self.inner {
            a.fault.tick(ctx, undo)?;
        }
        Ok(())
    }

    fn health(&mut self, ctx: &FaultContext) -> Option<FaultHealth> {
        let mut missing = Vec::new();
        let mut present = Vec::new();
        let mut measured: Vec<FaultHealth> = Vec::new();
        for a in &mut self.inner {
            if a.event.is_none() {
                a.event = what_happened(&a.info);
                if let Some(e) = &a.event {
                    self.notes.push(e.clone());
                }
            }
            if let Some(e) = &a.event {
                missing.push(e.clone());
                continue;
            }
            match a.fault.health(ctx) {
                Some(h) if !h.present => {
                    missing.push(format!("container {}: {}", a.info.label(), h.detail))
                }
                Some(h) => {
                    measured.push(h.clone());
                    present.push(format!("container {}: {}", a.info.label(), h.detail))
                }
                None => present.push(format!("container {}", a.info.label())),
            }
        }
        // One container: keep what its fault measured (achieved/target).
        if missing.is_empty() && self.inner.len() == 1 && measured.len() == 1 {
            let mut h = measured.remove(0);
            h.detail = present.remove(0);
            return Some(h);
        }
        Some(if missing.is_empty() {
            FaultHealth::present(present.join("; "))
        } else {
            FaultHealth::missing(missing.join("; "))
        })
    }

    fn before_rollback(&mut self, ctx: &FaultContext) {
        for a in &mut self.inner {
            // Looked at again: a container seen stopped mid-restart is
            // running again by now, and the report should say "restarted".
            let now = what_happened(&a.info);
            if now.is_some() && now != a.event {
                self.notes.extend(now.clone());
                a.event = now;
            }
            a.fault.before_rollback(ctx);
        }
    }

    fn verify_rollback(&mut self, ctx: &FaultContext) -> Result<(), FaultError> {
        for a in &mut self.inner {
            if ns_path(&a.ns).exists() {
                return Err(FaultError::failed(format!(
                    "the namespace name {} is still there after rollback",
                    a.ns
                )));
            }
            if a.event.is_some() {
                // Its namespace is gone with the old container, fault and all.
                continue;
            }
            // Name it again for a moment to check the fault is gone from it.
            let _t = Transient::new(&a.ns, &a.info)?;
            a.fault.verify_rollback(ctx).map_err(|e| FaultError {
                code: e.code,
                message: format!("in container {}: {}", a.info.label(), e.message),
            })?;
        }
        Ok(())
    }

    fn observations(&self) -> serde_json::Value {
        let containers: Vec<serde_json::Value> = self
            .inner
            .iter()
            .map(|a| {
                json!({
                    "id": a.info.id,
                    "name": a.info.name,
                    "pid": a.info.pid,
                    "start_time": a.info.start_time,
                    "netns_inode": a.info.netns_inode,
                    "netns_name": a.ns,
                    "restart_policy": a.info.restart_policy,
                    "event": a.event,
                    "fault": a.fault.observations(),
                })
            })
            .collect();
        json!({
            "target": self.target(),
            "containers": containers,
            "notes": self.notes,
        })
    }
}
