//! Statement analysis with the real PostgreSQL grammar.
//!
//! Palisade decides every SQL statement before it reaches PostgreSQL. This
//! crate turns a query string into one [`Statement`] per SQL statement: its
//! [`StatementKind`], every relation read and written, the functions called,
//! the filtered columns, and the session effects the agent must follow. No
//! parse-tree node leaves the crate.
//!
//! It is a security boundary, so when in doubt it reports more, never less:
//! a `DELETE` hidden in a CTE makes the statement a delete, an unqualified
//! name is reported once per schema of the search path, and a string that
//! does not parse is an error the caller denies.
//!
//! The data flows through the modules in this order:
//!
//! 1. `parse`: one call into PostgreSQL's parser (pg_query) per query
//!    string; `ffi` recovers the error position pg_query's API drops.
//! 2. `classify`: the kind and named objects of each statement, from its
//!    top-level node, plus session effects (`SET`, transactions, `COPY` and
//!    its format options, prepared statements).
//! 3. `walk`: an iterative walk over every node of the statement, with
//!    `walk/scope` for CTE names and aliases and the generated
//!    `walk/children` table listing every child of every node type; unqualified
//!    names resolve through `search_path` and `catalog`.
//! 4. `lineage`: for statements that return rows only, one recursive pass
//!    (bounded by the parser's nesting limit) finding which base columns
//!    flow into each result column ([`Lineage`]), so the agent can mask
//!    computed columns derived from classified ones; `lineage/scope` holds
//!    the CTEs and FROM items of each query level.
//! 5. `analyze`: the statement text, fingerprint and normalized text, and
//!    the assembled [`Statement`].
#![deny(missing_docs)]

mod analyze;
mod catalog;
mod classify;
mod error;
mod ffi;
mod kind;
mod lineage;
mod names;
mod parse;
mod search_path;
mod shape;
mod statement;
mod walk;

pub use analyze::analyze;
pub use error::AnalyzeError;
pub use kind::{ParseKindError, StatementKind};
pub use shape::{literal_shape, single_statement_text};
pub use statement::{
    Attributes, ColumnRef, CopyDirection, CopyFormat, CopyInfo, Lineage, OutputColumn, Relation,
    SourceColumn, Statement, TransactionOp,
};
