//! Reaching the PDP from the command line: mutual TLS with an operator
//! certificate (from `palisade certs init --client NAME`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Where the PDP is and how to prove who we are.
#[derive(clap::Args, Debug, Clone)]
pub struct PdpArgs {
    /// PDP endpoint.
    #[arg(long, env = "PALISADE_PDP", default_value = "https://localhost:7443")]
    pub pdp: String,
    /// CA of the PDP's certificate.
    #[arg(long, env = "PALISADE_CA", default_value = "certs/ca.pem")]
    pub ca: PathBuf,
    /// Client certificate.
    #[arg(long, env = "PALISADE_CERT", default_value = "certs/client-admin.pem")]
    pub cert: PathBuf,
    /// Client key.
    #[arg(long, env = "PALISADE_KEY", default_value = "certs/client-admin.key")]
    pub key: PathBuf,
}

impl PdpArgs {
    /// A connected channel.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let read =
            |p: &PathBuf| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
        let host = self
            .pdp
            .split("://")
            .nth(1)
            .and_then(|r| r.split([':', '/']).next())
            .unwrap_or("localhost")
            .to_owned();
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&self.ca)?))
            .identity(Identity::from_pem(read(&self.cert)?, read(&self.key)?))
            .domain_name(host);
        Endpoint::from_shared(self.pdp.clone())?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("cannot reach the PDP at {}", self.pdp))
    }
}
