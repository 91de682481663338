//! The agent's view of the PDP: open a session, decide statements, close it.
//! Every call is bounded by the configured timeout; an error or timeout is
//! the caller's to turn into a refusal (the agent fails closed).

mod approval;
mod convert;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use palisade_proto::v1 as pb;
use palisade_sql::Attributes;
use pb::approval_service_client::ApprovalServiceClient;
use pb::decision_service_client::DecisionServiceClient;
use pb::policy_service_client::PolicyServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::PdpConfig;
pub use convert::{Decision, Effect, Mask, MaskMethod};

/// Why a PDP call failed.
#[derive(Debug, thiserror::Error)]
pub enum PdpError {
    /// The configuration could not be used.
    #[error("pdp configuration: {0}")]
    Config(String),
    /// No answer within the bound.
    #[error("no answer from the policy service within {0:?}")]
    Timeout(Duration),
    /// The PDP forgot the session (it restarted).
    #[error("the policy service does not know this session")]
    UnknownSession,
    /// Any other RPC failure.
    #[error("the policy service is unavailable: {0}")]
    Rpc(String),
    /// The PDP answered something the agent cannot use.
    #[error("the policy service answered badly: {0}")]
    BadAnswer(String),
}

/// A granted session.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The PDP's session id.
    pub session_id: String,
    /// The principal id (`issuer|subject`).
    pub principal: String,
    /// Groups, for logs.
    pub groups: Vec<String>,
    /// Roles granted.
    pub granted_roles: Vec<String>,
    /// The session must end by then.
    pub deadline: SystemTime,
    /// Policy-set version at open.
    pub policy_version: String,
    /// The principal as the PDP described it (for the audit trail).
    pub principal_pb: pb::Principal,
}

/// What the PDP said to a session request.
#[derive(Debug)]
pub enum OpenOutcome {
    /// Go ahead.
    Granted(Box<Grant>),
    /// Refused, with a reason fit for the client and whether the token was
    /// the problem (28P01) rather than policy (28000).
    Refused {
        /// The reason.
        message: String,
        /// A token problem.
        bad_token: bool,
    },
}

/// Facts about the client passed at session open.
#[derive(Debug, Clone, Default)]
pub struct ClientFacts {
    /// "ip:port".
    pub address: String,
    /// application_name.
    pub application_name: String,
    /// The startup user name.
    pub database_user: String,
    /// TLS on the client connection.
    pub tls: bool,
    /// Startup parameters.
    pub parameters: Vec<(String, String)>,
}

/// A client of one or more PDP endpoints. Channels connect lazily and
/// reconnect on their own, so a PDP that comes back restores service.
#[derive(Clone)]
pub struct PdpClient {
    endpoints: Arc<Vec<Endpoint>>,
    clients: Arc<Vec<DecisionServiceClient<Channel>>>,
    status: Arc<Vec<PolicyServiceClient<Channel>>>,
    /// Approval calls: no per-request bound on these channels (a watch
    /// stream lasts as long as the review); unary calls are bounded by
    /// `timeout` in the caller.
    approvals: Arc<Vec<ApprovalServiceClient<Channel>>>,
    timeout: Duration,
}

impl PdpClient {
    /// A channel for the audit stream: its own connections (a backlog being
    /// replayed does not delay decisions), balanced over every endpoint (it
    /// fails over like decisions do).
    pub fn audit_channel(&self) -> Channel {
        Channel::balance_list(self.endpoints.iter().cloned())
    }

    /// Builds lazy channels to every endpoint.
    pub fn new(config: &PdpConfig) -> Result<Self, PdpError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| PdpError::Config(format!("{}: {e}", p.display())))
        };
        let ca = Certificate::from_pem(read(&config.ca)?);
        let identity = Identity::from_pem(read(&config.cert)?, read(&config.key)?);
        let mut clients = Vec::new();
        let mut status = Vec::new();
        let mut endpoints = Vec::new();
        let mut approvals = Vec::new();
        for url in &config.endpoints {
            let mut tls = ClientTlsConfig::new()
                .ca_certificate(ca.clone())
                .identity(identity.clone());
            let host = url
                .split("://")
                .nth(1)
                .and_then(|rest| rest.split([':', '/']).next())
                .unwrap_or_default()
                .to_owned();
            tls = tls.domain_name(config.server_name.clone().unwrap_or(host));
            let endpoint = Endpoint::from_shared(url.clone())
                .map_err(|e| PdpError::Config(format!("{url}: {e}")))?
                .tls_config(tls)
                .map_err(|e| PdpError::Config(format!("{url}: {e}")))?
                .connect_timeout(config.decision_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(20))
                .keep_alive_while_idle(true);
            endpoints.push(endpoint.clone());
            approvals.push(ApprovalServiceClient::new(endpoint.connect_lazy()));
            // Only decision calls are bounded per request (the audit stream
            // is long-lived).
            let channel = endpoint.timeout(config.decision_timeout).connect_lazy();
            status.push(PolicyServiceClient::new(channel.clone()));
            clients.push(DecisionServiceClient::new(channel));
        }
        if clients.is_empty() {
            return Err(PdpError::Config("no PDP endpoint".into()));
        }
        Ok(Self {
            endpoints: Arc::new(endpoints),
            clients: Arc::new(clients),
            status: Arc::new(status),
            approvals: Arc::new(approvals),
            timeout: config.decision_timeout,
        })
    }

    /// Tries each endpoint in order until one answers; bounded overall.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, PdpError>
    where
        F: Fn(DecisionServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let attempt = async {
            let mut last = PdpError::Rpc("no endpoint".into());
            for client in self.clients.iter() {
                match f(client.clone()).await {
                    Ok(v) => return Ok(v),
                    Err(status) if status.code() == tonic::Code::NotFound => {
                        return Err(PdpError::UnknownSession);
                    }
                    Err(status) if status.code() == tonic::Code::InvalidArgument => {
                        return Err(PdpError::BadAnswer(status.message().to_owned()));
                    }
                    Err(status) => last = PdpError::Rpc(status.message().to_owned()),
                }
            }
            Err(last)
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| PdpError::Timeout(self.timeout))?
    }

    /// Opens (or, with `resume`, re-opens) a session.
    pub async fn open_session(
        &self,
        token: &str,
        target: &str,
        client: &ClientFacts,
        grantable_roles: &[String],
        resume: Option<&str>,
    ) -> Result<OpenOutcome, PdpError> {
        let request = pb::OpenSessionRequest {
            token: token.to_owned(),
            target: target.to_owned(),
            client: Some(pb::ClientInfo {
                address: client.address.clone(),
                application_name: client.application_name.clone(),
                database_user: client.database_user.clone(),
                tls: client.tls,
                startup_parameters: client.parameters.iter().cloned().collect(),
                protocol_version: "3.0".to_owned(),
            }),
            grantable_roles: grantable_roles.to_vec(),
            resume_session_id: resume.unwrap_or_default().to_owned(),
        };
        let response = self
            .call(|mut c| {
                let request = request.clone();
                async move {
                    c.open_session(request)
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await?;
        convert::open_outcome(response)
    }

    /// Decides statements of a session, in order.
    pub async fn decide(
        &self,
        session_id: &str,
        statements: &[&Attributes],
    ) -> Result<(Vec<Decision>, String), PdpError> {
        let request = pb::DecideRequest {
            subject: Some(pb::decide_request::Subject::SessionId(
                session_id.to_owned(),
            )),
            target: String::new(),
            statements: statements
                .iter()
                .map(|a| pb::StatementInput {
                    input: Some(pb::statement_input::Input::Attributes(
                        palisade_proto::convert::attributes_to_pb(a),
                    )),
                })
                .collect(),
        };
        let response = self
            .call(|mut c| {
                let request = request.clone();
                async move { c.decide(request).await.map(tonic::Response::into_inner) }
            })
            .await?;
        if response.decisions.len() != statements.len() {
            return Err(PdpError::BadAnswer(format!(
                "{} decisions for {} statements",
                response.decisions.len(),
                statements.len()
            )));
        }
        let decisions = response
            .decisions
            .into_iter()
            .map(convert::decision)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((decisions, response.policy_version))
    }

    /// The version of the policy set the PDP enforces now.
    pub async fn policy_version(&self) -> Result<String, PdpError> {
        let attempt = async {
            let mut last = PdpError::Rpc("no endpoint".into());
            for client in self.status.iter() {
                match client
                    .clone()
                    .get_policy_status(pb::GetPolicyStatusRequest {})
                    .await
                {
                    Ok(r) => return Ok(r.into_inner().version),
                    Err(status) => last = PdpError::Rpc(status.message().to_owned()),
                }
            }
            Err(last)
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| PdpError::Timeout(self.timeout))?
    }

    /// Tells the PDP the session ended (best effort).
    pub async fn close_session(&self, session_id: &str, reason: &str) {
        let request = pb::CloseSessionRequest {
            session_id: session_id.to_owned(),
            reason: reason.to_owned(),
        };
        let _ = self
            .call(|mut c| {
                let request = request.clone();
                async move {
                    c.close_session(request)
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await;
    }
}
