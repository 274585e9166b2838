//! The write path of [`Log`](crate::Log): batches, truncation, compaction, reset,
//! segment rolls, sync policies and poisoning.

use std::sync::Arc;

use prost::bytes::Bytes;

use crate::durability::stage::{STAGE_CAP, STAGE_WRITE_MAX};
use crate::durability::Ticket;
use crate::error::{Error, Result};
use crate::format::batch::WriteBatch;
use crate::format::frame::{self, FrameType};
use crate::format::index::term_in;
use crate::format::index::{Index, Loc, Pos, Segment};
use crate::format::proto;
use crate::format::segment::{self, Link, Origin, ON_THE_SPOT};
use crate::log::entry::Entry;
use crate::log::inner::Inner;
use crate::log::writer::{prepare_mark, Active, Writer};
use crate::options::{SyncPolicy, MAX_SEGMENT_SIZE};

/// How much unsynced data the writer lets gather before it starts its
/// writeback (see `FileHandle::start_writeback`).
const WRITEBACK_CHUNK: u64 = 4 << 20;

/// Where a batch's frames will be written.
enum Target {
    /// Appended to the active segment (possibly after a cut marker).
    Active,
    /// A new segment opened by a truncation marker (the cut reaches below
    /// the active segment).
    NewSegment,
}

impl Inner {
    /// See [`Log::append`](crate::Log::append).
    pub(crate) fn append(&self, entries: &[Entry]) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.set_max_entry_size(self.opts.max_entry_size);
        for e in entries {
            batch.push(e.index, e.term, &e.data)?;
        }
        self.write(&mut batch)
    }

    /// See [`Log::write`](crate::Log::write).
    pub(crate) fn write(&self, batch: &mut WriteBatch) -> Result<()> {
        let Some(ticket) = self.issue(batch, false)? else {
            return Ok(());
        };
        self.apply_policy(&ticket)
    }

    /// See [`Log::submit`](crate::Log::submit).
    pub(crate) fn submit(&self, batch: &mut WriteBatch) -> Result<Ticket> {
        let ticket = match self.issue(batch, true)? {
            Some(t) => t,
            None => self.durability.ticket_for_last(),
        };
        if !ticket.is_durable() {
            self.ensure_pipeline();
            self.durability.request_async();
        }
        Ok(ticket)
    }

    /// See [`Log::append_assigned`](crate::Log::append_assigned).
    pub(crate) fn append_assigned<D: AsRef<[u8]>>(&self, term: u64, data: &[D]) -> Result<u64> {
        let max = self.opts.max_entry_size;
        if let Some(d) = data.iter().find(|d| d.as_ref().len() as u64 > max) {
            return Err(Error::EntryTooLarge {
                len: d.as_ref().len() as u64,
                max,
            });
        }
        let (first, ticket) = {
            let mut w = self.writer.lock();
            self.durability.check()?;
            let first = self.index.read().last_index + 1;
            let mut batch = std::mem::take(&mut w.batch_cache);
            batch.clear();
            for (k, d) in data.iter().enumerate() {
                // Saturating: an index past u64::MAX - 1 is refused by push.
                batch.push(first.saturating_add(k as u64), term, d.as_ref())?;
            }
            let res = self.issue_locked(&mut w, &mut batch, false);
            w.batch_cache = batch;
            (first, res?)
        };
        if let Some(t) = ticket {
            self.apply_policy(&t)?;
        }
        Ok(first)
    }

    /// Waits for a write as the sync policy says.
    fn apply_policy(&self, ticket: &Ticket) -> Result<()> {
        match self.opts.sync {
            SyncPolicy::Always => self.durability.wait_blocking(ticket.sequence()),
            SyncPolicy::EveryN(n) => {
                let due = {
                    let mut w = self.writer.lock();
                    w.unsynced_writes += 1;
                    let due = w.unsynced_writes >= n;
                    if due {
                        w.unsynced_writes = 0;
                    }
                    due
                };
                if due {
                    self.durability.wait_blocking(ticket.sequence())
                } else {
                    Ok(())
                }
            }
            SyncPolicy::Interval(_) | SyncPolicy::Manual => Ok(()),
        }
    }

    /// Validates and issues a batch; `None` when there was nothing to write.
    /// `stage`: it may be staged rather than written at once (see
    /// [`Stage`](crate::durability::stage::Stage)), for `submit`.
    fn issue(&self, batch: &mut WriteBatch, stage: bool) -> Result<Option<Ticket>> {
        if batch.is_empty() {
            return Ok(None);
        }
        let mut w = self.writer.lock();
        self.issue_locked(&mut w, batch, stage)
    }

    fn issue_locked(
        &self,
        w: &mut Writer,
        batch: &mut WriteBatch,
        stage: bool,
    ) -> Result<Option<Ticket>> {
        let max = self.opts.max_entry_size;
        if batch.max_data_len() > max {
            return Err(Error::EntryTooLarge {
                len: batch.max_data_len(),
                max,
            });
        }
        if let Some(s) = &batch.state {
            if s.len() as u64 > max {
                return Err(Error::EntryTooLarge {
                    len: s.len() as u64,
                    max,
                });
            }
        }
        self.durability.check()?;
        let (target, cut) = self.plan(batch)?;
        if cut.is_none() && batch.entries.is_empty() && batch.state.is_none() {
            return Ok(None); // a truncation at last_index + 1 cuts nothing
        }
        match target {
            Target::Active => self.write_active(w, batch, cut, stage).map(Some),
            Target::NewSegment => self.write_new_segment(w, batch, cut.unwrap_or(0)).map(Some),
        }
    }

    /// Checks a batch against the log and decides where it goes. Returns the
    /// cut to make, if any.
    fn plan(&self, batch: &WriteBatch) -> Result<(Target, Option<u64>)> {
        let ix = self.index.read();
        let start = match batch.truncate_from {
            Some(t) if t < ix.first_index => {
                return Err(Error::Compacted {
                    index: t,
                    first_index: ix.first_index,
                })
            }
            Some(t) if t > ix.last_index + 1 => {
                return Err(Error::Unavailable {
                    index: t,
                    last_index: ix.last_index,
                })
            }
            Some(t) => t,
            None => ix.last_index + 1,
        };
        if let Some(e) = batch.entries.first() {
            if e.index != start {
                return Err(Error::NonContiguous {
                    got: e.index,
                    last_index: start - 1,
                });
            }
            let prev = term_in(&ix, start - 1).unwrap_or(0);
            let mut t = prev;
            for p in &batch.entries {
                if p.term < t {
                    return Err(Error::InvalidArgument(format!(
                        "entry {} has term {} below the term {t} before it; terms never decrease in a Raft log",
                        p.index, p.term
                    )));
                }
                t = p.term;
            }
        }
        let cut = batch.truncate_from.filter(|&t| t <= ix.last_index);
        let active_first = ix.segments.back().map_or(0, |s| s.first_index);
        match cut {
            Some(t) if t < active_first => Ok((Target::NewSegment, cut)),
            _ => Ok((Target::Active, cut)),
        }
    }

    /// Appends the batch to the active segment, rolling to a new segment
    /// first when it would overflow. `stage`: a batch without a cut may be
    /// staged for the background syncer's next round to write out, when
    /// that syncer runs. Each step is a function of its own.
    fn write_active(
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
        let staged =
            stage && cut.is_none() && buf.len() <= STAGE_WRITE_MAX && self.pipeline_running();
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
            if let Some(p) = self.preparer.lock().as_ref() {
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
        if self.opts.sync == SyncPolicy::Always {
            return;
        }
        let (from, to) = (a.len / WRITEBACK_CHUNK, (a.len + written) / WRITEBACK_CHUNK);
        if to > from {
            let start = from * WRITEBACK_CHUNK;
            self.writeback
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
            if let Some(p) = self.preparer.lock().as_ref() {
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
    fn roll_back_write(
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

    /// Whether the preparer has a file ready.
    fn prepared_ready(&self) -> bool {
        self.preparer.lock().as_ref().is_some_and(|p| p.is_ready())
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
    fn roll(&self, w: &mut Writer) -> Result<()> {
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
            let sealed = ix.segments.back().map(|s| s.sequence);
            ix.segments.push_back(seg);
            sealed
        };
        if let Some(sequence) = sealed {
            self.start_sealing(sequence);
        }
        Ok(())
    }

    /// The sequence number of the next segment, and the prepared file to
    /// make it from when there is one (the preparer's, or one of `size`
    /// bytes allocated on the spot; none under `Preallocate::None`, or when
    /// allocating fails).
    fn next_segment(&self, w: &mut Writer, size: u64) -> (u64, Option<std::path::PathBuf>) {
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
        let ready = inner.preparer.lock().as_ref().and_then(|p| p.take(size));
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
    fn open_segment_with(
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
    fn write_new_segment(
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
            let sequence = seg.sequence;
            ix.segments.push_back(seg);
            publish(&mut ix, batch, sequence, offset, layout, copy);
            if let Some(s) = ix.segments.back() {
                w.active = Active::of(s);
            }
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

    /// See [`Log::truncate_from_index`](crate::Log::truncate_from_index).
    pub(crate) fn truncate_from_index(&self, index: u64) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.truncate_from(index);
        self.write(&mut batch)
    }

    /// See [`Log::set_state`](crate::Log::set_state).
    pub(crate) fn set_state(&self, state: impl Into<Bytes>) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.set_state(state);
        self.write(&mut batch)
    }

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
        inner.remover.remove(removed);
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
            let sequence = seg.sequence;
            ix.segments.push_back(seg);
            ix.first_index = next_index;
            ix.last_index = next_index - 1;
            ix.prev_term = term;
            ix.terms.clear();
            publish(&mut ix, &empty, sequence, offset, layout, state);
            if let Some(s) = ix.segments.back() {
                w.active = Active::of(s);
            }
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
    fn write_meta(
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

    /// See [`Log::sync`](crate::Log::sync).
    pub(crate) fn sync(&self) -> Result<()> {
        self.durability.sync_all()
    }
}

/// Where the parts of a composed write are, relative to its start.
#[derive(Clone, Copy, Default)]
struct Layout {
    /// The marker frame, if any: start and length.
    marker: Option<(usize, usize)>,
    /// The copy of the current state, if any.
    state_copy: Option<(usize, usize)>,
    /// The first entry frame.
    entries: usize,
    /// The batch's own state frame, if any.
    state: Option<(usize, usize)>,
    /// Whether the write is composed in `scratch` (else it is the batch
    /// buffer as it is).
    composed: bool,
}

/// Seals the batch's frames with `salt` and, when anything must come before
/// or after them, composes the whole write in `scratch`: marker, state copy,
/// entries, the batch's state.
fn compose(
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
fn publish(
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
