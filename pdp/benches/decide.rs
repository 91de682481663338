//! In-process decision latency of the example policy set: median and p99
//! per statement decision, for a CI principal, over a mix of statements
//! (allowed reads, refused writes, held deletes, DDL in the sandbox).
//!
//! `cargo bench -p palisade-pdp --bench decide`

#![expect(
    clippy::expect_used,
    reason = "benchmark setup: a failure aborts the run"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_pdp::engine::{Principal, Scope, SessionFacts};
use palisade_pdp::policy::load_dir;

const STATEMENTS: &[&str] = &[
    "SELECT id, total FROM orders WHERE id = 7",
    "SELECT r.day, o.total FROM reporting.daily r JOIN public.orders o ON o.day = r.day",
    "UPDATE orders SET total = 0 WHERE id = 1",
    "DELETE FROM migrations_tmp.backfill",
    "CREATE TABLE migrations_tmp.t (id int)",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT * FROM customers",
    "BEGIN",
];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let snapshot = Arc::new(load_dir(&dir).expect("example policies load"));
    let principal = Principal {
        id: "https://token.actions.githubusercontent.com|repo:acme/app:ref:refs/heads/main".into(),
        issuer: "https://token.actions.githubusercontent.com".into(),
        subject: "repo:acme/app:ref:refs/heads/main".into(),
        groups: vec!["ci-generated-code".into()],
        claims: [("repository".to_owned(), "acme/app".to_owned())].into(),
    };
    let facts = SessionFacts {
        target: "prod".into(),
        application_name: "psql".into(),
        client_address: "127.0.0.1:5000".into(),
        database_user: "ci".into(),
        tls: true,
    };
    let scope = Scope::new(snapshot, &principal, &facts).expect("scope");
    let attributes: Vec<_> = STATEMENTS
        .iter()
        .map(|sql| {
            palisade_sql::analyze(sql, &["public"])
                .expect("parses")
                .remove(0)
                .attributes
        })
        .collect();
    // Warm up (entity cache of tables, masks).
    for a in &attributes {
        let _ = scope.decide_statement(a);
    }
    let rounds = 5_000;
    let mut all = Vec::with_capacity(rounds * attributes.len());
    println!("{:<82} {:>10} {:>10}", "statement", "p50", "p99");
    for (sql, a) in STATEMENTS.iter().zip(&attributes) {
        let mut samples = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let t = Instant::now();
            let v = scope.decide_statement(a);
            samples.push(t.elapsed());
            std::hint::black_box(v);
        }
        samples.sort();
        println!(
            "{:<82} {:>8.1}µs {:>8.1}µs",
            sql,
            percentile(&samples, 0.5).as_secs_f64() * 1e6,
            percentile(&samples, 0.99).as_secs_f64() * 1e6
        );
        all.extend(samples);
    }
    all.sort();
    println!(
        "{:<82} {:>8.1}µs {:>8.1}µs",
        "all statements",
        percentile(&all, 0.5).as_secs_f64() * 1e6,
        percentile(&all, 0.99).as_secs_f64() * 1e6
    );
}
