//! One spool record: `u32 length | u32 crc32(payload) | payload`, both
//! integers little-endian, the payload a prost-encoded `AuditEvent`.
//!
//! Encoding is pure. [`RecordReader`] reads records from any `Read` and tells
//! a clean end, a torn (incomplete) record and a bad one apart, because
//! recovery treats them differently. Spool bytes are input like any other:
//! lengths are checked before anything is allocated, and nothing panics.

use std::io::{self, Read};
use std::sync::Arc;

use palisade_proto::v1 as pb;
use prost::Message;

/// Bytes before the payload: length and checksum.
pub(super) const HEADER_LEN: usize = 8;

/// The largest payload accepted. It keeps every event, alone in a request,
/// under the 4 MiB a tonic server decodes by default, so an event the PDP
/// would refuse can never sit in the spool and block it forever.
pub(super) const MAX_PAYLOAD: usize = 3 * 1024 * 1024;

/// Why an event cannot be framed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum EncodeError {
    /// The encoded event exceeds [`MAX_PAYLOAD`].
    TooLarge(usize),
    /// The event lacks its stable id.
    Invalid(&'static str),
}

fn validate_id(session_id: &str, sequence: u64) -> Result<(), &'static str> {
    if session_id.is_empty() {
        return Err("the session id is empty");
    }
    if sequence == 0 {
        return Err("sequence numbers start at 1");
    }
    Ok(())
}

/// The id fields of an `AuditEvent` (same tags): decoding a payload into
/// it skips the rest of the event, so reading the spool back to send it
/// costs no full decode (the payload goes to the PDP as it is).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub(super) struct EventId {
    /// `AuditEvent.session_id`.
    #[prost(string, tag = "1")]
    pub session_id: String,
    /// `AuditEvent.sequence`.
    #[prost(uint64, tag = "2")]
    pub sequence: u64,
}

/// `AuditEvent.sequence`.
const SEQUENCE_TAG: u32 = 2;

/// An event encoded where it happened, before the feed numbers it.
///
/// The body is the event's protobuf encoding with sequence 0, which
/// protobuf leaves out; [`Self::frame`] appends the sequence field.
/// Protobuf readers take fields in any order, so the payload is a valid
/// `AuditEvent`; the PDP stores and hashes these very bytes.
/// Sessions encode their own events: the message tree is built, encoded
/// and freed on the session's thread, and the feed gets one buffer.
#[derive(Debug)]
pub(super) struct Unnumbered {
    /// `AuditEvent.session_id`, shared by the session's events on their way
    /// through the feed, the writer and the streamer.
    pub session_id: Arc<str>,
    /// Whether this is its session's last event.
    pub last: bool,
    /// Given by the feed; 0 until then.
    pub sequence: u64,
    body: Vec<u8>,
}

impl Unnumbered {
    /// Encodes `event`, whose sequence is kept aside (the feed gives the
    /// real one); an empty `agent_id` becomes `agent_id`. `known` is the
    /// session's id as the caller shares it, if it has it: the event then
    /// takes a reference to it instead of a copy of its own.
    pub fn new(mut event: pb::AuditEvent, agent_id: &str, known: Option<&Arc<str>>) -> Self {
        use pb::audit_event::Event;
        let sequence = std::mem::take(&mut event.sequence);
        if event.agent_id.is_empty() {
            agent_id.clone_into(&mut event.agent_id);
        }
        let body = event.encode_to_vec();
        let session_id = match known {
            Some(id) if **id == *event.session_id => Arc::clone(id),
            _ => Arc::from(std::mem::take(&mut event.session_id)),
        };
        Self {
            session_id,
            last: matches!(
                event.event,
                Some(Event::SessionEnded(_) | Event::SessionRefused(_))
            ),
            sequence,
            body,
        }
    }

    /// A statement event its session encoded (see [`super::statement`]):
    /// never its session's last.
    pub fn statement(session_id: Arc<str>, body: Vec<u8>) -> Self {
        Self {
            session_id,
            last: false,
            sequence: 0,
            body,
        }
    }

    /// The spool record of the event under its sequence: the `(session_id,
    /// sequence)` id is checked, as the spool and the PDP rely on it.
    pub fn frame(&self) -> Result<Vec<u8>, EncodeError> {
        validate_id(&self.session_id, self.sequence).map_err(EncodeError::Invalid)?;
        let len = self.body.len()
            + prost::encoding::key_len(SEQUENCE_TAG)
            + prost::encoding::encoded_len_varint(self.sequence);
        // INVARIANT: MAX_PAYLOAD < u32::MAX, so the length fits the header.
        let header_len = match u32::try_from(len) {
            Ok(l) if len <= MAX_PAYLOAD => l,
            _ => return Err(EncodeError::TooLarge(len)),
        };
        let mut frame = Vec::with_capacity(HEADER_LEN + len);
        frame.extend_from_slice(&header_len.to_le_bytes());
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(&self.body);
        prost::encoding::uint64::encode(SEQUENCE_TAG, &self.sequence, &mut frame);
        let crc = crc32fast::hash(frame.get(HEADER_LEN..).unwrap_or_default());
        if let Some(slot) = frame.get_mut(4..HEADER_LEN) {
            slot.copy_from_slice(&crc.to_le_bytes());
        }
        Ok(frame)
    }
}

/// Frames `event` under its own sequence (tests write spools by hand).
#[cfg(test)]
pub(super) fn encode(event: &pb::AuditEvent) -> Result<Vec<u8>, EncodeError> {
    Unnumbered::new(event.clone(), "", None).frame()
}

/// A record read back.
#[derive(Debug)]
pub(super) struct Record {
    /// The event's id.
    pub id: EventId,
    /// The encoded event (checksum verified).
    pub payload: Vec<u8>,
    /// Where the record starts.
    pub offset: u64,
    /// Its framed length (header included).
    pub len: u64,
}

/// What the next bytes hold.
#[derive(Debug)]
pub(super) enum Next {
    /// A whole, valid record (boxed: an event is large beside the others).
    Record(Box<Record>),
    /// No more bytes, at a record boundary.
    End,
    /// The bytes end inside a record (a write cut short).
    Torn {
        /// Where the incomplete record starts.
        at: u64,
    },
    /// A whole record that is not valid.
    Bad {
        /// Where it starts.
        at: u64,
        /// Where the next record would start, when the length is plausible.
        next: Option<u64>,
        /// What is wrong, for logs.
        reason: &'static str,
    },
}

/// Reads records one at a time, tracking offsets.
pub(super) struct RecordReader<R> {
    inner: R,
    offset: u64,
}

impl<R: Read> RecordReader<R> {
    /// Reads from `inner`, whose first byte is at `offset` in the segment.
    pub(super) fn new(inner: R, offset: u64) -> Self {
        Self { inner, offset }
    }

    /// The next record, or why there is none.
    pub(super) fn next_record(&mut self) -> io::Result<Next> {
        let at = self.offset;
        let mut header = [0u8; HEADER_LEN];
        match read_full(&mut self.inner, &mut header)? {
            0 => return Ok(Next::End),
            HEADER_LEN => {}
            _ => return Ok(Next::Torn { at }),
        }
        let [l0, l1, l2, l3, c0, c1, c2, c3] = header;
        let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
        let crc = u32::from_le_bytes([c0, c1, c2, c3]);
        if len == 0 || len > MAX_PAYLOAD {
            // Zeroed space (a file extended but never written) lands here too.
            let reason = if len == 0 {
                "empty record"
            } else {
                "implausible length"
            };
            return Ok(Next::Bad {
                at,
                next: None,
                reason,
            });
        }
        let mut payload = vec![0u8; len];
        if read_full(&mut self.inner, &mut payload)? < len {
            return Ok(Next::Torn { at });
        }
        let framed = (HEADER_LEN + len) as u64;
        self.offset = at + framed;
        let bad = |reason| {
            Ok(Next::Bad {
                at,
                next: Some(at + framed),
                reason,
            })
        };
        if crc32fast::hash(&payload) != crc {
            return bad("checksum mismatch");
        }
        let Ok(id) = EventId::decode(payload.as_slice()) else {
            return bad("undecodable event");
        };
        if let Err(reason) = validate_id(&id.session_id, id.sequence) {
            return bad(reason);
        }
        Ok(Next::Record(Box::new(Record {
            id,
            payload,
            offset: at,
            len: framed,
        })))
    }
}

/// Fills `buf` unless the input ends first; returns how much was read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..) {
        if rest.is_empty() {
            break;
        }
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> pb::AuditEvent {
        pb::AuditEvent {
            session_id: "s1".into(),
            sequence: seq,
            agent_id: "agent".into(),
            event: Some(pb::audit_event::Event::Statement(pb::StatementExecuted {
                text: "select 1".into(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn read_all(bytes: &[u8]) -> (Vec<Record>, Next) {
        let mut reader = RecordReader::new(bytes, 0);
        let mut records = Vec::new();
        loop {
            match reader.next_record().unwrap() {
                Next::Record(r) => records.push(*r),
                other => return (records, other),
            }
        }
    }

    #[test]
    fn round_trip() {
        let mut bytes = encode(&event(1)).unwrap();
        let first = bytes.len() as u64;
        bytes.extend(encode(&event(2)).unwrap());
        let (records, end) = read_all(&bytes);
        assert!(matches!(end, Next::End));
        assert_eq!(records.len(), 2);
        let decoded = |r: &Record| pb::AuditEvent::decode(r.payload.as_slice()).unwrap();
        assert_eq!(decoded(&records[0]), event(1));
        assert_eq!((records[1].offset, records[1].len), (first, first));
        assert_eq!(decoded(&records[1]), event(2));
    }

    #[test]
    fn a_number_given_after_encoding_is_the_events_own() {
        let mut unnamed = event(0);
        unnamed.agent_id.clear();
        let mut unnumbered = Unnumbered::new(unnamed, "agent", None);
        assert_eq!(&*unnumbered.session_id, "s1");
        assert!(!unnumbered.last);
        assert!(matches!(unnumbered.frame(), Err(EncodeError::Invalid(_))));
        unnumbered.sequence = 300;
        let (records, _) = read_all(&unnumbered.frame().unwrap());
        let decoded = pb::AuditEvent::decode(records[0].payload.as_slice()).unwrap();
        assert_eq!(decoded, event(300));
        assert_eq!(
            (records[0].id.session_id.as_str(), records[0].id.sequence),
            ("s1", 300)
        );
    }

    #[test]
    fn a_sessions_events_share_its_id() {
        let known: Arc<str> = Arc::from("s1");
        let shared = Unnumbered::new(event(0), "agent", Some(&known));
        assert!(Arc::ptr_eq(&shared.session_id, &known));
        // An event of another session keeps its own id, whatever the
        // caller knew.
        let mut other = event(0);
        other.session_id = "s2".into();
        let own = Unnumbered::new(other, "agent", Some(&known));
        assert_eq!(&*own.session_id, "s2");
    }

    #[test]
    fn torn_header_and_payload() {
        let whole = encode(&event(1)).unwrap();
        for cut in [3, HEADER_LEN, whole.len() - 1] {
            let mut bytes = whole.clone();
            bytes.extend_from_slice(&whole[..cut]);
            let (records, end) = read_all(&bytes);
            assert_eq!(records.len(), 1);
            assert!(
                matches!(end, Next::Torn { at } if at == whole.len() as u64),
                "{cut}"
            );
        }
    }

    #[test]
    fn bad_records() {
        let whole = encode(&event(1)).unwrap();
        let mut flipped = whole.clone();
        *flipped.last_mut().unwrap() ^= 0xff;
        let (_, end) = read_all(&flipped);
        let len = whole.len() as u64;
        assert!(
            matches!(end, Next::Bad { at: 0, next: Some(n), reason: "checksum mismatch" } if n == len)
        );

        let (_, end) = read_all(&[0u8; 64]);
        assert!(matches!(
            end,
            Next::Bad {
                at: 0,
                next: None,
                reason: "empty record"
            }
        ));

        let mut huge = u32::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(&[0; 4]);
        let (_, end) = read_all(&huge);
        assert!(matches!(end, Next::Bad { next: None, .. }));
    }

    #[test]
    fn refuses_events_without_an_id_or_too_large() {
        let mut e = event(0);
        assert_eq!(
            encode(&e),
            Err(EncodeError::Invalid("sequence numbers start at 1"))
        );
        e.sequence = 1;
        e.session_id.clear();
        assert!(matches!(encode(&e), Err(EncodeError::Invalid(_))));
        let mut big = event(1);
        if let Some(pb::audit_event::Event::Statement(s)) = &mut big.event {
            s.text = "x".repeat(MAX_PAYLOAD);
        }
        assert!(matches!(encode(&big), Err(EncodeError::TooLarge(_))));
    }
}
