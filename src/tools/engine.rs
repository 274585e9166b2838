//! A read-only look at an engine directory (docs/ENGINE.md): the groups
//! its records make, as [`Engine::open`](crate::Engine::open) would
//! replay them, from a [`DirScan`] of its stream, without taking the lock
//! or changing a byte.

use std::collections::HashMap;
use std::sync::Arc;

use crate::engine::memtable::Groups;
use crate::engine::replayer::Replayer;
use crate::engine::{record, IDENTITY};
use crate::error::{Damage, Error, Result};
use crate::fs::FileHandle;
use crate::log::entry::Entry;
use crate::log::write::record::RecordAt;
use crate::tools::inspect::DirScan;

/// Whether `scan` is of an engine's directory (its state blob says so).
pub fn is_engine(scan: &DirScan) -> bool {
    scan.state.as_deref() == Some(IDENTITY)
}

/// One group, as the records make it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupInfo {
    /// The group's id.
    pub group: u64,
    /// Its first index (`last_index + 1` when it holds no entry).
    pub first_index: u64,
    /// Its last index.
    pub last_index: u64,
    /// The term of entry `first_index - 1`.
    pub prev_term: u64,
    /// The length of its state blob, if it has one.
    pub state_len: Option<usize>,
    /// The sequence of the oldest segment holding one of its entries.
    pub oldest_segment: Option<u64>,
}

/// The groups of an engine directory, replayed read-only from `scan`.
pub struct EngineScan<'a> {
    scan: &'a DirScan,
    groups: Groups,
}

impl std::fmt::Debug for EngineScan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineScan")
            .field("dir", &self.scan.dir)
            .field("groups", &self.groups.ids().count())
            .finish()
    }
}

impl<'a> EngineScan<'a> {
    /// Replays the records of `scan` (the log it describes) as an engine's
    /// open does. [`Error::InvalidArgument`] when `scan` is not of an
    /// engine; [`Error::Corruption`] (of kind [`Damage::Record`]) when a
    /// record does not parse or apply.
    pub fn new(scan: &'a DirScan) -> Result<EngineScan<'a>> {
        if !is_engine(scan) {
            return Err(Error::InvalidArgument(format!(
                "{} is not an engine's directory",
                scan.dir.display()
            )));
        }
        let mut r = Replayer::new(scan.first_index > 1);
        let path_of = |sequence| {
            scan.segments
                .iter()
                .find(|s| s.sequence == sequence)
                .map(|s| s.path.clone())
                .unwrap_or_default()
        };
        let records = scan.entries(scan.first_index, scan.last_index + 1);
        for (loc, data) in scan.entry_locations().iter().zip(records) {
            let data = data?.data;
            let seg = &scan.segments[loc.segment];
            let end = loc.offset + u64::from(loc.len);
            let at = RecordAt {
                index: loc.index,
                sequence: seg.sequence,
                data_offset: end - data.len() as u64,
            };
            r.record(at, &data, || seg.path.clone())?;
        }
        let groups = r.finish(path_of)?;
        Ok(EngineScan { scan, groups })
    }

    /// Every group, by id.
    pub fn groups(&self) -> Vec<GroupInfo> {
        let mut out: Vec<GroupInfo> = self
            .groups
            .iter()
            .map(|(group, g)| info(group, g))
            .collect();
        out.sort_unstable_by_key(|g| g.group);
        out
    }

    /// Group `group`, if the engine holds it.
    pub fn group(&self, group: u64) -> Option<GroupInfo> {
        self.groups
            .contains(group)
            .then(|| info(group, self.groups.get(group)))
    }

    /// Group `group`'s entries `lo..hi` (clamped to it), read from the
    /// files and checked with the group's CRC salt.
    pub fn entries(&self, group: u64, lo: u64, hi: u64) -> Result<Vec<Entry>> {
        let g = self.groups.get(group);
        let (lo, hi) = (lo.max(g.first_index()), hi.min(g.last_index() + 1));
        let mut files: HashMap<u64, Arc<dyn FileHandle>> = HashMap::new();
        let mut out = Vec::new();
        for index in lo..hi {
            let (sequence, loc) = g.locate(index).ok_or_else(|| {
                Error::internal(format!("group {group} has no place for entry {index}"))
            })?;
            let seg = self
                .scan
                .segments
                .iter()
                .find(|s| s.sequence == sequence)
                .ok_or_else(|| Error::internal(format!("no segment {sequence} in the scan")))?;
            let file = match files.get(&sequence) {
                Some(f) => Arc::clone(f),
                None => {
                    let f = self
                        .scan
                        .file_system()
                        .open_read(&seg.path)
                        .map_err(|e| Error::io("open segment", &seg.path, e))?;
                    files.insert(sequence, Arc::clone(&f));
                    f
                }
            };
            let mut buf = vec![0u8; loc.len as usize];
            file.read_exact_at(&mut buf, u64::from(loc.offset))
                .map_err(|e| Error::io("read entry", &seg.path, e))?;
            let (term, data) = record::read_entry(group, index, buf).map_err(|why| {
                Error::corruption(Damage::Frame, &seg.path, u64::from(loc.offset), why)
            })?;
            out.push(Entry { index, term, data });
        }
        Ok(out)
    }
}

/// What a tool shows of group `id`.
fn info(id: u64, g: &crate::engine::group::Group) -> GroupInfo {
    GroupInfo {
        group: id,
        first_index: g.first_index(),
        last_index: g.last_index(),
        prev_term: g.term(g.first_index() - 1).unwrap_or(0),
        state_len: g.state().map(|s| s.len()),
        oldest_segment: g.oldest_entry_segment(),
    }
}
