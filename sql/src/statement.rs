//! The typed summary of one SQL statement: what leaves this crate.

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
    /// The policy-relevant attributes.
    pub attributes: Attributes,
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
}
