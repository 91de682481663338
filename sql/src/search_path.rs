//! Which schemas an unqualified relation name may live in.
//!
//! The analysis cannot see the database, so an unqualified name is reported
//! once per schema it could resolve to, and policy must allow every one: a
//! session that moved its search path cannot slip a table past a policy.

use pg_query::protobuf::RangeVar;

use crate::catalog::{CatalogName, catalog_name};
use crate::statement::Relation;

/// The schema PostgreSQL searches implicitly, first.
pub(crate) const PG_CATALOG: &str = "pg_catalog";

/// The schema of temporary relations, as `CREATE TEMP TABLE` writes it.
pub(crate) const PG_TEMP: &str = "pg_temp";

/// What an empty search path means here.
const DEFAULT: &[&str] = &["public"];

/// The schema list, borrowed from the caller or built here (unlike `Cow`,
/// this stays covariant in `'a`).
#[derive(Clone, Debug)]
enum Schemas<'a> {
    Borrowed(&'a [&'a str]),
    Owned(Vec<&'a str>),
}

impl<'a> Schemas<'a> {
    fn as_slice(&self) -> &[&'a str] {
        match self {
            Schemas::Borrowed(s) => s,
            Schemas::Owned(s) => s,
        }
    }
}

/// A session's search path, as the caller knows it.
#[derive(Clone, Debug)]
pub(crate) struct SearchPath<'a> {
    schemas: Schemas<'a>,
    /// Position of an explicit `pg_catalog` entry, if the path has one.
    catalog_at: Option<usize>,
}

impl<'a> SearchPath<'a> {
    /// A search path of `schemas`, in order; empty means `public`.
    pub(crate) fn new(schemas: &'a [&'a str]) -> Self {
        let schemas = if schemas.is_empty() { DEFAULT } else { schemas };
        SearchPath {
            catalog_at: schemas.iter().position(|s| *s == PG_CATALOG),
            schemas: Schemas::Borrowed(schemas),
        }
    }

    /// The same path with `schema` searched first (inside `CREATE SCHEMA s …`
    /// PostgreSQL creates and looks up the schema's elements in `s` first).
    pub(crate) fn with_first(&self, schema: &'a str) -> SearchPath<'a> {
        let mut schemas = Vec::with_capacity(self.schemas.as_slice().len().saturating_add(1));
        schemas.push(schema);
        schemas.extend(
            self.schemas
                .as_slice()
                .iter()
                .copied()
                .filter(|s| *s != schema),
        );
        SearchPath {
            catalog_at: schemas.iter().position(|s| *s == PG_CATALOG),
            schemas: Schemas::Owned(schemas),
        }
    }

    /// The candidate relations a range variable names: itself when
    /// qualified, `pg_temp` for `TEMP`, else one per candidate schema.
    pub(crate) fn relations(&self, r: &RangeVar) -> Vec<Relation> {
        if !r.schemaname.is_empty() {
            return vec![Relation::new(&r.schemaname, &r.relname)];
        }
        if r.relpersistence == "t" {
            return vec![Relation::new(PG_TEMP, &r.relname)];
        }
        self.candidates(&r.relname)
            .map(|schema| Relation::new(schema, &r.relname))
            .collect()
    }

    /// The schemas an unqualified relation `name` may resolve to, in search order.
    pub(crate) fn candidates(&self, name: &str) -> Candidates<'_> {
        let all: &[&str] = self.schemas.as_slice();
        match (catalog_name(name), self.catalog_at) {
            // Implicitly searched first, and nobody can create there.
            (CatalogName::Always, None) => Candidates {
                catalog_first: true,
                rest: &[],
            },
            // Only newer servers have it in pg_catalog.
            (CatalogName::Newer, None) => Candidates {
                catalog_first: true,
                rest: all,
            },
            // An explicit pg_catalog entry: schemas before it can shadow it.
            (CatalogName::Always, Some(at)) => Candidates {
                catalog_first: false,
                rest: all.get(..=at).unwrap_or(all),
            },
            (CatalogName::Newer | CatalogName::No, _) => Candidates {
                catalog_first: false,
                rest: all,
            },
        }
    }
}

/// Candidate schemas of one unqualified name; iterate for them in order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidates<'s> {
    catalog_first: bool,
    rest: &'s [&'s str],
}

impl<'s> Iterator for Candidates<'s> {
    type Item = &'s str;

    fn next(&mut self) -> Option<&'s str> {
        if self.catalog_first {
            self.catalog_first = false;
            return Some(PG_CATALOG);
        }
        let (first, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemas(path: &SearchPath<'_>, name: &str) -> Vec<String> {
        path.candidates(name).map(str::to_owned).collect()
    }

    #[test]
    fn empty_path_means_public() {
        let path = SearchPath::new(&[]);
        assert_eq!(schemas(&path, "users"), ["public"]);
    }

    #[test]
    fn every_schema_of_the_path_is_a_candidate() {
        let path = SearchPath::new(&["a", "b"]);
        assert_eq!(schemas(&path, "users"), ["a", "b"]);
    }

    #[test]
    fn catalog_relations_resolve_to_pg_catalog() {
        let path = SearchPath::new(&["a", "b"]);
        assert_eq!(schemas(&path, "pg_class"), ["pg_catalog"]);
    }

    #[test]
    fn relations_new_in_later_versions_keep_the_path_candidates() {
        let path = SearchPath::new(&["a"]);
        assert_eq!(schemas(&path, "pg_stat_io"), ["pg_catalog", "a"]);
    }

    #[test]
    fn an_explicit_pg_catalog_can_be_shadowed_by_earlier_schemas() {
        let path = SearchPath::new(&["a", "pg_catalog", "b"]);
        assert_eq!(schemas(&path, "pg_class"), ["a", "pg_catalog"]);
        assert_eq!(schemas(&path, "users"), ["a", "pg_catalog", "b"]);
    }

    #[test]
    fn with_first_puts_the_schema_in_front_once() {
        let base = ["a", "s"];
        let path = SearchPath::new(&base);
        let inner = path.with_first("s");
        assert_eq!(schemas(&inner, "t"), ["s", "a"]);
    }
}
