//! Just-in-time credentials through the agent: each session runs as a login
//! role made for it, with only the granted roles' privileges, and the role is
//! gone when the session ends.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test on a broken assumption"
)]

use std::time::Duration;

use integration::agent::Stack;
use palisade_agent::config::AdminConnection;
use tokio_postgres::error::SqlState;

#[tokio::test]
async fn sessions_run_as_their_own_short_lived_least_privilege_role() {
    let stack = Stack::start_with(|c| {
        let target = c.targets.get_mut("prod").unwrap();
        target.grantable_roles = vec![
            "palisade_ci_reader".to_owned(),
            "palisade_migrator".to_owned(),
        ];
        target.admin = Some(AdminConnection {
            user: target.user.clone(),
            password_file: target.password_file.clone(),
            password_env: None,
            max_lifetime: Duration::from_secs(3600),
        });
    })
    .await
    .unwrap();
    stack
        .pg
        .psql(
            "prod",
            "CREATE ROLE palisade_ci_reader;
             GRANT USAGE ON SCHEMA public, reporting TO palisade_ci_reader;
             GRANT SELECT ON ALL TABLES IN SCHEMA public, reporting TO palisade_ci_reader;
             CREATE ROLE palisade_migrator;
             GRANT USAGE, CREATE ON SCHEMA migrations_tmp TO palisade_migrator;",
        )
        .await
        .unwrap();

    let ci = stack.connect(&stack.ci_token().unwrap()).await.unwrap();
    let rows = ci.simple_query("SELECT current_user").await.unwrap();
    let role = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap();
    assert!(role.starts_with("palisade_s_"), "{role}");
    ci.simple_query("SELECT count(*) FROM orders")
        .await
        .unwrap();
    // Policy allows this insert; the database itself refuses it, because the
    // granted roles lack the privilege (defence in depth).
    let e = ci
        .simple_query("INSERT INTO migrations_tmp.backfill VALUES (1)")
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    assert!(
        !db.message().starts_with("palisade"),
        "the database refused it: {}",
        db.message()
    );
    ci.simple_query("CREATE TABLE migrations_tmp.made_by_ci (id int)")
        .await
        .unwrap();

    let direct = stack.direct().await.unwrap();
    let row = direct
        .query_one(
            "SELECT rolvaliduntil IS NOT NULL, rolconnlimit, rolsuper,
                    ARRAY(SELECT b.rolname::text FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid
                          WHERE m.member = r.oid ORDER BY 1)
             FROM pg_roles r WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the role expires");
    assert_eq!(row.get::<_, i32>(1), 1, "one connection");
    assert!(!row.get::<_, bool>(2));
    assert_eq!(
        row.get::<_, Vec<String>>(3),
        ["palisade_ci_reader", "palisade_migrator"]
    );

    drop(ci);
    let gone = role_disappears(&direct, &role).await;
    assert!(gone, "the session role outlived its session");
    let owner: String = direct
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE schemaname = 'migrations_tmp' AND tablename = 'made_by_ci'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        owner.starts_with("palisade_") && !owner.starts_with("palisade_s_"),
        "{owner}"
    );

    // The audit trail names the role, never its password (it never had it).
    let sessions = stack
        .pdp
        .audit
        .list_sessions(&palisade_pdp::audit::SessionFilter::default())
        .await
        .unwrap();
    let mut named = false;
    for s in sessions {
        for e in stack
            .pdp
            .audit
            .session_events(&s.session_id, 0)
            .await
            .unwrap()
        {
            if let Some(palisade_proto::v1::audit_event::Event::SessionStarted(st)) = &e.event.event
            {
                named |= st.database_role == role;
            }
        }
    }
    assert!(named, "session_started names the database role");

    // 50 concurrent sessions (opened ten at a time, then all open at once):
    // 50 distinct roles, all gone afterwards.
    let token = stack.ci_token().unwrap();
    let mut clients = Vec::new();
    for _ in 0..5 {
        let batch = futures::future::try_join_all((0..10).map(|_| stack.connect(&token)))
            .await
            .unwrap();
        clients.extend(batch);
    }
    let mut names = std::collections::BTreeSet::new();
    for c in &clients {
        let row = c.query_one("SELECT current_user::text", &[]).await.unwrap();
        names.insert(row.get::<_, String>(0));
    }
    assert_eq!(names.len(), 50);
    drop(clients);
    let mut left = i64::MAX;
    for _ in 0..200 {
        left = direct
            .query_one(
                "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'palisade\\_s\\_%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "session roles left behind");
}

#[tokio::test]
async fn roles_left_by_a_killed_agent_are_reaped_when_it_restarts() {
    use integration::agent::{AgentProcess, seed_example};
    use integration::ports::free_port;
    use integration::postgres::TestPostgres;
    use integration::stack::{Fixture, PdpProcess};

    let fixture = Fixture::new().unwrap();
    let pg = TestPostgres::start().await.unwrap();
    seed_example(&pg).await.unwrap();
    pg.psql(
        "prod",
        "CREATE ROLE palisade_ci_reader; GRANT USAGE ON SCHEMA public TO palisade_ci_reader;
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO palisade_ci_reader;",
    )
    .await
    .unwrap();
    let pdp_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let pdp = PdpProcess::start(&fixture, pdp_addr).await.unwrap();
    let agent_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let spool = fixture.dir.path().join("spool-jit");
    let password_file = fixture.dir.path().join("prod.password");
    let target = format!(
        "grantable_roles = [\"palisade_ci_reader\"]\n\n[targets.prod.admin]\nuser = \"{}\"\npassword_file = \"{}\"\n",
        pg.superuser(),
        password_file.display()
    );
    let mut agent =
        AgentProcess::start_with(&fixture, &pdp.url(), &pg, agent_addr, &spool, &target)
            .await
            .unwrap();
    let token = fixture.token("ci-job", &["ci-generated-code"]).unwrap();
    let ci = integration::clients::connect(&agent.conninfo(&token), &fixture.certs.ca.cert)
        .await
        .unwrap();
    let role: String = ci
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert!(role.starts_with("palisade_s_"), "{role}");

    // SIGKILL: the agent cannot remove the role; it is left behind.
    agent.kill().await.unwrap();
    drop(ci);
    let direct = pg.connect("prod").await.unwrap();
    let left: i64 = direct
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 1, "the killed agent's role is still there");

    // The restarted agent's reaper removes it.
    agent.restart().await.unwrap();
    let gone = role_disappears(&direct, &role).await;
    assert!(
        gone,
        "the reaper did not remove the role of the killed agent"
    );
}

/// Whether `role` is dropped within 10 s.
async fn role_disappears(direct: &tokio_postgres::Client, role: &str) -> bool {
    for _ in 0..100 {
        let n: i64 = direct
            .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&role])
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
