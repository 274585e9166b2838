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

use crate::fs::FileHandle;
use crate::worker::{Next, Stop, Worker};

/// At most this many ranges wait for the thread; more are dropped (the
/// disk is behind anyway, and the next sync writes them back).
const MAX_QUEUED: usize = 64;

/// A range of a file to write back.
type Range = (Arc<dyn FileHandle>, u64, u64);

/// Starts writeback of filled ranges in the background (see the module
/// documentation).
pub(crate) struct Writeback {
    worker: Worker<Range>,
}

impl Writeback {
    /// A hinter whose thread starts on first use.
    pub(crate) fn new() -> Writeback {
        Writeback {
            worker: Worker::new("raftwal-writeback", |ranges: Vec<Range>, _: &Stop| {
                for (file, offset, len) in ranges {
                    if let Err(e) = file.start_writeback(offset, len) {
                        log::debug!("raftwal: writeback hint failed: {e}");
                    }
                }
                Next::Idle
            }),
        }
    }

    /// Queues `[offset, offset + len)` of `file` for writeback (dropped
    /// when the queue is full or the thread cannot run: only a hint).
    pub(crate) fn hint(&self, file: &Arc<dyn FileHandle>, offset: u64, len: u64) {
        let _ = self
            .worker
            .push(vec![(Arc::clone(file), offset, len)], MAX_QUEUED);
    }

    /// Stops and joins the thread; ranges still queued are dropped.
    pub(crate) fn stop(&self) {
        self.worker.stop(false);
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
        assert!(!w.worker.running(), "joined");
        // After stop a hint is dropped and no thread starts again.
        w.hint(&file, 8192, 4096);
        assert!(!w.worker.running());
        assert_eq!(rec.hinted.load(Ordering::Relaxed), 8192);
    }
}
