//! `ApprovalService`: statements held for a reviewer (see [`crate::approvals`]).

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::Stream;
use palisade_proto::v1 as pb;
use pb::approval_service_server::ApprovalService;
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tracing::info;

use super::convert;
use crate::approvals::transition::{self, time_of, timestamp};
use crate::approvals::webhook::Notifier;
use crate::approvals::{ApprovalError, ApprovalStore, Change, is_final, review};
use crate::engine::{Effect, Principal};
use crate::oidc::Verifier;
use crate::sessions::Sessions;

/// What the approval service needs besides its store.
#[derive(Clone, Debug)]
pub struct ApprovalSettings {
    /// Default wait for a reviewer.
    pub timeout: Duration,
    /// How often watchers re-read the store.
    pub poll_interval: Duration,
}

/// The gRPC service.
#[derive(Clone)]
pub struct ApprovalApi {
    store: Arc<dyn ApprovalStore>,
    sessions: Sessions,
    verifier: Verifier,
    notifier: Notifier,
    settings: ApprovalSettings,
    /// Bumped on every change made through this replica (watchers wake at
    /// once; other replicas' changes are seen by polling).
    changes: Arc<watch::Sender<u64>>,
}

fn status(e: ApprovalError) -> Status {
    match e {
        ApprovalError::NotFound(id) => Status::not_found(format!("no approval `{id}`")),
        ApprovalError::Conflict(m) => Status::failed_precondition(m),
        ApprovalError::Forbidden(m) => Status::permission_denied(m),
        ApprovalError::Storage(m) => Status::unavailable(format!("approval store: {m}")),
    }
}

impl ApprovalApi {
    /// A service over `store`, deciding with the sessions' policies.
    pub fn new(
        store: Arc<dyn ApprovalStore>,
        sessions: Sessions,
        verifier: Verifier,
        notifier: Notifier,
        settings: ApprovalSettings,
    ) -> Self {
        Self {
            store,
            sessions,
            verifier,
            notifier,
            settings,
            changes: Arc::new(watch::Sender::new(0)),
        }
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Applies `change` to the stored approval and wakes this replica's
    /// watchers, so a watcher never waits a poll interval for a change made
    /// here.
    async fn change(&self, id: &str, change: Change<'_>) -> Result<pb::Approval, Status> {
        let approval = self.store.update(id, change).await.map_err(status)?;
        self.bump();
        Ok(approval)
    }

    async fn reviewer(&self, token: &str) -> Result<Principal, Status> {
        if token.is_empty() {
            return Err(Status::unauthenticated(
                "a reviewer token is required (--token or PALISADE_TOKEN)",
            ));
        }
        let v = self
            .verifier
            .verify(token)
            .await
            .map_err(|e| Status::unauthenticated(format!("reviewer token: {e}")))?;
        Ok(Principal {
            id: v.principal_id,
            issuer: v.issuer,
            subject: v.subject,
            groups: v.groups,
            claims: v.claims,
        })
    }

    /// The approval, expired first if its deadline passed.
    async fn current(&self, id: &str) -> Result<pb::Approval, Status> {
        let a = self
            .store
            .get(id)
            .await
            .map_err(status)?
            .ok_or_else(|| Status::not_found(format!("no approval `{id}`")))?;
        if transition::due(&a, SystemTime::now()) {
            return self
                .change(id, &|x| transition::expire(x, SystemTime::now()))
                .await;
        }
        Ok(a)
    }

    /// Who sees an approval: its requester and whoever may review it.
    fn visible(&self, caller: &Principal, approval: &pb::Approval) -> bool {
        approval.requester.as_ref().map(|p| p.id.as_str()) == Some(caller.id.as_str())
            || review::decide(&self.sessions.policies().current(), caller, approval).effect
                == Effect::Allow
    }

    async fn decide(
        &self,
        id: &str,
        token: &str,
        approve: bool,
        reason: &str,
    ) -> Result<pb::Approval, Status> {
        let reviewer = self.reviewer(token).await?;
        let approval = self.current(id).await?;
        let requester = approval.requester.as_ref().map(|p| p.id.as_str());
        if requester == Some(reviewer.id.as_str()) {
            info!(approval = %id, reviewer = %reviewer.id, "self-review refused");
            return Err(Status::permission_denied(
                "nobody approves their own request",
            ));
        }
        let verdict = review::decide(&self.sessions.policies().current(), &reviewer, &approval);
        if verdict.effect != Effect::Allow {
            info!(approval = %id, reviewer = %reviewer.id, reason = %verdict.reason, "review refused by policy");
            let by = if verdict.policies.is_empty() {
                String::new()
            } else {
                format!(" (policy {})", verdict.policies.join(", "))
            };
            return Err(Status::permission_denied(format!(
                "{} may not review approval {id}: {}{by}",
                reviewer.id, verdict.reason
            )));
        }
        let updated = self
            .change(id, &|a| {
                transition::review(a, &reviewer.id, approve, reason, SystemTime::now())
            })
            .await?;
        if updated.state() == pb::ApprovalState::Expired {
            return Err(Status::failed_precondition(format!(
                "approval {id} expired before the review"
            )));
        }
        info!(approval = %id, reviewer = %reviewer.id, approve, "approval reviewed");
        Ok(updated)
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchApprovalResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ApprovalService for ApprovalApi {
    async fn request_approval(
        &self,
        request: Request<pb::RequestApprovalRequest>,
    ) -> Result<Response<pb::RequestApprovalResponse>, Status> {
        let pb::RequestApprovalRequest {
            session_id,
            statement,
            statements,
        } = request.into_inner();
        let session = self
            .sessions
            .get(&session_id)
            .ok_or_else(|| Status::not_found(format!("unknown session `{session_id}`")))?;
        if session.expired(SystemTime::now()) {
            return Err(Status::failed_precondition(
                "the session has passed its deadline",
            ));
        }
        if statements.is_empty() {
            return Err(Status::invalid_argument("no statement to hold"));
        }
        let scope = self
            .sessions
            .scope(&session)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        // Decide every statement of the text again: any refusal refuses the
        // request, so an approval can never cover a refused statement.
        let mut reviewers: Vec<String> = Vec::new();
        let mut policies: Vec<String> = Vec::new();
        let mut reasons: Vec<String> = Vec::new();
        let mut held: Option<pb::StatementAttributes> = None;
        for a in statements {
            let attributes = convert_attributes(a.clone())?;
            let v = scope.decide_statement(&attributes).verdict;
            match v.effect {
                Effect::Allow => {}
                Effect::Deny => {
                    return Err(Status::permission_denied(format!(
                        "the statement is refused, not held: {}",
                        v.reason
                    )));
                }
                Effect::RequireApproval => {
                    reviewers.extend(v.reviewers);
                    policies.extend(v.policies);
                    if !v.reason.is_empty() {
                        reasons.push(v.reason);
                    }
                    held.get_or_insert(a);
                }
            }
        }
        if held.is_none() {
            return Err(Status::failed_precondition(
                "the statement needs no approval",
            ));
        }
        reviewers.sort();
        reviewers.dedup();
        policies.sort();
        policies.dedup();
        reasons.dedup();
        let snapshot = scope.snapshot();
        let timeout = policies
            .iter()
            .filter_map(|p| {
                snapshot
                    .meta(&cedar_policy::PolicyId::new(p))
                    .and_then(|m| m.approval_timeout)
            })
            .min()
            .unwrap_or(self.settings.timeout);
        let now = SystemTime::now();
        let approval = pb::Approval {
            id: uuid::Uuid::now_v7().to_string(),
            session_id: session.id.clone(),
            requester: Some(convert::principal_to_pb(&session.principal)),
            target: session.facts.target.clone(),
            statement,
            attributes: held,
            reviewers,
            policies,
            state: pb::ApprovalState::Pending as i32,
            decided_by: String::new(),
            reason: String::new(),
            created: Some(timestamp(now)),
            deadline: Some(timestamp(now + timeout)),
            policy_reason: reasons.join("; "),
            decided: None,
            notification_failures: Vec::new(),
        };
        self.store.insert(approval.clone()).await.map_err(status)?;
        self.bump();
        info!(approval = %approval.id, session = %approval.session_id, principal = %session.principal.id, reviewers = ?approval.reviewers, "approval requested");
        self.notifier.announce(&approval);
        Ok(Response::new(pb::RequestApprovalResponse {
            approval: Some(approval),
        }))
    }

    type WatchApprovalStream = WatchStream;

    async fn watch_approval(
        &self,
        request: Request<pb::WatchApprovalRequest>,
    ) -> Result<Response<Self::WatchApprovalStream>, Status> {
        let id = request.into_inner().approval_id;
        let first = self.current(&id).await?;
        let api = self.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut changes = api.changes.subscribe();
            let mut last = first;
            if tx
                .send(Ok(pb::WatchApprovalResponse {
                    approval: Some(last.clone()),
                }))
                .await
                .is_err()
            {
                return;
            }
            while !is_final(last.state()) {
                let until_deadline = time_of(last.deadline.as_ref())
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                let wait = api.settings.poll_interval.min(until_deadline);
                tokio::select! {
                    _ = changes.changed() => {}
                    () = tokio::time::sleep(wait) => {}
                    () = tx.closed() => return,
                }
                let now = match api.current(&id).await {
                    Ok(a) => a,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if now != last {
                    last = now;
                    if tx
                        .send(Ok(pb::WatchApprovalResponse {
                            approval: Some(last.clone()),
                        }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_approvals(
        &self,
        request: Request<pb::ListApprovalsRequest>,
    ) -> Result<Response<pb::ListApprovalsResponse>, Status> {
        let pb::ListApprovalsRequest {
            states,
            reviewer_token,
        } = request.into_inner();
        let caller = self.reviewer(&reviewer_token).await?;
        let states: Vec<pb::ApprovalState> = states
            .into_iter()
            .filter_map(|s| pb::ApprovalState::try_from(s).ok())
            .collect();
        let mut approvals = self.store.list(&[]).await.map_err(status)?;
        let now = SystemTime::now();
        for a in &mut approvals {
            if transition::due(a, now) {
                *a = self
                    .store
                    .update(&a.id, &|x| transition::expire(x, now))
                    .await
                    .map_err(status)?;
            }
        }
        approvals.retain(|a| states.is_empty() || states.contains(&a.state()));
        approvals.retain(|a| self.visible(&caller, a));
        Ok(Response::new(pb::ListApprovalsResponse { approvals }))
    }

    async fn get_approval(
        &self,
        request: Request<pb::GetApprovalRequest>,
    ) -> Result<Response<pb::GetApprovalResponse>, Status> {
        let pb::GetApprovalRequest {
            approval_id,
            reviewer_token,
        } = request.into_inner();
        let caller = self.reviewer(&reviewer_token).await?;
        let approval = self.current(&approval_id).await?;
        if !self.visible(&caller, &approval) {
            return Err(Status::permission_denied(format!(
                "{} may neither review nor see approval {approval_id}",
                caller.id
            )));
        }
        Ok(Response::new(pb::GetApprovalResponse {
            approval: Some(approval),
        }))
    }

    async fn approve(
        &self,
        request: Request<pb::ApproveRequest>,
    ) -> Result<Response<pb::ApproveResponse>, Status> {
        let r = request.into_inner();
        let approval = self
            .decide(&r.approval_id, &r.reviewer_token, true, &r.reason)
            .await?;
        Ok(Response::new(pb::ApproveResponse {
            approval: Some(approval),
        }))
    }

    async fn deny(
        &self,
        request: Request<pb::DenyRequest>,
    ) -> Result<Response<pb::DenyResponse>, Status> {
        let r = request.into_inner();
        let approval = self
            .decide(&r.approval_id, &r.reviewer_token, false, &r.reason)
            .await?;
        Ok(Response::new(pb::DenyResponse {
            approval: Some(approval),
        }))
    }

    async fn withdraw(
        &self,
        request: Request<pb::WithdrawRequest>,
    ) -> Result<Response<pb::WithdrawResponse>, Status> {
        let r = request.into_inner();
        let approval = self
            .change(&r.approval_id, &|a| {
                transition::withdraw(a, &r.session_id, &r.reason, SystemTime::now())
            })
            .await?;
        info!(approval = %r.approval_id, reason = %r.reason, "approval withdrawn");
        Ok(Response::new(pb::WithdrawResponse {
            approval: Some(approval),
        }))
    }

    async fn consume_approval(
        &self,
        request: Request<pb::ConsumeApprovalRequest>,
    ) -> Result<Response<pb::ConsumeApprovalResponse>, Status> {
        let r = request.into_inner();
        let approval = self
            .change(&r.approval_id, &|a| {
                transition::consume(a, &r.session_id, &r.statement, SystemTime::now())
            })
            .await?;
        info!(approval = %r.approval_id, session = %r.session_id, "approval consumed");
        Ok(Response::new(pb::ConsumeApprovalResponse {
            approval: Some(approval),
        }))
    }
}

fn convert_attributes(a: pb::StatementAttributes) -> Result<palisade_sql::Attributes, Status> {
    palisade_proto::convert::attributes_from_pb(a)
        .map_err(|e| Status::invalid_argument(format!("bad statement attributes: {e}")))
}
