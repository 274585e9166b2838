//! Removing what the log no longer needs after a replay: torn files
//! (newest first), segments below the first index (oldest first),
//! superseded files, and unreadable files set aside, never deleted.

use std::path::{Path, PathBuf};

use super::{Recovery, RecoveryReport};
use crate::error::{Error, Result};
use crate::format::segment;

impl Recovery<'_> {
    /// Removes the torn files, newest first, syncing the directory after
    /// each unlink: a crash in between leaves the older torn files, which
    /// the next open cuts again the same way (their links still point at
    /// data that is gone), never a gap that could pass for a compaction. A
    /// failure fails the open: the log must not take writes while a torn
    /// file could come back.
    pub(super) fn remove_torn(&mut self, dir: &Path) -> Result<()> {
        let fs = &*self.opts.file_system;
        let mut torn = std::mem::take(&mut self.r.torn);
        // Newest first; a file may be listed twice.
        torn.sort();
        torn.dedup();
        torn.sort_by_key(|p| std::cmp::Reverse(sequence_of(p)));
        for path in torn {
            if self.unreadable.contains(&path) {
                self.set_aside(dir, path)?;
                continue;
            }
            match fs.remove(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("remove segment", &path, e)),
            }
            segment::sync_dir(fs, dir)?;
            log::info!(
                "raftwal: removed segment {} (nothing in it was acknowledged)",
                path.display()
            );
            self.r.report.segments_removed.push(path);
        }
        Ok(())
    }

    /// Removes what the log no longer needs: the segments wholly below its
    /// first index (oldest first, the directory synced after each unlink,
    /// stopping at the first failure, so they vanish in order), then the
    /// superseded files (in any order: whichever survive, the chain of
    /// links leaves them out). Failures are logged, never returned: the
    /// files stay superseded, and the next open removes them.
    pub(super) fn remove_superseded(&mut self, dir: &Path) {
        let fs = &*self.opts.file_system;
        let removed = |path: PathBuf, report: &mut RecoveryReport| match fs.remove(&path) {
            Ok(()) => {
                log::info!("raftwal: removed superseded segment {}", path.display());
                report.segments_removed.push(path);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => {
                log::warn!(
                    "raftwal: could not remove superseded segment {} (the next open removes it): {e}",
                    path.display()
                );
                false
            }
        };
        for path in std::mem::take(&mut self.r.below) {
            if !removed(path, &mut self.r.report) {
                break;
            }
            if let Err(e) = segment::sync_dir(fs, dir) {
                log::warn!("raftwal: {e} (the next open removes what comes back)");
                break;
            }
        }
        let mut any = false;
        for path in std::mem::take(&mut self.r.superseded) {
            if self.unreadable.contains(&path) {
                if let Err(e) = self.set_aside(dir, path) {
                    log::warn!("raftwal: {e} (the next open tries again)");
                }
                continue;
            }
            any |= removed(path, &mut self.r.report);
        }
        if any {
            if let Err(e) = segment::sync_dir(fs, dir) {
                log::warn!("raftwal: {e} (the next open removes what comes back)");
            }
        }
    }

    /// Renames `path`, a file named like a segment whose header does not
    /// parse, aside (see `set_aside_name`) and syncs the directory: never
    /// deleted, it is reported in `RecoveryReport::set_aside`.
    fn set_aside(&mut self, dir: &Path, path: PathBuf) -> Result<()> {
        let fs = &*self.opts.file_system;
        let aside = set_aside_name(fs, &path)?;
        match fs.rename(&path, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("rename unreadable segment aside", &path, e)),
        }
        segment::sync_dir(fs, dir)?;
        log::warn!(
            "raftwal: set {} aside as {}: its header does not parse, and nothing in it is part of the log",
            path.display(),
            aside.display()
        );
        self.r.report.set_aside.push((path, aside));
        Ok(())
    }
}

/// The name an unreadable segment file is set aside under:
/// `<name>.unreadable` (then `.unreadable-2`, ... when taken), which no
/// open reads as a segment. A name is free only when opening it says it
/// does not exist: the rename must never replace a file.
fn set_aside_name(fs: &dyn crate::fs::FileSystem, path: &Path) -> Result<PathBuf> {
    const TRIES: u32 = 1000;
    let base = path.as_os_str().to_owned();
    for k in 1..=TRIES {
        let mut name = base.clone();
        match k {
            1 => name.push(".unreadable"),
            _ => name.push(format!(".unreadable-{k}")),
        }
        let candidate = PathBuf::from(name);
        match fs.open(&candidate) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(candidate),
            Err(e) => return Err(Error::io("look for a free set-aside name", &candidate, e)),
            Ok(_) => {}
        }
    }
    Err(Error::io(
        "look for a free set-aside name",
        path,
        std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{TRIES} set-aside names are taken"),
        ),
    ))
}

/// The sequence number in a segment file's name (0 when it has none).
fn sequence_of(path: &Path) -> u64 {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(segment::parse_file_name)
        .map_or(0, |(s, _)| s)
}
