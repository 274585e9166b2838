//! `raftwal inspect`, `verify` and `repair` read a directory with the same
//! replay machine as `Log::open`, so they tell the same story. These are
//! the disagreements found before they shared it, each kept as a test.
//! (The corruption matrix and the power-loss suites check the agreement
//! on every case they make: `tests/common/agree.rs`.)

mod common;

use common::{entry_frames, segment_files};
use raftwal::tools::inspect::{self, ProblemKind};
use raftwal::{Entry, Log, Options, Preallocate, WriteBatch};

fn opts() -> Options {
    Options::default().preallocate(Preallocate::None)
}

/// The case: entries 1-10 appended one by one, 11-15 in one
/// write, then the last 20 bytes of the segment cut. The scan once said
/// "indexes 1..=14" and put the tear at the torn frame, while the open
/// keeps 1..=10 and cuts at the write's start; a repair at the scan's
/// offset then found "a write cut short" and did not converge.
#[test]
fn a_torn_multi_entry_write_goes_whole_in_the_scan_too() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    for i in 1..=10 {
        log.append(&[Entry::new(i, 1, format!("entry {i}"))])
            .unwrap();
    }
    let mut batch = WriteBatch::new();
    for i in 11..=15 {
        batch.push(i, 1, format!("entry {i}").as_bytes()).unwrap();
    }
    log.write(&mut batch).unwrap();
    drop(log);
    let files = segment_files(dir.path());
    // Where entry 11, the first of the write, begins.
    let write_start = entry_frames(&files[0])[10].offset;
    let len = std::fs::metadata(&files[0]).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&files[0])
        .unwrap();
    f.set_len(len - 20).unwrap();
    drop(f);

    let scan = inspect::scan_dir(dir.path()).unwrap();
    assert_eq!((scan.first_index, scan.last_index), (1, 10));
    assert_eq!(scan.problems.len(), 1, "{:?}", scan.problems);
    let p = &scan.problems[0];
    assert_eq!(p.kind, ProblemKind::TornTail);
    assert_eq!((&p.path, p.offset), (&files[0], write_start));

    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.last_index(), 10);
    let repairs = &log.recovery_report().repairs;
    assert_eq!(repairs.len(), 1, "{repairs:?}");
    assert_eq!((&repairs[0].0, repairs[0].1), (&p.path, p.offset));
    drop(log);
    let again = inspect::scan_dir(dir.path()).unwrap();
    assert!(again.is_clean(), "{:?}", again.problems);
    assert_eq!(again.last_index, 10);
}
