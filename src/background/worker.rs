//! A background worker: a queue of items and a thread, started on first use,
//! that hands them to a function in batches. The remover (`remove`) and the
//! writeback hinter (`writeback`) are built on it.

use crate::thread::Thread;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

/// What the thread does with each batch of queued items.
type Handler<T> = Arc<dyn Fn(Vec<T>) + Send + Sync>;

/// A queue served by a thread of its own (see the module documentation).
pub(crate) struct Worker<T: Send + 'static> {
    name: &'static str,
    handler: Handler<T>,
    shared: Arc<Shared<T>>,
    thread: Mutex<Option<Thread>>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    cv: Condvar,
}

struct State<T> {
    queue: Vec<T>,
    stop: bool,
    /// On stop, hand what is queued to the handler before exiting.
    finish: bool,
}

impl<T: Send + 'static> Worker<T> {
    /// A worker whose thread, named `name`, starts on the first push and
    /// runs `handler` on everything queued since its last batch.
    pub(crate) fn new(
        name: &'static str,
        handler: impl Fn(Vec<T>) + Send + Sync + 'static,
    ) -> Self {
        Worker {
            name,
            handler: Arc::new(handler),
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: Vec::new(),
                    stop: false,
                    finish: false,
                }),
                cv: Condvar::new(),
            }),
            thread: Mutex::new(None),
        }
    }

    /// Queues `items`, unless `limit` items are queued already. Gives them
    /// back when they were not queued: the thread could not be started, the
    /// worker is stopped, or the queue is full.
    pub(crate) fn push(&self, items: Vec<T>, limit: usize) -> std::result::Result<(), Vec<T>> {
        let mut thread = self.thread.lock();
        if thread.is_none() {
            if self.shared.state.lock().stop {
                return Err(items);
            }
            let shared = Arc::clone(&self.shared);
            let handler = Arc::clone(&self.handler);
            match Thread::spawn(self.name, move || shared.run(&*handler)) {
                Ok(h) => *thread = Some(h),
                Err(e) => {
                    log::warn!("raftwal: could not start {}: {e}", self.name);
                    return Err(items);
                }
            }
        }
        drop(thread);
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
    /// `finish`, else dropping that. Later pushes are refused.
    pub(crate) fn stop(&self, finish: bool) {
        {
            let mut s = self.shared.state.lock();
            s.stop = true;
            s.finish = finish;
        }
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.lock().take() {
            t.join();
        }
    }

    /// Whether the thread is running (for tests).
    #[cfg(test)]
    pub(crate) fn running(&self) -> bool {
        self.thread.lock().is_some()
    }
}

impl<T> Shared<T> {
    fn run(&self, handler: &(dyn Fn(Vec<T>) + Send + Sync)) {
        let mut s = self.state.lock();
        loop {
            while s.queue.is_empty() && !s.stop {
                self.cv.wait(&mut s);
            }
            if s.stop && (!s.finish || s.queue.is_empty()) {
                return;
            }
            let batch = std::mem::take(&mut s.queue);
            drop(s);
            handler(batch);
            s = self.state.lock();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Gated = (Worker<u32>, Arc<Mutex<Vec<u32>>>, Arc<Mutex<()>>);

    /// A worker whose handler waits for `gate` before recording a batch.
    fn gated() -> Gated {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Mutex::new(()));
        let (s, g) = (Arc::clone(&seen), Arc::clone(&gate));
        let w = Worker::new("test-worker", move |items: Vec<u32>| {
            let _open = g.lock();
            s.lock().extend(items);
        });
        (w, seen, gate)
    }

    #[test]
    fn stop_with_finish_hands_over_everything_queued() {
        let (w, seen, gate) = gated();
        let closed = gate.lock();
        w.push(vec![1, 2], usize::MAX).unwrap();
        w.push(vec![3], usize::MAX).unwrap();
        drop(closed);
        w.stop(true);
        let mut got = seen.lock().clone();
        got.sort_unstable();
        assert_eq!(got, vec![1, 2, 3]);
        assert!(!w.running());
        assert_eq!(
            w.push(vec![4], usize::MAX),
            Err(vec![4]),
            "refused after stop"
        );
    }

    #[test]
    fn a_full_queue_refuses_and_stop_without_finish_drops() {
        let (w, seen, gate) = gated();
        let closed = gate.lock();
        // The thread takes at most one batch and then waits at the gate;
        // whatever it has not taken stays queued.
        w.push(vec![1], 2).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !w.shared.state.lock().queue.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        w.push(vec![2, 3], 2).unwrap();
        assert_eq!(w.push(vec![4], 2), Err(vec![4]), "two queued: full");
        // Stopped (without finishing) while the thread holds batch [1]:
        // the flag is up before the thread can look at the queue again.
        w.shared.state.lock().stop = true;
        drop(closed);
        w.stop(false);
        assert_eq!(*seen.lock(), vec![1], "the queued [2, 3] was dropped");
    }
}
