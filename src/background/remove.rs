//! The background remover: unlinks segment files that a durable marker has
//! already superseded, then syncs the directory, off the caller's thread.
//!
//! Unlinking a 64 MiB segment makes ext4 free (and, mounted with `discard`,
//! trim) its extents there and then: tens of milliseconds per file. A
//! compaction is durable once its marker is synced; the segments wholly below
//! the new first index are garbage from then on, and recovery removes any it
//! finds (`Recovery::finish`). So `Log::compact` hands them to this thread and
//! returns. (A reset and a cut below the active segment unlink the
//! segments they supersede on the caller's thread, with
//! [`remove_superseded`]: their failures, too, are only logged.)
//!
//! Files are unlinked oldest first, the directory synced after each (see
//! [`remove_now`]). Errors here never fail a call or poison the log:
//! * a failed unlink leaves a superseded file (and the ones queued after
//!   it), which the next open removes;
//! * a failed directory fsync leaves unlinks that a power cut may undo, which
//!   is the state a crash just before them would leave, and recovery removes
//!   the files again. Nothing acknowledged depends on the unlinks, so
//!   poisoning the log (refusing every later write) would buy nothing; if the
//!   file system is really failing, the next data fsync reports it and
//!   poisons the log as usual.
//!
//! The thread starts on first use and is joined when the `Log` is dropped,
//! after it has removed everything it was given: the files are gone when the
//! `Log` is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::format::segment;
use crate::fs::FileSystem;
use crate::worker::{Next, Stop, Worker};

/// Removes superseded segment files in the background (see the module
/// documentation).
pub(crate) struct Remover {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    worker: Worker<PathBuf>,
}

impl Remover {
    /// A remover for files of `dir`; its thread starts on first use.
    pub(crate) fn new(fs: Arc<dyn FileSystem>, dir: &Path) -> Remover {
        let (wfs, wdir) = (Arc::clone(&fs), dir.to_path_buf());
        Remover {
            fs,
            dir: dir.to_path_buf(),
            worker: Worker::new("raftwal-remove", move |paths: Vec<PathBuf>, _: &Stop| {
                remove_now(&*wfs, &wdir, &paths);
                Next::Idle
            }),
        }
    }

    /// Queues `paths` for removal, then a directory fsync. When the thread
    /// cannot be started (or the remover was stopped), removes them on the
    /// caller's thread, with the same error handling.
    pub(crate) fn remove(&self, paths: Vec<PathBuf>) {
        if paths.is_empty() {
            return;
        }
        if let Err(paths) = self.worker.push(paths, usize::MAX) {
            remove_now(&*self.fs, &self.dir, &paths);
        }
    }

    /// Removes everything queued, then stops and joins the thread.
    pub(crate) fn stop(&self) {
        self.worker.stop(true);
    }
}

/// Unlinks `paths` in order (oldest first), syncing `dir` after each, and
/// stops at the first that cannot be unlinked (failures are logged, never
/// returned; see the module documentation).
///
/// One directory fsync per file keeps the unlinks on disk in the order
/// they were made, even on a file system that may persist the directory
/// operations between two fsyncs in any order: a crash leaves the oldest
/// superseded files gone and the newer ones there, never a gap with older
/// ones behind it. Stopping at a failed unlink keeps that shape too. Recovery
/// copes with a gap anyway (a version-2 segment names its predecessor, so
/// files before a missing one are known superseded when a compaction marker
/// covers them), but a version-1 directory's segments name nothing, and
/// there a gap looks like a missing segment. A directory fsync is cheap
/// next to an unlink (ext4 frees the extents of a 64 MiB file there and then).
fn remove_now(fs: &dyn FileSystem, dir: &Path, paths: &[PathBuf]) {
    for p in paths {
        match fs.remove(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                log::warn!(
                    "raftwal: could not remove superseded segment {} (the next open removes it and the ones after it): {e}",
                    p.display()
                );
                return;
            }
        }
        if let Err(e) = segment::sync_dir(fs, dir) {
            // The unlinks go on: a later successful fsync makes this one
            // durable too, and recovery removes whatever a crash brings
            // back (see the module documentation).
            log::warn!("raftwal: after removing superseded segment {}: {e} (a crash may bring it back; the next open removes it)", p.display());
        }
    }
}

/// Unlinks files that a durable segment's link already supersedes (the
/// segments before a reset, the segments a cut below the active segment
/// cut off), on the caller's thread, then syncs `dir` once. Whichever of
/// the unlinks reach the disk, and in whatever order, recovery leaves the
/// files out (see `chain`), so a failure is logged, never returned: the
/// next open removes what is left.
pub(crate) fn remove_superseded(fs: &dyn FileSystem, dir: &Path, paths: &[PathBuf]) {
    let mut any = false;
    for p in paths {
        match fs.remove(p) {
            Ok(()) => any = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!(
                "raftwal: could not remove superseded segment {} (the next open removes it): {e}",
                p.display()
            ),
        }
    }
    if any {
        if let Err(e) = segment::sync_dir(fs, dir) {
            log::warn!("raftwal: after removing superseded segments: {e} (a crash may bring them back; the next open removes them)");
        }
    }
}
