//! An in-process Raft cluster on `RaftLogStore`s, for the `raft_*` tests:
//! `raft::RawNode`s exchanging messages through an in-memory queue, each
//! running the Ready loop an application runs (messages that may leave
//! first; a snapshot installed; entries and hard state persisted in one
//! write before the messages that promise they are durable; committed
//! entries applied to a key-value map, conf changes made effective), and
//! nodes killed (RawNode, store and state machine dropped, the directory
//! kept) and restarted from disk with `RaftLogStore::startup`. Every wait is
//! bounded by a number of ticks, and the whole test by a wall-clock guard.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protobuf::Message as PbMessage;
use raft::prelude::*;
use raft::{SnapshotStatus, StateRole};
use raftwal::{Engine, Options, RaftLogStore, SourcedSnapshot};

/// Upper bound on the ticks any one wait may take.
const MAX_TICKS: usize = 2_000;
/// Upper bound on Ready/delivery rounds between two ticks.
const MAX_ROUNDS: usize = 10_000;
/// A guard on the whole test's wall-clock time (it takes seconds).
const MAX_TIME: Duration = Duration::from_secs(300);

/// The value command `key` sets.
pub fn value_of(key: u64) -> u64 {
    key.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 11
}

/// The command that sets `key` to [`value_of`] it: 16 bytes.
pub fn command(key: u64) -> Vec<u8> {
    let mut v = key.to_le_bytes().to_vec();
    v.extend_from_slice(&value_of(key).to_le_bytes());
    v
}

/// A state machine's snapshot data.
pub fn encode(kv: &BTreeMap<u64, u64>) -> Vec<u8> {
    kv.iter()
        .flat_map(|(k, v)| k.to_le_bytes().into_iter().chain(v.to_le_bytes()))
        .collect()
}

/// The state machine [`encode`] made `data` from.
pub fn decode(data: &[u8]) -> BTreeMap<u64, u64> {
    assert_eq!(data.len() % 16, 0, "snapshot data is whole pairs");
    data.chunks_exact(16)
        .map(|c| {
            let k = u64::from_le_bytes(c[..8].try_into().unwrap());
            (k, u64::from_le_bytes(c[8..].try_into().unwrap()))
        })
        .collect()
}

/// A node's state machine: what its Ready loop applied.
#[derive(Default, Clone)]
pub struct Machine {
    pub kv: BTreeMap<u64, u64>,
    pub applied: u64,
    pub conf: ConfState,
}

pub struct Node {
    pub dir: PathBuf,
    pub raw: Option<RawNode<RaftLogStore>>,
    /// Shared with the node's snapshot source, when it has one.
    pub machine: Arc<Mutex<Machine>>,
    /// Snapshots this node installed from a leader.
    pub snapshots_installed: usize,
}

/// How new stores start.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// Every new store is given the configuration of all the nodes as
    /// voters (`set_conf_state`), as `MemStorage::initialize_with_conf_state`
    /// does.
    AllVoters,
    /// Node 1 bootstraps with itself as the only voter
    /// (`RaftLogStore::bootstrap`, a snapshot at index 1); the others start
    /// empty and are added by conf changes, as raft-rs's examples do.
    FirstNode,
}

/// Where each node keeps its store.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stores {
    /// A `RaftLogStore` directory of its own.
    Own,
    /// Group `g` of an engine in the node's directory
    /// (`RaftLogStore::open_group`).
    EngineGroup(u64),
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    stores: Stores,
    queue: VecDeque<Message>,
    logger: slog::Logger,
    boot: Boot,
    /// Register a snapshot source on every node.
    with_source: bool,
    started: Instant,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    /// `n` nodes, all started, each with a store of its own.
    pub fn new(n: u64, boot: Boot, with_source: bool) -> Cluster {
        Cluster::with_stores(n, boot, with_source, Stores::Own)
    }

    /// `n` nodes, all started, keeping their stores as `stores` says.
    pub fn with_stores(n: u64, boot: Boot, with_source: bool, stores: Stores) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = (1..=n)
            .map(|id| Node {
                dir: tmp.path().join(format!("node-{id}")),
                raw: None,
                machine: Arc::default(),
                snapshots_installed: 0,
            })
            .collect();
        let mut c = Cluster {
            nodes,
            stores,
            queue: VecDeque::new(),
            logger: slog::Logger::root(slog::Discard, slog::o!()),
            boot,
            with_source,
            started: Instant::now(),
            _tmp: tmp,
        };
        for id in 1..=n {
            c.start(id);
        }
        c
    }

    pub fn ids(&self) -> std::ops::RangeInclusive<u64> {
        1..=self.nodes.len() as u64
    }

    pub fn node(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    pub fn is_up(&self, id: u64) -> bool {
        self.nodes[id as usize - 1].raw.is_some()
    }

    /// Node `id`'s store (it must be up).
    pub fn store(&self, id: u64) -> RaftLogStore {
        let raw = self.nodes[id as usize - 1].raw.as_ref();
        raw.expect("the node is up").store().clone()
    }

    /// A copy of node `id`'s state machine.
    pub fn machine(&self, id: u64) -> Machine {
        self.nodes[id as usize - 1].machine.lock().unwrap().clone()
    }

    /// The voters node `id` applied, sorted.
    pub fn voters(&self, id: u64) -> Vec<u64> {
        let mut v = self.machine(id).conf.voters;
        v.sort_unstable();
        v
    }

    /// Opens node `id`'s store and starts its RawNode as an application
    /// would: a new store starts as [`Boot`] says; an existing one restores
    /// its state machine from the stored snapshot and replays the rest.
    pub fn start(&mut self, id: u64) {
        let (logger, with_source) = (self.logger.clone(), self.with_source);
        let all: Vec<u64> = self.ids().collect();
        let (boot, stores) = (self.boot, self.stores);
        let n = self.node(id);
        assert!(n.raw.is_none(), "node {id} is already up");
        let store = match stores {
            Stores::Own => RaftLogStore::open(&n.dir).unwrap(),
            Stores::EngineGroup(g) => {
                let engine = Arc::new(Engine::open(&n.dir, Options::default()).unwrap());
                RaftLogStore::open_group(&engine, g).unwrap()
            }
        };
        if store.startup().unwrap().is_new {
            match boot {
                Boot::AllVoters => store.set_conf_state(ConfState::from((all, vec![]))),
                Boot::FirstNode if id == 1 => store.bootstrap(ConfState::from((vec![1], vec![]))),
                Boot::FirstNode => Ok(()),
            }
            .unwrap();
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
    pub fn stop(&mut self, id: u64) {
        let n = self.node(id);
        n.raw = None;
        *n.machine.lock().unwrap() = Machine::default();
    }

    /// The node that leads in the highest term (two may both think they
    /// lead, in different terms, for a moment).
    pub fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter_map(|n| n.raw.as_ref())
            .filter(|r| r.raft.state == StateRole::Leader)
            .max_by_key(|r| r.raft.term)
            .map(|r| r.raft.id)
    }

    /// The nodes up that do not lead.
    pub fn followers(&self) -> Vec<u64> {
        let l = self.leader();
        self.ids()
            .filter(|&id| Some(id) != l && self.is_up(id))
            .collect()
    }

    /// Applies committed entries to a node's state machine, making conf
    /// changes effective.
    fn apply(raw: &mut RawNode<RaftLogStore>, machine: &Mutex<Machine>, entries: Vec<Entry>) {
        for e in entries {
            let mut m = machine.lock().unwrap();
            assert_eq!(e.index, m.applied + 1, "entries are applied in order");
            m.applied = e.index;
            match e.get_entry_type() {
                // The empty entry of a new leader.
                EntryType::EntryNormal if e.data.is_empty() => {}
                EntryType::EntryNormal => {
                    assert_eq!(e.data.len(), 16);
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
                EntryType::EntryConfChangeV2 => unreachable!("the tests propose v1 changes"),
            }
        }
    }

    /// Handles node `id`'s Ready, if it has one. Returns whether it did.
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
        // These may leave before the write below (raft-rs allows a leader
        // to send appends while it persists them itself).
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
        // Entries and hard state: one write, one fsync...
        store.persist(rd.entries(), rd.hs(), None).unwrap();
        // ...and only then the messages that promise they are durable.
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

    /// Ready handling and delivery until nothing moves.
    pub fn pump(&mut self) {
        for _ in 0..MAX_ROUNDS {
            let mut busy = false;
            for id in self.ids() {
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
    pub fn wait(&mut self, what: &str, done: impl Fn(&Cluster) -> bool) {
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

    pub fn wait_for_leader(&mut self) -> u64 {
        self.wait("electing a leader", |c| c.leader().is_some());
        self.leader().unwrap()
    }

    /// Node 1 campaigns, and wins.
    pub fn elect_node_1(&mut self) {
        self.node(1).raw.as_mut().unwrap().campaign().unwrap();
        assert_eq!(self.wait_for_leader(), 1);
    }

    /// Adds `id` as a voter, by a conf change on the leader, and waits
    /// until the new node and the leader have applied it.
    pub fn add_voter(&mut self, id: u64) {
        let leader = self.wait_for_leader();
        let cc = ConfChange {
            change_type: ConfChangeType::AddNode,
            node_id: id,
            ..Default::default()
        };
        let raw = self.node(leader).raw.as_mut().unwrap();
        raw.propose_conf_change(vec![], cc).unwrap();
        self.wait(&format!("adding node {id}"), |c| {
            c.voters(id).contains(&id) && c.leader().is_some_and(|l| c.voters(l).contains(&id))
        });
    }

    /// Proposes commands `keys` until the leader applied them all
    /// (proposing again what a leader change dropped), waits until every
    /// node that is up applied the leader's commit, and checks they hold
    /// every key.
    pub fn commit_all(&mut self, keys: std::ops::Range<u64>) {
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
                    // Dropped proposals are found missing and proposed again.
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
        for id in self.ids().filter(|&id| self.is_up(id)) {
            let m = self.machine(id);
            for k in keys.clone() {
                assert_eq!(m.kv.get(&k), Some(&value_of(k)), "node {id}, key {k}");
            }
        }
    }

    /// Waits until every node up applied the leader's commit index.
    pub fn wait_in_sync(&mut self, what: &str) {
        self.wait(what, |c| {
            let Some(l) = c.leader() else { return false };
            let commit = c.nodes[l as usize - 1]
                .raw
                .as_ref()
                .unwrap()
                .raft
                .raft_log
                .committed;
            c.ids()
                .filter(|&id| c.is_up(id))
                .all(|id| c.machine(id).applied == commit)
        });
    }

    /// Every node up, in sync, with exactly the commands `0..n` applied
    /// and every node a voter.
    pub fn assert_all_hold(&mut self, n: u64) {
        self.wait_in_sync("the final sync");
        let want: BTreeMap<u64, u64> = (0..n).map(|k| (k, value_of(k))).collect();
        let all: Vec<u64> = self.ids().collect();
        for id in self.ids() {
            assert!(self.is_up(id), "node {id} is up");
            assert_eq!(self.machine(id).kv, want, "node {id}");
            assert_eq!(self.voters(id), all, "node {id}");
        }
    }

    /// Every node stopped, then every node started from its directory.
    pub fn restart_all(&mut self) {
        for id in self.ids() {
            self.stop(id);
        }
        for id in self.ids() {
            self.start(id);
        }
    }
}
