//! Persisting the Readies of many groups of one engine in one write and
//! one `fdatasync` ([`RaftLogStore::persist_many`]).

use super::*;
use crate::engine::EngineBatch;

/// One group's part of [`RaftLogStore::persist_many`]: the store of the
/// group (opened with [`RaftLogStore::open_group`]) and what its Ready asks
/// to persist, as [`RaftLogStore::persist`] takes them.
#[derive(Debug, Clone, Copy)]
pub struct GroupReady<'a> {
    /// The group's store.
    pub store: &'a RaftLogStore,
    /// The Ready's entries (`rd.entries()`).
    pub entries: &'a [Entry],
    /// The Ready's hard state (`rd.hs()`).
    pub hard_state: Option<&'a HardState>,
    /// A conf state to store with them, if any.
    pub conf_state: Option<&'a ConfState>,
}

impl RaftLogStore {
    /// Persists the Readies of many groups of one engine as
    /// [`persist`](Self::persist) does for one: one record, one `write`,
    /// and under [`SyncPolicy::Always`](crate::SyncPolicy::Always) one
    /// `fdatasync`, atomic across the groups (a crash keeps all of them or
    /// none). A part that [`persist`](Self::persist) would refuse refuses
    /// the whole call with [`Error::Group`], and nothing changes.
    /// [`Error::InvalidArgument`] when a store is not an engine group's,
    /// the stores are of different engines, or a group comes twice.
    ///
    /// ```
    /// # fn main() -> raftwal::Result<()> {
    /// use raft::prelude::{Entry, HardState};
    /// use raftwal::{Engine, GroupReady, Options, RaftLogStore};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let engine = std::sync::Arc::new(Engine::open(dir.path(), Options::default())?);
    /// let (a, b) = (RaftLogStore::open_group(&engine, 1)?, RaftLogStore::open_group(&engine, 2)?);
    /// let mut e = Entry::default();
    /// (e.index, e.term) = (1, 1);
    /// let mut hs = HardState::default();
    /// (hs.term, hs.commit) = (1, 1);
    /// let ready = |store| GroupReady {
    ///     store,
    ///     entries: std::slice::from_ref(&e),
    ///     hard_state: Some(&hs),
    ///     conf_state: None,
    /// };
    /// RaftLogStore::persist_many(&[ready(&a), ready(&b)])?; // one write, one fsync
    /// # Ok(()) }
    /// ```
    pub fn persist_many(readies: &[GroupReady<'_>]) -> Result<()> {
        write_many(readies, false).map(|_| ())
    }

    /// Like [`persist_many`](Self::persist_many), but returns once the
    /// write is issued, as [`submit`](Self::submit) does: one [`Ticket`]
    /// for all the groups.
    pub fn submit_many(readies: &[GroupReady<'_>]) -> Result<Ticket> {
        write_many(readies, true)
            .and_then(|t| t.ok_or_else(|| Error::internal("submit_many issued no write")))
    }
}

/// The body of `persist_many` and `submit_many`.
fn write_many(readies: &[GroupReady<'_>], submit: bool) -> Result<Option<Ticket>> {
    let mut parts = Vec::with_capacity(readies.len());
    for r in readies {
        let Backend::Group(c) = &r.store.shared.log else {
            return Err(Error::InvalidArgument(format!(
                "persist_many takes groups of an engine; {} is a store of its own",
                r.store.dir().display()
            )));
        };
        parts.push((c.group(), c.engine(), r));
    }
    let Some(&(_, engine, _)) = parts.first() else {
        return Ok(None);
    };
    if parts.iter().any(|p| !Arc::ptr_eq(p.1, engine)) {
        return Err(Error::InvalidArgument(
            "persist_many takes groups of one engine".into(),
        ));
    }
    // Writers are locked in group order, so that two calls never wait for
    // each other's locks.
    parts.sort_by_key(|p| p.0);
    if let Some(w) = parts.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(Error::InvalidArgument(format!(
            "group {} comes twice in one persist_many",
            w[0].0
        )));
    }
    let mut writers: Vec<_> = parts
        .iter()
        .map(|p| p.2.store.shared.writer.lock())
        .collect();
    let mut caches = Vec::with_capacity(parts.len());
    let mut batch = EngineBatch::new();
    let mut prepared = Ok(());
    for (w, &(group, _, r)) in writers.iter_mut().zip(&parts) {
        match r
            .store
            .prepare_ready(&mut w.batch, r.entries, r.hard_state, r.conf_state)
        {
            Ok(cache) => caches.push(cache),
            Err(e) => {
                prepared = Err(Error::Group {
                    group,
                    source: Box::new(e),
                });
                break;
            }
        }
        if !w.batch.is_empty() {
            std::mem::swap(batch.group(group), &mut w.batch);
        }
    }
    let res = match (&prepared, batch.is_empty()) {
        (Err(_), _) => Ok(None),
        (Ok(()), true) if submit => engine.stream().submit(&mut WriteBatch::new()).map(Some),
        (Ok(()), true) => Ok(None),
        (Ok(()), false) if submit => engine.submit(&mut batch).map(Some),
        (Ok(()), false) => engine.write(&mut batch).map(|()| None),
    };
    // Every store gets its batch back, emptied, to reuse its buffer.
    for (w, &(group, _, _)) in writers.iter_mut().zip(&parts) {
        if batch.contains_group(group) {
            std::mem::swap(batch.group(group), &mut w.batch);
        }
        recycle(&mut w.batch);
    }
    prepared?;
    let ticket = res?;
    for (cache, &(_, _, r)) in caches.into_iter().zip(&parts) {
        if let Some(c) = cache {
            *r.store.shared.cache.write() = c;
        }
    }
    Ok(ticket)
}
