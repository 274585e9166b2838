//! What the workloads write: their sizes (full and quick) and the entries,
//! pseudo-random and incompressible, from a fixed seed.

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState};

/// Every workload's size. [`Sizes::FULL`] is BENCH.md's table;
/// [`Sizes::QUICK`] is a smoke test small enough for CI.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// W1: batches of one 256 B entry, synced.
    pub w1_batches: usize,
    /// W2: batches of 64 entries of 256 B, synced.
    pub w2_batches: usize,
    /// W3 (and R2's data): bytes of 16 KiB entries, in batches of 16, synced.
    pub w3_bytes: usize,
    /// W4 (and the data of R1, R3, R4, C1, M1): entries of 256 B in batches of 64.
    pub w4_entries: usize,
    /// W5: batches of one entry, submitted without waiting.
    pub w5_batches: usize,
    /// W6: Readies of 8 entries and a hard state.
    pub w6_readies: usize,
    /// W7: appends of one entry per thread.
    pub w7_per_thread: usize,
    /// R1: random single-entry reads.
    pub r1_reads: usize,
    /// T1: rounds of truncating and re-appending the last `t1_tail` entries.
    pub t1_rounds: usize,
    /// T1: entries cut and re-appended per round.
    pub t1_tail: usize,
    /// T1: entries in the log before the first round.
    pub t1_base: usize,
    /// The many-group workloads (MR1–MR7).
    pub many: ManySizes,
}

impl Sizes {
    /// BENCH.md's sizes.
    pub const FULL: Sizes = Sizes {
        w1_batches: 5_000,
        w2_batches: 2_000,
        w3_bytes: 512 << 20,
        w4_entries: 1_000_000,
        w5_batches: 20_000,
        w6_readies: 5_000,
        w7_per_thread: 5_000,
        r1_reads: 1_000_000,
        t1_rounds: 200,
        t1_tail: 1_000,
        t1_base: 10_000,
        many: ManySizes::FULL,
    };

    /// A smoke test: every workload and backend once, in seconds.
    pub const QUICK: Sizes = Sizes {
        w1_batches: 50,
        w2_batches: 50,
        w3_bytes: 50 * BIG_BATCH * BIG_ENTRY,
        w4_entries: 10_000,
        w5_batches: 50,
        w6_readies: 50,
        w7_per_thread: 50,
        r1_reads: 10_000,
        t1_rounds: 5,
        t1_tail: 1_000,
        t1_base: 2_000,
        many: ManySizes::QUICK,
    };
}

/// The data size of the small entries (W1, W2, W4–W7, T1).
pub const SMALL_ENTRY: usize = 256;
/// The data size of W3's entries.
pub const BIG_ENTRY: usize = 16 << 10;
/// W3's entries per batch.
pub const BIG_BATCH: usize = 16;
/// W2's and W4's entries per batch.
pub const WIDE_BATCH: usize = 64;
/// W6's entries per Ready.
pub const READY_ENTRIES: usize = 8;
/// W7's threads.
pub const THREADS: usize = 4;
/// The term of every entry (T1 raises it for re-appended entries).
pub const TERM: u64 = 1;

/// One write: entries with consecutive indexes, and a hard state for a Ready.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The entries, in index order.
    pub entries: Vec<Entry>,
    /// The hard state written with them (W6 only).
    pub hard_state: Option<HardState>,
}

/// A fast, seeded generator (SplitMix64): the same stream on every run and
/// for every backend, and incompressible output.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// The seed of all entry data.
const SEED: u64 = 0x5241_4654_5741_4C21;

/// Makes the entries of a workload: batches of `per_batch` entries of
/// `data_len` random bytes, term [`TERM`], indexes from `first` on.
#[derive(Debug)]
pub struct EntryMaker {
    rng: Rng,
    next_index: u64,
    data_len: usize,
}

impl EntryMaker {
    /// A maker whose first entry is `first`.
    pub fn new(first: u64, data_len: usize) -> EntryMaker {
        EntryMaker {
            rng: Rng::new(SEED),
            next_index: first,
            data_len,
        }
    }

    /// The data size of every entry made.
    pub fn data_len(&self) -> usize {
        self.data_len
    }

    /// One entry with the next index.
    pub fn entry(&mut self, term: u64) -> Entry {
        let e = Entry {
            index: self.next_index,
            term,
            data: self.rng.bytes(self.data_len).into(),
            ..Entry::default()
        };
        self.next_index += 1;
        e
    }

    /// A batch of `n` entries.
    pub fn batch(&mut self, n: usize) -> Batch {
        Batch {
            entries: (0..n).map(|_| self.entry(TERM)).collect(),
            hard_state: None,
        }
    }

    /// `batches` batches of `n` entries each.
    pub fn batches(&mut self, batches: usize, n: usize) -> Vec<Batch> {
        (0..batches).map(|_| self.batch(n)).collect()
    }

    /// `readies` Readies: `n` entries and a hard state committing them.
    pub fn readies(&mut self, readies: usize, n: usize) -> Vec<Batch> {
        (0..readies)
            .map(|_| {
                let mut b = self.batch(n);
                b.hard_state = Some(HardState {
                    term: TERM,
                    vote: 1,
                    commit: self.next_index - 1,
                    ..HardState::default()
                });
                b
            })
            .collect()
    }
}

/// A raft entry's protobuf encoding: what `RaftLogStore` stores as a log
/// entry's data.
pub fn encode_entry(e: &Entry) -> Vec<u8> {
    e.write_to_bytes().expect("a raft entry encodes")
}

/// A hard state's protobuf encoding.
pub fn encode_hard_state(hs: &HardState) -> Vec<u8> {
    hs.write_to_bytes().expect("a hard state encodes")
}

/// The sizes of the many-group workloads.
#[derive(Debug, Clone, Copy)]
pub struct ManySizes {
    /// MR1 (and MR6's data): groups, one Ready each per round.
    pub mr1_groups: usize,
    /// MR1: rounds.
    pub mr1_rounds: usize,
    /// MR2, MR7: groups, split evenly between the threads.
    pub mr2_groups: usize,
    /// MR2: Readies per thread.
    pub mr2_per_thread: usize,
    /// MR7: Readies per thread.
    pub mr7_per_thread: usize,
    /// MR4: groups of one entry each.
    pub mr4_groups: usize,
    /// MR4: groups that then get more entries.
    pub mr4_busy_groups: usize,
    /// MR4: entries added to each busy group.
    pub mr4_entries: usize,
    /// MR6: random single-entry reads.
    pub mr6_reads: usize,
}

impl ManySizes {
    /// BENCH.md's sizes.
    pub const FULL: ManySizes = ManySizes {
        mr1_groups: 1_000,
        mr1_rounds: 300,
        mr2_groups: 10_000,
        mr2_per_thread: 2_500,
        mr7_per_thread: 10_000,
        mr4_groups: 10_000,
        mr4_busy_groups: 1_000,
        mr4_entries: 100,
        mr6_reads: 1_000_000,
    };

    /// A smoke test.
    pub const QUICK: ManySizes = ManySizes {
        mr1_groups: 50,
        mr1_rounds: 20,
        mr2_groups: 200,
        mr2_per_thread: 50,
        mr7_per_thread: 200,
        mr4_groups: 1_000,
        mr4_busy_groups: 100,
        mr4_entries: 10,
        mr6_reads: 10_000,
    };
}
