//! The live view on stderr: a spinner line with per-probe counters on a TTY
//! (indicatif), plain timestamped lines otherwise (CI logs), nothing with
//! `--quiet`. Sample-by-sample output is limited to a probe turning
//! failing or healthy again, so logs stay readable.

use super::events::{Event, EventSink, TimedEvent};
use crate::report::record::{Phase, SampleStatus};
use crate::sys::text::{escape, escape_text};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Tty,
    Plain,
    Quiet,
}

struct ProbeState {
    name: String,
    ok: u32,
    bad: u32,
    failing: bool,
}

pub struct LiveView {
    mode: Mode,
    color: bool,
    bar: Option<ProgressBar>,
    probes: Vec<ProbeState>,
    phase: String,
    step: String,
    /// Steps whose fault cannot be undone (process_kill): their end is not
    /// a rollback.
    irreversible_steps: std::collections::HashSet<usize>,
    /// Lines go here (at most `.1`, oldest dropped) instead of stderr: the
    /// live console shows them and prints them after the run.
    capture: Option<(Arc<Mutex<VecDeque<String>>>, usize)>,
}

impl LiveView {
    pub fn new(mode: Mode, color: bool) -> Self {
        LiveView {
            mode,
            color,
            // Started with the setup phase, after any confirmation prompt.
            bar: None,
            probes: vec![],
            phase: String::new(),
            step: String::new(),
            irreversible_steps: Default::default(),
            capture: None,
        }
    }

    /// Plain lines, without colors, kept in `log` instead of printed.
    pub fn capturing(log: Arc<Mutex<VecDeque<String>>>, max: usize) -> Self {
        let mut v = LiveView::new(Mode::Plain, false);
        v.capture = Some((log, max.max(1)));
        v
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    /// One line of the view; `s` is escaped (it holds names, targets and
    /// errors from outside), then painted with `code` when colors are on.
    fn painted(&self, at_ms: f64, code: &str, s: &str) {
        self.put(at_ms, &self.paint(code, &escape_text(s)))
    }

    fn line(&self, at_ms: f64, s: &str) {
        self.put(at_ms, &escape_text(s))
    }

    fn put(&self, at_ms: f64, s: &str) {
        let text = format!("{:>8.1}s  {s}", at_ms / 1000.0);
        if let Some((log, max)) = &self.capture {
            let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
            // One entry per line: the console shows whole lines.
            for l in text.lines() {
                if log.len() >= *max {
                    log.pop_front();
                }
                log.push_back(l.to_string());
            }
            return;
        }
        match &self.bar {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn refresh(&self) {
        if let Some(b) = &self.bar {
            let probes: Vec<String> = self
                .probes
                .iter()
                .map(|p| {
                    let mark = if p.failing {
                        self.paint("31", "✗")
                    } else {
                        self.paint("32", "✓")
                    };
                    format!("{mark} {} {}/{}", escape(&p.name), p.ok, p.ok + p.bad)
                })
                .collect();
            let step = if self.step.is_empty() {
                String::new()
            } else {
                format!(" · {}", escape(&self.step))
            };
            b.set_message(format!("{}{step} │ {}", self.phase, probes.join("  ")));
        }
    }
}

impl EventSink for LiveView {
    fn emit(&mut self, ev: &TimedEvent) {
        if self.mode == Mode::Quiet {
            return;
        }
        let t = ev.elapsed_ms;
        match &ev.event {
            Event::RunStarted {
                title,
                hypothesis,
                probes,
                ..
            } => {
                self.probes = probes
                    .iter()
                    .map(|p| ProbeState {
                        name: p.name.clone(),
                        ok: 0,
                        bad: 0,
                        failing: false,
                    })
                    .collect();
                let head = format!("faultline run {}: {title}", ev.run_id);
                self.painted(t, "1", &head);
                self.line(t, &format!("hypothesis: {hypothesis}"));
            }
            Event::PhaseStarted { phase } => {
                if self.mode == Mode::Tty && self.bar.is_none() && *phase != Phase::Preflight {
                    let b = ProgressBar::new_spinner();
                    b.set_style(
                        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    b.enable_steady_tick(Duration::from_millis(120));
                    self.bar = Some(b);
                }
                self.phase = phase.name().to_string();
                self.step.clear();
                self.painted(t, "1;36", &format!("── {} ──", phase.name()));
            }
            Event::PhaseEnded { .. } => {}
            Event::SetupStarted { name, pid, command } => self.line(
                t,
                &format!("started `{name}` (pid {pid}): {}", one_line(command)),
            ),
            Event::SetupReady { name, ready_ms } => {
                self.line(t, &format!("`{name}` is ready after {:.0}ms", ready_ms))
            }
            Event::SetupStopped { name } => self.line(t, &format!("stopped `{name}`")),
            Event::SetupExited {
                name,
                pid,
                status,
                last_stderr,
                ..
            } => {
                let mut msg = format!("setup `{name}` (pid {pid}) exited ({status})");
                if !last_stderr.trim().is_empty() {
                    msg.push_str(&format!("; last stderr:\n{}", last_stderr.trim_end()));
                }
                self.painted(t, "1;31", &msg)
            }
            Event::Sample {
                probe,
                name,
                status,
                detail,
                latency_ms,
                ..
            } => {
                let failing = *status != SampleStatus::Success;
                let mut flip = None;
                if let Some(p) = self.probes.get_mut(*probe) {
                    if failing {
                        p.bad += 1;
                    } else {
                        p.ok += 1;
                    }
                    if p.failing != failing {
                        p.failing = failing;
                        flip = Some(failing);
                    }
                }
                match flip {
                    Some(true) => {
                        let kind = if *status == SampleStatus::Error {
                            "error"
                        } else {
                            "failing"
                        };
                        self.painted(t, "31", &format!("probe `{name}` {kind}: {detail}"))
                    }
                    Some(false) => self.painted(
                        t,
                        "32",
                        &format!("probe `{name}` ok again ({detail}, {latency_ms:.1}ms)"),
                    ),
                    None => {}
                }
            }
            Event::Sampling {
                name,
                phase,
                expected,
                skipped,
                skipped_in_flight,
                cut,
                max_in_flight,
                ..
            } => {
                if *skipped > 0 || *cut > 0 {
                    let mut msg = format!(
                        "probe `{name}` {}: {} of {expected} scheduled samples started",
                        phase.name(),
                        expected.saturating_sub(*skipped)
                    );
                    if *skipped > 0 {
                        msg.push_str(&format!(" ({skipped} skipped"));
                        if *skipped_in_flight > 0 {
                            msg.push_str(&format!(
                                ", {skipped_in_flight} of them with {max_in_flight} samples in flight"
                            ));
                        }
                        msg.push(')');
                    }
                    if *cut > 0 {
                        msg.push_str(&format!(", {cut} cut unfinished when the run stopped"));
                    }
                    self.painted(t, "33", &msg)
                }
            }
            Event::SteadyState { held, detail, .. } => {
                self.painted(t, if *held { "32" } else { "31" }, detail)
            }
            Event::StepStarted { index, label, kind } => {
                self.step = format!("step {} {label}", index + 1);
                self.line(t, &format!("step {}: {label} [{kind}]", index + 1))
            }
            Event::StepEnded {
                index,
                status,
                detail,
            } => {
                let d = if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                };
                self.line(
                    t,
                    &format!("step {} {:?}{d}", index + 1, status).to_lowercase(),
                );
            }
            Event::FaultInjected {
                step,
                kind,
                target,
                inject_ms,
                ..
            } => {
                if crate::report::record::irreversible_kind(kind) {
                    self.irreversible_steps.insert(*step);
                }
                self.painted(
                    t,
                    "33",
                    &format!("injected {kind} on {target} ({inject_ms:.1}ms)"),
                )
            }
            Event::FaultInjectFailed { kind, error, .. } => {
                self.painted(t, "31", &format!("{kind} could not be injected: {error}"))
            }
            Event::FaultVerified { evidence, .. } => self.line(t, &format!("verified: {evidence}")),
            Event::FaultVerifyFailed { error, .. } => {
                self.painted(t, "31", &format!("the fault did not take effect: {error}"))
            }
            Event::FaultRolledBack {
                step,
                ok,
                error,
                rollback_ms,
                ..
            } => {
                if *ok && self.irreversible_steps.contains(step) {
                    self.line(
                        t,
                        &format!("ended ({rollback_ms:.1}ms): irreversible, killed processes are not restored"),
                    )
                } else if *ok {
                    self.painted(t, "32", &format!("rolled back ({rollback_ms:.1}ms)"))
                } else {
                    self.painted(
                        t,
                        "1;31",
                        &format!("ROLLBACK FAILED: {}", error.clone().unwrap_or_default(),),
                    )
                }
            }
            Event::FaultHealth { point, .. } => {
                if let Some(c) = &point.change {
                    self.painted(t, "1;33", c)
                }
            }
            Event::FaultActivity {
                step,
                at_s,
                message,
            } => self.painted(
                t,
                "33",
                &format!("step {} +{at_s:.1}s: {message}", step + 1),
            ),
            Event::FaultEffect { effect, .. } => {
                if let Some(p) = &effect.problem {
                    self.painted(t, "1;33", p.message())
                }
            }
            Event::EscalationLevel {
                step,
                level,
                levels,
                param,
                value,
                in_place,
                ..
            } => {
                self.step = format!(
                    "step {} level {}/{levels}: {param} {value}",
                    step + 1,
                    level + 1
                );
                self.painted(
                    t,
                    "33",
                    &format!(
                        "level {}/{levels}: {param} {value}{}",
                        level + 1,
                        if *level == 0 {
                            ""
                        } else if *in_place {
                            " (changed in place)"
                        } else {
                            " (rolled back and injected afresh)"
                        }
                    ),
                )
            }
            Event::EscalationJudged {
                level,
                held,
                probes,
                ..
            } => {
                let figures: Vec<String> = probes
                    .iter()
                    .map(|p| {
                        let mut f = format!("{} {}/{} ok", p.name, p.successes, p.samples);
                        if let Some(l) = &p.latency_ms {
                            f.push_str(&format!(", p95 {:.1}ms", l.p95));
                        }
                        f
                    })
                    .collect();
                let (code, word) = match held {
                    Some(true) => ("32", "held"),
                    Some(false) => ("1;31", "DID NOT HOLD (breaking point)"),
                    None => ("33", "not judged"),
                };
                self.painted(
                    t,
                    code,
                    &format!("level {} {word}: {}", level + 1, figures.join("; ")),
                )
            }
            Event::AbortTriggered {
                condition, reason, ..
            } => self.painted(
                t,
                "1;31",
                &format!("ABORT: {condition} ({reason}); rolling back"),
            ),
            Event::Interrupted { signal, count } => {
                let msg = if *count == 1 {
                    format!("{signal} received: rolling back (again to stop waiting for probes)")
                } else {
                    format!("{signal} received again: not waiting for probes; still rolling back")
                };
                self.painted(t, "1;33", &msg)
            }
            Event::ActionFinished {
                label,
                ok,
                duration_ms,
                detail,
                ..
            } => {
                if *ok {
                    self.line(t, &format!("`{label}` ok ({duration_ms:.0}ms)"))
                } else {
                    self.painted(t, "31", &format!("`{label}` failed: {detail}"))
                }
            }
            Event::Recovered { probe, after_ms } => match after_ms {
                Some(ms) => self.painted(
                    t,
                    "32",
                    &format!(
                        "`{probe}` recovered {} after rollback",
                        super::human_ms(*ms),
                    ),
                ),
                None => self.painted(t, "31", &format!("`{probe}` did not recover in time")),
            },
            Event::Note { message } => self.line(t, message),
            Event::Inconclusive { reason } => self.line(
                t,
                &self.paint("33", &format!("inconclusive: {}", reason.describe())),
            ),
            Event::RunFinished { .. } => {
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
                return;
            }
        }
        self.refresh();
    }
}

/// A command on one line of the log: line breaks inside arguments (an
/// inline script) are shown as `\n`, and a long command is cut.
fn one_line(command: &[String]) -> String {
    const MAX: usize = 160;
    let joined = command
        .iter()
        .map(|a| escape(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    if joined.chars().count() > MAX {
        joined.chars().take(MAX).collect::<String>() + "…"
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn an_inline_script_stays_on_one_line() {
        let cmd = vec![
            "python3".to_string(),
            "-c".into(),
            "import x\nx.run()\n".into(),
        ];
        assert_eq!(one_line(&cmd), "python3 -c import x\\nx.run()\\n");
        let long = vec!["x".repeat(500)];
        assert_eq!(one_line(&long).chars().count(), 161);
    }
}
