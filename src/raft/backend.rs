//! What a [`RaftLogStore`](super::RaftLogStore) keeps its entries and state
//! in: a [`Log`] of its own, or one group of an [`Engine`](crate::Engine). Both give the
//! store the same operations with the same contract (the log's), so the
//! store's code is one.

use prost::bytes::Bytes;

use crate::durability::Ticket;
use crate::engine::{EngineBatch, GroupClaim};
use crate::error::{Error, Result};
use crate::format::batch::WriteBatch;
use crate::log::Log;
use crate::options::Options;
use crate::recovery::RecoveryReport;

/// A store's log: its own, or a group of an engine.
pub(super) enum Backend {
    Log(Log),
    Group(GroupClaim),
}

impl Backend {
    /// The options the log (or the engine) was opened with.
    pub(super) fn options(&self) -> &Options {
        match self {
            Backend::Log(l) => l.options(),
            Backend::Group(c) => c.engine().stream().options(),
        }
    }

    /// What the log's (or the engine's) recovery did at open.
    pub(super) fn recovery_report(&self) -> &RecoveryReport {
        match self {
            Backend::Log(l) => l.recovery_report(),
            Backend::Group(c) => c.engine().stream().recovery_report(),
        }
    }

    /// The counters of the log (the engine's stream, for a group).
    pub(super) fn stats(&self) -> crate::log::LogStats {
        match self {
            Backend::Log(l) => l.stats(),
            Backend::Group(c) => c.engine().stream().stats(),
        }
    }

    pub(super) fn first_index(&self) -> u64 {
        match self {
            Backend::Log(l) => l.first_index(),
            Backend::Group(c) => c.engine().first_index(c.group()),
        }
    }

    pub(super) fn last_index(&self) -> u64 {
        match self {
            Backend::Log(l) => l.last_index(),
            Backend::Group(c) => c.engine().last_index(c.group()),
        }
    }

    pub(super) fn term(&self, index: u64) -> Result<u64> {
        match self {
            Backend::Log(l) => l.term(index),
            Backend::Group(c) => c.engine().term(c.group(), index),
        }
    }

    pub(super) fn state(&self) -> Option<Bytes> {
        match self {
            Backend::Log(l) => l.state(),
            Backend::Group(c) => c.engine().state(c.group()),
        }
    }

    /// Entries `lo..hi` (at most `max_bytes` of data, at least one), each
    /// handed to `make` as `(index, term, data)`.
    pub(super) fn read_with<T>(
        &self,
        lo: u64,
        hi: u64,
        max_bytes: Option<u64>,
        mut make: impl FnMut(u64, u64, Bytes) -> Result<T>,
    ) -> Result<Vec<T>> {
        match self {
            Backend::Log(l) => l.read_with(lo, hi, max_bytes, make),
            Backend::Group(c) => c
                .engine()
                .entries(c.group(), lo, hi, max_bytes)?
                .into_iter()
                .map(|e| make(e.index, e.term, e.data))
                .collect(),
        }
    }

    /// Writes `batch` (and empties it, for a group) as the sync policy
    /// says.
    pub(super) fn write(&self, batch: &mut WriteBatch) -> Result<()> {
        match self {
            Backend::Log(l) => l.write(batch),
            Backend::Group(c) => {
                in_part(c.group(), batch, |b| c.engine().write(b)).map_err(unwrap_group)
            }
        }
    }

    /// Issues `batch` without waiting for it to be durable.
    pub(super) fn submit(&self, batch: &mut WriteBatch) -> Result<Ticket> {
        match self {
            Backend::Log(l) => l.submit(batch),
            Backend::Group(c) => {
                if batch.is_empty() {
                    // Nothing to write: a ticket for what is issued.
                    return c.engine().stream().submit(batch);
                }
                in_part(c.group(), batch, |b| c.engine().submit(b)).map_err(unwrap_group)
            }
        }
    }

    /// Sets the state blob, as the sync policy says.
    pub(super) fn set_state(&self, state: Bytes) -> Result<()> {
        match self {
            Backend::Log(l) => l.set_state(state),
            Backend::Group(_) => {
                let mut batch = WriteBatch::new();
                batch.set_state(state);
                self.write(&mut batch)
            }
        }
    }

    /// Discards entries before `index`, durably (a no-op at or below the
    /// first index; [`Error::Unavailable`] past the last index + 1).
    pub(super) fn compact(&self, index: u64) -> Result<()> {
        match self {
            Backend::Log(l) => l.compact(index),
            Backend::Group(c) => {
                if index <= c.engine().first_index(c.group()) {
                    return Ok(());
                }
                let mut b = EngineBatch::new();
                b.compact(c.group(), index);
                c.engine().write_durable(&mut b).map_err(unwrap_group)
            }
        }
    }

    /// Empties the log so that it continues at `next_index` after an entry
    /// of `term`, durably.
    pub(super) fn reset(&self, next_index: u64, term: u64) -> Result<()> {
        match self {
            Backend::Log(l) => l.reset(next_index, term),
            Backend::Group(c) => {
                if next_index == 0 {
                    return Err(Error::InvalidArgument(
                        "a log cannot continue at index 0".into(),
                    ));
                }
                let mut b = EngineBatch::new();
                b.reset(c.group(), next_index, term);
                c.engine().write_durable(&mut b).map_err(unwrap_group)
            }
        }
    }

    /// Makes everything written so far durable.
    pub(super) fn sync(&self) -> Result<()> {
        match self {
            Backend::Log(l) => l.sync(),
            Backend::Group(c) => c.engine().sync(),
        }
    }

    pub(super) fn check_poisoned(&self) -> Result<()> {
        match self {
            Backend::Log(l) => l.check_poisoned(),
            Backend::Group(c) => c.engine().stream().check_poisoned(),
        }
    }

    pub(super) fn poison_because(&self, cause: String) {
        match self {
            Backend::Log(l) => l.poison_because(cause),
            Backend::Group(c) => c.engine().stream().poison_because(cause),
        }
    }
}

/// Runs `f` on an engine batch whose one part, for `group`, is `batch`,
/// then gives the batch back (emptied by the write, or as it was on
/// failure).
fn in_part<T>(
    group: u64,
    batch: &mut WriteBatch,
    f: impl FnOnce(&mut EngineBatch) -> Result<T>,
) -> Result<T> {
    let mut b = EngineBatch::new();
    std::mem::swap(b.group(group), batch);
    let res = f(&mut b);
    std::mem::swap(b.group(group), batch);
    res
}

/// A group's refusal, as the store's own log would have said it.
fn unwrap_group(e: Error) -> Error {
    match e {
        Error::Group { source, .. } => *source,
        other => other,
    }
}
