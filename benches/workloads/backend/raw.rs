//! `raw`: the physical floor. The bytes `RaftLogStore` would write (the same
//! frames, encoded before the clock starts), one `pwrite` per batch and one
//! `fdatasync` per durable write, into one file that was zero-filled and
//! fsynced beforehand (the fastest durable append path: no file growth, no
//! allocation at sync time).
//!
//! Reads: one `pread` of exactly the frames asked for, found through an
//! in-memory table of frame offsets (8 bytes per entry), not decoded or
//! checked. Recovery: one sequential pass over the file in 1 MiB reads,
//! walking frame headers (no CRC) to rebuild that table. Compaction punches
//! a hole below the new first entry. What a real log must also persist (its
//! first index after compaction) raw keeps in memory across a reopen.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use raftwal::tools::frame::{self, FrameHeader, FrameType, HEADER_LEN};
use raftwal::tools::proto;

use super::{Backend, Durability};
use crate::data::{encode_entry, encode_hard_state, Batch};
use crate::report::Figures;

/// The CRC salt of raw's frames (any fixed value).
const SALT: u32 = 0x5241_5721;
/// Bytes per read during recovery.
const CHUNK: usize = 1 << 20;
/// Bytes per write when zero-filling: one page. Linux 6.16+ gives ext4
/// files large folios, and a folio is as large as the write that created
/// it; a small append into a 1 MiB folio then costs ≈ 2.5× one into a
/// 4 KiB folio (every buffer head of the folio is walked), and a sync
/// writes back more. The floor is the fastest file, so page-sized writes.
const ZERO_CHUNK: usize = 4 << 10;

/// One batch, encoded.
#[derive(Debug, Default)]
pub struct Encoded {
    /// The frames, as one buffer.
    pub bytes: Vec<u8>,
    /// Where each entry's frame starts in `bytes`.
    pub starts: Vec<u64>,
    /// The index of the first entry (0 when there is none).
    pub first: u64,
}

/// Encodes a batch as `RaftLogStore` does: one entry frame per raft entry
/// (its data the entry's protobuf encoding) and a state frame for the hard
/// state.
pub fn encode_batch(batch: &Batch) -> Encoded {
    let mut out = Encoded {
        first: batch.entries.first().map_or(0, |e| e.index),
        ..Encoded::default()
    };
    for e in &batch.entries {
        out.starts.push(out.bytes.len() as u64);
        frame::encode_entry(&mut out.bytes, SALT, e.index, e.term, &encode_entry(e));
    }
    if let Some(hs) = &batch.hard_state {
        let state = proto::State {
            data: encode_hard_state(hs).into(),
        };
        frame::encode_message(&mut out.bytes, FrameType::State, SALT, &state);
    }
    out
}

/// Opens (creating) raw's file and makes sure it is durable.
pub fn create_file(path: &Path) -> File {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .expect("create the raw file");
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .expect("fsync the directory");
    }
    f
}

/// Zero-fills `file` from `from` to `to` and fsyncs it (file size included).
pub fn zero_fill(file: &File, from: u64, to: u64) {
    let zeros = vec![0u8; ZERO_CHUNK];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(ZERO_CHUNK);
        file.write_all_at(&zeros[..n], at).expect("zero-fill");
        at += n as u64;
    }
    file.sync_all().expect("fsync the zero-filled file");
}

/// The raw backend.
pub struct Raw {
    path: PathBuf,
    durability: Durability,
    file: Option<File>,
    /// Bytes of the file zero-filled and fsynced.
    zeroed: u64,
    /// The write position.
    end: u64,
    /// Index of the entry at `offsets[0]`.
    first: u64,
    /// Offset of the first live frame (moves on compaction).
    start: u64,
    /// Frame offset of every entry from `first` on.
    offsets: Vec<u64>,
    /// Batches encoded by `prepare`, waiting for `write`.
    prepared: VecDeque<Encoded>,
}

impl Raw {
    /// An empty raw log in `dir`.
    pub fn new(dir: &Path, durability: Durability) -> Raw {
        std::fs::create_dir_all(dir).expect("create the raw directory");
        let path = dir.join("raw.log");
        Raw {
            file: Some(create_file(&path)),
            path,
            durability,
            zeroed: 0,
            end: 0,
            first: 1,
            start: 0,
            offsets: Vec::new(),
            prepared: VecDeque::new(),
        }
    }

    fn file(&self) -> &File {
        self.file.as_ref().expect("the raw file is open")
    }

    /// The frame of entry `index`: offset and length.
    fn frame_of(&self, index: u64) -> (u64, u64) {
        let k = (index - self.first) as usize;
        let at = self.offsets[k];
        let next = self.offsets.get(k + 1).copied().unwrap_or(self.end);
        (at, next - at)
    }
}

impl Backend for Raw {
    fn prepare(&mut self, batches: &[Batch]) {
        let encoded: Vec<Encoded> = batches.iter().map(encode_batch).collect();
        let need = self.end + encoded.iter().map(|e| e.bytes.len() as u64).sum::<u64>();
        if need > self.zeroed {
            zero_fill(self.file(), self.zeroed, need);
            self.zeroed = need;
        }
        self.prepared.extend(encoded);
    }

    fn write(&mut self, batch: &Batch) {
        let enc = self
            .prepared
            .pop_front()
            .expect("raw: prepare() the batches before writing them");
        assert_eq!(
            enc.first,
            batch.entries.first().map_or(0, |e| e.index),
            "raw: batches written in another order than prepared"
        );
        let at = if enc.first != 0 && enc.first < self.first + self.offsets.len() as u64 {
            let k = (enc.first - self.first) as usize;
            let at = self.offsets[k];
            self.offsets.truncate(k);
            at
        } else {
            self.end
        };
        self.file()
            .write_all_at(&enc.bytes, at)
            .expect("raw pwrite");
        self.offsets.extend(enc.starts.iter().map(|s| at + s));
        self.end = at + enc.bytes.len() as u64;
        if self.durability == Durability::EachWrite {
            self.sync();
        }
    }

    fn sync(&mut self) {
        self.file().sync_data().expect("raw fdatasync");
    }

    fn get(&mut self, index: u64) -> usize {
        let (at, len) = self.frame_of(index);
        let mut buf = vec![0u8; len as usize];
        self.file().read_exact_at(&mut buf, at).expect("raw pread");
        buf.len()
    }

    fn scan(&mut self, lo: u64, hi: u64, max_size: u64) -> u64 {
        let (at, mut len) = self.frame_of(lo);
        let mut n = 1;
        while lo + n < hi {
            let (_, l) = self.frame_of(lo + n);
            if len + l > max_size {
                break;
            }
            len += l;
            n += 1;
        }
        let mut buf = vec![0u8; len as usize];
        self.file().read_exact_at(&mut buf, at).expect("raw pread");
        n
    }

    fn range(&self) -> (u64, u64) {
        (self.first, self.first + self.offsets.len() as u64 - 1)
    }

    fn compact(&mut self, index: u64) {
        let k = (index - self.first) as usize;
        let new_start = self.offsets[k];
        let page = 4096;
        let (from, to) = (self.start / page * page, new_start / page * page);
        if to > from {
            rustix::fs::fallocate(
                self.file(),
                rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
                from,
                to - from,
            )
            .expect("raw: punch a hole");
        }
        self.sync();
        self.offsets.drain(..k);
        self.first = index;
        self.start = new_start;
    }

    fn close(&mut self) {
        self.file = None;
        self.offsets = Vec::new();
        self.end = 0;
    }

    fn open(&mut self) {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .expect("open the raw file");
        let file_len = file.metadata().expect("stat the raw file").len();
        let mut buf = vec![0u8; CHUNK];
        let (mut buf_at, mut buf_len) = (self.start, 0u64);
        let mut pos = self.start;
        while pos + HEADER_LEN as u64 <= file_len {
            if pos + HEADER_LEN as u64 > buf_at + buf_len {
                buf_at = pos;
                buf_len = (file_len - pos).min(CHUNK as u64);
                file.read_exact_at(&mut buf[..buf_len as usize], pos)
                    .expect("raw: read during recovery");
            }
            let at = (pos - buf_at) as usize;
            let head: &[u8; HEADER_LEN] = buf[at..at + HEADER_LEN]
                .try_into()
                .expect("a header is 9 bytes");
            let h = FrameHeader::parse(head);
            if h.is_zero() {
                break;
            }
            if h.ty == FrameType::Entry as u8 {
                self.offsets.push(pos);
            }
            pos += HEADER_LEN as u64 + u64::from(h.len);
        }
        self.end = pos;
        self.zeroed = file_len;
        self.file = Some(file);
    }

    fn memory(&self, entries: u64, out: &mut Figures) {
        let bytes = (self.offsets.capacity() * std::mem::size_of::<u64>()) as f64;
        out.add("index_bytes_per_entry", bytes / entries as f64);
    }
}
