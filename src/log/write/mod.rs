//! The write path of [`Log`](crate::Log): batches, truncation, compaction, reset,
//! segment rolls, sync policies and poisoning.

mod active;
mod compose;
mod meta;
pub(crate) mod record;
mod roll;

use self::compose::{compose, publish, publish_opened, Layout};

use std::sync::Arc;

use prost::bytes::Bytes;

use crate::durability::stage::{STAGE_CAP, STAGE_WRITE_MAX};
use crate::durability::Ticket;
use crate::error::{Error, Result};
use crate::format::batch::WriteBatch;
use crate::format::frame::{self, FrameType};
use crate::format::index::{misfit, term_in, Misfit};
use crate::format::index::{Index, Loc, Segment};
use crate::format::proto;
use crate::format::segment::{self, Link, Origin, ON_THE_SPOT};
use crate::log::entry::Entry;
use crate::log::inner::Inner;
use crate::log::writer::{prepare_mark, Active, Writer};
use crate::options::MAX_SEGMENT_SIZE;

/// How much unsynced data the writer lets gather before it starts its
/// writeback (see `FileHandle::start_writeback`).
const WRITEBACK_CHUNK: u64 = 4 << 20;

/// Where a batch's frames will be written.
enum Target {
    /// Appended to the active segment (possibly after a cut marker).
    Active,
    /// A new segment opened by a truncation marker (the cut reaches below
    /// the active segment).
    NewSegment,
}

impl Inner {
    /// See [`Log::append`](crate::Log::append).
    pub(crate) fn append(&self, entries: &[Entry]) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.set_max_entry_size(self.opts.max_entry_size);
        for e in entries {
            batch.push(e.index, e.term, &e.data)?;
        }
        self.write(&mut batch)
    }

    /// See [`Log::write`](crate::Log::write).
    pub(crate) fn write(&self, batch: &mut WriteBatch) -> Result<()> {
        let Some(ticket) = self.issue(batch, false)? else {
            return Ok(());
        };
        self.durability
            .policy
            .after_write(&self.durability, &ticket)
    }

    /// See [`Log::submit`](crate::Log::submit).
    pub(crate) fn submit(&self, batch: &mut WriteBatch) -> Result<Ticket> {
        let ticket = match self.issue(batch, true)? {
            Some(t) => t,
            None => self.durability.ticket_for_last(),
        };
        if !ticket.is_durable() {
            self.background.ensure_pipeline();
            self.durability.request_async();
        }
        Ok(ticket)
    }

    /// See [`Log::append_assigned`](crate::Log::append_assigned).
    pub(crate) fn append_assigned<D: AsRef<[u8]>>(&self, term: u64, data: &[D]) -> Result<u64> {
        let max = self.opts.max_entry_size;
        if let Some(d) = data.iter().find(|d| d.as_ref().len() as u64 > max) {
            return Err(Error::EntryTooLarge {
                len: d.as_ref().len() as u64,
                max,
            });
        }
        let (first, ticket) = {
            let mut w = self.writer.lock();
            self.durability.check()?;
            let first = self.index.read().last_index + 1;
            let mut batch = std::mem::take(&mut w.batch_cache);
            batch.clear();
            for (k, d) in data.iter().enumerate() {
                // Saturating: an index past u64::MAX - 1 is refused by push.
                batch.push(first.saturating_add(k as u64), term, d.as_ref())?;
            }
            let res = self.issue_locked(&mut w, &mut batch, false);
            w.batch_cache = batch;
            (first, res?)
        };
        if let Some(t) = ticket {
            self.durability.policy.after_write(&self.durability, &t)?;
        }
        Ok(first)
    }

    /// Validates and issues a batch; `None` when there was nothing to write.
    /// `stage`: it may be staged rather than written at once (see
    /// [`Stage`](crate::durability::stage::Stage)), for `submit`.
    fn issue(&self, batch: &mut WriteBatch, stage: bool) -> Result<Option<Ticket>> {
        if batch.is_empty() {
            return Ok(None);
        }
        let mut w = self.writer.lock();
        self.issue_locked(&mut w, batch, stage)
    }

    fn issue_locked(
        &self,
        w: &mut Writer,
        batch: &mut WriteBatch,
        stage: bool,
    ) -> Result<Option<Ticket>> {
        let max = self.opts.max_entry_size;
        if batch.max_data_len() > max {
            return Err(Error::EntryTooLarge {
                len: batch.max_data_len(),
                max,
            });
        }
        if let Some(s) = &batch.state {
            if s.len() as u64 > max {
                return Err(Error::EntryTooLarge {
                    len: s.len() as u64,
                    max,
                });
            }
        }
        self.durability.check()?;
        let (target, cut) = self.plan(batch)?;
        if cut.is_none() && batch.entries.is_empty() && batch.state.is_none() {
            return Ok(None); // a truncation at last_index + 1 cuts nothing
        }
        match target {
            Target::Active => self.write_active(w, batch, cut, stage).map(Some),
            Target::NewSegment => self.write_new_segment(w, batch, cut.unwrap_or(0)).map(Some),
        }
    }

    /// Checks a batch against the log and decides where it goes. Returns the
    /// cut to make, if any.
    fn plan(&self, batch: &WriteBatch) -> Result<(Target, Option<u64>)> {
        let ix = self.index.read();
        let start = match batch.truncate_from {
            Some(t) if t < ix.first_index => {
                return Err(Error::Compacted {
                    index: t,
                    first_index: ix.first_index,
                })
            }
            Some(t) if t > ix.last_index + 1 => {
                return Err(Error::Unavailable {
                    index: t,
                    last_index: ix.last_index,
                })
            }
            Some(t) => t,
            None => ix.last_index + 1,
        };
        // Each entry must follow the one before it, the first the log
        // after the cut: the rule the replay checks again on reading.
        let (mut last, mut last_term) = (start - 1, term_in(&ix, start - 1).unwrap_or(0));
        for p in &batch.entries {
            match misfit(last, last_term, p.index, p.term) {
                None => {}
                Some(Misfit::Term { prev }) => {
                    return Err(Error::InvalidArgument(format!(
                        "entry {} has term {} below the term {prev} before it; terms never decrease in a Raft log",
                        p.index, p.term
                    )))
                }
                Some(Misfit::Index { .. } | Misfit::Max) => {
                    return Err(Error::NonContiguous {
                        got: p.index,
                        last_index: last,
                    })
                }
            }
            (last, last_term) = (p.index, p.term);
        }
        let cut = batch.truncate_from.filter(|&t| t <= ix.last_index);
        let active_first = ix.segments.back().map_or(0, |s| s.first_index);
        match cut {
            Some(t) if t < active_first => Ok((Target::NewSegment, cut)),
            _ => Ok((Target::Active, cut)),
        }
    }

    /// See [`Log::truncate_from_index`](crate::Log::truncate_from_index).
    pub(crate) fn truncate_from_index(&self, index: u64) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.truncate_from(index);
        self.write(&mut batch)
    }

    /// See [`Log::set_state`](crate::Log::set_state).
    pub(crate) fn set_state(&self, state: impl Into<Bytes>) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.set_state(state);
        self.write(&mut batch)
    }

    /// See [`Log::sync`](crate::Log::sync).
    pub(crate) fn sync(&self) -> Result<()> {
        self.durability.sync_all()
    }
}
