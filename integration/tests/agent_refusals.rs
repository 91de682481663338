//! A refused statement never reaches the database: checked on the database
//! itself (rows still there, tables still there, nothing in the server log).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test on a broken assumption"
)]

use integration::agent::Stack;
use integration::database::count;
use tokio_postgres::error::SqlState;

fn code(e: &tokio_postgres::Error) -> Option<&SqlState> {
    e.as_db_error().map(|d| d.code())
}

async fn order_count(stack: &Stack) -> i64 {
    count(&stack.pg, "SELECT count(*) FROM public.orders")
        .await
        .unwrap()
}

#[tokio::test]
async fn refused_statements_never_reach_the_database() {
    let stack = Stack::start().await.unwrap();
    let ci = stack.connect(&stack.ci_token().unwrap()).await.unwrap();
    // Allowed reads work, through the simple and the extended protocol.
    let rows = ci
        .simple_query("SELECT count(*) FROM orders")
        .await
        .unwrap();
    assert!(!rows.is_empty());
    let n: i64 = ci
        .query_one("SELECT count(*) FROM orders WHERE id > $1", &[&0i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 100);

    let refused = [
        "DELETE FROM orders WHERE id = 1",
        "DeLeTe /* sneaky */ FROM public.orders WHERE id = 1",
        "delete--comment\nfrom \"public\".orders where id = 1",
        "WITH gone AS (DELETE FROM orders WHERE id = 1 RETURNING *) SELECT * FROM gone",
        "SELECT 1; DELETE FROM orders WHERE id = 1",
        "UPDATE orders SET total = 0 WHERE id = 1",
        "DROP TABLE orders",
        "TRUNCATE orders",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT id, pg_terminate_backend(pid) FROM pg_stat_activity",
        "COPY migrations_tmp.backfill FROM PROGRAM 'id'",
        "DO $$ BEGIN DELETE FROM public.orders; END $$",
        "SELEKT broken",
    ];
    for sql in refused {
        let e = ci.simple_query(sql).await.expect_err(sql);
        assert_eq!(
            code(&e),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {e:?}"
        );
        let message = e.as_db_error().unwrap().message().to_owned();
        assert!(
            message.starts_with("palisade: statement"),
            "{sql}: {message}"
        );
        // The connection stays usable.
        ci.simple_query("SELECT 1").await.unwrap();
    }
    // The same through the extended protocol (unnamed and named statements).
    let e = ci
        .execute("DELETE FROM orders WHERE id = $1", &[&1i32])
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    let e = ci
        .prepare("DELETE FROM orders WHERE id = $1")
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    // SQL-level PREPARE then EXECUTE: the PREPARE is decided as the DELETE.
    let e = ci
        .simple_query("PREPARE p AS DELETE FROM orders WHERE id = $1")
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    let e = ci.simple_query("EXECUTE p(1)").await.unwrap_err();
    assert_eq!(code(&e), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    ci.simple_query("SELECT 1").await.unwrap();

    // The database saw none of it.
    assert_eq!(order_count(&stack).await, 100);
    let direct = stack.direct().await.unwrap();
    let tables: i64 = direct
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'orders'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 1);
    let log = stack.pg.log_contents().unwrap();
    for needle in [
        "DELETE FROM orders",
        "DeLeTe",
        "pg_read_file",
        "PROGRAM 'id'",
        "pg_terminate_backend",
        "DROP TABLE orders",
        "SELEKT",
    ] {
        assert!(!log.contains(needle), "`{needle}` reached the database log");
    }
    // And the allowed statements did reach it.
    assert!(log.contains("SELECT count(*) FROM orders"));
}

/// Query strings over 4 KiB are parsed off the session thread
/// (`enforce::BLOCKING_ANALYSIS_BYTES`): decided the same, statement by
/// statement.
#[tokio::test]
async fn long_query_strings_are_decided_like_short_ones() {
    let stack = Stack::start().await.unwrap();
    let ci = stack.connect(&stack.ci_token().unwrap()).await.unwrap();
    let reads = "SELECT count(*) FROM orders WHERE id > 0;\n".repeat(120);
    assert!(reads.len() > 4096);
    let messages = ci.simple_query(&reads).await.unwrap();
    let rows = messages
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(rows, 120);

    let with_delete = format!("{reads}DELETE FROM orders WHERE id = 1;\n{reads}");
    let e = ci.simple_query(&with_delete).await.unwrap_err();
    assert_eq!(code(&e), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e:?}");
    let broken = format!("{reads}SELEKT broken;");
    let e = ci.simple_query(&broken).await.unwrap_err();
    assert_eq!(code(&e), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e:?}");
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("does not parse"),
        "{e:?}"
    );
    ci.simple_query("SELECT 1").await.unwrap();
    assert_eq!(order_count(&stack).await, 100);
}

#[tokio::test]
async fn a_refusal_in_a_transaction_aborts_it_on_both_sides() {
    let stack = Stack::start().await.unwrap();
    let ci = stack.connect(&stack.ci_token().unwrap()).await.unwrap();
    ci.simple_query("BEGIN").await.unwrap();
    ci.simple_query("INSERT INTO migrations_tmp.backfill VALUES (1000)")
        .await
        .unwrap();
    let e = ci
        .simple_query("DELETE FROM orders WHERE id = 2")
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    // Like after any error: the transaction is aborted until ROLLBACK.
    let e = ci.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(code(&e), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    ci.simple_query("ROLLBACK").await.unwrap();
    let n: i64 = stack
        .direct()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM migrations_tmp.backfill WHERE id = 1000",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        n, 0,
        "the insert of the aborted transaction must be rolled back"
    );
    ci.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn session_refusals_are_clear() {
    let stack = Stack::start().await.unwrap();
    // A stranger: 28000, naming why.
    let stranger = stack.fixture.token("intern", &["marketing"]).unwrap();
    let e = stack.connect(&stranger).await.unwrap_err();
    let e = e.downcast_ref::<tokio_postgres::Error>().unwrap();
    assert_eq!(
        code(e),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{e:?}"
    );
    // A bad token: 28P01.
    let e = stack.connect("not-a-token").await.unwrap_err();
    let e = e.downcast_ref::<tokio_postgres::Error>().unwrap();
    assert_eq!(code(e), Some(&SqlState::INVALID_PASSWORD), "{e:?}");
    // A token over plaintext is refused.
    let plain = format!(
        "host=localhost port={} dbname=prod user=ci password={} sslmode=disable",
        stack.agent.addr.port(),
        stack.ci_token().unwrap()
    );
    let Err(e) = tokio_postgres::connect(&plain, tokio_postgres::NoTls).await else {
        panic!("a token over plaintext was accepted");
    };
    assert_eq!(
        code(&e),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{e:?}"
    );
    // An unknown database.
    let other = stack
        .agent
        .conninfo(&stack.ci_token().unwrap())
        .replace("dbname=prod", "dbname=nope");
    let e = integration::clients::connect(&other, &stack.agent.ca)
        .await
        .unwrap_err();
    let e = e.downcast_ref::<tokio_postgres::Error>().unwrap();
    assert_eq!(code(e), Some(&SqlState::INVALID_CATALOG_NAME), "{e:?}");
}
