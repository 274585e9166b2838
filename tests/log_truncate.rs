//! `truncate_from_index`: inside a segment, at segment boundaries, of
//! everything, below the active segment; the state blob survives; the error
//! cases; and the on-disk result is what recovery rebuilds.

mod common;

use common::{entries, entry, opts, segment_files, Model};
use raftwal::{Error, Log};
use std::path::Path;

/// A log of 300 entries over several segments, with a state blob.
fn setup(dir: &Path) -> (Log, Model) {
    let log = Log::open(dir, opts()).unwrap();
    let mut m = Model::new();
    for lo in (1..=300).step_by(10) {
        let es = entries(lo, lo + 10, 1 + lo / 50);
        log.append(&es).unwrap();
        m.append(&es);
    }
    log.set_state(&b"hard state"[..]).unwrap();
    m.state = Some(b"hard state".to_vec());
    assert!(log.segments().len() >= 4, "{:?}", log.segments());
    (log, m)
}

/// Cuts at `at`, checks, appends a replacement suffix of a higher term,
/// checks, reopens and checks again.
fn cut_append_reopen(dir: &Path, log: Log, m: &mut Model, at: u64) -> Log {
    log.truncate_from_index(at).unwrap();
    m.truncate_from(at);
    m.check(&log);
    let term = m.last_term() + 1;
    let es = entries(at, at + 25, term);
    log.append(&es).unwrap();
    m.append(&es);
    m.check(&log);
    drop(log);
    let log = Log::open(dir, opts()).unwrap();
    assert!(log.recovery_report().repairs.is_empty());
    m.check(&log);
    log
}

#[test]
fn inside_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut m) = setup(dir.path());
    // Inside the active segment.
    let active = log.segments().last().unwrap().1;
    let at = log.last_index() - 3;
    let log = cut_append_reopen(dir.path(), log, &mut m, at);
    // Inside an older segment, strictly between its first and last entry.
    let (_, first, n) = log.segments()[1].clone();
    assert!(n > 4 && first + 2 < active);
    cut_append_reopen(dir.path(), log, &mut m, first + 2);
}

#[test]
fn at_segment_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut m) = setup(dir.path());
    // The first index of the active segment.
    let active_first = log.segments().last().unwrap().1;
    let log = cut_append_reopen(dir.path(), log, &mut m, active_first);
    // The first index of an older segment (one past the last index of the
    // segment before it).
    let segs = log.segments();
    let (_, first2, _) = segs[2].clone();
    let (_, first1, n1) = segs[1].clone();
    assert_eq!(first1 + n1, first2);
    let log = cut_append_reopen(dir.path(), log, &mut m, first2);
    // The last index of a segment: all of it but its last entry is kept.
    let (_, first1, n1) = log.segments()[1].clone();
    let log = cut_append_reopen(dir.path(), log, &mut m, first1 + n1 - 1);
    // The first index of the oldest segment.
    let oldest = log.segments()[0].1;
    cut_append_reopen(dir.path(), log, &mut m, oldest);
}

#[test]
fn everything() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut m) = setup(dir.path());
    // The whole log, from index 1.
    let first = log.first_index();
    let log = cut_append_reopen(dir.path(), log, &mut m, first);
    // The whole log after a compaction: term(first - 1) is kept.
    log.compact(12).unwrap();
    m.compact(12);
    log.truncate_from_index(12).unwrap();
    m.truncate_from(12);
    assert!(log.is_empty());
    m.check(&log);
    assert_eq!(log.term(11).unwrap(), m.prev_term);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    m.check(&log);
    cut_append_reopen(dir.path(), log, &mut m, 12);
}

#[test]
fn below_the_active_segment_removes_files() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut m) = setup(dir.path());
    let files = segment_files(dir.path()).len();
    let at = log.segments()[1].1 + 3;
    log.truncate_from_index(at).unwrap();
    m.truncate_from(at);
    m.check(&log);
    // Everything from the second segment on is gone; a new segment holds
    // the cut marker.
    assert_eq!(segment_files(dir.path()).len(), 3, "had {files}");
    assert_eq!(log.segments().len(), 3);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    m.check(&log);
    // Many cuts below the active segment in a row, each reopened.
    let mut log = log;
    for k in 0..5 {
        let lo = m.last() + 1;
        let es = entries(lo, lo + 120, m.last_term() + 1);
        log.append(&es).unwrap();
        m.append(&es);
        let at = m.last() - 100 - k;
        log.truncate_from_index(at).unwrap();
        m.truncate_from(at);
        drop(log);
        log = Log::open(dir.path(), opts()).unwrap();
        m.check(&log);
    }
}

#[test]
fn errors_and_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut m) = setup(dir.path());
    log.compact(40).unwrap();
    m.compact(40);
    match log.truncate_from_index(39) {
        Err(Error::Compacted { index, first_index }) => assert_eq!((index, first_index), (39, 40)),
        other => panic!("{other:?}"),
    }
    match log.truncate_from_index(302) {
        Err(Error::Unavailable { index, last_index }) => {
            assert_eq!((index, last_index), (302, 300))
        }
        other => panic!("{other:?}"),
    }
    // At last + 1: nothing changes, not even on disk.
    let sizes = |d: &Path| -> Vec<u64> {
        segment_files(d)
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .collect()
    };
    let before = sizes(dir.path());
    log.truncate_from_index(301).unwrap();
    assert_eq!(sizes(dir.path()), before);
    m.check(&log);
    // Appending a non-continuing entry after a failed cut is still refused.
    assert!(matches!(
        log.append(&[entry(39, 9)]),
        Err(Error::NonContiguous { .. })
    ));
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    m.check(&log);
}

/// The state a crash leaves when it strikes right after the new segment of
/// a cut below the active segment became durable: the cut segments are
/// still on disk, untouched. Recovery must redo the cut.
#[test]
fn crash_before_cut_segments_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut m) = setup(dir.path());
    drop(log); // every sealed segment is complete on disk
    let log = Log::open(dir.path(), opts()).unwrap();
    let saved: Vec<_> = segment_files(dir.path())
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    let at = log.segments()[1].1 + 5;
    log.truncate_from_index(at).unwrap();
    m.truncate_from(at);
    drop(log);
    for (p, bytes) in &saved {
        std::fs::write(p, bytes).unwrap();
    }
    let log = Log::open(dir.path(), opts()).unwrap();
    m.check(&log);
    let es = entries(at, at + 30, m.last_term() + 2);
    log.append(&es).unwrap();
    m.append(&es);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    m.check(&log);
}

/// A cut below the active segment whose clean-up fails half-way (a cut
/// segment cannot be removed) fails nothing (the new segment's header names
/// the segment it continues, so the cut-off ones are superseded whichever
/// are left) and leaves a log that still opens, whatever the crash that may
/// follow. The failure is forced by putting a directory where the active
/// segment's file was; the file is restored afterwards, as if the process
/// had died at that point.
#[test]
fn failed_clean_up_leaves_an_openable_log() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut m) = setup(dir.path());
    let segs = log.segments();
    let active = segs.last().unwrap().0.clone();
    let aside = dir.path().join("aside");
    std::fs::rename(&active, &aside).unwrap();
    std::fs::create_dir(&active).unwrap();
    let at = segs[1].1 + 5;
    log.truncate_from_index(at).unwrap();
    drop(log);
    std::fs::remove_dir(&active).unwrap();
    std::fs::rename(&aside, &active).unwrap();
    // The cut's new segment was durable before the clean-up: the cut holds.
    let log = Log::open(dir.path(), opts()).unwrap();
    m.truncate_from(at);
    m.check(&log);
}
