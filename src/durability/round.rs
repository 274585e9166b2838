//! Sync rounds: who runs one, what it syncs, and in which order.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Durability;
use crate::error::{Error, Result};
use crate::fs::FileHandle;

/// Who waits for a write, which decides how it may take part in rounds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// [`Ticket::wait`](super::Ticket::wait): runs a round itself unless the background syncer
    /// runs.
    Ticket,
    /// A writer blocked on its own write: gathers, then runs the round.
    Blocking,
    /// A writer holding the writer lock: runs the round at once.
    Locked,
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
    /// `SyncPolicy::Always`, or a due `EveryN`), writer lock released. Before it starts a round it gathers: when the
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

    /// [`Durability::wait`] for a writer that still holds the writer lock
    /// (a marker write): it runs the round at once, since no other write
    /// can arrive, and never hands it to the pipeline syncer.
    pub(crate) fn wait_locked(&self, seq: u64) -> Result<()> {
        self.wait_for(seq, Role::Locked)
    }

    /// Blocks until write `seq` is durable (with [`Role::All`], also until
    /// no roll's header or directory entry is unsynced), running sync
    /// rounds as `role` allows.
    pub(super) fn wait_for(&self, seq: u64, role: Role) -> Result<()> {
        let rolls = role == Role::All;
        let gather = role == Role::Blocking;
        if !rolls && !self.poisoned.is_set() && self.synced.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        let mut s = self.state.lock();
        let mut gathered = !gather;
        loop {
            self.poisoned.check()?;
            if s.synced >= seq && (!rolls || s.rolls_synced()) {
                return Ok(());
            }
            if s.syncing {
                self.done.wait(&mut s);
                continue;
            }
            if role == Role::Ticket && s.pipeline {
                // Leave the round to the syncer: one is queued (or it is
                // this one's flag that is up). The lock is held, so the
                // syncer is not stopped yet; `stop_syncer` clears
                // `pipeline` under it and wakes us if it stops later.
                if self.async_pending.swap(true, Ordering::AcqRel) || self.wake_pipeline() {
                    self.done.wait(&mut s);
                    continue;
                }
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
                    return Err(Error::internal("no active file to sync"));
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
            // Batches staged by submitters go to the file first: the
            // round covers them (they were issued before `target`).
            let mut failed = self.stage.flush().err();
            for k in 0..=files.len() {
                if failed.is_some() {
                    break;
                }
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
                // Poisoned meanwhile (a failed write-out of staged batches,
                // a sealer's failed sync): claim nothing.
                None if self.poisoned.is_set() => {}
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
                    self.publish_rolls(&s);
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
                Some(err) => self.poisoned.set(err.to_string()),
            }
            self.done.notify_all();
        }
    }
}
