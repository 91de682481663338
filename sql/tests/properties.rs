//! Property tests of `palisade_sql::analyze`: no input makes it panic, it
//! is deterministic, and each statement of a string says the same on its
//! own (kind, relations read and written), so a statement cannot hide what
//! it does behind its neighbours.

use palisade_sql::{StatementKind, analyze};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// SQL-ish tokens, so most strings get past the grammar.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "SELECT",
            "*",
            "FROM",
            "orders",
            "public.orders",
            "WHERE",
            "id",
            "=",
            "1",
            ",",
            "(",
            ")",
            ";",
            "DELETE",
            "UPDATE",
            "SET",
            "INSERT",
            "INTO",
            "VALUES",
            "WITH",
            "AS",
            "RETURNING",
            "JOIN",
            "ON",
            "UNION",
            "ALL",
            "LIMIT",
            "COPY",
            "TO",
            "STDOUT",
            "DROP",
            "TABLE",
            "TRUNCATE",
            "CREATE",
            "VIEW",
            "v",
            "t",
            "x",
            "'lit'",
            "$1",
            "/* c */",
            "-- c\n",
            "pg_read_file",
            "count",
            "sum",
            "customers",
            "email",
            "ssn",
            "EXPLAIN",
            "PREPARE",
            "p",
            "EXECUTE",
            "BEGIN",
            "COMMIT",
            "DO",
            "$$ BEGIN END $$",
            "LATERAL",
            "search_path",
            "SHOW",
            "::text",
            "ARRAY[",
            "]",
        ])
        .prop_map(str::to_owned),
        "[a-z_][a-z0-9_]{0,6}",
        "[0-9]{1,4}",
    ]
}

fn sqlish() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 0..24).prop_map(|t| t.join(" "))
}

/// Statements that do parse, to combine into multi-statement strings.
fn statement() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "SELECT 1",
        "SELECT * FROM orders WHERE id = 1",
        "DELETE FROM orders WHERE id = 2",
        "UPDATE public.orders SET total = 0 WHERE id = 3",
        "INSERT INTO migrations_tmp.t SELECT * FROM customers",
        "WITH d AS (DELETE FROM payments RETURNING *) SELECT * FROM d",
        "SELECT email, upper(ssn) FROM customers c JOIN orders o ON o.id = c.id",
        "COPY (SELECT * FROM customers) TO STDOUT",
        "DROP TABLE reporting.daily",
        "EXPLAIN ANALYZE DELETE FROM orders",
        "CREATE VIEW v AS SELECT * FROM customers",
        "TRUNCATE orders",
        "SELECT pg_read_file('/etc/passwd')",
    ])
    .prop_map(str::to_owned)
}

fn check(sql: &str) -> Result<(), TestCaseError> {
    let first = analyze(sql, &["public"]);
    let second = analyze(sql, &["public"]);
    prop_assert_eq!(&first, &second);
    let Ok(statements) = first else {
        return Ok(());
    };
    prop_assert!(!statements.is_empty());
    for s in &statements {
        prop_assert!(
            sql.contains(s.text.as_str()),
            "{:?} is not in {:?}",
            s.text,
            sql
        );
    }
    if statements.len() < 2 || statements.iter().any(|s| s.sets_search_path.is_some()) {
        return Ok(());
    }
    for s in &statements {
        let alone = analyze(&s.text, &["public"]);
        prop_assert!(alone.is_ok(), "{:?} alone: {:?}", s.text, alone);
        let alone = alone.unwrap_or_default();
        if let [one] = alone.as_slice() {
            prop_assert_eq!(one.attributes.kind, s.attributes.kind);
            prop_assert_eq!(&one.attributes.writes, &s.attributes.writes);
            prop_assert_eq!(&one.attributes.reads, &s.attributes.reads);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_never_panics(sql in "\\PC{0,64}") {
        check(&sql)?;
    }

    #[test]
    fn sqlish_text_is_consistent(sql in sqlish()) {
        check(&sql)?;
    }

    #[test]
    fn multi_statement_strings_say_the_same_per_statement(
        parts in prop::collection::vec(statement(), 1..4),
        sep in prop::sample::select(vec![";", " ; ", ";\n", "; /* x */ "]),
    ) {
        let sql = parts.join(sep);
        check(&sql)?;
        // A write anywhere in the string shows up as a write of its statement.
        let statements = analyze(&sql, &["public"]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(statements.len(), parts.len());
        for (s, part) in statements.iter().zip(&parts) {
            if part.starts_with("DELETE") || part.starts_with("UPDATE") {
                prop_assert!(!s.attributes.writes.is_empty(), "{}", part);
                prop_assert!(matches!(s.attributes.kind, StatementKind::Delete | StatementKind::Update));
            }
        }
    }
}
