//! The audit store: agents' audit events, stored durably, idempotently and
//! tamper-evidently, for `palisade sessions`, `palisade replay` and
//! `palisade audit verify`.
//!
//! Data flow: the gRPC `AuditService` decodes each event of a batch into an
//! [`EncodedEvent`] (keeping its bytes) and hands the batch to
//! [`AuditStore::append`]; `batch` groups it by session, keeps the events that
//! come next in each chain and links them with `chain`; the store writes them
//! and answers with one [`pb::EventAck`] per session. `summary` folds each
//! session's events into the [`pb::SessionSummary`] that
//! [`AuditStore::list_sessions`] filters. [`AuditStore::verify`] walks the
//! stored chains again with `check::ChainChecker`.
//!
//! Two stores implement [`AuditStore`]:
//! - [`EmbeddedStore`] (the default, no setup): append-only, hash-chained
//!   segment files with an in-memory index rebuilt at open.
//! - [`PostgresStore`]: several PDP replicas sharing one PostgreSQL database.
//!
//! Both pass the same suite, [`testkit::conformance`].
//!
//! # The chain
//!
//! Every session is its own hash chain: `hash = SHA-256(previous_hash ||
//! payload)`, and the first event of a session has `previous_hash = [0; 32]`.
//! The payload is the event's protobuf encoding as the agent wrote it into
//! its spool (plus the sending agent's name, see
//! [`EncodedEvent::attributed_to`]), stored unchanged. Anyone holding the
//! stored payloads (`GetSessionEventsResponse.payload`) can recompute the
//! chain with [`chain_hash`]; nothing depends on how an encoder orders
//! fields or map entries.
//!
//! Stores written before the chain covered the bytes as sent hold canonical
//! re-encodings, hashed the same way, so they verify unchanged. The reverse
//! does not hold: a PDP of that time required canonical bytes, and reports
//! newer events (the agent writes the sequence last) as broken. Replicas
//! sharing a PostgreSQL store must therefore all be upgraded before any of
//! them runs `verify`, and a store is not taken back to an older PDP.
//!
//! Protobuf types appear in this API although convention 6 keeps them at the
//! gRPC edge: the stored form *is* the protobuf event (the chain is defined
//! over its encoding), so converting to a domain type and back would only add
//! a place where the two could drift.

mod batch;
mod chain;
mod check;
mod embedded;
mod encoded;
mod error;
mod postgres;
mod summary;
#[doc(hidden)]
pub mod testkit;

use std::time::SystemTime;

use bytes::Bytes;
use palisade_proto::v1 as pb;
use prost::Message as _;
use tokio::sync::watch;

pub use chain::{GENESIS_HASH, chain_hash};
pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use encoded::EncodedEvent;
pub use error::AuditError;
pub use postgres::PostgresStore;

/// An event as stored: the event and its place in the session's hash chain.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// The event as the agent sent it.
    pub event: pb::AuditEvent,
    /// The hash of the session's previous event; [`GENESIS_HASH`] for the first.
    pub previous_hash: [u8; 32],
    /// `SHA-256(previous_hash || payload)`.
    pub hash: [u8; 32],
    /// The stored bytes of the event, which decode to [`event`](Self::event).
    pub payload: Bytes,
}

impl StoredEvent {
    /// Whether [`hash`](Self::hash) is the hash of this event on top of
    /// [`previous_hash`](Self::previous_hash), so a reader (`replay`) can
    /// check each link without trusting the store.
    pub fn link_is_valid(&self) -> bool {
        self.link_fault().is_none()
    }

    /// What is wrong with this link, if anything: the payload does not hash
    /// to [`hash`](Self::hash) on top of [`previous_hash`](Self::previous_hash),
    /// or does not decode to [`event`](Self::event).
    pub fn link_fault(&self) -> Option<&'static str> {
        if chain_hash(&self.previous_hash, &self.payload) != self.hash {
            Some("hash mismatch")
        } else if pb::AuditEvent::decode(self.payload.clone()).ok().as_ref() != Some(&self.event) {
            Some("the event shown is not the one hashed")
        } else {
            None
        }
    }
}

impl From<StoredEvent> for pb::GetSessionEventsResponse {
    fn from(e: StoredEvent) -> Self {
        Self {
            event: Some(e.event),
            // The proto leaves the first event's previous hash empty.
            previous_hash: if e.previous_hash == GENESIS_HASH {
                String::new()
            } else {
                hex::encode(e.previous_hash)
            },
            hash: hex::encode(e.hash),
            payload: e.payload,
        }
    }
}

impl TryFrom<pb::GetSessionEventsResponse> for StoredEvent {
    type Error = &'static str;

    /// Reads a reply of `GetSessionEvents` back (a `replay` client).
    fn try_from(reply: pb::GetSessionEventsResponse) -> Result<Self, Self::Error> {
        let hash = |hex: &str| -> Option<[u8; 32]> { hex::decode(hex).ok()?.try_into().ok() };
        let previous_hash = if reply.previous_hash.is_empty() {
            GENESIS_HASH
        } else {
            hash(&reply.previous_hash).ok_or("malformed previous hash")?
        };
        Ok(Self {
            event: reply.event.ok_or("no event")?,
            previous_hash,
            hash: hash(&reply.hash).ok_or("malformed hash")?,
            payload: reply.payload,
        })
    }
}

/// Which sessions [`AuditStore::list_sessions`] returns. Every set field must
/// match; the default matches every session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// The principal's id (`"<issuer>|<subject>"`) or its subject, exactly.
    pub principal: Option<String>,
    /// The target (database name the client asked for), exactly.
    pub target: Option<String>,
    /// The principal's `repository` claim, exactly.
    pub repository: Option<String>,
    /// Sessions started at or after this time.
    pub since: Option<SystemTime>,
    /// Sessions started strictly before this time.
    pub until: Option<SystemTime>,
    /// Only sessions with at least one denied statement.
    pub denied_only: bool,
    /// At most this many sessions (the newest ones); `None` is no limit.
    pub limit: Option<usize>,
}

/// The outcome of [`AuditStore::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Sessions whose chains were walked (up to the first broken event).
    pub sessions_checked: u64,
    /// Events whose links were checked (up to the first broken event).
    pub events_checked: u64,
    /// The first broken event found; `None` when every chain is intact.
    pub broken: Option<Broken>,
}

impl VerifyReport {
    /// Whether every checked chain is intact.
    pub fn intact(&self) -> bool {
        self.broken.is_none()
    }
}

/// Where a chain is broken, named so an operator can find the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The session of the broken event; empty when the damage cannot be
    /// attributed to a session (an unreadable record nobody indexed).
    pub session_id: String,
    /// The sequence of the first event that is broken or missing; 0 when
    /// unknown.
    pub sequence: u64,
    /// What is wrong: `hash mismatch`, `event missing (chain continues from 6
    /// to 8)`, `corrupt record in segment-000001.log at offset 1234: ...`.
    pub problem: String,
}

/// Durable, idempotent, tamper-evident storage of audit events.
///
/// Implementations must be safe to share between the gRPC services of one
/// PDP (`Arc<dyn AuditStore>`), and [`PostgresStore`] between PDP replicas.
#[tonic::async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Stores events idempotently by `(session_id, sequence)`.
    ///
    /// Within a session an event is stored only if its sequence is exactly
    /// the next one (last stored + 1), whatever the order inside the batch.
    /// An already stored sequence is ignored, even if its content differs
    /// (first write wins; a differing copy is logged). An event after a gap
    /// is not stored: the sender resends from its last ack. Sequence 0 is
    /// never stored.
    ///
    /// Returns one ack per session present in `events`, in order of first
    /// appearance, each the highest contiguous stored sequence (0 when none).
    /// Returns only once the data is durable (fsync for files, commit for
    /// PostgreSQL).
    async fn append(&self, events: Vec<EncodedEvent>) -> Result<Vec<pb::EventAck>, AuditError>;

    /// Summaries of the sessions matching `filter`, newest start first (ties
    /// by session id ascending, sessions without any time last).
    async fn list_sessions(
        &self,
        filter: &SessionFilter,
    ) -> Result<Vec<pb::SessionSummary>, AuditError>;

    /// The stored events of a session with a sequence above `after_sequence`,
    /// in order; empty for an unknown session.
    async fn session_events(
        &self,
        session_id: &str,
        after_sequence: u64,
    ) -> Result<Vec<StoredEvent>, AuditError>;

    /// Recomputes the hash chains of one session (or all) from the stored
    /// data, and checks them against the store's chain heads. Damage is a
    /// [`VerifyReport::broken`], not an error; errors are failures to read.
    async fn verify(&self, session_id: Option<&str>) -> Result<VerifyReport, AuditError>;

    /// A counter that changes whenever new events of any session are stored
    /// (for `replay --follow`); only its changes matter, not its value.
    fn subscribe(&self) -> watch::Receiver<u64>;
}
