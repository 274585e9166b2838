//! Power loss under an engine, checked against "a prefix of the writes":
//! random batches over four interleaved groups (appends, conflict cuts,
//! state blobs, compactions, resets, removals), reclaims and syncs, issued
//! under `SyncPolicy::Manual`, `SyncPolicy::EveryN` and through
//! `Engine::submit`, with 4 KiB segments so the stream rolls and reclaims
//! free segments, on the power-loss file system (which keeps, drops, tears
//! or zeroes each unsynced write and persists any subset of the directory
//! operations since the last directory fsync).
//!
//! After each power cut the engine must open and show, for every group,
//! exactly the state after some prefix of the operations issued (the same
//! prefix for all groups: a batch is atomic across them), no shorter than
//! the last one known durable; a second open must show the same, and the
//! engine must take a write that lasts.
//!
//! `RAFTWAL_CRASH_SEEDS=n` runs `n` workloads; `--nocapture` prints the
//! number of crash points.

#[path = "common/fs_sim.rs"]
mod fs_sim;

#[path = "common/log_prefix.rs"]
mod log_prefix;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use fs_sim::{Rng, SimFs, Trigger};
use log_prefix::{opts, preallocate_of, Issue};
use raftwal::{Engine, EngineBatch, Options, Ticket};

const DIR: &str = "/sim/engine";
const SEEDS: u64 = 24;
const OPS: usize = 50;
const GROUPS: [u64; 4] = [1, 2, 3, 1 << 33];
const RANDOM_POINTS: u64 = 20;
const IMAGES: u64 = 3;

/// What one group shows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct G {
    first: u64,
    prev_term: u64,
    entries: Vec<(u64, Vec<u8>)>,
    state: Option<Vec<u8>>,
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
    fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }
    fn term(&self, i: u64) -> u64 {
        if i + 1 == self.first {
            self.prev_term
        } else {
            self.entries[(i - self.first) as usize].0
        }
    }
}

/// What the engine shows: the groups it holds.
type State = BTreeMap<u64, G>;

#[derive(Debug, Clone)]
enum Part {
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
enum EOp {
    Batch(Vec<(u64, Part)>),
    Reclaim,
    Sync,
    /// Wait for the last submit's ticket (a sync without one).
    Wait,
}

fn data(group: u64, index: u64, term: u64, k: usize) -> Vec<u8> {
    let len = 40 + ((index * 31 + term * 7 + k as u64 * 13 + group) % 180) as usize;
    let mut d = format!("{group}/{index}/{term}/{k}:").into_bytes();
    d.resize(len, (k % 251) as u8);
    d
}

fn apply(s: &mut State, op: &EOp, k: usize) {
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

fn next_op(rng: &mut Rng, s: &State) -> EOp {
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

fn workload(seed: u64) -> (Vec<EOp>, Vec<State>) {
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
struct Run {
    acked: usize,
    in_flight: bool,
    durable: usize,
    failure: Option<String>,
    /// Segments reclaims freed before the power went.
    freed: usize,
}

fn run(e: &Engine, ops: &[EOp], issue: Issue) -> Run {
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

fn observe(e: &Engine) -> Result<State, String> {
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

fn check(o: &Options, ops: &[EOp], states: &[State], r: &Run) -> Result<(), String> {
    let hi = (r.acked + usize::from(r.in_flight)).min(ops.len());
    let e = Engine::open(DIR, o.clone()).map_err(|x| format!("reopen: {x}"))?;
    let got = observe(&e)?;
    if !(r.durable..=hi).any(|j| states[j] == got) {
        let shape = |s: &State| -> Vec<(u64, u64, usize, bool)> {
            s.iter()
                .map(|(g, m)| (*g, m.first, m.entries.len(), m.state.is_some()))
                .collect()
        };
        let allowed: Vec<_> = (r.durable..=hi).map(|j| shape(&states[j])).collect();
        return Err(format!(
            "no prefix of the writes between {} and {hi}: got (group, first, entries, state) {:?}, allowed {allowed:?}, ops {:?}",
            r.durable,
            shape(&got),
            &ops[..hi]
        ));
    }
    drop(e);
    let e = Engine::open(DIR, o.clone()).map_err(|x| format!("second open: {x}"))?;
    let again = observe(&e)?;
    if again != got {
        return Err(format!("a second open shows {again:?}, the first {got:?}"));
    }
    let g = GROUPS[0];
    let next = e.last_index(g) + 1;
    let term = e.term(g, next - 1).unwrap_or(0).max(1);
    let mut b = EngineBatch::new();
    b.group(g).push(next, term, b"probe").unwrap();
    e.write(&mut b)
        .and_then(|()| e.sync())
        .map_err(|x| format!("probe: {x}"))?;
    drop(e);
    let e = Engine::open(DIR, o.clone()).map_err(|x| format!("open after probe: {x}"))?;
    match e.get_entry(g, next) {
        Ok(x) if &x.data[..] == b"probe" => Ok(()),
        other => Err(format!("the probe write did not last: {other:?}")),
    }
}

fn run_seed(seed: u64, points: &AtomicU64, reclaimed: &AtomicU64) -> Result<(), String> {
    let issue = Issue::ALL[(seed % 3) as usize];
    let preallocate = preallocate_of(seed / 3);
    let (ops, states) = workload(seed);
    // The dry run: everything goes through and ends where the model does.
    let fs = SimFs::new();
    {
        let e = Engine::open(DIR, opts(&fs, issue, preallocate)).map_err(|x| x.to_string())?;
        let r = run(&e, &ops, issue);
        if let Some(f) = r.failure {
            return Err(format!("seed {seed}: dry run: {f}"));
        }
        let got = observe(&e)?;
        if got != states[ops.len()] {
            return Err(format!("seed {seed}: dry run ends at {got:?}"));
        }
    }
    let (n_ops, n_syncs) = fs.counters();
    let mut rng = Rng::new(seed ^ 0xE4_61_4E);
    let triggers = (1..=n_syncs)
        .map(Trigger::Sync)
        .chain((0..RANDOM_POINTS).map(|_| Trigger::Op(rng.range(1, n_ops))))
        .collect::<Vec<_>>();
    for trigger in triggers {
        let fs = SimFs::new();
        fs.arm(trigger);
        let r = match Engine::open(DIR, opts(&fs, issue, preallocate)) {
            Ok(e) => {
                let r = run(&e, &ops, issue);
                fs.kill();
                drop(e);
                r
            }
            Err(x) => Run {
                failure: Some(format!("first open: {x}")),
                ..Run::default()
            },
        };
        if r.failure.is_some() && !fs.is_dead() {
            return Err(format!(
                "seed {seed}: failed without a power cut: {:?}",
                r.failure
            ));
        }
        for _ in 0..IMAGES {
            let image = fs.cut_power(&mut rng);
            let o = opts(&image, issue, preallocate);
            check(&o, &ops, &states, &r).map_err(|x| {
                format!(
                    "seed {seed} {issue:?} {preallocate:?} trigger {trigger:?}: {} acked, {} durable, failure {:?}: {x}",
                    r.acked, r.durable, r.failure
                )
            })?;
            points.fetch_add(1, Ordering::Relaxed);
            if r.freed > 0 {
                reclaimed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

#[test]
fn power_loss_leaves_every_group_at_one_prefix_of_the_writes() {
    let seeds: u64 = std::env::var("RAFTWAL_CRASH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEEDS);
    let points = AtomicU64::new(0);
    let reclaimed = AtomicU64::new(0);
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed) as u64;
                if k >= seeds || !failures.lock().unwrap().is_empty() {
                    return;
                }
                if let Err(x) = run_seed(k, &points, &reclaimed) {
                    failures.lock().unwrap().push(x);
                }
            });
        }
    });
    let points = points.load(Ordering::Relaxed);
    let reclaimed = reclaimed.load(Ordering::Relaxed);
    eprintln!("crash_engine_prefix: {points} crash images over {seeds} workloads, every group at one prefix of the writes; {reclaimed} after a reclaim had freed segments");
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    if seeds >= SEEDS {
        assert!(points >= 1_000, "{points} crash images");
        assert!(
            reclaimed >= 100,
            "{reclaimed} crash images after a reclaim freed segments"
        );
    }
}
