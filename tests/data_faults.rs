//! `file_corrupt` on real files in a temporary directory: each mode changes
//! the file as planned, and replaying the undo records (as the runner, the
//! watchdog and `recover` do, trust checks included) restores it byte-exact
//! with its mode and timestamps; a symbolic link swapped in afterwards is not
//! followed; too many matches are refused; `plan` changes nothing; and a
//! runner SIGKILLed mid-fault is cleaned up by the watchdog. Needs no root.

mod support;

use faultline::experiment::model::{BlastRadius, Fault};
use faultline::fault::corrupt::{ByteRange, CorruptMode, FileCorruptSpec};
use faultline::fault::{FaultContext, UndoLog};
use faultline::journal::undo::{RunBounds, UndoOp};
use faultline::units::Size;
use sha2::{Digest, Sha256};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;

const RUN: &str = "dt-run";

/// The undo log of a run whose state directory is `state`.
struct StateUndo {
    state: PathBuf,
    ops: Vec<UndoOp>,
}

impl UndoLog for StateUndo {
    fn record(&mut self, _target: &str, op: UndoOp) -> anyhow::Result<()> {
        self.ops.push(op);
        Ok(())
    }
    fn backup_dir(&self) -> Option<PathBuf> {
        Some(faultline::journal::store::backup_dir(&self.state, RUN))
    }
}

impl StateUndo {
    fn bounds(&self) -> RunBounds {
        RunBounds {
            run_id: RUN.into(),
            runner_start_time: 0,
            state_dir: Some(self.state.clone()),
        }
    }
    /// Replays the records newest first, each checked as a record read back
    /// from a run file is.
    fn rollback(&mut self) -> Vec<Result<faultline::journal::undo::Applied, String>> {
        let b = self.bounds();
        let mut out = Vec::new();
        for op in self.ops.iter().rev() {
            assert_eq!(op.out_of_bounds(&b, None), None, "{op:?}");
            out.push(op.apply());
        }
        out
    }
}

fn ctx() -> FaultContext {
    FaultContext {
        run_id: RUN.into(),
        ..Default::default()
    }
}

fn spec(path: &Path, mode: CorruptMode) -> FileCorruptSpec {
    FileCorruptSpec {
        container: None,
        path: path.display().to_string(),
        mode,
        bits: None,
        ranges: vec![],
        length: None,
        truncate_to: None,
        seed: Some(7),
        max_files: None,
        max_size: None,
        allow_other_owners: false,
    }
}

fn sha(p: &Path) -> String {
    let b = std::fs::read(p).unwrap();
    Sha256::digest(&b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A file with known content, mode 0640 and an old mtime.
fn data_file(dir: &Path, name: &str, len: usize) -> PathBuf {
    let p = dir.join(name);
    let content: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&p, &content).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    let old = nix::sys::time::TimeSpec::new(1_600_000_000, 123_456_789);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &p,
        &old,
        &old,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
    p
}

struct Before {
    bytes: Vec<u8>,
    mode: u32,
    mtime: (i64, i64),
}

fn before(p: &Path) -> Before {
    let md = std::fs::metadata(p).unwrap();
    Before {
        bytes: std::fs::read(p).unwrap(),
        mode: md.mode() & 0o7777,
        mtime: (md.mtime(), md.mtime_nsec()),
    }
}

fn assert_restored(p: &Path, b: &Before) {
    let md = std::fs::symlink_metadata(p).expect("the file is back");
    assert!(md.is_file(), "a regular file again");
    assert!(std::fs::read(p).unwrap() == b.bytes, "byte-exact content");
    assert_eq!(md.mode() & 0o7777, b.mode, "mode restored");
    assert_eq!((md.mtime(), md.mtime_nsec()), b.mtime, "mtime restored");
}

/// Runs one mode: inject, verify, check the change, roll back, check the original.
fn run_mode(s: FileCorruptSpec, check: impl FnOnce(&Before, &Path)) {
    let t = tempfile::tempdir().unwrap();
    let p = data_file(t.path(), "data.bin", 10_000);
    let s = FileCorruptSpec {
        container: None,
        path: p.display().to_string(),
        ..s
    };
    let b = before(&p);
    let mut undo = StateUndo {
        state: t.path().join("state"),
        ops: vec![],
    };
    let mut f = faultline::fault::build(&Fault::FileCorrupt(s));
    f.preflight(&ctx()).unwrap();
    f.inject(&ctx(), &mut undo).unwrap();
    let evidence = f.verify(&ctx()).unwrap();
    assert!(
        evidence.contains("sha256") || evidence.contains("gone"),
        "{evidence}"
    );
    check(&b, &p);
    let h = f.health(&ctx()).unwrap();
    assert!(h.present, "{h:?}");
    f.before_rollback(&ctx());
    for r in undo.rollback() {
        assert_eq!(r, Ok(faultline::journal::undo::Applied::Done));
    }
    f.verify_rollback(&ctx()).unwrap();
    assert_restored(&p, &b);
    // The backup is removed once used; replaying again finds nothing to do.
    let bdir = faultline::journal::store::backup_dir(&undo.state, RUN);
    assert!(!bdir.exists(), "the run's backup directory is removed");
    for r in undo.rollback() {
        assert_eq!(r, Ok(faultline::journal::undo::Applied::AlreadyGone));
    }
}

#[test]
fn flip_bits_flips_exactly_the_asked_number_of_bits_and_rollback_restores() {
    run_mode(
        FileCorruptSpec {
            container: None,
            bits: Some(5),
            ..spec(Path::new("/x"), CorruptMode::FlipBits)
        },
        |b, p| {
            let now = std::fs::read(p).unwrap();
            assert_eq!(now.len(), b.bytes.len());
            let flipped: u32 = now
                .iter()
                .zip(&b.bytes)
                .map(|(x, y)| (x ^ y).count_ones())
                .sum();
            assert_eq!(flipped, 5, "exactly 5 bits differ");
        },
    );
}

#[test]
fn zero_and_random_overwrite_only_their_ranges() {
    run_mode(
        FileCorruptSpec {
            container: None,
            ranges: vec![ByteRange {
                offset: Size(100),
                length: Size(50),
            }],
            ..spec(Path::new("/x"), CorruptMode::Zero)
        },
        |b, p| {
            let now = std::fs::read(p).unwrap();
            assert!(now[100..150].iter().all(|x| *x == 0), "range zeroed");
            assert_eq!(now[..100], b.bytes[..100]);
            assert_eq!(now[150..], b.bytes[150..]);
        },
    );
    run_mode(
        FileCorruptSpec {
            container: None,
            length: Some(Size(64)),
            ..spec(Path::new("/x"), CorruptMode::Random)
        },
        |b, p| {
            let now = std::fs::read(p).unwrap();
            let diff: Vec<usize> = (0..now.len()).filter(|i| now[*i] != b.bytes[*i]).collect();
            assert!(!diff.is_empty());
            assert!(
                diff.last().unwrap() - diff.first().unwrap() < 64,
                "only one 64-byte range changed: {diff:?}"
            );
        },
    );
}

#[test]
fn truncate_and_delete_and_rollback_restores() {
    run_mode(
        FileCorruptSpec {
            container: None,
            truncate_to: Some(Size(10)),
            ..spec(Path::new("/x"), CorruptMode::Truncate)
        },
        |b, p| {
            let now = std::fs::read(p).unwrap();
            assert_eq!(now, b.bytes[..10]);
        },
    );
    run_mode(spec(Path::new("/x"), CorruptMode::Delete), |_, p| {
        assert!(std::fs::symlink_metadata(p).is_err(), "deleted");
    });
}

#[test]
fn plan_changes_nothing_and_repeats_with_the_seed() {
    let t = tempfile::tempdir().unwrap();
    let p = data_file(t.path(), "a.db", 4096);
    let b = before(&p);
    let s = FileCorruptSpec {
        container: None,
        bits: Some(3),
        ..spec(&p, CorruptMode::FlipBits)
    };
    let plan = |s: &FileCorruptSpec| {
        let mut f = faultline::fault::build(&Fault::FileCorrupt(s.clone()));
        f.preflight(&ctx()).unwrap();
        f.plan(&ctx())
    };
    let one = plan(&s);
    assert_eq!(one.len(), 1);
    assert!(one[0].action.contains("flip 3 bit(s)"), "{}", one[0].action);
    assert!(one[0].action.contains("a.db"), "{}", one[0].action);
    assert_eq!(one, plan(&s), "the same seed plans the same bits");
    let other = plan(&FileCorruptSpec {
        container: None,
        seed: Some(8),
        ..s.clone()
    });
    assert_ne!(one, other, "another seed picks other bits");
    assert_restored(&p, &b);
    assert!(!t.path().join("state").exists());
    // And through the CLI.
    let sb = Sandbox::new();
    let exp = sb.write(
        "e.yaml",
        &experiment(
            &p.display().to_string(),
            "mode: random\n        seed: 3",
            "5s",
        ),
    );
    let o = sb.cmd().arg("plan").arg(&exp).output().unwrap();
    assert!(text(&o).contains("overwrite bytes"), "{}", text(&o));
    assert_restored(&p, &b);
}

#[test]
fn a_glob_matching_more_files_than_the_limit_is_refused() {
    let t = tempfile::tempdir().unwrap();
    for i in 0..12 {
        data_file(t.path(), &format!("f{i:02}.dat"), 100);
    }
    data_file(t.path(), "other.txt", 100);
    let glob = t.path().join("*.dat");
    let mut f = faultline::fault::build(&Fault::FileCorrupt(spec(&glob, CorruptMode::Delete)));
    let e = f.preflight(&ctx()).unwrap_err();
    assert!(
        e.message.contains("matches 12 files") && e.message.contains("limit of 10"),
        "{}",
        e.message
    );
    let wide = FileCorruptSpec {
        container: None,
        max_files: Some(12),
        ..spec(&glob, CorruptMode::Delete)
    };
    let mut f = faultline::fault::build(&Fault::FileCorrupt(wide.clone()));
    f.preflight(&ctx()).unwrap();
    assert_eq!(f.plan(&ctx()).len(), 12, "every .dat file, not other.txt");
    let mut c = ctx();
    c.blast_radius = BlastRadius {
        max_targets: Some(3),
        other_users: false,
    };
    let e = f.preflight(&c).unwrap_err();
    assert!(
        e.message.contains("limit of 3") && e.message.contains("limits.blast_radius"),
        "{}",
        e.message
    );
    assert_eq!(
        std::fs::read_dir(t.path()).unwrap().count(),
        13,
        "nothing deleted"
    );
}

#[test]
fn a_symlink_swapped_in_after_injection_is_not_followed_on_restore() {
    let t = tempfile::tempdir().unwrap();
    let p = data_file(t.path(), "data.bin", 1000);
    let victim = data_file(t.path(), "victim", 300);
    let victim_sha = sha(&victim);
    let mut undo = StateUndo {
        state: t.path().join("state"),
        ops: vec![],
    };
    let mut f = faultline::fault::build(&Fault::FileCorrupt(spec(&p, CorruptMode::Zero)));
    f.inject(&ctx(), &mut undo).unwrap();
    std::fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink(&victim, &p).unwrap();
    let r = undo.rollback();
    let e = r[0].clone().unwrap_err();
    assert!(
        e.contains("symbolic link") && e.contains("left alone"),
        "{e}"
    );
    assert_eq!(sha(&victim), victim_sha, "the link's target is untouched");
    assert!(std::fs::symlink_metadata(&p)
        .unwrap()
        .file_type()
        .is_symlink());
    // The backup is kept for a person to restore by hand.
    let UndoOp::RestoreFile { backup, .. } = &undo.ops[0] else {
        panic!()
    };
    assert!(backup.exists());

    // A directory in the path swapped for a link is refused too.
    let t2 = tempfile::tempdir().unwrap();
    let d = t2.path().join("d");
    std::fs::create_dir(&d).unwrap();
    let p = data_file(&d, "data.bin", 1000);
    let elsewhere = t2.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let planted = data_file(&elsewhere, "data.bin", 10);
    let planted_sha = sha(&planted);
    let mut undo = StateUndo {
        state: t2.path().join("state"),
        ops: vec![],
    };
    let mut f = faultline::fault::build(&Fault::FileCorrupt(spec(&p, CorruptMode::Delete)));
    f.inject(&ctx(), &mut undo).unwrap();
    std::fs::remove_dir(&d).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &d).unwrap();
    let e = undo.rollback()[0].clone().unwrap_err();
    assert!(e.contains("resolves to"), "{e}");
    assert_eq!(
        sha(&planted),
        planted_sha,
        "nothing written through the link"
    );
}

#[test]
fn restore_records_outside_the_runs_backup_directory_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let undo = StateUndo {
        state: t.path().join("state"),
        ops: vec![],
    };
    std::fs::create_dir_all(t.path().join("state")).unwrap();
    let op = |path: &str, backup: PathBuf, mode: u32| UndoOp::RestoreFile {
        path: path.into(),
        backup,
        sha256: "a".repeat(64),
        size: 1,
        mode,
        uid: 0,
        gid: 0,
        atime: (0, 0),
        mtime: (0, 0),
    };
    let real_state = std::fs::canonicalize(t.path().join("state")).unwrap();
    let good = real_state.join("backups").join(RUN).join("file-1");
    let b = undo.bounds();
    assert_eq!(
        op("/srv/data.db", good.clone(), 0o644).out_of_bounds(&b, None),
        None
    );
    for (path, backup, mode) in [
        ("/etc/shadow", PathBuf::from("/tmp/evil"), 0o644),
        (
            "/srv/data.db",
            real_state.join("backups/other-run/file-1"),
            0o644,
        ),
        ("/proc/sys/kernel/core_pattern", good.clone(), 0o644),
        ("/usr/bin/passwd", good.clone(), 0o4755),
        ("/srv/../etc/x", good.clone(), 0o644),
    ] {
        assert!(
            op(path, backup.clone(), mode)
                .out_of_bounds(&b, None)
                .is_some(),
            "{path} from {}",
            backup.display()
        );
    }
}

fn experiment(path: &str, rest: &str, duration: &str) -> String {
    format!(
        r#"
title: corrupt a data file
hypothesis: h
steady_state:
  interval: 200ms
  probes:
    - name: alive
      command: {{run: ["true"]}}
      before: {{samples: 1}}
method:
  - fault:
      file_corrupt:
        path: {path}
        {rest}
    duration: {duration}
"#
    )
}

#[test]
fn a_full_run_restores_the_file_and_reports_it() {
    let sb = Sandbox::new();
    let p = data_file(sb.path(), "data.bin", 20_000);
    let b = before(&p);
    let exp = sb.write(
        "e.yaml",
        &experiment(
            &p.display().to_string(),
            "mode: flip_bits\n        bits: 16",
            "1s",
        ),
    );
    let o = sb.run(&exp, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_restored(&p, &b);
    let j = sb.journal().to_string();
    assert!(j.contains("original_sha256"), "observations in the journal");
    let backups = sb.state_dir().join("backups");
    assert!(
        !backups.exists(),
        "no backup (nor an empty backups directory) left behind"
    );
}

#[test]
fn the_watchdog_restores_a_file_after_the_runner_is_killed() {
    let sb = Sandbox::new();
    let p = data_file(sb.path(), "data.bin", 20_000);
    let b = before(&p);
    let exp = sb.write(
        "e.yaml",
        &experiment(&p.display().to_string(), "mode: truncate", "60s"),
    );
    let mut child = sb
        .cmd()
        .arg("run")
        .arg(&exp)
        .args(["--no-journal", "--events", "events.jsonl"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let guard_pid = child.id() as i32;
    let events = sb.path().join("events.jsonl");
    let verified = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&events).is_ok_and(|s| s.contains("\"event\":\"fault_verified\""))
    });
    let truncated = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(1);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(guard_pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.wait();
    assert!(
        verified,
        "{}",
        std::fs::read_to_string(&events).unwrap_or_default()
    );
    assert_eq!(
        truncated, 0,
        "the file was truncated while the fault was active"
    );
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read(&p)
            .is_ok_and(|c| c == b.bytes)),
        "the watchdog restored the file"
    );
    assert_restored(&p, &b);
    assert!(wait_until(Duration::from_secs(3), || sb
        .status()
        .status
        .code()
        == Some(0)));
}
