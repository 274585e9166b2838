//! An engine record: the data of one entry of the engine's stream, holding
//! one write's parts for many groups. It is a run of frames (the layout of
//! `format::frame`): each part is a group frame (`proto::GroupOp`), then
//! the group's entry frames, then at most one state frame. Entry and state
//! frames are salted with their group, so a read that lands on another
//! group's frame fails its CRC; group frames with a fixed salt.

use prost::bytes::Bytes;
use prost::Message;

use crate::format::frame::{self, FrameHeader, FrameType, HEADER_LEN};
use crate::format::index::Loc;
use crate::format::proto;

/// The CRC seed of group frames.
pub(crate) const GROUP_FRAME_SALT: u32 = 0x6752_6f75; // "gRou"

/// The CRC seed of group `group`'s entry and state frames.
pub(crate) fn group_salt(group: u64) -> u32 {
    frame::salt(group) ^ GROUP_FRAME_SALT
}

/// One group's part of a record, as the memtable applies it: built from a
/// batch before it is written, or parsed from a record at open.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Part {
    /// The group and its operations (`truncate_from` included).
    pub op: proto::GroupOp,
    /// The part's entries: index, term, and the frame's place relative to
    /// the record's start.
    pub entries: Vec<(u64, u64, Loc)>,
    /// The part's state blob.
    pub state: Option<Bytes>,
}

/// Parses a record into its parts; an error says what is wrong and at
/// which offset of the record.
pub(crate) fn parse(record: &Bytes) -> Result<Vec<Part>, (usize, String)> {
    let mut parts: Vec<Part> = Vec::new();
    let mut at = 0usize;
    while at < record.len() {
        let Some(head) = record.get(at..at + HEADER_LEN) else {
            return Err((at, "a frame header cut short".into()));
        };
        let head = FrameHeader::parse(head.try_into().map_err(|_| (at, "header".to_string()))?);
        let end = at + HEADER_LEN + head.len as usize;
        let Some(payload) = record.get(at + HEADER_LEN..end) else {
            return Err((
                at,
                format!("a frame of {} bytes past the record's end", head.len),
            ));
        };
        let ty = match FrameType::from_u8(head.ty) {
            Some(t) if head.ty & frame::FLAGS == 0 => t,
            _ => return Err((at, format!("frame type byte {:#04x}", head.ty))),
        };
        let salt = match (ty, parts.last()) {
            (FrameType::Group, _) => GROUP_FRAME_SALT,
            (_, Some(p)) => group_salt(p.op.group),
            (_, None) => return Err((at, "a frame before any group frame".into())),
        };
        if !head.verify(salt, payload) {
            return Err((at, "a frame that fails its CRC".into()));
        }
        let bad = |what: &str, e: prost::DecodeError| (at, format!("{what} does not decode: {e}"));
        match ty {
            FrameType::Group => {
                let op = proto::GroupOp::decode(payload).map_err(|e| bad("group frame", e))?;
                // One part per group: parts are checked against the
                // groups as they were before the record.
                if parts.iter().any(|p| p.op.group == op.group) {
                    return Err((at, format!("a second part for group {}", op.group)));
                }
                parts.push(Part {
                    op,
                    entries: Vec::new(),
                    state: None,
                });
            }
            FrameType::Entry => {
                let m = proto::EntryMeta::decode(payload).map_err(|e| bad("entry", e))?;
                let loc = Loc {
                    offset: u32::try_from(at).map_err(|_| (at, "offset".to_string()))?,
                    len: (end - at) as u32,
                };
                if let Some(p) = parts.last_mut() {
                    p.entries.push((m.index, m.term, loc));
                }
            }
            FrameType::State => {
                let s = proto::State::decode(record.slice(at + HEADER_LEN..end))
                    .map_err(|e| bad("state", e))?;
                match parts.last_mut() {
                    Some(p) if p.state.is_none() => p.state = Some(s.data),
                    _ => return Err((at, "a second state frame in one part".into())),
                }
            }
            _ => return Err((at, format!("a {ty:?} frame inside a record"))),
        }
        at = end;
    }
    if parts.is_empty() {
        return Err((0, "a record with no part".into()));
    }
    Ok(parts)
}

/// Verifies and decodes entry frame `buf` of group `group`, read from where
/// the memtable says entry `index` is: its term and data.
pub(crate) fn read_entry(group: u64, index: u64, buf: Vec<u8>) -> Result<(u64, Bytes), String> {
    let head: &[u8; HEADER_LEN] = buf
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or("an entry frame shorter than its header")?;
    let head = FrameHeader::parse(head);
    let payload = &buf[HEADER_LEN..];
    if head.ty != FrameType::Entry as u8 || head.len as usize != payload.len() {
        return Err(format!(
            "not the entry frame of group {group} index {index}"
        ));
    }
    if !head.verify(group_salt(group), payload) {
        return Err(format!(
            "the frame of group {group} index {index} fails its CRC"
        ));
    }
    let e = proto::Entry::decode(Bytes::from(buf).slice(HEADER_LEN..))
        .map_err(|e| format!("entry {index} of group {group} does not decode: {e}"))?;
    if e.index != index {
        return Err(format!(
            "the frame read for group {group} index {index} holds index {}",
            e.index
        ));
    }
    Ok((e.term, e.data))
}
