//! The state one open log shares between its facade ([`Log`](crate::Log)),
//! its writer and readers, and its background threads.

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::background::prepare::Preparer;
use crate::background::remove::Remover;
use crate::durability::Durability;
use crate::format::index::Index;
use crate::log::writer::Writer;
use crate::options::Options;
use crate::recovery::RecoveryReport;

/// What the log's threads share: the directory, the options, the index,
/// the writer's state, durability and the background workers.
pub(crate) struct Inner {
    pub dir: PathBuf,
    pub opts: Options,
    /// Held for the life of the log: the directory's exclusive lock.
    pub _lock: Box<dyn Any + Send + Sync>,
    pub index: Arc<RwLock<Index>>,
    pub writer: Mutex<Writer>,
    pub durability: Arc<Durability>,
    /// The background syncer of `Log::submit`, started on first use.
    pub pipeline: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Whether `pipeline` holds a running thread (checked without its lock
    /// on every submit).
    pub pipeline_started: std::sync::atomic::AtomicBool,
    /// Keeps a preallocated segment ready (when `Options::preallocate`).
    pub preparer: Mutex<Option<Preparer>>,
    /// Threads writing the footers of sealed segments.
    pub sealers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Unlinks the segments a compaction superseded.
    pub remover: Remover,
    /// Starts writeback of filled ranges under relaxed sync policies.
    pub writeback: crate::background::writeback::Writeback,
    pub report: RecoveryReport,
}

impl Inner {
    /// A broken invariant of this log (see `Error::Internal`).
    pub(crate) fn internal(&self, msg: String) -> crate::error::Error {
        crate::error::Error::internal(format!("{msg} (log {})", self.dir.display()))
    }

    /// Seals segment `sequence` (writes its footer) on a background thread.
    pub(crate) fn start_sealing(&self, sequence: u64) {
        let (index, durability) = (Arc::clone(&self.index), Arc::clone(&self.durability));
        let spawned = std::thread::Builder::new()
            .name("raftwal-seal".into())
            .spawn(move || {
                if let Err(e) = crate::background::seal::seal(&index, &durability, sequence) {
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
    pub(crate) fn join_sealers(&self) {
        let handles: Vec<_> = self.sealers.lock().drain(..).collect();
        for h in handles {
            if h.join().is_err() {
                log::error!("raftwal: a sealing thread panicked");
            }
        }
    }

    /// Whether the background syncer of `Log::submit` runs (then submitted
    /// batches may be staged: its rounds write them out).
    pub(crate) fn pipeline_running(&self) -> bool {
        self.pipeline_started
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Starts the background syncer of `Log::submit` if it is not running.
    pub(crate) fn ensure_pipeline(&self) {
        use std::sync::atomic::Ordering;
        if self.pipeline_started.load(Ordering::Acquire) {
            return;
        }
        let mut p = self.pipeline.lock();
        if p.is_none() {
            *p = self.durability.start_syncer();
            self.pipeline_started.store(p.is_some(), Ordering::Release);
        }
    }
}
