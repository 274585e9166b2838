use raftwal::{Entry, Log, Options};

fn e(i: u64, t: u64) -> Entry {
    Entry::new(i, t, format!("entry-{i}-{t}").into_bytes())
}

#[test]
fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default().segment_size(4096);
    {
        let log = Log::open(dir.path(), opts.clone()).unwrap();
        for i in 1..=500 {
            log.append(&[e(i, 1 + i / 100)]).unwrap();
        }
        log.set_state(&b"s1"[..]).unwrap();
        assert!(log.segments().len() > 3, "{:?}", log.segments());
        for i in 1..=500 {
            assert_eq!(log.get_entry(i).unwrap(), e(i, 1 + i / 100));
        }
        let all = log.entries(1, 501, None).unwrap();
        assert_eq!(all.len(), 500);
        // truncate inside active
        log.truncate_from_index(490).unwrap();
        log.append(&[e(490, 9)]).unwrap();
        // truncate below active
        log.truncate_from_index(300).unwrap();
        assert_eq!(log.last_index(), 299);
        log.append(&[e(300, 9), e(301, 9)]).unwrap();
        log.compact(200).unwrap();
        assert_eq!(log.term(199).unwrap(), 2);
    }
    let log = Log::open(dir.path(), opts.clone()).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (200, 301));
    assert_eq!(log.state().unwrap(), &b"s1"[..]);
    assert_eq!(log.term(199).unwrap(), 2);
    assert_eq!(log.get_entry(300).unwrap(), e(300, 9));
    assert_eq!(log.get_entry(250).unwrap(), e(250, 3));
    log.reset(1000, 7).unwrap();
    drop(log);
    let log = Log::open(dir.path(), opts).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (1000, 999));
    assert_eq!(log.term(999).unwrap(), 7);
    assert_eq!(log.state().unwrap(), &b"s1"[..]);
    assert_eq!(log.segments().len(), 1);
    assert!(matches!(Log::open(dir.path(), Options::default()), Err(raftwal::Error::Locked { .. })));
}
