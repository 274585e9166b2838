//! Appending an engine record: one entry of the engine's stream, whose
//! data the caller writes straight into the batch buffer, issued under the
//! writer lock; the caller learns where it landed before anyone else can
//! write (see `crate::engine`).

use super::*;

/// Where a record (a stream entry's data) is: its stream index, the
/// segment holding it, and the offset of its data in that file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordAt {
    /// The record's index in the stream.
    pub index: u64,
    /// The sequence number of the segment holding it.
    pub sequence: u64,
    /// The offset of its first data byte in that segment file.
    pub data_offset: u64,
}

impl Inner {
    /// Appends one record of `len` bytes, written by `fill`, as the
    /// stream's next entry (term 1), staged when `stage` (see
    /// [`Inner::submit`]). `placed` is called with where it landed while
    /// the writer lock is still held, so records are placed in stream
    /// order. Returns the write's ticket: the caller waits for it, or
    /// hands it to the pipeline, with [`Inner::after_record`].
    pub(crate) fn append_record(
        &self,
        len: usize,
        fill: impl FnOnce(&mut Vec<u8>),
        stage: bool,
        placed: impl FnOnce(RecordAt),
    ) -> Result<Ticket> {
        if len as u64 > self.opts.max_entry_size {
            return Err(Error::EntryTooLarge {
                len: len as u64,
                max: self.opts.max_entry_size,
            });
        }
        let mut w = self.writer.lock();
        self.durability.check()?;
        let index = self.index.read().last_index + 1;
        let mut batch = std::mem::take(&mut w.batch_cache);
        batch.clear();
        let pushed = batch.push_with(index, 1, len, fill);
        let issued = pushed.and_then(|()| self.issue_locked(&mut w, &mut batch, stage));
        w.batch_cache = batch;
        let Some(ticket) = issued? else {
            return Err(Error::internal("an engine record wrote nothing"));
        };
        let at = {
            let ix = self.index.read();
            let Some((seg, loc)) = ix.locate(index) else {
                // Written, but its caller cannot place it: what it keeps in
                // memory would no longer match the disk.
                let msg = format!("record {index} has no location");
                self.durability.poison_because(msg.clone());
                return Err(self.internal(msg));
            };
            RecordAt {
                index,
                sequence: seg.sequence,
                // An entry's data ends its frame (`frame::encode_entry_with`).
                data_offset: u64::from(loc.offset) + u64::from(loc.len) - len as u64,
            }
        };
        placed(at);
        drop(w);
        Ok(ticket)
    }

    /// After [`Inner::append_record`], with the writer lock released: for a
    /// write, waits as the sync policy says; for a submit, hands the ticket
    /// to the pipeline syncer.
    pub(crate) fn after_record(&self, ticket: &Ticket, submit: bool) -> Result<()> {
        if submit {
            if !ticket.is_durable() {
                self.background.ensure_pipeline();
                self.durability.request_async();
            }
            Ok(())
        } else {
            self.durability.policy.after_write(&self.durability, ticket)
        }
    }
}
