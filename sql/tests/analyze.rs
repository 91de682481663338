//! Request → expected-attributes cases for `palisade_sql::analyze`.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers: a failed assumption is a failed test"
)]

use palisade_sql::{
    AnalyzeError, Attributes, ColumnRef, CopyDirection, CopyFormat, CopyInfo, Relation, Statement,
    StatementKind, TransactionOp, analyze,
};

use StatementKind as K;

fn one_in(sql: &str, path: &[&str]) -> Statement {
    let mut statements = analyze(sql, path).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(statements.len(), 1, "{sql}");
    statements.remove(0)
}

fn one(sql: &str) -> Attributes {
    std::sync::Arc::unwrap_or_clone(one_in(sql, &[]).attributes)
}

fn names(relations: &[Relation]) -> Vec<String> {
    relations.iter().map(ToString::to_string).collect()
}

fn column(relation: Option<(&str, &str)>, column: &str) -> ColumnRef {
    ColumnRef {
        relation: relation.map(|(s, n)| Relation::new(s, n)),
        column: column.into(),
    }
}

/// `(sql, kind, reads, writes)` with the default search path (`public`).
const RELATION_CASES: &[(&str, StatementKind, &[&str], &[&str])] = &[
    ("SELECT * FROM users", K::Select, &["public.users"], &[]),
    (
        "SELECT * FROM app.users u JOIN app.orders o ON o.uid = u.id",
        K::Select,
        &["app.orders", "app.users"],
        &[],
    ),
    (
        "SELECT * FROM t WHERE id IN (SELECT tid FROM u WHERE EXISTS (SELECT 1 FROM w))",
        K::Select,
        &["public.t", "public.u", "public.w"],
        &[],
    ),
    (
        "SELECT (SELECT max(x) FROM s) FROM t, LATERAL (SELECT * FROM l WHERE l.id = t.id) q",
        K::Select,
        &["public.l", "public.s", "public.t"],
        &[],
    ),
    (
        "INSERT INTO t SELECT * FROM s",
        K::Insert,
        &["public.s"],
        &["public.t"],
    ),
    (
        "INSERT INTO t (a) VALUES ((SELECT x FROM secret))",
        K::Insert,
        &["public.secret"],
        &["public.t"],
    ),
    (
        "INSERT INTO t DEFAULT VALUES RETURNING (SELECT secret FROM s)",
        K::Insert,
        &["public.s"],
        &["public.t"],
    ),
    (
        "UPDATE t SET a = b.x FROM b WHERE t.id = b.id",
        K::Update,
        &["public.b"],
        &["public.t"],
    ),
    (
        "DELETE FROM t USING u WHERE t.id = u.id",
        K::Delete,
        &["public.u"],
        &["public.t"],
    ),
    (
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
        K::Merge,
        &["public.s"],
        &["public.t"],
    ),
    (
        "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
        K::Delete,
        &[],
        &["public.t"],
    ),
    (
        "WITH d AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM d",
        K::Delete,
        &[],
        &["public.a", "public.b"],
    ),
    (
        "WITH u AS (UPDATE a SET x = 1 WHERE y RETURNING *) SELECT * FROM u, b",
        K::Update,
        &["public.b"],
        &["public.a"],
    ),
    (
        "SELECT * FROM t FOR UPDATE",
        K::Select,
        &["public.t"],
        &["public.t"],
    ),
    (
        "SELECT * FROM t a JOIN u b ON a.id = b.id FOR UPDATE OF b",
        K::Select,
        &["public.t", "public.u"],
        &["public.u"],
    ),
    (
        "SELECT * FROM (SELECT * FROM t) sub FOR SHARE",
        K::Select,
        &["public.t"],
        &["public.t"],
    ),
    (
        "CREATE TABLE n AS SELECT * FROM t",
        K::Create,
        &["public.t"],
        &["public.n"],
    ),
    (
        "SELECT * INTO n FROM t",
        K::Create,
        &["public.t"],
        &["public.n"],
    ),
    (
        "CREATE MATERIALIZED VIEW mv AS SELECT * FROM t",
        K::Create,
        &["public.t"],
        &["public.mv"],
    ),
    (
        "CREATE VIEW v AS SELECT * FROM t",
        K::Create,
        &["public.t"],
        &["public.v"],
    ),
    ("COPY t FROM STDIN", K::CopyFrom, &[], &["public.t"]),
    ("COPY t TO STDOUT", K::CopyTo, &["public.t"], &[]),
    (
        "COPY (SELECT a FROM t) TO STDOUT",
        K::CopyTo,
        &["public.t"],
        &[],
    ),
    (
        "COPY (DELETE FROM t RETURNING *) TO STDOUT",
        K::Delete,
        &[],
        &["public.t"],
    ),
    ("TRUNCATE a, b", K::Truncate, &[], &["public.a", "public.b"]),
    ("DROP TABLE a, s.b", K::Drop, &[], &["public.a", "s.b"]),
    ("DROP VIEW IF EXISTS v CASCADE", K::Drop, &[], &["public.v"]),
    ("DROP INDEX CONCURRENTLY idx", K::Drop, &[], &["public.idx"]),
    (
        "ALTER TABLE t ADD COLUMN c int",
        K::Alter,
        &[],
        &["public.t"],
    ),
    (
        "ALTER TABLE t RENAME TO u",
        K::Alter,
        &[],
        &["public.t", "public.u"],
    ),
    (
        "ALTER TABLE t SET SCHEMA archive",
        K::Alter,
        &[],
        &["archive.t", "public.t"],
    ),
    (
        "ALTER TABLE t ATTACH PARTITION p FOR VALUES IN (1)",
        K::Alter,
        &[],
        &["public.p", "public.t"],
    ),
    (
        "CREATE TABLE c (LIKE p INCLUDING ALL)",
        K::Create,
        &["public.p"],
        &["public.c"],
    ),
    (
        "CREATE TABLE c (id int REFERENCES p (id))",
        K::Create,
        &[],
        &["public.c", "public.p"],
    ),
    (
        "CREATE TEMP TABLE tt (a int)",
        K::Create,
        &[],
        &["pg_temp.tt"],
    ),
    ("CREATE INDEX ON t (a)", K::Create, &[], &["public.t"]),
    (
        "CREATE INDEX CONCURRENTLY i ON s.t (a) WHERE b > 0",
        K::Create,
        &[],
        &["s.t"],
    ),
    (
        "CREATE TRIGGER trg AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION audit()",
        K::Create,
        &[],
        &["public.t"],
    ),
    (
        "CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM u",
        K::Create,
        &[],
        &["public.t", "public.u"],
    ),
    ("COMMENT ON TABLE t IS 'x'", K::Alter, &[], &["public.t"]),
    ("COMMENT ON COLUMN s.t.c IS 'x'", K::Alter, &[], &["s.t"]),
    (
        "SECURITY LABEL ON TABLE t IS 'x'",
        K::Alter,
        &[],
        &["public.t"],
    ),
    (
        "LOCK TABLE t IN ACCESS EXCLUSIVE MODE",
        K::Other,
        &[],
        &["public.t"],
    ),
    ("VACUUM ANALYZE t", K::Maintenance, &[], &["public.t"]),
    ("ANALYZE t", K::Maintenance, &[], &["public.t"]),
    ("CLUSTER t", K::Maintenance, &[], &["public.t"]),
    ("REINDEX TABLE t", K::Maintenance, &[], &["public.t"]),
    (
        "REFRESH MATERIALIZED VIEW mv",
        K::Maintenance,
        &[],
        &["public.mv"],
    ),
    ("CHECKPOINT", K::Maintenance, &[], &[]),
    ("GRANT SELECT ON t TO bob", K::Grant, &[], &["public.t"]),
    (
        "EXPLAIN ANALYZE DELETE FROM t",
        K::Delete,
        &[],
        &["public.t"],
    ),
    (
        "EXPLAIN (ANALYZE, FORMAT JSON) UPDATE t SET a = 1",
        K::Update,
        &[],
        &["public.t"],
    ),
    ("EXPLAIN DELETE FROM t", K::Explain, &["public.t"], &[]),
    (
        "EXPLAIN (ANALYZE off) DELETE FROM t",
        K::Explain,
        &["public.t"],
        &[],
    ),
    ("EXPLAIN SELECT * FROM t", K::Explain, &["public.t"], &[]),
    ("PREPARE x AS DELETE FROM t", K::Delete, &[], &["public.t"]),
    (
        "PREPARE q (int) AS SELECT * FROM t WHERE id = $1",
        K::Select,
        &["public.t"],
        &[],
    ),
    (
        "DECLARE c CURSOR FOR SELECT * FROM t",
        K::Cursor,
        &["public.t"],
        &[],
    ),
    ("FETCH 10 FROM c", K::Cursor, &[], &[]),
    ("MOVE NEXT IN c", K::Cursor, &[], &[]),
    ("CLOSE c", K::Cursor, &[], &[]),
    (
        "SELECT * FROM t TABLESAMPLE bernoulli (10)",
        K::Select,
        &["public.t"],
        &[],
    ),
    (
        "SELECT setval('orders_id_seq', 1)",
        K::Select,
        &[],
        &["public.orders_id_seq"],
    ),
    (
        "SELECT nextval('s.\"Seq\"'::regclass)",
        K::Select,
        &[],
        &["s.Seq"],
    ),
    ("SELECT currval('seq')", K::Select, &["public.seq"], &[]),
    ("VALUES (1), (2)", K::Select, &[], &[]),
    ("TABLE t", K::Select, &["public.t"], &[]),
    ("DO $$ BEGIN DELETE FROM t; END $$", K::Do, &[], &[]),
    (
        "CALL proc((SELECT max(a) FROM t))",
        K::Call,
        &["public.t"],
        &[],
    ),
];

#[test]
fn relations_read_and_written_are_found_everywhere() {
    for (sql, kind, reads, writes) in RELATION_CASES {
        let a = one(sql);
        assert_eq!(a.kind, *kind, "kind of {sql}");
        assert_eq!(names(&a.reads), *reads, "reads of {sql}");
        assert_eq!(names(&a.writes), *writes, "writes of {sql}");
    }
}

/// `(sql, kind)` for utility statements.
const KIND_CASES: &[(&str, StatementKind)] = &[
    ("SET work_mem = '64MB'", K::Set),
    ("RESET ALL", K::Set),
    ("SET CONSTRAINTS ALL DEFERRED", K::Set),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", K::Set),
    ("SHOW search_path", K::Show),
    ("BEGIN", K::Transaction),
    ("COMMIT", K::Transaction),
    ("ROLLBACK", K::Transaction),
    ("SAVEPOINT a", K::Transaction),
    ("RELEASE a", K::Transaction),
    ("ROLLBACK TO a", K::Transaction),
    ("PREPARE TRANSACTION 'g'", K::Transaction),
    ("COMMIT PREPARED 'g'", K::Transaction),
    ("ROLLBACK PREPARED 'g'", K::Transaction),
    ("LISTEN ch", K::Listen),
    ("UNLISTEN *", K::Listen),
    ("NOTIFY ch, 'x'", K::Notify),
    ("SELECT pg_notify('ch', 'x')", K::Select),
    ("GRANT admin TO bob", K::Grant),
    ("REVOKE ALL ON SCHEMA s FROM bob", K::Revoke),
    ("REVOKE admin FROM bob", K::Revoke),
    ("CREATE ROLE r LOGIN", K::Role),
    ("CREATE USER u PASSWORD 'p'", K::Role),
    ("ALTER ROLE x PASSWORD 'p'", K::Role),
    ("ALTER USER x WITH SUPERUSER", K::Role),
    ("ALTER ROLE x RENAME TO y", K::Role),
    ("DROP ROLE r", K::Role),
    ("DROP USER u", K::Role),
    ("SET ROLE postgres", K::Role),
    ("SET LOCAL ROLE postgres", K::Role),
    ("SET \"role\" = 'postgres'", K::Role),
    ("SET SESSION AUTHORIZATION postgres", K::Role),
    ("SET SESSION AUTHORIZATION DEFAULT", K::Role),
    ("RESET ROLE", K::Role),
    ("RESET SESSION AUTHORIZATION", K::Role),
    ("DISCARD ALL", K::Other),
    ("LOAD 'auto_explain'", K::Other),
    ("CREATE EXTENSION dblink", K::Create),
    ("CREATE SCHEMA s", K::Create),
    (
        "CREATE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql",
        K::Create,
    ),
    ("CREATE DATABASE d", K::Create),
    ("IMPORT FOREIGN SCHEMA r FROM SERVER srv INTO l", K::Create),
    ("ALTER SYSTEM SET shared_preload_libraries = 'x'", K::Alter),
    ("ALTER DATABASE d SET search_path = x", K::Alter),
    ("ALTER FUNCTION f() SECURITY DEFINER", K::Alter),
    ("ALTER SCHEMA s OWNER TO postgres", K::Alter),
    ("DROP SCHEMA s CASCADE", K::Drop),
    ("DROP DATABASE d", K::Drop),
    ("DROP OWNED BY a", K::Drop),
    ("DEALLOCATE ALL", K::Deallocate),
    ("EXECUTE x(1)", K::Execute),
];

#[test]
fn utility_statements_have_their_kinds() {
    for (sql, kind) in KIND_CASES {
        assert_eq!(one(sql).kind, *kind, "{sql}");
    }
}

#[test]
fn ddl_kinds_are_ddl() {
    for sql in [
        "CREATE TABLE t (a int)",
        "ALTER TABLE t ADD COLUMN b int",
        "DROP TABLE t",
        "TRUNCATE t",
        "CREATE TABLE n AS SELECT 1",
        "CREATE VIEW v AS SELECT 1",
        "CREATE INDEX ON t (a)",
        "COMMENT ON TABLE t IS 'x'",
    ] {
        assert!(one(sql).is_ddl, "{sql}");
    }
    for sql in [
        "SELECT 1",
        "DELETE FROM t",
        "GRANT SELECT ON t TO x",
        "SET ROLE x",
        "VACUUM t",
    ] {
        assert!(!one(sql).is_ddl, "{sql}");
    }
}

#[test]
fn case_and_comments_do_not_hide_a_delete() {
    for sql in [
        "DeLeTe /* x */ FROM t",
        "delete--\nfrom t",
        "/* SELECT */ DELETE FROM t",
        "-- SELECT\nDELETE FROM t",
        "DELETE/**/FROM/**/t",
        "  \n\tdelete from T  ",
    ] {
        let a = one(sql);
        assert_eq!(a.kind, K::Delete, "{sql}");
        assert_eq!(names(&a.writes), ["public.t"], "{sql}");
        assert!(!a.has_where, "{sql}");
    }
}

#[test]
fn a_delete_hidden_in_a_cte_makes_a_delete() {
    let a = one("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x");
    assert_eq!(a.kind, K::Delete);
    assert!(!a.has_where);
    assert!(!a.has_limit);

    let a = one("WITH x AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM x LIMIT 1");
    assert_eq!(a.kind, K::Delete);
    assert!(a.has_where);
    assert!(
        !a.has_limit,
        "a limit on the outer query bounds no deletion"
    );

    // Every changing part must be filtered for has_where to hold.
    let a = one(
        "WITH x AS (DELETE FROM t WHERE id = 1 RETURNING *), y AS (UPDATE u SET a = 1 RETURNING *) SELECT 1",
    );
    assert_eq!(a.kind, K::Delete);
    assert!(!a.has_where);
    assert_eq!(names(&a.writes), ["public.t", "public.u"]);

    // Nested deeper: a CTE inside a subquery.
    let a = one("SELECT * FROM (WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d) s");
    assert_eq!(a.kind, K::Delete);
}

#[test]
fn upserts_are_updates() {
    let a = one("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = excluded.a");
    assert_eq!(a.kind, K::Update);
    assert!(a.has_where);
    assert_eq!(
        one("INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING").kind,
        K::Insert
    );
}

#[test]
fn with_recursive_names_are_not_relations() {
    let a = one(
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r",
    );
    assert_eq!(a.kind, K::Select);
    assert!(a.reads.is_empty());
    let a = one(
        "WITH RECURSIVE tree AS (SELECT id FROM nodes WHERE parent IS NULL \
         UNION ALL SELECT n.id FROM nodes n JOIN tree ON n.parent = tree.id) SELECT * FROM tree",
    );
    assert_eq!(names(&a.reads), ["public.nodes"]);
}

#[test]
fn a_cte_shadows_a_table_only_after_it_is_defined() {
    assert!(
        one("WITH users AS (SELECT 1 AS id) SELECT * FROM users")
            .reads
            .is_empty()
    );
    // Inside its own non-recursive body, the name is the real table.
    assert_eq!(
        names(&one("WITH users AS (SELECT * FROM users WHERE active) SELECT * FROM users").reads),
        ["public.users"]
    );
    // A CTE cannot see the ones defined after it.
    assert_eq!(
        names(&one("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a, b").reads),
        ["public.b"]
    );
    // A qualified name is never a CTE.
    assert_eq!(
        names(&one("WITH t AS (SELECT 1) SELECT * FROM public.t").reads),
        ["public.t"]
    );
    // A DML target is never a CTE.
    assert_eq!(
        names(&one("WITH t AS (SELECT 1) DELETE FROM t").writes),
        ["public.t"]
    );
    // A CTE of a subquery is not visible outside it.
    assert_eq!(
        names(&one("SELECT * FROM (WITH t AS (SELECT 1) SELECT * FROM t) s, t").reads),
        ["public.t"]
    );
}

#[test]
fn quoted_and_qualified_names_are_kept_as_postgres_folds_them() {
    let a = one("SELECT * FROM \"Weird Table\" w JOIN Public.\"Users\" u ON u.id = w.uid");
    assert_eq!(names(&a.reads), ["public.Users", "public.Weird Table"]);
    let a = one("create table if not exists \"Public\".T (A int)");
    assert_eq!(names(&a.writes), ["Public.t"]);
    let a = one("SELECT * FROM db.s.t");
    assert_eq!(names(&a.reads), ["s.t"]);
}

#[test]
fn unqualified_names_resolve_to_every_schema_of_the_search_path() {
    let a = one_in("SELECT * FROM users", &["tenant", "public"]).attributes;
    assert_eq!(names(&a.reads), ["public.users", "tenant.users"]);
    let a = one_in("DELETE FROM users", &["a", "b"]).attributes;
    assert_eq!(names(&a.writes), ["a.users", "b.users"]);
    let a = one_in("SELECT * FROM s.users", &["a", "b"]).attributes;
    assert_eq!(names(&a.reads), ["s.users"]);
}

#[test]
fn catalog_relations_resolve_to_pg_catalog() {
    let a = one_in(
        "SELECT * FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace",
        &["a", "b"],
    )
    .attributes;
    assert_eq!(
        names(&a.reads),
        ["pg_catalog.pg_class", "pg_catalog.pg_namespace"]
    );
    assert_eq!(
        names(&one("SELECT * FROM pg_stat_activity").reads),
        ["pg_catalog.pg_stat_activity"]
    );
    assert_eq!(
        names(&one("SELECT * FROM pg_roles, pg_settings").reads),
        ["pg_catalog.pg_roles", "pg_catalog.pg_settings"]
    );
    // Explicitly after another schema, pg_catalog can be shadowed.
    let a = one_in("SELECT * FROM pg_class", &["a", "pg_catalog"]).attributes;
    assert_eq!(names(&a.reads), ["a.pg_class", "pg_catalog.pg_class"]);
}

#[test]
fn functions_are_reported_bare_and_qualified() {
    let a = one("SELECT pg_catalog.pg_read_file('/etc/passwd'), lower(name) FROM pg_class");
    assert_eq!(
        a.functions,
        ["lower", "pg_catalog.pg_read_file", "pg_read_file"]
    );
    assert_eq!(
        one("SELECT pg_read_file('/etc/passwd')").functions,
        ["pg_read_file"]
    );
    let a = one("SELECT * FROM dblink_exec('host=x', 'DROP TABLE y')");
    assert_eq!(a.kind, K::Select);
    assert_eq!(a.functions, ["dblink_exec"]);
    assert_eq!(
        one("SELECT lo_import('/etc/passwd')").functions,
        ["lo_import"]
    );
    assert_eq!(
        one("SELECT pg_terminate_backend(pid) FROM pg_stat_activity").functions,
        ["pg_terminate_backend"]
    );
    assert_eq!(one("SELECT * FROM pg_ls_dir('.')").functions, ["pg_ls_dir"]);
    assert_eq!(
        one("SELECT PUBLIC.My_Func(), \"Quoted\"()").functions,
        ["my_func", "public.my_func", "quoted"]
    );
    assert_eq!(one("CALL s.proc(1)").functions, ["proc", "s.proc"]);
    // Everywhere: WHERE, defaults, aggregates, window functions, nested.
    assert_eq!(one("SELECT 1 FROM t WHERE a = md5(b)").functions, ["md5"]);
    assert_eq!(
        one("CREATE TABLE t (a timestamptz DEFAULT now())").functions,
        ["now"]
    );
    assert_eq!(
        one("SELECT sum(a) OVER (ORDER BY b) FROM t").functions,
        ["sum"]
    );
    assert_eq!(
        one("SELECT * FROM t WHERE x IN (SELECT upper(y) FROM u)").functions,
        ["upper"]
    );
    assert_eq!(
        one("UPDATE t SET a = gen_random_uuid()").functions,
        ["gen_random_uuid"]
    );
    assert_eq!(
        one("EXECUTE p(pg_read_file('/etc/passwd'))").functions,
        ["pg_read_file"]
    );
    // Trigger functions run later, with the table owner's rights.
    assert_eq!(
        one("CREATE TRIGGER trg AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION audit()").functions,
        ["audit"]
    );
}

#[test]
fn opaque_bodies_report_nothing_but_what_they_are() {
    let a = one("DO $$ BEGIN DELETE FROM t; END $$");
    assert_eq!(a.kind, K::Do);
    assert!(a.writes.is_empty() && a.functions.is_empty());
    let a = one("CREATE FUNCTION f() RETURNS int AS 'delete from t; select 1' LANGUAGE sql");
    assert_eq!(a.kind, K::Create);
    assert_eq!(a.object_name.as_deref(), Some("f"));
    assert!(a.writes.is_empty());
}

#[test]
fn copy_reports_direction_target_and_program() {
    let s = one_in("COPY t FROM PROGRAM 'id'", &[]);
    assert_eq!(s.attributes.kind, K::CopyFrom);
    assert!(s.attributes.copy_program);
    assert_eq!(
        s.copy,
        Some(CopyInfo {
            direction: CopyDirection::From,
            stdio: false,
            program: true,
            target: Some("id".into()),
            format: CopyFormat::Text,
            delimiter: None,
            quote: None,
            escape: None,
            null: None,
            header: false,
        })
    );
    let s = one_in("COPY (SELECT a FROM t WHERE b > 1) TO STDOUT", &[]);
    assert_eq!(s.attributes.kind, K::CopyTo);
    assert!(!s.attributes.copy_program);
    assert_eq!(
        s.copy.as_ref().map(|c| (c.direction, c.stdio)),
        Some((CopyDirection::To, true))
    );
    assert!(s.attributes.has_where);
    let s = one_in("COPY t TO '/tmp/x'", &[]);
    assert_eq!(
        s.copy.map(|c| (c.stdio, c.target)),
        Some((false, Some("/tmp/x".into())))
    );
}

#[test]
fn multi_statement_strings_give_one_statement_each() {
    let statements = analyze("SELECT 1; SELECT * FROM t;; UPDATE t SET a = 1 ;", &[]).unwrap();
    let kinds: Vec<_> = statements.iter().map(|s| s.attributes.kind).collect();
    assert_eq!(kinds, [K::Select, K::Select, K::Update]);
    let texts: Vec<_> = statements.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts, ["SELECT 1", "SELECT * FROM t", "UPDATE t SET a = 1"]);
    let statements = analyze("SELECT * FROM t WHERE x = 1; DELETE FROM t", &[]).unwrap();
    assert_eq!(statements[1].attributes.kind, K::Delete);
    assert!(!statements[1].attributes.has_where);
}

#[test]
fn unparsable_and_empty_strings_are_errors() {
    assert_eq!(
        analyze("SELECT * FORM t", &[]),
        Err(AnalyzeError::Parse {
            message: "syntax error at or near \"FORM\"".into(),
            cursor: Some(9),
        })
    );
    // One bad statement spoils the whole string: nothing of it may run.
    assert!(matches!(
        analyze("SELECT 1; DELET FROM t", &[]),
        Err(AnalyzeError::Parse { .. })
    ));
    for sql in [
        "",
        "   ",
        ";",
        " ;; ; ",
        "-- just a comment",
        "/* only */ ;",
    ] {
        assert_eq!(analyze(sql, &[]), Err(AnalyzeError::Empty), "{sql:?}");
    }
    assert_eq!(analyze("SELECT 1\0", &[]), Err(AnalyzeError::NulByte(8)));
}

#[test]
fn explain_analyze_is_decided_as_what_it_runs() {
    let a = one("EXPLAIN ANALYZE DELETE FROM t");
    assert_eq!((a.kind, a.inner_kind), (K::Delete, Some(K::Delete)));
    let a = one("EXPLAIN DELETE FROM t WHERE id = 1");
    assert_eq!((a.kind, a.inner_kind), (K::Explain, Some(K::Delete)));
    assert!(a.writes.is_empty());
    let a = one("EXPLAIN WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d");
    assert_eq!((a.kind, a.inner_kind), (K::Explain, Some(K::Delete)));
}

#[test]
fn prepared_statements_are_decided_at_prepare_and_named() {
    let s = one_in("PREPARE x AS DELETE FROM t", &[]);
    assert_eq!(s.attributes.kind, K::Delete);
    assert_eq!(s.attributes.inner_kind, Some(K::Delete));
    assert_eq!(s.sql_prepare.as_deref(), Some("x"));
    let s = one_in("EXECUTE x(1)", &[]);
    assert_eq!(s.attributes.kind, K::Execute);
    assert_eq!(s.sql_execute.as_deref(), Some("x"));
    assert_eq!(
        one_in("CREATE TABLE t2 AS EXECUTE p", &[])
            .sql_execute
            .as_deref(),
        Some("p")
    );
    assert_eq!(
        one_in("EXPLAIN ANALYZE EXECUTE p", &[])
            .sql_execute
            .as_deref(),
        Some("p")
    );
    assert_eq!(
        one_in("DEALLOCATE x", &[]).sql_deallocate,
        Some(Some("x".into()))
    );
    assert_eq!(
        one_in("DEALLOCATE PREPARE ALL", &[]).sql_deallocate,
        Some(None)
    );
    assert_eq!(one_in("DISCARD ALL", &[]).sql_deallocate, Some(None));
}

#[test]
fn search_path_changes_are_reported() {
    let s = one_in("SET search_path TO a, b", &[]);
    assert_eq!(s.attributes.kind, K::Set);
    assert_eq!(s.attributes.object_name.as_deref(), Some("search_path"));
    assert_eq!(s.sets_search_path, Some(vec!["a".into(), "b".into()]));
    assert_eq!(
        one_in("SET LOCAL search_path = x", &[]).sets_search_path,
        Some(vec!["x".into()])
    );
    assert_eq!(
        one_in("SET SCHEMA 'x'", &[]).sets_search_path,
        Some(vec!["x".into()])
    );
    let default = Some(vec!["$user".to_owned(), "public".to_owned()]);
    assert_eq!(one_in("RESET search_path", &[]).sets_search_path, default);
    assert_eq!(one_in("RESET ALL", &[]).sets_search_path, default);
    assert_eq!(one_in("SET work_mem = '1GB'", &[]).sets_search_path, None);
}

#[test]
fn identity_changes_never_look_like_settings() {
    let a = one("SET ROLE postgres");
    assert_eq!(
        (a.kind, a.object_name.as_deref()),
        (K::Role, Some("postgres"))
    );
    let a = one("SET SESSION AUTHORIZATION postgres");
    assert_eq!(
        (a.kind, a.object_name.as_deref()),
        (K::Role, Some("postgres"))
    );
    let a = one("ALTER ROLE x PASSWORD 'p'");
    assert_eq!((a.kind, a.object_name.as_deref()), (K::Role, Some("x")));
    // The password never reaches the normalized text.
    assert!(!a.normalized.contains("'p'"), "{}", a.normalized);
    assert_eq!(one("SET \"ROLE\" TO postgres").kind, K::Role);
}

#[test]
fn objects_of_ddl_grant_and_role_statements_are_named() {
    for (sql, object) in [
        ("CREATE SCHEMA s", "s"),
        ("DROP SCHEMA a, b", "a, b"),
        ("CREATE EXTENSION dblink", "dblink"),
        ("ALTER SYSTEM SET wal_level = minimal", "system"),
        ("GRANT admin TO bob", "admin, bob"),
        ("GRANT SELECT ON ALL TABLES IN SCHEMA prod TO x", "prod, x"),
        ("GRANT EXECUTE ON FUNCTION f(int) TO bob", "f, bob"),
        ("DROP FUNCTION s.f(int)", "s.f"),
        ("CREATE ROLE r", "r"),
        ("DROP ROLE a, postgres", "a, postgres"),
        ("CREATE DATABASE d", "d"),
        ("LOAD 'plugin'", "plugin"),
        ("LISTEN ch", "ch"),
    ] {
        assert_eq!(one(sql).object_name.as_deref(), Some(object), "{sql}");
    }
    assert_eq!(one("CREATE TABLE t (a int)").object_name, None);
}

#[test]
fn transactions_are_followed() {
    let statements = analyze("BEGIN; SAVEPOINT a; ROLLBACK TO a; RELEASE a; COMMIT", &[]).unwrap();
    let ops: Vec<_> = statements.into_iter().map(|s| s.transaction).collect();
    assert_eq!(
        ops,
        [
            Some(TransactionOp::Begin),
            Some(TransactionOp::Savepoint("a".into())),
            Some(TransactionOp::RollbackTo("a".into())),
            Some(TransactionOp::Release("a".into())),
            Some(TransactionOp::Commit),
        ]
    );
}

#[test]
fn has_where_and_has_limit() {
    assert!(one("UPDATE t SET a = 1 WHERE id = 2").has_where);
    assert!(!one("UPDATE t SET a = 1").has_where);
    assert!(
        one("DELETE FROM t WHERE true").has_where,
        "a WHERE of true still counts"
    );
    assert!(one("UPDATE t SET a = 1 WHERE CURRENT OF c").has_where);
    assert!(one("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE").has_where);
    assert!(!one("INSERT INTO t VALUES (1)").has_where);
    assert!(one("SELECT * FROM t WHERE a = 1").has_where);
    assert!(!one("SELECT * FROM t").has_where);
    assert!(!one("SELECT * FROM a WHERE x UNION SELECT * FROM b").has_where);
    assert!(one("SELECT * FROM t LIMIT 10").has_limit);
    assert!(one("SELECT * FROM t FETCH FIRST 5 ROWS ONLY").has_limit);
    assert!(one("SELECT * FROM t LIMIT $1").has_limit);
    assert!(!one("SELECT * FROM t LIMIT ALL").has_limit);
    assert!(!one("SELECT * FROM t LIMIT NULL").has_limit);
    assert!(!one("SELECT * FROM t").has_limit);
    assert!(!one("SELECT * FROM (SELECT * FROM t LIMIT 1) s").has_limit);
    assert!(one("SELECT 1 UNION SELECT 2 LIMIT 1").has_limit);
    assert!(one("DECLARE c CURSOR FOR SELECT * FROM t WHERE a LIMIT 5").has_limit);
}

#[test]
fn filtered_columns_resolve_through_aliases() {
    let a = one(
        "SELECT u.name FROM users u JOIN orders o ON o.user_id = u.id \
         WHERE u.email = 'x' GROUP BY u.name HAVING count(o.id) > 1 ORDER BY u.name",
    );
    let users = Some(("public", "users"));
    let orders = Some(("public", "orders"));
    assert_eq!(
        a.filtered_columns,
        [
            column(orders, "id"),
            column(orders, "user_id"),
            column(users, "email"),
            column(users, "id"),
            column(users, "name"),
        ]
    );
    // A single FROM relation takes unqualified columns.
    assert_eq!(
        one("SELECT id FROM users WHERE ssn = '1'").filtered_columns,
        [column(users, "ssn")]
    );
    // Several: every one is a candidate.
    assert_eq!(
        one("SELECT * FROM a, b WHERE x = 1").filtered_columns,
        [
            column(Some(("public", "a")), "x"),
            column(Some(("public", "b")), "x")
        ]
    );
    // Correlated subqueries see the outer aliases.
    assert_eq!(
        one("SELECT * FROM a WHERE a.x = (SELECT max(b.y) FROM b WHERE b.z = a.z)")
            .filtered_columns,
        [
            column(Some(("public", "a")), "x"),
            column(Some(("public", "a")), "z"),
            column(Some(("public", "b")), "y"),
            column(Some(("public", "b")), "z"),
        ]
    );
    // JOIN … USING, aggregates, windows, FILTER, WITHIN GROUP.
    assert_eq!(
        one("SELECT * FROM a JOIN b USING (id)").filtered_columns,
        [
            column(Some(("public", "a")), "id"),
            column(Some(("public", "b")), "id")
        ]
    );
    let sales = Some(("public", "sales"));
    assert_eq!(
        one("SELECT sum(amount) OVER (PARTITION BY region ORDER BY day) FROM sales")
            .filtered_columns,
        [
            column(sales, "amount"),
            column(sales, "day"),
            column(sales, "region")
        ]
    );
    assert_eq!(
        one("SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY salary) FROM sales")
            .filtered_columns,
        [column(sales, "salary")]
    );
    // Columns of a subquery or CTE have no relation.
    assert_eq!(
        one("SELECT * FROM (SELECT 1 AS a) s WHERE s.a = 1").filtered_columns,
        [column(None, "a")]
    );
    // The SELECT list alone filters nothing.
    assert!(
        one("SELECT ssn, lower(name) FROM users")
            .filtered_columns
            .is_empty()
    );
    // DML: UPDATE/DELETE WHERE, MERGE ON, COPY WHERE.
    assert_eq!(
        one("UPDATE users AS u SET a = 1 WHERE u.ssn = '1'").filtered_columns,
        [column(users, "ssn")]
    );
    assert_eq!(
        one("COPY users FROM STDIN WHERE id > 1").filtered_columns,
        [column(users, "id")]
    );
}

#[test]
fn fingerprints_ignore_literals_and_normalize_replaces_them() {
    let a = one("SELECT * FROM t WHERE id = 1 AND name = 'x'");
    let b = one("select * from t where id = 42 and name = 'y'");
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_eq!(a.fingerprint.len(), 16);
    assert_eq!(a.normalized, "SELECT * FROM t WHERE id = $1 AND name = $2");
    assert_ne!(
        a.fingerprint,
        one("SELECT * FROM u WHERE id = 1 AND name = 'x'").fingerprint
    );
    // Statements of one string are fingerprinted on their own text.
    let statements = analyze("SELECT 1; SELECT * FROM t WHERE id = 1", &[]).unwrap();
    assert_eq!(
        statements[1].attributes.fingerprint,
        one("SELECT * FROM t WHERE id = 5").fingerprint
    );
    assert_eq!(
        statements[1].attributes.normalized,
        "SELECT * FROM t WHERE id = $1"
    );
}

#[test]
fn attributes_round_trip_through_serde() {
    let a = one("SELECT u.name FROM users u WHERE u.id = 1 LIMIT 5");
    let json = serde_json::to_string(&a).unwrap();
    assert!(json.contains("\"kind\":\"select\""), "{json}");
    let back: Attributes = serde_json::from_str(&json).unwrap();
    assert_eq!(back, a);
}

#[test]
fn output_lists_are_sorted_and_deduplicated() {
    let a = one("SELECT lower(a), lower(b) FROM t, t t2, u WHERE t.x = 1 AND t.x = 2");
    assert_eq!(names(&a.reads), ["public.t", "public.u"]);
    assert_eq!(a.functions, ["lower"]);
    assert_eq!(a.filtered_columns, [column(Some(("public", "t")), "x")]);
}

/// A small deterministic generator: no dependency, same inputs every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }
}

const TOKENS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "DELETE",
    "UPDATE",
    "SET",
    "INSERT",
    "INTO",
    "VALUES",
    "WITH",
    "AS",
    "(",
    ")",
    ",",
    ";",
    "*",
    "t",
    "u",
    "\"Q\"",
    "s.t",
    "1",
    "'x'",
    "$1",
    "=",
    "AND",
    "OR",
    "JOIN",
    "ON",
    "USING",
    "RETURNING",
    "LIMIT",
    "ALL",
    "UNION",
    "RECURSIVE",
    "COPY",
    "TO",
    "STDOUT",
    "PROGRAM",
    "EXPLAIN",
    "ANALYZE",
    "PREPARE",
    "EXECUTE",
    "ROLE",
    "GRANT",
    "CREATE",
    "TABLE",
    "DROP",
    "ALTER",
    "MERGE",
    "WHEN",
    "MATCHED",
    "THEN",
    "DO",
    "$$x$$",
    "f(",
    "pg_read_file(",
    "--",
    "/*",
    "*/",
    "\n",
    "CURSOR",
    "FOR",
    "LATERAL",
    "ORDER",
    "BY",
    "GROUP",
    "HAVING",
    "OVER",
    "FILTER",
    "::regclass",
    "E'\\x00'",
    "\\",
    "\"",
    "'",
];

#[test]
fn arbitrary_input_never_panics() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for round in 0..600 {
        let input = if round % 2 == 0 {
            let len = rng.below(64);
            let bytes: Vec<u8> = (0..len)
                .map(|_| u8::try_from(rng.next() & 0xff).unwrap())
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            let len = rng.below(24);
            (0..len)
                .map(|_| TOKENS[rng.below(TOKENS.len())])
                .collect::<Vec<_>>()
                .join(" ")
        };
        let path: &[&str] = if round % 3 == 0 {
            &["a", "pg_catalog", "b"]
        } else {
            &[]
        };
        if let Ok(statements) = analyze(&input, path) {
            assert!(!statements.is_empty(), "{input:?}");
            for s in statements {
                let a = &s.attributes;
                assert!(a.reads.windows(2).all(|w| w[0] < w[1]), "{input:?}");
                assert!(a.writes.windows(2).all(|w| w[0] < w[1]), "{input:?}");
                assert!(a.functions.windows(2).all(|w| w[0] < w[1]), "{input:?}");
                assert!(!a.fingerprint.is_empty(), "{input:?}");
            }
        }
    }
}

#[test]
fn valid_statements_from_the_generator_parse_the_same_one_by_one() {
    // Every statement's own text must analyse to the same attributes as in
    // the multi-statement string (it is what the audit and caches key on).
    let sql = "SELECT * FROM t WHERE a = 1; WITH d AS (DELETE FROM u RETURNING *) SELECT * FROM d; \
               COPY (SELECT 1) TO STDOUT; SET search_path TO x";
    for s in analyze(sql, &[]).unwrap() {
        let alone = one_in(&s.text, &[]);
        assert_eq!(alone.attributes, s.attributes, "{}", s.text);
    }
}

/// Statements for the cross-check against pg_query's own summary.
const CORPUS: &[&str] = &[
    "SELECT * FROM users u JOIN app.orders o ON o.uid = u.id WHERE u.email = lower($1)",
    "WITH x AS (DELETE FROM t WHERE a RETURNING *) INSERT INTO log SELECT * FROM x",
    "UPDATE t SET a = (SELECT max(b) FROM s WHERE s.c = t.c) FROM u WHERE t.id = u.id",
    "DELETE FROM t USING u, v WHERE t.id = u.id AND md5(v.x) = t.h",
    "INSERT INTO t (a) SELECT generate_series(1, 10) ON CONFLICT (a) DO UPDATE SET b = now()",
    "MERGE INTO t USING (SELECT * FROM s) src ON t.id = src.id WHEN MATCHED THEN UPDATE SET v = src.v",
    "SELECT * FROM a, LATERAL (SELECT * FROM b WHERE b.x = a.x) l, pg_ls_dir('.') f",
    "CREATE TABLE n AS SELECT upper(name) FROM t",
    "CREATE VIEW v AS SELECT * FROM t JOIN s USING (id)",
    "COPY (SELECT * FROM t WHERE x > 0) TO STDOUT",
    "EXPLAIN ANALYZE SELECT * FROM t WHERE a IN (SELECT b FROM u)",
    "DROP TABLE a, s.b",
    "ALTER TABLE t ADD COLUMN c int DEFAULT nextval('seq')",
    "SELECT count(*) FILTER (WHERE a) OVER (PARTITION BY b) FROM t GROUP BY c HAVING sum(d) > 1",
    "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SELECT * FROM r, t",
    "SELECT pg_catalog.pg_read_file('/etc/passwd'), dblink_exec('x', 'y')",
    "TRUNCATE a, b",
    "CREATE INDEX ON t (lower(a))",
    "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id AND u.x = ANY (ARRAY(SELECT y FROM w)))",
];

#[test]
fn nothing_pg_query_finds_is_missing() {
    for sql in CORPUS {
        let ours = one(sql);
        let theirs = pg_query::parse(sql, 0).unwrap();
        let relations: Vec<&Relation> = ours.reads.iter().chain(&ours.writes).collect();
        for table in theirs.tables() {
            let found = match table.split_once('.') {
                Some((schema, name)) => relations
                    .iter()
                    .any(|r| r.schema == schema && r.name == name),
                None => relations.iter().any(|r| r.name == table),
            };
            assert!(
                found,
                "{sql}: pg_query reports table {table}, ours {relations:?}"
            );
        }
        for function in theirs.call_functions() {
            let qualified = function
                .rsplit('.')
                .take(2)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join(".");
            assert!(
                ours.functions.contains(&qualified.to_lowercase()),
                "{sql}: pg_query reports {function}, ours {:?}",
                ours.functions
            );
        }
    }
}

#[test]
fn a_search_path_set_in_the_string_applies_to_later_statements() {
    let statements = analyze(
        "SELECT * FROM users; SET search_path TO evil; SELECT * FROM users",
        &["app"],
    )
    .unwrap();
    assert_eq!(names(&statements[0].attributes.reads), ["app.users"]);
    assert_eq!(names(&statements[2].attributes.reads), ["evil.users"]);
    let statements = analyze(
        "SET search_path TO evil; RESET search_path; DELETE FROM users",
        &["app"],
    )
    .unwrap();
    assert_eq!(
        names(&statements[2].attributes.writes),
        ["$user.users", "public.users"]
    );
}
