//! The one error type of the codec, and how each error reaches the client.

use std::fmt;

use bytes::BytesMut;

use super::backend::Severity;
use super::write;

/// SQLSTATE codes the codec answers with.
///
/// The crate-wide `SqlState` enum (convention 8) can wrap these; the codec
/// keeps plain codes so it depends on nothing outside `codec/`.
pub mod sqlstate {
    /// `08P01` protocol_violation: the peer broke the wire protocol.
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    /// `0A000` feature_not_supported: a protocol version the gateway does not speak.
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// `08006` connection_failure: the socket failed; nothing can be sent.
    pub const CONNECTION_FAILURE: &str = "08006";
    /// `XX000` internal_error: the gateway itself could not encode a message.
    pub const INTERNAL_ERROR: &str = "XX000";
}

/// Why bytes could not be framed, parsed or encoded.
///
/// Every decoding error means the peer is out of step with the protocol, so
/// the session answers with a FATAL error (see [`CodecError::sqlstate`]) and
/// closes the connection. Messages are lowercase, name no Rust types, and
/// never quote payload bytes, so they are safe to log and to send.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// A declared length is above the configured limit; rejected before any
    /// memory is reserved for it.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Declared length, as the wire counts it.
        len: usize,
        /// Limit in force.
        max: usize,
    },
    /// A message's layout contradicts its own lengths, counts or terminators.
    #[error("malformed {message}: {reason}")]
    Malformed {
        /// Which message, e.g. "Bind message" or "startup packet".
        message: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A typed view was asked to parse a frame of another message type.
    #[error("expected message type {} but found {}", TagName(*.expected), TagName(*.found))]
    UnexpectedTag {
        /// Tag the view parses.
        expected: u8,
        /// Tag the frame carries.
        found: u8,
    },
    /// A tag that no message of this direction uses.
    #[error("invalid message type {}", TagName(*.tag))]
    UnknownTag {
        /// Tag the frame carries.
        tag: u8,
    },
    /// A startup packet asked for a protocol other than 3.x.
    #[error("unsupported frontend protocol {major}.{minor}: only protocol 3.x is served")]
    UnsupportedProtocolVersion {
        /// Requested major version.
        major: u16,
        /// Requested minor version.
        minor: u16,
    },
    /// Bytes arrived after an SSLRequest or GSSENCRequest and before the
    /// answer; they would bypass encryption (CVE-2021-23214), so the
    /// connection must be dropped.
    #[error("received unencrypted data after an encryption request")]
    DataAfterEncryptionRequest,
    /// The gateway tried to build a message the protocol cannot carry (a NUL
    /// inside a string, a count or length that does not fit its field).
    #[error("cannot encode {message}: {reason}")]
    Unencodable {
        /// Which message was being built.
        message: &'static str,
        /// Why it cannot be encoded.
        reason: &'static str,
    },
    /// The transport failed underneath the codec (required by `tokio_util`).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl CodecError {
    /// The SQLSTATE the client is told, following what PostgreSQL answers
    /// for the same fault.
    // INVARIANT: exhaustive, no `_` arm: a new variant must choose its code.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Self::TooLong { .. }
            | Self::Malformed { .. }
            | Self::UnexpectedTag { .. }
            | Self::UnknownTag { .. }
            | Self::DataAfterEncryptionRequest => sqlstate::PROTOCOL_VIOLATION,
            Self::UnsupportedProtocolVersion { .. } => sqlstate::FEATURE_NOT_SUPPORTED,
            Self::Io(_) => sqlstate::CONNECTION_FAILURE,
            Self::Unencodable { .. } => sqlstate::INTERNAL_ERROR,
        }
    }

    /// Whether an ErrorResponse can still reach the peer. After an I/O
    /// failure the socket is gone and the session just closes.
    pub fn can_respond(&self) -> bool {
        !matches!(self, Self::Io(_))
    }

    /// Writes the FATAL ErrorResponse the client gets before the connection
    /// is closed. Internal errors get generic text; their detail belongs in
    /// the logs only.
    pub fn write_error_response(&self, buf: &mut BytesMut) {
        let text = if self.sqlstate() == sqlstate::INTERNAL_ERROR {
            "internal error in the gateway".to_owned()
        } else {
            self.to_string()
        };
        // Our own messages hold no NUL and are far below the length limit;
        // if that ever changes, send the bare code rather than nothing.
        if write::error_response(buf, Severity::Fatal, self.sqlstate(), &text, None, None).is_err()
        {
            let _ = write::error_response(
                buf,
                Severity::Fatal,
                sqlstate::INTERNAL_ERROR,
                "internal error in the gateway",
                None,
                None,
            );
        }
    }

    /// Shorthand used by the parsers.
    pub(crate) fn malformed(message: &'static str, reason: &'static str) -> Self {
        Self::Malformed { message, reason }
    }

    /// Shorthand used by the builders.
    pub(crate) fn unencodable(message: &'static str, reason: &'static str) -> Self {
        Self::Unencodable { message, reason }
    }
}

/// Shows a tag as `'Q'` when printable and as `0x00` otherwise, so hostile
/// bytes never reach a terminal or log raw.
struct TagName(u8);

impl fmt::Display for TagName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}'", char::from(self.0))
        } else {
            write!(f, "0x{:02x}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::backend::ErrorResponse;
    use crate::codec::frame::FrameCodec;
    use tokio_util::codec::Decoder;

    fn every_variant() -> Vec<CodecError> {
        vec![
            CodecError::TooLong {
                len: 2_000_000,
                max: 1_048_576,
            },
            CodecError::malformed("Bind message", "parameter count exceeds message length"),
            CodecError::UnexpectedTag {
                expected: b'Q',
                found: 0,
            },
            CodecError::UnknownTag { tag: b'~' },
            CodecError::UnsupportedProtocolVersion { major: 2, minor: 0 },
            CodecError::DataAfterEncryptionRequest,
            CodecError::unencodable("Query message", "string contains a NUL byte"),
            CodecError::Io(std::io::Error::other("reset")),
        ]
    }

    #[test]
    fn messages_are_lowercase_and_name_no_types() {
        for e in every_variant() {
            let text = e.to_string();
            assert!(text.starts_with(|c: char| c.is_lowercase()), "{text}");
            assert!(!text.contains("CodecError"), "{text}");
        }
        assert_eq!(
            CodecError::TooLong {
                len: 2_000_000,
                max: 1_048_576
            }
            .to_string(),
            "message of 2000000 bytes exceeds the limit of 1048576"
        );
        assert_eq!(
            CodecError::malformed("Bind message", "parameter count exceeds message length")
                .to_string(),
            "malformed Bind message: parameter count exceeds message length"
        );
        assert_eq!(
            CodecError::UnexpectedTag {
                expected: b'Q',
                found: 0
            }
            .to_string(),
            "expected message type 'Q' but found 0x00"
        );
    }

    #[test]
    fn sqlstates_follow_postgres() {
        let codes: Vec<_> = every_variant().iter().map(CodecError::sqlstate).collect();
        assert_eq!(
            codes,
            [
                "08P01", "08P01", "08P01", "08P01", "0A000", "08P01", "XX000", "08006"
            ]
        );
        assert!(!CodecError::Io(std::io::Error::other("x")).can_respond());
        assert!(CodecError::DataAfterEncryptionRequest.can_respond());
    }

    #[test]
    fn error_response_reaches_the_client() {
        for e in every_variant() {
            let mut buf = BytesMut::new();
            e.write_error_response(&mut buf);
            let frame = FrameCodec::new(1 << 20).decode(&mut buf).unwrap().unwrap();
            let resp = ErrorResponse::from_frame(&frame).unwrap();
            assert_eq!(resp.severity(), Some("FATAL"));
            assert_eq!(resp.code(), Some(e.sqlstate()));
            if e.sqlstate() == sqlstate::INTERNAL_ERROR {
                assert_eq!(resp.message(), Some("internal error in the gateway"));
            } else {
                assert_eq!(resp.message(), Some(e.to_string().as_str()));
            }
        }
    }
}
