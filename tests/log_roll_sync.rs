//! A roll does not sync the segment it leaves on the writer's thread: under
//! a relaxed sync policy that old segment's unsynced writes are made
//! durable by the next sync round or by its sealer (in the background),
//! and a sealer whose `fdatasync` fails poisons the log. Nor does it sync
//! the new segment's header or the directory: the next round does.

mod common;
#[path = "common/fs_sim.rs"]
mod fs_sim;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::batch;
use fs_sim::{Fault, FaultFs, Faults, Op, Scope, SimFs};
use raftwal::fs::FileSystem;
use raftwal::{Error, Log, Options, Preallocate, SyncPolicy};

const DIR: &str = "/sim/log";

fn opts(fs: Arc<dyn FileSystem>, sync: SyncPolicy) -> Options {
    // No preallocation: the only background syncs are the sealers'.
    Options::default()
        .segment_size(4096)
        .preallocate(Preallocate::None)
        .sync(sync)
        .file_system(fs)
}

/// Appends batches of 4 entries until the log has `segments` segments;
/// returns the last index.
fn fill(log: &Log, segments: usize) -> u64 {
    let mut next = log.last_index() + 1;
    while log.segments().len() < segments {
        log.append(&batch(next, 4)).unwrap();
        next += 4;
    }
    next - 1
}

/// Waits (bounded) until `done` holds; false when it never did.
fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    done()
}

fn count(files: &[PathBuf], path: &PathBuf) -> usize {
    files.iter().filter(|p| *p == path).count()
}

#[test]
fn a_roll_under_manual_syncs_nothing_old_on_the_writers_thread() {
    let sim = SimFs::new();
    let (ffs, faults) = FaultFs::new(sim.handle());
    let log = Log::open(DIR, opts(ffs.handle(), SyncPolicy::Manual)).unwrap();
    let before = faults.synced_files(Scope::Foreground).len();
    let dir_before = faults.count(Op::SyncDir, Scope::Foreground);
    let last = fill(&log, 5);
    let segs: Vec<PathBuf> = log.segments().into_iter().map(|s| s.0).collect();
    let fg = faults.synced_files(Scope::Foreground)[before..].to_vec();
    // The writer synced nothing at the rolls: not the old segment it left,
    // not the new one's header, not the directory (the next sync round
    // does all of that).
    assert!(fg.is_empty(), "foreground syncs: {fg:?}");
    assert_eq!(
        faults.count(Op::SyncDir, Scope::Foreground),
        dir_before,
        "{:?}",
        faults.log()
    );
    // Nothing is durable yet as far as the log knows (the sealers may have
    // synced some old segments, never the active one).
    let s = log.stats();
    assert!(s.durable_writes < s.writes, "{s:?}");
    // One sync makes everything durable: the old segments still pending,
    // oldest first, the directory, then the active one (with its header).
    log.sync().unwrap();
    let fg = faults.synced_files(Scope::Foreground)[before..].to_vec();
    assert_eq!(fg.last(), segs.last(), "{fg:?}");
    // The directory was synced once by that round, unless the sealers
    // (which sync it before writing a footer) had already done so.
    let fg_dirs = faults.count(Op::SyncDir, Scope::Foreground) - dir_before;
    let bg_dirs = faults.count(Op::SyncDir, Scope::Background);
    assert!(
        fg_dirs <= 1 && fg_dirs + bg_dirs >= 1,
        "{fg_dirs} {bg_dirs} {:?}",
        faults.log()
    );
    let s = log.stats();
    assert_eq!(s.durable_writes, s.writes);
    assert_eq!(log.last_index(), last);
    // The sealers synced every old segment's data in the background.
    assert!(wait_for(|| {
        let bg = faults.synced_files(Scope::Background);
        segs[..segs.len() - 1].iter().all(|p| count(&bg, p) >= 1)
    }));
    drop(log);
    let log = Log::open(DIR, opts(sim.handle(), SyncPolicy::Manual)).unwrap();
    assert_eq!(log.last_index(), last);
    assert!(log.recovery_report().repairs.is_empty());
}

#[test]
fn a_roll_under_always_leaves_nothing_pending() {
    let sim = SimFs::new();
    let (ffs, faults) = FaultFs::new(sim.handle());
    let log = Log::open(DIR, opts(ffs.handle(), SyncPolicy::Always)).unwrap();
    let (syncs, dirs) = (
        faults.count(Op::Sync, Scope::Foreground),
        faults.count(Op::SyncDir, Scope::Foreground),
    );
    let writes_before = log.stats().writes;
    fill(&log, 4);
    // Every write was synced when it returned, so a roll leaves nothing
    // unsynced behind it and every write so far is durable.
    let s = log.stats();
    assert_eq!(s.durable_writes, s.writes);
    // One fdatasync per write, none more per roll (the first write's sync
    // covers the new segment's header), and one directory fsync per roll
    // (in the round after it).
    assert_eq!(
        faults.count(Op::Sync, Scope::Foreground) - syncs,
        s.writes - writes_before,
        "{:?}",
        faults.log()
    );
    assert_eq!(
        faults.count(Op::SyncDir, Scope::Foreground) - dirs,
        3,
        "{:?}",
        faults.log()
    );
    drop(log);
    // The sealers had no data to sync first: each synced its segment once,
    // after writing the footer.
    let bg = faults.synced_files(Scope::Background);
    let mut sorted = bg.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), bg.len(), "{bg:?}");
}

fn poisoned(e: &Error) -> bool {
    matches!(e, Error::Poisoned { .. })
}

fn sealer_sync_fails(faults: &Faults) -> bool {
    faults.injected_of(Op::Sync) == 1
}

#[test]
fn a_failed_sync_in_the_sealer_poisons_the_log() {
    let sim = SimFs::new();
    let (ffs, faults) = FaultFs::new(sim.handle());
    faults.fail_nth(Op::Sync, 1, Fault::Eio, Scope::Background);
    let log = Log::open(DIR, opts(ffs.handle(), SyncPolicy::Manual)).unwrap();
    fill(&log, 2);
    let old = log.segments()[0].0.clone();
    // The sealer's first sync is the old segment's data: it fails.
    assert!(
        wait_for(|| sealer_sync_fails(&faults)),
        "{:?}",
        faults.log()
    );
    assert!(
        faults.log()[0].contains(old.to_str().unwrap()),
        "{:?}",
        faults.log()
    );
    // The writes after the roll may have been counted on that sync: the log
    // refuses everything until it is reopened.
    assert!(wait_for(|| log.sync().is_err_and(|e| poisoned(&e))));
    let next = log.last_index() + 1;
    let e = log.append(&batch(next, 1)).unwrap_err();
    assert!(poisoned(&e), "{e}");
    drop(log);
    // No footer was written over data that is not known durable.
    let sealed = sim.read(&old).unwrap();
    assert!(!ends_with_trailer(&sealed), "the old segment was sealed");
    // Reopened, the log holds every entry (nothing was lost on this disk).
    faults.clear();
    let log = Log::open(DIR, opts(ffs.handle(), SyncPolicy::Manual)).unwrap();
    assert_eq!(log.last_index(), next - 1);
}

/// Whether a segment file's last 23 bytes are a trailer frame (type 6).
fn ends_with_trailer(bytes: &[u8]) -> bool {
    bytes.len() >= 23 && bytes[bytes.len() - 23] & 0x3f == 6
}

#[test]
fn a_failed_footer_write_does_not_poison() {
    let sim = SimFs::new();
    let (ffs, faults) = FaultFs::new(sim.handle());
    // Writes on background threads are the sealers' footers.
    faults.fail_from(Op::Write, 1, Fault::Eio, Scope::Background);
    let log = Log::open(DIR, opts(ffs.handle(), SyncPolicy::Manual)).unwrap();
    let last = fill(&log, 3);
    assert!(wait_for(|| faults.injected_of(Op::Write) >= 1));
    // The data was synced before the footer write failed: nothing is lost
    // and the log goes on.
    log.sync().unwrap();
    let next = last + 1;
    log.append(&batch(next, 1)).unwrap();
    log.sync().unwrap();
    drop(log);
    faults.clear();
    let log = Log::open(DIR, opts(ffs.handle(), SyncPolicy::Manual)).unwrap();
    assert_eq!(log.last_index(), next);
}
