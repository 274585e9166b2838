//! Format-level access for tools and tests: what the `raftwal` command-line
//! tool (the `raftwal-cli` crate) needs of the internals, and what the
//! crate's integration tests, benchmarks and fuzz targets use to build,
//! read and damage log directories byte by byte.
//!
//! - [`inspect`]: a read-only scan of a log directory: what is on disk,
//!   what [`Log::open`](crate::Log::open) would make of it and where it is
//!   damaged, without taking the lock or changing a byte.
//! - [`segment`]: segment files: names, the header frame, creation and
//!   preparation, the frame [`Scanner`](segment::Scanner).
//! - [`frame`]: the frame `[type][len][crc][payload]`: encoding, sealing,
//!   parsing and checking a header.
//! - [`proto`]: the protobuf messages of the frames' payloads.
//! - [`engine`]: the groups of an engine directory, replayed read-only
//!   from a scan of its stream.
//!
//! # Stability
//!
//! Nothing here is needed to use [`Log`](crate::Log) or
//! [`RaftLogStore`](crate::RaftLogStore); the crate root is the supported
//! API. These modules follow the on-disk format ([`docs::format`](crate::docs::format),
//! versioned by [`segment::FORMAT_VERSION`]), and that is their only
//! promise: their Rust items may change in any release, with the format or
//! without. The functions that write ([`segment::create`],
//! [`segment::prepare`], ...) take no lock; use them only on a directory no
//! [`Log`](crate::Log) has open.

pub use crate::format::{frame, proto, segment};
pub mod engine;
pub mod inspect;
