//! The pieces of a Palisade deployment for tests and the demo: a development
//! PKI, a development token issuer, a copy of the example policies, and a PDP
//! serving over real mutual TLS on loopback.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use palisade_cli::certs::{self, CertOptions, CertPaths};
use palisade_cli::token::{DevClaims, DevIssuer};
use palisade_pdp::config::{AuditConfig, PdpConfig, TlsConfig};
use palisade_pdp::oidc::{IssuerConfig, JwksSource};
use palisade_pdp::policy::PolicyStore;
use palisade_pdp::server::Pdp;
use palisade_proto::v1::decision_service_client::DecisionServiceClient;
use palisade_proto::v1::policy_service_client::PolicyServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The audience tokens are minted for.
pub const AUDIENCE: &str = "palisade";
/// The development issuer's URL.
pub const ISSUER: &str = "https://dev.palisade.local";

/// The repository's example policy directory.
pub fn example_policies() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// Installs the ring crypto provider (rustls panics when two are linked and
/// none is chosen). Idempotent.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A development PKI, a token issuer and a policy directory in a temp dir.
pub struct Fixture {
    /// Keeps the files alive.
    pub dir: tempfile::TempDir,
    /// The certificates.
    pub certs: CertPaths,
    /// The token issuer.
    pub issuer: DevIssuer,
    /// A private copy of the example policies, free to edit.
    pub policy_dir: PathBuf,
}

impl Fixture {
    /// Creates everything.
    pub fn new() -> anyhow::Result<Self> {
        install_crypto();
        let dir = tempfile::tempdir()?;
        let certs = certs::init_dir(&dir.path().join("certs"), &CertOptions::default())?;
        let issuer = DevIssuer::create_or_load(&dir.path().join("issuer"), ISSUER)?;
        let policy_dir = dir.path().join("policies");
        copy_dir(&example_policies(), &policy_dir)?;
        Ok(Self {
            dir,
            certs,
            issuer,
            policy_dir,
        })
    }

    /// A PDP configuration over this fixture.
    pub fn pdp_config(&self) -> PdpConfig {
        PdpConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            policy_dir: self.policy_dir.clone(),
            reload_interval: Duration::from_millis(100),
            max_session: Duration::from_secs(3600),
            decision_cache_ttl: Duration::from_secs(60),
            search_path: vec!["public".to_owned()],
            tls: TlsConfig {
                cert: self.certs.pdp.cert.clone(),
                key: self.certs.pdp.key.clone(),
                client_ca: self.certs.ca.cert.clone(),
            },
            issuers: vec![IssuerConfig::new(
                ISSUER,
                vec![AUDIENCE.to_owned()],
                JwksSource::File(self.issuer.jwks_path()),
            )],
            audit: AuditConfig::Embedded {
                dir: self.dir.path().join("audit"),
            },
            approvals: Default::default(),
        }
    }

    /// A token for `sub` in `groups`, with GitHub-Actions-shaped CI claims.
    pub fn token(&self, sub: &str, groups: &[&str]) -> anyhow::Result<String> {
        let mut claims = DevClaims::new(sub, AUDIENCE);
        claims.groups = groups.iter().map(|g| (*g).to_owned()).collect();
        claims.extra.insert("repository".into(), "acme/app".into());
        claims.extra.insert(
            "sha".into(),
            "4f1d2c0ffee4f1d2c0ffee4f1d2c0ffee4f1d2c0".into(),
        );
        claims.extra.insert("run_id".into(), "4242".into());
        self.issuer.mint(&claims)
    }

    /// mTLS settings of the first agent's certificate.
    pub fn agent_tls(&self) -> anyhow::Result<ClientTlsConfig> {
        let agent = self.certs.agents.first().context("no agent certificate")?;
        client_tls(
            &self.certs.ca.cert,
            Some((&agent.pdp_client.cert, &agent.pdp_client.key)),
        )
    }
}

/// Client TLS towards the PDP: trust `ca`, present `identity` if given.
pub fn client_tls(
    ca: &Path,
    identity: Option<(&PathBuf, &PathBuf)>,
) -> anyhow::Result<ClientTlsConfig> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca)?))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(cert)?,
            std::fs::read(key)?,
        ));
    }
    Ok(tls)
}

/// A PDP running in this process on a loopback port.
pub struct RunningPdp {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Its policy store.
    pub store: PolicyStore,
    /// Its audit store.
    pub audit: std::sync::Arc<dyn palisade_pdp::audit::AuditStore>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningPdp {
    /// Starts a PDP with `config` on a free port of 127.0.0.1 (or on
    /// `config.listen` when it names a port).
    pub async fn start(config: PdpConfig) -> anyhow::Result<Self> {
        install_crypto();
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let pdp = Pdp::new(config).await?;
        let store = pdp.store().clone();
        let audit = pdp.audit();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = pdp
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            store,
            audit,
            shutdown: Some(tx),
            task,
        })
    }

    /// The statements recorded of every session, once at least `count`
    /// sessions have ended in the audit store (agents stream their events
    /// after the fact); waits up to 10 s.
    pub async fn ended_statements(
        &self,
        count: usize,
    ) -> anyhow::Result<Vec<palisade_proto::v1::StatementExecuted>> {
        use palisade_proto::v1::audit_event::Event;
        for _ in 0..100 {
            let sessions = self
                .audit
                .list_sessions(&palisade_pdp::audit::SessionFilter::default())
                .await?;
            let ended = sessions.iter().filter(|s| !s.end_reason.is_empty()).count();
            if ended >= count {
                let mut out = Vec::new();
                for s in &sessions {
                    for e in self.audit.session_events(&s.session_id, 0).await? {
                        if let Some(Event::Statement(statement)) = e.event.event {
                            out.push(statement);
                        }
                    }
                }
                return Ok(out);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("{count} sessions did not end in the audit store within 10 s")
    }

    /// The gRPC endpoint URL.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// A channel presenting `tls`.
    pub async fn channel(&self, tls: ClientTlsConfig) -> Result<Channel, tonic::transport::Error> {
        Endpoint::from_shared(self.url())?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
    }

    /// A decision client presenting `tls`.
    pub async fn decision_client(
        &self,
        tls: ClientTlsConfig,
    ) -> anyhow::Result<DecisionServiceClient<Channel>> {
        Ok(DecisionServiceClient::new(self.channel(tls).await?))
    }

    /// A policy-status client presenting `tls`.
    pub async fn policy_client(
        &self,
        tls: ClientTlsConfig,
    ) -> anyhow::Result<PolicyServiceClient<Channel>> {
        Ok(PolicyServiceClient::new(self.channel(tls).await?))
    }

    /// Stops it and waits until it is gone (the port is closed).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningPdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies a flat directory.
pub fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// The directory holding the workspace's binaries (`target/debug`), found
/// from the test executable's own path (`target/debug/deps/...`).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .context("executable without a directory")?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

/// A PDP running as its own process (`palisade-pdp`), for tests that kill
/// and restart it.
pub struct PdpProcess {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    config_path: PathBuf,
    child: tokio::process::Child,
}

impl PdpProcess {
    /// Writes a configuration for `fixture` listening on `addr` and starts
    /// the binary; returns once it accepts connections.
    pub async fn start(fixture: &Fixture, addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        let config_path = fixture.dir.path().join("pdp.toml");
        let toml = format!(
            r#"listen = "{addr}"
policy_dir = "{policies}"
reload_interval = "200ms"

[tls]
cert = "{cert}"
key = "{key}"
client_ca = "{ca}"

[audit]
store = "embedded"
dir = "{audit}"

[[issuers]]
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}"]
jwks = {{ jwks_file = "{jwks}" }}
"#,
            policies = fixture.policy_dir.display(),
            cert = fixture.certs.pdp.cert.display(),
            key = fixture.certs.pdp.key.display(),
            ca = fixture.certs.ca.cert.display(),
            jwks = fixture.issuer.jwks_path().display(),
            audit = fixture.dir.path().join("audit").display(),
        );
        std::fs::write(&config_path, toml)?;
        Self::spawn(config_path, addr).await
    }

    async fn spawn(config_path: PathBuf, addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        let binary = bin_dir()?.join("palisade-pdp");
        let child = tokio::process::Command::new(&binary)
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (run `cargo build --bins` first)",
                    binary.display()
                )
            })?;
        crate::ports::wait_for_port(addr, Duration::from_secs(30)).await?;
        Ok(Self {
            addr,
            config_path,
            child,
        })
    }

    /// The gRPC endpoint URL.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// Starts it again with the same configuration and port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill().await;
        let fresh = Self::spawn(self.config_path.clone(), self.addr).await?;
        *self = fresh;
        Ok(())
    }
}
