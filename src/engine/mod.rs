//! The engine: many Raft groups in one directory, sharing one stream of
//! writes and one `fdatasync` per round (see `docs/ENGINE.md`).
//!
//! The stream is a [`Log`]: each engine write is one of its entries (a
//! *record*, `record`), so a write is atomic, ordered and made durable by
//! the log's own machinery, and recovery yields a prefix of the writes as
//! it does for any log. Over it, the memtable (`memtable`) keeps every
//! group's entries by position, built by one `apply` when a record is
//! written and when it is read back at open.

mod batch;
pub(crate) mod group;
pub(crate) mod memtable;
mod reclaim;
pub(crate) mod record;
pub(crate) mod replayer;
#[cfg(test)]
mod tests;

pub use self::batch::EngineBatch;
pub use self::reclaim::{Laggard, Reclaimed};

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use prost::bytes::Bytes;

use self::group::Group;
use self::memtable::Groups;
use self::replayer::Replayer;
use crate::durability::Ticket;
use crate::error::{Damage, Error, Result};
use crate::format::batch::WriteBatch;
use crate::format::proto;
use crate::log::entry::Entry;
use crate::log::Log;
use crate::options::Options;

/// The state blob that marks a log directory as an engine's stream.
pub(crate) const IDENTITY: &[u8] = b"raftwal engine, format 1";

/// At open, records are read back in windows of about this many bytes.
const REPLAY_WINDOW: u64 = 8 << 20;

/// Many Raft groups in one directory: one stream of writes, one
/// `fdatasync` per round for all of them, one set of background threads.
///
/// Each group has its own entries (indexes from its first index), its own
/// state blob, and its own compaction; an [`EngineBatch`] changes any
/// number of groups in one atomic write. A group exists from its first
/// write until a write removes it; reads of a group the engine does not
/// hold see an empty one (first index 1, last index 0, no state).
///
/// The engine's directory is a [`Log`] directory whose entries are the
/// engine's records (see `docs/ENGINE.md`); [`Options`] apply to it as to
/// any log, and `max_entry_size` bounds a whole batch.
///
/// ```
/// # fn main() -> raftwal::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let engine = raftwal::Engine::open(dir.path(), raftwal::Options::default())?;
/// let mut batch = raftwal::EngineBatch::new();
/// for group in 1..=3 {
///     batch.group(group).push(1, 1, b"hello")?;
/// }
/// engine.write(&mut batch)?;
/// drop(engine);
///
/// let engine = raftwal::Engine::open(dir.path(), raftwal::Options::default())?;
/// assert_eq!(engine.groups(), vec![1, 2, 3]);
/// assert_eq!(engine.get_entry(2, 1)?.data, &b"hello"[..]);
/// # Ok(()) }
/// ```
pub struct Engine {
    log: Log,
    groups: RwLock<Groups>,
    /// Serialises writers from their check to the record's placement, so
    /// that each batch is checked against the groups it will change.
    writing: Mutex<()>,
    /// Groups a `RaftLogStore` is open on (see [`GroupClaim`]).
    claimed: Mutex<HashSet<u64>>,
}

/// A group a `RaftLogStore` is open on: while it lives, no other store
/// opens the group (two would each keep their own idea of its state).
pub(crate) struct GroupClaim {
    engine: Arc<Engine>,
    group: u64,
}

impl GroupClaim {
    /// The engine.
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The group.
    pub(crate) fn group(&self) -> u64 {
        self.group
    }
}

impl Drop for GroupClaim {
    fn drop(&mut self) {
        self.engine.claimed.lock().remove(&self.group);
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.log.dir())
            .field("groups", &self.groups.read().ids().count())
            .finish()
    }
}

impl Engine {
    /// Opens the engine in `dir`, creating it if the directory holds no
    /// log, and rebuilds every group from the records. Fails with
    /// [`Error::InvalidArgument`] if `dir` holds a log that is not an
    /// engine's (a `RaftLogStore`'s, say), and with [`Error::Corruption`]
    /// (of kind [`Damage::Record`]) if a record does not apply.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Engine> {
        let log = Log::open(dir, opts)?;
        match log.state() {
            Some(s) if s == IDENTITY => {}
            None if log.is_empty() => log.set_state(Bytes::from_static(IDENTITY))?,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "{} holds a log that is not an engine's",
                    log.dir().display()
                )))
            }
        }
        let groups = replay(&log)?;
        Ok(Engine {
            log,
            groups: RwLock::new(groups),
            writing: Mutex::new(()),
            claimed: Mutex::new(HashSet::new()),
        })
    }

    /// An empty batch for [`Engine::write`] ([`EngineBatch::new`]).
    pub fn batch(&self) -> EngineBatch {
        EngineBatch::new()
    }

    /// Writes `batch` as one record and returns once the sync policy is
    /// satisfied (under `SyncPolicy::Always`, once it is durable). A part
    /// that does not continue its group fails the whole batch with
    /// [`Error::Group`], and nothing is written. The batch is left as it
    /// was (its frames sealed): clear it to reuse it.
    pub fn write(&self, batch: &mut EngineBatch) -> Result<()> {
        let ticket = self.issue(batch, false)?;
        self.log.inner.after_record(&ticket, false)
    }

    /// [`Engine::write`], then durable whatever the sync policy (for
    /// changes that must be: compactions, resets, removals).
    pub(crate) fn write_durable(&self, batch: &mut EngineBatch) -> Result<()> {
        self.write(batch)?;
        match self.log.options().sync {
            crate::options::SyncPolicy::Always => Ok(()),
            _ => self.sync(),
        }
    }

    /// Issues `batch` as [`Engine::write`] does, without waiting: the
    /// returned [`Ticket`] says when it is durable, and the log's
    /// background syncer makes it so.
    pub fn submit(&self, batch: &mut EngineBatch) -> Result<Ticket> {
        let ticket = self.issue(batch, true)?;
        self.log.inner.after_record(&ticket, true)?;
        Ok(ticket)
    }

    fn issue(&self, batch: &mut EngineBatch, stage: bool) -> Result<Ticket> {
        let _writing = self.writing.lock();
        self.issue_locked(batch, stage)
    }

    /// [`Engine::issue`] for a caller that holds the writer mutex.
    pub(super) fn issue_locked(&self, batch: &mut EngineBatch, stage: bool) -> Result<Ticket> {
        if batch.is_empty() {
            return Err(Error::InvalidArgument("an empty engine batch".into()));
        }
        {
            let groups = self.groups.read();
            for (op, part) in batch.parts_mut() {
                op.compact_term = compaction_term(op, part, groups.get(op.group));
            }
        }
        let (len, parts) = batch.layout()?;
        self.groups.read().check(&parts)?;
        let batch = &*batch;
        let mut placed = Ok(());
        let ticket = self.log.inner.append_record(
            len,
            |buf| batch.write_into(buf),
            stage,
            |at| placed = self.groups.write().apply(&parts, at, None),
        )?;
        if let Err(e) = placed {
            // Written, but not applied: the memtable no longer matches the
            // disk. Refuse every later write; a reopen rebuilds it.
            let msg = format!("an engine record was written but not applied: {e}");
            self.log.poison_because(msg.clone());
            return Err(Error::internal(msg));
        }
        Ok(ticket)
    }

    /// The number of segment files the engine's stream holds.
    pub fn segments(&self) -> usize {
        self.log.segments().len()
    }

    /// Makes every write issued so far durable (the log's
    /// [`Log::sync`]).
    pub fn sync(&self) -> Result<()> {
        self.log.sync()
    }

    /// Claims group `group` for a store; [`Error::InvalidArgument`] while
    /// another store holds it.
    pub(crate) fn claim(self: &Arc<Self>, group: u64) -> Result<GroupClaim> {
        if !self.claimed.lock().insert(group) {
            return Err(Error::InvalidArgument(format!(
                "group {group} of {} is open in another store",
                self.dir().display()
            )));
        }
        Ok(GroupClaim {
            engine: Arc::clone(self),
            group,
        })
    }

    /// The stream the records are in.
    pub(crate) fn stream(&self) -> &Log {
        &self.log
    }

    /// The engine's directory.
    pub fn dir(&self) -> &Path {
        self.log.dir()
    }

    /// The groups the engine holds, in increasing order.
    pub fn groups(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.groups.read().ids().collect();
        ids.sort_unstable();
        ids
    }

    /// Whether a write made group `group` and none removed it since.
    pub fn contains_group(&self, group: u64) -> bool {
        self.groups.read().contains(group)
    }

    /// Group `group`'s first index (`last_index + 1` when it holds no
    /// entry; 1 for a group the engine does not hold).
    pub fn first_index(&self, group: u64) -> u64 {
        self.groups.read().get(group).first_index()
    }

    /// Group `group`'s last index (0 for a group the engine does not hold).
    pub fn last_index(&self, group: u64) -> u64 {
        self.groups.read().get(group).last_index()
    }

    /// The term of group `group`'s entry `index`, for `first_index - 1 ..=
    /// last_index` ([`Error::Compacted`] below, [`Error::Unavailable`]
    /// above).
    pub fn term(&self, group: u64, index: u64) -> Result<u64> {
        self.groups.read().get(group).term(index)
    }

    /// Group `group`'s newest state blob.
    pub fn state(&self, group: u64) -> Option<Bytes> {
        self.groups
            .read()
            .get(group)
            .state()
            .map(Bytes::copy_from_slice)
    }

    /// Group `group`'s entry `index`, read from disk and verified.
    pub fn get_entry(&self, group: u64, index: u64) -> Result<Entry> {
        let end = index.checked_add(1).ok_or(Error::Unavailable {
            index,
            last_index: self.last_index(group),
        })?;
        let mut v = self.entries(group, index, end, None)?;
        v.pop()
            .ok_or_else(|| Error::internal(format!("group {group} read no entry {index}")))
    }

    /// Group `group`'s entries `lo..hi`, at most `max_bytes` of data
    /// (always at least one entry), read from disk and verified.
    /// [`Error::Compacted`] if `lo` is below the first index,
    /// [`Error::Unavailable`] if `hi` is past the last index + 1.
    pub fn entries(
        &self,
        group: u64,
        lo: u64,
        hi: u64,
        max_bytes: Option<u64>,
    ) -> Result<Vec<Entry>> {
        let groups = self.groups.read();
        let g = groups.get(group);
        if lo > hi {
            return Err(Error::InvalidArgument(format!(
                "range {lo}..{hi} is inverted"
            )));
        }
        if lo < g.first_index() {
            return Err(Error::Compacted {
                index: lo,
                first_index: g.first_index(),
            });
        }
        if hi > g.last_index() + 1 {
            return Err(Error::Unavailable {
                index: hi - 1,
                last_index: g.last_index(),
            });
        }
        let max = max_bytes.unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity((hi - lo).min(4096) as usize);
        let mut size = 0u64;
        for index in lo..hi {
            let (sequence, loc) = g.locate(index).ok_or_else(|| {
                Error::internal(format!("group {group} has no place for {index}"))
            })?;
            let buf = self
                .log
                .inner
                .read_at(sequence, u64::from(loc.offset), loc.len as usize)?
                .ok_or_else(|| {
                    Error::internal(format!(
                        "group {group} entry {index} is in a removed segment"
                    ))
                })?;
            let (term, data) = record::read_entry(group, index, buf).map_err(|why| {
                let path = self.log.inner.segment_path(sequence).unwrap_or_default();
                Error::corruption(Damage::Frame, path, u64::from(loc.offset), why)
            })?;
            size = size.saturating_add(data.len() as u64);
            if index > lo && size > max {
                break;
            }
            out.push(Entry { index, term, data });
        }
        Ok(out)
    }

    /// Bytes of memory the engine's indexes take: the stream's (8 bytes
    /// per record) and the groups' (8 bytes per entry, term runs, state
    /// blobs, and each group's slot).
    pub fn index_memory_bytes(&self) -> usize {
        self.log.index_memory_bytes() + self.groups.read().memory_bytes()
    }
}

/// The term a part's compaction names: of the entry before its index, in
/// the part's own entries, at its reset, or in the group. 0 when there is
/// none (the check then refuses the part, or it compacts nothing).
fn compaction_term(op: &proto::GroupOp, part: &WriteBatch, group: &Group) -> u64 {
    let Some(before) = op.compact_to.checked_sub(1) else {
        return 0;
    };
    if let Some(e) = part.entries.iter().find(|e| e.index == before) {
        return e.term;
    }
    if op.reset_to != 0 {
        return if before + 1 == op.reset_to {
            op.reset_term
        } else {
            0
        };
    }
    group.term(before).unwrap_or(0)
}

/// Rebuilds every group from the stream's records, oldest first. A stream
/// whose head was reclaimed (its first index past 1) holds groups whose
/// oldest records are gone (see `memtable::Replay`).
fn replay(log: &Log) -> Result<Groups> {
    let (mut next, end) = (log.first_index(), log.last_index() + 1);
    let mut r = Replayer::new(next > 1);
    let path_of = |sequence| log.inner.segment_path(sequence).unwrap_or_default();
    while next < end {
        for (at, data) in log.inner.read_records(next, end, REPLAY_WINDOW)? {
            r.record(at, &data, || path_of(at.sequence))?;
            next = at.index + 1;
        }
    }
    r.finish(path_of)
}
