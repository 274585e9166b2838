//! `raftwal inspect DIR`: what a log directory holds.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use raftwal::tools::inspect::{self, DirScan};
use serde::Serialize;

use crate::dir::{self, LockStatus};
use crate::failure::{Failure, OTHER};
use crate::group::{self, GroupView};
use crate::problem::ProblemView;
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
    /// Engine directories only: show group ID alone. Without it, an
    /// engine's groups are listed after the stream (text: the first 50 by
    /// id; --json: all).
    #[arg(long, value_name = "ID")]
    pub group: Option<u64>,
}

/// Groups listed in text; `--json` lists all, `--group ID` shows one.
pub const TEXT_GROUPS: usize = 50;

/// Everything `inspect` shows; also its JSON form.
#[derive(Debug, Serialize)]
struct Report {
    dir: PathBuf,
    lock: LockStatus,
    /// `"raft"` for a `RaftLogStore`, `"log"` for a plain `Log`,
    /// `"engine"` for an `Engine`'s directory.
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
    /// An engine directory's groups (absent for other directories).
    #[serde(skip_serializing_if = "Option::is_none")]
    engine: Option<EngineView>,
}

/// The groups an engine directory's records make.
#[derive(Debug, Serialize)]
struct EngineView {
    /// False when the records do not replay (the problem is in
    /// `problems`): then no group is listed.
    replayed: bool,
    group_count: usize,
    /// Every group, by id.
    groups: Vec<GroupView>,
}

/// `inspect --group ID`: one group of an engine; also its JSON form.
#[derive(Debug, Serialize)]
struct GroupReport {
    dir: PathBuf,
    lock: LockStatus,
    kind: &'static str,
    /// The stream's records, `[first, last]`, if it holds any.
    records: Option<(u64, u64)>,
    /// Groups in the engine (0 when the records do not replay).
    group_count: usize,
    /// `null` when the records do not replay.
    group: Option<GroupView>,
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
    let is_engine = raftwal::tools::engine::is_engine(&s.scan);
    if args.group.is_some() {
        group::require_engine(&s.scan)?;
    }
    let lock = dir::probe_lock(&args.dir)?;
    let mut problems: Vec<ProblemView> = s.scan.problems.iter().map(ProblemView::from).collect();
    let engine = if is_engine {
        let replayed = group::replay(&s.scan)?;
        if let Some(id) = args.group {
            return run_group(args, &s.scan, lock, replayed, problems, id);
        }
        Some(match replayed {
            Ok(es) => {
                let groups: Vec<GroupView> = es
                    .groups()
                    .iter()
                    .map(|g| GroupView::new(&s.scan, g))
                    .collect();
                EngineView {
                    replayed: true,
                    group_count: groups.len(),
                    groups,
                }
            }
            Err(p) => {
                problems.push(p);
                EngineView {
                    replayed: false,
                    group_count: 0,
                    groups: Vec::new(),
                }
            }
        })
    } else {
        None
    };
    let is_raft = s.is_raft && !is_engine;
    let snapshots = if is_raft {
        raftdata::snapshot_files(&args.dir, s.raft.as_ref().and_then(|r| r.snapshot))
            .map_err(|e| Failure::new(OTHER, format!("cannot list {}: {e}", args.dir.display())))?
    } else {
        Vec::new()
    };
    let scan = &s.scan;
    let report = Report {
        dir: args.dir.clone(),
        lock,
        kind: match (is_engine, is_raft) {
            (true, _) => "engine",
            (false, true) => "raft",
            (false, false) => "log",
        },
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
        raft: if is_raft { s.raft.clone() } else { None },
        snapshots,
        problems,
        engine,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print_text(&mut out, &report)?;
        if let Some(e) = &report.engine {
            print_groups(&mut out, e, &report)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `inspect --group ID`.
fn run_group(
    args: &Args,
    scan: &DirScan,
    lock: LockStatus,
    replayed: Result<raftwal::tools::engine::EngineScan<'_>, ProblemView>,
    mut problems: Vec<ProblemView>,
    id: u64,
) -> Result<ExitCode, Failure> {
    let (group_count, group) = match replayed {
        Ok(es) => {
            let g = group::find(&es, &args.dir, id)?;
            (es.groups().len(), Some(GroupView::new(scan, &g)))
        }
        Err(p) => {
            problems.push(p);
            (0, None)
        }
    };
    let r = GroupReport {
        dir: args.dir.clone(),
        lock,
        kind: "engine",
        records: (scan.last_index >= scan.first_index)
            .then_some((scan.first_index, scan.last_index)),
        group_count,
        group,
        problems,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &r)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let groups = match r.group {
        Some(_) => format!(", {}", render::count(r.group_count as u64, "group")),
        None => String::new(),
    };
    writeln!(out, "directory:  {} (Engine{groups})", r.dir.display())?;
    writeln!(out, "lock:       {}", r.lock.describe())?;
    match &r.group {
        Some(g) => {
            writeln!(out, "group:      {}", g.group)?;
            if g.entries == 0 {
                writeln!(
                    out,
                    "entries:    none, next index {} (term before it {})",
                    g.first_index, g.prev_term
                )?;
            } else {
                writeln!(
                    out,
                    "entries:    indexes {} ({}), term before the first {}",
                    g.range(),
                    render::count(g.entries, "entry"),
                    g.prev_term
                )?;
            }
            match g.state_bytes {
                Some(n) => writeln!(out, "state blob: {n} bytes")?,
                None => writeln!(out, "state blob: none")?,
            }
            if let Some(name) = &g.oldest_segment {
                writeln!(out, "segments:   its oldest entry is in {name}")?;
            }
        }
        None => writeln!(
            out,
            "group:      {id} unknown: the records do not replay (see the problem below)"
        )?,
    }
    print_problems(&mut out, &r.problems)?;
    Ok(ExitCode::SUCCESS)
}

/// An engine's groups, after what `print_text` shows of its stream: at
/// most [`TEXT_GROUPS`] of them.
fn print_groups(out: &mut impl Write, e: &EngineView, r: &Report) -> std::io::Result<()> {
    if !e.replayed {
        return writeln!(
            out,
            "engine:     the records do not replay (see the problem above): no groups shown"
        );
    }
    let records = if r.entries == 0 {
        "no records".to_string()
    } else {
        format!("records {}..={}", r.first_index, r.last_index)
    };
    writeln!(
        out,
        "engine:     {}, as Engine::open replays {records}",
        render::count(e.group_count as u64, "group")
    )?;
    if e.groups.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "  {:>10}  {:<23} {:>8}  {:>11}  {:>10}  oldest segment",
        "group", "entries", "count", "term before", "state"
    )?;
    for g in e.groups.iter().take(TEXT_GROUPS) {
        writeln!(
            out,
            "  {:>10}  {:<23} {:>8}  {:>11}  {:>10}  {}",
            g.group,
            g.range(),
            g.entries,
            g.prev_term,
            g.state_bytes
                .map_or_else(|| "none".into(), |n| render::size(n as u64)),
            g.oldest_segment.as_deref().unwrap_or("-")
        )?;
    }
    if e.groups.len() > TEXT_GROUPS {
        writeln!(
            out,
            "  ... and {} more (--json lists every group, --group ID shows one)",
            e.groups.len() - TEXT_GROUPS
        )?;
    }
    Ok(())
}

fn print_text(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    let kind = match r.kind {
        "raft" => "RaftLogStore",
        "engine" => "Engine",
        _ => "Log",
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
    print_problems(out, &r.problems)
}

fn print_problems(out: &mut impl Write, problems: &[ProblemView]) -> std::io::Result<()> {
    if problems.is_empty() {
        writeln!(out, "problems:   none")?;
    }
    for p in problems {
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
