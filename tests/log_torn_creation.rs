//! A torn creation: a roll writes the new segment's header and renames the
//! prepared file without syncing either (the next sync round does), so a
//! crash can lose the header and keep frames written behind it. When no
//! write in that segment or a later one is marked `PRIOR_SYNCED`, nothing
//! in them was acknowledged: recovery removes them (and `inspect` calls it
//! a torn tail). When one is, the header was durable before that write was
//! issued: damage, refused under the default mode.

mod common;

use std::path::{Path, PathBuf};

use common::{batch, frames, segment_files, unseal, TY_HEADER, TY_MARKER};
use raftwal::tools::inspect::{self, ProblemKind};
use raftwal::{Error, Log, Options, Preallocate, RecoveryMode, SyncPolicy};

fn opts(preallocate: Preallocate) -> Options {
    Options::default()
        .segment_size(4096)
        .preallocate(preallocate)
        .sync(SyncPolicy::Manual)
}

/// A log of three segments written under `Manual` (two writes in the last
/// one); with `sync_in_third`, a `sync()` between the third segment's two
/// writes (so the second one is marked `PRIOR_SYNCED`). Returns the
/// directory, the segment paths, and each segment's first index.
fn three_segments(
    preallocate: Preallocate,
    sync_in_third: bool,
) -> (tempfile::TempDir, Vec<PathBuf>, Vec<u64>) {
    segments(3, preallocate, sync_in_third)
}

/// As [`three_segments`], with `n` segments.
fn segments(
    n: usize,
    preallocate: Preallocate,
    sync_in_last: bool,
) -> (tempfile::TempDir, Vec<PathBuf>, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts(preallocate)).unwrap();
    let mut next = 1;
    while log.segments().len() < n {
        log.append(&batch(next, 2)).unwrap();
        next += 2;
    }
    if sync_in_last {
        log.sync().unwrap();
    }
    log.append(&batch(next, 2)).unwrap();
    let firsts: Vec<u64> = log.segments().iter().map(|s| s.1).collect();
    drop(log);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), n);
    // As if the crash came before the sealers finished.
    for f in &files[..n - 1] {
        unseal(f);
    }
    (dir, files, firsts)
}

/// Zeroes the header frame's first bytes: what a crash that lost the
/// header's write (and kept later ones) leaves.
fn lose_header(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    b[..16].fill(0);
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_torn_header_with_frames_and_nothing_synced_is_a_torn_creation() {
    for preallocate in [Preallocate::None, Preallocate::ZeroFill] {
        for torn in [1, 2] {
            let (dir, files, firsts) = three_segments(preallocate, false);
            lose_header(&files[torn]);
            let scan = inspect::scan_dir(dir.path()).unwrap();
            assert_eq!(
                scan.problems[0].kind,
                ProblemKind::TornTail,
                "{:?}",
                scan.problems
            );
            assert_eq!(scan.problems[0].path, files[torn]);
            let log = Log::open(dir.path(), opts(preallocate)).unwrap();
            // That segment and every later one are gone; the one before it
            // goes on as the last.
            assert_eq!(log.last_index(), firsts[torn] - 1, "{preallocate:?} {torn}");
            // Newest first: a crash in between leaves the older ones,
            // which the next open removes the same way. The torn one, whose
            // header does not parse, is set aside, never deleted.
            let mut gone = files[torn + 1..].to_vec();
            gone.reverse();
            let report = log.recovery_report();
            assert_eq!(report.segments_removed, gone);
            let aside = PathBuf::from(format!("{}.unreadable", files[torn].display()));
            assert_eq!(report.set_aside, vec![(files[torn].clone(), aside.clone())]);
            assert!(aside.exists() && !files[torn].exists());
            let next = log.last_index() + 1;
            log.append(&batch(next, 3)).unwrap();
            log.sync().unwrap();
            drop(log);
            let log = Log::open(dir.path(), opts(preallocate)).unwrap();
            assert_eq!(log.last_index(), next + 2);
            assert!(log.recovery_report().repairs.is_empty());
            // Not under AbsoluteConsistency: a repair, never silent.
            drop(log);
            let (dir, files, _) = three_segments(preallocate, false);
            lose_header(&files[torn]);
            let strict = opts(preallocate).recovery_mode(RecoveryMode::AbsoluteConsistency);
            let e = Log::open(dir.path(), strict).unwrap_err();
            assert!(matches!(e, Error::Corruption { .. }), "{e}");
        }
    }
}

#[test]
fn a_torn_header_before_a_synced_write_is_damage() {
    for preallocate in [Preallocate::None, Preallocate::ZeroFill] {
        // The synced write is in the torn segment itself, or after it.
        for torn in [1, 2] {
            let (dir, files, _) = three_segments(preallocate, true);
            lose_header(&files[torn]);
            let scan = inspect::scan_dir(dir.path()).unwrap();
            assert_eq!(
                scan.problems[0].kind,
                ProblemKind::Corruption,
                "{:?}",
                scan.problems
            );
            let e = Log::open(dir.path(), opts(preallocate)).unwrap_err();
            assert!(matches!(e, Error::Corruption { .. }), "{e}");
        }
    }
}

/// A roll renames the prepared file it takes without syncing the
/// directory: after a crash the file may still carry its prepared name,
/// with the header and frames written into it. Such a file is never
/// adopted (its stale frames would sit behind new data); it is removed.
#[test]
fn a_prepared_file_holding_data_is_not_adopted() {
    for name in ["0000000000000007.prep", "8000000000000009.prep"] {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(name);
        let mut bytes = vec![0u8; 4096];
        // Past where the log's data will end: an adopted file would keep
        // them in the new segment.
        bytes[3990..4090].fill(0xAB);
        std::fs::write(&stale, &bytes).unwrap();
        let log = Log::open(dir.path(), opts(Preallocate::ZeroFill)).unwrap();
        let mut next = 1;
        while log.segments().len() < 2 {
            log.append(&batch(next, 2)).unwrap();
            next += 2;
        }
        let segs: Vec<PathBuf> = log.segments().into_iter().map(|s| s.0).collect();
        drop(log);
        assert!(!stale.exists(), "{name} was kept");
        for s in &segs {
            let b = std::fs::read(s).unwrap();
            assert!(
                !b.windows(100).any(|w| w.iter().all(|&x| x == 0xAB)),
                "{s:?}"
            );
        }
        let log = Log::open(dir.path(), opts(Preallocate::ZeroFill)).unwrap();
        assert_eq!(log.last_index(), next - 1);
        assert!(log.recovery_report().repairs.is_empty());
    }
}

/// A file whose header does not parse is set aside wherever recovery meets
/// it, also among the files after a segment whose name a crash lost (those
/// go as a torn tail): raftwal cannot prove such a file is its own.
#[test]
fn an_unreadable_file_after_a_lost_name_is_set_aside_not_removed() {
    let (dir, files, firsts) = segments(4, Preallocate::ZeroFill, false);
    // The second segment's name was lost; the fourth lost its header.
    std::fs::remove_file(&files[1]).unwrap();
    lose_header(&files[3]);
    let log = Log::open(dir.path(), opts(Preallocate::ZeroFill)).unwrap();
    assert_eq!(log.last_index(), firsts[1] - 1);
    let report = log.recovery_report();
    assert_eq!(report.segments_removed, vec![files[2].clone()]);
    let aside = PathBuf::from(format!("{}.unreadable", files[3].display()));
    assert_eq!(report.set_aside, vec![(files[3].clone(), aside.clone())]);
    assert!(aside.exists() && !files[3].exists());
}

/// A cut below the active segment writes its new segment's opening marker
/// before the file gets its name: no crash tears it, and a cut's segment
/// without it is damage. `inspect` judges both as open does.
#[test]
fn a_cut_segment_without_its_opening_write_is_damage_for_inspect_and_open() {
    let cut_log = || {
        let (dir, _, firsts) = three_segments(Preallocate::ZeroFill, true);
        let log = Log::open(dir.path(), opts(Preallocate::ZeroFill)).unwrap();
        log.truncate_from_index(firsts[1] - 1).unwrap();
        drop(log);
        let newest = segment_files(dir.path()).pop().unwrap();
        let marker = frames(&newest)
            .into_iter()
            .find(|f| f.ty == TY_MARKER)
            .expect("the cut's opening marker");
        assert_eq!(frames(&newest)[0].ty, TY_HEADER);
        (dir, newest, marker)
    };
    let both_refuse = |dir: &Path| {
        let scan = inspect::scan_dir(dir).unwrap();
        assert!(
            scan.problems
                .iter()
                .any(|p| p.kind == ProblemKind::Corruption),
            "{:?}",
            scan.problems
        );
        let e = Log::open(dir, opts(Preallocate::ZeroFill)).unwrap_err();
        assert!(matches!(e, Error::Corruption { .. }), "{e}");
    };
    // The marker is gone (the file ends after its header).
    let (dir, newest, marker) = cut_log();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap();
    f.set_len(marker.offset).unwrap();
    drop(f);
    both_refuse(dir.path());
    // The marker's bytes are damaged: not a torn tail.
    let (dir, newest, marker) = cut_log();
    let mut b = std::fs::read(&newest).unwrap();
    b[(marker.offset + marker.len - 1) as usize] ^= 0xff;
    std::fs::write(&newest, b).unwrap();
    both_refuse(dir.path());
}
