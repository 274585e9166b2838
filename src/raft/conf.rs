//! Raft configurations as the log's conf-change entries make them: the
//! `ConfState` in force at an index, computed from an earlier one by
//! applying the conf changes in between with raft-rs's own rules (a
//! throwaway `RawNode` over a `MemStorage`, so joint consensus and learners
//! behave exactly as in the application's nodes).

use protobuf::Message as PbMessage;
use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType};
use raft::storage::MemStorage;
use raft::{Config, RawNode};

use crate::error::{Error, Result};

/// Whether `e` changes the application's state machine: a normal entry
/// with data. An empty normal entry (a new leader's) and a conf change do
/// not (a conf change changes the configuration, which a snapshot's
/// `ConfState` carries).
pub(crate) fn carries_data(e: &Entry) -> bool {
    e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty()
}

/// Whether `to` is a member of `cs` that can restore a snapshot carrying it
/// (raft-rs refuses one otherwise): a voter, a learner, or an outgoing
/// voter of a joint configuration. Peer 0 stands for any.
pub(crate) fn has_member(cs: &ConfState, to: u64) -> bool {
    to == 0
        || cs
            .get_voters()
            .iter()
            .chain(cs.get_learners())
            .chain(cs.get_voters_outgoing())
            .any(|&id| id == to)
}

/// Applies conf changes to a `ConfState`, one entry at a time.
pub(crate) struct ConfReplay {
    node: RawNode<MemStorage>,
    conf: ConfState,
}

impl ConfReplay {
    /// Starts from `base`, the configuration in force before the entries
    /// to come.
    pub(crate) fn new(base: &ConfState) -> Result<ConfReplay> {
        let cfg = Config {
            // Any id: the node only computes configurations, it never
            // campaigns or sends.
            id: u64::MAX,
            ..Config::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let store = MemStorage::new_with_conf_state(base.clone());
        let node = RawNode::new(&cfg, store, &logger)
            .map_err(|e| Error::InvalidArgument(format!("conf state {base:?}: {e}")))?;
        Ok(ConfReplay {
            node,
            conf: base.clone(),
        })
    }

    /// The configuration after every entry applied so far.
    pub(crate) fn conf_state(&self) -> &ConfState {
        &self.conf
    }

    /// Applies entry `e` if it is a conf change (other entries change no
    /// configuration). A conf change that does not decode or that raft
    /// refuses is an error.
    pub(crate) fn apply(&mut self, e: &Entry) -> Result<()> {
        let bad =
            |what: &str| Error::InvalidArgument(format!("conf change entry {}: {what}", e.index));
        let cs = match e.get_entry_type() {
            EntryType::EntryNormal => return Ok(()),
            EntryType::EntryConfChange => {
                let cc = ConfChange::parse_from_bytes(&e.data)
                    .map_err(|x| bad(&format!("does not decode: {x}")))?;
                self.node.apply_conf_change(&cc)
            }
            EntryType::EntryConfChangeV2 => {
                let cc = ConfChangeV2::parse_from_bytes(&e.data)
                    .map_err(|x| bad(&format!("does not decode: {x}")))?;
                self.node.apply_conf_change(&cc)
            }
        };
        self.conf = cs.map_err(|x| bad(&format!("raft refuses it: {x}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::ConfChangeType;

    fn conf_change(index: u64, ty: ConfChangeType, node: u64) -> Entry {
        let cc = ConfChange {
            change_type: ty,
            node_id: node,
            ..Default::default()
        };
        Entry {
            entry_type: EntryType::EntryConfChange,
            index,
            term: 1,
            data: cc.write_to_bytes().unwrap().into(),
            ..Default::default()
        }
    }

    #[test]
    fn conf_changes_add_and_remove_members_as_raft_does() {
        let base = ConfState::from((vec![1], vec![]));
        let mut r = ConfReplay::new(&base).unwrap();
        for (i, (ty, node)) in [
            (ConfChangeType::AddNode, 2),
            (ConfChangeType::AddLearnerNode, 3),
            (ConfChangeType::AddNode, 3),
            (ConfChangeType::RemoveNode, 1),
        ]
        .into_iter()
        .enumerate()
        {
            r.apply(&conf_change(i as u64 + 2, ty, node)).unwrap();
        }
        let mut voters = r.conf_state().voters.clone();
        voters.sort_unstable();
        assert_eq!(voters, vec![2, 3]);
        assert!(r.conf_state().learners.is_empty());
        assert!(has_member(r.conf_state(), 2) && !has_member(r.conf_state(), 1));
        assert!(has_member(r.conf_state(), 0), "peer 0 stands for any");
    }

    #[test]
    fn a_conf_change_that_does_not_decode_is_an_error() {
        let mut r = ConfReplay::new(&ConfState::from((vec![1], vec![]))).unwrap();
        let mut e = conf_change(2, ConfChangeType::AddNode, 2);
        e.data = vec![0xff, 0xff, 0xff].into();
        assert!(r.apply(&e).is_err());
        assert!(carries_data(&Entry {
            data: b"x".to_vec().into(),
            ..Default::default()
        }));
        assert!(!carries_data(&Entry::default()));
        assert!(!carries_data(&conf_change(2, ConfChangeType::AddNode, 2)));
    }
}
