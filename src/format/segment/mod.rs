//! Segment files: naming, the header frame, creation, and a chunked frame
//! scanner used by recovery and verification.

mod header;
mod new_files;
mod scan;
#[cfg(test)]
mod tests;

pub use self::header::*;
pub use self::new_files::*;
pub use self::scan::*;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;

use crate::error::{Damage, Error, Result};
use crate::format::frame::{self, FrameHeader, FrameType, HEADER_LEN};
use crate::format::proto;
use crate::fs::{FileHandle, FileSystem};

/// The magic bytes in every segment header.
pub const MAGIC: &[u8; 8] = b"RAFTWAL\0";
/// The on-disk format version this build writes. It reads this one and
/// version 1 (whose headers carry no [`Origin`]).
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this build reads.
pub const OLDEST_VERSION: u32 = 1;
/// The file-name extension of segment files.
pub const EXTENSION: &str = "wal";
/// Bytes an entry frame adds around its data at most: the frame header plus
/// the protobuf keys and varints of index, term and data length.
pub const ENTRY_OVERHEAD: u64 = HEADER_LEN as u64 + 3 + 10 + 10 + 10;

/// `{sequence:016x}-{first_index:016x}.wal`: the sequence makes every file
/// name unique even when a truncated tail is re-created at the same index.
pub fn file_name(sequence: u64, first_index: u64) -> String {
    format!("{sequence:016x}-{first_index:016x}.{EXTENSION}")
}

/// Parses a segment file name into `(sequence, first_index)`.
pub fn parse_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(EXTENSION)?.strip_suffix('.')?;
    let (seq, first) = stem.split_once('-')?;
    if seq.len() != 16 || first.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(seq, 16).ok()?,
        u64::from_str_radix(first, 16).ok()?,
    ))
}

/// Lists the segment files of `dir`, sorted by sequence.
pub fn list(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<(u64, u64, PathBuf)>> {
    let mut out = Vec::new();
    for path in fs
        .list(dir)
        .map_err(|e| Error::io("read directory", dir, e))?
    {
        let name = path.file_name().and_then(|n| n.to_str());
        if let Some((seq, first)) = name.and_then(parse_file_name) {
            out.push((seq, first, path));
        }
    }
    // By sequence; the first index orders a damaged directory's duplicates.
    out.sort_by_key(|s| (s.0, s.1));
    Ok(out)
}

/// Makes creations, renames and removals in `dir` durable.
pub fn sync_dir(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    fs.sync_dir(dir)
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// The file-name extension of prepared (preallocated, not yet used)
/// segment files.
pub const PREPARED_EXTENSION: &str = "prep";

/// Opens an existing segment for reading and writing.
pub fn open(fs: &dyn FileSystem, path: &Path) -> Result<Arc<dyn FileHandle>> {
    fs.open(path)
        .map_err(|e| Error::io("open segment", path, e))
}
