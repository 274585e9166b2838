//! I/O errors and a full disk under an engine: the workloads of
//! `crash_engine_prefix` (batches over four interleaved groups, reclaims,
//! syncs) with the n-th operation of one kind failing (`EIO`, `ENOSPC`, a
//! short write then an error), on any thread, for n from 1 until the
//! workload runs through.
//!
//! Each run stops at the first call that fails. Then:
//! - unless the engine is poisoned (a failed `fdatasync`, or a write whose
//!   roll-back failed), what it shows is what it showed before the failed
//!   call: a failed write changes nothing a group shows;
//! - a poisoned engine refuses every later write;
//! - reopened on the same files (no power loss), every group shows the
//!   state after the acknowledged operations, or after the failed one too
//!   (its bytes may have reached the file before the failure); for
//!   `submit`, after the operations whose tickets said durable (a batch
//!   still staged in memory when a write-out fails is lost, and its ticket
//!   says so).

#[path = "common/fs_sim.rs"]
mod fs_sim;

#[path = "common/log_prefix.rs"]
mod log_prefix;

#[path = "common/engine_prefix.rs"]
mod engine_prefix;

use engine_prefix::{observe, run, workload, EOp};
use fs_sim::{Fault, FaultFs, Op, Scope, SimFs};
use log_prefix::{opts, preallocate_of, Issue};
use raftwal::{Engine, EngineBatch, Error};

const DIR: &str = "/sim/engine";
/// Workloads per fault.
const SEEDS: u64 = 3;

const FAULTS: [(Op, Fault); 10] = [
    (Op::Write, Fault::Eio),
    (Op::Write, Fault::PartialEio { keep: 40 }),
    (Op::Write, Fault::PartialEnospc { keep: 100 }),
    (Op::Sync, Fault::Eio),
    (Op::SyncDir, Fault::Eio),
    (Op::Create, Fault::Enospc),
    (Op::Rename, Fault::Eio),
    (Op::SetLen, Fault::Eio),
    (Op::Allocate, Fault::Enospc),
    (Op::Remove, Fault::Eio),
];

/// One run with the `n`-th `op` failing with `fault`; `false` once the
/// workload ran through without meeting it.
fn one(seed: u64, op: Op, fault: Fault, n: u64) -> Result<bool, String> {
    let issue = Issue::ALL[(seed % 3) as usize];
    let preallocate = preallocate_of(seed);
    let (ops, states) = workload(seed);
    let sim = SimFs::new();
    let (ffs, faults) = FaultFs::new(sim.handle());
    let o = opts(&sim, issue, preallocate).file_system(ffs.handle());
    faults.fail_nth(op, n, fault, Scope::Any);
    let ctx = format!("seed {seed} {issue:?} {preallocate:?}: {op:?} #{n} {fault:?}");
    let (r, hit) = match Engine::open(DIR, o.clone()) {
        // The open failed cleanly; the reopen below checks the files.
        Err(_) => (Default::default(), true),
        Ok(e) => {
            let r = run(&e, &ops, issue);
            let hit = faults.injected_of(op) > 0;
            if r.failure.is_some() {
                let poisoned = {
                    let mut b = EngineBatch::new();
                    b.group(99).set_state(&b"probe"[..]);
                    matches!(e.write(&mut b), Err(Error::Poisoned { .. }))
                };
                if !poisoned {
                    // The probe was written: group 99 aside, nothing moved.
                    let mut shown = observe(&e).map_err(|x| format!("{ctx}: {x}"))?;
                    shown.remove(&99);
                    if shown != states[r.acked] {
                        return Err(format!(
                            "{ctx}: a failed call ({:?}) changed what the engine shows",
                            r.failure
                        ));
                    }
                }
            }
            faults.clear();
            drop(e);
            (r, hit)
        }
    };
    if !hit {
        return Ok(false);
    }
    // The same files, no power loss: what was written is there.
    let e = Engine::open(DIR, opts(&sim, issue, preallocate))
        .map_err(|x| format!("{ctx}: reopen after {:?}: {x}", r.failure))?;
    let mut got = observe(&e).map_err(|x| format!("{ctx}: {x}"))?;
    got.remove(&99);
    let hi = (r.acked + usize::from(r.in_flight)).min(ops.len());
    // A write returned is in the file, and outlives the engine: except a
    // submitted one still staged in memory, which only its ticket vouches
    // for (a failed write-out fails the ticket).
    let lo = match issue {
        Issue::Submit => r.durable,
        _ => r.acked,
    };
    if !(lo..=hi).any(|j| states[j] == got) {
        return Err(format!(
            "{ctx}: after {} acknowledged operations ({} durable) and {:?}, the reopened engine shows no state between {lo} and {hi}",
            r.acked, r.durable, r.failure
        ));
    }
    Ok(true)
}

#[test]
fn io_errors_and_a_full_disk_change_nothing_a_group_shows() {
    let mut runs = 0;
    for (op, fault) in FAULTS {
        for seed in 0..SEEDS {
            for n in 1.. {
                if !one(seed, op, fault, n).unwrap_or_else(|e| panic!("{e}")) {
                    break;
                }
                runs += 1;
                if n >= 60 {
                    break;
                }
            }
        }
    }
    eprintln!("crash_engine_faults: {runs} runs with a failure injected");
    assert!(runs >= 300, "{runs} runs with a failure injected");
}

/// The workloads hold every kind of operation the suite fails.
#[test]
fn the_workloads_reclaim_and_sync() {
    let (ops, _) = workload(0);
    assert!(ops.iter().any(|o| matches!(o, EOp::Reclaim)));
    assert!(ops.iter().any(|o| matches!(o, EOp::Sync)));
}
