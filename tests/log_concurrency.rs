//! Readers never see a partial or wrong entry while a writer appends,
//! cuts conflicting suffixes, compacts and resets: every successful read is
//! a whole entry whose data is `data(index, term)`, and the only errors are
//! `Compacted` and `Unavailable`. Bounded by a fixed number of writes (fewer
//! where each one waits for an `fdatasync`).

mod common;

use common::{data, entries, opts, Model};
use raftwal::{Error, Log, Preallocate, SyncPolicy};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const READERS: usize = 2;

/// A small deterministic generator, so the writer's choices repeat.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

fn allowed(e: &Error) -> bool {
    matches!(e, Error::Compacted { .. } | Error::Unavailable { .. })
}

fn check_entry(i: u64, e: &raftwal::Entry) {
    assert_eq!(e.index, i);
    assert!(e.term >= 1);
    assert_eq!(e.data, data(i, e.term), "entry {i} of term {}", e.term);
}

/// One reader's loop; returns the number of entries it read successfully.
fn reader(log: &Log, done: &AtomicBool, seed: u64) -> u64 {
    let mut rng = Rng(seed);
    let mut good = 0u64;
    let mut rounds = 0u64;
    // At least some rounds even if the writer is already done.
    while !done.load(Ordering::Acquire) || rounds < 200 {
        rounds += 1;
        let (first, last) = (log.first_index(), log.last_index());
        let i = first.saturating_sub(1) + rng.below(last + 3 - first.min(last + 1));
        match log.get_entry(i) {
            Ok(e) => {
                check_entry(i, &e);
                good += 1;
            }
            Err(e) => assert!(allowed(&e), "get_entry({i}): {e}"),
        }
        match log.term(i) {
            Ok(t) => assert!(t >= 1 || i == 0),
            Err(e) => assert!(allowed(&e), "term({i}): {e}"),
        }
        let hi = i + 1 + rng.below(40);
        let max = if rng.below(2) == 0 {
            None
        } else {
            Some(rng.below(2000))
        };
        match log.entries(i, hi, max) {
            Ok(v) => {
                assert!(!v.is_empty() || i == hi);
                let mut prev_term = 0;
                for (k, e) in v.iter().enumerate() {
                    check_entry(i + k as u64, e);
                    assert!(e.term >= prev_term, "terms go down in one read");
                    prev_term = e.term;
                }
                good += v.len() as u64;
            }
            Err(e) => assert!(allowed(&e), "entries({i}, {hi}): {e}"),
        }
        for r in log.iter(i, i + 5) {
            match r {
                Ok(e) => assert!(e.index >= i && e.data == data(e.index, e.term)),
                Err(e) => assert!(allowed(&e), "iter: {e}"),
            }
        }
    }
    good
}

fn run(opts: raftwal::Options, seed: u64, writes: u64) {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), opts.clone()).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let read = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..READERS)
        .map(|k| {
            let (log, done, read) = (Arc::clone(&log), Arc::clone(&done), Arc::clone(&read));
            std::thread::spawn(move || {
                let n = reader(&log, &done, seed + k as u64 + 1);
                read.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    let mut m = Model::new();
    let mut rng = Rng(seed);
    let mut term = 1;
    for _ in 0..writes {
        match rng.below(20) {
            // A conflicting suffix: cut and replace with a newer term.
            0..=2 if m.last() >= m.first => {
                let at = m.last() - rng.below((m.last() - m.first).min(60));
                term += 1;
                let es = entries(at, at + 1 + rng.below(8), term);
                let mut b = raftwal::WriteBatch::new();
                b.truncate_from(at);
                for e in &es {
                    b.push(e.index, e.term, &e.data).unwrap();
                }
                log.write(&mut b).unwrap();
                m.truncate_from(at);
                m.append(&es);
            }
            3 if m.last() >= m.first => {
                let at = m.last() + 1 - rng.below(30).min(m.last() + 1 - m.first);
                log.truncate_from_index(at).unwrap();
                m.truncate_from(at);
            }
            4 | 5 => {
                let at = m.first + rng.below(m.last() + 2 - m.first);
                log.compact(at).unwrap();
                m.compact(at);
            }
            6 if rng.below(10) == 0 => {
                term += 1;
                let next = m.last() + 1 + rng.below(50);
                log.reset(next, term).unwrap();
                m.reset(next, term);
            }
            _ => {
                let lo = m.last() + 1;
                let es = entries(lo, lo + 1 + rng.below(12), term);
                log.append(&es).unwrap();
                m.append(&es);
            }
        }
    }
    done.store(true, Ordering::Release);
    for r in readers {
        r.join().unwrap();
    }
    assert!(read.load(Ordering::Relaxed) > 0, "the readers read nothing");
    m.check(&log);
    drop(log);
    let log = Log::open(dir.path(), opts).unwrap();
    m.check(&log);
}

#[test]
fn readers_see_whole_correct_entries_while_writing() {
    run(opts(), 7, 150);
}

#[test]
fn readers_see_whole_correct_entries_with_manual_sync() {
    run(
        opts()
            .sync(SyncPolicy::Manual)
            .preallocate(Preallocate::None),
        99,
        300,
    );
}
