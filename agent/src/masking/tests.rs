//! Tests across the module: DataRow and COPY rewrites end to end, and
//! randomized properties (no panic on any input, masked values never leak,
//! clear columns round-trip).

use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::method::oid;
use super::*;
use crate::codec::{DataRow, write};

const INT4: u32 = 23;
const UUID: u32 = 2950;
const NUMERIC: u32 = 1700;
const BYTEA: u32 = 17;
const TEXT_ARRAY: u32 = 1009;

fn key() -> Arc<HashKey> {
    static KEY: OnceLock<Arc<HashKey>> = OnceLock::new();
    KEY.get_or_init(|| Arc::new(HashKey::from_bytes(b"test key of 32 bytes, not secret").unwrap()))
        .clone()
}

/// The built-ins plus one configured pattern, compiled once for all tests.
fn detectors() -> Arc<Detectors> {
    static DETECTORS: OnceLock<Arc<Detectors>> = OnceLock::new();
    DETECTORS
        .get_or_init(|| {
            Arc::new(
                Detectors::new(&[("ssn", r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)")]).unwrap(),
            )
        })
        .clone()
}

fn masker(columns: &[(ColumnAction, u32, Format)]) -> RowMasker {
    let plans = columns
        .iter()
        .map(|&(a, t, f)| ColumnPlan::new(a, t, f))
        .collect();
    RowMasker::new(plans, key(), detectors())
}

fn text(action: ColumnAction) -> (ColumnAction, u32, Format) {
    (action, oid::TEXT, Format::Text)
}

/// A DataRow body holding these values.
fn row_body(values: &[Option<&[u8]>]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    write::data_row(&mut buf, values.iter().copied()).unwrap();
    buf[5..].to_vec()
}

/// Rewrites a row and returns its values, checking the message framing.
fn rewrite(m: &RowMasker, values: &[Option<&[u8]>]) -> (Vec<Option<Vec<u8>>>, MaskStats) {
    let mut out = BytesMut::from(&b"prefix"[..]);
    let stats = m.data_row(&row_body(values), &mut out).unwrap();
    assert_eq!(&out[..6], b"prefix");
    let msg = &out[6..];
    assert_eq!(msg[0], b'D');
    let len = i32::from_be_bytes(msg[1..5].try_into().unwrap());
    assert_eq!(len as usize, msg.len() - 1);
    let row = DataRow::from_body(&msg[5..]).unwrap();
    let values = row.iter().map(|v| v.map(<[u8]>::to_vec)).collect();
    (values, stats)
}

fn one(m: &RowMasker, value: Option<&[u8]>) -> Option<String> {
    let (values, _) = rewrite(m, &[value]);
    values[0]
        .as_ref()
        .map(|v| String::from_utf8(v.clone()).unwrap())
}

#[test]
fn methods_on_text_columns() {
    let cases: &[(MaskMethod, &str, &str)] = &[
        (MaskMethod::Redact, "alice", "********"),
        (MaskMethod::Last4, "4111111111111111", "************1111"),
        (MaskMethod::Last4, "abc", "***"),
        (MaskMethod::Email, "bob@example.com", "***@example.com"),
        (MaskMethod::Email, "ðœ@exämple.de", "***@exämple.de"),
        (MaskMethod::Email, "not an email", "********"),
    ];
    for &(method, input, expected) in cases {
        for t in [
            oid::TEXT,
            oid::VARCHAR,
            oid::BPCHAR,
            oid::NAME,
            oid::UNKNOWN,
        ] {
            for f in [Format::Text, Format::Binary] {
                let m = masker(&[(ColumnAction::Mask(method), t, f)]);
                assert_eq!(
                    one(&m, Some(input.as_bytes())).as_deref(),
                    Some(expected),
                    "{method} {t} {f:?}"
                );
            }
        }
    }
    let m = masker(&[text(ColumnAction::Mask(MaskMethod::Hash))]);
    let a = one(&m, Some(b"alice")).unwrap();
    assert!(a.starts_with("h:") && a.len() == 26, "{a}");
    assert_eq!(one(&m, Some(b"alice")).unwrap(), a, "stable");
    let other = RowMasker::new(
        vec![ColumnPlan::new(
            ColumnAction::Mask(MaskMethod::Hash),
            oid::VARCHAR,
            Format::Binary,
        )],
        key(),
        detectors(),
    );
    assert_eq!(
        one(&other, Some(b"alice")).unwrap(),
        a,
        "joinable across types and formats"
    );
    let m = masker(&[text(ColumnAction::Mask(MaskMethod::Null))]);
    assert_eq!(one(&m, Some(b"alice")), None);
}

#[test]
fn last4_multibyte() {
    let m = masker(&[text(ColumnAction::Mask(MaskMethod::Last4))]);
    assert_eq!(
        one(&m, Some("ключ-доступа".as_bytes())).unwrap(),
        "********тупа"
    );
    assert_eq!(one(&m, Some("😀😀😀😀😀".as_bytes())).unwrap(), "*😀😀😀😀");
    assert_eq!(one(&m, Some("😀😀😀😀".as_bytes())).unwrap(), "****");
}

#[test]
fn char_stays_one_byte() {
    for method in [MaskMethod::Redact, MaskMethod::Hash, MaskMethod::Last4] {
        let m = masker(&[(ColumnAction::Mask(method), oid::CHAR, Format::Binary)]);
        assert_eq!(one(&m, Some(b"x")).unwrap(), "*");
    }
}

#[test]
fn nulls_pass_and_are_not_counted() {
    let m = masker(&[
        text(ColumnAction::Mask(MaskMethod::Redact)),
        text(ColumnAction::Detect),
        (ColumnAction::Mask(MaskMethod::Hash), INT4, Format::Binary),
    ]);
    let (values, stats) = rewrite(&m, &[None, None, None]);
    assert_eq!(values, vec![None, None, None]);
    assert!(stats.is_empty());
}

#[test]
fn non_text_masks_become_null() {
    let values: &[(u32, Format, &[u8])] = &[
        (INT4, Format::Text, b"42"),
        (INT4, Format::Binary, &[0, 0, 0, 42]),
        (NUMERIC, Format::Text, b"12.50"),
        (UUID, Format::Binary, &[7; 16]),
        (BYTEA, Format::Text, b"\\xdeadbeef"),
        (oid::JSON, Format::Text, br#"{"a":1}"#),
        (oid::JSONB, Format::Binary, b"\x01{}"),
        (TEXT_ARRAY, Format::Text, b"{a,b}"),
        (999_999, Format::Text, b"custom"),
    ];
    for method in [
        MaskMethod::Redact,
        MaskMethod::Last4,
        MaskMethod::Email,
        MaskMethod::Hash,
        MaskMethod::Null,
    ] {
        for &(t, f, v) in values {
            let m = masker(&[
                (ColumnAction::Mask(method), t, f),
                text(ColumnAction::Clear),
            ]);
            let (out, stats) = rewrite(&m, &[Some(v), Some(b"keep")]);
            assert_eq!(out, vec![None, Some(b"keep".to_vec())], "{method} {t}");
            assert_eq!(
                (stats.masked, stats.columns().collect::<Vec<_>>()),
                (1, vec![0])
            );
        }
    }
}

#[test]
fn detect_in_text_and_json() {
    let m = masker(&[
        text(ColumnAction::Detect),
        (ColumnAction::Detect, oid::VARCHAR, Format::Binary),
        (ColumnAction::Detect, INT4, Format::Text),
        (ColumnAction::Detect, oid::JSON, Format::Text),
        (ColumnAction::Detect, oid::JSONB, Format::Binary),
        text(ColumnAction::Clear),
    ]);
    let jsonb = b"\x01{\"card\": \"4111 1111 1111 1111\", \"n\": 1}";
    let (values, stats) = rewrite(
        &m,
        &[
            Some(b"paid with 4111111111111111, ssn 123-45-6789"),
            Some(b"token AKIAIOSFODNN7EXAMPLE"),
            Some(b"4111111111111111"),
            Some(br#"{"user":"alice@example.com","note":"tel \"4111111111111111\""}"#),
            Some(jsonb),
            Some(b"alice@example.com"),
        ],
    );
    let s = |i: usize| String::from_utf8(values[i].clone().unwrap()).unwrap();
    assert_eq!(s(0), "paid with [masked:card], ssn [masked:ssn]");
    assert_eq!(s(1), "token [masked:aws_key]");
    assert_eq!(s(2), "4111111111111111", "non-text types are untouched");
    let json: serde_json::Value = serde_json::from_str(&s(3)).unwrap();
    assert_eq!(json["user"], "[masked:email]");
    assert_eq!(json["note"], "tel \"[masked:card]\"");
    let jsonb_out = values[4].clone().unwrap();
    assert_eq!(jsonb_out[0], 1);
    let json: serde_json::Value = serde_json::from_slice(&jsonb_out[1..]).unwrap();
    assert_eq!(json["card"], "[masked:card]");
    assert_eq!(s(5), "alice@example.com", "clear columns are not scanned");
    assert_eq!(stats.detected, 4);
    assert_eq!(stats.masked, 0);
    assert_eq!(stats.columns().collect::<Vec<_>>(), vec![0, 1, 3, 4]);

    // Luhn-invalid numbers and ordinary text are copied as they are.
    let m = masker(&[text(ColumnAction::Detect)]);
    let (values, stats) = rewrite(&m, &[Some(b"order 4111111111111112 shipped")]);
    assert_eq!(
        values[0].as_deref(),
        Some(&b"order 4111111111111112 shipped"[..])
    );
    assert!(stats.is_empty());
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
    let gh = format!("ghs_{}", "Z9".repeat(18));
    assert_eq!(
        one(&m, Some(format!("{jwt} {gh}").as_bytes())).unwrap(),
        "[masked:jwt] [masked:github_token]"
    );
}

#[test]
fn noop_plans() {
    assert!(masker(&[text(ColumnAction::Clear), text(ColumnAction::Clear)]).is_noop());
    assert!(masker(&[]).is_noop());
    assert!(masker(&[(ColumnAction::Detect, INT4, Format::Text)]).is_noop());
    assert!(!masker(&[text(ColumnAction::Detect)]).is_noop());
    assert!(!masker(&[(ColumnAction::Mask(MaskMethod::Redact), INT4, Format::Text)]).is_noop());
}

#[test]
fn malformed_rows_are_errors_and_leave_out_alone() {
    let m = masker(&[
        text(ColumnAction::Mask(MaskMethod::Redact)),
        text(ColumnAction::Clear),
    ]);
    let good = row_body(&[Some(b"a"), Some(b"b")]);
    let mut wrong_count = row_body(&[Some(b"a")]);
    let mut trailing = good.clone();
    trailing.push(0);
    let mut negative = good.clone();
    negative[2..6].copy_from_slice(&(-2i32).to_be_bytes());
    let bodies: Vec<&[u8]> = vec![
        &good[..good.len() - 1],
        &good[..3],
        &[],
        &trailing,
        &negative,
        &wrong_count,
    ];
    for body in bodies {
        let mut out = BytesMut::from(&b"x"[..]);
        assert!(m.data_row(body, &mut out).is_err(), "{body:?}");
        assert_eq!(&out[..], b"x");
    }
    wrong_count = row_body(&[Some(b"a"), Some(b"b"), Some(b"c")]);
    let err = m.data_row(&wrong_count, &mut BytesMut::new()).unwrap_err();
    assert_eq!(err.to_string(), "row has 3 columns but the result has 2");
}

fn copy_out(m: &RowMasker, opts: &CopyText, data: &[u8]) -> (Vec<u8>, MaskStats) {
    let mut out = BytesMut::from(&b"p"[..]);
    let stats = m.copy_row(data, opts, &mut out).unwrap();
    assert_eq!(&out[..2], b"pd");
    let len = i32::from_be_bytes(out[2..6].try_into().unwrap());
    assert_eq!(len as usize, out.len() - 2);
    (out[6..].to_vec(), stats)
}

#[test]
fn copy_text_rows() {
    let m = masker(&[
        (ColumnAction::Clear, INT4, Format::Binary),
        text(ColumnAction::Mask(MaskMethod::Last4)),
        text(ColumnAction::Mask(MaskMethod::Email)),
        (ColumnAction::Mask(MaskMethod::Hash), INT4, Format::Text),
        text(ColumnAction::Detect),
        text(ColumnAction::Clear),
    ]);
    let opts = CopyText::text();
    let (out, stats) = copy_out(
        &m,
        &opts,
        b"1\tab\\tcd\\\\ef\\ngh\ta@b.io\t42\tcard 4111111111111111\\tx\tkeep\\\\me\n",
    );
    assert_eq!(
        out,
        b"1\t*******f\\ngh\t***@b.io\t\\N\tcard [masked:card]\\tx\tkeep\\\\me\n"
    );
    assert_eq!(stats.masked, 3);
    assert_eq!(stats.detected, 1);
    // NULLs stay NULL; no detection leaves the field byte-for-byte.
    let (out, stats) = copy_out(&m, &opts, b"\\N\t\\N\t\\N\t\\N\tno\\\\secret\t\\N\n");
    assert_eq!(out, b"\\N\t\\N\t\\N\t\\N\tno\\\\secret\t\\N\n");
    assert!(stats.is_empty());
    // A masked value is escaped for the delimiter in use; CRLF is kept.
    let m = masker(&[
        text(ColumnAction::Mask(MaskMethod::Last4)),
        text(ColumnAction::Clear),
    ]);
    let opts = CopyText {
        delimiter: b',',
        ..CopyText::text()
    };
    let (out, _) = copy_out(&m, &opts, b"abcd\\,efgh,x\\,y\r\n");
    assert_eq!(out, b"*****efgh,x\\,y\r\n");
    let (out, _) = copy_out(&m, &opts, b"wxyz\\,,q");
    assert_eq!(out, b"*xyz\\,,q");
    // Wrong field counts are errors.
    for bad in [&b"a\n"[..], b"a,b,c\n"] {
        let mut out = BytesMut::new();
        assert!(m.copy_row(bad, &opts, &mut out).is_err());
        assert!(out.is_empty());
    }
}

#[test]
fn copy_csv_rows() {
    let m = masker(&[
        text(ColumnAction::Mask(MaskMethod::Redact)),
        text(ColumnAction::Mask(MaskMethod::Last4)),
        text(ColumnAction::Clear),
        (ColumnAction::Mask(MaskMethod::Redact), UUID, Format::Text),
        text(ColumnAction::Detect),
        text(ColumnAction::Mask(MaskMethod::Last4)),
    ]);
    let opts = CopyText::csv();
    let (out, stats) = copy_out(
        &m,
        &opts,
        b"secret,\"ab,\"\"cd\"\"ef\",\"kept, \"\"as is\"\"\",0a0a-uuid,\"multi\nline x@y.org\",\n",
    );
    assert_eq!(
        out,
        b"********,\"*****d\"\"ef\",\"kept, \"\"as is\"\"\",,\"multi\nline [masked:email]\",\n"
    );
    assert_eq!(stats.masked, 3, "NULL (unquoted empty) is not masked");
    assert_eq!(stats.detected, 1);
    // A quoted empty string is a value, not NULL; its mask must not read as NULL.
    let m = masker(&[text(ColumnAction::Mask(MaskMethod::Last4))]);
    let (out, _) = copy_out(&m, &opts, b"\"\"\n");
    assert_eq!(out, b"\"\"\n");
    let (out, _) = copy_out(&m, &opts, b"\n");
    assert_eq!(out, b"\n");
    // Another escape character.
    let opts = CopyText {
        escape: b'\\',
        ..CopyText::csv()
    };
    let m = masker(&[text(ColumnAction::Mask(MaskMethod::Last4))]);
    let (out, _) = copy_out(&m, &opts, b"\"ab\\\"c\\\\d,\"\n");
    assert_eq!(out, b"\"***c\\\\d,\"\n");
    let mut out = BytesMut::new();
    assert!(m.copy_row(b"\"open\n", &opts, &mut out).is_err());
    assert!(out.is_empty());
}

/// Random bytes, biased towards the shapes a DataRow parser cares about.
fn random_body(rng: &mut StdRng) -> Vec<u8> {
    let mut body = Vec::new();
    if rng.random_bool(0.7) {
        let count: u16 = rng.random_range(0..5);
        body.extend_from_slice(&count.to_be_bytes());
        for _ in 0..rng.random_range(0..6) {
            let len: i32 = match rng.random_range(0..4) {
                0 => -1,
                1 => rng.random_range(-3..3),
                2 => rng.random(),
                _ => rng.random_range(0..12),
            };
            body.extend_from_slice(&len.to_be_bytes());
            for _ in 0..rng.random_range(0..12) {
                body.push(rng.random());
            }
        }
    } else {
        for _ in 0..rng.random_range(0..40) {
            body.push(rng.random());
        }
    }
    body
}

#[test]
fn arbitrary_bodies_never_panic() {
    let mut rng = StdRng::seed_from_u64(7);
    let actions = [
        ColumnAction::Clear,
        ColumnAction::Detect,
        ColumnAction::Mask(MaskMethod::Last4),
        ColumnAction::Mask(MaskMethod::Email),
        ColumnAction::Mask(MaskMethod::Hash),
    ];
    let types = [oid::TEXT, oid::CHAR, oid::JSON, oid::JSONB, INT4];
    for _ in 0..20_000 {
        let columns: Vec<_> = (0..rng.random_range(0..5))
            .map(|_| {
                let f = if rng.random_bool(0.5) {
                    Format::Text
                } else {
                    Format::Binary
                };
                (
                    actions[rng.random_range(0..actions.len())],
                    types[rng.random_range(0..types.len())],
                    f,
                )
            })
            .collect();
        let m = masker(&columns);
        let body = random_body(&mut rng);
        let mut out = BytesMut::new();
        if m.data_row(&body, &mut out).is_err() {
            assert!(out.is_empty());
        }
        let opts = if rng.random_bool(0.5) {
            CopyText::text()
        } else {
            CopyText::csv()
        };
        let mut out = BytesMut::new();
        if m.copy_row(&body, &opts, &mut out).is_err() {
            assert!(out.is_empty());
        }
    }
}

/// A random value of 8 to 40 characters from an alphabet without `*`,
/// letters and multibyte characters, not all the same character.
fn random_secret(rng: &mut StdRng) -> String {
    const ALPHABET: &[char] = &[
        'a', 'b', 'c', 'x', 'y', 'z', 'Q', 'R', '@', '.', 'é', 'ß', 'ж', '日', '😀', '\t', '\\',
        ',', '"',
    ];
    loop {
        let len = rng.random_range(8..40);
        let s: String = (0..len)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
            .collect();
        let first = s.chars().next();
        if s.len() >= 8 && !s.chars().all(|c| Some(c) == first) {
            return s;
        }
    }
}

fn random_clear(rng: &mut StdRng) -> Option<Vec<u8>> {
    if rng.random_bool(0.2) {
        return None;
    }
    Some(
        (0..rng.random_range(0..20))
            .map(|_| rng.random_range(b'0'..=b'9'))
            .collect(),
    )
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn masked_values_never_leak_and_clear_columns_round_trip() {
    let mut rng = StdRng::seed_from_u64(11);
    let methods = [
        MaskMethod::Redact,
        MaskMethod::Last4,
        MaskMethod::Email,
        MaskMethod::Hash,
        MaskMethod::Null,
    ];
    for _ in 0..5_000 {
        let method = methods[rng.random_range(0..methods.len())];
        let width = rng.random_range(1..6);
        let masked_at = rng.random_range(0..width);
        let t = [oid::TEXT, oid::VARCHAR, INT4][rng.random_range(0..3)];
        let columns: Vec<_> = (0..width)
            .map(|i| {
                if i == masked_at {
                    (ColumnAction::Mask(method), t, Format::Binary)
                } else {
                    (ColumnAction::Clear, INT4, Format::Text)
                }
            })
            .collect();
        let m = masker(&columns);
        let secret = random_secret(&mut rng);
        let clear: Vec<Option<Vec<u8>>> = (0..width).map(|_| random_clear(&mut rng)).collect();
        let values: Vec<Option<&[u8]>> = (0..width)
            .map(|i| {
                if i == masked_at {
                    Some(secret.as_bytes())
                } else {
                    clear[i].as_deref()
                }
            })
            .collect();

        let mut out = BytesMut::new();
        let stats = m.data_row(&row_body(&values), &mut out).unwrap();
        assert!(!contains(&out, secret.as_bytes()), "{method}: {secret:?}");
        assert_eq!((stats.masked, stats.contains(masked_at)), (1, true));
        let row = DataRow::from_body(&out[5..]).unwrap();
        for (i, v) in row.iter().enumerate() {
            if i != masked_at {
                assert_eq!(v, clear[i].as_deref(), "clear column {i}");
            }
        }

        // The same row through COPY, in both formats.
        for opts in [CopyText::text(), CopyText::csv()] {
            let mut line = Vec::new();
            let mut expected_clear = Vec::new();
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    line.push(opts.delimiter);
                }
                let start = line.len();
                match v {
                    None => line.extend_from_slice(&opts.null),
                    Some(v) if opts.csv => {
                        line.push(b'"');
                        for &b in *v {
                            if b == b'"' {
                                line.push(b'"');
                            }
                            line.push(b);
                        }
                        line.push(b'"');
                    }
                    Some(v) => {
                        let mut enc = BytesMut::new();
                        super::copy::encode_text(v, opts.delimiter, &mut enc);
                        line.extend_from_slice(&enc);
                    }
                }
                expected_clear.push(line[start..].to_vec());
            }
            line.push(b'\n');
            let mut out = BytesMut::new();
            m.copy_row(&line, &opts, &mut out).unwrap();
            let body = &out[5..];
            assert!(!contains(body, secret.as_bytes()), "{method}: {secret:?}");
            for (i, enc) in expected_clear.iter().enumerate() {
                if i != masked_at && !enc.is_empty() {
                    assert!(contains(body, enc), "clear field {i} kept as is");
                }
            }
        }
    }
}

/// Splits a COPY line (without its line ending) into decoded fields, `None`
/// for NULL: the reader's view of what the rewrite produced.
fn copy_fields(line: &[u8], opts: &CopyText) -> Vec<Option<Vec<u8>>> {
    let mut fields = Vec::new();
    let mut pos = 0;
    loop {
        let end = super::copy::field_end(line, pos, opts).unwrap();
        let raw = &line[pos..end];
        if raw == opts.null.as_slice() {
            fields.push(None);
        } else {
            let mut buf = Vec::new();
            fields.push(Some(super::copy::decode(raw, opts, &mut buf).to_vec()));
        }
        if end >= line.len() {
            return fields;
        }
        pos = end + 1;
    }
}

fn random_value(rng: &mut StdRng) -> Option<Vec<u8>> {
    const PIECES: &[&str] = &[
        "a",
        "Z",
        "7",
        " ",
        "\t",
        "\n",
        "\r",
        "\\",
        ",",
        "\"",
        "'",
        "|",
        "é",
        "日",
        "😀",
        "@",
        "alice@example.com",
        "4111111111111111",
        "\\N",
        "\\.",
        "N",
    ];
    if rng.random_bool(0.15) {
        return None;
    }
    let mut v = String::new();
    for _ in 0..rng.random_range(0..8) {
        v.push_str(PIECES[rng.random_range(0..PIECES.len())]);
    }
    Some(v.into_bytes())
}

/// COPY and DataRow agree: a row written in text or csv format and
/// rewritten reads back as exactly the values the DataRow rewrite gives
/// (so hashes join across both), and clear columns are untouched.
#[test]
fn copy_and_data_row_agree() {
    let mut rng = StdRng::seed_from_u64(3);
    let actions = [
        ColumnAction::Clear,
        ColumnAction::Detect,
        ColumnAction::Mask(MaskMethod::Redact),
        ColumnAction::Mask(MaskMethod::Last4),
        ColumnAction::Mask(MaskMethod::Email),
        ColumnAction::Mask(MaskMethod::Hash),
        ColumnAction::Mask(MaskMethod::Null),
    ];
    let formats = [
        CopyText::text(),
        CopyText::csv(),
        CopyText {
            delimiter: b'|',
            null: b"NULL".to_vec(),
            ..CopyText::text()
        },
        CopyText {
            delimiter: b';',
            quote: b'\'',
            escape: b'\\',
            null: b"N".to_vec(),
            ..CopyText::csv()
        },
    ];
    for _ in 0..3_000 {
        let width = rng.random_range(1..5);
        let columns: Vec<_> = (0..width)
            .map(|_| {
                let t = [oid::TEXT, oid::VARCHAR, INT4, oid::JSON][rng.random_range(0..4)];
                (actions[rng.random_range(0..actions.len())], t, Format::Text)
            })
            .collect();
        let m = masker(&columns);
        let values: Vec<Option<Vec<u8>>> = (0..width).map(|_| random_value(&mut rng)).collect();
        let refs: Vec<Option<&[u8]>> = values.iter().map(|v| v.as_deref()).collect();
        let (expected, row_stats) = rewrite(&m, &refs);

        for opts in &formats {
            let mut line = Vec::new();
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    line.push(opts.delimiter);
                }
                match v {
                    None => line.extend_from_slice(&opts.null),
                    Some(v) => {
                        let mut enc = BytesMut::new();
                        super::copy::encode(v, opts, width == 1, &mut enc);
                        line.extend_from_slice(&enc);
                    }
                }
            }
            let original = line.clone();
            line.push(b'\n');
            let (out, stats) = copy_out(&m, opts, &line);
            let body = out.strip_suffix(b"\n").unwrap();
            assert_eq!(
                copy_fields(body, opts),
                expected,
                "{opts:?} {:?}",
                String::from_utf8_lossy(&line)
            );
            assert_eq!(stats, row_stats);
            if m.is_noop() || stats.is_empty() {
                assert_eq!(body, &original[..]);
            }
        }
    }
}

/// Random JSON with secrets in strings, keys and numbers stays valid JSON
/// after detection, and no secret survives.
#[test]
fn json_detection_keeps_documents_valid() {
    use serde_json::{Map, Value};
    fn random_string(rng: &mut StdRng) -> String {
        const PIECES: &[&str] = &[
            "x",
            " ",
            "\"",
            "\\",
            "\n",
            "\u{1}",
            "é",
            "😀",
            "/",
            "bob@example.com",
            " 4111 1111 1111 1111 ",
            " AKIAIOSFODNN7EXAMPLE ",
            "-----BEGIN PRIVATE KEY-----\nabc",
            "-----END PRIVATE KEY-----",
            "u0041",
            "\\u",
        ];
        (0..rng.random_range(0..6))
            .map(|_| PIECES[rng.random_range(0..PIECES.len())])
            .collect()
    }
    fn random_json(rng: &mut StdRng, depth: u32) -> Value {
        match rng.random_range(0..if depth > 3 { 4 } else { 6 }) {
            0 => Value::Null,
            1 => Value::from([4111111111111111u64, 42, 5500000000000004][rng.random_range(0..3)]),
            2 => Value::from(-4111111111111111i64),
            3 => Value::String(random_string(rng)),
            4 => Value::Array(
                (0..rng.random_range(0..4))
                    .map(|_| random_json(rng, depth + 1))
                    .collect(),
            ),
            _ => {
                let mut map = Map::new();
                for _ in 0..rng.random_range(0..4) {
                    map.insert(random_string(rng), random_json(rng, depth + 1));
                }
                Value::Object(map)
            }
        }
    }
    let d = detectors();
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..3_000 {
        let doc = random_json(&mut rng, 0);
        let text = if rng.random_bool(0.5) {
            serde_json::to_string(&doc).unwrap()
        } else {
            serde_json::to_string_pretty(&doc).unwrap()
        };
        let mut out = Vec::new();
        d.redact_json(text.as_bytes(), &mut out);
        let out = String::from_utf8(out).unwrap();
        let parsed: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {text} -> {out}"));
        let flat = parsed.to_string();
        for secret in [
            "bob@example.com",
            "4111111111111111",
            "4111 1111 1111 1111",
            "AKIAIOSFODNN7EXAMPLE",
            "BEGIN PRIVATE",
        ] {
            assert!(!flat.contains(secret), "{text} -> {out}");
        }
    }
}
