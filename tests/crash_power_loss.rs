//! Power loss: random `RaftLogStore` workloads (appends with conflicts,
//! hard and conf states, commits, compactions, created and installed
//! snapshots) on the in-memory power-loss file system, with the power cut
//! at every sync point and at random operations in between, sometimes a
//! second time while the store recovers. After each reopen the store must
//! show exactly the state after the last acknowledged operation or after
//! the one in flight (so every entry acknowledged under
//! `SyncPolicy::Always` is there byte for byte and nothing unacknowledged
//! appears out of order), and it must accept writes.
//!
//! Prints `crash_power_loss: N crash points ...` (run with `--nocapture`
//! to see it in CI logs). `RAFTWAL_CRASH_SEEDS=n` runs `n` workloads instead
//! of the default, `RAFTWAL_CRASH_SEED_BASE=b` starts at seed `b`.

#[path = "common/fs_sim.rs"]
mod fs_sim;

#[path = "common/crash_model.rs"]
mod crash_model;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crash_model::{expect_one_of, observe, probe_op, workload, Shape, StoreOp, StoreState};
use fs_sim::{Rng, SimFs, Trigger};
use raftwal::{Options, Preallocate, RaftLogStore};

const DIR: &str = "/sim/log";

/// Workloads per CI run: each gives every sync point plus
/// [`RANDOM_POINTS`] random operations, about 100 crash points.
const SEEDS: u64 = 150;
const RANDOM_POINTS: u64 = 24;

/// The preallocation mode of workload `n`: each in turn.
fn mode(n: u64) -> Preallocate {
    match n % 3 {
        0 => Preallocate::None,
        1 => Preallocate::Allocate,
        _ => Preallocate::ZeroFill,
    }
}

fn opts(fs: &SimFs, preallocate: Preallocate) -> Options {
    Options::default()
        .segment_size(4096)
        .preallocate(preallocate)
        .file_system(fs.handle())
}

#[derive(Default)]
struct Tally {
    points: AtomicU64,
    at_sync: AtomicU64,
    between: AtomicU64,
    in_recovery: AtomicU64,
    in_flight_kept: AtomicU64,
    in_flight_lost: AtomicU64,
    torn_writes: AtomicU64,
    dir_ops_undone: AtomicU64,
    /// Crash points whose image kept a directory operation while losing an
    /// earlier, unrelated one (`fs_sim::CutMode::Reorder`).
    reordered_points: AtomicU64,
    ops_run: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

struct Case<'a> {
    seed: u64,
    preallocate: Preallocate,
    ops: &'a [StoreOp],
    states: &'a [StoreState],
}

impl Case<'_> {
    /// Runs the workload on a fresh file system until the power cut
    /// `trigger`, reopens on what survives and checks it.
    fn crash(&self, trigger: Trigger, rng: &mut Rng, tally: &Tally) -> Result<(), String> {
        let fs = SimFs::new();
        fs.arm(trigger);
        let mut acked = 0usize;
        let mut in_flight = false;
        let mut failure = None;
        match RaftLogStore::open_with(DIR, opts(&fs, self.preallocate)) {
            Ok(store) => {
                for op in self.ops {
                    match op.run(&store) {
                        Ok(()) => acked += 1,
                        Err(e) => {
                            in_flight = true;
                            failure = Some(format!("{op:?}: {e}"));
                            break;
                        }
                    }
                }
                drop(store);
            }
            Err(e) => failure = Some(format!("first open: {e}")),
        }
        add(&tally.ops_run, acked as u64);
        if let Some(f) = &failure {
            if !fs.is_dead() {
                return Err(format!("an operation failed without a power cut: {f}"));
            }
        }
        fs.kill();
        let (image, cut) = fs.cut_power_with_stats(rng);
        add(&tally.torn_writes, cut.torn + cut.zeroed);
        add(&tally.dir_ops_undone, cut.dir_ops_undone);
        add(
            &tally.reordered_points,
            u64::from(cut.dir_ops_reordered > 0),
        );
        let mut allowed = vec![&self.states[acked]];
        // Every operation is atomic across a crash: the state before the
        // one in flight, or after it.
        if in_flight {
            allowed.push(&self.states[acked + 1]);
        }
        let what = |stage: &str| {
            format!(
                "seed {} preallocate {:?} trigger {trigger:?} (died at {:?}), {acked} ops acknowledged, failure {failure:?}: {stage}",
                self.seed,
                self.preallocate,
                fs.died_at()
            )
        };
        // Sometimes the power fails again while the store recovers.
        let image = if rng.chance(1, 4) {
            image.arm(Trigger::Op(rng.range(1, 12)));
            match RaftLogStore::open_with(DIR, opts(&image, self.preallocate)) {
                Ok(store) => {
                    image.disarm();
                    drop(store);
                    if image.is_dead() {
                        add(&tally.in_recovery, 1);
                        image.cut_power(rng)
                    } else {
                        image
                    }
                }
                Err(e) if image.is_dead() => {
                    add(&tally.in_recovery, 1);
                    let _ = e;
                    image.cut_power(rng)
                }
                Err(e) => return Err(what(&format!("reopen: {e}"))),
            }
        } else {
            image
        };
        let store = RaftLogStore::open_with(DIR, opts(&image, self.preallocate))
            .map_err(|e| what(&format!("reopen: {e}")))?;
        let got = observe(&store).map_err(|e| what(&format!("observe: {e}")))?;
        expect_one_of(&got, &allowed, &what("state after reopen"))?;
        if in_flight {
            if got == self.states[acked + 1] {
                add(&tally.in_flight_kept, 1);
            } else {
                add(&tally.in_flight_lost, 1);
            }
        }
        // What recovery left is what the next open finds: memory matched
        // the disk.
        drop(store);
        let store = RaftLogStore::open_with(DIR, opts(&image, self.preallocate))
            .map_err(|e| what(&format!("second reopen: {e}")))?;
        let second =
            observe(&store).map_err(|e| what(&format!("observe after second reopen: {e}")))?;
        expect_one_of(&second, &[&got], &what("state after a second reopen"))?;
        // The store accepts writes, and they last.
        let probe = probe_op(&got);
        probe
            .run(&store)
            .map_err(|e| what(&format!("probe write: {e}")))?;
        let mut want = got.clone();
        want.apply(&probe);
        drop(store);
        let store = RaftLogStore::open_with(DIR, opts(&image, self.preallocate))
            .map_err(|e| what(&format!("reopen after probe: {e}")))?;
        let again = observe(&store).map_err(|e| what(&format!("observe after probe: {e}")))?;
        expect_one_of(&again, &[&want], &what("state after the probe write"))?;
        add(&tally.points, 1);
        Ok(())
    }
}

/// Runs workload `seed` without a crash (checking it), then crashes it at
/// every sync point and at random operations.
fn run_seed(seed: u64, tally: &Tally) -> Result<(), String> {
    let shape = Shape::default();
    let (ops, states) = workload(seed, shape);
    let preallocate = mode(seed);
    let case = Case {
        seed,
        preallocate,
        ops: &ops,
        states: &states,
    };
    // The dry run: how many operations and syncs the workload makes.
    let fs = SimFs::new();
    {
        let store = RaftLogStore::open_with(DIR, opts(&fs, preallocate))
            .map_err(|e| format!("seed {seed}: open: {e}"))?;
        for op in &ops {
            op.run(&store)
                .map_err(|e| format!("seed {seed}: {op:?}: {e}"))?;
        }
        let got = observe(&store)?;
        expect_one_of(
            &got,
            &[&states[ops.len()]],
            &format!("seed {seed}: dry run"),
        )?;
    }
    let (n_ops, n_syncs) = fs.counters();
    let mut rng = Rng::new(seed ^ 0xC0FFEE);
    for k in 1..=n_syncs {
        case.crash(Trigger::Sync(k), &mut rng, tally)?;
        add(&tally.at_sync, 1);
    }
    for _ in 0..RANDOM_POINTS {
        let k = rng.range(1, n_ops);
        case.crash(Trigger::Op(k), &mut rng, tally)?;
        add(&tally.between, 1);
    }
    Ok(())
}

#[test]
fn power_loss_at_every_sync_point_and_between() {
    let seeds: u64 = std::env::var("RAFTWAL_CRASH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEEDS);
    let base: u64 = std::env::var("RAFTWAL_CRASH_SEED_BASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
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
                if let Err(e) = run_seed(base + k, &tally) {
                    failures.lock().unwrap().push(e);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    eprintln!(
        "crash_power_loss: {} crash points over {seeds} workloads ({} at sync points, {} between; {} power cuts during recovery; in-flight operation kept {} / lost {} times, never in part; {} torn or zeroed writes, {} directory operations undone, {} crash points with reordered directory operations; {} operations acknowledged before the cuts)",
        get(&tally.points),
        get(&tally.at_sync),
        get(&tally.between),
        get(&tally.in_recovery),
        get(&tally.in_flight_kept),
        get(&tally.in_flight_lost),
        get(&tally.torn_writes),
        get(&tally.dir_ops_undone),
        get(&tally.reordered_points),
        get(&tally.ops_run),
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    if seeds >= SEEDS {
        assert!(get(&tally.points) >= 10_000, "too few crash points");
    }
}

/// Found by the power-loss test: a compaction's marker lives in the segment
/// it was written to; when the log then rolls, that segment lies wholly
/// below the first index, and recovery removed it with the marker, so the
/// term before the first index was 0 at the second reopen.
#[test]
fn compaction_then_roll_keeps_the_term_before_the_first_index() {
    let entry = |i: u64| raftwal::Entry::new(i, 1 + i / 10, vec![1u8; 150]);
    // How many entries make the first segment roll.
    let n = {
        let fs = SimFs::new();
        let log = raftwal::Log::open(DIR, opts(&fs, Preallocate::None)).unwrap();
        let mut n = 0;
        while log.segments().len() == 1 {
            n += 1;
            log.append(&[entry(n)]).unwrap();
        }
        n
    };
    // Fill the first segment, compact all of it, and roll.
    let fs = SimFs::new();
    let log = raftwal::Log::open(DIR, opts(&fs, Preallocate::None)).unwrap();
    for i in 1..n {
        log.append(&[entry(i)]).unwrap();
    }
    log.compact(n).unwrap();
    log.append(&[entry(n)]).unwrap();
    assert_eq!(log.segments().len(), 2);
    assert_eq!(
        log.segments()[1].1,
        n,
        "the new segment starts at the first index"
    );
    drop(log);
    for _ in 0..3 {
        let log = raftwal::Log::open(DIR, opts(&fs, Preallocate::None)).unwrap();
        assert_eq!(log.first_index(), n);
        assert_eq!(log.term(n - 1).unwrap(), entry(n - 1).term);
        assert_eq!(log.get_entry(n).unwrap(), entry(n));
    }
}

/// Group commit under power loss: threads append concurrently (sharing
/// `fdatasync` rounds, so several writes are unsynced at once and a power
/// cut can keep a later one and lose an earlier one); the power goes off at
/// a random operation. After the reopen every acknowledged entry is there
/// byte for byte, the log is one contiguous run, and it accepts writes.
#[test]
fn power_loss_under_group_commit() {
    const CASES: u64 = 300;
    let mut kept_unacked = 0u64;
    for case in 0..CASES {
        let mut rng = Rng::new(case);
        let fs = SimFs::new();
        let pre = mode(case);
        let log = raftwal::Log::open(DIR, opts(&fs, pre)).unwrap();
        fs.arm(Trigger::Op(rng.range(5, 120)));
        let acked = Mutex::new(Vec::<(u64, Vec<u8>)>::new());
        std::thread::scope(|s| {
            for t in 0..3u64 {
                let (log, acked) = (&log, &acked);
                s.spawn(move || {
                    for k in 0..40u64 {
                        let data: Vec<Vec<u8>> = (0..1 + (k % 3))
                            .map(|j| {
                                format!(
                                    "thread {t} write {k} entry {j} {}",
                                    "x".repeat((k * 7 % 50) as usize)
                                )
                                .into_bytes()
                            })
                            .collect();
                        match log.append_assigned(1, &data) {
                            Ok(first) => {
                                let mut a = acked.lock().unwrap();
                                for (j, d) in data.into_iter().enumerate() {
                                    a.push((first + j as u64, d));
                                }
                            }
                            Err(_) => return,
                        }
                    }
                });
            }
        });
        drop(log);
        fs.kill();
        let img = fs.cut_power(&mut rng);
        let log = raftwal::Log::open(DIR, opts(&img, pre))
            .unwrap_or_else(|e| panic!("case {case}: reopen: {e}"));
        let acked = acked.into_inner().unwrap();
        let max_acked = acked.iter().map(|a| a.0).max().unwrap_or(0);
        assert!(
            log.last_index() >= max_acked,
            "case {case}: acknowledged entries lost"
        );
        kept_unacked += log.last_index() - max_acked;
        for (i, d) in &acked {
            assert_eq!(
                &log.get_entry(*i).unwrap().data[..],
                &d[..],
                "case {case}: entry {i}"
            );
        }
        let all = log.entries(1, log.last_index() + 1, None).unwrap();
        assert_eq!(all.len() as u64, log.last_index(), "case {case}");
        let next = log.last_index() + 1;
        log.append(&[raftwal::Entry::new(next, 1, &b"after"[..])])
            .unwrap();
    }
    eprintln!(
        "crash_power_loss: {CASES} power cuts under group commit (3 appending threads); {kept_unacked} unacknowledged entries survived, all acknowledged ones did"
    );
}
