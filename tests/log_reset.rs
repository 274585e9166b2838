//! `reset`: the log continues at `next_index` with `term(next_index - 1)`
//! equal to the given term, old segment files are gone, the state blob is
//! kept, and all of it survives a reopen (and a crash at either end).

mod common;

use common::{entries, frames, opts, segment_files, Model, FRAME_HEADER};
use raftwal::{Error, Log};
use std::path::Path;

fn setup(dir: &Path) -> (Log, Model) {
    let log = Log::open(dir, opts()).unwrap();
    let mut m = Model::new();
    for lo in (1..=250).step_by(25) {
        let es = entries(lo, lo + 25, 2 + lo / 100);
        log.append(&es).unwrap();
        m.append(&es);
    }
    log.set_state(&b"vote"[..]).unwrap();
    m.state = Some(b"vote".to_vec());
    assert!(log.segments().len() >= 3);
    (log, m)
}

#[test]
fn reset_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut m) = setup(dir.path());
    let old = segment_files(dir.path());
    log.reset(1000, 7).unwrap();
    m.reset(1000, 7);
    m.check(&log);
    assert_eq!(log.term(999).unwrap(), 7);
    let now = segment_files(dir.path());
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(old.iter().all(|p| !p.exists()), "old segments left behind");
    assert!(now[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .ends_with(&format!("-{:016x}.wal", 1000)));
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert!(log.recovery_report().repairs.is_empty());
    m.check(&log);
    // Appending continues at next_index, and only there.
    assert!(matches!(
        log.append(&entries(1001, 1002, 7)),
        Err(Error::NonContiguous { .. })
    ));
    assert!(matches!(
        log.append(&entries(1000, 1001, 6)),
        Err(Error::InvalidArgument(_))
    ));
    let es = entries(1000, 1200, 7);
    log.append(&es).unwrap();
    m.append(&es);
    m.check(&log);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    m.check(&log);
}

#[test]
fn reset_backwards_and_on_a_new_log() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut m) = setup(dir.path());
    log.compact(100).unwrap();
    m.compact(100);
    // Below the first index, to an index the log held before, with a lower
    // term than its entries had.
    log.reset(40, 1).unwrap();
    m.reset(40, 1);
    m.check(&log);
    let es = entries(40, 60, 1);
    log.append(&es).unwrap();
    m.append(&es);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    m.check(&log);
    // Twice in a row, the second to the index the first continues at.
    log.reset(60, 4).unwrap();
    log.reset(60, 5).unwrap();
    m.reset(60, 5);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    m.check(&log);
    assert_eq!(segment_files(dir.path()).len(), 1);

    let dir2 = tempfile::tempdir().unwrap();
    let log = Log::open(dir2.path(), opts()).unwrap();
    log.reset(1, 3).unwrap();
    let mut m = Model::new();
    m.reset(1, 3);
    m.check(&log);
    assert!(matches!(log.reset(0, 3), Err(Error::InvalidArgument(_))));
    drop(log);
    let log = Log::open(dir2.path(), opts()).unwrap();
    m.check(&log);
}

/// A crash after the reset's segment is durable but before the old files
/// are removed: recovery finishes the reset.
#[test]
fn crash_before_old_segments_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut m) = setup(dir.path());
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    let saved: Vec<_> = segment_files(dir.path())
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    log.reset(180, 9).unwrap();
    m.reset(180, 9);
    drop(log);
    for (p, b) in &saved {
        std::fs::write(p, b).unwrap();
    }
    let log = Log::open(dir.path(), opts()).unwrap();
    m.check(&log);
    assert_eq!(log.recovery_report().segments_removed.len(), saved.len());
    assert_eq!(segment_files(dir.path()).len(), 1);
}

/// A crash after the reset's segment was created but before it got its
/// name: the reset never happened. The segment is written (header and
/// reset marker) and synced under a prepared file's name and only then
/// renamed, so a crash before the rename reached the disk leaves that file,
/// with or without its marker, and no new segment: the open ignores and
/// removes it.
#[test]
fn crash_before_the_reset_segment_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (log, m) = setup(dir.path());
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    let saved: Vec<_> = segment_files(dir.path())
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    log.reset(5000, 9).unwrap();
    drop(log);
    let new = segment_files(dir.path()).pop().unwrap();
    let bytes = std::fs::read(&new).unwrap();
    let header = frames(&new)[0];
    let end = (FRAME_HEADER + header.len) as usize;
    for keep_marker in [true, false] {
        // The file under its prepared name, the marker's write there or not.
        let mut b = bytes.clone();
        if !keep_marker {
            b[end..].iter_mut().for_each(|x| *x = 0);
        }
        std::fs::remove_file(&new).ok();
        let prep = dir.path().join("8000000000000009.prep");
        std::fs::write(&prep, b).unwrap();
        for (p, b) in &saved {
            std::fs::write(p, b).unwrap();
        }
        let log = Log::open(dir.path(), opts()).unwrap();
        m.check(&log);
        drop(log);
        assert!(!new.exists());
        assert!(!prep.exists(), "the prepared file holding data is removed");
    }
}

/// A reset's segment under its name without its reset marker is not a
/// crash's doing (it is named only once the marker is on disk): damage.
#[test]
fn a_named_reset_segment_without_its_marker_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = setup(dir.path());
    log.reset(5000, 9).unwrap();
    drop(log);
    let new = segment_files(dir.path()).pop().unwrap();
    let header = frames(&new)[0];
    let mut b = std::fs::read(&new).unwrap();
    let end = (FRAME_HEADER + header.len) as usize;
    b[end..].iter_mut().for_each(|x| *x = 0);
    std::fs::write(&new, b).unwrap();
    match Log::open(dir.path(), opts()) {
        Err(raftwal::Error::Corruption { path, .. }) => assert_eq!(path, new),
        other => panic!("expected corruption, got {other:?}"),
    }
}
