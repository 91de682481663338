//! `DecisionService`: sessions and statement decisions.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use palisade_proto::v1 as pb;
use pb::decision_service_server::DecisionService;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::convert;
use super::peer::agent_name;
use crate::engine::{Effect, Principal, Scope, StatementVerdict};
use crate::oidc::{TokenErrorCode, VerifiedToken, Verifier};
use crate::sessions::Sessions;

/// What the decision service needs besides the sessions.
#[derive(Clone, Debug)]
pub struct DecisionSettings {
    /// Longest session, whatever the token says.
    pub max_session: Duration,
    /// How long callers may reuse an answer.
    pub cache_ttl: Duration,
    /// Search path for unqualified names in raw SQL.
    pub search_path: Vec<String>,
}

/// The gRPC service.
pub struct DecisionApi {
    sessions: Sessions,
    verifier: Verifier,
    settings: Arc<DecisionSettings>,
}

impl DecisionApi {
    /// A service over `sessions`, verifying tokens with `verifier`.
    pub fn new(sessions: Sessions, verifier: Verifier, settings: DecisionSettings) -> Self {
        Self {
            sessions,
            verifier,
            settings: Arc::new(settings),
        }
    }

    fn decide_inputs(
        &self,
        scope: &Scope,
        inputs: Vec<pb::StatementInput>,
    ) -> Result<Vec<pb::StatementDecision>, Status> {
        let ttl = self.settings.cache_ttl;
        let mut out = Vec::with_capacity(inputs.len());
        for input in inputs {
            match input.input {
                None => return Err(Status::invalid_argument("a statement input is empty")),
                Some(pb::statement_input::Input::Attributes(a)) => {
                    let attributes = convert::attributes_from_pb(a).map_err(|e| {
                        Status::invalid_argument(format!("bad statement attributes: {e}"))
                    })?;
                    let verdict = scope.decide_statement(&attributes);
                    out.push(convert::decision_to_pb(&verdict, None, ttl));
                }
                Some(pb::statement_input::Input::Sql(sql)) => {
                    let path: Vec<&str> = self
                        .settings
                        .search_path
                        .iter()
                        .map(String::as_str)
                        .collect();
                    match palisade_sql::analyze(&sql, &path) {
                        Ok(statements) => {
                            for s in statements {
                                let verdict = scope.decide_statement(&s.attributes);
                                out.push(convert::decision_to_pb(
                                    &verdict,
                                    Some(&s.attributes),
                                    ttl,
                                ));
                            }
                        }
                        Err(e) => {
                            // A string that does not parse is denied, not an RPC error:
                            // the caller shows the reason like any refusal.
                            let verdict = StatementVerdict::deny_error(format!(
                                "the statement does not parse: {e}"
                            ));
                            out.push(convert::decision_to_pb(&verdict, None, ttl));
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

fn refusal(
    code: pb::RefusalCode,
    message: impl Into<String>,
    policies: Vec<String>,
) -> pb::OpenSessionResponse {
    pb::OpenSessionResponse {
        outcome: Some(pb::open_session_response::Outcome::Refused(
            pb::SessionRefusal {
                code: code.into(),
                message: message.into(),
                determining_policies: policies,
            },
        )),
    }
}

fn refusal_code(code: TokenErrorCode) -> pb::RefusalCode {
    use pb::RefusalCode as R;
    match code {
        TokenErrorCode::Malformed => R::TokenMalformed,
        TokenErrorCode::Unsigned => R::TokenUnsigned,
        TokenErrorCode::BadSignature => R::TokenBadSignature,
        TokenErrorCode::UnknownKey => R::TokenUnknownKey,
        TokenErrorCode::Expired => R::TokenExpired,
        TokenErrorCode::NotYetValid => R::TokenNotYetValid,
        TokenErrorCode::WrongIssuer => R::TokenWrongIssuer,
        TokenErrorCode::WrongAudience => R::TokenWrongAudience,
        TokenErrorCode::UnsupportedAlgorithm => R::TokenUnsupportedAlgorithm,
        TokenErrorCode::KeysUnavailable => R::KeysUnavailable,
    }
}

fn principal_of(token: VerifiedToken) -> Principal {
    Principal {
        id: token.principal_id,
        issuer: token.issuer,
        subject: token.subject,
        groups: token.groups,
        claims: token.claims,
    }
}

#[tonic::async_trait]
impl DecisionService for DecisionApi {
    async fn open_session(
        &self,
        request: Request<pb::OpenSessionRequest>,
    ) -> Result<Response<pb::OpenSessionResponse>, Status> {
        let agent = agent_name(&request);
        let pb::OpenSessionRequest {
            token,
            target,
            client,
            grantable_roles,
            resume_session_id,
        } = request.into_inner();
        let facts = convert::facts_from_pb(target, client);
        let verified = match self.verifier.verify(&token).await {
            Ok(v) => v,
            Err(e) => {
                info!(%agent, target = %facts.target, reason = %e, "session refused: token");
                return Ok(Response::new(refusal(
                    refusal_code(e.code()),
                    e.to_string(),
                    Vec::new(),
                )));
            }
        };
        let expires_at = verified.expires_at;
        let principal = principal_of(verified);
        let scope = match self.sessions.scope_for(&principal, &facts) {
            Ok(s) => s,
            Err(e) => {
                return Ok(Response::new(refusal(
                    pb::RefusalCode::UnknownTarget,
                    e.to_string(),
                    Vec::new(),
                )));
            }
        };
        let connect = scope.decide_connect();
        if connect.effect != Effect::Allow {
            info!(%agent, principal = %principal.id, target = %facts.target, "session refused: connect");
            let message = format!(
                "{} may not connect to `{}`: {}",
                principal.id, facts.target, connect.reason
            );
            return Ok(Response::new(refusal(
                pb::RefusalCode::ConnectDenied,
                message,
                connect.policies,
            )));
        }
        let roles = scope.decide_roles(&grantable_roles);
        let granted: Vec<String> = roles
            .iter()
            .filter(|(_, v)| v.effect == Effect::Allow)
            .map(|(r, _)| (*r).to_owned())
            .collect();
        if !grantable_roles.is_empty() && granted.is_empty() {
            let message = format!(
                "{} may assume none of the roles of `{}` ({})",
                principal.id,
                facts.target,
                grantable_roles.join(", ")
            );
            return Ok(Response::new(refusal(
                pb::RefusalCode::NoRole,
                message,
                Vec::new(),
            )));
        }
        let now = SystemTime::now();
        let deadline = expires_at.min(now + self.settings.max_session);
        let session_id = if resume_session_id.is_empty() {
            uuid::Uuid::now_v7().to_string()
        } else {
            uuid::Uuid::parse_str(&resume_session_id)
                .map_err(|_| Status::invalid_argument("resume_session_id is not a session id"))?
                .to_string()
        };
        let policy_version = scope.snapshot().version.clone();
        let mut determining = connect.policies.clone();
        for (_, v) in &roles {
            determining.extend(v.policies.iter().cloned());
        }
        determining.sort();
        determining.dedup();
        let grant = pb::SessionGrant {
            session_id: session_id.clone(),
            principal: Some(convert::principal_to_pb(&principal)),
            granted_roles: granted,
            deadline: Some(convert::timestamp_to_pb(deadline)),
            policy_version,
            determining_policies: determining,
        };
        info!(%agent, session = %session_id, principal = %principal.id, target = %facts.target, "session opened");
        self.sessions
            .insert(session_id, principal, facts, deadline, agent, scope);
        Ok(Response::new(pb::OpenSessionResponse {
            outcome: Some(pb::open_session_response::Outcome::Granted(grant)),
        }))
    }

    async fn decide(
        &self,
        request: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::DecideResponse>, Status> {
        let pb::DecideRequest {
            subject,
            target,
            statements,
        } = request.into_inner();
        let scope = match subject {
            None => {
                return Err(Status::invalid_argument(
                    "a session_id or a token is required",
                ));
            }
            Some(pb::decide_request::Subject::SessionId(id)) => {
                let session = self
                    .sessions
                    .get(&id)
                    .ok_or_else(|| Status::not_found(format!("unknown session `{id}`")))?;
                if session.expired(SystemTime::now()) {
                    self.sessions.remove(&id);
                    return Err(Status::failed_precondition(
                        "the session has passed its deadline",
                    ));
                }
                self.sessions
                    .scope(&session)
                    .map_err(|e| Status::failed_precondition(e.to_string()))?
            }
            Some(pb::decide_request::Subject::Token(token)) => {
                let verified = self
                    .verifier
                    .verify(&token)
                    .await
                    .map_err(|e| Status::unauthenticated(e.to_string()))?;
                let facts = convert::facts_from_pb(target, None);
                let scope = self
                    .sessions
                    .scope_for(&principal_of(verified), &facts)
                    .map_err(|e| Status::failed_precondition(e.to_string()))?;
                if scope.decide_connect().effect != Effect::Allow {
                    return Err(Status::permission_denied(format!(
                        "not permitted to connect to `{}`",
                        facts.target
                    )));
                }
                scope
            }
        };
        let policy_version = scope.snapshot().version.clone();
        let decisions = self.decide_inputs(&scope, statements)?;
        Ok(Response::new(pb::DecideResponse {
            decisions,
            policy_version,
        }))
    }

    async fn close_session(
        &self,
        request: Request<pb::CloseSessionRequest>,
    ) -> Result<Response<pb::CloseSessionResponse>, Status> {
        let pb::CloseSessionRequest { session_id, reason } = request.into_inner();
        if self.sessions.remove(&session_id).is_none() {
            warn!(session = %session_id, "close of an unknown session");
        } else {
            info!(session = %session_id, %reason, "session closed");
        }
        Ok(Response::new(pb::CloseSessionResponse {}))
    }
}
