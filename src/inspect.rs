//! Read-only inspection of a log directory, for tools: what is on disk, what
//! [`Log::open`](crate::Log::open) would make of it, and where it is damaged,
//! without taking the directory's lock or changing a byte.
//!
//! [`scan_dir`] reads every segment with [`segment::Scanner`], checking
//! every frame's CRC, and follows the log's markers (truncations,
//! compactions, resets) the way recovery does, so [`DirScan::first_index`],
//! [`DirScan::last_index`], [`DirScan::state`] and the entries it reads are
//! those the log would have after opening. Damage is reported as a list of
//! [`Problem`]s, each saying whether recovery would treat it as a torn tail
//! (truncated away on open) or refuse it.
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

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use prost::bytes::Bytes;
use prost::Message;

use crate::chain::{self, SegmentFile};
use crate::damage::{is_damage, is_lost_tail, is_torn_seal, is_torn_tail, synced_write_in};
use crate::error::{Error, Result};
use crate::frame::{self, FrameHeader, FrameType, HEADER_LEN};
use crate::log::Entry;
use crate::proto;
use crate::segment::{self, Scanned, Scanner, ENTRY_OVERHEAD};

/// The largest entry a scan accepts by default: the default
/// [`Options::max_entry_size`](crate::Options::max_entry_size).
pub const DEFAULT_MAX_ENTRY_SIZE: u64 = 64 << 20;

/// How often (in bytes scanned) [`scan_dir_with`] reports progress.
const PROGRESS_STEP: u64 = 1 << 20;

/// What a [`Problem`] is, as recovery would see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Bad bytes at the end of the last segment, followed by no valid frame:
    /// what a crash in the middle of a write leaves. Also in an older
    /// segment (or its last writes missing) when no later segment holds a
    /// write issued once everything before it was durable: a roll does not
    /// sync the segment it leaves. Recovery's default mode truncates it away
    /// (and removes the later segments); nothing acknowledged was in it.
    TornTail,
    /// A bad frame that is not a torn tail: followed by a valid frame, or
    /// in an older segment with a write after it that was issued once it
    /// was durable. Recovery's default mode refuses to open the log.
    Corruption,
    /// The frames are valid but the log's newest marker puts its first index
    /// below the oldest segment: history is missing. Cutting bytes cannot
    /// mend it; only `RecoveryMode::TolerateAnyCorruption` opens such a log.
    MissingHistory,
}

/// One place where the directory is not what raftwal wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The segment file.
    pub path: PathBuf,
    /// The byte offset of the first bad frame in it (0 for a bad header).
    pub offset: u64,
    /// What is wrong there.
    pub reason: String,
    /// How recovery would treat it.
    pub kind: ProblemKind,
}

/// One segment file as the scan found it.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Every problem, in file order. The log described above is the one
    /// before the first problem, which is what recovery keeps.
    pub problems: Vec<Problem>,
    /// Total bytes of segment files.
    pub bytes: u64,
    /// The log's entries, `first_index..=last_index`.
    entries: Vec<EntryLoc>,
    max_payload: u64,
}

impl DirScan {
    /// Whether the scan found nothing wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
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
    open: Option<(usize, File)>,
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
            let f = File::open(path).map_err(|e| Error::io("open segment", path, e))?;
            self.open = Some((loc.segment, f));
        }
        let Some((_, file)) = self.open.as_ref() else {
            return Err(Error::InvalidArgument("segment not open".into()));
        };
        let bad = |reason: String| Error::corruption(path, loc.offset, reason);
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
    let listed = segment::list(&crate::fs::StdFileSystem, dir)?;
    let max_payload = max_entry_size.saturating_add(ENTRY_OVERHEAD);
    let files = listed
        .into_iter()
        .map(|(seq, first, path)| SegmentFile::read(&open_file, seq, first, path))
        .collect::<Result<Vec<_>>>()?;
    // Progress only ever grows, even when the scan starts over (below).
    let mut reported = 0;
    let mut report = |n: u64| {
        if n > reported {
            reported = n;
            progress(n);
        }
    };
    // As recovery: the files from `limit` on are left out, newer than a
    // segment whose name a crash lost.
    let mut limit = files.len();
    let mut gap = Vec::new();
    loop {
        let now = files.get(..limit).unwrap_or_default();
        // The files that make up the log, as recovery decides them.
        let plan = chain::plan(now, &open_file, max_payload, false)?;
        let mut s = State::new(dir, &files, &plan, max_payload, &mut report);
        // Recovery reads the log's files in order and stops at the first
        // problem; the scan goes on checking the log's later files frame by
        // frame. Superseded files are not read.
        for (k, f) in files.iter().enumerate() {
            if plan.chain.contains(&k) {
                s.segment(k, f, &plan.later(now, k))?;
            }
            s.done += f.len;
            (s.progress)(s.done);
        }
        // Unreadable headers (always after the log's files), reported
        // where they are; a file dropped for coming after one is no problem
        // of its own.
        for d in plan.dropped.iter().rev().filter(|d| !d.follows) {
            s.problem(d.pos, d.offset, d.reason.clone(), d.torn);
        }
        let Some(missing) = s.finish(plan.missing) else {
            s.scan.problems.extend(gap);
            s.sort_problems();
            return Ok(s.scan);
        };
        // A missing predecessor no compaction explains: a name lost in a
        // crash (recovery removes the files from there on and replays the
        // rest), or missing history.
        let g = chain::judge_gap(now, &plan, missing, &open_file, max_payload)?;
        let problem = Problem {
            path: g.path,
            offset: 0,
            kind: if g.torn {
                ProblemKind::TornTail
            } else {
                ProblemKind::MissingHistory
            },
            reason: g.reason,
        };
        if !g.torn {
            s.scan.problems.push(problem);
            s.scan.problems.extend(gap);
            s.sort_problems();
            return Ok(s.scan);
        }
        gap.push(problem);
        limit = g.cut;
    }
}

struct State<'p> {
    scan: DirScan,
    /// Segments recovery would keep (positions in `scan.segments`), with
    /// the number of their entries that are part of the log.
    kept: Vec<(usize, u64)>,
    /// False after the first problem: later segments are only checked
    /// frame by frame, as recovery would not read them into the log.
    logical: bool,
    /// Per file: where its last whole write ends (its data end, before any
    /// footer), as a newer segment's header may name it.
    data_ends: Vec<u64>,
    /// Whether a marker was read into the log.
    marker_seen: bool,
    /// The origin of the segment being read (its opening marker must
    /// match).
    opening: segment::Origin,
    done: u64,
    progress: &'p mut dyn FnMut(u64),
}

impl<'p> State<'p> {
    /// The scan of `files` as `plan` makes the log of them: every file
    /// listed, none read yet.
    fn new(
        dir: &Path,
        files: &[SegmentFile],
        plan: &chain::Plan,
        max_payload: u64,
        progress: &'p mut dyn FnMut(u64),
    ) -> State<'p> {
        let segments = files
            .iter()
            .enumerate()
            .map(|(k, f)| SegmentInfo {
                path: f.path.clone(),
                sequence: f.sequence,
                first_index: f.name_first,
                size: f.len,
                preallocated: 0,
                data_len: f.len,
                frames: 0,
                entry_frames: 0,
                live: None,
                sealed: false,
                torn_seal: false,
                superseded: plan.superseded.contains(&k),
            })
            .collect();
        State {
            scan: DirScan {
                dir: dir.to_path_buf(),
                segments,
                first_index: 0,
                last_index: 0,
                prev_term: 0,
                state: None,
                problems: Vec::new(),
                bytes: files.iter().map(|f| f.len).sum(),
                entries: Vec::new(),
                max_payload,
            },
            kept: Vec::new(),
            logical: true,
            data_ends: vec![0; files.len()],
            marker_seen: false,
            opening: segment::Origin::Legacy,
            done: 0,
            progress,
        }
    }

    /// Puts the problems in file order (then by offset).
    fn sort_problems(&mut self) {
        let segments = &self.scan.segments;
        let pos = |p: &Problem| segments.iter().position(|s| s.path == p.path);
        self.scan
            .problems
            .sort_by_key(|p| (pos(p).unwrap_or(usize::MAX), p.offset));
    }

    fn problem(&mut self, k: usize, offset: u64, reason: String, torn: bool) {
        let kind = if torn {
            ProblemKind::TornTail
        } else {
            ProblemKind::Corruption
        };
        if let Some(seg) = self.scan.segments.get_mut(k) {
            seg.data_len = seg.data_len.min(offset);
            self.scan.problems.push(Problem {
                path: seg.path.clone(),
                offset,
                reason,
                kind,
            });
        }
        self.logical = false;
    }

    /// Scans segment `k`. I/O errors are returned; damage is recorded.
    fn segment(&mut self, k: usize, f: &SegmentFile, later: &[&Path]) -> Result<()> {
        let last_file = later.is_empty();
        let (file, path) = (&*f.file, f.path.as_path());
        let Some(info) = self.scan.segments.get(k).cloned() else {
            return Ok(());
        };
        // The plan puts only files with a usable header in the log.
        let Some(&header) = f.header() else {
            return Ok(());
        };
        if let Some(seg) = self.scan.segments.get_mut(k) {
            seg.frames = 1;
            seg.preallocated = header.preallocated;
        }
        self.opening = header.origin;
        let mut logical = self.logical;
        let fresh = logical && self.kept.is_empty() && self.scan.first_index == 0;
        if fresh {
            self.scan.first_index = header.first_index;
            self.scan.last_index = header.first_index.saturating_sub(1);
        }
        let mut seg = Seg {
            k,
            first_index: header.first_index,
            count: 0,
            // A segment made by a cut or a reset opens with its marker.
            needs_marker: (!fresh && header.first_index != self.scan.last_index.wrapping_add(1))
                || header.origin.opens_with_marker(),
            first_frame: true,
        };
        // Recovery removes this segment then; its frames are still checked.
        if let Some(link) = header.origin.link().filter(|_| logical && !fresh) {
            if self.broken_link(path, link, later)? {
                logical = false;
            }
        }
        if logical
            && header.origin == segment::Origin::Legacy
            && seg.needs_marker
            && self.lost_tail_before(file, path, &header, &info, later)?
        {
            logical = false;
        }
        // As recovery: a valid footer means the segment was synced before
        // it was written, so nothing in it is a torn tail. A trailer no
        // crash leaves is damage.
        let footer = match last_file {
            true => Ok(None),
            false => crate::footer::read(
                file,
                path,
                info.size,
                &header,
                self.scan.max_payload.saturating_sub(ENTRY_OVERHEAD),
            ),
        };
        let footer_verified = match footer {
            Ok(f) => f.is_some(),
            Err(Error::Corruption { offset, reason, .. }) => {
                self.problem(k, offset, reason, false);
                logical = false;
                false
            }
            Err(e) => return Err(e),
        };
        // Where the last whole write ends: the data end a newer segment's
        // header names.
        let mut write_end = header.len;
        let mut scanner = Scanner::new(file, path, info.size, &header, self.scan.max_payload);
        let mut reported = self.done;
        // Where the write being read started, until its last frame (marked
        // END_OF_WRITE) is seen: recovery keeps a write only whole.
        let mut write_start: Option<u64> = None;
        loop {
            let (offset, reason, claimed_len) = match scanner.next_frame()? {
                Scanned::End => {
                    if let Some(s) = self.scan.segments.get_mut(k) {
                        s.data_len = scanner.position();
                    }
                    if let Some(e) = self.data_ends.get_mut(k) {
                        *e = write_end;
                    }
                    if let Some(start) = write_start {
                        let reason = "a write cut short: its last frame is missing".to_string();
                        // As recovery: a cut's or a reset's opening write is
                        // never torn (the file got its name after it).
                        let torn = !seg.atomic_opening(&header)
                            && is_torn_tail(
                                !footer_verified,
                                later,
                                &open_file,
                                self.scan.max_payload,
                            )?;
                        self.problem(k, start, reason, torn);
                        if logical {
                            self.keep(&seg);
                        }
                        return Ok(());
                    }
                    break;
                }
                Scanned::Bad {
                    offset,
                    reason,
                    claimed_len,
                } => (offset, reason, claimed_len),
                Scanned::Frame {
                    offset,
                    ty,
                    payload,
                    end_of_write,
                    ..
                } => {
                    let len = (payload.len() + HEADER_LEN) as u64;
                    if !matches!(ty, FrameType::Footer | FrameType::Trailer) {
                        if end_of_write {
                            write_end = offset + len;
                        }
                        write_start = if end_of_write {
                            None
                        } else {
                            write_start.or(Some(offset))
                        };
                    } else if let Some(start) = write_start {
                        // A segment is sealed only after whole writes.
                        let reason = "a write cut short before a footer".to_string();
                        self.problem(k, start, reason, false);
                        if logical {
                            self.keep(&seg);
                        }
                        return Ok(());
                    }
                    let applied = if self.logical {
                        self.apply(&mut seg, offset, ty, payload)
                    } else {
                        Ok(())
                    };
                    seg.first_frame = false;
                    if let Some(s) = self.scan.segments.get_mut(k) {
                        s.frames += 1;
                        match ty {
                            FrameType::Entry => s.entry_frames += 1,
                            FrameType::Trailer => s.sealed = true,
                            _ => {}
                        }
                    }
                    if self.done + offset >= reported + PROGRESS_STEP {
                        reported = self.done + offset;
                        (self.progress)(reported);
                    }
                    match applied {
                        Ok(()) => continue,
                        Err(reason) => (offset, reason, Some(len)),
                    }
                }
            };
            // Damage with a write after it that was issued once it was
            // durable is not a torn tail.
            let followed = match claimed_len {
                Some(n) => scanner.synced_write_from(offset.saturating_add(n))?,
                None => false,
            };
            if !followed && !last_file && is_torn_seal(file, offset, info.size) {
                // A crash while sealing the segment: the footer is optional,
                // and recovery reads the segment without it.
                if let Some(s) = self.scan.segments.get_mut(k) {
                    s.data_len = offset;
                    s.torn_seal = true;
                }
                if let Some(e) = self.data_ends.get_mut(k) {
                    *e = write_end;
                }
                if logical {
                    self.keep(&seg);
                }
                return Ok(());
            }
            let shape_torn = !footer_verified
                && !followed
                && !is_damage(file, offset, info.size, self.scan.max_payload);
            let torn = !seg.atomic_opening(&header)
                && is_torn_tail(shape_torn, later, &open_file, self.scan.max_payload)?;
            self.problem(k, offset, reason, torn);
            if logical {
                self.keep(&seg);
            }
            return Ok(());
        }
        if logical && seg.needs_marker && header.origin != segment::Origin::Legacy {
            // As recovery: a cut's or a reset's segment always holds its
            // opening write, and a rolled-to one continues the log.
            let reason =
                "the segment does not continue the log and holds no opening marker".to_string();
            self.problem(k, header.len, reason, false);
            return Ok(());
        }
        if logical {
            self.keep(&seg);
        }
        // A version-1 segment that needed a marker and ended without one is
        // left by an interrupted truncation or reset; recovery removes it.
        Ok(())
    }

    /// The segment at `path` names `link` as the segment it continues: as
    /// recovery does, checks that the log read so far ends in that segment,
    /// where it ended then. A shorter one lost its last writes in a crash
    /// unless a write in this segment or later was prior-synced: a torn
    /// tail at its data end (recovery cuts it there and removes this
    /// segment and every later one). Anything else is damage. Returns
    /// whether the log ends before this segment.
    fn broken_link(&mut self, path: &Path, link: segment::Link, later: &[&Path]) -> Result<bool> {
        let Some(&(prev, _)) = self.kept.last() else {
            return Ok(false);
        };
        let Some(p) = self.scan.segments.get(prev) else {
            return Ok(false);
        };
        let end = self.data_ends.get(prev).copied().unwrap_or(0);
        if p.sequence != link.sequence {
            let reason = format!(
                "the segment continues segment {}, but the log read so far ends in segment {}",
                link.sequence, p.sequence
            );
            let k = self.position_of(path);
            self.problem(k, 0, reason, false);
            return Ok(true);
        }
        if end == link.end {
            return Ok(false);
        }
        let reason = format!(
            "the next segment says this one's data ends at offset {}, but it ends at {end}",
            link.end
        );
        if end > link.end || p.sealed {
            self.problem(prev, end.min(link.end), reason, false);
            return Ok(true);
        }
        let mut from_here: Vec<&Path> = vec![path];
        from_here.extend_from_slice(later);
        let torn = !link.synced && !synced_write_in(&open_file, &from_here, self.scan.max_payload)?;
        let reason = match torn {
            true => format!("{reason}: its last writes were lost in a crash"),
            false => format!("{reason}, yet a later write shows they were durable"),
        };
        self.problem(prev, end, reason, torn);
        Ok(true)
    }

    /// The position of `path` among the scanned files.
    fn position_of(&self, path: &Path) -> usize {
        self.scan
            .segments
            .iter()
            .position(|s| s.path == path)
            .unwrap_or(usize::MAX)
    }

    /// Segment `info` does not continue the log: whether it shows that the
    /// tail of the segment kept before it was lost in a crash (see
    /// `damage::is_lost_tail`). Then that is reported as a torn tail at the
    /// end of that segment's data, as recovery cuts it there and removes
    /// this segment and every later one.
    fn lost_tail_before(
        &mut self,
        file: &dyn crate::fs::FileHandle,
        path: &Path,
        header: &segment::Header,
        info: &SegmentInfo,
        later: &[&Path],
    ) -> Result<bool> {
        let Some(&(prev, _)) = self.kept.last() else {
            return Ok(false);
        };
        let Some(p) = self.scan.segments.get(prev) else {
            return Ok(false);
        };
        let (prev_sealed, prev_end) = (p.sealed, p.data_len);
        let next = self.scan.last_index.wrapping_add(1);
        if prev_sealed || header.first_index <= next {
            return Ok(false);
        }
        // A segment holding only its header is an interrupted reset or cut.
        let mut scanner = Scanner::new(file, path, info.size, header, self.scan.max_payload);
        if matches!(scanner.next_frame()?, Scanned::End) {
            return Ok(false);
        }
        let mut from_here: Vec<&Path> = vec![path];
        from_here.extend_from_slice(later);
        let lost = is_lost_tail(
            prev_sealed,
            header.first_index,
            next,
            &from_here,
            &open_file,
            self.scan.max_payload,
        )?;
        if lost {
            let reason = format!(
                "the next segment starts at index {} but this one ends at {}: its tail was lost in a crash (no write after it was durable)",
                header.first_index, self.scan.last_index
            );
            self.problem(prev, prev_end, reason, true);
        }
        Ok(lost)
    }

    fn keep(&mut self, seg: &Seg) {
        if !seg.needs_marker {
            self.kept.push((seg.k, seg.count));
        }
    }

    /// Applies one valid frame to the log, as recovery does. An `Err` is a
    /// reason the frame cannot be part of the log.
    fn apply(
        &mut self,
        seg: &mut Seg,
        offset: u64,
        ty: FrameType,
        payload: &[u8],
    ) -> std::result::Result<(), String> {
        if seg.needs_marker && !(seg.first_frame && ty == FrameType::Marker) {
            return Err(format!(
                "segment starts at index {} but the log ends at {} and no reset marker follows",
                seg.first_index, self.scan.last_index
            ));
        }
        match ty {
            FrameType::Entry => {
                let m = proto::EntryMeta::decode(payload)
                    .map_err(|e| format!("entry does not decode: {e}"))?;
                if m.index == u64::MAX {
                    return Err("an entry at index u64::MAX".into());
                }
                let want = self.scan.last_index.wrapping_add(1);
                if m.index != want || m.index != seg.first_index.wrapping_add(seg.count) {
                    return Err(format!("entry index {} where {want} was expected", m.index));
                }
                let prev = match self.scan.entries.last() {
                    Some(e) if self.scan.last_index >= self.scan.first_index => e.term,
                    _ => self.scan.prev_term,
                };
                if m.term < prev {
                    return Err(format!(
                        "entry {} has term {} below the previous term {prev}",
                        m.index, m.term
                    ));
                }
                self.scan.entries.push(EntryLoc {
                    index: m.index,
                    term: m.term,
                    segment: seg.k,
                    offset,
                    len: (payload.len() + HEADER_LEN) as u32,
                });
                seg.count += 1;
                self.scan.last_index = m.index;
            }
            FrameType::State => {
                let s = proto::State::decode(payload)
                    .map_err(|e| format!("state does not decode: {e}"))?;
                self.scan.state = Some(s.data);
            }
            FrameType::Marker => {
                let m = proto::Marker::decode(payload)
                    .map_err(|e| format!("marker does not decode: {e}"))?;
                self.marker(seg, &m)?;
            }
            // A sealed segment's index block and its pointer.
            FrameType::Footer | FrameType::Trailer => {}
            FrameType::Header => return Err("a second segment header".into()),
        }
        Ok(())
    }

    fn marker(&mut self, seg: &mut Seg, m: &proto::Marker) -> std::result::Result<(), String> {
        if m.first_index == 0 {
            return Err("a marker puts the first index at 0".into());
        }
        let wrong_opening = match self.opening {
            segment::Origin::Cut(_) => m.reset || m.truncate_from != seg.first_index,
            segment::Origin::Reset => !m.reset,
            _ => false,
        };
        if seg.first_frame && wrong_opening {
            return Err(format!(
                "the segment was made by {:?} but opens with another marker",
                self.opening
            ));
        }
        self.marker_seen = true;
        if m.reset {
            if !seg.first_frame || m.first_index != seg.first_index {
                return Err("a reset marker must open its segment".into());
            }
            seg.needs_marker = false;
            self.kept.clear();
            self.scan.entries.clear();
            self.scan.last_index = m.first_index - 1;
        } else {
            if m.truncate_from != 0 {
                let cut = m.truncate_from;
                let end = seg.first_index.wrapping_add(seg.count);
                let opens = seg.first_frame && cut == seg.first_index;
                let inside = cut >= seg.first_index && cut <= end;
                if !(opens || inside)
                    || cut < self.scan.first_index
                    || cut > self.scan.last_index.wrapping_add(1)
                {
                    return Err(format!(
                        "truncation marker at index {cut} outside the log {}..={}",
                        self.scan.first_index, self.scan.last_index
                    ));
                }
                seg.needs_marker = false;
                self.cut(seg, cut);
            } else if seg.needs_marker {
                return Err("segment does not continue the log".into());
            }
            if m.first_index > self.scan.last_index.wrapping_add(1) {
                return Err(format!(
                    "marker's first index {} is past the end of the log at {}",
                    m.first_index, self.scan.last_index
                ));
            }
        }
        self.scan.first_index = m.first_index;
        self.scan.prev_term = m.prev_term;
        Ok(())
    }

    /// Drops entries `cut..` from the log and from the segments holding them.
    fn cut(&mut self, seg: &mut Seg, cut: u64) {
        if cut >= seg.first_index {
            seg.count = seg.count.min(cut - seg.first_index);
        }
        while let Some(&(k, count)) = self.kept.last() {
            let first = self.scan.segments.get(k).map_or(0, |s| s.first_index);
            if first >= cut {
                self.kept.pop();
                continue;
            }
            if let Some(last) = self.kept.last_mut() {
                last.1 = count.min(cut - first);
            }
            break;
        }
        let keep = self.scan.entries.partition_point(|e| e.index < cut);
        self.scan.entries.truncate(keep);
        self.scan.last_index = cut - 1;
    }

    /// Checks the first index against the oldest segment, drops the entries
    /// below the first index and fills in each segment's live range.
    /// `missing`: the oldest segment of the log names a predecessor that is
    /// not there, which only a compaction marker may explain; returned when
    /// none does (the caller decides what it is).
    fn finish(&mut self, missing: Option<u64>) -> Option<u64> {
        if self.scan.segments.is_empty() {
            self.scan.first_index = 1;
            self.scan.last_index = 0;
            return None;
        }
        let mut gap = None;
        if let Some(&(k, _)) = self.kept.first() {
            if let Some(front) = self.scan.segments.get(k) {
                let covered = self.marker_seen && self.scan.first_index >= front.first_index;
                if let (Some(missing), false) = (missing, covered) {
                    gap = Some(missing);
                } else if self.scan.first_index < front.first_index {
                    let reason = format!(
                        "the newest marker puts the first index at {} but the oldest segment starts at {}",
                        self.scan.first_index, front.first_index
                    );
                    self.scan.problems.push(Problem {
                        path: front.path.clone(),
                        offset: 0,
                        reason,
                        kind: ProblemKind::MissingHistory,
                    });
                }
            }
        }
        if self.scan.first_index == 0 {
            // Not even the first segment's header was readable.
            self.scan.first_index = 1;
            self.scan.last_index = 0;
        }
        let first = self.scan.first_index;
        let below = self.scan.entries.partition_point(|e| e.index < first);
        self.scan.entries.drain(..below);
        for e in &self.scan.entries {
            if let Some(seg) = self.scan.segments.get_mut(e.segment) {
                seg.live = Some(match seg.live {
                    Some((lo, _)) => (lo, e.index),
                    None => (e.index, e.index),
                });
            }
        }
        gap
    }
}

/// Opens a segment file read-only, for the rules in `damage`.
fn open_file(path: &Path) -> Result<std::sync::Arc<dyn crate::fs::FileHandle>> {
    let f = File::open(path).map_err(|e| Error::io("open segment", path, e))?;
    Ok(std::sync::Arc::new(f))
}

/// The segment being scanned.
struct Seg {
    k: usize,
    first_index: u64,
    /// Entries of this segment in the log so far.
    count: u64,
    needs_marker: bool,
    first_frame: bool,
}

impl Seg {
    /// Whether this segment's opening write is still to come and is a
    /// cut's or a reset's: the file got its name only once that write was
    /// on disk, so no crash tears it (recovery's rule too).
    fn atomic_opening(&self, header: &segment::Header) -> bool {
        self.needs_marker && header.origin.opens_with_marker()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Log, Options, Preallocate, RecoveryMode};

    fn e(i: u64, t: u64) -> Entry {
        Entry::new(i, t, format!("entry-{i}-{t}").into_bytes())
    }

    fn small() -> Options {
        Options::default().segment_size(4096)
    }

    /// Compares the scan with what `Log::open` makes of the same directory.
    fn assert_matches_log(dir: &Path) {
        let scan = scan_dir(dir).unwrap();
        assert!(scan.is_clean(), "{:?}", scan.problems);
        let log = Log::open(dir, small()).unwrap();
        assert_eq!(
            (scan.first_index, scan.last_index),
            (log.first_index(), log.last_index())
        );
        assert_eq!(scan.prev_term, log.term(log.first_index() - 1).unwrap());
        assert_eq!(scan.state, log.state());
        let read: Vec<Entry> = scan.entries(0, u64::MAX).collect::<Result<_>>().unwrap();
        let want = if log.is_empty() {
            Vec::new()
        } else {
            log.entries(log.first_index(), log.last_index() + 1, None)
                .unwrap()
        };
        assert_eq!(read, want);
    }

    #[test]
    fn follows_truncation_compaction_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = Log::open(dir.path(), small()).unwrap();
            for i in 1..=400 {
                log.append(&[e(i, 1 + i / 100)]).unwrap();
            }
            log.set_state(&b"s1"[..]).unwrap();
            log.truncate_from_index(390).unwrap();
            log.append(&[e(390, 9)]).unwrap();
            log.truncate_from_index(200).unwrap();
            log.append(&[e(200, 9), e(201, 9)]).unwrap();
            log.compact(150).unwrap();
            // While the log is open (and locked), the scan still reads it.
            let scan = scan_dir(dir.path()).unwrap();
            assert_eq!((scan.first_index, scan.last_index), (150, 201));
        }
        assert_matches_log(dir.path());
        {
            let log = Log::open(dir.path(), small()).unwrap();
            log.reset(1000, 7).unwrap();
            log.append(&[e(1000, 7)]).unwrap();
        }
        assert_matches_log(dir.path());
    }

    #[test]
    fn reads_a_range() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), small()).unwrap();
        for i in 1..=100 {
            log.append(&[e(i, 1)]).unwrap();
        }
        let scan = scan_dir(dir.path()).unwrap();
        let got: Vec<u64> = scan.entries(10, 13).map(|r| r.unwrap().index).collect();
        assert_eq!(got, vec![10, 11, 12]);
        assert_eq!(scan.entries(90, 1000).count(), 11);
        assert_eq!(scan.entries(200, 300).count(), 0);
        assert_eq!(scan.entries(50, 10).count(), 0);
        let live: u64 = scan
            .segments
            .iter()
            .filter_map(|s| s.live)
            .map(|(lo, hi)| hi - lo + 1)
            .sum();
        assert_eq!(live, 100);
    }

    #[test]
    fn empty_and_missing_directories() {
        let dir = tempfile::tempdir().unwrap();
        let scan = scan_dir(dir.path()).unwrap();
        assert!(scan.segments.is_empty() && scan.is_clean());
        assert_eq!((scan.first_index, scan.last_index), (1, 0));
        assert!(matches!(
            scan_dir(&dir.path().join("nope")),
            Err(Error::Io { .. })
        ));
    }

    fn last_segment(dir: &Path) -> PathBuf {
        segment::list(&crate::fs::StdFileSystem, dir)
            .unwrap()
            .pop()
            .unwrap()
            .2
    }

    /// Damages the frame of entry `index`: zeros its last `n` bytes.
    fn zero_end_of(dir: &Path, index: u64, n: u64) -> EntryLoc {
        zero_end_in(&scan_dir(dir).unwrap(), index, n)
    }

    fn zero_end_in(scan: &DirScan, index: u64, n: u64) -> EntryLoc {
        let loc = *scan
            .entry_locations()
            .iter()
            .find(|l| l.index == index)
            .unwrap();
        let path = &scan.segments[loc.segment].path;
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        let end = loc.offset + u64::from(loc.len);
        f.write_all_at(&vec![0; n as usize], end - n).unwrap();
        loc
    }

    #[test]
    fn torn_tail_is_reported_and_nothing_changes() {
        let modes = [
            Preallocate::Allocate,
            Preallocate::ZeroFill,
            Preallocate::None,
        ];
        for prealloc in modes {
            let dir = tempfile::tempdir().unwrap();
            let opts = Options::default()
                .segment_size(1 << 20)
                .preallocate(prealloc);
            {
                let log = Log::open(dir.path(), opts.clone()).unwrap();
                for i in 1..=10 {
                    log.append(&[e(i, 1)]).unwrap();
                }
            }
            let loc = zero_end_of(dir.path(), 10, 3);
            let path = last_segment(dir.path());
            let before = std::fs::read(&path).unwrap();
            let scan = scan_dir(dir.path()).unwrap();
            assert_eq!(scan.problems.len(), 1, "preallocate {prealloc:?}");
            let p = &scan.problems[0];
            assert_eq!((p.kind, p.offset), (ProblemKind::TornTail, loc.offset));
            assert_eq!(scan.segments[0].data_len, loc.offset);
            assert_eq!((scan.first_index, scan.last_index), (1, 9));
            assert_eq!(std::fs::read(&path).unwrap(), before);
            // Recovery agrees: it keeps 9 entries and cuts at the same offset.
            let log = Log::open(dir.path(), opts).unwrap();
            assert_eq!(log.last_index(), 9);
            assert_eq!(log.recovery_report().repairs[0].1, p.offset);
        }
    }

    #[test]
    fn a_clean_preallocated_segment_ends_at_its_data() {
        for mode in [Preallocate::Allocate, Preallocate::ZeroFill] {
            clean_preallocated_segment_ends_at_its_data(mode);
        }
    }

    fn clean_preallocated_segment_ends_at_its_data(mode: Preallocate) {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::default().segment_size(1 << 20).preallocate(mode);
        let log = Log::open(dir.path(), opts).unwrap();
        log.append(&[e(1, 1), e(2, 1)]).unwrap();
        let scan = scan_dir(dir.path()).unwrap();
        assert!(scan.is_clean());
        let seg = &scan.segments[0];
        let last = scan.entry_locations()[1];
        assert_eq!(seg.data_len, last.offset + u64::from(last.len));
        assert_eq!(seg.preallocated, 1 << 20, "{mode:?}");
        assert_eq!(seg.size, seg.preallocated);
    }

    #[test]
    fn a_damaged_entry_mid_log_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = Log::open(dir.path(), Options::default()).unwrap();
            for i in 1..=10 {
                log.append(&[e(i, 1)]).unwrap();
            }
        }
        let loc = zero_end_of(dir.path(), 5, 1);
        let scan = scan_dir(dir.path()).unwrap();
        assert_eq!(scan.problems.len(), 1);
        assert_eq!(scan.problems[0].kind, ProblemKind::Corruption);
        assert_eq!(scan.problems[0].offset, loc.offset);
        assert_eq!(scan.last_index, 4);
        // Recovery refuses it at the same place.
        match Log::open(dir.path(), Options::default()) {
            Err(Error::Corruption { offset, .. }) => assert_eq!(offset, loc.offset),
            other => panic!("{other:?}"),
        }
        let log = Log::open(
            dir.path(),
            Options::default().recovery_mode(RecoveryMode::TolerateAnyCorruption),
        )
        .unwrap();
        assert_eq!(log.last_index(), 4);
    }

    #[test]
    fn damage_in_an_older_segment_is_found_and_later_ones_still_checked() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = Log::open(dir.path(), small()).unwrap();
            for i in 1..=1000 {
                log.append(&[e(i, 1)]).unwrap();
            }
        }
        let scan = scan_dir(dir.path()).unwrap();
        assert!(scan.segments.len() >= 4);
        // The last entry of the first and of the third segment.
        let lasts: Vec<u64> = [0, 2]
            .iter()
            .map(|&k| scan.segments[k].live.unwrap().1)
            .collect();
        let locs: Vec<EntryLoc> = lasts.iter().map(|&i| zero_end_in(&scan, i, 1)).collect();
        let scan = scan_dir(dir.path()).unwrap();
        assert_eq!(scan.problems.len(), 2);
        for (p, loc) in scan.problems.iter().zip(&locs) {
            assert_eq!(p.kind, ProblemKind::Corruption);
            assert_eq!(p.offset, loc.offset);
            assert_eq!(p.path, scan.segments[loc.segment].path);
        }
        assert_eq!(scan.segments[0].data_len, locs[0].offset);
        assert_eq!(scan.last_index, lasts[0] - 1);
    }

    #[test]
    fn a_torn_segment_header_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = Log::open(dir.path(), Options::default()).unwrap();
            log.append(&[e(1, 1)]).unwrap();
        }
        let path = dir.path().join(segment::file_name(99, 2));
        std::fs::write(&path, [1u8, 40, 0]).unwrap();
        let scan = scan_dir(dir.path()).unwrap();
        assert_eq!(scan.problems.len(), 1);
        assert_eq!(scan.problems[0].kind, ProblemKind::TornTail);
        assert_eq!(scan.problems[0].offset, 0);
        assert_eq!(scan.last_index, 1);
    }

    #[test]
    fn a_torn_seal_is_not_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = Log::open(dir.path(), small()).unwrap();
            for i in 1..=300 {
                log.append(&[e(i, 1)]).unwrap();
            }
        }
        let scan = scan_dir(dir.path()).unwrap();
        assert!(scan.is_clean(), "{:?}", scan.problems);
        let sealed = scan
            .segments
            .iter()
            .find(|s| s.sealed)
            .expect("a sealed segment: the log rolled, and drop joins the sealers");
        // Cut the trailer's CRC: what a crash while sealing leaves.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&sealed.path)
            .unwrap();
        f.write_all_at(&[0xff, 0xff], sealed.size - 10).unwrap();
        let after = scan_dir(dir.path()).unwrap();
        assert!(after.is_clean(), "{:?}", after.problems);
        let seg = after
            .segments
            .iter()
            .find(|s| s.path == sealed.path)
            .unwrap();
        assert!(seg.torn_seal && !seg.sealed, "{seg:?}");
        assert_eq!((after.first_index, after.last_index), (1, 300));
        assert_matches_log(dir.path());
    }

    #[test]
    fn damage_no_crash_leaves_is_not_a_torn_tail() {
        let make = || {
            let dir = tempfile::tempdir().unwrap();
            let log = Log::open(dir.path(), Options::default()).unwrap();
            for i in 1..=10 {
                log.append(&[e(i, 1)]).unwrap();
            }
            drop(log);
            dir
        };
        // An unknown type byte where the last frame starts.
        let dir = make();
        let scan = scan_dir(dir.path()).unwrap();
        let loc = scan.entry_locations()[9];
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&scan.segments[0].path)
            .unwrap();
        f.write_all_at(&[0x77], loc.offset).unwrap();
        let scan = scan_dir(dir.path()).unwrap();
        assert_eq!(scan.problems[0].kind, ProblemKind::Corruption);
        assert!(matches!(
            Log::open(dir.path(), Options::default()),
            Err(Error::Corruption { .. })
        ));

        // A bad header on a last segment that holds frames.
        let dir = make();
        let path = last_segment(dir.path());
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xff], 12).unwrap();
        let scan = scan_dir(dir.path()).unwrap();
        assert_eq!(scan.problems[0].kind, ProblemKind::Corruption);
        assert_eq!(scan.problems[0].offset, 0);
        assert!(matches!(
            Log::open(dir.path(), Options::default()),
            Err(Error::Corruption { .. })
        ));
    }

    #[test]
    fn a_zeroed_seal_is_a_torn_seal() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = Log::open(dir.path(), small()).unwrap();
            for i in 1..=300 {
                log.append(&[e(i, 1)]).unwrap();
            }
        }
        let scan = scan_dir(dir.path()).unwrap();
        let sealed = scan
            .segments
            .iter()
            .find(|s| s.sealed)
            .expect("a sealed segment: the log rolled, and drop joins the sealers");
        // The trailer's bytes never reached the disk; its length did.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&sealed.path)
            .unwrap();
        f.write_all_at(&[0; 23], sealed.size - 23).unwrap();
        let after = scan_dir(dir.path()).unwrap();
        assert!(after.is_clean(), "{:?}", after.problems);
        assert_matches_log(dir.path());
    }

    #[test]
    fn progress_reaches_the_total() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), small()).unwrap();
        for i in 1..=200 {
            log.append(&[e(i, 1)]).unwrap();
        }
        let mut last = 0;
        let scan = scan_dir_with(dir.path(), 1 << 20, &mut |n| {
            assert!(n >= last);
            last = n;
        })
        .unwrap();
        assert_eq!(last, scan.bytes);
    }
}
