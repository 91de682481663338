//! The PostgreSQL audit store on a real PostgreSQL: the same conformance
//! suite as the embedded store, two replicas sharing one database, and
//! tampering with rows found by `verify`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test on a broken assumption"
)]

use integration::postgres::TestPostgres;
use palisade_pdp::audit::testkit::{self, encoded, session, statement};
use palisade_pdp::audit::{AuditStore, Broken, EncodedEvent, PostgresStore};
use palisade_proto::v1 as pb;

async fn store(pg: &TestPostgres) -> PostgresStore {
    PostgresStore::connect(&pg.connection_string("postgres"))
        .await
        .unwrap()
}

#[tokio::test]
async fn conformance() {
    let pg = TestPostgres::start().await.unwrap();
    let store = store(&pg).await;
    testkit::conformance(&store).await.unwrap();
}

#[tokio::test]
async fn replicas_share_one_database() {
    let pg = TestPostgres::start().await.unwrap();
    // Both create the schema at once.
    let conninfo = pg.connection_string("postgres");
    let (a, b) = tokio::join!(
        PostgresStore::connect(&conninfo),
        PostgresStore::connect(&conninfo)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    testkit::replicas(&a, &b).await.unwrap();

    // A restarted replica finds everything and continues the chains.
    let events = a.session_events("rep-shared", 0).await.unwrap();
    drop(a);
    let a = store(&pg).await;
    assert_eq!(a.session_events("rep-shared", 0).await.unwrap(), events);
    let next = statement("rep-shared", 2, 1, "select 2", pb::Effect::Allow);
    let acks = a.append(encoded([next])).await.unwrap();
    assert_eq!(testkit::acks(&acks), [("rep-shared".to_owned(), 2)]);
    assert!(b.verify(None).await.unwrap().intact());
}

fn broken(session_id: &str, sequence: u64, problem: &str) -> Option<Broken> {
    Some(Broken {
        session_id: session_id.into(),
        sequence,
        problem: problem.into(),
    })
}

#[tokio::test]
async fn tampered_rows_are_named() {
    let pg = TestPostgres::start().await.unwrap();
    let store = store(&pg).await;
    let db = pg.connect("postgres").await.unwrap();
    let events = session(
        "s",
        1000,
        "alice",
        "db",
        None,
        &[pb::Effect::Deny; 3],
        Some("client_terminated"),
    );
    store.append(encoded(events.clone())).await.unwrap();
    let other = session("t", 1001, "bob", "db", None, &[pb::Effect::Allow], None);
    store.append(encoded(other)).await.unwrap();
    assert!(store.verify(None).await.unwrap().intact());

    // Rewrite a denied statement as allowed.
    let mut edited = events[2].clone();
    if let Some(pb::audit_event::Event::Statement(s)) = &mut edited.event {
        s.effect = pb::Effect::Allow as i32;
    }
    let original: Vec<u8> = db
        .query_one(
            "SELECT payload FROM palisade_audit_events WHERE session_id = 's' AND sequence = 3",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let set_payload =
        "UPDATE palisade_audit_events SET payload = $1 WHERE session_id = 's' AND sequence = 3";
    db.execute(
        set_payload,
        &[&EncodedEvent::encode(edited).payload.as_ref()],
    )
    .await
    .unwrap();
    let report = store.verify(None).await.unwrap();
    assert_eq!(report.broken, broken("s", 3, "hash mismatch"));
    assert_eq!(store.verify(Some("t")).await.unwrap().broken, None);

    // A row that does not decode is named by its key.
    db.execute(set_payload, &[&vec![0xffu8; 7]]).await.unwrap();
    let report = store.verify(Some("s")).await.unwrap();
    let problem = report
        .broken
        .as_ref()
        .map(|b| (b.session_id.as_str(), b.sequence));
    assert_eq!(problem, Some(("s", 3)), "{report:?}");
    db.execute(set_payload, &[&original]).await.unwrap();
    assert!(store.verify(None).await.unwrap().intact());

    // Another event's payload moved into a row.
    let t2: Vec<u8> = db
        .query_one(
            "SELECT payload FROM palisade_audit_events WHERE session_id = 't' AND sequence = 2",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    db.execute(set_payload, &[&t2]).await.unwrap();
    assert_eq!(
        store.verify(None).await.unwrap().broken,
        broken(
            "s",
            3,
            "stored event is another one (session `t` sequence 2)"
        )
    );
    db.execute(set_payload, &[&original]).await.unwrap();

    // A deleted row in the middle, then at the end of a chain.
    db.execute(
        "DELETE FROM palisade_audit_events WHERE session_id = 's' AND sequence = 3",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        store.verify(None).await.unwrap().broken,
        broken("s", 3, "event missing (chain continues from 2 to 4)")
    );
    db.execute(
        "DELETE FROM palisade_audit_events WHERE session_id = 's' AND sequence >= 3",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        store.verify(None).await.unwrap().broken,
        broken("s", 3, "event missing (chain ends at 2, head at 5)")
    );
}
