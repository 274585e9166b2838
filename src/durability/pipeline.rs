//! The background syncer of [`Log::submit`](crate::Log::submit).

use crate::thread::Thread;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::round::Role;
use super::Durability;

impl Durability {
    /// Asks the background syncer to make everything issued durable.
    pub(crate) fn request_async(&self) {
        if !self.async_pending.swap(true, Ordering::AcqRel) {
            // The syncer checks the flag under the lock before it waits:
            // taking the lock here means it is either before that check
            // (and sees the flag) or already waiting (and is woken).
            let _s = self.state.lock();
            self.wanted.notify_one();
        }
    }

    /// Starts the background syncer serving [`Durability::request_async`].
    pub(crate) fn start_syncer(self: &Arc<Self>) -> Option<Thread> {
        let d = Arc::clone(self);
        Thread::spawn("raftwal-pipeline", move || loop {
            let target = {
                let mut s = d.state.lock();
                while !s.stop && !d.async_pending.swap(false, Ordering::AcqRel) {
                    d.wanted.wait(&mut s);
                }
                if s.stop {
                    return;
                }
                s.written
            };
            // Errors poison the log; submitters see them on `wait`.
            let _ = d.wait_for(target, Role::Pipeline);
        })
        .ok()
        .inspect(|_| self.state.lock().pipeline = true)
    }

    /// Stops the background syncer.
    pub(crate) fn stop_syncer(&self, thread: Thread) {
        {
            let mut s = self.state.lock();
            s.stop = true;
            s.pipeline = false;
        }
        self.wanted.notify_all();
        // Tickets' waiters left to the syncer run their rounds themselves
        // from now on (a ticket may outlive the log).
        self.done.notify_all();
        thread.join();
    }
}
