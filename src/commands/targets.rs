//! `faultline targets`: what an experiment can target on this host, with the
//! selector to paste into an experiment file. Reads only; touches nothing.

use crate::cli::{TargetsFormat, TargetsKind};
use crate::exit;
use crate::sys::text::{escape, escape_text};
use comfy_table::{presets, Cell, ContentArrangement, Table};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Processes that share a name: one `name:` selector hits them all.
#[derive(Debug, Serialize)]
pub struct ProcessGroup {
    pub name: String,
    pub pids: Vec<i32>,
    pub users: Vec<String>,
    /// TCP ports these processes listen on.
    pub ports: Vec<u16>,
    /// systemd units they run in.
    pub units: Vec<String>,
    /// The command line of the first one (cut at 200 characters).
    pub command: String,
    /// What to paste under `target:` (YAML flow style).
    pub selector: String,
    /// Processes of the group that faultline never hits, and why (PID 1,
    /// this shell and its ancestors): the selector skips them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub protected: Vec<Protected>,
}

#[derive(Debug, Serialize)]
pub struct Protected {
    pub pid: i32,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Port {
    pub address: String,
    pub port: u16,
    pub pids: Vec<i32>,
    pub names: Vec<String>,
    /// A tcp probe to paste under `probes:`.
    pub probe: String,
}

#[derive(Debug, Serialize)]
pub struct Interface {
    /// The network namespace (`ip netns list`), none for the host's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    pub name: String,
    pub state: String,
    pub addresses: Vec<String>,
    /// The root qdisc now (`noqueue`, `fq_codel`, ...).
    pub qdisc: String,
    pub selector: String,
}

#[derive(Debug, Serialize)]
pub struct CgroupRow {
    pub path: String,
    pub processes: usize,
    pub selector: String,
}

#[derive(Debug, Serialize)]
pub struct ContainerRow {
    pub name: String,
    pub id: String,
    pub pid: i32,
    pub addresses: Vec<String>,
    pub restart_policy: String,
    /// What to paste under `target:` (and, with `compose`, the service's).
    pub selector: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compose_selector: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Inventory {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processes: Option<Vec<ProcessGroup>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<Port>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<Interface>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroups: Option<Vec<CgroupRow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units: Option<Vec<CgroupRow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<ContainerRow>>,
    /// Why containers could not be listed (no engine answering).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers_unavailable: Option<String>,
}

pub fn run(kinds: &[TargetsKind], format: TargetsFormat, filter: Option<&str>) -> i32 {
    let want = |k: TargetsKind| kinds.is_empty() || kinds.contains(&k);
    let procs = Snapshot::take();
    let matches = |s: &str| filter.is_none_or(|f| s.contains(f));
    let (containers, containers_unavailable) = if want(TargetsKind::Containers) {
        match containers() {
            Ok(c) => (
                Some(
                    c.into_iter()
                        .filter(|c| matches(&c.name) || matches(&c.id))
                        .collect(),
                ),
                None,
            ),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    let inv = Inventory {
        containers,
        containers_unavailable,
        processes: want(TargetsKind::Processes).then(|| {
            procs
                .groups()
                .into_iter()
                .filter(|g| matches(&g.name) || matches(&g.command))
                .collect()
        }),
        ports: want(TargetsKind::Ports).then(|| {
            procs
                .ports()
                .into_iter()
                .filter(|p| matches(&p.port.to_string()) || p.names.iter().any(|n| matches(n)))
                .collect()
        }),
        interfaces: want(TargetsKind::Interfaces).then(|| {
            interfaces()
                .into_iter()
                .filter(|i| matches(&i.name) || i.netns.as_deref().is_some_and(matches))
                .collect()
        }),
        cgroups: want(TargetsKind::Cgroups).then(|| {
            procs
                .cgroups(false)
                .into_iter()
                .filter(|c| matches(&c.path))
                .collect()
        }),
        units: want(TargetsKind::Units).then(|| {
            procs
                .cgroups(true)
                .into_iter()
                .filter(|c| matches(&c.path))
                .collect()
        }),
    };
    match format {
        TargetsFormat::Json => match serde_json::to_string_pretty(&inv) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("faultline: {e}");
                return exit::INTERNAL;
            }
        },
        TargetsFormat::Table => print!("{}", render(&inv)),
    }
    exit::HELD
}

/// Every process of the host (no kernel threads), read once.
struct Snapshot {
    procs: Vec<Proc>,
    listening: Vec<(crate::sys::sockets::Listening, Vec<i32>)>,
    protected: BTreeMap<i32, String>,
}

struct Proc {
    info: crate::sys::proc::ProcInfo,
    user: String,
    cgroup: Option<String>,
    command: String,
}

impl Snapshot {
    fn take() -> Snapshot {
        let table = crate::fault::target::ProcTable::snapshot();
        let me = std::process::id() as i32;
        let mut protected = BTreeMap::new();
        protected.insert(1, "PID 1 (init) is never a target".to_string());
        for a in table.ancestors(me) {
            protected
                .entry(a)
                .or_insert_with(|| "the shell you run faultline from, or its ancestors".into());
        }
        let mut names: BTreeMap<u32, String> = BTreeMap::new();
        let procs = table
            .iter()
            .filter(|i| !i.kernel_thread && i.pid != me && i.state != 'Z')
            .map(|i| {
                let uid = crate::sys::proc::uids(i.pid).map(|u| u[0]);
                let user = match uid {
                    Some(u) => names
                        .entry(u)
                        .or_insert_with(|| {
                            nix::unistd::User::from_uid(u.into())
                                .ok()
                                .flatten()
                                .map(|u| u.name)
                                .unwrap_or_else(|| u.to_string())
                        })
                        .clone(),
                    None => "?".into(),
                };
                let cgroup = crate::sys::proc::cgroups(i.pid)
                    .and_then(|v| v.into_iter().find(|(id, _, _)| *id == 0).map(|(_, _, p)| p));
                let mut command = crate::sys::proc::cmdline(i.pid).unwrap_or_default();
                if command.chars().count() > 200 {
                    command = command.chars().take(200).collect::<String>() + "...";
                }
                Proc {
                    info: i.clone(),
                    user,
                    cgroup,
                    command,
                }
            })
            .collect();
        Snapshot {
            procs,
            listening: crate::sys::sockets::all_listening(),
            protected,
        }
    }

    fn ports_of(&self, pid: i32) -> BTreeSet<u16> {
        self.listening
            .iter()
            .filter(|(_, pids)| pids.contains(&pid))
            .map(|(l, _)| l.port)
            .collect()
    }

    fn groups(&self) -> Vec<ProcessGroup> {
        let mut by_name: BTreeMap<&str, Vec<&Proc>> = BTreeMap::new();
        for p in &self.procs {
            by_name.entry(p.info.comm.as_str()).or_default().push(p);
        }
        by_name
            .into_iter()
            .map(|(name, ps)| {
                let pids: Vec<i32> = ps.iter().map(|p| p.info.pid).collect();
                let users: BTreeSet<String> = ps.iter().map(|p| p.user.clone()).collect();
                let ports: BTreeSet<u16> = pids.iter().flat_map(|p| self.ports_of(*p)).collect();
                let units: BTreeSet<String> = ps
                    .iter()
                    .filter_map(|p| p.cgroup.as_deref().and_then(unit_of))
                    .collect();
                let selector = if plain(name) {
                    format!("{{name: {name}}}")
                } else {
                    format!("{{pid: {}}}", pids[0])
                };
                let protected = pids
                    .iter()
                    .filter_map(|p| {
                        self.protected.get(p).map(|r| Protected {
                            pid: *p,
                            reason: r.clone(),
                        })
                    })
                    .collect();
                ProcessGroup {
                    name: name.to_string(),
                    pids,
                    users: users.into_iter().collect(),
                    ports: ports.into_iter().collect(),
                    units: units.into_iter().collect(),
                    command: ps[0].command.clone(),
                    selector,
                    protected,
                }
            })
            .collect()
    }

    fn ports(&self) -> Vec<Port> {
        self.listening
            .iter()
            .map(|(l, pids)| {
                let names: BTreeSet<String> = pids
                    .iter()
                    .filter_map(|p| self.procs.iter().find(|x| x.info.pid == *p))
                    .map(|p| p.info.comm.clone())
                    .collect();
                let host = if l.addr.is_unspecified() {
                    if l.addr.is_ipv4() {
                        "127.0.0.1".to_string()
                    } else {
                        "::1".to_string()
                    }
                } else {
                    l.addr.to_string()
                };
                Port {
                    address: l.addr.to_string(),
                    port: l.port,
                    pids: pids.clone(),
                    names: names.into_iter().collect(),
                    probe: format!("{{tcp: {{host: \"{host}\", port: {}}}}}", l.port),
                }
            })
            .collect()
    }

    /// The cgroups with processes (`units`: only systemd units), by path.
    fn cgroups(&self, units: bool) -> Vec<CgroupRow> {
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for p in &self.procs {
            let Some(cg) = &p.cgroup else { continue };
            let key = if units {
                match unit_of(cg) {
                    Some(u) => u,
                    None => continue,
                }
            } else {
                cg.trim_start_matches('/').to_string()
            };
            if key.is_empty() {
                continue;
            }
            *count.entry(key).or_default() += 1;
        }
        count
            .into_iter()
            .map(|(path, processes)| CgroupRow {
                selector: if units {
                    format!("{{systemd_unit: {}}}", quote(&path))
                } else {
                    format!("{{cgroup: {}}}", quote(&path))
                },
                path,
                processes,
            })
            .collect()
    }
}

/// The systemd service a cgroup path belongs to (`.../nginx.service/...`).
fn unit_of(cgroup: &str) -> Option<String> {
    cgroup
        .split('/')
        .rfind(|c| c.ends_with(".service"))
        .map(str::to_string)
}

/// Safe to paste unquoted into YAML flow style.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/@+".contains(c))
        && !s.starts_with(['-', '@'])
}

fn quote(s: &str) -> String {
    if plain(s) {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

/// The running containers of the Docker (or Podman) engine.
fn containers() -> Result<Vec<ContainerRow>, String> {
    crate::sys::docker::available()?;
    let all = std::collections::BTreeMap::new();
    let list =
        crate::sys::docker::resolve(&crate::fault::container::ContainerSelector::Labels(&all))?;
    Ok(list
        .into_iter()
        .map(|c| {
            let compose = match (
                c.labels.get("com.docker.compose.project"),
                c.labels.get("com.docker.compose.service"),
            ) {
                (Some(p), Some(s)) => Some(format!(
                    "{{compose: {{project: {}, service: {}}}}}",
                    quote(p),
                    quote(s)
                )),
                _ => None,
            };
            ContainerRow {
                selector: format!("{{container: {}}}", quote(&c.name)),
                compose_selector: compose,
                addresses: c
                    .addresses
                    .iter()
                    .map(|(net, a)| format!("{a} ({net})"))
                    .collect(),
                restart_policy: c.restart_policy.clone(),
                pid: c.pid,
                id: c.short_id().to_string(),
                name: c.name,
            }
        })
        .collect())
}

/// The host's interfaces and those of every named network namespace.
fn interfaces() -> Vec<Interface> {
    let mut out = links(None);
    let names =
        crate::sys::net::run_ok(&crate::sys::net::ip(None, &["netns", "list"])).unwrap_or_default();
    for line in names.lines() {
        if let Some(ns) = line.split_whitespace().next() {
            out.extend(links(Some(ns)));
        }
    }
    out
}

fn links(netns: Option<&str>) -> Vec<Interface> {
    use crate::sys::net;
    let Ok(text) = net::run_ok(&net::ip(netns, &["-j", "addr", "show"])) else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Array(list)) = serde_json::from_str::<serde_json::Value>(&text)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|l| {
            let name = l.get("ifname")?.as_str()?.to_string();
            let addresses = l
                .get("addr_info")
                .and_then(|a| a.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| {
                            Some(format!(
                                "{}/{}",
                                x.get("local")?.as_str()?,
                                x.get("prefixlen")?.as_u64()?
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let selector = match netns {
                Some(ns) => format!("interface: {}, netns: {}", quote(&name), quote(ns)),
                None => format!("interface: {}", quote(&name)),
            };
            Some(Interface {
                netns: netns.map(str::to_string),
                state: l
                    .get("operstate")
                    .and_then(|s| s.as_str())
                    .unwrap_or("?")
                    .to_string(),
                qdisc: l
                    .get("qdisc")
                    .and_then(|s| s.as_str())
                    .unwrap_or("?")
                    .to_string(),
                addresses,
                name,
                selector,
            })
        })
        .collect()
}

fn list<T: ToString>(v: &[T], max: usize) -> String {
    let mut s: Vec<String> = v.iter().take(max).map(|x| x.to_string()).collect();
    if v.len() > max {
        s.push(format!("+{}", v.len() - max));
    }
    s.join(" ")
}

fn table(headers: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    // comfy-table fits a terminal by itself; without one, the report's width.
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        t.set_width(crate::report::table::WIDTH);
    }
    t.set_header(headers.iter().map(Cell::new));
    t
}

fn section(out: &mut String, title: &str, empty: bool, t: &Table) {
    if empty {
        out.push_str(&format!("{title}: none\n\n"));
    } else {
        out.push_str(&format!("{title}\n{t}\n\n"));
    }
}

/// Every text read from the host is escaped before it reaches the terminal.
fn render(inv: &Inventory) -> String {
    let mut out = String::new();
    let e = |s: &str| escape(s).into_owned();
    if let Some(ps) = &inv.processes {
        let mut t = table(&[
            "name",
            "processes",
            "user",
            "ports",
            "unit",
            "target selector",
        ]);
        for g in ps {
            let sel = if g.protected.len() == g.pids.len() {
                format!("(never: {})", g.protected[0].reason)
            } else if g.protected.is_empty() {
                g.selector.clone()
            } else {
                let skipped: Vec<i32> = g.protected.iter().map(|p| p.pid).collect();
                format!(
                    "{} (skips {}: {})",
                    g.selector,
                    list(&skipped, 3),
                    g.protected[0].reason
                )
            };
            t.add_row(vec![
                e(&g.name),
                format!("{} ({})", g.pids.len(), list(&g.pids, 3)),
                e(&list(&g.users, 2)),
                list(&g.ports, 4),
                e(&list(&g.units, 1)),
                e(&sel),
            ]);
        }
        section(
            &mut out,
            &format!("Processes ({} names)", ps.len()),
            ps.is_empty(),
            &t,
        );
    }
    if let Some(ports) = &inv.ports {
        let mut t = table(&["address", "port", "process", "probe"]);
        for p in ports {
            t.add_row(vec![
                p.address.clone(),
                p.port.to_string(),
                e(&format!("{} {}", list(&p.names, 2), list(&p.pids, 3))),
                e(&p.probe),
            ]);
        }
        section(
            &mut out,
            &format!("Listening TCP ports ({})", ports.len()),
            ports.is_empty(),
            &t,
        );
    }
    if let Some(ifs) = &inv.interfaces {
        let mut t = table(&[
            "netns",
            "interface",
            "state",
            "qdisc",
            "addresses",
            "fault fields",
        ]);
        for i in ifs {
            t.add_row(vec![
                e(i.netns.as_deref().unwrap_or("(host)")),
                e(&i.name),
                e(&i.state),
                e(&i.qdisc),
                e(&list(&i.addresses, 3)),
                e(&i.selector),
            ]);
        }
        section(
            &mut out,
            &format!(
                "Network interfaces ({}); a fault on the host's own interfaces cuts this host's traffic",
                ifs.len()
            ),
            ifs.is_empty(),
            &t,
        );
    }
    if let Some(why) = &inv.containers_unavailable {
        out.push_str(&format!("Containers: none listed ({})\n\n", e(why)));
    }
    if let Some(cs) = &inv.containers {
        let mut t = table(&[
            "container",
            "id",
            "main pid",
            "addresses",
            "restart",
            "target selector",
        ]);
        for c in cs {
            let sel = match &c.compose_selector {
                Some(cs) => format!("{}\nor {cs}", c.selector),
                None => c.selector.clone(),
            };
            t.add_row(vec![
                e(&c.name),
                e(&c.id),
                c.pid.to_string(),
                e(&list(&c.addresses, 2)),
                e(&c.restart_policy),
                escape_text(&sel).into_owned(),
            ]);
        }
        section(
            &mut out,
            &format!("Containers ({})", cs.len()),
            cs.is_empty(),
            &t,
        );
    }
    for (title, rows) in [("Cgroups", &inv.cgroups), ("systemd units", &inv.units)] {
        if let Some(rows) = rows {
            let mut t = table(&["path", "processes", "target selector"]);
            for c in rows {
                t.add_row(vec![e(&c.path), c.processes.to_string(), e(&c.selector)]);
            }
            section(
                &mut out,
                &format!("{title} ({})", rows.len()),
                rows.is_empty(),
                &t,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_is_the_innermost_service() {
        assert_eq!(
            unit_of("/system.slice/nginx.service").as_deref(),
            Some("nginx.service")
        );
        assert_eq!(
            unit_of("/user.slice/user-0.slice/user@0.service/app.slice/x.service").as_deref(),
            Some("x.service")
        );
        assert_eq!(unit_of("/docker/abc"), None);
    }

    #[test]
    fn odd_names_are_quoted_or_replaced() {
        assert!(plain("redis-server"));
        assert!(!plain("a: b"));
        assert!(!plain("-x"));
        assert_eq!(quote("a b"), "\"a b\"");
    }
}
