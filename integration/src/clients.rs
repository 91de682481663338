//! Real clients pointed at an agent: tokio-postgres over TLS, and the psql,
//! pgbench and python (psycopg) programs.

use std::path::Path;
use std::process::Stdio;

use anyhow::Context;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A tokio-postgres TLS connector that trusts `ca`.
pub fn tls_connector(ca: &Path) -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
    crate::stack::install_crypto();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Connects with tokio-postgres over TLS and spawns the connection task.
/// The error keeps the server's error (downcast to `tokio_postgres::Error`).
pub async fn connect(conninfo: &str, ca: &Path) -> anyhow::Result<tokio_postgres::Client> {
    let tls = tls_connector(ca)?;
    let (client, connection) = tokio_postgres::connect(conninfo, tls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// What a client program printed.
#[derive(Debug)]
pub struct Output {
    /// Exit status success.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs a program from PostgreSQL's bin directory (or PATH) with `conninfo`
/// as its connection string and `stdin` as input.
pub async fn run_pg_program(
    bin_dir: &Path,
    program: &str,
    args: &[&str],
    stdin: &str,
) -> anyhow::Result<Output> {
    let path = bin_dir.join(program);
    let program_path = if path.exists() { path } else { program.into() };
    let mut child = tokio::process::Command::new(&program_path)
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", program_path.display()))?;
    if let Some(mut input) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        input.write_all(stdin.as_bytes()).await?;
    }
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(300),
        child.wait_with_output(),
    )
    .await
    .context("the client program did not finish within 300 s")??;
    Ok(Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
