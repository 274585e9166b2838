//! Disk full: `ENOSPC` during an append, a segment creation, a compaction,
//! a snapshot, and an fsync. Each returns an error, loses nothing
//! acknowledged (checked after a power cut too), and the log works again
//! once space returns: without a reopen, except after a failed fsync, which
//! poisons the log until it is reopened. Opening a clean log needs no free
//! space at all (every write, creation and allocation fails during the
//! open), and neither does opening one whose torn tail must be cut.
//!
//! Prints `crash_disk_full: ...` with the scenarios run (see it with
//! `--nocapture`).

#[path = "common/fs_sim.rs"]
mod fs_sim;

#[path = "common/crash_model.rs"]
mod crash_model;

use std::sync::Arc;

use crash_model::{observe, probe_op, raft_entry, snapshot_content, StoreOp, StoreState};
use fs_sim::{is_enospc, DiskFull, Fault, FaultFs, Faults, Op, Rng, Scope, SimFs};
use raftwal::fs::FileSystem;
use raftwal::{Entry, Error, Log, Options, Preallocate, RaftLogStore};

const DIR: &str = "/sim/log";

fn opts(fs: Arc<dyn FileSystem>, preallocate: bool) -> Options {
    let mode = match preallocate {
        true => Preallocate::Allocate,
        false => Preallocate::None,
    };
    Options::default()
        .segment_size(4096)
        .preallocate(mode)
        .file_system(fs)
}

fn entry(i: u64) -> Entry {
    Entry::new(i, 1 + i / 50, vec![(i % 251) as u8; 100 + (i % 7) as usize])
}

/// `ENOSPC`, as an I/O error or as the cause of a poisoned log.
fn assert_enospc(e: &Error, context: &str) {
    match e {
        Error::Io { source, path, .. } => {
            assert!(is_enospc(source), "{context}: {e}");
            assert!(!path.as_os_str().is_empty(), "{context}: {e}");
        }
        Error::Poisoned { cause } => {
            assert!(cause.contains("No space left"), "{context}: {e}")
        }
        other => panic!("{context}: expected ENOSPC, got {other:?}"),
    }
}

/// Checks entries `1..=last` of `log` (all of which were acknowledged).
fn check_log(log: &Log, first: u64, last: u64, context: &str) {
    assert_eq!(
        (log.first_index(), log.last_index()),
        (first, last),
        "{context}"
    );
    for i in first..=last {
        assert_eq!(log.get_entry(i).unwrap(), entry(i), "{context}: entry {i}");
    }
}

/// After a power cut at this moment, everything acknowledged is there.
fn check_power_cut(sim: &SimFs, preallocate: bool, first: u64, last: u64, context: &str) {
    for seed in 0..4 {
        let img = sim.cut_power(&mut Rng::new(seed));
        let log = Log::open(DIR, opts(img.handle(), preallocate))
            .unwrap_or_else(|e| panic!("{context}: reopen after a power cut: {e}"));
        assert_eq!(log.first_index(), first, "{context}: after a power cut");
        assert!(
            log.last_index() >= last,
            "{context}: lost acknowledged entries"
        );
        for i in first..=last {
            assert_eq!(log.get_entry(i).unwrap(), entry(i), "{context}: entry {i}");
        }
    }
}

struct Env {
    sim: SimFs,
    ffs: FaultFs,
    faults: Faults,
}

fn env() -> Env {
    let sim = SimFs::new();
    let (ffs, faults) = FaultFs::new(sim.handle());
    Env { sim, ffs, faults }
}

/// Appends until a call fails; returns the last acknowledged index and
/// the error.
fn append_until_error(log: &Log, from: u64, limit: u64) -> (u64, Error) {
    for i in from..from + limit {
        if let Err(e) = log.append(&[entry(i)]) {
            return (i - 1, e);
        }
    }
    panic!("{limit} appends on a full disk all succeeded");
}

#[test]
fn enospc_during_append() {
    let mut scenarios = 0;
    // Without preallocation every append grows the file: the first one on
    // a full disk fails. A short write (part of the frame reached the
    // file) is rolled back the same way.
    for fault in [None, Some(Fault::PartialEnospc { keep: 30 })] {
        let e = env();
        let log = Log::open(DIR, opts(e.ffs.handle(), false)).unwrap();
        for i in 1..=10 {
            log.append(&[entry(i)]).unwrap();
        }
        match fault {
            None => e.faults.set_disk_full(DiskFull::Realistic),
            Some(f) => e.faults.fail_from(Op::Write, 1, f, Scope::Foreground),
        }
        let err = log.append(&[entry(11)]).unwrap_err();
        assert_enospc(&err, "append on a full disk");
        check_log(&log, 1, 10, "after ENOSPC");
        // Still full: still an error, still nothing lost, not poisoned.
        assert_enospc(&log.append(&[entry(11)]).unwrap_err(), "second append");
        check_power_cut(&e.sim, false, 1, 10, "full disk");
        // Space returns: the same log works, no reopen needed.
        e.faults.set_disk_full(DiskFull::No);
        e.faults.clear();
        log.append(&[entry(11)]).unwrap();
        check_log(&log, 1, 11, "after space returned");
        drop(log);
        let log = Log::open(DIR, opts(e.ffs.handle(), false)).unwrap();
        check_log(&log, 1, 11, "reopened");
        assert!(log.recovery_report().repairs.is_empty());
        scenarios += 1;
    }
    // With preallocation appends land in allocated space and go on
    // working on a full disk until a new segment is needed.
    let e = env();
    let log = Log::open(DIR, opts(e.ffs.handle(), true)).unwrap();
    log.append(&[entry(1)]).unwrap();
    e.faults.set_disk_full(DiskFull::Realistic);
    let (last, err) = append_until_error(&log, 2, 200);
    assert!(
        last >= 20,
        "appends into preallocated space failed early at {last}"
    );
    assert_enospc(&err, "roll on a full disk");
    check_log(&log, 1, last, "after ENOSPC");
    check_power_cut(&e.sim, true, 1, last, "full disk, preallocated");
    e.faults.set_disk_full(DiskFull::No);
    log.append(&[entry(last + 1)]).unwrap();
    check_log(&log, 1, last + 1, "after space returned");
    scenarios += 1;
    eprintln!("crash_disk_full: {scenarios} append scenarios, each recovered without a reopen");
}

#[test]
fn enospc_during_segment_creation() {
    for preallocate in [false, true] {
        let e = env();
        let log = Log::open(DIR, opts(e.ffs.handle(), preallocate)).unwrap();
        // Fill most of the first segment.
        let mut i = 1;
        while log.segments().len() == 1 && log.segments()[0].2 < 30 {
            log.append(&[entry(i)]).unwrap();
            i += 1;
        }
        // Only creating files fails: the roll cannot get a new segment
        // (the preparer cannot make one either).
        e.faults.fail_from(Op::Create, 1, Fault::Enospc, Scope::Any);
        e.faults
            .fail_from(Op::Allocate, 1, Fault::Enospc, Scope::Any);
        // (A file prepared before the disk filled takes one more roll.)
        let (last, err) = append_until_error(&log, i, 200);
        assert!(
            matches!(&err, Error::Io { op, .. } if *op == "create segment"),
            "{err}"
        );
        assert_enospc(&err, "segment creation on a full disk");
        assert!(log.segments().len() <= 2);
        check_log(&log, 1, last, "after a failed roll");
        check_power_cut(&e.sim, preallocate, 1, last, "failed roll");
        e.faults.clear();
        log.append(&[entry(last + 1)]).unwrap();
        check_log(&log, 1, last + 1, "after space returned");
        drop(log);
        let log = Log::open(DIR, opts(e.ffs.handle(), preallocate)).unwrap();
        check_log(&log, 1, last + 1, "reopened");
    }
    eprintln!("crash_disk_full: 2 segment-creation scenarios (preallocated or not), each recovered without a reopen");
}

#[test]
fn enospc_during_compaction() {
    // Without preallocation the compaction marker cannot be written.
    let e = env();
    let log = Log::open(DIR, opts(e.ffs.handle(), false)).unwrap();
    for i in 1..=100 {
        log.append(&[entry(i)]).unwrap();
    }
    assert!(log.segments().len() >= 3);
    e.faults.set_disk_full(DiskFull::Realistic);
    let err = log.compact(60).unwrap_err();
    assert_enospc(&err, "compaction on a full disk");
    check_log(&log, 1, 100, "after a failed compaction");
    check_power_cut(&e.sim, false, 1, 100, "failed compaction");
    e.faults.set_disk_full(DiskFull::No);
    log.compact(60).unwrap();
    check_log(&log, 60, 100, "after space returned");
    drop(log);
    let log = Log::open(DIR, opts(e.ffs.handle(), false)).unwrap();
    check_log(&log, 60, 100, "reopened");
    assert_eq!(log.term(59).unwrap(), entry(59).term);
    drop(log);

    // With preallocation the marker lands in allocated space: compaction
    // works on a full disk, and gives space back.
    let e = env();
    let log = Log::open(DIR, opts(e.ffs.handle(), true)).unwrap();
    for i in 1..=100 {
        log.append(&[entry(i)]).unwrap();
    }
    let segments = log.segments().len();
    e.faults.set_disk_full(DiskFull::Realistic);
    log.compact(60).unwrap();
    assert!(log.segments().len() < segments);
    check_log(&log, 60, 100, "compaction on a full disk");
    check_power_cut(&e.sim, true, 60, 100, "compaction on a full disk");
    eprintln!(
        "crash_disk_full: 2 compaction scenarios (an error without preallocation, success with it)"
    );
}

fn store_opts(fs: Arc<dyn FileSystem>) -> Options {
    opts(fs, false)
}

#[test]
fn enospc_during_snapshots() {
    let e = env();
    let store = RaftLogStore::open_with(DIR, store_opts(e.ffs.handle())).unwrap();
    let mut m = StoreState::new();
    for _ in 0..8 {
        let op = probe_op(&m);
        op.run(&store).unwrap();
        m.apply(&op);
    }
    let commit = StoreOp::CommitTo(6);
    commit.run(&store).unwrap();
    m.apply(&commit);
    let (cs, data) = snapshot_content(5, m.term(5));
    let create = StoreOp::CreateSnapshot { index: 5, cs, data };
    let (cs, data) = snapshot_content(20, m.max_term());
    let apply = StoreOp::ApplySnapshot {
        index: 20,
        term: m.max_term(),
        cs,
        data,
    };
    for op in [&create, &apply] {
        e.faults.set_disk_full(DiskFull::Realistic);
        let err = op.run(&store).unwrap_err();
        assert_enospc(&err, &format!("{op:?} on a full disk"));
        assert_eq!(
            observe(&store).unwrap(),
            m,
            "{op:?}: a failed call changed the store"
        );
        // After a power cut: as before the call.
        let img = e.sim.cut_power(&mut Rng::new(1));
        let s2 = RaftLogStore::open_with(DIR, store_opts(img.handle())).unwrap();
        assert_eq!(observe(&s2).unwrap(), m, "{op:?}: after a power cut");
        drop(s2);
        e.faults.set_disk_full(DiskFull::No);
        op.run(&store).unwrap();
        m.apply(op);
        assert_eq!(observe(&store).unwrap(), m);
    }
    drop(store);
    let store = RaftLogStore::open_with(DIR, store_opts(e.ffs.handle())).unwrap();
    assert_eq!(observe(&store).unwrap(), m);
    eprintln!(
        "crash_disk_full: 2 snapshot scenarios (create, install), each recovered without a reopen"
    );
}

#[test]
fn enospc_from_fsync_poisons_until_reopen() {
    let e = env();
    let log = Log::open(DIR, opts(e.ffs.handle(), true)).unwrap();
    for i in 1..=5 {
        log.append(&[entry(i)]).unwrap();
    }
    // Delayed allocation: the write was accepted, the fsync finds no room.
    e.faults
        .fail_nth(Op::Sync, 1, Fault::Enospc, Scope::Foreground);
    let err = log.append(&[entry(6)]).unwrap_err();
    assert_enospc(&err, "fsync on a full disk");
    e.faults.clear();
    // The kernel may have dropped the pages: the log refuses to go on.
    assert!(matches!(
        log.append(&[entry(6)]),
        Err(Error::Poisoned { .. })
    ));
    check_power_cut(&e.sim, true, 1, 5, "failed fsync");
    drop(log);
    let log = Log::open(DIR, opts(e.ffs.handle(), true)).unwrap();
    assert!(log.last_index() >= 5);
    check_log(
        &log,
        1,
        5.max(log.last_index()).min(log.last_index()),
        "reopened",
    );
    let next = log.last_index() + 1;
    log.append(&[entry(next)]).unwrap();
    eprintln!("crash_disk_full: ENOSPC from fsync poisons the log; it works again after a reopen");
}

/// Builds a clean store with sealed segments, a state blob and a snapshot.
fn clean_store(sim: &SimFs, preallocate: bool) -> StoreState {
    let store = RaftLogStore::open_with(DIR, opts(sim.handle(), preallocate)).unwrap();
    let mut m = StoreState::new();
    let mut ops = Vec::new();
    for i in 1..=40u64 {
        ops.push(StoreOp::Persist {
            entries: vec![raft_entry(i, 1 + i / 10, vec![i as u8; 150])],
            hs: None,
            cs: None,
        });
    }
    ops.push(StoreOp::CommitTo(30));
    let (cs, data) = snapshot_content(25, 3);
    ops.push(StoreOp::CreateSnapshot {
        index: 25,
        cs,
        data,
    });
    ops.push(StoreOp::Compact(20));
    for op in &ops {
        op.run(&store).unwrap();
        m.apply(op);
    }
    assert_eq!(observe(&store).unwrap().first, 20);
    m
}

#[test]
fn opening_a_clean_log_needs_no_space() {
    let mut cases = 0;
    for preallocate in [false, true] {
        let sim = SimFs::new();
        let m = clean_store(&sim, preallocate);
        // No prepared segment left over: the preparer must make one.
        for p in sim.paths() {
            if p.extension().is_some_and(|e| e == "prep") {
                sim.delete(&p);
            }
        }
        let (ffs, faults) = FaultFs::new(sim.handle());
        faults.set_disk_full(DiskFull::Strict);
        // Every creation, allocation and write fails, on every thread.
        for op in [Op::Write, Op::Create, Op::Allocate] {
            faults.fail_from(op, 1, Fault::Enospc, Scope::Any);
        }
        let store = RaftLogStore::open_with(DIR, opts(ffs.handle(), preallocate))
            .unwrap_or_else(|e| panic!("open on a full disk (preallocate {preallocate}): {e}"));
        assert_eq!(observe(&store).unwrap(), m);
        // The open itself wrote nothing.
        assert_eq!(faults.count(Op::Write, Scope::Foreground), 0);
        if preallocate {
            // The preparer tried to make a segment and failed, in the
            // background, without failing the open.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while faults.count(Op::Create, Scope::Background) == 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the preparer never ran"
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert!(faults.log().iter().any(|l| l.contains("raftwal-prepare")));
        }
        // Writes fail cleanly while the disk is full...
        let probe = probe_op(&m);
        assert_enospc(&probe.run(&store).unwrap_err(), "write on a full disk");
        assert_eq!(observe(&store).unwrap(), m);
        // ...and work once space returns.
        faults.clear();
        faults.set_disk_full(DiskFull::No);
        probe.run(&store).unwrap();
        let mut want = m.clone();
        want.apply(&probe);
        assert_eq!(observe(&store).unwrap(), want);
        cases += 1;
    }
    // A log whose tail must be cut opens on a full disk too: truncating
    // needs no space.
    let sim = SimFs::new();
    let m = clean_store(&sim, false);
    let seg = sim
        .paths()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .max()
        .unwrap();
    let mut bytes = sim.read(&seg).unwrap();
    bytes.extend_from_slice(&[2, 90, 0, 0, 0, 9, 9, 9, 9, 1, 2, 3]);
    sim.put(&seg, bytes);
    let (ffs, faults) = FaultFs::new(sim.handle());
    faults.set_disk_full(DiskFull::Strict);
    for op in [Op::Write, Op::Create, Op::Allocate] {
        faults.fail_from(op, 1, Fault::Enospc, Scope::Any);
    }
    let store = RaftLogStore::open_with(DIR, opts(ffs.handle(), false))
        .unwrap_or_else(|e| panic!("open with a torn tail on a full disk: {e}"));
    assert_eq!(observe(&store).unwrap(), m);
    cases += 1;
    eprintln!("crash_disk_full: {cases} opens on a full disk (clean with and without preallocation, torn tail) succeeded");
}
