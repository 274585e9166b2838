//! `raftwal repair DIR`: the torn-tail repair `Log::open` would make, done
//! explicitly, with a backup of every byte it cuts.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use raftwal::fs::StdFileSystem;
use raftwal::tools::inspect::{self, Problem, ProblemKind, SegmentInfo};
use raftwal::tools::segment;

use crate::dir::{self, DirLock};
use crate::failure::{Failure, DAMAGE, OTHER};
use crate::render;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory. It must not be open: repair takes its lock.
    pub dir: PathBuf,
    /// Also cut damage that is not a torn tail: keep the longest valid
    /// prefix of the log (like RecoveryMode::TolerateAnyCorruption) and move
    /// everything after it aside. Acknowledged entries after the damage are
    /// lost (but kept in the backup files).
    #[arg(long)]
    pub force: bool,
    /// Say what would be done, and do nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The log's `Options::max_entry_size`: longer frames are damage.
    #[arg(long, default_value_t = inspect::DEFAULT_MAX_ENTRY_SIZE, value_name = "BYTES")]
    pub max_entry_size: u64,
}

/// What a repair does.
#[derive(Debug)]
struct Plan<'a> {
    /// The damaged segment, and where it is cut (0: the whole file goes).
    segment: &'a SegmentInfo,
    offset: u64,
    /// `torn` or `cut`: the backup's name says which repair made it.
    tag: &'static str,
    /// Later segments, moved aside whole (only under `--force`).
    dropped: Vec<&'a SegmentInfo>,
}

pub fn run(args: &Args) -> Result<ExitCode, Failure> {
    dir::check_log_dir(&args.dir)?;
    let _lock = DirLock::acquire(&args.dir)?;
    let scan = inspect::scan_dir_with(&args.dir, args.max_entry_size, &mut |_| {})?;
    let Some(first) = scan.problems.first() else {
        println!(
            "nothing to repair: {} is clean (entries {}..={})",
            args.dir.display(),
            scan.first_index,
            scan.last_index
        );
        return Ok(ExitCode::SUCCESS);
    };
    let at = |p: &Problem| format!("{} at offset {}: {}", p.path.display(), p.offset, p.reason);
    let tag = match first.kind {
        ProblemKind::TornTail => "torn",
        ProblemKind::Corruption if args.force => "cut",
        ProblemKind::Corruption => {
            return Err(Failure::new(
                DAMAGE,
                format!(
                    "refusing to repair {}: the damage in {} is not a torn tail (it is in an older segment, or valid frames follow it), so acknowledged entries may lie after it. \
                     Run again with --force to keep the entries before it ({}..={}) and move the rest aside into backup files",
                    args.dir.display(),
                    at(first),
                    scan.first_index,
                    scan.last_index
                ),
            ))
        }
        ProblemKind::MissingHistory => {
            return Err(Failure::new(
                DAMAGE,
                format!(
                    "cannot repair {} by cutting: {}. Open it with RecoveryMode::TolerateAnyCorruption to accept the loss",
                    args.dir.display(),
                    at(first)
                ),
            ))
        }
        _ => {
            return Err(Failure::new(
                DAMAGE,
                format!(
                    "cannot repair {}: {} is a problem this tool does not know how to mend",
                    args.dir.display(),
                    at(first)
                ),
            ))
        }
    };
    let Some(k) = scan.segments.iter().position(|s| s.path == first.path) else {
        return Err(Failure::new(
            OTHER,
            format!("internal: {} is not in the scan", first.path.display()),
        ));
    };
    let plan = Plan {
        segment: &scan.segments[k],
        offset: first.offset,
        tag,
        dropped: scan.segments[k + 1..].iter().collect(),
    };
    describe(&plan, args.dry_run);
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    apply(&args.dir, &plan)?;
    let after = inspect::scan_dir_with(&args.dir, args.max_entry_size, &mut |_| {})?;
    if let Some(p) = after.problems.first() {
        return Err(Failure::new(
            DAMAGE,
            format!(
                "repaired the first problem, but {} still has damage: {}",
                args.dir.display(),
                at(p)
            ),
        ));
    }
    println!(
        "repaired: {} is clean, entries {}..={}",
        args.dir.display(),
        after.first_index,
        after.last_index
    );
    Ok(ExitCode::SUCCESS)
}

fn describe(plan: &Plan<'_>, dry_run: bool) {
    let would = if dry_run { "would " } else { "" };
    let seg = plan.segment;
    if plan.offset == 0 {
        println!(
            "{would}move {} aside whole (its header is bad) to {}",
            seg.path.display(),
            backup_name(&seg.path, plan.tag, 0).display()
        );
    } else {
        println!(
            "{would}cut {} at offset {}, saving the cut bytes to {}",
            seg.path.display(),
            plan.offset,
            backup_name(&seg.path, plan.tag, plan.offset).display()
        );
    }
    for d in &plan.dropped {
        println!(
            "{would}move later segment {} ({}) aside to {}",
            d.path.display(),
            render::size(d.size),
            dropped_name(&d.path).display()
        );
    }
}

/// `<segment>.<tag>-<offset>.bak`, next to the segment.
fn backup_name(path: &Path, tag: &str, offset: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{tag}-{offset}.bak"));
    PathBuf::from(name)
}

/// `<segment>.dropped.bak`, next to the segment.
fn dropped_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".dropped.bak");
    PathBuf::from(name)
}

fn io_fail(what: &str, path: &Path, e: std::io::Error) -> Failure {
    Failure::new(OTHER, format!("{what} {}: {e}", path.display()))
}

/// Carries out `plan`: every backup is durable (file and directory synced)
/// before the bytes it saves are cut.
fn apply(dir: &Path, plan: &Plan<'_>) -> Result<(), Failure> {
    let seg = plan.segment;
    if plan.offset == 0 {
        move_aside(&seg.path, &backup_name(&seg.path, plan.tag, 0))?;
    } else {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&seg.path)
            .map_err(|e| io_fail("cannot open", &seg.path, e))?;
        let backup = backup_name(&seg.path, plan.tag, plan.offset);
        let end = data_end(&file, &seg.path, seg, plan.offset)?;
        copy_range(&file, &seg.path, plan.offset, end, &backup)?;
        segment::sync_dir(&StdFileSystem, dir)?;
        cut(&file, &seg.path, plan.offset, seg.preallocated)?;
        println!(
            "saved {} to {}",
            render::size(end - plan.offset),
            backup.display()
        );
    }
    for d in &plan.dropped {
        move_aside(&d.path, &dropped_name(&d.path))?;
    }
    segment::sync_dir(&StdFileSystem, dir)?;
    Ok(())
}

/// Where the bytes worth saving end: the file's end, less the zeros at the
/// end of a preallocated file (unused space, not data).
fn data_end(file: &File, path: &Path, seg: &SegmentInfo, from: u64) -> Result<u64, Failure> {
    if seg.preallocated == 0 {
        return Ok(seg.size);
    }
    let mut end = from;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = from;
    while pos < seg.size {
        let n = (seg.size - pos).min(buf.len() as u64) as usize;
        let chunk = &mut buf[..n];
        file.read_exact_at(chunk, pos)
            .map_err(|e| io_fail("cannot read", path, e))?;
        if let Some(last) = chunk.iter().rposition(|&b| b != 0) {
            end = pos + last as u64 + 1;
        }
        pos += n as u64;
    }
    Ok(end)
}

/// Copies `[from, to)` of `file` into a new file `backup`, synced.
fn copy_range(file: &File, path: &Path, from: u64, to: u64, backup: &Path) -> Result<(), Failure> {
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(backup)
        .map_err(|e| io_fail("cannot create backup", backup, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = from;
    while pos < to {
        let n = (to - pos).min(buf.len() as u64) as usize;
        let chunk = &mut buf[..n];
        file.read_exact_at(chunk, pos)
            .map_err(|e| io_fail("cannot read", path, e))?;
        out.write_all_at(chunk, pos - from)
            .map_err(|e| io_fail("cannot write", backup, e))?;
        pos += n as u64;
    }
    out.sync_all()
        .map_err(|e| io_fail("cannot fsync", backup, e))
}

/// Truncates the segment at `offset` and, in a preallocated file, gives the
/// cut space back as zeros (what recovery does), then syncs it.
fn cut(file: &File, path: &Path, offset: u64, preallocated: u64) -> Result<(), Failure> {
    file.set_len(offset)
        .map_err(|e| io_fail("cannot truncate", path, e))?;
    if preallocated > offset {
        let flags = rustix::fs::FallocateFlags::empty();
        if let Err(e) = rustix::fs::fallocate(file, flags, offset, preallocated - offset) {
            eprintln!(
                "raftwal: note: could not preallocate {} again: {e}",
                path.display()
            );
        }
    }
    file.sync_all()
        .map_err(|e| io_fail("cannot fsync", path, e))
}

/// Renames `from` to `to` (refusing to replace an existing file).
fn move_aside(from: &Path, to: &Path) -> Result<(), Failure> {
    if to.exists() {
        return Err(Failure::new(
            OTHER,
            format!("backup {} exists already; move it away first", to.display()),
        ));
    }
    std::fs::rename(from, to).map_err(|e| io_fail("cannot rename", from, e))?;
    println!("moved {} to {}", from.display(), to.display());
    Ok(())
}
