//! The experiment: its model, loading with located errors, and semantic validation.

pub mod advice;
pub mod escalate;
pub mod model;
pub mod schedule;
pub mod secrets;
pub mod validate;
pub mod vars;
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
    /// The variables the run uses (secrets as `***`), for the journal.
    pub vars: std::collections::BTreeMap<String, serde_json::Value>,
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
    load_bytes_with(file, bytes, &vars::Inputs::default())
}

/// [`load_bytes`] with variable values from the command line.
pub fn load_bytes_with(
    file: &str,
    bytes: &[u8],
    inputs: &vars::Inputs,
) -> Result<Loaded, Vec<Diagnostic>> {
    let text = yaml::check_bytes(file, bytes).map_err(|d| vec![d])?;
    let spans = yaml::index(file, text).map_err(|d| vec![d])?;
    let (experiment, resolved): (Experiment, _) = if vars::needed(text, inputs) {
        // Parse first, substitute in the parsed values, then type the result.
        let mut doc: serde_yaml::Value = yaml::from_str(file, text, &spans).map_err(|d| vec![d])?;
        let resolved = vars::apply(file, &mut doc, &spans, inputs)?;
        let e = yaml::from_value(file, doc, &spans).map_err(|d| vec![d])?;
        (e, resolved)
    } else {
        let e = yaml::from_str(file, text, &spans).map_err(|d| vec![d])?;
        (e, vars::Resolved::default())
    };
    let problems = validate::validate(&experiment, file, &spans);
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut redactor = secrets::Redactor::for_experiment(&experiment);
    for s in resolved.secret_texts() {
        redactor.add(&s);
    }
    Ok(Loaded {
        file: file.to_string(),
        redactor,
        experiment,
        spans,
        vars: resolved.for_journal(),
    })
}

/// How long a pipe (`faultline validate <(...)`, a FIFO) may stay silent
/// before reading it is given up: a FIFO nobody writes must not hang a CI job.
const PIPE_IDLE: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads at most `MAX_FILE_SIZE + 1` bytes, so a huge file is refused without
/// being read whole. A regular file, or a pipe that is written to (process
/// substitution); a FIFO without a writer, a device or a socket is refused
/// and never waited for.
pub fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let cannot = |e: std::io::Error| format!("cannot read the file: {e}");
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EISDIR) => "this is a directory; give an experiment file".into(),
            _ => cannot(e),
        })?;
    let ft = f.metadata().map_err(cannot)?.file_type();
    let limit = yaml::MAX_FILE_SIZE + 1;
    let mut buf = Vec::new();
    if ft.is_dir() {
        return Err("this is a directory; give an experiment file".into());
    } else if ft.is_fifo() {
        read_pipe(&mut f, &mut buf, limit)?;
        if buf.is_empty() {
            return Err(
                "this is a FIFO (named pipe) and nothing was written to it; give an experiment file"
                    .into(),
            );
        }
    } else if ft.is_file() {
        f.take(limit as u64).read_to_end(&mut buf).map_err(cannot)?;
    } else {
        let what = if ft.is_socket() {
            "a socket"
        } else {
            "a device"
        };
        return Err(format!(
            "this is {what}, not an experiment file; give a regular file"
        ));
    }
    if buf.len() > yaml::MAX_FILE_SIZE {
        return Err(format!(
            "the file is larger than {} bytes, the limit for experiment files",
            yaml::MAX_FILE_SIZE
        ));
    }
    Ok(buf)
}

/// Reads a non-blocking pipe until its writers close it, `limit` bytes, or
/// `PIPE_IDLE` without data. Without any writer, the pipe reads as empty.
fn read_pipe(f: &mut std::fs::File, buf: &mut Vec<u8>, limit: usize) -> Result<(), String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::io::Read;
    use std::os::fd::AsFd;
    let mut chunk = [0u8; 64 * 1024];
    while buf.len() < limit {
        match f.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n.min(limit - buf.len())]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLIN)];
                let ms = PIPE_IDLE.as_millis() as u16;
                match poll(&mut fds, PollTimeout::from(ms)) {
                    Ok(0) => {
                        return Err(format!(
                            "nothing arrived from this pipe for {}s; give an experiment file",
                            PIPE_IDLE.as_secs()
                        ))
                    }
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(format!("cannot read the file: {e}")),
                }
            }
            Err(e) => return Err(format!("cannot read the file: {e}")),
        }
    }
    Ok(())
}
