//! ErrorResponse ('E') and NoticeResponse ('N'): typed fields.

use crate::codec::error::CodecError;
use crate::codec::read::Reader;

/// Severity of an error or notice, as sent in fields `S` and `V`.
///
/// Exists so the proxy's own errors cannot carry a misspelt severity, and
/// so a FATAL from the server can be recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The statement failed; the session goes on.
    Error,
    /// The session ends.
    Fatal,
    /// Every session on the server ends.
    Panic,
    /// A warning notice.
    Warning,
    /// A notice.
    Notice,
    /// A debugging notice.
    Debug,
    /// An informational notice.
    Info,
    /// A log notice.
    Log,
}

impl Severity {
    /// The non-localised name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Error => "ERROR",
            Self::Fatal => "FATAL",
            Self::Panic => "PANIC",
            Self::Warning => "WARNING",
            Self::Notice => "NOTICE",
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Log => "LOG",
        }
    }

    /// The severity for a non-localised name (field `V`), if known.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Error,
            Self::Fatal,
            Self::Panic,
            Self::Warning,
            Self::Notice,
            Self::Debug,
            Self::Info,
            Self::Log,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// Reads `(code, value)` fields up to the terminating zero byte.
fn parse_fields<'a>(
    body: &'a [u8],
    message: &'static str,
) -> Result<Vec<(u8, &'a str)>, CodecError> {
    let mut r = Reader::new(body, message);
    let mut fields = Vec::new();
    loop {
        match r.u8()? {
            0 => break,
            code => fields.push((code, r.cstr()?)),
        }
    }
    r.finish()?;
    Ok(fields)
}

macro_rules! fields_message {
    ($(#[$doc:meta])* $ty:ident, $tag:expr, $name:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $ty<'a> {
            /// Fields in the order sent: a one-byte code (`S`, `V`, `C`,
            /// `M`, `D`, `H`, `P`, ...) and its value.
            pub fields: Vec<(u8, &'a str)>,
        }

        impl<'a> $ty<'a> {
            /// Reads the fields up to the terminating zero byte.
            pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
                parse_fields(body, $name).map(|fields| Self { fields })
            }

            /// The first value of field `code`.
            pub fn field(&self, code: u8) -> Option<&'a str> {
                self.fields.iter().find(|(c, _)| *c == code).map(|(_, v)| *v)
            }

            /// Severity, non-localised (`V`) when sent, else localised (`S`).
            pub fn severity(&self) -> Option<&'a str> {
                self.field(b'V').or_else(|| self.field(b'S'))
            }

            /// SQLSTATE code (`C`).
            pub fn code(&self) -> Option<&'a str> {
                self.field(b'C')
            }

            /// Primary message (`M`).
            pub fn message(&self) -> Option<&'a str> {
                self.field(b'M')
            }

            /// Detail (`D`).
            pub fn detail(&self) -> Option<&'a str> {
                self.field(b'D')
            }

            /// Hint (`H`).
            pub fn hint(&self) -> Option<&'a str> {
                self.field(b'H')
            }
        }
        view!($ty, $tag);
    };
}

fields_message!(
    /// ErrorResponse: the command (or, if FATAL, the session) failed. The
    /// proxy reads the SQLSTATE for audit and relays the frame.
    ErrorResponse,
    b'E',
    "ErrorResponse message"
);
fields_message!(
    /// NoticeResponse: a warning or notice the client should see; same
    /// fields as ErrorResponse.
    NoticeResponse,
    b'N',
    "NoticeResponse message"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_support::{built, check_truncations};
    use crate::codec::write;

    #[test]
    fn error_response_round_trip() {
        let frame = built(|b| {
            write::error_response(
                b,
                Severity::Error,
                "42501",
                "permission denied",
                Some("d"),
                Some("h"),
            )
        });
        let e = ErrorResponse::from_frame(&frame).unwrap();
        assert_eq!(
            e.fields,
            [
                (b'S', "ERROR"),
                (b'V', "ERROR"),
                (b'C', "42501"),
                (b'M', "permission denied"),
                (b'D', "d"),
                (b'H', "h")
            ]
        );
        assert_eq!(e.severity(), Some("ERROR"));
        assert_eq!(e.code(), Some("42501"));
        assert_eq!(e.message(), Some("permission denied"));
        assert_eq!((e.detail(), e.hint()), (Some("d"), Some("h")));
        assert_eq!(e.field(b'P'), None);
        check_truncations(&frame, true, |b| ErrorResponse::from_body(b).is_ok());
        assert!(NoticeResponse::from_frame(&frame).is_err(), "wrong tag");
    }

    #[test]
    fn notice_response_round_trip() {
        let frame =
            built(|b| write::notice_response(b, Severity::Warning, "01000", "careful", None, None));
        let n = NoticeResponse::from_frame(&frame).unwrap();
        assert_eq!(
            n.fields,
            [
                (b'S', "WARNING"),
                (b'V', "WARNING"),
                (b'C', "01000"),
                (b'M', "careful")
            ]
        );
        assert_eq!((n.detail(), n.hint()), (None, None));
        check_truncations(&frame, true, |b| NoticeResponse::from_body(b).is_ok());
    }

    #[test]
    fn localised_severity_is_a_fallback() {
        let e = ErrorResponse::from_body(b"SFEHLER\0C08P01\0\0").unwrap();
        assert_eq!(e.severity(), Some("FEHLER"));
        let e = ErrorResponse::from_body(b"SFEHLER\0VERROR\0\0").unwrap();
        assert_eq!(e.severity(), Some("ERROR"));
        assert!(
            ErrorResponse::from_body(b"SERROR\0\0x").is_err(),
            "trailing bytes"
        );
        assert!(ErrorResponse::from_body(b"SERROR").is_err(), "unterminated");
    }

    #[test]
    fn severity_names() {
        for s in [
            Severity::Error,
            Severity::Fatal,
            Severity::Panic,
            Severity::Warning,
            Severity::Notice,
            Severity::Debug,
            Severity::Info,
            Severity::Log,
        ] {
            assert_eq!(Severity::from_name(s.as_str()), Some(s));
        }
        assert_eq!(Severity::from_name("error"), None);
    }

    #[test]
    fn bad_sqlstate_is_not_encoded() {
        let mut buf = bytes::BytesMut::new();
        for code in ["4250", "425011", "42 01", "4250a"] {
            assert!(
                write::error_response(&mut buf, Severity::Error, code, "m", None, None).is_err()
            );
        }
        assert!(
            write::error_response(&mut buf, Severity::Error, "42501", "a\0b", None, None).is_err()
        );
        assert!(buf.is_empty());
    }
}
