//! The sync policies: `Always`, `EveryN`, `Interval` and `Manual` all make
//! writes readable at once and durable when they say (seen through
//! `Log::stats`); a drop makes everything durable, so a reopen sees it all;
//! the `Interval` thread stops with the log. Invalid options are refused.

mod common;

use common::{entries, opts, Model};
use raftwal::{Error, Log, Options, SyncPolicy};
use std::path::Path;
use std::time::Duration;

/// Appends `n` one-entry writes, checking each is readable at once.
fn append_each(log: &Log, m: &mut Model, n: u64, term: u64) {
    for _ in 0..n {
        let i = m.last() + 1;
        let es = entries(i, i + 1, term);
        log.append(&es).unwrap();
        m.append(&es);
        assert_eq!(log.get_entry(i).unwrap(), es[0]);
    }
}

fn reopen(dir: &Path, o: Options, m: &Model) -> Log {
    let log = Log::open(dir, o).unwrap();
    assert!(log.recovery_report().repairs.is_empty());
    m.check(&log);
    log
}

#[test]
fn always_syncs_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let mut m = Model::new();
    for _ in 0..20 {
        append_each(&log, &mut m, 1, 1);
        let s = log.stats();
        assert_eq!(s.durable_writes, s.writes);
    }
    drop(log);
    reopen(dir.path(), opts(), &m);
}

#[test]
fn every_n_syncs_every_nth_write() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts().sync(SyncPolicy::EveryN(4));
    let log = Log::open(dir.path(), o.clone()).unwrap();
    let mut m = Model::new();
    for k in 1..=40u64 {
        append_each(&log, &mut m, 1, 1);
        let s = log.stats();
        if k % 4 == 0 {
            assert_eq!(s.durable_writes, s.writes, "after write {k}");
        }
    }
    // Some writes in between were left for the next sync.
    append_each(&log, &mut m, 1, 1);
    let s = log.stats();
    assert!(s.durable_writes < s.writes, "{s:?}");
    m.check(&log);
    drop(log);
    let log = reopen(dir.path(), o.clone(), &m);
    append_each(&log, &mut m, 7, 2);
    drop(log);
    reopen(dir.path(), o, &m);
}

#[test]
fn manual_syncs_on_sync_and_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts().sync(SyncPolicy::Manual);
    let log = Log::open(dir.path(), o.clone()).unwrap();
    let mut m = Model::new();
    append_each(&log, &mut m, 30, 1);
    let s = log.stats();
    assert!(s.durable_writes < s.writes, "{s:?}");
    log.sync().unwrap();
    let s = log.stats();
    assert_eq!(s.durable_writes, s.writes);
    // Across segment rolls, a cut and a state blob, then no sync at all.
    append_each(&log, &mut m, 150, 2);
    log.truncate_from_index(170).unwrap();
    m.truncate_from(170);
    log.set_state(&b"manual"[..]).unwrap();
    m.state = Some(b"manual".to_vec());
    append_each(&log, &mut m, 5, 3);
    m.check(&log);
    drop(log);
    reopen(dir.path(), o, &m);
}

#[test]
fn interval_syncs_in_the_background_and_stops_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts().sync(SyncPolicy::Interval(Duration::from_millis(2)));
    let mut m = Model::new();
    for round in 1..=10u64 {
        let log = Log::open(dir.path(), o.clone()).unwrap();
        m.check(&log);
        append_each(&log, &mut m, 12, round);
        if round == 1 {
            // The background thread catches up without any call from us.
            let mut waits = 0;
            while log.stats().durable_writes < log.stats().writes {
                assert!(waits < 15_000, "the interval syncer never synced");
                std::thread::sleep(Duration::from_millis(2));
                waits += 1;
            }
        }
        // Dropped right after writing: the thread is stopped and joined, so
        // the lock is free for the next open at once.
        drop(log);
    }
    reopen(dir.path(), o, &m);
}

#[test]
fn invalid_options_are_refused_before_touching_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("log");
    let bad = [
        Options::default().segment_size(4095),
        Options::default().segment_size(0),
        Options::default().segment_size(u64::from(u32::MAX) + 1),
        Options::default().sync(SyncPolicy::EveryN(0)),
        Options::default().sync(SyncPolicy::Interval(Duration::ZERO)),
        Options::default().max_entry_size(0),
    ];
    for o in bad {
        match Log::open(&sub, o.clone()) {
            Err(Error::InvalidOptions(msg)) => assert!(!msg.is_empty()),
            other => panic!("{o:?}: expected InvalidOptions, got {other:?}"),
        }
        assert!(!sub.exists(), "{o:?} created the directory");
    }
    // The limits themselves are accepted.
    let log = Log::open(&sub, Options::default().segment_size(4096)).unwrap();
    drop(log);
    let log = Log::open(&sub, opts().sync(SyncPolicy::EveryN(1))).unwrap();
    log.append(&entries(1, 3, 1)).unwrap();
    let s = log.stats();
    assert_eq!(s.durable_writes, s.writes);
}
