//! The Ready loop of a raft-rs node on a [`RaftLogStore`]: persist, then
//! send, then apply; snapshot and compact; restart from disk.
//!
//! ```text
//! cargo run --example raft_ready_loop
//! ```
//!
//! A single-voter cluster keeps the example short; the loop is the same
//! for any number of nodes (`send` would hand messages to the network).

use std::collections::BTreeMap;
use std::path::Path;

use protobuf::Message as _;
use raft::prelude::*;
use raft::{StateRole, Storage};
use raftwal::RaftLogStore;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A node: raft, its durable store, and the state machine it feeds.
struct Node {
    raw: RawNode<RaftLogStore>,
    store: RaftLogStore,
    kv: BTreeMap<String, String>,
    applied: u64,
}

/// Opens the store in `dir` and starts a node on it, restoring the state
/// machine from the newest snapshot (raft then replays the entries after it).
fn start(dir: &Path, logger: &slog::Logger) -> Result<Node> {
    let store = RaftLogStore::open(dir)?;
    let report = store.recovery_report();
    if !report.repairs.is_empty() || !report.segments_removed.is_empty() {
        println!("recovery repaired the log: {report:?}");
    }
    if store.startup()?.is_new {
        // The first node of a new cluster: it alone is a voter (others
        // would join by conf changes).
        store.bootstrap(ConfState::from((vec![1], vec![])))?;
    }
    let start = store.startup()?;
    let kv = start
        .snapshot
        .as_ref()
        .map_or_else(BTreeMap::new, |s| decode(&s.data));
    let applied = start.applied;
    let cfg = Config {
        id: 1,
        election_tick: 10,
        heartbeat_tick: 3,
        applied,
        ..Default::default()
    };
    let raw = RawNode::new(&cfg, store.clone(), logger)?;
    Ok(Node {
        raw,
        store,
        kv,
        applied,
    })
}

/// Handles one Ready.
fn on_ready(node: &mut Node, send: &mut impl FnMut(Vec<Message>)) -> Result<()> {
    if !node.raw.has_ready() {
        return Ok(());
    }
    let mut rd = node.raw.ready();
    // Messages that promise nothing about this node's disk (a leader's
    // appends) may leave before the write.
    send(rd.take_messages());
    // A snapshot from the leader: stored durably (data included), then loaded.
    if !rd.snapshot().is_empty() {
        node.store.apply_snapshot(rd.snapshot().clone())?;
        node.kv = decode(&rd.snapshot().data);
        node.applied = rd.snapshot().get_metadata().index;
    }
    apply(node, rd.take_committed_entries())?;
    // New entries (a conflicting suffix is replaced) and the hard state:
    // one write, one fsync, all or nothing.
    node.store.persist(rd.entries(), rd.hs(), None)?;
    // Only now the messages that say "I have it" (votes, append responses).
    send(rd.take_persisted_messages());
    let mut light = node.raw.advance(rd);
    if let Some(commit) = light.commit_index() {
        node.store.commit_to(commit)?;
    }
    send(light.take_messages());
    apply(node, light.take_committed_entries())?;
    node.raw.advance_apply();
    Ok(())
}

/// Applies committed entries to the state machine.
fn apply(node: &mut Node, entries: Vec<Entry>) -> Result<()> {
    for e in entries {
        node.applied = e.index;
        match e.get_entry_type() {
            EntryType::EntryNormal if e.data.is_empty() => {} // a new leader's entry
            EntryType::EntryNormal => {
                let cmd = String::from_utf8(e.data.to_vec())?;
                let (k, v) = cmd.split_once('=').ok_or("not a put")?;
                node.kv.insert(k.to_string(), v.to_string());
            }
            EntryType::EntryConfChange => {
                let mut cc = ConfChange::default();
                cc.merge_from_bytes(&e.data)?;
                let cs = node.raw.apply_conf_change(&cc)?;
                node.store.set_conf_state(cs)?;
            }
            EntryType::EntryConfChangeV2 => {
                let mut cc = ConfChangeV2::default();
                cc.merge_from_bytes(&e.data)?;
                let cs = node.raw.apply_conf_change(&cc)?;
                node.store.set_conf_state(cs)?;
            }
        }
    }
    Ok(())
}

fn encode(kv: &BTreeMap<String, String>) -> Vec<u8> {
    kv.iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect::<String>()
        .into_bytes()
}

fn decode(data: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(data)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn main() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("node-1");
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    // A single node has no one to talk to.
    let mut send = |msgs: Vec<Message>| assert!(msgs.is_empty());

    let mut node = start(&dir, &logger)?;
    node.raw.campaign()?;
    for _ in 0..100 {
        on_ready(&mut node, &mut send)?;
        if node.raw.raft.state == StateRole::Leader {
            break;
        }
        node.raw.tick();
    }
    assert_eq!(node.raw.raft.state, StateRole::Leader);

    for i in 0..100 {
        node.raw
            .propose(vec![], format!("key-{i}=value-{i}").into_bytes())?;
        on_ready(&mut node, &mut send)?;
    }
    // Snapshot the state machine and drop the log it covers.
    let cs = node.store.initial_state()?.conf_state;
    node.store
        .create_snapshot(node.applied, cs, encode(&node.kv))?;
    node.store.compact(node.applied)?;
    for i in 100..110 {
        node.raw
            .propose(vec![], format!("key-{i}=value-{i}").into_bytes())?;
        on_ready(&mut node, &mut send)?;
    }
    let applied = node.applied;
    println!(
        "applied {applied}, {} keys; log {}..={}",
        node.kv.len(),
        node.store.first_index()?,
        node.store.last_index()?
    );
    drop(node);

    // Restart: the snapshot plus the log after it give back every key.
    let mut node = start(&dir, &logger)?;
    for _ in 0..100 {
        on_ready(&mut node, &mut send)?;
        if node.applied >= applied {
            break;
        }
        node.raw.tick();
    }
    assert_eq!(node.kv.len(), 110);
    assert_eq!(node.kv["key-42"], "value-42");
    println!(
        "restarted: applied {}, {} keys",
        node.applied,
        node.kv.len()
    );
    Ok(())
}
