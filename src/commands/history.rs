//! `faultline history [DIR|FILE]...`: reads run journals in parallel, keeps
//! one small summary per run, and prints the history of every experiment
//! (report::history). A file that cannot be read as a journal is reported on
//! standard error (one line, the reason) and skipped.
//!
//! Exits 0 when it printed a history, 64 when a path given does not exist or
//! no journal could be read, or the output cannot be written.

use crate::cli::HistoryFormat;
use crate::exit;
use crate::report::history::{self, RunSummary, Skipped};
use crate::sys::text::escape;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Journals up to this size are read into memory and parsed there (the
/// fast path for the many small journals of a history); larger ones, such
/// as a 4-hour game day's 700 MiB with every sample, are parsed as they
/// stream from the file, so memory does not grow with their size.
pub const IN_MEMORY_BYTES: u64 = 8 * 1024 * 1024;

/// The journal files under `paths`: files as given, a directory's `*.json`
/// files (its subdirectories too with `recursive`), in name order. Errors
/// name a path that cannot be read.
pub fn collect(paths: &[PathBuf], recursive: bool) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        let md = std::fs::metadata(p)
            .map_err(|e| format!("cannot read {}: {e}", escape(&p.display().to_string())))?;
        if md.is_dir() {
            walk(p, recursive, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", escape(&dir.display().to_string())))?;
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        // No symlink following into directories: a loop cannot trap us.
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if recursive {
                walk(&path, true, out)?;
            }
        } else if path.extension().is_some_and(|x| x == "json")
            // Leave out the atomic writer's temporary files (`.NAME.PID.tmp`
            // end in .tmp; hidden files in general are not journals).
            && !e.file_name().to_string_lossy().starts_with('.')
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Summarizes a regular file (opened without blocking on a FIFO or a
/// device): read whole when small, streamed when large.
fn summarize_file(path: &Path) -> Result<RunSummary, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot open: {e}"))?;
    let md = f.metadata().map_err(|e| format!("cannot stat: {e}"))?;
    if !md.is_file() {
        return Err("not a regular file".into());
    }
    if md.len() > IN_MEMORY_BYTES {
        return history::summarize_reader(std::io::BufReader::with_capacity(1 << 20, f));
    }
    let mut buf = Vec::with_capacity(md.len() as usize);
    (&mut f)
        .take(IN_MEMORY_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read: {e}"))?;
    if buf.len() as u64 > IN_MEMORY_BYTES {
        // It grew while it was read: stream the rest.
        let rest = std::io::Cursor::new(buf).chain(f);
        return history::summarize_reader(std::io::BufReader::new(rest));
    }
    history::summarize(&buf)
}

/// Summarizes every file, on as many threads as there are CPUs, in the
/// order given; a file that is not a journal becomes a [`Skipped`].
pub fn read_all(files: &[PathBuf]) -> (Vec<RunSummary>, Vec<Skipped>) {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(files.len().max(1));
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, Result<RunSummary, String>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = files.get(i) else { break };
                        let r = summarize_file(path);
                        mine.push((i, r));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    let mut runs = Vec::with_capacity(results.len());
    let mut skipped = Vec::new();
    for (i, r) in results {
        match r {
            Ok(s) => runs.push(s),
            Err(reason) => skipped.push(Skipped {
                file: files[i].display().to_string(),
                reason,
            }),
        }
    }
    (runs, skipped)
}

/// `faultline history`.
pub fn run(
    paths: &[PathBuf],
    recursive: bool,
    format: HistoryFormat,
    output: Option<&Path>,
    kb: Option<&Path>,
) -> i32 {
    let default = [PathBuf::from(".")];
    let paths = if paths.is_empty() {
        &default[..]
    } else {
        paths
    };
    let files = match collect(paths, recursive) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("faultline: {e}");
            return exit::INVALID;
        }
    };
    let (runs, skipped) = read_all(&files);
    for s in &skipped {
        eprintln!(
            "faultline: skipped {}: {}",
            escape(&s.file),
            escape(&s.reason)
        );
    }
    if runs.is_empty() {
        let where_ = paths
            .iter()
            .map(|p| escape(&p.display().to_string()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        eprintln!(
            "faultline: no journal could be read in {where_} ({} file(s) looked at); `faultline run` writes faultline-RUNID.json in the current directory, or where --journal says",
            files.len()
        );
        return exit::INVALID;
    }
    let h = history::build(runs, skipped);
    let text = match format {
        HistoryFormat::Table => history::render_table(&h),
        HistoryFormat::Json => history::render_json(&h),
        HistoryFormat::Markdown => history::render_markdown(&h),
        HistoryFormat::Html => crate::report::html::render_history(&h),
    };
    if let Some(dir) = kb {
        match super::report::write_kb_index(dir, Some(&h)) {
            Ok(()) => eprintln!(
                "updated {}",
                escape(&dir.join("index.md").display().to_string())
            ),
            Err(e) => {
                eprintln!("faultline: {}", escape(&e));
                return exit::INVALID;
            }
        }
    }
    let written = match output {
        Some(path) => std::fs::write(path, text).map_err(|e| {
            format!(
                "cannot write the history to {}: {e}",
                escape(&path.display().to_string())
            )
        }),
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(format!("cannot write the history to standard output: {e}"))
                }
                _ => Ok(()),
            }
        }
    };
    match written {
        Ok(()) => exit::HELD,
        Err(e) => {
            eprintln!("faultline: {e}");
            exit::INVALID
        }
    }
}
