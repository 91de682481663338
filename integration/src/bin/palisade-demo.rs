//! `palisade-demo`: the whole stack on this machine, for trying it out.
//!
//! Starts a throwaway PostgreSQL with the example database, the PDP with the
//! example policies (mutual TLS, development CA) and an agent in front of the
//! database, mints development tokens for the CI identity and a dba, prints
//! the psql lines that connect through the agent, and runs until Ctrl-C.
//! Everything lives under `.demo/` (removed on the next start).

use std::path::PathBuf;

use anyhow::Context;
use integration::agent::{RunningAgent, agent_config, seed_example};
use integration::postgres::{PostgresOptions, TestPostgres};
use integration::stack::{Fixture, RunningPdp};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(".demo");
    if root.exists() {
        std::fs::remove_dir_all(&root)
            .with_context(|| format!("cannot clear {}", root.display()))?;
    }
    std::fs::create_dir_all(&root)?;
    println!("starting PostgreSQL ...");
    let pg = TestPostgres::start_with(PostgresOptions::default()).await?;
    seed_example(&pg).await?;
    let fixture = Fixture::new()?;
    let mut pdp_config = fixture.pdp_config();
    pdp_config.policy_dir = std::fs::canonicalize("policies").unwrap_or(fixture.policy_dir.clone());
    let pdp = RunningPdp::start(pdp_config).await?;
    let mut config = agent_config(&fixture, &pdp.url(), &pg)?;
    config.listen.addr = ([127, 0, 0, 1], 6432).into();
    let agent = match RunningAgent::start(config.clone(), fixture.certs.ca.cert.clone()).await {
        Ok(a) => a,
        Err(_) => {
            // 6432 is taken (pgbouncer?): any free port will do.
            config.listen.addr = ([127, 0, 0, 1], 0).into();
            RunningAgent::start(config, fixture.certs.ca.cert.clone()).await?
        }
    };
    let ca = root.join("ca.pem");
    std::fs::copy(&fixture.certs.ca.cert, &ca)?;
    let ci = fixture.token("ci-job-42", &["ci-generated-code"])?;
    let dba = fixture.token("alice", &["dba"])?;
    let line = |token: &str| {
        format!(
            "psql \"host=localhost port={} dbname=prod user=ci sslmode=verify-full sslrootcert={}\"  # PGPASSWORD={token}",
            agent.addr.port(),
            ca.display()
        )
    };
    println!();
    println!(
        "Palisade is up: PDP {} (mutual TLS), agent 127.0.0.1:{}, PostgreSQL 127.0.0.1:{}",
        pdp.url(),
        agent.addr.port(),
        pg.port()
    );
    println!("Policies: ./policies (edit them: the PDP reloads within a second)");
    println!();
    println!("Connect as the CI identity (group ci-generated-code):");
    println!(
        "  PGPASSWORD='{ci}' \\\n  psql \"host=localhost port={} dbname=prod user=ci sslmode=verify-full sslrootcert={}\"",
        agent.addr.port(),
        ca.display()
    );
    println!();
    println!("Connect as a dba:");
    println!("  {}", line(&dba).replace("user=ci", "user=alice"));
    println!();
    println!(
        "Try: SELECT * FROM orders LIMIT 3;  DELETE FROM orders;  SELECT pg_read_file('/etc/passwd');"
    );
    println!(
        "Tokens expire in 15 minutes; mint more with:\n  cargo run -q -p palisade-cli --bin palisade -- token --dir {} --sub ci-job-42 --group ci-generated-code --github-actions",
        fixture.dir.path().join("issuer").display()
    );
    println!("Ctrl-C stops everything.");
    tokio::signal::ctrl_c().await?;
    agent.stop().await;
    pdp.stop().await;
    drop(pg);
    Ok(())
}
