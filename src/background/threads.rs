//! Every thread a log runs besides its callers', in one place: each is
//! started here (at open, or on first use) and all are stopped here, in
//! one order, when the log closes.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard, RwLock};

use super::prepare::Preparer;
use super::remove::Remover;
use super::seal::seal;
use super::sync::Syncer;
use super::writeback::Writeback;
use crate::durability::Durability;
use crate::format::index::Index;
use crate::fs::FileSystem;
use crate::options::{Options, Preallocate};
use crate::thread::Thread;

/// The log's background threads: the interval syncer, the pipeline syncer
/// of `Log::submit`, the preparer, the sealers, the remover and the
/// writeback hinter.
pub(crate) struct Background {
    /// `SyncPolicy::Interval`'s syncer, started at open.
    interval: Mutex<Option<Syncer>>,
    /// The background syncer of `Log::submit`, started on first use.
    pipeline: Mutex<Option<Thread>>,
    /// Whether `pipeline` holds a running thread (checked without its lock
    /// on every submit).
    pipeline_started: AtomicBool,
    /// Keeps the next segment ready (when `Options::preallocate`).
    preparer: Mutex<Option<Preparer>>,
    /// Threads writing the footers of segments the log rolled past.
    sealers: Mutex<Vec<Thread>>,
    /// Unlinks the segments a compaction superseded.
    pub(crate) remover: Remover,
    /// Starts writeback of filled ranges under relaxed sync policies.
    pub(crate) writeback: Writeback,
}

impl Background {
    /// No thread runs yet.
    pub(crate) fn new(fs: Arc<dyn FileSystem>, dir: &Path) -> Background {
        Background {
            interval: Mutex::new(None),
            pipeline: Mutex::new(None),
            pipeline_started: AtomicBool::new(false),
            preparer: Mutex::new(None),
            sealers: Mutex::new(Vec::new()),
            remover: Remover::new(fs, dir),
            writeback: Writeback::new(),
        }
    }

    /// Starts the threads an open log runs from the start: the preparer
    /// (under a preallocating mode; preparing a segment of `wanted` bytes
    /// at once when given) and the interval syncer (under
    /// `SyncPolicy::Interval`). The others start on first use.
    pub(crate) fn start(
        &self,
        opts: &Options,
        dir: &Path,
        durability: &Arc<Durability>,
        wanted: Option<u64>,
    ) {
        if opts.preallocate != Preallocate::None {
            *self.preparer.lock() = Some(Preparer::start(
                Arc::clone(&opts.file_system),
                dir,
                opts.preallocate,
                wanted,
            ));
        }
        *self.interval.lock() = Syncer::start(Arc::clone(durability));
    }

    /// The preparer, when one runs.
    pub(crate) fn preparer(&self) -> MutexGuard<'_, Option<Preparer>> {
        self.preparer.lock()
    }

    /// Seals segment `sequence` (writes its footer) on a thread of its own.
    pub(crate) fn start_sealing(
        &self,
        index: &Arc<RwLock<Index>>,
        durability: &Arc<Durability>,
        sequence: u64,
    ) {
        let (index, durability) = (Arc::clone(index), Arc::clone(durability));
        let spawned = Thread::spawn("raftwal-seal", move || {
            if let Err(e) = seal(&index, &durability, sequence) {
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

    /// Whether the background syncer of `Log::submit` runs (then submitted
    /// batches may be staged: its rounds write them out).
    pub(crate) fn pipeline_running(&self) -> bool {
        self.pipeline_started.load(Ordering::Acquire)
    }

    /// Starts the background syncer of `Log::submit` if it is not running.
    pub(crate) fn ensure_pipeline(&self, durability: &Arc<Durability>) {
        if self.pipeline_started.load(Ordering::Acquire) {
            return;
        }
        let mut p = self.pipeline.lock();
        if p.is_none() {
            *p = durability.start_syncer();
            self.pipeline_started.store(p.is_some(), Ordering::Release);
        }
    }

    /// Stops every thread and waits for it, in this order:
    /// 1. the syncers, so that no new round starts (waiters left to the
    ///    pipeline run their own rounds from then on);
    /// 2. the preparer (a zero-fill under way stops early; a prepared file
    ///    stays for the next open to adopt);
    /// 3. the sealers, each finishing its footer;
    /// 4. the remover, after unlinking everything it was given;
    /// 5. the writeback hinter (hints still queued are dropped).
    pub(crate) fn stop(&self, durability: &Durability) {
        if let Some(s) = self.interval.lock().take() {
            s.stop();
        }
        if let Some(p) = self.pipeline.lock().take() {
            durability.stop_syncer(p);
        }
        if let Some(mut p) = self.preparer.lock().take() {
            p.stop();
        }
        let sealers: Vec<_> = self.sealers.lock().drain(..).collect();
        for t in sealers {
            t.join();
        }
        self.remover.stop();
        self.writeback.stop();
    }
}
