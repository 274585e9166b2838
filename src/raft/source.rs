//! The snapshots raft asks for with `Storage::snapshot(request_index, to)`,
//! when a follower needs entries the log no longer holds:
//!
//! 1. the stored snapshot, when it is at `request_index` or later, `to` is
//!    a member of its `ConfState` (raft-rs on `to` refuses it otherwise),
//!    and it reaches the log (the entries after it are there to send);
//! 2. else the stored snapshot *advanced* over the committed entries after
//!    it that carry no state-machine data (a new leader's empty entry, conf
//!    changes): the same data, at a later index, with the `ConfState` those
//!    entries make. This serves the usual way to start a cluster (bootstrap
//!    one voter from a snapshot, add the others by conf changes) with no
//!    help from the application;
//! 3. else the application's [`SnapshotSource`], when one is registered: it
//!    gives the state machine's data at an applied index (or says it is not
//!    ready yet), and the store fills in the term and the `ConfState`,
//!    stores the snapshot durably as
//!    [`create_snapshot`](super::RaftLogStore::create_snapshot) does, and
//!    serves it;
//! 4. else `SnapshotTemporarilyUnavailable`, and a warning (at most one
//!    every ten seconds per store) that names what is missing. raft asks
//!    again later; it never gets a snapshot that misses application data.

use std::sync::Arc;
use std::time::{Duration, Instant};

use raft::eraftpb::{ConfState, Entry, Snapshot, SnapshotMetadata};

use super::conf::{carries_data, has_member, ConfReplay};
use super::RaftLogStore;
use crate::error::{Error, Result};

/// What raft asked for, as a [`SnapshotSource`] is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotRequest {
    /// raft's `request_index`: the snapshot must be at this index or later
    /// (0 when raft has no preference).
    pub request_index: u64,
    /// The peer the snapshot is for: it must be a member of the snapshot's
    /// `ConfState`.
    pub to: u64,
    /// The index of the snapshot stored now, if any: it could not serve the
    /// request.
    pub stored_index: Option<u64>,
    /// The store's durable commit index: a snapshot must not be past it
    /// (an applied index never is).
    pub committed: u64,
}

/// The application's state machine at an applied index, as a
/// [`SnapshotSource`] gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcedSnapshot {
    /// The applied index the data is the state machine at. It must be in
    /// the log (from `first_index - 1` to `last_index`).
    pub index: u64,
    /// The state machine's data, as the application restores it.
    pub data: Vec<u8>,
    /// The configuration in force at `index`, when the application knows
    /// it (it applied the conf changes up to there). `None`: the store
    /// computes it from its stored snapshot and the conf changes in the log
    /// after it (or, with no stored snapshot, takes the newest `ConfState`
    /// persisted when no conf change lies after `index`).
    pub conf_state: Option<ConfState>,
}

impl SourcedSnapshot {
    /// The state machine's `data` at applied index `index`, the
    /// configuration left for the store to compute.
    pub fn new(index: u64, data: Vec<u8>) -> SourcedSnapshot {
        SourcedSnapshot {
            index,
            data,
            conf_state: None,
        }
    }
}

/// The error a [`SnapshotSource`] returns: any error of the application's.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// The application's snapshots, for peers that need one the store cannot
/// make by itself (see the module documentation of
/// [`RaftLogStore::set_snapshot_source`]).
///
/// Called from `raft::Storage::snapshot`, that is from inside raft-rs's
/// `RawNode` calls on the thread driving the node: return quickly. An
/// application that builds snapshots in the background (as TiKV does)
/// starts the build on the first call, returns `Ok(None)` until it is
/// ready (raft is told `SnapshotTemporarilyUnavailable` and asks again),
/// then returns it. Any `Fn(&SnapshotRequest) -> Result<Option<SourcedSnapshot>,
/// SourceError> + Send + Sync` is a source.
pub trait SnapshotSource: Send + Sync {
    /// The state machine's data at an applied index, or `None` while it is
    /// not ready.
    fn snapshot(
        &self,
        request: &SnapshotRequest,
    ) -> std::result::Result<Option<SourcedSnapshot>, SourceError>;
}

impl<F> SnapshotSource for F
where
    F: Fn(&SnapshotRequest) -> std::result::Result<Option<SourcedSnapshot>, SourceError>
        + Send
        + Sync,
{
    fn snapshot(
        &self,
        request: &SnapshotRequest,
    ) -> std::result::Result<Option<SourcedSnapshot>, SourceError> {
        self(request)
    }
}

/// Entries read at a time while looking at the log after a snapshot.
const CHUNK: u64 = 256;

/// The least time between two warnings that no snapshot can be served.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl RaftLogStore {
    /// Registers the application's snapshot source (replacing any earlier
    /// one). See [`SnapshotSource`] and how a snapshot is chosen:
    ///
    /// 1. the stored snapshot, when it can serve the peer;
    /// 2. the stored snapshot advanced over committed entries that carry no
    ///    state-machine data (empty entries, conf changes), with the
    ///    `ConfState` they make: enough to add peers to a cluster started
    ///    from a snapshot, with no source;
    /// 3. the source's, stored durably (as
    ///    [`create_snapshot`](Self::create_snapshot)), then served;
    /// 4. none (raft is told `SnapshotTemporarilyUnavailable`; a warning
    ///    names the missing source).
    pub fn set_snapshot_source(&self, source: impl SnapshotSource + 'static) {
        *self.shared.source.write() = Some(Arc::new(source));
    }

    /// The snapshot to send to peer `to` (0: any peer) at `request_index`
    /// or later, if one can be had now (see the module documentation).
    pub(super) fn snapshot_for(&self, request_index: u64, to: u64) -> Result<Option<Snapshot>> {
        let sh = &*self.shared;
        // For a peer, the snapshot must also reach the log: the leader
        // continues from it with the entries after it. (Peer 0, any reader,
        // gets the stored one as it is.)
        let first = sh.log.first_index();
        let serves = |m: &SnapshotMetadata| {
            m.index >= request_index
                && has_member(m.get_conf_state(), to)
                && (to == 0 || m.index.saturating_add(1) >= first)
        };
        if sh.cache.read().snapshot.as_ref().is_some_and(serves) {
            // The newest stored one (a writer may replace it meanwhile).
            if let Some(s) = self
                .read_snapshot(request_index)?
                .filter(|s| serves(s.get_metadata()))
            {
                return Ok(Some(s));
            }
        }
        let stored = sh.cache.read().snapshot.clone();
        if let Some(m) = &stored {
            if let Some(s) = self.advance(m, request_index, to)? {
                return Ok(Some(s));
            }
        }
        let source = sh.source.read().clone();
        if let Some(source) = source {
            let request = SnapshotRequest {
                request_index,
                to,
                stored_index: stored.as_ref().map(|m| m.index),
                committed: sh.cache.read().hard_state.commit,
            };
            let given = source
                .snapshot(&request)
                .map_err(|source| Error::SnapshotSource { source })?;
            let Some(given) = given else {
                return Ok(None);
            };
            let index = given.index;
            self.store_sourced(given, stored.as_ref())?;
            let now = sh.cache.read().snapshot.clone();
            if let Some(m) = now.filter(|m| serves(m)) {
                return self.read_stored(&m);
            }
            self.warn(format_args!(
                "the snapshot source's snapshot at index {index} cannot serve peer {to} at index {request_index} or later"
            ));
            return Ok(None);
        }
        let what = match &stored {
            Some(m) => format!(
                "the stored snapshot (index {}, voters {:?}, learners {:?}) cannot serve it and entries with state-machine data follow it",
                m.index,
                m.get_conf_state().voters,
                m.get_conf_state().learners
            ),
            None => "no snapshot is stored".to_string(),
        };
        self.warn(format_args!(
            "raft needs a snapshot for peer {to} at index {request_index} or later: {what}; register one with RaftLogStore::set_snapshot_source or store one with create_snapshot"
        ));
        Ok(None)
    }

    /// The stored snapshot `m`, data included, if it is still the stored
    /// one (a newer one may have replaced it meanwhile: `None`).
    fn read_stored(&self, m: &SnapshotMetadata) -> Result<Option<Snapshot>> {
        Ok(self
            .read_snapshot(m.index)?
            .filter(|s| (s.get_metadata().index, s.get_metadata().term) == (m.index, m.term)))
    }

    /// The stored snapshot `m` advanced over the committed entries after it
    /// that carry no state-machine data, to the last index whose
    /// configuration has `to` as a member, at `request_index` or later.
    /// `None` when there is none (or the log no longer holds those entries).
    fn advance(
        &self,
        m: &SnapshotMetadata,
        request_index: u64,
        to: u64,
    ) -> Result<Option<Snapshot>> {
        let sh = &*self.shared;
        let committed = sh.cache.read().hard_state.commit;
        let hi = committed.min(sh.log.last_index());
        if m.index >= hi || sh.log.first_index() > m.index + 1 {
            return Ok(None);
        }
        let mut replay = match ConfReplay::new(m.get_conf_state()) {
            Ok(r) => r,
            Err(e) => {
                self.warn(format_args!("cannot advance the stored snapshot: {e}"));
                return Ok(None);
            }
        };
        let mut best: Option<(u64, u64, ConfState)> = None;
        self.scan_entries(m.index + 1, hi, |e| {
            if carries_data(e) {
                return Ok(false);
            }
            if let Err(err) = replay.apply(e) {
                self.warn(format_args!("cannot advance the stored snapshot: {err}"));
                return Ok(false);
            }
            if e.index >= request_index && has_member(replay.conf_state(), to) {
                best = Some((e.index, e.term, replay.conf_state().clone()));
            }
            Ok(true)
        })?;
        let Some((index, term, conf_state)) = best else {
            return Ok(None);
        };
        let Some(mut s) = self.read_stored(m)? else {
            return Ok(None);
        };
        let meta = s.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(conf_state);
        log::info!(
            "raftwal: {}: serving the stored snapshot advanced from index {} to {index} over entries without state-machine data",
            sh.dir.display(),
            m.index
        );
        Ok(Some(s))
    }

    /// Stores what the application's source gave, as `create_snapshot`
    /// does, with the term from the log and the configuration in force at
    /// its index. Nothing is stored when it is no newer than `stored`.
    fn store_sourced(
        &self,
        given: SourcedSnapshot,
        stored: Option<&SnapshotMetadata>,
    ) -> Result<()> {
        let sh = &*self.shared;
        let (fi, li) = (sh.log.first_index(), sh.log.last_index());
        let index = given.index;
        if index == 0 || index > li || index.saturating_add(1) < fi {
            return Err(Error::InvalidArgument(format!(
                "the snapshot source gave a snapshot at index {index}, outside the log {}..={li}",
                fi.saturating_sub(1)
            )));
        }
        if stored.is_some_and(|m| index <= m.index) {
            return Ok(());
        }
        let conf_state = match given.conf_state {
            Some(cs) => cs,
            None => self.conf_state_at(index, stored)?,
        };
        self.create_snapshot(index, conf_state, given.data)
    }

    /// The configuration in force at `index`: the stored snapshot's (at or
    /// below `index`) with the conf changes after it applied; with none
    /// stored, the newest persisted one, when no conf change entry lies
    /// after `index`.
    fn conf_state_at(&self, index: u64, stored: Option<&SnapshotMetadata>) -> Result<ConfState> {
        let sh = &*self.shared;
        let unknown = || {
            Error::InvalidArgument(format!(
                "the snapshot source gave a snapshot at index {index} without its ConfState, and the store cannot tell it (no stored snapshot at or below it, and conf changes follow it): return the ConfState with it"
            ))
        };
        match stored {
            Some(m) if m.index <= index && sh.log.first_index() <= m.index + 1 => {
                let mut replay = ConfReplay::new(m.get_conf_state())?;
                self.scan_entries(m.index + 1, index, |e| replay.apply(e).map(|()| true))?;
                Ok(replay.conf_state().clone())
            }
            Some(_) => Err(unknown()),
            None => {
                let mut conf_change_after = false;
                self.scan_entries(index + 1, sh.log.last_index(), |e| {
                    conf_change_after = e.get_entry_type() != raft::eraftpb::EntryType::EntryNormal;
                    Ok(!conf_change_after)
                })?;
                match conf_change_after {
                    true => Err(unknown()),
                    false => Ok(sh.cache.read().conf_state.clone()),
                }
            }
        }
    }

    /// Calls `f` on the raft entries `lo..=hi` in order, read `CHUNK` at a
    /// time, until it returns `false`.
    fn scan_entries(
        &self,
        lo: u64,
        hi: u64,
        mut f: impl FnMut(&Entry) -> Result<bool>,
    ) -> Result<()> {
        let sh = &*self.shared;
        let mut next = lo;
        while next <= hi {
            let end = next.saturating_add(CHUNK).min(hi.saturating_add(1));
            let entries = sh.log.read_with(next, end, None, |index, term, data| {
                super::decode_entry(&sh.dir, index, term, data)
            })?;
            for e in &entries {
                if !f(e)? {
                    return Ok(());
                }
            }
            if end == next {
                break;
            }
            next = end;
        }
        Ok(())
    }

    /// Logs a warning about serving snapshots, at most one every ten
    /// seconds.
    fn warn(&self, what: std::fmt::Arguments<'_>) {
        let mut last = self.shared.last_warning.lock();
        if last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        log::warn!("raftwal: {}: {what}", self.shared.dir.display());
    }
}
