//! `raftwal inspect DIR`: what a log directory holds.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use raftwal::tools::inspect::{self, DirScan, Problem, ProblemKind};
use serde::Serialize;

use crate::dir::{self, LockStatus};
use crate::failure::{Failure, OTHER};
use crate::raftdata::{self, RaftState, SnapshotFile};
use crate::render;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// The log's `Options::max_entry_size`: longer frames are damage.
    #[arg(long, default_value_t = inspect::DEFAULT_MAX_ENTRY_SIZE, value_name = "BYTES")]
    pub max_entry_size: u64,
}

/// Everything `inspect` shows; also its JSON form.
#[derive(Debug, Serialize)]
struct Report {
    dir: PathBuf,
    lock: LockStatus,
    /// `"raft"` for a `RaftLogStore`, `"log"` for a plain `Log`.
    kind: &'static str,
    segments: Vec<SegmentView>,
    bytes_on_disk: u64,
    first_index: u64,
    last_index: u64,
    entries: u64,
    prev_term: u64,
    state_bytes: Option<usize>,
    raft: Option<RaftState>,
    snapshots: Vec<SnapshotFile>,
    problems: Vec<ProblemView>,
}

#[derive(Debug, Serialize)]
struct SegmentView {
    name: String,
    sequence: u64,
    first_index: u64,
    size: u64,
    data_len: u64,
    preallocated: u64,
    entry_frames: u64,
    /// `[first, last]` of its entries that are in the log.
    live: Option<(u64, u64)>,
    sealed: bool,
    /// No part of the log: a newer segment's link skips it (recovery
    /// removes it).
    superseded: bool,
}

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

/// The scan of a directory and whether it is a `RaftLogStore`.
pub struct Scanned {
    pub scan: DirScan,
    pub raft: Option<RaftState>,
    /// True when the directory looks like a `RaftLogStore`: its state blob
    /// decodes as one, or it has snapshot files, or its first entry's data
    /// is a raft entry with the same index and term.
    pub is_raft: bool,
}

/// Scans `dir` read-only and decides whether it is a `RaftLogStore`.
pub fn scan(dir: &std::path::Path, max_entry_size: u64) -> Result<Scanned, Failure> {
    dir::check_log_dir(dir)?;
    let scan = inspect::scan_dir_with(dir, max_entry_size, &mut |_| {})?;
    let raft = scan.state.as_deref().and_then(raftdata::decode_state);
    let has_snapshots = !raftdata::snapshot_files(dir, None)
        .map_err(|e| Failure::new(OTHER, format!("cannot list {}: {e}", dir.display())))?
        .is_empty();
    let first_is_raft = || match scan.entries(0, u64::MAX).next() {
        Some(Ok(e)) => raftdata::decode_entry(e.index, e.term, &e.data).is_some(),
        _ => false,
    };
    let is_raft = raft.is_some() || has_snapshots || first_is_raft();
    Ok(Scanned {
        scan,
        raft,
        is_raft,
    })
}

pub fn run(args: &Args) -> Result<ExitCode, Failure> {
    let s = scan(&args.dir, args.max_entry_size)?;
    let lock = dir::probe_lock(&args.dir)?;
    let snapshots = if s.is_raft {
        raftdata::snapshot_files(&args.dir, s.raft.as_ref().and_then(|r| r.snapshot))
            .map_err(|e| Failure::new(OTHER, format!("cannot list {}: {e}", args.dir.display())))?
    } else {
        Vec::new()
    };
    let scan = &s.scan;
    let report = Report {
        dir: args.dir.clone(),
        lock,
        kind: if s.is_raft { "raft" } else { "log" },
        segments: scan
            .segments
            .iter()
            .map(|g| SegmentView {
                name: g
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                sequence: g.sequence,
                first_index: g.first_index,
                size: g.size,
                data_len: g.data_len,
                preallocated: g.preallocated,
                entry_frames: g.entry_frames,
                live: g.live,
                sealed: g.sealed,
                superseded: g.superseded,
            })
            .collect(),
        bytes_on_disk: scan.bytes,
        first_index: scan.first_index,
        last_index: scan.last_index,
        entries: (scan.last_index + 1).saturating_sub(scan.first_index),
        prev_term: scan.prev_term,
        state_bytes: scan.state.as_ref().map(|b| b.len()),
        raft: s.raft.clone(),
        snapshots,
        problems: scan.problems.iter().map(ProblemView::from).collect(),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print_text(&mut out, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    let kind = if r.kind == "raft" {
        "RaftLogStore"
    } else {
        "Log"
    };
    writeln!(out, "directory:  {} ({kind})", r.dir.display())?;
    writeln!(out, "lock:       {}", r.lock.describe())?;
    if r.entries == 0 {
        writeln!(
            out,
            "log:        empty, next index {} (term before it {})",
            r.first_index, r.prev_term
        )?;
    } else {
        writeln!(
            out,
            "log:        indexes {}..={} ({}), term before the first {}",
            r.first_index,
            r.last_index,
            render::count(r.entries, "entry"),
            r.prev_term
        )?;
    }
    writeln!(
        out,
        "segments:   {}, {} on disk",
        render::count(r.segments.len() as u64, "file"),
        render::size(r.bytes_on_disk)
    )?;
    for g in &r.segments {
        let live = match g.live {
            Some((lo, hi)) => format!("entries {lo}..={hi}"),
            None if g.superseded => "superseded (the next open removes it)".into(),
            None => "no live entries".into(),
        };
        let sealed = if g.sealed { ", sealed" } else { "" };
        writeln!(
            out,
            "  {}  {:>10} on disk, {:>10} of data{sealed}  {live}",
            g.name,
            render::size(g.size),
            render::size(g.data_len)
        )?;
    }
    match (&r.raft, r.state_bytes) {
        (Some(raft), _) => {
            let hs = &raft.hard_state;
            let cs = &raft.conf_state;
            writeln!(
                out,
                "hard state: term {} vote {} commit {}",
                hs.term, hs.vote, hs.commit
            )?;
            write!(
                out,
                "conf state: voters {:?} learners {:?}",
                cs.voters, cs.learners
            )?;
            if !cs.voters_outgoing.is_empty() || !cs.learners_next.is_empty() {
                write!(
                    out,
                    " (joint: outgoing voters {:?}, next learners {:?}, auto leave {})",
                    cs.voters_outgoing, cs.learners_next, cs.auto_leave
                )?;
            }
            writeln!(out)?;
            // Pending only while the log does not start after it yet (an
            // `apply_snapshot` a crash interrupted): the open finishes it.
            if let Some((i, t)) = raft.log_start.filter(|&(i, _)| r.first_index <= i) {
                writeln!(
                    out,
                    "pending:    the log must restart after index {i} term {t} (finished at the next open)"
                )?;
            }
        }
        (None, Some(n)) => writeln!(out, "state blob: {n} bytes")?,
        (None, None) if r.kind == "raft" => writeln!(out, "hard state: none saved yet")?,
        (None, None) => writeln!(out, "state blob: none")?,
    }
    if r.kind == "raft" {
        if r.snapshots.is_empty() {
            writeln!(out, "snapshot:   none")?;
        }
        for s in &r.snapshots {
            let note = if s.current {
                ""
            } else {
                " (not current: removed at the next open)"
            };
            writeln!(
                out,
                "snapshot:   index {} term {}, {}{note}",
                s.index,
                s.term,
                render::size(s.size)
            )?;
        }
    }
    if r.problems.is_empty() {
        writeln!(out, "problems:   none")?;
    }
    for p in &r.problems {
        writeln!(
            out,
            "problem:    {} in {} at offset {}: {}",
            p.kind.replace('_', " "),
            p.path.display(),
            p.offset,
            p.reason
        )?;
    }
    Ok(())
}
