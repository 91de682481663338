//! The agent's configuration file, typed and validated at load.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// `palisade-agent --config agent.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The PostgreSQL-facing listener.
    pub listen: ListenConfig,
    /// The policy decision point.
    pub pdp: PdpConfig,
    /// Databases clients may reach, by the name clients put in `dbname`.
    pub targets: BTreeMap<String, TargetConfig>,
    /// Protocol limits and timeouts.
    #[serde(default)]
    pub limits: Limits,
    /// Address of the Prometheus metrics endpoint; none when absent.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// The audit trail.
    pub audit: AuditSettings,
    /// This agent's name in audit events and logs. Default: the host name.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Inline masking of result columns.
    #[serde(default)]
    pub masking: MaskingSettings,
    /// Threads that serve sessions, each session wholly on one (see
    /// [`crate::threads`]). Default: one per CPU.
    #[serde(default)]
    pub worker_threads: Option<usize>,
}

/// How the agent masks result columns that policy keeps from a principal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingSettings {
    /// Key of the `hash` method, read from this file (at least 32 bytes).
    /// Agents sharing it produce the same hashes, so masked values stay
    /// joinable across agents. Default: a random key per agent start.
    #[serde(default)]
    pub hash_key_file: Option<PathBuf>,
    /// Extra content detectors: name and regular expression. Values of
    /// computed columns whose origin cannot be traced are masked where one
    /// of these (or a built-in detector) matches.
    #[serde(default)]
    pub patterns: Vec<PatternConfig>,
    /// Where masked columns are in a target's catalog is reloaded after
    /// this (and whenever DDL passes through). Default 60s.
    #[serde(default = "default_catalog_max_age", with = "humantime_serde")]
    pub catalog_max_age: Duration,
}

impl Default for MaskingSettings {
    fn default() -> Self {
        Self {
            hash_key_file: None,
            patterns: Vec::new(),
            catalog_max_age: default_catalog_max_age(),
        }
    }
}

fn default_catalog_max_age() -> Duration {
    Duration::from_secs(60)
}

/// A configured content detector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    /// Its name, shown in the masked value (`[masked:<name>]`).
    pub name: String,
    /// The regular expression.
    pub regex: String,
}

/// What the agent records, and where it spools it before the PDP has it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// The local append-only spool (directory, cap, behaviour when full).
    pub spool: crate::audit::SpoolConfig,
    /// Keep statement texts normalized (literals replaced by `$n`) instead of
    /// verbatim. Passwords in role statements are always redacted.
    #[serde(default)]
    pub redact_literals: bool,
    /// Run without an audit trail. Only for measuring what auditing costs:
    /// the agent logs an error at start when this is set.
    #[serde(default)]
    pub disabled: bool,
}

/// The client-facing listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// Address to listen on. Default `127.0.0.1:6432`.
    #[serde(default = "default_listen")]
    pub addr: SocketAddr,
    /// The agent's own certificate chain (PEM) for client TLS.
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Accept tokens over plaintext connections. For local development only:
    /// a token sent in the clear can be replayed by anyone on the path.
    #[serde(default)]
    pub insecure_allow_plaintext: bool,
}

/// How the agent reaches the PDP (mutual TLS).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdpConfig {
    /// One or more PDP endpoints, `https://host:port`; tried in order.
    pub endpoints: Vec<String>,
    /// The CA that signed the PDP's certificate.
    pub ca: PathBuf,
    /// The agent's client certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The name the PDP certificate must carry. Default: the endpoint's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Bound on each decision round trip; past it the statement is refused.
    /// Default 3s.
    #[serde(default = "default_decision_timeout", with = "humantime_serde")]
    pub decision_timeout: Duration,
    /// How often the agent asks which policy version is active, so cached
    /// decisions are dropped promptly after a policy edit. Default 2s.
    #[serde(default = "default_policy_poll", with = "humantime_serde")]
    pub policy_poll_interval: Duration,
}

/// Whether the upstream connection uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTls {
    /// Plaintext (loopback or a trusted segment only).
    #[default]
    Disable,
    /// TLS, certificate verified against `ca` (or the web roots).
    Require,
}

/// One database behind the agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Upstream host.
    pub host: String,
    /// Upstream port. Default 5432.
    #[serde(default = "default_pg_port")]
    pub port: u16,
    /// Database name upstream. Default: the target's name.
    #[serde(default)]
    pub database: Option<String>,
    /// The static credential the agent connects with (until just-in-time
    /// credentials are configured): user name.
    pub user: String,
    /// Its password, read from this file (never from the config itself).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Or from this environment variable.
    #[serde(default)]
    pub password_env: Option<String>,
    /// TLS towards the database.
    #[serde(default)]
    pub tls: UpstreamTls,
    /// CA for the database's certificate (with `tls = "require"`).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Server name to verify. Default: `host`.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// Database roles the PDP may grant sessions on this target.
    #[serde(default)]
    pub grantable_roles: Vec<String>,
    /// The agent's admin connection for just-in-time credentials. With it,
    /// each session connects as a login role made for it (member of the
    /// granted roles only, valid until the session's deadline) instead of
    /// `user`.
    #[serde(default)]
    pub admin: Option<AdminConnection>,
}

/// The agent's own administrative credential on a target: it creates and
/// removes session roles, and never leaves the agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConnection {
    /// The admin role (needs CREATEROLE and membership of the grantable roles
    /// with ADMIN option, or superuser).
    pub user: String,
    /// Its password, from this file.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Or from this environment variable.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Longest life of a session role, whatever the deadline. Default 8h.
    #[serde(default = "default_role_lifetime", with = "humantime_serde")]
    pub max_lifetime: Duration,
}

fn default_role_lifetime() -> Duration {
    Duration::from_secs(8 * 3600)
}

impl AdminConnection {
    /// The admin password (read at start).
    pub fn password(&self) -> std::io::Result<String> {
        read_secret(self.password_file.as_deref(), self.password_env.as_deref())
    }
}

fn read_secret(file: Option<&Path>, env: Option<&str>) -> std::io::Result<String> {
    if let Some(file) = file {
        return Ok(std::fs::read_to_string(file)?
            .trim_end_matches(['\n', '\r'])
            .to_owned());
    }
    if let Some(var) = env {
        return std::env::var(var)
            .map_err(|_| std::io::Error::other(format!("environment variable {var} is not set")));
    }
    Err(std::io::Error::other("no password source"))
}

/// Protocol limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest client message accepted. Default 64 MiB.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Time allowed from accept to a complete startup and password.
    /// Default 15s.
    #[serde(default = "default_startup_timeout", with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// An idle client (no message) is disconnected after this. Default 1h.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Time allowed to connect and authenticate upstream. Default 10s.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub upstream_connect_timeout: Duration,
    /// Most client connections at once. Default 10 000.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: default_max_message(),
            startup_timeout: default_startup_timeout(),
            idle_timeout: default_idle_timeout(),
            upstream_connect_timeout: default_connect_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 6432))
}
fn default_decision_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_policy_poll() -> Duration {
    Duration::from_secs(2)
}
fn default_pg_port() -> u16 {
    5432
}
fn default_max_message() -> usize {
    64 * 1024 * 1024
}
fn default_startup_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(3600)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_connections() -> usize {
    10_000
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem, one per line.
        message: String,
    },
}

impl AgentConfig {
    /// Reads and checks a configuration file; relative paths are taken
    /// relative to the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: Self = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: problems.join("\n"),
            })
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for p in [&mut self.listen.tls_cert, &mut self.listen.tls_key]
            .into_iter()
            .flatten()
        {
            fix(p);
        }
        fix(&mut self.audit.spool.dir);
        fix(&mut self.pdp.ca);
        fix(&mut self.pdp.cert);
        fix(&mut self.pdp.key);
        for t in self.targets.values_mut() {
            for p in [&mut t.password_file, &mut t.ca].into_iter().flatten() {
                fix(p);
            }
            if let Some(p) = t.admin.as_mut().and_then(|a| a.password_file.as_mut()) {
                fix(p);
            }
        }
        if let Some(p) = self.masking.hash_key_file.as_mut() {
            fix(p);
        }
    }

    /// Every problem at once.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        match (&self.listen.tls_cert, &self.listen.tls_key) {
            (Some(_), Some(_)) => {}
            (None, None) if self.listen.insecure_allow_plaintext => {}
            (None, None) => out.push(
                "listen: tls_cert and tls_key are required unless insecure_allow_plaintext = true"
                    .to_owned(),
            ),
            _ => out.push("listen: tls_cert and tls_key go together".to_owned()),
        }
        if self.pdp.endpoints.is_empty() {
            out.push("pdp.endpoints: at least one endpoint is required".to_owned());
        }
        if self.targets.is_empty() {
            out.push("targets: at least one target is required".to_owned());
        }
        for (name, t) in &self.targets {
            if let Some(a) = &t.admin {
                if a.password_file.is_some() == a.password_env.is_some() {
                    out.push(format!(
                        "targets.{name}.admin: exactly one of password_file and password_env is required"
                    ));
                }
                if t.grantable_roles.is_empty() {
                    out.push(format!(
                        "targets.{name}: just-in-time credentials need grantable_roles"
                    ));
                }
            }
            if t.password_file.is_some() == t.password_env.is_some() {
                out.push(format!(
                    "targets.{name}: exactly one of password_file and password_env is required"
                ));
            }
        }
        if self.worker_threads == Some(0) {
            out.push("worker_threads: at least 1".to_owned());
        }
        if self.limits.max_message_bytes < 1024 {
            out.push("limits.max_message_bytes: at least 1024".to_owned());
        }
        out
    }
}

impl TargetConfig {
    /// The upstream password, read when a session connects (so a rotated file
    /// is picked up). Held only by the agent.
    pub fn password(&self) -> std::io::Result<String> {
        read_secret(self.password_file.as_deref(), self.password_env.as_deref())
    }

    /// The database name upstream.
    pub fn database<'a>(&'a self, target: &'a str) -> &'a str {
        self.database.as_deref().unwrap_or(target)
    }
}
