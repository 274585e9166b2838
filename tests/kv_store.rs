//! The key-value store example (`examples/kv_store.rs`): its operations,
//! its recovery, and its checkpoint's failure behaviour.

#[path = "../examples/kv_store.rs"]
#[allow(dead_code)]
mod kv_store;

use std::path::Path;

use kv_store::KvStore;

fn open(dir: &Path) -> KvStore {
    KvStore::open(dir).unwrap()
}

#[test]
fn set_get_delete_len_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut kv = open(dir.path());
    assert!(kv.is_empty());
    kv.set("b", "2").unwrap();
    kv.set("a", "1").unwrap();
    kv.set("c", Vec::new()).unwrap();
    kv.set("a", "one").unwrap();
    assert_eq!(kv.get("a"), Some(&b"one"[..]));
    assert_eq!(kv.get("c"), Some(&b""[..]));
    assert_eq!(kv.get("zzz"), None);
    assert_eq!(kv.len(), 3);
    assert_eq!(kv.keys(), ["a", "b", "c"]);
    assert!(kv.delete("b").unwrap());
    assert!(!kv.delete("b").unwrap());
    assert_eq!(kv.keys(), ["a", "c"]);
    // A delete of a missing key writes nothing.
    assert_eq!(kv.log().last_index(), 5);
}

#[test]
fn recovers_after_a_drop() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut kv = open(dir.path());
        for i in 0..100 {
            kv.set(&format!("k{i:03}"), format!("v{i}")).unwrap();
        }
        kv.delete("k050").unwrap();
        kv.set("k001", "changed").unwrap();
    }
    let kv = open(dir.path());
    assert_eq!(kv.len(), 99);
    assert_eq!(kv.get("k001"), Some(&b"changed"[..]));
    assert_eq!(kv.get("k050"), None);
    assert_eq!(kv.get("k099"), Some(&b"v99"[..]));
}

#[test]
fn recovers_from_a_checkpoint_and_the_writes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut kv = open(dir.path());
        for i in 0..50 {
            kv.set(&format!("k{i}"), "old").unwrap();
        }
        let index = kv.checkpoint().unwrap();
        assert_eq!(index, 50);
        assert_eq!(kv.log().first_index(), 51);
        kv.set("k0", "new").unwrap();
        kv.delete("k1").unwrap();
        kv.set("extra", "x").unwrap();
    }
    let mut kv = open(dir.path());
    assert_eq!(kv.len(), 50);
    assert_eq!(kv.get("k0"), Some(&b"new"[..]));
    assert_eq!(kv.get("k1"), None);
    assert_eq!(kv.get("k2"), Some(&b"old"[..]));
    assert_eq!(kv.get("extra"), Some(&b"x"[..]));
    // A second checkpoint supersedes the first; an empty store works too.
    assert_eq!(kv.checkpoint().unwrap(), 53);
    for k in kv.keys() {
        kv.delete(&k).unwrap();
    }
    kv.checkpoint().unwrap();
    drop(kv);
    assert!(open(dir.path()).is_empty());
}

#[test]
fn a_failed_checkpoint_leaves_the_log_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut kv = open(dir.path());
    for i in 0..20 {
        kv.set(&format!("k{i}"), "v").unwrap();
    }
    // A directory where the snapshot's temporary file must go.
    std::fs::create_dir(dir.path().join("snapshot.kv.tmp")).unwrap();
    let err = kv.checkpoint().unwrap_err();
    assert!(err.to_string().contains("snapshot"), "{err}");
    assert_eq!(kv.log().first_index(), 1);
    assert!(!dir.path().join("snapshot.kv").exists());
    kv.set("after", "failure").unwrap();
    drop(kv);
    let kv = open(dir.path());
    assert_eq!(kv.len(), 21);
    assert_eq!(kv.log().first_index(), 1);
}

#[test]
fn a_crash_between_snapshot_and_compaction_replays_what_is_newer() {
    let ops = |kv: &mut KvStore| {
        kv.set("a", "1").unwrap();
        kv.set("b", "1").unwrap();
        kv.delete("b").unwrap();
    };
    // The snapshot of the first three operations...
    let snap_dir = tempfile::tempdir().unwrap();
    let mut kv = open(snap_dir.path());
    ops(&mut kv);
    assert_eq!(kv.checkpoint().unwrap(), 3);
    drop(kv);
    // ...next to a log that holds them all, uncompacted (the crash came
    // after the snapshot's rename, before the compaction), and one more.
    let dir = tempfile::tempdir().unwrap();
    let mut kv = open(dir.path());
    ops(&mut kv);
    kv.set("b", "2").unwrap();
    drop(kv);
    std::fs::copy(
        snap_dir.path().join("snapshot.kv"),
        dir.path().join("snapshot.kv"),
    )
    .unwrap();
    let kv = open(dir.path());
    assert_eq!(kv.log().first_index(), 1);
    assert_eq!(kv.keys(), ["a", "b"]);
    assert_eq!(kv.get("b"), Some(&b"2"[..]));
}

#[test]
fn a_log_compacted_past_the_snapshot_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut kv = open(dir.path());
    kv.set("a", "1").unwrap();
    kv.checkpoint().unwrap();
    kv.set("b", "1").unwrap();
    drop(kv);
    std::fs::remove_file(dir.path().join("snapshot.kv")).unwrap();
    let err = KvStore::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("snapshot only covers"), "{err}");
}

#[test]
fn a_corrupt_snapshot_is_an_error_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut kv = open(dir.path());
        for i in 0..10 {
            kv.set(&format!("k{i}"), "value").unwrap();
        }
        kv.checkpoint().unwrap();
    }
    let path = dir.path().join("snapshot.kv");
    let good = std::fs::read(&path).unwrap();

    // A flipped data byte: CRC mismatch.
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    let err = KvStore::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("CRC"), "{err}");

    // A length field claiming more than the file holds: refused before
    // anything is allocated.
    let mut bad = good.clone();
    bad[28..36].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &bad).unwrap();
    let err = KvStore::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("bytes of data"), "{err}");

    // Cut short, and not a snapshot at all.
    std::fs::write(&path, &good[..20]).unwrap();
    assert!(KvStore::open(dir.path()).is_err());
    std::fs::write(&path, b"hello, this is not a snapshot file at all").unwrap();
    let err = KvStore::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("magic"), "{err}");

    // Put back, it opens again.
    std::fs::write(&path, &good).unwrap();
    assert_eq!(open(dir.path()).len(), 10);
}
