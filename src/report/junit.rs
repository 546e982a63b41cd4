//! JUnit XML for CI, written so CI servers count the right things. One test
//! suite per experiment (named by its title); every test case's classname is
//! the experiment file's stem (`web-failover` for `exp/web-failover.yaml`).
//!
//! - `<probe> / before|during|after`: `<failure>` when the phase's requirement
//!   was not met (a deviation, or a steady state not met), `<skipped>` when the
//!   run never reached the phase or took no sample in it;
//! - `fault N <label> / inject`: `<error>` when the injection errored or was
//!   not verified, `<skipped>` when never injected; `fault N <label> /
//!   rollback`: `<error>` when it was not rolled back;
//! - `before`, `method`, `after`: `<skipped>`, only when the run stopped
//!   before any probe or fault was built (a missing precondition);
//! - `abort`: `<failure>` with the abort reason (only when the run was aborted);
//! - `rollback action: <label>`: one per user rollback action, `<error>` when
//!   it failed;
//! - `verdict`: says why the exit code was not 0 when no case above does
//!   already, so each problem is counted once: an `<error>` for a missing
//!   precondition, an internal error, missing privileges, an invalid
//!   experiment, an interruption and a failed rollback, a `<failure>` for a
//!   deviation, an abort and a steady state not met. INCONCLUSIVE is always
//!   an `<error>` on `verdict`, with every reason.

use super::record::{FaultRecord, RunRecord, SampleStatus, Verdict};
use super::summary::{
    at_offset, fmt_counts, fmt_latency, fmt_ms, fmt_offset, fmt_success, observation_lines,
    phase_window, verdict_text, PhaseResult,
};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use std::time::Duration;

fn dur(ms: f64) -> Duration {
    Duration::from_secs_f64((ms.max(0.0)) / 1000.0)
}

fn failure(message: String, description: String) -> TestCaseStatus {
    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
    s.set_message(message);
    if !description.is_empty() {
        s.set_description(description);
    }
    s
}

fn error(kind: &str, message: String, description: String) -> TestCaseStatus {
    let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
    s.set_message(message);
    s.set_type(kind);
    if !description.is_empty() {
        s.set_description(description);
    }
    s
}

fn skipped(message: String) -> TestCaseStatus {
    let mut s = TestCaseStatus::skipped();
    s.set_message(message);
    s
}

fn probe_cases(rec: &RunRecord, classname: &str) -> Vec<TestCase> {
    let mut cases = Vec::new();
    for probe in &rec.probes {
        for p in super::record::SamplePhase::ALL {
            let s = probe.phase(p);
            let result = PhaseResult::of(rec, s, p);
            let counts = format!(
                "{}/{} successful ({}), {} failed, {} errors",
                s.successes,
                s.samples,
                fmt_success(s),
                s.failures,
                s.errors
            );
            let status = match result {
                PhaseResult::Met | PhaseResult::Unchecked => TestCaseStatus::success(),
                PhaseResult::NotMet => {
                    let req = s.requirement.as_deref().unwrap_or("the requirement");
                    let mut desc = vec![
                        format!("probe {} ({}: {})", probe.name, probe.kind, probe.target),
                        format!("requirement: {req}"),
                        format!("samples: {} ({})", s.samples, fmt_counts(s)),
                    ];
                    if let Some(l) = &s.latency_ms {
                        desc.push(format!(
                            "latency: p50 {} p95 {} p99 {} max {}",
                            fmt_latency(l.p50),
                            fmt_latency(l.p95),
                            fmt_latency(l.p99),
                            fmt_latency(l.max)
                        ));
                    }
                    let bad: Vec<_> = probe
                        .samples
                        .iter()
                        .filter(|x| x.phase == p && x.status != SampleStatus::Success)
                        .collect();
                    if !bad.is_empty() {
                        // The count from the statistics: a record still
                        // in memory holds only the latest samples.
                        let n = (s.failures + s.errors).max(bad.len() as u32);
                        desc.push(format!("failing samples ({n}):"));
                        for x in bad.iter().take(10) {
                            desc.push(format!(
                                "  {} {} after {}: {}",
                                fmt_offset(x.at_ms),
                                if x.status == SampleStatus::Error {
                                    "error"
                                } else {
                                    "failed"
                                },
                                fmt_ms(x.latency_ms),
                                x.detail
                            ));
                        }
                    }
                    failure(format!("{req} not met: {counts}"), desc.join("\n"))
                }
                PhaseResult::NoSamples => {
                    skipped(format!("no samples taken during `{}`", p.name()))
                }
                PhaseResult::NotReached => skipped(format!(
                    "not reached: the run ended ({}) before the `{}` phase",
                    rec.outcome.verdict.label(),
                    p.name()
                )),
            };
            let mut tc = TestCase::new(format!("{} / {}", probe.name, p.name()), status);
            tc.set_classname(classname);
            if let Some((start, end)) = phase_window(rec, p) {
                tc.set_timestamp(start);
                tc.set_time(dur((end - start).num_milliseconds() as f64));
            }
            if matches!(result, PhaseResult::Met | PhaseResult::Unchecked) {
                let req = s
                    .requirement
                    .as_deref()
                    .map(|r| format!("requirement met: {r}; "))
                    .unwrap_or_else(|| "no requirement (observed only); ".into());
                tc.set_system_out(format!("{req}{counts}"));
            }
            cases.push(tc);
        }
    }
    cases
}

fn fault_name(f: &FaultRecord) -> String {
    format!("fault {} {} ({})", f.step + 1, f.label, f.kind)
}

fn fault_cases(rec: &RunRecord, classname: &str) -> Vec<TestCase> {
    let mut cases = Vec::new();
    for f in &rec.faults {
        let never_injected = f.injected_at_ms.is_none() && f.inject_error.is_none();
        let mut details = vec![format!("target: {}", f.target)];
        details.extend(f.operations.iter().map(|o| format!("operation: {o}")));
        details.extend(observation_lines(&f.observations));

        let inject_status = if let Some(e) = &f.inject_error {
            error(
                "injection_failed",
                format!("injection failed: {e}"),
                details.join("\n"),
            )
        } else if never_injected {
            skipped("not injected: the run stopped before this step".into())
        } else if f.verified.is_none() {
            error(
                "not_verified",
                "injected but not verified: nothing read back showed the fault in effect".into(),
                details.join("\n"),
            )
        } else {
            TestCaseStatus::success()
        };
        let mut inject = TestCase::new(format!("{} / inject", fault_name(f)), inject_status);
        inject.set_classname(classname);
        if let Some(at) = f.injected_at_ms {
            inject.set_timestamp(at_offset(rec, at));
        }
        if f.inject_ms.is_some() || f.verify_ms.is_some() {
            inject.set_time(dur(f.inject_ms.unwrap_or(0.0) + f.verify_ms.unwrap_or(0.0)));
        }
        if let Some(v) = &f.verified {
            let mut out = vec![format!("verified: {v}")];
            out.extend(details.iter().cloned());
            inject.set_system_out(out.join("\n"));
        }
        cases.push(inject);

        let rollback_status = if !f.rolled_back {
            let mut desc = Vec::new();
            if let Some(e) = &f.rollback_error {
                desc.push(format!("error: {e}"));
            }
            desc.push(format!(
                "faults may remain on {}: run `faultline recover {}`",
                rec.host, rec.run_id
            ));
            if !rec.manual_recovery.is_empty() {
                desc.push("or run these commands as root:".into());
                desc.extend(rec.manual_recovery.iter().map(|c| format!("  {c}")));
            }
            error(
                "rollback_failed",
                format!(
                    "not rolled back: {}",
                    f.rollback_error
                        .as_deref()
                        .unwrap_or("undo did not complete")
                ),
                desc.join("\n"),
            )
        } else if never_injected {
            skipped("nothing to roll back: never injected".into())
        } else if f.irreversible {
            skipped("irreversible: killed processes are not restored".into())
        } else {
            TestCaseStatus::success()
        };
        let mut rollback = TestCase::new(format!("{} / rollback", fault_name(f)), rollback_status);
        rollback.set_classname(classname);
        if let Some(at) = f.rolled_back_at_ms {
            rollback.set_timestamp(at_offset(rec, at));
        }
        if let Some(ms) = f.rollback_ms {
            rollback.set_time(dur(ms));
        }
        cases.push(rollback);
    }
    cases
}

/// The classname of every case: the experiment file's stem.
fn classname_of(file: &str) -> String {
    std::path::Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| file.to_string())
}

/// The `<error>` type of a run that did not hold for a reason other than a
/// finding about the system; `None` for those findings (deviated, aborted,
/// steady state not met), which are `<failure>`s.
fn error_type(verdict: Verdict, code: i32) -> Option<&'static str> {
    Some(match verdict {
        Verdict::Held if code == 0 => return None,
        Verdict::Deviated | Verdict::Aborted | Verdict::NotSteady => return None,
        Verdict::RollbackFailed => "rollback_failed",
        Verdict::Invalid => "invalid",
        Verdict::Precondition => "precondition",
        Verdict::Privileges => "privileges",
        Verdict::Interrupted => "interrupted",
        Verdict::Inconclusive => "inconclusive",
        Verdict::Internal | Verdict::Held => "internal",
    })
}

fn is_kind(c: &TestCase, kind: NonSuccessKind) -> bool {
    matches!(&c.status, TestCaseStatus::NonSuccess { kind: k, .. } if *k == kind)
}

/// The test suite of one run.
pub fn suite(rec: &RunRecord) -> TestSuite {
    let title = rec.experiment.title.as_str();
    let classname = classname_of(&rec.experiment.file);
    let classname = classname.as_str();
    let mut suite = TestSuite::new(title);
    suite.set_timestamp(rec.started_at);
    suite.set_time(dur(rec.timings.total_ms));
    suite.add_properties([
        ("run_id", rec.run_id.as_str()),
        ("host", rec.host.as_str()),
        ("file", rec.experiment.file.as_str()),
        ("hypothesis", rec.experiment.hypothesis.as_str()),
        ("verdict", rec.outcome.verdict.label()),
        ("faultline_version", rec.faultline_version.as_str()),
    ]);
    suite.add_property(("exit_code".to_string(), rec.outcome.exit_code.to_string()));

    let mut cases = probe_cases(rec, classname);
    cases.extend(fault_cases(rec, classname));
    if let Some(e) = &rec.escalation {
        let must = e
            .values
            .iter()
            .position(|v| v == &e.must_hold)
            .unwrap_or(usize::MAX);
        for l in &e.levels {
            let status = match l.held {
                Some(true) => TestCaseStatus::success(),
                Some(false) if l.index <= must => failure(
                    format!("breaking point: {} {} did not hold", e.param, l.value),
                    l.line(),
                ),
                // Beyond `must_hold`: the breaking point is a finding.
                Some(false) => TestCaseStatus::success(),
                None => skipped(format!("not judged: {}", l.line())),
            };
            let mut tc = TestCase::new(
                format!(
                    "escalation / level {} ({} {})",
                    l.index + 1,
                    e.param,
                    l.value
                ),
                status,
            );
            tc.set_classname(classname);
            if let Some(end) = l.ended_ms {
                tc.set_time(dur(end - l.started_ms));
            }
            tc.set_system_out(l.line());
            cases.push(tc);
        }
    }
    for g in &rec.groups {
        let mut tc = TestCase::new(
            format!("control group / {}", g.phase.name()),
            TestCaseStatus::success(),
        );
        tc.set_classname(classname);
        tc.set_system_out(g.summary.clone());
        cases.push(tc);
    }
    if cases.is_empty() && !rec.outcome.verdict.eq(&Verdict::Held) {
        // Stopped before any probe or fault was built (preflight, usage):
        // the phases are still listed, as never run.
        for phase in ["before", "method", "after"] {
            let mut tc = TestCase::new(
                phase,
                skipped(format!(
                    "not reached: the run ended ({}) before the `{phase}` phase",
                    rec.outcome.verdict.label()
                )),
            );
            tc.set_classname(classname);
            cases.push(tc);
        }
    }

    if let Some(a) = &rec.abort {
        let mut tc = TestCase::new(
            "abort",
            failure(
                format!("aborted at {}: {}", fmt_offset(a.at_ms), a.reason),
                format!(
                    "condition: {}\nprobe: {}\nreason: {}",
                    a.condition, a.probe, a.reason
                ),
            ),
        );
        tc.set_classname(classname);
        tc.set_timestamp(at_offset(rec, a.at_ms));
        cases.push(tc);
    }

    for r in &rec.rollbacks {
        let command = r.command.join(" ");
        let status = if r.ok {
            TestCaseStatus::success()
        } else {
            let code = r
                .exit_code
                .map(|c| format!("exited with {c}"))
                .unwrap_or_else(|| "did not complete".into());
            error(
                "rollback_failed",
                format!("rollback action failed: `{command}` {code}"),
                r.detail.clone(),
            )
        };
        let mut tc = TestCase::new(format!("rollback action: {}", r.label), status);
        tc.set_classname(classname);
        tc.set_time(dur(r.duration_ms));
        if r.ok && !r.detail.is_empty() {
            tc.set_system_out(r.detail.clone());
        }
        cases.push(tc);
    }

    let (head, tail) = verdict_text(rec);
    let line = format!("{head}{tail}");
    let held = rec.outcome.verdict == Verdict::Held && rec.outcome.exit_code == 0;
    let status = if held {
        Some(TestCaseStatus::success())
    } else if rec.outcome.verdict == Verdict::Inconclusive {
        let reasons: Vec<String> = rec
            .inconclusive
            .iter()
            .map(|r| {
                let at = r.at_ms.map(|ms| format!(" at {}", fmt_offset(ms)));
                format!(
                    "{} ({}){}: {}",
                    r.subject,
                    r.kind.name(),
                    at.unwrap_or_default(),
                    r.message
                )
            })
            .collect();
        Some(error(
            "inconclusive",
            line.clone(),
            format!(
                "the experiment did not test what it said:\n{}",
                reasons.join("\n")
            ),
        ))
    } else {
        // Said once: only when no case above already carries it.
        match error_type(rec.outcome.verdict, rec.outcome.exit_code) {
            Some(kind) if !cases.iter().any(|c| is_kind(c, NonSuccessKind::Error)) => {
                Some(error(kind, line.clone(), rec.outcome.reason.clone()))
            }
            None if !cases.iter().any(|c| is_kind(c, NonSuccessKind::Failure)) => {
                Some(failure(line.clone(), String::new()))
            }
            _ => None,
        }
    };
    suite.add_test_cases(cases);
    if let Some(status) = status {
        let mut verdict = TestCase::new("verdict", status);
        verdict.set_classname(classname);
        verdict.set_time(dur(rec.timings.total_ms));
        verdict.set_system_out(line.clone());
        suite.add_test_case(verdict);
    }
    suite.set_system_out(line);
    suite
}

/// The suite of an experiment that never started (`--fail-fast`, Ctrl-C, a
/// failed rollback before it): one skipped case saying why.
pub fn not_run_suite(title: &str, file: &str, reason: &str) -> TestSuite {
    let mut suite = TestSuite::new(title);
    suite.add_property(("file", file));
    let mut tc = TestCase::new("experiment", skipped(reason.to_string()));
    tc.set_classname(classname_of(file));
    suite.add_test_case(tc);
    suite
}

/// The suite of an experiment that ended without a run record (an internal
/// error, an output that could not be written): one `<error>` case.
pub fn error_suite(title: &str, file: &str, code: i32, reason: &str) -> TestSuite {
    let mut suite = TestSuite::new(title);
    suite.add_property(("file", file));
    suite.add_property(("exit_code".to_string(), code.to_string()));
    let kind = match code {
        crate::exit::INTERNAL => "internal",
        crate::exit::INVALID => "invalid",
        crate::exit::PRIVILEGES => "privileges",
        crate::exit::PRECONDITION => "precondition",
        _ => "error",
    };
    let msg = format!("exit {code}: {}: {reason}", crate::exit::meaning(code));
    let mut tc = TestCase::new("verdict", error(kind, msg, String::new()));
    tc.set_classname(classname_of(file));
    suite.add_test_case(tc);
    suite
}

/// One JUnit document with the given suites.
pub fn render_suites(suites: Vec<TestSuite>) -> String {
    let mut report = Report::new("faultline");
    if let Some(first) = suites.iter().find_map(|s| s.timestamp) {
        report.set_timestamp(first);
    }
    let total: Duration = suites.iter().filter_map(|s| s.time).sum();
    report.set_time(total);
    report.add_test_suites(suites);
    report
        .to_string()
        .expect("JUnit serialization into memory does not fail")
}

/// The JUnit XML document for a run.
pub fn render(rec: &RunRecord) -> String {
    render_suites(vec![suite(rec)])
}

#[cfg(test)]
mod tests {
    use super::super::summary::testdata;
    use super::*;

    fn count(hay: &str, needle: &str) -> usize {
        hay.matches(needle).count()
    }

    #[test]
    fn held_run_has_no_failure() {
        let xml = render(&testdata::held());
        // 1 probe x 3 phases + 1 fault x 2 + verdict
        assert_eq!(count(&xml, "<testcase "), 6, "{xml}");
        assert_eq!(count(&xml, "<failure"), 0, "{xml}");
        assert!(xml.contains("name=\"web | api / during\""));
        assert!(xml.contains("tests=\"6\""));
    }

    #[test]
    fn not_steady_skips_unreached_phases_without_faults() {
        let xml = render(&testdata::bare());
        // 1 probe x 3 phases, no fault; the before phase's failure says it
        // all, so no second failure on a verdict case.
        assert_eq!(count(&xml, "<testcase "), 3, "{xml}");
        assert_eq!(count(&xml, "<skipped"), 2, "{xml}");
        assert_eq!(count(&xml, "<failure"), 1, "{xml}");
        assert_eq!(count(&xml, "<error"), 0, "{xml}");
        assert!(xml.contains("100% success not met: 0/3 successful (0%), 0 failed, 3 errors"));
        assert!(!xml.contains("latency:"));
    }

    #[test]
    fn inconclusive_is_an_error_with_the_reasons() {
        let mut r = testdata::held();
        r.outcome.verdict = Verdict::Inconclusive;
        r.outcome.exit_code = 5;
        r.inconclusive
            .push(super::super::record::InconclusiveReason::too_few_samples(
                "web | api",
                "3 samples during the method, fewer than the 10 required",
            ));
        let xml = render(&r);
        assert_eq!(count(&xml, "<error"), 1, "{xml}");
        assert_eq!(count(&xml, "<failure"), 0, "{xml}");
        assert!(xml.contains("type=\"inconclusive\""), "{xml}");
        assert!(
            xml.contains("probe `web | api` (too_few_samples): 3 samples during the method"),
            "{xml}"
        );
    }

    #[test]
    fn unverified_and_not_rolled_back_faults_fail() {
        let mut r = testdata::held();
        r.faults[0].verified = None;
        r.faults[0].rolled_back = false;
        r.faults[0].rollback_error = Some("kill -CONT 4242: no such process".into());
        r.manual_recovery = vec!["kill -CONT 4242".into()];
        let xml = render(&r);
        assert!(xml.contains("injected but not verified"), "{xml}");
        assert_eq!(count(&xml, "<error"), 2, "{xml}");
        assert_eq!(count(&xml, "<failure"), 0, "{xml}");
        assert!(xml.contains("type=\"rollback_failed\""), "{xml}");
        assert!(xml.contains("not rolled back: kill -CONT 4242: no such process"));
        assert!(xml.contains("  kill -CONT 4242"));
    }

    #[test]
    fn a_deviation_is_one_failure_and_the_classname_is_the_file_stem() {
        let mut r = testdata::held();
        r.experiment.file = "ci/experiments/web-failover.yaml".into();
        r.outcome.verdict = Verdict::Deviated;
        r.outcome.exit_code = 1;
        r.probes[0].during.met = Some(false);
        r.probes[0].during.requirement = Some("95% success".into());
        let xml = render(&r);
        assert_eq!(count(&xml, "<failure"), 1, "{xml}");
        assert_eq!(count(&xml, "<error"), 0, "{xml}");
        assert!(!xml.contains("<testcase name=\"verdict\""), "{xml}");
        assert_eq!(
            count(&xml, "classname=\"web-failover\""),
            count(&xml, "<testcase "),
            "{xml}"
        );
    }

    #[test]
    fn a_missing_precondition_is_an_error_and_unreached_phases_are_skipped() {
        let mut r = testdata::bare();
        r.outcome.verdict = Verdict::Precondition;
        r.outcome.exit_code = 69;
        r.outcome.reason = "tc not found".into();
        r.phases.clear();
        for p in &mut r.probes {
            for ph in [&mut p.before, &mut p.during, &mut p.after] {
                ph.samples = 0;
                ph.successes = 0;
                ph.failures = 0;
                ph.errors = 0;
                ph.met = None;
            }
            p.samples.clear();
        }
        let xml = render(&r);
        assert_eq!(count(&xml, "<error"), 1, "{xml}");
        assert!(xml.contains("type=\"precondition\""), "{xml}");
        assert_eq!(count(&xml, "<failure"), 0, "{xml}");
        assert_eq!(count(&xml, "<skipped"), 3, "{xml}");
    }

    #[test]
    fn several_suites_in_one_document() {
        let a = suite(&testdata::held());
        let b = not_run_suite("second", "x/second.yaml", "not run: --fail-fast");
        let c = error_suite("third", "third.json", 70, "panic");
        let xml = render_suites(vec![a, b, c]);
        assert_eq!(count(&xml, "<testsuite "), 3, "{xml}");
        assert!(xml.contains("classname=\"second\""), "{xml}");
        assert!(xml.contains("type=\"internal\""), "{xml}");
    }
}
