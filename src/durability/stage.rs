//! Staged writes: what [`Log::submit`](crate::Log::submit) issues while the
//! background syncer runs, held in memory until a sync round (or a reader,
//! or the writer itself) writes it to the file.
//!
//! A submitted batch needs to be durable eventually, not in the page cache
//! at once: the syncer's next round writes every staged batch with one
//! `pwrite` and then runs its `fdatasync`. The writer's cost per batch is
//! then a copy into this buffer rather than a system call (on the
//! reference machine a 290 B `pwrite` takes ≈ 1.1 µs; see
//! `docs/PERFORMANCE.md`, W5).
//!
//! Staged bytes always continue the active segment where its last byte
//! written or staged ends, so the file's content is the same as if each
//! batch had been written when issued. Every other write path writes them
//! out first (under the writer lock), a roll does before it leaves the
//! segment, a sync round does before its `fdatasync`, and a read of an
//! entry still staged does before its `pread`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::Poison;
use crate::error::{Error, Result};
use crate::fs::FileHandle;

/// The largest write that is staged: a bigger one goes straight to the
/// file (a copy of it would cost about as much as its `pwrite`).
pub(crate) const STAGE_WRITE_MAX: usize = 64 << 10;

/// How many bytes may be staged before the writer writes them out itself
/// (it checks after staging its batch, so up to one batch more):
/// keeps memory bounded when the disk is slower than the writer. At the
/// reference machine's ≈ 90 µs per round, a writer issuing 290 B batches
/// at 2 M/s stages ≈ 50 KiB per round.
pub(crate) const STAGE_CAP: usize = 1 << 20;

/// The staging buffer; see the [module](self) docs.
pub(crate) struct Stage {
    staged: Mutex<Staged>,
    /// Held by whoever writes staged bytes out, for the whole `pwrite`:
    /// flushes land in order, and a flush that finds nothing to take knows
    /// that the bytes taken before it are written.
    flushing: Mutex<()>,
    /// Some bytes are staged or being written out (`Staged::unwritten`
    /// is set): a lock-free check for the write paths. Stored under the
    /// `staged` lock.
    busy: AtomicBool,
    /// The log's poisoned state: a failed write-out sets it, and nothing
    /// is staged or written out once it is set.
    poisoned: Arc<Poison>,
}

struct Staged {
    /// The file the bytes go to, its path and its segment sequence.
    target: Option<(Arc<dyn FileHandle>, PathBuf, u64)>,
    /// The file offset of `bytes[0]`.
    at: u64,
    bytes: Vec<u8>,
    /// An empty buffer with capacity, swapped in while a flush writes.
    spare: Vec<u8>,
    /// The offset in the target file from which bytes are staged or being
    /// written out; `None` when everything staged is in the file.
    unwritten: Option<u64>,
}

impl Stage {
    pub(crate) fn new(poisoned: Arc<Poison>) -> Stage {
        Stage {
            poisoned,
            staged: Mutex::new(Staged {
                target: None,
                at: 0,
                bytes: Vec::new(),
                spare: Vec::new(),
                unwritten: None,
            }),
            flushing: Mutex::new(()),
            busy: AtomicBool::new(false),
        }
    }

    /// Whether nothing is staged or being written out.
    pub(crate) fn is_idle(&self) -> bool {
        !self.busy.load(Ordering::Acquire)
    }

    /// Bytes staged and not yet taken by a flush.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.staged.lock().bytes.len()
    }

    /// Stages `bytes` to be written at `offset` of `file` (segment
    /// `sequence`). They must continue what is staged for that file; when
    /// nothing is, they may go to any file and offset. Called by the writer,
    /// under the writer lock. Returns the bytes staged now.
    pub(crate) fn push(
        &self,
        file: &Arc<dyn FileHandle>,
        path: &Path,
        sequence: u64,
        offset: u64,
        bytes: &[u8],
    ) -> Result<usize> {
        self.poisoned.check()?;
        let mut s = self.staged.lock();
        let end = s.at + s.bytes.len() as u64;
        match (&s.target, s.unwritten) {
            (Some((_, _, seq)), Some(_)) if *seq != sequence || end != offset => {
                return Err(Error::internal(format!(
                    "a staged write to segment {sequence} at offset {offset} does not continue the staged bytes (segment {seq}, ending at {end})"
                )));
            }
            (_, Some(_)) => {}
            (_, None) => {
                let same = s.target.as_ref().is_some_and(|t| t.2 == sequence);
                if !same {
                    s.target = Some((Arc::clone(file), path.to_path_buf(), sequence));
                }
                s.at = offset;
                s.unwritten = Some(offset);
                self.busy.store(true, Ordering::Release);
            }
        }
        // Continuing: `s.at + s.bytes.len() == offset` (checked above), so
        // an empty buffer already starts at `offset`.
        s.bytes.extend_from_slice(bytes);
        Ok(s.bytes.len())
    }

    /// Whether the bytes of segment `sequence` below `end` are in the file
    /// (not staged, nor being written out).
    pub(crate) fn is_written(&self, sequence: u64, end: u64) -> bool {
        if self.is_idle() {
            return true;
        }
        let s = self.staged.lock();
        match (&s.target, s.unwritten) {
            (Some((_, _, seq)), Some(from)) => *seq != sequence || end <= from,
            _ => true,
        }
    }

    /// Writes out everything staged before the call, with one `pwrite`, and
    /// waits for a write-out already under way. On failure the bytes taken
    /// are lost: the error names the file, the caller poisons the log, and
    /// every later flush (including one that waited for this one) and push
    /// fails with [`Error::Poisoned`].
    pub(crate) fn flush(&self) -> Result<()> {
        if self.is_idle() {
            return Ok(());
        }
        let _turn = self.flushing.lock();
        let (file, path, at, bytes) = {
            // A failed write-out poisoned the log: its bytes are lost, so
            // nothing staged is ever written out again (bytes after them
            // would land behind a hole).
            self.poisoned.check()?;
            let mut s = self.staged.lock();
            if s.bytes.is_empty() {
                // Taken and written by the flush that held the turn before.
                return Ok(());
            }
            let Some((file, path, _)) = s.target.clone() else {
                return Err(Error::internal("staged bytes without a file"));
            };
            let spare = std::mem::take(&mut s.spare);
            let bytes = std::mem::replace(&mut s.bytes, spare);
            let at = s.at;
            s.at += bytes.len() as u64;
            (file, path, at, bytes)
        };
        let res = file.write_all_at(&bytes, at);
        let mut s = self.staged.lock();
        if let Err(e) = res {
            let err = Error::io("write staged batches", &path, e);
            self.poisoned.set(err.to_string());
            return Err(err);
        }
        s.unwritten = (!s.bytes.is_empty()).then_some(s.at);
        if s.unwritten.is_none() {
            self.busy.store(false, Ordering::Release);
        }
        let mut bytes = bytes;
        bytes.clear();
        if bytes.capacity() <= STAGE_CAP && bytes.capacity() > s.spare.capacity() {
            s.spare = bytes;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{FileSystem, StdFileSystem};

    fn file() -> (tempfile::TempDir, Arc<dyn FileHandle>, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = StdFileSystem.create(&path).unwrap();
        (dir, f, path)
    }

    fn read(f: &Arc<dyn FileHandle>) -> Vec<u8> {
        let mut buf = vec![0; f.len().unwrap() as usize];
        f.read_exact_at(&mut buf, 0).unwrap();
        buf
    }

    #[test]
    fn staged_bytes_reach_the_file_only_when_flushed() {
        let (_d, f, path) = file();
        let stage = Stage::new(Arc::default());
        assert!(stage.is_idle());
        stage.push(&f, &path, 1, 0, b"abc").unwrap();
        stage.push(&f, &path, 1, 3, b"de").unwrap();
        assert_eq!(stage.len(), 5);
        assert!(!stage.is_idle());
        assert!(!stage.is_written(1, 1));
        assert!(
            stage.is_written(2, 100),
            "another segment has nothing staged"
        );
        assert_eq!(f.len().unwrap(), 0);
        stage.flush().unwrap();
        assert_eq!(read(&f), b"abcde");
        assert!(stage.is_idle());
        assert!(stage.is_written(1, 5));
        assert_eq!(stage.len(), 0);
    }

    #[test]
    fn a_push_must_continue_what_is_staged() {
        let (_d, f, path) = file();
        let stage = Stage::new(Arc::default());
        stage.push(&f, &path, 1, 10, b"abc").unwrap();
        assert!(stage.push(&f, &path, 1, 14, b"x").is_err(), "a gap");
        assert!(
            stage.push(&f, &path, 2, 13, b"x").is_err(),
            "another segment"
        );
        stage.flush().unwrap();
        // Once written out, the next push may start anywhere.
        stage.push(&f, &path, 2, 0, b"z").unwrap();
        assert!(!stage.is_written(2, 1));
        assert!(stage.is_written(1, 13), "segment 1 is written out");
        stage.flush().unwrap();
        let bytes = read(&f);
        assert_eq!(&bytes[..1], b"z");
        assert_eq!(&bytes[10..13], b"abc");
    }

    #[test]
    fn the_buffer_is_reused_across_flushes() {
        let (_d, f, path) = file();
        let stage = Stage::new(Arc::default());
        let mut at = 0;
        for k in 0..100u8 {
            stage.push(&f, &path, 1, at, &[k; 100]).unwrap();
            at += 100;
            if k % 10 == 9 {
                stage.flush().unwrap();
            }
        }
        let bytes = read(&f);
        assert_eq!(bytes.len(), 10_000);
        assert!(bytes
            .chunks(100)
            .enumerate()
            .all(|(k, c)| c.iter().all(|&b| b == k as u8)));
        assert!(stage.staged.lock().spare.capacity() >= 1000);
    }

    #[derive(Debug)]
    struct Failing;
    impl FileHandle for Failing {
        fn read_exact_at(&self, _: &mut [u8], _: u64) -> std::io::Result<()> {
            Ok(())
        }
        fn write_all_at(&self, _: &[u8], _: u64) -> std::io::Result<()> {
            Err(std::io::Error::other("injected"))
        }
        fn len(&self) -> std::io::Result<u64> {
            Ok(0)
        }
        fn set_len(&self, _: u64) -> std::io::Result<()> {
            Ok(())
        }
        fn allocate(&self, _: u64, _: u64) -> std::io::Result<()> {
            Ok(())
        }
        fn sync_data(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_out_fails_every_later_flush_and_push() {
        let f: Arc<dyn FileHandle> = Arc::new(Failing);
        let path = PathBuf::from("/nowhere/f");
        let stage = Stage::new(Arc::default());
        stage.push(&f, &path, 7, 0, b"abc").unwrap();
        let e = stage.flush().unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e:?}");
        assert!(e.to_string().contains("/nowhere/f"), "{e}");
        assert!(
            !stage.is_written(7, 3),
            "the lost bytes are not in the file"
        );
        assert!(!stage.is_idle());
        // A flush that waited its turn behind the failed one must not find
        // the buffer empty and report everything written.
        assert!(matches!(stage.flush(), Err(Error::Poisoned { .. })));
        assert!(matches!(
            stage.push(&f, &path, 7, 3, b"de"),
            Err(Error::Poisoned { .. })
        ));
        assert!(matches!(stage.flush(), Err(Error::Poisoned { .. })));
    }
}
