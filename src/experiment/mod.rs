//! The experiment: its model, loading with located errors, and semantic validation.

pub mod advice;
pub mod model;
pub mod schedule;
pub mod secrets;
pub mod validate;
pub mod yaml;

pub use model::Experiment;

use std::fmt;
use std::path::Path;

/// One problem in an experiment file, pointing at the spot to fix.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: String,
    /// Field path, e.g. `method[2].fault.network.loss` (empty for the whole file).
    pub path: String,
    /// 1-based line and column.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Diagnostic {
    /// A problem at `path`, found at 1-based `(line, column)`.
    pub fn at(
        file: &str,
        path: &str,
        (line, column): (usize, usize),
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.to_string(),
            path: path.to_string(),
            line,
            column,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// A loaded, validated experiment and where it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub file: String,
    pub experiment: Experiment,
    pub spans: yaml::SpanIndex,
    /// What must never be shown or written (secrets, passwords, credentials).
    pub redactor: secrets::Redactor,
}

/// Reads, parses and validates an experiment file. All problems found are
/// returned (parse errors stop at the first; semantic checks report all).
pub fn load_file(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let file = path.display().to_string();
    let bytes = read_capped(path).map_err(|m| vec![Diagnostic::at(&file, "", (1, 1), m)])?;
    load_bytes(&file, &bytes)
}

/// Parses and validates experiment text already in memory.
pub fn load_bytes(file: &str, bytes: &[u8]) -> Result<Loaded, Vec<Diagnostic>> {
    let text = yaml::check_bytes(file, bytes).map_err(|d| vec![d])?;
    let spans = yaml::index(file, text).map_err(|d| vec![d])?;
    let experiment: Experiment = yaml::from_str(file, text, &spans).map_err(|d| vec![d])?;
    let problems = validate::validate(&experiment, file, &spans);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Loaded {
        file: file.to_string(),
        redactor: secrets::Redactor::for_experiment(&experiment),
        experiment,
        spans,
    })
}

/// Reads at most `MAX_FILE_SIZE + 1` bytes, so a huge file is refused without
/// being read whole.
pub fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read the file: {e}"))?;
    if meta.is_dir() {
        return Err("this is a directory; give an experiment file".into());
    }
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let mut buf = Vec::new();
    f.take(yaml::MAX_FILE_SIZE as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if buf.len() > yaml::MAX_FILE_SIZE {
        return Err(format!(
            "the file is larger than {} bytes, the limit for experiment files",
            yaml::MAX_FILE_SIZE
        ));
    }
    Ok(buf)
}
