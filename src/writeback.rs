//! The writeback hinter: a background thread that asks the kernel to start
//! writing back ranges of a segment the writer has filled, off the writer's
//! thread.
//!
//! Under a relaxed sync policy dirty pages pile up until a sync, which would
//! then write them all at once; so the writer asks for writeback of each
//! 4 MiB it fills ([`FileHandle::start_writeback`]). That call is not free:
//! `posix_fadvise` starts the writeback itself and, on this machine's virtio
//! disk, took 8-13 ms at a time in a W4 run (`strace -T`) when the device
//! queue was full, which made it W4's largest batch. Here it runs on its own
//! thread, and the writer only queues the range.
//!
//! A hint is only a hint: when the thread cannot be started, or is stopped,
//! the range is simply not hinted (the next sync writes it back), and a
//! failed hint is logged at debug level.

use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::fs::FileHandle;

/// At most this many ranges wait for the thread; more are dropped (the
/// disk is behind anyway, and the next sync writes them back).
const MAX_QUEUED: usize = 64;

/// Starts writeback of filled ranges in the background (see the module
/// documentation).
pub(crate) struct Writeback {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Default)]
struct State {
    queue: Vec<(Arc<dyn FileHandle>, u64, u64)>,
    stop: bool,
}

impl Writeback {
    /// A hinter whose thread starts on first use.
    pub(crate) fn new() -> Writeback {
        Writeback {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                cv: Condvar::new(),
            }),
            thread: Mutex::new(None),
        }
    }

    /// Queues `[offset, offset + len)` of `file` for writeback.
    pub(crate) fn hint(&self, file: &Arc<dyn FileHandle>, offset: u64, len: u64) {
        let mut thread = self.thread.lock();
        if thread.is_none() {
            if self.shared.state.lock().stop {
                return;
            }
            let shared = Arc::clone(&self.shared);
            match std::thread::Builder::new()
                .name("raftwal-writeback".into())
                .spawn(move || shared.run())
            {
                Ok(h) => *thread = Some(h),
                Err(e) => {
                    log::debug!("raftwal: could not start the writeback thread: {e}");
                    return;
                }
            }
        }
        drop(thread);
        let mut s = self.shared.state.lock();
        if s.stop || s.queue.len() >= MAX_QUEUED {
            return;
        }
        s.queue.push((Arc::clone(file), offset, len));
        drop(s);
        self.shared.cv.notify_one();
    }

    /// Stops and joins the thread; ranges still queued are dropped.
    pub(crate) fn stop(&self) {
        {
            let mut s = self.shared.state.lock();
            s.stop = true;
            s.queue.clear();
        }
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.lock().take() {
            if t.join().is_err() {
                log::error!("raftwal: the writeback thread panicked");
            }
        }
    }
}

impl Shared {
    fn run(&self) {
        let mut s = self.state.lock();
        loop {
            while s.queue.is_empty() && !s.stop {
                self.cv.wait(&mut s);
            }
            if s.stop {
                return;
            }
            let ranges = std::mem::take(&mut s.queue);
            drop(s);
            for (file, offset, len) in ranges {
                if let Err(e) = file.start_writeback(offset, len) {
                    log::debug!("raftwal: writeback hint failed: {e}");
                }
            }
            s = self.state.lock();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Records the ranges it was asked to write back.
    #[derive(Debug, Default)]
    struct Recorder {
        hinted: AtomicU64,
    }

    impl FileHandle for Recorder {
        fn read_exact_at(&self, _: &mut [u8], _: u64) -> io::Result<()> {
            Ok(())
        }
        fn write_all_at(&self, _: &[u8], _: u64) -> io::Result<()> {
            Ok(())
        }
        fn sync_data(&self) -> io::Result<()> {
            Ok(())
        }
        fn set_len(&self, _: u64) -> io::Result<()> {
            Ok(())
        }
        fn len(&self) -> io::Result<u64> {
            Ok(0)
        }
        fn allocate(&self, _: u64, _: u64) -> io::Result<()> {
            Ok(())
        }
        fn start_writeback(&self, _offset: u64, len: u64) -> io::Result<()> {
            self.hinted.fetch_add(len, Ordering::Relaxed);
            Ok(())
        }
    }

    #[test]
    fn hints_reach_the_file_on_the_thread_and_stop_ends_it() {
        let rec = Arc::new(Recorder::default());
        let file: Arc<dyn FileHandle> = rec.clone();
        let w = Writeback::new();
        w.hint(&file, 0, 4096);
        w.hint(&file, 4096, 4096);
        // The thread runs the hints; wait for them, bounded.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while rec.hinted.load(Ordering::Relaxed) < 8192 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(rec.hinted.load(Ordering::Relaxed), 8192);
        w.stop();
        assert!(w.thread.lock().is_none(), "joined");
        // After stop a hint is dropped and no thread starts again.
        w.hint(&file, 8192, 4096);
        assert!(w.thread.lock().is_none());
        assert_eq!(rec.hinted.load(Ordering::Relaxed), 8192);
    }
}
