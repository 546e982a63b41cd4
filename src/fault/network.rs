//! Network faults: tc/netem impairments (`network`), nftables drops and
//! rejects (`blackhole`, `partition`, `dns`, `packet_loss`) and `bandwidth`.

use crate::units::{Duration, Percent, Rate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which traffic a network fault applies to. Everything else flows normally.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficFilter {
    /// Destination addresses or CIDRs (`10.0.0.2`, `10.0.0.0/24`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination: Vec<String>,
    /// Source addresses or CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<String>,
    /// Destination ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Source ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ports: Vec<u16>,
    /// `tcp`, `udp`, `icmp` or `all` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    All,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Egress,
    Ingress,
    Both,
}

/// tc/netem impairment of an interface.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Interface name, e.g. `eth0` or `veth-app`.
    pub interface: String,
    /// Network namespace (as in `ip netns list`) the interface lives in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// `egress` (default) or `ingress` (through an IFB device the fault creates).
    #[serde(default)]
    pub direction: Direction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Delay>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<Loss>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<Chance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<Chance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorder: Option<Reorder>,
    /// Limit the rate of the impaired traffic (netem rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// Only this traffic is impaired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<TrafficFilter>,
    /// Replace a root qdisc that is not a kernel default (your own shaping),
    /// saving it and restoring it exactly on rollback. Default: refuse.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace_existing_qdisc: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Delay {
    pub time: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<Percent>,
    /// `uniform` (default), `normal`, `pareto` or `paretonormal`; needs `jitter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<String>,
}

/// Random loss (`percent`, `correlation`) or the Gilbert-Elliott model.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Loss {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<Percent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<Percent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gilbert_elliott: Option<GilbertElliott>,
}

/// netem `loss gemodel p r 1-h 1-k`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GilbertElliott {
    /// Chance to move from the good to the bad state.
    pub p: Percent,
    /// Chance to move from the bad to the good state.
    pub r: Percent,
    /// Loss in the bad state (default 100%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_loss: Option<Percent>,
    /// Loss in the good state (default 0%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub good_loss: Option<Percent>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Chance {
    pub percent: Percent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<Percent>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reorder {
    pub percent: Percent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<Percent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<u32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DropAction {
    /// Silently drop: peers see timeouts.
    #[default]
    Drop,
    /// Reject: peers see connection refused / ICMP unreachable at once.
    Reject,
}

/// nftables drop or reject, in a table owned by the run.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlackholeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    #[serde(default)]
    pub action: DropAction,
    /// `egress` (default for blackhole), `ingress` or `both` (default for partition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Peers (addresses or CIDRs) on the other side.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// Ports (remote for egress, local for ingress).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

/// Make DNS resolution fail.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    #[serde(default)]
    pub action: DropAction,
    /// Resolver addresses; default all (any destination on port 53).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolvers: Vec<String>,
}

/// Random loss through nftables `numgen random`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PacketLossSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    pub percent: Percent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<TrafficFilter>,
}

/// A tbf rate limit on an interface.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BandwidthSpec {
    pub interface: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    pub rate: Rate,
    /// Bucket size (default 32KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<crate::units::Size>,
    /// Longest a packet may wait in the queue (default 50ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Duration>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace_existing_qdisc: bool,
}

// ---------------------------------------------------------------------------
// Implementation.
//
// Ownership rules (so a fault never clobbers what it does not own):
// - tc: the root qdisc faultline adds has handle `fa17:` (and the netem leaf
//   under an htb root has `fa18:`); undo deletes the root *by that handle*
//   (`tc qdisc del dev X root handle fa17:`), which the kernel refuses
//   ("Invalid handle") when the root is someone else's. A root qdisc that the
//   kernel attached by itself (handle `0:`: noqueue, pfifo_fast, fq_codel, mq,
//   fq) is replaced, and comes back when ours is deleted; if it differs from
//   what the kernel would re-create (net.core.default_qdisc changed since),
//   an explicit undo re-creates its kind. Any other root qdisc is the user's:
//   preflight refuses (exit 69) unless `replace_existing_qdisc: true`, in
//   which case a single root qdisc of a known kind (tbf, pfifo, bfifo,
//   fq_codel, fq, sfq, htb without classes, pfifo_fast) is saved from `tc -j`
//   and its undo re-creates it with the same handle and options. Trees (a
//   root with classes or child qdiscs) cannot be restored exactly and are
//   refused.
// - nft: every rule lives in a table owned by the fault,
//   `inet faultline_<run id>_<kind>_<hash>`; deleting the table is the undo.
// - The operator's SSH session (SSH_CONNECTION) is never impaired: nft rules
//   accept it first; a netem fault on the interface that carries it uses an
//   htb root whose filters send the session to the untouched default class.
// ---------------------------------------------------------------------------

use super::{FaultContext, FaultError, FaultImpl, PlannedOp, UndoLog};
use crate::journal::undo::UndoOp;
use crate::sys::net;
use std::net::IpAddr;

/// Handle of the root qdisc faultline owns.
pub const OWNED_ROOT: &str = "fa17:";
/// Handle of the netem qdisc under faultline's htb root (filtered layout).
pub const OWNED_LEAF: &str = "fa18:";
const DEFAULT_CLASS: &str = "fa17:1";
const IMPAIRED_CLASS: &str = "fa17:2";
/// Root qdisc kinds the kernel attaches by itself (with handle `0:`).
const KERNEL_DEFAULT_KINDS: [&str; 5] = ["noqueue", "pfifo_fast", "fq_codel", "mq", "fq"];
/// Kinds whose options faultline can save and re-create exactly.
const RESTORABLE_KINDS: [&str; 8] = [
    "tbf",
    "pfifo",
    "bfifo",
    "fq_codel",
    "fq",
    "sfq",
    "htb",
    "pfifo_fast",
];
/// stderr of an undo whose effect is already gone.
const TC_GONE: [&str; 4] = [
    "Cannot find",
    "No such file",
    "Invalid handle",
    "handle of zero",
];

fn s(v: &str) -> String {
    v.to_string()
}

/// FNV-1a, stable across builds (names derived from it must not change).
fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for b in p.bytes().chain([0u8]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

/// The run id made safe for nft table names: lowercase letters, digits, `_`.
pub fn sanitize_run_id(run_id: &str) -> String {
    let mut out: String = run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    out.truncate(40);
    if out.is_empty() {
        out.push_str("run");
    }
    out
}

/// The operator's own SSH session, from `SSH_CONNECTION`
/// (`client_ip client_port server_ip server_port`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshPeer {
    pub client: IpAddr,
    pub client_port: u16,
    pub server_port: u16,
}

impl SshPeer {
    pub fn from_env() -> Option<SshPeer> {
        Self::parse(&std::env::var("SSH_CONNECTION").ok()?)
    }
    pub fn parse(v: &str) -> Option<SshPeer> {
        let w: Vec<&str> = v.split_whitespace().collect();
        if w.len() != 4 {
            return None;
        }
        Some(SshPeer {
            client: w[0].parse().ok()?,
            client_port: w[1].parse().ok()?,
            server_port: w[3].parse().ok()?,
        })
    }
    fn describe(&self) -> String {
        format!(
            "{}:{} (SSH_CONNECTION, server port {})",
            self.client, self.client_port, self.server_port
        )
    }
}

/// An address or CIDR, split into family, address and prefix length.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cidr {
    v6: bool,
    text: String,
}

fn parse_cidr(v: &str) -> Result<Cidr, FaultError> {
    let (ip, len) = crate::experiment::validate::parse_cidr(v).map_err(FaultError::precondition)?;
    // Clear host bits (`10.0.0.5/24` -> `10.0.0.0/24`): nft refuses them.
    let ip = match ip {
        IpAddr::V4(a) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len as u32)
            };
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len as u32)
            };
            IpAddr::V6((u128::from(a) & mask).into())
        }
    };
    Ok(Cidr {
        v6: ip.is_ipv6(),
        text: format!("{ip}/{len}"),
    })
}

/// tc's time syntax (`100ms`, `1500us`).
fn tc_time(d: Duration) -> String {
    let us = d.std().as_micros();
    if us % 1000 == 0 {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

fn pct(p: Percent) -> String {
    format!("{}%", p.0)
}

/// One host operation: what `plan` shows and `inject` runs.
#[derive(Clone, Debug)]
struct Op {
    action: String,
    argv: Vec<String>,
    /// Recorded in the undo log before `argv` runs.
    undo: Vec<UndoOp>,
    /// How it is undone, in words, when it has no undo of its own.
    undo_note: Option<String>,
}

impl Op {
    fn new(action: impl Into<String>, argv: Vec<String>) -> Op {
        Op {
            action: action.into(),
            argv,
            undo: Vec::new(),
            undo_note: None,
        }
    }
    fn undo(mut self, op: UndoOp) -> Op {
        self.undo.push(op);
        self
    }
    fn note(mut self, n: impl Into<String>) -> Op {
        self.undo_note = Some(n.into());
        self
    }
    fn planned(&self) -> PlannedOp {
        let undo = if self.undo.is_empty() {
            self.undo_note.clone()
        } else {
            Some(
                self.undo
                    .iter()
                    .rev()
                    .map(|u| u.manual_command())
                    .collect::<Vec<_>>()
                    .join(" ; then "),
            )
        };
        PlannedOp {
            action: self.action.clone(),
            command: Some(self.argv.clone()),
            undo,
        }
    }
}

/// An informational line in the plan (no command).
fn note_op(text: impl Into<String>) -> PlannedOp {
    PlannedOp {
        action: text.into(),
        command: None,
        undo: None,
    }
}

fn cmd_undo(argv: Vec<String>, gone_if: &[&str]) -> UndoOp {
    UndoOp::Command {
        argv,
        gone_if: gone_if.iter().map(|g| g.to_string()).collect(),
    }
}

/// Runs the ops: each undo is recorded first, then the command runs.
fn execute(ops: &[Op], target: &str, undo: &mut dyn UndoLog) -> Result<(), FaultError> {
    for op in ops {
        for u in &op.undo {
            undo.record(target, u.clone()).map_err(|e| {
                FaultError::failed(format!(
                    "cannot record the undo of `{}` (nothing was changed by it): {e:#}",
                    op.action
                ))
            })?;
        }
        net::run_ok(&op.argv).map_err(|e| FaultError::failed(format!("{}: {e}", op.action)))?;
    }
    Ok(())
}

fn check_tool(tool: &str, package: &str) -> Result<(), FaultError> {
    if net::find_tool(tool).is_none() {
        return Err(FaultError::precondition(format!(
            "`{tool}` was not found on PATH; install the Debian package {package}"
        )));
    }
    Ok(())
}

fn check_privileges() -> Result<(), FaultError> {
    if !net::has_net_admin() {
        return Err(FaultError::privileges(
            "network faults need CAP_NET_ADMIN: run faultline as root (e.g. with sudo)",
        ));
    }
    Ok(())
}

fn check_netns(netns: Option<&str>) -> Result<(), FaultError> {
    if let Some(ns) = netns {
        if !net::netns_exists(ns) {
            return Err(FaultError::precondition(format!(
                "network namespace `{ns}` does not exist (see `ip netns list`); fix `netns`"
            )));
        }
    }
    Ok(())
}

/// What every tc fault needs: tc and ip, CAP_NET_ADMIN, the namespace and
/// the interface.
fn check_tc_interface(netns: Option<&str>, dev: &str) -> Result<(), FaultError> {
    check_tool("tc", "iproute2")?;
    check_tool("ip", "iproute2")?;
    check_privileges()?;
    check_netns(netns)?;
    check_link(netns, dev)
}

fn check_link(netns: Option<&str>, dev: &str) -> Result<(), FaultError> {
    if !net::link_exists(netns, dev) {
        let wher = netns
            .map(|n| format!(" in network namespace `{n}`"))
            .unwrap_or_default();
        let list = net::run(&net::ip(netns, &["-o", "link", "show"]))
            .map(|o| {
                o.stdout
                    .lines()
                    .filter_map(|l| l.split(':').nth(1))
                    .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        return Err(FaultError::precondition(format!(
            "interface `{dev}` does not exist{wher}; fix `interface` (interfaces there: {list})"
        )));
    }
    Ok(())
}

/// Message for a kernel without sch_netem.
pub fn netem_missing_message(detail: &str) -> String {
    format!(
        "this kernel has no netem qdisc ({detail}): netem needs CONFIG_NET_SCH_NETEM. Load it with \
         `modprobe sch_netem`, or install the running kernel's extra modules (on Ubuntu the package \
         linux-modules-extra-$(uname -r); elsewhere your distribution kernel's modules package). \
         Packet loss works without netem: use the `packet_loss` fault (nftables)."
    )
}

/// A kernel feature the tc faults need, probed in a throwaway namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Feature {
    Netem,
    Tbf,
    HtbU32,
    IfbIngressMirred,
}

/// Tries each feature in a throwaway network namespace (the only reliable
/// test: modules may be built in, loadable or missing).
fn probe_features(features: &[Feature]) -> Result<(), FaultError> {
    if features.is_empty() {
        return Ok(());
    }
    let p = net::ProbeNetns::create().map_err(|e| {
        FaultError::precondition(format!(
            "cannot create a throwaway network namespace to probe tc features: {e}"
        ))
    })?;
    for f in features {
        let res = match f {
            Feature::Netem => p
                .try_tc(&["qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"])
                .and_then(|_| p.try_tc(&["qdisc", "del", "dev", "lo", "root"])),
            Feature::Tbf => p
                .try_tc(&[
                    "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "1mbit", "burst", "32kb",
                    "latency", "50ms",
                ])
                .and_then(|_| p.try_tc(&["qdisc", "del", "dev", "lo", "root"])),
            Feature::HtbU32 => p
                .try_tc(&["qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb"])
                .and_then(|_| {
                    p.try_tc(&[
                        "class", "add", "dev", "lo", "parent", "1:", "classid", "1:1", "htb",
                        "rate", "1gbit",
                    ])
                })
                .and_then(|_| {
                    p.try_tc(&[
                        "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio",
                        "1", "u32", "match", "ip", "dport", "80", "0xffff", "flowid", "1:1",
                    ])
                })
                .and_then(|_| p.try_tc(&["qdisc", "del", "dev", "lo", "root"])),
            Feature::IfbIngressMirred => p
                .try_ip(&["link", "add", "flprobe0", "type", "ifb"])
                .and_then(|_| {
                    p.try_tc(&["qdisc", "add", "dev", "lo", "handle", "ffff:", "ingress"])
                })
                .and_then(|_| {
                    p.try_tc(&[
                        "filter", "add", "dev", "lo", "parent", "ffff:", "protocol", "all", "u32",
                        "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev",
                        "flprobe0",
                    ])
                }),
        };
        if let Err(e) = res {
            let msg = match f {
                Feature::Netem => netem_missing_message(e.trim()),
                Feature::Tbf => format!(
                    "this kernel cannot add a tbf qdisc ({}): bandwidth limits need CONFIG_NET_SCH_TBF (module sch_tbf)",
                    e.trim()
                ),
                Feature::HtbU32 => format!(
                    "this kernel cannot build an htb qdisc with u32 filters ({}): filtered impairments need CONFIG_NET_SCH_HTB and CONFIG_NET_CLS_U32 (modules sch_htb, cls_u32)",
                    e.trim()
                ),
                Feature::IfbIngressMirred => format!(
                    "this kernel cannot redirect ingress traffic to an IFB device ({}): `direction: ingress` needs CONFIG_IFB, CONFIG_NET_SCH_INGRESS and CONFIG_NET_ACT_MIRRED (modules ifb, sch_ingress, act_mirred)",
                    e.trim()
                ),
            };
            return Err(FaultError::precondition(msg));
        }
    }
    Ok(())
}

/// The qdiscs of a device without counters, for before/after comparison.
fn normalize_qdiscs(list: &[serde_json::Value], keep_handles: bool) -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = list
        .iter()
        .map(|q| {
            let mut o = serde_json::Map::new();
            for key in ["kind", "parent", "root", "options", "dev"] {
                if let Some(v) = q.get(key) {
                    o.insert(key.to_string(), v.clone());
                }
            }
            if keep_handles {
                if let Some(v) = q.get("handle") {
                    o.insert("handle".into(), v.clone());
                }
            }
            serde_json::Value::Object(o)
        })
        .collect();
    out.sort_by_key(|v| v.to_string());
    out
}

fn qstr<'a>(q: &'a serde_json::Value, key: &str) -> &'a str {
    q.get(key).and_then(|v| v.as_str()).unwrap_or("")
}

fn is_root(q: &serde_json::Value) -> bool {
    q.get("root").and_then(|v| v.as_bool()).unwrap_or(false)
}

fn is_ingress(q: &serde_json::Value) -> bool {
    matches!(qstr(q, "kind"), "ingress" | "clsact")
}

/// What sits at the root of a device before the fault, and how it comes back.
#[derive(Clone, Debug)]
enum RootState {
    /// A qdisc the kernel attached; deleting ours brings the default back.
    /// `restore` re-creates qdiscs the kernel would not re-create by itself.
    Default {
        kind: String,
        restore: Vec<Vec<String>>,
    },
    /// The user's own root qdisc, replaced; `restore` re-creates it exactly.
    User {
        kind: String,
        handle: String,
        restore: Vec<String>,
        saved: String,
    },
}

/// Decides what to do with the current root qdisc of `dev`.
fn classify_root(
    netns: Option<&str>,
    dev: &str,
    replace_existing: bool,
) -> Result<RootState, FaultError> {
    let qdiscs = net::qdiscs(netns, dev).map_err(FaultError::precondition)?;
    let wher = netns.map(|n| format!(" (netns {n})")).unwrap_or_default();
    let root = qdiscs.iter().find(|q| is_root(q));
    let Some(root) = root else {
        return Ok(RootState::Default {
            kind: "none".into(),
            restore: Vec::new(),
        });
    };
    let kind = qstr(root, "kind").to_string();
    let handle = qstr(root, "handle").to_string();
    if handle == OWNED_ROOT {
        return Err(FaultError::precondition(format!(
            "{dev}{wher} already has faultline's qdisc (handle {OWNED_ROOT}): an earlier run did not roll back; run `faultline recover`, or remove it with `{}`",
            net::tc(netns, &["qdisc", "del", "dev", dev, "root", "handle", OWNED_ROOT]).join(" ")
        )));
    }
    let children: Vec<&serde_json::Value> = qdiscs
        .iter()
        .filter(|q| !is_root(q) && !is_ingress(q))
        .collect();
    let all_default = handle == "0:"
        && KERNEL_DEFAULT_KINDS.contains(&kind.as_str())
        && children.iter().all(|c| qstr(c, "handle") == "0:");
    if all_default {
        // What the kernel re-creates: noqueue stays noqueue; otherwise the
        // sysctl default, under mq for multi-queue devices.
        let sysctl = net::default_qdisc();
        let mut restore = Vec::new();
        let mut consider = |q: &serde_json::Value, parent_args: Vec<String>| {
            let k = qstr(q, "kind");
            if k != "noqueue" && k != "mq" && k != sysctl {
                let mut a: Vec<&str> = vec!["qdisc", "replace", "dev", dev];
                let pa: Vec<&str> = parent_args.iter().map(String::as_str).collect();
                a.extend(pa);
                a.push(k);
                restore.push(net::tc(netns, &a));
            }
        };
        consider(root, vec![s("root")]);
        for c in &children {
            consider(c, vec![s("parent"), qstr(c, "parent").to_string()]);
        }
        return Ok(RootState::Default { kind, restore });
    }
    let describe = format!("{kind} {handle} (root)");
    if !replace_existing {
        return Err(FaultError::precondition(format!(
            "{dev}{wher} has its own root qdisc {describe}, not a kernel default; faultline does not replace it. \
             Set `replace_existing_qdisc: true` to replace it for the fault and restore it afterwards, or remove it yourself"
        )));
    }
    // A tbf's own single class (`class tbf 8001:1`) is part of the qdisc.
    let classes = net::run_ok(&net::tc(netns, &["class", "show", "dev", dev])).unwrap_or_default();
    let foreign_classes = classes
        .lines()
        .any(|l| !l.trim().is_empty() && !l.starts_with("class tbf "));
    let filters = net::run_ok(&net::tc(netns, &["filter", "show", "dev", dev])).unwrap_or_default();
    if !children.is_empty() || foreign_classes || !filters.trim().is_empty() {
        return Err(FaultError::precondition(format!(
            "{dev}{wher} has a qdisc tree ({describe} with classes or child qdiscs); faultline can restore only a single root qdisc exactly. \
             Save it (`tc qdisc/class/filter show dev {dev}`), remove it, and re-create it after the experiment"
        )));
    }
    if restore_argv(netns, dev, root, 0).is_none() {
        return Err(FaultError::precondition(format!(
            "{dev}{wher} has a root qdisc of kind `{kind}`, which faultline cannot re-create exactly (it can: {}); remove it yourself before the experiment",
            RESTORABLE_KINDS.join(", ")
        )));
    }
    let restore = exact_restore(netns, dev, root)?;
    Ok(RootState::User {
        kind,
        handle,
        restore,
        saved: serde_json::to_string(root).unwrap_or_default(),
        // Filters on a root without classes have nowhere to send traffic, so
        // there is nothing else to save.
    })
}

/// `tc qdisc replace dev DEV root handle H: KIND OPTIONS` re-creating a saved
/// root qdisc from its `tc -j` form, or `None` for kinds not understood.
fn restore_argv(
    netns: Option<&str>,
    dev: &str,
    q: &serde_json::Value,
    burst_adjust: u64,
) -> Option<Vec<String>> {
    let kind = qstr(q, "kind");
    let handle = qstr(q, "handle");
    let o = q.get("options").cloned().unwrap_or(serde_json::json!({}));
    let num = |k: &str| o.get(k).and_then(|v| v.as_u64());
    let mut args: Vec<String> = Vec::new();
    let push_num = |args: &mut Vec<String>, key: &str, json_key: &str, suffix: &str| {
        if let Some(v) = num(json_key) {
            args.push(key.to_string());
            args.push(format!("{v}{suffix}"));
        }
    };
    match kind {
        "tbf" => {
            push_num(&mut args, "rate", "rate", "bps");
            // tc prints the bucket rounded down from the kernel's time-based
            // value; the caller tries +0, +1, +2 bytes to re-create it exactly.
            if let Some(b) = num("burst") {
                args.push(s("burst"));
                args.push(format!("{}b", b + burst_adjust));
            }
            push_num(&mut args, "peakrate", "peakrate", "bps");
            push_num(&mut args, "mtu", "mtu", "b");
            if num("lat").is_some() {
                push_num(&mut args, "latency", "lat", "us");
            } else {
                push_num(&mut args, "limit", "limit", "b");
            }
        }
        "pfifo" | "bfifo" => push_num(&mut args, "limit", "limit", ""),
        "pfifo_fast" => {}
        "fq_codel" => {
            push_num(&mut args, "limit", "limit", "");
            push_num(&mut args, "flows", "flows", "");
            push_num(&mut args, "quantum", "quantum", "");
            push_num(&mut args, "target", "target", "us");
            push_num(&mut args, "interval", "interval", "us");
            push_num(&mut args, "memory_limit", "memory_limit", "");
            push_num(&mut args, "drop_batch", "drop_batch", "");
            if let Some(ecn) = o.get("ecn").and_then(|v| v.as_bool()) {
                args.push(if ecn { s("ecn") } else { s("noecn") });
            }
        }
        "fq" => {
            push_num(&mut args, "limit", "limit", "");
            push_num(&mut args, "flow_limit", "flow_limit", "");
            push_num(&mut args, "buckets", "buckets", "");
            push_num(&mut args, "quantum", "quantum", "");
            push_num(&mut args, "initial_quantum", "initial_quantum", "");
        }
        "sfq" => {
            push_num(&mut args, "limit", "limit", "");
            push_num(&mut args, "quantum", "quantum", "");
            push_num(&mut args, "divisor", "divisor", "");
            push_num(&mut args, "perturb", "perturb", "");
        }
        "htb" => {
            push_num(&mut args, "r2q", "r2q", "");
            if let Some(d) = o.get("default").and_then(|v| v.as_str()) {
                let d = d.trim_start_matches("0x");
                args.push(s("default"));
                args.push(d.to_string());
            }
            push_num(&mut args, "direct_qlen", "direct_qlen", "");
        }
        _ => return None,
    }
    let mut a: Vec<String> = [
        "qdisc", "replace", "dev", dev, "root", "handle", handle, kind,
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    a.extend(args);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    Some(net::tc(netns, &refs))
}

/// Finds the restore command that re-creates `root` with exactly the options
/// `tc` shows now, by trying it on a veth in a throwaway namespace.
fn exact_restore(
    netns: Option<&str>,
    dev: &str,
    root: &serde_json::Value,
) -> Result<Vec<String>, FaultError> {
    let want = root.get("options").cloned();
    let first = restore_argv(netns, dev, root, 0).expect("kind checked by the caller");
    let Ok(p) = net::ProbeNetns::create() else {
        return Ok(first);
    };
    if p.try_ip(&[
        "link", "add", "flprobe0", "type", "veth", "peer", "name", "flprobe1",
    ])
    .is_err()
        && p.try_ip(&["link", "add", "flprobe0", "type", "ifb"])
            .is_err()
    {
        return Ok(first);
    }
    let tries = if qstr(root, "kind") == "tbf" { 3 } else { 1 };
    for adj in 0..tries {
        let Some(argv) = restore_argv(Some(&p.name), "flprobe0", root, adj) else {
            break;
        };
        if net::run_ok(&argv).is_err() {
            continue;
        }
        let got = net::qdiscs(Some(&p.name), "flprobe0")
            .ok()
            .and_then(|qs| qs.into_iter().find(is_root))
            .and_then(|q| q.get("options").cloned());
        if got == want {
            return Ok(restore_argv(netns, dev, root, adj).expect("same kind"));
        }
    }
    Err(FaultError::precondition(format!(
        "faultline cannot re-create the root qdisc of {dev} exactly (`{}` gives different options in a test namespace); remove it yourself before the experiment and re-create it afterwards",
        first.join(" ")
    )))
}

/// The undo records and the command that put `qdisc_args` at the root of
/// `dev`, following the ownership rules.
fn root_ops(
    netns: Option<&str>,
    dev: &str,
    state: &RootState,
    qdisc_words: &[String],
    what: &str,
) -> Op {
    let verb = match state {
        RootState::User { .. } => "replace",
        RootState::Default { .. } => "add",
    };
    let mut a: Vec<String> = ["qdisc", verb, "dev", dev, "root", "handle", OWNED_ROOT]
        .iter()
        .map(|x| x.to_string())
        .collect();
    a.extend(qdisc_words.iter().cloned());
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    let argv = net::tc(netns, &refs);
    let del_ours = cmd_undo(
        net::tc(
            netns,
            &["qdisc", "del", "dev", dev, "root", "handle", OWNED_ROOT],
        ),
        &TC_GONE,
    );
    match state {
        RootState::Default { kind, restore } => {
            let mut op = Op::new(
                format!("add {what} as the root qdisc of {dev} (replacing the kernel default {kind})"),
                argv,
            );
            // Replayed in reverse: ours is deleted first, then the default re-created.
            for r in restore {
                op = op.undo(cmd_undo(r.clone(), &["Cannot find device"]));
            }
            op.undo(del_ours)
        }
        RootState::User {
            kind,
            handle,
            restore,
            ..
        } => Op::new(
            format!(
                "replace your root qdisc {kind} {handle} on {dev} with {what} (replace_existing_qdisc: true); it is restored exactly"
            ),
            argv,
        )
        .undo(cmd_undo(restore.clone(), &["Cannot find device"])),
    }
}

/// netem's arguments for a spec (`delay 100ms 10ms 25% distribution normal loss random 1%`).
pub fn netem_args(spec: &NetworkSpec) -> Vec<String> {
    let mut a = vec![s("netem")];
    if let Some(d) = &spec.delay {
        a.push(s("delay"));
        a.push(tc_time(d.time));
        if let Some(j) = d.jitter {
            a.push(tc_time(j));
            if let Some(c) = d.correlation {
                a.push(pct(c));
            }
            if let Some(dist) = &d.distribution {
                a.push(s("distribution"));
                a.push(dist.clone());
            }
        }
    }
    if let Some(l) = &spec.loss {
        if let Some(ge) = &l.gilbert_elliott {
            a.extend([s("loss"), s("gemodel"), pct(ge.p), pct(ge.r)]);
            a.push(pct(ge.bad_loss.unwrap_or(Percent(100.0))));
            a.push(pct(ge.good_loss.unwrap_or(Percent(0.0))));
        } else if let Some(p) = l.percent {
            a.extend([s("loss"), s("random"), pct(p)]);
            if let Some(c) = l.correlation {
                a.push(pct(c));
            }
        }
    }
    for (word, chance) in [("corrupt", &spec.corrupt), ("duplicate", &spec.duplicate)] {
        if let Some(c) = chance {
            a.push(s(word));
            a.push(pct(c.percent));
            if let Some(cor) = c.correlation {
                a.push(pct(cor));
            }
        }
    }
    if let Some(r) = &spec.reorder {
        a.push(s("reorder"));
        a.push(pct(r.percent));
        if let Some(c) = r.correlation {
            a.push(pct(c));
        }
        if let Some(g) = r.gap {
            a.push(s("gap"));
            a.push(g.to_string());
        }
    }
    if let Some(r) = spec.rate {
        a.push(s("rate"));
        a.push(format!("{}bit", r.bits_per_sec));
    }
    a
}

/// One u32 match set (all must hold) for a filtered impairment.
#[derive(Clone, Debug, PartialEq, Eq)]
struct U32Match {
    v6: bool,
    words: Vec<String>,
}

fn proto_number(p: Protocol, v6: bool) -> Option<u8> {
    match p {
        Protocol::Tcp => Some(6),
        Protocol::Udp => Some(17),
        Protocol::Icmp => Some(if v6 { 58 } else { 1 }),
        Protocol::All => None,
    }
}

/// Expands a traffic filter into u32 match sets (AND across fields, OR
/// within a list: one filter per combination). Port matches assume IP
/// headers without options / IPv6 extension headers (a u32 limit).
fn u32_matches(f: &TrafficFilter) -> Result<Vec<U32Match>, FaultError> {
    let parse_all = |v: &[String]| -> Result<Vec<Cidr>, FaultError> {
        v.iter().map(|c| parse_cidr(c)).collect()
    };
    let dsts = parse_all(&f.destination)?;
    let srcs = parse_all(&f.source)?;
    let opt = |v: Vec<Cidr>| -> Vec<Option<Cidr>> {
        if v.is_empty() {
            vec![None]
        } else {
            v.into_iter().map(Some).collect()
        }
    };
    let ports = |v: &[u16]| -> Vec<Option<u16>> {
        if v.is_empty() {
            vec![None]
        } else {
            v.iter().copied().map(Some).collect()
        }
    };
    let has_ports = !f.ports.is_empty() || !f.source_ports.is_empty();
    let protos: Vec<Option<Protocol>> = match f.protocol {
        Some(Protocol::All) | None if has_ports => vec![Some(Protocol::Tcp), Some(Protocol::Udp)],
        Some(Protocol::All) | None => vec![None],
        Some(p) => vec![Some(p)],
    };
    if has_ports && f.protocol == Some(Protocol::Icmp) {
        return Err(FaultError::precondition(
            "the filter has ports and `protocol: icmp`; ICMP has no ports: drop one of them",
        ));
    }
    let mut out = Vec::new();
    for d in opt(dsts.clone()) {
        for sr in opt(srcs.clone()) {
            let fams: Vec<bool> = match (&d, &sr) {
                (Some(a), Some(b)) if a.v6 != b.v6 => continue,
                (Some(a), _) | (_, Some(a)) => vec![a.v6],
                (None, None) => vec![false, true],
            };
            for v6 in fams {
                let ipw = if v6 { "ip6" } else { "ip" };
                for dp in ports(&f.ports) {
                    for sp in ports(&f.source_ports) {
                        for p in &protos {
                            let mut w: Vec<String> = Vec::new();
                            let mut m = |a: &[&str]| {
                                w.push(s("match"));
                                w.extend(a.iter().map(|x| x.to_string()));
                            };
                            if let Some(d) = &d {
                                m(&[ipw, "dst", &d.text]);
                            }
                            if let Some(sr) = &sr {
                                m(&[ipw, "src", &sr.text]);
                            }
                            if let Some(n) = p.and_then(|p| proto_number(p, v6)) {
                                m(&[ipw, "protocol", &n.to_string(), "0xff"]);
                            }
                            if let Some(dp) = dp {
                                m(&[ipw, "dport", &dp.to_string(), "0xffff"]);
                            }
                            if let Some(sp) = sp {
                                m(&[ipw, "sport", &sp.to_string(), "0xffff"]);
                            }
                            if w.is_empty() {
                                // Any packet of this family.
                                if v6 {
                                    w.extend(["match", "ip6", "dst", "::/0"].map(s));
                                } else {
                                    w.extend(["match", "ip", "dst", "0.0.0.0/0"].map(s));
                                }
                            }
                            out.push(U32Match { v6, words: w });
                        }
                    }
                }
            }
        }
    }
    if out.is_empty() {
        return Err(FaultError::precondition(
            "the filter matches nothing: its `destination` and `source` mix IPv4 and IPv6 in every combination",
        ));
    }
    if out.len() > 256 {
        return Err(FaultError::precondition(format!(
            "the filter expands to {} tc filters (every destination x source x port combination); use CIDRs or fewer ports (at most 256)",
            out.len()
        )));
    }
    Ok(out)
}

/// u32 matches for the SSH session's packets through the impaired direction.
fn ssh_matches(peer: &SshPeer, ingress: bool) -> U32Match {
    let v6 = peer.client.is_ipv6();
    let ipw = if v6 { "ip6" } else { "ip" };
    let host = format!("{}/{}", peer.client, if v6 { 128 } else { 32 });
    let cp = peer.client_port.to_string();
    let sp = peer.server_port.to_string();
    let (addr_dir, cport_dir, sport_dir) = if ingress {
        ("src", "sport", "dport")
    } else {
        ("dst", "dport", "sport")
    };
    let words = [
        ["match", ipw, addr_dir, &host].to_vec(),
        ["match", ipw, "protocol", "6", "0xff"].to_vec(),
        ["match", ipw, cport_dir, &cp, "0xffff"].to_vec(),
        ["match", ipw, sport_dir, &sp, "0xffff"].to_vec(),
    ]
    .concat()
    .into_iter()
    .map(s)
    .collect();
    U32Match { v6, words }
}

/// tc/netem on an interface (`network`).
pub struct NetemFault {
    spec: NetworkSpec,
    ssh: Option<SshPeer>,
    state: Option<NetemState>,
}

#[derive(Clone, Debug)]
struct NetemState {
    /// Root of the device netem goes on (the interface, or a fresh IFB).
    root: RootState,
    /// The interface's qdiscs before the fault (for verify_rollback).
    before: Vec<serde_json::Value>,
    /// The SSH session goes through this interface (and is excluded).
    ssh_affected: bool,
}

impl NetemFault {
    pub fn new(spec: &NetworkSpec) -> NetemFault {
        NetemFault {
            spec: spec.clone(),
            ssh: SshPeer::from_env(),
            state: None,
        }
    }

    /// Overrides the SSH session read from `SSH_CONNECTION` (for tests).
    pub fn with_ssh_peer(mut self, peer: Option<SshPeer>) -> NetemFault {
        self.ssh = peer;
        self
    }

    fn ns(&self) -> Option<&str> {
        self.spec.netns.as_deref()
    }

    fn ingress(&self) -> bool {
        self.spec.direction == Direction::Ingress
    }

    /// The IFB device an ingress fault creates.
    fn ifb_name(&self, ctx: &FaultContext) -> String {
        let h = stable_hash(&[&ctx.run_id, self.ns().unwrap_or(""), &self.spec.interface]);
        format!("flifb{:08x}", h as u32)
    }

    fn ssh_affected(&self) -> bool {
        match &self.ssh {
            Some(p) => net::route_dev(self.ns(), &p.client.to_string())
                .is_some_and(|d| d == self.spec.interface),
            None => false,
        }
    }

    fn state_now(&self) -> NetemState {
        if let Some(s) = &self.state {
            return s.clone();
        }
        let ns = self.ns();
        let root = if self.ingress() {
            RootState::Default {
                kind: "none".into(),
                restore: Vec::new(),
            }
        } else {
            classify_root(ns, &self.spec.interface, self.spec.replace_existing_qdisc).unwrap_or(
                RootState::Default {
                    kind: "?".into(),
                    restore: Vec::new(),
                },
            )
        };
        NetemState {
            root,
            before: net::qdiscs(ns, &self.spec.interface).unwrap_or_default(),
            ssh_affected: self.ssh_affected(),
        }
    }

    fn filtered(&self, st: &NetemState) -> bool {
        self.spec.filter.is_some() || st.ssh_affected
    }

    fn ops(&self, ctx: &FaultContext, st: &NetemState) -> Result<Vec<Op>, FaultError> {
        let ns = self.ns();
        let iface = self.spec.interface.as_str();
        let mut ops = Vec::new();
        let ifb = self.ifb_name(ctx);
        let dev: &str = if self.ingress() { &ifb } else { iface };
        if self.ingress() {
            ops.push(
                Op::new(
                    format!("create IFB device {ifb} to impair traffic arriving on {iface}"),
                    net::ip(ns, &["link", "add", &ifb, "type", "ifb"]),
                )
                .undo(cmd_undo(
                    net::ip(ns, &["link", "del", "dev", &ifb]),
                    &["Cannot find device"],
                )),
            );
            ops.push(
                Op::new(
                    format!("bring {ifb} up"),
                    net::ip(ns, &["link", "set", "dev", &ifb, "up"]),
                )
                .note(format!("removed with {ifb}")),
            );
            ops.push(
                Op::new(
                    format!("add an ingress qdisc to {iface}"),
                    net::tc(
                        ns,
                        &["qdisc", "add", "dev", iface, "handle", "ffff:", "ingress"],
                    ),
                )
                .undo(cmd_undo(
                    net::tc(
                        ns,
                        &["qdisc", "del", "dev", iface, "handle", "ffff:", "ingress"],
                    ),
                    &TC_GONE,
                )),
            );
            ops.push(
                Op::new(
                    format!("redirect all traffic arriving on {iface} through {ifb}"),
                    net::tc(
                        ns,
                        &[
                            "filter", "add", "dev", iface, "parent", "ffff:", "protocol", "all",
                            "prio", "1", "u32", "match", "u32", "0", "0", "action", "mirred",
                            "egress", "redirect", "dev", &ifb,
                        ],
                    ),
                )
                .note("removed with the ingress qdisc"),
            );
        }
        let netem = netem_args(&self.spec);
        if !self.filtered(st) {
            ops.push(root_ops(ns, dev, &st.root, &netem, "netem"));
            return Ok(ops);
        }
        // Filtered layout: htb root, untouched default class 1, impaired class 2.
        let htb = ["htb", "default", "1"].map(s);
        ops.push(root_ops(
            ns,
            dev,
            &st.root,
            &htb,
            "an htb qdisc (filtered impairment)",
        ));
        let owned = format!("removed with faultline's root qdisc {OWNED_ROOT}");
        for (class, what) in [
            (
                DEFAULT_CLASS,
                "default class: traffic outside the filter, untouched",
            ),
            (IMPAIRED_CLASS, "impaired class"),
        ] {
            ops.push(
                Op::new(
                    format!("add htb {what} {class} on {dev}"),
                    net::tc(
                        ns,
                        &[
                            "class", "add", "dev", dev, "parent", OWNED_ROOT, "classid", class,
                            "htb", "rate", "100gbit", "quantum", "60000",
                        ],
                    ),
                )
                .note(owned.clone()),
            );
        }
        let mut leaf = [
            "qdisc",
            "add",
            "dev",
            dev,
            "parent",
            IMPAIRED_CLASS,
            "handle",
            OWNED_LEAF,
        ]
        .map(s)
        .to_vec();
        leaf.extend(netem.iter().cloned());
        let refs: Vec<&str> = leaf.iter().map(String::as_str).collect();
        ops.push(
            Op::new(
                format!("put netem on the impaired class {IMPAIRED_CLASS}"),
                net::tc(ns, &refs),
            )
            .note(owned.clone()),
        );
        let add_filter = |ops: &mut Vec<Op>, prio: &str, m: &U32Match, flow: &str, what: String| {
            let mut a = [
                "filter", "add", "dev", dev, "parent", OWNED_ROOT, "protocol",
            ]
            .map(s)
            .to_vec();
            a.push(if m.v6 { s("ipv6") } else { s("ip") });
            a.extend(["prio", prio, "u32"].map(s));
            a.extend(m.words.iter().cloned());
            a.extend([s("flowid"), s(flow)]);
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            ops.push(Op::new(what, net::tc(ns, &refs)).note(owned.clone()));
        };
        if st.ssh_affected {
            if let Some(peer) = &self.ssh {
                let m = ssh_matches(peer, self.ingress());
                add_filter(
                    &mut ops,
                    "1",
                    &m,
                    DEFAULT_CLASS,
                    format!(
                        "keep your SSH session {} out of the impairment (sent to the untouched class first)",
                        peer.describe()
                    ),
                );
            }
        }
        match &self.spec.filter {
            Some(f) => {
                for m in u32_matches(f)? {
                    let prio = if m.v6 { "3" } else { "2" };
                    let what = format!("impair traffic matching `{}`", m.words.join(" "));
                    add_filter(&mut ops, prio, &m, IMPAIRED_CLASS, what);
                }
            }
            None => {
                // All IP traffic; ARP and other non-IP frames stay untouched,
                // so neighbour resolution for the excluded session is not delayed.
                for (proto, prio) in [("ip", "4"), ("ipv6", "5")] {
                    let a = [
                        "filter",
                        "add",
                        "dev",
                        dev,
                        "parent",
                        OWNED_ROOT,
                        "protocol",
                        proto,
                        "prio",
                        prio,
                        "u32",
                        "match",
                        "u32",
                        "0",
                        "0",
                        "flowid",
                        IMPAIRED_CLASS,
                    ];
                    ops.push(
                        Op::new(format!("impair all other {proto} traffic"), net::tc(ns, &a))
                            .note(owned.clone()),
                    );
                }
            }
        }
        Ok(ops)
    }

    /// The netem qdisc's handle in the layout used.
    fn netem_handle(&self, st: &NetemState) -> &'static str {
        if self.filtered(st) {
            OWNED_LEAF
        } else {
            OWNED_ROOT
        }
    }

    fn impaired_dev(&self, ctx: &FaultContext) -> String {
        if self.ingress() {
            self.ifb_name(ctx)
        } else {
            self.spec.interface.clone()
        }
    }
}

impl FaultImpl for NetemFault {
    fn kind(&self) -> &'static str {
        "network"
    }

    fn target(&self) -> String {
        let dir = if self.ingress() { "ingress" } else { "egress" };
        match self.ns() {
            Some(ns) => format!("{} {dir} in netns {ns}", self.spec.interface),
            None => format!("{} {dir}", self.spec.interface),
        }
    }

    fn preflight(&mut self, ctx: &FaultContext) -> Result<(), FaultError> {
        let ns = self.ns().map(str::to_string);
        let ns = ns.as_deref();
        check_tc_interface(ns, &self.spec.interface)?;
        if let Some(f) = &self.spec.filter {
            u32_matches(f)?;
        }
        let ssh_affected = self.ssh_affected();
        let mut features = vec![Feature::Netem];
        if self.spec.filter.is_some() || ssh_affected {
            features.push(Feature::HtbU32);
        }
        if self.ingress() {
            features.push(Feature::IfbIngressMirred);
        }
        probe_features(&features)?;
        let before = net::qdiscs(ns, &self.spec.interface).map_err(FaultError::precondition)?;
        let root = if self.ingress() {
            if let Some(q) = before.iter().find(|q| is_ingress(q)) {
                return Err(FaultError::precondition(format!(
                    "{} already has an {} qdisc; faultline redirects ingress traffic with its own ingress qdisc and does not replace one that exists. Remove it (`tc qdisc del dev {} {}`) or impair egress on the peer instead",
                    self.spec.interface,
                    qstr(q, "kind"),
                    self.spec.interface,
                    qstr(q, "kind")
                )));
            }
            let ifb = self.ifb_name(ctx);
            if net::link_exists(ns, &ifb) {
                return Err(FaultError::precondition(format!(
                    "the IFB device {ifb} already exists: an earlier run did not roll back; run `faultline recover` or `ip link del {ifb}`"
                )));
            }
            RootState::Default {
                kind: "none".into(),
                restore: Vec::new(),
            }
        } else {
            classify_root(ns, &self.spec.interface, self.spec.replace_existing_qdisc)?
        };
        self.state = Some(NetemState {
            root,
            before,
            ssh_affected,
        });
        Ok(())
    }

    fn plan(&self, ctx: &FaultContext) -> Vec<PlannedOp> {
        let st = self.state_now();
        let mut out = Vec::new();
        if st.ssh_affected {
            if let Some(p) = &self.ssh {
                out.push(note_op(format!(
                    "your SSH session {} goes through {}: it is excluded from the impairment by a tc filter",
                    p.describe(),
                    self.spec.interface
                )));
            }
        }
        match self.ops(ctx, &st) {
            Ok(ops) => out.extend(ops.iter().map(Op::planned)),
            Err(e) => out.push(note_op(format!("cannot plan: {e}"))),
        }
        out
    }

    fn inject(&mut self, ctx: &FaultContext, undo: &mut dyn UndoLog) -> Result<(), FaultError> {
        let st = match &self.state {
            Some(s) => s.clone(),
            None => {
                self.preflight(ctx)?;
                self.state.clone().expect("preflight sets the state")
            }
        };
        let ops = self.ops(ctx, &st)?;
        execute(&ops, &self.target(), undo)
    }

    fn verify(&mut self, ctx: &FaultContext) -> Result<String, FaultError> {
        let st = self.state_now();
        let dev = self.impaired_dev(ctx);
        let handle = self.netem_handle(&st);
        let qs = net::qdiscs_with_stats(self.ns(), &dev).map_err(FaultError::failed)?;
        let Some(q) = qs
            .iter()
            .find(|q| qstr(q, "kind") == "netem" && qstr(q, "handle") == handle)
        else {
            return Err(FaultError::failed(format!(
                "no netem qdisc with handle {handle} on {dev} after injection (tc shows: {})",
                serde_json::to_string(&qs).unwrap_or_default()
            )));
        };
        let opts = q.get("options").map(|o| o.to_string()).unwrap_or_default();
        let mut expect: Vec<&str> = Vec::new();
        if self.spec.delay.is_some() {
            expect.push("delay");
        }
        if let Some(l) = &self.spec.loss {
            expect.push(if l.gilbert_elliott.is_some() {
                "gemodel"
            } else {
                "loss"
            });
        }
        if self.spec.corrupt.is_some() {
            expect.push("corrupt");
        }
        if self.spec.duplicate.is_some() {
            expect.push("duplicate");
        }
        if self.spec.reorder.is_some() {
            expect.push("reorder");
        }
        if self.spec.rate.is_some() {
            expect.push("rate");
        }
        for e in &expect {
            if !opts.contains(e) {
                return Err(FaultError::failed(format!(
                    "the netem qdisc on {dev} lacks `{e}` (options: {opts})"
                )));
            }
        }
        if self.ingress() {
            let iq = net::qdiscs(self.ns(), &self.spec.interface).map_err(FaultError::failed)?;
            if !iq.iter().any(|q| qstr(q, "kind") == "ingress") {
                return Err(FaultError::failed(format!(
                    "no ingress qdisc on {} redirecting to {dev}",
                    self.spec.interface
                )));
            }
        }
        let layout = if self.filtered(&st) {
            format!("under htb {OWNED_ROOT} (filtered)")
        } else {
            "as root qdisc".to_string()
        };
        Ok(format!("netem {handle} on {dev} {layout}: {opts}"))
    }

    fn verify_rollback(&mut self, ctx: &FaultContext) -> Result<(), FaultError> {
        let Some(st) = self.state.clone() else {
            return Ok(());
        };
        let ns = self.ns();
        let now = net::qdiscs(ns, &self.spec.interface).map_err(FaultError::failed)?;
        compare_qdiscs(&self.spec.interface, &st.before, &now, &st.root)?;
        if self.ingress() && net::link_exists(ns, &self.ifb_name(ctx)) {
            return Err(FaultError::failed(format!(
                "the IFB device {} is still there after rollback",
                self.ifb_name(ctx)
            )));
        }
        Ok(())
    }

    fn observations(&self) -> serde_json::Value {
        let Some(st) = &self.state else {
            return serde_json::Value::Null;
        };
        let mut o = serde_json::json!({
            "interface": self.spec.interface,
            "netns": self.spec.netns,
            "direction": if self.ingress() { "ingress" } else { "egress" },
            "layout": if self.filtered(st) { "htb+u32 filters" } else { "root netem" },
            "ssh_session_excluded": st.ssh_affected,
        });
        if let RootState::User { saved, .. } = &st.root {
            o["replaced_qdisc"] = serde_json::from_str(saved).unwrap_or_default();
        }
        o
    }
}

/// Checks a device's qdiscs after rollback against the snapshot before.
fn compare_qdiscs(
    dev: &str,
    before: &[serde_json::Value],
    now: &[serde_json::Value],
    root: &RootState,
) -> Result<(), FaultError> {
    // A kernel default re-created explicitly gets a new handle; a user's
    // qdisc must come back with its own.
    let keep_handles = matches!(root, RootState::User { .. })
        || matches!(root, RootState::Default { restore, .. } if restore.is_empty());
    let b = normalize_qdiscs(before, keep_handles);
    let n = normalize_qdiscs(now, keep_handles);
    if b != n {
        return Err(FaultError::failed(format!(
            "after rollback {dev} has qdiscs {} but before the fault it had {}",
            serde_json::to_string(&n).unwrap_or_default(),
            serde_json::to_string(&b).unwrap_or_default()
        )));
    }
    Ok(())
}

/// A tbf rate limit as the root qdisc of an interface (`bandwidth`).
pub struct BandwidthFault {
    spec: BandwidthSpec,
    ssh: Option<SshPeer>,
    state: Option<(RootState, Vec<serde_json::Value>)>,
}

impl BandwidthFault {
    pub fn new(spec: &BandwidthSpec) -> BandwidthFault {
        BandwidthFault {
            spec: spec.clone(),
            ssh: SshPeer::from_env(),
            state: None,
        }
    }

    fn ns(&self) -> Option<&str> {
        self.spec.netns.as_deref()
    }

    fn tbf_args(&self) -> Vec<String> {
        let burst = self.spec.burst.map(|b| b.bytes()).unwrap_or(32 * 1024);
        let latency = self.spec.latency.unwrap_or(Duration::from_millis(50));
        vec![
            s("tbf"),
            s("rate"),
            format!("{}bit", self.spec.rate.bits_per_sec),
            s("burst"),
            format!("{burst}b"),
            s("latency"),
            tc_time(latency),
        ]
    }

    fn root_now(&self) -> RootState {
        match &self.state {
            Some((r, _)) => r.clone(),
            None => classify_root(
                self.ns(),
                &self.spec.interface,
                self.spec.replace_existing_qdisc,
            )
            .unwrap_or(RootState::Default {
                kind: "?".into(),
                restore: Vec::new(),
            }),
        }
    }

    fn ops(&self) -> Vec<Op> {
        vec![root_ops(
            self.ns(),
            &self.spec.interface,
            &self.root_now(),
            &self.tbf_args(),
            &format!("a {} tbf rate limit", self.spec.rate),
        )]
    }
}

impl FaultImpl for BandwidthFault {
    fn kind(&self) -> &'static str {
        "bandwidth"
    }

    fn target(&self) -> String {
        match self.ns() {
            Some(ns) => format!("{} in netns {ns}", self.spec.interface),
            None => self.spec.interface.clone(),
        }
    }

    fn preflight(&mut self, _ctx: &FaultContext) -> Result<(), FaultError> {
        let ns = self.ns().map(str::to_string);
        let ns = ns.as_deref();
        check_tc_interface(ns, &self.spec.interface)?;
        probe_features(&[Feature::Tbf])?;
        let before = net::qdiscs(ns, &self.spec.interface).map_err(FaultError::precondition)?;
        let root = classify_root(ns, &self.spec.interface, self.spec.replace_existing_qdisc)?;
        self.state = Some((root, before));
        Ok(())
    }

    fn plan(&self, _ctx: &FaultContext) -> Vec<PlannedOp> {
        let mut out = Vec::new();
        if let Some(p) = &self.ssh {
            if net::route_dev(self.ns(), &p.client.to_string())
                .is_some_and(|d| d == self.spec.interface)
            {
                out.push(note_op(format!(
                    "note: your SSH session {} goes through {}; it stays connected but shares the limited rate",
                    p.describe(),
                    self.spec.interface
                )));
            }
        }
        out.extend(self.ops().iter().map(Op::planned));
        out
    }

    fn inject(&mut self, ctx: &FaultContext, undo: &mut dyn UndoLog) -> Result<(), FaultError> {
        if self.state.is_none() {
            self.preflight(ctx)?;
        }
        execute(&self.ops(), &self.target(), undo)
    }

    fn verify(&mut self, _ctx: &FaultContext) -> Result<String, FaultError> {
        let qs =
            net::qdiscs_with_stats(self.ns(), &self.spec.interface).map_err(FaultError::failed)?;
        let Some(q) = qs
            .iter()
            .find(|q| qstr(q, "kind") == "tbf" && qstr(q, "handle") == OWNED_ROOT)
        else {
            return Err(FaultError::failed(format!(
                "no tbf qdisc with handle {OWNED_ROOT} on {} after injection",
                self.spec.interface
            )));
        };
        let rate = q
            .get("options")
            .and_then(|o| o.get("rate"))
            .and_then(|r| r.as_u64())
            .unwrap_or(0);
        let want = self.spec.rate.bits_per_sec / 8;
        if rate == 0 || rate.abs_diff(want) > want / 100 + 1 {
            return Err(FaultError::failed(format!(
                "the tbf qdisc on {} has rate {rate} bytes/s, not {want} bytes/s",
                self.spec.interface
            )));
        }
        Ok(format!(
            "tbf {OWNED_ROOT} on {}: rate {} ({rate} bytes/s)",
            self.spec.interface, self.spec.rate
        ))
    }

    fn verify_rollback(&mut self, _ctx: &FaultContext) -> Result<(), FaultError> {
        let Some((root, before)) = self.state.clone() else {
            return Ok(());
        };
        let now = net::qdiscs(self.ns(), &self.spec.interface).map_err(FaultError::failed)?;
        compare_qdiscs(&self.spec.interface, &before, &now, &root)
    }

    fn observations(&self) -> serde_json::Value {
        let mut o = serde_json::json!({
            "interface": self.spec.interface,
            "netns": self.spec.netns,
            "rate_bits_per_sec": self.spec.rate.bits_per_sec,
        });
        if let Some((RootState::User { saved, .. }, _)) = &self.state {
            o["replaced_qdisc"] = serde_json::from_str(saved).unwrap_or_default();
        }
        o
    }
}

/// nftables rules in a table owned by the fault: `blackhole`, `partition`,
/// `dns`, `packet_loss`.
pub struct NftFault {
    kind: &'static str,
    netns: Option<String>,
    target: String,
    /// Rule bodies (nft words) for the output hook.
    egress: Vec<String>,
    /// Rule bodies for the input hook.
    ingress: Vec<String>,
    /// Identity of the spec, for the table name.
    spec_key: String,
    ssh: Option<SshPeer>,
    /// Set when the rules could not be built (reported by preflight).
    error: Option<String>,
    table: Option<String>,
}

/// nft matchers for one family's addresses: `ip daddr { a, b }`.
fn nft_addr(field: &str, v6: bool, cidrs: &[Cidr]) -> Option<String> {
    let list: Vec<&str> = cidrs
        .iter()
        .filter(|c| c.v6 == v6)
        .map(|c| c.text.as_str())
        .collect();
    if list.is_empty() {
        return None;
    }
    let fam = if v6 { "ip6" } else { "ip" };
    Some(format!("{fam} {field} {{ {} }}", list.join(", ")))
}

fn nft_ports(field: &str, ports: &[u16]) -> Option<String> {
    if ports.is_empty() {
        return None;
    }
    let list: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
    Some(format!("th {field} {{ {} }}", list.join(", ")))
}

/// Matchers for (destinations, sources, dports, sports, protocol), one
/// string per address family needed.
fn nft_matchers(
    dsts: &[Cidr],
    srcs: &[Cidr],
    dports: &[u16],
    sports: &[u16],
    protocol: Option<Protocol>,
) -> Result<Vec<String>, String> {
    let fams: Vec<Option<bool>> = if dsts.is_empty() && srcs.is_empty() {
        vec![None]
    } else {
        [false, true]
            .into_iter()
            .filter(|v6| {
                (dsts.is_empty() || dsts.iter().any(|c| c.v6 == *v6))
                    && (srcs.is_empty() || srcs.iter().any(|c| c.v6 == *v6))
            })
            .map(Some)
            .collect()
    };
    if fams.is_empty() {
        return Err(
            "the destination and source addresses mix IPv4 and IPv6 so that nothing can match"
                .into(),
        );
    }
    let has_ports = !dports.is_empty() || !sports.is_empty();
    let mut out = Vec::new();
    for fam in fams {
        let mut parts: Vec<String> = Vec::new();
        if let Some(v6) = fam {
            parts.extend(nft_addr("daddr", v6, dsts));
            parts.extend(nft_addr("saddr", v6, srcs));
        }
        match protocol {
            Some(Protocol::Tcp) => parts.push(s("meta l4proto tcp")),
            Some(Protocol::Udp) => parts.push(s("meta l4proto udp")),
            Some(Protocol::Icmp) => {
                if has_ports {
                    return Err("ICMP has no ports: drop `ports` or `protocol: icmp`".into());
                }
                parts.push(match fam {
                    Some(true) => s("meta l4proto ipv6-icmp"),
                    Some(false) => s("meta l4proto icmp"),
                    None => s("meta l4proto { icmp, ipv6-icmp }"),
                })
            }
            Some(Protocol::All) | None if has_ports => parts.push(s("meta l4proto { tcp, udp }")),
            Some(Protocol::All) | None => {}
        }
        parts.extend(nft_ports("dport", dports));
        parts.extend(nft_ports("sport", sports));
        out.push(parts.join(" "));
    }
    Ok(out)
}

/// The verdicts for drop or reject (reject: TCP reset for TCP, ICMP port
/// unreachable for the rest).
fn verdict_rules(matcher: &str, action: DropAction, protocol: Option<Protocol>) -> Vec<String> {
    let join = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            format!("{a} {b}")
        }
    };
    match action {
        DropAction::Drop => vec![join(matcher, "drop")],
        DropAction::Reject => match protocol {
            Some(Protocol::Tcp) => vec![join(matcher, "reject with tcp reset")],
            Some(Protocol::Udp) | Some(Protocol::Icmp) => {
                vec![join(matcher, "reject with icmpx type port-unreachable")]
            }
            _ => vec![
                join(matcher, "meta l4proto tcp reject with tcp reset"),
                join(matcher, "reject with icmpx type port-unreachable"),
            ],
        },
    }
}

fn cidrs(v: &[String]) -> Result<Vec<Cidr>, String> {
    v.iter()
        .map(|c| parse_cidr(c).map_err(|e| e.message))
        .collect()
}

impl NftFault {
    fn empty(kind: &'static str, netns: Option<String>, target: String, spec_key: String) -> Self {
        NftFault {
            kind,
            netns,
            target,
            egress: Vec::new(),
            ingress: Vec::new(),
            spec_key,
            ssh: SshPeer::from_env(),
            error: None,
            table: None,
        }
    }

    /// `blackhole` (default direction egress) or `partition` (default both).
    pub fn blackhole(spec: &BlackholeSpec, partition: bool) -> NftFault {
        let kind = if partition { "partition" } else { "blackhole" };
        let mut target = if spec.peers.is_empty() {
            "any peer".to_string()
        } else {
            spec.peers.join(",")
        };
        if !spec.ports.is_empty() {
            let p: Vec<String> = spec.ports.iter().map(|p| p.to_string()).collect();
            target.push_str(&format!(" port {}", p.join(",")));
        }
        if let Some(ns) = &spec.netns {
            target.push_str(&format!(" in netns {ns}"));
        }
        let key = serde_json::to_string(spec).unwrap_or_default();
        let mut f = Self::empty(kind, spec.netns.clone(), target, key);
        let dir = spec.direction.unwrap_or(if partition {
            Direction::Both
        } else {
            Direction::Egress
        });
        let build = || -> Result<(Vec<String>, Vec<String>), String> {
            let peers = cidrs(&spec.peers)?;
            let mut eg = Vec::new();
            let mut ing = Vec::new();
            if matches!(dir, Direction::Egress | Direction::Both) {
                for m in nft_matchers(&peers, &[], &spec.ports, &[], spec.protocol)? {
                    eg.extend(verdict_rules(&m, spec.action, spec.protocol));
                }
            }
            if matches!(dir, Direction::Ingress | Direction::Both) {
                for m in nft_matchers(&[], &peers, &spec.ports, &[], spec.protocol)? {
                    ing.extend(verdict_rules(&m, spec.action, spec.protocol));
                }
            }
            Ok((eg, ing))
        };
        match build() {
            Ok((eg, ing)) => {
                f.egress = eg;
                f.ingress = ing;
            }
            Err(e) => f.error = Some(e),
        }
        f
    }

    /// `dns`: port 53 (UDP and TCP) to the resolvers, or to anyone.
    pub fn dns(spec: &DnsSpec) -> NftFault {
        let target = if spec.resolvers.is_empty() {
            "all resolvers (port 53)".to_string()
        } else {
            format!("resolvers {}", spec.resolvers.join(","))
        };
        let key = serde_json::to_string(spec).unwrap_or_default();
        let mut f = Self::empty("dns", spec.netns.clone(), target, key);
        let build = || -> Result<Vec<String>, String> {
            let res = cidrs(&spec.resolvers)?;
            let mut eg = Vec::new();
            for m in nft_matchers(&res, &[], &[53], &[], None)? {
                eg.extend(verdict_rules(&m, spec.action, None));
            }
            Ok(eg)
        };
        match build() {
            Ok(eg) => f.egress = eg,
            Err(e) => f.error = Some(e),
        }
        f
    }

    /// `packet_loss`: `numgen random mod 200 < 2*percent drop` (0.5% steps), with an optional filter.
    pub fn packet_loss(spec: &PacketLossSpec) -> NftFault {
        let mut target = format!("{} loss", spec.percent);
        if let Some(ns) = &spec.netns {
            target.push_str(&format!(" in netns {ns}"));
        }
        let key = serde_json::to_string(spec).unwrap_or_default();
        let mut f = Self::empty("packet_loss", spec.netns.clone(), target, key);
        let dir = spec.direction.unwrap_or(Direction::Egress);
        // `numgen ... mod N < T` compares the register bytewise, which is
        // only right for values below 256; mod 200 gives 0.5% steps.
        let threshold = (spec.percent.0 * 2.0).round() as u64;
        let build = || -> Result<Vec<String>, String> {
            let fl = spec.filter.clone().unwrap_or_default();
            let ms = nft_matchers(
                &cidrs(&fl.destination)?,
                &cidrs(&fl.source)?,
                &fl.ports,
                &fl.source_ports,
                fl.protocol,
            )?;
            Ok(ms
                .into_iter()
                .map(|m| {
                    let r = if threshold >= 200 {
                        s("drop")
                    } else {
                        format!("numgen random mod 200 < {threshold} drop")
                    };
                    if m.is_empty() {
                        r
                    } else {
                        format!("{m} {r}")
                    }
                })
                .collect())
        };
        match build() {
            Ok(rules) => {
                if matches!(dir, Direction::Egress | Direction::Both) {
                    f.egress = rules.clone();
                }
                if matches!(dir, Direction::Ingress | Direction::Both) {
                    f.ingress = rules;
                }
            }
            Err(e) => f.error = Some(e),
        }
        f
    }

    /// Overrides the SSH session read from `SSH_CONNECTION` (for tests).
    pub fn with_ssh_peer(mut self, peer: Option<SshPeer>) -> NftFault {
        self.ssh = peer;
        self
    }

    /// The table this fault owns in `ctx`'s run.
    pub fn table_name(&self, ctx: &FaultContext) -> String {
        let h = stable_hash(&[
            self.kind,
            &self.spec_key,
            self.netns.as_deref().unwrap_or(""),
        ]);
        format!(
            "faultline_{}_{}_{:06x}",
            sanitize_run_id(&ctx.run_id),
            self.kind,
            h & 0xffffff
        )
    }

    fn ns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    fn ssh_rules(&self) -> (Option<String>, Option<String>) {
        let Some(p) = &self.ssh else {
            return (None, None);
        };
        let fam = if p.client.is_ipv6() { "ip6" } else { "ip" };
        (
            Some(format!(
                "{fam} daddr {} tcp dport {} tcp sport {} accept",
                p.client, p.client_port, p.server_port
            )),
            Some(format!(
                "{fam} saddr {} tcp sport {} tcp dport {} accept",
                p.client, p.client_port, p.server_port
            )),
        )
    }

    fn rule_count(&self) -> usize {
        let (se, si) = self.ssh_rules();
        let mut n = 0;
        if !self.egress.is_empty() {
            n += self.egress.len() + usize::from(se.is_some());
        }
        if !self.ingress.is_empty() {
            n += self.ingress.len() + usize::from(si.is_some());
        }
        n
    }

    fn ops(&self, ctx: &FaultContext) -> Vec<Op> {
        let ns = self.ns();
        let table = self.table_name(ctx);
        let mut ops = vec![Op::new(
            format!("create nftables table inet {table} (owned by this run)"),
            net::nft(ns, &["add", "table", "inet", &table]),
        )
        .undo(cmd_undo(
            net::nft(ns, &["delete", "table", "inet", &table]),
            &["No such file or directory"],
        ))];
        let (ssh_eg, ssh_in) = self.ssh_rules();
        for (chain, hook, rules, ssh) in [
            ("egress", "output", &self.egress, ssh_eg),
            ("ingress", "input", &self.ingress, ssh_in),
        ] {
            if rules.is_empty() {
                continue;
            }
            let spec = format!("{{ type filter hook {hook} priority -10; policy accept; }}");
            ops.push(
                Op::new(
                    format!("add chain {chain} (hook {hook})"),
                    net::nft(ns, &["add", "chain", "inet", &table, chain, &spec]),
                )
                .note(format!("removed with table {table}")),
            );
            if let Some(r) = ssh {
                ops.push(self.rule_op(
                    &table,
                    chain,
                    &r,
                    format!(
                        "accept your SSH session {} first, so it is never cut",
                        self.ssh.as_ref().map(|p| p.describe()).unwrap_or_default()
                    ),
                ));
            }
            for r in rules {
                ops.push(self.rule_op(&table, chain, r, format!("{chain}: {r}")));
            }
        }
        ops
    }

    fn rule_op(&self, table: &str, chain: &str, rule: &str, action: String) -> Op {
        let mut a: Vec<&str> = vec!["add", "rule", "inet", table, chain];
        a.extend(rule.split_whitespace());
        Op::new(action, net::nft(self.ns(), &a)).note(format!("removed with table {table}"))
    }
}

impl FaultImpl for NftFault {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn target(&self) -> String {
        self.target.clone()
    }

    fn preflight(&mut self, _ctx: &FaultContext) -> Result<(), FaultError> {
        if let Some(e) = &self.error {
            return Err(FaultError::precondition(format!("{}: {e}", self.kind)));
        }
        check_tool("nft", "nftables")?;
        check_tool("ip", "iproute2")?;
        check_privileges()?;
        check_netns(self.ns())?;
        let out = net::run(&net::nft(self.ns(), &["list", "tables"]))
            .map_err(FaultError::precondition)?;
        if !out.success {
            return Err(FaultError::precondition(format!(
                "nftables does not work here (`nft list tables`: {}); the kernel needs CONFIG_NF_TABLES and CONFIG_NF_TABLES_INET",
                out.stderr.trim()
            )));
        }
        if self.egress.is_empty() && self.ingress.is_empty() {
            return Err(FaultError::precondition(format!(
                "the {} fault has no rules to add",
                self.kind
            )));
        }
        Ok(())
    }

    fn plan(&self, ctx: &FaultContext) -> Vec<PlannedOp> {
        if let Some(e) = &self.error {
            return vec![note_op(format!("cannot plan: {e}"))];
        }
        self.ops(ctx).iter().map(Op::planned).collect()
    }

    fn inject(&mut self, ctx: &FaultContext, undo: &mut dyn UndoLog) -> Result<(), FaultError> {
        if let Some(e) = &self.error {
            return Err(FaultError::precondition(e.clone()));
        }
        self.table = Some(self.table_name(ctx));
        execute(&self.ops(ctx), &self.target, undo)
    }

    fn verify(&mut self, ctx: &FaultContext) -> Result<String, FaultError> {
        let table = self.table_name(ctx);
        let t = net::nft_table(self.ns(), "inet", &table)
            .map_err(FaultError::failed)?
            .ok_or_else(|| {
                FaultError::failed(format!("table inet {table} is missing after injection"))
            })?;
        let rules = t
            .get("nftables")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter(|o| o.get("rule").is_some()).count())
            .unwrap_or(0);
        let want = self.rule_count();
        if rules != want {
            return Err(FaultError::failed(format!(
                "table inet {table} has {rules} rules, expected {want}"
            )));
        }
        Ok(format!("nftables table inet {table}: {rules} rules"))
    }

    fn verify_rollback(&mut self, ctx: &FaultContext) -> Result<(), FaultError> {
        if self.table.is_none() {
            return Ok(());
        }
        let table = self.table_name(ctx);
        match net::nft_table(self.ns(), "inet", &table) {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(FaultError::failed(format!(
                "table inet {table} is still there after rollback"
            ))),
            Err(e) => Err(FaultError::failed(e)),
        }
    }

    fn observations(&self) -> serde_json::Value {
        serde_json::json!({
            "netns": self.netns,
            "table": self.table,
            "egress_rules": self.egress,
            "ingress_rules": self.ingress,
            "ssh_session_excluded": self.ssh.is_some(),
        })
    }
}

pub fn build_network(s: &NetworkSpec) -> Box<dyn FaultImpl> {
    Box::new(NetemFault::new(s))
}
pub fn build_blackhole(s: &BlackholeSpec, partition: bool) -> Box<dyn FaultImpl> {
    Box::new(NftFault::blackhole(s, partition))
}
pub fn build_dns(s: &DnsSpec) -> Box<dyn FaultImpl> {
    Box::new(NftFault::dns(s))
}
pub fn build_packet_loss(s: &PacketLossSpec) -> Box<dyn FaultImpl> {
    Box::new(NftFault::packet_loss(s))
}
pub fn build_bandwidth(s: &BandwidthSpec) -> Box<dyn FaultImpl> {
    Box::new(BandwidthFault::new(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
        serde_yaml::from_str(s).unwrap()
    }

    fn ctx() -> FaultContext {
        FaultContext {
            run_id: "2026-11-27T10:00:00Z-ab12".into(),
            ..Default::default()
        }
    }

    #[test]
    fn netem_arguments_cover_every_option() {
        let spec: NetworkSpec = yaml(
            "interface: eth0\n\
             delay: {time: 100ms, jitter: 1500us, correlation: 25%, distribution: normal}\n\
             loss: {percent: 1.5%, correlation: 10%}\n\
             corrupt: {percent: 1%}\nduplicate: {percent: 2%, correlation: 5%}\n\
             reorder: {percent: 25%, correlation: 50%, gap: 5}\nrate: 1mbit\n",
        );
        assert_eq!(
            netem_args(&spec).join(" "),
            "netem delay 100ms 1500us 25% distribution normal loss random 1.5% 10% corrupt 1% \
             duplicate 2% 5% reorder 25% 50% gap 5 rate 1000000bit"
        );
        let ge: NetworkSpec =
            yaml("interface: eth0\nloss: {gilbert_elliott: {p: 1%, r: 20%, bad_loss: 90%}}\n");
        assert_eq!(
            netem_args(&ge).join(" "),
            "netem loss gemodel 1% 20% 90% 0%"
        );
    }

    #[test]
    fn a_plain_netem_is_the_root_qdisc_with_an_owned_handle_and_undo() {
        let spec: NetworkSpec = yaml("interface: eth0\nnetns: app\ndelay: {time: 50ms}\n");
        let f = NetemFault::new(&spec).with_ssh_peer(None);
        let st = NetemState {
            root: RootState::Default {
                kind: "noqueue".into(),
                restore: vec![],
            },
            before: vec![],
            ssh_affected: false,
        };
        let ops = f.ops(&ctx(), &st).unwrap();
        assert_eq!(ops.len(), 1);
        assert_eq!(
            ops[0].argv.join(" "),
            "tc -n app qdisc add dev eth0 root handle fa17: netem delay 50ms"
        );
        assert_eq!(
            ops[0].undo,
            vec![cmd_undo(
                "tc -n app qdisc del dev eth0 root handle fa17:"
                    .split(' ')
                    .map(s)
                    .collect(),
                &TC_GONE
            )]
        );
    }

    #[test]
    fn the_ssh_session_gets_the_htb_layout_and_an_exclusion_filter_first() {
        let spec: NetworkSpec = yaml("interface: eth0\ndelay: {time: 50ms}\n");
        let peer = SshPeer::parse("192.0.2.7 51234 198.51.100.1 22").unwrap();
        let f = NetemFault::new(&spec).with_ssh_peer(Some(peer));
        let st = NetemState {
            root: RootState::Default {
                kind: "fq_codel".into(),
                restore: vec![],
            },
            before: vec![],
            ssh_affected: true,
        };
        let cmds: Vec<String> = f
            .ops(&ctx(), &st)
            .unwrap()
            .iter()
            .map(|o| o.argv.join(" "))
            .collect();
        assert_eq!(
            cmds[0],
            "tc qdisc add dev eth0 root handle fa17: htb default 1"
        );
        assert!(
            cmds[3].ends_with("parent fa17:2 handle fa18: netem delay 50ms"),
            "{cmds:?}"
        );
        assert_eq!(
            cmds[4],
            "tc filter add dev eth0 parent fa17: protocol ip prio 1 u32 match ip dst 192.0.2.7/32 \
             match ip protocol 6 0xff match ip dport 51234 0xffff match ip sport 22 0xffff flowid fa17:1"
        );
        assert!(cmds[5].contains("protocol ip prio 4 u32 match u32 0 0 flowid fa17:2"));
        assert!(cmds[6].contains("protocol ipv6 prio 5"));
    }

    #[test]
    fn filters_expand_to_one_u32_filter_per_combination() {
        let f: TrafficFilter = yaml("destination: [10.0.0.5/24, 2001:db8::1]\nports: [80, 443]\n");
        let m = u32_matches(&f).unwrap();
        // 2 destinations x 2 ports x (tcp, udp).
        assert_eq!(m.len(), 8);
        assert_eq!(
            m[0].words.join(" "),
            "match ip dst 10.0.0.0/24 match ip protocol 6 0xff match ip dport 80 0xffff"
        );
        assert!(m
            .iter()
            .any(|x| x.v6 && x.words.join(" ").contains("ip6 dst 2001:db8::1/128")));
        let mixed: TrafficFilter = yaml("destination: [10.0.0.1]\nsource: [2001:db8::1]\n");
        assert!(u32_matches(&mixed).is_err());
        let icmp_ports: TrafficFilter = yaml("ports: [1]\nprotocol: icmp\n");
        assert!(u32_matches(&icmp_ports).is_err());
    }

    #[test]
    fn nft_rules_for_each_kind() {
        let b: BlackholeSpec = yaml("peers: [10.0.0.2, fd00::/8]\nports: [5432]\naction: reject\n");
        let f = NftFault::blackhole(&b, false).with_ssh_peer(None);
        assert_eq!(
            f.egress,
            vec![
                "ip daddr { 10.0.0.2/32 } meta l4proto { tcp, udp } th dport { 5432 } meta l4proto tcp reject with tcp reset",
                "ip daddr { 10.0.0.2/32 } meta l4proto { tcp, udp } th dport { 5432 } reject with icmpx type port-unreachable",
                "ip6 daddr { fd00::/8 } meta l4proto { tcp, udp } th dport { 5432 } meta l4proto tcp reject with tcp reset",
                "ip6 daddr { fd00::/8 } meta l4proto { tcp, udp } th dport { 5432 } reject with icmpx type port-unreachable",
            ]
        );
        assert!(f.ingress.is_empty(), "blackhole defaults to egress");
        let p = NftFault::blackhole(&yaml("peers: [10.0.0.0/24]\n"), true);
        assert_eq!(p.egress, vec!["ip daddr { 10.0.0.0/24 } drop"]);
        assert_eq!(p.ingress, vec!["ip saddr { 10.0.0.0/24 } drop"]);
        let d = NftFault::dns(&yaml("resolvers: [192.0.2.53]\n"));
        assert_eq!(
            d.egress,
            vec!["ip daddr { 192.0.2.53/32 } meta l4proto { tcp, udp } th dport { 53 } drop"]
        );
        let l = NftFault::packet_loss(&yaml("percent: 12.5%\nfilter: {protocol: udp}\n"));
        assert_eq!(
            l.egress,
            vec!["meta l4proto udp numgen random mod 200 < 25 drop"]
        );
        let all = NftFault::packet_loss(&yaml("percent: 100%\ndirection: both\n"));
        assert_eq!(all.egress, vec!["drop"]);
        assert_eq!(all.ingress, vec!["drop"]);
    }

    #[test]
    fn nft_plan_owns_a_table_per_run_and_accepts_ssh_first() {
        let peer = SshPeer::parse("192.0.2.7 51234 198.51.100.1 22").unwrap();
        let f =
            NftFault::packet_loss(&yaml("netns: app\npercent: 30%\n")).with_ssh_peer(Some(peer));
        let table = f.table_name(&ctx());
        assert!(
            table.starts_with("faultline_2026_11_27t10_00_00z_ab12_packet_loss_"),
            "{table}"
        );
        let plan = f.plan(&ctx());
        let cmd = |i: usize| plan[i].command.clone().unwrap().join(" ");
        assert_eq!(
            cmd(0),
            format!("ip netns exec app nft add table inet {table}")
        );
        assert_eq!(
            plan[0].undo.as_deref(),
            Some(format!("ip netns exec app nft delete table inet {table}").as_str())
        );
        assert!(cmd(1).contains("hook output priority -10"));
        assert!(plan[2].action.contains("SSH"), "{:?}", plan[2]);
        assert_eq!(
            cmd(2),
            format!("ip netns exec app nft add rule inet {table} egress ip daddr 192.0.2.7 tcp dport 51234 tcp sport 22 accept")
        );
        assert!(cmd(3).ends_with("numgen random mod 200 < 60 drop"));
        assert_eq!(f.rule_count(), 2);
    }

    #[test]
    fn saved_root_qdiscs_are_re_created_with_handle_and_options() {
        let tbf: serde_json::Value = serde_json::from_str(
            r#"{"kind":"tbf","handle":"8001:","root":true,"options":{"rate":625000,"burst":16383,"lat":20000}}"#,
        )
        .unwrap();
        assert_eq!(
            restore_argv(Some("app"), "eth0", &tbf, 1).unwrap().join(" "),
            "tc -n app qdisc replace dev eth0 root handle 8001: tbf rate 625000bps burst 16384b latency 20000us"
        );
        let fq: serde_json::Value = serde_json::from_str(
            r#"{"kind":"fq_codel","handle":"1:","root":true,"options":{"limit":10240,"flows":1024,"quantum":1514,"target":4999,"interval":99999,"memory_limit":33554432,"ecn":true,"drop_batch":64}}"#,
        )
        .unwrap();
        assert_eq!(
            restore_argv(None, "eth0", &fq, 0).unwrap().join(" "),
            "tc qdisc replace dev eth0 root handle 1: fq_codel limit 10240 flows 1024 quantum 1514 \
             target 4999us interval 99999us memory_limit 33554432 drop_batch 64 ecn"
        );
        let cake: serde_json::Value =
            serde_json::from_str(r#"{"kind":"cake","handle":"1:","root":true}"#).unwrap();
        assert!(restore_argv(None, "eth0", &cake, 0).is_none());
    }

    #[test]
    fn run_ids_and_ssh_connection_parse() {
        assert_eq!(sanitize_run_id("Run-1.2/x"), "run_1_2_x");
        assert_eq!(sanitize_run_id(""), "run");
        assert_eq!(
            SshPeer::parse("2001:db8::5 40000 2001:db8::1 22"),
            Some(SshPeer {
                client: "2001:db8::5".parse().unwrap(),
                client_port: 40000,
                server_port: 22
            })
        );
        assert_eq!(SshPeer::parse("garbage"), None);
        assert_eq!(tc_time(Duration::from_millis(1500)), "1500ms");
        assert_eq!(parse_cidr("10.1.2.3/8").unwrap().text, "10.0.0.0/8");
    }

    #[test]
    fn after_rollback_a_changed_qdisc_list_is_reported() {
        let before =
            vec![serde_json::json!({"kind":"noqueue","handle":"0:","root":true,"refcnt":2})];
        let same = vec![serde_json::json!({"kind":"noqueue","handle":"0:","root":true,"refcnt":5})];
        let other = vec![serde_json::json!({"kind":"netem","handle":"fa17:","root":true})];
        let root = RootState::Default {
            kind: "noqueue".into(),
            restore: vec![],
        };
        assert!(compare_qdiscs("eth0", &before, &same, &root).is_ok());
        let e = compare_qdiscs("eth0", &before, &other, &root).unwrap_err();
        assert!(e.message.contains("netem"), "{e}");
    }
}
