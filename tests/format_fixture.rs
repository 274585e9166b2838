//! The on-disk format, pinned by committed fixtures in `tests/fixtures/`,
//! one set per format version (`-v1`: written by version-1 builds, before
//! segment headers named the segment they continue; `-v2`: this build):
//!
//! - `log-vN/`: a `Log` directory (sealed segments with footers, a cut
//!   inside the active segment, a cut below it, a compaction, state blobs);
//! - `raft-vN/`: a `RaftLogStore` directory (entries, hard and conf states,
//!   a snapshot file, a compaction);
//! - `log-damaged-vN/`: `log-vN` with one flipped byte in an entry of a
//!   sealed segment and a torn frame at the end of the last segment.
//!
//! The tests open a copy of each (an open may write) and check every entry,
//! term and state byte for byte, check that the damaged one gives the
//! outcome `docs/FORMAT.md` documents, and replay the operations that made
//! the fixtures to check that this build writes byte-identical files (the
//! newest version's). A failure there means the format changed: bump the
//! format version, keep a reader for the older ones and their fixtures, and
//! generate the new version's with
//! `cargo test --test format_fixture -- --ignored generate_fixtures`.

#[path = "common/fs_sim.rs"]
mod fs_sim;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fs_sim::SimFs;
use raft::eraftpb::{ConfState, Entry as RaftEntry, HardState};
use raft::{GetEntriesContext, Storage};
use raftwal::fs::FileSystem;
use raftwal::tools::{frame, proto};
use raftwal::{Entry, Error, Log, Options, Preallocate, RaftLogStore, RecoveryMode, WriteBatch};

const SIM_DIR: &str = "/fixture";

/// Every format version with fixtures, oldest first; this build writes the
/// last.
const VERSIONS: [&str; 2] = ["v1", "v2"];

/// The version this build writes.
const NEWEST: &str = "v2";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn opts(fs: Arc<dyn FileSystem>, mode: RecoveryMode) -> Options {
    Options::default()
        .segment_size(4096)
        .preallocate(Preallocate::None)
        .recovery_mode(mode)
        .file_system(fs)
}

/// The data of entry `index` written in `term`.
fn data(index: u64, term: u64) -> Vec<u8> {
    let len = 40 + ((index * 29 + term * 11) % 90) as usize;
    let mut d = format!("entry {index} of term {term}: ").into_bytes();
    d.extend((0..len).map(|k| (index as usize * 3 + term as usize * 101 + k * 7) as u8));
    d
}

/// What a `Log` shows: first index, the term before it, entries as
/// `(term, data)`, state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct LogModel {
    first: u64,
    prev_term: u64,
    entries: Vec<(u64, Vec<u8>)>,
    state: Option<Vec<u8>>,
}

impl LogModel {
    fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }

    fn append(&mut self, from: u64, to: u64, term: u64) -> Vec<Entry> {
        assert_eq!(from, self.last() + 1);
        (from..=to)
            .map(|i| {
                self.entries.push((term, data(i, term)));
                Entry::new(i, term, data(i, term))
            })
            .collect()
    }

    fn check(&self, log: &Log, ctx: &str) {
        assert_eq!(
            (log.first_index(), log.last_index()),
            (self.first, self.last()),
            "{ctx}"
        );
        assert_eq!(log.term(self.first - 1).unwrap(), self.prev_term, "{ctx}");
        for (k, (term, d)) in self.entries.iter().enumerate() {
            let i = self.first + k as u64;
            let e = log.get_entry(i).unwrap();
            assert_eq!((e.index, e.term), (i, *term), "{ctx}: entry {i}");
            assert_eq!(&e.data[..], &d[..], "{ctx}: data of entry {i}");
            assert_eq!(log.term(i).unwrap(), *term, "{ctx}: term {i}");
        }
        assert_eq!(log.state().map(|s| s.to_vec()), self.state, "{ctx}: state");
    }
}

/// The operations behind `log-vN`, on `fs` in `dir`. The log is closed
/// between phases, so background sealing never races a later cut and the
/// bytes are the same on every run.
fn write_log_fixture(fs: &Arc<dyn FileSystem>, dir: &Path) -> LogModel {
    let open = || Log::open(dir, opts(Arc::clone(fs), RecoveryMode::AbsoluteConsistency)).unwrap();
    let mut m = LogModel {
        first: 1,
        ..Default::default()
    };
    // Three segments of entries in terms 1 to 3, and a state blob.
    let log = open();
    for i in 1..=70 {
        let term = 1 + i / 30;
        log.append(&m.append(i, i, term)).unwrap();
        if i == 25 {
            log.set_state(&b"state: term 1, vote 1"[..]).unwrap();
            m.state = Some(b"state: term 1, vote 1".to_vec());
        }
    }
    drop(log);
    // A cut inside the active segment, with its entries and a state blob in
    // one batch.
    let log = open();
    let mut b = WriteBatch::new();
    b.truncate_from(68);
    m.entries.truncate(67);
    for e in m.append(68, 72, 4) {
        b.push(e.index, e.term, &e.data).unwrap();
    }
    b.set_state(&b"state: term 4, vote 2"[..]);
    m.state = Some(b"state: term 4, vote 2".to_vec());
    log.write(&mut b).unwrap();
    drop(log);
    // A cut below the active segment: a new segment opens with a
    // truncation marker and a copy of the state.
    let log = open();
    let first_of_active = log.segments().last().unwrap().1;
    let cut = first_of_active - 5;
    log.truncate_from_index(cut).unwrap();
    m.entries.truncate((cut - 1) as usize);
    log.append(&m.append(cut, cut + 12, 5)).unwrap();
    drop(log);
    // A compaction, and enough entries to roll and seal again.
    let log = open();
    log.compact(20).unwrap();
    m.prev_term = m.entries[18].0;
    m.entries.drain(..19);
    m.first = 20;
    let next = m.last() + 1;
    log.append(&m.append(next, next + 30, 5)).unwrap();
    drop(log);
    m
}

fn raft_entry(i: u64, term: u64) -> RaftEntry {
    RaftEntry {
        index: i,
        term,
        data: data(i, term).into(),
        ..Default::default()
    }
}

fn conf() -> ConfState {
    ConfState {
        voters: vec![1, 2, 3],
        learners: vec![4],
        ..Default::default()
    }
}

fn hs(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

const SNAPSHOT_DATA: &[u8] = b"the state machine at index 30";

/// The operations behind `raft-vN`.
fn write_raft_fixture(fs: &Arc<dyn FileSystem>, dir: &Path) {
    let open = || {
        RaftLogStore::open_with(dir, opts(Arc::clone(fs), RecoveryMode::AbsoluteConsistency))
            .unwrap()
    };
    let store = open();
    let es: Vec<RaftEntry> = (1..=20).map(|i| raft_entry(i, 1)).collect();
    store
        .persist(&es, Some(&hs(1, 1, 10)), Some(&conf()))
        .unwrap();
    let es: Vec<RaftEntry> = (21..=40).map(|i| raft_entry(i, 2)).collect();
    store.persist(&es, Some(&hs(2, 2, 35)), None).unwrap();
    drop(store);
    let store = open();
    store
        .create_snapshot(30, conf(), SNAPSHOT_DATA.to_vec())
        .unwrap();
    store.compact(25).unwrap();
    // A conflict: entries from 38 on are replaced in term 3.
    let es: Vec<RaftEntry> = (38..=45).map(|i| raft_entry(i, 3)).collect();
    store.persist(&es, Some(&hs(3, 3, 36)), None).unwrap();
    drop(store);
}

fn check_raft(store: &RaftLogStore, ctx: &str) {
    assert_eq!(store.first_index().unwrap(), 25, "{ctx}");
    assert_eq!(store.last_index().unwrap(), 45, "{ctx}");
    assert_eq!(store.term(24).unwrap(), 2, "{ctx}");
    let want: Vec<RaftEntry> = (25..=45)
        .map(|i| {
            raft_entry(
                i,
                if i >= 38 {
                    3
                } else if i > 20 {
                    2
                } else {
                    1
                },
            )
        })
        .collect();
    let got = store
        .entries(25, 46, None, GetEntriesContext::empty(false))
        .unwrap();
    assert_eq!(got, want, "{ctx}");
    let st = store.initial_state().unwrap();
    assert_eq!(st.hard_state, hs(3, 3, 36), "{ctx}");
    assert_eq!(st.conf_state, conf(), "{ctx}");
    let snap = store.snapshot(0, 0).unwrap();
    assert_eq!(
        (snap.get_metadata().index, snap.get_metadata().term),
        (30, 2),
        "{ctx}"
    );
    assert_eq!(snap.get_metadata().get_conf_state(), &conf(), "{ctx}");
    assert_eq!(&snap.data[..], SNAPSHOT_DATA, "{ctx}");
}

/// The files of a fixture made on `fs` in `dir` (without `LOCK`).
fn files_of(fs: &SimFs, dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs.image()
        .into_iter()
        .filter(|(p, _)| p.parent() == Some(dir))
        .map(|(p, b)| (p.file_name().unwrap().to_string_lossy().into_owned(), b))
        .filter(|(n, _)| n != raftwal::LOCK_FILE)
        .collect()
}

/// The files of a committed fixture.
fn committed(name: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = fixtures().join(name);
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        let n = p.file_name().unwrap().to_string_lossy().into_owned();
        out.insert(n, std::fs::read(&p).unwrap());
    }
    out
}

/// A copy of a committed fixture in a temporary directory.
fn copy_of(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for (n, b) in committed(name) {
        std::fs::write(tmp.path().join(n), b).unwrap();
    }
    tmp
}

fn std_fs() -> Arc<dyn FileSystem> {
    Arc::new(raftwal::fs::StdFileSystem)
}

/// Where the damage of `log-damaged-vN` is: the entry and offset of the
/// flipped byte's frame in the first segment, and the offset of the torn
/// frame in the last one.
struct DamagePlan {
    entry: u64,
    entry_segment: String,
    entry_offset: u64,
    torn_segment: String,
    torn_offset: u64,
}

/// Walks the frames of an intact segment file: `(offset, type, payload)`.
fn frames(bytes: &[u8]) -> Vec<(u64, u8, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
        // The type without its END_OF_WRITE bit.
        let ty = bytes[at] & !frame::FLAGS;
        out.push((at as u64, ty, &bytes[at + 9..at + 9 + len]));
        at += 9 + len;
    }
    out
}

fn damage(files: &mut BTreeMap<String, Vec<u8>>) -> DamagePlan {
    use prost::Message;
    let segs: Vec<String> = files
        .keys()
        .filter(|n| n.ends_with(".wal"))
        .cloned()
        .collect();
    let (first, last) = (segs[0].clone(), segs[segs.len() - 1].clone());
    // A flipped byte in the data of the third entry frame of the first
    // (sealed) segment that is still in the log.
    let bytes = files.get_mut(&first).unwrap();
    let (offset, index, len) = frames(bytes)
        .into_iter()
        .filter(|f| f.1 == 2)
        .map(|(o, _, p)| (o, proto::Entry::decode(p).unwrap().index, p.len()))
        .filter(|f| f.1 >= 20)
        .nth(2)
        .unwrap();
    bytes[offset as usize + 9 + len - 5] ^= 0x08;
    // A torn frame after the last one: a header claiming 60 bytes, 7 of
    // them written.
    let bytes = files.get_mut(&last).unwrap();
    let torn_offset = bytes.len() as u64;
    bytes.extend_from_slice(&[
        2, 60, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 8, 1, 16, 1, 26, 50, 7,
    ]);
    DamagePlan {
        entry: index,
        entry_segment: first,
        entry_offset: offset,
        torn_segment: last,
        torn_offset,
    }
}

#[test]
#[ignore = "writes tests/fixtures; run once when the format changes on purpose"]
fn generate_fixtures() {
    let root = fixtures();
    let write_dir = |name: &str, files: &BTreeMap<String, Vec<u8>>| {
        let dir = root.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (n, b) in files {
            std::fs::write(dir.join(n), b).unwrap();
        }
    };
    // Only the version this build writes: older fixtures stay as the
    // builds of their day wrote them.
    let fs = SimFs::new();
    write_log_fixture(&fs.handle(), Path::new(SIM_DIR));
    let log = files_of(&fs, Path::new(SIM_DIR));
    write_dir(&format!("log-{NEWEST}"), &log);
    let mut damaged = log.clone();
    damage(&mut damaged);
    write_dir(&format!("log-damaged-{NEWEST}"), &damaged);
    let fs = SimFs::new();
    write_raft_fixture(&fs.handle(), Path::new(SIM_DIR));
    write_dir(
        &format!("raft-{NEWEST}"),
        &files_of(&fs, Path::new(SIM_DIR)),
    );
}

#[test]
fn the_valid_log_fixtures_read_back_byte_for_byte() {
    for version in VERSIONS {
        valid_log_fixture_reads_back(&format!("log-{version}"));
    }
}

fn valid_log_fixture_reads_back(name: &str) {
    let want = write_log_fixture(&SimFs::new().handle(), Path::new(SIM_DIR));
    let dir = copy_of(name);
    let log = Log::open(
        dir.path(),
        opts(std_fs(), RecoveryMode::AbsoluteConsistency),
    )
    .unwrap();
    let r = log.recovery_report();
    assert!(
        r.repairs.is_empty() && r.segments_removed.is_empty(),
        "{r:?}"
    );
    assert_eq!((want.first, want.last()), (20, 106), "the fixture's shape");
    want.check(&log, name);
    drop(log);
    // Appending to it works, and it still reads back.
    let log = Log::open(
        dir.path(),
        opts(std_fs(), RecoveryMode::AbsoluteConsistency),
    )
    .unwrap();
    let mut m = want.clone();
    let next = m.last() + 1;
    log.append(&m.append(next, next + 40, 6)).unwrap();
    drop(log);
    let log = Log::open(
        dir.path(),
        opts(std_fs(), RecoveryMode::AbsoluteConsistency),
    )
    .unwrap();
    m.check(&log, &format!("{name} after appends"));
}

#[test]
fn the_valid_raft_fixtures_read_back() {
    for version in VERSIONS {
        let name = format!("raft-{version}");
        let dir = copy_of(&name);
        let store = RaftLogStore::open_with(
            dir.path(),
            opts(std_fs(), RecoveryMode::AbsoluteConsistency),
        )
        .unwrap();
        check_raft(&store, &name);
    }
}

#[test]
fn the_damaged_fixtures_give_the_documented_outcome() {
    for version in VERSIONS {
        damaged_fixture_gives_the_documented_outcome(version);
    }
}

fn damaged_fixture_gives_the_documented_outcome(version: &str) {
    let damaged = format!("log-damaged-{version}");
    let mut files = committed(&format!("log-{version}"));
    let plan = damage(&mut files);
    assert_eq!(
        files,
        committed(&damaged),
        "{damaged} is log-{version} with the documented damage"
    );
    let want = write_log_fixture(&SimFs::new().handle(), Path::new(SIM_DIR));
    // AbsoluteConsistency: the torn tail is an error naming the file and
    // the offset, and nothing is changed.
    let dir = copy_of(&damaged);
    match Log::open(
        dir.path(),
        opts(std_fs(), RecoveryMode::AbsoluteConsistency),
    ) {
        Err(Error::Corruption { path, offset, .. }) => {
            assert_eq!(path, dir.path().join(&plan.torn_segment));
            assert_eq!(offset, plan.torn_offset);
        }
        other => panic!("expected corruption, got {:?}", other.map(|_| ())),
    }
    assert_eq!(
        std::fs::read(dir.path().join(&plan.torn_segment)).unwrap(),
        files[&plan.torn_segment]
    );
    // TolerateTailCorruption and TolerateAnyCorruption: the torn tail is
    // cut and reported; the flipped byte in the sealed segment is found
    // when that entry is read, and every other entry reads back intact.
    for mode in [
        RecoveryMode::TolerateTailCorruption,
        RecoveryMode::TolerateAnyCorruption,
    ] {
        let dir = copy_of(&damaged);
        let log = Log::open(dir.path(), opts(std_fs(), mode)).unwrap();
        let r = log.recovery_report();
        assert_eq!(r.repairs.len(), 1, "{mode:?}: {r:?}");
        assert_eq!(r.repairs[0].0, dir.path().join(&plan.torn_segment));
        assert_eq!(r.repairs[0].1, plan.torn_offset);
        assert_eq!(r.bytes_dropped, 16);
        assert_eq!(
            (log.first_index(), log.last_index()),
            (want.first, want.last())
        );
        for (k, (term, d)) in want.entries.iter().enumerate() {
            let i = want.first + k as u64;
            if i == plan.entry {
                match log.get_entry(i) {
                    Err(Error::Corruption { path, offset, .. }) => {
                        assert_eq!(path, dir.path().join(&plan.entry_segment));
                        assert_eq!(offset, plan.entry_offset);
                    }
                    other => panic!("{mode:?}: entry {i}: {other:?}"),
                }
                continue;
            }
            let e = log.get_entry(i).unwrap();
            assert_eq!(
                (e.term, &e.data[..]),
                (*term, &d[..]),
                "{mode:?}: entry {i}"
            );
        }
        assert!(matches!(
            log.entries(want.first, want.last() + 1, None),
            Err(Error::Corruption { .. })
        ));
        assert_eq!(log.state().map(|s| s.to_vec()), want.state);
    }
}

#[test]
fn this_build_writes_the_fixtures_byte_for_byte() {
    for (name, write) in [
        (
            "log",
            &(|fs: &Arc<dyn FileSystem>, d: &Path| {
                write_log_fixture(fs, d);
            }) as &dyn Fn(&Arc<dyn FileSystem>, &Path),
        ),
        ("raft", &write_raft_fixture),
    ] {
        let name = format!("{name}-{NEWEST}");
        let fs = SimFs::new();
        write(&fs.handle(), Path::new(SIM_DIR));
        let now = files_of(&fs, Path::new(SIM_DIR));
        let then = committed(&name);
        assert_eq!(
            now.keys().collect::<Vec<_>>(),
            then.keys().collect::<Vec<_>>(),
            "{name}: the files differ"
        );
        for (file, bytes) in &now {
            let old = &then[file];
            if bytes != old {
                let at = bytes
                    .iter()
                    .zip(old)
                    .position(|(a, b)| a != b)
                    .unwrap_or(bytes.len().min(old.len()));
                panic!(
                    "{name}/{file}: this build writes different bytes (first difference at offset {at}, {} bytes now, {} in the fixture)",
                    bytes.len(),
                    old.len()
                );
            }
        }
    }
}
