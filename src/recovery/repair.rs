//! Torn tails and damage met while recovering: what is cut, what is
//! refused (as `Options::recovery_mode` says), and how the segment that
//! stays active is left for new writes. The rules that tell a crash's tear
//! from damage are in `damage.rs`, shared with `inspect`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Flow, Recovery};
use crate::damage::is_lost_tail;
use crate::error::{Error, Result};
use crate::index::Segment;
use crate::options::RecoveryMode;
use crate::segment::{self, Scanned, Scanner, ENTRY_OVERHEAD};

impl Recovery<'_> {
    pub(super) fn bad_header(
        &mut self,
        path: PathBuf,
        offset: u64,
        reason: String,
        tail: bool,
    ) -> Result<Flow> {
        match self.opts.recovery_mode {
            RecoveryMode::TolerateTailCorruption if tail => {}
            RecoveryMode::TolerateAnyCorruption => {}
            _ => {
                return Err(Error::Corruption {
                    path,
                    offset,
                    reason,
                })
            }
        }
        log::warn!(
            "raftwal: removing segment {} with a bad header: {reason}",
            path.display()
        );
        let len = self
            .opts
            .file_system
            .open(&path)
            .and_then(|f| f.len())
            .unwrap_or(0);
        self.report.bytes_dropped += len;
        self.report.repairs.push((path.clone(), offset, reason));
        self.remove.push(path);
        Ok(Flow::Stop)
    }

    /// Handles a bad frame at `at` (in a write starting at `cut`) as the
    /// recovery mode says: an error naming `at`, or the file cut at `cut`.
    pub(super) fn bad_frame(
        &mut self,
        seg: &mut Segment,
        cut: u64,
        at: u64,
        file_len: u64,
        reason: String,
        tail: bool,
    ) -> Result<Flow> {
        let path = &seg.path;
        match self.opts.recovery_mode {
            RecoveryMode::TolerateTailCorruption if tail => {}
            RecoveryMode::TolerateAnyCorruption => {}
            _ => {
                return Err(Error::Corruption {
                    path: path.clone(),
                    offset: at,
                    reason,
                })
            }
        }
        let offset = cut;
        let dropped = file_len - offset;
        log::warn!(
            "raftwal: truncating {} at offset {offset}, dropping {dropped} bytes: {reason}",
            path.display()
        );
        cut_file(seg, offset)?;
        self.report.bytes_dropped += dropped;
        self.report.repairs.push((seg.path.clone(), offset, reason));
        Ok(Flow::Stop)
    }

    /// Cuts the last segment (when it was scanned, not read by its footer)
    /// at the end of its data, giving the rest back as preallocated zeros.
    /// Under a relaxed sync policy or group commit several writes are
    /// unsynced at once, and a crash may zero an earlier one and keep a
    /// later one: the scan ends at the zeros (unused space), but the later
    /// write's frames are still there, and a new write of another length
    /// would put them back in the log. A segment kept with a torn footer
    /// (or zeros to its end) is cut the same way, and that is reported.
    pub(super) fn cut_after_last(&mut self) -> Result<()> {
        let Some(seg) = self.ix.segments.back_mut() else {
            return Ok(());
        };
        if self.read_by_footer.contains(&seg.sequence) {
            return Ok(());
        }
        let torn_seal = self.torn_seals.contains(&seg.sequence);
        if !torn_seal && seg.preallocated <= seg.len {
            return Ok(());
        }
        let offset = seg.len;
        cut_file(seg, offset)?;
        self.tail_reallocated = seg.preallocated > offset;
        if torn_seal {
            let reason = "cut the bytes after the data (a torn footer, or writes lost in a crash): the segment goes on as the last one".to_string();
            log::warn!(
                "raftwal: {} at offset {offset}: {reason}",
                seg.path.display()
            );
            self.report.repairs.push((seg.path.clone(), offset, reason));
        }
        Ok(())
    }

    /// Opens segment files for the rules in `damage`.
    pub(super) fn opener(&self) -> impl Fn(&Path) -> Result<Arc<dyn crate::fs::FileHandle>> + '_ {
        |p: &Path| segment::open(&*self.opts.file_system, p)
    }

    /// A segment (`seg`, not yet in the index) that does not continue the
    /// log: when it shows the tail of the segment before it was lost in a
    /// crash (see `damage::is_lost_tail`), that segment is cut at the end
    /// of its data and becomes the last one; `seg` and every later file go
    /// (returns true: stop). Only under the tolerant modes; under
    /// `AbsoluteConsistency` it is `Error::Corruption`, as a torn tail is.
    pub(super) fn lost_tail_before(
        &mut self,
        seg: &Segment,
        header: &segment::Header,
        file_len: u64,
        later: &[&Path],
    ) -> Result<bool> {
        let Some(prev) = self.ix.segments.back() else {
            return Ok(false);
        };
        let prev_sealed = self.read_by_footer.contains(&prev.sequence);
        if prev_sealed || header.first_index <= self.ix.last_index + 1 {
            return Ok(false);
        }
        let max_payload = self.opts.max_entry_size + ENTRY_OVERHEAD;
        // A segment holding only its header is an interrupted reset or cut
        // (removed below, whatever the mode).
        let mut scanner = Scanner::new(&*seg.file, &seg.path, file_len, header, max_payload);
        if matches!(scanner.next_frame()?, Scanned::End) {
            return Ok(false);
        }
        let mut from_here: Vec<&Path> = vec![seg.path.as_path()];
        from_here.extend_from_slice(later);
        let lost = is_lost_tail(
            prev_sealed,
            header.first_index,
            self.ix.last_index + 1,
            &from_here,
            &self.opener(),
            max_payload,
        )?;
        if !lost {
            return Ok(false);
        }
        let reason = format!(
            "the next segment starts at index {} but this one ends at {}: its tail was lost in a crash (no write after it was durable)",
            header.first_index, self.ix.last_index
        );
        if self.opts.recovery_mode == RecoveryMode::AbsoluteConsistency {
            return Err(Error::corruption(&prev.path, prev.len, reason));
        }
        let Some(prev) = self.ix.segments.back_mut() else {
            return Ok(false);
        };
        let offset = prev.len;
        log::warn!(
            "raftwal: {} ends at offset {offset}: {reason}",
            prev.path.display()
        );
        cut_file(prev, offset)?;
        self.report
            .repairs
            .push((prev.path.clone(), offset, reason));
        self.remove.push(seg.path.clone());
        Ok(true)
    }
}

/// Truncates `seg`'s file at `offset` (the end of the data kept) and gives
/// the cut space back as preallocated zeros. Not synced here: `recover`
/// syncs every segment it did not read through a footer (this one among
/// them) before it removes any file or opens the log.
fn cut_file(seg: &mut Segment, offset: u64) -> Result<()> {
    let path = &seg.path;
    seg.file
        .set_len(offset)
        .map_err(|e| Error::io("truncate torn tail", path, e))?;
    if seg.preallocated > offset {
        // Give the cut space back as zeros, keeping the file's size.
        let extend = seg.file.allocate(offset, seg.preallocated - offset);
        if let Err(e) = extend {
            log::warn!("raftwal: could not re-preallocate {}: {e}", path.display());
        }
    }
    seg.len = offset;
    Ok(())
}
