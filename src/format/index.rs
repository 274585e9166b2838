//! The in-memory index: where every entry lives on disk, and its term.
//!
//! Per entry it keeps a `u32` offset and a `u32` frame length inside its
//! segment (8 bytes); terms are stored as runs `(first index, term)`, one per
//! term change, so `term(i)` costs a binary search over a handful of runs.

use crate::error::Error;
use crate::fs::FileHandle;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

/// Where an entry's frame is in its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    /// Offset of the frame from the start of the segment file.
    pub offset: u32,
    /// Length of the whole frame, header included.
    pub len: u32,
}

/// A frame's place in the log: which segment, and where in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// The segment's sequence number.
    pub sequence: u64,
    /// The frame's offset in that segment.
    pub offset: u64,
}

/// Where a frame is in its segment: offset and length.
pub type FrameAt = (u64, u32);

/// The frames of a segment besides entries that recovery needs: they go
/// into the segment's footer when it is sealed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentMeta {
    /// The reset or truncation marker opening the segment.
    pub opening: Option<FrameAt>,
    /// The segment's newest marker.
    pub marker: Option<FrameAt>,
    /// The segment's newest state blob.
    pub state: Option<FrameAt>,
}

/// One segment file as the index knows it.
#[derive(Debug)]
pub struct Segment {
    /// Sequence number (from the file name and header).
    pub sequence: u64,
    /// The index of the segment's first entry slot.
    pub first_index: u64,
    /// The file's path.
    pub path: PathBuf,
    /// The open file, shared with readers.
    pub file: Arc<dyn FileHandle>,
    /// Bytes of valid frames (the write position of the active segment).
    pub len: u64,
    /// The entries it holds: `locs[k]` is entry `first_index + k`.
    pub locs: Vec<Loc>,
    /// The length the file was preallocated to (0 when it was not).
    pub preallocated: u64,
    /// Where the first frame after the header starts.
    pub data_start: u64,
    /// Marker and state frames, for the footer.
    pub meta: SegmentMeta,
}

impl Segment {
    /// The record of a segment just created (header written, no frames).
    pub(crate) fn created(
        sequence: u64,
        first_index: u64,
        c: crate::format::segment::Created,
    ) -> Segment {
        Segment {
            sequence,
            first_index,
            path: c.path,
            file: c.file,
            len: c.header_len,
            locs: Vec::new(),
            preallocated: c.preallocated,
            data_start: c.header_len,
            meta: SegmentMeta::default(),
        }
    }

    /// How large it may grow before the log rolls to the next segment: the
    /// length it was preallocated to (segments start small and grow, see
    /// `Options::first_segment_size`), or `segment_size` for a file that
    /// grows as written.
    pub(crate) fn capacity(&self, segment_size: u64) -> u64 {
        capacity(self.preallocated, segment_size)
    }

    /// One past the last index held.
    pub fn end_index(&self) -> u64 {
        self.first_index + self.locs.len() as u64
    }
}

/// Why an entry cannot follow the log: the rule the writer checks a batch
/// against and the replay checks every entry it reads back against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Misfit {
    /// Its index is not the one after the last (`want`).
    Index { want: u64 },
    /// Its term is below the term of the entry before it (`prev`): terms
    /// never go down in a Raft log.
    Term { prev: u64 },
    /// It is at index `u64::MAX`: the index after the last must exist.
    Max,
}

/// Whether entry `index` of `term` may follow entry `last` of term
/// `last_term`; see [`Misfit`].
pub(crate) fn misfit(last: u64, last_term: u64, index: u64, term: u64) -> Option<Misfit> {
    if index == u64::MAX {
        return Some(Misfit::Max);
    }
    if Some(index) != last.checked_add(1) {
        return Some(Misfit::Index {
            want: last.wrapping_add(1),
        });
    }
    (term < last_term).then_some(Misfit::Term { prev: last_term })
}

/// How large a segment preallocated to `preallocated` bytes (0: not
/// preallocated) may grow: see [`Segment::capacity`].
pub(crate) fn capacity(preallocated: u64, segment_size: u64) -> u64 {
    match preallocated {
        0 => segment_size,
        n => n,
    }
}

/// The index of a whole log.
#[derive(Debug, Default)]
pub struct Index {
    /// Segments, oldest first; the last one is the active (written) one.
    pub segments: VecDeque<Segment>,
    /// The log's first index (entries below it are compacted even if a
    /// segment still holds them).
    pub first_index: u64,
    /// The log's last index (`first_index - 1` when empty).
    pub last_index: u64,
    /// The term of `first_index - 1`.
    pub prev_term: u64,
    /// Term runs `(first index of the run, term)`, ascending, covering every
    /// physically present entry.
    pub terms: Vec<(u64, u64)>,
    /// The newest state blob and where its frame is.
    pub state: Option<(prost::bytes::Bytes, Pos)>,
    /// Where the newest marker frame is, if any was ever written.
    pub marker: Option<Pos>,
}

impl Index {
    /// The segment holding `index`, which must be in `[first physical, last]`.
    pub fn segment_of(&self, index: u64) -> Option<&Segment> {
        let k = self.segment_pos(index)?;
        self.segments.get(k)
    }

    /// The position in `segments` of the segment holding `index`.
    pub fn segment_pos(&self, index: u64) -> Option<usize> {
        // Segments are contiguous and sorted by first_index; empty ones hold
        // nothing, so search for the last segment starting at or below.
        let k = self
            .segments
            .partition_point(|s| s.first_index <= index)
            .checked_sub(1)?;
        let s = self.segments.get(k)?;
        (index < s.end_index()).then_some(k)
    }

    /// The location of entry `index` and its segment.
    pub fn locate(&self, index: u64) -> Option<(&Segment, Loc)> {
        let s = self.segment_of(index)?;
        let loc = *s.locs.get((index - s.first_index) as usize)?;
        Some((s, loc))
    }

    /// The term of a physically present entry.
    pub fn term_of(&self, index: u64) -> Option<u64> {
        let k = self
            .terms
            .partition_point(|&(start, _)| start <= index)
            .checked_sub(1)?;
        self.terms.get(k).map(|&(_, t)| t)
    }

    /// Drops entries `cut..`, as a truncation marker says (written by the
    /// writer, read back by the replay): the segments starting at or after
    /// `cut` leave the index (their paths are returned: superseded), except
    /// the last one when `keep_last` (the active segment, cut inside), and
    /// the segment holding `cut - 1` keeps only the entries before it. Its
    /// stale frames stay in the file; the marker cuts them again on every
    /// open until the segment is compacted away.
    pub(crate) fn cut_from(&mut self, cut: u64, keep_last: bool) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        while let Some(last) = self.segments.back_mut() {
            if last.first_index >= cut && !(keep_last && removed.is_empty()) {
                if let Some(s) = self.segments.pop_back() {
                    removed.push(s.path);
                }
                continue;
            }
            let keep = cut.saturating_sub(last.first_index) as usize;
            last.locs.truncate(keep);
            break;
        }
        self.truncate_terms(cut);
        self.last_index = cut - 1;
        removed
    }

    /// The term of the entry before `index` (the last entry's, or
    /// `prev_term` for an empty log), which entry `index` must not go
    /// below.
    pub(crate) fn term_before_next(&self) -> u64 {
        if self.last_index >= self.first_index {
            self.term_of(self.last_index).unwrap_or(0)
        } else {
            self.prev_term
        }
    }

    /// Adds entry `index` of `term`, whose frame is at `loc` of `seg` (the
    /// segment being written or read: the index's last, or one not pushed
    /// yet). The caller checked it continues the log. What the writer
    /// publishes and what the replay reads back both go through here.
    pub(crate) fn add_entry(&mut self, seg: &mut Segment, index: u64, term: u64, loc: Loc) {
        seg.locs.push(loc);
        self.push_term(index, term);
        self.last_index = index;
    }

    /// Makes the state frame at `at` of `seg`, holding `data`, the log's
    /// state blob.
    pub(crate) fn set_state(&mut self, seg: &mut Segment, data: prost::bytes::Bytes, at: FrameAt) {
        self.state = Some((
            data,
            Pos {
                sequence: seg.sequence,
                offset: at.0,
            },
        ));
        seg.meta.state = Some(at);
    }

    /// Makes the marker frame at `at` of `seg` the log's newest (its first
    /// index and cut applied by the caller); `opening`: it is the first
    /// frame after the segment's header.
    pub(crate) fn set_marker(&mut self, seg: &mut Segment, at: FrameAt, opening: bool) {
        self.marker = Some(Pos {
            sequence: seg.sequence,
            offset: at.0,
        });
        seg.meta.marker = Some(at);
        if opening {
            seg.meta.opening = Some(at);
        }
    }

    /// Records that entry `index` has `term` (entries are pushed in order).
    pub fn push_term(&mut self, index: u64, term: u64) {
        match self.terms.last() {
            Some(&(_, t)) if t == term => {}
            _ => self.terms.push((index, term)),
        }
    }

    /// Forgets the terms of entries at and after `index`.
    pub fn truncate_terms(&mut self, index: u64) {
        let k = self.terms.partition_point(|&(start, _)| start < index);
        self.terms.truncate(k);
    }

    /// Forgets the terms of entries below `index` (keeping the run that
    /// covers `index`).
    pub fn trim_terms_below(&mut self, index: u64) {
        let k = self.terms.partition_point(|&(start, _)| start <= index);
        if k > 1 {
            self.terms.drain(..k - 1);
        }
    }

    /// Bytes of memory the index uses for its entries and term runs.
    pub fn memory_bytes(&self) -> usize {
        let locs: usize = self
            .segments
            .iter()
            .map(|s| s.locs.capacity() * std::mem::size_of::<Loc>())
            .sum();
        locs + self.terms.capacity() * std::mem::size_of::<(u64, u64)>()
    }
}

/// The term of entry `index`, or of the entry before the first index
/// (`prev_term`).
pub(crate) fn term_in(ix: &Index, index: u64) -> crate::error::Result<u64> {
    if index.checked_add(1) == Some(ix.first_index) {
        return Ok(ix.prev_term);
    }
    check_range(ix, index)?;
    ix.term_of(index).ok_or(Error::Unavailable {
        index,
        last_index: ix.last_index,
    })
}

/// Checks that `index` is in the log: `Compacted` below its first index,
/// `Unavailable` past its last.
pub(crate) fn check_range(ix: &Index, index: u64) -> crate::error::Result<()> {
    if index < ix.first_index {
        return Err(Error::Compacted {
            index,
            first_index: ix.first_index,
        });
    }
    if index > ix.last_index {
        return Err(Error::Unavailable {
            index,
            last_index: ix.last_index,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn term_runs() {
        let mut ix = Index::default();
        for (i, t) in [(1, 1), (2, 1), (3, 2), (4, 2), (5, 5)] {
            ix.push_term(i, t);
        }
        assert_eq!(ix.terms, vec![(1, 1), (3, 2), (5, 5)]);
        assert_eq!(ix.term_of(0), None);
        assert_eq!(ix.term_of(2), Some(1));
        assert_eq!(ix.term_of(4), Some(2));
        assert_eq!(ix.term_of(9), Some(5));
        ix.truncate_terms(4);
        assert_eq!(ix.terms, vec![(1, 1), (3, 2)]);
        ix.truncate_terms(3);
        assert_eq!(ix.terms, vec![(1, 1)]);
        ix.push_term(3, 3);
        ix.trim_terms_below(3);
        assert_eq!(ix.terms, vec![(3, 3)]);
        ix.trim_terms_below(100);
        assert_eq!(ix.terms, vec![(3, 3)]);
    }
}
