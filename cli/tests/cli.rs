//! The `raftwal` command-line tool, run as a user runs it: on logs made with
//! `Log` and `RaftLogStore`, on damaged logs, and with bad input.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry as RaftEntry, EntryType, HardState};
use raftwal::tools::inspect::{scan_dir, EntryLoc};
use raftwal::{Engine, EngineBatch, Entry, Log, Options, RaftLogStore, RecoveryMode};
use serde_json::Value;

fn raftwal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_raftwal"))
        .args(args)
        .output()
        .expect("run raftwal")
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.push(dir.to_str().unwrap());
    raftwal(&all)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

#[track_caller]
fn assert_code(o: &Output, want: i32) {
    assert_eq!(
        code(o),
        want,
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// A plain log of `n` entries in small segments, with a state blob.
fn make_log(dir: &Path, n: u64) {
    let log = Log::open(dir, Options::default().segment_size(4096)).unwrap();
    for i in 1..=n {
        let data = if i % 2 == 0 {
            format!("value-{i}").into_bytes()
        } else {
            vec![0, 1, 2, i as u8]
        };
        log.append(&[Entry::new(i, 1 + i / 50, data)]).unwrap();
    }
    log.set_state(&b"app state"[..]).unwrap();
}

fn raft_entry(index: u64, ty: EntryType, data: &str) -> RaftEntry {
    let mut e = RaftEntry {
        index,
        term: 2,
        data: data.as_bytes().to_vec().into(),
        ..Default::default()
    };
    e.set_entry_type(ty);
    e
}

/// A `RaftLogStore` with 20 entries (the first a conf change), a hard
/// state, a conf state and a snapshot at index 10.
fn make_raft_store(dir: &Path) {
    let store = RaftLogStore::open(dir).unwrap();
    let mut ents = vec![raft_entry(1, EntryType::EntryConfChange, "add 2")];
    ents.extend((2..=20).map(|i| raft_entry(i, EntryType::EntryNormal, &format!("put k{i}"))));
    store.append(&ents).unwrap();
    let hs = HardState {
        term: 2,
        vote: 1,
        commit: 15,
        ..Default::default()
    };
    store.set_hardstate(hs).unwrap();
    let cs = ConfState::from((vec![1, 2, 3], vec![4]));
    store.set_conf_state(cs.clone()).unwrap();
    store.create_snapshot(10, cs, b"snapshot".to_vec()).unwrap();
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[test]
fn inspect_a_log() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path(), 300);
    let o = run_in(dir.path(), &["inspect"]);
    assert_code(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("(Log)"), "{text}");
    assert!(text.contains("indexes 1..=300 (300 entries)"), "{text}");
    assert!(text.contains("state blob: 9 bytes"), "{text}");
    assert!(text.contains("problems:   none"), "{text}");

    let v = json(&run_in(dir.path(), &["inspect", "--json"]));
    assert_eq!(v["kind"], "log");
    assert_eq!(
        (v["first_index"].as_u64(), v["last_index"].as_u64()),
        (Some(1), Some(300))
    );
    assert_eq!(v["lock"], "free");
    let segs = v["segments"].as_array().unwrap();
    assert!(segs.len() > 1, "{v}");
    assert_eq!(segs[0]["live"][0], 1);
    assert_eq!(segs.last().unwrap()["live"][1], 300);
    assert!(v["problems"].as_array().unwrap().is_empty());
}

#[test]
fn inspect_a_raft_store() {
    let dir = tempfile::tempdir().unwrap();
    make_raft_store(dir.path());
    let v = json(&run_in(dir.path(), &["inspect", "--json"]));
    assert_eq!(v["kind"], "raft");
    assert_eq!(v["last_index"], 20);
    assert_eq!(v["raft"]["hard_state"]["term"], 2);
    assert_eq!(v["raft"]["hard_state"]["vote"], 1);
    assert_eq!(v["raft"]["hard_state"]["commit"], 15);
    assert_eq!(
        v["raft"]["conf_state"]["voters"],
        serde_json::json!([1, 2, 3])
    );
    assert_eq!(v["raft"]["conf_state"]["learners"], serde_json::json!([4]));
    let snaps = v["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(
        (snaps[0]["index"].as_u64(), snaps[0]["term"].as_u64()),
        (Some(10), Some(2))
    );
    assert_eq!(snaps[0]["current"], true);

    let text = stdout(&run_in(dir.path(), &["inspect"]));
    assert!(text.contains("(RaftLogStore)"), "{text}");
    assert!(
        text.contains("hard state: term 2 vote 1 commit 15"),
        "{text}"
    );
    assert!(
        text.contains("conf state: voters [1, 2, 3] learners [4]"),
        "{text}"
    );
    assert!(text.contains("snapshot:   index 10 term 2"), "{text}");
}

#[test]
fn dump_a_range_of_a_log() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path(), 100);
    let o = run_in(dir.path(), &["dump", "--from", "5", "--to", "7"]);
    assert_code(&o, 0);
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].contains("0x00010205"), "{text}");
    assert!(lines[1].contains("\"value-6\""), "{text}");
    assert!(lines.iter().all(|l| l.contains(" data ")), "{text}");

    let o = run_in(dir.path(), &["dump", "--json", "--from", "99"]);
    assert_code(&o, 0);
    let rows: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["index"], 99);
    assert_eq!(rows[0]["term"], 2);
    assert_eq!(rows[0]["type"], "data");
    assert_eq!(rows[0]["size"], 4);
    assert_eq!(rows[0]["preview"]["hex"], true);
    assert_eq!(rows[1]["preview"]["text"], "value-100");
    // The whole log by default.
    assert_eq!(stdout(&run_in(dir.path(), &["dump"])).lines().count(), 100);
}

#[test]
fn dump_decodes_raft_entries() {
    let dir = tempfile::tempdir().unwrap();
    make_raft_store(dir.path());
    let o = run_in(dir.path(), &["dump", "--json", "--to", "2"]);
    assert_code(&o, 0);
    let rows: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["type"], "EntryConfChange");
    assert_eq!(rows[0]["preview"]["text"], "add 2");
    assert_eq!(rows[1]["type"], "EntryNormal");
    assert_eq!(rows[1]["size"], 6);
    // --raw shows the stored bytes: the raft entry's encoding.
    let o = run_in(dir.path(), &["dump", "--raw", "--json", "--to", "1"]);
    let row: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(row["type"], "data");
    let stored = raft_entry(1, EntryType::EntryConfChange, "add 2")
        .write_to_bytes()
        .unwrap();
    assert_eq!(row["size"], stored.len());
}

#[test]
fn verify_a_clean_log() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path(), 300);
    let o = run_in(dir.path(), &["verify"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("is clean"), "{}", stdout(&o));
    assert!(stdout(&o).contains("entries 1..=300"), "{}", stdout(&o));
    // Not a terminal: no progress bar.
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

/// Where entry `index` is, and the path of its segment.
fn locate(dir: &Path, index: u64) -> (EntryLoc, PathBuf) {
    let scan = scan_dir(dir).unwrap();
    let loc = *scan
        .entry_locations()
        .iter()
        .find(|l| l.index == index)
        .unwrap();
    (loc, scan.segments[loc.segment].path.clone())
}

fn xor_byte(path: &Path, at: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], at).unwrap();
}

#[test]
fn verify_names_the_file_and_offset_of_a_flipped_byte_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path(), 300);
    let (loc, path) = locate(dir.path(), 40);
    xor_byte(&path, loc.offset + u64::from(loc.len) - 2);
    let before = std::fs::read(&path).unwrap();
    let o = run_in(dir.path(), &["verify"]);
    assert_code(&o, 1);
    let err = stderr(&o);
    assert!(err.contains(path.to_str().unwrap()), "{err}");
    assert!(err.contains(&format!("at offset {}", loc.offset)), "{err}");
    assert!(err.contains("CRC mismatch"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn repair_cuts_a_torn_tail_and_keeps_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    make_raft_store(dir.path());
    let store = RaftLogStore::open(dir.path()).unwrap();
    store
        .append(&[raft_entry(21, EntryType::EntryNormal, "put k21")])
        .unwrap();
    drop(store);
    // A crash in the middle of writing entry 21, the last frame: its last
    // bytes never landed.
    let (loc, path) = locate(dir.path(), 21);
    let end = loc.offset + u64::from(loc.len);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0; 4], end - 4).unwrap();
    let torn = std::fs::read(&path).unwrap()[loc.offset as usize..(end - 4) as usize].to_vec();
    drop(f);

    let o = run_in(dir.path(), &["verify"]);
    assert_code(&o, 1);
    assert!(stderr(&o).starts_with("torn tail: "), "{}", stderr(&o));

    let o = run_in(dir.path(), &["repair"]);
    assert_code(&o, 0);
    let out = stdout(&o);
    let mut backup = path.as_os_str().to_owned();
    backup.push(format!(".torn-{}.bak", loc.offset));
    let backup = PathBuf::from(backup);
    assert!(out.contains(backup.to_str().unwrap()), "{out}");
    assert!(out.contains("entries 1..=20"), "{out}");
    // The backup holds the cut bytes (trailing zeros of the preallocated
    // space are not data), and the log is clean now.
    let saved = std::fs::read(&backup).unwrap();
    assert_eq!(saved, torn[..saved.len()]);
    assert!(torn[saved.len()..].iter().all(|&b| b == 0));
    assert_code(&run_in(dir.path(), &["verify"]), 0);
    assert_code(&run_in(dir.path(), &["repair"]), 0);
    let log = Log::open(
        dir.path(),
        Options::default().recovery_mode(RecoveryMode::AbsoluteConsistency),
    )
    .unwrap();
    assert_eq!(log.last_index(), 20);
    assert!(log.recovery_report().repairs.is_empty());
}

/// The case: a torn write of five entries after ten single ones.
/// `inspect` once said 1..=14 and `repair` cut at the torn frame, then
/// found "a write cut short" at the write's start and exited 1: it did
/// not converge. Now all three say what `Log::open` does, and one repair
/// is enough.
#[test]
fn a_torn_multi_entry_write_is_inspected_and_repaired_as_open_does() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default().preallocate(raftwal::Preallocate::None);
    let log = Log::open(dir.path(), opts.clone()).unwrap();
    for i in 1..=10 {
        log.append(&[Entry::new(i, 1, format!("entry {i}"))])
            .unwrap();
    }
    let five: Vec<Entry> = (11..=15)
        .map(|i| Entry::new(i, 1, format!("entry {i}")))
        .collect();
    log.append(&five).unwrap();
    drop(log);
    let path = scan_dir(dir.path()).unwrap().segments[0].path.clone();
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 20)
        .unwrap();

    let o = run_in(dir.path(), &["inspect", "--json"]);
    assert_eq!(json(&o)["last_index"], 10, "{}", stdout(&o));
    let o = run_in(dir.path(), &["repair"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("entries 1..=10"), "{}", stdout(&o));
    assert_code(&run_in(dir.path(), &["verify"]), 0);
    let log = Log::open(
        dir.path(),
        opts.recovery_mode(RecoveryMode::AbsoluteConsistency),
    )
    .unwrap();
    assert_eq!(log.last_index(), 10);
}

#[test]
fn repair_refuses_damage_mid_log_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path(), 300);
    let (loc, path) = locate(dir.path(), 40);
    xor_byte(&path, loc.offset + u64::from(loc.len) - 1);
    let files_before: Vec<PathBuf> = list(dir.path());
    let bytes_before = std::fs::read(&path).unwrap();

    let o = run_in(dir.path(), &["repair"]);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("not a torn tail"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(list(dir.path()), files_before);
    assert_eq!(std::fs::read(&path).unwrap(), bytes_before);

    let o = run_in(dir.path(), &["repair", "--dry-run", "--force"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("would cut"), "{}", stdout(&o));
    assert_eq!(list(dir.path()), files_before);

    let o = run_in(dir.path(), &["repair", "--force"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("entries 1..=39"), "{}", stdout(&o));
    let mut backup = path.as_os_str().to_owned();
    backup.push(format!(".cut-{}.bak", loc.offset));
    let saved = std::fs::read(PathBuf::from(backup)).unwrap();
    assert_eq!(
        saved[..],
        bytes_before[loc.offset as usize..][..saved.len()]
    );
    let dropped = list(dir.path())
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".dropped.bak"))
        .count();
    assert!(dropped > 0);
    let log = Log::open(
        dir.path(),
        Options::default().recovery_mode(RecoveryMode::AbsoluteConsistency),
    )
    .unwrap();
    assert_eq!(log.last_index(), 39);
    assert_eq!(log.get_entry(39).unwrap().data, vec![0, 1, 2, 39]);
}

#[test]
fn repair_refuses_damage_a_crash_cannot_leave_in_the_last_frame() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path(), 20);
    // The last frame (the state blob) gets a type byte no writer uses:
    // a torn write leaves real frames and zeros, never that.
    let scan = scan_dir(dir.path()).unwrap();
    let seg = scan.segments.last().unwrap();
    let last = scan.entry_locations().last().unwrap();
    let state_at = last.offset + u64::from(last.len);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&seg.path)
        .unwrap();
    f.write_all_at(&[0x77], state_at).unwrap();
    let o = run_in(dir.path(), &["repair"]);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("not a torn tail"), "{}", stderr(&o));
    assert!(Log::open(dir.path(), Options::default()).is_err());
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn a_locked_directory_is_read_but_not_repaired() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path(), 50);
    let log = Log::open(dir.path(), Options::default().segment_size(4096)).unwrap();
    let v = json(&run_in(dir.path(), &["inspect", "--json"]));
    assert_eq!(v["lock"], "locked");
    assert_eq!(v["last_index"], 50);
    assert_code(&run_in(dir.path(), &["verify"]), 0);
    assert_eq!(stdout(&run_in(dir.path(), &["dump"])).lines().count(), 50);
    let o = run_in(dir.path(), &["repair"]);
    assert_code(&o, 4);
    assert!(stderr(&o).contains("locked"), "{}", stderr(&o));
    // The probe did not disturb the log.
    log.append(&[Entry::new(51, 2, "more")]).unwrap();
}

#[test]
fn clear_errors_for_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    for cmd in ["inspect", "dump", "verify", "repair"] {
        let o = run_in(&missing, &[cmd]);
        assert_code(&o, 3);
        assert!(stderr(&o).contains("no such directory"), "{}", stderr(&o));
        let o = run_in(dir.path(), &[cmd]);
        assert_code(&o, 3);
        assert!(
            stderr(&o).contains("holds no raftwal log"),
            "{}",
            stderr(&o)
        );
    }
    // Nothing was created in the empty directory.
    assert!(list(dir.path()).is_empty());
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    assert_code(&run_in(&file, &["verify"]), 3);

    assert_code(&raftwal(&[]), 2);
    assert_code(&raftwal(&["frobnicate"]), 2);
    assert_code(&raftwal(&["inspect"]), 2);
    assert_code(&run_in(dir.path(), &["dump", "--from", "x"]), 2);
    assert_code(&run_in(dir.path(), &["verify", "--bogus"]), 2);
    let help = raftwal(&["--help"]);
    assert_code(&help, 0);
    assert!(stdout(&help).contains("Exit codes"), "{}", stdout(&help));
    let help = raftwal(&["repair", "--help"]);
    assert!(
        stdout(&help).contains("4  the directory is locked"),
        "{}",
        stdout(&help)
    );
}

#[test]
fn bench_prints_the_table_with_ratios() {
    let dir = tempfile::tempdir().unwrap();
    let o = raftwal(&[
        "bench",
        "--scale",
        "0.01",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_code(&o, 0);
    let out = stdout(&o);
    for want in [
        "W1 sync-1",
        "W2 sync-64",
        "W4 nosync",
        "R1 get",
        "R3 recover-small",
        "raftwal/raw",
    ] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
    // The temporary directory is gone.
    assert!(list(dir.path()).is_empty());
}

/// A store that applied a snapshot has nothing pending: `inspect` says
/// "pending" only for an `apply_snapshot` a crash interrupted (the state
/// says the log starts after the snapshot, and it does not yet).
#[test]
fn inspect_reports_only_what_is_really_pending() {
    let dir = tempfile::tempdir().unwrap();
    let store = RaftLogStore::open(dir.path()).unwrap();
    store.bootstrap(ConfState::from((vec![1], vec![]))).unwrap();
    drop(store);
    let text = stdout(&run_in(dir.path(), &["inspect"]));
    assert!(!text.contains("pending"), "{text}");
    assert!(text.contains("snapshot:   index 1 term 1"), "{text}");
}

/// An engine directory in small segments: group 1 with entries 21..=40
/// (1..=20 compacted away; entry 20 has term 2), group 2 with 26..=30, group 3 with a state blob
/// and no entries, group 7 compacted empty after index 5 (term 3); then a
/// reclaim frees the segments no group needs.
fn make_engine(dir: &Path) {
    let engine = Engine::open(dir, Options::default().segment_size(4096)).unwrap();
    // Entries 1..=20, compacted later, are large: they fill the first
    // segments, which the reclaim frees.
    let data = |g: u64, i: u64| match i {
        1..=20 => vec![b'.'; 400],
        _ => format!("g{g} entry {i}").into_bytes(),
    };
    for i in 1..=40u64 {
        let mut b = EngineBatch::new();
        b.group(1).push(i, 1 + i / 20, &data(1, i)).unwrap();
        if i <= 30 {
            b.group(2).push(i, 2, &data(2, i)).unwrap();
        }
        engine.write(&mut b).unwrap();
    }
    let mut b = EngineBatch::new();
    b.group(3).set_state(&b"state of 3"[..]);
    for i in 1..=5 {
        b.group(7).push(i, 3, b"seven").unwrap();
    }
    engine.write(&mut b).unwrap();
    let mut b = EngineBatch::new();
    b.compact(1, 21);
    b.compact(2, 26);
    b.compact(7, 6);
    engine.write(&mut b).unwrap();
    let r = engine.reclaim().unwrap();
    assert!(r.segments_freed > 0, "{r:?}");
    engine.sync().unwrap();
}

fn dump_rows(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn inspect_lists_an_engines_groups() {
    let dir = tempfile::tempdir().unwrap();
    make_engine(dir.path());
    let o = run_in(dir.path(), &["inspect"]);
    assert_code(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("(Engine)"), "{text}");
    assert!(text.contains("problems:   none"), "{text}");
    assert!(text.contains("engine:     4 groups"), "{text}");
    let row = |g: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(g))
            .unwrap_or_else(|| panic!("no group {g}:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(row("1")[..5], ["1", "21..=40", "20", "2", "none"], "{text}");
    assert_eq!(row("2")[..4], ["2", "26..=30", "5", "2"], "{text}");
    assert_eq!(
        row("3"),
        ["3", "no", "entries", "0", "0", "10", "B", "-"],
        "{text}"
    );
    assert_eq!(row("7")[..5], ["7", "no", "entries", "0", "3"], "{text}");

    let v = json(&run_in(dir.path(), &["inspect", "--json"]));
    assert_eq!(v["kind"], "engine");
    assert_eq!(v["engine"]["replayed"], true);
    assert_eq!(v["engine"]["group_count"], 4);
    let groups = v["engine"]["groups"].as_array().unwrap();
    let ids: Vec<u64> = groups
        .iter()
        .map(|g| g["group"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3, 7]);
    let g1 = &groups[0];
    assert_eq!(
        (g1["first_index"].as_u64(), g1["last_index"].as_u64()),
        (Some(21), Some(40))
    );
    assert_eq!(
        (g1["entries"].as_u64(), g1["prev_term"].as_u64()),
        (Some(20), Some(2))
    );
    // The reclaim freed the head: the oldest segment left is not the first,
    // and it is one the scan lists.
    let oldest = g1["oldest_segment_sequence"].as_u64().unwrap();
    assert!(oldest > 1, "{v}");
    let names: Vec<&str> = v["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&g1["oldest_segment"].as_str().unwrap()),
        "{v}"
    );
    assert!(
        text.contains(g1["oldest_segment"].as_str().unwrap()),
        "{text}"
    );
    assert_eq!(groups[2]["state_bytes"], 10);
    assert!(groups[2]["oldest_segment"].is_null());
    assert_eq!(groups[3]["first_index"], 6);

    // --group: that group alone.
    let o = run_in(dir.path(), &["inspect", "--group", "2"]);
    assert_code(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("(Engine, 4 groups)"), "{text}");
    assert!(text.contains("group:      2\n"), "{text}");
    assert!(
        text.contains("indexes 26..=30 (5 entries), term before the first 2"),
        "{text}"
    );
    assert!(!text.contains("21..=40"), "{text}");
    let v = json(&run_in(dir.path(), &["inspect", "--json", "--group", "3"]));
    assert_eq!(v["group"]["group"], 3);
    assert_eq!(v["group"]["state_bytes"], 10);
    assert_eq!(v["group_count"], 4);
}

#[test]
fn inspect_keeps_many_groups_readable() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), Options::default()).unwrap();
    let mut b = EngineBatch::new();
    for g in 1..=75 {
        b.group(g).push(1, 1, b"x").unwrap();
    }
    engine.write(&mut b).unwrap();
    drop(engine);
    let text = stdout(&run_in(dir.path(), &["inspect"]));
    let listed = text.lines().filter(|l| l.contains("  1..=1 ")).count();
    assert_eq!(listed, 50, "{text}");
    assert!(text.contains("... and 25 more"), "{text}");
    let v = json(&run_in(dir.path(), &["inspect", "--json"]));
    assert_eq!(v["engine"]["groups"].as_array().unwrap().len(), 75);
}

#[test]
fn dump_and_verify_a_group() {
    let dir = tempfile::tempdir().unwrap();
    make_engine(dir.path());
    let o = run_in(dir.path(), &["dump", "--group", "1"]);
    assert_code(&o, 0);
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 20, "{text}");
    assert!(lines[0].contains("\"g1 entry 21\""), "{text}");
    assert!(lines[19].contains("\"g1 entry 40\""), "{text}");

    let o = run_in(
        dir.path(),
        &[
            "dump", "--group", "2", "--json", "--from", "1", "--to", "27",
        ],
    );
    assert_code(&o, 0);
    let rows = dump_rows(&o);
    assert_eq!(rows.len(), 2, "{}", stdout(&o));
    assert_eq!(rows[0]["index"], 26);
    assert_eq!(rows[1]["preview"]["text"], "g2 entry 27");
    assert_eq!(rows[1]["term"], 2);
    assert_eq!(rows[1]["type"], "data");
    // A group with no entries prints nothing.
    let o = run_in(dir.path(), &["dump", "--group", "7"]);
    assert_code(&o, 0);
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    // Without --group: the stream's records, and a note.
    let o = run_in(dir.path(), &["dump"]);
    assert_code(&o, 0);
    assert!(stderr(&o).contains("--group ID"), "{}", stderr(&o));

    let o = run_in(dir.path(), &["verify"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("4 groups replay"), "{}", stdout(&o));
    let o = run_in(dir.path(), &["verify", "--group", "1"]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("group 1: 20 entries read back (21..=40)"),
        "{}",
        stdout(&o)
    );
}

/// A flipped byte in the stream's last record: the record's CRC catches
/// it (the replay checks every frame of a record with its group's salt, so
/// a group's read-back can only fail where the stream's scan does too).
/// `--group` still reads the group back as recovery would keep it.
#[test]
fn verify_and_dump_a_group_of_a_damaged_stream() {
    let dir = tempfile::tempdir().unwrap();
    make_engine(dir.path());
    let engine = Engine::open(dir.path(), Options::default().segment_size(4096)).unwrap();
    for i in 41..=43u64 {
        let mut b = EngineBatch::new();
        b.group(1)
            .push(i, 3, format!("g1 entry {i}").as_bytes())
            .unwrap();
        engine.write(&mut b).unwrap();
    }
    drop(engine);
    let scan = scan_dir(dir.path()).unwrap();
    let seg = &scan.segments.last().unwrap().path;
    let bytes = std::fs::read(seg).unwrap();
    let at = bytes
        .windows(11)
        .rposition(|w| w == b"g1 entry 43")
        .unwrap() as u64
        + 10;
    xor_byte(seg, at);

    let o = run_in(dir.path(), &["verify", "--group", "1"]);
    assert_code(&o, 1);
    assert!(stderr(&o).contains(seg.to_str().unwrap()), "{}", stderr(&o));
    assert!(stderr(&o).contains("CRC mismatch"), "{}", stderr(&o));
    let o = run_in(dir.path(), &["dump", "--group", "1", "--from", "40"]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o).lines().count(), 3, "{}", stdout(&o));
    assert!(stderr(&o).contains("before damage"), "{}", stderr(&o));
    let v = json(&run_in(dir.path(), &["inspect", "--json", "--group", "1"]));
    assert_eq!(v["group"]["last_index"], 42, "{v}");
}

/// The stream's last record does not apply: group 1's part holds entry 50,
/// which does not follow its 40.
fn append_bad_record(dir: &Path) -> (PathBuf, u64) {
    use raftwal::tools::frame::{self, FrameType};
    use raftwal::tools::proto::GroupOp;
    let log = Log::open(dir, Options::default().segment_size(4096)).unwrap();
    let next = log.last_index() + 1;
    let mut buf = Vec::new();
    let op = GroupOp {
        group: 1,
        ..Default::default()
    };
    frame::encode_message(&mut buf, FrameType::Group, 0x6752_6f75, &op);
    frame::encode_entry(&mut buf, frame::salt(1) ^ 0x6752_6f75, 50, 9, b"stray");
    log.append(&[Entry::new(next, 1, buf)]).unwrap();
    drop(log);
    let (loc, path) = locate(dir, next);
    (path, loc.offset)
}

#[test]
fn a_record_that_does_not_apply_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    make_engine(dir.path());
    let (path, offset) = append_bad_record(dir.path());
    assert!(Engine::open(dir.path(), Options::default()).is_err());

    let o = run_in(dir.path(), &["inspect"]);
    assert_code(&o, 0);
    let text = stdout(&o);
    let problem = text
        .lines()
        .find(|l| l.starts_with("problem:"))
        .unwrap_or_else(|| panic!("no problem:\n{text}"));
    assert!(problem.contains(path.to_str().unwrap()), "{text}");
    assert!(problem.contains("do not replay"), "{text}");
    assert!(text.contains("records do not replay"), "{text}");
    let v = json(&run_in(dir.path(), &["inspect", "--json"]));
    assert_eq!(v["engine"]["replayed"], false);
    let p = &v["problems"][0];
    assert_eq!(p["path"], path.to_str().unwrap());
    // Within the bad record's frame.
    let at = p["offset"].as_u64().unwrap();
    assert!(at > offset && at < offset + 200, "{v}");
    let v = json(&run_in(dir.path(), &["inspect", "--json", "--group", "1"]));
    assert!(v["group"].is_null(), "{v}");
    assert_eq!(v["problems"].as_array().unwrap().len(), 1);

    let o = run_in(dir.path(), &["verify"]);
    assert_code(&o, 1);
    assert!(
        stderr(&o).contains(path.to_str().unwrap()),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("Engine::open refuses"),
        "{}",
        stderr(&o)
    );
    let o = run_in(dir.path(), &["dump", "--group", "2"]);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("do not replay"), "{}", stderr(&o));
}

#[test]
fn group_errors() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path(), 10);
    for cmd in ["inspect", "dump", "verify"] {
        let o = run_in(dir.path(), &[cmd, "--group", "1"]);
        assert_code(&o, 2);
        assert!(
            stderr(&o).contains("--group needs an engine directory"),
            "{}",
            stderr(&o)
        );
        assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    }
    let eng = tempfile::tempdir().unwrap();
    make_engine(eng.path());
    for cmd in ["inspect", "dump", "verify"] {
        let o = run_in(eng.path(), &[cmd, "--group", "5"]);
        assert_code(&o, 3);
        assert!(
            stderr(&o).contains("holds no group 5: it holds 1, 2, 3, 7"),
            "{}",
            stderr(&o)
        );
    }
    assert_code(&run_in(eng.path(), &["dump", "--group", "x"]), 2);
}
