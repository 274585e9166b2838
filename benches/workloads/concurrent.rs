//! The workloads with more than one thread: W5 (one writer, durability
//! reported asynchronously) and W7 (four threads, group commit). They do
//! not fit the one-call-per-write [`Backend`](crate::backend::Backend)
//! loop, so each backend has its own function here.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use raft_engine::LogBatch;
use raftwal::{Log, Options, Ticket, WriteBatch};

use crate::backend::{encode_batch, Kind, REGION};
use crate::data::{EntryMaker, Rng, Sizes, SMALL_ENTRY, TERM, THREADS};
use crate::measure::{per_sec, Latencies};
use crate::report::Figures;

/// raw's frames' CRC salt in W7 (any fixed value).
const SALT: u32 = 0x5737;

/// W5 `pipeline`: one writer submits batches of one entry without waiting;
/// durability is reported asynchronously. raft-engine has no asynchronous
/// path, so its W1 loop (one synced write per batch) stands in, at W5's
/// size.
pub fn w5(kind: Kind, dir: &Path, s: &Sizes) -> Figures {
    match kind {
        Kind::RaftwalLog => w5_raftwal(dir, s),
        Kind::Raw => w5_raw(dir, s),
        Kind::RaftEngine => w5_engine(dir, s),
        other => panic!("W5 does not run on {}", other.name()),
    }
}

/// The figures of W5: entries per second from the first submit until the
/// last entry is durable, and each entry's submit-to-durable latency.
fn w5_figures(n: usize, took: Duration, mut ack: Latencies) -> Figures {
    let mut f = Figures::default();
    f.add("entries_per_s", per_sec(n as f64, took))
        .add("ack_p50_us", ack.quantile_us(0.5))
        .add("ack_p99_us", ack.quantile_us(0.99));
    f
}

/// raftwal: `Log::submit`, with a second thread waiting on the tickets in
/// order and recording when each write became durable.
fn w5_raftwal(dir: &Path, s: &Sizes) -> Figures {
    let log = Log::open(dir, Options::default()).expect("Log::open");
    let batches = EntryMaker::new(1, SMALL_ENTRY).batches(s.w5_batches, 1);
    let (tx, rx) = mpsc::channel::<(Instant, Ticket)>();
    let n = batches.len();
    let waiter = thread::spawn(move || {
        let mut ack = Latencies::with_capacity(n);
        let mut last = None;
        for (submitted, ticket) in rx {
            ticket.wait().expect("Ticket::wait");
            let now = Instant::now();
            ack.push(now - submitted);
            last = Some(now);
        }
        (ack, last)
    });
    let mut wb = WriteBatch::new();
    let start = Instant::now();
    for b in &batches {
        wb.clear();
        let e = &b.entries[0];
        wb.push(e.index, e.term, &e.data).expect("WriteBatch::push");
        let submitted = Instant::now();
        let ticket = log.submit(&mut wb).expect("Log::submit");
        tx.send((submitted, ticket)).expect("the waiter is alive");
    }
    drop(tx);
    let (ack, last) = waiter.join().expect("the waiter thread");
    let took = last.expect("at least one batch") - start;
    w5_figures(n, took, ack)
}

/// raw: a writer thread doing one `pwrite` per batch, and a syncer thread
/// looping `fdatasync`; a sync makes durable every batch written before it
/// started.
fn w5_raw(dir: &Path, s: &Sizes) -> Figures {
    let batches = EntryMaker::new(1, SMALL_ENTRY).batches(s.w5_batches, 1);
    let encoded: Vec<Vec<u8>> = batches.iter().map(|b| encode_batch(b).bytes).collect();
    let total: u64 = encoded.iter().map(|e| e.len() as u64).sum();
    std::fs::create_dir_all(dir).expect("create the raw directory");
    let file = crate::backend::create_raw_file(&dir.join("raw.log"));
    crate::backend::zero_fill(&file, 0, total);
    let file = Arc::new(file);
    let written = Arc::new(AtomicUsize::new(0));
    let n = encoded.len();
    let syncer = {
        let (file, written) = (Arc::clone(&file), Arc::clone(&written));
        thread::spawn(move || {
            let mut acks: Vec<Instant> = Vec::with_capacity(n);
            while acks.len() < n {
                let w = written.load(Ordering::Acquire);
                if w == acks.len() {
                    thread::yield_now();
                    continue;
                }
                file.sync_data().expect("raw fdatasync");
                acks.resize(w, Instant::now());
            }
            acks
        })
    };
    let mut submitted = Vec::with_capacity(n);
    let mut at = 0;
    let start = Instant::now();
    for (k, e) in encoded.iter().enumerate() {
        submitted.push(Instant::now());
        file.write_all_at(e, at).expect("raw pwrite");
        at += e.len() as u64;
        written.store(k + 1, Ordering::Release);
    }
    let acks = syncer.join().expect("the syncer thread");
    let mut ack = Latencies::with_capacity(n);
    for (a, s) in acks.iter().zip(&submitted) {
        ack.push(*a - *s);
    }
    w5_figures(n, acks[n - 1] - start, ack)
}

/// raft-engine: one synced write per batch (it has no asynchronous path).
fn w5_engine(dir: &Path, s: &Sizes) -> Figures {
    let engine = crate::backend::open_engine(dir);
    let batches = EntryMaker::new(1, SMALL_ENTRY).batches(s.w5_batches, 1);
    let mut lb = LogBatch::default();
    let mut ack = Latencies::with_capacity(batches.len());
    let start = Instant::now();
    for b in &batches {
        ack.time(|| {
            lb.add_entries::<crate::backend::RaftEntries>(REGION, &b.entries)
                .expect("LogBatch::add_entries");
            engine.write(&mut lb, true).expect("Engine::write");
        });
    }
    w5_figures(batches.len(), start.elapsed(), ack)
}

/// W7 `threads`: four threads each append one 256 B entry per call to one
/// log that assigns the indexes, each call returning once durable.
pub fn w7(kind: Kind, dir: &Path, s: &Sizes) -> Figures {
    let data: Vec<Vec<Vec<u8>>> = (0..THREADS)
        .map(|t| {
            let mut rng = Rng::new(0x5737 + t as u64);
            (0..s.w7_per_thread)
                .map(|_| rng.bytes(SMALL_ENTRY))
                .collect()
        })
        .collect();
    match kind {
        Kind::RaftwalLog => {
            let log = Log::open(dir, Options::default()).expect("Log::open");
            let mut f = threads(data, |_, d| {
                log.append_assigned(TERM, &[d])
                    .expect("Log::append_assigned");
            });
            let stats = log.stats();
            f.add(
                "entries_per_fsync",
                stats.durable_writes as f64 / stats.sync_rounds.max(1) as f64,
            );
            f
        }
        Kind::Raw => {
            let total = THREADS * s.w7_per_thread * (SMALL_ENTRY + 32);
            let group = GroupCommit::new(dir, total as u64);
            let mut f = threads(data, |_, d| {
                group.append(d);
            });
            f.add("entries_per_fsync", group.entries_per_sync());
            f
        }
        Kind::RaftEngine => {
            // raft-engine cannot assign indexes, and its groups need
            // consecutive ones: each thread writes its own Raft group (the
            // most favourable setup for its write-group commit).
            let engine = crate::backend::open_engine(dir);
            let next: Vec<AtomicUsize> = (0..THREADS).map(|_| AtomicUsize::new(1)).collect();
            threads(data, |t, d| {
                let index = next[t].fetch_add(1, Ordering::Relaxed) as u64;
                let mut e = raft::eraftpb::Entry::default();
                (e.index, e.term, e.data) = (index, TERM, d.to_vec().into());
                let mut lb = LogBatch::default();
                lb.add_entries::<crate::backend::RaftEntries>(REGION + t as u64, &[e])
                    .expect("LogBatch::add_entries");
                engine.write(&mut lb, true).expect("Engine::write");
            })
        }
        other => panic!("W7 does not run on {}", other.name()),
    }
}

/// Runs one thread per element of `data`, all starting together, each
/// calling `append(thread, item)` for its items and timing every call.
fn threads<F>(data: Vec<Vec<Vec<u8>>>, append: F) -> Figures
where
    F: Fn(usize, &[u8]) + Sync,
{
    let n: usize = data.iter().map(Vec::len).sum();
    let barrier = Barrier::new(data.len() + 1);
    let (took, mut lat) = thread::scope(|scope| {
        let handles: Vec<_> = data
            .iter()
            .enumerate()
            .map(|(t, items)| {
                let (barrier, append) = (&barrier, &append);
                scope.spawn(move || {
                    let mut lat = Latencies::with_capacity(items.len());
                    barrier.wait();
                    for d in items {
                        lat.time(|| append(t, d));
                    }
                    lat
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut all = Latencies::with_capacity(n);
        for h in handles {
            all.extend(h.join().expect("a W7 thread"));
        }
        (start.elapsed(), all)
    });
    let mut f = Figures::default();
    f.add("entries_per_s", per_sec(n as f64, took))
        .add("p50_us", lat.quantile_us(0.5))
        .add("p99_us", lat.quantile_us(0.99));
    f
}

/// raw's W7: a file shared by threads under a mutex, with leader/follower
/// group commit. A caller assigns its index and adds its frame to the
/// pending buffer under the lock; if no sync round is running it becomes the
/// leader: it takes the pending buffer, writes it with one `pwrite` and one
/// `fdatasync` outside the lock, then wakes everyone it covered. Others
/// wait for a round that covers them (or lead the next one).
struct GroupCommit {
    file: File,
    state: Mutex<GroupState>,
    done: Condvar,
}

#[derive(Default)]
struct GroupState {
    next_index: u64,
    pending: Vec<u8>,
    /// Appends added so far, and appends made durable.
    added: u64,
    durable: u64,
    /// Where the pending buffer goes.
    end: u64,
    leading: bool,
    rounds: u64,
}

impl GroupCommit {
    fn new(dir: &Path, capacity: u64) -> GroupCommit {
        std::fs::create_dir_all(dir).expect("create the raw directory");
        let file = crate::backend::create_raw_file(&dir.join("raw.log"));
        crate::backend::zero_fill(&file, 0, capacity);
        GroupCommit {
            file,
            state: Mutex::new(GroupState {
                next_index: 1,
                ..GroupState::default()
            }),
            done: Condvar::new(),
        }
    }

    /// Appends one entry; returns its index once it is durable.
    fn append(&self, data: &[u8]) -> u64 {
        let mut s = self.state.lock().expect("group state");
        let index = s.next_index;
        s.next_index += 1;
        raftwal::tools::frame::encode_entry(&mut s.pending, SALT, index, TERM, data);
        s.added += 1;
        let mine = s.added;
        while s.durable < mine {
            if s.leading {
                s = self.done.wait(s).expect("group state");
                continue;
            }
            s.leading = true;
            let buf = std::mem::take(&mut s.pending);
            let (at, upto) = (s.end, s.added);
            s.end += buf.len() as u64;
            drop(s);
            self.file.write_all_at(&buf, at).expect("raw pwrite");
            self.file.sync_data().expect("raw fdatasync");
            s = self.state.lock().expect("group state");
            s.durable = upto;
            s.leading = false;
            s.rounds += 1;
            if s.pending.is_empty() {
                s.pending = buf;
                s.pending.clear();
            }
            self.done.notify_all();
        }
        index
    }

    fn entries_per_sync(&self) -> f64 {
        let s = self.state.lock().expect("group state");
        s.durable as f64 / s.rounds.max(1) as f64
    }
}
