//! Statements that carry another statement: `PREPARE`, `EXPLAIN`,
//! `DECLARE CURSOR`, `CREATE TABLE AS`, `CREATE VIEW`, `SELECT INTO`.

use pg_query::protobuf::{
    CreateTableAsStmt, DeclareCursorStmt, ExplainStmt, Node, PrepareStmt, SelectStmt,
};

use super::session::explain_analyzes;
use super::{Class, MAX_WRAPPING, classify_at};
use crate::kind::StatementKind;
use crate::names::inner;

/// Classifies the statement a wrapper carries; a missing or too deeply
/// wrapped one is `Other`, which no policy mistakes for harmless.
pub(super) fn carried(query: Option<&Node>, depth: u8) -> Class<'_> {
    match query.and_then(inner) {
        Some(node) if depth < MAX_WRAPPING => classify_at(node, depth.saturating_add(1)),
        _ => Class::of(StatementKind::Other),
    }
}

/// `SELECT … INTO t` creates a table.
pub(super) fn select(s: &SelectStmt) -> Class<'_> {
    if s.into_clause.is_none() {
        return Class::of(StatementKind::Select);
    }
    let mut c = Class::of(StatementKind::Create);
    c.inner_kind = Some(StatementKind::Select);
    c
}

/// `PREPARE p AS …` is decided as what it prepares.
pub(super) fn prepare(p: &PrepareStmt, depth: u8) -> Class<'_> {
    let mut c = carried(p.query.as_deref(), depth);
    c.inner_kind = Some(c.kind);
    c.prepare = Some(p.name.clone());
    c
}

/// `EXPLAIN ANALYZE` executes, so it is decided as what it runs; plain
/// `EXPLAIN` only plans.
pub(super) fn explain(e: &ExplainStmt, depth: u8) -> Class<'_> {
    let inner = carried(e.query.as_deref(), depth);
    if explain_analyzes(e) {
        let mut c = inner;
        c.inner_kind = Some(c.kind);
        return c;
    }
    let mut c = Class::of(StatementKind::Explain);
    c.inner_kind = Some(inner.kind);
    c.plan_only = true;
    c
}

/// `DECLARE c CURSOR FOR …`.
pub(super) fn declare(d: &DeclareCursorStmt, depth: u8) -> Class<'_> {
    let mut c = Class::of(StatementKind::Cursor);
    c.inner_kind = Some(carried(d.query.as_deref(), depth).kind);
    c
}

/// `CREATE TABLE … AS` / `CREATE MATERIALIZED VIEW … AS`, which may run a
/// prepared statement (`AS EXECUTE p`).
pub(super) fn create_table_as(t: &CreateTableAsStmt, depth: u8) -> Class<'_> {
    let inner = carried(t.query.as_deref(), depth);
    let mut c = Class::of(StatementKind::Create);
    c.inner_kind = Some(inner.kind);
    c.execute = inner.execute;
    c
}

/// `CREATE VIEW v AS SELECT …`.
pub(super) fn view() -> Class<'static> {
    let mut c = Class::of(StatementKind::Create);
    c.inner_kind = Some(StatementKind::Select);
    c
}
