//! Opens an engine whose stream holds records built from the fuzzer's
//! bytes: well-framed (every frame's CRC right, so the parser lets them
//! through) but saying anything at all: any groups, resets, cuts,
//! compactions, entry indexes and terms, two parts for one group, parts
//! that do not continue their group; sometimes with the stream's head
//! compacted away, so the replay of a reclaimed stream runs; sometimes
//! after a few good writes.
//!
//! Input: one byte of flags (bit 0: compact the stream's head; bit 1:
//! start with good writes), then records, each `[parts: u8]` and per part
//! `[group: u8][ops: u8]`, numbers (one byte below 0xF0, else the next
//! eight bytes), `[entries: u8]` and a first index and terms.
//!
//! Opening must return `Ok` or `Err`, never panic. An engine that opens is
//! read whole (every group's entries, terms, state), takes a write, and
//! opens again showing the same groups with that write in it.
#![no_main]

#[path = "../../tests/common/fs_sim.rs"]
#[allow(dead_code)]
mod fs_sim;

use fs_sim::SimFs;
use libfuzzer_sys::fuzz_target;
use raftwal::tools::frame::{self, FrameType};
use raftwal::tools::proto::{GroupOp, State};
use raftwal::{Engine, EngineBatch, Entry, Log, Options};

const DIR: &str = "/fuzz/engine";
const GROUPS: [u64; 4] = [0, 1, 7, u64::MAX];

/// The fuzzer's bytes, read as numbers.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// Mostly small numbers; any `u64` after a byte of 0xF0 or more.
    fn num(&mut self) -> Option<u64> {
        let b = self.byte()?;
        if b < 0xF0 {
            return Some(u64::from(b));
        }
        let (n, rest) = self.0.split_at_checked(8)?;
        self.0 = rest;
        Some(u64::from_le_bytes(n.try_into().ok()?))
    }
}

fn group_salt(group: u64) -> u32 {
    // FORMAT.md, "Engine directories".
    frame::salt(group) ^ 0x6752_6f75
}

/// One record from the input, or `None` at its end.
fn record(input: &mut Input) -> Option<Vec<u8>> {
    let parts = input.byte()? % 5;
    let mut buf = Vec::new();
    for _ in 0..parts {
        let group = GROUPS[(input.byte()? % 4) as usize];
        let ops = input.byte()?;
        let mut op = GroupOp {
            group,
            ..GroupOp::default()
        };
        op.remove = ops & 1 != 0;
        if ops & 2 != 0 {
            (op.reset_to, op.reset_term) = (input.num()?, input.num()?);
        }
        if ops & 4 != 0 {
            op.truncate_from = input.num()?;
        }
        if ops & 8 != 0 {
            (op.compact_to, op.compact_term) = (input.num()?, input.num()?);
        }
        frame::encode_message(&mut buf, FrameType::Group, 0x6752_6f75, &op);
        let n = input.byte()? % 8;
        let mut index = input.num()?;
        for _ in 0..n {
            let term = input.num()?;
            frame::encode_entry(
                &mut buf,
                group_salt(group),
                index,
                term,
                &index.to_le_bytes(),
            );
            index = index.wrapping_add(if ops & 0x40 != 0 { 2 } else { 1 });
        }
        if ops & 0x10 != 0 {
            let state = State {
                data: vec![ops; 5].into(),
            };
            frame::encode_message(&mut buf, FrameType::State, group_salt(group), &state);
        }
    }
    Some(buf)
}

/// Every group as the engine shows it.
type Shown = Vec<(u64, u64, u64, Vec<Entry>, Option<Vec<u8>>)>;

fn show(e: &Engine) -> Shown {
    e.groups()
        .into_iter()
        .map(|g| {
            let (first, last) = (e.first_index(g), e.last_index(g));
            let prev = e
                .term(g, first - 1)
                .expect("the term before the first index");
            let entries = e
                .entries(g, first, last + 1, None)
                .expect("every entry a group shows reads back");
            for x in &entries {
                assert_eq!(
                    e.term(g, x.index).unwrap(),
                    x.term,
                    "term of {g}/{}",
                    x.index
                );
            }
            (g, first, prev, entries, e.state(g).map(|s| s.to_vec()))
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let Some(flags) = input.byte() else { return };
    let fs = SimFs::new();
    let opts = Options::default()
        .segment_size(4096)
        .max_entry_size(64 << 10)
        .file_system(fs.handle());
    {
        let e = Engine::open(DIR, opts.clone()).expect("a new engine");
        if flags & 2 != 0 {
            for g in [1, 7] {
                let mut b = EngineBatch::new();
                for i in 1..=3 {
                    b.group(g).push(i, 1, b"good").unwrap();
                }
                e.write(&mut b).unwrap();
            }
        }
    }
    {
        let log = Log::open(DIR, opts.clone()).expect("the engine's stream");
        while let Some(r) = record(&mut input) {
            let next = log.last_index() + 1;
            if log.append(&[Entry::new(next, 1, r)]).is_err() {
                return;
            }
        }
        if flags & 1 != 0 && log.last_index() >= 2 {
            let _ = log.compact(log.last_index() / 2 + 1);
        }
    }
    let Ok(e) = Engine::open(DIR, opts.clone()) else {
        return;
    };
    let before = show(&e);
    // It takes a write, and the next open shows it on top of the same.
    let g = before.first().map_or(3, |s| s.0);
    let next = e.last_index(g).checked_add(1).filter(|&n| n < u64::MAX);
    if let Some(next) = next {
        let term = e.term(g, next - 1).unwrap_or(0);
        let mut b = EngineBatch::new();
        b.group(g).push(next, term, b"after").unwrap();
        e.write(&mut b).expect("a write after a clean open");
    }
    let after = show(&e);
    drop(e);
    let e = Engine::open(DIR, opts).expect("the engine opens again after its own write");
    assert_eq!(show(&e), after, "the reopen shows what the engine showed");
});
