//! raftwal: a durable, fast Raft log on disk.
//!
//! Two layers:
//! - [`RaftLogStore`] implements raft-rs 0.7's
//!   [`raft::Storage`](https://docs.rs/raft/0.7/raft/storage/trait.Storage.html):
//!   a drop-in for `MemStorage` that survives restarts. Each Ready's entries
//!   and hard state are one write and one `fdatasync`, atomic across a
//!   crash; snapshots are stored durably, with their data; peers added by
//!   conf changes get the snapshots they need.
//! - [`Log`], the positional write-ahead log under it: segment files of
//!   CRC-checked, protobuf-framed records, an in-memory index of every
//!   entry's offset, reads by `pread`, `truncate_from_index` for Raft
//!   conflicts, `compact` after a snapshot, an opaque state blob, and crash
//!   recovery that always leaves the state after a prefix of the writes,
//!   repairs torn tails and refuses real damage.
//!
//! # Quick start: a raft-rs node
//!
//! Open the store, start the node from what it holds (a new store on the
//! first node bootstraps the cluster), and persist every Ready before the
//! messages that depend on it go out:
//!
//! ```
//! use raft::prelude::*;
//! use raftwal::RaftLogStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let logger = slog::Logger::root(slog::Discard, slog::o!());
//! let store = RaftLogStore::open(dir.path())?;
//! let start = store.startup()?; // new or not, the stored snapshot, the applied index
//! if start.is_new {
//!     // The first node of a new cluster: one voter; add the others by
//!     // conf changes (they are sent snapshots, no code needed).
//!     store.bootstrap(ConfState::from((vec![1], vec![])))?;
//! }
//! // A restart: restore the state machine from `store.startup()?.snapshot`.
//! let applied = store.startup()?.applied;
//! let cfg = Config { id: 1, applied, ..Default::default() };
//! let mut node = RawNode::new(&cfg, store.clone(), &logger)?;
//! let mut send = |msgs: Vec<Message>| drop(msgs); // to the network
//!
//! node.campaign()?;
//! node.propose(vec![], b"x=1".to_vec())?;
//! while node.has_ready() {
//!     let mut rd = node.ready();
//!     send(rd.take_messages());
//!     if !rd.snapshot().is_empty() {
//!         store.apply_snapshot(rd.snapshot().clone())?; // and load its data
//!     }
//!     for _entry in rd.take_committed_entries() { /* apply */ }
//!     store.persist(rd.entries(), rd.hs(), None)?; // one write, one fsync
//!     send(rd.take_persisted_messages()); // only after it is durable
//!     let mut light = node.advance(rd);
//!     if let Some(commit) = light.commit_index() {
//!         store.commit_to(commit)?;
//!     }
//!     send(light.take_messages());
//!     for _entry in light.take_committed_entries() { /* apply */ }
//!     node.advance_apply();
//! }
//! drop(node);
//! drop(store);
//!
//! // Later, after a crash or a clean stop: the same few lines start it again.
//! let store = RaftLogStore::open(dir.path())?;
//! let start = store.startup()?;
//! assert!(!start.is_new);
//! assert!(store.recovery_report().repairs.is_empty()); // what recovery mended
//! let cfg = Config { id: 1, applied: start.applied, ..Default::default() };
//! let node = RawNode::new(&cfg, store, &logger)?;
//! assert_eq!(node.raft.raft_log.committed, 3); // bootstrap, election, x=1
//! # Ok(()) }
//! ```
//!
//! `examples/raft_ready_loop.rs` and `examples/replicated_kv.rs` show the
//! whole loop with conf changes, snapshots and restarts; the README has
//! the differences from `MemStorage`.
//!
//! # The log alone
//!
//! ```
//! use raftwal::{Entry, Log, Options};
//! # fn main() -> raftwal::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let log = Log::open(dir.path(), Options::default())?;
//! log.append(&[Entry::new(1, 1, "a"), Entry::new(2, 1, "b")])?;
//! log.truncate_from_index(2)?; // a new leader overruled entry 2
//! log.append(&[Entry::new(2, 2, "c")])?;
//! assert_eq!(log.get_entry(2)?.data, "c");
//! # Ok(()) }
//! ```
//!
//! The on-disk format, with the rules recovery follows and why they are
//! safe, is in [`docs::format`]; how the modules and threads fit is in
//! [`docs::architecture`]. Tools that read a log directory without opening
//! it (such as the `raftwal` command-line tool, in the `raftwal-cli` crate)
//! use [`tools`], whose modules follow the on-disk format and carry no
//! other stability promise.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

// The layers, from the bottom (docs/ARCHITECTURE.md draws them): each
// uses only those before it.
mod background;
mod durability;
mod engine;
mod error;
mod format;
pub mod fs;
mod log;
mod metrics;
mod options;
mod raft;
mod recovery;
mod replay;
pub mod tools;
mod worker;

pub use crate::durability::Ticket;
pub use crate::engine::{Engine, EngineBatch, Laggard, Reclaimed};
pub use crate::error::{Damage, Error, Result};
pub use crate::format::batch::WriteBatch;
pub use crate::log::entry::Entry;
pub use crate::log::{Iter, Log, LogStats, LOCK_FILE};
pub use crate::options::{Options, Preallocate, RecoveryMode, SyncPolicy};
pub use crate::raft::{
    GroupReady, RaftLogStore, SnapshotRequest, SnapshotSource, SourceError, SourcedSnapshot,
    Startup,
};
pub use crate::recovery::RecoveryReport;

/// The design documents, as pages of this documentation.
pub mod docs {
    #[doc = include_str!("../docs/FORMAT.md")]
    pub mod format {}
    #[doc = include_str!("../docs/ARCHITECTURE.md")]
    pub mod architecture {}
    #[doc = include_str!("../docs/ENGINE.md")]
    pub mod engine {}
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
