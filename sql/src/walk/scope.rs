//! Name scopes: which CTE names and FROM items a part of a query can see.
//!
//! CTE names decide whether `FROM x` reads a relation or a CTE; FROM items
//! let `alias.column` resolve to the relation behind the alias.

use pg_query::NodeEnum;
use pg_query::protobuf::{Node, RangeVar, WithClause};

use crate::names::{inner, sval};
use crate::statement::{ColumnRef, Relation};

/// Index of a scope in the walker's arena. Scope 0 is the empty root.
pub(crate) type ScopeId = usize;

/// An item of a FROM clause, by the name queries use for it.
#[derive(Debug)]
pub(crate) struct Binding<'t> {
    /// Alias, or relation name when unaliased; empty for unnamed items.
    pub(crate) name: &'t str,
    /// The candidate relations behind it; empty for subqueries, functions
    /// and CTE references.
    pub(crate) relations: Vec<Relation>,
}

/// One level of naming: a query's CTEs and FROM items.
#[derive(Debug, Default)]
pub(crate) struct Scope<'t> {
    pub(crate) parent: Option<ScopeId>,
    pub(crate) ctes: Vec<&'t str>,
    pub(crate) bindings: Vec<Binding<'t>>,
}

/// All scopes of one statement.
#[derive(Debug)]
pub(crate) struct Scopes<'t> {
    arena: Vec<Scope<'t>>,
}

impl<'t> Scopes<'t> {
    pub(crate) fn new() -> Self {
        Scopes {
            arena: vec![Scope::default()],
        }
    }

    /// A new scope under `parent` that sees the CTE names given.
    pub(crate) fn push(
        &mut self,
        parent: ScopeId,
        ctes: impl IntoIterator<Item = &'t str>,
    ) -> ScopeId {
        self.arena.push(Scope {
            parent: Some(parent),
            ctes: ctes.into_iter().collect(),
            bindings: Vec::new(),
        });
        self.arena.len().saturating_sub(1)
    }

    /// A new scope for a query with an optional `WITH` (all its names visible).
    pub(crate) fn push_query(&mut self, parent: ScopeId, with: Option<&'t WithClause>) -> ScopeId {
        self.push(parent, with.into_iter().flat_map(|w| cte_names(&w.ctes)))
    }

    pub(crate) fn bind(&mut self, scope: ScopeId, name: &'t str, relations: Vec<Relation>) {
        if let Some(s) = self.arena.get_mut(scope) {
            s.bindings.push(Binding { name, relations });
        }
    }

    fn chain(&self, scope: ScopeId) -> impl Iterator<Item = &Scope<'t>> {
        let mut next = Some(scope);
        std::iter::from_fn(move || {
            let s = self.arena.get(next?)?;
            next = s.parent;
            Some(s)
        })
    }

    /// Whether an unqualified `name` in `scope` refers to a CTE.
    pub(crate) fn is_cte(&self, scope: ScopeId, name: &str) -> bool {
        self.chain(scope).any(|s| s.ctes.contains(&name))
    }

    /// The innermost FROM item called `name`, seen from `scope`.
    pub(crate) fn binding(&self, scope: ScopeId, name: &str) -> Option<&Binding<'t>> {
        self.chain(scope)
            .flat_map(|s| s.bindings.iter())
            .find(|b| b.name == name)
    }

    /// The FROM items of the innermost scope that has any.
    pub(crate) fn nearest_bindings(&self, scope: ScopeId) -> &[Binding<'t>] {
        self.chain(scope)
            .map(|s| s.bindings.as_slice())
            .find(|b| !b.is_empty())
            .unwrap_or(&[])
    }

    /// Resolves an unqualified column: to every relation of the nearest FROM
    /// clause (PostgreSQL picks the one that has the column; without the
    /// catalog, all are candidates), or to no relation.
    pub(crate) fn unqualified_column(
        &self,
        scope: ScopeId,
        column: &str,
        out: &mut Vec<ColumnRef>,
    ) {
        let mut found = false;
        for relation in self
            .nearest_bindings(scope)
            .iter()
            .flat_map(|b| b.relations.iter())
        {
            found = true;
            out.push(ColumnRef {
                relation: Some(relation.clone()),
                column: column.to_owned(),
            });
        }
        if !found {
            out.push(ColumnRef {
                relation: None,
                column: column.to_owned(),
            });
        }
    }
}

/// The names of the CTEs of a `WITH` list.
pub(crate) fn cte_names(ctes: &[Node]) -> impl Iterator<Item = &str> {
    ctes.iter().filter_map(|n| match inner(n) {
        Some(NodeEnum::CommonTableExpr(c)) => Some(c.ctename.as_str()),
        _ => None,
    })
}

/// The name a FROM item is referred to by: its alias, else its relation name.
pub(crate) fn range_var_name(r: &RangeVar) -> &str {
    match &r.alias {
        Some(a) if !a.aliasname.is_empty() => &a.aliasname,
        _ => &r.relname,
    }
}

/// The String fields of a column reference, and whether it ends in `*`.
pub(crate) fn column_fields(fields: &[Node]) -> (Vec<&str>, bool) {
    let star = matches!(fields.last().and_then(inner), Some(NodeEnum::AStar(_)));
    (fields.iter().filter_map(sval).collect(), star)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cte_names_are_visible_in_nested_scopes_only() {
        let mut scopes = Scopes::new();
        let outer = scopes.push(0, ["x"]);
        let inner_scope = scopes.push(outer, []);
        assert!(scopes.is_cte(inner_scope, "x"));
        assert!(!scopes.is_cte(0, "x"));
    }

    #[test]
    fn bindings_resolve_from_the_inside_out() {
        let mut scopes = Scopes::new();
        let outer = scopes.push(0, []);
        scopes.bind(outer, "u", vec![Relation::new("public", "users")]);
        let sub = scopes.push(outer, []);
        scopes.bind(sub, "o", vec![Relation::new("public", "orders")]);
        assert_eq!(scopes.binding(sub, "u").unwrap().relations[0].name, "users");
        assert_eq!(scopes.nearest_bindings(sub).len(), 1);
        let mut out = Vec::new();
        scopes.unqualified_column(sub, "id", &mut out);
        assert_eq!(out[0].relation.as_ref().unwrap().name, "orders");
    }

    #[test]
    fn columns_without_a_relation_stay_unresolved() {
        let scopes = Scopes::new();
        let mut out = Vec::new();
        scopes.unqualified_column(0, "id", &mut out);
        assert_eq!(
            out,
            [ColumnRef {
                relation: None,
                column: "id".into()
            }]
        );
    }
}
