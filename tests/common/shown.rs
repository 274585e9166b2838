//! What a reopened log or store shows, for the crash reproductions
//! (`tests/crash_*_repro.rs`): read through the public API, compared whole
//! (first and last index, every entry's index, term and data, the state),
//! and described compactly in failure messages, e.g.
//! `first 1 last 12 [(1,1)…(8,1), (9,2)…(12,2)] state None`.
//!
//! Included with `#[path = "common/shown.rs"] mod shown;` next to
//! `mod fs_sim;` (it uses `crate::fs_sim`).
#![allow(dead_code)]

use raft::{GetEntriesContext, Storage};
use raftwal::{Log, RaftLogStore};

use crate::fs_sim::{CutStats, Rng, SimFs};

/// What a log shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// `first_index()`.
    pub first: u64,
    /// `last_index()`.
    pub last: u64,
    /// `term(first - 1)`.
    pub prev_term: u64,
    /// `(index, term, data)` of every entry, `first..=last`.
    pub entries: Vec<(u64, u64, Vec<u8>)>,
    /// The state blob (for a store: its hard state and snapshot, see
    /// [`show_store`]).
    pub state: Option<Vec<u8>>,
}

impl Shown {
    /// One line: first, last, the entries as (index, term) runs, the state.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut k = 0;
        while k < self.entries.len() {
            let mut j = k;
            while j + 1 < self.entries.len() && self.entries[j + 1].1 == self.entries[k].1 {
                j += 1;
            }
            let (a, b) = (&self.entries[k], &self.entries[j]);
            parts.push(if k == j {
                format!("({},{})", a.0, a.1)
            } else {
                format!("({},{})…({},{})", a.0, a.1, b.0, b.1)
            });
            k = j + 1;
        }
        let state = self
            .state
            .as_ref()
            .map(|s| String::from_utf8_lossy(s).into_owned());
        format!(
            "first {} last {} (term before first {}) [{}] state {state:?}",
            self.first,
            self.last,
            self.prev_term,
            parts.join(", ")
        )
    }
}

/// Everything `log` shows.
pub fn show(log: &Log) -> Result<Shown, String> {
    let (first, last) = (log.first_index(), log.last_index());
    let prev_term = log
        .term(first - 1)
        .map_err(|e| format!("term({}): {e}", first - 1))?;
    let all = log
        .entries(first, last + 1, None)
        .map_err(|e| format!("entries({first}, {}): {e}", last + 1))?;
    let mut entries = Vec::new();
    for e in all {
        let t = log
            .term(e.index)
            .map_err(|x| format!("term({}): {x}", e.index))?;
        if t != e.term {
            return Err(format!(
                "term({}) = {t}, the entry says {}",
                e.index, e.term
            ));
        }
        entries.push((e.index, e.term, e.data.to_vec()));
    }
    Ok(Shown {
        first,
        last,
        prev_term,
        entries,
        state: log.state().map(|s| s.to_vec()),
    })
}

/// Everything `store` shows; its state is `hs term/commit, snapshot
/// index/term` (the raft layer's state blob, decoded).
pub fn show_store(store: &RaftLogStore) -> Result<Shown, String> {
    let first = store.first_index().map_err(|e| e.to_string())?;
    let last = store.last_index().map_err(|e| e.to_string())?;
    let prev_term = store.term(first - 1).map_err(|e| e.to_string())?;
    let got = store
        .entries(first, last + 1, None, GetEntriesContext::empty(false))
        .map_err(|e| format!("entries({first}, {}): {e}", last + 1))?;
    let hs = store.initial_state().map_err(|e| e.to_string())?.hard_state;
    let snap = store.snapshot_metadata().map(|m| (m.index, m.term));
    Ok(Shown {
        first,
        last,
        prev_term,
        entries: got
            .iter()
            .map(|e| (e.index, e.term, e.data.to_vec()))
            .collect(),
        state: Some(format!("hs {}/{}, snapshot {snap:?}", hs.term, hs.commit).into_bytes()),
    })
}

/// The images a scan of power cuts found wrong, by kind.
#[derive(Debug, Default)]
pub struct BadImages {
    /// Each kind: what it showed, how many images, the first seed.
    pub kinds: Vec<(String, u64, u64)>,
    /// Images scanned.
    pub images: u64,
    /// Images whose cut reordered directory operations.
    pub reordered: u64,
}

impl BadImages {
    /// Whether every image was allowed.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Counts one bad image of kind `what`, found with `seed`.
    fn note(&mut self, what: String, seed: u64) {
        match self.kinds.iter_mut().find(|b| b.0 == what) {
            Some(b) => b.1 += 1,
            None => self.kinds.push((what, 1, seed)),
        }
    }

    /// One line per kind, each prefixed with `context`.
    pub fn lines(&self, context: &str) -> Vec<String> {
        self.kinds
            .iter()
            .map(|(what, n, seed)| {
                format!("{context}{n} image(s), the first from seed {seed}: {what}")
            })
            .collect()
    }
}

/// Cuts the power of `fs` with seeds `seeds` (each cut from the same
/// moment: `fs` is unchanged), opens each image with `open_and_show` and
/// notes every image that shows none of `allowed` or does not open.
pub fn scan_images(
    fs: &SimFs,
    seeds: std::ops::Range<u64>,
    allowed: &[(&str, Shown)],
    open_and_show: impl Fn(&SimFs) -> Result<Shown, String>,
) -> BadImages {
    let mut bad = BadImages::default();
    for seed in seeds {
        let (img, st): (SimFs, CutStats) = fs.cut_power_with_stats(&mut Rng::new(seed));
        bad.images += 1;
        bad.reordered += u64::from(st.dir_ops_reordered > 0);
        match open_and_show(&img) {
            Ok(got) if allowed.iter().any(|a| a.1 == got) => {}
            Ok(got) => bad.note(
                format!("a log that never existed: {}", got.describe()),
                seed,
            ),
            Err(e) => bad.note(format!("does not open: {e}"), seed),
        }
    }
    bad
}

/// Fails, listing the allowed states and every bad image, when `bad`
/// holds any line.
#[track_caller]
pub fn assert_allowed(scenario: &str, allowed: &[(&str, Shown)], bad: &[String]) {
    assert!(
        bad.is_empty(),
        "{scenario}: some power-cut images reopen as none of the allowed states.\nallowed:\n{}\nfound:\n{}",
        allowed
            .iter()
            .map(|(n, s)| format!("  {n}: {}", s.describe()))
            .collect::<Vec<_>>()
            .join("\n"),
        bad.join("\n")
    );
}
