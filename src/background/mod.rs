//! The background layer: the threads a log runs besides its callers'. The
//! preparer (the next segment, zero-filled), the sealer (a rolled-past
//! segment's footer), the remover (unlinks), the interval syncer and the
//! writeback hinter, each a [`Worker`](crate::worker::Worker); `threads`
//! is the one place every one is made and stopped.

pub(crate) mod prepare;
pub(crate) mod remove;
pub(crate) mod seal;
pub(crate) mod sync;
pub(crate) mod threads;
pub(crate) mod writeback;
