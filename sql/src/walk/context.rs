//! What holds where the walker stands, and how each field of a node
//! changes it for the node's children.

use pg_query::NodeRef;
use pg_query::protobuf::FuncCall;

use super::children::Field;
use super::scope::ScopeId;
use crate::classify::session::explain_analyzes;
use crate::names::sval;

/// What holds where the walker stands.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ctx {
    /// The names visible here.
    pub(super) scope: ScopeId,
    /// Relations found here are written (targets, DDL objects).
    pub(super) write: bool,
    /// Columns found here filter, sort, group, join or aggregate.
    pub(super) filter: bool,
    /// This part runs now (not a view or rule definition).
    pub(super) executed: bool,
    /// Only planned: plain `EXPLAIN` reads what it plans, changes nothing.
    pub(super) plan_only: bool,
    /// This is the statement's outermost query (through wrappers).
    pub(super) primary: bool,
    /// Relations read here are row-locked (`FOR UPDATE` without `OF`).
    pub(super) lock: bool,
}

pub(super) const TOP: Ctx = Ctx {
    scope: 0,
    // Outside of queries, relations are the objects a statement changes.
    write: true,
    filter: false,
    executed: true,
    plan_only: false,
    primary: true,
    lock: false,
};

/// Aggregates: their arguments count as filtered columns (an aggregate
/// over a column reveals about it what a filter would).
const AGGREGATES: &[&str] = &[
    "any_value",
    "array_agg",
    "avg",
    "bit_and",
    "bit_or",
    "bit_xor",
    "bool_and",
    "bool_or",
    "corr",
    "count",
    "covar_pop",
    "covar_samp",
    "cume_dist",
    "dense_rank",
    "every",
    "grouping",
    "json_agg",
    "json_agg_strict",
    "json_object_agg",
    "json_object_agg_strict",
    "json_object_agg_unique",
    "json_object_agg_unique_strict",
    "jsonb_agg",
    "jsonb_agg_strict",
    "jsonb_object_agg",
    "jsonb_object_agg_strict",
    "jsonb_object_agg_unique",
    "jsonb_object_agg_unique_strict",
    "max",
    "min",
    "mode",
    "percent_rank",
    "percentile_cont",
    "percentile_disc",
    "range_agg",
    "range_intersect_agg",
    "rank",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "sum",
    "var_pop",
    "var_samp",
    "variance",
    "xmlagg",
];

/// Whether a call aggregates: a known aggregate, or aggregate syntax
/// (`DISTINCT`, `ORDER BY`, `FILTER`, `WITHIN GROUP`, `OVER`, `*`).
pub(super) fn is_aggregate(f: &FuncCall) -> bool {
    if f.agg_star
        || f.agg_distinct
        || f.agg_within_group
        || f.over.is_some()
        || f.agg_filter.is_some()
        || !f.agg_order.is_empty()
    {
        return true;
    }
    f.funcname.last().and_then(sval).is_some_and(|name| {
        AGGREGATES
            .binary_search(&name.to_lowercase().as_str())
            .is_ok()
    })
}

/// The context of `parent`'s child in `field`, given the context `here`
/// that `parent` set up for its children and `outer`, the one it was in.
pub(super) fn child_ctx(parent: NodeRef<'_>, field: Field, here: Ctx, outer: Ctx) -> Ctx {
    let mut c = Ctx {
        primary: false,
        ..here
    };
    match parent {
        NodeRef::SelectStmt(_) => {
            c.write = field == Field::IntoClause;
            c.lock = field == Field::FromClause && here.lock;
            match field {
                Field::WhereClause
                | Field::GroupClause
                | Field::HavingClause
                | Field::SortClause
                | Field::DistinctClause
                | Field::WindowClause => c.filter = true,
                Field::Larg | Field::Rarg => c.primary = here.primary,
                Field::WithClause => c.scope = outer.scope,
                _ => {}
            }
        }
        NodeRef::InsertStmt(_)
        | NodeRef::UpdateStmt(_)
        | NodeRef::DeleteStmt(_)
        | NodeRef::MergeStmt(_) => {
            c.write = field == Field::Relation;
            c.lock = false;
            match field {
                Field::WhereClause | Field::JoinCondition => c.filter = true,
                Field::WithClause => c.scope = outer.scope,
                _ => {}
            }
        }
        NodeRef::OnConflictClause(_) if matches!(field, Field::WhereClause | Field::Infer) => {
            c.filter = true
        }
        NodeRef::MergeWhenClause(_) if field == Field::Condition => c.filter = true,
        NodeRef::JoinExpr(_) if field == Field::Quals => c.filter = true,
        NodeRef::FuncCall(f) => match field {
            Field::Args | Field::AggOrder => c.filter |= is_aggregate(f),
            Field::AggFilter | Field::Over => c.filter = true,
            _ => {}
        },
        NodeRef::WindowDef(_) if matches!(field, Field::PartitionClause | Field::OrderClause) => {
            c.filter = true
        }
        NodeRef::JsonArrayAgg(_) | NodeRef::JsonObjectAgg(_) | NodeRef::JsonAggConstructor(_) => {
            c.filter = true
        }
        NodeRef::CopyStmt(s) => match field {
            Field::Relation => c.write = s.is_from,
            Field::Query => {
                c.write = false;
                c.primary = here.primary;
            }
            Field::WhereClause => {
                c.write = false;
                c.filter = true;
            }
            _ => c.write = false,
        },
        NodeRef::ExplainStmt(e) if field == Field::Query => {
            c.primary = here.primary;
            c.plan_only |= !explain_analyzes(e);
        }
        NodeRef::PrepareStmt(_) | NodeRef::DeclareCursorStmt(_) if field == Field::Query => {
            c.primary = here.primary
        }
        NodeRef::CreateTableAsStmt(_) => match field {
            Field::Into => c.write = true,
            Field::Query => {
                c.write = false;
                c.primary = here.primary;
            }
            _ => {}
        },
        NodeRef::ViewStmt(_) if field == Field::Query => {
            c.primary = here.primary;
            c.executed = false;
        }
        NodeRef::RuleStmt(_) => match field {
            Field::Actions => c.executed = false,
            Field::WhereClause => c.filter = true,
            _ => {}
        },
        NodeRef::CreatePolicyStmt(_) | NodeRef::AlterPolicyStmt(_)
            if matches!(field, Field::Qual | Field::WithCheck) =>
        {
            c.executed = false;
        }
        NodeRef::TableLikeClause(_) => c.write = false,
        _ => {}
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_are_sorted_for_binary_search() {
        for pair in AGGREGATES.windows(2) {
            assert!(pair[0] < pair[1], "{} >= {}", pair[0], pair[1]);
        }
    }
}
