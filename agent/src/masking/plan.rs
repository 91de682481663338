//! What to do with each column of a result: from the database's own account
//! of where a column comes from when it gives one, and from the statement's
//! parse tree when it does not.
//!
//! PostgreSQL reports a result column's origin (table OID, attribute
//! number) only for a plain column reference, traced through subqueries and
//! CTEs but not into views; everything computed has origin 0. So:
//! - a column with an origin is masked when that origin is masked (a masked
//!   table column, or a view column derived from one);
//! - a computed column is masked as a whole when any column feeding it is
//!   masked (the lineage of the statement, position by position);
//! - a computed column fed by nothing masked is passed through the content
//!   detectors, which catch what no lineage can (a literal card number, a
//!   function that reads a table itself);
//! - a computed column of a statement whose lineage is unknown (`FETCH`,
//!   `EXECUTE`) is redacted when the session masks anything: the agent cannot
//!   show it is harmless.

use std::collections::BTreeSet;

use palisade_sql::{Lineage, SourceColumn, StatementKind};

use super::catalog::Snapshot;
use super::{ColumnAction, ColumnPlan, Format};
use crate::codec::backend::FieldDescription;

/// Where a statement's result values come from, for planning.
#[derive(Debug, Clone, Copy)]
pub struct Provenance<'a> {
    /// The statement's result lineage, when analysis found one.
    pub lineage: Option<&'a Lineage>,
    /// The statement's kind (for a statement without lineage).
    pub kind: StatementKind,
    /// The functions the statement calls.
    pub functions: &'a [String],
}

impl Provenance<'_> {
    /// The action for a computed column at `index` of `count`.
    fn computed(&self, snapshot: &Snapshot, index: usize, count: usize) -> ColumnAction {
        match self.lineage {
            Some(lineage) => match snapshot.sources(sources_at(lineage, index, count)) {
                Some(method) => ColumnAction::Mask(method),
                // A function defined outside pg_catalog may read a masked
                // table in its body: computed values are not shown.
                None if !snapshot.is_empty()
                    && self.functions.iter().any(|f| snapshot.opaque_function(f)) =>
                {
                    ColumnAction::Mask(super::MaskMethod::Redact)
                }
                None => ColumnAction::Detect,
            },
            None if returns_table_values(self.kind) && !snapshot.is_empty() => {
                ColumnAction::Mask(super::MaskMethod::Redact)
            }
            None => ColumnAction::Detect,
        }
    }
}

/// Kinds whose rows may carry table values though their lineage is not
/// known here (the cursor or prepared statement was analysed elsewhere).
fn returns_table_values(kind: StatementKind) -> bool {
    !matches!(
        kind,
        StatementKind::Show | StatementKind::Explain | StatementKind::Set
    )
}

/// The sources of the result column at `index` of `count`. A star stands
/// for as many columns as the database gives it: columns before the first
/// star and after the last map by position; a column in between gets the
/// sources of every star. When the count cannot fit, every source counts.
fn sources_at(
    lineage: &Lineage,
    index: usize,
    count: usize,
) -> Box<dyn Iterator<Item = &SourceColumn> + '_> {
    let cols = &lineage.columns;
    let first_star = cols.iter().position(|c| c.star);
    let all = || -> Box<dyn Iterator<Item = &SourceColumn> + '_> {
        Box::new(cols.iter().flat_map(|c| c.sources.iter()))
    };
    let Some(first) = first_star else {
        return match (cols.len() == count).then(|| cols.get(index)).flatten() {
            Some(c) => Box::new(c.sources.iter()),
            None => all(),
        };
    };
    let last = cols.iter().rposition(|c| c.star).unwrap_or(first);
    let after = cols.len() - 1 - last;
    let fixed = cols.len() - cols.iter().filter(|c| c.star).count();
    if count < fixed {
        return all();
    }
    if index < first {
        return match cols.get(index) {
            Some(c) => Box::new(c.sources.iter()),
            None => all(),
        };
    }
    if index >= count - after {
        return match cols.get(cols.len() - (count - index)) {
            Some(c) => Box::new(c.sources.iter()),
            None => all(),
        };
    }
    let middle: BTreeSet<&SourceColumn> = cols
        .get(first..=last)
        .unwrap_or_default()
        .iter()
        .filter(|c| c.star)
        .flat_map(|c| c.sources.iter())
        .collect();
    Box::new(middle.into_iter())
}

/// The plan for the rows described by `fields`.
pub fn for_rows(
    fields: &[FieldDescription<'_>],
    snapshot: &Snapshot,
    provenance: Provenance<'_>,
) -> Vec<ColumnPlan> {
    let count = fields.len();
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let action = if f.table_oid != 0 {
                match snapshot.origin(f.table_oid, f.column_attr) {
                    Some(method) => ColumnAction::Mask(method),
                    None => ColumnAction::Clear,
                }
            } else {
                provenance.computed(snapshot, i, count)
            };
            ColumnPlan {
                action,
                type_oid: f.type_oid,
                format: if f.format == 1 {
                    Format::Binary
                } else {
                    Format::Text
                },
            }
        })
        .collect()
}

/// The plan for the rows of a `COPY … TO STDOUT` with `count` columns
/// (text or csv: every value is text). COPY reports no origins, so only
/// lineage says where values come from; a star over one table with masked
/// columns maps column by column.
pub fn for_copy(count: usize, snapshot: &Snapshot, provenance: Provenance<'_>) -> Vec<ColumnPlan> {
    let exact = provenance.lineage.and_then(|l| match l.columns.as_slice() {
        [only] if only.star => {
            let mut relations = only.sources.iter().map(|s| (&s.relation, &s.column));
            match (relations.next(), relations.next()) {
                (Some((Some(r), None)), None) => {
                    Some(snapshot.columns_of(r).unwrap_or_else(|| vec![None; count]))
                }
                _ => None,
            }
        }
        _ => None,
    });
    (0..count)
        .map(|i| {
            let action = match &exact {
                Some(methods) if methods.len() == count => {
                    match methods.get(i).copied().flatten() {
                        Some(m) => ColumnAction::Mask(m),
                        None => ColumnAction::Clear,
                    }
                }
                _ => provenance.computed(snapshot, i, count),
            };
            ColumnPlan {
                action,
                type_oid: super::method::oid::TEXT,
                format: Format::Text,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use palisade_sql::analyze;

    use super::*;
    use crate::masking::MaskMethod;
    use crate::masking::catalog::MaskedColumn;

    const CUSTOMERS: u32 = 16_384;

    fn snapshot() -> Snapshot {
        let masked = |column: &str, method| MaskedColumn {
            schema: "public".into(),
            table: "customers".into(),
            column: column.into(),
            method,
        };
        Snapshot::from_names(&[
            masked("ssn", MaskMethod::Redact),
            masked("email", MaskMethod::Email),
            masked("secret", MaskMethod::Null),
        ])
        .with_origin(CUSTOMERS, 3, MaskMethod::Email)
        .with_origin(CUSTOMERS, 4, MaskMethod::Redact)
    }

    fn field(name: &str, table_oid: u32, column_attr: i16) -> FieldDescription<'_> {
        FieldDescription {
            name,
            table_oid,
            column_attr,
            type_oid: 25,
            type_size: -1,
            type_modifier: -1,
            format: 0,
        }
    }

    fn actions(sql: &str, fields: &[FieldDescription<'_>]) -> Vec<ColumnAction> {
        let statements = analyze(sql, &["public"]).unwrap();
        let s = &statements[0];
        for_rows(
            fields,
            &snapshot(),
            Provenance {
                lineage: s.lineage.as_deref(),
                kind: s.attributes.kind,
                functions: &s.attributes.functions,
            },
        )
        .into_iter()
        .map(|c| c.action)
        .collect()
    }

    #[test]
    fn origins_decide_plain_columns() {
        let got = actions(
            "SELECT id, email, ssn FROM customers",
            &[
                field("id", CUSTOMERS, 1),
                field("email", CUSTOMERS, 3),
                field("ssn", CUSTOMERS, 4),
            ],
        );
        assert_eq!(
            got,
            [
                ColumnAction::Clear,
                ColumnAction::Mask(MaskMethod::Email),
                ColumnAction::Mask(MaskMethod::Redact)
            ]
        );
    }

    #[test]
    fn computed_columns_follow_lineage_and_are_masked_whole() {
        let got = actions(
            "SELECT upper(email), id * 2, 'x' || name FROM customers",
            &[
                field("upper", 0, 0),
                field("?column?", 0, 0),
                field("?column?", 0, 0),
            ],
        );
        // A partial mask of a derived value could reveal more than policy
        // allows: derived values are redacted.
        assert_eq!(
            got,
            [
                ColumnAction::Mask(MaskMethod::Redact),
                ColumnAction::Detect,
                ColumnAction::Detect
            ]
        );
    }

    #[test]
    fn stars_map_positions_from_both_ends() {
        // `*` expands to the table's columns (origins known); the computed
        // columns around it map by position.
        let got = actions(
            "SELECT upper(ssn), *, length(name) FROM customers",
            &[
                field("upper", 0, 0),
                field("id", CUSTOMERS, 1),
                field("ssn", CUSTOMERS, 4),
                field("length", 0, 0),
            ],
        );
        assert_eq!(
            got,
            [
                ColumnAction::Mask(MaskMethod::Redact),
                ColumnAction::Clear,
                ColumnAction::Mask(MaskMethod::Redact),
                ColumnAction::Detect
            ]
        );
    }

    #[test]
    fn null_survives_derivation() {
        let got = actions(
            "SELECT upper(secret) FROM customers",
            &[field("upper", 0, 0)],
        );
        assert_eq!(got, [ColumnAction::Mask(MaskMethod::Null)]);
    }

    #[test]
    fn unknown_lineage_redacts_computed_values_of_cursors() {
        let got = actions(
            "FETCH ALL FROM c",
            &[field("upper", 0, 0), field("id", CUSTOMERS, 1)],
        );
        assert_eq!(
            got,
            [ColumnAction::Mask(MaskMethod::Redact), ColumnAction::Clear]
        );
        let got = actions(
            "EXPLAIN SELECT ssn FROM customers",
            &[field("QUERY PLAN", 0, 0)],
        );
        assert_eq!(got, [ColumnAction::Detect]);
    }

    #[test]
    fn copy_of_a_table_keeps_each_column_method() {
        let statements = analyze("COPY customers TO STDOUT", &["public"]).unwrap();
        let s = &statements[0];
        let plan = for_copy(
            3,
            &snapshot(),
            Provenance {
                lineage: s.lineage.as_deref(),
                kind: s.attributes.kind,
                functions: &s.attributes.functions,
            },
        );
        let got: Vec<ColumnAction> = plan.into_iter().map(|c| c.action).collect();
        // from_names knows ssn, email, secret in that order.
        assert_eq!(
            got,
            [
                ColumnAction::Mask(MaskMethod::Redact),
                ColumnAction::Mask(MaskMethod::Email),
                ColumnAction::Mask(MaskMethod::Null)
            ]
        );
    }
}
