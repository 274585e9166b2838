//! One group of the engine, in memory: where its entries are in the
//! stream's segments, their terms, its first index and state, and which
//! segments it needs kept. The rules for changing it are `memtable`'s.

use std::collections::VecDeque;

use crate::error::{Error, Result};
use crate::format::index::Loc;

/// One group: its entries `first..=last` (none when `last < first`).
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(super) first: u64,
    pub(super) last: u64,
    /// The term of entry `first - 1` (0 when there is none).
    pub(super) prev_term: u64,
    /// Where the entries are: consecutive runs, each in one segment.
    runs: VecDeque<Run>,
    /// Term runs over `first..=last`: `(first index, term)`.
    terms: Vec<(u64, u64)>,
    /// The newest state blob (a copy: it must not pin its record's bytes).
    pub(super) state: Option<Box<[u8]>>,
    /// The segment of the newest record that set where the group starts:
    /// the one that made it, or its newest reset or compaction.
    pub(super) start_seq: u64,
    /// The segment of the record holding the newest state blob.
    pub(super) state_seq: u64,
}

/// Entries `first..first + locs.len()` of a group, all in one segment.
#[derive(Debug, Clone)]
struct Run {
    sequence: u64,
    first: u64,
    locs: Vec<Loc>,
}

impl Default for Group {
    /// A group no write has touched: no entries, first index 1.
    fn default() -> Group {
        Group {
            first: 1,
            last: 0,
            prev_term: 0,
            runs: VecDeque::new(),
            terms: Vec::new(),
            state: None,
            start_seq: 0,
            state_seq: 0,
        }
    }
}

impl Group {
    /// A group made by a record in segment `sequence`.
    pub(super) fn made_in(sequence: u64) -> Group {
        Group {
            start_seq: sequence,
            ..Group::default()
        }
    }

    /// The first index (`last_index + 1` when the group holds no entry).
    pub(crate) fn first_index(&self) -> u64 {
        self.first
    }

    /// The last index (`first_index - 1` when the group holds no entry).
    pub(crate) fn last_index(&self) -> u64 {
        self.last
    }

    /// The newest state blob.
    pub(crate) fn state(&self) -> Option<&[u8]> {
        self.state.as_deref()
    }

    /// The term of entry `index`, for `first_index - 1 ..= last_index`.
    pub(crate) fn term(&self, index: u64) -> Result<u64> {
        // First: past it, `index + 1` cannot overflow (`last < u64::MAX`).
        if index > self.last {
            return Err(Error::Unavailable {
                index,
                last_index: self.last,
            });
        }
        if index + 1 < self.first {
            return Err(Error::Compacted {
                index,
                first_index: self.first,
            });
        }
        if index + 1 == self.first {
            return Ok(self.prev_term);
        }
        let k = self.terms.partition_point(|&(start, _)| start <= index);
        Ok(self.terms.get(k.wrapping_sub(1)).map_or(0, |&(_, t)| t))
    }

    /// Where entry `index` is: its segment and frame.
    pub(crate) fn locate(&self, index: u64) -> Option<(u64, Loc)> {
        if index < self.first || index > self.last {
            return None;
        }
        let k = self
            .runs
            .partition_point(|r| r.first <= index)
            .checked_sub(1)?;
        let r = self.runs.get(k)?;
        let loc = *r.locs.get((index - r.first) as usize)?;
        Some((r.sequence, loc))
    }

    /// The segment holding the group's oldest entry, if it holds any.
    pub(crate) fn oldest_entry_segment(&self) -> Option<u64> {
        self.runs.front().map(|r| r.sequence)
    }

    /// The oldest segment the group needs: of its oldest entry, of the
    /// record that set where it starts, of its state.
    pub(crate) fn needs(&self) -> u64 {
        let mut oldest = self.start_seq;
        if let Some(s) = self.oldest_entry_segment() {
            oldest = oldest.min(s);
        }
        if self.state.is_some() {
            oldest = oldest.min(self.state_seq);
        }
        oldest
    }

    /// Empties the group, to continue at `next` after an entry of `term`.
    pub(super) fn restart(&mut self, next: u64, term: u64) {
        self.runs.clear();
        self.terms.clear();
        (self.first, self.last, self.prev_term) = (next, next - 1, term);
    }

    /// Adds entry `index` (`last + 1`) of `term` at `loc` in segment
    /// `sequence`.
    pub(super) fn push(&mut self, index: u64, term: u64, sequence: u64, loc: Loc) {
        if self.terms.last().is_none_or(|&(_, t)| t != term) {
            // Most groups hold one term run: no room for four.
            if self.terms.capacity() == 0 {
                self.terms.reserve_exact(1);
            }
            self.terms.push((index, term));
        }
        match self.runs.back_mut() {
            Some(r) if r.sequence == sequence => r.locs.push(loc),
            back => {
                // The run before is complete: give back its spare room.
                if let Some(r) = back {
                    r.locs.shrink_to_fit();
                }
                if self.runs.capacity() == 0 {
                    self.runs.reserve_exact(1);
                }
                self.runs.push_back(Run {
                    sequence,
                    first: index,
                    locs: vec![loc],
                });
            }
        }
        self.last = index;
    }

    /// Drops entries `index..`, for `first <= index <= last`.
    pub(super) fn cut_from(&mut self, index: u64) {
        while self.runs.back().is_some_and(|r| r.first >= index) {
            self.runs.pop_back();
        }
        if let Some(r) = self.runs.back_mut() {
            r.locs.truncate((index - r.first) as usize);
        }
        let k = self.terms.partition_point(|&(start, _)| start < index);
        self.terms.truncate(k);
        self.last = index - 1;
    }

    /// Drops entries below `index`, for `first <= index <= last + 1`; the
    /// entry before `index` had `term`.
    pub(super) fn compact_to(&mut self, index: u64, term: u64) {
        while self
            .runs
            .front()
            .is_some_and(|r| r.first + r.locs.len() as u64 <= index)
        {
            self.runs.pop_front();
        }
        if let Some(r) = self.runs.front_mut() {
            if r.first < index {
                r.locs.drain(..(index - r.first) as usize);
                r.first = index;
            }
        }
        // Keep the run that covers `index`, starting there.
        let k = self.terms.partition_point(|&(start, _)| start <= index);
        self.terms.drain(..k.saturating_sub(1));
        if let Some(t) = self.terms.first_mut() {
            t.0 = t.0.max(index);
        }
        if index > self.last {
            self.terms.clear();
        }
        (self.first, self.prev_term) = (index, term);
    }

    /// Bytes of memory the group's index takes (besides the map's slot).
    pub(super) fn memory_bytes(&self) -> usize {
        let runs = self.runs.capacity() * std::mem::size_of::<Run>()
            + self
                .runs
                .iter()
                .map(|r| r.locs.capacity() * std::mem::size_of::<Loc>())
                .sum::<usize>();
        runs + self.terms.capacity() * 16 + self.state.as_ref().map_or(0, |s| s.len())
    }
}
