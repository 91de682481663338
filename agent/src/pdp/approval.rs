//! The agent's side of the approval service: ask for a review, watch it,
//! withdraw it, and consume it just before the approved statement runs.

use palisade_proto::v1 as pb;
use palisade_sql::Attributes;
use pb::approval_service_client::ApprovalServiceClient;
use tonic::transport::Channel;

use super::{PdpClient, PdpError};

fn error(status: &tonic::Status) -> PdpError {
    match status.code() {
        tonic::Code::NotFound => PdpError::UnknownSession,
        tonic::Code::InvalidArgument
        | tonic::Code::PermissionDenied
        | tonic::Code::FailedPrecondition => PdpError::BadAnswer(status.message().to_owned()),
        _ => PdpError::Rpc(status.message().to_owned()),
    }
}

/// The approval an answer carries; an answer without one is malformed.
fn carried(approval: Option<pb::Approval>) -> Result<pb::Approval, PdpError> {
    approval.ok_or_else(|| PdpError::BadAnswer("no approval in the answer".into()))
}

/// Whether an error is the PDP answering (rather than being unreachable).
fn answered(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::NotFound
            | tonic::Code::InvalidArgument
            | tonic::Code::PermissionDenied
            | tonic::Code::FailedPrecondition
    )
}

impl PdpClient {
    fn approval_clients(&self) -> impl Iterator<Item = ApprovalServiceClient<Channel>> + '_ {
        self.approvals.iter().cloned()
    }

    /// Tries each endpoint in order until one answers; bounded overall.
    async fn approval_call<T, F, Fut>(&self, f: F) -> Result<T, PdpError>
    where
        F: Fn(ApprovalServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let attempt = async {
            let mut last = PdpError::Rpc("no endpoint".into());
            for client in self.approval_clients() {
                match f(client).await {
                    Ok(v) => return Ok(v),
                    Err(status) if answered(&status) => return Err(error(&status)),
                    Err(status) => last = error(&status),
                }
            }
            Err(last)
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| PdpError::Timeout(self.timeout))?
    }

    /// Opens an approval for `statement` (every statement of the text, as
    /// analysed, in `statements`).
    pub async fn request_approval(
        &self,
        session_id: &str,
        statement: &str,
        statements: &[&Attributes],
    ) -> Result<pb::Approval, PdpError> {
        let request = pb::RequestApprovalRequest {
            session_id: session_id.to_owned(),
            statement: statement.to_owned(),
            statements: statements
                .iter()
                .map(|a| palisade_proto::convert::attributes_to_pb(a))
                .collect(),
        };
        let approval = self
            .approval_call(|mut c| {
                let request = request.clone();
                async move {
                    c.request_approval(request)
                        .await
                        .map(|r| r.into_inner().approval)
                }
            })
            .await?;
        carried(approval)
    }

    /// A stream of the approval's states until it is final.
    pub async fn watch_approval(
        &self,
        approval_id: &str,
    ) -> Result<tonic::Streaming<pb::WatchApprovalResponse>, PdpError> {
        let request = pb::WatchApprovalRequest {
            approval_id: approval_id.to_owned(),
        };
        self.approval_call(|mut c| {
            let request = request.clone();
            async move {
                c.watch_approval(request)
                    .await
                    .map(tonic::Response::into_inner)
            }
        })
        .await
    }

    /// Withdraws a pending approval (the client went away or cancelled).
    pub async fn withdraw_approval(
        &self,
        approval_id: &str,
        session_id: &str,
        reason: &str,
    ) -> Result<pb::Approval, PdpError> {
        let request = pb::WithdrawRequest {
            approval_id: approval_id.to_owned(),
            reason: reason.to_owned(),
            session_id: session_id.to_owned(),
        };
        let approval = self
            .approval_call(|mut c| {
                let request = request.clone();
                async move { c.withdraw(request).await.map(|r| r.into_inner().approval) }
            })
            .await?;
        carried(approval)
    }

    /// Marks an approved approval used, for this session and exactly this
    /// statement text; refused if it is not approved, bound elsewhere, or
    /// already used.
    pub async fn consume_approval(
        &self,
        approval_id: &str,
        session_id: &str,
        statement: &str,
    ) -> Result<pb::Approval, PdpError> {
        let request = pb::ConsumeApprovalRequest {
            approval_id: approval_id.to_owned(),
            session_id: session_id.to_owned(),
            statement: statement.to_owned(),
        };
        let approval = self
            .approval_call(|mut c| {
                let request = request.clone();
                async move {
                    c.consume_approval(request)
                        .await
                        .map(|r| r.into_inner().approval)
                }
            })
            .await?;
        carried(approval)
    }
}
