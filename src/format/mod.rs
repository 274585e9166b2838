//! The format layer: bytes on disk and where they are. Frames, segment
//! files and their headers, footers, the batches a write encodes, and the
//! in-memory index of where every entry's frame is. Nothing here knows of
//! a log's threads or of what the frames mean together (`replay` does).

pub(crate) mod batch;
pub(crate) mod footer;
pub mod frame;
pub(crate) mod index;
pub mod segment;

/// The protobuf messages of the on-disk format, generated from
/// `proto/raftwal.proto` by `build.rs`.
#[allow(missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/raftwal.v1.rs"));
}
