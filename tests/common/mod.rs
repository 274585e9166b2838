//! Helpers shared by the `log_*` behaviour tests: a deterministic data
//! function, a plain in-memory model of a log, and an independent reader of
//! the on-disk frame layout (so tests can aim damage at exact frames).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use raftwal::{Entry, Error, Log, Options};

/// Small segments, so a few hundred entries span several files.
pub fn opts() -> Options {
    Options::default().segment_size(4096)
}

/// The data of entry `index` written in `term`: deterministic, of varying
/// length, and different for every `(index, term)`.
pub fn data(index: u64, term: u64) -> Vec<u8> {
    let mut d = format!("{index}/{term}:").into_bytes();
    let extra = (index.wrapping_mul(7).wrapping_add(term.wrapping_mul(13)) % 64) as usize;
    let seed = index.wrapping_mul(31).wrapping_add(term.wrapping_mul(17)) as usize;
    d.extend((0..extra).map(|k| seed.wrapping_add(k) as u8));
    d
}

/// Entry `index` of `term` with [`data`].
pub fn entry(index: u64, term: u64) -> Entry {
    Entry::new(index, term, data(index, term))
}

/// Entries `lo..hi`, all of `term`.
pub fn entries(lo: u64, hi: u64, term: u64) -> Vec<Entry> {
    (lo..hi).map(|i| entry(i, term)).collect()
}

/// Entries `first..first + n` of term 1, each holding 200 bytes of its
/// index: one write of them is a few frames of a 4 KiB segment.
pub fn batch(first: u64, n: u64) -> Vec<Entry> {
    (first..first + n)
        .map(|i| Entry::new(i, 1, vec![i as u8; 200]))
        .collect()
}

/// The segment files of `dir`, oldest (lowest sequence) first.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// One frame as laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawFrame {
    pub offset: u64,
    pub ty: u8,
    /// Payload length.
    pub len: u64,
}

pub const FRAME_HEADER: u64 = 9;
pub const TY_HEADER: u8 = 1;
pub const TY_ENTRY: u8 = 2;
pub const TY_STATE: u8 = 3;
pub const TY_MARKER: u8 = 4;
pub const TY_FOOTER: u8 = 5;
pub const TY_TRAILER: u8 = 6;

/// Walks the frames of an undamaged segment file by their length fields
/// (the segment header frame included), without trusting raftwal's scanner.
/// Stops at zeroed space (the unused, preallocated end of a segment).
pub fn frames(path: &Path) -> Vec<RawFrame> {
    frames_in(&std::fs::read(path).unwrap(), path)
}

/// [`frames`] of the bytes of the segment file `path` (a file of an
/// in-memory file system, say).
pub fn frames_in(bytes: &[u8], path: &Path) -> Vec<RawFrame> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + FRAME_HEADER as usize <= bytes.len() {
        if bytes[at..at + 9].iter().all(|&b| b == 0) {
            break;
        }
        // The frame type, without the END_OF_WRITE bit of a write's last
        // frame.
        let ty = bytes[at] & !raftwal::tools::frame::FLAGS;
        let len = u32::from_le_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
        assert!(
            at + 9 + len <= bytes.len(),
            "{} is not a clean sequence of frames",
            path.display()
        );
        out.push(RawFrame {
            offset: at as u64,
            ty,
            len: len as u64,
        });
        at += 9 + len;
    }
    assert!(
        bytes[at..].iter().all(|&b| b == 0),
        "{} ends inside a frame",
        path.display()
    );
    out
}

/// Where the data of a segment file ends: after its last frame, before any
/// zeroed (preallocated) space.
pub fn data_end(path: &Path) -> u64 {
    data_end_in(&std::fs::read(path).unwrap(), path)
}

/// [`data_end`] of the bytes of the segment file `path`.
pub fn data_end_in(bytes: &[u8], path: &Path) -> u64 {
    frames_in(bytes, path)
        .last()
        .map_or(0, |f| f.offset + FRAME_HEADER + f.len)
}

/// Writes `torn` (the start of a frame a crash cut short, say) into the
/// bytes of the active segment file `path` right after its data: over its
/// preallocated zeros, or past its end when it has none.
pub fn tear_after_data(bytes: &mut Vec<u8>, path: &Path, torn: &[u8]) {
    let at = data_end_in(bytes, path) as usize;
    if bytes.len() < at + torn.len() {
        bytes.resize(at + torn.len(), 0);
    }
    bytes[at..at + torn.len()].copy_from_slice(torn);
}

/// Whether a segment file is sealed (ends with a footer and a trailer).
pub fn is_sealed(path: &Path) -> bool {
    frames(path).last().is_some_and(|f| f.ty == TY_TRAILER)
}

/// Strips the footer and trailer of a sealed segment, leaving the segment
/// as a crash before its sealing would have: opening scans it in full.
pub fn unseal(path: &Path) {
    let footer = frames(path)
        .into_iter()
        .find(|f| f.ty == TY_FOOTER)
        .expect("a sealed segment");
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(footer.offset).unwrap();
}

/// The entry frames of a segment file.
pub fn entry_frames(path: &Path) -> Vec<RawFrame> {
    frames(path)
        .into_iter()
        .filter(|f| f.ty == TY_ENTRY)
        .collect()
}

/// Flips one bit of byte `at` of `path`.
pub fn flip_byte(path: &Path, at: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[at as usize] ^= 0x10;
    std::fs::write(path, b).unwrap();
}

/// A plain model of what a log must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub first: u64,
    /// `(term, data)` of entries `first..`.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// The term of `first - 1`.
    pub prev_term: u64,
    pub state: Option<Vec<u8>>,
}

impl Default for Model {
    fn default() -> Self {
        Model::new()
    }
}

impl Model {
    /// What a new log shows.
    pub fn new() -> Model {
        Model {
            first: 1,
            entries: Vec::new(),
            prev_term: 0,
            state: None,
        }
    }

    pub fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }

    /// The term of `index`, for `first - 1 ..= last`.
    pub fn term(&self, index: u64) -> u64 {
        if index + 1 == self.first {
            self.prev_term
        } else {
            self.entries[(index - self.first) as usize].0
        }
    }

    /// The term the next appended entry may not go below.
    pub fn last_term(&self) -> u64 {
        self.term(self.last())
    }

    pub fn append(&mut self, es: &[Entry]) {
        for e in es {
            assert_eq!(e.index, self.last() + 1, "model: non-contiguous append");
            self.entries.push((e.term, e.data.to_vec()));
        }
    }

    pub fn truncate_from(&mut self, index: u64) {
        self.entries.truncate((index - self.first) as usize);
    }

    pub fn compact(&mut self, index: u64) {
        if index <= self.first {
            return;
        }
        self.prev_term = self.term(index - 1);
        self.entries.drain(..(index - self.first) as usize);
        self.first = index;
    }

    pub fn reset(&mut self, next: u64, term: u64) {
        self.first = next;
        self.entries.clear();
        self.prev_term = term;
    }

    /// Checks every observable of `log` against the model.
    pub fn check(&self, log: &Log) {
        let (first, last) = (self.first, self.last());
        assert_eq!(log.first_index(), first, "first_index");
        assert_eq!(log.last_index(), last, "last_index");
        assert_eq!(log.is_empty(), self.entries.is_empty(), "is_empty");
        assert_eq!(
            log.term(first - 1).unwrap(),
            self.prev_term,
            "term(first-1)"
        );
        for (k, (term, data)) in self.entries.iter().enumerate() {
            let i = first + k as u64;
            let e = log.get_entry(i).unwrap();
            assert_eq!(e.index, i);
            assert_eq!(e.term, *term, "term of entry {i}");
            assert_eq!(&e.data[..], &data[..], "data of entry {i}");
            assert_eq!(log.term(i).unwrap(), *term, "term({i})");
        }
        let all = log.entries(first, last + 1, None).unwrap();
        assert_eq!(all.len(), self.entries.len());
        for (k, e) in all.iter().enumerate() {
            let (term, data) = &self.entries[k];
            assert_eq!(
                (e.index, e.term, &e.data[..]),
                (first + k as u64, *term, &data[..])
            );
        }
        assert!(matches!(
            log.get_entry(last + 1),
            Err(Error::Unavailable { .. })
        ));
        assert!(matches!(log.term(last + 1), Err(Error::Unavailable { .. })));
        if first > 1 {
            assert!(matches!(
                log.get_entry(first - 1),
                Err(Error::Compacted { .. })
            ));
        }
        if first > 2 {
            assert!(matches!(log.term(first - 2), Err(Error::Compacted { .. })));
        }
        assert_eq!(log.state().as_deref(), self.state.as_deref(), "state");
    }
}
