//! raft-rs's `MemStorage`: the in-memory upper bound for reads.

use raft::storage::MemStorage;
use raft::{GetEntriesContext, Storage};

use super::Backend;
use crate::data::Batch;

/// The `mem` backend. Writes only build the data the reads measure.
pub struct Mem {
    storage: MemStorage,
}

impl Mem {
    /// An empty `MemStorage`.
    pub fn new() -> Mem {
        Mem {
            storage: MemStorage::new(),
        }
    }
}

impl Backend for Mem {
    fn write(&mut self, batch: &Batch) {
        self.storage
            .wl()
            .append(&batch.entries)
            .expect("MemStorage::append");
    }

    fn sync(&mut self) {}

    fn get(&mut self, index: u64) -> usize {
        let got = self
            .storage
            .entries(index, index + 1, None, GetEntriesContext::empty(false))
            .expect("MemStorage::entries");
        got[0].data.len()
    }

    fn scan(&mut self, lo: u64, hi: u64, max_size: u64) -> u64 {
        let got = self
            .storage
            .entries(lo, hi, max_size, GetEntriesContext::empty(false))
            .expect("MemStorage::entries");
        got.len() as u64
    }

    fn range(&self) -> (u64, u64) {
        (
            self.storage.first_index().expect("first_index"),
            self.storage.last_index().expect("last_index"),
        )
    }

    fn compact(&mut self, _index: u64) {
        unimplemented!("mem runs read workloads only")
    }

    fn close(&mut self) {
        unimplemented!("mem runs read workloads only")
    }

    fn open(&mut self) {
        unimplemented!("mem runs read workloads only")
    }
}
