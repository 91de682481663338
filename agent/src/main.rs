//! `palisade-agent`: the PostgreSQL-facing gateway.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use palisade_agent::config::AgentConfig;
use palisade_agent::context::AgentContext;
use palisade_agent::threads::SessionThreads;
use palisade_agent::{listener, metrics};
use tracing_subscriber::EnvFilter;

/// The Palisade agent (PostgreSQL wire protocol, decisions from the PDP).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Configuration file.
    #[arg(
        long,
        short,
        env = "PALISADE_AGENT_CONFIG",
        default_value = "agent.toml"
    )]
    config: PathBuf,
    /// Log as JSON lines.
    #[arg(long)]
    json_logs: bool,
    /// How long open sessions may run on after SIGTERM.
    #[arg(long, default_value = "30")]
    drain_seconds: u64,
}

// Sessions allocate and free small buffers per message on every worker
// thread; mimalloc's per-thread free lists cost less than glibc's arenas
// there (measured in the benchmark, see README "Benchmarks").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
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
    let config = AgentConfig::load(&args.config)?;
    // Sessions run on threads of their own (`worker_threads`, see
    // `palisade_agent::threads`); this runtime, on the main thread, serves
    // what they share: accepting, the PDP client, the audit feed and stream.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config, Duration::from_secs(args.drain_seconds)))
}

async fn serve(config: AgentConfig, drain: Duration) -> anyhow::Result<()> {
    let addr = config.listen.addr;
    let metrics_addr = config.metrics_listen;
    let ctx = AgentContext::new(config).await?;
    if let Some(addr) = metrics_addr {
        let listener = metrics::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        tokio::spawn(metrics::serve(listener, ctx.metrics.clone()));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let threads =
        SessionThreads::for_config(&ctx.config).context("cannot start the session threads")?;
    listener::serve(listener, ctx, threads, shutdown_signal(), drain).await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
