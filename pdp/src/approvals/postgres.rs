//! The PostgreSQL approval store: table `palisade_approvals` (created at
//! connect if missing), one row per approval holding the protobuf; every
//! change runs in a transaction that locks the row (`SELECT ... FOR
//! UPDATE`), so two replicas resolving the same approval apply one change
//! after the other and the second sees the first's result.

use std::str::FromStr as _;

use palisade_proto::v1 as pb;
use prost::Message as _;
use tokio::sync::Mutex;
use tokio_postgres::{Client, Config, NoTls};

use super::{ApprovalError, ApprovalStore, Change};

/// Key of the advisory lock taken while creating the table ("palisapp").
const SCHEMA_LOCK: i64 = 0x7061_6c69_7361_7070;

const SCHEMA: &str = r"
CREATE TABLE IF NOT EXISTS palisade_approvals (
    id text PRIMARY KEY,
    session_id text NOT NULL,
    state integer NOT NULL,
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    payload bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS palisade_approvals_by_state ON palisade_approvals (state, created);
";

/// Approvals shared by PDP replicas through one PostgreSQL database.
pub struct PostgresApprovals {
    config: Config,
    client: Mutex<Option<Client>>,
}

async fn connect(config: &Config) -> Result<Client, ApprovalError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "approval database connection closed");
        }
    });
    Ok(client)
}

impl PostgresApprovals {
    /// Connects with a libpq-style connection string and creates the table if
    /// missing.
    pub async fn connect(conninfo: &str) -> Result<Self, ApprovalError> {
        let config = Config::from_str(conninfo)?;
        let mut client = connect(&config).await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await?;
        tx.batch_execute(SCHEMA).await?;
        tx.commit().await?;
        Ok(Self {
            config,
            client: Mutex::new(Some(client)),
        })
    }

    /// The shared connection, reopened if it was lost.
    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, ApprovalError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(connect(&self.config).await?);
        }
        Ok(guard)
    }
}

fn decode(payload: &[u8]) -> Result<pb::Approval, ApprovalError> {
    Ok(pb::Approval::decode(payload)?)
}

fn closed() -> ApprovalError {
    ApprovalError::Storage("no connection to the approval database".to_owned())
}

#[tonic::async_trait]
impl ApprovalStore for PostgresApprovals {
    async fn insert(&self, approval: pb::Approval) -> Result<(), ApprovalError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(closed)?;
        let n = client
            .execute(
                "INSERT INTO palisade_approvals (id, session_id, state, payload) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                &[
                    &approval.id,
                    &approval.session_id,
                    &approval.state,
                    &approval.encode_to_vec(),
                ],
            )
            .await?;
        if n == 0 {
            return Err(ApprovalError::Conflict(format!(
                "approval {} exists already",
                approval.id
            )));
        }
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<pb::Approval>, ApprovalError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(closed)?;
        let row = client
            .query_opt(
                "SELECT payload FROM palisade_approvals WHERE id = $1",
                &[&id],
            )
            .await?;
        row.map(|r| decode(r.get::<_, &[u8]>(0))).transpose()
    }

    async fn list(&self, states: &[pb::ApprovalState]) -> Result<Vec<pb::Approval>, ApprovalError> {
        let guard = self.client().await?;
        let client = guard.as_ref().ok_or_else(closed)?;
        let states: Vec<i32> = states.iter().map(|s| *s as i32).collect();
        let rows = client
            .query(
                "SELECT payload FROM palisade_approvals WHERE cardinality($1::int[]) = 0 OR state = ANY($1) ORDER BY created, id",
                &[&states],
            )
            .await?;
        rows.iter().map(|r| decode(r.get::<_, &[u8]>(0))).collect()
    }

    async fn update(&self, id: &str, change: Change<'_>) -> Result<pb::Approval, ApprovalError> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().ok_or_else(closed)?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT payload FROM palisade_approvals WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await?
            .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))?;
        let mut approval = decode(row.get::<_, &[u8]>(0))?;
        let before = approval.clone();
        change(&mut approval)?;
        if approval != before {
            tx.execute(
                "UPDATE palisade_approvals SET state = $2, payload = $3, updated = now() WHERE id = $1",
                &[&id, &approval.state, &approval.encode_to_vec()],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(approval)
    }
}
