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
    /// Just-in-time credential minters, by target (targets with an admin
    /// connection).
    pub minters: Arc<std::collections::HashMap<String, crate::credentials::Minter>>,
    /// Result masking: hash key, detectors, each target's catalog.
    pub masking: Arc<crate::masking::Masking>,
    /// Numbers every session's events and hands them to the spool (with
    /// `audit`).
    pub feed: Option<crate::audit::Feed>,
}

impl AgentContext {
    /// Session `session_id`'s sender of audit events (none without a
    /// spool).
    pub fn audit_sender(&self, session_id: &str) -> Option<crate::audit::FeedSender> {
        self.feed.as_ref().map(|feed| feed.sender(session_id))
    }

    /// Waits until every session's events are in the spool (their sessions
    /// have ended and everything they sent is stored), for at most
    /// `timeout`; false when some are still held.
    pub async fn recorded(&self, timeout: std::time::Duration) -> bool {
        match &self.feed {
            Some(feed) => feed.recorded(timeout).await,
            None => true,
        }
    }
}
