//! Property: a statement string the example policies refuse never yields an
//! upstream message. Generated DELETE/UPDATE/DROP/TRUNCATE/INSERT statements
//! on the production tables (random literals, comments, keyword case,
//! whitespace, and multi-statement strings that mix them with allowed
//! reads) go through a raw protocol client as CI; each must get SQLSTATE
//! 42501 and a ReadyForQuery, and none may reach PostgreSQL: every
//! generated statement carries a unique marker that must never appear in
//! the server's statement log (`log_statement = 'all'`), and the tables
//! keep their rows.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test on a broken assumption"
)]

use std::sync::atomic::{AtomicU32, Ordering};

use bytes::BytesMut;
use integration::agent::Stack;
use integration::raw::{RawClient, sqlstate, tags};
use palisade_agent::codec::write;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// A table the CI identity may read but not change.
fn table() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "orders",
        "public.orders",
        "\"public\".\"orders\"",
        "PUBLIC.ORDERS",
        "customers",
        "public.payments",
        "reporting.daily",
    ])
}

/// Keyword spelled in random case.
fn keyword(word: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<bool>(), word.len()).prop_map(move |upper| {
        word.chars()
            .zip(upper)
            .map(|(c, u)| {
                if u {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    })
}

/// Whitespace or a comment between tokens.
fn gap() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(" ".to_owned()),
        Just("\n\t ".to_owned()),
        Just(" /* x; DELETE */ ".to_owned()),
        Just(" -- c; SELECT 1\n".to_owned()),
        "[ \t\n]{1,4}",
    ]
}

fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i32>().prop_map(|n| n.to_string()),
        "[a-z0-9 ']{0,12}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
        Just("NULL".to_owned()),
        Just("$$dollar; quoted$$".to_owned()),
    ]
}

/// One statement the example policies refuse for CI, with `{m}` where the
/// marker goes (a comment).
fn refused() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            keyword("delete"),
            gap(),
            keyword("from"),
            gap(),
            table(),
            gap(),
            literal()
        )
            .prop_map(|(d, g1, f, g2, t, g3, l)| format!(
                "{d}{g1}{f}{g2}{t}{g3}WHERE id = {l} {{m}}"
            )),
        (keyword("update"), gap(), table(), gap(), literal()).prop_map(|(u, g1, t, g2, l)| {
            format!("{u}{g1}{t}{g2}SET id = id WHERE id::text = {l} {{m}}")
        }),
        (keyword("drop"), gap(), keyword("table"), gap(), table())
            .prop_map(|(d, g1, k, g2, t)| format!("{d}{g1}{k}{g2}{t} {{m}}")),
        (keyword("truncate"), gap(), table()).prop_map(|(k, g, t)| format!("{k}{g}{t} {{m}}")),
        (keyword("insert"), gap(), table(), literal()).prop_map(|(k, g, t, l)| {
            format!("{k}{g}INTO {t} SELECT * FROM {t} WHERE {l} IS NULL {{m}}")
        }),
        (table(), literal()).prop_map(|(t, l)| {
            format!(
                "WITH gone AS (DELETE FROM {t} WHERE id = {l} RETURNING *) SELECT * FROM gone {{m}}"
            )
        }),
        literal().prop_map(|l| format!("SELECT pg_read_file({l}) {{m}}")),
    ]
}

/// A query string: refused statements, possibly between allowed ones.
fn query_string() -> impl Strategy<Value = Vec<String>> {
    let allowed = prop_oneof![
        Just("SELECT 1".to_owned()),
        Just("SELECT count(*) FROM orders".to_owned()),
        Just("INSERT INTO migrations_tmp.backfill VALUES (7)".to_owned()),
    ];
    let part =
        prop_oneof![3 => refused().prop_map(|s| (true, s)), 1 => allowed.prop_map(|s| (false, s))];
    (
        refused(),
        prop::collection::vec(part, 0..3),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(first, rest, at)| {
            let mut parts: Vec<String> = rest.into_iter().map(|(_, s)| s).collect();
            parts.insert(at.index(parts.len() + 1), first);
            parts
        })
}

static MARKERS: AtomicU32 = AtomicU32::new(0);

#[test]
fn refused_statement_strings_never_reach_the_database() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stack = rt.block_on(Stack::start()).unwrap();
    let token = stack.ci_token().unwrap();
    let client = std::cell::RefCell::new(rt.block_on(async {
        let mut c = RawClient::tls(stack.agent.addr, &stack.agent.ca)
            .await
            .unwrap();
        let frames = c
            .startup(0, &[("user", "ci"), ("database", "prod")], &token)
            .await
            .unwrap();
        assert!(tags(&frames).ends_with('Z'), "startup: {}", tags(&frames));
        c
    }));
    let markers = std::cell::RefCell::new(Vec::new());
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&query_string(), |parts| {
            let sql = parts
                .iter()
                .map(|p| {
                    let m = format!(
                        "/* palisade-pt-{} */",
                        MARKERS.fetch_add(1, Ordering::Relaxed)
                    );
                    if p.contains("{m}") {
                        markers.borrow_mut().push(m.clone());
                    }
                    p.replace("{m}", &m)
                })
                .collect::<Vec<_>>()
                .join(";");
            let mut guard = client.borrow_mut();
            let client: &mut RawClient = &mut guard;
            let frames = rt.block_on(async {
                let mut out = BytesMut::new();
                write::query(&mut out, &sql).unwrap();
                client.send(&out).await.unwrap();
                client.until_ready().await.unwrap()
            });
            drop(guard);
            let errors: Vec<_> = frames.iter().filter(|f| f.tag() == b'E').collect();
            prop_assert_eq!(errors.len(), 1, "{}: {}", sql, tags(&frames));
            let code = sqlstate(errors[0]);
            prop_assert_eq!(code.as_deref(), Some("42501"), "{}", sql);
            prop_assert!(
                !frames.iter().any(|f| matches!(f.tag(), b'C' | b'D' | b'T')),
                "{}: {}",
                sql,
                tags(&frames)
            );
            let log = stack
                .pg
                .log_contents()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for m in markers.borrow().iter() {
                prop_assert!(
                    !log.contains(m.as_str()),
                    "`{}` reached the database: {}",
                    m,
                    sql
                );
            }
            Ok(())
        })
        .unwrap();
    assert!(markers.borrow().len() >= 64);
    let mut client = client.into_inner();
    // The production tables are whole.
    rt.block_on(async {
        let direct = stack.direct().await.unwrap();
        let n: i64 = direct
            .query_one("SELECT count(*) FROM public.orders", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 100);
        let tables: i64 = direct
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname IN ('public', 'reporting')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(tables, 4);
    });
    // And the log is the real one: an allowed statement shows up in it.
    let marker = "/* palisade-pt-allowed */";
    let frames = rt.block_on(async {
        let mut out = BytesMut::new();
        write::query(&mut out, &format!("SELECT 1 {marker}")).unwrap();
        client.send(&out).await.unwrap();
        client.until_ready().await.unwrap()
    });
    assert_eq!(tags(&frames), "TDCZ");
    let log = stack.pg.log_contents().unwrap();
    assert!(log.contains(marker));
}
