//! Durability tracking: which writes are on disk, group commit, tickets, and
//! the poisoned state after a failed `fdatasync`.
//!
//! Every write to the active segment gets a sequence number. A thread that
//! needs its write durable ([`Durability::wait`]) either finds it synced, or
//! finds a sync in flight and waits for it, or becomes the *syncer*: it
//! notes the highest write issued so far and the file holding it, runs one
//! `fdatasync` without any lock held, and then wakes everyone whose write
//! that sync covered. Concurrent writers therefore share one `fdatasync` per
//! round, and a single writer pays no thread hand-off at all. Asynchronous
//! submitters ([`Log::submit`](crate::Log::submit)) are served by a
//! background thread running the same rounds.
//!
//! A roll does not sync the segment it leaves: that file joins a list of
//! *pending* files (older files still holding unsynced writes, each with the
//! number of the last write it holds). A sync round syncs every pending file
//! its target covers, oldest first, then the active file, and only then
//! advances `synced`. The sealer syncs a pending file in the background and
//! takes it off the list ([`Durability::file_synced`]).
//!
//! A roll does not sync the new segment's header or the directory either.
//! Until both are synced the log counts as dirty (no write is marked
//! prior-synced) and `synced` never passes the last write made before that
//! roll (the *cap*). A round syncs, in this order, the pending files, the
//! directory, then the active file (its header with it), and only then
//! advances `synced`.

use crate::fs::{FileHandle, FileSystem};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};

pub(crate) struct Durability {
    state: Mutex<State>,
    /// Signalled when `synced` advances or the log is poisoned.
    done: Condvar,
    /// Signalled when an asynchronous submit wants a sync, or on stop.
    wanted: Condvar,
    /// `State::synced`, readable without the lock: tickets and waiters
    /// check it first, so a writer issuing writes and a thread collecting
    /// durable tickets do not contend for the state lock. Only ever stored
    /// under the lock, after `State::synced`.
    synced: AtomicU64,
    /// Set (under the lock, with `State::poisoned`) when the log is
    /// poisoned; never cleared.
    poisoned: AtomicBool,
    /// An asynchronous submit wants the background syncer to run a round.
    /// Set without the lock; the one who sets it takes the lock to wake the
    /// syncer, so the wake-up is never lost.
    async_pending: AtomicBool,
    /// `State::written`, readable without the lock by a thread gathering
    /// writes before a round (see [`Durability::wait_blocking`]).
    written: AtomicU64,
    /// The file system and directory, for the directory fsync a roll leaves
    /// to the next round.
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
}

struct State {
    /// Sequence number of the last write issued.
    written: u64,
    /// Every write up to this number is durable.
    synced: u64,
    /// A sync round is running.
    syncing: bool,
    /// Set by a failed `fdatasync`: nothing is known of the disk any more.
    poisoned: Option<String>,
    /// The active file: the one new writes go to.
    file: Option<(Arc<dyn FileHandle>, PathBuf)>,
    /// The number of the last write issued to the active file (0: none
    /// since it became active).
    active_last: u64,
    /// Older files still holding writes that may not be durable, oldest
    /// first (they left the active place at a roll without a sync).
    pending: Vec<PendingFile>,
    /// The background syncer should exit.
    stop: bool,
    /// The background syncer is running: a ticket's waiter lets it run the
    /// rounds rather than running one itself.
    pipeline: bool,
    /// Number of `fdatasync` calls made by sync rounds (for statistics).
    rounds: u64,
    /// For each roll whose directory entry (the rename of the prepared
    /// file, or the new file) is not known synced, oldest first: the roll's
    /// number (`rolls` after it) and the number of the last write issued
    /// before it. `synced` never passes the front's write.
    dir_rolls: std::collections::VecDeque<(u64, u64)>,
    /// When the active file's header (written by the roll that made it
    /// active) is not synced yet: the number of the last write issued
    /// before that roll. `synced` never passes it.
    header_unsynced: Option<u64>,
    /// Rolls so far (to tell whether one happened during a sync).
    rolls: u64,
    /// How many writes the last sync round made durable.
    last_covered: u64,
}

/// An older file holding unsynced writes.
struct PendingFile {
    file: Arc<dyn FileHandle>,
    path: PathBuf,
    /// The number of the last write it holds.
    last: u64,
}

/// A handle on one submitted write; see [`Log::submit`](crate::Log::submit).
#[derive(Clone)]
pub struct Ticket {
    seq: u64,
    d: Arc<Durability>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("seq", &self.seq).finish()
    }
}

impl State {
    /// The highest `synced` may be: no write after a roll whose header or
    /// directory entry is unsynced is durable.
    fn cap(&self) -> u64 {
        let dir = self.dir_rolls.front().map_or(u64::MAX, |r| r.1);
        dir.min(self.header_unsynced.unwrap_or(u64::MAX))
    }

    /// Whether every roll's header and directory entry are synced.
    fn rolls_synced(&self) -> bool {
        self.dir_rolls.is_empty() && self.header_unsynced.is_none()
    }

    /// A directory fsync that started after roll number `upto` covers the
    /// directory entries of that roll and every earlier one. (Counting by
    /// roll number, not by queue length: another fsync may have drained
    /// the queue meanwhile, and a later roll joined it.)
    fn dir_synced_upto(&mut self, upto: u64) {
        while self.dir_rolls.front().is_some_and(|r| r.0 <= upto) {
            self.dir_rolls.pop_front();
        }
    }

    /// Makes `file` the active file; the one it replaces joins the pending
    /// files when it holds writes that may not be durable.
    fn move_to(&mut self, file: &Arc<dyn FileHandle>, path: &std::path::Path) {
        if self
            .file
            .as_ref()
            .is_some_and(|(f, _)| Arc::ptr_eq(f, file))
        {
            return;
        }
        if let Some((old, old_path)) = self.file.take() {
            if self.active_last > self.synced {
                self.pending.push(PendingFile {
                    file: old,
                    path: old_path,
                    last: self.active_last,
                });
            }
        }
        self.file = Some((Arc::clone(file), path.to_path_buf()));
        self.active_last = 0;
    }
}

impl Ticket {
    /// Blocks until the write is durable. Errors with
    /// [`Error::Poisoned`] when the `fdatasync` that should have covered it
    /// failed: the write may or may not be on disk.
    pub fn wait(&self) -> Result<()> {
        self.d.wait(self.seq)
    }

    /// Whether the write is durable, without blocking.
    pub fn is_durable(&self) -> bool {
        self.d.synced.load(Ordering::Acquire) >= self.seq
    }

    /// The write's sequence number: writes are numbered in the order they
    /// were issued, and a sync covers every write numbered up to a point.
    pub fn sequence(&self) -> u64 {
        self.seq
    }
}

/// Who waits for a write, which decides how it may take part in rounds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// [`Ticket::wait`]: runs a round itself unless the background syncer
    /// runs.
    Ticket,
    /// A writer blocked on its own write: gathers, then runs the round.
    Blocking,
    /// [`Durability::sync_all`]: also waits for every roll's header and
    /// directory entry.
    All,
    /// The background syncer itself.
    Pipeline,
}

/// How long a blocking writer about to start a sync round waits at most
/// for others' writes to share it (see [`Durability::wait_blocking`]):
/// about one synced small append on the reference machine.
const GATHER_MAX: std::time::Duration = std::time::Duration::from_micros(100);

impl Durability {
    pub(crate) fn new(
        file: Arc<dyn FileHandle>,
        path: PathBuf,
        fs: Arc<dyn FileSystem>,
        dir: &Path,
    ) -> Arc<Durability> {
        Arc::new(Durability {
            state: Mutex::new(State {
                written: 0,
                synced: 0,
                syncing: false,
                poisoned: None,
                file: Some((file, path)),
                active_last: 0,
                pending: Vec::new(),
                stop: false,
                pipeline: false,
                rounds: 0,
                dir_rolls: std::collections::VecDeque::new(),
                header_unsynced: None,
                rolls: 0,
                last_covered: 0,
            }),
            done: Condvar::new(),
            wanted: Condvar::new(),
            synced: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            async_pending: AtomicBool::new(false),
            written: AtomicU64::new(0),
            fs,
            dir: dir.to_path_buf(),
        })
    }

    /// Errors with [`Error::Poisoned`] once a sync has failed.
    pub(crate) fn check(&self) -> Result<()> {
        if !self.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        match &self.state.lock().poisoned {
            Some(cause) => Err(Error::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Records an I/O failure after which the disk state is unknown; every
    /// later write and wait fails. Returns `e` for convenience.
    pub(crate) fn poison(&self, e: Error) -> Error {
        log::error!("raftwal: poisoning the log: {e}");
        let mut s = self.state.lock();
        if s.poisoned.is_none() {
            s.poisoned = Some(e.to_string());
            self.poisoned.store(true, Ordering::Release);
        }
        drop(s);
        self.done.notify_all();
        e
    }

    /// Called by the writer (holding the writer lock) after a write to
    /// `file` was issued. Returns the write's ticket.
    pub(crate) fn issued(
        self: &Arc<Self>,
        file: &Arc<dyn FileHandle>,
        path: &std::path::Path,
    ) -> Ticket {
        let mut s = self.state.lock();
        let same = s.file.as_ref().is_some_and(|(f, _)| Arc::ptr_eq(f, file));
        if !same {
            s.move_to(file, path);
        }
        s.written += 1;
        s.active_last = s.written;
        self.written.store(s.written, Ordering::Release);
        Ticket {
            seq: s.written,
            d: Arc::clone(self),
        }
    }

    /// Called by the writer after it synced the file of every write issued
    /// so far itself (after [`Durability::sync_all`], so no older file is
    /// pending), and moved to `file`.
    pub(crate) fn all_synced(&self, file: &Arc<dyn FileHandle>, path: &std::path::Path) {
        let mut s = self.state.lock();
        debug_assert!(s.pending.is_empty(), "all_synced with older files unsynced");
        debug_assert!(s.rolls_synced(), "all_synced with a roll unsynced");
        // Never claim what is not so: an older file still pending, or a
        // directory entry not yet synced, keeps `synced` where it is (the
        // next sync round advances it).
        if s.pending.is_empty() && s.rolls_synced() {
            s.synced = s.written;
            self.synced.store(s.synced, Ordering::Release);
        }
        s.move_to(file, path);
        drop(s);
        self.done.notify_all();
    }

    /// Called by the writer at a roll: `file` becomes the active file, and
    /// the one it replaces, if it holds writes that may not be durable,
    /// joins the pending files (synced by the next round or the sealer).
    ///
    /// The new file's header and its directory entry are not synced yet:
    /// until a round has synced both, the log is dirty (no later write is
    /// marked prior-synced) and no write after the roll counts as durable.
    pub(crate) fn rolled_to(&self, file: &Arc<dyn FileHandle>, path: &std::path::Path) {
        let mut s = self.state.lock();
        s.move_to(file, path);
        let w = s.written;
        s.rolls += 1;
        let roll = s.rolls;
        s.dir_rolls.push_back((roll, w));
        s.header_unsynced = Some(w);
    }

    /// Syncs the directory when a roll left it unsynced (the sealer calls
    /// this before it claims a file durable or writes a footer). A failure
    /// poisons the log.
    pub(crate) fn sync_dir_if_due(&self) -> Result<()> {
        let upto = {
            let s = self.state.lock();
            if s.dir_rolls.is_empty() {
                return Ok(());
            }
            s.rolls
        };
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| self.poison(Error::io("fsync directory", &self.dir, e)))?;
        // It covers every rename made before it started.
        self.state.lock().dir_synced_upto(upto);
        Ok(())
    }

    /// Whether `file` is an older file holding writes that may not be
    /// durable.
    pub(crate) fn is_pending(&self, file: &Arc<dyn FileHandle>) -> bool {
        let s = self.state.lock();
        s.pending.iter().any(|p| Arc::ptr_eq(&p.file, file))
    }

    /// Called by the sealer after a successful `fdatasync` of `file`: it is
    /// no longer pending. When it was the oldest pending file, every write
    /// up to its last is durable, and `synced` advances.
    pub(crate) fn file_synced(&self, file: &Arc<dyn FileHandle>) {
        let mut s = self.state.lock();
        let Some(k) = s.pending.iter().position(|p| Arc::ptr_eq(&p.file, file)) else {
            return;
        };
        let p = s.pending.remove(k);
        // Writes in files older than the oldest pending one are durable
        // (their file was synced, or held nothing unsynced when the log
        // moved on), and this file's are now.
        // Never past a roll whose directory entry or header is unsynced
        // (this file's own name, say).
        let to = p.last.min(s.cap());
        if k == 0 && to > s.synced {
            s.synced = to;
            self.synced.store(to, Ordering::Release);
            drop(s);
            self.done.notify_all();
        }
    }

    /// A ticket for the last write issued (durable once everything so far
    /// is).
    pub(crate) fn ticket_for_last(self: &Arc<Self>) -> Ticket {
        Ticket {
            seq: self.state.lock().written,
            d: Arc::clone(self),
        }
    }

    /// Whether writes are issued that are not yet durable, or a roll's
    /// header or directory entry is not.
    pub(crate) fn dirty(&self) -> bool {
        let s = self.state.lock();
        s.written > s.synced || !s.rolls_synced()
    }

    /// `(writes issued, writes durable, sync rounds run)` so far.
    pub(crate) fn counters(&self) -> (u64, u64, u64) {
        let s = self.state.lock();
        (s.written, s.synced, s.rounds)
    }

    /// Makes every write issued so far durable, and every roll's header
    /// and directory entry.
    pub(crate) fn sync_all(&self) -> Result<()> {
        let target = self.state.lock().written;
        self.wait_for(target, Role::All)
    }

    /// Blocks until write `seq` is durable, running sync rounds as needed.
    /// When the background syncer runs, it runs the round: a thread
    /// collecting tickets of submitted writes then never syncs in its
    /// place (the two would take turns, each waking the other).
    pub(crate) fn wait(&self, seq: u64) -> Result<()> {
        self.wait_for(seq, Role::Ticket)
    }

    /// [`Durability::wait`] for a writer blocked on its own write (under
    /// `SyncPolicy::Always`). Before it starts a round it gathers: when the
    /// last round covered more writes than are unsynced now, other blocking
    /// writers are likely on their way back with their next writes (they
    /// were woken by that round), so it gives them up to [`GATHER_MAX`] to
    /// be issued and share its `fdatasync`. Without this, rounds under
    /// several blocking writers alternate between the one writer that came
    /// back first and the rest. A single writer never waits: each of its
    /// rounds covers one write, and its own is issued.
    pub(crate) fn wait_blocking(&self, seq: u64) -> Result<()> {
        self.wait_for(seq, Role::Blocking)
    }

    /// Blocks until write `seq` is durable (with [`Role::All`], also until
    /// no roll's header or directory entry is unsynced), running sync
    /// rounds as `role` allows.
    fn wait_for(&self, seq: u64, role: Role) -> Result<()> {
        let rolls = role == Role::All;
        let gather = role == Role::Blocking;
        if !rolls
            && !self.poisoned.load(Ordering::Acquire)
            && self.synced.load(Ordering::Acquire) >= seq
        {
            return Ok(());
        }
        let mut s = self.state.lock();
        let mut gathered = !gather;
        loop {
            if let Some(cause) = &s.poisoned {
                return Err(Error::Poisoned {
                    cause: cause.clone(),
                });
            }
            if s.synced >= seq && (!rolls || s.rolls_synced()) {
                return Ok(());
            }
            if s.syncing {
                self.done.wait(&mut s);
                continue;
            }
            if role == Role::Ticket && s.pipeline {
                // The lock is held: the syncer is either running (it will
                // see the flag before it waits again) or waiting (and is
                // woken); `stop_syncer` wakes us if it stops instead.
                self.async_pending.store(true, Ordering::Release);
                self.wanted.notify_one();
                self.done.wait(&mut s);
                continue;
            }
            let expected = s.synced.saturating_add(s.last_covered);
            if !gathered && s.written < expected {
                gathered = true;
                drop(s);
                let started = std::time::Instant::now();
                while self.written.load(Ordering::Acquire) < expected
                    && started.elapsed() < GATHER_MAX
                {
                    std::thread::yield_now();
                }
                s = self.state.lock();
                continue;
            }
            // Become the syncer for everything issued so far: the older
            // files still pending (all hold writes up to `written`), oldest
            // first, then the active file if it holds unsynced writes.
            let target = s.written;
            let mut files: Vec<(Arc<dyn FileHandle>, PathBuf)> = s
                .pending
                .iter()
                .filter(|p| p.last <= target)
                .map(|p| (Arc::clone(&p.file), p.path.clone()))
                .collect();
            let with_active =
                s.active_last > s.synced || files.is_empty() || s.header_unsynced.is_some();
            if with_active {
                let Some(active) = s.file.clone() else {
                    return Err(Error::InvalidArgument(
                        "internal: no active file to sync".into(),
                    ));
                };
                files.push(active);
            }
            // The directory goes after the older files and before the
            // active one (see `Log::roll` for why); the round claims
            // nothing until all are synced.
            let rolls_before = s.rolls;
            let dir_at = (!s.dir_rolls.is_empty()).then(|| files.len() - usize::from(with_active));
            s.syncing = true;
            s.rounds += 1;
            drop(s);
            let mut failed = None;
            for k in 0..=files.len() {
                if dir_at == Some(k) {
                    if let Err(e) = self.fs.sync_dir(&self.dir) {
                        failed = Some(Error::io("fsync directory", &self.dir, e));
                        break;
                    }
                }
                let Some((file, path)) = files.get(k) else {
                    break;
                };
                let started = std::time::Instant::now();
                let res = file.sync_data();
                crate::metrics::fsync(started.elapsed());
                if let Err(e) = res {
                    failed = Some(Error::io("fdatasync", path, e));
                    break;
                }
            }
            s = self.state.lock();
            s.syncing = false;
            match failed {
                None => {
                    // The directory fsync covered the renames made before
                    // it; the active file's header is synced unless a roll
                    // made another file active meanwhile.
                    if dir_at.is_some() {
                        s.dir_synced_upto(rolls_before);
                    }
                    if s.rolls == rolls_before {
                        s.header_unsynced = None;
                    }
                    let to = target.min(s.cap());
                    if to > s.synced {
                        s.last_covered = to - s.synced;
                        s.synced = to;
                        self.synced.store(to, Ordering::Release);
                    }
                    // Every file this round synced (and any whose writes the
                    // round covers) holds nothing unsynced any more.
                    let synced = s.synced;
                    s.pending.retain(|p| p.last > synced);
                }
                Some(err) => {
                    log::error!("raftwal: poisoning the log: {err}");
                    if s.poisoned.is_none() {
                        s.poisoned = Some(err.to_string());
                        self.poisoned.store(true, Ordering::Release);
                    }
                }
            }
            self.done.notify_all();
        }
    }

    /// Asks the background syncer to make everything issued durable.
    pub(crate) fn request_async(&self) {
        if !self.async_pending.swap(true, Ordering::AcqRel) {
            // The syncer checks the flag under the lock before it waits:
            // taking the lock here means it is either before that check
            // (and sees the flag) or already waiting (and is woken).
            let _s = self.state.lock();
            self.wanted.notify_one();
        }
    }

    /// Starts the background syncer serving [`Durability::request_async`].
    pub(crate) fn start_syncer(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        let d = Arc::clone(self);
        std::thread::Builder::new()
            .name("raftwal-pipeline".into())
            .spawn(move || loop {
                let target = {
                    let mut s = d.state.lock();
                    while !s.stop && !d.async_pending.swap(false, Ordering::AcqRel) {
                        d.wanted.wait(&mut s);
                    }
                    if s.stop {
                        return;
                    }
                    s.written
                };
                // Errors poison the log; submitters see them on `wait`.
                let _ = d.wait_for(target, Role::Pipeline);
            })
            .ok()
            .inspect(|_| self.state.lock().pipeline = true)
    }

    /// Stops the background syncer.
    pub(crate) fn stop_syncer(&self, handle: JoinHandle<()>) {
        {
            let mut s = self.state.lock();
            s.stop = true;
            s.pipeline = false;
        }
        self.wanted.notify_all();
        // Tickets' waiters left to the syncer run their rounds themselves
        // from now on (a ticket may outlive the log).
        self.done.notify_all();
        if handle.join().is_err() {
            log::error!("raftwal: the pipeline sync thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::StdFileSystem;

    /// `StdFileSystem` whose directory fsync first runs a hook, once.
    #[derive(Default)]
    struct HookFs {
        hook: parking_lot::Mutex<Option<Box<dyn FnOnce() + Send>>>,
    }

    impl std::fmt::Debug for HookFs {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("HookFs")
        }
    }

    impl FileSystem for HookFs {
        fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
            StdFileSystem.create_dir_all(dir)
        }
        fn create_new(&self, path: &Path) -> std::io::Result<Arc<dyn FileHandle>> {
            StdFileSystem.create_new(path)
        }
        fn create(&self, path: &Path) -> std::io::Result<Arc<dyn FileHandle>> {
            StdFileSystem.create(path)
        }
        fn open(&self, path: &Path) -> std::io::Result<Arc<dyn FileHandle>> {
            StdFileSystem.open(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            StdFileSystem.rename(from, to)
        }
        fn remove(&self, path: &Path) -> std::io::Result<()> {
            StdFileSystem.remove(path)
        }
        fn list(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
            StdFileSystem.list(dir)
        }
        fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
            let hook = self.hook.lock().take();
            if let Some(hook) = hook {
                hook();
            }
            StdFileSystem.sync_dir(dir)
        }
        fn lock(&self, path: &Path) -> std::io::Result<Box<dyn std::any::Any + Send + Sync>> {
            StdFileSystem.lock(path)
        }
    }

    #[test]
    fn a_directory_fsync_covers_only_the_rolls_made_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let hook_fs = Arc::new(HookFs::default());
        let fs: Arc<dyn FileSystem> = hook_fs.clone();
        let file = |name: &str| {
            let p = dir.path().join(name);
            (StdFileSystem.create(&p).unwrap(), p)
        };
        let (f1, p1) = file("a");
        let (f2, p2) = file("b");
        let (f3, p3) = file("c");
        let d = Durability::new(Arc::clone(&f1), p1.clone(), fs, dir.path());
        d.issued(&f1, &p1);
        d.rolled_to(&f2, &p2);
        d.issued(&f2, &p2);
        // While the sealer's directory fsync for roll 1 runs, a sync round
        // covers roll 1 and roll 2 happens: that fsync may have started
        // before roll 2's rename, so roll 2's entry stays unsynced.
        let d2 = Arc::clone(&d);
        *hook_fs.hook.lock() = Some(Box::new(move || {
            d2.sync_all().unwrap();
            d2.rolled_to(&f3, &p3);
            d2.issued(&f3, &p3);
        }));
        d.sync_dir_if_due().unwrap();
        let s = d.state.lock();
        assert_eq!(
            s.dir_rolls.len(),
            1,
            "roll 2's directory entry is still due"
        );
        assert_eq!(s.synced, 2, "nothing after roll 2 is durable");
        drop(s);
        assert!(d.dirty());
        d.sync_all().unwrap();
        assert!(!d.dirty());
        assert_eq!(d.counters().1, 3);
    }

    #[test]
    fn a_roll_keeps_the_log_dirty_until_a_round_syncs_it() {
        let dir = tempfile::tempdir().unwrap();
        let fs: Arc<dyn FileSystem> = Arc::new(StdFileSystem);
        let file = |name: &str| {
            let p = dir.path().join(name);
            (fs.create(&p).unwrap(), p)
        };
        let (f1, p1) = file("a");
        let (f2, p2) = file("b");
        let (f3, p3) = file("c");
        let d = Durability::new(Arc::clone(&f1), p1.clone(), Arc::clone(&fs), dir.path());
        d.issued(&f1, &p1);
        d.issued(&f1, &p1);
        d.rolled_to(&f2, &p2);
        d.issued(&f2, &p2);
        assert!(d.dirty());
        // The sealer's sync of the old file makes its writes durable, but
        // nothing after the roll (the new header and name are unsynced).
        d.file_synced(&f1);
        assert_eq!(d.counters().1, 2);
        assert!(d.dirty());
        d.sync_all().unwrap();
        assert_eq!(d.counters().1, 3);
        assert!(!d.dirty());
        // A roll with no write after it still needs a round before the log
        // is clean (a write marked prior-synced must find its header
        // durable), and `sync_all` runs one.
        d.rolled_to(&f3, &p3);
        assert!(d.dirty());
        let rounds = d.counters().2;
        d.sync_all().unwrap();
        assert_eq!(d.counters().2, rounds + 1);
        assert!(!d.dirty());
    }

    #[test]
    fn a_blocking_writer_gathers_the_writes_the_last_round_suggests_and_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let fs: Arc<dyn FileSystem> = Arc::new(StdFileSystem);
        let p = dir.path().join("a");
        let f = fs.create(&p).unwrap();
        let d = Durability::new(Arc::clone(&f), p.clone(), Arc::clone(&fs), dir.path());
        // A round that covered three writes (three writers, say).
        for _ in 0..3 {
            d.issued(&f, &p);
        }
        d.wait_blocking(3).unwrap();
        assert_eq!(d.state.lock().last_covered, 3);
        // A writer alone now: it gathers for a while, nobody comes, and its
        // round covers its own write; the next one does not wait.
        let t = d.issued(&f, &p);
        d.wait_blocking(t.sequence()).unwrap();
        assert_eq!(d.state.lock().last_covered, 1);
        // With two writes issued while the last round covered one, the
        // round covers both.
        d.issued(&f, &p);
        let t = d.issued(&f, &p);
        d.wait_blocking(t.sequence()).unwrap();
        assert!(t.is_durable());
        assert_eq!(d.counters(), (6, 6, 3));
        // A writer gathering (the last round covered two) while another
        // thread writes: both end durable, whichever runs the round.
        let t = d.issued(&f, &p);
        let d2 = Arc::clone(&d);
        let (f2, p2) = (Arc::clone(&f), p.clone());
        let other = std::thread::spawn(move || {
            let t = d2.issued(&f2, &p2);
            d2.wait_blocking(t.sequence())
        });
        d.wait_blocking(t.sequence()).unwrap();
        other.join().unwrap().unwrap();
        assert_eq!(d.counters().1, 8);
    }

    #[test]
    fn a_ticket_leaves_rounds_to_the_pipeline_while_it_runs_and_not_after() {
        let dir = tempfile::tempdir().unwrap();
        let fs: Arc<dyn FileSystem> = Arc::new(StdFileSystem);
        let p = dir.path().join("a");
        let f = fs.create(&p).unwrap();
        let d = Durability::new(Arc::clone(&f), p.clone(), Arc::clone(&fs), dir.path());
        let syncer = d.start_syncer().unwrap();
        assert!(d.state.lock().pipeline);
        for _ in 0..3 {
            let t = d.issued(&f, &p);
            t.wait().unwrap();
            assert!(t.is_durable());
        }
        // A ticket taken while the pipeline ran, waited on after it stopped
        // (the log dropped): its waiter runs the round itself.
        let t = d.issued(&f, &p);
        d.stop_syncer(syncer);
        assert!(!d.state.lock().pipeline);
        t.wait().unwrap();
        assert_eq!(d.counters().1, 4);
    }
}
