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

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protobuf::Message as PbMessage;
use raft::prelude::*;
use raft::{SnapshotStatus, StateRole};
use raftwal::{RaftLogStore, SourcedSnapshot};

const NODES: u64 = 5;
/// Upper bound on the ticks any one wait may take.
const MAX_TICKS: usize = 2_000;
/// Upper bound on Ready/delivery rounds between two ticks.
const MAX_ROUNDS: usize = 10_000;
/// A guard on the whole test's wall-clock time (it takes seconds).
const MAX_TIME: Duration = Duration::from_secs(300);

/// A node's state machine: what the Ready loop applied.
#[derive(Default, Clone)]
struct Machine {
    kv: BTreeMap<u64, u64>,
    applied: u64,
    conf: ConfState,
}

fn value_of(key: u64) -> u64 {
    key.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 11
}

fn command(key: u64) -> Vec<u8> {
    let mut v = key.to_le_bytes().to_vec();
    v.extend_from_slice(&value_of(key).to_le_bytes());
    v
}

fn encode(kv: &BTreeMap<u64, u64>) -> Vec<u8> {
    kv.iter()
        .flat_map(|(k, v)| k.to_le_bytes().into_iter().chain(v.to_le_bytes()))
        .collect()
}

fn decode(data: &[u8]) -> BTreeMap<u64, u64> {
    assert_eq!(data.len() % 16, 0, "snapshot data is whole pairs");
    data.chunks_exact(16)
        .map(|c| {
            let k = u64::from_le_bytes(c[..8].try_into().unwrap());
            (k, u64::from_le_bytes(c[8..].try_into().unwrap()))
        })
        .collect()
}

struct Node {
    dir: PathBuf,
    raw: Option<RawNode<RaftLogStore>>,
    machine: Arc<Mutex<Machine>>,
    snapshots_installed: usize,
}

struct Cluster {
    nodes: Vec<Node>,
    queue: VecDeque<Message>,
    logger: slog::Logger,
    /// Register a snapshot source on every node.
    with_source: bool,
    started: Instant,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    fn new(with_source: bool) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = (1..=NODES)
            .map(|id| Node {
                dir: tmp.path().join(format!("node-{id}")),
                raw: None,
                machine: Arc::default(),
                snapshots_installed: 0,
            })
            .collect();
        let mut c = Cluster {
            nodes,
            queue: VecDeque::new(),
            logger: slog::Logger::root(slog::Discard, slog::o!()),
            with_source,
            started: Instant::now(),
            _tmp: tmp,
        };
        for id in 1..=NODES {
            c.start(id);
        }
        c
    }

    fn node(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    /// Opens node `id`'s store and starts its RawNode as an application
    /// would: a new store on node 1 bootstraps the cluster, a new one
    /// elsewhere waits for the leader; an existing one restores its state
    /// machine from the stored snapshot and replays the rest.
    fn start(&mut self, id: u64) {
        let (logger, with_source) = (self.logger.clone(), self.with_source);
        let n = self.node(id);
        assert!(n.raw.is_none(), "node {id} is already up");
        let store = RaftLogStore::open(&n.dir).unwrap();
        let start = store.startup().unwrap();
        if start.is_new && id == 1 {
            store.bootstrap(ConfState::from((vec![1], vec![]))).unwrap();
        }
        let start = store.startup().unwrap();
        let mut m = Machine {
            applied: start.applied,
            conf: store.initial_state().unwrap().conf_state,
            ..Default::default()
        };
        if let Some(s) = &start.snapshot {
            m.kv = decode(&s.data);
        }
        *n.machine.lock().unwrap() = m;
        if with_source {
            let machine = Arc::clone(&n.machine);
            store.set_snapshot_source(move |_: &raftwal::SnapshotRequest| {
                let m = machine.lock().unwrap();
                let mut s = SourcedSnapshot::new(m.applied, encode(&m.kv));
                // The application applied the conf changes up to there.
                s.conf_state = Some(m.conf.clone());
                Ok(Some(s))
            });
        }
        let cfg = Config {
            id,
            election_tick: 10,
            heartbeat_tick: 3,
            applied: start.applied,
            max_size_per_msg: 64 << 10,
            max_inflight_msgs: 64,
            ..Default::default()
        };
        n.raw = Some(RawNode::new(&cfg, store, &logger).unwrap());
    }

    /// Kills node `id`: its RawNode, store and state machine go; its
    /// directory stays.
    fn stop(&mut self, id: u64) {
        let n = self.node(id);
        n.raw = None;
        *n.machine.lock().unwrap() = Machine::default();
    }

    fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter_map(|n| n.raw.as_ref())
            .filter(|r| r.raft.state == StateRole::Leader)
            .max_by_key(|r| r.raft.term)
            .map(|r| r.raft.id)
    }

    /// Applies committed entries to node `id`'s state machine, making conf
    /// changes effective.
    fn apply(raw: &mut RawNode<RaftLogStore>, machine: &Mutex<Machine>, entries: Vec<Entry>) {
        for e in entries {
            let mut m = machine.lock().unwrap();
            assert_eq!(e.index, m.applied + 1, "entries are applied in order");
            m.applied = e.index;
            match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => {}
                EntryType::EntryNormal => {
                    let k = u64::from_le_bytes(e.data[..8].try_into().unwrap());
                    let v = u64::from_le_bytes(e.data[8..].try_into().unwrap());
                    m.kv.insert(k, v);
                }
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(&e.data).unwrap();
                    drop(m);
                    let cs = raw.apply_conf_change(&cc).unwrap();
                    raw.store().set_conf_state(cs.clone()).unwrap();
                    machine.lock().unwrap().conf = cs;
                }
                EntryType::EntryConfChangeV2 => unreachable!("the test proposes v1 changes"),
            }
        }
    }

    /// Handles node `id`'s Ready, if it has one.
    fn handle_ready(&mut self, id: u64) -> bool {
        let mut out = Vec::new();
        let Node {
            raw,
            machine,
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
        out.extend(rd.take_messages());
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            store.apply_snapshot(snap.clone()).unwrap();
            let mut m = machine.lock().unwrap();
            m.kv = decode(&snap.data);
            m.applied = snap.get_metadata().index;
            m.conf = snap.get_metadata().get_conf_state().clone();
            *snapshots_installed += 1;
        }
        let committed = rd.take_committed_entries();
        Self::apply(raw, machine, committed);
        store.persist(rd.entries(), rd.hs(), None).unwrap();
        out.extend(rd.take_persisted_messages());
        let mut light = raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            store.commit_to(commit).unwrap();
        }
        out.extend(light.take_messages());
        let committed = light.take_committed_entries();
        Self::apply(raw, machine, committed);
        raw.advance_apply();
        self.queue.extend(out);
        true
    }

    /// Delivers every queued message; a message to a node that is down is
    /// lost (and reported unreachable).
    fn deliver(&mut self) -> bool {
        let mut any = false;
        while let Some(m) = self.queue.pop_front() {
            any = true;
            let (from, to) = (m.from, m.to);
            let is_snap = m.get_msg_type() == MessageType::MsgSnapshot;
            let delivered = match self.node(to).raw.as_mut() {
                Some(raw) => {
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
                    let status = match delivered {
                        true => SnapshotStatus::Finish,
                        false => SnapshotStatus::Failure,
                    };
                    sender.report_snapshot(to, status);
                }
            }
        }
        any
    }

    fn pump(&mut self) {
        for _ in 0..MAX_ROUNDS {
            let mut busy = false;
            for id in 1..=NODES {
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
                "{what}: over {MAX_TIME:?}"
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

    fn machine(&self, id: u64) -> Machine {
        self.nodes[id as usize - 1].machine.lock().unwrap().clone()
    }

    fn voters(&self, id: u64) -> Vec<u64> {
        let mut v = self.machine(id).conf.voters;
        v.sort_unstable();
        v
    }

    /// Adds `id` as a voter, by a conf change on the leader, and waits
    /// until the new node has applied it (it got a snapshot first).
    fn add_voter(&mut self, id: u64) {
        let leader = self.wait_for_leader();
        let cc = ConfChange {
            change_type: ConfChangeType::AddNode,
            node_id: id,
            ..Default::default()
        };
        self.node(leader)
            .raw
            .as_mut()
            .unwrap()
            .propose_conf_change(vec![], cc)
            .unwrap();
        self.wait(&format!("adding node {id}"), |c| {
            c.voters(id).contains(&id) && c.leader().is_some_and(|l| c.voters(l).contains(&id))
        });
    }

    /// Proposes commands `keys` until the leader applied them all
    /// (proposing again what a leader change dropped), then waits until
    /// every node that is up applied the leader's commit.
    fn commit_all(&mut self, keys: std::ops::Range<u64>) {
        for _ in 0..20 {
            let leader = self.wait_for_leader();
            let missing: Vec<u64> = {
                let m = self.machine(leader);
                keys.clone().filter(|k| !m.kv.contains_key(k)).collect()
            };
            if missing.is_empty() {
                break;
            }
            for chunk in missing.chunks(100) {
                for &k in chunk {
                    let raw = self.node(leader).raw.as_mut().unwrap();
                    let _ = raw.propose(vec![], command(k));
                }
                self.pump();
            }
            self.wait("committing", |c| {
                let Some(l) = c.leader() else { return true };
                let m = c.machine(l);
                keys.clone().all(|k| m.kv.contains_key(&k))
            });
        }
        self.wait_in_sync(&format!("applying {keys:?} everywhere"));
    }

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
            (1..=NODES)
                .filter(|&id| c.nodes[id as usize - 1].raw.is_some())
                .all(|id| c.machine(id).applied == commit)
        });
    }

    /// Every node up, in sync, with exactly the commands `0..n` applied.
    fn assert_all_hold(&mut self, n: u64) {
        self.wait_in_sync("the final sync");
        let want: BTreeMap<u64, u64> = (0..n).map(|k| (k, value_of(k))).collect();
        for id in 1..=NODES {
            assert!(self.nodes[id as usize - 1].raw.is_some(), "node {id} is up");
            assert_eq!(self.machine(id).kv, want, "node {id}");
            assert_eq!(self.voters(id), vec![1, 2, 3, 4, 5], "node {id}");
        }
    }

    fn follower(&self, except: &[u64]) -> u64 {
        let l = self.leader();
        (1..=NODES)
            .find(|id| {
                Some(*id) != l && !except.contains(id) && self.nodes[*id as usize - 1].raw.is_some()
            })
            .unwrap()
    }
}

/// Bootstraps node 1, adds nodes 2 to 5 by conf changes (each needs a
/// snapshot: no source is registered, so the store advances its bootstrap
/// snapshot over the conf changes), commits commands, and kills and
/// restarts followers and the leader.
#[test]
fn five_nodes_from_a_bootstrap_snapshot_with_no_snapshot_source() {
    let mut c = Cluster::new(false);
    c.node(1).raw.as_mut().unwrap().campaign().unwrap();
    assert_eq!(c.wait_for_leader(), 1);
    for id in 2..=NODES {
        c.add_voter(id);
        assert!(
            c.nodes[id as usize - 1].snapshots_installed >= 1,
            "node {id} got a snapshot"
        );
    }
    c.commit_all(0..300);

    // A follower is killed, the others go on, it comes back from disk.
    let f = c.follower(&[]);
    c.stop(f);
    c.commit_all(300..500);
    c.start(f);
    c.commit_all(500..600);

    // Two followers down at once, then the leader.
    let (a, b) = (c.follower(&[]), c.follower(&[c.follower(&[])]));
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
    for id in 1..=NODES {
        c.stop(id);
    }
    for id in 1..=NODES {
        c.start(id);
    }
    c.commit_all(850..900);
    c.assert_all_hold(900);
}

/// As above, but the leader compacts its log (without storing snapshots
/// of its own) past two followers that are down: when they come back, the
/// leader's registered snapshot source serves their snapshots, with the
/// state machine's data.
#[test]
fn five_nodes_catch_up_through_a_snapshot_source_after_compaction() {
    let mut c = Cluster::new(true);
    c.node(1).raw.as_mut().unwrap().campaign().unwrap();
    c.wait_for_leader();
    for id in 2..=NODES {
        c.add_voter(id);
    }
    c.commit_all(0..200);
    let leader = c.leader().unwrap();
    let (a, b) = (c.follower(&[]), c.follower(&[c.follower(&[])]));
    c.stop(a);
    c.stop(b);
    c.commit_all(200..600);
    // The leader compacts to what it applied.
    let applied = c.machine(leader).applied;
    let store = c.nodes[leader as usize - 1]
        .raw
        .as_ref()
        .unwrap()
        .store()
        .clone();
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
