//! Applying frames to the index: entries, state blobs, markers and cuts,
//! a write's frames only once its last one is read, and a sealed
//! segment's footer. An `Err(reason)` from these is a frame that passed its
//! CRC but cannot be part of the log: damage, never a tear.

use prost::Message;

use super::Replay;
use crate::error::{Damage, Error, Result};
use crate::format::footer::{self, Footer};
use crate::format::frame::FrameType;
use crate::format::index::{misfit, Loc, Misfit, Pos, Segment};
use crate::format::proto;
use crate::format::segment::Origin;

/// A frame of the write being read, decoded but not yet applied.
pub(super) struct PendingFrame {
    pub(super) offset: u64,
    pub(super) frame_len: u32,
    /// Whether it is the first frame after the segment header.
    pub(super) first_frame: bool,
    pub(super) decoded: Decoded,
}

/// What a frame says, decoded from its payload.
pub(super) enum Decoded {
    Entry(proto::EntryMeta),
    State(prost::bytes::Bytes),
    Marker(proto::Marker),
}

/// Decodes a verified frame's payload; `None` for frames that add nothing
/// to the index (a sealed segment's footer and trailer).
pub(super) fn decode(
    ty: FrameType,
    payload: &[u8],
) -> std::result::Result<Option<Decoded>, String> {
    Ok(Some(match ty {
        FrameType::Entry => Decoded::Entry(
            proto::EntryMeta::decode(payload).map_err(|e| format!("entry does not decode: {e}"))?,
        ),
        FrameType::State => Decoded::State(
            proto::State::decode(payload)
                .map_err(|e| format!("state does not decode: {e}"))?
                .data,
        ),
        FrameType::Marker => Decoded::Marker(
            proto::Marker::decode(payload).map_err(|e| format!("marker does not decode: {e}"))?,
        ),
        FrameType::Footer | FrameType::Trailer => return Ok(None),
        FrameType::Header => return Err("a second segment header".into()),
        FrameType::Group => return Err("a group frame outside an engine record".into()),
    }))
}

fn decode_marker(seg: &Segment, at: crate::format::index::FrameAt) -> Result<proto::Marker> {
    let payload = footer::read_frame(seg, at, FrameType::Marker)?;
    proto::Marker::decode(&payload[..]).map_err(|e| {
        Error::corruption(
            Damage::Payload,
            &seg.path,
            at.0,
            format!("marker does not decode: {e}"),
        )
    })
}

impl Replay<'_> {
    /// Applies the frames of one whole write, in order. A frame that does
    /// not fit the log ends it: returns the problem (offset, reason, frame
    /// length, the damage) for the caller to handle like a bad frame.
    pub(super) fn apply_write(
        &mut self,
        seg: &mut Segment,
        pending: &mut Vec<PendingFrame>,
        needs_marker: &mut bool,
    ) -> Option<(u64, String, Option<u64>, Option<Damage>)> {
        let frames = std::mem::take(pending);
        for p in &frames {
            if let Err(reason) = self.apply(seg, p, needs_marker) {
                // The frame passed its CRC but does not fit the log: damage,
                // never a tear, reported at this frame.
                return Some((
                    p.offset,
                    reason,
                    Some(u64::from(p.frame_len)),
                    Some(Damage::Continuity),
                ));
            }
        }
        None
    }

    /// Applies one valid, decoded frame to the index. An `Err` is a reason
    /// the frame cannot be part of the log (handled like a bad frame).
    fn apply(
        &mut self,
        seg: &mut Segment,
        p: &PendingFrame,
        needs_marker: &mut bool,
    ) -> std::result::Result<(), String> {
        let (offset, frame_len, first_frame) = (p.offset, p.frame_len, p.first_frame);
        let is_marker = matches!(p.decoded, Decoded::Marker(_));
        if *needs_marker && !(first_frame && is_marker) {
            return Err(format!(
                "segment starts at index {} but the log ends at {} and no reset marker follows",
                seg.first_index, self.ix.last_index
            ));
        }
        match &p.decoded {
            Decoded::Entry(m) => {
                let (last, last_term) = (self.ix.last_index, self.ix.term_before_next());
                match misfit(last, last_term, m.index, m.term) {
                    Some(Misfit::Max) => return Err("an entry at index u64::MAX".into()),
                    Some(Misfit::Index { want }) => {
                        return Err(format!("entry index {} where {want} was expected", m.index))
                    }
                    Some(Misfit::Term { prev }) => {
                        return Err(format!(
                            "entry {} has term {} below the previous term {prev}",
                            m.index, m.term
                        ))
                    }
                    None if m.index != seg.end_index() => {
                        let want = seg.end_index();
                        return Err(format!("entry index {} where {want} was expected", m.index));
                    }
                    None => {}
                }
                let loc = Loc {
                    offset: offset as u32,
                    len: frame_len,
                };
                self.ix.add_entry(seg, m.index, m.term, loc);
                self.report.entries_scanned += 1;
            }
            Decoded::State(data) => {
                self.ix.set_state(seg, data.clone(), (offset, frame_len));
            }
            Decoded::Marker(m) => {
                self.apply_marker(seg, m, first_frame, needs_marker)?;
                self.ix.set_marker(seg, (offset, frame_len), first_frame);
            }
        }
        Ok(())
    }

    /// Applies a sealed segment's footer: the opening marker, the entries,
    /// the newest marker and state, reading only those frames.
    pub(super) fn apply_footer(
        &mut self,
        seg: &mut Segment,
        f: Footer,
        needs_marker: &mut bool,
    ) -> Result<()> {
        let bad = |seg: &Segment, offset: u64, reason: String| {
            Error::corruption(Damage::Continuity, &seg.path, offset, reason)
        };
        if let Some(at) = f.meta.opening {
            let m = decode_marker(seg, at)?;
            self.apply_marker(seg, &m, true, needs_marker)
                .map_err(|r| bad(seg, at.0, r))?;
            self.ix.marker = Some(Pos {
                sequence: seg.sequence,
                offset: at.0,
            });
        }
        if *needs_marker {
            return Err(bad(
                seg,
                seg.data_start,
                "segment does not continue the log".into(),
            ));
        }
        if !f.locs.is_empty() {
            let prev = if self.ix.last_index >= self.ix.first_index {
                self.ix.term_of(self.ix.last_index).unwrap_or(0)
            } else {
                self.ix.prev_term
            };
            if seg.first_index != self.ix.last_index + 1 {
                return Err(bad(
                    seg,
                    u64::from(f.locs[0].offset),
                    format!(
                        "entries start at {} where {} was expected",
                        seg.first_index,
                        self.ix.last_index + 1
                    ),
                ));
            }
            if f.terms.first().is_some_and(|r| r.1 < prev) {
                return Err(bad(
                    seg,
                    u64::from(f.locs[0].offset),
                    "terms go backwards across segments".into(),
                ));
            }
            for &(start, term) in &f.terms {
                self.ix.push_term(start, term);
            }
            self.ix.last_index = seg.first_index + f.locs.len() as u64 - 1;
            self.report.entries_scanned += f.locs.len() as u64;
            seg.locs = f.locs;
        }
        if let Some(at) = f.meta.marker.filter(|m| Some(*m) != f.meta.opening) {
            // Its cut, if any, is already reflected in the footer's entries.
            let m = decode_marker(seg, at)?;
            if m.first_index > self.ix.last_index + 1 {
                return Err(bad(seg, at.0, "marker past the end of the log".into()));
            }
            self.ix.first_index = m.first_index;
            self.ix.prev_term = m.prev_term;
            self.ix.marker = Some(Pos {
                sequence: seg.sequence,
                offset: at.0,
            });
        }
        if let Some(at) = f.meta.state {
            let payload = footer::read_frame(seg, at, FrameType::State)?;
            let st = proto::State::decode(&payload[..]).map_err(|e| {
                let reason = format!("state does not decode: {e}");
                Error::corruption(Damage::Payload, &seg.path, at.0, reason)
            })?;
            self.ix.state = Some((
                st.data,
                Pos {
                    sequence: seg.sequence,
                    offset: at.0,
                },
            ));
        }
        seg.meta = f.meta;
        seg.len = f.data_end;
        Ok(())
    }

    fn apply_marker(
        &mut self,
        seg: &mut Segment,
        m: &proto::Marker,
        first_frame: bool,
        needs_marker: &mut bool,
    ) -> std::result::Result<(), String> {
        if m.first_index == 0 {
            return Err("a marker puts the first index at 0".into());
        }
        // A version-2 segment made by a cut or a reset opens with exactly
        // that marker.
        let wrong_opening = match self.opening {
            Origin::Cut(_) => m.reset || m.truncate_from != seg.first_index,
            Origin::Reset => !m.reset,
            _ => false,
        };
        if first_frame && wrong_opening {
            return Err(format!(
                "the segment was made by {:?} but opens with another marker",
                self.opening
            ));
        }
        if m.reset {
            if !first_frame || m.first_index != seg.first_index {
                return Err("a reset marker must open its segment".into());
            }
            *needs_marker = false;
            // Everything before this segment is superseded.
            for old in self.ix.segments.drain(..) {
                self.superseded.push(old.path);
            }
            self.ix.terms.clear();
            self.ix.last_index = m.first_index - 1;
        } else {
            if m.truncate_from != 0 {
                let cut = m.truncate_from;
                let opens = first_frame && cut == seg.first_index;
                let inside = cut >= seg.first_index && cut <= seg.end_index();
                if !(opens || inside) || cut < self.ix.first_index || cut > self.ix.last_index + 1 {
                    return Err(format!(
                        "truncation marker at index {cut} outside the log {}..={}",
                        self.ix.first_index, self.ix.last_index
                    ));
                }
                *needs_marker = false;
                self.cut(seg, cut);
            } else if *needs_marker {
                return Err("segment does not continue the log".into());
            }
            // An older marker may name a first index below the oldest
            // segment left (later compactions deleted what it kept); only
            // the newest marker must fit, which `finish` checks.
            if m.first_index > self.ix.last_index + 1 {
                return Err(format!(
                    "marker's first index {} is past the end of the log at {}",
                    m.first_index, self.ix.last_index
                ));
            }
        }
        self.ix.first_index = m.first_index;
        self.ix.prev_term = m.prev_term;
        Ok(())
    }

    /// Drops entries `cut..` from the index: from `seg` (being scanned,
    /// not in the index yet) and from every earlier segment.
    fn cut(&mut self, seg: &mut Segment, cut: u64) {
        if cut >= seg.first_index {
            seg.locs.truncate((cut - seg.first_index) as usize);
        }
        let superseded = self.ix.cut_from(cut, false);
        self.superseded.extend(superseded);
    }
}
