//! A model test: random sequences of appends (written, or submitted
//! without waiting, so staged while the background syncer runs), cuts,
//! compactions, resets, state blobs, batches and reopens, checked against a plain `Vec` model
//! after every step (first and last index, every entry and term, the term
//! before the first index, the state blob). Small segments, so they roll.

mod common;

use common::{data, entries, opts, Model};
use proptest::prelude::*;
use raftwal::{Entry, Error, Log, Options, Preallocate, SyncPolicy, WriteBatch};

#[derive(Debug, Clone)]
enum Op {
    /// `n` entries, the term raised by `bump`.
    Append {
        n: u64,
        bump: u64,
    },
    /// `n` entries through `Log::submit`, not waited for (staged once the
    /// background syncer runs), the term raised by `bump`.
    Submit {
        n: u64,
        bump: u64,
    },
    /// Cut the last `back` entries.
    Truncate {
        back: u64,
    },
    /// Compact to `first + fwd` (an error past `last + 1`).
    Compact {
        fwd: u64,
    },
    /// Reset to `last + 1 + shift - 20`, at the last term plus `bump`
    /// minus 1 (so sometimes lower).
    Reset {
        shift: u64,
        bump: u64,
    },
    SetState {
        len: usize,
        seed: u8,
    },
    /// Cut the last `back` entries, append `n` at a term raised by `bump`,
    /// maybe set the state, in one batch.
    Batch {
        back: u64,
        n: u64,
        bump: u64,
        state: Option<u8>,
    },
    Reopen,
    /// Append an entry whose term is below the last one: refused.
    DecreasingTerm,
    /// Cut beyond `last + 1` or below `first`: refused.
    BadTruncate {
        below: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..12u64, 0..3u64).prop_map(|(n, bump)| Op::Append { n, bump }),
        4 => (1..12u64, 0..3u64).prop_map(|(n, bump)| Op::Submit { n, bump }),
        2 => (0..25u64).prop_map(|back| Op::Truncate { back }),
        2 => (0..40u64).prop_map(|fwd| Op::Compact { fwd }),
        1 => (0..60u64, 0..3u64).prop_map(|(shift, bump)| Op::Reset { shift, bump }),
        1 => (0..40usize, any::<u8>()).prop_map(|(len, seed)| Op::SetState { len, seed }),
        3 => (0..25u64, 0..8u64, 0..3u64, proptest::option::of(any::<u8>()))
            .prop_map(|(back, n, bump, state)| Op::Batch { back, n, bump, state }),
        2 => Just(Op::Reopen),
        1 => Just(Op::DecreasingTerm),
        1 => any::<bool>().prop_map(|below| Op::BadTruncate { below }),
    ]
}

fn state_blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|k| seed.wrapping_add(k as u8)).collect()
}

/// The index `back` entries before the end, never below the first index.
fn cut_point(m: &Model, back: u64) -> u64 {
    m.last() + 1 - back.min(m.entries.len() as u64)
}

fn apply(slot: &mut Option<Log>, m: &mut Model, op: &Op, o: &Options, dir: &std::path::Path) {
    let log = slot.as_ref().expect("an open log");
    match *op {
        Op::Append { n, bump } => {
            let lo = m.last() + 1;
            let es = entries(lo, lo + n, m.last_term() + bump);
            log.append(&es).unwrap();
            m.append(&es);
        }
        Op::Submit { n, bump } => {
            let lo = m.last() + 1;
            let term = m.last_term() + bump;
            let mut b = WriteBatch::new();
            for i in lo..lo + n {
                b.push(i, term, &data(i, term)).unwrap();
            }
            log.submit(&mut b).unwrap();
            m.append(&entries(lo, lo + n, term));
        }
        Op::Truncate { back } => {
            let at = cut_point(m, back);
            log.truncate_from_index(at).unwrap();
            m.truncate_from(at);
        }
        Op::Compact { fwd } => {
            let at = m.first + fwd;
            if at > m.last() + 1 {
                assert!(matches!(log.compact(at), Err(Error::Unavailable { .. })));
            } else {
                log.compact(at).unwrap();
                m.compact(at);
            }
        }
        Op::Reset { shift, bump } => {
            let next = (m.last() + 1 + shift).saturating_sub(20).max(1);
            let term = (m.last_term() + bump).saturating_sub(1);
            log.reset(next, term).unwrap();
            m.reset(next, term);
        }
        Op::SetState { len, seed } => {
            log.set_state(state_blob(len, seed)).unwrap();
            m.state = Some(state_blob(len, seed));
        }
        Op::Batch {
            back,
            n,
            bump,
            state,
        } => {
            let at = cut_point(m, back);
            let term = m.term(at - 1).max(1) + bump;
            let mut b = WriteBatch::new();
            b.truncate_from(at);
            for i in at..at + n {
                b.push(i, term, &data(i, term)).unwrap();
            }
            if let Some(seed) = state {
                b.set_state(state_blob(seed as usize % 17, seed));
            }
            log.write(&mut b).unwrap();
            m.truncate_from(at);
            m.append(&entries(at, at + n, term));
            if let Some(seed) = state {
                m.state = Some(state_blob(seed as usize % 17, seed));
            }
        }
        Op::Reopen => {
            // Closed first: the directory is locked while the log is open.
            *slot = None;
            let log = Log::open(dir, o.clone()).unwrap();
            let r = log.recovery_report();
            assert!(r.repairs.is_empty(), "{r:?}");
            *slot = Some(log);
        }
        Op::DecreasingTerm => {
            let t = m.last_term();
            if t > 0 {
                let i = m.last() + 1;
                let r = log.append(&[Entry::new(i, t - 1, data(i, t - 1))]);
                assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
            }
        }
        Op::BadTruncate { below } => {
            if below && m.first > 1 {
                let r = log.truncate_from_index(m.first - 1);
                assert!(matches!(r, Err(Error::Compacted { .. })), "{r:?}");
            } else if !below {
                let r = log.truncate_from_index(m.last() + 2);
                assert!(matches!(r, Err(Error::Unavailable { .. })), "{r:?}");
            }
        }
    }
}

fn run(ops: &[Op], o: Options) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Some(Log::open(dir.path(), o.clone()).unwrap());
    let mut m = Model::new();
    for (k, op) in ops.iter().enumerate() {
        apply(&mut log, &mut m, op, &o, dir.path());
        let open = log.as_ref().expect("an open log");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.check(open)));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
            panic!("after step {k} ({op:?}): {msg:?}");
        }
    }
    drop(log);
    let log = Log::open(dir.path(), o).unwrap();
    m.check(&log);
}

proptest! {
    #![proptest_config(ProptestConfig {
        // 64 by default (a few seconds in debug); PROPTEST_CASES for more.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_matches_the_model(
        ops in proptest::collection::vec(op(), 1..40),
        manual in any::<bool>(),
        preallocate in prop_oneof![
            Just(Preallocate::None),
            Just(Preallocate::Allocate),
            Just(Preallocate::ZeroFill),
        ],
    ) {
        let sync = if manual { SyncPolicy::Manual } else { SyncPolicy::Always };
        run(&ops, opts().sync(sync).preallocate(preallocate));
    }
}

/// A fixed sequence that goes through every kind of operation, so the
/// model test exercises all of them whatever proptest draws.
#[test]
fn every_operation_once() {
    let ops = [
        Op::Append { n: 11, bump: 1 },
        Op::Append { n: 11, bump: 0 },
        Op::Append { n: 11, bump: 1 },
        Op::SetState { len: 9, seed: 3 },
        Op::Append { n: 11, bump: 0 },
        Op::Append { n: 11, bump: 2 },
        Op::Append { n: 11, bump: 0 },
        Op::Append { n: 11, bump: 0 },
        Op::Truncate { back: 20 },
        Op::Submit { n: 3, bump: 0 },
        Op::Submit { n: 11, bump: 1 },
        Op::Submit { n: 11, bump: 0 },
        Op::Truncate { back: 5 },
        Op::Submit { n: 4, bump: 0 },
        Op::Reopen,
        Op::Batch {
            back: 24,
            n: 7,
            bump: 1,
            state: Some(40),
        },
        Op::Compact { fwd: 30 },
        Op::Reopen,
        Op::Compact { fwd: 1000 },
        Op::DecreasingTerm,
        Op::BadTruncate { below: true },
        Op::BadTruncate { below: false },
        Op::Reset { shift: 0, bump: 0 },
        Op::Reopen,
        Op::Append { n: 5, bump: 0 },
        Op::Submit { n: 5, bump: 0 },
        Op::Reopen,
    ];
    run(&ops, opts());
}
