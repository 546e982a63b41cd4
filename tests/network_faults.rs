//! Network faults for real, as root, in network namespaces the tests create
//! (two namespaces joined by a veth pair; traffic only between them).
//! netem itself is tested in the kernel VM tier (tests/vm_network.rs): this
//! machine's kernel has no sch_netem, which is tested here too.

#[path = "vm/netns.rs"]
mod netns;

use faultline::fault::network::{
    BandwidthSpec, BlackholeSpec, DnsSpec, NetemFault, NetworkSpec, NftFault, PacketLossSpec,
    SshPeer,
};
use faultline::fault::{FaultContext, FaultError, FaultImpl, UndoLog};
use faultline::journal::undo::UndoOp;
use netns::{NsPair, A_IP, B_IP};
use std::time::Duration;

/// Undo records kept in memory, replayed like the runner does.
#[derive(Default)]
struct MemUndo(Vec<UndoOp>);

impl UndoLog for MemUndo {
    fn record(&mut self, _target: &str, op: UndoOp) -> anyhow::Result<()> {
        self.0.push(op);
        Ok(())
    }
}

impl MemUndo {
    fn rollback(&mut self) {
        for op in self.0.drain(..).rev() {
            op.apply()
                .unwrap_or_else(|e| panic!("undo {} failed: {e}", op.manual_command()));
        }
    }
}

/// Rolls back on drop, so a failed assert still cleans up (the namespaces
/// go away anyway, but the rollback path is exercised either way).
struct Injected<'a> {
    fault: Box<dyn FaultImpl>,
    undo: MemUndo,
    ctx: &'a FaultContext,
}

impl<'a> Injected<'a> {
    fn new(mut fault: Box<dyn FaultImpl>, ctx: &'a FaultContext) -> Injected<'a> {
        fault
            .preflight(ctx)
            .unwrap_or_else(|e| panic!("preflight: {e} (exit {})", e.code));
        let mut undo = MemUndo::default();
        let r = fault.inject(ctx, &mut undo);
        let mut inj = Injected { fault, undo, ctx };
        if let Err(e) = r {
            inj.undo.rollback();
            panic!("inject: {e}");
        }
        let evidence = inj
            .fault
            .verify(ctx)
            .unwrap_or_else(|e| panic!("verify: {e}"));
        assert!(!evidence.is_empty());
        inj
    }

    fn rollback(mut self) {
        self.undo.rollback();
        self.fault
            .verify_rollback(self.ctx)
            .unwrap_or_else(|e| panic!("verify_rollback: {e}"));
    }
}

impl Drop for Injected<'_> {
    fn drop(&mut self) {
        for op in self.undo.0.drain(..).rev() {
            let _ = op.apply();
        }
    }
}

fn ctx() -> FaultContext {
    FaultContext {
        run_id: netns::unique("t"),
        ..Default::default()
    }
}

fn need_root() -> bool {
    if !netns::is_root() {
        println!("skipped: needs root");
        return false;
    }
    if !netns::which("nft") {
        println!("skipped: nft is not installed (Debian package nftables)");
        return false;
    }
    true
}

fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
    serde_yaml::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

fn netem_on_host_kernel() -> bool {
    let pair = NsPair::new();
    std::process::Command::new("tc")
        .args([
            "-n", &pair.a, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn packet_loss_30_percent_lands_between_20_and_40_and_rolls_back() {
    if !need_root() {
        return;
    }
    let pair = NsPair::new();
    let before = pair.snapshot();
    let rx = netns::udp_in(&pair.b, B_IP, 0);
    let c = ctx();
    let spec: PacketLossSpec = yaml(&format!("netns: {}\npercent: 30%\n", pair.a));
    let inj = Injected::new(faultline::fault::network::build_packet_loss(&spec), &c);
    let n = 1000;
    let got = netns::udp_delivery(&pair.a, &rx, n);
    let loss = 100.0 * (n - got) as f64 / n as f64;
    assert!(
        (20.0..=40.0).contains(&loss),
        "30% packet loss measured {loss:.1}% over {n} packets"
    );
    inj.rollback();
    assert_eq!(
        pair.snapshot(),
        before,
        "rollback left the namespaces changed"
    );
    let got = netns::udp_delivery(&pair.a, &rx, 200);
    assert!(got >= 198, "after rollback only {got}/200 packets arrived");
}

#[test]
fn blackhole_drop_times_out_and_reject_refuses_at_once() {
    if !need_root() {
        return;
    }
    let pair = NsPair::new();
    let before = pair.snapshot();
    let hit = netns::tcp_server_in(&pair.b, B_IP, 0);
    let other = netns::tcp_server_in(&pair.b, B_IP, 0);
    let (r, _) = netns::tcp_connect_from(&pair.a, hit, None, Duration::from_secs(2));
    r.expect("the server answers before the fault");

    for action in ["drop", "reject"] {
        let c = ctx();
        let spec: BlackholeSpec = yaml(&format!(
            "netns: {}\naction: {action}\npeers: [{B_IP}]\nports: [{}]\n",
            pair.a,
            hit.port()
        ));
        let inj = Injected::new(faultline::fault::network::build_blackhole(&spec, false), &c);
        let (r, took) = netns::tcp_connect_from(&pair.a, hit, None, Duration::from_millis(1500));
        let err = r.expect_err("connect through a blackhole must fail");
        if action == "drop" {
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::TimedOut,
                "drop should time out, got {err}"
            );
        } else {
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::ConnectionRefused,
                "reject should refuse, got {err}"
            );
            assert!(took < Duration::from_millis(500), "reject took {took:?}");
        }
        let (r, _) = netns::tcp_connect_from(&pair.a, other, None, Duration::from_secs(2));
        r.unwrap_or_else(|e| panic!("another port must be untouched by the blackhole: {e}"));
        inj.rollback();
        assert_eq!(pair.snapshot(), before);
        let (r, _) = netns::tcp_connect_from(&pair.a, hit, None, Duration::from_secs(2));
        r.expect("after rollback the port answers again");
    }
}

#[test]
fn partition_cuts_both_directions() {
    if !need_root() {
        return;
    }
    let pair = NsPair::new();
    let before = pair.snapshot();
    let on_b = netns::tcp_server_in(&pair.b, B_IP, 0);
    let on_a = netns::tcp_server_in(&pair.a, A_IP, 0);
    let c = ctx();
    let spec: BlackholeSpec = yaml(&format!("netns: {}\npeers: [10.201.0.0/24]\n", pair.a));
    let inj = Injected::new(faultline::fault::network::build_blackhole(&spec, true), &c);
    let t = Duration::from_millis(800);
    let (r, _) = netns::tcp_connect_from(&pair.a, on_b, None, t);
    assert!(r.is_err(), "a -> b must be cut");
    let (r, _) = netns::tcp_connect_from(&pair.b, on_a, None, t);
    assert!(
        r.is_err(),
        "b -> a must be cut (ingress side of the partition)"
    );
    inj.rollback();
    assert_eq!(pair.snapshot(), before);
    let (r, _) = netns::tcp_connect_from(&pair.b, on_a, None, Duration::from_secs(2));
    r.expect("b -> a after rollback");
}

#[test]
fn port_filter_impairs_only_that_port() {
    if !need_root() {
        return;
    }
    let pair = NsPair::new();
    let hit = netns::udp_in(&pair.b, B_IP, 0);
    let spared = netns::udp_in(&pair.b, B_IP, 0);
    let c = ctx();
    let spec: PacketLossSpec = yaml(&format!(
        "netns: {}\npercent: 100%\nfilter:\n  destination: [{B_IP}]\n  ports: [{}]\n  protocol: udp\n",
        pair.a,
        hit.local_addr().unwrap().port()
    ));
    let inj = Injected::new(faultline::fault::network::build_packet_loss(&spec), &c);
    assert_eq!(
        netns::udp_delivery(&pair.a, &hit, 100),
        0,
        "the filtered port"
    );
    assert!(
        netns::udp_delivery(&pair.a, &spared, 100) >= 98,
        "another port must be untouched"
    );
    inj.rollback();
}

#[test]
fn dns_reject_refuses_queries_to_the_resolver() {
    if !need_root() {
        return;
    }
    let pair = NsPair::new();
    let before = pair.snapshot();
    let resolver = netns::udp_echo_in(&pair.b, B_IP, 53);
    assert!(netns::udp_rtt(&pair.a, resolver, Duration::from_secs(2)).is_some());
    let c = ctx();
    let spec: DnsSpec = yaml(&format!(
        "netns: {}\naction: reject\nresolvers: [{B_IP}]\n",
        pair.a
    ));
    let inj = Injected::new(faultline::fault::network::build_dns(&spec), &c);
    let err = netns::in_netns(&pair.a, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect(resolver).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = s.send(b"query");
        let mut buf = [0u8; 16];
        s.recv(&mut buf).expect_err("the query must fail")
    });
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    inj.rollback();
    assert_eq!(pair.snapshot(), before);
    assert!(netns::udp_rtt(&pair.a, resolver, Duration::from_secs(2)).is_some());
}

#[test]
fn ssh_session_is_never_cut_by_nft_faults() {
    if !need_root() {
        return;
    }
    let pair = NsPair::new();
    // Pretend b:ssh_port is the operator's SSH client and a:local_port the server side.
    let client = netns::tcp_server_in(&pair.b, B_IP, 0);
    let other = netns::tcp_server_in(&pair.b, B_IP, 0);
    let local_port = 40000 + (std::process::id() % 20000) as u16;
    let peer = SshPeer::parse(&format!("{B_IP} {} {A_IP} {local_port}", client.port())).unwrap();
    let c = ctx();
    let spec: PacketLossSpec = yaml(&format!("netns: {}\npercent: 100%\n", pair.a));
    let fault = NftFault::packet_loss(&spec).with_ssh_peer(Some(peer));
    let plan = fault.plan(&c);
    assert!(
        plan.iter().any(|p| p.action.contains("SSH")),
        "the plan must say the SSH session is excluded: {plan:?}"
    );
    let inj = Injected::new(Box::new(fault), &c);
    let (r, _) = netns::tcp_connect_from(&pair.a, client, Some(local_port), Duration::from_secs(3));
    r.unwrap_or_else(|e| panic!("the SSH session's packets must pass: {e}"));
    let (r, _) = netns::tcp_connect_from(&pair.a, other, None, Duration::from_millis(800));
    assert!(r.is_err(), "other traffic must be dropped");
    inj.rollback();
}

#[test]
fn bandwidth_1mbit_is_measured_within_20_percent_and_restores_noqueue() {
    if !need_root() {
        return;
    }
    let pair = NsPair::new();
    let before = pair.snapshot();
    let unlimited = netns::tcp_throughput(&pair.a, &pair.b, B_IP, 1.0);
    assert!(
        unlimited > 20e6,
        "without the fault the veth carries {unlimited} bit/s"
    );
    let c = ctx();
    let spec: BandwidthSpec = yaml(&format!("netns: {}\ninterface: va\nrate: 1mbit\n", pair.a));
    let inj = Injected::new(faultline::fault::network::build_bandwidth(&spec), &c);
    let rate = netns::tcp_throughput(&pair.a, &pair.b, B_IP, 3.0);
    assert!(
        (0.8e6..=1.2e6).contains(&rate),
        "a 1mbit limit measured {:.3} Mbit/s",
        rate / 1e6
    );
    inj.rollback();
    assert_eq!(pair.snapshot(), before, "noqueue must be back on va");
}

#[test]
fn a_users_root_qdisc_is_refused_unless_replace_existing_then_restored_exactly() {
    if !need_root() {
        return;
    }
    let pair = NsPair::new();
    netns::sh(&[
        "tc", "-n", &pair.a, "qdisc", "add", "dev", "va", "root", "handle", "8001:", "tbf", "rate",
        "5mbit", "burst", "16kb", "latency", "20ms",
    ]);
    let before = pair.snapshot();
    let before_json = netns::sh(&["tc", "-n", &pair.a, "-j", "qdisc", "show", "dev", "va"]);
    let c = ctx();
    let spec: BandwidthSpec = yaml(&format!("netns: {}\ninterface: va\nrate: 1mbit\n", pair.a));
    let mut f = faultline::fault::network::build_bandwidth(&spec);
    let e: FaultError = f.preflight(&c).expect_err("a user's qdisc must be refused");
    assert_eq!(e.code, faultline::exit::PRECONDITION, "{e}");
    assert!(e.message.contains("replace_existing_qdisc"), "{e}");
    assert!(e.message.contains("tbf 8001:"), "{e}");

    let spec: BandwidthSpec = yaml(&format!(
        "netns: {}\ninterface: va\nrate: 1mbit\nreplace_existing_qdisc: true\n",
        pair.a
    ));
    let inj = Injected::new(faultline::fault::network::build_bandwidth(&spec), &c);
    let during = netns::sh(&["tc", "-n", &pair.a, "qdisc", "show", "dev", "va"]);
    assert!(
        during.contains("fa17:") && during.contains("1Mbit"),
        "{during}"
    );
    inj.rollback();
    assert_eq!(pair.snapshot(), before, "the user's tbf must come back");
    assert_eq!(
        netns::sh(&["tc", "-n", &pair.a, "-j", "qdisc", "show", "dev", "va"]),
        before_json,
        "handle and options must be identical"
    );
}

#[test]
fn netem_without_sch_netem_fails_preflight_with_69_and_says_what_to_do() {
    if !need_root() {
        return;
    }
    let pair = NsPair::new();
    let before = pair.snapshot();
    let spec: NetworkSpec = yaml(&format!(
        "netns: {}\ninterface: va\ndelay: {{time: 100ms}}\n",
        pair.a
    ));
    let mut f = NetemFault::new(&spec);
    let r = f.preflight(&ctx());
    if netem_on_host_kernel() {
        r.expect("this kernel has netem, so preflight must pass");
        println!("note: this kernel has sch_netem; the missing-netem message was not exercised");
    } else {
        let e = r.expect_err("preflight must fail on a kernel without netem");
        assert_eq!(e.code, faultline::exit::PRECONDITION);
        for want in ["CONFIG_NET_SCH_NETEM", "linux-modules-extra", "packet_loss"] {
            assert!(e.message.contains(want), "missing `{want}` in: {e}");
        }
    }
    assert_eq!(
        pair.snapshot(),
        before,
        "preflight must leave nothing behind"
    );
    let leftovers = netns::sh(&["ip", "netns", "list"]);
    assert!(
        !leftovers.contains(&format!("faultline-probe-{}-", std::process::id())),
        "the probe namespace was not deleted: {leftovers}"
    );
}

#[test]
fn preflight_errors_name_what_to_fix() {
    if !need_root() {
        return;
    }
    let pair = NsPair::new();
    let spec: BandwidthSpec = yaml(&format!(
        "netns: {}\ninterface: nope0\nrate: 1mbit\n",
        pair.a
    ));
    let e = faultline::fault::network::build_bandwidth(&spec)
        .preflight(&ctx())
        .expect_err("missing interface");
    assert_eq!(e.code, faultline::exit::PRECONDITION);
    assert!(
        e.message.contains("nope0") && e.message.contains("va"),
        "{e}"
    );
    let spec: PacketLossSpec = yaml("netns: no-such-ns-faultline\npercent: 5%\n");
    let e = faultline::fault::network::build_packet_loss(&spec)
        .preflight(&ctx())
        .expect_err("missing netns");
    assert_eq!(e.code, faultline::exit::PRECONDITION);
    assert!(e.message.contains("no-such-ns-faultline"), "{e}");
}

#[test]
fn ingress_plan_creates_and_removes_ifb_plumbing_in_the_namespace() {
    // Plan only: no host change, no root needed. The VM tier measures it.
    let spec: NetworkSpec = yaml(
        "netns: app\ninterface: eth0\ndirection: ingress\ndelay: {time: 100ms}\nloss: {percent: 1%}\n",
    );
    let c = FaultContext {
        run_id: "run-1".into(),
        ..Default::default()
    };
    let plan = NetemFault::new(&spec).with_ssh_peer(None).plan(&c);
    let cmds: Vec<String> = plan
        .iter()
        .filter_map(|p| p.command.as_ref().map(|c| c.join(" ")))
        .collect();
    let joined = cmds.join("\n");
    assert!(joined.contains("ip -n app link add flifb"), "{joined}");
    assert!(
        joined.contains("tc -n app qdisc add dev eth0 handle ffff: ingress"),
        "{joined}"
    );
    assert!(
        joined.contains("action mirred egress redirect dev flifb"),
        "{joined}"
    );
    assert!(
        joined.contains("root handle fa17: netem delay 100ms loss random 1%"),
        "{joined}"
    );
    let undos: Vec<&str> = plan.iter().filter_map(|p| p.undo.as_deref()).collect();
    assert!(
        undos
            .iter()
            .any(|u| u.starts_with("ip -n app link del dev flifb")),
        "{undos:?}"
    );
    assert!(
        undos
            .iter()
            .any(|u| u.contains("tc -n app qdisc del dev eth0 handle ffff: ingress")),
        "{undos:?}"
    );
    for p in &plan {
        if let Some(cmd) = &p.command {
            assert!(
                cmd.windows(2).any(|w| w == ["-n", "app"])
                    || cmd[..4] == ["ip", "netns", "exec", "app"],
                "every command must target the namespace: {cmd:?}"
            );
        }
    }
}
