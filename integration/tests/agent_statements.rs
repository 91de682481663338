//! Statement forms work through the agent and are decided as what they are;
//! cached decisions follow policy edits; the metrics endpoint reports.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test on a broken assumption"
)]

use std::time::Duration;

use integration::agent::Stack;
use palisade_proto::v1 as pb;
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::error::SqlState;

fn values(messages: &[SimpleQueryMessage]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn statement_forms_work_and_are_decided_as_what_they_are() {
    let stack = Stack::start().await.unwrap();
    let ci = stack.connect(&stack.ci_token().unwrap()).await.unwrap();
    // SQL-level PREPARE / EXECUTE / DEALLOCATE of an allowed statement.
    ci.simple_query("PREPARE one(int) AS SELECT total FROM orders WHERE id = $1")
        .await
        .unwrap();
    assert_eq!(
        values(&ci.simple_query("EXECUTE one(3)").await.unwrap()),
        ["30"]
    );
    ci.simple_query("DEALLOCATE one").await.unwrap();
    let e = ci.simple_query("EXECUTE one(3)").await.unwrap_err();
    assert_eq!(
        e.as_db_error().unwrap().code(),
        &SqlState::INSUFFICIENT_PRIVILEGE
    );
    // Cursors in a transaction block.
    ci.simple_query("BEGIN").await.unwrap();
    ci.simple_query("DECLARE c CURSOR FOR SELECT id FROM orders ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        values(&ci.simple_query("FETCH 2 FROM c").await.unwrap()),
        ["1", "2"]
    );
    ci.simple_query("CLOSE c").await.unwrap();
    ci.simple_query("COMMIT").await.unwrap();
    // A cursor over a refused statement is refused.
    ci.simple_query("BEGIN").await.unwrap();
    let e = ci
        .simple_query("DECLARE d CURSOR FOR SELECT pg_read_file('/etc/passwd')")
        .await
        .unwrap_err();
    assert_eq!(
        e.as_db_error().unwrap().code(),
        &SqlState::INSUFFICIENT_PRIVILEGE
    );
    ci.simple_query("ROLLBACK").await.unwrap();
    // Writes and DDL in the sandbox, EXPLAIN, SET/SHOW.
    ci.simple_query("CREATE TABLE migrations_tmp.t (id int)")
        .await
        .unwrap();
    ci.simple_query("INSERT INTO migrations_tmp.t SELECT id FROM orders WHERE id < 5")
        .await
        .unwrap();
    ci.simple_query("EXPLAIN SELECT * FROM orders")
        .await
        .unwrap();
    ci.simple_query("SET statement_timeout = '5s'")
        .await
        .unwrap();
    assert_eq!(
        values(&ci.simple_query("SHOW statement_timeout").await.unwrap()),
        ["5s"]
    );
    // Identity changes are refused for CI.
    let e = ci.simple_query("SET ROLE postgres").await.unwrap_err();
    assert_eq!(
        e.as_db_error().unwrap().code(),
        &SqlState::INSUFFICIENT_PRIVILEGE
    );

    // DO and CALL: refused for CI, allowed for a dba (decided as code).
    let e = ci
        .simple_query("DO $$ BEGIN PERFORM 1; END $$")
        .await
        .unwrap_err();
    assert_eq!(
        e.as_db_error().unwrap().code(),
        &SqlState::INSUFFICIENT_PRIVILEGE
    );
    let dba = stack.connect(&stack.dba_token().unwrap()).await.unwrap();
    dba.simple_query("CREATE PROCEDURE migrations_tmp.bump() LANGUAGE sql AS $$ INSERT INTO migrations_tmp.backfill VALUES (77) $$")
        .await
        .unwrap();
    dba.simple_query("CALL migrations_tmp.bump()")
        .await
        .unwrap();
    dba.simple_query("DO $$ BEGIN PERFORM 1; END $$")
        .await
        .unwrap();
    let e = ci
        .simple_query("CALL migrations_tmp.bump()")
        .await
        .unwrap_err();
    assert_eq!(
        e.as_db_error().unwrap().code(),
        &SqlState::INSUFFICIENT_PRIVILEGE
    );
}

#[tokio::test]
async fn cached_decisions_follow_policy_edits_without_reconnecting() {
    let stack = Stack::start().await.unwrap();
    let ci = stack.connect(&stack.ci_token().unwrap()).await.unwrap();
    let sql = "SELECT revenue FROM reporting.daily";
    ci.simple_query(sql).await.unwrap();
    ci.simple_query(sql).await.unwrap();
    stack.close_reporting().unwrap();
    let mut refused = None;
    for _ in 0..50 {
        match ci.simple_query(sql).await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("the edit was not enforced within 5 s");
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    assert!(db.message().contains("close-reporting"), "{}", db.message());
    assert!(
        db.message().contains("closed for maintenance"),
        "{}",
        db.message()
    );
}

#[tokio::test]
async fn metrics_count_sessions_and_decisions() {
    let stack = Stack::start_with(|c| c.metrics_listen = Some(([127, 0, 0, 1], 0).into()))
        .await
        .unwrap();
    let ci = stack.connect(&stack.ci_token().unwrap()).await.unwrap();
    ci.simple_query("SELECT 1").await.unwrap();
    let _ = ci.simple_query("DELETE FROM orders").await;
    // Over HTTP, as Prometheus scrapes it.
    let addr = stack.agent.metrics_addr.expect("metrics listener");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    socket.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("palisade_sessions_active 1"), "{text}");
    assert!(
        text.contains("palisade_statements_total{decision=\"allow\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("palisade_statements_total{decision=\"deny\"} 1"),
        "{text}"
    );
    assert!(text.contains("palisade_decision_seconds_count"), "{text}");
}

/// Query strings that differ only in their literals (values sent inline)
/// reuse one analysis, yet each is decided, run and audited as itself; a
/// different statement never passes as a known shape.
#[tokio::test]
async fn literal_variants_reuse_one_analysis_and_keep_their_own_text() {
    let stack = Stack::start().await.unwrap();
    let ci = stack.connect(&stack.ci_token().unwrap()).await.unwrap();
    for id in 1..=5 {
        let rows = ci
            .simple_query(&format!("SELECT total FROM orders WHERE id = {id};"))
            .await
            .unwrap();
        assert_eq!(values(&rows), vec![(id * 10).to_string()]);
    }
    // Same text but for its keyword and table: a different shape, refused.
    let e = ci
        .simple_query("DELETE FROM orders WHERE id = 1")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    // A relation named by a literal is never taken from the shape cache.
    ci.simple_query("SELECT currval('pg_catalog.pg_class')")
        .await
        .ok();
    let metrics = stack.agent.ctx.metrics.render();
    assert!(
        metrics.contains("palisade_analyses_by_shape_total 4"),
        "{metrics}"
    );
    drop(ci);

    let texts: Vec<String> = stack
        .pdp
        .ended_statements(1)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.text)
        .collect();
    for id in 1..=5 {
        let text = format!("SELECT total FROM orders WHERE id = {id}");
        assert!(texts.contains(&text), "{text} in {texts:?}");
    }
}

/// A text of two statements: one decided before the policy edit (the
/// session's cache has it), one new. Asking the PDP about the new one
/// reveals the edit before the agent's own poll does; the cached one is
/// then decided again under the new policy, not forwarded on its old
/// decision.
#[tokio::test]
async fn a_policy_edit_seen_while_deciding_a_text_re_decides_its_cached_statements() {
    // The agent learns of the edit only from the PDP's answer.
    let stack = Stack::start_with(|c| c.pdp.policy_poll_interval = Duration::from_secs(3600))
        .await
        .unwrap();
    let ci = stack.connect(&stack.ci_token().unwrap()).await.unwrap();
    ci.simple_query("SELECT revenue FROM reporting.daily")
        .await
        .unwrap();
    let mut status = stack
        .pdp
        .policy_client(stack.fixture.agent_tls().unwrap())
        .await
        .unwrap();
    let version = |r: tonic::Response<pb::GetPolicyStatusResponse>| r.into_inner().version;
    let before = version(
        status
            .get_policy_status(pb::GetPolicyStatusRequest {})
            .await
            .unwrap(),
    );
    stack.close_reporting().unwrap();
    let mut reloaded = false;
    for _ in 0..100 {
        let now = version(
            status
                .get_policy_status(pb::GetPolicyStatusRequest {})
                .await
                .unwrap(),
        );
        if now != before {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "the PDP did not load the edit within 5 s");

    let e = ci
        .simple_query("SELECT revenue FROM reporting.daily; SELECT total FROM orders WHERE id = 1")
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    assert!(db.message().contains("close-reporting"), "{}", db.message());
}
