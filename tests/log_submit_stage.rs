//! Staged submits: while the background syncer of `Log::submit` runs, a
//! small submitted batch is staged in memory and written out by the next
//! sync round. These tests hold that syncer's `fdatasync` at a gate, so that
//! batches submitted meanwhile are certainly staged, and check that they
//! are not in the file yet, that readers see them all the same (one
//! `pwrite` writes them out), that other writes keep the file's order,
//! that a failure to write them out poisons the log, and that nothing
//! issued is lost on a clean close.

#[path = "common/fs_sim.rs"]
mod fs_sim;

use std::any::Any;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fs_sim::{Gate, Held};
use raftwal::fs::{FileHandle, FileSystem, StdFileSystem};
use raftwal::{Error, Log, Options, Preallocate, SyncPolicy, Ticket, WriteBatch};

/// The thread whose `sync_data` the gate holds: the pipeline syncer.
const SYNCER: &str = "raftwal-pipeline";

/// What the tests control and observe of the file system.
#[derive(Debug, Default)]
struct Panel {
    /// Holds `sync_data` on the pipeline syncer's thread while closed.
    gate: Gate,
    /// `pwrite`s to segment files (not prepared ones).
    writes: AtomicU64,
    /// Every `pwrite` fails from now on.
    fail_writes: AtomicBool,
    /// The next `pwrite` to a segment waits (at most a minute) for
    /// `release`, then fails; `in_write` tells it is waiting.
    hold_and_fail: AtomicBool,
    in_write: AtomicBool,
    release: AtomicBool,
}

impl Panel {
    fn close(&self) {
        self.gate.hold(Held::Sync, SYNCER);
    }

    fn open(&self) {
        self.gate.release();
    }

    /// Waits (at most a minute) until a sync is held at the gate.
    fn wait_for_a_held_sync(&self) {
        assert!(
            self.gate
                .wait_for_waiting(Held::Sync, 1, Duration::from_secs(60)),
            "no sync reached the gate"
        );
    }

    fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
struct GateFs {
    inner: StdFileSystem,
    panel: Arc<Panel>,
}

#[derive(Debug)]
struct GateFile {
    inner: Arc<dyn FileHandle>,
    panel: Arc<Panel>,
    path: PathBuf,
    /// A segment file (its writes are counted).
    segment: bool,
}

fn is_segment(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()) == Some(raftwal::tools::segment::EXTENSION)
}

impl GateFs {
    fn wrap(
        &self,
        path: &Path,
        f: io::Result<Arc<dyn FileHandle>>,
    ) -> io::Result<Arc<dyn FileHandle>> {
        Ok(Arc::new(GateFile {
            inner: f?,
            panel: Arc::clone(&self.panel),
            path: path.to_path_buf(),
            segment: is_segment(path),
        }))
    }
}

impl FileSystem for GateFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        self.wrap(path, self.inner.create_new(path))
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        self.wrap(path, self.inner.create(path))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        self.wrap(path, self.inner.open(path))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.list(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        self.inner.lock(path)
    }
}

impl FileHandle for GateFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.segment && self.panel.hold_and_fail.swap(false, Ordering::SeqCst) {
            self.panel.in_write.store(true, Ordering::SeqCst);
            wait_until(&self.panel.release);
            return Err(io::Error::other("injected write failure, after a wait"));
        }
        if self.panel.fail_writes.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected write failure"));
        }
        if self.segment {
            self.panel.writes.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.write_all_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        self.inner.allocate(offset, len)
    }
    fn sync_data(&self) -> io::Result<()> {
        // Bounded (`fs_sim::GATE_TIMEOUT`), so that a failing test cannot
        // hang its log's drop (which joins the thread held here).
        self.panel.gate.pass(Held::Sync, &self.path)?;
        self.inner.sync_data()
    }
}

/// Waits (at most a minute) until `flag` is set.
fn wait_until(flag: &AtomicBool) {
    let started = std::time::Instant::now();
    while !flag.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn options(panel: &Arc<Panel>) -> Options {
    let fs = GateFs {
        inner: StdFileSystem,
        panel: Arc::clone(panel),
    };
    Options::default()
        .sync(SyncPolicy::Manual)
        .preallocate(Preallocate::None)
        .file_system(Arc::new(fs))
}

fn data(index: u64) -> Vec<u8> {
    format!("entry {index} ")
        .repeat(1 + index as usize % 5)
        .into_bytes()
}

fn submit(log: &Log, lo: u64, hi: u64) -> Ticket {
    let mut b = WriteBatch::new();
    for i in lo..hi {
        b.push(i, 1, &data(i)).unwrap();
    }
    log.submit(&mut b).unwrap()
}

fn assert_entries(log: &Log, lo: u64, hi: u64) {
    let got = log.entries(lo, hi, None).unwrap();
    assert_eq!(got.len() as u64, hi - lo);
    for e in got {
        assert_eq!(e.data, data(e.index), "entry {}", e.index);
    }
}

/// Opens the gate when dropped: declared after the log, it is dropped
/// before it, so a failing assertion does not leave the log's drop waiting
/// for the held sync.
struct OpenOnDrop(Arc<Panel>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// Opens a log in a new directory whose background syncer runs and holds
/// its first round at the gate; entry 1 is written (the submit that
/// started it). Returns the directory, the gate's panel and the log.
fn log_with_a_held_round() -> (tempfile::TempDir, Arc<Panel>, Log) {
    let dir = tempfile::tempdir().unwrap();
    let panel = Arc::new(Panel::default());
    let log = Log::open(dir.path(), options(&panel)).unwrap();
    panel.close();
    let _ = submit(&log, 1, 2);
    panel.wait_for_a_held_sync();
    (dir, panel, log)
}

#[test]
fn staged_batches_are_read_back_before_any_sync() {
    let (dir, panel, log) = log_with_a_held_round();
    let _gate = OpenOnDrop(Arc::clone(&panel));
    let before = panel.writes();
    let mut tickets = Vec::new();
    for k in 0..10 {
        tickets.push(submit(&log, 2 + 3 * k, 5 + 3 * k));
    }
    assert_eq!(
        panel.writes(),
        before,
        "small submits are staged, not written"
    );
    assert_eq!(log.last_index(), 31);
    assert_eq!(log.get_entry(7).unwrap().data, data(7));
    assert_eq!(
        panel.writes(),
        before + 1,
        "one pwrite wrote every staged batch out"
    );
    assert_entries(&log, 1, 32);
    assert_eq!(panel.writes(), before + 1);
    // Staged again, read through a range this time.
    let last = submit(&log, 32, 40);
    assert_entries(&log, 30, 40);
    assert_eq!(panel.writes(), before + 2);
    assert!(!last.is_durable());
    panel.open();
    last.wait().unwrap();
    assert!(tickets.iter().all(Ticket::is_durable));
    drop(log);
    let log = Log::open(dir.path(), options(&panel)).unwrap();
    assert_eq!(log.last_index(), 39);
    assert_entries(&log, 1, 40);
}

#[test]
fn other_writes_write_staged_batches_out_first() {
    let (dir, panel, log) = log_with_a_held_round();
    let _gate = OpenOnDrop(Arc::clone(&panel));
    let before = panel.writes();
    let _ = submit(&log, 2, 6);
    let _ = submit(&log, 6, 9);
    // A direct write (not a submit) goes after them in the file.
    let mut b = WriteBatch::new();
    b.push(9, 1, &data(9)).unwrap();
    log.write(&mut b).unwrap();
    assert_eq!(
        panel.writes(),
        before + 2,
        "the staged batches, then the write"
    );
    // A cut writes a marker: the batches staged before it go first.
    let _ = submit(&log, 10, 14);
    log.truncate_from_index(12).unwrap();
    let _ = submit(&log, 12, 16);
    assert_entries(&log, 1, 16);
    panel.open();
    log.sync().unwrap();
    drop(log);
    let log = Log::open(dir.path(), options(&panel)).unwrap();
    assert!(log.recovery_report().repairs.is_empty());
    assert_eq!(log.last_index(), 15);
    assert_entries(&log, 1, 16);
}

#[test]
fn closing_the_log_keeps_staged_batches() {
    let (dir, panel, log) = log_with_a_held_round();
    let _gate = OpenOnDrop(Arc::clone(&panel));
    let _ = submit(&log, 2, 20);
    let t = submit(&log, 20, 25);
    assert!(!t.is_durable());
    panel.open();
    // Not waited for: the drop makes them durable.
    drop(log);
    assert!(
        t.is_durable(),
        "a ticket outlives its log and tells the truth"
    );
    let log = Log::open(dir.path(), options(&panel)).unwrap();
    assert_eq!(log.last_index(), 24);
    assert_entries(&log, 1, 25);
}

#[test]
fn a_failed_write_out_poisons_the_log() {
    let (dir, panel, log) = log_with_a_held_round();
    let _gate = OpenOnDrop(Arc::clone(&panel));
    let staged = submit(&log, 2, 6);
    panel.fail_writes.store(true, Ordering::SeqCst);
    // The read that needs them tries to write them out, and fails.
    match log.get_entry(3) {
        Err(Error::Io { .. }) => {}
        other => panic!("expected the write-out's I/O error, got {other:?}"),
    }
    // From then on: poisoned, for reads of them, writes and the ticket.
    assert!(matches!(log.get_entry(4), Err(Error::Poisoned { .. })));
    let mut b = WriteBatch::new();
    b.push(6, 1, &data(6)).unwrap();
    assert!(matches!(log.submit(&mut b), Err(Error::Poisoned { .. })));
    panel.fail_writes.store(false, Ordering::SeqCst);
    panel.open();
    assert!(matches!(staged.wait(), Err(Error::Poisoned { .. })));
    // The entry written before them is still there to read.
    assert_eq!(log.get_entry(1).unwrap().data, data(1));
    drop(log);
    // Reopened: what reached the disk, and the log takes writes again.
    let log = Log::open(dir.path(), options(&panel)).unwrap();
    assert_eq!(log.last_index(), 1);
    assert_entries(&log, 1, 2);
    submit(&log, 2, 4).wait().unwrap();
    assert_entries(&log, 1, 4);
}

/// A reader's write-out fails while the syncer's next round waits its turn
/// to write out the same bytes: that round must not find them gone and
/// call them durable.
#[test]
fn a_round_never_covers_batches_whose_write_out_failed() {
    let (dir, panel, log) = log_with_a_held_round();
    let log = Arc::new(log);
    let _gate = OpenOnDrop(Arc::clone(&panel));
    let staged = submit(&log, 2, 6);
    panel.hold_and_fail.store(true, Ordering::SeqCst);
    let reader = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || log.get_entry(3))
    };
    wait_until(&panel.in_write);
    // The held round ends; the syncer starts the next one (the submit
    // asked for it), which waits behind the reader's write-out.
    panel.open();
    std::thread::sleep(Duration::from_millis(50));
    panel.release.store(true, Ordering::SeqCst);
    assert!(matches!(reader.join().unwrap(), Err(Error::Io { .. })));
    // Dropping the log joins the syncer: its round is over.
    drop(Arc::try_unwrap(log).expect("the reader is done"));
    assert!(matches!(staged.wait(), Err(Error::Poisoned { .. })));
    assert!(!staged.is_durable(), "a batch that never reached the file");
    let log = Log::open(dir.path(), options(&panel)).unwrap();
    assert_eq!(log.last_index(), 1);
}

/// Rolls, a compaction, a cut below the active segment and a reset, each
/// with batches staged, in every preallocation mode: reopened, the log
/// holds exactly what was written, with nothing to repair.
#[test]
fn staged_batches_across_rolls_compaction_cuts_and_resets() {
    for mode in [
        Preallocate::None,
        Preallocate::Allocate,
        Preallocate::ZeroFill,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let panel = Arc::new(Panel::default());
        let o = || options(&panel).segment_size(4096).preallocate(mode);
        let log = Log::open(dir.path(), o()).unwrap();
        panel.close();
        let _ = submit(&log, 1, 2);
        panel.wait_for_a_held_sync();
        let gate = OpenOnDrop(Arc::clone(&panel));
        // With the round held, everything below is staged, and the rolls
        // (4 KiB segments) write it out.
        let before = log.stats().segments;
        let mut next = 2;
        for _ in 0..100 {
            let _ = submit(&log, next, next + 3);
            next += 3;
        }
        assert!(log.stats().segments > before + 2, "{mode:?}: it rolled");
        drop(gate);
        log.compact(20).unwrap();
        for _ in 0..3 {
            let _ = submit(&log, next, next + 3);
            next += 3;
        }
        let cut = 60;
        let mut b = WriteBatch::new();
        b.truncate_from(cut);
        b.push(cut, 1, &data(cut)).unwrap();
        log.write(&mut b).unwrap();
        next = cut + 1;
        assert_entries(&log, 20, next);
        for _ in 0..10 {
            let _ = submit(&log, next, next + 3);
            next += 3;
        }
        let t = submit(&log, next, next + 3);
        next += 3;
        drop(log);
        assert!(t.is_durable(), "{mode:?}");
        let log = Log::open(dir.path(), o()).unwrap();
        assert!(log.recovery_report().repairs.is_empty(), "{mode:?}");
        assert_eq!(
            (log.first_index(), log.last_index()),
            (20, next - 1),
            "{mode:?}"
        );
        assert_entries(&log, 20, next);
        for _ in 0..5 {
            let _ = submit(&log, next, next + 3);
            next += 3;
        }
        log.reset(1000, 1).unwrap();
        let _ = submit(&log, 1000, 1001);
        let t = submit(&log, 1001, 1002);
        drop(log);
        assert!(t.is_durable(), "{mode:?}");
        let log = Log::open(dir.path(), o()).unwrap();
        assert_eq!(
            (log.first_index(), log.last_index()),
            (1000, 1001),
            "{mode:?}"
        );
        assert_entries(&log, 1000, 1002);
    }
}

/// When the disk falls behind and more than 1 MiB is staged, the writer
/// writes the staged batches out itself rather than staging without bound.
#[test]
fn the_writer_writes_out_what_piles_up() {
    let (dir, panel, log) = log_with_a_held_round();
    let _gate = OpenOnDrop(Arc::clone(&panel));
    let before = panel.writes();
    let mut next = 2;
    let mut staged_bytes = 0;
    // Past 1 MiB of frames (each entry's frame is larger than its data).
    while staged_bytes < (1 << 20) + (64 << 10) {
        let _ = submit(&log, next, next + 16);
        staged_bytes += (next..next + 16).map(|i| data(i).len()).sum::<usize>();
        next += 16;
    }
    let written = panel.writes() - before;
    assert!(
        written >= 1,
        "the writer wrote the pile out, with no read and no sync"
    );
    assert!(written <= 2, "in few writes: {written}");
    assert_entries(&log, 1, next);
    panel.open();
    log.sync().unwrap();
    drop(log);
    let log = Log::open(dir.path(), options(&panel)).unwrap();
    assert_eq!(log.last_index(), next - 1);
}
