//! Reading one segment of the log: through its footer when it is sealed
//! (recovery), else frame by frame, a write applied only whole, and the
//! first bad frame judged a torn tail, a torn seal or damage.

use std::path::Path;
use std::sync::Arc;

use super::apply::{decode, PendingFrame};
use super::{Flow, ProblemKind, Replay};
use crate::error::{Damage, Error, Result};
use crate::format::footer;
use crate::format::frame::{FrameType, HEADER_LEN};
use crate::format::index::{Segment, SegmentMeta};
use crate::format::segment::{Origin, Scanned, Scanner};
use crate::fs::FileHandle;
use crate::replay::chain::SegmentFile;
use crate::replay::damage::{is_damage, is_torn_seal, is_torn_tail};

/// How often (in bytes read) a replay reports progress.
const PROGRESS_STEP: u64 = 1 << 20;

/// A bad frame, as the rules judge it.
#[derive(PartialEq, Eq)]
enum Bad {
    /// A footer or trailer a crash cut while the segment was sealed: the
    /// footer is optional, the data before it stays.
    TornSeal,
    /// What a crash leaves: cut.
    TornTail,
    /// What no crash leaves.
    Damage,
}

/// Where a bad frame is, and what is known of it.
struct BadFrame<'a> {
    file: &'a dyn FileHandle,
    file_len: u64,
    /// The bad frame's offset.
    at: u64,
    /// The length its header claims, when it has one.
    claimed_len: Option<u64>,
    /// It is inside an unfinished write (which is cut whole).
    in_write: bool,
    /// Its CRC verified (it does not fit the log).
    verified: bool,
    /// Its segment's footer verified: the sealer synced it, no crash tore
    /// anything in it.
    footer_verified: bool,
    /// Its segment's opening write, made under a `.prep` name and renamed
    /// once durable: no crash tears it.
    atomic_opening: bool,
}

impl Replay<'_> {
    /// Judges a bad frame: a frame a later write issued once it was durable
    /// follows it, or its shape is none a crash leaves, or it is in an
    /// older segment with such a write after it: damage. Else a torn seal
    /// or a torn tail.
    fn judge_bad(
        &self,
        b: &BadFrame<'_>,
        scanner: &mut Scanner<'_>,
        later: &[&Path],
    ) -> Result<Bad> {
        // Damage with a write after it that was issued once it was durable
        // is not a torn tail.
        let followed = match b.claimed_len {
            Some(n) => scanner.synced_write_from(b.at.saturating_add(n))?,
            None => false,
        };
        if !followed && !later.is_empty() && !b.in_write && is_torn_seal(b.file, b.at, b.file_len) {
            return Ok(Bad::TornSeal);
        }
        let max_payload = self.rules.max_payload();
        let shape_torn = !b.footer_verified
            && !followed
            && !b.verified
            && !is_damage(b.file, b.at, b.file_len, max_payload);
        let tail =
            !b.atomic_opening && is_torn_tail(shape_torn, later, self.rules.open, max_payload)?;
        Ok(if tail { Bad::TornTail } else { Bad::Damage })
    }

    /// Reads segment `f` (position `k` in the directory) of the log, its
    /// header valid, into the index: through its footer when it has a
    /// valid one and is not the last (unless every frame is to be read),
    /// else by scanning every frame. `later` are the files after it.
    pub(super) fn scan_segment(
        &mut self,
        k: usize,
        f: &SegmentFile,
        later: &[&Path],
    ) -> Result<Flow> {
        let last_file = later.is_empty();
        let Some(&header) = f.header() else {
            return Err(Error::internal(format!(
                "{} is in the log without a valid header",
                f.path.display()
            )));
        };
        let (seq, path, file_len) = (f.sequence, f.path.clone(), f.len);
        self.report.segments_scanned += 1;
        if let Some(s) = self.seen.get_mut(k) {
            s.frames = 1;
        }
        let mut seg = Segment {
            sequence: seq,
            first_index: header.first_index,
            path: path.clone(),
            file: Arc::clone(&f.file),
            len: header.len,
            locs: Vec::new(),
            preallocated: header.preallocated,
            data_start: header.len,
            meta: SegmentMeta::default(),
        };
        let fresh = self.ix.segments.is_empty() && self.ix.first_index == 0;
        let sealed = match last_file {
            false => match footer::read(
                &*seg.file,
                &path,
                file_len,
                &header,
                self.rules.max_entry_size,
            ) {
                Ok(f) => f,
                // A trailer no crash leaves: damage, or (tolerated) an
                // index that is not used.
                Err(Error::Corruption {
                    path,
                    offset,
                    reason,
                    damage,
                }) => {
                    self.judge(damage, &path, offset, offset, &reason)?;
                    log::warn!("raftwal: scanning {} in full: {reason}", path.display());
                    None
                }
                Err(e) => return Err(e),
            },
            true => None,
        };
        // A valid footer means the sealer synced the segment before it
        // wrote it: no crash tore anything in it.
        let footer_verified = sealed.is_some();
        if let Some(s) = self.seen.get_mut(k) {
            s.sealed = footer_verified;
        }
        // The marker and state frames a footer names are read at open;
        // when one does not verify, the segment is scanned in full so the
        // damage is found and reported where it is.
        let sealed = sealed.filter(|f| {
            let named = [
                (f.meta.opening, FrameType::Marker),
                (f.meta.marker, FrameType::Marker),
                (f.meta.state, FrameType::State),
            ];
            let ok = named
                .iter()
                .all(|&(at, ty)| at.is_none_or(|at| footer::read_frame(&seg, at, ty).is_ok()));
            if !ok {
                log::warn!(
                    "raftwal: scanning {} in full: a frame its footer names does not verify",
                    path.display()
                );
            }
            ok
        });
        if fresh {
            self.ix.first_index = header.first_index;
            self.ix.last_index = header.first_index - 1;
        }
        // A segment that does not continue the log must open with a reset
        // or truncation marker; checked at its first frame. A segment made
        // by a cut or a reset opens with its marker whatever it continues.
        let mut needs_marker = (!fresh && header.first_index != self.ix.last_index + 1)
            || header.origin.opens_with_marker();
        self.opening = header.origin;
        if let Some(link) = header.origin.link().filter(|_| !fresh) {
            // The segment it continues must still end where it ended then.
            if self.broken_link(&seg, link, later)? {
                return Ok(Flow::Stop);
            }
        }
        if header.origin == Origin::Legacy
            && needs_marker
            && self.lost_tail_before(&seg, &header, file_len, later)?
        {
            return Ok(Flow::Stop);
        }
        let base = self.seen.get(k).map_or(0, |s| s.before);
        if let Some(f) = sealed {
            self.read_by_footer.push(seq);
            if !self.rules.every_frame {
                self.apply_footer(&mut seg, f, &mut needs_marker)?;
                self.report.bytes_scanned += file_len - seg.len;
                if let Some(s) = self.seen.get_mut(k) {
                    s.sealed = true;
                    s.data_len = seg.len;
                }
                self.ix.segments.push_back(seg);
                (self.rules.progress)(base + file_len);
                return Ok(Flow::Continue);
            }
        }
        let max_payload = self.rules.max_payload();
        let file_ref = Arc::clone(&seg.file);
        let mut scanner = Scanner::new(&*file_ref, &path, file_len, &header, max_payload);
        let mut first_frame = true;
        // The frames of the write being read: applied only once its last
        // frame (marked END_OF_WRITE) is read, so a crash keeps a whole
        // write or none of it.
        let mut pending: Vec<PendingFrame> = Vec::new();
        // Where the last whole write ends (the segment's data end), and
        // whether a footer came after it (the segment is sealed).
        let mut write_end = header.len;
        let mut footer_after = false;
        let mut reported = 0;
        loop {
            let problem = match scanner.next_frame()? {
                Scanned::End if pending.is_empty() => break,
                Scanned::End => {
                    let reason = "a write cut short: its last frame is missing".to_string();
                    let start = pending.first().map_or(scanner.position(), |p| p.offset);
                    Some((start, reason, None, None))
                }
                Scanned::Bad {
                    offset,
                    reason,
                    claimed_len,
                } => Some((offset, reason, claimed_len, None)),
                Scanned::Frame {
                    offset,
                    ty,
                    payload,
                    end_of_write,
                    ..
                } => {
                    let frame_len = (payload.len() + HEADER_LEN) as u32;
                    if let Some(s) = self.seen.get_mut(k) {
                        s.count(ty);
                    }
                    if offset >= reported + PROGRESS_STEP {
                        reported = offset;
                        (self.rules.progress)(base + offset);
                    }
                    match decode(ty, payload) {
                        // A sealed segment scanned in full: its index block
                        // is a write of its own and adds nothing.
                        Ok(None) if pending.is_empty() => {
                            footer_after = true;
                            None
                        }
                        Ok(None) => Some((
                            offset,
                            "a write cut short before a footer".to_string(),
                            Some(u64::from(frame_len)),
                            Some(Damage::Continuity),
                        )),
                        // The frame passed its CRC: if it does not fit the
                        // log (a segment is missing, say), no crash wrote it.
                        Err(reason) => Some((
                            offset,
                            reason,
                            Some(u64::from(frame_len)),
                            Some(Damage::Payload),
                        )),
                        Ok(Some(decoded)) => {
                            pending.push(PendingFrame {
                                offset,
                                frame_len,
                                first_frame,
                                decoded,
                            });
                            first_frame = false;
                            if end_of_write {
                                let problem =
                                    self.apply_write(&mut seg, &mut pending, &mut needs_marker);
                                if problem.is_none() {
                                    write_end = offset + u64::from(frame_len);
                                    footer_after = false;
                                }
                                problem
                            } else {
                                None
                            }
                        }
                    }
                }
            };
            // `verified`: a frame whose CRC verified but that does not fit
            // the log, and how.
            let Some((at, reason, claimed_len, verified)) = problem else {
                continue;
            };
            // A problem inside an unfinished write cuts the whole write;
            // an error names the bad frame itself.
            let cut = pending.first().map_or(at, |p| p.offset.min(at));
            let bad = BadFrame {
                file: &*seg.file,
                file_len,
                at,
                claimed_len,
                in_write: cut != at,
                verified: verified.is_some(),
                footer_verified,
                // A cut's or a reset's segment got its name only once its
                // opening write was on disk: no crash tears that write.
                atomic_opening: needs_marker && header.origin.opens_with_marker(),
            };
            let kind = match self.judge_bad(&bad, &mut scanner, later)? {
                Bad::TornSeal => {
                    // A crash while sealing: the footer is optional.
                    log::info!(
                        "raftwal: ignoring the torn footer of {} at offset {at}",
                        path.display()
                    );
                    self.report.bytes_scanned += at;
                    // The data ends before the footer, if part of it came
                    // through.
                    seg.len = write_end;
                    self.torn_seals.push(seq);
                    if let Some(s) = self.seen.get_mut(k) {
                        s.data_len = at;
                        s.torn_seal = true;
                    }
                    self.ix.segments.push_back(seg);
                    (self.rules.progress)(base + file_len);
                    return Ok(Flow::Continue);
                }
                Bad::TornTail => Damage::TornTail,
                Bad::Damage => verified.unwrap_or(Damage::Frame),
            };
            let flow = self.bad_frame(&mut seg, cut, at, file_len, reason, kind)?;
            self.report.bytes_scanned += cut;
            (self.rules.progress)(base + file_len);
            if needs_marker {
                // Not even the opening marker survived: nothing in this
                // file was acknowledged.
                self.torn.push(seg.path);
                return Ok(Flow::Stop);
            }
            self.ix.segments.push_back(seg);
            return Ok(flow);
        }
        self.report.bytes_scanned += scanner.position();
        if let Some(s) = self.seen.get_mut(k) {
            s.data_len = scanner.position();
        }
        (self.rules.progress)(base + file_len);
        if needs_marker {
            if header.origin != Origin::Legacy {
                // A cut's or a reset's segment always holds its opening
                // write, and a rolled-to one continues the log.
                let reason =
                    "the segment does not continue the log and holds no opening marker".to_string();
                self.judge(Damage::Continuity, &path, header.len, header.len, &reason)?;
                log::warn!("raftwal: removing {}: {reason}", path.display());
                self.report.repairs.push((path, header.len, reason));
                self.torn.push(seg.path);
                return Ok(Flow::Stop);
            }
            // Version 1: only a header, a reset or truncation interrupted
            // before its marker was written, so it never returned.
            self.torn.push(seg.path);
            return Ok(Flow::Continue);
        }
        seg.len = write_end;
        if footer_after {
            self.sealed.push(seq);
        }
        self.ix.segments.push_back(seg);
        Ok(Flow::Continue)
    }

    /// Checks segment `f` (position `k`), which comes after damage in the
    /// log, frame by frame: its frames counted, its footer and first bad
    /// frame reported as the rules judge them. Nothing is applied.
    pub(super) fn check_frames(
        &mut self,
        k: usize,
        f: &SegmentFile,
        later: &[&Path],
    ) -> Result<()> {
        let Some(&header) = f.header() else {
            return Ok(());
        };
        let (file, path, file_len) = (&*f.file, f.path.as_path(), f.len);
        if let Some(s) = self.seen.get_mut(k) {
            s.frames = 1;
        }
        let footer = match later.is_empty() {
            true => Ok(None),
            false => footer::read(file, path, file_len, &header, self.rules.max_entry_size),
        };
        let footer_verified = match footer {
            Ok(f) => {
                if let Some(s) = self.seen.get_mut(k) {
                    s.sealed = f.is_some();
                }
                f.is_some()
            }
            Err(Error::Corruption { offset, reason, .. }) => {
                self.record(ProblemKind::Corruption, path, offset, &reason);
                false
            }
            Err(e) => return Err(e),
        };
        let mut scanner = Scanner::new(file, path, file_len, &header, self.rules.max_payload());
        // Where the write being read started, until its last frame.
        let mut write_start: Option<u64> = None;
        let (at, reason, claimed_len) = loop {
            match scanner.next_frame()? {
                Scanned::End => match write_start {
                    None => {
                        if let Some(s) = self.seen.get_mut(k) {
                            s.data_len = scanner.position();
                        }
                        return Ok(());
                    }
                    Some(start) => {
                        let reason = "a write cut short: its last frame is missing";
                        break (start, reason.to_string(), None);
                    }
                },
                Scanned::Bad {
                    offset,
                    reason,
                    claimed_len,
                } => break (offset, reason, claimed_len),
                Scanned::Frame {
                    offset,
                    ty,
                    end_of_write,
                    ..
                } => {
                    if let Some(s) = self.seen.get_mut(k) {
                        s.count(ty);
                    }
                    if !matches!(ty, FrameType::Footer | FrameType::Trailer) {
                        write_start = match end_of_write {
                            true => None,
                            false => write_start.or(Some(offset)),
                        };
                    }
                }
            }
        };
        let cut = write_start.map_or(at, |s| s.min(at));
        let bad = BadFrame {
            file,
            file_len,
            at,
            claimed_len,
            in_write: cut != at,
            verified: false,
            footer_verified,
            atomic_opening: false,
        };
        match self.judge_bad(&bad, &mut scanner, later)? {
            Bad::TornSeal => {
                if let Some(s) = self.seen.get_mut(k) {
                    s.data_len = at;
                    s.torn_seal = true;
                }
            }
            Bad::TornTail => self.record(ProblemKind::TornTail, path, cut, &reason),
            Bad::Damage => self.record(ProblemKind::Corruption, path, at, &reason),
        }
        Ok(())
    }

    /// Records a problem found off the log (no repair follows from it).
    fn record(&mut self, kind: ProblemKind, path: &Path, offset: u64, reason: &str) {
        if let Some(s) = self.seen.iter_mut().find(|s| s.path == path) {
            s.data_len = s.data_len.min(offset);
        }
        self.problems.push(super::Problem {
            path: path.to_path_buf(),
            offset,
            reason: reason.to_string(),
            kind,
        });
    }
}
