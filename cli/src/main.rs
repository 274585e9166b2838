//! `raftwal`: look into, check, mend and measure raftwal log directories.
//!
//! `inspect`, `dump` and `verify` only read: they scan the segment files
//! with [`raftwal::tools::inspect`] and never take the directory's lock, so
//! they work on a log that a running node holds open. On an engine
//! directory (many Raft groups in one stream) they also replay its records
//! read-only ([`raftwal::tools::engine`]) and take `--group ID`. `repair`
//! takes the lock and refuses a directory in use. `bench` measures raftwal
//! against the raw disk in a temporary directory.

mod bench;
mod dir;
mod dump;
mod failure;
mod group;
mod inspect;
mod problem;
mod raftdata;
mod render;
mod repair;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0  success (verify: no damage found; repair: repaired, or nothing to repair)
  1  verify found damage; repair refused damage that is not a torn tail
     (run it again with --force) or that cutting cannot mend; dump --group:
     the engine's records do not replay
  2  bad command line (also --group on a directory that is not an engine's)
  3  the directory does not exist, or holds no raftwal log (or, with
     --group, not that group)
  4  the directory is locked by an open log (repair only)
  5  any other failure (I/O errors, ...)";

/// Look into, check, mend and measure raftwal log directories.
#[derive(Debug, Parser)]
#[command(name = "raftwal", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show a log directory: segments, index range, raft state, snapshot,
    /// lock; an engine directory's groups. Read-only; works on a locked
    /// directory.
    #[command(after_help = EXIT_CODES)]
    Inspect(inspect::Args),
    /// Print entries: index, term, type, size and a preview of the data.
    /// Read-only; works on a locked directory.
    #[command(after_help = EXIT_CODES)]
    Dump(dump::Args),
    /// Read every frame and check every CRC without changing anything.
    /// Exits 1 naming the file and offset of the first problem.
    #[command(after_help = EXIT_CODES)]
    Verify(verify::Args),
    /// Cut a torn tail (what a crash leaves) away, keeping a backup of the
    /// bytes cut. Refuses other damage unless --force.
    #[command(after_help = EXIT_CODES)]
    Repair(repair::Args),
    /// Run a quick subset of the benchmark workloads (W1, W2, W4, R1, R3)
    /// against raftwal and the raw disk, in a temporary directory.
    #[command(after_help = EXIT_CODES)]
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(a) => inspect::run(&a),
        Command::Dump(a) => dump::run(&a),
        Command::Verify(a) => verify::run(&a),
        Command::Repair(a) => repair::run(&a),
        Command::Bench(a) => bench::run(&a),
    };
    match result {
        Ok(code) => code,
        Err(f) => f.report(),
    }
}
