//! What every session of the agent shares: configuration, the PDP client,
//! TLS configurations, cancel keys, the policy version and metrics. Passed
//! explicitly (no globals), so tests can run several agents in one process.

use std::sync::Arc;

use crate::config::AgentConfig;
use crate::enforce::PolicyVersion;
use crate::metrics::Metrics;
use crate::pdp::PdpClient;
use crate::session::CancelRegistry;

/// The shared handles of one agent.
#[derive(Clone)]
pub struct AgentContext {
    /// The validated configuration.
    pub config: Arc<AgentConfig>,
    /// The PDP.
    pub pdp: PdpClient,
    /// Client-facing TLS, when configured.
    pub client_tls: Option<Arc<rustls::ServerConfig>>,
    /// TLS towards databases that require it.
    pub upstream_tls: Option<Arc<rustls::ClientConfig>>,
    /// Cancel keys of all sessions.
    pub cancel: CancelRegistry,
    /// The policy version last seen.
    pub version: Arc<PolicyVersion>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// This agent's name in audit events.
    pub agent_id: String,
    /// Keep statement texts normalized (literals replaced) in the audit trail.
    pub redact_literals: bool,
    /// The audit spool; none when the agent runs without one.
    pub audit: Option<crate::audit::AuditLog>,
}

impl AgentContext {
    /// A channel that feeds a session's events, in order, to the spool.
    pub fn audit_sender(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedSender<palisade_proto::v1::AuditEvent>> {
        let log = self.audit.clone()?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<palisade_proto::v1::AuditEvent>();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if let Err(e) = log.record(event).await {
                    tracing::error!(error = %e, "audit event could not be spooled");
                }
            }
        });
        Some(tx)
    }
}
