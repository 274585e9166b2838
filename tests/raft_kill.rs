//! A kill test: a child process (this test binary, run again in child mode)
//! writes to a `RaftLogStore` in a loop and prints what each call
//! acknowledged; the parent SIGKILLs it after a pseudo-random number of
//! acknowledgements, reopens the store and checks that everything
//! acknowledged is there, byte for byte, and that the store takes appends.
//! Five rounds on one directory, each in a higher term.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use raft::eraftpb::{ConfState, Entry, HardState};
use raft::{GetEntriesContext, Storage};
use raftwal::{Options, RaftLogStore};

const CHILD_DIR: &str = "RAFTWAL_KILL_CHILD_DIR";
const CHILD_TERM: &str = "RAFTWAL_KILL_CHILD_TERM";
/// The child stops by itself after this many calls (the parent kills it
/// long before).
const CHILD_MAX_CALLS: u64 = 20_000;
const ROUNDS: u64 = 5;
/// The longest the child may go without printing before the test fails.
const CHILD_SILENCE: Duration = Duration::from_secs(60);

fn opts() -> Options {
    Options::default().segment_size(64 << 10)
}

/// The bytes of entry `index` written in `term`.
fn payload(index: u64, term: u64) -> Vec<u8> {
    let len = (index.wrapping_mul(2_654_435_761) % 3000) as usize;
    (0..len)
        .map(|k| (index as usize).wrapping_mul(31).wrapping_add(k * 7) as u8 ^ term as u8)
        .collect()
}

fn snapshot_data(index: u64) -> Vec<u8> {
    format!("state machine at {index}").into_bytes()
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: payload(index, term).into(),
        ..Default::default()
    }
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The child: appends batches (some with a hard state), now and then
/// commits, snapshots and compacts, and prints each acknowledgement.
/// Does nothing unless started by `kill_and_reopen`.
#[test]
fn kill_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let term: u64 = std::env::var(CHILD_TERM).unwrap().parse().unwrap();
    let store = RaftLogStore::open_with(&dir, opts()).unwrap();
    let cs = ConfState::from((vec![1, 2, 3], vec![]));
    let out = std::io::stdout();
    let mut out = out.lock();
    let mut next = store.last_index().unwrap() + 1;
    for call in 0..CHILD_MAX_CALLS {
        let n = 1 + call % 4;
        let ents: Vec<Entry> = (next..next + n).map(|i| entry(i, term)).collect();
        let last = next + n - 1;
        if call % 5 == 0 {
            let hs = HardState {
                term,
                vote: 1,
                commit: last,
                ..Default::default()
            };
            store.persist(&ents, Some(&hs), None).unwrap();
            writeln!(out, "ack {last}").unwrap();
            writeln!(out, "commit {last}").unwrap();
        } else {
            store.append(&ents).unwrap();
            writeln!(out, "ack {last}").unwrap();
        }
        out.flush().unwrap();
        next = last + 1;
        if call % 40 == 39 {
            store.commit_to(last).unwrap();
            writeln!(out, "commit {last}").unwrap();
            let at = last - 5;
            store
                .create_snapshot(at, cs.clone(), snapshot_data(at))
                .unwrap();
            writeln!(out, "snapshot {at}").unwrap();
            out.flush().unwrap();
            store.compact(at - 10).unwrap();
            writeln!(out, "compact {}", at - 10).unwrap();
            out.flush().unwrap();
        }
    }
}

#[derive(Debug, Default)]
struct Acked {
    last: u64,
    commit: u64,
    snapshot: u64,
    compact: u64,
}

fn record(line: &str, acked: &mut Acked) -> bool {
    let Some((what, n)) = line.split_once(' ') else {
        return false;
    };
    let Ok(n) = n.parse::<u64>() else {
        return false;
    };
    match what {
        "ack" => acked.last = n,
        "commit" => acked.commit = n,
        "snapshot" => acked.snapshot = n,
        "compact" => acked.compact = n,
        _ => return false,
    }
    what == "ack"
}

fn run_child(dir: &Path, term: u64, kill_after: usize) -> Acked {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["kill_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_TERM, term.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Lines arrive through a channel so that a stuck child cannot hang the
    // test: no line for CHILD_SILENCE and it is killed and the test fails.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acked = Acked::default();
    let mut acks = 0;
    while acks < kill_after {
        match rx.recv_timeout(CHILD_SILENCE) {
            Ok(line) => {
                if record(&line, &mut acked) {
                    acks += 1;
                }
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the child stopped after {acks} acknowledgements: {e:?}");
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed");
    // What the child printed before it died was acknowledged too.
    reader.join().unwrap();
    for line in rx.try_iter() {
        record(&line, &mut acked);
    }
    acked
}

#[test]
fn kill_and_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut rng = Rng(0x5eed_0f4a_1100);
    // Which term wrote which index: rounds never overwrite.
    let mut written_in: Vec<(u64, u64)> = Vec::new(); // (first index, term)
    for round in 1..=ROUNDS {
        let term = round;
        let start = {
            let store = RaftLogStore::open_with(&dir, opts()).unwrap();
            store.last_index().unwrap() + 1
        };
        written_in.push((start, term));
        let kill_after = 50 + (rng.next() % 400) as usize;
        let acked = run_child(&dir, term, kill_after);
        assert!(acked.last >= start);

        let store = RaftLogStore::open_with(&dir, opts()).unwrap();
        let (first, last) = (store.first_index().unwrap(), store.last_index().unwrap());
        eprintln!("round {round}: killed after {kill_after} acks: {acked:?}; log {first}..={last}");
        assert!(
            last >= acked.last,
            "round {round}: last {last} < acked {}",
            acked.last
        );
        assert!(first >= acked.compact, "round {round}: compaction lost");
        let ents = store
            .entries(first, last + 1, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(ents.len() as u64, last + 1 - first);
        for e in &ents {
            let t = written_in
                .iter()
                .rev()
                .find(|(s, _)| *s <= e.index)
                .map(|&(_, t)| t)
                .unwrap();
            assert_eq!(e.term, t, "round {round}: term of {}", e.index);
            assert_eq!(
                &e.data[..],
                &payload(e.index, t)[..],
                "round {round}: entry {}",
                e.index
            );
        }
        let hs = store.initial_state().unwrap().hard_state;
        assert!(
            hs.commit >= acked.commit,
            "round {round}: commit {} < {}",
            hs.commit,
            acked.commit
        );
        if acked.snapshot > 0 {
            let s = store.snapshot(0, 0).unwrap();
            let i = s.get_metadata().index;
            assert!(
                i >= acked.snapshot,
                "round {round}: snapshot {i} < {}",
                acked.snapshot
            );
            assert_eq!(&s.data[..], &snapshot_data(i)[..]);
            assert_eq!(
                s.get_metadata().term,
                store.term(i).unwrap_or(s.get_metadata().term)
            );
        }
        // The store takes appends after the crash.
        store.append(&[entry(last + 1, term)]).unwrap();
        drop(store);
        let store = RaftLogStore::open_with(&dir, opts()).unwrap();
        assert_eq!(store.last_index().unwrap(), last + 1);
    }
}
