//! The tree walker: every relation, function and filtered column of one
//! statement, wherever it sits in the parse tree.
//!
//! The walk is iterative (an explicit stack), visits every node through the
//! generated [`children`] table, and carries a small context down the tree:
//! whether a relation found here is written, whether a column found here
//! filters, which names are CTEs, and whether a data-modifying part runs.

pub(crate) mod children;
mod context;
mod scope;

use pg_query::protobuf::{
    ColumnRef as PgColumnRef, DeleteStmt, FuncCall, InsertStmt, MergeStmt, Node, OnConflictAction,
    RangeVar, SelectStmt, SetOperation, UpdateStmt, WithClause,
};
use pg_query::{NodeEnum, NodeRef};

use self::children::for_each_child;
use self::context::{Ctx, TOP, child_ctx};
use self::scope::{ScopeId, Scopes, column_fields, cte_names, range_var_name};
use crate::kind::StatementKind;
use crate::names::{inner, regclass_name, sval};
use crate::search_path::SearchPath;
use crate::statement::{ColumnRef, Relation};

/// What the walk found in one statement.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    pub(crate) reads: Vec<Relation>,
    pub(crate) writes: Vec<Relation>,
    pub(crate) functions: Vec<String>,
    pub(crate) filtered: Vec<ColumnRef>,
    /// The most dangerous data-modifying part that runs.
    pub(crate) dml_executed: Option<StatementKind>,
    /// The most dangerous data-modifying part anywhere (also in views,
    /// rules and plain `EXPLAIN`).
    pub(crate) dml_any: Option<StatementKind>,
    /// Some running `UPDATE`/`DELETE` has no `WHERE`.
    pub(crate) unfiltered_change: bool,
    /// Every branch of the outermost query has a `WHERE`.
    pub(crate) select_where: Option<bool>,
    /// The outermost query has a real `LIMIT`.
    pub(crate) select_limit: Option<bool>,
}

struct Walker<'t, 'p> {
    path: &'p SearchPath<'p>,
    scopes: Scopes<'t>,
    facts: Facts,
}

type Stack<'t> = Vec<(NodeRef<'t>, Ctx)>;

/// Walks one statement's tree.
pub(crate) fn walk<'t>(stmt: &'t NodeEnum, path: &SearchPath<'_>) -> Facts {
    let mut walker = Walker {
        path,
        scopes: Scopes::new(),
        facts: Facts::default(),
    };
    let mut stack: Stack<'t> = Vec::with_capacity(64);
    stack.push((stmt.to_ref(), TOP));
    while let Some((node, ctx)) = stack.pop() {
        let Some(here) = walker.enter(node, ctx, &mut stack) else {
            continue;
        };
        for_each_child(node, &mut |field, child| {
            stack.push((child, child_ctx(node, field, here, ctx)));
        });
    }
    walker.facts
}

impl<'t> Walker<'t, '_> {
    /// Records what `node` itself says; returns the context for its
    /// children, or `None` when they are done (or must not be walked).
    fn enter(&mut self, node: NodeRef<'t>, ctx: Ctx, stack: &mut Stack<'t>) -> Option<Ctx> {
        match node {
            NodeRef::SelectStmt(s) => Some(self.select(s, ctx)),
            NodeRef::InsertStmt(s) => Some(self.insert(s, ctx)),
            NodeRef::UpdateStmt(s) => Some(self.update(s, ctx)),
            NodeRef::DeleteStmt(s) => Some(self.delete(s, ctx)),
            NodeRef::MergeStmt(s) => Some(self.merge(s, ctx)),
            NodeRef::CopyStmt(s) => {
                let scope = self.scopes.push(ctx.scope, []);
                if let Some(r) = &s.relation {
                    let relations = self.resolve(r);
                    self.scopes.bind(scope, range_var_name(r), relations);
                }
                Some(Ctx { scope, ..ctx })
            }
            NodeRef::WithClause(w) => {
                self.with(w, ctx, stack);
                None
            }
            NodeRef::RangeVar(r) => {
                self.range_var(r, ctx);
                None
            }
            NodeRef::ColumnRef(c) => {
                if ctx.filter {
                    self.column(c, ctx);
                }
                None
            }
            NodeRef::FuncCall(f) => {
                self.function(&f.funcname);
                self.relation_by_name(f, ctx);
                Some(ctx)
            }
            NodeRef::CreateTrigStmt(t) => {
                self.function(&t.funcname);
                Some(ctx)
            }
            NodeRef::CreateEventTrigStmt(t) => {
                self.function(&t.funcname);
                Some(ctx)
            }
            NodeRef::RangeTableSample(t) => {
                self.function(&t.method);
                Some(ctx)
            }
            NodeRef::JoinExpr(j) => {
                for column in j.using_clause.iter().filter_map(sval) {
                    self.scopes.unqualified_column(ctx.scope, column, &mut self.facts.filtered);
                }
                Some(ctx)
            }
            // Locked relation names are aliases, handled with their query.
            NodeRef::LockingClause(_)
            // Constraint names parse as range variables but are not relations.
            | NodeRef::ConstraintsSetStmt(_)
            // Function bodies and DO blocks are opaque until they run.
            | NodeRef::CreateFunctionStmt(_)
            | NodeRef::DoStmt(_)
            // Leaves.
            | NodeRef::String(_)
            | NodeRef::Integer(_)
            | NodeRef::Float(_)
            | NodeRef::Boolean(_)
            | NodeRef::BitString(_)
            | NodeRef::AConst(_)
            | NodeRef::AStar(_)
            | NodeRef::ParamRef(_) => None,
            _ => Some(ctx),
        }
    }

    fn select(&mut self, s: &'t SelectStmt, ctx: Ctx) -> Ctx {
        let scope = self.scopes.push_query(ctx.scope, s.with_clause.as_ref());
        self.bind_from(scope, &s.from_clause);
        if ctx.primary {
            if s.op() == SetOperation::SetopNone {
                let all = self.facts.select_where.unwrap_or(true);
                self.facts.select_where = Some(all && s.where_clause.is_some());
            }
            if self.facts.select_limit.is_none() {
                self.facts.select_limit = Some(limits(s));
            }
        }
        let mut lock_all = false;
        for clause in s.locking_clause.iter().filter_map(inner) {
            let NodeEnum::LockingClause(lc) = clause else {
                continue;
            };
            if lc.locked_rels.is_empty() {
                lock_all = true;
            }
            for rel in lc.locked_rels.iter().filter_map(inner) {
                if let NodeEnum::RangeVar(r) = rel {
                    self.lock_named(scope, r, ctx);
                }
            }
        }
        Ctx {
            scope,
            lock: ctx.lock || lock_all,
            ..ctx
        }
    }

    /// `FOR UPDATE OF name`: the FROM item called `name`, else a relation.
    fn lock_named(&mut self, scope: ScopeId, r: &'t RangeVar, ctx: Ctx) {
        let relations = match self.scopes.binding(scope, &r.relname) {
            Some(b) if r.schemaname.is_empty() => b.relations.clone(),
            _ => self.resolve(r),
        };
        if ctx.plan_only {
            self.facts.reads.extend(relations);
        } else {
            self.facts.writes.extend(relations);
        }
    }

    fn insert(&mut self, s: &'t InsertStmt, ctx: Ctx) -> Ctx {
        let scope = self.scopes.push_query(ctx.scope, s.with_clause.as_ref());
        if let Some(r) = &s.relation {
            let relations = self.resolve(r);
            // `excluded.col` in ON CONFLICT is the target's column.
            self.scopes.bind(scope, "excluded", relations.clone());
            self.scopes.bind(scope, range_var_name(r), relations);
        }
        self.dml(StatementKind::Insert, false, ctx);
        if let Some(oc) = &s.on_conflict_clause
            && oc.action() != OnConflictAction::OnconflictNothing
        {
            // DO UPDATE changes existing rows, as far as they conflict.
            self.dml(StatementKind::Update, true, ctx);
        }
        Ctx { scope, ..ctx }
    }

    fn update(&mut self, s: &'t UpdateStmt, ctx: Ctx) -> Ctx {
        let scope = self.target_scope(
            ctx,
            s.with_clause.as_ref(),
            s.relation.as_ref(),
            &s.from_clause,
        );
        self.dml(StatementKind::Update, s.where_clause.is_some(), ctx);
        Ctx { scope, ..ctx }
    }

    fn delete(&mut self, s: &'t DeleteStmt, ctx: Ctx) -> Ctx {
        let scope = self.target_scope(
            ctx,
            s.with_clause.as_ref(),
            s.relation.as_ref(),
            &s.using_clause,
        );
        self.dml(StatementKind::Delete, s.where_clause.is_some(), ctx);
        Ctx { scope, ..ctx }
    }

    fn merge(&mut self, s: &'t MergeStmt, ctx: Ctx) -> Ctx {
        let source = s
            .source_relation
            .as_deref()
            .map(std::slice::from_ref)
            .unwrap_or(&[]);
        let scope = self.target_scope(ctx, s.with_clause.as_ref(), s.relation.as_ref(), source);
        // MERGE always has its ON condition.
        self.dml(StatementKind::Merge, true, ctx);
        Ctx { scope, ..ctx }
    }

    fn target_scope(
        &mut self,
        ctx: Ctx,
        with: Option<&'t WithClause>,
        target: Option<&'t RangeVar>,
        from: &'t [Node],
    ) -> ScopeId {
        let scope = self.scopes.push_query(ctx.scope, with);
        if let Some(r) = target {
            let relations = self.resolve(r);
            self.scopes.bind(scope, range_var_name(r), relations);
        }
        self.bind_from(scope, from);
        scope
    }

    fn dml(&mut self, kind: StatementKind, has_where: bool, ctx: Ctx) {
        self.facts.dml_any = Some(more_dangerous(self.facts.dml_any, kind));
        if ctx.executed && !ctx.plan_only {
            self.facts.dml_executed = Some(more_dangerous(self.facts.dml_executed, kind));
            if matches!(kind, StatementKind::Update | StatementKind::Delete) && !has_where {
                self.facts.unfiltered_change = true;
            }
        }
    }

    /// `WITH`: each CTE body sees the CTEs before it (all of them, and
    /// itself, when `RECURSIVE`), not the query's FROM items.
    fn with(&mut self, w: &'t WithClause, ctx: Ctx, stack: &mut Stack<'t>) {
        let bodies = w.ctes.iter().filter_map(inner);
        if w.recursive {
            let scope = self.scopes.push(ctx.scope, cte_names(&w.ctes));
            stack.extend(bodies.map(|cte| (cte.to_ref(), Ctx { scope, ..ctx })));
            return;
        }
        let mut scope = ctx.scope;
        for cte in bodies {
            stack.push((cte.to_ref(), Ctx { scope, ..ctx }));
            if let NodeEnum::CommonTableExpr(c) = cte {
                scope = self.scopes.push(scope, [c.ctename.as_str()]);
            }
        }
    }

    /// Binds the items of a FROM list to the names queries use for them.
    fn bind_from(&mut self, scope: ScopeId, items: &'t [Node]) {
        let mut work: Vec<&'t Node> = items.iter().collect();
        while let Some(item) = work.pop() {
            match inner(item) {
                Some(NodeEnum::RangeVar(r)) => {
                    let relations =
                        if r.schemaname.is_empty() && self.scopes.is_cte(scope, &r.relname) {
                            Vec::new()
                        } else {
                            self.resolve(r)
                        };
                    self.scopes.bind(scope, range_var_name(r), relations);
                }
                Some(NodeEnum::JoinExpr(j)) => {
                    if let Some(a) = &j.alias {
                        self.scopes.bind(scope, &a.aliasname, Vec::new());
                    }
                    work.extend(j.larg.as_deref());
                    work.extend(j.rarg.as_deref());
                }
                Some(NodeEnum::RangeTableSample(t)) => work.extend(t.relation.as_deref()),
                Some(NodeEnum::RangeSubselect(r)) => self.bind_unnamed(scope, r.alias.as_ref()),
                Some(NodeEnum::RangeFunction(r)) => self.bind_unnamed(scope, r.alias.as_ref()),
                Some(NodeEnum::RangeTableFunc(r)) => self.bind_unnamed(scope, r.alias.as_ref()),
                Some(NodeEnum::JsonTable(r)) => self.bind_unnamed(scope, r.alias.as_ref()),
                _ => {}
            }
        }
    }

    fn bind_unnamed(&mut self, scope: ScopeId, alias: Option<&'t pg_query::protobuf::Alias>) {
        self.scopes.bind(
            scope,
            alias.map_or("", |a| a.aliasname.as_str()),
            Vec::new(),
        );
    }

    /// The candidate relations a range variable names.
    fn resolve(&self, r: &RangeVar) -> Vec<Relation> {
        self.path.relations(r)
    }

    fn range_var(&mut self, r: &RangeVar, ctx: Ctx) {
        if !ctx.write && r.schemaname.is_empty() && self.scopes.is_cte(ctx.scope, &r.relname) {
            return;
        }
        let relations = self.resolve(r);
        if ctx.plan_only {
            self.facts.reads.extend(relations);
        } else if ctx.write {
            self.facts.writes.extend(relations);
        } else {
            if ctx.lock {
                self.facts.writes.extend(relations.iter().cloned());
            }
            self.facts.reads.extend(relations);
        }
    }

    fn column(&mut self, c: &PgColumnRef, ctx: Ctx) {
        let (parts, star) = column_fields(&c.fields);
        let (column, qualifiers) = if star {
            ("*", &parts[..])
        } else {
            match parts.split_last() {
                Some((column, qualifiers)) => (*column, qualifiers),
                None => return,
            }
        };
        let out = &mut self.facts.filtered;
        let push = |out: &mut Vec<ColumnRef>, relation: Option<Relation>| {
            out.push(ColumnRef {
                relation,
                column: column.to_owned(),
            });
        };
        match qualifiers {
            [] => self.scopes.unqualified_column(ctx.scope, column, out),
            [name] => match self.scopes.binding(ctx.scope, name) {
                Some(b) if b.relations.is_empty() => push(out, None),
                Some(b) => {
                    for r in &b.relations {
                        push(out, Some(r.clone()));
                    }
                }
                None if self.scopes.is_cte(ctx.scope, name) => push(out, None),
                None => {
                    for schema in self.path.candidates(name) {
                        push(out, Some(Relation::new(schema, *name)));
                    }
                }
            },
            [.., schema, name] => push(out, Some(Relation::new(*schema, *name))),
        }
    }

    /// Functions that take a relation by name (`setval('seq', 1)`,
    /// `table_to_xml('t', …)`) touch that relation: report it.
    fn relation_by_name(&mut self, f: &FuncCall, ctx: Ctx) {
        let Some(name) = f.funcname.last().and_then(sval) else {
            return;
        };
        let write = match name.to_ascii_lowercase().as_str() {
            "nextval" | "setval" => true,
            "currval" | "table_to_xml" | "table_to_xmlschema" | "table_to_xml_and_xmlschema" => {
                false
            }
            _ => return,
        };
        let Some((schema, relname)) = f
            .args
            .first()
            .and_then(string_argument)
            .and_then(regclass_name)
        else {
            return;
        };
        let relations: Vec<Relation> = match schema {
            Some(schema) => vec![Relation::new(schema, relname)],
            None => self
                .path
                .candidates(&relname)
                .map(|s| Relation::new(s, relname.as_str()))
                .collect(),
        };
        if write && !ctx.plan_only {
            self.facts.writes.extend(relations);
        } else {
            self.facts.reads.extend(relations);
        }
    }

    /// Records a function name: bare, and `schema.name` when qualified.
    fn function(&mut self, names: &[Node]) {
        let mut parts = names.iter().rev().filter_map(sval);
        let Some(name) = parts.next() else {
            return;
        };
        let name = name.to_lowercase();
        if let Some(schema) = parts.next() {
            self.facts
                .functions
                .push(format!("{}.{name}", schema.to_lowercase()));
        }
        self.facts.functions.push(name);
    }
}

/// A string literal argument, also when cast (`'seq'::regclass`).
pub(crate) fn string_argument(mut arg: &Node) -> Option<&str> {
    loop {
        match inner(arg)? {
            NodeEnum::AConst(c) => {
                return match &c.val {
                    Some(pg_query::protobuf::a_const::Val::Sval(s)) => Some(&s.sval),
                    _ => None,
                };
            }
            NodeEnum::TypeCast(t) => arg = t.arg.as_deref()?,
            _ => return None,
        }
    }
}

/// Whether the outermost query has a `LIMIT` that limits (`LIMIT ALL` and
/// `LIMIT NULL` do not).
fn limits(s: &SelectStmt) -> bool {
    match s.limit_count.as_deref().and_then(inner) {
        None => false,
        Some(NodeEnum::AConst(c)) => !c.isnull,
        Some(_) => true,
    }
}

fn more_dangerous(current: Option<StatementKind>, kind: StatementKind) -> StatementKind {
    match current {
        Some(c) if c.dml_rank() >= kind.dml_rank() => c,
        _ => kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_dangerous_change_wins() {
        assert_eq!(
            more_dangerous(None, StatementKind::Insert),
            StatementKind::Insert
        );
        assert_eq!(
            more_dangerous(Some(StatementKind::Delete), StatementKind::Update),
            StatementKind::Delete
        );
        assert_eq!(
            more_dangerous(Some(StatementKind::Insert), StatementKind::Merge),
            StatementKind::Merge
        );
    }
}
