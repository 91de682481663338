//! `AuditService` (agents stream events in, acknowledgements go back) and
//! `SessionService` (list, replay, verify) over the audit store.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::Stream;
use palisade_proto::v1 as pb;
use pb::audit_service_server::AuditService;
use pb::session_service_server::SessionService;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use super::peer::agent_name;
use crate::audit::{AuditStore, EncodedEvent, SessionFilter, StoredEvent};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Both services share one store.
#[derive(Clone)]
pub struct AuditApi {
    store: Arc<dyn AuditStore>,
}

impl AuditApi {
    /// Services over `store`.
    pub fn new(store: Arc<dyn AuditStore>) -> Self {
        Self { store }
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    warn!(error = %e, "audit store error");
    Status::unavailable(format!("the audit store failed: {e}"))
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    type StreamEventsStream = BoxStream<pb::StreamEventsResponse>;

    async fn stream_events(
        &self,
        request: Request<Streaming<pb::StreamEventsRequest>>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let agent = agent_name(&request);
        let mut incoming = request.into_inner();
        let store = self.store.clone();
        info!(%agent, "audit stream opened");
        let output = async_stream(move |tx| async move {
            while let Some(batch) = incoming.next().await {
                let batch = match batch {
                    Ok(b) => b,
                    Err(status) => {
                        info!(%agent, %status, "audit stream ended");
                        return;
                    }
                };
                let reply = match decode_batch(batch.events, &agent) {
                    Err(status) => {
                        warn!(%agent, %status, "audit batch refused");
                        Err(status)
                    }
                    Ok(events) => match store.append(events).await {
                        Ok(acks) => Ok(pb::StreamEventsResponse { acks }),
                        Err(e) => Err(internal(e)),
                    },
                };
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(output))
    }
}

/// Decodes a batch's events, each attributed to the agent that sent it
/// whatever it claims. One malformed event refuses the whole batch (nothing
/// of it is stored), as a request that does not decode would be.
fn decode_batch(events: Vec<Bytes>, agent: &str) -> Result<Vec<EncodedEvent>, Status> {
    let count = events.len();
    events
        .into_iter()
        .zip(1..)
        .map(|(payload, n)| {
            EncodedEvent::decode(payload)
                .map(|event| event.attributed_to(agent))
                .map_err(|e| {
                    Status::invalid_argument(format!(
                        "audit event {n} of {count} in the batch does not decode: {e}"
                    ))
                })
        })
        .collect()
}

/// A stream fed by a task, so the handler can keep state across messages.
fn async_stream<T, F, Fut>(body: F) -> BoxStream<T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

fn system_time(t: Option<prost_types::Timestamp>) -> Option<SystemTime> {
    let t = t?;
    let secs = u64::try_from(t.seconds).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, u32::try_from(t.nanos).unwrap_or(0)))
}

fn is_end(e: &StoredEvent) -> bool {
    matches!(
        e.event.event,
        Some(pb::audit_event::Event::SessionEnded(_))
            | Some(pb::audit_event::Event::SessionRefused(_))
    )
}

#[tonic::async_trait]
impl SessionService for AuditApi {
    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let pb::ListSessionsRequest {
            principal,
            target,
            repository,
            since,
            until,
            denied_only,
            limit,
        } = request.into_inner();
        let some = |s: String| (!s.is_empty()).then_some(s);
        let filter = SessionFilter {
            principal: some(principal),
            target: some(target),
            repository: some(repository),
            since: system_time(since),
            until: system_time(until),
            denied_only,
            limit: (limit > 0).then_some(limit as usize),
        };
        let sessions = self.store.list_sessions(&filter).await.map_err(internal)?;
        Ok(Response::new(pb::ListSessionsResponse { sessions }))
    }

    type GetSessionEventsStream = BoxStream<pb::GetSessionEventsResponse>;

    async fn get_session_events(
        &self,
        request: Request<pb::GetSessionEventsRequest>,
    ) -> Result<Response<Self::GetSessionEventsStream>, Status> {
        let pb::GetSessionEventsRequest { session_id, follow } = request.into_inner();
        let store = self.store.clone();
        let first = store
            .session_events(&session_id, 0)
            .await
            .map_err(internal)?;
        if first.is_empty() && !follow {
            return Err(Status::not_found(format!(
                "no recorded session `{session_id}`"
            )));
        }
        let output = async_stream(move |tx| async move {
            let mut wake = store.subscribe();
            let mut last = 0u64;
            let mut batch = first;
            loop {
                let mut ended = false;
                for e in batch {
                    last = e.event.sequence;
                    ended |= is_end(&e);
                    if tx.send(Ok(e.into())).await.is_err() {
                        return;
                    }
                }
                if !follow || ended {
                    return;
                }
                // Wait for new events (or the client going away).
                tokio::select! {
                    changed = wake.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                }
                batch = match store.session_events(&session_id, last).await {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(internal(e))).await;
                        return;
                    }
                };
            }
        });
        Ok(Response::new(output))
    }

    async fn verify_audit(
        &self,
        request: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        let session = request.into_inner().session_id;
        let session = (!session.is_empty()).then_some(session);
        let report = self
            .store
            .verify(session.as_deref())
            .await
            .map_err(internal)?;
        let intact = report.broken.is_none();
        let (broken_session_id, broken_sequence, problem) = match report.broken {
            Some(b) => (b.session_id, b.sequence, b.problem),
            None => (String::new(), 0, String::new()),
        };
        Ok(Response::new(pb::VerifyAuditResponse {
            intact,
            sessions_checked: report.sessions_checked,
            events_checked: report.events_checked,
            broken_session_id,
            broken_sequence,
            problem,
        }))
    }
}
