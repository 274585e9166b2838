//! Structural writes: compaction (a marker, then the superseded segments
//! to the remover), a reset (a new segment), and the synced marker write
//! they use.

use super::*;

impl Inner {
    /// See [`Log::compact`](crate::Log::compact).
    pub(crate) fn compact(&self, index: u64) -> Result<()> {
        let inner = self;
        let mut w = inner.writer.lock();
        inner.durability.check()?;
        let (marker, doomed, state_copy) = {
            let ix = inner.index.read();
            if index <= ix.first_index {
                return Ok(());
            }
            if index > ix.last_index + 1 {
                return Err(Error::Unavailable {
                    index,
                    last_index: ix.last_index,
                });
            }
            let prev_term = term_in(&ix, index - 1)?;
            let n = ix.segments.len();
            let doomed: Vec<u64> = ix
                .segments
                .iter()
                .take(n.saturating_sub(1))
                .take_while(|s| s.end_index() <= index)
                .map(|s| s.sequence)
                .collect();
            let state_copy = ix
                .state
                .as_ref()
                .filter(|s| doomed.contains(&s.1.sequence))
                .map(|s| s.0.clone());
            let m = proto::Marker {
                first_index: index,
                prev_term,
                reset: false,
                truncate_from: 0,
            };
            (m, doomed.len(), state_copy)
        };
        self.write_meta(&mut w, &marker, state_copy)?;
        crate::metrics::compaction();
        let removed = {
            let mut ix = inner.index.write();
            ix.first_index = marker.first_index;
            ix.prev_term = marker.prev_term;
            let mut removed = Vec::with_capacity(doomed);
            for _ in 0..doomed {
                if let Some(s) = ix.segments.pop_front() {
                    removed.push(s.path);
                }
            }
            let start = ix.first_index;
            ix.trim_terms_below(start);
            removed
        };
        // The marker is durable: the removed segments are superseded (an
        // open removes any it finds), so unlinking them, slow for big files,
        // is left to the background remover.
        inner.background.remover.remove(removed);
        Ok(())
    }

    /// See [`Log::reset`](crate::Log::reset).
    pub(crate) fn reset(&self, next_index: u64, term: u64) -> Result<()> {
        if next_index == 0 {
            return Err(Error::InvalidArgument(
                "reset: next_index must be at least 1".into(),
            ));
        }
        let inner = self;
        let mut w = inner.writer.lock();
        inner.durability.check()?;
        let state = inner.index.read().state.as_ref().map(|s| s.0.clone());
        let marker = proto::Marker {
            first_index: next_index,
            prev_term: term,
            reset: true,
            truncate_from: 0,
        };
        let mut empty = WriteBatch::new();
        // The new segment's first write is marked prior-synced: make it so.
        inner.durability.sync_all()?;
        let (seg, layout, offset) = self.open_segment_with(
            &mut w,
            next_index,
            Origin::Reset,
            &mut empty,
            &marker,
            state.as_ref(),
        )?;
        inner.durability.all_synced(&seg.file, &seg.path);
        crate::metrics::reset();
        let removed = {
            let mut ix = inner.index.write();
            let removed: Vec<_> = ix.segments.drain(..).map(|s| s.path).collect();
            ix.first_index = next_index;
            ix.last_index = next_index - 1;
            ix.prev_term = term;
            ix.terms.clear();
            publish_opened(&mut ix, &mut w, seg, &empty, offset, layout, state);
            removed
        };
        // Every older segment is superseded by the reset segment, whichever
        // of their unlinks reach the disk: a failed unlink fails nothing.
        crate::background::remove::remove_superseded(
            &*inner.opts.file_system,
            &inner.dir,
            &removed,
        );
        Ok(())
    }

    /// Appends a marker (and a state copy) to the active segment and syncs,
    /// whatever the policy: structural changes follow it.
    pub(super) fn write_meta(
        &self,
        w: &mut Writer,
        marker: &proto::Marker,
        state: Option<Bytes>,
    ) -> Result<()> {
        let inner = self;
        let a = &w.active;
        let (file, path, sequence, offset, reserved) = (
            Arc::clone(&a.file),
            a.path.clone(),
            a.sequence,
            a.len,
            a.preallocated,
        );
        // Staged batches come first in the file.
        inner.durability.flush_staged()?;
        let mut empty = WriteBatch::new();
        let prior_synced = !inner.durability.dirty();
        let layout = compose(
            &mut w.scratch,
            &mut empty,
            Some(marker),
            state.as_ref(),
            frame::salt(sequence),
            prior_synced,
        );
        if let Err(e) = file.write_all_at(&w.scratch, offset) {
            return Err(self.roll_back_write(&*file, &path, offset, reserved, e));
        }
        // One sync round: older files still pending first, then this one.
        let ticket = inner.durability.issued(&file, &path);
        inner.durability.wait_locked(ticket.sequence())?;
        let mut ix = inner.index.write();
        publish(&mut ix, &empty, sequence, offset, layout, state);
        w.active.len = offset + w.scratch.len() as u64;
        if let Some(a) = ix.segments.back_mut() {
            a.len = w.active.len;
        }
        Ok(())
    }
}
