//! Inline masking: the bytes a client receives never hold a clear value of a
//! column policy masks for it, whatever the client, protocol, result format
//! or query shape; a `dba` sees clear values.
//!
//! The agent listens in plaintext here so that a tap between client and
//! agent sees the protocol bytes themselves.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test on a broken assumption"
)]

use futures::TryStreamExt;
use integration::agent::Stack;
use integration::clients::run_pg_program;
use integration::tap::Tap;
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::error::SqlState;

/// Clear values of classified columns (and telling fragments of them).
const SECRETS: &[&str] = &[
    "123-45-6789",
    "6789",
    "ada@",
    "555 0100",
    "4111111111111111",
    "411111",
    "sk_live_",
    "bob@",
];

/// Objects beyond the example schema: a secret table and views that reach
/// masked columns under other names.
const EXTRA: &str = "
CREATE TABLE public.api_keys (id int PRIMARY KEY, owner text, secret text);
INSERT INTO public.api_keys VALUES (1, 'ci', 'sk_live_0123456789abcdefghijklmn');
CREATE VIEW public.customer_view AS
  SELECT id, name, ssn AS tax_id, lower(email) AS contact FROM public.customers;
CREATE VIEW public.customer_view2 AS SELECT * FROM public.customer_view;
";

async fn stack() -> (Stack, Tap) {
    let stack = Stack::start_with(|c| {
        c.listen.tls_cert = None;
        c.listen.tls_key = None;
        c.listen.insecure_allow_plaintext = true;
    })
    .await
    .unwrap();
    stack
        .direct()
        .await
        .unwrap()
        .batch_execute(EXTRA)
        .await
        .unwrap();
    let tap = Tap::start(stack.agent.addr).await.unwrap();
    (stack, tap)
}

fn conninfo(tap: &Tap, token: &str) -> String {
    format!(
        "host=127.0.0.1 port={} dbname=prod user=ci password={token} sslmode=disable",
        tap.addr.port()
    )
}

async fn connect(tap: &Tap, token: &str) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(&conninfo(tap, token), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    client
}

fn assert_no_secrets(tap: &Tap) {
    for s in SECRETS {
        assert!(!tap.saw(s), "the client received `{s}`");
    }
}

/// The text values of a simple query's rows.
async fn simple_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn query_shapes_are_masked_in_text_and_binary() {
    let (stack, tap) = stack().await;
    let ci = connect(&tap, &stack.ci_token().unwrap()).await;

    // Simple protocol, text format: each method as policy names it.
    let rows = simple_rows(&ci, "SELECT id, name, email, ssn, phone FROM customers").await;
    assert_eq!(
        rows,
        vec![vec![
            Some("1".into()),
            Some("Ada".into()),
            Some("***@example.com".into()),
            Some("********".into()),
            Some("********".into()),
        ]]
    );
    let rows = simple_rows(&ci, "SELECT card_number FROM payments").await;
    assert_eq!(rows, vec![vec![Some("************1111".into())]]);
    let rows = simple_rows(&ci, "SELECT owner, secret FROM api_keys").await;
    assert_eq!(rows, vec![vec![Some("ci".into()), None]]);

    // Shapes that hide the origin: all masked, whole.
    for sql in [
        "SELECT * FROM customers",
        "SELECT ssn AS s, upper(ssn), ssn || '', lower(email) FROM customers",
        "SELECT c.name, substr(p.card_number, 1, 6) FROM customers c JOIN payments p ON p.customer_id = c.id",
        "SELECT x FROM (SELECT ssn AS x FROM customers) s",
        "WITH c AS (SELECT upper(ssn) AS u, email FROM customers) SELECT u, email FROM c",
        "SELECT row_to_json(c) FROM customers c",
        "SELECT (SELECT ssn FROM customers LIMIT 1) AS probe",
        "SELECT ssn FROM customers UNION ALL SELECT 'x'",
        "SELECT * FROM customer_view",
        "SELECT tax_id, contact FROM customer_view2",
        "SELECT coalesce(NULL, phone) FROM customers",
    ] {
        let rows = simple_rows(&ci, sql).await;
        assert!(!rows.is_empty(), "{sql}");
    }
    // Unclassified values pass untouched.
    let rows = simple_rows(&ci, "SELECT name, id * 2 FROM customers").await;
    assert_eq!(rows, vec![vec![Some("Ada".into()), Some("2".into())]]);

    // Extended protocol with binary results (tokio-postgres asks for binary).
    let row = ci
        .query_one(
            "SELECT id, ssn, email, upper(phone) FROM customers WHERE id = $1",
            &[&1i32],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    assert_eq!(row.get::<_, &str>(1), "********");
    assert_eq!(row.get::<_, &str>(2), "***@example.com");
    assert_eq!(row.get::<_, &str>(3), "********");
    // A prepared statement executed again (no Describe from the client).
    let stmt = ci
        .prepare("SELECT ssn, card_number FROM customers c JOIN payments p ON p.customer_id = c.id")
        .await
        .unwrap();
    for _ in 0..3 {
        let row = ci.query_one(&stmt, &[]).await.unwrap();
        assert_eq!(row.get::<_, &str>(0), "********");
        assert_eq!(row.get::<_, &str>(1), "************1111");
    }
    // A masked non-text value in binary becomes NULL.
    let row = ci
        .query_one("SELECT length(ssn) FROM customers", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<i32>>(0), None);

    // A server-side cursor.
    let rows = simple_rows(
        &ci,
        "BEGIN; DECLARE cur CURSOR FOR SELECT ssn, upper(email) FROM customers; FETCH ALL FROM cur; COMMIT",
    )
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0].as_deref(), Some("********"));

    // COPY … TO STDOUT, text and csv, of a table and of a query.
    for sql in [
        "COPY customers TO STDOUT",
        "COPY customers TO STDOUT (FORMAT csv, HEADER)",
        "COPY (SELECT name, upper(ssn), card_number FROM customers, payments) TO STDOUT",
        "COPY customers (id, email) TO STDOUT",
    ] {
        let stream = ci.copy_out(sql).await.unwrap();
        let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
        let text: String = chunks.iter().map(|c| String::from_utf8_lossy(c)).collect();
        assert!(
            text.contains("Ada") || text.starts_with("1\t"),
            "{sql}: {text}"
        );
        assert!(text.contains("********"), "{sql}: {text}");
        if sql.contains("HEADER") {
            assert!(text.starts_with("id,name,email,ssn,phone\n"), "{text}");
        }
    }
    // Binary COPY cannot be masked: refused before it runs.
    let e = ci
        .copy_out("COPY customers TO STDOUT (FORMAT binary)")
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");

    // A predicate probe is refused by policy.
    let e = ci
        .simple_query("SELECT id FROM customers WHERE ssn LIKE '1%'")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");
    let db = e.as_db_error().unwrap();
    assert!(db.message().contains("no-probing-masked-columns"), "{db:?}");

    // RETURNING, on a sandbox table whose column is classified, created in
    // this session (the catalog follows the DDL).
    ci.batch_execute("CREATE TABLE migrations_tmp.signups (id int, email text)")
        .await
        .unwrap();
    let rows = simple_rows(
        &ci,
        "INSERT INTO migrations_tmp.signups VALUES (1, 'bob@corp.test') RETURNING id, email, upper(email)",
    )
    .await;
    assert_eq!(
        rows,
        vec![vec![
            Some("1".into()),
            Some("***@corp.test".into()),
            Some("********".into())
        ]]
    );

    // Copying masked values into a new home is refused by policy.
    for sql in [
        "CREATE TABLE migrations_tmp.leak AS SELECT ssn FROM customers",
        "CREATE VIEW migrations_tmp.leak AS SELECT ssn FROM public.customers",
        "INSERT INTO migrations_tmp.signups SELECT id, ssn FROM customers",
    ] {
        let e = ci.simple_query(sql).await.unwrap_err();
        let db = e.as_db_error().unwrap();
        assert!(
            db.message().contains("no-copying-masked-columns"),
            "{sql}: {db:?}"
        );
    }

    // A function whose body reads a masked column hides it from the
    // lineage: computed values of statements calling a function outside
    // pg_catalog are redacted.
    // (CI may not create functions; one created by someone else will do.)
    let create = "CREATE FUNCTION migrations_tmp.leak_ssn() RETURNS text LANGUAGE sql \
         AS 'SELECT ssn FROM public.customers LIMIT 1'";
    assert!(ci.batch_execute(create).await.is_err());
    stack
        .direct()
        .await
        .unwrap()
        .batch_execute(create)
        .await
        .unwrap();
    let rows = simple_rows(
        &ci,
        "SELECT migrations_tmp.leak_ssn(), upper(name) FROM customers",
    )
    .await;
    assert_eq!(
        rows,
        vec![vec![Some("********".into()), Some("********".into())]]
    );

    assert_no_secrets(&tap);
    assert!(tap.saw("***@example.com"));

    // A dba sees the clear values, through the same agent.
    let dba_tap = Tap::start(stack.agent.addr).await.unwrap();
    let dba = connect(&dba_tap, &stack.dba_token().unwrap()).await;
    let rows = simple_rows(&dba, "SELECT ssn, email FROM customers").await;
    assert_eq!(
        rows,
        vec![vec![
            Some("123-45-6789".into()),
            Some("ada@example.com".into())
        ]]
    );
    assert!(dba_tap.saw("123-45-6789"));
}

#[tokio::test]
async fn psql_and_psycopg_see_masked_values() {
    let (stack, tap) = stack().await;
    let token = stack.ci_token().unwrap();
    let conninfo = conninfo(&tap, &token);
    let script = "
SELECT * FROM customers;
SELECT upper(ssn) AS shout, card_number FROM customers, payments;
SELECT * FROM customer_view2;
\\copy customers TO STDOUT
";
    let out = run_pg_program(
        stack.pg.bin_dir(),
        "psql",
        &["-X", "-d", &conninfo, "-f", "-"],
        script,
    )
    .await
    .unwrap();
    assert!(out.success, "{out:?}");
    assert!(out.stdout.contains("***@example.com"), "{out:?}");
    assert!(out.stdout.contains("************1111"), "{out:?}");
    let py = r#"
import sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    print(conn.execute("SELECT ssn, email FROM customers").fetchone())
    print(conn.execute("SELECT ssn, %s::text FROM customers", ("x",)).fetchone())
    with conn.cursor(binary=True) as cur:
        print(cur.execute("SELECT ssn, card_number FROM customers, payments").fetchone())
    with conn.cursor(name="server_side") as cur:
        cur.execute("SELECT upper(ssn) FROM customers")
        print(cur.fetchall())
"#;
    let out = tokio::process::Command::new("python3")
        .args(["-c", py, &conninfo])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("'********', '***@example.com'"), "{stdout}");
    assert_no_secrets(&tap);

    // The audit trail lists what was masked, and holds no clear value.
    let statements = stack.pdp.ended_statements(2).await.unwrap();
    let select_star = statements
        .iter()
        .find(|s| s.text == "SELECT * FROM customers")
        .expect("the SELECT * is on the record");
    let masked: Vec<&str> = select_star
        .masked_columns
        .iter()
        .map(|c| c.column.as_str())
        .collect();
    assert_eq!(masked, ["email", "ssn", "phone"]);
    let recorded = format!("{statements:?}");
    for s in SECRETS {
        assert!(!recorded.contains(s), "the audit trail holds `{s}`");
    }
}
