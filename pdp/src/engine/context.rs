//! Cedar context records: the session facts and the statement attributes.

use cedar_policy::{Context, ContextCreationError, RestrictedExpression};
use palisade_sql::Attributes;

use super::SessionFacts;

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> RestrictedExpression {
    RestrictedExpression::new_set(items.into_iter().map(string))
}

fn record(
    fields: impl IntoIterator<Item = (&'static str, RestrictedExpression)>,
) -> RestrictedExpression {
    // INVARIANT: field names are distinct constants, the only way new_record fails.
    let fields: Vec<(String, RestrictedExpression)> =
        fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    RestrictedExpression::new_record(fields)
        .unwrap_or_else(|_| RestrictedExpression::new_bool(false))
}

/// The `session` record (schema type `SessionInfo`).
pub fn session_record(facts: &SessionFacts) -> RestrictedExpression {
    record([
        ("target", string(&facts.target)),
        ("application_name", string(&facts.application_name)),
        ("client_address", string(&facts.client_address)),
        ("database_user", string(&facts.database_user)),
        ("tls", RestrictedExpression::new_bool(facts.tls)),
    ])
}

/// Context of `connect`, `assume_role` and `unmask` (`SessionContext`).
pub fn session_context(
    session: &RestrictedExpression,
) -> Result<Context, Box<ContextCreationError>> {
    Context::from_pairs([("session".to_owned(), session.clone())]).map_err(Box::new)
}

/// Context of a statement action (`StatementContext`).
pub fn statement_context(
    session: &RestrictedExpression,
    a: &Attributes,
    filtered_classifications: &[String],
    copied_classifications: &[String],
) -> Result<Context, Box<ContextCreationError>> {
    let filtered_columns: Vec<String> = a
        .filtered_columns
        .iter()
        .map(|c| match &c.relation {
            Some(r) => format!("{}.{}.{}", r.schema, r.name, c.column),
            None => c.column.clone(),
        })
        .collect();
    let statement = record([
        ("kind", string(a.kind.as_str())),
        ("has_where", RestrictedExpression::new_bool(a.has_where)),
        ("has_limit", RestrictedExpression::new_bool(a.has_limit)),
        ("is_ddl", RestrictedExpression::new_bool(a.is_ddl)),
        ("functions", strings(a.functions.iter().map(String::as_str))),
        ("fingerprint", string(&a.fingerprint)),
        (
            "copy_program",
            RestrictedExpression::new_bool(a.copy_program),
        ),
        (
            "inner_kind",
            string(a.inner_kind.map_or("", |k| k.as_str())),
        ),
        (
            "object_name",
            string(a.object_name.as_deref().unwrap_or("")),
        ),
        (
            "filtered_columns",
            strings(filtered_columns.iter().map(String::as_str)),
        ),
        (
            "filtered_classifications",
            strings(filtered_classifications.iter().map(String::as_str)),
        ),
        (
            "copied_classifications",
            strings(copied_classifications.iter().map(String::as_str)),
        ),
    ]);
    Context::from_pairs([
        ("session".to_owned(), session.clone()),
        ("statement".to_owned(), statement),
    ])
    .map_err(Box::new)
}
