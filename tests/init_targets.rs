//! `faultline init` and `faultline targets`, as a new user meets them: an
//! experiment written from flags that validates and runs against a real web
//! server, and a list of this host's targets that names a real listener and
//! a network namespace the test creates, with hostile names escaped.

use serde_json::Value;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_faultline");

fn faultline(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("FAULTLINE_STATE_DIR", dir.join("state"))
        .env_remove("CI")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when the test ends, pass or fail.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn web_server(port: u16) -> Option<Guard> {
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let g = Guard(child);
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t.elapsed() > Duration::from_secs(15) {
            panic!("the web server did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(g)
}

#[test]
fn init_writes_an_experiment_that_validates_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let Some(web) = web_server(port) else {
        eprintln!("skipped: needs python3 for the web server");
        return;
    };
    let pid = web.0.id().to_string();
    let url = format!("http://127.0.0.1:{port}/");
    let target = format!("pid={pid}");
    let args = [
        "init",
        "--probe",
        &url,
        "--fault",
        "process_pause",
        "--target",
        &target,
        "--duration",
        "2s",
        "--title",
        "paused web server",
        "-o",
        "exp.yaml",
    ];
    let o = faultline(&args, dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(dir.path().join("exp.yaml")).unwrap();
    assert!(text.contains("# "), "the file is commented:\n{text}");

    // Not over an existing file without --force.
    let o = faultline(&args, dir.path());
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));

    let o = faultline(&["validate", "exp.yaml"], dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));

    // It runs: the server is paused for 2 s, answers again, and the run says
    // whether the hypothesis held (a paused server fails its samples, so
    // DEVIATED is the honest verdict for the default 100% during requirement).
    let o = faultline(
        &["run", "exp.yaml", "--yes", "--journal", "j.json", "--quiet"],
        dir.path(),
    );
    let code = o.status.code();
    assert!(
        code == Some(0) || code == Some(1),
        "run: {code:?} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let j: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("j.json")).unwrap()).unwrap();
    assert_eq!(j["faults"][0]["kind"], "process_pause");
    assert_eq!(j["faults"][0]["rolled_back"], true, "{}", j["faults"][0]);
    // The server runs again afterwards.
    let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let state = st.rsplit_once(") ").unwrap().1.chars().next().unwrap();
    assert!(state != 'T', "the server is not left stopped");
}

#[test]
fn init_without_flags_and_without_a_terminal_says_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let o = faultline(&["init"], dir.path());
    assert_eq!(o.status.code(), Some(64));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--fault") && err.contains("--probe"), "{err}");
    let o = faultline(
        &[
            "init",
            "--probe",
            "http://127.0.0.1:1/",
            "--fault",
            "cpu_limt",
            "--target",
            "name=x",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("did you mean `cpu_limit`"));
}

#[test]
fn targets_lists_a_real_listener_and_its_selector() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let Some(web) = web_server(port) else {
        eprintln!("skipped: needs python3 for the web server");
        return;
    };
    let pid = web.0.id() as i64;
    let o = faultline(&["targets", "--format", "json"], dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let inv: Value = serde_json::from_slice(&o.stdout).unwrap();
    let ports = inv["ports"].as_array().unwrap();
    let mine = ports
        .iter()
        .find(|p| p["port"] == port)
        .unwrap_or_else(|| panic!("port {port} not listed: {ports:?}"));
    assert_eq!(mine["address"], "127.0.0.1");
    assert!(mine["pids"].as_array().unwrap().contains(&pid.into()));
    assert_eq!(
        mine["probe"],
        format!("{{tcp: {{host: \"127.0.0.1\", port: {port}}}}}")
    );
    let group = inv["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["pids"].as_array().unwrap().contains(&pid.into()))
        .expect("the server's process is listed");
    assert!(group["ports"].as_array().unwrap().contains(&port.into()));
    let sel = group["selector"].as_str().unwrap();
    assert!(
        sel == format!("{{name: {}}}", group["name"].as_str().unwrap()) || sel.starts_with("{pid:"),
        "{sel}"
    );
    assert!(inv["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["name"] == "lo" && i["netns"].is_null()));

    // Only some kinds, filtered.
    let o = faultline(
        &[
            "targets",
            "ports",
            "--filter",
            &port.to_string(),
            "--format",
            "json",
        ],
        dir.path(),
    );
    let inv: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(inv.get("processes").is_none());
    assert_eq!(inv["ports"].as_array().unwrap().len(), 1);
}

/// A network namespace deleted when the test ends.
struct Netns(String);
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

#[test]
fn targets_shows_namespaces_and_escapes_hostile_names() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: creating a network namespace needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ns = Netns(format!("fl-tgt-{}", std::process::id()));
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap()
        .success());
    assert!(Command::new("ip")
        .args(["-n", &ns.0, "link", "add", "vtest0", "type", "veth", "peer", "name", "vtest1"])
        .status()
        .unwrap()
        .success());
    // A process whose name would clear the screen if printed raw.
    let evil = dir.path().join("e\x1b[2Jx");
    std::os::unix::fs::symlink("/bin/sleep", &evil).unwrap();
    let _sleeper = Guard(Command::new(&evil).arg("60").spawn().unwrap());
    std::thread::sleep(Duration::from_millis(200));

    let o = faultline(&["targets", "interfaces", "--format", "json"], dir.path());
    let inv: Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = inv["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["netns"] == ns.0.as_str() && i["name"] == "vtest0")
        .expect("the namespace's interface is listed");
    assert_eq!(
        row["selector"],
        format!("interface: vtest0, netns: {}", ns.0)
    );

    let o = faultline(&["targets"], dir.path());
    assert!(o.status.success());
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        !table.contains('\x1b'),
        "no raw escape reaches the terminal"
    );
    assert!(
        table.contains("e\\x1b[2Jx") || table.contains("e\\u{1b}[2Jx"),
        "the name is shown escaped"
    );
    assert!(table.contains(&ns.0));
}
