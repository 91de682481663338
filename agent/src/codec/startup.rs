//! The untagged packets a client sends before its startup message.
//!
//! The first packet of a connection has no tag: an Int32 length (counting
//! itself) and an Int32 code that is either a protocol version or one of the
//! special request codes. [`StartupCodec`] reads those; after the
//! `Startup` packet the session switches to [`FrameCodec`](super::FrameCodec)
//! on the same buffer.
//!
//! Direct TLS (PostgreSQL 17 `sslnegotiation=direct`) starts with a TLS
//! record instead (first byte `0x16`); the frontend must peek for it before
//! handing bytes to this codec, which would otherwise reject the length.

use std::fmt;

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

use super::error::CodecError;
use super::read::Reader;

/// Code of an SSLRequest (1234.5679).
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
/// Code of a GSSENCRequest (1234.5680).
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// Code of a CancelRequest (1234.5678).
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;
/// Protocol 3.0 as a startup code; 3.x is this plus `x`.
pub const PROTOCOL_3_0: u32 = 196_608;
/// Newest minor version of protocol 3 that PostgreSQL speaks (3.2, in 18).
pub const LATEST_PROTOCOL_MINOR: u16 = 2;
/// Largest startup packet body PostgreSQL accepts (`MAX_STARTUP_PACKET_LENGTH`),
/// not counting the length word.
pub const MAX_STARTUP_PACKET_LEN: usize = 10_000;
/// Longest cancel key protocol 3.2 allows; 3.0 keys are 4 bytes.
pub const MAX_CANCEL_KEY_LEN: usize = 256;

const NAME: &str = "startup packet";

/// What a client may send before its first tagged message.
///
/// `Debug` hides the cancel key, which is a bearer secret.
#[derive(Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// The client asks to switch to TLS; it waits for `S` or `N`.
    SslRequest,
    /// The client asks to switch to GSSAPI encryption; it waits for `G` or `N`.
    GssEncRequest,
    /// Out-of-band request to cancel the query running on another session.
    CancelRequest {
        /// Process id from that session's BackendKeyData.
        process_id: i32,
        /// Secret key from that session's BackendKeyData: 4 bytes in protocol
        /// 3.0, up to 256 in 3.2.
        secret_key: Vec<u8>,
    },
    /// The real start of a session.
    Startup {
        /// Always 3.
        version_major: u16,
        /// Requested minor version; may be newer than the gateway speaks, in
        /// which case it answers with NegotiateProtocolVersion.
        version_minor: u16,
        /// Parameters in the order sent (`user`, `database`, `options`,
        /// `_pq_.*` protocol options, GUCs); names are unique.
        parameters: Vec<(String, String)>,
    },
}

impl StartupPacket {
    /// Parses a packet body (everything after the length word), the way
    /// PostgreSQL's `ProcessStartupPacket` does, but rejecting duplicate
    /// parameter names: the gateway and the server must never disagree on
    /// which `user` or `database` the session is.
    pub fn parse(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, NAME);
        let code = r.u32()?;
        match code {
            SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => {
                if r.remaining() != 0 {
                    return Err(r.error("encryption request has a body"));
                }
                Ok(if code == SSL_REQUEST_CODE {
                    Self::SslRequest
                } else {
                    Self::GssEncRequest
                })
            }
            CANCEL_REQUEST_CODE => {
                let process_id = r
                    .i32()
                    .map_err(|_| CodecError::malformed("cancel request", "packet is too short"))?;
                let key = r.rest();
                if key.is_empty() || key.len() > MAX_CANCEL_KEY_LEN {
                    return Err(CodecError::malformed(
                        "cancel request",
                        "cancel key length is not between 1 and 256",
                    ));
                }
                Ok(Self::CancelRequest {
                    process_id,
                    secret_key: key.to_vec(),
                })
            }
            _ => {
                let [major_hi, major_lo, minor_hi, minor_lo] = code.to_be_bytes();
                let (version_major, version_minor) = (
                    u16::from_be_bytes([major_hi, major_lo]),
                    u16::from_be_bytes([minor_hi, minor_lo]),
                );
                if version_major != 3 {
                    return Err(CodecError::UnsupportedProtocolVersion {
                        major: version_major,
                        minor: version_minor,
                    });
                }
                let parameters = parse_parameters(&mut r)?;
                Ok(Self::Startup {
                    version_major,
                    version_minor,
                    parameters,
                })
            }
        }
    }

    /// The value of a startup parameter, e.g. `user`; `None` for the other
    /// packet kinds.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        match self {
            Self::Startup { parameters, .. } => parameters
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
            Self::SslRequest | Self::GssEncRequest | Self::CancelRequest { .. } => None,
        }
    }

    /// Names of the `_pq_.` protocol options requested, which the gateway
    /// must list in NegotiateProtocolVersion if it does not support them.
    pub fn protocol_options(&self) -> impl Iterator<Item = &str> {
        let parameters = match self {
            Self::Startup { parameters, .. } => parameters.as_slice(),
            Self::SslRequest | Self::GssEncRequest | Self::CancelRequest { .. } => &[],
        };
        parameters
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| k.starts_with("_pq_."))
    }
}

impl fmt::Debug for StartupPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SslRequest => f.write_str("SslRequest"),
            Self::GssEncRequest => f.write_str("GssEncRequest"),
            Self::CancelRequest {
                process_id,
                secret_key,
            } => f
                .debug_struct("CancelRequest")
                .field("process_id", process_id)
                .field("secret_key_len", &secret_key.len())
                .finish_non_exhaustive(),
            Self::Startup {
                version_major,
                version_minor,
                parameters,
            } => f
                .debug_struct("Startup")
                .field("version_major", version_major)
                .field("version_minor", version_minor)
                .field("parameters", parameters)
                .finish(),
        }
    }
}

/// Name/value pairs, each NUL-terminated, closed by an empty name; the
/// closing NUL must be the last byte.
fn parse_parameters(r: &mut Reader<'_>) -> Result<Vec<(String, String)>, CodecError> {
    let mut parameters: Vec<(String, String)> = Vec::new();
    loop {
        let name = next_string(r)?;
        if name.is_empty() {
            break;
        }
        let value = next_string(r)?;
        if parameters.iter().any(|(k, _)| k == name) {
            return Err(r.error("parameter is given twice"));
        }
        parameters.push((name.to_owned(), value.to_owned()));
    }
    r.finish()
        .map_err(|_| r.error("expected terminator as last byte"))?;
    Ok(parameters)
}

fn next_string<'a>(r: &mut Reader<'a>) -> Result<&'a str, CodecError> {
    let bytes = r
        .cstr_bytes()
        .map_err(|_| r.error("expected terminator as last byte"))?;
    std::str::from_utf8(bytes).map_err(|_| r.error("parameter is not valid UTF-8"))
}

/// `Decoder` for the untagged packets at the start of a connection.
///
/// Yields one [`StartupPacket`] per call. The frontend answers SSL/GSS
/// requests and keeps using this codec until it gets `Startup`, then moves
/// to [`FrameCodec`](super::FrameCodec) (e.g. with `Framed::map_codec`, which
/// keeps the read buffer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StartupCodec;

impl Decoder for StartupCodec {
    type Item = StartupPacket;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<StartupPacket>, CodecError> {
        let Some(&len) = src.first_chunk::<4>() else {
            src.reserve(4usize.saturating_sub(src.len()));
            return Ok(None);
        };
        let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
        let body_len = len.saturating_sub(4);
        if len < 8 {
            return Err(CodecError::malformed(NAME, "length is less than 8"));
        }
        if body_len > MAX_STARTUP_PACKET_LEN {
            return Err(CodecError::TooLong {
                len: body_len,
                max: MAX_STARTUP_PACKET_LEN,
            });
        }
        if src.len() < len {
            src.reserve(len.saturating_sub(src.len()));
            return Ok(None);
        }
        let packet = src.split_to(len);
        let packet = StartupPacket::parse(packet.get(4..).unwrap_or_default())?;
        if matches!(
            packet,
            StartupPacket::SslRequest | StartupPacket::GssEncRequest
        ) && !src.is_empty()
        {
            // Anything sent before our answer would be processed as if it
            // had arrived over the encrypted channel.
            src.advance(src.len());
            return Err(CodecError::DataAfterEncryptionRequest);
        }
        Ok(Some(packet))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::write;

    fn decode(bytes: &[u8]) -> Result<Option<StartupPacket>, CodecError> {
        StartupCodec.decode(&mut BytesMut::from(bytes))
    }

    fn packet(code: u32, rest: &[u8]) -> Vec<u8> {
        let mut v = u32::try_from(8 + rest.len())
            .unwrap()
            .to_be_bytes()
            .to_vec();
        v.extend_from_slice(&code.to_be_bytes());
        v.extend_from_slice(rest);
        v
    }

    #[test]
    fn ssl_and_gssenc_requests() {
        let mut buf = BytesMut::new();
        write::ssl_request(&mut buf);
        assert_eq!(&buf[..], &packet(SSL_REQUEST_CODE, b"")[..]);
        assert_eq!(
            StartupCodec.decode(&mut buf).unwrap(),
            Some(StartupPacket::SslRequest)
        );
        write::gssenc_request(&mut buf);
        assert_eq!(
            StartupCodec.decode(&mut buf).unwrap(),
            Some(StartupPacket::GssEncRequest)
        );
        assert!(decode(&packet(SSL_REQUEST_CODE, b"x")).is_err());
    }

    #[test]
    fn data_after_encryption_request_is_refused() {
        let mut bytes = packet(SSL_REQUEST_CODE, b"");
        bytes.extend_from_slice(b"Q\0\0\0\x05\0");
        assert!(matches!(
            decode(&bytes),
            Err(CodecError::DataAfterEncryptionRequest)
        ));
        let mut bytes = packet(GSSENC_REQUEST_CODE, b"");
        bytes.push(0);
        assert!(matches!(
            decode(&bytes),
            Err(CodecError::DataAfterEncryptionRequest)
        ));
    }

    #[test]
    fn cancel_requests_with_short_and_long_keys() {
        for key in [&[1u8, 2, 3, 4][..], &[7u8; 32][..], &[9u8; 256][..]] {
            let mut buf = BytesMut::new();
            write::cancel_request(&mut buf, 4242, key).unwrap();
            let got = StartupCodec.decode(&mut buf).unwrap().unwrap();
            assert_eq!(
                got,
                StartupPacket::CancelRequest {
                    process_id: 4242,
                    secret_key: key.to_vec()
                }
            );
            assert!(
                !format!("{got:?}").contains("[7, 7"),
                "key must not be shown"
            );
        }
        assert!(
            decode(&packet(CANCEL_REQUEST_CODE, b"\0\0\0\x01")).is_err(),
            "no key"
        );
        assert!(
            decode(&packet(CANCEL_REQUEST_CODE, b"\0\0")).is_err(),
            "short pid"
        );
        let mut long = b"\0\0\0\x01".to_vec();
        long.extend_from_slice(&[0; 257]);
        assert!(
            decode(&packet(CANCEL_REQUEST_CODE, &long)).is_err(),
            "key over 256 bytes"
        );
    }

    #[test]
    fn startup_round_trip_3_0_and_3_2() {
        let params = [
            ("user", "alice"),
            ("database", "app"),
            ("_pq_.x", "1"),
            ("empty", ""),
        ];
        for minor in [0, LATEST_PROTOCOL_MINOR, 9] {
            let mut buf = BytesMut::new();
            write::startup_message_with_minor(&mut buf, minor, &params).unwrap();
            let got = StartupCodec.decode(&mut buf).unwrap().unwrap();
            let expected: Vec<_> = params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            assert_eq!(
                got,
                StartupPacket::Startup {
                    version_major: 3,
                    version_minor: minor,
                    parameters: expected
                }
            );
            assert_eq!(got.parameter("user"), Some("alice"));
            assert_eq!(got.parameter("nope"), None);
            assert_eq!(got.protocol_options().collect::<Vec<_>>(), ["_pq_.x"]);
            assert!(buf.is_empty());
        }
        let mut buf = BytesMut::new();
        write::startup_message(&mut buf, &[("user", "bob")]).unwrap();
        assert_eq!(&buf[4..8], &PROTOCOL_3_0.to_be_bytes());
        assert_eq!(StartupPacket::SslRequest.parameter("user"), None);
    }

    #[test]
    fn other_protocol_versions_are_refused() {
        let err = decode(&packet(2 << 16, b"user\0a\0\0")).unwrap_err();
        assert!(matches!(
            err,
            CodecError::UnsupportedProtocolVersion { major: 2, minor: 0 }
        ));
        assert_eq!(err.sqlstate(), "0A000");
        let err = decode(&packet(4 << 16, b"\0")).unwrap_err();
        assert!(matches!(
            err,
            CodecError::UnsupportedProtocolVersion { major: 4, .. }
        ));
        let err = decode(&packet((1234 << 16) | 5681, b"")).unwrap_err();
        assert!(matches!(
            err,
            CodecError::UnsupportedProtocolVersion { major: 1234, .. }
        ));
    }

    #[test]
    fn malformed_parameter_lists() {
        let cases: [&[u8]; 7] = [
            b"",                     // no terminator at all
            b"user\0alice\0",        // missing final NUL
            b"user\0alice",          // unterminated value
            b"user\0",               // name without value
            b"user\0a\0\0x",         // bytes after the terminator
            b"user\0a\0user\0b\0\0", // duplicate name
            b"us\xffer\0a\0\0",      // not UTF-8
        ];
        for body in cases {
            let err = decode(&packet(PROTOCOL_3_0, body)).unwrap_err();
            assert!(
                matches!(err, CodecError::Malformed { .. }),
                "{body:?}: {err}"
            );
        }
        let ok = decode(&packet(PROTOCOL_3_0, b"\0")).unwrap().unwrap();
        assert_eq!(ok.parameter("user"), None);
    }

    #[test]
    fn lengths_are_checked_before_reading() {
        for len in 0u32..8 {
            assert!(decode(&len.to_be_bytes()).is_err(), "length {len}");
        }
        let mut src = BytesMut::from(&10_005u32.to_be_bytes()[..]);
        let err = StartupCodec.decode(&mut src).unwrap_err();
        assert_eq!(
            err.to_string(),
            "message of 10001 bytes exceeds the limit of 10000"
        );
        assert!(src.capacity() < 1024);
        // Exactly the limit is fine (and waits for the bytes).
        let mut src = BytesMut::from(&10_004u32.to_be_bytes()[..]);
        assert_eq!(StartupCodec.decode(&mut src).unwrap(), None);
        assert!(src.capacity() >= 10_004);
    }

    #[test]
    fn every_truncation_waits() {
        let mut buf = BytesMut::new();
        write::startup_message(&mut buf, &[("user", "alice"), ("database", "db")]).unwrap();
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut]).unwrap(), None, "cut {cut}");
        }
    }
}
