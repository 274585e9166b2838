//! The chunked frame scanner that recovery and verification read
//! segments with.

use super::*;

/// What [`Scanner::next_frame`] found.
#[derive(Debug)]
pub enum Scanned<'a> {
    /// A valid frame.
    Frame {
        /// The frame's offset in the file.
        offset: u64,
        /// Its type.
        ty: FrameType,
        /// Its payload, CRC verified.
        payload: &'a [u8],
        /// Whether it is the last frame of its write.
        end_of_write: bool,
        /// Whether it opens a write issued when everything before it was
        /// durable.
        prior_synced: bool,
    },
    /// The data ended at a frame boundary: the end of the file, or unused
    /// (zeroed) preallocated space. [`Scanner::position`] is where.
    End,
    /// The bytes at `offset` are not a valid frame.
    Bad {
        /// Where the bad frame starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
        /// The frame's total length when its length field was plausible, so a
        /// caller can look for a valid frame right after it.
        claimed_len: Option<u64>,
    },
}

/// Reads the frames of a segment sequentially, in large chunks, verifying
/// each CRC. Memory is one chunk plus at most one frame of
/// `max_payload` bytes; no length is allocated before it is checked against
/// the limit and against the bytes left in the file.
pub struct Scanner<'f> {
    file: &'f dyn FileHandle,
    path: &'f Path,
    file_len: u64,
    salt: u32,
    max_payload: u64,
    /// Zeros below this offset are unused space (the end of the data).
    preallocated: u64,
    pub(super) buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
    /// File offset of the next frame.
    pos: u64,
}

pub(super) const CHUNK: usize = 4 << 20;

impl<'f> Scanner<'f> {
    /// A scanner of the segment whose header is `header`, starting at the
    /// end of the header.
    pub fn new(
        file: &'f dyn FileHandle,
        path: &'f Path,
        file_len: u64,
        header: &Header,
        max_payload: u64,
    ) -> Scanner<'f> {
        let start = header.len;
        Scanner {
            file,
            path,
            file_len,
            salt: frame::salt(header.sequence),
            max_payload,
            preallocated: header.preallocated,
            buf: Vec::new(),
            buf_start: start,
            pos: start,
        }
    }

    /// The offset of the next frame (after the last one returned).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Makes `[pos, pos + n)` available in `buf`, reading a chunk (or more
    /// for a large frame) when it is not. `n` is bounded by the caller.
    fn fill(&mut self, pos: u64, n: u64) -> Result<()> {
        let have_end = self.buf_start + self.buf.len() as u64;
        if pos >= self.buf_start && pos + n <= have_end {
            return Ok(());
        }
        let want = (n as usize).max(CHUNK) as u64;
        let len = want.min(self.file_len - pos) as usize;
        self.buf.clear();
        self.buf.resize(len, 0);
        self.buf_start = pos;
        self.file
            .read_exact_at(&mut self.buf, pos)
            .map_err(|e| Error::io("read segment", self.path, e))
    }

    fn slice(&self, pos: u64, n: u64) -> &[u8] {
        let at = (pos - self.buf_start) as usize;
        &self.buf[at..at + n as usize]
    }

    /// The next frame, the end of the data (the end of the file, or zeros
    /// inside the preallocated length), or a description of bad bytes. I/O
    /// errors are returned as `Err`.
    pub fn next_frame(&mut self) -> Result<Scanned<'_>> {
        let pos = self.pos;
        let left = self.file_len - pos;
        if left == 0 {
            return Ok(Scanned::End);
        }
        let bad = |reason: String, claimed_len: Option<u64>| {
            Ok(Scanned::Bad {
                offset: pos,
                reason,
                claimed_len,
            })
        };
        if left < HEADER_LEN as u64 {
            self.fill(pos, left)?;
            let zero = self.slice(pos, left).iter().all(|&b| b == 0);
            if zero && pos < self.preallocated {
                return Ok(Scanned::End);
            }
            let what = if zero { "zeroed" } else { "partial" };
            return bad(
                format!("{what} frame header ({left} bytes before end of file)"),
                None,
            );
        }
        self.fill(pos, HEADER_LEN as u64)?;
        let head: [u8; HEADER_LEN] =
            self.slice(pos, HEADER_LEN as u64).try_into().map_err(|_| {
                Error::internal(format!(
                    "a short frame header slice at offset {pos} of {}",
                    self.path.display()
                ))
            })?;
        let h = FrameHeader::parse(&head);
        if h.is_zero() && pos < self.preallocated {
            return Ok(Scanned::End);
        }
        if h.is_zero() {
            return bad("zeroed bytes where a frame should start".into(), None);
        }
        let Some(ty) = FrameType::from_u8(h.ty).filter(|t| *t != FrameType::Header) else {
            return bad(format!("unknown frame type {}", h.ty), None);
        };
        let len = u64::from(h.len);
        if len > self.max_payload {
            return bad(
                format!(
                    "frame length {len} exceeds the maximum of {}",
                    self.max_payload
                ),
                None,
            );
        }
        let total = HEADER_LEN as u64 + len;
        if total > left {
            return bad(
                format!("frame of {total} bytes is cut by the end of file ({left} bytes left)"),
                None,
            );
        }
        self.fill(pos, total)?;
        let payload_start = pos + HEADER_LEN as u64;
        if !h.verify(self.salt, self.slice(payload_start, len)) {
            return bad("CRC mismatch".into(), Some(total));
        }
        self.pos = pos + total;
        Ok(Scanned::Frame {
            offset: pos,
            ty,
            payload: self.slice(payload_start, len),
            end_of_write: frame::is_end_of_write(h.ty),
            prior_synced: frame::is_prior_synced(h.ty),
        })
    }

    /// Whether a valid frame starts at `offset` (used to tell a torn tail
    /// from damage in the middle of the log).
    /// Whether, from `offset` on, the valid frames that follow one another
    /// include the first frame of a write issued when everything before it
    /// was durable: then what lies before `offset` was on disk before that
    /// write, and a bad frame there is damage, not a tear.
    pub fn synced_write_from(&mut self, offset: u64) -> Result<bool> {
        if offset >= self.file_len {
            return Ok(false);
        }
        self.pos = offset;
        loop {
            match self.next_frame()? {
                Scanned::Frame {
                    prior_synced: true, ..
                } => return Ok(true),
                Scanned::Frame { .. } => continue,
                Scanned::End | Scanned::Bad { .. } => return Ok(false),
            }
        }
    }

    /// Whether a valid frame starts at `offset`.
    pub fn valid_frame_at(&mut self, offset: u64) -> Result<bool> {
        if offset >= self.file_len {
            return Ok(false);
        }
        self.pos = offset;
        Ok(matches!(self.next_frame()?, Scanned::Frame { .. }))
    }
}
