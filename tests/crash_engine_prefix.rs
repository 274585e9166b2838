//! Power loss under an engine, checked against "a prefix of the writes":
//! random batches over four interleaved groups (appends, conflict cuts,
//! state blobs, compactions, resets, removals), reclaims and syncs, issued
//! under `SyncPolicy::Manual`, `SyncPolicy::EveryN` and through
//! `Engine::submit`, with 4 KiB segments so the stream rolls and reclaims
//! free segments, on the power-loss file system (which keeps, drops, tears
//! or zeroes each unsynced write and persists any subset of the directory
//! operations since the last directory fsync).
//!
//! After each power cut the engine must open and show, for every group,
//! exactly the state after some prefix of the operations issued (the same
//! prefix for all groups: a batch is atomic across them), no shorter than
//! the last one known durable; a second open must show the same, and the
//! engine must take a write that lasts.
//!
//! `RAFTWAL_CRASH_SEEDS=n` runs `n` workloads; `--nocapture` prints the
//! number of crash points.

#[path = "common/fs_sim.rs"]
mod fs_sim;

#[path = "common/log_prefix.rs"]
mod log_prefix;

#[path = "common/engine_prefix.rs"]
mod engine_prefix;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use engine_prefix::{observe, run, workload, EOp, Run, State, GROUPS};
use fs_sim::{Rng, SimFs, Trigger};
use log_prefix::{opts, preallocate_of, Issue};
use raftwal::{Engine, EngineBatch, Options};

const DIR: &str = "/sim/engine";
const SEEDS: u64 = 24;
const RANDOM_POINTS: u64 = 20;
const IMAGES: u64 = 3;

fn check(o: &Options, ops: &[EOp], states: &[State], r: &Run) -> Result<(), String> {
    let hi = (r.acked + usize::from(r.in_flight)).min(ops.len());
    let e = Engine::open(DIR, o.clone()).map_err(|x| format!("reopen: {x}"))?;
    let got = observe(&e)?;
    if !(r.durable..=hi).any(|j| states[j] == got) {
        let shape = |s: &State| -> Vec<(u64, u64, usize, bool)> {
            s.iter()
                .map(|(g, m)| (*g, m.first, m.entries.len(), m.state.is_some()))
                .collect()
        };
        let allowed: Vec<_> = (r.durable..=hi).map(|j| shape(&states[j])).collect();
        return Err(format!(
            "no prefix of the writes between {} and {hi}: got (group, first, entries, state) {:?}, allowed {allowed:?}, ops {:?}",
            r.durable,
            shape(&got),
            &ops[..hi]
        ));
    }
    drop(e);
    let e = Engine::open(DIR, o.clone()).map_err(|x| format!("second open: {x}"))?;
    let again = observe(&e)?;
    if again != got {
        return Err(format!("a second open shows {again:?}, the first {got:?}"));
    }
    let g = GROUPS[0];
    let next = e.last_index(g) + 1;
    let term = e.term(g, next - 1).unwrap_or(0).max(1);
    let mut b = EngineBatch::new();
    b.group(g).push(next, term, b"probe").unwrap();
    e.write(&mut b)
        .and_then(|()| e.sync())
        .map_err(|x| format!("probe: {x}"))?;
    drop(e);
    let e = Engine::open(DIR, o.clone()).map_err(|x| format!("open after probe: {x}"))?;
    match e.get_entry(g, next) {
        Ok(x) if &x.data[..] == b"probe" => Ok(()),
        other => Err(format!("the probe write did not last: {other:?}")),
    }
}

fn run_seed(seed: u64, points: &AtomicU64, reclaimed: &AtomicU64) -> Result<(), String> {
    let issue = Issue::ALL[(seed % 3) as usize];
    let preallocate = preallocate_of(seed / 3);
    let (ops, states) = workload(seed);
    // The dry run: everything goes through and ends where the model does.
    let fs = SimFs::new();
    {
        let e = Engine::open(DIR, opts(&fs, issue, preallocate)).map_err(|x| x.to_string())?;
        let r = run(&e, &ops, issue);
        if let Some(f) = r.failure {
            return Err(format!("seed {seed}: dry run: {f}"));
        }
        let got = observe(&e)?;
        if got != states[ops.len()] {
            return Err(format!("seed {seed}: dry run ends at {got:?}"));
        }
    }
    let (n_ops, n_syncs) = fs.counters();
    let mut rng = Rng::new(seed ^ 0xE4_61_4E);
    let triggers = (1..=n_syncs)
        .map(Trigger::Sync)
        .chain((0..RANDOM_POINTS).map(|_| Trigger::Op(rng.range(1, n_ops))))
        .collect::<Vec<_>>();
    for trigger in triggers {
        let fs = SimFs::new();
        fs.arm(trigger);
        let r = match Engine::open(DIR, opts(&fs, issue, preallocate)) {
            Ok(e) => {
                let r = run(&e, &ops, issue);
                fs.kill();
                drop(e);
                r
            }
            Err(x) => Run {
                failure: Some(format!("first open: {x}")),
                ..Run::default()
            },
        };
        if r.failure.is_some() && !fs.is_dead() {
            return Err(format!(
                "seed {seed}: failed without a power cut: {:?}",
                r.failure
            ));
        }
        for _ in 0..IMAGES {
            let image = fs.cut_power(&mut rng);
            let o = opts(&image, issue, preallocate);
            check(&o, &ops, &states, &r).map_err(|x| {
                format!(
                    "seed {seed} {issue:?} {preallocate:?} trigger {trigger:?}: {} acked, {} durable, failure {:?}: {x}",
                    r.acked, r.durable, r.failure
                )
            })?;
            points.fetch_add(1, Ordering::Relaxed);
            if r.freed > 0 {
                reclaimed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

#[test]
fn power_loss_leaves_every_group_at_one_prefix_of_the_writes() {
    let seeds: u64 = std::env::var("RAFTWAL_CRASH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEEDS);
    let points = AtomicU64::new(0);
    let reclaimed = AtomicU64::new(0);
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed) as u64;
                if k >= seeds || !failures.lock().unwrap().is_empty() {
                    return;
                }
                if let Err(x) = run_seed(k, &points, &reclaimed) {
                    failures.lock().unwrap().push(x);
                }
            });
        }
    });
    let points = points.load(Ordering::Relaxed);
    let reclaimed = reclaimed.load(Ordering::Relaxed);
    eprintln!("crash_engine_prefix: {points} crash images over {seeds} workloads, every group at one prefix of the writes; {reclaimed} after a reclaim had freed segments");
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    if seeds >= SEEDS {
        assert!(points >= 1_000, "{points} crash images");
        assert!(
            reclaimed >= 100,
            "{reclaimed} crash images after a reclaim freed segments"
        );
    }
}
