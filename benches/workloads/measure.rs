//! Measuring: latency percentiles, live heap bytes, disk usage, and
//! evicting a directory's files from the page cache.

use std::alloc::{GlobalAlloc, Layout, System};
use std::num::NonZeroU64;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

/// Per-operation latencies, in nanoseconds.
#[derive(Debug, Default)]
pub struct Latencies(Vec<u64>);

impl Latencies {
    /// Room for `n` samples.
    pub fn with_capacity(n: usize) -> Latencies {
        Latencies(Vec::with_capacity(n))
    }

    /// Records one sample.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_nanos() as u64);
    }

    /// Runs `op`, records its duration, returns its result.
    pub fn time<T>(&mut self, op: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = op();
        self.push(t.elapsed());
        r
    }

    /// Adds another set of samples.
    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// The `q` quantile (0..=1) in microseconds (nearest rank).
    pub fn quantile_us(&mut self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_unstable();
        let rank = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        self.0[rank - 1] as f64 / 1e3
    }

    /// The largest sample in microseconds.
    pub fn max_us(&self) -> f64 {
        self.0.iter().copied().max().unwrap_or(0) as f64 / 1e3
    }
}

/// Live heap bytes, counted by [`CountingAlloc`] (the bench binary's global
/// allocator).
static LIVE: AtomicIsize = AtomicIsize::new(0);

/// The system allocator, counting live bytes (one relaxed atomic add per
/// call; every backend pays it alike).
pub struct CountingAlloc;

// SAFETY: every call is forwarded unchanged to `System`; the counter has no
// effect on the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Live heap bytes of the whole process.
pub fn heap_bytes() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Bytes the files under `dir` occupy on disk (allocated blocks, so
/// preallocated space counts).
pub fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).expect("list the bench directory") {
        let e = e.expect("read a directory entry");
        let m = e.metadata().expect("stat a file");
        total += if m.is_dir() {
            disk_usage(&e.path())
        } else {
            m.blocks() * 512
        };
    }
    total
}

/// Writes back and drops the page cache of every file under `dir`
/// (`fdatasync` + `posix_fadvise(DONTNEED)`), so the next open reads from
/// the disk. Needs no privileges, unlike `/proc/sys/vm/drop_caches`.
pub fn evict_cache(dir: &Path) {
    for e in std::fs::read_dir(dir).expect("list the bench directory") {
        let e = e.expect("read a directory entry");
        let path = e.path();
        if e.file_type().expect("file type").is_dir() {
            evict_cache(&path);
            continue;
        }
        let f = std::fs::File::open(&path).expect("open a file to evict");
        f.sync_data().expect("fdatasync before eviction");
        rustix::fs::fadvise(&f, 0, None::<NonZeroU64>, rustix::fs::Advice::DontNeed)
            .expect("posix_fadvise(DONTNEED)");
    }
}

/// Rate: `n` per second over `d`.
pub fn per_sec(n: f64, d: Duration) -> f64 {
    n / d.as_secs_f64()
}

/// Megabytes (10^6 bytes) per second.
pub fn mb_per_sec(bytes: f64, d: Duration) -> f64 {
    bytes / 1e6 / d.as_secs_f64()
}
