//! Power loss, checked against "a prefix of the writes": random `Log`
//! workloads (appends, cuts inside and below the active segment, state
//! blobs, compactions, resets, syncs) issued under `SyncPolicy::Manual`,
//! `SyncPolicy::EveryN` and through `Log::submit`, with 4 KiB segments so
//! that unsynced cuts and state writes are followed by rolls, on the
//! power-loss file system (which keeps, drops, tears or zeroes each
//! unsynced write and persists any subset of the directory operations since
//! the last directory fsync). Some runs hold the background remover's
//! unlinks, or fail one, so that compactions, cuts and resets leave
//! superseded files behind in every combination.
//!
//! After each power cut the log must open (default recovery mode) and show
//! exactly the state after some prefix of the operations issued, no shorter
//! than the last one known durable; a second open must show the same, and
//! the log must take a write.
//!
//! Prints `crash_prefix: N crash points ...` with how many had reordered
//! directory operations and how many an unsynced cut or state write before a
//! roll (`--nocapture`). `RAFTWAL_CRASH_SEEDS=n` runs `n` workloads.

#[path = "common/fs_sim.rs"]
mod fs_sim;

#[path = "common/log_prefix.rs"]
mod log_prefix;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use fs_sim::{Fault, FaultFs, Held, Op, Rng, Scope, SimFs, Trigger};
use log_prefix::{
    check_after_power_cut, observe, opts, preallocate_of, run, run_until_power_cut, workload,
    Issue, LogOp, LogState,
};
use raftwal::{Log, Preallocate};

const DIR: &str = "/sim/log";
const SEEDS: u64 = 45;
const OPS: usize = 60;
const RANDOM_POINTS: u64 = 30;
/// Power-cut images checked per crash point (each keeps, drops, tears and
/// reorders differently).
const IMAGES: u64 = 3;
/// The longest a held background operation waits for the power cut.
const HOLD: std::time::Duration = std::time::Duration::from_secs(5);

/// What the log's background threads are let do in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unlinks {
    /// Everything runs as it comes.
    Free,
    /// The remover's unlinks wait until the power goes: compactions, cuts
    /// and resets pile up superseded files, and a reset races the remover.
    Held,
    /// The remover's n-th unlink fails (`EIO`); the others run.
    FailNth(u64),
    /// The sealers' directory fsyncs wait until the power goes: the names
    /// of several rolls stay unsynced at once, for the power cut to
    /// persist in any order.
    SealerDirSyncHeld,
}

#[derive(Default)]
struct Tally {
    points: AtomicU64,
    reordered: AtomicU64,
    held: AtomicU64,
    failed: AtomicU64,
    unsynced_cut_before_roll: AtomicU64,
    shorter_than_acked: AtomicU64,
    in_flight_kept: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

struct Case<'a> {
    seed: u64,
    issue: Issue,
    preallocate: Preallocate,
    ops: &'a [LogOp],
    states: &'a [LogState],
}

impl Case<'_> {
    fn crash(
        &self,
        trigger: Trigger,
        unlinks: Unlinks,
        rng: &mut Rng,
        tally: &Tally,
    ) -> Result<(), String> {
        let fs = SimFs::new();
        fs.arm(trigger);
        let (ffs, faults) = FaultFs::new(fs.handle());
        let mut o = opts(&fs, self.issue, self.preallocate).file_system(ffs.handle());
        // A held operation waits for the power cut; bounded in case a
        // caller ever waits for it.
        fs.gate().set_timeout(HOLD);
        match unlinks {
            Unlinks::Free => o = opts(&fs, self.issue, self.preallocate),
            Unlinks::Held => fs.gate().hold(Held::Remove, "raftwal-remove"),
            Unlinks::FailNth(n) => faults.fail_nth(Op::Remove, n, Fault::Eio, Scope::Background),
            Unlinks::SealerDirSyncHeld => fs.gate().hold(Held::SyncDir, "raftwal-seal"),
        }
        let r = run_until_power_cut(&fs, DIR, o, self.ops, self.issue)
            .map_err(|e| format!("seed {}: {e}", self.seed))?;
        let hi = r.acked + usize::from(r.in_flight);
        let what = |stage: &str| {
            format!(
                "seed {} {:?} {:?} {unlinks:?} trigger {trigger:?} (died at {:?}): {} ops acknowledged, {} durable, failure {:?}: {stage}",
                self.seed,
                self.issue,
                self.preallocate,
                fs.died_at(),
                r.acked,
                r.durable,
                r.failure
            )
        };
        for _ in 0..IMAGES {
            let (image, cut) = fs.cut_power_with_stats(rng);
            let o = opts(&image, self.issue, self.preallocate);
            let j =
                check_after_power_cut(&o, DIR, self.ops, self.states, &r).map_err(|e| what(&e))?;
            add(&tally.points, 1);
            if j < r.acked {
                add(&tally.shorter_than_acked, 1);
            }
            if r.in_flight && j == hi {
                add(&tally.in_flight_kept, 1);
            }
            if cut.dir_ops_reordered > 0 {
                add(&tally.reordered, 1);
            }
            match unlinks {
                Unlinks::Held if fs.gate().arrived(Held::Remove) > 0 => add(&tally.held, 1),
                Unlinks::FailNth(_) if faults.injected_of(Op::Remove) > 0 => add(&tally.failed, 1),
                _ => {}
            }
            if r.unsynced_cut_before_roll {
                add(&tally.unsynced_cut_before_roll, 1);
            }
        }
        Ok(())
    }
}

fn run_seed(seed: u64, tally: &Tally) -> Result<(), String> {
    let issue = Issue::ALL[(seed % 3) as usize];
    let preallocate = preallocate_of(seed / 3);
    let (ops, states) = workload(&mut Rng::new(seed), OPS);
    let case = Case {
        seed,
        issue,
        preallocate,
        ops: &ops,
        states: &states,
    };
    // The dry run: the workload runs through, and how many operations and
    // syncs it makes.
    let fs = SimFs::new();
    {
        let log = Log::open(DIR, opts(&fs, issue, preallocate))
            .map_err(|e| format!("seed {seed}: open: {e}"))?;
        let r = run(&log, &ops, issue);
        if let Some(f) = r.failure {
            return Err(format!("seed {seed}: dry run: {f}"));
        }
        let got = observe(&log)?;
        if got != states[ops.len()] {
            return Err(format!(
                "seed {seed}: dry run ends at {got:?}, not {:?}",
                states[ops.len()]
            ));
        }
    }
    let (n_ops, n_syncs) = fs.counters();
    let mut rng = Rng::new(seed ^ 0x5EED);
    let unlinks = |rng: &mut Rng| match rng.below(5) {
        0 => Unlinks::Held,
        1 => Unlinks::FailNth(rng.range(1, 3)),
        2 => Unlinks::SealerDirSyncHeld,
        _ => Unlinks::Free,
    };
    for k in 1..=n_syncs {
        let u = unlinks(&mut rng);
        case.crash(Trigger::Sync(k), u, &mut rng, tally)?;
    }
    for _ in 0..RANDOM_POINTS {
        let u = unlinks(&mut rng);
        case.crash(Trigger::Op(rng.range(1, n_ops)), u, &mut rng, tally)?;
    }
    Ok(())
}

#[test]
fn power_loss_leaves_a_prefix_of_the_writes() {
    let seeds: u64 = std::env::var("RAFTWAL_CRASH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEEDS);
    let tally = Tally::default();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed) as u64;
                if k >= seeds || !failures.lock().unwrap().is_empty() {
                    return;
                }
                if let Err(e) = run_seed(k, &tally) {
                    failures.lock().unwrap().push(e);
                }
            });
        }
    });
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    eprintln!(
        "crash_prefix: {} crash points over {seeds} workloads, every one a prefix of the writes and nothing durable lost; {} with reordered directory operations (a later one persisted, an earlier one not), {} after an unsynced cut or state write followed by a roll, {} with the remover's unlinks held (a reset or cut racing it), {} after a failed background unlink; {} kept fewer operations than were acknowledged (unsynced), the in-flight one kept {} times; {} crash images scanned as `raftwal inspect` does, the scan agreeing with the open",
        get(&tally.points),
        get(&tally.reordered),
        get(&tally.unsynced_cut_before_roll),
        get(&tally.held),
        get(&tally.failed),
        get(&tally.shorter_than_acked),
        get(&tally.in_flight_kept),
        get(&log_prefix::agree::CHECKED),
    );
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    if seeds >= SEEDS {
        // The cases the suite is for were all reached.
        for (what, c) in [
            ("crash points", &tally.points),
            ("reordered directory operations", &tally.reordered),
            (
                "unsynced cuts before a roll",
                &tally.unsynced_cut_before_roll,
            ),
            ("held unlinks", &tally.held),
            ("failed unlinks", &tally.failed),
        ] {
            assert!(get(c) > 0, "no {what} over {seeds} workloads");
        }
        assert_eq!(
            get(&log_prefix::agree::CHECKED),
            get(&tally.points),
            "every crash image is scanned"
        );
        assert!(
            get(&tally.points) >= 10_000,
            "{} crash points",
            get(&tally.points)
        );
    }
}
