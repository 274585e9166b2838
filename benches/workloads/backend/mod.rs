//! The stores under test, behind one trait so that every workload drives
//! each of them through the same loop.

mod engine;
mod mem;
mod raftwal;
mod raw;

use std::path::Path;

use crate::data::Batch;
use crate::report::Figures;

pub use self::engine::{open_engine, Engine, RaftEntries, REGION};
pub use self::raftwal::{RaftwalLog, RaftwalStore};
pub use self::raw::{create_file as create_raw_file, encode_batch, zero_fill, Raw};

/// Which backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `RaftLogStore`, the path a Raft node uses.
    Raftwal,
    /// The low-level `Log`.
    RaftwalLog,
    /// One `pwrite` per batch into a pre-zeroed, fsynced file.
    Raw,
    /// tikv's raft-engine 0.4.2, one Raft group, default configuration.
    RaftEngine,
    /// raft-rs's `MemStorage` (reads only).
    Mem,
    /// `RaftLogStore` with options changed: an index into
    /// [`selected`](crate::variant::selected) (`--variants`).
    Variant(usize),
}

impl Kind {
    /// The name printed in every line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Raftwal => "raftwal",
            Kind::RaftwalLog => "raftwal-log",
            Kind::Raw => "raw",
            Kind::RaftEngine => "raft-engine",
            Kind::Mem => "mem",
            Kind::Variant(i) => crate::variant::selected()[i].backend,
        }
    }
}

/// When writes are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every write is durable when it returns.
    EachWrite,
    /// Only [`Backend::sync`] makes writes durable.
    OnSync,
}

/// A store under test. Methods panic with a message on any error: a
/// benchmark that cannot do what it measures has nothing to report.
pub trait Backend {
    /// Called, untimed, with the batches the next `write` calls will write,
    /// in order (`raw` encodes them and pre-zeroes the file for them).
    fn prepare(&mut self, _batches: &[Batch]) {}

    /// Writes one batch, replacing entries from its first index on when
    /// they exist (a Raft conflict). Durable on return under
    /// [`Durability::EachWrite`].
    fn write(&mut self, batch: &Batch);

    /// Makes every write durable.
    fn sync(&mut self);

    /// Reads entry `index`; returns its data length.
    fn get(&mut self, index: u64) -> usize;

    /// Reads entries from `lo` below `hi`, stopping once their data passes
    /// `max_size` (at least one entry), as `raft::Storage::entries` does;
    /// returns how many it read.
    fn scan(&mut self, lo: u64, hi: u64, max_size: u64) -> u64;

    /// The first and last index held.
    fn range(&self) -> (u64, u64);

    /// Discards entries below `index` and frees what space the store frees
    /// on its own.
    fn compact(&mut self, index: u64);

    /// Closes the store (dropping everything it holds in memory).
    fn close(&mut self);

    /// Opens the store again after [`close`](Backend::close), recovering it.
    fn open(&mut self);

    /// Memory figures of the open store beyond the common heap measurement
    /// (raftwal reports its index size).
    fn memory(&self, _entries: u64, _out: &mut Figures) {}
}

/// Opens a new, empty backend of `kind` in `dir`.
pub fn open(kind: Kind, dir: &Path, durability: Durability) -> Box<dyn Backend> {
    match kind {
        Kind::Raftwal => Box::new(RaftwalStore::new(dir, durability)),
        Kind::RaftwalLog => Box::new(RaftwalLog::new(dir, durability)),
        Kind::Raw => Box::new(Raw::new(dir, durability)),
        Kind::RaftEngine => Box::new(Engine::new(dir, durability)),
        Kind::Mem => Box::new(mem::Mem::new()),
        Kind::Variant(i) => Box::new(RaftwalStore::with(dir, durability, |o| {
            crate::variant::selected()[i].apply(o)
        })),
    }
}
