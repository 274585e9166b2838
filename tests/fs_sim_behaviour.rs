//! The power-loss simulator itself (`tests/common/fs_sim.rs`): which
//! directory operations a power cut keeps under each `CutMode`, and the
//! gate that holds operations of the log's background threads. The crash
//! suites are only as good as these rules, so they are checked on their
//! own, with plain files and threads rather than a log.

#[path = "common/fs_sim.rs"]
mod fs_sim;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fs_sim::{CutMode, Fault, FaultFs, Held, Op, Rng, Scope, SimFs, Trigger, BACKGROUND, EIO};
use raftwal::fs::FileSystem;

/// The directory the tests work in.
const DIR: &str = "/sim/dir";

/// `name` in [`DIR`].
fn path(name: &str) -> PathBuf {
    Path::new(DIR).join(name)
}

/// A file system holding `names`, all durable (one byte each).
fn durable(names: &[&str]) -> SimFs {
    SimFs::from_image(names.iter().map(|n| (path(n), vec![1u8])))
}

/// The names in `fs`'s directory, sorted.
fn names(fs: &SimFs) -> Vec<String> {
    fs.paths()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Runs `f` on a thread named `name` (a log's background threads are
/// named `raftwal-*`) and returns its handle.
fn on_thread<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .unwrap()
}

/// Five unlinks of unrelated files with no directory sync after them: in
/// the default `Reorder` mode, cuts keep any subset (a later unlink without
/// an earlier one included), count what they reordered, and are
/// reproducible from the seed; in `Prefix` mode they keep only prefixes.
#[test]
fn reorder_keeps_any_subset_of_unrelated_operations_and_prefix_only_prefixes() {
    let all = ["a", "b", "c", "d", "e"];
    let fs = durable(&all);
    assert_eq!(fs.cut_mode(), CutMode::Reorder, "the default");
    for n in all {
        fs.remove(&path(n)).unwrap();
    }
    assert_eq!(fs.pending_dir_ops(), 5);
    let mut subsets = BTreeSet::new();
    let mut reordered = 0;
    for seed in 0..400 {
        let (img, st) = fs.cut_power_with_stats(&mut Rng::new(seed));
        let left = names(&img);
        assert_eq!(st.dir_ops_undone as usize, left.len(), "seed {seed}");
        // A unlink kept while an earlier one (a file earlier in the list)
        // was not: the image keeps an earlier file and lost a later one.
        let kept_after_lost = all.iter().enumerate().any(|(k, n)| {
            !left.contains(&n.to_string()) && all[..k].iter().any(|m| left.contains(&m.to_string()))
        });
        assert_eq!(
            st.dir_ops_reordered > 0,
            kept_after_lost,
            "seed {seed}: {left:?} {st:?}"
        );
        if kept_after_lost {
            reordered += 1;
        }
        // Deterministic from the seed, and the image inherits the mode.
        let again = fs.cut_power(&mut Rng::new(seed));
        assert_eq!(names(&again), left, "seed {seed}");
        assert_eq!(again.cut_mode(), CutMode::Reorder);
        subsets.insert(left);
    }
    assert!(reordered > 0, "no cut reordered the unlinks");
    assert_eq!(subsets.len(), 32, "every subset of 5 unlinks: {subsets:?}");

    fs.set_cut_mode(CutMode::Prefix);
    let mut prefixes = BTreeSet::new();
    for seed in 0..200 {
        let (img, st) = fs.cut_power_with_stats(&mut Rng::new(seed));
        let left = names(&img);
        assert_eq!(st.dir_ops_reordered, 0);
        let undone = st.dir_ops_undone as usize;
        assert_eq!(
            left,
            all[5 - undone..],
            "seed {seed}: a prefix of the unlinks"
        );
        assert_eq!(img.cut_mode(), CutMode::Prefix);
        prefixes.insert(left);
    }
    assert_eq!(prefixes.len(), 6, "every prefix");
    // `cut_power_as` overrides the mode for one cut.
    let any_reordered = (0..200).any(|seed| {
        fs.cut_power_as(CutMode::Reorder, &mut Rng::new(seed))
            .1
            .dir_ops_reordered
            > 0
    });
    assert!(any_reordered);
}

/// Operations on one name or one file keep their order: a file renamed
/// away and a new file created under its old name never leave the new file
/// without the rename, and a created-then-renamed file is never found
/// under its new name unless it was created. Unrelated operations between
/// them still reorder.
#[test]
fn operations_on_one_file_or_one_name_keep_their_order() {
    let fs = durable(&["a"]);
    let ids = |img: &SimFs, n: &str| img.read(&path(n));
    // Rename a -> b, create a new `a` (other content), and an unrelated
    // create-then-rename of x.tmp -> x.
    fs.rename(&path("a"), &path("b")).unwrap();
    let f = fs.create_new(&path("a")).unwrap();
    f.write_all_at(&[2u8], 0).unwrap();
    f.sync_data().unwrap();
    let t = fs.create_new(&path("x.tmp")).unwrap();
    t.write_all_at(&[3u8], 0).unwrap();
    t.sync_data().unwrap();
    fs.rename(&path("x.tmp"), &path("x")).unwrap();
    let mut seen = BTreeSet::new();
    let mut reordered = 0;
    for seed in 0..400 {
        let (img, st) = fs.cut_power_with_stats(&mut Rng::new(seed));
        let (a, b) = (ids(&img, "a"), ids(&img, "b"));
        let state = match (a.as_deref(), b.as_deref()) {
            (Some([1]), None) => "before the rename",
            (None, Some([1])) => "renamed",
            (Some([2]), Some([1])) => "renamed and re-created",
            other => panic!("seed {seed}: impossible a/b {other:?}"),
        };
        let x = match (ids(&img, "x.tmp").as_deref(), ids(&img, "x").as_deref()) {
            (None, None) => "no x",
            (Some([3]), None) => "x.tmp",
            (None, Some([3])) => "x",
            other => panic!("seed {seed}: impossible x {other:?}"),
        };
        reordered += u64::from(st.dir_ops_reordered > 0);
        seen.insert((state, x));
    }
    assert!(reordered > 0);
    // x's operations persisted ahead of the a/b ones, and the other way.
    assert!(seen.contains(&("before the rename", "x")), "{seen:?}");
    assert!(
        seen.contains(&("renamed and re-created", "no x")),
        "{seen:?}"
    );
    assert_eq!(seen.len(), 9, "{seen:?}");
}

/// A `sync_dir` makes everything pending durable: nothing to reorder.
#[test]
fn a_directory_sync_leaves_nothing_to_reorder() {
    let fs = durable(&["a", "b"]);
    fs.remove(&path("a")).unwrap();
    fs.remove(&path("b")).unwrap();
    fs.sync_dir(Path::new(DIR)).unwrap();
    assert_eq!(fs.pending_dir_ops(), 0);
    for seed in 0..20 {
        let (img, st) = fs.cut_power_with_stats(&mut Rng::new(seed));
        assert!(img.paths().is_empty());
        assert_eq!((st.dir_ops_undone, st.dir_ops_reordered), (0, 0));
    }
}

/// The gate holds `remove` on the threads it names (not the caller's),
/// until the test releases it: then the unlink happens.
#[test]
fn the_gate_holds_background_removes_until_released() {
    let fs = durable(&["a", "b"]);
    fs.gate().hold(Held::Remove, BACKGROUND);
    assert!(fs.gate().is_holding(Held::Remove));
    let bg = {
        let fs = fs.clone();
        on_thread("raftwal-remove", move || fs.remove(&path("a")))
    };
    assert!(fs
        .gate()
        .wait_for_waiting(Held::Remove, 1, Duration::from_secs(20)));
    assert_eq!(fs.gate().waiting_ops()[0].1, path("a"));
    assert_eq!(fs.gate().waiting_ops()[0].2, "raftwal-remove");
    // The caller's own unlinks are not held.
    fs.remove(&path("b")).unwrap();
    assert_eq!(names(&fs), ["a"], "a is held, b is gone");
    // A thread of another name is not held either.
    let other = {
        let fs = fs.clone();
        on_thread("someone-else", move || fs.sync_dir(Path::new(DIR)))
    };
    other.join().unwrap().unwrap();
    fs.gate().release();
    bg.join().unwrap().unwrap();
    assert!(names(&fs).is_empty());
    assert_eq!(fs.gate().arrived(Held::Remove), 1);
    assert_eq!(fs.gate().waiting(), 0);
}

/// A power cut (the test's `kill`, or an armed trigger firing on another
/// thread) fails what the gate holds with `EIO`: the files stay.
#[test]
fn a_power_cut_fails_held_operations() {
    // kill()
    let fs = durable(&["a"]);
    fs.gate().hold(Held::Remove, BACKGROUND);
    let bg = {
        let fs = fs.clone();
        on_thread("raftwal-remove", move || fs.remove(&path("a")))
    };
    assert!(fs
        .gate()
        .wait_for_waiting(Held::Remove, 1, Duration::from_secs(20)));
    fs.kill();
    let e = bg.join().unwrap().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(EIO));
    assert_eq!(names(&fs.cut_power(&mut Rng::new(1))), ["a"]);

    // A trigger firing on the caller's thread, with a sync_data and a
    // sync_dir of background threads held.
    let fs = durable(&["a"]);
    let f = fs.open(&path("a")).unwrap();
    f.write_all_at(&[9u8], 0).unwrap();
    fs.gate().hold(Held::Sync, "raftwal-seal");
    fs.gate().hold(Held::SyncDir, "raftwal-seal");
    let sealer = {
        let f = Arc::clone(&f);
        on_thread("raftwal-seal", move || f.sync_data())
    };
    let dirsync = {
        let fs = fs.clone();
        on_thread("raftwal-seal-dir", move || fs.sync_dir(Path::new(DIR)))
    };
    assert!(fs
        .gate()
        .wait_for_waiting(Held::Sync, 1, Duration::from_secs(20)));
    assert!(fs
        .gate()
        .wait_for_waiting(Held::SyncDir, 1, Duration::from_secs(20)));
    fs.arm(Trigger::Op(1));
    assert!(f.write_all_at(&[7u8], 0).is_err(), "the power went off");
    assert_eq!(
        sealer.join().unwrap().unwrap_err().raw_os_error(),
        Some(EIO)
    );
    assert_eq!(
        dirsync.join().unwrap().unwrap_err().raw_os_error(),
        Some(EIO)
    );
    // The held sync never happened: the unsynced write may be lost.
    let lost = (0..50).any(|s| fs.cut_power(&mut Rng::new(s)).read(&path("a")) == Some(vec![1]));
    assert!(lost, "the write was synced after all");
}

/// With the gate holding background syncs, a file's unsynced write is not
/// made durable by a background `sync_data` until the gate opens.
#[test]
fn a_held_sync_syncs_once_released() {
    let fs = durable(&["a"]);
    let f = fs.open(&path("a")).unwrap();
    f.write_all_at(&[5u8], 0).unwrap();
    fs.gate().hold(Held::Sync, BACKGROUND);
    let bg = {
        let f = Arc::clone(&f);
        on_thread("raftwal-seal", move || f.sync_data())
    };
    assert!(fs
        .gate()
        .wait_for_waiting(Held::Sync, 1, Duration::from_secs(20)));
    assert!((0..50).any(|s| fs.cut_power(&mut Rng::new(s)).read(&path("a")) == Some(vec![1])));
    assert!(!fs.is_synced(&path("a")));
    fs.gate().release();
    bg.join().unwrap().unwrap();
    assert!(fs.is_synced(&path("a")));
    for s in 0..20 {
        assert_eq!(
            fs.cut_power(&mut Rng::new(s)).read(&path("a")),
            Some(vec![5])
        );
    }
}

/// `FaultFs` over `SimFs`: failing the first background unlink once leaves
/// that file; the next background unlink and the caller's unlinks go
/// through.
#[test]
fn fault_fs_over_sim_fs_fails_one_background_unlink() {
    let sim = durable(&["a", "b", "c"]);
    let (ffs, faults) = FaultFs::new(sim.handle());
    faults.fail_nth(Op::Remove, 1, Fault::Eio, Scope::Background);
    let ffs: Arc<dyn FileSystem> = ffs.handle();
    ffs.remove(&path("c")).unwrap(); // the caller's: not counted
    let bg = {
        let ffs = Arc::clone(&ffs);
        on_thread("raftwal-remove", move || {
            (ffs.remove(&path("a")), ffs.remove(&path("b")))
        })
    };
    let (a, b) = bg.join().unwrap();
    assert_eq!(a.unwrap_err().raw_os_error(), Some(EIO));
    b.unwrap();
    assert_eq!(names(&sim), ["a"]);
    assert_eq!(faults.injected_of(Op::Remove), 1);
    assert_eq!(faults.count(Op::Remove, Scope::Background), 2);
}

/// A held operation goes ahead once the gate's timeout has passed (the
/// bound that keeps a test from hanging when the code under test waits for
/// the held thread).
#[test]
fn a_held_operation_goes_ahead_after_the_timeout() {
    let fs = durable(&["a"]);
    fs.gate().set_timeout(Duration::from_millis(20));
    fs.gate().hold(Held::Remove, BACKGROUND);
    let bg = {
        let fs = fs.clone();
        on_thread("raftwal-remove", move || fs.remove(&path("a")))
    };
    bg.join().unwrap().unwrap();
    assert!(names(&fs).is_empty());
    assert_eq!(fs.gate().arrived(Held::Remove), 1);
    assert!(fs.gate().is_holding(Held::Remove), "still holding the next");
}

/// `Faults::fail_nth_at` fails an operation on one path only, whichever
/// order the files are handled in.
#[test]
fn fault_fs_fails_the_unlink_of_one_given_file() {
    let sim = durable(&["a", "b", "c"]);
    let (ffs, faults) = FaultFs::new(sim.handle());
    faults.fail_nth_at(Op::Remove, &path("b"), 1, Fault::Eio, Scope::Background);
    let ffs: Arc<dyn FileSystem> = ffs.handle();
    let bg = {
        let ffs = Arc::clone(&ffs);
        on_thread("raftwal-remove", move || {
            ["c", "b", "a"].map(|n| ffs.remove(&path(n)).map_err(|e| e.raw_os_error()))
        })
    };
    assert_eq!(bg.join().unwrap(), [Ok(()), Err(Some(EIO)), Ok(())]);
    assert_eq!(names(&sim), ["b"]);
    // Once: the next unlink of b goes through.
    let again = {
        let ffs = Arc::clone(&ffs);
        on_thread("raftwal-remove", move || ffs.remove(&path("b")))
    };
    again.join().unwrap().unwrap();
    assert!(names(&sim).is_empty());
}
