//! Authentication ('R'): the server's authentication requests and result.

use crate::codec::error::CodecError;
use crate::codec::read::Reader;

/// An authentication request or result from the server.
///
/// The proxy authenticates to the database itself, so it must tell these
/// apart; kinds it does not implement (Kerberos, GSS, SSPI) are kept as
/// [`Authentication::Other`] so the session can refuse them by code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authentication<'a> {
    /// Code 0: authenticated.
    Ok,
    /// Code 3: send the password in clear.
    CleartextPassword,
    /// Code 5: send `md5(md5(password || user) || salt)`.
    Md5Password {
        /// Salt for the second hash.
        salt: [u8; 4],
    },
    /// Code 10: start SASL with one of these mechanisms.
    Sasl {
        /// Mechanism names, in the server's order of preference.
        mechanisms: Vec<&'a str>,
    },
    /// Code 11: SASL challenge (for SCRAM, the server-first-message).
    SaslContinue {
        /// Mechanism data.
        data: &'a [u8],
    },
    /// Code 12: SASL outcome (for SCRAM, the server-final-message).
    SaslFinal {
        /// Mechanism data.
        data: &'a [u8],
    },
    /// Any other code, with its data untouched.
    Other {
        /// The request code.
        code: i32,
        /// What followed the code.
        data: &'a [u8],
    },
}

impl<'a> Authentication<'a> {
    /// Reads an Authentication body.
    pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, "Authentication message");
        let auth = match r.i32()? {
            0 => Self::Ok,
            3 => Self::CleartextPassword,
            5 => Self::Md5Password { salt: r.array()? },
            10 => {
                let mut mechanisms = Vec::new();
                loop {
                    let name = r.cstr()?;
                    if name.is_empty() {
                        break;
                    }
                    mechanisms.push(name);
                }
                Self::Sasl { mechanisms }
            }
            11 => Self::SaslContinue { data: r.rest() },
            12 => Self::SaslFinal { data: r.rest() },
            code => Self::Other {
                code,
                data: r.rest(),
            },
        };
        r.finish()?;
        Ok(auth)
    }
}
view!(Authentication, b'R');

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Frame;
    use crate::codec::test_support::{built, built_infallible, check_truncations};
    use crate::codec::write;

    #[test]
    fn round_trips() {
        let cases = [
            (
                built_infallible(write::authentication_ok),
                Authentication::Ok,
                true,
            ),
            (
                built_infallible(write::authentication_cleartext_password),
                Authentication::CleartextPassword,
                true,
            ),
            (
                built_infallible(|b| write::authentication_md5_password(b, *b"salt")),
                Authentication::Md5Password { salt: *b"salt" },
                true,
            ),
            (
                built(|b| write::authentication_sasl(b, &["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])),
                Authentication::Sasl {
                    mechanisms: vec!["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"],
                },
                true,
            ),
            (
                built(|b| write::authentication_sasl_continue(b, b"r=abc,s=xyz,i=4096")),
                Authentication::SaslContinue {
                    data: b"r=abc,s=xyz,i=4096",
                },
                false,
            ),
            (
                built(|b| write::authentication_sasl_final(b, b"v=sig")),
                Authentication::SaslFinal { data: b"v=sig" },
                false,
            ),
        ];
        for (frame, expected, prefixes_are_invalid) in cases {
            assert_eq!(Authentication::from_frame(&frame).unwrap(), expected);
            check_truncations(&frame, prefixes_are_invalid, |b| {
                Authentication::from_body(b).is_ok()
            });
        }
    }

    #[test]
    fn other_codes_are_kept() {
        let frame = Frame::new(b'R', b"\0\0\0\x07gss").unwrap();
        assert_eq!(
            Authentication::from_frame(&frame).unwrap(),
            Authentication::Other {
                code: 7,
                data: b"gss"
            }
        );
    }

    #[test]
    fn malformed_requests_are_refused() {
        assert!(
            Authentication::from_body(b"\0\0\0\0x").is_err(),
            "Ok with a body"
        );
        assert!(
            Authentication::from_body(b"\0\0\0\x05ab").is_err(),
            "short salt"
        );
        assert!(
            Authentication::from_body(b"\0\0\0\x0aSCRAM\0").is_err(),
            "no list end"
        );
        assert!(
            Authentication::from_body(b"\0\0\0\x0aA\0\0x").is_err(),
            "trailing bytes"
        );
    }
}
