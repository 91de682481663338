//! Zero-copy lists shared by several messages: format codes and
//! length-prefixed values (DataRow columns, Bind parameters, FunctionCall
//! arguments).
//!
//! Both are validated once when the message is parsed and then read in place,
//! so iterating needs no allocation and cannot fail.

use std::fmt;
use std::iter::FusedIterator;

use super::error::CodecError;
use super::read::Reader;

/// Format codes (Int16 each: 0 text, 1 binary) as they arrived, read in place.
///
/// Exists so Bind, FunctionCall and the Copy responses can expose their codes
/// without allocating a `Vec` per message.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct FormatCodes<'a> {
    // INVARIANT: `raw.len()` is even; each pair of bytes is one code.
    raw: &'a [u8],
}

impl<'a> FormatCodes<'a> {
    /// Reads an Int16 count and that many codes, checking the count first.
    pub(crate) fn read(r: &mut Reader<'a>, too_many: &'static str) -> Result<Self, CodecError> {
        let count = usize::from(r.u16()?);
        r.ensure_count(count, 2, too_many)?;
        let raw = r.bytes(count.saturating_mul(2))?;
        Ok(Self { raw })
    }

    /// Number of codes.
    pub fn len(&self) -> usize {
        self.raw.len() / 2
    }

    /// Whether there are no codes (everything is text).
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The `i`-th code as sent.
    pub fn get(&self, i: usize) -> Option<i16> {
        self.iter().nth(i)
    }

    /// The format of item `i` under the protocol's rule: no codes means all
    /// text, one code applies to every item, otherwise one code per item.
    pub fn format_of(&self, i: usize) -> Option<i16> {
        match self.len() {
            0 => Some(0),
            1 => self.get(0),
            _ => self.get(i),
        }
    }

    /// The codes in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = i16> + 'a {
        self.raw.chunks_exact(2).map(|c| match c {
            [a, b] => i16::from_be_bytes([*a, *b]),
            _ => 0,
        })
    }
}

/// A list of nullable, length-prefixed values (Int32 length, -1 for NULL,
/// then the bytes), validated and read in place.
///
/// This is the zero-copy core of DataRow, Bind and FunctionCall: the proxy can
/// look at (or mask) a column without copying the row. `Debug` shows the count
/// only, so row values and bound literals never reach a log by accident.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Values<'a> {
    count: u16,
    // INVARIANT: `raw` holds exactly `count` entries, each an Int32 length
    // that is -1 or non-negative followed by that many bytes.
    raw: &'a [u8],
}

impl<'a> Values<'a> {
    /// Reads `count` values, rejecting a count that cannot fit in the rest of
    /// the message (each value takes at least 4 bytes) before walking it.
    pub(crate) fn read(
        r: &mut Reader<'a>,
        count: u16,
        too_many: &'static str,
    ) -> Result<Self, CodecError> {
        r.ensure_count(usize::from(count), 4, too_many)?;
        let all = r.peek();
        let mut walk = r.sub(all);
        for _ in 0..count {
            match walk.i32().map_err(|_| walk.error(too_many))? {
                -1 => {}
                len => {
                    let len =
                        usize::try_from(len).map_err(|_| walk.error("negative value length"))?;
                    walk.bytes(len)
                        .map_err(|_| walk.error("value length exceeds message length"))?;
                }
            }
        }
        let used = all.len().saturating_sub(walk.remaining());
        let raw = r.bytes(used)?;
        Ok(Self { count, raw })
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The values in order; `None` is SQL NULL.
    pub fn iter(&self) -> ValuesIter<'a> {
        ValuesIter {
            left: self.count,
            raw: self.raw,
        }
    }
}

impl fmt::Debug for Values<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Values")
            .field("len", &self.count)
            .finish_non_exhaustive()
    }
}

impl<'a> IntoIterator for Values<'a> {
    type Item = Option<&'a [u8]>;
    type IntoIter = ValuesIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over [`Values`]; yields `None` for SQL NULL.
#[derive(Clone, Debug)]
pub struct ValuesIter<'a> {
    left: u16,
    raw: &'a [u8],
}

impl<'a> Iterator for ValuesIter<'a> {
    type Item = Option<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        self.left = self.left.checked_sub(1)?;
        let (len, rest) = self.raw.split_first_chunk::<4>()?;
        let len = i32::from_be_bytes(*len);
        let Ok(len) = usize::try_from(len) else {
            self.raw = rest;
            return Some(None);
        };
        let (value, rest) = rest.split_at_checked(len)?;
        self.raw = rest;
        Some(Some(value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.left), Some(usize::from(self.left)))
    }
}

impl ExactSizeIterator for ValuesIter<'_> {}
impl FusedIterator for ValuesIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_codes_follow_the_none_one_each_rule() {
        let mut r = Reader::new(b"\0\0", "m");
        let none = FormatCodes::read(&mut r, "x").unwrap();
        assert_eq!((none.len(), none.format_of(7)), (0, Some(0)));
        let mut r = Reader::new(b"\0\x01\0\x01", "m");
        let one = FormatCodes::read(&mut r, "x").unwrap();
        assert_eq!((one.format_of(0), one.format_of(9)), (Some(1), Some(1)));
        let mut r = Reader::new(b"\0\x02\0\x01\0\0", "m");
        let each = FormatCodes::read(&mut r, "x").unwrap();
        assert_eq!(each.iter().collect::<Vec<_>>(), [1, 0]);
        assert_eq!((each.format_of(1), each.format_of(2)), (Some(0), None));
        assert!(FormatCodes::read(&mut Reader::new(b"\0\x02\0\x01", "m"), "x").is_err());
    }

    #[test]
    fn values_iterate_in_place() {
        let body = b"\0\0\0\x02hi\xff\xff\xff\xff\0\0\0\0tail";
        let mut r = Reader::new(body, "m");
        let values = Values::read(&mut r, 3, "too many").unwrap();
        assert_eq!(r.rest(), b"tail", "only the values are consumed");
        let mut it = values.iter();
        assert_eq!(it.len(), 3);
        assert_eq!(it.next(), Some(Some(&b"hi"[..])));
        assert_eq!(it.next(), Some(None));
        assert_eq!(it.next(), Some(Some(&b""[..])));
        assert_eq!((it.next(), it.next()), (None, None));
        assert_eq!(format!("{values:?}"), "Values { len: 3, .. }");
        let err = Values::read(&mut Reader::new(b"\0\0\0\x04abcd", "m"), 2, "too many");
        assert!(matches!(
            err,
            Err(CodecError::Malformed {
                reason: "too many",
                ..
            })
        ));
    }
}
