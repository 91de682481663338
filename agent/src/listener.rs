//! Accepting clients: one task per connection, on the session thread with
//! the fewest sessions ([`crate::threads`]), a bound on how many, a bound on
//! how long startup may take, and a drain on shutdown.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::config::{AgentConfig, UpstreamTls};
use crate::context::AgentContext;
use crate::enforce::PolicyVersion;
use crate::error::AgentError;
use crate::frontend::{self, Knock};
use crate::metrics::Metrics;
use crate::pdp::{PdpClient, PdpError};
use crate::session::{self, CancelRegistry};
use crate::threads::SessionThreads;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The client TLS certificate could not be loaded.
    #[error("client tls: {0}")]
    ClientTls(std::io::Error),
    /// A target's CA could not be loaded.
    #[error("upstream tls: {0}")]
    UpstreamTls(String),
    /// The PDP client could not be built.
    #[error("{0}")]
    Pdp(#[from] PdpError),
    /// The audit spool could not be opened.
    #[error("audit spool: {0}")]
    Audit(#[from] crate::audit::AuditError),
    /// Masking could not be set up.
    #[error("{0}")]
    Masking(#[from] crate::masking::MaskingSetupError),
    /// A target's admin connection failed.
    #[error("target `{target}`: {message}")]
    Admin {
        /// The target.
        target: String,
        /// What went wrong (never a secret).
        message: String,
    },
}

fn upstream_tls(config: &AgentConfig) -> Result<Option<Arc<rustls::ClientConfig>>, StartError> {
    if !config
        .targets
        .values()
        .any(|t| t.tls == UpstreamTls::Require)
    {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for t in config.targets.values() {
        if let Some(ca) = &t.ca {
            for cert in load_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| StartError::UpstreamTls(format!("{}: {e}", ca.display())))?;
            }
        }
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Arc::new(tls)))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, StartError> {
    CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| StartError::UpstreamTls(format!("{}: {e}", path.display())))
}

impl AgentContext {
    /// Builds the shared handles from a validated configuration, and opens
    /// (recovers) the audit spool.
    pub async fn new(config: AgentConfig) -> Result<Self, StartError> {
        let client_tls = match (&config.listen.tls_cert, &config.listen.tls_key) {
            (Some(cert), Some(key)) => {
                Some(frontend::server_config(cert, key).map_err(StartError::ClientTls)?)
            }
            _ => None,
        };
        let upstream_tls = upstream_tls(&config)?;
        for (name, t) in &config.targets {
            if t.admin.is_none() {
                warn!(target = %name, user = %t.user, "target uses a static database credential (no just-in-time roles)");
            }
        }
        let pdp = PdpClient::new(&config.pdp)?;
        let agent_id = config.agent_id.clone().unwrap_or_else(host_name);
        let audit = if config.audit.disabled {
            tracing::error!(
                "audit is DISABLED on this agent: sessions leave no record (benchmarking only)"
            );
            None
        } else {
            let channel = pdp.audit_channel();
            let spool = config.audit.spool.clone();
            Some(crate::audit::AuditLog::open(spool, channel, agent_id.clone()).await?)
        };
        let mut minters = std::collections::HashMap::new();
        for (name, t) in &config.targets {
            let Some(admin) = &t.admin else { continue };
            let admin_error = |message: String| StartError::Admin {
                target: name.clone(),
                message,
            };
            let password = admin.password().map_err(|e| admin_error(e.to_string()))?;
            let minter = crate::credentials::Minter::connect(
                crate::credentials::AdminConfig {
                    host: t.host.clone(),
                    port: t.port,
                    database: t.database(name).to_owned(),
                    user: admin.user.clone(),
                    password,
                    max_lifetime: admin.max_lifetime,
                },
                &agent_id,
            )
            .await
            .map_err(|e| admin_error(e.to_string()))?;
            minters.insert(name.clone(), minter);
        }
        let masking = Arc::new(crate::masking::Masking::from_config(&config)?);
        Ok(Self {
            masking,
            minters: Arc::new(minters),
            pdp,
            redact_literals: config.audit.redact_literals,
            config: Arc::new(config),
            client_tls,
            upstream_tls,
            cancel: CancelRegistry::default(),
            version: Arc::new(PolicyVersion::default()),
            metrics: Arc::new(Metrics::default()),
            agent_id,
            feed: audit.clone().map(crate::audit::Feed::start),
            audit,
        })
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "agent".to_owned())
}

/// Accepts clients on `listener` until `shutdown` completes, then stops
/// accepting (the listener is closed: new connections are refused at once
/// rather than left waiting in the backlog) and gives open sessions up to
/// `drain` to finish. Then the sessions' audit events are spooled and the
/// spool is flushed to the PDP, each also within `drain`.
/// Sessions run on `threads` (see [`SessionThreads::for_config`]).
pub async fn serve(
    listener: TcpListener,
    ctx: AgentContext,
    threads: SessionThreads,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let limit = Arc::new(Semaphore::new(ctx.config.limits.max_connections));
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, tls = ctx.client_tls.is_some(), session_threads = threads.load().len(), "agent listening");
    }
    let mut sessions = tokio::task::JoinSet::new();
    let poller = tokio::spawn(poll_policy_version(ctx.clone()));
    let reaper = tokio::spawn(reap_session_roles(ctx.clone()));
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            warn!(%peer, "connection limit reached; refusing");
            drop(tcp);
            continue;
        };
        // The socket moves to the session's thread: registered with that
        // thread's runtime, its wake-ups stay there.
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                warn!(%peer, error = %e, "cannot hand the connection to a session thread");
                continue;
            }
        };
        let ctx = ctx.clone();
        let (thread, seat) = threads.seat();
        sessions.spawn_on(
            async move {
                let _permit = permit;
                let _seat = seat;
                match tokio::net::TcpStream::from_std(tcp) {
                    Ok(tcp) => handle(tcp, peer, ctx).await,
                    Err(e) => warn!(%peer, error = %e, "cannot register the connection"),
                }
            },
            thread,
        );
    }
    drop(listener);
    info!(open = sessions.len(), "agent draining");
    let _ = tokio::time::timeout(drain, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    sessions.abort_all();
    while sessions.join_next().await.is_some() {}
    if !ctx.recorded(drain).await {
        warn!("some sessions' audit events could not be spooled before shutdown");
    }
    poller.abort();
    reaper.abort();
    if let Some(audit) = &ctx.audit
        && let Err(e) = audit.flush(drain).await
    {
        warn!(error = %e, "audit events still in the spool at shutdown; they are sent at the next start");
    }
}

/// Removes session roles left by a crashed run of this agent, at start and
/// then every minute (a minter never touches the roles of its own live
/// sessions).
async fn reap_session_roles(ctx: AgentContext) {
    let mut ticker = tokio::time::interval(Duration::from_secs(60));
    loop {
        ticker.tick().await;
        for (target, minter) in ctx.minters.iter() {
            match minter.reap(&std::collections::HashSet::new()).await {
                Ok(removed) if !removed.is_empty() => {
                    info!(%target, roles = ?removed, "removed session roles of ended sessions");
                }
                Ok(_) => {}
                Err(e) => warn!(%target, error = %e, "session role reaper failed"),
            }
        }
    }
}

/// Keeps the shared policy version current, so every session's cached
/// decisions are dropped soon after a policy edit, even when all of its
/// statements are cache hits.
async fn poll_policy_version(ctx: AgentContext) {
    let mut ticker = tokio::time::interval(ctx.config.pdp.policy_poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Ok(version) = ctx.pdp.policy_version().await {
            ctx.version.observe(&version);
        }
    }
}

async fn handle(tcp: tokio::net::TcpStream, peer: std::net::SocketAddr, ctx: AgentContext) {
    let limits = &ctx.config.limits;
    let accepted = tokio::time::timeout(
        limits.startup_timeout,
        frontend::accept(
            tcp,
            ctx.client_tls.clone(),
            ctx.config.listen.insecure_allow_plaintext,
            limits.max_message_bytes,
        ),
    )
    .await;
    match accepted {
        Err(_) => {
            info!(%peer, "startup timed out");
        }
        Ok(Err((stream, error))) => {
            if !matches!(error, AgentError::ClientGone | AgentError::Io(_)) {
                info!(%peer, error = %error, "startup refused");
            }
            if let Some(mut stream) = stream {
                frontend::refuse(&mut stream, &error).await;
            }
        }
        Ok(Ok(Knock::Cancel { process_id, secret })) => {
            ctx.cancel.cancel(process_id, &secret).await
        }
        Ok(Ok(Knock::Session(hello))) => session::run(hello, peer, ctx).await,
    }
}
