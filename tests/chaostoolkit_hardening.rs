//! Chaos Toolkit files as hostile input, and the cases where other people's
//! files showed faultline differing from Chaos Toolkit: the built binary,
//! real HTTP servers on 127.0.0.1, real processes and python3.

mod support;

use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;
use support::{text, FlagServer, Sandbox};

fn have_python() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "pass"])
        .status()
        .is_ok_and(|s| s.success())
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_json(sb: &Sandbox, name: &str, v: &serde_json::Value) -> String {
    sb.write(name, &serde_json::to_string_pretty(v).unwrap())
        .to_str()
        .unwrap()
        .to_string()
}

/// A hypothesis probe on `url` that must answer 200.
fn http_probe(url: &str) -> serde_json::Value {
    json!({"type": "probe", "name": "service-answers", "tolerance": 200,
           "provider": {"type": "http", "url": url, "timeout": 3}})
}

// ------------------------------------------------------------ item 3

#[test]
fn validate_and_plan_find_python_modules_without_running_them() {
    if !have_python() {
        println!("skipped: python3 is not installed");
        return;
    }
    let sb = Sandbox::new();
    // A module in the current directory whose import leaves a marker.
    sb.write(
        "marker_mod.py",
        "open('IMPORTED', 'w').write('imported')\ndef ok():\n    return True\n",
    );
    let f = write_json(
        &sb,
        "exp.json",
        &json!({
            "title": "python module from the current directory",
            "steady-state-hypothesis": {"title": "h", "probes": [
                {"type": "probe", "name": "py", "tolerance": true,
                 "provider": {"type": "python", "module": "marker_mod", "func": "ok"}}]},
            "method": [{"type": "action", "name": "nothing",
                        "provider": {"type": "process", "path": "true"}}]
        }),
    );
    let marker = sb.path().join("IMPORTED");
    let o = sb.cmd().args(["validate", &f]).output().unwrap();
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert!(!marker.exists(), "validate imported the module");
    let o = sb.cmd().args(["plan", &f]).output().unwrap();
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert!(!marker.exists(), "plan imported the module");
    // A missing module is still found missing, without importing anything.
    let g = std::fs::read_to_string(&f)
        .unwrap()
        .replace("marker_mod", "no_such_mod_xyz");
    let g = sb.write("missing.json", &g);
    let o = sb.cmd().arg("validate").arg(&g).output().unwrap();
    assert_eq!(code(&o), Some(64), "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains("no_such_mod_xyz"), "{err}");
    // No made-up Debian package name.
    assert!(!err.contains("python3-"), "{err}");
    // `run` imports it: the marker shows the module is real.
    let o = sb
        .cmd()
        .args(["run", &f, "--no-journal", "--yes"])
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert!(marker.exists(), "run must import the module");
}

// ------------------------------------------------------------ item 4

/// A `curl` that records its argv and its stdin, then does what curl does
/// with the config it was given (the real curl), so the rollback works.
fn curl_shim(sb: &Sandbox) -> std::path::PathBuf {
    let dir = sb.path().join("shim");
    std::fs::create_dir_all(&dir).unwrap();
    let real = ["/usr/bin/curl", "/bin/curl", "/usr/local/bin/curl"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{out}/curl-argv'\ncat > '{out}/curl-stdin'\n{}\n",
        match real {
            Some(r) => format!("exec {r} \"$@\" < '{}/curl-stdin'", sb.path().display()),
            None => "exit 0".into(),
        },
        out = sb.path().display()
    );
    let p = dir.join("curl");
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn secrets_and_credentials_are_never_shown_or_written() {
    let sb = Sandbox::new();
    let server = FlagServer::start(sb.path());
    let shim = curl_shim(&sb);
    let path = format!(
        "{}:{}",
        shim.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let url = format!("http://probe-user:pw-SECRET-456@127.0.0.1:{}/", server.port);
    let mut scopes_probe = json!(null);
    if have_python() {
        sb.write(
            "scope_mod.py",
            "import os\ndef env_has_b():\n    return 'SECRET-B' in os.environ.get('FAULTLINE_CTK_ACTIVITY', '')\n",
        );
        scopes_probe = json!({"type": "probe", "name": "only-listed-scopes", "tolerance": false,
            "provider": {"type": "python", "module": "scope_mod", "func": "env_has_b",
                         "secrets": ["a"]}});
    }
    let mut probes = vec![
        json!({"type": "probe", "name": "service-answers", "tolerance": 200,
        "provider": {"type": "http", "url": url, "timeout": 3,
                     "headers": {"Authorization": "Bearer ${token}"}}}),
    ];
    if !scopes_probe.is_null() {
        probes.push(scopes_probe);
    }
    let exp = json!({
        "title": "secrets stay secret",
        "secrets": {"a": {"token": "tok-SECRET-123"}, "b": {"other": "val-SECRET-B"}},
        "steady-state-hypothesis": {"title": "h", "probes": probes},
        "method": [{"type": "action", "name": "use-the-token",
                    "provider": {"type": "process", "path": "sh",
                                 "arguments": ["-c", "echo ${token} > used.txt; echo said ${token}"]}}],
        "rollbacks": [{"type": "action", "name": "tell-the-service",
                       "provider": {"type": "http", "url": server.url(), "method": "POST",
                                    "headers": {"Cookie": "c-SECRET-789"},
                                    "timeout": 3}}]
    });
    let f = write_json(&sb, "exp.json", &exp);
    let secrets = [
        "tok-SECRET-123",
        "pw-SECRET-456",
        "c-SECRET-789",
        "val-SECRET-B",
    ];
    let clean = |what: &str, s: &str| {
        for x in secrets {
            assert!(!s.contains(x), "{what} shows `{x}`:\n{s}");
        }
    };
    let o = sb
        .cmd()
        .env("PATH", &path)
        .args(["run", &f, "--yes", "--journal-format", "chaostoolkit"])
        .args(["--journal", "ctk.json", "--markdown", "report.md"])
        .args(["--junit", "junit.xml", "--events", "events.jsonl"])
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    // The secret was really used.
    assert_eq!(
        std::fs::read_to_string(sb.path().join("used.txt"))
            .unwrap()
            .trim(),
        "tok-SECRET-123"
    );
    clean("stdout", &String::from_utf8_lossy(&o.stdout));
    clean("stderr", &stderr(&o));
    for file in ["ctk.json", "report.md", "junit.xml", "events.jsonl"] {
        let p = sb.path().join(file);
        clean(file, &std::fs::read_to_string(&p).unwrap());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} is {mode:o}");
    }
    // The rollback's header went to curl on stdin, not on its argv.
    let argv = std::fs::read_to_string(sb.path().join("curl-argv")).expect("curl ran");
    clean("curl's argv", &argv);
    let stdin = std::fs::read_to_string(sb.path().join("curl-stdin")).unwrap();
    assert!(stdin.contains("Cookie: c-SECRET-789"), "{stdin}");

    // faultline's own journal, the terminal without --events, and plan.
    let o = sb
        .cmd()
        .env("PATH", &path)
        .args(["run", &f, "--yes", "--journal", "fl.json"])
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    clean("stdout", &String::from_utf8_lossy(&o.stdout));
    clean("stderr", &stderr(&o));
    clean(
        "fl.json",
        &std::fs::read_to_string(sb.path().join("fl.json")).unwrap(),
    );
    for format in ["text", "json"] {
        let o = sb
            .cmd()
            .args(["plan", &f, "--format", format])
            .output()
            .unwrap();
        assert_eq!(code(&o), Some(0), "{}", text(&o));
        clean("plan", &String::from_utf8_lossy(&o.stdout));
    }
}

#[test]
fn url_passwords_of_faultline_http_probes_are_masked() {
    let sb = Sandbox::new();
    let server = FlagServer::start(sb.path());
    let f = sb.write(
        "fl.yaml",
        &format!(
            "title: t\nhypothesis: h\nsteady_state:\n  probes:\n    - name: p\n      http:\n        url: \"http://u:pw-SECRET-1@127.0.0.1:{}/\"\n        headers: {{Authorization: \"Basic c2VjcmV0LXZhbHVl\"}}\nmethod:\n  - pause: 100ms\n",
            server.port
        ),
    );
    let o = sb.run(&f, &["--yes", "--events", "ev.jsonl"]);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    for file in ["journal.json", "report.md", "junit.xml", "ev.jsonl"] {
        let t = std::fs::read_to_string(sb.path().join(file)).unwrap();
        assert!(!t.contains("pw-SECRET-1"), "{file}: {t}");
        assert!(!t.contains("c2VjcmV0LXZhbHVl"), "{file}: {t}");
    }
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(!all.contains("pw-SECRET-1"), "{all}");
    let o = sb.cmd().arg("plan").arg(&f).output().unwrap();
    assert!(!String::from_utf8_lossy(&o.stdout).contains("pw-SECRET-1"));
}

// ------------------------------------------------------------ item 5

#[test]
fn substituted_values_cannot_add_shell_commands() {
    let sb = Sandbox::new();
    let f = write_json(
        &sb,
        "exp.json",
        &json!({
            "title": "quoted",
            "method": [{"type": "action", "name": "echo",
                        "provider": {"type": "process", "path": "echo",
                                     "arguments": "${x} > out.txt"}}]
        }),
    );
    let o = sb
        .cmd()
        .args(["run", &f, "--yes", "--no-journal"])
        .args(["--var", "x=1; touch PWNED"])
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert!(
        !sb.path().join("PWNED").exists(),
        "a --var value ran a command"
    );
    // The value arrived whole, as one argument; the file's own `>` still works.
    assert_eq!(
        std::fs::read_to_string(sb.path().join("out.txt"))
            .unwrap()
            .trim(),
        "1; touch PWNED"
    );
}

// ------------------------------------------------------------ item 15

#[test]
fn huge_negative_and_nan_durations_are_errors_not_panics() {
    let sb = Sandbox::new();
    let with = |field: serde_json::Value| {
        let mut a = json!({"type": "action", "name": "a",
                           "provider": {"type": "process", "path": "true"}});
        for (k, v) in field.as_object().unwrap() {
            if k == "timeout" {
                a["provider"]["timeout"] = v.clone();
            } else {
                a[k] = v.clone();
            }
        }
        json!({"title": "t", "method": [a]})
    };
    let cases = [
        ("timeout 1e300", with(json!({"timeout": 1e300}))),
        (
            "timeout 2^64",
            with(json!({"timeout": 18446744073709551616.0f64})),
        ),
        ("pause 1e300", with(json!({"pauses": {"after": "1e300"}}))),
        ("pause -1", with(json!({"pauses": {"before": -1}}))),
        ("pause NaN", with(json!({"pauses": {"after": "NaN"}}))),
        ("timeout list", with(json!({"timeout": [1e300, 1]}))),
    ];
    for (what, exp) in cases {
        let f = write_json(&sb, "exp.json", &exp);
        for cmd in [
            &["validate"][..],
            &["plan"],
            &["run", "--yes", "--no-journal"],
        ] {
            let o = sb.cmd().args(cmd).arg(&f).output().unwrap();
            assert_eq!(code(&o), Some(64), "{what} / {cmd:?}: {}", text(&o));
            assert!(!stderr(&o).contains("panicked"), "{what}: {}", text(&o));
        }
    }
    // The integer 2^64 as written in a file.
    let f = sb.write(
        "int.json",
        r#"{"title": "t", "method": [{"type": "action", "name": "a",
            "provider": {"type": "process", "path": "true", "timeout": 18446744073709551616}}]}"#,
    );
    let o = sb.cmd().arg("validate").arg(&f).output().unwrap();
    assert_eq!(code(&o), Some(64), "{}", text(&o));
    assert!(
        stderr(&o).contains("method[0].provider.timeout"),
        "{}",
        text(&o)
    );
    // --hypothesis-frequency.
    let f = write_json(&sb, "ok.json", &with(json!({})));
    for v in ["1e300", "NaN", "-1", "18446744073709551616"] {
        let o = sb
            .cmd()
            .args(["run", &f, "--yes", "--no-journal"])
            .args(["--hypothesis-strategy", "continuously"])
            .arg(format!("--hypothesis-frequency={v}"))
            .output()
            .unwrap();
        assert_eq!(code(&o), Some(64), "{v}: {}", text(&o));
        assert!(
            stderr(&o).contains("--hypothesis-frequency"),
            "{}",
            text(&o)
        );
    }
}

// ------------------------------------------------- other people's files

#[test]
fn an_empty_method_checks_the_steady_state_only() {
    let sb = Sandbox::new();
    let server = FlagServer::start(sb.path());
    let f = write_json(
        &sb,
        "exp.json",
        &json!({"title": "only the steady state",
                "steady-state-hypothesis": {"title": "h", "probes": [http_probe(&server.url())]},
                "method": []}),
    );
    let o = sb.cmd().args(["validate", &f]).output().unwrap();
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    let o = sb
        .cmd()
        .args(["run", &f, "--yes", "--journal-format", "chaostoolkit"])
        .args(["--journal", "ctk.json"])
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.path().join("ctk.json")).unwrap())
            .unwrap();
    assert_eq!(j["run"], json!([]), "{j:#}");
    assert_eq!(j["steady_states"]["after"]["steady_state_met"], true);
    // The steady state is really checked: a broken service is seen.
    std::fs::write(&server.fail_flag, "").unwrap();
    let o = sb
        .cmd()
        .args(["run", &f, "--yes", "--no-journal"])
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(3), "{}", text(&o));
}

/// A server on 127.0.0.1 that answers 200 after `delay`.
fn slow_server(delay: Duration) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                std::thread::sleep(delay);
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
            });
        }
    });
    port
}

#[test]
fn connect_and_read_timeouts_apply_apart_not_summed() {
    let sb = Sandbox::new();
    let port = slow_server(Duration::from_millis(1600));
    let exp = |timeout: serde_json::Value| {
        json!({"title": "slow", "steady-state-hypothesis": {"title": "h", "probes": [
            {"type": "probe", "name": "slow-service", "tolerance": 200,
             "provider": {"type": "http", "url": format!("http://127.0.0.1:{port}/"),
                          "timeout": timeout}}]},
            "method": []})
    };
    // Read timeout 1 s < 1.6 s: fails (the sum, 2 s, would pass).
    let f = write_json(&sb, "short.json", &exp(json!([1, 1])));
    let o = sb
        .cmd()
        .args(["run", &f, "--yes", "--no-journal"])
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(3), "{}", text(&o));
    // Read timeout 4 s: passes.
    let f = write_json(&sb, "long.json", &exp(json!([1, 4])));
    let o = sb
        .cmd()
        .args(["run", &f, "--yes", "--no-journal"])
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(0), "{}", text(&o));
}

#[test]
fn guarding_controls_stop_the_run_and_every_control_is_named() {
    let sb = Sandbox::new();
    let exp = json!({
        "title": "guarded",
        "controls": [{"name": "tracing", "provider": {"type": "python", "module": "chaostracing.control"}}],
        "method": [{"type": "action", "name": "dangerous-method-activity",
                    "controls": [{"name": "ask-first",
                                  "provider": {"type": "python", "module": "mycontrols.prompt"}}],
                    "provider": {"type": "process", "path": "touch", "arguments": ["RAN"]}}]
    });
    let f = write_json(&sb, "exp.json", &exp);
    let o = sb.cmd().args(["validate", &f]).output().unwrap();
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains("tracing"), "{err}");
    assert!(err.contains("method[0].controls[0]"), "{err}");
    assert!(err.contains("ask-first"), "{err}");
    // plan says what run would do.
    let o = sb.cmd().args(["plan", &f]).output().unwrap();
    assert_eq!(code(&o), Some(69), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("--ignore-controls"),
        "{}",
        text(&o)
    );
    let o = sb
        .cmd()
        .args(["run", &f, "--yes", "--no-journal"])
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(69), "{}", text(&o));
    assert!(stderr(&o).contains("--ignore-controls"), "{}", text(&o));
    assert!(!sb.path().join("RAN").exists(), "the guarded activity ran");
    let o = sb
        .cmd()
        .args(["run", &f, "--yes", "--no-journal", "--ignore-controls"])
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert!(sb.path().join("RAN").exists());
    // A file with only observing controls runs, with the warning.
    let mut only_tracing = exp.clone();
    only_tracing["method"][0]
        .as_object_mut()
        .unwrap()
        .remove("controls");
    let g = write_json(&sb, "tracing.json", &only_tracing);
    std::fs::remove_file(sb.path().join("RAN")).unwrap();
    let o = sb
        .cmd()
        .args(["run", &g, "--yes", "--no-journal"])
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert!(stderr(&o).contains("tracing"), "{}", text(&o));
}

#[test]
fn rollback_strategy_always_also_plays_after_a_failed_before_check() {
    let sb = Sandbox::new();
    let server = FlagServer::start(sb.path());
    std::fs::write(&server.fail_flag, "").unwrap();
    let f = write_json(
        &sb,
        "exp.json",
        &json!({"title": "t",
                "steady-state-hypothesis": {"title": "h", "probes": [http_probe(&server.url())]},
                "method": [{"type": "action", "name": "m",
                            "provider": {"type": "process", "path": "touch", "arguments": ["METHOD"]}}],
                "rollbacks": [{"type": "action", "name": "r",
                               "provider": {"type": "process", "path": "touch", "arguments": ["ROLLED"]}}]}),
    );
    let run = |strategy: &str| {
        sb.cmd()
            .args([
                "run",
                &f,
                "--yes",
                "--no-journal",
                "--rollback-strategy",
                strategy,
            ])
            .output()
            .unwrap()
    };
    let o = run("default");
    assert_eq!(code(&o), Some(3), "{}", text(&o));
    assert!(!sb.path().join("ROLLED").exists());
    let o = run("always");
    assert_eq!(code(&o), Some(3), "{}", text(&o));
    assert!(
        !sb.path().join("METHOD").exists(),
        "the method must not run"
    );
    assert!(sb.path().join("ROLLED").exists(), "always: rollbacks play");
}

#[test]
fn legacy_chaos_toolkit_files_get_a_chaos_toolkit_error() {
    let sb = Sandbox::new();
    let f = sb.write(
        "old.json",
        r#"{
  "title": "An experiment of 2017",
  "description": "before the steady-state-hypothesis block existed",
  "method": [
    {
      "title": "kill the service",
      "action": {"title": "kill", "layer": "kubernetes", "type": "python",
                 "module": "chaosk8s.actions", "func": "kill_microservice"}
    }
  ]
}"#,
    );
    let o = sb.cmd().arg("validate").arg(&f).output().unwrap();
    assert_eq!(code(&o), Some(64), "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains("before Chaos Toolkit 1.0"), "{err}");
    assert!(err.contains("steady-state-hypothesis"), "{err}");
    assert!(err.contains("method[0]"), "{err}");
}

#[test]
fn validate_and_plan_take_var_and_var_file() {
    let sb = Sandbox::new();
    let f = write_json(
        &sb,
        "exp.json",
        &json!({"title": "t",
                "configuration": {"prog": {"type": "env", "key": "FL_CTK_NEVER_SET_991"}},
                "method": [{"type": "action", "name": "a",
                            "provider": {"type": "process", "path": "${prog}"}}]}),
    );
    let o = sb.cmd().args(["validate", &f]).output().unwrap();
    assert_eq!(code(&o), Some(64), "{}", text(&o));
    assert!(stderr(&o).contains("--var prog=VALUE"), "{}", text(&o));
    let o = sb
        .cmd()
        .args(["validate", &f, "--var", "prog=true"])
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    sb.write("v.yaml", "configuration:\n  prog: 'true'\n");
    let o = sb
        .cmd()
        .args(["plan", &f, "--var-file", "v.yaml"])
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(0), "{}", text(&o));
}

#[test]
fn the_chaos_toolkit_journal_records_what_activities_returned() {
    let sb = Sandbox::new();
    let server = FlagServer::start(sb.path());
    let mut method = vec![
        json!({"type": "action", "name": "proc",
               "provider": {"type": "process", "path": "sh",
                            "arguments": ["-c", "echo out; echo err >&2; exit 3"]}}),
        json!({"type": "action", "name": "web", "provider":
               {"type": "http", "url": server.url(), "method": "POST"}}),
    ];
    let python = have_python();
    if python {
        sb.write(
            "ret_mod.py",
            "def give():\n    return {'a': 1, 'b': [True]}\n",
        );
        method.push(json!({"type": "action", "name": "py",
            "provider": {"type": "python", "module": "ret_mod", "func": "give"}}));
    }
    let f = write_json(
        &sb,
        "exp.json",
        &json!({"title": "outputs",
                "steady-state-hypothesis": {"title": "h", "probes": [http_probe(&server.url())]},
                "method": method,
                "rollbacks": [
                    {"type": "action", "name": "rb-proc",
                     "provider": {"type": "process", "path": "echo", "arguments": ["undone"]}},
                    {"type": "action", "name": "rb-web",
                     "provider": {"type": "http", "url": server.url(), "method": "POST"}}]}),
    );
    let o = sb
        .cmd()
        .args(["run", &f, "--yes", "--journal-format", "chaostoolkit"])
        .args(["--journal", "ctk.json"])
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.path().join("ctk.json")).unwrap())
            .unwrap();
    let before = &j["steady_states"]["before"]["probes"][0]["output"];
    assert_eq!(before["status"], 200, "{j:#}");
    assert_eq!(before["body"], "ok", "{j:#}");
    assert_eq!(
        j["run"][0]["output"],
        json!({"status": 3, "stdout": "out\n", "stderr": "err\n"}),
        "{j:#}"
    );
    assert_eq!(j["run"][1]["output"]["status"], 200, "{j:#}");
    assert_eq!(j["run"][1]["output"]["body"], "ok", "{j:#}");
    assert!(j["run"][1]["output"]["headers"].is_object(), "{j:#}");
    if python {
        assert_eq!(j["run"][2]["output"], json!({"a": 1, "b": [true]}), "{j:#}");
    }
    assert_eq!(j["rollbacks"][0]["output"]["stdout"], "undone\n", "{j:#}");
    if Path::new("/usr/bin/curl").exists() {
        assert_eq!(j["rollbacks"][1]["output"], json!({"status": 200}), "{j:#}");
    }
}
