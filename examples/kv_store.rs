//! A durable key-value store on a raftwal [`Log`]: the Go KV stores raftwal
//! grew from, rewritten on it.
//!
//! - Every `set` and `delete` is one log entry, durable before it returns
//!   (the log's default `SyncPolicy::Always`), then applied to the map.
//! - `checkpoint` writes the whole map to a snapshot file atomically (a
//!   temporary file, written, fsynced, renamed, and the directory fsynced),
//!   and only then compacts the log up to the snapshot's index. If the
//!   snapshot fails, the log is left whole.
//! - `open` recovers: the snapshot (CRC checked, every length checked
//!   before anything is allocated), then the log entries after it.
//!
//! ```text
//! cargo run --release --example kv_store [DIR]
//! ```
//!
//! The directory holds `log/` (the raftwal segments) and `snapshot.kv`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use raftwal::{Damage, Entry, Error, Log, Options, Result};

/// The snapshot file's first bytes.
const SNAPSHOT_MAGIC: &[u8; 8] = b"RWKVSNAP";
/// The snapshot format this example writes and reads.
const SNAPSHOT_VERSION: u32 = 1;
/// magic, version, index, count, payload length, payload CRC.
const SNAPSHOT_HEADER_LEN: usize = 8 + 4 + 8 + 8 + 8 + 4;
/// The snapshot file's name in the store's directory.
const SNAPSHOT_FILE: &str = "snapshot.kv";
/// Where a snapshot is written before it is renamed into place.
const SNAPSHOT_TMP: &str = "snapshot.kv.tmp";
/// The largest snapshot `open` reads (a sanity bound on the length field).
const MAX_SNAPSHOT_LEN: u64 = 1 << 32;
/// Every entry is written in term 1: there is one writer and no elections.
const TERM: u64 = 1;

/// Operation codes of a log record.
const OP_SET: u8 = 1;
const OP_DELETE: u8 = 2;

/// One change to the store, as it is recorded in a log entry:
/// `[op u8][key length u32 LE][key][value (set only): the rest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Set { key: String, value: Vec<u8> },
    Delete { key: String },
}

impl Op {
    fn encode(&self) -> Vec<u8> {
        let (op, key, value): (u8, &str, &[u8]) = match self {
            Op::Set { key, value } => (OP_SET, key, value),
            Op::Delete { key } => (OP_DELETE, key, &[]),
        };
        let mut out = Vec::with_capacity(5 + key.len() + value.len());
        out.push(op);
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(value);
        out
    }

    /// Decodes a record; `Err` says what is wrong with it.
    fn decode(data: &[u8]) -> std::result::Result<Op, String> {
        let (&op, rest) = data.split_first().ok_or("empty record")?;
        let mut r = Reader(rest);
        let key = r.string()?;
        match op {
            OP_SET => Ok(Op::Set {
                key,
                value: r.0.to_vec(),
            }),
            OP_DELETE if r.0.is_empty() => Ok(Op::Delete { key }),
            OP_DELETE => Err("trailing bytes after a delete".into()),
            other => Err(format!("unknown operation {other}")),
        }
    }
}

/// Reads length-prefixed fields, checking every length against the bytes
/// left before using it.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u32(&mut self) -> std::result::Result<u32, String> {
        let (head, rest) = self
            .0
            .split_first_chunk::<4>()
            .ok_or("a length field is cut")?;
        self.0 = rest;
        Ok(u32::from_le_bytes(*head))
    }

    fn bytes(&mut self) -> std::result::Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        if len > self.0.len() {
            return Err(format!(
                "a field of {len} bytes where {} are left",
                self.0.len()
            ));
        }
        let (field, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(field)
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| "a key is not UTF-8".to_string())
    }
}

/// The store's contents.
type Map = BTreeMap<String, Vec<u8>>;

/// A durable key-value store: a map in memory, a raftwal log of changes and
/// a snapshot file.
#[derive(Debug)]
pub struct KvStore {
    dir: PathBuf,
    log: Log,
    map: Map,
}

impl KvStore {
    /// Opens (or creates) the store in `dir` and recovers it: the snapshot,
    /// then every log entry after it.
    pub fn open(dir: impl AsRef<Path>) -> Result<KvStore> {
        let dir = dir.as_ref().to_path_buf();
        let log = Log::open(dir.join("log"), Options::default())?;
        let (snapshot_index, mut map) =
            read_snapshot(&dir.join(SNAPSHOT_FILE))?.unwrap_or_default();
        if log.first_index() > snapshot_index + 1 {
            return Err(corrupt(
                &dir,
                format!(
                    "the log starts at index {} but the snapshot only covers up to {snapshot_index}",
                    log.first_index()
                ),
            ));
        }
        for entry in log.iter(snapshot_index + 1, log.last_index() + 1) {
            let entry = entry?;
            let op = Op::decode(&entry.data).map_err(|reason| {
                corrupt(
                    &dir,
                    format!("log entry {} is not a record: {reason}", entry.index),
                )
            })?;
            apply(&mut map, op);
        }
        Ok(KvStore { dir, log, map })
    }

    /// Sets `key` to `value`, durably.
    pub fn set(&mut self, key: &str, value: impl Into<Vec<u8>>) -> Result<()> {
        self.record(Op::Set {
            key: key.to_string(),
            value: value.into(),
        })
    }

    /// The value of `key`, if it is set.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// Deletes `key`, durably. Returns whether it was set.
    pub fn delete(&mut self, key: &str) -> Result<bool> {
        if !self.map.contains_key(key) {
            return Ok(false);
        }
        self.record(Op::Delete {
            key: key.to_string(),
        })?;
        Ok(true)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the store holds no keys.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every key, in order.
    pub fn keys(&self) -> Vec<String> {
        self.map.keys().cloned().collect()
    }

    /// The log behind the store (to look at its indexes).
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Writes the whole map to the snapshot file atomically and durably,
    /// then compacts the log up to the snapshot's index. When the snapshot
    /// cannot be written the error is returned and the log is untouched.
    /// Returns the snapshot's index.
    pub fn checkpoint(&mut self) -> Result<u64> {
        let index = self.log.last_index();
        write_snapshot(&self.dir, index, &self.map)?;
        self.log.compact(index + 1)?;
        Ok(index)
    }

    /// Appends `op` to the log (durable on return), then applies it.
    fn record(&mut self, op: Op) -> Result<()> {
        let index = self.log.last_index() + 1;
        self.log.append(&[Entry::new(index, TERM, op.encode())])?;
        apply(&mut self.map, op);
        Ok(())
    }
}

fn apply(map: &mut Map, op: Op) {
    match op {
        Op::Set { key, value } => {
            map.insert(key, value);
        }
        Op::Delete { key } => {
            map.remove(&key);
        }
    }
}

fn corrupt(path: &Path, reason: String) -> Error {
    Error::Corruption {
        path: path.to_path_buf(),
        offset: 0,
        // An entry the log verified whose data is not one of our records.
        damage: Damage::Payload,
        reason,
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `map` as the snapshot at `index`: `snapshot.kv.tmp` is written
/// and fsynced, renamed to `snapshot.kv`, and the directory fsynced.
fn write_snapshot(dir: &Path, index: u64, map: &Map) -> Result<()> {
    let mut payload = Vec::new();
    for (k, v) in map {
        payload.extend_from_slice(&(k.len() as u32).to_le_bytes());
        payload.extend_from_slice(k.as_bytes());
        payload.extend_from_slice(&(v.len() as u32).to_le_bytes());
        payload.extend_from_slice(v);
    }
    let mut buf = Vec::with_capacity(SNAPSHOT_HEADER_LEN + payload.len());
    buf.extend_from_slice(SNAPSHOT_MAGIC);
    buf.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    buf.extend_from_slice(&index.to_le_bytes());
    buf.extend_from_slice(&(map.len() as u64).to_le_bytes());
    buf.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);

    let tmp = dir.join(SNAPSHOT_TMP);
    let path = dir.join(SNAPSHOT_FILE);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io("create snapshot", &tmp))?;
    f.write_all(&buf).map_err(io("write snapshot", &tmp))?;
    f.sync_all().map_err(io("fsync snapshot", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io("rename snapshot", &tmp))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", dir))
}

/// Reads the snapshot file, if there is one: `(index, map)`.
fn read_snapshot(path: &Path) -> Result<Option<(u64, Map)>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("open snapshot", path)(e)),
    };
    let bad = |reason: String| corrupt(path, reason);
    let file_len = f.metadata().map_err(io("stat snapshot", path))?.len();
    let mut head = [0u8; SNAPSHOT_HEADER_LEN];
    if file_len < head.len() as u64 {
        return Err(bad(format!(
            "snapshot of {file_len} bytes is shorter than its header"
        )));
    }
    f.read_exact_at(&mut head, 0)
        .map_err(io("read snapshot", path))?;
    let (magic, rest) = head.split_at(8);
    if magic != SNAPSHOT_MAGIC {
        return Err(bad("not a snapshot of this store (bad magic)".into()));
    }
    let field = |at: usize, n: usize| rest.get(at..at + n).unwrap_or(&[]);
    let le64 = |at: usize| u64::from_le_bytes(field(at, 8).try_into().unwrap_or([0; 8]));
    let version = u32::from_le_bytes(field(0, 4).try_into().unwrap_or([0; 4]));
    let (index, count, len) = (le64(4), le64(12), le64(20));
    let crc = u32::from_le_bytes(field(28, 4).try_into().unwrap_or([0; 4]));
    if version != SNAPSHOT_VERSION {
        return Err(bad(format!(
            "snapshot version {version}; this build reads {SNAPSHOT_VERSION}"
        )));
    }
    // The length is checked against the file before a buffer is sized by it.
    if len != file_len - SNAPSHOT_HEADER_LEN as u64 || len > MAX_SNAPSHOT_LEN {
        return Err(bad(format!(
            "snapshot says {len} bytes of data but the file holds {}",
            file_len - SNAPSHOT_HEADER_LEN as u64
        )));
    }
    let mut payload = vec![0u8; len as usize];
    f.read_exact_at(&mut payload, SNAPSHOT_HEADER_LEN as u64)
        .map_err(io("read snapshot", path))?;
    if crc32fast::hash(&payload) != crc {
        return Err(bad("snapshot CRC mismatch".into()));
    }
    let mut map = BTreeMap::new();
    let mut r = Reader(&payload);
    while !r.0.is_empty() {
        let key = r.string().map_err(&bad)?;
        let value = r.bytes().map_err(&bad)?.to_vec();
        map.insert(key, value);
    }
    if map.len() as u64 != count {
        return Err(bad(format!(
            "snapshot says {count} keys but holds {}",
            map.len()
        )));
    }
    Ok(Some((index, map)))
}

fn show(kv: &KvStore) {
    for k in kv.keys() {
        let v = kv.get(&k).unwrap_or_default();
        println!("  {k} = {}", String::from_utf8_lossy(v));
    }
    println!(
        "  ({} keys; log holds indexes {}..={})",
        kv.len(),
        kv.log().first_index(),
        kv.log().last_index()
    );
}

fn main() -> Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("target/kv_store_demo"), PathBuf::from);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io("remove old demo directory", &dir))?;
    }
    std::fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
    println!("kv_store demo in {}", dir.display());

    let mut kv = KvStore::open(&dir)?;
    println!("writing 10 keys, deleting key3");
    for i in 1..=10 {
        kv.set(&format!("key{i}"), format!("value{i}"))?;
    }
    kv.delete("key3")?;
    let index = kv.checkpoint()?;
    println!("checkpoint: snapshot at index {index}, log compacted");
    kv.set("key1", "value1-updated")?;
    kv.set("key11", "value11")?;
    kv.delete("key2")?;
    println!("after the checkpoint: updated key1, added key11, deleted key2");
    show(&kv);

    println!("simulating a crash (dropping the store without a checkpoint)");
    drop(kv);

    let kv = KvStore::open(&dir)?;
    println!("recovered from the snapshot and the log:");
    show(&kv);
    let ok = kv.get("key1") == Some(&b"value1-updated"[..])
        && kv.get("key2").is_none()
        && kv.get("key3").is_none()
        && kv.get("key11") == Some(&b"value11"[..])
        && kv.len() == 9;
    if !ok {
        return Err(Error::InvalidArgument(
            "the recovered state is not the state before the crash".into(),
        ));
    }
    println!("ok: the recovered state matches the state before the crash");
    Ok(())
}
