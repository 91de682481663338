//! From a query string to one [`Statement`] per SQL statement.

use std::sync::Arc;

use pg_query::protobuf::RawStmt;
use pg_query::{FingerprintOptions, NodeEnum};

use crate::classify::{Class, classify};
use crate::error::AnalyzeError;
use crate::kind::StatementKind;
use crate::lineage::lineage;
use crate::parse::parse;
use crate::search_path::SearchPath;
use crate::statement::{Attributes, Lineage, Relation, Statement};
use crate::walk::{Facts, walk};

/// Fingerprints tell relations apart by schema and full name, and ignore
/// aliases: with pg_query's defaults `SELECT * FROM secrets s` and
/// `SELECT * FROM public_data s` share a fingerprint, which would let a
/// cached or allow-listed fingerprint stand for a different table.
fn fingerprint_options() -> FingerprintOptions {
    FingerprintOptions::RANGEVAR_PG17_COMPAT | FingerprintOptions::FULL_RELNAME
}

/// Analyses a query string: one [`Statement`] per SQL statement, in order.
///
/// `search_path` is the session's search path when the string starts (empty
/// means `public`); a `SET search_path` inside the string applies to the
/// statements after it. An unqualified relation is reported once per schema
/// it could resolve to. A string that does not parse is an error, and the caller
/// denies it; so is a string without any statement.
pub fn analyze(sql: &str, search_path: &[&str]) -> Result<Vec<Statement>, AnalyzeError> {
    let tree = parse(sql)?;
    let mut statements: Vec<Statement> = Vec::with_capacity(tree.stmts.len());
    // PostgreSQL runs the statements of one string in order: a `SET
    // search_path` changes how every later statement resolves.
    let mut changed: Option<Vec<String>> = None;
    for raw in &tree.stmts {
        let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
            continue;
        };
        let text = statement_text(sql, raw);
        let analysed = match &changed {
            Some(schemas) => {
                let schemas: Vec<&str> = schemas.iter().map(String::as_str).collect();
                statement(node, text, &SearchPath::new(&schemas))?
            }
            None => statement(node, text, &SearchPath::new(search_path))?,
        };
        if let Some(path) = &analysed.sets_search_path {
            changed = Some(path.clone());
        }
        statements.push(analysed);
    }
    if statements.is_empty() {
        return Err(AnalyzeError::Empty);
    }
    Ok(statements)
}

/// This statement's own text: `stmt_len` 0 means "to the end".
fn statement_text<'s>(sql: &'s str, raw: &RawStmt) -> &'s str {
    let start = usize::try_from(raw.stmt_location).unwrap_or(0);
    let end = match usize::try_from(raw.stmt_len) {
        Ok(0) | Err(_) => sql.len(),
        Ok(len) => start.saturating_add(len).min(sql.len()),
    };
    // INVARIANT: the parser reports byte offsets on token boundaries; should
    // one ever not be, the whole string stands in (more, never less).
    sql.get(start..end).unwrap_or(sql).trim()
}

fn statement(
    node: &NodeEnum,
    text: &str,
    path: &SearchPath<'_>,
) -> Result<Statement, AnalyzeError> {
    let class = classify(node);
    let (facts, lineage) = match class.schema_first {
        Some(schema) => {
            let path = path.with_first(schema);
            (walk(node, &path), lineage(node, &path))
        }
        None => (walk(node, path), lineage(node, path)),
    };
    let fingerprint = pg_query::fingerprint(text, 0, fingerprint_options())
        .map_err(per_statement_error)?
        .hex;
    let normalized = pg_query::normalize(text).map_err(per_statement_error)?;
    Ok(assemble(
        class,
        facts,
        lineage,
        path,
        text,
        fingerprint,
        normalized,
    ))
}

fn per_statement_error(e: pg_query::Error) -> AnalyzeError {
    match e {
        pg_query::Error::Parse(message) => AnalyzeError::Parse {
            message,
            cursor: None,
        },
        _ => AnalyzeError::Internal,
    }
}

fn assemble(
    class: Class<'_>,
    mut facts: Facts,
    lineage: Option<Lineage>,
    path: &SearchPath<'_>,
    text: &str,
    fingerprint: String,
    normalized: String,
) -> Statement {
    for (schema, name) in &class.named_relations {
        if schema.is_empty() {
            facts
                .writes
                .extend(path.candidates(name).map(|s| Relation::new(s, *name)));
        } else {
            facts.writes.push(Relation::new(*schema, *name));
        }
    }
    let kind = raise(class.kind, facts.dml_executed);
    let inner_kind = class.inner_kind.map(|k| raise(k, facts.dml_any));
    let changes_rows = kind.dml_rank().is_some();
    let has_where = match kind {
        StatementKind::Update | StatementKind::Delete | StatementKind::Merge => {
            !facts.unfiltered_change
        }
        StatementKind::Insert => false,
        _ => facts.select_where.unwrap_or(false),
    };
    let copy_program = class.copy.as_ref().is_some_and(|c| c.program);
    let object_name = (!class.objects.is_empty()).then(|| class.objects.join(", "));
    Statement {
        text: text.to_owned(),
        attributes: Arc::new(Attributes {
            kind,
            reads: sorted(facts.reads),
            writes: sorted(facts.writes),
            functions: sorted(facts.functions),
            has_where,
            // A LIMIT on the query around a data-modifying CTE bounds nothing.
            has_limit: !changes_rows && facts.select_limit.unwrap_or(false),
            is_ddl: class.kind.is_ddl(),
            fingerprint,
            normalized,
            copy_program,
            filtered_columns: sorted(facts.filtered),
            inner_kind,
            object_name,
        }),
        sql_prepare: class.prepare,
        sql_execute: class.execute,
        sql_deallocate: class.deallocate,
        transaction: class.transaction,
        copy: class.copy,
        sets_search_path: class.search_path,
        lineage: lineage.map(Arc::new),
    }
}

/// A statement's kind, raised to its most dangerous data-modifying part.
fn raise(kind: StatementKind, dml: Option<StatementKind>) -> StatementKind {
    match (kind.dml_rank(), dml) {
        (_, None) => kind,
        (Some(own), Some(part)) if part.dml_rank() <= Some(own) => kind,
        (_, Some(part)) => part,
    }
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort_unstable();
    items.dedup();
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_text_is_cut_per_statement() {
        let sql = " SELECT 1 ;  /* c */ SELECT 2";
        let tree = parse(sql).unwrap();
        let texts: Vec<_> = tree.stmts.iter().map(|r| statement_text(sql, r)).collect();
        // PostgreSQL starts a statement at its first token, after comments.
        assert_eq!(texts, ["SELECT 1", "SELECT 2"]);
    }

    #[test]
    fn raising_keeps_the_more_dangerous_kind() {
        assert_eq!(
            raise(StatementKind::Select, Some(StatementKind::Delete)),
            StatementKind::Delete
        );
        assert_eq!(
            raise(StatementKind::Delete, Some(StatementKind::Insert)),
            StatementKind::Delete
        );
        assert_eq!(
            raise(StatementKind::Insert, Some(StatementKind::Update)),
            StatementKind::Update
        );
        assert_eq!(
            raise(StatementKind::Create, Some(StatementKind::Delete)),
            StatementKind::Delete
        );
        assert_eq!(raise(StatementKind::Explain, None), StatementKind::Explain);
    }

    #[test]
    fn fingerprints_tell_tables_apart_behind_equal_aliases() {
        let a = analyze("SELECT * FROM secrets s WHERE id = 1", &[]).unwrap();
        let b = analyze("SELECT * FROM public_data s WHERE id = 2", &[]).unwrap();
        let c = analyze("SELECT * FROM secrets s WHERE id = 3", &[]).unwrap();
        assert_ne!(a[0].attributes.fingerprint, b[0].attributes.fingerprint);
        assert_eq!(a[0].attributes.fingerprint, c[0].attributes.fingerprint);
        let d = analyze("SELECT * FROM other.secrets s WHERE id = 3", &[]).unwrap();
        assert_ne!(a[0].attributes.fingerprint, d[0].attributes.fingerprint);
    }
}
