//! What a query level can name while its result columns are traced: CTEs
//! and FROM items, with the sources of their columns.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::rc::Rc;

use pg_query::protobuf::Node;

use crate::names::sval;
use crate::statement::{Relation, SourceColumn};

/// Base columns that can flow into a value.
pub(super) type Sources = BTreeSet<SourceColumn>;

/// The name of a derived column, as far as it is sure.
#[derive(Clone, Debug)]
pub(super) enum Name<'t> {
    /// PostgreSQL names it so.
    Known(Cow<'t, str>),
    /// A star, or a name this analysis cannot be sure of: matches any name.
    Unknown,
}

/// An output column of a query (or a star in its target list).
#[derive(Clone, Debug)]
pub(super) struct Out<'t> {
    pub(super) name: Name<'t>,
    pub(super) star: bool,
    pub(super) sources: Sources,
}

impl Out<'_> {
    /// A column that may carry anything (the evaluation gave up).
    pub(super) fn anything() -> Self {
        Out {
            name: Name::Unknown,
            star: true,
            sources: BTreeSet::from([SourceColumn::anything()]),
        }
    }
}

/// Whether a FROM item has a column of some name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Has {
    No,
    /// A base relation (the catalog is not known here) or an unknown name.
    Maybe,
    Yes,
}

/// The output columns of a subquery, CTE or function in FROM.
#[derive(Clone, Debug, Default)]
pub(super) struct Derived<'t> {
    pub(super) outputs: Vec<Out<'t>>,
}

impl<'t> Derived<'t> {
    /// Columns not known by name, each of which may carry all `sources`.
    pub(super) fn opaque(sources: Sources) -> Self {
        Derived {
            outputs: vec![Out {
                name: Name::Unknown,
                star: false,
                sources,
            }],
        }
    }

    /// Every source of every column.
    pub(super) fn all(&self) -> Sources {
        let mut all = Sources::new();
        for o in &self.outputs {
            all.extend(o.sources.iter().cloned());
        }
        all
    }

    pub(super) fn has(&self, column: &str) -> Has {
        let mut has = Has::No;
        for o in &self.outputs {
            match &o.name {
                Name::Known(n) if n == column => return Has::Yes,
                Name::Known(_) => {}
                Name::Unknown => has = Has::Maybe,
            }
        }
        has
    }

    /// The sources of the columns that may be called `column`; all sources
    /// when none may.
    pub(super) fn column(&self, column: &str) -> Sources {
        let mut out = Sources::new();
        let mut matched = false;
        for o in &self.outputs {
            let matches = match &o.name {
                Name::Known(n) => n == column,
                Name::Unknown => true,
            };
            if matches {
                matched = true;
                out.extend(o.sources.iter().cloned());
            }
        }
        if matched { out } else { self.all() }
    }

    /// Column aliases (`AS s(a, b)`, `WITH c(a, b)`) rename positionally;
    /// past a star, positions are unknown and so are the names.
    pub(super) fn rename(&mut self, names: &'t [Node]) {
        let first_star = self
            .outputs
            .iter()
            .position(|o| o.star)
            .unwrap_or(self.outputs.len());
        for (i, name) in names.iter().filter_map(sval).enumerate() {
            if i >= first_star {
                for o in self.outputs.iter_mut().skip(first_star) {
                    o.name = Name::Unknown;
                }
                return;
            }
            if let Some(o) = self.outputs.get_mut(i) {
                o.name = Name::Known(name.into());
            }
        }
    }
}

/// A FROM item.
#[derive(Clone, Debug)]
pub(super) enum Item<'t> {
    /// A table or view: its candidate relations.
    Base(Rc<[Relation]>),
    /// A table or view with column aliases (`FROM t AS x(a, b)`): the
    /// aliased names stand for columns whose real names are unknown here.
    Renamed(Rc<[Relation]>, Rc<[&'t str]>),
    /// A subquery, CTE reference or function.
    Derived(Rc<Derived<'t>>),
    /// An aliased join: the items it joins.
    Join(Rc<[Item<'t>]>),
}

impl<'t> Item<'t> {
    /// Every column (the whole row).
    pub(super) fn all(&self) -> Sources {
        match self {
            Item::Base(relations) | Item::Renamed(relations, _) => relations
                .iter()
                .cloned()
                .map(SourceColumn::whole_row)
                .collect(),
            Item::Derived(d) => d.all(),
            Item::Join(members) => {
                let mut all = Sources::new();
                for m in members.iter() {
                    all.extend(m.all());
                }
                all
            }
        }
    }

    pub(super) fn has(&self, column: &str) -> Has {
        match self {
            Item::Base(_) => Has::Maybe,
            Item::Renamed(_, names) if names.contains(&column) => Has::Yes,
            Item::Renamed(..) => Has::Maybe,
            Item::Derived(d) => d.has(column),
            Item::Join(members) => members
                .iter()
                .map(|m| m.has(column))
                .max()
                .unwrap_or(Has::No),
        }
    }

    /// The sources of its column `column`.
    pub(super) fn column(&self, column: &str) -> Sources {
        match self {
            Item::Base(relations) => relations
                .iter()
                .map(|r| SourceColumn::new(r.clone(), column))
                .collect(),
            Item::Renamed(relations, names) if names.contains(&column) => relations
                .iter()
                .cloned()
                .map(SourceColumn::whole_row)
                .collect(),
            Item::Renamed(relations, _) => relations
                .iter()
                .map(|r| SourceColumn::new(r.clone(), column))
                .collect(),
            Item::Derived(d) => d.column(column),
            Item::Join(members) => {
                let mut out = Sources::new();
                let mut matched = false;
                for m in members.iter().filter(|m| m.has(column) != Has::No) {
                    matched = true;
                    out.extend(m.column(column));
                }
                if matched { out } else { self.all() }
            }
        }
    }
}

/// A FROM item under the name queries use for it.
#[derive(Debug)]
pub(super) struct Bound<'t> {
    /// Alias, else relation name; empty for an unnamed subquery.
    pub(super) name: &'t str,
    pub(super) item: Item<'t>,
    /// Only reachable by name (a join's alias, `excluded`, `old`, `new`):
    /// not expanded by `*`, not searched for unqualified columns.
    pub(super) qualifier_only: bool,
}

/// A CTE name.
#[derive(Clone, Debug)]
pub(super) enum Cte<'t> {
    Done(Rc<Derived<'t>>),
    /// Of a `WITH RECURSIVE` list (its index) still being evaluated.
    Pending(usize),
}

/// One query level.
#[derive(Debug, Default)]
pub(super) struct Level<'t> {
    pub(super) ctes: Vec<(&'t str, Cte<'t>)>,
    pub(super) items: Vec<Bound<'t>>,
    /// Its FROM items are invisible (while a non-LATERAL subquery of its
    /// FROM clause is evaluated).
    pub(super) hidden: bool,
}
