//! CopyInResponse ('G'), CopyOutResponse ('H'), CopyBothResponse ('W').

use crate::codec::error::CodecError;
use crate::codec::frame::Frame;
use crate::codec::read::Reader;
use crate::codec::values::FormatCodes;

/// The start of a COPY: the server is ready to receive ('G'), is about to
/// send ('H'), or both, for replication ('W').
///
/// One type for the three messages, which share a layout; the tag (or the
/// [`BackendMessage`](super::BackendMessage) variant) says which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyResponse<'a> {
    /// Overall format: 0 text, 1 binary.
    pub format: i8,
    /// Per-column formats; all 0 when `format` is 0.
    pub column_formats: FormatCodes<'a>,
}

impl<'a> CopyResponse<'a> {
    /// Tag of CopyInResponse.
    pub const IN_TAG: u8 = b'G';
    /// Tag of CopyOutResponse.
    pub const OUT_TAG: u8 = b'H';
    /// Tag of CopyBothResponse.
    pub const BOTH_TAG: u8 = b'W';

    /// Parses any of the three messages.
    pub fn from_frame(frame: &'a Frame) -> Result<Self, CodecError> {
        match frame.tag() {
            Self::IN_TAG | Self::OUT_TAG | Self::BOTH_TAG => Self::from_body(frame.body()),
            found => Err(CodecError::UnexpectedTag {
                expected: Self::IN_TAG,
                found,
            }),
        }
    }

    /// Reads the shared body.
    pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, "copy response message");
        let format = i8::from_be_bytes(r.array()?);
        let column_formats = FormatCodes::read(&mut r, "column count exceeds message length")?;
        r.finish()?;
        Ok(Self {
            format,
            column_formats,
        })
    }
}

/// NotificationResponse ('A'): a NOTIFY delivered to a LISTENing session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotificationResponse<'a> {
    /// Process id of the notifying session.
    pub process_id: i32,
    /// Channel name.
    pub channel: &'a str,
    /// Payload; may be empty.
    pub payload: &'a str,
}

impl<'a> NotificationResponse<'a> {
    /// Reads a NotificationResponse body.
    pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, "NotificationResponse message");
        let process_id = r.i32()?;
        let channel = r.cstr()?;
        let payload = r.cstr()?;
        r.finish()?;
        Ok(Self {
            process_id,
            channel,
            payload,
        })
    }
}
view!(NotificationResponse, b'A');

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_support::{built, check_truncations};
    use crate::codec::write;

    #[test]
    fn copy_responses_round_trip() {
        let frames = [
            (b'G', built(|b| write::copy_in_response(b, 0, &[0, 0]))),
            (b'H', built(|b| write::copy_out_response(b, 1, &[1, 1, 1]))),
            (b'W', built(|b| write::copy_both_response(b, 0, &[]))),
        ];
        for (tag, frame) in &frames {
            assert_eq!(frame.tag(), *tag);
            let resp = CopyResponse::from_frame(frame).unwrap();
            let expected: Vec<i16> = match tag {
                b'G' => vec![0, 0],
                b'H' => vec![1, 1, 1],
                _ => vec![],
            };
            assert_eq!(resp.column_formats.iter().collect::<Vec<_>>(), expected);
            assert_eq!(resp.format, i8::from(*tag == b'H'));
            check_truncations(frame, true, |b| CopyResponse::from_body(b).is_ok());
        }
        assert!(
            CopyResponse::from_body(b"\0\x10\0\0\0").is_err(),
            "lying count"
        );
        let wrong = crate::codec::Frame::new(b'D', b"\0\0\0").unwrap();
        assert!(CopyResponse::from_frame(&wrong).is_err());
    }

    #[test]
    fn notification_round_trip() {
        let frame = built(|b| write::notification_response(b, 99, "jobs", "42"));
        assert_eq!(
            NotificationResponse::from_frame(&frame).unwrap(),
            NotificationResponse {
                process_id: 99,
                channel: "jobs",
                payload: "42"
            }
        );
        check_truncations(&frame, true, |b| NotificationResponse::from_body(b).is_ok());
    }
}
