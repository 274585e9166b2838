//! What a `RaftLogStore` keeps in a log directory, decoded read-only: its
//! state blob (hard state, conf state, current snapshot), its snapshot files
//! and the raft entries in its log entries.
//!
//! `RaftLogStore` itself can only be opened with the directory's lock, which
//! a running node holds, so the state blob is decoded here from the bytes
//! [`raftwal::tools::inspect`] finds. `StoredState` is the `RaftState`
//! message of `proto/raftwal.proto`, shared with `src/raft/`.

use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry as RaftEntry, EntryType, HardState};
use serde::Serialize;

/// The `StoredState` format version `RaftLogStore` writes.
const STATE_FORMAT: u32 = 1;

/// `RaftLogStore`'s state blob: the `RaftState` message of `proto/raftwal.proto`.
use raftwal::tools::proto::RaftState as StoredState;

/// A `RaftLogStore`'s state, for display.
#[derive(Debug, Clone, Serialize)]
pub struct RaftState {
    pub hard_state: HardStateView,
    pub conf_state: ConfStateView,
    /// `(index, term)` of the snapshot the state names, if any.
    pub snapshot: Option<(u64, u64)>,
    /// The log must start after this `(index, term)` (an `apply_snapshot`
    /// whose log reset was interrupted; `RaftLogStore::open` finishes it).
    pub log_start: Option<(u64, u64)>,
}

/// raft's `HardState`.
#[derive(Debug, Clone, Serialize)]
pub struct HardStateView {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

/// raft's `ConfState`.
#[derive(Debug, Clone, Serialize)]
pub struct ConfStateView {
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub voters_outgoing: Vec<u64>,
    pub learners_next: Vec<u64>,
    pub auto_leave: bool,
}

/// Decodes a state blob as a `RaftLogStore` state; `None` when it is not
/// one (a plain `Log`'s own blob).
pub fn decode_state(blob: &[u8]) -> Option<RaftState> {
    let s: StoredState = prost::Message::decode(blob).ok()?;
    if s.format != STATE_FORMAT {
        return None;
    }
    let hs = HardState::parse_from_bytes(&s.hard_state).ok()?;
    let cs = ConfState::parse_from_bytes(&s.conf_state).ok()?;
    Some(RaftState {
        hard_state: HardStateView {
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
        },
        conf_state: ConfStateView {
            voters: cs.voters.clone(),
            learners: cs.learners.clone(),
            voters_outgoing: cs.voters_outgoing.clone(),
            learners_next: cs.learners_next.clone(),
            auto_leave: cs.auto_leave,
        },
        snapshot: (s.snapshot_index != 0).then_some((s.snapshot_index, s.snapshot_term)),
        log_start: (s.log_start_index != 0).then_some((s.log_start_index, s.log_start_term)),
    })
}

/// A snapshot file of a `RaftLogStore`.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotFile {
    pub path: PathBuf,
    pub index: u64,
    pub term: u64,
    pub size: u64,
    /// Whether the state blob names it (the others are left-overs that
    /// `RaftLogStore::open` removes).
    pub current: bool,
}

/// `snapshot-{index:016x}-{term:016x}.snap` -> `(index, term)`.
fn parse_snapshot_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    let (index, term) = stem.split_once('-')?;
    if index.len() != 16 || term.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(index, 16).ok()?,
        u64::from_str_radix(term, 16).ok()?,
    ))
}

/// The snapshot files in `dir`, oldest first.
pub fn snapshot_files(
    dir: &Path,
    current: Option<(u64, u64)>,
) -> std::io::Result<Vec<SnapshotFile>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some((index, term)) = name.to_str().and_then(parse_snapshot_name) else {
            continue;
        };
        out.push(SnapshotFile {
            path: entry.path(),
            index,
            term,
            size: entry.metadata()?.len(),
            current: current == Some((index, term)),
        });
    }
    out.sort_by_key(|s| (s.index, s.term));
    Ok(out)
}

/// A raft entry decoded from a log entry's data.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// `EntryNormal`, `EntryConfChange` or `EntryConfChangeV2`.
    pub kind: &'static str,
    /// The raft entry's own data.
    pub data: Vec<u8>,
}

/// Decodes `data` as the raft entry a `RaftLogStore` stores at `index` with
/// `term`; `None` when it is not one.
pub fn decode_entry(index: u64, term: u64, data: &[u8]) -> Option<Decoded> {
    let e = RaftEntry::parse_from_bytes(data).ok()?;
    if e.index != index || e.term != term {
        return None;
    }
    let kind = match e.get_entry_type() {
        EntryType::EntryNormal => "EntryNormal",
        EntryType::EntryConfChange => "EntryConfChange",
        EntryType::EntryConfChangeV2 => "EntryConfChangeV2",
    };
    Some(Decoded {
        kind,
        data: e.data.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names() {
        assert_eq!(
            parse_snapshot_name("snapshot-0000000000000064-0000000000000002.snap"),
            Some((100, 2))
        );
        assert_eq!(parse_snapshot_name("snapshot-64-2.snap"), None);
        assert_eq!(
            parse_snapshot_name("snapshot-0000000000000064-0000000000000002.tmp"),
            None
        );
    }

    #[test]
    fn entries_decode_only_when_they_match() {
        let mut e = RaftEntry {
            index: 7,
            term: 2,
            data: b"cc".to_vec().into(),
            ..Default::default()
        };
        e.set_entry_type(EntryType::EntryConfChange);
        let bytes = e.write_to_bytes().unwrap();
        let d = decode_entry(7, 2, &bytes).unwrap();
        assert_eq!((d.kind, &d.data[..]), ("EntryConfChange", &b"cc"[..]));
        assert!(decode_entry(8, 2, &bytes).is_none());
        assert!(decode_entry(7, 2, b"\xff\xff not protobuf").is_none());
    }

    #[test]
    fn a_plain_blob_is_not_a_raft_state() {
        assert!(decode_state(b"hard state").is_none());
        let s = StoredState {
            format: STATE_FORMAT,
            hard_state: HardState::default().write_to_bytes().unwrap().into(),
            conf_state: ConfState::default().write_to_bytes().unwrap().into(),
            snapshot_index: 5,
            snapshot_term: 1,
            log_start_index: 0,
            log_start_term: 0,
        };
        let blob = prost::Message::encode_to_vec(&s);
        let r = decode_state(&blob).unwrap();
        assert_eq!(r.snapshot, Some((5, 1)));
        assert_eq!(r.log_start, None);
    }
}
