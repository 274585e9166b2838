//! The file-system seam: every file operation raftwal makes goes through a
//! [`FileSystem`] and the [`FileHandle`]s it opens. [`StdFileSystem`] (the
//! default) is a thin layer over `std::fs` and `rustix`; other
//! implementations can add encryption, keep files in memory, or inject
//! faults and simulate power loss in tests.
//!
//! The surface is exactly what the log uses: positioned reads and writes
//! (`pread`/`pwrite`), `set_len`, `fallocate`, `fdatasync`, and on
//! directories create, list, rename, remove, fsync and lock.

use std::any::Any;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open file.
pub trait FileHandle: Send + Sync + Debug {
    /// Reads exactly `buf.len()` bytes at `offset` (`pread`); fails with
    /// `UnexpectedEof` when the file is shorter.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset` (`pwrite`), growing the file if
    /// needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Allocates `[offset, offset + len)` so later writes there need no
    /// allocation, extending the file (with zeros) if needed.
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Makes the file's data (and the metadata needed to read it, such as
    /// its length) durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Starts writing `[offset, offset + len)` back to the disk without
    /// waiting, so that a later `sync_data` has less to do. A hint: the
    /// default does nothing.
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
}

/// A file system as raftwal uses it. Paths are those raftwal builds from
/// the directory given to `open`.
pub trait FileSystem: Send + Sync + Debug {
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Creates a new file for reading and writing; fails if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>>;
    /// Creates a file for reading and writing, emptying it if it exists.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>>;
    /// Opens an existing file only to read it (the read-only scan of
    /// [`inspect`](crate::tools::inspect)). Default: [`open`](FileSystem::open).
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        self.open(path)
    }
    /// Renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// The paths of the entries of `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Makes the creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (creating the file if missing),
    /// held until the returned guard is dropped. Fails with
    /// `io::ErrorKind::WouldBlock` when someone else holds it.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>>;
}

/// The lock of [`StdFileSystem::lock`]: unlocks explicitly when dropped.
/// Closing the file alone is not enough: a child process forked by another
/// thread holds a copy of the descriptor until it `exec`s, and the `flock`
/// lives as long as any copy, so a reopen right after a drop would fail
/// with `Locked`.
#[derive(Debug)]
struct DirLock(File);

impl Drop for DirLock {
    fn drop(&mut self) {
        if let Err(e) = self.0.unlock() {
            log::warn!("raftwal: could not unlock the log directory: {e}");
        }
    }
}

/// Asks the kernel not to update `f`'s access time on reads (`O_NOATIME`):
/// a read then skips the atime check and, under `relatime`, the inode
/// update after each write, ≈ 3 % of a small cached `pread`. Best effort:
/// only a file's owner may set it, and nothing depends on it.
fn no_atime(f: &File) {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    if let Ok(flags) = fcntl_getfl(f) {
        let _ = fcntl_setfl(f, flags | OFlags::NOATIME);
    }
}

/// The default [`FileSystem`]: `std::fs`, with `fallocate` from `rustix`
/// and locks from `File::try_lock` (`flock`).
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFileSystem;

/// `std::fs::File` is the [`FileHandle`] of [`StdFileSystem`].
impl FileHandle for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        rustix::fs::fallocate(self, rustix::fs::FallocateFlags::empty(), offset, len)
            .map_err(io::Error::from)
    }

    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }

    /// `posix_fadvise(POSIX_FADV_DONTNEED)`: Linux starts writeback of the
    /// range's dirty pages and returns; pages still dirty or under writeback
    /// stay cached.
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        let len = std::num::NonZeroU64::new(len);
        rustix::fs::fadvise(self, offset, len, rustix::fs::Advice::DontNeed)
            .map_err(io::Error::from)
    }
}

impl FileSystem for StdFileSystem {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        no_atime(&f);
        Ok(Arc::new(f))
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        no_atime(&f);
        Ok(Arc::new(f))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        no_atime(&f);
        Ok(Arc::new(f))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        Ok(Arc::new(File::open(path)?))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        match f.try_lock() {
            Ok(()) => Ok(Box::new(DirLock(f))),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}
