//! File-system simulators for the crash tests (`tests/crash_*.rs`) and the
//! fuzz targets (`fuzz/`), plugged into raftwal through
//! `Options::file_system`:
//!
//! - [`SimFs`], an in-memory file system that remembers what would survive
//!   a power cut. Each file keeps its durable content (as of its last
//!   `sync_data`) and the writes made since; the directory keeps its durable
//!   names (as of the last `sync_dir`) and the creations, renames and
//!   removals made since. [`SimFs::cut_power`] builds the image a power cut
//!   would leave: every unsynced write kept, dropped, kept as a prefix or
//!   turned into zeros, and a random prefix of the unsynced directory
//!   operations applied (a journaling file system keeps their order). An
//!   armed countdown ([`SimFs::arm`]) cuts the power at the n-th operation
//!   or the n-th sync; from then on every operation fails with `EIO`.
//! - [`FaultFs`], a wrapper around any file system that injects errors:
//!   fail the n-th operation of a kind (write, sync, create, rename, remove,
//!   set_len, allocate, directory sync), with `EIO` or `ENOSPC`, writing
//!   only part of the buffer first if asked, and a "disk full" mode.
//!
//! Both are deterministic given the caller's [`Rng`] seed (background
//! threads of the log may still interleave differently from run to run).
//! Included with `#[path = "common/fs_sim.rs"] mod fs_sim;` by the tests and
//! `#[path = "../../tests/common/fs_sim.rs"] mod fs_sim;` by fuzz targets,
//! so it only uses `std` and `raftwal`.
#![allow(dead_code)]

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use raftwal::fs::{FileHandle, FileSystem};

/// `EIO` on Linux.
pub const EIO: i32 = 5;
/// `ENOSPC` on Linux.
pub const ENOSPC: i32 = 28;

/// An I/O error with the given `errno`.
pub fn os_error(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

/// Whether `e` is `ENOSPC`.
pub fn is_enospc(e: &io::Error) -> bool {
    e.raw_os_error() == Some(ENOSPC)
}

/// A small, fast, seeded PRNG (xorshift64*), so every test and fuzz run is
/// reproducible from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so near seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// A source of choices: the seeded [`Rng`] in tests, the fuzzer's bytes in
/// fuzz targets. Workload generators take any `Choose`.
pub trait Choose {
    /// The next 64 bits of choice.
    fn next_u64(&mut self) -> u64;

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// `n` bytes.
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

impl Choose for Rng {
    fn next_u64(&mut self) -> u64 {
        Rng::next_u64(self)
    }
}

/// Whether the calling thread is one of the log's background threads
/// (preparer, sealers, syncers: all named `raftwal-*`).
pub fn on_background_thread() -> bool {
    std::thread::current()
        .name()
        .is_some_and(|n| n.starts_with("raftwal-"))
}

// ---------------------------------------------------------------------------
// SimFs: an in-memory file system with power-loss semantics.
// ---------------------------------------------------------------------------

/// A change to a file's bytes not yet made durable by `sync_data`.
#[derive(Debug, Clone)]
enum DataOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
    Allocate { offset: u64, len: u64 },
}

#[derive(Debug, Clone, Default)]
struct SimFile {
    /// What survives a power cut for sure.
    durable: Vec<u8>,
    /// What reads see.
    live: Vec<u8>,
    /// Changes since the last `sync_data`, oldest first.
    unsynced: Vec<DataOp>,
}

/// A change to a directory not yet made durable by `sync_dir`.
#[derive(Debug, Clone)]
enum DirOp {
    Link { path: PathBuf, id: u64 },
    Unlink { path: PathBuf },
    Rename { from: PathBuf, to: PathBuf, id: u64 },
}

impl DirOp {
    fn touches(&self, dir: &Path) -> bool {
        let in_dir = |p: &Path| p.parent() == Some(dir);
        match self {
            DirOp::Link { path, .. } | DirOp::Unlink { path } => in_dir(path),
            DirOp::Rename { from, to, .. } => in_dir(from) || in_dir(to),
        }
    }

    fn apply(&self, names: &mut BTreeMap<PathBuf, u64>) {
        match self {
            DirOp::Link { path, id } => {
                names.insert(path.clone(), *id);
            }
            DirOp::Unlink { path } => {
                names.remove(path);
            }
            DirOp::Rename { from, to, id } => {
                names.remove(from);
                names.insert(to.clone(), *id);
            }
        }
    }
}

/// When an armed [`SimFs`] cuts the power.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Just before the n-th counted operation from now (1 = the next one).
    /// Counted: every operation that changes something (create, write,
    /// set_len, allocate, sync_data, sync_dir, rename, remove).
    Op(u64),
    /// Just before the n-th sync (`sync_data` or `sync_dir`) from now.
    Sync(u64),
}

#[derive(Debug, Default)]
struct SimState {
    files: HashMap<u64, SimFile>,
    next_id: u64,
    /// What `list` and `open` see.
    live: BTreeMap<PathBuf, u64>,
    /// What survives a power cut for sure.
    durable: BTreeMap<PathBuf, u64>,
    /// Directory changes since the last `sync_dir`, oldest first.
    pending: Vec<DirOp>,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
    /// Counted operations and syncs so far.
    ops: u64,
    syncs: u64,
    trigger: Option<Trigger>,
    /// The power is off: every operation fails.
    dead: bool,
    /// The operation that was refused when the power went off.
    died_at: Option<String>,
    /// Read-only: every changing operation fails (for checking that an
    /// open writes nothing).
    read_only: bool,
}

impl SimState {
    /// Counts one changing operation, cutting the power if the trigger says
    /// so. `Err` when the operation must not happen.
    fn count(&mut self, what: &str, sync: bool) -> io::Result<()> {
        if self.dead {
            return Err(os_error(EIO));
        }
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("read-only simulated file system refuses {what}"),
            ));
        }
        self.ops += 1;
        if sync {
            self.syncs += 1;
        }
        let fire = match &mut self.trigger {
            Some(Trigger::Op(n)) => {
                *n -= 1;
                *n == 0
            }
            Some(Trigger::Sync(n)) if sync => {
                *n -= 1;
                *n == 0
            }
            _ => false,
        };
        if fire {
            self.trigger = None;
            self.dead = true;
            self.died_at = Some(what.to_string());
            return Err(os_error(EIO));
        }
        Ok(())
    }

    fn alive(&self) -> io::Result<()> {
        if self.dead {
            Err(os_error(EIO))
        } else {
            Ok(())
        }
    }

    fn file(&mut self, id: u64) -> &mut SimFile {
        self.files.entry(id).or_default()
    }

    fn new_file(&mut self, path: &Path) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.files.insert(id, SimFile::default());
        self.live.insert(path.to_path_buf(), id);
        self.pending.push(DirOp::Link {
            path: path.to_path_buf(),
            id,
        });
        id
    }
}

/// An in-memory file system that knows what a power cut would leave; see
/// the module documentation. Cheap to clone (clones share the files).
#[derive(Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<SimState>>,
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("SimFs")
            .field("files", &s.live.len())
            .field("ops", &s.ops)
            .field("dead", &s.dead)
            .finish()
    }
}

/// Applies one unsynced change to `buf`, as a power cut left it: `keep`
/// is how many bytes of a write reached the disk (`None`: all of it),
/// `zeros` whether they reached it as zeros.
fn apply_data(buf: &mut Vec<u8>, op: &DataOp, keep: Option<usize>, zeros: bool) {
    match op {
        DataOp::Write { offset, data } => {
            let n = keep.unwrap_or(data.len()).min(data.len());
            let at = *offset as usize;
            if buf.len() < at + n {
                buf.resize(at + n, 0);
            }
            if zeros {
                buf[at..at + n].fill(0);
            } else {
                buf[at..at + n].copy_from_slice(&data[..n]);
            }
        }
        DataOp::SetLen(len) => buf.resize(*len as usize, 0),
        DataOp::Allocate { offset, len } => {
            let end = (offset + len) as usize;
            if buf.len() < end {
                buf.resize(end, 0);
            }
        }
    }
}

/// What a power cut did to the unsynced changes (for test statistics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CutStats {
    /// Unsynced writes kept whole.
    pub kept: u64,
    /// Unsynced writes (or size changes) lost.
    pub dropped: u64,
    /// Unsynced writes of which only a prefix survived.
    pub torn: u64,
    /// Unsynced writes that left zeros.
    pub zeroed: u64,
    /// Unsynced directory operations undone.
    pub dir_ops_undone: u64,
}

impl SimFs {
    /// An empty file system.
    pub fn new() -> SimFs {
        SimFs::default()
    }

    /// A file system holding `files` (path, bytes), all durable.
    pub fn from_image<P: AsRef<Path>>(files: impl IntoIterator<Item = (P, Vec<u8>)>) -> SimFs {
        let fs = SimFs::new();
        {
            let mut s = fs.lock();
            for (path, bytes) in files {
                let path = path.as_ref().to_path_buf();
                if let Some(parent) = path.parent() {
                    s.dirs.insert(parent.to_path_buf());
                }
                s.next_id += 1;
                let id = s.next_id;
                s.files.insert(
                    id,
                    SimFile {
                        durable: bytes.clone(),
                        live: bytes,
                        unsynced: Vec::new(),
                    },
                );
                s.live.insert(path.clone(), id);
                s.durable.insert(path, id);
            }
        }
        fs
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panicking test thread must not hide the state from the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This file system as the `Options::file_system` value.
    pub fn handle(&self) -> Arc<dyn FileSystem> {
        Arc::new(self.clone())
    }

    /// Arms the power cut (replacing any earlier trigger).
    pub fn arm(&self, t: Trigger) {
        let mut s = self.lock();
        s.trigger = match t {
            Trigger::Op(0) | Trigger::Sync(0) => None,
            t => Some(t),
        };
    }

    /// Disarms the power cut.
    pub fn disarm(&self) {
        self.lock().trigger = None;
    }

    /// Cuts the power now: every later operation fails.
    pub fn kill(&self) {
        let mut s = self.lock();
        if !s.dead {
            s.dead = true;
            s.died_at = Some("cut by the test".into());
        }
    }

    /// Whether the power has been cut.
    pub fn is_dead(&self) -> bool {
        self.lock().dead
    }

    /// The operation refused when the power went off.
    pub fn died_at(&self) -> Option<String> {
        self.lock().died_at.clone()
    }

    /// Makes every changing operation fail (`PermissionDenied`), or allows
    /// them again.
    pub fn set_read_only(&self, on: bool) {
        self.lock().read_only = on;
    }

    /// `(counted operations, syncs)` so far.
    pub fn counters(&self) -> (u64, u64) {
        let s = self.lock();
        (s.ops, s.syncs)
    }

    /// The image a power cut now would leave, as a new file system (this
    /// one is unchanged). Each unsynced write is kept, dropped, kept as a
    /// prefix or replaced by zeros; each unsynced size change kept or
    /// dropped; a random prefix of the unsynced directory operations is
    /// applied to the durable directory.
    pub fn cut_power(&self, rng: &mut Rng) -> SimFs {
        self.cut_power_with_stats(rng).0
    }

    /// [`SimFs::cut_power`], also returning what the cut did.
    pub fn cut_power_with_stats(&self, rng: &mut Rng) -> (SimFs, CutStats) {
        let s = self.lock();
        let mut st = CutStats::default();
        let mut names = s.durable.clone();
        let applied = rng.below(s.pending.len() as u64 + 1) as usize;
        for op in &s.pending[..applied] {
            op.apply(&mut names);
        }
        st.dir_ops_undone = (s.pending.len() - applied) as u64;
        let mut contents: HashMap<u64, Vec<u8>> = HashMap::new();
        for &id in names.values() {
            if contents.contains_key(&id) {
                continue;
            }
            let Some(f) = s.files.get(&id) else { continue };
            let mut buf = f.durable.clone();
            for op in &f.unsynced {
                match op {
                    DataOp::Write { data, .. } => match rng.below(4) {
                        0 => {
                            st.kept += 1;
                            apply_data(&mut buf, op, None, false);
                        }
                        1 => st.dropped += 1,
                        2 => {
                            st.torn += 1;
                            let n = rng.below(data.len() as u64 + 1) as usize;
                            apply_data(&mut buf, op, Some(n), false);
                        }
                        _ => {
                            st.zeroed += 1;
                            apply_data(&mut buf, op, None, true);
                        }
                    },
                    DataOp::SetLen(_) | DataOp::Allocate { .. } => {
                        if rng.chance(1, 2) {
                            st.kept += 1;
                            apply_data(&mut buf, op, None, false);
                        } else {
                            st.dropped += 1;
                        }
                    }
                }
            }
            contents.insert(id, buf);
        }
        let image: Vec<(PathBuf, Vec<u8>)> = names
            .iter()
            .map(|(p, id)| (p.clone(), contents.get(id).cloned().unwrap_or_default()))
            .collect();
        let out = SimFs::from_image(image);
        {
            let mut o = out.lock();
            o.dirs.extend(s.dirs.iter().cloned());
        }
        (out, st)
    }

    /// The live files (what reads see now) as `(path, bytes)`.
    pub fn image(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let s = self.lock();
        s.live
            .iter()
            .map(|(p, id)| {
                (
                    p.clone(),
                    s.files.get(id).map(|f| f.live.clone()).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The live bytes of `path`, if it exists.
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock();
        let id = s.live.get(path)?;
        s.files.get(id).map(|f| f.live.clone())
    }

    /// Replaces the bytes of `path` (live and durable: damage, not a
    /// write). Creates the file if needed.
    pub fn put(&self, path: &Path, bytes: Vec<u8>) {
        let mut s = self.lock();
        let id = match s.live.get(path) {
            Some(&id) => id,
            None => {
                s.next_id += 1;
                let id = s.next_id;
                s.live.insert(path.to_path_buf(), id);
                id
            }
        };
        s.durable.insert(path.to_path_buf(), id);
        s.files.insert(
            id,
            SimFile {
                durable: bytes.clone(),
                live: bytes,
                unsynced: Vec::new(),
            },
        );
    }

    /// Removes `path` for good (live and durable).
    pub fn delete(&self, path: &Path) {
        let mut s = self.lock();
        s.live.remove(path);
        s.durable.remove(path);
    }

    /// The paths of the live files, sorted.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.lock().live.keys().cloned().collect()
    }

    /// The paths of the live segment files, sorted (oldest first).
    pub fn segments(&self) -> Vec<PathBuf> {
        self.paths()
            .into_iter()
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == raftwal::segment::EXTENSION)
            })
            .collect()
    }
}

/// An open file of a [`SimFs`]. Like a POSIX descriptor it keeps working
/// after its name is removed or renamed.
#[derive(Debug)]
pub struct SimHandle {
    fs: SimFs,
    id: u64,
}

impl FileHandle for SimHandle {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut s = self.fs.lock();
        s.alive()?;
        let f = s.file(self.id);
        let end = offset.checked_add(buf.len() as u64);
        match end {
            Some(end) if end <= f.live.len() as u64 => {
                buf.copy_from_slice(&f.live[offset as usize..end as usize]);
                Ok(())
            }
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of a simulated file",
            )),
        }
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut s = self.fs.lock();
        s.count("write", false)?;
        let op = DataOp::Write {
            offset,
            data: buf.to_vec(),
        };
        let f = s.file(self.id);
        apply_data(&mut f.live, &op, None, false);
        f.unsynced.push(op);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let mut s = self.fs.lock();
        s.alive()?;
        Ok(s.file(self.id).live.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.fs.lock();
        s.count("set_len", false)?;
        let op = DataOp::SetLen(len);
        let f = s.file(self.id);
        apply_data(&mut f.live, &op, None, false);
        f.unsynced.push(op);
        Ok(())
    }

    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut s = self.fs.lock();
        s.count("allocate", false)?;
        let op = DataOp::Allocate { offset, len };
        let f = s.file(self.id);
        apply_data(&mut f.live, &op, None, false);
        f.unsynced.push(op);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.fs.lock();
        s.count("sync_data", true)?;
        let f = s.file(self.id);
        f.durable = f.live.clone();
        f.unsynced.clear();
        Ok(())
    }
}

/// The lock guard of a [`SimFs`]: releases the path when dropped.
struct SimLock {
    fs: SimFs,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.fs.lock().locks.remove(&self.path);
    }
}

impl FileSystem for SimFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.alive()?;
        for a in dir.ancestors() {
            s.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }

    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        let mut s = self.lock();
        s.alive()?;
        if s.live.contains_key(path) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        s.count("create", false)?;
        let id = s.new_file(path);
        Ok(Arc::new(SimHandle {
            fs: self.clone(),
            id,
        }))
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        let mut s = self.lock();
        s.count("create", false)?;
        let id = match s.live.get(path) {
            Some(&id) => {
                let op = DataOp::SetLen(0);
                let f = s.file(id);
                apply_data(&mut f.live, &op, None, false);
                f.unsynced.push(op);
                id
            }
            None => s.new_file(path),
        };
        Ok(Arc::new(SimHandle {
            fs: self.clone(),
            id,
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        let s = self.lock();
        s.alive()?;
        match s.live.get(path) {
            Some(&id) => Ok(Arc::new(SimHandle {
                fs: self.clone(),
                id,
            })),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.alive()?;
        let Some(&id) = s.live.get(from) else {
            return Err(io::ErrorKind::NotFound.into());
        };
        s.count("rename", false)?;
        let op = DirOp::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            id,
        };
        op.apply(&mut s.live);
        s.pending.push(op);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.alive()?;
        if !s.live.contains_key(path) {
            return Err(io::ErrorKind::NotFound.into());
        }
        s.count("remove", false)?;
        let op = DirOp::Unlink {
            path: path.to_path_buf(),
        };
        op.apply(&mut s.live);
        s.pending.push(op);
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let s = self.lock();
        s.alive()?;
        if !s.dirs.contains(dir) && !s.live.keys().any(|p| p.parent() == Some(dir)) {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok(s.live
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.count("sync_dir", true)?;
        let pending = std::mem::take(&mut s.pending);
        let mut rest = Vec::new();
        for op in pending {
            if op.touches(dir) {
                op.apply(&mut s.durable);
            } else {
                rest.push(op);
            }
        }
        s.pending = rest;
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        let mut s = self.lock();
        s.alive()?;
        if s.locks.contains(path) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if !s.live.contains_key(path) {
            // Creating the lock file is a directory change like any other,
            // but not one worth a crash point.
            s.new_file(path);
        }
        s.locks.insert(path.to_path_buf());
        Ok(Box::new(SimLock {
            fs: self.clone(),
            path: path.to_path_buf(),
        }))
    }
}

// ---------------------------------------------------------------------------
// FaultFs: error injection around any file system.
// ---------------------------------------------------------------------------

/// The kinds of operation [`FaultFs`] can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `write_all_at`.
    Write,
    /// `sync_data` of a file.
    Sync,
    /// `create` and `create_new` (and creating a missing lock file).
    Create,
    /// `rename`.
    Rename,
    /// `remove`.
    Remove,
    /// `set_len`.
    SetLen,
    /// `allocate`.
    Allocate,
    /// `sync_dir`.
    SyncDir,
    /// `read_exact_at`.
    Read,
    /// `open` (of an existing file).
    Open,
    /// `list`.
    List,
}

impl Op {
    /// Every kind the crash tests inject errors into.
    pub const MUTATING: [Op; 8] = [
        Op::Write,
        Op::Sync,
        Op::Create,
        Op::Rename,
        Op::Remove,
        Op::SetLen,
        Op::Allocate,
        Op::SyncDir,
    ];
}

/// Which threads a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Any thread.
    Any,
    /// Only the caller's threads (not the log's `raftwal-*` threads).
    Foreground,
    /// Only the log's background threads.
    Background,
}

impl Scope {
    fn matches(self) -> bool {
        match self {
            Scope::Any => true,
            Scope::Foreground => !on_background_thread(),
            Scope::Background => on_background_thread(),
        }
    }
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fail with `EIO`; nothing is done.
    Eio,
    /// Fail with `ENOSPC`; nothing is done.
    Enospc,
    /// A write writes only the first `keep` bytes of its buffer (at most),
    /// then fails with `EIO` (like a short write followed by an error).
    /// Other operations fail with `EIO`.
    PartialEio {
        /// Bytes written before the failure.
        keep: usize,
    },
    /// As `PartialEio`, but the failure is `ENOSPC`.
    PartialEnospc {
        /// Bytes written before the failure.
        keep: usize,
    },
}

#[derive(Debug, Clone)]
struct Rule {
    op: Op,
    /// Fires at the n-th matching operation (counting down).
    countdown: u64,
    fault: Fault,
    scope: Scope,
    /// Keeps firing on every matching operation once reached.
    sticky: bool,
    fired: bool,
}

/// Disk-full behaviour of a [`FaultFs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiskFull {
    /// Space is available.
    #[default]
    No,
    /// No free blocks: creating a file, allocating, and writing past a
    /// file's current end fail with `ENOSPC` (a write fills the file up to
    /// its end first); writes inside a file (preallocated space), removals,
    /// renames, truncation and syncs still work.
    Realistic,
    /// Every write, creation and allocation fails with `ENOSPC`, even inside
    /// a file.
    Strict,
}

#[derive(Debug, Default)]
struct FaultState {
    rules: Vec<Rule>,
    disk_full: DiskFull,
    /// Operations seen, by kind and scope (foreground, background).
    counts: BTreeMap<(Op, bool), u64>,
    /// Faults injected, by kind.
    injected: BTreeMap<Op, u64>,
    /// Descriptions of the injected faults, in order.
    log: Vec<String>,
    /// Every `sync_data` seen, in order: the file and whether the caller's
    /// thread (not one of the log's `raftwal-*` threads) made it.
    syncs: Vec<(PathBuf, bool)>,
}

/// The control panel of a [`FaultFs`]: shared by the test and the file
/// system (and its open files).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    state: Arc<Mutex<FaultState>>,
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fails the n-th operation of kind `op` (counted from now, 1 = the
    /// next) on threads in `scope`, once.
    pub fn fail_nth(&self, op: Op, n: u64, fault: Fault, scope: Scope) {
        self.push(op, n, fault, scope, false);
    }

    /// Fails every operation of kind `op` in `scope` from the n-th on.
    pub fn fail_from(&self, op: Op, n: u64, fault: Fault, scope: Scope) {
        self.push(op, n, fault, scope, true);
    }

    fn push(&self, op: Op, n: u64, fault: Fault, scope: Scope, sticky: bool) {
        self.lock().rules.push(Rule {
            op,
            countdown: n.max(1),
            fault,
            scope,
            sticky,
            fired: false,
        });
    }

    /// Removes every rule (the disk-full mode stays).
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// Sets the disk-full mode.
    pub fn set_disk_full(&self, mode: DiskFull) {
        self.lock().disk_full = mode;
    }

    /// Operations of kind `op` seen so far in `scope`.
    pub fn count(&self, op: Op, scope: Scope) -> u64 {
        let s = self.lock();
        let fg = s.counts.get(&(op, true)).copied().unwrap_or(0);
        let bg = s.counts.get(&(op, false)).copied().unwrap_or(0);
        match scope {
            Scope::Any => fg + bg,
            Scope::Foreground => fg,
            Scope::Background => bg,
        }
    }

    /// Faults injected so far (all kinds).
    pub fn injected(&self) -> u64 {
        self.lock().injected.values().sum()
    }

    /// Faults injected so far of kind `op`.
    pub fn injected_of(&self, op: Op) -> u64 {
        self.lock().injected.get(&op).copied().unwrap_or(0)
    }

    /// The files `sync_data` was called on so far by threads in `scope`,
    /// in order (one element per call).
    pub fn synced_files(&self, scope: Scope) -> Vec<PathBuf> {
        self.lock()
            .syncs
            .iter()
            .filter(|(_, fg)| match scope {
                Scope::Any => true,
                Scope::Foreground => *fg,
                Scope::Background => !*fg,
            })
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// What was injected, in order (`"write <path>: ..."`).
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    /// Counts an operation and decides whether it fails: `Some(fault)` when
    /// a rule fires.
    fn check(&self, op: Op, path: &Path) -> Option<Fault> {
        let fg = !on_background_thread();
        let mut s = self.lock();
        *s.counts.entry((op, fg)).or_default() += 1;
        if op == Op::Sync {
            s.syncs.push((path.to_path_buf(), fg));
        }
        let mut hit = None;
        for r in s.rules.iter_mut() {
            if r.op != op || !r.scope.matches() || (r.fired && !r.sticky) {
                continue;
            }
            if r.fired {
                hit = Some(r.fault);
                break;
            }
            r.countdown -= 1;
            if r.countdown == 0 {
                r.fired = true;
                hit = Some(r.fault);
                break;
            }
        }
        if let Some(f) = hit {
            *s.injected.entry(op).or_default() += 1;
            let who = std::thread::current().name().unwrap_or("?").to_string();
            s.log
                .push(format!("{op:?} {} ({who}): {f:?}", path.display()));
        }
        hit
    }

    fn disk_full(&self) -> DiskFull {
        self.lock().disk_full
    }

    fn note_enospc(&self, op: Op, path: &Path) {
        let mut s = self.lock();
        *s.injected.entry(op).or_default() += 1;
        s.log.push(format!("{op:?} {}: disk full", path.display()));
    }
}

fn fault_error(f: Fault) -> io::Error {
    match f {
        Fault::Eio | Fault::PartialEio { .. } => os_error(EIO),
        Fault::Enospc | Fault::PartialEnospc { .. } => os_error(ENOSPC),
    }
}

/// A file system that passes everything to another one, failing what its
/// [`Faults`] say. See the module documentation.
#[derive(Debug, Clone)]
pub struct FaultFs {
    inner: Arc<dyn FileSystem>,
    faults: Faults,
}

impl FaultFs {
    /// Wraps `inner`; returns the file system and its control panel.
    pub fn new(inner: Arc<dyn FileSystem>) -> (FaultFs, Faults) {
        let faults = Faults::default();
        (
            FaultFs {
                inner,
                faults: faults.clone(),
            },
            faults,
        )
    }

    /// This file system as the `Options::file_system` value.
    pub fn handle(&self) -> Arc<dyn FileSystem> {
        Arc::new(self.clone())
    }

    fn creation(&self, path: &Path) -> io::Result<()> {
        if let Some(f) = self.faults.check(Op::Create, path) {
            return Err(fault_error(f));
        }
        if self.faults.disk_full() != DiskFull::No {
            self.faults.note_enospc(Op::Create, path);
            return Err(os_error(ENOSPC));
        }
        Ok(())
    }

    fn wrap(&self, h: Arc<dyn FileHandle>, path: &Path) -> Arc<dyn FileHandle> {
        Arc::new(FaultHandle {
            inner: h,
            path: path.to_path_buf(),
            faults: self.faults.clone(),
        })
    }
}

/// An open file of a [`FaultFs`].
#[derive(Debug)]
pub struct FaultHandle {
    inner: Arc<dyn FileHandle>,
    path: PathBuf,
    faults: Faults,
}

impl FileHandle for FaultHandle {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if let Some(f) = self.faults.check(Op::Read, &self.path) {
            return Err(fault_error(f));
        }
        self.inner.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if let Some(f) = self.faults.check(Op::Write, &self.path) {
            if let Fault::PartialEio { keep } | Fault::PartialEnospc { keep } = f {
                let n = keep.min(buf.len());
                if n > 0 {
                    self.inner.write_all_at(&buf[..n], offset)?;
                }
            }
            return Err(fault_error(f));
        }
        match self.faults.disk_full() {
            DiskFull::No => self.inner.write_all_at(buf, offset),
            DiskFull::Strict => {
                self.faults.note_enospc(Op::Write, &self.path);
                Err(os_error(ENOSPC))
            }
            DiskFull::Realistic => {
                let len = self.inner.len()?;
                let end = offset + buf.len() as u64;
                if end <= len {
                    return self.inner.write_all_at(buf, offset);
                }
                // Fill what the file already holds, then run out of space.
                let fits = len.saturating_sub(offset) as usize;
                if fits > 0 {
                    self.inner.write_all_at(&buf[..fits], offset)?;
                }
                self.faults.note_enospc(Op::Write, &self.path);
                Err(os_error(ENOSPC))
            }
        }
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if let Some(f) = self.faults.check(Op::SetLen, &self.path) {
            return Err(fault_error(f));
        }
        self.inner.set_len(len)
    }

    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        if let Some(f) = self.faults.check(Op::Allocate, &self.path) {
            return Err(fault_error(f));
        }
        if self.faults.disk_full() != DiskFull::No && offset + len > self.inner.len()? {
            self.faults.note_enospc(Op::Allocate, &self.path);
            return Err(os_error(ENOSPC));
        }
        self.inner.allocate(offset, len)
    }

    fn sync_data(&self) -> io::Result<()> {
        if let Some(f) = self.faults.check(Op::Sync, &self.path) {
            return Err(fault_error(f));
        }
        self.inner.sync_data()
    }
}

impl FileSystem for FaultFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        self.creation(path)?;
        let h = self.inner.create_new(path)?;
        Ok(self.wrap(h, path))
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        self.creation(path)?;
        let h = self.inner.create(path)?;
        Ok(self.wrap(h, path))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        if let Some(f) = self.faults.check(Op::Open, path) {
            return Err(fault_error(f));
        }
        let h = self.inner.open(path)?;
        Ok(self.wrap(h, path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if let Some(f) = self.faults.check(Op::Rename, from) {
            return Err(fault_error(f));
        }
        self.inner.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        if let Some(f) = self.faults.check(Op::Remove, path) {
            return Err(fault_error(f));
        }
        self.inner.remove(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        if let Some(f) = self.faults.check(Op::List, dir) {
            return Err(fault_error(f));
        }
        self.inner.list(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if let Some(f) = self.faults.check(Op::SyncDir, dir) {
            return Err(fault_error(f));
        }
        self.inner.sync_dir(dir)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        self.inner.lock(path)
    }
}
