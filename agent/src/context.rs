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
    /// How many sessions' event feeders (see [`Self::audit_sender`]) still
    /// hold events that are not in the spool; a graceful shutdown waits for
    /// zero before it flushes the spool.
    pub recording: Arc<tokio::sync::watch::Sender<usize>>,
}

/// Most events of one session spooled in one go.
const AUDIT_BATCH: usize = 256;

impl AgentContext {
    /// A channel that feeds a session's events, in order, to the spool.
    pub fn audit_sender(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedSender<palisade_proto::v1::AuditEvent>> {
        let log = self.audit.clone()?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<palisade_proto::v1::AuditEvent>();
        let feeding = Feeding::new(self.recording.clone());
        // Numbers the session's events as they become durable: a sequence is
        // used only once the spool holds its event, so the chain has no gaps
        // (the PDP acknowledges only contiguous sequences). A full or failing
        // spool is retried; the session meanwhile refuses new statements
        // (`AuditLog::accepting`).
        tokio::spawn(async move {
            let _feeding = feeding;
            let mut next: u64 = 1;
            let mut waiting: std::collections::VecDeque<palisade_proto::v1::AuditEvent> =
                std::collections::VecDeque::new();
            let mut backoff = std::time::Duration::from_millis(50);
            loop {
                if waiting.is_empty() {
                    match rx.recv().await {
                        Some(e) => waiting.push_back(e),
                        None => return,
                    }
                }
                while waiting.len() < AUDIT_BATCH {
                    match rx.try_recv() {
                        Ok(e) => waiting.push_back(e),
                        Err(_) => break,
                    }
                }
                let batch: Vec<_> = waiting
                    .iter()
                    .cloned()
                    .zip(next..)
                    .map(|(mut e, sequence)| {
                        e.sequence = sequence;
                        e
                    })
                    .collect();
                let (stored, error) = log.record_batch(batch).await;
                waiting.drain(..stored);
                next += stored as u64;
                match error {
                    None => backoff = std::time::Duration::from_millis(50),
                    Some(crate::audit::AuditError::Stopped) => return,
                    Some(
                        e @ (crate::audit::AuditError::InvalidEvent(_)
                        | crate::audit::AuditError::TooLarge { .. }),
                    ) => {
                        // This event can never be stored; its number is reused.
                        tracing::error!(error = %e, "audit event cannot be spooled; skipped");
                        waiting.pop_front();
                    }
                    Some(e) => {
                        tracing::warn!(error = %e, "audit spool unavailable; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
                    }
                }
            }
        });
        Some(tx)
    }
}

/// Counts a running event feeder in [`AgentContext::recording`].
struct Feeding(Arc<tokio::sync::watch::Sender<usize>>);

impl Feeding {
    fn new(count: Arc<tokio::sync::watch::Sender<usize>>) -> Self {
        count.send_modify(|n| *n += 1);
        Self(count)
    }
}

impl Drop for Feeding {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl AgentContext {
    /// Waits until every session's events are in the spool (their sessions
    /// have ended and the feeders have stored what they held), for at most
    /// `timeout`; false when some are still held.
    pub async fn recorded(&self, timeout: std::time::Duration) -> bool {
        let mut count = self.recording.subscribe();
        tokio::time::timeout(timeout, count.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}
