//! Sealing a segment the log has rolled past: its data made durable, then
//! its footer and trailer written after it (`footer::encode`), the
//! preallocated rest trimmed and the file synced. Runs on the sealer
//! worker after a roll, given the index and the durability state only.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::durability::Durability;
use crate::error::{Error, Result};
use crate::format::footer;
use crate::format::index::Index;
use crate::worker::{Next, Stop, Worker};

/// The worker that seals the segments the log rolls past, one after the
/// other, in the order of the rolls. Stopped with `finish`: every segment
/// handed to it is sealed before the log closes.
pub(crate) fn sealer(index: Arc<RwLock<Index>>, durability: Arc<Durability>) -> Worker<u64> {
    Worker::new("raftwal-seal", move |sequences: Vec<u64>, _: &Stop| {
        for sequence in sequences {
            if let Err(e) = seal(&index, &durability, sequence) {
                // The segment stays valid: the next open scans it.
                log::warn!("raftwal: could not seal segment {sequence}: {e}");
            }
        }
        Next::Idle
    })
}

/// Seals segment `sequence` (no longer the active one): makes its data
/// durable, then writes its footer and trailer after it, trims the
/// preallocated space and syncs. Runs on the sealer worker after a roll.
///
/// The data is synced first so that a valid footer never names data that
/// is not on disk. The roll left that sync to this thread (or to the next
/// sync round); a failure poisons the log, since later writes may have been
/// acknowledged on the strength of it. A failure after it (the footer) only
/// leaves the segment unsealed: the next open scans it.
fn seal(index: &RwLock<Index>, durability: &Durability, sequence: u64) -> Result<()> {
    let snapshot = {
        let ix = index.read();
        let n = ix.segments.len();
        let Some(s) = ix
            .segments
            .iter()
            .take(n.saturating_sub(1))
            .find(|s| s.sequence == sequence)
        else {
            return Ok(()); // compacted away, or cut, meanwhile
        };
        let first = s.first_index;
        let end = s.end_index();
        let k = ix
            .terms
            .partition_point(|&(start, _)| start <= first)
            .saturating_sub(1);
        let runs: Vec<(u64, u64)> = ix
            .terms
            .get(k..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&(start, _)| start < end)
            .copied()
            .collect();
        (
            Arc::clone(&s.file),
            s.path.clone(),
            s.first_index,
            s.locs.clone(),
            runs,
            s.meta,
            s.len,
        )
    };
    let (file, path, first_index, locs, runs, meta, data_end) = snapshot;
    if durability.is_pending(&file) {
        durability.check()?;
        let started = std::time::Instant::now();
        let res = file.sync_data();
        crate::metrics::fsync(started.elapsed());
        res.map_err(|e| durability.poison(Error::io("fdatasync", &path, e)))?;
        // The file's name may still wait for a directory fsync (a roll
        // leaves it to the next round): a file is durable, and a footer
        // follows, only once its name is.
        durability.sync_dir_if_due()?;
        durability.file_synced(&file);
    }
    // Not pending: a sync round synced its writes, and the directory with
    // them (its name is older than any of them).
    let buf = footer::encode(sequence, first_index, &locs, &runs, meta, data_end)?;
    file.write_all_at(&buf, data_end)
        .map_err(|e| Error::io("write footer", &path, e))?;
    file.set_len(data_end + buf.len() as u64)
        .map_err(|e| Error::io("trim sealed segment", &path, e))?;
    file.sync_data()
        .map_err(|e| Error::io("fdatasync", &path, e))
}
