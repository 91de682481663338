//! Statements that change session state the agent must follow:
//! `SET`/`RESET`, transactions, `COPY`, and `EXPLAIN`'s options.

use pg_query::NodeEnum;
use pg_query::protobuf::{
    CopyStmt, DeallocateStmt, DiscardMode, DiscardStmt, ExecuteStmt, ExplainStmt, TransactionStmt,
    TransactionStmtKind, VariableSetKind, VariableSetStmt,
};

use super::{Class, sets_identity};
use crate::kind::StatementKind;
use crate::names::{inner, object_text};
use crate::statement::{CopyDirection, CopyFormat, CopyInfo, TransactionOp};

/// PostgreSQL's default `search_path`.
pub(crate) fn default_search_path() -> Vec<String> {
    vec!["$user".to_owned(), "public".to_owned()]
}

/// `COPY`: direction, where the data goes, and whether a program runs.
pub(super) fn copy(c: &CopyStmt) -> Class<'_> {
    let (kind, direction) = if c.is_from {
        (StatementKind::CopyFrom, CopyDirection::From)
    } else {
        (StatementKind::CopyTo, CopyDirection::To)
    };
    let mut class = Class::of(kind);
    class.copy = Some(CopyInfo {
        direction,
        stdio: c.filename.is_empty() && !c.is_program,
        program: c.is_program,
        target: (!c.filename.is_empty()).then(|| c.filename.clone()),
        format: CopyFormat::Text,
        delimiter: None,
        quote: None,
        escape: None,
        null: None,
        header: false,
    });
    if let Some(info) = class.copy.as_mut() {
        copy_options(c, info);
    }
    class
}

/// The data-format options of a `COPY`, as written (the grammar turns the
/// legacy `BINARY`, `CSV`, `HEADER`, `DELIMITER [AS] 'c'`… into the same
/// options as `WITH (FORMAT csv, …)`).
fn copy_options(c: &CopyStmt, info: &mut CopyInfo) {
    for option in c.options.iter().filter_map(inner) {
        let NodeEnum::DefElem(d) = option else {
            continue;
        };
        let arg = d.arg.as_deref().and_then(inner);
        let text = match arg {
            Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
            _ => None,
        };
        let name = d.defname.to_ascii_lowercase();
        match name.as_str() {
            "format" => {
                info.format = match text.map(str::to_ascii_lowercase).as_deref() {
                    Some("csv") => CopyFormat::Csv,
                    Some("binary") => CopyFormat::Binary,
                    _ => CopyFormat::Text,
                }
            }
            "delimiter" => info.delimiter = text.and_then(single_char),
            "quote" => info.quote = text.and_then(single_char),
            "escape" => info.escape = text.and_then(single_char),
            "null" => info.null = text.map(str::to_owned),
            "header" => info.header = copy_header(arg),
            _ => {}
        }
    }
}

/// The one character of an option PostgreSQL requires to be one character.
fn single_char(text: &str) -> Option<char> {
    let mut chars = text.chars();
    let c = chars.next()?;
    chars.next().is_none().then_some(c)
}

/// `HEADER`, `HEADER true|on|1|match…` as PostgreSQL reads it.
fn copy_header(arg: Option<&NodeEnum>) -> bool {
    match arg {
        None => true,
        Some(NodeEnum::Boolean(b)) => b.boolval,
        Some(NodeEnum::Integer(i)) => i.ival != 0,
        Some(NodeEnum::String(s)) => {
            s.sval.eq_ignore_ascii_case("match") || parse_bool(&s.sval).unwrap_or(false)
        }
        Some(_) => false,
    }
}

/// PostgreSQL's `parse_bool`: case-insensitive prefixes of `true`, `false`,
/// `yes`, `no`, at least two letters of `on`/`off`, `1` and `0`.
fn parse_bool(text: &str) -> Option<bool> {
    let lower = text.to_ascii_lowercase();
    let prefix_of = |word: &str| !lower.is_empty() && word.starts_with(lower.as_str());
    match lower.as_bytes().first()? {
        b't' if prefix_of("true") => Some(true),
        b'y' if prefix_of("yes") => Some(true),
        b'f' if prefix_of("false") => Some(false),
        b'n' if prefix_of("no") => Some(false),
        b'o' if lower.len() >= 2 && prefix_of("on") => Some(true),
        b'o' if lower.len() >= 2 && prefix_of("off") => Some(false),
        b'1' if lower.len() == 1 => Some(true),
        b'0' if lower.len() == 1 => Some(false),
        _ => None,
    }
}

/// `EXECUTE p(…)`: the agent decides it as what `p` was prepared as.
pub(super) fn execute(e: &ExecuteStmt) -> Class<'_> {
    let mut class = Class::of(StatementKind::Execute);
    class.execute = Some(e.name.clone());
    class
}

/// `DEALLOCATE p` / `DEALLOCATE ALL`.
pub(super) fn deallocate(d: &DeallocateStmt) -> Class<'_> {
    let mut class = Class::of(StatementKind::Deallocate);
    class.deallocate = Some((!d.isall && !d.name.is_empty()).then(|| d.name.clone()));
    class
}

/// `DISCARD ALL` resets every setting and drops every prepared statement.
pub(super) fn discard(d: &DiscardStmt) -> Class<'_> {
    let mut class = Class::of(StatementKind::Other);
    if d.target() == DiscardMode::DiscardAll {
        class.search_path = Some(default_search_path());
        class.deallocate = Some(None);
    }
    class
}

/// Transaction control.
pub(super) fn transaction(t: &TransactionStmt) -> Class<'_> {
    let mut class = Class::of(StatementKind::Transaction);
    let savepoint = || t.savepoint_name.clone();
    let gid = || t.gid.clone();
    class.transaction = match t.kind() {
        TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart => {
            Some(TransactionOp::Begin)
        }
        TransactionStmtKind::TransStmtCommit => Some(TransactionOp::Commit),
        TransactionStmtKind::TransStmtRollback => Some(TransactionOp::Rollback),
        TransactionStmtKind::TransStmtSavepoint => Some(TransactionOp::Savepoint(savepoint())),
        TransactionStmtKind::TransStmtRelease => Some(TransactionOp::Release(savepoint())),
        TransactionStmtKind::TransStmtRollbackTo => Some(TransactionOp::RollbackTo(savepoint())),
        TransactionStmtKind::TransStmtPrepare => Some(TransactionOp::Prepare(gid())),
        TransactionStmtKind::TransStmtCommitPrepared => Some(TransactionOp::CommitPrepared(gid())),
        TransactionStmtKind::TransStmtRollbackPrepared => {
            Some(TransactionOp::RollbackPrepared(gid()))
        }
        TransactionStmtKind::Undefined => None,
    };
    class
}

/// `SET`/`RESET`: identity changes are [`StatementKind::Role`], everything
/// else [`StatementKind::Set`] naming the setting; `search_path` changes
/// are reported so later statements resolve against the new path.
pub(super) fn set(v: &VariableSetStmt) -> Class<'_> {
    let kind = v.kind();
    if sets_identity(v) {
        let mut class = Class::of(StatementKind::Role);
        if kind == VariableSetKind::VarSetValue {
            for arg in v.args.iter().filter_map(inner) {
                class.object(object_text(arg));
            }
        }
        return class;
    }
    let mut class = Class::of(StatementKind::Set);
    if kind == VariableSetKind::VarResetAll {
        class.object_str("all");
        class.search_path = Some(default_search_path());
        return class;
    }
    class.object_str(&v.name.to_ascii_lowercase());
    if v.name.eq_ignore_ascii_case("search_path") {
        class.search_path = match kind {
            VariableSetKind::VarSetValue => Some(
                v.args
                    .iter()
                    .filter_map(inner)
                    .filter_map(setting_text)
                    .collect(),
            ),
            VariableSetKind::VarSetDefault | VariableSetKind::VarReset => {
                Some(default_search_path())
            }
            VariableSetKind::VarSetCurrent
            | VariableSetKind::VarSetMulti
            | VariableSetKind::VarResetAll
            | VariableSetKind::Undefined => None,
        };
    }
    class
}

/// One value of a `SET` list, as PostgreSQL keeps it (`'a, b'` is one name).
fn setting_text(node: &NodeEnum) -> Option<String> {
    match node {
        NodeEnum::AConst(c) => match &c.val {
            Some(pg_query::protobuf::a_const::Val::Fval(f)) => Some(f.fval.clone()),
            Some(pg_query::protobuf::a_const::Val::Boolval(b)) => {
                Some(if b.boolval { "on" } else { "off" }.to_owned())
            }
            _ => object_text(node),
        },
        _ => object_text(node),
    }
}

/// Whether an `EXPLAIN` executes its statement: `ANALYZE` present and not
/// explicitly switched off. Any value that is not clearly "off" counts as on.
pub(crate) fn explain_analyzes(e: &ExplainStmt) -> bool {
    e.options.iter().filter_map(inner).any(|option| {
        let NodeEnum::DefElem(d) = option else {
            return false;
        };
        if !d.defname.eq_ignore_ascii_case("analyze") {
            return false;
        }
        match d.arg.as_deref().and_then(inner) {
            None => true,
            Some(NodeEnum::Boolean(b)) => b.boolval,
            Some(NodeEnum::Integer(i)) => i.ival != 0,
            Some(NodeEnum::String(s)) => !matches!(
                s.sval.to_ascii_lowercase().as_str(),
                "false" | "off" | "no" | "0" | "f" | "n"
            ),
            Some(_) => true,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(sql: &str) -> (StatementKind, Option<Vec<String>>, Vec<String>) {
        let parsed = pg_query::parse(sql, 0).unwrap();
        let node = parsed.protobuf.stmts[0]
            .stmt
            .as_ref()
            .unwrap()
            .node
            .as_ref()
            .unwrap()
            .clone();
        let class = super::super::classify(&node);
        (class.kind, class.search_path, class.objects)
    }

    #[test]
    fn search_path_values_are_one_schema_each() {
        let (kind, path, objects) = classify("SET search_path TO a, \"B\", 'c, d'");
        assert_eq!(kind, StatementKind::Set);
        assert_eq!(path.unwrap(), ["a", "B", "c, d"]);
        assert_eq!(objects, ["search_path"]);
    }

    #[test]
    fn set_schema_is_search_path() {
        assert_eq!(classify("SET SCHEMA 'x'").1.unwrap(), ["x"]);
    }

    #[test]
    fn resets_restore_the_default_path() {
        for sql in [
            "RESET search_path",
            "SET search_path TO DEFAULT",
            "RESET ALL",
            "SET LOCAL search_path = DEFAULT",
        ] {
            assert_eq!(classify(sql).1.unwrap(), ["$user", "public"], "{sql}");
        }
        assert_eq!(classify("SET work_mem = '1GB'").1, None);
    }

    #[test]
    fn explain_analyze_options() {
        let analyzes = |sql: &str| {
            let parsed = pg_query::parse(sql, 0).unwrap();
            let Some(NodeEnum::ExplainStmt(e)) =
                parsed.protobuf.stmts[0].stmt.as_ref().unwrap().node.clone()
            else {
                unreachable!()
            };
            explain_analyzes(&e)
        };
        assert!(analyzes("EXPLAIN ANALYZE SELECT 1"));
        assert!(analyzes("EXPLAIN (ANALYZE) SELECT 1"));
        assert!(analyzes("EXPLAIN (ANALYZE true) SELECT 1"));
        assert!(analyzes("EXPLAIN (ANALYZE 1, COSTS off) SELECT 1"));
        assert!(analyzes("EXPLAIN (analyse on) SELECT 1"));
        assert!(!analyzes("EXPLAIN (ANALYZE false) SELECT 1"));
        assert!(!analyzes("EXPLAIN (ANALYZE off) SELECT 1"));
        assert!(!analyzes("EXPLAIN SELECT 1"));
        assert!(!analyzes("EXPLAIN VERBOSE SELECT 1"));
    }

    fn copy_info(sql: &str) -> CopyInfo {
        let parsed = pg_query::parse(sql, 0).unwrap();
        let Some(NodeEnum::CopyStmt(c)) =
            parsed.protobuf.stmts[0].stmt.as_ref().unwrap().node.clone()
        else {
            unreachable!()
        };
        copy(&c).copy.unwrap()
    }

    #[test]
    fn copy_options_as_written() {
        let c = copy_info("COPY t TO STDOUT");
        assert_eq!(
            (c.format, c.delimiter, c.quote, c.escape, c.null, c.header),
            (CopyFormat::Text, None, None, None, None, false)
        );
        let c = copy_info(
            "COPY t TO STDOUT WITH (FORMAT csv, DELIMITER ';', QUOTE '''', ESCAPE '\\', \
             NULL 'NULL', HEADER)",
        );
        assert_eq!(
            (c.format, c.delimiter, c.quote, c.escape, c.null, c.header),
            (
                CopyFormat::Csv,
                Some(';'),
                Some('\''),
                Some('\\'),
                Some("NULL".to_owned()),
                true
            )
        );
        let c = copy_info("COPY t TO STDOUT CSV HEADER DELIMITER AS '|' NULL AS ''");
        assert_eq!(
            (c.format, c.delimiter, c.null.as_deref(), c.header),
            (CopyFormat::Csv, Some('|'), Some(""), true)
        );
        assert_eq!(
            copy_info("COPY BINARY t TO STDOUT").format,
            CopyFormat::Binary
        );
        assert_eq!(
            copy_info("COPY t FROM STDIN (FORMAT binary)").format,
            CopyFormat::Binary
        );
        assert_eq!(
            copy_info("COPY t FROM STDIN (FORMAT text, DELIMITER E'\\t')").delimiter,
            Some('\t')
        );
        assert_eq!(
            copy_info("COPY t TO STDOUT USING DELIMITERS ','").delimiter,
            Some(',')
        );
        for (sql, header) in [
            ("COPY t TO STDOUT (FORMAT csv, HEADER false)", false),
            ("COPY t TO STDOUT (FORMAT csv, HEADER off)", false),
            ("COPY t TO STDOUT (FORMAT csv, HEADER 0)", false),
            ("COPY t TO STDOUT (FORMAT csv, HEADER 1)", true),
            ("COPY t TO STDOUT (FORMAT csv, HEADER on)", true),
            ("COPY t TO STDOUT (FORMAT csv, HEADER true)", true),
            ("COPY t FROM STDIN (FORMAT csv, HEADER match)", true),
        ] {
            assert_eq!(copy_info(sql).header, header, "{sql}");
        }
    }

    #[test]
    fn postgres_booleans() {
        assert_eq!(parse_bool("TR"), Some(true));
        assert_eq!(parse_bool("o"), None);
        assert_eq!(parse_bool("of"), Some(false));
        assert_eq!(parse_bool("on"), Some(true));
        assert_eq!(parse_bool("nope"), None);
        assert_eq!(parse_bool(""), None);
    }

    #[test]
    fn transactions_carry_their_names() {
        let op = |sql: &str| {
            let parsed = pg_query::parse(sql, 0).unwrap();
            let Some(NodeEnum::TransactionStmt(t)) =
                parsed.protobuf.stmts[0].stmt.as_ref().unwrap().node.clone()
            else {
                unreachable!()
            };
            transaction(&t).transaction
        };
        assert_eq!(op("BEGIN"), Some(TransactionOp::Begin));
        assert_eq!(
            op("START TRANSACTION READ ONLY"),
            Some(TransactionOp::Begin)
        );
        assert_eq!(op("END"), Some(TransactionOp::Commit));
        assert_eq!(op("ABORT"), Some(TransactionOp::Rollback));
        assert_eq!(
            op("SAVEPOINT s1"),
            Some(TransactionOp::Savepoint("s1".into()))
        );
        assert_eq!(op("RELEASE s1"), Some(TransactionOp::Release("s1".into())));
        assert_eq!(
            op("ROLLBACK TO SAVEPOINT s1"),
            Some(TransactionOp::RollbackTo("s1".into()))
        );
        assert_eq!(
            op("PREPARE TRANSACTION 'g'"),
            Some(TransactionOp::Prepare("g".into()))
        );
        assert_eq!(
            op("COMMIT PREPARED 'g'"),
            Some(TransactionOp::CommitPrepared("g".into()))
        );
        assert_eq!(
            op("ROLLBACK PREPARED 'g'"),
            Some(TransactionOp::RollbackPrepared("g".into()))
        );
    }
}
