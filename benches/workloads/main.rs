//! raftwal's benchmark workloads (`/work/shared/BENCH.md` in the project:
//! W1–W7, R1–R4, C1, T1, M1, the many-group MR1, MR2, MR4, MR6, MR7, and
//! raftwal's own S1), run against raftwal and its reference points
//! in the same run, on the same disk, alternating backends A B A B, with
//! per-pair ratios.
//!
//! ```text
//! cargo bench --bench workloads                      # full sizes, 3 pairs
//! cargo bench --bench workloads -- --quick           # smoke test (also RAFTWAL_BENCH_QUICK=1)
//! cargo bench --bench workloads -- --only W1,R1 --pairs 5 --dir /mnt/nvme/tmp
//! ```
//!
//! Options: `--quick` (tiny sizes, one pair: a smoke test; also the mode
//! when run without cargo's `--bench` flag, as `cargo test --benches`
//! does), `--only W1,R1`, `--pairs N` (default 3), `--dir PATH` (a fresh
//! directory is made inside it and removed after; default `target/`),
//! `--with-log` (add `raftwal-log` beside `raftwal`), `--backends a,b`,
//! `--variants a,b` (run `RaftLogStore` once per option variant in place
//! of `raftwal`, named `raftwal:<variant>`: see `variant.rs`; e.g.
//! `--variants prealloc`, `--variants sync=always,sync=manual` or
//! `--variants prealloc=allocate+segment=16m,prealloc=zero-fill+segment=16m`).
//! A bare word selects the workloads whose id or name matches it.
//!
//! Output: a `machine` line, then per pair one line per figure,
//! `workload backend metric value`, then per workload
//! `workload raftwal/<other> metric <median ratio> pairs=<ratio,...>`.
//! Lines starting with `#` are comments.

mod backend;
mod concurrent;
mod data;
mod many;
mod measure;
mod read;
mod report;
mod variant;
mod write;

use std::path::{Path, PathBuf};
use std::time::Instant;

use backend::Kind;
use data::Sizes;
use report::{Figures, Run};

#[global_allocator]
static ALLOC: measure::CountingAlloc = measure::CountingAlloc;

/// One workload of BENCH.md.
struct Workload {
    id: &'static str,
    name: &'static str,
    backends: &'static [Kind],
    run: fn(Kind, &Path, &Sizes) -> Figures,
    /// Printed before the workload's results.
    note: &'static str,
}

const WRITE: &[Kind] = &[Kind::Raftwal, Kind::Raw, Kind::RaftEngine];
const READ: &[Kind] = &[Kind::Raftwal, Kind::Raw, Kind::RaftEngine, Kind::Mem];
const MANY: &[Kind] = &[Kind::Raftwal, Kind::Raw, Kind::RaftEngine];
const LOG: &[Kind] = &[Kind::RaftwalLog, Kind::Raw, Kind::RaftEngine];

const WORKLOADS: &[Workload] = &[
    Workload {
        id: "W1",
        name: "sync-1",
        backends: WRITE,
        run: write::w1,
        note: "",
    },
    Workload {
        id: "W2",
        name: "sync-64",
        backends: WRITE,
        run: write::w2,
        note: "",
    },
    Workload {
        id: "W3",
        name: "big",
        backends: WRITE,
        run: write::w3,
        note: "",
    },
    Workload {
        id: "W4",
        name: "nosync",
        backends: WRITE,
        run: write::w4,
        note: "",
    },
    Workload {
        id: "W5",
        name: "pipeline",
        backends: LOG,
        run: concurrent::w5,
        note: "raftwal-log: Log::submit + a thread waiting on the tickets; raw: a writer thread \
               (pwrite) + a syncer thread looping fdatasync; raft-engine: no async path, its W1 \
               loop (one synced write per batch) stands in, at W5's size",
    },
    Workload {
        id: "W6",
        name: "ready",
        backends: WRITE,
        run: write::w6,
        note: "",
    },
    Workload {
        id: "W7",
        name: "threads",
        backends: LOG,
        run: concurrent::w7,
        note: "raftwal-log: Log::append_assigned from 4 threads; raw: leader/follower group \
               commit on one file; raft-engine: cannot assign indexes, so each thread writes \
               its own Raft group (its write group still merges them)",
    },
    Workload {
        id: "R1",
        name: "get",
        backends: READ,
        run: read::r1,
        note: "",
    },
    Workload {
        id: "R2",
        name: "recover-big",
        backends: WRITE,
        run: read::r2,
        note: "cold: every file fdatasync'ed and evicted with posix_fadvise(DONTNEED) first",
    },
    Workload {
        id: "R3",
        name: "recover-small",
        backends: WRITE,
        run: read::r3,
        note: "cold: every file fdatasync'ed and evicted with posix_fadvise(DONTNEED) first",
    },
    Workload {
        id: "R4",
        name: "scan",
        backends: READ,
        run: read::r4,
        note: "MB/s of entry data (10^6 bytes); mem: raft-rs's MemStorage::entries clones \
               all of lo..hi before applying max_size, so each window costs O(hi - lo)",
    },
    Workload {
        id: "C1",
        name: "compact",
        backends: WRITE,
        run: read::c1,
        note: "disk bytes = allocated blocks of the directory's files (raftwal preallocates \
               segments); raft-engine: compact_to + purge_expired_files with its default \
               purge_threshold (10 GB); raw: punch a hole",
    },
    Workload {
        id: "T1",
        name: "truncate",
        backends: WRITE,
        run: write::t1,
        note: "one op = replace the last 1,000 entries (same indexes, higher term) in one \
               durable write: RaftLogStore::persist / raft-engine add_entries over them / raw \
               pwrite over them",
    },
    Workload {
        id: "S1",
        name: "small-store",
        backends: &[Kind::Raftwal, Kind::RaftEngine],
        run: write::s1,
        note: "raftwal's own (issue 13): open a new store, then 100 Readies of one 16 B entry \
               and a hard state, close, reopen; disk = allocated blocks of the directory",
    },
    Workload {
        id: "MR1",
        name: "many-ready",
        backends: MANY,
        run: many::mr1,
        note: "1 round = one Ready (4 entries + HardState) per group, all groups in one synced \
               write; raftwal: RaftLogStore::persist_many; raw: one pwrite + one fdatasync; \
               raft-engine: one LogBatch (add_entries + put_message per group), write(sync)",
    },
    Workload {
        id: "MR2",
        name: "many-threads",
        backends: MANY,
        run: many::mr2,
        note: "4 threads, Readies of 1 entry + HardState of random owned groups, each call \
               durable on return; raftwal: a group store's persist; raw: leader/follower group \
               commit; raft-engine: one synced LogBatch per Ready",
    },
    Workload {
        id: "MR7",
        name: "many-pipeline",
        backends: MANY,
        run: many::mr7,
        note: "MR2 with up to 64 Readies in flight per thread; raftwal: a group store's submit + \
               a waiter thread per writer; raw: 4 writers + a syncer thread looping fdatasync; \
               raft-engine: no async path, its MR2 loop at MR7's size stands in",
    },
    Workload {
        id: "MR4",
        name: "many-memory",
        backends: MANY,
        run: many::mr4,
        note: "live heap bytes (the counting allocator, in this process: the harness runs no \
               child process, so no fresh-process RSS); raftwal writes through EngineBatch with \
               no group stores open; index_* = the backend's own count (raftwal: \
               Engine::index_memory_bytes; raw: its flat index)",
    },
    Workload {
        id: "MR6",
        name: "many-get",
        backends: MANY,
        run: many::mr6,
        note: "random single-entry reads across MR1's groups (written unsynced, synced once, \
               warm), for at most 10 s per backend and pass (reads_done says how many; raft-engine \
               decompresses a whole ~1 MB write per read); raftwal: Engine::get_entry (storage_reads_per_s: the group store's \
               raft::Storage::entries, decoding raft's Entry as raft-engine's get_entry does); \
               raw: one pread through its flat index",
    },
    Workload {
        id: "M1",
        name: "memory",
        backends: LOG,
        run: read::m1,
        note: "method: after W4's log is written the store is closed and reopened; heap = live \
               heap bytes the reopen allocated and still holds (a counting global allocator; \
               raft-engine 0.4.2 has no public memory-usage API), index = the backend's own \
               figure (raftwal: Log::index_memory_bytes; raw: its offset table)",
    },
];

/// The command line.
struct Args {
    quick: bool,
    pairs: usize,
    only: Option<Vec<String>>,
    dir: Option<PathBuf>,
    with_log: bool,
    /// Run only these backends (by name).
    backends: Option<Vec<String>>,
    /// How many option variants run in place of `raftwal`
    /// (`variant::selected`).
    variants: usize,
}

const USAGE: &str = "usage: cargo bench --bench workloads -- [--quick] [--only W1,R1] \
                     [--pairs N] [--dir PATH] [--with-log] [--backends raftwal,raw] \
                     [--variants prealloc,segment=16m]";

fn parse_args() -> Args {
    let mut args = Args {
        quick: std::env::var("RAFTWAL_BENCH_QUICK").is_ok_and(|v| v == "1"),
        pairs: 0,
        only: None,
        dir: None,
        with_log: false,
        backends: None,
        variants: 0,
    };
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`)
    // the harness runs as a smoke test, like criterion's test mode.
    let mut bench = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .unwrap_or_else(|| panic!("{what} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--bench" => bench = true,
            "--quick" => args.quick = true,
            "--with-log" => args.with_log = true,
            "--pairs" => {
                args.pairs = value("--pairs")
                    .parse()
                    .unwrap_or_else(|e| panic!("--pairs: {e}\n{USAGE}"))
            }
            "--only" => {
                let ids = value("--only")
                    .split(',')
                    .map(|s| s.trim().to_uppercase())
                    .collect();
                args.only = Some(ids);
            }
            "--dir" => args.dir = Some(PathBuf::from(value("--dir"))),
            "--backends" => {
                let names = value("--backends")
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect();
                args.backends = Some(names);
            }
            "--variants" => args.variants = variant::select(&value("--variants")),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            // A positional filter (as `cargo bench -- <filter>` gives every
            // bench binary): the workloads whose id or name contains it.
            filter if !filter.starts_with('-') => {
                let ids = WORKLOADS
                    .iter()
                    .filter(|w| w.id.eq_ignore_ascii_case(filter) || w.name.contains(filter))
                    .map(|w| w.id.to_string());
                args.only.get_or_insert_with(Vec::new).extend(ids);
            }
            other => panic!("unknown option {other}\n{USAGE}"),
        }
    }
    args.quick |= !bench;
    if args.pairs == 0 {
        args.pairs = if args.quick { 1 } else { 3 };
    }
    args
}

/// The backends of `w`, with `raftwal-log` beside `raftwal` under
/// `--with-log`, and only those named by `--backends` if given.
fn backends(w: &Workload, args: &Args) -> Vec<Kind> {
    let mut v = Vec::new();
    for &k in w.backends {
        if k == Kind::Raftwal && args.variants > 0 {
            v.extend((0..args.variants).map(Kind::Variant));
            continue;
        }
        v.push(k);
        if args.with_log && k == Kind::Raftwal {
            v.push(Kind::RaftwalLog);
        }
    }
    if let Some(names) = &args.backends {
        v.retain(|k| matches!(k, Kind::Variant(_)) || names.iter().any(|n| n == k.name()));
    }
    v
}

fn main() {
    let args = parse_args();
    let sizes = if args.quick {
        Sizes::QUICK
    } else {
        Sizes::FULL
    };
    let parent = args.dir.clone().unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
    });
    std::fs::create_dir_all(&parent).expect("create the bench directory's parent");
    let root = tempfile::Builder::new()
        .prefix("raftwal-bench-")
        .tempdir_in(&parent)
        .expect("create the bench directory");
    println!("{}", report::machine_line(root.path()));
    println!(
        "# mode={} pairs={} dir={} (ratios: raftwal value / other value; for rates > 1 favours \
         raftwal, for latencies, seconds and bytes < 1 does)",
        if args.quick { "quick" } else { "full" },
        args.pairs,
        root.path().display()
    );
    let all = Instant::now();
    for w in WORKLOADS {
        if let Some(only) = &args.only {
            if !only.iter().any(|id| id == w.id) {
                continue;
            }
        }
        let started = Instant::now();
        println!("# {} {}", w.id, w.name);
        if !w.note.is_empty() {
            println!("# {} note: {}", w.id, w.note);
        }
        let kinds = backends(w, &args);
        let mut runs = Vec::new();
        for pair in 1..=args.pairs {
            for &kind in &kinds {
                let dir = root.path().join(format!("{}-{}-{pair}", w.id, kind.name()));
                std::fs::create_dir_all(&dir).expect("create a run directory");
                let figures = (w.run)(kind, &dir, &sizes);
                std::fs::remove_dir_all(&dir).expect("remove a run directory");
                let run = Run {
                    pair,
                    backend: kind.name(),
                    figures: figures.0,
                };
                report::print_run(w.id, &run);
                runs.push(run);
            }
        }
        report::print_ratios(w.id, &runs);
        println!("# {} took {:.1} s", w.id, started.elapsed().as_secs_f64());
    }
    println!("# all took {:.1} s", all.elapsed().as_secs_f64());
}
