//! The one poisoned state of a log: set by a failure after which what is
//! on disk (or what the raft store holds) is unknown, never cleared. Every
//! later write and wait, and every push or write-out of staged batches,
//! fails with [`Error::Poisoned`] until the log is reopened, which finds
//! what reached the disk. A failed `fdatasync` is never retried: the
//! kernel may have dropped the dirty pages, and a retry could report
//! success for lost data.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// See the module documentation. Shared by the durability tracker, the
/// stage and (through the log) the raft store.
#[derive(Default)]
pub(crate) struct Poison {
    /// Set with `cause`; read without a lock on every write.
    set: AtomicBool,
    /// The first failure's description.
    cause: Mutex<Option<String>>,
}

impl Poison {
    /// Whether the log is poisoned.
    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// [`Error::Poisoned`] with the first failure's description, once set.
    pub(crate) fn check(&self) -> Result<()> {
        if !self.is_set() {
            return Ok(());
        }
        match &*self.cause.lock() {
            Some(cause) => Err(Error::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Poisons the log; the first cause is the one reported.
    pub(crate) fn set(&self, cause: String) {
        let mut c = self.cause.lock();
        if c.is_none() {
            log::error!("raftwal: poisoning the log: {cause}");
            *c = Some(cause);
            self.set.store(true, Ordering::Release);
        }
    }
}
