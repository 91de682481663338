//! Bind ('B'): parameters for a prepared statement.

use crate::codec::error::CodecError;
use crate::codec::read::Reader;
use crate::codec::values::{FormatCodes, Values};

/// Bind: creates a portal from a prepared statement and parameter values.
///
/// The proxy needs the portal and statement names to tie a later Execute to
/// the analysed statement. The rest stays in the frame's bytes: the codes
/// and values are validated once here (every count against the body, before
/// anything is walked) and then read in place. `Debug` shows value counts
/// only, since parameters are literals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bind<'a> {
    /// Portal to create; empty for the unnamed portal.
    pub portal: &'a str,
    /// Prepared statement to bind; empty for the unnamed statement.
    pub statement: &'a str,
    /// Parameter format codes: none, one for all, or one per parameter.
    pub param_formats: FormatCodes<'a>,
    /// Parameter values; `None` is NULL.
    pub params: Values<'a>,
    /// Result column format codes: none, one for all, or one per column.
    pub result_formats: FormatCodes<'a>,
}

impl<'a> Bind<'a> {
    /// Reads a Bind body, rejecting counts that exceed the body and a
    /// parameter format count PostgreSQL would reject.
    pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, "Bind message");
        let portal = r.cstr()?;
        let statement = r.cstr()?;
        let param_formats =
            FormatCodes::read(&mut r, "parameter format count exceeds message length")?;
        let count = r.u16()?;
        let params = Values::read(&mut r, count, "parameter count exceeds message length")?;
        if param_formats.len() > 1 && param_formats.len() != params.len() {
            return Err(r.error("parameter format count does not match parameter count"));
        }
        let result_formats =
            FormatCodes::read(&mut r, "result format count exceeds message length")?;
        r.finish()?;
        Ok(Self {
            portal,
            statement,
            param_formats,
            params,
            result_formats,
        })
    }

    /// The format (0 text, 1 binary) of parameter `i`, applying the
    /// protocol's none/one/each rule; `None` past the last parameter.
    pub fn param_format(&self, i: usize) -> Option<i16> {
        if i < self.params.len() {
            self.param_formats.format_of(i)
        } else {
            None
        }
    }
}
view!(Bind, b'B');

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_support::{built, check_truncations};
    use crate::codec::write;

    #[test]
    fn round_trip() {
        let params: [Option<&[u8]>; 3] = [Some(b"42"), None, Some(b"")];
        let frame = built(|b| write::bind(b, "portal", "stmt", &[0, 1, 0], params, &[1]));
        let bind = Bind::from_frame(&frame).unwrap();
        assert_eq!((bind.portal, bind.statement), ("portal", "stmt"));
        assert_eq!(bind.param_formats.iter().collect::<Vec<_>>(), [0, 1, 0]);
        assert_eq!(bind.params.iter().collect::<Vec<_>>(), params);
        assert_eq!(bind.result_formats.iter().collect::<Vec<_>>(), [1]);
        assert_eq!(bind.param_format(1), Some(1));
        assert_eq!(bind.param_format(3), None);
        assert!(
            !format!("{bind:?}").contains("42"),
            "values stay out of Debug"
        );
        check_truncations(&frame, true, |b| Bind::from_body(b).is_ok());
    }

    #[test]
    fn format_rule() {
        let none = built(|b| write::bind(b, "", "", &[], [Some(&b"1"[..]); 2], &[]));
        let bind = Bind::from_frame(&none).unwrap();
        assert_eq!(
            (bind.param_format(0), bind.param_format(1)),
            (Some(0), Some(0))
        );
        let one = built(|b| write::bind(b, "", "", &[1], [Some(&b"1"[..]); 2], &[]));
        let bind = Bind::from_frame(&one).unwrap();
        assert_eq!(
            (bind.param_format(0), bind.param_format(1)),
            (Some(1), Some(1))
        );
        let empty = built(|b| write::bind(b, "", "", &[], [None::<&[u8]>; 0], &[]));
        assert!(Bind::from_frame(&empty).unwrap().params.is_empty());
    }

    #[test]
    fn lying_counts_are_refused() {
        // 65535 parameters in a 7-byte remainder.
        let err = Bind::from_body(b"\0\0\0\0\xff\xff\0\0\0\x01x\0\0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed Bind message: parameter count exceeds message length"
        );
        // Format count larger than the body.
        assert!(Bind::from_body(b"\0\0\x7f\xff\0\0").is_err());
        // A value length past the end.
        assert!(Bind::from_body(b"\0\0\0\0\0\x01\0\0\x10\0ab\0\0").is_err());
        // A negative length other than -1.
        assert!(Bind::from_body(b"\0\0\0\0\0\x01\xff\xff\xff\xfe\0\0").is_err());
        // Two format codes for three parameters.
        let mut body = b"\0\0\0\x02\0\0\0\x01\0\x03".to_vec();
        body.extend_from_slice(&[0xff; 12]);
        body.extend_from_slice(b"\0\0");
        let err = Bind::from_body(&body).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        // Result format count too large.
        assert!(Bind::from_body(b"\0\0\0\0\0\0\0\x09\0\0").is_err());
    }
}
