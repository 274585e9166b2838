//! One log entry: its index, term and bytes.

use prost::bytes::Bytes;

/// One log entry: its Raft index and term and its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// The entry's index (consecutive from the log's first index).
    pub index: u64,
    /// The Raft term in which the entry was created.
    pub term: u64,
    /// The entry's bytes, opaque to the log.
    pub data: Bytes,
}

impl Entry {
    /// An entry from its parts.
    pub fn new(index: u64, term: u64, data: impl Into<Bytes>) -> Entry {
        Entry {
            index,
            term,
            data: data.into(),
        }
    }
}
