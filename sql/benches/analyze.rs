//! What `analyze` costs per statement: a short select, a 20-table join and
//! a ~50 kB migration script, next to pg_query's bare parse of the same text.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};

const SHORT: &str = "SELECT id, name FROM users WHERE id = $1";

fn join20() -> String {
    let mut sql = String::from("SELECT t0.id");
    for i in 1..20 {
        let _ = write!(sql, ", t{i}.v{i}");
    }
    sql.push_str(" FROM app.t0 t0");
    for i in 1..20 {
        let _ = write!(sql, " JOIN app.t{i} t{i} ON t{i}.parent_id = t{}.id", i - 1);
    }
    sql.push_str(" WHERE t0.created_at > now() - interval '1 day' AND t19.kind = 'x' ORDER BY t0.id LIMIT 100");
    sql
}

/// A migration script of about 50 kB: tables, indexes, constraints,
/// backfills, comments and grants.
fn migration() -> String {
    let mut sql = String::from("BEGIN;\nSET search_path TO app, public;\n");
    let mut i = 0;
    while sql.len() < 50_000 {
        let _ = write!(
            sql,
            "CREATE TABLE IF NOT EXISTS app.table_{i} (\n  id bigserial PRIMARY KEY,\n  tenant_id bigint NOT NULL REFERENCES app.tenants (id),\n  name text NOT NULL DEFAULT '',\n  created_at timestamptz NOT NULL DEFAULT now(),\n  payload jsonb\n);\n\
             CREATE INDEX IF NOT EXISTS table_{i}_tenant_idx ON app.table_{i} (tenant_id, created_at DESC);\n\
             ALTER TABLE app.table_{i} ADD CONSTRAINT table_{i}_name_len CHECK (length(name) < 200);\n\
             INSERT INTO app.table_{i} (tenant_id, name) SELECT id, 'seed ' || id FROM app.tenants WHERE active;\n\
             UPDATE app.table_{i} SET payload = jsonb_build_object('v', 1) WHERE payload IS NULL;\n\
             COMMENT ON TABLE app.table_{i} IS 'generated table {i}';\n\
             GRANT SELECT, INSERT ON app.table_{i} TO app_rw;\n"
        );
        i += 1;
    }
    sql.push_str("COMMIT;\n");
    sql
}

fn statements_in(sql: &str) -> usize {
    palisade_sql::analyze(sql, &["app", "public"]).map_or(0, |s| s.len())
}

/// Mean wall time of `f` over about half a second, for the summary lines.
fn mean(mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    let mut runs = 0u32;
    while start.elapsed() < Duration::from_millis(500) {
        f();
        runs += 1;
    }
    start.elapsed() / runs.max(1)
}

fn bench(c: &mut Criterion) {
    let join = join20();
    let script = migration();
    let cases: [(&str, &str); 3] = [
        ("short_select", SHORT),
        ("join_20_tables", &join),
        ("migration_50kb", &script),
    ];

    println!("per-statement cost (mean over ~0.5 s each; analyze includes the parse):");
    for (name, sql) in cases {
        let n = statements_in(sql);
        let parse = mean(|| {
            let _ = black_box(pg_query::parse(black_box(sql), 0));
        });
        let analyze = mean(|| {
            let _ = black_box(palisade_sql::analyze(black_box(sql), &["app", "public"]));
        });
        let per = |d: Duration| d.as_secs_f64() * 1e6 / n.max(1) as f64;
        println!(
            "  {name:<15} {:>6} bytes {n:>4} statements: pg_query::parse {:>8.1} µs/stmt, analyze {:>8.1} µs/stmt",
            sql.len(),
            per(parse),
            per(analyze),
        );
    }

    let mut group = c.benchmark_group("analyze");
    for (name, sql) in cases {
        group.throughput(Throughput::Elements(
            u64::try_from(statements_in(sql)).unwrap_or(1),
        ));
        group.bench_function(name, |b| {
            b.iter(|| palisade_sql::analyze(black_box(sql), &["app", "public"]))
        });
    }
    group.finish();
}

// Written out instead of `criterion_main!`, whose generated public function
// has no doc comment for `missing_docs` to accept.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
