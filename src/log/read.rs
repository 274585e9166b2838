//! The read path of [`Log`](crate::Log): `get_entry` and `entries`, and the generic
//! `read_with` that `RaftLogStore::entries` uses to go from index locations
//! to raft entries without an intermediate `Vec<Entry>`.
//!
//! Every frame read is verified (type, length, salted CRC, index) before its
//! payload is decoded. A lone frame is read into a buffer of exactly its
//! length, and the entry's data is that buffer advanced past the frame's
//! header and keys: no copy and no allocation beyond the buffer itself. A
//! span of frames is read with one `pread` into a shared buffer that the
//! entries slice.

use std::ops::Range;
use std::path::PathBuf;

use prost::bytes::{Buf, Bytes};
use prost::encoding::decode_varint;
use prost::Message;

use crate::error::{Damage, Error, Result};
use crate::format::frame::{self, FrameHeader, FrameType, HEADER_LEN};
use crate::format::index::check_range;
use crate::format::index::{Index, Loc, Segment};
use crate::format::proto;
use crate::format::segment::ENTRY_OVERHEAD;
use crate::log::entry::Entry;
use crate::log::inner::Inner;
use crate::log::write::record::RecordAt;

impl Inner {
    /// See [`Log::get_entry`](crate::Log::get_entry).
    pub(crate) fn get_entry(&self, index: u64) -> Result<Entry> {
        let ix = self.index.read();
        check_range(&ix, index)?;
        let (seg, loc) = ix
            .locate(index)
            .ok_or_else(|| self.internal(format!("index has no location for {index}")))?;
        let max = self.opts.max_entry_size;
        self.written_out(seg, loc.offset, loc.len)?;
        let (term, data) = read_one(seg, loc, index, max, "read entry")?;
        Ok(Entry { index, term, data })
    }

    /// See [`Log::entries`](crate::Log::entries).
    pub(crate) fn entries(&self, lo: u64, hi: u64, max_bytes: Option<u64>) -> Result<Vec<Entry>> {
        self.read_with(lo, hi, max_bytes, |index, term, data| {
            Ok(Entry { index, term, data })
        })
    }

    /// [`Log::entries`](crate::Log::entries), each entry handed to `make` as `(index, term, data)`
    /// and the results collected: the same checks, limits and errors.
    pub(crate) fn read_with<T>(
        &self,
        lo: u64,
        hi: u64,
        max_bytes: Option<u64>,
        mut make: impl FnMut(u64, u64, Bytes) -> Result<T>,
    ) -> Result<Vec<T>> {
        let ix = self.index.read();
        check_window(&ix, lo, hi)?;
        let max_entry = self.opts.max_entry_size;
        if hi - lo == 1 {
            // One entry (a Raft node's most common read): its own buffer.
            let (seg, loc) = ix
                .locate(lo)
                .ok_or_else(|| self.internal(format!("no segment holds {lo}")))?;
            self.written_out(seg, loc.offset, loc.len)?;
            let (term, data) = read_one(seg, loc, lo, max_entry, "read entries")?;
            return Ok(vec![make(lo, term, data)?]);
        }
        let mut out = Vec::with_capacity((hi - lo).min(4096) as usize);
        let max = max_bytes.unwrap_or(u64::MAX);
        // A lower bound of the data bytes read so far: an entry frame's data
        // is at least its length less ENTRY_OVERHEAD, so stopping when the
        // bound passes `max` never drops an entry the exact rule keeps.
        let mut at_least = 0u64;
        // The exact rule: at least one entry, then while the data fits.
        let mut size = 0u64;
        let mut next = lo;
        while next < hi {
            let k = ix
                .segment_pos(next)
                .ok_or_else(|| self.internal(format!("no segment holds {next}")))?;
            let seg = &ix.segments[k];
            let end = hi.min(seg.end_index());
            let mut stop = next;
            let (mut min_off, mut max_end) = (u64::MAX, 0u64);
            let mut full = false;
            while stop < end {
                let loc = seg.locs[(stop - seg.first_index) as usize];
                at_least =
                    at_least.saturating_add(u64::from(loc.len).saturating_sub(ENTRY_OVERHEAD));
                if stop > lo && at_least > max {
                    full = true;
                    break;
                }
                min_off = min_off.min(u64::from(loc.offset));
                max_end = max_end.max(u64::from(loc.offset) + u64::from(loc.len));
                stop += 1;
            }
            if stop > next {
                // One pread for this segment's part of the range.
                self.written_out(seg, min_off, max_end - min_off)?;
                let mut buf = zeroed((max_end - min_off) as usize);
                seg.file
                    .read_exact_at(&mut buf, min_off)
                    .map_err(|e| Error::io("read entries", &seg.path, e))?;
                let buf = Bytes::from(buf);
                for i in next..stop {
                    let loc = seg.locs[(i - seg.first_index) as usize];
                    let at = (u64::from(loc.offset) - min_off) as usize;
                    let frame = &buf[at..at + loc.len as usize];
                    let (term, data) = match verify(seg, loc, frame, i, max_entry)? {
                        Data::At(r) => (r.term, buf.slice(at + r.data.start..at + r.data.end)),
                        Data::Decoded(term, data) => (term, data),
                    };
                    size = size.saturating_add(data.len() as u64);
                    if i > lo && max_bytes.is_some() && size > max {
                        full = true;
                        break;
                    }
                    out.push(make(i, term, data)?);
                }
            }
            next = stop;
            if full {
                break;
            }
        }
        Ok(out)
    }

    /// Reads `len` bytes at `offset` of segment `sequence` (a part of an
    /// engine record), writing staged batches out first when they hold
    /// them. `None` when the log holds no such segment (it was compacted
    /// away).
    pub(crate) fn read_at(
        &self,
        sequence: u64,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<u8>>> {
        let ix = self.index.read();
        let k = ix.segments.partition_point(|s| s.sequence < sequence);
        let Some(seg) = ix.segments.get(k).filter(|s| s.sequence == sequence) else {
            return Ok(None);
        };
        if offset.saturating_add(len as u64) > seg.len {
            return Err(self.internal(format!(
                "read of {len} bytes at {offset} past the data of {}",
                seg.path.display()
            )));
        }
        self.written_out(seg, offset, len as u64)?;
        let mut buf = zeroed(len);
        seg.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io("read record", &seg.path, e))?;
        Ok(Some(buf))
    }

    /// The sequence number of the active (newest) segment.
    pub(crate) fn active_sequence(&self) -> u64 {
        self.index.read().segments.back().map_or(0, |s| s.sequence)
    }

    /// The first index segment `sequence` holds (or would hold), if the
    /// log holds that segment.
    pub(crate) fn first_index_of(&self, sequence: u64) -> Option<u64> {
        let ix = self.index.read();
        let k = ix.segments.partition_point(|s| s.sequence < sequence);
        ix.segments
            .get(k)
            .filter(|s| s.sequence == sequence)
            .map(|s| s.first_index.max(ix.first_index))
    }

    /// The path of segment `sequence`, if the log holds it (for errors).
    pub(crate) fn segment_path(&self, sequence: u64) -> Option<PathBuf> {
        let ix = self.index.read();
        let k = ix.segments.partition_point(|s| s.sequence < sequence);
        ix.segments
            .get(k)
            .filter(|s| s.sequence == sequence)
            .map(|s| s.path.clone())
    }

    /// The records `lo..hi` of the stream (an engine's, read at open), as
    /// many as fit in about `max_bytes` (at least one), each with where it
    /// is. Nothing may write meanwhile.
    pub(crate) fn read_records(
        &self,
        lo: u64,
        hi: u64,
        max_bytes: u64,
    ) -> Result<Vec<(RecordAt, Bytes)>> {
        let data = self.read_with(lo, hi, Some(max_bytes), |index, _, data| Ok((index, data)))?;
        let ix = self.index.read();
        data.into_iter()
            .map(|(index, data)| {
                let (seg, loc) = ix
                    .locate(index)
                    .ok_or_else(|| self.internal(format!("record {index} has no location")))?;
                let end = u64::from(loc.offset) + u64::from(loc.len);
                let at = RecordAt {
                    index,
                    sequence: seg.sequence,
                    data_offset: end - data.len() as u64,
                };
                Ok((at, data))
            })
            .collect()
    }

    /// Makes sure bytes `offset..offset + len` of `seg` are in the file
    /// before they are read: they may still be staged by `submit`.
    fn written_out(
        &self,
        seg: &Segment,
        offset: impl Into<u64>,
        len: impl Into<u64>,
    ) -> Result<()> {
        let end = offset.into() + len.into();
        match self.durability.stage.is_written(seg.sequence, end) {
            true => Ok(()),
            false => self.durability.flush_staged(),
        }
    }
}

/// Errors for a window `lo..hi` that is inverted or not inside the log.
fn check_window(ix: &Index, lo: u64, hi: u64) -> Result<()> {
    if lo > hi {
        return Err(Error::InvalidArgument(format!(
            "range {lo}..{hi} is inverted"
        )));
    }
    if lo < ix.first_index {
        return Err(Error::Compacted {
            index: lo,
            first_index: ix.first_index,
        });
    }
    if hi > ix.last_index + 1 {
        return Err(Error::Unavailable {
            index: hi - 1,
            last_index: ix.last_index,
        });
    }
    Ok(())
}

/// Reads and verifies the frame of entry `index` at `loc` in `seg`, into a
/// buffer of its own; returns the entry's term and data. `op` names the
/// read in an I/O error.
fn read_one(
    seg: &Segment,
    loc: Loc,
    index: u64,
    max: u64,
    op: &'static str,
) -> Result<(u64, Bytes)> {
    let mut buf = zeroed(loc.len as usize);
    seg.file
        .read_exact_at(&mut buf, u64::from(loc.offset))
        .map_err(|e| Error::io(op, &seg.path, e))?;
    Ok(match verify(seg, loc, &buf, index, max)? {
        Data::At(r) => (r.term, data_of(buf, r.data)),
        Data::Decoded(term, data) => (term, data),
    })
}

/// A zero-filled buffer of exactly `len` bytes, to read into. A small one
/// comes from `malloc` and is cleared with `memset`: glibc's `calloc`
/// (`vec![0; len]`) bypasses its per-thread cache (callgrind: ≈ 420 fewer
/// instructions per single-entry read, of ≈ 2,300). A big one comes from `calloc`,
/// whose fresh pages need no clearing.
#[allow(clippy::slow_vector_initialization)] // deliberate: see above
fn zeroed(len: usize) -> Vec<u8> {
    const SMALL: usize = 64 << 10;
    if len > SMALL {
        return vec![0; len];
    }
    let mut buf = Vec::with_capacity(len);
    buf.resize(len, 0);
    buf
}

/// `buf[range]` as `Bytes`. When the range ends the buffer (as the data of
/// every entry frame raftwal writes does), the buffer itself, advanced: no
/// allocation and no reference count.
pub(crate) fn data_of(buf: Vec<u8>, range: Range<usize>) -> Bytes {
    let mut b = Bytes::from(buf);
    if range.end == b.len() && range.start <= range.end {
        b.advance(range.start);
        b
    } else {
        b.slice(range)
    }
}

/// Where an entry frame's data lies, relative to the frame's start.
struct Located {
    term: u64,
    data: Range<usize>,
}

/// A verified entry frame's term and data.
enum Data {
    /// Found by the fast decoder: the data is in the frame.
    At(Located),
    /// Decoded by prost (a frame the fast decoder does not expect).
    Decoded(u64, Bytes),
}

/// Verifies the entry frame `frame` read from `loc` in `seg` (type, length,
/// limit, salted CRC, index) and finds its term and data.
fn verify(seg: &Segment, loc: Loc, frame: &[u8], index: u64, max: u64) -> Result<Data> {
    let offset = u64::from(loc.offset);
    let bad = |reason: String| Error::corruption(Damage::Frame, &seg.path, offset, reason);
    let head: [u8; HEADER_LEN] = frame
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| bad("frame shorter than its header".into()))?;
    let h = FrameHeader::parse(&head);
    if FrameType::from_u8(h.ty) != Some(FrameType::Entry)
        || h.len as usize != frame.len() - HEADER_LEN
    {
        return Err(bad(format!(
            "expected an entry frame of {} bytes, found type {} length {}",
            loc.len, h.ty, h.len
        )));
    }
    if u64::from(h.len) > max + ENTRY_OVERHEAD {
        return Err(bad(format!("frame length {} exceeds the limit", h.len)));
    }
    let payload = &frame[HEADER_LEN..];
    if !h.verify(frame::salt(seg.sequence), payload) {
        return Err(bad("CRC mismatch on read".into()));
    }
    let (found, data) = match scan_entry(payload) {
        Some((found, term, r)) => (
            found,
            Data::At(Located {
                term,
                data: HEADER_LEN + r.start..HEADER_LEN + r.end,
            }),
        ),
        None => {
            let e = proto::Entry::decode(payload)
                .map_err(|e| bad(format!("entry does not decode: {e}")))?;
            (e.index, Data::Decoded(e.term, e.data))
        }
    };
    if found != index {
        return Err(bad(format!(
            "frame holds entry {found} where {index} was expected"
        )));
    }
    Ok(data)
}

/// Decodes a `proto::Entry` payload as prost writes it (fields `index = 1`,
/// `term = 2`, `data = 3`, defaults omitted): `(index, term, data range)`.
/// `None` for anything else (the caller falls back to prost).
fn scan_entry(payload: &[u8]) -> Option<(u64, u64, Range<usize>)> {
    let (mut index, mut term, mut data) = (0, 0, 0..0);
    let mut buf = payload;
    while !buf.is_empty() {
        match decode_varint(&mut buf).ok()? {
            0x08 => index = decode_varint(&mut buf).ok()?,
            0x10 => term = decode_varint(&mut buf).ok()?,
            0x1a => {
                let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
                let rest = buf.get(len..)?;
                let start = payload.len() - buf.len();
                data = start..start + len;
                buf = rest;
            }
            _ => return None,
        }
    }
    Some((index, term, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_entry_reads_what_prost_writes() {
        for (index, term, data) in [
            (1u64, 1u64, &b"abc"[..]),
            (u64::MAX, 0, b""),
            (300, 7, &[5u8; 300][..]),
        ] {
            let e = proto::Entry {
                index,
                term,
                data: Bytes::copy_from_slice(data),
            };
            let bytes = e.encode_to_vec();
            let (i, t, r) = scan_entry(&bytes).unwrap();
            assert_eq!((i, t, &bytes[r]), (index, term, data));
        }
        // An unknown field, and a length past the end: left to prost.
        assert_eq!(scan_entry(&[0x20, 1]), None);
        assert_eq!(scan_entry(&[0x1a, 5, 1]), None);
    }

    #[test]
    fn data_of_shares_the_buffer_or_slices_it() {
        assert_eq!(data_of(b"headdata".to_vec(), 4..8), "data");
        assert_eq!(data_of(b"headdatatail".to_vec(), 4..8), "data");
        assert_eq!(data_of(b"head".to_vec(), 4..4), "");
        assert_eq!(data_of(b"head".to_vec(), 0..0), "");
    }
}
