//! Session-state messages: ParameterStatus, BackendKeyData, ReadyForQuery,
//! NegotiateProtocolVersion.

use std::fmt;

use crate::codec::error::CodecError;
use crate::codec::read::Reader;
use crate::codec::startup::MAX_CANCEL_KEY_LEN;

/// ParameterStatus ('S'): the server reports a run-time parameter, e.g.
/// `server_version` or a changed `search_path`, which the proxy may track or
/// replay to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParameterStatus<'a> {
    /// Parameter name.
    pub name: &'a str,
    /// Its current value.
    pub value: &'a str,
}

impl<'a> ParameterStatus<'a> {
    /// Reads a ParameterStatus body.
    pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, "ParameterStatus message");
        let name = r.cstr()?;
        let value = r.cstr()?;
        r.finish()?;
        Ok(Self { name, value })
    }
}
view!(ParameterStatus, b'S');

/// BackendKeyData ('K'): what a client needs to cancel its queries later.
///
/// The proxy keeps the server's key and hands the client a key of its own.
/// `Debug` hides the key, a bearer secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BackendKeyData<'a> {
    /// Server process id.
    pub process_id: i32,
    /// Cancel key: 4 bytes in protocol 3.0, up to 256 in 3.2.
    pub secret_key: &'a [u8],
}

impl<'a> BackendKeyData<'a> {
    /// Reads a BackendKeyData body.
    pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, "BackendKeyData message");
        let process_id = r.i32()?;
        let secret_key = r.rest();
        if secret_key.is_empty() || secret_key.len() > MAX_CANCEL_KEY_LEN {
            return Err(r.error("cancel key length is not between 1 and 256"));
        }
        Ok(Self {
            process_id,
            secret_key,
        })
    }
}
view!(BackendKeyData, b'K');

impl fmt::Debug for BackendKeyData<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendKeyData")
            .field("process_id", &self.process_id)
            .field("secret_key_len", &self.secret_key.len())
            .finish_non_exhaustive()
    }
}

/// Transaction state reported by ReadyForQuery; a pooler may only hand a
/// server connection to another client when it is `Idle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransactionStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: in a transaction block.
    InTransaction,
    /// `E`: in a failed transaction block; statements are refused until rollback.
    Failed,
}

impl TransactionStatus {
    /// The status for a byte, or `None` if it is not `I`, `T` or `E`.
    pub const fn from_u8(b: u8) -> Option<Self> {
        match b {
            b'I' => Some(Self::Idle),
            b'T' => Some(Self::InTransaction),
            b'E' => Some(Self::Failed),
            _ => None,
        }
    }

    /// The byte on the wire.
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Idle => b'I',
            Self::InTransaction => b'T',
            Self::Failed => b'E',
        }
    }
}

/// ReadyForQuery ('Z'): the server is ready for the next command; the end of
/// every response cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadyForQuery {
    /// Transaction state at this point.
    pub status: TransactionStatus,
}

impl ReadyForQuery {
    /// Reads a ReadyForQuery body.
    pub fn from_body(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, "ReadyForQuery message");
        let b = r.u8()?;
        let status =
            TransactionStatus::from_u8(b).ok_or_else(|| r.error("unknown transaction status"))?;
        r.finish()?;
        Ok(Self { status })
    }
}
view!(owned ReadyForQuery, b'Z');

/// NegotiateProtocolVersion ('v'): the server does not support the requested
/// minor version or some `_pq_.` options.
///
/// Exists because the proxy negotiates with both sides separately.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NegotiateProtocolVersion<'a> {
    /// Newest 3.x minor version the server speaks. (On the wire this is the
    /// whole version number, `3 << 16 | minor`, which libpq requires.)
    pub newest_minor: u16,
    /// Requested `_pq_.` options the server did not recognise.
    pub unrecognized_options: Vec<&'a str>,
}

impl<'a> NegotiateProtocolVersion<'a> {
    /// Reads a NegotiateProtocolVersion body, checking the option count
    /// against the body before allocating.
    pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, "NegotiateProtocolVersion message");
        let [major_hi, major_lo, minor_hi, minor_lo] = r.u32()?.to_be_bytes();
        if u16::from_be_bytes([major_hi, major_lo]) != 3 {
            return Err(r.error("version is not 3.x"));
        }
        let newest_minor = u16::from_be_bytes([minor_hi, minor_lo]);
        let count = usize::try_from(r.i32()?).map_err(|_| r.error("negative option count"))?;
        r.ensure_count(count, 1, "option count exceeds message length")?;
        let mut unrecognized_options = Vec::with_capacity(count);
        for _ in 0..count {
            unrecognized_options.push(r.cstr()?);
        }
        r.finish()?;
        Ok(Self {
            newest_minor,
            unrecognized_options,
        })
    }
}
view!(NegotiateProtocolVersion, b'v');

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_support::{built, built_infallible, check_truncations};
    use crate::codec::write;

    #[test]
    fn parameter_status_round_trip() {
        let frame = built(|b| write::parameter_status(b, "TimeZone", "Europe/Paris"));
        assert_eq!(
            ParameterStatus::from_frame(&frame).unwrap(),
            ParameterStatus {
                name: "TimeZone",
                value: "Europe/Paris"
            }
        );
        check_truncations(&frame, true, |b| ParameterStatus::from_body(b).is_ok());
    }

    #[test]
    fn backend_key_data_round_trip() {
        for key in [&b"\x01\x02\x03\x04"[..], &[0x5a; 32][..]] {
            let frame = built(|b| write::backend_key_data(b, 77, key));
            let got = BackendKeyData::from_frame(&frame).unwrap();
            assert_eq!(
                got,
                BackendKeyData {
                    process_id: 77,
                    secret_key: key
                }
            );
            assert!(!format!("{got:?}").contains("90"), "key hidden");
            // Any key of 1 to 256 bytes is valid, so only the pid is required.
            check_truncations(&frame, false, |b| BackendKeyData::from_body(b).is_ok());
        }
        for cut in 0..=4 {
            assert!(BackendKeyData::from_body(&[0; 5][..cut]).is_err());
        }
        assert!(BackendKeyData::from_body(&[0; 4 + 257]).is_err());
        let mut buf = bytes::BytesMut::new();
        assert!(write::backend_key_data(&mut buf, 1, &[]).is_err());
    }

    #[test]
    fn ready_for_query_round_trip() {
        for status in [
            TransactionStatus::Idle,
            TransactionStatus::InTransaction,
            TransactionStatus::Failed,
        ] {
            let frame = built_infallible(|b| write::ready_for_query(b, status));
            assert_eq!(
                ReadyForQuery::from_frame(&frame).unwrap(),
                ReadyForQuery { status }
            );
            check_truncations(&frame, true, |b| ReadyForQuery::from_body(b).is_ok());
        }
        assert!(ReadyForQuery::from_body(b"X").is_err());
        assert!(ReadyForQuery::from_body(b"II").is_err());
    }

    #[test]
    fn negotiate_protocol_version_round_trip() {
        let options = ["_pq_.a".to_owned(), "_pq_.b".to_owned()];
        let frame = built(|b| write::negotiate_protocol_version(b, 2, &options));
        assert_eq!(
            &frame.body()[..4],
            &[0, 3, 0, 2],
            "full version number on the wire"
        );
        assert_eq!(
            NegotiateProtocolVersion::from_frame(&frame).unwrap(),
            NegotiateProtocolVersion {
                newest_minor: 2,
                unrecognized_options: vec!["_pq_.a", "_pq_.b"]
            }
        );
        check_truncations(&frame, true, |b| {
            NegotiateProtocolVersion::from_body(b).is_ok()
        });
        assert!(NegotiateProtocolVersion::from_body(b"\0\x03\0\0\x7f\xff\xff\xff").is_err());
        assert!(NegotiateProtocolVersion::from_body(b"\0\x03\0\0\xff\xff\xff\xff").is_err());
        assert!(NegotiateProtocolVersion::from_body(b"\0\x02\0\0\0\0\0\0").is_err());
    }
}
