//! The tests of raft-rs 0.7 `src/storage.rs`, ported to `RaftLogStore`.
//!
//! raft-rs sets `MemStorageCore::entries` directly to `[3/3, 4/4, 5/5]`
//! (index/term); here the same log is built through the public API:
//! entries 1/1..5/5 appended, then `compact(3)`. That log also knows
//! `term(2) == 2`, which `MemStorage` forgets (see `test_storage_term`).
//!
//! After every case the store is dropped, the directory reopened and the
//! same assertions made again. Every test runs twice: on a store of its
//! own (`own::`) and on an engine group (`group::`).

use std::path::Path;

use protobuf::Message as PbMessage;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{Error as RaftError, GetEntriesContext, Storage, StorageError};
use raftwal::{Error, RaftLogStore};

fn new_entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Default::default()
    }
}

fn size_of<T: PbMessage>(m: &T) -> u32 {
    m.compute_size()
}

fn new_snapshot(index: u64, term: u64, voters: Vec<u64>) -> Snapshot {
    let mut s = Snapshot::default();
    s.mut_metadata().index = index;
    s.mut_metadata().term = term;
    s.mut_metadata().mut_conf_state().voters = voters;
    s
}

fn ctx() -> GetEntriesContext {
    GetEntriesContext::empty(false)
}

/// The suite, for a store of its own and for an engine group (`open` and
/// `home`, the directory to open it again from, are the module's).
macro_rules! suite {
    () => {
        /// A store in `dir` holding `ents` (consecutive, starting above 1), built
        /// by appending `i/i` below them and compacting up to the first.
        fn store_with(dir: &Path, ents: &[Entry]) -> RaftLogStore {
            let store = open(dir);
            let first = ents[0].index;
            let below: Vec<Entry> = (1..first).map(|i| new_entry(i, i)).collect();
            store.append(&below).unwrap();
            store.append(ents).unwrap();
            store.compact(first).unwrap();
            store
        }

        /// Runs `check` on `store`, then on the store reopened from its directory.
        fn check_and_reopen(store: RaftLogStore, check: impl Fn(&RaftLogStore)) {
            check(&store);
            let dir = home(&store);
            drop(store);
            let store = open(&dir);
            check(&store);
        }

        fn all_entries(s: &RaftLogStore) -> Vec<Entry> {
            let (first, last) = (s.first_index().unwrap(), s.last_index().unwrap());
            s.entries(first, last + 1, None, ctx()).unwrap()
        }

        #[test]
        fn test_storage_term() {
            let ents = vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)];
            let tests = vec![
                // MemStorage answers Compacted for 2: it only remembers the term of
                // its snapshot index (0 here). The `Storage` contract asks for
                // term(first_index - 1), and RaftLogStore keeps it.
                (2, Ok(2)),
                (1, Err(RaftError::Store(StorageError::Compacted))),
                (3, Ok(3)),
                (4, Ok(4)),
                (5, Ok(5)),
                (6, Err(RaftError::Store(StorageError::Unavailable))),
                // Not in raft-rs: far out of range is an error, not a panic.
                (u64::MAX, Err(RaftError::Store(StorageError::Unavailable))),
            ];
            for (i, (idx, wterm)) in tests.into_iter().enumerate() {
                let dir = tempfile::tempdir().unwrap();
                let storage = store_with(dir.path(), &ents);
                check_and_reopen(storage, |s| {
                    let t = s.term(idx);
                    assert_eq!(t, wterm, "#{i}: term({idx})");
                });
            }
        }

        #[test]
        fn test_storage_entries() {
            let ents = vec![
                new_entry(3, 3),
                new_entry(4, 4),
                new_entry(5, 5),
                new_entry(6, 6),
            ];
            let max_u64 = u64::MAX;
            let tests = vec![
                (
                    2,
                    6,
                    max_u64,
                    Err(RaftError::Store(StorageError::Compacted)),
                ),
                (3, 4, max_u64, Ok(vec![new_entry(3, 3)])),
                (4, 5, max_u64, Ok(vec![new_entry(4, 4)])),
                (4, 6, max_u64, Ok(vec![new_entry(4, 4), new_entry(5, 5)])),
                (
                    4,
                    7,
                    max_u64,
                    Ok(vec![new_entry(4, 4), new_entry(5, 5), new_entry(6, 6)]),
                ),
                // even if maxsize is zero, the first entry should be returned
                (4, 7, 0, Ok(vec![new_entry(4, 4)])),
                // limit to 2
                (
                    4,
                    7,
                    u64::from(size_of(&ents[1]) + size_of(&ents[2])),
                    Ok(vec![new_entry(4, 4), new_entry(5, 5)]),
                ),
                (
                    4,
                    7,
                    u64::from(size_of(&ents[1]) + size_of(&ents[2]) + size_of(&ents[3]) / 2),
                    Ok(vec![new_entry(4, 4), new_entry(5, 5)]),
                ),
                (
                    4,
                    7,
                    u64::from(size_of(&ents[1]) + size_of(&ents[2]) + size_of(&ents[3]) - 1),
                    Ok(vec![new_entry(4, 4), new_entry(5, 5)]),
                ),
                // all
                (
                    4,
                    7,
                    u64::from(size_of(&ents[1]) + size_of(&ents[2]) + size_of(&ents[3])),
                    Ok(vec![new_entry(4, 4), new_entry(5, 5), new_entry(6, 6)]),
                ),
                // Not in raft-rs (MemStorage panics): high past last_index + 1.
                (
                    4,
                    8,
                    max_u64,
                    Err(RaftError::Store(StorageError::Unavailable)),
                ),
                // Not in raft-rs: an empty range.
                (7, 7, max_u64, Ok(vec![])),
            ];
            for (i, (lo, hi, maxsize, wentries)) in tests.into_iter().enumerate() {
                let dir = tempfile::tempdir().unwrap();
                let storage = store_with(dir.path(), &ents);
                check_and_reopen(storage, |s| {
                    let e = s.entries(lo, hi, maxsize, ctx());
                    assert_eq!(e, wentries, "#{i}: entries({lo}, {hi}, {maxsize})");
                    // `None` means no limit, like u64::MAX (raft's NO_LIMIT).
                    if maxsize == max_u64 {
                        assert_eq!(s.entries(lo, hi, None, ctx()), wentries, "#{i} with None");
                    }
                });
            }
        }

        #[test]
        fn test_storage_last_index() {
            let ents = vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)];
            let dir = tempfile::tempdir().unwrap();
            let storage = store_with(dir.path(), &ents);

            assert_eq!(storage.last_index(), Ok(5));
            storage.append(&[new_entry(6, 5)]).unwrap();
            check_and_reopen(storage, |s| {
                assert_eq!(s.last_index(), Ok(6));
                assert_eq!(s.term(6), Ok(5));
            });
        }

        #[test]
        fn test_storage_first_index() {
            let ents = vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)];
            let dir = tempfile::tempdir().unwrap();
            let storage = store_with(dir.path(), &ents);

            assert_eq!(storage.first_index(), Ok(3));
            storage.compact(4).unwrap();
            check_and_reopen(storage, |s| {
                assert_eq!(s.first_index(), Ok(4));
                // Stricter than MemStorage: the term before the first index stays.
                assert_eq!(s.term(3), Ok(3));
            });
        }

        #[test]
        fn test_storage_compact() {
            let ents = vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)];
            let tests = vec![(2, 3, 3, 3), (3, 3, 3, 3), (4, 4, 4, 2), (5, 5, 5, 1)];
            for (i, (idx, windex, wterm, wlen)) in tests.into_iter().enumerate() {
                let dir = tempfile::tempdir().unwrap();
                let storage = store_with(dir.path(), &ents);
                storage.compact(idx).unwrap();
                check_and_reopen(storage, |s| {
                    let index = s.first_index().unwrap();
                    assert_eq!(index, windex, "#{i}: first index");
                    let term = s
                        .entries(index, index + 1, 1, ctx())
                        .ok()
                        .and_then(|v| v.first().map(|e| e.term))
                        .unwrap_or(0);
                    assert_eq!(term, wterm, "#{i}: term of the first entry");
                    let last = s.last_index().unwrap();
                    let len = s.entries(index, last + 1, 100, ctx()).unwrap().len();
                    assert_eq!(len, wlen, "#{i}: entries left");
                    assert_eq!(s.term(index - 1), Ok(index - 1), "#{i}: term before");
                });
            }
        }

        /// Not in raft-rs (MemStorage panics): compacting past `last_index + 1` is
        /// an error and changes nothing; compacting everything leaves an empty log
        /// that still knows the last term.
        #[test]
        fn test_storage_compact_out_of_range() {
            let ents = vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)];
            let dir = tempfile::tempdir().unwrap();
            let storage = store_with(dir.path(), &ents);
            assert!(matches!(storage.compact(7), Err(Error::Unavailable { .. })));
            assert_eq!(all_entries(&storage), ents);
            storage.compact(6).unwrap();
            check_and_reopen(storage, |s| {
                assert_eq!((s.first_index(), s.last_index()), (Ok(6), Ok(5)));
                assert_eq!(s.term(5), Ok(5));
                assert_eq!(s.entries(6, 6, None, ctx()), Ok(vec![]));
            });
        }

        #[test]
        fn test_storage_create_snapshot() {
            // MemStorage builds its snapshot on demand from `hard_state.commit`,
            // fakes a higher index when asked for one (its third case returns a
            // "snapshot at 6" while it holds 5), and reaches its fourth case with
            // the `trigger_snap_unavailable` test hook. RaftLogStore serves only a
            // snapshot that was stored (`create_snapshot` or `apply_snapshot`), so
            // each case creates one at `idx` (with the commit index at `idx`) and
            // asks for `windex`; a newer request, and a store without a snapshot,
            // get SnapshotTemporarilyUnavailable.
            let ents = vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)];
            let nodes = vec![1, 2, 3];
            let conf_state = ConfState {
                voters: nodes.clone(),
                ..Default::default()
            };
            let with_data = |mut s: Snapshot, idx: u64| {
                s.data = format!("state at {idx}").into_bytes().into();
                s
            };
            let unavailable = || {
                Err(RaftError::Store(
                    StorageError::SnapshotTemporarilyUnavailable,
                ))
            };
            let tests = vec![
                (
                    Some(4),
                    Ok(with_data(new_snapshot(4, 4, nodes.clone()), 4)),
                    0,
                ),
                (
                    Some(5),
                    Ok(with_data(new_snapshot(5, 5, nodes.clone()), 5)),
                    5,
                ),
                (Some(5), unavailable(), 6),
                (None, unavailable(), 0),
            ];
            for (i, (idx, wresult, windex)) in tests.into_iter().enumerate() {
                let dir = tempfile::tempdir().unwrap();
                let storage = store_with(dir.path(), &ents);
                storage.set_conf_state(conf_state.clone()).unwrap();
                if let Some(idx) = idx {
                    let hs = HardState {
                        term: idx,
                        commit: idx,
                        ..Default::default()
                    };
                    storage.set_hardstate(hs).unwrap();
                    let data = format!("state at {idx}").into_bytes();
                    storage
                        .create_snapshot(idx, conf_state.clone(), data)
                        .unwrap();
                }
                check_and_reopen(storage, |s| {
                    let result = s.snapshot(windex, 0);
                    assert_eq!(result, wresult, "#{i}");
                    // Creating a snapshot does not compact.
                    assert_eq!(all_entries(s), ents, "#{i}");
                });
            }
        }

        /// Not in raft-rs: what `create_snapshot` refuses.
        #[test]
        fn test_storage_create_snapshot_errors() {
            let ents = vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)];
            let dir = tempfile::tempdir().unwrap();
            let storage = store_with(dir.path(), &ents);
            let cs = ConfState {
                voters: vec![1],
                ..Default::default()
            };
            let hs = HardState {
                term: 5,
                commit: 4,
                ..Default::default()
            };
            storage.set_hardstate(hs).unwrap();
            let create = |i| storage.create_snapshot(i, cs.clone(), vec![1, 2, 3]);
            assert!(matches!(create(0), Err(Error::InvalidArgument(_))));
            assert!(matches!(create(6), Err(Error::Unavailable { .. })));
            assert!(matches!(create(1), Err(Error::Compacted { .. })));
            create(2).unwrap(); // first_index - 1: its term is known
            create(4).unwrap();
            assert!(matches!(
                create(4),
                Err(Error::SnapshotNotNewer {
                    index: 4,
                    stored: 4
                })
            ));
            assert!(matches!(create(3), Err(Error::SnapshotNotNewer { .. })));
            // Past the durable commit index (4): an applied index is committed, so
            // the snapshot commits it in the same write.
            create(5).unwrap();
            assert_eq!(storage.initial_state().unwrap().hard_state.commit, 5);
            check_and_reopen(storage, |s| {
                let snap = s.snapshot(0, 0).unwrap();
                assert_eq!(
                    (snap.get_metadata().index, snap.get_metadata().term),
                    (5, 5)
                );
                assert_eq!(snap.get_metadata().get_conf_state(), &cs);
                assert_eq!(&snap.data[..], &[1, 2, 3]);
                assert_eq!(s.snapshot_metadata().map(|m| m.index), Some(5));
                assert_eq!(s.initial_state().unwrap().hard_state.commit, 5);
            });
        }

        #[test]
        fn test_storage_append() {
            let ents = vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)];
            let tests = vec![
                (
                    vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)],
                    Some(vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)]),
                ),
                (
                    vec![new_entry(3, 3), new_entry(4, 6), new_entry(5, 6)],
                    Some(vec![new_entry(3, 3), new_entry(4, 6), new_entry(5, 6)]),
                ),
                (
                    vec![
                        new_entry(3, 3),
                        new_entry(4, 4),
                        new_entry(5, 5),
                        new_entry(6, 5),
                    ],
                    Some(vec![
                        new_entry(3, 3),
                        new_entry(4, 4),
                        new_entry(5, 5),
                        new_entry(6, 5),
                    ]),
                ),
                // overwrite compacted raft logs is not allowed (MemStorage panics;
                // RaftLogStore returns Compacted and changes nothing)
                (
                    vec![new_entry(2, 3), new_entry(3, 3), new_entry(4, 5)],
                    None,
                ),
                // truncate the existing entries and append
                (
                    vec![new_entry(4, 5)],
                    Some(vec![new_entry(3, 3), new_entry(4, 5)]),
                ),
                // direct append
                (
                    vec![new_entry(6, 6)],
                    Some(vec![
                        new_entry(3, 3),
                        new_entry(4, 4),
                        new_entry(5, 5),
                        new_entry(6, 6),
                    ]),
                ),
                // Not in raft-rs (MemStorage panics): a gap after the last index.
                (vec![new_entry(7, 6)], None),
            ];
            for (i, (entries, wentries)) in tests.into_iter().enumerate() {
                let dir = tempfile::tempdir().unwrap();
                let storage = store_with(dir.path(), &ents);
                let res = storage.append(&entries);
                let want = match wentries {
                    Some(w) => {
                        res.unwrap();
                        w
                    }
                    None => {
                        let err = res.unwrap_err();
                        assert!(
                            matches!(err, Error::Compacted { .. } | Error::NonContiguous { .. }),
                            "#{i}: {err}"
                        );
                        // Through raft's error type: compacted as raft's own, a gap
                        // with raftwal's message.
                        let compacted = matches!(err, Error::Compacted { .. });
                        let shown = err.to_string();
                        match RaftError::from(err) {
                            RaftError::Store(StorageError::Compacted) => assert!(compacted, "#{i}"),
                            RaftError::Io(io) => {
                                assert!(!compacted, "#{i}");
                                assert_eq!(io.to_string(), shown, "#{i}");
                            }
                            other => panic!("#{i}: {other}"),
                        }
                        ents.clone()
                    }
                };
                check_and_reopen(storage, |s| {
                    assert_eq!(all_entries(s), want, "#{i}");
                });
            }
        }

        #[test]
        fn test_storage_apply_snapshot() {
            let nodes = vec![1, 2, 3];
            let dir = tempfile::tempdir().unwrap();
            let storage = open(dir.path());

            // Apply snapshot successfully
            let mut snap = new_snapshot(4, 4, nodes.clone());
            snap.data = b"the state machine at 4".to_vec().into();
            storage.apply_snapshot(snap.clone()).unwrap();

            // Apply snapshot fails due to StorageError::SnapshotOutOfDate
            let old = new_snapshot(3, 3, nodes.clone());
            let err = storage.apply_snapshot(old).unwrap_err();
            assert!(matches!(err, Error::SnapshotOutOfDate { .. }), "{err}");
            assert_eq!(
                RaftError::from(err),
                RaftError::Store(StorageError::SnapshotOutOfDate)
            );

            // What MemStorage's test leaves unchecked: the state after it.
            check_and_reopen(storage, |s| {
                assert_eq!((s.first_index(), s.last_index()), (Ok(5), Ok(4)));
                assert_eq!(s.term(4), Ok(4));
                let st = s.initial_state().unwrap();
                assert_eq!((st.hard_state.term, st.hard_state.commit), (4, 4));
                assert_eq!(st.conf_state.voters, nodes);
                assert_eq!(s.snapshot(0, 0), Ok(snap.clone()));
                assert_eq!(s.snapshot(4, 0), Ok(snap.clone()));
                assert_eq!(
                    s.snapshot(5, 0),
                    Err(RaftError::Store(
                        StorageError::SnapshotTemporarilyUnavailable
                    ))
                );
            });
        }
    };
}

/// Each store in a directory of its own.
mod own {
    use super::*;

    fn open(dir: &Path) -> RaftLogStore {
        RaftLogStore::open(dir).unwrap()
    }

    fn home(store: &RaftLogStore) -> std::path::PathBuf {
        store.dir().to_path_buf()
    }

    suite!();
}

/// Each store group 4 of an engine in the directory.
mod group {
    use super::*;

    fn open(dir: &Path) -> RaftLogStore {
        let engine =
            std::sync::Arc::new(raftwal::Engine::open(dir, raftwal::Options::default()).unwrap());
        engine.group(4).unwrap()
    }

    /// A group's `dir()` is its snapshot directory, `groups/{id}` in the
    /// engine's.
    fn home(store: &RaftLogStore) -> std::path::PathBuf {
        store
            .dir()
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .to_path_buf()
    }

    suite!();
}
