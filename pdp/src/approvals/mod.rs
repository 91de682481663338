//! Pending approvals: statements held for a human reviewer.
//!
//! Data flow: an agent whose statement was answered `RequireApproval` asks
//! the approval service (`grpc::ApprovalApi`) to open an approval; the PDP
//! decides the statement again, names reviewers, policies and deadline, stores
//! the approval ([`ApprovalStore`]) and notifies reviewers ([`webhook`]). A
//! reviewer approves or denies with their own OIDC token; who may review is a
//! Cedar decision ([`review`]) and nobody reviews their own request. The agent
//! watches the approval until it is final; an approved approval is consumed
//! once, by the same session, for the same statement text ([`transition`]).
//!
//! Two stores implement [`ApprovalStore`] and pass the same
//! [`testkit::conformance`] suite:
//! - [`EmbeddedApprovals`] (default): an append-only record file beside the
//!   embedded audit store, replayed at open.
//! - [`PostgresApprovals`]: one table shared by several PDP replicas, so any
//!   replica resolves any approval (watchers poll it).
//!
//! As for audit, the stored form is the protobuf [`pb::Approval`]: it is what
//! every replica, the agent and the CLI exchange, and converting it to a
//! domain type and back would only add a place where the two could drift.

mod embedded;
mod postgres;
pub mod review;
#[doc(hidden)]
pub mod testkit;
pub mod transition;
pub mod webhook;

use palisade_proto::v1 as pb;

pub use embedded::EmbeddedApprovals;
pub use postgres::PostgresApprovals;

/// Why an approval operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// No approval has this id.
    #[error("no approval `{0}`")]
    NotFound(String),
    /// The approval is not in a state that allows the step.
    #[error("{0}")]
    Conflict(String),
    /// The caller may not take the step.
    #[error("{0}")]
    Forbidden(String),
    /// The store failed.
    #[error("approval store: {0}")]
    Storage(String),
}

impl From<std::io::Error> for ApprovalError {
    fn from(e: std::io::Error) -> Self {
        ApprovalError::Storage(e.to_string())
    }
}

impl From<tokio_postgres::Error> for ApprovalError {
    fn from(e: tokio_postgres::Error) -> Self {
        ApprovalError::Storage(e.to_string())
    }
}

impl From<prost::DecodeError> for ApprovalError {
    fn from(e: prost::DecodeError) -> Self {
        ApprovalError::Storage(format!("a stored approval does not decode: {e}"))
    }
}

/// A change applied atomically to one stored approval: it checks the stored
/// value and edits it, or refuses (and nothing is written).
pub type Change<'a> = &'a (dyn Fn(&mut pb::Approval) -> Result<(), ApprovalError> + Send + Sync);

/// Durable storage of approvals, shared by the services of one PDP (and, for
/// [`PostgresApprovals`], by several replicas).
#[tonic::async_trait]
pub trait ApprovalStore: Send + Sync + 'static {
    /// Stores a new approval; its id must not exist yet.
    async fn insert(&self, approval: pb::Approval) -> Result<(), ApprovalError>;

    /// The approval with this id.
    async fn get(&self, id: &str) -> Result<Option<pb::Approval>, ApprovalError>;

    /// Approvals in any of `states` (every state when empty), oldest first.
    async fn list(&self, states: &[pb::ApprovalState]) -> Result<Vec<pb::Approval>, ApprovalError>;

    /// Applies `change` to the stored approval atomically (no other update of
    /// the same approval, on any replica, interleaves) and returns the result.
    async fn update(&self, id: &str, change: Change<'_>) -> Result<pb::Approval, ApprovalError>;
}

/// Whether an approval can no longer change state (except approved →
/// consumed).
pub fn is_final(state: pb::ApprovalState) -> bool {
    !matches!(
        state,
        pb::ApprovalState::Pending | pb::ApprovalState::Unspecified
    )
}

/// The state's lower-case name, for messages and the CLI.
pub fn state_name(state: pb::ApprovalState) -> &'static str {
    match state {
        pb::ApprovalState::Unspecified => "unknown",
        pb::ApprovalState::Pending => "pending",
        pb::ApprovalState::Approved => "approved",
        pb::ApprovalState::Denied => "denied",
        pb::ApprovalState::Expired => "expired",
        pb::ApprovalState::Withdrawn => "withdrawn",
        pb::ApprovalState::Consumed => "consumed",
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        reason = "tests fail on a broken assumption"
    )]

    use std::time::Duration;

    use super::*;
    use crate::engine::{Effect, Principal};
    use crate::policy::load_dir;
    use crate::policy::test_dirs::{dir_with, example_dir};

    #[test]
    fn approval_timeout_is_read_and_checked() {
        let dir = dir_with(
            "@id(\"held\")\n@approval(\"dba\")\n@approval_timeout(\"90s\")\nforbid(principal, action, resource);\n",
        );
        let snapshot = load_dir(dir.path()).unwrap();
        let meta = snapshot.meta(&cedar_policy::PolicyId::new("held")).unwrap();
        assert_eq!(meta.approval_timeout, Some(Duration::from_secs(90)));

        for (bad, says) in [
            (
                "@approval(\"dba\")\n@approval_timeout(\"soon\")",
                "not a duration",
            ),
            (
                "@approval(\"dba\")\n@approval_timeout(\"0s\")",
                "more than zero",
            ),
            ("@approval_timeout(\"5m\")", "beside @approval"),
        ] {
            let dir = dir_with(&format!(
                "@id(\"x\")\n{bad}\nforbid(principal, action, resource);\n"
            ));
            let problems = load_dir(dir.path()).unwrap_err();
            let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
            assert!(text.iter().any(|t| t.contains(says)), "{bad}: {text:?}");
        }
    }

    fn person(name: &str, groups: &[&str]) -> Principal {
        Principal {
            id: format!("https://idp|{name}"),
            issuer: "https://idp".to_owned(),
            subject: name.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            claims: Default::default(),
        }
    }

    #[test]
    fn review_is_a_cedar_decision() {
        let snapshot = load_dir(&example_dir()).unwrap();
        let mut approval = testkit::sample(
            "s",
            "https://idp|ci",
            "DELETE FROM t",
            Duration::from_secs(60),
        );
        let dba = person("bob", &["dba"]);
        let v = review::decide(&snapshot, &dba, &approval);
        assert_eq!(v.effect, Effect::Allow, "{v:?}");
        assert_eq!(v.policies, ["review-by-named-group"]);
        let outsider = person("eve", &["marketing"]);
        assert_eq!(
            review::decide(&snapshot, &outsider, &approval).effect,
            Effect::Deny
        );
        // The requester, even in the group, is refused by policy.
        approval.requester = Some(pb::Principal {
            id: dba.id.clone(),
            ..Default::default()
        });
        let v = review::decide(&snapshot, &dba, &approval);
        assert_eq!(v.effect, Effect::Deny);
        assert_eq!(v.policies, ["no-self-approval"]);
        assert!(v.reason.contains("nobody approves their own request"));
    }

    #[test]
    fn webhook_payloads_carry_what_a_reviewer_needs() {
        let mut approval = testkit::sample(
            "s",
            "https://idp|ci",
            "DELETE FROM migrations_tmp.backfill",
            Duration::from_secs(60),
        );
        if let Some(p) = approval.requester.as_mut() {
            p.claims.insert("sha".to_owned(), "4f1d2c0ffee".to_owned());
            p.claims
                .insert("repository".to_owned(), "acme/app".to_owned());
            p.claims.insert("run_id".to_owned(), "4242".to_owned());
        }
        approval.policy_reason = "needs a dba".to_owned();
        let json = webhook::json_payload(&approval, Some("https://pdp:7443"));
        assert_eq!(json["statement"], "DELETE FROM migrations_tmp.backfill");
        assert_eq!(json["ci"]["sha"], "4f1d2c0ffee");
        assert_eq!(json["ci"]["repository"], "acme/app");
        assert_eq!(json["ci"]["run_id"], "4242");
        assert_eq!(json["reviewers"][0], "dba");
        assert_eq!(json["reason"], "needs a dba");
        assert_eq!(
            json["commands"]["approve"],
            format!(
                "palisade approvals approve {} --pdp https://pdp:7443",
                approval.id
            )
        );
        let slack = webhook::slack_payload(&approval, None).to_string();
        for wanted in [
            "DELETE FROM migrations_tmp.backfill",
            "4f1d2c0ffee",
            "acme/app",
            "unbounded-write-needs-review",
            "palisade approvals deny",
        ] {
            assert!(slack.contains(wanted), "{wanted}: {slack}");
        }
    }
}
