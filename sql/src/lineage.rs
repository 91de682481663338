//! Result-column lineage: which base columns flow into each top-level
//! result column of a statement that returns rows.
//!
//! PostgreSQL reports the origin of a result column only when it is a plain
//! column reference; the agent masks computed ones too (`upper(ssn)`), so it
//! needs this from the parse tree. One recursive pass over the row-returning
//! parts of the tree: each query level binds its CTEs and FROM items, and
//! each target expression collects the columns it references, through
//! subqueries, CTEs, set operations and every kind of expression.
//!
//! It is a security boundary: when in doubt a column gets more sources,
//! never fewer. `WHERE`, `JOIN … ON`, `GROUP BY`, `HAVING`, `ORDER BY`,
//! `LIMIT` and window definitions carry no values into the output and are
//! not followed (they are `filtered_columns`).

mod scope;

use std::rc::Rc;

use pg_query::protobuf::{
    AExprKind, CmdType, CommonTableExpr, CopyStmt, DeleteStmt, FuncCall, InsertStmt, MergeStmt,
    Node, OnConflictAction, RangeVar, ResTarget, ReturningClause, SelectStmt, SetOperation,
    SubLinkType, UpdateStmt, WithClause,
};
use pg_query::{NodeEnum, NodeRef};

use self::scope::{Bound, Cte, Derived, Item, Level, Name, Out, Sources};
use crate::names::{inner, regclass_name, sval};
use crate::search_path::SearchPath;
use crate::statement::{Lineage, OutputColumn, Relation, SourceColumn};
use crate::walk::children::for_each_child;
use crate::walk::string_argument;

/// How deep the evaluation may recurse. pg_query refuses trees nested more
/// than 100 messages deep, so this is never reached by a parsed statement;
/// it only bounds the recursion should that ever change.
const MAX_DEPTH: u32 = 256;

/// The lineage of one top-level statement, `None` when it returns no rows
/// to the client.
pub(crate) fn lineage(stmt: &NodeEnum, path: &SearchPath<'_>) -> Option<Lineage> {
    lineage_at(stmt, path, 0)
}

fn lineage_at(stmt: &NodeEnum, path: &SearchPath<'_>, depth: u8) -> Option<Lineage> {
    if depth > 2 {
        return None;
    }
    let carried = |query: Option<&Node>| {
        query
            .and_then(inner)
            .and_then(|q| lineage_at(q, path, depth.saturating_add(1)))
    };
    match stmt {
        NodeEnum::SelectStmt(s) if s.into_clause.is_none() => Some(evaluate(stmt, path)),
        NodeEnum::InsertStmt(s) if returns(s.returning_clause.as_ref()) => {
            Some(evaluate(stmt, path))
        }
        NodeEnum::UpdateStmt(s) if returns(s.returning_clause.as_ref()) => {
            Some(evaluate(stmt, path))
        }
        NodeEnum::DeleteStmt(s) if returns(s.returning_clause.as_ref()) => {
            Some(evaluate(stmt, path))
        }
        NodeEnum::MergeStmt(s) if returns(s.returning_clause.as_ref()) => {
            Some(evaluate(stmt, path))
        }
        NodeEnum::DeclareCursorStmt(d) => carried(d.query.as_deref()),
        NodeEnum::PrepareStmt(p) => carried(p.query.as_deref()),
        NodeEnum::CopyStmt(c) if !c.is_from => match c.query.as_deref() {
            Some(query) => carried(Some(query)),
            None => copy_relation(c, path),
        },
        _ => None,
    }
}

fn returns(clause: Option<&ReturningClause>) -> bool {
    clause.is_some_and(|r| !r.exprs.is_empty())
}

/// `COPY t [(a, b)] TO …`: one column per listed column, or one star.
fn copy_relation(c: &CopyStmt, path: &SearchPath<'_>) -> Option<Lineage> {
    let relations = path.relations(c.relation.as_ref()?);
    let columns = if c.attlist.is_empty() {
        vec![OutputColumn {
            star: true,
            sources: relations.into_iter().map(SourceColumn::whole_row).collect(),
        }]
    } else {
        c.attlist
            .iter()
            .filter_map(sval)
            .map(|column| OutputColumn {
                star: false,
                sources: relations
                    .iter()
                    .map(|r| SourceColumn::new(r.clone(), column))
                    .collect(),
            })
            .collect()
    };
    Some(Lineage { columns })
}

fn evaluate(stmt: &NodeEnum, path: &SearchPath<'_>) -> Lineage {
    let mut e = Evaluator {
        path,
        levels: Vec::with_capacity(8),
        groups: Vec::new(),
        depth: 0,
        multi: None,
    };
    let columns = e
        .rows(stmt)
        .into_iter()
        .map(|out| OutputColumn {
            star: out.star,
            sources: out.sources,
        })
        .collect();
    Lineage { columns }
}

/// What a data-modifying statement writes into its target, for `RETURNING`.
///
/// `RETURNING` shows the rows as written. A returned column of the target
/// carries every value written, not only the one assigned to it: generated
/// columns and triggers can move values between columns.
#[derive(Default)]
struct Assigned {
    sources: Sources,
}

impl Assigned {
    fn add(&mut self, sources: Sources) {
        self.sources.extend(sources);
    }

    /// Adds the written sources to every output that shows the target.
    fn expand(&self, outs: &mut [Out<'_>], targets: &[Relation]) {
        if self.sources.is_empty() {
            return;
        }
        for out in outs {
            let shows_target = out
                .sources
                .iter()
                .any(|s| s.relation.as_ref().is_none_or(|r| targets.contains(r)));
            if shows_target {
                out.sources.extend(self.sources.iter().cloned());
            }
        }
    }
}

struct Evaluator<'t, 'p> {
    path: &'p SearchPath<'p>,
    /// The query levels around the point of evaluation, innermost last.
    levels: Vec<Level<'t>>,
    /// Per `WITH RECURSIVE` list: whether a CTE of it was referenced
    /// before its body was evaluated.
    groups: Vec<bool>,
    depth: u32,
    /// The last `UPDATE … SET (a, b) = (…)` source, evaluated once.
    multi: Option<(*const Node, Sources)>,
}

impl<'t> Evaluator<'t, '_> {
    // ---- queries -------------------------------------------------------

    /// The output columns of a row-returning statement (empty for one that
    /// returns none).
    fn rows(&mut self, stmt: &'t NodeEnum) -> Vec<Out<'t>> {
        if self.depth >= MAX_DEPTH {
            return vec![Out::anything()];
        }
        self.depth = self.depth.saturating_add(1);
        let outs = match stmt {
            NodeEnum::SelectStmt(s) => self.select(s),
            NodeEnum::InsertStmt(s) => self.insert(s),
            NodeEnum::UpdateStmt(s) => self.update(s),
            NodeEnum::DeleteStmt(s) => self.delete(s),
            NodeEnum::MergeStmt(s) => self.merge(s),
            _ => Vec::new(),
        };
        self.depth = self.depth.saturating_sub(1);
        outs
    }

    fn rows_of(&mut self, node: Option<&'t Node>) -> Vec<Out<'t>> {
        match node.and_then(inner) {
            Some(stmt) => self.rows(stmt),
            None => Vec::new(),
        }
    }

    fn push_level(&mut self, with: Option<&'t WithClause>) {
        self.levels.push(Level::default());
        if let Some(w) = with {
            self.with(w);
        }
    }

    fn pop_level(&mut self) {
        self.levels.pop();
    }

    fn top(&mut self) -> Option<&mut Level<'t>> {
        self.levels.last_mut()
    }

    fn bind(&mut self, name: &'t str, item: Item<'t>, qualifier_only: bool) {
        if let Some(level) = self.top() {
            level.items.push(Bound {
                name,
                item,
                qualifier_only,
            });
        }
    }

    fn select(&mut self, s: &'t SelectStmt) -> Vec<Out<'t>> {
        if s.op() != SetOperation::SetopNone && s.op() != SetOperation::Undefined {
            self.push_level(s.with_clause.as_ref());
            let left = match s.larg.as_deref() {
                Some(l) => self.select_depth(l),
                None => Vec::new(),
            };
            let right = match s.rarg.as_deref() {
                Some(r) => self.select_depth(r),
                None => Vec::new(),
            };
            self.pop_level();
            return set_operation(left, right);
        }
        self.push_level(s.with_clause.as_ref());
        let outs = if s.values_lists.is_empty() {
            self.bind_from(&s.from_clause);
            self.target_list(&s.target_list)
        } else {
            self.values(&s.values_lists)
        };
        self.pop_level();
        outs
    }

    fn select_depth(&mut self, s: &'t SelectStmt) -> Vec<Out<'t>> {
        if self.depth >= MAX_DEPTH {
            return vec![Out::anything()];
        }
        self.depth = self.depth.saturating_add(1);
        let outs = self.select(s);
        self.depth = self.depth.saturating_sub(1);
        outs
    }

    /// `VALUES (…), (…)`: position-wise, named `column1`, `column2`….
    fn values(&mut self, lists: &'t [Node]) -> Vec<Out<'t>> {
        let mut outs: Vec<Out<'t>> = Vec::new();
        for list in lists.iter().filter_map(inner) {
            let NodeEnum::List(row) = list else {
                continue;
            };
            for (i, value) in row.items.iter().enumerate() {
                if outs.len() <= i {
                    outs.push(Out {
                        name: Name::Known(format!("column{}", i.saturating_add(1)).into()),
                        star: false,
                        sources: Sources::new(),
                    });
                }
                let mut sources = Sources::new();
                self.expr(value, &mut sources);
                if let Some(out) = outs.get_mut(i) {
                    out.sources.extend(sources);
                }
            }
        }
        outs
    }

    /// The outputs of a target (or `RETURNING`) list.
    fn target_list(&mut self, targets: &'t [Node]) -> Vec<Out<'t>> {
        let mut outs = Vec::with_capacity(targets.len());
        for target in targets.iter().filter_map(inner) {
            let NodeEnum::ResTarget(t) = target else {
                continue;
            };
            outs.push(self.target(t));
        }
        outs
    }

    fn target(&mut self, t: &'t ResTarget) -> Out<'t> {
        let val = t.val.as_deref();
        let mut sources = Sources::new();
        match val.and_then(inner) {
            Some(NodeEnum::ColumnRef(c)) => {
                let (parts, star) = column_fields(&c.fields);
                if star {
                    self.star(&parts, &mut sources);
                    return Out {
                        name: Name::Unknown,
                        star: true,
                        sources,
                    };
                }
            }
            // `(composite).*` expands to the composite's fields.
            Some(NodeEnum::AIndirection(a))
                if matches!(
                    a.indirection.last().and_then(inner),
                    Some(NodeEnum::AStar(_))
                ) =>
            {
                if let Some(val) = val {
                    self.expr(val, &mut sources);
                }
                return Out {
                    name: Name::Unknown,
                    star: true,
                    sources,
                };
            }
            _ => {}
        }
        if let Some(val) = val {
            self.expr(val, &mut sources);
        }
        let name = if t.name.is_empty() {
            val.map_or(Name::Unknown, |v| figure_name(v).0)
        } else {
            Name::Known(t.name.as_str().into())
        };
        Out {
            name,
            star: false,
            sources,
        }
    }

    // ---- WITH ----------------------------------------------------------

    /// Evaluates each CTE once, in order; `WITH RECURSIVE` binds all names
    /// first, and when a body referenced a CTE not yet evaluated (itself, or
    /// one after it), every column of every CTE of the list gets all of the
    /// list's sources.
    fn with(&mut self, w: &'t WithClause) {
        let ctes: Vec<&'t CommonTableExpr> = w
            .ctes
            .iter()
            .filter_map(|n| match inner(n) {
                Some(NodeEnum::CommonTableExpr(c)) => Some(&**c),
                _ => None,
            })
            .collect();
        if !w.recursive {
            for cte in ctes {
                let derived = self.cte_body(cte);
                if let Some(level) = self.top() {
                    level
                        .ctes
                        .push((cte.ctename.as_str(), Cte::Done(Rc::new(derived))));
                }
            }
            return;
        }
        let group = self.groups.len();
        self.groups.push(false);
        let first = self.top().map_or(0, |l| l.ctes.len());
        if let Some(level) = self.top() {
            for cte in &ctes {
                level.ctes.push((cte.ctename.as_str(), Cte::Pending(group)));
            }
        }
        for (i, cte) in ctes.iter().enumerate() {
            let derived = self.cte_body(cte);
            if let Some(slot) = self
                .top()
                .and_then(|l| l.ctes.get_mut(first.saturating_add(i)))
            {
                slot.1 = Cte::Done(Rc::new(derived));
            }
        }
        if !self.groups.get(group).copied().unwrap_or(true) {
            return;
        }
        let Some(level) = self.top() else {
            return;
        };
        let Some(group_ctes) = level.ctes.get_mut(first..) else {
            return;
        };
        let mut all = Sources::new();
        for (_, cte) in group_ctes.iter() {
            if let Cte::Done(d) = cte {
                all.extend(d.all());
            }
        }
        for (_, cte) in group_ctes.iter_mut() {
            if let Cte::Done(d) = cte {
                let mut collapsed = Derived::clone(d);
                for out in &mut collapsed.outputs {
                    out.sources.clone_from(&all);
                }
                // The CYCLE/SEARCH columns and anything unnamed.
                collapsed.outputs.push(Out {
                    name: Name::Unknown,
                    star: true,
                    sources: all.clone(),
                });
                *d = Rc::new(collapsed);
            }
        }
    }

    fn cte_body(&mut self, cte: &'t CommonTableExpr) -> Derived<'t> {
        let outputs = self.rows_of(cte.ctequery.as_deref());
        let mut derived = Derived { outputs };
        derived.rename(&cte.aliascolnames);
        if cte.search_clause.is_some() || cte.cycle_clause.is_some() {
            // The added sequence and cycle-path columns carry the rows.
            let all = derived.all();
            derived.outputs.push(Out {
                name: Name::Unknown,
                star: false,
                sources: all,
            });
        }
        derived
    }

    /// The CTE an unqualified relation name refers to, if any.
    fn cte(&mut self, name: &str) -> Option<Rc<Derived<'t>>> {
        let found = self
            .levels
            .iter()
            .rev()
            .find_map(|l| l.ctes.iter().rev().find(|(n, _)| *n == name))
            .map(|(_, cte)| cte.clone())?;
        match found {
            Cte::Done(d) => Some(d),
            Cte::Pending(group) => {
                if let Some(hit) = self.groups.get_mut(group) {
                    *hit = true;
                }
                // Its columns are not known yet: whatever they carry, the
                // whole list's sources stand in for them afterwards.
                Some(Rc::new(Derived::opaque(Sources::new())))
            }
        }
    }

    // ---- FROM ----------------------------------------------------------

    fn bind_from(&mut self, items: &'t [Node]) {
        for item in items {
            self.bind_from_item(item);
        }
    }

    /// Binds one FROM item (and what a join contains) in the innermost
    /// level; returns the items bound, for a join's alias.
    fn bind_from_item(&mut self, node: &'t Node) -> Vec<Item<'t>> {
        match inner(node) {
            Some(NodeEnum::RangeVar(r)) => {
                let item = self.range_var(r);
                self.bind(range_var_name(r), item.clone(), false);
                vec![item]
            }
            Some(NodeEnum::RangeSubselect(s)) => {
                // Only a LATERAL subquery sees the FROM items before it.
                let hidden = !s.lateral;
                let was = self.top().map(|l| std::mem::replace(&mut l.hidden, hidden));
                let outputs = self.rows_of(s.subquery.as_deref());
                if let (Some(was), Some(level)) = (was, self.top()) {
                    level.hidden = was;
                }
                let mut derived = Derived { outputs };
                let name = match &s.alias {
                    Some(a) => {
                        derived.rename(&a.colnames);
                        a.aliasname.as_str()
                    }
                    None => "",
                };
                let item = Item::Derived(Rc::new(derived));
                self.bind(name, item.clone(), false);
                vec![item]
            }
            Some(NodeEnum::RangeFunction(f)) => {
                // Functions in FROM see the items before them, LATERAL or not.
                let mut sources = Sources::new();
                for function in &f.functions {
                    self.expr(function, &mut sources);
                }
                self.opaque_item(f.alias.as_ref(), sources)
            }
            Some(NodeEnum::RangeTableFunc(f)) => {
                let mut sources = Sources::new();
                self.expr_ref(NodeRef::RangeTableFunc(f), &mut sources);
                self.opaque_item(f.alias.as_ref(), sources)
            }
            Some(NodeEnum::JsonTable(t)) => {
                let mut sources = Sources::new();
                self.expr_ref(NodeRef::JsonTable(t), &mut sources);
                self.opaque_item(t.alias.as_ref(), sources)
            }
            Some(NodeEnum::RangeTableSample(t)) => match t.relation.as_deref() {
                Some(r) => self.bind_from_item(r),
                None => Vec::new(),
            },
            Some(NodeEnum::JoinExpr(j)) => {
                let mut members = Vec::new();
                if let Some(l) = j.larg.as_deref() {
                    members.extend(self.bind_from_item(l));
                }
                if let Some(r) = j.rarg.as_deref() {
                    members.extend(self.bind_from_item(r));
                }
                for alias in [j.alias.as_ref(), j.join_using_alias.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    let item = if alias.colnames.is_empty() {
                        Item::Join(members.clone().into())
                    } else {
                        Item::Derived(Rc::new(Derived::opaque(
                            Item::Join(members.clone().into()).all(),
                        )))
                    };
                    self.bind(alias.aliasname.as_str(), item, true);
                }
                members
            }
            _ => Vec::new(),
        }
    }

    /// A FROM item whose columns are not known by name (functions,
    /// `XMLTABLE`, `JSON_TABLE`): every column may carry all its sources.
    fn opaque_item(
        &mut self,
        alias: Option<&'t pg_query::protobuf::Alias>,
        sources: Sources,
    ) -> Vec<Item<'t>> {
        let item = Item::Derived(Rc::new(Derived::opaque(sources)));
        self.bind(
            alias.map_or("", |a| a.aliasname.as_str()),
            item.clone(),
            false,
        );
        vec![item]
    }

    /// A relation or a CTE named in FROM.
    fn range_var(&mut self, r: &'t RangeVar) -> Item<'t> {
        if r.schemaname.is_empty()
            && let Some(cte) = self.cte(&r.relname)
        {
            return match &r.alias {
                Some(a) if !a.colnames.is_empty() => {
                    let mut derived = Derived::clone(&cte);
                    derived.rename(&a.colnames);
                    Item::Derived(Rc::new(derived))
                }
                _ => Item::Derived(cte),
            };
        }
        let relations = self.path.relations(r).into();
        match &r.alias {
            Some(a) if !a.colnames.is_empty() => {
                Item::Renamed(relations, a.colnames.iter().filter_map(sval).collect())
            }
            _ => Item::Base(relations),
        }
    }

    // ---- data-modifying statements ---------------------------------------

    /// Binds the target of a data-modifying statement.
    fn bind_target(&mut self, r: &'t RangeVar) -> Vec<Relation> {
        let relations = self.path.relations(r);
        self.bind(
            range_var_name(r),
            Item::Base(relations.clone().into()),
            false,
        );
        relations
    }

    /// The `RETURNING` list, where `old` and `new` (or the names `RETURNING
    /// WITH (OLD AS o, NEW AS n)` gives them) name the target too, after
    /// every FROM item (a FROM item called `new` wins).
    fn returning(
        &mut self,
        clause: Option<&'t ReturningClause>,
        targets: &[Relation],
        assigned: &Assigned,
    ) -> Vec<Out<'t>> {
        let Some(clause) = clause else {
            return Vec::new();
        };
        let item = Item::Base(targets.to_vec().into());
        self.bind("old", item.clone(), true);
        self.bind("new", item.clone(), true);
        for option in clause.options.iter().filter_map(inner) {
            if let NodeEnum::ReturningOption(o) = option {
                self.bind(o.value.as_str(), item.clone(), true);
            }
        }
        let mut outs = self.target_list(&clause.exprs);
        assigned.expand(&mut outs, targets);
        outs
    }

    fn insert(&mut self, s: &'t InsertStmt) -> Vec<Out<'t>> {
        if !returns(s.returning_clause.as_ref()) {
            return Vec::new();
        }
        self.push_level(s.with_clause.as_ref());
        let mut assigned = Assigned::default();
        for out in self.rows_of(s.select_stmt.as_deref()) {
            assigned.add(out.sources);
        }
        let mut targets = Vec::new();
        if let Some(r) = &s.relation {
            targets = self.bind_target(r);
            let item = Item::Base(targets.clone().into());
            self.bind("excluded", item, true);
        }
        if let Some(oc) = &s.on_conflict_clause
            && oc.action() == OnConflictAction::OnconflictUpdate
        {
            self.set_list(&oc.target_list, &mut assigned);
        }
        let outs = self.returning(s.returning_clause.as_ref(), &targets, &assigned);
        self.pop_level();
        outs
    }

    fn update(&mut self, s: &'t UpdateStmt) -> Vec<Out<'t>> {
        if !returns(s.returning_clause.as_ref()) {
            return Vec::new();
        }
        self.push_level(s.with_clause.as_ref());
        let targets = match &s.relation {
            Some(r) => self.bind_target(r),
            None => Vec::new(),
        };
        self.bind_from(&s.from_clause);
        let mut assigned = Assigned::default();
        self.set_list(&s.target_list, &mut assigned);
        let outs = self.returning(s.returning_clause.as_ref(), &targets, &assigned);
        self.pop_level();
        outs
    }

    fn delete(&mut self, s: &'t DeleteStmt) -> Vec<Out<'t>> {
        if !returns(s.returning_clause.as_ref()) {
            return Vec::new();
        }
        self.push_level(s.with_clause.as_ref());
        let targets = match &s.relation {
            Some(r) => self.bind_target(r),
            None => Vec::new(),
        };
        self.bind_from(&s.using_clause);
        let outs = self.returning(s.returning_clause.as_ref(), &targets, &Assigned::default());
        self.pop_level();
        outs
    }

    fn merge(&mut self, s: &'t MergeStmt) -> Vec<Out<'t>> {
        if !returns(s.returning_clause.as_ref()) {
            return Vec::new();
        }
        self.push_level(s.with_clause.as_ref());
        let targets = match &s.relation {
            Some(r) => self.bind_target(r),
            None => Vec::new(),
        };
        if let Some(source) = s.source_relation.as_deref() {
            self.bind_from_item(source);
        }
        let mut assigned = Assigned::default();
        for clause in s.merge_when_clauses.iter().filter_map(inner) {
            let NodeEnum::MergeWhenClause(w) = clause else {
                continue;
            };
            match w.command_type() {
                CmdType::CmdUpdate => self.set_list(&w.target_list, &mut assigned),
                CmdType::CmdInsert => {
                    for v in &w.values {
                        let mut sources = Sources::new();
                        self.expr(v, &mut sources);
                        assigned.add(sources);
                    }
                }
                _ => {}
            }
        }
        let outs = self.returning(s.returning_clause.as_ref(), &targets, &assigned);
        self.pop_level();
        outs
    }

    /// `SET a = expr, (b, c) = (…)`.
    fn set_list(&mut self, targets: &'t [Node], assigned: &mut Assigned) {
        for target in targets.iter().filter_map(inner) {
            let NodeEnum::ResTarget(t) = target else {
                continue;
            };
            let mut sources = Sources::new();
            match t.val.as_deref().and_then(inner) {
                Some(NodeEnum::MultiAssignRef(m)) => {
                    if let Some(source) = m.source.as_deref() {
                        sources = self.multi_source(source);
                    }
                }
                Some(_) => {
                    if let Some(val) = t.val.as_deref() {
                        self.expr(val, &mut sources);
                    }
                }
                None => {}
            }
            assigned.add(sources);
        }
    }

    /// The sources of a `(a, b) = (…)` source, evaluated once for all its
    /// columns.
    fn multi_source(&mut self, source: &'t Node) -> Sources {
        let key: *const Node = source;
        if let Some((k, sources)) = &self.multi
            && std::ptr::eq(*k, key)
        {
            return sources.clone();
        }
        let mut sources = Sources::new();
        self.expr(source, &mut sources);
        self.multi = Some((key, sources.clone()));
        sources
    }

    // ---- expressions -----------------------------------------------------

    fn expr(&mut self, node: &'t Node, out: &mut Sources) {
        if let Some(n) = inner(node) {
            self.expr_ref(n.to_ref(), out);
        }
    }

    /// Collects the base columns whose values can flow into an expression.
    fn expr_ref(&mut self, node: NodeRef<'t>, out: &mut Sources) {
        if self.depth >= MAX_DEPTH {
            out.insert(SourceColumn::anything());
            return;
        }
        match node {
            NodeRef::ColumnRef(c) => {
                self.column_ref(&c.fields, out);
                return;
            }
            NodeRef::SubLink(s) => {
                if let Some(test) = s.testexpr.as_deref() {
                    self.expr(test, out);
                }
                for o in self.rows_of(s.subselect.as_deref()) {
                    out.extend(o.sources);
                }
                return;
            }
            NodeRef::SelectStmt(s) => {
                for o in self.select_depth(s) {
                    out.extend(o.sources);
                }
                return;
            }
            NodeRef::FuncCall(f) => self.relation_function(f, out),
            // Leaves, names and window definitions carry no column values.
            NodeRef::AConst(_)
            | NodeRef::ParamRef(_)
            | NodeRef::String(_)
            | NodeRef::Integer(_)
            | NodeRef::Float(_)
            | NodeRef::Boolean(_)
            | NodeRef::BitString(_)
            | NodeRef::TypeName(_)
            | NodeRef::AStar(_)
            | NodeRef::SqlvalueFunction(_)
            | NodeRef::SetToDefault(_)
            | NodeRef::WindowDef(_)
            | NodeRef::Alias(_) => return,
            _ => {}
        }
        self.depth = self.depth.saturating_add(1);
        for_each_child(node, &mut |_, child| self.expr_ref(child, out));
        self.depth = self.depth.saturating_sub(1);
    }

    /// Functions that return a whole relation's (or query's, schema's,
    /// database's) content by name.
    fn relation_function(&mut self, f: &'t FuncCall, out: &mut Sources) {
        let Some(name) = f.funcname.last().and_then(sval) else {
            return;
        };
        // Every such name has `_to_`; most calls are done here.
        if !name.contains("_to_") {
            return;
        }
        match name.to_ascii_lowercase().as_str() {
            "table_to_xml" | "table_to_xml_and_xmlschema" => {
                match f
                    .args
                    .first()
                    .and_then(string_argument)
                    .and_then(regclass_name)
                {
                    Some((Some(schema), relname)) => {
                        out.insert(SourceColumn::whole_row(Relation::new(schema, relname)));
                    }
                    Some((None, relname)) => {
                        for schema in self.path.candidates(&relname) {
                            out.insert(SourceColumn::whole_row(Relation::new(
                                schema,
                                relname.as_str(),
                            )));
                        }
                    }
                    None => {
                        out.insert(SourceColumn::anything());
                    }
                }
            }
            "query_to_xml"
            | "query_to_xml_and_xmlschema"
            | "cursor_to_xml"
            | "schema_to_xml"
            | "schema_to_xml_and_xmlschema"
            | "database_to_xml"
            | "database_to_xml_and_xmlschema" => {
                out.insert(SourceColumn::anything());
            }
            _ => {}
        }
    }

    /// A column reference: `col`, `t.col`, `s.t.col`, `t`, `t.*`, `*`,
    /// or a field of a composite column (`comp.field`).
    fn column_ref(&mut self, fields: &'t [Node], out: &mut Sources) {
        let (parts, star) = column_fields(fields);
        if star {
            self.star(&parts, out);
            return;
        }
        match parts.as_slice() {
            [] => {}
            [column] => {
                // A column, or the whole row of a FROM item of that name.
                self.unqualified(column, out);
                if let Some(item) = self.binding(column) {
                    out.extend(item.all());
                }
            }
            [first, second, rest @ ..] => {
                match self.binding(first) {
                    Some(item) => out.extend(item.column(second)),
                    // `composite.field`
                    None if rest.is_empty() => self.unqualified(first, out),
                    None => {}
                }
                if let Some(third) = rest.first() {
                    // `schema.table.column`
                    out.insert(SourceColumn::new(Relation::new(*first, *second), *third));
                    if let Some(fourth) = rest.get(1) {
                        // `db.schema.table.column`, `schema.table.column.field`
                        out.insert(SourceColumn::new(Relation::new(*second, *third), *fourth));
                    }
                }
            }
        }
    }

    /// `*`, `t.*`, `s.t.*`: the whole rows they expand to.
    fn star(&mut self, parts: &[&'t str], out: &mut Sources) {
        match parts {
            [] => {
                if let Some(level) = self.levels.last() {
                    for b in level.items.iter().filter(|b| !b.qualifier_only) {
                        out.extend(b.item.all());
                    }
                }
            }
            [name] => match self.binding(name) {
                Some(item) => out.extend(item.all()),
                None => {
                    for schema in self.path.candidates(name) {
                        out.insert(SourceColumn::whole_row(Relation::new(schema, *name)));
                    }
                }
            },
            [.., schema, name] => {
                out.insert(SourceColumn::whole_row(Relation::new(*schema, *name)));
            }
        }
    }

    /// The innermost visible FROM item called `name`.
    fn binding(&self, name: &str) -> Option<Item<'t>> {
        self.levels
            .iter()
            .rev()
            .filter(|l| !l.hidden)
            .find_map(|l| l.items.iter().find(|b| b.name == name))
            .map(|b| b.item.clone())
    }

    /// An unqualified column: attributed to the one FROM item of the
    /// innermost level that could have it; several give a reference to the
    /// name in any relation (plus what derived items carry under it). A
    /// level where no item surely has it (base relations may lack it) does
    /// not stop the search: enclosing levels are candidates too.
    fn unqualified(&self, column: &str, out: &mut Sources) {
        let mut found = false;
        for level in self.levels.iter().rev().filter(|l| !l.hidden) {
            let candidates: Vec<(&Item<'t>, scope::Has)> = level
                .items
                .iter()
                .filter(|b| !b.qualifier_only)
                .map(|b| (&b.item, b.item.has(column)))
                .filter(|(_, has)| *has != scope::Has::No)
                .collect();
            match candidates.as_slice() {
                [] => continue,
                [(item, _)] => out.extend(item.column(column)),
                several => {
                    out.insert(SourceColumn::unresolved(column));
                    for (item, _) in several {
                        if let Item::Derived(d) = item {
                            out.extend(d.column(column));
                        }
                    }
                }
            }
            found = true;
            if candidates.iter().any(|(_, has)| *has == scope::Has::Yes) {
                return;
            }
        }
        if !found {
            out.insert(SourceColumn::unresolved(column));
        }
    }
}

/// `UNION`/`INTERSECT`/`EXCEPT`: position-wise union, named by the left
/// arm; when a star makes positions unknowable, every column gets all.
fn set_operation<'t>(mut left: Vec<Out<'t>>, right: Vec<Out<'t>>) -> Vec<Out<'t>> {
    if left.len() == right.len() && !left.iter().chain(&right).any(|o| o.star) {
        for (l, r) in left.iter_mut().zip(right) {
            l.sources.extend(r.sources);
        }
        return left;
    }
    let mut all = Sources::new();
    for o in left.iter().chain(&right) {
        all.extend(o.sources.iter().cloned());
    }
    if left.is_empty() {
        left = right;
    }
    for o in &mut left {
        o.sources.clone_from(&all);
    }
    left
}

/// The String fields of a column reference, and whether it ends in `*`.
fn column_fields(fields: &[Node]) -> (Vec<&str>, bool) {
    let star = matches!(fields.last().and_then(inner), Some(NodeEnum::AStar(_)));
    (fields.iter().filter_map(sval).collect(), star)
}

/// The name a FROM item is referred to by: its alias, else its relation name.
fn range_var_name(r: &RangeVar) -> &str {
    match &r.alias {
        Some(a) if !a.aliasname.is_empty() => &a.aliasname,
        _ => &r.relname,
    }
}

/// The column name PostgreSQL gives an unnamed target (`FigureColname`),
/// where it is sure to match, with PostgreSQL's strength (2 beats 1);
/// anything else is [`Name::Unknown`], which matches every name.
fn figure_name(node: &Node) -> (Name<'_>, u8) {
    let known = |s: &'static str, strength| (Name::Known(s.into()), strength);
    match inner(node) {
        Some(NodeEnum::ColumnRef(c)) => match c.fields.iter().rev().find_map(sval) {
            Some(name) => (Name::Known(name.into()), 2),
            None => (Name::Unknown, 0),
        },
        Some(NodeEnum::FuncCall(f)) => match f.funcname.last().and_then(sval) {
            Some(name) => (Name::Known(name.into()), 2),
            None => (Name::Unknown, 0),
        },
        // The last field name, past subscripts and `*`.
        Some(NodeEnum::AIndirection(a)) => match a.indirection.iter().rev().find_map(sval) {
            Some(name) => (Name::Known(name.into()), 2),
            None => a.arg.as_deref().map_or((Name::Unknown, 0), figure_name),
        },
        Some(NodeEnum::TypeCast(t)) => {
            let (name, strength) = t.arg.as_deref().map_or((Name::Unknown, 0), figure_name);
            if strength == 2 {
                return (name, 2);
            }
            match t
                .type_name
                .as_ref()
                .and_then(|n| n.names.last())
                .and_then(sval)
            {
                Some(name) => (Name::Known(name.into()), 1),
                None => (Name::Unknown, 0),
            }
        }
        Some(NodeEnum::CollateClause(c)) => {
            c.arg.as_deref().map_or((Name::Unknown, 0), figure_name)
        }
        Some(NodeEnum::CaseExpr(c)) => {
            let (name, strength) = c
                .defresult
                .as_deref()
                .map_or((Name::Unknown, 0), figure_name);
            if strength == 2 {
                (name, 2)
            } else {
                known("case", 1)
            }
        }
        Some(NodeEnum::CoalesceExpr(_)) => known("coalesce", 2),
        Some(NodeEnum::AArrayExpr(_)) => known("array", 2),
        Some(NodeEnum::RowExpr(_)) => known("row", 2),
        Some(NodeEnum::GroupingFunc(_)) => known("grouping", 2),
        Some(NodeEnum::AExpr(a)) if a.kind() == AExprKind::AexprNullif => known("nullif", 2),
        Some(NodeEnum::SubLink(s)) => match s.sub_link_type() {
            SubLinkType::ExistsSublink => known("exists", 2),
            SubLinkType::ArraySublink => known("array", 2),
            _ => (Name::Unknown, 0),
        },
        _ => (Name::Unknown, 0),
    }
}

#[cfg(test)]
mod tests;
