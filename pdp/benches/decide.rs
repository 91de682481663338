//! In-process decision latency of the example policy set: median and p99
//! per statement decision, for a CI principal, over a mix of statements
//! (allowed reads, refused writes, held deletes, DDL in the sandbox); see
//! `palisade_pdp::engine::latency`, which the integration benchmark
//! (`scripts/bench.sh`) reports from too.
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
use std::time::Duration;

use palisade_pdp::engine::latency::{self, Measured, STATEMENTS};
use palisade_pdp::policy::load_dir;

// The allocator of the `palisade-pdp` binary, so the numbers are the
// service's own (Cedar evaluation allocates a good deal per request).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Decisions timed per statement and way.
const ROUNDS: usize = 5_000;

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn print(label: &str, measured: &Measured) {
    println!();
    println!("{:<82} {:>10} {:>10}", label, "p50", "p99");
    for (sql, p) in STATEMENTS.iter().zip(&measured.per_statement) {
        println!(
            "{:<82} {:>8.1}µs {:>8.1}µs",
            sql,
            micros(p.p50),
            micros(p.p99)
        );
    }
    println!(
        "{:<82} {:>8.1}µs {:>8.1}µs",
        "all statements",
        micros(measured.all.p50),
        micros(measured.all.p99)
    );
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let snapshot = Arc::new(load_dir(&dir).expect("example policies load"));
    let latency = latency::measure(snapshot, ROUNDS).expect("the benchmark runs");
    let ways = [
        ("uncached (Cedar evaluation)", &latency.uncached),
        ("cached (repeated statement)", &latency.cached),
    ];
    for (label, measured) in ways {
        print(label, measured);
    }
    println!();
    for (label, measured) in ways {
        println!(
            "decision {label}: p50 {:.1} µs, p99 {:.1} µs",
            micros(measured.all.p50),
            micros(measured.all.p99)
        );
    }
}
