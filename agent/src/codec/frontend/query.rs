//! Query ('Q'): the simple query protocol.

use crate::codec::error::CodecError;
use crate::codec::read::Reader;

/// Simple-protocol query: one string that may hold several statements.
///
/// The proxy sends `sql` to analysis as is; PostgreSQL reads it up to the
/// first NUL and rejects anything after it, and so does this view, so the
/// statement analysed is the statement run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query<'a> {
    /// The query text.
    pub sql: &'a str,
}

impl<'a> Query<'a> {
    /// Reads a Query body: one string, nothing after it.
    pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, "Query message");
        let sql = r.cstr()?;
        r.finish()?;
        Ok(Self { sql })
    }
}
view!(Query, b'Q');

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Frame;
    use crate::codec::test_support::{built, check_truncations};
    use crate::codec::write;

    #[test]
    fn round_trip() {
        for sql in ["select 1", "", "select 'é'; select 2"] {
            let frame = built(|b| write::query(b, sql));
            assert_eq!(Query::from_frame(&frame).unwrap(), Query { sql });
            check_truncations(&frame, true, |b| Query::from_body(b).is_ok());
        }
    }

    #[test]
    fn hidden_statement_after_nul_is_refused() {
        let frame = Frame::new(b'Q', b"select 1\0drop table t\0").unwrap();
        assert!(Query::from_frame(&frame).is_err());
        assert!(Query::from_body(b"select \xff\0").is_err(), "not UTF-8");
        let mut buf = bytes::BytesMut::new();
        assert!(write::query(&mut buf, "select 1\0drop").is_err());
        assert!(buf.is_empty(), "a failed builder leaves nothing behind");
    }

    #[test]
    fn wrong_tag_is_refused() {
        let frame = Frame::new(b'P', b"select 1\0").unwrap();
        let err = Query::from_frame(&frame).unwrap_err();
        assert!(matches!(
            err,
            CodecError::UnexpectedTag {
                expected: b'Q',
                found: b'P'
            }
        ));
    }
}
