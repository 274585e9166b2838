//! The background layer: the threads a log runs besides its callers'. The
//! preparer (the next segment, zero-filled), the sealers (a rolled-past
//! segment's footer), the remover (unlinks), the interval syncer and the
//! writeback hinter; `worker` is the queue-and-thread the remover and the
//! hinter share, and `threads` the one place every thread is started and
//! stopped.

pub(crate) mod prepare;
pub(crate) mod remove;
pub(crate) mod seal;
pub(crate) mod sync;
pub(crate) mod threads;
pub(crate) mod worker;
pub(crate) mod writeback;
