//! Just-in-time credentials on a real PostgreSQL: a minted session role has
//! only the granted privileges (the database itself refuses the rest), lives
//! at most until its deadline, admits one connection, disappears at session
//! end leaving its objects to the granted role, and is reaped after a crash.
//! Its password appears in no `Debug` output, error or server log.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test on a broken assumption"
)]

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use integration::postgres::TestPostgres;
use palisade_agent::credentials::{AdminConfig, CredentialError, Minter, SessionRole};

const READER: &str = "palisade_ci_reader";
const MIGRATOR: &str = "palisade_migrator";

/// A cluster with a readable public table, the reader role and the migrator
/// role (USAGE, CREATE on `migrations_tmp`).
async fn cluster() -> TestPostgres {
    let pg = TestPostgres::start().await.unwrap();
    pg.psql(
        "postgres",
        "CREATE TABLE public.t(x int); INSERT INTO public.t VALUES (1), (2);
         CREATE ROLE palisade_ci_reader NOLOGIN;
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO palisade_ci_reader;
         CREATE SCHEMA migrations_tmp;
         CREATE ROLE palisade_migrator NOLOGIN;
         GRANT USAGE, CREATE ON SCHEMA migrations_tmp TO palisade_migrator;",
    )
    .await
    .unwrap();
    pg
}

fn admin(pg: &TestPostgres, max_lifetime: Duration) -> AdminConfig {
    AdminConfig {
        host: pg.host().to_owned(),
        port: pg.port(),
        database: "postgres".to_owned(),
        user: pg.superuser().to_owned(),
        password: pg.superuser_password().to_owned(),
        max_lifetime,
    }
}

async fn minter(pg: &TestPostgres, agent_id: &str) -> Minter {
    Minter::connect(admin(pg, Duration::from_secs(3600)), agent_id)
        .await
        .unwrap()
}

fn in_a_minute() -> SystemTime {
    SystemTime::now() + Duration::from_secs(60)
}

fn roles(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// Logs in as the session role over SCRAM (the cluster's only method).
async fn login(
    pg: &TestPostgres,
    role: &SessionRole,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(pg.host())
        .port(pg.port())
        .dbname("postgres")
        .user(&role.name)
        .password(role.password.expose());
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _closed = connection.await;
    });
    Ok(client)
}

async fn role_exists(pg: &TestPostgres, name: &str) -> bool {
    let count = pg
        .psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{name}'"),
        )
        .await
        .unwrap();
    count.trim() == "1"
}

async fn session_role_count(pg: &TestPostgres) -> usize {
    pg.psql(
        "postgres",
        "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'palisade\\_s\\_%'",
    )
    .await
    .unwrap()
    .trim()
    .parse()
    .unwrap()
}

fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.code().map(tokio_postgres::error::SqlState::code)
}

#[tokio::test]
async fn minted_role_has_only_the_granted_privileges() {
    let pg = cluster().await;
    let minter = minter(&pg, "agent-a").await;
    let session = "7f3c9a2e-1b4d-4c8e-9f00-aabbccddeeff";
    let role = minter
        .mint(session, &roles(&[READER]), in_a_minute())
        .await
        .unwrap();
    assert!(
        role.name.starts_with("palisade_s_7f3c9a2e1b4d_"),
        "{}",
        role.name
    );
    assert!(role.name.len() <= 63);
    assert_eq!(role.first_granted, READER);
    assert!(role.password.expose().len() >= 43);

    let client = login(&pg, &role).await.unwrap();
    let rows = client.query("SELECT x FROM public.t", &[]).await.unwrap();
    assert_eq!(rows.len(), 2);
    let who = client.query_one("SELECT current_user", &[]).await.unwrap();
    assert_eq!(who.get::<_, String>(0), role.name);
    // Defence in depth: the database refuses what the role lacks.
    let denied = client
        .execute("DELETE FROM public.t", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&denied), Some("42501"), "{denied:?}");
    let denied = client
        .execute("CREATE TABLE public.evil(x int)", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&denied), Some("42501"), "{denied:?}");
    let denied = client
        .execute("CREATE TABLE migrations_tmp.evil(x int)", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&denied), Some("42501"), "{denied:?}");

    // Attributes: login, inherit, nothing else; member of the reader only;
    // the server holds a SCRAM verifier, not the password.
    let attrs = pg
        .psql(
            "postgres",
            &format!(
                "SELECT rolcanlogin, rolinherit, rolsuper, rolcreaterole, rolcreatedb, \
                 rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil IS NOT NULL, \
                 left(rolpassword, 14) FROM pg_authid WHERE rolname = '{}'",
                role.name
            ),
        )
        .await
        .unwrap();
    assert_eq!(attrs.trim(), "t|t|f|f|f|f|f|1|t|SCRAM-SHA-256$");
    let members = pg
        .psql(
            "postgres",
            &format!(
                "SELECT string_agg(g.rolname, ',') FROM pg_auth_members m \
                 JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member \
                 WHERE r.rolname = '{}'",
                role.name
            ),
        )
        .await
        .unwrap();
    assert_eq!(members.trim(), READER);
    let comment = pg
        .psql(
            "postgres",
            &format!(
                "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = '{}'",
                role.name
            ),
        )
        .await
        .unwrap();
    let comment: serde_json::Value = serde_json::from_str(comment.trim()).unwrap();
    assert_eq!(comment["palisade_agent"], "agent-a");
    assert_eq!(comment["session"], session);
    assert!(comment["expires"].as_str().unwrap().ends_with('Z'));

    // Session end: the role's connection is ended and the role is gone.
    minter.retire(&role).await.unwrap();
    assert!(!role_exists(&pg, &role.name).await);
    assert!(client.simple_query("SELECT 1").await.is_err());
    assert!(login(&pg, &role).await.is_err());

    // The password was never sent: not even the statement log has it.
    let log = pg.log_contents().unwrap();
    assert!(
        log.contains(&role.name),
        "the role statements were not logged"
    );
    assert!(!log.contains(role.password.expose()));
}

#[tokio::test]
async fn objects_created_by_the_session_survive_retire() {
    let pg = cluster().await;
    let minter = minter(&pg, "agent-a").await;
    let role = minter
        .mint("0011223344556677", &roles(&[MIGRATOR]), in_a_minute())
        .await
        .unwrap();
    let client = login(&pg, &role).await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE migrations_tmp.m1(id int); INSERT INTO migrations_tmp.m1 VALUES (7)",
        )
        .await
        .unwrap();
    // Still connected at retire: retire ends the backend first.
    minter.retire(&role).await.unwrap();
    assert!(!role_exists(&pg, &role.name).await);
    let owner = pg
        .psql(
            "postgres",
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'migrations_tmp' AND tablename = 'm1'",
        )
        .await
        .unwrap();
    assert_eq!(owner.trim(), MIGRATOR);
    let rows = pg
        .psql("postgres", "SELECT id FROM migrations_tmp.m1")
        .await
        .unwrap();
    assert_eq!(rows.trim(), "7");
    // Retiring again is harmless.
    minter.retire(&role).await.unwrap();
}

#[tokio::test]
async fn a_second_concurrent_login_is_refused() {
    let pg = cluster().await;
    let minter = minter(&pg, "agent-a").await;
    let role = minter
        .mint("aa", &roles(&[READER, MIGRATOR]), in_a_minute())
        .await
        .unwrap();
    let first = login(&pg, &role).await.unwrap();
    let second = login(&pg, &role).await.unwrap_err();
    assert_eq!(sqlstate(&second), Some("53300"), "{second:?}");
    first.simple_query("SELECT 1").await.unwrap();
    drop(first);
    minter.retire(&role).await.unwrap();
}

#[tokio::test]
async fn an_expired_role_cannot_log_in() {
    let pg = cluster().await;
    let minter = minter(&pg, "agent-a").await;
    let role = minter
        .mint(
            "bb",
            &roles(&[READER]),
            SystemTime::now() + Duration::from_secs(2),
        )
        .await
        .unwrap();
    assert!(role.valid_until <= SystemTime::now() + Duration::from_secs(2));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refused = login(&pg, &role).await.unwrap_err();
    assert_eq!(sqlstate(&refused), Some("28P01"), "{refused:?}");
    minter.retire(&role).await.unwrap();

    // The target's maximum lifetime caps a far deadline.
    let capped = Minter::connect(admin(&pg, Duration::from_secs(2)), "agent-a")
        .await
        .unwrap();
    let role = capped
        .mint(
            "cc",
            &roles(&[READER]),
            SystemTime::now() + Duration::from_secs(3600),
        )
        .await
        .unwrap();
    assert!(role.valid_until <= SystemTime::now() + Duration::from_secs(2));
    login(&pg, &role).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(login(&pg, &role).await.is_err());
    capped.retire(&role).await.unwrap();

    // A deadline already past mints nothing.
    let past = minter
        .mint(
            "dd",
            &roles(&[READER]),
            SystemTime::now() - Duration::from_secs(1),
        )
        .await
        .unwrap_err();
    assert!(matches!(past, CredentialError::DeadlinePassed), "{past:?}");
    assert_eq!(session_role_count(&pg).await, 0);
}

#[tokio::test]
async fn fifty_concurrent_sessions_create_and_clean_up_fifty_roles() {
    let pg = cluster().await;
    let minter = minter(&pg, "agent-a").await;
    let mints = (0..50).map(|i| {
        let minter = minter.clone();
        tokio::spawn(async move {
            minter
                .mint(&format!("{i:032x}"), &roles(&[READER]), in_a_minute())
                .await
        })
    });
    let mut minted = Vec::new();
    for m in futures::future::join_all(mints).await {
        minted.push(m.unwrap().unwrap());
    }
    let names: HashSet<&str> = minted.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), 50);
    assert_eq!(session_role_count(&pg).await, 50);
    // Every one of them works.
    let logins = minted.iter().map(|r| login(&pg, r));
    for c in futures::future::join_all(logins).await {
        c.unwrap()
            .query_one("SELECT count(*) FROM public.t", &[])
            .await
            .unwrap();
    }
    let retires = minted.into_iter().map(|r| {
        let minter = minter.clone();
        tokio::spawn(async move { minter.retire(&r).await })
    });
    for r in futures::future::join_all(retires).await {
        r.unwrap().unwrap();
    }
    assert_eq!(session_role_count(&pg).await, 0);
}

#[tokio::test]
async fn reap_removes_only_this_agents_dead_sessions() {
    let pg = cluster().await;
    let mine = minter(&pg, "agent-a").await;
    let theirs = minter(&pg, "agent-b").await;
    let mut a = Vec::new();
    for i in 0..3 {
        a.push(
            mine.mint(&format!("a{i}"), &roles(&[MIGRATOR]), in_a_minute())
                .await
                .unwrap(),
        );
    }
    let b = theirs
        .mint("b0", &roles(&[READER]), in_a_minute())
        .await
        .unwrap();
    // A session of the crashed agent left an object behind, and a stray
    // role with our prefix but no comment exists.
    let client = login(&pg, &a[1]).await.unwrap();
    client
        .batch_execute("CREATE TABLE migrations_tmp.left_behind(x int)")
        .await
        .unwrap();
    pg.psql("postgres", "CREATE ROLE palisade_s_stray NOLOGIN")
        .await
        .unwrap();

    // The live agent never reaps roles it minted and still uses.
    assert!(mine.reap(&HashSet::new()).await.unwrap().is_empty());

    // The agent restarts (same id): everything but the live session goes.
    drop(mine);
    let restarted = minter(&pg, "agent-a").await;
    let live: HashSet<String> = [a[0].name.clone()].into_iter().collect();
    let mut removed = restarted.reap(&live).await.unwrap();
    removed.sort();
    let mut expected = vec![a[1].name.clone(), a[2].name.clone()];
    expected.sort();
    assert_eq!(removed, expected);
    assert!(role_exists(&pg, &a[0].name).await);
    assert!(role_exists(&pg, &b.name).await);
    assert!(role_exists(&pg, "palisade_s_stray").await);
    let owner = pg
        .psql(
            "postgres",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'left_behind'",
        )
        .await
        .unwrap();
    assert_eq!(owner.trim(), MIGRATOR);

    let removed = restarted.reap(&HashSet::new()).await.unwrap();
    assert_eq!(removed, vec![a[0].name.clone()]);
    assert!(role_exists(&pg, &b.name).await);
    assert!(restarted.reap(&HashSet::new()).await.unwrap().is_empty());
    theirs.retire(&b).await.unwrap();
    assert_eq!(session_role_count(&pg).await, 1); // the stray one
}

#[tokio::test]
async fn the_password_appears_in_no_debug_output_or_error() {
    let pg = cluster().await;
    let config = admin(&pg, Duration::from_secs(60));
    assert!(!format!("{config:?}").contains(pg.superuser_password()));
    let minter = Minter::connect(config, "agent-a").await.unwrap();
    assert!(!format!("{minter:?}").contains(pg.superuser_password()));
    let role = minter
        .mint("ee", &roles(&[READER]), in_a_minute())
        .await
        .unwrap();
    let password = role.password.expose().to_owned();
    let debug = format!("{role:?}");
    assert!(!debug.contains(&password), "{debug}");
    assert!(debug.contains("[redacted]"));
    assert_eq!(role.password.to_string(), "[redacted]");

    // Errors: a refused mint carries the server's reason, no secret.
    let err = minter
        .mint("ff", &roles(&["no_such_role"]), in_a_minute())
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("no_such_role"), "{text}");
    assert!(!text.contains("SCRAM-SHA-256"), "{text}");
    assert!(!text.contains(&password));
    assert_eq!(err.sqlstate(), Some("42704"));
    let err = minter.mint("ff", &[], in_a_minute()).await.unwrap_err();
    assert!(matches!(err, CredentialError::NoGrantedRoles));
    let err = minter
        .mint("ff", &roles(&["x\0y"]), in_a_minute())
        .await
        .unwrap_err();
    assert!(matches!(err, CredentialError::InvalidRoleName(_)));

    // A wrong admin password: the error names neither password.
    let mut wrong = admin(&pg, Duration::from_secs(60));
    wrong.password = "not-the-admin-password".to_owned();
    let err = Minter::connect(wrong, "agent-a").await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("not-the-admin-password"), "{text}");
    assert!(!text.contains(pg.superuser_password()), "{text}");
    assert_eq!(err.sqlstate(), Some("28P01"), "{text}");

    minter.retire(&role).await.unwrap();
    assert!(!pg.log_contents().unwrap().contains(&password));
}

#[tokio::test]
async fn the_minter_reconnects_after_a_database_restart() {
    let pg = cluster().await;
    let minter = minter(&pg, "agent-a").await;
    let role = minter
        .mint("1234", &roles(&[READER]), in_a_minute())
        .await
        .unwrap();
    pg.restart().await.unwrap();
    // The first call after the restart may see the broken connection...
    if minter.retire(&role).await.is_err() {
        // ...the next one reconnects.
        minter.retire(&role).await.unwrap();
    }
    assert!(!role_exists(&pg, &role.name).await);
}
