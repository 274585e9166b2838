//! `raftwal bench`: a quick subset of the benchmark workloads of BENCH.md
//! (W1 sync-1, W2 sync-64, W4 nosync, R1 get, R3 recover-small), at reduced
//! sizes, against raftwal (through `RaftLogStore`, the path a Raft node
//! uses) and the raw disk, alternating the two in one run on one disk, with
//! per-pair ratios.
//!
//! The `raw` backend is the physical floor: the same encoded frames written
//! with one `pwrite` per batch (and one `fdatasync` where the workload
//! syncs) into a file that was zero-filled and synced beforehand.
//! raft-engine, the third reference of BENCH.md, is a dev-dependency only;
//! `cargo bench --bench workloads` runs the full suite with it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::Entry as RaftEntry;
use raft::{GetEntriesContext, Storage};
use raftwal::tools::frame::{self, FrameHeader, HEADER_LEN};
use raftwal::{Entry, Options, RaftLogStore, SyncPolicy};

use crate::failure::{Failure, OTHER, USAGE};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Multiply every workload's size by this (1.0: W1 1,000 batches, W2
    /// 200 batches, W4 100,000 entries, R1 100,000 reads; BENCH.md's full
    /// sizes are 5x, 10x and 10x larger).
    #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
    pub scale: f64,
    /// Runs of every workload per backend, alternating raftwal and raw;
    /// ratios are the median over the runs.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub runs: u32,
    /// Where to make the temporary directory: put it on the disk to
    /// measure (default: the system's temporary directory).
    #[arg(long, value_name = "PATH")]
    pub dir: Option<PathBuf>,
    /// Bytes of data per entry.
    #[arg(long, default_value_t = 256, value_name = "BYTES")]
    pub entry_size: usize,
    /// Only these workloads (comma-separated ids: W1,W2,W4,R1,R3; R1 and R3
    /// read W4's data, so they run W4 too).
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    pub only: Vec<String>,
}

/// The two backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Raftwal,
    Raw,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Raftwal => "raftwal",
            Backend::Raw => "raw",
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone)]
struct Figure {
    workload: &'static str,
    backend: Backend,
    metric: &'static str,
    value: f64,
}

struct Sizes {
    w1_batches: usize,
    w2_batches: usize,
    w4_entries: usize,
    r1_reads: usize,
}

pub fn run(args: &Args) -> Result<ExitCode, Failure> {
    if !(args.scale > 0.0 && args.scale.is_finite()) {
        return Err(Failure::new(USAGE, "--scale must be a positive number"));
    }
    if args.runs == 0 || args.entry_size == 0 {
        return Err(Failure::new(
            USAGE,
            "--runs and --entry-size must be at least 1",
        ));
    }
    let scaled = |n: f64| ((n * args.scale).round() as usize).max(1);
    let sizes = Sizes {
        w1_batches: scaled(1_000.0),
        w2_batches: scaled(200.0),
        w4_entries: scaled(100_000.0),
        r1_reads: scaled(100_000.0),
    };
    let wanted =
        |id: &str| args.only.is_empty() || args.only.iter().any(|o| o.eq_ignore_ascii_case(id));
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let root = TempDir::new(&base)?;
    print_machine(&root.path);

    let mut figures = Vec::new();
    for run in 0..args.runs {
        // Alternate which backend goes first, run by run.
        let order = if run % 2 == 0 {
            [Backend::Raftwal, Backend::Raw]
        } else {
            [Backend::Raw, Backend::Raftwal]
        };
        for backend in order {
            let dir = root.path.join(format!("run{run}-{}", backend.name()));
            std::fs::create_dir_all(&dir).map_err(|e| {
                Failure::new(OTHER, format!("cannot create {}: {e}", dir.display()))
            })?;
            let mut w = Workloads {
                backend,
                dir,
                entry_size: args.entry_size,
                out: &mut figures,
            };
            if wanted("W1") {
                w.sync_batches("W1 sync-1", 1, sizes.w1_batches)?;
            }
            if wanted("W2") {
                w.sync_batches("W2 sync-64", 64, sizes.w2_batches)?;
            }
            if wanted("W4") || wanted("R1") || wanted("R3") {
                w.nosync_and_reads(&sizes, wanted("R1"), wanted("R3"))?;
            }
        }
    }
    print_table(&figures, args.runs);
    Ok(ExitCode::SUCCESS)
}

/// A directory removed (with everything in it) when dropped.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(base: &Path) -> Result<TempDir, Failure> {
        let path = base.join(format!("raftwal-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|e| Failure::new(OTHER, format!("cannot create {}: {e}", path.display())))?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("raftwal: could not remove {}: {e}", self.path.display());
        }
    }
}

/// Pseudo-random, incompressible bytes from a fixed seed (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A workload's entries: raft entries from index 1, term 1, with `size`
/// random bytes each, and the same as the log entries `RaftLogStore` makes
/// of them (their protobuf encoding), which the raw backend writes.
struct Entries {
    raft: Vec<RaftEntry>,
    encoded: Vec<Entry>,
}

fn make_entries(n: usize, size: usize, rng: &mut Rng) -> Result<Entries, Failure> {
    let mut data = vec![0u8; size];
    let mut out = Entries {
        raft: Vec::with_capacity(n),
        encoded: Vec::with_capacity(n),
    };
    for index in 1..=n as u64 {
        rng.fill(&mut data);
        let e = RaftEntry {
            index,
            term: 1,
            data: data.clone().into(),
            ..Default::default()
        };
        let bytes = e
            .write_to_bytes()
            .map_err(|e| Failure::new(OTHER, format!("encoding an entry: {e}")))?;
        out.encoded.push(Entry::new(index, 1, bytes));
        out.raft.push(e);
    }
    Ok(out)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let k = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[k.min(sorted.len() - 1)].as_secs_f64() * 1e6
}

struct Workloads<'a> {
    backend: Backend,
    dir: PathBuf,
    entry_size: usize,
    out: &'a mut Vec<Figure>,
}

impl Workloads<'_> {
    fn push(&mut self, workload: &'static str, metric: &'static str, value: f64) {
        println!(
            "{workload} {} {metric} {}",
            self.backend.name(),
            figure(value)
        );
        self.out.push(Figure {
            workload,
            backend: self.backend,
            metric,
            value,
        });
    }

    /// W1 and W2: batches of `per` entries, each synced.
    fn sync_batches(
        &mut self,
        id: &'static str,
        per: usize,
        batches: usize,
    ) -> Result<(), Failure> {
        let entries = make_entries(per * batches, self.entry_size, &mut Rng(0x5EED))?;
        let dir = self.dir.join(id.split(' ').next().unwrap_or("w"));
        let mut lat = Vec::with_capacity(batches);
        let start;
        let n = entries.raft.len();
        let bytes: usize = entries.encoded.iter().map(|e| e.data.len()).sum();
        match self.backend {
            Backend::Raftwal => {
                let store = RaftLogStore::open_with(&dir, Options::default())?;
                start = Instant::now();
                for b in entries.raft.chunks(per) {
                    let t = Instant::now();
                    store.append(b)?;
                    lat.push(t.elapsed());
                }
            }
            Backend::Raw => {
                let raw = RawFile::create(&dir, &entries.encoded, per)?;
                start = Instant::now();
                for b in &raw.batches {
                    let t = Instant::now();
                    raw.write(b)?;
                    raw.sync()?;
                    lat.push(t.elapsed());
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        lat.sort();
        self.push(id, "entries/s", n as f64 / secs);
        if per > 1 {
            self.push(id, "MB/s", bytes as f64 / secs / 1e6);
        }
        self.push(id, "p50_us", percentile(&lat, 0.50));
        self.push(id, "p99_us", percentile(&lat, 0.99));
        if per == 1 {
            self.push(id, "p99.9_us", percentile(&lat, 0.999));
        }
        Ok(())
    }

    /// W4 (batches of 64, no sync, one sync at the end), then R1 (random
    /// reads of W4's log) and R3 (reopen W4's log).
    fn nosync_and_reads(&mut self, sizes: &Sizes, r1: bool, r3: bool) -> Result<(), Failure> {
        let n = sizes.w4_entries;
        let entries = make_entries(n, self.entry_size, &mut Rng(0xB16))?;
        let dir = self.dir.join("W4");
        let mut reads = Rng(0x4EAD);
        let picks: Vec<u64> = (0..sizes.r1_reads)
            .map(|_| 1 + reads.next() % n as u64)
            .collect();
        let mut max = Duration::ZERO;
        let mut lat = Vec::with_capacity(picks.len());
        match self.backend {
            Backend::Raftwal => {
                let opts = Options::default().sync(SyncPolicy::Manual);
                let store = RaftLogStore::open_with(&dir, opts)?;
                let start = Instant::now();
                for b in entries.raft.chunks(64) {
                    let t = Instant::now();
                    store.append(b)?;
                    max = max.max(t.elapsed());
                }
                store.sync()?;
                self.w4_figures(n, start.elapsed(), max);
                if r1 {
                    let start = Instant::now();
                    for &i in &picks {
                        let t = Instant::now();
                        let e = store
                            .entries(i, i + 1, None, GetEntriesContext::empty(false))
                            .map_err(|e| Failure::new(OTHER, format!("reading entry {i}: {e}")))?;
                        lat.push(t.elapsed());
                        std::hint::black_box(e);
                    }
                    self.r1_figures(&mut lat, start.elapsed());
                }
                drop(store);
                if r3 {
                    let start = Instant::now();
                    let store = RaftLogStore::open_with(&dir, Options::default())?;
                    let secs = start.elapsed().as_secs_f64();
                    let last = store
                        .last_index()
                        .map_err(|e| Failure::new(OTHER, format!("reopened store: {e}")))?;
                    if last != n as u64 {
                        return Err(Failure::new(
                            OTHER,
                            format!("the reopened store ends at {last}, not {n}"),
                        ));
                    }
                    self.push("R3 recover-small", "seconds", secs);
                }
            }
            Backend::Raw => {
                let raw = RawFile::create(&dir, &entries.encoded, 64)?;
                let start = Instant::now();
                for b in &raw.batches {
                    let t = Instant::now();
                    raw.write(b)?;
                    max = max.max(t.elapsed());
                }
                raw.sync()?;
                self.w4_figures(n, start.elapsed(), max);
                if r1 {
                    let offsets = raw.frame_offsets();
                    let mut buf = Vec::new();
                    let start = Instant::now();
                    for &i in &picks {
                        let t = Instant::now();
                        let (at, len) = offsets[(i - 1) as usize];
                        buf.resize(len, 0);
                        raw.file
                            .read_exact_at(&mut buf, at)
                            .map_err(|e| Failure::new(OTHER, format!("raw read: {e}")))?;
                        lat.push(t.elapsed());
                        std::hint::black_box(&buf);
                    }
                    self.r1_figures(&mut lat, start.elapsed());
                }
                if r3 {
                    let start = Instant::now();
                    let found = raw.recover()?;
                    let secs = start.elapsed().as_secs_f64();
                    if found != n {
                        return Err(Failure::new(
                            OTHER,
                            format!("raw recovery found {found} frames, not {n}"),
                        ));
                    }
                    self.push("R3 recover-small", "seconds", secs);
                }
            }
        }
        Ok(())
    }

    fn w4_figures(&mut self, n: usize, took: Duration, max: Duration) {
        self.push("W4 nosync", "entries/s", n as f64 / took.as_secs_f64());
        self.push("W4 nosync", "max_batch_us", max.as_secs_f64() * 1e6);
    }

    fn r1_figures(&mut self, lat: &mut [Duration], took: Duration) {
        lat.sort();
        self.push("R1 get", "reads/s", lat.len() as f64 / took.as_secs_f64());
        self.push("R1 get", "p50_us", percentile(lat, 0.50));
        self.push("R1 get", "p99_us", percentile(lat, 0.99));
    }
}

/// The raw backend: pre-encoded batches and a zero-filled, synced file.
struct RawFile {
    file: File,
    path: PathBuf,
    /// `(offset, bytes)` of each batch.
    batches: Vec<(u64, Vec<u8>)>,
    len: u64,
}

/// The salt raw frames are sealed with (any fixed value).
const RAW_SALT: u32 = 0x5A17;

impl RawFile {
    fn create(dir: &Path, entries: &[Entry], per: usize) -> Result<RawFile, Failure> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::new(OTHER, format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("raw.dat");
        let fail = |what: &str, e: std::io::Error| {
            Failure::new(OTHER, format!("{what} {}: {e}", path.display()))
        };
        let mut batches = Vec::new();
        let mut at = 0u64;
        for b in entries.chunks(per) {
            let mut buf = Vec::new();
            for e in b {
                frame::encode_entry(&mut buf, RAW_SALT, e.index, e.term, &e.data);
            }
            let n = buf.len() as u64;
            batches.push((at, buf));
            at += n;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| fail("cannot create", e))?;
        let zeros = vec![0u8; 1 << 20];
        let mut pos = 0;
        while pos < at {
            let n = (at - pos).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], pos)
                .map_err(|e| fail("cannot write", e))?;
            pos += n as u64;
        }
        file.sync_all().map_err(|e| fail("cannot fsync", e))?;
        if let Some(parent) = path.parent() {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| fail("cannot fsync the directory of", e))?;
        }
        Ok(RawFile {
            file,
            path,
            batches,
            len: at,
        })
    }

    fn write(&self, (at, buf): &(u64, Vec<u8>)) -> Result<(), Failure> {
        self.file
            .write_all_at(buf, *at)
            .map_err(|e| Failure::new(OTHER, format!("raw write {}: {e}", self.path.display())))
    }

    fn sync(&self) -> Result<(), Failure> {
        self.file
            .sync_data()
            .map_err(|e| Failure::new(OTHER, format!("raw fdatasync {}: {e}", self.path.display())))
    }

    /// `(offset, length)` of every frame, from the batches in memory.
    fn frame_offsets(&self) -> Vec<(u64, usize)> {
        let mut out = Vec::new();
        for (at, buf) in &self.batches {
            let mut pos = 0;
            while let Some(head) = buf.get(pos..pos + HEADER_LEN) {
                let Ok(head) = head.try_into() else { break };
                let len = HEADER_LEN + FrameHeader::parse(head).len as usize;
                out.push((at + pos as u64, len));
                pos += len;
            }
        }
        out
    }

    /// The floor of recovery: read the file sequentially and check every
    /// frame's CRC, noting where each one is. Returns the frames found.
    fn recover(&self) -> Result<usize, Failure> {
        let file = File::open(&self.path).map_err(|e| {
            Failure::new(OTHER, format!("cannot open {}: {e}", self.path.display()))
        })?;
        let mut data = vec![0u8; self.len as usize];
        file.read_exact_at(&mut data, 0).map_err(|e| {
            Failure::new(OTHER, format!("cannot read {}: {e}", self.path.display()))
        })?;
        let mut offsets = Vec::new();
        let mut pos = 0;
        while let Some(head) = data.get(pos..pos + HEADER_LEN) {
            let Ok(head) = head.try_into() else { break };
            let h = FrameHeader::parse(head);
            let end = pos + HEADER_LEN + h.len as usize;
            let Some(payload) = data.get(pos + HEADER_LEN..end) else {
                break;
            };
            if !h.verify(RAW_SALT, payload) {
                break;
            }
            offsets.push(pos as u32);
            pos = end;
        }
        Ok(offsets.len())
    }
}

/// Cores, and the file system and mount options of `dir`.
fn print_machine(dir: &Path) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mount = std::fs::read_to_string("/proc/mounts")
        .ok()
        .and_then(|m| {
            let dir = dir.canonicalize().ok()?;
            m.lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    let (dev, at, fs, opts) = (f.first()?, f.get(1)?, f.get(2)?, f.get(3)?);
                    dir.starts_with(at)
                        .then(|| (at.len(), format!("{dev} {fs} ({opts}) at {at}")))
                })
                .max_by_key(|(len, _)| *len)
                .map(|(_, s)| s)
        })
        .unwrap_or_else(|| "unknown".into());
    println!(
        "machine: {cores} cores; directory {}; file system {mount}",
        dir.display()
    );
    println!("release build: {}", !cfg!(debug_assertions));
}

/// A figure with the precision it deserves: small ones (seconds, fast
/// latencies) keep three decimals.
fn figure(v: f64) -> String {
    if v.abs() < 10.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.1}")
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The table: every figure's median per backend and the median of the
/// per-run ratios raftwal/raw.
fn print_table(figures: &[Figure], runs: u32) {
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for f in figures {
        if !keys.contains(&(f.workload, f.metric)) {
            keys.push((f.workload, f.metric));
        }
    }
    println!();
    println!(
        "{:<18} {:<13} {:>14} {:>14} {:>12}",
        "workload", "metric", "raftwal", "raw", "raftwal/raw"
    );
    for (w, m) in keys {
        let of = |b: Backend| -> Vec<f64> {
            figures
                .iter()
                .filter(|f| f.workload == w && f.metric == m && f.backend == b)
                .map(|f| f.value)
                .collect()
        };
        let (mut a, mut r) = (of(Backend::Raftwal), of(Backend::Raw));
        let mut ratios: Vec<f64> = a.iter().zip(&r).map(|(x, y)| x / y).collect();
        println!(
            "{:<18} {:<13} {:>14} {:>14} {:>12.2}",
            w,
            m,
            figure(median(&mut a)),
            figure(median(&mut r)),
            median(&mut ratios)
        );
    }
    println!(
        "(medians over {runs} run(s); for throughput a ratio below 1 means raftwal is slower, for latency and seconds above 1)"
    );
}
