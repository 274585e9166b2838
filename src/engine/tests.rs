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

/// What a group shows: first and last index, term before the first, the
/// entries' terms and data, the state.
type Shown = (u64, u64, u64, Vec<(u64, Bytes)>, Option<Bytes>);

fn shown(e: &Engine, group: u64) -> Shown {
    let (first, last) = (e.first_index(group), e.last_index(group));
    let entries = e
        .entries(group, first, last + 1, None)
        .unwrap()
        .into_iter()
        .map(|x| (x.term, x.data))
        .collect();
    (
        first,
        last,
        e.term(group, first - 1).unwrap(),
        entries,
        e.state(group),
    )
}

#[test]
fn reclaim_frees_what_no_group_needs_and_names_the_laggard() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts().segment_size(8 << 10);
    let e = Engine::open(dir.path(), o.clone()).unwrap();
    // Idle groups: a state each, written once, at the start.
    let mut b = EngineBatch::new();
    for g in 100..110 {
        b.group(g).set_state(vec![g as u8; 20]);
    }
    e.write(&mut b).unwrap();
    // Busy groups 1..=5, entries over many segments; group 3 lags.
    for round in 1..=60u64 {
        let mut b = EngineBatch::new();
        for g in 1..=5u64 {
            b.group(g).push(round, 1, &[g as u8; 200]).unwrap();
        }
        e.write(&mut b).unwrap();
    }
    let segments = e.segments();
    assert!(segments > 6, "{segments} segments");
    let mut b = EngineBatch::new();
    for g in [1, 2, 4, 5] {
        b.compact(g, 58);
    }
    e.write(&mut b).unwrap();
    let lag = e.laggards(2);
    assert_eq!(lag[0].group, 3, "{lag:?}");
    assert_eq!(lag[0].first_index, 1);
    let r = e.reclaim().unwrap();
    assert_eq!(r.segments_freed, 0, "group 3 keeps the oldest: {r:?}");
    // Group 3 catches up: everything before the last rounds is free.
    let mut b = EngineBatch::new();
    b.compact(3, 58);
    e.write(&mut b).unwrap();
    let before: Vec<Shown> = (1..=5).chain(100..110).map(|g| shown(&e, g)).collect();
    let r = e.reclaim().unwrap();
    assert!(r.segments_freed >= segments - 3, "{r:?} of {segments}");
    // The idle groups' states (and the records that made them) were in
    // the oldest segment; the busy groups' starts are their compactions.
    assert_eq!(r.groups_rewritten, 10, "{r:?}");

    let after: Vec<Shown> = (1..=5).chain(100..110).map(|g| shown(&e, g)).collect();
    assert_eq!(before, after, "reclaim changes nothing a group shows");
    drop(e);
    let e = Engine::open(dir.path(), o).unwrap();
    let reopened: Vec<Shown> = (1..=5).chain(100..110).map(|g| shown(&e, g)).collect();
    assert_eq!(before, reopened, "nor does the reopen after it");
    assert!(e.segments() <= 3, "{} segments", e.segments());
}

/// A replay of a reclaimed stream that finds a group's entries with a
/// gap below them that no record closes refuses to open: live entries
/// were lost.
#[test]
fn a_reclaimed_stream_that_lost_live_entries_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts().segment_size(8 << 10);
    {
        let e = Engine::open(dir.path(), o.clone()).unwrap();
        for round in 1..=60u64 {
            let mut b = EngineBatch::new();
            b.group(1).push(round, 1, &[1u8; 200]).unwrap();
            e.write(&mut b).unwrap();
        }
        // Not through `reclaim`: the stream's head goes with entries
        // group 1 still holds (what a bug in reclaim would do).
        let keep = e.log.last_index() - 3;
        e.log.compact(keep).unwrap();
    }
    let err = Engine::open(dir.path(), o).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Corruption {
                damage: Damage::Record,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("group 1"), "{err}");
}

/// A record with two parts for one group is refused at open: its parts
/// are checked against the groups as they were before it, so the second
/// could otherwise put entries where the first already did (found by a
/// review: entry 2 read back from the wrong frame).
#[test]
fn a_record_with_two_parts_for_one_group_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    engine_with_one_write(dir.path());
    let part = |index: u64, data: &[u8]| {
        let mut b = EngineBatch::new();
        b.group(5).push(index, 1, data).unwrap();
        b.layout().unwrap();
        let mut record = Vec::new();
        b.write_into(&mut record);
        record
    };
    let mut record = part(2, b"two");
    record.extend(part(2, b"two again"));
    append_raw(dir.path(), &record);
    let e = Engine::open(dir.path(), opts()).unwrap_err();
    assert!(e.to_string().contains("a second part for group 5"), "{e}");
}

/// `u64::MAX` is past every group's last index: an error, never an
/// overflow (found by a review).
#[test]
fn the_largest_index_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    engine_with_one_write(dir.path());
    let e = Engine::open(dir.path(), opts()).unwrap();
    for group in [5, 6] {
        assert!(matches!(
            e.term(group, u64::MAX),
            Err(Error::Unavailable { .. })
        ));
        assert!(matches!(
            e.get_entry(group, u64::MAX),
            Err(Error::Unavailable { .. })
        ));
    }
}
