//! Rebuilding every group from the records, oldest first: the one replay
//! that an engine's open and a tool's read-only look
//! (`tools::engine`) both run.

use std::path::PathBuf;

use prost::bytes::Bytes;

use super::memtable::{Groups, Replay};
use super::record;
use crate::error::{Damage, Error, Result};
use crate::log::write::record::RecordAt;

/// The groups so far, and what the replay of a reclaimed stream keeps.
pub(crate) struct Replayer {
    groups: Groups,
    replay: Replay,
    /// The last record applied: its segment and data offset.
    last: (u64, u64),
}

impl Replayer {
    /// A replay of a stream whose head was reclaimed (`partial`: its first
    /// index is past 1) or not.
    pub(crate) fn new(partial: bool) -> Replayer {
        Replayer {
            groups: Groups::default(),
            replay: Replay::new(partial),
            last: (0, 0),
        }
    }

    /// Applies the record at `at`; `path` names its segment in an error
    /// (`Damage::Record`, at the offset of what is wrong).
    pub(crate) fn record(
        &mut self,
        at: RecordAt,
        data: &Bytes,
        path: impl Fn() -> PathBuf,
    ) -> Result<()> {
        let bad = |offset: u64, why: String| {
            Error::corruption(Damage::Record, path(), at.data_offset + offset, why)
        };
        let parts = record::parse(data).map_err(|(off, why)| bad(off as u64, why))?;
        self.groups
            .apply(&parts, at, Some(&mut self.replay))
            .map_err(|e| bad(0, format!("record {}: {e}", at.index)))?;
        self.last = (at.sequence, at.data_offset);
        Ok(())
    }

    /// After the last record: the groups, once every group's records reach
    /// its entries. `path_of` names a segment by its sequence in an error.
    pub(crate) fn finish(self, path_of: impl Fn(u64) -> PathBuf) -> Result<Groups> {
        let (sequence, offset) = self.last;
        self.replay
            .finish(&self.groups)
            .map_err(|why| Error::corruption(Damage::Record, path_of(sequence), offset, why))?;
        Ok(self.groups)
    }
}
