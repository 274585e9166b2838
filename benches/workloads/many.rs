//! The many-group workloads of BENCH.md ("Many groups in one store"): MR1
//! `many-ready`, MR2 `many-threads`, MR7 `many-pipeline`, MR4
//! `many-memory` and MR6 `many-get`, against raftwal's `Engine`, `raw` and
//! raft-engine.
//!
//! - `raftwal`: one `Engine`, a `RaftLogStore` per group (`Engine::group`).
//!   MR1 persists each round with `RaftLogStore::persist_many` (one Ready
//!   per group, one record, one `fdatasync`: the Raft path, and what
//!   raft-engine's one `LogBatch` per round is); MR2 calls a group store's
//!   `persist`, MR7 its `submit`. MR4 writes through `EngineBatch` (entries
//!   and a state blob per group, as raft-engine's side does; no stores
//!   open, so only the engine's memory counts). MR6 reads with
//!   `Engine::get_entry` (`reads_per_s`) and through the group store's
//!   `raft::Storage::entries`, which decodes raft's `Entry` as raft-engine's
//!   `get_entry` does (`storage_reads_per_s`).
//! - `raw`: each write's bytes (a group frame, entry frames and a state
//!   frame per group, encoded before the clock starts) with one `pwrite`
//!   into a pre-zeroed file and one `fdatasync`; a flat in-memory index (per
//!   group, one packed offset and length per entry). MR2: leader/follower
//!   group commit; MR7: four writers and one syncer thread looping
//!   `fdatasync`.
//! - `raft-engine`: one `LogBatch` per write (`add_entries` and
//!   `put_message` of the HardState per group), `write(&mut batch, true)`,
//!   default configuration. MR7: its MR2 loop at MR7's size.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use raft::eraftpb::{Entry, HardState};
use raft::{GetEntriesContext, Storage};
use raft_engine::LogBatch;
use raftwal::tools::frame::{self, FrameType};
use raftwal::tools::proto;
use raftwal::{Engine, EngineBatch, GroupReady, Options, RaftLogStore, SyncPolicy, Ticket};

use crate::backend::{create_raw_file, open_engine, zero_fill, Kind, RaftEntries};
use crate::data::{encode_entry, encode_hard_state, Rng, Sizes, SMALL_ENTRY, TERM, THREADS};
use crate::measure::{self, per_sec, Latencies};
use crate::report::Figures;

/// MR1's entries per Ready.
const MR1_ENTRIES: usize = 4;
/// MR7's Readies in flight per thread.
const WINDOW: usize = 64;
/// MR4: groups per write while making the idle groups. The first write's
/// groups are not counted, so that buffers every backend sizes on its
/// first write are not taken for per-group memory.
const MR4_CHUNK_DIV: usize = 10;
/// MR6: the longest a backend reads (then the rate is over the reads done,
/// `reads_done`). raft-engine compresses each write as one block, and a
/// read of one entry of a 1,000-group write decompresses the whole ≈ 1 MB:
/// a million of them would take many minutes.
const MR6_BUDGET: Duration = Duration::from_secs(10);
/// raw's frames' CRC salt (any fixed value).
const SALT: u32 = 0x4d52_5721;
/// raft-engine's key for a group's HardState.
const HARD_STATE_KEY: &[u8] = b"hard_state";

/// One group's Ready: entries and the HardState committing them.
pub struct Ready {
    group: u64,
    entries: Vec<Entry>,
    hs: HardState,
}

/// Makes Readies for groups `1..=groups`, each group's indexes from 1 on,
/// with incompressible data from a fixed seed.
struct Maker {
    rng: Rng,
    next: Vec<u64>,
}

impl Maker {
    fn new(seed: u64, groups: usize) -> Maker {
        Maker {
            rng: Rng::new(seed),
            next: vec![1; groups],
        }
    }

    /// A Ready of `n` entries for `group`.
    fn ready(&mut self, group: u64, n: usize) -> Ready {
        let first = self.next[(group - 1) as usize];
        let entries: Vec<Entry> = (0..n as u64)
            .map(|k| Entry {
                index: first + k,
                term: TERM,
                data: self.rng.bytes(SMALL_ENTRY).into(),
                ..Entry::default()
            })
            .collect();
        let last = first + n as u64 - 1;
        self.next[(group - 1) as usize] = last + 1;
        Ready {
            group,
            entries,
            hs: HardState {
                term: TERM,
                vote: 1,
                commit: last,
                ..HardState::default()
            },
        }
    }

    /// One Ready of `n` entries for each of groups `1..=groups`.
    fn round(&mut self, groups: usize, n: usize) -> Vec<Ready> {
        (1..=groups as u64).map(|g| self.ready(g, n)).collect()
    }
}

/// raw's bytes for a Ready, appended to `buf`: a group frame, the entry
/// frames and a state frame (the shape of an engine record's part). Pushes
/// `(offset in buf, length)` of every entry frame onto `places`.
fn encode_ready(buf: &mut Vec<u8>, r: &Ready, places: &mut Vec<(u64, u64)>) {
    let op = proto::GroupOp {
        group: r.group,
        ..proto::GroupOp::default()
    };
    frame::encode_message(buf, FrameType::Group, SALT, &op);
    let salt = SALT ^ r.group as u32;
    for e in &r.entries {
        let at = buf.len();
        frame::encode_entry(buf, salt, e.index, e.term, &encode_entry(e));
        places.push((at as u64, (buf.len() - at) as u64));
    }
    let state = proto::State {
        data: encode_hard_state(&r.hs).into(),
    };
    frame::encode_message(buf, FrameType::State, salt, &state);
}

/// One encoded write of raw: bytes, and the entries' places in them.
struct RawWrite {
    bytes: Vec<u8>,
    /// `(group, offset in bytes, length)` per entry, in order.
    places: Vec<(u64, u64, u64)>,
}

fn encode_write(readies: &[Ready]) -> RawWrite {
    let mut w = RawWrite {
        bytes: Vec::new(),
        places: Vec::new(),
    };
    let mut p = Vec::new();
    for r in readies {
        p.clear();
        encode_ready(&mut w.bytes, r, &mut p);
        w.places
            .extend(p.iter().map(|&(at, len)| (r.group, at, len)));
    }
    w
}

/// raw's index: per group (a flat vector by group id), one `u64` per entry,
/// its frame's offset (high 40 bits) and length (low 24 bits). Indexes
/// start at 1.
#[derive(Default)]
struct RawIndex(Vec<Vec<u64>>);

impl RawIndex {
    fn add(&mut self, group: u64, at: u64, len: u64) {
        let slot = (group - 1) as usize;
        if slot >= self.0.len() {
            self.0.resize_with(slot + 1, Vec::new);
        }
        self.0[slot].push(at << 24 | len);
    }

    /// Offset and length of `group`'s entry `index`.
    fn place(&self, group: u64, index: u64) -> (u64, usize) {
        let p = self.0[(group - 1) as usize][(index - 1) as usize];
        (p >> 24, (p & 0xff_ffff) as usize)
    }

    fn bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<Vec<u64>>()
            + self.0.iter().map(|v| v.capacity() * 8).sum::<usize>()
    }
}

/// A store of many groups written one round (one write for many groups) at
/// a time, from one thread: MR1, MR4, MR6.
trait ManyStore {
    /// Called, untimed, before `write` with the same Readies.
    fn prepare(&mut self, _readies: &[Ready]) {}
    /// Writes the Readies as one write (durable on return if synced).
    fn write(&mut self, readies: &[Ready]);
    /// Makes every write durable.
    fn sync(&mut self);
    /// Reads `group`'s entry `index`; returns its size.
    fn get(&mut self, group: u64, index: u64) -> usize;
    /// The same through `raft::Storage`, where the backend has one.
    fn storage_get(&mut self, _group: u64, _index: u64) -> Option<usize> {
        None
    }
    /// The backend's own count of its index memory, if it has one.
    fn index_bytes(&self) -> Option<usize> {
        None
    }
}

/// raftwal's options for `kind` (`raftwal` or a `--variants` variant).
fn raftwal_options(kind: Kind, sync: SyncPolicy) -> Options {
    let o = Options::default().sync(sync);
    match kind {
        Kind::Variant(i) => crate::variant::selected()[i].apply(o),
        _ => o,
    }
}

/// raftwal: an engine with a store per group (MR1, MR6), or written
/// through `EngineBatch` with no stores (`direct`, MR4).
struct RaftwalMany {
    engine: Arc<Engine>,
    stores: Vec<RaftLogStore>,
    batch: EngineBatch,
}

impl RaftwalMany {
    fn new(kind: Kind, dir: &Path, groups: usize, synced: bool, direct: bool) -> RaftwalMany {
        let sync = if synced {
            SyncPolicy::Always
        } else {
            SyncPolicy::Manual
        };
        let engine =
            Arc::new(Engine::open(dir, raftwal_options(kind, sync)).expect("Engine::open"));
        let stores = match direct {
            true => Vec::new(),
            false => open_stores(&engine, groups),
        };
        RaftwalMany {
            engine,
            stores,
            batch: EngineBatch::new(),
        }
    }
}

/// A store for each of groups `1..=groups`.
fn open_stores(engine: &Arc<Engine>, groups: usize) -> Vec<RaftLogStore> {
    (1..=groups as u64)
        .map(|g| engine.group(g).expect("Engine::group"))
        .collect()
}

impl ManyStore for RaftwalMany {
    fn write(&mut self, readies: &[Ready]) {
        if self.stores.is_empty() {
            let b = &mut self.batch;
            b.clear();
            for r in readies {
                let wb = b.group(r.group);
                for e in &r.entries {
                    wb.push(e.index, e.term, &encode_entry(e))
                        .expect("WriteBatch::push");
                }
                wb.set_state(encode_hard_state(&r.hs));
            }
            self.engine.write(b).expect("Engine::write");
            return;
        }
        let parts: Vec<GroupReady<'_>> = readies
            .iter()
            .map(|r| GroupReady {
                store: &self.stores[(r.group - 1) as usize],
                entries: &r.entries,
                hard_state: Some(&r.hs),
                conf_state: None,
            })
            .collect();
        RaftLogStore::persist_many(&parts).expect("RaftLogStore::persist_many");
    }

    fn sync(&mut self) {
        self.engine.sync().expect("Engine::sync");
    }

    fn get(&mut self, group: u64, index: u64) -> usize {
        self.engine
            .get_entry(group, index)
            .expect("Engine::get_entry")
            .data
            .len()
    }

    fn storage_get(&mut self, group: u64, index: u64) -> Option<usize> {
        let got = self.stores[(group - 1) as usize]
            .entries(index, index + 1, None, GetEntriesContext::empty(false))
            .expect("RaftLogStore::entries");
        Some(got[0].data.len())
    }

    fn index_bytes(&self) -> Option<usize> {
        Some(self.engine.index_memory_bytes())
    }
}

/// raw: one `pwrite` and (synced) one `fdatasync` per write.
struct RawMany {
    file: File,
    synced: bool,
    zeroed: u64,
    end: u64,
    index: RawIndex,
    prepared: Option<RawWrite>,
}

impl RawMany {
    fn new(dir: &Path, synced: bool) -> RawMany {
        RawMany {
            file: create_raw_file(&dir.join("raw.log")),
            synced,
            zeroed: 0,
            end: 0,
            index: RawIndex::default(),
            prepared: None,
        }
    }
}

impl ManyStore for RawMany {
    fn prepare(&mut self, readies: &[Ready]) {
        let w = encode_write(readies);
        let need = self.end + w.bytes.len() as u64;
        if need > self.zeroed {
            // Zero-fill ahead (in page-sized writes, see raw.rs), so that
            // most writes find their space ready.
            let to = need + (32 << 20);
            zero_fill(&self.file, self.zeroed, to);
            self.zeroed = to;
        }
        self.prepared = Some(w);
    }

    fn write(&mut self, _readies: &[Ready]) {
        let w = self.prepared.take().expect("raw: prepare() before write()");
        self.file
            .write_all_at(&w.bytes, self.end)
            .expect("raw pwrite");
        for &(g, at, len) in &w.places {
            self.index.add(g, self.end + at, len);
        }
        self.end += w.bytes.len() as u64;
        if self.synced {
            self.file.sync_data().expect("raw fdatasync");
        }
    }

    fn sync(&mut self) {
        self.file.sync_data().expect("raw fdatasync");
    }

    fn get(&mut self, group: u64, index: u64) -> usize {
        let (at, len) = self.index.place(group, index);
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, at).expect("raw pread");
        buf.len()
    }

    fn index_bytes(&self) -> Option<usize> {
        Some(self.index.bytes())
    }
}

/// raft-engine: one `LogBatch` per write.
struct EngineMany {
    engine: raft_engine::Engine,
    batch: LogBatch,
    synced: bool,
}

/// Adds a Ready to a raft-engine batch: its entries and its HardState.
fn add_ready(batch: &mut LogBatch, r: &Ready) {
    batch
        .add_entries::<RaftEntries>(r.group, &r.entries)
        .expect("LogBatch::add_entries");
    batch
        .put_message(r.group, HARD_STATE_KEY.to_vec(), &r.hs)
        .expect("LogBatch::put_message");
}

impl ManyStore for EngineMany {
    fn write(&mut self, readies: &[Ready]) {
        for r in readies {
            add_ready(&mut self.batch, r);
        }
        self.engine
            .write(&mut self.batch, self.synced)
            .expect("raft_engine::Engine::write");
    }

    fn sync(&mut self) {
        // `Engine::sync` does nothing in 0.4.2 (backend/engine.rs).
        self.batch
            .put(1, b"sync".to_vec(), Vec::new())
            .expect("LogBatch::put");
        self.engine
            .write(&mut self.batch, true)
            .expect("raft_engine::Engine::write");
    }

    fn get(&mut self, group: u64, index: u64) -> usize {
        self.engine
            .get_entry::<RaftEntries>(group, index)
            .expect("raft_engine::Engine::get_entry")
            .expect("the entry exists")
            .data
            .len()
    }
}

/// Opens a new store of `kind` for groups `1..=groups`.
fn open_many(
    kind: Kind,
    dir: &Path,
    groups: usize,
    synced: bool,
    direct: bool,
) -> Box<dyn ManyStore> {
    match kind {
        Kind::Raftwal | Kind::Variant(_) => {
            Box::new(RaftwalMany::new(kind, dir, groups, synced, direct))
        }
        Kind::Raw => Box::new(RawMany::new(dir, synced)),
        Kind::RaftEngine => Box::new(EngineMany {
            engine: open_engine(dir),
            batch: LogBatch::default(),
            synced,
        }),
        other => panic!("the many-group workloads do not run on {}", other.name()),
    }
}

/// MR1 `many-ready`: each round one Ready (4 entries and a HardState) per
/// group, all groups in one synced write. Making a round's entries is not
/// timed; the rate is over the time spent in the writes.
pub fn mr1(kind: Kind, dir: &Path, s: &Sizes) -> Figures {
    let m = &s.many;
    let mut store = open_many(kind, dir, m.mr1_groups, true, false);
    let mut maker = Maker::new(0x4d52_0031, m.mr1_groups);
    let mut lat = Latencies::with_capacity(m.mr1_rounds);
    let mut busy = Duration::ZERO;
    for _ in 0..m.mr1_rounds {
        let round = maker.round(m.mr1_groups, MR1_ENTRIES);
        store.prepare(&round);
        let t = Instant::now();
        store.write(&round);
        let d = t.elapsed();
        busy += d;
        lat.push(d);
    }
    let mut f = Figures::default();
    f.add(
        "readies_per_s",
        per_sec((m.mr1_groups * m.mr1_rounds) as f64, busy),
    )
    .add("round_p50_us", lat.quantile_us(0.5))
    .add("round_p99_us", lat.quantile_us(0.99));
    f
}

/// MR6 `many-get`: random single-entry reads across MR1's groups (written
/// unsynced, then synced once; warm), for at most [`MR6_BUDGET`].
pub fn mr6(kind: Kind, dir: &Path, s: &Sizes) -> Figures {
    let m = &s.many;
    let mut store = open_many(kind, dir, m.mr1_groups, false, false);
    let mut maker = Maker::new(0x4d52_0031, m.mr1_groups);
    for _ in 0..m.mr1_rounds {
        let round = maker.round(m.mr1_groups, MR1_ENTRIES);
        store.prepare(&round);
        store.write(&round);
    }
    store.sync();
    let last = (m.mr1_rounds * MR1_ENTRIES) as u64;
    let mut rng = Rng::new(0x4d52_0036);
    let reads: Vec<(u64, u64)> = (0..m.mr6_reads)
        .map(|_| (rng.range(1, m.mr1_groups as u64), rng.range(1, last)))
        .collect();
    let mut f = Figures::default();
    let (done, took) = timed_reads(&reads, |g, i| {
        store.get(g, i);
        true
    });
    f.add("reads_per_s", per_sec(done as f64, took))
        .add("reads_done", done as f64);
    let (done, took) = timed_reads(&reads, |g, i| store.storage_get(g, i).is_some());
    if done > 0 {
        f.add("storage_reads_per_s", per_sec(done as f64, took));
    }
    f
}

/// Reads `reads` in order with `read` until it returns false or
/// [`MR6_BUDGET`] has passed; returns how many it read and the time taken.
fn timed_reads(reads: &[(u64, u64)], mut read: impl FnMut(u64, u64) -> bool) -> (usize, Duration) {
    let t = Instant::now();
    let mut done = 0;
    for chunk in reads.chunks(1_000) {
        for &(g, i) in chunk {
            if !read(g, i) {
                return (done, t.elapsed());
            }
            done += 1;
        }
        if t.elapsed() > MR6_BUDGET {
            break;
        }
    }
    (done, t.elapsed())
}

/// MR4 `many-memory`: live heap bytes (the counting allocator) held per
/// idle group after `mr4_groups` groups got one entry each (in writes of a
/// tenth of them; the first write is not counted), and per entry after
/// `mr4_entries` more to each of `mr4_busy_groups` groups (one write of one
/// entry per busy group each). raftwal writes through `EngineBatch`.
pub fn mr4(kind: Kind, dir: &Path, s: &Sizes) -> Figures {
    let m = &s.many;
    let mut maker = Maker::new(0x4d52_0034, m.mr4_groups);
    let idle = maker.round(m.mr4_groups, 1);
    let busy: Vec<Vec<Ready>> = (0..m.mr4_entries)
        .map(|_| maker.round(m.mr4_busy_groups, 1))
        .collect();
    let mut store = open_many(kind, dir, m.mr4_groups, true, true);
    let chunk = (m.mr4_groups / MR4_CHUNK_DIV).max(1);
    let mut chunks = idle.chunks(chunk);
    let first = chunks.next().expect("at least one group");
    store.prepare(first);
    store.write(first);
    let (h0, i0) = (measure::heap_bytes(), store.index_bytes());
    for c in chunks {
        store.prepare(c);
        store.write(c);
    }
    let (h1, i1) = (measure::heap_bytes(), store.index_bytes());
    for round in &busy {
        store.prepare(round);
        store.write(round);
    }
    let (h2, i2) = (measure::heap_bytes(), store.index_bytes());
    let groups = (m.mr4_groups - first.len()) as f64;
    let entries = (m.mr4_busy_groups * m.mr4_entries) as f64;
    let mut f = Figures::default();
    f.add("bytes_per_idle_group", (h1 - h0) as f64 / groups)
        .add("bytes_per_entry", (h2 - h1) as f64 / entries);
    if let (Some(i0), Some(i1), Some(i2)) = (i0, i1, i2) {
        f.add(
            "index_bytes_per_idle_group",
            (i1 as f64 - i0 as f64) / groups,
        )
        .add("index_bytes_per_entry", (i2 as f64 - i1 as f64) / entries);
    }
    f
}

/// MR2's and MR7's Readies: per thread, `n` Readies of one entry, each for
/// a random group the thread owns (thread `t` owns the groups `g` with
/// `(g - 1) % THREADS == t`).
fn thread_readies(groups: usize, n: usize) -> Vec<Vec<Ready>> {
    let mut maker = Maker::new(0x4d52_0032, groups);
    let mut rng = Rng::new(0x4d52_3272);
    let owned = (groups / THREADS) as u64;
    (0..THREADS)
        .map(|t| {
            (0..n)
                .map(|_| {
                    let k = rng.range(0, owned - 1);
                    maker.ready(k * THREADS as u64 + t as u64 + 1, 1)
                })
                .collect()
        })
        .collect()
}

/// Runs one thread per element of `items`, all starting together, each
/// calling `persist` for its items in order and timing every call; the
/// figures are `readies_per_s`, `{prefix}p50_us` and `{prefix}p99_us`.
fn threads<T, F>(items: &[Vec<T>], prefix: &str, persist: F) -> Figures
where
    T: Sync,
    F: Fn(&T) + Sync,
{
    let n: usize = items.iter().map(Vec::len).sum();
    let barrier = Barrier::new(items.len() + 1);
    let (took, mut lat) = thread::scope(|scope| {
        let handles: Vec<_> = items
            .iter()
            .map(|mine| {
                let (barrier, persist) = (&barrier, &persist);
                scope.spawn(move || {
                    let mut lat = Latencies::with_capacity(mine.len());
                    barrier.wait();
                    for r in mine {
                        lat.time(|| persist(r));
                    }
                    lat
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut all = Latencies::with_capacity(n);
        for h in handles {
            all.extend(h.join().expect("a writer thread"));
        }
        (start.elapsed(), all)
    });
    let mut f = Figures::default();
    f.add("readies_per_s", per_sec(n as f64, took))
        .add(format!("{prefix}p50_us"), lat.quantile_us(0.5))
        .add(format!("{prefix}p99_us"), lat.quantile_us(0.99));
    f
}

/// raft-engine's loop of MR2 (and MR7): one synced `LogBatch` per Ready.
fn engine_threads(dir: &Path, readies: &[Vec<Ready>], prefix: &str) -> Figures {
    let engine = open_engine(dir);
    threads(readies, prefix, |r| {
        let mut lb = LogBatch::default();
        add_ready(&mut lb, r);
        engine
            .write(&mut lb, true)
            .expect("raft_engine::Engine::write");
    })
}

/// Each Ready's raw encoding, per thread.
fn encode_each(readies: &[Vec<Ready>]) -> Vec<Vec<RawWrite>> {
    readies
        .iter()
        .map(|v| {
            v.iter()
                .map(|r| encode_write(std::slice::from_ref(r)))
                .collect()
        })
        .collect()
}

/// The bytes of all of `encoded`.
fn total_bytes(encoded: &[Vec<RawWrite>]) -> u64 {
    encoded.iter().flatten().map(|w| w.bytes.len() as u64).sum()
}

/// MR2 `many-threads`: 4 threads, each persisting single-group Readies (1
/// entry and a HardState) of random groups it owns, each call blocking
/// until durable.
pub fn mr2(kind: Kind, dir: &Path, s: &Sizes) -> Figures {
    let m = &s.many;
    let readies = thread_readies(m.mr2_groups, m.mr2_per_thread);
    match kind {
        Kind::Raftwal | Kind::Variant(_) => {
            let opts = raftwal_options(kind, SyncPolicy::Always);
            let engine = Arc::new(Engine::open(dir, opts).expect("Engine::open"));
            let stores = open_stores(&engine, m.mr2_groups);
            threads(&readies, "", |r| {
                stores[(r.group - 1) as usize]
                    .persist(&r.entries, Some(&r.hs), None)
                    .expect("RaftLogStore::persist");
            })
        }
        Kind::Raw => {
            let encoded = encode_each(&readies);
            let group = GroupCommit::new(dir, total_bytes(&encoded));
            let mut f = threads(&encoded, "", |w| group.append(w));
            f.add("readies_per_fsync", group.readies_per_sync());
            f
        }
        Kind::RaftEngine => engine_threads(dir, &readies, ""),
        other => panic!("MR2 does not run on {}", other.name()),
    }
}

/// raw's MR2: one file shared by the threads, leader/follower group commit
/// (as W7's in concurrent.rs, over whole encoded Readies). A caller adds
/// its bytes to the pending buffer and its entries to the index under the
/// lock; if no round is running it leads one: one `pwrite` of the pending
/// buffer and one `fdatasync`, outside the lock, then wakes the others.
struct GroupCommit {
    file: File,
    state: Mutex<CommitState>,
    done: Condvar,
}

#[derive(Default)]
struct CommitState {
    pending: Vec<u8>,
    added: u64,
    durable: u64,
    /// Where the pending buffer goes.
    end: u64,
    leading: bool,
    rounds: u64,
    index: RawIndex,
}

impl GroupCommit {
    fn new(dir: &Path, capacity: u64) -> GroupCommit {
        let file = create_raw_file(&dir.join("raw.log"));
        zero_fill(&file, 0, capacity);
        GroupCommit {
            file,
            state: Mutex::new(CommitState::default()),
            done: Condvar::new(),
        }
    }

    /// Appends one encoded Ready; returns once it is durable.
    fn append(&self, w: &RawWrite) {
        let mut s = self.state.lock().expect("group state");
        let at = s.end + s.pending.len() as u64;
        s.pending.extend_from_slice(&w.bytes);
        for &(g, off, len) in &w.places {
            s.index.add(g, at + off, len);
        }
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
    }

    fn readies_per_sync(&self) -> f64 {
        let s = self.state.lock().expect("group state");
        s.durable as f64 / s.rounds.max(1) as f64
    }
}

/// MR7 `many-pipeline`: MR2 with up to 64 Readies in flight per thread.
/// raftwal: each writer calls the group store's `submit` and hands the
/// ticket to its own waiter thread, which waits the tickets in order; raw:
/// four writers (`pwrite` at a reserved offset) and one syncer looping
/// `fdatasync`; raft-engine (no asynchronous path): its MR2 loop at MR7's
/// size. `readies_per_s` is from the first write until the last Ready is
/// durable; `ack` is each Ready's time from its write call to durable.
pub fn mr7(kind: Kind, dir: &Path, s: &Sizes) -> Figures {
    let m = &s.many;
    let readies = thread_readies(m.mr2_groups, m.mr7_per_thread);
    match kind {
        Kind::Raftwal | Kind::Variant(_) => {
            let opts = raftwal_options(kind, SyncPolicy::Always);
            let engine = Arc::new(Engine::open(dir, opts).expect("Engine::open"));
            let stores = open_stores(&engine, m.mr2_groups);
            mr7_raftwal(&stores, &readies)
        }
        Kind::Raw => mr7_raw(dir, &readies),
        Kind::RaftEngine => engine_threads(dir, &readies, "ack_"),
        other => panic!("MR7 does not run on {}", other.name()),
    }
}

/// MR7's figures.
fn mr7_figures(n: usize, took: Duration, mut ack: Latencies) -> Figures {
    let mut f = Figures::default();
    f.add("readies_per_s", per_sec(n as f64, took))
        .add("ack_p50_us", ack.quantile_us(0.5))
        .add("ack_p99_us", ack.quantile_us(0.99));
    f
}

fn mr7_raftwal(stores: &[RaftLogStore], readies: &[Vec<Ready>]) -> Figures {
    let n: usize = readies.iter().map(Vec::len).sum();
    let barrier = Barrier::new(readies.len() + 1);
    let (start, results) = thread::scope(|scope| {
        let handles: Vec<_> = readies
            .iter()
            .map(|mine| {
                let barrier = &barrier;
                // The waiter holds one ticket while 63 wait in the
                // channel: 64 in flight.
                let (tx, rx) = mpsc::sync_channel::<(Instant, Ticket)>(WINDOW - 1);
                let waiter = scope.spawn(move || {
                    let mut ack = Latencies::with_capacity(mine.len());
                    let mut last = None;
                    for (submitted, ticket) in rx {
                        ticket.wait().expect("Ticket::wait");
                        let now = Instant::now();
                        ack.push(now - submitted);
                        last = Some(now);
                    }
                    (ack, last)
                });
                scope.spawn(move || {
                    barrier.wait();
                    for r in mine {
                        let submitted = Instant::now();
                        let ticket = stores[(r.group - 1) as usize]
                            .submit(&r.entries, Some(&r.hs), None)
                            .expect("RaftLogStore::submit");
                        tx.send((submitted, ticket)).expect("the waiter is alive");
                    }
                });
                waiter
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("a waiter thread"))
            .collect();
        (start, results)
    });
    let mut ack = Latencies::with_capacity(n);
    let mut last = start;
    for (a, l) in results {
        ack.extend(a);
        last = last.max(l.expect("at least one Ready"));
    }
    mr7_figures(n, last - start, ack)
}

fn mr7_raw(dir: &Path, readies: &[Vec<Ready>]) -> Figures {
    let encoded = encode_each(readies);
    let file = create_raw_file(&dir.join("raw.log"));
    zero_fill(&file, 0, total_bytes(&encoded));
    let n: usize = encoded.iter().map(Vec::len).sum();
    let end = AtomicU64::new(0);
    let written: Vec<AtomicUsize> = (0..THREADS).map(|_| AtomicUsize::new(0)).collect();
    let durable: Vec<AtomicUsize> = (0..THREADS).map(|_| AtomicUsize::new(0)).collect();
    let barrier = Barrier::new(encoded.len() + 1);
    let (start, rounds, submitted) = thread::scope(|scope| {
        let syncer = scope.spawn(|| {
            // (when, how many of each writer's Readies it made durable)
            let mut rounds: Vec<(Instant, Vec<usize>)> = Vec::new();
            let mut done = vec![0usize; THREADS];
            loop {
                let snap: Vec<usize> = written.iter().map(|w| w.load(Ordering::Acquire)).collect();
                if snap == done {
                    if done.iter().sum::<usize>() == n {
                        break;
                    }
                    thread::yield_now();
                    continue;
                }
                file.sync_data().expect("raw fdatasync");
                let now = Instant::now();
                for (d, &k) in durable.iter().zip(&snap) {
                    d.store(k, Ordering::Release);
                }
                done.clone_from(&snap);
                rounds.push((now, snap));
            }
            rounds
        });
        let writers: Vec<_> = encoded
            .iter()
            .enumerate()
            .map(|(t, mine)| {
                let (barrier, file, end) = (&barrier, &file, &end);
                let (written, durable) = (&written[t], &durable[t]);
                scope.spawn(move || {
                    let mut submitted = Vec::with_capacity(mine.len());
                    let mut index = RawIndex::default();
                    barrier.wait();
                    for (k, w) in mine.iter().enumerate() {
                        while k >= durable.load(Ordering::Acquire) + WINDOW {
                            thread::yield_now();
                        }
                        submitted.push(Instant::now());
                        let at = end.fetch_add(w.bytes.len() as u64, Ordering::Relaxed);
                        file.write_all_at(&w.bytes, at).expect("raw pwrite");
                        for &(g, off, len) in &w.places {
                            index.add(g, at + off, len);
                        }
                        written.store(k + 1, Ordering::Release);
                    }
                    submitted
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let submitted: Vec<Vec<Instant>> = writers
            .into_iter()
            .map(|h| h.join().expect("a raw writer"))
            .collect();
        (start, syncer.join().expect("the raw syncer"), submitted)
    });
    let mut ack = Latencies::with_capacity(n);
    for (t, subs) in submitted.iter().enumerate() {
        let mut r = 0;
        for (k, sub) in subs.iter().enumerate() {
            while rounds[r].1[t] <= k {
                r += 1;
            }
            ack.push(rounds[r].0 - *sub);
        }
    }
    let last = rounds.last().expect("at least one sync").0;
    let mut f = mr7_figures(n, last - start, ack);
    f.add("readies_per_fsync", n as f64 / rounds.len() as f64);
    f
}
