//! A model test of the engine: random batches, each changing several
//! groups at once (appends, conflict cuts, state blobs, compactions,
//! resets, removals), written or submitted, refused batches, and reopens,
//! checked against one plain model per group after every step (first and
//! last index, every entry and term, the term before the first index, the
//! state blob, which groups exist). Small segments, so the stream rolls.

mod common;

use std::collections::BTreeMap;

use common::{data, entries, opts, Model};
use proptest::prelude::*;
use raftwal::{Engine, EngineBatch, Error, Options, Preallocate, SyncPolicy};

/// Group ids: small, large, and 0.
const GROUPS: [u64; 4] = [0, 1, 7, 1 << 40];

#[derive(Debug, Clone)]
enum PartOp {
    /// `n` entries at the last term raised by `bump`.
    Append {
        n: u64,
        bump: u64,
    },
    /// Cut the last `back` entries, then `n` entries at a term raised by
    /// `bump`, and maybe a state blob.
    CutAppend {
        back: u64,
        n: u64,
        bump: u64,
        state: Option<u8>,
    },
    State {
        seed: u8,
    },
    /// Compact to `first + fwd`, at most `last + 1`.
    Compact {
        fwd: u64,
    },
    /// Reset to `last + 1 + shift - 20` (at least 1), at the last term plus
    /// `bump`.
    Reset {
        shift: u64,
        bump: u64,
    },
    Remove,
}

#[derive(Debug, Clone)]
enum Op {
    /// One batch: parts for distinct groups (`GROUPS[k]`), written or
    /// submitted.
    Batch {
        parts: Vec<(usize, PartOp)>,
        submit: bool,
    },
    /// A batch whose last part does not continue its group: refused whole.
    Refused {
        parts: Vec<(usize, PartOp)>,
    },
    /// Free what no group needs (changes nothing a group shows).
    Reclaim,
    Reopen,
}

fn part_op() -> impl Strategy<Value = PartOp> {
    prop_oneof![
        6 => (1..10u64, 0..3u64).prop_map(|(n, bump)| PartOp::Append { n, bump }),
        3 => (0..12u64, 0..6u64, 0..3u64, proptest::option::of(any::<u8>()))
            .prop_map(|(back, n, bump, state)| PartOp::CutAppend { back, n, bump, state }),
        2 => any::<u8>().prop_map(|seed| PartOp::State { seed }),
        2 => (0..20u64).prop_map(|fwd| PartOp::Compact { fwd }),
        1 => (0..40u64, 0..3u64).prop_map(|(shift, bump)| PartOp::Reset { shift, bump }),
        1 => Just(PartOp::Remove),
    ]
}

fn parts() -> impl Strategy<Value = Vec<(usize, PartOp)>> {
    proptest::collection::btree_map(0..GROUPS.len(), part_op(), 1..=GROUPS.len())
        .prop_map(|m| m.into_iter().collect())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (parts(), any::<bool>()).prop_map(|(parts, submit)| Op::Batch { parts, submit }),
        1 => parts().prop_map(|parts| Op::Refused { parts }),
        2 => Just(Op::Reclaim),
        2 => Just(Op::Reopen),
    ]
}

fn blob(seed: u8) -> Vec<u8> {
    (0..seed % 23).map(|k| seed.wrapping_add(k)).collect()
}

/// Adds `op` for `group` to `b`, and applies it to the group's model.
fn add(b: &mut EngineBatch, group: u64, m: &mut Model, op: &PartOp) {
    match *op {
        PartOp::Append { n, bump } => {
            let lo = m.last() + 1;
            let term = m.last_term().max(1) + bump;
            for i in lo..lo + n {
                b.group(group).push(i, term, &data(i, term)).unwrap();
            }
            m.append(&entries(lo, lo + n, term));
        }
        PartOp::CutAppend {
            back,
            n,
            bump,
            state,
        } => {
            let at = m.last() + 1 - back.min(m.entries.len() as u64);
            let term = m.term(at - 1).max(1) + bump;
            b.group(group).truncate_from(at);
            for i in at..at + n {
                b.group(group).push(i, term, &data(i, term)).unwrap();
            }
            m.truncate_from(at);
            m.append(&entries(at, at + n, term));
            if let Some(seed) = state {
                b.group(group).set_state(blob(seed));
                m.state = Some(blob(seed));
            }
        }
        PartOp::State { seed } => {
            b.group(group).set_state(blob(seed));
            m.state = Some(blob(seed));
        }
        PartOp::Compact { fwd } => {
            let at = (m.first + fwd).min(m.last() + 1);
            b.compact(group, at);
            m.compact(at);
        }
        PartOp::Reset { shift, bump } => {
            let next = (m.last() + 1 + shift).saturating_sub(20).max(1);
            let term = m.last_term() + bump;
            b.reset(group, next, term);
            m.reset(next, term);
        }
        PartOp::Remove => {
            b.remove_group(group);
            *m = Model::new();
        }
    }
}

/// Checks every observable of group `group` against its model.
fn check_group(e: &Engine, group: u64, m: &Model) {
    let (first, last) = (m.first, m.last());
    assert_eq!(e.first_index(group), first, "group {group}: first_index");
    assert_eq!(e.last_index(group), last, "group {group}: last_index");
    assert_eq!(
        e.term(group, first - 1).unwrap(),
        m.prev_term,
        "group {group}: term(first-1)"
    );
    assert_eq!(
        e.state(group).as_deref(),
        m.state.as_deref(),
        "group {group}: state"
    );
    for (k, (term, d)) in m.entries.iter().enumerate() {
        let i = first + k as u64;
        assert_eq!(e.term(group, i).unwrap(), *term, "group {group}: term({i})");
        let got = e.get_entry(group, i).unwrap();
        assert_eq!(
            (got.term, &got.data[..]),
            (*term, &d[..]),
            "group {group}: entry {i}"
        );
    }
    let all = e.entries(group, first, last + 1, None).unwrap();
    assert_eq!(all.len(), m.entries.len(), "group {group}: entries()");
    if first > 1 {
        let r = e.entries(group, first - 1, last + 1, None);
        assert!(
            matches!(r, Err(Error::Compacted { .. })),
            "group {group}: {r:?}"
        );
    }
    let r = e.entries(group, first, last + 2, None);
    assert!(
        matches!(r, Err(Error::Unavailable { .. })),
        "group {group}: {r:?}"
    );
}

/// Per group: first index, term before it, entries (term, data), state.
type Groups = Vec<(u64, u64, u64, Vec<(u64, Vec<u8>)>, Option<Vec<u8>>)>;

/// What `tools::engine` makes of the directory, read-only.
fn scanned(dir: &std::path::Path) -> Groups {
    let scan = raftwal::tools::inspect::scan_dir(dir).unwrap();
    let es = raftwal::tools::engine::EngineScan::new(&scan).unwrap();
    es.groups()
        .into_iter()
        .map(|g| {
            let entries = es
                .entries(g.group, g.first_index, g.last_index + 1)
                .unwrap()
                .into_iter()
                .map(|x| (x.term, x.data.to_vec()))
                .collect();
            let state = g.state_len.map(|_| Vec::new());
            (g.group, g.first_index, g.prev_term, entries, state)
        })
        .collect()
}

/// The same, from the open engine (states as their presence only, as the
/// scan reports their length).
fn shown(e: &Engine) -> Groups {
    e.groups()
        .into_iter()
        .map(|g| {
            let (first, last) = (e.first_index(g), e.last_index(g));
            let entries = e
                .entries(g, first, last + 1, None)
                .unwrap()
                .into_iter()
                .map(|x| (x.term, x.data.to_vec()))
                .collect();
            let state = e.state(g).map(|_| Vec::new());
            (g, first, e.term(g, first - 1).unwrap(), entries, state)
        })
        .collect()
}

fn check(e: &Engine, models: &BTreeMap<u64, Model>) {
    let held: Vec<u64> = models.keys().copied().collect();
    assert_eq!(e.groups(), held, "groups");
    for &g in &GROUPS {
        let untouched = Model::new();
        check_group(e, g, models.get(&g).unwrap_or(&untouched));
    }
}

fn run(ops: &[Op], o: Options) {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Some(Engine::open(dir.path(), o.clone()).unwrap());
    let mut models: BTreeMap<u64, Model> = BTreeMap::new();
    for (k, op) in ops.iter().enumerate() {
        let e = engine.as_ref().expect("an open engine");
        match op {
            Op::Batch { parts, submit } => {
                let mut b = EngineBatch::new();
                for (g, pop) in parts {
                    let group = GROUPS[*g];
                    let m = models.entry(group).or_default();
                    add(&mut b, group, m, pop);
                    if matches!(pop, PartOp::Remove) {
                        models.remove(&group);
                    }
                }
                if *submit {
                    e.submit(&mut b).unwrap().wait().unwrap();
                } else {
                    e.write(&mut b).unwrap();
                }
            }
            Op::Refused { parts } => {
                let mut b = EngineBatch::new();
                let mut scratch = models.clone();
                let mut last = 0;
                for (g, pop) in parts {
                    last = GROUPS[*g];
                    add(&mut b, last, scratch.entry(last).or_default(), pop);
                }
                // Refused whatever the rest: a cut past the last group's
                // end (after the part's own entries).
                let end = |ms: &BTreeMap<u64, Model>| ms.get(&last).map_or(0, Model::last);
                let bad = end(&models).max(end(&scratch)) + 5;
                b.group(last).truncate_from(bad);
                let r = e.write(&mut b);
                assert!(
                    matches!(&r, Err(Error::Group { group, .. }) if *group == last),
                    "step {k}: {r:?}"
                );
            }
            Op::Reclaim => {
                let r = e.reclaim().unwrap();
                let lag = e.laggards(GROUPS.len());
                if let Some(l) = lag.first() {
                    assert_eq!(l.segment, r.oldest_segment, "step {k}: {lag:?} {r:?}");
                }
            }
            Op::Reopen => {
                // Closed first: the directory is locked while it is open.
                drop(engine.take());
                let seen = scanned(dir.path());
                engine = Some(Engine::open(dir.path(), o.clone()).unwrap());
                let e = engine.as_ref().expect("an open engine");
                assert_eq!(
                    seen,
                    shown(e),
                    "step {k}: the read-only scan sees what the open does"
                );
            }
        }
        let e = engine.as_ref().expect("an open engine");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(e, &models)));
        if let Err(p) = r {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            panic!("after step {k} ({op:?}): {msg:?}");
        }
    }
    drop(engine);
    let e = Engine::open(dir.path(), o).unwrap();
    check(&e, &models);
}

proptest! {
    #![proptest_config(ProptestConfig {
        // 48 by default (a few seconds in debug); PROPTEST_CASES for more.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_the_model(
        ops in proptest::collection::vec(op(), 1..30),
        manual in any::<bool>(),
        preallocate in prop_oneof![Just(Preallocate::None), Just(Preallocate::ZeroFill)],
    ) {
        let sync = if manual { SyncPolicy::Manual } else { SyncPolicy::Always };
        run(&ops, opts().sync(sync).preallocate(preallocate));
    }
}

/// A fixed sequence through every kind of part, so the model test
/// exercises all of them whatever proptest draws.
#[test]
fn every_part_once() {
    use PartOp::*;
    let batch = |parts: Vec<(usize, PartOp)>| Op::Batch {
        parts,
        submit: false,
    };
    let ops = vec![
        batch(vec![
            (0, Append { n: 9, bump: 1 }),
            (1, Append { n: 5, bump: 1 }),
        ]),
        batch(vec![(0, Append { n: 9, bump: 0 }), (2, State { seed: 40 })]),
        Op::Batch {
            parts: vec![
                (1, Append { n: 30, bump: 2 }),
                (3, Append { n: 3, bump: 1 }),
            ],
            submit: true,
        },
        batch(vec![(
            0,
            CutAppend {
                back: 4,
                n: 2,
                bump: 1,
                state: Some(9),
            },
        )]),
        Op::Reopen,
        batch(vec![(0, Compact { fwd: 6 }), (1, Compact { fwd: 100 })]),
        batch(vec![(2, Reset { shift: 40, bump: 1 }), (3, Remove)]),
        Op::Refused {
            parts: vec![(0, Append { n: 2, bump: 0 }), (2, Append { n: 1, bump: 0 })],
        },
        Op::Reopen,
        batch(vec![
            (2, Append { n: 4, bump: 0 }),
            (3, Append { n: 2, bump: 1 }),
        ]),
        batch(vec![(1, Remove), (0, Compact { fwd: 1 })]),
        Op::Reopen,
        batch(vec![(0, Compact { fwd: 100 }), (2, Compact { fwd: 100 })]),
        Op::Reclaim,
        Op::Reopen,
        batch(vec![(0, Append { n: 3, bump: 1 }), (1, State { seed: 3 })]),
        Op::Reclaim,
        Op::Reopen,
    ];
    run(&ops, opts());
}

/// A directory that holds another kind of log is refused, untouched.
#[test]
fn a_log_that_is_not_an_engine_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = raftwal::Log::open(dir.path(), opts()).unwrap();
        log.append(&entries(1, 4, 1)).unwrap();
    }
    let r = Engine::open(dir.path(), opts());
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    let log = raftwal::Log::open(dir.path(), opts()).unwrap();
    assert_eq!((log.last_index(), log.state()), (3, None));
}
