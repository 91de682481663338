//! Query results: RowDescription, DataRow, CommandComplete,
//! ParameterDescription, FunctionCallResponse.

use crate::codec::error::CodecError;
use crate::codec::read::Reader;
use crate::codec::values::{Values, ValuesIter};

/// One column of a RowDescription.
///
/// The masking stage matches columns by `table_oid`/`column_attr` and
/// `type_oid`, so every field is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldDescription<'a> {
    /// Column label.
    pub name: &'a str,
    /// OID of the source table, or 0 if the column is computed.
    pub table_oid: u32,
    /// Attribute number in that table, or 0.
    pub column_attr: i16,
    /// OID of the column's type.
    pub type_oid: u32,
    /// `pg_type.typlen`; negative for variable-width types.
    pub type_size: i16,
    /// `pg_attribute.atttypmod`; -1 when none.
    pub type_modifier: i32,
    /// 0 text, 1 binary (always 0 in a Describe answer).
    pub format: i16,
}

/// Smallest wire size of a [`FieldDescription`]: an empty name (its NUL)
/// and 18 bytes of fixed fields.
const MIN_FIELD_LEN: usize = 19;

/// RowDescription ('T'): the shape of the rows that follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowDescription<'a> {
    /// Columns in order.
    pub fields: Vec<FieldDescription<'a>>,
}

impl<'a> RowDescription<'a> {
    /// Reads a RowDescription body, checking the column count against the
    /// body before allocating.
    pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, "RowDescription message");
        let count = usize::from(r.u16()?);
        r.ensure_count(count, MIN_FIELD_LEN, "column count exceeds message length")?;
        let mut fields = Vec::with_capacity(count);
        for _ in 0..count {
            fields.push(FieldDescription {
                name: r.cstr()?,
                table_oid: r.u32()?,
                column_attr: r.i16()?,
                type_oid: r.u32()?,
                type_size: r.i16()?,
                type_modifier: r.i32()?,
                format: r.i16()?,
            });
        }
        r.finish()?;
        Ok(Self { fields })
    }
}
view!(RowDescription, b'T');

/// DataRow ('D'): one result row, values read in place.
///
/// The hottest message on the way back: parsing validates the column count
/// and every length without allocating, and iteration yields slices of the
/// frame. `Debug` shows the count only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataRow<'a> {
    /// Column values; `None` is NULL.
    pub values: Values<'a>,
}

impl<'a> DataRow<'a> {
    /// Reads a DataRow body, rejecting a column count or value length that
    /// exceeds the body.
    pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, "DataRow message");
        let count = r.u16()?;
        let values = Values::read(&mut r, count, "column count exceeds message length")?;
        r.finish()?;
        Ok(Self { values })
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Column values in order; `None` is NULL.
    pub fn iter(&self) -> ValuesIter<'a> {
        self.values.iter()
    }
}
view!(DataRow, b'D');

/// CommandComplete ('C'): a command finished; the tag says which and how
/// many rows, which the audit records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandComplete<'a> {
    /// Command tag, e.g. `SELECT 3` or `INSERT 0 1`.
    pub tag: &'a str,
}

impl<'a> CommandComplete<'a> {
    /// Reads a CommandComplete body.
    pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, "CommandComplete message");
        let tag = r.cstr()?;
        r.finish()?;
        Ok(Self { tag })
    }

    /// Rows affected or returned, when the tag ends in a count.
    pub fn rows(&self) -> Option<u64> {
        let (_, last) = self.tag.rsplit_once(' ')?;
        last.parse().ok()
    }
}
view!(CommandComplete, b'C');

/// ParameterDescription ('t'): parameter types of a described statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParameterDescription {
    /// Type OID of each parameter.
    pub types: Vec<u32>,
}

impl ParameterDescription {
    /// Reads a ParameterDescription body, checking the count first.
    pub fn from_body(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, "ParameterDescription message");
        let count = usize::from(r.u16()?);
        r.ensure_count(count, 4, "parameter count exceeds message length")?;
        let mut types = Vec::with_capacity(count);
        for _ in 0..count {
            types.push(r.u32()?);
        }
        r.finish()?;
        Ok(Self { types })
    }
}
view!(owned ParameterDescription, b't');

/// FunctionCallResponse ('V'): the result of a fast-path FunctionCall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionCallResponse<'a> {
    /// The result; `None` is NULL.
    pub value: Option<&'a [u8]>,
}

impl<'a> FunctionCallResponse<'a> {
    /// Reads a FunctionCallResponse body.
    pub fn from_body(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body, "FunctionCallResponse message");
        let value = match r.i32()? {
            -1 => None,
            len => {
                let len = usize::try_from(len).map_err(|_| r.error("negative value length"))?;
                Some(r.bytes(len)?)
            }
        };
        r.finish()?;
        Ok(Self { value })
    }
}
view!(FunctionCallResponse, b'V');

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_support::{built, check_truncations};
    use crate::codec::write;

    fn field(name: &str, type_oid: u32) -> FieldDescription<'_> {
        FieldDescription {
            name,
            table_oid: 16384,
            column_attr: 2,
            type_oid,
            type_size: -1,
            type_modifier: -1,
            format: 0,
        }
    }

    #[test]
    fn row_description_round_trip() {
        let fields = [field("id", 23), field("", 25), field("émail", 25)];
        let frame = built(|b| write::row_description(b, &fields));
        assert_eq!(RowDescription::from_frame(&frame).unwrap().fields, fields);
        check_truncations(&frame, true, |b| RowDescription::from_body(b).is_ok());
        let empty = built(|b| write::row_description(b, &[]));
        assert!(
            RowDescription::from_frame(&empty)
                .unwrap()
                .fields
                .is_empty()
        );
    }

    #[test]
    fn row_description_with_lying_count_is_refused() {
        let mut body = vec![0x7f, 0xff];
        body.extend_from_slice(b"id\0");
        body.extend_from_slice(&[0; 18]);
        let err = RowDescription::from_body(&body).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed RowDescription message: column count exceeds message length"
        );
        // One column too few bytes, and one too many columns for the bytes.
        assert!(RowDescription::from_body(&[0, 1, 0, 0, 0]).is_err());
        let mut two = vec![0, 2];
        two.extend_from_slice(&[0; 19 * 2 - 1]);
        assert!(RowDescription::from_body(&two).is_err());
    }

    #[test]
    fn data_row_round_trip() {
        let values: [Option<&[u8]>; 4] = [Some(b"1"), None, Some(b""), Some(b"alice")];
        let frame = built(|b| write::data_row(b, values));
        let row = DataRow::from_frame(&frame).unwrap();
        assert_eq!(row.len(), 4);
        assert!(!row.is_empty());
        assert_eq!(row.iter().collect::<Vec<_>>(), values);
        assert_eq!(row.iter().len(), 4);
        assert!(!format!("{row:?}").contains("alice"));
        check_truncations(&frame, true, |b| DataRow::from_body(b).is_ok());
        let empty = built(|b| write::data_row(b, [None::<&[u8]>; 0]));
        assert!(DataRow::from_frame(&empty).unwrap().is_empty());
    }

    #[test]
    fn data_row_values_point_into_the_frame() {
        let frame = built(|b| write::data_row(b, [Some(&b"xyz"[..])]));
        let row = DataRow::from_frame(&frame).unwrap();
        let value = row.iter().next().unwrap().unwrap();
        let body = frame.body().as_ptr_range();
        assert!(body.contains(&value.as_ptr()), "zero-copy");
    }

    #[test]
    fn data_row_with_lying_counts_is_refused() {
        // 1000 columns claimed, 8 bytes present.
        let err = DataRow::from_body(b"\x03\xe8\0\0\0\0\0\0\0\0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed DataRow message: column count exceeds message length"
        );
        // A value longer than the body.
        let err = DataRow::from_body(b"\0\x01\0\0\0\x05abc").unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed DataRow message: value length exceeds message length"
        );
        // A huge value length.
        assert!(DataRow::from_body(b"\0\x01\x7f\xff\xff\xffabc").is_err());
        // Negative lengths other than -1.
        assert!(DataRow::from_body(b"\0\x01\x80\0\0\0").is_err());
        // Fewer columns than the bytes hold.
        assert!(DataRow::from_body(b"\0\x01\0\0\0\x01a\0\0\0\x01b").is_err());
    }

    #[test]
    fn command_complete_round_trip() {
        for (tag, rows) in [
            ("SELECT 3", Some(3)),
            ("INSERT 0 1", Some(1)),
            ("BEGIN", None),
        ] {
            let frame = built(|b| write::command_complete(b, tag));
            let cc = CommandComplete::from_frame(&frame).unwrap();
            assert_eq!(cc, CommandComplete { tag });
            assert_eq!(cc.rows(), rows);
            check_truncations(&frame, true, |b| CommandComplete::from_body(b).is_ok());
        }
    }

    #[test]
    fn parameter_description_round_trip() {
        let frame = built(|b| write::parameter_description(b, &[23, 25]));
        assert_eq!(
            ParameterDescription::from_frame(&frame).unwrap().types,
            [23, 25]
        );
        check_truncations(&frame, true, |b| ParameterDescription::from_body(b).is_ok());
        assert!(ParameterDescription::from_body(b"\xff\xff\0\0\0\x17").is_err());
    }

    #[test]
    fn function_call_response_round_trip() {
        for value in [Some(&b"\0\0\0\x2a"[..]), None] {
            let frame = built(|b| write::function_call_response(b, value));
            assert_eq!(
                FunctionCallResponse::from_frame(&frame).unwrap().value,
                value
            );
            check_truncations(&frame, true, |b| FunctionCallResponse::from_body(b).is_ok());
        }
        assert!(FunctionCallResponse::from_body(b"\0\0\0\x09ab").is_err());
    }
}
