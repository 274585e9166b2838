//! Segment footers: when a segment is sealed, an index block (entry offsets
//! and lengths, term runs, the marker and state frames to replay) is written
//! after its data, followed by a fixed-size trailer pointing at it. Opening
//! the log then reads a sealed segment's header, trailer and footer, never
//! its payloads. A missing or damaged footer only means a full scan.

use std::path::Path;

use prost::Message;

use crate::error::{Damage, Error, Result};
use crate::format::frame::{self, FrameHeader, FrameType, HEADER_LEN};
use crate::format::index::{FrameAt, Loc, Segment, SegmentMeta};
use crate::format::proto;
use crate::format::segment::{Header, ENTRY_OVERHEAD};
use crate::fs::FileHandle;

/// The trailer frame's length on disk: a frame header and a
/// `SegmentTrailer` whose two fixed-width fields are both non-zero.
pub const TRAILER_LEN: u64 = HEADER_LEN as u64 + 14;

/// What a valid footer says about its segment.
pub(crate) struct Footer {
    pub locs: Vec<Loc>,
    pub terms: Vec<(u64, u64)>,
    pub meta: SegmentMeta,
    pub data_end: u64,
}

fn at(offset: u64, len: u32) -> Option<FrameAt> {
    (len > 0).then_some((offset, len))
}

/// The footer and trailer of segment `sequence`, to be written at
/// `data_end`, right after its data: the entry frames `locs` (the first is
/// entry `first_index`), the term runs `runs` covering them, the marker
/// and state frames `meta`.
pub(crate) fn encode(
    sequence: u64,
    first_index: u64,
    locs: &[Loc],
    runs: &[(u64, u64)],
    meta: SegmentMeta,
    data_end: u64,
) -> Result<Vec<u8>> {
    let footer = proto::SegmentFooter {
        first_index,
        offsets: locs.iter().map(|l| l.offset).collect(),
        lengths: locs.iter().map(|l| l.len).collect(),
        term_starts: runs.iter().map(|r| r.0.max(first_index)).collect(),
        terms: runs.iter().map(|r| r.1).collect(),
        opening_offset: meta.opening.map_or(0, |m| m.0),
        opening_len: meta.opening.map_or(0, |m| m.1),
        marker_offset: meta.marker.map_or(0, |m| m.0),
        marker_len: meta.marker.map_or(0, |m| m.1),
        state_offset: meta.state.map_or(0, |m| m.0),
        state_len: meta.state.map_or(0, |m| m.1),
        data_end,
    };
    let salt = frame::salt(sequence);
    let mut buf = Vec::with_capacity(footer.encoded_len() + 64);
    let footer_len = frame::encode_message(&mut buf, FrameType::Footer, salt, &footer);
    let trailer = proto::SegmentTrailer {
        footer_offset: data_end,
        footer_len: footer_len as u32,
    };
    frame::encode_message(&mut buf, FrameType::Trailer, salt, &trailer);
    if buf.len() - footer_len != TRAILER_LEN as usize {
        return Err(Error::internal(format!(
            "the trailer of segment {sequence} has an unexpected size"
        )));
    }
    Ok(buf)
}

/// Reads the footer of a sealed segment whose file is `file_len` long.
/// `Ok(None)` when there is no usable footer (the caller scans the
/// segment): none, or one a crash may have torn. A trailer whose CRC
/// verifies but that points outside the file is damage no crash leaves
/// (the sealer writes footer and trailer together, then trims the file to
/// end right after them): `Error::Corruption` at the trailer's offset.
pub(crate) fn read(
    file: &dyn FileHandle,
    path: &Path,
    file_len: u64,
    header: &Header,
    max_entry: u64,
) -> Result<Option<Footer>> {
    match try_read(file, file_len, header, max_entry) {
        Ok(f) => Ok(f),
        Err(Unusable::Damaged(reason)) => Err(Error::corruption(
            Damage::Footer,
            path,
            file_len.saturating_sub(TRAILER_LEN),
            reason,
        )),
        Err(Unusable::Torn(reason)) => {
            log::info!(
                "raftwal: scanning {} in full: its footer is unusable ({reason})",
                path.display()
            );
            Ok(None)
        }
    }
}

/// Why a footer cannot be used.
enum Unusable {
    /// Possibly a crash's doing (a torn footer): scan the segment.
    Torn(String),
    /// A verified trailer that cannot be right: damage.
    Damaged(String),
}

fn try_read(
    file: &dyn FileHandle,
    file_len: u64,
    header: &Header,
    max_entry: u64,
) -> std::result::Result<Option<Footer>, Unusable> {
    use Unusable::{Damaged, Torn};
    if file_len < header.len + TRAILER_LEN {
        return Ok(None);
    }
    let salt = frame::salt(header.sequence);
    let mut t = [0u8; TRAILER_LEN as usize];
    file.read_exact_at(&mut t, file_len - TRAILER_LEN)
        .map_err(|e| Torn(e.to_string()))?;
    let th = FrameHeader::parse(&head_of(&t));
    if th.ty != FrameType::Trailer as u8 {
        return Ok(None); // not sealed
    }
    let payload = &t[HEADER_LEN..];
    if th.len as usize != payload.len() || !th.verify(salt, payload) {
        return Err(Torn("bad trailer".into()));
    }
    let tr = proto::SegmentTrailer::decode(payload).map_err(|e| Damaged(e.to_string()))?;
    let footer_len = u64::from(tr.footer_len);
    let ends = tr
        .footer_offset
        .checked_add(footer_len)
        .and_then(|n| n.checked_add(TRAILER_LEN));
    if tr.footer_offset < header.len || ends != Some(file_len) || footer_len < HEADER_LEN as u64 {
        return Err(Damaged(format!(
            "the trailer puts a footer of {footer_len} bytes at offset {}, outside the file of {file_len} bytes",
            tr.footer_offset
        )));
    }
    // A footer frame the trailer points at, in the file: torn or damaged,
    // the segment is scanned in full and the damage found there.
    let mut f = vec![0u8; footer_len as usize];
    file.read_exact_at(&mut f, tr.footer_offset)
        .map_err(|e| Torn(e.to_string()))?;
    let fh = FrameHeader::parse(&head_of(&f));
    let fp = &f[HEADER_LEN..];
    if fh.ty != FrameType::Footer as u8 || fh.len as usize != fp.len() || !fh.verify(salt, fp) {
        return Err(Torn("bad footer frame".into()));
    }
    let p = proto::SegmentFooter::decode(fp).map_err(|e| Torn(e.to_string()))?;
    let data_end = p.data_end;
    if p.first_index != header.first_index
        || data_end != tr.footer_offset
        || p.offsets.len() != p.lengths.len()
    {
        return Err(Torn("footer disagrees with its segment".into()));
    }
    let max_frame = max_entry + ENTRY_OVERHEAD + HEADER_LEN as u64;
    let mut locs = Vec::with_capacity(p.offsets.len());
    for (&offset, &len) in p.offsets.iter().zip(&p.lengths) {
        let (o, l) = (u64::from(offset), u64::from(len));
        if o < header.len || o + l > data_end || l <= HEADER_LEN as u64 || l > max_frame {
            return Err(Torn(format!(
                "entry frame at {o} of {l} bytes lies outside the data"
            )));
        }
        locs.push(Loc { offset, len });
    }
    if p.term_starts.len() != p.terms.len() {
        return Err(Torn("term runs are malformed".into()));
    }
    let terms: Vec<(u64, u64)> = p
        .term_starts
        .iter()
        .copied()
        .zip(p.terms.iter().copied())
        .collect();
    // One past the last entry's index (entries stop at u64::MAX - 1).
    let Some(end) = header.first_index.checked_add(locs.len() as u64) else {
        return Err(Torn(
            "the footer lists entries past the largest index".into(),
        ));
    };
    let runs_ok = terms.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1)
        && terms.first().is_none_or(|r| r.0 == header.first_index)
        && terms.last().is_none_or(|r| r.0 < end)
        && (terms.is_empty() == locs.is_empty());
    if !runs_ok {
        return Err(Torn("term runs do not cover the entries".into()));
    }
    let frame_ok = |a: Option<FrameAt>| {
        a.is_none_or(|(o, l)| {
            o >= header.len && o.checked_add(u64::from(l)).is_some_and(|e| e <= data_end)
        })
    };
    let meta = SegmentMeta {
        opening: at(p.opening_offset, p.opening_len),
        marker: at(p.marker_offset, p.marker_len),
        state: at(p.state_offset, p.state_len),
    };
    if !(frame_ok(meta.opening) && frame_ok(meta.marker) && frame_ok(meta.state)) {
        return Err(Torn("a marker or state frame lies outside the data".into()));
    }
    Ok(Some(Footer {
        locs,
        terms,
        meta,
        data_end,
    }))
}

fn head_of(b: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&b[..HEADER_LEN]);
    h
}

/// Reads one frame of a sealed segment (a marker or state named by its
/// footer), verifying its type and CRC. Returns its payload.
pub(crate) fn read_frame(seg: &Segment, at: FrameAt, ty: FrameType) -> Result<Vec<u8>> {
    let (offset, len) = at;
    let mut buf = vec![0u8; len as usize];
    seg.file
        .read_exact_at(&mut buf, offset)
        .map_err(|e| Error::io("read frame", &seg.path, e))?;
    let bad =
        |reason: &str| Error::corruption(Damage::Frame, &seg.path, offset, reason.to_string());
    if buf.len() < HEADER_LEN {
        return Err(bad("frame named by the footer is too short"));
    }
    let h = FrameHeader::parse(&head_of(&buf));
    let payload = buf.split_off(HEADER_LEN);
    if FrameType::from_u8(h.ty) != Some(ty)
        || h.len as usize != payload.len()
        || !h.verify(frame::salt(seg.sequence), &payload)
    {
        return Err(bad("frame named by the footer does not verify"));
    }
    Ok(payload)
}
