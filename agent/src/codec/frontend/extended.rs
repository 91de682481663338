//! Extended-protocol messages other than Bind: Parse, Describe, Execute, Close.

use crate::codec::error::CodecError;
use crate::codec::read::Reader;

/// What a Describe or Close names: a prepared statement or a portal.
///
/// Exists so the invalid subtypes PostgreSQL rejects cannot be represented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// `S`: a prepared statement.
    Statement,
    /// `P`: a portal.
    Portal,
}

impl Target {
    /// The subtype for a byte, or `None` if it is neither `S` nor `P`.
    pub const fn from_u8(b: u8) -> Option<Self> {
        match b {
            b'S' => Some(Self::Statement),
            b'P' => Some(Self::Portal),
            _ => None,
        }
    }

    /// The byte on the wire.
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Statement => b'S',
            Self::Portal => b'P',
        }
    }
}

fn read_target(r: &mut Reader<'_>) -> Result<Target, CodecError> {
    let b = r.u8()?;
    Target::from_u8(b).ok_or_else(|| r.error("subtype is neither 'S' nor 'P'"))
}

/// Parse ('P'): prepare a statement; the proxy's entry point for analysing
/// extended-protocol SQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parse<'a> {
    /// Statement name; empty for the unnamed statement.
    pub name: &'a str,
    /// The statement text.
    pub sql: &'a str,
    /// Parameter type OIDs the client fixed (0 = let the server infer).
    pub param_types: Vec<u32>,
}

impl<'a> Parse<'a> {
    /// Reads a Parse body, checking the type count against the body before
    /// allocating for it.
    pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, "Parse message");
        let name = r.cstr()?;
        let sql = r.cstr()?;
        let count = usize::from(r.u16()?);
        r.ensure_count(count, 4, "parameter type count exceeds message length")?;
        let mut param_types = Vec::with_capacity(count);
        for _ in 0..count {
            param_types.push(r.u32()?);
        }
        r.finish()?;
        Ok(Self {
            name,
            sql,
            param_types,
        })
    }
}
view!(Parse, b'P');

/// Describe ('D'): ask for a statement's or portal's parameter and row shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Describe<'a> {
    /// Statement or portal.
    pub kind: Target,
    /// Its name; empty for the unnamed one.
    pub name: &'a str,
}

impl<'a> Describe<'a> {
    /// Reads a Describe body.
    pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, "Describe message");
        let kind = read_target(&mut r)?;
        let name = r.cstr()?;
        r.finish()?;
        Ok(Self { kind, name })
    }
}
view!(Describe, b'D');

/// Execute ('E'): run a bound portal; where the proxy enforces a decision
/// for the extended protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Execute<'a> {
    /// Portal name; empty for the unnamed portal.
    pub portal: &'a str,
    /// Row limit; 0 (or negative) means no limit.
    pub max_rows: i32,
}

impl<'a> Execute<'a> {
    /// Reads an Execute body.
    pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, "Execute message");
        let portal = r.cstr()?;
        let max_rows = r.i32()?;
        r.finish()?;
        Ok(Self { portal, max_rows })
    }
}
view!(Execute, b'E');

/// Close ('C'): drop a statement or portal, so the proxy can forget what it
/// tracked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Close<'a> {
    /// Statement or portal.
    pub kind: Target,
    /// Its name; empty for the unnamed one.
    pub name: &'a str,
}

impl<'a> Close<'a> {
    /// Reads a Close body.
    pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, "Close message");
        let kind = read_target(&mut r)?;
        let name = r.cstr()?;
        r.finish()?;
        Ok(Self { kind, name })
    }
}
view!(Close, b'C');

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_support::{built, check_truncations};
    use crate::codec::write;

    #[test]
    fn parse_round_trip() {
        let types = [23, 0, 25];
        let frame = built(|b| write::parse(b, "stmt1", "select $1, $2, $3", &types));
        let expected = Parse {
            name: "stmt1",
            sql: "select $1, $2, $3",
            param_types: types.to_vec(),
        };
        assert_eq!(Parse::from_frame(&frame).unwrap(), expected);
        check_truncations(&frame, true, |b| Parse::from_body(b).is_ok());
        let frame = built(|b| write::parse(b, "", "select 1", &[]));
        assert_eq!(
            Parse::from_frame(&frame).unwrap().param_types,
            Vec::<u32>::new()
        );
    }

    #[test]
    fn parse_with_lying_count_is_refused() {
        let err = Parse::from_body(b"\0select 1\0\xff\xff\0\0\0\x17").unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed Parse message: parameter type count exceeds message length"
        );
        assert!(
            Parse::from_body(b"\0select 1\0\0\x01\0\0\0\x17\0").is_err(),
            "trailing"
        );
    }

    #[test]
    fn describe_round_trip() {
        for kind in [Target::Statement, Target::Portal] {
            let frame = built(|b| write::describe(b, kind, "x"));
            assert_eq!(
                Describe::from_frame(&frame).unwrap(),
                Describe { kind, name: "x" }
            );
            check_truncations(&frame, true, |b| Describe::from_body(b).is_ok());
        }
        assert!(Describe::from_body(b"Qx\0").is_err(), "bad subtype");
    }

    #[test]
    fn execute_round_trip() {
        let frame = built(|b| write::execute(b, "p1", 100));
        assert_eq!(
            Execute::from_frame(&frame).unwrap(),
            Execute {
                portal: "p1",
                max_rows: 100
            }
        );
        check_truncations(&frame, true, |b| Execute::from_body(b).is_ok());
    }

    #[test]
    fn close_round_trip() {
        for kind in [Target::Statement, Target::Portal] {
            let frame = built(|b| write::close(b, kind, ""));
            assert_eq!(Close::from_frame(&frame).unwrap(), Close { kind, name: "" });
            check_truncations(&frame, true, |b| Close::from_body(b).is_ok());
        }
        assert!(Close::from_body(b"\0\0").is_err(), "bad subtype");
    }
}
