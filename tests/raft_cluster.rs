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

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use raft::prelude::*;
use raft::{GetEntriesContext, SnapshotStatus, StateRole, Storage};
use raftwal::RaftLogStore;

/// Upper bound on the ticks any one wait may take.
const MAX_TICKS: usize = 2_000;
/// Upper bound on Ready/delivery rounds between two ticks.
const MAX_ROUNDS: usize = 10_000;
/// Upper bound on the whole test's wall-clock time (a guard; it takes
/// about a second).
const MAX_TIME: Duration = Duration::from_secs(300);

struct Node {
    dir: PathBuf,
    raw: Option<RawNode<RaftLogStore>>,
    store: Option<RaftLogStore>,
    /// The state machine: command key -> value.
    sm: BTreeMap<u64, u64>,
    applied: u64,
    /// Snapshots this node installed from the leader.
    snapshots_installed: usize,
}

struct Cluster {
    nodes: Vec<Node>,
    queue: VecDeque<Message>,
    logger: slog::Logger,
    started: Instant,
    _tmp: tempfile::TempDir,
}

fn command(key: u64) -> Vec<u8> {
    let mut v = key.to_le_bytes().to_vec();
    v.extend_from_slice(&value_of(key).to_le_bytes());
    v
}

fn value_of(key: u64) -> u64 {
    key.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 7
}

fn encode_sm(sm: &BTreeMap<u64, u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(sm.len() * 16);
    for (k, v) in sm {
        out.extend_from_slice(&k.to_le_bytes());
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn decode_sm(data: &[u8]) -> BTreeMap<u64, u64> {
    assert_eq!(data.len() % 16, 0, "snapshot data is whole pairs");
    data.chunks_exact(16)
        .map(|c| {
            let k = u64::from_le_bytes(c[..8].try_into().unwrap());
            let v = u64::from_le_bytes(c[8..].try_into().unwrap());
            (k, v)
        })
        .collect()
}

fn apply(sm: &mut BTreeMap<u64, u64>, applied: &mut u64, entries: Vec<Entry>) {
    for e in entries {
        assert!(
            e.index == *applied + 1,
            "entries are applied in order: {} after {}",
            e.index,
            applied
        );
        *applied = e.index;
        if e.data.is_empty() {
            continue; // the empty entry of a new leader
        }
        assert_eq!(e.get_entry_type(), EntryType::EntryNormal);
        assert_eq!(e.data.len(), 16);
        let k = u64::from_le_bytes(e.data[..8].try_into().unwrap());
        let v = u64::from_le_bytes(e.data[8..].try_into().unwrap());
        sm.insert(k, v);
    }
}

impl Cluster {
    fn new() -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = (1..=3)
            .map(|id| Node {
                dir: tmp.path().join(format!("node-{id}")),
                raw: None,
                store: None,
                sm: BTreeMap::new(),
                applied: 0,
                snapshots_installed: 0,
            })
            .collect();
        let mut c = Cluster {
            nodes,
            queue: VecDeque::new(),
            logger: slog::Logger::root(slog::Discard, slog::o!()),
            started: Instant::now(),
            _tmp: tmp,
        };
        for id in 1..=3 {
            c.start(id);
        }
        c
    }

    fn node(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    /// Opens node `id`'s store from disk, restores its state machine from
    /// the stored snapshot (if any) and starts its RawNode.
    fn start(&mut self, id: u64) {
        let logger = self.logger.clone();
        let n = self.node(id);
        assert!(n.raw.is_none(), "node {id} is already up");
        let store = RaftLogStore::open(&n.dir).unwrap();
        let st = store.initial_state().unwrap();
        if st.conf_state.voters.is_empty() {
            // A brand-new node: every node starts with the same config.
            store
                .set_conf_state(ConfState::from((vec![1, 2, 3], vec![])))
                .unwrap();
        }
        let (sm, applied) = match store.snapshot(0, 0) {
            Ok(s) => (decode_sm(&s.data), s.get_metadata().index),
            Err(e) => {
                assert_eq!(
                    e,
                    raft::Error::Store(raft::StorageError::SnapshotTemporarilyUnavailable)
                );
                (BTreeMap::new(), 0)
            }
        };
        let cfg = Config {
            id,
            election_tick: 10,
            heartbeat_tick: 3,
            applied,
            max_size_per_msg: 64 << 10,
            max_inflight_msgs: 64,
            ..Default::default()
        };
        let raw = RawNode::new(&cfg, store.clone(), &logger).unwrap();
        n.sm = sm;
        n.applied = applied;
        n.raw = Some(raw);
        n.store = Some(store);
    }

    /// Takes node `id` down: its RawNode, its store and its in-memory state
    /// machine are dropped; only its directory remains.
    fn stop(&mut self, id: u64) {
        let n = self.node(id);
        n.raw = None;
        n.store = None;
        n.sm.clear();
        n.applied = 0;
    }

    fn is_up(&self, id: u64) -> bool {
        self.nodes[id as usize - 1].raw.is_some()
    }

    fn leader(&self) -> Option<u64> {
        let leaders: Vec<u64> = self
            .nodes
            .iter()
            .filter_map(|n| n.raw.as_ref())
            .filter(|r| r.raft.state == StateRole::Leader)
            .map(|r| r.raft.id)
            .collect();
        // Two nodes may both think they lead (in different terms) for a
        // moment; the one with the higher term is the real one.
        leaders.into_iter().max_by_key(|&id| {
            self.nodes[id as usize - 1]
                .raw
                .as_ref()
                .map_or(0, |r| r.raft.term)
        })
    }

    /// Handles node `id`'s Ready, if it has one. Returns whether it did.
    fn handle_ready(&mut self, id: u64) -> bool {
        let mut out = Vec::new();
        let Node {
            raw,
            sm,
            applied,
            snapshots_installed,
            ..
        } = &mut self.nodes[id as usize - 1];
        let Some(raw) = raw.as_mut() else {
            return false;
        };
        if !raw.has_ready() {
            return false;
        }
        let store = raw.store().clone();
        let mut rd = raw.ready();
        // These may leave before the write below (raft-rs allows a leader
        // to send appends while it persists them itself).
        out.extend(rd.take_messages());
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            store.apply_snapshot(snap.clone()).unwrap();
            *sm = decode_sm(&snap.data);
            *applied = snap.get_metadata().index;
            *snapshots_installed += 1;
        }
        apply(sm, applied, rd.take_committed_entries());
        // Entries and hard state: one write, one fsync...
        store.persist(rd.entries(), rd.hs(), None).unwrap();
        // ...and only then the messages that promise they are durable.
        out.extend(rd.take_persisted_messages());
        let mut light = raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            store.commit_to(commit).unwrap();
        }
        out.extend(light.take_messages());
        apply(sm, applied, light.take_committed_entries());
        raw.advance_apply();
        self.queue.extend(out);
        true
    }

    /// Delivers every queued message. Messages to a node that is down are
    /// lost (and reported unreachable).
    fn deliver(&mut self) -> bool {
        let mut any = false;
        while let Some(m) = self.queue.pop_front() {
            any = true;
            let (from, to) = (m.from, m.to);
            let is_snap = m.get_msg_type() == MessageType::MsgSnapshot;
            let delivered = match self.node(to).raw.as_mut() {
                Some(raw) => {
                    // A message from an older term may be refused; that is
                    // raft's business.
                    let _ = raw.step(m);
                    true
                }
                None => false,
            };
            if let Some(sender) = self.node(from).raw.as_mut() {
                if !delivered {
                    sender.report_unreachable(to);
                }
                if is_snap {
                    let status = if delivered {
                        SnapshotStatus::Finish
                    } else {
                        SnapshotStatus::Failure
                    };
                    sender.report_snapshot(to, status);
                }
            }
        }
        any
    }

    /// Ready handling and delivery until nothing moves.
    fn pump(&mut self) {
        for _ in 0..MAX_ROUNDS {
            let mut busy = false;
            for id in 1..=3 {
                busy |= self.handle_ready(id);
            }
            busy |= self.deliver();
            if !busy {
                return;
            }
        }
        panic!("the cluster did not settle within {MAX_ROUNDS} rounds");
    }

    fn tick(&mut self) {
        for n in &mut self.nodes {
            if let Some(raw) = n.raw.as_mut() {
                raw.tick();
            }
        }
        self.pump();
    }

    /// Ticks until `done`, at most `MAX_TICKS` times.
    fn wait(&mut self, what: &str, done: impl Fn(&Cluster) -> bool) {
        for _ in 0..MAX_TICKS {
            assert!(
                self.started.elapsed() < MAX_TIME,
                "{what}: the test ran over {MAX_TIME:?}"
            );
            self.pump();
            if done(self) {
                return;
            }
            self.tick();
        }
        panic!("{what}: not done within {MAX_TICKS} ticks");
    }

    fn wait_for_leader(&mut self) -> u64 {
        self.wait("electing a leader", |c| c.leader().is_some());
        self.leader().unwrap()
    }

    /// Proposes commands `keys` until every up node has applied all of
    /// them (re-proposing what a leader change dropped).
    fn commit_all(&mut self, keys: std::ops::Range<u64>) {
        for _ in 0..20 {
            let leader = self.wait_for_leader();
            let missing: Vec<u64> = {
                let sm = &self.nodes[leader as usize - 1].sm;
                keys.clone().filter(|k| !sm.contains_key(k)).collect()
            };
            if missing.is_empty() {
                break;
            }
            for chunk in missing.chunks(100) {
                for &k in chunk {
                    let raw = self.node(leader).raw.as_mut().unwrap();
                    // Dropped proposals are found missing and proposed again.
                    let _ = raw.propose(vec![], command(k));
                }
                self.pump();
            }
            self.wait("committing", |c| {
                let Some(l) = c.leader() else { return true };
                let sm = &c.nodes[l as usize - 1].sm;
                keys.clone().all(|k| sm.contains_key(&k))
            });
        }
        self.wait_in_sync(&format!("applying {keys:?} everywhere"));
        for n in self.nodes.iter().filter(|n| n.raw.is_some()) {
            for k in keys.clone() {
                assert_eq!(n.sm.get(&k), Some(&value_of(k)), "key {k}");
            }
        }
    }

    /// Waits until every up node has applied the leader's commit index.
    fn wait_in_sync(&mut self, what: &str) {
        self.wait(what, |c| {
            let Some(l) = c.leader() else { return false };
            let commit = c.nodes[l as usize - 1]
                .raw
                .as_ref()
                .unwrap()
                .raft
                .raft_log
                .committed;
            c.nodes
                .iter()
                .filter(|n| n.raw.is_some())
                .all(|n| n.applied == commit)
        });
    }

    fn followers(&self) -> Vec<u64> {
        let l = self.leader();
        (1..=3)
            .filter(|&id| Some(id) != l && self.is_up(id))
            .collect()
    }
}

#[test]
fn three_nodes_elect_replicate_restart_and_catch_up_by_snapshot() {
    let mut c = Cluster::new();
    c.node(1).raw.as_mut().unwrap().campaign().unwrap();
    let leader = c.wait_for_leader();

    // 1,000 commands.
    c.commit_all(0..1000);

    // A follower goes down with its store; the others go on.
    let f = c.followers()[0];
    c.stop(f);
    c.commit_all(1000..1500);
    let behind = c.nodes[f as usize - 1].applied;
    assert_eq!(behind, 0);
    // It comes back from its directory and catches up from the log.
    c.start(f);
    c.commit_all(1500..1600);
    assert_eq!(c.nodes[f as usize - 1].sm.len(), 1600);

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
        let n = c.node(id);
        let store = n.store.clone().unwrap();
        let cs = store.initial_state().unwrap().conf_state;
        store
            .create_snapshot(n.applied, cs, encode_sm(&n.sm))
            .unwrap();
        store.compact(n.applied).unwrap();
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
    for n in &c.nodes {
        assert_eq!(n.sm, want);
    }
    compare_logs(&c);

    // And the same again from disk, every node restarted.
    for id in 1..=3 {
        c.stop(id);
    }
    for id in 1..=3 {
        c.start(id);
    }
    c.commit_all(2100..2110);
    let want: BTreeMap<u64, u64> = (0..2110).map(|k| (k, value_of(k))).collect();
    for n in &c.nodes {
        assert_eq!(n.sm, want);
    }
    compare_logs(&c);
}

fn compare_logs(c: &Cluster) {
    let stores: Vec<&RaftLogStore> = c.nodes.iter().map(|n| n.store.as_ref().unwrap()).collect();
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
