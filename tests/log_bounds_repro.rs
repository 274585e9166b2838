//! Issue 12, parts 3 and 4: every index and offset read from a caller or
//! from disk is checked before arithmetic. A snapshot at `u64::MAX` is
//! refused before anything is written; crafted, CRC-valid segment headers
//! and trailers are `Error::Corruption` (with path and offset) or ignored,
//! never a panic, in debug and release builds alike.
//!
//! Panics are caught (`catch_unwind`) so that each test reports every
//! check that fails, not just the first panic.

#[path = "common/fs_sim.rs"]
mod fs_sim;

#[path = "common/shown.rs"]
mod shown;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use fs_sim::SimFs;
use raft::eraftpb::{Entry as RaftEntry, HardState, Snapshot};
use raftwal::tools::frame::{self, FrameType};
use raftwal::tools::proto;
use raftwal::tools::segment::{self, Link, Origin};
use raftwal::{Error, Log, Options, RaftLogStore};
use shown::show_store;

/// The log directory (in the simulated file system).
const DIR: &str = "/sim/log";

/// Runs `f`, turning a panic into `Err` with its message.
fn no_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

/// Raft entry `i` of term 1.
fn raft_entry(i: u64) -> RaftEntry {
    RaftEntry {
        index: i,
        term: 1,
        data: format!("entry {i}").into_bytes().into(),
        ..Default::default()
    }
}

/// 4 KiB segments on `sim`.
fn store_opts(sim: &SimFs) -> Options {
    Options::default()
        .segment_size(4096)
        .file_system(sim.handle())
}

/// Reproduces issue 12 (3): `RaftLogStore::apply_snapshot` with
/// `metadata.index == u64::MAX`. Before the fix it panicked ("attempt to add with
/// overflow" at the log's reset to `index + 1`) after the state naming that
/// start is durable, and every later open panicked the same way. It must
/// return an error, change nothing (in memory or on disk), and the store
/// must keep opening with its previous state.
#[test]
fn apply_snapshot_at_u64_max_is_refused_and_changes_nothing() {
    let sim = SimFs::new();
    let store = RaftLogStore::open_with(DIR, store_opts(&sim)).unwrap();
    let entries: Vec<_> = (1..=5).map(raft_entry).collect();
    let mut hs = HardState::default();
    (hs.term, hs.commit) = (1, 3);
    store.persist(&entries, Some(&hs), None).unwrap();
    let before = show_store(&store).unwrap();
    let mut snap = Snapshot::default();
    snap.mut_metadata().index = u64::MAX;
    snap.mut_metadata().term = 1;
    snap.mut_metadata().mut_conf_state().voters = vec![1];
    snap.data = b"state machine".to_vec().into();

    let mut problems = Vec::new();
    match no_panic(|| store.apply_snapshot(snap)) {
        Ok(Err(_)) => {}
        Ok(Ok(())) => problems.push("apply_snapshot at u64::MAX was accepted".to_string()),
        Err(p) => problems.push(format!("apply_snapshot at u64::MAX panicked: {p}")),
    }
    match no_panic(|| show_store(&store)) {
        Ok(Ok(now)) if now == before => {}
        Ok(Ok(now)) => problems.push(format!(
            "the store changed: {} (was {})",
            now.describe(),
            before.describe()
        )),
        Ok(Err(e)) => problems.push(format!("the store cannot be read: {e}")),
        Err(p) => problems.push(format!("reading the store panicked: {p}")),
    }
    drop(store);
    for k in 1..=2 {
        let reopened = no_panic(|| {
            RaftLogStore::open_with(DIR, store_opts(&sim))
                .map_err(|e| e.to_string())
                .and_then(|s| show_store(&s))
        });
        match reopened {
            Ok(Ok(now)) if now == before => {}
            Ok(Ok(now)) => problems.push(format!(
                "reopen {k}: {} (was {})",
                now.describe(),
                before.describe()
            )),
            Ok(Err(e)) => problems.push(format!("reopen {k} fails: {e}")),
            Err(p) => problems.push(format!("reopen {k} panicked: {p}")),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A segment file's bytes: its header (`sequence`, `first_index`, not
/// preallocated, made as `origin` says), then one write per entry
/// `(index, term, data)`.
fn segment_bytes(
    sequence: u64,
    first_index: u64,
    origin: Origin,
    entries: &[(u64, u64, &[u8])],
) -> Vec<u8> {
    let mut buf = Vec::new();
    segment::encode_header(&mut buf, sequence, first_index, 0, origin);
    let salt = frame::salt(sequence);
    for &(index, term, data) in entries {
        let at = buf.len();
        frame::encode_entry(&mut buf, salt, index, term, data);
        frame::set_end_of_write(&mut buf, at, true);
        frame::seal(&mut buf, at, salt);
    }
    buf
}

/// The path of segment `sequence` starting at `first_index`.
fn segment_path(sequence: u64, first_index: u64) -> PathBuf {
    Path::new(DIR).join(segment::file_name(sequence, first_index))
}

/// Reproduces issue 12 (4), first case: a CRC-valid segment header with
/// `first_index = 0` (the file named accordingly, entries after it). Before the fix
/// a debug build panics (subtract overflow in recovery) and a release build
/// opens the log as first 0, last `u64::MAX`. It must be
/// `Error::Corruption` naming the file, at offset 0.
#[test]
fn a_segment_header_with_first_index_0_is_corruption() {
    let path = segment_path(1, 0);
    let bytes = segment_bytes(
        1,
        0,
        Origin::First,
        &[(1, 1, b"a"), (2, 1, b"b"), (3, 1, b"c")],
    );
    let sim = SimFs::from_image([(path.clone(), bytes)]);
    let opened = no_panic(|| Log::open(DIR, Options::default().file_system(sim.handle())));
    match opened {
        Ok(Err(Error::Corruption {
            path: p, offset, ..
        })) if p == path && offset == 0 => {}
        Ok(Err(e)) => panic!(
            "expected corruption in {} at offset 0, got: {e}",
            path.display()
        ),
        Ok(Ok(log)) => panic!(
            "the log opened as first {} last {}",
            log.first_index(),
            log.last_index()
        ),
        Err(p) => panic!("opening panicked: {p}"),
    }
}

/// Reproduces issue 12 (4), second case: a sealed-looking segment (not the
/// last one) whose CRC-valid trailer says `footer_offset = u64::MAX - 8`.
/// Before the fix a debug build panics (add overflow in the footer reader). The
/// footer is an optional index: the open may ignore the trailer and scan
/// the segment (then the log must hold entries 1..=5 as written) or return
/// `Error::Corruption` naming the file; never panic.
#[test]
fn a_trailer_pointing_past_u64_max_never_panics() {
    let first = segment_path(1, 1);
    let mut bytes = segment_bytes(
        1,
        1,
        Origin::First,
        &[(1, 1, b"one"), (2, 1, b"two"), (3, 1, b"three")],
    );
    // The second segment continues the first where its data ends.
    let link = Link {
        sequence: 1,
        end: bytes.len() as u64,
        synced: false,
    };
    let trailer = proto::SegmentTrailer {
        footer_offset: u64::MAX - 8,
        footer_len: 17,
    };
    let n = frame::encode_message(&mut bytes, FrameType::Trailer, frame::salt(1), &trailer);
    assert_eq!(n, 23, "a trailer frame is 23 bytes (footer::TRAILER_LEN)");
    let second = segment_path(2, 4);
    let later = segment_bytes(
        2,
        4,
        Origin::Roll(link),
        &[(4, 1, b"four"), (5, 2, b"five")],
    );
    let sim = SimFs::from_image([(first.clone(), bytes), (second, later)]);
    let opened = no_panic(|| Log::open(DIR, Options::default().file_system(sim.handle())));
    match opened {
        Ok(Ok(log)) => {
            assert_eq!((log.first_index(), log.last_index()), (1, 5));
            let got: Vec<_> = log
                .entries(1, 6, None)
                .unwrap()
                .into_iter()
                .map(|e| (e.index, e.term, e.data.to_vec()))
                .collect();
            let want: Vec<(u64, u64, Vec<u8>)> = [
                (1, 1, &b"one"[..]),
                (2, 1, b"two"),
                (3, 1, b"three"),
                (4, 1, b"four"),
                (5, 2, b"five"),
            ]
            .iter()
            .map(|&(i, t, d)| (i, t, d.to_vec()))
            .collect();
            assert_eq!(got, want);
        }
        Ok(Err(Error::Corruption { path, .. })) => assert_eq!(path, first),
        Ok(Err(e)) => panic!(
            "expected the log or corruption in {}, got: {e}",
            first.display()
        ),
        Err(p) => panic!("opening panicked: {p}"),
    }
}
