//! [`Log`]: the durable positional log, its open and its read path.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use prost::bytes::Bytes;
use prost::Message;

use crate::durability::Durability;
use crate::error::{Error, Result};
use crate::frame::{self, FrameHeader, FrameType, HEADER_LEN};
use crate::fs::FileSystem;
use crate::index::{Index, Loc, Segment};
use crate::options::{Options, Preallocate};
use crate::prepare::Preparer;
use crate::proto;
use crate::recovery::{self, RecoveryReport};
use crate::segment::ENTRY_OVERHEAD;
use crate::sync::Syncer;
use crate::write::Writer;

/// The name of the lock file in a log directory.
pub const LOCK_FILE: &str = "LOCK";

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

pub(crate) struct Inner {
    pub dir: PathBuf,
    pub opts: Options,
    /// Held for the life of the log: the directory's exclusive lock.
    _lock: Box<dyn Any + Send + Sync>,
    pub index: RwLock<Index>,
    pub writer: Mutex<Writer>,
    pub durability: Arc<Durability>,
    /// The background syncer of `Log::submit`, started on first use.
    pipeline: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Keeps a preallocated segment ready (when `Options::preallocate`).
    pub preparer: Mutex<Option<Preparer>>,
    /// Threads writing the footers of sealed segments.
    sealers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    pub report: RecoveryReport,
}

impl Inner {
    /// Syncs when writes are issued that are not yet durable.
    pub(crate) fn sync_if_dirty(&self) -> Result<()> {
        if self.durability.dirty() {
            self.durability.sync_all()
        } else {
            self.durability.check()
        }
    }

    /// Seals segment `sequence` (writes its footer) on a background thread.
    pub(crate) fn start_sealing(&self, this: &Arc<Inner>, sequence: u64) {
        let inner = Arc::clone(this);
        let spawned = std::thread::Builder::new()
            .name("raftwal-seal".into())
            .spawn(move || {
                if let Err(e) = crate::footer::seal(&inner, sequence) {
                    // The segment stays valid: the next open scans it.
                    log::warn!("raftwal: could not seal segment {sequence}: {e}");
                }
            });
        let mut sealers = self.sealers.lock();
        sealers.retain(|h| !h.is_finished());
        match spawned {
            Ok(h) => sealers.push(h),
            Err(e) => log::warn!("raftwal: could not start sealing segment {sequence}: {e}"),
        }
    }

    /// Waits for every sealing thread.
    fn join_sealers(&self) {
        let handles: Vec<_> = self.sealers.lock().drain(..).collect();
        for h in handles {
            if h.join().is_err() {
                log::error!("raftwal: a sealing thread panicked");
            }
        }
    }

    /// Starts the background syncer of `Log::submit` if it is not running.
    pub(crate) fn ensure_pipeline(&self) {
        let mut p = self.pipeline.lock();
        if p.is_none() {
            *p = self.durability.start_syncer();
        }
    }
}

/// A durable, positional log of entries in segment files.
///
/// Writes are serialised; reads run concurrently with writes and never wait
/// for an `fdatasync`. Every read verifies the CRC of the frame it reads.
/// `Log` is `Send + Sync`: share it with an `Arc`.
///
/// ```
/// use raftwal::{Entry, Log, Options};
/// # fn main() -> raftwal::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let log = Log::open(dir.path(), Options::default())?;
/// log.append(&[Entry::new(1, 1, "a"), Entry::new(2, 1, "b"), Entry::new(3, 2, "c")])?;
/// assert_eq!(log.get_entry(2)?.data, "b");
/// assert_eq!(log.term(3)?, 2);
///
/// log.truncate_from_index(3)?; // a new leader overruled entry 3
/// log.compact(2)?;             // entry 1 is in a snapshot now
/// assert_eq!((log.first_index(), log.last_index()), (2, 2));
/// assert_eq!(log.term(1)?, 1); // the term before the first index is kept
/// log.set_state(&b"hard state"[..])?;
/// drop(log);
///
/// let log = Log::open(dir.path(), Options::default())?;
/// assert_eq!((log.first_index(), log.last_index()), (2, 2));
/// assert_eq!(log.state().as_deref(), Some(&b"hard state"[..]));
/// # Ok(()) }
/// ```
pub struct Log {
    pub(crate) inner: Arc<Inner>,
    syncer: Option<Syncer>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.inner.dir)
            .field("first_index", &self.first_index())
            .field("last_index", &self.last_index())
            .finish_non_exhaustive()
    }
}

impl Log {
    /// Opens the log in `dir`, creating the directory and an empty log if
    /// needed, and recovers it: every segment is scanned and every frame
    /// validated; what is found damaged is handled as
    /// [`Options::recovery_mode`] says.
    ///
    /// Fails with [`Error::Locked`] when another `Log` has `dir` open.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Log> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let fs = &*opts.file_system;
        fs.create_dir_all(&dir)
            .map_err(|e| Error::io("create directory", &dir, e))?;
        let lock = lock_dir(fs, &dir)?;
        let started = std::time::Instant::now();
        let rec = recovery::recover(&dir, &opts)?;
        crate::metrics::recovery(
            started.elapsed(),
            rec.report.bytes_scanned,
            rec.report.bytes_dropped,
        );
        let sync = opts.sync;
        let active = rec
            .index
            .segments
            .back()
            .map(|s| (Arc::clone(&s.file), s.path.clone()))
            .ok_or_else(|| internal(&dir, "recovery left no active segment".into()))?;
        let inner = Arc::new(Inner {
            writer: Mutex::new(Writer::new(rec.next_sequence)),
            durability: Durability::new(active.0, active.1),
            pipeline: Mutex::new(None),
            preparer: Mutex::new(None),
            sealers: Mutex::new(Vec::new()),
            index: RwLock::new(rec.index),
            report: rec.report,
            dir,
            opts,
            _lock: lock,
        });
        if inner.opts.preallocate != Preallocate::None {
            *inner.preparer.lock() = Some(Preparer::start(
                Arc::clone(&inner.opts.file_system),
                &inner.dir,
                inner.opts.segment_size,
                inner.opts.preallocate,
            ));
        }
        let syncer = Syncer::start(&inner, sync);
        Ok(Log { inner, syncer })
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The options the log was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// What recovery found and repaired when the log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// The first index in the log (one past the last compacted index). When
    /// the log is empty, `last_index() + 1`.
    pub fn first_index(&self) -> u64 {
        self.inner.index.read().first_index
    }

    /// The last index in the log (`first_index() - 1` when it is empty).
    pub fn last_index(&self) -> u64 {
        self.inner.index.read().last_index
    }

    /// Whether the log holds no entries.
    pub fn is_empty(&self) -> bool {
        let ix = self.inner.index.read();
        ix.last_index < ix.first_index
    }

    /// The term of entry `index`, from memory. `term(first_index() - 1)` is
    /// the term recorded by the last compaction or reset (0 for a new log).
    pub fn term(&self, index: u64) -> Result<u64> {
        let ix = self.inner.index.read();
        term_in(&ix, index)
    }

    /// The newest state blob, if one was ever set.
    pub fn state(&self) -> Option<Bytes> {
        self.inner.index.read().state.as_ref().map(|s| s.0.clone())
    }

    /// Reads entry `index`: one lookup in memory, one `pread` of exactly its
    /// frame, CRC verified.
    pub fn get_entry(&self, index: u64) -> Result<Entry> {
        let ix = self.inner.index.read();
        check_range(&ix, index)?;
        let (seg, loc) = ix.locate(index).ok_or_else(|| {
            internal(
                &self.inner.dir,
                format!("index has no location for {index}"),
            )
        })?;
        let mut buf = vec![0u8; loc.len as usize];
        seg.file
            .read_exact_at(&mut buf, u64::from(loc.offset))
            .map_err(|e| Error::io("read entry", &seg.path, e))?;
        decode_entry(
            seg,
            loc,
            Bytes::from(buf),
            index,
            self.inner.opts.max_entry_size,
        )
    }

    /// Reads entries `lo..hi` with one `pread` per segment. When
    /// `max_bytes` is given, stops once the entries' data adds up to more
    /// than it, but always returns at least one entry.
    ///
    /// Errors with [`Error::Compacted`] when `lo < first_index()` and
    /// [`Error::Unavailable`] when `hi > last_index() + 1`.
    pub fn entries(&self, lo: u64, hi: u64, max_bytes: Option<u64>) -> Result<Vec<Entry>> {
        let ix = self.inner.index.read();
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
        let mut out = Vec::with_capacity((hi - lo).min(4096) as usize);
        let max = max_bytes.unwrap_or(u64::MAX);
        // A lower bound of the data bytes read so far: an entry frame's data
        // is at least its length less ENTRY_OVERHEAD, so stopping when the
        // bound passes `max` never drops an entry the exact rule keeps.
        let mut at_least = 0u64;
        let mut next = lo;
        'segments: while next < hi {
            let k = ix
                .segment_pos(next)
                .ok_or_else(|| internal(&self.inner.dir, format!("no segment holds {next}")))?;
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
                let mut buf = vec![0u8; (max_end - min_off) as usize];
                seg.file
                    .read_exact_at(&mut buf, min_off)
                    .map_err(|e| Error::io("read entries", &seg.path, e))?;
                let buf = Bytes::from(buf);
                for i in next..stop {
                    let loc = seg.locs[(i - seg.first_index) as usize];
                    let at = (u64::from(loc.offset) - min_off) as usize;
                    let frame = buf.slice(at..at + loc.len as usize);
                    out.push(decode_entry(
                        seg,
                        loc,
                        frame,
                        i,
                        self.inner.opts.max_entry_size,
                    )?);
                }
            }
            next = stop;
            if full {
                break 'segments;
            }
        }
        // The exact rule: at least one entry, then while the data fits.
        if max_bytes.is_some() {
            let mut size = 0u64;
            let keep = out
                .iter()
                .enumerate()
                .take_while(|(j, e)| {
                    size = size.saturating_add(e.data.len() as u64);
                    *j == 0 || size <= max
                })
                .count();
            out.truncate(keep);
        }
        Ok(out)
    }

    /// A streaming iterator over entries `lo..hi` (clamped to the log's
    /// current range when it starts): one entry in memory at a time. Each
    /// step reads one entry, so entries cut or compacted while iterating
    /// end the iteration with an error for that index.
    pub fn iter(&self, lo: u64, hi: u64) -> Iter<'_> {
        let (first, last) = {
            let ix = self.inner.index.read();
            (ix.first_index, ix.last_index)
        };
        Iter {
            log: self,
            next: lo.max(first),
            end: hi.min(last + 1),
        }
    }

    /// A cheap snapshot of the log's counters, for users without a metrics
    /// backend.
    pub fn stats(&self) -> LogStats {
        let (writes, durable_writes, sync_rounds) = self.inner.durability.counters();
        let ix = self.inner.index.read();
        LogStats {
            first_index: ix.first_index,
            last_index: ix.last_index,
            segments: ix.segments.len(),
            index_memory_bytes: ix.memory_bytes(),
            writes,
            durable_writes,
            sync_rounds,
        }
    }

    /// Bytes of memory the in-memory index uses.
    pub fn index_memory_bytes(&self) -> usize {
        self.inner.index.read().memory_bytes()
    }

    /// The segment files, oldest first, as `(path, first index, entries)`.
    pub fn segments(&self) -> Vec<(PathBuf, u64, u64)> {
        let ix = self.inner.index.read();
        ix.segments
            .iter()
            .map(|s| (s.path.clone(), s.first_index, s.locs.len() as u64))
            .collect()
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Some(s) = self.syncer.take() {
            s.stop();
        }
        if let Some(p) = self.inner.pipeline.lock().take() {
            self.inner.durability.stop_syncer(p);
        }
        if let Some(mut p) = self.inner.preparer.lock().take() {
            p.stop();
        }
        self.inner.join_sealers();
        if let Err(e) = self.inner.sync_if_dirty() {
            log::error!(
                "raftwal: final sync of {} failed: {e}",
                self.inner.dir.display()
            );
        }
    }
}

/// Counters of a [`Log`], from [`Log::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LogStats {
    /// The first index.
    pub first_index: u64,
    /// The last index.
    pub last_index: u64,
    /// Segment files in use.
    pub segments: usize,
    /// Bytes of memory the in-memory index uses.
    pub index_memory_bytes: usize,
    /// Writes issued since the log was opened (each one `write` call).
    pub writes: u64,
    /// Writes known durable since the log was opened.
    pub durable_writes: u64,
    /// `fdatasync` rounds run for writes (group commit shares one round
    /// among all writes issued before it started).
    pub sync_rounds: u64,
}

/// A streaming iterator over a range of a [`Log`]; see [`Log::iter`].
#[derive(Debug)]
pub struct Iter<'a> {
    log: &'a Log,
    next: u64,
    end: u64,
}

impl Iterator for Iter<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if self.next >= self.end {
            return None;
        }
        let r = self.log.get_entry(self.next);
        if r.is_err() {
            self.end = self.next;
        }
        self.next += 1;
        Some(r)
    }
}

fn lock_dir(fs: &dyn FileSystem, dir: &Path) -> Result<Box<dyn Any + Send + Sync>> {
    let path = dir.join(LOCK_FILE);
    fs.lock(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => Error::Locked {
            dir: dir.to_path_buf(),
        },
        _ => Error::io("lock", &path, e),
    })
}

pub(crate) fn internal(dir: &Path, msg: String) -> Error {
    Error::corruption(dir, 0, format!("internal inconsistency: {msg}"))
}

pub(crate) fn term_in(ix: &Index, index: u64) -> Result<u64> {
    if index.checked_add(1) == Some(ix.first_index) {
        return Ok(ix.prev_term);
    }
    check_range(ix, index)?;
    ix.term_of(index).ok_or(Error::Unavailable {
        index,
        last_index: ix.last_index,
    })
}

fn check_range(ix: &Index, index: u64) -> Result<()> {
    if index < ix.first_index {
        return Err(Error::Compacted {
            index,
            first_index: ix.first_index,
        });
    }
    if index > ix.last_index {
        return Err(Error::Unavailable {
            index,
            last_index: ix.last_index,
        });
    }
    Ok(())
}

/// Verifies and decodes the entry frame `frame` read from `loc` in `seg`.
fn decode_entry(seg: &Segment, loc: Loc, frame: Bytes, index: u64, max: u64) -> Result<Entry> {
    let offset = u64::from(loc.offset);
    let bad = |reason: String| Error::corruption(&seg.path, offset, reason);
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
    let payload = frame.slice(HEADER_LEN..);
    if !h.verify(frame::salt(seg.sequence), &payload) {
        return Err(bad("CRC mismatch on read".into()));
    }
    let e =
        proto::Entry::decode(payload).map_err(|e| bad(format!("entry does not decode: {e}")))?;
    if e.index != index {
        return Err(bad(format!(
            "frame holds entry {} where {index} was expected",
            e.index
        )));
    }
    Ok(Entry {
        index: e.index,
        term: e.term,
        data: e.data,
    })
}
