//! The typed summary of one SQL statement: what leaves this crate.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::kind::StatementKind;

/// One SQL statement of a query string, analysed.
///
/// The agent decides each statement of a query string separately; this is
/// everything it needs for that, and nothing of the parse tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// This statement's own text, cut from the query string and trimmed; for
    /// the audit record (which redacts it) and for per-statement caching.
    pub text: String,
    /// The policy-relevant attributes; shared, since every string of the
    /// same literal shape (and every execution of a prepared statement)
    /// has the same ones.
    pub attributes: Arc<Attributes>,
    /// `PREPARE name AS …`: the name, so the agent can remember what `name`
    /// was decided as.
    pub sql_prepare: Option<String>,
    /// `EXECUTE name(…)` (also `CREATE TABLE … AS EXECUTE name`,
    /// `EXPLAIN ANALYZE EXECUTE name`): the prepared statement that runs.
    pub sql_execute: Option<String>,
    /// `DEALLOCATE name` is `Some(Some(name))`, `DEALLOCATE ALL` is `Some(None)`.
    pub sql_deallocate: Option<Option<String>>,
    /// Transaction control, so the agent can follow the transaction state.
    pub transaction: Option<TransactionOp>,
    /// Details of a `COPY`, which switches the wire protocol into copy mode.
    pub copy: Option<CopyInfo>,
    /// The `search_path` this statement leaves behind (`SET search_path`,
    /// `SET LOCAL search_path`, `SET SCHEMA`, and the default after `RESET`,
    /// `RESET ALL` or `SET … TO DEFAULT`), so later statements resolve
    /// unqualified names against it. The default is `["$user", "public"]`
    /// with `$user` as PostgreSQL writes it: the caller substitutes the
    /// session user before passing it back to [`crate::analyze`].
    pub sets_search_path: Option<Vec<String>>,
    /// Where the values of the result columns sent to the client come
    /// from, for statements that return rows: `SELECT`/`VALUES`/`TABLE`,
    /// `INSERT`/`UPDATE`/`DELETE`/`MERGE … RETURNING`, `DECLARE … CURSOR`,
    /// `PREPARE name AS` a row-returning statement (for its `EXECUTE`s),
    /// and `COPY … TO`. `None` for everything else, including `EXPLAIN`,
    /// `CREATE TABLE AS`, `SELECT INTO` and `FETCH`.
    /// Shared like [`Self::attributes`].
    #[serde(default)]
    pub lineage: Option<Arc<Lineage>>,
}

impl Statement {
    /// Whether another query string with the same
    /// [`literal_shape`](crate::literal_shape) may reuse this analysis (with
    /// its own text): a plain query or DML statement whose analysis no
    /// literal value entered. Functions that take a relation by name as a
    /// string (`nextval('seq')`, `table_to_xml('t', …)`) make the literal
    /// part of what the statement touches; session effects (`SET`,
    /// `PREPARE`, transactions, `COPY`) carry values the agent follows.
    pub fn shape_reusable(&self) -> bool {
        matches!(
            self.attributes.kind,
            StatementKind::Select
                | StatementKind::Insert
                | StatementKind::Update
                | StatementKind::Delete
        ) && self.follows_no_session_state()
            && self.transaction.is_none()
            && self.copy.is_none()
            && !self.attributes.functions.iter().any(|f| {
                let name = f.rsplit('.').next().unwrap_or(f);
                matches!(name, "nextval" | "setval" | "currval") || name.contains("_to_xml")
            })
    }

    /// Whether the agent carries nothing of this statement into the
    /// session's later ones: no SQL-level `PREPARE`, `EXECUTE` or
    /// `DEALLOCATE` (what an `EXECUTE` runs), no search path change (how
    /// later names resolve). Such a statement means the same whenever it
    /// runs in the session.
    pub fn follows_no_session_state(&self) -> bool {
        self.sql_prepare.is_none()
            && self.sql_execute.is_none()
            && self.sql_deallocate.is_none()
            && self.sets_search_path.is_none()
    }

    /// This analysis for another query string of the same shape: the text
    /// is copied, the attributes and lineage are shared.
    pub fn with_text(&self, text: &str) -> Self {
        Self {
            text: text.to_owned(),
            ..self.clone()
        }
    }
}

/// Exactly the attributes of a statement that policies decide on.
///
/// Serialisable so decisions can be cached by it and audited with it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attributes {
    /// The most dangerous thing the statement does (a `SELECT` whose CTE
    /// deletes is a [`StatementKind::Delete`]).
    pub kind: StatementKind,
    /// Relations read, sorted and deduplicated.
    pub reads: Vec<Relation>,
    /// Relations written (rows, definition, locks taken `FOR UPDATE`),
    /// sorted and deduplicated.
    pub writes: Vec<Relation>,
    /// Functions called, lower-case, sorted and deduplicated: the bare name
    /// always, and `schema.name` as well when the SQL qualified it.
    pub functions: Vec<String>,
    /// For `UPDATE`/`DELETE`: every updating or deleting part has a `WHERE`
    /// (`MERGE` and `ON CONFLICT DO UPDATE` count as having one). For a
    /// `SELECT`: it has a `WHERE` (every branch of a set operation).
    pub has_where: bool,
    /// The outermost `SELECT` has a `LIMIT`/`FETCH FIRST` that is not
    /// `LIMIT ALL`/`LIMIT NULL`.
    pub has_limit: bool,
    /// The statement changes the schema (create, alter, drop, truncate,
    /// including `CREATE TABLE AS`, views, indexes and comments).
    pub is_ddl: bool,
    /// pg_query fingerprint of this statement, hex: the same for statements
    /// that differ only in literals.
    pub fingerprint: String,
    /// The statement text with literals replaced by `$n`.
    pub normalized: String,
    /// `COPY … PROGRAM`: runs a shell command on the database server.
    pub copy_program: bool,
    /// Columns used to filter, sort, group, join or aggregate, resolved to a
    /// relation where possible; sorted and deduplicated.
    pub filtered_columns: Vec<ColumnRef>,
    /// For `PREPARE`, `EXPLAIN`, `DECLARE CURSOR`, `CREATE TABLE AS`,
    /// `SELECT INTO` and `CREATE VIEW`: the kind of the statement carried.
    pub inner_kind: Option<StatementKind>,
    /// The non-relation objects the statement names (schema, role, function,
    /// database, extension, setting, channel…), as written; several are
    /// joined with `", "` in statement order.
    pub object_name: Option<String>,
}

/// A relation (table, view, sequence, index…) with its schema.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Relation {
    /// Schema as PostgreSQL folded it; for unqualified names, one of the
    /// candidates of the search path.
    pub schema: String,
    /// Relation name as PostgreSQL folded it.
    pub name: String,
}

impl Relation {
    /// Builds a relation from its parts.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Relation {
            schema: schema.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for Relation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// A column a statement filters, sorts, groups, joins or aggregates on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ColumnRef {
    /// The relation the column belongs to, when it could be resolved.
    pub relation: Option<Relation>,
    /// The column name (`*` for `t.*`).
    pub column: String,
}

/// A transaction-control statement, so the agent can track transaction and
/// savepoint state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransactionOp {
    /// `BEGIN`, `START TRANSACTION`.
    Begin,
    /// `COMMIT`, `END`.
    Commit,
    /// `ROLLBACK`, `ABORT`.
    Rollback,
    /// `SAVEPOINT name`.
    Savepoint(String),
    /// `RELEASE [SAVEPOINT] name`.
    Release(String),
    /// `ROLLBACK TO [SAVEPOINT] name`.
    RollbackTo(String),
    /// `PREPARE TRANSACTION 'gid'` (two-phase commit).
    Prepare(String),
    /// `COMMIT PREPARED 'gid'`.
    CommitPrepared(String),
    /// `ROLLBACK PREPARED 'gid'`.
    RollbackPrepared(String),
}

/// Which way a `COPY` moves rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CopyDirection {
    /// `COPY … FROM`: into the database.
    From,
    /// `COPY … TO`: out of the database.
    To,
}

/// Details of a `COPY`: the agent must follow the copy sub-protocol, and a
/// server-side file or program is a different risk than the client's stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CopyInfo {
    /// `FROM` or `TO`.
    pub direction: CopyDirection,
    /// `STDIN`/`STDOUT`: the data flows over the client connection.
    pub stdio: bool,
    /// `PROGRAM 'cmd'`: a shell command runs on the server.
    pub program: bool,
    /// The server-side file name or the command, as written.
    pub target: Option<String>,
    /// `FORMAT text|csv|binary`, also the legacy `CSV` and `BINARY`.
    #[serde(default)]
    pub format: CopyFormat,
    /// `DELIMITER 'c'`; `None`: PostgreSQL's default (tab, or `,` in CSV).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// `QUOTE 'c'`; `None`: PostgreSQL's default (`"`).
    #[serde(default)]
    pub quote: Option<char>,
    /// `ESCAPE 'c'`; `None`: PostgreSQL's default (the quote character).
    #[serde(default)]
    pub escape: Option<char>,
    /// `NULL 'text'`; `None`: PostgreSQL's default (`\N`, or empty in CSV).
    #[serde(default)]
    pub null: Option<String>,
    /// `HEADER` (also `HEADER MATCH`): the first line names the columns.
    #[serde(default)]
    pub header: bool,
}

/// The data format of a `COPY`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CopyFormat {
    /// PostgreSQL's text format (the default).
    #[default]
    Text,
    /// `FORMAT csv`, `CSV`.
    Csv,
    /// `FORMAT binary`, `BINARY`.
    Binary,
}

/// Where the values of a statement's result columns come from.
///
/// The agent masks result columns derived from classified columns, also
/// computed ones (`upper(ssn)`) whose origin PostgreSQL does not report.
/// It over-reports, never under-reports: every base column whose value can
/// flow into an output is among its sources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lineage {
    /// The top-level result columns, in order as written; a star (`*`,
    /// `t.*`) is one entry that expands to several columns at run time.
    pub columns: Vec<OutputColumn>,
}

/// One top-level result column (or star) of a statement.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OutputColumn {
    /// `*` / `t.*` in the target list (expands to several result columns
    /// at run time).
    pub star: bool,
    /// Every base column whose value can flow into this output.
    pub sources: BTreeSet<SourceColumn>,
}

/// A column of a base relation (table or view), schema-qualified the way
/// [`Attributes::reads`] is: an unqualified table name gives one source per
/// schema of the search path it could resolve to.
///
/// Both fields `None` means any column of any relation: the analysis could
/// not tell (`query_to_xml('…')`, a statement nested too deeply).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourceColumn {
    /// `None`: an unqualified reference that could come from several
    /// relations in scope (matches that column name in any relation).
    pub relation: Option<Relation>,
    /// `None`: the whole row (`t` or `t.*` inside an expression such as
    /// `row_to_json(t)`, `t::text`, or a star over a base relation): every
    /// column of the relation.
    pub column: Option<String>,
}

impl SourceColumn {
    /// A column of a relation.
    pub fn new(relation: Relation, column: impl Into<String>) -> Self {
        SourceColumn {
            relation: Some(relation),
            column: Some(column.into()),
        }
    }

    /// Every column of a relation.
    pub fn whole_row(relation: Relation) -> Self {
        SourceColumn {
            relation: Some(relation),
            column: None,
        }
    }

    /// A column name in any relation.
    pub fn unresolved(column: impl Into<String>) -> Self {
        SourceColumn {
            relation: None,
            column: Some(column.into()),
        }
    }

    /// Any column of any relation.
    pub fn anything() -> Self {
        SourceColumn {
            relation: None,
            column: None,
        }
    }
}
