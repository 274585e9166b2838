//! The background syncer of [`Log::submit`](crate::Log::submit): a
//! [`Worker`] that runs a sync round whenever a submit (or a ticket's
//! waiter) asks for one.

use std::sync::atomic::Ordering;
use std::sync::Weak;

use super::round::Role;
use super::Durability;
use crate::worker::{Next, Stop, Worker};

/// The worker that runs the pipeline's rounds, for the durability state
/// `d` (held weakly: the state owns the worker).
pub(super) fn worker(d: Weak<Durability>) -> Worker<()> {
    Worker::new("raftwal-pipeline", move |_: Vec<()>, _: &Stop| {
        if let Some(d) = d.upgrade() {
            d.pipeline_round();
        }
        Next::Idle
    })
}

impl Durability {
    /// Asks the background syncer to make everything issued durable.
    pub(crate) fn request_async(&self) {
        if !self.async_pending.swap(true, Ordering::AcqRel) {
            self.wake_pipeline();
        }
    }

    /// Queues a round for the syncer; `async_pending` was just raised. Its
    /// round clears the flag before it reads what was issued, so a write
    /// issued before the flag was raised is covered, and one after it
    /// raises the flag again. Returns false when the syncer is stopped.
    pub(super) fn wake_pipeline(&self) -> bool {
        if self.pipeline.push(vec![()], usize::MAX).is_err() {
            self.async_pending.store(false, Ordering::Release);
            return false;
        }
        true
    }

    /// One round for everything issued so far (errors poison the log;
    /// submitters see them on `wait`).
    fn pipeline_round(&self) {
        self.async_pending.swap(false, Ordering::AcqRel);
        let target = self.state.lock().written;
        let _ = self.wait_for(target, Role::Pipeline);
    }

    /// Starts the background syncer serving [`Durability::request_async`];
    /// false if it cannot run (then tickets' waiters run their own rounds).
    pub(crate) fn start_syncer(&self) -> bool {
        match self.pipeline.start(Next::Idle) {
            Ok(()) => {
                self.state.lock().pipeline = true;
                true
            }
            Err(e) => {
                log::warn!("raftwal: could not start the pipeline syncer: {e}");
                false
            }
        }
    }

    /// Stops the background syncer (for good).
    pub(crate) fn stop_syncer(&self) {
        self.state.lock().pipeline = false;
        // Tickets' waiters left to the syncer run their rounds themselves
        // from now on (a ticket may outlive the log).
        self.done.notify_all();
        self.pipeline.stop(false);
    }
}
