//! FunctionCall ('F'): the fast-path interface.

use crate::codec::error::CodecError;
use crate::codec::read::Reader;
use crate::codec::values::{FormatCodes, Values};

/// FunctionCall: calls a function by OID without any SQL.
///
/// Exists so the proxy can see (and normally refuse) calls that would
/// otherwise bypass statement analysis, e.g. large-object functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionCall<'a> {
    /// OID of the function to call.
    pub function_oid: u32,
    /// Argument format codes: none, one for all, or one per argument.
    pub arg_formats: FormatCodes<'a>,
    /// Argument values; `None` is NULL.
    pub args: Values<'a>,
    /// Format of the result.
    pub result_format: i16,
}

impl<'a> FunctionCall<'a> {
    /// Reads a FunctionCall body, checking every count against the body.
    pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, "FunctionCall message");
        let function_oid = r.u32()?;
        let arg_formats =
            FormatCodes::read(&mut r, "argument format count exceeds message length")?;
        let count = r.u16()?;
        let args = Values::read(&mut r, count, "argument count exceeds message length")?;
        if arg_formats.len() > 1 && arg_formats.len() != args.len() {
            return Err(r.error("argument format count does not match argument count"));
        }
        let result_format = r.i16()?;
        r.finish()?;
        Ok(Self {
            function_oid,
            arg_formats,
            args,
            result_format,
        })
    }
}
view!(FunctionCall, b'F');

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_support::{built, check_truncations};
    use crate::codec::write;

    #[test]
    fn round_trip() {
        let args: [Option<&[u8]>; 2] = [Some(b"\0\0\0\x07"), None];
        let frame = built(|b| write::function_call(b, 764, &[1], args, 1));
        let call = FunctionCall::from_frame(&frame).unwrap();
        assert_eq!(call.function_oid, 764);
        assert_eq!(call.arg_formats.iter().collect::<Vec<_>>(), [1]);
        assert_eq!(call.args.iter().collect::<Vec<_>>(), args);
        assert_eq!(call.result_format, 1);
        check_truncations(&frame, true, |b| FunctionCall::from_body(b).is_ok());
    }

    #[test]
    fn lying_counts_are_refused() {
        assert!(FunctionCall::from_body(b"\0\0\0\x01\0\0\x40\0\0\0").is_err());
        assert!(FunctionCall::from_body(b"\0\0\0\x01\0\x02\0\0\0\0\0\x01\0\0\0\0\0\0").is_err());
    }
}
