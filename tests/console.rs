//! The live console, for real, in tmux: a run on a terminal 80 and 160
//! columns wide shows its phase, step time, probes (before and during kept
//! apart, observe-only probes not shown as failures), abort conditions,
//! faults and every crash-loop round and restart; `q` asks, `y` stops and
//! rolls back; `faultline stop` from a second tmux window stops it with
//! everything rolled back (a paused `sleep` runs again). No root needed:
//! the processes are the test's own.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

/// A private tmux server (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(name: &str, width: u16, height: u16, command: &str) -> Option<Tmux> {
        let t = Tmux {
            socket: format!("faultline-test-{}-{name}", std::process::id()),
        };
        let ok = t
            .cmd()
            .args(["new-session", "-d", "-s", "t"])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg(command)
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
        Some(t)
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"])
            .stdin(Stdio::null())
            .env_remove("TMUX");
        c
    }

    /// What window `w` shows now (with `history` lines of scrollback).
    fn capture(&self, w: &str, history: bool) -> String {
        let mut c = self.cmd();
        c.args(["capture-pane", "-p", "-t", &format!("t:{w}")]);
        if history {
            // Wrapped lines joined: the report's lines are whole.
            c.args(["-J", "-S", "-2000"]);
        }
        let o = c.output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let ok = self
            .cmd()
            .args(["send-keys", "-t", "t:0", keys])
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux send-keys {keys}");
    }

    fn new_window(&self, command: &str) {
        let ok = self
            .cmd()
            .args(["new-window", "-d", "-t", "t:1", command])
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux new-window");
    }

    /// Waits until window 0 shows `what`; panics with the screen if not.
    fn wait_for(&self, what: &str, secs: u64) -> String {
        let mut screen = String::new();
        let found = wait_until(Duration::from_secs(secs), || {
            screen = self.capture("0", false);
            screen.contains(what)
        });
        assert!(found, "the console never showed `{what}`:\n{screen}");
        screen
    }

    fn wait_for_history(&self, what: &str, secs: u64) -> String {
        let mut screen = String::new();
        let found = wait_until(Duration::from_secs(secs), || {
            screen = self.capture("0", true);
            screen.contains(what)
        });
        assert!(found, "never showed `{what}`:\n{screen}");
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

fn have_tmux() -> bool {
    Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A shell that restarts its `sleep` child whenever it dies (a tiny
/// supervisor), in its own process group.
fn supervisor() -> ChildGuard {
    use std::os::unix::process::CommandExt;
    ChildGuard(
        Command::new("sh")
            .args(["-c", "while true; do sleep 1000; done"])
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Pauses `paused` (undone at rollback) and crash-loops the supervisor's
/// child, with one required probe and one observe-only probe.
fn experiment(paused: i32, supervisor: i32) -> String {
    format!(
        r#"
title: crash loop under watch
hypothesis: the api keeps answering while its worker crash-loops
limits: {{max_duration: 3m}}
steady_state:
  interval: 200ms
  probes:
    - name: api
      command: {{run: ["true"]}}
      before: {{samples: 2}}
      during: {{min_success: 60%}}
      after: {{within: 5s, successes: 1}}
    - name: watcher
      command: {{run: ["false"]}}
      before: {{samples: 1, min_success: 0%}}
      after: {{within: 1s, successes: 1}}
abort:
  - probe: api
    consecutive_failures: 3
method:
  - name: pause the sleeper
    background: true
    fault:
      process_pause:
        target: {{pid: {paused}}}
    duration: 90s
  - name: crash the worker
    fault:
      process_kill:
        target: {{children_of: {supervisor}}}
        signal: SIGKILL
        every: 1s
    duration: 90s
"#
    )
}

/// `faultline run` in window 0, then `EXIT=<code>` (and a long sleep so
/// the pane stays for capture).
fn run_command(dir: &Path, file: &Path) -> String {
    run_command_with(dir, file, "", "")
}

fn run_command_with(dir: &Path, file: &Path, env: &str, after: &str) -> String {
    let q = |p: &Path| format!("'{}'", p.display());
    format!(
        "cd {} && env -u CI -u NO_COLOR TERM=xterm-256color FAULTLINE_STATE_DIR={} {env} {} run {} --yes --journal journal.json; echo EXIT=$?; {after} sleep 600",
        q(dir),
        q(&dir.join("state")),
        q(Path::new(bin())),
        q(file)
    )
}

fn resumed(pid: i32) -> bool {
    wait_until(Duration::from_secs(10), || {
        matches!(proc_state(pid), Some('S') | Some('R'))
    })
}

/// Every line on the screen fits; the header is on line 2 and the key help
/// on the last line, so nothing wrapped.
fn check_layout(screen: &str, width: usize) {
    let lines: Vec<&str> = screen.lines().collect();
    for l in &lines {
        assert!(
            l.chars().count() <= width,
            "line wider than {width}: {l}\n{screen}"
        );
    }
    assert!(lines[0].starts_with("faultline "), "{screen}");
    assert!(
        lines[1].starts_with("METHOD · step 2/2 crash the worker [process_kill] · "),
        "{screen}"
    );
    assert!(
        lines
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.starts_with("q stop and roll back")),
        "{screen}"
    );
}

fn check_content(screen: &str) {
    let has = |s: &str| assert!(screen.contains(s), "no `{s}` on the screen:\n{screen}");
    // The step and its time: `12s of 1m30s`.
    let step_time = regex::Regex::new(r"· \d+s of 1m30s · run ").unwrap();
    assert!(step_time.is_match(screen), "{screen}");
    has("PROBES");
    has("✓ api");
    has("up since ");
    // Before and during apart, the requirement, latency so far.
    has("before 2/2");
    assert!(
        regex::Regex::new(r"during \d+/\d+ = 100% ≥ 60%")
            .unwrap()
            .is_match(screen),
        "{screen}"
    );
    has("p95 ");
    // The observe-only probe fails every sample and is not shown as DOWN.
    has("○ watcher");
    has("down (observed only)");
    assert!(!screen.contains("DOWN"), "{screen}");
    has("ABORT WHEN");
    assert!(
        regex::Regex::new(r"api: 0/3 consecutive failures")
            .unwrap()
            .is_match(screen),
        "{screen}"
    );
    has("FAULTS");
    has("process_pause on");
    has("process_kill on children of pid");
    // Crash-loop rounds and restarts, each with its time.
    assert!(
        regex::Regex::new(r"round \d+ at \d\d:\d\d:\d\d\.\d{3}: sent SIGKILL to pid \d+")
            .unwrap()
            .is_match(screen),
        "{screen}"
    );
    assert!(
        regex::Regex::new(r"pid \d+ restarted as pid \d+ \(sleep\) after \d+ ms")
            .unwrap()
            .is_match(screen),
        "{screen}"
    );
}

fn console_at(width: u16) {
    if !have_tmux() {
        eprintln!("skipped: tmux is not installed");
        return;
    }
    let sb = Sandbox::new();
    let target = sleeper(600);
    let sup = supervisor();
    let f = sb.write("e.yaml", &experiment(target.pid(), sup.pid()));
    let tmux = Tmux::start(&format!("w{width}"), width, 40, &run_command(sb.path(), &f))
        .expect("tmux starts");
    // Two rounds with their restarts on screen.
    tmux.wait_for("round 2 at", 60);
    let screen = tmux.wait_for("restarted as pid", 30);
    check_layout(&screen, width as usize);
    check_content(&screen);
    assert_eq!(proc_state(target.pid()), Some('T'), "paused during the run");
    if width >= 120 {
        // Wide: a probe on one line.
        assert!(
            screen
                .lines()
                .any(|l| l.contains("✓ api") && l.contains("before 2/2") && l.contains("p95")),
            "{screen}"
        );
    }

    // space: details (the probe's command and requirements).
    tmux.keys("Space");
    tmux.wait_for("during: ≥ 60% ok", 10);
    // q asks first; another key goes on.
    tmux.keys("q");
    tmux.wait_for("Stop the run and roll everything back? y = yes", 10);
    tmux.keys("n");
    tmux.wait_for("q stop and roll back", 10);
    assert_eq!(proc_state(target.pid()), Some('T'), "still running");
    // q, then y: stopped and rolled back.
    tmux.keys("q");
    tmux.wait_for("Stop the run and roll everything back?", 10);
    tmux.keys("y");
    let all = tmux.wait_for_history("EXIT=", 60);
    assert!(all.contains("EXIT=130"), "{all}");
    assert!(
        all.contains("interrupted by SIGINT; everything was rolled back"),
        "{all}"
    );
    assert!(resumed(target.pid()), "the paused process runs again");
    // The terminal is back: the log of the run and the report are on the
    // main screen, the report no wider than the terminal.
    assert!(all.contains("── method ──"), "{all}");
    assert!(all.contains("Steady state"), "{all}");
    for l in all
        .lines()
        .filter(|l| l.starts_with(['┌', '│', '├', '╞', '└']))
    {
        assert!(
            l.chars().count() <= width as usize,
            "report line wider than {width}: {l}"
        );
    }
    if width < 100 {
        // Narrow: the probe table is vertical (one row per phase).
        assert!(
            all.lines()
                .any(|l| l.contains("Probe") && l.contains("Result")),
            "{all}"
        );
    }
    let j = sb.journal();
    assert_eq!(j["outcome"]["verdict"], "interrupted", "{j:#}");
    assert_eq!(j["faults"][0]["rolled_back"], true, "{j:#}");
    let st = sb.status();
    assert_eq!(st.status.code(), Some(0), "{}", text(&st));
}

#[test]
fn console_at_80_columns_shows_the_run_and_q_rolls_back() {
    console_at(80);
}

#[test]
fn console_at_160_columns_shows_the_run_and_q_rolls_back() {
    console_at(160);
}

#[test]
fn faultline_stop_from_a_second_tmux_window_rolls_everything_back() {
    if !have_tmux() {
        eprintln!("skipped: tmux is not installed");
        return;
    }
    let sb = Sandbox::new();
    let target = sleeper(600);
    let sup = supervisor();
    let f = sb.write("e.yaml", &experiment(target.pid(), sup.pid()));
    let tmux = Tmux::start("stop", 80, 30, &run_command(sb.path(), &f)).expect("tmux starts");
    tmux.wait_for("round 1 at", 60);
    assert_eq!(proc_state(target.pid()), Some('T'), "paused during the run");

    tmux.new_window(&format!(
        "env FAULTLINE_STATE_DIR='{}' '{}' stop --all --reason 'facilitator called it'; echo STOP=$?; sleep 600",
        sb.state_dir().display(),
        bin()
    ));
    let mut w1 = String::new();
    assert!(
        wait_until(Duration::from_secs(60), || {
            w1 = tmux.capture("1", true);
            w1.contains("STOP=")
        }),
        "{w1}"
    );
    assert!(w1.contains("STOP=0"), "{w1}");
    assert!(w1.contains("everything was rolled back"), "{w1}");
    // The host is back: the paused process runs again.
    assert!(resumed(target.pid()), "the paused process runs again");

    let all = tmux.wait_for_history("EXIT=", 60);
    assert!(all.contains("EXIT=2"), "ABORTED: {all}");
    assert!(all.contains("via faultline stop"), "{all}");
    assert!(all.contains("facilitator called it"), "{all}");
    let j = sb.journal();
    assert_eq!(j["outcome"]["verdict"], "aborted", "{j:#}");
    assert_eq!(j["faults"][0]["rolled_back"], true, "{j:#}");
    let st = sb.status();
    assert_eq!(st.status.code(), Some(0), "{}", text(&st));
}

#[test]
fn a_panic_gives_the_terminal_back_and_rolls_back() {
    if !have_tmux() {
        eprintln!("skipped: tmux is not installed");
        return;
    }
    let sb = Sandbox::new();
    let target = sleeper(600);
    let sup = supervisor();
    let f = sb.write("e.yaml", &experiment(target.pid(), sup.pid()));
    // The runner panics right after the first injection; afterwards the
    // pane prints whether the terminal is in canonical mode again.
    let cmd = run_command_with(
        sb.path(),
        &f,
        "FAULTLINE_TEST_PANIC_AT=injected",
        "stty -a | tr ' ;' '\\n\\n' | grep -x -- '-*icanon' | sed 's/^/MODE=/';",
    );
    let tmux = Tmux::start("panic", 80, 30, &cmd).expect("tmux starts");
    let all = tmux.wait_for_history("MODE=", 60);
    assert!(all.contains("EXIT=70"), "{all}");
    assert!(all.contains("MODE=icanon"), "raw mode is off again: {all}");
    assert!(all.contains("internal error"), "{all}");
    let o = tmux
        .cmd()
        .args(["display-message", "-p", "-t", "t:0", "#{alternate_on}"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "0",
        "back on the main screen"
    );
    assert!(resumed(target.pid()), "the paused process runs again");
}
