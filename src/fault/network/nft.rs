//! nftables rules in a table owned by the fault (`blackhole`, `partition`,
//! `dns`, `packet_loss`).

use super::spec::{BlackholeSpec, Direction, DnsSpec, DropAction, PacketLossSpec, Protocol};
use super::{
    check_netns, check_privileges, check_tool, cmd_undo, execute, note_op, parse_cidr, s,
    sanitize_run_id, stable_hash, Cidr, Op, SshPeer,
};
use crate::fault::{FaultContext, FaultError, FaultImpl, PlannedOp, UndoLog};
use crate::sys::net;

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

    /// The qdisc or nft table and its values are still there (read-only).
    fn health(&mut self, ctx: &FaultContext) -> Option<crate::fault::FaultHealth> {
        Some(super::health_of(self.verify(ctx)))
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
}
