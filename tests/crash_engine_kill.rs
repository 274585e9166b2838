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

#[path = "common/log_prefix.rs"]
mod log_prefix;

#[path = "common/engine_prefix.rs"]
mod engine_prefix;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use engine_prefix::{observe, run_with, workload, GROUPS};
use fs_sim::Rng;
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
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "engine_kill_child",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(CHILD_ENV, format!("{},{seed}", dir.path().display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let (mut acked, mut done) = (0usize, false);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(k) = line.strip_prefix("ACK ") {
                acked = k.trim().parse::<usize>().unwrap() + 1;
            } else if line == "DONE" {
                done = true;
            }
            let _ = tx.send(line);
        }
        (acked, done)
    });
    if rng.chance(2, 3) {
        let target = rng.below(ops.len() as u64) as usize;
        let mut seen = 0usize;
        while seen < target {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(l) if l.starts_with("ACK ") => seen += 1,
                Ok(l) if l == "DONE" => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
    } else {
        while let Ok(l) = rx.recv_timeout(Duration::from_secs(30)) {
            if l == "OPEN" {
                break;
            }
        }
        std::thread::sleep(Duration::from_micros(rng.below(60_000)));
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    let (acked, done) = reader.join().unwrap();
    assert!(
        done || !status.success(),
        "round {round}: the child failed before it was killed: {status}"
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
