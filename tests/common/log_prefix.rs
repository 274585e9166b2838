//! Log-level workloads for the "a prefix of the writes" power-loss checks
//! (`tests/crash_prefix.rs` and the `power_loss` fuzz target): appends,
//! cuts inside and below the active segment, state blobs, compactions,
//! resets and syncs, issued under a relaxed sync policy (`Manual`,
//! `EveryN`) or through `Log::submit`, with 4 KiB segments so that most
//! writes are followed by a roll before anything syncs them.
//!
//! After a power cut the log must hold the state after *some prefix* of the
//! operations issued, at least as long as the last one known durable: never
//! a later write without an earlier one (a cut lost while the entries after
//! it survive, a state lost under later entries).
#![allow(dead_code)]

use std::fmt;

use raftwal::{Entry, Log, Options, Preallocate, Ticket, WriteBatch};

use crate::fs_sim::{Choose, SimFs};

#[path = "agree.rs"]
pub mod agree;

/// The options of these workloads on `fs`: 4 KiB segments, the sync
/// policy `issue` needs, `preallocate`.
pub fn opts(fs: &SimFs, issue: Issue, preallocate: Preallocate) -> Options {
    Options::default()
        .segment_size(4096)
        .preallocate(preallocate)
        .sync(issue.policy())
        .file_system(fs.handle())
}

/// The preallocation mode numbered `n` (mod 3).
pub fn preallocate_of(n: u64) -> Preallocate {
    match n % 3 {
        0 => Preallocate::None,
        1 => Preallocate::Allocate,
        _ => Preallocate::ZeroFill,
    }
}

/// Everything a `Log` shows.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct LogState {
    /// `first_index()`.
    pub first: u64,
    /// `term(first - 1)`.
    pub prev_term: u64,
    /// Entries `first..`, as `(term, data)`.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// `state()`.
    pub state: Option<Vec<u8>>,
}

impl fmt::Debug for LogState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Runs of (first index, term, count): short enough to read.
        let mut runs: Vec<(u64, u64, u64)> = Vec::new();
        for (k, (t, _)) in self.entries.iter().enumerate() {
            let i = self.first + k as u64;
            match runs.last_mut() {
                Some(r) if r.1 == *t && r.0 + r.2 == i => r.2 += 1,
                _ => runs.push((i, *t, 1)),
            }
        }
        let runs: Vec<String> = runs
            .iter()
            .map(|(i, t, n)| format!("{i}..={} @{t}", i + n - 1))
            .collect();
        f.debug_struct("LogState")
            .field("first", &self.first)
            .field("prev_term", &self.prev_term)
            .field("entries", &runs)
            .field(
                "state",
                &self
                    .state
                    .as_ref()
                    .map(|s| String::from_utf8_lossy(s).into_owned()),
            )
            .finish()
    }
}

impl LogState {
    /// A new log.
    pub fn new() -> LogState {
        LogState {
            first: 1,
            ..Default::default()
        }
    }

    /// The last index (`first - 1` when empty).
    pub fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }

    /// The term of `index` (`first - 1 ..= last`).
    pub fn term(&self, index: u64) -> u64 {
        if index + 1 == self.first {
            self.prev_term
        } else {
            self.entries[(index - self.first) as usize].0
        }
    }

    /// The last entry's term (or the term before the first index).
    pub fn last_term(&self) -> u64 {
        self.term(self.last())
    }

    /// Applies `op` as the log does.
    pub fn apply(&mut self, op: &LogOp) {
        match op {
            LogOp::Write {
                cut,
                entries,
                state,
            } => {
                if let Some(t) = cut {
                    self.entries.truncate((t - self.first) as usize);
                }
                for e in entries {
                    self.entries.push((e.term, e.data.to_vec()));
                }
                if let Some(s) = state {
                    self.state = Some(s.clone());
                }
            }
            LogOp::Compact(i) => {
                if *i > self.first {
                    self.prev_term = self.term(i - 1);
                    self.entries.drain(..(i - self.first) as usize);
                    self.first = *i;
                }
            }
            LogOp::Reset { next, term } => {
                self.entries.clear();
                self.first = *next;
                self.prev_term = *term;
            }
            LogOp::Sync | LogOp::Wait => {}
        }
    }
}

/// One operation on a log.
#[derive(Clone, PartialEq, Eq)]
pub enum LogOp {
    /// One `WriteBatch`: an optional cut (`truncate_from`), entries that
    /// follow it (or the last index), an optional state blob.
    Write {
        cut: Option<u64>,
        entries: Vec<Entry>,
        state: Option<Vec<u8>>,
    },
    /// `compact(i)` (always synced).
    Compact(u64),
    /// `reset(next, term)` (always synced).
    Reset { next: u64, term: u64 },
    /// `sync()`.
    Sync,
    /// Waits on the last write's ticket (through `submit`), or syncs.
    Wait,
}

impl fmt::Debug for LogOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogOp::Write {
                cut,
                entries,
                state,
            } => {
                let range = match (entries.first(), entries.last()) {
                    (Some(a), Some(b)) => format!("{}..={} @{}", a.index, b.index, b.term),
                    _ => "no entries".into(),
                };
                write!(
                    f,
                    "Write(cut {cut:?}, {range}, state {:?})",
                    state
                        .as_ref()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                )
            }
            LogOp::Compact(i) => write!(f, "Compact({i})"),
            LogOp::Reset { next, term } => write!(f, "Reset({next}, {term})"),
            LogOp::Sync => write!(f, "Sync"),
            LogOp::Wait => write!(f, "Wait"),
        }
    }
}

/// How writes are issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issue {
    /// `Log::write` under `SyncPolicy::Manual`.
    Manual,
    /// `Log::write` under `SyncPolicy::EveryN(3)`.
    EveryN,
    /// `Log::submit` under the default `SyncPolicy::Always`.
    Submit,
}

impl Issue {
    /// Every way, in turn.
    pub const ALL: [Issue; 3] = [Issue::Manual, Issue::EveryN, Issue::Submit];

    /// The sync policy the log is opened with.
    pub fn policy(self) -> raftwal::SyncPolicy {
        match self {
            Issue::Manual => raftwal::SyncPolicy::Manual,
            Issue::EveryN => raftwal::SyncPolicy::EveryN(3),
            Issue::Submit => raftwal::SyncPolicy::Always,
        }
    }
}

/// The data of entry `index` of term `term`, written by operation `k`:
/// 60 to 260 bytes, different for every `(index, term, k)`.
pub fn data(index: u64, term: u64, k: u64) -> Vec<u8> {
    let len = 60 + ((index * 31 + term * 7 + k * 13) % 200) as usize;
    let mut d = format!("{index}/{term}/{k}:").into_bytes();
    d.extend((0..len).map(|j| (index as usize * 7 + term as usize * 3 + k as usize + j) as u8));
    d
}

/// Entries `from..from + n` at `term`, written by operation `k`.
pub fn entries(from: u64, n: u64, term: u64, k: u64) -> Vec<Entry> {
    (from..from + n)
        .map(|i| Entry::new(i, term, data(i, term, k)))
        .collect()
}

/// A random operation valid on a log in state `m` (operation number `k`),
/// weighted toward what the prefix rule is about: unsynced cuts and state
/// writes followed by writes large enough to roll.
pub fn next_op<C: Choose>(rng: &mut C, m: &LogState, k: u64) -> LogOp {
    let (first, last) = (m.first, m.last());
    let state = |rng: &mut C| format!("state {k} {}", rng.below(1000)).into_bytes();
    match rng.below(100) {
        // Appends, often big enough to roll a 4 KiB segment.
        0..=41 => {
            let most = if rng.chance(1, 3) { 20 } else { 4 };
            let n = rng.range(1, most);
            let term = m.last_term().max(1) + u64::from(rng.chance(1, 10));
            let st = rng.chance(1, 6).then(|| state(rng));
            LogOp::Write {
                cut: None,
                entries: entries(last + 1, n, term, k),
                state: st,
            }
        }
        // A conflict: cut a suffix (inside the active segment or below it)
        // and write entries of a higher term, sometimes with a state.
        42..=66 if last >= first => {
            let lo = last.saturating_sub(30).max(first);
            let at = rng.range(lo, last);
            let term = m.last_term().max(m.prev_term) + 1;
            let n = rng.below(5);
            LogOp::Write {
                cut: Some(at),
                entries: entries(at, n, term, k),
                state: rng.chance(1, 3).then(|| state(rng)),
            }
        }
        // A state blob alone.
        42..=76 => LogOp::Write {
            cut: None,
            entries: Vec::new(),
            state: Some(state(rng)),
        },
        77..=82 => LogOp::Sync,
        83..=87 => LogOp::Wait,
        88..=95 if last > first => LogOp::Compact(rng.range(first + 1, last)),
        88..=95 => LogOp::Sync,
        _ => LogOp::Reset {
            next: last + rng.range(1, 40),
            term: m.last_term().max(m.prev_term) + rng.below(2),
        },
    }
}

/// A workload of `n` operations from `rng`, and the log's state before the
/// first (`states[0]`) and after each (`states[k + 1]`).
pub fn workload<C: Choose>(rng: &mut C, n: usize) -> (Vec<LogOp>, Vec<LogState>) {
    let mut m = LogState::new();
    let mut ops = Vec::with_capacity(n);
    let mut states = vec![m.clone()];
    for k in 0..n {
        let op = next_op(rng, &m, k as u64);
        m.apply(&op);
        ops.push(op);
        states.push(m.clone());
    }
    (ops, states)
}

/// What a run got through before the power went off.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Operations that returned `Ok`, in order.
    pub acked: usize,
    /// Whether the operation after them failed (it may have happened).
    pub in_flight: bool,
    /// Every operation up to this many is known durable (a sync, a
    /// compaction, a reset or a ticket returned).
    pub durable: usize,
    /// The first failure.
    pub failure: Option<String>,
    /// A cut or a state write was issued and the log rolled to a new
    /// segment before anything synced it: the case the continuity rule is
    /// about.
    pub unsynced_cut_before_roll: bool,
}

/// Opens the log in `dir` with `opts`, runs `ops` as `issue` says, and
/// cuts the power of `fs` (if the armed trigger has not already) before the
/// log is dropped, so no final sync helps. A failure without a power cut
/// is an error.
pub fn run_until_power_cut(
    fs: &SimFs,
    dir: &str,
    opts: Options,
    ops: &[LogOp],
    issue: Issue,
) -> Result<Run, String> {
    let r = match Log::open(dir, opts) {
        Ok(log) => {
            let r = run(&log, ops, issue);
            fs.kill();
            drop(log);
            r
        }
        Err(e) => Run {
            failure: Some(format!("first open: {e}")),
            ..Default::default()
        },
    };
    match &r.failure {
        Some(f) if !fs.is_dead() => Err(format!("failed without a power cut: {f}")),
        _ => Ok(r),
    }
}

/// Runs `ops` on `log` as `issue` says, until one fails.
pub fn run(log: &Log, ops: &[LogOp], issue: Issue) -> Run {
    let mut r = Run::default();
    let mut batch = WriteBatch::new();
    let mut ticket: Option<(Ticket, usize)> = None;
    // Operations up to this many are covered by a sync issued since.
    let mut unsynced_cut = false;
    for (k, op) in ops.iter().enumerate() {
        let segments_before = log.segments().len();
        let res = match op {
            LogOp::Write {
                cut,
                entries,
                state,
            } => {
                batch.clear();
                if let Some(t) = cut {
                    batch.truncate_from(*t);
                }
                for e in entries {
                    if let Err(e) = batch.push(e.index, e.term, &e.data) {
                        r.failure = Some(format!("{op:?}: {e}"));
                        r.in_flight = true;
                        return r;
                    }
                }
                if let Some(s) = state {
                    batch.set_state(s.clone());
                }
                match issue {
                    Issue::Submit => log.submit(&mut batch).map(|t| ticket = Some((t, k + 1))),
                    _ => log.write(&mut batch),
                }
            }
            LogOp::Compact(i) => log.compact(*i),
            LogOp::Reset { next, term } => log.reset(*next, *term),
            LogOp::Sync => log.sync(),
            LogOp::Wait => match &ticket {
                Some((t, upto)) => t.wait().map(|()| r.durable = r.durable.max(*upto)),
                None => log.sync(),
            },
        };
        if let Err(e) = res {
            r.failure = Some(format!("{op:?}: {e}"));
            r.in_flight = true;
            return r;
        }
        r.acked = k + 1;
        match op {
            LogOp::Compact(_) | LogOp::Reset { .. } | LogOp::Sync => {
                r.durable = k + 1;
                unsynced_cut = false;
            }
            LogOp::Wait if ticket.is_none() => {
                r.durable = k + 1;
                unsynced_cut = false;
            }
            LogOp::Write { cut, state, .. } => {
                if issue == Issue::Submit && ticket.as_ref().is_some_and(|t| t.0.is_durable()) {
                    r.durable = r.durable.max(k + 1);
                }
                if cut.is_some() || state.is_some() {
                    unsynced_cut = true;
                }
                if unsynced_cut && log.segments().len() != segments_before {
                    r.unsynced_cut_before_roll = true;
                }
            }
            LogOp::Wait => {}
        }
    }
    r
}

/// Reads everything `log` shows.
pub fn observe(log: &Log) -> Result<LogState, String> {
    let (first, last) = (log.first_index(), log.last_index());
    if last + 1 < first {
        return Err(format!("last index {last} below first index {first} - 1"));
    }
    let prev_term = log
        .term(first - 1)
        .map_err(|e| format!("term(first - 1): {e}"))?;
    let entries = log
        .entries(first, last + 1, None)
        .map_err(|e| format!("entries: {e}"))?;
    let mut out = Vec::with_capacity(entries.len());
    for (k, e) in entries.into_iter().enumerate() {
        if e.index != first + k as u64 {
            return Err(format!(
                "entry {} where {} was due",
                e.index,
                first + k as u64
            ));
        }
        let t = log
            .term(e.index)
            .map_err(|x| format!("term({}): {x}", e.index))?;
        if t != e.term {
            return Err(format!(
                "term({}) is {t}, its entry says {}",
                e.index, e.term
            ));
        }
        out.push((e.term, e.data.to_vec()));
    }
    Ok(LogState {
        first,
        prev_term,
        entries: out,
        state: log.state().map(|s| s.to_vec()),
    })
}

/// Which of `states[lo..=hi]` `got` is, if any.
pub fn prefix_of(got: &LogState, states: &[LogState], lo: usize, hi: usize) -> Option<usize> {
    (lo..=hi.min(states.len() - 1))
        .rev()
        .find(|&j| states[j] == *got)
}

/// Opens the log a power cut left (with `opts`) after run `r` of `ops`
/// (whose states are `states`), and checks it: it shows the state after
/// some prefix of the operations, no shorter than the durable ones and no
/// longer than those issued (the in-flight one included), a second open
/// shows the same, and it takes a write that lasts. Returns how many
/// operations the log shows.
pub fn check_after_power_cut(
    opts: &raftwal::Options,
    dir: &str,
    ops: &[LogOp],
    states: &[LogState],
    r: &Run,
) -> Result<usize, String> {
    let hi = r.acked + usize::from(r.in_flight);
    // What `raftwal inspect` says of the image is what the open does.
    let scan = agree::scan(opts, dir)?;
    let opened = Log::open(dir, opts.clone());
    agree::agrees(&scan, opts.recovery_mode, &opened)?;
    let log = opened.map_err(|e| format!("reopen: {e}"))?;
    let got = observe(&log).map_err(|e| format!("observe: {e}"))?;
    let Some(j) = prefix_of(&got, states, r.durable, hi) else {
        let near: Vec<String> = (r.durable..=hi.min(states.len() - 1))
            .map(|j| format!("  after {j} ops: {:?}", states[j]))
            .collect();
        return Err(format!(
            "the log is no prefix of the writes:\n  got {got:?}\n  allowed:\n{}\n  ops: {:?}",
            near.join("\n"),
            &ops[r.durable.saturating_sub(1)..hi.min(ops.len())]
        ));
    };
    drop(log);
    // What recovery left is what the next open finds.
    let log = Log::open(dir, opts.clone()).map_err(|e| format!("second open: {e}"))?;
    let again = observe(&log).map_err(|e| format!("observe again: {e}"))?;
    if again != got {
        return Err(format!("a second open shows {again:?}, the first {got:?}"));
    }
    // The log takes writes, and they last.
    let next = got.last() + 1;
    let probe = Entry::new(next, got.last_term().max(1), b"probe".to_vec());
    log.append(std::slice::from_ref(&probe))
        .and_then(|()| log.sync())
        .map_err(|e| format!("probe write: {e}"))?;
    drop(log);
    let log = Log::open(dir, opts.clone()).map_err(|e| format!("open after probe: {e}"))?;
    if log
        .get_entry(next)
        .map_err(|e| format!("probe read: {e}"))?
        != probe
    {
        return Err("the probe write did not last".into());
    }
    Ok(j)
}
