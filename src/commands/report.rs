//! `faultline report JOURNAL`: render any output again from a run's journal.
//!
//! It does not judge the run again: the verdict is the one recorded in the
//! journal, and the command exits 0 whenever it rendered (64 when the journal
//! cannot be read or is not a faultline journal, or the output cannot be
//! written).

use crate::cli::{ColorChoice, ReportFormat};
use crate::exit;
use crate::report::{html, json, junit, markdown, record::RunRecord, table};
use std::io::Write;
use std::path::Path;

/// Renders `rec` in `format`; `color` only affects the table.
pub fn render(rec: &RunRecord, format: ReportFormat, color: bool) -> String {
    match format {
        ReportFormat::Table => table::render(rec, color),
        ReportFormat::Markdown => markdown::render(rec),
        ReportFormat::Junit => junit::render(rec),
        ReportFormat::Json => json::render(rec),
        ReportFormat::Html => html::render(rec),
    }
}

/// Reads and parses a journal file, with an error naming the file.
pub fn load(journal: &Path) -> Result<RunRecord, String> {
    let text = std::fs::read_to_string(journal)
        .map_err(|e| format!("cannot read journal {}: {e}", journal.display()))?;
    json::parse(&text).map_err(|e| format!("{}: {e}", journal.display()))
}

/// `faultline report` with colour decided automatically (a terminal on
/// standard output and no NO_COLOR).
pub fn run(journal: &Path, format: ReportFormat, output: Option<&Path>) -> i32 {
    run_with_color(journal, format, output, ColorChoice::Auto)
}

/// `faultline report` honouring `--color`. A file given with `-o` never gets
/// colour codes.
pub fn run_with_color(
    journal: &Path,
    format: ReportFormat,
    output: Option<&Path>,
    color: ColorChoice,
) -> i32 {
    let rec = match load(journal) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("faultline: {e}");
            return exit::INVALID;
        }
    };
    let color = output.is_none() && super::use_color(color);
    let text = render(&rec, format, color);
    match output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, text) {
                eprintln!(
                    "faultline: cannot write the report to {}: {e}",
                    path.display()
                );
                return exit::INVALID;
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    eprintln!("faultline: cannot write the report to standard output: {e}");
                    return exit::INVALID;
                }
            }
        }
    }
    exit::HELD
}
