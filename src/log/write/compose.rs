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
        l.state_copy = Some(state_frame(scratch, salt, s));
    }
    l.entries = scratch.len();
    scratch.extend_from_slice(&batch.buf);
    if let Some(s) = &batch.state {
        l.state = Some(state_frame(scratch, salt, s));
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
    let at = |(rel, len): (usize, usize)| (offset + rel as u64, len as u32);
    // The active segment is taken out of the index while the write is
    // applied to both, as the replay applies a segment it reads.
    let Some(mut a) = ix.segments.pop_back() else {
        return;
    };
    debug_assert_eq!(a.sequence, sequence);
    if let Some(m) = layout.marker {
        let opening = at(m).0 == a.data_start;
        ix.set_marker(&mut a, at(m), opening);
    }
    if let (Some(st), Some(data)) = (layout.state_copy, state_copy) {
        ix.set_state(&mut a, data, at(st));
    }
    let base = offset + layout.entries as u64;
    for p in &batch.entries {
        let loc = Loc {
            offset: (base + u64::from(p.at)) as u32,
            len: p.len,
        };
        ix.add_entry(&mut a, p.index, p.term, loc);
    }
    if let (Some(st), Some(data)) = (layout.state, &batch.state) {
        ix.set_state(&mut a, data.clone(), at(st));
    }
    ix.segments.push_back(a);
}

/// Appends a state frame holding `data` to `scratch`: its start and length.
fn state_frame(scratch: &mut Vec<u8>, salt: u32, data: &Bytes) -> (usize, usize) {
    let at = scratch.len();
    let n = frame::encode_message(
        scratch,
        FrameType::State,
        salt,
        &proto::State { data: data.clone() },
    );
    (at, n)
}

/// Makes `seg`, opened by a cut below the active segment or a reset with
/// its first write (of `layout` at `offset`) durable, the index's and the
/// writer's active segment, and publishes that write.
pub(super) fn publish_opened(
    ix: &mut Index,
    w: &mut Writer,
    seg: Segment,
    batch: &WriteBatch,
    offset: u64,
    layout: Layout,
    state: Option<Bytes>,
) {
    let sequence = seg.sequence;
    ix.segments.push_back(seg);
    publish(ix, batch, sequence, offset, layout, state);
    if let Some(s) = ix.segments.back() {
        w.active = Active::of(s);
    }
}
