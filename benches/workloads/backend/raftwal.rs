//! raftwal through `RaftLogStore` (the Raft path) and through `Log`.

use std::path::{Path, PathBuf};

use raft::{GetEntriesContext, Storage};
use raftwal::{Log, Options, RaftLogStore, SyncPolicy, WriteBatch};

use super::{Backend, Durability};
use crate::data::{encode_hard_state, Batch};
use crate::report::Figures;

fn options(durability: Durability) -> Options {
    Options::default().sync(match durability {
        Durability::EachWrite => SyncPolicy::Always,
        Durability::OnSync => SyncPolicy::Manual,
    })
}

/// `RaftLogStore`: Readies go through `persist`, reads through
/// `raft::Storage`.
pub struct RaftwalStore {
    dir: PathBuf,
    opts: Options,
    store: Option<RaftLogStore>,
}

impl RaftwalStore {
    /// A new store in `dir`.
    pub fn new(dir: &Path, durability: Durability) -> RaftwalStore {
        RaftwalStore::with(dir, durability, |o| o)
    }

    /// A new store in `dir`, its options changed by `change` (a variant).
    pub fn with(
        dir: &Path,
        durability: Durability,
        change: impl FnOnce(Options) -> Options,
    ) -> RaftwalStore {
        let mut s = RaftwalStore {
            dir: dir.to_path_buf(),
            opts: change(options(durability)),
            store: None,
        };
        s.open();
        s
    }

    fn store(&self) -> &RaftLogStore {
        self.store.as_ref().expect("the store is open")
    }
}

impl Backend for RaftwalStore {
    fn write(&mut self, batch: &Batch) {
        self.store()
            .persist(&batch.entries, batch.hard_state.as_ref(), None)
            .expect("RaftLogStore::persist");
    }

    fn sync(&mut self) {
        self.store().sync().expect("RaftLogStore::sync");
    }

    fn get(&mut self, index: u64) -> usize {
        let got = self
            .store()
            .entries(index, index + 1, None, GetEntriesContext::empty(false))
            .expect("RaftLogStore::entries");
        got[0].data.len()
    }

    fn scan(&mut self, lo: u64, hi: u64, max_size: u64) -> u64 {
        let got = self
            .store()
            .entries(lo, hi, max_size, GetEntriesContext::empty(false))
            .expect("RaftLogStore::entries");
        got.len() as u64
    }

    fn range(&self) -> (u64, u64) {
        let s = self.store();
        (
            s.first_index().expect("first_index"),
            s.last_index().expect("last_index"),
        )
    }

    fn compact(&mut self, index: u64) {
        self.store().compact(index).expect("RaftLogStore::compact");
    }

    fn close(&mut self) {
        self.store = None;
    }

    fn open(&mut self) {
        self.store = Some(
            RaftLogStore::open_with(&self.dir, self.opts.clone()).expect("RaftLogStore::open"),
        );
    }
}

/// The low-level `Log`: batches through a reused `WriteBatch`.
pub struct RaftwalLog {
    dir: PathBuf,
    opts: Options,
    log: Option<Log>,
    batch: WriteBatch,
}

impl RaftwalLog {
    /// A new log in `dir`.
    pub fn new(dir: &Path, durability: Durability) -> RaftwalLog {
        let mut s = RaftwalLog {
            dir: dir.to_path_buf(),
            opts: options(durability),
            log: None,
            batch: WriteBatch::new(),
        };
        s.open();
        s
    }

    fn log(&self) -> &Log {
        self.log.as_ref().expect("the log is open")
    }
}

impl Backend for RaftwalLog {
    fn write(&mut self, batch: &Batch) {
        let log = self.log.as_ref().expect("the log is open");
        let wb = &mut self.batch;
        wb.clear();
        if let Some(first) = batch.entries.first() {
            if first.index <= log.last_index() {
                wb.truncate_from(first.index);
            }
        }
        for e in &batch.entries {
            wb.push(e.index, e.term, &e.data).expect("WriteBatch::push");
        }
        if let Some(hs) = &batch.hard_state {
            wb.set_state(encode_hard_state(hs));
        }
        log.write(wb).expect("Log::write");
    }

    fn sync(&mut self) {
        self.log().sync().expect("Log::sync");
    }

    fn get(&mut self, index: u64) -> usize {
        self.log()
            .get_entry(index)
            .expect("Log::get_entry")
            .data
            .len()
    }

    fn scan(&mut self, lo: u64, hi: u64, max_size: u64) -> u64 {
        let got = self
            .log()
            .entries(lo, hi, Some(max_size))
            .expect("Log::entries");
        got.len() as u64
    }

    fn range(&self) -> (u64, u64) {
        (self.log().first_index(), self.log().last_index())
    }

    fn compact(&mut self, index: u64) {
        self.log().compact(index).expect("Log::compact");
    }

    fn close(&mut self) {
        self.log = None;
    }

    fn open(&mut self) {
        self.log = Some(Log::open(&self.dir, self.opts.clone()).expect("Log::open"));
    }

    fn memory(&self, entries: u64, out: &mut Figures) {
        let bytes = self.log().index_memory_bytes() as f64;
        out.add("index_bytes_per_entry", bytes / entries as f64);
    }
}
