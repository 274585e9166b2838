//! [`RaftLogStore`]: raft-rs's [`raft::Storage`](https://docs.rs/raft/0.7/raft/storage/trait.Storage.html) over a [`Log`], with each
//! Ready batch in one write and one fsync, and durable snapshots.
//!
//! # How it is stored
//!
//! - Each raft `Entry` is one [`Log`] entry whose data is the raft entry's
//!   protobuf encoding (so its data length is exactly the size raft-rs's
//!   `limit_size` counts).
//! - The `HardState`, the `ConfState`, which snapshot file is current and
//!   where the log must start are one small protobuf message kept in the
//!   log's state blob (newest wins, written in the same `write` as entries
//!   when they come together).
//! - A snapshot (raft's `SnapshotMetadata` and the application's data) is a
//!   file of its own in the log directory; see the `snapshot` module for the
//!   format and how it is made durable.
//!
//! # Crash consistency of a snapshot
//!
//! [`RaftLogStore::apply_snapshot`] and [`RaftLogStore::create_snapshot`]
//! take these steps, each durable before the next starts:
//!
//! 1. the snapshot file (temporary file, fsync, rename, directory fsync);
//! 2. the state blob naming it (and, for `apply_snapshot`, the new hard
//!    state, conf state and "the log starts after index `i`, term `t`");
//! 3. for `apply_snapshot`, [`Log::reset`] to `i + 1`;
//! 4. the removal of the previous snapshot file.
//!
//! A crash before step 2 leaves a file nothing names: [`RaftLogStore::open`]
//! removes it, and the store is as it was before the call. A crash between
//! steps 2 and 3 leaves a state blob that says the log must start after `i`
//! while it does not: `open` finishes the reset. A crash before step 4
//! leaves an old file that `open` removes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use prost::bytes::Bytes;
use protobuf::Message as PbMessage;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::durability::Ticket;
use crate::error::{Damage, Error, Result};
use crate::format::batch::WriteBatch;
// The state blob of a `RaftLogStore`, kept in the log's state frame: the
// `RaftState` message of `proto/raftwal.proto`.
use crate::format::proto::RaftState as StoredState;
use crate::log::Log;
use crate::options::{Options, RecoveryMode};

mod codec;
mod conf;
pub(crate) mod snapshot;
mod source;

pub use source::{SnapshotRequest, SnapshotSource, SourceError, SourcedSnapshot};

/// The version of the `RaftState` blob this build writes and reads.
const STATE_FORMAT: u32 = 1;

/// The reused batch keeps a buffer up to this size between writes.
const BATCH_KEEP_CAPACITY: usize = 8 << 20;

/// What the store keeps in memory besides the log's index.
#[derive(Debug, Clone, Default)]
struct Cache {
    hard_state: HardState,
    conf_state: ConfState,
    /// The metadata of the current snapshot file, if any.
    snapshot: Option<SnapshotMetadata>,
    /// `(index, term)` the log must start after (0, 0: none).
    log_start: (u64, u64),
}

impl Cache {
    fn encode(&self) -> Result<Bytes> {
        let pb = |what: &str, r: protobuf::ProtobufResult<Vec<u8>>| {
            r.map_err(|e| Error::InvalidArgument(format!("{what} does not encode: {e}")))
        };
        let (snapshot_index, snapshot_term) =
            self.snapshot.as_ref().map_or((0, 0), |m| (m.index, m.term));
        let s = StoredState {
            format: STATE_FORMAT,
            hard_state: pb("hard state", self.hard_state.write_to_bytes())?.into(),
            conf_state: pb("conf state", self.conf_state.write_to_bytes())?.into(),
            snapshot_index,
            snapshot_term,
            log_start_index: self.log_start.0,
            log_start_term: self.log_start.1,
        };
        Ok(Bytes::from(prost::Message::encode_to_vec(&s)))
    }
}

/// The decoded state blob: the cache, with the snapshot file named but not
/// yet opened.
fn decode_state(dir: &Path, blob: &[u8]) -> Result<(Cache, Option<(u64, u64)>)> {
    let bad = |reason: String| Error::corruption(Damage::RaftData, dir, 0, reason);
    let s: StoredState = prost::Message::decode(blob)
        .map_err(|e| bad(format!("the state blob is not a RaftLogStore state: {e}")))?;
    if s.format != STATE_FORMAT {
        return Err(bad(format!(
            "the state blob has format {}; this build reads RaftLogStore state format {STATE_FORMAT}",
            s.format
        )));
    }
    let hard_state = HardState::parse_from_bytes(&s.hard_state)
        .map_err(|e| bad(format!("the stored hard state does not decode: {e}")))?;
    let conf_state = ConfState::parse_from_bytes(&s.conf_state)
        .map_err(|e| bad(format!("the stored conf state does not decode: {e}")))?;
    let snap = (s.snapshot_index != 0).then_some((s.snapshot_index, s.snapshot_term));
    let cache = Cache {
        hard_state,
        conf_state,
        snapshot: None,
        log_start: (s.log_start_index, s.log_start_term),
    };
    Ok((cache, snap))
}

/// State of the (single) writer.
struct Writer {
    /// Set when a multi-step change failed half-way: memory and disk may
    /// disagree until the store is reopened (which completes the change).
    poisoned: Option<String>,
    /// Reused for every batch, to keep its buffer.
    batch: WriteBatch,
}

struct Shared {
    log: Log,
    dir: PathBuf,
    cache: RwLock<Cache>,
    writer: Mutex<Writer>,
    /// The application's snapshots (see `source`).
    source: RwLock<Option<Arc<dyn SnapshotSource>>>,
    /// When a warning that no snapshot could be served was last logged.
    last_warning: Mutex<Option<Instant>>,
}

/// A durable [`raft::Storage`](https://docs.rs/raft/0.7/raft/storage/trait.Storage.html) for raft-rs 0.7: a [`Log`] of raft entries,
/// the `HardState` and `ConfState`, and snapshot files, in one directory.
///
/// Cloning is cheap and clones share one store (give one clone to
/// `raft::RawNode` and keep one for the Ready loop). `RaftLogStore` is
/// `Send + Sync`; mutations are serialised, reads run concurrently with
/// them. Under the default [`SyncPolicy::Always`](crate::SyncPolicy::Always)
/// every mutating method returns only once its change is durable;
/// `apply_snapshot`, `create_snapshot` and `compact` are durable on return
/// under every policy.
///
/// The mutating methods follow raft-rs's `MemStorageCore`, except that
/// where it panics (an index below the first index, a gap after the last
/// one) they return an error and change nothing.
///
/// ```
/// use raft::prelude::*;
/// use raft::{GetEntriesContext, Storage};
/// use raftwal::RaftLogStore;
/// # fn main() -> raftwal::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = RaftLogStore::open(dir.path())?;
/// store.set_conf_state(ConfState::from((vec![1, 2, 3], vec![])))?;
///
/// let mut e = Entry::default();
/// (e.index, e.term, e.data) = (1, 1, b"put x=1".to_vec().into());
/// let mut hs = HardState::default();
/// (hs.term, hs.vote, hs.commit) = (1, 1, 1);
/// // One Ready: the entries and the hard state in one write and one fsync.
/// store.persist(&[e.clone()], Some(&hs), None)?;
/// drop(store);
///
/// let store = RaftLogStore::open(dir.path())?;
/// assert_eq!(store.initial_state().unwrap().hard_state, hs);
/// assert_eq!(store.entries(1, 2, None, GetEntriesContext::empty(false)).unwrap(), vec![e]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RaftLogStore {
    shared: Arc<Shared>,
}

/// What starting a raft node on a store needs; see
/// [`RaftLogStore::startup`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Startup {
    /// The store holds nothing yet: bootstrap a cluster, or wait for the
    /// leader's snapshot.
    pub is_new: bool,
    /// The stored snapshot, data included: the state machine starts from
    /// it.
    pub snapshot: Option<Snapshot>,
    /// The index for `raft::Config::applied`: the snapshot's (0 without
    /// one).
    pub applied: u64,
}

// Clones are handed to raft and to other threads.
const _: fn() = || {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<RaftLogStore>();
};

impl std::fmt::Debug for RaftLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.shared.cache.read();
        f.debug_struct("RaftLogStore")
            .field("dir", &self.shared.dir)
            .field("first_index", &self.shared.log.first_index())
            .field("last_index", &self.shared.log.last_index())
            .field("hard_state", &c.hard_state)
            .field("conf_state", &c.conf_state)
            .field("snapshot", &c.snapshot.as_ref().map(|m| (m.index, m.term)))
            .finish_non_exhaustive()
    }
}

impl RaftLogStore {
    /// Opens (or creates) the store in `dir` with default [`Options`].
    pub fn open(dir: impl AsRef<Path>) -> Result<RaftLogStore> {
        RaftLogStore::open_with(dir, Options::default())
    }

    /// Opens (or creates) the store in `dir`: recovers the log (see
    /// [`Log::open`]), reads the hard state, conf state and current
    /// snapshot, removes snapshot files nothing refers to (and temporary
    /// ones), and finishes an `apply_snapshot` that a crash interrupted.
    ///
    /// A missing or damaged current snapshot file is [`Error::Corruption`],
    /// except under
    /// [`RecoveryMode::TolerateAnyCorruption`],
    /// where it is logged and forgotten.
    pub fn open_with(dir: impl AsRef<Path>, opts: Options) -> Result<RaftLogStore> {
        let fs = std::sync::Arc::clone(&opts.file_system);
        let log = Log::open(dir.as_ref(), opts)?;
        let dir = log.dir().to_path_buf();
        let (mut cache, named) = match log.state() {
            None => (Cache::default(), None),
            Some(blob) => decode_state(&dir, &blob)?,
        };
        let listing = snapshot::list(&*fs, &dir)?;
        if let Some((index, term)) = named {
            let path = snapshot::path(&dir, index, term);
            let opened = match snapshot::open(&*fs, &path) {
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    Err(Error::corruption(
                        Damage::Snapshot,
                        &path,
                        0,
                        "the state names this snapshot file but it is missing",
                    ))
                }
                other => other,
            };
            let found = opened.and_then(|o| {
                if (o.meta.index, o.meta.term) == (index, term) {
                    Ok(o.meta)
                } else {
                    Err(Error::corruption(
                        Damage::Snapshot,
                        &path,
                        0,
                        format!(
                            "the file holds the snapshot at index {} term {}",
                            o.meta.index, o.meta.term
                        ),
                    ))
                }
            });
            match found {
                Ok(meta) => cache.snapshot = Some(meta),
                Err(e) if log.options().recovery_mode == RecoveryMode::TolerateAnyCorruption => {
                    log::warn!("raftwal: forgetting the damaged snapshot {index}/{term}: {e}");
                    // Durably, before the file goes: a later open in another
                    // mode must not look for it.
                    log.set_state(cache.encode()?)?;
                    log.sync()?;
                }
                Err(e) => return Err(e),
            }
        }
        let live = cache.snapshot.as_ref().map(|m| (m.index, m.term));
        let mut doomed = listing.temporary;
        for (index, term, path) in listing.snapshots {
            if Some((index, term)) != live {
                log::info!(
                    "raftwal: removing unreferenced snapshot file {}",
                    path.display()
                );
                doomed.push(path);
            }
        }
        snapshot::remove(&*fs, &dir, &doomed)?;
        let (start, start_term) = cache.log_start;
        if start == u64::MAX {
            // `apply_snapshot` refuses such an index before writing anything.
            return Err(Error::corruption(
                Damage::RaftData,
                log.dir(),
                0,
                "the stored state says the log starts after index u64::MAX",
            ));
        }
        if start > 0 && log.first_index() <= start {
            log::info!(
                "raftwal: finishing an interrupted apply_snapshot: the log restarts at {}",
                start + 1
            );
            log.reset(start + 1, start_term)?;
        }
        Ok(RaftLogStore {
            shared: Arc::new(Shared {
                log,
                dir,
                cache: RwLock::new(cache),
                writer: Mutex::new(Writer {
                    poisoned: None,
                    batch: WriteBatch::new(),
                }),
                source: RwLock::new(None),
                last_warning: Mutex::new(None),
            }),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// What the log's recovery found and repaired when the store was opened
    /// (torn tails cut, files removed); see [`Log::recovery_report`].
    pub fn recovery_report(&self) -> &crate::recovery::RecoveryReport {
        self.shared.log.recovery_report()
    }

    /// Whether the store holds nothing yet: no entry, no hard or conf
    /// state, no snapshot. A new node either bootstraps a cluster
    /// ([`bootstrap`](Self::bootstrap)) or waits to be sent a snapshot.
    pub fn is_new(&self) -> bool {
        self.shared.log.state().is_none() && self.shared.log.last_index() == 0
    }

    /// What starting (or restarting) a raft node on this store needs, in
    /// one call: whether the store is new, the stored snapshot with its
    /// data (restore the state machine from it), and the applied index for
    /// `raft::Config::applied` (the snapshot's index, 0 without one: the
    /// committed entries after it are handed out again to apply). I/O
    /// errors and a damaged snapshot file are errors.
    ///
    /// ```
    /// # fn main() -> raftwal::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = raftwal::RaftLogStore::open(dir.path())?;
    /// let start = store.startup()?;
    /// if start.is_new {
    ///     // The first node of a cluster: one voter, the others join by
    ///     // conf changes (and are sent snapshots).
    ///     store.bootstrap(raft::prelude::ConfState::from((vec![1], vec![])))?;
    /// } else if let Some(snapshot) = &start.snapshot {
    ///     // Restore the state machine from `snapshot.data` here.
    /// #   let _ = snapshot;
    /// }
    /// let config = raft::Config { id: 1, applied: start.applied, ..Default::default() };
    /// # let _ = config;
    /// # Ok(()) }
    /// ```
    pub fn startup(&self) -> Result<Startup> {
        let snapshot = self.read_snapshot(0)?;
        Ok(Startup {
            is_new: self.is_new(),
            applied: snapshot.as_ref().map_or(0, |s| s.get_metadata().index),
            snapshot,
        })
    }

    /// Makes a new store the first member of a cluster: stores a snapshot
    /// at index 1 (term 1, no data) whose configuration is `conf_state`,
    /// as raft-rs's examples do, so the node starts from it and other
    /// peers, added by conf changes, catch up from it (see
    /// [`set_snapshot_source`](Self::set_snapshot_source)). Durable on
    /// return. [`Error::InvalidArgument`] when the store is not new, or
    /// `conf_state` has no voter.
    pub fn bootstrap(&self, conf_state: ConfState) -> Result<()> {
        if !self.is_new() {
            return Err(Error::InvalidArgument(format!(
                "bootstrap: the store in {} is not new",
                self.shared.dir.display()
            )));
        }
        if conf_state.voters.is_empty() {
            return Err(Error::InvalidArgument(
                "bootstrap: the configuration has no voter".into(),
            ));
        }
        let mut s = Snapshot::default();
        s.mut_metadata().index = 1;
        s.mut_metadata().term = 1;
        s.mut_metadata().set_conf_state(conf_state);
        self.apply_snapshot(s)
    }

    /// The counters of the underlying log (writes, sync rounds, index
    /// memory, ...): a cheap snapshot for users without a metrics backend.
    pub fn stats(&self) -> crate::log::LogStats {
        self.shared.log.stats()
    }

    /// The metadata of the current snapshot (the newest one applied or
    /// created), if there is one. Cheap: no file is read.
    pub fn snapshot_metadata(&self) -> Option<SnapshotMetadata> {
        self.shared.cache.read().snapshot.clone()
    }

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
    fn write_ready(
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
        check(w)?;
        let batch = &mut w.batch;
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
        let new_cache = if hard_state.is_some() || conf_state.is_some() {
            let mut c = sh.cache.read().clone();
            if let Some(hs) = hard_state {
                c.hard_state = hs.clone();
            }
            if let Some(cs) = conf_state {
                c.conf_state = cs.clone();
            }
            batch.set_state(c.encode()?);
            Some(c)
        } else {
            None
        };
        let ticket = match submit {
            true => Some(submit_batch(&sh.log, batch)?),
            false => {
                write_batch(&sh.log, batch)?;
                None
            }
        };
        if let Some(c) = new_cache {
            *sh.cache.write() = c;
        }
        Ok(ticket)
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
        check(&guard)?;
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
        let mut guard = sh.writer.lock();
        check(&guard)?;
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
            guard.poisoned = Some(format!("apply_snapshot could not reset the log: {e}"));
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
        check(&guard)?;
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
        let guard = sh.writer.lock();
        check(&guard)?;
        sh.log.compact(compact_index)
    }

    /// Makes everything written so far durable (needed only under a
    /// [`SyncPolicy`](crate::SyncPolicy) other than `Always`).
    pub fn sync(&self) -> Result<()> {
        let sh = &*self.shared;
        let guard = sh.writer.lock();
        check(&guard)?;
        sh.log.sync()
    }

    fn read_snapshot(&self, request_index: u64) -> Result<Option<Snapshot>> {
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

fn current(m: &Option<SnapshotMetadata>) -> (u64, u64) {
    m.as_ref().map_or((0, 0), |m| (m.index, m.term))
}

fn check(w: &Writer) -> Result<()> {
    match &w.poisoned {
        Some(cause) => Err(Error::Poisoned {
            cause: cause.clone(),
        }),
        None => Ok(()),
    }
}

/// Writes `batch` and empties it (dropping a buffer grown unusually large).
fn write_batch(log: &Log, batch: &mut WriteBatch) -> Result<()> {
    let res = log.write(batch);
    recycle(batch);
    res
}

/// Issues `batch` without waiting for it to be durable.
fn submit_batch(log: &Log, batch: &mut WriteBatch) -> Result<Ticket> {
    let res = log.submit(batch);
    recycle(batch);
    res
}

/// Clears a used batch, dropping its buffer when it grew large.
fn recycle(batch: &mut WriteBatch) {
    if batch.buf.capacity() > BATCH_KEEP_CAPACITY {
        *batch = WriteBatch::new();
    } else {
        batch.clear();
    }
}

/// Encodes `e` straight into the batch buffer.
fn push_entry(batch: &mut WriteBatch, e: &Entry) -> Result<()> {
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

/// Removes the previous snapshot file once the new one is current. A failure
/// is only logged: `open` removes files nothing refers to.
fn remove_old_snapshot(
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

/// Decodes log entry `index` (of `term`), whose data is `data`, into a raft
/// entry that keeps `data`'s bytes.
fn decode_entry(dir: &Path, index: u64, term: u64, data: Bytes) -> Result<Entry> {
    let r = match codec::decode_owned(data) {
        Ok(r) => r,
        Err(data) => Entry::parse_from_carllerche_bytes(&data).map_err(|err| {
            Error::corruption(
                Damage::RaftData,
                dir,
                0,
                format!("log entry {index} is not a raft entry: {err}"),
            )
        })?,
    };
    if r.index != index || r.term != term {
        return Err(Error::corruption(
            Damage::RaftData,
            dir,
            0,
            format!(
                "log entry {index} (term {term}) holds raft entry {} (term {})",
                r.index, r.term
            ),
        ));
    }
    Ok(r)
}

impl From<Error> for raft::Error {
    /// [`Error::Compacted`], [`Error::Unavailable`] and
    /// [`Error::SnapshotOutOfDate`] / [`Error::SnapshotNotNewer`] become the
    /// matching `raft::StorageError`, which raft-rs acts on. Everything else
    /// becomes `raft::Error::Io`, whose message is raftwal's own (raft-rs
    /// prints `StorageError::Other` as "unknown error ..."): its kind is
    /// the operating system's for [`Error::Io`], `Other` for the rest, and
    /// `io::Error::get_ref` gives back the [`Error`] (downcast it).
    ///
    /// ```
    /// let e: raft::Error = raftwal::Error::NonContiguous { got: 7, last_index: 5 }.into();
    /// assert_eq!(e.to_string(), "entry index 7 does not follow the last index 5 (expected 6)");
    /// let raft::Error::Io(io) = &e else { unreachable!() };
    /// let inner = io.get_ref().and_then(|x| x.downcast_ref::<raftwal::Error>());
    /// assert!(matches!(inner, Some(raftwal::Error::NonContiguous { .. })));
    /// ```
    fn from(e: Error) -> raft::Error {
        let store = |s| raft::Error::Store(s);
        match e {
            Error::Compacted { .. } => store(StorageError::Compacted),
            Error::Unavailable { .. } => store(StorageError::Unavailable),
            Error::SnapshotOutOfDate { .. } | Error::SnapshotNotNewer { .. } => {
                store(StorageError::SnapshotOutOfDate)
            }
            Error::Io { ref source, .. } => raft::Error::Io(std::io::Error::new(source.kind(), e)),
            other => raft::Error::Io(std::io::Error::other(other)),
        }
    }
}

impl raft::Storage for RaftLogStore {
    /// The newest hard state and conf state.
    fn initial_state(&self) -> raft::Result<RaftState> {
        let c = self.shared.cache.read();
        Ok(RaftState::new(c.hard_state.clone(), c.conf_state.clone()))
    }

    /// Entries `low..high`, limited by `max_size` exactly as raft-rs's
    /// `util::limit_size` does (protobuf sizes, at least one entry).
    /// `Compacted` below `first_index`; `Unavailable` (not a panic) when
    /// `high > last_index + 1`. Reads are synchronous: the context is
    /// ignored.
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max = max_size.into().filter(|&m| m != raft::NO_LIMIT);
        let sh = &*self.shared;
        let mut out = sh.log.read_with(low, high, max, |index, term, data| {
            decode_entry(&sh.dir, index, term, data)
        })?;
        raft::util::limit_size(&mut out, max);
        Ok(out)
    }

    /// The term of entry `idx`, for `first_index - 1 <= idx <= last_index`
    /// (the term before the first index is kept through compactions and
    /// snapshots).
    fn term(&self, idx: u64) -> raft::Result<u64> {
        let log = &self.shared.log;
        if idx == u64::MAX {
            return Err(Error::Unavailable {
                index: idx,
                last_index: log.last_index(),
            }
            .into());
        }
        Ok(log.term(idx)?)
    }

    /// The first index in the log.
    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.shared.log.first_index())
    }

    /// The last index in the log (`first_index - 1` when it is empty).
    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.shared.log.last_index())
    }

    /// A snapshot for peer `to` (0: any peer) at `request_index` or
    /// later, data included: the stored one when it serves, else the stored
    /// one advanced over entries without state-machine data, else the
    /// registered [`SnapshotSource`]'s (stored first); see
    /// [`RaftLogStore::set_snapshot_source`]. When none can be had now,
    /// `SnapshotTemporarilyUnavailable` (raft asks again), with a warning
    /// naming what is missing. I/O errors and damage are errors.
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        match self.snapshot_for(request_index, to)? {
            Some(s) => Ok(s),
            None => Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
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
        store.shared.writer.lock().poisoned = Some("test".into());
        assert!(matches!(
            store.append(&[entry(1, 1)]),
            Err(Error::Poisoned { .. })
        ));
        assert!(matches!(store.commit_to(0), Err(Error::Poisoned { .. })));
    }
}
