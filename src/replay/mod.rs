//! The replay machine: what a log directory's frames mean, written once.
//!
//! It reads the segment files the chain plan puts in the log (`chain`), in
//! order, and applies their frames to an [`Index`]: entries, state blobs,
//! markers (truncations, compactions, resets), a write's frames only once
//! its end-of-write mark is read, a sealed segment through its footer. It
//! holds the rules that tell a crash's torn tail from damage (`damage`
//! decides the shapes; here is where each applies), and it decides what a
//! repair cuts and which files go, without changing a byte.
//!
//! Two callers run it:
//! - recovery (`Log::open`) with the log's [`RecoveryMode`]: a problem the
//!   mode does not tolerate is the open's `Error::Corruption`; what it does
//!   tolerate is cut, and recovery then makes the cuts and removals;
//! - the read-only scan ([`inspect`](crate::tools::inspect)) with
//!   [`Rules::every_frame`]: every frame of every segment is read and
//!   checked, every problem is recorded as a [`Problem`] (of the kind that
//!   says how `Log::open` treats it), and the log it describes is the one
//!   `RecoveryMode::TolerateAnyCorruption` keeps. A problem that is a torn
//!   tail is one that the default mode cuts on open, at the same file and
//!   offset; damage is what it refuses, at the same file and offset.
//!
//! The rules themselves are stated in `docs/FORMAT.md` ("Recovery",
//! "Continuity").

use std::path::{Path, PathBuf};

use self::chain::{Opener, SegmentFile};
use crate::error::{Damage, Error, Result};
use crate::format::index::Index;
use crate::format::segment::{Origin, ENTRY_OVERHEAD};
use crate::options::RecoveryMode;

mod apply;
pub(crate) mod chain;
mod cut;
pub(crate) mod damage;
mod link;
mod report;
mod scan;

pub(crate) use cut::Cut;
pub use report::RecoveryReport;

/// How a replay reads and judges a directory.
pub(crate) struct Rules<'a> {
    /// Which problems are refused (an error) and which are cut.
    pub mode: RecoveryMode,
    /// The largest entry a frame may hold (`Options::max_entry_size`).
    pub max_entry_size: u64,
    /// Opens segment files (the log's file system, or plain files).
    pub open: &'a Opener<'a>,
    /// Read every frame, also of segments a valid footer would let the
    /// replay skip, and after damage go on checking the log's later files
    /// frame by frame (the read-only scan). Recovery reads sealed segments
    /// through their footers instead.
    pub every_frame: bool,
    /// Called with the bytes read so far (every megabyte or so, and after
    /// each segment); the counts start at 0 again when a gap makes the
    /// replay start over.
    pub progress: &'a dyn Fn(u64),
}

impl Rules<'_> {
    fn max_payload(&self) -> u64 {
        self.max_entry_size.saturating_add(ENTRY_OVERHEAD)
    }

    /// Whether the mode cuts a problem of this kind rather than refuse the
    /// open.
    fn tolerates(&self, kind: ProblemKind) -> bool {
        match self.mode {
            RecoveryMode::AbsoluteConsistency => false,
            RecoveryMode::TolerateTailCorruption => kind == ProblemKind::TornTail,
            RecoveryMode::TolerateAnyCorruption => true,
        }
    }
}

/// What a [`Problem`] is, as recovery sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// Bad bytes at the end of the last segment, followed by no valid frame:
    /// what a crash in the middle of a write leaves. Also in an older
    /// segment (or its last writes missing) when no later segment holds a
    /// write issued once everything before it was durable: a roll does not
    /// sync the segment it leaves. Recovery's default mode truncates it away
    /// (and removes the later segments); nothing acknowledged was in it.
    TornTail,
    /// A bad frame that is not a torn tail: followed by a valid frame, or
    /// in an older segment with a write after it that was issued once it
    /// was durable. Recovery's default mode refuses to open the log.
    Corruption,
    /// The frames are valid but the log's newest marker puts its first index
    /// below the oldest segment, or its oldest segment continues one that is
    /// not there: history is missing. Cutting bytes cannot mend it; only
    /// `RecoveryMode::TolerateAnyCorruption` opens such a log.
    MissingHistory,
}

/// One place where the directory is not what raftwal wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// The segment file.
    pub path: PathBuf,
    /// For a torn tail, where recovery cuts the file (the start of the
    /// write the bad frame is in; 0 for a file that goes whole). Otherwise
    /// the offset `Log::open`'s `Error::Corruption` names: the bad frame
    /// (0 for a bad header).
    pub offset: u64,
    /// What is wrong there.
    pub reason: String,
    /// How recovery treats it.
    pub kind: ProblemKind,
}

/// One file as the replay read it (for the read-only scan's report).
#[derive(Debug, Clone)]
pub(crate) struct FileSeen {
    pub path: PathBuf,
    /// The bytes of the files before it in the directory (for progress).
    pub before: u64,
    /// Valid frames read, the header included.
    pub frames: u64,
    /// Entry frames read, the ones later cut by a marker included.
    pub entry_frames: u64,
    /// Where its valid frames end: the end of its data, or the offset of
    /// its first bad frame (the file's length until it is read).
    pub data_len: u64,
    /// It ends with a valid footer and trailer.
    pub sealed: bool,
    /// Its footer or trailer was cut by a crash while it was sealed.
    pub torn_seal: bool,
    /// The length its header says it was preallocated to.
    pub preallocated: u64,
}

impl FileSeen {
    /// Counts a valid frame of type `ty` read in the file.
    pub(crate) fn count(&mut self, ty: crate::format::frame::FrameType) {
        use crate::format::frame::FrameType;
        self.frames += 1;
        match ty {
            FrameType::Entry => self.entry_frames += 1,
            FrameType::Trailer => self.sealed = true,
            _ => {}
        }
    }
}

#[derive(PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// A replay's result: the index of the log, and what a repair must do.
pub(crate) struct Replay<'r> {
    pub(crate) rules: &'r Rules<'r>,
    pub(crate) ix: Index,
    pub(crate) report: RecoveryReport,
    /// Every problem met, in the order it was met.
    pub(crate) problems: Vec<Problem>,
    /// Per file of the directory (its position in the list): what was read.
    pub(crate) seen: Vec<FileSeen>,
    /// Files holding nothing acknowledged (a torn tail's later segments, a
    /// torn creation): removed newest first, each unlink synced.
    pub(crate) torn: Vec<PathBuf>,
    /// Segments of the log wholly below its first index, oldest first:
    /// removed in that order, each unlink synced, stopping at a failure.
    pub(crate) below: Vec<PathBuf>,
    /// Files off the log (see `chain`): removed in any order.
    pub(crate) superseded: Vec<PathBuf>,
    /// Cuts of segment files, made once the replay is over.
    pub(crate) cuts: Vec<Cut>,
    /// Segments with a valid footer whose frames it names verify: recovery
    /// read them through it (not scanned), so they were synced before.
    pub(crate) read_by_footer: Vec<u64>,
    /// Segments scanned in full that end with a footer: never written
    /// again.
    pub(crate) sealed: Vec<u64>,
    /// Segments whose data ended at a torn footer (or zeros to the end of
    /// the file) and was kept as it is.
    pub(crate) torn_seals: Vec<u64>,
    /// The origin of the segment being read (its opening marker must
    /// match).
    opening: Origin,
}

/// Replays the log `files` make up (the directory's segment files, by
/// sequence, headers read), with the gap rule: when the log's oldest
/// segment continues one that is missing and no compaction explains it,
/// a lost name cuts the files from there (and the replay starts over
/// without them); else it is damage.
pub(crate) fn run<'r>(files: &[SegmentFile], rules: &'r Rules<'r>) -> Result<Replay<'r>> {
    let max_payload = rules.max_payload();
    // The files from `limit` on were left out: newer than a segment whose
    // name a crash lost.
    let mut limit = files.len();
    let mut gap_problems: Vec<Problem> = Vec::new();
    let mut gap_torn: Vec<PathBuf> = Vec::new();
    let mut gap_bytes = 0;
    let mut r = loop {
        let now = files.get(..limit).unwrap_or_default();
        let plan = chain::plan(now, rules.open, max_payload, false)?;
        let mut r = Replay::new(rules, files);
        r.replay(now, &plan)?;
        let Some(missing) = r.finish(plan.missing)? else {
            break r;
        };
        // The log's oldest segment continues one that is not there, and no
        // compaction explains it: a name lost in a crash, or damage.
        let gap = chain::judge_gap(now, &plan, missing, rules.open, max_payload)?;
        let damage = match gap.torn {
            true => Damage::TornTail,
            false => Damage::MissingHistory,
        };
        let problem = r.judge(damage, &gap.path, 0, 0, &gap.reason)?;
        log::warn!("raftwal: {}: {}", gap.path.display(), gap.reason);
        if !gap.torn {
            // Damage, tolerated: keep the longest prefix instead,
            // replaying across the gap (which stops there).
            let bridged = chain::plan(now, rules.open, max_payload, true)?;
            let mut r = Replay::new(rules, files);
            r.replay(now, &bridged)?;
            r.finish(bridged.missing)?;
            gap_problems.push(problem);
            break r;
        }
        for f in now.get(gap.cut..).unwrap_or_default() {
            gap_torn.push(f.path.clone());
            gap_bytes += f.len;
        }
        gap_problems.push(problem);
        limit = gap.cut;
    };
    for p in &gap_problems {
        if p.kind == ProblemKind::TornTail {
            r.report.repairs.push((p.path.clone(), 0, p.reason.clone()));
        }
    }
    r.problems.extend(gap_problems);
    r.report.bytes_dropped += gap_bytes;
    r.torn.extend(gap_torn);
    Ok(r)
}

impl<'r> Replay<'r> {
    fn new(rules: &'r Rules<'r>, files: &[SegmentFile]) -> Replay<'r> {
        Replay {
            rules,
            ix: Index::default(),
            report: RecoveryReport::default(),
            problems: Vec::new(),
            seen: files
                .iter()
                .scan(0u64, |before, f| {
                    let at = *before;
                    *before += f.len;
                    Some((at, f))
                })
                .map(|(before, f)| FileSeen {
                    path: f.path.clone(),
                    before,
                    frames: 0,
                    entry_frames: 0,
                    data_len: f.len,
                    sealed: false,
                    torn_seal: false,
                    preallocated: f.header().map_or(0, |h| h.preallocated),
                })
                .collect(),
            torn: Vec::new(),
            below: Vec::new(),
            superseded: Vec::new(),
            cuts: Vec::new(),
            read_by_footer: Vec::new(),
            sealed: Vec::new(),
            torn_seals: Vec::new(),
            opening: Origin::Legacy,
        }
    }

    /// Reads the segments `plan` puts in the log into the index, deciding
    /// what to cut and remove without changing a file.
    fn replay(&mut self, files: &[SegmentFile], plan: &chain::Plan) -> Result<()> {
        self.drop_planned(files, plan)?;
        // Every file's path, once: each segment is judged against the
        // files after it.
        let paths: Vec<&Path> = files.iter().map(|f| f.path.as_path()).collect();
        for (n, &k) in plan.chain.iter().enumerate() {
            let Some(f) = files.get(k) else { continue };
            let problems = self.problems.len();
            if self.scan_segment(k, f, plan.later(&paths, k))? == Flow::Stop {
                // Every later segment of the log goes with what was cut:
                // none of it was acknowledged (see docs/FORMAT.md).
                let after = plan.chain.get(n + 1..).unwrap_or_default();
                self.torn.extend(
                    after
                        .iter()
                        .filter_map(|&j| files.get(j))
                        .map(|f| f.path.clone()),
                );
                // After damage the scan goes on checking the later files
                // frame by frame (recovery does not read them).
                let damaged = self
                    .problems
                    .get(problems..)
                    .unwrap_or_default()
                    .iter()
                    .any(|p| p.kind != ProblemKind::TornTail);
                if self.rules.every_frame && damaged {
                    for &j in after {
                        if let Some(f) = files.get(j) {
                            self.check_frames(j, f, plan.later(&paths, j))?;
                        }
                    }
                }
                break;
            }
        }
        self.superseded.extend(
            plan.superseded
                .iter()
                .filter_map(|&k| files.get(k))
                .map(|f| f.path.clone()),
        );
        Ok(())
    }

    /// A problem (`damage`) at `at` in `path` (`cut`: where a repair cuts
    /// the file): `Error::Corruption` at `at` when the mode refuses it,
    /// else recorded (and returned) for the caller to cut.
    pub(crate) fn judge(
        &mut self,
        damage: Damage,
        path: &Path,
        at: u64,
        cut: u64,
        reason: &str,
    ) -> Result<Problem> {
        let kind = match damage {
            Damage::TornTail => ProblemKind::TornTail,
            Damage::MissingHistory => ProblemKind::MissingHistory,
            _ => ProblemKind::Corruption,
        };
        if !self.rules.tolerates(kind) {
            return Err(Error::corruption(damage, path, at, reason.to_string()));
        }
        let offset = match kind {
            ProblemKind::TornTail => cut,
            _ => at,
        };
        if let Some(s) = self.seen.iter_mut().find(|s| s.path == path) {
            s.data_len = s.data_len.min(at);
        }
        let p = Problem {
            path: path.to_path_buf(),
            offset,
            reason: reason.to_string(),
            kind,
        };
        self.problems.push(p.clone());
        Ok(p)
    }

    /// Whether segment `sequence` is sealed (read through its footer, or
    /// scanned and found to end with one): never written again.
    pub(crate) fn is_sealed(&self, sequence: u64) -> bool {
        self.read_by_footer.contains(&sequence) || self.sealed.contains(&sequence)
    }

    /// Handles the files the plan left out before the replay (unreadable
    /// headers, and the files after one in the log): torn creations are
    /// removed (newest first, with the torn files) under the tolerant
    /// modes; damage is `Error::Corruption` unless under
    /// `RecoveryMode::TolerateAnyCorruption`.
    fn drop_planned(&mut self, files: &[SegmentFile], plan: &chain::Plan) -> Result<()> {
        let mut own: Vec<&chain::Dropped> = plan.dropped.iter().filter(|d| !d.follows).collect();
        own.sort_by_key(|d| d.pos);
        for d in own {
            let path = files.get(d.pos).map(|f| f.path.clone()).unwrap_or_default();
            let damage = match d.torn {
                true => Damage::TornTail,
                false => Damage::Header,
            };
            self.judge(damage, &path, d.offset, d.offset, &d.reason)?;
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

    /// Checks that the log starts where its oldest segment says, and drops
    /// the segments wholly below the first index from the index (their
    /// files are removed by recovery). `missing`: the oldest segment names
    /// a predecessor that is not there, which only a compaction explains:
    /// its marker must put the first index at or past the oldest segment.
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
        let front = self.ix.segments.front();
        if let Some((path, start)) = front.map(|f| (f.path.clone(), f.first_index)) {
            if self.ix.first_index < start {
                let reason = format!(
                    "the newest marker puts the first index at {} but the oldest segment starts at {start}",
                    self.ix.first_index
                );
                self.judge(Damage::MissingHistory, &path, 0, 0, &reason)?;
                log::warn!("raftwal: {reason}; the term before the first index is unknown");
                self.ix.first_index = start;
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
}
