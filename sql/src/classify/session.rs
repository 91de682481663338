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
use crate::statement::{CopyDirection, CopyInfo, TransactionOp};

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
    });
    class
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
