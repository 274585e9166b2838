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
use crate::engine::Engine;
use crate::format::proto::RaftState as StoredState;
use crate::log::Log;
use crate::options::{Options, RecoveryMode};

mod backend;
mod codec;
mod conf;
mod groups;
mod many;
mod ready;
pub(crate) mod snapshot;
mod snapshots;
mod source;
mod storage;
#[cfg(test)]
mod tests;

use self::backend::Backend;
use self::ready::*;
use self::storage::*;

pub use many::GroupReady;
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
    /// Reused for every batch, to keep its buffer.
    batch: WriteBatch,
}

struct Shared {
    log: Backend,
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
        let log = Log::open(dir.as_ref(), opts)?;
        let dir = log.dir().to_path_buf();
        RaftLogStore::open_on(Backend::Log(log), dir)
    }

    /// Opens (or creates) the store of group `group` of `engine`: the same
    /// store as [`open_with`](Self::open_with) gives, with its entries and
    /// state in the engine (one write and one `fdatasync` shared with every
    /// other group) and its snapshot files in `groups/{group:016x}/` under
    /// the engine's directory (made with its first snapshot). [`Error::InvalidArgument`] while another
    /// store is open on the group (clone a store to share it).
    ///
    /// ```
    /// # fn main() -> raftwal::Result<()> {
    /// use std::sync::Arc;
    /// let dir = tempfile::tempdir().unwrap();
    /// let engine = Arc::new(raftwal::Engine::open(dir.path(), raftwal::Options::default())?);
    /// let a = raftwal::RaftLogStore::open_group(&engine, 1)?;
    /// let b = raftwal::RaftLogStore::open_group(&engine, 2)?;
    /// a.bootstrap(raft::prelude::ConfState::from((vec![1], vec![])))?;
    /// assert!(!a.is_new() && b.is_new());
    /// # Ok(()) }
    /// ```
    pub fn open_group(engine: &Arc<Engine>, group: u64) -> Result<RaftLogStore> {
        let claim = engine.claim(group)?;
        // Made with the group's first snapshot, not before: a group that
        // never has one costs no directory.
        let dir = groups::group_dir(engine, group);
        RaftLogStore::open_on(Backend::Group(claim), dir)
    }

    /// The rest of an open, on the store's log and snapshot directory.
    fn open_on(log: Backend, dir: PathBuf) -> Result<RaftLogStore> {
        let fs = Arc::clone(&log.options().file_system);
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
                &dir,
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
}
