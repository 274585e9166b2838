//! Snapshots: installing a leader's, creating one from the application's
//! state, and reading the stored one back.

use super::*;

impl RaftLogStore {
    /// Installs a snapshot received from the leader, like raft-rs's
    /// `MemStorageCore::apply_snapshot`: the hard state's term becomes the
    /// larger of its term and the snapshot's, its commit the snapshot's
    /// index, the conf state the snapshot's, and the log restarts empty at
    /// `index + 1` (with `term(index)` the snapshot's term).
    ///
    /// The snapshot, data included, is stored durably and becomes the one
    /// [`raft::Storage::snapshot`](https://docs.rs/raft/0.7/raft/storage/trait.Storage.html#tymethod.snapshot) serves; the previous snapshot file is
    /// removed only after that. A snapshot older than `first_index` is
    /// [`Error::SnapshotOutOfDate`].
    pub fn apply_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        let sh = &*self.shared;
        let _writer = sh.writer.lock();
        check(&sh.log)?;
        let meta = snapshot.get_metadata().clone();
        let (index, term) = (meta.index, meta.term);
        if index == u64::MAX {
            // The log would restart at index + 1.
            return Err(Error::InvalidArgument(
                "apply_snapshot: a snapshot at index u64::MAX leaves no index for the log to continue at".into(),
            ));
        }
        let fi = sh.log.first_index();
        if index < fi {
            return Err(Error::SnapshotOutOfDate {
                index,
                first_index: fi,
            });
        }
        let mut c = sh.cache.read().clone();
        let old = c.snapshot.as_ref().map(|m| (m.index, m.term));
        snapshot::write(
            &*sh.log.options().file_system,
            &sh.dir,
            &meta,
            &snapshot.data,
        )?;
        c.hard_state.term = c.hard_state.term.max(term);
        c.hard_state.commit = index;
        c.conf_state = meta.get_conf_state().clone();
        c.snapshot = Some(meta);
        c.log_start = (index, term);
        // If this fails the new file is named by nothing on disk (or, if the
        // failure left the state's fate unknown, the log is poisoned and a
        // reopen sorts it out); `open` removes unreferenced files.
        sh.log.set_state(c.encode()?)?;
        if let Err(e) = sh.log.reset(index + 1, term) {
            // The state says the log starts after `index`; it does not yet.
            // Reopening finishes the reset.
            sh.log
                .poison_because(format!("apply_snapshot could not reset the log: {e}"));
            *sh.cache.write() = c;
            return Err(e);
        }
        *sh.cache.write() = c;
        remove_old_snapshot(&*sh.log.options().file_system, &sh.dir, old, (index, term));
        Ok(())
    }

    /// Stores the application's own snapshot of its state at `index`
    /// (applied, hence committed), with `conf_state` and `data`, durably; it
    /// becomes the one [`raft::Storage::snapshot`](https://docs.rs/raft/0.7/raft/storage/trait.Storage.html#tymethod.snapshot) serves and the previous
    /// one is removed after. The term is taken from the log. It does not
    /// compact the log: call [`compact`](Self::compact) after it.
    ///
    /// Call it where raft-rs hands out committed entries to apply, even
    /// before the Ready that carries their commit index is persisted: an
    /// applied index is committed, so when `index` is past the durable hard
    /// state's commit, the commit index becomes `index` in the same write.
    ///
    /// Errors: [`Error::SnapshotNotNewer`] when `index` is not past the
    /// current snapshot's; [`Error::Unavailable`] past `last_index`;
    /// [`Error::Compacted`] below `first_index - 1`;
    /// [`Error::InvalidArgument`] for index 0.
    pub fn create_snapshot(&self, index: u64, conf_state: ConfState, data: Vec<u8>) -> Result<()> {
        let sh = &*self.shared;
        let mut guard = sh.writer.lock();
        check(&sh.log)?;
        let mut c = sh.cache.read().clone();
        if index == 0 {
            return Err(Error::InvalidArgument(
                "create_snapshot: index 0 is not a snapshot".into(),
            ));
        }
        let old = c.snapshot.as_ref().map(|m| (m.index, m.term));
        if let Some((stored, _)) = old {
            if index <= stored {
                return Err(Error::SnapshotNotNewer { index, stored });
            }
        }
        let li = sh.log.last_index();
        if index > li {
            return Err(Error::Unavailable {
                index,
                last_index: li,
            });
        }
        let term = sh.log.term(index)?;
        // Applied, hence committed: the commit index is made durable with
        // the snapshot (a stored snapshot never names uncommitted state).
        c.hard_state.commit = c.hard_state.commit.max(index);
        let mut meta = SnapshotMetadata {
            index,
            term,
            ..Default::default()
        };
        meta.set_conf_state(conf_state);
        snapshot::write(&*sh.log.options().file_system, &sh.dir, &meta, &data)?;
        c.snapshot = Some(meta);
        let batch = &mut guard.batch;
        batch.clear();
        batch.set_state(c.encode()?);
        write_batch(&sh.log, batch)?;
        // Durable whatever the sync policy before the old file goes: the
        // state on disk must never name a removed file.
        sh.log.sync()?;
        *sh.cache.write() = c;
        remove_old_snapshot(&*sh.log.options().file_system, &sh.dir, old, (index, term));
        Ok(())
    }

    pub(super) fn read_snapshot(&self, request_index: u64) -> Result<Option<Snapshot>> {
        let sh = &*self.shared;
        // A newer snapshot may replace (and remove) the file between reading
        // the metadata and opening it; then try again with the new one. Each
        // retry means a newer snapshot was stored; if that keeps happening,
        // the snapshot is "temporarily unavailable" and raft asks again.
        for _ in 0..100 {
            let Some(meta) = sh.cache.read().snapshot.clone() else {
                return Ok(None);
            };
            if meta.index < request_index {
                return Ok(None);
            }
            let path = snapshot::path(&sh.dir, meta.index, meta.term);
            let opened = match snapshot::open(&*sh.log.options().file_system, &path) {
                Ok(o) => o,
                Err(Error::Io { ref source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound
                        && current(&sh.cache.read().snapshot) != (meta.index, meta.term) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            if (opened.meta.index, opened.meta.term) != (meta.index, meta.term) {
                return Err(Error::corruption(
                    Damage::Snapshot,
                    &path,
                    0,
                    format!(
                        "the file holds the snapshot at index {} term {}",
                        opened.meta.index, opened.meta.term
                    ),
                ));
            }
            let data = opened.read_data()?;
            let mut s = Snapshot::default();
            s.set_metadata(opened.meta);
            s.data = data;
            return Ok(Some(s));
        }
        Ok(None)
    }
}

/// Removes the previous snapshot file once the new one is current. A failure
/// is only logged: `open` removes files nothing refers to.
pub(super) fn remove_old_snapshot(
    fs: &dyn crate::fs::FileSystem,
    dir: &Path,
    old: Option<(u64, u64)>,
    new: (u64, u64),
) {
    let Some((index, term)) = old else { return };
    if (index, term) == new {
        return; // the rename replaced it
    }
    if let Err(e) = snapshot::remove(fs, dir, &[snapshot::path(dir, index, term)]) {
        log::warn!("raftwal: could not remove the old snapshot {index}/{term}: {e}");
    }
}
