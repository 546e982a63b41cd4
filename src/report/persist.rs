//! Writing the journal so that it survives the runner: every write replaces
//! the file atomically (a temporary file in the same directory, then
//! renamed over the journal), so a runner killed at any moment, even by
//! SIGKILL, leaves the previous complete write, never a torn or empty file.
//!
//! While the run goes on, a [`Checkpointer`] thread writes the record at every
//! phase boundary, after every injection and rollback, and at least every
//! [`INTERVAL`] while anything changed, marked `complete: false`; the runner's
//! last write marks it complete. When the runner dies, the watchdog marks the
//! last write as ended by it, with what it restored (see
//! `journal::watchdog`).

use super::record::{Phase, RunRecord};
use crate::runner::builder::RecordBuilder;
use crate::runner::events::{Event, EventSink, TimedEvent};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The longest a journal lags behind a run that is changing.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// The temporary file a process with `pid` writes before renaming it over
/// `path`: hidden, in the same directory (a rename is atomic only within
/// one filesystem).
pub fn temp_path(path: &Path, pid: u32) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "journal".into());
    path.with_file_name(format!(".{name}.{pid}.tmp"))
}

/// Replaces `path` with `text` atomically: written to a new 0600 file beside
/// it, fsynced, renamed over it, and the directory fsynced. A reader (or a
/// crash) sees the old content or the new, never a mix.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    write_replacing(path, text, true)
}

/// As [`write_atomic`], without the fsyncs: a killed process still leaves the
/// old content or the new (the kernel keeps the written pages), only a power
/// loss could lose the latest snapshot. For the snapshots taken while a run
/// goes on, where a disk sync per phase would cost the run milliseconds
/// each; the run's last write is durable.
pub fn write_atomic_unsynced(path: &Path, text: &str) -> std::io::Result<()> {
    write_replacing(path, text, false)
}

fn write_replacing(path: &Path, text: &str, durable: bool) -> std::io::Result<()> {
    write_replacing_with(path, durable, |f| f.write_all(text.as_bytes()))
}

/// As [`write_replacing`], the content written by `write` (buffered).
fn write_replacing_with(
    path: &Path,
    durable: bool,
    write: impl FnOnce(&mut std::io::BufWriter<&File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = temp_path(path, std::process::id());
    // A leftover from a killed earlier write by a process with the same pid.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, &f);
        write(&mut w)?;
        w.flush()?;
        drop(w);
        if durable {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, path)?;
        if !durable {
            return Ok(());
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Renders a record into the journal's format (with secrets redacted).
pub type Render = Arc<dyn Fn(&RunRecord) -> String + Send + Sync>;

/// The journal file of a run and how to render it.
pub struct JournalFile {
    /// Absolute (the watchdog does not share the runner's directory).
    pub path: PathBuf,
    /// As given on the command line, for messages.
    pub shown: PathBuf,
    /// The watchdog may mark this journal when the runner dies (it is a
    /// faultline journal, not a Chaos Toolkit one).
    pub watchdog_may_mark: bool,
    /// A faultline journal (not a Chaos Toolkit one).
    faultline_format: bool,
    render: Render,
    /// Set when the path is not a regular file (`/dev/stdout`, a FIFO): it
    /// cannot be replaced, so it is written once, at the end.
    direct: Option<File>,
}

impl JournalFile {
    /// Opens the journal before anything runs, so a bad path fails early.
    /// A regular file (or a new one) is written at once with `stub`, a
    /// record marked unfinished: from then on the path always holds a valid
    /// journal.
    pub fn open(
        path: &Path,
        render: Render,
        stub: &RunRecord,
        faultline_format: bool,
    ) -> std::io::Result<JournalFile> {
        let shown = path.to_path_buf();
        let path = &std::path::absolute(path)?;
        // `/dev/stdout` redirected to a file is a symlink to a regular
        // file: renaming over it would replace the host's /dev/stdout.
        // Nothing under /dev or /proc is ever replaced.
        let special = std::fs::metadata(path).is_ok_and(|m| !m.is_file())
            || path.starts_with("/dev")
            || path.starts_with("/proc");
        if special {
            let f = OpenOptions::new().write(true).open(path)?;
            return Ok(JournalFile {
                path: path.to_path_buf(),
                shown,
                watchdog_may_mark: false,
                faultline_format,
                render,
                direct: Some(f),
            });
        }
        let j = JournalFile {
            path: path.to_path_buf(),
            shown,
            watchdog_may_mark: faultline_format,
            faultline_format,
            render,
            direct: None,
        };
        let mut stub = stub.clone();
        stub.mark_unfinished(None, chrono::Utc::now());
        j.write_snapshot(&stub)?;
        Ok(j)
    }

    /// Whether the journal can be rewritten while the run goes on.
    pub fn atomic(&self) -> bool {
        self.direct.is_none()
    }

    /// Writes a snapshot (a record marked unfinished); a no-op for a special file.
    pub fn write_snapshot(&self, rec: &RunRecord) -> std::io::Result<()> {
        if self.direct.is_some() {
            return Ok(());
        }
        write_atomic_unsynced(&self.path, &(self.render)(rec))
    }

    /// The run's last write: the complete record. Spooled samples (see
    /// `report::samples`) are copied from the spool into the file as it is
    /// written, never all held in memory (the Chaos Toolkit format reads
    /// them into memory first).
    pub fn write_final(&self, rec: &RunRecord) -> std::io::Result<()> {
        let Some(spool) = rec.spool.clone() else {
            return self.write_text(&(self.render)(rec));
        };
        let mut r = rec.clone();
        r.spool = None;
        if !self.faultline_format {
            for (i, p) in r.probes.iter_mut().enumerate() {
                p.samples = spool.all(i)?;
                p.samples_omitted = 0;
            }
            return self.write_text(&(self.render)(&r));
        }
        let nonce: u64 = rand::random();
        let mut spooled = Vec::new();
        for (i, p) in r.probes.iter_mut().enumerate() {
            p.samples_omitted = 0;
            p.samples.clear();
            if spool.count(i) > 0 {
                p.samples.push(super::record::SampleRecord {
                    phase: super::record::SamplePhase::Before,
                    at_ms: 0.0,
                    latency_ms: 0.0,
                    status: super::record::SampleStatus::Success,
                    detail: super::samples::marker(nonce, i),
                    output: None,
                });
                spooled.push(i);
            }
        }
        let text = (self.render)(&r);
        drop(r);
        let splice =
            |w: &mut dyn Write| super::samples::write_spliced(&text, nonce, &spooled, &spool, w);
        match &self.direct {
            Some(f) => {
                let mut w = std::io::BufWriter::with_capacity(64 * 1024, f);
                splice(&mut w)?;
                w.flush()
            }
            None => write_replacing_with(&self.path, true, |w| splice(w)),
        }
    }

    fn write_text(&self, text: &str) -> std::io::Result<()> {
        match &self.direct {
            Some(f) => {
                let mut f: &File = f;
                f.write_all(text.as_bytes()).and_then(|()| f.flush())
            }
            None => write_atomic(&self.path, text),
        }
    }
}

enum Msg {
    /// Something worth a write at once happened (a phase boundary...).
    Now,
    Stop,
}

/// What the checkpoint thread and its event sink share.
struct Shared {
    dirty: AtomicBool,
    phase: Mutex<Option<Phase>>,
}

/// Writes snapshots of the run's record from a thread of its own (the
/// runner's tasks never wait on a disk), until dropped.
pub struct Checkpointer {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start(journal: Arc<JournalFile>, builder: Arc<Mutex<RecordBuilder>>) -> Checkpointer {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            dirty: AtomicBool::new(false),
            phase: Mutex::new(None),
        });
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || loop {
                let msg = rx.recv_timeout(INTERVAL);
                if matches!(
                    msg,
                    Ok(Msg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected)
                ) {
                    return;
                }
                if !sh.dirty.swap(false, Ordering::SeqCst) {
                    continue;
                }
                let phase = *sh.phase.lock().unwrap_or_else(|p| p.into_inner());
                let mut rec = builder.lock().unwrap_or_else(|p| p.into_inner()).finish();
                rec.mark_unfinished(phase, chrono::Utc::now());
                if let Err(e) = journal.write_snapshot(&rec) {
                    // Said once per failure; the final write will say it again.
                    eprintln!(
                        "faultline: warning: cannot update the journal {}: {e}",
                        journal.path.display()
                    );
                }
            })
            .ok();
        Checkpointer { tx, shared, thread }
    }

    /// The sink that tells the thread when to write; it goes after the
    /// record builder in the sink list, so a snapshot includes the event.
    pub fn sink(&self) -> CheckpointSink {
        CheckpointSink {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Checkpointer {
    /// Stops the thread and waits for a write in progress: the final write
    /// must not be overtaken by a late snapshot.
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub struct CheckpointSink {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

impl EventSink for CheckpointSink {
    fn emit(&mut self, ev: &TimedEvent) {
        self.shared.dirty.store(true, Ordering::SeqCst);
        let now = match &ev.event {
            Event::PhaseStarted { phase } => {
                *self.shared.phase.lock().unwrap_or_else(|p| p.into_inner()) = Some(*phase);
                true
            }
            Event::PhaseEnded { .. }
            | Event::SetupExited { .. }
            | Event::SteadyState { .. }
            | Event::StepStarted { .. }
            | Event::StepEnded { .. }
            | Event::FaultInjected { .. }
            | Event::FaultInjectFailed { .. }
            | Event::FaultVerified { .. }
            | Event::FaultVerifyFailed { .. }
            | Event::FaultRolledBack { .. }
            | Event::FaultEffect { .. }
            | Event::AbortTriggered { .. }
            | Event::EscalationLevel { .. }
            | Event::EscalationJudged { .. }
            | Event::Interrupted { .. }
            | Event::Inconclusive { .. } => true,
            // Frequent: written with the next boundary or within INTERVAL.
            Event::RunStarted { .. }
            | Event::SetupStarted { .. }
            | Event::SetupReady { .. }
            | Event::SetupStopped { .. }
            | Event::Sample { .. }
            | Event::Sampling { .. }
            | Event::FaultHealth { .. }
            | Event::FaultActivity { .. }
            | Event::ActionFinished { .. }
            | Event::Recovered { .. }
            | Event::Note { .. } => false,
            // The runner writes the complete journal itself.
            Event::RunFinished { .. } => false,
        };
        if now {
            let _ = self.tx.send(Msg::Now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_replaces_the_file_with_a_private_one_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("j.json");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&p, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new\n");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    /// `--journal /dev/stdout` with stdout redirected to a file: written
    /// through, never renamed over (that replaced the host's /dev/stdout).
    #[test]
    fn a_path_under_dev_or_proc_is_written_through() {
        let d = tempfile::tempdir().unwrap();
        let f = File::create(d.path().join("out.json")).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        let p = PathBuf::from(format!("/proc/self/fd/{fd}"));
        let render: Render = Arc::new(|r: &RunRecord| format!("{{\"run_id\":\"{}\"}}\n", r.run_id));
        let stub = crate::runner::builder::RecordBuilder::new("r1", "e.yaml", "h").rec;
        let j = JournalFile::open(&p, render, &stub, true).unwrap();
        assert!(!j.atomic());
        j.write_final(&stub).unwrap();
        assert!(std::fs::symlink_metadata(&p)
            .unwrap()
            .file_type()
            .is_symlink());
        let text = std::fs::read_to_string(d.path().join("out.json")).unwrap();
        assert_eq!(text, "{\"run_id\":\"r1\"}\n");
    }

    #[test]
    fn a_missing_directory_fails_and_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("no/such/j.json");
        assert!(write_atomic(&p, "x").is_err());
    }
}
