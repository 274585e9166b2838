//! Killing a child process at a random moment: the child is a role of
//! the test binary itself (a test that runs only when an environment
//! variable is set), printing `OPEN` once its store is open, `ACK k` after
//! each acknowledged operation and `DONE` at the end. Used by
//! `crash_kill` and `crash_engine_kill`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::fs_sim::Rng;

/// What a killed child got through.
pub struct Killed {
    /// Operations it acknowledged.
    pub acked: usize,
    /// It finished its workload before the kill.
    pub done: bool,
}

/// Runs test `child` of `exe` with `env` set to `value`, and kills it
/// (`SIGKILL`): after a random number of the `ops` acknowledgements plus a
/// pause of up to 3 ms (two times in three), or up to `delay_us` after it
/// opened its store. Panics (naming `round`) if the child failed before
/// the kill.
pub fn run_and_kill(
    exe: &Path,
    child: &str,
    (env, value): (&str, String),
    ops: usize,
    delay_us: u64,
    rng: &mut Rng,
    round: u64,
) -> Killed {
    let mut proc = Command::new(exe)
        .args(["--exact", child, "--nocapture", "--test-threads=1", "-q"])
        .env(env, value)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child");
    let stdout = proc.stdout.take().unwrap();
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
    // After a number of acknowledgements and a short pause (so the kill
    // lands inside an operation), or after a delay from the start.
    if rng.chance(2, 3) {
        let target = rng.below(ops as u64) as usize;
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
        std::thread::sleep(Duration::from_micros(rng.below(delay_us)));
    }
    let _ = proc.kill();
    let status = proc.wait().unwrap();
    let (acked, done) = reader.join().unwrap();
    assert!(
        done || !status.success(),
        "round {round}: the child failed before it was killed: {status}"
    );
    Killed { acked, done }
}
