//! Masking rows of `COPY ... TO STDOUT` in text or csv format.
//!
//! PostgreSQL sends one row per CopyData. Fields whose column is passed
//! through are copied as raw byte slices; only fields that are masked or
//! scanned are decoded (into a per-thread scratch buffer that is reused, so
//! a row allocates nothing beyond the output) and re-encoded. The parser
//! assumes an ASCII-safe client encoding (UTF-8, LATIN*, ...): in SJIS, BIG5,
//! GBK, UHC or GB18030 a trail byte can equal a delimiter or backslash.

use std::cell::RefCell;

use bytes::{BufMut, BytesMut};

use super::detect::Layout;
use super::method::put_masked_text;
use super::rewrite::{MaskStats, Op, RewriteError, RowMasker, patch_i32};
use crate::codec::HEADER_LEN;

/// CopyData's type byte.
const COPY_DATA: u8 = b'd';

/// Options of a text or csv `COPY ... TO STDOUT`, as the statement set them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyText {
    /// `FORMAT csv` rather than text.
    pub csv: bool,
    /// `DELIMITER`: tab for text, comma for csv.
    pub delimiter: u8,
    /// `QUOTE` (csv only): `"`.
    pub quote: u8,
    /// `ESCAPE` (csv only): defaults to the quote character.
    pub escape: u8,
    /// `NULL`: `\N` for text, empty for csv.
    pub null: Vec<u8>,
}

impl CopyText {
    /// PostgreSQL's defaults for `FORMAT text`.
    pub fn text() -> Self {
        Self {
            csv: false,
            delimiter: b'\t',
            quote: b'"',
            escape: b'"',
            null: b"\\N".to_vec(),
        }
    }

    /// PostgreSQL's defaults for `FORMAT csv`.
    pub fn csv() -> Self {
        Self {
            csv: true,
            delimiter: b',',
            quote: b'"',
            escape: b'"',
            null: Vec::new(),
        }
    }

    /// The checks PostgreSQL makes on these options, so that parsing is
    /// unambiguous.
    fn validate(&self) -> Result<(), RewriteError> {
        let bad = |why| Err(RewriteError::CopyOptions(why));
        if matches!(self.delimiter, b'\n' | b'\r') {
            return bad("delimiter cannot be newline or carriage return");
        }
        if self.null.iter().any(|&b| matches!(b, b'\n' | b'\r')) {
            return bad("null string cannot contain newline or carriage return");
        }
        if self.null.contains(&self.delimiter) {
            return bad("delimiter must not appear in the null string");
        }
        if self.csv {
            if self.quote == self.delimiter {
                return bad("delimiter and quote must be different");
            }
            if self.null.contains(&self.quote) {
                return bad("quote must not appear in the null string");
            }
        } else if b"\\.abcdefghijklmnopqrstuvwxyz0123456789".contains(&self.delimiter) {
            return bad("text delimiter cannot be a backslash, dot, lowercase letter or digit");
        }
        Ok(())
    }
}

impl Default for CopyText {
    fn default() -> Self {
        Self::text()
    }
}

impl RowMasker {
    /// Rewrites one CopyData payload of a `COPY ... TO STDOUT` in text or
    /// csv format (one row, with its line ending, which is kept), appending
    /// a complete CopyData message to `out`. A header row carries only
    /// column names and should be relayed as is. On error `out` is left as
    /// it was.
    pub fn copy_row(
        &self,
        data: &[u8],
        options: &CopyText,
        out: &mut BytesMut,
    ) -> Result<MaskStats, RewriteError> {
        options.validate()?;
        let (line, eol) = split_eol(data);
        let start = out.len();
        out.reserve(data.len().saturating_add(HEADER_LEN));
        out.put_u8(COPY_DATA);
        out.put_i32(0);
        let result =
            with_scratch(|value, masked| self.copy_fields(line, options, out, value, masked))
                .and_then(|stats| {
                    out.put_slice(eol);
                    let len = out.len().saturating_sub(start).saturating_sub(1);
                    let len = i32::try_from(len).map_err(|_| RewriteError::TooLong)?;
                    patch_i32(out, start.saturating_add(1), len);
                    Ok(stats)
                });
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn copy_fields(
        &self,
        line: &[u8],
        opts: &CopyText,
        out: &mut BytesMut,
        value: &mut Vec<u8>,
        masked: &mut Vec<u8>,
    ) -> Result<MaskStats, RewriteError> {
        let mut stats = MaskStats::default();
        let expected = self.copy_ops.len();
        if expected == 0 && line.is_empty() {
            return Ok(stats);
        }
        let mut pos = 0;
        let mut column = 0;
        loop {
            let end = field_end(line, pos, opts)?;
            let raw = line.get(pos..end).unwrap_or_default();
            let Some(&op) = self.copy_ops.get(column) else {
                return Err(RewriteError::ColumnCount {
                    expected,
                    found: count_fields(line, opts),
                });
            };
            if column > 0 {
                out.put_u8(opts.delimiter);
            }
            self.copy_field(op, column, raw, opts, out, value, masked, &mut stats);
            column += 1;
            if end >= line.len() {
                break;
            }
            pos = end.saturating_add(1);
        }
        if column != expected {
            return Err(RewriteError::ColumnCount {
                expected,
                found: column,
            });
        }
        Ok(stats)
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the per-row state is threaded through without a struct per field"
    )]
    fn copy_field(
        &self,
        op: Op,
        column: usize,
        raw: &[u8],
        opts: &CopyText,
        out: &mut BytesMut,
        value: &mut Vec<u8>,
        masked: &mut Vec<u8>,
        stats: &mut MaskStats,
    ) {
        // The null string is matched before any unescaping, and in csv
        // only unquoted (the null string cannot hold a quote).
        if op == Op::Copy || raw == opts.null.as_slice() {
            out.put_slice(raw);
            return;
        }
        let decoded = decode(raw, opts, value);
        masked.clear();
        match op {
            Op::Copy => out.put_slice(raw),
            Op::Null => {
                out.put_slice(&opts.null);
                stats.masked_at(column);
            }
            Op::Text {
                method,
                single_byte,
            } => {
                put_masked_text(method, decoded, &self.key, single_byte, masked);
                encode(masked, opts, self.copy_ops.len() == 1, out);
                stats.masked_at(column);
            }
            Op::Detect(layout) => {
                let hits = self.detectors.redact_layout(decoded, layout, masked);
                self.put_detected(hits, column, raw, masked, opts, out, stats);
            }
            Op::DetectJsonb => {
                let hits = self.detectors.redact_layout(decoded, Layout::Json, masked);
                self.put_detected(hits, column, raw, masked, opts, out, stats);
            }
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the per-row state is threaded through without a struct per field"
    )]
    fn put_detected(
        &self,
        hits: usize,
        column: usize,
        raw: &[u8],
        masked: &[u8],
        opts: &CopyText,
        out: &mut BytesMut,
        stats: &mut MaskStats,
    ) {
        if hits == 0 {
            out.put_slice(raw);
        } else {
            encode(masked, opts, self.copy_ops.len() == 1, out);
            stats.detected_at(column);
        }
    }
}

/// Splits off the line ending (`\n` or `\r\n`; none if absent).
fn split_eol(data: &[u8]) -> (&[u8], &[u8]) {
    let cut = if data.ends_with(b"\r\n") {
        2
    } else if data.ends_with(b"\n") {
        1
    } else {
        0
    };
    let at = data.len().saturating_sub(cut);
    data.split_at_checked(at).unwrap_or((data, b""))
}

/// Index of the delimiter ending the field that starts at `pos` (or the
/// line's end). In text format a backslash escapes the next byte, so an
/// escaped delimiter (`\` and the delimiter) is data; in csv a delimiter
/// inside quotes is data.
pub(super) fn field_end(line: &[u8], pos: usize, opts: &CopyText) -> Result<usize, RewriteError> {
    let mut i = pos;
    if !opts.csv {
        while let Some(&b) = line.get(i) {
            if b == b'\\' {
                i = i.saturating_add(2);
            } else if b == opts.delimiter {
                return Ok(i);
            } else {
                i += 1;
            }
        }
        return Ok(line.len());
    }
    let mut quoted = false;
    while let Some(&b) = line.get(i) {
        if quoted {
            if b == opts.escape
                && line
                    .get(i.saturating_add(1))
                    .is_some_and(|&n| n == opts.quote || n == opts.escape)
            {
                i = i.saturating_add(2);
                continue;
            }
            if b == opts.quote {
                quoted = false;
            }
        } else if b == opts.delimiter {
            return Ok(i);
        } else if b == opts.quote {
            quoted = true;
        }
        i += 1;
    }
    if quoted {
        return Err(RewriteError::Copy("unterminated quoted field"));
    }
    Ok(line.len())
}

/// Number of fields in a line, for an error message.
fn count_fields(line: &[u8], opts: &CopyText) -> usize {
    let mut count = 0;
    let mut pos = 0;
    while let Ok(end) = field_end(line, pos, opts) {
        count += 1;
        if end >= line.len() {
            break;
        }
        pos = end.saturating_add(1);
    }
    count
}

/// The value of a raw field: the field itself when it has nothing to
/// unescape, else its unescaped bytes in `buf`.
pub(super) fn decode<'a>(raw: &'a [u8], opts: &CopyText, buf: &'a mut Vec<u8>) -> &'a [u8] {
    buf.clear();
    if opts.csv {
        if !raw.contains(&opts.quote) {
            return raw;
        }
        decode_csv(raw, opts, buf);
    } else {
        if !raw.contains(&b'\\') {
            return raw;
        }
        decode_text(raw, buf);
    }
    buf
}

/// Undoes text-format escapes: `\b \f \n \r \t \v`, octal `\NNN`, hex
/// `\xHH`, and a backslash before any other byte.
fn decode_text(raw: &[u8], buf: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        i += 1;
        if b != b'\\' {
            buf.push(b);
            continue;
        }
        let Some(&c) = raw.get(i) else {
            buf.push(b'\\');
            break;
        };
        i += 1;
        match c {
            b'b' => buf.push(0x08),
            b'f' => buf.push(0x0c),
            b'n' => buf.push(b'\n'),
            b'r' => buf.push(b'\r'),
            b't' => buf.push(b'\t'),
            b'v' => buf.push(0x0b),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                buf.push((v & 0xff) as u8);
            }
            b'x' => match raw.get(i).and_then(|&d| hex_digit(d)) {
                Some(hi) => {
                    i += 1;
                    let mut v = hi;
                    if let Some(lo) = raw.get(i).and_then(|&d| hex_digit(d)) {
                        v = v * 16 + lo;
                        i += 1;
                    }
                    buf.push(v);
                }
                None => buf.push(b'x'),
            },
            other => buf.push(other),
        }
    }
}

fn hex_digit(d: u8) -> Option<u8> {
    match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        b'A'..=b'F' => Some(d - b'A' + 10),
        _ => None,
    }
}

/// Undoes csv quoting: quote characters open and close quoted sections;
/// inside them the escape character makes a following quote or escape
/// character literal.
fn decode_csv(raw: &[u8], opts: &CopyText, buf: &mut Vec<u8>) {
    let mut quoted = false;
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        i += 1;
        if quoted {
            if b == opts.escape
                && let Some(&n) = raw.get(i).filter(|&&n| n == opts.quote || n == opts.escape)
            {
                buf.push(n);
                i += 1;
                continue;
            }
            if b == opts.quote {
                quoted = false;
            } else {
                buf.push(b);
            }
        } else if b == opts.quote {
            quoted = true;
        } else {
            buf.push(b);
        }
    }
}

/// Appends a (non-NULL) value in the COPY's format.
pub(super) fn encode(value: &[u8], opts: &CopyText, single_column: bool, out: &mut BytesMut) {
    if opts.csv {
        encode_csv(value, opts, single_column, out);
    } else {
        encode_text(value, opts.delimiter, out);
    }
}

/// Text format: backslash, the delimiter and control characters escaped.
pub(super) fn encode_text(value: &[u8], delimiter: u8, out: &mut BytesMut) {
    let mut copied = 0;
    for (i, &b) in value.iter().enumerate() {
        let escape = match b {
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0x0b => b'v',
            d if d == delimiter => d,
            _ => continue,
        };
        out.put_slice(value.get(copied..i).unwrap_or_default());
        out.put_u8(b'\\');
        out.put_u8(escape);
        copied = i + 1;
    }
    out.put_slice(value.get(copied..).unwrap_or_default());
}

/// Csv: quoted when it would otherwise read differently (as NULL, as the
/// end-of-data marker, or split), with quote and escape characters escaped.
fn encode_csv(value: &[u8], opts: &CopyText, single_column: bool, out: &mut BytesMut) {
    let needs_quotes = value == opts.null.as_slice()
        || (single_column && value == b"\\.")
        || value
            .iter()
            .any(|&b| b == opts.delimiter || b == opts.quote || b == b'\n' || b == b'\r');
    if !needs_quotes {
        out.put_slice(value);
        return;
    }
    out.put_u8(opts.quote);
    let mut copied = 0;
    for (i, &b) in value.iter().enumerate() {
        if b == opts.quote || b == opts.escape {
            out.put_slice(value.get(copied..i).unwrap_or_default());
            out.put_u8(opts.escape);
            copied = i;
        }
    }
    out.put_slice(value.get(copied..).unwrap_or_default());
    out.put_u8(opts.quote);
}

thread_local! {
    /// Decoded field and masked output, reused across rows of this thread.
    static SCRATCH: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Scratch buffers larger than this are released after a row rather than
/// kept for the thread's lifetime.
const SCRATCH_KEEP: usize = 64 * 1024;

/// Runs `f` with the thread's two scratch buffers (fresh ones if they are
/// unavailable, e.g. during thread teardown).
fn with_scratch<T>(
    f: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>) -> Result<T, RewriteError>,
) -> Result<T, RewriteError> {
    let mut f = Some(f);
    let shared = SCRATCH.try_with(|cell| {
        let mut guard = cell.try_borrow_mut().ok()?;
        let f = f.take()?;
        let (a, b) = &mut *guard;
        let result = f(a, b);
        for buf in [a, b] {
            if buf.capacity() > SCRATCH_KEEP {
                *buf = Vec::new();
            } else {
                buf.clear();
            }
        }
        Some(result)
    });
    if let Ok(Some(result)) = shared {
        return result;
    }
    match f.take() {
        Some(f) => f(&mut Vec::new(), &mut Vec::new()),
        None => Err(RewriteError::Copy("scratch buffer unavailable")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_decode_and_encode() {
        let mut buf = Vec::new();
        let opts = CopyText::text();
        assert_eq!(decode(b"plain", &opts, &mut buf), b"plain");
        assert_eq!(
            decode(br"a\tb\\c\nd\101\x41\x4g\q\", &opts, &mut buf),
            b"a\tb\\c\ndAA\x04gq\\"
        );
        let mut out = BytesMut::new();
        encode_text(b"a\tb\\c\nd\re,f", b',', &mut out);
        assert_eq!(&out[..], br"a\tb\\c\nd\re\,f");
        let mut back = Vec::new();
        decode_text(&out, &mut back);
        assert_eq!(back, b"a\tb\\c\nd\re,f");
    }

    #[test]
    fn csv_decode_and_encode() {
        let mut buf = Vec::new();
        let opts = CopyText::csv();
        assert_eq!(decode(b"plain", &opts, &mut buf), b"plain");
        assert_eq!(decode(br#""a,""b""""#, &opts, &mut buf), br#"a,"b""#);
        assert_eq!(decode(br#"x"y,z"w"#, &opts, &mut buf), b"xy,zw");
        let esc = CopyText {
            escape: b'\\',
            ..CopyText::csv()
        };
        assert_eq!(decode(br#""a\"b\\c\d""#, &esc, &mut buf), br#"a"b\c\d"#);
        let mut out = BytesMut::new();
        encode_csv(b"a\"b", &opts, false, &mut out);
        encode_csv(b"", &opts, false, &mut out);
        encode_csv(b"x", &opts, false, &mut out);
        encode_csv(b"\\.", &opts, true, &mut out);
        encode_csv(br#"a"b\c,"#, &esc, false, &mut out);
        assert_eq!(&out[..], br#""a""b"""x"\.""a\"b\\c,""#);
    }

    #[test]
    fn field_splitting() {
        let text = CopyText::text();
        assert_eq!(field_end(b"a\\\tb\tc", 0, &text).unwrap(), 4);
        assert_eq!(count_fields(b"a\\\tb\tc", &text), 2);
        assert_eq!(count_fields(b"", &text), 1);
        assert_eq!(count_fields(b"\t", &text), 2);
        let csv = CopyText::csv();
        assert_eq!(count_fields(br#""a,b",c,"d""e""#, &csv), 3);
        assert!(field_end(br#""a,b"#, 0, &csv).is_err());
    }

    #[test]
    fn options_are_checked() {
        assert!(CopyText::text().validate().is_ok());
        assert!(CopyText::csv().validate().is_ok());
        for bad in [
            CopyText {
                delimiter: b'n',
                ..CopyText::text()
            },
            CopyText {
                delimiter: b'\n',
                ..CopyText::csv()
            },
            CopyText {
                quote: b',',
                ..CopyText::csv()
            },
            CopyText {
                null: b"a,b".to_vec(),
                ..CopyText::csv()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
