//! [`EngineBatch`]: the parts of many groups, written as one record with one
//! `write` and made durable with one `fdatasync`, atomically.

use std::collections::HashMap;

use prost::bytes::Bytes;
use prost::Message;

use super::record::{group_salt, Part, GROUP_FRAME_SALT};
use crate::error::{Error, Result};
use crate::format::batch::WriteBatch;
use crate::format::frame::{self, FrameType};
use crate::format::index::Loc;
use crate::format::proto;

/// Changes to many groups, written by [`Engine::write`](crate::Engine::write)
/// as one record: one `write`, one `fdatasync` under a syncing policy, and
/// after a crash all of it or none of it.
///
/// Each group has one part: a [`WriteBatch`] ([`EngineBatch::group`]:
/// entries, a conflict cut, a state blob) and, beside it, a reset (a
/// snapshot installed) and a compaction, or else the group's removal, which
/// shares its part with nothing. A part applies in this order: removal;
/// reset; the cut; the entries; the state; the compaction.
///
/// ```
/// # fn main() -> raftwal::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let engine = raftwal::Engine::open(dir.path(), raftwal::Options::default())?;
/// let mut batch = raftwal::EngineBatch::new();
/// batch.group(7).push(1, 1, b"seven's first")?;
/// batch.group(7).set_state(&b"hard state of 7"[..]);
/// batch.group(9).push(1, 1, b"nine's first")?;
/// engine.write(&mut batch)?; // one write, one fsync, both groups
/// assert_eq!(engine.last_index(7), 1);
/// assert_eq!(engine.get_entry(9, 1)?.data, &b"nine's first"[..]);
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct EngineBatch {
    parts: Vec<PartBuf>,
    /// Where each group's part is in `parts`.
    by_group: HashMap<u64, usize>,
}

/// One group's part as it is being built.
#[derive(Debug, Default)]
struct PartBuf {
    op: proto::GroupOp,
    batch: WriteBatch,
}

impl EngineBatch {
    /// An empty batch.
    pub fn new() -> EngineBatch {
        EngineBatch::default()
    }

    /// Empties the batch.
    pub fn clear(&mut self) {
        self.parts.clear();
        self.by_group.clear();
    }

    /// Whether the batch holds nothing to write.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The number of groups the batch changes.
    pub fn groups(&self) -> usize {
        self.parts.len()
    }

    fn part(&mut self, group: u64) -> &mut PartBuf {
        let parts = &mut self.parts;
        let k = *self.by_group.entry(group).or_insert_with(|| {
            parts.push(PartBuf {
                op: proto::GroupOp {
                    group,
                    ..Default::default()
                },
                batch: WriteBatch::new(),
            });
            parts.len() - 1
        });
        &mut self.parts[k]
    }

    /// Whether the batch has a part for group `group`.
    pub(crate) fn contains_group(&self, group: u64) -> bool {
        self.by_group.contains_key(&group)
    }

    /// Group `group`'s entries, cut and state in this batch (a part of its
    /// own, made on first use).
    pub fn group(&mut self, group: u64) -> &mut WriteBatch {
        &mut self.part(group).batch
    }

    /// Discards group `group`'s entries before `index` (its first index
    /// becomes `index`) after the part's entries are added. An index at or
    /// below the group's first index compacts nothing; one past its last
    /// index + 1 is refused by the write.
    pub fn compact(&mut self, group: u64, index: u64) {
        self.part(group).op.compact_to = index;
    }

    /// Discards every entry of group `group` before the part's own, which
    /// continue at `next_index` (at least 1), the entry before it having
    /// term `term`: a snapshot installed.
    pub fn reset(&mut self, group: u64, next_index: u64, term: u64) {
        let op = &mut self.part(group).op;
        op.reset_to = next_index;
        op.reset_term = term;
    }

    /// Removes group `group`: its entries and state are gone once the batch
    /// is written, and its next write starts it afresh. Nothing else may be
    /// in its part.
    pub fn remove_group(&mut self, group: u64) {
        self.part(group).op.remove = true;
    }

    /// The parts in order, with their group operation and batch, for the
    /// engine to check and complete (`compact_term`) before it encodes.
    pub(crate) fn parts_mut(&mut self) -> impl Iterator<Item = (&mut proto::GroupOp, &WriteBatch)> {
        self.parts.iter_mut().map(|p| (&mut p.op, &p.batch))
    }

    /// Seals every frame and lays the record out: its length, and each
    /// part as the memtable applies it (offsets relative to the record's
    /// start). [`EngineBatch::write_into`] then writes exactly these bytes.
    pub(crate) fn layout(&mut self) -> Result<(usize, Vec<Part>)> {
        let mut len = 0usize;
        let mut parts = Vec::with_capacity(self.parts.len());
        for p in &mut self.parts {
            p.op.truncate_from = p.batch.truncate_from.unwrap_or(0);
            let salt = group_salt(p.op.group);
            for e in &p.batch.entries {
                frame::seal(&mut p.batch.buf, e.at as usize, salt);
            }
            let head = frame::HEADER_LEN + p.op.encoded_len();
            let start = len + head;
            let entries = p
                .batch
                .entries
                .iter()
                .map(|e| {
                    let offset = u32::try_from(start + e.at as usize).map_err(|_| too_big())?;
                    Ok((e.index, e.term, Loc { offset, len: e.len }))
                })
                .collect::<Result<Vec<_>>>()?;
            len = start + p.batch.buf.len() + state_frame_len(p.batch.state.as_ref());
            parts.push(Part {
                op: p.op,
                entries,
                state: p.batch.state.clone(),
            });
        }
        if len > u32::MAX as usize {
            return Err(too_big());
        }
        Ok((len, parts))
    }

    /// Appends the record [`EngineBatch::layout`] laid out to `buf`.
    pub(crate) fn write_into(&self, buf: &mut Vec<u8>) {
        for p in &self.parts {
            frame::encode_message(buf, FrameType::Group, GROUP_FRAME_SALT, &p.op);
            buf.extend_from_slice(&p.batch.buf);
            if let Some(state) = &p.batch.state {
                let msg = proto::State {
                    data: state.clone(),
                };
                frame::encode_message(buf, FrameType::State, group_salt(p.op.group), &msg);
            }
        }
    }
}

/// The length of a part's state frame (0 without one).
fn state_frame_len(state: Option<&Bytes>) -> usize {
    state.map_or(0, |s| {
        let msg = proto::State { data: s.clone() };
        frame::HEADER_LEN + msg.encoded_len()
    })
}

fn too_big() -> Error {
    Error::InvalidArgument("an engine batch cannot exceed 4 GiB".into())
}
