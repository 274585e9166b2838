//! One open `Log` per directory: a second open, from this process or
//! another, fails with `Error::Locked` naming the directory, and succeeds
//! once the first is dropped (also when that open had failed).

mod common;

use common::{entries, flip_byte, opts, segment_files, Model};
use raftwal::{Error, Log, RecoveryMode};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

const CHILD_DIR: &str = "RAFTWAL_TEST_LOCK_CHILD_DIR";
const CHILD_READY: &str = "raftwal-lock-child: holding the log";

fn expect_locked(dir: &Path) {
    match Log::open(dir, opts()) {
        Err(Error::Locked { dir: d }) => {
            assert_eq!(d, dir);
            let msg = Error::Locked { dir: d }.to_string();
            assert!(msg.contains(&dir.display().to_string()), "{msg}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn second_open_in_process_is_locked_until_drop() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::new();
    let log = Log::open(dir.path(), opts()).unwrap();
    let es = entries(1, 150, 1);
    log.append(&es).unwrap();
    m.append(&es);
    expect_locked(dir.path());
    // The failed open changed nothing and did not disturb the first log.
    let es = entries(150, 160, 2);
    log.append(&es).unwrap();
    m.append(&es);
    m.check(&log);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    m.check(&log);
    expect_locked(dir.path());
    drop(log);
    // Open and drop in a tight loop: the lock is always released on drop.
    for _ in 0..20 {
        let log = Log::open(dir.path(), opts()).unwrap();
        let lo = m.last() + 1;
        let es = entries(lo, lo + 40, 3);
        log.append(&es).unwrap();
        m.append(&es);
    }
    let log = Log::open(dir.path(), opts()).unwrap();
    m.check(&log);
}

#[test]
fn a_failed_open_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    log.append(&entries(1, 5, 1)).unwrap();
    log.append(&entries(5, 9, 1)).unwrap();
    drop(log);
    let last = segment_files(dir.path()).pop().unwrap();
    let f = common::entry_frames(&last)[0];
    flip_byte(&last, f.offset + 9);
    let strict = opts().recovery_mode(RecoveryMode::AbsoluteConsistency);
    assert!(matches!(
        Log::open(dir.path(), strict),
        Err(Error::Corruption { .. })
    ));
    flip_byte(&last, f.offset + 9);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.last_index(), 8);
}

/// Run by `second_open_from_another_process_is_locked` in a child process:
/// opens the log named by the environment, says so, and holds it until its
/// standard input closes.
#[test]
#[ignore = "a helper run in a child process"]
fn child_holds_the_lock() {
    let dir = std::env::var(CHILD_DIR).expect("run by the parent test");
    let log = Log::open(&dir, opts()).unwrap();
    println!("{CHILD_READY}");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).unwrap() > 0 {}
    drop(log);
}

#[test]
fn second_open_from_another_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    log.append(&entries(1, 10, 1)).unwrap();
    drop(log);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_holds_the_lock",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.any(|l| l.unwrap().contains(CHILD_READY));
    assert!(ready, "the child never opened the log");
    expect_locked(dir.path());
    drop(child.stdin.take()); // the child drops its log and exits
    for l in lines {
        l.unwrap(); // read the child's output to its end
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "child failed: {status}");
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.last_index(), 9);
}
