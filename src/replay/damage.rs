//! The rules that tell a crash's torn tail from damage, shared by recovery
//! (`Log::open`) and the read-only scan behind `raftwal verify` and
//! `raftwal repair`: what one cuts as a torn tail, the other must call one.
//!
//! A bad frame can be a crash's torn tail only where writes may have been
//! unsynced: in the last segment, or in an earlier one when no later
//! segment holds a write marked `PRIOR_SYNCED` (a roll does not sync the
//! segment it leaves; until a sync round or the sealer has made it durable,
//! no later write is so marked). See [`synced_write_in`].

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::frame::{FrameHeader, FrameType, HEADER_LEN};
use crate::format::segment::{self, Scanner};
use crate::fs::FileHandle;

/// Whether the bad frame at `offset` is a footer or trailer torn by a crash
/// while the segment was being sealed: it starts with a footer or trailer
/// type byte, or everything from it to the end of the file is zeros (the
/// sealer's write, or the length it set, reached the disk but its bytes did
/// not).
pub(crate) fn is_torn_seal(file: &dyn FileHandle, offset: u64, file_len: u64) -> bool {
    let mut ty = [0u8; 1];
    if file.read_exact_at(&mut ty, offset).is_err() {
        return false;
    }
    if matches!(
        FrameType::from_u8(ty[0]),
        Some(FrameType::Footer | FrameType::Trailer)
    ) {
        return true;
    }
    segment::zeros_from(file, offset, file_len)
}

/// Whether the bad frame at `offset` is damage that no crash leaves: a
/// torn write keeps a prefix of real frames and zeros, so a type byte that
/// is neither zero nor a data frame's, or a length beyond the limit, is
/// never a torn tail.
pub(crate) fn is_damage(
    file: &dyn FileHandle,
    offset: u64,
    file_len: u64,
    max_payload: u64,
) -> bool {
    let n = file_len.saturating_sub(offset).min(HEADER_LEN as u64) as usize;
    let mut h = [0u8; HEADER_LEN];
    if n == 0 || file.read_exact_at(&mut h[..n], offset).is_err() {
        return false;
    }
    let ty = h[0];
    if ty != 0 && !matches!(FrameType::from_u8(ty), Some(t) if t != FrameType::Header) {
        return true;
    }
    n == HEADER_LEN && u64::from(FrameHeader::parse(&h).len) > max_payload
}

/// Whether a segment whose header does not verify is a creation a crash
/// interrupted (so it, and every segment after it, may go) rather than
/// damage. A roll neither syncs the new segment's header nor the directory
/// before writes land behind it; the header counts as an unsynced write, so
/// no write after it is marked `PRIOR_SYNCED` until a sync made it durable.
/// Hence it is torn when no valid write in this segment (from its first
/// valid frame within reach of the header, see [`first_frame`]) nor in any
/// later one (`later`) is so marked. Frames the header's loss hides beyond
/// that reach are not looked for: such damage is taken for a tear.
pub(crate) fn is_torn_creation(
    file: &dyn FileHandle,
    path: &Path,
    file_len: u64,
    sequence: u64,
    later: &[&Path],
    open: &dyn Fn(&Path) -> Result<Arc<dyn FileHandle>>,
    max_payload: u64,
) -> Result<bool> {
    if let Some(first) = first_frame(file, path, file_len, sequence, max_payload)? {
        let header = segment::Header {
            sequence,
            first_index: 0,
            len: first,
            preallocated: 0,
            origin: segment::Origin::Legacy,
        };
        let mut scanner = Scanner::new(file, path, file_len, &header, max_payload);
        if scanner.synced_write_from(first)? {
            return Ok(false);
        }
    }
    Ok(!synced_write_in(open, later, max_payload)?)
}

/// The offset of the first valid frame of segment `sequence` where a
/// header of at most 256 bytes could end, if any.
fn first_frame(
    file: &dyn FileHandle,
    path: &Path,
    file_len: u64,
    sequence: u64,
    max_payload: u64,
) -> Result<Option<u64>> {
    let header = segment::Header {
        sequence,
        first_index: 0,
        len: HEADER_LEN as u64,
        preallocated: 0,
        origin: segment::Origin::Legacy,
    };
    let mut scanner = Scanner::new(file, path, file_len, &header, max_payload);
    let last = file_len.min((2 * HEADER_LEN + 256) as u64);
    for offset in HEADER_LEN as u64..last {
        if scanner.valid_frame_at(offset)? {
            return Ok(Some(offset));
        }
    }
    Ok(None)
}

/// Whether any of the segment files `paths` holds a valid write marked
/// `PRIOR_SYNCED` (issued when every earlier write was durable). When none
/// does, a torn tail in the segment before them may be a crash's doing: the
/// roll that started them did not sync it, and nothing proves it was synced
/// since. A file whose header is unreadable is skipped; each file is read up
/// to its first bad frame.
pub(crate) fn synced_write_in(
    open: &dyn Fn(&Path) -> Result<Arc<dyn FileHandle>>,
    paths: &[&Path],
    max_payload: u64,
) -> Result<bool> {
    for &path in paths {
        let file = open(path)?;
        let file_len = file.len().map_err(|e| Error::io("stat segment", path, e))?;
        let header = match segment::read_header(&*file, path, file_len) {
            Ok(h) => h,
            Err(Error::Corruption { .. }) => continue,
            Err(e) => return Err(e),
        };
        let mut scanner = Scanner::new(&*file, path, file_len, &header, max_payload);
        if scanner.synced_write_from(header.len)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a bad frame that a crash could have left by its shape
/// (`shape_torn`: not a frame whose CRC verifies, not [`is_damage`], not
/// followed in its segment by a `PRIOR_SYNCED` write) is a torn tail, given
/// the segment files after its own (`later`): in the last segment it is;
/// in an earlier one only when no later segment holds a `PRIOR_SYNCED`
/// write either (then nothing after it was acknowledged durable: any sync
/// round covering a later write would have synced this segment first).
pub(crate) fn is_torn_tail(
    shape_torn: bool,
    later: &[&Path],
    open: &dyn Fn(&Path) -> Result<Arc<dyn FileHandle>>,
    max_payload: u64,
) -> Result<bool> {
    if !shape_torn {
        return Ok(false);
    }
    if later.is_empty() {
        return Ok(true);
    }
    Ok(!synced_write_in(open, later, max_payload)?)
}

/// Whether a segment that does not continue the log (its first index is
/// `first_index`, past `next_index`, the index after the log read so far)
/// and holds frames after its header shows that the tail of the segment
/// before it was lost in a crash: that segment was not sealed (a sealer
/// syncs the data before it writes a footer), and neither this segment nor
/// any after it (`from_here`) holds a `PRIOR_SYNCED` write. A roll names
/// the new segment after the last index written, synced or not, so a crash
/// that loses whole writes at the end of the old segment leaves exactly
/// this. A segment opened by a reset or a cut below the active segment
/// starts with a `PRIOR_SYNCED` marker, so it is never taken for one.
pub(crate) fn is_lost_tail(
    prev_sealed: bool,
    first_index: u64,
    next_index: u64,
    from_here: &[&Path],
    open: &dyn Fn(&Path) -> Result<Arc<dyn FileHandle>>,
    max_payload: u64,
) -> Result<bool> {
    if prev_sealed || first_index <= next_index {
        return Ok(false);
    }
    Ok(!synced_write_in(open, from_here, max_payload)?)
}
