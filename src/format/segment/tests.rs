//! Tests of segment creation, preparation and scanning.

use super::new_files::ZERO_CHUNK;
use super::scan::CHUNK;
use super::*;
use crate::fs::StdFileSystem;

const FS: StdFileSystem = StdFileSystem;

#[test]
fn a_stopped_zero_fill_keeps_a_valid_prepared_file() {
    let dir = tempfile::tempdir().unwrap();
    let len = 4 * ZERO_CHUNK as u64;
    let checks = std::cell::Cell::new(0);
    // Stop after two chunks of zeros.
    let stop = || {
        checks.set(checks.get() + 1);
        checks.get() > 2
    };
    let path = prepare_zeroed_until(&FS, dir.path(), 7, len, &stop).unwrap();
    assert_eq!(checks.get(), 3, "the fill stopped at the third check");
    let file = open(&FS, &path).unwrap();
    assert_eq!(file.len().unwrap(), len, "still allocated in full");
    let mut buf = vec![1u8; len as usize];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf.iter().all(|&b| b == 0), "zeros, written or not");
    assert_eq!(list_prepared(&FS, dir.path()).unwrap(), vec![path]);
}

#[test]
fn file_names_round_trip() {
    let n = file_name(3, 1000);
    assert_eq!(n, "0000000000000003-00000000000003e8.wal");
    assert_eq!(parse_file_name(&n), Some((3, 1000)));
    assert_eq!(parse_file_name("LOCK"), None);
    assert_eq!(
        parse_file_name("0000000000000003-00000000000003e8.tmp"),
        None
    );
    assert_eq!(parse_file_name("3-1000.wal"), None);
    assert_eq!(
        parse_file_name(&file_name(u64::MAX, u64::MAX)),
        Some((u64::MAX, u64::MAX))
    );
}

#[test]
fn header_is_written_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let c = create(&FS, dir.path(), 5, 77, None, Origin::First).unwrap();
    let (f, path, len) = (c.file, c.path, c.header_len);
    let flen = f.len().unwrap();
    assert_eq!(flen, len);
    let h = read_header(&*f, &path, flen).unwrap();
    assert_eq!((h.sequence, h.first_index, h.len), (5, 77, len));
    // A second create of the same name fails rather than clobbering.
    assert!(create(&FS, dir.path(), 5, 77, None, Origin::First).is_err());
    // Any flipped byte is caught.
    for i in 0..len {
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[i as usize] ^= 0x40;
        let p2 = dir.path().join("flipped");
        std::fs::write(&p2, &bytes).unwrap();
        let f2 = std::fs::File::open(&p2).unwrap();
        assert!(read_header(&f2, &p2, len).is_err(), "byte {i}");
    }
}

#[test]
fn prepared_segment_is_renamed_into_place() {
    let dir = tempfile::tempdir().unwrap();
    let prep = prepare(&FS, dir.path(), 1, 8192).unwrap();
    assert_eq!(list_prepared(&FS, dir.path()).unwrap(), vec![prep.clone()]);
    let c = create(&FS, dir.path(), 9, 3, Some(prep.clone()), Origin::First).unwrap();
    assert!(!prep.exists());
    assert_eq!(c.preallocated, 8192);
    assert_eq!(c.file.len().unwrap(), 8192);
    let h = read_header(&*c.file, &c.path, 8192).unwrap();
    assert_eq!((h.sequence, h.first_index, h.preallocated), (9, 3, 8192));
    assert_eq!(list(&FS, dir.path()).unwrap().len(), 1);
}

#[test]
fn scanner_reports_huge_length_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x");
    let mut bytes = vec![FrameType::Entry as u8];
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(&[7; 100]);
    std::fs::write(&path, &bytes).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    let header = Header {
        sequence: 1,
        first_index: 1,
        len: 0,
        preallocated: 0,
        origin: Origin::First,
    };
    let mut s = Scanner::new(
        &f,
        &path,
        bytes.len() as u64,
        &header,
        u64::from(u32::MAX) + 1,
    );
    match s.next_frame().unwrap() {
        Scanned::Bad { offset, reason, .. } => {
            assert_eq!(offset, 0);
            assert!(reason.contains("cut by the end of file"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // The buffer never grew beyond the file.
    assert!(s.buf.capacity() <= CHUNK.max(bytes.len()));
}
