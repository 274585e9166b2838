//! The background syncer of [`SyncPolicy::Interval`](crate::SyncPolicy::Interval).

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;

use crate::durability::Durability;
use crate::thread::Thread;

/// A thread that syncs the log every interval while it has unsynced data.
/// Stopped (and joined) by [`Syncer::stop`] when the log is dropped.
pub(crate) struct Syncer {
    stop: Sender<()>,
    thread: Thread,
}

impl Syncer {
    /// Starts the syncer for `policy`, if the policy needs one.
    pub(crate) fn start(durability: Arc<Durability>) -> Option<Syncer> {
        let every = durability.policy.interval()?;
        let (stop, rx) = mpsc::channel::<()>();
        let thread = Thread::spawn("raftwal-sync", move || loop {
            match rx.recv_timeout(every) {
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = durability.sync_if_dirty() {
                        log::error!("raftwal: background sync failed: {e}");
                        // A poisoned log stays poisoned; keep waiting for
                        // the stop signal without spinning on errors.
                    }
                }
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        })
        .ok()?;
        Some(Syncer { stop, thread })
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        self.thread.join();
    }
}
