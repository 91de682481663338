//! COPY messages that both directions send with the same layout.

use super::error::CodecError;
use super::read::Reader;

/// CopyData ('d'): a chunk of COPY data, either direction.
///
/// Exists so COPY streams can be relayed or inspected without a copy;
/// `Debug` shows the length only, since the chunk holds row values.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CopyData<'a> {
    /// The chunk, in whatever format the COPY uses.
    pub data: &'a [u8],
}

impl<'a> CopyData<'a> {
    /// Reads a CopyData body; every byte is data.
    pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
        Ok(Self { data: body })
    }
}
view!(CopyData, b'd');

impl std::fmt::Debug for CopyData<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyData")
            .field("len", &self.data.len())
            .finish_non_exhaustive()
    }
}

/// CopyFail ('f'): the client aborts a COPY FROM STDIN with a reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyFail<'a> {
    /// Why the client gave up; becomes the server's error message.
    pub message: &'a str,
}

impl<'a> CopyFail<'a> {
    /// Reads a CopyFail body: one string.
    pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, "CopyFail message");
        let message = r.cstr()?;
        r.finish()?;
        Ok(Self { message })
    }
}
view!(CopyFail, b'f');

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_support::{built, check_truncations};
    use crate::codec::write;

    #[test]
    fn copy_data_round_trip() {
        let frame = built(|b| write::copy_data(b, b"1\talice\n"));
        assert_eq!(
            CopyData::from_frame(&frame).unwrap(),
            CopyData {
                data: b"1\talice\n"
            }
        );
        assert!(!format!("{:?}", CopyData::from_frame(&frame).unwrap()).contains("alice"));
        check_truncations(&frame, false, |b| CopyData::from_body(b).is_ok());
    }

    #[test]
    fn copy_fail_round_trip() {
        let frame = built(|b| write::copy_fail(b, "disk full"));
        assert_eq!(
            CopyFail::from_frame(&frame).unwrap(),
            CopyFail {
                message: "disk full"
            }
        );
        check_truncations(&frame, true, |b| CopyFail::from_body(b).is_ok());
        assert!(CopyFail::from_body(b"a\0b\0").is_err(), "trailing bytes");
        assert!(CopyData::from_frame(&frame).is_err(), "wrong tag");
    }
}
