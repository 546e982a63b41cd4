//! tc and qdisc handling shared by the tc faults (`network`, `bandwidth`):
//! who owns the root qdisc, how it is saved and restored, kernel feature probes.

use super::{check_netns, check_privileges, check_tool, cmd_undo, s, Op};
use crate::fault::FaultError;
use crate::sys::net;
use crate::units::{Duration, Percent};

/// Handle of the root qdisc faultline owns.
pub const OWNED_ROOT: &str = "fa17:";
/// Handle of the netem qdisc under faultline's htb root (filtered layout).
pub const OWNED_LEAF: &str = "fa18:";
pub(super) const DEFAULT_CLASS: &str = "fa17:1";
pub(super) const IMPAIRED_CLASS: &str = "fa17:2";
/// Root qdisc kinds the kernel attaches by itself (with handle `0:`).
pub(super) const KERNEL_DEFAULT_KINDS: [&str; 5] =
    ["noqueue", "pfifo_fast", "fq_codel", "mq", "fq"];
/// Kinds whose options faultline can save and re-create exactly.
pub(super) const RESTORABLE_KINDS: [&str; 8] = [
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
pub(super) const TC_GONE: [&str; 4] = [
    "Cannot find",
    "No such file",
    "Invalid handle",
    "handle of zero",
];

/// tc's time syntax (`100ms`, `1500us`).
pub(super) fn tc_time(d: Duration) -> String {
    let us = d.std().as_micros();
    if us.is_multiple_of(1000) {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

pub(super) fn pct(p: Percent) -> String {
    format!("{}%", p.0)
}

/// What every tc fault needs: tc and ip, CAP_NET_ADMIN, the namespace and
/// the interface.
/// Takes the host-wide lock on an interface (a plan only checks it): one
/// run at a time changes the qdiscs of an interface, whatever its state dir.
pub(super) fn lock_interface(
    netns: Option<&str>,
    dev: &str,
    ctx: &crate::fault::FaultContext,
) -> Result<(), FaultError> {
    let holder = format!(
        "faultline run {} (runner pid {})",
        ctx.run_id,
        std::process::id()
    );
    let r = crate::sys::hostlock::Resource::interface(netns, dev);
    crate::sys::hostlock::hold(&r, &holder, ctx.dry_run).map_err(FaultError::precondition)
}

pub(super) fn check_tc_interface(netns: Option<&str>, dev: &str) -> Result<(), FaultError> {
    check_tool("tc", "iproute2")?;
    check_tool("ip", "iproute2")?;
    check_privileges()?;
    check_netns(netns)?;
    check_link(netns, dev)
}

pub(super) fn check_link(netns: Option<&str>, dev: &str) -> Result<(), FaultError> {
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
pub(super) enum Feature {
    Netem,
    Tbf,
    HtbU32,
    IfbIngressMirred,
}

/// Whether using an IFB device could load the ifb module now: the kernel
/// loads modules and ifb is not loaded yet (built in, it has no effect).
fn ifb_may_load() -> bool {
    std::path::Path::new("/proc/modules").exists()
        && !std::path::Path::new("/sys/module/ifb").exists()
}

/// The host's IFB links (in faultline's own network namespace).
fn host_ifb_links() -> Vec<String> {
    net::run_ok(&net::ip(None, &["-o", "link", "show", "type", "ifb"]))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

/// Loads the ifb module, if it is not loaded yet, without the two links its
/// default `numifbs=2` creates (`ifb0`, `ifb1`, which would stay after the
/// run): `modprobe ifb numifbs=0`. If the module was loaded some other way
/// (by the kernel, when faultline added its own IFB device), the `ifbN`
/// links that appeared then and were not there before are deleted.
/// A plan (`dry_run`) loads nothing: it changes nothing on the host.
pub(super) fn load_ifb_module(dry_run: bool) -> IfbGuard {
    if !ifb_may_load() || dry_run {
        return IfbGuard { before: None };
    }
    let before = host_ifb_links();
    if let Some(modprobe) = net::find_tool("modprobe") {
        let _ = net::run_ok(&[
            modprobe.display().to_string(),
            "ifb".into(),
            "numifbs=0".into(),
        ]);
    }
    IfbGuard {
        before: Some(before),
    }
}

/// Removes, when dropped, the `ifbN` links the ifb module created by itself.
pub(super) struct IfbGuard {
    before: Option<Vec<String>>,
}

impl Drop for IfbGuard {
    fn drop(&mut self) {
        let Some(before) = &self.before else { return };
        for name in host_ifb_links() {
            let by_module = name
                .strip_prefix("ifb")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if by_module && !before.contains(&name) {
                let _ = net::run_ok(&net::ip(None, &["link", "del", "dev", &name]));
            }
        }
    }
}

/// Tries each feature in a throwaway network namespace (the only reliable
/// test: modules may be built in, loadable or missing). A plan does not try
/// the IFB redirect when the ifb module is not loaded: that would load it.
pub(super) fn probe_features(features: &[Feature], dry_run: bool) -> Result<(), FaultError> {
    let ifb_unloaded = ifb_may_load();
    let features: Vec<Feature> = features
        .iter()
        .copied()
        .filter(|f| !(dry_run && ifb_unloaded && *f == Feature::IfbIngressMirred))
        .collect();
    let features = &features[..];
    if features.is_empty() {
        return Ok(());
    }
    let _ifb = features
        .contains(&Feature::IfbIngressMirred)
        .then(|| load_ifb_module(dry_run));
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
pub(super) fn normalize_qdiscs(
    list: &[serde_json::Value],
    keep_handles: bool,
) -> Vec<serde_json::Value> {
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

pub(super) fn qstr<'a>(q: &'a serde_json::Value, key: &str) -> &'a str {
    q.get(key).and_then(|v| v.as_str()).unwrap_or("")
}

pub(super) fn is_root(q: &serde_json::Value) -> bool {
    q.get("root").and_then(|v| v.as_bool()).unwrap_or(false)
}

pub(super) fn is_ingress(q: &serde_json::Value) -> bool {
    matches!(qstr(q, "kind"), "ingress" | "clsact")
}

/// What sits at the root of a device before the fault, and how it comes back.
#[derive(Clone, Debug)]
pub(super) enum RootState {
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
pub(super) fn classify_root(
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
pub(super) fn restore_argv(
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
pub(super) fn exact_restore(
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
        && {
            let _ifb = load_ifb_module(false);
            p.try_ip(&["link", "add", "flprobe0", "type", "ifb"])
                .is_err()
        }
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
pub(super) fn root_ops(
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

/// Checks a device's qdiscs after rollback against the snapshot before.
pub(super) fn compare_qdiscs(
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

#[cfg(test)]
mod tests {
    use super::*;

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
