use super::*;
use crate::fs::StdFileSystem;

/// `StdFileSystem` whose directory fsync first runs a hook, once.
#[derive(Default)]
struct HookFs {
    hook: parking_lot::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for HookFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HookFs")
    }
}

impl FileSystem for HookFs {
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        StdFileSystem.create_dir_all(dir)
    }
    fn create_new(&self, path: &Path) -> std::io::Result<Arc<dyn FileHandle>> {
        StdFileSystem.create_new(path)
    }
    fn create(&self, path: &Path) -> std::io::Result<Arc<dyn FileHandle>> {
        StdFileSystem.create(path)
    }
    fn open(&self, path: &Path) -> std::io::Result<Arc<dyn FileHandle>> {
        StdFileSystem.open(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        StdFileSystem.rename(from, to)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        StdFileSystem.remove(path)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        StdFileSystem.list(dir)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        let hook = self.hook.lock().take();
        if let Some(hook) = hook {
            hook();
        }
        StdFileSystem.sync_dir(dir)
    }
    fn lock(&self, path: &Path) -> std::io::Result<Box<dyn std::any::Any + Send + Sync>> {
        StdFileSystem.lock(path)
    }
}

/// A tracker over one new file `a` in a temporary directory.
fn one_file() -> (
    tempfile::TempDir,
    Arc<dyn FileHandle>,
    PathBuf,
    Arc<Durability>,
) {
    let dir = tempfile::tempdir().unwrap();
    let fs: Arc<dyn FileSystem> = Arc::new(StdFileSystem);
    let p = dir.path().join("a");
    let f = fs.create(&p).unwrap();
    let d = Durability::new(
        Arc::clone(&f),
        p.clone(),
        fs,
        dir.path(),
        SyncPolicy::Manual,
    );
    (dir, f, p, d)
}

#[test]
fn a_directory_fsync_covers_only_the_rolls_made_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let hook_fs = Arc::new(HookFs::default());
    let fs: Arc<dyn FileSystem> = hook_fs.clone();
    let file = |name: &str| {
        let p = dir.path().join(name);
        (StdFileSystem.create(&p).unwrap(), p)
    };
    let (f1, p1) = file("a");
    let (f2, p2) = file("b");
    let (f3, p3) = file("c");
    let d = Durability::new(
        Arc::clone(&f1),
        p1.clone(),
        fs,
        dir.path(),
        SyncPolicy::Manual,
    );
    d.issued(&f1, &p1);
    d.rolled_to(&f2, &p2);
    d.issued(&f2, &p2);
    // While the sealer's directory fsync for roll 1 runs, a sync round
    // covers roll 1 and roll 2 happens: that fsync may have started
    // before roll 2's rename, so roll 2's entry stays unsynced.
    let d2 = Arc::clone(&d);
    *hook_fs.hook.lock() = Some(Box::new(move || {
        d2.sync_all().unwrap();
        d2.rolled_to(&f3, &p3);
        d2.issued(&f3, &p3);
    }));
    d.sync_dir_if_due().unwrap();
    let s = d.state.lock();
    assert_eq!(
        s.dir_rolls.len(),
        1,
        "roll 2's directory entry is still due"
    );
    assert_eq!(s.synced, 2, "nothing after roll 2 is durable");
    drop(s);
    assert!(d.dirty());
    d.sync_all().unwrap();
    assert!(!d.dirty());
    assert_eq!(d.counters().1, 3);
}

#[test]
fn a_roll_keeps_the_log_dirty_until_a_round_syncs_it() {
    let dir = tempfile::tempdir().unwrap();
    let fs: Arc<dyn FileSystem> = Arc::new(StdFileSystem);
    let file = |name: &str| {
        let p = dir.path().join(name);
        (fs.create(&p).unwrap(), p)
    };
    let (f1, p1) = file("a");
    let (f2, p2) = file("b");
    let (f3, p3) = file("c");
    let d = Durability::new(
        Arc::clone(&f1),
        p1.clone(),
        Arc::clone(&fs),
        dir.path(),
        SyncPolicy::Manual,
    );
    d.issued(&f1, &p1);
    d.issued(&f1, &p1);
    d.rolled_to(&f2, &p2);
    d.issued(&f2, &p2);
    assert!(d.dirty());
    // The sealer's sync of the old file makes its writes durable, but
    // nothing after the roll (the new header and name are unsynced).
    d.file_synced(&f1);
    assert_eq!(d.counters().1, 2);
    assert!(d.dirty());
    d.sync_all().unwrap();
    assert_eq!(d.counters().1, 3);
    assert!(!d.dirty());
    // A roll with no write after it still needs a round before the log
    // is clean (a write marked prior-synced must find its header
    // durable), and `sync_all` runs one.
    d.rolled_to(&f3, &p3);
    assert!(d.dirty());
    let rounds = d.counters().2;
    d.sync_all().unwrap();
    assert_eq!(d.counters().2, rounds + 1);
    assert!(!d.dirty());
}

#[test]
fn a_blocking_writer_gathers_the_writes_the_last_round_suggests_and_no_more() {
    let (_dir, f, p, d) = one_file();
    // A round that covered three writes (three writers, say).
    for _ in 0..3 {
        d.issued(&f, &p);
    }
    d.wait_blocking(3).unwrap();
    assert_eq!(d.state.lock().last_covered, 3);
    // A writer alone now: it gathers for a while, nobody comes, and its
    // round covers its own write; the next one does not wait.
    let t = d.issued(&f, &p);
    d.wait_blocking(t.sequence()).unwrap();
    assert_eq!(d.state.lock().last_covered, 1);
    // With two writes issued while the last round covered one, the
    // round covers both.
    d.issued(&f, &p);
    let t = d.issued(&f, &p);
    d.wait_blocking(t.sequence()).unwrap();
    assert!(t.is_durable());
    assert_eq!(d.counters(), (6, 6, 3));
    // A writer gathering (the last round covered two) while another
    // thread writes: both end durable, whichever runs the round.
    let t = d.issued(&f, &p);
    let d2 = Arc::clone(&d);
    let (f2, p2) = (Arc::clone(&f), p.clone());
    let other = std::thread::spawn(move || {
        let t = d2.issued(&f2, &p2);
        d2.wait_blocking(t.sequence())
    });
    d.wait_blocking(t.sequence()).unwrap();
    other.join().unwrap().unwrap();
    assert_eq!(d.counters().1, 8);
}

#[test]
fn a_ticket_leaves_rounds_to_the_pipeline_while_it_runs_and_not_after() {
    let (_dir, f, p, d) = one_file();
    assert!(d.start_syncer());
    assert!(d.state.lock().pipeline);
    for _ in 0..3 {
        let t = d.issued(&f, &p);
        t.wait().unwrap();
        assert!(t.is_durable());
    }
    // A ticket taken while the pipeline ran, waited on after it stopped
    // (the log dropped): its waiter runs the round itself.
    let t = d.issued(&f, &p);
    d.stop_syncer();
    assert!(!d.state.lock().pipeline);
    t.wait().unwrap();
    assert_eq!(d.counters().1, 4);
}
