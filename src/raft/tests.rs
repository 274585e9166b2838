//! Tests of the raft store's own rules.

use super::*;
use raft::Storage;

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("e{index}").into_bytes().into(),
        ..Default::default()
    }
}

fn snap(index: u64, term: u64) -> Snapshot {
    let mut s = Snapshot::default();
    s.mut_metadata().index = index;
    s.mut_metadata().term = term;
    s.mut_metadata().mut_conf_state().voters = vec![1, 2];
    s.data = b"snapshot data".to_vec().into();
    s
}

/// A store in `dir` holding entries 1..=5 of term 1.
fn five_entries(dir: &Path) -> RaftLogStore {
    let store = RaftLogStore::open(dir).unwrap();
    store
        .append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>())
        .unwrap();
    store
}

/// Writes the durable file of snapshot (index, term), as step 1 of
/// `apply_snapshot` does, and returns the snapshot.
fn write_snap_file(dir: &Path, index: u64, term: u64) -> Snapshot {
    let s = snap(index, term);
    snapshot::write(&crate::fs::StdFileSystem, dir, s.get_metadata(), &s.data).unwrap();
    s
}

/// A crash after the state blob names a received snapshot but before the
/// log was reset: reopening finishes the reset.
#[test]
fn open_finishes_an_interrupted_apply_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = five_entries(dir.path());
        // Steps 1 and 2 of apply_snapshot, by hand.
        let s = write_snap_file(dir.path(), 8, 3);
        let mut c = store.shared.cache.read().clone();
        c.hard_state.term = 3;
        c.hard_state.commit = 8;
        c.conf_state = s.get_metadata().get_conf_state().clone();
        c.snapshot = Some(s.get_metadata().clone());
        c.log_start = (8, 3);
        store.shared.log.set_state(c.encode().unwrap()).unwrap();
        assert_eq!(store.shared.log.last_index(), 5);
    }
    let store = RaftLogStore::open(dir.path()).unwrap();
    assert_eq!(store.first_index().unwrap(), 9);
    assert_eq!(store.last_index().unwrap(), 8);
    assert_eq!(store.term(8).unwrap(), 3);
    let st = store.initial_state().unwrap();
    assert_eq!((st.hard_state.term, st.hard_state.commit), (3, 8));
    assert_eq!(store.snapshot(0, 0).unwrap(), snap(8, 3));
}

/// A crash after the snapshot file became durable but before the state
/// named it: the store is as before, and the file is removed.
#[test]
fn open_removes_a_snapshot_file_nothing_names() {
    let dir = tempfile::tempdir().unwrap();
    {
        let _store = five_entries(dir.path());
        write_snap_file(dir.path(), 8, 3);
        std::fs::write(
            dir.path()
                .join(format!("{}.tmp", snapshot::file_name(9, 3))),
            b"x",
        )
        .unwrap();
    }
    let store = RaftLogStore::open(dir.path()).unwrap();
    assert_eq!(
        (store.first_index().unwrap(), store.last_index().unwrap()),
        (1, 5)
    );
    assert_eq!(
        store.snapshot(0, 0),
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable
        ))
    );
    let l = snapshot::list(&crate::fs::StdFileSystem, dir.path()).unwrap();
    assert!(l.snapshots.is_empty() && l.temporary.is_empty());
}

#[test]
fn a_foreign_state_blob_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), Options::default()).unwrap();
        log.set_state(&b"\xff\xff\xff not ours"[..]).unwrap();
    }
    assert!(matches!(
        RaftLogStore::open(dir.path()),
        Err(Error::Corruption { .. })
    ));
}

#[test]
fn poisoned_after_a_failed_reset_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = RaftLogStore::open(dir.path()).unwrap();
    store.shared.log.poison_because("test".into());
    assert!(matches!(
        store.append(&[entry(1, 1)]),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(store.commit_to(0), Err(Error::Poisoned { .. })));
}

#[test]
fn a_group_is_open_in_one_store_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path(), Options::default()).unwrap());
    let a = RaftLogStore::open_group(&engine, 3).unwrap();
    let again = RaftLogStore::open_group(&engine, 3);
    assert!(matches!(again, Err(Error::InvalidArgument(_))), "{again:?}");
    let other = RaftLogStore::open_group(&engine, 4).unwrap();
    // A clone shares the store; the claim goes with the last of them.
    let clone = a.clone();
    drop(a);
    assert!(RaftLogStore::open_group(&engine, 3).is_err());
    drop(clone);
    let b = RaftLogStore::open_group(&engine, 3).unwrap();
    assert_eq!(
        b.dir(),
        dir.path().join("groups").join(format!("{:016x}", 3))
    );
    drop((b, other));
}

fn hard_state(term: u64, commit: u64) -> HardState {
    let mut hs = HardState::default();
    (hs.term, hs.commit) = (term, commit);
    hs
}

#[test]
fn persist_many_is_one_write_and_one_sync_for_every_group() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path(), Options::default()).unwrap());
    let stores: Vec<RaftLogStore> = (1..=3)
        .map(|g| RaftLogStore::open_group(&engine, g).unwrap())
        .collect();
    let ents: Vec<Entry> = (1..=4).map(|i| entry(i, 1)).collect();
    let hs = hard_state(1, 4);
    let readies: Vec<GroupReady> = stores
        .iter()
        .map(|store| GroupReady {
            store,
            entries: &ents,
            hard_state: Some(&hs),
            conf_state: None,
        })
        .collect();
    let before = stores[0].stats();
    RaftLogStore::persist_many(&readies).unwrap();
    let after = stores[0].stats();
    assert_eq!(after.writes - before.writes, 1, "one write");
    assert_eq!(after.sync_rounds - before.sync_rounds, 1, "one fdatasync");
    // And submit: one ticket for all.
    let more: Vec<Entry> = vec![entry(5, 2)];
    let hs2 = hard_state(2, 5);
    let readies: Vec<GroupReady> = stores
        .iter()
        .map(|store| GroupReady {
            store,
            entries: &more,
            hard_state: Some(&hs2),
            conf_state: None,
        })
        .collect();
    RaftLogStore::submit_many(&readies).unwrap().wait().unwrap();
    drop(readies);
    drop(stores);
    drop(engine);
    let engine = Arc::new(Engine::open(dir.path(), Options::default()).unwrap());
    for g in 1..=3 {
        let s = RaftLogStore::open_group(&engine, g).unwrap();
        assert_eq!(s.last_index().unwrap(), 5, "group {g}");
        assert_eq!(s.initial_state().unwrap().hard_state, hs2, "group {g}");
        assert_eq!(
            s.entries(1, 6, None, GetEntriesContext::empty(false))
                .unwrap()
                .len(),
            5
        );
    }
}

#[test]
fn persist_many_refuses_whole_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path(), Options::default()).unwrap());
    let a = RaftLogStore::open_group(&engine, 1).unwrap();
    let b = RaftLogStore::open_group(&engine, 2).unwrap();
    let good = [entry(1, 1)];
    let gap = [entry(3, 1)];
    let part = |store, entries| GroupReady {
        store,
        entries,
        hard_state: None,
        conf_state: None,
    };
    let r = RaftLogStore::persist_many(&[part(&a, &good), part(&b, &gap)]);
    assert!(
        matches!(&r, Err(Error::Group { group: 2, source }) if matches!(**source, Error::NonContiguous { .. })),
        "{r:?}"
    );
    assert_eq!((a.last_index().unwrap(), b.last_index().unwrap()), (0, 0));
    // Then the good part alone goes through: the batches were given back.
    RaftLogStore::persist_many(&[part(&a, &good)]).unwrap();
    assert_eq!(a.last_index().unwrap(), 1);
    let twice = RaftLogStore::persist_many(&[part(&a, &[]), part(&a, &[])]);
    assert!(matches!(twice, Err(Error::InvalidArgument(_))), "{twice:?}");
    let own_dir = tempfile::tempdir().unwrap();
    let own = RaftLogStore::open(own_dir.path()).unwrap();
    let mixed = RaftLogStore::persist_many(&[part(&a, &[]), part(&own, &[])]);
    assert!(matches!(mixed, Err(Error::InvalidArgument(_))), "{mixed:?}");
}

#[test]
fn engine_group_and_remove_group() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path(), Options::default()).unwrap());
    let store = engine.group(9).unwrap();
    store.append(&[entry(1, 1), entry(2, 1)]).unwrap();
    store
        .create_snapshot(2, ConfState::from((vec![1], vec![])), b"sm".to_vec())
        .unwrap();
    let snaps = |d: &Path| {
        std::fs::read_dir(d)
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                n.to_string_lossy().starts_with("snapshot-")
            })
            .count()
    };
    assert_eq!(snaps(store.dir()), 1);
    // Refused while a store is open on it.
    let open = engine.remove_group(9);
    assert!(matches!(open, Err(Error::InvalidArgument(_))), "{open:?}");
    let group_dir = store.dir().to_path_buf();
    drop(store);
    engine.remove_group(9).unwrap();
    assert!(!engine.contains_group(9));
    assert_eq!(snaps(&group_dir), 0, "its snapshot files went with it");
    // Durable, and a new group 9 starts afresh.
    drop(engine);
    let engine = Arc::new(Engine::open(dir.path(), Options::default()).unwrap());
    assert!(engine.groups().is_empty());
    let again = engine.group(9).unwrap();
    assert!(again.is_new());
    assert!(engine.batch().is_empty());
}

#[test]
fn a_group_without_snapshots_has_no_directory() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path(), Options::default()).unwrap());
    let store = engine.group(5).unwrap();
    store.append(&[entry(1, 1), entry(2, 1)]).unwrap();
    assert!(!store.dir().exists(), "no directory before a snapshot");
    assert!(!dir.path().join("groups").exists());
    store
        .create_snapshot(2, ConfState::from((vec![1], vec![])), b"sm".to_vec())
        .unwrap();
    assert!(store.dir().is_dir(), "made with the first snapshot");
    drop(store);
    let store = engine.group(5).unwrap();
    assert_eq!(store.snapshot_metadata().map(|m| m.index), Some(2));
    assert_eq!(&store.snapshot(0, 0).unwrap().data[..], b"sm");
}
