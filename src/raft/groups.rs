//! The engine's group stores by the names programs call: `Engine::group`
//! (a group's `RaftLogStore`) and `Engine::remove_group`. They live here,
//! with the store, since the engine is a layer below it.

use super::*;
use crate::engine::EngineBatch;

impl Engine {
    /// The store of group `id`: [`RaftLogStore::open_group`].
    pub fn group(self: &Arc<Self>, id: u64) -> Result<RaftLogStore> {
        RaftLogStore::open_group(self, id)
    }

    /// Removes group `id` durably: its entries and state stop counting
    /// (the segments they were in are freed by [`Engine::reclaim`] once no
    /// other group needs them), then its snapshot files go.
    /// [`Error::InvalidArgument`] while a store is open on the group (drop
    /// every clone first). A group the engine does not hold is removed
    /// all the same (nothing changes).
    pub fn remove_group(self: &Arc<Self>, id: u64) -> Result<()> {
        // Held while removing, so no store opens the group meanwhile.
        let _claim = self.claim(id)?;
        let mut b = EngineBatch::new();
        b.remove_group(id);
        self.write_durable(&mut b)?;
        let opts = self.stream().options();
        // The snapshot files are the group's own (their names say so); a
        // crash before they go leaves them for the next open of a group of
        // this id to remove, as unreferenced.
        let dir = group_dir(self, id);
        let fs = &*opts.file_system;
        if fs.list(&dir).is_ok() {
            let listing = snapshot::list(fs, &dir)?;
            let mut doomed = listing.temporary;
            doomed.extend(listing.snapshots.into_iter().map(|s| s.2));
            snapshot::remove(fs, &dir, &doomed)?;
        }
        Ok(())
    }
}

/// Where group `id` of `engine` keeps its snapshot files.
pub(super) fn group_dir(engine: &Engine, id: u64) -> PathBuf {
    engine.dir().join("groups").join(format!("{id:016x}"))
}
