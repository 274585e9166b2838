//! The engine's own tests (the model test is `tests/engine_model.rs`).

use super::*;
use crate::format::index::Loc;

fn opts() -> Options {
    Options::default().segment_size(64 << 10)
}

/// Appends `record` to the engine's stream in `dir` as its next entry,
/// bypassing the engine (what damage or a bug could leave).
fn append_raw(dir: &Path, record: &[u8]) {
    let log = Log::open(dir, opts()).unwrap();
    let next = log.last_index() + 1;
    log.append(&[Entry::new(next, 1, record.to_vec())]).unwrap();
}

fn engine_with_one_write(dir: &Path) {
    let e = Engine::open(dir, opts()).unwrap();
    let mut b = EngineBatch::new();
    b.group(5).push(1, 1, b"one").unwrap();
    e.write(&mut b).unwrap();
}

#[test]
fn a_record_that_does_not_parse_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    engine_with_one_write(dir.path());
    append_raw(dir.path(), b"not frames");
    let r = Engine::open(dir.path(), opts());
    assert!(
        matches!(
            &r,
            Err(Error::Corruption {
                damage: Damage::Record,
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn a_record_that_does_not_continue_its_group_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    engine_with_one_write(dir.path());
    // Valid frames, but group 5 holds 1..=1 and this part starts at 3.
    let mut b = EngineBatch::new();
    b.group(5).push(3, 1, b"three").unwrap();
    let (len, _) = b.layout().unwrap();
    let mut record = Vec::new();
    b.write_into(&mut record);
    assert_eq!(record.len(), len);
    append_raw(dir.path(), &record);
    let e = Engine::open(dir.path(), opts()).unwrap_err();
    assert!(e.to_string().contains("group 5"), "{e}");
    assert!(
        matches!(
            e,
            Error::Corruption {
                damage: Damage::Record,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_refused_batch_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path(), opts()).unwrap();
    let stream_last = e.log.last_index();
    let mut b = EngineBatch::new();
    b.group(1).push(1, 1, b"fine").unwrap();
    b.group(2).push(2, 1, b"not after 0").unwrap();
    let r = e.write(&mut b);
    assert!(
        matches!(&r, Err(Error::Group { group: 2, source }) if matches!(**source, Error::NonContiguous { got: 2, last_index: 0 })),
        "{r:?}"
    );
    assert_eq!(e.log.last_index(), stream_last, "no record written");
    assert!(e.groups().is_empty(), "no group made");
    assert!(matches!(
        e.write(&mut EngineBatch::new()),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn a_read_of_the_wrong_frame_fails_its_crc() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path(), opts()).unwrap();
    let mut b = EngineBatch::new();
    b.group(1).push(1, 1, b"group one").unwrap();
    b.group(2).push(1, 1, b"group two").unwrap();
    e.write(&mut b).unwrap();
    let (seq, loc): (u64, Loc) = e.groups.read().get(2).locate(1).unwrap();
    let buf = e
        .log
        .inner
        .read_at(seq, u64::from(loc.offset), loc.len as usize)
        .unwrap()
        .unwrap();
    // Group 2's frame, read as group 1's: another salt.
    assert!(record::read_entry(2, 1, buf.clone()).is_ok());
    let why = record::read_entry(1, 1, buf).unwrap_err();
    assert!(why.contains("CRC"), "{why}");
}

/// The memtable's cost, as `Engine::index_memory_bytes` counts it (the
/// capacities of its maps, vectors and state blobs, and the stream's
/// index): at most 256 bytes per group holding no entries (a 16-byte state
/// each), and at most 16 per entry, whether a record holds one entry or a
/// hundred.
#[test]
fn an_idle_group_and_an_entry_cost_what_the_issue_allows() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts().sync(crate::SyncPolicy::Manual);
    let e = Engine::open(dir.path(), o).unwrap();
    let base = e.index_memory_bytes();
    let groups = 10_000u64;
    let mut b = EngineBatch::new();
    for g in 0..groups {
        b.group(g).set_state(vec![7u8; 16]);
    }
    e.write(&mut b).unwrap();
    let per_group = (e.index_memory_bytes() - base) as u64 / groups;
    assert!(per_group <= 256, "{per_group} bytes per idle group");
    let mut next = 1;
    for per_record in [100u64, 1] {
        let before = e.index_memory_bytes();
        let n = 20_000u64;
        for _ in 0..n / per_record {
            let mut b = EngineBatch::new();
            for _ in 0..per_record {
                b.group(1).push(next, 1, b"x").unwrap();
                next += 1;
            }
            e.write(&mut b).unwrap();
        }
        let per_entry = (e.index_memory_bytes() - before) as f64 / n as f64;
        assert!(
            per_entry <= 16.0,
            "{per_entry} bytes per entry, {per_record} per record"
        );
        eprintln!("memtable: {per_group} B per idle group, {per_entry:.1} B per entry at {per_record} per record");
    }
}
