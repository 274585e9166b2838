//! A replicated key-value store: three raft-rs nodes in one process, each
//! on its own `RaftLogStore` directory, agreeing on every write.
//!
//! ```text
//! cargo run --release --example replicated_kv [DIR] [--keys N] [--clean]
//! cargo run --release --example replicated_kv -- --groups 64 [DIR] [--keys N] [--clean]
//! ```
//!
//! With `--groups G`, each node runs `G` Raft groups on one `Engine`
//! (see `replicated_kv/groups.rs`).
//!
//! What it shows, in order:
//! 1. three nodes elect a leader and replicate a third of the keys;
//! 2. a follower is killed (its `RawNode`, store and state machine are
//!    dropped: only its directory is left), the other two go on, and the
//!    follower restarts from its directory, rebuilds its state from its own
//!    log and catches up with what it missed;
//! 3. the same for the leader: the other two elect a new one and go on;
//! 4. every replica's state machine and log are compared; each node then
//!    snapshots its state and compacts its log.
//!
//! Throughput and propose-to-commit latency (p50, p99) are printed; the
//! exit code is 0 only when all replicas agree. The network is an in-memory
//! queue and time is a tick loop, so nothing depends on wall-clock timing.
//! Run it again and it resumes from the directories (or use `--clean`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use raft::prelude::*;
use raft::{SnapshotStatus, StateRole, Storage};
use raftwal::RaftLogStore;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[path = "replicated_kv/groups.rs"]
mod groups;

/// The most ticks any one wait may take before the demo gives up.
const MAX_TICKS: usize = 1_000;
/// The most Ready/delivery rounds between two ticks.
const MAX_ROUNDS: usize = 100_000;
/// Proposals in flight at once.
const WINDOW: usize = 256;
/// Ticks after which a proposal not yet committed is proposed again (a
/// leader change may have dropped it).
const REPROPOSE_AFTER: u64 = 30;
/// Node ids.
const IDS: [u64; 3] = [1, 2, 3];

/// The replicated state machine.
type Map = BTreeMap<String, String>;

fn key(i: u64) -> String {
    format!("key-{i:08}")
}

fn value(i: u64) -> String {
    format!("value-{i}")
}

/// A command: `[key length u32 LE][key][value]`.
fn encode_put(k: &str, v: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + k.len() + v.len());
    out.extend_from_slice(&(k.len() as u32).to_le_bytes());
    out.extend_from_slice(k.as_bytes());
    out.extend_from_slice(v.as_bytes());
    out
}

fn decode_put(data: &[u8]) -> Option<(String, String)> {
    let (len, rest) = data.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    if len > rest.len() {
        return None;
    }
    let (k, v) = rest.split_at(len);
    Some((
        String::from_utf8(k.to_vec()).ok()?,
        String::from_utf8(v.to_vec()).ok()?,
    ))
}

/// A snapshot of the map: a sequence of commands.
fn encode_map(map: &Map) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in map {
        let put = encode_put(k, v);
        out.extend_from_slice(&(put.len() as u32).to_le_bytes());
        out.extend_from_slice(&put);
    }
    out
}

fn decode_map(mut data: &[u8]) -> Res<Map> {
    let mut map = Map::new();
    while let Some((len, rest)) = data.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        if len > rest.len() {
            return Err("a snapshot record is cut".into());
        }
        let (put, rest) = rest.split_at(len);
        let (k, v) = decode_put(put).ok_or("a snapshot record does not decode")?;
        map.insert(k, v);
        data = rest;
    }
    if !data.is_empty() {
        return Err("trailing bytes in the snapshot".into());
    }
    Ok(map)
}

struct Node {
    id: u64,
    dir: PathBuf,
    raw: Option<RawNode<RaftLogStore>>,
    sm: Map,
    applied: u64,
}

struct Cluster {
    nodes: Vec<Node>,
    queue: VecDeque<Message>,
    logger: slog::Logger,
    ticks: u64,
    /// Keys proposed and not yet seen committed at the leader: when they
    /// were first proposed, and the tick of the last proposal.
    pending: HashMap<u64, (Instant, u64)>,
    /// Propose-to-commit latencies.
    latencies: Vec<Duration>,
}

impl Cluster {
    fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    fn is_up(&self, id: u64) -> bool {
        self.node(id).raw.is_some()
    }

    /// Opens node `id`'s store from its directory, restores its state
    /// machine from its snapshot (the log replay that follows is raft's:
    /// committed entries after the snapshot come back in Readies), and
    /// starts its RawNode. Returns a description of what it found.
    fn start(&mut self, id: u64) -> Res<String> {
        let n = &mut self.nodes[(id - 1) as usize];
        let store = RaftLogStore::open(&n.dir)?;
        let report = store.recovery_report();
        let repaired = match report.repairs.len() + report.segments_removed.len() {
            0 => String::new(),
            _ => format!(
                "; recovery repaired {} place(s) and removed {} file(s): {:?}",
                report.repairs.len(),
                report.segments_removed.len(),
                report.repairs
            ),
        };
        if store.startup()?.is_new {
            // A new node: every node starts with the same configuration.
            store.set_conf_state(ConfState::from((IDS.to_vec(), vec![])))?;
        }
        let st = store.initial_state()?;
        let start = store.startup()?;
        let sm = match &start.snapshot {
            Some(s) => decode_map(&s.data)?,
            None => Map::new(),
        };
        let applied = start.applied;
        let (first, last) = (store.first_index()?, store.last_index()?);
        let hs = &st.hard_state;
        let found = if last == 0 {
            "a new, empty log".to_string()
        } else {
            format!(
                "log {first}..={last}, term {} commit {}; state machine: snapshot at {applied} ({} keys), then its own log replayed from {}{repaired}",
                hs.term,
                hs.commit,
                sm.len(),
                applied + 1
            )
        };
        let cfg = Config {
            id,
            election_tick: 10,
            heartbeat_tick: 3,
            applied,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        n.raw = Some(RawNode::new(&cfg, store, &self.logger)?);
        n.sm = sm;
        n.applied = applied;
        Ok(found)
    }

    /// Kills node `id`: its RawNode, store and state machine are dropped;
    /// only its directory is left.
    fn kill(&mut self, id: u64) {
        let n = self.node_mut(id);
        n.raw = None;
        n.sm.clear();
        n.applied = 0;
    }

    fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter_map(|n| n.raw.as_ref())
            .filter(|r| r.raft.state == StateRole::Leader)
            .max_by_key(|r| r.raft.term)
            .map(|r| r.raft.id)
    }

    fn commit_index(&self, id: u64) -> u64 {
        self.node(id)
            .raw
            .as_ref()
            .map_or(0, |r| r.raft.raft_log.committed)
    }

    /// Handles node `id`'s Ready: persist entries and hard state in one
    /// write before sending the messages that depend on them, apply what
    /// is committed. Returns whether there was one.
    fn handle_ready(&mut self, id: u64) -> Res<bool> {
        let is_leader = self.leader() == Some(id);
        let n = &mut self.nodes[(id - 1) as usize];
        let Some(raw) = n.raw.as_mut() else {
            return Ok(false);
        };
        if !raw.has_ready() {
            return Ok(false);
        }
        let store = raw.store().clone();
        let mut rd = raw.ready();
        let mut out = rd.take_messages();
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            store.apply_snapshot(snap.clone())?;
            n.sm = decode_map(&snap.data)?;
            n.applied = snap.get_metadata().index;
        }
        let mut committed = rd.take_committed_entries();
        store.persist(rd.entries(), rd.hs(), None)?;
        out.extend(rd.take_persisted_messages());
        let mut light = raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            store.commit_to(commit)?;
        }
        out.extend(light.take_messages());
        committed.extend(light.take_committed_entries());
        raw.advance_apply();
        let now = Instant::now();
        for e in committed {
            if e.index <= n.applied {
                continue;
            }
            n.applied = e.index;
            if e.data.is_empty() || e.get_entry_type() != EntryType::EntryNormal {
                continue; // a new leader's empty entry
            }
            let (k, v) = decode_put(&e.data).ok_or("a committed entry is not a command")?;
            if is_leader {
                if let Some(i) = k.strip_prefix("key-").and_then(|s| s.parse().ok()) {
                    if let Some((t, _)) = self.pending.remove(&i) {
                        self.latencies.push(now - t);
                    }
                }
            }
            n.sm.insert(k, v);
        }
        self.queue.extend(out);
        Ok(true)
    }

    /// Delivers every queued message; those to a node that is down are
    /// lost and reported unreachable.
    fn deliver(&mut self) -> bool {
        let mut any = false;
        while let Some(m) = self.queue.pop_front() {
            any = true;
            let (from, to) = (m.from, m.to);
            let is_snap = m.get_msg_type() == MessageType::MsgSnapshot;
            let delivered = match self.node_mut(to).raw.as_mut() {
                Some(raw) => {
                    // A message from an older term may be refused: raft's business.
                    let _ = raw.step(m);
                    true
                }
                None => false,
            };
            if let Some(sender) = self.node_mut(from).raw.as_mut() {
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

    /// Readies and deliveries until nothing moves.
    fn pump(&mut self) -> Res<()> {
        for _ in 0..MAX_ROUNDS {
            let mut busy = false;
            for id in IDS {
                busy |= self.handle_ready(id)?;
            }
            busy |= self.deliver();
            if !busy {
                return Ok(());
            }
        }
        Err(format!("the cluster did not settle within {MAX_ROUNDS} rounds").into())
    }

    fn tick(&mut self) -> Res<()> {
        self.ticks += 1;
        for n in &mut self.nodes {
            if let Some(raw) = n.raw.as_mut() {
                raw.tick();
            }
        }
        self.pump()
    }

    /// Ticks until `done`, at most [`MAX_TICKS`] times.
    fn wait(&mut self, what: &str, done: impl Fn(&Cluster) -> bool) -> Res<()> {
        for _ in 0..MAX_TICKS {
            self.pump()?;
            if done(self) {
                return Ok(());
            }
            self.tick()?;
        }
        Err(format!("{what}: not done within {MAX_TICKS} ticks").into())
    }

    fn wait_for_leader(&mut self) -> Res<u64> {
        self.wait("electing a leader", |c| c.leader().is_some())?;
        self.leader().ok_or_else(|| "no leader".into())
    }

    /// Waits until every node that is up has applied the leader's commit.
    fn wait_in_sync(&mut self, what: &str) -> Res<()> {
        self.wait(what, |c| {
            let Some(l) = c.leader() else { return false };
            let commit = c.commit_index(l);
            c.nodes
                .iter()
                .filter(|n| n.raw.is_some())
                .all(|n| n.applied == commit)
        })
    }

    /// Proposes keys `from..to` through the leader, at most [`WINDOW`] in
    /// flight, until the leader has committed them all (proposing again
    /// what a leader change dropped). Prints progress.
    fn write_keys(&mut self, from: u64, to: u64, total: u64, done_before: &mut u64) -> Res<()> {
        let mut next = from;
        let step = (total / 10).max(1);
        let mut reported = *done_before / step;
        let mut stalled_ticks = 0;
        while next < to || !self.pending.is_empty() {
            let leader = self.wait_for_leader()?;
            let mut proposed = false;
            let now = Instant::now();
            // Proposals a leader change may have dropped go again.
            let stale: Vec<u64> = self
                .pending
                .iter()
                .filter(|(_, (_, at))| self.ticks >= at + REPROPOSE_AFTER)
                .map(|(k, _)| *k)
                .collect();
            for k in stale {
                let raw = self.nodes[(leader - 1) as usize].raw.as_mut();
                if let Some(raw) = raw {
                    if raw.propose(vec![], encode_put(&key(k), &value(k))).is_ok() {
                        proposed = true;
                    }
                }
                if let Some(p) = self.pending.get_mut(&k) {
                    p.1 = self.ticks;
                }
            }
            while next < to && self.pending.len() < WINDOW {
                let Some(raw) = self.nodes[(leader - 1) as usize].raw.as_mut() else {
                    break;
                };
                if raw
                    .propose(vec![], encode_put(&key(next), &value(next)))
                    .is_err()
                {
                    break; // not the leader any more: wait for the next one
                }
                self.pending.insert(next, (now, self.ticks));
                next += 1;
                proposed = true;
            }
            let before = self.pending.len();
            self.pump()?;
            let written = *done_before + (next - from) - self.pending.len() as u64;
            if written / step > reported {
                reported = written / step;
                println!(
                    "  {written}/{total} keys committed (commit index {})",
                    self.commit_index(leader)
                );
            }
            if !proposed && self.pending.len() == before {
                // Nothing moved: let time pass (heartbeats, elections).
                self.tick()?;
                stalled_ticks += 1;
                if stalled_ticks > MAX_TICKS {
                    return Err("writes made no progress".into());
                }
            } else {
                stalled_ticks = 0;
            }
        }
        *done_before += to - from;
        Ok(())
    }

    fn followers(&self) -> Vec<u64> {
        let l = self.leader();
        IDS.into_iter()
            .filter(|&id| Some(id) != l && self.is_up(id))
            .collect()
    }

    /// Restarts node `id` from its directory and waits until it has caught
    /// up, saying what it found on disk and how long catching up took.
    fn restart(&mut self, id: u64) -> Res<()> {
        let start = Instant::now();
        let found = self.start(id)?;
        println!("  node {id} restarted from its directory: {found}");
        let ticks = self.ticks;
        self.wait_in_sync(&format!("node {id} catching up"))?;
        println!(
            "  node {id} caught up: applied {} ({} keys) in {:.0} ms, {} ticks",
            self.node(id).applied,
            self.node(id).sm.len(),
            start.elapsed().as_secs_f64() * 1e3,
            self.ticks - ticks
        );
        Ok(())
    }

    /// Every node snapshots its state machine at its applied index and
    /// compacts its log there.
    fn checkpoint(&mut self) -> Res<()> {
        for n in &mut self.nodes {
            let Some(raw) = n.raw.as_ref() else { continue };
            let store = raw.store();
            let last = store.snapshot_metadata().map_or(0, |m| m.index);
            if n.applied <= last {
                continue;
            }
            let cs = store.initial_state()?.conf_state;
            store.create_snapshot(n.applied, cs, encode_map(&n.sm))?;
            store.compact(n.applied)?;
        }
        Ok(())
    }
}

struct Args {
    dir: PathBuf,
    keys: u64,
    clean: bool,
    /// `--groups G`: the multi-group mode (`groups.rs`).
    groups: Option<u64>,
}

fn parse_args() -> Res<Args> {
    let mut args = Args {
        dir: PathBuf::from("target/replicated_kv"),
        keys: 2000,
        clean: false,
        groups: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--keys" => {
                let n = it.next().ok_or("--keys needs a number")?;
                args.keys = n.parse().map_err(|_| format!("--keys {n}: not a number"))?;
                if args.keys < 3 {
                    return Err("--keys must be at least 3".into());
                }
            }
            "--clean" => args.clean = true,
            "--groups" => {
                let n = it.next().ok_or("--groups needs a number")?;
                let g: u64 = n
                    .parse()
                    .map_err(|_| format!("--groups {n}: not a number"))?;
                if !(1..=4096).contains(&g) {
                    return Err("--groups must be 1 to 4096".into());
                }
                args.groups = Some(g);
            }
            "-h" | "--help" => {
                println!("usage: replicated_kv [DIR] [--keys N] [--groups G] [--clean]");
                std::process::exit(0);
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}").into()),
            s => args.dir = PathBuf::from(s),
        }
    }
    Ok(args)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let k = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[k.min(sorted.len() - 1)]
}

fn run(args: &Args) -> Res<bool> {
    if args.clean && args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)?;
        println!("removed {} (--clean)", args.dir.display());
    }
    if let Some(g) = args.groups {
        return groups::run(&args.dir, args.keys, g);
    }
    let resuming = IDS
        .iter()
        .any(|id| args.dir.join(format!("node-{id}")).exists());
    let mut c = Cluster {
        nodes: IDS
            .iter()
            .map(|&id| Node {
                id,
                dir: args.dir.join(format!("node-{id}")),
                raw: None,
                sm: Map::new(),
                applied: 0,
            })
            .collect(),
        queue: VecDeque::new(),
        logger: slog::Logger::root(slog::Discard, slog::o!()),
        ticks: 0,
        pending: HashMap::new(),
        latencies: Vec::new(),
    };
    if resuming {
        println!(
            "resuming: data found in {}; each node recovers from its directory",
            args.dir.display()
        );
    } else {
        println!("starting a new 3-node cluster in {}", args.dir.display());
    }
    for id in IDS {
        let found = c.start(id)?;
        println!("  node {id}: {found}");
    }
    if let Some(raw) = c.node_mut(1).raw.as_mut() {
        raw.campaign()?;
    }
    let leader = c.wait_for_leader()?;
    c.wait_in_sync("recovering the committed entries")?;
    let first_key = c
        .node(leader)
        .sm
        .keys()
        .filter_map(|k| k.strip_prefix("key-")?.parse::<u64>().ok())
        .max()
        .map_or(0, |k| k + 1);
    println!(
        "node {leader} leads (term {}); the replicated map holds {} keys",
        c.node(leader).raw.as_ref().map_or(0, |r| r.raft.term),
        c.node(leader).sm.len()
    );

    let n = args.keys;
    let (a, b) = (first_key + n / 3, first_key + 2 * n / 3);
    let end = first_key + n;
    let mut written = 0;
    let started = Instant::now();
    let ticks_at_start = c.ticks;

    println!("writing keys {first_key}..{a} to all three nodes");
    c.write_keys(first_key, a, n, &mut written)?;

    let f = *c.followers().first().ok_or("no follower")?;
    println!("killing follower node {f}");
    c.kill(f);
    println!("writing keys {a}..{b} with node {f} down");
    c.write_keys(a, b, n, &mut written)?;
    c.restart(f)?;

    let old = c.wait_for_leader()?;
    println!("killing the leader, node {old}");
    c.kill(old);
    let new = c.wait_for_leader()?;
    println!(
        "node {new} was elected leader (term {})",
        c.node(new).raw.as_ref().map_or(0, |r| r.raft.term)
    );
    println!("writing keys {b}..{end} with node {old} down");
    c.write_keys(b, end, n, &mut written)?;
    c.restart(old)?;
    let took = started.elapsed();
    c.wait_in_sync("final sync")?;

    // Every replica agrees: the same map, holding every key written now.
    let reference = c.nodes[0].sm.clone();
    let agree = c.nodes.iter().all(|n| n.sm == reference);
    let complete = (first_key..end).all(|i| reference.get(&key(i)) == Some(&value(i)));
    let mut lat = std::mem::take(&mut c.latencies);
    lat.sort();
    println!();
    println!(
        "wrote {n} keys in {:.2} s: {:.0} keys/s ({} ticks, with two node restarts)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        c.ticks - ticks_at_start
    );
    println!(
        "propose-to-commit latency over {} keys: p50 {:.2} ms, p99 {:.2} ms (each entry fsynced by a majority before it commits)",
        lat.len(),
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3
    );
    for node in &c.nodes {
        let store = node.raw.as_ref().map(|r| r.store());
        let (first, last) = match store {
            Some(s) => (s.first_index()?, s.last_index()?),
            None => (0, 0),
        };
        println!(
            "  node {}: applied {}, {} keys, log {first}..={last}",
            node.id,
            node.applied,
            node.sm.len()
        );
    }
    c.checkpoint()?;
    println!("each node took a snapshot at its applied index and compacted its log");
    if agree && complete {
        println!(
            "ok: all 3 replicas agree on {} keys (run again to resume from {})",
            reference.len(),
            args.dir.display()
        );
    } else if !agree {
        println!("FAILED: the replicas disagree");
    } else {
        println!("FAILED: keys {first_key}..{end} are not all in the replicated map");
    }
    Ok(agree && complete)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("replicated_kv: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("replicated_kv: error: {e}");
            ExitCode::FAILURE
        }
    }
}
