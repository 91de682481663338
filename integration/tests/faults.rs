//! Fault injection: what a client sees, and what the audit trail holds, when
//! a piece of the deployment fails under load. Each scenario is scripted
//! against real processes (PostgreSQL, and the PDP or the agent as their own
//! processes where they are killed or signalled).
//!
//! Run them all with `cargo nextest run -p integration --test faults`
//! (after `cargo build --bins`). Timings are printed (`FAULT ...` lines) for
//! the README; no assertion depends on speed beyond "no hang": every client
//! call is bounded by [`HANG`], far above any configured bound.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test on a broken assumption"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use integration::agent::{
    AgentProcess, AgentProcessOptions, RunningAgent, Stack, agent_config, seed_example,
};
use integration::ports::free_port;
use integration::postgres::TestPostgres;
use integration::raw::RawClient;
use integration::stack::{Fixture, PdpProcess};
use palisade_agent::codec::write;
use palisade_pdp::audit::{AuditStore, EmbeddedStore, SessionFilter};
use palisade_proto::v1 as pb;

/// Guards against a hang; every bound the agent is configured with is far
/// below it.
const HANG: Duration = Duration::from_secs(30);

fn loopback() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()))
}

/// What one client saw, by outcome.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// The client's application_name (finds its session in the audit).
    app: String,
    ok: u64,
    /// SQLSTATE (or `closed`) → count, with one message of each.
    errors: BTreeMap<String, (u64, String)>,
    hangs: u64,
    /// Whether its last statement succeeded.
    last_ok: bool,
    /// Statements that succeeded after `mark` was set.
    ok_after_mark: u64,
    /// Statements refused because the audit spool could not take their
    /// events (these leave no event: there is nowhere to put it).
    unaudited_refusals: u64,
}

impl Seen {
    fn error(&mut self, e: &tokio_postgres::Error) {
        let (code, message) = match e.as_db_error() {
            Some(db) => (db.code().code().to_owned(), db.message().to_owned()),
            None if e.is_closed() => ("closed".to_owned(), e.to_string()),
            None => ("io".to_owned(), e.to_string()),
        };
        if message.contains("audit spool") {
            self.unaudited_refusals += 1;
        }
        let entry = self.errors.entry(code).or_insert((0, message));
        entry.0 += 1;
        self.last_ok = false;
    }

    fn errors_with(&self, code: &str) -> u64 {
        self.errors.get(code).map_or(0, |e| e.0)
    }
}

/// The statements a loaded client cycles through: reads (each one a new
/// shape, so it needs a fresh decision), a cached read, a sandbox write and
/// a statement policy refuses (42501).
fn statement(i: u64) -> (String, bool) {
    match i % 4 {
        // The alias makes each one a statement the session has not had
        // decided before.
        0 => (
            format!("SELECT count(*) AS n{i} FROM orders WHERE id > 0"),
            false,
        ),
        1 => ("SELECT count(*) FROM orders".to_owned(), false),
        2 => (
            format!("INSERT INTO migrations_tmp.backfill VALUES ({i})"),
            false,
        ),
        _ => ("DELETE FROM orders WHERE id = -1".to_owned(), true),
    }
}

/// Runs `statement`s on `client` until `stop`; `mark` counts successes
/// after an event of the test.
async fn work(
    client: tokio_postgres::Client,
    app: String,
    stop: Arc<AtomicBool>,
    mark: Arc<AtomicBool>,
    pause: Duration,
) -> Seen {
    let mut seen = Seen {
        app,
        ..Seen::default()
    };
    let mut i = 0;
    while !stop.load(Ordering::Acquire) {
        let (sql, refused) = statement(i);
        i += 1;
        match tokio::time::timeout(HANG, client.simple_query(&sql)).await {
            Err(_) => {
                seen.hangs += 1;
                break;
            }
            Ok(Ok(_)) => {
                assert!(!refused, "{sql} ran");
                seen.ok += 1;
                seen.last_ok = true;
                if mark.load(Ordering::Acquire) {
                    seen.ok_after_mark += 1;
                }
            }
            Ok(Err(e)) => {
                let closed = e.is_closed();
                seen.error(&e);
                if closed {
                    break;
                }
            }
        }
        tokio::time::sleep(pause).await;
    }
    seen
}

fn conninfo_with_app(conninfo: &str, app: &str) -> String {
    format!("{conninfo} application_name={app}")
}

/// A tokio-postgres connection, bounded by [`HANG`].
async fn connect(conninfo: &str, ca: &Path) -> anyhow::Result<tokio_postgres::Client> {
    tokio::time::timeout(HANG, integration::clients::connect(conninfo, ca))
        .await
        .map_err(|_| anyhow::anyhow!("connecting hung"))?
}

fn db_code(e: &anyhow::Error) -> Option<String> {
    e.downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.as_db_error())
        .map(|d| d.code().code().to_owned())
}

/// Retries a fresh session and a statement that needs a fresh decision
/// until both work; returns how long that took.
async fn until_new_session_works(conninfo: &str, ca: &Path, within: Duration) -> Duration {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < within {
        match connect(conninfo, ca).await {
            Ok(c) => match c
                .simple_query(&format!(
                    "SELECT id FROM orders WHERE id = {}",
                    start.elapsed().as_millis() % 100 + 1
                ))
                .await
            {
                Ok(_) => return start.elapsed(),
                Err(e) => last = format!("{e:?}"),
            },
            Err(e) => last = format!("{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no new session worked within {within:?}: {last}");
}

/// The events of the session a client named `app` opened.
async fn session_of(store: &dyn AuditStore, app: &str) -> Vec<pb::AuditEvent> {
    for s in store
        .list_sessions(&SessionFilter::default())
        .await
        .unwrap()
    {
        let events: Vec<pb::AuditEvent> = store
            .session_events(&s.session_id, 0)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect();
        let started_by_app = events.iter().any(|e| {
            matches!(&e.event, Some(pb::audit_event::Event::SessionStarted(s))
                if s.client.as_ref().is_some_and(|c| c.application_name == app))
        });
        if started_by_app {
            return events;
        }
    }
    panic!("no session of {app} in the audit store");
}

/// Checks one client's session in the store: a gapless chain of distinct
/// sequences (nothing lost, nothing twice), one event per statement the
/// client ran (allowed and completed) or saw refused, and its end.
fn check_session(seen: &Seen, events: &[pb::AuditEvent]) {
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(
        sequences,
        (1..=sequences.len() as u64).collect::<Vec<_>>(),
        "{}: sequences must be 1..n, each once",
        seen.app
    );
    let statements: Vec<&pb::StatementExecuted> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(pb::audit_event::Event::Statement(s)) => Some(s),
            _ => None,
        })
        .collect();
    let ran = statements
        .iter()
        .filter(|s| s.effect == pb::Effect::Allow as i32 && s.error.is_empty())
        .count() as u64;
    let refused = statements
        .iter()
        .filter(|s| s.effect == pb::Effect::Deny as i32)
        .count() as u64;
    assert_eq!(ran, seen.ok, "{}: statements that ran", seen.app);
    assert_eq!(
        refused,
        seen.errors_with("42501") + seen.errors_with("58000") - seen.unaudited_refusals,
        "{}: refused statements ({:?})",
        seen.app,
        seen.errors
    );
    let ends = events
        .iter()
        .filter(|e| matches!(e.event, Some(pb::audit_event::Event::SessionEnded(_))))
        .count();
    assert_eq!(ends, 1, "{}: one session end", seen.app);
}

/// Opens the PDP's embedded store once the PDP process is gone.
fn open_store(fixture: &Fixture) -> EmbeddedStore {
    EmbeddedStore::open(&fixture.dir.path().join("audit")).unwrap()
}

fn report(scenario: &str, fields: &[(&str, String)]) {
    let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("FAULT {scenario} {}", fields.join(" "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdp_killed_and_restarted_under_load() {
    const CLIENTS: usize = 8;
    let fixture = Fixture::new().unwrap();
    let pg = TestPostgres::start().await.unwrap();
    seed_example(&pg).await.unwrap();
    let mut pdp = PdpProcess::start(&fixture, loopback()).await.unwrap();
    let mut config = agent_config(&fixture, &pdp.url(), &pg).unwrap();
    config.pdp.decision_timeout = Duration::from_secs(2);
    let agent = RunningAgent::start(config, fixture.certs.ca.cert.clone())
        .await
        .unwrap();
    let token = fixture.token("ci-load", &["ci-generated-code"]).unwrap();
    let conninfo = agent.conninfo(&token);

    let stop = Arc::new(AtomicBool::new(false));
    let mark = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for n in 0..CLIENTS {
        let app = format!("fault-pdp-{n}");
        let client = connect(&conninfo_with_app(&conninfo, &app), &agent.ca)
            .await
            .unwrap();
        workers.push(tokio::spawn(work(
            client,
            app,
            stop.clone(),
            mark.clone(),
            Duration::from_millis(20),
        )));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    pdp.kill().await.unwrap();
    let killed = Instant::now();
    // While it is down, a new session is refused, clearly and in bounded
    // time.
    let e = connect(&conninfo, &agent.ca).await.unwrap_err();
    assert_eq!(db_code(&e).as_deref(), Some("58000"), "{e:?}");
    let refused_connect = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;

    pdp.restart().await.unwrap();
    let restarted = Instant::now();
    mark.store(true, Ordering::Release);
    let recovery = until_new_session_works(&conninfo, &agent.ca, HANG).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Release);
    let mut seen = Vec::new();
    for w in workers {
        seen.push(w.await.unwrap());
    }
    let in_session_recovery = restarted.elapsed();

    for s in &seen {
        assert_eq!(s.hangs, 0, "{s:?}");
        for (code, (_, message)) in &s.errors {
            match code.as_str() {
                "42501" => assert!(message.contains("refused"), "{message}"),
                "58000" => assert!(message.contains("policy service"), "{message}"),
                other => panic!("{}: unexpected error {other}: {message}", s.app),
            }
        }
        assert!(s.ok_after_mark > 0, "{}: never recovered: {s:?}", s.app);
    }
    let pdp_refusals: u64 = seen.iter().map(|s| s.errors_with("58000")).sum();
    let ok: u64 = seen.iter().map(|s| s.ok).sum();

    // Every client's statements are on record exactly once.
    assert!(agent.ctx.recorded(HANG).await, "events still unspooled");
    agent.ctx.audit.as_ref().unwrap().flush(HANG).await.unwrap();
    pdp.kill().await.unwrap();
    let store = open_store(&fixture);
    for s in &seen {
        check_session(s, &session_of(&store, &s.app).await);
    }
    assert!(store.verify(None).await.unwrap().intact());
    report(
        "pdp_killed",
        &[
            ("clients", CLIENTS.to_string()),
            ("ok", ok.to_string()),
            ("refused_pdp_unavailable", pdp_refusals.to_string()),
            ("new_session_refused_after", format!("{refused_connect:?}")),
            ("new_session_works_after_restart", format!("{recovery:?}")),
            ("run_until_stop", format!("{in_session_recovery:?}")),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_postgres_restarted() {
    const CLIENTS: usize = 6;
    let stack = Stack::start().await.unwrap();
    let token = stack.ci_token().unwrap();
    let conninfo = stack.agent.conninfo(&token);
    let stop = Arc::new(AtomicBool::new(false));
    let mark = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for n in 0..CLIENTS {
        let app = format!("fault-pg-{n}");
        let client = connect(&conninfo_with_app(&conninfo, &app), &stack.agent.ca)
            .await
            .unwrap();
        workers.push(tokio::spawn(work(
            client,
            app,
            stop.clone(),
            mark.clone(),
            Duration::from_millis(20),
        )));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A fast shutdown ends every backend: each client sees its session end
    // with an error (and a closed connection), none hangs.
    let stopped = Instant::now();
    stack.pg.stop().await.unwrap();
    let mut seen = Vec::new();
    for w in workers {
        seen.push(
            tokio::time::timeout(HANG, w)
                .await
                .expect("no hang")
                .unwrap(),
        );
    }
    let clients_done = stopped.elapsed();
    let mut codes = BTreeMap::new();
    for s in &seen {
        assert_eq!(s.hangs, 0, "{s:?}");
        assert!(s.ok > 0, "{s:?}");
        assert!(s.errors.contains_key("closed"), "{s:?}");
        for (code, (n, message)) in &s.errors {
            // 57P01: the database's own "terminating connection due to
            // administrator command", relayed; 08006: the agent's "the
            // database closed the connection".
            assert!(
                ["42501", "57P01", "08006", "closed"].contains(&code.as_str()),
                "{}: {code}: {message}",
                s.app
            );
            *codes.entry(code.clone()).or_insert(0) += n;
        }
    }
    // While it is down, a new session is refused clearly.
    let e = connect(&conninfo, &stack.agent.ca).await.unwrap_err();
    let down_code = db_code(&e);
    assert!(down_code.is_some(), "a database error: {e:?}");
    let down_message = e
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.as_db_error())
        .map(|d| d.message().to_owned())
        .unwrap_or_default();

    stack.pg.start_again().await.unwrap();
    let recovery = until_new_session_works(&conninfo, &stack.agent.ca, HANG).await;
    report(
        "postgres_restarted",
        &[
            ("clients", CLIENTS.to_string()),
            ("client_errors", format!("{codes:?}")),
            (
                "all_clients_saw_the_end_within",
                format!("{clients_done:?}"),
            ),
            (
                "new_session_while_down",
                format!("{down_code:?}:{down_message:?}"),
            ),
            ("new_session_works_after_start", format!("{recovery:?}")),
        ],
    );
}

/// A "PDP" that accepts connections and reads, and never writes a byte.
async fn black_hole(addr: std::net::SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                use tokio::io::AsyncReadExt;
                while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdp_that_never_answers_is_refused_within_the_bound() {
    const BOUND: Duration = Duration::from_secs(1);
    let fixture = Fixture::new().unwrap();
    let pg = TestPostgres::start().await.unwrap();
    seed_example(&pg).await.unwrap();
    let pdp_addr = loopback();
    let mut pdp = PdpProcess::start(&fixture, pdp_addr).await.unwrap();
    let mut config = agent_config(&fixture, &pdp.url(), &pg).unwrap();
    config.pdp.decision_timeout = BOUND;
    let agent = RunningAgent::start(config, fixture.certs.ca.cert.clone())
        .await
        .unwrap();
    let token = fixture.token("ci-job", &["ci-generated-code"]).unwrap();
    let conninfo = agent.conninfo(&token);
    let ci = connect(&conninfo, &agent.ca).await.unwrap();
    ci.simple_query("SELECT count(*) FROM orders")
        .await
        .unwrap();

    // The PDP is replaced by a listener that accepts and never answers.
    pdp.kill().await.unwrap();
    let hole = black_hole(pdp_addr).await;

    // A statement that needs a decision: refused within the bound, and the
    // session stays usable.
    let mut statement_times = Vec::new();
    for n in 1..=3 {
        let start = Instant::now();
        let e = tokio::time::timeout(
            HANG,
            ci.simple_query(&format!(
                "SELECT id FROM orders WHERE id = {n} AND total > 0"
            )),
        )
        .await
        .expect("no hang")
        .unwrap_err();
        statement_times.push(start.elapsed());
        let db = e.as_db_error().expect("a database error");
        assert_eq!(db.code().code(), "58000", "{db:?}");
        assert!(db.message().contains("policy service"), "{}", db.message());
    }
    // A cached decision still serves.
    ci.simple_query("SELECT count(*) FROM orders")
        .await
        .unwrap();
    // A new session: refused within the bound too.
    let mut session_times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let e = connect(&conninfo, &agent.ca).await.unwrap_err();
        session_times.push(start.elapsed());
        assert_eq!(db_code(&e).as_deref(), Some("58000"), "{e:?}");
    }
    // Generous: the bound plus scheduling on a loaded 2-core machine; the
    // point is that the bound holds, not how fast.
    let limit = BOUND * 2 + Duration::from_secs(3);
    for t in statement_times.iter().chain(&session_times) {
        assert!(*t <= limit, "{t:?} > {limit:?}");
    }
    hole.abort();
    report(
        "pdp_never_answers",
        &[
            ("decision_timeout", format!("{BOUND:?}")),
            ("statement_refused_after", format!("{statement_times:?}")),
            ("session_refused_after", format!("{session_times:?}")),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_statements_and_flushes_the_spool() {
    const CLIENTS: usize = 6;
    let fixture = Fixture::new().unwrap();
    let pg = TestPostgres::start().await.unwrap();
    seed_example(&pg).await.unwrap();
    let mut pdp = PdpProcess::start(&fixture, loopback()).await.unwrap();
    let spool = fixture.dir.path().join("agent-spool");
    let mut agent = AgentProcess::start_configured(
        &fixture,
        &pdp.url(),
        &pg,
        loopback(),
        &spool,
        AgentProcessOptions {
            drain_seconds: Some(20),
            ..AgentProcessOptions::default()
        },
    )
    .await
    .unwrap();
    let ca = fixture.certs.ca.cert.clone();
    let token = fixture.token("ci-job", &["ci-generated-code"]).unwrap();
    let conninfo = agent.conninfo(&token);

    // Each client runs slow statements back to back; when told, it finishes
    // the one in flight and leaves.
    let term = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for n in 0..CLIENTS {
        let app = format!("fault-term-{n}");
        let client = connect(&conninfo_with_app(&conninfo, &app), &ca)
            .await
            .unwrap();
        let term = term.clone();
        workers.push(tokio::spawn(async move {
            let mut seen = Seen {
                app,
                ..Seen::default()
            };
            let mut after_term = 0;
            loop {
                let during = term.load(Ordering::Acquire);
                match tokio::time::timeout(HANG, client.simple_query("SELECT pg_sleep(0.4)")).await
                {
                    Err(_) => {
                        seen.hangs += 1;
                        break;
                    }
                    Ok(Ok(_)) => {
                        seen.ok += 1;
                        if during || term.load(Ordering::Acquire) {
                            after_term += 1;
                        }
                    }
                    Ok(Err(e)) => seen.error(&e),
                }
                if term.load(Ordering::Acquire) {
                    break;
                }
            }
            seen.ok_after_mark = after_term;
            drop(client);
            seen
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    agent.signal("TERM").await.unwrap();
    let signalled = Instant::now();
    term.store(true, Ordering::Release);
    // New connections are refused during the drain: the listener is
    // closed as soon as the signal is handled.
    let mut refused_after = None;
    while signalled.elapsed() < HANG {
        if tokio::net::TcpStream::connect(agent.addr).await.is_err() {
            refused_after = Some(signalled.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused_after = refused_after.expect("new connections were still accepted");
    let e = connect(&conninfo, &ca).await.unwrap_err();
    assert!(db_code(&e).is_none(), "refused before any protocol: {e:?}");

    let mut seen = Vec::new();
    for w in workers {
        seen.push(w.await.unwrap());
    }
    let status = agent.wait(HANG).await.unwrap();
    let exited = signalled.elapsed();
    assert!(status.success(), "{status:?}");
    for s in &seen {
        assert_eq!(s.hangs, 0, "{s:?}");
        assert!(s.errors.is_empty(), "in-flight statements finish: {s:?}");
        assert!(s.ok_after_mark >= 1, "{s:?}");
    }

    // The agent is gone; what it flushed is all there is.
    pdp.kill().await.unwrap();
    let store = open_store(&fixture);
    let mut events = 0;
    for s in &seen {
        let session = session_of(&store, &s.app).await;
        events += session.len();
        check_session(s, &session);
    }
    report(
        "agent_sigterm",
        &[
            ("clients", CLIENTS.to_string()),
            ("in_flight_finished", seen.len().to_string()),
            (
                "new_connection",
                format!("ECONNREFUSED {refused_after:?} after SIGTERM"),
            ),
            ("exited_after", format!("{exited:?}")),
            ("events_in_store", events.to_string()),
        ],
    );
}

/// The size of the spool's active (newest) segment.
fn active_segment_len(spool: &Path) -> u64 {
    std::fs::read_dir(spool)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("spool-"))
        .max_by_key(|e| e.file_name())
        .and_then(|e| e.metadata().ok())
        .map_or(0, |m| m.len())
}

async fn prlimit_fsize(pid: u32, limit: &str) {
    let status = tokio::process::Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--fsize={limit}"))
        .status()
        .await
        .unwrap();
    assert!(status.success(), "prlimit failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_disk_that_fails_writes_fails_closed() {
    let fixture = Fixture::new().unwrap();
    let pg = TestPostgres::start().await.unwrap();
    seed_example(&pg).await.unwrap();
    let mut pdp = PdpProcess::start(&fixture, loopback()).await.unwrap();
    let spool = fixture.dir.path().join("agent-spool");
    let agent = AgentProcess::start_configured(
        &fixture,
        &pdp.url(),
        &pg,
        loopback(),
        &spool,
        AgentProcessOptions {
            ignore_sigxfsz: true,
            ..AgentProcessOptions::default()
        },
    )
    .await
    .unwrap();
    let ca = fixture.certs.ca.cert.clone();
    let token = fixture.token("ci-job", &["ci-generated-code"]).unwrap();
    let app = "fault-disk";
    let ci = connect(&conninfo_with_app(&agent.conninfo(&token), app), &ca)
        .await
        .unwrap();
    let mut seen = Seen {
        app: app.to_owned(),
        ..Seen::default()
    };
    ci.simple_query("SELECT count(*) FROM orders")
        .await
        .unwrap();
    seen.ok += 1;

    // The file system takes no more bytes in the spool: every write past
    // the active segment's current end fails (EFBIG, as ENOSPC would).
    let pid = agent.pid().unwrap();
    let at = active_segment_len(&spool) + 2048;
    prlimit_fsize(pid, &format!("{at}:unlimited")).await;
    let mut refusal = None;
    let mut ran_before = 0;
    for i in 0..500 {
        match tokio::time::timeout(
            HANG,
            ci.simple_query(&format!("INSERT INTO migrations_tmp.backfill VALUES ({i})")),
        )
        .await
        .expect("no hang")
        {
            Ok(_) => {
                seen.ok += 1;
                ran_before += 1;
            }
            Err(e) => {
                seen.error(&e);
                refusal = Some(e);
                break;
            }
        }
    }
    let e = refusal.expect("statements kept running while the spool could not be written");
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "58000", "{db:?}");
    assert!(db.message().contains("audit spool"), "{}", db.message());
    // The disk, not a slow policy service, is named as the cause.
    assert!(!db.message().contains("spool is full"), "{}", db.message());
    // It stays closed while writes fail: reads too, on this session and on
    // a new one.
    for _ in 0..3 {
        let e = ci
            .simple_query("SELECT count(*) FROM orders")
            .await
            .unwrap_err();
        assert_eq!(e.as_db_error().unwrap().code().code(), "58000");
        seen.error(&e);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let other = connect(&agent.conninfo(&token), &ca).await;
    let new_session = match other {
        Ok(c) => {
            let e = c
                .simple_query("SELECT count(*) FROM orders")
                .await
                .unwrap_err();
            format!("statement refused: {}", e.as_db_error().unwrap().message())
        }
        Err(e) => format!("session refused: {e}"),
    };

    // Space comes back: the held events are written and statements run.
    prlimit_fsize(pid, "unlimited:unlimited").await;
    let freed = Instant::now();
    let mut recovered = None;
    while freed.elapsed() < HANG {
        match ci.simple_query("SELECT count(*) FROM orders").await {
            Ok(_) => {
                seen.ok += 1;
                recovered = Some(freed.elapsed());
                break;
            }
            Err(e) => seen.error(&e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovered = recovered.expect("statements did not run again");
    drop(ci);

    // Nothing was lost: the statements that ran before the failure and the
    // refusals are all on record, once. (SIGTERM: the agent drains and
    // flushes its spool.)
    let mut agent = agent;
    agent.signal("TERM").await.unwrap();
    assert!(agent.wait(HANG).await.unwrap().success());
    pdp.kill().await.unwrap();
    let store = open_store(&fixture);
    check_session(&seen, &session_of(&store, app).await);
    report(
        "spool_disk_fails",
        &[
            ("ran_before_refusal", ran_before.to_string()),
            (
                "client_saw",
                format!("{}: {}", db.code().code(), db.message()),
            ),
            ("new_session", new_session),
            ("runs_again_after_space_freed", format!("{recovered:?}")),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_bounded_and_do_not_hold_up_others() {
    const STARTUP: Duration = Duration::from_secs(2);
    let stack = Stack::start_with(|c| c.limits.startup_timeout = STARTUP)
        .await
        .unwrap();
    let addr = stack.agent.addr;
    let ca = stack.agent.ca.clone();
    let token = stack.ci_token().unwrap();

    // Startup never sent: the agent hangs up after startup_timeout.
    let silent_start = Instant::now();
    let silent = RawClient::tcp(addr).await.unwrap();
    let mut silent = RawClient::new(Box::new(silent));
    assert!(silent.closed_within(HANG).await, "never closed");
    let silent_closed = silent_start.elapsed();
    assert!(silent_closed >= STARTUP, "{silent_closed:?}");

    // One byte per second (TLS set up, then the startup message trickled):
    // the same bound holds for the whole startup, however the bytes come.
    let trickle_start = Instant::now();
    let mut trickle = RawClient::tls(addr, &ca).await.unwrap();
    let mut startup = BytesMut::new();
    write::startup_message_with_minor(&mut startup, 0, &[("user", "ci"), ("database", "prod")])
        .unwrap();
    let mut sent = 0;
    let mut closed = false;
    for byte in startup.iter() {
        if trickle.send(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        sent += 1;
        if trickle.closed_within(Duration::from_secs(1)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickling startup was never cut off");
    assert!(sent < startup.len(), "the whole startup went through");
    let trickle_closed = trickle_start.elapsed();

    // Never reading results: a client asks for ~50 MB and reads nothing.
    // The agent stops reading from the database once the client's socket is
    // full (back-pressure), and other sessions go on as before.
    let before_rss = rss_kib();
    let mut hog = RawClient::tls(addr, &ca).await.unwrap();
    let ready = hog
        .startup(0, &[("user", "ci"), ("database", "prod")], &token)
        .await
        .unwrap();
    assert_eq!(integration::raw::tags(&ready).chars().last(), Some('Z'));
    let mut query = BytesMut::new();
    write::query(
        &mut query,
        "SELECT repeat('x', 1000) FROM generate_series(1, 50000)",
    )
    .unwrap();
    hog.send(&query).await.unwrap();

    let others = 4;
    let mut tasks = Vec::new();
    for n in 0..others {
        let conninfo = conninfo_with_app(&stack.agent.conninfo(&token), &format!("slow-other-{n}"));
        let ca = ca.clone();
        tasks.push(tokio::spawn(async move {
            let client = connect(&conninfo, &ca).await.unwrap();
            let mut worst = Duration::ZERO;
            for i in 0..50u64 {
                let (sql, refused) = statement(i);
                let start = Instant::now();
                let r = tokio::time::timeout(HANG, client.simple_query(&sql))
                    .await
                    .expect("no hang");
                assert_eq!(r.is_err(), refused, "{sql}: {r:?}");
                worst = worst.max(start.elapsed());
            }
            worst
        }));
    }
    let mut worst = Duration::ZERO;
    for t in tasks {
        worst = worst.max(t.await.unwrap());
    }
    let held_rss = rss_kib();
    // The agent (this process) did not take the 50 MB in: it waits on
    // the client.
    let growth = held_rss.saturating_sub(before_rss);
    assert!(growth < 64 * 1024, "the agent buffered {growth} KiB");
    // The hog can still read its results afterwards; then it leaves.
    let mut rows = 0u64;
    loop {
        let f = hog.recv().await.unwrap();
        match f.tag() {
            b'D' => rows += 1,
            b'Z' => break,
            _ => {}
        }
    }
    assert_eq!(rows, 50_000);
    drop(hog);
    report(
        "slow_clients",
        &[
            ("startup_timeout", format!("{STARTUP:?}")),
            ("silent_client_closed_after", format!("{silent_closed:?}")),
            (
                "trickling_client_closed_after",
                format!("{trickle_closed:?} ({sent} of {} bytes)", startup.len()),
            ),
            ("other_sessions_worst_statement", format!("{worst:?}")),
            ("agent_rss_growth_kib_while_hog_waits", growth.to_string()),
        ],
    );
}

/// This process's resident set (the in-process agent's memory), in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
