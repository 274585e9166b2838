//! [`Log`]: the durable positional log, its open and its read path.

pub(crate) mod entry;
pub(crate) mod inner;
mod read;
pub(crate) mod write;
pub(crate) mod writer;

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use prost::bytes::Bytes;

use crate::background::threads::Background;
use crate::durability::Durability;
use crate::durability::Ticket;
use crate::error::{Error, Result};
use crate::format::batch::WriteBatch;
use crate::format::index::term_in;
use crate::fs::FileSystem;
use crate::log::entry::Entry;
use crate::log::inner::Inner;
use crate::log::writer::{prepare_mark, Active, Writer};
use crate::options::{Options, Preallocate};
use crate::recovery::{self, RecoveryReport};

/// The name of the lock file in a log directory.
pub const LOCK_FILE: &str = "LOCK";

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
        if dir.as_os_str().is_empty() {
            // Not the current directory by accident: nothing is touched.
            return Err(Error::InvalidArgument(
                "the log directory path is empty".into(),
            ));
        }
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
        let last = rec.index.segments.back();
        let active = last
            .map(|s| (Arc::clone(&s.file), s.path.clone()))
            .ok_or_else(|| {
                Error::internal(format!(
                    "recovery left no active segment in {}",
                    dir.display()
                ))
            })?;
        let mut writer = Writer::new(
            rec.next_sequence,
            last.map(Active::of).ok_or_else(|| {
                Error::internal(format!(
                    "recovery left no active segment in {}",
                    dir.display()
                ))
            })?,
        );
        // Recovery gave the active segment's tail back as unwritten space:
        // under ZeroFill, move to a zero-filled segment as soon as the
        // preparer has one rather than append into it until it fills. Only
        // for a full-size segment: a smaller one (a new or lightly used
        // log, whose segments are still growing) is soon filled, and a
        // store restarted often would otherwise grow a segment per restart.
        let full_size = rec
            .index
            .segments
            .back()
            .is_some_and(|a| a.capacity(opts.segment_size) >= opts.segment_size);
        writer.roll_when_prepared =
            rec.tail_reallocated && full_size && opts.preallocate == Preallocate::ZeroFill;
        // A reopened log whose active segment is past its prepare mark will
        // not pass it again: prepare at once. (One whose tail recovery gave
        // back asks at its first write: see `Writer::roll_when_prepared`.)
        let wanted = rec
            .index
            .segments
            .back()
            .map(|a| (a.len, a.capacity(opts.segment_size)))
            .filter(|&(len, cap)| len >= prepare_mark(cap, opts.segment_size))
            .map(|(_, cap)| opts.next_segment_size(Some(cap)));
        let durability = Durability::new(
            active.0,
            active.1,
            Arc::clone(&opts.file_system),
            &dir,
            opts.sync,
        );
        let index = Arc::new(RwLock::new(rec.index));
        let background = Background::start(&opts, &dir, &index, &durability, wanted);
        let inner = Arc::new(Inner {
            writer: Mutex::new(writer),
            durability,
            background,
            index,
            report: rec.report,
            dir,
            opts,
            _lock: lock,
        });
        Ok(Log { inner })
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
        let (segments_zero_filled, segments_allocated) = self
            .inner
            .background
            .preparer()
            .map_or((0, 0), |p| p.counts());
        let ix = self.inner.index.read();
        LogStats {
            first_index: ix.first_index,
            last_index: ix.last_index,
            segments: ix.segments.len(),
            index_memory_bytes: ix.memory_bytes(),
            writes,
            durable_writes,
            sync_rounds,
            segments_zero_filled,
            segments_allocated,
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

    /// Errors with [`Error::Poisoned`] once the log is poisoned (see
    /// `durability::Poison`).
    pub(crate) fn check_poisoned(&self) -> Result<()> {
        self.inner.durability.check()
    }

    /// Poisons the log for `cause`: a change of a layer above it (the raft
    /// store's) failed half-way, and only a reopen makes memory and disk
    /// agree again.
    pub(crate) fn poison_because(&self, cause: String) {
        self.inner.durability.poison_because(cause);
    }

    // The write path (`write.rs`).

    /// Appends `entries`, which must continue the log (the first has index
    /// `last_index() + 1`, the rest follow one by one), in one write. Under
    /// [`SyncPolicy::Always`](crate::SyncPolicy::Always) it returns once they are on disk.
    pub fn append(&self, entries: &[Entry]) -> Result<()> {
        self.inner.append(entries)
    }

    /// Writes a batch: its cut (if any), its entries and its state blob go
    /// to disk in one `write` and, under [`SyncPolicy::Always`](crate::SyncPolicy::Always), one
    /// `fdatasync` (shared with concurrent writers: group commit); once it
    /// returns, all of it is durable. A crash before then leaves a prefix of
    /// it in that order (see [`WriteBatch`]). A cut that
    /// reaches below the active segment opens a new segment (one more file
    /// and a directory sync).
    ///
    /// The batch's frames are sealed in place for the segment they land in;
    /// the batch is otherwise unchanged and can be cleared and reused.
    pub fn write(&self, batch: &mut WriteBatch) -> Result<()> {
        self.inner.write(batch)
    }

    /// Writes a batch like [`Log::write`] but returns as soon as the write is
    /// issued (visible to readers), whatever the sync policy. A background
    /// thread makes it durable with one `fdatasync` covering every write
    /// issued before that sync started; the returned [`Ticket`] tells when
    /// ([`Ticket::wait`], [`Ticket::is_durable`]). This is the path for
    /// raft-rs's asynchronous Ready handling.
    ///
    /// A batch of up to 64 KiB without a cut is *staged* once that thread
    /// runs: copied to a buffer in memory rather than written to the file
    /// at once. The thread's next round writes every staged batch with one
    /// `pwrite` before its `fdatasync`, so a writer that does not wait pays
    /// a copy per batch rather than a system call. Readers see staged
    /// batches as any other (a read of one writes the staged batches out
    /// first), every other write writes them out before itself, and
    /// dropping the `Log` makes them durable. What differs is a crash of
    /// the process: a batch still staged is lost with it, as a batch still
    /// in the page cache is lost with a crash of the machine; neither was
    /// durable. A failure to write staged batches out poisons the log like
    /// a failed `fdatasync` ([`Error::Poisoned`] from then on, for writes,
    /// tickets and reads of those batches).
    pub fn submit(&self, batch: &mut WriteBatch) -> Result<Ticket> {
        self.inner.submit(batch)
    }

    /// Appends one entry per element of `data`, all with `term`, at the
    /// indexes that follow the log's last index, and returns the first index
    /// assigned. Safe to call from many threads: each call is one write, and
    /// under [`SyncPolicy::Always`](crate::SyncPolicy::Always) concurrent callers share one
    /// `fdatasync` per round (group commit); each returns once its own
    /// entries are durable.
    pub fn append_assigned<D: AsRef<[u8]>>(&self, term: u64, data: &[D]) -> Result<u64> {
        self.inner.append_assigned(term, data)
    }

    /// Discards entries from `index` on; the next append must be `index`.
    /// Durable on return under [`SyncPolicy::Always`](crate::SyncPolicy::Always) (and always when the
    /// cut reaches below the active segment). Errors with
    /// [`Error::Compacted`] below the first index and
    /// [`Error::Unavailable`] past `last_index() + 1`.
    pub fn truncate_from_index(&self, index: u64) -> Result<()> {
        self.inner.truncate_from_index(index)
    }

    /// Sets the state blob (newest wins; it survives truncation, compaction,
    /// reset and segment deletion).
    pub fn set_state(&self, state: impl Into<Bytes>) -> Result<()> {
        self.inner.set_state(state)
    }

    /// Discards entries before `index`: records the new first index and the
    /// term of `index - 1` durably (always synced, whatever the policy), then
    /// deletes the segments that lie wholly below `index` on a background
    /// thread (they are gone by the time the `Log` is dropped). A no-op when
    /// `index <= first_index()`; [`Error::Unavailable`] when
    /// `index > last_index() + 1`.
    pub fn compact(&self, index: u64) -> Result<()> {
        self.inner.compact(index)
    }

    /// Empties the log so that it continues at `next_index`, with
    /// `term(next_index - 1) == term` (what a Raft node needs after
    /// installing a snapshot). The state blob is kept. Durable on return
    /// (always synced).
    pub fn reset(&self, next_index: u64, term: u64) -> Result<()> {
        self.inner.reset(next_index, term)
    }

    /// Makes everything written so far durable.
    pub fn sync(&self) -> Result<()> {
        self.inner.sync()
    }

    // The read path (`read.rs`).

    /// Reads entry `index`: one lookup in memory, one `pread` of exactly its
    /// frame, CRC verified.
    ///
    /// An entry still staged by [`Log::submit`] is written out first (with
    /// every staged batch): if that write fails the read returns its
    /// [`Error::Io`] and the log is poisoned; reads of staged entries then
    /// return [`Error::Poisoned`].
    pub fn get_entry(&self, index: u64) -> Result<Entry> {
        self.inner.get_entry(index)
    }

    /// Reads entries `lo..hi` with one `pread` per segment. When
    /// `max_bytes` is given, stops once the entries' data adds up to more
    /// than it, but always returns at least one entry.
    ///
    /// Errors with [`Error::Compacted`] when `lo < first_index()` and
    /// [`Error::Unavailable`] when `hi > last_index() + 1`; staged entries
    /// are written out first, as [`Log::get_entry`] says.
    pub fn entries(&self, lo: u64, hi: u64, max_bytes: Option<u64>) -> Result<Vec<Entry>> {
        self.inner.entries(lo, hi, max_bytes)
    }

    /// [`Log::entries`], each entry handed to `make` as `(index, term, data)`
    /// and the results collected: the same checks, limits and errors.
    pub(crate) fn read_with<T>(
        &self,
        lo: u64,
        hi: u64,
        max_bytes: Option<u64>,
        make: impl FnMut(u64, u64, Bytes) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.inner.read_with(lo, hi, max_bytes, make)
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.inner.background.stop();
        if let Err(e) = self.inner.durability.sync_if_dirty() {
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
    /// Segment files the background preparer zero-filled since the log
    /// opened ([`Preallocate::ZeroFill`]).
    pub segments_zero_filled: u64,
    /// Segment files the background preparer only allocated since the log
    /// opened: under `Preallocate::Allocate`, or under `ZeroFill` when the
    /// writer filled segments faster than a zero-fill would finish.
    pub segments_allocated: u64,
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
