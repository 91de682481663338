//! The PDP's configuration file, typed and validated at load.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::oidc::{IssuerConfig, JwksSource};

/// `palisade-pdp --config pdp.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdpConfig {
    /// Address of the gRPC listener. Default `127.0.0.1:7443`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory of the schema, policies and `targets.toml`. Default `policies`.
    #[serde(default = "default_policy_dir")]
    pub policy_dir: PathBuf,
    /// How often the policy directory is checked for edits. Default 1s.
    #[serde(default = "default_reload", with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Longest session, whatever the token says. Default 8h.
    #[serde(default = "default_max_session", with = "humantime_serde")]
    pub max_session: Duration,
    /// How long agents may reuse a statement decision. Default 60s.
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub decision_cache_ttl: Duration,
    /// Search path used for unqualified names in raw SQL sent to `Decide`.
    #[serde(default = "default_search_path")]
    pub search_path: Vec<String>,
    /// Mutual TLS: the PDP's certificate and the CA its clients must chain to.
    pub tls: TlsConfig,
    /// Trusted token issuers.
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    /// Where audit events are stored.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Statements held for a reviewer; stored where the audit store is.
    #[serde(default)]
    pub approvals: ApprovalsConfig,
}

/// `[approvals]`: how long a held statement waits, how reviewers hear of it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// How long a held statement waits for a reviewer, unless its policy says
    /// otherwise (`@approval_timeout("90s")`). Default 5m.
    #[serde(default = "default_approval_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How often a watcher re-reads an approval another replica may have
    /// resolved. Default 250ms.
    #[serde(default = "default_approval_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// This PDP's URL as reviewers reach it (shown in the approve/deny
    /// commands of webhook messages).
    #[serde(default)]
    pub public_url: Option<String>,
    /// Where new approvals are announced.
    #[serde(default)]
    pub webhooks: Vec<crate::approvals::webhook::WebhookConfig>,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        Self {
            timeout: default_approval_timeout(),
            poll_interval: default_approval_poll(),
            public_url: None,
            webhooks: Vec::new(),
        }
    }
}

fn default_approval_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_approval_poll() -> Duration {
    Duration::from_millis(250)
}

/// The audit store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "store", rename_all = "lowercase")]
pub enum AuditConfig {
    /// Append-only, hash-chained segment files in `dir` (default `audit`).
    Embedded {
        /// The directory.
        #[serde(default = "default_audit_dir")]
        dir: PathBuf,
    },
    /// A PostgreSQL database shared by several PDP replicas.
    Postgres {
        /// libpq-style connection string (the password may come from the
        /// `PGPASSWORD` environment variable instead).
        conninfo: String,
    },
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig::Embedded {
            dir: default_audit_dir(),
        }
    }
}

fn default_audit_dir() -> PathBuf {
    PathBuf::from("audit")
}

/// Mutual TLS files (PEM).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The PDP's certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA that client (agent, CLI) certificates must chain to.
    pub client_ca: PathBuf,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7443))
}
fn default_policy_dir() -> PathBuf {
    PathBuf::from("policies")
}
fn default_reload() -> Duration {
    Duration::from_secs(1)
}
fn default_max_session() -> Duration {
    Duration::from_secs(8 * 3600)
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_search_path() -> Vec<String> {
    vec!["public".to_owned()]
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

impl PdpConfig {
    /// Reads and checks a configuration file; relative paths in it are taken
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
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
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
        fix(&mut self.policy_dir);
        if let AuditConfig::Embedded { dir } = &mut self.audit {
            fix(dir);
        }
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        fix(&mut self.tls.client_ca);
        for issuer in &mut self.issuers {
            if let JwksSource::File(p) = &mut issuer.jwks {
                fix(p);
            }
            if let Some(ca) = &mut issuer.ca_file {
                fix(ca);
            }
        }
    }

    /// Every problem at once, so an operator fixes them in one go.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (what, p) in [
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
            ("tls.client_ca", &self.tls.client_ca),
        ] {
            if !p.is_file() {
                out.push(format!("{what}: no file at {}", p.display()));
            }
        }
        if !self.policy_dir.is_dir() {
            out.push(format!(
                "policy_dir: no directory at {}",
                self.policy_dir.display()
            ));
        }
        if self.issuers.is_empty() {
            out.push("issuers: at least one trusted token issuer is required".to_owned());
        }
        if self.reload_interval.is_zero() {
            out.push("reload_interval: must be more than zero".to_owned());
        }
        if self.approvals.timeout.is_zero() {
            out.push("approvals.timeout: must be more than zero".to_owned());
        }
        if self.approvals.poll_interval.is_zero() {
            out.push("approvals.poll_interval: must be more than zero".to_owned());
        }
        for hook in &self.approvals.webhooks {
            if !(hook.url.starts_with("https://") || hook.url.starts_with("http://")) {
                out.push(format!(
                    "approvals.webhooks: `{}` is not an http(s) URL",
                    hook.url
                ));
            }
        }
        out
    }
}
