//! `compact`: the first index and the term before it are kept across a
//! reopen, segments wholly below the new first index are deleted from disk
//! (in the background, by the time the log is dropped),
//! the error and no-op cases, compacting everything, and appending after.

mod common;

use common::{entries, opts, segment_files, Model};
use raftwal::{Error, Log};
use std::path::{Path, PathBuf};

/// A log of 400 entries (terms rising every 60) over many segments.
fn setup(dir: &Path) -> (Log, Model) {
    let log = Log::open(dir, opts()).unwrap();
    let mut m = Model::new();
    for lo in (1..=400).step_by(20) {
        let es = entries(lo, lo + 20, 1 + lo / 60);
        log.append(&es).unwrap();
        m.append(&es);
    }
    assert!(log.segments().len() >= 5, "{:?}", log.segments());
    (log, m)
}

fn file_sizes(dir: &Path) -> Vec<(PathBuf, u64)> {
    segment_files(dir)
        .into_iter()
        .map(|p| {
            let n = std::fs::metadata(&p).unwrap().len();
            (p, n)
        })
        .collect()
}

#[test]
fn compact_then_reopen_keeps_first_index_and_term() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut m) = setup(dir.path());
    log.compact(150).unwrap();
    m.compact(150);
    m.check(&log);
    assert_eq!(log.term(149).unwrap(), 1 + 141 / 60);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert!(log.recovery_report().repairs.is_empty());
    m.check(&log);
    // A second compaction, inside the same segment as the first index.
    log.compact(152).unwrap();
    m.compact(152);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    m.check(&log);
}

#[test]
fn segments_wholly_below_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut m) = setup(dir.path());
    let segs = log.segments();
    // Compact to the middle of the fourth segment: the first three go (in
    // the background: they are gone once the log is dropped).
    let at = segs[3].1 + segs[3].2 / 2;
    log.compact(at).unwrap();
    m.compact(at);
    assert_eq!(log.segments().len(), segs.len() - 3);
    m.check(&log);
    drop(log);
    let left: Vec<PathBuf> = segs[3..].iter().map(|s| s.0.clone()).collect();
    assert_eq!(segment_files(dir.path()), left);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert!(log.recovery_report().segments_removed.is_empty());
    // Compacting to exactly the first index of a segment deletes all
    // segments before it.
    let at = segs[4].1;
    log.compact(at).unwrap();
    m.compact(at);
    drop(log);
    let left: Vec<PathBuf> = segs[4..].iter().map(|s| s.0.clone()).collect();
    assert_eq!(segment_files(dir.path()), left);
    let log = Log::open(dir.path(), opts()).unwrap();
    m.check(&log);
    assert!(log.recovery_report().segments_removed.is_empty());
}

#[test]
fn beyond_last_is_an_error_and_at_or_below_first_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut m) = setup(dir.path());
    match log.compact(402) {
        Err(Error::Unavailable { index, last_index }) => {
            assert_eq!((index, last_index), (402, 400))
        }
        other => panic!("{other:?}"),
    }
    m.check(&log);
    log.compact(100).unwrap();
    m.compact(100);
    // Reopened, so that the compaction's background unlinks are done.
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    let before = file_sizes(dir.path());
    log.compact(100).unwrap();
    log.compact(37).unwrap();
    log.compact(1).unwrap();
    assert_eq!(file_sizes(dir.path()), before, "a no-op compaction wrote");
    m.check(&log);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    m.check(&log);
}

#[test]
fn compact_everything_then_append() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut m) = setup(dir.path());
    log.set_state(&b"st"[..]).unwrap();
    m.state = Some(b"st".to_vec());
    log.compact(401).unwrap();
    m.compact(401);
    assert!(log.is_empty());
    m.check(&log);
    assert_eq!(log.term(400).unwrap(), 1 + 381 / 60);
    drop(log);
    assert_eq!(segment_files(dir.path()).len(), 1);
    let log = Log::open(dir.path(), opts()).unwrap();
    m.check(&log);
    // Terms may not go below the compacted term.
    assert!(matches!(
        log.append(&entries(401, 402, 1)),
        Err(Error::InvalidArgument(_))
    ));
    let es = entries(401, 500, 9);
    log.append(&es).unwrap();
    m.append(&es);
    m.check(&log);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    m.check(&log);
}

#[test]
fn state_in_a_deleted_segment_survives() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let mut m = Model::new();
    let es = entries(1, 20, 1);
    log.append(&es).unwrap();
    m.append(&es);
    // The state lands in the first segment, which a compaction deletes.
    log.set_state(&b"old but current"[..]).unwrap();
    m.state = Some(b"old but current".to_vec());
    let es = entries(20, 300, 2);
    log.append(&es).unwrap();
    m.append(&es);
    let first_seg = log.segments()[0].0.clone();
    log.compact(250).unwrap();
    m.compact(250);
    m.check(&log);
    drop(log);
    assert!(!first_seg.exists());
    let log = Log::open(dir.path(), opts()).unwrap();
    m.check(&log);
}

#[test]
fn compactions_interleaved_with_appends_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), opts()).unwrap();
    let mut m = Model::new();
    for round in 1..=8u64 {
        let lo = m.last() + 1;
        let es = entries(lo, lo + 60, round);
        log.append(&es).unwrap();
        m.append(&es);
        let at = m.last() - 25;
        log.compact(at).unwrap();
        m.compact(at);
        m.check(&log);
        if round % 2 == 0 {
            drop(log);
            log = Log::open(dir.path(), opts()).unwrap();
            m.check(&log);
        }
    }
    // Only segments reaching the first index are left.
    let segs = log.segments();
    for (_, first, n) in segs.iter().take(segs.len() - 1) {
        assert!(
            first + n > m.first,
            "segment {first}+{n} is below {}",
            m.first
        );
    }
}
