//! Process kill: a child process (this test binary, re-run with an
//! environment variable selecting the child role) runs a random
//! `RaftLogStore` workload (appends, conflicting appends, compactions,
//! created and installed snapshots, hard states) on real files and prints
//! each acknowledged operation; the parent kills it (`SIGKILL`) after a
//! seeded random number of acknowledgements plus a random pause, or after
//! a random delay, then reopens the directory and checks that the store
//! shows exactly the state after the last acknowledged operation or after
//! the one in flight, and accepts writes.
//!
//! Prints `crash_kill: N kill rounds ...` (see it with `--nocapture`).

#[path = "common/fs_sim.rs"]
mod fs_sim;

#[path = "common/kill.rs"]
mod kill;

#[path = "common/crash_model.rs"]
mod crash_model;

use std::io::Write;
use std::path::Path;

use crash_model::{expect_one_of, observe, probe_op, workload, Shape};
use fs_sim::Rng;
use kill::{run_and_kill, Killed};
use raftwal::{Options, Preallocate, RaftLogStore};

/// The environment variable that makes this binary the child:
/// `<directory>,<seed>`.
const CHILD_ENV: &str = "RAFTWAL_KILL_CHILD";
const ROUNDS: u64 = 80;

fn shape() -> Shape {
    Shape {
        ops: 60,
        ..Shape::default()
    }
}

fn opts(seed: u64) -> Options {
    Options::default()
        .segment_size(4096)
        .preallocate(match seed % 3 {
            0 => Preallocate::None,
            1 => Preallocate::Allocate,
            _ => Preallocate::ZeroFill,
        })
}

/// The child's role; a no-op in a normal test run.
#[test]
fn kill_child() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, seed) = arg.split_once(',').expect("dir,seed");
    let seed: u64 = seed.parse().expect("seed");
    let (ops, _) = workload(seed, shape());
    let store = RaftLogStore::open_with(dir, opts(seed)).expect("child: open");
    let mut out = std::io::stdout().lock();
    writeln!(out, "OPEN").unwrap();
    out.flush().unwrap();
    for (k, op) in ops.iter().enumerate() {
        op.run(&store)
            .unwrap_or_else(|e| panic!("child: op {k} {op:?}: {e}"));
        writeln!(out, "ACK {k}").unwrap();
        out.flush().unwrap();
    }
    writeln!(out, "DONE").unwrap();
    out.flush().unwrap();
}

struct Round {
    acked: usize,
    done: bool,
    in_flight_kept: bool,
    in_flight_lost: bool,
}

fn one_round(round: u64, exe: &Path) -> Round {
    let seed = 5000 + round;
    let mut rng = Rng::new(seed);
    let (ops, states) = workload(seed, shape());
    let dir = tempfile::tempdir().unwrap();
    let Killed { acked, done } = run_and_kill(
        exe,
        "kill_child",
        (CHILD_ENV, format!("{},{seed}", dir.path().display())),
        ops.len(),
        80_000,
        &mut rng,
        round,
    );
    // The store shows the state after the last acknowledged operation or
    // after the one in flight.
    let store = RaftLogStore::open_with(dir.path(), opts(seed))
        .unwrap_or_else(|e| panic!("round {round} (seed {seed}, {acked} acked): reopen: {e}"));
    let got = observe(&store).unwrap();
    let mut allowed = vec![&states[acked]];
    if acked < ops.len() {
        allowed.push(&states[acked + 1]);
    }
    let ctx = format!("round {round} (seed {seed}): killed after {acked} acknowledged operations");
    expect_one_of(&got, &allowed, &ctx).unwrap_or_else(|e| panic!("{e}"));
    let in_flight_kept = acked < ops.len() && got == states[acked + 1] && got != states[acked];
    let in_flight_lost = acked < ops.len() && got == states[acked] && got != states[acked + 1];
    // It accepts writes, and they last.
    let probe = probe_op(&got);
    probe.run(&store).unwrap();
    let mut want = got.clone();
    want.apply(&probe);
    drop(store);
    let store = RaftLogStore::open_with(dir.path(), opts(seed)).unwrap();
    expect_one_of(&observe(&store).unwrap(), &[&want], &ctx).unwrap_or_else(|e| panic!("{e}"));
    Round {
        acked,
        done,
        in_flight_kept,
        in_flight_lost,
    }
}

#[test]
fn killed_at_random_moments() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let started = std::time::Instant::now();
    let (mut acked, mut done, mut kept, mut lost) = (0, 0, 0, 0);
    // At least ROUNDS rounds; on a machine so fast that children finish
    // before their kill, more, until 50 were killed mid-workload.
    let mut rounds = 0;
    while rounds < ROUNDS || (rounds - done < 50 && rounds < 4 * ROUNDS) {
        let r = one_round(rounds, &exe);
        rounds += 1;
        acked += r.acked;
        done += r.done as u64;
        kept += r.in_flight_kept as u64;
        lost += r.in_flight_lost as u64;
    }
    eprintln!(
        "crash_kill: {rounds} kill rounds, {} killed mid-workload ({done} finished first); {acked} operations acknowledged before the kills; in-flight operation kept {kept} / lost {lost} times; {:.1} s",
        rounds - done,
        started.elapsed().as_secs_f64()
    );
    assert!(
        rounds - done >= 50,
        "too few rounds were killed mid-workload"
    );
}
