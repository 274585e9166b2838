//! The log directory a command is pointed at: is it there, is it a log, and
//! is it locked.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::Path;

use raftwal::fs::StdFileSystem;
use raftwal::tools::segment;
use raftwal::LOCK_FILE;
use serde::Serialize;

use crate::failure::{Failure, LOCKED, NOT_A_LOG, OTHER};

/// Fails unless `dir` is a directory holding at least one segment file.
pub fn check_log_dir(dir: &Path) -> Result<(), Failure> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Failure::new(
                NOT_A_LOG,
                format!("{} is not a directory", dir.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Failure::new(
                NOT_A_LOG,
                format!("no such directory: {}", dir.display()),
            ))
        }
        Err(e) => {
            return Err(Failure::new(
                OTHER,
                format!("cannot read {}: {e}", dir.display()),
            ))
        }
    }
    if segment::list(&StdFileSystem, dir)?.is_empty() {
        return Err(Failure::new(
            NOT_A_LOG,
            format!(
                "{} holds no raftwal log (no *.{} segment files)",
                dir.display(),
                segment::EXTENSION
            ),
        ));
    }
    Ok(())
}

/// Whether a `Log` holds the directory's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockStatus {
    /// No process holds the lock.
    Free,
    /// An open log (in this or another process) holds it.
    Locked,
    /// There is no lock file: no log was ever opened here.
    NoLockFile,
}

impl LockStatus {
    pub fn describe(self) -> &'static str {
        match self {
            LockStatus::Free => "free (no open log holds it)",
            LockStatus::Locked => "held by an open log",
            LockStatus::NoLockFile => "no LOCK file",
        }
    }
}

/// Tries the lock without holding it: a shared lock taken and dropped at
/// once. Creates nothing.
pub fn probe_lock(dir: &Path) -> Result<LockStatus, Failure> {
    let path = dir.join(LOCK_FILE);
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LockStatus::NoLockFile),
        Err(e) => {
            return Err(Failure::new(
                OTHER,
                format!("cannot open {}: {e}", path.display()),
            ))
        }
    };
    match f.try_lock_shared() {
        Ok(()) => Ok(LockStatus::Free),
        Err(TryLockError::WouldBlock) => Ok(LockStatus::Locked),
        Err(TryLockError::Error(e)) => Err(Failure::new(
            OTHER,
            format!("cannot lock {}: {e}", path.display()),
        )),
    }
}

/// The directory's exclusive lock, held while the value lives (the same
/// lock `Log::open` takes).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock, or fails with exit code 4 when a log holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, Failure> {
        let path = dir.join(LOCK_FILE);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Failure::new(OTHER, format!("cannot open {}: {e}", path.display())))?;
        match f.try_lock() {
            Ok(()) => Ok(DirLock { _file: f }),
            Err(TryLockError::WouldBlock) => Err(Failure::new(
                LOCKED,
                format!(
                    "{} is locked by an open log; stop the process using it first",
                    dir.display()
                ),
            )),
            Err(TryLockError::Error(e)) => Err(Failure::new(
                OTHER,
                format!("cannot lock {}: {e}", path.display()),
            )),
        }
    }
}
