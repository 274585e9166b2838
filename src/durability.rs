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

use crate::fs::FileHandle;
use std::path::PathBuf;
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
    /// The file holding write `written` (earlier files were synced when the
    /// log moved on from them).
    file: Option<(Arc<dyn FileHandle>, PathBuf)>,
    /// An asynchronous submit is waiting for the background syncer.
    async_pending: bool,
    /// The background syncer should exit.
    stop: bool,
    /// Number of `fdatasync` calls made by sync rounds (for statistics).
    rounds: u64,
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

impl Ticket {
    /// Blocks until the write is durable. Errors with
    /// [`Error::Poisoned`] when the `fdatasync` that should have covered it
    /// failed: the write may or may not be on disk.
    pub fn wait(&self) -> Result<()> {
        self.d.wait(self.seq)
    }

    /// Whether the write is durable, without blocking.
    pub fn is_durable(&self) -> bool {
        self.d.state.lock().synced >= self.seq
    }

    /// The write's sequence number: writes are numbered in the order they
    /// were issued, and a sync covers every write numbered up to a point.
    pub fn sequence(&self) -> u64 {
        self.seq
    }
}

impl Durability {
    pub(crate) fn new(file: Arc<dyn FileHandle>, path: PathBuf) -> Arc<Durability> {
        Arc::new(Durability {
            state: Mutex::new(State {
                written: 0,
                synced: 0,
                syncing: false,
                poisoned: None,
                file: Some((file, path)),
                async_pending: false,
                stop: false,
                rounds: 0,
            }),
            done: Condvar::new(),
            wanted: Condvar::new(),
        })
    }

    /// Errors with [`Error::Poisoned`] once a sync has failed.
    pub(crate) fn check(&self) -> Result<()> {
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
        s.written += 1;
        let same = s.file.as_ref().is_some_and(|(f, _)| Arc::ptr_eq(f, file));
        if !same {
            s.file = Some((Arc::clone(file), path.to_path_buf()));
        }
        Ticket {
            seq: s.written,
            d: Arc::clone(self),
        }
    }

    /// Called by the writer after it synced the file of every write issued
    /// so far itself (a roll, a compaction, a reset), and moved to `file`.
    pub(crate) fn all_synced(&self, file: &Arc<dyn FileHandle>, path: &std::path::Path) {
        let mut s = self.state.lock();
        s.synced = s.written;
        s.file = Some((Arc::clone(file), path.to_path_buf()));
        drop(s);
        self.done.notify_all();
    }

    /// A ticket for the last write issued (durable once everything so far
    /// is).
    pub(crate) fn ticket_for_last(self: &Arc<Self>) -> Ticket {
        Ticket {
            seq: self.state.lock().written,
            d: Arc::clone(self),
        }
    }

    /// Whether writes are issued that are not yet durable.
    pub(crate) fn dirty(&self) -> bool {
        let s = self.state.lock();
        s.written > s.synced
    }

    /// `(writes issued, writes durable, sync rounds run)` so far.
    pub(crate) fn counters(&self) -> (u64, u64, u64) {
        let s = self.state.lock();
        (s.written, s.synced, s.rounds)
    }

    /// Makes every write issued so far durable.
    pub(crate) fn sync_all(&self) -> Result<()> {
        let target = self.state.lock().written;
        self.wait(target)
    }

    /// Blocks until write `seq` is durable, running sync rounds as needed.
    pub(crate) fn wait(&self, seq: u64) -> Result<()> {
        let mut s = self.state.lock();
        loop {
            if let Some(cause) = &s.poisoned {
                return Err(Error::Poisoned {
                    cause: cause.clone(),
                });
            }
            if s.synced >= seq {
                return Ok(());
            }
            if s.syncing {
                self.done.wait(&mut s);
                continue;
            }
            // Become the syncer for everything issued so far.
            let target = s.written;
            let Some((file, path)) = s.file.clone() else {
                return Err(Error::InvalidArgument(
                    "internal: no active file to sync".into(),
                ));
            };
            s.syncing = true;
            s.rounds += 1;
            drop(s);
            let started = std::time::Instant::now();
            let res = file.sync_data();
            crate::metrics::fsync(started.elapsed());
            s = self.state.lock();
            s.syncing = false;
            match res {
                Ok(()) => {
                    if target > s.synced {
                        s.synced = target;
                    }
                }
                Err(e) => {
                    let err = Error::io("fdatasync", &path, e);
                    log::error!("raftwal: poisoning the log: {err}");
                    if s.poisoned.is_none() {
                        s.poisoned = Some(err.to_string());
                    }
                }
            }
            self.done.notify_all();
        }
    }

    /// Asks the background syncer to make everything issued durable.
    pub(crate) fn request_async(&self) {
        let mut s = self.state.lock();
        if !s.async_pending {
            s.async_pending = true;
            drop(s);
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
                    while !s.async_pending && !s.stop {
                        d.wanted.wait(&mut s);
                    }
                    if s.stop {
                        return;
                    }
                    s.async_pending = false;
                    s.written
                };
                // Errors poison the log; submitters see them on `wait`.
                let _ = d.wait(target);
            })
            .ok()
    }

    /// Stops the background syncer.
    pub(crate) fn stop_syncer(&self, handle: JoinHandle<()>) {
        self.state.lock().stop = true;
        self.wanted.notify_all();
        if handle.join().is_err() {
            log::error!("raftwal: the pipeline sync thread panicked");
        }
    }
}
