//! Damage that is not a torn tail: a bad frame in an earlier segment, a bad
//! frame followed by a valid one, absurd length fields, bad segment headers
//! and a missing segment. The default mode refuses them with
//! `Error::Corruption` naming the file and the damaged frame's offset;
//! `TolerateAnyCorruption` keeps the longest valid prefix. Nothing panics.
//!
//! A sealed segment (one with a valid footer) is opened from its footer
//! without reading entry payloads (docs/FORMAT.md), so damage to an entry
//! there is reported when the entry is read; a segment without a usable
//! footer (never sealed: the crash came first) is scanned in full at open.

mod common;

use common::{
    data_end, entries, entry_frames, flip_byte, frames, is_sealed, opts, segment_files, unseal,
    Model,
};
use raftwal::{Error, Log, Options, Preallocate, RecoveryMode};
use std::path::{Path, PathBuf};

/// 300 entries, one write each, over several segments.
fn setup(dir: &Path) -> Model {
    let log = Log::open(dir, opts()).unwrap();
    let mut m = Model::new();
    for i in 1..=300 {
        let es = entries(i, i + 1, 1 + i / 90);
        log.append(&es).unwrap();
        m.append(&es);
    }
    assert!(log.segments().len() >= 4);
    drop(log);
    let files = segment_files(dir);
    for f in &files[..files.len() - 1] {
        assert!(is_sealed(f), "{} is not sealed", f.display());
    }
    m
}

fn expect_corruption(dir: &Path, opts: Options, want_path: &Path, want_offset: u64) {
    match Log::open(dir, opts) {
        Err(Error::Corruption { path, offset, .. }) => {
            assert_eq!((path.as_path(), offset), (want_path, want_offset));
        }
        other => panic!("expected corruption at {want_offset}, got {other:?}"),
    }
}

fn expect_read_corruption<T: std::fmt::Debug>(r: raftwal::Result<T>, path: &Path, at: u64) {
    match r {
        Err(Error::Corruption {
            path: p, offset, ..
        }) => assert_eq!((p.as_path(), offset), (path, at)),
        other => panic!("expected corruption at {at}, got {other:?}"),
    }
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    segment_files(dir)
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect()
}

/// The first index held by segment file `path` (from its name).
fn first_of(path: &Path) -> u64 {
    let name = path.file_name().unwrap().to_str().unwrap();
    u64::from_str_radix(&name[17..33], 16).unwrap()
}

#[test]
fn bad_frame_in_an_unsealed_earlier_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let files = segment_files(dir.path());
    let victim = files[1].clone();
    unseal(&victim);
    let fs = entry_frames(&victim);
    let f = fs[fs.len() / 2];
    flip_byte(&victim, f.offset + 9 + f.len / 2);
    let before = snapshot(dir.path());
    expect_corruption(dir.path(), opts(), &victim, f.offset);
    assert_eq!(snapshot(dir.path()), before, "a refused open changed files");
    // Damage to the frame's header instead.
    flip_byte(&victim, f.offset + 9 + f.len / 2);
    flip_byte(&victim, f.offset + 6);
    expect_corruption(dir.path(), opts(), &victim, f.offset);
    let strict = opts().recovery_mode(RecoveryMode::AbsoluteConsistency);
    expect_corruption(dir.path(), strict, &victim, f.offset);
    assert_eq!(segment_files(dir.path()), files);
}

#[test]
fn bad_frame_in_a_sealed_earlier_segment_is_corruption_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let m = setup(dir.path());
    let victim = segment_files(dir.path())[1].clone();
    let fs = entry_frames(&victim);
    let k = fs.len() / 2;
    let f = fs[k];
    flip_byte(&victim, f.offset + 9 + f.len / 2);
    let log = Log::open(dir.path(), opts()).unwrap();
    let bad = first_of(&victim) + k as u64;
    expect_read_corruption(log.get_entry(bad), &victim, f.offset);
    expect_read_corruption(log.entries(bad - 2, bad + 2, None), &victim, f.offset);
    let mut it = log.iter(bad, bad + 1);
    expect_read_corruption(it.next().unwrap(), &victim, f.offset);
    // Its neighbours are intact.
    for i in [bad - 1, bad + 1] {
        let e = log.get_entry(i).unwrap();
        assert_eq!(e.data, m.entries[(i - 1) as usize].1);
    }
}

#[test]
fn bad_frame_followed_by_a_valid_one_in_the_last_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let last = segment_files(dir.path()).pop().unwrap();
    let fs = entry_frames(&last);
    assert!(fs.len() >= 3);
    let f = fs[fs.len() - 2];
    flip_byte(&last, f.offset + 9 + f.len - 1);
    let before = snapshot(dir.path());
    expect_corruption(dir.path(), opts(), &last, f.offset);
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn tolerate_any_corruption_keeps_the_longest_valid_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = setup(dir.path());
    let files = segment_files(dir.path());
    let victim = files[1].clone();
    unseal(&victim);
    let fs = entry_frames(&victim);
    let k = fs.len() / 2;
    let f = fs[k];
    flip_byte(&victim, f.offset + 9);
    let salvage = opts().recovery_mode(RecoveryMode::TolerateAnyCorruption);
    let log = Log::open(dir.path(), salvage).unwrap();
    let bad_index = first_of(&victim) + k as u64;
    m.truncate_from(bad_index);
    m.check(&log);
    let r = log.recovery_report();
    assert_eq!((&r.repairs[0].0, r.repairs[0].1), (&victim, f.offset));
    // The later segments are gone; the damaged one ends at the bad frame.
    assert_eq!(segment_files(dir.path()), files[..2].to_vec());
    assert_eq!(data_end(&victim), f.offset);
    let es = entries(bad_index, bad_index + 100, 7);
    log.append(&es).unwrap();
    m.append(&es);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert!(log.recovery_report().repairs.is_empty());
    m.check(&log);
}

/// Sets the length field of the frame at `offset` to 0xFFFFFFFF.
fn huge_length(path: &Path, offset: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[offset as usize + 1..offset as usize + 5].copy_from_slice(&[0xFF; 4]);
    std::fs::write(path, b).unwrap();
}

#[test]
fn huge_length_field_in_the_last_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = setup(dir.path());
    let last = segment_files(dir.path()).pop().unwrap();
    let f = *entry_frames(&last).last().unwrap();
    huge_length(&last, f.offset);
    // The last frame: repaired as a torn tail, or refused as damage (no
    // crash writes such a length); either way nothing is allocated for it.
    match Log::open(dir.path(), opts()) {
        Ok(log) => {
            m.truncate_from(300);
            m.check(&log);
            assert_eq!(log.recovery_report().repairs[0].1, f.offset);
        }
        Err(Error::Corruption { path, offset, .. }) => {
            assert_eq!((path, offset), (last, f.offset));
        }
        Err(e) => panic!("{e}"),
    }
    // Strict: corruption at that frame.
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let last = segment_files(dir.path()).pop().unwrap();
    let f = entry_frames(&last)[1];
    huge_length(&last, f.offset);
    let strict = opts().recovery_mode(RecoveryMode::AbsoluteConsistency);
    expect_corruption(dir.path(), strict, &last, f.offset);
}

#[test]
fn huge_length_field_in_an_earlier_segment_is_corruption() {
    // Unsealed: refused at open, salvaged up to the frame.
    let dir = tempfile::tempdir().unwrap();
    let mut m = setup(dir.path());
    let victim = segment_files(dir.path())[2].clone();
    unseal(&victim);
    let f = entry_frames(&victim)[3];
    huge_length(&victim, f.offset);
    expect_corruption(dir.path(), opts(), &victim, f.offset);
    let salvage = opts().recovery_mode(RecoveryMode::TolerateAnyCorruption);
    let log = Log::open(dir.path(), salvage).unwrap();
    m.truncate_from(first_of(&victim) + 3);
    m.check(&log);
    drop(log);
    // Sealed: refused when read.
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let victim = segment_files(dir.path())[2].clone();
    let f = entry_frames(&victim)[3];
    huge_length(&victim, f.offset);
    let log = Log::open(dir.path(), opts()).unwrap();
    let i = first_of(&victim) + 3;
    expect_read_corruption(log.get_entry(i), &victim, f.offset);
    expect_read_corruption(log.entries(i, i + 1, Some(1)), &victim, f.offset);
}

/// Rewrites the header frame of `path` with `edit` applied to its payload,
/// with a correct CRC (so only the content is wrong).
fn rewrite_header(path: &Path, edit: impl FnOnce(&mut [u8])) {
    let mut b = std::fs::read(path).unwrap();
    let h = frames(path)[0];
    let payload = &mut b[9..9 + h.len as usize];
    edit(payload);
    let crc = raftwal::tools::frame::checksum(0, b[0], h.len as u32, &b[9..9 + h.len as usize]);
    b[5..9].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, b).unwrap();
}

/// The segment header payload starts with the magic (field 1, 8 bytes)
/// followed by the version (field 2, a varint).
fn bad_magic(p: &mut [u8]) {
    assert_eq!(&p[..2], &[0x0A, 8]);
    p[2] = b'X';
}

fn bad_version(p: &mut [u8]) {
    assert_eq!(&p[10..12], &[0x10, 2]);
    p[11] = 3;
}

fn check_bad_header(which: usize, edit: fn(&mut [u8])) {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let files = segment_files(dir.path());
    let victim = files[which.min(files.len() - 1)].clone();
    rewrite_header(&victim, edit);
    let before = snapshot(dir.path());
    expect_corruption(dir.path(), opts(), &victim, 0);
    let strict = opts().recovery_mode(RecoveryMode::AbsoluteConsistency);
    expect_corruption(dir.path(), strict, &victim, 0);
    assert_eq!(snapshot(dir.path()), before, "a refused open changed files");
}

#[test]
fn bad_magic_is_corruption() {
    check_bad_header(1, bad_magic);
    check_bad_header(usize::MAX, bad_magic); // the last segment
}

#[test]
fn unsupported_version_is_corruption() {
    check_bad_header(0, bad_version);
    check_bad_header(usize::MAX, bad_version); // the last segment
}

#[test]
fn damaged_header_is_corruption() {
    // A flipped byte (bad CRC) in the header of an earlier segment, and of
    // the last one when data follows the header: neither is a torn write,
    // since a segment's header is durable before anything is written to it.
    for which in [1, usize::MAX] {
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path());
        let files = segment_files(dir.path());
        let victim = files[which.min(files.len() - 1)].clone();
        flip_byte(&victim, 12);
        let before = snapshot(dir.path());
        expect_corruption(dir.path(), opts(), &victim, 0);
        assert_eq!(snapshot(dir.path()), before);
    }
}

#[test]
fn torn_header_of_a_new_last_segment_is_repaired() {
    // A crash while a segment was being created (without preallocation)
    // leaves a short header and nothing after it: that file held nothing
    // and is removed.
    let dir = tempfile::tempdir().unwrap();
    let plain = opts().preallocate(Preallocate::None);
    let log = Log::open(dir.path(), plain.clone()).unwrap();
    let mut m = Model::new();
    for lo in (1..200).step_by(10) {
        let es = entries(lo, lo + 10, 1);
        log.append(&es).unwrap();
        m.append(&es);
    }
    assert!(log.segments().len() >= 3);
    let before = snapshot(dir.path());
    log.truncate_from_index(20).unwrap(); // a new segment opened by a marker
    drop(log);
    // The crash came while that segment was being created: the segments
    // the cut removed afterwards are still there.
    for (p, b) in &before {
        std::fs::write(p, b).unwrap();
    }
    let last = segment_files(dir.path()).pop().unwrap();
    assert!(before.iter().all(|(p, _)| *p != last));
    let h = frames(&last)[0];
    let file = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    file.set_len(9 + h.len - 3).unwrap();
    let strict = plain
        .clone()
        .recovery_mode(RecoveryMode::AbsoluteConsistency);
    expect_corruption(dir.path(), strict, &last, 0);
    // Without its marker, the cut never happened.
    let log = Log::open(dir.path(), plain).unwrap();
    assert!(!last.exists());
    assert_eq!(log.recovery_report().repairs.len(), 1);
    m.check(&log);
}

#[test]
fn missing_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let m = setup(dir.path());
    // Leave exactly one entry in a new last segment.
    let log = Log::open(dir.path(), opts()).unwrap();
    let mut i = m.last() + 1;
    loop {
        log.append(&entries(i, i + 1, 9)).unwrap();
        if log.segments().last().unwrap().1 == i {
            break;
        }
        i += 1;
    }
    drop(log);
    let files = segment_files(dir.path());
    // Remove a middle segment, then the one before the last.
    for gone in [files[1].clone(), files[files.len() - 2].clone()] {
        let dir2 = tempfile::tempdir().unwrap();
        for f in &files {
            if *f != gone {
                std::fs::copy(f, dir2.path().join(f.file_name().unwrap())).unwrap();
            }
        }
        let after = files[files.iter().position(|f| *f == gone).unwrap() + 1].clone();
        let after = dir2.path().join(after.file_name().unwrap());
        // Reported at the header of the segment after the gap: it names
        // the missing segment as the one it continues.
        expect_corruption(dir2.path(), opts(), &after, 0);
    }
}

/// Puts `bytes` into `path` in place (without truncating it first, which
/// makes some file systems flush the file on close).
fn overwrite(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    f.write_all_at(bytes, 0).unwrap();
    f.set_len(bytes.len() as u64).unwrap();
}

/// Flips bytes all over a small log, one at a time (sealed and unsealed):
/// opening never panics, and whatever opens or reads returns only correct entries.
#[test]
fn no_panic_on_any_flipped_byte() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let mut m = Model::new();
    let mut i = 1;
    while log.segments().len() < 2 {
        let es = entries(i, i + 1, 1 + i / 30);
        log.append(&es).unwrap();
        m.append(&es);
        i += 1;
    }
    log.set_state(&b"s"[..]).unwrap();
    log.compact(5).unwrap();
    drop(log);
    let modes = [
        RecoveryMode::TolerateTailCorruption,
        RecoveryMode::AbsoluteConsistency,
        RecoveryMode::TolerateAnyCorruption,
    ];
    for sealed in [true, false] {
        if !sealed {
            unseal(&segment_files(dir.path())[0]);
        }
        let files = snapshot(dir.path());
        let ends: Vec<u64> = files.iter().map(|(p, _)| data_end(p)).collect();
        let mut opened = 0;
        for ((path, bytes), end) in files.iter().zip(ends) {
            // Every byte of the header and the first frames, then every
            // fifth byte (one fsync-ing repair per open makes each costly).
            let positions = (0..end as usize).filter(|&at| at < 96 || at % 5 == 0);
            for at in positions {
                let mut b = bytes.clone();
                b[at] ^= 1 << (at % 8);
                for (p, orig) in &files {
                    overwrite(p, if p == path { &b } else { orig });
                }
                for p in segment_files(dir.path()) {
                    if !files.iter().any(|(q, _)| *q == p) {
                        std::fs::remove_file(p).unwrap();
                    }
                }
                let mode = modes[at % 3];
                let o = opts().preallocate(Preallocate::None).recovery_mode(mode);
                let Ok(log) = Log::open(dir.path(), o) else {
                    continue;
                };
                opened += 1;
                // A damaged last frame may pass for a torn tail (here: the
                // compaction marker), so less may survive, never other data.
                assert!(log.first_index() >= 1 && log.last_index() <= m.last());
                for i in log.first_index()..=log.last_index() {
                    match log.get_entry(i) {
                        Ok(e) => {
                            let (t, d) = &m.entries[(i - 1) as usize];
                            assert_eq!((e.term, &e.data[..]), (*t, &d[..]), "entry {i}, byte {at}");
                        }
                        Err(Error::Corruption { .. }) => {}
                        Err(e) => panic!("entry {i}, byte {at}: {e}"),
                    }
                }
            }
        }
        assert!(opened > 0);
    }
}
