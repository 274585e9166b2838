//! The engine's memtable: every group (`group`), and the rules for
//! changing one. One `check` says whether a part continues its group and
//! one `apply` applies it, for a batch's parts as they are written and for
//! the records read back at open. A replay of a stream whose head was
//! reclaimed ([`Replay`]) meets groups whose oldest records are gone: their
//! first surviving part may start them anywhere, until the record that
//! set where they start (which a reclaim keeps) names it.

use std::collections::HashMap;

use super::group::Group;
use super::record::Part;
use crate::error::{Error, Result};
use crate::format::index::{misfit, Loc, Misfit};
use crate::log::write::record::RecordAt;

/// Whether `part` continues group `g` (see `GroupOp` for the order its
/// operations apply in). A compaction's term must be filled in.
fn check(g: &Group, part: &Part) -> Result<()> {
    let op = &part.op;
    if op.remove {
        let alone = op.reset_to == 0
            && op.truncate_from == 0
            && op.compact_to == 0
            && part.entries.is_empty()
            && part.state.is_none();
        return match alone {
            true => Ok(()),
            false => Err(Error::InvalidArgument(
                "a group's removal cannot share its part with other changes".into(),
            )),
        };
    }
    let (mut first, mut last) = (g.first, g.last);
    let mut last_term = g.term(last).unwrap_or(0);
    if op.reset_to != 0 {
        (first, last, last_term) = (op.reset_to, op.reset_to - 1, op.reset_term);
    }
    if op.truncate_from != 0 {
        let t = op.truncate_from;
        if t < first {
            return Err(Error::Compacted {
                index: t,
                first_index: first,
            });
        }
        if t > last + 1 {
            return Err(Error::Unavailable {
                index: t,
                last_index: last,
            });
        }
        if t <= last {
            // Within the entries kept before this part: they are ours.
            last_term = if op.reset_to != 0 {
                last_term
            } else {
                g.term(t - 1)?
            };
            last = t - 1;
        }
    }
    let before = (last, last_term);
    for &(index, term, _) in &part.entries {
        match misfit(last, last_term, index, term) {
            None => (last, last_term) = (index, term),
            Some(Misfit::Term { prev }) => {
                return Err(Error::InvalidArgument(format!(
                    "entry {index} has term {term} below the term {prev} before it; terms never decrease in a Raft log"
                )))
            }
            Some(Misfit::Index { .. } | Misfit::Max) => {
                return Err(Error::NonContiguous {
                    got: index,
                    last_index: last,
                })
            }
        }
    }
    let c = op.compact_to;
    if c != 0 && c >= first {
        if c > last + 1 {
            return Err(Error::Unavailable {
                index: c,
                last_index: last,
            });
        }
        // The term of `c - 1`: in this part's entries, or before them.
        let want = match part.entries.iter().find(|e| e.0 == c - 1) {
            Some(e) => e.1,
            None if c - 1 == before.0 => before.1,
            None if op.reset_to != 0 && c - 1 < op.reset_to => op.reset_term,
            None => g.term(c - 1)?,
        };
        if op.compact_term != want {
            return Err(Error::InvalidArgument(format!(
                "compaction to {c} names term {} where entry {} has term {want}",
                op.compact_term,
                c - 1
            )));
        }
    }
    Ok(())
}

/// Applies a checked part to `g`, whose frames are at `at` (relative
/// offsets made absolute with its data offset).
fn apply(g: &mut Group, part: &Part, at: RecordAt) -> Result<()> {
    let op = &part.op;
    if op.reset_to != 0 {
        g.restart(op.reset_to, op.reset_term);
        g.start_seq = at.sequence;
    }
    if op.truncate_from != 0 && op.truncate_from <= g.last {
        g.cut_from(op.truncate_from);
    }
    for &(index, term, loc) in &part.entries {
        let offset = u32::try_from(at.data_offset + u64::from(loc.offset))
            .map_err(|_| Error::internal(format!("record {} past 4 GiB", at.index)))?;
        g.push(index, term, at.sequence, Loc { offset, ..loc });
    }
    if let Some(s) = &part.state {
        g.state = Some(s.to_vec().into_boxed_slice());
        g.state_seq = at.sequence;
    }
    if op.compact_to != 0 && op.compact_to >= g.first {
        g.compact_to(op.compact_to, op.compact_term);
        g.start_seq = at.sequence;
    }
    Ok(())
}

/// Applies `part` to `g` in a replay of a reclaimed stream, where `g`'s
/// records before the stream's head are gone. What is lost is a gap below
/// the entries the replay holds: from `claim` (the first index the newest
/// compaction or reset seen so far set, with the term before it; 1 and 0
/// before any) up to `g.first`. A part that reaches into the gap or past
/// the replayed entries restarts the group there: the entries it drops lay
/// below missing ones, so a later compaction or reset must make them dead
/// (checked at the end, [`Replay::finish`]: `claim` must meet `g.first`).
/// Live entries are never in the gap: a group's oldest live entry keeps its
/// segment, and so does the record that set where it starts.
fn apply_partial(g: &mut Group, claim: &mut (u64, u64), part: &Part, at: RecordAt) -> Result<()> {
    let op = &part.op;
    let bad = |why: String| Err(Error::InvalidArgument(why));
    if op.reset_to != 0 {
        g.restart(op.reset_to, op.reset_term);
        *claim = (op.reset_to, op.reset_term);
        g.start_seq = at.sequence;
    }
    let t = op.truncate_from;
    if t != 0 && (t < g.first || t > g.last + 1) {
        g.restart(t, 0);
    } else if t != 0 && t <= g.last {
        g.cut_from(t);
    }
    let mut last_term = if g.last >= g.first {
        g.term(g.last)?
    } else {
        0
    };
    if let Some(&(k, _, _)) = part.entries.first() {
        if k > g.last + 1 {
            g.restart(k, 0);
            last_term = 0;
        } else if k <= g.last {
            return bad(format!(
                "entry {k} comes again after entry {} without a cut",
                g.last
            ));
        }
    }
    for &(index, term, loc) in &part.entries {
        // `u64::MAX` would leave the group no next index.
        if index != g.last + 1 || index == u64::MAX || term < last_term {
            return bad(format!(
                "entry {index} of term {term} does not follow the part's entries"
            ));
        }
        let offset = u32::try_from(at.data_offset + u64::from(loc.offset))
            .map_err(|_| Error::internal(format!("record {} past 4 GiB", at.index)))?;
        g.push(index, term, at.sequence, Loc { offset, ..loc });
        last_term = term;
    }
    if let Some(s) = &part.state {
        g.state = Some(s.to_vec().into_boxed_slice());
        g.state_seq = at.sequence;
    }
    let c = op.compact_to;
    if c != 0 && c >= g.first {
        if c <= g.last + 1 {
            g.compact_to(c, op.compact_term);
        } else {
            g.restart(c, op.compact_term);
        }
        *claim = (c, op.compact_term);
        g.start_seq = at.sequence;
    } else if c != 0 && c >= claim.0 {
        // Inside the gap: what it says stands, the gap above it stays.
        *claim = (c, op.compact_term);
    }
    if claim.0 > g.first {
        return bad(format!(
            "group starts at {} by its records, below its entries from {}",
            claim.0, g.first
        ));
    }
    if claim.0 == g.first {
        g.prev_term = claim.1;
    }
    Ok(())
}

/// Every group the engine holds.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    /// Boxed: a map slot is then 16 bytes, and an idle group's whole cost
    /// stays within 256 bytes (the map's spare slots included).
    map: HashMap<u64, Box<Group>>,
}

/// An untouched group, for lookups of groups the engine does not hold.
static EMPTY: std::sync::LazyLock<Group> = std::sync::LazyLock::new(Group::default);

/// A replay's view of groups whose oldest records are gone (see the
/// module documentation and [`apply_partial`]).
#[derive(Debug, Default)]
pub(crate) struct Replay {
    /// The stream's head was reclaimed.
    partial: bool,
    /// Per group met in a partial replay: where its records say it starts,
    /// and the term before.
    claims: HashMap<u64, (u64, u64)>,
}

impl Replay {
    /// A replay of a stream whose head was reclaimed (`partial`) or not.
    pub(crate) fn new(partial: bool) -> Replay {
        Replay {
            partial,
            claims: HashMap::new(),
        }
    }

    /// After the last record: every group's records reach its entries.
    pub(crate) fn finish(&self, groups: &Groups) -> std::result::Result<(), String> {
        let mut gaps: Vec<(u64, u64, u64)> = self
            .claims
            .iter()
            .filter_map(|(&id, &(claim, _))| {
                let first = groups.map.get(&id)?.first;
                (claim != first).then_some((id, claim, first))
            })
            .collect();
        gaps.sort_unstable();
        match gaps.first() {
            None => Ok(()),
            Some((id, claim, first)) => Err(format!(
                "group {id} holds entries from {claim}, but its records hold them only from {first}"
            )),
        }
    }
}

impl Groups {
    /// Group `group`, or an untouched one.
    pub(crate) fn get(&self, group: u64) -> &Group {
        self.map.get(&group).map_or(&EMPTY, |g| g)
    }

    /// Whether a write has made group `group` (and none removed it since).
    pub(crate) fn contains(&self, group: u64) -> bool {
        self.map.contains_key(&group)
    }

    /// The groups held, in no order.
    pub(crate) fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.map.keys().copied()
    }

    /// The groups held, with each.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &Group)> + '_ {
        self.map.iter().map(|(&id, g)| (id, &**g))
    }

    /// Whether every part continues its group; the error names the group.
    pub(crate) fn check(&self, parts: &[Part]) -> Result<()> {
        for p in parts {
            check(self.get(p.op.group), p).map_err(|e| in_group(p, e))?;
        }
        Ok(())
    }

    /// Checks and applies the parts of the record at `at`, in order (a
    /// batch holds one part per group, so no part depends on another).
    /// `replay` is given when the record is read back at open.
    pub(crate) fn apply(
        &mut self,
        parts: &[Part],
        at: RecordAt,
        replay: Option<&mut Replay>,
    ) -> Result<()> {
        let Some(r) = replay.filter(|r| r.partial) else {
            self.check(parts)?;
            for p in parts {
                self.apply_part(p, at)?;
            }
            return Ok(());
        };
        for p in parts {
            let id = p.op.group;
            if p.op.remove {
                self.map.remove(&id);
                r.claims.remove(&id);
                continue;
            }
            let claim = r.claims.entry(id).or_insert((1, 0));
            let g = self
                .map
                .entry(id)
                .or_insert_with(|| Box::new(Group::made_in(at.sequence)));
            apply_partial(g, claim, p, at).map_err(|e| in_group(p, e))?;
        }
        Ok(())
    }

    fn apply_part(&mut self, p: &Part, at: RecordAt) -> Result<()> {
        if p.op.remove {
            self.map.remove(&p.op.group);
            return Ok(());
        }
        // Made by this record, it needs it until another sets its start.
        let g = self
            .map
            .entry(p.op.group)
            .or_insert_with(|| Box::new(Group::made_in(at.sequence)));
        apply(g, p, at)
    }

    /// Bytes of memory the memtable takes: every group's index and state,
    /// and the map's slots.
    pub(crate) fn memory_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(u64, Box<Group>)>() + 1;
        let group = std::mem::size_of::<Group>();
        self.map.capacity() * slot
            + self
                .map
                .values()
                .map(|g| group + g.memory_bytes())
                .sum::<usize>()
    }
}

fn in_group(p: &Part, e: Error) -> Error {
    Error::Group {
        group: p.op.group,
        source: Box::new(e),
    }
}
