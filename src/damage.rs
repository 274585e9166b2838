//! The rules that tell a crash's torn tail from damage, shared by recovery
//! (`Log::open`) and the read-only scan behind `raftwal verify` and
//! `raftwal repair`: what one cuts as a torn tail, the other must call one.

use std::path::Path;

use crate::error::Result;
use crate::frame::{FrameType, HEADER_LEN};
use crate::fs::FileHandle;
use crate::segment::{self, Scanner};

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
    let mut buf = vec![0u8; (file_len.saturating_sub(offset)).min(64 << 10) as usize];
    let mut at = offset;
    while at < file_len {
        let n = (file_len - at).min(buf.len() as u64) as usize;
        if file.read_exact_at(&mut buf[..n], at).is_err() || buf[..n].iter().any(|&b| b != 0) {
            return false;
        }
        at += n as u64;
    }
    true
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
    n == HEADER_LEN && u64::from(u32::from_le_bytes([h[1], h[2], h[3], h[4]])) > max_payload
}

/// Whether a valid frame of segment `sequence` starts anywhere a header of
/// at most 256 bytes could end: the segment held data, so its bad header is
/// damage rather than a creation a crash interrupted.
pub(crate) fn holds_frames(
    file: &dyn FileHandle,
    path: &Path,
    file_len: u64,
    sequence: u64,
    max_payload: u64,
) -> Result<bool> {
    let header = segment::Header {
        sequence,
        first_index: 0,
        len: HEADER_LEN as u64,
        preallocated: 0,
    };
    let mut scanner = Scanner::new(file, path, file_len, &header, max_payload);
    let last = file_len.min((2 * HEADER_LEN + 256) as u64);
    for offset in HEADER_LEN as u64..last {
        if scanner.valid_frame_at(offset)? {
            return Ok(true);
        }
    }
    Ok(false)
}
