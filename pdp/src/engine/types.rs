//! The values decisions are made of and answered with.

use std::sync::Arc;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Who is behind a session, as verified from the token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Principal {
    /// `<issuer>|<subject>`: the Cedar id of the user.
    pub id: String,
    /// The token's `iss`.
    pub issuer: String,
    /// The token's `sub`.
    pub subject: String,
    /// Groups from the configured groups claim.
    pub groups: Vec<String>,
    /// Selected claims (repository, sha, run_id, ...): Cedar entity tags.
    pub claims: BTreeMap<String, String>,
}

/// What the agent knows about the client side of a session; the `session`
/// record of every Cedar context.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionFacts {
    /// The target (database) of the session.
    pub target: String,
    /// The client's application_name.
    pub application_name: String,
    /// The client's address, "ip:port".
    pub client_address: String,
    /// The user name in the client's startup message.
    pub database_user: String,
    /// Whether the client connection is TLS-protected.
    pub tls: bool,
}

/// The answer of policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Go ahead.
    Allow,
    /// Refused.
    Deny,
    /// Not without a human review.
    RequireApproval,
}

impl Effect {
    /// The name used in test files and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
            Effect::RequireApproval => "require_approval",
        }
    }
}

impl FromStr for Effect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Effect::Allow),
            "deny" => Ok(Effect::Deny),
            "require_approval" => Ok(Effect::RequireApproval),
            other => Err(other.to_owned()),
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One decision with the policies that determined it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Allow, deny or require approval.
    pub effect: Effect,
    /// The determining policies, by `@id`.
    pub policies: Vec<String>,
    /// A sentence fit to show the user.
    pub reason: String,
    /// For require-approval: the reviewer groups.
    pub reviewers: Vec<String>,
}

/// A statement's decision and the masks its result needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementVerdict {
    /// The decision.
    pub verdict: Verdict,
    /// Every classified column of the target whose `unmask` was refused:
    /// not only those of the relations read, because views, functions and
    /// rules reach columns the statement does not name.
    pub masks: Arc<Vec<ColumnMask>>,
}

impl StatementVerdict {
    /// A refusal because the statement could not be evaluated (fail closed).
    pub fn deny_error(reason: String) -> Self {
        Self {
            verdict: Verdict {
                effect: Effect::Deny,
                policies: Vec::new(),
                reason,
                reviewers: Vec::new(),
            },
            masks: Arc::default(),
        }
    }
}

/// How a refused `unmask` hides a value (`@mask("...")`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaskMethod {
    /// A fixed marker.
    Redact,
    /// Only the last four characters stay.
    Last4,
    /// Only the domain of an e-mail address stays.
    Email,
    /// A keyed hash: equal values stay equal.
    Hash,
    /// NULL.
    Null,
}

impl FromStr for MaskMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "redact" => Ok(Self::Redact),
            "last4" => Ok(Self::Last4),
            "email" => Ok(Self::Email),
            "hash" => Ok(Self::Hash),
            "null" => Ok(Self::Null),
            other => Err(other.to_owned()),
        }
    }
}

/// A masking instruction for one classified column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMask {
    /// Schema of the column's table.
    pub schema: String,
    /// The table.
    pub table: String,
    /// The column.
    pub column: String,
    /// Its classification.
    pub classification: String,
    /// How to mask it.
    pub method: MaskMethod,
    /// The policy that refused `unmask`.
    pub policy_id: String,
}
