//! One call into PostgreSQL's parser per query string.

use pg_query::protobuf::ParseResult;

use crate::error::AnalyzeError;

/// Parses a whole query string with PostgreSQL's grammar.
pub(crate) fn parse(sql: &str) -> Result<ParseResult, AnalyzeError> {
    // The parser takes a C string; PostgreSQL's wire protocol cannot carry
    // a NUL inside a query either, so this is never a legitimate query.
    if let Some(at) = sql.bytes().position(|b| b == 0) {
        return Err(AnalyzeError::NulByte(at));
    }
    // pg_query's `ParseResult::new` summarises the tree with a `cast!`
    // macro that panics on node shapes the grammar does not produce. Should
    // one ever appear, it is a denied statement, not a dead task.
    let parsed =
        std::panic::catch_unwind(|| pg_query::parse(sql, 0)).map_err(|_| AnalyzeError::Internal)?;
    match parsed {
        Ok(parsed) => Ok(parsed.protobuf),
        Err(pg_query::Error::Parse(message)) => Err(AnalyzeError::Parse {
            message,
            cursor: crate::ffi::error_cursor(sql),
        }),
        // pg_query hands the tree over as protobuf, and prost refuses to
        // decode more than 100 nested messages. Lifting that limit would let
        // hostile nesting overflow the caller's stack (an abort, not an
        // error), so deep statements are refused instead.
        Err(pg_query::Error::Decode(e)) if e.to_string().contains("recursion limit") => {
            Err(AnalyzeError::TooDeep)
        }
        Err(_) => Err(AnalyzeError::Internal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_keep_postgres_message_and_position() {
        let err = parse("SELECT * FORM t").unwrap_err();
        assert_eq!(
            err,
            AnalyzeError::Parse {
                message: "syntax error at or near \"FORM\"".into(),
                cursor: Some(9),
            }
        );
    }

    #[test]
    fn errors_at_the_end_point_past_the_input() {
        let sql = "SELECT (1";
        let err = parse(sql).unwrap_err();
        assert_eq!(err.cursor(), Some(sql.len()));
        assert_eq!(err.to_string(), "syntax error at end of input");
    }

    #[test]
    fn cursors_are_byte_offsets_after_multibyte_text() {
        // "é" is one character but two bytes: FROM is character 12, byte 13.
        let err = parse("SELECT 'é', FROM t").unwrap_err();
        assert_eq!(err.to_string(), "syntax error at or near \"FROM\"");
        assert_eq!(err.cursor(), Some(13));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let sql = format!("SELECT {}1{}", "1+(".repeat(200), ")".repeat(200));
        assert_eq!(parse(&sql), Err(AnalyzeError::TooDeep));
        let sql = format!("SELECT {}1{}", "1+(".repeat(5000), ")".repeat(5000));
        assert!(matches!(parse(&sql), Err(AnalyzeError::Parse { .. })));
        let sql = format!("SELECT {}1{}", "1+(".repeat(20), ")".repeat(20));
        assert!(parse(&sql).is_ok());
    }

    #[test]
    fn nul_bytes_are_refused() {
        assert_eq!(
            parse("SELECT 1\0; DROP TABLE t"),
            Err(AnalyzeError::NulByte(8))
        );
    }
}
