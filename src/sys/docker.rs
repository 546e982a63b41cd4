//! Containers through the Docker Engine API (bollard), over the unix socket
//! of Docker or of Podman's Docker-compatible service.
//!
//! Every call here is blocking: it runs its request on a small runtime of
//! its own in a scoped thread, so it works from the runner (inside tokio's
//! `block_in_place`), from `plan` and from plain threads alike.

use crate::fault::container::ContainerSelector;
use bollard::Docker;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// How long one Engine API call may take.
const TIMEOUT_SECS: u64 = 20;

/// The sockets tried when `DOCKER_HOST` is not set, in order.
pub const SOCKETS: &[&str] = &[
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/podman/podman.sock",
];

/// A running container, resolved now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContainerInfo {
    /// The full container id (64 hex digits).
    pub id: String,
    /// Its name, without the leading `/`.
    pub name: String,
    /// The pid (on the host) of its main process...
    pub pid: i32,
    /// ...and that process's start time (clock ticks since boot), so a
    /// reused pid is never taken for it.
    pub start_time: u64,
    /// The inode of its network namespace (/proc/PID/ns/net).
    pub netns_inode: Option<u64>,
    /// Its cgroup, as /proc/PID/cgroup says: hierarchy (`cpu`, `memory`,
    /// ... on v1; empty on v2) -> path under that hierarchy.
    pub cgroups: BTreeMap<String, String>,
    /// `no`, `always`, `unless-stopped`, `on-failure[:N]`.
    pub restart_policy: String,
    /// How often the engine has restarted it.
    pub restart_count: i64,
    /// When its current main process started (RFC 3339, from the engine).
    pub started_at: String,
    /// Its addresses, by network name.
    pub addresses: BTreeMap<String, String>,
    /// Its labels.
    #[serde(skip)]
    pub labels: BTreeMap<String, String>,
    /// Its root filesystem as the host sees it (the storage driver's merged
    /// directory), when the engine says.
    pub root_dir: Option<String>,
    /// Its volumes and bind mounts: (path in the container, path on the host).
    pub mounts: Vec<(String, String)>,
}

impl ContainerInfo {
    /// `web (3f2a1b9c8d7e)`.
    pub fn label(&self) -> String {
        format!(
            "{} ({})",
            crate::sys::text::escape(&self.name),
            short_id(&self.id)
        )
    }
    /// The id's first 12 digits.
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }
    /// The cgroup path of a v1 hierarchy (e.g. `cpu`, `memory`) or of the
    /// v2 unified hierarchy (`""`).
    pub fn cgroup_of(&self, hierarchy: &str) -> Option<&str> {
        if let Some(p) = self.cgroups.get(hierarchy) {
            return Some(p);
        }
        // `cpu,cpuacct` style joined controllers.
        self.cgroups
            .iter()
            .find(|(k, _)| k.split(',').any(|c| c == hierarchy))
            .map(|(_, v)| v.as_str())
    }
    /// One line for plans: pid, netns and cgroup.
    pub fn describe(&self) -> String {
        let netns = self
            .netns_inode
            .map(|i| format!("net:[{i}]"))
            .unwrap_or_else(|| "?".into());
        let cg = self
            .cgroup_of("")
            .or_else(|| self.cgroup_of("cpu"))
            .or_else(|| self.cgroups.values().next().map(|s| s.as_str()))
            .unwrap_or("?");
        format!(
            "container {}: main pid {} (start time {}), netns {netns}, cgroup {}, restart policy {} (restarted {} times)",
            self.label(),
            self.pid,
            self.start_time,
            crate::sys::text::escape(cg),
            crate::sys::text::escape(&self.restart_policy),
            self.restart_count
        )
    }
}

pub fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Where the engine's socket is: `DOCKER_HOST` (a `unix://` address), else
/// the first of [`SOCKETS`] that exists.
pub fn socket() -> Result<String, String> {
    if let Ok(h) = std::env::var("DOCKER_HOST") {
        if let Some(p) = h.strip_prefix("unix://") {
            return Ok(p.to_string());
        }
        if !h.is_empty() {
            return Err(format!(
                "DOCKER_HOST is `{}`; faultline talks to the local engine over its unix socket only: set DOCKER_HOST=unix:///path/to/docker.sock or unset it",
                crate::sys::text::escape(&h)
            ));
        }
    }
    let mut tried = Vec::new();
    for s in SOCKETS {
        if Path::new(s).exists() {
            return Ok(s.to_string());
        }
        tried.push(*s);
    }
    if let Ok(dir) = std::env::var("XDG_RUNTIME_DIR") {
        let p = format!("{dir}/podman/podman.sock");
        if Path::new(&p).exists() {
            return Ok(p);
        }
    }
    Err(format!(
        "cannot reach Docker: no engine socket at {} (is Docker running? for Podman start `podman.socket`; or set DOCKER_HOST=unix:///path/to/socket)",
        tried.join(", ")
    ))
}

/// Whether an engine answers on its socket (for tests and `plan`).
pub fn available() -> Result<(), String> {
    call(|d| async move { d.ping().await.map(|_| ()) })
}

/// Runs one request against the engine, blocking.
fn call<T, F, Fut>(f: F) -> Result<T, String>
where
    T: Send,
    F: FnOnce(Docker) -> Fut + Send,
    Fut: std::future::Future<Output = Result<T, bollard::errors::Error>>,
{
    let sock = socket()?;
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start a runtime for the Docker client: {e}"))?;
            rt.block_on(async {
                let d =
                    Docker::connect_with_unix(&sock, TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                        .map_err(|e| unreachable_msg(&sock, &e))?;
                // Older engines (Docker 20.10 speaks API 1.41) refuse a newer
                // client version: agree on the highest both speak.
                let d = d
                    .negotiate_version()
                    .await
                    .map_err(|e| unreachable_msg(&sock, &e))?;
                f(d).await.map_err(|e| api_msg(&e))
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the Docker client thread panicked".into()))
    })
}

fn unreachable_msg(sock: &str, e: &bollard::errors::Error) -> String {
    format!(
        "cannot reach Docker at {sock}: {}; is the engine running (`docker info`)?",
        crate::sys::text::escape(&e.to_string())
    )
}

fn api_msg(e: &bollard::errors::Error) -> String {
    crate::sys::text::escape(&e.to_string()).into_owned()
}

/// The running containers a selector matches, resolved now (id order).
/// An empty list is not an error here; callers decide.
pub fn resolve(sel: &ContainerSelector) -> Result<Vec<ContainerInfo>, String> {
    let ids: Vec<String> = match sel {
        ContainerSelector::Container(n) => match inspect(n.trim_start_matches('/'))? {
            Some(c) => return Ok(vec![c]),
            None => Vec::new(),
        },
        _ => {
            let labels = sel.label_filter().unwrap_or_default();
            let filter: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mut filters = HashMap::new();
            filters.insert("label".to_string(), filter);
            filters.insert("status".to_string(), vec!["running".to_string()]);
            let opts = bollard::query_parameters::ListContainersOptions {
                all: false,
                filters: Some(filters),
                ..Default::default()
            };
            let list = call(|d| async move { d.list_containers(Some(opts)).await })?;
            let mut ids: Vec<String> = list.into_iter().filter_map(|c| c.id).collect();
            ids.sort();
            ids
        }
    };
    let mut out = Vec::new();
    for id in ids {
        // A container may stop between the list and the inspect: skip it.
        if let Some(c) = inspect(&id)? {
            out.push(c);
        }
    }
    Ok(out)
}

/// One container by name or id: `None` when there is no such container or
/// it is not running.
pub fn inspect(name_or_id: &str) -> Result<Option<ContainerInfo>, String> {
    let key = name_or_id.to_string();
    let r = call(|d| async move {
        match d.inspect_container(&key, None).await {
            Ok(c) => Ok(Some(c)),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    })?;
    let Some(c) = r else {
        return Ok(None);
    };
    let state = c.state.clone().unwrap_or_default();
    let pid = state.pid.unwrap_or(0) as i32;
    if state.running != Some(true) || pid <= 0 {
        return Ok(None);
    }
    let Some(info) = crate::sys::proc::info(pid) else {
        return Ok(None);
    };
    let policy = c
        .host_config
        .as_ref()
        .and_then(|h| h.restart_policy.as_ref())
        .map(|p| {
            let name = p
                .name
                .map(|n| n.to_string())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "no".into());
            match p.maximum_retry_count {
                Some(n) if n > 0 => format!("{name}:{n}"),
                _ => name,
            }
        })
        .unwrap_or_else(|| "no".into());
    let addresses = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|nets| {
            nets.iter()
                .filter_map(|(k, v)| {
                    v.ip_address
                        .clone()
                        .filter(|a| !a.is_empty())
                        .map(|a| (k.clone(), a))
                })
                .collect()
        })
        .unwrap_or_default();
    let labels = c
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .map(|l| l.into_iter().collect())
        .unwrap_or_default();
    let root_dir = c
        .graph_driver
        .as_ref()
        .and_then(|g| g.data.get("MergedDir").cloned())
        .filter(|d| !d.is_empty());
    let mounts = c
        .mounts
        .as_ref()
        .map(|ms| {
            ms.iter()
                .filter_map(|m| Some((m.destination.clone()?, m.source.clone()?)))
                .filter(|(d, s)| !d.is_empty() && !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(ContainerInfo {
        root_dir,
        mounts,
        id: c.id.unwrap_or_default(),
        name: c
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        pid,
        start_time: info.start_time,
        netns_inode: netns_inode(pid),
        cgroups: proc_cgroups(pid),
        restart_policy: policy,
        restart_count: c.restart_count.unwrap_or(0),
        started_at: state.started_at.unwrap_or_default(),
        addresses,
        labels,
    }))
}

/// A container's address for probes: the first of its networks' addresses
/// (by network name), as the host reaches it.
pub fn address(name_or_id: &str) -> Result<String, String> {
    match inspect(name_or_id)? {
        None => Err(format!(
            "no running container is named `{}` (see `docker ps`)",
            crate::sys::text::escape(name_or_id)
        )),
        Some(c) => c.addresses.values().next().cloned().ok_or_else(|| {
            format!(
                "container {} has no IP address (network mode host or none?); probe it by `url`/`host` instead",
                c.label()
            )
        }),
    }
}

/// The inode of a process's network namespace.
pub fn netns_inode(pid: i32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|m| m.ino())
}

/// /proc/PID/cgroup as hierarchy -> path (`""` for v2's unified line;
/// `name=systemd` kept as written).
pub fn proc_cgroups(pid: i32) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    parse_proc_cgroup(&text)
}

pub fn parse_proc_cgroup(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrl = it.next()?;
            let path = it.next()?;
            Some((ctrl.to_string(), path.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_cgroup() {
        let m = parse_proc_cgroup(
            "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/\n",
        );
        assert_eq!(m["pids"], "/docker/abc");
        assert_eq!(m[""], "/");
        let c = ContainerInfo {
            id: "0123456789abcdef".into(),
            name: "web".into(),
            pid: 5,
            start_time: 1,
            netns_inode: Some(7),
            cgroups: m,
            restart_policy: "always".into(),
            restart_count: 0,
            started_at: String::new(),
            addresses: BTreeMap::new(),
            labels: BTreeMap::new(),
            root_dir: None,
            mounts: Vec::new(),
        };
        assert_eq!(c.cgroup_of("cpu"), Some("/docker/abc"));
        assert_eq!(c.cgroup_of("cpuacct"), Some("/docker/abc"));
        assert_eq!(c.label(), "web (0123456789ab)");
    }
}
