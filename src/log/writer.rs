//! The writer's own state (behind `Inner::writer`), and where in a
//! segment it asks the preparer for the next one.

use std::path::PathBuf;
use std::sync::Arc;

use crate::format::batch::WriteBatch;
use crate::format::index::Segment;
use crate::fs::FileHandle;

/// The active segment as the writer knows it. Only the writer changes the
/// active segment, so it reads this copy instead of taking the index lock;
/// each write publishes its entries and the new length to the index, where
/// readers find them.
pub(crate) struct Active {
    pub(crate) file: Arc<dyn FileHandle>,
    pub(crate) path: PathBuf,
    pub(crate) sequence: u64,
    /// Where the next write goes (the end of the data).
    pub(crate) len: u64,
    /// The length the file was preallocated to (0: it grows as written).
    pub(crate) preallocated: u64,
    /// Whether it holds entries (a roll never leaves a segment without).
    pub(crate) holds_entries: bool,
}

impl Active {
    /// The writer's copy of `s`, the index's last segment.
    pub(crate) fn of(s: &Segment) -> Active {
        Active {
            file: Arc::clone(&s.file),
            path: s.path.clone(),
            sequence: s.sequence,
            len: s.len,
            preallocated: s.preallocated,
            holds_entries: !s.locs.is_empty(),
        }
    }

    /// How large it may grow (see `Segment::capacity`).
    pub(crate) fn capacity(&self, segment_size: u64) -> u64 {
        crate::format::index::capacity(self.preallocated, segment_size)
    }
}

/// State owned by the (single) writer, behind `Inner::writer`. Poisoning
/// and durability live in [`Durability`](crate::durability::Durability).
pub(crate) struct Writer {
    /// The active segment.
    pub(crate) active: Active,
    /// The sequence number the next new segment gets.
    pub(crate) next_sequence: u64,
    /// A batch kept for `append_assigned`, to reuse its buffers.
    pub(crate) batch_cache: WriteBatch,
    /// Reused buffer for frames composed at write time.
    pub(crate) scratch: Vec<u8>,
    /// When and at which offset the first write into the active segment
    /// since it became active (or since the log opened) started: the
    /// writer's fill rate, told to the preparer at the prepare mark.
    pub(crate) fill_start: Option<(std::time::Instant, u64)>,
    /// Roll to the next segment as soon as a prepared one is ready: set
    /// at open when recovery gave the active segment's tail back as
    /// unwritten space under `Preallocate::ZeroFill` (synced appends into
    /// it would pay for extent conversions until the next roll). The
    /// preparer is asked for that segment at the first write, not at open:
    /// a store that is only read never pays for it.
    pub(crate) roll_when_prepared: bool,
    /// The preparer was asked for the segment `roll_when_prepared` waits
    /// for.
    pub(crate) asked_after_open: bool,
}

impl Writer {
    pub(crate) fn new(next_sequence: u64, active: Active) -> Writer {
        Writer {
            active,
            next_sequence,
            batch_cache: WriteBatch::new(),
            scratch: Vec::new(),
            fill_start: None,
            roll_when_prepared: false,
            asked_after_open: false,
        }
    }
}

/// The offset in the active segment (of `capacity` bytes, segments
/// growing up to `segment_size`) past which the preparer is asked for the
/// next one: half of a full-size segment; an eighth of a smaller one. A
/// growing segment is followed by one twice its size, whose zero-fill
/// takes about as long as the writer takes to fill this one: asked at the
/// half mark, a busy writer would get there first and write into space
/// that is only allocated; asked at the first write, every lightly used
/// store would hold a second, unused segment.
pub(crate) fn prepare_mark(capacity: u64, segment_size: u64) -> u64 {
    match capacity < segment_size {
        true => capacity / 8,
        false => capacity / 2,
    }
}
