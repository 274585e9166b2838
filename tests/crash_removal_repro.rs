//! Issue 12, part 2: files that a compaction or a reset superseded must be
//! recognized as such whichever subset of their unlinks reached the disk,
//! in whatever order, and whatever the background remover had or had not
//! done. A failed unlink must never make the next open fail, nor delete a
//! live segment and bring compacted entries back.
//!
//! Segments are 4 KiB and entries 520 bytes: every segment holds seven
//! entries (segment k starts at index 7k + 1), as in the issue.

#[path = "common/fs_sim.rs"]
mod fs_sim;

#[path = "common/shown.rs"]
mod shown;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fs_sim::{CutMode, Fault, FaultFs, Held, Op, Scope, SimFs, Trigger};
use raft::eraftpb::{Entry as RaftEntry, Snapshot};
use raftwal::fs::FileSystem;
use raftwal::{Entry, Log, Options, Preallocate, RaftLogStore, SyncPolicy};
use shown::{assert_allowed, scan_images, show, show_store, Shown};

/// The log directory (in the simulated file system).
const DIR: &str = "/sim/log";

/// Power-cut images per crash point when stepping through the operations.
const IMAGES_PER_POINT: u64 = 16;
/// Power-cut images of one moment, for the reordering scans.
const IMAGES: u64 = 200;

/// The longest the gate holds the remover in the tests that step through
/// every operation. The power is cut milliseconds after the hold starts;
/// should the library come to make a reset wait for the remover, each run
/// only slows down by this.
const HOLD: Duration = Duration::from_secs(1);

/// The term of entry `i`: it changes every 10 entries, so the term before
/// the first index is checked too.
fn term(i: u64) -> u64 {
    1 + i / 10
}

/// The data of entry `i`: 520 bytes, seven to a 4 KiB segment.
fn data(i: u64) -> Vec<u8> {
    let mut d = format!("entry {i} ").into_bytes();
    d.resize(520, i as u8);
    d
}

/// Entry `i` with [`term`] and [`data`].
fn entry(i: u64) -> Entry {
    Entry::new(i, term(i), data(i))
}

/// 4 KiB segments, no preallocation, `sync`, on `fs`.
fn opts(fs: Arc<dyn FileSystem>, sync: SyncPolicy) -> Options {
    Options::default()
        .segment_size(4096)
        .preallocate(Preallocate::None)
        .sync(sync)
        .file_system(fs)
}

/// Appends entries `1..=n`, one write each, and returns the segment files,
/// oldest first, after checking that segment k starts at 7k + 1.
fn fill(log: &Log, n: u64) -> Vec<PathBuf> {
    for i in 1..=n {
        log.append(&[entry(i)]).unwrap();
    }
    let segments = log.segments();
    for (k, (_, first, _)) in segments.iter().enumerate() {
        assert_eq!(*first, 7 * k as u64 + 1, "segment layout: {segments:?}");
    }
    segments.into_iter().map(|s| s.0).collect()
}

/// Fails unless `got` (a reopen's result) shows `want`.
#[track_caller]
fn assert_shows(got: Result<Shown, String>, want: &Shown, context: &str) {
    match got {
        Ok(g) if g == *want => {}
        Ok(g) => panic!(
            "{context}: the log reopened as\n  {}\nwhere this was acknowledged:\n  {}",
            g.describe(),
            want.describe()
        ),
        Err(e) => panic!(
            "{context}: the log does not reopen: {e}\n(acknowledged: {})",
            want.describe()
        ),
    }
}

/// Reproduces issue 12 (2), first case: `compact(15)` hands segments 1
/// (entries 1..=7) and 2 (8..=14) to the background remover, whose unlink
/// of segment 1 fails once (EIO: logged, "the next open removes it") while
/// segment 2's succeeds. After a clean close the log must reopen as it was;
/// before the fix: `Corruption { .., "segment does not continue the log" }`.
#[test]
fn a_failed_unlink_of_the_oldest_superseded_segment_never_makes_the_log_unopenable() {
    let sim = SimFs::new();
    let (ffs, faults) = FaultFs::new(sim.handle());
    let log = Log::open(DIR, opts(ffs.handle(), SyncPolicy::Always)).unwrap();
    let segments = fill(&log, 40);
    assert!(segments.len() >= 4);
    faults.fail_nth_at(Op::Remove, &segments[0], 1, Fault::Eio, Scope::Background);
    log.compact(15).unwrap();
    let want = show(&log).unwrap();
    drop(log);
    assert_eq!(
        faults.injected_of(Op::Remove),
        1,
        "the remover's unlink of segment 1 failed: {:?}",
        faults.log()
    );
    let got = Log::open(DIR, opts(sim.handle(), SyncPolicy::Always))
        .map_err(|e| e.to_string())
        .and_then(|log| show(&log));
    assert_shows(got, &want, "after a failed unlink and a clean close");
}

/// Reproduces issue 12 (2), second case: under `SyncPolicy::Manual` with
/// every sealer's footer write failing (the segments stay unsealed), entries
/// 1..=40 are written, then `compact(15)` and `sync()` acknowledge 15..=40.
/// The remover's unlink of segment 1 fails once, segment 2's succeeds. A
/// clean close and a reopen must show 15..=40; before the fix the reopen takes
/// segment 1's end at 7 and segment 3's start at 15 for a lost tail,
/// deletes segments 3 to 6 and returns entries 1..=7.
#[test]
fn a_failed_unlink_of_unsealed_segments_never_brings_compacted_entries_back() {
    let sim = SimFs::new();
    let (ffs, faults) = FaultFs::new(sim.handle());
    // The sealers' only writes are their footers (no preallocation).
    faults.fail_from(Op::Write, 1, Fault::Eio, Scope::Background);
    let log = Log::open(DIR, opts(ffs.handle(), SyncPolicy::Manual)).unwrap();
    let segments = fill(&log, 40);
    assert_eq!(segments.len(), 6);
    faults.fail_nth_at(Op::Remove, &segments[0], 1, Fault::Eio, Scope::Background);
    log.compact(15).unwrap();
    log.sync().unwrap();
    let want = show(&log).unwrap();
    assert_eq!((want.first, want.last), (15, 40));
    drop(log);
    assert_eq!(
        faults.injected_of(Op::Remove),
        1,
        "the remover's unlink of segment 1 failed: {:?}",
        faults.log()
    );
    let got = Log::open(DIR, opts(sim.handle(), SyncPolicy::Manual))
        .map_err(|e| e.to_string())
        .and_then(|log| show(&log));
    assert_shows(
        got,
        &want,
        "unsealed segments, a failed unlink, a clean close",
    );
}

/// The log of the reset scenarios: entries 1..=35 in five segments, closed
/// and reopened (so no sealer runs any more and every operation from here
/// on is the test's), then `compact(8)`, whose unlink of segment 1 the
/// gate holds on the remover's thread.
fn compacted_with_a_held_remover(sim: &SimFs) -> Log {
    sim.set_cut_mode(CutMode::Prefix);
    let log = Log::open(DIR, opts(sim.handle(), SyncPolicy::Always)).unwrap();
    assert_eq!(fill(&log, 35).len(), 5);
    drop(log);
    sim.gate().set_timeout(HOLD);
    sim.gate().hold(Held::Remove, "raftwal-remove");
    let log = Log::open(DIR, opts(sim.handle(), SyncPolicy::Always)).unwrap();
    log.compact(8).unwrap();
    assert!(
        sim.gate()
            .wait_for_waiting(Held::Remove, 1, Duration::from_secs(20)),
        "the remover's unlink of segment 1 is held"
    );
    log
}

/// Runs `op` on the log (or store) `setup` builds, once in full to learn
/// the states before and after it and how many operations it makes, then
/// again with the power cut at each of those operations in turn; scans
/// [`IMAGES_PER_POINT`] images per cut (directory operations kept as a
/// prefix: no reordering needed). Returns the bad images.
fn step_power_cuts<T>(
    setup: impl Fn(&SimFs) -> T,
    show_it: impl Fn(&T) -> Result<Shown, String>,
    op: impl Fn(&T),
    reopen: impl Fn(&SimFs) -> Result<Shown, String>,
) -> (Vec<(&'static str, Shown)>, Vec<String>) {
    let sim = SimFs::new();
    let it = setup(&sim);
    let before = show_it(&it).unwrap();
    let (ops0, _) = sim.counters();
    op(&it);
    let ops = sim.counters().0 - ops0;
    assert!(ops > 0, "the operation issued no file-system operation");
    let after = show_it(&it).unwrap();
    sim.gate().release();
    drop(it);
    let allowed = vec![("before", before), ("after", after)];
    let mut bad = Vec::new();
    for n in 1..=ops {
        let sim = SimFs::new();
        let it = setup(&sim);
        sim.arm(Trigger::Op(n));
        op(&it);
        let died = sim.died_at();
        sim.kill();
        drop(it);
        let found = scan_images(&sim, 0..IMAGES_PER_POINT, &allowed, &reopen);
        bad.extend(found.lines(&format!(
            "power cut at operation {n} of {ops} (refused: {died:?}): "
        )));
    }
    (allowed, bad)
}

/// Reproduces issue 12 (2), third case: `reset` unlinks its old segments
/// (2 to 5) oldest first while the remover still holds segment 1, which a
/// compaction superseded. The power goes out between two of those unlinks
/// (stepped through every operation of the reset), with the directory
/// operations persisted in order. The log must reopen as before the reset
/// or after it; before the fix some images give `Corruption` (segment 3 read by
/// its footer: "segment does not continue the log"; or "segment starts at
/// index 29 but the log ends at 7 and no reset marker follows"; the issue
/// saw "segment starts at index 15 but the log ends at 7", segment 3
/// scanned).
#[test]
fn a_reset_racing_the_remover_never_makes_the_log_unopenable() {
    let (allowed, bad) = step_power_cuts(
        compacted_with_a_held_remover,
        show,
        |log| {
            let _ = log.reset(1000, 3);
        },
        |img| {
            let log = Log::open(DIR, opts(img.handle(), SyncPolicy::Always))
                .map_err(|e| e.to_string())?;
            show(&log)
        },
    );
    assert_eq!((allowed[0].1.first, allowed[1].1.first), (8, 1000));
    assert_allowed("reset while the remover holds segment 1", &allowed, &bad);
}

/// Raft entry `i` with [`term`] and [`data`].
fn raft_entry(i: u64) -> RaftEntry {
    RaftEntry {
        index: i,
        term: term(i),
        data: data(i).into(),
        ..Default::default()
    }
}

/// The store's options: [`opts`] under `SyncPolicy::Always`.
fn store_opts(fs: &SimFs) -> Options {
    opts(fs.handle(), SyncPolicy::Always)
}

/// The store of the `apply_snapshot` scenario: as
/// [`compacted_with_a_held_remover`], through `RaftLogStore`.
fn store_with_a_held_remover(sim: &SimFs) -> RaftLogStore {
    sim.set_cut_mode(CutMode::Prefix);
    let store = RaftLogStore::open_with(DIR, store_opts(sim)).unwrap();
    for i in 1..=35 {
        store.append(&[raft_entry(i)]).unwrap();
    }
    assert!(store.stats().segments >= 5);
    drop(store);
    sim.gate().set_timeout(HOLD);
    sim.gate().hold(Held::Remove, "raftwal-remove");
    let store = RaftLogStore::open_with(DIR, store_opts(sim)).unwrap();
    store.compact(8).unwrap();
    assert!(
        sim.gate()
            .wait_for_waiting(Held::Remove, 1, Duration::from_secs(20)),
        "the remover's unlink of segment 1 is held"
    );
    store
}

/// Reproduces issue 12 (2), third case, through
/// `RaftLogStore::apply_snapshot` (which resets the log after the
/// snapshot's index): the power goes out at each operation in turn while
/// the remover holds segment 1. The store must reopen as before the
/// snapshot or after it.
#[test]
fn apply_snapshot_racing_the_remover_never_makes_the_store_unopenable() {
    let snapshot = || {
        let mut s = Snapshot::default();
        s.mut_metadata().index = 100;
        s.mut_metadata().term = 3;
        s.mut_metadata().mut_conf_state().voters = vec![1];
        s.data = b"the state machine at 100".to_vec().into();
        s
    };
    let (allowed, bad) = step_power_cuts(
        store_with_a_held_remover,
        show_store,
        |store| {
            let _ = store.apply_snapshot(snapshot());
        },
        |img| {
            let store = RaftLogStore::open_with(DIR, store_opts(img)).map_err(|e| e.to_string())?;
            show_store(&store)
        },
    );
    assert_eq!((allowed[0].1.first, allowed[1].1.first), (8, 101));
    assert_allowed(
        "apply_snapshot while the remover holds segment 1",
        &allowed,
        &bad,
    );
}

/// Reproduces issue 12 (2), fourth case, for a compaction: `compact(15)`
/// is durable and the remover's directory fsync is held, and the power
/// goes out. Before the fix the remover had unlinked segments 1 and 2
/// before that fsync, the file system could persist either unlink without
/// the other (the default `CutMode::Reorder`), and images that kept
/// segment 1 and lost segment 2 refused to open ("segment does not
/// continue the log"). Now the remover syncs the directory after each
/// unlink, so one unlink at most is pending there, and every image must
/// reopen as compacted.
#[test]
fn reordered_unlinks_of_a_compaction_never_make_the_log_unopenable() {
    let sim = SimFs::new();
    assert_eq!(sim.cut_mode(), CutMode::Reorder);
    let log = Log::open(DIR, opts(sim.handle(), SyncPolicy::Always)).unwrap();
    fill(&log, 35);
    // One run only: a longer bound than the stepping tests' [`HOLD`].
    sim.gate().set_timeout(5 * HOLD);
    sim.gate().hold(Held::SyncDir, "raftwal-remove");
    log.compact(15).unwrap();
    assert!(
        sim.gate()
            .wait_for_waiting(Held::SyncDir, 1, Duration::from_secs(20)),
        "the remover's directory fsync is held"
    );
    assert_eq!(sim.pending_dir_ops(), 1, "one unlink, not yet durable");
    let allowed = [("after the compaction", show(&log).unwrap())];
    sim.kill();
    drop(log);
    let found = scan_images(&sim, 0..IMAGES, &allowed, |img| {
        let log =
            Log::open(DIR, opts(img.handle(), SyncPolicy::Always)).map_err(|e| e.to_string())?;
        show(&log)
    });
    let bad = found.lines(&format!(
        "({} of {} images reordered the unlinks) ",
        found.reordered, found.images
    ));
    assert_allowed("compaction, unlinks not yet durable", &allowed, &bad);
}

/// Reproduces issue 12 (2), fourth case, for a reset: `reset` unlinks
/// segments 1 to 5 and the power goes out at its directory fsync; the file
/// system may have persisted any of those unlinks without the earlier ones
/// (`CutMode::Reorder`). The reset was durable before its unlinks began,
/// so it returns and the log must reopen as after it; before the fix,
/// images that lost an earlier unlink and kept a later one refused to open.
#[test]
fn reordered_unlinks_of_a_reset_never_make_the_log_unopenable() {
    // Filled, then closed and reopened: no sealer runs while the syncs are
    // counted.
    let setup = |sim: &SimFs| {
        let log = Log::open(DIR, opts(sim.handle(), SyncPolicy::Always)).unwrap();
        assert_eq!(fill(&log, 35).len(), 5);
        drop(log);
        Log::open(DIR, opts(sim.handle(), SyncPolicy::Always)).unwrap()
    };
    // The dry run: the reset's syncs, the last being its directory fsync
    // after the unlinks.
    let sim = SimFs::new();
    let log = setup(&sim);
    let before = show(&log).unwrap();
    let (_, syncs0) = sim.counters();
    log.reset(1000, 3).unwrap();
    let syncs = sim.counters().1 - syncs0;
    let after = show(&log).unwrap();
    drop(log);
    let allowed = [("before the reset", before), ("after the reset", after)];

    let sim = SimFs::new();
    let log = setup(&sim);
    sim.arm(Trigger::Sync(syncs));
    // The reset was durable before its unlinks: their failed directory
    // fsync fails nothing, and only the state after it is allowed.
    log.reset(1000, 3).unwrap();
    assert!(
        sim.is_dead(),
        "the power went off at the last directory fsync"
    );
    assert!(sim.pending_dir_ops() >= 2, "unlinks not yet durable");
    drop(log);
    let allowed = [allowed[1].clone()];
    let found = scan_images(&sim, 0..IMAGES, &allowed, |img| {
        let log =
            Log::open(DIR, opts(img.handle(), SyncPolicy::Always)).map_err(|e| e.to_string())?;
        show(&log)
    });
    let bad = found.lines(&format!(
        "({} of {} images reordered the unlinks) ",
        found.reordered, found.images
    ));
    assert_allowed("reset, unlinks not yet durable", &allowed, &bad);
    assert!(found.reordered > 0, "no image reordered the unlinks");
}
