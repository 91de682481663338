//! What the PDP spends on each audit event it stores: a `StreamEvents`
//! request of 512 statement events from 8 sessions (the shape an agent
//! sends under pgbench load), decoded as the `AuditService` does on a
//! runtime worker (the request by tonic, then each event, attributed to its
//! agent) and appended to the embedded store in a temp dir (its blocking
//! thread, durable write included). Prints the median and p90 per event over the
//! batches, and events per second.
//!
//! `cargo bench -p palisade-pdp --bench ingest`

#![expect(
    clippy::expect_used,
    reason = "benchmark setup: a failure aborts the run"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use palisade_pdp::audit::{AuditStore, EmbeddedStore, EncodedEvent};
use palisade_proto::v1 as pb;
use prost::Message as _;

// The allocator of the `palisade-pdp` binary: which thread frees what
// matters to mimalloc, and so to this measurement.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SESSIONS: u64 = 8;
const PER_SESSION: u64 = 64;
const BATCHES: u64 = 300;

/// A statement event as the agent records one of pgbench's select-only
/// transactions.
fn event(session: u64, sequence: u64) -> pb::AuditEvent {
    let relation = || pb::Relation {
        schema: "public".to_owned(),
        name: "pgbench_accounts".to_owned(),
    };
    pb::AuditEvent {
        session_id: format!("5f0c6a2e-8d1b-4c3e-9a57-0000000000{session:02}"),
        sequence,
        time: Some(prost_types::Timestamp {
            seconds: 1_796_000_000 + i64::try_from(sequence).unwrap_or(0),
            nanos: 123_456_789,
        }),
        agent_id: "agent-bench".to_owned(),
        event: Some(pb::audit_event::Event::Statement(pb::StatementExecuted {
            text: "SELECT abalance FROM pgbench_accounts WHERE aid = $1;".to_owned(),
            attributes: Some(pb::StatementAttributes {
                kind: pb::StatementKind::Select as i32,
                reads: vec![relation()],
                has_where: true,
                fingerprint: "a8f3c1d2e4b5a697".to_owned(),
                normalized: "SELECT abalance FROM pgbench_accounts WHERE aid = $1".to_owned(),
                filtered_columns: vec![pb::ColumnRef {
                    relation: Some(relation()),
                    column: "aid".to_owned(),
                }],
                ..Default::default()
            }),
            effect: pb::Effect::Allow as i32,
            determining_policies: vec!["dba-all-statements".to_owned()],
            rows: 1,
            command_tag: "SELECT 1".to_owned(),
            duration: Some(prost_types::Duration {
                seconds: 0,
                nanos: 41_000,
            }),
            result_columns: vec!["abalance".to_owned()],
            cached_decision: true,
            protocol: "extended".to_owned(),
            ..Default::default()
        })),
    }
}

/// Request `batch` (0-based), encoded as the agent sends it.
fn request(batch: u64) -> Vec<u8> {
    let first = batch * PER_SESSION + 1;
    let events = (first..first + PER_SESSION)
        .flat_map(|sequence| (0..SESSIONS).map(move |session| event(session, sequence)))
        .map(|event| Bytes::from(event.encode_to_vec()))
        .collect();
    pb::StreamEventsRequest { events }.encode_to_vec()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn AuditStore> =
        Arc::new(EmbeddedStore::open(dir.path()).expect("embedded store"));
    // tonic decodes from a `Bytes` buffer, so the events are slices of it.
    let requests: Vec<Bytes> = (0..BATCHES).map(|b| Bytes::from(request(b))).collect();
    let events_per_batch = (SESSIONS * PER_SESSION) as f64;

    let took: Vec<Duration> = runtime.block_on(async move {
        // On a worker, as tonic's stream: decode, then append.
        tokio::spawn(async move {
            let mut took = Vec::with_capacity(requests.len());
            for bytes in requests {
                let started = Instant::now();
                let request = pb::StreamEventsRequest::decode(bytes).expect("decode");
                let events = request
                    .events
                    .into_iter()
                    .map(|e| {
                        EncodedEvent::decode(e)
                            .expect("event decodes")
                            .attributed_to("agent-bench")
                    })
                    .collect();
                let acks = store.append(events).await.expect("append");
                took.push(started.elapsed());
                assert_eq!(acks.len() as u64, SESSIONS);
            }
            took
        })
        .await
        .expect("bench task")
    });

    let mut per_event: Vec<f64> = took
        .iter()
        .map(|d| d.as_secs_f64() * 1e6 / events_per_batch)
        .collect();
    per_event.sort_by(f64::total_cmp);
    let at = |q: f64| per_event[((per_event.len() - 1) as f64 * q) as usize];
    let total: Duration = took.iter().sum();
    println!(
        "audit ingest, embedded store, {BATCHES} requests of {SESSIONS} sessions x \
         {PER_SESSION} statement events: p50 {:.2} µs/event, p90 {:.2} µs/event, \
         {:.0} events/s",
        at(0.5),
        at(0.9),
        (BATCHES * SESSIONS * PER_SESSION) as f64 / total.as_secs_f64()
    );
}
