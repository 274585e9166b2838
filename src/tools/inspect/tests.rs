//! Tests of the read-only scan against the log it scans.

use super::*;
use crate::{Log, Options, Preallocate, RecoveryMode};

fn e(i: u64, t: u64) -> Entry {
    Entry::new(i, t, format!("entry-{i}-{t}").into_bytes())
}

fn small() -> Options {
    Options::default().segment_size(4096)
}

/// Compares the scan with what `Log::open` makes of the same directory.
fn assert_matches_log(dir: &Path) {
    let scan = scan_dir(dir).unwrap();
    assert!(scan.is_clean(), "{:?}", scan.problems);
    let log = Log::open(dir, small()).unwrap();
    assert_eq!(
        (scan.first_index, scan.last_index),
        (log.first_index(), log.last_index())
    );
    assert_eq!(scan.prev_term, log.term(log.first_index() - 1).unwrap());
    assert_eq!(scan.state, log.state());
    let read: Vec<Entry> = scan.entries(0, u64::MAX).collect::<Result<_>>().unwrap();
    let want = if log.is_empty() {
        Vec::new()
    } else {
        log.entries(log.first_index(), log.last_index() + 1, None)
            .unwrap()
    };
    assert_eq!(read, want);
}

#[test]
fn follows_truncation_compaction_and_reset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), small()).unwrap();
        for i in 1..=400 {
            log.append(&[e(i, 1 + i / 100)]).unwrap();
        }
        log.set_state(&b"s1"[..]).unwrap();
        log.truncate_from_index(390).unwrap();
        log.append(&[e(390, 9)]).unwrap();
        log.truncate_from_index(200).unwrap();
        log.append(&[e(200, 9), e(201, 9)]).unwrap();
        log.compact(150).unwrap();
        // While the log is open (and locked), the scan still reads it.
        let scan = scan_dir(dir.path()).unwrap();
        assert_eq!((scan.first_index, scan.last_index), (150, 201));
    }
    assert_matches_log(dir.path());
    {
        let log = Log::open(dir.path(), small()).unwrap();
        log.reset(1000, 7).unwrap();
        log.append(&[e(1000, 7)]).unwrap();
    }
    assert_matches_log(dir.path());
}

#[test]
fn reads_a_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small()).unwrap();
    for i in 1..=100 {
        log.append(&[e(i, 1)]).unwrap();
    }
    let scan = scan_dir(dir.path()).unwrap();
    let got: Vec<u64> = scan.entries(10, 13).map(|r| r.unwrap().index).collect();
    assert_eq!(got, vec![10, 11, 12]);
    assert_eq!(scan.entries(90, 1000).count(), 11);
    assert_eq!(scan.entries(200, 300).count(), 0);
    assert_eq!(scan.entries(50, 10).count(), 0);
    let live: u64 = scan
        .segments
        .iter()
        .filter_map(|s| s.live)
        .map(|(lo, hi)| hi - lo + 1)
        .sum();
    assert_eq!(live, 100);
}

#[test]
fn empty_and_missing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let scan = scan_dir(dir.path()).unwrap();
    assert!(scan.segments.is_empty() && scan.is_clean());
    assert_eq!((scan.first_index, scan.last_index), (1, 0));
    assert!(matches!(
        scan_dir(&dir.path().join("nope")),
        Err(Error::Io { .. })
    ));
}

fn last_segment(dir: &Path) -> PathBuf {
    segment::list(&crate::fs::StdFileSystem, dir)
        .unwrap()
        .pop()
        .unwrap()
        .2
}

/// Damages the frame of entry `index`: zeros its last `n` bytes.
fn zero_end_of(dir: &Path, index: u64, n: u64) -> EntryLoc {
    zero_end_in(&scan_dir(dir).unwrap(), index, n)
}

fn zero_end_in(scan: &DirScan, index: u64, n: u64) -> EntryLoc {
    let loc = *scan
        .entry_locations()
        .iter()
        .find(|l| l.index == index)
        .unwrap();
    let path = &scan.segments[loc.segment].path;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let end = loc.offset + u64::from(loc.len);
    f.write_all_at(&vec![0; n as usize], end - n).unwrap();
    loc
}

#[test]
fn torn_tail_is_reported_and_nothing_changes() {
    let modes = [
        Preallocate::Allocate,
        Preallocate::ZeroFill,
        Preallocate::None,
    ];
    for prealloc in modes {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::default()
            .segment_size(1 << 20)
            .preallocate(prealloc);
        {
            let log = Log::open(dir.path(), opts.clone()).unwrap();
            for i in 1..=10 {
                log.append(&[e(i, 1)]).unwrap();
            }
        }
        let loc = zero_end_of(dir.path(), 10, 3);
        let path = last_segment(dir.path());
        let before = std::fs::read(&path).unwrap();
        let scan = scan_dir(dir.path()).unwrap();
        assert_eq!(scan.problems.len(), 1, "preallocate {prealloc:?}");
        let p = &scan.problems[0];
        assert_eq!((p.kind, p.offset), (ProblemKind::TornTail, loc.offset));
        assert_eq!(scan.segments[0].data_len, loc.offset);
        assert_eq!((scan.first_index, scan.last_index), (1, 9));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        // Recovery agrees: it keeps 9 entries and cuts at the same offset.
        let log = Log::open(dir.path(), opts).unwrap();
        assert_eq!(log.last_index(), 9);
        assert_eq!(log.recovery_report().repairs[0].1, p.offset);
    }
}

#[test]
fn a_clean_preallocated_segment_ends_at_its_data() {
    for mode in [Preallocate::Allocate, Preallocate::ZeroFill] {
        clean_preallocated_segment_ends_at_its_data(mode);
    }
}

fn clean_preallocated_segment_ends_at_its_data(mode: Preallocate) {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default().segment_size(1 << 20).preallocate(mode);
    let log = Log::open(dir.path(), opts).unwrap();
    log.append(&[e(1, 1), e(2, 1)]).unwrap();
    let scan = scan_dir(dir.path()).unwrap();
    assert!(scan.is_clean());
    let seg = &scan.segments[0];
    let last = scan.entry_locations()[1];
    assert_eq!(seg.data_len, last.offset + u64::from(last.len));
    assert_eq!(seg.preallocated, 1 << 20, "{mode:?}");
    assert_eq!(seg.size, seg.preallocated);
}

#[test]
fn a_damaged_entry_mid_log_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), Options::default()).unwrap();
        for i in 1..=10 {
            log.append(&[e(i, 1)]).unwrap();
        }
    }
    let loc = zero_end_of(dir.path(), 5, 1);
    let scan = scan_dir(dir.path()).unwrap();
    assert_eq!(scan.problems.len(), 1);
    assert_eq!(scan.problems[0].kind, ProblemKind::Corruption);
    assert_eq!(scan.problems[0].offset, loc.offset);
    assert_eq!(scan.last_index, 4);
    // Recovery refuses it at the same place.
    match Log::open(dir.path(), Options::default()) {
        Err(Error::Corruption { offset, .. }) => assert_eq!(offset, loc.offset),
        other => panic!("{other:?}"),
    }
    let log = Log::open(
        dir.path(),
        Options::default().recovery_mode(RecoveryMode::TolerateAnyCorruption),
    )
    .unwrap();
    assert_eq!(log.last_index(), 4);
}

#[test]
fn damage_in_an_older_segment_is_found_and_later_ones_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), small()).unwrap();
        for i in 1..=1000 {
            log.append(&[e(i, 1)]).unwrap();
        }
    }
    let scan = scan_dir(dir.path()).unwrap();
    assert!(scan.segments.len() >= 4);
    // The last entry of the first and of the third segment.
    let lasts: Vec<u64> = [0, 2]
        .iter()
        .map(|&k| scan.segments[k].live.unwrap().1)
        .collect();
    let locs: Vec<EntryLoc> = lasts.iter().map(|&i| zero_end_in(&scan, i, 1)).collect();
    let scan = scan_dir(dir.path()).unwrap();
    assert_eq!(scan.problems.len(), 2);
    for (p, loc) in scan.problems.iter().zip(&locs) {
        assert_eq!(p.kind, ProblemKind::Corruption);
        assert_eq!(p.offset, loc.offset);
        assert_eq!(p.path, scan.segments[loc.segment].path);
    }
    assert_eq!(scan.segments[0].data_len, locs[0].offset);
    assert_eq!(scan.last_index, lasts[0] - 1);
}

#[test]
fn a_torn_segment_header_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), Options::default()).unwrap();
        log.append(&[e(1, 1)]).unwrap();
    }
    let path = dir.path().join(segment::file_name(99, 2));
    std::fs::write(&path, [1u8, 40, 0]).unwrap();
    let scan = scan_dir(dir.path()).unwrap();
    assert_eq!(scan.problems.len(), 1);
    assert_eq!(scan.problems[0].kind, ProblemKind::TornTail);
    assert_eq!(scan.problems[0].offset, 0);
    assert_eq!(scan.last_index, 1);
}

#[test]
fn a_torn_seal_is_not_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), small()).unwrap();
        for i in 1..=300 {
            log.append(&[e(i, 1)]).unwrap();
        }
    }
    let scan = scan_dir(dir.path()).unwrap();
    assert!(scan.is_clean(), "{:?}", scan.problems);
    let sealed = scan
        .segments
        .iter()
        .find(|s| s.sealed)
        .expect("a sealed segment: the log rolled, and drop stops the sealer after its work");
    // Cut the trailer's CRC: what a crash while sealing leaves.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&sealed.path)
        .unwrap();
    f.write_all_at(&[0xff, 0xff], sealed.size - 10).unwrap();
    let after = scan_dir(dir.path()).unwrap();
    assert!(after.is_clean(), "{:?}", after.problems);
    let seg = after
        .segments
        .iter()
        .find(|s| s.path == sealed.path)
        .unwrap();
    assert!(seg.torn_seal && !seg.sealed, "{seg:?}");
    assert_eq!((after.first_index, after.last_index), (1, 300));
    assert_matches_log(dir.path());
}

#[test]
fn damage_no_crash_leaves_is_not_a_torn_tail() {
    let make = || {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), Options::default()).unwrap();
        for i in 1..=10 {
            log.append(&[e(i, 1)]).unwrap();
        }
        drop(log);
        dir
    };
    // An unknown type byte where the last frame starts.
    let dir = make();
    let scan = scan_dir(dir.path()).unwrap();
    let loc = scan.entry_locations()[9];
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&scan.segments[0].path)
        .unwrap();
    f.write_all_at(&[0x77], loc.offset).unwrap();
    let scan = scan_dir(dir.path()).unwrap();
    assert_eq!(scan.problems[0].kind, ProblemKind::Corruption);
    assert!(matches!(
        Log::open(dir.path(), Options::default()),
        Err(Error::Corruption { .. })
    ));

    // A bad header on a last segment that holds frames.
    let dir = make();
    let path = last_segment(dir.path());
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0xff], 12).unwrap();
    let scan = scan_dir(dir.path()).unwrap();
    assert_eq!(scan.problems[0].kind, ProblemKind::Corruption);
    assert_eq!(scan.problems[0].offset, 0);
    assert!(matches!(
        Log::open(dir.path(), Options::default()),
        Err(Error::Corruption { .. })
    ));
}

#[test]
fn a_zeroed_seal_is_a_torn_seal() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), small()).unwrap();
        for i in 1..=300 {
            log.append(&[e(i, 1)]).unwrap();
        }
    }
    let scan = scan_dir(dir.path()).unwrap();
    let sealed = scan
        .segments
        .iter()
        .find(|s| s.sealed)
        .expect("a sealed segment: the log rolled, and drop stops the sealer after its work");
    // The trailer's bytes never reached the disk; its length did.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&sealed.path)
        .unwrap();
    f.write_all_at(&[0; 23], sealed.size - 23).unwrap();
    let after = scan_dir(dir.path()).unwrap();
    assert!(after.is_clean(), "{:?}", after.problems);
    assert_matches_log(dir.path());
}

#[test]
fn progress_reaches_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small()).unwrap();
    for i in 1..=200 {
        log.append(&[e(i, 1)]).unwrap();
    }
    let mut last = 0;
    let scan = scan_dir_with(dir.path(), 1 << 20, &mut |n| {
        assert!(n >= last);
        last = n;
    })
    .unwrap();
    assert_eq!(last, scan.bytes);
}
