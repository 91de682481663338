//! `palisade-pdp`: the policy decision point.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use palisade_pdp::config::PdpConfig;
use palisade_pdp::server::Pdp;
use tracing_subscriber::EnvFilter;

/// The Palisade policy decision point (gRPC over mutual TLS).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Configuration file.
    #[arg(long, short, env = "PALISADE_PDP_CONFIG", default_value = "pdp.toml")]
    config: PathBuf,
    /// Log as JSON lines.
    #[arg(long)]
    json_logs: bool,
}

// Sessions allocate and free small buffers per message on every worker
// thread; mimalloc's per-thread free lists cost less than glibc's arenas
// there (measured in the benchmark, see README "Benchmarks").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if args.json_logs {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = PdpConfig::load(&args.config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let pdp = Pdp::new(config).await?;
    pdp.serve(listener, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
