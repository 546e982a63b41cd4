//! JUnit XML for CI. One test suite for the experiment, with test cases:
//! - `<probe> / before|during|after`: failure when the phase's requirement was
//!   not met, skipped when the run never reached the phase;
//! - `fault N <label> / inject`: failure when the injection errored or was not
//!   verified; `fault N <label> / rollback`: failure when it was not rolled back;
//! - `abort`: failure with the abort reason (only when the run was aborted);
//! - `rollback action: <label>`: one per user rollback action;
//! - `verdict`: failure unless the run held, so a CI view always shows why the
//!   exit code was not 0; an `<error>` (not a failure) when INCONCLUSIVE, with
//!   every reason: the experiment did not test what it said.

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
                        desc.push(format!("failing samples ({}):", bad.len()));
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
            failure(format!("injection failed: {e}"), details.join("\n"))
        } else if never_injected {
            skipped("not injected: the run stopped before this step".into())
        } else if f.verified.is_none() {
            failure(
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
            failure(
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

/// The JUnit XML document for a run.
pub fn render(rec: &RunRecord) -> String {
    let title = rec.experiment.title.as_str();
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

    suite.add_test_cases(probe_cases(rec, title));
    suite.add_test_cases(fault_cases(rec, title));

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
        tc.set_classname(title);
        tc.set_timestamp(at_offset(rec, a.at_ms));
        suite.add_test_case(tc);
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
            failure(
                format!("rollback action failed: `{command}` {code}"),
                r.detail.clone(),
            )
        };
        let mut tc = TestCase::new(format!("rollback action: {}", r.label), status);
        tc.set_classname(title);
        tc.set_time(dur(r.duration_ms));
        if r.ok && !r.detail.is_empty() {
            tc.set_system_out(r.detail.clone());
        }
        suite.add_test_case(tc);
    }

    let (head, tail) = verdict_text(rec);
    let line = format!("{head}{tail}");
    let status = if rec.outcome.verdict == Verdict::Held && rec.outcome.exit_code == 0 {
        TestCaseStatus::success()
    } else if rec.outcome.verdict == Verdict::Inconclusive {
        let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
        s.set_message(line.clone());
        s.set_type("inconclusive");
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
        s.set_description(format!(
            "the experiment did not test what it said:\n{}",
            reasons.join("\n")
        ));
        s
    } else {
        failure(line.clone(), String::new())
    };
    let mut verdict = TestCase::new("verdict", status);
    verdict.set_classname(title);
    verdict.set_time(dur(rec.timings.total_ms));
    verdict.set_system_out(line.clone());
    suite.add_test_case(verdict);
    suite.set_system_out(line);

    let mut report = Report::new("faultline");
    report.set_timestamp(rec.started_at);
    report.set_time(dur(rec.timings.total_ms));
    report.add_test_suite(suite);
    report
        .to_string()
        .expect("JUnit serialization into memory does not fail")
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
        // 1 probe x 3 phases + verdict, no fault
        assert_eq!(count(&xml, "<testcase "), 4, "{xml}");
        assert_eq!(count(&xml, "<skipped"), 2, "{xml}");
        assert_eq!(count(&xml, "<failure"), 2, "{xml}");
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
        assert!(xml.contains("not rolled back: kill -CONT 4242: no such process"));
        assert!(xml.contains("  kill -CONT 4242"));
    }
}
