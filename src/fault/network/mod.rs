//! Network faults: tc/netem impairments (`network`), nftables drops and
//! rejects (`blackhole`, `partition`, `dns`, `packet_loss`) and `bandwidth`.
//!
//! `spec` holds what the experiment file says, `tc` the qdisc handling shared
//! by the tc faults, `netem`, `tbf` and `nft` one fault each.

mod incontainer;
mod netem;
mod nft;
mod spec;
mod tbf;
mod tc;

pub use incontainer::{
    ns_name as container_netns_name, InContainers, Selector as ContainerSelectorOwned,
};
pub use netem::{netem_args, NetemFault};
pub use nft::NftFault;
pub use spec::*;
pub use tbf::BandwidthFault;
pub use tc::{netem_missing_message, OWNED_LEAF, OWNED_ROOT};

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

use super::{FaultError, FaultImpl, PlannedOp, UndoLog};
use crate::journal::undo::UndoOp;
use crate::sys::net;
use std::net::IpAddr;
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
    let (ip, len) = crate::units::parse_cidr(v).map_err(FaultError::precondition)?;
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

/// A spec with a container selector runs in each container's namespace
/// ([`InContainers`]); `make` builds the plain fault for one named namespace.
fn in_containers<T, F>(spec: &T, what: String, make: F) -> Option<Box<dyn FaultImpl>>
where
    T: crate::fault::container::ContainerFields + Clone + Send + 'static,
    F: Fn(&T, &str) -> Box<dyn FaultImpl> + Send + 'static,
{
    let sel = incontainer::Selector::of(spec)?;
    let spec = spec.clone();
    Some(Box::new(InContainers::new(
        what,
        sel,
        Box::new(move |ns| make(&spec, ns)),
    )))
}

pub fn build_network(s: &NetworkSpec) -> Box<dyn FaultImpl> {
    in_containers(s, s.interface.clone(), |s, ns| {
        let mut s = s.clone();
        (s.netns, s.container, s.labels, s.compose) = (Some(ns.into()), None, None, None);
        Box::new(NetemFault::new(&s))
    })
    .unwrap_or_else(|| Box::new(NetemFault::new(s)))
}
pub fn build_blackhole(s: &BlackholeSpec, partition: bool) -> Box<dyn FaultImpl> {
    in_containers(s, "network".into(), move |s, ns| {
        let mut s = s.clone();
        (s.netns, s.container, s.labels, s.compose) = (Some(ns.into()), None, None, None);
        Box::new(NftFault::blackhole(&s, partition))
    })
    .unwrap_or_else(|| Box::new(NftFault::blackhole(s, partition)))
}
pub fn build_dns(s: &DnsSpec) -> Box<dyn FaultImpl> {
    in_containers(s, "DNS".into(), |s, ns| {
        let mut s = s.clone();
        (s.netns, s.container, s.labels, s.compose) = (Some(ns.into()), None, None, None);
        Box::new(NftFault::dns(&s))
    })
    .unwrap_or_else(|| Box::new(NftFault::dns(s)))
}
pub fn build_packet_loss(s: &PacketLossSpec) -> Box<dyn FaultImpl> {
    in_containers(s, "network".into(), |s, ns| {
        let mut s = s.clone();
        (s.netns, s.container, s.labels, s.compose) = (Some(ns.into()), None, None, None);
        Box::new(NftFault::packet_loss(&s))
    })
    .unwrap_or_else(|| Box::new(NftFault::packet_loss(s)))
}
pub fn build_bandwidth(s: &BandwidthSpec) -> Box<dyn FaultImpl> {
    in_containers(s, s.interface.clone(), |s, ns| {
        let mut s = s.clone();
        (s.netns, s.container, s.labels, s.compose) = (Some(ns.into()), None, None, None);
        Box::new(BandwidthFault::new(&s))
    })
    .unwrap_or_else(|| Box::new(BandwidthFault::new(s)))
}

/// A network fault's health: its verification run again (it only lists
/// qdiscs or the nft table), found missing when that fails.
fn health_of(verified: Result<String, FaultError>) -> super::FaultHealth {
    match verified {
        Ok(evidence) => {
            super::FaultHealth::present(crate::sys::text::escape(&evidence).into_owned())
        }
        Err(e) => super::FaultHealth::missing(crate::sys::text::escape(&e.message).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::tc::tc_time;
    use super::*;
    use crate::units::Duration;

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
}
