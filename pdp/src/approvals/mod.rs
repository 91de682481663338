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
