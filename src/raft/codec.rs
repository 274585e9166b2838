//! raft-rs's `eraftpb.Entry`, encoded and decoded by hand: the same bytes
//! rust-protobuf writes (fields in declaration order, defaults omitted),
//! without its per-message stream setup. A log entry's data is exactly this
//! encoding, so it is on the write path of every Ready and the read path of
//! every `entries` call. Anything the fast decoder does not expect (an
//! unknown field or enum value) falls back to rust-protobuf.

use std::ops::Range;

use prost::bytes::{Buf, Bytes};
use prost::encoding::{decode_varint, encode_key, encode_varint, encoded_len_varint, WireType};
use raft::eraftpb::{Entry, EntryType};

/// The encoded length of `e`, as rust-protobuf's `compute_size`.
pub(crate) fn encoded_len(e: &Entry) -> usize {
    let mut n = 0;
    let ty = e.entry_type as u64;
    if ty != 0 {
        n += 1 + encoded_len_varint(ty);
    }
    if e.term != 0 {
        n += 1 + encoded_len_varint(e.term);
    }
    if e.index != 0 {
        n += 1 + encoded_len_varint(e.index);
    }
    if !e.data.is_empty() {
        n += 1 + encoded_len_varint(e.data.len() as u64) + e.data.len();
    }
    if e.sync_log {
        n += 2;
    }
    if !e.context.is_empty() {
        n += 1 + encoded_len_varint(e.context.len() as u64) + e.context.len();
    }
    n
}

/// Appends `e`'s encoding to `buf`. `e` carries no unknown fields (the
/// caller checks: only rust-protobuf can write those).
pub(crate) fn encode(e: &Entry, buf: &mut Vec<u8>) {
    debug_assert!(
        e.unknown_fields.iter().next().is_none(),
        "raft_codec::encode of an entry with unknown fields"
    );
    let ty = e.entry_type as u64;
    if ty != 0 {
        encode_key(1, WireType::Varint, buf);
        encode_varint(ty, buf);
    }
    if e.term != 0 {
        encode_key(2, WireType::Varint, buf);
        encode_varint(e.term, buf);
    }
    if e.index != 0 {
        encode_key(3, WireType::Varint, buf);
        encode_varint(e.index, buf);
    }
    if !e.data.is_empty() {
        encode_key(4, WireType::LengthDelimited, buf);
        encode_varint(e.data.len() as u64, buf);
        buf.extend_from_slice(&e.data);
    }
    // rust-protobuf writes fields in declaration order: context (6) is
    // declared before the deprecated sync_log (5).
    if !e.context.is_empty() {
        encode_key(6, WireType::LengthDelimited, buf);
        encode_varint(e.context.len() as u64, buf);
        buf.extend_from_slice(&e.context);
    }
    if e.sync_log {
        encode_key(5, WireType::Varint, buf);
        encode_varint(1, buf);
    }
}

/// Decodes an entry, sharing `data`'s bytes for its data and context. When
/// the entry's data ends the encoding and it has no context (every entry
/// but those with a context), its data is `data` itself, advanced past the
/// other fields: no reference count taken. Gives `data` back for anything
/// unexpected (the caller falls back to rust-protobuf).
pub(crate) fn decode_owned(mut data: Bytes) -> Result<Entry, Bytes> {
    let Some((mut e, d, c)) = scan(&data) else {
        return Err(data);
    };
    if c.is_empty() && d.end == data.len() {
        e.context = Bytes::new();
        data.advance(d.start);
        e.data = data;
    } else {
        e.data = data.slice(d);
        e.context = data.slice(c);
    }
    Ok(e)
}

/// Decodes an entry's fields but data and context, whose ranges in `data`
/// it returns (empty when absent; the last occurrence wins, as in
/// protobuf).
fn scan(data: &[u8]) -> Option<(Entry, Range<usize>, Range<usize>)> {
    let mut e = Entry::default();
    let (mut d, mut c) = (0..0, 0..0);
    let mut buf: &[u8] = data;
    while !buf.is_empty() {
        let key = decode_varint(&mut buf).ok()?;
        match (key >> 3, key & 7) {
            (1, 0) => {
                e.entry_type = match decode_varint(&mut buf).ok()? {
                    0 => EntryType::EntryNormal,
                    1 => EntryType::EntryConfChange,
                    2 => EntryType::EntryConfChangeV2,
                    _ => return None,
                }
            }
            (2, 0) => e.term = decode_varint(&mut buf).ok()?,
            (3, 0) => e.index = decode_varint(&mut buf).ok()?,
            (5, 0) => e.sync_log = decode_varint(&mut buf).ok()? != 0,
            (field @ (4 | 6), 2) => {
                let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
                let rest = buf.get(len..)?;
                let start = data.len() - buf.len();
                if field == 4 {
                    d = start..start + len;
                } else {
                    c = start..start + len;
                }
                buf = rest;
            }
            _ => return None,
        }
    }
    Some((e, d, c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::Message;

    fn entries() -> Vec<Entry> {
        let mut v = Vec::new();
        for (ty, term, index, data, ctx, sync) in [
            (EntryType::EntryNormal, 0, 0, &b""[..], &b""[..], false),
            (EntryType::EntryNormal, 1, 1, b"x", b"", false),
            (EntryType::EntryConfChange, 7, 300, b"cc", b"ctx", true),
            (
                EntryType::EntryConfChangeV2,
                u64::MAX,
                u64::MAX - 1,
                &[9u8; 300][..],
                &[1u8; 130][..],
                false,
            ),
        ] {
            v.push(Entry {
                entry_type: ty,
                term,
                index,
                data: Bytes::copy_from_slice(data),
                context: Bytes::copy_from_slice(ctx),
                sync_log: sync,
                ..Default::default()
            });
        }
        v
    }

    #[test]
    fn writes_what_rust_protobuf_writes() {
        for e in entries() {
            let mut buf = Vec::new();
            encode(&e, &mut buf);
            assert_eq!(buf, e.write_to_bytes().unwrap(), "{e:?}");
            assert_eq!(encoded_len(&e), e.compute_size() as usize);
        }
    }

    #[test]
    fn reads_what_rust_protobuf_writes() {
        for e in entries() {
            let bytes = Bytes::from(e.write_to_bytes().unwrap());
            assert_eq!(decode_owned(bytes), Ok(e));
        }
    }

    #[test]
    fn declines_what_it_does_not_know() {
        // An unknown field, an unknown enum value, a length past the end.
        for bad in [&[0x38u8, 1][..], &[0x08, 9], &[0x22, 5, 1]] {
            let bytes = Bytes::copy_from_slice(bad);
            assert_eq!(decode_owned(bytes.clone()), Err(bytes), "{bad:?}");
        }
    }
}
