//! A cut of a segment file that a replay decided: made by recovery once
//! the replay is over and the log is known to open (a refused open changes
//! nothing).

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::index::Segment;

/// The file is truncated at `offset` (the end of the data kept) and the
/// cut space given back as preallocated zeros. Not synced here: recovery
/// syncs every segment it did not read through a footer (this one among
/// them) before it removes any file or opens the log.
pub(crate) struct Cut {
    file: Arc<dyn crate::fs::FileHandle>,
    pub(crate) path: PathBuf,
    pub(crate) offset: u64,
    pub(crate) preallocated: u64,
}

impl Cut {
    /// Ends `seg`'s data at `offset` in the index; returns the cut to make
    /// in its file.
    pub(crate) fn at(seg: &mut Segment, offset: u64) -> Cut {
        seg.len = offset;
        Cut {
            file: Arc::clone(&seg.file),
            path: seg.path.clone(),
            offset,
            preallocated: seg.preallocated,
        }
    }

    /// Truncates the file and gives the cut space back as zeros.
    pub(crate) fn apply(&self) -> Result<()> {
        self.file
            .set_len(self.offset)
            .map_err(|e| Error::io("truncate torn tail", &self.path, e))?;
        if self.preallocated > self.offset {
            // Give the cut space back as zeros, keeping the file's size.
            let extend = self
                .file
                .allocate(self.offset, self.preallocated - self.offset);
            if let Err(e) = extend {
                log::warn!(
                    "raftwal: could not re-preallocate {}: {e}",
                    self.path.display()
                );
            }
        }
        Ok(())
    }
}
