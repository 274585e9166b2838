//! The segment preparer: a background thread that keeps one preallocated
//! (or zero-filled, see [`Preallocate`]) segment file ready, so a roll only
//! writes a header and renames a file.
//!
//! It prepares the next file only once the writer asks, when the active
//! segment is half full ([`Preparer::want`]): a log that writes little never
//! has a 64 MiB zero-fill and its `fdatasync` competing with its own synced
//! appends, and one that fills segments quickly still gets half a segment's
//! time to prepare the next.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::fs::FileSystem;
use crate::options::Preallocate;
use crate::segment;

pub(crate) struct Preparer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    /// Set with `State::stop`, read between the chunks of a zero-fill so
    /// that closing the log does not wait for a whole segment of zeros.
    stopping: AtomicBool,
}

struct State {
    ready: Option<PathBuf>,
    /// The writer asked for the next file (the active segment is half
    /// full); cleared when it takes one.
    wanted: bool,
    next_name: u64,
    stop: bool,
}

impl Preparer {
    /// Starts preparing segments of `len` bytes in `dir` as `mode` says
    /// (`Preallocate::None` prepares like `Allocate`: the caller does not
    /// start a preparer then). Prepared files left by an earlier run are
    /// adopted (one, if it holds only zeros) or removed (the rest). A new
    /// file is prepared at once when `wanted`, otherwise on the first
    /// [`Preparer::want`].
    pub(crate) fn start(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        len: u64,
        mode: Preallocate,
        wanted: bool,
    ) -> Preparer {
        let mut existing = segment::list_prepared(&*fs, dir).unwrap_or_default();
        let mut ready = existing.pop();
        for extra in existing {
            let _ = fs.remove(&extra);
        }
        let number = ready.as_ref().and_then(|p| {
            p.file_stem()?
                .to_str()
                .and_then(|s| u64::from_str_radix(s, 16).ok())
        });
        // Names with the top bit set are made on the spot by the writer;
        // ours never have it.
        let mut next_name = number.map_or(1, |n| (n & !crate::recovery::ON_THE_SPOT) + 1);
        let on_the_spot = number.is_some_and(|n| n & crate::recovery::ON_THE_SPOT != 0);
        // The candidate is checked on the thread (see below); meanwhile a
        // roll may prepare a file on the spot, under the name a previous
        // run left this one with: give it one of ours first.
        if let Some(path) = ready.take_if(|_| on_the_spot) {
            let ours = dir.join(format!("{next_name:016x}.{}", segment::PREPARED_EXTENSION));
            next_name += 1;
            if fs.rename(&path, &ours).is_ok() {
                ready = Some(ours);
            } else {
                let _ = fs.remove(&path);
            }
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                // Offered once the thread has checked it (see `run`).
                ready: None,
                wanted,
                next_name,
                stop: false,
            }),
            cv: Condvar::new(),
            stopping: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let dir = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("raftwal-prepare".into())
            .spawn(move || {
                // A prepared file left by an earlier run is adopted only if
                // it holds nothing but zeros: a roll renames the file it
                // takes without syncing the directory, so after a crash a
                // file that was written to may still carry its prepared
                // name. Checked here, off the opening thread.
                if let Some(path) = ready {
                    if segment::is_pristine(&*fs, &path) {
                        s.state.lock().ready.get_or_insert(path);
                    } else {
                        log::warn!(
                            "raftwal: removing prepared file {} that holds data",
                            path.display()
                        );
                        let _ = fs.remove(&path);
                    }
                }
                s.run(&*fs, &dir, len, mode)
            })
            .ok();
        Preparer { shared, thread }
    }

    /// Takes the prepared file, if one is ready. The next is prepared
    /// when the writer asks for it again.
    pub(crate) fn take(&self) -> Option<PathBuf> {
        let mut s = self.shared.state.lock();
        s.wanted = false;
        s.ready.take()
    }

    /// Asks for the next file to be prepared (the writer calls this when
    /// the active segment passes half its size).
    pub(crate) fn want(&self) {
        let mut s = self.shared.state.lock();
        if !s.wanted {
            s.wanted = true;
            drop(s);
            self.shared.cv.notify_all();
        }
    }

    /// Stops the thread. A prepared file stays for the next open to adopt.
    pub(crate) fn stop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("raftwal: the segment preparer panicked");
            }
        }
    }
}

impl Drop for Preparer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn run(&self, fs: &dyn FileSystem, dir: &Path, len: u64, mode: Preallocate) {
        let mut s = self.state.lock();
        loop {
            while (s.ready.is_some() || !s.wanted) && !s.stop {
                self.cv.wait(&mut s);
            }
            if s.stop {
                return;
            }
            let n = s.next_name;
            s.next_name += 1;
            drop(s);
            let res = match mode {
                Preallocate::ZeroFill => segment::prepare_zeroed_until(fs, dir, n, len, &|| {
                    self.stopping.load(Ordering::Relaxed)
                }),
                Preallocate::Allocate | Preallocate::None => segment::prepare(fs, dir, n, len),
            };
            s = self.state.lock();
            match res {
                Ok(path) if s.stop => {
                    // Keep it: the next open adopts it.
                    s.ready = Some(path);
                    return;
                }
                Ok(path) => s.ready = Some(path),
                Err(e) => {
                    // Out of space, say: rolls create files on the spot
                    // meanwhile; try again later.
                    log::warn!("raftwal: could not prepare a segment: {e}");
                    self.cv.wait_for(&mut s, Duration::from_secs(1));
                }
            }
        }
    }
}
