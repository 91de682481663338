//! PasswordMessage ('p') and the SASL messages that share its tag.

use std::fmt;

use crate::codec::error::CodecError;
use crate::codec::read::Reader;

/// A 'p' message: cleartext or MD5 password, SASLInitialResponse or
/// SASLResponse. Which one it is depends on the authentication request the
/// client is answering, so the body is kept raw and the session's auth state
/// picks the matching method.
///
/// `Debug` shows the length only: the body is a credential.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PasswordMessage<'a> {
    /// The body, as sent.
    pub data: &'a [u8],
}

impl<'a> PasswordMessage<'a> {
    /// Keeps the body; any content is acceptable until its kind is known.
    pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
        Ok(Self { data: body })
    }

    /// Reads the body as a cleartext (or `md5...`) password: a string whose
    /// NUL must be the last byte, as PostgreSQL requires. Bytes, not `str`:
    /// passwords need not be UTF-8.
    pub fn cleartext_password(&self) -> Result<&'a [u8], CodecError> {
        let mut r = Reader::new(self.data, "password message");
        let password = r.cstr_bytes()?;
        r.finish()?;
        Ok(password)
    }

    /// Reads the body as a SASLInitialResponse, answering AuthenticationSASL.
    pub fn sasl_initial_response(&self) -> Result<SaslInitialResponse<'a>, CodecError> {
        let mut r = Reader::new(self.data, "SASLInitialResponse message");
        let mechanism = r.cstr()?;
        let data = match r.i32()? {
            -1 => None,
            len => {
                let len = usize::try_from(len).map_err(|_| r.error("negative data length"))?;
                Some(r.bytes(len)?)
            }
        };
        r.finish()?;
        Ok(SaslInitialResponse { mechanism, data })
    }

    /// Reads the body as a SASLResponse, answering AuthenticationSASLContinue:
    /// all of it is mechanism data.
    pub fn sasl_response(&self) -> &'a [u8] {
        self.data
    }
}
view!(PasswordMessage, b'p');

impl fmt::Debug for PasswordMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordMessage")
            .field("len", &self.data.len())
            .finish_non_exhaustive()
    }
}

/// SASLInitialResponse: the mechanism the client chose and its first
/// message (for SCRAM, the client-first-message).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SaslInitialResponse<'a> {
    /// Chosen mechanism, e.g. `SCRAM-SHA-256`.
    pub mechanism: &'a str,
    /// Initial client response; `None` if the client sent length -1.
    pub data: Option<&'a [u8]>,
}

impl fmt::Debug for SaslInitialResponse<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslInitialResponse")
            .field("mechanism", &self.mechanism)
            .field("data_len", &self.data.map(<[u8]>::len))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_support::{built, check_truncations};
    use crate::codec::write;

    #[test]
    fn cleartext_round_trip() {
        let frame = built(|b| write::password_message(b, b"hunter2\xff"));
        let msg = PasswordMessage::from_frame(&frame).unwrap();
        assert_eq!(msg.cleartext_password().unwrap(), b"hunter2\xff");
        assert!(!format!("{msg:?}").contains("hunter2"));
        check_truncations(&frame, true, |b| {
            PasswordMessage::from_body(b)
                .unwrap()
                .cleartext_password()
                .is_ok()
        });
        let bad = PasswordMessage { data: b"a\0b\0" };
        assert!(bad.cleartext_password().is_err(), "bytes after the NUL");
    }

    #[test]
    fn sasl_initial_response_round_trip() {
        let frame = built(|b| write::sasl_initial_response(b, "SCRAM-SHA-256", b"n,,n=,r=abc"));
        let msg = PasswordMessage::from_frame(&frame).unwrap();
        let resp = msg.sasl_initial_response().unwrap();
        assert_eq!(resp.mechanism, "SCRAM-SHA-256");
        assert_eq!(resp.data, Some(&b"n,,n=,r=abc"[..]));
        assert!(!format!("{resp:?}").contains("r=abc"));
        check_truncations(&frame, true, |b| {
            PasswordMessage::from_body(b)
                .unwrap()
                .sasl_initial_response()
                .is_ok()
        });
        let none = PasswordMessage {
            data: b"X\0\xff\xff\xff\xff",
        };
        assert_eq!(none.sasl_initial_response().unwrap().data, None);
        let lying = PasswordMessage {
            data: b"X\0\0\0\x10\0ab",
        };
        assert!(lying.sasl_initial_response().is_err());
        let negative = PasswordMessage {
            data: b"X\0\xff\xff\xff\xfe",
        };
        assert!(negative.sasl_initial_response().is_err());
    }

    #[test]
    fn sasl_response_round_trip() {
        let frame = built(|b| write::sasl_response(b, b"c=biws,r=abc,p=xyz"));
        let msg = PasswordMessage::from_frame(&frame).unwrap();
        assert_eq!(msg.sasl_response(), b"c=biws,r=abc,p=xyz");
        check_truncations(&frame, false, |b| PasswordMessage::from_body(b).is_ok());
    }
}
