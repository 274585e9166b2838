//! The workloads of the crash tests: seeded random sequences of
//! `RaftLogStore` operations (appends, conflicting appends, hard states,
//! commits, conf states, compactions, created and installed snapshots),
//! generated together with the store's state after each operation, and a
//! way to read everything a store shows back for comparison.
//!
//! A crash during operation `k` must leave, after reopening, exactly the
//! state after operation `k - 1` or after operation `k`: every operation of
//! `RaftLogStore` is atomic across a crash (see `src/raft/mod.rs`).
#![allow(dead_code)]

use std::fmt;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, Storage};
use raftwal::{Error, RaftLogStore};

use crate::fs_sim::{Choose, Rng};

/// Everything a `RaftLogStore` shows.
#[derive(Clone, PartialEq, Default)]
pub struct StoreState {
    /// `first_index()`.
    pub first: u64,
    /// `term(first - 1)`.
    pub prev_term: u64,
    /// Entries `first..=last`.
    pub entries: Vec<Entry>,
    pub hs: HardState,
    pub cs: ConfState,
    /// The stored snapshot: `(index, term, conf state, data)`.
    pub snap: Option<(u64, u64, ConfState, Vec<u8>)>,
}

impl fmt::Debug for StoreState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ents: Vec<String> = self
            .entries
            .iter()
            .map(|e| format!("{}/{}:{}b", e.index, e.term, e.data.len()))
            .collect();
        f.debug_struct("StoreState")
            .field("first", &self.first)
            .field("prev_term", &self.prev_term)
            .field("entries", &ents)
            .field("hs", &(self.hs.term, self.hs.vote, self.hs.commit))
            .field("voters", &self.cs.voters)
            .field(
                "snap",
                &self
                    .snap
                    .as_ref()
                    .map(|s| (s.0, s.1, s.2.voters.clone(), s.3.len())),
            )
            .finish()
    }
}

impl StoreState {
    /// An empty store.
    pub fn new() -> StoreState {
        StoreState {
            first: 1,
            ..Default::default()
        }
    }

    pub fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }

    /// The term of `index` (`first - 1 ..= last`).
    pub fn term(&self, index: u64) -> u64 {
        if index + 1 == self.first {
            self.prev_term
        } else {
            self.entries[(index - self.first) as usize].term
        }
    }

    /// The largest term anywhere in the state.
    pub fn max_term(&self) -> u64 {
        let t = self.entries.last().map_or(self.prev_term, |e| e.term);
        let s = self.snap.as_ref().map_or(0, |s| s.1);
        t.max(self.hs.term).max(s).max(self.prev_term)
    }

    /// Applies `op` as `RaftLogStore` does.
    pub fn apply(&mut self, op: &StoreOp) {
        match op {
            StoreOp::Persist { entries, hs, cs } => {
                if let Some(e) = entries.first() {
                    self.entries.truncate((e.index - self.first) as usize);
                    self.entries.extend(entries.iter().cloned());
                }
                if let Some(hs) = hs {
                    self.hs = hs.clone();
                }
                if let Some(cs) = cs {
                    self.cs = cs.clone();
                }
            }
            StoreOp::CommitTo(i) => self.hs.commit = *i,
            StoreOp::Compact(i) => {
                if *i > self.first {
                    self.prev_term = self.term(i - 1);
                    self.entries.drain(..(i - self.first) as usize);
                    self.first = *i;
                }
            }
            StoreOp::CreateSnapshot { index, cs, data } => {
                let term = self.term(*index);
                self.snap = Some((*index, term, cs.clone(), data.clone()));
            }
            StoreOp::ApplySnapshot {
                index,
                term,
                cs,
                data,
            } => {
                self.hs.term = self.hs.term.max(*term);
                self.hs.commit = *index;
                self.cs = cs.clone();
                self.snap = Some((*index, *term, cs.clone(), data.clone()));
                self.first = index + 1;
                self.prev_term = *term;
                self.entries.clear();
            }
        }
    }
}

/// One operation on a store.
#[derive(Clone, PartialEq)]
pub enum StoreOp {
    /// `persist(entries, hs, cs)`: an append (cutting a conflicting suffix
    /// when the first entry is not past the last) and the hard and conf
    /// states, atomically.
    Persist {
        entries: Vec<Entry>,
        hs: Option<HardState>,
        cs: Option<ConfState>,
    },
    CommitTo(u64),
    Compact(u64),
    CreateSnapshot {
        index: u64,
        cs: ConfState,
        data: Vec<u8>,
    },
    ApplySnapshot {
        index: u64,
        term: u64,
        cs: ConfState,
        data: Vec<u8>,
    },
}

impl fmt::Debug for StoreOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreOp::Persist { entries, hs, cs } => write!(
                f,
                "Persist({:?}, hs {:?}, cs {:?})",
                entries
                    .iter()
                    .map(|e| (e.index, e.term))
                    .collect::<Vec<_>>(),
                hs.as_ref().map(|h| (h.term, h.vote, h.commit)),
                cs.as_ref().map(|c| c.voters.clone())
            ),
            StoreOp::CommitTo(i) => write!(f, "CommitTo({i})"),
            StoreOp::Compact(i) => write!(f, "Compact({i})"),
            StoreOp::CreateSnapshot { index, data, .. } => {
                write!(f, "CreateSnapshot({index}, {}b)", data.len())
            }
            StoreOp::ApplySnapshot {
                index, term, data, ..
            } => write!(f, "ApplySnapshot({index}, {term}, {}b)", data.len()),
        }
    }
}

impl StoreOp {
    /// Runs the operation on `store`.
    pub fn run(&self, store: &RaftLogStore) -> Result<(), Error> {
        match self {
            StoreOp::Persist { entries, hs, cs } => {
                store.persist(entries, hs.as_ref(), cs.as_ref())
            }
            StoreOp::CommitTo(i) => store.commit_to(*i),
            StoreOp::Compact(i) => store.compact(*i),
            StoreOp::CreateSnapshot { index, cs, data } => {
                store.create_snapshot(*index, cs.clone(), data.clone())
            }
            StoreOp::ApplySnapshot {
                index,
                term,
                cs,
                data,
            } => {
                let mut s = Snapshot::default();
                s.mut_metadata().index = *index;
                s.mut_metadata().term = *term;
                s.mut_metadata().set_conf_state(cs.clone());
                s.data = data.clone().into();
                store.apply_snapshot(s)
            }
        }
    }
}

/// A raft entry.
pub fn raft_entry(index: u64, term: u64, data: Vec<u8>) -> Entry {
    Entry {
        index,
        term,
        data: data.into(),
        ..Default::default()
    }
}

fn conf<C: Choose>(rng: &mut C) -> ConfState {
    let n = rng.range(1, 5);
    let learners = if rng.chance(1, 3) {
        vec![n + 1]
    } else {
        Vec::new()
    };
    ConfState {
        voters: (1..=n).collect(),
        learners,
        ..Default::default()
    }
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

/// The conf state and data of the snapshot at `(index, term)`. In Raft
/// the index and term of a snapshot determine what it holds (the state
/// machine after the same log prefix), and `RaftLogStore` relies on it: a
/// snapshot file is named by its index and term, and writing one at the
/// same index and term replaces the file before the state names it.
pub fn snapshot_content(index: u64, term: u64) -> (ConfState, Vec<u8>) {
    let mut rng = Rng::new(index.wrapping_mul(0x1_0000_0001) ^ term);
    let cs = conf(&mut rng);
    let len = rng.below(200) as usize;
    (cs, rng.bytes(len))
}

/// How big and how varied a workload is.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Operations in the workload.
    pub ops: usize,
    /// The largest entry data.
    pub max_data: u64,
    /// The largest number of entries in one append.
    pub max_batch: u64,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            ops: 30,
            max_data: 160,
            max_batch: 4,
        }
    }
}

/// A random valid workload from `seed`: the operations, and the state
/// before the first (`states[0]`) and after each (`states[k + 1]`).
pub fn workload(seed: u64, shape: Shape) -> (Vec<StoreOp>, Vec<StoreState>) {
    let mut rng = Rng::new(seed);
    let mut m = StoreState::new();
    let mut ops = Vec::with_capacity(shape.ops);
    let mut states = vec![m.clone()];
    while ops.len() < shape.ops {
        let Some(op) = next_op(&mut rng, &m, shape) else {
            continue;
        };
        m.apply(&op);
        ops.push(op);
        states.push(m.clone());
    }
    (ops, states)
}

/// A random operation that is valid on a store in state `m`, or `None`
/// when the kind drawn does not apply.
pub fn next_op<C: Choose>(rng: &mut C, m: &StoreState, shape: Shape) -> Option<StoreOp> {
    let (first, last) = (m.first, m.last());
    let commit = m.hs.commit;
    let entries = |rng: &mut C, from: u64, mut term: u64| -> Vec<Entry> {
        let n = rng.range(1, shape.max_batch);
        (from..from + n)
            .map(|i| {
                if rng.chance(1, 8) {
                    term += 1;
                }
                let len = rng.below(shape.max_data + 1) as usize;
                raft_entry(i, term, rng.bytes(len))
            })
            .collect()
    };
    Some(match rng.below(100) {
        // An append, sometimes with a hard state in the same Ready.
        0..=44 => {
            let es = entries(rng, last + 1, m.term(last).max(m.hs.term));
            let new_last = last + es.len() as u64;
            let hs = rng.chance(1, 2).then(|| {
                let c = rng.range(commit, new_last);
                hard_state(m.max_term().max(es[es.len() - 1].term), 1, c)
            });
            StoreOp::Persist {
                entries: es,
                hs,
                cs: None,
            }
        }
        // A new leader overrules an uncommitted suffix.
        45..=59 => {
            let lo = first.max(commit + 1);
            if lo > last {
                return None;
            }
            let at = rng.range(lo, last);
            let term = m.max_term() + 1;
            let es = entries(rng, at, term);
            let hs = rng
                .chance(1, 2)
                .then(|| hard_state(term, rng.range(1, 3), commit));
            StoreOp::Persist {
                entries: es,
                hs,
                cs: None,
            }
        }
        60..=69 => {
            let term = m.hs.term.max(m.max_term()) + rng.below(2);
            let c = rng.range(commit, last.max(commit));
            StoreOp::Persist {
                entries: Vec::new(),
                hs: Some(hard_state(term, rng.range(0, 3), c)),
                cs: None,
            }
        }
        70..=74 => {
            if last <= commit {
                return None;
            }
            StoreOp::CommitTo(rng.range(commit, last))
        }
        75..=77 => StoreOp::Persist {
            entries: Vec::new(),
            hs: None,
            cs: Some(conf(rng)),
        },
        78..=87 => {
            let hi = commit.min(last) + 1;
            if hi <= first {
                return None;
            }
            StoreOp::Compact(rng.range(first + 1, hi))
        }
        88..=93 => {
            let lo = m
                .snap
                .as_ref()
                .map_or(1, |s| s.0 + 1)
                .max(first.saturating_sub(1))
                .max(1);
            let hi = commit.min(last);
            if lo > hi {
                return None;
            }
            let index = rng.range(lo, hi);
            let (cs, data) = snapshot_content(index, m.term(index));
            StoreOp::CreateSnapshot { index, cs, data }
        }
        _ => {
            let lo = first.max(commit).max(1);
            let index = rng.range(lo, last + 3);
            let term = m
                .max_term()
                .max(if index <= last { m.term(index) } else { 0 })
                + rng.below(2);
            let (cs, data) = snapshot_content(index, term);
            StoreOp::ApplySnapshot {
                index,
                term,
                cs,
                data,
            }
        }
    })
}

/// Reads everything `store` shows, checking that its answers agree with
/// one another (terms against entries, snapshot against its metadata).
pub fn observe(store: &RaftLogStore) -> Result<StoreState, String> {
    let e = |what: &str, err: &dyn fmt::Display| format!("{what}: {err}");
    let first = store.first_index().map_err(|x| e("first_index", &x))?;
    let last = store.last_index().map_err(|x| e("last_index", &x))?;
    if last + 1 < first {
        return Err(format!("last index {last} below first index {first} - 1"));
    }
    let prev_term = store
        .term(first - 1)
        .map_err(|x| e("term(first - 1)", &x))?;
    let entries = store
        .entries(first, last + 1, None, GetEntriesContext::empty(false))
        .map_err(|x| e("entries", &x))?;
    if entries.len() as u64 != last + 1 - first {
        return Err(format!(
            "entries({first}, {}) returned {}",
            last + 1,
            entries.len()
        ));
    }
    for (k, en) in entries.iter().enumerate() {
        let i = first + k as u64;
        if en.index != i {
            return Err(format!("entry {i} has index {}", en.index));
        }
        let t = store.term(i).map_err(|x| e("term", &x))?;
        if t != en.term {
            return Err(format!(
                "term({i}) = {t} but the entry has term {}",
                en.term
            ));
        }
    }
    let rs = store.initial_state().map_err(|x| e("initial_state", &x))?;
    let snap = match store.snapshot_metadata() {
        None => None,
        Some(meta) => {
            let s = store.snapshot(0, 0).map_err(|x| e("snapshot", &x))?;
            if *s.get_metadata() != meta {
                return Err("snapshot() disagrees with snapshot_metadata()".into());
            }
            Some((
                meta.index,
                meta.term,
                meta.get_conf_state().clone(),
                s.data.to_vec(),
            ))
        }
    };
    Ok(StoreState {
        first,
        prev_term,
        entries,
        hs: rs.hard_state,
        cs: rs.conf_state,
        snap,
    })
}

/// Checks that `got` is one of `allowed` (with a readable message if not).
pub fn expect_one_of(
    got: &StoreState,
    allowed: &[&StoreState],
    context: &str,
) -> Result<(), String> {
    if allowed.contains(&got) {
        return Ok(());
    }
    let mut msg = format!("{context}\n  got:      {got:?}\n");
    for a in allowed {
        msg.push_str(&format!("  expected: {a:?}\n"));
    }
    Err(msg)
}

/// An append of one entry after everything in `m`, with a hard state: the
/// probe that a reopened store accepts writes.
pub fn probe_op(m: &StoreState) -> StoreOp {
    let t = m.max_term() + 1;
    let i = m.last() + 1;
    StoreOp::Persist {
        entries: vec![raft_entry(i, t, format!("probe {i}/{t}").into_bytes())],
        hs: Some(hard_state(t, 1, m.hs.commit)),
        cs: None,
    }
}
