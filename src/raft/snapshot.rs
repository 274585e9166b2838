//! Durable snapshot files of a [`RaftLogStore`](crate::RaftLogStore).
//!
//! A snapshot (raft's `SnapshotMetadata` and the application's data) lives in
//! one file in the log directory, `snapshot-{index:016x}-{term:016x}.snap`.
//! It is written to `<name>.tmp`, fsynced, renamed into place, and the
//! directory is fsynced; only then does anything refer to it. Layout (all
//! integers little-endian):
//!
//! ```text
//! offset  size      field
//!      0     8      magic "RWSNAP\0\0"
//!      8     4      format version (1)
//!     12     4      meta_len: length of the encoded SnapshotMetadata
//!     16     8      data_len: length of the application's data
//!     24     4      data_crc: CRC-32 (IEEE) of the data
//!     28     4      head_crc: CRC-32 (IEEE) of bytes 0..28 and the metadata
//!     32  meta_len  raft `eraftpb.SnapshotMetadata`, protobuf-encoded
//!      .  data_len  the data
//! ```
//!
//! The file's length must be exactly `32 + meta_len + data_len`; lengths are
//! checked against it (and `meta_len` against [`MAX_META_LEN`]) before
//! anything is allocated. The header and metadata are verified whenever the
//! file is opened; the data's CRC whenever the data is read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::SnapshotMetadata;

use crate::error::{Damage, Error, Result};
use crate::fs::{FileHandle, FileSystem};

/// The first eight bytes of every snapshot file.
pub(crate) const MAGIC: &[u8; 8] = b"RWSNAP\0\0";
/// The snapshot file format this build writes and reads.
pub(crate) const VERSION: u32 = 1;
/// The length of the fixed header.
pub(crate) const HEADER_LEN: usize = 32;
/// The largest encoded `SnapshotMetadata` accepted (it holds a `ConfState`:
/// a few node ids). A longer length field is corruption.
pub(crate) const MAX_META_LEN: u32 = 16 << 20;

const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".tmp";

/// The file name of the snapshot at `index` with `term`.
pub(crate) fn file_name(index: u64, term: u64) -> String {
    format!("{PREFIX}{index:016x}-{term:016x}{SUFFIX}")
}

/// The path of the snapshot at `index` with `term` in `dir`.
pub(crate) fn path(dir: &Path, index: u64, term: u64) -> PathBuf {
    dir.join(file_name(index, term))
}

/// Parses a snapshot file name into `(index, term)`.
pub(crate) fn parse_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let (index, term) = stem.split_once('-')?;
    if index.len() != 16 || term.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(index, 16).ok()?,
        u64::from_str_radix(term, 16).ok()?,
    ))
}

/// The snapshot files in a directory.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Complete snapshot files as `(index, term, path)`.
    pub snapshots: Vec<(u64, u64, PathBuf)>,
    /// Temporary files of writes that never finished.
    pub temporary: Vec<PathBuf>,
}

/// Lists the snapshot files (and leftover temporary files) of `dir`.
/// A directory not made yet (an engine group's, before its first
/// snapshot) holds none.
pub(crate) fn list(fs: &dyn FileSystem, dir: &Path) -> Result<Listing> {
    let mut out = Listing::default();
    let paths = match fs.list(dir) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("read directory", dir, e)),
    };
    for path in paths {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(base) = name.strip_suffix(TMP_SUFFIX) {
            if parse_file_name(base).is_some() {
                out.temporary.push(path);
            }
        } else if let Some((index, term)) = parse_file_name(name) {
            out.snapshots.push((index, term, path));
        }
    }
    out.snapshots.sort_by_key(|s| (s.0, s.1));
    Ok(out)
}

/// Makes `dir` if it is missing (an engine group's snapshot directory is
/// made with its first snapshot), its name and those of the parents made
/// with it durable before anything goes in.
fn ensure_dir(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    loop {
        match fs.list(d) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.push(d),
            Err(e) => return Err(Error::io("read directory", d, e)),
        }
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    fs.create_dir_all(dir)
        .map_err(|e| Error::io("create directory", dir, e))?;
    // Each new name lives in its parent: sync those, the outermost last.
    for m in &missing {
        if let Some(parent) = m.parent() {
            fs.sync_dir(parent)
                .map_err(|e| Error::io("fsync directory", parent, e))?;
        }
    }
    Ok(())
}

/// Writes a snapshot durably: temporary file, write, fsync, rename,
/// directory fsync. Returns the final path. A file of the same name is
/// replaced atomically.
pub(crate) fn write(
    fs: &dyn FileSystem,
    dir: &Path,
    meta: &SnapshotMetadata,
    data: &[u8],
) -> Result<PathBuf> {
    ensure_dir(fs, dir)?;
    let final_path = path(dir, meta.index, meta.term);
    let tmp = dir.join(format!("{}{TMP_SUFFIX}", file_name(meta.index, meta.term)));
    let meta_bytes = meta
        .write_to_bytes()
        .map_err(|e| Error::InvalidArgument(format!("snapshot metadata does not encode: {e}")))?;
    if meta_bytes.len() > MAX_META_LEN as usize {
        return Err(Error::InvalidArgument(format!(
            "snapshot metadata of {} bytes exceeds {MAX_META_LEN} bytes",
            meta_bytes.len()
        )));
    }
    let head = encode_header(&meta_bytes, data);
    let res = (|| {
        let f = fs
            .create(&tmp)
            .map_err(|e| Error::io("create snapshot", &tmp, e))?;
        let data_at = (HEADER_LEN + meta_bytes.len()) as u64;
        f.write_all_at(&head, 0)
            .and_then(|()| f.write_all_at(&meta_bytes, HEADER_LEN as u64))
            .and_then(|()| f.write_all_at(data, data_at))
            .map_err(|e| Error::io("write snapshot", &tmp, e))?;
        f.sync_data()
            .map_err(|e| Error::io("fsync snapshot", &tmp, e))?;
        fs.rename(&tmp, &final_path)
            .map_err(|e| Error::io("rename snapshot", &tmp, e))?;
        fs.sync_dir(dir)
            .map_err(|e| Error::io("fsync directory", dir, e))
    })();
    if let Err(e) = res {
        // Nothing refers to the temporary file; a leftover is removed on open.
        let _ = fs.remove(&tmp);
        return Err(e);
    }
    Ok(final_path)
}

fn encode_header(meta: &[u8], data: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(meta.len() as u32).to_le_bytes());
    h[16..24].copy_from_slice(&(data.len() as u64).to_le_bytes());
    h[24..28].copy_from_slice(&crc32fast::hash(data).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h[..28]);
    crc.update(meta);
    h[28..32].copy_from_slice(&crc.finalize().to_le_bytes());
    h
}

/// A verified header and metadata of an open snapshot file.
pub(crate) struct Opened {
    file: Arc<dyn FileHandle>,
    path: PathBuf,
    meta_len: u32,
    data_len: u64,
    data_crc: u32,
    /// The snapshot's metadata.
    pub meta: SnapshotMetadata,
}

/// Opens a snapshot file and verifies its header, its length and its
/// metadata (not its data).
pub(crate) fn open(fs: &dyn FileSystem, path: &Path) -> Result<Opened> {
    let file = fs
        .open(path)
        .map_err(|e| Error::io("open snapshot", path, e))?;
    let file_len = file
        .len()
        .map_err(|e| Error::io("stat snapshot", path, e))?;
    let bad =
        |offset: u64, reason: String| Error::corruption(Damage::Snapshot, path, offset, reason);
    if file_len < HEADER_LEN as u64 {
        return Err(bad(
            0,
            format!("snapshot file of {file_len} bytes is shorter than its header"),
        ));
    }
    let mut h = [0u8; HEADER_LEN];
    file.read_exact_at(&mut h, 0)
        .map_err(|e| Error::io("read snapshot", path, e))?;
    if &h[..8] != MAGIC {
        return Err(bad(0, "not a raftwal snapshot file (bad magic)".into()));
    }
    let le32 = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let version = le32(8);
    if version != VERSION {
        return Err(bad(
            8,
            format!("snapshot format version {version}; this build reads {VERSION}"),
        ));
    }
    let meta_len = le32(12);
    let mut d = [0u8; 8];
    d.copy_from_slice(&h[16..24]);
    let data_len = u64::from_le_bytes(d);
    let data_crc = le32(24);
    let head_crc = le32(28);
    if meta_len > MAX_META_LEN {
        return Err(bad(
            12,
            format!("metadata length {meta_len} exceeds {MAX_META_LEN}"),
        ));
    }
    let want = (HEADER_LEN as u64)
        .checked_add(u64::from(meta_len))
        .and_then(|n| n.checked_add(data_len));
    if want != Some(file_len) {
        return Err(bad(
            12,
            format!(
                "header says {meta_len} bytes of metadata and {data_len} bytes of data, \
                 but the file holds {} bytes after its header",
                file_len - HEADER_LEN as u64
            ),
        ));
    }
    // meta_len is at most MAX_META_LEN and within the file: safe to allocate.
    let mut meta_bytes = vec![0u8; meta_len as usize];
    file.read_exact_at(&mut meta_bytes, HEADER_LEN as u64)
        .map_err(|e| Error::io("read snapshot", path, e))?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h[..28]);
    crc.update(&meta_bytes);
    if crc.finalize() != head_crc {
        return Err(bad(0, "CRC mismatch in the header or metadata".into()));
    }
    let meta = SnapshotMetadata::parse_from_bytes(&meta_bytes)
        .map_err(|e| bad(HEADER_LEN as u64, format!("metadata does not decode: {e}")))?;
    Ok(Opened {
        file,
        path: path.to_path_buf(),
        meta_len,
        data_len,
        data_crc,
        meta,
    })
}

impl Opened {
    /// Reads the data and verifies its CRC.
    pub(crate) fn read_data(&self) -> Result<Bytes> {
        let at = HEADER_LEN as u64 + u64::from(self.meta_len);
        let len = usize::try_from(self.data_len).map_err(|_| {
            Error::corruption(
                Damage::Snapshot,
                &self.path,
                16,
                format!("data length {} does not fit in memory", self.data_len),
            )
        })?;
        // data_len was checked against the file's length when it was opened.
        let mut data = vec![0u8; len];
        self.file
            .read_exact_at(&mut data, at)
            .map_err(|e| Error::io("read snapshot", &self.path, e))?;
        if crc32fast::hash(&data) != self.data_crc {
            return Err(Error::corruption(
                Damage::Snapshot,
                &self.path,
                at,
                "CRC mismatch in the snapshot data",
            ));
        }
        Ok(Bytes::from(data))
    }
}

/// Removes `paths` (a missing file is fine) and syncs `dir` if any was
/// removed.
pub(crate) fn remove(fs: &dyn FileSystem, dir: &Path, paths: &[PathBuf]) -> Result<()> {
    let mut removed = false;
    for p in paths {
        match fs.remove(p) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove snapshot", p, e)),
        }
    }
    if removed {
        fs.sync_dir(dir)
            .map_err(|e| Error::io("fsync directory", dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::StdFileSystem;
    use std::fs::OpenOptions;

    const FS: StdFileSystem = StdFileSystem;
    use raft::eraftpb::ConfState;

    fn meta(index: u64, term: u64) -> SnapshotMetadata {
        let mut m = SnapshotMetadata {
            index,
            term,
            ..Default::default()
        };
        m.set_conf_state(ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        });
        m
    }

    #[test]
    fn names_round_trip() {
        let n = file_name(7, 3);
        assert_eq!(parse_file_name(&n), Some((7, 3)));
        assert_eq!(parse_file_name("snapshot-7-3.snap"), None);
        assert_eq!(
            parse_file_name("0000000000000001-0000000000000001.wal"),
            None
        );
    }

    #[test]
    fn write_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&FS, dir.path(), &meta(9, 2), b"state machine").unwrap();
        assert_eq!(p, path(dir.path(), 9, 2));
        let o = open(&FS, &p).unwrap();
        assert_eq!(o.meta, meta(9, 2));
        assert_eq!(o.read_data().unwrap(), &b"state machine"[..]);
        let l = list(&FS, dir.path()).unwrap();
        assert_eq!(l.snapshots.len(), 1);
        assert!(l.temporary.is_empty());
        // Empty data is fine.
        let p = write(&FS, dir.path(), &meta(10, 2), b"").unwrap();
        assert_eq!(open(&FS, &p).unwrap().read_data().unwrap().len(), 0);
    }

    fn flip(p: &Path, at: u64) {
        let f = OpenOptions::new().read(true).write(true).open(p).unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        b[0] ^= 0x40;
        f.write_all_at(&b, at).unwrap();
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&FS, dir.path(), &meta(5, 1), b"some data here").unwrap();
        let len = std::fs::metadata(&p).unwrap().len();
        for at in 0..len {
            flip(&p, at);
            let r = open(&FS, &p).and_then(|o| o.read_data());
            assert!(
                matches!(r, Err(Error::Corruption { .. })),
                "byte {at}: {:?}",
                r.map(|_| ())
            );
            flip(&p, at);
        }
        assert!(open(&FS, &p).unwrap().read_data().is_ok());
    }

    #[test]
    fn truncation_and_huge_lengths_are_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&FS, dir.path(), &meta(5, 1), b"0123456789").unwrap();
        let len = std::fs::metadata(&p).unwrap().len();
        for cut in [0, 10, HEADER_LEN as u64, len - 1] {
            let q = dir.path().join("cut.snap");
            std::fs::copy(&p, &q).unwrap();
            OpenOptions::new()
                .write(true)
                .open(&q)
                .unwrap()
                .set_len(cut)
                .unwrap();
            assert!(
                matches!(open(&FS, &q), Err(Error::Corruption { .. })),
                "cut {cut}"
            );
        }
        // A header claiming enormous lengths is refused before allocating.
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&u32::MAX.to_le_bytes(), 12).unwrap();
        assert!(matches!(open(&FS, &p), Err(Error::Corruption { .. })));
        f.write_all_at(&1u32.to_le_bytes(), 12).unwrap();
        f.write_all_at(&u64::MAX.to_le_bytes(), 16).unwrap();
        assert!(matches!(open(&FS, &p), Err(Error::Corruption { .. })));
    }
}
