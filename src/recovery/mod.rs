//! Opening a log: the replay machine (`replay`) reads the directory into
//! an index and decides what a crash or damage left behind; recovery then
//! makes its cuts, syncs what the log builds on, removes what holds
//! nothing acknowledged, and leaves a segment ready for writes.

use std::path::Path;

use crate::error::{Damage, Error, Result};
use crate::format::frame::FrameType;
use crate::format::index::{Index, Pos, Segment};
use crate::format::proto;
use crate::format::segment::{self, Link, Origin, ON_THE_SPOT};
use crate::options::{Options, Preallocate};
use crate::replay::chain::SegmentFile;
use crate::replay::{self, Cut, Replay};

mod tidy;

pub use crate::replay::RecoveryReport;

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

/// A replayed log being made ready to open.
struct Recovery<'o> {
    opts: &'o Options,
    r: Replay<'o>,
    /// The files whose header does not parse, wherever they are (torn,
    /// after a lost name, superseded): raftwal cannot prove they are its
    /// own, so they are renamed aside, never removed.
    unreadable: Vec<std::path::PathBuf>,
}

/// Recovers the log in `dir` (which exists and is locked by the caller).
pub(crate) fn recover(dir: &Path, opts: &Options) -> Result<Recovered> {
    let fs = &*opts.file_system;
    let listed = segment::list(fs, dir)?;
    let next_sequence = match listed.iter().map(|f| f.0).max() {
        None => 1,
        Some(max) => max.checked_add(1).ok_or_else(|| {
            Error::corruption(
                Damage::Header,
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
    let rules = replay::Rules {
        mode: opts.recovery_mode,
        max_entry_size: opts.max_entry_size,
        open: &open,
        every_frame: false,
        progress: &|_| {},
    };
    let mut r = Recovery {
        opts,
        r: replay::run(&files, &rules)?,
        unreadable: files
            .iter()
            .filter(|f| f.header().is_none())
            .map(|f| f.path.clone())
            .collect(),
    };
    // The segment that goes on as the active one is cut at the end of its
    // data: new writes must never land in front of stale frames (writes a
    // crash kept after one it zeroed, a torn footer).
    let mut tail_reallocated = r.cut_after_last();
    // Nothing was changed so far: a refused open leaves the files as they
    // were.
    for cut in std::mem::take(&mut r.r.cuts) {
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
    for seg in r.r.ix.segments.iter() {
        // A sealed segment (read through its footer, or scanned and found
        // to end with one) was synced by its sealer before the footer was
        // written.
        if !r.r.is_sealed(seg.sequence) {
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
        r.r.ix
            .segments
            .back()
            .is_some_and(|s| r.r.is_sealed(s.sequence));
    if r.r.ix.segments.is_empty() || sealed_last {
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
        index: r.r.ix,
        next_sequence,
        report: r.r.report,
        tail_reallocated,
    })
}

impl Recovery<'_> {
    /// Cuts the last segment (when it was scanned, not read by its footer)
    /// at the end of its data, giving the rest back as preallocated zeros.
    /// Under a relaxed sync policy or group commit several writes are
    /// unsynced at once, and a crash may zero an earlier one and keep a
    /// later one: the scan ends at the zeros (unused space), but the later
    /// write's frames are still there, and a new write of another length
    /// would put them back in the log. A segment kept with a torn footer
    /// (or zeros to its end) is cut the same way, and that is reported.
    fn cut_after_last(&mut self) -> bool {
        let r = &mut self.r;
        let sealed =
            r.ix.segments
                .back()
                .is_some_and(|s| r.is_sealed(s.sequence));
        let Some(seg) = r.ix.segments.back_mut() else {
            return false;
        };
        if sealed {
            return false;
        }
        let torn_seal = r.torn_seals.contains(&seg.sequence);
        if !torn_seal && seg.preallocated <= seg.len {
            return false;
        }
        let offset = seg.len;
        if r.cuts
            .iter()
            .any(|c| c.path == seg.path && c.offset == offset)
        {
            // The replay already cut it there (a torn tail).
            return seg.preallocated > offset;
        }
        let cut = Cut::at(seg, offset);
        let reallocated = cut.preallocated > offset;
        if torn_seal {
            let reason = "cut the bytes after the data (a torn footer, or writes lost in a crash): the segment goes on as the last one".to_string();
            log::warn!(
                "raftwal: {} at offset {offset}: {reason}",
                cut.path.display()
            );
            r.report.repairs.push((cut.path.clone(), offset, reason));
        }
        r.cuts.push(cut);
        reallocated
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
        let Some((data, pos)) = &self.r.ix.state else {
            return Ok(());
        };
        if self
            .r
            .ix
            .segments
            .iter()
            .any(|s| s.sequence == pos.sequence)
        {
            return Ok(());
        }
        let data = data.clone();
        let Some(seg) = self.r.ix.segments.back_mut() else {
            return Ok(());
        };
        let mut buf = Vec::with_capacity(data.len() + 16);
        let salt = crate::format::frame::salt(seg.sequence);
        let n = crate::format::frame::encode_message(
            &mut buf,
            FrameType::State,
            salt,
            &proto::State { data: data.clone() },
        );
        crate::format::frame::set_end_of_write(&mut buf, 0, true);
        crate::format::frame::seal(&mut buf, 0, salt);
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
        self.r
            .report
            .repairs
            .push((seg.path.clone(), offset, reason));
        self.r.ix.state = Some((
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
        let ix = &mut self.r.ix;
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
}
