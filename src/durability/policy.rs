//! What each [`SyncPolicy`] does, in one place: after a write, whether
//! to wait until it is durable (`Always`; every n-th write under
//! `EveryN`); whether the writer starts writeback of the ranges it fills
//! (every policy but `Always`, whose syncs write them); and the interval of
//! the background syncer (`Interval`). `Manual` leaves every sync to
//! [`Log::sync`](crate::Log::sync).

use std::time::Duration;

use parking_lot::Mutex;

use super::{Durability, Ticket};
use crate::error::Result;
use crate::options::SyncPolicy;

/// A log's sync policy and the little state it keeps.
pub(crate) struct Policy {
    policy: SyncPolicy,
    /// Writes since the last one `EveryN` waited for.
    unsynced: Mutex<u32>,
}

impl Policy {
    pub(crate) fn new(policy: SyncPolicy) -> Policy {
        Policy {
            policy,
            unsynced: Mutex::new(0),
        }
    }

    /// After a write was issued as `ticket`: waits until it is durable
    /// when the policy says so.
    pub(crate) fn after_write(&self, durability: &Durability, ticket: &Ticket) -> Result<()> {
        let wait = match self.policy {
            SyncPolicy::Always => true,
            SyncPolicy::EveryN(n) => {
                let mut k = self.unsynced.lock();
                *k += 1;
                let due = *k >= n;
                if due {
                    *k = 0;
                }
                due
            }
            SyncPolicy::Interval(_) | SyncPolicy::Manual => false,
        };
        match wait {
            true => durability.wait_blocking(ticket.sequence()),
            false => Ok(()),
        }
    }

    /// Whether writes stay unsynced for a while, so that the writer should
    /// start writeback of the ranges it fills (see `log::write`).
    pub(crate) fn hints_writeback(&self) -> bool {
        self.policy != SyncPolicy::Always
    }

    /// The background syncer's interval, under `Interval`.
    pub(crate) fn interval(&self) -> Option<Duration> {
        match self.policy {
            SyncPolicy::Interval(every) => Some(every),
            _ => None,
        }
    }
}
