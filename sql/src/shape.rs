//! The literal shape of a query string: its text with number and string
//! literals replaced by placeholders, computed by a small lexer far cheaper
//! than the parser.
//!
//! Drivers that send values inline (the simple query protocol) make every
//! query string unique; those of one statement differ only in their
//! literals, and a literal never changes what a statement reads, writes or
//! is (the attributes policy decides on). So a caller that has analysed one
//! string of a shape may reuse that analysis for another string of the same
//! shape — see [`Statement::shape_reusable`](crate::Statement::shape_reusable)
//! for which statements qualify.
//!
//! This is a security boundary: two strings with the same shape must parse
//! to the same tree but for literal values. The lexer therefore gives up
//! (returns `None`, and the caller parses) on anything whose tokenisation
//! depends on more than it models: comments, dollar quoting and `$n`,
//! backslashes anywhere (escape strings, `standard_conforming_strings`
//! off), control characters and non-ASCII text. What it does handle it
//! handles exactly as PostgreSQL's scanner does: `'…'` strings with `''`
//! doubled quotes (and the adjacent-literal continuation across a newline
//! is kept verbatim, since the whitespace stays in the key), `"…"` quoted
//! identifiers kept verbatim, and numbers only where a token starts.

/// Marks a number literal in a shape.
const NUMBER: char = '\u{1}';
/// Marks a string literal in a shape.
const STRING: char = '\u{2}';

/// The literal shape of `sql`, or `None` when it uses syntax the lexer does
/// not model (the caller must parse it).
pub fn literal_shape(sql: &str) -> Option<String> {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    // Whether the previous byte continues an identifier or keyword (so a
    // digit there is part of it, not a number).
    let mut in_word = false;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\'' => {
                // A string literal: up to the closing quote that is not
                // doubled. Prefixes (E, B, X, N, U&) are words before it; E
                // strings need backslashes to matter, which give up below.
                let mut j = i + 1;
                loop {
                    match bytes.get(j) {
                        None => return None,
                        Some(b'\'') if bytes.get(j + 1) == Some(&b'\'') => j += 2,
                        Some(b'\'') => break,
                        // An escape with standard_conforming_strings off.
                        Some(b'\\') => return None,
                        Some(&c) if !plain(c) => return None,
                        Some(_) => j += 1,
                    }
                }
                out.push(STRING);
                i = j + 1;
                in_word = false;
            }
            b'"' => {
                // A quoted identifier, kept as it is.
                let mut j = i + 1;
                loop {
                    match bytes.get(j) {
                        None => return None,
                        Some(b'"') if bytes.get(j + 1) == Some(&b'"') => j += 2,
                        Some(b'"') => break,
                        Some(&c) if !plain(c) => return None,
                        Some(_) => j += 1,
                    }
                }
                out.push_str(sql.get(i..=j)?);
                i = j + 1;
                in_word = true;
            }
            b'0'..=b'9' if !in_word => {
                let j = number_end(bytes, i);
                out.push(NUMBER);
                i = j;
                in_word = false;
            }
            b'.' if !in_word && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let j = number_end(bytes, i);
                out.push(NUMBER);
                i = j;
                in_word = false;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => return None,
            b'/' if bytes.get(i + 1) == Some(&b'*') => return None,
            b'$' | b'\\' => return None,
            _ if !plain(b) => return None,
            _ => {
                out.push(char::from(b));
                in_word = b.is_ascii_alphanumeric() || b == b'_';
                i += 1;
            }
        }
    }
    Some(out)
}

/// Printable ASCII or ordinary whitespace: what the lexer models.
fn plain(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r') || (0x20..0x7f).contains(&b)
}

/// The end of a number starting at `start`: digits, one decimal point, an
/// exponent. Anything glued after it (`1abc`) starts the next token, as in
/// PostgreSQL's scanner; it is kept in the shape verbatim.
fn number_end(bytes: &[u8], start: usize) -> usize {
    let digits = |mut j: usize| {
        while bytes.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        j
    };
    let mut j = digits(start);
    if bytes.get(j) == Some(&b'.') && bytes.get(j + 1) != Some(&b'.') {
        j = digits(j + 1);
    }
    if matches!(bytes.get(j), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(j + 1), Some(b'+' | b'-')));
        if bytes.get(j + 1 + sign).is_some_and(u8::is_ascii_digit) {
            j = digits(j + 1 + sign);
        }
    }
    j
}

/// The text [`crate::analyze`] gives the only statement of `sql` (trimmed,
/// without its terminating semicolon), for a string whose shape has at most
/// one semicolon, at its end.
pub fn single_statement_text(sql: &str) -> Option<&str> {
    let trimmed = sql.trim();
    let body = trimmed.strip_suffix(';').unwrap_or(trimmed).trim_end();
    (!body.contains(';')).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze;

    #[test]
    fn literals_become_placeholders() {
        let a = literal_shape("SELECT abalance FROM pgbench_accounts WHERE aid = 42;").unwrap();
        let b = literal_shape("SELECT abalance FROM pgbench_accounts WHERE aid = 7;").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            literal_shape("SELECT * FROM t WHERE name = 'it''s' AND x > 1.5e3").unwrap(),
            literal_shape("SELECT * FROM t WHERE name = 'x' AND x > 2").unwrap()
        );
    }

    #[test]
    fn structure_stays_in_the_shape() {
        let base = literal_shape("SELECT a FROM t WHERE id = 1").unwrap();
        for other in [
            "SELECT a FROM u WHERE id = 1",
            "SELECT a FROM t WHERE id = 1 OR true",
            "SELECT a FROM t1 WHERE id = 1",
            "SELECT a FROM \"t\" WHERE id = 1",
            "SELECT a FROM t WHERE id = 'x'",
            "SELECT a FROM t WHERE id = 1; DELETE FROM t",
        ] {
            assert_ne!(
                literal_shape(other).as_deref(),
                Some(base.as_str()),
                "{other}"
            );
        }
        // Digits inside identifiers are not numbers.
        assert_ne!(
            literal_shape("SELECT c1 FROM t2").unwrap(),
            literal_shape("SELECT c2 FROM t2").unwrap()
        );
    }

    #[test]
    fn pgbench_statements_are_reusable_by_shape() {
        for (a, b) in [
            (
                "SELECT abalance FROM pgbench_accounts WHERE aid = 86393;",
                "SELECT abalance FROM pgbench_accounts WHERE aid = 7;",
            ),
            (
                "UPDATE pgbench_accounts SET abalance = abalance + -2468 WHERE aid = 1234;",
                "UPDATE pgbench_accounts SET abalance = abalance + -17 WHERE aid = 99;",
            ),
            (
                "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 53283, -2468, CURRENT_TIMESTAMP);",
                "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 2, -3, CURRENT_TIMESTAMP);",
            ),
        ] {
            assert_eq!(literal_shape(a), literal_shape(b), "{a}");
            assert!(literal_shape(a).is_some(), "{a}");
            let statements = analyze(a, &[]).unwrap();
            assert!(statements[0].shape_reusable(), "{a}: {:?}", statements[0]);
            let reused = statements[0].with_text(single_statement_text(b).unwrap());
            let fresh = analyze(b, &[]).unwrap();
            assert_eq!(reused, fresh[0], "{b}");
        }
    }

    #[test]
    fn gives_up_on_what_it_does_not_model() {
        for sql in [
            "SELECT 1 -- comment",
            "SELECT /* c */ 1",
            "SELECT $$x$$",
            "SELECT $1",
            "SELECT E'\\''",
            "SELECT 'a\\'",
            "SELECT 'unterminated",
            "SELECT \"unterminated",
            "SELECT 'é'",
            "SELECT '\u{1}'",
        ] {
            assert_eq!(literal_shape(sql), None, "{sql}");
        }
    }

    #[test]
    fn single_statement_text_matches_the_analysis() {
        for sql in [
            "SELECT 1",
            "SELECT 1;",
            "  SELECT 1 ;  ",
            "UPDATE t SET a = 'x;y' WHERE id = 3;\n",
            "select a from t where b = 'semi'",
        ] {
            let statements = analyze(sql, &[]).unwrap();
            let text = single_statement_text(sql);
            if sql.contains("'x;y'") {
                // A semicolon inside a literal: not a single-statement text
                // by this cheap test; the caller parses.
                assert_eq!(text, None);
                continue;
            }
            assert_eq!(text, Some(statements[0].text.as_str()), "{sql:?}");
        }
    }
}
