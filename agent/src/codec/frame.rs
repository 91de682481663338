//! Tagged messages as they travel, and the codec that cuts them out of a
//! read buffer.
//!
//! A [`Frame`] keeps the message's wire bytes (tag, length, body) in one
//! [`Bytes`] split off the read buffer, so relaying a message the proxy does
//! not change is a reference-count bump plus one copy into the write buffer,
//! never a parse and re-encode.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::error::CodecError;

/// Bytes before a tagged message's body: the tag and the Int32 length.
pub const HEADER_LEN: usize = 5;

/// PostgreSQL's own ceiling for a message (`PQ_LARGE_MESSAGE_LIMIT`, 1 GiB
/// minus 2), for deployments that want to accept whatever the server would.
pub const POSTGRES_MAX_MESSAGE_LEN: usize = 0x3fff_fffe;

/// One complete tagged message, exactly as it arrived.
///
/// Exists so the proxy can inspect a message through a typed view and still
/// relay the original bytes untouched. `Debug` shows the tag and length only:
/// bodies carry SQL literals, passwords and row values that must not be
/// logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    tag: u8,
    // INVARIANT: `raw.len() >= HEADER_LEN`, `raw[0] == tag`, and
    // `raw[1..5]` is `raw.len() - 1` as a big-endian Int32 (so it fits i32).
    raw: Bytes,
}

impl Frame {
    /// Builds a frame from a tag and a body, copying the body once; for
    /// messages the proxy makes up itself. Fails if the body is too large
    /// for the Int32 length field.
    pub fn new(tag: u8, body: &[u8]) -> Result<Self, CodecError> {
        let len = body
            .len()
            .checked_add(4)
            .and_then(|n| i32::try_from(n).ok())
            .ok_or(CodecError::unencodable(
                "message",
                "body does not fit a message",
            ))?;
        let mut raw = BytesMut::with_capacity(body.len().saturating_add(HEADER_LEN));
        raw.put_u8(tag);
        raw.put_i32(len);
        raw.put_slice(body);
        Ok(Self {
            tag,
            raw: raw.freeze(),
        })
    }

    /// The message type byte, e.g. `b'Q'`.
    pub fn tag(&self) -> u8 {
        self.tag
    }

    /// The payload after the 4-byte length; what the typed views parse.
    pub fn body(&self) -> &[u8] {
        self.raw.get(HEADER_LEN..).unwrap_or_default()
    }

    /// The payload as shared [`Bytes`] (no copy), for keeping part of a
    /// message beyond the frame's lifetime.
    pub fn body_bytes(&self) -> Bytes {
        self.raw.slice(HEADER_LEN.min(self.raw.len())..)
    }

    /// The whole message as it goes on the wire (tag, length, body), shared
    /// without copying: what a relay writes.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Gives up the frame for its wire bytes, without copying.
    pub fn into_raw(self) -> Bytes {
        self.raw
    }

    /// Size on the wire, header included, for buffer accounting and metrics.
    pub fn wire_len(&self) -> usize {
        self.raw.len()
    }

    /// Appends the message (tag, length, body) to an output buffer.
    pub fn encode_into(&self, dst: &mut BytesMut) {
        dst.extend_from_slice(&self.raw);
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("tag", &char::from(self.tag))
            .field("body_len", &self.body().len())
            .finish_non_exhaustive()
    }
}

/// Fails unless `frame` carries `expected`; the first step of every view.
pub(crate) fn expect_tag(frame: &Frame, expected: u8) -> Result<(), CodecError> {
    if frame.tag == expected {
        Ok(())
    } else {
        Err(CodecError::UnexpectedTag {
            expected,
            found: frame.tag,
        })
    }
}

/// Fails unless `frame` carries `expected` and an empty body: Sync, Flush,
/// ParseComplete and the other messages that are only a tag.
pub(crate) fn expect_empty(
    frame: &Frame,
    expected: u8,
    message: &'static str,
) -> Result<(), CodecError> {
    expect_tag(frame, expected)?;
    if frame.body().is_empty() {
        Ok(())
    } else {
        Err(CodecError::malformed(
            message,
            "message should have no body",
        ))
    }
}

/// `Decoder`/`Encoder` of tagged [`Frame`]s for everything after the startup
/// packet, in both directions.
///
/// It checks only the framing; typed views check the contents when the
/// proxy needs them. A declared length above `max_len` is rejected before a
/// single byte is reserved for it, so a hostile length cannot make the
/// gateway allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameCodec {
    /// Largest accepted value of the length field (which counts itself but
    /// not the tag), as PostgreSQL measures it. Values above `i32::MAX` act
    /// as `i32::MAX`.
    pub max_len: usize,
}

impl FrameCodec {
    /// A codec accepting messages whose length field is at most `max_len`.
    pub const fn new(max_len: usize) -> Self {
        Self { max_len }
    }
}

impl FrameCodec {
    /// The complete messages tagged `tag` that start `src`, one after the
    /// other: their length in bytes and how many. For relaying a run of
    /// messages the proxy does not look into (a result's DataRows) with one
    /// copy, instead of cutting each out with [`Decoder::decode`]. Stops at
    /// a message of another tag, an incomplete one, or one `decode` would
    /// reject (left to `decode` to report).
    pub fn run_of(&self, src: &[u8], tag: u8) -> (usize, u64) {
        let limit = self.max_len.min(i32::MAX as usize);
        let mut at = 0usize;
        let mut count = 0u64;
        while let Some(&[t, a, b, c, d]) = src.get(at..).and_then(<[u8]>::first_chunk) {
            let len = usize::try_from(u32::from_be_bytes([a, b, c, d])).unwrap_or(usize::MAX);
            if t != tag || len < 4 || len > limit {
                break;
            }
            // Cannot overflow: `len <= i32::MAX` and `at <= src.len()`.
            let end = at.saturating_add(len).saturating_add(1);
            if end > src.len() {
                break;
            }
            at = end;
            count += 1;
        }
        (at, count)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        let Some(&[tag, a, b, c, d]) = src.first_chunk::<HEADER_LEN>() else {
            src.reserve(HEADER_LEN.saturating_sub(src.len()));
            return Ok(None);
        };
        let declared = u32::from_be_bytes([a, b, c, d]);
        let len = usize::try_from(declared).unwrap_or(usize::MAX);
        if len < 4 {
            return Err(CodecError::malformed("message", "length is less than 4"));
        }
        let limit = self.max_len.min(i32::MAX as usize);
        if len > limit {
            return Err(CodecError::TooLong {
                len,
                max: self.max_len,
            });
        }
        // Cannot overflow: `len <= i32::MAX`.
        let total = len.saturating_add(1);
        if src.len() < total {
            src.reserve(total.saturating_sub(src.len()));
            return Ok(None);
        }
        let raw = src.split_to(total).freeze();
        Ok(Some(Frame { tag, raw }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => {
                src.advance(src.len());
                Err(CodecError::malformed(
                    "message",
                    "connection closed in the middle of a message",
                ))
            }
        }
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        frame.encode_into(dst);
        Ok(())
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        frame.encode_into(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip() {
        let frame = Frame::new(b'Q', b"select 1\0").unwrap();
        assert_eq!(frame.tag(), b'Q');
        assert_eq!(frame.body(), b"select 1\0");
        assert_eq!(&frame.body_bytes()[..], b"select 1\0");
        assert_eq!(&frame.raw()[..], b"Q\0\0\0\x0dselect 1\0");
        assert_eq!(frame.wire_len(), 14);

        let mut wire = BytesMut::new();
        FrameCodec::new(1 << 20).encode(&frame, &mut wire).unwrap();
        FrameCodec::new(1 << 20)
            .encode(frame.clone(), &mut wire)
            .unwrap();
        let mut codec = FrameCodec::new(1 << 20);
        assert_eq!(codec.decode(&mut wire).unwrap(), Some(frame.clone()));
        assert_eq!(codec.decode(&mut wire).unwrap(), Some(frame.clone()));
        assert_eq!(codec.decode(&mut wire).unwrap(), None);
        assert_eq!(frame.into_raw().len(), 14);
    }

    #[test]
    fn debug_hides_the_body() {
        let frame = Frame::new(b'p', b"hunter2\0").unwrap();
        let shown = format!("{frame:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("body_len: 8"), "{shown}");
    }

    #[test]
    fn empty_body() {
        let mut wire = BytesMut::from(&b"S\0\0\0\x04"[..]);
        let frame = FrameCodec::new(4).decode(&mut wire).unwrap().unwrap();
        assert_eq!(frame.tag(), b'S');
        assert!(frame.body().is_empty());
        assert!(wire.is_empty());
    }

    #[test]
    fn every_truncation_waits_and_reserves() {
        let wire = b"Q\0\0\0\x0dselect 1\0";
        for cut in 0..wire.len() {
            let mut src = BytesMut::from(&wire[..cut]);
            assert_eq!(
                FrameCodec::new(64).decode(&mut src).unwrap(),
                None,
                "cut {cut}"
            );
            assert_eq!(src.len(), cut, "partial input is left in place");
            assert!(src.capacity() >= if cut < 5 { 5 } else { wire.len() });
        }
        let mut src = BytesMut::from(&wire[..]);
        assert!(FrameCodec::new(64).decode(&mut src).unwrap().is_some());
    }

    #[test]
    fn short_length_is_malformed() {
        for len in 0u8..4 {
            let mut src = BytesMut::from(&[b'Q', 0, 0, 0, len][..]);
            let err = FrameCodec::new(64).decode(&mut src).unwrap_err();
            assert!(matches!(err, CodecError::Malformed { .. }), "{err}");
        }
    }

    #[test]
    fn oversized_length_is_rejected_before_allocating() {
        let mut src = BytesMut::with_capacity(8);
        src.extend_from_slice(b"Q");
        src.extend_from_slice(&2_000_000u32.to_be_bytes());
        let err = FrameCodec::new(1_048_576).decode(&mut src).unwrap_err();
        assert_eq!(
            err.to_string(),
            "message of 2000000 bytes exceeds the limit of 1048576"
        );
        assert!(src.capacity() < 1024, "reserved {} bytes", src.capacity());

        // Lengths that are negative as Int32 are rejected even with no limit.
        let mut src = BytesMut::from(&[b'Q', 0xff, 0xff, 0xff, 0xff][..]);
        let err = FrameCodec::new(usize::MAX).decode(&mut src).unwrap_err();
        assert!(matches!(err, CodecError::TooLong { .. }), "{err}");
        assert!(src.capacity() < 1024);
    }

    #[test]
    fn eof_inside_a_message_is_an_error() {
        let mut src = BytesMut::from(&b"Q\0\0\0\x0dsel"[..]);
        assert!(FrameCodec::new(64).decode_eof(&mut src).is_err());
        let mut src = BytesMut::new();
        assert_eq!(FrameCodec::new(64).decode_eof(&mut src).unwrap(), None);
    }

    #[test]
    fn frames_share_the_read_buffer() {
        let mut src = BytesMut::from(&b"d\0\0\0\x08abcdS\0\0\0\x04"[..]);
        let mut codec = FrameCodec::new(64);
        let a = codec.decode(&mut src).unwrap().unwrap();
        let b = codec.decode(&mut src).unwrap().unwrap();
        assert_eq!((a.tag(), a.body()), (b'd', &b"abcd"[..]));
        assert_eq!((b.tag(), b.body()), (b'S', &b""[..]));
        // The body handle points into the frame's bytes, not a copy.
        assert_eq!(a.body_bytes().as_ptr(), a.body().as_ptr());
    }
}
