//! raft-rs's `Storage` over the store, and raftwal's errors as raft-rs's.

use super::*;

/// Decodes log entry `index` (of `term`), whose data is `data`, into a raft
/// entry that keeps `data`'s bytes.
pub(super) fn decode_entry(dir: &Path, index: u64, term: u64, data: Bytes) -> Result<Entry> {
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
