//! The corruption matrix: damage at each place (a segment header, an entry
//! frame's type byte, its length field, its CRC, its payload, a state
//! frame, a snapshot file) × each position (the tail of the last segment,
//! the middle of the last segment, an earlier sealed segment, an earlier
//! segment whose footer is gone so it is scanned in full) × each recovery
//! mode. [`TABLE`] writes down the expected outcome of every case, as
//! `docs/FORMAT.md` describes recovery, and every case is checked:
//!
//! - `Error`: the open fails with `Error::Corruption` naming the damaged
//!   file and the offset of the damaged frame, and nothing on disk changed;
//! - `Truncated`: the open succeeds and keeps exactly the log before the
//!   damaged frame (a torn-tail repair, or the prefix kept by
//!   `TolerateAnyCorruption`), which then accepts writes and reopens;
//! - `ReadError`: the open succeeds (the damage is in a sealed segment
//!   whose footer is valid, or in snapshot data, which are verified when
//!   read) and reading the damaged entry or snapshot is `Error::Corruption`
//!   with path and offset, while everything else reads back intact;
//! - `Forgotten`: the open succeeds without the damaged snapshot.
//!
//! In every case: no panic, no wrong byte returned, and no allocation
//! larger than `max_entry_size` (plus a frame's overhead) while opening and
//! reading, checked with a counting global allocator.
//!
//! Prints `crash_corruption_matrix: N corruption cases ...`.

#[path = "common/agree.rs"]
mod agree;
#[path = "common/fs_sim.rs"]
mod fs_sim;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;

use fs_sim::SimFs;
use prost::Message;
use raft::eraftpb::{ConfState, Entry as RaftEntry, HardState};
use raft::Storage;
use raftwal::tools::{frame, proto};
use raftwal::{
    Damage as Kind, Entry, Error, Log, Options, Preallocate, RaftLogStore, RecoveryMode,
};

// ---------------------------------------------------------------------------
// The largest allocation made while a case opens and reads.
// ---------------------------------------------------------------------------

struct Tracking;

thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = TRACK.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|m| m.set(m.get().max(size)));
        }
    });
}

// SAFETY: every call is passed to `System` unchanged; `note` only reads and
// writes thread-local cells, which do not allocate.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Runs `f` and returns its result and the largest allocation it made on
/// this thread.
fn tracked<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|m| m.set(0));
    TRACK.with(|t| t.set(true));
    let out = f();
    TRACK.with(|t| t.set(false));
    (out, LARGEST.with(|m| m.get()))
}

// ---------------------------------------------------------------------------
// The table.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A byte of a segment header's magic.
    SegmentHeader,
    /// An entry frame's type byte set to an unknown type.
    FrameType,
    /// An entry frame's length field set far beyond `max_entry_size`.
    Length,
    /// A byte of an entry frame's CRC.
    Crc,
    /// A byte of an entry's data.
    Payload,
    /// A byte of a state frame's payload.
    StateFrame,
    /// A byte of a snapshot file: its data (`Tail`), its metadata
    /// (`Middle`), its magic (`Earlier`).
    SnapshotFile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// The last frame of the last segment (for a header: the last
    /// segment's).
    Tail,
    /// A frame of the last segment with valid frames after it (for a
    /// header: a segment between the first and the last).
    Middle,
    /// A frame of the first segment, sealed with a valid footer (for a
    /// header: the first segment's).
    Earlier,
    /// The same frame with the first segment's footer gone (a crash before
    /// sealing), so recovery scans that segment in full.
    EarlierUnsealed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Error,
    Truncated,
    ReadError,
    Forgotten,
}

use Expect::{Error as Err_, Forgotten, ReadError, Truncated};
use Place::*;
use Position::*;

/// The modes, in the order of the table's columns.
const MODES: [RecoveryMode; 3] = [
    RecoveryMode::TolerateTailCorruption,
    RecoveryMode::AbsoluteConsistency,
    RecoveryMode::TolerateAnyCorruption,
];

/// Expected outcomes: `[TolerateTailCorruption, AbsoluteConsistency,
/// TolerateAnyCorruption]`.
///
/// Why: the last segment's last frame with a bad CRC is what a torn write
/// leaves, so `TolerateTailCorruption` cuts it; an unknown type byte or a
/// length beyond the limit is never what a crash leaves (a torn write keeps
/// a prefix of real frames, and zeros), so it is damage wherever it is; a
/// bad frame followed by a valid one is damage; damage before the last
/// segment is an error except under `TolerateAnyCorruption`, which keeps
/// the log before it. A sealed segment's entries are not read at open, so
/// damage there is found by the read; the marker and state frames its
/// footer names are checked at open. A bad header is damage when the
/// segment holds valid frames (an interrupted creation leaves none).
/// Snapshot data is checked when read; its header and metadata at open.
const TABLE: &[(Place, Position, [Expect; 3])] = &[
    (SegmentHeader, Tail, [Err_, Err_, Truncated]),
    (SegmentHeader, Middle, [Err_, Err_, Truncated]),
    (SegmentHeader, Earlier, [Err_, Err_, Truncated]),
    (FrameType, Tail, [Err_, Err_, Truncated]),
    (FrameType, Middle, [Err_, Err_, Truncated]),
    (FrameType, Earlier, [ReadError, ReadError, ReadError]),
    (FrameType, EarlierUnsealed, [Err_, Err_, Truncated]),
    (Length, Tail, [Err_, Err_, Truncated]),
    (Length, Middle, [Err_, Err_, Truncated]),
    (Length, Earlier, [ReadError, ReadError, ReadError]),
    (Length, EarlierUnsealed, [Err_, Err_, Truncated]),
    (Crc, Tail, [Truncated, Err_, Truncated]),
    (Crc, Middle, [Err_, Err_, Truncated]),
    (Crc, Earlier, [ReadError, ReadError, ReadError]),
    (Crc, EarlierUnsealed, [Err_, Err_, Truncated]),
    (Payload, Tail, [Truncated, Err_, Truncated]),
    (Payload, Middle, [Err_, Err_, Truncated]),
    (Payload, Earlier, [ReadError, ReadError, ReadError]),
    (Payload, EarlierUnsealed, [Err_, Err_, Truncated]),
    (StateFrame, Tail, [Truncated, Err_, Truncated]),
    (StateFrame, Middle, [Err_, Err_, Truncated]),
    (StateFrame, Earlier, [Err_, Err_, Truncated]),
    (StateFrame, EarlierUnsealed, [Err_, Err_, Truncated]),
    (SnapshotFile, Tail, [ReadError, ReadError, ReadError]),
    (SnapshotFile, Middle, [Err_, Err_, Forgotten]),
    (SnapshotFile, Earlier, [Err_, Err_, Forgotten]),
];

// ---------------------------------------------------------------------------
// The log each case damages.
// ---------------------------------------------------------------------------

const DIR: &str = "/sim/log";
const MAX_ENTRY: u64 = 64 << 10;
/// An allocation bound: the largest frame (`max_entry_size` and a frame's
/// overhead), with room for small bookkeeping.
const ALLOC_BOUND: usize = MAX_ENTRY as usize + 1024;

fn opts(fs: &SimFs, mode: RecoveryMode, preallocate: Preallocate) -> Options {
    Options::default()
        .segment_size(4096)
        .preallocate(preallocate)
        .max_entry_size(MAX_ENTRY)
        .recovery_mode(mode)
        .file_system(fs.handle())
}

/// The kind of damage a refused open names for `place` at `pos`: a torn
/// tail only where the default mode would cut it (refused here under
/// `AbsoluteConsistency`), else damage to the frame or the header.
fn damage_of(place: Place, pos: Position, mode: RecoveryMode) -> Kind {
    match (place, pos) {
        (SegmentHeader, _) => Kind::Header,
        (SnapshotFile, _) => Kind::Snapshot,
        (Crc | Payload | StateFrame, Tail) if mode == RecoveryMode::AbsoluteConsistency => {
            Kind::TornTail
        }
        _ => Kind::Frame,
    }
}

fn entry(i: u64) -> Entry {
    let len = 100 + (i * 37 % 60) as usize;
    Entry::new(
        i,
        1 + i / 10,
        (0..len)
            .map(|k| (i as usize * 7 + k) as u8)
            .collect::<Vec<u8>>(),
    )
}

#[derive(Debug, Clone)]
struct RawFrame {
    offset: u64,
    ty: u8,
    len: u64,
    /// Whether it is the last frame of its write (`frame::END_OF_WRITE`).
    end: bool,
    /// An entry's index.
    index: Option<u64>,
    /// A state frame's blob.
    state: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct Seg {
    path: PathBuf,
    /// Data frames after the header, up to the footer.
    frames: Vec<RawFrame>,
    /// Where the footer starts (sealed segments).
    footer_at: Option<u64>,
}

/// Walks the frames of an intact segment file.
fn parse(path: PathBuf, bytes: &[u8]) -> Seg {
    let mut frames = Vec::new();
    let mut at = 0usize;
    let mut footer_at = None;
    while at + 9 <= bytes.len() {
        let end = frame::is_end_of_write(bytes[at]);
        let ty = bytes[at] & !frame::FLAGS;
        let len = u32::from_le_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
        if ty == 0 {
            break; // preallocated space
        }
        if ty == 5 {
            footer_at = Some(at as u64);
            break;
        }
        let payload = &bytes[at + 9..at + 9 + len];
        let (index, state) = match ty {
            2 => (Some(proto::Entry::decode(payload).unwrap().index), None),
            3 => (
                None,
                Some(proto::State::decode(payload).unwrap().data.to_vec()),
            ),
            _ => (None, None),
        };
        if ty != 1 {
            frames.push(RawFrame {
                offset: at as u64,
                ty,
                len: len as u64,
                end,
                index,
                state,
            });
        }
        at += 9 + len;
    }
    Seg {
        path,
        frames,
        footer_at,
    }
}

struct Built {
    fs: SimFs,
    segs: Vec<Seg>,
    last: u64,
}

/// A log of three segments (two sealed) with entries and state frames
/// spread through them; with `end_with_state` its last frame is a state
/// frame, otherwise an entry.
fn build(preallocate: Preallocate, end_with_state: bool) -> Built {
    let fs = SimFs::new();
    let log = Log::open(
        DIR,
        opts(&fs, RecoveryMode::TolerateTailCorruption, preallocate),
    )
    .unwrap();
    let mut i = 0;
    loop {
        i += 1;
        log.append(&[entry(i)]).unwrap();
        if i % 7 == 0 {
            log.set_state(format!("state after {i}").into_bytes())
                .unwrap();
        }
        let segs = log.segments();
        if segs.len() == 3 && segs[2].2 >= 14 {
            break;
        }
    }
    if end_with_state {
        log.set_state(&b"the final state"[..]).unwrap();
    }
    drop(log);
    let mut segs: Vec<Seg> = fs
        .image()
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "wal"))
        .map(|(p, b)| parse(p, &b))
        .collect();
    segs.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(segs.len(), 3);
    assert!(segs[0].footer_at.is_some() && segs[1].footer_at.is_some());
    Built { fs, segs, last: i }
}

/// What the log holds before frame `frame` of segment `seg` (all of the
/// segments before `seg` when `frame` is `None`): its last index and state.
/// What recovery keeps when it keeps the writes wholly before frame `frame`
/// of segment `seg` (the whole segment when `None`): a write counts only
/// with its last frame, so a damaged frame takes its whole write with it.
fn prefix(b: &Built, seg: usize, frame: Option<usize>) -> (u64, Option<Vec<u8>>) {
    let (mut last, mut state) = (0, None);
    let (mut pending_last, mut pending_state) = (0, None);
    for (s, sg) in b.segs.iter().enumerate() {
        for (k, f) in sg.frames.iter().enumerate() {
            if s > seg || (s == seg && Some(k) >= frame) {
                return (last, state);
            }
            if let Some(i) = f.index {
                pending_last = i;
            }
            if let Some(st) = &f.state {
                pending_state = Some(st.clone());
            }
            if f.end {
                last = pending_last;
                state.clone_from(&pending_state);
            }
        }
    }
    (last, state)
}

/// The damage of one case: which file, where the damaged frame starts,
/// and what the log must hold when recovery keeps what is before it.
struct Damage {
    path: PathBuf,
    offset: u64,
    /// The damaged entry's index (for `ReadError`).
    index: Option<u64>,
    kept_last: u64,
    kept_state: Option<Vec<u8>>,
}

fn damage_log(b: &Built, place: Place, pos: Position) -> Damage {
    // Which segment, and which of its frames.
    #[derive(Clone, Copy)]
    enum Pick {
        Last,
        /// A state frame with at least two frames after it.
        StateInside,
        /// The newest state frame (the one a footer names).
        NewestState,
        /// An entry frame in the first half of the segment.
        EntryInside,
    }
    let (s, pick) = match (place, pos) {
        (SegmentHeader, Tail) => (2, Pick::Last),
        (SegmentHeader, Middle) => (1, Pick::Last),
        (SegmentHeader, _) => (0, Pick::Last),
        (_, Tail) => (2, Pick::Last),
        (StateFrame, Middle) => (2, Pick::StateInside),
        (StateFrame, _) => (0, Pick::NewestState),
        (_, Middle) => (2, Pick::EntryInside),
        (_, _) => (0, Pick::EntryInside),
    };
    let pick = |sg: &Seg| -> usize {
        let n = sg.frames.len();
        let ty = |k: usize| sg.frames[k].ty;
        match pick {
            Pick::Last => n - 1,
            Pick::StateInside => (0..n - 2).rev().find(|&k| ty(k) == 3).unwrap(),
            Pick::NewestState => (0..n).rev().find(|&k| ty(k) == 3).unwrap(),
            Pick::EntryInside => (0..n / 2).rev().find(|&k| ty(k) == 2).unwrap(),
        }
    };
    let sg = &b.segs[s];
    let mut bytes = b.fs.read(&sg.path).unwrap();
    if pos == EarlierUnsealed {
        // The footer never made it: the segment ends after its data.
        bytes.truncate(sg.footer_at.unwrap() as usize);
    }
    if place == SegmentHeader {
        bytes[12] ^= 0x20; // inside the magic
        b.fs.put(&sg.path, bytes);
        let (kept_last, kept_state) = prefix(b, s, None);
        return Damage {
            path: sg.path.clone(),
            offset: 0,
            index: None,
            kept_last,
            kept_state,
        };
    }
    let k = pick(sg);
    let f = &sg.frames[k];
    match place {
        FrameType => assert_eq!(f.ty, 2),
        StateFrame => assert_eq!(f.ty, 3),
        _ => assert_eq!(f.ty, 2),
    }
    if pos == Tail {
        assert_eq!(k, sg.frames.len() - 1);
    }
    let o = f.offset as usize;
    match place {
        FrameType => bytes[o] = 0x7f,
        Length => bytes[o + 1..o + 5].copy_from_slice(&0xffff_fff0u32.to_le_bytes()),
        Crc => bytes[o + 6] ^= 0x55,
        Payload => bytes[o + 9 + f.len as usize - 3] ^= 0x40,
        StateFrame => bytes[o + 9 + f.len as usize - 1] ^= 0x40,
        SegmentHeader | SnapshotFile => unreachable!(),
    }
    b.fs.put(&sg.path, bytes);
    let (kept_last, kept_state) = prefix(b, s, Some(k));
    Damage {
        path: sg.path.clone(),
        offset: f.offset,
        index: f.index,
        kept_last,
        kept_state,
    }
}

fn check_entries(log: &Log, last: u64, skip: Option<u64>, ctx: &str) {
    assert_eq!(
        (log.first_index(), log.last_index()),
        (1, last),
        "{ctx}: range"
    );
    for i in 1..=last {
        if Some(i) == skip {
            continue;
        }
        assert_eq!(log.get_entry(i).unwrap(), entry(i), "{ctx}: entry {i}");
        assert_eq!(log.term(i).unwrap(), entry(i).term, "{ctx}: term {i}");
    }
}

/// Runs one log case; returns the outcome seen.
fn log_case(
    place: Place,
    pos: Position,
    mode: RecoveryMode,
    expect: Expect,
    preallocate: Preallocate,
) {
    let ctx = format!("{place:?} at {pos:?} under {mode:?} (preallocate {preallocate:?})");
    let b = build(preallocate, place == StateFrame && pos == Tail);
    let d = damage_log(&b, place, pos);
    // What `raftwal inspect` says of the damage is what the open does.
    let scan = agree::scan(&opts(&b.fs, mode, preallocate), DIR).unwrap();
    let before = b.fs.image();
    let (opened, largest) = tracked(|| {
        let r = Log::open(DIR, opts(&b.fs, mode, preallocate));
        if let Ok(log) = &r {
            // Every read, as a user would do them.
            for i in log.first_index()..=log.last_index() {
                let _ = log.get_entry(i);
            }
            let _ = log.entries(log.first_index(), log.last_index() + 1, None);
        }
        r
    });
    assert!(
        largest <= ALLOC_BOUND,
        "{ctx}: an allocation of {largest} bytes"
    );
    if let Err(e) = agree::agrees(&scan, mode, &opened) {
        panic!("{ctx}: {e}");
    }
    match expect {
        Expect::Error => {
            match opened {
                Err(Error::Corruption {
                    path,
                    offset,
                    damage,
                    ..
                }) => {
                    assert_eq!((path, offset), (d.path.clone(), d.offset), "{ctx}");
                    assert_eq!(damage, damage_of(place, pos, mode), "{ctx}");
                }
                Err(e) => panic!("{ctx}: expected corruption, got {e}"),
                Ok(log) => panic!(
                    "{ctx}: expected corruption, the log opened with {}..={} ({:?})",
                    log.first_index(),
                    log.last_index(),
                    log.recovery_report()
                ),
            }
            assert!(
                b.fs.image() == before,
                "{ctx}: a failed open changed the disk"
            );
        }
        Expect::Truncated => {
            let log = opened.unwrap_or_else(|e| panic!("{ctx}: expected a repair, got {e}"));
            let r = log.recovery_report();
            assert!(
                !r.repairs.is_empty() || !r.segments_removed.is_empty(),
                "{ctx}: no repair reported"
            );
            check_entries(&log, d.kept_last, None, &ctx);
            assert_eq!(
                log.state().map(|s| s.to_vec()),
                d.kept_state,
                "{ctx}: state"
            );
            // The repaired log accepts writes (a small one first, which
            // must not leave bytes of anything older behind it) and opens
            // again, strictly.
            let strict = || {
                Log::open(
                    DIR,
                    opts(&b.fs, RecoveryMode::AbsoluteConsistency, preallocate),
                )
                .unwrap_or_else(|e| panic!("{ctx}: strict reopen after the repair: {e}"))
            };
            log.set_state(&b"s"[..]).unwrap();
            drop(log);
            let log = strict();
            check_entries(&log, d.kept_last, None, &ctx);
            assert_eq!(log.state().as_deref(), Some(&b"s"[..]), "{ctx}: state");
            let next = d.kept_last + 1;
            log.append(&[entry(next)]).unwrap();
            drop(log);
            let log = strict();
            check_entries(&log, next, None, &ctx);
            assert_eq!(log.state().as_deref(), Some(&b"s"[..]), "{ctx}: state");
        }
        Expect::ReadError => {
            let log = opened.unwrap_or_else(|e| panic!("{ctx}: expected an open, got {e}"));
            let bad = d.index.unwrap();
            check_entries(&log, b.last, Some(bad), &ctx);
            for r in [
                log.get_entry(bad).map(|_| ()),
                log.entries(1, b.last + 1, None).map(|_| ()),
            ] {
                match r {
                    Err(Error::Corruption { path, offset, .. }) => {
                        assert_eq!((path, offset), (d.path.clone(), d.offset), "{ctx}")
                    }
                    other => panic!("{ctx}: reading entry {bad}: {other:?}"),
                }
            }
        }
        Expect::Forgotten => unreachable!(),
    }
}

// ---------------------------------------------------------------------------
// Snapshot files.
// ---------------------------------------------------------------------------

fn raft_entry(i: u64) -> RaftEntry {
    RaftEntry {
        index: i,
        term: 1,
        data: vec![i as u8; 40].into(),
        ..Default::default()
    }
}

fn snapshot_case(pos: Position, mode: RecoveryMode, expect: Expect) {
    let ctx = format!("snapshot file at {pos:?} under {mode:?}");
    let fs = SimFs::new();
    let cs = ConfState {
        voters: vec![1, 2, 3],
        ..Default::default()
    };
    {
        let store = RaftLogStore::open_with(DIR, opts(&fs, mode, Preallocate::None)).unwrap();
        let es: Vec<RaftEntry> = (1..=10).map(raft_entry).collect();
        let hs = HardState {
            term: 1,
            vote: 1,
            commit: 8,
            ..Default::default()
        };
        store.persist(&es, Some(&hs), Some(&cs)).unwrap();
        store
            .create_snapshot(8, cs.clone(), vec![0xab; 300])
            .unwrap();
    }
    let path = fs
        .paths()
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "snap"))
        .unwrap();
    let mut bytes = fs.read(&path).unwrap();
    let at = match pos {
        Tail => bytes.len() - 1,
        Middle => 32 + 2,
        _ => 0,
    };
    bytes[at] ^= 0x04;
    fs.put(&path, bytes);
    let before = fs.image();
    let (opened, largest) = tracked(|| {
        let r = RaftLogStore::open_with(DIR, opts(&fs, mode, Preallocate::None));
        if let Ok(s) = &r {
            let _ = s.snapshot(0, 0);
        }
        r
    });
    assert!(
        largest <= ALLOC_BOUND,
        "{ctx}: an allocation of {largest} bytes"
    );
    let check_log = |s: &RaftLogStore| {
        let es = s
            .entries(1, 11, None, raft::GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(es, (1..=10).map(raft_entry).collect::<Vec<_>>(), "{ctx}");
    };
    match expect {
        Expect::Error => {
            match opened {
                Err(Error::Corruption {
                    path: p,
                    offset,
                    damage,
                    ..
                }) => {
                    assert_eq!((p, offset), (path.clone(), 0), "{ctx}");
                    assert_eq!(damage, Kind::Snapshot, "{ctx}");
                }
                Err(e) => panic!("{ctx}: expected corruption, got {e}"),
                Ok(_) => panic!("{ctx}: expected corruption, the store opened"),
            }
            assert!(
                fs.image() == before,
                "{ctx}: a failed open changed the disk"
            );
        }
        Expect::ReadError => {
            let s = opened.unwrap_or_else(|e| panic!("{ctx}: {e}"));
            check_log(&s);
            assert_eq!(s.snapshot_metadata().map(|m| m.index), Some(8));
            let e = s.snapshot(0, 0).unwrap_err();
            let raft::Error::Io(inner) = e else {
                panic!("{ctx}: {e:?}");
            };
            match inner.get_ref().and_then(|x| x.downcast_ref::<Error>()) {
                Some(Error::Corruption { path: p, .. }) => assert_eq!(*p, path, "{ctx}"),
                other => panic!("{ctx}: {other:?}"),
            }
        }
        Expect::Forgotten => {
            let s = opened.unwrap_or_else(|e| panic!("{ctx}: {e}"));
            check_log(&s);
            assert_eq!(s.snapshot_metadata(), None, "{ctx}");
            assert_eq!(s.initial_state().unwrap().conf_state, cs, "{ctx}");
        }
        Expect::Truncated => unreachable!(),
    }
}

#[test]
fn corruption_matrix() {
    let mut cases = 0;
    let mut by_outcome = [0u32; 4];
    let mut failures = Vec::new();
    // Report every case that fails, not only the first.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for &(place, pos, expects) in TABLE {
        for (mode, expect) in MODES.iter().zip(expects) {
            let runs: Vec<Option<Preallocate>> = match place {
                SnapshotFile => vec![None],
                _ => vec![
                    Some(Preallocate::None),
                    Some(Preallocate::Allocate),
                    Some(Preallocate::ZeroFill),
                ],
            };
            for preallocate in runs {
                let r = std::panic::catch_unwind(|| match preallocate {
                    None => snapshot_case(pos, *mode, expect),
                    Some(p) => log_case(place, pos, *mode, expect, p),
                });
                if let Err(e) = r {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    failures.push(format!("{place:?} at {pos:?} under {mode:?}: {msg}"));
                }
                cases += 1;
                by_outcome[expect as usize] += 1;
            }
        }
    }
    std::panic::set_hook(hook);
    eprintln!(
        "crash_corruption_matrix: {cases} corruption cases ({} places x positions x 3 recovery modes, log cases without preallocation, fallocated and zero-filled): {} errors with path and offset, {} repairs or kept prefixes, {} errors on read, {} snapshots forgotten; {} log cases scanned as `raftwal inspect` does, the scan agreeing with the open",
        TABLE.len(),
        by_outcome[0],
        by_outcome[1],
        by_outcome[2],
        by_outcome[3],
        agree::CHECKED.load(std::sync::atomic::Ordering::Relaxed)
    );
    // Every log case (all but the snapshot files') was scanned.
    let log_cases = cases - TABLE.iter().filter(|t| t.0 == SnapshotFile).count() as u32 * 3;
    assert_eq!(
        agree::CHECKED.load(std::sync::atomic::Ordering::Relaxed),
        u64::from(log_cases),
        "every log case is scanned"
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} cases differ from the table:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Found by fuzzing (`fuzz/fuzz_targets/open_dir.rs`): a damaged directory
/// holding two segment files of one sequence. When
/// `TolerateAnyCorruption` kept a prefix ending in the first of them, it
/// removed only the files of higher sequences, so the other one (whose
/// header disagrees with its name) stayed and the next open failed.
#[test]
fn tolerate_any_drops_a_duplicate_sequence_after_the_damage() {
    let b = build(Preallocate::None, false);
    let mode = RecoveryMode::TolerateAnyCorruption;
    // The second segment under the first one's sequence.
    let second = b.fs.read(&b.segs[1].path).unwrap();
    let name = b.segs[1].path.file_name().unwrap().to_str().unwrap();
    let renamed = b.segs[1]
        .path
        .with_file_name(format!("{:016x}{}", 1, &name[16..]));
    b.fs.delete(&b.segs[1].path);
    b.fs.put(&renamed, second);
    // Damage in the first segment, so a prefix of it is kept.
    let d = damage_log(&b, Crc, EarlierUnsealed);
    let log = Log::open(DIR, opts(&b.fs, mode, Preallocate::None)).unwrap();
    check_entries(&log, d.kept_last, None, "duplicate sequence");
    log.append(&[entry(d.kept_last + 1)]).unwrap();
    drop(log);
    let log = Log::open(DIR, opts(&b.fs, mode, Preallocate::None)).unwrap();
    check_entries(&log, d.kept_last + 1, None, "duplicate sequence, reopened");
    assert!(!b.fs.paths().contains(&renamed));
}

/// Found by fuzzing: when the last segment was removed at open (here: a
/// creation a crash interrupted, only a torn header), the sealed segment
/// before it became the active one and a scan at the next open found the
/// damage in it that reads had been reporting, and refused to open. Sealed
/// segments are now never written again: the log goes on in a new one.
#[test]
fn a_sealed_segment_is_never_written_again() {
    let b = build(Preallocate::None, false);
    let mode = RecoveryMode::TolerateTailCorruption;
    // The last segment is only a torn header.
    let last = &b.segs[2].path;
    let mut header = b.fs.read(last).unwrap();
    header.truncate(20);
    b.fs.put(last, header);
    // An entry of the (sealed) middle segment is damaged.
    let sg = &b.segs[1];
    let f = sg.frames.iter().find(|f| f.ty == 2).unwrap();
    let mut bytes = b.fs.read(&sg.path).unwrap();
    bytes[(f.offset + 9 + f.len - 2) as usize] ^= 0x01;
    let damaged = bytes.clone();
    b.fs.put(&sg.path, bytes);
    let bad = f.index.unwrap();
    let kept = sg.frames.iter().filter_map(|f| f.index).max().unwrap();
    for round in 0..3 {
        let log = Log::open(DIR, opts(&b.fs, mode, Preallocate::None))
            .unwrap_or_else(|e| panic!("open {round}: {e}"));
        check_entries(&log, kept + round, Some(bad), "sealed segment");
        assert!(matches!(log.get_entry(bad), Err(Error::Corruption { .. })));
        // A small write first: it fits where the footer is.
        log.set_state(format!("s{round}").into_bytes()).unwrap();
        log.append(&[entry(kept + round + 1)]).unwrap();
    }
    assert!(
        b.fs.read(&sg.path).unwrap() == damaged,
        "the sealed segment was written"
    );
}
