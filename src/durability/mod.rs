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
use std::sync::{Arc, Weak};

use parking_lot::{Condvar, Mutex};

use crate::durability::stage::Stage;
use crate::error::{Error, Result};
use crate::worker::Worker;

pub(crate) struct Durability {
    state: Mutex<State>,
    /// Signalled when `synced` advances or the log is poisoned.
    done: Condvar,
    /// `State::synced`, readable without the lock: tickets and waiters
    /// check it first, so a writer issuing writes and a thread collecting
    /// durable tickets do not contend for the state lock. Only ever stored
    /// under the lock, after `State::synced`.
    synced: AtomicU64,
    /// The log's one poisoned state, shared with the stage (and reached by
    /// the raft store through the log). Set under the state lock, so that
    /// a round deciding what it synced sees it.
    pub(crate) poisoned: Arc<Poison>,
    /// An asynchronous submit wants the background syncer to run a round:
    /// raised by the one who queues that round, cleared by the round before
    /// it reads what was issued (see [`Durability::request_async`]).
    async_pending: AtomicBool,
    /// The background syncer of `Log::submit` (`pipeline`), started on
    /// first use.
    pipeline: Worker<()>,
    /// `State::rolls_synced()`, readable without the lock by
    /// [`Durability::dirty`] (on every write). Stored under the lock after
    /// every change to the rolls' state.
    rolls_synced: AtomicBool,
    /// `State::written`, readable without the lock by a thread gathering
    /// writes before a round (see [`Durability::wait_blocking`]).
    written: AtomicU64,
    /// The file system and directory, for the directory fsync a roll leaves
    /// to the next round.
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    /// Batches submitted while the background syncer runs, not yet in
    /// the file: every sync round writes them out before its `fdatasync`.
    pub(crate) stage: Stage,
    /// What the log's sync policy does after each write.
    pub(crate) policy: Policy,
}

struct State {
    /// Sequence number of the last write issued.
    written: u64,
    /// Every write up to this number is durable.
    synced: u64,
    /// A sync round is running.
    syncing: bool,
    /// The active file: the one new writes go to.
    file: Option<(Arc<dyn FileHandle>, PathBuf)>,
    /// The number of the last write issued to the active file (0: none
    /// since it became active).
    active_last: u64,
    /// Older files still holding writes that may not be durable, oldest
    /// first (they left the active place at a roll without a sync).
    pending: Vec<PendingFile>,
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

mod pipeline;
mod poison;
pub(crate) mod policy;
mod round;
pub(crate) mod stage;

pub(crate) use self::poison::Poison;
use self::policy::Policy;
use crate::options::SyncPolicy;
#[cfg(test)]
mod tests;

impl Durability {
    pub(crate) fn new(
        file: Arc<dyn FileHandle>,
        path: PathBuf,
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        policy: SyncPolicy,
    ) -> Arc<Durability> {
        let poisoned: Arc<Poison> = Arc::default();
        Arc::new_cyclic(|me| Durability {
            state: Mutex::new(State {
                written: 0,
                synced: 0,
                syncing: false,
                file: Some((file, path)),
                active_last: 0,
                pending: Vec::new(),
                pipeline: false,
                rounds: 0,
                dir_rolls: std::collections::VecDeque::new(),
                header_unsynced: None,
                rolls: 0,
                last_covered: 0,
            }),
            done: Condvar::new(),
            synced: AtomicU64::new(0),
            poisoned: Arc::clone(&poisoned),
            async_pending: AtomicBool::new(false),
            pipeline: pipeline::worker(Weak::clone(me)),
            written: AtomicU64::new(0),
            rolls_synced: AtomicBool::new(true),
            fs,
            dir: dir.to_path_buf(),
            stage: Stage::new(poisoned),
            policy: Policy::new(policy),
        })
    }

    /// Errors with [`Error::Poisoned`] once the log is poisoned.
    pub(crate) fn check(&self) -> Result<()> {
        self.poisoned.check()
    }

    /// Records an I/O failure after which the disk state is unknown; every
    /// later write and wait fails. Returns `e` for convenience.
    pub(crate) fn poison(&self, e: Error) -> Error {
        self.poison_because(e.to_string());
        e
    }

    /// Poisons the log for `cause` (see [`Poison`]) and wakes every waiter.
    pub(crate) fn poison_because(&self, cause: String) {
        let s = self.state.lock();
        self.poisoned.set(cause);
        drop(s);
        self.done.notify_all();
    }

    /// Writes out the staged batches (see [`Stage`]); waits for a write-out
    /// under way. A failure poisons the log: the batches were issued, and
    /// are now neither in the file nor ever going to be. Once the log is
    /// poisoned this writes nothing and fails with the poison (a sync
    /// round already under way may still write them out, but claims
    /// nothing durable).
    pub(crate) fn flush_staged(&self) -> Result<()> {
        if self.stage.is_idle() {
            return Ok(());
        }
        self.check()?;
        self.stage.flush().map_err(|e| self.poison(e))
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
        self.publish_rolls(&s);
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
        let mut s = self.state.lock();
        s.dir_synced_upto(upto);
        self.publish_rolls(&s);
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
    ///
    /// Without the lock: the writer asks on every write (to mark it
    /// prior-synced or not), and a stale answer can only say dirty when
    /// the log is clean, never the reverse (`synced` only grows, and the
    /// writer itself issues the writes and makes the rolls).
    pub(crate) fn dirty(&self) -> bool {
        let written = self.written.load(Ordering::Acquire);
        let synced = self.synced.load(Ordering::Acquire);
        written > synced || !self.rolls_synced.load(Ordering::Acquire)
    }

    /// Mirrors `s.rolls_synced()` for [`Durability::dirty`]; call under the
    /// lock after changing the rolls' state.
    fn publish_rolls(&self, s: &State) {
        self.rolls_synced.store(s.rolls_synced(), Ordering::Release);
    }

    /// Syncs when writes are issued that are not yet durable (else only
    /// reports a poisoned log): the `Interval` syncer's tick, and a closing
    /// log's last sync.
    pub(crate) fn sync_if_dirty(&self) -> Result<()> {
        if self.dirty() {
            self.sync_all()
        } else {
            self.check()
        }
    }

    /// `(writes issued, writes durable, sync rounds run)` so far.
    pub(crate) fn counters(&self) -> (u64, u64, u64) {
        let s = self.state.lock();
        (s.written, s.synced, s.rounds)
    }
}
