//! Read-only inspection of a log directory, for tools: what is on disk, what
//! [`Log::open`](crate::Log::open) would make of it, and where it is damaged,
//! without taking the directory's lock or changing a byte.
//!
//! [`scan_dir`] runs the replay machine `Log::open` runs, reading every
//! frame of every segment (also those a sealed segment's footer would let
//! the open skip) and checking its CRC. Damage is reported as a list of
//! [`Problem`]s, each of the kind that says how the open treats it: a torn
//! tail at the offset where the open cuts the file, damage at the offset
//! its `Error::Corruption` names. [`DirScan::first_index`],
//! [`DirScan::last_index`], [`DirScan::state`] and the entries it reads
//! are those of the log the open keeps: with no problem or only torn
//! tails, the log the default mode opens; after damage, the longest valid
//! prefix, which `RecoveryMode::TolerateAnyCorruption` keeps.
//!
//! A directory that a live [`Log`](crate::Log) is writing can be scanned
//! too; the scan then shows a moment of it, and a frame being written at
//! that moment may show up as a torn tail.
//!
//! ```
//! # fn main() -> raftwal::Result<()> {
//! use raftwal::{Entry, Log, Options};
//! let dir = tempfile::tempdir().unwrap();
//! let log = Log::open(dir.path(), Options::default())?;
//! log.append(&[Entry::new(1, 1, "a"), Entry::new(2, 1, "b")])?;
//! // The log is open (and locked); the scan reads it all the same.
//! let scan = raftwal::tools::inspect::scan_dir(dir.path())?;
//! assert!(scan.is_clean());
//! assert_eq!((scan.first_index, scan.last_index), (1, 2));
//! let entries: Vec<_> = scan.entries(1, 3).collect::<Result<_, _>>()?;
//! assert_eq!(entries[1].data, "b");
//! # Ok(()) }
//! ```

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::bytes::Bytes;
use prost::Message;

use crate::error::{Damage, Error, Result};
use crate::format::frame::{self, FrameHeader, FrameType, HEADER_LEN};
use crate::format::proto;
use crate::format::segment::{self, ENTRY_OVERHEAD};
use crate::fs::{FileHandle, FileSystem, StdFileSystem};
use crate::log::entry::Entry;
use crate::options::RecoveryMode;
use crate::replay;
use crate::replay::chain::SegmentFile;

/// The largest entry a scan accepts by default: the default
/// [`Options::max_entry_size`](crate::Options::max_entry_size).
pub const DEFAULT_MAX_ENTRY_SIZE: u64 = 64 << 20;

pub use crate::replay::{Problem, ProblemKind};

/// One segment file as the scan found it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The file's path.
    pub path: PathBuf,
    /// Its sequence number (from the file name).
    pub sequence: u64,
    /// The first index it may hold (from the file name).
    pub first_index: u64,
    /// The file's length in bytes.
    pub size: u64,
    /// The length the file was preallocated to (0 when it was not, or when
    /// its header is unreadable): zeros below it are unused space.
    pub preallocated: u64,
    /// Where the file's valid frames end: the end of its data (the rest is
    /// zeroed preallocated space), or the offset of its first bad frame.
    pub data_len: u64,
    /// Valid frames read, the header included.
    pub frames: u64,
    /// Entry frames read, the ones later cut by a marker included.
    pub entry_frames: u64,
    /// The first and last index of the entries of this file that are part of
    /// the log, if any.
    pub live: Option<(u64, u64)>,
    /// Whether the file ends with a valid footer and trailer (it was sealed
    /// when the log moved on to a newer segment).
    pub sealed: bool,
    /// Whether its footer or trailer was cut by a crash while it was being
    /// sealed: harmless (the footer is optional), so not a [`Problem`].
    pub torn_seal: bool,
    /// Whether the file is no part of the log: a newer segment's header
    /// names what it continues, and this file is not on that chain (it was
    /// compacted away, cut off by a truncation, or is older than a reset,
    /// and its unlink had not reached the disk). Recovery removes it; its
    /// frames are not read.
    pub superseded: bool,
}

/// Where one entry of the log is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryLoc {
    /// The entry's index.
    pub index: u64,
    /// Its term.
    pub term: u64,
    /// Its segment, a position in [`DirScan::segments`].
    pub segment: usize,
    /// The frame's offset in that file.
    pub offset: u64,
    /// The frame's length, header included.
    pub len: u32,
}

/// The result of [`scan_dir`]: the directory's segments, the log they make
/// up, and every problem found.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DirScan {
    /// The scanned directory.
    pub dir: PathBuf,
    /// Every segment file, by sequence.
    pub segments: Vec<SegmentInfo>,
    /// The log's first index (`last_index + 1` when it is empty).
    pub first_index: u64,
    /// The log's last index.
    pub last_index: u64,
    /// The term of entry `first_index - 1`.
    pub prev_term: u64,
    /// The newest state blob, if one was set.
    pub state: Option<Bytes>,
    /// Every problem, in file order (then by offset). The log described
    /// above is what recovery keeps: under the default mode when every
    /// problem is a torn tail, else under
    /// [`RecoveryMode::TolerateAnyCorruption`].
    /// After damage the log's later files are still checked frame by frame.
    pub problems: Vec<Problem>,
    /// Total bytes of segment files.
    pub bytes: u64,
    /// The log's entries, `first_index..=last_index`.
    entries: Vec<EntryLoc>,
    max_payload: u64,
    fs: Arc<dyn FileSystem>,
}

impl DirScan {
    /// Whether the scan found nothing wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// The file system the scan read.
    pub(crate) fn file_system(&self) -> &Arc<dyn FileSystem> {
        &self.fs
    }

    /// The locations of the log's entries, `first_index..=last_index`.
    pub fn entry_locations(&self) -> &[EntryLoc] {
        &self.entries
    }

    /// Reads entries `lo..hi` (clamped to the log), one `pread` each, the
    /// CRC checked again. Each segment file is opened once, when reached.
    pub fn entries(&self, lo: u64, hi: u64) -> EntryReader<'_> {
        let start = lo.max(self.first_index).saturating_sub(self.first_index);
        let end = hi.saturating_sub(self.first_index);
        let len = self.entries.len() as u64;
        let range = start.min(len) as usize..end.clamp(start.min(len), len) as usize;
        EntryReader {
            scan: self,
            locs: self.entries.get(range).unwrap_or(&[]).iter(),
            open: None,
        }
    }
}

/// An iterator over entries of a [`DirScan`]; see [`DirScan::entries`].
#[derive(Debug)]
pub struct EntryReader<'a> {
    scan: &'a DirScan,
    locs: std::slice::Iter<'a, EntryLoc>,
    open: Option<(usize, Arc<dyn FileHandle>)>,
}

impl Iterator for EntryReader<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        let loc = *self.locs.next()?;
        Some(self.read(loc))
    }
}

impl EntryReader<'_> {
    fn read(&mut self, loc: EntryLoc) -> Result<Entry> {
        let seg = self.scan.segments.get(loc.segment).ok_or_else(|| {
            Error::InvalidArgument(format!("no segment {} in the scan", loc.segment))
        })?;
        let path = &seg.path;
        if self.open.as_ref().map(|o| o.0) != Some(loc.segment) {
            let f = (self.scan.fs)
                .open_read(path)
                .map_err(|e| Error::io("open segment", path, e))?;
            self.open = Some((loc.segment, f));
        }
        let Some((_, file)) = self.open.as_ref() else {
            return Err(Error::InvalidArgument("segment not open".into()));
        };
        let bad = |reason: String| Error::corruption(Damage::Frame, path, loc.offset, reason);
        let len = u64::from(loc.len);
        if len < HEADER_LEN as u64 || len - HEADER_LEN as u64 > self.scan.max_payload {
            return Err(bad(format!("impossible frame length {len}")));
        }
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset)
            .map_err(|e| Error::io("read entry", path, e))?;
        let head: [u8; HEADER_LEN] = buf
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| bad("frame shorter than its header".into()))?;
        let h = FrameHeader::parse(&head);
        let payload = buf.get(HEADER_LEN..).unwrap_or(&[]);
        if FrameType::from_u8(h.ty) != Some(FrameType::Entry) || h.len as usize != payload.len() {
            return Err(bad(format!(
                "expected an entry frame of {len} bytes, found type {} length {} (the file changed since the scan?)",
                h.ty, h.len
            )));
        }
        if !h.verify(frame::salt(seg.sequence), payload) {
            return Err(bad("CRC mismatch on read".into()));
        }
        let e = proto::Entry::decode(payload)
            .map_err(|e| bad(format!("entry does not decode: {e}")))?;
        if e.index != loc.index {
            return Err(bad(format!(
                "frame holds entry {} where {} was expected",
                e.index, loc.index
            )));
        }
        Ok(Entry {
            index: e.index,
            term: e.term,
            data: e.data,
        })
    }
}

/// Scans the log in `dir` read-only, with the default maximum entry size;
/// see the [module documentation](self).
///
/// Errors only when the directory cannot be read ([`Error::Io`]); damage is
/// reported in [`DirScan::problems`]. A directory without segment files
/// gives a scan with no segments.
pub fn scan_dir(dir: &Path) -> Result<DirScan> {
    scan_dir_with(dir, DEFAULT_MAX_ENTRY_SIZE, &mut |_| {})
}

/// [`scan_dir`] for a log whose
/// [`Options::max_entry_size`](crate::Options::max_entry_size) is
/// `max_entry_size`, calling `progress` with the bytes scanned so far (every
/// megabyte or so, and after each segment).
pub fn scan_dir_with(
    dir: &Path,
    max_entry_size: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<DirScan> {
    scan_dir_in(Arc::new(StdFileSystem), dir, max_entry_size, progress)
}

/// [`scan_dir_with`] on the file system `fs` (the one the log was opened
/// with, see [`Options::file_system`](crate::Options::file_system)): every
/// file is opened with [`FileSystem::open_read`], the scan's entries read
/// through `fs` too.
pub fn scan_dir_in(
    fs: Arc<dyn FileSystem>,
    dir: &Path,
    max_entry_size: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<DirScan> {
    let listed = segment::list(&*fs, dir)?;
    let open_file = |path: &Path| {
        fs.open_read(path)
            .map_err(|e| Error::io("open segment", path, e))
    };
    let files = listed
        .into_iter()
        .map(|(seq, first, path)| SegmentFile::read(&open_file, seq, first, path))
        .collect::<Result<Vec<_>>>()?;
    // Progress only ever grows, even when the replay starts over.
    let reported = Cell::new(0);
    let progress = RefCell::new(progress);
    let report = |n: u64| {
        if n > reported.get() {
            reported.set(n);
            (progress.borrow_mut())(n);
        }
    };
    // The log `TolerateAnyCorruption` would keep, every frame checked and
    // every problem recorded as the default mode would judge it.
    let rules = replay::Rules {
        mode: RecoveryMode::TolerateAnyCorruption,
        max_entry_size,
        open: &open_file,
        every_frame: true,
        progress: &report,
    };
    let r = replay::run(&files, &rules)?;
    let bytes = files.iter().map(|f| f.len).sum();
    report(bytes);
    let mut segments: Vec<SegmentInfo> = files
        .iter()
        .zip(&r.seen)
        .map(|(f, seen)| SegmentInfo {
            path: f.path.clone(),
            sequence: f.sequence,
            first_index: f.name_first,
            size: f.len,
            preallocated: seen.preallocated,
            data_len: seen.data_len,
            frames: seen.frames,
            entry_frames: seen.entry_frames,
            live: None,
            sealed: seen.sealed,
            torn_seal: seen.torn_seal,
            superseded: r.superseded.contains(&f.path),
        })
        .collect();
    let ix = &r.ix;
    let (first_index, last_index) = match ix.first_index {
        // Not even the first segment's header was readable.
        0 => (1, 0),
        first => (first, ix.last_index),
    };
    let mut entries = Vec::new();
    for seg in &ix.segments {
        let Some(k) = files.iter().position(|f| f.sequence == seg.sequence) else {
            continue;
        };
        for (index, loc) in (seg.first_index..).zip(&seg.locs) {
            if index < first_index || index > last_index {
                continue;
            }
            entries.push(EntryLoc {
                index,
                term: ix.term_of(index).unwrap_or(0),
                segment: k,
                offset: u64::from(loc.offset),
                len: loc.len,
            });
        }
    }
    for e in &entries {
        if let Some(seg) = segments.get_mut(e.segment) {
            seg.live = Some(match seg.live {
                Some((lo, _)) => (lo, e.index),
                None => (e.index, e.index),
            });
        }
    }
    // In file order, then by offset.
    let mut problems = r.problems.clone();
    let pos = |p: &Problem| files.iter().position(|f| f.path == p.path);
    problems.sort_by_key(|p| (pos(p).unwrap_or(usize::MAX), p.offset));
    problems.dedup();
    Ok(DirScan {
        dir: dir.to_path_buf(),
        segments,
        first_index,
        last_index,
        prev_term: ix.prev_term,
        state: ix.state.as_ref().map(|s| s.0.clone()),
        problems,
        bytes,
        entries,
        max_payload: max_entry_size.saturating_add(ENTRY_OVERHEAD),
        fs,
    })
}

#[cfg(test)]
mod tests;
