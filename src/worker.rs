//! The one way raftwal runs a thread of its own: a [`Worker`], a named
//! thread (`raftwal-…`) that serves a queue of items and, when its job asks,
//! a timer. Every background thread is one: the syncers, the preparer, the
//! sealer, the remover and the writeback hinter.
//!
//! A worker's thread starts on its first [`Worker::push`] (or
//! [`Worker::start`]) and runs its job on everything queued since the job
//! last ran, one batch at a time; the job says when it wants to run again
//! without new items ([`Next`]). [`Worker::stop`] is the only way to stop
//! it: the thread finishes the batch in hand (and, when asked, everything
//! queued), then is joined; a panic in it is logged, never passed on (a log
//! that is closing must not panic its caller).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// When a worker's job wants to run again with no new items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Only when items are pushed.
    Idle,
    /// After this long (with an empty batch), or sooner if items are pushed.
    After(Duration),
}

/// What the thread does with each batch of queued items.
type Job<T> = Arc<dyn Fn(Vec<T>, &Stop) -> Next + Send + Sync>;

/// Handed to a worker's job with each batch: a long job checks
/// [`Stop::requested`] between its steps, so that closing a log does not
/// wait for all of them.
pub(crate) struct Stop<'a>(&'a AtomicBool);

impl Stop<'_> {
    /// Whether [`Worker::stop`] was called (true from then on).
    pub(crate) fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A queue served by a thread of its own (see the module documentation).
pub(crate) struct Worker<T: Send + 'static> {
    name: &'static str,
    job: Job<T>,
    shared: Arc<Shared<T>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    cv: Condvar,
    /// `State::stop`, readable without the lock (see [`Stop`]).
    stopping: AtomicBool,
}

struct State<T> {
    queue: Vec<T>,
    stop: bool,
    /// On stop, hand what is queued to the job before exiting.
    finish: bool,
}

impl<T: Send + 'static> Worker<T> {
    /// A worker whose thread, named `name`, runs `job` on everything queued
    /// since its last batch. No thread runs yet.
    pub(crate) fn new(
        name: &'static str,
        job: impl Fn(Vec<T>, &Stop) -> Next + Send + Sync + 'static,
    ) -> Self {
        Worker {
            name,
            job: Arc::new(job),
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: Vec::new(),
                    stop: false,
                    finish: false,
                }),
                cv: Condvar::new(),
                stopping: AtomicBool::new(false),
            }),
            thread: Mutex::new(None),
        }
    }

    /// Starts the thread if it is not running, with `first` as its first
    /// wait (`Next::After(d)` runs the job with an empty batch after `d`).
    /// Fails if the thread cannot be spawned or the worker was stopped.
    pub(crate) fn start(&self, first: Next) -> io::Result<()> {
        let mut thread = self.thread.lock();
        if thread.is_some() {
            return Ok(());
        }
        if self.shared.state.lock().stop {
            return Err(io::Error::other(format!("{} was stopped", self.name)));
        }
        let shared = Arc::clone(&self.shared);
        let job = Arc::clone(&self.job);
        let handle = std::thread::Builder::new()
            .name(self.name.into())
            .spawn(move || shared.run(&*job, first))?;
        *thread = Some(handle);
        Ok(())
    }

    /// Queues `items`, unless `limit` items are queued already, starting
    /// the thread if it is not running. Gives them back when they were not
    /// queued: the thread could not be started, the worker is stopped, or
    /// the queue is full.
    pub(crate) fn push(&self, items: Vec<T>, limit: usize) -> std::result::Result<(), Vec<T>> {
        if let Err(e) = self.start(Next::Idle) {
            if !self.shared.state.lock().stop {
                log::warn!("raftwal: could not start {}: {e}", self.name);
            }
            return Err(items);
        }
        // One critical section: a `stop` that lands before it refuses the
        // items, one after it finds them queued.
        let mut s = self.shared.state.lock();
        if s.stop || s.queue.len() >= limit {
            return Err(items);
        }
        s.queue.extend(items);
        drop(s);
        self.shared.cv.notify_all();
        Ok(())
    }

    /// Stops and joins the thread: after handing it what is queued when
    /// `finish`, else dropping that. Later pushes are refused. A job under
    /// way is finished first; one that runs long checks [`Stop`].
    pub(crate) fn stop(&self, finish: bool) {
        {
            let mut s = self.shared.state.lock();
            s.stop = true;
            s.finish = finish;
            self.shared.stopping.store(true, Ordering::Relaxed);
        }
        self.shared.cv.notify_all();
        let thread = self.thread.lock().take();
        if let Some(t) = thread {
            if t.thread().id() == std::thread::current().id() {
                // Dropped by its own job (the last owner of what owns the
                // worker was the job): the thread ends when the job returns.
                return;
            }
            if t.join().is_err() {
                log::error!("raftwal: the {} thread panicked", self.name);
            }
        }
    }

    /// Whether the thread is running.
    #[cfg(test)]
    pub(crate) fn running(&self) -> bool {
        self.thread.lock().is_some()
    }
}

impl<T> Drop for Worker<T>
where
    T: Send + 'static,
{
    fn drop(&mut self) {
        self.stop(false);
    }
}

impl<T> Shared<T> {
    fn run(&self, job: &(dyn Fn(Vec<T>, &Stop) -> Next + Send + Sync), first: Next) {
        let due_after = |next: Next| match next {
            Next::Idle => None,
            Next::After(d) => Some(Instant::now() + d),
        };
        let mut due = due_after(first);
        let mut s = self.state.lock();
        loop {
            // Until items come, the stop, or the time the job asked for.
            while s.queue.is_empty() && !s.stop {
                match due {
                    None => self.cv.wait(&mut s),
                    Some(at) => {
                        if self.cv.wait_until(&mut s, at).timed_out() {
                            break;
                        }
                    }
                }
            }
            if s.stop && (!s.finish || s.queue.is_empty()) {
                return;
            }
            let batch = std::mem::take(&mut s.queue);
            drop(s);
            due = due_after(job(batch, &Stop(&self.stopping)));
            s = self.state.lock();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Items the job got, and whether it saw a stop requested.
    type Seen = Arc<Mutex<(Vec<u32>, bool)>>;
    type Gated = (Worker<u32>, Seen, Arc<Mutex<()>>);

    /// A worker whose job waits for `gate` before recording a batch.
    fn gated() -> Gated {
        let seen: Seen = Arc::default();
        let gate = Arc::new(Mutex::new(()));
        let (s, g) = (Arc::clone(&seen), Arc::clone(&gate));
        let w = Worker::new("test-worker", move |items: Vec<u32>, stop: &Stop| {
            let _open = g.lock();
            let mut s = s.lock();
            s.0.extend(items);
            s.1 |= stop.requested();
            Next::Idle
        });
        (w, seen, gate)
    }

    #[test]
    fn stop_with_finish_hands_over_everything_queued() {
        let (w, seen, gate) = gated();
        assert!(!w.running(), "no thread before the first push");
        let closed = gate.lock();
        w.push(vec![1, 2], usize::MAX).unwrap();
        w.push(vec![3], usize::MAX).unwrap();
        drop(closed);
        w.stop(true);
        let mut got = seen.lock().0.clone();
        got.sort_unstable();
        assert_eq!(got, vec![1, 2, 3]);
        assert!(!w.running());
        assert_eq!(
            w.push(vec![4], usize::MAX),
            Err(vec![4]),
            "refused after stop"
        );
        assert!(w.start(Next::Idle).is_err(), "no restart after stop");
    }

    #[test]
    fn a_full_queue_refuses_and_stop_without_finish_drops() {
        let (w, seen, gate) = gated();
        let closed = gate.lock();
        // The thread takes at most one batch and then waits at the gate;
        // whatever it has not taken stays queued.
        w.push(vec![1], 2).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !w.shared.state.lock().queue.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        w.push(vec![2, 3], 2).unwrap();
        assert_eq!(w.push(vec![4], 2), Err(vec![4]), "two queued: full");
        // Stopped (without finishing) while the thread holds batch [1]:
        // the flag is up before the thread can look at the queue again.
        w.shared.state.lock().stop = true;
        w.shared.stopping.store(true, Ordering::Relaxed);
        drop(closed);
        w.stop(false);
        assert_eq!(
            *seen.lock(),
            (vec![1], true),
            "the job saw the stop; the queued [2, 3] was dropped"
        );
    }

    #[test]
    fn a_job_that_asks_to_run_again_is_run_with_empty_batches_until_stopped() {
        let runs = Arc::new(Mutex::new(Vec::new()));
        let r = Arc::clone(&runs);
        let w = Worker::new("test-timer", move |items: Vec<u32>, _: &Stop| {
            let mut r = r.lock();
            r.push(items.len());
            // Three timed runs after the first, then only on pushes.
            if r.len() < 4 {
                Next::After(Duration::from_millis(1))
            } else {
                Next::Idle
            }
        });
        w.start(Next::After(Duration::from_millis(1))).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while runs.lock().len() < 4 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(*runs.lock(), vec![0, 0, 0, 0], "four timed runs");
        // Idle now: only a push runs it.
        w.push(vec![7, 8], usize::MAX).unwrap();
        while runs.lock().len() < 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        w.stop(false);
        assert_eq!(*runs.lock(), vec![0, 0, 0, 0, 2]);
    }

    #[test]
    fn a_panicking_job_is_logged_not_passed_on() {
        let w = Worker::new("test-panic", |_: Vec<u32>, _: &Stop| -> Next {
            panic!("boom")
        });
        w.push(vec![1], usize::MAX).unwrap();
        w.stop(true);
        assert!(!w.running());
    }
}
