//! A Palisade agent in this process, in front of a throwaway PostgreSQL,
//! deciding with a [`RunningPdp`](crate::stack::RunningPdp), and the example
//! database the policies speak about.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use palisade_agent::config::{
    AgentConfig, AuditSettings, Limits, ListenConfig, PdpConfig, TargetConfig, UpstreamTls,
};
use palisade_agent::context::AgentContext;

use crate::postgres::TestPostgres;
use crate::stack::{Fixture, install_crypto};

/// The schema and rows of the example story: production tables in `public`
/// and `reporting`, classified columns, and the `migrations_tmp` sandbox.
pub const EXAMPLE_SCHEMA: &str = r"
CREATE DATABASE prod;
\connect prod
CREATE TABLE public.orders (id int PRIMARY KEY, day date NOT NULL DEFAULT current_date, total numeric NOT NULL);
INSERT INTO public.orders (id, total) SELECT g, g * 10 FROM generate_series(1, 100) g;
CREATE TABLE public.customers (id int PRIMARY KEY, name text, email text, ssn text, phone text);
INSERT INTO public.customers VALUES (1, 'Ada', 'ada@example.com', '123-45-6789', '+1 555 0100');
CREATE TABLE public.payments (id int PRIMARY KEY, customer_id int, card_number text);
INSERT INTO public.payments VALUES (1, 1, '4111111111111111');
CREATE SCHEMA reporting;
CREATE TABLE reporting.daily (day date PRIMARY KEY, revenue numeric);
INSERT INTO reporting.daily VALUES (current_date, 1000);
CREATE SCHEMA migrations_tmp;
CREATE TABLE migrations_tmp.backfill (id int);
INSERT INTO migrations_tmp.backfill SELECT g FROM generate_series(1, 10) g;
";

/// Creates the example database on `pg`.
pub async fn seed_example(pg: &TestPostgres) -> anyhow::Result<()> {
    pg.psql("postgres", EXAMPLE_SCHEMA).await?;
    Ok(())
}

/// An agent configuration for `fixture`, the PDP at `pdp_url`, and `pg`
/// serving the `prod` target with the superuser's credential.
pub fn agent_config(
    fixture: &Fixture,
    pdp_url: &str,
    pg: &TestPostgres,
) -> anyhow::Result<AgentConfig> {
    let agent = fixture
        .certs
        .agents
        .first()
        .ok_or_else(|| anyhow::anyhow!("no agent certificate"))?;
    let password_file = fixture.dir.path().join("prod.password");
    std::fs::write(&password_file, pg.superuser_password())?;
    let mut targets = BTreeMap::new();
    targets.insert(
        "prod".to_owned(),
        TargetConfig {
            host: pg.host().to_owned(),
            port: pg.port(),
            database: None,
            user: pg.superuser().to_owned(),
            password_file: Some(password_file),
            password_env: None,
            tls: UpstreamTls::Disable,
            ca: None,
            tls_server_name: None,
            grantable_roles: Vec::new(),
            admin: None,
        },
    );
    Ok(AgentConfig {
        listen: ListenConfig {
            addr: ([127, 0, 0, 1], 0).into(),
            tls_cert: Some(agent.listener.cert.clone()),
            tls_key: Some(agent.listener.key.clone()),
            insecure_allow_plaintext: false,
        },
        pdp: PdpConfig {
            endpoints: vec![pdp_url.to_owned()],
            ca: fixture.certs.ca.cert.clone(),
            cert: agent.pdp_client.cert.clone(),
            key: agent.pdp_client.key.clone(),
            server_name: Some("localhost".to_owned()),
            decision_timeout: Duration::from_secs(5),
            policy_poll_interval: Duration::from_millis(200),
        },
        targets,
        limits: Limits::default(),
        metrics_listen: None,
        audit: AuditSettings {
            spool: palisade_agent::audit::SpoolConfig::new(fixture.dir.path().join("spool")),
            redact_literals: false,
            disabled: false,
        },
        agent_id: Some(agent.name.clone()),
        masking: Default::default(),
        worker_threads: None,
    })
}

/// An agent serving on a loopback port of this process.
pub struct RunningAgent {
    /// Where clients connect.
    pub addr: std::net::SocketAddr,
    /// Its shared handles (metrics, ...).
    pub ctx: AgentContext,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    /// The CA clients verify the agent with.
    pub ca: PathBuf,
    /// Where the metrics endpoint listens, when configured.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl RunningAgent {
    /// Starts an agent with `config` on a free port.
    pub async fn start(config: AgentConfig, ca: PathBuf) -> anyhow::Result<Self> {
        install_crypto();
        let listener = tokio::net::TcpListener::bind(config.listen.addr).await?;
        let addr = listener.local_addr()?;
        let metrics_addr = match config.metrics_listen {
            Some(addr) => {
                let listener = palisade_agent::metrics::bind(addr).await?;
                let bound = listener.local_addr()?;
                Some((listener, bound))
            }
            None => None,
        };
        let ctx = AgentContext::new(config).await?;
        let threads = palisade_agent::threads::SessionThreads::for_config(&ctx.config)?;
        let metrics_addr = metrics_addr.map(|(listener, bound)| {
            tokio::spawn(palisade_agent::metrics::serve(
                listener,
                ctx.metrics.clone(),
            ));
            bound
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let serve_ctx = ctx.clone();
        let task = tokio::spawn(async move {
            palisade_agent::listener::serve(
                listener,
                serve_ctx,
                threads,
                async move {
                    let _ = rx.await;
                },
                Duration::from_secs(1),
            )
            .await;
        });
        Ok(Self {
            addr,
            ctx,
            shutdown: Some(tx),
            task,
            ca,
            metrics_addr,
        })
    }

    /// A libpq connection string for `token` (psql, pgbench, psycopg): TLS
    /// verified against the development CA.
    pub fn libpq_conninfo(&self, token: &str) -> String {
        format!(
            "host=localhost port={} dbname=prod user=ci password={token} sslmode=verify-full sslrootcert={}",
            self.addr.port(),
            self.ca.display()
        )
    }

    /// A tokio-postgres connection string for `token` (its TLS connector
    /// verifies the certificate against the development CA).
    pub fn conninfo(&self, token: &str) -> String {
        format!(
            "host=localhost port={} dbname=prod user=ci password={token} sslmode=require",
            self.addr.port()
        )
    }

    /// Stops accepting and ends the serving task.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Everything at once: PKI and issuer, a seeded PostgreSQL, a PDP and an
/// agent, all on loopback.
pub struct Stack {
    /// PKI, issuer, policies.
    pub fixture: Fixture,
    /// The database.
    pub pg: TestPostgres,
    /// The PDP.
    pub pdp: crate::stack::RunningPdp,
    /// The agent.
    pub agent: RunningAgent,
}

impl Stack {
    /// Starts the whole stack with the example database.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Starts the stack, letting the caller adjust the agent configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut AgentConfig)) -> anyhow::Result<Self> {
        Self::start_configured(|_, _| {}, adjust).await
    }

    /// Starts the stack, letting the caller adjust the PDP configuration
    /// (with the database at hand, e.g. for the PostgreSQL audit store) and
    /// the agent configuration.
    pub async fn start_configured(
        adjust_pdp: impl FnOnce(&mut palisade_pdp::config::PdpConfig, &TestPostgres),
        adjust: impl FnOnce(&mut AgentConfig),
    ) -> anyhow::Result<Self> {
        let fixture = Fixture::new()?;
        let pg = TestPostgres::start().await?;
        seed_example(&pg).await?;
        pg.psql("postgres", "CREATE DATABASE staging").await?;
        pg.psql("postgres", "CREATE DATABASE audit").await?;
        let mut pdp_config = fixture.pdp_config();
        adjust_pdp(&mut pdp_config, &pg);
        let pdp = crate::stack::RunningPdp::start(pdp_config).await?;
        let mut config = agent_config(&fixture, &pdp.url(), &pg)?;
        let mut staging = config
            .targets
            .get("prod")
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no prod target"))?;
        staging.database = Some("staging".to_owned());
        config.targets.insert("staging".to_owned(), staging);
        adjust(&mut config);
        let agent = RunningAgent::start(config, fixture.certs.ca.cert.clone()).await?;
        Ok(Self {
            fixture,
            pg,
            pdp,
            agent,
        })
    }

    /// A token of the CI identity of the example policies.
    pub fn ci_token(&self) -> anyhow::Result<String> {
        self.fixture.token("ci-job-42", &["ci-generated-code"])
    }

    /// A token of a database administrator.
    pub fn dba_token(&self) -> anyhow::Result<String> {
        self.fixture.token("alice", &["dba"])
    }

    /// Adds a policy (`close-reporting`) that forbids everything on schema
    /// `reporting`, for tests of policy edits reaching running sessions.
    pub fn close_reporting(&self) -> std::io::Result<()> {
        std::fs::write(
            self.fixture.policy_dir.join("close-reporting.cedar"),
            "@id(\"close-reporting\")\n@reason(\"reporting is closed for maintenance\")\n\
             forbid(principal, action, resource in Palisade::Schema::\"prod/reporting\");\n",
        )
    }

    /// A tokio-postgres client through the agent.
    pub async fn connect(&self, token: &str) -> anyhow::Result<tokio_postgres::Client> {
        crate::clients::connect(&self.agent.conninfo(token), &self.agent.ca).await
    }

    /// A direct superuser connection to the database (to check what really
    /// happened there).
    pub async fn direct(&self) -> anyhow::Result<tokio_postgres::Client> {
        self.pg.connect("prod").await
    }
}

/// How [`AgentProcess::start_configured`] runs the agent binary, beyond
/// [`AgentProcess::start`]'s configuration.
#[derive(Debug, Clone, Default)]
pub struct AgentProcessOptions {
    /// Added to the `[targets.prod]` table.
    pub target_toml: String,
    /// `pdp.decision_timeout` (humantime); `2s` when empty.
    pub decision_timeout: String,
    /// Added to the `[audit.spool]` table (`max_bytes = ...`).
    pub spool_toml: String,
    /// Whole tables added at the end (`[limits]` ...).
    pub extra_toml: String,
    /// `--drain-seconds`; the binary's default when `None`.
    pub drain_seconds: Option<u64>,
    /// Runs the binary with SIGXFSZ ignored, so that a file size limit
    /// (`prlimit --fsize`) makes writes fail with EFBIG instead of killing
    /// the process, as a full disk makes them fail with ENOSPC.
    pub ignore_sigxfsz: bool,
    /// `RUST_LOG`; `warn` when empty.
    pub log: String,
}

/// An agent running as its own process (`palisade-agent`), for tests that
/// kill it.
pub struct AgentProcess {
    /// Where clients connect.
    pub addr: std::net::SocketAddr,
    config_path: PathBuf,
    options: AgentProcessOptions,
    child: tokio::process::Child,
}

impl AgentProcess {
    /// Writes a configuration equivalent to [`agent_config`] (listening on
    /// `addr`, spooling to `spool`) and starts the binary.
    pub async fn start(
        fixture: &Fixture,
        pdp_url: &str,
        pg: &TestPostgres,
        addr: std::net::SocketAddr,
        spool: &std::path::Path,
    ) -> anyhow::Result<Self> {
        Self::start_with(fixture, pdp_url, pg, addr, spool, "").await
    }

    /// Like [`Self::start`], with `target_toml` added to the `prod` target's
    /// table (e.g. `grantable_roles` and an `[targets.prod.admin]` table).
    pub async fn start_with(
        fixture: &Fixture,
        pdp_url: &str,
        pg: &TestPostgres,
        addr: std::net::SocketAddr,
        spool: &std::path::Path,
        target_toml: &str,
    ) -> anyhow::Result<Self> {
        let options = AgentProcessOptions {
            target_toml: target_toml.to_owned(),
            ..AgentProcessOptions::default()
        };
        Self::start_configured(fixture, pdp_url, pg, addr, spool, options).await
    }

    /// Like [`Self::start`], configured and launched as `options` say.
    pub async fn start_configured(
        fixture: &Fixture,
        pdp_url: &str,
        pg: &TestPostgres,
        addr: std::net::SocketAddr,
        spool: &std::path::Path,
        options: AgentProcessOptions,
    ) -> anyhow::Result<Self> {
        let agent = fixture
            .certs
            .agents
            .first()
            .ok_or_else(|| anyhow::anyhow!("no agent certificate"))?;
        let password_file = fixture.dir.path().join("prod.password");
        std::fs::write(&password_file, pg.superuser_password())?;
        let config_path = fixture.dir.path().join("agent.toml");
        let decision_timeout = if options.decision_timeout.is_empty() {
            "2s"
        } else {
            &options.decision_timeout
        };
        let toml = format!(
            r#"agent_id = "{name}"

[listen]
addr = "{addr}"
tls_cert = "{tls_cert}"
tls_key = "{tls_key}"

[pdp]
endpoints = ["{pdp_url}"]
ca = "{ca}"
cert = "{cert}"
key = "{key}"
server_name = "localhost"
decision_timeout = "{decision_timeout}"
policy_poll_interval = "200ms"

[targets.prod]
host = "{pg_host}"
port = {pg_port}
user = "{pg_user}"
password_file = "{password_file}"
{target_toml}

[audit.spool]
dir = "{spool}"
{spool_toml}

{extra_toml}
"#,
            name = agent.name,
            tls_cert = agent.listener.cert.display(),
            tls_key = agent.listener.key.display(),
            ca = fixture.certs.ca.cert.display(),
            cert = agent.pdp_client.cert.display(),
            key = agent.pdp_client.key.display(),
            pg_host = pg.host(),
            pg_port = pg.port(),
            pg_user = pg.superuser(),
            password_file = password_file.display(),
            spool = spool.display(),
            target_toml = options.target_toml,
            spool_toml = options.spool_toml,
            extra_toml = options.extra_toml,
        );
        std::fs::write(&config_path, toml)?;
        Self::spawn(config_path, addr, options).await
    }

    async fn spawn(
        config_path: PathBuf,
        addr: std::net::SocketAddr,
        options: AgentProcessOptions,
    ) -> anyhow::Result<Self> {
        let binary = crate::stack::bin_dir()?.join("palisade-agent");
        let mut command = if options.ignore_sigxfsz {
            // An ignored signal stays ignored across exec.
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c")
                .arg("trap '' XFSZ; exec \"$0\" \"$@\"")
                .arg(&binary);
            c
        } else {
            tokio::process::Command::new(&binary)
        };
        command.arg("--config").arg(&config_path);
        if let Some(drain) = options.drain_seconds {
            command.arg("--drain-seconds").arg(drain.to_string());
        }
        let log = if options.log.is_empty() {
            "warn"
        } else {
            &options.log
        };
        let child = command
            .env("RUST_LOG", log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot start {}: {e} (run `cargo build --bins` first)",
                    binary.display()
                )
            })?;
        crate::ports::wait_for_port(addr, Duration::from_secs(30)).await?;
        Ok(Self {
            addr,
            config_path,
            options,
            child,
        })
    }

    /// A tokio-postgres connection string for `token`.
    pub fn conninfo(&self, token: &str) -> String {
        format!(
            "host=localhost port={} dbname=prod user=ci password={token} sslmode=require",
            self.addr.port()
        )
    }

    /// The process id (to read `/proc/<pid>/status` or send signals).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends `signal` (a name `kill` knows: `TERM`, `INT`, ...).
    pub async fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow::anyhow!("the agent has exited"))?;
        let status = tokio::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .await?;
        anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
        Ok(())
    }

    /// Waits for the process to exit, for at most `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .map_err(|_| anyhow::anyhow!("the agent did not exit within {timeout:?}"))?
            .map_err(Into::into)
    }

    /// SIGKILL: no drain, no flush.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// Starts it again with the same configuration (and spool).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill().await;
        *self = Self::spawn(self.config_path.clone(), self.addr, self.options.clone()).await?;
        Ok(())
    }
}
