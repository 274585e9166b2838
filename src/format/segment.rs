//! Segment files: naming, the header frame, creation, and a chunked frame
//! scanner used by recovery and verification.

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

/// Where a segment's predecessor ended when the segment was created: its
/// sequence number, and the offset just past its last write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// The predecessor's sequence number.
    pub sequence: u64,
    /// The offset just past the predecessor's last write (its data end).
    pub end: u64,
    /// Whether every write before the segment, and every segment's name,
    /// was durable when it was created: then no crash can make the
    /// predecessor missing or shorter, only damage can.
    pub synced: bool,
}

/// How a segment came to be, and which segment it continues: the chain of
/// these links tells recovery which files make up the log and that none of
/// their writes went missing (see `docs/FORMAT.md`, "Continuity").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A version-1 header, which names no predecessor: the segment
    /// continues the one before it by sequence.
    Legacy,
    /// The log rolled to it from the active segment the link names.
    Roll(Link),
    /// The first segment of a log: nothing before it is part of the log.
    First,
    /// A cut below the active segment: its first write is a truncation
    /// marker at its first index, and it continues `prev`, the newest
    /// segment holding entries below the cut (`None` when the cut removed
    /// every entry). Files between the two are superseded.
    Cut(Option<Link>),
    /// A reset: its first write is a reset marker, and nothing before it is
    /// part of the log.
    Reset,
}

impl Origin {
    /// The segment this one continues, if it names one.
    pub fn link(self) -> Option<Link> {
        match self {
            Origin::Roll(l) | Origin::Cut(Some(l)) => Some(l),
            _ => None,
        }
    }

    /// Whether the segment's first write must open it with a marker (a
    /// truncation or a reset), written and synced before the file got its
    /// name.
    pub fn opens_with_marker(self) -> bool {
        matches!(self, Origin::Cut(_) | Origin::Reset)
    }

    fn to_proto(self) -> (proto::Origin, u64, u64, bool) {
        let link = self
            .link()
            .map_or((0, 0, false), |l| (l.sequence, l.end, l.synced));
        let kind = match self {
            Origin::Legacy => proto::Origin::Unspecified,
            Origin::Roll(_) => proto::Origin::Roll,
            Origin::First => proto::Origin::First,
            Origin::Cut(_) => proto::Origin::Cut,
            Origin::Reset => proto::Origin::Reset,
        };
        (kind, link.0, link.1, link.2)
    }

    /// The origin a version-2 header states, checked against the
    /// segment's own sequence number and header length; `Err` names what
    /// is impossible.
    fn from_proto(p: &proto::SegmentHeader) -> std::result::Result<Origin, String> {
        let link = (p.prev_sequence != 0).then_some(Link {
            sequence: p.prev_sequence,
            end: p.prev_end,
            synced: p.prev_synced,
        });
        if let Some(l) = link {
            if l.sequence >= p.sequence {
                return Err(format!(
                    "the header names segment {} as its predecessor, not older than itself",
                    l.sequence
                ));
            }
            // Every segment's data starts after its header.
            if l.end < HEADER_LEN as u64 {
                return Err(format!(
                    "the header says its predecessor ended at offset {}, inside that one's header",
                    l.end
                ));
            }
        } else if p.prev_end != 0 || p.prev_synced {
            return Err("the header describes a predecessor but names none".into());
        }
        let kind = proto::Origin::try_from(p.origin)
            .map_err(|_| format!("unknown segment origin {}", p.origin))?;
        match (kind, link) {
            (proto::Origin::Roll, Some(l)) => Ok(Origin::Roll(l)),
            (proto::Origin::Cut, l) => Ok(Origin::Cut(l)),
            (proto::Origin::First, None) => Ok(Origin::First),
            (proto::Origin::Reset, None) => Ok(Origin::Reset),
            (proto::Origin::Unspecified, _) => {
                Err("a version-2 header must say how the segment came to be".into())
            }
            (kind, _) => Err(format!(
                "a segment of origin {kind:?} cannot have that predecessor"
            )),
        }
    }
}

/// Encodes the header frame of a segment (its CRC seed is 0: the header
/// carries the sequence that salts every later frame). [`Origin::Legacy`]
/// writes a version-1 header (for tests of the old format); anything else a
/// version-2 header.
pub fn encode_header(
    buf: &mut Vec<u8>,
    sequence: u64,
    first_index: u64,
    preallocated: u64,
    origin: Origin,
) -> usize {
    let (kind, prev_sequence, prev_end, prev_synced) = origin.to_proto();
    let header = proto::SegmentHeader {
        magic: MAGIC.to_vec().into(),
        version: match origin {
            Origin::Legacy => OLDEST_VERSION,
            _ => FORMAT_VERSION,
        },
        sequence,
        first_index,
        preallocated,
        origin: kind as i32,
        prev_sequence,
        prev_end,
        prev_synced,
    };
    frame::encode_message(buf, FrameType::Header, 0, &header)
}

/// A segment file opened for writing.
#[derive(Debug)]
pub struct Created {
    /// The open file.
    pub file: Arc<dyn FileHandle>,
    /// Its path.
    pub path: PathBuf,
    /// The length of its header frame: where data starts.
    pub header_len: u64,
    /// The length it was preallocated to (0 when not).
    pub preallocated: u64,
}

/// Marks the names of prepared files made on the spot (by the writer or
/// recovery, not by the background preparer), so the two never clash.
pub(crate) const ON_THE_SPOT: u64 = 1 << 63;

/// Creates segment `sequence` in `dir` holding only its header, and syncs
/// the file. When `prepared` names a prepared file (see [`prepare`]), that
/// file is used: its header is written and synced, then it is renamed into
/// place. The caller syncs the directory.
pub fn create(
    fs: &dyn FileSystem,
    dir: &Path,
    sequence: u64,
    first_index: u64,
    prepared: Option<PathBuf>,
    origin: Origin,
) -> Result<Created> {
    create_with(fs, dir, sequence, first_index, prepared, origin, None, true)
}

/// Like [`create`], but the header is not synced: a roll leaves that, and
/// the directory fsync, to the next sync round. A crash may then leave the
/// segment with a torn header (recovery's "torn creation") or its frames in
/// a prepared file that was never renamed (not adopted: see
/// [`pristine_len`]).
pub fn create_unsynced(
    fs: &dyn FileSystem,
    dir: &Path,
    sequence: u64,
    first_index: u64,
    prepared: Option<PathBuf>,
    origin: Origin,
) -> Result<Created> {
    create_with(
        fs,
        dir,
        sequence,
        first_index,
        prepared,
        origin,
        None,
        false,
    )
}

/// Creates segment `sequence` holding its header and `first_write` (the
/// marker write that opens a cut or a reset, already sealed for this
/// segment), both synced *before* the file gets its name: under its
/// segment name the file never exists without that write. The file is the
/// prepared one when given, else a new file under a prepared file's name
/// (which recovery removes, since it does not hold only zeros). The caller
/// syncs the directory.
pub fn create_opened(
    fs: &dyn FileSystem,
    dir: &Path,
    sequence: u64,
    first_index: u64,
    prepared: Option<PathBuf>,
    origin: Origin,
    first_write: &[u8],
) -> Result<Created> {
    create_with(
        fs,
        dir,
        sequence,
        first_index,
        prepared,
        origin,
        Some(first_write),
        true,
    )
}

/// The length of the prepared file `path` if it holds only zeros (it was
/// never rolled into); `None` if it holds anything else or cannot be read.
/// A prepared file a roll took and renamed may keep its old name after a
/// crash (the rename was not synced) with a header and frames in it:
/// reusing it would put stale frames behind new data.
pub fn pristine_len(fs: &dyn FileSystem, path: &Path) -> Option<u64> {
    let file = open(fs, path).ok()?;
    let len = file.len().ok()?;
    zeros_from(&*file, 0, len).then_some(len)
}

/// Whether every byte of `file` from `offset` to `end` reads as zero (a read
/// error counts as no). Reads 1 MiB at a time at most.
pub(crate) fn zeros_from(file: &dyn FileHandle, offset: u64, end: u64) -> bool {
    let mut buf = vec![0u8; end.saturating_sub(offset).min(1 << 20) as usize];
    let mut at = offset;
    while at < end {
        let n = (end - at).min(buf.len() as u64) as usize;
        if file.read_exact_at(&mut buf[..n], at).is_err() || buf[..n].iter().any(|&b| b != 0) {
            return false;
        }
        at += n as u64;
    }
    true
}

#[allow(clippy::too_many_arguments)]
fn create_with(
    fs: &dyn FileSystem,
    dir: &Path,
    sequence: u64,
    first_index: u64,
    prepared: Option<PathBuf>,
    origin: Origin,
    first_write: Option<&[u8]>,
    sync: bool,
) -> Result<Created> {
    let path = dir.join(file_name(sequence, first_index));
    let (file, preallocated, from) = match prepared {
        // A first write goes in before the file has its name: under a
        // prepared file's name, made here when none was prepared.
        None if first_write.is_some() => {
            let temp = prepared_name(dir, ON_THE_SPOT | sequence);
            let file = fs
                .create(&temp)
                .map_err(|e| Error::io("create segment", &temp, e))?;
            (file, 0, Some(temp))
        }
        Some(prep) => {
            let file = open(fs, &prep)?;
            let len = file
                .len()
                .map_err(|e| Error::io("stat prepared segment", &prep, e))?;
            (file, len, Some(prep))
        }
        None => {
            let file = fs
                .create_new(&path)
                .map_err(|e| Error::io("create segment", &path, e))?;
            (file, 0, None)
        }
    };
    let mut buf = Vec::with_capacity(64 + first_write.map_or(0, <[u8]>::len));
    let len = encode_header(&mut buf, sequence, first_index, preallocated, origin);
    if let Some(w) = first_write {
        buf.extend_from_slice(w);
    }
    let at = from.as_deref().unwrap_or(&path);
    // A file made here goes on failure; a prepared file that was written
    // to is no longer pristine, and the next open removes it.
    let undo = |e| {
        match &from {
            None => {
                let _ = fs.remove(&path);
            }
            Some(temp) if first_write.is_some() => {
                let _ = fs.remove(temp);
            }
            Some(_) => {}
        }
        e
    };
    file.write_all_at(&buf, 0)
        .map_err(|e| undo(Error::io("write segment header", at, e)))?;
    if sync {
        file.sync_data()
            .map_err(|e| undo(Error::io("fdatasync", at, e)))?;
    }
    if let Some(prep) = &from {
        fs.rename(prep, &path)
            .map_err(|e| undo(Error::io("rename prepared segment", prep, e)))?;
    }
    Ok(Created {
        file,
        path,
        header_len: len as u64,
        preallocated,
    })
}

/// The path of prepared file `n` in `dir`: `{n:016x}.prep`.
pub(crate) fn prepared_name(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016x}.{PREPARED_EXTENSION}"))
}

/// Prepares a segment file of `len` bytes for later use by [`create`]:
/// `dir/{n:016x}.prep`, space allocated with `fallocate` (so that appends
/// into it never change the file's size and `fdatasync` has no size to
/// write) and synced. Returns its path.
pub fn prepare(fs: &dyn FileSystem, dir: &Path, n: u64, len: u64) -> Result<PathBuf> {
    make_prepared(fs, dir, n, len, |_, _| Ok(()))
}

/// Creates `dir/{n:016x}.prep`, allocates `len` bytes, lets `fill` write
/// into it, then syncs it once; on any failure the file is removed.
fn make_prepared(
    fs: &dyn FileSystem,
    dir: &Path,
    n: u64,
    len: u64,
    fill: impl FnOnce(&dyn FileHandle, &Path) -> Result<()>,
) -> Result<PathBuf> {
    let path = prepared_name(dir, n);
    let file = fs
        .create(&path)
        .map_err(|e| Error::io("create prepared segment", &path, e))?;
    let res = file
        .allocate(0, len)
        .map_err(|e| Error::io("fallocate", &path, e))
        .and_then(|()| fill(&*file, &path))
        .and_then(|()| {
            file.sync_data()
                .map_err(|e| Error::io("fdatasync", &path, e))
        });
    if let Err(e) = res {
        let _ = fs.remove(&path);
        return Err(e);
    }
    Ok(path)
}

/// The size of each write of zeros by [`prepare_zeroed`]: one page.
///
/// Since Linux 6.16 ext4 caches a file in large folios, as large as the
/// write that created them, and the zeroed pages stay cached for the
/// appends that follow. Every small append then walks all the buffer heads
/// of the folio it lands in, and every `fdatasync` writes back a whole
/// folio: measured on the development machine, a 290 B `pwrite` costs
/// 2.4 µs into a file zero-filled 1 MiB at a time against 0.95 µs with
/// 4 KiB writes, and W5 (pipelined submits) ran 2.4× faster. 16 KiB and
/// 64 KiB writes fell in between. The price is more calls on the
/// preparer's thread (≈ 55 ms against ≈ 10 ms per 64 MiB).
const ZERO_CHUNK: usize = 4 << 10;

/// Prepares a segment file of `len` bytes as [`prepare`] does, then writes
/// zeros over all of it (4 KiB at a time, see `ZERO_CHUNK`) and syncs them:
/// appends into it then overwrite written, cached blocks, so their
/// `fdatasync` commits no extent conversion. The pages stay in the page
/// cache (an append into an uncached page would read it first). Costs
/// `len` bytes of writes: for the background preparer and a new log's
/// first segment, never for a roll on the writer's thread.
pub fn prepare_zeroed(fs: &dyn FileSystem, dir: &Path, n: u64, len: u64) -> Result<PathBuf> {
    prepare_zeroed_until(fs, dir, n, len, &|| false)
}

/// [`prepare_zeroed`], giving up the zero-fill between chunks once `stop`
/// says so (the log is being closed). The file is kept, allocated, partly
/// zeroed and synced: still a valid prepared segment, since unwritten
/// space reads as zeros too. One `fdatasync` covers the allocation and the
/// zeros.
pub(crate) fn prepare_zeroed_until(
    fs: &dyn FileSystem,
    dir: &Path,
    n: u64,
    len: u64,
    stop: &dyn Fn() -> bool,
) -> Result<PathBuf> {
    make_prepared(fs, dir, n, len, |file, path| {
        // No larger than the segment: small segments get small buffers.
        let zeros = vec![0u8; (ZERO_CHUNK as u64).min(len) as usize];
        let mut at = 0;
        while at < len && !stop() {
            let k = (len - at).min(zeros.len() as u64);
            // `k <= zeros.len()`, so the slice is in range.
            let chunk = zeros.get(..k as usize).unwrap_or(&zeros);
            file.write_all_at(chunk, at)
                .map_err(|e| Error::io("zero-fill prepared segment", path, e))?;
            at += k;
        }
        Ok(())
    })
}

/// Lists the prepared segment files of `dir`.
pub fn list_prepared(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = fs
        .list(dir)
        .map_err(|e| Error::io("read directory", dir, e))?
        .into_iter()
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(PREPARED_EXTENSION))
        .collect();
    out.sort();
    Ok(out)
}

/// Opens an existing segment for reading and writing.
pub fn open(fs: &dyn FileSystem, path: &Path) -> Result<Arc<dyn FileHandle>> {
    fs.open(path)
        .map_err(|e| Error::io("open segment", path, e))
}

/// A validated segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The segment's sequence number.
    pub sequence: u64,
    /// The first index the segment holds.
    pub first_index: u64,
    /// The length of the header frame (where the first data frame starts).
    pub len: u64,
    /// The length the file was preallocated to (0 when it was not).
    pub preallocated: u64,
    /// How the segment came to be ([`Origin::Legacy`] for version 1).
    pub origin: Origin,
}

/// Reads and checks the header of a segment whose file is `file_len` long.
/// Any problem is [`Error::Corruption`] at offset 0.
pub fn read_header(file: &dyn FileHandle, path: &Path, file_len: u64) -> Result<Header> {
    check_header(file, path, file_len)?
        .map_err(|bad| Error::corruption(Damage::Header, path, 0, bad.reason))
}

/// Why a segment header cannot be used.
#[derive(Debug, Clone)]
pub(crate) struct BadHeader {
    /// What is wrong.
    pub reason: String,
    /// Whether the header frame's CRC verified: then no crash made it what
    /// it is (a crash loses bytes, it does not write a valid header of
    /// another content), and it is damage or a file of another format.
    pub verified: bool,
}

/// [`read_header`], telling a header a crash may have torn (its frame does
/// not verify) from one whose verified content is impossible. I/O errors
/// are `Err`.
pub(crate) fn check_header(
    file: &dyn FileHandle,
    path: &Path,
    file_len: u64,
) -> Result<std::result::Result<Header, BadHeader>> {
    let torn = |reason: String| {
        Ok(Err(BadHeader {
            reason,
            verified: false,
        }))
    };
    let damaged = |reason: String| {
        Ok(Err(BadHeader {
            reason,
            verified: true,
        }))
    };
    if file_len < HEADER_LEN as u64 {
        return torn(format!(
            "file of {file_len} bytes is too short for a segment header"
        ));
    }
    let mut head = [0u8; HEADER_LEN];
    file.read_exact_at(&mut head, 0)
        .map_err(|e| Error::io("read segment header", path, e))?;
    let h = FrameHeader::parse(&head);
    if h.ty != FrameType::Header as u8 {
        return torn(format!(
            "first frame has type {} instead of a segment header",
            h.ty
        ));
    }
    // A header is a few dozen bytes; anything longer is damage.
    if h.len > 256 || u64::from(h.len) > file_len - HEADER_LEN as u64 {
        return torn(format!("segment header length {} is impossible", h.len));
    }
    let mut payload = vec![0u8; h.len as usize];
    file.read_exact_at(&mut payload, HEADER_LEN as u64)
        .map_err(|e| Error::io("read segment header", path, e))?;
    if !h.verify(0, &payload) {
        return torn("segment header CRC mismatch".into());
    }
    let p = match proto::SegmentHeader::decode(&payload[..]) {
        Ok(p) => p,
        Err(e) => return damaged(format!("segment header does not decode: {e}")),
    };
    if p.magic.as_ref() != MAGIC {
        return damaged("bad magic: not a raftwal segment".into());
    }
    if !(OLDEST_VERSION..=FORMAT_VERSION).contains(&p.version) {
        return damaged(format!(
            "format version {} is not supported (this build reads versions {OLDEST_VERSION} to {FORMAT_VERSION})",
            p.version
        ));
    }
    // Index 0 is never an entry's: the first index of a log is at least 1.
    if p.first_index == 0 {
        return damaged("the header says the segment starts at index 0".into());
    }
    let len = (HEADER_LEN + payload.len()) as u64;
    let origin = match p.version {
        OLDEST_VERSION => Origin::Legacy,
        _ => match Origin::from_proto(&p) {
            Ok(o) => o,
            Err(reason) => return damaged(reason),
        },
    };
    Ok(Ok(Header {
        sequence: p.sequence,
        first_index: p.first_index,
        len,
        preallocated: p.preallocated,
        origin,
    }))
}

/// What [`Scanner::next_frame`] found.
#[derive(Debug)]
pub enum Scanned<'a> {
    /// A valid frame.
    Frame {
        /// The frame's offset in the file.
        offset: u64,
        /// Its type.
        ty: FrameType,
        /// Its payload, CRC verified.
        payload: &'a [u8],
        /// Whether it is the last frame of its write.
        end_of_write: bool,
        /// Whether it opens a write issued when everything before it was
        /// durable.
        prior_synced: bool,
    },
    /// The data ended at a frame boundary: the end of the file, or unused
    /// (zeroed) preallocated space. [`Scanner::position`] is where.
    End,
    /// The bytes at `offset` are not a valid frame.
    Bad {
        /// Where the bad frame starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
        /// The frame's total length when its length field was plausible, so a
        /// caller can look for a valid frame right after it.
        claimed_len: Option<u64>,
    },
}

/// Reads the frames of a segment sequentially, in large chunks, verifying
/// each CRC. Memory is one chunk plus at most one frame of
/// `max_payload` bytes; no length is allocated before it is checked against
/// the limit and against the bytes left in the file.
pub struct Scanner<'f> {
    file: &'f dyn FileHandle,
    path: &'f Path,
    file_len: u64,
    salt: u32,
    max_payload: u64,
    /// Zeros below this offset are unused space (the end of the data).
    preallocated: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
    /// File offset of the next frame.
    pos: u64,
}

const CHUNK: usize = 4 << 20;

impl<'f> Scanner<'f> {
    /// A scanner of the segment whose header is `header`, starting at the
    /// end of the header.
    pub fn new(
        file: &'f dyn FileHandle,
        path: &'f Path,
        file_len: u64,
        header: &Header,
        max_payload: u64,
    ) -> Scanner<'f> {
        let start = header.len;
        Scanner {
            file,
            path,
            file_len,
            salt: frame::salt(header.sequence),
            max_payload,
            preallocated: header.preallocated,
            buf: Vec::new(),
            buf_start: start,
            pos: start,
        }
    }

    /// The offset of the next frame (after the last one returned).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Makes `[pos, pos + n)` available in `buf`, reading a chunk (or more
    /// for a large frame) when it is not. `n` is bounded by the caller.
    fn fill(&mut self, pos: u64, n: u64) -> Result<()> {
        let have_end = self.buf_start + self.buf.len() as u64;
        if pos >= self.buf_start && pos + n <= have_end {
            return Ok(());
        }
        let want = (n as usize).max(CHUNK) as u64;
        let len = want.min(self.file_len - pos) as usize;
        self.buf.clear();
        self.buf.resize(len, 0);
        self.buf_start = pos;
        self.file
            .read_exact_at(&mut self.buf, pos)
            .map_err(|e| Error::io("read segment", self.path, e))
    }

    fn slice(&self, pos: u64, n: u64) -> &[u8] {
        let at = (pos - self.buf_start) as usize;
        &self.buf[at..at + n as usize]
    }

    /// The next frame, the end of the data (the end of the file, or zeros
    /// inside the preallocated length), or a description of bad bytes. I/O
    /// errors are returned as `Err`.
    pub fn next_frame(&mut self) -> Result<Scanned<'_>> {
        let pos = self.pos;
        let left = self.file_len - pos;
        if left == 0 {
            return Ok(Scanned::End);
        }
        let bad = |reason: String, claimed_len: Option<u64>| {
            Ok(Scanned::Bad {
                offset: pos,
                reason,
                claimed_len,
            })
        };
        if left < HEADER_LEN as u64 {
            self.fill(pos, left)?;
            let zero = self.slice(pos, left).iter().all(|&b| b == 0);
            if zero && pos < self.preallocated {
                return Ok(Scanned::End);
            }
            let what = if zero { "zeroed" } else { "partial" };
            return bad(
                format!("{what} frame header ({left} bytes before end of file)"),
                None,
            );
        }
        self.fill(pos, HEADER_LEN as u64)?;
        let head: [u8; HEADER_LEN] =
            self.slice(pos, HEADER_LEN as u64).try_into().map_err(|_| {
                Error::internal(format!(
                    "a short frame header slice at offset {pos} of {}",
                    self.path.display()
                ))
            })?;
        let h = FrameHeader::parse(&head);
        if h.is_zero() && pos < self.preallocated {
            return Ok(Scanned::End);
        }
        if h.is_zero() {
            return bad("zeroed bytes where a frame should start".into(), None);
        }
        let Some(ty) = FrameType::from_u8(h.ty).filter(|t| *t != FrameType::Header) else {
            return bad(format!("unknown frame type {}", h.ty), None);
        };
        let len = u64::from(h.len);
        if len > self.max_payload {
            return bad(
                format!(
                    "frame length {len} exceeds the maximum of {}",
                    self.max_payload
                ),
                None,
            );
        }
        let total = HEADER_LEN as u64 + len;
        if total > left {
            return bad(
                format!("frame of {total} bytes is cut by the end of file ({left} bytes left)"),
                None,
            );
        }
        self.fill(pos, total)?;
        let payload_start = pos + HEADER_LEN as u64;
        if !h.verify(self.salt, self.slice(payload_start, len)) {
            return bad("CRC mismatch".into(), Some(total));
        }
        self.pos = pos + total;
        Ok(Scanned::Frame {
            offset: pos,
            ty,
            payload: self.slice(payload_start, len),
            end_of_write: frame::is_end_of_write(h.ty),
            prior_synced: frame::is_prior_synced(h.ty),
        })
    }

    /// Whether a valid frame starts at `offset` (used to tell a torn tail
    /// from damage in the middle of the log).
    /// Whether, from `offset` on, the valid frames that follow one another
    /// include the first frame of a write issued when everything before it
    /// was durable: then what lies before `offset` was on disk before that
    /// write, and a bad frame there is damage, not a tear.
    pub fn synced_write_from(&mut self, offset: u64) -> Result<bool> {
        if offset >= self.file_len {
            return Ok(false);
        }
        self.pos = offset;
        loop {
            match self.next_frame()? {
                Scanned::Frame {
                    prior_synced: true, ..
                } => return Ok(true),
                Scanned::Frame { .. } => continue,
                Scanned::End | Scanned::Bad { .. } => return Ok(false),
            }
        }
    }

    /// Whether a valid frame starts at `offset`.
    pub fn valid_frame_at(&mut self, offset: u64) -> Result<bool> {
        if offset >= self.file_len {
            return Ok(false);
        }
        self.pos = offset;
        Ok(matches!(self.next_frame()?, Scanned::Frame { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::StdFileSystem;

    const FS: StdFileSystem = StdFileSystem;

    #[test]
    fn a_stopped_zero_fill_keeps_a_valid_prepared_file() {
        let dir = tempfile::tempdir().unwrap();
        let len = 4 * ZERO_CHUNK as u64;
        let checks = std::cell::Cell::new(0);
        // Stop after two chunks of zeros.
        let stop = || {
            checks.set(checks.get() + 1);
            checks.get() > 2
        };
        let path = prepare_zeroed_until(&FS, dir.path(), 7, len, &stop).unwrap();
        assert_eq!(checks.get(), 3, "the fill stopped at the third check");
        let file = open(&FS, &path).unwrap();
        assert_eq!(file.len().unwrap(), len, "still allocated in full");
        let mut buf = vec![1u8; len as usize];
        file.read_exact_at(&mut buf, 0).unwrap();
        assert!(buf.iter().all(|&b| b == 0), "zeros, written or not");
        assert_eq!(list_prepared(&FS, dir.path()).unwrap(), vec![path]);
    }

    #[test]
    fn file_names_round_trip() {
        let n = file_name(3, 1000);
        assert_eq!(n, "0000000000000003-00000000000003e8.wal");
        assert_eq!(parse_file_name(&n), Some((3, 1000)));
        assert_eq!(parse_file_name("LOCK"), None);
        assert_eq!(
            parse_file_name("0000000000000003-00000000000003e8.tmp"),
            None
        );
        assert_eq!(parse_file_name("3-1000.wal"), None);
        assert_eq!(
            parse_file_name(&file_name(u64::MAX, u64::MAX)),
            Some((u64::MAX, u64::MAX))
        );
    }

    #[test]
    fn header_is_written_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let c = create(&FS, dir.path(), 5, 77, None, Origin::First).unwrap();
        let (f, path, len) = (c.file, c.path, c.header_len);
        let flen = f.len().unwrap();
        assert_eq!(flen, len);
        let h = read_header(&*f, &path, flen).unwrap();
        assert_eq!((h.sequence, h.first_index, h.len), (5, 77, len));
        // A second create of the same name fails rather than clobbering.
        assert!(create(&FS, dir.path(), 5, 77, None, Origin::First).is_err());
        // Any flipped byte is caught.
        for i in 0..len {
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[i as usize] ^= 0x40;
            let p2 = dir.path().join("flipped");
            std::fs::write(&p2, &bytes).unwrap();
            let f2 = std::fs::File::open(&p2).unwrap();
            assert!(read_header(&f2, &p2, len).is_err(), "byte {i}");
        }
    }

    #[test]
    fn prepared_segment_is_renamed_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let prep = prepare(&FS, dir.path(), 1, 8192).unwrap();
        assert_eq!(list_prepared(&FS, dir.path()).unwrap(), vec![prep.clone()]);
        let c = create(&FS, dir.path(), 9, 3, Some(prep.clone()), Origin::First).unwrap();
        assert!(!prep.exists());
        assert_eq!(c.preallocated, 8192);
        assert_eq!(c.file.len().unwrap(), 8192);
        let h = read_header(&*c.file, &c.path, 8192).unwrap();
        assert_eq!((h.sequence, h.first_index, h.preallocated), (9, 3, 8192));
        assert_eq!(list(&FS, dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn scanner_reports_huge_length_without_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        let mut bytes = vec![FrameType::Entry as u8];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&[7; 100]);
        std::fs::write(&path, &bytes).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let header = Header {
            sequence: 1,
            first_index: 1,
            len: 0,
            preallocated: 0,
            origin: Origin::First,
        };
        let mut s = Scanner::new(
            &f,
            &path,
            bytes.len() as u64,
            &header,
            u64::from(u32::MAX) + 1,
        );
        match s.next_frame().unwrap() {
            Scanned::Bad { offset, reason, .. } => {
                assert_eq!(offset, 0);
                assert!(reason.contains("cut by the end of file"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // The buffer never grew beyond the file.
        assert!(s.buf.capacity() <= CHUNK.max(bytes.len()));
    }
}
