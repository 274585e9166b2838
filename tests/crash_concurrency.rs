//! Concurrency: readers (`get_entry`, `entries`, `term`, `iter`, `state`,
//! first and last index) run against a writer thread (appends, conflict
//! truncations, state blobs) and a compaction thread, on real files with
//! `SyncPolicy::Always`. Every read is checked against the model:
//!
//! - always: an entry read is the entry written at that index in that term,
//!   byte for byte; entries up to the commit watermark (which nothing
//!   truncates) have their one term; `Compacted` only below a requested
//!   compaction, `Unavailable` only past the commit watermark; no other
//!   error;
//! - when no write was in flight during the read: exactly what the model
//!   says.
//!
//! At the end the log is checked whole, and again after a reopen. Prints
//! `crash_concurrency: N reads checked ...` (see it with `--nocapture`).

#[path = "common/fs_sim.rs"]
mod fs_sim;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fs_sim::Rng;
use raftwal::{Entry, Error, Log, Options, WriteBatch};

const WRITER_OPS: u64 = 400;
const READERS: usize = 3;

/// The data of entry `index` written in `term` (each `(index, term)` is
/// written at most once: a cut always brings a higher term).
fn data(index: u64, term: u64) -> Vec<u8> {
    let len = 20 + ((index * 31 + term * 7) % 120) as usize;
    let mut d = format!("{index}@{term}:").into_bytes();
    d.extend((0..len).map(|k| (index as usize * 13 + term as usize * 5 + k) as u8));
    d
}

#[derive(Debug, Clone, Default)]
struct Model {
    first: u64,
    prev_term: u64,
    /// Terms of entries `first..`.
    terms: Vec<u64>,
    state: Option<Vec<u8>>,
}

impl Model {
    fn last(&self) -> u64 {
        self.first + self.terms.len() as u64 - 1
    }

    fn term(&self, i: u64) -> u64 {
        if i + 1 == self.first {
            self.prev_term
        } else {
            self.terms[(i - self.first) as usize]
        }
    }
}

/// What the threads share.
struct Shared {
    log: Log,
    model: Mutex<Arc<Model>>,
    /// Writes started and not yet reflected in the model.
    inflight: AtomicU64,
    /// Bumped after each write is reflected in the model.
    epoch: AtomicU64,
    /// Entries up to here are never cut (the "commit index").
    commit: AtomicU64,
    /// The highest compaction requested so far.
    compact_target: AtomicU64,
    done: AtomicBool,
    reads: AtomicU64,
    exact: AtomicU64,
    truncations: AtomicU64,
    compactions: AtomicU64,
}

impl Shared {
    fn snapshot(&self) -> Arc<Model> {
        Arc::clone(&self.model.lock().unwrap())
    }

    /// Runs a write and then applies it to the model.
    fn mutate(&self, write: impl FnOnce() -> raftwal::Result<()>, apply: impl FnOnce(&mut Model)) {
        self.inflight.fetch_add(1, SeqCst);
        write().unwrap();
        {
            let mut m = self.model.lock().unwrap();
            apply(Arc::make_mut(&mut m));
        }
        self.epoch.fetch_add(1, SeqCst);
        self.inflight.fetch_sub(1, SeqCst);
    }
}

fn writer(sh: &Shared, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut term = 1;
    for n in 0..WRITER_OPS {
        let m = sh.snapshot();
        let commit = sh.commit.load(SeqCst);
        match rng.below(10) {
            0..=5 => {
                let k = rng.range(1, 4);
                let from = m.last() + 1;
                if rng.chance(1, 10) {
                    term += 1;
                }
                let es: Vec<Entry> = (from..from + k)
                    .map(|i| Entry::new(i, term, data(i, term)))
                    .collect();
                sh.mutate(
                    || sh.log.append(&es),
                    |m| m.terms.extend(std::iter::repeat_n(term, k as usize)),
                );
            }
            6 | 7 if m.last() > commit.max(m.first) => {
                // A new leader cuts the uncommitted suffix.
                let at = rng.range(commit.max(m.first - 1) + 1, m.last());
                term += 1;
                let k = rng.range(1, 3);
                let mut b = WriteBatch::new();
                b.truncate_from(at);
                for i in at..at + k {
                    b.push(i, term, &data(i, term)).unwrap();
                }
                sh.mutate(
                    || sh.log.write(&mut b),
                    |m| {
                        m.terms.truncate((at - m.first) as usize);
                        m.terms.extend(std::iter::repeat_n(term, k as usize));
                    },
                );
                sh.truncations.fetch_add(1, SeqCst);
            }
            8 => {
                let s = format!("state {n}").into_bytes();
                let s2 = s.clone();
                sh.mutate(|| sh.log.set_state(s), |m| m.state = Some(s2));
            }
            _ => {
                // Advance the commit watermark: those entries stay.
                let c = rng.range(commit, m.last());
                sh.commit.store(c, SeqCst);
            }
        }
        std::thread::sleep(Duration::from_micros(rng.below(300)));
    }
}

fn compactor(sh: &Shared, seed: u64) {
    let mut rng = Rng::new(seed);
    while !sh.done.load(SeqCst) {
        std::thread::sleep(Duration::from_micros(rng.range(500, 3000)));
        let m = sh.snapshot();
        let hi = sh.commit.load(SeqCst).min(m.last()) + 1;
        if hi <= m.first + 2 {
            continue;
        }
        // Keep a few committed entries around for the readers.
        let c = rng.range(m.first + 1, hi - 2);
        sh.compact_target.fetch_max(c, SeqCst);
        sh.mutate(
            || sh.log.compact(c),
            |m| {
                if c > m.first {
                    m.prev_term = m.term(c - 1);
                    m.terms.drain(..(c - m.first) as usize);
                    m.first = c;
                }
            },
        );
        sh.compactions.fetch_add(1, SeqCst);
    }
}

/// Checks one entry read loosely; `commit` and `m` are from before the read.
fn check_entry(e: &Entry, i: u64, m: &Model, commit: u64, ctx: &str) {
    assert_eq!(e.index, i, "{ctx}");
    assert_eq!(
        &e.data[..],
        &data(i, e.term)[..],
        "{ctx}: entry {i} term {}",
        e.term
    );
    if i >= m.first && i <= commit.min(m.last()) {
        assert_eq!(e.term, m.term(i), "{ctx}: committed entry {i} changed term");
    }
}

fn check_err(e: &Error, i: u64, sh: &Shared, commit: u64, ctx: &str) {
    match e {
        Error::Compacted { .. } => assert!(
            i < sh.compact_target.load(SeqCst) || i < 1,
            "{ctx}: {i} compacted but no compaction reached it"
        ),
        Error::Unavailable { .. } => {
            assert!(
                i > commit,
                "{ctx}: {i} unavailable but the commit is {commit}"
            )
        }
        other => panic!("{ctx}: {other}"),
    }
}

fn reader(sh: &Shared, seed: u64) {
    let mut rng = Rng::new(seed);
    while !sh.done.load(SeqCst) {
        let e1 = sh.epoch.load(SeqCst);
        let quiet_before = sh.inflight.load(SeqCst) == 0;
        // The watermark first: the model taken after it holds the final
        // term of every entry up to it.
        let commit = sh.commit.load(SeqCst);
        let m = sh.snapshot();
        let lo_bound = m.first.saturating_sub(2).max(1);
        let i = rng.range(lo_bound, m.last() + 2);
        let kind = rng.below(6);
        // Do the read.
        let r_entry = (kind == 0).then(|| sh.log.get_entry(i));
        let (lo, hi) = (i, (i + rng.range(0, 12)).min(m.last() + 2));
        let max = rng.chance(1, 3).then(|| rng.below(400));
        let r_entries = (kind == 1).then(|| sh.log.entries(lo, hi, max));
        let r_term = (kind == 2).then(|| sh.log.term(i));
        let r_iter: Option<Vec<raftwal::Result<Entry>>> =
            (kind == 3).then(|| sh.log.iter(lo, hi).collect());
        let r_range = (kind == 4).then(|| (sh.log.first_index(), sh.log.last_index()));
        let r_state = (kind == 5).then(|| sh.log.state());
        let quiet = quiet_before && sh.inflight.load(SeqCst) == 0 && sh.epoch.load(SeqCst) == e1;
        let ctx = format!("reader {seed}, read {kind} at {i}");
        sh.reads.fetch_add(1, SeqCst);
        // Loose checks, always.
        if let Some(r) = &r_entry {
            match r {
                Ok(e) => check_entry(e, i, &m, commit, &ctx),
                Err(e) => check_err(e, i, sh, commit, &ctx),
            }
        }
        if let Some(r) = &r_entries {
            match r {
                Ok(v) => {
                    assert!(lo == hi || !v.is_empty(), "{ctx}: empty range read");
                    assert!(v.len() as u64 <= hi - lo, "{ctx}");
                    let mut size = 0;
                    for (k, e) in v.iter().enumerate() {
                        check_entry(e, lo + k as u64, &m, commit, &ctx);
                        if k > 0 {
                            assert!(e.term >= v[k - 1].term, "{ctx}: terms go back");
                        }
                        size += e.data.len() as u64;
                        if let Some(max) = max {
                            assert!(k == 0 || size <= max, "{ctx}: over max_bytes");
                        }
                    }
                }
                Err(e @ Error::Compacted { .. }) => check_err(e, lo, sh, commit, &ctx),
                Err(e) => check_err(e, hi - 1, sh, commit, &ctx),
            }
        }
        if let Some(r) = &r_term {
            match r {
                Ok(t) if i >= m.first && i <= commit.min(m.last()) => {
                    assert_eq!(*t, m.term(i), "{ctx}")
                }
                Ok(_) => {}
                Err(e) => check_err(e, i, sh, commit, &ctx),
            }
        }
        if let Some(items) = &r_iter {
            for (k, r) in items.iter().enumerate() {
                let at = lo.max(m.first) + k as u64;
                match r {
                    Ok(e) => check_entry(e, e.index, &m, commit, &ctx),
                    // The iterator starts at the first index when it is
                    // made, which a compaction may have moved since `m`:
                    // the error names the index it failed at.
                    Err(e) => {
                        let at = match e {
                            Error::Unavailable { index, .. } | Error::Compacted { index, .. } => {
                                *index
                            }
                            _ => at,
                        };
                        check_err(e, at, sh, commit, &ctx)
                    }
                }
            }
        }
        if !quiet {
            continue;
        }
        // Exact checks: nothing was written during the read.
        sh.exact.fetch_add(1, SeqCst);
        let (first, last) = (m.first, m.last());
        if let Some(r) = r_entry {
            match r {
                Ok(e) => {
                    assert!(
                        i >= first && i <= last,
                        "{ctx}: read {i} outside {first}..={last}"
                    );
                    assert_eq!(e.term, m.term(i), "{ctx}");
                }
                Err(Error::Compacted { .. }) => assert!(i < first, "{ctx}"),
                Err(Error::Unavailable { .. }) => assert!(i > last, "{ctx}"),
                Err(e) => panic!("{ctx}: {e}"),
            }
        }
        if let Some(r) = r_entries {
            match r {
                Ok(v) => {
                    assert!(lo >= first && hi <= last + 1, "{ctx}");
                    let want = match max {
                        None => (hi - lo) as usize,
                        Some(_) => v.len(),
                    };
                    assert_eq!(v.len(), want, "{ctx}");
                    for e in &v {
                        assert_eq!(e.term, m.term(e.index), "{ctx}");
                    }
                }
                Err(Error::Compacted { .. }) => assert!(lo < first, "{ctx}"),
                Err(Error::Unavailable { .. }) => assert!(hi > last + 1, "{ctx}"),
                Err(e) => panic!("{ctx}: {e}"),
            }
        }
        if let Some(r) = r_term {
            match r {
                Ok(t) => assert_eq!(t, m.term(i), "{ctx}"),
                Err(Error::Compacted { .. }) => assert!(i + 1 < first, "{ctx}"),
                Err(Error::Unavailable { .. }) => assert!(i > last, "{ctx}"),
                Err(e) => panic!("{ctx}: {e}"),
            }
        }
        if let Some(items) = r_iter {
            let want: Vec<u64> = (lo.max(first)..hi.min(last + 1)).collect();
            assert_eq!(items.len(), want.len(), "{ctx}");
            for (r, i) in items.into_iter().zip(want) {
                assert_eq!(r.unwrap().term, m.term(i), "{ctx}");
            }
        }
        if let Some(r) = r_range {
            assert_eq!(r, (first, last), "{ctx}");
        }
        if let Some(r) = r_state {
            assert_eq!(r.map(|s| s.to_vec()), m.state, "{ctx}");
        }
    }
}

fn check_whole(log: &Log, m: &Model, ctx: &str) {
    assert_eq!(
        (log.first_index(), log.last_index()),
        (m.first, m.last()),
        "{ctx}"
    );
    assert_eq!(log.term(m.first - 1).unwrap(), m.prev_term, "{ctx}");
    let all = log.entries(m.first, m.last() + 1, None).unwrap();
    assert_eq!(all.len(), m.terms.len(), "{ctx}");
    for (k, e) in all.iter().enumerate() {
        let i = m.first + k as u64;
        assert_eq!((e.index, e.term), (i, m.term(i)), "{ctx}");
        assert_eq!(&e.data[..], &data(i, e.term)[..], "{ctx}");
    }
    assert_eq!(log.state().map(|s| s.to_vec()), m.state, "{ctx}");
}

#[test]
fn readers_writer_truncations_and_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || Options::default().segment_size(4096);
    let log = Log::open(dir.path(), opts()).unwrap();
    log.append(&[Entry::new(1, 1, data(1, 1))]).unwrap();
    let sh = Shared {
        log,
        model: Mutex::new(Arc::new(Model {
            first: 1,
            prev_term: 0,
            terms: vec![1],
            state: None,
        })),
        inflight: AtomicU64::new(0),
        epoch: AtomicU64::new(0),
        commit: AtomicU64::new(0),
        compact_target: AtomicU64::new(0),
        done: AtomicBool::new(false),
        reads: AtomicU64::new(0),
        exact: AtomicU64::new(0),
        truncations: AtomicU64::new(0),
        compactions: AtomicU64::new(0),
    };
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..READERS)
            .map(|k| {
                let sh = &sh;
                s.spawn(move || reader(sh, 100 + k as u64))
            })
            .collect();
        let c = s.spawn(|| compactor(&sh, 7));
        let w = s.spawn(|| writer(&sh, 3));
        let w = w.join();
        sh.done.store(true, SeqCst);
        let c = c.join();
        let rs: Vec<_> = readers.into_iter().map(|r| r.join()).collect();
        if let Err(p) = w {
            std::panic::resume_unwind(p);
        }
        if let Err(p) = c {
            std::panic::resume_unwind(p);
        }
        for r in rs {
            if let Err(p) = r {
                std::panic::resume_unwind(p);
            }
        }
    });
    let m = sh.snapshot();
    check_whole(&sh.log, &m, "after the threads");
    let stats = sh.log.stats();
    let Shared {
        log,
        reads,
        exact,
        truncations,
        compactions,
        ..
    } = sh;
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    check_whole(&log, &m, "after a reopen");
    let (reads, exact) = (reads.into_inner(), exact.into_inner());
    eprintln!(
        "crash_concurrency: {reads} reads checked by {READERS} readers ({exact} exactly against a quiescent model), {WRITER_OPS} writer operations ({} truncations), {} compactions, {} segments, {} sync rounds",
        truncations.into_inner(),
        compactions.into_inner(),
        stats.segments,
        stats.sync_rounds
    );
    assert!(exact > 100, "too few reads ran between writes: {exact}");
}
