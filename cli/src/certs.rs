//! `palisade certs init`: a development certificate authority and every
//! certificate a local deployment needs for mutual TLS.
//!
//! The PDP accepts agents and operators over gRPC with mutual TLS only, and
//! clients reach an agent's PostgreSQL listener over TLS. This module makes one
//! CA and signs, all with ECDSA P-256 keys:
//!
//! | file | use | extended key usage |
//! | --- | --- | --- |
//! | `ca.pem` / `ca.key` | trust root for everybody; the key only signs | — (CA, pathlen 0) |
//! | `pdp.pem` / `pdp.key` | the PDP's gRPC server | serverAuth |
//! | `agent-<name>.pem` / `.key` | the agent's identity towards the PDP | clientAuth |
//! | `agent-<name>-server.pem` / `.key` | the agent's PostgreSQL listener | serverAuth |
//! | `client-<name>.pem` / `.key` | operators and the CLI towards the PDP | clientAuth |
//!
//! Agents and clients carry their name as the subject CN and as a URI SAN
//! ([`AGENT_URI_PREFIX`], [`CLIENT_URI_PREFIX`]), so the PDP can tell an agent
//! from an operator certificate that happens to share a name.
//!
//! This is a development CA: production brings its own.

pub(crate) mod files;
mod issue;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};

use self::files::{PUBLIC_MODE, SECRET_MODE};
pub use self::issue::{AGENT_URI_PREFIX, CLIENT_URI_PREFIX};

/// Command-line arguments of `palisade certs init`, so the CLI can make a
/// ready-to-use development PKI in one step.
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// Directory to write the files to (created with mode 0700 if missing).
    #[arg(long, value_name = "PATH", default_value = "./certs")]
    pub dir: PathBuf,
    /// Host name or IP address the PDP is reached at (repeatable).
    #[arg(
        long = "pdp-host",
        value_name = "NAME",
        default_values = ["localhost", "127.0.0.1", "::1"]
    )]
    pub pdp_hosts: Vec<String>,
    /// Name of an agent to issue certificates for (repeatable).
    #[arg(long = "agent", value_name = "NAME", default_values = ["agent-1"])]
    pub agents: Vec<String>,
    /// Name of an operator or CLI client certificate to issue (repeatable).
    #[arg(long = "client", value_name = "NAME", default_values = ["admin"])]
    pub clients: Vec<String>,
    /// Host name or IP address clients use to reach an agent's PostgreSQL
    /// listener (repeatable; applies to every agent).
    #[arg(
        long = "agent-listener-host",
        value_name = "NAME",
        default_values = ["localhost", "127.0.0.1"]
    )]
    pub agent_listener_hosts: Vec<String>,
    /// Overwrite files that already exist.
    #[arg(long)]
    pub force: bool,
    /// Validity of every certificate, in days.
    #[arg(long, value_name = "N", default_value_t = 365)]
    pub days: u32,
}

impl InitArgs {
    /// The options these arguments stand for.
    fn options(&self) -> CertOptions {
        CertOptions {
            pdp_hosts: self.pdp_hosts.clone(),
            agents: self.agents.clone(),
            clients: self.clients.clone(),
            agent_listener_hosts: self.agent_listener_hosts.clone(),
            days: self.days,
            force: self.force,
        }
    }
}

/// What to issue, independent of the command line, so tests and `palisade
/// demo` can build a PKI in a temporary directory with [`init_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertOptions {
    /// SANs of the PDP certificate; IP literals become IP SANs, the rest DNS
    /// SANs. Default: `localhost`, `127.0.0.1`, `::1`.
    pub pdp_hosts: Vec<String>,
    /// Agents to issue a PDP client certificate and a listener certificate
    /// for. Default: `agent-1`.
    pub agents: Vec<String>,
    /// Operator / CLI client certificates to issue. Default: `admin`.
    pub clients: Vec<String>,
    /// SANs of every agent's PostgreSQL listener certificate. Default:
    /// `localhost`, `127.0.0.1`.
    pub agent_listener_hosts: Vec<String>,
    /// Validity of every certificate, in days. Default: 365.
    pub days: u32,
    /// Overwrite existing files instead of refusing. Default: false.
    pub force: bool,
}

impl Default for CertOptions {
    fn default() -> Self {
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
        Self {
            pdp_hosts: strings(&["localhost", "127.0.0.1", "::1"]),
            agents: strings(&["agent-1"]),
            clients: strings(&["admin"]),
            agent_listener_hosts: strings(&["localhost", "127.0.0.1"]),
            days: 365,
            force: false,
        }
    }
}

/// A certificate file and its private key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKeyPaths {
    /// PEM certificate, mode 0644.
    pub cert: PathBuf,
    /// PEM PKCS#8 private key, mode 0600.
    pub key: PathBuf,
}

impl CertKeyPaths {
    fn new(dir: &Path, stem: &str) -> Self {
        Self {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        }
    }
}

/// The two certificates of one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCertPaths {
    /// The agent's name (its CN, and the last segment of its URI SAN).
    pub name: String,
    /// `agent-<name>.pem/.key`: clientAuth, presented to the PDP.
    pub pdp_client: CertKeyPaths,
    /// `agent-<name>-server.pem/.key`: serverAuth, for the PostgreSQL listener.
    pub listener: CertKeyPaths,
}

/// The certificate of one operator or CLI client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertPaths {
    /// The client's name (its CN, and the last segment of its URI SAN).
    pub name: String,
    /// `client-<name>.pem/.key`: clientAuth, presented to the PDP.
    pub paths: CertKeyPaths,
}

/// Where [`init_dir`] wrote everything, so callers (the demo, tests, config
/// generators) need not rebuild the file-naming scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    /// The output directory.
    pub dir: PathBuf,
    /// `ca.pem` / `ca.key`.
    pub ca: CertKeyPaths,
    /// `pdp.pem` / `pdp.key`.
    pub pdp: CertKeyPaths,
    /// One entry per agent, in the order requested.
    pub agents: Vec<AgentCertPaths>,
    /// One entry per client, in the order requested.
    pub clients: Vec<ClientCertPaths>,
}

impl CertPaths {
    fn plan(dir: &Path, opts: &CertOptions) -> Self {
        Self {
            dir: dir.to_path_buf(),
            ca: CertKeyPaths::new(dir, "ca"),
            pdp: CertKeyPaths::new(dir, "pdp"),
            agents: opts
                .agents
                .iter()
                .map(|name| AgentCertPaths {
                    name: name.clone(),
                    pdp_client: CertKeyPaths::new(dir, &format!("agent-{name}")),
                    listener: CertKeyPaths::new(dir, &format!("agent-{name}-server")),
                })
                .collect(),
            clients: opts
                .clients
                .iter()
                .map(|name| ClientCertPaths {
                    name: name.clone(),
                    paths: CertKeyPaths::new(dir, &format!("client-{name}")),
                })
                .collect(),
        }
    }

    /// The paths of the agent called `name`, if it was issued: saves the demo
    /// and tests from re-deriving file names.
    pub fn agent(&self, name: &str) -> Option<&AgentCertPaths> {
        self.agents.iter().find(|a| a.name == name)
    }

    /// The paths of the client called `name`, if it was issued.
    pub fn client(&self, name: &str) -> Option<&ClientCertPaths> {
        self.clients.iter().find(|c| c.name == name)
    }

    /// Every pair with a human description, in writing order.
    fn pairs(&self) -> Vec<(&CertKeyPaths, String)> {
        let mut pairs = vec![
            (
                &self.ca,
                "development CA (trust root for PDP, agents and clients)".to_owned(),
            ),
            (&self.pdp, "PDP gRPC server (serverAuth)".to_owned()),
        ];
        for agent in &self.agents {
            pairs.push((
                &agent.pdp_client,
                format!(
                    "agent `{}` towards the PDP (clientAuth, {AGENT_URI_PREFIX}{})",
                    agent.name, agent.name
                ),
            ));
            pairs.push((
                &agent.listener,
                format!("agent `{}` PostgreSQL listener (serverAuth)", agent.name),
            ));
        }
        for client in &self.clients {
            pairs.push((
                &client.paths,
                format!(
                    "client `{}` towards the PDP (clientAuth, {CLIENT_URI_PREFIX}{})",
                    client.name, client.name
                ),
            ));
        }
        pairs
    }
}

/// Runs `palisade certs init`: writes the files and prints what was written.
pub fn init(args: &InitArgs) -> Result<CertPaths> {
    let opts = args.options();
    let paths = init_dir(&args.dir, &opts)?;
    print!("{}", summary(&paths, &opts));
    Ok(paths)
}

/// Issues a CA and every certificate `opts` asks for into `dir`, without
/// printing: the entry point for tests and the demo.
///
/// Nothing is written unless every input is valid and, without `force`, no
/// target file exists yet.
pub fn init_dir(dir: &Path, opts: &CertOptions) -> Result<CertPaths> {
    validate(opts)?;
    let paths = CertPaths::plan(dir, opts);
    if !opts.force {
        files::refuse_existing(
            paths
                .pairs()
                .iter()
                .flat_map(|(p, _)| [p.cert.as_path(), p.key.as_path()]),
        )?;
    }

    // Everything is generated in memory first, so a failure leaves no
    // half-initialised directory behind.
    let validity = issue::Validity::days_from_now(opts.days)?;
    let ca = issue::Ca::new(&validity)?;
    let sign = |profile: Result<issue::Profile>| ca.issue(&profile?, &validity);
    let mut material = vec![
        (&paths.ca, ca.material()),
        (&paths.pdp, sign(issue::Profile::pdp(&opts.pdp_hosts))?),
    ];
    for agent in &paths.agents {
        material.push((&agent.pdp_client, sign(issue::Profile::agent(&agent.name))?));
        material.push((
            &agent.listener,
            sign(issue::Profile::agent_listener(
                &agent.name,
                &opts.agent_listener_hosts,
            ))?,
        ));
    }
    for client in &paths.clients {
        material.push((&client.paths, sign(issue::Profile::client(&client.name))?));
    }

    files::create_private_dir(dir)?;
    for (pair, issued) in material {
        files::write_file(
            &pair.key,
            issued.key_pem.as_bytes(),
            SECRET_MODE,
            opts.force,
        )?;
        files::write_file(
            &pair.cert,
            issued.cert_pem.as_bytes(),
            PUBLIC_MODE,
            opts.force,
        )?;
    }
    Ok(paths)
}

/// Checks every input before anything is generated, reporting all problems.
fn validate(opts: &CertOptions) -> Result<()> {
    let mut problems = Vec::new();
    if !(1..=issue::MAX_DAYS).contains(&opts.days) {
        problems.push(format!("--days must be between 1 and {}", issue::MAX_DAYS));
    }
    if opts.pdp_hosts.is_empty() {
        problems.push("at least one --pdp-host is needed".to_owned());
    }
    if !opts.agents.is_empty() && opts.agent_listener_hosts.is_empty() {
        problems.push("at least one --agent-listener-host is needed".to_owned());
    }
    for host in opts.pdp_hosts.iter().chain(&opts.agent_listener_hosts) {
        if let Err(e) = issue::san(host) {
            problems.push(format!("{e:#}"));
        }
    }
    for (kind, names) in [("agent", &opts.agents), ("client", &opts.clients)] {
        for (i, name) in names.iter().enumerate() {
            if let Err(e) = issue::check_name(kind, name) {
                problems.push(format!("{e:#}"));
            }
            if names.iter().take(i).any(|earlier| earlier == name) {
                problems.push(format!("{kind} `{name}` is listed twice"));
            }
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("; "));
    Ok(())
}

/// The report printed by [`init`].
fn summary(paths: &CertPaths, opts: &CertOptions) -> String {
    let mut out = format!(
        "Wrote a DEVELOPMENT PKI to `{}` (valid {} days; production brings its own CA):\n",
        paths.dir.display(),
        opts.days
    );
    for (pair, what) in paths.pairs() {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "  {}  {what}", pair.cert.display());
        let _ = writeln!(out, "  {}  its private key (0600)", pair.key.display());
    }
    let _ = writeln!(
        out,
        "PDP SANs: {}; agent listener SANs: {}",
        opts.pdp_hosts.join(", "),
        opts.agent_listener_hosts.join(", ")
    );
    let _ = writeln!(
        out,
        "Keep `{}` private: anyone holding it can mint agent identities.",
        paths.ca.key.display()
    );
    out
}

#[cfg(test)]
mod tests;
