//! A write into the active segment, step by step: whether to roll, the
//! cut's marker, composing, writing or staging, writeback hints, pacing
//! the preparer, publishing; and rolling back a failed write.

use super::*;

impl Inner {
    /// Appends the batch to the active segment, rolling to a new segment
    /// first when it would overflow. `stage`: a batch without a cut may be
    /// staged for the background syncer's next round to write out, when
    /// that syncer runs. Each step is a function of its own.
    pub(super) fn write_active(
        &self,
        w: &mut Writer,
        batch: &mut WriteBatch,
        cut: Option<u64>,
        stage: bool,
    ) -> Result<Ticket> {
        self.ask_after_open(w);
        if self.must_roll(w, batch, cut) {
            self.roll(w)?;
        }
        let bytes = batch.buf.len() as u64;
        if w.active.len + bytes + 1024 > MAX_SEGMENT_SIZE {
            return Err(Error::InvalidArgument(format!(
                "a write of {bytes} bytes does not fit a segment (segment offsets are 32-bit)"
            )));
        }
        let offset = w.active.len;
        let fill_start = *w
            .fill_start
            .get_or_insert_with(|| (std::time::Instant::now(), offset));
        let marker = cut.map(|t| self.cut_marker(t));
        // Everything before this write is on disk: a crash cannot tear it.
        let prior_synced = !self.durability.dirty();
        let salt = frame::salt(w.active.sequence);
        let layout = compose(
            &mut w.scratch,
            batch,
            marker.as_ref(),
            None,
            salt,
            prior_synced,
        );
        let buf: &[u8] = match layout.composed {
            true => &w.scratch,
            false => &batch.buf,
        };
        let staged = stage
            && cut.is_none()
            && buf.len() <= STAGE_WRITE_MAX
            && self.background.pipeline_running();
        self.issue_bytes(&w.active, buf, staged)?;
        let written = buf.len() as u64;
        let ticket = self.durability.issued(&w.active.file, &w.active.path);
        if !staged {
            self.hint_writeback(&w.active, written);
        }
        self.pace_preparer(&w.active, fill_start, written);
        crate::metrics::write(batch.entries.len(), buf.len());
        if cut.is_some() {
            crate::metrics::truncation();
        }
        self.publish_write(w, batch, cut, layout, written);
        Ok(ticket)
    }

    /// Only after a reopen (see `Writer::roll_when_prepared`): asks the
    /// preparer, at the first write, for the segment to roll to.
    fn ask_after_open(&self, w: &mut Writer) {
        if w.roll_when_prepared && !w.asked_after_open {
            w.asked_after_open = true;
            let next = self
                .opts
                .next_segment_size(Some(w.active.capacity(self.opts.segment_size)));
            if let Some(p) = self.background.preparer() {
                p.want(None, next);
            }
        }
    }

    /// Whether the batch starts a new segment: the active one is full (and
    /// holds entries), or a prepared segment is ready after a reopen, or
    /// offsets would pass 4 GiB (segment offsets are `u32`). A write with a
    /// cut stays in the active segment.
    fn must_roll(&self, w: &Writer, batch: &WriteBatch, cut: Option<u64>) -> bool {
        let a = &w.active;
        let bytes = batch.buf.len() as u64;
        let early = w.roll_when_prepared && self.prepared_ready();
        let overflow = a.len + bytes + 1024 > MAX_SEGMENT_SIZE;
        let full = a.len + bytes > a.capacity(self.opts.segment_size);
        cut.is_none()
            && !batch.entries.is_empty()
            && (overflow || (a.holds_entries && (full || early)))
    }

    /// The marker of a cut at `from` inside the active segment.
    fn cut_marker(&self, from: u64) -> proto::Marker {
        let ix = self.index.read();
        proto::Marker {
            first_index: ix.first_index,
            prev_term: ix.prev_term,
            reset: false,
            truncate_from: from,
        }
    }

    /// Writes `buf` at the end of the active segment, or stages it for the
    /// background syncer (`staged`). Staged batches come first in the file:
    /// a direct write writes them out before it. A failed write is rolled
    /// back (see `roll_back_write`).
    fn issue_bytes(&self, a: &Active, buf: &[u8], staged: bool) -> Result<()> {
        let st = &self.durability.stage;
        if staged {
            if st.push(&a.file, &a.path, a.sequence, a.len, buf)? > STAGE_CAP {
                // The disk is behind: write out what is staged here.
                self.durability.flush_staged()?;
            }
            return Ok(());
        }
        self.durability.flush_staged()?;
        if let Err(e) = a.file.write_all_at(buf, a.len) {
            return Err(self.roll_back_write(&*a.file, &a.path, a.len, a.preallocated, e));
        }
        Ok(())
    }

    /// Without a sync per write, dirty pages pile up until the next sync
    /// (or the sealer's), which would then write them all at once (tens of
    /// ms with 64 MiB segments). Starts their writeback as each
    /// `WRITEBACK_CHUNK` fills instead, on a thread of its own: the hint
    /// itself can block for milliseconds when the device queue is full.
    /// (Staged batches need no hint: the round that writes them out syncs
    /// them at once.)
    fn hint_writeback(&self, a: &Active, written: u64) {
        if !self.durability.policy.hints_writeback() {
            return;
        }
        let (from, to) = (a.len / WRITEBACK_CHUNK, (a.len + written) / WRITEBACK_CHUNK);
        if to > from {
            let start = from * WRITEBACK_CHUNK;
            self.background
                .writeback
                .hint(&a.file, start, to * WRITEBACK_CHUNK - start);
        }
    }

    /// Past the prepare mark: asks the preparer for the next segment,
    /// saying how soon the writer will need it at the rate it filled this
    /// one so far (`fill_start`: when and where that started).
    fn pace_preparer(&self, a: &Active, fill_start: (std::time::Instant, u64), written: u64) {
        let capacity = a.capacity(self.opts.segment_size);
        let mark = prepare_mark(capacity, self.opts.segment_size);
        let offset = a.len;
        if offset < mark && offset + written >= mark {
            let (t0, from) = fill_start;
            let filled = offset + written - from;
            let left = capacity.saturating_sub(offset + written);
            let rest = (filled > 0).then(|| t0.elapsed().mul_f64(left as f64 / filled as f64));
            if let Some(p) = self.background.preparer() {
                p.want(rest, self.opts.next_segment_size(Some(capacity)));
            }
        }
    }

    /// Publishes the write (`written` bytes at the end of the active
    /// segment, after the cut if any) to the index, and the new length to
    /// the writer's copy.
    fn publish_write(
        &self,
        w: &mut Writer,
        batch: &WriteBatch,
        cut: Option<u64>,
        layout: Layout,
        written: u64,
    ) {
        let a = &mut w.active;
        let mut ix = self.index.write();
        if let Some(t) = cut {
            ix.cut_from(t, true);
        }
        publish(&mut ix, batch, a.sequence, a.len, layout, None);
        a.len += written;
        if let Some(s) = ix.segments.back_mut() {
            s.len = a.len;
            a.holds_entries = !s.locs.is_empty();
        }
    }

    /// After a write at `offset` of the active segment failed with `e`:
    /// cuts whatever part of it reached the file, so the file ends where
    /// the index says it does. Space the segment had preallocated past
    /// that point (up to `reserved`) is allocated again (truncating gives it back to the file
    /// system, and later appends would have to grow the file: slower, and
    /// `ENOSPC` on a full disk although the space was reserved); failing
    /// that is not an error, as in recovery. Returns the error to report:
    /// the write's, or the poisoning one when the cut fails.
    pub(super) fn roll_back_write(
        &self,
        file: &dyn crate::fs::FileHandle,
        path: &std::path::Path,
        offset: u64,
        reserved: u64,
        e: std::io::Error,
    ) -> Error {
        let err = Error::io("write", path, e);
        if let Err(e2) = file.set_len(offset) {
            return self
                .durability
                .poison(Error::io("truncate after failed write", path, e2));
        }
        if reserved > offset {
            if let Err(e3) = file.allocate(offset, reserved - offset) {
                log::warn!(
                    "raftwal: could not preallocate {} again after a failed write: {e3}",
                    path.display()
                );
            }
        }
        err
    }
}
