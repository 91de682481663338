use super::*;
use crate::analyze;

fn lineage_in(sql: &str, path: &[&str]) -> Option<Lineage> {
    let mut statements = analyze(sql, path).unwrap();
    assert_eq!(statements.len(), 1, "{sql}");
    statements
        .remove(0)
        .lineage
        .map(std::sync::Arc::unwrap_or_clone)
}

/// `(star, sources)` per output column, sources written `schema.table.column`,
/// `schema.table.*`, `?.column` (any relation) and `?.*` (anything).
fn cols(sql: &str) -> Vec<(bool, Vec<String>)> {
    cols_in(sql, &[])
}

fn cols_in(sql: &str, path: &[&str]) -> Vec<(bool, Vec<String>)> {
    let lineage = lineage_in(sql, path).unwrap_or_else(|| panic!("no lineage: {sql}"));
    lineage
        .columns
        .into_iter()
        .map(|c| (c.star, c.sources.iter().map(show).collect()))
        .collect()
}

fn show(s: &SourceColumn) -> String {
    let relation = s
        .relation
        .as_ref()
        .map_or("?".to_owned(), ToString::to_string);
    format!("{relation}.{}", s.column.as_deref().unwrap_or("*"))
}

/// The sources of each non-star column.
fn sources(sql: &str) -> Vec<Vec<String>> {
    cols(sql)
        .into_iter()
        .map(|(star, s)| {
            assert!(!star, "{sql}");
            s
        })
        .collect()
}

fn one(sql: &str) -> Vec<String> {
    let mut s = sources(sql);
    assert_eq!(s.len(), 1, "{sql}");
    s.remove(0)
}

#[test]
fn computed_columns_keep_their_sources() {
    assert_eq!(
        one("SELECT upper(ssn) FROM customers"),
        ["public.customers.ssn"]
    );
    assert_eq!(
        one("SELECT ssn || '' FROM customers"),
        ["public.customers.ssn"]
    );
    assert_eq!(
        one("SELECT substr(card_number, 1, 6) FROM customers"),
        ["public.customers.card_number"]
    );
    assert_eq!(
        one("SELECT ssn AS x FROM customers"),
        ["public.customers.ssn"]
    );
    assert_eq!(
        one("SELECT ssn::text FROM customers c"),
        ["public.customers.ssn"]
    );
    assert_eq!(
        one("SELECT coalesce(nickname, ssn) FROM customers"),
        ["public.customers.nickname", "public.customers.ssn"]
    );
    assert_eq!(
        one("SELECT CASE WHEN vip THEN ssn ELSE 'x' END FROM customers"),
        ["public.customers.ssn", "public.customers.vip"]
    );
    assert_eq!(
        one("SELECT ROW(id, ssn) FROM customers"),
        ["public.customers.id", "public.customers.ssn"]
    );
    assert_eq!(
        one("SELECT ARRAY[ssn] FROM customers"),
        ["public.customers.ssn"]
    );
    assert_eq!(
        one("SELECT json_build_object('s', ssn) FROM customers"),
        ["public.customers.ssn"]
    );
    assert_eq!(
        one("SELECT JSON_OBJECT('s': ssn) FROM customers"),
        ["public.customers.ssn"]
    );
    assert_eq!(
        one("SELECT (c.addr).street FROM customers c"),
        ["public.customers.addr"]
    );
}

#[test]
fn literals_parameters_and_argumentless_functions_have_no_sources() {
    assert_eq!(
        sources("SELECT 1, $1, now(), current_user, count(*) FROM customers"),
        [Vec::<String>::new(), vec![], vec![], vec![], vec![]]
    );
}

#[test]
fn aggregates_and_window_functions_carry_their_arguments() {
    assert_eq!(
        one("SELECT string_agg(ssn, ',') FROM customers"),
        ["public.customers.ssn"]
    );
    assert_eq!(
        one("SELECT string_agg(id::text, ',' ORDER BY ssn) FILTER (WHERE vip) FROM customers"),
        [
            "public.customers.id",
            "public.customers.ssn",
            "public.customers.vip"
        ]
    );
    assert_eq!(
        one("SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY salary) FROM emp"),
        ["public.emp.salary"]
    );
    // The window definition orders rows; it carries no values.
    assert_eq!(
        one("SELECT lag(ssn) OVER (PARTITION BY region ORDER BY id) FROM customers"),
        ["public.customers.ssn"]
    );
    assert_eq!(
        one("SELECT row_number() OVER w FROM customers WINDOW w AS (ORDER BY ssn)"),
        Vec::<String>::new()
    );
}

#[test]
fn filters_carry_no_values() {
    assert_eq!(
        one(
            "SELECT id FROM customers WHERE ssn = '1' GROUP BY id HAVING max(ssn) > '0' \
             ORDER BY ssn LIMIT 1"
        ),
        ["public.customers.id"]
    );
    assert_eq!(
        sources("SELECT o.id FROM orders o JOIN customers c ON c.ssn = o.ssn"),
        [vec!["public.orders.id"]]
    );
}

#[test]
fn joins_resolve_qualified_and_unqualified_columns() {
    assert_eq!(
        sources(
            "SELECT c.ssn, o.total, amount, ssn FROM customers c \
             JOIN orders o ON o.cid = c.id"
        ),
        [
            vec!["public.customers.ssn"],
            vec!["public.orders.total"],
            vec!["?.amount"],
            vec!["?.ssn"],
        ]
    );
    // Through an aliased join.
    assert_eq!(
        one("SELECT j.ssn FROM (customers c JOIN orders o USING (id)) AS j"),
        ["public.customers.ssn", "public.orders.ssn"]
    );
}

#[test]
fn stars_are_one_entry_each() {
    assert_eq!(
        cols("SELECT * FROM customers"),
        [(true, vec!["public.customers.*".to_owned()])]
    );
    assert_eq!(
        cols("SELECT * FROM customers c JOIN orders o ON o.cid = c.id"),
        [(
            true,
            vec![
                "public.customers.*".to_owned(),
                "public.orders.*".to_owned()
            ]
        )]
    );
    assert_eq!(
        cols("SELECT o.*, c.ssn FROM customers c, app.orders o"),
        [
            (true, vec!["app.orders.*".to_owned()]),
            (false, vec!["public.customers.ssn".to_owned()])
        ]
    );
    assert_eq!(
        cols("TABLE customers"),
        [(true, vec!["public.customers.*".to_owned()])]
    );
    // Over a subquery: what the subquery's columns carry.
    assert_eq!(
        cols("SELECT * FROM (SELECT upper(ssn) AS u, 1 AS one FROM customers) s"),
        [(true, vec!["public.customers.ssn".to_owned()])]
    );
}

#[test]
fn whole_row_references() {
    assert_eq!(
        one("SELECT row_to_json(c) FROM customers c"),
        ["public.customers.*", "public.customers.c"]
    );
    assert_eq!(
        one("SELECT row_to_json(c.*) FROM customers c"),
        ["public.customers.*"]
    );
    assert_eq!(
        one("SELECT c::text FROM customers c"),
        ["public.customers.*", "public.customers.c"]
    );
    assert_eq!(
        one("SELECT to_jsonb(s) FROM (SELECT ssn FROM customers) s"),
        ["?.s", "public.customers.ssn"]
    );
}

#[test]
fn unqualified_names_give_one_source_per_schema() {
    assert_eq!(
        cols_in("SELECT upper(ssn) FROM customers", &["a", "b"]),
        [(
            false,
            vec!["a.customers.ssn".to_owned(), "b.customers.ssn".to_owned()]
        )]
    );
    assert_eq!(
        cols_in("SELECT * FROM customers", &["a", "b"]),
        [(
            true,
            vec!["a.customers.*".to_owned(), "b.customers.*".to_owned()]
        )]
    );
}

#[test]
fn ctes_pass_columns_through() {
    assert_eq!(
        sources(
            "WITH x AS (SELECT ssn, upper(name) AS n FROM customers) \
             SELECT ssn, x.n, lower(n) FROM x"
        ),
        [
            vec!["public.customers.ssn"],
            vec!["public.customers.name"],
            vec!["public.customers.name"]
        ]
    );
    // Column aliases rename positionally.
    assert_eq!(
        one("WITH x(a, b) AS (SELECT id, ssn FROM customers) SELECT b FROM x"),
        ["public.customers.ssn"]
    );
    // A name the CTE does not have: all of it.
    assert_eq!(
        one("WITH x AS (SELECT id, ssn FROM customers) SELECT x.nope FROM x"),
        ["public.customers.id", "public.customers.ssn"]
    );
    // A CTE shadows a table of the same name.
    assert_eq!(
        one("WITH customers AS (SELECT 1 AS ssn) SELECT ssn FROM customers"),
        Vec::<String>::new()
    );
    // A data-modifying CTE's RETURNING.
    assert_eq!(
        one("WITH d AS (DELETE FROM customers RETURNING ssn) SELECT ssn FROM d"),
        ["public.customers.ssn"]
    );
}

#[test]
fn recursive_ctes_over_report() {
    let s = one("WITH RECURSIVE r(n, s) AS (SELECT 1, ssn FROM customers \
         UNION ALL SELECT n + 1, s FROM r WHERE n < 3) SELECT n FROM r");
    assert!(s.contains(&"public.customers.ssn".to_owned()), "{s:?}");
    // A forward reference in WITH RECURSIVE.
    let s = one(
        "WITH RECURSIVE a AS (SELECT v FROM b), b AS (SELECT ssn AS v FROM customers) \
         SELECT v FROM a",
    );
    assert!(s.contains(&"public.customers.ssn".to_owned()), "{s:?}");
    // No recursion: stays precise.
    assert_eq!(
        one("WITH RECURSIVE a AS (SELECT ssn, id FROM customers) SELECT id FROM a"),
        ["public.customers.id"]
    );
}

#[test]
fn subqueries_in_from_and_lateral() {
    assert_eq!(
        sources("SELECT s.masked, s.id FROM (SELECT left(ssn, 3) AS masked, id FROM customers) s"),
        [vec!["public.customers.ssn"], vec!["public.customers.id"]]
    );
    assert_eq!(
        one("SELECT b FROM (SELECT id, ssn FROM customers) AS s(a, b)"),
        ["public.customers.ssn"]
    );
    assert_eq!(
        sources(
            "SELECT c.id, l.x FROM customers c, \
             LATERAL (SELECT c.ssn || o.note AS x FROM orders o WHERE o.cid = c.id) l"
        ),
        [
            vec!["public.customers.id"],
            vec!["public.customers.ssn", "public.orders.note"]
        ]
    );
    assert_eq!(
        one("SELECT u FROM customers c, LATERAL unnest(ARRAY[c.ssn, c.phone]) AS u"),
        ["?.u", "public.customers.phone", "public.customers.ssn"]
    );
    assert_eq!(
        one("SELECT g FROM generate_series(1, 3) g"),
        Vec::<String>::new()
    );
}

#[test]
fn scalar_subqueries_carry_their_target_list() {
    assert_eq!(
        one("SELECT (SELECT max(c.ssn) FROM customers c WHERE c.id = o.cid) FROM orders o"),
        ["public.customers.ssn"]
    );
    // An unqualified column of a subquery may be correlated.
    assert_eq!(
        one("SELECT (SELECT ssn FROM orders LIMIT 1) FROM customers"),
        ["public.customers.ssn", "public.orders.ssn"]
    );
    assert_eq!(
        one("SELECT ARRAY(SELECT ssn FROM customers)"),
        ["public.customers.ssn"]
    );
    assert_eq!(
        one("SELECT EXISTS (SELECT ssn FROM customers WHERE id = 1)"),
        ["public.customers.ssn"]
    );
    assert_eq!(
        one("SELECT id IN (SELECT o.cid FROM orders o) FROM customers"),
        ["public.customers.id", "public.orders.cid"]
    );
}

#[test]
fn set_operations_union_position_wise() {
    assert_eq!(
        sources("SELECT id, ssn FROM customers UNION SELECT id, name FROM employees"),
        [
            vec!["public.customers.id", "public.employees.id"],
            vec!["public.customers.ssn", "public.employees.name"]
        ]
    );
    assert_eq!(
        sources("SELECT a FROM t1 INTERSECT SELECT b FROM t2 EXCEPT SELECT c FROM t3"),
        [vec!["public.t1.a", "public.t2.b", "public.t3.c"]]
    );
    // A star makes positions unknown: everything everywhere.
    assert_eq!(
        sources("SELECT id, ssn FROM customers UNION ALL SELECT * FROM employees"),
        [
            vec![
                "public.customers.id",
                "public.customers.ssn",
                "public.employees.*"
            ],
            vec![
                "public.customers.id",
                "public.customers.ssn",
                "public.employees.*"
            ]
        ]
    );
    assert_eq!(
        sources("VALUES (1, 'a'), (2, 'b')"),
        [Vec::<String>::new(), vec![]]
    );
    assert_eq!(
        one("SELECT column2 FROM (VALUES (1, (SELECT ssn FROM customers))) v"),
        ["public.customers.ssn"]
    );
}

#[test]
fn returning_lists() {
    assert_eq!(
        cols("DELETE FROM customers WHERE id = 1 RETURNING *"),
        [(true, vec!["public.customers.*".to_owned()])]
    );
    assert_eq!(
        sources("DELETE FROM customers WHERE id = 1 RETURNING id, upper(ssn)"),
        [vec!["public.customers.id"], vec!["public.customers.ssn"]]
    );
    assert_eq!(
        sources("INSERT INTO customers (id, ssn) VALUES (1, '123') RETURNING id, ssn"),
        [vec!["public.customers.id"], vec!["public.customers.ssn"]]
    );
    // The written values' sources count, for every column of the target
    // (generated columns and triggers can move values between columns),
    // not for other values.
    assert_eq!(
        sources(
            "UPDATE customers SET nickname = ssn WHERE id = 1 \
             RETURNING nickname, id, 1, now()"
        ),
        [
            vec!["public.customers.nickname", "public.customers.ssn"],
            vec!["public.customers.id", "public.customers.ssn"],
            vec![],
            vec![]
        ]
    );
    assert_eq!(
        cols("UPDATE customers SET nickname = ssn RETURNING *"),
        [(
            true,
            vec![
                "public.customers.*".to_owned(),
                "public.customers.ssn".to_owned()
            ]
        )]
    );
    assert_eq!(
        sources(
            "UPDATE customers c SET (a, b) = (SELECT s.ssn, s.x FROM secrets s WHERE s.id = c.id) \
             RETURNING c.a"
        ),
        [vec![
            "public.customers.a",
            "public.secrets.ssn",
            "public.secrets.x"
        ]]
    );
    assert_eq!(
        sources(
            "UPDATE customers SET note = o.note FROM orders o WHERE o.cid = customers.id \
             RETURNING note"
        ),
        [vec!["?.note", "public.orders.note"]]
    );
    assert_eq!(
        sources(
            "INSERT INTO archive (id, s) SELECT id, ssn FROM customers \
             ON CONFLICT (id) DO UPDATE SET s = excluded.s RETURNING s"
        ),
        [vec![
            "public.archive.s",
            "public.customers.id",
            "public.customers.ssn"
        ]]
    );
    assert_eq!(
        sources("INSERT INTO archive SELECT * FROM customers RETURNING id"),
        [vec!["public.archive.id", "public.customers.*"]]
    );
    assert_eq!(
        sources(
            "MERGE INTO archive a USING customers c ON a.id = c.id \
             WHEN MATCHED THEN UPDATE SET s = c.ssn \
             WHEN NOT MATCHED THEN INSERT (id, s) VALUES (c.id, c.ssn) \
             RETURNING a.s, merge_action()"
        ),
        [
            vec![
                "public.archive.s",
                "public.customers.id",
                "public.customers.ssn"
            ],
            vec![]
        ]
    );
    assert_eq!(
        sources("UPDATE customers SET nickname = ssn RETURNING old.nickname, new.nickname"),
        [
            vec!["public.customers.nickname", "public.customers.ssn"],
            vec!["public.customers.nickname", "public.customers.ssn"]
        ]
    );
}

#[test]
fn wrappers_and_copy() {
    assert_eq!(
        cols("DECLARE cur CURSOR FOR SELECT upper(ssn) FROM customers"),
        [(false, vec!["public.customers.ssn".to_owned()])]
    );
    assert_eq!(
        cols("PREPARE p(int) AS SELECT ssn FROM customers WHERE id = $1"),
        [(false, vec!["public.customers.ssn".to_owned()])]
    );
    assert_eq!(
        cols("PREPARE p AS DELETE FROM customers RETURNING ssn"),
        [(false, vec!["public.customers.ssn".to_owned()])]
    );
    assert_eq!(
        cols("COPY (SELECT lower(ssn) FROM customers) TO STDOUT"),
        [(false, vec!["public.customers.ssn".to_owned()])]
    );
    assert_eq!(
        cols("COPY customers (id, ssn) TO STDOUT WITH (FORMAT csv)"),
        [
            (false, vec!["public.customers.id".to_owned()]),
            (false, vec!["public.customers.ssn".to_owned()])
        ]
    );
    assert_eq!(
        cols("COPY app.customers TO STDOUT"),
        [(true, vec!["app.customers.*".to_owned()])]
    );
    assert_eq!(
        cols("SELECT table_to_xml('app.customers', true, false, '')"),
        [(false, vec!["app.customers.*".to_owned()])]
    );
    assert_eq!(
        cols("SELECT query_to_xml('select ssn from customers', true, false, '')"),
        [(false, vec!["?.*".to_owned()])]
    );
}

#[test]
fn statements_without_rows_have_no_lineage() {
    for sql in [
        "INSERT INTO customers VALUES (1)",
        "UPDATE customers SET a = 1",
        "DELETE FROM customers",
        "EXPLAIN SELECT ssn FROM customers",
        "EXPLAIN ANALYZE SELECT ssn FROM customers",
        "CREATE TABLE t2 AS SELECT ssn FROM customers",
        "SELECT ssn INTO t2 FROM customers",
        "COPY customers FROM STDIN",
        "SET search_path = a",
        "EXECUTE p(1)",
        "FETCH 10 FROM cur",
        "CREATE VIEW v AS SELECT ssn FROM customers",
        "BEGIN",
    ] {
        assert_eq!(lineage_in(sql, &[]), None, "{sql}");
    }
}

#[test]
fn lineage_serialises() {
    let lineage = lineage_in("SELECT c.ssn FROM customers c", &[]).unwrap();
    let json = serde_json::to_string(&lineage).unwrap();
    let back: Lineage = serde_json::from_str(&json).unwrap();
    assert_eq!(back, lineage);
}

#[test]
fn composite_stars_and_indirection() {
    assert_eq!(
        cols("SELECT (c.addr).* FROM customers c"),
        [(true, vec!["public.customers.addr".to_owned()])]
    );
    assert_eq!(
        sources("SELECT (c).tags[1], public.customers.ssn FROM customers c"),
        [
            vec![
                "public.customers.*".to_owned(),
                "public.customers.c".to_owned()
            ],
            vec!["public.customers.ssn".to_owned()]
        ]
    );
    // A subquery column named through subscripts, as PostgreSQL names it.
    assert_eq!(
        one("SELECT s.tags FROM (SELECT (c.data).tags[1], id FROM customers c) s"),
        ["public.customers.data"]
    );
}

#[test]
fn non_lateral_subqueries_do_not_see_their_siblings() {
    // `x` is not a column of `s` (a sibling); it comes from outside.
    assert_eq!(
        one(
            "SELECT (SELECT t.x FROM (SELECT ssn AS x FROM customers) s, \
             (SELECT x) t) FROM orders"
        ),
        ["public.orders.x"]
    );
}

#[test]
fn deep_nesting_stays_within_the_stack() {
    // The deepest nesting the parser hands over, and then some deep
    // expressions: the recursion is bounded by pg_query's own limit.
    let nested = |n: usize, wrap: &dyn Fn(&str) -> String| {
        let mut sql = "ssn".to_owned();
        for _ in 0..n {
            sql = wrap(&sql);
        }
        format!("SELECT {sql} FROM customers")
    };
    let wraps: [&dyn Fn(&str) -> String; 3] = [
        &|s| format!("(SELECT upper({s}) FROM customers)"),
        &|s| format!("coalesce({s}, '')"),
        &|s| format!("({s} || 'x')"),
    ];
    for wrap in wraps {
        let deepest = (1..200)
            .take_while(|n| analyze(&nested(*n, wrap), &[]).is_ok())
            .last()
            .unwrap();
        assert!(deepest > 5, "{deepest}");
        let s = one(&nested(deepest, wrap));
        assert!(s.contains(&"public.customers.ssn".to_owned()), "{s:?}");
    }
}

#[test]
fn column_aliases_of_tables_hide_the_real_names() {
    // `x` is the first column of customers, whatever it is called.
    assert_eq!(
        sources("SELECT x, c.y, ssn FROM customers AS c(x, y)"),
        [
            vec!["public.customers.*"],
            vec!["public.customers.*"],
            vec!["public.customers.ssn"]
        ]
    );
}

#[test]
fn from_items_called_new_win_over_the_returning_alias() {
    assert_eq!(
        sources(
            "UPDATE customers SET a = new.ssn FROM secrets AS new WHERE new.id = 1 RETURNING a"
        ),
        [vec!["?.a", "public.secrets.ssn"]]
    );
    assert_eq!(
        sources("DELETE FROM customers RETURNING WITH (OLD AS o) o.ssn"),
        [vec!["public.customers.ssn"]]
    );
}
