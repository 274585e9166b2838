//! A problem the scan (or an engine's replay) found, as the CLI prints it
//! (text and JSON): `inspect`, `verify` and the engine's group views share
//! it.

use std::path::PathBuf;

use raftwal::tools::inspect::{Problem, ProblemKind};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct ProblemView {
    pub path: PathBuf,
    pub offset: u64,
    pub reason: String,
    /// `torn_tail`, `corruption` or `missing_history`.
    pub kind: &'static str,
}

impl From<&Problem> for ProblemView {
    fn from(p: &Problem) -> ProblemView {
        ProblemView {
            path: p.path.clone(),
            offset: p.offset,
            reason: p.reason.clone(),
            kind: kind_name(p.kind),
        }
    }
}

pub fn kind_name(k: ProblemKind) -> &'static str {
    match k {
        ProblemKind::TornTail => "torn_tail",
        ProblemKind::Corruption => "corruption",
        ProblemKind::MissingHistory => "missing_history",
        _ => "other",
    }
}
