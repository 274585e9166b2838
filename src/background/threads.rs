//! Every thread a log runs besides its callers', in one place: each is a
//! [`Worker`] made here when the log opens (its
//! thread started then or on first use), and all are stopped here, in one
//! order, when the log closes.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use super::prepare::Preparer;
use super::remove::Remover;
use super::writeback::Writeback;
use crate::durability::Durability;
use crate::format::index::Index;
use crate::options::{Options, Preallocate};
use crate::worker::Worker;

/// The log's background workers: the interval syncer, the preparer, the
/// sealer, the remover and the writeback hinter (the pipeline syncer of
/// `Log::submit` belongs to the durability state; it is started and
/// stopped from here).
pub(crate) struct Background {
    durability: Arc<Durability>,
    /// `SyncPolicy::Interval`'s syncer, started at open.
    interval: Option<Worker<()>>,
    /// Whether the pipeline syncer runs (checked on every submit).
    pipeline_started: AtomicBool,
    /// Keeps the next segment ready (when `Options::preallocate`).
    preparer: Option<Preparer>,
    /// Writes the footers of segments the log rolled past.
    sealer: Worker<u64>,
    /// Unlinks the segments a compaction superseded.
    pub(crate) remover: Remover,
    /// Starts writeback of filled ranges under relaxed sync policies.
    pub(crate) writeback: Writeback,
}

impl Background {
    /// The workers of a log just opened in `dir`, with the threads that
    /// run from the start started: the preparer (under a preallocating
    /// mode, when it has a file to check or a segment of `wanted` bytes to
    /// prepare at once) and the interval syncer (under
    /// `SyncPolicy::Interval`). The others start on first use.
    pub(crate) fn start(
        opts: &Options,
        dir: &Path,
        index: &Arc<RwLock<Index>>,
        durability: &Arc<Durability>,
        wanted: Option<u64>,
    ) -> Background {
        let fs = &opts.file_system;
        Background {
            durability: Arc::clone(durability),
            interval: super::sync::start(durability),
            pipeline_started: AtomicBool::new(false),
            preparer: (opts.preallocate != Preallocate::None)
                .then(|| Preparer::start(Arc::clone(fs), dir, opts.preallocate, wanted)),
            sealer: super::seal::sealer(Arc::clone(index), Arc::clone(durability)),
            remover: Remover::new(Arc::clone(fs), dir),
            writeback: Writeback::new(),
        }
    }

    /// The preparer, when one runs.
    pub(crate) fn preparer(&self) -> Option<&Preparer> {
        self.preparer.as_ref()
    }

    /// Seals segment `sequence` (writes its footer) on the sealer's
    /// thread. If that thread cannot run, the segment stays unsealed (the
    /// next open scans it).
    pub(crate) fn start_sealing(&self, sequence: u64) {
        if self.sealer.push(vec![sequence], usize::MAX).is_err() {
            // Stopped (the log is closing) or no thread: the segment stays
            // valid unsealed, and the next open scans it.
            log::warn!("raftwal: segment {sequence} left unsealed");
        }
    }

    /// Whether the background syncer of `Log::submit` runs (then submitted
    /// batches may be staged: its rounds write them out).
    pub(crate) fn pipeline_running(&self) -> bool {
        self.pipeline_started.load(Ordering::Acquire)
    }

    /// Starts the background syncer of `Log::submit` if it is not running.
    pub(crate) fn ensure_pipeline(&self) {
        if !self.pipeline_started.load(Ordering::Acquire) && self.durability.start_syncer() {
            self.pipeline_started.store(true, Ordering::Release);
        }
    }

    /// Stops every worker and waits for it, in this order:
    /// 1. the syncers, so that no new round starts (waiters left to the
    ///    pipeline run their own rounds from then on);
    /// 2. the preparer (a zero-fill under way stops early; a prepared file
    ///    stays for the next open to adopt);
    /// 3. the sealer, after sealing every segment it was given;
    /// 4. the remover, after unlinking everything it was given;
    /// 5. the writeback hinter (hints still queued are dropped).
    pub(crate) fn stop(&self) {
        if let Some(s) = &self.interval {
            s.stop(false);
        }
        self.durability.stop_syncer();
        if let Some(p) = &self.preparer {
            p.stop();
        }
        self.sealer.stop(true);
        self.remover.stop();
        self.writeback.stop();
    }
}
