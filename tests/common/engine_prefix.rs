//! Engine workloads for the power-loss and fault suites
//! (`tests/crash_engine_prefix.rs`, `tests/crash_engine_faults.rs`):
//! random batches over four interleaved groups (appends, conflict cuts,
//! state blobs, compactions, resets, removals), reclaims, syncs and waits,
//! with the state after every prefix of them, a runner that stops at the
//! first failure, and what an engine shows.
#![allow(dead_code)]

use std::collections::BTreeMap;

use raftwal::{Engine, EngineBatch, Ticket};

use crate::fs_sim::Rng;
use crate::log_prefix::Issue;

/// The groups the workloads write: small ids and a large one.
pub const GROUPS: [u64; 4] = [1, 2, 3, 1 << 33];
/// Operations per workload.
pub const OPS: usize = 50;

/// What one group shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct G {
    pub first: u64,
    pub prev_term: u64,
    pub entries: Vec<(u64, Vec<u8>)>,
    pub state: Option<Vec<u8>>,
}

impl Default for G {
    fn default() -> G {
        G {
            first: 1,
            prev_term: 0,
            entries: Vec::new(),
            state: None,
        }
    }
}

impl G {
    pub fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }
    pub fn term(&self, i: u64) -> u64 {
        if i + 1 == self.first {
            self.prev_term
        } else {
            self.entries[(i - self.first) as usize].0
        }
    }
}

/// What the engine shows: the groups it holds.
pub type State = BTreeMap<u64, G>;

#[derive(Debug, Clone)]
pub enum Part {
    /// Entries from `at` (a cut when below `last + 1`), of `term`.
    Entries {
        at: u64,
        n: u64,
        term: u64,
    },
    State(Vec<u8>),
    Compact(u64),
    Reset {
        next: u64,
        term: u64,
    },
    Remove,
}

#[derive(Debug, Clone)]
pub enum EOp {
    Batch(Vec<(u64, Part)>),
    Reclaim,
    Sync,
    /// Wait for the last submit's ticket (a sync without one).
    Wait,
}

pub fn data(group: u64, index: u64, term: u64, k: usize) -> Vec<u8> {
    let len = 40 + ((index * 31 + term * 7 + k as u64 * 13 + group) % 180) as usize;
    let mut d = format!("{group}/{index}/{term}/{k}:").into_bytes();
    d.resize(len, (k % 251) as u8);
    d
}

pub fn apply(s: &mut State, op: &EOp, k: usize) {
    let EOp::Batch(parts) = op else { return };
    for (g, p) in parts {
        if let Part::Remove = p {
            s.remove(g);
            continue;
        }
        let m = s.entry(*g).or_default();
        match p {
            Part::Entries { at, n, term } => {
                m.entries.truncate((at - m.first) as usize);
                for i in *at..at + n {
                    m.entries.push((*term, data(*g, i, *term, k)));
                }
            }
            Part::State(b) => m.state = Some(b.clone()),
            Part::Compact(c) if *c > m.first => {
                m.prev_term = m.term(c - 1);
                m.entries.drain(..(c - m.first) as usize);
                m.first = *c;
            }
            Part::Compact(_) => {}
            Part::Reset { next, term } => {
                (m.first, m.prev_term) = (*next, *term);
                m.entries.clear();
            }
            Part::Remove => {}
        }
    }
}

pub fn next_op(rng: &mut Rng, s: &State) -> EOp {
    match rng.below(20) {
        0 => return EOp::Reclaim,
        1 => return EOp::Sync,
        2 => return EOp::Wait,
        _ => {}
    }
    let mut parts = Vec::new();
    for &g in &GROUPS {
        if !rng.chance(1, 2) {
            continue;
        }
        let m = s.get(&g).cloned().unwrap_or_default();
        let last_term = m.term(m.last()).max(1);
        let p = match rng.below(12) {
            0..=5 => Part::Entries {
                at: m.last() + 1,
                n: rng.range(1, 6),
                term: last_term + rng.below(2),
            },
            6 | 7 => {
                let at = m.last() + 1 - rng.below(m.entries.len() as u64 + 1);
                Part::Entries {
                    at,
                    n: rng.range(0, 4),
                    term: m.term(at - 1).max(last_term) + 1,
                }
            }
            8 => {
                let n = rng.range(0, 30) as usize;
                Part::State(rng.bytes(n))
            }
            9 | 10 => Part::Compact(m.first + rng.below(m.entries.len() as u64 + 1)),
            _ if rng.chance(1, 2) => Part::Reset {
                next: m.last() + 1 + rng.below(20),
                term: last_term + rng.below(2),
            },
            _ => Part::Remove,
        };
        parts.push((g, p));
    }
    if parts.is_empty() {
        parts.push((GROUPS[0], Part::State(vec![7])));
    }
    EOp::Batch(parts)
}

pub fn workload(seed: u64) -> (Vec<EOp>, Vec<State>) {
    let mut rng = Rng::new(seed);
    let mut s = State::new();
    let (mut ops, mut states) = (Vec::new(), vec![s.clone()]);
    for k in 0..OPS {
        let op = next_op(&mut rng, &s);
        apply(&mut s, &op, k);
        ops.push(op);
        states.push(s.clone());
    }
    (ops, states)
}

/// What a run got through before the power went off.
#[derive(Debug, Default)]
pub struct Run {
    pub acked: usize,
    pub in_flight: bool,
    pub durable: usize,
    pub failure: Option<String>,
    /// Segments reclaims freed before the power went.
    pub freed: usize,
}

/// Runs `ops` on `e` as `issue` says, until one fails.
pub fn run(e: &Engine, ops: &[EOp], issue: Issue) -> Run {
    run_with(e, ops, issue, |_| {})
}

/// [`run`], calling `acked(k)` after operation `k` returned.
pub fn run_with(e: &Engine, ops: &[EOp], issue: Issue, mut acked: impl FnMut(usize)) -> Run {
    let mut r = Run::default();
    let mut ticket: Option<(Ticket, usize)> = None;
    for (k, op) in ops.iter().enumerate() {
        let res = match op {
            EOp::Batch(parts) => {
                let mut b = EngineBatch::new();
                for (g, p) in parts {
                    match p {
                        Part::Entries { at, n, term } => {
                            let w = b.group(*g);
                            if *at <= e.last_index(*g) {
                                w.truncate_from(*at);
                            }
                            for i in *at..at + n {
                                w.push(i, *term, &data(*g, i, *term, k)).unwrap();
                            }
                            if *n == 0 {
                                w.truncate_from(*at);
                            }
                        }
                        Part::State(s) => b.group(*g).set_state(s.clone()),
                        Part::Compact(c) => b.compact(*g, *c),
                        Part::Reset { next, term } => b.reset(*g, *next, *term),
                        Part::Remove => b.remove_group(*g),
                    }
                }
                match issue {
                    Issue::Submit => e.submit(&mut b).map(|t| ticket = Some((t, k + 1))),
                    _ => e.write(&mut b),
                }
            }
            EOp::Reclaim => e.reclaim().map(|x| r.freed += x.segments_freed),
            EOp::Sync => e.sync(),
            EOp::Wait => match &ticket {
                Some((t, upto)) => t.wait().map(|()| r.durable = r.durable.max(*upto)),
                None => e.sync(),
            },
        };
        if let Err(x) = res {
            r.failure = Some(format!("op {k} {op:?}: {x}"));
            r.in_flight = true;
            return r;
        }
        r.acked = k + 1;
        acked(k);
        match op {
            // A reclaim with nothing to free syncs nothing: not counted.
            EOp::Sync => r.durable = k + 1,
            EOp::Wait if ticket.is_none() => r.durable = k + 1,
            EOp::Batch(_)
                if issue == Issue::Submit && ticket.as_ref().is_some_and(|t| t.0.is_durable()) =>
            {
                r.durable = r.durable.max(k + 1);
            }
            _ => {}
        }
    }
    r
}

pub fn observe(e: &Engine) -> Result<State, String> {
    let mut s = State::new();
    for g in e.groups() {
        let (first, last) = (e.first_index(g), e.last_index(g));
        let prev_term = e
            .term(g, first - 1)
            .map_err(|x| format!("group {g}: {x}"))?;
        let entries = e
            .entries(g, first, last + 1, None)
            .map_err(|x| format!("group {g}: entries: {x}"))?
            .into_iter()
            .map(|x| (x.term, x.data.to_vec()))
            .collect();
        let state = e.state(g).map(|b| b.to_vec());
        s.insert(
            g,
            G {
                first,
                prev_term,
                entries,
                state,
            },
        );
    }
    Ok(s)
}
