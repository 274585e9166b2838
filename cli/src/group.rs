//! Engine directories (docs/ENGINE.md): one stream whose entries are
//! records holding parts for many groups. What `inspect`, `dump` and
//! `verify` share for them and for `--group ID`.

use std::path::Path;

use raftwal::tools::engine::{self, EngineScan, GroupInfo};
use raftwal::tools::inspect::DirScan;
use serde::Serialize;

use crate::failure::{Failure, NOT_A_LOG, USAGE};
use crate::problem::ProblemView;

/// Entries read from the files at a time (`dump`, `verify`): a group's
/// entries are never all in memory at once.
pub const WINDOW: u64 = 1024;

/// The records replayed as `Engine::open` would, or the problem where one
/// does not apply (a `Damage::Record`, or a record that does not read
/// back). Other errors (I/O) fail the command.
pub fn replay(scan: &DirScan) -> Result<Result<EngineScan<'_>, ProblemView>, Failure> {
    match EngineScan::new(scan) {
        Ok(e) => Ok(Ok(e)),
        Err(raftwal::Error::Corruption {
            path,
            offset,
            reason,
            ..
        }) => Ok(Err(ProblemView {
            path,
            offset,
            reason: format!("the records do not replay: {reason}"),
            kind: "corruption",
        })),
        Err(e) => Err(e.into()),
    }
}

/// `--group` is for engine directories only: a usage error elsewhere.
pub fn require_engine(scan: &DirScan) -> Result<(), Failure> {
    if engine::is_engine(scan) {
        return Ok(());
    }
    Err(Failure::new(
        USAGE,
        format!(
            "--group needs an engine directory; {} is a log of its own (run the command without --group)",
            scan.dir.display()
        ),
    ))
}

/// Group `id` of the engine, or a failure naming the groups it does hold.
pub fn find(es: &EngineScan<'_>, dir: &Path, id: u64) -> Result<GroupInfo, Failure> {
    if let Some(g) = es.group(id) {
        return Ok(g);
    }
    let groups = es.groups();
    const SHOWN: usize = 10;
    let mut ids: Vec<String> = groups
        .iter()
        .take(SHOWN)
        .map(|g| g.group.to_string())
        .collect();
    if groups.len() > SHOWN {
        ids.push(format!("... ({} in all)", groups.len()));
    }
    let held = if ids.is_empty() {
        "it holds none".to_string()
    } else {
        format!("it holds {}", ids.join(", "))
    };
    Err(Failure::new(
        NOT_A_LOG,
        format!(
            "the engine in {} holds no group {id}: {held}",
            dir.display()
        ),
    ))
}

/// The file name of segment `sequence`, if the scan has it.
pub fn segment_name(scan: &DirScan, sequence: u64) -> Option<String> {
    scan.segments
        .iter()
        .find(|s| s.sequence == sequence)
        .and_then(|s| s.path.file_name())
        .map(|n| n.to_string_lossy().into_owned())
}

/// The windows `[lo, hi)` of at most [`WINDOW`] indexes covering
/// `lo..hi`.
pub fn windows(lo: u64, hi: u64) -> impl Iterator<Item = (u64, u64)> {
    let mut next = lo;
    std::iter::from_fn(move || {
        if next >= hi {
            return None;
        }
        let start = next;
        next = start.saturating_add(WINDOW).min(hi);
        Some((start, next))
    })
}

/// One group, for display; also its JSON form.
#[derive(Debug, Serialize)]
pub struct GroupView {
    pub group: u64,
    /// `last_index + 1` when the group holds no entry.
    pub first_index: u64,
    pub last_index: u64,
    pub entries: u64,
    /// The term of entry `first_index - 1`.
    pub prev_term: u64,
    /// The length of its state blob, if it has one.
    pub state_bytes: Option<usize>,
    /// The oldest segment holding one of its entries: its file name and
    /// sequence.
    pub oldest_segment: Option<String>,
    pub oldest_segment_sequence: Option<u64>,
}

impl GroupView {
    pub fn new(scan: &DirScan, g: &GroupInfo) -> GroupView {
        GroupView {
            group: g.group,
            first_index: g.first_index,
            last_index: g.last_index,
            entries: (g.last_index + 1).saturating_sub(g.first_index),
            prev_term: g.prev_term,
            state_bytes: g.state_len,
            oldest_segment: g
                .oldest_segment
                .map(|s| segment_name(scan, s).unwrap_or_else(|| format!("segment {s}"))),
            oldest_segment_sequence: g.oldest_segment,
        }
    }

    /// `"11..=20"` or `"no entries"`.
    pub fn range(&self) -> String {
        if self.entries == 0 {
            "no entries".into()
        } else {
            format!("{}..={}", self.first_index, self.last_index)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_range() {
        assert_eq!(windows(5, 5).count(), 0);
        assert_eq!(windows(1, 3).collect::<Vec<_>>(), vec![(1, 3)]);
        let w: Vec<_> = windows(1, 2 * WINDOW + 2).collect();
        assert_eq!(
            w,
            vec![
                (1, WINDOW + 1),
                (WINDOW + 1, 2 * WINDOW + 1),
                (2 * WINDOW + 1, 2 * WINDOW + 2)
            ]
        );
        assert_eq!(windows(u64::MAX - 1, u64::MAX).count(), 1);
    }
}
