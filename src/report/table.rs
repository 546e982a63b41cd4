//! The terminal report: header, probe table (before / during / after), faults,
//! steps, abort, timings, manual recovery and the verdict line.
//!
//! Pure: returns a string. Without `color` it contains no escape sequence, and
//! the width is fixed (120 columns) so the output is the same with or without a
//! terminal.

use super::record::{RunRecord, SamplePhase, SampleStatus, StepStatus, Verdict};
use super::summary::{
    fmt_counts, fmt_latency, fmt_ms, fmt_offset, fmt_opt_ms, fmt_success, fmt_time,
    held_throughout, observation_lines, verdict_text, PhaseResult, RollbackResult,
};
use crate::report::summary::{fmt_expectation, fmt_outage};
use comfy_table::{presets, Attribute, Cell, CellAlignment, Color, ContentArrangement, Table};
use std::fmt::Write as _;

/// Table width in columns when the output is not a terminal.
pub const WIDTH: u16 = 120;
/// Narrower than this, tables are laid out vertically (one column of labels,
/// one of values).
pub const NARROW: u16 = 100;
/// The narrowest width rendered; a narrower terminal wraps.
const MIN_WIDTH: u16 = 40;

thread_local! {
    /// The width of the report being rendered on this thread.
    static RENDER_WIDTH: std::cell::Cell<u16> = const { std::cell::Cell::new(WIDTH) };
}

fn width() -> u16 {
    RENDER_WIDTH.with(|w| w.get())
}

fn narrow() -> bool {
    width() < NARROW
}

/// The width for a report on stdout: the terminal's (at least 40, at most
/// 160 columns), or [`WIDTH`] when stdout is not a terminal.
pub fn stdout_width() -> u16 {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return WIDTH;
    }
    crossterm::terminal::size()
        .map(|(w, _)| w.clamp(MIN_WIDTH, 160))
        .unwrap_or(WIDTH)
}

/// [`render`] for a given width: tables fit it, and below [`NARROW`]
/// columns they are laid out vertically.
pub fn render_width(rec: &RunRecord, color: bool, width: u16) -> String {
    let before = RENDER_WIDTH.with(|w| w.replace(width.max(MIN_WIDTH)));
    let out = render(rec, color);
    RENDER_WIDTH.with(|w| w.set(before));
    out
}

const BOLD: &str = "1";
const DIM: &str = "2";
const RED: &str = "31";
const GREEN: &str = "32";
const YELLOW: &str = "33";
const CYAN: &str = "36";

/// Wraps `s` in an SGR sequence when `color`.
fn paint(s: &str, sgr: &str, color: bool) -> String {
    if color {
        format!("\x1b[{sgr}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn verdict_sgr(v: Verdict) -> &'static str {
    match v {
        Verdict::Held => GREEN,
        Verdict::Aborted | Verdict::NotSteady | Verdict::Interrupted | Verdict::Inconclusive => {
            YELLOW
        }
        Verdict::Deviated
        | Verdict::RollbackFailed
        | Verdict::Invalid
        | Verdict::Precondition
        | Verdict::Privileges
        | Verdict::Internal => RED,
    }
}

/// `HELD (exit 0): hypothesis held — web answers recovered 1.2s after rollback`.
pub fn verdict_line(rec: &RunRecord, color: bool) -> String {
    safe(rec, color, verdict_line_of)
}

/// Renders `rec` with every string from it escaped for the terminal
/// (`sys::text`); colors are added after escaping.
fn safe(rec: &RunRecord, color: bool, f: fn(&RunRecord, bool) -> String) -> String {
    // The table shows no sample but whether any failed: escaping the
    // others (a long run has thousands) would only cost memory.
    let mut slim = rec.clone();
    for p in &mut slim.probes {
        p.samples.retain(|s| s.status != SampleStatus::Success);
    }
    let rec = &slim;
    match crate::sys::text::escape_strings(rec) {
        Some(rec) => f(&rec, color),
        None => crate::sys::text::escape_text(&f(rec, false)).into_owned(),
    }
}

fn verdict_line_of(rec: &RunRecord, color: bool) -> String {
    let (head, tail) = verdict_text(rec);
    let sgr = format!("{BOLD};{}", verdict_sgr(rec.outcome.verdict));
    format!("{}{tail}", paint(&head, &sgr, color))
}

fn new_table(color: bool) -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(width())
        .force_no_tty();
    if color {
        t.enforce_styling();
    }
    t
}

fn header_cell(s: &str, color: bool) -> Cell {
    let c = Cell::new(s);
    if color {
        c.add_attribute(Attribute::Bold)
    } else {
        c
    }
}

/// The cell for one probe in one phase: result, counts, latency, requirement.
fn phase_cell(rec: &RunRecord, probe_idx: usize, p: SamplePhase, color: bool) -> Cell {
    let probe = &rec.probes[probe_idx];
    let s = probe.phase(p);
    let result = PhaseResult::of(rec, s, p);
    let mut lines = Vec::new();
    lines.push(format!("{} {}", result.symbol(), result.word()));
    if result != PhaseResult::NotReached {
        lines.push(format!("{} samples, {} success", s.samples, fmt_success(s)));
        if s.samples > 0 {
            lines.push(fmt_counts(s));
        }
        if let Some(l) = &s.latency_ms {
            lines.push(format!(
                "p50 {}  p95 {}",
                fmt_latency(l.p50),
                fmt_latency(l.p95)
            ));
            lines.push(format!(
                "p99 {}  max {}",
                fmt_latency(l.p99),
                fmt_latency(l.max)
            ));
        }
    }
    if let Some(req) = &s.requirement {
        lines.push(format!("requires {req}"));
    }
    // With `max_outage` the requirement line already says it.
    if s.max_outage_ms.is_none() {
        lines.extend(fmt_outage(s));
    }
    if p == SamplePhase::After && result != PhaseResult::NotReached {
        if held_throughout(probe) {
            if s.samples > 0 {
                lines.push("held throughout".into());
            }
        } else if let Some(ms) = probe.recovered_after_ms {
            lines.push(format!("recovered {} after rollback", fmt_ms(ms)));
        }
    }
    let cell = Cell::new(lines.join("\n"));
    if !color {
        return cell;
    }
    match result {
        PhaseResult::Met => cell.fg(Color::Green),
        PhaseResult::NotMet => cell.fg(Color::Red),
        PhaseResult::NoSamples => cell.fg(Color::Yellow),
        PhaseResult::Unchecked => cell,
        PhaseResult::NotReached => cell.add_attribute(Attribute::Dim),
    }
}

fn probes_table(rec: &RunRecord, color: bool) -> Table {
    let mut t = new_table(color);
    if narrow() {
        // One row per probe and phase.
        t.set_header(["Probe", "Result"].map(|h| header_cell(h, color)));
        for (i, probe) in rec.probes.iter().enumerate() {
            t.add_row(vec![
                Cell::new(&probe.name),
                Cell::new(format!("{}: {}", probe.kind, probe.target)),
            ]);
            for p in SamplePhase::ALL {
                t.add_row(vec![
                    Cell::new(format!("  {}", p.name())),
                    phase_cell(rec, i, p, color),
                ]);
            }
        }
        return t;
    }
    let mut header = vec![header_cell("Probe", color)];
    header.extend(SamplePhase::ALL.map(|p| header_cell(p.name(), color)));
    t.set_header(header);
    for (i, probe) in rec.probes.iter().enumerate() {
        let mut row = vec![Cell::new(format!(
            "{}\n{}: {}",
            probe.name, probe.kind, probe.target
        ))];
        row.extend(SamplePhase::ALL.map(|p| phase_cell(rec, i, p, color)));
        t.add_row(row);
    }
    t
}

fn faults_table(rec: &RunRecord, color: bool) -> Table {
    let mut t = new_table(color);
    if narrow() {
        t.set_header(["Fault", ""].map(|h| header_cell(h, color)));
    } else {
        t.set_header(
            [
                "#",
                "Fault",
                "Injected",
                "Rolled back",
                "Evidence and observations",
            ]
            .map(|h| header_cell(h, color)),
        );
    }
    for f in &rec.faults {
        let mut injected = Vec::new();
        match f.injected_at_ms {
            Some(at) => injected.push(format!("at {}", fmt_offset(at))),
            None => injected.push("not injected".into()),
        }
        if let Some(ms) = f.inject_ms {
            injected.push(format!("inject {}", fmt_ms(ms)));
        }
        if let Some(ms) = f.verify_ms {
            injected.push(format!("verify {}", fmt_ms(ms)));
        }
        let inject_failed = f.inject_error.is_some();
        if let Some(e) = &f.inject_error {
            injected.push(format!("✗ {e}"));
        }

        let never_injected = f.injected_at_ms.is_none() && !inject_failed;
        let mut rolled = Vec::new();
        let result = RollbackResult::of(f);
        let symbol = match result {
            RollbackResult::NothingToUndo | RollbackResult::Irreversible => "–",
            RollbackResult::RolledBack => "✓",
            RollbackResult::NotRolledBack => "✗",
        };
        rolled.push(format!("{symbol} {}", result.words()));
        if result == RollbackResult::Irreversible {
            rolled.push("(killed processes are not restored)".into());
        }
        if let Some(at) = f.rolled_back_at_ms {
            rolled.push(format!("at {}", fmt_offset(at)));
        }
        if let Some(ms) = f
            .rollback_ms
            .filter(|_| result != RollbackResult::Irreversible)
        {
            rolled.push(format!("took {}", fmt_ms(ms)));
        }
        if let Some(e) = &f.rollback_error {
            rolled.push(e.clone());
        }

        let mut evidence = Vec::new();
        match &f.verified {
            Some(v) => evidence.push(format!("verified: {v}")),
            None if f.injected_at_ms.is_some() && !inject_failed => {
                evidence.push("not verified".into())
            }
            None => {}
        }
        evidence.extend(observation_lines(&f.observations));
        if let Some(e) = &f.expectation {
            evidence.push(fmt_expectation(e));
        }
        if never_injected && !f.operations.is_empty() {
            evidence.push("planned:".into());
            evidence.extend(f.operations.iter().map(|o| format!("  {o}")));
        }

        let mut inj_cell = Cell::new(injected.join("\n"));
        let mut rb_cell = Cell::new(rolled.join("\n"));
        if color {
            if never_injected {
                inj_cell = inj_cell.add_attribute(Attribute::Dim);
            } else if inject_failed || f.verified.is_none() {
                inj_cell = inj_cell.fg(Color::Red);
            }
            rb_cell = match result {
                RollbackResult::RolledBack => rb_cell.fg(Color::Green),
                RollbackResult::NotRolledBack => rb_cell.fg(Color::Red),
                RollbackResult::Irreversible => rb_cell.fg(Color::Yellow),
                RollbackResult::NothingToUndo => rb_cell,
            };
        }
        if narrow() {
            t.add_row(vec![
                Cell::new(format!("{}. {}", f.step + 1, f.label)),
                Cell::new(format!("{}\n{}", f.kind, f.target)),
            ]);
            t.add_row(vec![Cell::new("  injected"), inj_cell]);
            t.add_row(vec![Cell::new("  rolled back"), rb_cell]);
            if !evidence.is_empty() {
                t.add_row(vec![
                    Cell::new("  evidence"),
                    Cell::new(evidence.join("\n")),
                ]);
            }
            continue;
        }
        t.add_row(vec![
            Cell::new(f.step + 1).set_alignment(CellAlignment::Right),
            Cell::new(format!("{}\n{}\n{}", f.label, f.kind, f.target)),
            inj_cell,
            rb_cell,
            Cell::new(evidence.join("\n")),
        ]);
    }
    t
}

fn section(out: &mut String, title: &str, color: bool) {
    let _ = writeln!(out, "\n{}", paint(title, &format!("{BOLD};{CYAN}"), color));
}

fn step_symbol(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Completed => "✓",
        StepStatus::Failed => "✗",
        StepStatus::Interrupted => "!",
        StepStatus::Skipped => "–",
    }
}

fn step_status_word(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Completed => "completed",
        StepStatus::Failed => "failed",
        StepStatus::Interrupted => "interrupted",
        StepStatus::Skipped => "skipped",
    }
}

/// Word-wraps `text` to [`WIDTH`] columns, the first line after `first`, the
/// others after `rest`; each line painted with `sgr` when `color`. A word
/// longer than the width (a command, a URL) is kept whole.
fn put(out: &mut String, first: &str, rest: &str, text: &str, sgr: Option<&str>, color: bool) {
    let width = width() as usize;
    let mut lines: Vec<String> = Vec::new();
    let mut cur = first.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        let len = cur.chars().count();
        if !empty && len + 1 + word.chars().count() > width {
            lines.push(std::mem::replace(&mut cur, rest.to_string()));
            empty = true;
        }
        if !empty {
            cur.push(' ');
        }
        cur.push_str(word);
        empty = false;
    }
    lines.push(cur);
    for l in lines {
        let l = match sgr {
            Some(sgr) => paint(&l, sgr, color),
            None => l,
        };
        let _ = writeln!(out, "{l}");
    }
}

/// The whole terminal report, ending with the verdict line and a newline.
pub fn render(rec: &RunRecord, color: bool) -> String {
    safe(rec, color, render_escaped)
}

fn render_escaped(rec: &RunRecord, color: bool) -> String {
    let mut out = String::new();
    let e = &rec.experiment;
    put(&mut out, "", "", &e.title, Some(BOLD), color);
    put(&mut out, "Hypothesis: ", "  ", &e.hypothesis, None, color);
    if let Some(d) = e.description.as_deref().filter(|d| !d.trim().is_empty()) {
        put(&mut out, "", "", d, None, color);
    }
    let about = format!(
        "Run {} on {} · started {} · took {}",
        rec.run_id,
        rec.host,
        fmt_time(&rec.started_at),
        fmt_ms(rec.timings.total_ms),
    );
    put(&mut out, "", "  ", &about, Some(DIM), color);
    let file = format!(
        "Experiment {} · faultline {}",
        e.file, rec.faultline_version
    );
    put(&mut out, "", "  ", &file, Some(DIM), color);

    section(&mut out, "Steady state", color);
    if rec.probes.is_empty() {
        let _ = writeln!(out, "  no probes");
    } else {
        let _ = writeln!(out, "{}", probes_table(rec, color));
    }

    section(&mut out, "Faults", color);
    if rec.faults.is_empty() {
        let _ = writeln!(out, "  no fault was injected");
    } else {
        let _ = writeln!(out, "{}", faults_table(rec, color));
    }

    if !rec.steps.is_empty() {
        section(&mut out, "Steps", color);
        for s in &rec.steps {
            let when = match (s.started_ms, s.ended_ms) {
                (Some(a), Some(b)) => format!("  {} → {}", fmt_offset(a), fmt_offset(b)),
                (Some(a), None) => format!("  from {}", fmt_offset(a)),
                _ => String::new(),
            };
            let detail = if s.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", s.detail)
            };
            let line = format!(
                "{} {}. {} ({}, {}){when}{detail}",
                step_symbol(s.status),
                s.index + 1,
                s.label,
                s.kind,
                step_status_word(s.status)
            );
            put(&mut out, "  ", "      ", &line, None, color);
        }
    }

    if let Some(a) = &rec.abort {
        section(&mut out, "Abort", color);
        // No probe for a deadline, `faultline stop` or the emergency stop.
        let by = if a.probe.is_empty() {
            String::new()
        } else {
            format!(" (probe {})", a.probe)
        };
        let line = format!("aborted at {}: {}{by}", fmt_offset(a.at_ms), a.condition);
        put(&mut out, "  ", "    ", &line, Some(YELLOW), color);
        put(&mut out, "  ", "    ", &a.reason, None, color);
    }

    if !rec.warnings.is_empty() {
        section(&mut out, "Warnings", color);
        for w in &rec.warnings {
            put(&mut out, "  ", "    ", w, Some(YELLOW), color);
        }
    }

    if !rec.rollbacks.is_empty() {
        section(&mut out, "Rollback actions", color);
        for r in &rec.rollbacks {
            let code = r
                .exit_code
                .map(|c| format!(", exit {c}"))
                .unwrap_or_default();
            let detail = if r.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", r.detail)
            };
            let line = format!(
                "{} {} ({}{code}) `{}`{detail}",
                if r.ok { "✓" } else { "✗" },
                r.label,
                fmt_ms(r.duration_ms),
                r.command.join(" ")
            );
            let sgr = (!r.ok).then_some(RED);
            put(&mut out, "  ", "    ", &line, sgr, color);
        }
    }

    if let Some(e) = &rec.escalation {
        section(
            &mut out,
            &format!(
                "Escalation of {} (step {}, {} each)",
                e.param,
                e.step + 1,
                fmt_ms(e.hold_ms)
            ),
            color,
        );
        for l in &e.levels {
            let sgr = match l.held {
                Some(true) => None,
                Some(false) => Some(RED),
                None => Some(YELLOW),
            };
            put(&mut out, "  ", "    ", &l.line(), sgr, color);
        }
        let reached = e.levels.len();
        if reached < e.values.len() {
            put(
                &mut out,
                "  ",
                "    ",
                &format!("not reached: {}", e.values[reached..].join(", ")),
                None,
                color,
            );
        }
        put(&mut out, "  ", "    ", &e.summary(), Some(BOLD), color);
    }

    if !rec.groups.is_empty() {
        section(&mut out, "Experiment group vs control group", color);
        for g in &rec.groups {
            let sgr = g.significant.then_some(YELLOW);
            put(
                &mut out,
                "  ",
                "    ",
                &format!("{}: {}", g.phase.name(), g.summary),
                sgr,
                color,
            );
        }
    }

    if !rec.inconclusive.is_empty() {
        section(
            &mut out,
            "Inconclusive: not what the experiment said",
            color,
        );
        for r in &rec.inconclusive {
            let at = r.at_ms.map(|ms| format!(" at {}", fmt_offset(ms)));
            let line = format!(
                "? {} ({}){}: {}",
                r.subject,
                r.kind.name(),
                at.unwrap_or_default(),
                r.message
            );
            put(&mut out, "  ", "    ", &line, Some(YELLOW), color);
        }
    }

    if !rec.complete {
        section(
            &mut out,
            "Unfinished: the runner did not end this run",
            color,
        );
        let line = match rec.last_phase {
            Some(p) => format!(
                "Last written by the runner during the {} phase; what follows that moment is missing.",
                p.name()
            ),
            None => "The runner never wrote the end of this run; what follows its last write is missing.".into(),
        };
        put(&mut out, "  ", "  ", &line, Some(YELLOW), color);
        match &rec.ended_by {
            Some(e) => {
                let line = format!("Ended by the {} at {}: {}.", e.by, fmt_time(&e.at), e.reason);
                put(&mut out, "  ", "  ", &line, None, color);
                if e.restored.is_empty() && e.not_restored.is_empty() {
                    put(&mut out, "  ", "  ", "Nothing was left to roll back.", None, color);
                }
                for r in &e.restored {
                    put(&mut out, "  ✓ restored: ", "      ", r, None, color);
                }
                for r in &e.not_restored {
                    put(&mut out, "  ✗ NOT restored: ", "      ", r, Some(RED), color);
                }
            }
            None => put(
                &mut out,
                "  ",
                "  ",
                "No watchdog marked it: the run may still be going on, or its watchdog could not update this file. `faultline status` shows what is still active on the host.",
                None,
                color,
            ),
        }
    }

    section(&mut out, "Timings", color);
    let t = &rec.timings;
    let line = format!(
        "time to detect {} · time to abort {} · time to recover {} · rollback {} · total {}",
        fmt_opt_ms(t.time_to_detect_ms),
        fmt_opt_ms(t.time_to_abort_ms),
        fmt_opt_ms(t.time_to_recover_ms),
        fmt_opt_ms(t.rollback_ms),
        fmt_ms(t.total_ms)
    );
    put(&mut out, "  ", "  ", &line, None, color);

    if !rec.manual_recovery.is_empty() {
        section(&mut out, "Manual recovery needed", color);
        let line = format!(
            "Faults may remain on {}. Run `faultline recover {}`, or these commands as root:",
            rec.host, rec.run_id
        );
        put(&mut out, "  ", "  ", &line, None, color);
        // Commands are printed whole, to be copied.
        for c in &rec.manual_recovery {
            let _ = writeln!(out, "    {}", paint(c, RED, color));
        }
    }

    let _ = writeln!(out);
    let _ = writeln!(out, "{}", verdict_line_of(rec, color));
    out
}

#[cfg(test)]
mod tests {
    use super::super::summary::testdata;
    use super::*;

    #[test]
    fn no_color_means_no_escape_and_stable_width() {
        let r = testdata::held();
        let out = render(&r, false);
        assert!(!out.contains('\x1b'), "{out}");
        assert!(out.contains("web | api"));
        assert!(out.contains("✓ met"));
        assert!(out.contains("p95 8.5ms"));
        assert!(out.contains("verified: pid 4242 state T (stopped)"));
        assert!(out.contains("processes: 1 (comm=worker pid=4242)"));
        assert!(out.contains("recovered 1.20s after rollback"));
        for line in out.lines().filter(|l| !l.starts_with("HELD")) {
            assert!(
                line.chars().count() <= WIDTH as usize,
                "line wider than {WIDTH}: {line}"
            );
        }
        assert!(out.ends_with(&format!("{}\n", verdict_line(&r, false))));
    }

    #[test]
    fn color_adds_escapes() {
        let r = testdata::held();
        assert!(render(&r, true).contains("\x1b["));
        let v = verdict_line(&r, true);
        assert!(v.starts_with("\x1b[1;32mHELD (exit 0)\x1b[0m"), "{v:?}");
    }

    #[test]
    fn verdict_line_has_code_meaning_and_reason() {
        let r = testdata::held();
        assert_eq!(
            verdict_line(&r, false),
            "HELD (exit 0): hypothesis held — web | api recovered 1.2s after rollback"
        );
        let bare = testdata::bare();
        assert_eq!(
            verdict_line(&bare, false),
            "NOT STEADY (exit 3): steady state not met before injection (nothing injected)"
        );
    }

    #[test]
    fn no_faults_no_samples_no_latency() {
        let r = testdata::bare();
        let out = render(&r, false);
        assert!(out.contains("no fault was injected"));
        assert!(out.contains("– not reached"));
        assert!(out.contains("✗ not met"));
        assert!(out.contains("ok 0 · fail 0 · err 3"));
        assert!(!out.contains("p50"), "no latency was recorded: {out}");
        assert!(!out.contains("Steps"));
        assert!(out.contains("time to detect — "));
    }

    #[test]
    fn long_text_wraps() {
        let mut r = testdata::held();
        r.experiment.hypothesis = "word ".repeat(60);
        let out = render(&r, false);
        let hyp: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.starts_with("Hypothesis:"))
            .take(3)
            .collect();
        assert!(hyp[0].chars().count() <= WIDTH as usize);
        assert!(hyp[1].starts_with("  word"), "{hyp:?}");
    }

    #[test]
    fn inconclusive_reasons_are_listed_before_the_verdict() {
        let mut r = testdata::held();
        r.outcome = crate::report::record::Outcome {
            verdict: Verdict::Inconclusive,
            exit_code: 5,
            reason: "fault 1 `pause worker`: gone".into(),
        };
        r.inconclusive
            .push(crate::report::record::InconclusiveReason {
                at_ms: Some(4_100.0),
                ..crate::report::record::InconclusiveReason::fault_missing(
                    0,
                    "pause worker",
                    "process resumed from outside",
                )
            });
        let out = render(&r, false);
        assert!(
            out.contains("? fault 1 `pause worker` (fault_missing) at +4.10s: process resumed"),
            "{out}"
        );
        assert!(out.ends_with(
            "INCONCLUSIVE (exit 5): the experiment did not test what it said, so it cannot be held — fault 1 `pause worker`: gone\n"
        ), "{out}");
    }

    #[test]
    fn empty_record_renders() {
        let mut r = testdata::bare();
        r.probes.clear();
        r.phases.clear();
        let out = render(&r, false);
        assert!(out.contains("no probes"));
    }
}
