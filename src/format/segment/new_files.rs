//! Creating segment files: from scratch, from a prepared file, or opened
//! by a cut's or a reset's write under a `.prep` name; and preparing
//! files ahead (allocated, or zero-filled).

use super::*;

/// A segment file opened for writing.
#[derive(Debug)]
pub struct Created {
    /// The open file.
    pub file: Arc<dyn FileHandle>,
    /// Its path.
    pub path: PathBuf,
    /// The length of its header frame: where data starts.
    pub header_len: u64,
    /// The length it was preallocated to (0 when not).
    pub preallocated: u64,
}

/// Marks the names of prepared files made on the spot (by the writer or
/// recovery, not by the background preparer), so the two never clash.
pub(crate) const ON_THE_SPOT: u64 = 1 << 63;

/// Creates segment `sequence` in `dir` holding only its header, and syncs
/// the file. When `prepared` names a prepared file (see [`prepare`]), that
/// file is used: its header is written and synced, then it is renamed into
/// place. The caller syncs the directory.
pub fn create(
    fs: &dyn FileSystem,
    dir: &Path,
    sequence: u64,
    first_index: u64,
    prepared: Option<PathBuf>,
    origin: Origin,
) -> Result<Created> {
    create_with(fs, dir, sequence, first_index, prepared, origin, None, true)
}

/// Like [`create`], but the header is not synced: a roll leaves that, and
/// the directory fsync, to the next sync round. A crash may then leave the
/// segment with a torn header (recovery's "torn creation") or its frames in
/// a prepared file that was never renamed (not adopted: see
/// [`pristine_len`]).
pub fn create_unsynced(
    fs: &dyn FileSystem,
    dir: &Path,
    sequence: u64,
    first_index: u64,
    prepared: Option<PathBuf>,
    origin: Origin,
) -> Result<Created> {
    create_with(
        fs,
        dir,
        sequence,
        first_index,
        prepared,
        origin,
        None,
        false,
    )
}

/// Creates segment `sequence` holding its header and `first_write` (the
/// marker write that opens a cut or a reset, already sealed for this
/// segment), both synced *before* the file gets its name: under its
/// segment name the file never exists without that write. The file is the
/// prepared one when given, else a new file under a prepared file's name
/// (which recovery removes, since it does not hold only zeros). The caller
/// syncs the directory.
pub fn create_opened(
    fs: &dyn FileSystem,
    dir: &Path,
    sequence: u64,
    first_index: u64,
    prepared: Option<PathBuf>,
    origin: Origin,
    first_write: &[u8],
) -> Result<Created> {
    create_with(
        fs,
        dir,
        sequence,
        first_index,
        prepared,
        origin,
        Some(first_write),
        true,
    )
}

/// The length of the prepared file `path` if it holds only zeros (it was
/// never rolled into); `None` if it holds anything else or cannot be read.
/// A prepared file a roll took and renamed may keep its old name after a
/// crash (the rename was not synced) with a header and frames in it:
/// reusing it would put stale frames behind new data.
pub fn pristine_len(fs: &dyn FileSystem, path: &Path) -> Option<u64> {
    let file = open(fs, path).ok()?;
    let len = file.len().ok()?;
    zeros_from(&*file, 0, len).then_some(len)
}

/// Whether every byte of `file` from `offset` to `end` reads as zero (a read
/// error counts as no). Reads 1 MiB at a time at most.
pub(crate) fn zeros_from(file: &dyn FileHandle, offset: u64, end: u64) -> bool {
    let mut buf = vec![0u8; end.saturating_sub(offset).min(1 << 20) as usize];
    let mut at = offset;
    while at < end {
        let n = (end - at).min(buf.len() as u64) as usize;
        if file.read_exact_at(&mut buf[..n], at).is_err() || buf[..n].iter().any(|&b| b != 0) {
            return false;
        }
        at += n as u64;
    }
    true
}

#[allow(clippy::too_many_arguments)]
fn create_with(
    fs: &dyn FileSystem,
    dir: &Path,
    sequence: u64,
    first_index: u64,
    prepared: Option<PathBuf>,
    origin: Origin,
    first_write: Option<&[u8]>,
    sync: bool,
) -> Result<Created> {
    let path = dir.join(file_name(sequence, first_index));
    let (file, preallocated, from) = match prepared {
        // A first write goes in before the file has its name: under a
        // prepared file's name, made here when none was prepared.
        None if first_write.is_some() => {
            let temp = prepared_name(dir, ON_THE_SPOT | sequence);
            let file = fs
                .create(&temp)
                .map_err(|e| Error::io("create segment", &temp, e))?;
            (file, 0, Some(temp))
        }
        Some(prep) => {
            let file = open(fs, &prep)?;
            let len = file
                .len()
                .map_err(|e| Error::io("stat prepared segment", &prep, e))?;
            (file, len, Some(prep))
        }
        None => {
            let file = fs
                .create_new(&path)
                .map_err(|e| Error::io("create segment", &path, e))?;
            (file, 0, None)
        }
    };
    let mut buf = Vec::with_capacity(64 + first_write.map_or(0, <[u8]>::len));
    let len = encode_header(&mut buf, sequence, first_index, preallocated, origin);
    if let Some(w) = first_write {
        buf.extend_from_slice(w);
    }
    let at = from.as_deref().unwrap_or(&path);
    // A file made here goes on failure; a prepared file that was written
    // to is no longer pristine, and the next open removes it.
    let undo = |e| {
        match &from {
            None => {
                let _ = fs.remove(&path);
            }
            Some(temp) if first_write.is_some() => {
                let _ = fs.remove(temp);
            }
            Some(_) => {}
        }
        e
    };
    file.write_all_at(&buf, 0)
        .map_err(|e| undo(Error::io("write segment header", at, e)))?;
    if sync {
        file.sync_data()
            .map_err(|e| undo(Error::io("fdatasync", at, e)))?;
    }
    if let Some(prep) = &from {
        fs.rename(prep, &path)
            .map_err(|e| undo(Error::io("rename prepared segment", prep, e)))?;
    }
    Ok(Created {
        file,
        path,
        header_len: len as u64,
        preallocated,
    })
}

/// The path of prepared file `n` in `dir`: `{n:016x}.prep`.
pub(crate) fn prepared_name(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016x}.{PREPARED_EXTENSION}"))
}

/// Prepares a segment file of `len` bytes for later use by [`create`]:
/// `dir/{n:016x}.prep`, space allocated with `fallocate` (so that appends
/// into it never change the file's size and `fdatasync` has no size to
/// write) and synced. Returns its path.
pub fn prepare(fs: &dyn FileSystem, dir: &Path, n: u64, len: u64) -> Result<PathBuf> {
    make_prepared(fs, dir, n, len, |_, _| Ok(()))
}

/// Creates `dir/{n:016x}.prep`, allocates `len` bytes, lets `fill` write
/// into it, then syncs it once; on any failure the file is removed.
fn make_prepared(
    fs: &dyn FileSystem,
    dir: &Path,
    n: u64,
    len: u64,
    fill: impl FnOnce(&dyn FileHandle, &Path) -> Result<()>,
) -> Result<PathBuf> {
    let path = prepared_name(dir, n);
    let file = fs
        .create(&path)
        .map_err(|e| Error::io("create prepared segment", &path, e))?;
    let res = file
        .allocate(0, len)
        .map_err(|e| Error::io("fallocate", &path, e))
        .and_then(|()| fill(&*file, &path))
        .and_then(|()| {
            file.sync_data()
                .map_err(|e| Error::io("fdatasync", &path, e))
        });
    if let Err(e) = res {
        let _ = fs.remove(&path);
        return Err(e);
    }
    Ok(path)
}

/// The size of each write of zeros by [`prepare_zeroed`]: one page.
///
/// Since Linux 6.16 ext4 caches a file in large folios, as large as the
/// write that created them, and the zeroed pages stay cached for the
/// appends that follow. Every small append then walks all the buffer heads
/// of the folio it lands in, and every `fdatasync` writes back a whole
/// folio: measured on the development machine, a 290 B `pwrite` costs
/// 2.4 µs into a file zero-filled 1 MiB at a time against 0.95 µs with
/// 4 KiB writes, and W5 (pipelined submits) ran 2.4× faster. 16 KiB and
/// 64 KiB writes fell in between. The price is more calls on the
/// preparer's thread (≈ 55 ms against ≈ 10 ms per 64 MiB).
pub(super) const ZERO_CHUNK: usize = 4 << 10;

/// Prepares a segment file of `len` bytes as [`prepare`] does, then writes
/// zeros over all of it (4 KiB at a time, see `ZERO_CHUNK`) and syncs them:
/// appends into it then overwrite written, cached blocks, so their
/// `fdatasync` commits no extent conversion. The pages stay in the page
/// cache (an append into an uncached page would read it first). Costs
/// `len` bytes of writes: for the background preparer and a new log's
/// first segment, never for a roll on the writer's thread.
pub fn prepare_zeroed(fs: &dyn FileSystem, dir: &Path, n: u64, len: u64) -> Result<PathBuf> {
    prepare_zeroed_until(fs, dir, n, len, &|| false)
}

/// [`prepare_zeroed`], giving up the zero-fill between chunks once `stop`
/// says so (the log is being closed). The file is kept, allocated, partly
/// zeroed and synced: still a valid prepared segment, since unwritten
/// space reads as zeros too. One `fdatasync` covers the allocation and the
/// zeros.
pub(crate) fn prepare_zeroed_until(
    fs: &dyn FileSystem,
    dir: &Path,
    n: u64,
    len: u64,
    stop: &dyn Fn() -> bool,
) -> Result<PathBuf> {
    make_prepared(fs, dir, n, len, |file, path| {
        // No larger than the segment: small segments get small buffers.
        let zeros = vec![0u8; (ZERO_CHUNK as u64).min(len) as usize];
        let mut at = 0;
        while at < len && !stop() {
            let k = (len - at).min(zeros.len() as u64);
            // `k <= zeros.len()`, so the slice is in range.
            let chunk = zeros.get(..k as usize).unwrap_or(&zeros);
            file.write_all_at(chunk, at)
                .map_err(|e| Error::io("zero-fill prepared segment", path, e))?;
            at += k;
        }
        Ok(())
    })
}

/// Lists the prepared segment files of `dir`.
pub fn list_prepared(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = fs
        .list(dir)
        .map_err(|e| Error::io("read directory", dir, e))?
        .into_iter()
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(PREPARED_EXTENSION))
        .collect();
    out.sort();
    Ok(out)
}
