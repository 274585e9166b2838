//! Three `raft::RawNode`s in one process, each on its own `RaftLogStore`,
//! exchanging messages through an in-memory queue. The Ready loop persists
//! entries and hard state in one atomic batch before sending the messages
//! that depend on them, and applies committed entries to a `BTreeMap`.
//!
//! The scenario: elect a leader and commit 1,000 commands; take a follower
//! down with its store (and its state machine), commit more, bring it back
//! from disk and watch it catch up; restart the leader; take a follower down
//! while the others snapshot and compact past it, and watch it catch up by
//! snapshot. At the end every state machine and every log agree. Every wait
//! is bounded by a number of ticks, not by time.

use std::collections::BTreeMap;

use raft::{GetEntriesContext, Storage};
use raftwal::RaftLogStore;

#[path = "common/raft_net.rs"]
mod raft_net;

use raft_net::{encode, value_of, Boot, Cluster};

#[test]
fn three_nodes_elect_replicate_restart_and_catch_up_by_snapshot() {
    let mut c = Cluster::new(3, Boot::AllVoters, false);
    c.elect_node_1();
    let leader = 1;

    // 1,000 commands.
    c.commit_all(0..1000);

    // A follower goes down with its store; the others go on.
    let f = c.followers()[0];
    c.stop(f);
    c.commit_all(1000..1500);
    assert!(!c.is_up(f), "node {f} is down");
    // It comes back from its directory and catches up from the log.
    c.start(f);
    c.commit_all(1500..1600);
    assert_eq!(c.machine(f).kv.len(), 1600);

    // The leader restarts; someone (maybe it again) leads afterwards.
    let old = c.leader().unwrap_or(leader);
    c.stop(old);
    let new = c.wait_for_leader();
    assert_ne!(new, old);
    c.start(old);
    c.commit_all(1600..1700);

    // A follower falls behind a compaction.
    let g = c.followers()[0];
    c.stop(g);
    c.commit_all(1700..2000);
    let up: Vec<u64> = (1..=3).filter(|&id| c.is_up(id)).collect();
    for id in up {
        let (store, m) = (c.store(id), c.machine(id));
        let cs = store.initial_state().unwrap().conf_state;
        store.create_snapshot(m.applied, cs, encode(&m.kv)).unwrap();
        store.compact(m.applied).unwrap();
        assert!(store.first_index().unwrap() > 1700);
    }
    c.start(g);
    c.commit_all(2000..2100);
    assert!(
        c.nodes[g as usize - 1].snapshots_installed >= 1,
        "node {g} caught up by snapshot"
    );

    // Finally everything agrees: state machines, commit, logs.
    c.wait_in_sync("final sync");
    let want: BTreeMap<u64, u64> = (0..2100).map(|k| (k, value_of(k))).collect();
    for id in 1..=3 {
        assert_eq!(c.machine(id).kv, want, "node {id}");
    }
    compare_logs(&c);

    // And the same again from disk, every node restarted.
    c.restart_all();
    c.commit_all(2100..2110);
    c.assert_all_hold(2110);
    compare_logs(&c);
}

fn compare_logs(c: &Cluster) {
    let stores: Vec<RaftLogStore> = (1..=3).map(|id| c.store(id)).collect();
    let last = stores[0].last_index().unwrap();
    let first = stores
        .iter()
        .map(|s| s.first_index().unwrap())
        .max()
        .unwrap();
    assert!(first <= last, "the logs overlap");
    let want = stores[0]
        .entries(first, last + 1, None, GetEntriesContext::empty(false))
        .unwrap();
    for (k, s) in stores.iter().enumerate() {
        assert_eq!(s.last_index().unwrap(), last, "node {}", k + 1);
        let got = s
            .entries(first, last + 1, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got, want, "node {}", k + 1);
        let hs = s.initial_state().unwrap().hard_state;
        assert_eq!(hs.commit, last, "node {}", k + 1);
        assert_eq!(
            s.term(first - 1).unwrap(),
            stores[0].term(first - 1).unwrap()
        );
    }
}
