//! Writing what raft-rs hands over: a Ready's entries, hard state and
//! commit in one write (`persist`, or `submit` without waiting), the single
//! setters, compaction and sync.

use super::*;

impl RaftLogStore {
    /// Appends `entries` durably. Like raft-rs's `MemStorageCore::append`,
    /// entries at and after the first new index are replaced; unlike it, an
    /// index below `first_index` is [`Error::Compacted`] and a gap after
    /// `last_index` is [`Error::NonContiguous`], and nothing changes. The
    /// entries must have consecutive indexes and non-decreasing terms.
    pub fn append(&self, entries: &[Entry]) -> Result<()> {
        self.persist(entries, None, None)
    }

    /// Persists what one `raft::Ready` asks for: `entries` (with conflict
    /// truncation, as [`append`](Self::append)), the hard state and the conf
    /// state when given, in one `write` and (under
    /// [`SyncPolicy::Always`](crate::SyncPolicy::Always)) one `fdatasync`.
    /// It is atomic: a crash before it returns leaves all of it or none of
    /// it (so a durable commit index never names an entry that is not
    /// there, and a hard state is never there without its entries).
    /// Call it before sending the Ready's persisted messages.
    ///
    /// ```no_run
    /// # fn f(store: &raftwal::RaftLogStore, rd: &raft::Ready) -> raftwal::Result<()> {
    /// store.persist(rd.entries(), rd.hs(), None)?;
    /// # Ok(()) }
    /// ```
    pub fn persist(
        &self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        conf_state: Option<&ConfState>,
    ) -> Result<()> {
        self.write_ready(entries, hard_state, conf_state, false)
            .map(|_| ())
    }

    /// Like [`persist`](Self::persist), but returns as soon as the write is
    /// issued (visible to `entries` and `term`; staged in memory or in the
    /// page cache, see [`Log::submit`]), whatever the sync policy; the
    /// returned [`Ticket`] tells when it is
    /// durable. One `fdatasync` on a background thread covers every write
    /// issued before it started, so a Ready loop that does not wait keeps
    /// the disk busy with one sync after another while it goes on. This is
    /// the path for raft-rs's asynchronous Ready: call
    /// `RawNode::advance_append_async(rd)` after `submit`, and
    /// `RawNode::on_persist_ready(number)` once the ticket is durable (then
    /// send the Ready's persisted messages).
    ///
    /// Writes are durable in the order they were submitted: when a ticket
    /// is durable, so is every ticket submitted before it.
    pub fn submit(
        &self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        conf_state: Option<&ConfState>,
    ) -> Result<Ticket> {
        self.write_ready(entries, hard_state, conf_state, true)
            .and_then(|t| t.ok_or_else(|| Error::internal("submit issued no write")))
    }

    /// The shared body of `persist` and `submit`: one batch with the cut,
    /// the entries and the new state blob.
    pub(super) fn write_ready(
        &self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        conf_state: Option<&ConfState>,
        submit: bool,
    ) -> Result<Option<Ticket>> {
        let sh = &*self.shared;
        if entries.is_empty() && hard_state.is_none() && conf_state.is_none() {
            return match submit {
                true => sh.log.submit(&mut WriteBatch::new()).map(Some),
                false => Ok(None),
            };
        }
        let mut guard = sh.writer.lock();
        let w = &mut *guard;
        let new_cache = self.prepare_ready(&mut w.batch, entries, hard_state, conf_state)?;
        let ticket = match submit {
            true => Some(submit_batch(&sh.log, &mut w.batch)?),
            false => {
                write_batch(&sh.log, &mut w.batch)?;
                None
            }
        };
        if let Some(c) = new_cache {
            *sh.cache.write() = c;
        }
        Ok(ticket)
    }

    /// Checks a Ready's parts against the store and fills `batch` with
    /// them: the cut, the entries, the new state blob. Returns the cache
    /// to install once the batch is written. The caller holds the writer
    /// lock.
    pub(super) fn prepare_ready(
        &self,
        batch: &mut WriteBatch,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        conf_state: Option<&ConfState>,
    ) -> Result<Option<Cache>> {
        let sh = &*self.shared;
        check(&sh.log)?;
        batch.clear();
        batch.set_max_entry_size(sh.log.options().max_entry_size);
        if let Some(first) = entries.first() {
            let (fi, li) = (sh.log.first_index(), sh.log.last_index());
            if first.index < fi {
                return Err(Error::Compacted {
                    index: first.index,
                    first_index: fi,
                });
            }
            if first.index > li + 1 {
                return Err(Error::NonContiguous {
                    got: first.index,
                    last_index: li,
                });
            }
            if first.index <= li {
                batch.truncate_from(first.index);
            }
            for e in entries {
                push_entry(batch, e)?;
            }
        }
        if let Some(hs) = hard_state {
            // What raft-rs would die on at the next start: a commit index
            // past the log, or a term that went back.
            let last = entries.last().map_or(sh.log.last_index(), |e| e.index);
            if hs.commit > last {
                return Err(Error::InvalidArgument(format!(
                    "the hard state's commit index {} is past the last index {last} (after this write): persist the Ready's entries with it",
                    hs.commit
                )));
            }
            let term = sh.cache.read().hard_state.term;
            if hs.term < term {
                return Err(Error::InvalidArgument(format!(
                    "the hard state's term {} is below the stored term {term}: a term never goes back",
                    hs.term
                )));
            }
        }
        if hard_state.is_none() && conf_state.is_none() {
            return Ok(None);
        }
        let mut c = sh.cache.read().clone();
        if let Some(hs) = hard_state {
            c.hard_state = hs.clone();
        }
        if let Some(cs) = conf_state {
            c.conf_state = cs.clone();
        }
        batch.set_state(c.encode()?);
        Ok(Some(c))
    }

    /// Saves the hard state durably.
    pub fn set_hardstate(&self, hs: HardState) -> Result<()> {
        self.persist(&[], Some(&hs), None)
    }

    /// Saves the conf state durably.
    pub fn set_conf_state(&self, cs: ConfState) -> Result<()> {
        self.persist(&[], None, Some(&cs))
    }

    /// Sets the hard state's commit index to `index` durably (for a
    /// `LightReady`'s `commit_index`). The index must be in the log or be
    /// `first_index - 1`: otherwise [`Error::Unavailable`] or
    /// [`Error::Compacted`].
    ///
    /// Unlike raft-rs's `MemStorageCore::commit_to`, the hard state's term is
    /// left alone: setting it to the term of entry `index` could lower it,
    /// and a durable term must never go back (the node could vote twice in
    /// one term).
    pub fn commit_to(&self, index: u64) -> Result<()> {
        let sh = &*self.shared;
        let mut guard = sh.writer.lock();
        check(&sh.log)?;
        let (fi, li) = (sh.log.first_index(), sh.log.last_index());
        if index > li {
            return Err(Error::Unavailable {
                index,
                last_index: li,
            });
        }
        if index.saturating_add(1) < fi {
            return Err(Error::Compacted {
                index,
                first_index: fi,
            });
        }
        let mut c = sh.cache.read().clone();
        c.hard_state.commit = index;
        let batch = &mut guard.batch;
        batch.clear();
        batch.set_state(c.encode()?);
        write_batch(&sh.log, batch)?;
        *sh.cache.write() = c;
        Ok(())
    }

    /// Discards the entries before `compact_index`, like raft-rs's
    /// `MemStorageCore::compact`: a no-op when `compact_index <=
    /// first_index`; past `last_index + 1` it is [`Error::Unavailable`]
    /// instead of a panic. `term(compact_index - 1)` stays answerable.
    ///
    /// The application must not compact past its applied index, nor past
    /// its current snapshot unless a [`SnapshotSource`] is registered (a
    /// follower that falls behind is sent a snapshot, which must reach the
    /// log's first index: the stored one, or the source's).
    pub fn compact(&self, compact_index: u64) -> Result<()> {
        let sh = &*self.shared;
        let _writer = sh.writer.lock();
        check(&sh.log)?;
        sh.log.compact(compact_index)
    }

    /// Makes everything written so far durable (needed only under a
    /// [`SyncPolicy`](crate::SyncPolicy) other than `Always`).
    pub fn sync(&self) -> Result<()> {
        let sh = &*self.shared;
        let _writer = sh.writer.lock();
        check(&sh.log)?;
        sh.log.sync()
    }
}

pub(super) fn current(m: &Option<SnapshotMetadata>) -> (u64, u64) {
    m.as_ref().map_or((0, 0), |m| (m.index, m.term))
}

/// Refuses to write once the log is poisoned: by a failed sync, or by a
/// change of the store that failed half-way (memory and disk may disagree
/// until the store is reopened, which completes the change).
pub(super) fn check(log: &Backend) -> Result<()> {
    log.check_poisoned()
}

/// Writes `batch` and empties it (dropping a buffer grown unusually large).
pub(super) fn write_batch(log: &Backend, batch: &mut WriteBatch) -> Result<()> {
    let res = log.write(batch);
    recycle(batch);
    res
}

/// Issues `batch` without waiting for it to be durable.
pub(super) fn submit_batch(log: &Backend, batch: &mut WriteBatch) -> Result<Ticket> {
    let res = log.submit(batch);
    recycle(batch);
    res
}

/// Clears a used batch, dropping its buffer when it grew large.
pub(super) fn recycle(batch: &mut WriteBatch) {
    if batch.buf.capacity() > BATCH_KEEP_CAPACITY {
        *batch = WriteBatch::new();
    } else {
        batch.clear();
    }
}

/// Encodes `e` straight into the batch buffer.
pub(super) fn push_entry(batch: &mut WriteBatch, e: &Entry) -> Result<()> {
    if e.unknown_fields.iter().next().is_none() {
        let len = codec::encoded_len(e);
        return batch.push_with(e.index, e.term, len, |buf| {
            codec::encode(e, buf);
        });
    }
    let len = e.compute_size() as usize;
    let mut failed = None;
    let res = batch.push_with(e.index, e.term, len, |buf| {
        if let Err(err) = e.write_to_vec(buf) {
            failed = Some(err);
        }
    });
    if let Some(err) = failed {
        return Err(Error::InvalidArgument(format!(
            "entry {} does not encode: {err}",
            e.index
        )));
    }
    res
}
