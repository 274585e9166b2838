//! Which segment files make up the log, decided from their headers before
//! any frame is read, for recovery (`Log::open`) and for the read-only scan
//! behind the CLI (`inspect`): both follow the same plan.
//!
//! A version-2 header names the segment it continues (see
//! [`Origin`](crate::format::segment::Origin)). From the newest segment whose
//! header is readable, the links lead back through the log: that *chain*
//! is the log. It ends at a segment that continues nothing (the first
//! segment of the log, or a reset), at a version-1 segment's oldest
//! predecessor (version-1 headers name none: each continues the file
//! before it), or at a link to a file that is not there. Only a compaction
//! removes segments the chain still reaches (the oldest ones, wholly below
//! its marker's first index), so recovery accepts a missing predecessor
//! only when the chain's newest marker puts the first index at or past the
//! chain's first segment; anything else is a lost segment.
//!
//! Every other file is *superseded*: older than the chain's first segment
//! (compacted away, or before a reset), or skipped by a link (a cut below
//! the active segment opens a segment that continues the one holding the
//! entries before the cut; the segments in between are cut off). The
//! remover (after a compaction), the cut or reset itself, and the next
//! open unlink such files, and a crash may keep any subset of those
//! unlinks: the plan does not depend on which.
//!
//! A segment opened by a cut or a reset gets its name only once its opening
//! write is on disk ([`create_opened`](crate::format::segment::create_opened)),
//! so a segment of that origin is always real. A rolled-to segment's header
//! is not synced by the roll: a file whose header is unreadable is a torn
//! creation when no write in it or after it was issued once everything
//! before was durable (`damage::is_torn_creation`); it and every file after
//! it go. Otherwise it is damage.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::segment::{self, Header};
use crate::fs::FileHandle;
use crate::replay::damage::{is_torn_creation, synced_write_in};

/// Opens a segment file (the recovery's file system, or plain files for
/// the read-only scan).
pub(crate) type Opener<'a> = dyn Fn(&Path) -> Result<Arc<dyn FileHandle>> + 'a;

/// A segment file of the directory, its header read.
pub(crate) struct SegmentFile {
    /// The sequence number in the file name.
    pub sequence: u64,
    /// The first index in the file name.
    pub name_first: u64,
    /// The file.
    pub path: PathBuf,
    /// The open file.
    pub file: Arc<dyn FileHandle>,
    /// Its length.
    pub len: u64,
    /// Its header, or why it cannot be used.
    pub header: std::result::Result<Header, BadHeader>,
}

/// Why a segment's header cannot be used.
#[derive(Debug, Clone)]
pub(crate) struct BadHeader {
    /// Where the problem is (0: the header frame).
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
    /// Whether a crash could have left it (a header that does not verify);
    /// a verified header that disagrees with its file name is damage.
    pub may_be_torn: bool,
}

impl SegmentFile {
    /// Opens `path` (named `sequence`, `name_first`) and reads its header.
    /// Only I/O errors are returned; a bad header is recorded.
    pub(crate) fn read(
        open: &Opener<'_>,
        sequence: u64,
        name_first: u64,
        path: PathBuf,
    ) -> Result<SegmentFile> {
        let file = open(&path)?;
        let len = file
            .len()
            .map_err(|e| Error::io("stat segment", &path, e))?;
        let header = match segment::check_header(&*file, &path, len)? {
            Ok(h) if h.sequence != sequence || h.first_index != name_first => Err(BadHeader {
                offset: 0,
                reason: format!(
                    "header says sequence {} first index {}, the file name says {sequence} and {name_first}",
                    h.sequence, h.first_index
                ),
                may_be_torn: false,
            }),
            Ok(h) => Ok(h),
            // A header that verifies but says something impossible is no
            // crash's doing.
            Err(bad) => Err(BadHeader {
                offset: 0,
                reason: bad.reason,
                may_be_torn: !bad.verified,
            }),
        };
        Ok(SegmentFile {
            sequence,
            name_first,
            path,
            file,
            len,
            header,
        })
    }

    /// The header, when it is usable.
    pub(crate) fn header(&self) -> Option<&Header> {
        self.header.as_ref().ok()
    }
}

/// A file left out of the log before any frame is read: a bad header, or a
/// file after one.
#[derive(Debug, Clone)]
pub(crate) struct Dropped {
    /// Its position in the file list.
    pub pos: usize,
    /// Where the problem is.
    pub offset: u64,
    /// What it is.
    pub reason: String,
    /// Whether a crash explains it (a torn creation, or a file after one):
    /// nothing in it was acknowledged. Otherwise it is damage.
    pub torn: bool,
    /// Dropped for coming after a file with an unreadable header in the
    /// log, not for its own header (which may be bad too).
    pub follows: bool,
}

/// Which files make up the log; see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Positions (in the file list) of the segments that make up the log,
    /// oldest first.
    pub chain: Vec<usize>,
    /// The sequence number of the segment the chain's first segment names
    /// as its predecessor, when that file is not there. Only a compaction
    /// whose marker the chain holds explains it (checked after the replay).
    pub missing: Option<u64>,
    /// Positions of the files the chain supersedes, oldest first.
    pub superseded: Vec<usize>,
    /// Files left out before the replay, newest first.
    pub dropped: Vec<Dropped>,
    /// Files from this position on were dropped.
    pub end: usize,
}

impl Plan {
    /// Of `paths` (every file's, in the list's order), those after
    /// position `pos`, whatever their part: where a write marked
    /// prior-synced would show that what lies before it was durable
    /// (dropped files hold none: they would be damage), and whether `pos`
    /// is the directory's last segment file.
    pub(crate) fn later<'p>(&self, paths: &'p [&'p Path], pos: usize) -> &'p [&'p Path] {
        paths.get(pos + 1..).unwrap_or_default()
    }
}

/// Decides which of `files` (sorted by sequence) make up the log.
///
/// `bridge`: when a link names a file that is not there, go on with the
/// file before it instead (for `RecoveryMode::TolerateAnyCorruption`, which
/// keeps the longest prefix of the log when no compaction explains the
/// gap: the replay then stops at the gap).
pub(crate) fn plan(
    files: &[SegmentFile],
    open: &Opener<'_>,
    max_payload: u64,
    bridge: bool,
) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut end = files.len();
    'tip: loop {
        // The newest files whose headers are unreadable: torn creations or
        // damage, judged one by one from the newest.
        while let Some(f) = end.checked_sub(1).and_then(|k| files.get(k)) {
            let Err(bad) = &f.header else { break };
            let torn = judge(f, bad, &[], open, max_payload)?;
            plan.dropped.push(Dropped {
                pos: end - 1,
                offset: bad.offset,
                reason: bad.reason.clone(),
                torn,
                follows: false,
            });
            end -= 1;
        }
        let Some(tip) = end.checked_sub(1) else {
            plan.end = 0;
            return Ok(plan);
        };
        let mut chain = vec![tip];
        let mut cur = tip;
        plan.missing = None;
        while let Some(h) = files.get(cur).and_then(SegmentFile::header) {
            let pred = match h.origin {
                // Version 1: the file before, whatever it holds.
                segment::Origin::Legacy => cur.checked_sub(1),
                origin => match origin.link() {
                    None => None,
                    Some(link) => {
                        let found = files
                            .get(..cur)
                            .unwrap_or_default()
                            .iter()
                            .rposition(|f| f.sequence == link.sequence);
                        match found {
                            Some(p) => Some(p),
                            None if bridge => cur.checked_sub(1),
                            None => {
                                plan.missing = Some(link.sequence);
                                None
                            }
                        }
                    }
                },
            };
            let Some(p) = pred else { break };
            let Some(pf) = files.get(p) else { break };
            if let Err(bad) = &pf.header {
                // The chain runs through a file whose header is unreadable:
                // a torn creation (it and every later file go, and the log
                // ends before it) or damage.
                let later: Vec<&Path> = files
                    .get(p + 1..end)
                    .unwrap_or_default()
                    .iter()
                    .map(|f| f.path.as_path())
                    .collect();
                let torn = judge(pf, bad, &later, open, max_payload)?;
                for k in (p + 1..end).rev() {
                    plan.dropped.push(Dropped {
                        pos: k,
                        offset: 0,
                        reason: format!(
                            "follows {}, whose header is unreadable",
                            pf.path.display()
                        ),
                        torn,
                        follows: true,
                    });
                }
                plan.dropped.push(Dropped {
                    pos: p,
                    offset: bad.offset,
                    reason: bad.reason.clone(),
                    torn,
                    follows: false,
                });
                end = p;
                continue 'tip;
            }
            chain.push(p);
            cur = p;
        }
        chain.reverse();
        let mut on_chain = vec![false; end];
        for &k in &chain {
            if let Some(b) = on_chain.get_mut(k) {
                *b = true;
            }
        }
        plan.superseded = (0..end).filter(|&k| !on_chain[k]).collect();
        plan.chain = chain;
        plan.end = end;
        // Newest first: the order in which they are removed.
        plan.dropped.sort_by_key(|d| std::cmp::Reverse(d.pos));
        return Ok(plan);
    }
}

/// The log's oldest segment (the plan's chain starts at it) names as its
/// predecessor segment `missing`, which is not there, and the replay found
/// no compaction marker that explains it.
#[derive(Debug)]
pub(crate) struct Gap {
    /// Where the files from the missing segment on start in the list.
    pub cut: usize,
    /// The segment that names the missing one.
    pub path: PathBuf,
    /// Whether a crash explains it: the missing segment's name never
    /// reached the disk. Then nothing from it on was acknowledged, and the
    /// files from `cut` on go. Otherwise it is damage.
    pub torn: bool,
    /// What happened, for a report.
    pub reason: String,
}

/// Judges a gap (see [`Gap`]). A roll's rename (or creation) is synced by
/// the next sync round, before anything after it is acknowledged and
/// before any write is marked prior-synced; and a segment whose header says
/// `prev_synced` was made when it was durable. So when neither the header
/// naming the missing segment nor any write in a file after it says so,
/// its name was lost in a crash. Else it is damage.
pub(crate) fn judge_gap(
    files: &[SegmentFile],
    plan: &Plan,
    missing: u64,
    open: &Opener<'_>,
    max_payload: u64,
) -> Result<Gap> {
    let cut = files.partition_point(|f| f.sequence < missing);
    let front = plan.chain.first().and_then(|&k| files.get(k));
    let path = front.map(|f| f.path.clone()).unwrap_or_default();
    let linked_synced = front
        .and_then(SegmentFile::header)
        .and_then(|h| h.origin.link())
        .is_some_and(|l| l.synced);
    let after: Vec<&Path> = files
        .get(cut..)
        .unwrap_or_default()
        .iter()
        .map(|f| f.path.as_path())
        .collect();
    let torn = !linked_synced && !synced_write_in(open, &after, max_payload)?;
    let mut reason = format!(
        "the segment continues segment {missing}, which is missing, and no compaction marker puts the first index past it"
    );
    if torn {
        reason.push_str(": its name was lost in a crash (no write after it was durable), so this file and every later one go");
    }
    Ok(Gap {
        cut,
        path,
        torn,
        reason,
    })
}

/// Whether the unreadable header of `f` is a torn creation (see
/// `damage::is_torn_creation`), given the files after it.
fn judge(
    f: &SegmentFile,
    bad: &BadHeader,
    later: &[&Path],
    open: &Opener<'_>,
    max_payload: u64,
) -> Result<bool> {
    if !bad.may_be_torn {
        return Ok(false);
    }
    is_torn_creation(
        &*f.file,
        &f.path,
        f.len,
        f.sequence,
        later,
        open,
        max_payload,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::segment::{Link, Origin};
    use crate::fs::{FileSystem, StdFileSystem};

    /// Writes a segment holding only its header.
    fn seg(dir: &Path, sequence: u64, first: u64, origin: Origin) {
        let c = segment::create(&StdFileSystem, dir, sequence, first, None, origin).unwrap();
        drop(c);
    }

    fn link(sequence: u64) -> Link {
        Link {
            sequence,
            end: 100,
            synced: false,
        }
    }

    fn plan_of(dir: &Path) -> (Plan, Vec<u64>) {
        let open = |p: &Path| segment::open(&StdFileSystem, p);
        let files: Vec<SegmentFile> = segment::list(&StdFileSystem, dir)
            .unwrap()
            .into_iter()
            .map(|(s, f, p)| SegmentFile::read(&open, s, f, p).unwrap())
            .collect();
        let seqs = files.iter().map(|f| f.sequence).collect();
        (plan(&files, &open, 1 << 20, false).unwrap(), seqs)
    }

    fn seqs(positions: &[usize], all: &[u64]) -> Vec<u64> {
        positions.iter().map(|&k| all[k]).collect()
    }

    #[test]
    fn a_chain_of_rolls_is_the_whole_log() {
        let d = tempfile::tempdir().unwrap();
        seg(d.path(), 1, 1, Origin::First);
        seg(d.path(), 2, 10, Origin::Roll(link(1)));
        seg(d.path(), 3, 20, Origin::Roll(link(2)));
        let (p, all) = plan_of(d.path());
        assert_eq!(seqs(&p.chain, &all), vec![1, 2, 3]);
        assert!(p.superseded.is_empty() && p.dropped.is_empty() && p.missing.is_none());
    }

    #[test]
    fn a_cut_skips_the_segments_it_superseded_and_a_reset_everything() {
        let d = tempfile::tempdir().unwrap();
        seg(d.path(), 1, 1, Origin::First);
        seg(d.path(), 2, 10, Origin::Roll(link(1)));
        seg(d.path(), 3, 20, Origin::Roll(link(2)));
        seg(d.path(), 4, 5, Origin::Cut(Some(link(1))));
        seg(d.path(), 5, 9, Origin::Roll(link(4)));
        let (p, all) = plan_of(d.path());
        assert_eq!(seqs(&p.chain, &all), vec![1, 4, 5]);
        assert_eq!(seqs(&p.superseded, &all), vec![2, 3]);
        seg(d.path(), 6, 100, Origin::Reset);
        let (p, all) = plan_of(d.path());
        assert_eq!(seqs(&p.chain, &all), vec![6]);
        assert_eq!(seqs(&p.superseded, &all), vec![1, 2, 3, 4, 5]);
        assert!(p.missing.is_none());
    }

    #[test]
    fn a_missing_predecessor_ends_the_chain_and_is_reported() {
        let d = tempfile::tempdir().unwrap();
        seg(d.path(), 1, 1, Origin::First);
        // 2 was unlinked by a compaction; 1's unlink failed.
        seg(d.path(), 3, 20, Origin::Roll(link(2)));
        seg(d.path(), 4, 30, Origin::Roll(link(3)));
        let (p, all) = plan_of(d.path());
        assert_eq!(seqs(&p.chain, &all), vec![3, 4]);
        assert_eq!(seqs(&p.superseded, &all), vec![1]);
        assert_eq!(p.missing, Some(2));
    }

    #[test]
    fn version_1_segments_continue_the_file_before_them() {
        let d = tempfile::tempdir().unwrap();
        seg(d.path(), 1, 1, Origin::Legacy);
        seg(d.path(), 3, 20, Origin::Legacy);
        seg(d.path(), 4, 30, Origin::Roll(link(3)));
        let (p, all) = plan_of(d.path());
        assert_eq!(seqs(&p.chain, &all), vec![1, 3, 4]);
        assert!(p.missing.is_none());
    }

    #[test]
    fn torn_headers_at_the_end_are_dropped_newest_first() {
        let d = tempfile::tempdir().unwrap();
        seg(d.path(), 1, 1, Origin::First);
        seg(d.path(), 2, 10, Origin::Roll(link(1)));
        for (s, f) in [(3, 20), (4, 30)] {
            let path = d.path().join(segment::file_name(s, f));
            StdFileSystem
                .create_new(&path)
                .unwrap()
                .write_all_at(&[7; 5], 0)
                .unwrap();
        }
        let (p, all) = plan_of(d.path());
        assert_eq!(seqs(&p.chain, &all), vec![1, 2]);
        let dropped: Vec<(u64, bool)> = p.dropped.iter().map(|x| (all[x.pos], x.torn)).collect();
        assert_eq!(dropped, vec![(4, true), (3, true)]);
        assert_eq!(p.end, 2);
    }

    #[test]
    fn a_torn_header_inside_the_chain_drops_it_and_every_later_file() {
        let d = tempfile::tempdir().unwrap();
        seg(d.path(), 1, 1, Origin::First);
        let torn = d.path().join(segment::file_name(2, 10));
        StdFileSystem
            .create_new(&torn)
            .unwrap()
            .write_all_at(&[0; 30], 0)
            .unwrap();
        seg(d.path(), 3, 20, Origin::Roll(link(2)));
        let (p, all) = plan_of(d.path());
        assert_eq!(seqs(&p.chain, &all), vec![1]);
        let dropped: Vec<u64> = p.dropped.iter().map(|x| all[x.pos]).collect();
        assert_eq!(dropped, vec![3, 2]);
        assert!(p.dropped.iter().all(|x| x.torn));
    }
}
