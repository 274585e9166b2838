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
//!   turned into zeros, and the unsynced directory operations applied as
//!   [`CutMode`] says: by default a random *subset* of them (a file system
//!   may persist the directory operations issued between two directory
//!   fsyncs in any order, as ALICE's model has it), keeping the order of
//!   operations on one file or one name; or a random prefix (a journaling
//!   file system that keeps their order). An armed countdown
//!   ([`SimFs::arm`]) cuts the power at the n-th operation or the n-th
//!   sync; from then on every operation fails with `EIO`. Its [`Gate`]
//!   ([`SimFs::gate`]) can hold `remove`, `sync_data` and `sync_dir` calls
//!   of chosen threads (the log's background threads, say) until the test
//!   releases them or the power is cut (then they fail with `EIO`).
//! - [`FaultFs`], a wrapper around any file system that injects errors:
//!   fail the n-th operation of a kind (write, sync, create, rename, remove,
//!   set_len, allocate, directory sync), with `EIO` or `ENOSPC`, writing
//!   only part of the buffer first if asked, and a "disk full" mode. Over a
//!   [`SimFs`] its faults come first: a failed operation never reaches the
//!   simulator (nor its gate).
//! - [`Gate`], the holding pen of [`SimFs`], also usable on its own by a
//!   wrapper around another file system (see `tests/log_submit_stage.rs`).
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
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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

/// A fuzzer's bytes as choices: two bytes a number, zeros once they run
/// out; raw bytes for data.
pub struct ByteChoices<'a> {
    /// The bytes not used yet.
    pub data: &'a [u8],
}

impl ByteChoices<'_> {
    /// Whether every byte was used.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl Choose for ByteChoices<'_> {
    fn next_u64(&mut self) -> u64 {
        let n = self.data.len().min(2);
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head.iter().rev().fold(0, |acc, &b| acc << 8 | u64::from(b))
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let k = n.min(self.data.len());
        let (head, rest) = self.data.split_at(k);
        self.data = rest;
        let mut out = head.to_vec();
        out.resize(n, 0);
        out
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

/// A change to a directory not yet made durable by `sync_dir`. `id` is the
/// file (inode) it links, unlinks or renames.
#[derive(Debug, Clone)]
enum DirOp {
    Link { path: PathBuf, id: u64 },
    Unlink { path: PathBuf, id: u64 },
    Rename { from: PathBuf, to: PathBuf, id: u64 },
}

impl DirOp {
    fn touches(&self, dir: &Path) -> bool {
        let in_dir = |p: &Path| p.parent() == Some(dir);
        match self {
            DirOp::Link { path, .. } | DirOp::Unlink { path, .. } => in_dir(path),
            DirOp::Rename { from, to, .. } => in_dir(from) || in_dir(to),
        }
    }

    /// The file the operation is about.
    fn id(&self) -> u64 {
        match self {
            DirOp::Link { id, .. } | DirOp::Unlink { id, .. } | DirOp::Rename { id, .. } => *id,
        }
    }

    /// The names the operation changes.
    fn paths(&self) -> [&Path; 2] {
        match self {
            DirOp::Link { path, .. } | DirOp::Unlink { path, .. } => [path, path],
            DirOp::Rename { from, to, .. } => [from, to],
        }
    }

    /// Whether this operation must persist after `earlier` (issued before
    /// it) or not at all: both are about the same file or the same name.
    fn depends_on(&self, earlier: &DirOp) -> bool {
        self.id() == earlier.id()
            || self
                .paths()
                .iter()
                .any(|p| earlier.paths().iter().any(|q| p == q))
    }

    fn apply(&self, names: &mut BTreeMap<PathBuf, u64>) {
        match self {
            DirOp::Link { path, id } => {
                names.insert(path.clone(), *id);
            }
            DirOp::Unlink { path, .. } => {
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

/// Which unsynced directory operations a power cut of a [`SimFs`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CutMode {
    /// A random subset of the operations issued since the last `sync_dir`,
    /// applied in issue order, where an operation is kept only if every
    /// earlier pending one about the same file or the same name was kept:
    /// a file system may persist them in any order (ALICE's model), but
    /// never a rename of a file whose creation it lost. The default.
    #[default]
    Reorder,
    /// A random prefix of them (a journaling file system that commits
    /// directory operations in order).
    Prefix,
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
    /// What a power cut keeps of the pending directory operations.
    cut_mode: CutMode,
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

// ---------------------------------------------------------------------------
// Gate: holding chosen operations of chosen threads.
// ---------------------------------------------------------------------------

/// The longest a [`Gate`] holds an operation: past it the operation goes
/// ahead, so a failing test cannot hang (a log's drop joins the threads
/// held here).
pub const GATE_TIMEOUT: Duration = Duration::from_secs(60);

/// The thread-name prefix of every background thread of a log (preparer,
/// sealers, syncers, remover, writeback): hold an operation on all of them.
pub const BACKGROUND: &str = "raftwal-";

/// The kinds of operation a [`Gate`] can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Held {
    /// `remove` (an unlink).
    Remove,
    /// `sync_data` of a file.
    Sync,
    /// `sync_dir`.
    SyncDir,
}

#[derive(Debug, Default)]
struct GateState {
    /// What is held: an operation kind, on threads whose name starts with
    /// the prefix.
    holds: Vec<(Held, String)>,
    /// Operations waiting at the gate now.
    waiting: Vec<(Held, PathBuf, String)>,
    /// Operations that have arrived at the gate so far, by kind.
    arrived: BTreeMap<Held, u64>,
    /// The power is off: held operations fail and nothing more is held.
    cut: bool,
    /// The longest an operation is held ([`GATE_TIMEOUT`] unless set).
    timeout: Option<Duration>,
}

/// A gate that holds chosen operations of chosen threads (by thread-name
/// prefix, e.g. [`BACKGROUND`] or `"raftwal-seal"`) until the test
/// [releases](Gate::release) them or the power is [cut](Gate::cut), when
/// they fail with `EIO`. Every wait is bounded by [`GATE_TIMEOUT`] or what
/// [`Gate::set_timeout`] says; past it the operation goes ahead. Cheap to
/// clone (clones share the gate).
#[derive(Debug, Clone, Default)]
pub struct Gate {
    shared: Arc<(Mutex<GateState>, Condvar)>,
}

impl Gate {
    /// An open gate (holding nothing).
    pub fn new() -> Gate {
        Gate::default()
    }

    /// The gate's state (a panicking thread does not poison it).
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on, holds `op` on threads whose name starts with `threads`
    /// (until [`release`](Gate::release) or a power cut).
    pub fn hold(&self, op: Held, threads: &str) {
        let mut g = self.lock();
        if !g.cut {
            g.holds.push((op, threads.to_string()));
        }
    }

    /// Sets the longest an operation is held, from its arrival; past it
    /// the operation goes ahead. A short one keeps a test quick when the
    /// code under test makes the caller wait for the held thread (the
    /// scenario then plays out in that order).
    pub fn set_timeout(&self, timeout: Duration) {
        self.lock().timeout = Some(timeout);
        self.shared.1.notify_all();
    }

    /// Lets every held operation go on, and holds nothing more.
    pub fn release(&self) {
        self.lock().holds.clear();
        self.shared.1.notify_all();
    }

    /// The power went off: every held operation fails with `EIO`, and
    /// nothing more is held.
    pub fn cut(&self) {
        let mut g = self.lock();
        g.cut = true;
        g.holds.clear();
        drop(g);
        self.shared.1.notify_all();
    }

    /// Whether operations of kind `op` are held on some threads now.
    pub fn is_holding(&self, op: Held) -> bool {
        self.lock().holds.iter().any(|h| h.0 == op)
    }

    /// How many operations wait at the gate now.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// The operations waiting at the gate now: kind, path, thread name.
    pub fn waiting_ops(&self) -> Vec<(Held, PathBuf, String)> {
        self.lock().waiting.clone()
    }

    /// How many operations of kind `op` have been held so far.
    pub fn arrived(&self, op: Held) -> u64 {
        self.lock().arrived.get(&op).copied().unwrap_or(0)
    }

    /// Waits (at most `timeout`) until `n` operations of kind `op` wait at
    /// the gate at once; whether they do.
    pub fn wait_for_waiting(&self, op: Held, n: usize, timeout: Duration) -> bool {
        let g = self.lock();
        let count = |g: &GateState| g.waiting.iter().filter(|w| w.0 == op).count();
        let (g, _) = self
            .shared
            .1
            .wait_timeout_while(g, timeout, |g| count(g) < n && !g.cut)
            .unwrap_or_else(|e| e.into_inner());
        count(&g) >= n
    }

    /// Called by a file system before operation `op` on `path`: waits
    /// while `op` is held on the calling thread (at most [`GATE_TIMEOUT`]
    /// or the timeout set, then it goes ahead). `Err(EIO)` when the power
    /// was cut while it waited.
    pub fn pass(&self, op: Held, path: &Path) -> io::Result<()> {
        let name = std::thread::current().name().unwrap_or("").to_string();
        let held = |g: &GateState| {
            g.holds
                .iter()
                .any(|(o, pre)| *o == op && name.starts_with(pre.as_str()))
        };
        let mut g = self.lock();
        if !held(&g) {
            return Ok(());
        }
        *g.arrived.entry(op).or_default() += 1;
        g.waiting.push((op, path.to_path_buf(), name.clone()));
        self.shared.1.notify_all();
        let arrival = Instant::now();
        while held(&g) && !g.cut {
            let deadline = arrival + g.timeout.unwrap_or(GATE_TIMEOUT);
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            g = self
                .shared
                .1
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if let Some(k) = g
            .waiting
            .iter()
            .position(|w| w.0 == op && w.1 == path && w.2 == name)
        {
            g.waiting.remove(k);
        }
        self.shared.1.notify_all();
        if g.cut {
            Err(os_error(EIO))
        } else {
            Ok(())
        }
    }
}

/// An in-memory file system that knows what a power cut would leave; see
/// the module documentation. Cheap to clone (clones share the files and
/// the gate).
#[derive(Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<SimState>>,
    gate: Gate,
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

/// Which of the `pending` directory operations a power cut keeps, as
/// `mode` says (see [`CutMode`]).
fn kept_dir_ops(pending: &[DirOp], mode: CutMode, rng: &mut Rng) -> Vec<bool> {
    let n = pending.len();
    match mode {
        CutMode::Prefix => {
            let applied = rng.below(n as u64 + 1) as usize;
            (0..n).map(|k| k < applied).collect()
        }
        CutMode::Reorder => {
            // How eager this disk was: each operation whose predecessors
            // (same file, same name) persisted persists with this chance.
            let eager = rng.range(1, 3);
            let mut kept = vec![false; n];
            for k in 0..n {
                let free = (0..k).all(|j| kept[j] || !pending[k].depends_on(&pending[j]));
                kept[k] = free && rng.chance(eager, 4);
            }
            kept
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
    /// Unsynced directory operations kept although an earlier, unrelated
    /// one was undone (only under [`CutMode::Reorder`]).
    pub dir_ops_reordered: u64,
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

    /// Cuts the power now: every later operation fails, and so does every
    /// operation held at the gate.
    pub fn kill(&self) {
        let mut s = self.lock();
        if !s.dead {
            s.dead = true;
            s.died_at = Some("cut by the test".into());
        }
        drop(s);
        self.gate.cut();
    }

    /// The gate of this file system: holds chosen `remove`, `sync_data`
    /// and `sync_dir` calls (see [`Gate`]); a power cut (by [`SimFs::kill`]
    /// or an armed trigger) fails them with `EIO`.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Sets what a power cut keeps of the pending directory operations
    /// (for [`SimFs::cut_power`] and [`SimFs::cut_power_with_stats`]; the
    /// images they return inherit it). [`CutMode::Reorder`] unless set.
    pub fn set_cut_mode(&self, mode: CutMode) {
        self.lock().cut_mode = mode;
    }

    /// What a power cut keeps of the pending directory operations.
    pub fn cut_mode(&self) -> CutMode {
        self.lock().cut_mode
    }

    /// How many directory operations are pending (not yet made durable by
    /// a `sync_dir`).
    pub fn pending_dir_ops(&self) -> usize {
        self.lock().pending.len()
    }

    /// Counts one changing operation (see `SimState::count`); when the
    /// power goes off there, the gate fails what it holds.
    fn counted(&self, s: &mut SimState, what: &str, sync: bool) -> io::Result<()> {
        let r = s.count(what, sync);
        if s.dead {
            self.gate.cut();
        }
        r
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
    /// one is unchanged; the image has the same [`CutMode`] and an open
    /// gate). Each unsynced write is kept, dropped, kept as a prefix or
    /// replaced by zeros; each unsynced size change kept or dropped; the
    /// unsynced directory operations are applied to the durable directory
    /// as the [`CutMode`] says (by default a random subset, in order).
    pub fn cut_power(&self, rng: &mut Rng) -> SimFs {
        self.cut_power_with_stats(rng).0
    }

    /// [`SimFs::cut_power`], also returning what the cut did.
    pub fn cut_power_with_stats(&self, rng: &mut Rng) -> (SimFs, CutStats) {
        let mode = self.cut_mode();
        self.cut_power_as(mode, rng)
    }

    /// [`SimFs::cut_power_with_stats`] with the directory operations kept
    /// as `mode` says, whatever [`SimFs::set_cut_mode`] said.
    pub fn cut_power_as(&self, mode: CutMode, rng: &mut Rng) -> (SimFs, CutStats) {
        let s = self.lock();
        let mut st = CutStats::default();
        let mut names = s.durable.clone();
        let kept = kept_dir_ops(&s.pending, mode, rng);
        for (k, op) in s.pending.iter().enumerate() {
            if kept[k] {
                op.apply(&mut names);
                if kept[..k].iter().any(|&x| !x) {
                    st.dir_ops_reordered += 1;
                }
            } else {
                st.dir_ops_undone += 1;
            }
        }
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
            o.cut_mode = s.cut_mode;
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

    /// Whether `path` exists and all its data is durable (no write, size
    /// change or allocation since its last `sync_data`).
    pub fn is_synced(&self, path: &Path) -> bool {
        let s = self.lock();
        s.live
            .get(path)
            .and_then(|id| s.files.get(id))
            .is_some_and(|f| f.unsynced.is_empty())
    }

    /// A live name of file `id` (empty when it has none left).
    fn path_of(&self, id: u64) -> PathBuf {
        let s = self.lock();
        s.live
            .iter()
            .find(|(_, &i)| i == id)
            .map(|(p, _)| p.clone())
            .unwrap_or_default()
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
                    .is_some_and(|e| e == raftwal::tools::segment::EXTENSION)
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
        self.fs.counted(&mut s, "write", false)?;
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
        self.fs.counted(&mut s, "set_len", false)?;
        let op = DataOp::SetLen(len);
        let f = s.file(self.id);
        apply_data(&mut f.live, &op, None, false);
        f.unsynced.push(op);
        Ok(())
    }

    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut s = self.fs.lock();
        self.fs.counted(&mut s, "allocate", false)?;
        let op = DataOp::Allocate { offset, len };
        let f = s.file(self.id);
        apply_data(&mut f.live, &op, None, false);
        f.unsynced.push(op);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        if self.fs.gate.is_holding(Held::Sync) {
            let path = self.fs.path_of(self.id);
            self.fs.gate.pass(Held::Sync, &path)?;
        }
        let mut s = self.fs.lock();
        self.fs.counted(&mut s, "sync_data", true)?;
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
        self.counted(&mut s, "create", false)?;
        let id = s.new_file(path);
        Ok(Arc::new(SimHandle {
            fs: self.clone(),
            id,
        }))
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        let mut s = self.lock();
        self.counted(&mut s, "create", false)?;
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
        self.counted(&mut s, "rename", false)?;
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
        self.gate.pass(Held::Remove, path)?;
        let mut s = self.lock();
        s.alive()?;
        let Some(&id) = s.live.get(path) else {
            return Err(io::ErrorKind::NotFound.into());
        };
        self.counted(&mut s, "remove", false)?;
        let op = DirOp::Unlink {
            path: path.to_path_buf(),
            id,
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
        self.gate.pass(Held::SyncDir, dir)?;
        let mut s = self.lock();
        self.counted(&mut s, "sync_dir", true)?;
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
    /// Only operations on this path match (any path when `None`).
    path: Option<PathBuf>,
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

    /// Fails the n-th operation of kind `op` on `path` (counted from now,
    /// 1 = the next; operations on other paths do not count) on threads in
    /// `scope`, once: the unlink of one given segment, say, whatever order
    /// the log removes files in.
    pub fn fail_nth_at(&self, op: Op, path: &Path, n: u64, fault: Fault, scope: Scope) {
        self.lock().rules.push(Rule {
            op,
            countdown: n.max(1),
            fault,
            scope,
            sticky: false,
            fired: false,
            path: Some(path.to_path_buf()),
        });
    }

    fn push(&self, op: Op, n: u64, fault: Fault, scope: Scope, sticky: bool) {
        self.lock().rules.push(Rule {
            op,
            countdown: n.max(1),
            fault,
            scope,
            sticky,
            fired: false,
            path: None,
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
            if r.op != op
                || !r.scope.matches()
                || (r.fired && !r.sticky)
                || r.path.as_deref().is_some_and(|p| p != path)
            {
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
