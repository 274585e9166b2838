//! [`WriteBatch`]: entries, an optional cut and an optional state blob,
//! written with one `write` and made durable with one `fdatasync`.

use prost::bytes::Bytes;

use crate::error::{Error, Result};
use crate::format::frame::{self, HEADER_LEN};

/// One entry of a batch, as the index will record it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pending {
    pub index: u64,
    pub term: u64,
    /// Offset of the frame in the batch buffer.
    pub at: u32,
    /// The frame's length.
    pub len: u32,
}

/// A group of changes written with one `write` and made durable with one
/// `fdatasync`, atomically: after a crash the log holds all of it or none
/// of it. (Its last frame carries an end-of-write mark, and recovery keeps a
/// write only once that frame is on disk; see `docs/FORMAT.md`.)
///
/// Entries are encoded into the batch's buffer as they are added (before any
/// lock is taken); [`Log::write`](crate::Log::write) only seals their CRCs for
/// the segment they land in and issues one `write`. A batch can be
/// [`clear`](WriteBatch::clear)ed and reused to keep its buffers.
///
/// ```
/// # fn main() -> raftwal::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let log = raftwal::Log::open(dir.path(), raftwal::Options::default())?;
/// let mut batch = raftwal::WriteBatch::new();
/// batch.push(1, 1, b"first")?;
/// batch.push(2, 1, b"second")?;
/// batch.set_state(&b"vote=a"[..]);
/// log.write(&mut batch)?;
/// assert_eq!(log.last_index(), 2);
///
/// // A conflicting suffix is cut and replaced in one write and one fsync.
/// let mut batch = raftwal::WriteBatch::new();
/// batch.truncate_from(2);
/// batch.push(2, 2, b"second, term 2")?;
/// log.write(&mut batch)?;
/// assert_eq!(log.term(2)?, 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct WriteBatch {
    pub(crate) buf: Vec<u8>,
    pub(crate) entries: Vec<Pending>,
    pub(crate) truncate_from: Option<u64>,
    pub(crate) state: Option<Bytes>,
    max_entry_size: Option<u64>,
    max_data: u64,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.entries.clear();
        self.truncate_from = None;
        self.state = None;
        self.max_data = 0;
    }

    /// Whether the batch holds nothing to write.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.truncate_from.is_none() && self.state.is_none()
    }

    /// The number of entries in the batch.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The bytes of encoded entry frames in the batch.
    pub fn encoded_len(&self) -> usize {
        self.buf.len()
    }

    /// Limits entry data to `max` bytes (the log's
    /// [`Options::max_entry_size`](crate::Options::max_entry_size)); `push`
    /// then rejects larger entries at once. `Log::write` checks again.
    pub fn set_max_entry_size(&mut self, max: u64) {
        self.max_entry_size = Some(max);
    }

    /// Discards the log's entries from `index` on before this batch's
    /// entries are added; the first entry of the batch must then be `index`.
    pub fn truncate_from(&mut self, index: u64) {
        self.truncate_from = Some(index);
    }

    /// Sets the state blob written with this batch (the last call wins).
    pub fn set_state(&mut self, state: impl Into<Bytes>) {
        self.state = Some(state.into());
    }

    /// The index the next pushed entry must have, if any entry was pushed.
    pub fn next_index(&self) -> Option<u64> {
        self.entries.last().map(|e| e.index + 1)
    }

    /// Adds an entry. Indexes within a batch must be consecutive; 0 and
    /// `u64::MAX` are reserved ([`Error::InvalidArgument`]).
    pub fn push(&mut self, index: u64, term: u64, data: &[u8]) -> Result<()> {
        self.push_with(index, term, data.len(), |buf| buf.extend_from_slice(data))
    }

    /// Adds an entry whose `data_len` bytes of data are written by `fill`
    /// straight into the batch buffer (so an encoded message needs no
    /// intermediate allocation). `fill` must append exactly `data_len` bytes.
    pub fn push_with(
        &mut self,
        index: u64,
        term: u64,
        data_len: usize,
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> Result<()> {
        // 0 is "no entry"; u64::MAX would leave `last_index + 1` with no
        // value, so the log could not continue after it.
        if index == 0 || index == u64::MAX {
            return Err(Error::InvalidArgument(format!(
                "entry index {index} is reserved"
            )));
        }
        if let Some(next) = self.next_index() {
            if index != next {
                return Err(Error::NonContiguous {
                    got: index,
                    last_index: next - 1,
                });
            }
        }
        if let Some(max) = self.max_entry_size {
            if data_len as u64 > max {
                return Err(Error::EntryTooLarge {
                    len: data_len as u64,
                    max,
                });
            }
        }
        let at = self.buf.len();
        let before_data =
            at + HEADER_LEN + frame::entry_payload_len(index, term, data_len) - data_len;
        frame::encode_entry_with(&mut self.buf, index, term, data_len, fill);
        let len = self.buf.len() - at;
        let problem = if self.buf.len() - before_data != data_len {
            Some(format!(
                "push_with: fill wrote {} bytes where data_len said {data_len}",
                self.buf.len() - before_data
            ))
        } else if self.buf.len() > u32::MAX as usize {
            Some("a batch cannot exceed 4 GiB".to_string())
        } else {
            None
        };
        if let Some(msg) = problem {
            self.buf.truncate(at);
            return Err(Error::InvalidArgument(msg));
        }
        self.max_data = self.max_data.max(data_len as u64);
        self.entries.push(Pending {
            index,
            term,
            at: at as u32,
            len: len as u32,
        });
        Ok(())
    }

    /// The largest data length among the batch's entries (checked by the log
    /// against its limit).
    pub(crate) fn max_data_len(&self) -> u64 {
        self.max_data
    }
}
