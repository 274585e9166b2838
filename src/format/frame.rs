//! Frames: the unit of everything raftwal writes.
//!
//! ```text
//! [type u8][len u32 LE][crc32 u32 LE][payload: len bytes, a prost message]
//! ```
//!
//! The CRC (CRC-32/IEEE, computed by `crc32fast`) is seeded with a
//! per-segment *salt* and covers the type byte, the four length
//! bytes and the payload. Salting with the segment sequence means a stale
//! frame left in a reused file can never pass as a frame of the new segment.

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;

/// Bytes of a frame header: type, length, CRC.
pub const HEADER_LEN: usize = 9;

/// Set in the type byte of the last frame of every write: a write (a batch
/// with its cut and state, a compaction marker, ...) counts only once its
/// last frame is on disk, so a crash keeps all of a write or none of it.
pub const END_OF_WRITE: u8 = 0x80;

/// Set in the type byte of the first frame of a write issued when every
/// earlier write was already durable. Recovery uses it to tell damage from a
/// crash: a bad frame with such a write after it was on disk before that
/// write was issued, so no crash can have torn it.
pub const PRIOR_SYNCED: u8 = 0x40;

/// The flag bits of a type byte: [`END_OF_WRITE`] and [`PRIOR_SYNCED`].
pub const FLAGS: u8 = END_OF_WRITE | PRIOR_SYNCED;

/// The kinds of frame. Type 0 is never written, so zeroed space is never a
/// valid frame. The type byte's two top bits are flags ([`FLAGS`]), not
/// part of the type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    /// The segment header, always the first frame of a segment.
    Header = 1,
    /// A log entry.
    Entry = 2,
    /// The opaque state blob.
    State = 3,
    /// A compaction, truncation or reset marker.
    Marker = 4,
    /// The index block of a sealed segment.
    Footer = 5,
    /// The fixed-size pointer to the footer, last in a sealed segment.
    Trailer = 6,
    /// A group's operation, opening its part of an engine record (only
    /// inside an engine record, never in a segment's own frames).
    Group = 7,
}

impl FrameType {
    /// The frame type for a type byte (ignoring its [`FLAGS`]), or `None`
    /// for an unknown byte.
    pub fn from_u8(b: u8) -> Option<FrameType> {
        match b & !FLAGS {
            1 => Some(FrameType::Header),
            2 => Some(FrameType::Entry),
            3 => Some(FrameType::State),
            4 => Some(FrameType::Marker),
            5 => Some(FrameType::Footer),
            6 => Some(FrameType::Trailer),
            7 => Some(FrameType::Group),
            _ => None,
        }
    }
}

/// The CRC seed of every frame but the header in segment `sequence`.
pub fn salt(sequence: u64) -> u32 {
    // Multiplying by an odd constant is a bijection on u32, so the first
    // 2^32 sequence numbers all get distinct salts.
    (sequence as u32).wrapping_mul(0x9E37_79B1) ^ ((sequence >> 32) as u32)
}

/// The CRC of a frame: seeded with `salt`, over type, length and payload.
pub fn checksum(salt: u32, ty: u8, len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(salt);
    h.update(&[ty]);
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The raw type byte (not yet validated).
    pub ty: u8,
    /// The payload length.
    pub len: u32,
    /// The stored CRC.
    pub crc: u32,
}

impl FrameHeader {
    /// Parses the 9 header bytes.
    pub fn parse(b: &[u8; HEADER_LEN]) -> FrameHeader {
        FrameHeader {
            ty: b[0],
            len: u32::from_le_bytes([b[1], b[2], b[3], b[4]]),
            crc: u32::from_le_bytes([b[5], b[6], b[7], b[8]]),
        }
    }

    /// True when all nine bytes were zero: unused (or zeroed) space.
    pub fn is_zero(&self) -> bool {
        self.ty == 0 && self.len == 0 && self.crc == 0
    }

    /// Whether `payload` (of `self.len` bytes) matches the stored CRC.
    pub fn verify(&self, salt: u32, payload: &[u8]) -> bool {
        checksum(salt, self.ty, self.len, payload) == self.crc
    }
}

/// Reserves a header at the end of `buf`, returning its position.
fn begin(buf: &mut Vec<u8>) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0u8; HEADER_LEN]);
    at
}

/// Fills in type and length of the frame started at `at` (its payload runs
/// to the end of `buf`), leaving the CRC for [`seal`].
fn finish(buf: &mut [u8], at: usize, ty: FrameType) {
    let len = (buf.len() - at - HEADER_LEN) as u32;
    buf[at] = ty as u8;
    buf[at + 1..at + 5].copy_from_slice(&len.to_le_bytes());
}

/// Marks the frame at `at` as the last of its write (or not), leaving its
/// CRC to [`seal`].
pub fn set_end_of_write(buf: &mut [u8], at: usize, end: bool) {
    if end {
        buf[at] |= END_OF_WRITE;
    } else {
        buf[at] &= !END_OF_WRITE;
    }
}

/// Marks the frame at `at` as the first of a write issued when everything
/// before it was durable (or not), leaving its CRC to [`seal`].
pub fn set_prior_synced(buf: &mut [u8], at: usize, synced: bool) {
    if synced {
        buf[at] |= PRIOR_SYNCED;
    } else {
        buf[at] &= !PRIOR_SYNCED;
    }
}

/// Whether a frame's type byte marks the first frame of a write issued when
/// everything before it was durable.
pub fn is_prior_synced(ty: u8) -> bool {
    ty & PRIOR_SYNCED != 0
}

/// Whether a frame's type byte marks the last frame of a write.
pub fn is_end_of_write(ty: u8) -> bool {
    ty & END_OF_WRITE != 0
}

/// Computes and stores the CRC of the frame at `at`, seeded with `salt`.
/// The frame's type and length must already be in place and its payload
/// must lie within `buf`.
pub fn seal(buf: &mut [u8], at: usize, salt: u32) {
    let len = u32::from_le_bytes([buf[at + 1], buf[at + 2], buf[at + 3], buf[at + 4]]);
    let payload = &buf[at + HEADER_LEN..at + HEADER_LEN + len as usize];
    let crc = checksum(salt, buf[at], len, payload);
    buf[at + 5..at + 9].copy_from_slice(&crc.to_le_bytes());
}

/// Appends a sealed frame holding `msg` to `buf`, encoding in place (no
/// allocation beyond `buf`'s growth). Returns the frame's length.
pub fn encode_message(buf: &mut Vec<u8>, ty: FrameType, salt: u32, msg: &impl Message) -> usize {
    let at = begin(buf);
    buf.reserve(msg.encoded_len());
    msg.encode_raw(buf);
    finish(buf, at, ty);
    seal(buf, at, salt);
    buf.len() - at
}

/// The encoded payload length of an entry frame (a `proto::Entry`) whose
/// data is `data_len` bytes.
pub fn entry_payload_len(index: u64, term: u64, data_len: usize) -> usize {
    let mut n = 0;
    if index != 0 {
        n += 1 + encoded_len_varint(index);
    }
    if term != 0 {
        n += 1 + encoded_len_varint(term);
    }
    if data_len != 0 {
        n += 1 + encoded_len_varint(data_len as u64) + data_len;
    }
    n
}

/// Appends an unsealed entry frame to `buf`: `proto::Entry { index, term,
/// data }` where `fill` appends the `data_len` bytes of data. Returns the
/// frame's length; [`seal`] must follow once the salt is known.
pub fn encode_entry_with(
    buf: &mut Vec<u8>,
    index: u64,
    term: u64,
    data_len: usize,
    fill: impl FnOnce(&mut Vec<u8>),
) -> usize {
    let at = begin(buf);
    buf.reserve(entry_payload_len(index, term, data_len));
    if index != 0 {
        encode_key(1, WireType::Varint, buf);
        encode_varint(index, buf);
    }
    if term != 0 {
        encode_key(2, WireType::Varint, buf);
        encode_varint(term, buf);
    }
    if data_len != 0 {
        encode_key(3, WireType::LengthDelimited, buf);
        encode_varint(data_len as u64, buf);
        fill(buf);
    }
    finish(buf, at, FrameType::Entry);
    buf.len() - at
}

/// Appends a sealed entry frame to `buf`. Returns the frame's length.
pub fn encode_entry(buf: &mut Vec<u8>, salt: u32, index: u64, term: u64, data: &[u8]) -> usize {
    let at = buf.len();
    let n = encode_entry_with(buf, index, term, data.len(), |b| b.extend_from_slice(data));
    seal(buf, at, salt);
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::proto;

    #[test]
    fn entry_frame_round_trips_and_matches_prost() {
        let mut buf = Vec::new();
        let n = encode_entry(&mut buf, salt(7), 42, 3, b"hello");
        assert_eq!(n, buf.len());
        let head = FrameHeader::parse(buf[..HEADER_LEN].try_into().unwrap());
        assert_eq!(head.ty, FrameType::Entry as u8);
        assert_eq!(head.len as usize, buf.len() - HEADER_LEN);
        assert!(head.verify(salt(7), &buf[HEADER_LEN..]));
        assert!(!head.verify(salt(8), &buf[HEADER_LEN..]));
        let e = proto::Entry::decode(&buf[HEADER_LEN..]).unwrap();
        assert_eq!((e.index, e.term, &e.data[..]), (42, 3, &b"hello"[..]));
        let reference = proto::Entry {
            index: 42,
            term: 3,
            data: bytes_of(b"hello"),
        };
        assert_eq!(reference.encode_to_vec(), &buf[HEADER_LEN..]);
        assert_eq!(entry_payload_len(42, 3, 5), reference.encoded_len());
    }

    fn bytes_of(b: &[u8]) -> prost::bytes::Bytes {
        prost::bytes::Bytes::copy_from_slice(b)
    }

    #[test]
    fn zero_fields_encode_like_prost() {
        for (i, t, d) in [
            (0u64, 0u64, &b""[..]),
            (1, 0, b""),
            (0, 5, b"x"),
            (u64::MAX, u64::MAX, b""),
        ] {
            let mut buf = Vec::new();
            encode_entry(&mut buf, 0, i, t, d);
            let reference = proto::Entry {
                index: i,
                term: t,
                data: bytes_of(d),
            };
            assert_eq!(reference.encode_to_vec(), &buf[HEADER_LEN..]);
        }
    }

    #[test]
    fn crc_covers_type_length_and_payload() {
        let mut buf = Vec::new();
        encode_message(
            &mut buf,
            FrameType::State,
            9,
            &proto::State {
                data: bytes_of(b"abc"),
            },
        );
        for i in 0..buf.len() {
            if (5..9).contains(&i) {
                continue; // the CRC itself
            }
            let mut bad = buf.clone();
            bad[i] ^= 0x01;
            let head = FrameHeader::parse(bad[..HEADER_LEN].try_into().unwrap());
            let payload = &bad[HEADER_LEN..];
            let ok = head.len as usize == payload.len() && head.verify(9, payload);
            assert!(!ok, "flipping byte {i} went unnoticed");
        }
    }

    #[test]
    fn zero_header_is_recognised() {
        assert!(FrameHeader::parse(&[0; HEADER_LEN]).is_zero());
        assert_eq!(FrameType::from_u8(0), None);
        assert_eq!(FrameType::from_u8(8), None);
    }

    #[test]
    fn salts_differ_for_consecutive_sequences() {
        let salts: std::collections::HashSet<u32> = (0..100_000u64).map(salt).collect();
        assert_eq!(salts.len(), 100_000);
    }
}
