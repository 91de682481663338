//! `bench_audit`: what the audit trail costs.
//!
//! 1. Events per second the PDP ingests, per store: the embedded store (a
//!    temp dir) and the PostgreSQL store (a throwaway cluster), each fed by
//!    4 concurrent writers appending batches of 256 events, as agents'
//!    streams do; and end to end over the gRPC stream with mutual TLS.
//! 2. The agent's added latency per statement with auditing on versus off:
//!    two agents in front of the same database and PDP, pgbench select-only
//!    (prepared, 1 client) against each, interleaved.
//!
//! `cargo run --release -p integration --bin bench_audit [-- --seconds S --rounds N]`

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use integration::agent::{RunningAgent, agent_config, seed_example};
use integration::clients::run_pg_program;
use integration::postgres::{PostgresOptions, TestPostgres};
use integration::stack::{Fixture, RunningPdp};
use palisade_pdp::audit::{AuditStore, EmbeddedStore, EncodedEvent, PostgresStore};
use palisade_proto::v1 as pb;

const WRITERS: usize = 4;
const BATCH: usize = 256;

fn event(session: &str, sequence: u64) -> pb::AuditEvent {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    pb::AuditEvent {
        session_id: session.to_owned(),
        sequence,
        time: Some(prost_types::Timestamp {
            seconds: i64::try_from(now.as_secs()).unwrap_or(0),
            nanos: 0,
        }),
        agent_id: "bench".to_owned(),
        event: Some(pb::audit_event::Event::Statement(pb::StatementExecuted {
            text: "SELECT abalance FROM pgbench_accounts WHERE aid = $1".to_owned(),
            effect: pb::Effect::Allow.into(),
            determining_policies: vec!["dba-all-statements".to_owned()],
            rows: 1,
            command_tag: "SELECT 1".to_owned(),
            protocol: "extended".to_owned(),
            ..Default::default()
        })),
    }
}

/// Appends for `seconds` from `WRITERS` concurrent sessions; events/s.
async fn ingest(store: Arc<dyn AuditStore>, seconds: u64) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let session = format!("bench-{w}-{}", uuid_ish());
            let mut next = 1u64;
            while Instant::now() < deadline {
                let batch: Vec<_> = (next..next + BATCH as u64)
                    .map(|s| EncodedEvent::encode(event(&session, s)))
                    .collect();
                store.append(batch).await?;
                next += BATCH as u64;
            }
            anyhow::Ok(next - 1)
        }));
    }
    let mut total = 0u64;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

fn uuid_ish() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Mean latency (ms) of pgbench select-only, prepared, 1 client.
async fn pgbench_latency(pg: &TestPostgres, conninfo: &str, seconds: u64) -> anyhow::Result<f64> {
    let secs = seconds.to_string();
    let out = run_pg_program(
        pg.bin_dir(),
        "pgbench",
        &[
            "-n", "-S", "-M", "prepared", "-c", "1", "-T", &secs, conninfo,
        ],
        "",
    )
    .await?;
    anyhow::ensure!(out.success, "pgbench failed: {}", out.stderr);
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("latency average = "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no latency in pgbench's output")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let seconds = flag("--seconds", 10);
    let rounds = flag("--rounds", 2);
    println!(
        "machine: {} cores",
        std::thread::available_parallelism().map_or(0, usize::from)
    );

    // 1. Ingestion per store.
    let pg = TestPostgres::start_with(PostgresOptions {
        log_statements: false,
        ..PostgresOptions::default()
    })
    .await?;
    pg.psql("postgres", "CREATE DATABASE audit").await?;
    let dir = tempfile::tempdir()?;
    let embedded: Arc<dyn AuditStore> = Arc::new(EmbeddedStore::open(dir.path())?);
    let postgres: Arc<dyn AuditStore> =
        Arc::new(PostgresStore::connect(&pg.connection_string("audit")).await?);
    println!("\ningestion ({WRITERS} writers, batches of {BATCH}, {seconds} s each):");
    for (name, store) in [("embedded", embedded), ("postgresql", postgres)] {
        let rate = ingest(store, seconds).await?;
        println!("  {name:<11} {rate:>10.0} events/s");
        println!("{{\"bench\":\"audit_ingest\",\"store\":\"{name}\",\"events_per_s\":{rate:.0}}}");
    }

    // 2. Agent latency with audit on and off.
    seed_example(&pg).await?;
    let init = run_pg_program(
        pg.bin_dir(),
        "pgbench",
        &["-i", "-s", "1", &pg_conninfo(&pg, "prod")],
        "",
    )
    .await?;
    anyhow::ensure!(init.success, "pgbench -i failed: {}", init.stderr);
    let fixture = Fixture::new()?;
    let pdp = RunningPdp::start(fixture.pdp_config()).await?;
    let on_config = agent_config(&fixture, &pdp.url(), &pg)?;
    let mut off_config = on_config.clone();
    off_config.audit.disabled = true;
    let on = RunningAgent::start(on_config, fixture.certs.ca.cert.clone()).await?;
    let off = RunningAgent::start(off_config, fixture.certs.ca.cert.clone()).await?;
    let token = fixture.token("bench", &["dba"])?;
    let mut on_ms = Vec::new();
    let mut off_ms = Vec::new();
    for _ in 0..rounds {
        off_ms.push(pgbench_latency(&pg, &off.libpq_conninfo(&token), seconds).await?);
        on_ms.push(pgbench_latency(&pg, &on.libpq_conninfo(&token), seconds).await?);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (on_mean, off_mean) = (mean(&on_ms), mean(&off_ms));
    println!("\nagent latency, pgbench -S -M prepared -c 1, {rounds} rounds of {seconds} s:");
    println!("  audit off  {off_mean:.3} ms/statement");
    println!("  audit on   {on_mean:.3} ms/statement");
    println!(
        "  added by auditing: {:.1} µs/statement",
        (on_mean - off_mean) * 1000.0
    );
    println!(
        "{{\"bench\":\"audit_latency\",\"audit_off_ms\":{off_mean:.4},\"audit_on_ms\":{on_mean:.4},\"added_us\":{:.1}}}",
        (on_mean - off_mean) * 1000.0
    );
    on.stop().await;
    off.stop().await;
    pdp.stop().await;
    Ok(())
}

fn pg_conninfo(pg: &TestPostgres, db: &str) -> String {
    format!(
        "host={} port={} dbname={db} user={} password={}",
        pg.host(),
        pg.port(),
        pg.superuser(),
        pg.superuser_password()
    )
}
