//! Freeing the stream's segments no group needs ([`Engine::reclaim`]),
//! and naming the groups that keep the oldest ([`Engine::laggards`]).

use super::{Engine, EngineBatch};
use crate::error::{Error, Result};

/// What [`Engine::reclaim`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reclaimed {
    /// Groups whose state blob or first index was written again (in one
    /// record) because only that kept an old segment.
    pub groups_rewritten: usize,
    /// Segments the stream no longer holds (their files are removed in the
    /// background).
    pub segments_freed: usize,
    /// The oldest segment kept: the oldest holding a group's entry, or the
    /// active one.
    pub oldest_segment: u64,
}

/// A group whose entries keep an old segment; see [`Engine::laggards`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Laggard {
    /// The group.
    pub group: u64,
    /// The sequence number of the oldest segment holding its entries.
    pub segment: u64,
    /// Its first index: compacting past the entries in that segment frees
    /// it.
    pub first_index: u64,
}

impl Engine {
    /// Frees the segments no group needs: those older than every group's
    /// oldest entry. A group holding no entry there may still need one for
    /// its state blob or for the record that set its first index: those
    /// are rewritten first, in one record, so that they pin nothing. Then
    /// the stream is compacted; the files go in the background, once the
    /// compaction is durable. Groups whose entries keep old segments are
    /// [`Engine::laggards`]: compacting them lets the next reclaim go
    /// further.
    pub fn reclaim(&self) -> Result<Reclaimed> {
        let (target, ticket, rewritten) = {
            let _writing = self.writing.lock();
            let groups = self.groups.read();
            let active = self.log.inner.active_sequence();
            let target = groups
                .iter()
                .filter_map(|(_, g)| g.oldest_entry_segment())
                .fold(active, u64::min);
            let mut batch = EngineBatch::new();
            for (id, g) in groups.iter() {
                if g.start_seq < target {
                    // Where it starts, said again: a compaction to its
                    // first index, which compacts nothing.
                    batch.compact(id, g.first_index());
                }
                match g.state() {
                    Some(s) if g.state_seq < target => batch.group(id).set_state(s.to_vec()),
                    _ => {}
                }
            }
            drop(groups);
            let ticket = match batch.is_empty() {
                true => None,
                false => Some(self.issue_locked(&mut batch, false)?),
            };
            (target, ticket, batch.groups())
        };
        if let Some(t) = &ticket {
            self.log.inner.after_record(t, false)?;
        }
        // Every group now needs nothing older than the target (later
        // writes only move what a group needs forward): checked, since a
        // mistake here would lose a group's data.
        if let Some((id, g)) = self.groups.read().iter().find(|(_, g)| g.needs() < target) {
            return Err(Error::internal(format!(
                "group {id} still needs segment {} below {target}",
                g.needs()
            )));
        }
        let before = self.log.segments().len();
        if let Some(first) = self.log.inner.first_index_of(target) {
            if first > self.log.first_index() {
                self.log.compact(first)?;
            }
        }
        Ok(Reclaimed {
            groups_rewritten: rewritten,
            segments_freed: before.saturating_sub(self.log.segments().len()),
            oldest_segment: target,
        })
    }

    /// Up to `n` groups whose entries keep the oldest segments, oldest
    /// first: snapshotting and compacting them lets [`Engine::reclaim`]
    /// free those segments.
    pub fn laggards(&self, n: usize) -> Vec<Laggard> {
        let groups = self.groups.read();
        let mut all: Vec<Laggard> = groups
            .iter()
            .filter_map(|(group, g)| {
                g.oldest_entry_segment().map(|segment| Laggard {
                    group,
                    segment,
                    first_index: g.first_index(),
                })
            })
            .collect();
        all.sort_unstable_by_key(|l| (l.segment, l.group));
        all.truncate(n);
        all
    }
}
