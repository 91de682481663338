//! Assembling and running the PDP: policy store, token verifier, sessions and
//! the gRPC services behind mutual TLS.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use palisade_proto::v1::approval_service_server::ApprovalServiceServer;
use palisade_proto::v1::audit_service_server::AuditServiceServer;
use palisade_proto::v1::decision_service_server::DecisionServiceServer;
use palisade_proto::v1::policy_service_server::PolicyServiceServer;
use palisade_proto::v1::session_service_server::SessionServiceServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tracing::info;

use crate::approvals::webhook::Notifier;
use crate::approvals::{ApprovalStore, EmbeddedApprovals, PostgresApprovals};
use crate::audit::{AuditStore, EmbeddedStore, PostgresStore};
use crate::config::{AuditConfig, PdpConfig};
use crate::grpc::{
    ApprovalApi, ApprovalSettings, AuditApi, DecisionApi, DecisionSettings, PolicyApi,
};
use crate::oidc::Verifier;
use crate::policy::{PolicyProblem, PolicyStore};
use crate::sessions::Sessions;

/// Why the PDP could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The policy directory is not a valid set.
    #[error("the policy set is invalid:\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Policies(Vec<PolicyProblem>),
    /// A token issuer is misconfigured.
    #[error("token issuers: {0}")]
    Issuers(#[from] crate::oidc::OidcError),
    /// A TLS file could not be read.
    #[error("cannot read {path}: {source}")]
    TlsFile {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The listener could not be bound.
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
    /// The audit store could not be opened.
    #[error("audit store: {0}")]
    Audit(#[from] crate::audit::AuditError),
    /// The approval store could not be opened.
    #[error("{0}")]
    Approvals(#[from] crate::approvals::ApprovalError),
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::TlsFile {
        path: path.display().to_string(),
        source,
    })
}

/// A PDP ready to serve: everything loaded and checked.
pub struct Pdp {
    config: PdpConfig,
    store: PolicyStore,
    verifier: Verifier,
    audit: Arc<dyn AuditStore>,
    approvals: Arc<dyn ApprovalStore>,
}

impl Pdp {
    /// Loads policies and issuers; any problem is reported before listening.
    pub async fn new(config: PdpConfig) -> Result<Self, ServeError> {
        let store = PolicyStore::open(&config.policy_dir).map_err(ServeError::Policies)?;
        let verifier = Verifier::new(config.issuers.clone())?;
        let audit: Arc<dyn AuditStore> = match &config.audit {
            AuditConfig::Embedded { dir } => Arc::new(EmbeddedStore::open(dir)?),
            AuditConfig::Postgres { conninfo } => Arc::new(PostgresStore::connect(conninfo).await?),
        };
        // Approvals live where the audit trail does.
        let approvals: Arc<dyn ApprovalStore> = match &config.audit {
            AuditConfig::Embedded { dir } => {
                Arc::new(EmbeddedApprovals::open(&dir.join("approvals"))?)
            }
            AuditConfig::Postgres { conninfo } => {
                Arc::new(PostgresApprovals::connect(conninfo).await?)
            }
        };
        Ok(Self {
            config,
            store,
            verifier,
            audit,
            approvals,
        })
    }

    /// The approval store.
    pub fn approvals(&self) -> Arc<dyn ApprovalStore> {
        self.approvals.clone()
    }

    /// The audit store (tests read what was stored).
    pub fn audit(&self) -> Arc<dyn AuditStore> {
        self.audit.clone()
    }

    /// The policy store (tests trigger reloads through it).
    pub fn store(&self) -> &PolicyStore {
        &self.store
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(
                read(&self.config.tls.cert)?,
                read(&self.config.tls.key)?,
            ))
            .client_ca_root(Certificate::from_pem(read(&self.config.tls.client_ca)?))
            .client_auth_optional(false);
        let sessions = Sessions::new(self.store.clone());
        let watcher = self.store.spawn_watcher(self.config.reload_interval);
        let sweeper = {
            let sessions = sessions.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    sessions.sweep(std::time::SystemTime::now());
                }
            })
        };
        let approval = ApprovalApi::new(
            self.approvals.clone(),
            sessions.clone(),
            self.verifier.clone(),
            Notifier::new(
                self.config.approvals.webhooks.clone(),
                self.approvals.clone(),
                self.config.approvals.public_url.clone(),
            ),
            ApprovalSettings {
                timeout: self.config.approvals.timeout,
                poll_interval: self.config.approvals.poll_interval,
            },
        );
        let decision = DecisionApi::new(
            sessions,
            self.verifier.clone(),
            DecisionSettings {
                max_session: self.config.max_session,
                cache_ttl: self.config.decision_cache_ttl,
                search_path: self.config.search_path.clone(),
            },
        );
        info!(
            addr = %listener.local_addr().map_err(ServeError::Listen)?,
            policy_version = %self.store.current().version,
            "pdp listening (mutual TLS)"
        );
        let result = Server::builder()
            .tls_config(tls)?
            .add_service(DecisionServiceServer::new(decision))
            .add_service(PolicyServiceServer::new(PolicyApi::new(self.store.clone())))
            .add_service(ApprovalServiceServer::new(approval))
            .add_service(AuditServiceServer::new(AuditApi::new(self.audit.clone())))
            .add_service(SessionServiceServer::new(AuditApi::new(self.audit.clone())))
            .serve_with_incoming_shutdown(
                // `Server::tcp_nodelay` applies only to listeners tonic binds
                // itself: set it here, or every small answer waits on Nagle
                // and the client's delayed ACK (40 ms stalls seen in the
                // Decide benchmark).
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown,
            )
            .await;
        watcher.abort();
        sweeper.abort();
        result.map_err(ServeError::from)
    }
}
