//! Policy problems located for their author: file, line and column.

use std::fmt;
use std::path::Path;

/// One problem found while loading the policy directory, pointing at the place
/// in the file where the author must look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    /// File name relative to the policy directory.
    pub file: String,
    /// 1-based line; 0 when the problem has no position (e.g. a missing file).
    pub line: u32,
    /// 1-based column; 0 when unknown.
    pub column: u32,
    /// What is wrong, in one sentence.
    pub message: String,
}

impl PolicyProblem {
    /// A problem with no position inside the file.
    pub fn whole_file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: 0,
            column: 0,
            message: message.into(),
        }
    }

    /// A problem at a byte offset of `source`.
    pub fn at_offset(
        file: impl Into<String>,
        source: &str,
        offset: usize,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = line_column(source, offset);
        Self {
            file: file.into(),
            line,
            column,
            message: message.into(),
        }
    }

    /// Problems from a miette diagnostic (cedar parse, schema and validation
    /// errors): one per labelled span, or one for the whole file without labels.
    pub fn from_diagnostic(
        file: &str,
        source: &str,
        diagnostic: &dyn miette::Diagnostic,
        message: &str,
    ) -> Vec<Self> {
        let mut message = message.to_owned();
        if let Some(help) = diagnostic.help() {
            message.push_str(&format!(" ({help})"));
        }
        let problems: Vec<Self> = diagnostic
            .labels()
            .into_iter()
            .flatten()
            .map(|label| Self::at_offset(file, source, label.offset(), message.clone()))
            .collect();
        if problems.is_empty() {
            vec![Self::whole_file(file, message)]
        } else {
            problems
        }
    }
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

/// The display name of a file inside the policy directory.
pub fn display_name(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(source: &str, offset: usize) -> (u32, u32) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let src = "ab\ncdé\nf";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 3), (2, 1));
        assert_eq!(line_column(src, 5), (2, 3));
        assert_eq!(line_column(src, src.len()), (3, 2));
        assert_eq!(line_column(src, 999), (3, 2));
    }

    #[test]
    fn display_names_the_place() {
        let p = PolicyProblem::at_offset("ci.cedar", "x\ny", 2, "bad");
        assert_eq!(p.to_string(), "ci.cedar:2:1: bad");
    }
}
