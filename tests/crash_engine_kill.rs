//! Process kill under an engine: a child process (this test binary, re-run
//! with an environment variable selecting the child role) runs an engine
//! workload of `crash_engine_prefix` (batches over four interleaved
//! groups, reclaims, syncs) on real files and prints each acknowledged
//! operation; the parent kills it (`SIGKILL`) after a seeded random number
//! of acknowledgements plus a random pause, or after a random delay, then
//! reopens the directory: every group must show the state after the last
//! acknowledged operation or after the one in flight (a killed process
//! loses nothing it wrote), and the engine must take a write that lasts.
//!
//! Prints `crash_engine_kill: N kill rounds ...` (with `--nocapture`).

#[path = "common/fs_sim.rs"]
mod fs_sim;

#[path = "common/kill.rs"]
mod kill;

#[path = "common/log_prefix.rs"]
mod log_prefix;

#[path = "common/engine_prefix.rs"]
mod engine_prefix;

use std::io::Write;
use std::path::Path;

use engine_prefix::{observe, run_with, workload, GROUPS};
use fs_sim::Rng;
use kill::{run_and_kill, Killed};
use log_prefix::{preallocate_of, Issue};
use raftwal::{Engine, EngineBatch, Options};

/// The environment variable that makes this binary the child:
/// `<directory>,<seed>`.
const CHILD_ENV: &str = "RAFTWAL_ENGINE_KILL_CHILD";
const ROUNDS: u64 = 40;

/// Writes, not submits: a killed process keeps what it wrote (a submitted
/// batch may still be staged in its memory).
fn issue(seed: u64) -> Issue {
    [Issue::Manual, Issue::EveryN][(seed % 2) as usize]
}

fn opts(seed: u64) -> Options {
    Options::default()
        .segment_size(4096)
        .preallocate(preallocate_of(seed / 2))
        .sync(issue(seed).policy())
}

/// The child's role; a no-op in a normal test run.
#[test]
fn engine_kill_child() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, seed) = arg.split_once(',').expect("dir,seed");
    let seed: u64 = seed.parse().expect("seed");
    let (ops, _) = workload(seed);
    let e = Engine::open(dir, opts(seed)).expect("child: open");
    let mut out = std::io::stdout().lock();
    writeln!(out, "OPEN").unwrap();
    out.flush().unwrap();
    let r = run_with(&e, &ops, issue(seed), |k| {
        writeln!(out, "ACK {k}").unwrap();
        out.flush().unwrap();
    });
    if let Some(f) = r.failure {
        panic!("child: {f}");
    }
    writeln!(out, "DONE").unwrap();
    out.flush().unwrap();
}

/// One kill round: (operations acknowledged, whether the child finished
/// before the kill).
fn one_round(round: u64, exe: &Path) -> (usize, bool) {
    let seed = 7000 + round;
    let mut rng = Rng::new(seed);
    let (ops, states) = workload(seed);
    let dir = tempfile::tempdir().unwrap();
    let Killed { acked, done } = run_and_kill(
        exe,
        "engine_kill_child",
        (CHILD_ENV, format!("{},{seed}", dir.path().display())),
        ops.len(),
        60_000,
        &mut rng,
        round,
    );
    let ctx = format!("round {round} (seed {seed}): killed after {acked} acknowledged operations");
    let e = Engine::open(dir.path(), opts(seed)).unwrap_or_else(|x| panic!("{ctx}: reopen: {x}"));
    let got = observe(&e).unwrap_or_else(|x| panic!("{ctx}: {x}"));
    let hi = (acked + 1).min(ops.len());
    assert!(
        (acked..=hi).any(|j| states[j] == got),
        "{ctx}: the engine shows neither the acknowledged state nor the one after it"
    );
    // It takes a write, and the write lasts.
    let g = GROUPS[0];
    let next = e.last_index(g) + 1;
    let term = e.term(g, next - 1).unwrap().max(1);
    let mut b = EngineBatch::new();
    b.group(g).push(next, term, b"probe").unwrap();
    e.write(&mut b).and_then(|()| e.sync()).unwrap();
    drop(e);
    let e = Engine::open(dir.path(), opts(seed)).unwrap();
    assert_eq!(&e.get_entry(g, next).unwrap().data[..], b"probe", "{ctx}");
    (acked, done)
}

#[test]
fn an_engine_killed_at_random_moments_loses_nothing_it_acknowledged() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let (mut rounds, mut done, mut acked) = (0u64, 0u64, 0usize);
    while rounds < ROUNDS || (rounds - done < 25 && rounds < 4 * ROUNDS) {
        let (a, d) = one_round(rounds, &exe);
        rounds += 1;
        acked += a;
        done += u64::from(d);
    }
    eprintln!(
        "crash_engine_kill: {rounds} kill rounds, {} killed mid-workload; {acked} operations acknowledged before the kills",
        rounds - done
    );
    assert!(
        rounds - done >= 25,
        "too few rounds were killed mid-workload"
    );
}
