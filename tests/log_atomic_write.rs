//! A write is atomic across a crash: a batch (a cut, entries, a state blob)
//! torn anywhere before its last byte reached the disk is gone entirely at
//! the next open, and the log is exactly what it was before the write.

use std::path::{Path, PathBuf};

use raftwal::{Entry, Log, Options, Preallocate, WriteBatch};

fn opts() -> Options {
    // Not preallocated: the file ends where the data ends, so cutting it is
    // what a torn write leaves.
    Options::default().preallocate(Preallocate::None)
}

fn the_segment(dir: &Path) -> PathBuf {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    assert_eq!(v.len(), 1);
    v.pop().unwrap()
}

fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.path().join(p.file_name().unwrap())).unwrap();
    }
    to
}

type Seen = (u64, u64, Vec<Entry>, Option<Vec<u8>>);

fn observe(log: &Log) -> Seen {
    let (first, last) = (log.first_index(), log.last_index());
    (
        first,
        last,
        log.entries(first, last + 1, None).unwrap(),
        log.state().map(|s| s.to_vec()),
    )
}

#[test]
fn a_torn_batch_leaves_nothing_of_itself() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let es: Vec<Entry> = (1..=10)
        .map(|i| Entry::new(i, 1, vec![i as u8; 40]))
        .collect();
    log.append(&es).unwrap();
    log.set_state(&b"term 1"[..]).unwrap();
    let before = observe(&log);
    let seg = the_segment(dir.path());
    let start = std::fs::metadata(&seg).unwrap().len();

    // One batch: cut at 7, entries 7..=12 of term 2, a new state.
    let mut b = WriteBatch::new();
    b.truncate_from(7);
    for i in 7..=12 {
        b.push(i, 2, &[0xA0 | i as u8; 300]).unwrap();
    }
    b.set_state(&b"term 2"[..]);
    log.write(&mut b).unwrap();
    let after = observe(&log);
    drop(log);
    let end = std::fs::metadata(&seg).unwrap().len();
    assert!(end > start + 1800);

    let mut cuts = 0;
    for cut in start..=end {
        let copy = copy_dir(dir.path());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(copy.path().join(seg.file_name().unwrap()))
            .unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        let log = Log::open(copy.path(), opts()).unwrap();
        let seen = observe(&log);
        if cut == end {
            assert_eq!(seen, after, "the whole write is there");
        } else {
            assert_eq!(
                seen,
                before,
                "a write torn at byte {} of {} left part of itself",
                cut - start,
                end - start
            );
            if cut > start {
                assert_eq!(log.recovery_report().repairs.len(), 1, "cut at {cut}");
            }
        }
        // The log takes writes again.
        let next = log.last_index() + 1;
        let term = log.term(log.last_index()).unwrap();
        log.append(&[Entry::new(next, term, "more")]).unwrap();
        cuts += 1;
    }
    assert_eq!(cuts, end - start + 1);
}
