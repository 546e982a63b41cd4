//! The post-experiment report in GitHub-flavoured Markdown, for a team's
//! knowledge base: verdict, hypothesis, what was injected, results per probe
//! and phase, timings, abort, rollback and steps.

use super::record::{RunRecord, SamplePhase, StepStatus};
use super::summary::{
    fmt_counts, fmt_latency, fmt_ms, fmt_offset, fmt_opt_ms, fmt_success, fmt_time,
    held_throughout, observation_lines, verdict_text, PhaseResult, RollbackResult,
};
use crate::report::summary::{fmt_expectation, fmt_outage};
use std::fmt::Write as _;

/// Text for a table cell: `|` escaped, line breaks as `<br>`.
pub fn cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace("\r\n", "<br>")
        .replace('\n', "<br>")
}

/// Text outside tables: characters that would start Markdown markup escaped.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(
            ch,
            '\\' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '#' | '|'
        ) {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Inline code that survives backticks in the content.
fn code(s: &str) -> String {
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    if longest == 0 {
        format!("`{s}`")
    } else {
        let fence = "`".repeat(longest + 1);
        format!("{fence} {s} {fence}")
    }
}

/// A table from a header and rows; every row gets exactly as many cells as the header.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}|",
        header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for r in rows {
        let mut cells: Vec<String> = r.clone();
        cells.resize(header.len(), String::new());
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}

fn result_word(r: PhaseResult) -> String {
    match r {
        PhaseResult::Met => "✅ met".into(),
        PhaseResult::NotMet => "❌ **not met**".into(),
        PhaseResult::Unchecked => "not checked".into(),
        PhaseResult::NoSamples => "⚠️ no samples".into(),
        PhaseResult::NotReached => "— not reached".into(),
    }
}

fn step_word(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Completed => "✅ completed",
        StepStatus::Failed => "❌ failed",
        StepStatus::Interrupted => "⚠️ interrupted",
        StepStatus::Skipped => "— skipped",
    }
}

/// The whole Markdown report.
pub fn render(rec: &RunRecord) -> String {
    // Markdown is read on terminals too (`cat`, `less -R`).
    crate::sys::text::escape_text(&render_unescaped(rec)).into_owned()
}

fn render_unescaped(rec: &RunRecord) -> String {
    let mut out = String::new();
    let e = &rec.experiment;
    let _ = writeln!(out, "# {}\n", text(&e.title));

    // The meaning is faultline's own Markdown-safe text; the reason is escaped.
    let code_ = rec.outcome.exit_code;
    let reason = rec.outcome.reason.trim();
    if rec.complete {
        let _ = writeln!(
            out,
            "**Verdict: {} (exit {code_})**: {}{}\n",
            rec.outcome.verdict.label(),
            crate::exit::meaning(code_),
            if reason.is_empty() {
                String::new()
            } else {
                format!(" — {}", text(reason))
            }
        );
    } else {
        let (head, _) = verdict_text(rec);
        let _ = writeln!(out, "**Verdict: {head}**: {}\n", text(reason));
        let _ = writeln!(
            out,
            "⚠️ This run did not finish: the runner stopped{} before it wrote the end of the run, so this record ends at its last write.\n",
            rec.last_phase
                .map(|p| format!(" during the {} phase", p.name()))
                .unwrap_or_default()
        );
        if let Some(e) = &rec.ended_by {
            let _ = writeln!(
                out,
                "Ended by the {} at {}: {}.\n",
                text(&e.by),
                fmt_time(&e.at),
                text(&e.reason)
            );
            for r in &e.restored {
                let _ = writeln!(out, "- ✅ restored: {}", text(r));
            }
            for r in &e.not_restored {
                let _ = writeln!(out, "- ❌ **not restored**: {}", code(r));
            }
            if !e.restored.is_empty() || !e.not_restored.is_empty() {
                out.push('\n');
            }
        }
    }
    if !rec.inconclusive.is_empty() {
        let _ = writeln!(out, "The experiment did not test what it said:\n");
        for r in &rec.inconclusive {
            let at = r
                .at_ms
                .map(|ms| format!(" at {}", fmt_offset(ms)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "- ⚠️ {} ({}){at}: {}",
                text(&r.subject),
                code(r.kind.name()),
                text(&r.message)
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "> **Hypothesis:** {}\n", text(&e.hypothesis));
    if let Some(d) = e.description.as_deref().filter(|d| !d.trim().is_empty()) {
        let _ = writeln!(out, "{}\n", d.trim());
    }

    let mut about = vec![
        vec!["Run".into(), cell(&code(&rec.run_id))],
        vec!["Host".into(), cell(&rec.host)],
        vec!["Experiment file".into(), cell(&code(&e.file))],
        vec!["Started".into(), fmt_time(&rec.started_at)],
        vec![
            "Ended".into(),
            format!(
                "{} (took {})",
                fmt_time(&rec.ended_at),
                fmt_ms(rec.timings.total_ms)
            ),
        ],
    ];
    if !e.tags.is_empty() {
        about.push(vec!["Tags".into(), cell(&e.tags.join(", "))]);
    }
    about.push(vec!["faultline".into(), cell(&rec.faultline_version)]);
    table(&mut out, &["", ""], &about);

    if let Some(esc) = &rec.escalation {
        let _ = writeln!(
            out,
            "## Escalation of {} (step {}, {} each)\n",
            code(&esc.param),
            esc.step + 1,
            fmt_ms(esc.hold_ms)
        );
        let _ = writeln!(out, "**{}**\n", text(&esc.summary()));
        let rows: Vec<Vec<String>> = esc
            .levels
            .iter()
            .map(|l| {
                vec![
                    format!("{}", l.index + 1),
                    cell(&l.value),
                    match l.held {
                        Some(true) => "held".into(),
                        Some(false) => "**did not hold**".into(),
                        None => "not judged".into(),
                    },
                    cell(
                        &l.probes
                            .iter()
                            .map(|p| {
                                format!(
                                    "{} {}/{} ok{}",
                                    p.name,
                                    p.successes,
                                    p.samples,
                                    p.latency_ms
                                        .map(|x| format!(
                                            ", p50 {}, p95 {}",
                                            fmt_ms(x.p50),
                                            fmt_ms(x.p95)
                                        ))
                                        .unwrap_or_default()
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("; "),
                    ),
                    if l.in_place {
                        "in place".into()
                    } else {
                        "injected".into()
                    },
                ]
            })
            .collect();
        table(
            &mut out,
            &["Level", "Value", "Result", "Probes", "Set"],
            &rows,
        );
    }
    if !rec.groups.is_empty() {
        let _ = writeln!(out, "## Experiment group vs control group\n");
        let rows: Vec<Vec<String>> = rec
            .groups
            .iter()
            .map(|g| {
                vec![
                    g.phase.name().to_string(),
                    cell(&g.summary),
                    if g.significant {
                        "**yes**".into()
                    } else {
                        "no".into()
                    },
                ]
            })
            .collect();
        table(&mut out, &["Phase", "Comparison", "Significant"], &rows);
    }
    let _ = writeln!(out, "## What was injected\n");
    if rec.faults.is_empty() {
        let _ = writeln!(out, "Nothing was injected.\n");
    }
    for f in &rec.faults {
        let _ = writeln!(
            out,
            "### {}. {} — {} on {}\n",
            f.step + 1,
            text(&f.label),
            code(&f.kind),
            text(&f.target)
        );
        match f.injected_at_ms {
            Some(at) => {
                let _ = writeln!(
                    out,
                    "- Injected at {} (injection {}, verification {})",
                    fmt_offset(at),
                    fmt_opt_ms(f.inject_ms),
                    fmt_opt_ms(f.verify_ms)
                );
            }
            None => {
                let _ = writeln!(out, "- Not injected");
            }
        }
        if let Some(err) = &f.inject_error {
            let _ = writeln!(out, "- **Injection failed:** {}", text(err));
        }
        match &f.verified {
            Some(v) => {
                let _ = writeln!(out, "- Verified: {}", text(v));
            }
            None if f.injected_at_ms.is_some() => {
                let _ = writeln!(out, "- **Not verified**");
            }
            None => {}
        }
        if let (Some(a), Some(b)) = (f.injected_at_ms, f.rolled_back_at_ms) {
            let _ = writeln!(out, "- Active for {}", fmt_ms(b - a));
        }
        if let Some(e) = &f.expectation {
            let _ = writeln!(out, "- {}", text(&fmt_expectation(e)));
        }
        let obs = observation_lines(&f.observations);
        if !obs.is_empty() {
            let _ = writeln!(out, "- Observations:");
            for o in obs {
                let _ = writeln!(out, "  - {}", text(&o));
            }
        }
        if !f.operations.is_empty() {
            let never_injected = f.injected_at_ms.is_none() && f.inject_error.is_none();
            let _ = writeln!(
                out,
                "- {}:",
                if never_injected {
                    "Planned operations (not performed)"
                } else {
                    "Operations"
                }
            );
            for o in &f.operations {
                let _ = writeln!(out, "  - {}", code(o));
            }
        }
        out.push('\n');
    }

    let _ = writeln!(out, "## Results\n");
    if rec.probes.is_empty() {
        let _ = writeln!(out, "No probes.\n");
    } else {
        let mut rows = Vec::new();
        for probe in &rec.probes {
            for p in SamplePhase::ALL {
                let s = probe.phase(p);
                let r = PhaseResult::of(rec, s, p);
                let reached = r != PhaseResult::NotReached;
                rows.push(vec![
                    cell(&probe.name),
                    p.name().into(),
                    if reached {
                        s.samples.to_string()
                    } else {
                        "—".into()
                    },
                    if reached {
                        fmt_success(s)
                    } else {
                        "—".into()
                    },
                    if reached && s.samples > 0 {
                        fmt_counts(s)
                    } else {
                        "—".into()
                    },
                    s.latency_ms
                        .map(|l| fmt_latency(l.p95))
                        .unwrap_or_else(|| "—".into()),
                    cell(s.requirement.as_deref().unwrap_or("—")),
                    result_word(r),
                ]);
            }
        }
        table(
            &mut out,
            &[
                "Probe",
                "Phase",
                "Samples",
                "Success",
                "Counts",
                "p95",
                "Requirement",
                "Result",
            ],
            &rows,
        );
        // A probe that never failed did not recover from anything.
        let recovered: Vec<_> = rec
            .probes
            .iter()
            .filter(|p| !held_throughout(p))
            .filter_map(|p| p.recovered_after_ms.map(|ms| (p, ms)))
            .collect();
        for (p, ms) in &recovered {
            let _ = writeln!(
                out,
                "- {} recovered {} after rollback",
                code(&p.name),
                fmt_ms(*ms)
            );
        }
        let held: Vec<_> = rec
            .probes
            .iter()
            .filter(|p| held_throughout(p) && p.after.samples > 0)
            .collect();
        for p in &held {
            let _ = writeln!(out, "- {} held throughout", code(&p.name));
        }
        let outages: Vec<_> = rec
            .probes
            .iter()
            .filter_map(|p| fmt_outage(&p.during).map(|o| (p, o)))
            .collect();
        for (p, o) in &outages {
            let _ = writeln!(out, "- {} during the method: {o}", code(&p.name));
        }
        if !recovered.is_empty() || !held.is_empty() || !outages.is_empty() {
            out.push('\n');
        }
    }

    let t = &rec.timings;
    let _ = writeln!(out, "## Timings\n");
    table(
        &mut out,
        &["Measure", "Value"],
        &[
            vec!["Time to detect".into(), fmt_opt_ms(t.time_to_detect_ms)],
            vec!["Time to abort".into(), fmt_opt_ms(t.time_to_abort_ms)],
            vec!["Time to recover".into(), fmt_opt_ms(t.time_to_recover_ms)],
            vec!["Rollback".into(), fmt_opt_ms(t.rollback_ms)],
            vec!["Total".into(), fmt_ms(t.total_ms)],
        ],
    );

    if let Some(a) = &rec.abort {
        let _ = writeln!(out, "## Abort\n");
        let by = if a.probe.is_empty() {
            String::new()
        } else {
            format!(" by probe {}", code(&a.probe))
        };
        let _ = writeln!(
            out,
            "Aborted at {}{by}: {}\n",
            fmt_offset(a.at_ms),
            text(&a.condition)
        );
        let _ = writeln!(out, "> {}\n", text(&a.reason));
    }

    if !rec.warnings.is_empty() {
        let _ = writeln!(out, "## Warnings\n");
        for w in &rec.warnings {
            let _ = writeln!(out, "- {}", text(w));
        }
        let _ = writeln!(out);
    }

    let _ = writeln!(out, "## Rollback\n");
    if rec.faults.is_empty() && rec.rollbacks.is_empty() {
        let _ = writeln!(out, "Nothing to roll back.\n");
    }
    if !rec.faults.is_empty() {
        let rows: Vec<Vec<String>> = rec
            .faults
            .iter()
            .map(|f| {
                vec![
                    format!("{}. {}", f.step + 1, cell(&f.label)),
                    match RollbackResult::of(f) {
                        RollbackResult::NothingToUndo => "— nothing to undo".into(),
                        RollbackResult::Irreversible => {
                            "— irreversible: killed processes are not restored".into()
                        }
                        RollbackResult::RolledBack => "✅ rolled back".into(),
                        RollbackResult::NotRolledBack => "❌ **not rolled back**".into(),
                    },
                    f.rolled_back_at_ms
                        .map(fmt_offset)
                        .unwrap_or_else(|| "—".into()),
                    fmt_opt_ms(f.rollback_ms),
                    cell(f.rollback_error.as_deref().unwrap_or("")),
                ]
            })
            .collect();
        table(&mut out, &["Fault", "Result", "At", "Took", "Error"], &rows);
    }
    if !rec.rollbacks.is_empty() {
        let rows: Vec<Vec<String>> = rec
            .rollbacks
            .iter()
            .map(|r| {
                vec![
                    cell(&r.label),
                    cell(&code(&r.command.join(" "))),
                    if r.ok {
                        "✅ ok".into()
                    } else {
                        "❌ failed".into()
                    },
                    r.exit_code
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "—".into()),
                    fmt_ms(r.duration_ms),
                    cell(&r.detail),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "Rollback action",
                "Command",
                "Result",
                "Exit",
                "Took",
                "Detail",
            ],
            &rows,
        );
    }
    if !rec.manual_recovery.is_empty() {
        let _ = writeln!(
            out,
            "**Manual recovery needed:** faults may remain on {}. Run `faultline recover {}`, or these commands as root:\n",
            text(&rec.host),
            rec.run_id
        );
        let _ = writeln!(out, "```sh");
        for c in &rec.manual_recovery {
            let _ = writeln!(out, "{c}");
        }
        let _ = writeln!(out, "```\n");
    }

    if !rec.steps.is_empty() {
        let _ = writeln!(out, "## Steps\n");
        let rows: Vec<Vec<String>> = rec
            .steps
            .iter()
            .map(|s| {
                vec![
                    (s.index + 1).to_string(),
                    cell(&s.label),
                    cell(&s.kind),
                    step_word(s.status).into(),
                    s.started_ms.map(fmt_offset).unwrap_or_else(|| "—".into()),
                    s.ended_ms.map(fmt_offset).unwrap_or_else(|| "—".into()),
                    cell(&s.detail),
                ]
            })
            .collect();
        table(
            &mut out,
            &["#", "Step", "Kind", "Status", "Start", "End", "Detail"],
            &rows,
        );
    }

    knowledge_base(&mut out, rec);

    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// The sections a knowledge-base entry needs (design, observed behaviour,
/// root cause, remediation): what the run knows filled in, clear places for
/// what people must write.
fn knowledge_base(out: &mut String, rec: &RunRecord) {
    let _ = writeln!(
        out,
        "## Knowledge base entry
"
    );
    let _ = writeln!(
        out,
        "### Experiment design
"
    );
    let _ = writeln!(
        out,
        "- **Hypothesis:** {}",
        text(&rec.experiment.hypothesis)
    );
    for p in &rec.probes {
        let _ = writeln!(
            out,
            "- **Steady state:** probe {} ({}: {})",
            code(&p.name),
            text(&p.kind),
            code(&p.target)
        );
    }
    for f in &rec.faults {
        let _ = writeln!(
            out,
            "- **Fault {}:** {} on {} ({})",
            f.step + 1,
            code(&f.kind),
            code(&f.target),
            text(&f.label)
        );
    }
    let _ = writeln!(
        out,
        "\n### Observed behaviour
"
    );
    let _ = writeln!(
        out,
        "- **Verdict:** {} (exit {}): {}",
        rec.outcome.verdict.label(),
        rec.outcome.exit_code,
        text(rec.outcome.reason.trim())
    );
    for p in &rec.probes {
        let d = &p.during;
        let p95 = d
            .latency_ms
            .as_ref()
            .map(|l| format!(", p95 {}", fmt_ms(l.p95)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "- **{}** during the faults: {} of {} samples succeeded{p95}",
            text(&p.name),
            d.successes,
            d.samples
        );
    }
    let t = &rec.timings;
    let _ = writeln!(
        out,
        "- **Time to detect** {} · **time to abort** {} · **time to recover** {}",
        fmt_opt_ms(t.time_to_detect_ms),
        fmt_opt_ms(t.time_to_abort_ms),
        fmt_opt_ms(t.time_to_recover_ms)
    );
    let _ = writeln!(
        out,
        "- _What people saw (dashboards, alerts, pages) — to be written by the team._"
    );
    let _ = writeln!(
        out,
        "\n### Root cause analysis
"
    );
    let _ = writeln!(
        out,
        "_To be written by the team: why the system behaved as observed; link incidents, traces and dashboards._"
    );
    let _ = writeln!(
        out,
        "\n### Remediation
"
    );
    let _ = writeln!(
        out,
        "- [ ] _Action — owner — due date (to be written by the team)_\n"
    );
}

#[cfg(test)]
mod tests {
    use super::super::summary::testdata;
    use super::*;

    /// Unescaped `|` in a line.
    fn pipes(line: &str) -> usize {
        let mut n = 0;
        let mut escaped = false;
        for c in line.chars() {
            match c {
                '\\' if !escaped => escaped = true,
                '|' if !escaped => n += 1,
                _ => escaped = false,
            }
            if c != '\\' {
                escaped = false;
            }
        }
        n
    }

    #[test]
    fn cells_escape_pipes_and_newlines() {
        assert_eq!(cell("a|b\nc"), "a\\|b<br>c");
        assert_eq!(pipes(&format!("| {} | x |", cell("a|b"))), 3);
        assert_eq!(code("a`b"), "`` a`b ``");
        assert_eq!(code("ab"), "`ab`");
    }

    #[test]
    fn held_report() {
        let md = render(&testdata::held());
        assert!(md.starts_with("# Web survives a paused worker\n"));
        assert!(md.contains("**Verdict: HELD (exit 0)**: hypothesis held"));
        assert!(md.contains("> **Hypothesis:** web answers 95% of requests"));
        assert!(md.contains("| web \\| api | during | 10 | 90% |"), "{md}");
        assert!(md.contains("- Verified: pid 4242 state T (stopped)"));
        // Every table row has as many unescaped pipes as its header.
        let mut expected = None;
        for line in md.lines() {
            if line.starts_with('|') {
                let n = pipes(line);
                assert_eq!(*expected.get_or_insert(n), n, "{line}");
            } else {
                expected = None;
            }
        }
    }

    #[test]
    fn inconclusive_reasons_are_listed_under_the_verdict() {
        let mut r = testdata::held();
        r.outcome.verdict = crate::report::record::Verdict::Inconclusive;
        r.outcome.exit_code = 5;
        r.inconclusive
            .push(crate::report::record::InconclusiveReason::setup_died(
                "web",
                "exited with status 1: Address already in use",
            ));
        let md = render(&r);
        assert!(md.contains("**Verdict: INCONCLUSIVE (exit 5)**"), "{md}");
        assert!(
            md.contains("- ⚠️ setup \\`web\\` (`setup_died`): exited with status 1"),
            "{md}"
        );
    }

    #[test]
    fn bare_report_no_faults_no_latency() {
        let md = render(&testdata::bare());
        assert!(md.contains("Nothing was injected."));
        assert!(md.contains("Nothing to roll back."));
        assert!(md.contains("— not reached"));
        assert!(!md.contains("## Steps"));
        assert!(!md.contains("## Abort"));
        assert!(md.contains("| Time to detect | — |"));
    }
}
