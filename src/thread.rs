//! The one way raftwal starts and stops a thread of its own: named
//! `raftwal-<what>`, started with [`Thread::spawn`], and stopped by its
//! owner's signal (a flag, a channel, a condvar) followed by
//! [`Thread::join`], which logs a panic instead of passing it on (a log
//! that is closing must not panic its caller).

use std::io;
use std::thread::JoinHandle;

/// A running background thread.
pub(crate) struct Thread {
    name: &'static str,
    handle: JoinHandle<()>,
}

impl Thread {
    /// Starts `body` on a thread named `name` (`raftwal-…`).
    pub(crate) fn spawn(
        name: &'static str,
        body: impl FnOnce() + Send + 'static,
    ) -> io::Result<Thread> {
        let handle = std::thread::Builder::new().name(name.into()).spawn(body)?;
        Ok(Thread { name, handle })
    }

    /// Whether its body has returned.
    pub(crate) fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits for the thread (its owner has told it to stop); a panic in it
    /// is logged.
    pub(crate) fn join(self) {
        if self.handle.join().is_err() {
            log::error!("raftwal: the {} thread panicked", self.name);
        }
    }
}
