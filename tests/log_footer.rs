//! Sealed segments carry a footer, so opening reads no payloads of them; a
//! missing, damaged or torn footer only means a full scan, with the same
//! result.

use std::os::unix::fs::FileExt;

use raftwal::{Entry, Error, Log, Options, SyncPolicy};

mod common;

fn data(i: u64) -> Vec<u8> {
    format!("payload-{i}-")
        .repeat(1 + (i % 7) as usize)
        .into_bytes()
}

fn opts() -> Options {
    Options::default().segment_size(8192)
}

/// Writes entries 1..=n (terms rising every 50) with a compaction, a cut and
/// a state, and returns the directory.
fn build(n: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    for chunk in (1..=n).collect::<Vec<_>>().chunks(10) {
        let es: Vec<Entry> = chunk
            .iter()
            .map(|&i| Entry::new(i, 1 + i / 50, data(i)))
            .collect();
        log.append(&es).unwrap();
    }
    log.set_state(&b"state-1"[..]).unwrap();
    log.compact(n / 4).unwrap();
    log.truncate_from_index(n - 5).unwrap();
    log.append(&[Entry::new(n - 5, 1 + n / 50, data(n - 5))])
        .unwrap();
    dir
}

fn observe(log: &Log) -> (u64, u64, u64, Option<Vec<u8>>, Vec<Entry>) {
    let (first, last) = (log.first_index(), log.last_index());
    (
        first,
        last,
        log.term(first - 1).unwrap(),
        log.state().map(|s| s.to_vec()),
        log.entries(first, last + 1, None).unwrap(),
    )
}

fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

#[test]
fn reopening_reads_footers_instead_of_payloads() {
    let dir = build(1000);
    let total: u64 = segment_files(dir.path())
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    let log = Log::open(dir.path(), opts()).unwrap();
    let r = log.recovery_report().clone();
    assert!(segment_files(dir.path()).len() >= 5);
    // Only the active segment is scanned; sealed ones cost their footers.
    assert!(
        r.bytes_scanned < total / 2,
        "scanned {} of {total}",
        r.bytes_scanned
    );
    let seen = observe(&log);
    assert_eq!(seen.1, 995);
    assert_eq!(seen.4.len() as u64, seen.1 - seen.0 + 1);
    for e in &seen.4 {
        assert_eq!(e.data, data(e.index));
    }
    assert_eq!(seen.3.as_deref(), Some(&b"state-1"[..]));
}

#[test]
fn a_damaged_footer_falls_back_to_a_full_scan_with_the_same_result() {
    let dir = build(600);
    let expected = observe(&Log::open(dir.path(), opts()).unwrap());
    // Break every trailer: flip a byte in the last 23 bytes of sealed files.
    let files = segment_files(dir.path());
    for p in &files[..files.len() - 1] {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .read(true)
            .open(p)
            .unwrap();
        let len = f.metadata().unwrap().len();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, len - 3).unwrap();
        f.write_all_at(&[b[0] ^ 0xff], len - 3).unwrap();
    }
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(observe(&log), expected);
}

#[test]
fn a_torn_footer_is_ignored() {
    let dir = build(600);
    let expected = observe(&Log::open(dir.path(), opts()).unwrap());
    // Cut the first sealed file in the middle of its footer, as a crash
    // while sealing would leave it.
    let files = segment_files(dir.path());
    let f = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(&files[0])
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - 30).unwrap();
    drop(f);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(observe(&log), expected);
}

/// A sealer syncs a segment before it writes the footer, so damage to a
/// frame a valid footer names is corruption, never a torn tail, even when
/// no later write is marked prior-synced (under a relaxed policy nothing
/// else would tell the later segments were durable).
#[test]
fn damage_under_a_valid_footer_is_never_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts().sync(SyncPolicy::Manual);
    let log = Log::open(dir.path(), o.clone()).unwrap();
    log.set_state(&b"state-1"[..]).unwrap();
    for i in 1..=300 {
        log.append(&[Entry::new(i, 1, data(i))]).unwrap();
    }
    drop(log);
    let files = segment_files(dir.path());
    assert!(files.len() >= 3, "{files:?}");
    assert!(common::is_sealed(&files[0]));
    // Flip a payload byte of the state frame the first footer names: its
    // CRC fails, as a torn write's would.
    let state = common::frames(&files[0])
        .into_iter()
        .find(|f| f.ty == common::TY_STATE)
        .unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(&files[0])
        .unwrap();
    let at = state.offset + common::FRAME_HEADER;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0xff], at).unwrap();
    drop(f);
    // `raftwal verify` agrees.
    let scan = raftwal::tools::inspect::scan_dir(dir.path()).unwrap();
    assert_eq!(scan.problems.len(), 1, "{:?}", scan.problems);
    assert_ne!(
        scan.problems[0].kind,
        raftwal::tools::inspect::ProblemKind::TornTail
    );
    assert_eq!(scan.problems[0].path, files[0]);
    match Log::open(dir.path(), o) {
        Err(Error::Corruption { path, .. }) => assert_eq!(path, files[0]),
        other => panic!(
            "expected corruption in {}, got {other:?}",
            files[0].display()
        ),
    }
}
