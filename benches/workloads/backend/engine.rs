//! tikv's raft-engine 0.4.2: one Raft group, default configuration except
//! the directory.
//!
//! `Engine::sync()` does nothing in 0.4.2 (it writes an empty batch, which
//! `write` skips: upstream issue #395), so a sync here is a write of a small
//! key with `sync = true`.

use std::path::{Path, PathBuf};

use raft::eraftpb::Entry;
use raft_engine::{Config, LogBatch, MessageExt};

use super::{Backend, Durability};
use crate::data::Batch;

/// The Raft group every single-group workload writes.
pub const REGION: u64 = 1;

/// raft-engine's view of raft's entries (raft-engine 0.4.2 and raft 0.7 share
/// rust-protobuf 2.28, so raft's `Entry` is used as it is).
#[derive(Clone)]
pub struct RaftEntries;

impl MessageExt for RaftEntries {
    type Entry = Entry;

    fn index(e: &Entry) -> u64 {
        e.index
    }
}

/// Opens an engine with the default configuration in `dir`.
pub fn open_engine(dir: &Path) -> raft_engine::Engine {
    let cfg = Config {
        dir: dir.to_str().expect("a UTF-8 bench path").to_owned(),
        ..Config::default()
    };
    raft_engine::Engine::open(cfg).expect("raft_engine::Engine::open")
}

/// Makes everything written to `engine` durable (see the module docs).
pub fn force_sync(engine: &raft_engine::Engine, batch: &mut LogBatch) {
    batch
        .put(REGION, b"sync".to_vec(), Vec::new())
        .expect("LogBatch::put");
    engine
        .write(batch, true)
        .expect("raft_engine::Engine::write");
}

/// The raft-engine backend.
pub struct Engine {
    dir: PathBuf,
    sync_each: bool,
    engine: Option<raft_engine::Engine>,
    batch: LogBatch,
    fetched: Vec<Entry>,
}

impl Engine {
    /// A new engine in `dir`.
    pub fn new(dir: &Path, durability: Durability) -> Engine {
        Engine {
            dir: dir.to_path_buf(),
            sync_each: durability == Durability::EachWrite,
            engine: Some(open_engine(dir)),
            batch: LogBatch::default(),
            fetched: Vec::new(),
        }
    }

    fn engine(&self) -> &raft_engine::Engine {
        self.engine.as_ref().expect("the engine is open")
    }
}

impl Backend for Engine {
    fn write(&mut self, batch: &Batch) {
        let engine = self.engine.as_ref().expect("the engine is open");
        self.batch
            .add_entries::<RaftEntries>(REGION, &batch.entries)
            .expect("LogBatch::add_entries");
        if let Some(hs) = &batch.hard_state {
            self.batch
                .put_message(REGION, b"hard_state".to_vec(), hs)
                .expect("LogBatch::put_message");
        }
        engine
            .write(&mut self.batch, self.sync_each)
            .expect("raft_engine::Engine::write");
    }

    fn sync(&mut self) {
        let engine = self.engine.as_ref().expect("the engine is open");
        force_sync(engine, &mut self.batch);
    }

    fn get(&mut self, index: u64) -> usize {
        self.engine()
            .get_entry::<RaftEntries>(REGION, index)
            .expect("raft_engine::Engine::get_entry")
            .expect("the entry exists")
            .data
            .len()
    }

    fn scan(&mut self, lo: u64, hi: u64, max_size: u64) -> u64 {
        let engine = self.engine.as_ref().expect("the engine is open");
        self.fetched.clear();
        engine
            .fetch_entries_to::<RaftEntries>(
                REGION,
                lo,
                hi,
                Some(max_size as usize),
                &mut self.fetched,
            )
            .expect("raft_engine::Engine::fetch_entries_to") as u64
    }

    fn range(&self) -> (u64, u64) {
        let e = self.engine();
        (
            e.first_index(REGION).expect("the group has entries"),
            e.last_index(REGION).expect("the group has entries"),
        )
    }

    fn compact(&mut self, index: u64) {
        let e = self.engine();
        e.compact_to(REGION, index);
        e.purge_expired_files()
            .expect("raft_engine::Engine::purge_expired_files");
    }

    fn close(&mut self) {
        self.engine = None;
    }

    fn open(&mut self) {
        self.engine = Some(open_engine(&self.dir));
    }
}
