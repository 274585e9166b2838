//! raftwal: a durable, fast Raft log on disk.
//!
//! Two layers:
//! - [`Log`], a positional write-ahead log: segment files of CRC-checked,
//!   protobuf-framed records, an in-memory index of every entry's offset,
//!   reads by `pread`, `truncate_from_index` for Raft conflicts, `compact`
//!   after a snapshot, an opaque state blob, and crash recovery that repairs
//!   torn tails and refuses real damage.
//! - [`RaftLogStore`], which implements raft-rs's `raft::Storage` over a
//!   [`Log`], with each Ready batch in one atomic write and one fsync, and durable
//!   snapshots.
//!
//! See `docs/FORMAT.md` for the on-disk format and `docs/ARCHITECTURE.md`
//! for how the pieces fit.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod batch;
mod chain;
mod damage;
mod durability;
mod error;
mod footer;
pub mod frame;
pub mod fs;
mod index;
pub mod inspect;
mod log;
mod metrics;
mod options;
mod prepare;
mod raft;
mod raft_codec;
mod read;
mod recovery;
mod remove;
pub mod segment;
mod snapshot;
mod stage;
mod sync;
mod worker;
mod write;
mod writeback;

/// The protobuf messages of the on-disk format, generated from
/// `proto/raftwal.proto` by `build.rs`.
#[allow(missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/raftwal.v1.rs"));
}

pub use crate::batch::WriteBatch;
pub use crate::durability::Ticket;
pub use crate::error::{Error, Result};
pub use crate::log::{Entry, Iter, Log, LogStats, LOCK_FILE};
pub use crate::options::{Options, Preallocate, RecoveryMode, SyncPolicy};
pub use crate::raft::{
    RaftLogStore, SnapshotRequest, SnapshotSource, SourceError, SourcedSnapshot, Startup,
};
pub use crate::recovery::RecoveryReport;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
