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
}
