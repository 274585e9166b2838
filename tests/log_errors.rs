//! The error cases of the write and read paths, with the values they
//! carry, and the size limit of `entries` and the range of `iter`.

mod common;

use common::{data, entries, entry, opts, Model};
use raftwal::{Entry, Error, Log, WriteBatch};

#[test]
fn entry_too_large_on_append_and_set_state() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts().max_entry_size(100);
    let log = Log::open(dir.path(), o.clone()).unwrap();
    let mut m = Model::new();
    let ok = Entry::new(1, 1, vec![7u8; 100]);
    log.append(std::slice::from_ref(&ok)).unwrap();
    m.append(std::slice::from_ref(&ok));
    match log.append(&[Entry::new(2, 1, vec![7u8; 101])]) {
        Err(Error::EntryTooLarge { len, max }) => assert_eq!((len, max), (101, 100)),
        other => panic!("{other:?}"),
    }
    // A batch built without the limit is checked by the log, all or nothing.
    let mut b = WriteBatch::new();
    b.push(2, 1, &[1; 10]).unwrap();
    b.push(3, 1, &[1; 500]).unwrap();
    assert!(matches!(
        log.write(&mut b),
        Err(Error::EntryTooLarge { len: 500, max: 100 })
    ));
    // A batch that knows the limit refuses the entry at once.
    let mut b = WriteBatch::new();
    b.set_max_entry_size(100);
    assert!(matches!(
        b.push(2, 1, &[1; 101]),
        Err(Error::EntryTooLarge { len: 101, max: 100 })
    ));
    assert!(b.is_empty());
    match log.set_state(vec![0u8; 101]) {
        Err(Error::EntryTooLarge { len, max }) => assert_eq!((len, max), (101, 100)),
        other => panic!("{other:?}"),
    }
    log.set_state(vec![3u8; 100]).unwrap();
    m.state = Some(vec![3u8; 100]);
    m.check(&log);
    drop(log);
    let log = Log::open(dir.path(), o).unwrap();
    m.check(&log);
}

#[test]
fn non_contiguous_index_zero_and_decreasing_terms() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let mut m = Model::new();
    let es = entries(1, 11, 2);
    log.append(&es).unwrap();
    m.append(&es);
    for (got, what) in [(12, "a gap"), (10, "an overlap"), (1, "the start")] {
        match log.append(&[entry(got, 2)]) {
            Err(Error::NonContiguous { got: g, last_index }) => {
                assert_eq!((g, last_index), (got, 10), "{what}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // Inside one batch.
    let mut b = WriteBatch::new();
    b.push(11, 2, b"x").unwrap();
    assert!(matches!(
        b.push(13, 2, b"y"),
        Err(Error::NonContiguous { got: 13, .. })
    ));
    assert!(matches!(
        log.append(&[entry(11, 2), entry(13, 2)]),
        Err(Error::NonContiguous { got: 13, .. })
    ));
    // Index 0 is reserved.
    assert!(matches!(
        log.append(&[entry(0, 2)]),
        Err(Error::InvalidArgument(_))
    ));
    let dir0 = tempfile::tempdir().unwrap();
    let log0 = Log::open(dir0.path(), opts()).unwrap();
    assert!(matches!(
        log0.append(&[entry(0, 1)]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(log0.is_empty());
    // Terms never decrease: not against the log, not inside a batch.
    assert!(matches!(
        log.append(&[entry(11, 1)]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        log.append(&[entry(11, 3), entry(12, 2)]),
        Err(Error::InvalidArgument(_))
    ));
    // An empty append is nothing.
    log.append(&[]).unwrap();
    m.check(&log);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    m.check(&log);
}

#[test]
fn reads_outside_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    log.append(&entries(1, 50, 1)).unwrap();
    log.compact(10).unwrap();
    assert!(matches!(
        log.get_entry(9),
        Err(Error::Compacted {
            index: 9,
            first_index: 10
        })
    ));
    assert!(matches!(
        log.get_entry(50),
        Err(Error::Unavailable {
            index: 50,
            last_index: 49
        })
    ));
    assert_eq!(log.term(9).unwrap(), 1);
    assert!(matches!(log.term(8), Err(Error::Compacted { .. })));
    assert!(matches!(log.term(0), Err(Error::Compacted { .. })));
    for far in [u64::MAX, u64::MAX - 1] {
        assert!(matches!(log.get_entry(far), Err(Error::Unavailable { .. })));
        assert!(matches!(log.term(far), Err(Error::Unavailable { .. })));
        assert!(matches!(
            log.truncate_from_index(far),
            Err(Error::Unavailable { .. })
        ));
        assert!(matches!(log.compact(far), Err(Error::Unavailable { .. })));
    }
    assert!(matches!(
        log.entries(9, 12, None),
        Err(Error::Compacted { .. })
    ));
    assert!(matches!(
        log.entries(40, 51, None),
        Err(Error::Unavailable { .. })
    ));
    assert!(matches!(
        log.entries(20, 19, None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        log.entries(u64::MAX - 1, u64::MAX, None),
        Err(Error::Unavailable { .. })
    ));
    assert!(log.entries(20, 20, None).unwrap().is_empty());
    assert!(log.entries(50, 50, Some(0)).unwrap().is_empty());
}

#[test]
fn the_index_space_ends_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    log.reset(u64::MAX - 1, 5).unwrap();
    log.append(&[entry(u64::MAX - 1, 5)]).unwrap();
    // u64::MAX itself is reserved: no index could follow it.
    assert!(matches!(
        log.append(&[entry(u64::MAX, 5)]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        log.append_assigned(5, &[b"a", b"b"]),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(log.last_index(), u64::MAX - 1);
    assert_eq!(log.term(u64::MAX - 2).unwrap(), 5);
    assert!(matches!(log.term(u64::MAX), Err(Error::Unavailable { .. })));
    assert_eq!(log.entries(u64::MAX - 1, u64::MAX, None).unwrap().len(), 1);
    assert_eq!(log.iter(0, u64::MAX).count(), 1);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.get_entry(u64::MAX - 1).unwrap(), entry(u64::MAX - 1, 5));
    log.reset(u64::MAX, 6).unwrap();
    assert!(log.is_empty());
    assert_eq!(log.term(u64::MAX - 1).unwrap(), 6);
    assert!(matches!(
        log.append(&[entry(u64::MAX, 6)]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        log.entries(u64::MAX, u64::MAX, None),
        Ok(v) if v.is_empty()
    ));
}

/// How many entries `entries(lo, hi, max)` must return: at least one, then
/// as long as the data sizes add up to no more than `max`.
fn expected_len(log_terms: &[(u64, u64)], lo: u64, hi: u64, max: Option<u64>) -> usize {
    let Some(max) = max else {
        return (hi - lo) as usize;
    };
    let mut size = 0u64;
    let mut n = 0;
    for &(i, t) in log_terms.iter().filter(|(i, _)| (lo..hi).contains(i)) {
        size += data(i, t).len() as u64;
        if n > 0 && size > max {
            break;
        }
        n += 1;
    }
    n
}

#[test]
fn entries_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let mut terms = Vec::new();
    for lo in (1..=300).step_by(30) {
        let t = 1 + lo / 100;
        log.append(&entries(lo, lo + 30, t)).unwrap();
        terms.extend((lo..lo + 30).map(|i| (i, t)));
    }
    assert!(log.segments().len() >= 4);
    let sizes = [0u64, 1, 10, 60, 61, 200, 1000, 5000, 100_000];
    for lo in (1..300).step_by(37) {
        for hi in [lo + 1, lo + 2, lo + 9, lo + 80, 301] {
            let hi = hi.min(301);
            for max in sizes.iter().map(|&s| Some(s)).chain([None]) {
                let got = log.entries(lo, hi, max).unwrap();
                let want = expected_len(&terms, lo, hi, max);
                assert_eq!(got.len(), want, "entries({lo}, {hi}, {max:?})");
                assert!(!got.is_empty());
                for (k, e) in got.iter().enumerate() {
                    let i = lo + k as u64;
                    assert_eq!(e, &entry(i, 1 + ((i - 1) / 30 * 30 + 1) / 100));
                }
            }
        }
    }
    // The limit counts data bytes only: exactly fitting entries are all
    // returned, one byte less drops the last.
    let total: u64 = (5..8).map(|i| data(i, 1).len() as u64).sum();
    assert_eq!(log.entries(5, 8, Some(total)).unwrap().len(), 3);
    assert_eq!(log.entries(5, 8, Some(total - 1)).unwrap().len(), 2);
}

#[test]
fn iter_streams_a_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    log.append(&entries(1, 200, 4)).unwrap();
    log.compact(20).unwrap();
    let got: Vec<Entry> = log.iter(30, 130).map(|r| r.unwrap()).collect();
    assert_eq!(got, entries(30, 130, 4));
    // Clamped to the log's range.
    let got: Vec<u64> = log.iter(0, 1000).map(|r| r.unwrap().index).collect();
    assert_eq!(got, (20..200).collect::<Vec<_>>());
    assert_eq!(log.iter(150, 150).count(), 0);
    assert_eq!(log.iter(500, 600).count(), 0);
    // Entries cut while iterating end the iteration with an error.
    let mut it = log.iter(100, 200);
    assert_eq!(it.next().unwrap().unwrap().index, 100);
    assert_eq!(it.next().unwrap().unwrap().index, 101);
    log.truncate_from_index(103).unwrap();
    assert_eq!(it.next().unwrap().unwrap().index, 102);
    assert!(matches!(
        it.next(),
        Some(Err(Error::Unavailable { index: 103, .. }))
    ));
    assert!(it.next().is_none());
}

/// An empty path is an error that touches nothing: no lock file appears in
/// the current directory.
#[test]
fn an_empty_path_is_refused_and_touches_nothing() {
    let lock = std::path::Path::new(raftwal::LOCK_FILE);
    let existed = lock.exists();
    match raftwal::Log::open("", raftwal::Options::default()) {
        Err(raftwal::Error::InvalidArgument(m)) => assert!(m.contains("empty"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        raftwal::RaftLogStore::open(""),
        Err(raftwal::Error::InvalidArgument(_))
    ));
    assert_eq!(
        lock.exists(),
        existed,
        "a lock file appeared in the current directory"
    );
}
