//! Composing a write's frames (a cut's marker, a state copy, the batch's
//! entries and state) and publishing it to the index.

use super::*;

/// Where the parts of a composed write are, relative to its start.
#[derive(Clone, Copy, Default)]
pub(super) struct Layout {
    /// The marker frame, if any: start and length.
    pub(super) marker: Option<(usize, usize)>,
    /// The copy of the current state, if any.
    pub(super) state_copy: Option<(usize, usize)>,
    /// The first entry frame.
    pub(super) entries: usize,
    /// The batch's own state frame, if any.
    pub(super) state: Option<(usize, usize)>,
    /// Whether the write is composed in `scratch` (else it is the batch
    /// buffer as it is).
    pub(super) composed: bool,
}

/// Seals the batch's frames with `salt` and, when anything must come before
/// or after them, composes the whole write in `scratch`: marker, state copy,
/// entries, the batch's state.
pub(super) fn compose(
    scratch: &mut Vec<u8>,
    batch: &mut WriteBatch,
    marker: Option<&proto::Marker>,
    state_copy: Option<&Bytes>,
    salt: u32,
    prior_synced: bool,
) -> Layout {
    let alone = marker.is_none() && state_copy.is_none() && batch.state.is_none();
    let last = batch.entries.len().wrapping_sub(1);
    for (k, p) in batch.entries.iter().enumerate() {
        // Written as it is, the batch's first entry opens the write and its
        // last one ends it.
        frame::set_prior_synced(
            &mut batch.buf,
            p.at as usize,
            alone && k == 0 && prior_synced,
        );
        frame::set_end_of_write(&mut batch.buf, p.at as usize, alone && k == last);
        frame::seal(&mut batch.buf, p.at as usize, salt);
    }
    let mut l = Layout::default();
    if alone {
        return l;
    }
    l.composed = true;
    scratch.clear();
    if let Some(m) = marker {
        let at = scratch.len();
        let n = frame::encode_message(scratch, FrameType::Marker, salt, m);
        l.marker = Some((at, n));
    }
    if let Some(s) = state_copy {
        let at = scratch.len();
        let n = frame::encode_message(
            scratch,
            FrameType::State,
            salt,
            &proto::State { data: s.clone() },
        );
        l.state_copy = Some((at, n));
    }
    l.entries = scratch.len();
    scratch.extend_from_slice(&batch.buf);
    if let Some(s) = &batch.state {
        let at = scratch.len();
        let n = frame::encode_message(
            scratch,
            FrameType::State,
            salt,
            &proto::State { data: s.clone() },
        );
        l.state = Some((at, n));
    }
    // The last frame ends the write: the batch's state, else its last
    // entry, else the state copy, else the marker.
    let end = l
        .state
        .map(|s| s.0)
        .or_else(|| batch.entries.last().map(|p| l.entries + p.at as usize))
        .or(l.state_copy.map(|s| s.0))
        .or(l.marker.map(|m| m.0));
    // The first frame opens the write: the marker, else the state copy,
    // else the first entry, else the batch's state.
    let first = l
        .marker
        .map(|m| m.0)
        .or(l.state_copy.map(|s| s.0))
        .or_else(|| batch.entries.first().map(|p| l.entries + p.at as usize))
        .or(l.state.map(|s| s.0));
    if let Some(at) = first.filter(|_| prior_synced) {
        frame::set_prior_synced(scratch, at, true);
        frame::seal(scratch, at, salt);
    }
    if let Some(at) = end {
        frame::set_end_of_write(scratch, at, true);
        frame::seal(scratch, at, salt);
    }
    l
}

/// Publishes a write of `layout` at `offset` in the active segment (whose
/// sequence is `sequence`): entry locations and terms, the new last index,
/// the marker and state positions.
pub(super) fn publish(
    ix: &mut Index,
    batch: &WriteBatch,
    sequence: u64,
    offset: u64,
    layout: Layout,
    state_copy: Option<Bytes>,
) {
    let pos = |rel: usize| Pos {
        sequence,
        offset: offset + rel as u64,
    };
    let at = |(rel, len): (usize, usize)| (offset + rel as u64, len as u32);
    let base = offset + layout.entries as u64;
    if let Some(a) = ix.segments.back_mut() {
        for p in &batch.entries {
            a.locs.push(Loc {
                offset: (base + u64::from(p.at)) as u32,
                len: p.len,
            });
        }
        if let Some(m) = layout.marker {
            a.meta.marker = Some(at(m));
            if at(m).0 == a.data_start {
                a.meta.opening = Some(at(m));
            }
        }
        if let Some(st) = layout.state.or(layout.state_copy) {
            a.meta.state = Some(at(st));
        }
    }
    for p in &batch.entries {
        ix.push_term(p.index, p.term);
    }
    if let Some(last) = batch.entries.last() {
        ix.last_index = last.index;
    }
    if let Some((rel, _)) = layout.marker {
        ix.marker = Some(pos(rel));
    }
    if let (Some((rel, _)), Some(data)) = (layout.state_copy, state_copy) {
        ix.state = Some((data, pos(rel)));
    }
    if let (Some((rel, _)), Some(data)) = (layout.state, &batch.state) {
        ix.state = Some((data.clone(), pos(rel)));
    }
}
