//! Real clients work through the agent unchanged: psql, pgbench,
//! tokio-postgres and psycopg.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test on a broken assumption"
)]

use futures::{SinkExt, TryStreamExt, pin_mut};
use integration::agent::Stack;
use integration::clients::run_pg_program;
use tokio_postgres::error::SqlState;

#[tokio::test]
async fn psql_scripts_copy_multi_statements_and_transactions() {
    let stack = Stack::start().await.unwrap();
    let conninfo = stack.agent.libpq_conninfo(&stack.ci_token().unwrap());
    let csv = stack.fixture.dir.path().join("ids.csv");
    std::fs::write(&csv, "501\n502\n503\n").unwrap();
    let out_csv = stack.fixture.dir.path().join("out.csv");
    let script = format!(
        r"\set ON_ERROR_STOP 0
SELECT count(*) AS orders FROM orders;
SELECT 1 AS a; SELECT 2 AS b;
\copy migrations_tmp.backfill FROM '{}'
\copy (SELECT id FROM orders WHERE id <= 3 ORDER BY id) TO '{}'
BEGIN;
INSERT INTO migrations_tmp.backfill VALUES (900);
SELECT 1/0;
ROLLBACK;
\d orders
DELETE FROM orders;
SELECT 'still here' AS alive;
",
        csv.display(),
        out_csv.display()
    );
    let out = run_pg_program(
        stack.pg.bin_dir(),
        "psql",
        &["-X", "-d", &conninfo, "-f", "-"],
        &script,
    )
    .await
    .unwrap();
    assert!(out.stdout.contains("100"), "{out:?}");
    assert!(out.stdout.contains("still here"), "{out:?}");
    assert!(out.stdout.contains("COPY 3"), "{out:?}");
    assert!(
        out.stdout.contains("Table \"public.orders\""),
        "\\d must work: {out:?}"
    );
    assert!(out.stderr.contains("division by zero"), "{out:?}");
    assert!(
        out.stderr.contains("palisade: statement refused"),
        "{out:?}"
    );
    assert_eq!(std::fs::read_to_string(&out_csv).unwrap(), "1\n2\n3\n");
    let direct = stack.direct().await.unwrap();
    let copied: i64 = direct
        .query_one(
            "SELECT count(*) FROM migrations_tmp.backfill WHERE id IN (501, 502, 503)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(copied, 3);
    let rolled_back: i64 = direct
        .query_one(
            "SELECT count(*) FROM migrations_tmp.backfill WHERE id = 900",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rolled_back, 0);
}

#[tokio::test]
async fn pgbench_initializes_and_runs_in_every_protocol_mode() {
    let stack = Stack::start().await.unwrap();
    let conninfo = stack
        .agent
        .libpq_conninfo(&stack.dba_token().unwrap())
        .replace("dbname=prod", "dbname=staging");
    let init = run_pg_program(
        stack.pg.bin_dir(),
        "pgbench",
        &["-i", "-s", "1", &conninfo],
        "",
    )
    .await
    .unwrap();
    assert!(init.success, "{init:?}");
    for mode in ["simple", "extended", "prepared"] {
        let run = run_pg_program(
            stack.pg.bin_dir(),
            "pgbench",
            &["-M", mode, "-c", "4", "-j", "2", "-t", "50", &conninfo],
            "",
        )
        .await
        .unwrap();
        assert!(run.success, "{mode}: {run:?}");
        assert!(
            run.stdout.contains("number of failed transactions: 0"),
            "{mode}: {}",
            run.stdout
        );
        if mode == "simple" {
            // Values sent inline: after each session's first transaction,
            // its statements are analysed by shape, not parsed.
            let metrics = stack.agent.ctx.metrics.render();
            let by_shape: u64 = metrics
                .lines()
                .find_map(|l| l.strip_prefix("palisade_analyses_by_shape_total "))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            assert!(by_shape >= 4 * 40 * 5, "{by_shape}\n{metrics}");
        }
    }
}

#[tokio::test]
async fn tokio_postgres_prepared_binary_pipelined_copy_and_cancel() {
    let stack = Stack::start().await.unwrap();
    let ci = stack.connect(&stack.ci_token().unwrap()).await.unwrap();

    // Prepared statements, binary results.
    let stmt = ci
        .prepare("SELECT id, total, day FROM orders WHERE id = $1")
        .await
        .unwrap();
    for id in 1..=5i32 {
        let row = ci.query_one(&stmt, &[&id]).await.unwrap();
        let got: i32 = row.get(0);
        assert_eq!(got, id);
    }

    // Pipelined: several queries in flight at once.
    let queries = (1..=20i32).map(|id| {
        let ci = &ci;
        let stmt = &stmt;
        async move { ci.query_one(stmt, &[&id]).await.map(|r| r.get::<_, i32>(0)) }
    });
    let ids = futures::future::try_join_all(queries).await.unwrap();
    assert_eq!(ids, (1..=20).collect::<Vec<_>>());

    // A refused statement inside a pipeline fails alone; the rest succeed.
    let (a, b, c) = tokio::join!(
        ci.query_one("SELECT 1::int", &[]),
        ci.execute("DELETE FROM orders WHERE id = $1", &[&3i32]),
        ci.query_one("SELECT 2::int", &[]),
    );
    assert_eq!(a.unwrap().get::<_, i32>(0), 1);
    assert_eq!(
        b.unwrap_err().as_db_error().unwrap().code(),
        &SqlState::INSUFFICIENT_PRIVILEGE
    );
    assert_eq!(c.unwrap().get::<_, i32>(0), 2);

    // COPY in and out.
    let sink = ci
        .copy_in("COPY migrations_tmp.backfill (id) FROM STDIN")
        .await
        .unwrap();
    pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"7001\n7002\n"))
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);
    let stream = ci
        .copy_out("COPY (SELECT id FROM orders WHERE id <= 2 ORDER BY id) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    assert_eq!(chunks.concat(), b"1\n2\n");

    // Cancel: a long query is cancelled through the agent's key.
    let token = ci.cancel_token();
    let slow = ci.simple_query("SELECT pg_sleep(30)");
    let cancel = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        token
            .cancel_query(integration::clients::tls_connector(&stack.agent.ca).unwrap())
            .await
            .unwrap();
    };
    let (result, ()) = tokio::join!(slow, cancel);
    let e = result.unwrap_err();
    assert_eq!(
        e.as_db_error().unwrap().code(),
        &SqlState::QUERY_CANCELED,
        "{e:?}"
    );
    ci.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn psycopg_with_pipeline_mode() {
    let stack = Stack::start().await.unwrap();
    let conninfo = stack.agent.libpq_conninfo(&stack.ci_token().unwrap());
    let script = r#"
import sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM orders WHERE id > %s", (10,))
        print("count", cur.fetchone()[0])
        cur.execute("INSERT INTO migrations_tmp.backfill VALUES (%s)", (4242,))
    conn.commit()
    with conn.pipeline():
        cur = conn.cursor()
        cur.execute("SELECT %s::int", (1,))
        cur2 = conn.cursor()
        cur2.execute("SELECT total FROM orders WHERE id = %s", (5,))
    print("pipeline", cur.fetchone()[0], cur2.fetchone()[0])
    try:
        conn.execute("DELETE FROM orders WHERE id = %s", (1,))
    except psycopg.errors.InsufficientPrivilege as e:
        print("refused", e.sqlstate)
    conn.rollback()
    print("alive", conn.execute("SELECT 'yes'").fetchone()[0])
"#;
    let out = tokio::process::Command::new("python3")
        .args(["-c", script, &conninfo])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("count 90"), "{stdout}");
    assert!(stdout.contains("pipeline 1 50"), "{stdout}");
    assert!(stdout.contains("refused 42501"), "{stdout}");
    assert!(stdout.contains("alive yes"), "{stdout}");
}

#[tokio::test]
async fn upstream_tls_when_the_target_asks_for_it() {
    use integration::agent::{RunningAgent, agent_config, seed_example};
    use integration::postgres::{PostgresOptions, TestPostgres};
    use integration::stack::{Fixture, RunningPdp};
    use palisade_agent::config::UpstreamTls;

    let fixture = Fixture::new().unwrap();
    let pg = TestPostgres::start_with(PostgresOptions {
        ssl: true,
        ..PostgresOptions::default()
    })
    .await
    .unwrap();
    seed_example(&pg).await.unwrap();
    let pdp = RunningPdp::start(fixture.pdp_config()).await.unwrap();
    let mut config = agent_config(&fixture, &pdp.url(), &pg).unwrap();
    let target = config.targets.get_mut("prod").unwrap();
    target.tls = UpstreamTls::Require;
    target.ca = Some(pg.tls_ca_cert_path().unwrap().to_path_buf());
    target.tls_server_name = Some("localhost".to_owned());
    let agent = RunningAgent::start(config, fixture.certs.ca.cert.clone())
        .await
        .unwrap();
    let ci = integration::clients::connect(
        &agent.conninfo(&fixture.token("ci-job", &["ci-generated-code"]).unwrap()),
        &agent.ca,
    )
    .await
    .unwrap();
    // The agent's own backend is encrypted, as pg_stat_ssl shows.
    let rows = ci
        .simple_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .await
        .unwrap();
    let ssl = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(ssl.as_deref(), Some("t"));
}

/// libpq can hang on a result whose end sits in a TLS record larger than
/// its free buffer (see `palisade_agent::frontend::MAX_RECORD_BYTES`):
/// every record the agent sends a client fits.
#[tokio::test]
async fn tls_records_to_clients_fit_what_libpq_reads_at_once() {
    let stack = Stack::start().await.unwrap();
    let tap = integration::tap::Tap::start(stack.agent.addr)
        .await
        .unwrap();
    let conninfo = format!(
        "host=localhost port={} dbname=prod user=ci password={} sslmode=require",
        tap.addr.port(),
        stack.dba_token().unwrap()
    );
    let client = integration::clients::connect(&conninfo, &stack.agent.ca)
        .await
        .unwrap();
    let rows = client
        .query(
            "SELECT repeat('x', 2000) AS filler FROM generate_series(1, 2000)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2000);
    drop(client);

    // The answer to SSLRequest, then TLS records: type, version, length.
    let wire = tap.received();
    assert_eq!(wire.first(), Some(&b'S'));
    let (mut at, mut records, mut largest) = (1, 0, 0);
    while let Some(&[_, _, _, hi, lo]) = wire.get(at..at + 5) {
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        largest = largest.max(len);
        records += 1;
        at += 5 + len;
    }
    assert!(records > 400, "{records} records for 4 MB of rows");
    // TLS 1.3 adds a content-type byte and a 16-byte tag to the plaintext;
    // libpq always has 8 KiB free for it.
    let plaintext = largest - 17;
    assert!(
        plaintext <= 8192,
        "a TLS record with {plaintext} bytes of plaintext"
    );
}
