//! The PDP over real mutual TLS on loopback: who may connect, what each bad
//! token is told, the example scenario's decisions, and live policy reloads.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test on a broken assumption"
)]

use std::time::Duration;

use integration::stack::{Fixture, RunningPdp, client_tls};
use palisade_cli::certs::{self, CertOptions};
use palisade_cli::token::DevClaims;
use palisade_proto::v1 as pb;
use pb::decision_service_client::DecisionServiceClient;
use tonic::transport::Channel;

fn open_request(token: &str, target: &str) -> pb::OpenSessionRequest {
    pb::OpenSessionRequest {
        token: token.to_owned(),
        target: target.to_owned(),
        client: Some(pb::ClientInfo {
            address: "127.0.0.1:50000".into(),
            application_name: "psql".into(),
            database_user: "ci".into(),
            tls: true,
            ..Default::default()
        }),
        grantable_roles: vec!["palisade_ci_reader".into(), "palisade_dba".into()],
        resume_session_id: String::new(),
    }
}

async fn open(
    client: &mut DecisionServiceClient<Channel>,
    token: &str,
) -> pb::open_session_response::Outcome {
    client
        .open_session(open_request(token, "prod"))
        .await
        .expect("open session rpc")
        .into_inner()
        .outcome
        .expect("an outcome")
}

fn refusal_code(outcome: &pb::open_session_response::Outcome) -> pb::RefusalCode {
    match outcome {
        pb::open_session_response::Outcome::Refused(r) => r.code(),
        pb::open_session_response::Outcome::Granted(g) => panic!("granted: {g:?}"),
    }
}

async fn decide(
    client: &mut DecisionServiceClient<Channel>,
    session: &str,
    sql: &str,
) -> pb::StatementDecision {
    let response = client
        .decide(pb::DecideRequest {
            subject: Some(pb::decide_request::Subject::SessionId(session.to_owned())),
            target: String::new(),
            statements: vec![pb::StatementInput {
                input: Some(pb::statement_input::Input::Sql(sql.to_owned())),
            }],
        })
        .await
        .expect("decide rpc")
        .into_inner();
    assert_eq!(response.decisions.len(), 1, "{sql}");
    response.decisions.into_iter().next().unwrap()
}

#[tokio::test]
async fn mutual_tls_admits_only_certificates_of_the_ca() {
    let fx = Fixture::new().unwrap();
    let pdp = RunningPdp::start(fx.pdp_config()).await.unwrap();

    // An agent certificate from the CA works.
    let mut client = pdp.decision_client(fx.agent_tls().unwrap()).await.unwrap();
    let token = fx.token("ci-job", &["ci-generated-code"]).unwrap();
    assert!(matches!(
        open(&mut client, &token).await,
        pb::open_session_response::Outcome::Granted(_)
    ));

    // No certificate: the handshake or the first call fails.
    let no_cert = client_tls(&fx.certs.ca.cert, None).unwrap();
    let refused = match pdp.channel(no_cert).await {
        Err(_) => true,
        Ok(channel) => DecisionServiceClient::new(channel)
            .open_session(open_request(&token, "prod"))
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate was served");

    // A certificate from another CA: refused the same way.
    let other = tempfile::tempdir().unwrap();
    let foreign = certs::init_dir(other.path(), &CertOptions::default()).unwrap();
    let agent = &foreign.agents[0].pdp_client;
    let foreign_tls = client_tls(&fx.certs.ca.cert, Some((&agent.cert, &agent.key))).unwrap();
    let refused = match pdp.channel(foreign_tls).await {
        Err(_) => true,
        Ok(channel) => DecisionServiceClient::new(channel)
            .open_session(open_request(&token, "prod"))
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from another CA was served");
    pdp.stop().await;
}

#[tokio::test]
async fn every_bad_token_gets_its_own_reason() {
    let fx = Fixture::new().unwrap();
    let pdp = RunningPdp::start(fx.pdp_config()).await.unwrap();
    let mut client = pdp.decision_client(fx.agent_tls().unwrap()).await.unwrap();

    let mut expired = DevClaims::new("ci-job", "palisade");
    expired.groups = vec!["ci-generated-code".into()];
    let past = std::time::SystemTime::now() - Duration::from_secs(3600);
    expired.issued_at = Some(past - Duration::from_secs(600));
    expired.not_before = Some(past - Duration::from_secs(600));
    expired.expires_at = Some(past);
    let expired = fx.issuer.mint(&expired).unwrap();

    let wrong_audience = fx
        .issuer
        .mint(&DevClaims::new("ci-job", "someone-else"))
        .unwrap();

    let mut future = DevClaims::new("ci-job", "palisade");
    let later = std::time::SystemTime::now() + Duration::from_secs(3600);
    future.not_before = Some(later);
    future.issued_at = Some(later);
    future.expires_at = Some(later + Duration::from_secs(600));
    let not_yet_valid = fx.issuer.mint(&future).unwrap();

    let mut other_issuer = DevClaims::new("ci-job", "palisade");
    other_issuer.issuer = Some("https://evil.example".into());
    let wrong_issuer = fx.issuer.mint(&other_issuer).unwrap();

    let good = fx.token("ci-job", &["ci-generated-code"]).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    // alg: none, the classic downgrade.
    let none_header = base64_url(br#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!("{none_header}.{}.", parts[1]);
    // A payload changed after signing: the signature no longer matches.
    let mut payload: serde_json::Value = serde_json::from_slice(&base64_decode(parts[1])).unwrap();
    payload["groups"] = serde_json::json!(["dba"]);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        base64_url(payload.to_string().as_bytes()),
        parts[2]
    );

    let cases = [
        ("expired", expired, pb::RefusalCode::TokenExpired),
        (
            "wrong audience",
            wrong_audience,
            pb::RefusalCode::TokenWrongAudience,
        ),
        (
            "not yet valid",
            not_yet_valid,
            pb::RefusalCode::TokenNotYetValid,
        ),
        (
            "wrong issuer",
            wrong_issuer,
            pb::RefusalCode::TokenWrongIssuer,
        ),
        ("alg none", unsigned, pb::RefusalCode::TokenUnsigned),
        (
            "bad signature",
            tampered,
            pb::RefusalCode::TokenBadSignature,
        ),
        (
            "garbage",
            "not-a-token".to_owned(),
            pb::RefusalCode::TokenMalformed,
        ),
    ];
    let mut messages = Vec::new();
    for (name, token, expected) in cases {
        let outcome = open(&mut client, &token).await;
        assert_eq!(refusal_code(&outcome), expected, "{name}");
        if let pb::open_session_response::Outcome::Refused(r) = outcome {
            assert!(!r.message.is_empty(), "{name}");
            assert!(
                !r.message.contains(&token),
                "{name}: the message echoes the token"
            );
            messages.push(r.message);
        }
    }
    let distinct: std::collections::BTreeSet<&String> = messages.iter().collect();
    assert_eq!(
        distinct.len(),
        messages.len(),
        "reasons must differ: {messages:#?}"
    );
    pdp.stop().await;
}

#[tokio::test]
async fn the_example_scenario_is_decided_with_policy_ids() {
    let fx = Fixture::new().unwrap();
    let pdp = RunningPdp::start(fx.pdp_config()).await.unwrap();
    let mut client = pdp.decision_client(fx.agent_tls().unwrap()).await.unwrap();

    // A stranger may not connect; the refusal names no session.
    let stranger = fx.token("intern", &["marketing"]).unwrap();
    assert_eq!(
        refusal_code(&open(&mut client, &stranger).await),
        pb::RefusalCode::ConnectDenied
    );

    let ci = fx.token("ci-job", &["ci-generated-code"]).unwrap();
    let pb::open_session_response::Outcome::Granted(grant) = open(&mut client, &ci).await else {
        panic!("ci must connect");
    };
    assert_eq!(grant.granted_roles, ["palisade_ci_reader"]);
    assert!(
        grant
            .determining_policies
            .contains(&"connect-ci".to_owned())
    );
    let principal = grant.principal.unwrap();
    assert_eq!(
        principal.claims.get("repository").map(String::as_str),
        Some("acme/app")
    );
    let session = grant.session_id;

    let cases: &[(&str, pb::Effect, &str)] = &[
        (
            "SELECT * FROM orders WHERE id = 1",
            pb::Effect::Allow,
            "ci-read-production",
        ),
        (
            "UPDATE orders SET total = 0 WHERE id = 1",
            pb::Effect::Deny,
            "ci-no-writes-outside-sandbox",
        ),
        (
            "CREATE TABLE migrations_tmp.t (id int)",
            pb::Effect::Allow,
            "ci-sandbox",
        ),
        (
            "DELETE FROM migrations_tmp.t",
            pb::Effect::RequireApproval,
            "unbounded-write-needs-review",
        ),
        (
            "DROP TABLE public.orders",
            pb::Effect::Deny,
            "no-drop-production",
        ),
        (
            "SELECT pg_read_file('/etc/passwd')",
            pb::Effect::Deny,
            "no-dangerous-functions",
        ),
        (
            "COPY migrations_tmp.t FROM PROGRAM 'id'",
            pb::Effect::Deny,
            "no-copy-program",
        ),
        (
            "DO $$ BEGIN NULL; END $$",
            pb::Effect::Deny,
            "ci-no-opaque-code",
        ),
    ];
    for (sql, effect, policy) in cases {
        let d = decide(&mut client, &session, sql).await;
        assert_eq!(d.effect(), *effect, "{sql}: {}", d.reason);
        assert!(
            d.determining_policies.iter().any(|p| p == policy),
            "{sql}: expected {policy}, got {:?}",
            d.determining_policies
        );
        assert!(!d.reason.is_empty(), "{sql}");
    }
    // Unparsable SQL is denied, with the parser's words.
    let d = decide(&mut client, &session, "SELEKT 1").await;
    assert_eq!(d.effect(), pb::Effect::Deny);
    assert!(d.reason.contains("does not parse"), "{}", d.reason);

    // Reading a table with classified columns comes with masks.
    let d = decide(&mut client, &session, "SELECT * FROM customers").await;
    assert_eq!(d.effect(), pb::Effect::Allow);
    let masked: Vec<String> = d
        .masks
        .iter()
        .map(|m| m.column.as_ref().unwrap().column.clone())
        .collect();
    assert!(
        masked.contains(&"ssn".to_owned()) && masked.contains(&"email".to_owned()),
        "{masked:?}"
    );
    pdp.stop().await;
}

#[tokio::test]
async fn policy_edits_apply_without_restart_and_broken_edits_keep_the_old_set() {
    let fx = Fixture::new().unwrap();
    let pdp = RunningPdp::start(fx.pdp_config()).await.unwrap();
    let mut client = pdp.decision_client(fx.agent_tls().unwrap()).await.unwrap();
    let mut status = pdp.policy_client(fx.agent_tls().unwrap()).await.unwrap();
    let ci = fx.token("ci-job", &["ci-generated-code"]).unwrap();
    let pb::open_session_response::Outcome::Granted(grant) = open(&mut client, &ci).await else {
        panic!("ci must connect");
    };
    let session = grant.session_id;
    let sql = "SELECT * FROM reporting.daily";
    assert_eq!(
        decide(&mut client, &session, sql).await.effect(),
        pb::Effect::Allow
    );
    let v1 = status
        .get_policy_status(pb::GetPolicyStatusRequest {})
        .await
        .unwrap()
        .into_inner();

    // A good edit: forbid reporting for CI. Picked up while the session lives.
    let extra = fx.policy_dir.join("edit.cedar");
    std::fs::write(
        &extra,
        "@id(\"no-reporting\")\n@reason(\"reporting is closed\")\nforbid(principal, action, resource in Palisade::Schema::\"prod/reporting\");\n",
    )
    .unwrap();
    let d = wait_for(|| async {
        let d = decide(&mut client.clone(), &session, sql).await;
        (d.effect() == pb::Effect::Deny).then_some(d)
    })
    .await;
    assert_eq!(d.determining_policies, ["no-reporting"]);
    let v2 = status
        .get_policy_status(pb::GetPolicyStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_ne!(v1.version, v2.version);
    assert!(v2.policy_ids.contains(&"no-reporting".to_owned()));

    // A broken edit: the last good set stays, and the status says where.
    std::fs::write(
        &extra,
        "@id(\"no-reporting\")\nforbid(principal, action, resource\n",
    )
    .unwrap();
    let rejected = wait_for(|| async {
        let s = status
            .clone()
            .get_policy_status(pb::GetPolicyStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        (!s.rejected_problems.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(rejected.version, v2.version);
    let problem = &rejected.rejected_problems[0];
    assert_eq!(problem.file, "edit.cedar");
    assert!(problem.line >= 2, "{problem:?}");
    assert_eq!(
        decide(&mut client, &session, sql).await.effect(),
        pb::Effect::Deny
    );
    pdp.stop().await;
}

async fn wait_for<T, F, Fut>(mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..100 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not reached within 10 s");
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}
