//! A torn tail in a segment that is not the last one. A roll no longer
//! syncs the segment it leaves, so a crash can tear it (or lose its last
//! writes whole) while the next segment survives. That is a torn tail when
//! no later segment holds a write marked `PRIOR_SYNCED`; when one does, the
//! torn segment was durable before that write was issued: damage. Recovery
//! and `inspect::scan_dir` (behind `raftwal verify` / `repair`) agree.

mod common;

use std::path::{Path, PathBuf};

use common::{batch, entry_frames, segment_files, unseal, FRAME_HEADER};
use raftwal::tools::inspect::{self, ProblemKind};
use raftwal::{Error, Log, Options, Preallocate, RecoveryMode, SyncPolicy};

fn opts() -> Options {
    Options::default()
        .segment_size(4096)
        .preallocate(Preallocate::None)
        .sync(SyncPolicy::Manual)
}

/// A log of two segments written under `Manual`, the second holding
/// `after` entries; with `sync_in_second`, a `sync()` between the second
/// segment's writes (so its later writes are marked `PRIOR_SYNCED`).
/// Returns the directory, the two segment paths and the last index of
/// the first segment.
fn two_segments(sync_in_second: bool) -> (tempfile::TempDir, PathBuf, PathBuf, u64) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let mut next = 1;
    while log.segments().len() < 2 {
        log.append(&batch(next, 2)).unwrap();
        next += 2;
    }
    if sync_in_second {
        log.sync().unwrap();
    }
    log.append(&batch(next, 2)).unwrap();
    let first_end = log.segments()[1].1 - 1;
    drop(log);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 2);
    // As if the crash came before the sealer finished.
    unseal(&files[0]);
    (dir, files[0].clone(), files[1].clone(), first_end)
}

/// Tears the last entry frame of `path`: its second half becomes zeros.
fn tear_last_entry(path: &Path) -> u64 {
    let last = *entry_frames(path).last().unwrap();
    let mut b = std::fs::read(path).unwrap();
    let half = (last.offset + (FRAME_HEADER + last.len) / 2) as usize;
    let end = (last.offset + FRAME_HEADER + last.len) as usize;
    b[half..end].fill(0);
    std::fs::write(path, b).unwrap();
    last.offset
}

/// Removes the last write (two entry frames) of `path` whole.
fn lose_last_write(path: &Path) -> u64 {
    let frames = entry_frames(path);
    let cut = frames[frames.len() - 2].offset;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(cut).unwrap();
    cut
}

/// `raftwal verify`'s scan of `dir` finds exactly one problem, a torn tail
/// in `path` at `at`, and a log ending at `last_index`.
fn assert_one_torn_tail(dir: &Path, path: &Path, at: u64, last_index: u64) {
    let scan = inspect::scan_dir(dir).unwrap();
    assert_eq!(scan.problems.len(), 1, "{:?}", scan.problems);
    assert_eq!(scan.problems[0].kind, ProblemKind::TornTail);
    assert_eq!(
        (scan.problems[0].path.as_path(), scan.problems[0].offset),
        (path, at)
    );
    assert_eq!(scan.last_index, last_index);
}

#[test]
fn a_torn_older_segment_with_nothing_synced_after_is_a_torn_tail() {
    let (dir, first, second, first_end) = two_segments(false);
    // The last write holds two entries; its second frame is torn, so the
    // whole write goes, and the scan says so where open cuts: at the
    // write's start (it once named the torn frame and kept the write's
    // first entry, which open drops).
    let write_start = entry_frames(&first).iter().rev().nth(1).unwrap().offset;
    tear_last_entry(&first);
    assert_one_torn_tail(dir.path(), &first, write_start, first_end - 2);
    let log = Log::open(dir.path(), opts()).unwrap();
    // The last entry (one write of two entries, torn) is gone, and so is
    // the second segment: nothing in it was acknowledged.
    assert_eq!(log.last_index(), first_end - 2);
    assert_eq!(log.recovery_report().segments_removed, vec![second]);
    assert_eq!(log.segments().len(), 1);
    // The torn segment goes on as the active one.
    let next = log.last_index() + 1;
    log.append(&batch(next, 3)).unwrap();
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.last_index(), next + 2);
    assert!(log.recovery_report().repairs.is_empty());
}

#[test]
fn a_torn_older_segment_before_a_synced_write_is_damage() {
    let (dir, first, _second, _) = two_segments(true);
    tear_last_entry(&first);
    let scan = inspect::scan_dir(dir.path()).unwrap();
    assert_eq!(scan.problems[0].kind, ProblemKind::Corruption);
    let e = Log::open(dir.path(), opts()).unwrap_err();
    assert!(matches!(e, Error::Corruption { .. }), "{e}");
}

#[test]
fn lost_writes_at_the_end_of_an_older_segment_are_a_torn_tail() {
    let (dir, first, second, first_end) = two_segments(false);
    let at = lose_last_write(&first);
    // The second segment starts two entries past where the first now ends.
    assert_one_torn_tail(dir.path(), &first, at, first_end - 2);
    // Under AbsoluteConsistency it is refused, as any torn tail is.
    let strict = opts().recovery_mode(RecoveryMode::AbsoluteConsistency);
    assert!(Log::open(dir.path(), strict).is_err());
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.last_index(), first_end - 2);
    assert_eq!(log.recovery_report().segments_removed, vec![second]);
    let next = log.last_index() + 1;
    log.append(&batch(next, 1)).unwrap();
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.last_index(), next);
}

#[test]
fn lost_writes_before_a_synced_write_are_damage() {
    let (dir, first, _second, _) = two_segments(true);
    lose_last_write(&first);
    let scan = inspect::scan_dir(dir.path()).unwrap();
    assert_eq!(scan.problems[0].kind, ProblemKind::Corruption);
    assert!(Log::open(dir.path(), opts()).is_err());
}
