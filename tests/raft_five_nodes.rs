//! The way raft-rs's own examples start a cluster, on `RaftLogStore`s: node
//! 1 bootstraps from a snapshot at index 1 whose configuration has only
//! itself as a voter; nodes 2 to 5 start with empty stores and are added
//! by conf changes, one at a time; then commands are proposed, and nodes
//! are killed (their RawNode, store and state machine dropped, only the
//! directory left) and restarted from disk with `RaftLogStore::startup`.
//!
//! A new peer needs a snapshot (the leader's log starts after the bootstrap
//! snapshot). The first test registers no snapshot source: the store serves
//! the bootstrap snapshot advanced over the empty entry and conf changes
//! after it. In the second, the leader compacts its log past followers that
//! are down, and its registered source serves their snapshots, data
//! included. Both end with every acknowledged command on every node. Every
//! wait is bounded by a number of ticks.

#[path = "common/raft_net.rs"]
mod raft_net;

use raft_net::{Boot, Cluster, Stores};

const NODES: u64 = 5;

/// Two followers up, neither of them the leader.
fn two_followers(c: &Cluster) -> (u64, u64) {
    let f = c.followers();
    (f[0], f[1])
}

/// Bootstraps node 1, adds nodes 2 to 5 by conf changes (each needs a
/// snapshot: no source is registered, so the store advances its bootstrap
/// snapshot over the conf changes), commits commands, and kills and
/// restarts followers and the leader.
#[test]
fn five_nodes_from_a_bootstrap_snapshot_with_no_snapshot_source() {
    bootstrap_add_kill_restart(Cluster::new(NODES, Boot::FirstNode, false));
}

/// The same, each node's store a group of an engine in its directory.
#[test]
fn five_nodes_on_engine_groups() {
    let stores = Stores::EngineGroup(42);
    bootstrap_add_kill_restart(Cluster::with_stores(NODES, Boot::FirstNode, false, stores));
}

fn bootstrap_add_kill_restart(mut c: Cluster) {
    c.elect_node_1();
    for id in 2..=NODES {
        c.add_voter(id);
        assert!(
            c.nodes[id as usize - 1].snapshots_installed >= 1,
            "node {id} got a snapshot"
        );
    }
    c.commit_all(0..300);

    // A follower is killed, the others go on, it comes back from disk.
    let f = c.followers()[0];
    c.stop(f);
    c.commit_all(300..500);
    c.start(f);
    c.commit_all(500..600);

    // Two followers down at once, then the leader.
    let (a, b) = two_followers(&c);
    c.stop(a);
    c.stop(b);
    c.commit_all(600..700);
    c.start(a);
    c.start(b);
    let old = c.leader().unwrap();
    c.stop(old);
    c.commit_all(700..800);
    c.start(old);
    c.commit_all(800..850);
    c.assert_all_hold(850);

    // Every node restarted from its directory.
    c.restart_all();
    c.commit_all(850..900);
    c.assert_all_hold(900);
}

/// As above, but the leader compacts its log (without storing snapshots
/// of its own) past two followers that are down: when they come back, the
/// leader's registered snapshot source serves their snapshots, with the
/// state machine's data.
#[test]
fn five_nodes_catch_up_through_a_snapshot_source_after_compaction() {
    let mut c = Cluster::new(NODES, Boot::FirstNode, true);
    c.elect_node_1();
    for id in 2..=NODES {
        c.add_voter(id);
    }
    c.commit_all(0..200);
    let leader = c.leader().unwrap();
    let (a, b) = two_followers(&c);
    c.stop(a);
    c.stop(b);
    c.commit_all(200..600);
    // The leader compacts to what it applied.
    let applied = c.machine(leader).applied;
    let store = c.store(leader);
    store.compact(applied).unwrap();
    let first = raft::Storage::first_index(&store).unwrap();
    assert_eq!(first, applied);
    let stored_before = store.snapshot_metadata().map(|m| m.index);
    c.start(a);
    c.start(b);
    c.commit_all(600..650);
    for id in [a, b] {
        assert!(
            c.nodes[id as usize - 1].snapshots_installed >= 1,
            "node {id} caught up by snapshot"
        );
    }
    let stored_after = store.snapshot_metadata().map(|m| m.index);
    assert!(
        stored_after.unwrap_or(0) >= first - 1 && stored_after != stored_before,
        "the source's snapshot was stored: {stored_before:?} -> {stored_after:?}"
    );
    c.assert_all_hold(650);
}
