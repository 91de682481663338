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
        // Numbers the session's events as they become durable: a sequence is
        // used only once the spool holds its event, so the chain has no gaps
        // (the PDP acknowledges only contiguous sequences). A full or failing
        // spool is retried; the session meanwhile refuses new statements
        // (`AuditLog::accepting`).
        tokio::spawn(async move {
            let mut next: u64 = 1;
            while let Some(mut event) = rx.recv().await {
                event.sequence = next;
                let mut backoff = std::time::Duration::from_millis(50);
                loop {
                    match log.record(event.clone()).await {
                        Ok(()) => {
                            next += 1;
                            break;
                        }
                        Err(crate::audit::AuditError::Stopped) => return,
                        Err(
                            e @ (crate::audit::AuditError::InvalidEvent(_)
                            | crate::audit::AuditError::TooLarge { .. }),
                        ) => {
                            tracing::error!(error = %e, "audit event cannot be spooled; skipped");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "audit spool unavailable; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
                        }
                    }
                }
            }
        });
        Some(tx)
    }
}
