//! The state one open log shares between its facade ([`Log`](crate::Log)),
//! its writer and readers, and its background threads.

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::background::threads::Background;
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
    /// Every background thread, started and stopped in one place.
    pub background: Background,
    pub report: RecoveryReport,
}

impl Inner {
    /// A broken invariant of this log (see `Error::Internal`).
    pub(crate) fn internal(&self, msg: String) -> crate::error::Error {
        crate::error::Error::internal(format!("{msg} (log {})", self.dir.display()))
    }
}
