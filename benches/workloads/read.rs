//! The workloads on an existing log: reads (R1, R4), recovery (R2, R3),
//! compaction (C1) and the memory of the index (M1). Building the log they
//! work on is not timed.

use std::path::Path;
use std::time::Instant;

use crate::backend::{self, Backend, Durability, Kind};
use crate::data::{EntryMaker, Rng, Sizes, BIG_BATCH, BIG_ENTRY, SMALL_ENTRY, WIDE_BATCH};
use crate::measure::{self, mb_per_sec, per_sec, Latencies};
use crate::report::Figures;
use crate::write::fill;

/// A backend holding W4's log: `w4_entries` entries of 256 B, durable.
fn small_log(kind: Kind, dir: &Path, s: &Sizes) -> Box<dyn Backend> {
    let mut b = backend::open(kind, dir, Durability::OnSync);
    fill(
        b.as_mut(),
        &mut EntryMaker::new(1, SMALL_ENTRY),
        s.w4_entries,
        WIDE_BATCH,
    );
    b.sync();
    b
}

/// A backend holding W3's log: `w3_bytes` of 16 KiB entries, durable.
fn big_log(kind: Kind, dir: &Path, s: &Sizes) -> Box<dyn Backend> {
    let mut b = backend::open(kind, dir, Durability::OnSync);
    fill(
        b.as_mut(),
        &mut EntryMaker::new(1, BIG_ENTRY),
        s.w3_bytes / BIG_ENTRY,
        BIG_BATCH,
    );
    b.sync();
    b
}

/// R1 `get`: random single-entry reads of W4's log, warm cache.
pub fn r1(kind: Kind, dir: &Path, s: &Sizes) -> Figures {
    let mut b = small_log(kind, dir, s);
    let (first, last) = b.range();
    let mut rng = Rng::new(0x5231);
    let indexes: Vec<u64> = (0..s.r1_reads).map(|_| rng.range(first, last)).collect();
    let mut lat = Latencies::with_capacity(indexes.len());
    let t = Instant::now();
    for &i in &indexes {
        lat.time(|| b.get(i));
    }
    let took = t.elapsed();
    let mut f = Figures::default();
    f.add("reads_per_s", per_sec(indexes.len() as f64, took))
        .add("p50_us", lat.quantile_us(0.5))
        .add("p99_us", lat.quantile_us(0.99));
    f
}

/// Closes `b`, then times opening it warm and, after evicting its files
/// from the page cache, cold.
fn recover(mut b: Box<dyn Backend>, dir: &Path) -> Figures {
    b.close();
    let t = Instant::now();
    b.open();
    let warm = t.elapsed();
    b.close();
    measure::evict_cache(dir);
    let t = Instant::now();
    b.open();
    let cold = t.elapsed();
    let mut f = Figures::default();
    f.add("warm_s", warm.as_secs_f64())
        .add("cold_s", cold.as_secs_f64());
    f
}

/// R2 `recover-big`: reopen the store holding W3's data.
pub fn r2(kind: Kind, dir: &Path, s: &Sizes) -> Figures {
    recover(big_log(kind, dir, s), dir)
}

/// R3 `recover-small`: reopen the store holding W4's data.
pub fn r3(kind: Kind, dir: &Path, s: &Sizes) -> Figures {
    recover(small_log(kind, dir, s), dir)
}

/// R4 `scan`: `entries(lo, last + 1, 1 MiB)` windows across W4's log.
pub fn r4(kind: Kind, dir: &Path, s: &Sizes) -> Figures {
    let mut b = small_log(kind, dir, s);
    let (first, last) = b.range();
    let mut lo = first;
    let mut windows = 0u64;
    let t = Instant::now();
    while lo <= last {
        lo += b.scan(lo, last + 1, 1 << 20);
        windows += 1;
    }
    let took = t.elapsed();
    let mut f = Figures::default();
    let entries = (last - first + 1) as f64;
    f.add("mb_per_s", mb_per_sec(entries * SMALL_ENTRY as f64, took))
        .add("windows", windows as f64);
    f
}

/// C1 `compact`: compact to the middle of W4's log, then reopen.
pub fn c1(kind: Kind, dir: &Path, s: &Sizes) -> Figures {
    let mut b = small_log(kind, dir, s);
    let (first, last) = b.range();
    let before = measure::disk_usage(dir);
    let t = Instant::now();
    let middle = first + (last - first).div_ceil(2);
    b.compact(middle);
    let compact = t.elapsed();
    b.close();
    let t = Instant::now();
    b.open();
    let reopen = t.elapsed();
    let after = measure::disk_usage(dir);
    let mut f = Figures::default();
    f.add("compact_ms", compact.as_secs_f64() * 1e3)
        .add("reopen_ms", reopen.as_secs_f64() * 1e3)
        .add("disk_bytes_freed", before as f64 - after as f64);
    f
}

/// M1 `memory`: after W4, the memory the open store holds per entry: the
/// live heap bytes its reopen allocates and keeps, and the backend's own
/// index size where it reports one. (Resident set growth across the reopen
/// is no measure here: the reopen reuses pages the closed store freed.)
pub fn m1(kind: Kind, dir: &Path, s: &Sizes) -> Figures {
    let mut b = small_log(kind, dir, s);
    let (first, last) = b.range();
    let entries = last - first + 1;
    b.close();
    let heap = measure::heap_bytes();
    b.open();
    let heap_delta = measure::heap_bytes() - heap;
    let mut f = Figures::default();
    b.memory(entries, &mut f);
    f.add("heap_bytes_per_entry", heap_delta as f64 / entries as f64);
    f
}
