//! `raftwal dump DIR`: the log's entries, one line each.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::failure::Failure;
use crate::inspect::scan;
use crate::raftdata;
use crate::render::Preview;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// The first index to print (default: the log's first index).
    #[arg(long, value_name = "N")]
    pub from: Option<u64>,
    /// The last index to print, inclusive (default: the log's last index).
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
    let scan = &s.scan;
    let lo = args.from.unwrap_or(scan.first_index);
    let hi = args.to.map_or(u64::MAX, |t| t.saturating_add(1));
    let raft = s.is_raft && !args.raw;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for entry in scan.entries(lo, hi) {
        let e = entry?;
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
        if args.json {
            serde_json::to_writer(&mut out, &line)?;
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "{:>10} {:>6} {:<17} {:>8}  {}",
                line.index, line.term, line.kind, line.size, line.preview
            )?;
        }
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
    Ok(ExitCode::SUCCESS)
}
