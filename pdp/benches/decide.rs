//! In-process decision latency of the example policy set: median and p99
//! per statement decision, for a CI principal, over a mix of statements
//! (allowed reads, refused writes, held deletes, DDL in the sandbox).
//!
//! Two tables: "uncached" is the Cedar evaluation of every decision
//! (`Scope::decide_statement_uncached`); "cached" is what a repeated
//! statement costs through `Scope::decide_statement`, which remembers the
//! decisions of its scope by statement attributes.
//!
//! `cargo bench -p palisade-pdp --bench decide`

#![expect(
    clippy::expect_used,
    reason = "benchmark setup: a failure aborts the run"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_pdp::engine::{Principal, Scope, SessionFacts, StatementVerdict};
use palisade_pdp::policy::load_dir;
use palisade_sql::Attributes;

// The allocator of the `palisade-pdp` binary, so the numbers are the
// service's own (Cedar evaluation allocates a good deal per request).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// One way of deciding a statement.
type Decide<'a> = &'a dyn Fn(&Attributes) -> StatementVerdict;

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
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
    // Warm up (entity cache of tables, masks, per-action slices).
    for a in &attributes {
        let _ = scope.decide_statement_uncached(a);
        let _ = scope.decide_statement(a);
    }
    let rounds = 5_000;
    let decide_uncached = |a: &Attributes| scope.decide_statement_uncached(a);
    let decide_cached = |a: &Attributes| scope.decide_statement(a);
    let cases: [(&str, Decide<'_>); 2] = [
        ("uncached (Cedar evaluation)", &decide_uncached),
        ("cached (repeated statement)", &decide_cached),
    ];
    let mut summary = Vec::new();
    for (label, decide) in cases {
        let mut all = Vec::with_capacity(rounds * attributes.len());
        println!();
        println!("{:<82} {:>10} {:>10}", label, "p50", "p99");
        for (sql, a) in STATEMENTS.iter().zip(&attributes) {
            let mut samples = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                let t = Instant::now();
                let v = decide(a);
                samples.push(t.elapsed());
                std::hint::black_box(v);
            }
            samples.sort();
            println!(
                "{:<82} {:>8.1}µs {:>8.1}µs",
                sql,
                micros(percentile(&samples, 0.5)),
                micros(percentile(&samples, 0.99))
            );
            all.extend(samples);
        }
        all.sort();
        let (p50, p99) = (percentile(&all, 0.5), percentile(&all, 0.99));
        println!(
            "{:<82} {:>8.1}µs {:>8.1}µs",
            "all statements",
            micros(p50),
            micros(p99)
        );
        summary.push((label, p50, p99));
    }
    println!();
    for (label, p50, p99) in summary {
        println!(
            "decision {label}: p50 {:.1} µs, p99 {:.1} µs",
            micros(p50),
            micros(p99)
        );
    }
}
