//! Where one segment meets the next, and bad frames: the torn tails a
//! crash leaves (cut, as the mode allows) and damage (refused, or cut under
//! `RecoveryMode::TolerateAnyCorruption`). The shapes that tell them apart
//! are in `damage`.

use std::path::Path;

use super::{Cut, Flow, Replay};
use crate::error::{Damage, Result};
use crate::format::index::Segment;
use crate::format::segment::{self, Link, Scanned, Scanner};
use crate::replay::damage::{is_lost_tail, synced_write_in};

impl Replay<'_> {
    /// Checks that the segment before `seg` in the log (the one its header
    /// names, `link`) still ends where it ended when `seg` was created. A
    /// shorter one lost its last writes whole in a crash: it is cut at the
    /// end of its data and `seg` and every later segment go (returns true:
    /// stop), unless a write in `seg` or after it was issued once everything
    /// before it was durable (then it is damage). A segment that ends later,
    /// or a sealed one that ends sooner, is damage too.
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
            return self.link_damage(seg, &seg.path, seg.data_start, reason);
        }
        let (end, prev_path) = (prev.len, prev.path.clone());
        if end == link.end {
            return Ok(false);
        }
        if end > link.end || self.is_sealed(prev.sequence) {
            let reason = format!(
                "the next segment says this one's data ends at offset {}, but it ends at {end}",
                link.end
            );
            return self.link_damage(seg, &prev_path, end.min(link.end), reason);
        }
        let mut from_here: Vec<&Path> = vec![seg.path.as_path()];
        from_here.extend_from_slice(later);
        let reason = format!(
            "the next segment says this one's data ends at offset {}, but it ends at {end}: its last writes were lost in a crash",
            link.end
        );
        let max_payload = self.rules.max_payload();
        if link.synced || synced_write_in(self.rules.open, &from_here, max_payload)? {
            // The link, or a write after it, was made once all of this was
            // durable.
            let reason = format!("{reason}, yet they were durable before the next segment's header or a later write was");
            return self.link_damage(seg, &prev_path, end, reason);
        }
        self.judge(Damage::TornTail, &prev_path, end, end, &reason)?;
        let Some(prev) = self.ix.segments.back_mut() else {
            return Ok(false);
        };
        log::warn!(
            "raftwal: {} ends at offset {end}: {reason}",
            prev.path.display()
        );
        let cut = Cut::at(prev, end);
        self.report.repairs.push((prev.path.clone(), end, reason));
        self.cuts.push(cut);
        self.torn.push(seg.path.clone());
        Ok(true)
    }

    /// Damage found where `seg` meets the log (at `offset` of `path`):
    /// `Error::Corruption` there, or, under `TolerateAnyCorruption`, the
    /// log kept up to the segment before (`seg` and every later segment
    /// go; returns true).
    fn link_damage(
        &mut self,
        seg: &Segment,
        path: &Path,
        offset: u64,
        reason: String,
    ) -> Result<bool> {
        self.judge(Damage::Continuity, path, offset, offset, &reason)?;
        log::warn!(
            "raftwal: dropping {} and later segments: {reason}",
            seg.path.display()
        );
        self.report
            .repairs
            .push((path.to_path_buf(), offset, reason));
        self.torn.push(seg.path.clone());
        Ok(true)
    }

    /// Handles a bad frame at `at` (in a write starting at `cut`), a torn
    /// tail or damage: an error naming `at`, or the file cut at `cut`.
    pub(super) fn bad_frame(
        &mut self,
        seg: &mut Segment,
        cut: u64,
        at: u64,
        file_len: u64,
        reason: String,
        damage: Damage,
    ) -> Result<Flow> {
        let path = seg.path.clone();
        self.judge(damage, &path, at, cut, &reason)?;
        let dropped = file_len - cut;
        log::warn!(
            "raftwal: truncating {} at offset {cut}, dropping {dropped} bytes: {reason}",
            path.display()
        );
        self.cuts.push(Cut::at(seg, cut));
        self.report.bytes_dropped += dropped;
        self.report.repairs.push((path, cut, reason));
        Ok(Flow::Stop)
    }

    /// A version-1 segment (`seg`, not yet in the index) that does not
    /// continue the log: when it shows the tail of the segment before it was
    /// lost in a crash (see `damage::is_lost_tail`), that segment is cut at
    /// the end of its data and becomes the last one; `seg` and every later
    /// file go (returns true: stop). A torn tail, so refused under
    /// `AbsoluteConsistency`.
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
        let max_payload = self.rules.max_payload();
        // A segment holding only its header is an interrupted reset or cut
        // (removed, whatever the mode).
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
            self.rules.open,
            max_payload,
        )?;
        if !lost {
            return Ok(false);
        }
        let reason = format!(
            "the next segment starts at index {} but this one ends at {}: its tail was lost in a crash (no write after it was durable)",
            header.first_index, self.ix.last_index
        );
        let (prev_path, offset) = (prev.path.clone(), prev.len);
        self.judge(Damage::TornTail, &prev_path, offset, offset, &reason)?;
        let Some(prev) = self.ix.segments.back_mut() else {
            return Ok(false);
        };
        log::warn!(
            "raftwal: {} ends at offset {offset}: {reason}",
            prev.path.display()
        );
        let cut = Cut::at(prev, offset);
        self.report
            .repairs
            .push((prev.path.clone(), offset, reason));
        self.cuts.push(cut);
        self.torn.push(seg.path.clone());
        Ok(true)
    }
}
