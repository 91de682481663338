//! The PostgreSQL audit store, for several PDP replicas sharing one
//! database.
//!
//! # Schema
//!
//! Created at connect if missing (under an advisory lock, so replicas
//! starting together do not race):
//!
//! - `palisade_audit_events`: one row per event, keyed by `(session_id,
//!   sequence)`; `payload` holds the event's bytes as received, which the chain hashes,
//!   `previous_hash` and `hash` the link. `time`, `principal`, `target` and
//!   `kind` are copies for people querying the table by hand.
//! - `palisade_audit_sessions`: one row per session: the chain head
//!   (`last_sequence`, `last_hash`), the summary state (`summary`, protobuf),
//!   and the columns `list_sessions` filters and sorts on.
//!
//! # Appending
//!
//! Each session of a batch is one transaction: its sessions row is created
//! if missing and locked (`SELECT ... FOR UPDATE`), so two replicas
//! appending the same session wait for each other and never fork its chain;
//! only the next sequences are inserted; the head and summary are updated;
//! `NOTIFY palisade_audit` is sent; the commit makes the ack true.
//!
//! # Following
//!
//! [`AuditStore::subscribe`] is fed by `LISTEN palisade_audit` on a
//! dedicated connection (reconnecting with backoff, and waking subscribers on
//! every reconnection, since events may have been stored meanwhile).

mod listen;
mod pool;

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::TryStreamExt as _;
use palisade_proto::v1 as pb;
use prost::Message as _;
use prost_types::Timestamp;
use tokio::sync::watch;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, IsolationLevel, Row};

use self::pool::Pool;
use super::batch::{Plan, SessionBatch, group_by_session, plan, warn_if_differs};
use super::chain::{GENESIS_HASH, Head, hash_from_slice};
use super::check::{ChainChecker, StoredRecord};
use super::summary::{SummaryState, event_kind, system_time_key, time_key};
use super::{AuditError, AuditStore, EncodedEvent, SessionFilter, StoredEvent, VerifyReport};

/// Key of the advisory lock taken while creating the schema ("palisade").
const SCHEMA_LOCK: i64 = 0x7061_6c69_7361_6465;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS palisade_audit_sessions (
    session_id text PRIMARY KEY,
    last_sequence bigint NOT NULL,
    last_hash bytea NOT NULL,
    summary bytea NOT NULL,
    principal_id text NOT NULL DEFAULT '',
    principal_subject text NOT NULL DEFAULT '',
    repository text,
    target text NOT NULL DEFAULT '',
    started_secs bigint,
    started_nanos integer,
    started timestamptz,
    denied bigint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS palisade_audit_sessions_by_start
    ON palisade_audit_sessions (started_secs DESC, started_nanos DESC);
CREATE TABLE IF NOT EXISTS palisade_audit_events (
    session_id text NOT NULL,
    sequence bigint NOT NULL,
    time timestamptz,
    principal text NOT NULL,
    target text NOT NULL,
    kind text NOT NULL,
    payload bytea NOT NULL,
    previous_hash bytea NOT NULL,
    hash bytea NOT NULL,
    PRIMARY KEY (session_id, sequence)
);
"#;

const CREATE_SESSION: &str = "INSERT INTO palisade_audit_sessions \
     (session_id, last_sequence, last_hash, summary) VALUES ($1, 0, $2, $3) \
     ON CONFLICT (session_id) DO NOTHING";

const LOCK_SESSION: &str = "SELECT last_sequence, last_hash, summary \
     FROM palisade_audit_sessions WHERE session_id = $1 FOR UPDATE";

const STORED_PAYLOADS: &str = "SELECT sequence, payload FROM palisade_audit_events \
     WHERE session_id = $1 AND sequence = ANY($2)";

const INSERT_EVENTS: &str = "INSERT INTO palisade_audit_events \
     (session_id, sequence, time, principal, target, kind, payload, previous_hash, hash) \
     SELECT $1, * FROM UNNEST($2::bigint[], $3::timestamptz[], $4::text[], $5::text[], \
     $6::text[], $7::bytea[], $8::bytea[], $9::bytea[])";

const UPDATE_SESSION: &str = "UPDATE palisade_audit_sessions SET \
     last_sequence = $2, last_hash = $3, summary = $4, principal_id = $5, \
     principal_subject = $6, repository = $7, target = $8, started_secs = $9, \
     started_nanos = $10, started = $11, denied = $12 WHERE session_id = $1";

const SESSION_EVENTS: &str = "SELECT sequence, payload, previous_hash, hash \
     FROM palisade_audit_events WHERE session_id = $1 AND sequence > $2 ORDER BY sequence";

const VERIFY_EVENTS: &str = "SELECT session_id, sequence, payload, previous_hash, hash \
     FROM palisade_audit_events WHERE ($1::text IS NULL OR session_id = $1) \
     ORDER BY session_id, sequence";

const VERIFY_HEADS: &str = "SELECT session_id, last_sequence, last_hash \
     FROM palisade_audit_sessions WHERE last_sequence > 0 \
     AND ($1::text IS NULL OR session_id = $1)";

/// The audit store of replicated PDPs; see the [module documentation](self).
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No connection settings: they hold the password.
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

struct Inner {
    pool: Pool,
    changes: Arc<watch::Sender<u64>>,
    _listener: listen::Listener,
}

impl PostgresStore {
    /// Connects with a libpq-style connection string (`host=... user=...`
    /// or a `postgresql://` URL; no TLS yet), creates the schema if missing,
    /// and starts listening for other replicas' appends.
    pub async fn connect(conninfo: &str) -> Result<Self, AuditError> {
        let config = Config::from_str(conninfo)?;
        let pool = Pool::new(config);
        let mut client = pool.get().await?;
        create_schema(&mut client).await?;
        pool.put(client);
        let changes = Arc::new(watch::Sender::new(0));
        let listener = listen::spawn(pool.config().clone(), Arc::clone(&changes));
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                changes,
                _listener: listener,
            }),
        })
    }

    /// Appends one session's events in one transaction; returns its ack.
    async fn append_session(&self, batch: SessionBatch) -> Result<u64, AuditError> {
        let mut client = self.inner.pool.get().await?;
        let (ack, stored) = store_session(&mut client, batch).await?;
        self.inner.pool.put(client);
        if stored {
            listen::bump(&self.inner.changes);
        }
        Ok(ack)
    }
}

async fn create_schema(client: &mut Client) -> Result<(), AuditError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    tx.batch_execute(SCHEMA).await?;
    tx.commit().await?;
    Ok(())
}

/// The transaction of one session; returns the ack and whether anything new
/// was stored.
async fn store_session(
    client: &mut Client,
    batch: SessionBatch,
) -> Result<(u64, bool), AuditError> {
    let session_id = batch.session_id.clone();
    let tx = client.transaction().await?;
    let empty: &[u8] = &[];
    tx.execute(
        CREATE_SESSION,
        &[&session_id, &GENESIS_HASH.as_slice(), &empty],
    )
    .await?;
    let row = tx.query_one(LOCK_SESSION, &[&session_id]).await?;
    let head = Head {
        last_sequence: to_u64(row.try_get(0)?)?,
        last_hash: hash_from_slice(row.try_get(1)?).ok_or_else(|| {
            AuditError::Schema(format!("chain head of `{session_id}` is not 32 bytes"))
        })?,
    };
    let mut summary = SummaryState::decode(row.try_get::<_, &[u8]>(2)?)
        .map_err(|e| AuditError::Schema(format!("summary of `{session_id}`: {e}")))?;
    let plan = plan(batch, head);

    if !plan.repeated.is_empty() {
        let sequences: Vec<i64> = plan
            .repeated
            .iter()
            .filter_map(|resent| i64::try_from(resent.event.sequence).ok())
            .collect();
        let rows = tx
            .query(STORED_PAYLOADS, &[&session_id, &sequences])
            .await?;
        for row in rows {
            let sequence = to_u64(row.try_get(0)?)?;
            let payload: &[u8] = row.try_get(1)?;
            if let Some(resent) = plan.repeated.iter().find(|e| e.event.sequence == sequence) {
                warn_if_differs(resent, payload);
            }
        }
    }
    if plan.new.is_empty() {
        tx.rollback().await?;
        return Ok((head.last_sequence, false));
    }

    insert_events(&tx, &plan, &mut summary).await?;
    let start = summary.start_time();
    let start_key = start.map(time_key);
    let params: [&(dyn ToSql + Sync); 12] = [
        &session_id,
        &to_i64(plan.head.last_sequence)?,
        &plan.head.last_hash.as_slice(),
        &summary.encode_to_vec(),
        &summary.principal_id(),
        &summary.principal_subject(),
        &summary.repository(),
        &summary.target,
        &start_key.map(|(secs, _)| secs),
        &start_key.map(|(_, nanos)| nanos),
        &start.and_then(sql_time),
        &to_i64(summary.denied)?,
    ];
    tx.execute(UPDATE_SESSION, &params).await?;
    tx.batch_execute(&format!("NOTIFY {}", listen::CHANNEL))
        .await?;
    tx.commit().await?;
    Ok((plan.head.last_sequence, true))
}

/// Inserts a plan's new events, folding each into `summary` first (so each
/// row carries the principal and target known at that point).
async fn insert_events(
    tx: &tokio_postgres::Transaction<'_>,
    plan: &Plan,
    summary: &mut SummaryState,
) -> Result<(), AuditError> {
    let n = plan.new.len();
    let mut sequences = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    let mut principals = Vec::with_capacity(n);
    let mut targets = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    let mut previous = Vec::with_capacity(n);
    let mut hashes = Vec::with_capacity(n);
    for linked in &plan.new {
        let event = &linked.event.event;
        summary.apply(event);
        sequences.push(to_i64(event.sequence)?);
        times.push(event.time.and_then(sql_time));
        principals.push(summary.principal_id().to_owned());
        targets.push(summary.target.clone());
        kinds.push(event_kind(event));
        payloads.push(linked.event.payload.as_ref());
        previous.push(linked.previous_hash.as_slice());
        hashes.push(linked.hash.as_slice());
    }
    tx.execute(
        INSERT_EVENTS,
        &[
            &plan.session_id,
            &sequences,
            &times,
            &principals,
            &targets,
            &kinds,
            &payloads,
            &previous,
            &hashes,
        ],
    )
    .await?;
    Ok(())
}

#[tonic::async_trait]
impl AuditStore for PostgresStore {
    async fn append(&self, events: Vec<EncodedEvent>) -> Result<Vec<pb::EventAck>, AuditError> {
        let mut acks = Vec::new();
        for batch in group_by_session(events) {
            let session_id = batch.session_id.clone();
            let sequence = self.append_session(batch).await?;
            acks.push(pb::EventAck {
                session_id,
                sequence,
            });
        }
        Ok(acks)
    }

    async fn list_sessions(
        &self,
        filter: &SessionFilter,
    ) -> Result<Vec<pb::SessionSummary>, AuditError> {
        let (sql, params) = list_query(filter);
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as _).collect();
        let client = self.inner.pool.get().await?;
        let rows = client.query(&sql, &refs).await?;
        self.inner.pool.put(client);
        rows.iter()
            .map(|row| {
                let session_id: String = row.try_get(0)?;
                let summary = SummaryState::decode(row.try_get::<_, &[u8]>(1)?)
                    .map_err(|e| AuditError::Schema(format!("summary of `{session_id}`: {e}")))?;
                Ok(summary.to_summary(&session_id))
            })
            .collect()
    }

    async fn session_events(
        &self,
        session_id: &str,
        after_sequence: u64,
    ) -> Result<Vec<StoredEvent>, AuditError> {
        let after = i64::try_from(after_sequence).unwrap_or(i64::MAX);
        let client = self.inner.pool.get().await?;
        let rows = client.query(SESSION_EVENTS, &[&session_id, &after]).await?;
        self.inner.pool.put(client);
        rows.iter()
            .map(|row| stored_event(session_id, row))
            .collect()
    }

    async fn verify(&self, session_id: Option<&str>) -> Result<VerifyReport, AuditError> {
        let mut client = self.inner.pool.get().await?;
        let report = verify(&mut client, session_id).await?;
        self.inner.pool.put(client);
        Ok(report)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}

/// The `list_sessions` query for `filter`, with its parameters.
fn list_query(filter: &SessionFilter) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    let SessionFilter {
        principal,
        target,
        repository,
        since,
        until,
        denied_only,
        limit,
    } = filter;
    let mut sql = String::from(
        "SELECT session_id, summary FROM palisade_audit_sessions WHERE last_sequence > 0",
    );
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    if let Some(principal) = principal {
        let p = bind(&mut params, Box::new(principal.clone()));
        sql.push_str(&format!(
            " AND (principal_id = {p} OR principal_subject = {p})"
        ));
    }
    if let Some(target) = target {
        let p = bind(&mut params, Box::new(target.clone()));
        sql.push_str(&format!(" AND target = {p}"));
    }
    if let Some(repository) = repository {
        let p = bind(&mut params, Box::new(repository.clone()));
        sql.push_str(&format!(" AND repository = {p}"));
    }
    if let Some(since) = since {
        let (secs, nanos) = system_time_key(*since);
        let s = bind(&mut params, Box::new(secs));
        let n = bind(&mut params, Box::new(nanos));
        sql.push_str(&format!(" AND (started_secs, started_nanos) >= ({s}, {n})"));
    }
    if let Some(until) = until {
        let (secs, nanos) = system_time_key(*until);
        let s = bind(&mut params, Box::new(secs));
        let n = bind(&mut params, Box::new(nanos));
        sql.push_str(&format!(" AND (started_secs, started_nanos) < ({s}, {n})"));
    }
    if *denied_only {
        sql.push_str(" AND denied > 0");
    }
    sql.push_str(
        " ORDER BY started_secs DESC NULLS LAST, started_nanos DESC NULLS LAST, session_id COLLATE \"C\"",
    );
    if let Some(limit) = limit {
        let limit = i64::try_from(*limit).unwrap_or(i64::MAX);
        let l = bind(&mut params, Box::new(limit));
        sql.push_str(&format!(" LIMIT {l}"));
    }
    (sql, params)
}

/// Adds a parameter; returns its placeholder.
fn bind(
    params: &mut Vec<Box<dyn ToSql + Sync + Send>>,
    value: Box<dyn ToSql + Sync + Send>,
) -> String {
    params.push(value);
    format!("${}", params.len())
}

fn stored_event(session_id: &str, row: &Row) -> Result<StoredEvent, AuditError> {
    let sequence = to_u64(row.try_get(0)?)?;
    let unreadable = |reason: String| AuditError::Unreadable {
        session_id: session_id.to_owned(),
        sequence,
        reason,
    };
    let payload = bytes::Bytes::copy_from_slice(row.try_get::<_, &[u8]>(1)?);
    let event = pb::AuditEvent::decode(payload.clone())
        .map_err(|e| unreadable(format!("event does not decode: {e}")))?;
    if event.session_id != session_id || event.sequence != sequence {
        return Err(unreadable("the row holds another event".to_owned()));
    }
    let (Some(previous_hash), Some(hash)) = (
        hash_from_slice(row.try_get(2)?),
        hash_from_slice(row.try_get(3)?),
    ) else {
        return Err(unreadable("malformed hash".to_owned()));
    };
    Ok(StoredEvent {
        event,
        previous_hash,
        hash,
        payload,
    })
}

/// Recomputes the chains from the rows, in one consistent snapshot.
async fn verify(client: &mut Client, only: Option<&str>) -> Result<VerifyReport, AuditError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut checker = ChainChecker::new(only);
    let rows = tx
        .query_raw(VERIFY_EVENTS, [&only as &(dyn ToSql + Sync)])
        .await?;
    let mut rows = std::pin::pin!(rows);
    while let Some(row) = rows.try_next().await? {
        let session_id: &str = row.try_get(0)?;
        let sequence: i64 = row.try_get(1)?;
        let record = StoredRecord {
            payload: row.try_get(2)?,
            previous_hash: row.try_get(3)?,
            hash: row.try_get(4)?,
            claimed: Some((session_id, u64::try_from(sequence).unwrap_or(0))),
        };
        if let Err(broken) = checker.check(&record, || None) {
            let (sessions_checked, events_checked) = checker.counts();
            return Ok(VerifyReport {
                sessions_checked,
                events_checked,
                broken: Some(broken),
            });
        }
    }
    let mut heads = Vec::new();
    for row in tx.query(VERIFY_HEADS, &[&only]).await? {
        let session_id: String = row.try_get(0)?;
        let head = Head {
            last_sequence: to_u64(row.try_get(1)?)?,
            // A malformed head hash cannot match any chain: reported there.
            last_hash: hash_from_slice(row.try_get(2)?).unwrap_or([0xff; 32]),
        };
        heads.push((session_id, head));
    }
    tx.commit().await?;
    Ok(match checker.finish(heads) {
        Ok((sessions_checked, events_checked)) => VerifyReport {
            sessions_checked,
            events_checked,
            broken: None,
        },
        Err((sessions_checked, events_checked, broken)) => VerifyReport {
            sessions_checked,
            events_checked,
            broken: Some(broken),
        },
    })
}

fn to_u64(value: i64) -> Result<u64, AuditError> {
    u64::try_from(value).map_err(|_| AuditError::Schema(format!("negative sequence {value}")))
}

fn to_i64(value: u64) -> Result<i64, AuditError> {
    i64::try_from(value).map_err(|_| AuditError::Schema(format!("sequence {value} out of range")))
}

/// A time for a `timestamptz` column, when in years 1900..=9999 (outside,
/// the column is NULL; the exact time is always in the payload).
fn sql_time(time: Timestamp) -> Option<SystemTime> {
    const MIN: i64 = -2_208_988_800; // 1900-01-01
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59
    let (secs, nanos) = time_key(time);
    if !(MIN..=MAX).contains(&secs) {
        return None;
    }
    let nanos = Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
    if secs >= 0 {
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs()) + nanos)
    } else {
        SystemTime::UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .map(|t| t + nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_query_binds_every_filter() {
        let filter = SessionFilter {
            principal: Some("alice".into()),
            target: Some("db".into()),
            repository: Some("org/app".into()),
            since: Some(SystemTime::UNIX_EPOCH),
            until: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(5)),
            denied_only: true,
            limit: Some(3),
        };
        let (sql, params) = list_query(&filter);
        assert_eq!(params.len(), 8);
        assert!(
            sql.contains("principal_id = $1 OR principal_subject = $1"),
            "{sql}"
        );
        assert!(sql.contains("LIMIT $8"), "{sql}");
        assert!(sql.contains("denied > 0"), "{sql}");
        let (plain, none) = list_query(&SessionFilter::default());
        assert!(none.is_empty());
        assert!(!plain.contains('$'));
    }

    #[test]
    fn sql_time_range() {
        let t = |seconds| Timestamp { seconds, nanos: 5 };
        assert_eq!(
            sql_time(t(10)),
            Some(SystemTime::UNIX_EPOCH + Duration::new(10, 5))
        );
        assert!(sql_time(t(-10)).is_some());
        assert_eq!(sql_time(t(i64::MAX)), None);
        assert_eq!(sql_time(t(i64::MIN)), None);
    }
}
