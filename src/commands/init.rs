//! `faultline init`: a commented starting experiment, from flags or by asking
//! on a terminal. The text is checked with the same loader as `validate`
//! before it is written, so `init` never writes a file `run` would refuse.

use crate::cli::InitArgs;
use crate::exit;
use crate::experiment::model::FAULT_KINDS;
use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write};

/// What the user chose.
#[derive(Clone, Debug, Default)]
pub struct Choices {
    pub title: Option<String>,
    pub probes: Vec<String>,
    pub fault: String,
    pub target: Option<String>,
    pub interface: Option<String>,
    pub netns: Option<String>,
    pub path: Option<String>,
    pub device: Option<String>,
    pub duration: String,
}

pub fn run(args: &InitArgs) -> i32 {
    let interactive = args.fault.is_none()
        && args.probe.is_empty()
        && std::io::stdin().is_terminal()
        && std::env::var_os("CI").is_none_or(|v| v.is_empty());
    let choices = if interactive {
        match ask(args) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("faultline: {e}");
                return exit::INVALID;
            }
        }
    } else {
        let Some(fault) = args.fault.clone() else {
            eprintln!(
                "faultline: give --fault KIND and at least one --probe URL (or run `faultline init` on a terminal to be asked); kinds: {}",
                FAULT_KINDS.join(", ")
            );
            return exit::INVALID;
        };
        Choices {
            title: args.title.clone(),
            probes: args.probe.clone(),
            fault,
            target: args.target.clone(),
            interface: args.interface.clone(),
            netns: args.netns.clone(),
            path: args.path.clone(),
            device: args.device.clone(),
            duration: args.duration.clone(),
        }
    };
    let text = match render(&choices) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("faultline: {}", crate::sys::text::escape(&e));
            return exit::INVALID;
        }
    };
    // Never write what `validate` would refuse.
    if let Err(problems) = crate::experiment::load_bytes("(init)", text.as_bytes()) {
        for p in problems {
            eprintln!("faultline: {}", crate::sys::text::escape(&p.to_string()));
        }
        eprintln!("faultline: the values given do not make a valid experiment; fix them and run init again");
        return exit::INVALID;
    }
    match &args.output {
        None => {
            print!("{text}");
            exit::HELD
        }
        Some(path) => {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true);
            if args.force {
                opts.create(true).truncate(true);
            } else {
                opts.create_new(true);
            }
            let res = opts
                .open(path)
                .and_then(|mut f| f.write_all(text.as_bytes()));
            match res {
                Ok(()) => {
                    eprintln!(
                        "wrote {}; next: `faultline plan {0}`, then `faultline run {0}`",
                        crate::sys::text::escape(&path.display().to_string())
                    );
                    exit::HELD
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    eprintln!(
                        "faultline: {} exists; pass --force to overwrite it",
                        crate::sys::text::escape(&path.display().to_string())
                    );
                    exit::INVALID
                }
                Err(e) => {
                    eprintln!(
                        "faultline: cannot write {}: {e}",
                        crate::sys::text::escape(&path.display().to_string())
                    );
                    exit::INVALID
                }
            }
        }
    }
}

/// Asks on the terminal, one question per line, with defaults.
fn ask(args: &InitArgs) -> Result<Choices, String> {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut q = |question: &str, default: &str| -> Result<String, String> {
        if default.is_empty() {
            eprint!("{question}: ");
        } else {
            eprint!("{question} [{default}]: ");
        }
        let _ = std::io::stderr().flush();
        match lines.next() {
            Some(Ok(l)) if !l.trim().is_empty() => Ok(l.trim().to_string()),
            Some(Ok(_)) => Ok(default.to_string()),
            _ => Err("no answer (end of input)".into()),
        }
    };
    let title = q("Title", "My first experiment")?;
    let probe = q(
        "Steady state: a URL to check (http://HOST:PORT/PATH or tcp://HOST:PORT)",
        "http://127.0.0.1:8080/",
    )?;
    eprintln!("Fault kinds: {}", FAULT_KINDS.join(", "));
    let fault = q("Fault", "process_pause")?;
    let mut c = Choices {
        title: Some(title),
        probes: vec![probe],
        fault,
        duration: args.duration.clone(),
        ..Choices::default()
    };
    match needs(&c.fault) {
        Need::Target => {
            c.target = Some(q(
                "Target (name=NAME, pid=PID, pidfile=PATH, cmdline=REGEX, cgroup=PATH, systemd_unit=UNIT; `faultline targets` lists them)",
                "",
            )?)
        }
        Need::Interface => {
            c.interface = Some(q("Interface (`faultline targets interfaces` lists them)", "")?);
            let ns = q("Network namespace (empty: the host's)", "-")?;
            c.netns = (ns != "-").then_some(ns);
        }
        Need::Path => c.path = Some(q("Path", if c.fault == "disk_fill" { "/tmp" } else { "" })?),
        Need::Device => {
            c.target = Some(q("Target (name=NAME, pid=PID, ...)", "")?);
            c.device = Some(q("Block device (MAJOR:MINOR or /dev/NAME)", "")?);
        }
        Need::Nothing => {}
    }
    c.duration = q("How long the fault lasts", &c.duration)?;
    Ok(c)
}

enum Need {
    Target,
    Interface,
    Path,
    Device,
    Nothing,
}

fn needs(kind: &str) -> Need {
    match kind {
        "process_kill" | "process_pause" | "cpu_limit" | "memory_limit" | "syscall_error" => {
            Need::Target
        }
        "io_limit" => Need::Device,
        "network" | "bandwidth" => Need::Interface,
        "disk_fill" | "file_corrupt" => Need::Path,
        _ => Need::Nothing,
    }
}

/// A YAML double-quoted scalar (a JSON string is one).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// `name=nginx` -> `{name: "nginx"}`.
fn target(spec: Option<&str>, kind: &str) -> Result<String, String> {
    const SELECTORS: [&str; 8] = [
        "name",
        "pid",
        "pidfile",
        "cmdline",
        "children_of",
        "cgroup",
        "systemd_unit",
        "setup",
    ];
    let Some(spec) = spec else {
        return Err(format!(
            "{kind} needs --target SELECTOR=VALUE (e.g. --target name=nginx); `faultline targets` lists what is on this host"
        ));
    };
    let Some((sel, value)) = spec.split_once('=') else {
        return Err(format!(
            "--target `{spec}`: write SELECTOR=VALUE, e.g. name=nginx; selectors: {}",
            SELECTORS.join(", ")
        ));
    };
    let sel = sel.trim();
    if !SELECTORS.contains(&sel) {
        return Err(format!(
            "--target: unknown selector `{sel}`; use one of {}",
            SELECTORS.join(", ")
        ));
    }
    if matches!(sel, "pid" | "children_of") {
        let n: i32 = value
            .trim()
            .parse()
            .map_err(|_| format!("--target {sel}=`{value}`: a process id is a number"))?;
        return Ok(format!("{{{sel}: {n}}}"));
    }
    Ok(format!("{{{sel}: {}}}", q(value)))
}

/// One probe from a URL: http(s):// -> http, tcp://HOST:PORT -> tcp.
fn probe(url: &str, n: usize, out: &mut String) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        let _ = write!(
            out,
            "    - name: {}\n      http:\n        url: {}\n      timeout: 2s\n      expect:\n        status: 200\n        latency_below: 500ms\n      # During the fault, this share of samples must pass (default 100%):\n      # during: {{min_success: 90%}}\n      after:\n        within: 30s\n",
            q(&format!("probe {n}")),
            q(url)
        );
        return Ok(());
    }
    if let Some(rest) = url.strip_prefix("tcp://") {
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("--probe `{url}`: write tcp://HOST:PORT"))?;
        let port: u16 = port
            .trim_end_matches('/')
            .parse()
            .map_err(|_| format!("--probe `{url}`: the port must be a number 1-65535"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let _ = write!(
            out,
            "    - name: {}\n      tcp: {{host: {}, port: {port}}}\n      timeout: 1s\n      after:\n        within: 30s\n",
            q(&format!("probe {n}")),
            q(host)
        );
        return Ok(());
    }
    Err(format!(
        "--probe `{url}`: give an http://, https:// or tcp://HOST:PORT address"
    ))
}

/// The probe's host and port, for network faults aimed at it.
fn probe_peer(url: &str) -> Option<(String, u16)> {
    let rest = url
        .strip_prefix("http://")
        .map(|r| (r, 80))
        .or_else(|| url.strip_prefix("https://").map(|r| (r, 443)))
        .or_else(|| url.strip_prefix("tcp://").map(|r| (r, 0)))?;
    let (hostport, default_port) = rest;
    let hostport = hostport.split('/').next()?;
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => (h.to_string(), p.parse().ok()?),
        _ => (hostport.to_string(), default_port),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    host.parse::<std::net::IpAddr>().ok()?;
    Some((host, port))
}

pub fn render(c: &Choices) -> Result<String, String> {
    if !FAULT_KINDS.contains(&c.fault.as_str()) {
        let hint = FAULT_KINDS
            .iter()
            .max_by(|a, b| {
                strsim::jaro_winkler(a, &c.fault).total_cmp(&strsim::jaro_winkler(b, &c.fault))
            })
            .copied()
            .unwrap_or("process_pause");
        return Err(format!(
            "--fault `{}` is not a fault kind (did you mean `{hint}`?); kinds: {}",
            c.fault,
            FAULT_KINDS.join(", ")
        ));
    }
    if c.probes.is_empty() {
        return Err(
            "give at least one --probe URL (http://HOST:PORT/PATH or tcp://HOST:PORT): the steady state it checks is the hypothesis".into(),
        );
    }
    c.duration
        .parse::<crate::units::Duration>()
        .map_err(|e| format!("--duration `{}`: {e}", c.duration))?;
    let title = c
        .title
        .clone()
        .unwrap_or_else(|| format!("{} against {}", c.fault, c.probes[0]));
    let mut y = String::new();
    let _ = write!(
        y,
        "# Written by `faultline init`. Check it with `faultline validate FILE`,\n\
         # see exactly what it will do with `faultline plan FILE`, then run it.\n\
         # Every field: docs/experiment-format.md. For completion in an editor, run\n\
         # `faultline schema > faultline.schema.json` and start this file with\n\
         # `# yaml-language-server: $schema=./faultline.schema.json`.\n\
         title: {}\n\
         hypothesis: {}\n\
         limits:\n  # The whole run may never take longer than this.\n  max_duration: 5m\n\n\
         # The steady state: sampled before, during and after the fault.\n\
         steady_state:\n  interval: 500ms\n  probes:\n",
        q(&title),
        q(&format!(
            "The service stays healthy while {} is in effect, and recovers within 30 seconds.",
            c.fault
        ))
    );
    for (i, p) in c.probes.iter().enumerate() {
        probe(p, i + 1, &mut y)?;
    }
    y.push_str(
        "\n# Stop the fault early (and roll back) when this happens.\nabort:\n  - probe: \"probe 1\"\n    consecutive_failures: 10\n",
    );
    let _ = write!(
        y,
        "\nmethod:\n  - name: {}\n    fault:\n      {}:\n",
        q(&c.fault),
        c.fault
    );
    let ind = "        ";
    let peer = probe_peer(&c.probes[0]);
    match c.fault.as_str() {
        "process_kill" => {
            let _ = write!(
                y,
                "{ind}target: {}\n{ind}signal: SIGKILL\n{ind}# Kill again every 10 s (a crash loop):\n{ind}# every: 10s\n{ind}# The run fails unless the process is back within:\n{ind}# expect_restart_within: 10s\n",
                target(c.target.as_deref(), &c.fault)?
            );
        }
        "process_pause" => {
            let _ = writeln!(y, "{ind}target: {}", target(c.target.as_deref(), &c.fault)?);
        }
        "cpu_limit" => {
            let _ = write!(
                y,
                "{ind}target: {}\n{ind}# CPUs the targets may use together:\n{ind}cpus: 0.2\n",
                target(c.target.as_deref(), &c.fault)?
            );
        }
        "memory_limit" => {
            let _ = write!(
                y,
                "{ind}target: {}\n{ind}limit: 64MiB\n",
                target(c.target.as_deref(), &c.fault)?
            );
        }
        "io_limit" => {
            let dev = c
                .device
                .as_deref()
                .ok_or("io_limit needs --device (MAJOR:MINOR or /dev/NAME, e.g. /dev/vda)")?;
            let _ = write!(
                y,
                "{ind}target: {}\n{ind}device: {}\n{ind}write_bytes_per_sec: 1MiB\n",
                target(c.target.as_deref(), &c.fault)?,
                q(dev)
            );
        }
        "network" | "bandwidth" => {
            let iface = c.interface.as_deref().ok_or(format!(
                "{} needs --interface (`faultline targets interfaces` lists them); a network namespace with --netns",
                c.fault
            ))?;
            let _ = writeln!(y, "{ind}interface: {}", q(iface));
            if let Some(ns) = &c.netns {
                let _ = writeln!(y, "{ind}netns: {}", q(ns));
            }
            if c.fault == "network" {
                let _ = write!(
                    y,
                    "{ind}delay: {{time: 100ms, jitter: 20ms}}\n{ind}# loss: {{percent: 5%}}\n"
                );
            } else {
                let _ = writeln!(y, "{ind}rate: 1mbit");
            }
        }
        "blackhole" | "partition" => {
            let (host, port) = peer.ok_or(format!(
                "{} cuts traffic to peers: give the first --probe as an address with an IP (http://10.0.0.5:8080/), or write `peers:` yourself",
                c.fault
            ))?;
            if let Some(ns) = &c.netns {
                let _ = writeln!(y, "{ind}netns: {}", q(ns));
            }
            let _ = writeln!(y, "{ind}peers: [{}]", q(&host));
            if c.fault == "blackhole" && port != 0 {
                let _ = writeln!(y, "{ind}ports: [{port}]");
            }
        }
        "dns" => {
            if let Some(ns) = &c.netns {
                let _ = writeln!(y, "{ind}netns: {}", q(ns));
            }
            let _ = writeln!(y, "{ind}action: drop");
        }
        "packet_loss" => {
            if let Some(ns) = &c.netns {
                let _ = writeln!(y, "{ind}netns: {}", q(ns));
            }
            let _ = writeln!(y, "{ind}percent: 10%");
        }
        "cpu_stress" => {
            let _ = write!(y, "{ind}workers: 1\n{ind}load: 80%\n");
        }
        "memory_stress" => {
            let _ = write!(
                y,
                "{ind}# A share of the memory available now:\n{ind}percent: 30%\n"
            );
        }
        "disk_fill" => {
            let path = c.path.as_deref().unwrap_or("/tmp");
            let _ = write!(y, "{ind}path: {}\n{ind}fill_to: 90%\n", q(path));
        }
        "file_corrupt" => {
            let path = c
                .path
                .as_deref()
                .ok_or("file_corrupt needs --path (a file or a glob)")?;
            let _ = write!(
                y,
                "{ind}path: {}\n{ind}# flip_bits, zero, random, truncate or delete; restored byte-exact on rollback\n{ind}mode: flip_bits\n{ind}bits: 8\n",
                q(path)
            );
        }
        "syscall_error" => {
            let _ = write!(
                y,
                "{ind}target: {}\n{ind}# System calls to fail, and with what (strace --inject; needs root and strace):\n{ind}syscalls: [fsync, fdatasync]\n{ind}errno: EIO\n{ind}# Every 4th matching call fails:\n{ind}percent: 25%\n",
                target(c.target.as_deref(), &c.fault)?
            );
        }
        other => return Err(format!("init has no template for `{other}` yet")),
    }
    let _ = writeln!(y, "    duration: {}", c.duration);
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choices(kind: &str) -> Choices {
        Choices {
            title: None,
            probes: vec!["http://127.0.0.1:8080/health".into()],
            fault: kind.into(),
            target: Some("name=nginx".into()),
            interface: Some("eth0".into()),
            netns: Some("app".into()),
            path: Some("/var/lib/app/*.db".into()),
            device: Some("/dev/vda".into()),
            duration: "30s".into(),
        }
    }

    #[test]
    fn every_fault_kind_gives_a_valid_experiment() {
        for kind in FAULT_KINDS {
            let text = render(&choices(kind)).unwrap_or_else(|e| panic!("{kind}: {e}"));
            if let Err(p) = crate::experiment::load_bytes("t.yaml", text.as_bytes()) {
                panic!("{kind}: {p:?}\n{text}");
            }
        }
    }

    #[test]
    fn hostile_values_stay_inside_their_strings() {
        let mut c = choices("process_pause");
        c.title = Some("x\"\nmethod: []\n#".into());
        c.target = Some("name=a\" }\nb".into());
        let text = render(&c).unwrap();
        let loaded = crate::experiment::load_bytes("t.yaml", text.as_bytes());
        // Either valid with the title kept whole, or refused: never a changed plan.
        if let Ok(l) = loaded {
            assert_eq!(l.experiment.title, "x\"\nmethod: []\n#");
            assert_eq!(l.experiment.method.len(), 1);
        }
    }

    #[test]
    fn mistakes_say_what_to_fix() {
        let mut c = choices("proces_kill");
        assert!(render(&c)
            .unwrap_err()
            .contains("did you mean `process_kill`"));
        c.fault = "process_kill".into();
        c.target = Some("nginx".into());
        assert!(render(&c).unwrap_err().contains("SELECTOR=VALUE"));
        c.target = Some("pid=abc".into());
        assert!(render(&c).unwrap_err().contains("a process id is a number"));
        c.target = None;
        assert!(render(&c).unwrap_err().contains("--target"));
        c.probes = vec!["ftp://x".into()];
        c.target = Some("pid=1".into());
        assert!(render(&c).unwrap_err().contains("http://"));
    }

    #[test]
    fn network_faults_aim_at_the_probe() {
        assert_eq!(
            probe_peer("http://10.0.0.5:8080/x"),
            Some(("10.0.0.5".into(), 8080))
        );
        assert_eq!(
            probe_peer("https://10.0.0.5/"),
            Some(("10.0.0.5".into(), 443))
        );
        assert_eq!(probe_peer("http://example.com/"), None);
    }
}
