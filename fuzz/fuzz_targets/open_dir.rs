//! Opens a log directory whose files are the fuzzer's bytes, in memory
//! (the power-loss file system of `tests/common/fs_sim.rs`).
//!
//! Input: one byte of options (bits 0-1: recovery mode; bit 2:
//! preallocation; bit 3: open it as a `RaftLogStore`), then files, each
//! `[name length: u8][name][content length: u16 LE][content]`.
//!
//! Opening must return `Ok` or `Err`: never panic, never allocate by a
//! length read from the files (run with `-malloc_limit_mb`; entries are
//! limited to 64 KiB). A log that opens is read whole, must accept a write,
//! and must open again with that write in it.
#![no_main]

#[path = "../../tests/common/fs_sim.rs"]
#[allow(dead_code)]
mod fs_sim;

use std::path::{Path, PathBuf};

use fs_sim::SimFs;
use libfuzzer_sys::fuzz_target;
use raft::{GetEntriesContext, Storage};
use raftwal::{Entry, Log, Options, Preallocate, RaftLogStore, RecoveryMode};

const DIR: &str = "/fuzz/log";

fn parse(data: &[u8]) -> (u8, Vec<(PathBuf, Vec<u8>)>) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return (0, Vec::new());
    };
    let mut files = Vec::new();
    while let Some((&n, r)) = rest.split_first() {
        let n = n as usize;
        if r.len() < n + 2 {
            break;
        }
        let (name, r) = r.split_at(n);
        let len = u16::from_le_bytes([r[0], r[1]]) as usize;
        let r = &r[2..];
        let (content, r) = r.split_at(len.min(r.len()));
        rest = r;
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            continue;
        }
        files.push((Path::new(DIR).join(name), content.to_vec()));
    }
    (flags, files)
}

fuzz_target!(|data: &[u8]| {
    let (flags, files) = parse(data);
    let mode = match flags & 3 {
        1 => RecoveryMode::AbsoluteConsistency,
        2 => RecoveryMode::TolerateAnyCorruption,
        _ => RecoveryMode::TolerateTailCorruption,
    };
    let fs = SimFs::from_image(files);
    let opts = Options::default()
        .segment_size(4096)
        .max_entry_size(64 << 10)
        .recovery_mode(mode)
        .preallocate(match flags & 0x14 {
            0 => Preallocate::None,
            4 => Preallocate::Allocate,
            _ => Preallocate::ZeroFill,
        })
        .file_system(fs.handle());
    if flags & 8 != 0 {
        if let Ok(store) = RaftLogStore::open_with(DIR, opts) {
            let first = store.first_index().unwrap();
            let last = store.last_index().unwrap();
            let _ = store.entries(
                first,
                last.saturating_add(1),
                None,
                GetEntriesContext::empty(false),
            );
            for i in first.saturating_sub(1)..=last.min(first.saturating_add(64)) {
                let _ = store.term(i);
            }
            let _ = store.initial_state();
            let _ = store.snapshot(0, 0);
        }
        return;
    }
    let Ok(log) = Log::open(DIR, opts.clone()) else {
        return;
    };
    let (first, last) = (log.first_index(), log.last_index());
    for i in first..=last.min(first.saturating_add(256)) {
        if let Ok(e) = log.get_entry(i) {
            assert_eq!(e.index, i, "get_entry returned another entry");
        }
        let _ = log.term(i);
    }
    let _ = log.entries(first, last.saturating_add(1), None);
    let _ = log.state();
    if last >= u64::MAX - 2 {
        return;
    }
    // It accepts a write, and opens again with it.
    let term = log.term(last).unwrap_or(0);
    let entry = Entry::new(last + 1, term, &b"written after a fuzzed open"[..]);
    if log.append(std::slice::from_ref(&entry)).is_err() {
        return;
    }
    drop(log);
    let log = match Log::open(DIR, opts) {
        Ok(log) => log,
        Err(e) => panic!("a log that opened and took a write does not open again: {e}"),
    };
    assert_eq!(log.last_index(), last + 1);
    assert_eq!(log.get_entry(last + 1).unwrap(), entry);
});
