//! Opening a log: scan every segment, validate every frame, rebuild the
//! index, and repair (or refuse) what a crash or damage left behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;

use crate::chain::{self, SegmentFile};
use crate::damage::{is_damage, is_torn_seal, is_torn_tail};
use crate::error::{Error, Result};
use crate::footer::{self, Footer};
use crate::frame::FrameType;
use crate::frame::HEADER_LEN;
use crate::index::{Index, Loc, Pos, Segment, SegmentMeta};
use crate::options::{Options, Preallocate, RecoveryMode};
use crate::proto;
use crate::segment::{self, Link, Origin, Scanned, Scanner, ENTRY_OVERHEAD, ON_THE_SPOT};

mod repair;

/// What recovery found and did when the log was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files read.
    pub segments_scanned: usize,
    /// Bytes of segment files read.
    pub bytes_scanned: u64,
    /// Entries found (compacted ones included).
    pub entries_scanned: u64,
    /// Bytes cut from the end of segments (torn tails, or damage under
    /// [`RecoveryMode::TolerateAnyCorruption`]).
    pub bytes_dropped: u64,
    /// Every repair made, as `(file, offset, reason)`.
    pub repairs: Vec<(PathBuf, u64, String)>,
    /// Segment files removed: superseded (left by a compaction, cut or
    /// reset interrupted by a crash), or after a torn tail (holding nothing
    /// acknowledged).
    pub segments_removed: Vec<PathBuf>,
    /// Files named like segments whose header does not parse (or names
    /// another segment than the file name does), left out of the log and
    /// renamed aside, never deleted (raftwal cannot prove they
    /// are its own): `(old name, new name)`. A crash that tore a new
    /// segment's header leaves one; delete it once you have looked.
    pub set_aside: Vec<(PathBuf, PathBuf)>,
}

/// The result of recovery.
pub(crate) struct Recovered {
    pub index: Index,
    pub next_sequence: u64,
    pub report: RecoveryReport,
    /// The active segment came from disk and the space after its data was
    /// given back as allocated (unwritten) space: a zero-fill it had is
    /// gone (see `Recovery::cut_after_last`).
    pub tail_reallocated: bool,
}

/// Recovers the log in `dir` (which exists and is locked by the caller).
pub(crate) fn recover(dir: &Path, opts: &Options) -> Result<Recovered> {
    let fs = &*opts.file_system;
    let listed = segment::list(fs, dir)?;
    let next_sequence = match listed.iter().map(|f| f.0).max() {
        None => 1,
        Some(max) => max.checked_add(1).ok_or_else(|| {
            Error::corruption(
                dir,
                0,
                "a segment file name holds the largest sequence number",
            )
        })?,
    };
    let open = |p: &Path| segment::open(fs, p);
    let files = listed
        .into_iter()
        .map(|(seq, first, path)| SegmentFile::read(&open, seq, first, path))
        .collect::<Result<Vec<_>>>()?;
    let max_payload = opts.max_entry_size + ENTRY_OVERHEAD;
    // The files from `limit` on were left out: newer than a segment whose
    // name a crash lost (see below).
    let mut limit = files.len();
    let mut gap_torn: Vec<PathBuf> = Vec::new();
    let mut gap_repairs = Vec::new();
    let mut gap_bytes = 0;
    let mut r = loop {
        let now = files.get(..limit).unwrap_or_default();
        let plan = chain::plan(now, &open, max_payload, false)?;
        let mut r = Recovery::replay(opts, now, &plan)?;
        let Some(missing) = r.finish(plan.missing)? else {
            break r;
        };
        // The log's oldest segment continues one that is not there, and no
        // compaction explains it: a name lost in a crash, or damage.
        let gap = chain::judge_gap(now, &plan, missing, &open, max_payload)?;
        match (gap.torn, opts.recovery_mode) {
            (true, RecoveryMode::TolerateTailCorruption | RecoveryMode::TolerateAnyCorruption) => {
                log::warn!("raftwal: {}: {}", gap.path.display(), gap.reason);
                for f in now.get(gap.cut..).unwrap_or_default() {
                    gap_torn.push(f.path.clone());
                    gap_bytes += f.len;
                }
                gap_repairs.push((gap.path, 0, gap.reason));
                limit = gap.cut;
                continue;
            }
            (false, RecoveryMode::TolerateAnyCorruption) => {
                // Damage, tolerated: keep the longest prefix instead,
                // replaying across the gap (which stops there).
                log::warn!("raftwal: {}: {}", gap.path.display(), gap.reason);
                let bridged = chain::plan(now, &open, max_payload, true)?;
                let mut r = Recovery::replay(opts, now, &bridged)?;
                r.finish(bridged.missing)?;
                break r;
            }
            _ => return Err(Error::corruption(gap.path, 0, gap.reason)),
        }
    };
    r.report.repairs.extend(gap_repairs);
    r.report.bytes_dropped += gap_bytes;
    r.torn.extend(gap_torn);
    r.unreadable = files
        .iter()
        .filter(|f| f.header().is_none())
        .map(|f| f.path.clone())
        .collect();
    // The segment that goes on as the active one is cut at the end of its
    // data: new writes must never land in front of stale frames (writes a
    // crash kept after one it zeroed, a torn footer).
    r.cut_after_last()?;
    // Nothing was changed so far: a refused open leaves the files as they
    // were.
    for cut in std::mem::take(&mut r.cuts) {
        cut.apply()?;
    }
    // A previous process may have left writes that never became durable
    // (it died before its fsync, or the fsync failed) and files whose names
    // are not (it died before syncing the directory). The log reads them
    // back and builds on them (new writes are acknowledged after them, a
    // reset may start a segment after them), so they must be on disk
    // before anything else is: an fdatasync of every segment not read
    // through its footer (the one that stays active, and any older one a
    // roll left unsynced and no sealer finished) and an fsync of the
    // directory.
    for seg in r.ix.segments.iter() {
        if !r.read_by_footer.contains(&seg.sequence) {
            seg.file
                .sync_data()
                .map_err(|e| Error::io("fdatasync", &seg.path, e))?;
        }
    }
    segment::sync_dir(fs, dir)?;
    // Torn files go before anything is written: newest first, each unlink
    // synced, so a crash in between leaves a log the next open cuts the
    // same way (a gap would look like a compaction).
    r.remove_torn(dir)?;
    let mut next_sequence = next_sequence;
    // A sealed segment is never written again. When every segment after
    // one was removed (damage, or an interrupted creation), the log goes on
    // in a new segment, and the sealed one keeps being read through its
    // footer (its entries verified when read, as before).
    let sealed_last =
        r.ix.segments
            .back()
            .is_some_and(|s| r.is_sealed(s.sequence));
    let mut tail_reallocated = r.tail_reallocated;
    if r.ix.segments.is_empty() || sealed_last {
        tail_reallocated = false;
        r.open_new_segment(dir, next_sequence)?;
        next_sequence += 1;
    }
    r.keep_state()?;
    r.remove_superseded(dir);
    if opts.preallocate == Preallocate::None {
        // No preparer runs to adopt or remove prepared files: those left
        // here (a cut's or a reset's segment whose rename a crash undid, or
        // files from a run in another mode) go now.
        for path in segment::list_prepared(fs, dir).unwrap_or_default() {
            match fs.remove(&path) {
                Ok(()) => log::info!(
                    "raftwal: removed left-over prepared file {}",
                    path.display()
                ),
                Err(e) => log::warn!(
                    "raftwal: could not remove left-over prepared file {}: {e}",
                    path.display()
                ),
            }
        }
    }
    Ok(Recovered {
        index: r.ix,
        next_sequence,
        report: r.report,
        tail_reallocated,
    })
}

/// A frame of the write being read, decoded but not yet applied.
struct PendingFrame {
    offset: u64,
    frame_len: u32,
    /// Whether it is the first frame after the segment header.
    first_frame: bool,
    decoded: Decoded,
}

/// What a frame says, decoded from its payload.
enum Decoded {
    Entry(proto::EntryMeta),
    State(prost::bytes::Bytes),
    Marker(proto::Marker),
}

/// Decodes a verified frame's payload; `None` for frames that add nothing
/// to the index (a sealed segment's footer and trailer).
fn decode(ty: FrameType, payload: &[u8]) -> std::result::Result<Option<Decoded>, String> {
    Ok(Some(match ty {
        FrameType::Entry => Decoded::Entry(
            proto::EntryMeta::decode(payload).map_err(|e| format!("entry does not decode: {e}"))?,
        ),
        FrameType::State => Decoded::State(
            proto::State::decode(payload)
                .map_err(|e| format!("state does not decode: {e}"))?
                .data,
        ),
        FrameType::Marker => Decoded::Marker(
            proto::Marker::decode(payload).map_err(|e| format!("marker does not decode: {e}"))?,
        ),
        FrameType::Footer | FrameType::Trailer => return Ok(None),
        FrameType::Header => return Err("a second segment header".into()),
    }))
}

fn decode_marker(seg: &Segment, at: crate::index::FrameAt) -> Result<proto::Marker> {
    let payload = footer::read_frame(seg, at, FrameType::Marker)?;
    proto::Marker::decode(&payload[..])
        .map_err(|e| Error::corruption(&seg.path, at.0, format!("marker does not decode: {e}")))
}

#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

struct Recovery<'o> {
    opts: &'o Options,
    ix: Index,
    report: RecoveryReport,
    /// Files holding nothing acknowledged (a torn tail's later segments, a
    /// torn creation), removed newest first, each unlink synced.
    torn: Vec<PathBuf>,
    /// The files whose header does not parse, wherever they are (torn,
    /// after a lost name, superseded): raftwal cannot prove they are its
    /// own, so they are renamed aside, never removed.
    unreadable: Vec<PathBuf>,
    /// Segments of the log wholly below its first index, oldest first:
    /// removed in that order, each unlink synced, stopping at a failure.
    below: Vec<PathBuf>,
    /// Files off the log (see `chain`): removed in any order.
    superseded: Vec<PathBuf>,
    /// Cuts of segment files, made once the replay is over.
    cuts: Vec<repair::Cut>,
    /// Segments read through their footer (not scanned).
    read_by_footer: Vec<u64>,
    /// Segments scanned in full that end with a footer: never written
    /// again.
    sealed: Vec<u64>,
    /// The origin of the segment being read (its opening marker must
    /// match).
    opening: Origin,
    /// Segments whose data ended at a torn footer (or zeros to the end of
    /// the file) and was kept as it is.
    torn_seals: Vec<u64>,
    /// The last segment's tail was cut and allocated again.
    tail_reallocated: bool,
}

impl<'o> Recovery<'o> {
    /// Reads the segments `plan` puts in the log into an index, deciding
    /// what to cut and remove without changing a file.
    fn replay(
        opts: &'o Options,
        files: &[SegmentFile],
        plan: &chain::Plan,
    ) -> Result<Recovery<'o>> {
        let mut r = Recovery {
            opts,
            ix: Index::default(),
            report: RecoveryReport::default(),
            torn: Vec::new(),
            unreadable: Vec::new(),
            below: Vec::new(),
            superseded: Vec::new(),
            cuts: Vec::new(),
            read_by_footer: Vec::new(),
            sealed: Vec::new(),
            opening: Origin::Legacy,
            tail_reallocated: false,
            torn_seals: Vec::new(),
        };
        r.drop_planned(files, plan)?;
        for (n, &k) in plan.chain.iter().enumerate() {
            let Some(f) = files.get(k) else { continue };
            if r.scan_segment(f, &plan.later(files, k))? == Flow::Stop {
                // Every later segment of the log goes with what was cut:
                // none of it was acknowledged (see docs/FORMAT.md).
                let after = plan.chain.get(n + 1..).unwrap_or_default();
                r.torn.extend(
                    after
                        .iter()
                        .filter_map(|&j| files.get(j))
                        .map(|f| f.path.clone()),
                );
                break;
            }
        }
        r.superseded.extend(
            plan.superseded
                .iter()
                .filter_map(|&k| files.get(k))
                .map(|f| f.path.clone()),
        );
        Ok(r)
    }

    /// Whether segment `sequence` is sealed (read through its footer, or
    /// scanned and found to end with one): never written again.
    fn is_sealed(&self, sequence: u64) -> bool {
        self.read_by_footer.contains(&sequence) || self.sealed.contains(&sequence)
    }

    /// Reads segment `f` of the log (its header is valid) into the index:
    /// through its footer when it has a valid one and is not the last,
    /// else by scanning every frame. `later` are the files after it.
    fn scan_segment(&mut self, f: &SegmentFile, later: &[&Path]) -> Result<Flow> {
        let last_file = later.is_empty();
        let Some(&header) = f.header() else {
            return Err(Error::corruption(
                &f.path,
                0,
                "internal: a segment without a valid header in the log",
            ));
        };
        let (seq, path, file_len) = (f.sequence, f.path.clone(), f.len);
        self.report.segments_scanned += 1;
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
                self.opts.max_entry_size,
            ) {
                Ok(f) => f,
                // A trailer no crash leaves: damage, or (tolerated) an
                // index that is not used.
                Err(e @ Error::Corruption { .. })
                    if self.opts.recovery_mode == RecoveryMode::TolerateAnyCorruption =>
                {
                    log::warn!("raftwal: scanning {} in full: {e}", path.display());
                    None
                }
                Err(e) => return Err(e),
            },
            true => None,
        };
        // A valid footer means the sealer synced the segment before it
        // wrote it: no crash tore anything in it.
        let footer_verified = sealed.is_some();
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
        if let Some(f) = sealed {
            self.apply_footer(&mut seg, f, &mut needs_marker)?;
            self.report.bytes_scanned += file_len - seg.len;
            self.read_by_footer.push(seq);
            self.ix.segments.push_back(seg);
            return Ok(Flow::Continue);
        }
        let max_payload = self.opts.max_entry_size + ENTRY_OVERHEAD;
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
        loop {
            let problem = match scanner.next_frame()? {
                Scanned::End if pending.is_empty() => break,
                Scanned::End => {
                    let reason = "a write cut short: its last frame is missing".to_string();
                    let start = pending.first().map_or(scanner.position(), |p| p.offset);
                    Some((start, reason, None, false))
                }
                Scanned::Bad {
                    offset,
                    reason,
                    claimed_len,
                } => Some((offset, reason, claimed_len, false)),
                Scanned::Frame {
                    offset,
                    ty,
                    payload,
                    end_of_write,
                    ..
                } => {
                    let frame_len = (payload.len() + HEADER_LEN) as u32;
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
                            true,
                        )),
                        // The frame passed its CRC: if it does not fit the
                        // log (a segment is missing, say), no crash wrote it.
                        Err(reason) => Some((offset, reason, Some(u64::from(frame_len)), true)),
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
            if let Some((offset, reason, claimed_len, verified)) = problem {
                // A problem inside an unfinished write cuts the whole write;
                // an error names the bad frame itself.
                let offset_checked = offset;
                let cut = pending.first().map_or(offset, |p| p.offset.min(offset));
                // Damage with a write after it that was issued once it was
                // durable is not a torn tail.
                let followed = match claimed_len {
                    Some(n) => scanner.synced_write_from(offset_checked + n)?,
                    None => false,
                };
                if !followed
                    && !last_file
                    && cut == offset_checked
                    && is_torn_seal(&*seg.file, offset_checked, file_len)
                {
                    // A crash while sealing: the footer is optional.
                    log::info!(
                        "raftwal: ignoring the torn footer of {} at offset {offset}",
                        path.display()
                    );
                    self.report.bytes_scanned += offset;
                    // The data ends before the footer, if part of it came
                    // through.
                    seg.len = write_end;
                    self.torn_seals.push(seq);
                    self.ix.segments.push_back(seg);
                    return Ok(Flow::Continue);
                }
                let shape_torn = !footer_verified
                    && !followed
                    && !verified
                    && !is_damage(&*seg.file, offset_checked, file_len, max_payload);
                // A cut's or a reset's segment got its name only once its
                // opening write was on disk: no crash tears that write.
                let atomic_opening = needs_marker && header.origin.opens_with_marker();
                let tail = !atomic_opening
                    && is_torn_tail(shape_torn, later, &self.opener(), max_payload)?;
                let flow = self.bad_frame(&mut seg, cut, offset_checked, file_len, reason, tail)?;
                self.report.bytes_scanned += cut;
                if needs_marker {
                    // Not even the opening marker survived: nothing in this
                    // file was acknowledged.
                    self.torn.push(seg.path);
                    return Ok(Flow::Stop);
                }
                self.ix.segments.push_back(seg);
                return Ok(flow);
            }
        }
        self.report.bytes_scanned += scanner.position();
        if needs_marker {
            if header.origin != Origin::Legacy {
                // A cut's or a reset's segment always holds its opening
                // write, and a rolled-to one continues the log.
                let reason =
                    "the segment does not continue the log and holds no opening marker".to_string();
                if self.opts.recovery_mode != RecoveryMode::TolerateAnyCorruption {
                    return Err(Error::corruption(&path, header.len, reason));
                }
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

    /// Applies the frames of one whole write, in order. A frame that does
    /// not fit the log ends it: returns the problem (offset, reason, frame
    /// length, verified) for the caller to handle like a bad frame.
    fn apply_write(
        &mut self,
        seg: &mut Segment,
        pending: &mut Vec<PendingFrame>,
        needs_marker: &mut bool,
    ) -> Option<(u64, String, Option<u64>, bool)> {
        let frames = std::mem::take(pending);
        for p in &frames {
            if let Err(reason) = self.apply(seg, p, needs_marker) {
                // The frame passed its CRC but does not fit the log: damage,
                // never a tear, reported at this frame.
                return Some((p.offset, reason, Some(u64::from(p.frame_len)), true));
            }
        }
        None
    }

    /// Applies one valid, decoded frame to the index. An `Err` is a reason
    /// the frame cannot be part of the log (handled like a bad frame).
    fn apply(
        &mut self,
        seg: &mut Segment,
        p: &PendingFrame,
        needs_marker: &mut bool,
    ) -> std::result::Result<(), String> {
        let (offset, frame_len, first_frame) = (p.offset, p.frame_len, p.first_frame);
        let pos = Pos {
            sequence: seg.sequence,
            offset,
        };
        let is_marker = matches!(p.decoded, Decoded::Marker(_));
        if *needs_marker && !(first_frame && is_marker) {
            return Err(format!(
                "segment starts at index {} but the log ends at {} and no reset marker follows",
                seg.first_index, self.ix.last_index
            ));
        }
        match &p.decoded {
            Decoded::Entry(m) => {
                if m.index == u64::MAX {
                    // The log's last index + 1 must exist.
                    return Err("an entry at index u64::MAX".into());
                }
                let want = self.ix.last_index + 1;
                if m.index != want || m.index != seg.end_index() {
                    return Err(format!("entry index {} where {want} was expected", m.index));
                }
                let prev = if self.ix.last_index >= self.ix.first_index {
                    self.ix.term_of(self.ix.last_index).unwrap_or(0)
                } else {
                    self.ix.prev_term
                };
                if m.term < prev {
                    return Err(format!(
                        "entry {} has term {} below the previous term {prev}",
                        m.index, m.term
                    ));
                }
                seg.locs.push(Loc {
                    offset: offset as u32,
                    len: frame_len,
                });
                self.ix.push_term(m.index, m.term);
                self.ix.last_index = m.index;
                self.report.entries_scanned += 1;
            }
            Decoded::State(data) => {
                self.ix.state = Some((data.clone(), pos));
                seg.meta.state = Some((offset, frame_len));
            }
            Decoded::Marker(m) => {
                self.apply_marker(seg, m, first_frame, needs_marker)?;
                self.ix.marker = Some(pos);
                seg.meta.marker = Some((offset, frame_len));
                if first_frame {
                    seg.meta.opening = Some((offset, frame_len));
                }
            }
        }
        Ok(())
    }

    /// Applies a sealed segment's footer: the opening marker, the entries,
    /// the newest marker and state, reading only those frames.
    fn apply_footer(
        &mut self,
        seg: &mut Segment,
        f: Footer,
        needs_marker: &mut bool,
    ) -> Result<()> {
        let bad = |seg: &Segment, offset: u64, reason: String| {
            Error::corruption(&seg.path, offset, reason)
        };
        if let Some(at) = f.meta.opening {
            let m = decode_marker(seg, at)?;
            self.apply_marker(seg, &m, true, needs_marker)
                .map_err(|r| bad(seg, at.0, r))?;
            self.ix.marker = Some(Pos {
                sequence: seg.sequence,
                offset: at.0,
            });
        }
        if *needs_marker {
            return Err(bad(
                seg,
                seg.data_start,
                "segment does not continue the log".into(),
            ));
        }
        if !f.locs.is_empty() {
            let prev = if self.ix.last_index >= self.ix.first_index {
                self.ix.term_of(self.ix.last_index).unwrap_or(0)
            } else {
                self.ix.prev_term
            };
            if seg.first_index != self.ix.last_index + 1 {
                return Err(bad(
                    seg,
                    u64::from(f.locs[0].offset),
                    format!(
                        "entries start at {} where {} was expected",
                        seg.first_index,
                        self.ix.last_index + 1
                    ),
                ));
            }
            if f.terms.first().is_some_and(|r| r.1 < prev) {
                return Err(bad(
                    seg,
                    u64::from(f.locs[0].offset),
                    "terms go backwards across segments".into(),
                ));
            }
            for &(start, term) in &f.terms {
                self.ix.push_term(start, term);
            }
            self.ix.last_index = seg.first_index + f.locs.len() as u64 - 1;
            self.report.entries_scanned += f.locs.len() as u64;
            seg.locs = f.locs;
        }
        if let Some(at) = f.meta.marker.filter(|m| Some(*m) != f.meta.opening) {
            // Its cut, if any, is already reflected in the footer's entries.
            let m = decode_marker(seg, at)?;
            if m.first_index > self.ix.last_index + 1 {
                return Err(bad(seg, at.0, "marker past the end of the log".into()));
            }
            self.ix.first_index = m.first_index;
            self.ix.prev_term = m.prev_term;
            self.ix.marker = Some(Pos {
                sequence: seg.sequence,
                offset: at.0,
            });
        }
        if let Some(at) = f.meta.state {
            let payload = footer::read_frame(seg, at, FrameType::State)?;
            let st = proto::State::decode(&payload[..])
                .map_err(|e| bad(seg, at.0, format!("state does not decode: {e}")))?;
            self.ix.state = Some((
                st.data,
                Pos {
                    sequence: seg.sequence,
                    offset: at.0,
                },
            ));
        }
        seg.meta = f.meta;
        seg.len = f.data_end;
        Ok(())
    }

    fn apply_marker(
        &mut self,
        seg: &mut Segment,
        m: &proto::Marker,
        first_frame: bool,
        needs_marker: &mut bool,
    ) -> std::result::Result<(), String> {
        if m.first_index == 0 {
            return Err("a marker puts the first index at 0".into());
        }
        // A version-2 segment made by a cut or a reset opens with exactly
        // that marker.
        let wrong_opening = match self.opening {
            Origin::Cut(_) => m.reset || m.truncate_from != seg.first_index,
            Origin::Reset => !m.reset,
            _ => false,
        };
        if first_frame && wrong_opening {
            return Err(format!(
                "the segment was made by {:?} but opens with another marker",
                self.opening
            ));
        }
        if m.reset {
            if !first_frame || m.first_index != seg.first_index {
                return Err("a reset marker must open its segment".into());
            }
            *needs_marker = false;
            // Everything before this segment is superseded.
            for old in self.ix.segments.drain(..) {
                self.superseded.push(old.path);
            }
            self.ix.terms.clear();
            self.ix.last_index = m.first_index - 1;
        } else {
            if m.truncate_from != 0 {
                let cut = m.truncate_from;
                let opens = first_frame && cut == seg.first_index;
                let inside = cut >= seg.first_index && cut <= seg.end_index();
                if !(opens || inside) || cut < self.ix.first_index || cut > self.ix.last_index + 1 {
                    return Err(format!(
                        "truncation marker at index {cut} outside the log {}..={}",
                        self.ix.first_index, self.ix.last_index
                    ));
                }
                *needs_marker = false;
                self.cut(seg, cut);
            } else if *needs_marker {
                return Err("segment does not continue the log".into());
            }
            // An older marker may name a first index below the oldest
            // segment left (later compactions deleted what it kept); only
            // the newest marker must fit, which `finish` checks.
            if m.first_index > self.ix.last_index + 1 {
                return Err(format!(
                    "marker's first index {} is past the end of the log at {}",
                    m.first_index, self.ix.last_index
                ));
            }
        }
        self.ix.first_index = m.first_index;
        self.ix.prev_term = m.prev_term;
        Ok(())
    }

    /// Drops entries `cut..` from the index: from `seg` (being scanned) and
    /// from every earlier segment.
    fn cut(&mut self, seg: &mut Segment, cut: u64) {
        if cut >= seg.first_index {
            seg.locs.truncate((cut - seg.first_index) as usize);
        }
        while let Some(last) = self.ix.segments.back_mut() {
            if last.first_index >= cut {
                if let Some(s) = self.ix.segments.pop_back() {
                    self.superseded.push(s.path);
                }
                continue;
            }
            let keep = (cut - last.first_index) as usize;
            if keep < last.locs.len() {
                // Stale frames stay in that file; they are cut again by this
                // marker on every open until the segment is compacted away.
                last.locs.truncate(keep);
            }
            break;
        }
        self.ix.truncate_terms(cut);
        self.ix.last_index = cut - 1;
    }

    /// Checks that the log starts where its oldest segment says, and drops
    /// the segments wholly below the first index from the index (their
    /// files are removed by `remove_superseded`). `missing`: the oldest
    /// segment names a predecessor that is not there, which only a
    /// compaction explains: its marker must put the first index at or past
    /// the oldest segment.
    ///
    /// Returns the missing predecessor's sequence number when no marker
    /// explains it (the caller decides).
    fn finish(&mut self, missing: Option<u64>) -> Result<Option<u64>> {
        if let (Some(front), Some(missing)) = (self.ix.segments.front(), missing) {
            let covered = self.ix.marker.is_some() && self.ix.first_index >= front.first_index;
            if !covered {
                return Ok(Some(missing));
            }
        }
        if let Some(front) = self.ix.segments.front() {
            if self.ix.first_index < front.first_index {
                let reason = format!(
                    "the newest marker puts the first index at {} but the oldest segment starts at {}",
                    self.ix.first_index, front.first_index
                );
                if self.opts.recovery_mode != RecoveryMode::TolerateAnyCorruption {
                    return Err(Error::corruption(&front.path, 0, reason));
                }
                log::warn!("raftwal: {reason}; the term before the first index is unknown");
                self.ix.first_index = front.first_index;
                self.ix.prev_term = 0;
            }
        }
        // The segments holding the state blob and the newest marker (the
        // first index and the term before it) stay until a compaction at
        // run time writes newer ones to the active segment.
        let keep_state = self.ix.state.as_ref().map(|s| s.1.sequence);
        let keep_marker = self.ix.marker.map(|m| m.sequence);
        while self.ix.segments.len() > 1 {
            let Some(s) = self.ix.segments.front() else {
                break;
            };
            if s.end_index() > self.ix.first_index
                || Some(s.sequence) == keep_state
                || Some(s.sequence) == keep_marker
            {
                break;
            }
            if let Some(s) = self.ix.segments.pop_front() {
                self.below.push(s.path);
            }
        }
        if let Some(first) = self.ix.segments.front() {
            let start = first.first_index.max(self.ix.first_index);
            self.ix.trim_terms_below(start);
        }
        Ok(None)
    }

    /// Writes a copy of the state blob into the last segment when the
    /// segment holding it is about to be removed. A reset or a cut below
    /// the active segment writes its marker and a copy of the state in one
    /// write, which recovery keeps only whole; this copy guards the state
    /// should a segment holding it still be about to go (a version-1 log
    /// whose cut segments were read before the cut's marker, or damage
    /// salvaged under `TolerateAnyCorruption`). The last segment is never
    /// a sealed one here (`recover` opens a new one first).
    fn keep_state(&mut self) -> Result<()> {
        let Some((data, pos)) = &self.ix.state else {
            return Ok(());
        };
        if self.ix.segments.iter().any(|s| s.sequence == pos.sequence) {
            return Ok(());
        }
        let data = data.clone();
        let Some(seg) = self.ix.segments.back_mut() else {
            return Ok(());
        };
        let mut buf = Vec::with_capacity(data.len() + 16);
        let salt = crate::frame::salt(seg.sequence);
        let n = crate::frame::encode_message(
            &mut buf,
            FrameType::State,
            salt,
            &proto::State { data: data.clone() },
        );
        crate::frame::set_end_of_write(&mut buf, 0, true);
        crate::frame::seal(&mut buf, 0, salt);
        let offset = seg.len;
        seg.file
            .write_all_at(&buf, offset)
            .and_then(|()| seg.file.sync_data())
            .map_err(|e| Error::io("write state copy", &seg.path, e))?;
        seg.len = offset + n as u64;
        seg.meta.state = Some((offset, n as u32));
        let reason = "copied the state blob here: the segment holding it is superseded".to_string();
        log::warn!(
            "raftwal: {} at offset {offset}: {reason}",
            seg.path.display()
        );
        self.report.repairs.push((seg.path.clone(), offset, reason));
        self.ix.state = Some((
            data,
            Pos {
                sequence: seg.sequence,
                offset,
            },
        ));
        Ok(())
    }

    /// Opens a new segment at open: the log has none left, or its last one
    /// is sealed (never written again). It continues the last segment (or
    /// is the log's first), its header and the directory synced.
    fn open_new_segment(&mut self, dir: &Path, sequence: u64) -> Result<()> {
        let (opts, fs) = (self.opts, &*self.opts.file_system);
        let ix = &mut self.ix;
        let first = ix.last_index.max(ix.first_index.saturating_sub(1)) + 1;
        let origin = match ix.segments.back() {
            // Recovery synced every segment and the directory.
            Some(last) => Origin::Roll(Link {
                sequence: last.sequence,
                end: last.len,
                synced: true,
            }),
            None => Origin::First,
        };
        // A new log's first segment is small (segments grow from there);
        // after a sealed one, the next size up.
        let size =
            opts.next_segment_size(ix.segments.back().map(|s| s.capacity(opts.segment_size)));
        let prepared = match opts.preallocate {
            Preallocate::Allocate => segment::prepare(fs, dir, ON_THE_SPOT | sequence, size).ok(),
            // Zero-filled here, at open: the preparer only starts after
            // recovery.
            Preallocate::ZeroFill => {
                segment::prepare_zeroed(fs, dir, ON_THE_SPOT | sequence, size).ok()
            }
            Preallocate::None => None,
        };
        let c = segment::create(fs, dir, sequence, first, prepared, origin)?;
        segment::sync_dir(fs, dir)?;
        if ix.first_index == 0 {
            ix.first_index = first;
            ix.last_index = first - 1;
        }
        ix.segments.push_back(Segment::created(sequence, first, c));
        Ok(())
    }

    /// Removes the torn files, newest first, syncing the directory after
    /// each unlink: a crash in between leaves the older torn files, which
    /// the next open cuts again the same way (their links still point at
    /// data that is gone), never a gap that could pass for a compaction. A
    /// failure fails the open: the log must not take writes while a torn
    /// file could come back.
    fn remove_torn(&mut self, dir: &Path) -> Result<()> {
        let fs = &*self.opts.file_system;
        let mut torn = std::mem::take(&mut self.torn);
        // Newest first; a file may be listed twice.
        torn.sort();
        torn.dedup();
        torn.sort_by_key(|p| std::cmp::Reverse(sequence_of(p)));
        for path in torn {
            if self.unreadable.contains(&path) {
                self.set_aside(dir, path)?;
                continue;
            }
            match fs.remove(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("remove segment", &path, e)),
            }
            segment::sync_dir(fs, dir)?;
            log::info!(
                "raftwal: removed segment {} (nothing in it was acknowledged)",
                path.display()
            );
            self.report.segments_removed.push(path);
        }
        Ok(())
    }

    /// Removes what the log no longer needs: the segments wholly below its
    /// first index (oldest first, the directory synced after each unlink,
    /// stopping at the first failure, so they vanish in order), then the
    /// superseded files (in any order: whichever survive, the chain of
    /// links leaves them out). Failures are logged, never returned: the
    /// files stay superseded, and the next open removes them.
    fn remove_superseded(&mut self, dir: &Path) {
        let fs = &*self.opts.file_system;
        let removed = |path: PathBuf, report: &mut RecoveryReport| match fs.remove(&path) {
            Ok(()) => {
                log::info!("raftwal: removed superseded segment {}", path.display());
                report.segments_removed.push(path);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => {
                log::warn!(
                    "raftwal: could not remove superseded segment {} (the next open removes it): {e}",
                    path.display()
                );
                false
            }
        };
        for path in std::mem::take(&mut self.below) {
            if !removed(path, &mut self.report) {
                break;
            }
            if let Err(e) = segment::sync_dir(fs, dir) {
                log::warn!("raftwal: {e} (the next open removes what comes back)");
                break;
            }
        }
        let mut any = false;
        for path in std::mem::take(&mut self.superseded) {
            if self.unreadable.contains(&path) {
                if let Err(e) = self.set_aside(dir, path) {
                    log::warn!("raftwal: {e} (the next open tries again)");
                }
                continue;
            }
            any |= removed(path, &mut self.report);
        }
        if any {
            if let Err(e) = segment::sync_dir(fs, dir) {
                log::warn!("raftwal: {e} (the next open removes what comes back)");
            }
        }
    }
}

impl Recovery<'_> {
    /// Renames `path`, a file named like a segment whose header does not
    /// parse, aside (see `set_aside_name`) and syncs the directory: never
    /// deleted, it is reported in `RecoveryReport::set_aside`.
    fn set_aside(&mut self, dir: &Path, path: PathBuf) -> Result<()> {
        let fs = &*self.opts.file_system;
        let aside = set_aside_name(fs, &path)?;
        match fs.rename(&path, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("rename unreadable segment aside", &path, e)),
        }
        segment::sync_dir(fs, dir)?;
        log::warn!(
            "raftwal: set {} aside as {}: its header does not parse, and nothing in it is part of the log",
            path.display(),
            aside.display()
        );
        self.report.set_aside.push((path, aside));
        Ok(())
    }
}

/// The name an unreadable segment file is set aside under:
/// `<name>.unreadable` (then `.unreadable-2`, ... when taken), which no
/// open reads as a segment. A name is free only when opening it says it
/// does not exist: the rename must never replace a file.
fn set_aside_name(fs: &dyn crate::fs::FileSystem, path: &Path) -> Result<PathBuf> {
    const TRIES: u32 = 1000;
    let base = path.as_os_str().to_owned();
    for k in 1..=TRIES {
        let mut name = base.clone();
        match k {
            1 => name.push(".unreadable"),
            _ => name.push(format!(".unreadable-{k}")),
        }
        let candidate = PathBuf::from(name);
        match fs.open(&candidate) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(candidate),
            Err(e) => return Err(Error::io("look for a free set-aside name", &candidate, e)),
            Ok(_) => {}
        }
    }
    Err(Error::io(
        "look for a free set-aside name",
        path,
        std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{TRIES} set-aside names are taken"),
        ),
    ))
}

/// The sequence number in a segment file's name (0 when it has none).
fn sequence_of(path: &Path) -> u64 {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(segment::parse_file_name)
        .map_or(0, |(s, _)| s)
}
