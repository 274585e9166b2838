//! Every kind of operation survives closing and reopening the log: first and
//! last index, every entry byte for byte, every term, the term before the
//! first index, and the state blob.

mod common;

use common::{entries, entry, opts, segment_files, Model};
use raftwal::{Log, WriteBatch};
use std::path::Path;

/// Closes `log` and opens `dir` again, checking that recovery needed no
/// repair.
fn reopen(log: Log, dir: &Path) -> Log {
    drop(log);
    let log = Log::open(dir, opts()).unwrap();
    let r = log.recovery_report();
    assert!(
        r.repairs.is_empty(),
        "clean reopen repaired {:?}",
        r.repairs
    );
    assert_eq!(r.bytes_dropped, 0);
    log
}

/// A log of `n` entries of growing terms spread over several segments.
fn filled(dir: &Path, n: u64, m: &mut Model) -> Log {
    let log = Log::open(dir, opts()).unwrap();
    for i in 1..=n {
        let es = [entry(i, 1 + i / 40)];
        log.append(&es).unwrap();
        m.append(&es);
    }
    assert!(log.segments().len() >= 3, "{:?}", log.segments());
    log
}

#[test]
fn reopen_after_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::new();
    let log = filled(dir.path(), 200, &mut m);
    m.check(&log);
    let log = reopen(log, dir.path());
    m.check(&log);
    // Appending after the reopen continues the same log.
    let more = entries(201, 260, 9);
    log.append(&more).unwrap();
    m.append(&more);
    let log = reopen(log, dir.path());
    m.check(&log);
}

#[test]
fn reopen_after_set_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::new();
    let log = filled(dir.path(), 200, &mut m);
    log.set_state(&b"first state"[..]).unwrap();
    log.set_state(&b"second state"[..]).unwrap();
    m.state = Some(b"second state".to_vec());
    let log = reopen(log, dir.path());
    m.check(&log);
    // An empty state blob is a state too.
    log.set_state(Vec::new()).unwrap();
    m.state = Some(Vec::new());
    let log = reopen(log, dir.path());
    m.check(&log);
}

#[test]
fn reopen_after_truncate_from_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::new();
    let log = filled(dir.path(), 200, &mut m);
    log.set_state(&b"s"[..]).unwrap();
    m.state = Some(b"s".to_vec());
    // Inside the active segment, then below it.
    log.truncate_from_index(195).unwrap();
    m.truncate_from(195);
    let log = reopen(log, dir.path());
    m.check(&log);
    log.truncate_from_index(50).unwrap();
    m.truncate_from(50);
    let log = reopen(log, dir.path());
    m.check(&log);
    let es = entries(50, 90, 20);
    log.append(&es).unwrap();
    m.append(&es);
    let log = reopen(log, dir.path());
    m.check(&log);
}

#[test]
fn reopen_after_compact() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::new();
    let log = filled(dir.path(), 200, &mut m);
    let before = segment_files(dir.path()).len();
    log.compact(123).unwrap();
    m.compact(123);
    let log = reopen(log, dir.path());
    // Dropping the log finished the compaction's background unlinks.
    assert!(segment_files(dir.path()).len() < before);
    assert!(log.recovery_report().segments_removed.is_empty());
    m.check(&log);
    assert_eq!(log.term(122).unwrap(), 1 + 122 / 40);
}

#[test]
fn reopen_after_reset() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::new();
    let log = filled(dir.path(), 200, &mut m);
    log.set_state(&b"kept"[..]).unwrap();
    m.state = Some(b"kept".to_vec());
    log.reset(5000, 17).unwrap();
    m.reset(5000, 17);
    let log = reopen(log, dir.path());
    m.check(&log);
    let es = entries(5000, 5010, 17);
    log.append(&es).unwrap();
    m.append(&es);
    let log = reopen(log, dir.path());
    m.check(&log);
}

#[test]
fn reopen_after_batch_with_cut_entries_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::new();
    let log = filled(dir.path(), 250, &mut m);
    // A cut inside the active segment, replaced in the same batch.
    let mut b = WriteBatch::new();
    b.truncate_from(248);
    for i in 248..252 {
        b.push(i, 30, &common::data(i, 30)).unwrap();
    }
    b.set_state(&b"after the first batch"[..]);
    log.write(&mut b).unwrap();
    m.truncate_from(248);
    m.append(&entries(248, 252, 30));
    m.state = Some(b"after the first batch".to_vec());
    let log = reopen(log, dir.path());
    m.check(&log);
    // A cut below the active segment, with a reused batch.
    b.clear();
    b.truncate_from(60);
    for i in 60..70 {
        b.push(i, 31, &common::data(i, 31)).unwrap();
    }
    b.set_state(&b"after the second batch"[..]);
    log.write(&mut b).unwrap();
    m.truncate_from(60);
    m.append(&entries(60, 70, 31));
    m.state = Some(b"after the second batch".to_vec());
    m.check(&log);
    let log = reopen(log, dir.path());
    m.check(&log);
}

#[test]
fn reopen_after_every_operation_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::new();
    let mut log = Log::open(dir.path(), opts()).unwrap();
    let mut term = 1;
    for round in 0..6u64 {
        let lo = m.last() + 1;
        let es = entries(lo, lo + 70, term);
        log.append(&es).unwrap();
        m.append(&es);
        log = reopen(log, dir.path());
        m.check(&log);
        log.set_state(format!("round {round}").into_bytes())
            .unwrap();
        m.state = Some(format!("round {round}").into_bytes());
        log = reopen(log, dir.path());
        m.check(&log);
        let cut = m.last() - 10 * round;
        term += 1;
        log.truncate_from_index(cut).unwrap();
        m.truncate_from(cut);
        log = reopen(log, dir.path());
        m.check(&log);
        let at = m.first + (m.last() - m.first) / 3;
        log.compact(at).unwrap();
        m.compact(at);
        log = reopen(log, dir.path());
        m.check(&log);
        if round == 3 {
            log.reset(m.last() + 1000, term).unwrap();
            m.reset(m.last() + 1000, term);
            log = reopen(log, dir.path());
            m.check(&log);
        }
    }
}
