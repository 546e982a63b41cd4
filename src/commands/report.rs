//! `faultline report JOURNAL`: render any output again from a run's journal.

use crate::cli::ReportFormat;
use crate::exit;
use std::path::Path;

pub fn run(journal: &Path, format: ReportFormat, output: Option<&Path>) -> i32 {
    let _ = (journal, format, output);
    eprintln!("faultline: `report` is not yet supported by this build");
    exit::PRECONDITION
}
