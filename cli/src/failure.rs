//! What a command that fails reports, and its exit code (listed in
//! `--help`).

use std::io;
use std::process::ExitCode;

/// Damage found (verify), or a repair refused.
pub const DAMAGE: u8 = 1;
/// A bad command line (clap uses the same code).
pub const USAGE: u8 = 2;
/// The directory does not exist or holds no raftwal log.
pub const NOT_A_LOG: u8 = 3;
/// The directory is locked by an open log.
pub const LOCKED: u8 = 4;
/// Anything else: I/O errors and the like.
pub const OTHER: u8 = 5;

/// A command's failure: a message for stderr and an exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub msg: String,
    /// Output stopped because its reader went away (`raftwal dump | head`):
    /// not a failure, nothing to say.
    pub quiet: bool,
}

impl Failure {
    pub fn new(code: u8, msg: impl Into<String>) -> Failure {
        Failure {
            code,
            msg: msg.into(),
            quiet: false,
        }
    }

    /// Prints the message and returns the exit code.
    pub fn report(self) -> ExitCode {
        if self.quiet {
            return ExitCode::SUCCESS;
        }
        eprintln!("raftwal: error: {}", self.msg);
        ExitCode::from(self.code)
    }
}

impl From<raftwal::Error> for Failure {
    fn from(e: raftwal::Error) -> Failure {
        let code = match e {
            raftwal::Error::Locked { .. } => LOCKED,
            _ => OTHER,
        };
        Failure::new(code, e.to_string())
    }
}

/// An error writing the command's output.
impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        let quiet = e.kind() == io::ErrorKind::BrokenPipe;
        Failure {
            code: OTHER,
            msg: format!("writing output: {e}"),
            quiet,
        }
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Failure {
        match e.io_error_kind() {
            Some(kind) => Failure::from(io::Error::from(kind)),
            None => Failure::new(OTHER, format!("encoding JSON: {e}")),
        }
    }
}
