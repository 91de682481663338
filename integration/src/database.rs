//! The test PostgreSQL as tests use it beside the stack: counting rows on the
//! database itself (what really ran, not what the agent said), and the
//! `audit` database that PDPs share.

use palisade_pdp::config::AuditConfig;

use crate::postgres::TestPostgres;

/// The single count `query` returns (`SELECT count(*) ...`), read on the
/// `prod` database directly, past the agent and its policies.
pub async fn count(pg: &TestPostgres, query: &str) -> anyhow::Result<i64> {
    Ok(pg
        .connect("prod")
        .await?
        .query_one(query, &[])
        .await?
        .get(0))
}

/// The PDP's audit (and approval) store in the `audit` database that
/// [`crate::agent::Stack`] creates: every PDP configured with it shares one
/// record and one set of approvals, as replicas do.
pub fn postgres_audit(pg: &TestPostgres) -> AuditConfig {
    AuditConfig::Postgres {
        conninfo: pg.connection_string("audit"),
    }
}
