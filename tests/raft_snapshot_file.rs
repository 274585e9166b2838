//! The durability of `RaftLogStore`'s snapshot files: one current file,
//! the previous one removed after the new one is in place, leftovers cleaned
//! on open, damage detected (and never served), large data round-trips, and
//! readers racing writers always get a whole snapshot.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{Error as RaftError, Storage, StorageError};
use raftwal::{Error, Options, RaftLogStore, RecoveryMode};

fn entries(lo: u64, hi: u64, term: u64) -> Vec<Entry> {
    (lo..hi)
        .map(|index| Entry {
            index,
            term,
            data: format!("entry {index}").into_bytes().into(),
            ..Default::default()
        })
        .collect()
}

fn voters() -> ConfState {
    ConfState::from((vec![1, 2, 3], vec![]))
}

/// A store with entries 1..=n committed.
fn store_with(dir: &Path, n: u64) -> RaftLogStore {
    let store = RaftLogStore::open(dir).unwrap();
    let hs = HardState {
        term: 1,
        vote: 1,
        commit: n,
        ..Default::default()
    };
    store
        .persist(&entries(1, n + 1, 1), Some(&hs), Some(&voters()))
        .unwrap();
    store
}

fn snapshot_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("snapshot-"))
        .collect();
    v.sort();
    v
}

fn only_snapshot_file(dir: &Path) -> PathBuf {
    let files = snapshot_files(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    dir.join(&files[0])
}

fn flip(p: &Path, at: u64) {
    let f = OpenOptions::new().read(true).write(true).open(p).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x01;
    f.write_all_at(&b, at).unwrap();
}

#[test]
fn one_current_file_the_previous_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), 20);
    assert!(snapshot_files(dir.path()).is_empty());
    store
        .create_snapshot(5, voters(), b"at 5".to_vec())
        .unwrap();
    assert_eq!(snapshot_files(dir.path()).len(), 1);
    store
        .create_snapshot(10, voters(), b"at 10".to_vec())
        .unwrap();
    let files = snapshot_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].contains(&format!("{:016x}", 10)), "{files:?}");

    // A received snapshot replaces it too.
    let mut s = Snapshot::default();
    s.mut_metadata().index = 30;
    s.mut_metadata().term = 2;
    s.mut_metadata().set_conf_state(voters());
    s.data = b"from the leader".to_vec().into();
    store.apply_snapshot(s.clone()).unwrap();
    let files = snapshot_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(store.snapshot(0, 0), Ok(s.clone()));
    drop(store);
    let store = RaftLogStore::open(dir.path()).unwrap();
    assert_eq!(store.snapshot(0, 0), Ok(s));
    assert_eq!(snapshot_files(dir.path()).len(), 1);
}

#[test]
fn leftovers_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), 20);
    store
        .create_snapshot(7, voters(), b"at 7".to_vec())
        .unwrap();
    drop(store);
    let live = only_snapshot_file(dir.path());
    // What crashes leave: a temporary file, an older file whose removal
    // did not happen, a newer one that nothing came to name.
    let tmp = dir
        .path()
        .join(format!("snapshot-{:016x}-{:016x}.snap.tmp", 9, 1));
    std::fs::write(&tmp, b"half written").unwrap();
    let older = dir
        .path()
        .join(format!("snapshot-{:016x}-{:016x}.snap", 3, 1));
    std::fs::copy(&live, &older).unwrap();
    let newer = dir
        .path()
        .join(format!("snapshot-{:016x}-{:016x}.snap", 12, 1));
    std::fs::copy(&live, &newer).unwrap();
    // Files that are not ours stay.
    std::fs::write(dir.path().join("notes.txt"), b"keep me").unwrap();

    let store = RaftLogStore::open(dir.path()).unwrap();
    assert_eq!(only_snapshot_file(dir.path()), live);
    assert!(dir.path().join("notes.txt").exists());
    let s = store.snapshot(0, 0).unwrap();
    assert_eq!(s.get_metadata().index, 7);
    assert_eq!(&s.data[..], b"at 7");
}

#[test]
fn damaged_data_is_detected_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), 20);
    store
        .create_snapshot(7, voters(), vec![0xab; 4096])
        .unwrap();
    let file = only_snapshot_file(dir.path());
    let len = std::fs::metadata(&file).unwrap().len();
    flip(&file, len - 100); // inside the data
    let err = store.snapshot(0, 0).unwrap_err();
    // raft sees an error whose message is raftwal's, and which holds it.
    let RaftError::Io(src) = &err else {
        panic!("{err:?}")
    };
    let inner = src.get_ref().unwrap().downcast_ref::<Error>().unwrap();
    assert!(matches!(inner, Error::Corruption { .. }), "{inner}");
    drop(store);
    // The header and metadata are intact, so the store opens (the log is
    // fine); the data is still refused.
    let store = RaftLogStore::open(dir.path()).unwrap();
    assert!(store.snapshot(0, 0).is_err());
    // A new snapshot replaces the damaged one.
    store
        .create_snapshot(8, voters(), b"good".to_vec())
        .unwrap();
    assert_eq!(&store.snapshot(0, 0).unwrap().data[..], b"good");
}

#[test]
fn damaged_metadata_refuses_open_unless_salvaging() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), 20);
    store
        .create_snapshot(7, voters(), b"at 7".to_vec())
        .unwrap();
    drop(store);
    let file = only_snapshot_file(dir.path());
    flip(&file, 34); // inside the metadata
    let err = RaftLogStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Corruption { .. }), "{err}");

    // Salvage mode forgets the snapshot and keeps the log.
    let opts = Options::default().recovery_mode(RecoveryMode::TolerateAnyCorruption);
    let store = RaftLogStore::open_with(dir.path(), opts).unwrap();
    assert_eq!(
        store.snapshot(0, 0),
        Err(RaftError::Store(
            StorageError::SnapshotTemporarilyUnavailable
        ))
    );
    assert_eq!(store.last_index(), Ok(20));
    drop(store);
    // Forgotten for good: a normal open no longer looks for it.
    let store = RaftLogStore::open(dir.path()).unwrap();
    assert!(store.snapshot(0, 0).is_err());
    assert!(snapshot_files(dir.path()).is_empty());
    store
        .create_snapshot(9, voters(), b"at 9".to_vec())
        .unwrap();
    drop(store);
    let store = RaftLogStore::open(dir.path()).unwrap();
    assert_eq!(store.snapshot(0, 0).unwrap().get_metadata().index, 9);
}

#[test]
fn a_missing_current_file_refuses_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), 20);
    store
        .create_snapshot(7, voters(), b"at 7".to_vec())
        .unwrap();
    drop(store);
    std::fs::remove_file(only_snapshot_file(dir.path())).unwrap();
    let err = RaftLogStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Corruption { .. }), "{err}");
}

#[test]
fn large_data_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = RaftLogStore::open(dir.path()).unwrap();
    let data: Vec<u8> = (0..(12u32 << 20))
        .map(|i| i.wrapping_mul(2654435761) as u8)
        .collect();
    let mut s = Snapshot::default();
    s.mut_metadata().index = 1_000_000;
    s.mut_metadata().term = 9;
    s.mut_metadata().set_conf_state(voters());
    s.data = data.clone().into();
    store.apply_snapshot(s).unwrap();
    drop(store);
    let store = RaftLogStore::open(dir.path()).unwrap();
    let got = store.snapshot(1_000_000, 0).unwrap();
    assert_eq!(got.get_metadata().term, 9);
    assert!(got.data[..] == data[..]);
    assert_eq!(store.first_index(), Ok(1_000_001));
    assert_eq!(store.term(1_000_000), Ok(9));
}

/// Clones share one store across threads: a reader calling `snapshot()`
/// while a writer keeps replacing the snapshot always gets a whole,
/// consistent one.
#[test]
fn readers_racing_writers_get_whole_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), 400);
    store
        .create_snapshot(1, voters(), b"snap 1".to_vec())
        .unwrap();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 2..=300u64 {
                let data = format!("snap {i}").into_bytes();
                store.create_snapshot(i, voters(), data).unwrap();
                if i % 50 == 0 {
                    store.compact(i).unwrap();
                }
            }
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut last = 0;
                for _ in 0..2000 {
                    let s = store.snapshot(0, 0).unwrap();
                    let i = s.get_metadata().index;
                    assert!(i >= last, "snapshots go forward");
                    assert_eq!(s.data[..], format!("snap {i}").into_bytes()[..]);
                    last = i;
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(store.snapshot(0, 0).unwrap().get_metadata().index, 300);
    assert_eq!(store.first_index(), Ok(300));
}
