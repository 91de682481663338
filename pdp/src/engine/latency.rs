//! How long an in-process decision takes with a policy set: the measurement
//! behind `cargo bench -p palisade-pdp --bench decide` and the decision
//! section of the integration benchmark (`scripts/bench.sh`), kept here so
//! both report the same thing.
//!
//! A CI principal (group `ci-generated-code`) on target `prod` decides a mix
//! of statements ([`STATEMENTS`]: allowed reads, refused writes, a held
//! delete, DDL in the sandbox, a dangerous function, a transaction
//! command), each many times, two ways: a Cedar evaluation every time
//! ([`Scope::decide_statement_uncached`]), and what a statement the scope
//! has decided before costs ([`Scope::decide_statement`], the agent's steady
//! state).

use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_sql::Attributes;

use super::{EngineError, Principal, Scope, SessionFacts, StatementVerdict};
use crate::policy::PolicySnapshot;

/// The statements decided, in the order reported.
pub const STATEMENTS: &[&str] = &[
    "SELECT id, total FROM orders WHERE id = 7",
    "SELECT r.day, o.total FROM reporting.daily r JOIN public.orders o ON o.day = r.day",
    "UPDATE orders SET total = 0 WHERE id = 1",
    "DELETE FROM migrations_tmp.backfill",
    "CREATE TABLE migrations_tmp.t (id int)",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT * FROM customers",
    "BEGIN",
];

/// Median and 99th percentile of a set of timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    /// The median.
    pub p50: Duration,
    /// The 99th percentile.
    pub p99: Duration,
}

impl Percentiles {
    /// Of `samples` (sorted here); zero when there are none.
    fn of(samples: &mut [Duration]) -> Self {
        samples.sort_unstable();
        let at = |p: f64| {
            let last = samples.len().saturating_sub(1);
            // Nearest rank; the product is at most `last`, so the cast is exact.
            let i = (last as f64 * p).round() as usize;
            samples.get(i.min(last)).copied().unwrap_or_default()
        };
        Self {
            p50: at(0.5),
            p99: at(0.99),
        }
    }
}

/// One way of deciding, over every statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    /// Per statement of [`STATEMENTS`], in order.
    pub per_statement: Vec<Percentiles>,
    /// Over all decisions of all statements.
    pub all: Percentiles,
}

/// Both ways of deciding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionLatency {
    /// A Cedar evaluation for every decision.
    pub uncached: Measured,
    /// A statement the scope has decided before.
    pub cached: Measured,
}

/// Why the measurement could not run.
#[derive(Debug, thiserror::Error)]
pub enum LatencyError {
    /// The policies do not know the benchmark's target.
    #[error("the benchmark principal has no scope: {0}")]
    Scope(#[from] EngineError),
    /// A statement of [`STATEMENTS`] is not one statement that analyses.
    #[error("benchmark statement `{sql}` does not analyse: {reason}")]
    Statement {
        /// The statement.
        sql: &'static str,
        /// What went wrong.
        reason: String,
    },
}

/// Decides every statement of [`STATEMENTS`] `rounds` times each way under
/// `snapshot` (the example policies: the principal and target are theirs).
pub fn measure(
    snapshot: Arc<PolicySnapshot>,
    rounds: usize,
) -> Result<DecisionLatency, LatencyError> {
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
    let scope = Scope::new(snapshot, &principal, &facts)?;
    let attributes = STATEMENTS
        .iter()
        .map(|&sql| {
            let mut statements =
                palisade_sql::analyze(sql, &["public"]).map_err(|e| LatencyError::Statement {
                    sql,
                    reason: e.to_string(),
                })?;
            match statements.len() {
                1 => Ok(statements.remove(0).attributes),
                n => Err(LatencyError::Statement {
                    sql,
                    reason: format!("{n} statements, not one"),
                }),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Warm up: the scope's entity cache (tables, masks) and per-action slices.
    for a in &attributes {
        std::hint::black_box(scope.decide_statement_uncached(a));
        std::hint::black_box(scope.decide_statement(a));
    }
    Ok(DecisionLatency {
        uncached: time_each(&attributes, rounds, |a| scope.decide_statement_uncached(a)),
        cached: time_each(&attributes, rounds, |a| scope.decide_statement(a)),
    })
}

fn time_each(
    attributes: &[Arc<Attributes>],
    rounds: usize,
    decide: impl Fn(&Attributes) -> StatementVerdict,
) -> Measured {
    let mut all = Vec::with_capacity(rounds * attributes.len());
    let mut per_statement = Vec::with_capacity(attributes.len());
    for a in attributes {
        let mut samples = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let started = Instant::now();
            std::hint::black_box(decide(a.as_ref()));
            samples.push(started.elapsed());
        }
        all.extend_from_slice(&samples);
        per_statement.push(Percentiles::of(&mut samples));
    }
    Measured {
        per_statement,
        all: Percentiles::of(&mut all),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn percentiles_are_nearest_ranks() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let p = Percentiles::of(&mut samples);
        assert_eq!(p.p50, Duration::from_micros(51));
        assert_eq!(p.p99, Duration::from_micros(99));
        assert_eq!(
            Percentiles::of(&mut []),
            Percentiles {
                p50: Duration::ZERO,
                p99: Duration::ZERO
            }
        );
    }

    #[test]
    fn measures_every_statement_both_ways_with_the_example_policies() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let snapshot = crate::policy::load_dir(&dir).expect("example policies load");
        let latency = measure(Arc::new(snapshot), 3).expect("measures");
        for measured in [&latency.uncached, &latency.cached] {
            assert_eq!(measured.per_statement.len(), STATEMENTS.len());
            assert!(measured.all.p50 <= measured.all.p99);
            assert!(measured.all.p99 > Duration::ZERO);
        }
    }
}
