//! Configuration of a [`Log`](crate::Log) and a [`RaftLogStore`](crate::RaftLogStore).

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::fs::{FileSystem, StdFileSystem};

/// When appended data is made durable with `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every write returns only after its data is on disk (`fdatasync`), and
    /// the directory is synced whenever a file appears or vanishes. The
    /// default: nothing acknowledged is ever lost.
    Always,
    /// `fdatasync` after every `n`th write (a write is one `append` or one
    /// batch); up to `n - 1` acknowledged writes may be lost in a crash.
    EveryN(u32),
    /// A background thread syncs every `Duration` while there is unsynced
    /// data; a crash may lose what was written in the last interval. The
    /// thread stops when the log is dropped.
    Interval(Duration),
    /// Only [`Log::sync`](crate::Log::sync) (and a clean drop) make data durable.
    Manual,
}

/// What recovery does with a frame that fails validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMode {
    /// A torn tail (a cut header, a cut payload, zeros, a bad CRC on the
    /// last frame) is truncated away and logged; a bad frame anywhere else
    /// is [`Error::Corruption`]. A torn tail is normally in the last
    /// segment; it may also be in an older segment that was never sealed,
    /// when no later write is marked `PRIOR_SYNCED` (rolls do not sync the
    /// segment they leave; the later segments are then removed), and a
    /// segment's torn header with frames behind it is removed on the same
    /// condition (see `docs/FORMAT.md`). A sealed segment never holds a
    /// torn tail. The default: this is what a crash leaves behind, and
    /// nothing acknowledged is in a torn tail.
    TolerateTailCorruption,
    /// Any bad frame, a torn tail included, is [`Error::Corruption`] and the
    /// log does not open. Nothing is changed on disk.
    AbsoluteConsistency,
    /// The longest valid prefix of the log is kept and everything after the
    /// first bad frame is dropped (and logged). Use it to salvage a damaged
    /// log; acknowledged entries after the damage are lost.
    TolerateAnyCorruption,
}

/// How segment files are prepared before the log writes into them. The
/// header of a prepared segment records its length in `preallocated`
/// (FORMAT.md): zeros below it are unused space, whichever way they were
/// made, so the modes can be changed between opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preallocate {
    /// Segments are created empty and grow as they are written: every
    /// synced append also writes the file's new size (≈ 144 µs per 256 B
    /// synced append on the reference machine, against ≈ 97 µs into
    /// allocated space).
    None,
    /// A background thread creates the next segment at its full size (see
    /// [`Options::segment_size`]) with `fallocate`: appends never grow the file, but
    /// each first write to a block converts an unwritten extent, which the
    /// next `fdatasync` must commit.
    Allocate,
    /// As [`Allocate`](Preallocate::Allocate), then the background thread
    /// writes zeros over the whole segment (4 KiB at a time: larger writes
    /// leave large page-cache folios that make every small append slower)
    /// and syncs them, leaving the pages cached: appends then overwrite
    /// blocks that are already written and cached, as a pre-zeroed file
    /// is, the fastest durable path on the reference machine. It writes
    /// every segment's bytes twice (once as zeros, in the background).
    ///
    /// The thread only allocates the next segment when the writer would
    /// outrun the zero-fill: when, at the rate it filled the first half of
    /// the active segment, it will fill the rest sooner than the last
    /// zero-fill took (before any, ≈ 100 ms per 64 MiB is assumed). Such a
    /// writer gains nothing from zeroed blocks it reaches before they are
    /// ready, and a zero-fill racing it stalled its appends for 10-35 ms
    /// on the reference machine (≈ 1 ms without). When the thread is behind
    /// anyway, a roll allocates on the spot (never a zero-fill on the
    /// writer's thread). A new log's first segment
    /// ([`Options::first_segment_size`], 1 MiB by default) is zero-filled
    /// at open (≈ 2-3 ms on the reference machine). A reopened log's
    /// active segment has its tail given back as unwritten space by
    /// recovery (see `docs/FORMAT.md`); when it is a full-size segment,
    /// the first write asks the preparer for a zero-filled one, and the
    /// first write after it is ready rolls to it (a smaller segment is
    /// written on to its end).
    /// [`LogStats`](crate::LogStats) counts the segments prepared each
    /// way. The default: see "What each option costs" in
    /// `docs/PERFORMANCE.md` for what it wins over `Allocate`.
    ZeroFill,
}

/// Options for opening a log. Build them with [`Options::default`] and the
/// fields you want to change.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// When writes are made durable. Default: [`SyncPolicy::Always`].
    pub sync: SyncPolicy,
    /// The largest a segment grows before it is sealed and a new one
    /// started (a batch is never split across segments, so one may be
    /// larger). Under a preallocating mode segments start at
    /// [`first_segment_size`](Options::first_segment_size) and each is
    /// twice the one before, up to this: a small store stays small, a busy
    /// one reaches full segments after writing about twice this much.
    /// Default: 64 MiB. Minimum: 4 KiB; maximum: 4 GiB - 1 (offsets within
    /// a segment are stored as `u32`).
    pub segment_size: u64,
    /// The size of a log's first segment under a preallocating mode (and
    /// of the first one after a reopen that found none to write into); the
    /// segments after it double up to
    /// [`segment_size`](Options::segment_size), which also caps this.
    /// Under [`Preallocate::None`] files grow as written, and every segment
    /// may reach `segment_size`. Default: 1 MiB (a new store preallocates
    /// and zero-fills that much, and opens in a few milliseconds).
    pub first_segment_size: u64,
    /// The largest payload of one entry or state blob, enforced on write
    /// ([`Error::EntryTooLarge`]) and on read (a longer length field is
    /// corruption and is never allocated). Default: 64 MiB.
    pub max_entry_size: u64,
    /// How recovery treats bad frames. Default:
    /// [`RecoveryMode::TolerateTailCorruption`].
    pub recovery_mode: RecoveryMode,
    /// How segment files are prepared ahead of use by a background thread
    /// (see [`Preallocate`]), so that an append never grows a file and a
    /// segment roll never waits for a file to be created. Zeros inside the
    /// preallocated length are unused space, so under
    /// [`RecoveryMode::AbsoluteConsistency`] a tail zeroed by a crash there
    /// reads as the end of the log, not as damage.
    /// Default: [`Preallocate::ZeroFill`].
    pub preallocate: Preallocate,
    /// Where every file operation goes: the file-system seam. Default:
    /// [`StdFileSystem`], the operating system's files. Tests plug in
    /// fault-injecting and power-loss simulators here; users can plug in
    /// encryption or their own storage.
    pub file_system: Arc<dyn FileSystem>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: SyncPolicy::Always,
            segment_size: 64 << 20,
            first_segment_size: 1 << 20,
            max_entry_size: 64 << 20,
            recovery_mode: RecoveryMode::TolerateTailCorruption,
            preallocate: Preallocate::ZeroFill,
            file_system: Arc::new(StdFileSystem),
        }
    }
}

/// The largest segment size: offsets within a segment are `u32`.
pub(crate) const MAX_SEGMENT_SIZE: u64 = u32::MAX as u64;
/// The smallest segment size accepted.
pub(crate) const MIN_SEGMENT_SIZE: u64 = 4096;

impl Options {
    /// Sets [`Options::sync`].
    pub fn sync(mut self, sync: SyncPolicy) -> Self {
        self.sync = sync;
        self
    }

    /// Sets [`Options::first_segment_size`].
    pub fn first_segment_size(mut self, bytes: u64) -> Self {
        self.first_segment_size = bytes;
        self
    }

    /// Sets [`Options::segment_size`].
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// Sets [`Options::max_entry_size`].
    pub fn max_entry_size(mut self, bytes: u64) -> Self {
        self.max_entry_size = bytes;
        self
    }

    /// Sets [`Options::recovery_mode`].
    pub fn recovery_mode(mut self, mode: RecoveryMode) -> Self {
        self.recovery_mode = mode;
        self
    }

    /// Sets [`Options::preallocate`].
    pub fn preallocate(mut self, mode: Preallocate) -> Self {
        self.preallocate = mode;
        self
    }

    /// Sets [`Options::file_system`].
    pub fn file_system(mut self, fs: Arc<dyn FileSystem>) -> Self {
        self.file_system = fs;
        self
    }

    /// The size of a new segment: the first one's (`after` is `None`), or
    /// twice `after`, the size of the segment it follows, up to
    /// `segment_size` (always `segment_size` without preallocation).
    pub(crate) fn next_segment_size(&self, after: Option<u64>) -> u64 {
        if self.preallocate == Preallocate::None {
            return self.segment_size;
        }
        let first = self.first_segment_size.min(self.segment_size);
        match after {
            None => first,
            Some(prev) => prev.saturating_mul(2).clamp(first, self.segment_size),
        }
    }

    /// Rejects combinations that cannot work, with a message that says why.
    pub(crate) fn validate(&self) -> Result<()> {
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&self.segment_size) {
            return Err(Error::InvalidOptions(format!(
                "segment_size {} is outside {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}",
                self.segment_size
            )));
        }
        if self.first_segment_size < MIN_SEGMENT_SIZE {
            return Err(Error::InvalidOptions(format!(
                "first_segment_size {} is below {MIN_SEGMENT_SIZE}",
                self.first_segment_size
            )));
        }
        // A frame's length field is a u32, and a frame must fit a segment.
        if self.max_entry_size == 0 || self.max_entry_size > MAX_SEGMENT_SIZE / 2 {
            return Err(Error::InvalidOptions(format!(
                "max_entry_size {} is outside 1..={}",
                self.max_entry_size,
                MAX_SEGMENT_SIZE / 2
            )));
        }
        match self.sync {
            SyncPolicy::EveryN(0) => Err(Error::InvalidOptions(
                "SyncPolicy::EveryN(0): n must be at least 1".into(),
            )),
            SyncPolicy::Interval(d) if d.is_zero() => Err(Error::InvalidOptions(
                "SyncPolicy::Interval: the interval must be longer than zero".into(),
            )),
            _ => Ok(()),
        }
    }
}
