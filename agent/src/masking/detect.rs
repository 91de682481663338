//! Content detectors: secrets and personal data recognised by their shape.
//!
//! All detectors, built-in and configured, are compiled once into a single
//! multi-pattern regex (the `regex` crate's own engine, used directly so a
//! match says which pattern it is), shared by every session. A value costs
//! one leftmost-first scan; only when something matches is anything more
//! done. Card numbers are found by shape first (13 or more digits with
//! single spaces or dashes between groups) and then checked with Luhn, which
//! a regex cannot do.
//!
//! Recognised spans are replaced by `[masked:<detector>]`. Markers hold no
//! quote or backslash, and JSON values are scanned string by string with
//! spans widened over escape sequences, so a JSON document stays valid JSON.

use std::fmt;

use bytes::BufMut;
use regex_automata::meta::{self, BuildError};
use regex_automata::util::syntax;
use regex_automata::{Input, Match};

/// Built-in detectors, in priority order (at one position, the first
/// pattern that matches wins), before the configured ones.
const BUILTIN_FIRST: &[(&str, &str)] = &[
    (
        "private_key",
        r"-----BEGIN[A-Z ]*PRIVATE KEY-----(?s-u:.)*?(?:-----END[A-Z ]*PRIVATE KEY-----|\z)",
    ),
    ("jwt", r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
    ("aws_key", r"(?-u:\b)(?:AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)"),
    (
        "github_token",
        r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",
    ),
    ("slack_token", r"(?-u:\b)xox[abprs]-[A-Za-z0-9-]{10,}"),
    (
        "api_key",
        r"(?-u:\b)(?:sk-[A-Za-z0-9_-]{20,}|[sr]k_(?:live|test)_[A-Za-z0-9]{20,})",
    ),
];

/// Built-ins that come after the configured detectors: broad shapes that a
/// more specific configured pattern should win over.
const BUILTIN_LAST: &[(&str, &str)] = &[
    (
        "email",
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    ),
    (CARD, r"[0-9](?:[ -]?[0-9]){12,}"),
];

/// Name of the payment card detector.
const CARD: &str = "card";

/// Card numbers have 13 to 19 digits.
const CARD_DIGITS: std::ops::RangeInclusive<usize> = 13..=19;

/// Longest detector name.
const MAX_NAME: usize = 64;

/// A configured detector cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    /// Names go into markers, so they are restricted to a safe alphabet.
    #[error(
        "detector name {name:?} must be 1 to 64 characters among A-Z, a-z, 0-9, '_', '-' and '.'"
    )]
    InvalidName {
        /// The name as configured.
        name: String,
    },
    /// Two detectors (or one and a built-in) share a name.
    #[error("detector name {name:?} is used twice")]
    Duplicate {
        /// The name as configured.
        name: String,
    },
    /// The pattern does not compile.
    #[error("detector {name:?} has an invalid pattern: {source}")]
    Pattern {
        /// The detector's name.
        name: String,
        /// What the regex compiler said.
        #[source]
        source: Box<BuildError>,
    },
    /// A pattern that matches the empty string would mark every position.
    #[error("detector {name:?} matches the empty string")]
    MatchesEmpty {
        /// The detector's name.
        name: String,
    },
    /// The detectors compile alone but not together (e.g. too large).
    #[error("detectors could not be compiled together: {0}")]
    Build(#[source] Box<BuildError>),
}

/// How a value's text is laid out, which decides where a span may start
/// and end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Plain text: any span.
    Plain,
    /// JSON text: spans inside strings, whole numbers outside them.
    Json,
}

/// Content detectors, compiled once and shared (`Arc`) by all sessions.
pub struct Detectors {
    regex: meta::Regex,
    /// Detector names by pattern index.
    names: Vec<Box<str>>,
    /// Pattern index of the card detector.
    card: usize,
}

impl fmt::Debug for Detectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detectors")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// One recognised span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hit {
    start: usize,
    end: usize,
    detector: usize,
}

fn builder() -> meta::Builder {
    let mut b = meta::Regex::builder();
    b.syntax(syntax::Config::new().utf8(false))
        .configure(meta::Regex::config().utf8_empty(false));
    b
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Detectors {
    /// The built-in detectors plus `extra` (name, regex) pairs from
    /// configuration. Patterns use the `regex` crate's syntax and match
    /// bytes (so `(?-u:...)` may match non-UTF-8); names must be unique and
    /// use only `A-Za-z0-9_-.`.
    pub fn new<N: AsRef<str>, P: AsRef<str>>(extra: &[(N, P)]) -> Result<Self, DetectorError> {
        let mut names: Vec<Box<str>> = Vec::new();
        let mut patterns: Vec<&str> = Vec::new();
        for (name, pattern) in BUILTIN_FIRST {
            names.push((*name).into());
            patterns.push(pattern);
        }
        for (name, pattern) in extra {
            let (name, pattern) = (name.as_ref(), pattern.as_ref());
            if !valid_name(name) {
                return Err(DetectorError::InvalidName { name: name.into() });
            }
            if names.iter().any(|n| &**n == name) || BUILTIN_LAST.iter().any(|(n, _)| *n == name) {
                return Err(DetectorError::Duplicate { name: name.into() });
            }
            let alone = builder()
                .build(pattern)
                .map_err(|source| DetectorError::Pattern {
                    name: name.into(),
                    source: Box::new(source),
                })?;
            if alone.is_match(Input::new(b"")) {
                return Err(DetectorError::MatchesEmpty { name: name.into() });
            }
            names.push(name.into());
            patterns.push(pattern);
        }
        for (name, pattern) in BUILTIN_LAST {
            names.push((*name).into());
            patterns.push(pattern);
        }
        let card = names.len().saturating_sub(1);
        let regex = builder()
            .build_many(&patterns)
            .map_err(|e| DetectorError::Build(Box::new(e)))?;
        Ok(Self { regex, names, card })
    }

    /// The built-in detectors alone.
    pub fn builtin() -> Result<Self, DetectorError> {
        Self::new::<&str, &str>(&[])
    }

    /// Detector names in priority order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| &**n)
    }

    /// Appends `value` with every recognised span replaced by its marker;
    /// returns how many spans were replaced. With none, `value` is appended
    /// as is.
    pub fn redact(&self, value: &[u8], out: &mut impl BufMut) -> usize {
        self.redact_plain(value, out)
    }

    /// Like [`Detectors::redact`] for a JSON document: only string contents
    /// (and whole numbers that are card numbers) are replaced, so the result
    /// is valid JSON whenever the input was.
    pub fn redact_json(&self, doc: &[u8], out: &mut impl BufMut) -> usize {
        self.redact_layout(doc, Layout::Json, out)
    }

    pub(crate) fn redact_layout(
        &self,
        value: &[u8],
        layout: Layout,
        out: &mut impl BufMut,
    ) -> usize {
        match layout {
            Layout::Plain => self.redact_plain(value, out),
            Layout::Json => self.redact_json_doc(value, out),
        }
    }

    fn put_marker(&self, detector: usize, out: &mut impl BufMut) {
        out.put_slice(b"[masked:");
        out.put_slice(
            self.names
                .get(detector)
                .map_or("match", |n| &**n)
                .as_bytes(),
        );
        out.put_u8(b']');
    }

    /// The first recognised span at or after `from`.
    fn next_hit(&self, hay: &[u8], mut from: usize) -> Option<Hit> {
        while from <= hay.len() {
            let m: Match = self.regex.find(Input::new(hay).range(from..))?;
            if m.is_empty() {
                from = m.end().saturating_add(1);
                continue;
            }
            let detector = m.pattern().as_usize();
            if detector != self.card {
                return Some(Hit {
                    start: m.start(),
                    end: m.end(),
                    detector,
                });
            }
            if let Some((s, e)) = hay.get(m.range()).and_then(card_in_run) {
                return Some(Hit {
                    start: m.start().saturating_add(s),
                    end: m.start().saturating_add(e),
                    detector,
                });
            }
            from = m.end();
        }
        None
    }

    fn redact_plain(&self, value: &[u8], out: &mut impl BufMut) -> usize {
        let mut copied = 0;
        let mut hits = 0;
        while let Some(hit) = self.next_hit(value, copied) {
            out.put_slice(value.get(copied..hit.start).unwrap_or_default());
            self.put_marker(hit.detector, out);
            copied = hit.end;
            hits += 1;
        }
        out.put_slice(value.get(copied..).unwrap_or_default());
        hits
    }

    /// Redacts inside the strings of a JSON document, and replaces a bare
    /// number that is a card number by a string marker.
    fn redact_json_doc(&self, doc: &[u8], out: &mut impl BufMut) -> usize {
        let mut hits = 0;
        let mut copied = 0;
        let mut i = 0;
        while let Some(&b) = doc.get(i) {
            match b {
                b'"' => {
                    let start = i.saturating_add(1);
                    let end = string_end(doc, start);
                    let content = doc.get(start..end).unwrap_or_default();
                    // Fast path: nothing in this string.
                    if self.next_hit(content, 0).is_some() {
                        out.put_slice(doc.get(copied..start).unwrap_or_default());
                        hits += self.redact_json_string(content, out);
                        copied = end;
                    }
                    i = end.saturating_add(1);
                }
                b'-' | b'0'..=b'9' => {
                    let len = doc
                        .get(i..)
                        .unwrap_or_default()
                        .iter()
                        .take_while(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                        .count();
                    let end = i.saturating_add(len);
                    if doc.get(i..end).is_some_and(is_card_number) {
                        out.put_slice(doc.get(copied..i).unwrap_or_default());
                        out.put_u8(b'"');
                        self.put_marker(self.card, out);
                        out.put_u8(b'"');
                        copied = end;
                        hits += 1;
                    }
                    i = end;
                }
                _ => i += 1,
            }
        }
        out.put_slice(doc.get(copied..).unwrap_or_default());
        hits
    }

    /// Redacts the raw (escaped) contents of one JSON string, widening each
    /// span so it never starts or ends inside an escape sequence.
    fn redact_json_string(&self, content: &[u8], out: &mut impl BufMut) -> usize {
        let mut copied = 0;
        let mut hits = 0;
        while let Some(hit) = self.next_hit(content, copied) {
            let start = escape_covering(content, hit.start)
                .map_or(hit.start, |(s, _)| s)
                .max(copied);
            let end = escape_covering(content, hit.end).map_or(hit.end, |(_, e)| e);
            out.put_slice(content.get(copied..start).unwrap_or_default());
            self.put_marker(hit.detector, out);
            copied = end.max(start);
            hits += 1;
        }
        out.put_slice(content.get(copied..).unwrap_or_default());
        hits
    }
}

/// Index of the quote closing a JSON string whose contents start at
/// `start`, or the document's end if it is unterminated.
fn string_end(doc: &[u8], start: usize) -> usize {
    let mut i = start;
    while let Some(&b) = doc.get(i) {
        match b {
            b'\\' => i = i.saturating_add(2),
            b'"' => return i,
            _ => i += 1,
        }
    }
    doc.len()
}

/// The escape sequence (`\x` or `\uXXXX`) strictly containing position `p`
/// of a JSON string's raw contents, as `(start, end)`.
fn escape_covering(content: &[u8], p: usize) -> Option<(usize, usize)> {
    if p == 0 || p >= content.len() {
        return None;
    }
    for back in 1..=p.min(5) {
        let q = p - back;
        if content.get(q) != Some(&b'\\') {
            continue;
        }
        // `q` opens an escape iff the run of backslashes ending there is odd.
        let run = content
            .get(..=q)
            .unwrap_or_default()
            .iter()
            .rev()
            .take_while(|&&c| c == b'\\')
            .count();
        if run.is_multiple_of(2) {
            return None;
        }
        let len = if content.get(q.saturating_add(1)) == Some(&b'u') {
            6
        } else {
            2
        };
        let end = q.saturating_add(len).min(content.len());
        return (end > p).then_some((q, end));
    }
    None
}

/// Luhn checksum over the digits of `s` (other bytes skipped).
fn luhn(s: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut double = false;
    for d in s.iter().rev().filter(|b| b.is_ascii_digit()) {
        let mut v = u32::from(d - b'0');
        if double {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
        double = !double;
    }
    sum.is_multiple_of(10)
}

/// A JSON number token that is a card number: digits only (an optional
/// minus aside), 13 to 19 of them, Luhn-valid.
fn is_card_number(token: &[u8]) -> bool {
    let digits = token.strip_prefix(b"-").unwrap_or(token);
    CARD_DIGITS.contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit) && luhn(digits)
}

/// Number of digits at the start of `s`.
fn digit_run(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// The first card number inside a run of digit groups (digits separated by
/// single spaces or dashes), as a byte range of the run.
///
/// A card is a sequence of whole groups holding 13 to 19 digits that passes
/// Luhn; a group is never split, so a card is never part of a longer digit
/// run. From each group the longest valid sequence wins.
fn card_in_run(run: &[u8]) -> Option<(usize, usize)> {
    let mut start = 0;
    while start < run.len() {
        let mut digits = 0;
        let mut group = start;
        let mut best = None;
        loop {
            let len = digit_run(run.get(group..).unwrap_or_default());
            let end = group.saturating_add(len);
            digits += len;
            if digits > *CARD_DIGITS.end() || len == 0 {
                break;
            }
            if CARD_DIGITS.contains(&digits) && luhn(run.get(start..end).unwrap_or_default()) {
                best = Some(end);
            }
            if end >= run.len() {
                break;
            }
            group = end.saturating_add(1);
        }
        if let Some(end) = best {
            return Some((start, end));
        }
        let first = digit_run(run.get(start..).unwrap_or_default());
        start = start.saturating_add(first).saturating_add(1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> Detectors {
        Detectors::builtin().unwrap()
    }

    fn plain(d: &Detectors, s: &str) -> String {
        let mut out = Vec::new();
        d.redact(s.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    fn json(d: &Detectors, s: &str) -> String {
        let mut out = Vec::new();
        d.redact_json(s.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn luhn_checks() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"4111-1111-1111-1111"));
        assert!(!luhn(b"4111111111111112"));
        assert!(luhn(b"378282246310005"));
    }

    #[test]
    fn cards() {
        let d = builtin();
        assert_eq!(
            plain(&d, "card 4111111111111111 ok"),
            "card [masked:card] ok"
        );
        assert_eq!(plain(&d, "4111 1111 1111 1111"), "[masked:card]");
        assert_eq!(plain(&d, "x4111-1111-1111-1111."), "x[masked:card].");
        assert_eq!(plain(&d, "amex 378282246310005"), "amex [masked:card]");
        // Luhn-invalid, too long, too short, doubled separators.
        for s in [
            "4111111111111112",
            "41111111111111110",
            "12345678901234567890",
            "411111111111",
            "4111  1111 1111 1111",
        ] {
            assert_eq!(plain(&d, s), s);
        }
        // Not part of a longer digit run, but a neighbouring group is fine.
        assert_eq!(plain(&d, "94111111111111111"), "94111111111111111");
        assert_eq!(plain(&d, "12 4111111111111111"), "12 [masked:card]");
        assert_eq!(
            plain(&d, "4111111111111111 5500000000000004"),
            "[masked:card] [masked:card]"
        );
    }

    #[test]
    fn secrets_and_emails() {
        let d = builtin();
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        assert_eq!(plain(&d, &format!("Bearer {jwt}")), "Bearer [masked:jwt]");
        assert_eq!(
            plain(&d, "mail alice.b+x@mail.example.com now"),
            "mail [masked:email] now"
        );
        assert_eq!(plain(&d, "AKIAIOSFODNN7EXAMPLE"), "[masked:aws_key]");
        assert_eq!(plain(&d, "ASIAIOSFODNN7EXAMPLEX"), "ASIAIOSFODNN7EXAMPLEX");
        let gh = format!("ghp_{}", "a1".repeat(18));
        assert_eq!(plain(&d, &format!("t={gh};")), "t=[masked:github_token];");
        assert_eq!(plain(&d, "ghp_short"), "ghp_short");
        assert_eq!(
            plain(&d, "xoxb-123456789012-abcdefghij"),
            "[masked:slack_token]"
        );
        assert_eq!(
            plain(&d, "key sk-proj-abcdefghijklmnopqrstuvwx"),
            "key [masked:api_key]"
        );
        assert_eq!(
            plain(&d, "sk_live_abcdefghijklmnopqrstuvwx"),
            "[masked:api_key]"
        );
        assert_eq!(
            plain(&d, "task-abcdefghijklmnopqrstuvwx"),
            "task-abcdefghijklmnopqrstuvwx"
        );
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----";
        assert_eq!(
            plain(&d, &format!("a\n{pem}\nb")),
            "a\n[masked:private_key]\nb"
        );
        assert_eq!(
            plain(&d, "x -----BEGIN PRIVATE KEY-----\nMIIEtruncated"),
            "x [masked:private_key]"
        );
        assert_eq!(plain(&d, "nothing here 12345"), "nothing here 12345");
        assert_eq!(
            plain(&d, "日本 alice@example.com 語"),
            "日本 [masked:email] 語"
        );
    }

    #[test]
    fn configured_patterns() {
        let d = Detectors::new(&[("ssn", r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)")]).unwrap();
        assert_eq!(plain(&d, "ssn 123-45-6789."), "ssn [masked:ssn].");
        assert!(d.names().any(|n| n == "ssn"));
        assert!(matches!(
            Detectors::new(&[("bad name", "x")]),
            Err(DetectorError::InvalidName { .. })
        ));
        assert!(matches!(
            Detectors::new(&[("email", "x")]),
            Err(DetectorError::Duplicate { .. })
        ));
        assert!(matches!(
            Detectors::new(&[("a", "x"), ("a", "y")]),
            Err(DetectorError::Duplicate { .. })
        ));
        assert!(matches!(
            Detectors::new(&[("a", "(")]),
            Err(DetectorError::Pattern { .. })
        ));
        assert!(matches!(
            Detectors::new(&[("a", "x*")]),
            Err(DetectorError::MatchesEmpty { .. })
        ));
        // Empty matches inside text are skipped, not looped on.
        let d = Detectors::new(&[("wb", r"\b")]).unwrap();
        assert_eq!(plain(&d, "a b"), "a b");
    }

    #[test]
    fn json_stays_valid() {
        let d = builtin();
        let doc = r#"{"email":"alice@example.com","n":4111111111111111,"m":-4111111111111111,"f":4111111111111111.5,"esc":"\nbob@example.com\u0041carol@example.org\\","k":{"alice@example.com":[1,"x"]}}"#;
        let out = json(&d, doc);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["email"], "[masked:email]");
        assert_eq!(v["n"], "[masked:card]");
        assert_eq!(v["m"], "[masked:card]");
        assert!(out.contains(":4111111111111111.5,"), "{out}");
        assert!(!out.contains("example"), "{out}");
        assert!(v["k"]["[masked:email]"].is_array());
        // Escapes around and inside spans.
        for doc in [
            r#"["\u0061lice@example.com"]"#,
            r#"["x\"bob@example.com\""]"#,
            r#"["\\\nbob@example.com\t"]"#,
            r#"["\t4111-1111-1111-1111\r"]"#,
            r#"["-----BEGIN PRIVATE KEY-----\nMIIE\"\\"]"#,
            r#"["-----BEGIN PRIVATE KEY-----\nMIIE\u00"]"#,
        ] {
            let out = json(&d, doc);
            assert!(
                serde_json::from_str::<serde_json::Value>(&out).is_ok(),
                "{doc} -> {out}"
            );
            assert!(out.contains("[masked:"), "{doc} -> {out}");
        }
        // Malformed input never panics.
        for doc in [r#""\"#, r#"{"a":"alice@example.com"#, "\"\\u", "-"] {
            json(&d, doc);
        }
    }

    #[test]
    fn escape_cover() {
        let c = br#"ab\nc\u0041d\\e"#;
        assert_eq!(escape_covering(c, 3), Some((2, 4)));
        assert_eq!(escape_covering(c, 4), None);
        assert_eq!(escape_covering(c, 7), Some((5, 11)));
        assert_eq!(escape_covering(c, 11), None);
        assert_eq!(escape_covering(c, 13), Some((12, 14)));
        assert_eq!(escape_covering(c, 14), None);
    }
}
