//! The one error type of raftwal.

use std::io;
use std::path::PathBuf;

/// A specialised `Result` for raftwal operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in raftwal.
///
/// Every variant carries what a user needs to act on it: the file and byte
/// offset of a corruption, the index that was asked for and the range that
/// exists, the limit that was exceeded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What raftwal was doing (`"write"`, `"fdatasync"`, `"open"`, ...).
        op: &'static str,
        /// The file or directory it was doing it to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// Bytes on disk are not what raftwal wrote.
    #[error("corruption in {path} at offset {offset}: {reason}")]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// The byte offset of the first bad frame in that file.
        offset: u64,
        /// What kind of damage it is.
        damage: Damage,
        /// What is wrong there, in words.
        reason: String,
    },

    /// An entry (or state blob) is larger than `Options::max_entry_size`.
    #[error("entry of {len} bytes exceeds the maximum entry size of {max} bytes")]
    EntryTooLarge {
        /// The encoded size of the offending entry.
        len: u64,
        /// The configured limit.
        max: u64,
    },

    /// Another `Log` (in this or another process) holds the directory's lock.
    #[error("log directory {dir} is locked by another open log")]
    Locked {
        /// The locked directory.
        dir: PathBuf,
    },

    /// A previous `fdatasync` (or a failed roll-back) left the on-disk state
    /// unknown; the log refuses writes until it is reopened.
    #[error("the log is poisoned by an earlier I/O failure ({cause}); reopen it")]
    Poisoned {
        /// A description of the failure that poisoned the log.
        cause: String,
    },

    /// An appended entry's index is not the next one.
    #[error("entry index {got} does not follow the last index {last_index} (expected {})", last_index.saturating_add(1))]
    NonContiguous {
        /// The index that was given.
        got: u64,
        /// The log's last index when the append was made.
        last_index: u64,
    },

    /// The requested index was discarded by a compaction or reset.
    #[error("index {index} is compacted (first index is {first_index})")]
    Compacted {
        /// The requested index.
        index: u64,
        /// The log's first index.
        first_index: u64,
    },

    /// The requested index is past the end of the log.
    #[error("index {index} is beyond the last index {last_index}")]
    Unavailable {
        /// The requested index.
        index: u64,
        /// The log's last index.
        last_index: u64,
    },

    /// A snapshot is older than what the store already holds.
    #[error("snapshot at index {index} is older than the store's first index {first_index}")]
    SnapshotOutOfDate {
        /// The snapshot's index.
        index: u64,
        /// The store's first index.
        first_index: u64,
    },

    /// An argument is outside what the operation accepts.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The `Options` given to `open` are not usable.
    #[error("invalid options: {0}")]
    InvalidOptions(String),

    /// A snapshot is not newer than the snapshot the store already holds
    /// ([`RaftLogStore::create_snapshot`](crate::RaftLogStore::create_snapshot)).
    #[error("snapshot at index {index} is not newer than the stored snapshot at index {stored}")]
    SnapshotNotNewer {
        /// The new snapshot's index.
        index: u64,
        /// The stored snapshot's index.
        stored: u64,
    },

    /// A bug in raftwal: one of its own invariants does not hold (the
    /// index lists an entry it has no location for, say). Nothing on disk
    /// is known to be wrong; please report it with the message.
    #[error("internal error (a raftwal bug, please report it): {what}")]
    Internal {
        /// The invariant that broke, and where.
        what: String,
    },

    /// A change to one group of an [`Engine`](crate::Engine) was refused:
    /// `source` says why (a non-contiguous entry, a cut below the group's
    /// first index, ...). Nothing of the batch was written.
    #[error("group {group}: {source}")]
    Group {
        /// The group whose part was refused.
        group: u64,
        /// Why.
        #[source]
        source: Box<Error>,
    },

    /// The application's [`SnapshotSource`](crate::SnapshotSource) failed to
    /// give the state machine's data.
    #[error("the application's snapshot source failed: {source}")]
    SnapshotSource {
        /// The source's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What kind of damage an [`Error::Corruption`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Damage {
    /// A crash's torn tail: a frame or a write cut short, writes lost at
    /// the end of a segment, a segment whose creation a crash interrupted.
    /// Nothing acknowledged is in it; only
    /// [`RecoveryMode::AbsoluteConsistency`](crate::RecoveryMode::AbsoluteConsistency)
    /// refuses it.
    TornTail,
    /// A frame's bytes do not verify (its CRC, type byte or length), and
    /// no crash explains it.
    Frame,
    /// A frame passed its CRC but its payload does not decode.
    Payload,
    /// Valid frames that do not continue the log: an entry index or term
    /// out of order, a marker outside the log, a segment that does not
    /// continue the one before it.
    Continuity,
    /// A segment file's name or header: it does not verify, or says
    /// another segment than the name does.
    Header,
    /// A sealed segment's footer or trailer.
    Footer,
    /// The log's history is missing: its oldest segment continues one that
    /// is not there, or the newest marker puts the first index below it.
    MissingHistory,
    /// A snapshot file: missing, damaged, or another snapshot than the
    /// store's state names.
    Snapshot,
    /// The raft adapter's records (its state blob, the raft entries it
    /// stored) do not decode or disagree with the log.
    RaftData,
    /// An [`Engine`](crate::Engine)'s record: it does not parse, or a
    /// group's part of it does not continue that group.
    Record,
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// A broken internal invariant (see [`Error::Internal`]).
    pub(crate) fn internal(what: impl Into<String>) -> Error {
        Error::Internal { what: what.into() }
    }

    pub(crate) fn corruption(
        damage: Damage,
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Error {
        Error::Corruption {
            path: path.into(),
            offset,
            damage,
            reason: reason.into(),
        }
    }
}
