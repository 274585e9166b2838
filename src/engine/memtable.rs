//! The engine's memtable: for every group, where its entries are in the
//! stream's segments, their terms, its first index and its state. One
//! `apply` builds it, from a batch's parts as they are written and from
//! the records read back at open, after one `check` that says whether a
//! part continues its group.

use std::collections::{HashMap, VecDeque};

use prost::bytes::Bytes;

use super::record::Part;
use crate::error::{Error, Result};
use crate::format::index::{misfit, Loc, Misfit};
use crate::log::write::record::RecordAt;

/// One group: its entries `first..=last` (none when `last < first`).
#[derive(Debug, Clone)]
pub(crate) struct Group {
    first: u64,
    last: u64,
    /// The term of entry `first - 1` (0 when there is none).
    prev_term: u64,
    /// Where the entries are: consecutive runs, each in one segment.
    runs: VecDeque<Run>,
    /// Term runs over `first..=last`: `(first index, term)`.
    terms: Vec<(u64, u64)>,
    /// The newest state blob (a copy: it must not pin its record's bytes).
    state: Option<Bytes>,
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
        }
    }
}

impl Group {
    /// The first index (`last_index + 1` when the group holds no entry).
    pub(crate) fn first_index(&self) -> u64 {
        self.first
    }

    /// The last index (`first_index - 1` when the group holds no entry).
    pub(crate) fn last_index(&self) -> u64 {
        self.last
    }

    /// The newest state blob.
    pub(crate) fn state(&self) -> Option<&Bytes> {
        self.state.as_ref()
    }

    /// The term of entry `index`, for `first_index - 1 ..= last_index`.
    pub(crate) fn term(&self, index: u64) -> Result<u64> {
        if index + 1 < self.first {
            return Err(Error::Compacted {
                index,
                first_index: self.first,
            });
        }
        if index > self.last {
            return Err(Error::Unavailable {
                index,
                last_index: self.last,
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

    /// Whether `part` continues this group (see `GroupOp` for the order
    /// its operations apply in). A compaction's term must be filled in.
    fn check(&self, part: &Part) -> Result<()> {
        let op = &part.op;
        if op.remove {
            let alone = op.reset_to == 0
                && op.truncate_from == 0
                && op.compact_to == 0
                && part.entries.is_empty()
                && part.state.is_none();
            return match alone {
                true => Ok(()),
                false => Err(Error::InvalidArgument(
                    "a group's removal cannot share its part with other changes".into(),
                )),
            };
        }
        let (mut first, mut last) = (self.first, self.last);
        let mut last_term = self.term(last).unwrap_or(0);
        if op.reset_to != 0 {
            (first, last, last_term) = (op.reset_to, op.reset_to - 1, op.reset_term);
        }
        if op.truncate_from != 0 {
            let t = op.truncate_from;
            if t < first {
                return Err(Error::Compacted {
                    index: t,
                    first_index: first,
                });
            }
            if t > last + 1 {
                return Err(Error::Unavailable {
                    index: t,
                    last_index: last,
                });
            }
            if t <= last {
                // Within the entries kept before this part: they are ours.
                last_term = if op.reset_to != 0 {
                    last_term
                } else {
                    self.term(t - 1)?
                };
                last = t - 1;
            }
        }
        let before = (last, last_term);
        for &(index, term, _) in &part.entries {
            match misfit(last, last_term, index, term) {
                None => (last, last_term) = (index, term),
                Some(Misfit::Term { prev }) => {
                    return Err(Error::InvalidArgument(format!(
                        "entry {index} has term {term} below the term {prev} before it; terms never decrease in a Raft log"
                    )))
                }
                Some(Misfit::Index { .. } | Misfit::Max) => {
                    return Err(Error::NonContiguous {
                        got: index,
                        last_index: last,
                    })
                }
            }
        }
        let c = op.compact_to;
        if c > first {
            if c > last + 1 {
                return Err(Error::Unavailable {
                    index: c,
                    last_index: last,
                });
            }
            // The term of `c - 1`: in this part's entries, or before them.
            let want = match part.entries.iter().find(|e| e.0 == c - 1) {
                Some(e) => e.1,
                None if c - 1 == before.0 => before.1,
                None if op.reset_to != 0 && c - 1 < op.reset_to => op.reset_term,
                None => self.term(c - 1)?,
            };
            if op.compact_term != want {
                return Err(Error::InvalidArgument(format!(
                    "compaction to {c} names term {} where entry {} has term {want}",
                    op.compact_term,
                    c - 1
                )));
            }
        }
        Ok(())
    }

    /// Applies a checked part whose frames are at `at` (relative offsets
    /// made absolute with its data offset).
    fn apply(&mut self, part: &Part, at: RecordAt) -> Result<()> {
        let op = &part.op;
        if op.reset_to != 0 {
            self.runs.clear();
            self.terms.clear();
            (self.first, self.last, self.prev_term) = (op.reset_to, op.reset_to - 1, op.reset_term);
        }
        if op.truncate_from != 0 && op.truncate_from <= self.last {
            self.cut_from(op.truncate_from);
        }
        for &(index, term, loc) in &part.entries {
            let offset = u32::try_from(at.data_offset + u64::from(loc.offset))
                .map_err(|_| Error::internal(format!("record {} past 4 GiB", at.index)))?;
            self.push(index, term, at.sequence, Loc { offset, ..loc });
        }
        if let Some(s) = &part.state {
            self.state = Some(Bytes::copy_from_slice(s));
        }
        if op.compact_to > self.first {
            self.compact_to(op.compact_to, op.compact_term);
        }
        Ok(())
    }

    fn push(&mut self, index: u64, term: u64, sequence: u64, loc: Loc) {
        if self.terms.last().is_none_or(|&(_, t)| t != term) {
            self.terms.push((index, term));
        }
        match self.runs.back_mut() {
            Some(r) if r.sequence == sequence => r.locs.push(loc),
            back => {
                // The run before is complete: give back its spare room.
                if let Some(r) = back {
                    r.locs.shrink_to_fit();
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
    fn cut_from(&mut self, index: u64) {
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

    /// Drops entries below `index`, for `first < index <= last + 1`.
    fn compact_to(&mut self, index: u64, term: u64) {
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
    fn memory_bytes(&self) -> usize {
        let runs = self.runs.capacity() * std::mem::size_of::<Run>()
            + self
                .runs
                .iter()
                .map(|r| r.locs.capacity() * std::mem::size_of::<Loc>())
                .sum::<usize>();
        runs + self.terms.capacity() * 16 + self.state.as_ref().map_or(0, Bytes::len)
    }
}

/// Every group the engine holds.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    map: HashMap<u64, Group>,
}

/// An untouched group, for lookups of groups the engine does not hold.
static EMPTY: std::sync::LazyLock<Group> = std::sync::LazyLock::new(Group::default);

impl Groups {
    /// Group `group`, or an untouched one.
    pub(crate) fn get(&self, group: u64) -> &Group {
        self.map.get(&group).unwrap_or(&EMPTY)
    }

    /// Whether a write has made group `group` (and none removed it since).
    pub(crate) fn contains(&self, group: u64) -> bool {
        self.map.contains_key(&group)
    }

    /// The groups held, in no order.
    pub(crate) fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.map.keys().copied()
    }

    /// Whether every part continues its group; the error names the group.
    pub(crate) fn check(&self, parts: &[Part]) -> Result<()> {
        for p in parts {
            self.get(p.op.group).check(p).map_err(|e| Error::Group {
                group: p.op.group,
                source: Box::new(e),
            })?;
        }
        Ok(())
    }

    /// Checks and applies the parts of the record at `at`, in order (a
    /// batch holds one part per group, so no part depends on another).
    pub(crate) fn apply(&mut self, parts: &[Part], at: RecordAt) -> Result<()> {
        self.check(parts)?;
        for p in parts {
            if p.op.remove {
                self.map.remove(&p.op.group);
                continue;
            }
            self.map.entry(p.op.group).or_default().apply(p, at)?;
        }
        Ok(())
    }

    /// Bytes of memory the memtable takes: every group's index and state,
    /// and the map's slots.
    pub(crate) fn memory_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(u64, Group)>() + 1;
        self.map.capacity() * slot + self.map.values().map(Group::memory_bytes).sum::<usize>()
    }
}
