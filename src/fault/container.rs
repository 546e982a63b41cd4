//! Containers as targets: the selectors an experiment file uses to name
//! containers (`container`, `labels`, `compose`), and how a fault reaches
//! the containers they match. Resolution (Docker Engine API) is in
//! `sys::docker`; this module holds the model and what faults share.

use crate::fault::{FaultContext, FaultError, FaultImpl, PlannedOp, UndoLog};
use crate::sys::cgroup::{Cgroup, Cgroups, Hierarchy};
use crate::sys::docker;
pub use crate::sys::docker::ContainerInfo;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A Docker Compose service: the containers whose labels say
/// `com.docker.compose.service: SERVICE` (and
/// `com.docker.compose.project: PROJECT` when `project` is given).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComposeService {
    /// The Compose project (by default the directory name of the compose
    /// file, or `-p`/`COMPOSE_PROJECT_NAME`). Default: any project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The service name in the compose file.
    pub service: String,
}

/// The Compose labels Docker Compose (v1 and v2) and podman-compose set.
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";
pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";

/// One container selector, borrowed from a spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerSelector<'a> {
    /// A container name (with or without the leading `/`) or id (a prefix
    /// of at least 12 hex digits, as `docker ps` shows it).
    Container(&'a str),
    /// Every running container that carries all these labels.
    Labels(&'a BTreeMap<String, String>),
    /// Every running container of a Compose service.
    Compose(&'a ComposeService),
}

impl ContainerSelector<'_> {
    /// `container=web`, `labels={app=cache-service}`, `compose=shop/redis`.
    pub fn describe(&self) -> String {
        match self {
            ContainerSelector::Container(n) => format!("container={n}"),
            ContainerSelector::Labels(l) => {
                let kv: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("labels={{{}}}", kv.join(","))
            }
            ContainerSelector::Compose(c) => match &c.project {
                Some(p) => format!("compose={p}/{}", c.service),
                None => format!("compose={}", c.service),
            },
        }
    }

    /// The label filter a `labels` or `compose` selector stands for
    /// (`None` for a container name or id).
    pub fn label_filter(&self) -> Option<BTreeMap<String, String>> {
        match self {
            ContainerSelector::Container(_) => None,
            ContainerSelector::Labels(l) => Some((*l).clone()),
            ContainerSelector::Compose(c) => {
                let mut m = BTreeMap::new();
                m.insert(COMPOSE_SERVICE_LABEL.to_string(), c.service.clone());
                if let Some(p) = &c.project {
                    m.insert(COMPOSE_PROJECT_LABEL.to_string(), p.clone());
                }
                Some(m)
            }
        }
    }
}

/// A spec that can name containers with `container`, `labels` or `compose`.
pub trait ContainerFields {
    fn container_fields(
        &self,
    ) -> (
        &Option<String>,
        &Option<BTreeMap<String, String>>,
        &Option<ComposeService>,
    );

    /// The field names of the container selectors that are set.
    fn container_selectors(&self) -> Vec<&'static str> {
        let (c, l, k) = self.container_fields();
        let mut v = Vec::new();
        if c.is_some() {
            v.push("container");
        }
        if l.is_some() {
            v.push("labels");
        }
        if k.is_some() {
            v.push("compose");
        }
        v
    }

    /// The container selector, when one is set (the first, when validation
    /// has not run).
    fn container_selector(&self) -> Option<ContainerSelector<'_>> {
        let (c, l, k) = self.container_fields();
        if let Some(c) = c {
            return Some(ContainerSelector::Container(c));
        }
        if let Some(l) = l {
            return Some(ContainerSelector::Labels(l));
        }
        k.as_ref().map(ContainerSelector::Compose)
    }
}

macro_rules! container_fields {
    ($($t:ty),* $(,)?) => {$(
        impl ContainerFields for $t {
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
    )*};
}

container_fields!(
    crate::fault::target::ProcessTarget,
    crate::fault::network::NetworkSpec,
    crate::fault::network::BlackholeSpec,
    crate::fault::network::DnsSpec,
    crate::fault::network::PacketLossSpec,
    crate::fault::network::BandwidthSpec,
    crate::fault::stress::CpuStressSpec,
    crate::fault::stress::MemoryStressSpec,
);

/// What is wrong with a container selector's values, as (field, message)
/// pairs relative to the spec (e.g. `.labels`), for validation.
pub fn check_selector<T: ContainerFields + ?Sized>(s: &T) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let (c, l, k) = s.container_fields();
    if let Some(c) = c {
        let name = c.trim_start_matches('/');
        if name.is_empty() {
            out.push((".container".into(), "the container name is empty".into()));
        } else if !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch))
        {
            out.push((
                ".container".into(),
                format!(
                    "`{}` is not a container name or id (letters, digits, `_`, `.`, `-`)",
                    crate::sys::text::escape(c)
                ),
            ));
        }
    }
    if let Some(l) = l {
        if l.is_empty() {
            out.push((
                ".labels".into(),
                "no labels: this would match every container; give at least one, e.g. `{app: cache-service}`".into(),
            ));
        }
        if l.keys().any(|k| k.trim().is_empty()) {
            out.push((".labels".into(), "a label name is empty".into()));
        }
    }
    if let Some(k) = k {
        if k.service.trim().is_empty() {
            out.push((
                ".compose.service".into(),
                "the service name is empty".into(),
            ));
        }
        if k.project.as_deref().is_some_and(|p| p.trim().is_empty()) {
            out.push((
                ".compose.project".into(),
                "the project name is empty; leave `project` out to match any project".into(),
            ));
        }
    }
    out
}

/// The running containers a selector matches now; Docker being
/// unreachable is a precondition failure (exit 69).
pub fn resolve(sel: &ContainerSelector) -> Result<Vec<ContainerInfo>, FaultError> {
    docker::resolve(sel).map_err(|e| FaultError::precondition(format!("{}: {e}", sel.describe())))
}

/// Like [`resolve`], but matching nothing is an error that says so.
pub fn resolve_some(sel: &ContainerSelector) -> Result<Vec<ContainerInfo>, FaultError> {
    let found = resolve(sel)?;
    if found.is_empty() {
        return Err(FaultError::precondition(format!(
            "no running container matches {} (see `docker ps`; a stopped container is not a target)",
            sel.describe()
        )));
    }
    Ok(found)
}

/// A network fault or stressor in every matching container: at most
/// `limits.blast_radius.max_targets` containers (default 10).
pub fn check_blast_radius(
    kind: &str,
    sel: &ContainerSelector,
    n: usize,
    ctx: &FaultContext,
) -> Result<(), FaultError> {
    let max = ctx
        .blast_radius
        .max_targets
        .unwrap_or(crate::fault::target::DEFAULT_MAX_TARGETS);
    if n > max as usize {
        return Err(FaultError::precondition(format!(
            "{kind}: {} matches {n} containers but the blast-radius limit is {max} (limits.blast_radius.max_targets); narrow the selector or raise the limit",
            sel.describe()
        )));
    }
    Ok(())
}

/// The container's cgroup in hierarchy `h`.
pub fn cgroup_in(c: &ContainerInfo, layout: &Cgroups, h: &Hierarchy) -> Result<Cgroup, FaultError> {
    layout.cgroup_of(c.pid, h).map_err(|e| {
        FaultError::precondition(format!(
            "cannot find the cgroup of container {} (pid {}): {e}",
            c.label(),
            c.pid
        ))
    })
}

/// Every cgroup of the container, one per mounted hierarchy (v1: one per
/// controller set; v2: the unified one).
pub fn all_cgroups(c: &ContainerInfo) -> Result<Vec<Cgroup>, FaultError> {
    let layout = Cgroups::detect()
        .map_err(|e| FaultError::precondition(format!("cannot read the cgroup layout: {e}")))?;
    let mut out = Vec::new();
    for h in layout.hierarchies() {
        if let Ok(cg) = layout.cgroup_of(c.pid, h) {
            if cg.exists() {
                out.push(cg);
            }
        }
    }
    if out.is_empty() {
        return Err(FaultError::precondition(format!(
            "container {} (pid {}) has no cgroup this host can see",
            c.label(),
            c.pid
        )));
    }
    Ok(out)
}

/// Every process of the container: the pids in its cgroup (the `pids` or
/// `cpu` hierarchy on v1, the unified one on v2) and its sub-cgroups.
pub fn pids(c: &ContainerInfo) -> Result<Vec<i32>, FaultError> {
    let layout = Cgroups::detect()
        .map_err(|e| FaultError::precondition(format!("cannot read the cgroup layout: {e}")))?;
    let h = layout
        .unified()
        .filter(|_| layout.kind() == crate::sys::cgroup::LayoutKind::V2)
        .or_else(|| layout.hierarchy_for("pids"))
        .or_else(|| layout.hierarchy_for("cpu"))
        .or_else(|| layout.hierarchies().first())
        .ok_or_else(|| FaultError::precondition("no cgroup hierarchy is mounted"))?;
    let cg = cgroup_in(c, &layout, h)?;
    crate::sys::proc::pids_in_cgroup_tree(&cg.dir).map_err(|e| {
        FaultError::precondition(format!(
            "cannot list the processes of container {}: {e}",
            c.label()
        ))
    })
}

/// The host path of `path` (absolute, as the container sees it; may end in
/// a glob) inside container `c`: under the volume or bind mount with the
/// longest matching destination, else under the container's root
/// filesystem (the storage driver's merged directory). Both stay the same
/// when the container restarts, unlike /proc/PID/root. The part of the path
/// that exists must not lead outside that base through a symbolic link (a
/// link to `/etc` in the container would otherwise mean the host's /etc).
pub fn host_path(c: &ContainerInfo, path: &str) -> Result<std::path::PathBuf, FaultError> {
    use std::path::{Path, PathBuf};
    if !path.starts_with('/') {
        return Err(FaultError::precondition(format!(
            "`{}` is not an absolute path in container {}",
            crate::sys::text::escape(path),
            c.label()
        )));
    }
    let under = |dest: &str| {
        let d = dest.trim_end_matches('/');
        path == d || path.starts_with(&format!("{d}/")) || d.is_empty()
    };
    let (base, rest) = match c
        .mounts
        .iter()
        .filter(|(d, _)| under(d))
        .max_by_key(|(d, _)| d.len())
    {
        Some((d, src)) => (
            PathBuf::from(src),
            path[d.trim_end_matches('/').len()..].to_string(),
        ),
        None => match &c.root_dir {
            Some(r) => (PathBuf::from(r), path.to_string()),
            None => {
                return Err(FaultError::precondition(format!(
                    "the engine does not say where container {}'s filesystem is (no MergedDir: storage driver without one?); put the path on a volume or bind mount",
                    c.label()
                )))
            }
        },
    };
    let full = base.join(rest.trim_start_matches('/'));
    // The longest existing ancestor without glob characters must resolve
    // inside the base.
    let mut probe = PathBuf::new();
    for comp in Path::new(&full).components() {
        let s = comp.as_os_str().to_string_lossy();
        if s.contains(['*', '?', '[']) {
            break;
        }
        let next = probe.join(comp);
        if !next.exists() && next.symlink_metadata().is_err() {
            break;
        }
        probe = next;
    }
    let real_base = base.canonicalize().map_err(|e| {
        FaultError::precondition(format!(
            "container {}'s filesystem {} cannot be read: {e}",
            c.label(),
            base.display()
        ))
    })?;
    if let Ok(real) = probe.canonicalize() {
        if !real.starts_with(&real_base) {
            return Err(FaultError::precondition(format!(
                "`{}` in container {} leads outside the container through a symbolic link (to {} on the host); give the path the link points to inside the container",
                crate::sys::text::escape(path),
                c.label(),
                real.display()
            )));
        }
    }
    Ok(full)
}

type MakeAt = Box<dyn Fn(&str) -> Box<dyn FaultImpl> + Send>;

/// A file fault (`disk_fill`, `file_corrupt`) on a path inside a container:
/// the plain fault runs on the host path of that path ([`host_path`]), so
/// its undo records (remove the fill files, restore the backups) name host
/// paths that stay valid if the container restarts.
pub struct InContainerPath {
    kind: &'static str,
    container: String,
    path: String,
    make: MakeAt,
    inner: Option<(ContainerInfo, Box<dyn FaultImpl>)>,
}

impl InContainerPath {
    pub fn new(container: String, path: String, make: MakeAt) -> Self {
        InContainerPath {
            kind: make("/").kind(),
            container,
            path,
            make,
            inner: None,
        }
    }

    fn build(&self) -> Result<(ContainerInfo, Box<dyn FaultImpl>), FaultError> {
        let sel = ContainerSelector::Container(&self.container);
        let c = resolve_some(&sel)?.remove(0);
        let p = host_path(&c, &self.path)?;
        let f = (self.make)(&p.display().to_string());
        Ok((c, f))
    }

    fn wrap(&self, e: FaultError) -> FaultError {
        FaultError {
            code: e.code,
            message: format!(
                "in container {}: {}",
                crate::sys::text::escape(&self.container),
                e.message
            ),
        }
    }
}

impl FaultImpl for InContainerPath {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn target(&self) -> String {
        format!(
            "{} in container {}",
            crate::sys::text::escape(&self.path),
            crate::sys::text::escape(&self.container)
        )
    }
    fn preflight(&mut self, ctx: &FaultContext) -> Result<(), FaultError> {
        let (c, mut f) = match self.build() {
            Err(_) if ctx.setup_pending => return Ok(()),
            r => r?,
        };
        f.preflight(ctx).map_err(|e| self.wrap(e))?;
        self.inner = Some((c, f));
        Ok(())
    }
    fn plan(&self, ctx: &FaultContext) -> Vec<PlannedOp> {
        match self.build() {
            Err(e) => vec![PlannedOp {
                action: format!("cannot run: {e}"),
                command: None,
                undo: None,
            }],
            Ok((c, f)) => {
                let mut ops = vec![PlannedOp {
                    action: c.describe(),
                    command: None,
                    undo: None,
                }];
                ops.extend(f.plan(ctx));
                ops
            }
        }
    }
    fn inject(&mut self, ctx: &FaultContext, undo: &mut dyn UndoLog) -> Result<(), FaultError> {
        if self.inner.is_none() {
            let (c, mut f) = self.build()?;
            f.preflight(ctx).map_err(|e| self.wrap(e))?;
            self.inner = Some((c, f));
        }
        let r = self.inner.as_mut().expect("built").1.inject(ctx, undo);
        r.map_err(|e| self.wrap(e))
    }
    fn verify(&mut self, ctx: &FaultContext) -> Result<String, FaultError> {
        match &mut self.inner {
            Some((_, f)) => f.verify(ctx),
            None => Err(FaultError::failed("not injected")),
        }
    }
    fn tick_every(&self) -> Option<std::time::Duration> {
        self.inner.as_ref().and_then(|(_, f)| f.tick_every())
    }
    fn tick(&mut self, ctx: &FaultContext, undo: &mut dyn UndoLog) -> Result<(), FaultError> {
        match &mut self.inner {
            Some((_, f)) => f.tick(ctx, undo),
            None => Ok(()),
        }
    }
    fn health(&mut self, ctx: &FaultContext) -> Option<crate::fault::FaultHealth> {
        self.inner.as_mut().and_then(|(_, f)| f.health(ctx))
    }
    fn before_rollback(&mut self, ctx: &FaultContext) {
        if let Some((_, f)) = &mut self.inner {
            f.before_rollback(ctx)
        }
    }
    fn verify_rollback(&mut self, ctx: &FaultContext) -> Result<(), FaultError> {
        match &mut self.inner {
            Some((_, f)) => f.verify_rollback(ctx),
            None => Ok(()),
        }
    }
    fn observations(&self) -> serde_json::Value {
        match &self.inner {
            Some((c, f)) => serde_json::json!({
                "container": {"id": c.id, "name": c.name, "pid": c.pid},
                "path_in_container": self.path,
                "fault": f.observations(),
            }),
            None => serde_json::Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_and_filters() {
        let mut l = BTreeMap::new();
        l.insert("app".to_string(), "cache-service".to_string());
        assert_eq!(
            ContainerSelector::Labels(&l).describe(),
            "labels={app=cache-service}"
        );
        let k = ComposeService {
            project: Some("shop".into()),
            service: "redis".into(),
        };
        assert_eq!(
            ContainerSelector::Compose(&k).describe(),
            "compose=shop/redis"
        );
        let f = ContainerSelector::Compose(&k).label_filter().unwrap();
        assert_eq!(f[COMPOSE_SERVICE_LABEL], "redis");
        assert_eq!(f[COMPOSE_PROJECT_LABEL], "shop");
        assert_eq!(ContainerSelector::Container("web").label_filter(), None);
    }
}
