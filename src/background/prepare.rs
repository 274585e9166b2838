//! The segment preparer: a background thread that keeps one preallocated
//! (or zero-filled, see [`Preallocate`]) segment file ready, so a roll only
//! writes a header and renames a file.
//!
//! It prepares the next file only once the writer asks, when the active
//! segment is half full, or an eighth full while segments are still growing
//! ([`Preparer::want`], `write::prepare_mark`): a log that writes little
//! never has a 64 MiB zero-fill and its `fdatasync` competing with its own
//! synced appends, and one that fills segments quickly still gets time to
//! prepare the next. Each file is of the size the writer asked for; one
//! left too small (the writer rolled before it was done, then asked for a
//! larger one) is replaced, never used.
//!
//! Under [`Preallocate::ZeroFill`] it zero-fills the next file unless the
//! writer would outrun it: when, at the rate it filled the active segment
//! so far, the writer will fill the rest sooner than the last zero-fill of
//! a segment took (or, before any, than [`ZERO_FILL_GUESS`] says), the next
//! file is only allocated. A writer that fast does not wait for syncs (W4's unsynced
//! bulk writes, at ≈ 1 GB/s), and a zero-fill racing it dirties as many
//! pages as it does: its appends stalled 10-25 ms, against ≈ 1 ms into
//! allocated files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::format::segment;
use crate::fs::FileSystem;
use crate::options::Preallocate;
use crate::worker::{Next, Stop, Worker};

/// Prepares segment files on a worker of its own (see the module
/// documentation).
pub(crate) struct Preparer {
    shared: Arc<Shared>,
    worker: Worker<Job>,
}

/// How long zero-filling (and syncing) a segment is assumed to take
/// before the preparer has timed one: per 64 MiB, scaled to the segment
/// size. Measured on the reference machine: 60-150 ms.
pub(crate) const ZERO_FILL_GUESS: Duration = Duration::from_millis(100);

/// How long the preparer waits before trying again after it failed to
/// prepare a file (out of space, say; rolls create files on the spot
/// meanwhile).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What the worker is asked to do.
enum Job {
    /// Check a prepared file an earlier run left, and offer it if it
    /// holds only zeros.
    Adopt(PathBuf),
    /// The writer asked for a file (`State::wanted`, `State::size`).
    Prepare,
}

struct Shared {
    state: Mutex<State>,
    /// Files prepared since the log opened: zero-filled, and only
    /// allocated (see the module docs).
    zero_filled: AtomicU64,
    allocated: AtomicU64,
    /// Tries that failed (each retried after `RETRY_AFTER`).
    failed: AtomicU64,
}

struct State {
    /// The prepared file and its length.
    ready: Option<(PathBuf, u64)>,
    /// The writer asked for the next file (the active segment passed
    /// `write::prepare_mark`); cleared when it takes one.
    wanted: bool,
    next_name: u64,
    /// How long the writer expects to take to fill the rest of the active
    /// segment, as it said when it asked for the next file.
    time_left: Option<Duration>,
    /// The size of the file the writer asked for (segments grow).
    size: u64,
    /// How long the last complete zero-fill (with its sync) took, and of
    /// how many bytes.
    last_zero_fill: Option<(Duration, u64)>,
}

impl State {
    /// Whether the next file should only be allocated: the writer fills the
    /// rest of the active segment sooner than a zero-fill would finish.
    fn writer_outpaces_zero_fill(&self, len: u64) -> bool {
        let Some(left) = self.time_left else {
            return false;
        };
        // Scaled from the last zero-fill's size (or 64 MiB); `len` is at
        // most 4 GiB.
        let (took, of) = self.last_zero_fill.unwrap_or((ZERO_FILL_GUESS, 64 << 20));
        let zero_fill = took.mul_f64(len as f64 / of.max(1) as f64);
        left < zero_fill
    }

    /// Whether the writer waits for a file that is not ready.
    fn wants_a_file(&self) -> bool {
        self.wanted && self.ready.as_ref().is_none_or(|r| r.1 < self.size)
    }
}

impl Preparer {
    /// Starts preparing segments in `dir` as `mode` says
    /// (`Preallocate::None` prepares like `Allocate`: the caller does not
    /// start a preparer then). Prepared files left by an earlier run are
    /// adopted (one, if it holds only zeros) or removed (the rest). A new
    /// file of `wanted` bytes is prepared at once when given, otherwise on
    /// the first [`Preparer::want`].
    pub(crate) fn start(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        mode: Preallocate,
        wanted: Option<u64>,
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
        let mut next_name = number.map_or(1, |n| (n & !segment::ON_THE_SPOT) + 1);
        let on_the_spot = number.is_some_and(|n| n & segment::ON_THE_SPOT != 0);
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
                // Offered once the thread has checked it (see `Job::Adopt`).
                ready: None,
                wanted: wanted.is_some(),
                next_name,
                time_left: None,
                size: wanted.unwrap_or(0),
                last_zero_fill: None,
            }),
            zero_filled: AtomicU64::new(0),
            allocated: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let s = Arc::clone(&shared);
        let dir = dir.to_path_buf();
        let worker = Worker::new("raftwal-prepare", move |jobs: Vec<Job>, stop: &Stop| {
            s.serve(jobs, &*fs, &dir, mode, stop)
        });
        // The adoption check reads the whole file: off the opening thread.
        let mut jobs: Vec<Job> = ready.into_iter().map(Job::Adopt).collect();
        if wanted.is_some() {
            jobs.push(Job::Prepare);
        }
        if !jobs.is_empty() {
            // Not started: rolls create files on the spot (and the next
            // `want` tries again); a left file stays for the next open.
            let _ = worker.push(jobs, usize::MAX);
        }
        Preparer { shared, worker }
    }

    /// Takes the prepared file, if one of at least `size` bytes is ready.
    /// The next is prepared when the writer asks for it again. A smaller
    /// file (prepared for an earlier, smaller segment, finished after the
    /// writer rolled without it) is left for the thread to replace: taking
    /// it would shrink the segments that are growing.
    pub(crate) fn take(&self, size: u64) -> Option<PathBuf> {
        let mut s = self.shared.state.lock();
        s.wanted = false;
        s.ready
            .take_if(|(_, len)| *len >= size)
            .map(|(path, _)| path)
    }

    /// Whether a prepared file of the size last asked for is ready to take.
    pub(crate) fn is_ready(&self) -> bool {
        let s = self.shared.state.lock();
        s.ready.as_ref().is_some_and(|(_, len)| *len >= s.size)
    }

    /// Asks for the next file to be prepared, of `size` bytes (the writer
    /// calls this when the active segment passes `write::prepare_mark`), saying
    /// how soon it expects to fill the rest of the active one, if it
    /// knows.
    pub(crate) fn want(&self, time_left: Option<Duration>, size: u64) {
        let mut s = self.shared.state.lock();
        if !s.wanted {
            s.wanted = true;
            s.time_left = time_left;
            s.size = size;
            drop(s);
            let _ = self.worker.push(vec![Job::Prepare], usize::MAX);
        }
    }

    /// Files prepared since the log opened: `(zero-filled, only
    /// allocated)`.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.shared.zero_filled.load(Ordering::Relaxed),
            self.shared.allocated.load(Ordering::Relaxed),
        )
    }

    /// Stops the thread: a zero-fill under way stops between its chunks,
    /// and nothing new is prepared; a left file still queued for its check
    /// is checked (one that holds data must not outlive the log that found
    /// it). A prepared file stays for the next open to adopt.
    pub(crate) fn stop(&self) {
        self.worker.stop(true);
    }
}

impl Shared {
    /// The worker's job: adopts what it is given to check, then prepares a
    /// file if the writer waits for one.
    fn serve(
        &self,
        jobs: Vec<Job>,
        fs: &dyn FileSystem,
        dir: &Path,
        mode: Preallocate,
        stop: &Stop,
    ) -> Next {
        for job in jobs {
            if let Job::Adopt(path) = job {
                self.adopt(fs, path);
            }
        }
        let mut s = self.state.lock();
        while s.wants_a_file() && !stop.requested() {
            // What is ready is too small for the writer: replace it. The
            // file is ours (a prepared file, never renamed into the log),
            // and the writer only takes files under the lock.
            if let Some((small, _)) = s.ready.take() {
                drop(s);
                let _ = fs.remove(&small);
                s = self.state.lock();
                continue;
            }
            let n = s.next_name;
            s.next_name += 1;
            let len = s.size;
            let zero_fill = mode == Preallocate::ZeroFill && !s.writer_outpaces_zero_fill(len);
            drop(s);
            let started = Instant::now();
            let res = if zero_fill {
                segment::prepare_zeroed_until(fs, dir, n, len, &|| stop.requested())
            } else {
                segment::prepare(fs, dir, n, len)
            };
            let took = started.elapsed();
            s = self.state.lock();
            match res {
                Ok(path) => {
                    // Kept even when stopping: the next open adopts it.
                    s.ready = Some((path, len));
                    if zero_fill {
                        s.last_zero_fill = Some((took, len));
                        self.zero_filled.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.allocated.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    if !stop.requested() {
                        log::warn!("raftwal: could not prepare a segment: {e}");
                    }
                    return Next::After(RETRY_AFTER);
                }
            }
        }
        Next::Idle
    }

    /// A prepared file left by an earlier run is adopted only if it holds
    /// nothing but zeros: a roll renames the file it takes without syncing
    /// the directory, so after a crash a file that was written to may
    /// still carry its prepared name.
    fn adopt(&self, fs: &dyn FileSystem, path: PathBuf) {
        if let Some(len) = segment::pristine_len(fs, &path) {
            self.state.lock().ready.get_or_insert((path, len));
        } else {
            log::warn!(
                "raftwal: removing prepared file {} that holds data",
                path.display()
            );
            let _ = fs.remove(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::StdFileSystem;

    /// Waits (bounded) until the preparer has a file ready, and takes it.
    fn take_ready(p: &Preparer) -> PathBuf {
        for _ in 0..2_000 {
            let ready = p.shared.state.lock().ready.clone();
            if let Some((path, _)) = ready {
                assert_eq!(p.take(0), Some(path.clone()));
                return path;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the preparer made no file within 10 s");
    }

    fn preparer(dir: &Path, mode: Preallocate) -> Preparer {
        Preparer::start(Arc::new(StdFileSystem), dir, mode, None)
    }

    #[test]
    fn zero_fill_yields_to_a_writer_that_would_outrun_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = preparer(dir.path(), Preallocate::ZeroFill);
        // The rate unknown (a write crossed the half mark first): the mode
        // as configured.
        p.want(None, 256 << 10);
        take_ready(&p);
        assert_eq!(p.counts(), (1, 0));
        // The writer will fill the rest before any zero-fill could end.
        p.want(Some(Duration::from_nanos(1)), 256 << 10);
        take_ready(&p);
        assert_eq!(p.counts(), (1, 1));
        // A writer slower than the zero-fill it saw take place.
        p.want(Some(Duration::from_secs(3600)), 256 << 10);
        take_ready(&p);
        assert_eq!(p.counts(), (2, 1));
    }

    #[test]
    fn allocate_never_zero_fills() {
        let dir = tempfile::tempdir().unwrap();
        let p = preparer(dir.path(), Preallocate::Allocate);
        p.want(Some(Duration::from_secs(3600)), 256 << 10);
        take_ready(&p);
        p.want(None, 256 << 10);
        take_ready(&p);
        assert_eq!(p.counts(), (0, 2));
    }

    #[test]
    fn a_failed_prepare_is_tried_again_after_a_while() {
        let root = tempfile::tempdir().unwrap();
        // The directory does not exist yet: the first try fails.
        let dir = root.path().join("later");
        let p = preparer(&dir, Preallocate::Allocate);
        p.want(None, 64 << 10);
        let deadline = Instant::now() + Duration::from_secs(20);
        while p.shared.failed.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(p.counts(), (0, 0), "the first try failed");
        std::fs::create_dir(&dir).unwrap();
        // Nothing asks again: the worker's timer retries (after 1 s).
        let path = take_ready(&p);
        assert!(path.starts_with(&dir));
        assert_eq!(p.counts(), (0, 1));
    }

    #[test]
    fn a_file_too_small_for_the_writer_is_replaced_never_taken() {
        let dir = tempfile::tempdir().unwrap();
        let p = preparer(dir.path(), Preallocate::Allocate);
        // Prepared for a 64 KiB segment, then the writer rolled without it
        // and now rolls to a 128 KiB one.
        p.want(None, 64 << 10);
        while !p.is_ready() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let small = p.shared.state.lock().ready.clone().unwrap().0;
        assert_eq!(p.take(128 << 10), None);
        // Asked for 128 KiB, the thread replaces it.
        p.want(None, 128 << 10);
        for _ in 0..2_000 {
            if p.is_ready() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let big = p.take(128 << 10).expect("no 128 KiB file within 10 s");
        assert_eq!(std::fs::metadata(&big).unwrap().len(), 128 << 10);
        assert!(!small.exists(), "{small:?} was not removed");
        assert_eq!(p.counts(), (0, 2));
    }

    #[test]
    fn before_any_zero_fill_the_guess_scales_with_the_segment() {
        let s = State {
            ready: None,
            wanted: true,
            next_name: 1,
            time_left: Some(Duration::from_millis(20)),
            size: 16 << 20,
            last_zero_fill: None,
        };
        // 100 ms per 64 MiB: 25 ms for 16 MiB, 400 ms for 256 MiB.
        assert!(s.writer_outpaces_zero_fill(16 << 20));
        assert!(!s.writer_outpaces_zero_fill(8 << 20));
        // After a 10 ms zero-fill of 64 MiB: 40 ms for 256 MiB, 10 for
        // 64 MiB.
        let timed = State {
            last_zero_fill: Some((Duration::from_millis(10), 64 << 20)),
            ..s
        };
        assert!(timed.writer_outpaces_zero_fill(256 << 20));
        assert!(!timed.writer_outpaces_zero_fill(64 << 20));
    }
}
