//! The single-writer write workloads W1–W4, W6 and T1, driven through
//! [`Backend`] so every store runs the same loop.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::backend::{self, Backend, Durability, Kind};
use crate::data::{
    Batch, EntryMaker, Sizes, BIG_BATCH, BIG_ENTRY, READY_ENTRIES, SMALL_ENTRY, TERM, WIDE_BATCH,
};
use crate::measure::{mb_per_sec, per_sec, Latencies};
use crate::report::Figures;

/// Writes `batches` (prepared first, untimed), timing each write.
fn timed_writes(b: &mut dyn Backend, batches: &[Batch]) -> (Duration, Latencies) {
    b.prepare(batches);
    let mut lat = Latencies::with_capacity(batches.len());
    let t = Instant::now();
    for batch in batches {
        lat.time(|| b.write(batch));
    }
    (t.elapsed(), lat)
}

/// Fills `b` with `entries` entries in batches of `per_batch`, untimed,
/// generating and preparing them about 64 MiB at a time to bound memory.
pub fn fill(b: &mut dyn Backend, maker: &mut EntryMaker, entries: usize, per_batch: usize) {
    let chunk = ((64 << 20) / maker.data_len().max(1)).max(per_batch);
    let mut left = entries;
    while left > 0 {
        let n = left.min(chunk);
        let batches: Vec<Batch> = (0..n.div_ceil(per_batch))
            .map(|k| maker.batch(per_batch.min(n - k * per_batch)))
            .collect();
        b.prepare(&batches);
        for batch in &batches {
            b.write(batch);
        }
        left -= n;
    }
}

/// W1 `sync-1`: batches of one 256 B entry, each durable.
pub fn w1(kind: Kind, dir: &Path, s: &Sizes) -> Figures {
    let mut b = backend::open(kind, dir, Durability::EachWrite);
    let batches = EntryMaker::new(1, SMALL_ENTRY).batches(s.w1_batches, 1);
    let (took, mut lat) = timed_writes(b.as_mut(), &batches);
    let mut f = Figures::default();
    f.add("entries_per_s", per_sec(batches.len() as f64, took))
        .add("p50_us", lat.quantile_us(0.5))
        .add("p99_us", lat.quantile_us(0.99))
        .add("p999_us", lat.quantile_us(0.999));
    f
}

/// W2 `sync-64`: batches of 64 entries of 256 B, each durable.
pub fn w2(kind: Kind, dir: &Path, s: &Sizes) -> Figures {
    let mut b = backend::open(kind, dir, Durability::EachWrite);
    let batches = EntryMaker::new(1, SMALL_ENTRY).batches(s.w2_batches, WIDE_BATCH);
    let (took, mut lat) = timed_writes(b.as_mut(), &batches);
    let entries = (batches.len() * WIDE_BATCH) as f64;
    let mut f = Figures::default();
    f.add("entries_per_s", per_sec(entries, took))
        .add("mb_per_s", mb_per_sec(entries * SMALL_ENTRY as f64, took))
        .add("p50_us", lat.quantile_us(0.5))
        .add("p99_us", lat.quantile_us(0.99));
    f
}

/// W3 `big`: batches of 16 entries of 16 KiB, each durable.
pub fn w3(kind: Kind, dir: &Path, s: &Sizes) -> Figures {
    let mut b = backend::open(kind, dir, Durability::EachWrite);
    let n = s.w3_bytes / (BIG_BATCH * BIG_ENTRY);
    let batches = EntryMaker::new(1, BIG_ENTRY).batches(n, BIG_BATCH);
    let (took, mut lat) = timed_writes(b.as_mut(), &batches);
    let mut f = Figures::default();
    f.add(
        "mb_per_s",
        mb_per_sec((n * BIG_BATCH * BIG_ENTRY) as f64, took),
    )
    .add("p50_us", lat.quantile_us(0.5))
    .add("p99_us", lat.quantile_us(0.99));
    f
}

/// W4 `nosync`: batches of 64 entries of 256 B, not synced; one sync at the
/// end, inside the timed region.
pub fn w4(kind: Kind, dir: &Path, s: &Sizes) -> Figures {
    let mut b = backend::open(kind, dir, Durability::OnSync);
    let batches = EntryMaker::new(1, SMALL_ENTRY).batches(s.w4_entries / WIDE_BATCH, WIDE_BATCH);
    b.prepare(&batches);
    let mut lat = Latencies::with_capacity(batches.len());
    let t = Instant::now();
    for batch in &batches {
        lat.time(|| b.write(batch));
    }
    let sync = Instant::now();
    b.sync();
    let (took, sync_took) = (t.elapsed(), sync.elapsed());
    let mut f = Figures::default();
    f.add(
        "entries_per_s",
        per_sec((batches.len() * WIDE_BATCH) as f64, took),
    )
    .add("max_batch_us", lat.max_us())
    .add("final_sync_ms", sync_took.as_secs_f64() * 1e3);
    f
}

/// W6 `ready`: one Raft Ready per write, 8 entries and a hard state,
/// durable together.
pub fn w6(kind: Kind, dir: &Path, s: &Sizes) -> Figures {
    let mut b = backend::open(kind, dir, Durability::EachWrite);
    let readies = EntryMaker::new(1, SMALL_ENTRY).readies(s.w6_readies, READY_ENTRIES);
    let (took, mut lat) = timed_writes(b.as_mut(), &readies);
    let mut f = Figures::default();
    f.add("readies_per_s", per_sec(readies.len() as f64, took))
        .add("p50_us", lat.quantile_us(0.5))
        .add("p99_us", lat.quantile_us(0.99));
    f
}

/// S1 `small-store` (raftwal's own, not in BENCH.md; issue 13): what a new
/// store and a lightly used one cost. Opening a new store (timed) and its
/// disk bytes (allocated blocks), then 100 Readies of one 16 B entry and a
/// hard state, closed and reopened (timed), and the disk bytes after.
pub fn s1(kind: Kind, dir: &Path, _s: &Sizes) -> Figures {
    let t = Instant::now();
    let mut b = backend::open(kind, dir, Durability::EachWrite);
    let open = t.elapsed();
    let new_disk = crate::measure::disk_usage(dir);
    let readies = EntryMaker::new(1, 16).readies(100, 1);
    b.prepare(&readies);
    for r in &readies {
        b.write(r);
    }
    b.close();
    let t = Instant::now();
    b.open();
    let reopen = t.elapsed();
    // Closed again: what the background threads (raftwal's preparer)
    // were doing is done.
    b.close();
    let used_disk = crate::measure::disk_usage(dir);
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    let mut f = Figures::default();
    f.add("new_open_ms", open.as_secs_f64() * 1e3)
        .add("new_disk_mib", mib(new_disk))
        .add("used_reopen_ms", reopen.as_secs_f64() * 1e3)
        .add("used_disk_mib", mib(used_disk));
    f
}

/// T1 `truncate`: replace the last 1,000 entries (a Raft conflict: the
/// same indexes, a higher term) in one durable write, 200 times.
pub fn t1(kind: Kind, dir: &Path, s: &Sizes) -> Figures {
    let mut b = backend::open(kind, dir, Durability::EachWrite);
    let mut maker = EntryMaker::new(1, SMALL_ENTRY);
    fill(b.as_mut(), &mut maker, s.t1_base, WIDE_BATCH);
    b.sync();
    let from = (s.t1_base - s.t1_tail + 1) as u64;
    let rounds: Vec<Batch> = (0..s.t1_rounds)
        .map(|r| {
            let mut m = EntryMaker::new(from, SMALL_ENTRY);
            let term = TERM + 1 + r as u64;
            Batch {
                entries: (0..s.t1_tail).map(|_| m.entry(term)).collect(),
                hard_state: None,
            }
        })
        .collect();
    let (took, mut lat) = timed_writes(b.as_mut(), &rounds);
    let mut f = Figures::default();
    f.add("ops_per_s", per_sec(rounds.len() as f64, took))
        .add("p50_us", lat.quantile_us(0.5))
        .add("p99_us", lat.quantile_us(0.99));
    f
}
