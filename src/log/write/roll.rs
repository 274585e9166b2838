//! Starting segments: a roll (the old one left for its sealer), and the
//! segments a cut below the active one or a reset opens with their
//! marker, written and synced under a `.prep` name first.

use super::*;

impl Inner {
    /// Whether the preparer has a file ready.
    pub(super) fn prepared_ready(&self) -> bool {
        self.background.preparer().is_some_and(|p| p.is_ready())
    }

    /// Seals the active segment and starts a new one at `last_index + 1`.
    ///
    /// The old segment is not synced here: if it holds unsynced writes it
    /// becomes a pending file of the durability tracker, synced by the next
    /// sync round or by its sealer, whichever comes first. Until then no
    /// write is marked prior-synced (`durability.dirty()` stays true), which
    /// is what lets recovery call a torn tail in it a crash's doing.
    ///
    /// Nor is the new segment's header, nor the directory entry the roll
    /// makes (the prepared file's rename, or the new file): the header
    /// counts as an unsynced write and the directory is due for an fsync,
    /// both done by the next sync round (pending files, the directory, then
    /// the active file; `synced` advances only after all three) or the
    /// sealer. Under `Always` the first write's own sync covers the header.
    /// A crash before then may leave a torn header in a segment holding
    /// frames (recovery removes it as a torn creation when no write in it
    /// or after it is prior-synced) or the frames in a prepared file that
    /// kept its name (never adopted: it is not pristine).
    pub(super) fn roll(&self, w: &mut Writer) -> Result<()> {
        let inner = self;
        // The segment being left gets its staged batches before it is
        // sealed (its sealer and its pending sync work on the file).
        inner.durability.flush_staged()?;
        // The new segment names the one it continues and where that one's
        // data ends: recovery checks the old segment still ends there, so
        // a lost write at its end is never glued to the new segment.
        let a = &w.active;
        let link = Link {
            sequence: a.sequence,
            end: a.len,
            // As for a write's prior-synced mark: nothing issued, and no
            // roll's name or header, is unsynced.
            synced: !inner.durability.dirty(),
        };
        let size = inner
            .opts
            .next_segment_size(Some(a.capacity(inner.opts.segment_size)));
        let next_first = inner.index.read().last_index + 1;
        let (sequence, prepared) = self.next_segment(w, size);
        let fs = &*inner.opts.file_system;
        let c = segment::create_unsynced(
            fs,
            &inner.dir,
            sequence,
            next_first,
            prepared,
            Origin::Roll(link),
        )?;
        let seg = Segment::created(sequence, next_first, c);
        inner.durability.rolled_to(&seg.file, &seg.path);
        crate::metrics::roll();
        w.active = Active::of(&seg);
        let sealed = {
            let mut ix = inner.index.write();
            let sealed = ix.segments.back_mut().map(|s| {
                // Complete: give back the spare room of its entry list.
                s.locs.shrink_to_fit();
                s.sequence
            });
            ix.segments.push_back(seg);
            sealed
        };
        if let Some(sequence) = sealed {
            self.background.start_sealing(sequence);
        }
        Ok(())
    }

    /// The sequence number of the next segment, and the prepared file to
    /// make it from when there is one (the preparer's, or one of `size`
    /// bytes allocated on the spot; none under `Preallocate::None`, or when
    /// allocating fails).
    pub(super) fn next_segment(
        &self,
        w: &mut Writer,
        size: u64,
    ) -> (u64, Option<std::path::PathBuf>) {
        let inner = self;
        let sequence = w.next_sequence;
        w.next_sequence += 1;
        // A new active segment: its fill rate starts afresh, and its tail is
        // what the preparer made of it.
        w.fill_start = None;
        w.roll_when_prepared = false;
        if inner.opts.preallocate == crate::options::Preallocate::None {
            return (sequence, None);
        }
        let ready = inner.background.preparer().and_then(|p| p.take(size));
        // None ready (the preparer is behind, or out of space): allocate
        // on the spot, or fall back to a growing file.
        let prepared = ready.or_else(|| {
            segment::prepare(
                &*inner.opts.file_system,
                &inner.dir,
                ON_THE_SPOT | sequence,
                size,
            )
            .ok()
        });
        (sequence, prepared)
    }

    /// Creates a segment of `origin` starting at `first_index` whose first
    /// write is `marker`, then `state_copy`, then the batch: the file gets
    /// its name only once that write is on disk (see
    /// [`segment::create_opened`]), and the directory is synced. Returns
    /// the segment, the write's layout and its offset. The callers made
    /// every earlier write durable first, so the write is marked
    /// prior-synced.
    pub(super) fn open_segment_with(
        &self,
        w: &mut Writer,
        first_index: u64,
        origin: Origin,
        batch: &mut WriteBatch,
        marker: &proto::Marker,
        state_copy: Option<&Bytes>,
    ) -> Result<(Segment, Layout, u64)> {
        let inner = self;
        let fs = &*inner.opts.file_system;
        let size = inner
            .opts
            .next_segment_size(Some(w.active.capacity(inner.opts.segment_size)));
        let (sequence, prepared) = self.next_segment(w, size);
        let salt = frame::salt(sequence);
        let layout = compose(&mut w.scratch, batch, Some(marker), state_copy, salt, true);
        let c = segment::create_opened(
            fs,
            &inner.dir,
            sequence,
            first_index,
            prepared,
            origin,
            &w.scratch,
        )
        .map_err(|e| match e {
            // The file is gone again, but after a failed fdatasync nothing
            // is known of the disk: the log is poisoned, as always.
            e @ Error::Io {
                op: "fdatasync", ..
            } => inner.durability.poison(e),
            e => e,
        })?;
        if let Err(e) = segment::sync_dir(fs, &inner.dir) {
            let _ = fs.remove(&c.path);
            return Err(inner.durability.poison(e));
        }
        let offset = c.header_len;
        let mut seg = Segment::created(sequence, first_index, c);
        seg.len = offset + w.scratch.len() as u64;
        Ok((seg, layout, offset))
    }

    /// A cut below the active segment: the batch goes into a new segment
    /// that opens with a truncation marker (and a copy of the state, since
    /// segments holding it may be deleted). Only once that segment is
    /// durable are the cut segments deleted and truncated.
    pub(super) fn write_new_segment(
        &self,
        w: &mut Writer,
        batch: &mut WriteBatch,
        cut: u64,
    ) -> Result<Ticket> {
        let inner = self;
        let (marker, state, prev) = {
            let ix = inner.index.read();
            let m = proto::Marker {
                first_index: ix.first_index,
                prev_term: ix.prev_term,
                reset: false,
                truncate_from: cut,
            };
            // The new segment continues the newest one holding entries
            // below the cut; the ones after it are superseded.
            let prev = ix
                .segments
                .iter()
                .rev()
                .find(|s| s.first_index < cut)
                .map(|s| Link {
                    sequence: s.sequence,
                    end: s.len,
                    // Everything is synced before the segment is made.
                    synced: true,
                });
            (m, ix.state.as_ref().map(|s| s.0.clone()), prev)
        };
        let copy = if batch.state.is_some() { None } else { state };
        // The new segment's first write is marked prior-synced: make it so.
        inner.durability.sync_all()?;
        let (seg, layout, offset) =
            self.open_segment_with(w, cut, Origin::Cut(prev), batch, &marker, copy.as_ref())?;
        let ticket = inner.durability.issued(&seg.file, &seg.path);
        inner.durability.all_synced(&seg.file, &seg.path);
        crate::metrics::write(batch.entries.len(), w.scratch.len());
        crate::metrics::truncation();
        // The new segment is durable: now the cut takes effect.
        let removed = {
            let mut ix = inner.index.write();
            let removed = ix.cut_from(cut, false);
            publish_opened(&mut ix, w, seg, batch, offset, layout, copy);
            removed
        };
        // The cut segment keeps its stale frames (and its footer stays
        // valid): the new segment's opening marker cuts them on every open
        // until the segment is compacted away. The segments after it are
        // superseded by the new one's link, whichever of their unlinks
        // reach the disk: a failed unlink fails nothing.
        crate::background::remove::remove_superseded(
            &*inner.opts.file_system,
            &inner.dir,
            &removed,
        );
        Ok(ticket)
    }
}
