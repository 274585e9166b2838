//! `raftwal dump DIR`: the log's entries, one line each.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::failure::{Failure, DAMAGE};
use crate::group;
use crate::inspect::{scan, Scanned};
use crate::raftdata;
use crate::render::Preview;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// The first index to print (default: the log's, or the group's, first
    /// index).
    #[arg(long, value_name = "N")]
    pub from: Option<u64>,
    /// The last index to print, inclusive (default: the log's, or the
    /// group's, last index).
    #[arg(long, value_name = "M")]
    pub to: Option<u64>,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Show entry data as it is stored, without decoding raft entries.
    #[arg(long)]
    pub raw: bool,
    /// The log's `Options::max_entry_size`: longer frames are damage.
    #[arg(long, default_value_t = raftwal::tools::inspect::DEFAULT_MAX_ENTRY_SIZE, value_name = "BYTES")]
    pub max_entry_size: u64,
    /// Engine directories only: print group ID's entries (without it, an
    /// engine's records are printed as the stream's entries).
    #[arg(long, value_name = "ID")]
    pub group: Option<u64>,
}

/// One printed entry; also its JSON form.
#[derive(Debug, Serialize)]
struct Line {
    index: u64,
    term: u64,
    /// `data` for a plain log entry; raft's entry type for a raft entry.
    #[serde(rename = "type")]
    kind: &'static str,
    /// Bytes of the shown data (for a raft entry: the raft entry's data).
    size: usize,
    /// The first 32 bytes: text when printable ASCII, else hex.
    preview: Preview,
}

pub fn run(args: &Args) -> Result<ExitCode, Failure> {
    let s = scan(&args.dir, args.max_entry_size)?;
    if let Some(id) = args.group {
        return run_group(args, &s, id);
    }
    let scan = &s.scan;
    let lo = args.from.unwrap_or(scan.first_index);
    let hi = args.to.map_or(u64::MAX, |t| t.saturating_add(1));
    let raft = s.is_raft && !args.raw;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for entry in scan.entries(lo, hi) {
        print_entry(&mut out, &entry?, raft, args.json)?;
    }
    out.flush()?;
    if let Some(p) = scan.problems.first() {
        eprintln!(
            "raftwal: note: entries end at index {} before damage in {} at offset {} ({}); run `raftwal verify`",
            scan.last_index,
            p.path.display(),
            p.offset,
            p.reason
        );
    }
    if raftwal::tools::engine::is_engine(scan) {
        eprintln!(
            "raftwal: note: {} is an engine directory: these are its records; `--group ID` prints a group's entries",
            args.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `dump --group ID`: the group's entries, read as `Engine::entries`
/// reads them, [`group::WINDOW`] at a time.
fn run_group(args: &Args, s: &Scanned, id: u64) -> Result<ExitCode, Failure> {
    let scan = &s.scan;
    group::require_engine(scan)?;
    let es = group::replay(scan)?.map_err(|p| {
        Failure::new(
            DAMAGE,
            format!(
                "cannot read group {id}: {} at offset {}: {}; run `raftwal verify`",
                p.path.display(),
                p.offset,
                p.reason
            ),
        )
    })?;
    let g = group::find(&es, &args.dir, id)?;
    let lo = args.from.unwrap_or(g.first_index).max(g.first_index);
    let hi = args
        .to
        .map_or(u64::MAX, |t| t.saturating_add(1))
        .min(g.last_index.saturating_add(1));
    // Raft entries when the group's first one is (`RaftLogStore::open_group`).
    let raft = !args.raw
        && match es
            .entries(id, g.first_index, g.first_index.saturating_add(1))?
            .first()
        {
            Some(e) => raftdata::decode_entry(e.index, e.term, &e.data).is_some(),
            None => false,
        };
    let mut out = BufWriter::new(std::io::stdout().lock());
    for (a, b) in group::windows(lo, hi) {
        for e in es.entries(id, a, b)? {
            print_entry(&mut out, &e, raft, args.json)?;
        }
    }
    out.flush()?;
    if let Some(p) = scan.problems.first() {
        eprintln!(
            "raftwal: note: the records end at index {} before damage in {} at offset {} ({}); run `raftwal verify`",
            scan.last_index,
            p.path.display(),
            p.offset,
            p.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One entry, as a line of text or of JSON.
fn print_entry(
    out: &mut impl Write,
    e: &raftwal::Entry,
    raft: bool,
    json: bool,
) -> Result<(), Failure> {
    let decoded = if raft {
        raftdata::decode_entry(e.index, e.term, &e.data)
    } else {
        None
    };
    let line = match &decoded {
        Some(d) => Line {
            index: e.index,
            term: e.term,
            kind: d.kind,
            size: d.data.len(),
            preview: Preview::of(&d.data),
        },
        None => Line {
            index: e.index,
            term: e.term,
            kind: if raft {
                "data (not a raft entry)"
            } else {
                "data"
            },
            size: e.data.len(),
            preview: Preview::of(&e.data),
        },
    };
    if json {
        serde_json::to_writer(&mut *out, &line)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{:>10} {:>6} {:<17} {:>8}  {}",
            line.index, line.term, line.kind, line.size, line.preview
        )?;
    }
    Ok(())
}
