//! The audit trail end to end: agent spool → PDP store → CLI. Nothing is
//! lost when the PDP is down or the agent is killed, nothing is stored
//! twice, secrets are redacted, and tampering is found.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test on a broken assumption"
)]

use std::time::Duration;

use bytes::Bytes;
use integration::agent::{AgentProcess, Stack, seed_example};
use integration::clients::run_pg_program;
use integration::database::postgres_audit;
use integration::ports::free_port;
use integration::postgres::TestPostgres;
use integration::stack::{Fixture, PdpProcess, RunningPdp, bin_dir, client_tls};
use palisade_pdp::audit::{AuditStore, GENESIS_HASH, SessionFilter, StoredEvent, chain_hash};
use palisade_proto::v1 as pb;
use pb::audit_service_client::AuditServiceClient;
use pb::session_service_client::SessionServiceClient;
use prost::Message as _;

async fn wait_for_session_end(store: &dyn AuditStore, expected: usize) -> Vec<pb::SessionSummary> {
    for _ in 0..100 {
        let sessions = store
            .list_sessions(&SessionFilter::default())
            .await
            .unwrap();
        let ended = sessions.iter().filter(|s| !s.end_reason.is_empty()).count();
        if ended >= expected {
            return sessions;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("sessions did not reach the store within 10 s");
}

fn statement_texts(events: &[palisade_pdp::audit::StoredEvent]) -> Vec<(i32, String)> {
    events
        .iter()
        .filter_map(|e| match &e.event.event {
            Some(pb::audit_event::Event::Statement(s)) => Some((s.effect, s.text.clone())),
            _ => None,
        })
        .collect()
}

async fn cli(fixture: &Fixture, pdp_url: &str, args: &[&str]) -> (bool, String) {
    let admin = fixture.certs.client("admin").unwrap();
    let out = tokio::process::Command::new(bin_dir().unwrap().join("palisade"))
        .args(args)
        .env("PALISADE_PDP", pdp_url)
        .env("PALISADE_CA", &fixture.certs.ca.cert)
        .env("PALISADE_CERT", &admin.paths.cert)
        .env("PALISADE_KEY", &admin.paths.key)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// How a test reaches into a store to change one stored byte.
enum Tamper {
    SegmentFile,
    PostgresRow,
}

#[tokio::test]
async fn sessions_are_recorded_replayed_and_verified_embedded() {
    let stack = Stack::start().await.unwrap();
    record_replay_verify(stack, Tamper::SegmentFile).await;
}

#[tokio::test]
async fn sessions_are_recorded_replayed_and_verified_postgres() {
    let stack = Stack::start_configured(|pdp, pg| pdp.audit = postgres_audit(pg), |_| {})
        .await
        .unwrap();
    record_replay_verify(stack, Tamper::PostgresRow).await;
}

async fn record_replay_verify(stack: Stack, tamper: Tamper) {
    // A psql session of the CI identity: a read, a refused delete, a write.
    let conninfo = stack.agent.libpq_conninfo(&stack.ci_token().unwrap());
    let script = "SELECT id FROM orders WHERE id <= 3;\nDELETE FROM orders WHERE id = 1;\nINSERT INTO migrations_tmp.backfill VALUES (5);\n";
    let out = run_pg_program(
        stack.pg.bin_dir(),
        "psql",
        &["-X", "-d", &conninfo, "-f", "-"],
        script,
    )
    .await
    .unwrap();
    assert!(
        out.stderr.contains("palisade: statement refused"),
        "{out:?}"
    );
    let dba = stack.connect(&stack.dba_token().unwrap()).await.unwrap();
    dba.simple_query("CREATE ROLE audit_probe LOGIN PASSWORD 'hunter2-secret'")
        .await
        .unwrap();
    dba.simple_query("ALTER ROLE audit_probe PASSWORD 'other-secret'")
        .await
        .unwrap();
    drop(dba);

    let store = stack.pdp.audit.clone();
    let sessions = wait_for_session_end(store.as_ref(), 2).await;
    let ci_session = sessions
        .iter()
        .find(|s| {
            s.principal
                .as_ref()
                .is_some_and(|p| p.id.ends_with("|ci-job-42"))
        })
        .expect("the ci session is listed");
    assert_eq!(ci_session.statements, 3, "{ci_session:?}");
    assert_eq!(ci_session.denied, 1, "{ci_session:?}");
    assert_eq!(ci_session.target, "prod");

    let events = store
        .session_events(&ci_session.session_id, 0)
        .await
        .unwrap();
    let sequences: Vec<u64> = events.iter().map(|e| e.event.sequence).collect();
    assert_eq!(
        sequences,
        (1..=sequences.len() as u64).collect::<Vec<_>>(),
        "no gaps"
    );
    let texts = statement_texts(&events);
    assert!(
        texts.contains(&(
            pb::Effect::Allow as i32,
            "SELECT id FROM orders WHERE id <= 3".to_owned()
        )),
        "{texts:?}"
    );
    assert!(
        texts.contains(&(
            pb::Effect::Deny as i32,
            "DELETE FROM orders WHERE id = 1".to_owned()
        )),
        "{texts:?}"
    );
    let select = events
        .iter()
        .find_map(|e| match &e.event.event {
            Some(pb::audit_event::Event::Statement(s)) if s.text.starts_with("SELECT id") => {
                Some(s.clone())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(select.rows, 3);
    assert_eq!(select.result_columns, ["id"]);
    assert!(
        select
            .determining_policies
            .contains(&"ci-read-production".to_owned())
    );

    // Role passwords never reach the store.
    for s in &sessions {
        for e in store.session_events(&s.session_id, 0).await.unwrap() {
            let text = format!("{:?}", e.event);
            assert!(
                !text.contains("hunter2-secret") && !text.contains("other-secret"),
                "{text}"
            );
        }
    }

    // The CLI: list, replay (with the token's CI claims), verify.
    let url = stack.pdp.url();
    let (ok, out) = cli(
        &stack.fixture,
        &url,
        &[
            "sessions",
            "list",
            "--denied-only",
            "--repository",
            "acme/app",
        ],
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains(&ci_session.session_id), "{out}");
    let (ok, out) = cli(&stack.fixture, &url, &["replay", &ci_session.session_id]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("ALLOW SELECT id FROM orders WHERE id <= 3"),
        "{out}"
    );
    assert!(
        out.contains("DENY  DELETE FROM orders WHERE id = 1"),
        "{out}"
    );
    assert!(out.contains("ci-no-writes-outside-sandbox"), "{out}");
    assert!(
        out.contains("repository=acme/app") && out.contains("sha=4f1d2c0ffee"),
        "{out}"
    );
    let (ok, out) = cli(&stack.fixture, &url, &["audit", "verify"]).await;
    assert!(ok && out.contains("intact"), "{out}");

    // Flipping one stored byte is found, and the event named.
    let denied = events
        .iter()
        .find(|e| matches!(&e.event.event, Some(pb::audit_event::Event::Statement(s)) if s.effect == pb::Effect::Deny as i32))
        .unwrap()
        .event
        .sequence;
    match tamper {
        Tamper::SegmentFile => {
            let dir = stack.fixture.dir.path().join("audit");
            let segment = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "log"))
                .unwrap();
            let mut bytes = std::fs::read(&segment).unwrap();
            let needle = b"DELETE FROM orders WHERE id = 1";
            let at = bytes
                .windows(needle.len())
                .position(|w| w == needle)
                .unwrap();
            bytes[at] ^= 0x01;
            std::fs::write(&segment, bytes).unwrap();
        }
        Tamper::PostgresRow => {
            let db = stack.pg.connect("audit").await.unwrap();
            let n = db
                .execute(
                    // The refused DELETE rewritten in place: the row still
                    // reads as the same event.
                    "UPDATE palisade_audit_events SET payload = overlay(payload placing 'X'::bytea from position('DELETE'::bytea in payload) for 1) WHERE session_id = $1 AND sequence = $2",
                    &[&ci_session.session_id, &i64::try_from(denied).unwrap()],
                )
                .await
                .unwrap();
            assert_eq!(n, 1);
        }
    }
    let (ok, out) = cli(&stack.fixture, &url, &["audit", "verify"]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("BROKEN") && out.contains(&ci_session.session_id),
        "{out}"
    );
    assert!(out.contains(&format!("event #{denied}")), "{out}");
    // A replay of the session does not pass the edited event off as
    // recorded: the store cannot read it back (a segment's checksum, a row
    // holding another event), or the replay finds that its bytes do not
    // match the chain (`sessions::tests` in the CLI).
    let (ok, out) = cli(&stack.fixture, &url, &["replay", &ci_session.session_id]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("event #{denied}"))
            || out.contains(&format!("sequence {denied}"))
            || out.contains("corrupt"),
        "{out}"
    );
}

#[tokio::test]
async fn nothing_is_lost_when_the_pdp_is_down_or_the_agent_is_killed() {
    let fixture = Fixture::new().unwrap();
    let pg = TestPostgres::start().await.unwrap();
    seed_example(&pg).await.unwrap();
    let pdp_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let mut pdp = PdpProcess::start(&fixture, pdp_addr).await.unwrap();
    let agent_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let spool = fixture.dir.path().join("agent-spool");
    let mut agent = AgentProcess::start(&fixture, &pdp.url(), &pg, agent_addr, &spool)
        .await
        .unwrap();
    let ca = fixture.certs.ca.cert.clone();
    let token = fixture.token("ci-job", &["ci-generated-code"]).unwrap();
    let ci = integration::clients::connect(&agent.conninfo(&token), &ca)
        .await
        .unwrap();
    ci.simple_query("SELECT count(*) FROM orders")
        .await
        .unwrap();

    // The PDP goes away; the session goes on (cached decision) and refusals
    // are recorded too. Events wait in the agent's spool.
    pdp.kill().await.unwrap();
    for _ in 0..5 {
        ci.simple_query("SELECT count(*) FROM orders")
            .await
            .unwrap();
    }
    let _ = ci.simple_query("SELECT 42").await.unwrap_err();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The agent is killed (SIGKILL: no drain, no flush) and started again on
    // the same spool; then the PDP comes back.
    agent.kill().await.unwrap();
    drop(ci);
    agent.restart().await.unwrap();
    pdp.restart().await.unwrap();

    // Everything recorded before the kill arrives once, in order, with an
    // intact chain.
    let mut listing = (false, String::new());
    for _ in 0..100 {
        listing = cli(&fixture, &pdp.url(), &["sessions", "list"]).await;
        if listing.0 && listing.1.contains("ci-job") {
            let id = listing
                .1
                .lines()
                .nth(1)
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or_default()
                .to_owned();
            let (_, replay) = cli(&fixture, &pdp.url(), &["replay", &id]).await;
            if replay.contains("DENY  SELECT 42") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, out) = listing;
    assert!(ok, "{out}");
    let id = out
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let (ok, replay) = cli(&fixture, &pdp.url(), &["replay", &id]).await;
    assert!(ok, "{replay}");
    assert_eq!(
        replay.matches("ALLOW SELECT count(*) FROM orders").count(),
        6,
        "{replay}"
    );
    assert_eq!(replay.matches("DENY  SELECT 42").count(), 1, "{replay}");
    assert_eq!(replay.matches("session started").count(), 1, "{replay}");
    let (ok, out) = cli(&fixture, &pdp.url(), &["audit", "verify", &id]).await;
    assert!(ok && out.contains("intact"), "{out}");
}

#[tokio::test]
async fn a_full_spool_refuses_statements_until_the_pdp_catches_up() {
    let fixture = Fixture::new().unwrap();
    let pg = TestPostgres::start().await.unwrap();
    seed_example(&pg).await.unwrap();
    let pdp_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let mut pdp = PdpProcess::start(&fixture, pdp_addr).await.unwrap();
    let mut config = integration::agent::agent_config(&fixture, &pdp.url(), &pg).unwrap();
    config.audit.spool.segment_bytes = 1024;
    config.audit.spool.max_bytes = 4096;
    let agent = integration::agent::RunningAgent::start(config, fixture.certs.ca.cert.clone())
        .await
        .unwrap();
    let token = fixture.token("ci-job", &["ci-generated-code"]).unwrap();
    let ci = integration::clients::connect(&agent.conninfo(&token), &agent.ca)
        .await
        .unwrap();
    ci.simple_query("SELECT count(*) FROM orders")
        .await
        .unwrap();
    pdp.kill().await.unwrap();

    // Cached statements run and are spooled until the cap; then refusals.
    let mut refused = None;
    for _ in 0..200 {
        match ci.simple_query("SELECT count(*) FROM orders").await {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("the spool never filled");
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code(), &tokio_postgres::error::SqlState::SYSTEM_ERROR);
    assert!(
        db.message().contains("audit spool is full"),
        "{}",
        db.message()
    );

    // The PDP comes back, acknowledges, and statements run again.
    pdp.restart().await.unwrap();
    let mut recovered = false;
    for _ in 0..100 {
        if ci.simple_query("SELECT count(*) FROM orders").await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "statements did not run again after the spool drained"
    );
}

/// A statement event of session `session`, claiming to come from `agent_id`.
fn raw_statement(session: &str, sequence: u64, agent_id: &str) -> pb::AuditEvent {
    pb::AuditEvent {
        session_id: session.to_owned(),
        sequence,
        agent_id: agent_id.to_owned(),
        event: Some(pb::audit_event::Event::Statement(pb::StatementExecuted {
            text: format!("SELECT {sequence}"),
            effect: pb::Effect::Allow.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The PDP's acknowledgement (or refusal) of one batch on a new call.
async fn send_batch(
    pdp: &RunningPdp,
    fixture: &Fixture,
    events: Vec<Bytes>,
) -> tonic::Result<Vec<pb::EventAck>> {
    let channel = pdp.channel(fixture.agent_tls().unwrap()).await.unwrap();
    let mut client = AuditServiceClient::new(channel);
    let request = futures::stream::iter([pb::StreamEventsRequest { events }]);
    let mut replies = client.stream_events(request).await?.into_inner();
    match replies.message().await? {
        Some(reply) => Ok(reply.acks),
        None => panic!("the call ended without an answer"),
    }
}

#[tokio::test]
async fn the_pdp_stores_events_as_sent_attributed_to_the_sending_agent() {
    let fixture = Fixture::new().unwrap();
    let pdp = RunningPdp::start(fixture.pdp_config()).await.unwrap();
    let agent = fixture.certs.agents[0].name.clone();
    let first = Bytes::from(raw_statement("raw", 1, "impostor").encode_to_vec());

    // One malformed event refuses the whole batch: nothing of it is stored.
    let refused = send_batch(
        &pdp,
        &fixture,
        vec![first.clone(), Bytes::from_static(&[0x0a, 0x05, b'r'])],
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("audit event 2 of 2 in the batch does not decode"),
        "{refused:?}"
    );
    assert!(pdp.audit.session_events("raw", 0).await.unwrap().is_empty());

    // The second event numbered the way the agent numbers them: sequence
    // appended after the rest (field 2 after field 11), which prost would
    // not write.
    let mut second = raw_statement("raw", 0, &agent).encode_to_vec();
    second.extend_from_slice(&[0x10, 2]);
    let second = Bytes::from(second);
    let acks = send_batch(&pdp, &fixture, vec![first.clone(), second.clone()])
        .await
        .unwrap();
    assert_eq!(
        acks,
        [pb::EventAck {
            session_id: "raw".into(),
            sequence: 2
        }]
    );

    let admin = fixture.certs.client("admin").unwrap();
    let admin_tls = client_tls(
        &fixture.certs.ca.cert,
        Some((&admin.paths.cert, &admin.paths.key)),
    )
    .unwrap();
    let mut sessions = SessionServiceClient::new(pdp.channel(admin_tls).await.unwrap());
    let mut replay = sessions
        .get_session_events(pb::GetSessionEventsRequest {
            session_id: "raw".into(),
            follow: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut previous = GENESIS_HASH;
    let mut stored = Vec::new();
    while let Some(reply) = replay.message().await.unwrap() {
        // Each link checks out from the payload alone, which decodes to the
        // event shown.
        let event = StoredEvent::try_from(reply).unwrap();
        assert_eq!(event.previous_hash, previous);
        assert_eq!(event.link_fault(), None);
        previous = chain_hash(&previous, &event.payload);
        stored.push(event);
    }
    assert_eq!(stored.len(), 2);
    // The agent's own bytes are kept as they are; the impostor's claim is
    // overridden by the name on the certificate, appended to its bytes.
    assert_eq!(stored[1].payload, second);
    assert!(stored[0].payload.starts_with(&first) && stored[0].payload != first);
    for event in &stored {
        assert_eq!(event.event.agent_id, agent);
    }
    assert!(pdp.audit.verify(Some("raw")).await.unwrap().intact());
    pdp.stop().await;
}
