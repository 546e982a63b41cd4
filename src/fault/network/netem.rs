//! tc/netem on an interface (`network`), with u32 filters for a traffic filter
//! and the operator's SSH session.

use super::spec::{Direction, NetworkSpec, Protocol, TrafficFilter};
use super::tc::{
    check_tc_interface, classify_root, compare_qdiscs, is_ingress, lock_interface, pct,
    probe_features, qstr, root_ops, tc_time, Feature, RootState, DEFAULT_CLASS, IMPAIRED_CLASS,
    OWNED_LEAF, OWNED_ROOT, TC_GONE,
};
use super::{cmd_undo, execute, note_op, parse_cidr, s, stable_hash, Cidr, Op, SshPeer};
use crate::fault::{FaultContext, FaultError, FaultImpl, PlannedOp, UndoLog};
use crate::sys::net;
use crate::units::Percent;

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

    /// `tc qdisc change` of our netem qdisc to `next`'s parameters, when
    /// only those differ (same device, direction and filter).
    fn change_op(&self, ctx: &FaultContext, next: &crate::experiment::model::Fault) -> Option<Op> {
        let crate::experiment::model::Fault::Network(n) = next else {
            return None;
        };
        let same = |a: &NetworkSpec| {
            (
                a.interface.clone(),
                a.netns.clone(),
                a.direction == Direction::Ingress,
                serde_json::to_value(&a.filter).ok(),
                a.replace_existing_qdisc,
            )
        };
        if same(n) != same(&self.spec) {
            return None;
        }
        let st = self.state_now();
        let dev = self.impaired_dev(ctx);
        let mut a: Vec<String> = vec![s("qdisc"), s("change"), s("dev"), dev.clone()];
        if self.filtered(&st) {
            a.extend(["parent", IMPAIRED_CLASS, "handle", OWNED_LEAF].map(s));
        } else {
            a.extend(["root", "handle", OWNED_ROOT].map(s));
        }
        a.extend(netem_args(n));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        Some(
            Op::new(
                format!("change the netem qdisc on {dev} in place"),
                net::tc(self.ns(), &refs),
            )
            .note("the undo recorded at injection restores the state from before the first level"),
        )
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
        lock_interface(ns, &self.spec.interface, ctx)?;
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
        probe_features(&features, ctx.dry_run)?;
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

    fn change_to(
        &mut self,
        ctx: &FaultContext,
        next: &crate::experiment::model::Fault,
    ) -> Result<bool, FaultError> {
        let Some(op) = self.change_op(ctx, next) else {
            return Ok(false);
        };
        net::run_ok(&op.argv).map_err(|e| FaultError::failed(format!("{}: {e}", op.action)))?;
        if let crate::experiment::model::Fault::Network(n) = next {
            self.spec = n.clone();
        }
        Ok(true)
    }

    fn plan_change(
        &self,
        ctx: &FaultContext,
        next: &crate::experiment::model::Fault,
    ) -> Option<Vec<PlannedOp>> {
        self.change_op(ctx, next).map(|op| vec![op.planned()])
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

    /// The qdisc or nft table and its values are still there (read-only).
    fn health(&mut self, ctx: &FaultContext) -> Option<crate::fault::FaultHealth> {
        Some(super::health_of(self.verify(ctx)))
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
}
