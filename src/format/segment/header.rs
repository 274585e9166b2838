//! The segment header: what a segment is and what it continues (`Origin`,
//! `Link`), its encoding, and the checks a header read back must pass.

use super::*;

/// Where a segment's predecessor ended when the segment was created: its
/// sequence number, and the offset just past its last write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// The predecessor's sequence number.
    pub sequence: u64,
    /// The offset just past the predecessor's last write (its data end).
    pub end: u64,
    /// Whether every write before the segment, and every segment's name,
    /// was durable when it was created: then no crash can make the
    /// predecessor missing or shorter, only damage can.
    pub synced: bool,
}

/// How a segment came to be, and which segment it continues: the chain of
/// these links tells recovery which files make up the log and that none of
/// their writes went missing (see `docs/FORMAT.md`, "Continuity").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A version-1 header, which names no predecessor: the segment
    /// continues the one before it by sequence.
    Legacy,
    /// The log rolled to it from the active segment the link names.
    Roll(Link),
    /// The first segment of a log: nothing before it is part of the log.
    First,
    /// A cut below the active segment: its first write is a truncation
    /// marker at its first index, and it continues `prev`, the newest
    /// segment holding entries below the cut (`None` when the cut removed
    /// every entry). Files between the two are superseded.
    Cut(Option<Link>),
    /// A reset: its first write is a reset marker, and nothing before it is
    /// part of the log.
    Reset,
}

impl Origin {
    /// The segment this one continues, if it names one.
    pub fn link(self) -> Option<Link> {
        match self {
            Origin::Roll(l) | Origin::Cut(Some(l)) => Some(l),
            _ => None,
        }
    }

    /// Whether the segment's first write must open it with a marker (a
    /// truncation or a reset), written and synced before the file got its
    /// name.
    pub fn opens_with_marker(self) -> bool {
        matches!(self, Origin::Cut(_) | Origin::Reset)
    }

    fn to_proto(self) -> (proto::Origin, u64, u64, bool) {
        let link = self
            .link()
            .map_or((0, 0, false), |l| (l.sequence, l.end, l.synced));
        let kind = match self {
            Origin::Legacy => proto::Origin::Unspecified,
            Origin::Roll(_) => proto::Origin::Roll,
            Origin::First => proto::Origin::First,
            Origin::Cut(_) => proto::Origin::Cut,
            Origin::Reset => proto::Origin::Reset,
        };
        (kind, link.0, link.1, link.2)
    }

    /// The origin a version-2 header states, checked against the
    /// segment's own sequence number and header length; `Err` names what
    /// is impossible.
    fn from_proto(p: &proto::SegmentHeader) -> std::result::Result<Origin, String> {
        let link = (p.prev_sequence != 0).then_some(Link {
            sequence: p.prev_sequence,
            end: p.prev_end,
            synced: p.prev_synced,
        });
        if let Some(l) = link {
            if l.sequence >= p.sequence {
                return Err(format!(
                    "the header names segment {} as its predecessor, not older than itself",
                    l.sequence
                ));
            }
            // Every segment's data starts after its header.
            if l.end < HEADER_LEN as u64 {
                return Err(format!(
                    "the header says its predecessor ended at offset {}, inside that one's header",
                    l.end
                ));
            }
        } else if p.prev_end != 0 || p.prev_synced {
            return Err("the header describes a predecessor but names none".into());
        }
        let kind = proto::Origin::try_from(p.origin)
            .map_err(|_| format!("unknown segment origin {}", p.origin))?;
        match (kind, link) {
            (proto::Origin::Roll, Some(l)) => Ok(Origin::Roll(l)),
            (proto::Origin::Cut, l) => Ok(Origin::Cut(l)),
            (proto::Origin::First, None) => Ok(Origin::First),
            (proto::Origin::Reset, None) => Ok(Origin::Reset),
            (proto::Origin::Unspecified, _) => {
                Err("a version-2 header must say how the segment came to be".into())
            }
            (kind, _) => Err(format!(
                "a segment of origin {kind:?} cannot have that predecessor"
            )),
        }
    }
}

/// Encodes the header frame of a segment (its CRC seed is 0: the header
/// carries the sequence that salts every later frame). [`Origin::Legacy`]
/// writes a version-1 header (for tests of the old format); anything else a
/// version-2 header.
pub fn encode_header(
    buf: &mut Vec<u8>,
    sequence: u64,
    first_index: u64,
    preallocated: u64,
    origin: Origin,
) -> usize {
    let (kind, prev_sequence, prev_end, prev_synced) = origin.to_proto();
    let header = proto::SegmentHeader {
        magic: MAGIC.to_vec().into(),
        version: match origin {
            Origin::Legacy => OLDEST_VERSION,
            _ => FORMAT_VERSION,
        },
        sequence,
        first_index,
        preallocated,
        origin: kind as i32,
        prev_sequence,
        prev_end,
        prev_synced,
    };
    frame::encode_message(buf, FrameType::Header, 0, &header)
}

/// A validated segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The segment's sequence number.
    pub sequence: u64,
    /// The first index the segment holds.
    pub first_index: u64,
    /// The length of the header frame (where the first data frame starts).
    pub len: u64,
    /// The length the file was preallocated to (0 when it was not).
    pub preallocated: u64,
    /// How the segment came to be ([`Origin::Legacy`] for version 1).
    pub origin: Origin,
}

/// Reads and checks the header of a segment whose file is `file_len` long.
/// Any problem is [`Error::Corruption`] at offset 0.
pub fn read_header(file: &dyn FileHandle, path: &Path, file_len: u64) -> Result<Header> {
    check_header(file, path, file_len)?
        .map_err(|bad| Error::corruption(Damage::Header, path, 0, bad.reason))
}

/// Why a segment header cannot be used.
#[derive(Debug, Clone)]
pub(crate) struct BadHeader {
    /// What is wrong.
    pub reason: String,
    /// Whether the header frame's CRC verified: then no crash made it what
    /// it is (a crash loses bytes, it does not write a valid header of
    /// another content), and it is damage or a file of another format.
    pub verified: bool,
}

/// [`read_header`], telling a header a crash may have torn (its frame does
/// not verify) from one whose verified content is impossible. I/O errors
/// are `Err`.
pub(crate) fn check_header(
    file: &dyn FileHandle,
    path: &Path,
    file_len: u64,
) -> Result<std::result::Result<Header, BadHeader>> {
    let torn = |reason: String| {
        Ok(Err(BadHeader {
            reason,
            verified: false,
        }))
    };
    let damaged = |reason: String| {
        Ok(Err(BadHeader {
            reason,
            verified: true,
        }))
    };
    if file_len < HEADER_LEN as u64 {
        return torn(format!(
            "file of {file_len} bytes is too short for a segment header"
        ));
    }
    let mut head = [0u8; HEADER_LEN];
    file.read_exact_at(&mut head, 0)
        .map_err(|e| Error::io("read segment header", path, e))?;
    let h = FrameHeader::parse(&head);
    if h.ty != FrameType::Header as u8 {
        return torn(format!(
            "first frame has type {} instead of a segment header",
            h.ty
        ));
    }
    // A header is a few dozen bytes; anything longer is damage.
    if h.len > 256 || u64::from(h.len) > file_len - HEADER_LEN as u64 {
        return torn(format!("segment header length {} is impossible", h.len));
    }
    let mut payload = vec![0u8; h.len as usize];
    file.read_exact_at(&mut payload, HEADER_LEN as u64)
        .map_err(|e| Error::io("read segment header", path, e))?;
    if !h.verify(0, &payload) {
        return torn("segment header CRC mismatch".into());
    }
    let p = match proto::SegmentHeader::decode(&payload[..]) {
        Ok(p) => p,
        Err(e) => return damaged(format!("segment header does not decode: {e}")),
    };
    if p.magic.as_ref() != MAGIC {
        return damaged("bad magic: not a raftwal segment".into());
    }
    if !(OLDEST_VERSION..=FORMAT_VERSION).contains(&p.version) {
        return damaged(format!(
            "format version {} is not supported (this build reads versions {OLDEST_VERSION} to {FORMAT_VERSION})",
            p.version
        ));
    }
    // Index 0 is never an entry's: the first index of a log is at least 1.
    if p.first_index == 0 {
        return damaged("the header says the segment starts at index 0".into());
    }
    let len = (HEADER_LEN + payload.len()) as u64;
    let origin = match p.version {
        OLDEST_VERSION => Origin::Legacy,
        _ => match Origin::from_proto(&p) {
            Ok(o) => o,
            Err(reason) => return damaged(reason),
        },
    };
    Ok(Ok(Header {
        sequence: p.sequence,
        first_index: p.first_index,
        len,
        preallocated: p.preallocated,
        origin,
    }))
}
