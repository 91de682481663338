//! `load`: many concurrent client sessions through one agent for minutes of
//! mixed work, with the agent's memory sampled as it goes.
//!
//! Starts a throwaway PostgreSQL (`max_connections` above the session
//! count), the PDP and one agent, each as its own process (the
//! `palisade-pdp` and `palisade-agent` binaries next to this one, so a release build measures a
//! release agent, and its RSS can be read from `/proc`). Then `--sessions`
//! tokio-postgres sessions over TLS (one in ten a dba, the rest the CI
//! identity of the example policies) each cycle through: reads (simple
//! protocol), prepared reads (extended protocol), inserts into the
//! `migrations_tmp` sandbox, a statement policy refuses, `COPY ... TO
//! STDOUT` and `COPY ... FROM STDIN`, with `--think-ms` between statements.
//!
//! Nothing unexpected may fail: a refused statement must be refused with
//! SQLSTATE 42501, everything else must succeed. The agent's RSS must level
//! off (the second half of the run adds at most 10 % or 16 MiB). Afterwards
//! the agent is sent SIGTERM, drains and flushes its audit spool, and the
//! PDP's store must hold every session and every statement the clients ran
//! or saw refused, once. Prints a table, then JSON lines; exits non-zero
//! on any unexpected failure.
//!
//! `cargo run --release -p integration --bin load -- --sessions 500 --minutes 3`
//! (`scripts/load.sh` builds and runs it.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use integration::agent::{AgentProcess, AgentProcessOptions, seed_example};
use integration::postgres::{PostgresOptions, TestPostgres};
use integration::stack::{Fixture, PdpProcess};
use palisade_pdp::audit::{AuditStore, EmbeddedStore, SessionFilter};
use serde_json::json;

/// The kinds of work, in the order of the table.
const KINDS: &[&str] = &[
    "connect", "read", "prepared", "write", "refused", "copy_out", "copy_in",
];

/// One session's cycle.
const CYCLE: &[&str] = &[
    "read", "prepared", "read", "write", "read", "copy_out", "prepared", "refused", "read",
    "copy_in",
];

struct Args {
    sessions: usize,
    duration: Duration,
    think: Duration,
    sample: Duration,
    dba_every: usize,
    /// Only these kinds of the cycle (all when empty).
    kinds: Vec<String>,
    /// Clients connect to PostgreSQL directly (no TLS, no agent; the
    /// `refused` kind is skipped), as a baseline for the same machine.
    direct: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        sessions: 500,
        duration: Duration::from_secs(180),
        think: Duration::from_millis(100),
        sample: Duration::from_secs(10),
        dba_every: 10,
        kinds: Vec::new(),
        direct: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--sessions" => a.sessions = value()?.parse()?,
            "--minutes" => a.duration = Duration::from_secs_f64(value()?.parse::<f64>()? * 60.0),
            "--seconds" => a.duration = Duration::from_secs_f64(value()?.parse()?),
            "--think-ms" => a.think = Duration::from_millis(value()?.parse()?),
            "--sample-seconds" => a.sample = Duration::from_secs_f64(value()?.parse()?),
            "--dba-every" => a.dba_every = value()?.parse()?,
            "--kinds" => a.kinds = value()?.split(',').map(str::to_owned).collect(),
            "--direct" => a.direct = true,
            "-h" | "--help" => {
                println!(
                    "load [--sessions 500] [--minutes 3 | --seconds S] [--think-ms 100] [--sample-seconds 10] [--dba-every 10] [--kinds read,prepared,write,refused,copy_out,copy_in] [--direct]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    anyhow::ensure!(a.sessions > 0, "--sessions must be positive");
    Ok(a)
}

/// What one session saw.
#[derive(Default)]
struct Tally {
    /// Kind → latencies in microseconds of successful (or, for `refused`,
    /// correctly refused) statements.
    latencies: BTreeMap<&'static str, Vec<u32>>,
    /// (kind, what) → count, with a sample message.
    unexpected: BTreeMap<(String, String), (u64, String)>,
}

impl Tally {
    fn done(&mut self, kind: &'static str, took: Duration) {
        self.latencies
            .entry(kind)
            .or_default()
            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
    }

    fn unexpected(&mut self, kind: &str, what: String, message: String) {
        self.unexpected
            .entry((kind.to_owned(), what))
            .or_insert((0, message))
            .0 += 1;
    }

    fn merge(&mut self, other: Tally) {
        for (k, mut v) in other.latencies {
            self.latencies.entry(k).or_default().append(&mut v);
        }
        for (k, (n, m)) in other.unexpected {
            self.unexpected.entry(k).or_insert((0, m)).0 += n;
        }
    }
}

fn describe(e: &tokio_postgres::Error) -> (String, String) {
    match e.as_db_error() {
        Some(db) => (db.code().code().to_owned(), db.message().to_owned()),
        None if e.is_closed() => ("closed".to_owned(), e.to_string()),
        None => ("client".to_owned(), format!("{e:?}")),
    }
}

/// Runs one statement of `kind`; `Ok(true)` when it behaved as expected.
async fn run_one(
    client: &tokio_postgres::Client,
    prepared: &tokio_postgres::Statement,
    kind: &str,
    session: usize,
    i: u64,
    dba: bool,
) -> Result<(), (String, String)> {
    let id = i32::try_from(i % 100 + 1).unwrap_or(1);
    let outcome = match kind {
        "read" => {
            let sql = if dba && i.is_multiple_of(2) {
                format!("SELECT id, name, email FROM customers WHERE id = {}", id % 2)
            } else {
                format!("SELECT id, total FROM orders WHERE id >= {id} ORDER BY id LIMIT 5")
            };
            client.simple_query(&sql).await.map(drop)
        }
        "prepared" => client.query(prepared, &[&id]).await.map(drop),
        "write" => client
            .simple_query(&format!(
                "INSERT INTO migrations_tmp.load_rows (session, n, note) VALUES ({session}, {i}, 'w')"
            ))
            .await
            .map(drop),
        "refused" => {
            let sql = if dba {
                "SELECT pg_read_file('/etc/hostname')".to_owned()
            } else {
                format!("DELETE FROM orders WHERE id = {id}")
            };
            return match client.simple_query(&sql).await {
                Ok(_) => Err(("ran".to_owned(), format!("{sql} was not refused"))),
                Err(e) => {
                    let (code, message) = describe(&e);
                    if code == "42501" {
                        Ok(())
                    } else {
                        Err((code, message))
                    }
                }
            };
        }
        "copy_out" => {
            match client
                .copy_out("COPY (SELECT id, total FROM orders WHERE id <= 20) TO STDOUT")
                .await
            {
                Ok(stream) => {
                    let mut stream = std::pin::pin!(stream);
                    let mut result = Ok(());
                    while let Some(chunk) = stream.next().await {
                        if let Err(e) = chunk {
                            result = Err(e);
                            break;
                        }
                    }
                    result
                }
                Err(e) => Err(e),
            }
        }
        "copy_in" => {
            let mut data = String::new();
            for r in 0..20 {
                data.push_str(&format!("{session}\t{i}\tcopy {r}\n"));
            }
            match client
                .copy_in("COPY migrations_tmp.load_rows (session, n, note) FROM STDIN")
                .await
            {
                Ok(sink) => {
                    let mut sink = std::pin::pin!(sink);
                    match sink.send(Bytes::from(data)).await {
                        Ok(()) => sink.as_mut().finish().await.map(drop),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            }
        }
        other => return Err(("bug".to_owned(), format!("unknown kind {other}"))),
    };
    outcome.map_err(|e| describe(&e))
}

/// When and how every session works.
struct Plan {
    start: Instant,
    until: Instant,
    think: Duration,
    /// Statements done so far, over all sessions.
    done: AtomicU64,
    /// Only these kinds (all when empty).
    kinds: Vec<String>,
    /// Straight to PostgreSQL: nothing is refused there.
    direct: bool,
}

async fn session(client: tokio_postgres::Client, n: usize, dba: bool, plan: Arc<Plan>) -> Tally {
    let Plan {
        start,
        until,
        think,
        ref done,
        ref kinds,
        direct,
    } = *plan;
    let mut tally = Tally::default();
    let prepared = match client
        .prepare("SELECT id, total FROM orders WHERE id = $1")
        .await
    {
        Ok(p) => p,
        Err(e) => {
            let (code, message) = describe(&e);
            tally.unexpected("prepared", code, message);
            return tally;
        }
    };
    // Spread the sessions' cycles so that kinds do not march in step.
    let mut i = n as u64;
    let offset = Duration::from_micros((n as u64 * 7919) % (think.as_micros().max(1) as u64));
    tokio::time::sleep_until((start + offset).into()).await;
    while Instant::now() < until {
        let kind = CYCLE[(i as usize) % CYCLE.len()];
        if (!kinds.is_empty() && !kinds.iter().any(|k| k == kind)) || (direct && kind == "refused")
        {
            i += 1;
            continue;
        }
        let began = Instant::now();
        let result = tokio::time::timeout(
            Duration::from_secs(60),
            run_one(&client, &prepared, kind, n, i, dba),
        )
        .await;
        match result {
            Ok(Ok(())) => tally.done(kind, began.elapsed()),
            Ok(Err((code, message))) => {
                let closed = code == "closed";
                tally.unexpected(kind, code, message);
                if closed {
                    break;
                }
            }
            Err(_) => tally.unexpected(kind, "hang".to_owned(), "no answer within 60 s".to_owned()),
        }
        done.fetch_add(1, Ordering::Relaxed);
        i += 1;
        tokio::time::sleep(think).await;
    }
    tally
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

#[derive(Clone, Copy)]
struct Sample {
    at: f64,
    rss_kib: u64,
    statements: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let fixture = Fixture::new()?;
    eprintln!("starting PostgreSQL, the PDP and the agent...");
    let pg = TestPostgres::start_with(PostgresOptions {
        log_statements: false,
        extra_conf: vec![
            (
                "max_connections".to_owned(),
                (args.sessions + 50).to_string(),
            ),
            ("shared_buffers".to_owned(), "128MB".to_owned()),
        ],
        ..PostgresOptions::default()
    })
    .await?;
    seed_example(&pg).await?;
    pg.psql(
        "prod",
        "CREATE TABLE migrations_tmp.load_rows (session int, n bigint, note text)",
    )
    .await?;
    let mut pdp = PdpProcess::start(
        &fixture,
        std::net::SocketAddr::from(([127, 0, 0, 1], integration::ports::free_port()?)),
    )
    .await?;
    let agent_addr = std::net::SocketAddr::from(([127, 0, 0, 1], integration::ports::free_port()?));
    let spool = fixture.dir.path().join("agent-spool");
    let mut agent = AgentProcess::start_configured(
        &fixture,
        &pdp.url(),
        &pg,
        agent_addr,
        &spool,
        AgentProcessOptions {
            decision_timeout: "5s".to_owned(),
            drain_seconds: Some(60),
            extra_toml: format!(
                "[limits]\nmax_connections = {}\nstartup_timeout = \"60s\"\n",
                args.sessions + 100
            ),
            ..AgentProcessOptions::default()
        },
    )
    .await?;
    let pid = agent.pid().context("the agent exited at once")?;
    let ca = fixture.certs.ca.cert.clone();
    let ci_token = fixture.token("ci-load", &["ci-generated-code"])?;
    let dba_token = fixture.token("dba-load", &["dba"])?;
    let idle_rss = rss_kib(pid).unwrap_or(0);

    // Connect every session first (bounded concurrency), timing each.
    eprintln!("connecting {} sessions...", args.sessions);
    let mut total = Tally::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(16));
    let mut connecting = Vec::new();
    for n in 0..args.sessions {
        let dba = args.dba_every > 0 && n % args.dba_every == args.dba_every - 1;
        let conninfo = if args.direct {
            format!("{} application_name=load-{n}", pg.connection_string("prod"))
        } else {
            format!(
                "{} application_name=load-{n}",
                agent.conninfo(if dba { &dba_token } else { &ci_token })
            )
        };
        let direct = args.direct;
        let gate = gate.clone();
        let ca = ca.clone();
        connecting.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let began = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(60), async {
                if direct {
                    let (client, connection) =
                        tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await?;
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    Ok(client)
                } else {
                    integration::clients::connect(&conninfo, &ca).await
                }
            })
            .await;
            (n, dba, began.elapsed(), r)
        }));
    }
    let mut clients = Vec::new();
    for c in connecting {
        let (n, dba, took, r) = c.await?;
        match r {
            Ok(Ok(client)) => {
                total.done("connect", took);
                clients.push((n, dba, client));
            }
            Ok(Err(e)) => total.unexpected("connect", "error".to_owned(), format!("{e:#}")),
            Err(_) => total.unexpected("connect", "hang".to_owned(), "60 s".to_owned()),
        }
    }
    let connected_rss = rss_kib(pid).unwrap_or(0);
    let connected = clients.len();

    eprintln!(
        "running {} sessions for {:?} (think {:?})...",
        clients.len(),
        args.duration,
        args.think
    );
    let start = Instant::now();
    let until = start + args.duration;
    let plan = Arc::new(Plan {
        start,
        until,
        think: args.think,
        done: AtomicU64::new(0),
        kinds: args.kinds.clone(),
        direct: args.direct,
    });
    let mut tasks = Vec::new();
    for (n, dba, client) in clients {
        tasks.push(tokio::spawn(session(client, n, dba, plan.clone())));
    }
    let mut samples = vec![Sample {
        at: 0.0,
        rss_kib: rss_kib(pid).unwrap_or(0),
        statements: 0,
    }];
    loop {
        let next = start + args.sample * samples.len() as u32;
        if next > until {
            break;
        }
        tokio::time::sleep_until(next.into()).await;
        let s = Sample {
            at: start.elapsed().as_secs_f64(),
            rss_kib: rss_kib(pid).unwrap_or(0),
            statements: plan.done.load(Ordering::Relaxed),
        };
        eprintln!(
            "  t={:>5.0}s  agent rss {:>7.1} MiB  statements {:>9}",
            s.at,
            s.rss_kib as f64 / 1024.0,
            s.statements
        );
        samples.push(s);
    }
    for t in tasks {
        total.merge(t.await?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let end_rss = rss_kib(pid).unwrap_or(0);

    // SIGTERM: the agent drains (the sessions are gone) and flushes.
    let flush_began = Instant::now();
    agent.signal("TERM").await?;
    let status = agent.wait(Duration::from_secs(120)).await?;
    let flushed_in = flush_began.elapsed();
    // The PDP has acknowledged everything the agent flushed; read its store
    // once it is gone.
    pdp.kill().await?;
    let store = EmbeddedStore::open(&fixture.dir.path().join("audit"))?;
    let summaries = store.list_sessions(&SessionFilter::default()).await?;
    let audit_sessions = summaries
        .iter()
        .filter(|s| !s.end_reason.is_empty())
        .count();
    let audit_statements: u64 = summaries.iter().map(|s| s.statements).sum();
    let audit_denied: u64 = summaries.iter().map(|s| s.denied).sum();

    // The table.
    let ran: u64 = KINDS
        .iter()
        .filter(|k| **k != "connect")
        .map(|k| total.latencies.get(k).map_or(0, Vec::len) as u64)
        .sum();
    let unexpected: u64 = total.unexpected.values().map(|(n, _)| n).sum();
    println!();
    println!(
        "Load{}: {} sessions ({} dba), {:.0} s, think {} ms, agent pid {pid}",
        if args.direct {
            " DIRECT to PostgreSQL (baseline: no agent, no TLS, nothing refused)"
        } else {
            ""
        },
        args.sessions,
        args.sessions.checked_div(args.dba_every).unwrap_or(0),
        elapsed,
        args.think.as_millis()
    );
    println!();
    println!("| kind | count | per s | p50 ms | p99 ms | max ms | unexpected |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut json_lines = Vec::new();
    for kind in KINDS {
        let mut l = total.latencies.get(kind).cloned().unwrap_or_default();
        l.sort_unstable();
        let bad: u64 = total
            .unexpected
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|(_, (n, _))| n)
            .sum();
        let rate = if *kind == "connect" {
            0.0
        } else {
            l.len() as f64 / elapsed
        };
        let (p50, p99, max) = (
            percentile(&l, 50.0),
            percentile(&l, 99.0),
            l.last().map_or(0.0, |m| f64::from(*m) / 1000.0),
        );
        println!(
            "| {kind} | {} | {} | {p50:.2} | {p99:.2} | {max:.1} | {bad} |",
            l.len(),
            if *kind == "connect" {
                "-".to_owned()
            } else {
                format!("{rate:.0}")
            },
        );
        json_lines.push(json!({
            "type": "kind", "kind": kind, "count": l.len(), "per_second": rate,
            "p50_ms": p50, "p99_ms": p99, "max_ms": max, "unexpected": bad,
        }));
    }
    println!(
        "| all statements | {ran} | {:.0} | | | | {unexpected} |",
        ran as f64 / elapsed
    );
    println!();
    println!(
        "Agent RSS (MiB): idle {:.1}, {} sessions connected {:.1}, end of run {:.1}",
        idle_rss as f64 / 1024.0,
        args.sessions,
        connected_rss as f64 / 1024.0,
        end_rss as f64 / 1024.0
    );
    println!();
    println!("| t (s) | agent RSS (MiB) | statements so far |");
    println!("| ---: | ---: | ---: |");
    for s in &samples {
        println!(
            "| {:.0} | {:.1} | {} |",
            s.at,
            s.rss_kib as f64 / 1024.0,
            s.statements
        );
        json_lines.push(json!({
            "type": "rss", "t_s": s.at, "rss_kib": s.rss_kib, "statements": s.statements,
        }));
    }
    // Levelled off: the second half of the run adds at most 10 % (or
    // 16 MiB) to the RSS at its middle.
    let mid = samples
        .iter()
        .min_by(|a, b| {
            (a.at - elapsed / 2.0)
                .abs()
                .total_cmp(&(b.at - elapsed / 2.0).abs())
        })
        .map_or(0, |s| s.rss_kib);
    let peak_after_mid = samples
        .iter()
        .filter(|s| s.at >= elapsed / 2.0)
        .map(|s| s.rss_kib)
        .chain([end_rss])
        .max()
        .unwrap_or(0);
    let allowance = (mid / 10).max(16 * 1024);
    let levelled = peak_after_mid <= mid + allowance;
    println!();
    println!(
        "RSS levels off: {} (middle {:.1} MiB, highest after it {:.1} MiB, allowance {:.1} MiB)",
        if levelled { "yes" } else { "NO" },
        mid as f64 / 1024.0,
        peak_after_mid as f64 / 1024.0,
        allowance as f64 / 1024.0
    );
    println!(
        "Shutdown: SIGTERM → exit {status} in {flushed_in:.2?}; audit store: {audit_sessions} ended sessions, {audit_statements} statements ({audit_denied} denied); clients ran {ran} statements"
    );
    println!();
    if total.unexpected.is_empty() {
        println!("Errors: none unexpected (every refusal was 42501, everything else succeeded)");
    } else {
        println!("Unexpected errors:");
        for ((kind, what), (n, message)) in &total.unexpected {
            println!("  {kind} {what} x{n}: {message}");
            json_lines.push(json!({
                "type": "error", "kind": kind, "what": what, "count": n, "message": message,
            }));
        }
    }
    json_lines.push(json!({
        "type": "summary",
        "direct": args.direct,
        "sessions": args.sessions,
        "seconds": elapsed,
        "think_ms": args.think.as_millis() as u64,
        "statements": ran,
        "per_second": ran as f64 / elapsed,
        "unexpected": unexpected,
        "rss_idle_kib": idle_rss,
        "rss_connected_kib": connected_rss,
        "rss_end_kib": end_rss,
        "rss_levelled_off": levelled,
        "shutdown_ms": flushed_in.as_millis() as u64,
        "audit_sessions": audit_sessions,
        "audit_statements": audit_statements,
        "audit_denied": audit_denied,
    }));
    println!();
    for line in &json_lines {
        println!("{line}");
    }
    if unexpected > 0 {
        bail!("{unexpected} statements failed unexpectedly");
    }
    if !levelled {
        bail!("the agent's memory did not level off");
    }
    if !status.success() {
        bail!("the agent did not shut down cleanly: {status}");
    }
    // Every session and statement is on record, once.
    if !args.direct && (audit_sessions != connected || audit_statements != ran) {
        bail!(
            "the audit store holds {audit_sessions} sessions and {audit_statements} statements; the clients had {connected} sessions and ran {ran} statements"
        );
    }
    Ok(())
}
