//! The snapshots `RaftLogStore` serves through `raft::Storage::snapshot`,
//! peer by peer: the stored one when it serves, the stored one advanced
//! over committed entries without state-machine data, the application's
//! `SnapshotSource` (stored durably first), or
//! `SnapshotTemporarilyUnavailable` with nothing changed. Every test runs
//! twice: on a store of its own (`own::`) and on an engine group
//! (`group::`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use protobuf::Message as PbMessage;
use raft::prelude::*;
use raft::{Storage, StorageError};
use raftwal::{Error, RaftLogStore, SnapshotRequest, SourcedSnapshot};

fn unavailable() -> raft::Result<Snapshot> {
    Err(raft::Error::Store(
        StorageError::SnapshotTemporarilyUnavailable,
    ))
}

fn normal(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        data: data.to_vec().into(),
        ..Default::default()
    }
}

fn add_node(index: u64, term: u64, node: u64) -> Entry {
    let cc = ConfChange {
        change_type: ConfChangeType::AddNode,
        node_id: node,
        ..Default::default()
    };
    Entry {
        entry_type: EntryType::EntryConfChange,
        index,
        term,
        data: cc.write_to_bytes().unwrap().into(),
        ..Default::default()
    }
}

fn hs(term: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote: 1,
        commit,
        ..Default::default()
    }
}

fn voters(s: &Snapshot) -> Vec<u64> {
    let mut v = s.get_metadata().get_conf_state().voters.clone();
    v.sort_unstable();
    v
}

/// The suite, for a store of its own and for an engine group (`open`
/// is the module's).
macro_rules! suite {
    () => {
        /// A store bootstrapped with voter 1 (snapshot at 1, data "boot"), then a
        /// new leader's empty entry 2, conf changes adding 2 (3) and 3 (4), a
        /// command (5) and a conf change adding 4 (6), committed up to `commit`.
        fn bootstrapped(dir: &std::path::Path, commit: u64) -> RaftLogStore {
            let store = open(dir);
            assert!(store.startup().unwrap().is_new);
            let mut s = Snapshot::default();
            s.mut_metadata().index = 1;
            s.mut_metadata().term = 1;
            s.mut_metadata()
                .set_conf_state(ConfState::from((vec![1], vec![])));
            s.data = b"boot".to_vec().into();
            store.apply_snapshot(s).unwrap();
            let es = vec![
                normal(2, 2, b""),
                add_node(3, 2, 2),
                add_node(4, 2, 3),
                normal(5, 2, b"put x"),
                add_node(6, 2, 4),
            ];
            store.persist(&es, Some(&hs(2, commit)), None).unwrap();
            store
        }

        #[test]
        fn the_stored_snapshot_is_advanced_over_entries_without_data() {
            let dir = tempfile::tempdir().unwrap();
            let store = bootstrapped(dir.path(), 6);
            // Peer 1 is in the stored snapshot's configuration: it is served as is.
            let s = store.snapshot(0, 1).unwrap();
            assert_eq!((s.get_metadata().index, voters(&s)), (1, vec![1]));
            // Peer 2 is not: the snapshot goes on over the empty entry and the two
            // conf changes, up to the command at 5, with the same data.
            let s = store.snapshot(0, 2).unwrap();
            assert_eq!(s.get_metadata().index, 4);
            assert_eq!(s.get_metadata().term, 2);
            assert_eq!(voters(&s), vec![1, 2, 3]);
            assert_eq!(&s.data[..], b"boot");
            assert_eq!(store.snapshot(0, 3).unwrap().get_metadata().index, 4);
            // Peer 4 joins after the command: no snapshot can be made for it
            // without the application's data, and nothing changes.
            assert_eq!(store.snapshot(0, 4), unavailable());
            assert_eq!(store.snapshot(5, 2), unavailable(), "at index 5 or later");
            assert_eq!(
                store.snapshot_metadata().unwrap().index,
                1,
                "nothing stored"
            );
        }

        #[test]
        fn uncommitted_conf_changes_are_never_in_a_snapshot() {
            let dir = tempfile::tempdir().unwrap();
            let store = bootstrapped(dir.path(), 3);
            let s = store.snapshot(0, 2).unwrap();
            assert_eq!((s.get_metadata().index, voters(&s)), (3, vec![1, 2]));
            assert_eq!(
                store.snapshot(0, 3),
                unavailable(),
                "adding 3 is not committed"
            );
        }

        #[test]
        fn a_source_serves_what_the_store_cannot_and_its_snapshot_is_stored() {
            let dir = tempfile::tempdir().unwrap();
            let store = bootstrapped(dir.path(), 6);
            let calls = Arc::new(AtomicU64::new(0));
            let seen = Arc::clone(&calls);
            // Builds in the background: not ready at the first call.
            store.set_snapshot_source(move |r: &SnapshotRequest| {
                assert_eq!((r.to, r.stored_index, r.committed), (4, Some(1), 6));
                match seen.fetch_add(1, Ordering::SeqCst) {
                    0 => Ok(None),
                    _ => Ok(Some(SourcedSnapshot::new(6, b"x=1".to_vec()))),
                }
            });
            assert_eq!(store.snapshot(0, 4), unavailable(), "not built yet");
            let s = store.snapshot(0, 4).unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), 2);
            assert_eq!((s.get_metadata().index, s.get_metadata().term), (6, 2));
            // The store computed the configuration at 6 from its snapshot and the
            // conf changes after it.
            assert_eq!(voters(&s), vec![1, 2, 3, 4]);
            assert_eq!(&s.data[..], b"x=1");
            // Stored durably: it survives a reopen, and serves from then on.
            drop(store);
            let store = open(dir.path());
            let start = store.startup().unwrap();
            assert!(!start.is_new);
            assert_eq!(start.applied, 6);
            assert_eq!(start.snapshot.unwrap(), s);
            assert_eq!(store.snapshot(0, 4).unwrap(), s);
        }

        #[test]
        fn a_source_given_configuration_is_used_and_a_source_error_reaches_raft() {
            let dir = tempfile::tempdir().unwrap();
            let store = bootstrapped(dir.path(), 6);
            store.set_snapshot_source(|_: &SnapshotRequest| {
                let mut s = SourcedSnapshot::new(5, b"x=1".to_vec());
                s.conf_state = Some(ConfState::from((vec![1, 2, 3], vec![4])));
                Ok(Some(s))
            });
            let s = store.snapshot(0, 4).unwrap();
            assert_eq!(s.get_metadata().get_conf_state().learners, vec![4]);
            store.set_snapshot_source(|_: &SnapshotRequest| Err("the disk is on fire".into()));
            match store.snapshot(0, 9) {
                Err(raft::Error::Io(e)) => {
                    assert!(e.to_string().contains("the disk is on fire"), "{e}");
                }
                other => panic!("{other:?}"),
            }
            // An index outside the log is refused, nothing stored.
            store.set_snapshot_source(|_: &SnapshotRequest| {
                Ok(Some(SourcedSnapshot::new(99, Vec::new())))
            });
            assert!(store.snapshot(0, 9).is_err());
            assert_eq!(store.snapshot_metadata().unwrap().index, 5);
        }

        #[test]
        fn a_snapshot_that_does_not_reach_the_log_serves_no_peer() {
            let dir = tempfile::tempdir().unwrap();
            let store = bootstrapped(dir.path(), 6);
            store
                .create_snapshot(
                    4,
                    ConfState::from((vec![1, 2, 3], vec![])),
                    b"at 4".to_vec(),
                )
                .unwrap();
            store.compact(6).unwrap();
            // The snapshot at 4 is older than the log's start at 6: a peer could
            // not continue from it. (Peer 0, any reader, still gets it.)
            assert_eq!(store.snapshot(0, 2), unavailable());
            assert_eq!(store.snapshot(0, 0).unwrap().get_metadata().index, 4);
        }

        #[test]
        fn create_snapshot_past_the_durable_commit_makes_the_commit_durable() {
            let dir = tempfile::tempdir().unwrap();
            let store = bootstrapped(dir.path(), 3);
            let cs = ConfState::from((vec![1, 2, 3], vec![]));
            store.create_snapshot(5, cs, b"applied 5".to_vec()).unwrap();
            assert_eq!(store.initial_state().unwrap().hard_state.commit, 5);
            drop(store);
            let store = open(dir.path());
            assert_eq!(store.initial_state().unwrap().hard_state.commit, 5);
            assert!(matches!(
                store.create_snapshot(7, ConfState::default(), Vec::new()),
                Err(Error::Unavailable { .. })
            ));
        }

        #[test]
        fn a_hard_state_raft_would_die_on_is_refused_and_changes_nothing() {
            let dir = tempfile::tempdir().unwrap();
            let store = bootstrapped(dir.path(), 3);
            let before = store.initial_state().unwrap();
            // A commit past the last index, even counting the batch's entries.
            let r = store.persist(&[normal(7, 2, b"y")], Some(&hs(2, 8)), None);
            assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
            // A term that goes back.
            let r = store.persist(&[], Some(&hs(1, 3)), None);
            assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
            let after = store.initial_state().unwrap();
            assert_eq!(
                (after.hard_state, after.conf_state),
                (before.hard_state, before.conf_state)
            );
            assert_eq!(store.last_index().unwrap(), 6);
            // With its entries the commit may reach them.
            store
                .persist(&[normal(7, 2, b"y")], Some(&hs(3, 7)), None)
                .unwrap();
            drop(store);
            let store = open(dir.path());
            assert_eq!(store.initial_state().unwrap().hard_state, hs(3, 7));
        }

        #[test]
        fn bootstrap_and_startup() {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path());
            let start = store.startup().unwrap();
            assert!(start.is_new && start.snapshot.is_none());
            assert_eq!(start.applied, 0);
            assert!(matches!(
                store.bootstrap(ConfState::default()),
                Err(Error::InvalidArgument(_))
            ));
            store.bootstrap(ConfState::from((vec![1], vec![]))).unwrap();
            assert!(matches!(
                store.bootstrap(ConfState::from((vec![1], vec![]))),
                Err(Error::InvalidArgument(_))
            ));
            drop(store);
            let store = open(dir.path());
            let start = store.startup().unwrap();
            assert!(!start.is_new);
            assert_eq!(start.applied, 1);
            assert_eq!(store.first_index().unwrap(), 2);
            assert_eq!(store.initial_state().unwrap().conf_state.voters, vec![1]);
            assert!(store.recovery_report().repairs.is_empty());
        }
    };
}

/// Each store in a directory of its own.
mod own {
    use super::*;

    fn open(dir: &std::path::Path) -> RaftLogStore {
        RaftLogStore::open(dir).unwrap()
    }

    suite!();
}

/// Each store group 3 of an engine in the directory.
mod group {
    use super::*;

    fn open(dir: &std::path::Path) -> RaftLogStore {
        let engine = Arc::new(raftwal::Engine::open(dir, raftwal::Options::default()).unwrap());
        engine.group(3).unwrap()
    }

    suite!();
}
