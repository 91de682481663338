//! The agent fails closed when the PDP is down, within a bounded time, and
//! recovers without clients reconnecting when it comes back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test on a broken assumption"
)]

use std::time::Duration;

use integration::process_stack::PdpProcessStack;
use tokio_postgres::error::SqlState;

/// Guards against a hang; the agent's own bound (2 s) is far below it.
const HANG: Duration = Duration::from_secs(20);

#[tokio::test]
async fn pdp_down_refuses_clearly_and_recovery_needs_no_reconnect() {
    // Bound in this order so they drop agent first, fixture last.
    let PdpProcessStack {
        fixture,
        pg: _pg,
        mut pdp,
        agent,
    } = PdpProcessStack::start().await.unwrap();
    let token = fixture.token("ci-job", &["ci-generated-code"]).unwrap();
    let conninfo = agent.conninfo(&token);
    let ci = integration::clients::connect(&conninfo, &agent.ca)
        .await
        .unwrap();
    ci.simple_query("SELECT count(*) FROM orders")
        .await
        .unwrap();

    pdp.kill().await.unwrap();

    // A statement decided before still runs from the cache.
    tokio::time::timeout(HANG, ci.simple_query("SELECT count(*) FROM orders"))
        .await
        .expect("no hang")
        .unwrap();
    // A new one is refused, clearly, and the connection stays usable.
    let e = tokio::time::timeout(HANG, ci.simple_query("SELECT id FROM orders WHERE id = 1"))
        .await
        .expect("no hang")
        .unwrap_err();
    let db = e.as_db_error().expect("a database error");
    assert_eq!(db.code(), &SqlState::SYSTEM_ERROR, "{db:?}");
    assert!(db.message().contains("policy service"), "{}", db.message());
    // A new session is refused at connect.
    let e = tokio::time::timeout(HANG, integration::clients::connect(&conninfo, &agent.ca))
        .await
        .expect("no hang")
        .unwrap_err();
    let e = e.downcast_ref::<tokio_postgres::Error>().unwrap();
    assert_eq!(
        e.as_db_error().map(|d| d.code()),
        Some(&SqlState::SYSTEM_ERROR),
        "{e:?}"
    );

    // The PDP comes back (it forgot its sessions): the same client goes on.
    pdp.restart().await.unwrap();
    let mut recovered = false;
    for _ in 0..50 {
        if ci
            .simple_query("SELECT id FROM orders WHERE id = 1")
            .await
            .is_ok()
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        recovered,
        "the session did not recover after the PDP came back"
    );
    // Policy is still enforced after recovery.
    let e = ci
        .simple_query("DELETE FROM orders WHERE id = 1")
        .await
        .unwrap_err();
    assert_eq!(
        e.as_db_error().unwrap().code(),
        &SqlState::INSUFFICIENT_PRIVILEGE
    );
    integration::clients::connect(&conninfo, &agent.ca)
        .await
        .unwrap();
}
