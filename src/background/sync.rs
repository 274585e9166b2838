//! The background syncer of [`SyncPolicy::Interval`](crate::SyncPolicy::Interval).

use std::sync::Arc;

use crate::durability::Durability;
use crate::worker::{Next, Stop, Worker};

/// Starts a worker that syncs the log every interval while it has unsynced
/// data, if the policy needs one.
pub(crate) fn start(durability: &Arc<Durability>) -> Option<Worker<()>> {
    let every = durability.policy.interval()?;
    let d = Arc::clone(durability);
    let worker = Worker::new("raftwal-sync", move |_: Vec<()>, _: &Stop| {
        if let Err(e) = d.sync_if_dirty() {
            // A poisoned log stays poisoned; the next interval finds it so.
            log::error!("raftwal: background sync failed: {e}");
        }
        Next::After(every)
    });
    match worker.start(Next::After(every)) {
        Ok(()) => Some(worker),
        Err(e) => {
            log::warn!("raftwal: could not start the interval syncer: {e}");
            None
        }
    }
}
