//! Approvals end to end: a statement that policy holds for a reviewer waits
//! in the agent while a reviewer approves or denies it with the `palisade`
//! command; the database is checked directly for what really ran.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test on a broken assumption"
)]

use std::time::{Duration, Instant};

use integration::agent::Stack;
use integration::approvals::{
    WebhookSink, approval_id_in, connect_with_notices, held_notice, palisade,
};
use integration::clients::run_pg_program;
use integration::database::{count, postgres_audit};
use integration::postgres::TestPostgres;
use integration::process_stack::PdpProcessStack;
use integration::raw::RawClient;
use integration::stack::RunningPdp;
use palisade_pdp::approvals::webhook::{WebhookConfig, WebhookFormat};
use palisade_pdp::approvals::{ApprovalStore, PostgresApprovals, testkit};
use palisade_proto::v1 as pb;
use pb::approval_service_client::ApprovalServiceClient;
use tokio_postgres::error::SqlState;

const HELD: &str = "DELETE FROM migrations_tmp.backfill";

async fn backfill_rows(pg: &TestPostgres) -> i64 {
    count(pg, "SELECT count(*) FROM migrations_tmp.backfill")
        .await
        .unwrap()
}

/// `palisade ARGS` at the PDP at `url` as bob, a dba who requested nothing:
/// a reviewer the example policies allow, so in these tests only the
/// approval's state can refuse his review.
async fn as_dba(stack: &Stack, url: &str, args: &[&str]) -> (bool, String) {
    let bob = stack.fixture.token("bob", &["dba"]).unwrap();
    palisade(&stack.fixture, url, &bob, args).await.unwrap()
}

fn webhook(url: &str, format: WebhookFormat) -> WebhookConfig {
    WebhookConfig {
        url: url.to_owned(),
        format,
        attempts: 4,
        backoff: Duration::from_millis(50),
        timeout: Duration::from_secs(2),
    }
}

/// A client of the CI identity with its notices.
async fn ci_client(
    stack: &Stack,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::error::DbError>,
) {
    connect_with_notices(
        &stack.agent.conninfo(&stack.ci_token().unwrap()),
        &stack.agent.ca,
    )
    .await
    .unwrap()
}

async fn state_of(stack: &Stack, url: &str, id: &str) -> String {
    let token = stack.dba_token().unwrap();
    let (ok, out) = palisade(&stack.fixture, url, &token, &["approvals", "show", id])
        .await
        .unwrap();
    assert!(ok, "{out}");
    out.lines()
        .find_map(|l| l.strip_prefix("state"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

async fn wait_for_state(stack: &Stack, id: &str, state: &str) {
    let url = stack.pdp.url();
    let started = Instant::now();
    loop {
        let now = state_of(stack, &url, id).await;
        if now == state {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "approval {id} is {now}, not {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `palisade replay SESSION` once the recording holds `wanted`.
async fn replay_containing(stack: &Stack, wanted: &[&str]) -> String {
    let url = stack.pdp.url();
    let token = stack.dba_token().unwrap();
    let started = Instant::now();
    loop {
        let (ok, list) = palisade(
            &stack.fixture,
            &url,
            &token,
            &["sessions", "list", "--repository", "acme/app"],
        )
        .await
        .unwrap();
        assert!(ok, "{list}");
        let mut last = String::new();
        for session in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if session.len() != 36 {
                continue;
            }
            let (_, out) = palisade(&stack.fixture, &url, &token, &["replay", session])
                .await
                .unwrap();
            if wanted.iter().all(|w| out.contains(w)) {
                return out;
            }
            last = out;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no replay shows {wanted:?}; last one:\n{last}\nsessions:\n{list}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_held_delete_is_approved_from_the_cli_and_runs_once() {
    let mut sink = WebhookSink::start(1).await.unwrap();
    let slack = WebhookSink::start(0).await.unwrap();
    let (json_url, slack_url) = (sink.url.clone(), slack.url.clone());
    let stack = Stack::start_configured(
        move |pdp, _| {
            pdp.approvals.webhooks = vec![
                webhook(&json_url, WebhookFormat::Json),
                webhook(&slack_url, WebhookFormat::Slack),
            ];
        },
        |_| {},
    )
    .await
    .unwrap();
    let mut slack = slack;
    assert_eq!(backfill_rows(&stack.pg).await, 10);
    let (ci, mut notices) = ci_client(&stack).await;
    let waiting = tokio::spawn(async move {
        let r = ci.simple_query(HELD).await;
        (ci, r)
    });

    // The client is told at once, and keeps waiting.
    let (id, notice) = held_notice(&mut notices).await.unwrap();
    assert!(
        notice.message().contains("needs the approval of dba"),
        "{notice:?}"
    );
    assert!(notice.message().contains("waiting until 20"), "{notice:?}");
    assert!(
        notice
            .hint()
            .unwrap_or_default()
            .contains(&format!("palisade approvals approve {id}")),
        "{notice:?}"
    );
    assert!(
        notice
            .detail()
            .unwrap_or_default()
            .contains("unbounded-write-needs-review"),
        "{notice:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the statement waits for its reviewer"
    );
    assert_eq!(backfill_rows(&stack.pg).await, 10, "nothing ran yet");

    // The webhooks: JSON (after one failed attempt, retried) and Slack.
    let first = sink.next().await.unwrap();
    let retried = sink.next().await.unwrap();
    assert_eq!(first, retried, "the failed delivery is retried");
    assert_eq!(first["statement"], HELD);
    assert_eq!(first["approval_id"], id.as_str());
    assert_eq!(
        first["ci"]["sha"],
        "4f1d2c0ffee4f1d2c0ffee4f1d2c0ffee4f1d2c0"
    );
    assert_eq!(first["ci"]["repository"], "acme/app");
    assert_eq!(first["ci"]["run_id"], "4242");
    assert_eq!(first["target"], "prod");
    assert_eq!(first["policies"][0], "unbounded-write-needs-review");
    assert!(
        first["principal"]["id"]
            .as_str()
            .unwrap()
            .ends_with("|ci-job-42")
    );
    assert!(
        first["commands"]["approve"]
            .as_str()
            .unwrap()
            .contains(&format!("palisade approvals approve {id}"))
    );
    let slack_body = slack.next().await.unwrap();
    let slack_text = slack_body.to_string();
    assert!(
        slack_body["text"].as_str().unwrap().contains("dba"),
        "{slack_text}"
    );
    assert!(slack_text.contains(HELD), "{slack_text}");
    assert!(slack_text.contains("4f1d2c0ffee"), "{slack_text}");
    assert!(
        slack_text.contains(&format!("palisade approvals deny {id}")),
        "{slack_text}"
    );

    // A reviewer finds it and approves it, in parallel, with the CLI.
    let url = stack.pdp.url();
    let reviewer = stack.fixture.token("bob", &["dba"]).unwrap();
    let (ok, list) = as_dba(&stack, &url, &["approvals", "list"]).await;
    assert!(ok && list.contains(&id) && list.contains(HELD), "{list}");
    let (ok, out) = as_dba(
        &stack,
        &url,
        &[
            "approvals",
            "approve",
            &id,
            "--reason",
            "sandbox cleanup is fine",
        ],
    )
    .await;
    assert!(ok, "{out}");
    let (ci, result) = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("released within 20 s")
        .unwrap();
    let messages = result.unwrap();
    assert!(
        messages
            .iter()
            .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::CommandComplete(10))),
        "the client sees its normal result: {messages:?}"
    );
    assert_eq!(
        backfill_rows(&stack.pg).await,
        0,
        "the approved statement ran"
    );
    assert_eq!(state_of(&stack, &url, &id).await, "consumed");

    // Single use, bound to the session and the text: the same approval
    // cannot run again, here or anywhere else.
    let mut api = ApprovalServiceClient::new(
        stack
            .pdp
            .channel(stack.fixture.agent_tls().unwrap())
            .await
            .unwrap(),
    );
    let approval = api
        .get_approval(pb::GetApprovalRequest {
            approval_id: id.clone(),
            reviewer_token: reviewer.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .approval
        .unwrap();
    for (session, statement, code) in [
        (
            approval.session_id.as_str(),
            HELD,
            tonic::Code::FailedPrecondition,
        ),
        (
            "0190c0de-0000-7000-8000-000000000000",
            HELD,
            tonic::Code::PermissionDenied,
        ),
        (
            approval.session_id.as_str(),
            "DELETE FROM public.orders",
            tonic::Code::PermissionDenied,
        ),
    ] {
        let e = api
            .consume_approval(pb::ConsumeApprovalRequest {
                approval_id: id.clone(),
                session_id: session.to_owned(),
                statement: statement.to_owned(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{session} {statement}: {e:?}");
    }
    // The next identical statement is held again: a new review.
    let again = tokio::spawn(async move { ci.simple_query(HELD).await });
    let (second, _) = held_notice(&mut notices).await.unwrap();
    assert_ne!(second, id);
    let (ok, out) = as_dba(
        &stack,
        &url,
        &["approvals", "deny", &second, "--reason", "once is enough"],
    )
    .await;
    assert!(ok, "{out}");
    let e = again.await.unwrap().unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));

    // Every step is on the session's record.
    let replay = replay_containing(
        &stack,
        &[
            &format!("APPROVAL pending   {id}"),
            &format!("APPROVAL approved  {id}  by https://dev.palisade.local|bob"),
            &format!("APPROVAL consumed  {id}"),
            &format!("approval {id}"),
            &format!("APPROVAL denied    {second}"),
        ],
    )
    .await;
    assert!(replay.contains("sandbox cleanup is fine"), "{replay}");
    println!("{replay}");
}

#[tokio::test]
async fn the_extended_protocol_waits_too() {
    let stack = Stack::start().await.unwrap();
    let (ci, mut notices) = ci_client(&stack).await;
    let waiting = tokio::spawn(async move {
        let r = ci
            .execute("UPDATE migrations_tmp.backfill SET id = $1", &[&7i32])
            .await;
        (ci, r)
    });
    let (id, _) = held_notice(&mut notices).await.unwrap();
    let (ok, out) = as_dba(&stack, &stack.pdp.url(), &["approvals", "approve", &id]).await;
    assert!(ok, "{out}");
    let (ci, result) = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result.unwrap(), 10);
    let sevens = count(
        &stack.pg,
        "SELECT count(*) FROM migrations_tmp.backfill WHERE id = 7",
    )
    .await
    .unwrap();
    assert_eq!(sevens, 10);
    // The approval covered one execution; the connection goes on.
    ci.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn psql_shows_the_notice_and_gets_its_result() {
    let stack = Stack::start().await.unwrap();
    let conninfo = stack.agent.libpq_conninfo(&stack.ci_token().unwrap());
    let pg_bin = stack.pg.bin_dir().to_owned();
    let psql = tokio::spawn(async move {
        run_pg_program(&pg_bin, "psql", &["-X", "-d", &conninfo, "-c", HELD], "").await
    });
    // The reviewer finds the pending approval and approves it.
    let url = stack.pdp.url();
    let started = Instant::now();
    let id = loop {
        let (ok, out) = as_dba(&stack, &url, &["approvals", "list", "--json"]).await;
        assert!(ok, "{out}");
        if let Some(line) = out.lines().next() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["statement"], HELD);
            assert_eq!(v["state"], "pending");
            break v["id"].as_str().unwrap().to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "nothing pending"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (ok, out) = as_dba(&stack, &url, &["approvals", "approve", &id]).await;
    assert!(ok, "{out}");
    let out = psql.await.unwrap().unwrap();
    assert!(out.success, "{out:?}");
    assert!(out.stdout.contains("DELETE 10"), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "WARNING:  palisade: statement held for review: approval {id}"
        )),
        "{out:?}"
    );
    assert!(out.stderr.contains("HINT:  a reviewer runs"), "{out:?}");
    assert_eq!(backfill_rows(&stack.pg).await, 0);
}

#[tokio::test]
async fn a_denied_statement_never_reaches_the_database() {
    // A webhook nobody listens on: its failure is logged and kept.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let stack = Stack::start_configured(
        move |pdp, _| {
            let mut hook = webhook(&dead, WebhookFormat::Json);
            hook.attempts = 2;
            pdp.approvals.webhooks = vec![hook];
        },
        |_| {},
    )
    .await
    .unwrap();
    let (ci, mut notices) = ci_client(&stack).await;
    let waiting = tokio::spawn(async move { ci.simple_query(HELD).await });
    let (id, _) = held_notice(&mut notices).await.unwrap();
    let started = Instant::now();
    loop {
        let (ok, out) = palisade(
            &stack.fixture,
            &stack.pdp.url(),
            &stack.dba_token().unwrap(),
            &["approvals", "show", &id],
        )
        .await
        .unwrap();
        assert!(ok, "{out}");
        if out.contains("notification failed: webhook http://127.0.0.1") {
            assert!(out.contains("after 2 attempts"), "{out}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reviewer = stack.fixture.token("carol", &["dba"]).unwrap();
    let (ok, out) = palisade(
        &stack.fixture,
        &stack.pdp.url(),
        &reviewer,
        &[
            "approvals",
            "deny",
            &id,
            "--reason",
            "not during the freeze",
        ],
    )
    .await
    .unwrap();
    assert!(ok, "{out}");
    let e = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e:?}");
    let message = e.as_db_error().unwrap().message().to_owned();
    assert!(
        message.contains("denied by https://dev.palisade.local|carol"),
        "{message}"
    );
    assert!(message.contains("not during the freeze"), "{message}");
    assert_eq!(backfill_rows(&stack.pg).await, 10);
    assert!(
        stack
            .pg
            .log_contents()
            .map_or(true, |log| !log.contains("DELETE FROM migrations_tmp")),
        "the database never saw the statement"
    );
    // On the record: requested, denied by whom and why, the failed webhook.
    let replay = replay_containing(
        &stack,
        &[
            &format!("APPROVAL pending   {id}"),
            &format!("APPROVAL denied    {id}  by https://dev.palisade.local|carol"),
            "not during the freeze",
            "(notification failed: webhook http://127.0.0.1",
        ],
    )
    .await;
    assert!(replay.contains(&format!("DENY  {HELD}")), "{replay}");
}

#[tokio::test]
async fn an_unreviewed_statement_expires() {
    // The policy's own timeout (@approval_timeout) beats the PDP default.
    let stack = Stack::start_configured(
        |pdp, _| {
            let file = pdp.policy_dir.join("guardrails.cedar");
            let text = std::fs::read_to_string(&file).unwrap().replace(
                "@approval(\"dba\")",
                "@approval(\"dba\")\n@approval_timeout(\"2s\")",
            );
            std::fs::write(&file, text).unwrap();
        },
        |_| {},
    )
    .await
    .unwrap();
    let (ci, mut notices) = ci_client(&stack).await;
    let started = Instant::now();
    let waiting = tokio::spawn(async move { ci.simple_query(HELD).await });
    let (id, _) = held_notice(&mut notices).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e:?}");
    let message = e.as_db_error().unwrap().message().to_owned();
    assert!(message.contains("expired"), "{message}");
    assert!(message.contains(&id), "{message}");
    assert_eq!(backfill_rows(&stack.pg).await, 10);
    assert_eq!(state_of(&stack, &stack.pdp.url(), &id).await, "expired");
    replay_containing(&stack, &[&format!("APPROVAL expired   {id}")]).await;
    // A late approval changes nothing.
    let (ok, out) = as_dba(&stack, &stack.pdp.url(), &["approvals", "approve", &id]).await;
    assert!(!ok, "{out}");
}

#[tokio::test]
async fn nobody_approves_their_own_request_or_one_outside_their_group() {
    let stack = Stack::start().await.unwrap();
    let alice = stack.dba_token().unwrap();
    let (dba, mut notices) = connect_with_notices(&stack.agent.conninfo(&alice), &stack.agent.ca)
        .await
        .unwrap();
    let waiting = tokio::spawn(async move { dba.simple_query("DELETE FROM public.orders").await });
    let (id, _) = held_notice(&mut notices).await.unwrap();
    let url = stack.pdp.url();

    let (ok, out) = palisade(&stack.fixture, &url, &alice, &["approvals", "approve", &id])
        .await
        .unwrap();
    assert!(!ok, "{out}");
    assert!(out.contains("nobody approves their own request"), "{out}");

    for (who, groups) in [
        ("ci-job-42", &["ci-generated-code"][..]),
        ("mallory", &["marketing"][..]),
    ] {
        let token = stack.fixture.token(who, groups).unwrap();
        let (ok, out) = palisade(&stack.fixture, &url, &token, &["approvals", "approve", &id])
            .await
            .unwrap();
        assert!(!ok, "{who}: {out}");
        assert!(out.contains("may not review"), "{who}: {out}");
    }
    // Outsiders do not even see it.
    let mallory = stack.fixture.token("mallory", &["marketing"]).unwrap();
    let (ok, out) = palisade(
        &stack.fixture,
        &url,
        &mallory,
        &["approvals", "list", "--all"],
    )
    .await
    .unwrap();
    assert!(ok && !out.contains(&id), "{out}");
    let (ok, out) = palisade(&stack.fixture, &url, &mallory, &["approvals", "show", &id])
        .await
        .unwrap();
    assert!(!ok, "{out}");
    // A forged or missing token is no reviewer at all.
    let (ok, out) = palisade(
        &stack.fixture,
        &url,
        "not-a-token",
        &["approvals", "approve", &id],
    )
    .await
    .unwrap();
    assert!(!ok, "{out}");

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "still waiting for a real reviewer");
    assert_eq!(state_of(&stack, &url, &id).await, "pending");
    let (ok, out) = as_dba(&stack, &url, &["approvals", "deny", &id, "--reason", "no"]).await;
    assert!(ok, "{out}");
    assert!(waiting.await.unwrap().is_err());
    let orders = count(&stack.pg, "SELECT count(*) FROM public.orders")
        .await
        .unwrap();
    assert_eq!(orders, 100);
}

#[tokio::test]
async fn a_client_that_leaves_or_cancels_withdraws_the_request() {
    let stack = Stack::start().await.unwrap();
    // Disconnect: a raw client sends the statement, sees the notice, and
    // closes its socket.
    let mut raw = RawClient::tls(stack.agent.addr, &stack.agent.ca)
        .await
        .unwrap();
    let frames = raw
        .startup(
            0,
            &[("user", "ci"), ("database", "prod")],
            &stack.ci_token().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(frames.last().map(|f| f.tag()), Some(b'Z'), "{frames:?}");
    let mut query = vec![b'Q'];
    query.extend_from_slice(&(i32::try_from(HELD.len()).unwrap() + 5).to_be_bytes());
    query.extend_from_slice(HELD.as_bytes());
    query.push(0);
    raw.send(&query).await.unwrap();
    let notice = raw.recv().await.unwrap();
    assert_eq!(notice.tag(), b'N');
    let id = approval_id_in(&String::from_utf8_lossy(notice.body())).unwrap();
    drop(raw);
    wait_for_state(&stack, &id, "withdrawn").await;

    // Cancel.
    let (ci, mut notices) = ci_client(&stack).await;
    let cancel = ci.cancel_token();
    let waiting = tokio::spawn(async move {
        let r = ci.simple_query(HELD).await;
        (ci, r)
    });
    let (id, _) = held_notice(&mut notices).await.unwrap();
    cancel
        .cancel_query(integration::clients::tls_connector(&stack.agent.ca).unwrap())
        .await
        .unwrap();
    let (ci, result) = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .unwrap()
        .unwrap();
    let e = result.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e:?}");
    wait_for_state(&stack, &id, "withdrawn").await;
    ci.simple_query("SELECT 1").await.unwrap();
    let replay = replay_containing(
        &stack,
        &[
            &format!("APPROVAL withdrawn {id}"),
            "the client cancelled the statement",
        ],
    )
    .await;
    assert!(replay.contains("canceling statement"), "{replay}");
    // The disconnected client's session is on record too.
    replay_containing(&stack, &["APPROVAL withdrawn", "the client disconnected"]).await;
    assert_eq!(backfill_rows(&stack.pg).await, 10);
    // A withdrawn approval cannot be approved any more.
    let (ok, out) = as_dba(&stack, &stack.pdp.url(), &["approvals", "approve", &id]).await;
    assert!(!ok, "{out}");
}

#[tokio::test]
async fn the_pdp_going_away_while_waiting_fails_closed() {
    let mut stack = PdpProcessStack::start().await.unwrap();
    let token = stack
        .fixture
        .token("ci-job-42", &["ci-generated-code"])
        .unwrap();
    let (ci, mut notices) = connect_with_notices(&stack.agent.conninfo(&token), &stack.agent.ca)
        .await
        .unwrap();
    let waiting = tokio::spawn(async move { ci.simple_query(HELD).await });
    let _ = held_notice(&mut notices).await.unwrap();
    stack.pdp.kill().await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("a clear error, not a hang")
        .unwrap()
        .unwrap_err();
    let message = e.as_db_error().unwrap().message().to_owned();
    assert!(message.contains("unreachable"), "{message}");
    assert_eq!(backfill_rows(&stack.pg).await, 10);
}

#[tokio::test]
async fn an_approval_on_one_replica_releases_a_statement_waiting_on_another() {
    let stack = Stack::start_configured(|pdp, pg| pdp.audit = postgres_audit(pg), |_| {})
        .await
        .unwrap();
    // Replica B: same store, its own port; the agent only knows replica A.
    let mut config = stack.fixture.pdp_config();
    config.audit = postgres_audit(&stack.pg);
    let replica_b = RunningPdp::start(config).await.unwrap();

    let (ci, mut notices) = ci_client(&stack).await;
    let waiting = tokio::spawn(async move { ci.simple_query(HELD).await });
    let (id, _) = held_notice(&mut notices).await.unwrap();
    let (ok, list) = as_dba(&stack, &replica_b.url(), &["approvals", "list"]).await;
    assert!(
        ok && list.contains(&id),
        "replica B sees the pending approval: {list}"
    );
    let (ok, out) = as_dba(&stack, &replica_b.url(), &["approvals", "approve", &id]).await;
    assert!(ok, "{out}");
    tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("released by the other replica")
        .unwrap()
        .unwrap();
    assert_eq!(backfill_rows(&stack.pg).await, 0);
    assert_eq!(state_of(&stack, &replica_b.url(), &id).await, "consumed");
    replica_b.stop().await;
}

#[tokio::test]
async fn the_postgres_store_passes_the_conformance_suite() {
    let pg = integration::postgres::TestPostgres::start().await.unwrap();
    let conninfo = pg.connection_string("postgres");
    let store = PostgresApprovals::connect(&conninfo).await.unwrap();
    testkit::conformance(&store).await.unwrap();
    // Two replicas racing on one approval: exactly one decision wins.
    let (a, b) = tokio::join!(
        PostgresApprovals::connect(&conninfo),
        PostgresApprovals::connect(&conninfo)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let approval = testkit::sample("race", "ci", "DELETE FROM race", Duration::from_secs(60));
    a.insert(approval.clone()).await.unwrap();
    let now = std::time::SystemTime::now();
    let approve =
        |x: &mut pb::Approval| palisade_pdp::approvals::transition::review(x, "bob", true, "", now);
    let deny = |x: &mut pb::Approval| {
        palisade_pdp::approvals::transition::review(x, "eve", false, "", now)
    };
    let (ra, rb) = tokio::join!(
        a.update(&approval.id, &approve),
        b.update(&approval.id, &deny),
    );
    assert!(ra.is_ok() != rb.is_ok(), "{ra:?} {rb:?}");
    let shared: std::sync::Arc<dyn ApprovalStore> = std::sync::Arc::new(a);
    testkit::one_decision_wins(shared).await.unwrap();
}
