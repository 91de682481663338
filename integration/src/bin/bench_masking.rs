//! `bench_masking`: what inline masking costs on a large result.
//!
//! Starts a throwaway PostgreSQL with the example database and 100,000
//! customers (three of their five columns classified), the PDP and the agent
//! in this process (the agent's client listener in plaintext, like the
//! direct connection), then streams `SELECT * FROM customers` in turn, for
//! `--rounds` rounds:
//! - directly from PostgreSQL;
//! - through the agent as a `dba` (nothing masked: the agent relays);
//! - through the agent as a CI job (email, ssn and phone masked in every row);
//!
//! in the simple protocol (text) and the extended protocol (binary). It
//! prints rows/s per target (median over rounds) and the ratios, as a table
//! and as JSON lines. Nothing is asserted.
//!
//! `cargo run --release -p integration --bin bench_masking [-- --rounds N]`

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::TryStreamExt;
use integration::agent::Stack;
use serde_json::json;

const ROWS: u64 = 100_000;
const SQL: &str = "SELECT * FROM customers";

#[derive(Clone, Copy)]
enum Protocol {
    Simple,
    Extended,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Self::Simple => "simple (text)",
            Self::Extended => "extended (binary)",
        }
    }
}

async fn connect(conninfo: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connect {conninfo}"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// Streams the result once; rows per second.
async fn stream(client: &tokio_postgres::Client, protocol: Protocol) -> Result<f64> {
    let started = Instant::now();
    let rows = match protocol {
        Protocol::Simple => client
            .simple_query(SQL)
            .await?
            .iter()
            .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
            .count(),
        Protocol::Extended => {
            let stream = client.query_raw(SQL, std::iter::empty::<i32>()).await?;
            futures::pin_mut!(stream);
            let mut n = 0usize;
            while stream.try_next().await?.is_some() {
                n += 1;
            }
            n
        }
    };
    anyhow::ensure!(rows as u64 == ROWS, "expected {ROWS} rows, got {rows}");
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut rounds = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .context("--rounds needs a number")?
                    .parse()
                    .context("--rounds needs a number")?;
            }
            other => anyhow::bail!("unknown argument `{other}`; usage: bench_masking [--rounds N]"),
        }
    }
    let stack = Stack::start_with(|c| {
        c.listen.tls_cert = None;
        c.listen.tls_key = None;
        c.listen.insecure_allow_plaintext = true;
        c.audit.disabled = false;
    })
    .await?;
    stack
        .direct()
        .await?
        .batch_execute(&format!(
            "INSERT INTO customers SELECT g, 'customer ' || g, 'user' || g || '@example.com', \
             lpad(g::text, 9, '0'), '+1 555 ' || lpad(g::text, 7, '0') \
             FROM generate_series(2, {ROWS}) g; ANALYZE customers"
        ))
        .await?;
    let agent = |token: &str| {
        format!(
            "host=127.0.0.1 port={} dbname=prod user=bench password={token} sslmode=disable",
            stack.agent.addr.port()
        )
    };
    let direct = format!(
        "host={} port={} dbname=prod user={} password={} sslmode=disable",
        stack.pg.host(),
        stack.pg.port(),
        stack.pg.superuser(),
        stack.pg.superuser_password()
    );
    let targets = [
        ("direct", connect(&direct).await?),
        (
            "agent, nothing masked (dba)",
            connect(&agent(&stack.dba_token()?)).await?,
        ),
        (
            "agent, 3 of 5 columns masked (ci)",
            connect(&agent(&stack.ci_token()?)).await?,
        ),
    ];
    println!(
        "bench_masking: {ROWS} rows of `{SQL}` (5 columns), {rounds} rounds, targets interleaved; \
         agent and PDP in this process, audit on, plaintext client connections"
    );
    for protocol in [Protocol::Simple, Protocol::Extended] {
        // Warm caches (catalog snapshot, decisions, buffers).
        for (_, c) in &targets {
            stream(c, protocol).await?;
        }
        let mut results: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
        for _ in 0..rounds {
            for ((_, c), r) in targets.iter().zip(&mut results) {
                r.push(stream(c, protocol).await?);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let medians: Vec<f64> = results.into_iter().map(median).collect();
        let (direct, clear, masked) = (medians[0], medians[1], medians[2]);
        println!("\n{}:", protocol.name());
        for ((name, _), m) in targets.iter().zip(&medians) {
            println!("  {name:<36} {m:>12.0} rows/s  ({:.2}× direct)", m / direct);
        }
        println!(
            "  masked / unmasked through the agent: {:.2}×; masked / direct: {:.2}×",
            masked / clear,
            masked / direct
        );
        println!(
            "{}",
            json!({
                "bench": "masking",
                "protocol": protocol.name(),
                "rows": ROWS,
                "rows_per_s": {"direct": direct, "agent_clear": clear, "agent_masked": masked},
                "masked_vs_clear": masked / clear,
                "masked_vs_direct": masked / direct,
                "clear_vs_direct": clear / direct,
            })
        );
    }
    Ok(())
}
