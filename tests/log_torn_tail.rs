//! Torn tails in the last segment: a frame header cut short, a payload cut
//! short, a zero-filled tail, a bad CRC on the last frame. The default
//! recovery mode repairs them (keeping every entry before the torn frame,
//! byte for byte, and reporting the repair); `AbsoluteConsistency` refuses
//! to open, names the segment and the torn frame's offset, and leaves the
//! file untouched. A repaired log takes appends and reopens cleanly.
//!
//! Every shape is tried on a plain segment file (torn by cutting the file
//! short or growing it) and on a preallocated one, fallocated or
//! zero-filled (whose size a crash cannot change: torn by zeroing from the
//! cut to the end).

mod common;

use common::{data_end, entries, entry_frames, flip_byte, opts, segment_files, Model};
use raftwal::{Error, Log, Options, Preallocate, RecoveryMode};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy)]
enum Shape {
    /// The data ends 4 bytes into the last frame's header.
    CutHeader,
    /// The data ends in the middle of the last frame's payload.
    CutPayload,
    /// `n` zero bytes follow the last frame.
    Zeros(u64),
    /// A payload byte of the last frame is flipped.
    BadCrc,
}

/// Every preallocation mode: each shape is tried in each.
const MODES: [Preallocate; 3] = [
    Preallocate::None,
    Preallocate::Allocate,
    Preallocate::ZeroFill,
];

fn options(preallocate: Preallocate) -> Options {
    opts().preallocate(preallocate)
}

/// Ends the data of `path` at `at`: cuts the file there, or zeroes it from
/// there on when it is preallocated.
fn cut(path: &Path, at: u64, preallocated: bool) {
    if preallocated {
        let mut b = std::fs::read(path).unwrap();
        b[at as usize..].iter_mut().for_each(|x| *x = 0);
        std::fs::write(path, b).unwrap();
    } else {
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.set_len(at).unwrap();
    }
}

/// Writes 200 entries one by one, a state blob and one more entry, tears
/// the tail as `shape` says, and returns the model of what must survive,
/// the last segment, and the offset of the torn frame.
fn torn(dir: &Path, shape: Shape, prealloc: Preallocate) -> (Model, PathBuf, u64) {
    let log = Log::open(dir, options(prealloc)).unwrap();
    let mut m = Model::new();
    for i in 1..=200 {
        let es = entries(i, i + 1, 1 + i / 70);
        log.append(&es).unwrap();
        m.append(&es);
    }
    log.set_state(&b"s"[..]).unwrap();
    m.state = Some(b"s".to_vec());
    let last_entry = entries(201, 202, 3);
    log.append(&last_entry).unwrap();
    drop(log);
    let files = segment_files(dir);
    assert!(files.len() >= 3);
    let last = files.last().unwrap().clone();
    let fs = entry_frames(&last);
    assert!(fs.len() >= 3, "{fs:?}");
    let f = *fs.last().unwrap();
    let end = data_end(&last);
    assert_eq!(f.offset + 9 + f.len, end, "the entry is the last frame");
    let len = std::fs::metadata(&last).unwrap().len();
    assert_eq!(
        len > end,
        prealloc != Preallocate::None,
        "preallocated space follows the data"
    );
    let at = match shape {
        Shape::CutHeader => {
            cut(&last, f.offset + 4, prealloc != Preallocate::None);
            f.offset
        }
        Shape::CutPayload => {
            cut(
                &last,
                f.offset + 9 + f.len / 2,
                prealloc != Preallocate::None,
            );
            f.offset
        }
        Shape::Zeros(n) => {
            let file = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
            file.set_len(len + n).unwrap();
            end
        }
        Shape::BadCrc => {
            flip_byte(&last, f.offset + 9 + f.len - 1);
            f.offset
        }
    };
    match shape {
        Shape::Zeros(_) => m.append(&last_entry),
        _ => m.truncate_from(201), // the torn entry
    }
    (m, last, at)
}

/// A zeroed tail inside the preallocated space is unused space, not a torn
/// frame (docs/FORMAT.md): nothing is repaired or refused.
fn is_unused_space(shape: Shape, prealloc: Preallocate) -> bool {
    prealloc != Preallocate::None && matches!(shape, Shape::Zeros(_))
}

fn repaired(shape: Shape, prealloc: Preallocate) {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, last, at) = torn(dir.path(), shape, prealloc);
    let before = std::fs::metadata(&last).unwrap().len();
    let log = Log::open(dir.path(), options(prealloc)).unwrap();
    m.check(&log);
    let r = log.recovery_report();
    if is_unused_space(shape, prealloc) {
        assert!(r.repairs.is_empty(), "{r:?}");
    } else {
        assert_eq!(r.repairs.len(), 1, "{r:?}");
        assert_eq!((&r.repairs[0].0, r.repairs[0].1), (&last, at));
        assert_eq!(r.bytes_dropped, before - at);
        assert_eq!(data_end(&last), at);
        if prealloc == Preallocate::None {
            assert_eq!(std::fs::metadata(&last).unwrap().len(), at);
        }
    }
    // The repaired log takes appends and reopens without another repair.
    let next = m.last() + 1;
    let es = entries(next, next + 30, 5);
    log.append(&es).unwrap();
    m.append(&es);
    m.check(&log);
    drop(log);
    let log = Log::open(dir.path(), options(prealloc)).unwrap();
    assert!(log.recovery_report().repairs.is_empty());
    assert_eq!(log.recovery_report().bytes_dropped, 0);
    m.check(&log);
}

fn refused(shape: Shape, prealloc: Preallocate) {
    let dir = tempfile::tempdir().unwrap();
    let (m, last, at) = torn(dir.path(), shape, prealloc);
    let snapshot: Vec<_> = segment_files(dir.path())
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    let strict = options(prealloc).recovery_mode(RecoveryMode::AbsoluteConsistency);
    match Log::open(dir.path(), strict) {
        Ok(log) if is_unused_space(shape, prealloc) => m.check(&log),
        Err(Error::Corruption { path, offset, .. }) if !is_unused_space(shape, prealloc) => {
            assert_eq!((path, offset), (last, at));
            for (p, b) in &snapshot {
                assert_eq!(
                    &std::fs::read(p).unwrap(),
                    b,
                    "{} was modified",
                    p.display()
                );
            }
            assert_eq!(segment_files(dir.path()).len(), snapshot.len());
        }
        other => panic!("unexpected: {other:?}"),
    }
}

#[test]
fn cut_in_the_frame_header_is_repaired() {
    for prealloc in MODES {
        repaired(Shape::CutHeader, prealloc);
    }
}

#[test]
fn cut_in_the_frame_header_is_refused_when_strict() {
    for prealloc in MODES {
        refused(Shape::CutHeader, prealloc);
    }
}

#[test]
fn cut_in_the_payload_is_repaired() {
    for prealloc in MODES {
        repaired(Shape::CutPayload, prealloc);
    }
}

#[test]
fn cut_in_the_payload_is_refused_when_strict() {
    for prealloc in MODES {
        refused(Shape::CutPayload, prealloc);
    }
}

#[test]
fn zero_filled_tail_is_repaired() {
    for prealloc in MODES {
        repaired(Shape::Zeros(4096), prealloc);
        repaired(Shape::Zeros(5), prealloc); // shorter than a frame header
    }
}

#[test]
fn zero_filled_tail_is_refused_when_strict() {
    for prealloc in MODES {
        refused(Shape::Zeros(4096), prealloc);
        refused(Shape::Zeros(5), prealloc);
    }
}

#[test]
fn bad_crc_on_the_last_frame_is_repaired() {
    for prealloc in MODES {
        repaired(Shape::BadCrc, prealloc);
    }
}

#[test]
fn bad_crc_on_the_last_frame_is_refused_when_strict() {
    for prealloc in MODES {
        refused(Shape::BadCrc, prealloc);
    }
}

/// A torn state frame: the previous state blob is what survives.
#[test]
fn torn_state_frame_reverts_to_the_previous_state() {
    for prealloc in MODES {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), options(prealloc)).unwrap();
        let mut m = Model::new();
        let es = entries(1, 100, 1);
        log.append(&es).unwrap();
        m.append(&es);
        log.set_state(&b"older"[..]).unwrap();
        log.set_state(&b"newer"[..]).unwrap();
        m.state = Some(b"older".to_vec());
        drop(log);
        let last = segment_files(dir.path()).pop().unwrap();
        cut(&last, data_end(&last) - 2, prealloc != Preallocate::None);
        let log = Log::open(dir.path(), options(prealloc)).unwrap();
        m.check(&log);
        assert_eq!(log.recovery_report().repairs.len(), 1);
    }
}

/// The only frame after the header is torn: the segment is left with its
/// header alone and the log continues in it.
#[test]
fn torn_first_frame_of_the_last_segment() {
    for prealloc in MODES {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), options(prealloc)).unwrap();
        let mut m = Model::new();
        let mut i = 1;
        // Fill until a new segment is started by entry i.
        loop {
            let es = entries(i, i + 1, 1);
            log.append(&es).unwrap();
            if log.segments().last().unwrap().1 == i && i > 1 {
                break;
            }
            m.append(&es);
            i += 1;
        }
        drop(log);
        let last = segment_files(dir.path()).pop().unwrap();
        let f = entry_frames(&last)[0];
        cut(&last, f.offset + 9 + 1, prealloc != Preallocate::None);
        let log = Log::open(dir.path(), options(prealloc)).unwrap();
        m.check(&log);
        assert_eq!(log.recovery_report().repairs.len(), 1);
        let es = entries(i, i + 10, 2);
        log.append(&es).unwrap();
        m.append(&es);
        drop(log);
        let log = Log::open(dir.path(), options(prealloc)).unwrap();
        m.check(&log);
    }
}
