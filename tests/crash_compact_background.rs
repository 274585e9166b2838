//! `compact` unlinks the segments below the new first index on a background
//! thread, after its marker is durable. A crash before those unlinks (or
//! before the directory fsync that makes them durable) loses nothing: the
//! next open removes the superseded files. A failed unlink or directory
//! fsync there fails no call and does not poison the log.

#[path = "common/fs_sim.rs"]
mod fs_sim;

use std::path::PathBuf;
use std::sync::Arc;

use fs_sim::{Fault, FaultFs, Op, Rng, Scope, SimFs};
use raftwal::fs::FileSystem;
use raftwal::{Entry, Log, Options, Preallocate};

const DIR: &str = "/sim/log";
const AT: u64 = 120;
const LAST: u64 = 200;

fn opts(fs: Arc<dyn FileSystem>) -> Options {
    Options::default()
        .segment_size(4096)
        .preallocate(Preallocate::None)
        .file_system(fs)
}

fn entry(i: u64) -> Entry {
    Entry::new(i, 1 + i / 50, vec![(i % 251) as u8; 100 + (i % 7) as usize])
}

/// Entries `1..=LAST` in `log`; returns the segment files wholly below
/// `AT`, which `compact(AT)` removes.
fn fill(log: &Log) -> Vec<PathBuf> {
    for i in 1..=LAST {
        log.append(&[entry(i)]).unwrap();
    }
    let doomed: Vec<PathBuf> = log
        .segments()
        .into_iter()
        .filter(|(_, first, n)| first + n <= AT)
        .map(|(p, _, _)| p)
        .collect();
    assert!(doomed.len() >= 2, "{:?}", log.segments());
    doomed
}

fn check(log: &Log, last: u64, context: &str) {
    assert_eq!(
        (log.first_index(), log.last_index()),
        (AT, last),
        "{context}"
    );
    assert_eq!(log.term(AT - 1).unwrap(), entry(AT - 1).term, "{context}");
    for i in AT..=last {
        assert_eq!(log.get_entry(i).unwrap(), entry(i), "{context}: entry {i}");
    }
}

#[test]
fn a_crash_before_the_unlinks_loses_nothing_and_the_open_removes_them() {
    let sim = SimFs::new();
    let (ffs, faults) = FaultFs::new(sim.handle());
    let log = Log::open(DIR, opts(ffs.handle())).unwrap();
    let doomed = fill(&log);
    // Every unlink on the log's threads fails: the files stay, as if the
    // power went off before the remover reached them.
    faults.fail_from(Op::Remove, 1, Fault::Eio, Scope::Background);
    log.compact(AT).unwrap();
    check(&log, LAST, "after the compaction");
    // Not poisoned: writes go on.
    log.append(&[entry(LAST + 1)]).unwrap();
    drop(log);
    assert!(
        faults.injected_of(Op::Remove) > 0,
        "no unlink was attempted"
    );
    let live = sim.paths();
    for p in &doomed {
        assert!(live.contains(p), "{} was removed", p.display());
    }
    faults.clear();
    for seed in 0..8 {
        let img = sim.cut_power(&mut Rng::new(seed));
        let log = Log::open(DIR, opts(img.handle()))
            .unwrap_or_else(|e| panic!("seed {seed}: reopen after a power cut: {e}"));
        let context = format!("seed {seed}, after a power cut");
        check(&log, LAST + 1, &context);
        let mut removed = log.recovery_report().segments_removed.clone();
        removed.sort();
        assert_eq!(removed, doomed, "{context}");
        drop(log);
        let left = img.paths();
        for p in &doomed {
            assert!(!left.contains(p), "{context}: {} is left", p.display());
        }
    }
}

#[test]
fn a_failed_directory_fsync_after_the_unlinks_fails_nothing() {
    let sim = SimFs::new();
    let (ffs, faults) = FaultFs::new(sim.handle());
    let log = Log::open(DIR, opts(ffs.handle())).unwrap();
    let doomed = fill(&log);
    faults.fail_from(Op::SyncDir, 1, Fault::Eio, Scope::Background);
    log.compact(AT).unwrap();
    log.append(&[entry(LAST + 1)]).unwrap();
    check(&log, LAST + 1, "after the compaction");
    drop(log);
    assert!(faults.injected_of(Op::SyncDir) > 0, "no directory fsync");
    // The unlinks happened (dropping the log waits for them), but a power
    // cut may undo them: the open removes what comes back.
    let live = sim.paths();
    for p in &doomed {
        assert!(!live.contains(p), "{} is left", p.display());
    }
    faults.clear();
    for seed in 0..8 {
        let img = sim.cut_power(&mut Rng::new(seed));
        let log = Log::open(DIR, opts(img.handle()))
            .unwrap_or_else(|e| panic!("seed {seed}: reopen after a power cut: {e}"));
        check(&log, LAST + 1, &format!("seed {seed}, after a power cut"));
        drop(log);
        let left = img.paths();
        for p in &doomed {
            assert!(!left.contains(p), "seed {seed}: {} is left", p.display());
        }
    }
}

#[test]
fn dropping_the_log_waits_for_the_unlinks() {
    let sim = SimFs::new();
    let log = Log::open(DIR, opts(sim.handle())).unwrap();
    let doomed = fill(&log);
    log.compact(AT).unwrap();
    drop(log);
    let live = sim.paths();
    for p in &doomed {
        assert!(!live.contains(p), "{} is left", p.display());
    }
    // And the unlinks were made durable: a power cut keeps them.
    let img = sim.cut_power(&mut Rng::new(1));
    for p in &doomed {
        assert!(!img.paths().contains(p), "{} came back", p.display());
    }
    let log = Log::open(DIR, opts(img.handle())).unwrap();
    assert!(log.recovery_report().segments_removed.is_empty());
    check(&log, LAST, "reopened");
}
