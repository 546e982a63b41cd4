//! The state directory: one append-only JSON-lines file per run holding its
//! undo records, synced to disk before the fault they undo touches the host.
//!
//! ```text
//! {"type":"run", "run_id":..., "runner_pid":..., "deadline_ms":..., "targets":[...]}
//! {"type":"undo", "id":1, "fault":"pause the cache", "kind":"process_pause", "target":"pid 42", "op":{...}}
//! {"type":"done", "id":1, "result":"done"}
//! {"type":"end"}
//! ```
//! A record without a `done` line is pending. Readers skip lines they cannot
//! parse (a torn last line after a crash) and report them, and still recover
//! everything they can read.

use super::trust;
use super::undo::{Applied, RunBounds, UndoOp};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where state lives unless `--state-dir` / FAULTLINE_STATE_DIR says otherwise.
pub fn default_state_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/faultline");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("faultline"),
        _ => PathBuf::from(format!("/tmp/faultline-{}", nix::unistd::getuid())),
    }
}

pub fn resolve_state_dir(given: Option<&Path>) -> PathBuf {
    given
        .map(Path::to_path_buf)
        .unwrap_or_else(default_state_dir)
}

fn runs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("runs")
}

pub fn run_file(state_dir: &Path, run_id: &str) -> PathBuf {
    runs_dir(state_dir).join(format!("{run_id}.jsonl"))
}

/// Where file faults of a run keep byte-exact backups of what they change
/// (`STATE/backups/<run>/`); undo records may only restore from there.
pub fn backup_dir(state_dir: &Path, run_id: &str) -> PathBuf {
    state_dir
        .join("backups")
        .join(super::undo::run_slug(run_id))
}

/// Creates the state directory (0700) when missing and checks that nobody
/// else could write it (see [`trust`]).
pub fn ensure_state_dir(state_dir: &Path) -> Result<()> {
    Ok(trust::ensure_state_dir(state_dir)?)
}

/// A line of a run file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Run(RunHeader),
    Undo(UndoRecord),
    Done {
        id: u64,
        result: Applied,
        at: DateTime<Utc>,
        /// Who applied it: `runner`, `watchdog`, `recover`, `panic`.
        by: String,
    },
    Failed {
        id: u64,
        error: String,
        at: DateTime<Utc>,
    },
    Watchdog {
        pid: i32,
        start_time: u64,
    },
    End {
        at: DateTime<Utc>,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunHeader {
    pub run_id: String,
    pub title: String,
    pub file: String,
    pub runner_pid: i32,
    pub runner_start_time: u64,
    pub started_at: DateTime<Utc>,
    /// The run's hard deadline (`limits.max_duration` after the start).
    pub deadline: DateTime<Utc>,
    /// What the run's faults touch, for refusing a second run on the same target.
    #[serde(default)]
    pub targets: Vec<String>,
    /// The run's JSON journal (absolute), which the watchdog marks as ended
    /// by it when the runner dies; absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UndoRecord {
    pub id: u64,
    /// Index of the fault within the run (its method step), to roll back per fault.
    pub fault: usize,
    pub fault_label: String,
    pub kind: String,
    pub target: String,
    pub at: DateTime<Utc>,
    pub op: UndoOp,
    /// The uid of the process the op signals or moves, when it acts on one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Set when read back from a file: why this record is not run (it is not
    /// an undo faultline records for this run).
    #[serde(skip)]
    pub refused: Option<String>,
}

/// The process an op acts on, if any.
fn process_of(op: &UndoOp) -> Option<i32> {
    match op {
        UndoOp::ResumeProcess { pid, .. }
        | UndoOp::KillProcess { pid, .. }
        | UndoOp::MoveToCgroup { pid, .. } => Some(*pid),
        UndoOp::StopProcessGroup { pgid, .. } => Some(*pgid),
        UndoOp::StopTracer { pid, .. } => Some(*pid),
        UndoOp::Command { .. }
        | UndoOp::WriteFile { .. }
        | UndoOp::RemoveCgroup { .. }
        | UndoOp::RemoveFile { .. }
        | UndoOp::RestoreFile { .. }
        | UndoOp::ExpireSilence { .. } => None,
    }
}

/// The writer side, owned by the runner.
pub struct RunJournal {
    path: PathBuf,
    file: File,
    next_id: u64,
    /// In-memory copy of the records and which are done, for rollback.
    records: Vec<UndoRecord>,
    done: std::collections::BTreeSet<u64>,
    /// Processes pinned by a pidfd, by record id: their undo signals
    /// through it (no /proc read, no pid-reuse window).
    pins: std::collections::HashMap<u64, std::sync::Arc<crate::sys::proc::Pinned>>,
}

/// One undo operation to record in a batch.
pub struct UndoItem {
    /// The target, in words (`pid 42 (redis-server)`).
    pub target: String,
    pub op: UndoOp,
    /// The uid of the process the op acts on, when the caller has read it
    /// already; otherwise it is read from /proc.
    pub uid: Option<u32>,
    /// The process the op signals, pinned: the runner's own rollback signals
    /// it through this pidfd. Run files keep pid and start time, which the
    /// watchdog and `recover` check instead.
    pub pin: Option<std::sync::Arc<crate::sys::proc::Pinned>>,
}

impl UndoItem {
    pub fn new(target: impl Into<String>, op: UndoOp) -> Self {
        UndoItem {
            target: target.into(),
            op,
            uid: None,
            pin: None,
        }
    }
}

/// An undo line of a batch: the fields of [`UndoRecord`], in its order, with
/// the batch's time formatted once (chrono formats a time in about 250 ns,
/// a noticeable share at 10,000 records). A test checks that both write the
/// same bytes.
#[derive(Serialize)]
struct BatchUndoLine<'a> {
    #[serde(rename = "type")]
    tag: &'static str,
    id: u64,
    fault: usize,
    fault_label: &'a str,
    kind: &'a str,
    target: &'a str,
    at: &'a str,
    op: &'a UndoOp,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
}

/// A line serialized without copying what it holds.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum LineRef<'a> {
    /// `at` formatted as chrono writes it (see [`Stamp`]).
    Done {
        id: u64,
        result: Applied,
        at: &'a str,
        by: &'a str,
    },
    Failed {
        id: u64,
        error: &'a str,
        at: &'a str,
    },
}

/// The time for `done` lines, formatted at most once a millisecond: at
/// 10,000 records formatting each time costs about a tenth of the rollback.
struct Stamp {
    at: std::time::Instant,
    text: String,
}

impl Stamp {
    fn new() -> Stamp {
        let mut s = Stamp {
            at: std::time::Instant::now(),
            text: String::new(),
        };
        s.refresh();
        s
    }

    fn refresh(&mut self) {
        self.at = std::time::Instant::now();
        self.text = serde_json::to_value(Utc::now())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
    }

    /// Now, to the millisecond.
    fn now(&mut self) -> &str {
        if self.at.elapsed() >= std::time::Duration::from_millis(1) {
            self.refresh();
        }
        &self.text
    }
}

impl RunJournal {
    pub fn create(state_dir: &Path, header: RunHeader) -> Result<Self> {
        ensure_state_dir(state_dir)?;
        let path = run_file(state_dir, &header.run_id);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut j = RunJournal {
            path,
            file,
            next_id: 1,
            records: Vec::new(),
            done: Default::default(),
            pins: Default::default(),
        };
        j.append(&Line::Run(header))?;
        // Make the new directory entry durable too.
        if let Ok(d) = File::open(runs_dir(state_dir)) {
            let _ = d.sync_all();
        }
        Ok(j)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state directory this run file is in (`STATE/runs/<run>.jsonl`).
    pub fn state_dir(&self) -> Option<&Path> {
        self.path.parent()?.parent()
    }

    /// Appends one line and fsyncs it.
    pub fn append(&mut self, line: &Line) -> Result<()> {
        let mut s = serde_json::to_string(line)?;
        s.push('\n');
        self.file
            .write_all(s.as_bytes())
            .and_then(|_| self.file.sync_data())
            .with_context(|| format!("cannot write undo record to {}", self.path.display()))
    }

    /// Records an undo operation (synced) and returns its id.
    pub fn record(
        &mut self,
        fault: usize,
        fault_label: &str,
        kind: &str,
        target: &str,
        op: UndoOp,
    ) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let rec = UndoRecord {
            id,
            fault,
            fault_label: fault_label.to_string(),
            kind: kind.to_string(),
            target: target.to_string(),
            at: Utc::now(),
            uid: process_of(&op).and_then(|pid| crate::sys::proc::uids(pid).map(|u| u[0])),
            op,
            refused: None,
        };
        self.append(&Line::Undo(rec.clone()))?;
        self.records.push(rec);
        Ok(id)
    }

    /// Records many undo operations of one fault with one write and one
    /// fsync: every record is durable before this returns, so the caller may
    /// then change all the targets (the write-ahead rule holds per batch).
    /// A pinned process is kept for rollback (see [`UndoItem::pin`]).
    /// Returns their ids, in order.
    pub fn record_batch(
        &mut self,
        fault: usize,
        fault_label: &str,
        kind: &str,
        items: Vec<UndoItem>,
    ) -> Result<Vec<u64>> {
        if items.is_empty() {
            return Ok(vec![]);
        }
        let mut buf = Vec::with_capacity(items.len() * 256);
        let mut recs = Vec::with_capacity(items.len());
        let mut pins = Vec::new();
        let at = Utc::now();
        let at_text = serde_json::to_value(at)?;
        let at_text = at_text.as_str().unwrap_or_default();
        for item in items {
            let uid = item.uid.or_else(|| {
                process_of(&item.op).and_then(|pid| crate::sys::proc::uids(pid).map(|u| u[0]))
            });
            let rec = UndoRecord {
                id: self.next_id,
                fault,
                fault_label: fault_label.to_string(),
                kind: kind.to_string(),
                target: item.target,
                at,
                uid,
                op: item.op,
                refused: None,
            };
            self.next_id += 1;
            let line = BatchUndoLine {
                tag: "undo",
                id: rec.id,
                fault,
                fault_label,
                kind,
                target: &rec.target,
                at: at_text,
                op: &rec.op,
                uid: rec.uid,
            };
            serde_json::to_writer(&mut buf, &line)?;
            buf.push(b'\n');
            if let Some(p) = item.pin {
                pins.push((rec.id, p));
            }
            recs.push(rec);
        }
        self.file
            .write_all(&buf)
            .and_then(|_| self.file.sync_data())
            .with_context(|| format!("cannot write undo records to {}", self.path.display()))?;
        let ids = recs.iter().map(|r| r.id).collect();
        self.records.extend(recs);
        self.pins.extend(pins);
        Ok(ids)
    }

    /// Records not yet rolled back, oldest first.
    pub fn pending(&self) -> Vec<UndoRecord> {
        self.records
            .iter()
            .filter(|r| !self.done.contains(&r.id))
            .cloned()
            .collect()
    }

    /// Replays `records` newest first (with retries), marking each done or failed.
    pub fn replay(&mut self, records: &[UndoRecord], by: &str, attempts: u32) -> Vec<Replayed> {
        let results = replay_pinned(&mut self.file, records, by, attempts, &self.pins);
        for r in &results {
            if r.result.is_ok() {
                // Its pidfd is closed at `finish`, after the rollback.
                self.done.insert(r.record.id);
            }
        }
        results
    }

    pub fn mark_done(&mut self, id: u64, result: Applied, by: &str) -> Result<()> {
        self.done.insert(id);
        self.append(&Line::Done {
            id,
            result,
            at: Utc::now(),
            by: by.to_string(),
        })
    }

    pub fn mark_failed(&mut self, id: u64, error: &str) -> Result<()> {
        self.append(&Line::Failed {
            id,
            error: error.to_string(),
            at: Utc::now(),
        })
    }
}

/// A run file as read back: header, records, which are pending, problems.
#[derive(Clone, Debug, Default)]
pub struct RunState {
    pub path: PathBuf,
    pub header: Option<RunHeader>,
    pub records: Vec<UndoRecord>,
    pub done: std::collections::BTreeSet<u64>,
    pub last_error: std::collections::BTreeMap<u64, String>,
    pub watchdog: Option<(i32, u64)>,
    pub ended: bool,
    /// Lines that could not be read (line number, reason).
    pub damaged: Vec<(usize, String)>,
    /// Set by [`read_all`] for a run file it did not read because others
    /// could have written it (a link, another owner, writable by others).
    pub untrusted: Option<String>,
}

impl RunState {
    pub fn run_id(&self) -> String {
        self.header
            .as_ref()
            .map(|h| h.run_id.clone())
            .unwrap_or_else(|| {
                self.path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
    }

    /// Records refused as not faultline's (see [`UndoOp::out_of_bounds`]).
    pub fn refused(&self) -> Vec<&UndoRecord> {
        self.pending()
            .into_iter()
            .filter(|r| r.refused.is_some())
            .collect()
    }

    /// Undo records not yet applied, in the order they were recorded
    /// (refused ones included: replaying them fails without running them).
    pub fn pending(&self) -> Vec<&UndoRecord> {
        self.records
            .iter()
            .filter(|r| !self.done.contains(&r.id))
            .collect()
    }

    /// Is the runner that wrote this file still alive?
    pub fn runner_alive(&self) -> bool {
        self.header
            .as_ref()
            .is_some_and(|h| crate::sys::proc::is_same(h.runner_pid, h.runner_start_time))
    }

    /// A run that is still going (or died without ending).
    pub fn is_live(&self) -> bool {
        !self.ended && self.runner_alive()
    }
}

/// Reads a run file. It is read only when it and the directories it is in
/// are trusted (see [`trust`]); its undo records are checked against its
/// header, and those faultline would not have written are marked refused.
pub fn read_run(path: &Path) -> Result<RunState> {
    use std::io::Read;
    trust::check_run_file_dirs(path)?;
    let mut file = trust::open_file(path, OpenOptions::new().read(true))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut st = RunState {
        path: path.to_path_buf(),
        ..Default::default()
    };
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line: Line = match std::str::from_utf8(raw)
            .map_err(|e| e.to_string())
            .and_then(|s| serde_json::from_str(s).map_err(|e| e.to_string()))
        {
            Ok(l) => l,
            Err(e) => {
                st.damaged.push((i + 1, e));
                continue;
            }
        };
        match line {
            Line::Run(h) => st.header = Some(h),
            Line::Undo(r) => st.records.push(r),
            Line::Done { id, .. } => {
                st.done.insert(id);
            }
            Line::Failed { id, error, .. } => {
                st.last_error.insert(id, error);
            }
            Line::Watchdog { pid, start_time } => st.watchdog = Some((pid, start_time)),
            Line::End { .. } => st.ended = true,
        }
    }
    let state_dir = std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent()?.parent().map(Path::to_path_buf));
    let bounds = st.header.as_ref().map(|h| RunBounds {
        run_id: h.run_id.clone(),
        runner_start_time: h.runner_start_time,
        state_dir: state_dir.clone(),
    });
    for r in &mut st.records {
        r.refused = match &bounds {
            Some(b) => r.op.out_of_bounds(b, r.uid),
            None => Some("the run file has no header line naming its run".into()),
        };
    }
    Ok(st)
}

/// Every run file in the state directory, oldest first.
/// A run file that others could have written is not read; it comes back
/// with [`RunState::untrusted`] set. An untrusted state directory is an error.
pub fn read_all(state_dir: &Path) -> Result<Vec<RunState>> {
    let dir = runs_dir(state_dir);
    let mut out = Vec::new();
    if !trust::check_state_dir(state_dir)? {
        return Ok(out);
    }
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    paths.sort();
    for p in paths {
        match read_run(&p) {
            Ok(st) => out.push(st),
            Err(e) if trust::exit_code(&e) == crate::exit::PRIVILEGES => out.push(RunState {
                path: p.clone(),
                untrusted: Some(format!("{e:#}")),
                ..Default::default()
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Opens an existing run file for appending `done` lines (watchdog, recover).
pub fn open_append(path: &Path) -> Result<File> {
    trust::open_file(path, OpenOptions::new().append(true))
        .with_context(|| format!("cannot open {} for writing", path.display()))
}

pub fn append_line(file: &mut File, line: &Line) -> Result<()> {
    let mut s = serde_json::to_string(line)?;
    s.push('\n');
    file.write_all(s.as_bytes())?;
    file.sync_data()?;
    Ok(())
}

/// The outcome of replaying one undo record.
#[derive(Clone, Debug)]
pub struct Replayed {
    pub record: UndoRecord,
    pub result: Result<Applied, String>,
}

/// Replays `records` newest first, with retries and backoff for failures,
/// appending `done`/`failed` lines to `file`.
pub fn replay(file: &mut File, records: &[UndoRecord], by: &str, attempts: u32) -> Vec<Replayed> {
    replay_pinned(file, records, by, attempts, &Default::default())
}

/// Buffered `done` lines are written out past this size.
const LINE_BUFFER: usize = 64 * 1024;

/// [`replay`], signalling the processes in `pins` through their pidfds.
fn replay_pinned(
    file: &mut File,
    records: &[UndoRecord],
    by: &str,
    attempts: u32,
    pins: &std::collections::HashMap<u64, std::sync::Arc<crate::sys::proc::Pinned>>,
) -> Vec<Replayed> {
    let mut out = Vec::with_capacity(records.len());
    // `done` lines are not synced one by one: a lost one only makes a later
    // replay apply the (idempotent) undo again; one sync at the end. The
    // lines of signals are also written together; before any slower op
    // (a command, a file restore) what is buffered is written, so the file
    // says what was undone before it if the runner dies in it.
    let mut lines: Vec<u8> = Vec::new();
    let mut stamp = Stamp::new();
    let flush = |file: &mut File, lines: &mut Vec<u8>| {
        let _ = file.write_all(lines);
        lines.clear();
    };
    for r in records.iter().rev() {
        let pin = pins.get(&r.id);
        let signal = matches!(
            r.op,
            UndoOp::ResumeProcess { .. } | UndoOp::KillProcess { .. }
        );
        if !signal || lines.len() > LINE_BUFFER {
            flush(file, &mut lines);
        }
        let result = match (&r.refused, pin) {
            (Some(why), _) => Err(format!("refused, not run: {why}")),
            (None, Some(p)) => with_retry(attempts, || apply_pinned(&r.op, p)),
            (None, None) => apply_with_retry(&r.op, attempts),
        };
        let at = stamp.now();
        let line = match &result {
            Ok(a) => LineRef::Done {
                id: r.id,
                result: *a,
                at,
                by,
            },
            Err(e) => LineRef::Failed {
                id: r.id,
                error: e,
                at,
            },
        };
        if serde_json::to_writer(&mut lines, &line).is_ok() {
            lines.push(b'\n');
        }
        out.push(Replayed {
            record: r.clone(),
            result,
        });
    }
    flush(file, &mut lines);
    let _ = file.sync_data();
    out
}

/// Applies a signal undo through the pinned process; other ops as usual.
fn apply_pinned(op: &UndoOp, pin: &crate::sys::proc::Pinned) -> Result<Applied, String> {
    use crate::sys::proc::SignalOutcome;
    let sig = match op {
        UndoOp::ResumeProcess { .. } => nix::sys::signal::Signal::SIGCONT,
        UndoOp::KillProcess { .. } => nix::sys::signal::Signal::SIGKILL,
        _ => return op.apply(),
    };
    match pin.signal(sig) {
        Ok(SignalOutcome::Sent) => Ok(Applied::Done),
        Ok(SignalOutcome::Gone) => Ok(Applied::AlreadyGone),
        Err(e) => Err(format!("{sig} to pid {} failed: {e}", pin.pid)),
    }
}

/// Applies an undo op, retrying failures with exponential backoff
/// (50ms, 100ms, 200ms, ...).
pub fn apply_with_retry(op: &UndoOp, attempts: u32) -> Result<Applied, String> {
    with_retry(attempts, || op.apply())
}

fn with_retry(
    attempts: u32,
    mut apply: impl FnMut() -> Result<Applied, String>,
) -> Result<Applied, String> {
    let mut delay = std::time::Duration::from_millis(50);
    let mut last = String::new();
    for i in 0..attempts.max(1) {
        match apply() {
            Ok(a) => return Ok(a),
            Err(e) => last = e,
        }
        if i + 1 < attempts {
            std::thread::sleep(delay);
            delay *= 2;
        }
    }
    Err(last)
}

/// Writes the end line and removes the file when nothing is pending.
pub fn finish(mut journal: RunJournal) -> Result<()> {
    journal.finish()
}

impl RunJournal {
    /// Writes the end line, and removes the file when nothing is pending.
    pub fn finish(&mut self) -> Result<()> {
        self.pins.clear();
        append_line(&mut self.file, &Line::End { at: Utc::now() })?;
        let st = read_run(&self.path)?;
        if st.pending().is_empty() && st.damaged.is_empty() {
            fs::remove_file(&self.path)
                .with_context(|| format!("cannot remove {}", self.path.display()))?;
        }
        Ok(())
    }
}

/// Holds the state directory's lock (flock) while a run registers itself,
/// so two runs starting at once see each other.
pub struct StateLock {
    _lock: nix::fcntl::Flock<File>,
}

impl StateLock {
    pub fn acquire(state_dir: &Path) -> Result<Self> {
        ensure_state_dir(state_dir)?;
        let path = state_dir.join("lock");
        let file = trust::open_file(
            &path,
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600),
        )?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map(|f| StateLock { _lock: f })
            .map_err(|(_, e)| anyhow::anyhow!("cannot lock {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(id: &str) -> RunHeader {
        RunHeader {
            journal: None,
            run_id: id.into(),
            title: "t".into(),
            file: "f".into(),
            runner_pid: std::process::id() as i32,
            runner_start_time: crate::sys::proc::start_time(std::process::id() as i32).unwrap(),
            started_at: Utc::now(),
            deadline: Utc::now(),
            targets: vec![],
        }
    }

    #[test]
    fn records_are_pending_until_done_and_torn_lines_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = RunJournal::create(dir.path(), header("r1")).unwrap();
        let f = dir.path().join("x");
        fs::write(&f, "").unwrap();
        let a = j
            .record(
                0,
                "s",
                "disk_fill",
                "x",
                UndoOp::RemoveFile { path: f.clone() },
            )
            .unwrap();
        let _b = j
            .record(
                0,
                "s",
                "disk_fill",
                "y",
                UndoOp::RemoveFile {
                    path: dir.path().join("y"),
                },
            )
            .unwrap();
        j.mark_done(a, Applied::Done, "runner").unwrap();
        let path = j.path().to_path_buf();
        drop(j);
        // A torn last line, as after a crash mid-write.
        let mut file = open_append(&path).unwrap();
        file.write_all(b"{\"type\":\"undo\",\"id\":3,\"fau")
            .unwrap();
        let st = read_run(&path).unwrap();
        assert_eq!(st.pending().len(), 1);
        assert_eq!(st.pending()[0].target, "y");
        assert_eq!(st.damaged.len(), 1);
        assert!(st.is_live());
        let all = read_all(dir.path()).unwrap();
        assert_eq!(all.len(), 1);
    }

    /// A batch writes each record exactly as a single record is written,
    /// and the runner's rollback signals pinned processes through their
    /// pidfds, with a `done` line each and one sync.
    #[test]
    fn batch_lines_match_single_records_and_pinned_processes_are_resumed() {
        use crate::sys::proc::{Pinned, SignalOutcome};
        let dir = tempfile::tempdir().unwrap();
        let mut j = RunJournal::create(dir.path(), header("r-batch")).unwrap();
        let mut kids: Vec<std::process::Child> = (0..3)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut items = vec![];
        let mut pins = vec![];
        for k in &kids {
            let pid = k.id() as i32;
            let st = loop {
                if let Some(st) = crate::sys::proc::start_time(pid) {
                    break st;
                }
            };
            let (pin, _) = Pinned::open(pid, st).unwrap();
            let pin = std::sync::Arc::new(pin);
            pins.push(pin.clone());
            items.push(UndoItem {
                pin: Some(pin),
                ..UndoItem::new(
                    format!("pid {pid}"),
                    UndoOp::ResumeProcess {
                        pid,
                        start_time: st,
                    },
                )
            });
        }
        let ids = j.record_batch(2, "pause", "process_pause", items).unwrap();
        assert_eq!(ids.len(), 3);
        for p in &pins {
            assert_eq!(
                p.signal(nix::sys::signal::Signal::SIGSTOP),
                Ok(SignalOutcome::Sent)
            );
        }
        let text = fs::read_to_string(j.path()).unwrap();
        let st = read_run(j.path()).unwrap();
        assert_eq!(st.records.len(), 3);
        for r in &st.records {
            let single = serde_json::to_string(&Line::Undo(r.clone())).unwrap();
            assert!(
                text.lines().any(|l| l == single),
                "{single} not written as such in\n{text}"
            );
            assert_eq!(
                r.uid,
                Some(nix::unistd::getuid().as_raw()),
                "uid read from /proc"
            );
        }
        let stopped = |pid: i32| crate::sys::proc::info(pid).is_some_and(|i| i.state == 'T');
        let wait = |f: &dyn Fn() -> bool| {
            (0..400).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(5));
                f()
            })
        };
        assert!(wait(&|| kids.iter().all(|k| stopped(k.id() as i32))));
        let pending = j.pending();
        let results = j.replay(&pending, "runner", 1);
        assert!(results.iter().all(|r| r.result == Ok(Applied::Done)));
        assert!(
            wait(&|| kids.iter().all(|k| !stopped(k.id() as i32))),
            "resumed"
        );
        assert!(
            read_run(j.path()).unwrap().pending().is_empty(),
            "done lines written"
        );
        for k in &mut kids {
            let _ = k.kill();
            let _ = k.wait();
        }
        let path = j.path().to_path_buf();
        finish(j).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn replay_marks_records_done_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = RunJournal::create(dir.path(), header("r2")).unwrap();
        let f = dir.path().join(".faultline-fill-r2-1");
        fs::write(&f, "x").unwrap();
        j.record(
            0,
            "s",
            "disk_fill",
            "fill",
            UndoOp::RemoveFile { path: f.clone() },
        )
        .unwrap();
        let path = j.path().to_path_buf();
        let st = read_run(&path).unwrap();
        let pending: Vec<UndoRecord> = st.pending().into_iter().cloned().collect();
        let mut file = open_append(&path).unwrap();
        let r = replay(&mut file, &pending, "recover", 3);
        assert_eq!(r[0].result, Ok(Applied::Done));
        assert!(!f.exists());
        assert!(read_run(&path).unwrap().pending().is_empty());
        let again = replay(&mut file, &pending, "recover", 3);
        assert_eq!(again[0].result, Ok(Applied::AlreadyGone));
        finish(j).unwrap();
        assert!(
            !path.exists(),
            "a finished run with nothing pending is removed"
        );
    }

    #[test]
    fn records_read_back_that_faultline_would_not_write_are_refused_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = RunJournal::create(dir.path(), header("r3")).unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "x").unwrap();
        let pwned = dir.path().join("pwned");
        j.record(
            0,
            "s",
            "disk_fill",
            "x",
            UndoOp::RemoveFile {
                path: victim.clone(),
            },
        )
        .unwrap();
        j.record(
            0,
            "s",
            "network",
            "x",
            UndoOp::Command {
                argv: vec!["touch".into(), pwned.display().to_string()],
                gone_if: vec![],
            },
        )
        .unwrap();
        let me = std::process::id() as i32;
        j.record(
            0,
            "s",
            "process_pause",
            "me",
            UndoOp::ResumeProcess {
                pid: me,
                start_time: crate::sys::proc::start_time(me).unwrap(),
            },
        )
        .unwrap();
        let path = j.path().to_path_buf();
        let st = read_run(&path).unwrap();
        assert_eq!(st.pending().len(), 3);
        assert_eq!(st.refused().len(), 2, "{:?}", st.refused());
        let resume = &st.records[2];
        assert_eq!(resume.uid, crate::sys::proc::uids(me).map(|u| u[0]));
        assert!(resume.refused.is_none());
        let pending: Vec<UndoRecord> = st.pending().into_iter().cloned().collect();
        let mut file = open_append(&path).unwrap();
        let r = replay(&mut file, &pending, "recover", 1);
        assert!(
            victim.exists(),
            "a path that is not a fill file is not removed"
        );
        assert!(!pwned.exists(), "a crafted command is not run");
        let errors: Vec<String> = r.iter().filter_map(|r| r.result.clone().err()).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().all(|e| e.starts_with("refused, not run:")));
        assert!(
            read_run(&path).unwrap().pending().len() == 2,
            "refused records stay pending"
        );
    }
}
