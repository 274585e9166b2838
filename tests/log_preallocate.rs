//! The preallocation modes (`Preallocate::None`, `Allocate`, `ZeroFill`):
//! a log written in any mode reopens in any other with every entry intact;
//! a preallocated segment records its full length in its header (zeros
//! below it are unused space, however they were made); a zero-filling log
//! zero-fills a new log's first segment at open, but a roll that finds no
//! prepared file allocates on the spot, writing no zeros on the writer's
//! thread; a log reopened under `ZeroFill` (whose active segment's tail
//! recovery gave back as unwritten space) moves to a zero-filled segment
//! as soon as one is ready.

mod common;

#[path = "common/fs_sim.rs"]
mod fs_sim;

use common::{entries, Model};
use fs_sim::{Fault, FaultFs, Op, Scope, SimFs};
use raftwal::tools::proto;
use raftwal::{Log, Options, Preallocate};

const MODES: [Preallocate; 3] = [
    Preallocate::None,
    Preallocate::Allocate,
    Preallocate::ZeroFill,
];

const SEGMENT: u64 = 4096;

fn options(mode: Preallocate) -> Options {
    Options::default().segment_size(SEGMENT).preallocate(mode)
}

/// Appends entries `lo..hi`, one write each.
fn append(log: &Log, m: &mut Model, lo: u64, hi: u64) {
    for i in lo..hi {
        let es = entries(i, i + 1, 1 + i / 100);
        log.append(&es).unwrap();
        m.append(&es);
    }
}

#[test]
fn every_mode_reopens_in_every_mode() {
    for first in MODES {
        for then in MODES {
            let dir = tempfile::tempdir().unwrap();
            let mut m = Model::new();
            let log = Log::open(dir.path(), options(first)).unwrap();
            append(&log, &mut m, 1, 200);
            assert!(log.segments().len() >= 3, "{first:?}: {:?}", log.segments());
            drop(log);
            let log = Log::open(dir.path(), options(then)).unwrap();
            let r = log.recovery_report();
            assert!(r.repairs.is_empty(), "{first:?} then {then:?}: {r:?}");
            m.check(&log);
            append(&log, &mut m, 200, 400);
            drop(log);
            let log = Log::open(dir.path(), options(then)).unwrap();
            assert!(log.recovery_report().repairs.is_empty());
            m.check(&log);
        }
    }
}

#[test]
fn a_preallocated_first_segment_records_its_full_length() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), options(mode)).unwrap();
        append(&log, &mut Model::new(), 1, 5);
        drop(log);
        let scan = raftwal::tools::inspect::scan_dir(dir.path()).unwrap();
        assert!(scan.is_clean(), "{mode:?}");
        let seg = &scan.segments[0];
        let expect = if mode == Preallocate::None {
            0
        } else {
            SEGMENT
        };
        assert_eq!(seg.preallocated, expect, "{mode:?}");
    }
}

/// Writes on the caller's thread while `log` takes `n` appends, with the
/// preparer unable to create a file (every roll allocates on the spot).
fn foreground_writes_at_open_and_append(mode: Preallocate, n: u64) -> (u64, u64, usize) {
    let sim = SimFs::new();
    let (ffs, faults) = FaultFs::new(sim.handle());
    faults.fail_from(Op::Create, 1, Fault::Eio, Scope::Background);
    let opts = options(mode).file_system(ffs.handle());
    let log = Log::open("/sim/log", opts).unwrap();
    let at_open = faults.count(Op::Write, Scope::Foreground);
    let segments_before = log.segments().len();
    append(&log, &mut Model::new(), 1, n + 1);
    let on_append = faults.count(Op::Write, Scope::Foreground) - at_open;
    let created = log.segments().len() - segments_before;
    (at_open, on_append, created)
}

#[test]
fn zero_fill_writes_a_new_logs_first_segment_at_open_and_never_on_a_roll() {
    let (alloc_open, alloc_append, alloc_created) =
        foreground_writes_at_open_and_append(Preallocate::Allocate, 300);
    let (zero_open, zero_append, zero_created) =
        foreground_writes_at_open_and_append(Preallocate::ZeroFill, 300);
    // At open: the header, and with ZeroFill one write of zeros (the
    // segment is one 4 KiB zero-fill chunk).
    assert_eq!(alloc_open, 1);
    assert_eq!(zero_open, 2);
    // On append: one write per append and one header per new segment,
    // whatever the mode: rolls without a prepared file write no zeros.
    assert!(zero_created >= 2, "{zero_created} segments created");
    assert_eq!(alloc_append, 300 + alloc_created as u64);
    assert_eq!(zero_append, 300 + zero_created as u64);
}

/// The `.prep` files in `dir`.
fn prepared(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "prep"))
        })
        .count()
}

/// Waits (bounded) until `log`'s preparer has finished `n` files since
/// the log opened, and returns how many it finished. A finished file is
/// offered to the writer in the same step (a `.prep` file exists earlier,
/// while it is still being allocated and zeroed).
fn wait_for_ready(log: &Log, n: u64) -> u64 {
    let done = || {
        let s = log.stats();
        s.segments_zero_filled + s.segments_allocated
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while done() < n && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    done()
}

/// Waits (bounded) for a prepared file to appear in `dir`.
fn wait_for_prepared(dir: &std::path::Path) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while prepared(dir) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    prepared(dir)
}

#[test]
fn the_next_segment_is_prepared_once_the_active_one_is_half_full() {
    // 64 KiB segments, entries of 1,000 bytes (a frame of a little more):
    // 16 entries fill a quarter, 40 pass the half, about 64 fill one.
    for mode in [Preallocate::Allocate, Preallocate::ZeroFill] {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::default().segment_size(64 << 10).preallocate(mode);
        let log = Log::open(dir.path(), opts.clone()).unwrap();
        let write = |log: &Log| {
            let next = log.last_index() + 1;
            log.append(&[raftwal::Entry::new(next, 1, vec![7u8; 1000])])
                .unwrap();
        };
        for _ in 0..16 {
            write(&log);
        }
        // A quarter full: nothing asked for yet. A preparer that started
        // at once would have a file ready well within this wait.
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(prepared(dir.path()), 0, "{mode:?}: prepared too early");
        for _ in 16..40 {
            write(&log);
        }
        assert_eq!(log.segments().len(), 1);
        assert_eq!(wait_for_ready(&log, 1), 1, "{mode:?}: not prepared");
        assert_eq!(prepared(dir.path()), 1, "{mode:?}: not prepared");
        // The roll takes it; the next one waits for the next half mark.
        while log.segments().len() == 1 {
            write(&log);
        }
        assert_eq!(prepared(dir.path()), 0, "{mode:?}: the roll took it");
        for _ in 0..40 {
            write(&log);
        }
        assert_eq!(wait_for_prepared(dir.path()), 1, "{mode:?}: not prepared");
        drop(log);
        // Without its prepared file, a log reopened past the half mark of
        // its active segment (it will not pass it again) asks at once.
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "prep") {
                std::fs::remove_file(p).unwrap();
            }
        }
        let _log = Log::open(dir.path(), opts).unwrap();
        assert_eq!(wait_for_prepared(dir.path()), 1, "{mode:?}: reopened");
    }
}

#[test]
fn a_reopened_zero_filling_log_moves_to_a_zero_filled_segment_once_one_is_ready() {
    let write = |log: &Log, n: u64| {
        for _ in 0..n {
            let next = log.last_index() + 1;
            log.append(&[raftwal::Entry::new(next, 1, vec![7u8; 100])])
                .unwrap();
        }
    };
    for mode in [Preallocate::Allocate, Preallocate::ZeroFill] {
        let dir = tempfile::tempdir().unwrap();
        // 1 MiB segments: 10 entries are far below the half mark.
        let opts = Options::default().segment_size(1 << 20).preallocate(mode);
        let log = Log::open(dir.path(), opts.clone()).unwrap();
        write(&log, 10);
        drop(log);
        let log = Log::open(dir.path(), opts.clone()).unwrap();
        if mode == Preallocate::ZeroFill {
            // Nothing is prepared for a log that is only opened; the first
            // write asks, below the half mark.
            assert_eq!(prepared(dir.path()), 0);
            write(&log, 1);
            assert_eq!(wait_for_ready(&log, 1), 1);
            assert_eq!(prepared(dir.path()), 1);
            write(&log, 1);
            let segs = log.segments();
            assert_eq!(segs.len(), 2, "rolled to the prepared segment");
            assert_eq!((segs[1].1, segs[1].2), (12, 1));
            assert_eq!(log.stats().segments_zero_filled, 1);
            // Once only: the next writes stay in it.
            write(&log, 19);
            assert_eq!(log.segments().len(), 2);
        } else {
            // Nothing to gain from an allocated file: no early roll, and no
            // file asked for below the half mark.
            write(&log, 21);
            assert_eq!(log.segments().len(), 1);
            assert_eq!(prepared(dir.path()), 0);
        }
        drop(log);
        let log = Log::open(dir.path(), opts).unwrap();
        assert_eq!((log.first_index(), log.last_index()), (1, 31));
        for i in 1..=31 {
            assert_eq!(
                log.get_entry(i).unwrap().data.len(),
                100,
                "{mode:?} entry {i}"
            );
        }
    }
}

/// Under a preallocating mode segments start at `first_segment_size` and
/// double up to `segment_size`: a new store preallocates little, a busy
/// one soon writes into full-size segments. Without preallocation every
/// segment may reach `segment_size` (files grow as written).
#[test]
fn segments_start_small_and_double_up_to_the_segment_size() {
    for mode in [
        Preallocate::Allocate,
        Preallocate::ZeroFill,
        Preallocate::None,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::default()
            .segment_size(256 << 10)
            .first_segment_size(32 << 10)
            .sync(raftwal::SyncPolicy::Manual)
            .preallocate(mode);
        let log = Log::open(dir.path(), opts).unwrap();
        // About 1.3 MiB in batches of 16 KiB.
        for k in 0..80u64 {
            let es: Vec<raftwal::Entry> = (0..16)
                .map(|j| raftwal::Entry::new(k * 16 + j + 1, 1, vec![k as u8; 1000]))
                .collect();
            log.append(&es).unwrap();
        }
        log.sync().unwrap();
        // What each segment was made to hold: its header's preallocated
        // length (what the file was allocated to).
        let sizes: Vec<u64> = log
            .segments()
            .iter()
            .map(|(p, _, _)| preallocated_of(p))
            .collect();
        drop(log);
        if mode == Preallocate::None {
            assert!(sizes.iter().all(|&s| s == 0), "{mode:?}: {sizes:?}");
            continue;
        }
        // Each at most twice the one before (a file prepared before the
        // writer asked for a larger one is used as it is), never smaller,
        // up to the segment size.
        assert_eq!(sizes[0], 32 << 10, "{mode:?}: {sizes:?}");
        assert!(
            sizes.windows(2).all(|w| w[0] <= w[1] && w[1] <= 2 * w[0]),
            "{mode:?}: {sizes:?}"
        );
        assert!(sizes.iter().all(|&s| s <= 256 << 10), "{mode:?}: {sizes:?}");
        assert!(
            sizes.ends_with(&[256 << 10, 256 << 10]),
            "{mode:?}: {sizes:?}"
        );
    }
}

/// The `preallocated` field of a segment's header.
fn preallocated_of(path: &std::path::Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let len = u32::from_le_bytes(bytes[1..5].try_into().unwrap()) as usize;
    let h = <proto::SegmentHeader as prost::Message>::decode(&bytes[9..9 + len]).unwrap();
    h.preallocated
}
