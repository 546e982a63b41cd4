//! Network faults against a stock distribution kernel (which has sch_netem),
//! booted in QEMU (see tests/vm/mod.rs). The build machine's kernel has no
//! netem, so this is where netem delay, loss, filters, ingress and the SSH
//! exclusion are measured for real.
//!
//! How: the host test copies this very test binary into the VM and runs it
//! there with `FAULTLINE_VM_GUEST=1 --exact guest_network_checks`; that test
//! drives the faults through the library (preflight, inject, verify, undo,
//! verify_rollback), measures traffic between two namespaces joined by a veth
//! pair, and prints one `VMTEST` marker per check. On the host,
//! `guest_network_checks` does nothing.

#[path = "vm/faults.rs"]
mod faults;
#[path = "vm/netns.rs"]
mod netns;
#[path = "vm/mod.rs"]
mod vm;

use faultline::fault::network::{NetemFault, NetworkSpec, SshPeer};
use faultline::fault::{FaultContext, FaultImpl};
use faults::Injected;
use netns::{NsPair, A_IP, B_IP};
use std::time::Duration;

/// Kernel modules the network checks need in the guest.
const NET_MODULES: &[&str] = &[
    "veth",
    "sch_netem",
    "sch_htb",
    "sch_tbf",
    "sch_ingress",
    "cls_u32",
    "act_mirred",
    "ifb",
    "nf_tables",
    "nft_numgen",
    "nft_reject_inet",
];

/// `faultline run` in the guest: a delay experiment that holds and rolls
/// back, and a runner SIGKILLed mid-delay whose watchdog removes the qdisc.
const RUNNER_SCRIPT: &str = r#"
ip netns add b
ip link add va type veth peer name vb netns b
ip addr add 10.201.0.1/24 dev va
ip link set va up
ip -n b addr add 10.201.0.2/24 dev vb
ip -n b link set vb up
ip -n b link set lo up
mkdir -p /www && echo hello > /www/index.html
ip netns exec b httpd -p 10.201.0.2:8080 -h /www
export FAULTLINE_STATE_DIR=/tmp/state NO_COLOR=1
has_netem() { tc -n b qdisc show dev vb | grep -q netem; }
oneline() { tail -n 8 "$1" | tr '
' '|'; }

sed 's/DURATION/4s/' /exp/vm-delay.yaml > /tmp/held.yaml
faultline run /tmp/held.yaml --journal /tmp/held.json > /tmp/held.out 2>&1
code=$?
if [ "$code" = 0 ] && ! has_netem && grep -q 'netem fa17:' /tmp/held.json; then
  echo "VMTEST runner_delay_held PASS exit 0, netem verified and removed"
else
  echo "VMTEST runner_delay_held FAIL exit $code, qdisc now: $(tc -n b qdisc show dev vb) | $(oneline /tmp/held.out)"
fi

sed 's/DURATION/60s/' /exp/vm-delay.yaml > /tmp/long.yaml
faultline run /tmp/long.yaml --journal /tmp/long.json > /tmp/long.out 2>&1 &
runner=$!
i=0
while [ $i -lt 300 ] && ! has_netem; do sleep 0.1; i=$((i+1)); done
if ! has_netem; then
  echo "VMTEST watchdog_removes_qdisc FAIL netem never appeared: $(oneline /tmp/long.out)"
else
  sleep 1
  kill -9 $runner
  t=0
  while [ $t -lt 300 ] && has_netem; do sleep 0.1; t=$((t+1)); done
  if has_netem; then
    echo "VMTEST watchdog_removes_qdisc FAIL netem still there 30s after SIGKILL: $(tc -n b qdisc show dev vb)"
  else
    faultline status > /tmp/status.out 2>&1
    echo "VMTEST watchdog_removes_qdisc PASS netem removed within $((t*100))ms of SIGKILL; status exit $?"
  fi
fi

# Ingress delay on a stock kernel where ifb is a module not loaded yet
# (issue 11, item 14): `plan` loads nothing, and a run leaves the link list
# as it found it (the module's default numifbs=2 would add ifb0 and ifb1).
rmmod ifb 2>/dev/null
links() { ip -o link show | sed 's/^[0-9]*: *//; s/[:@].*//' | sort | tr '
' ' '; }
cat > /tmp/ingress.yaml <<'YAML'
title: 100ms of delay on traffic arriving in b
hypothesis: The web server still accepts connections within 1s.
limits:
  max_duration: 2m
steady_state:
  interval: 250ms
  probes:
    - name: web
      tcp: {host: 10.201.0.2, port: 8080}
      timeout: 2s
      expect:
        latency_below: 1s
      before: {samples: 2}
      after: {within: 10s, successes: 2}
method:
  - name: delay requests arriving in b
    fault:
      network:
        netns: b
        interface: vb
        direction: ingress
        delay: {time: 100ms}
    duration: 3s
YAML
before=$(links)
if [ -e /sys/module/ifb ]; then
  echo "VMTEST ifb_plan_changes_nothing FAIL ifb is still loaded after rmmod"
else
  faultline plan /tmp/ingress.yaml > /tmp/iplan.out 2>&1
  code=$?
  if [ -e /sys/module/ifb ] || [ "$(links)" != "$before" ]; then
    echo "VMTEST ifb_plan_changes_nothing FAIL plan exit $code loaded ifb or changed links: $(links)"
  else
    echo "VMTEST ifb_plan_changes_nothing PASS plan exit $code, ifb not loaded, links: $before"
  fi
fi
faultline run /tmp/ingress.yaml --journal /tmp/ingress.json > /tmp/ingress.out 2>&1
code=$?
after=$(links)
if [ "$code" = 0 ] && [ -e /sys/module/ifb ] && [ "$after" = "$before" ]; then
  echo "VMTEST ifb_run_leaves_no_links PASS exit 0, ifb loaded by the run, links as before: $after"
else
  echo "VMTEST ifb_run_leaves_no_links FAIL exit $code, loaded: $([ -e /sys/module/ifb ] && echo yes || echo no), before: $before, after: $after | $(oneline /tmp/ingress.out)"
fi
"#;

/// Every check the guest runs, by marker name.
const GUEST_CHECKS: &[&str] = &[
    "runner_delay_held",
    "watchdog_removes_qdisc",
    "netem_preflight",
    "netem_delay_100ms",
    "netem_loss_30",
    "netem_all_options_verified",
    "netem_port_filter",
    "netem_ingress_ifb",
    "netem_ssh_excluded",
    "packet_loss_nft",
    "ifb_plan_changes_nothing",
    "ifb_run_leaves_no_links",
];

#[test]
fn network_faults_in_a_stock_kernel_vm() {
    let Some(mut vm) = vm::Vm::new() else { return };
    let me = std::env::current_exe().expect("the test binary's path");
    vm.add_binary(&me, "/bin/vmtest")
        .add_binary(env!("CARGO_BIN_EXE_faultline"), "/bin/faultline")
        .add_file(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/network/vm-delay.yaml"
            ),
            "/exp/vm-delay.yaml",
        )
        .add_modules(NET_MODULES);
    let script = format!(
        "FAULTLINE_VM_GUEST=1 /bin/vmtest --exact guest_network_checks --nocapture --test-threads=1\n\
         echo \"VMTEST guest_exit PASS $?\"\n{RUNNER_SCRIPT}"
    );
    let log = vm.run(&script, Duration::from_secs(600));
    for c in GUEST_CHECKS {
        let detail = log.assert_pass(c);
        println!("{c}: {detail}");
    }
    log.assert_all_pass();
}

#[test]
fn vm_log_flags_missing_and_failed_markers() {
    let log = vm::VmLog::parse(
        "noise\nVMTEST a PASS 12 ms\nVMTEST b FAIL exit 2\nVMHARNESS script finished\n".into(),
        false,
        Duration::from_secs(1),
    );
    assert_eq!(log.assert_pass("a"), "12 ms");
    assert!(std::panic::catch_unwind(|| log.assert_pass("b")).is_err());
    assert!(std::panic::catch_unwind(|| log.assert_pass("c")).is_err());
    assert!(std::panic::catch_unwind(|| log.assert_all_pass()).is_err());
    let unfinished = vm::VmLog::parse("VMTEST a PASS\n".into(), true, Duration::from_secs(9));
    assert!(std::panic::catch_unwind(|| unfinished.assert_all_pass()).is_err());
}

// ---------------------------------------------------------------------------
// Guest side.

/// Runs inside the VM only (FAULTLINE_VM_GUEST=1); a no-op on the host.
#[test]
fn guest_network_checks() {
    if std::env::var("FAULTLINE_VM_GUEST").as_deref() != Ok("1") {
        println!(
            "guest_network_checks runs inside the test VM (network_faults_in_a_stock_kernel_vm)"
        );
        return;
    }
    check("netem_preflight", netem_preflight);
    check("netem_delay_100ms", netem_delay);
    check("netem_loss_30", netem_loss);
    check("netem_all_options_verified", netem_all_options);
    check("netem_port_filter", netem_port_filter);
    check("netem_ingress_ifb", netem_ingress);
    check("netem_ssh_excluded", netem_ssh_excluded);
    check("packet_loss_nft", packet_loss_nft);
}

fn check(name: &str, f: fn() -> String) {
    let r = std::panic::catch_unwind(f);
    match r {
        Ok(detail) => println!("VMTEST {name} PASS {detail}"),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            println!("VMTEST {name} FAIL {}", msg.replace('\n', " | "));
        }
    }
}

fn ctx() -> FaultContext {
    FaultContext {
        run_id: netns::unique("vm"),
        ..Default::default()
    }
}

fn spec(yaml: &str) -> NetworkSpec {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}: {yaml}"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn netem_preflight() -> String {
    let pair = NsPair::new();
    let mut f = NetemFault::new(&spec(&format!(
        "netns: {}\ninterface: va\ndelay: {{time: 100ms}}\n",
        pair.a
    )));
    f.preflight(&ctx())
        .unwrap_or_else(|e| panic!("preflight on a kernel with netem: {e}"));
    "preflight passes with sch_netem".into()
}

fn netem_delay() -> String {
    let pair = NsPair::new();
    let before_state = pair.snapshot();
    let echo = netns::udp_echo_in(&pair.b, B_IP, 0);
    let before = netns::median_rtt(&pair.a, echo, 9).expect("echo before the fault");
    let c = ctx();
    let inj = Injected::new(
        Box::new(NetemFault::new(&spec(&format!(
            "netns: {}\ninterface: va\ndelay: {{time: 100ms}}\n",
            pair.a
        )))),
        &c,
    );
    let during = netns::median_rtt(&pair.a, echo, 9).expect("echo during the fault");
    inj.rollback();
    let after = netns::median_rtt(&pair.a, echo, 9).expect("echo after rollback");
    let added = ms(during) - ms(before);
    assert!(
        (95.0..=115.0).contains(&added),
        "added RTT {added:.1} ms (before {:.1} ms, during {:.1} ms)",
        ms(before),
        ms(during)
    );
    assert!(
        ms(after) < ms(before) + 20.0,
        "after rollback RTT is {:.1} ms",
        ms(after)
    );
    assert_eq!(
        pair.snapshot(),
        before_state,
        "rollback must restore the qdiscs"
    );
    format!(
        "added {added:.1} ms (rtt {:.1} -> {:.1} -> {:.1} ms)",
        ms(before),
        ms(during),
        ms(after)
    )
}

fn netem_loss() -> String {
    let pair = NsPair::new();
    let before_state = pair.snapshot();
    let rx = netns::udp_in(&pair.b, B_IP, 0);
    let c = ctx();
    let inj = Injected::new(
        Box::new(NetemFault::new(&spec(&format!(
            "netns: {}\ninterface: va\nloss: {{percent: 30%}}\n",
            pair.a
        )))),
        &c,
    );
    let n = 600;
    let got = netns::udp_delivery(&pair.a, &rx, n);
    inj.rollback();
    let loss = 100.0 * (n - got) as f64 / n as f64;
    assert!(
        (20.0..=40.0).contains(&loss),
        "30% netem loss measured {loss:.1}%"
    );
    assert_eq!(pair.snapshot(), before_state);
    format!("measured {loss:.1}% over {n} packets")
}

fn netem_all_options() -> String {
    let pair = NsPair::new();
    let before_state = pair.snapshot();
    let c = ctx();
    let mut inj = Injected::new(
        Box::new(NetemFault::new(&spec(&format!(
            "netns: {}\ninterface: va\n\
             delay: {{time: 20ms, jitter: 5ms, correlation: 25%, distribution: normal}}\n\
             loss: {{gilbert_elliott: {{p: 1%, r: 30%}}}}\n\
             corrupt: {{percent: 1%}}\nduplicate: {{percent: 1%, correlation: 10%}}\n\
             reorder: {{percent: 5%, gap: 3}}\nrate: 10mbit\n",
            pair.a
        )))),
        &c,
    );
    let evidence = inj.fault.verify(&c).expect("verify");
    inj.rollback();
    assert_eq!(pair.snapshot(), before_state);
    evidence
}

fn netem_port_filter() -> String {
    let pair = NsPair::new();
    let before_state = pair.snapshot();
    let slow = netns::udp_echo_in(&pair.b, B_IP, 0);
    let fast = netns::udp_echo_in(&pair.b, B_IP, 0);
    let c = ctx();
    let inj = Injected::new(
        Box::new(NetemFault::new(&spec(&format!(
            "netns: {}\ninterface: va\ndelay: {{time: 100ms}}\n\
             filter: {{destination: [{B_IP}], ports: [{}], protocol: udp}}\n",
            pair.a,
            slow.port()
        )))),
        &c,
    );
    let s = netns::median_rtt(&pair.a, slow, 7).expect("filtered port");
    let f = netns::median_rtt(&pair.a, fast, 7).expect("other port");
    inj.rollback();
    assert!(ms(s) >= 95.0, "the filtered port's RTT is {:.1} ms", ms(s));
    assert!(ms(f) < 50.0, "another port's RTT is {:.1} ms", ms(f));
    assert_eq!(pair.snapshot(), before_state);
    format!("filtered port {:.1} ms, other port {:.1} ms", ms(s), ms(f))
}

fn netem_ingress() -> String {
    let pair = NsPair::new();
    let before_state = pair.snapshot();
    let echo = netns::udp_echo_in(&pair.b, B_IP, 0);
    let before = netns::median_rtt(&pair.a, echo, 7).expect("echo before");
    let c = ctx();
    let inj = Injected::new(
        Box::new(NetemFault::new(&spec(&format!(
            "netns: {}\ninterface: va\ndirection: ingress\ndelay: {{time: 100ms}}\n",
            pair.a
        )))),
        &c,
    );
    let links = netns::sh(&["ip", "-n", &pair.a, "-o", "link", "show"]);
    assert!(
        links.contains("flifb"),
        "no IFB device during the fault: {links}"
    );
    let during = netns::median_rtt(&pair.a, echo, 7).expect("echo during");
    inj.rollback();
    let links = netns::sh(&["ip", "-n", &pair.a, "-o", "link", "show"]);
    assert!(
        !links.contains("flifb"),
        "the IFB device outlived rollback: {links}"
    );
    assert_eq!(pair.snapshot(), before_state);
    let added = ms(during) - ms(before);
    assert!(
        (95.0..=115.0).contains(&added),
        "ingress delay added {added:.1} ms"
    );
    format!("ingress via IFB added {added:.1} ms")
}

fn netem_ssh_excluded() -> String {
    let pair = NsPair::new();
    let before_state = pair.snapshot();
    // b:client_port plays the operator's SSH client, a:local_port the sshd.
    let client = netns::tcp_server_in(&pair.b, B_IP, 0);
    let other = netns::tcp_server_in(&pair.b, B_IP, 0);
    let local_port = 40022;
    let peer = SshPeer::parse(&format!("{B_IP} {} {A_IP} {local_port}", client.port())).unwrap();
    let c = ctx();
    let fault = NetemFault::new(&spec(&format!(
        "netns: {}\ninterface: va\ndelay: {{time: 200ms}}\n",
        pair.a
    )))
    .with_ssh_peer(Some(peer));
    let plan = fault.plan(&c);
    assert!(
        plan.iter().any(|p| p.action.contains("SSH")),
        "the plan must say the SSH session is excluded: {plan:?}"
    );
    let inj = Injected::new(Box::new(fault), &c);
    let t = Duration::from_secs(5);
    let (r, ssh_took) = netns::tcp_connect_from(&pair.a, client, Some(local_port), t);
    r.expect("the SSH session's connection");
    let (r, other_took) = netns::tcp_connect_from(&pair.a, other, None, t);
    r.expect("another connection");
    inj.rollback();
    assert_eq!(pair.snapshot(), before_state);
    assert!(
        ms(ssh_took) < 100.0,
        "the SSH session was delayed: {ssh_took:?}"
    );
    assert!(
        ms(other_took) >= 190.0,
        "other traffic was not delayed: {other_took:?}"
    );
    format!(
        "ssh connect {:.1} ms, other connect {:.1} ms",
        ms(ssh_took),
        ms(other_took)
    )
}

fn packet_loss_nft() -> String {
    let pair = NsPair::new();
    let before_state = pair.snapshot();
    let rx = netns::udp_in(&pair.b, B_IP, 0);
    let c = ctx();
    let s: faultline::fault::network::PacketLossSpec =
        serde_yaml::from_str(&format!("netns: {}\npercent: 30%\n", pair.a)).unwrap();
    let inj = Injected::new(faultline::fault::network::build_packet_loss(&s), &c);
    let n = 600;
    let got = netns::udp_delivery(&pair.a, &rx, n);
    inj.rollback();
    assert_eq!(pair.snapshot(), before_state);
    let loss = 100.0 * (n - got) as f64 / n as f64;
    assert!(
        (20.0..=40.0).contains(&loss),
        "nft loss measured {loss:.1}%"
    );
    format!("measured {loss:.1}% over {n} packets")
}
