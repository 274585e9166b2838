//! Micro-benchmarks of raftwal's hot paths, beside the workloads: frame
//! encoding and decoding, the CRC, and index lookups on a warm log.
//!
//! ```text
//! cargo bench --bench micro
//! cargo bench --bench micro -- crc      # one group
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prost::Message;
use raftwal::tools::frame::{self, FrameHeader, HEADER_LEN};
use raftwal::tools::proto;
use raftwal::{Log, Options, SyncPolicy, WriteBatch};

/// The entry sizes measured: BENCH.md's small and big entries.
const SIZES: [(&str, usize); 2] = [("256B", 256), ("16KiB", 16 << 10)];
/// Entries in the log of the lookup benchmarks.
const LOG_ENTRIES: u64 = 100_000;

/// Deterministic, incompressible bytes.
fn bytes(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn frames(c: &mut Criterion) {
    let salt = frame::salt(1);
    let mut g = c.benchmark_group("frame");
    for (name, len) in SIZES {
        let data = bytes(len);
        g.throughput(Throughput::Bytes(len as u64));
        let mut buf = Vec::with_capacity(len + 64);
        g.bench_function(format!("encode_entry/{name}"), |b| {
            b.iter(|| {
                buf.clear();
                frame::encode_entry(&mut buf, salt, black_box(42), 7, black_box(&data))
            })
        });
        let mut framed = Vec::new();
        frame::encode_entry(&mut framed, salt, 42, 7, &data);
        let framed = prost::bytes::Bytes::from(framed);
        g.bench_function(format!("parse_verify_decode/{name}"), |b| {
            b.iter(|| {
                let f = black_box(&framed);
                let head: &[u8; HEADER_LEN] = f[..HEADER_LEN].try_into().expect("a header");
                let h = FrameHeader::parse(head);
                let payload = f.slice(HEADER_LEN..);
                assert!(h.verify(salt, &payload));
                proto::Entry::decode(payload).expect("an entry")
            })
        });
        g.bench_function(format!("decode_only/{name}"), |b| {
            let payload = framed.slice(HEADER_LEN..);
            b.iter(|| proto::Entry::decode(black_box(payload.clone())).expect("an entry"))
        });
    }
    g.finish();
}

fn crc(c: &mut Criterion) {
    let mut g = c.benchmark_group("crc32fast");
    for (name, len) in SIZES {
        let data = bytes(len);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(name, |b| b.iter(|| crc32fast::hash(black_box(&data))));
    }
    g.finish();
}

fn lookups(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = Log::open(dir.path(), Options::default().sync(SyncPolicy::Manual)).expect("open");
    let data = bytes(256);
    let mut batch = WriteBatch::new();
    for chunk in (1..=LOG_ENTRIES).collect::<Vec<_>>().chunks(1024) {
        batch.clear();
        for &i in chunk {
            // A new term every 10,000 entries: a handful of term runs.
            batch.push(i, 1 + i / 10_000, &data).expect("push");
        }
        log.write(&mut batch).expect("write");
    }
    log.sync().expect("sync");
    // Warm the page cache.
    for i in 1..=LOG_ENTRIES {
        black_box(log.get_entry(i).expect("get_entry"));
    }
    let mut g = c.benchmark_group("index");
    let mut next = 0u64;
    let mut index = move || {
        next = (next + 7_919) % LOG_ENTRIES;
        next + 1
    };
    g.bench_function("term", |b| {
        b.iter_batched(
            &mut index,
            |i| log.term(i).expect("term"),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("get_entry/256B", |b| {
        b.iter_batched(
            &mut index,
            |i| log.get_entry(i).expect("get_entry"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, frames, crc, lookups);
criterion_main!(benches);
