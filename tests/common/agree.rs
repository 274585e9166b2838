//! The read-only scan behind `raftwal inspect`, `verify` and `repair`
//! against `Log::open`: on the same directory they must tell the same
//! story. Both run the one replay machine; this checks it stays so.
//!
//! Taken before the open (which repairs), the scan must say:
//! - when the open succeeds: the same first and last index, every entry's
//!   term and the state blob the same, and every torn tail it reports is a
//!   repair the open made, at the same file and offset; under the default
//!   mode nothing else (no damage);
//! - when the open fails with `Error::Corruption`: damage at that file and
//!   offset.
//!
//! One case is allowed to differ: damage inside a sealed segment whose
//! footer is valid. The open reads such a segment through its footer (its
//! frames are verified when read), the scan reads every frame.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use raftwal::tools::inspect::{self, DirScan, Problem, ProblemKind};
use raftwal::{Error, Log, Options, RecoveryMode};

/// How many times a scan was checked against an open.
pub static CHECKED: AtomicU64 = AtomicU64::new(0);

/// Scans `dir` read-only, on `opts`' file system with its entry limit.
pub fn scan(opts: &Options, dir: &str) -> Result<DirScan, String> {
    inspect::scan_dir_in(
        opts.file_system.clone(),
        dir.as_ref(),
        opts.max_entry_size,
        &mut |_| {},
    )
    .map_err(|e| format!("scan: {e}"))
}

/// Checks `scan`, taken before the open, against `opened`: the open of
/// the same directory under `mode`.
pub fn agrees(
    scan: &DirScan,
    mode: RecoveryMode,
    opened: &Result<Log, Error>,
) -> Result<(), String> {
    CHECKED.fetch_add(1, Ordering::Relaxed);
    let in_sealed = |p: &Problem| {
        p.kind == ProblemKind::Corruption
            && scan.segments.iter().any(|s| s.path == p.path && s.sealed)
    };
    let problems = || format!("{:#?}", scan.problems);
    match opened {
        Ok(log) => {
            let refused = |p: &&Problem| match mode {
                RecoveryMode::AbsoluteConsistency => !in_sealed(p),
                RecoveryMode::TolerateTailCorruption => {
                    p.kind != ProblemKind::TornTail && !in_sealed(p)
                }
                _ => false,
            };
            if let Some(p) = scan.problems.iter().find(refused) {
                return Err(format!(
                    "the open under {mode:?} succeeded, the scan found a problem it refuses: {p:?}"
                ));
            }
            let repairs = &log.recovery_report().repairs;
            for p in scan
                .problems
                .iter()
                .filter(|p| p.kind == ProblemKind::TornTail)
            {
                if !repairs.iter().any(|r| r.0 == p.path && r.1 == p.offset) {
                    return Err(format!(
                        "the scan found a torn tail the open did not cut there: {p:?}; repairs {repairs:?}"
                    ));
                }
            }
            if scan.problems.iter().any(in_sealed) {
                // The scan stops at damage the open does not read.
                return Ok(());
            }
            let scanned = (scan.first_index, scan.last_index);
            let open = (log.first_index(), log.last_index());
            if scanned != open {
                return Err(format!(
                    "the scan shows entries {}..={}, the open {}..={}; problems {}",
                    scanned.0,
                    scanned.1,
                    open.0,
                    open.1,
                    problems()
                ));
            }
            // Entry by entry: the same terms, at the same places.
            for e in scan.entry_locations() {
                let term = log
                    .term(e.index)
                    .map_err(|err| format!("term({}): {err}", e.index))?;
                if term != e.term {
                    return Err(format!(
                        "entry {}: the scan says term {}, the open {term}",
                        e.index, e.term
                    ));
                }
            }
            if scan.state != log.state() {
                return Err(format!(
                    "the scan's state blob is {:?}, the open's {:?}",
                    scan.state,
                    log.state()
                ));
            }
        }
        Err(Error::Corruption { path, offset, .. }) => {
            let named = |p: &Problem| {
                (p.kind != ProblemKind::TornTail || mode == RecoveryMode::AbsoluteConsistency)
                    && p.path == *path
                    && (p.offset == *offset || mode == RecoveryMode::AbsoluteConsistency)
            };
            if !scan.problems.iter().any(named) {
                return Err(format!(
                    "the open refused damage at {} offset {offset}, the scan found {}",
                    path.display(),
                    problems()
                ));
            }
        }
        // Not a judgement of the directory (an I/O error, say).
        Err(_) => {}
    }
    Ok(())
}
