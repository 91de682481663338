//! The segment file format: pure encoding and decoding of frames, and
//! sequential and positioned reads. No decisions about repair live here.
//!
//! ```text
//! segment-000001.log := MAGIC frame*
//! MAGIC              := "PLSDAUD1"                     (8 bytes)
//! frame              := len:u32le crc:u32le record     (8 + len bytes)
//! record             := protobuf `Record` (len bytes, 1 ..= MAX_RECORD_LEN)
//! crc                := CRC-32 (IEEE) of record
//! ```
//!
//! The CRC finds torn and rotted records; it is no defence against an
//! editor, who can recompute it. The hash chain inside the records is.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use prost::Message as _;

use crate::audit::AuditError;

/// The first bytes of every segment: format "PaLiSaDe AUDit", version 1.
pub(super) const MAGIC: [u8; 8] = *b"PLSDAUD1";
/// Length of [`MAGIC`]: the offset of a segment's first frame.
pub(super) const HEADER_LEN: u64 = MAGIC.len() as u64;
/// Length of a frame's `len` and `crc`.
pub(super) const FRAME_HEADER_LEN: u64 = 8;
/// The largest record written or read (checked before allocating).
pub(super) const MAX_RECORD_LEN: u32 = 64 << 20;

/// One stored event with its chain link.
///
/// The event is kept as the exact bytes that were hashed (not as a nested
/// message), so verifying never depends on re-encoding.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Record {
    /// The event's payload ([`crate::audit::EncodedEvent::payload`]).
    #[prost(bytes = "bytes", tag = "1")]
    pub event: bytes::Bytes,
    /// 32 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub previous_hash: Vec<u8>,
    /// 32 bytes: `SHA-256(previous_hash || event)`.
    #[prost(bytes = "vec", tag = "3")]
    pub hash: Vec<u8>,
}

/// The file name of segment `id`.
pub(super) fn segment_name(id: u32) -> String {
    format!("segment-{id:06}.log")
}

/// The id of a segment file name, if it is one.
pub(super) fn parse_segment_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("segment-")?.strip_suffix(".log")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment ids present in `dir`, ascending.
pub(super) fn list_segments(dir: &Path) -> Result<Vec<u32>, AuditError> {
    let io = |source| AuditError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if let Some(id) = entry.file_name().to_str().and_then(parse_segment_name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Appends the frame of `record` to `out`; returns the record's length.
/// The record is encoded in place, behind a header patched afterwards.
pub(super) fn encode_frame(record: &Record, out: &mut Vec<u8>) -> Option<u32> {
    let len = u32::try_from(record.encoded_len())
        .ok()
        .filter(|len| (1..=MAX_RECORD_LEN).contains(len))?;
    out.reserve(FRAME_HEADER_LEN as usize + len as usize);
    out.extend_from_slice(&len.to_le_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let start = out.len();
    // A `Vec` grows as needed: encoding into it cannot run out of room.
    record.encode(out).ok()?;
    let crc = crc32fast::hash(&out[start..]);
    out[crc_at..start].copy_from_slice(&crc.to_le_bytes());
    Some(len)
}

/// A frame read back: its offset in the segment and its record's bytes.
#[derive(Debug)]
pub(super) struct Frame {
    pub offset: u64,
    pub record: Vec<u8>,
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(super) enum FrameFault {
    /// Reading the file failed.
    Io(io::Error),
    /// The bytes at `offset` are not a whole, intact frame.
    Bad {
        offset: u64,
        /// Where the frame would end by its length field, when that was read.
        declared_end: Option<u64>,
        reason: String,
    },
}

/// Reads a segment's frames in order, up to `end`.
pub(super) struct FrameReader<R> {
    reader: R,
    offset: u64,
    end: u64,
}

impl<R: Read> FrameReader<R> {
    /// A reader positioned at `offset` (the reader's position must be there).
    pub fn new(reader: R, offset: u64, end: u64) -> Self {
        Self {
            reader,
            offset,
            end,
        }
    }

    /// The next frame; `None` at exactly `end`.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameFault> {
        let offset = self.offset;
        let left = self.end.saturating_sub(offset);
        if left == 0 {
            return Ok(None);
        }
        let bad = |declared_end, reason: String| FrameFault::Bad {
            offset,
            declared_end,
            reason,
        };
        if left < FRAME_HEADER_LEN {
            return Err(bad(None, format!("frame header cut short ({left} bytes)")));
        }
        let mut header = [0u8; 8];
        self.reader
            .read_exact(&mut header)
            .map_err(FrameFault::Io)?;
        let (len, crc) = split_header(header);
        let declared_end = offset + FRAME_HEADER_LEN + u64::from(len);
        if len == 0 || len > MAX_RECORD_LEN {
            return Err(bad(
                Some(declared_end),
                format!("record length {len} out of range"),
            ));
        }
        if declared_end > self.end {
            return Err(bad(
                Some(declared_end),
                format!(
                    "record cut short ({} of {len} bytes)",
                    left - FRAME_HEADER_LEN
                ),
            ));
        }
        let mut record = vec![0u8; len as usize];
        self.reader
            .read_exact(&mut record)
            .map_err(FrameFault::Io)?;
        if crc32fast::hash(&record) != crc {
            return Err(bad(Some(declared_end), "checksum mismatch".to_owned()));
        }
        self.offset = declared_end;
        Ok(Some(Frame { offset, record }))
    }
}

fn split_header(header: [u8; 8]) -> (u32, u32) {
    let [a, b, c, d, e, f, g, h] = header;
    (
        u32::from_le_bytes([a, b, c, d]),
        u32::from_le_bytes([e, f, g, h]),
    )
}

/// Reads the frame at `offset` whose record is `len` bytes, checking its
/// header and checksum; the error says what is wrong.
pub(super) fn read_frame_at(file: &File, offset: u64, len: u32) -> Result<Vec<u8>, FrameFault> {
    let bad = |reason: String| FrameFault::Bad {
        offset,
        declared_end: None,
        reason,
    };
    if len == 0 || len > MAX_RECORD_LEN {
        return Err(bad(format!("record length {len} out of range")));
    }
    let mut buf = vec![0u8; FRAME_HEADER_LEN as usize + len as usize];
    file.read_exact_at(&mut buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            bad("record cut short".to_owned())
        } else {
            FrameFault::Io(e)
        }
    })?;
    let (header, record) = buf.split_at(FRAME_HEADER_LEN as usize);
    let header: [u8; 8] = header
        .try_into()
        .map_err(|_| bad("short header".to_owned()))?;
    let (stored_len, crc) = split_header(header);
    if stored_len != len {
        return Err(bad(format!("record length {stored_len}, expected {len}")));
    }
    if crc32fast::hash(record) != crc {
        return Err(bad("checksum mismatch".to_owned()));
    }
    buf.drain(..FRAME_HEADER_LEN as usize);
    Ok(buf)
}

/// Whether every byte of `file` from `from` to `to` is zero (a file system
/// may leave a crashed append's blocks zero-filled).
pub(super) fn is_zero_from(file: &File, from: u64, to: u64) -> io::Result<bool> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = from;
    while at < to {
        let want = usize::try_from(to - at)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let chunk = buf.get_mut(..want).unwrap_or_default();
        file.read_exact_at(chunk, at)?;
        if chunk.iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += want as u64;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u8) -> Record {
        Record {
            event: vec![n; 10 + n as usize].into(),
            previous_hash: vec![0; 32],
            hash: vec![n; 32],
        }
    }

    #[test]
    fn frames_round_trip() {
        let mut bytes = Vec::new();
        for n in 1..=3 {
            encode_frame(&record(n), &mut bytes).unwrap();
        }
        let end = bytes.len() as u64;
        let mut reader = FrameReader::new(bytes.as_slice(), 0, end);
        let mut offsets = Vec::new();
        for n in 1..=3 {
            let frame = reader.next_frame().unwrap().unwrap();
            assert_eq!(Record::decode(frame.record.as_slice()).unwrap(), record(n));
            offsets.push(frame.offset);
        }
        assert!(reader.next_frame().unwrap().is_none());
        assert_eq!(offsets[0], 0);
    }

    #[test]
    fn damaged_frames_are_named() {
        let mut bytes = Vec::new();
        encode_frame(&record(1), &mut bytes).unwrap();
        let first_end = bytes.len() as u64;
        encode_frame(&record(2), &mut bytes).unwrap();

        let mut cut = bytes.clone();
        cut.truncate(bytes.len() - 3);
        let mut reader = FrameReader::new(cut.as_slice(), 0, cut.len() as u64);
        reader.next_frame().unwrap().unwrap();
        match reader.next_frame() {
            Err(FrameFault::Bad { offset, reason, .. }) => {
                assert_eq!(offset, first_end);
                assert!(reason.contains("cut short"), "{reason}");
            }
            other => panic!("{other:?}"),
        }

        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        let mut reader = FrameReader::new(flipped.as_slice(), 0, flipped.len() as u64);
        match reader.next_frame() {
            Err(FrameFault::Bad {
                offset: 0,
                declared_end: Some(end),
                reason,
            }) => {
                assert_eq!(end, first_end);
                assert_eq!(reason, "checksum mismatch");
            }
            other => panic!("{other:?}"),
        }

        let zeros = vec![0u8; 16];
        let mut reader = FrameReader::new(zeros.as_slice(), 0, 16);
        assert!(matches!(reader.next_frame(), Err(FrameFault::Bad { .. })));
    }

    #[test]
    fn segment_names() {
        assert_eq!(segment_name(1), "segment-000001.log");
        assert_eq!(parse_segment_name("segment-000042.log"), Some(42));
        assert_eq!(parse_segment_name("segment-1234567.log"), Some(1_234_567));
        assert_eq!(parse_segment_name("segment-42.log"), None);
        assert_eq!(parse_segment_name("segment-00004x.log"), None);
        assert_eq!(parse_segment_name("LOCK"), None);
    }
}
