//! raft-rs's asynchronous Ready on `RaftLogStore::submit`: three nodes hand
//! each Ready to the store without waiting (`advance_append_async`), report
//! it with `on_persist_ready` once its ticket is durable, and only then send
//! the messages that depend on it. The cluster agrees, fewer `fdatasync`
//! rounds than Readies are run (one sync covers many submits), and everything
//! survives a reopen.

use std::collections::{BTreeMap, VecDeque};

use raft::prelude::*;
use raft::{Config, RawNode, Storage};
use raftwal::{RaftLogStore, Ticket};

struct Node {
    raw: RawNode<RaftLogStore>,
    store: RaftLogStore,
    kv: BTreeMap<u64, Vec<u8>>,
    /// Readies handed to the store, oldest first: number, ticket, and the
    /// messages that may leave only once it is durable.
    pending: VecDeque<(u64, Ticket, Vec<Message>)>,
    readies: u64,
}

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// Each node's store: a directory of its own, or group 5 of an engine in
/// its directory.
#[derive(Clone, Copy)]
enum Kind {
    Own,
    Group,
}

fn open(id: u64, dir: &std::path::Path, kind: Kind) -> Node {
    let store = match kind {
        Kind::Own => RaftLogStore::open(dir).unwrap(),
        Kind::Group => {
            let engine = std::sync::Arc::new(
                raftwal::Engine::open(dir, raftwal::Options::default()).unwrap(),
            );
            engine.group(5).unwrap()
        }
    };
    if store.initial_state().unwrap().conf_state.voters.is_empty() {
        store
            .set_conf_state(ConfState::from((vec![1, 2, 3], vec![])))
            .unwrap();
    }
    let applied = store.initial_state().unwrap().hard_state.commit;
    let cfg = Config {
        id,
        election_tick: 10,
        heartbeat_tick: 3,
        applied,
        ..Default::default()
    };
    let raw = RawNode::new(&cfg, store.clone(), &logger()).unwrap();
    let mut kv = BTreeMap::new();
    // Replay what was committed before (no snapshots in this test).
    let first = store.first_index().unwrap();
    if applied >= first {
        for e in store
            .entries(
                first,
                applied + 1,
                None,
                raft::GetEntriesContext::empty(false),
            )
            .unwrap()
        {
            if !e.data.is_empty() {
                kv.insert(e.index, e.data.to_vec());
            }
        }
    }
    Node {
        raw,
        store,
        kv,
        pending: VecDeque::new(),
        readies: 0,
    }
}

/// Handles one node's Ready asynchronously; returns the messages to send.
fn step(n: &mut Node, out: &mut Vec<Message>) {
    // With nothing else to do, a node waits for its oldest write, as an
    // event loop would; otherwise it goes on and only reports what became
    // durable meanwhile, oldest first.
    if !n.raw.has_ready() {
        if let Some((_, t, _)) = n.pending.front() {
            t.wait().unwrap();
        }
    }
    while n.pending.front().is_some_and(|p| p.1.is_durable()) {
        let (number, _, msgs) = n.pending.pop_front().unwrap();
        n.raw.on_persist_ready(number);
        out.extend(msgs);
    }
    if !n.raw.has_ready() {
        return;
    }
    let mut rd = n.raw.ready();
    n.readies += 1;
    out.extend(rd.take_messages());
    assert!(rd.snapshot().is_empty(), "no snapshots in this test");
    for e in rd.take_committed_entries() {
        if !e.data.is_empty() {
            n.kv.insert(e.index, e.data.to_vec());
        }
    }
    let ticket = n.store.submit(rd.entries(), rd.hs(), None).unwrap();
    let number = rd.number();
    let persisted = rd.take_persisted_messages();
    n.raw.advance_append_async(rd);
    n.raw.advance_apply();
    n.pending.push_back((number, ticket, persisted));
}

fn run(nodes: &mut [Node], rounds: usize, mut propose: impl FnMut(usize, &mut [Node])) {
    let mut queue: Vec<Message> = Vec::new();
    for round in 0..rounds {
        for n in nodes.iter_mut() {
            n.raw.tick();
        }
        propose(round, nodes);
        for _ in 0..4 {
            let mut out = Vec::new();
            for n in nodes.iter_mut() {
                step(n, &mut out);
            }
            queue.extend(out);
            for m in std::mem::take(&mut queue) {
                let to = m.to as usize - 1;
                let _ = nodes[to].raw.step(m);
            }
        }
    }
}

fn leader(nodes: &[Node]) -> Option<usize> {
    nodes
        .iter()
        .position(|n| n.raw.raft.state == raft::StateRole::Leader)
}

#[test]
fn three_nodes_on_asynchronous_ready_agree_and_survive_a_reopen() {
    agree_and_survive_a_reopen(Kind::Own);
}

/// The same, each store a group of an engine.
#[test]
fn three_engine_groups_on_asynchronous_ready_agree_and_survive_a_reopen() {
    agree_and_survive_a_reopen(Kind::Group);
}

fn agree_and_survive_a_reopen(kind: Kind) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| open(i as u64 + 1, dirs[i].path(), kind))
        .collect();
    nodes[0].raw.campaign().unwrap();
    run(&mut nodes, 30, |_, _| {});
    assert!(leader(&nodes).is_some(), "no leader elected");

    let total = 300usize;
    let mut proposed = 0;
    run(&mut nodes, 400, |_, nodes| {
        if let Some(l) = leader(nodes) {
            for _ in 0..3 {
                if proposed < total {
                    let cmd = format!("cmd-{proposed}").into_bytes();
                    if nodes[l].raw.propose(vec![], cmd).is_ok() {
                        proposed += 1;
                    }
                }
            }
        }
    });
    // Let everything become durable and applied.
    for n in nodes.iter() {
        for (_, t, _) in &n.pending {
            t.wait().unwrap();
        }
    }
    run(&mut nodes, 40, |_, _| {});

    let values = |n: &Node| n.kv.values().cloned().collect::<Vec<_>>();
    assert_eq!(proposed, total);
    assert_eq!(nodes[0].kv.len(), total, "not every command was applied");
    assert_eq!(values(&nodes[0]), values(&nodes[1]));
    assert_eq!(values(&nodes[0]), values(&nodes[2]));
    // Submits were pipelined: fewer sync rounds than Readies.
    for n in &nodes {
        let s = n.store.stats();
        assert!(
            s.sync_rounds < n.readies,
            "{} sync rounds for {} readies",
            s.sync_rounds,
            n.readies
        );
        assert_eq!(s.durable_writes, s.writes);
    }
    let expected = values(&nodes[0]);
    let last: Vec<u64> = nodes
        .iter()
        .map(|n| n.store.last_index().unwrap())
        .collect();
    drop(nodes);

    // Everything acknowledged is on disk.
    for (i, d) in dirs.iter().enumerate() {
        let n = open(i as u64 + 1, d.path(), kind);
        assert_eq!(n.store.last_index().unwrap(), last[i]);
        assert_eq!(n.kv.values().cloned().collect::<Vec<_>>(), expected);
    }
}
