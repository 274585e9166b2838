//! What recovery found and did, for the caller of `Log::open`.

use std::path::PathBuf;

/// What recovery found and did when the log was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files read.
    pub segments_scanned: usize,
    /// Bytes of segment files read.
    pub bytes_scanned: u64,
    /// Entries found (compacted ones included).
    pub entries_scanned: u64,
    /// Bytes cut from the end of segments (torn tails, or damage under
    /// [`RecoveryMode::TolerateAnyCorruption`](crate::RecoveryMode::TolerateAnyCorruption)).
    pub bytes_dropped: u64,
    /// Every repair made, as `(file, offset, reason)`.
    pub repairs: Vec<(PathBuf, u64, String)>,
    /// Segment files removed: superseded (left by a compaction, cut or
    /// reset interrupted by a crash), or after a torn tail (holding nothing
    /// acknowledged).
    pub segments_removed: Vec<PathBuf>,
    /// Files named like segments whose header does not parse (or names
    /// another segment than the file name does), left out of the log and
    /// renamed aside, never deleted (raftwal cannot prove they
    /// are its own): `(old name, new name)`. A crash that tore a new
    /// segment's header leaves one; delete it once you have looked.
    pub set_aside: Vec<(PathBuf, PathBuf)>,
}
