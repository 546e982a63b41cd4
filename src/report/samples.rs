//! Samples without holding them: while a run goes on, every probe sample is
//! appended to a spool file on disk (one per probe, JSON lines), per-phase
//! statistics are kept in streaming form ([`LatencyAcc`]), and only a bounded
//! window of recent samples stays in the [`RunRecord`](super::record::RunRecord).
//! The final journal copies the spooled samples into the file
//! ([`write_spliced`]), never holding them all in memory; the snapshots
//! written while the run goes on carry the window only (each probe's
//! `samples_omitted` says how many earlier samples they leave out).
//!
//! The spool files are unlinked as soon as they are created (`O_TMPFILE`),
//! so a killed runner leaves nothing behind. Samples reach the spool already
//! redacted: the runner's event emitter masks secrets in every event before
//! any sink sees it.

use super::record::{LatencyStats, SampleRecord};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;

/// Samples of each probe kept in memory: between `WINDOW` and `2 * WINDOW`
/// of the most recent.
pub const WINDOW: usize = 64;

/// Latencies per probe and phase kept exactly; beyond, they go into an HDR
/// histogram (3 significant digits).
pub const EXACT_UP_TO: usize = 2048;

/// The latency statistics of one probe and phase, in fixed memory: exact
/// nearest-rank percentiles up to [`EXACT_UP_TO`] samples; beyond, from an
/// HDR histogram of microseconds with 3 significant digits, so a percentile
/// is within 0.1% (and 1 µs) of the nearest-rank value. `max` is always exact.
#[derive(Clone, Debug, Default)]
pub struct LatencyAcc {
    exact: Vec<f64>,
    hist: Option<hdrhistogram::Histogram<u64>>,
    max: f64,
    n: u64,
}

fn micros(ms: f64) -> u64 {
    (ms.max(0.0) * 1000.0).round() as u64
}

/// Records `us`, growing the histogram's range as needed.
fn record(h: &mut hdrhistogram::Histogram<u64>, us: u64) {
    if h.record(us).is_err() {
        h.saturating_record(us);
    }
}

impl LatencyAcc {
    pub fn record(&mut self, ms: f64) {
        self.n += 1;
        if self.n == 1 || ms > self.max {
            self.max = ms;
        }
        if let Some(h) = &mut self.hist {
            record(h, micros(ms));
            return;
        }
        self.exact.push(ms);
        if self.exact.len() > EXACT_UP_TO {
            // Auto-resizing: memory follows the largest latency, not the count.
            let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("3 significant digits");
            h.auto(true);
            for v in self.exact.drain(..) {
                record(&mut h, micros(v));
            }
            self.exact = Vec::new();
            self.hist = Some(h);
        }
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    /// The statistics of `values`.
    pub fn from_values(values: &[f64]) -> LatencyAcc {
        let mut a = LatencyAcc::default();
        for v in values {
            a.record(*v);
        }
        a
    }

    /// The `p`th percentile (nearest rank; within the tolerance above past
    /// [`EXACT_UP_TO`] samples).
    pub fn quantile(&self, p: u32) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        match &self.hist {
            None => {
                let mut v = self.exact.clone();
                v.sort_by(|a, b| a.total_cmp(b));
                let rank = ((f64::from(p) / 100.0) * v.len() as f64).ceil() as usize;
                Some(v[rank.clamp(1, v.len()) - 1])
            }
            Some(h) => {
                Some((h.value_at_quantile(f64::from(p) / 100.0) as f64 / 1000.0).min(self.max))
            }
        }
    }

    /// p50/p95/p99 (nearest rank, within the tolerance above) and max.
    pub fn stats(&self) -> Option<LatencyStats> {
        let Some(h) = &self.hist else {
            return super::record::latency_stats(&self.exact);
        };
        if self.n == 0 {
            return None;
        }
        // A bucket's highest value may pass the largest sample: never report
        // more than the exact max.
        let q = |p: f64| (h.value_at_quantile(p / 100.0) as f64 / 1000.0).min(self.max);
        Some(LatencyStats {
            p50: q(50.0),
            p95: q(95.0),
            p99: q(99.0),
            max: self.max,
        })
    }
}

/// One probe's spool: an unlinked file of JSON lines, one sample a line.
#[derive(Debug)]
struct ProbeSpool {
    out: BufWriter<File>,
    count: u64,
}

/// The run's sample spool, one unlinked file per probe.
#[derive(Debug)]
pub struct SampleSpool {
    probes: Mutex<Vec<ProbeSpool>>,
}

/// An unlinked, private file in `dir`: `O_TMPFILE`, or on a filesystem
/// without it a named file removed at once.
fn anonymous_file(dir: &Path) -> std::io::Result<File> {
    let t = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir);
    match t {
        Ok(f) => Ok(f),
        Err(_) => {
            let name = dir.join(format!(
                ".faultline-samples.{}.{}",
                std::process::id(),
                rand::random::<u64>()
            ));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&name)?;
            std::fs::remove_file(&name)?;
            Ok(f)
        }
    }
}

/// Whether `dir` is on a tmpfs (or ramfs).
fn on_tmpfs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a zeroed statfs to fill.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    matches!(st.f_type as i64, TMPFS_MAGIC | RAMFS_MAGIC)
}

impl SampleSpool {
    /// A spool for `probes` probes, in `dir` (on disk, not tmpfs, ideally).
    pub fn create(dir: &Path, probes: usize) -> std::io::Result<SampleSpool> {
        let mut v = Vec::with_capacity(probes);
        for _ in 0..probes {
            v.push(ProbeSpool {
                out: BufWriter::with_capacity(16 * 1024, anonymous_file(dir)?),
                count: 0,
            });
        }
        Ok(SampleSpool {
            probes: Mutex::new(v),
        })
    }

    /// A spool in the first of `dirs` that takes it, preferring a disk to
    /// a tmpfs (where the spool would sit in memory after all: the default
    /// state directory /run/faultline is one).
    pub fn create_in(dirs: &[std::path::PathBuf], probes: usize) -> Option<SampleSpool> {
        let disk = dirs.iter().filter(|d| !on_tmpfs(d));
        disk.chain(dirs.iter())
            .find_map(|d| SampleSpool::create(d, probes).ok())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ProbeSpool>> {
        self.probes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a sample of probe `probe`.
    pub fn append(&self, probe: usize, s: &SampleRecord) -> std::io::Result<()> {
        let mut g = self.lock();
        let Some(p) = g.get_mut(probe) else {
            return Ok(());
        };
        serde_json::to_writer(&mut p.out, s)?;
        p.out.write_all(b"\n")?;
        p.count += 1;
        Ok(())
    }

    /// Samples spooled for `probe`.
    pub fn count(&self, probe: usize) -> u64 {
        self.lock().get(probe).map_or(0, |p| p.count)
    }

    /// Calls `f` with each spooled line (a sample's JSON, no newline) of
    /// probe `probe`, in the order they were appended, reading the file in
    /// pieces.
    pub fn for_each_line(
        &self,
        probe: usize,
        mut f: impl FnMut(&str) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        // Flush, then read through a positioned reader: appends may go on.
        let (file, len) = {
            let mut g = self.lock();
            let Some(p) = g.get_mut(probe) else {
                return Ok(());
            };
            p.out.flush()?;
            let file = p.out.get_ref().try_clone()?;
            let len = file.metadata()?.len();
            (file, len)
        };
        let reader = BufReader::with_capacity(
            64 * 1024,
            At {
                file,
                pos: 0,
                end: len,
            },
        );
        for line in reader.lines() {
            let line = line?;
            if !line.is_empty() {
                f(&line)?;
            }
        }
        Ok(())
    }

    /// Calls `f` with each spooled sample of probe `probe`, in order.
    pub fn for_each(&self, probe: usize, mut f: impl FnMut(SampleRecord)) -> std::io::Result<()> {
        self.for_each_line(probe, |l| {
            f(serde_json::from_str(l)?);
            Ok(())
        })
    }

    /// Every spooled sample of probe `probe` (for the formats that need them
    /// in memory: the Chaos Toolkit journal).
    pub fn all(&self, probe: usize) -> std::io::Result<Vec<SampleRecord>> {
        let mut v = Vec::new();
        self.for_each(probe, |s| v.push(s))?;
        Ok(v)
    }
}

/// Reads a file from `pos` to `end` with `pread` (its offset shared with
/// the appender is never moved).
struct At {
    file: File,
    pos: u64,
    end: u64,
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.end.saturating_sub(self.pos) as usize;
        if left == 0 {
            return Ok(0);
        }
        let n = buf.len().min(left);
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

/// The placeholder put in probe `probe`'s samples before rendering the
/// final journal; [`write_spliced`] replaces it with the spooled samples.
pub fn marker(nonce: u64, probe: usize) -> String {
    format!("@@faultline-spooled-samples-{nonce:016x}-{probe}@@")
}

/// Writes `text` (a rendered journal holding one placeholder sample whose
/// `detail` is [`marker`]`(nonce, i)` for each probe `i` in `probes`) to
/// `out`, each placeholder object replaced by that probe's spooled samples.
pub fn write_spliced(
    text: &str,
    nonce: u64,
    probes: &[usize],
    spool: &SampleSpool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut at = 0;
    for &i in probes {
        let m = marker(nonce, i);
        let Some(pos) = text[at..].find(&m).map(|p| p + at) else {
            continue;
        };
        // The placeholder's fields hold no braces: its object runs from the
        // `{` before the marker to the `}` after it.
        let (Some(open), Some(close)) = (
            text[..pos].rfind('{'),
            text[pos..].find('}').map(|c| c + pos),
        ) else {
            continue;
        };
        out.write_all(&text.as_bytes()[at..open])?;
        let mut first = true;
        spool.for_each_line(i, |l| {
            if !first {
                out.write_all(b",\n")?;
            }
            first = false;
            out.write_all(l.as_bytes())
        })?;
        at = close + 1;
    }
    out.write_all(&text.as_bytes()[at..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::record::{SamplePhase, SampleStatus};

    fn sample(i: u32) -> SampleRecord {
        SampleRecord {
            phase: SamplePhase::During,
            at_ms: i as f64,
            latency_ms: 1.0 + i as f64 / 10.0,
            status: SampleStatus::Success,
            detail: format!("ok {i} {{\"braces\"}}"),
            output: None,
        }
    }

    #[test]
    fn a_spool_prefers_a_disk_to_a_tmpfs() {
        if !on_tmpfs(Path::new("/dev/shm")) {
            println!("skipped: /dev/shm is not a tmpfs here");
            return;
        }
        let d = tempfile::tempdir_in("/var/tmp").unwrap();
        assert!(!on_tmpfs(d.path()) || on_tmpfs(Path::new("/var/tmp")));
        let s = SampleSpool::create_in(&["/dev/shm".into(), d.path().to_path_buf()], 1);
        assert!(s.is_some());
        // Only a tmpfs: used all the same.
        assert!(SampleSpool::create_in(&["/dev/shm".into()], 1).is_some());
    }

    #[test]
    fn spool_keeps_samples_in_order_and_leaves_no_file() {
        let d = tempfile::tempdir().unwrap();
        let s = SampleSpool::create(d.path(), 2).unwrap();
        for i in 0..1000 {
            s.append(i as usize % 2, &sample(i)).unwrap();
        }
        assert_eq!(s.count(0), 500);
        let got = s.all(1).unwrap();
        assert_eq!(got.len(), 500);
        assert_eq!(got[3].at_ms, 7.0);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        // Appending after reading goes on where it was.
        s.append(1, &sample(5000)).unwrap();
        assert_eq!(s.all(1).unwrap().last().unwrap().at_ms, 5000.0);
    }

    #[test]
    fn spliced_journal_is_valid_json_with_every_sample() {
        let d = tempfile::tempdir().unwrap();
        let s = SampleSpool::create(d.path(), 2).unwrap();
        for i in 0..10 {
            s.append(0, &sample(i)).unwrap();
        }
        let mut m = sample(0);
        m.detail = marker(7, 0);
        let doc = serde_json::json!({"probes": [
            {"name": "a", "samples": [m]},
            {"name": "b", "samples": []},
        ]});
        let text = serde_json::to_string_pretty(&doc).unwrap();
        let mut out = Vec::new();
        write_spliced(&text, 7, &[0, 1], &s, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let a = v["probes"][0]["samples"].as_array().unwrap();
        assert_eq!(a.len(), 10);
        assert_eq!(a[9]["detail"], "ok 9 {\"braces\"}");
        assert_eq!(v["probes"][1]["samples"].as_array().unwrap().len(), 0);
    }

    /// Past `EXACT_UP_TO`, percentiles come from the histogram: within 0.1%
    /// (and 1 µs) of the nearest-rank value; max stays exact.
    #[test]
    fn histogram_percentiles_match_nearest_rank_within_tolerance() {
        let mut acc = LatencyAcc::default();
        let mut all = Vec::new();
        let mut x: u64 = 12345;
        for _ in 0..50_000 {
            // A spread from 0.05 ms to about 5 s.
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let ms = 0.05 * 10f64.powf((x >> 11) as f64 / (1u64 << 53) as f64 * 5.0);
            acc.record(ms);
            all.push(ms);
        }
        let got = acc.stats().unwrap();
        let want = crate::report::record::latency_stats(&all).unwrap();
        for (g, w) in [
            (got.p50, want.p50),
            (got.p95, want.p95),
            (got.p99, want.p99),
        ] {
            assert!((g - w).abs() <= w * 0.001 + 0.001, "{g} vs {w}");
        }
        assert_eq!(got.max, want.max);
        // Below the threshold it is exact.
        let mut small = LatencyAcc::default();
        for v in &all[..100] {
            small.record(*v);
        }
        assert_eq!(
            small.stats(),
            crate::report::record::latency_stats(&all[..100])
        );
    }
}
