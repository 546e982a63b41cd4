//! Reports: one file per output format, all rendered from a [`record::RunRecord`].

pub mod record;

use record::RunRecord;

/// The terminal report (before/during/after table and verdict).
pub fn render_table(rec: &RunRecord, _color: bool) -> String {
    let mut s = String::new();
    for p in &rec.probes {
        s.push_str(&format!(
            "{}: before {}/{} during {}/{} after {}/{}\n",
            p.name,
            p.before.successes,
            p.before.samples,
            p.during.successes,
            p.during.samples,
            p.after.successes,
            p.after.samples
        ));
    }
    s.push_str(&verdict_line(rec, false));
    s.push('\n');
    s
}

/// One line: verdict, exit code and its meaning, and the reason.
pub fn verdict_line(rec: &RunRecord, _color: bool) -> String {
    format!(
        "{} (exit {}): {}",
        rec.outcome.verdict.label(),
        rec.outcome.exit_code,
        rec.outcome.reason
    )
}

pub fn render_json(rec: &RunRecord) -> String {
    serde_json::to_string_pretty(rec).unwrap_or_default()
}

pub fn render_junit(rec: &RunRecord) -> String {
    let _ = rec;
    String::new()
}

pub fn render_markdown(rec: &RunRecord) -> String {
    format!(
        "# {}\n\n{}\n",
        rec.experiment.title,
        verdict_line(rec, false)
    )
}
