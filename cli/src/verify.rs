//! `raftwal verify DIR`: read every frame, check every CRC, change nothing.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use raftwal::fs::StdFileSystem;
use raftwal::tools::inspect::{self, ProblemKind};
use raftwal::tools::segment;

use crate::dir;
use crate::failure::{Failure, DAMAGE, OTHER};
use crate::group;
use crate::problem::ProblemView;
use crate::render;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// The log's `Options::max_entry_size`: longer frames are damage.
    #[arg(long, default_value_t = inspect::DEFAULT_MAX_ENTRY_SIZE, value_name = "BYTES")]
    pub max_entry_size: u64,
    /// Engine directories only: also read every entry of group ID back,
    /// checking its CRC. (On an engine directory verify always checks that
    /// the records replay.)
    #[arg(long, value_name = "ID")]
    pub group: Option<u64>,
}

pub fn run(args: &Args) -> Result<ExitCode, Failure> {
    dir::check_log_dir(&args.dir)?;
    let total = total_bytes(&args.dir)?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "verifying {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let scan = inspect::scan_dir_with(&args.dir, args.max_entry_size, &mut |done| {
        if let Some(b) = &bar {
            b.set_position(done);
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let scan = scan?;
    if args.group.is_some() {
        group::require_engine(&scan)?;
    }
    let mut problems: Vec<(ProblemView, &str)> = scan
        .problems
        .iter()
        .map(|p| (ProblemView::from(p), advice(p.kind)))
        .collect();
    // An engine's records must replay, and --group's entries read back.
    let mut engine = String::new();
    if raftwal::tools::engine::is_engine(&scan) {
        match group::replay(&scan)? {
            Ok(es) => {
                engine = format!(
                    "; {} replay",
                    render::count(es.groups().len() as u64, "group")
                );
                if let Some(id) = args.group {
                    let g = group::find(&es, &args.dir, id)?;
                    let hi = g.last_index.saturating_add(1);
                    match read_back(&es, id, g.first_index, hi)? {
                        Ok(()) if g.first_index < hi => engine.push_str(&format!(
                            "; group {id}: {} read back ({}..={})",
                            render::count(hi - g.first_index, "entry"),
                            g.first_index,
                            g.last_index
                        )),
                        Ok(()) => engine.push_str(&format!("; group {id}: no entries")),
                        Err(p) => problems.push((
                            p,
                            "an entry of the group does not read back: Engine::entries fails on it",
                        )),
                    }
                }
            }
            Err(p) => problems.push((
                p,
                "a record does not apply to its group: Engine::open refuses the directory",
            )),
        }
    }
    let frames: u64 = scan.segments.iter().map(|s| s.frames).sum();
    let data: u64 = scan.segments.iter().map(|s| s.data_len).sum();
    let summary = format!(
        "{}, {} in {} of data",
        render::count(scan.segments.len() as u64, "segment"),
        render::count(frames, "frame"),
        render::size(data)
    );
    let Some((first, advice)) = problems.first() else {
        let log = if scan.last_index >= scan.first_index {
            format!("entries {}..={}", scan.first_index, scan.last_index)
        } else {
            format!("no entries, next index {}", scan.first_index)
        };
        println!(
            "ok: {} is clean: {summary}; {log}{engine}",
            args.dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    };
    for (p, _) in &problems {
        eprintln!(
            "{}: {} at offset {}: {}",
            p.kind.replace('_', " "),
            p.path.display(),
            p.offset,
            p.reason
        );
    }
    Err(Failure::new(
        DAMAGE,
        format!(
            "{} is damaged: first problem in {} at offset {}: {} ({advice}); {summary}; intact entries {}..={}",
            args.dir.display(),
            first.path.display(),
            first.offset,
            first.reason,
            scan.first_index,
            scan.last_index
        ),
    ))
}

/// What to do about a problem of the stream.
fn advice(kind: ProblemKind) -> &'static str {
    match kind {
        ProblemKind::TornTail => {
            "a torn tail, as a crash leaves: opening the log cuts it away, or run `raftwal repair`"
        }
        ProblemKind::Corruption => {
            "not a torn tail: the log will not open; `raftwal repair --force` keeps the entries before it"
        }
        ProblemKind::MissingHistory => {
            "segments below the first index are missing: only RecoveryMode::TolerateAnyCorruption opens the log"
        }
        _ => "see `raftwal inspect` for what recovery makes of it",
    }
}

/// Reads group `id`'s entries `lo..hi` back, [`group::WINDOW`] at a time,
/// each checked with its group's CRC salt: the first that does not read
/// back is the problem. Other errors (I/O) fail the command.
fn read_back(
    es: &raftwal::tools::engine::EngineScan<'_>,
    id: u64,
    lo: u64,
    hi: u64,
) -> Result<Result<(), ProblemView>, Failure> {
    for (a, b) in group::windows(lo, hi) {
        match es.entries(id, a, b) {
            Ok(_) => {}
            Err(raftwal::Error::Corruption {
                path,
                offset,
                reason,
                ..
            }) => {
                return Ok(Err(ProblemView {
                    path,
                    offset,
                    reason,
                    kind: "corruption",
                }))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Ok(()))
}

/// Bytes of all segment files, for the progress bar.
fn total_bytes(dir: &std::path::Path) -> Result<u64, Failure> {
    let mut total = 0;
    for (_, _, path) in segment::list(&StdFileSystem, dir)? {
        let m = std::fs::metadata(&path)
            .map_err(|e| Failure::new(OTHER, format!("cannot stat {}: {e}", path.display())))?;
        total += m.len();
    }
    Ok(total)
}
