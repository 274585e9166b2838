//! `replicated_kv --groups G`: the same three nodes, each running `G` Raft
//! groups on one `raftwal::Engine` (one directory, one stream of writes per
//! node). Keys are spread over the groups (key `i` in group `i % G`). Every
//! round, each node persists the Readies of all its groups with one
//! `RaftLogStore::persist_many`: one write and one `fdatasync` for all of
//! them. Node 2 is killed half-way and restarted from its directory. At the
//! end every group's replicas are compared, each node snapshots and compacts
//! its groups and reclaims its segments, and the figures per round are
//! printed: Readies, writes and `fdatasync`s.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use raft::prelude::*;
use raft::{StateRole, Storage};
use raftwal::{Engine, GroupReady, Options, RaftLogStore};

use super::{decode_put, encode_put, key, value, Map, Res, IDS};

/// The most rounds the demo runs before it gives up.
const MAX_ROUNDS: u64 = 200_000;

/// One group on a node: its RawNode and state machine.
type Replica = (RawNode<RaftLogStore>, Map);

struct Node {
    dir: PathBuf,
    /// The engine and its groups' replicas; `None` while the node is down.
    up: Option<(Arc<Engine>, Vec<Replica>)>,
}

/// Counters of the Ready loop.
#[derive(Default)]
struct Figures {
    rounds: u64,
    readies: u64,
    persist_calls: u64,
    /// Readies persisted by node 1.
    node_1_readies: u64,
}

struct Cluster {
    nodes: Vec<Node>,
    groups: u64,
    /// In flight: (group, message).
    queue: VecDeque<(u64, Message)>,
    logger: slog::Logger,
    figures: Figures,
}

impl Cluster {
    fn start(&mut self, id: u64) -> Res<String> {
        let n = &mut self.nodes[(id - 1) as usize];
        let engine = Arc::new(Engine::open(&n.dir, Options::default())?);
        let mut rafts = Vec::with_capacity(self.groups as usize);
        let mut held = 0;
        for g in 0..self.groups {
            let store = RaftLogStore::open_group(&engine, g)?;
            if store.startup()?.is_new {
                store.set_conf_state(ConfState::from((IDS.to_vec(), vec![])))?;
            }
            let start = store.startup()?;
            let sm = match &start.snapshot {
                Some(s) => super::decode_map(&s.data)?,
                None => Map::new(),
            };
            held += store.last_index()?;
            let cfg = Config {
                id,
                election_tick: 10,
                heartbeat_tick: 3,
                applied: start.applied,
                max_size_per_msg: 1 << 20,
                max_inflight_msgs: 256,
                ..Default::default()
            };
            rafts.push((RawNode::new(&cfg, store, &self.logger)?, sm));
        }
        n.up = Some((engine, rafts));
        Ok(format!("{} groups, {held} entries in all", self.groups))
    }

    fn kill(&mut self, id: u64) {
        self.nodes[(id - 1) as usize].up = None;
    }

    /// One round: delivers the messages in flight, ticks every group when
    /// `tick`, and runs every node's Readies, persisting each node's with
    /// one `persist_many`.
    fn round(&mut self, tick: bool) -> Res<()> {
        self.figures.rounds += 1;
        for (g, m) in std::mem::take(&mut self.queue) {
            if let Some((_, rafts)) = &mut self.nodes[(m.to - 1) as usize].up {
                // A message to a node that is down is lost, as on a network.
                let _ = rafts[g as usize].0.step(m);
            }
        }
        for (node, id) in self.nodes.iter_mut().zip(IDS) {
            let Some((_, rafts)) = &mut node.up else {
                continue;
            };
            if tick {
                for (raw, _) in rafts.iter_mut() {
                    raw.tick();
                }
            }
            let mut readies = Vec::new();
            for (g, (raw, sm)) in rafts.iter_mut().enumerate() {
                if !raw.has_ready() {
                    continue;
                }
                let mut rd = raw.ready();
                for m in rd.take_messages() {
                    self.queue.push_back((g as u64, m));
                }
                if !rd.snapshot().is_empty() {
                    raw.store().apply_snapshot(rd.snapshot().clone())?;
                    *sm = super::decode_map(&rd.snapshot().data)?;
                }
                apply(sm, rd.take_committed_entries());
                readies.push((g, rd));
            }
            if readies.is_empty() {
                continue;
            }
            // Every group's Ready of this node: one write, one fdatasync.
            let stores: Vec<RaftLogStore> = readies
                .iter()
                .map(|(g, _)| rafts[*g].0.store().clone())
                .collect();
            let parts: Vec<GroupReady> = readies
                .iter()
                .zip(&stores)
                .map(|((_, rd), store)| GroupReady {
                    store,
                    entries: rd.entries(),
                    hard_state: rd.hs(),
                    conf_state: None,
                })
                .collect();
            RaftLogStore::persist_many(&parts)?;
            self.figures.persist_calls += 1;
            self.figures.readies += parts.len() as u64;
            if id == 1 {
                self.figures.node_1_readies += parts.len() as u64;
            }
            drop(parts);
            for (g, mut rd) in readies {
                let (raw, sm) = &mut rafts[g];
                for m in rd.take_persisted_messages() {
                    self.queue.push_back((g as u64, m));
                }
                let mut light = raw.advance(rd);
                if let Some(commit) = light.commit_index() {
                    raw.store().commit_to(commit)?;
                }
                for m in light.take_messages() {
                    self.queue.push_back((g as u64, m));
                }
                apply(sm, light.take_committed_entries());
                raw.advance_apply();
            }
        }
        Ok(())
    }

    /// The leader of group `g`, if one is up and knows it.
    fn leader(&self, g: u64) -> Option<u64> {
        self.nodes.iter().zip(1u64..).find_map(|(n, id)| {
            let (_, rafts) = n.up.as_ref()?;
            (rafts[g as usize].0.raft.state == StateRole::Leader).then_some(id)
        })
    }

    /// Proposes keys `range` (each to its group's leader) and runs rounds
    /// until every node that is up has applied them all.
    fn commit(&mut self, range: std::ops::Range<u64>) -> Res<()> {
        let mut proposed = vec![false; (range.end - range.start) as usize];
        for r in 0..MAX_ROUNDS {
            let mut all = true;
            for (k, i) in range.clone().enumerate() {
                let g = i % self.groups;
                let done = self.nodes.iter().all(|n| {
                    n.up.as_ref()
                        .is_none_or(|(_, rafts)| rafts[g as usize].1.contains_key(&key(i)))
                });
                if done {
                    continue;
                }
                all = false;
                // (Re)proposed to the leader every 200 rounds until applied.
                if !proposed[k] || r % 200 == 0 {
                    let leader = self.leader(g).map(|l| (l - 1) as usize);
                    if let Some((_, rafts)) = leader.and_then(|l| self.nodes[l].up.as_mut()) {
                        let put = encode_put(&key(i), &value(i));
                        let _ = rafts[g as usize].0.propose(vec![], put);
                        proposed[k] = true;
                    }
                }
            }
            if all {
                return Ok(());
            }
            self.round(r % 5 == 0)?;
        }
        Err(format!("keys {range:?} not applied everywhere in {MAX_ROUNDS} rounds").into())
    }

    /// The stream counters of node `id`: (writes, fdatasyncs).
    fn counters(&self, id: u64) -> (u64, u64) {
        let n = &self.nodes[(id - 1) as usize];
        n.up.as_ref().map_or((0, 0), |(_, rafts)| {
            let s = rafts[0].0.store().stats();
            (s.writes, s.sync_rounds)
        })
    }
}

fn apply(sm: &mut Map, entries: Vec<Entry>) {
    for e in entries {
        if let Some((k, v)) = decode_put(&e.data) {
            sm.insert(k, v);
        }
    }
}

/// Runs the multi-group demo in `dir` with `keys` keys over `groups`
/// groups; true when every group's replicas agree.
pub fn run(dir: &Path, keys: u64, groups: u64) -> Res<bool> {
    let mut c = Cluster {
        nodes: IDS
            .iter()
            .map(|id| Node {
                dir: dir.join(format!("node-{id}")),
                up: None,
            })
            .collect(),
        groups,
        queue: VecDeque::new(),
        logger: slog::Logger::root(slog::Discard, slog::o!()),
        figures: Figures::default(),
    };
    for id in IDS {
        println!("node {id}: {}", c.start(id)?);
    }
    let started = Instant::now();
    // Elections: every group gets a leader.
    for r in 0..MAX_ROUNDS {
        if (0..groups).all(|g| c.leader(g).is_some()) {
            break;
        }
        c.round(r % 2 == 0)?;
    }
    let before = c.counters(1);
    let readies_before = c.figures.node_1_readies;
    let third = keys / 3;
    c.commit(0..third)?;
    println!("node 2: killed (engine, stores and state machines dropped)");
    c.kill(2);
    c.commit(third..2 * third)?;
    println!("node 2: restarted: {}", c.start(2)?);
    c.commit(2 * third..keys)?;
    let elapsed = started.elapsed();
    // Every group's replicas agree.
    let mut agree = true;
    for g in 0..groups as usize {
        let maps: Vec<&Map> = c
            .nodes
            .iter()
            .filter_map(|n| n.up.as_ref().map(|(_, r)| &r[g].1))
            .collect();
        if maps.windows(2).any(|w| w[0] != w[1]) {
            println!("group {g}: the replicas differ");
            agree = false;
        }
    }
    let f = &c.figures;
    let (w1, s1) = c.counters(1);
    let r1 = f.node_1_readies - readies_before;
    println!(
        "{keys} keys over {groups} groups x 3 nodes in {:.2} s: {} rounds, {} Readies persisted with {} persist_many calls ({:.1} Readies per call)",
        elapsed.as_secs_f64(),
        f.rounds,
        f.readies,
        f.persist_calls,
        f.readies as f64 / f.persist_calls.max(1) as f64
    );
    let (w1, s1) = (w1 - before.0, s1 - before.1);
    if r1 > 0 {
        println!(
        "node 1: {r1} Readies of its groups persisted with {w1} writes and {s1} fdatasyncs ({:.1} Readies per fdatasync; one store per group would pay one each)",
        r1 as f64 / s1.max(1) as f64
        );
    }
    // Snapshots, compactions and a reclaim on every node.
    for (n, id) in c.nodes.iter().zip(IDS) {
        let Some((engine, rafts)) = &n.up else {
            continue;
        };
        for (raw, sm) in rafts {
            let store = raw.store();
            let applied = raw.raft.raft_log.applied;
            let stored = store.snapshot_metadata().map_or(0, |m| m.index);
            if applied > stored {
                let cs = store.initial_state()?.conf_state;
                store.create_snapshot(applied, cs, super::encode_map(sm))?;
                store.compact(applied)?;
            }
        }
        let before = engine.segments();
        let r = engine.reclaim()?;
        println!(
            "node {id}: snapshots and compactions in every group, then reclaim: {} of {before} segments freed",
            r.segments_freed
        );
    }
    let total: usize = c.nodes[0]
        .up
        .as_ref()
        .map_or(0, |(_, rafts)| rafts.iter().map(|(_, sm)| sm.len()).sum());
    println!(
        "{} keys in node 1's state machines; replicas {}",
        total,
        if agree && total as u64 == keys {
            "agree"
        } else {
            "DISAGREE"
        }
    );
    Ok(agree && total as u64 == keys)
}
