//! The kind of a statement, as Cedar policies see it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a statement does, reduced to the classes policies are written against.
///
/// The snake_case string of [`StatementKind::as_str`] is the value Cedar
/// policies compare with, so it is part of the policy contract: renaming a
/// variant's string breaks deployed policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementKind {
    /// `SELECT`, `VALUES`, `TABLE t`.
    Select,
    /// `INSERT` (an `ON CONFLICT DO UPDATE` makes it an [`StatementKind::Update`]).
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `MERGE`.
    Merge,
    /// `COPY … FROM`: writes rows into a table.
    CopyFrom,
    /// `COPY … TO`: reads rows out.
    CopyTo,
    /// `CREATE …` of any object, `CREATE TABLE AS`, `SELECT INTO`, `IMPORT FOREIGN SCHEMA`.
    Create,
    /// `ALTER …`, `COMMENT ON`, `SECURITY LABEL`, `ALTER SYSTEM`.
    Alter,
    /// `DROP …`.
    Drop,
    /// `TRUNCATE`.
    Truncate,
    /// `GRANT` of privileges or of role membership.
    Grant,
    /// `REVOKE` of privileges or of role membership.
    Revoke,
    /// Anything that changes identity: `CREATE/ALTER/DROP ROLE`, `SET ROLE`,
    /// `SET SESSION AUTHORIZATION`, `RESET ROLE`.
    Role,
    /// `SET`/`RESET` of an ordinary setting, `SET CONSTRAINTS`.
    Set,
    /// `SHOW`.
    Show,
    /// `BEGIN`, `COMMIT`, `ROLLBACK`, savepoints, two-phase commit.
    Transaction,
    /// `CALL proc()`.
    Call,
    /// `DO` block: opaque code.
    Do,
    /// `PREPARE` of something that is not a statement kind on its own (never
    /// produced for `PREPARE p AS <stmt>`, which takes the inner kind).
    Prepare,
    /// `EXECUTE` of a prepared statement.
    Execute,
    /// `DEALLOCATE`.
    Deallocate,
    /// `LISTEN`/`UNLISTEN`.
    Listen,
    /// `NOTIFY`.
    Notify,
    /// Plain `EXPLAIN` (without `ANALYZE`): plans, does not execute.
    Explain,
    /// `VACUUM`, `ANALYZE`, `CLUSTER`, `REINDEX`, `CHECKPOINT`, `REFRESH MATERIALIZED VIEW`.
    Maintenance,
    /// `DECLARE … CURSOR`, `FETCH`, `MOVE`, `CLOSE`.
    Cursor,
    /// Everything else: `DISCARD`, `LOAD`, `LOCK`.
    Other,
}

impl StatementKind {
    /// Every kind, in declaration order; lets callers (schema generators,
    /// tests) enumerate the policy vocabulary.
    pub const ALL: [StatementKind; 28] = [
        StatementKind::Select,
        StatementKind::Insert,
        StatementKind::Update,
        StatementKind::Delete,
        StatementKind::Merge,
        StatementKind::CopyFrom,
        StatementKind::CopyTo,
        StatementKind::Create,
        StatementKind::Alter,
        StatementKind::Drop,
        StatementKind::Truncate,
        StatementKind::Grant,
        StatementKind::Revoke,
        StatementKind::Role,
        StatementKind::Set,
        StatementKind::Show,
        StatementKind::Transaction,
        StatementKind::Call,
        StatementKind::Do,
        StatementKind::Prepare,
        StatementKind::Execute,
        StatementKind::Deallocate,
        StatementKind::Listen,
        StatementKind::Notify,
        StatementKind::Explain,
        StatementKind::Maintenance,
        StatementKind::Cursor,
        StatementKind::Other,
    ];

    /// The snake_case name Cedar policies see (`"select"`, `"copy_from"`, …).
    pub const fn as_str(&self) -> &'static str {
        match self {
            StatementKind::Select => "select",
            StatementKind::Insert => "insert",
            StatementKind::Update => "update",
            StatementKind::Delete => "delete",
            StatementKind::Merge => "merge",
            StatementKind::CopyFrom => "copy_from",
            StatementKind::CopyTo => "copy_to",
            StatementKind::Create => "create",
            StatementKind::Alter => "alter",
            StatementKind::Drop => "drop",
            StatementKind::Truncate => "truncate",
            StatementKind::Grant => "grant",
            StatementKind::Revoke => "revoke",
            StatementKind::Role => "role",
            StatementKind::Set => "set",
            StatementKind::Show => "show",
            StatementKind::Transaction => "transaction",
            StatementKind::Call => "call",
            StatementKind::Do => "do",
            StatementKind::Prepare => "prepare",
            StatementKind::Execute => "execute",
            StatementKind::Deallocate => "deallocate",
            StatementKind::Listen => "listen",
            StatementKind::Notify => "notify",
            StatementKind::Explain => "explain",
            StatementKind::Maintenance => "maintenance",
            StatementKind::Cursor => "cursor",
            StatementKind::Other => "other",
        }
    }

    /// Whether statements of this kind change the schema (`is_ddl`).
    pub const fn is_ddl(&self) -> bool {
        matches!(
            self,
            StatementKind::Create
                | StatementKind::Alter
                | StatementKind::Drop
                | StatementKind::Truncate
        )
    }

    /// Danger rank of the row-changing kinds, `None` for the others.
    ///
    /// When one statement carries several data-modifying parts (a `DELETE`
    /// inside a CTE of an `INSERT`), its kind is the part of highest rank:
    /// `DELETE` > `MERGE` (which may delete) > `UPDATE` > `INSERT`.
    pub(crate) const fn dml_rank(&self) -> Option<u8> {
        match self {
            StatementKind::Insert => Some(1),
            StatementKind::Update => Some(2),
            StatementKind::Merge => Some(3),
            StatementKind::Delete => Some(4),
            _ => None,
        }
    }
}

impl fmt::Display for StatementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`StatementKind`]; returned by its `FromStr`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown statement kind `{0}`")]
pub struct ParseKindError(String);

impl FromStr for StatementKind {
    type Err = ParseKindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StatementKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ParseKindError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_string() {
        for kind in StatementKind::ALL {
            assert_eq!(kind.as_str().parse::<StatementKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
    }

    #[test]
    fn serde_uses_the_policy_strings() {
        for kind in StatementKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }

    #[test]
    fn unknown_strings_are_rejected_with_a_lowercase_message() {
        let err = "SELECT".parse::<StatementKind>().unwrap_err();
        assert_eq!(err.to_string(), "unknown statement kind `SELECT`");
    }

    #[test]
    fn delete_outranks_every_other_change() {
        let ranked = [
            StatementKind::Insert,
            StatementKind::Update,
            StatementKind::Merge,
            StatementKind::Delete,
        ];
        for pair in ranked.windows(2) {
            assert!(pair[0].dml_rank() < pair[1].dml_rank());
        }
        assert_eq!(StatementKind::Select.dml_rank(), None);
    }
}
