//! Torn tails and damage met while recovering: what is cut, what is
//! refused (as `Options::recovery_mode` says), and how the segment that
//! stays active is left for new writes. The rules that tell a crash's tear
//! from damage are in `damage.rs`, shared with `inspect`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Flow, Recovery};
use crate::chain::{Plan, SegmentFile};
use crate::damage::{is_lost_tail, synced_write_in};
use crate::error::{Error, Result};
use crate::index::Segment;
use crate::options::RecoveryMode;
use crate::segment::{self, Link, Scanned, Scanner, ENTRY_OVERHEAD};

impl Recovery<'_> {
    /// Handles the files the plan left out before the replay (unreadable
    /// headers, and the files after one in the log): torn creations are
    /// removed (newest first, with the torn files) under the tolerant
    /// modes; damage is `Error::Corruption` unless under
    /// `RecoveryMode::TolerateAnyCorruption`.
    pub(super) fn drop_planned(&mut self, files: &[SegmentFile], plan: &Plan) -> Result<()> {
        let mode = self.opts.recovery_mode;
        let refused = plan
            .dropped
            .iter()
            .filter(|d| !d.follows)
            .filter(|d| match mode {
                RecoveryMode::TolerateTailCorruption => !d.torn,
                RecoveryMode::AbsoluteConsistency => true,
                RecoveryMode::TolerateAnyCorruption => false,
            })
            .min_by_key(|d| d.pos);
        if let Some(d) = refused {
            let path = files.get(d.pos).map(|f| f.path.clone()).unwrap_or_default();
            return Err(Error::Corruption {
                path,
                offset: d.offset,
                reason: d.reason.clone(),
            });
        }
        for d in &plan.dropped {
            let Some(f) = files.get(d.pos) else { continue };
            log::warn!(
                "raftwal: removing segment {}: {}",
                f.path.display(),
                d.reason
            );
            self.report.bytes_dropped += f.len;
            self.report
                .repairs
                .push((f.path.clone(), d.offset, d.reason.clone()));
            self.torn.push(f.path.clone());
        }
        Ok(())
    }

    /// Checks that the segment before `seg` in the log (the one its header
    /// names, `link`) still ends where it ended when `seg` was created. A
    /// shorter one lost its last writes whole in a crash: it is cut at the
    /// end of its data and `seg` and every later segment go (returns true:
    /// stop), unless a write in `seg` or after it was issued once everything
    /// before it was durable (then it is damage). A segment that ends later,
    /// or a sealed one that ends sooner, is damage too. Damage is
    /// `Error::Corruption` except under `TolerateAnyCorruption`, which keeps
    /// the log up to there; a lost tail is one too under
    /// `AbsoluteConsistency`.
    pub(super) fn broken_link(
        &mut self,
        seg: &Segment,
        link: Link,
        later: &[&Path],
    ) -> Result<bool> {
        let Some(prev) = self.ix.segments.back() else {
            return Ok(false);
        };
        if prev.sequence != link.sequence {
            let reason = format!(
                "the segment continues segment {}, but the log read so far ends in segment {}",
                link.sequence, prev.sequence
            );
            return self.link_damage(seg, seg.data_start, reason);
        }
        let end = prev.len;
        if end == link.end {
            return Ok(false);
        }
        if end > link.end || self.is_sealed(prev.sequence) {
            let reason = format!(
                "the next segment says this one's data ends at offset {}, but it ends at {end}",
                link.end
            );
            let path = prev.path.clone();
            return self
                .link_damage(seg, end.min(link.end), reason)
                .map_err(|e| match e {
                    Error::Corruption { offset, reason, .. } => Error::Corruption {
                        path,
                        offset,
                        reason,
                    },
                    e => e,
                });
        }
        let max_payload = self.opts.max_entry_size + ENTRY_OVERHEAD;
        let mut from_here: Vec<&Path> = vec![seg.path.as_path()];
        from_here.extend_from_slice(later);
        let reason = format!(
            "the next segment says this one's data ends at offset {}, but it ends at {end}: its last writes were lost in a crash",
            link.end
        );
        if link.synced || synced_write_in(&self.opener(), &from_here, max_payload)? {
            // The link, or a write after it, was made once all of this was
            // durable.
            let reason = format!("{reason}, yet they were durable before the next segment's header or a later write was");
            let path = prev.path.clone();
            return self.link_damage(seg, end, reason).map_err(|e| match e {
                Error::Corruption { offset, reason, .. } => Error::Corruption {
                    path,
                    offset,
                    reason,
                },
                e => e,
            });
        }
        if self.opts.recovery_mode == RecoveryMode::AbsoluteConsistency {
            return Err(Error::corruption(&prev.path, end, reason));
        }
        let Some(prev) = self.ix.segments.back_mut() else {
            return Ok(false);
        };
        log::warn!(
            "raftwal: {} ends at offset {end}: {reason}",
            prev.path.display()
        );
        let cut = cut_at(prev, end);
        self.report.repairs.push((prev.path.clone(), end, reason));
        self.cuts.push(cut);
        self.torn.push(seg.path.clone());
        Ok(true)
    }

    /// Damage found at a link: `Error::Corruption` at `offset` of `seg`,
    /// or, under `TolerateAnyCorruption`, the log kept up to the segment
    /// before (`seg` and every later segment go; returns true).
    fn link_damage(&mut self, seg: &Segment, offset: u64, reason: String) -> Result<bool> {
        if self.opts.recovery_mode != RecoveryMode::TolerateAnyCorruption {
            return Err(Error::corruption(&seg.path, offset, reason));
        }
        log::warn!(
            "raftwal: dropping {} and later segments: {reason}",
            seg.path.display()
        );
        self.report.repairs.push((seg.path.clone(), offset, reason));
        self.torn.push(seg.path.clone());
        Ok(true)
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
        self.cuts.push(cut_at(seg, offset));
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
        let sealed = self
            .ix
            .segments
            .back()
            .is_some_and(|s| self.is_sealed(s.sequence));
        let Some(seg) = self.ix.segments.back_mut() else {
            return Ok(());
        };
        if sealed {
            return Ok(());
        }
        let torn_seal = self.torn_seals.contains(&seg.sequence);
        if !torn_seal && seg.preallocated <= seg.len {
            return Ok(());
        }
        let offset = seg.len;
        let cut = cut_at(seg, offset);
        self.tail_reallocated = cut.preallocated > offset;
        if torn_seal {
            let reason = "cut the bytes after the data (a torn footer, or writes lost in a crash): the segment goes on as the last one".to_string();
            log::warn!(
                "raftwal: {} at offset {offset}: {reason}",
                cut.path.display()
            );
            self.report.repairs.push((cut.path.clone(), offset, reason));
        }
        self.cuts.push(cut);
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
        let cut = cut_at(prev, offset);
        self.report
            .repairs
            .push((prev.path.clone(), offset, reason));
        self.cuts.push(cut);
        self.torn.push(seg.path.clone());
        Ok(true)
    }
}

/// A cut of a segment file decided during the replay, made once the
/// replay is over and the log is known to open (a refused open changes
/// nothing): the file is truncated at `offset` (the end of the data kept)
/// and the cut space given back as preallocated zeros. Not synced here:
/// `recover` syncs every segment it did not read through a footer (this one
/// among them) before it removes any file or opens the log.
pub(super) struct Cut {
    file: Arc<dyn crate::fs::FileHandle>,
    path: PathBuf,
    offset: u64,
    preallocated: u64,
}

impl Cut {
    /// Truncates the file and gives the cut space back as zeros.
    pub(super) fn apply(&self) -> Result<()> {
        self.file
            .set_len(self.offset)
            .map_err(|e| Error::io("truncate torn tail", &self.path, e))?;
        if self.preallocated > self.offset {
            // Give the cut space back as zeros, keeping the file's size.
            let extend = self
                .file
                .allocate(self.offset, self.preallocated - self.offset);
            if let Err(e) = extend {
                log::warn!(
                    "raftwal: could not re-preallocate {}: {e}",
                    self.path.display()
                );
            }
        }
        Ok(())
    }
}

/// Ends `seg`'s data at `offset` in the index, and the cut to make in its
/// file.
fn cut_at(seg: &mut Segment, offset: u64) -> Cut {
    seg.len = offset;
    Cut {
        file: Arc::clone(&seg.file),
        path: seg.path.clone(),
        offset,
        preallocated: seg.preallocated,
    }
}
