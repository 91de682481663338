//! Why a query string could not be analysed. Every error means "deny".

/// A query string that cannot be analysed; the caller denies it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnalyzeError {
    /// PostgreSQL's grammar rejects the string; the message is PostgreSQL's own
    /// (`syntax error at or near "FORM"`).
    #[error("{message}")]
    Parse {
        /// PostgreSQL's message, lowercase as PostgreSQL writes it.
        message: String,
        /// Byte offset into the query string where the parser stopped, when known.
        cursor: Option<usize>,
    },
    /// The string holds no statement at all (empty, blanks, comments, `;;`).
    #[error("query string holds no statement")]
    Empty,
    /// The string contains a NUL byte, which no PostgreSQL query can.
    #[error("query string contains a nul byte at offset {0}")]
    NulByte(usize),
    /// The statement nests deeper than the parser binding can hand over
    /// (about 25 nested subqueries, or a 50-term `a || b || …` chain).
    #[error("query nests too deeply to analyse")]
    TooDeep,
    /// The parser answered with something this crate could not read; a bug in
    /// the parser binding, never the caller's fault.
    #[error("parser returned an unreadable tree")]
    Internal,
}

impl AnalyzeError {
    /// Where in the query string the problem is, for a caret under the query.
    pub fn cursor(&self) -> Option<usize> {
        match self {
            AnalyzeError::Parse { cursor, .. } => *cursor,
            AnalyzeError::NulByte(at) => Some(*at),
            AnalyzeError::Empty | AnalyzeError::TooDeep | AnalyzeError::Internal => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase() {
        let errors = [
            AnalyzeError::Parse {
                message: "syntax error at or near \"FORM\"".into(),
                cursor: Some(9),
            },
            AnalyzeError::Empty,
            AnalyzeError::NulByte(3),
            AnalyzeError::TooDeep,
            AnalyzeError::Internal,
        ];
        for e in errors {
            let text = e.to_string();
            assert!(text.starts_with(|c: char| c.is_lowercase()), "{text}");
        }
    }

    #[test]
    fn cursor_points_at_the_problem() {
        let e = AnalyzeError::Parse {
            message: "x".into(),
            cursor: Some(4),
        };
        assert_eq!(e.cursor(), Some(4));
        assert_eq!(AnalyzeError::NulByte(2).cursor(), Some(2));
        assert_eq!(AnalyzeError::Empty.cursor(), None);
    }
}
