//! I/O errors: an error injected into each kind of file operation (write,
//! a write that stops part-way, sync, create, rename, remove, set_len,
//! allocate, directory sync, read) must make the call return a clear error
//! (`Error::Io` naming the operation and the file, or `Error::Poisoned`),
//! leave memory matching the disk, poison the log after a failed fsync, and
//! lose nothing acknowledged across a reopen, with or without a power cut.
//!
//! The sweep injects an error at every operation of every kind that a
//! random `RaftLogStore` workload makes, one case per operation, and prints
//! `crash_io_errors: N injected errors ...` (see it with `--nocapture`).
//! Each workload, and every other test here, runs under each preallocation
//! mode: `None` (files grow), `Allocate` and the default `ZeroFill` (a new
//! log's first segment zero-filled at open, later ones by the background
//! preparer), except where a case is about one mode's behaviour.

mod common;
#[path = "common/fs_sim.rs"]
mod fs_sim;

#[path = "common/crash_model.rs"]
mod crash_model;

use std::collections::BTreeMap;
use std::sync::Arc;

use crash_model::{expect_one_of, observe, workload, Shape, StoreOp, StoreState};
use fs_sim::{Fault, FaultFs, Faults, Op, Rng, Scope, SimFs};
use raftwal::fs::FileSystem;
use raftwal::{Entry, Error, Log, Options, Preallocate, RaftLogStore, RecoveryMode};

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

/// A clear error: an I/O error that names what failed and where, or the
/// poisoned log (which names the failure that poisoned it).
fn assert_clear(e: &Error, context: &str) {
    match e {
        Error::Io { op, path, .. } => {
            assert!(
                !op.is_empty() && !path.as_os_str().is_empty(),
                "{context}: {e}"
            );
            assert!(
                e.to_string().contains(&*path.to_string_lossy()),
                "{context}: {e}"
            );
        }
        Error::Poisoned { cause } => assert!(!cause.is_empty(), "{context}: {e}"),
        other => panic!("{context}: expected an I/O error or a poisoned log, got {other:?}"),
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct KindStats {
    /// Cases run (one injected error each).
    cases: u64,
    /// Calls that returned the error.
    failed_calls: u64,
    /// Errors the log absorbed (a fallback, a background retry, a removal
    /// left for the next open): the call succeeded.
    absorbed: u64,
    /// Failures after which the same call succeeded without a reopen.
    retried_ok: u64,
    /// Failures that poisoned the store until a reopen.
    poisoned: u64,
    /// Failures of the first open.
    open_failed: u64,
}

/// Runs `ops[from..]` on `store`, all of which must succeed.
fn run_rest(store: &RaftLogStore, ops: &[StoreOp], from: usize, ctx: &str) {
    for (k, op) in ops.iter().enumerate().skip(from) {
        op.run(store)
            .unwrap_or_else(|e| panic!("{ctx}: op {k} {op:?} failed after recovery: {e}"));
    }
}

fn open_store(fs: Arc<dyn FileSystem>, preallocate: Preallocate) -> Result<RaftLogStore, Error> {
    RaftLogStore::open_with(DIR, opts(fs, preallocate))
}

/// One case: the workload with an error injected at the `n`-th foreground
/// operation of kind `kind`.
struct Workload<'a> {
    seed: u64,
    ops: &'a [StoreOp],
    states: &'a [StoreState],
    preallocate: Preallocate,
}

fn one_case(w: &Workload<'_>, kind: Op, n: u64, fault: Fault, rng: &mut Rng, st: &mut KindStats) {
    let (seed, ops, states, preallocate) = (w.seed, w.ops, w.states, w.preallocate);
    let ctx = format!("seed {seed} {kind:?} #{n} {fault:?} preallocate {preallocate:?}");
    let end = states.len() - 1;
    let sim = SimFs::new();
    let (ffs, faults) = FaultFs::new(sim.handle());
    faults.fail_nth(kind, n, fault, Scope::Foreground);
    st.cases += 1;
    let store = match open_store(ffs.handle(), preallocate) {
        Ok(s) => s,
        Err(e) => {
            assert!(faults.injected() > 0, "{ctx}: open failed by itself: {e}");
            assert_clear(&e, &ctx);
            st.open_failed += 1;
            faults.clear();
            let store = open_store(ffs.handle(), preallocate)
                .unwrap_or_else(|e| panic!("{ctx}: reopen after a failed open: {e}"));
            expect_one_of(&observe(&store).unwrap(), &[&states[0]], &ctx).unwrap();
            run_rest(&store, ops, 0, &ctx);
            expect_one_of(&observe(&store).unwrap(), &[&states[end]], &ctx).unwrap();
            return;
        }
    };
    let mut k = 0;
    let mut failure = None;
    while k < ops.len() {
        match ops[k].run(&store) {
            Ok(()) => k += 1,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let Some(err) = failure else {
        // The error was absorbed (or never reached): the workload is whole.
        if faults.injected() > 0 {
            st.absorbed += 1;
        }
        expect_one_of(&observe(&store).unwrap(), &[&states[end]], &ctx).unwrap();
        drop(store);
        faults.clear();
        let store = open_store(ffs.handle(), preallocate).unwrap();
        expect_one_of(&observe(&store).unwrap(), &[&states[end]], &ctx).unwrap();
        drop(store);
        let img = sim.cut_power(rng);
        let store = open_store(img.handle(), preallocate).unwrap();
        expect_one_of(
            &observe(&store).unwrap(),
            &[&states[end]],
            &format!("{ctx}: after a power cut"),
        )
        .unwrap();
        return;
    };
    let ctx = format!("{ctx}: op {k} {:?} failed with {err}", ops[k]);
    assert!(
        faults.injected() > 0,
        "{ctx}: failed without an injected error"
    );
    assert_clear(&err, &ctx);
    st.failed_calls += 1;
    let mem = observe(&store).unwrap_or_else(|e| panic!("{ctx}: reads fail after the error: {e}"));
    faults.clear();
    let retry = ops[k].run(&store);
    let poisoned = match &retry {
        Ok(()) => {
            // A call that failed changed nothing: retrying it is safe.
            expect_one_of(
                &mem,
                &[&states[k]],
                &format!("{ctx}: memory after a failed call"),
            )
            .unwrap();
            st.retried_ok += 1;
            run_rest(&store, ops, k + 1, &ctx);
            expect_one_of(&observe(&store).unwrap(), &[&states[end]], &ctx).unwrap();
            false
        }
        Err(Error::Poisoned { .. }) => {
            st.poisoned += 1;
            // Every write is refused until the reopen.
            assert!(
                matches!(ops[k].run(&store), Err(Error::Poisoned { .. })),
                "{ctx}: a poisoned store accepted a write"
            );
            true
        }
        Err(e) => panic!("{ctx}: the retry failed with {e}"),
    };
    drop(store);
    // A power cut now: nothing acknowledged may be lost.
    let img = sim.cut_power(rng);
    let after_cut = observe(
        &open_store(img.handle(), preallocate)
            .unwrap_or_else(|e| panic!("{ctx}: reopen after a power cut: {e}")),
    )
    .unwrap();
    if poisoned {
        let allowed = [&states[k], &states[k + 1]];
        expect_one_of(&after_cut, &allowed, &format!("{ctx}: after a power cut")).unwrap();
    } else {
        expect_one_of(
            &after_cut,
            &[&states[end]],
            &format!("{ctx}: after a power cut"),
        )
        .unwrap();
    }
    // A clean reopen: what memory showed is what the disk holds.
    let store = open_store(ffs.handle(), preallocate)
        .unwrap_or_else(|e| panic!("{ctx}: clean reopen: {e}"));
    let got = observe(&store).unwrap();
    if poisoned {
        expect_one_of(
            &got,
            &[&states[k], &states[k + 1]],
            &format!("{ctx}: clean reopen"),
        )
        .unwrap();
        // The log works again after the reopen.
        let from = if got == states[k] { k } else { k + 1 };
        run_rest(&store, ops, from, &ctx);
    }
    expect_one_of(&observe(&store).unwrap(), &[&states[end]], &ctx).unwrap();
    drop(store);
    let store = open_store(ffs.handle(), preallocate).unwrap();
    expect_one_of(
        &observe(&store).unwrap(),
        &[&states[end]],
        &format!("{ctx}: final reopen"),
    )
    .unwrap();
}

/// Counts the foreground operations of each kind the workload makes.
fn dry_run(ops: &[StoreOp], preallocate: Preallocate) -> Faults {
    let sim = SimFs::new();
    let (ffs, faults) = FaultFs::new(sim.handle());
    let store = open_store(ffs.handle(), preallocate).unwrap();
    run_rest(&store, ops, 0, "dry run");
    drop(store);
    faults
}

#[test]
fn an_error_at_every_operation_of_every_kind() {
    let shape = Shape {
        ops: 24,
        ..Shape::default()
    };
    let mut stats: BTreeMap<String, KindStats> = BTreeMap::new();
    let mut per_mode: BTreeMap<String, u64> = BTreeMap::new();
    let mut total = 0;
    for seed in 0..4u64 {
        let (ops, states) = workload(1000 + seed, shape);
        for preallocate in MODES {
            // Every workload in every mode. Only the caller's operations
            // are counted and failed (errors on the log's own threads are
            // the next test's); under `ZeroFill` they include the
            // zero-fill of a new log's first segment, done by the open.
            // Under `Allocate` and `ZeroFill` the count still varies from
            // run to run by whole segment preparations: a roll that finds
            // the background preparer's file not yet ready makes one on
            // the spot (create, allocate, sync). A case whose operation is
            // not reached runs whole and is checked as such: which
            // operations a run fails varies a little, what it checks does
            // not.
            let counts = dry_run(&ops, preallocate);
            let w = Workload {
                seed,
                ops: &ops,
                states: &states,
                preallocate,
            };
            let mut rng = Rng::new(seed);
            for kind in Op::MUTATING {
                let count = counts.count(kind, Scope::Foreground);
                for n in 1..=count {
                    let mut faults = vec![Fault::Eio];
                    if kind == Op::Write {
                        faults.push(Fault::PartialEio {
                            keep: rng.range(1, 64) as usize,
                        });
                    }
                    for fault in faults {
                        let name = match fault {
                            Fault::PartialEio { .. } => "partial write".to_string(),
                            _ => format!("{kind:?}").to_lowercase(),
                        };
                        let s = stats.entry(name).or_default();
                        one_case(&w, kind, n, fault, &mut rng, s);
                        total += 1;
                        *per_mode.entry(format!("{preallocate:?}")).or_default() += 1;
                    }
                }
            }
        }
    }
    let summary: Vec<String> = stats
        .iter()
        .map(|(k, s)| {
            format!(
                "{k}: {} ({} failed the call, {} retried without reopen, {} poisoned, {} absorbed, {} failed the open)",
                s.cases, s.failed_calls, s.retried_ok, s.poisoned, s.absorbed, s.open_failed
            )
        })
        .collect();
    let modes: Vec<String> = per_mode.iter().map(|(m, n)| format!("{m} {n}")).collect();
    eprintln!(
        "crash_io_errors: {total} injected errors, one per operation of 4 workloads in 3 preallocation modes ({}); {}",
        modes.join(", "),
        summary.join("; ")
    );
    for kind in [
        "write",
        "partial write",
        "sync",
        "create",
        "rename",
        "syncdir",
    ] {
        assert!(
            stats.get(kind).is_some_and(|s| s.failed_calls > 0),
            "no {kind} error reached a caller: {stats:?}"
        );
    }
    // Unlinks only ever remove superseded files (the remover's, a reset's,
    // a cut's): a failed one fails no call and poisons nothing; the next
    // open removes the file.
    let remove = stats.get("remove");
    assert!(
        remove.is_some_and(|s| s.cases > 0 && s.failed_calls == 0 && s.poisoned == 0),
        "a remove error reached a caller: {stats:?}"
    );
}

/// Errors in the log's background threads (the preparer, the sealers)
/// never fail a call: a segment that could not be prepared is created on
/// the spot, one that could not be sealed is scanned at the next open.
#[test]
fn background_errors_never_fail_a_call() {
    let (ops, states) = workload(77, Shape::default());
    let end = states.len() - 1;
    let mut cases = 0;
    for kind in Op::MUTATING {
        for preallocate in MODES {
            let sim = SimFs::new();
            let (ffs, faults) = FaultFs::new(sim.handle());
            faults.fail_from(kind, 1, Fault::Eio, Scope::Background);
            let ctx = format!("background {kind:?}, {preallocate:?}");
            let store = open_store(ffs.handle(), preallocate).unwrap();
            run_rest(&store, &ops, 0, &ctx);
            expect_one_of(&observe(&store).unwrap(), &[&states[end]], &ctx).unwrap();
            drop(store);
            let img = sim.cut_power(&mut Rng::new(cases));
            let store = open_store(img.handle(), preallocate).unwrap();
            expect_one_of(
                &observe(&store).unwrap(),
                &[&states[end]],
                &format!("{ctx}, power cut"),
            )
            .unwrap();
            drop(store);
            faults.clear();
            let store = open_store(ffs.handle(), preallocate).unwrap();
            expect_one_of(
                &observe(&store).unwrap(),
                &[&states[end]],
                &format!("{ctx}, reopen"),
            )
            .unwrap();
            cases += 1;
        }
    }
    eprintln!("crash_io_errors: {cases} background-thread error cases, no call failed");
}

fn entry(i: u64) -> Entry {
    Entry::new(i, 1, format!("entry {i}").into_bytes())
}

/// The contract of a failed `fdatasync`, operation by operation.
#[test]
fn a_failed_fsync_poisons_the_log() {
    for mode in MODES {
        let sim = SimFs::new();
        let (ffs, faults) = FaultFs::new(sim.handle());
        let log = Log::open(DIR, opts(ffs.handle(), mode)).unwrap();
        log.append(&[entry(1), entry(2)]).unwrap();
        // The append's own fsync (not one of the log's threads').
        faults.fail_nth(Op::Sync, 1, Fault::Eio, Scope::Foreground);
        let e = log.append(&[entry(3)]).unwrap_err();
        assert_clear(&e, &format!("{mode:?}: append with a failed fsync"));
        assert!(e.to_string().contains("fdatasync"), "{mode:?}: {e}");
        faults.clear();
        // Poisoned: every write and sync refuses, even with the disk healthy.
        let poisoned = |r: raftwal::Result<()>| matches!(r, Err(Error::Poisoned { .. }));
        assert!(poisoned(log.append(&[entry(4)])), "{mode:?}");
        assert!(poisoned(log.set_state(&b"s"[..])), "{mode:?}");
        assert!(poisoned(log.truncate_from_index(2)), "{mode:?}");
        assert!(poisoned(log.compact(2)), "{mode:?}");
        assert!(poisoned(log.reset(10, 1)), "{mode:?}");
        assert!(poisoned(log.sync()), "{mode:?}");
        // Reads still work.
        assert_eq!(log.get_entry(1).unwrap(), entry(1), "{mode:?}");
        drop(log);
        // After a power cut the acknowledged entries are there; entry 3 may
        // or may not be.
        for seed in 0..20 {
            let img = sim.cut_power(&mut Rng::new(seed));
            let log = Log::open(DIR, opts(img.handle(), mode)).unwrap();
            let last = log.last_index();
            assert!((2..=3).contains(&last), "{mode:?} seed {seed}: {last}");
            for i in 1..=last {
                assert_eq!(log.get_entry(i).unwrap(), entry(i), "{mode:?}");
            }
        }
        // A reopen clears the poison.
        let log = Log::open(DIR, opts(ffs.handle(), mode)).unwrap();
        assert_eq!(log.last_index(), 3, "{mode:?}");
        log.append(&[entry(4)]).unwrap();
    }
}

/// What each kind of error does to one call, with the exact expectation.
#[test]
fn each_kind_of_error_gives_a_clear_error() {
    struct Case {
        name: &'static str,
        kind: Op,
        fault: Fault,
        /// The modes it applies to.
        modes: &'static [Preallocate],
        /// The error's operation (`Error::Io::op`), or "poisoned".
        expect: &'static str,
        poisons: bool,
    }
    let cases = [
        Case {
            name: "append, write fails",
            kind: Op::Write,
            fault: Fault::Eio,
            modes: &MODES,
            expect: "write",
            poisons: false,
        },
        Case {
            name: "append, write stops part-way",
            kind: Op::Write,
            fault: Fault::PartialEio { keep: 20 },
            modes: &MODES,
            expect: "write",
            poisons: false,
        },
        Case {
            name: "append, fsync fails",
            kind: Op::Sync,
            fault: Fault::Eio,
            modes: &MODES,
            expect: "poisoned",
            poisons: true,
        },
        Case {
            // With preallocation the roll takes the file the preparer
            // made, and creates none.
            name: "roll, segment creation fails",
            kind: Op::Create,
            fault: Fault::Eio,
            modes: &[Preallocate::None],
            expect: "create segment",
            poisons: false,
        },
        Case {
            name: "roll, rename of the prepared segment fails",
            kind: Op::Rename,
            fault: Fault::Eio,
            modes: &[Preallocate::Allocate, Preallocate::ZeroFill],
            expect: "rename prepared segment",
            poisons: false,
        },
        Case {
            // A roll leaves the directory fsync to the sync round that
            // follows (here the append's own, under `Always`).
            name: "roll, the round's directory fsync fails",
            kind: Op::SyncDir,
            fault: Fault::Eio,
            modes: &MODES,
            expect: "poisoned",
            poisons: true,
        },
    ];
    for c in &cases {
        for &mode in c.modes {
            let name = format!("{} ({mode:?})", c.name);
            let sim = SimFs::new();
            let (ffs, faults) = FaultFs::new(sim.handle());
            let log = Log::open(DIR, opts(ffs.handle(), mode)).unwrap();
            // Fill the first segment so the next append rolls (180-byte
            // entries: 20 fill a 4 KiB segment), or write a few.
            let fill = if c.expect == "write" || c.kind == Op::Sync {
                3
            } else {
                20
            };
            let mut i = 1;
            while i <= fill {
                log.append(&[Entry::new(i, 1, vec![7u8; 180])]).unwrap();
                i += 1;
            }
            assert_eq!(log.segments().len(), 1, "{name}");
            if fill == 20 && mode != Preallocate::None {
                // Wait (bounded) for the preparer, so the roll takes the
                // prepared file. (Were it late, the roll would prepare
                // one on the spot and rename that.)
                wait_for_prepared(&log, &name);
            }
            let before = (log.first_index(), log.last_index());
            faults.fail_nth(c.kind, 1, c.fault, Scope::Foreground);
            let e = log.append(&[Entry::new(i, 1, vec![7u8; 180])]).unwrap_err();
            assert_clear(&e, &name);
            match (&e, c.expect) {
                (Error::Poisoned { .. }, "poisoned") => {}
                (Error::Io { op, .. }, want) => assert_eq!(*op, want, "{name}: {e}"),
                _ => panic!("{name}: expected {}, got {e}", c.expect),
            }
            faults.clear();
            let retry = log.append(&[Entry::new(i, 1, vec![7u8; 180])]);
            if c.poisons {
                assert!(
                    matches!(retry, Err(Error::Poisoned { .. })),
                    "{name}: {retry:?}"
                );
            } else {
                retry.unwrap_or_else(|e| panic!("{name}: retry failed: {e}"));
                assert_eq!(
                    (log.first_index(), log.last_index()),
                    (before.0, before.1 + 1),
                    "{name}"
                );
            }
            drop(log);
            // Strict recovery after the failure: nothing was left half-done.
            let strict =
                || opts(ffs.handle(), mode).recovery_mode(RecoveryMode::AbsoluteConsistency);
            let log =
                Log::open(DIR, strict()).unwrap_or_else(|e| panic!("{name}: strict reopen: {e}"));
            assert!(log.last_index() >= before.1, "{name}");
            for j in 1..=log.last_index() {
                assert_eq!(log.get_entry(j).unwrap().data.len(), 180, "{name}");
            }
            // Whatever the failure left behind (a prepared file with a
            // header, say) is no trouble for later rolls.
            let last = log.last_index();
            for j in last + 1..=last + 45 {
                log.append(&[Entry::new(j, 1, vec![7u8; 180])]).unwrap();
            }
            drop(log);
            let log = Log::open(DIR, strict())
                .unwrap_or_else(|e| panic!("{name}: strict reopen after more rolls: {e}"));
            assert_eq!(log.last_index(), last + 45, "{name}");
        }
    }
}

/// Waits (bounded) until `log`'s preparer has offered a file (it counts a
/// file in the step that offers it).
fn wait_for_prepared(log: &Log, context: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let s = log.stats();
        if s.segments_zero_filled + s.segments_allocated > 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{context}: the preparer made no file in 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// A failed read is an I/O error naming the file; it poisons nothing.
#[test]
fn a_failed_read_is_an_error_and_nothing_else() {
    for mode in MODES {
        let sim = SimFs::new();
        let (ffs, faults) = FaultFs::new(sim.handle());
        let log = Log::open(DIR, opts(ffs.handle(), mode)).unwrap();
        log.append(&[entry(1), entry(2)]).unwrap();
        faults.fail_nth(Op::Read, 1, Fault::Eio, Scope::Foreground);
        let e = log.get_entry(1).unwrap_err();
        assert!(
            matches!(
                &e,
                Error::Io {
                    op: "read entry",
                    ..
                }
            ),
            "{mode:?}: {e}"
        );
        faults.fail_nth(Op::Read, 1, Fault::Eio, Scope::Foreground);
        let e = log.entries(1, 3, None).unwrap_err();
        assert!(
            matches!(
                &e,
                Error::Io {
                    op: "read entries",
                    ..
                }
            ),
            "{mode:?}: {e}"
        );
        assert_eq!(log.get_entry(1).unwrap(), entry(1), "{mode:?}");
        log.append(&[entry(3)]).unwrap();
        drop(log);
        // An error while recovery reads fails the open, and changes
        // nothing.
        faults.fail_nth(Op::Read, 1, Fault::Eio, Scope::Foreground);
        let e = Log::open(DIR, opts(ffs.handle(), mode)).unwrap_err();
        assert_clear(&e, &format!("{mode:?}: open with a failed read"));
        let log = Log::open(DIR, opts(ffs.handle(), mode)).unwrap();
        assert_eq!(log.last_index(), 3, "{mode:?}");
    }
}

/// A write that fails and whose roll-back (truncation) fails too poisons
/// the log: the file's end is unknown.
#[test]
fn a_failed_rollback_poisons_the_log() {
    for mode in MODES {
        let sim = SimFs::new();
        let (ffs, faults) = FaultFs::new(sim.handle());
        let log = Log::open(DIR, opts(ffs.handle(), mode)).unwrap();
        log.append(&[entry(1)]).unwrap();
        faults.fail_nth(
            Op::Write,
            1,
            Fault::PartialEio { keep: 5 },
            Scope::Foreground,
        );
        faults.fail_nth(Op::SetLen, 1, Fault::Eio, Scope::Foreground);
        let e = log.append(&[entry(2)]).unwrap_err();
        assert_clear(&e, &format!("{mode:?}: write and roll-back fail"));
        faults.clear();
        assert!(
            matches!(log.append(&[entry(2)]), Err(Error::Poisoned { .. })),
            "{mode:?}"
        );
        drop(log);
        // The torn frame is a torn tail for recovery.
        let log = Log::open(DIR, opts(ffs.handle(), mode)).unwrap();
        assert_eq!(log.last_index(), 1, "{mode:?}");
        assert_eq!(log.recovery_report().repairs.len(), 1, "{mode:?}");
        log.append(&[entry(2)]).unwrap();
    }
}

/// A failed append in a preallocated segment cuts what reached the file
/// and keeps the segment's reserved space (the file keeps its size), so
/// later appends need no new space; nothing is lost.
#[test]
fn a_failed_write_keeps_the_segment_preallocated() {
    for mode in [Preallocate::Allocate, Preallocate::ZeroFill] {
        let sim = SimFs::new();
        let (ffs, faults) = FaultFs::new(sim.handle());
        let log = Log::open(DIR, opts(ffs.handle(), mode)).unwrap();
        log.append(&[entry(1)]).unwrap();
        let seg = sim.segments().remove(0);
        let size = sim.read(&seg).unwrap().len();
        assert_eq!(size, 4096, "{mode:?}: a preallocated segment");
        faults.fail_nth(
            Op::Write,
            1,
            Fault::PartialEio { keep: 5 },
            Scope::Foreground,
        );
        let e = log.append(&[entry(2)]).unwrap_err();
        assert_clear(&e, &format!("{mode:?}: a failed write"));
        faults.clear();
        assert_eq!(
            sim.read(&seg).unwrap().len(),
            size,
            "{mode:?}: still reserved"
        );
        log.append(&[entry(2), entry(3)]).unwrap();
        drop(log);
        let log = Log::open(DIR, opts(ffs.handle(), mode)).unwrap();
        assert!(log.recovery_report().repairs.is_empty(), "{mode:?}");
        assert_eq!(log.last_index(), 3, "{mode:?}");
        for i in 1..=3 {
            assert_eq!(log.get_entry(i).unwrap().data, entry(i).data, "{mode:?}");
        }
    }
}

/// Recovery that must repair (truncate a torn tail) and cannot: the open
/// fails with an I/O error and the next open repairs.
#[test]
fn a_failed_repair_fails_the_open() {
    for mode in MODES {
        let sim = SimFs::new();
        {
            let log = Log::open(DIR, opts(sim.handle(), mode)).unwrap();
            log.append(&[entry(1), entry(2)]).unwrap();
        }
        // Tear the tail by hand: a partial frame after entry 2.
        let seg = sim.segments().remove(0);
        let mut bytes = sim.read(&seg).unwrap();
        common::tear_after_data(&mut bytes, &seg, &[2, 50, 0, 0, 0, 1, 2]);
        sim.put(&seg, bytes);
        for kind in [Op::SetLen, Op::Sync] {
            let (ffs, faults) = FaultFs::new(sim.handle());
            faults.fail_nth(kind, 1, Fault::Eio, Scope::Foreground);
            let e = Log::open(DIR, opts(ffs.handle(), mode)).unwrap_err();
            assert_clear(&e, &format!("{mode:?}: repair with a failed {kind:?}"));
        }
        let log = Log::open(DIR, opts(sim.handle(), mode)).unwrap();
        assert_eq!(log.last_index(), 2, "{mode:?}");
    }
}

/// Found by fuzzing (`fuzz/fuzz_targets/ops_model.rs`): a write whose
/// fsync failed stays in the page cache; the next process read it back and
/// built on it (rolled to a new segment, acknowledged writes there) without
/// ever making it durable, so a power cut then tore the tail of what had
/// become an earlier segment and the log no longer opened. Recovery now
/// syncs the segment that stays active, and the directory, before anything
/// else.
#[test]
fn a_restart_makes_what_it_builds_on_durable() {
    let entry = |i: u64| Entry::new(i, 1, vec![i as u8; 150]);
    for mode in MODES {
        // How many entries fill the first segment: the next one rolls.
        let n = {
            let log = Log::open(DIR, opts(SimFs::new().handle(), mode)).unwrap();
            let mut n = 0;
            while log.segments().len() == 1 {
                n += 1;
                log.append(&[entry(n)]).unwrap();
            }
            n - 1
        };
        for seed in 0..20 {
            let ctx = format!("{mode:?} seed {seed}");
            let sim = SimFs::new();
            let (ffs, faults) = FaultFs::new(sim.handle());
            let log = Log::open(DIR, opts(ffs.handle(), mode)).unwrap();
            // The first segment, its last write's fsync failing (the
            // append's own: the preparer's are left alone).
            for i in 1..n {
                log.append(&[entry(i)]).unwrap();
            }
            faults.fail_nth(Op::Sync, 1, Fault::Eio, Scope::Foreground);
            assert!(log.append(&[entry(n)]).is_err(), "{ctx}");
            drop(log);
            // A restart (the page cache survives): the write is read back,
            // and the log goes on into a new segment.
            faults.clear();
            let log = Log::open(DIR, opts(ffs.handle(), mode)).unwrap();
            assert_eq!(log.last_index(), n, "{ctx}");
            if seed % 2 == 0 {
                // It rolls into a new segment and acknowledges writes there.
                for i in n + 1..=n + 5 {
                    log.append(&[entry(i)]).unwrap();
                }
                assert_eq!(log.segments().len(), 2, "{ctx}");
            } else {
                // It starts a reset segment after it, and the power goes
                // off before the old segment is removed (the remover's
                // unlink fails; the reset does not).
                faults.fail_nth(Op::Remove, 1, Fault::Eio, Scope::Background);
                log.reset(n + 100, 2).unwrap();
            }
            drop(log);
            // A power cut: the log opens, and everything the restarted log
            // acknowledged is there, and so is what it built on.
            let img = sim.cut_power(&mut Rng::new(seed));
            let log = Log::open(DIR, opts(img.handle(), mode))
                .unwrap_or_else(|e| panic!("{ctx}: reopen after the power cut: {e}"));
            if seed % 2 == 0 {
                assert_eq!(log.last_index(), n + 5, "{ctx}");
                for i in 1..=n + 5 {
                    assert_eq!(log.get_entry(i).unwrap(), entry(i), "{ctx}");
                }
            } else {
                assert_eq!(
                    (log.first_index(), log.last_index()),
                    (n + 100, n + 99),
                    "{ctx}"
                );
            }
        }
    }
}
