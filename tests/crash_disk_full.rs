//! Disk full: `ENOSPC` during an append, a segment creation, a compaction,
//! a snapshot, and an fsync. Each returns an error, loses nothing
//! acknowledged (checked after a power cut too), and the log works again
//! once space returns: without a reopen, except after a failed fsync, which
//! poisons the log until it is reopened. Opening a clean log needs no free
//! space at all (every write, creation and allocation fails during the
//! open), and neither does opening one whose torn tail must be cut. Each
//! scenario runs under every preallocation mode it applies to: `None`
//! (files grow), `Allocate` and the default `ZeroFill` (a new log's first
//! segment zero-filled at open, later ones by the background preparer).
//!
//! Prints `crash_disk_full: ...` with the scenarios run (see it with
//! `--nocapture`).

mod common;
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

/// Every preallocation mode.
const MODES: [Preallocate; 3] = [
    Preallocate::None,
    Preallocate::Allocate,
    Preallocate::ZeroFill,
];

fn opts(fs: Arc<dyn FileSystem>, preallocate: Preallocate) -> Options {
    Options::default()
        .segment_size(4096)
        .preallocate(preallocate)
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
fn check_power_cut(sim: &SimFs, preallocate: Preallocate, first: u64, last: u64, context: &str) {
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
    for mode in MODES {
        // A write that stops part-way for want of space is rolled back, in
        // every mode. Without preallocation every append grows the file, so
        // on a full disk the first one fails the same way.
        let mut faults = vec![Some(Fault::PartialEnospc { keep: 30 })];
        if mode == Preallocate::None {
            faults.insert(0, None);
        }
        for fault in faults {
            let ctx = format!("{mode:?} {fault:?}");
            let e = env();
            let log = Log::open(DIR, opts(e.ffs.handle(), mode)).unwrap();
            for i in 1..=10 {
                log.append(&[entry(i)]).unwrap();
            }
            match fault {
                None => e.faults.set_disk_full(DiskFull::Realistic),
                Some(f) => e.faults.fail_from(Op::Write, 1, f, Scope::Foreground),
            }
            let err = log.append(&[entry(11)]).unwrap_err();
            assert_enospc(&err, &format!("{ctx}: append on a full disk"));
            check_log(&log, 1, 10, &format!("{ctx}: after ENOSPC"));
            // Still full: still an error, still nothing lost, not poisoned.
            assert_enospc(
                &log.append(&[entry(11)]).unwrap_err(),
                &format!("{ctx}: second append"),
            );
            check_power_cut(&e.sim, mode, 1, 10, &format!("{ctx}: full disk"));
            // Space returns: the same log works, no reopen needed.
            e.faults.set_disk_full(DiskFull::No);
            e.faults.clear();
            log.append(&[entry(11)]).unwrap();
            check_log(&log, 1, 11, &format!("{ctx}: after space returned"));
            drop(log);
            let log = Log::open(DIR, opts(e.ffs.handle(), mode)).unwrap();
            check_log(&log, 1, 11, &format!("{ctx}: reopened"));
            assert!(log.recovery_report().repairs.is_empty(), "{ctx}");
            scenarios += 1;
        }
        if mode == Preallocate::None {
            continue;
        }
        // With preallocation appends land in allocated (or zero-filled)
        // space and go on working on a full disk until a new segment is
        // needed.
        let e = env();
        let log = Log::open(DIR, opts(e.ffs.handle(), mode)).unwrap();
        log.append(&[entry(1)]).unwrap();
        e.faults.set_disk_full(DiskFull::Realistic);
        let (last, err) = append_until_error(&log, 2, 200);
        assert!(
            last >= 20,
            "{mode:?}: appends into preallocated space failed early at {last}"
        );
        assert_enospc(&err, &format!("{mode:?}: roll on a full disk"));
        check_log(&log, 1, last, &format!("{mode:?}: after ENOSPC"));
        check_power_cut(&e.sim, mode, 1, last, &format!("{mode:?}: full disk"));
        e.faults.set_disk_full(DiskFull::No);
        log.append(&[entry(last + 1)]).unwrap();
        check_log(
            &log,
            1,
            last + 1,
            &format!("{mode:?}: after space returned"),
        );
        scenarios += 1;
    }
    eprintln!("crash_disk_full: {scenarios} append scenarios in 3 preallocation modes, each recovered without a reopen");
}

#[test]
fn enospc_during_segment_creation() {
    for mode in MODES {
        let e = env();
        let log = Log::open(DIR, opts(e.ffs.handle(), mode)).unwrap();
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
            "{mode:?}: {err}"
        );
        assert_enospc(&err, &format!("{mode:?}: segment creation on a full disk"));
        assert!(log.segments().len() <= 2, "{mode:?}");
        check_log(&log, 1, last, &format!("{mode:?}: after a failed roll"));
        check_power_cut(&e.sim, mode, 1, last, &format!("{mode:?}: failed roll"));
        e.faults.clear();
        log.append(&[entry(last + 1)]).unwrap();
        check_log(
            &log,
            1,
            last + 1,
            &format!("{mode:?}: after space returned"),
        );
        drop(log);
        let log = Log::open(DIR, opts(e.ffs.handle(), mode)).unwrap();
        check_log(&log, 1, last + 1, &format!("{mode:?}: reopened"));
    }
    eprintln!("crash_disk_full: 3 segment-creation scenarios (one per preallocation mode), each recovered without a reopen");
}

#[test]
fn enospc_during_compaction() {
    // Without preallocation the compaction marker cannot be written.
    let e = env();
    let log = Log::open(DIR, opts(e.ffs.handle(), Preallocate::None)).unwrap();
    for i in 1..=100 {
        log.append(&[entry(i)]).unwrap();
    }
    assert!(log.segments().len() >= 3);
    e.faults.set_disk_full(DiskFull::Realistic);
    let err = log.compact(60).unwrap_err();
    assert_enospc(&err, "compaction on a full disk");
    check_log(&log, 1, 100, "after a failed compaction");
    check_power_cut(&e.sim, Preallocate::None, 1, 100, "failed compaction");
    e.faults.set_disk_full(DiskFull::No);
    log.compact(60).unwrap();
    check_log(&log, 60, 100, "after space returned");
    drop(log);
    let log = Log::open(DIR, opts(e.ffs.handle(), Preallocate::None)).unwrap();
    check_log(&log, 60, 100, "reopened");
    assert_eq!(log.term(59).unwrap(), entry(59).term);
    drop(log);

    // With preallocation (allocated or zero-filled) the marker lands in
    // the active segment's unused space: compaction works on a full disk,
    // and gives space back.
    for mode in [Preallocate::Allocate, Preallocate::ZeroFill] {
        let e = env();
        let log = Log::open(DIR, opts(e.ffs.handle(), mode)).unwrap();
        for i in 1..=100 {
            log.append(&[entry(i)]).unwrap();
        }
        let segments = log.segments().len();
        e.faults.set_disk_full(DiskFull::Realistic);
        log.compact(60).unwrap();
        assert!(log.segments().len() < segments, "{mode:?}");
        let ctx = format!("{mode:?}: compaction on a full disk");
        check_log(&log, 60, 100, &ctx);
        check_power_cut(&e.sim, mode, 60, 100, &ctx);
    }
    eprintln!(
        "crash_disk_full: 3 compaction scenarios (an error without preallocation, success with Allocate and ZeroFill)"
    );
}

#[test]
fn enospc_during_snapshots() {
    for mode in MODES {
        let e = env();
        let store = RaftLogStore::open_with(DIR, opts(e.ffs.handle(), mode)).unwrap();
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
            let ctx = format!("{mode:?} {op:?}");
            e.faults.set_disk_full(DiskFull::Realistic);
            let err = op.run(&store).unwrap_err();
            assert_enospc(&err, &format!("{ctx} on a full disk"));
            assert_eq!(
                observe(&store).unwrap(),
                m,
                "{ctx}: a failed call changed the store"
            );
            // After a power cut: as before the call.
            let img = e.sim.cut_power(&mut Rng::new(1));
            let s2 = RaftLogStore::open_with(DIR, opts(img.handle(), mode)).unwrap();
            assert_eq!(observe(&s2).unwrap(), m, "{ctx}: after a power cut");
            drop(s2);
            e.faults.set_disk_full(DiskFull::No);
            op.run(&store).unwrap();
            m.apply(op);
            assert_eq!(observe(&store).unwrap(), m, "{ctx}");
        }
        drop(store);
        let store = RaftLogStore::open_with(DIR, opts(e.ffs.handle(), mode)).unwrap();
        assert_eq!(observe(&store).unwrap(), m, "{mode:?}: reopened");
    }
    eprintln!(
        "crash_disk_full: 6 snapshot scenarios (create, install; in 3 preallocation modes), each recovered without a reopen"
    );
}

#[test]
fn enospc_from_fsync_poisons_until_reopen() {
    for mode in MODES {
        let e = env();
        let log = Log::open(DIR, opts(e.ffs.handle(), mode)).unwrap();
        for i in 1..=5 {
            log.append(&[entry(i)]).unwrap();
        }
        // Delayed allocation: the write was accepted, the fsync finds no
        // room.
        e.faults
            .fail_nth(Op::Sync, 1, Fault::Enospc, Scope::Foreground);
        let err = log.append(&[entry(6)]).unwrap_err();
        assert_enospc(&err, &format!("{mode:?}: fsync on a full disk"));
        e.faults.clear();
        // The kernel may have dropped the pages: the log refuses to go on.
        assert!(
            matches!(log.append(&[entry(6)]), Err(Error::Poisoned { .. })),
            "{mode:?}"
        );
        check_power_cut(&e.sim, mode, 1, 5, &format!("{mode:?}: failed fsync"));
        drop(log);
        // Entry 6 may be there (its write reached the page cache).
        let log = Log::open(DIR, opts(e.ffs.handle(), mode)).unwrap();
        assert!((5..=6).contains(&log.last_index()), "{mode:?}");
        check_log(&log, 1, log.last_index(), &format!("{mode:?}: reopened"));
        let next = log.last_index() + 1;
        log.append(&[entry(next)]).unwrap();
    }
    eprintln!("crash_disk_full: ENOSPC from fsync poisons the log (in 3 preallocation modes); it works again after a reopen");
}

/// Builds a clean store with sealed segments, a state blob and a snapshot.
fn clean_store(sim: &SimFs, preallocate: Preallocate) -> StoreState {
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

/// A file system over `sim` on which every creation, allocation and write
/// fails with `ENOSPC`, on every thread.
fn full_disk(sim: &SimFs) -> (FaultFs, Faults) {
    let (ffs, faults) = FaultFs::new(sim.handle());
    faults.set_disk_full(DiskFull::Strict);
    for op in [Op::Write, Op::Create, Op::Allocate] {
        faults.fail_from(op, 1, Fault::Enospc, Scope::Any);
    }
    (ffs, faults)
}

#[test]
fn opening_a_clean_log_needs_no_space() {
    let mut cases = 0;
    for mode in MODES {
        let sim = SimFs::new();
        let m = clean_store(&sim, mode);
        // No prepared segment left over: the preparer must make one.
        for p in sim.paths() {
            if p.extension().is_some_and(|e| e == "prep") {
                sim.delete(&p);
            }
        }
        let (ffs, faults) = full_disk(&sim);
        let store = RaftLogStore::open_with(DIR, opts(ffs.handle(), mode))
            .unwrap_or_else(|e| panic!("open on a full disk ({mode:?}): {e}"));
        assert_eq!(observe(&store).unwrap(), m, "{mode:?}");
        // The open itself wrote nothing.
        assert_eq!(faults.count(Op::Write, Scope::Foreground), 0, "{mode:?}");
        if mode != Preallocate::None {
            // The preparer tried to make a segment and failed, in the
            // background, without failing the open.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while faults.count(Op::Create, Scope::Background) == 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{mode:?}: the preparer never ran"
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert!(
                faults.log().iter().any(|l| l.contains("raftwal-prepare")),
                "{mode:?}"
            );
        }
        // Writes fail cleanly while the disk is full...
        let probe = probe_op(&m);
        assert_enospc(
            &probe.run(&store).unwrap_err(),
            &format!("{mode:?}: write on a full disk"),
        );
        assert_eq!(observe(&store).unwrap(), m, "{mode:?}");
        // ...and work once space returns.
        faults.clear();
        faults.set_disk_full(DiskFull::No);
        probe.run(&store).unwrap();
        let mut want = m.clone();
        want.apply(&probe);
        assert_eq!(observe(&store).unwrap(), want, "{mode:?}");
        cases += 1;
    }
    // A log whose tail must be cut opens on a full disk too: truncating
    // needs no space (and giving a preallocated segment's cut tail back
    // as unused space is not needed to open).
    for mode in MODES {
        let sim = SimFs::new();
        let m = clean_store(&sim, mode);
        let seg = sim.segments().pop().unwrap();
        let mut bytes = sim.read(&seg).unwrap();
        let end = common::data_end_in(&bytes, &seg);
        common::tear_after_data(&mut bytes, &seg, &[2, 90, 0, 0, 0, 9, 9, 9, 9, 1, 2, 3]);
        sim.put(&seg, bytes);
        let (ffs, _faults) = full_disk(&sim);
        let store = RaftLogStore::open_with(DIR, opts(ffs.handle(), mode))
            .unwrap_or_else(|e| panic!("open with a torn tail on a full disk ({mode:?}): {e}"));
        assert_eq!(observe(&store).unwrap(), m, "{mode:?}");
        // The torn frame is gone (`data_end_in` finds nothing but zeros
        // after the data).
        let after = sim.read(&seg).unwrap();
        assert_eq!(common::data_end_in(&after, &seg), end, "{mode:?}");
        cases += 1;
    }
    eprintln!("crash_disk_full: {cases} opens on a full disk (clean, and with a torn tail, in 3 preallocation modes) succeeded");
}
