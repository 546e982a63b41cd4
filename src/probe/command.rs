//! `command` probe: runs argv (no shell), judges exit code and output.
//!
//! The child runs in its own process group. When the sample ends — timeout,
//! normal exit, or the sample being cancelled — the whole group is sent
//! SIGKILL, so a probe never leaves processes behind (also not the
//! background children of a `sh -c`). stdout and stderr are kept up to
//! `MAX_OUTPUT` bytes each; the rest is read and dropped so a chatty command
//! neither blocks on a full pipe nor eats memory. The child inherits the
//! runner's environment plus `env`, and gets `FAULTLINE_RUN_ID`. The
//! `*_matches` regexes are multi-line: `^`/`$` match at line boundaries, as in grep.

use super::{check_latency, ProbeContext, Sample};
use crate::experiment::model::{CommandProbe, Expect};
use crate::sys::exec::shell_words;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use regex::{Regex, RegexBuilder};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// Output kept per stream for matching.
pub const MAX_OUTPUT: usize = 64 * 1024;
/// Environment variable carrying the run id into command probes.
pub const RUN_ID_ENV: &str = "FAULTLINE_RUN_ID";

pub struct CommandCheck {
    spec: CommandProbe,
    run_id: String,
    want: OutputExpect,
    expect: Expect,
    /// `expect.tolerance`, parsed (Chaos Toolkit semantics).
    tolerance: Option<crate::chaostoolkit::tolerance::Tolerance>,
    /// `expect.jsonpath`, parsed.
    jsonpath: Option<super::ParsedJsonPath>,
}

/// What a command's result must look like (compiled from `Expect`).
struct OutputExpect {
    /// `None`: any exit code (a tolerance judges the result instead).
    exit_code: Option<i32>,
    stdout_contains: Option<String>,
    stdout_matches: Option<Regex>,
    stderr_contains: Option<String>,
    stderr_matches: Option<Regex>,
}

/// How the child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    Code(i32),
    Signal(i32),
}

impl CommandCheck {
    pub fn new(spec: &CommandProbe, expect: &Expect, ctx: &ProbeContext) -> Result<Self, String> {
        let Some(program) = spec.run.first() else {
            return Err("command.run is empty; give the program and its arguments, e.g. `[pg_isready, -h, 127.0.0.1]`".into());
        };
        if let Some(cwd) = &spec.cwd {
            if !Path::new(cwd).is_dir() {
                return Err(format!(
                    "command.cwd `{cwd}` is not a directory; create it or fix the path"
                ));
            }
        }
        let path_var = spec
            .env
            .get("PATH")
            .cloned()
            .or_else(|| std::env::var("PATH").ok())
            .unwrap_or_default();
        find_program(program, &path_var, spec.cwd.as_deref().map(Path::new))?;
        let re = |field: &str, v: &Option<String>| -> Result<Option<Regex>, String> {
            v.as_deref()
                .map(|r| {
                    RegexBuilder::new(r)
                        .multi_line(true)
                        .build()
                        .map_err(|e| format!("expect.{field} `{r}` is not a valid regex: {e}"))
                })
                .transpose()
        };
        let (tolerance, jsonpath) = super::parse_result_checks(expect)?;
        // A tolerance on the whole result judges the exit code itself; with
        // `result_on_stdout` the command must succeed to have a result.
        let exit_code = match (expect.exit_code, &tolerance, expect.result_on_stdout) {
            (Some(c), _, _) => Some(c),
            (None, Some(_), false) => None,
            _ => Some(0),
        };
        Ok(CommandCheck {
            tolerance,
            jsonpath,
            spec: spec.clone(),
            run_id: ctx.run_id.clone(),
            want: OutputExpect {
                exit_code,
                stdout_contains: expect.stdout_contains.clone(),
                stdout_matches: re("stdout_matches", &expect.stdout_matches)?,
                stderr_contains: expect.stderr_contains.clone(),
                stderr_matches: re("stderr_matches", &expect.stderr_matches)?,
            },
            expect: expect.clone(),
        })
    }

    pub fn describe(&self) -> String {
        let mut s = format!("run {}", shell_words(&self.spec.run));
        if let Some(cwd) = &self.spec.cwd {
            s.push_str(&format!(" in {cwd}"));
        }
        if let Some(c) = self.want.exit_code {
            s.push_str(&format!(" expecting exit {c}"));
        }
        if let Some(b) = &self.expect.value {
            s.push_str(&format!(", stdout a number {}", b.describe()));
        }
        if let Some((_, j)) = &self.jsonpath {
            s.push_str(&format!(", JSONPath {}", j.path));
        }
        if let Some(t) = &self.expect.tolerance {
            s.push_str(&format!(", tolerance {t}"));
        }
        s
    }

    pub async fn sample(&self, timeout: Duration) -> Sample {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + timeout);
        let program = &self.spec.run[0];
        let mut cmd = Command::new(program);
        cmd.args(&self.spec.run[1..])
            .envs(&self.spec.env)
            .env(RUN_ID_ENV, &self.run_id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(cwd) = &self.spec.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Sample::error(started.elapsed(), format!("cannot start `{program}`: {e}"))
            }
        };
        // Armed from here on: whatever happens below, the group is killed.
        let group = GroupGuard(child.id().map(|p| p as i32));
        let out = tokio::spawn(read_bounded(child.stdout.take()));
        let err = tokio::spawn(read_bounded(child.stderr.take()));
        let abort_readers = || {
            out.abort();
            err.abort();
        };

        let waited = tokio::select! {
            r = child.wait() => Some(r),
            _ = tokio::time::sleep_until(deadline) => None,
        };
        let status = match waited {
            None => {
                group.kill();
                // SIGKILL cannot be ignored; reaping is quick unless the child
                // is stuck in the kernel (then tokio reaps it later).
                let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
                abort_readers();
                return Sample::error(
                    started.elapsed(),
                    format!("timed out after {}", crate::units::Duration(timeout)),
                );
            }
            Some(Err(e)) => {
                group.kill();
                abort_readers();
                return Sample::error(
                    started.elapsed(),
                    format!("waiting for `{program}` failed: {e}"),
                );
            }
            Some(Ok(s)) => s,
        };
        let latency = started.elapsed();
        let ended = match (status.code(), status.signal()) {
            (Some(c), _) => Ended::Code(c),
            (None, Some(s)) => Ended::Signal(s),
            (None, None) => Ended::Code(-1),
        };
        // The pipes close when every process holding them is gone; a
        // background child may still hold them: wait until the deadline.
        let outputs = tokio::time::timeout_at(deadline, async {
            let o = out.await.unwrap_or_default();
            let e = err.await.unwrap_or_default();
            (o, e)
        })
        .await;
        group.kill();
        let (stdout, stderr) = match outputs {
            Ok(v) => v,
            Err(_) => {
                return Sample::error(
                    started.elapsed(),
                    format!(
                        "`{program}` ended ({}) but a background process it started kept stdout/stderr open; killed its process group after {}",
                        ended_text(ended),
                        crate::units::Duration(timeout)
                    ),
                );
            }
        };
        let sample = judge(ended, &stdout, &stderr, &self.want, latency);
        let sample = self.check_extra(ended, &stdout, &stderr, sample);
        check_latency(&self.expect, sample)
    }
}

impl CommandCheck {
    /// `expect.jsonpath` and `expect.tolerance`, on a sample that otherwise succeeded.
    fn check_extra(&self, ended: Ended, stdout: &[u8], stderr: &[u8], sample: Sample) -> Sample {
        if !sample.is_success() {
            return sample;
        }
        let latency = sample.latency;
        let out = String::from_utf8_lossy(stdout);
        if let Some(b) = &self.expect.value {
            return match b.judge_text(&out) {
                Ok(v) => Sample::success(latency, format!("{}, value {v}", ended_text(ended))),
                Err(why) => {
                    Sample::failure(latency, format!("{}, stdout: {why}", ended_text(ended)))
                }
            };
        }
        if let Some((path, j)) = &self.jsonpath {
            let doc: serde_json::Value = match serde_json::from_str(&out) {
                Ok(v) => v,
                Err(e) => {
                    return Sample::error(
                        latency,
                        format!("stdout is not JSON ({e}), cannot query {}", j.path),
                    )
                }
            };
            let found: Vec<serde_json::Value> =
                path.query(&doc).all().into_iter().cloned().collect();
            if let Err(why) = crate::chaostoolkit::tolerance::jsonpath_verdict(
                &found,
                &j.path,
                j.equals.as_ref(),
                j.count,
                "stdout",
            ) {
                return Sample::failure(latency, format!("{}, {why}", ended_text(ended)));
            }
            if let Some(b) = &j.value {
                if let Err(why) = b.judge_found(&found, &j.path) {
                    return Sample::failure(latency, format!("{}, {why}", ended_text(ended)));
                }
            }
        }
        if let Some(t) = &self.tolerance {
            // chaoslib's process result; a signal is a negative status, as Python's.
            let status = match ended {
                Ended::Code(c) => c,
                Ended::Signal(s) => -s,
            };
            let result = if self.expect.result_on_stdout {
                match serde_json::from_str::<serde_json::Value>(&out) {
                    Ok(v) => v,
                    Err(e) => {
                        return Sample::error(
                            latency,
                            format!("the result on stdout is not JSON ({e}): {:?}", tail(&out)),
                        )
                    }
                }
            } else {
                serde_json::json!({
                    "status": status,
                    "stdout": out,
                    "stderr": String::from_utf8_lossy(stderr),
                })
            };
            let sample = match t.check(&result, Some("stdout")) {
                Ok(_) => {
                    Sample::success(latency, format!("{}, within tolerance", ended_text(ended)))
                }
                Err(why) => Sample::failure(latency, format!("tolerance not met: {why}")),
            };
            return sample.with_output(result);
        }
        sample
    }
}

/// SIGKILLs the child's process group when dropped (also on cancellation).
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&self) {
        if let Some(pgid) = self.0 {
            // ESRCH (the group is already empty) is the normal case.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a stream to its end, keeping at most `MAX_OUTPUT` bytes.
async fn read_bounded<R: AsyncRead + Unpin>(stream: Option<R>) -> Vec<u8> {
    let Some(mut r) = stream else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = MAX_OUTPUT - kept.len();
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// Judges a finished command. Pure, so it is unit-tested without processes.
fn judge(
    ended: Ended,
    stdout: &[u8],
    stderr: &[u8],
    want: &OutputExpect,
    latency: Duration,
) -> Sample {
    let out = String::from_utf8_lossy(stdout);
    let err = String::from_utf8_lossy(stderr);
    if let Some(code) = want.exit_code {
        if ended != Ended::Code(code) {
            return Sample::failure(
                latency,
                format!(
                    "{}, expected exit {}{}",
                    ended_text(ended),
                    code,
                    output_hint(&out, &err)
                ),
            );
        }
    }
    let checks = [
        ("stdout", &out, &want.stdout_contains, &want.stdout_matches),
        ("stderr", &err, &want.stderr_contains, &want.stderr_matches),
    ];
    for (name, text, contains, matches) in checks {
        if let Some(c) = contains {
            if !text.contains(c.as_str()) {
                return Sample::failure(
                    latency,
                    format!(
                        "{}, {name} does not contain {c:?}; {name}: {:?}",
                        ended_text(ended),
                        tail(text)
                    ),
                );
            }
        }
        if let Some(re) = matches {
            if !re.is_match(text) {
                return Sample::failure(
                    latency,
                    format!(
                        "{}, {name} does not match /{}/; {name}: {:?}",
                        ended_text(ended),
                        re.as_str(),
                        tail(text)
                    ),
                );
            }
        }
    }
    Sample::success(latency, ended_text(ended))
}

fn ended_text(e: Ended) -> String {
    match e {
        Ended::Code(c) => format!("exit {c}"),
        Ended::Signal(s) => {
            let name = Signal::try_from(s)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| format!("signal {s}"));
            format!("killed by {name}")
        }
    }
}

/// The last part of the output, which usually says what went wrong.
fn tail(s: &str) -> String {
    const MAX: usize = 200;
    let t = s.trim();
    let n = t.chars().count();
    if n <= MAX {
        t.to_string()
    } else {
        format!("...{}", t.chars().skip(n - MAX).collect::<String>())
    }
}

fn output_hint(out: &str, err: &str) -> String {
    if !err.trim().is_empty() {
        format!("; stderr: {:?}", tail(err))
    } else if !out.trim().is_empty() {
        format!("; stdout: {:?}", tail(out))
    } else {
        String::new()
    }
}

/// Finds `program` the way exec does (see `sys::exec::find_program_in`),
/// with a message that says what to fix.
fn find_program(program: &str, path_var: &str, cwd: Option<&Path>) -> Result<PathBuf, String> {
    if program.is_empty() {
        return Err("command.run[0] (the program) is empty".into());
    }
    if let Some(p) = crate::sys::exec::find_program_in(program, path_var, cwd) {
        return Ok(p);
    }
    if program.contains('/') {
        let p = match cwd {
            Some(dir) if Path::new(program).is_relative() => dir.join(program),
            _ => PathBuf::from(program),
        };
        return Err(if p.exists() {
            format!(
                "command probe program `{program}` is not an executable file; check the path and its permissions"
            )
        } else {
            format!("command probe program `{program}` does not exist; fix the path in command.run")
        });
    }
    Err(format!(
        "command probe program `{program}` is not on PATH ({path_var}); install it or give its full path"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::record::SampleStatus;

    fn want(code: i32) -> OutputExpect {
        OutputExpect {
            exit_code: Some(code),
            stdout_contains: None,
            stdout_matches: None,
            stderr_contains: None,
            stderr_matches: None,
        }
    }

    #[test]
    fn exit_codes() {
        let s = judge(Ended::Code(0), b"", b"", &want(0), Duration::ZERO);
        assert!(s.is_success());
        assert_eq!(s.detail, "exit 0");
        let s = judge(Ended::Code(2), b"", b"boom\n", &want(0), Duration::ZERO);
        assert_eq!(s.status, SampleStatus::Failure);
        assert!(s.detail.contains("exit 2, expected exit 0"), "{}", s.detail);
        assert!(s.detail.contains("boom"), "{}", s.detail);
        assert!(judge(Ended::Code(3), b"", b"", &want(3), Duration::ZERO).is_success());
        let s = judge(Ended::Signal(9), b"", b"", &want(0), Duration::ZERO);
        assert!(s.detail.contains("killed by SIGKILL"), "{}", s.detail);
    }

    #[test]
    fn output_expectations() {
        let mut w = want(0);
        w.stdout_matches = Some(Regex::new(r"^accepting connections\s*$").unwrap());
        w.stderr_contains = Some("warn".into());
        let ok = judge(
            Ended::Code(0),
            b"accepting connections\n",
            b"a warning",
            &w,
            Duration::ZERO,
        );
        assert!(ok.is_success(), "{}", ok.detail);
        let bad = judge(
            Ended::Code(0),
            b"no response\n",
            b"warn",
            &w,
            Duration::ZERO,
        );
        assert_eq!(bad.status, SampleStatus::Failure);
        assert!(
            bad.detail.contains("stdout does not match"),
            "{}",
            bad.detail
        );
        let bad = judge(
            Ended::Code(0),
            b"accepting connections",
            b"",
            &w,
            Duration::ZERO,
        );
        assert!(
            bad.detail.contains("stderr does not contain"),
            "{}",
            bad.detail
        );
    }

    #[test]
    fn program_lookup() {
        assert!(find_program("sh", "/usr/bin:/bin", None).is_ok());
        let e = find_program("no-such-prog-xyz", "/usr/bin:/bin", None).unwrap_err();
        assert!(e.contains("`no-such-prog-xyz` is not on PATH"), "{e}");
        let e = find_program("/nonexistent/prog", "", None).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        let e = find_program("/etc/passwd", "", None).unwrap_err();
        assert!(e.contains("not an executable"), "{e}");
    }

    #[test]
    fn describe_quotes_arguments() {
        let argv = vec!["sh".to_string(), "-c".into(), "echo 'hi' there".into()];
        assert_eq!(shell_words(&argv), r#"sh -c 'echo '\''hi'\'' there'"#);
    }
}
