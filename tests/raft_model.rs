//! A model test: random sequences of appends (with conflicts), Ready
//! batches, compactions, snapshots, hard states, conf states and reopens,
//! run against `RaftLogStore` and against raft-rs's `MemStorage` as the
//! oracle, comparing every observable after every step.
//!
//! Where MemStorage panics (an append below the first index or after a
//! gap, a compaction past `last_index + 1`, a read past the end) the model
//! expects an error and no change. Where MemStorage does less than the
//! `Storage` contract, the model keeps what it lacks next to it:
//! - the term of `first_index - 1` (MemStorage only remembers the term of
//!   its snapshot index);
//! - the stored snapshot, data included (MemStorage builds a data-less
//!   snapshot from the commit index on demand; it has no `create_snapshot`).

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::{Error as RaftError, GetEntriesContext, Storage, StorageError};
use raftwal::{Engine, Error, Options, RaftLogStore};

#[derive(Debug, Clone)]
enum Op {
    /// Append entries starting at a position picked from
    /// `first_index - 1 ..= last_index + 2` (so below the first index and
    /// past a gap, too).
    Append {
        at: u64,
        bumps: Vec<bool>,
        data: Vec<Vec<u8>>,
    },
    /// The same, with a hard state in the same atomic batch.
    Persist {
        at: u64,
        bumps: Vec<bool>,
        data: Vec<Vec<u8>>,
        hs: (u64, u64, u64),
    },
    Compact(u64),
    ApplySnapshot {
        at: u64,
        bump: u64,
        voters: Vec<u64>,
        data: Vec<u8>,
    },
    CreateSnapshot {
        at: u64,
        data: Vec<u8>,
    },
    HardState {
        term: u64,
        vote: u64,
        commit_at: u64,
    },
    CommitTo(u64),
    ConfState(Vec<u64>),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let entries = (1usize..6).prop_flat_map(|n| {
        (
            proptest::collection::vec(any::<bool>(), n),
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), n),
        )
    });
    prop_oneof![
        6 => (0u64..1000, entries.clone())
            .prop_map(|(at, (bumps, data))| Op::Append { at, bumps, data }),
        3 => (0u64..1000, entries, (0u64..20, 0u64..4, 0u64..1000))
            .prop_map(|(at, (bumps, data), hs)| Op::Persist { at, bumps, data, hs }),
        2 => (0u64..1000).prop_map(Op::Compact),
        1 => (
            0u64..1000,
            0u64..3,
            proptest::collection::vec(1u64..6, 0..4),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(at, bump, voters, data)| Op::ApplySnapshot { at, bump, voters, data }),
        2 => (0u64..1000, proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(at, data)| Op::CreateSnapshot { at, data }),
        2 => (0u64..20, 0u64..4, 0u64..1000)
            .prop_map(|(term, vote, commit_at)| Op::HardState { term, vote, commit_at }),
        1 => (0u64..1000).prop_map(Op::CommitTo),
        1 => proptest::collection::vec(1u64..6, 0..4).prop_map(Op::ConfState),
        1 => Just(Op::Reopen),
    ]
}

fn opts() -> Options {
    // Small segments, so that cuts and compactions cross segment files.
    Options::default().segment_size(4096)
}

struct Model {
    oracle: MemStorage,
    /// The real term of `first_index - 1`.
    prev_term: u64,
    /// What `snapshot()` must serve.
    snapshot: Option<Snapshot>,
}

impl Model {
    fn first(&self) -> u64 {
        self.oracle.first_index().unwrap()
    }
    fn last(&self) -> u64 {
        self.oracle.last_index().unwrap()
    }
    /// The term of `i`, for `first - 1 <= i <= last`.
    fn term(&self, i: u64) -> u64 {
        if i + 1 == self.first() {
            self.prev_term
        } else {
            self.oracle.term(i).unwrap()
        }
    }
    /// A position in `first - 1 ..= last + extra`.
    fn pick(&self, at: u64, extra: u64) -> u64 {
        let lo = self.first() - 1;
        lo + at % (self.last() + extra + 1 - lo)
    }
    fn entries_at(&self, start: u64, bumps: &[bool], data: &[Vec<u8>]) -> Vec<Entry> {
        // Out of range (an error is expected): any term will do.
        let mut term = if start < self.first() || start > self.last() + 1 {
            self.term(self.last())
        } else {
            self.term(start - 1)
        };
        let mut out = Vec::new();
        for (k, (b, d)) in bumps.iter().zip(data).enumerate() {
            term += u64::from(*b);
            out.push(Entry {
                index: start + k as u64,
                term: term.max(1),
                data: d.clone().into(),
                ..Default::default()
            });
        }
        out
    }
    /// Whether the oracle can take this append without panicking.
    fn append_ok(&self, ents: &[Entry]) -> bool {
        let i = ents[0].index;
        i >= self.first() && i <= self.last() + 1
    }
}

fn unchanged_after_error(r: raftwal::Result<()>, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(r.is_err(), "{what}: expected an error");
    Ok(())
}

/// Where the store under test keeps its log.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A directory of its own (`RaftLogStore::open_with`).
    Own,
    /// Group 7 of an engine (`RaftLogStore::open_group`), whose group 8
    /// writes an entry at every open, interleaved with group 7's records.
    Group,
}

fn open(kind: Kind, dir: &Path) -> RaftLogStore {
    match kind {
        Kind::Own => RaftLogStore::open_with(dir, opts()).unwrap(),
        Kind::Group => {
            let engine = Arc::new(Engine::open(dir, opts()).unwrap());
            let neighbour = RaftLogStore::open_group(&engine, 8).unwrap();
            let next = neighbour.last_index().unwrap() + 1;
            let mut e = Entry::default();
            (e.index, e.term, e.data) = (next, 1, vec![8u8; 50].into());
            neighbour.append(&[e]).unwrap();
            drop(neighbour);
            RaftLogStore::open_group(&engine, 7).unwrap()
        }
    }
}

fn run(ops: Vec<Op>, kind: Kind) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(kind, dir.path());
    let mut m = Model {
        oracle: MemStorage::new(),
        prev_term: 0,
        snapshot: None,
    };
    for (step, op) in ops.into_iter().enumerate() {
        let what = format!("step {step}: {op:?}");
        match op {
            Op::Append { at, bumps, data } => {
                let start = m.pick(at, 2);
                let ents = m.entries_at(start, &bumps, &data);
                let r = store.append(&ents);
                if m.append_ok(&ents) {
                    prop_assert!(r.is_ok(), "{what}: {r:?}");
                    m.oracle.wl().append(&ents).unwrap();
                } else {
                    unchanged_after_error(r, &what)?;
                }
            }
            Op::Persist {
                at,
                bumps,
                data,
                hs,
            } => {
                let start = m.pick(at, 2);
                let ents = m.entries_at(start, &bumps, &data);
                let hs = HardState {
                    term: hs.0,
                    vote: hs.1,
                    commit: m.pick(hs.2, 0),
                    ..Default::default()
                };
                let r = store.persist(&ents, Some(&hs), None);
                // A commit past the log (after the append) or a term that
                // goes back is refused, as raft-rs would die on it later.
                let last = ents.last().map_or(m.last(), |e| e.index);
                let term = m.oracle.initial_state().unwrap().hard_state.term;
                if m.append_ok(&ents) && hs.commit <= last && hs.term >= term {
                    prop_assert!(r.is_ok(), "{what}: {r:?}");
                    m.oracle.wl().append(&ents).unwrap();
                    m.oracle.wl().set_hardstate(hs);
                } else {
                    // Atomic: the hard state was not written either.
                    unchanged_after_error(r, &what)?;
                }
            }
            Op::Compact(at) => {
                let c = m.pick(at, 2);
                let r = store.compact(c);
                if c > m.last() + 1 {
                    prop_assert!(matches!(r, Err(Error::Unavailable { .. })), "{what}: {r:?}");
                } else {
                    prop_assert!(r.is_ok(), "{what}: {r:?}");
                    if c > m.first() {
                        m.prev_term = m.term(c - 1);
                        if c == m.last() + 1 {
                            // MemStorage compacted to empty forgets where it
                            // was (its first index falls back to its snapshot
                            // index + 1). Move it there with a snapshot and
                            // put its hard and conf state back.
                            let (hs, cs) = {
                                let st = m.oracle.initial_state().unwrap();
                                (st.hard_state, st.conf_state)
                            };
                            let mut s = Snapshot::default();
                            s.mut_metadata().index = c - 1;
                            s.mut_metadata().term = m.prev_term;
                            let mut core = m.oracle.wl();
                            core.apply_snapshot(s).unwrap();
                            core.set_hardstate(hs);
                            core.set_conf_state(cs);
                        } else {
                            m.oracle.wl().compact(c).unwrap();
                        }
                    }
                }
            }
            Op::ApplySnapshot {
                at,
                bump,
                voters,
                data,
            } => {
                // Anywhere from first_index - 1 to well past the end.
                let index = m.pick(at, 8);
                let term = m.term(m.last()).max(1) + bump;
                let mut s = Snapshot::default();
                s.mut_metadata().index = index;
                s.mut_metadata().term = term;
                s.mut_metadata().mut_conf_state().voters = voters;
                s.data = data.into();
                let out_of_date = index < m.first();
                let r = store.apply_snapshot(s.clone());
                let o = m.oracle.wl().apply_snapshot(s.clone());
                if out_of_date {
                    prop_assert!(
                        matches!(r, Err(Error::SnapshotOutOfDate { .. })),
                        "{what}: {r:?}"
                    );
                    prop_assert_eq!(o, Err(RaftError::Store(StorageError::SnapshotOutOfDate)));
                } else {
                    prop_assert!(r.is_ok(), "{what}: {r:?}");
                    prop_assert!(o.is_ok());
                    m.prev_term = term;
                    m.snapshot = Some(s);
                }
            }
            Op::CreateSnapshot { at, data } => {
                let index = m.pick(at, 1);
                let cs = m.oracle.initial_state().unwrap().conf_state;
                let r = store.create_snapshot(index, cs.clone(), data.clone());
                let stored = m.snapshot.as_ref().map_or(0, |s| s.get_metadata().index);
                let commit = m.oracle.initial_state().unwrap().hard_state.commit;
                if index == 0 {
                    prop_assert!(matches!(r, Err(Error::InvalidArgument(_))), "{what}: {r:?}");
                } else if stored > 0 && index <= stored {
                    prop_assert!(
                        matches!(r, Err(Error::SnapshotNotNewer { .. })),
                        "{what}: {r:?}"
                    );
                } else if index > m.last() {
                    prop_assert!(matches!(r, Err(Error::Unavailable { .. })), "{what}: {r:?}");
                } else {
                    prop_assert!(r.is_ok(), "{what}: {r:?}");
                    // An applied index is committed: past the durable
                    // commit, the snapshot makes it durable.
                    if index > commit {
                        m.oracle.wl().mut_hard_state().commit = index;
                    }
                    let mut s = Snapshot::default();
                    s.mut_metadata().index = index;
                    s.mut_metadata().term = m.term(index);
                    s.mut_metadata().set_conf_state(cs);
                    s.data = data.into();
                    m.snapshot = Some(s);
                }
            }
            Op::HardState {
                term,
                vote,
                commit_at,
            } => {
                let hs = HardState {
                    term,
                    vote,
                    commit: m.pick(commit_at, 0),
                    ..Default::default()
                };
                let r = store.set_hardstate(hs.clone());
                if hs.term >= m.oracle.initial_state().unwrap().hard_state.term {
                    prop_assert!(r.is_ok(), "{what}: {r:?}");
                    m.oracle.wl().set_hardstate(hs);
                } else {
                    prop_assert!(matches!(r, Err(Error::InvalidArgument(_))), "{what}: {r:?}");
                }
            }
            Op::CommitTo(at) => {
                let c = m.pick(at, 1);
                let r = store.commit_to(c);
                if c > m.last() {
                    prop_assert!(matches!(r, Err(Error::Unavailable { .. })), "{what}: {r:?}");
                } else {
                    prop_assert!(r.is_ok(), "{what}: {r:?}");
                    // MemStorageCore::commit_to also sets the hard state's
                    // term to entry c's term (and panics for c below its
                    // first index); RaftLogStore sets only the commit.
                    m.oracle.wl().mut_hard_state().commit = c;
                }
            }
            Op::ConfState(voters) => {
                let cs = ConfState {
                    voters,
                    ..Default::default()
                };
                store.set_conf_state(cs.clone()).unwrap();
                m.oracle.wl().set_conf_state(cs);
            }
            Op::Reopen => {
                drop(store);
                store = open(kind, dir.path());
            }
        }
        compare(&store, &m, &what)?;
    }
    // And everything once more from disk.
    drop(store);
    let store = open(kind, dir.path());
    compare(&store, &m, "after the final reopen")?;
    assert_no_stray_files(store.dir());
    Ok(())
}

fn ctx() -> GetEntriesContext {
    GetEntriesContext::empty(false)
}

fn compare(s: &RaftLogStore, m: &Model, what: &str) -> Result<(), TestCaseError> {
    let (first, last) = (m.first(), m.last());
    prop_assert_eq!(s.first_index(), Ok(first), "{}: first_index", what);
    prop_assert_eq!(s.last_index(), Ok(last), "{}: last_index", what);

    let st = s.initial_state().unwrap();
    let ost = m.oracle.initial_state().unwrap();
    prop_assert_eq!(&st.hard_state, &ost.hard_state, "{}: hard state", what);
    prop_assert_eq!(&st.conf_state, &ost.conf_state, "{}: conf state", what);

    // Terms: below first - 1 compacted, first - 1 the real term, the log as
    // the oracle has it, past the end unavailable.
    for i in first.saturating_sub(3)..=last + 2 {
        let got = s.term(i);
        if i + 1 < first {
            prop_assert_eq!(
                got,
                Err(RaftError::Store(StorageError::Compacted)),
                "{}: term({})",
                what,
                i
            );
        } else if i + 1 == first {
            prop_assert_eq!(got, Ok(m.prev_term), "{}: term({})", what, i);
        } else if i > last {
            prop_assert_eq!(
                got,
                Err(RaftError::Store(StorageError::Unavailable)),
                "{}: term({})",
                what,
                i
            );
        } else {
            prop_assert_eq!(got, m.oracle.term(i), "{}: term({})", what, i);
        }
    }

    // Entries: every range within the log, with several size limits.
    if last >= first {
        let all = m.oracle.entries(first, last + 1, None, ctx()).unwrap();
        prop_assert_eq!(
            s.entries(first, last + 1, None, ctx()),
            Ok(all.clone()),
            "{}: all",
            what
        );
        let sizes: Vec<u64> = all
            .iter()
            .map(|e| u64::from(protobuf::Message::compute_size(e)))
            .collect();
        let mut los = vec![
            first,
            first + 1,
            (first + last) / 2,
            last.saturating_sub(1),
            last,
        ];
        los.retain(|&lo| lo >= first && lo <= last);
        los.dedup();
        for lo in los {
            for hi in [lo, lo + 1, (lo + 3).min(last + 1), last + 1] {
                let k = (lo - first) as usize;
                let limits = [
                    None,
                    Some(0),
                    Some(sizes[k]),
                    Some(sizes[k..].iter().take(2).sum::<u64>()),
                    Some(sizes[k..].iter().take(2).sum::<u64>() - 1),
                    Some(raft::NO_LIMIT),
                ];
                for max in limits {
                    let want = m.oracle.entries(lo, hi, max, ctx());
                    prop_assert_eq!(
                        s.entries(lo, hi, max, ctx()),
                        want,
                        "{}: entries({}, {}, {:?})",
                        what,
                        lo,
                        hi,
                        max
                    );
                }
            }
        }
    } else {
        prop_assert_eq!(s.entries(first, first, None, ctx()), Ok(vec![]), "{}", what);
    }
    if first > 1 {
        prop_assert_eq!(
            s.entries(first - 1, last + 1, None, ctx()),
            Err(RaftError::Store(StorageError::Compacted)),
            "{}",
            what
        );
    }
    prop_assert_eq!(
        s.entries(first, last + 2, None, ctx()),
        Err(RaftError::Store(StorageError::Unavailable)),
        "{}",
        what
    );

    // The stored snapshot.
    let unavailable = Err(RaftError::Store(
        StorageError::SnapshotTemporarilyUnavailable,
    ));
    match &m.snapshot {
        None => prop_assert_eq!(s.snapshot(0, 0), unavailable, "{}", what),
        Some(snap) => {
            let i = snap.get_metadata().index;
            prop_assert_eq!(s.snapshot(0, 0), Ok(snap.clone()), "{}", what);
            prop_assert_eq!(s.snapshot(i, 0), Ok(snap.clone()), "{}", what);
            // Past it, the stored snapshot advanced over the committed
            // entries after it that carry no data (these are all normal
            // entries), if any.
            let hi = m
                .oracle
                .initial_state()
                .unwrap()
                .hard_state
                .commit
                .min(last);
            let mut k = i;
            while k < hi
                && k + 1 >= first
                && m.oracle.entries(k + 1, k + 2, None, ctx()).unwrap()[0]
                    .data
                    .is_empty()
            {
                k += 1;
            }
            let want = if k > i {
                let mut a = snap.clone();
                a.mut_metadata().index = k;
                a.mut_metadata().term = m.term(k);
                Ok(a)
            } else {
                unavailable
            };
            prop_assert_eq!(s.snapshot(i + 1, 0), want, "{}", what);
        }
    }
    Ok(())
}

/// Only segments, the lock and the one current snapshot file remain.
fn assert_no_stray_files(dir: &Path) {
    // An engine group's directory is made with its first snapshot.
    let Ok(listing) = std::fs::read_dir(dir) else {
        return;
    };
    let snaps: Vec<String> = listing
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("snapshot-"))
        .collect();
    assert!(snaps.len() <= 1, "{snaps:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn raft_log_store_matches_mem_storage(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, Kind::Own)?;
    }

    #[test]
    fn an_engine_group_store_matches_mem_storage(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, Kind::Group)?;
    }
}
