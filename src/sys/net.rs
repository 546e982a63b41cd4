//! The only code that runs `tc`, `nft` and `ip`. Commands are argv vectors,
//! never a shell line. Every command can target a network namespace: `tc -n
//! NS`, `ip -n NS`, `ip netns exec NS nft`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// `tc [-n NS] ARGS...`
pub fn tc(netns: Option<&str>, args: &[&str]) -> Vec<String> {
    with_netns_flag("tc", netns, args)
}

/// `ip [-n NS] ARGS...`
pub fn ip(netns: Option<&str>, args: &[&str]) -> Vec<String> {
    with_netns_flag("ip", netns, args)
}

/// `[ip netns exec NS] nft ARGS...`
pub fn nft(netns: Option<&str>, args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = match netns {
        Some(ns) => ["ip", "netns", "exec", ns, "nft"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        None => vec!["nft".into()],
    };
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

fn with_netns_flag(tool: &str, netns: Option<&str>, args: &[&str]) -> Vec<String> {
    let mut v = vec![tool.to_string()];
    if let Some(ns) = netns {
        v.push("-n".into());
        v.push(ns.into());
    }
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

/// What a command printed.
#[derive(Clone, Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `argv`; `Err` only when it cannot be started at all.
pub fn run(argv: &[String]) -> Result<Output, String> {
    let (prog, args) = argv.split_first().ok_or("empty command")?;
    let mut cmd = Command::new(prog);
    cmd.args(args);
    crate::sys::exec::die_with_parent(&mut cmd);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run `{prog}`: {e}"))?;
    Ok(Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs `argv` and returns its stdout, or an error naming the command and
/// quoting its stderr.
pub fn run_ok(argv: &[String]) -> Result<String, String> {
    let out = run(argv)?;
    if out.success {
        Ok(out.stdout)
    } else {
        Err(format!(
            "`{}` failed: {}",
            argv.iter()
                .map(|a| crate::sys::exec::shell_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
            out.stderr.trim()
        ))
    }
}

/// Where `name` is on PATH (or in /sbin, /usr/sbin, which a non-login root
/// shell may lack).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether the named network namespace exists (`ip netns list`).
pub fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists() || Path::new("/var/run/netns").join(name).exists()
}

/// Whether an interface exists (in `netns`).
pub fn link_exists(netns: Option<&str>, dev: &str) -> bool {
    run(&ip(netns, &["link", "show", "dev", dev])).is_ok_and(|o| o.success)
}

/// Whether this process has CAP_NET_ADMIN in its effective set.
pub fn has_net_admin() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 12) != 0)
}

/// The qdiscs of a device, as `tc -j qdisc show dev DEV` prints them.
pub fn qdiscs(netns: Option<&str>, dev: &str) -> Result<Vec<serde_json::Value>, String> {
    let out = run_ok(&tc(netns, &["-j", "qdisc", "show", "dev", dev]))?;
    parse_json_list(&out)
}

/// `tc -s -j qdisc show dev DEV` (with counters).
pub fn qdiscs_with_stats(netns: Option<&str>, dev: &str) -> Result<Vec<serde_json::Value>, String> {
    let out = run_ok(&tc(netns, &["-s", "-j", "qdisc", "show", "dev", dev]))?;
    parse_json_list(&out)
}

/// `tc class show dev DEV` and `tc filter show dev DEV` as text (saved as
/// evidence when a user's qdisc is replaced; htb classes have no JSON form).
pub fn classes_and_filters(netns: Option<&str>, dev: &str) -> String {
    let mut s = String::new();
    for what in ["class", "filter"] {
        if let Ok(o) = run_ok(&tc(netns, &[what, "show", "dev", dev])) {
            s.push_str(&o);
        }
    }
    s
}

fn parse_json_list(out: &str) -> Result<Vec<serde_json::Value>, String> {
    let t = out.trim();
    if t.is_empty() {
        return Ok(Vec::new());
    }
    match serde_json::from_str::<serde_json::Value>(t) {
        Ok(serde_json::Value::Array(v)) => Ok(v),
        Ok(other) => Ok(vec![other]),
        Err(e) => Err(format!("cannot read tc's JSON output ({e}): {t}")),
    }
}

/// The route's output device for `dest` (`ip -n NS route get DEST`).
pub fn route_dev(netns: Option<&str>, dest: &str) -> Option<String> {
    let out = run_ok(&ip(netns, &["route", "get", dest])).ok()?;
    let words: Vec<&str> = out.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[0] == "dev")
        .map(|w| w[1].to_string())
}

/// `/proc/sys/net/core/default_qdisc` (what the kernel attaches to a new or
/// reset single-queue device).
pub fn default_qdisc() -> String {
    std::fs::read_to_string("/proc/sys/net/core/default_qdisc")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "pfifo_fast".into())
}

/// `nft -j list table inet NAME`, or `None` when the table does not exist.
pub fn nft_table(
    netns: Option<&str>,
    family: &str,
    name: &str,
) -> Result<Option<serde_json::Value>, String> {
    let out = run(&nft(netns, &["-j", "list", "table", family, name]))?;
    if !out.success {
        if out.stderr.contains("No such file") {
            return Ok(None);
        }
        return Err(format!(
            "`nft list table {family} {name}` failed: {}",
            out.stderr.trim()
        ));
    }
    serde_json::from_str(out.stdout.trim())
        .map(Some)
        .map_err(|e| format!("cannot read nft's JSON output ({e})"))
}

/// A throwaway network namespace for probing kernel features; deleted on drop.
pub struct ProbeNetns {
    pub name: String,
}

static PROBE_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Names of preflight's throwaway namespaces:
/// `faultline-probe-<pid>-<pid start time>-<n>` (older runs: `<pid>-<n>`).
pub const PROBE_PREFIX: &str = "faultline-probe-";

/// Whether a probe namespace name belongs to a process that is gone
/// (`same` tells whether pid+start time is still that process, `alive`
/// whether a pid exists). Names faultline did not make are never stale.
pub fn probe_netns_is_stale(
    name: &str,
    same: impl Fn(i32, u64) -> bool,
    alive: impl Fn(i32) -> bool,
) -> bool {
    let Some(rest) = name.strip_prefix(PROBE_PREFIX) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('-').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    let Ok(pid) = parts[0].parse::<i32>() else {
        return false;
    };
    match parts.len() {
        3 => parts[1].parse::<u64>().is_ok_and(|st| !same(pid, st)),
        2 => !alive(pid),
        _ => false,
    }
}

/// Probe namespaces left by a runner that died during preflight.
pub fn stale_probe_netns() -> Vec<String> {
    let mut out: Vec<String> = ["/run/netns", "/var/run/netns"]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| probe_netns_is_stale(n, crate::sys::proc::is_same, crate::sys::proc::alive))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Deletes a stale probe namespace (`ip netns del`).
pub fn remove_probe_netns(name: &str) -> Result<(), String> {
    run_ok(&ip(None, &["netns", "del", name])).map(|_| ())
}

impl ProbeNetns {
    pub fn create() -> Result<ProbeNetns, String> {
        let me = std::process::id() as i32;
        let name = format!(
            "{PROBE_PREFIX}{me}-{}-{}",
            crate::sys::proc::start_time(me).unwrap_or(0),
            PROBE_COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        run_ok(&ip(None, &["netns", "add", &name]))?;
        Ok(ProbeNetns { name })
    }

    /// Runs a tc/ip command in the probe namespace.
    pub fn try_tc(&self, args: &[&str]) -> Result<(), String> {
        run_ok(&tc(Some(&self.name), args)).map(|_| ())
    }

    pub fn try_ip(&self, args: &[&str]) -> Result<(), String> {
        run_ok(&ip(Some(&self.name), args)).map(|_| ())
    }
}

impl Drop for ProbeNetns {
    fn drop(&mut self) {
        let _ = run(&ip(None, &["netns", "del", &self.name]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_with_and_without_netns() {
        assert_eq!(tc(None, &["qdisc", "show"]), ["tc", "qdisc", "show"]);
        assert_eq!(
            tc(Some("app"), &["qdisc", "show"]),
            ["tc", "-n", "app", "qdisc", "show"]
        );
        assert_eq!(
            nft(Some("app"), &["list", "ruleset"]),
            ["ip", "netns", "exec", "app", "nft", "list", "ruleset"]
        );
        assert_eq!(ip(None, &["link"]), ["ip", "link"]);
    }

    #[test]
    fn json_lists() {
        assert!(parse_json_list("").unwrap().is_empty());
        assert_eq!(
            parse_json_list("[{\"kind\":\"noqueue\"}]").unwrap().len(),
            1
        );
        assert!(parse_json_list("not json").is_err());
    }

    #[test]
    fn stale_probe_namespaces_are_those_of_dead_runners_only() {
        let same = |pid: i32, st: u64| pid == 10 && st == 500;
        let alive = |pid: i32| pid == 10;
        assert!(!probe_netns_is_stale(
            "faultline-probe-10-500-0",
            same,
            alive
        ));
        assert!(probe_netns_is_stale(
            "faultline-probe-10-499-0",
            same,
            alive
        ));
        assert!(probe_netns_is_stale(
            "faultline-probe-11-500-3",
            same,
            alive
        ));
        assert!(!probe_netns_is_stale("faultline-probe-10-2", same, alive));
        assert!(probe_netns_is_stale("faultline-probe-11-2", same, alive));
        assert!(!probe_netns_is_stale("faultline-probe-x-1", same, alive));
        assert!(!probe_netns_is_stale("app", same, alive));
        assert!(!probe_netns_is_stale("faultline-probe-11", same, alive));
    }
}
