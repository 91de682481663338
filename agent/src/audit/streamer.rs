//! The streamer: one task that keeps a `StreamEvents` call open to the PDP
//! and sends the spool through it, oldest first.
//!
//! Each call starts from the oldest segment and skips what is acknowledged,
//! so everything unacknowledged is sent again after a reconnect (the PDP
//! stores idempotently by `(session_id, sequence)`). At most [`WINDOW`]
//! requests wait for acknowledgement; the oldest must be acknowledged within
//! [`ACK_TIMEOUT`] or the call is dropped and opened again, so a PDP that
//! stops answering cannot stall audit silently. Calls that fail are retried
//! with capped exponential backoff.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use palisade_proto::v1 as pb;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tonic::transport::Channel;
use tracing::{debug, error, info, warn};

use super::frame::{Next, Record, RecordReader};
use super::spool::Shared;

/// How long new events may wait to join the next request once the stream
/// has caught up. Each request costs the PDP a disk sync and a round of
/// framing whatever its size, so under load it pays to gather; the events
/// are durable in the spool meanwhile, and nobody waits for them. At one
/// busy client (about 7,000 statements/s) 50 ms instead of 20 cut the
/// PDP's CPU per statement from 11–13 µs to 8–9 µs.
const LINGER: Duration = Duration::from_millis(50);
/// Events per request, at most.
const BATCH_EVENTS: usize = 1024;
/// Bytes per request, at most; an event larger than this goes alone (and
/// `frame::MAX_PAYLOAD` keeps it under the PDP's 4 MiB message limit).
const BATCH_BYTES: u64 = 1024 * 1024;
/// Requests waiting for acknowledgement, at most.
const WINDOW: usize = 4;
/// How long the oldest request in flight may wait for its acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long opening a call may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// First retry delay after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why a call ended.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("{}", .0.message())]
    Rpc(tonic::Status),
    #[error("no answer to the call within {OPEN_TIMEOUT:?}")]
    OpenTimeout,
    #[error("the policy service ended the stream")]
    Ended,
    #[error("no acknowledgement within {ACK_TIMEOUT:?}")]
    AckTimeout,
    #[error("reading the spool: {0}")]
    Spool(io::Error),
}

impl StreamError {
    /// The PDP refused what was sent, rather than being unreachable.
    fn is_refusal(&self) -> bool {
        matches!(self, Self::Rpc(status) if status.code() == tonic::Code::InvalidArgument)
    }
}

/// Streams until `stop` is dropped.
pub(super) async fn run(shared: Arc<Shared>, channel: Channel, mut stop: watch::Receiver<()>) {
    let mut backoff = Backoff::default();
    loop {
        let error = tokio::select! {
            _ = stop.changed() => return,
            error = stream_once(&shared, channel.clone(), &mut backoff) => error,
        };
        let delay = backoff.failed(&error);
        tokio::select! {
            _ = stop.changed() => return,
            () = sleep(delay) => {}
        }
    }
}

/// How often a PDP that stays away is logged again at `warn`.
const WARN_EVERY: Duration = Duration::from_secs(300);

/// Retry delays and failure logging.
#[derive(Debug)]
struct Backoff {
    delay: Duration,
    failures: u32,
    warned: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            delay: BACKOFF_MIN,
            failures: 0,
            warned: None,
        }
    }
}

impl Backoff {
    /// The PDP acknowledged something: the link works.
    fn succeeded(&mut self) {
        if self.failures > 0 {
            info!(
                failures = self.failures,
                "audit stream to the policy service restored"
            );
        }
        *self = Self::default();
    }

    /// Logs the failure (the first, then every [`WARN_EVERY`]) and returns
    /// how long to wait, with jitter so agents do not retry in step.
    fn failed(&mut self, error: &StreamError) -> Duration {
        self.failures += 1;
        if self.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            self.warned = Some(Instant::now());
            if error.is_refusal() {
                // Not an outage: retrying cannot help until someone looks
                // (an event this agent wrote does not decode at the PDP).
                error!(%error, failures = self.failures, "the policy service refuses spooled audit events as malformed; they stay in the spool and are sent again");
            } else {
                warn!(%error, failures = self.failures, "audit stream to the policy service failed; events wait in the spool");
            }
        } else {
            debug!(%error, failures = self.failures, "audit stream retry failed");
        }
        let delay = self.delay.mul_f64(0.8 + 0.4 * rand::random::<f64>());
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
        delay
    }
}

/// Where the next read starts.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    segment: u64,
    offset: u64,
}

/// A request waiting for acknowledgement.
struct InFlight {
    /// Highest sequence per session in the request.
    max_seq: foldhash::HashMap<Arc<str>, u64>,
    sent: Instant,
}

/// One call, from open to failure.
async fn stream_once(shared: &Arc<Shared>, channel: Channel, backoff: &mut Backoff) -> StreamError {
    let (requests, outbound) = mpsc::channel(WINDOW);
    let outbound = futures::stream::unfold(outbound, |mut rx| async move {
        rx.recv().await.map(|request| (request, rx))
    });
    let mut client = pb::audit_service_client::AuditServiceClient::new(channel);
    let mut inbound = match timeout(OPEN_TIMEOUT, client.stream_events(outbound)).await {
        Err(_) => return StreamError::OpenTimeout,
        Ok(Err(status)) => return StreamError::Rpc(status),
        Ok(Ok(response)) => response.into_inner(),
    };
    let mut cursor = Cursor {
        segment: shared.state().first_segment(),
        offset: 0,
    };
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut caught_up = false;
    loop {
        while !caught_up && in_flight.len() < WINDOW {
            let (events, max_seq, next) = match read_batch(shared, cursor).await {
                Ok(batch) => batch,
                Err(e) => return StreamError::Spool(e),
            };
            cursor = next;
            if events.is_empty() {
                caught_up = true;
                break;
            }
            // INVARIANT: the channel holds at most WINDOW requests, each one
            // in flight, so there is room; failing means the call is gone.
            if requests
                .try_send(pb::StreamEventsRequest { events })
                .is_err()
            {
                return StreamError::Ended;
            }
            in_flight.push_back(InFlight {
                max_seq,
                sent: Instant::now(),
            });
        }
        let deadline = in_flight.front().map(|f| f.sent + ACK_TIMEOUT);
        tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(response)) => {
                    apply_acks(shared, &response.acks).await;
                    backoff.succeeded();
                    let state = shared.state();
                    while in_flight.front().is_some_and(|f| {
                        f.max_seq.iter().all(|(s, max)| state.acked(s) >= *max)
                    }) {
                        in_flight.pop_front();
                    }
                }
                Ok(None) => return StreamError::Ended,
                Err(status) => return StreamError::Rpc(status),
            },
            () = shared.data_ready.notified(), if caught_up => {
                // Let a burst gather: fewer, larger requests mean fewer
                // appends (and disk syncs) at the PDP, and less CPU here.
                tokio::time::sleep(LINGER).await;
                caught_up = false;
            }
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                return StreamError::AckTimeout;
            }
        }
    }
}

/// Records the PDP's acknowledgements, then deletes the segments they free.
async fn apply_acks(shared: &Arc<Shared>, acks: &[pb::EventAck]) {
    let trimmed = {
        let mut state = shared.state();
        for ack in acks {
            state.ack(&ack.session_id, ack.sequence);
        }
        state.take_trimmable()
    };
    if trimmed.is_empty() {
        shared.acked.send_modify(|generation| *generation += 1);
        return;
    }
    let shared = Arc::clone(shared);
    if let Err(e) = tokio::task::spawn_blocking(move || shared.delete_segments(trimmed)).await {
        error!(error = %e, "audit spool trimming failed");
    }
}

type Batch = (Vec<bytes::Bytes>, foldhash::HashMap<Arc<str>, u64>, Cursor);

/// The events of the next request, gathered from memory or disk.
#[derive(Default)]
struct Gathered {
    events: Vec<bytes::Bytes>,
    /// Highest sequence per session.
    max_seq: foldhash::HashMap<Arc<str>, u64>,
    /// Framed bytes.
    bytes: u64,
}

impl Gathered {
    fn with_capacity(events: usize) -> Self {
        Self {
            events: Vec::with_capacity(events),
            ..Self::default()
        }
    }

    /// Whether a record of `len` framed bytes joins this request (the first
    /// always does) rather than starting the next.
    fn fits(&self, len: u64) -> bool {
        self.events.is_empty() || self.bytes + len <= BATCH_BYTES
    }

    /// Adds an event; true once the request holds [`BATCH_EVENTS`].
    fn add(&mut self, session: Arc<str>, seq: u64, payload: bytes::Bytes, len: u64) -> bool {
        let max = self.max_seq.entry(session).or_default();
        *max = (*max).max(seq);
        self.events.push(payload);
        self.bytes += len;
        self.events.len() >= BATCH_EVENTS
    }

    fn batch(self, cursor: Cursor) -> Batch {
        (self.events, self.max_seq, cursor)
    }
}

/// The next unacknowledged events from `cursor` on; empty when the cursor
/// reached the end of what is durable. From memory when the writer's recent
/// records continue from `cursor`, else from disk.
async fn read_batch(shared: &Arc<Shared>, cursor: Cursor) -> io::Result<Batch> {
    let (batch, at_end) = recent_batch(shared, cursor);
    if !batch.0.is_empty() || at_end {
        return Ok(batch);
    }
    // Whatever memory skipped (acknowledged records) stays skipped.
    let cursor = batch.2;
    shared.disk_reads.fetch_add(1, Ordering::Relaxed);
    let shared = Arc::clone(shared);
    tokio::task::spawn_blocking(move || read_batch_blocking(&shared, cursor))
        .await
        .map_err(io::Error::other)?
}

/// The events of the writer's recent records from `cursor` on, as far as
/// they continue without a gap (up to a segment's end), and, when there
/// are none, whether nothing durable lies beyond the cursor either.
fn recent_batch(shared: &Shared, mut cursor: Cursor) -> (Batch, bool) {
    // `recent`, then `state`: the writer's order.
    let mut recent = shared.recent();
    let state = shared.state();
    recent.skip_before(cursor.segment, cursor.offset);
    // Sized once for what memory holds: a request gathers hundreds of
    // events under load.
    let mut gathered = Gathered::with_capacity(recent.len().min(BATCH_EVENTS));
    while let Some(next) = recent.at(cursor.segment, cursor.offset) {
        let acked = state.acked(&next.session) >= next.seq;
        if !acked && !gathered.fits(next.len) {
            break;
        }
        let Some(entry) = recent.pop() else {
            break;
        };
        cursor.offset += entry.len;
        if !acked && gathered.add(entry.session, entry.seq, entry.payload, entry.len) {
            break;
        }
    }
    let at_end = gathered.events.is_empty() && !state.durable_from(cursor.segment, cursor.offset);
    (gathered.batch(cursor), at_end)
}

fn read_batch_blocking(shared: &Shared, mut cursor: Cursor) -> io::Result<Batch> {
    // One consistent view: a segment that has a successor here is sealed, so
    // its length is final and nothing of it is skipped.
    let segments = shared.state().segments_from(cursor.segment);
    let mut gathered = Gathered::default();
    for (id, path, len) in segments {
        if id != cursor.segment {
            cursor = Cursor {
                segment: id,
                offset: 0,
            };
        }
        if cursor.offset >= len {
            continue;
        }
        let mut file = match File::open(&path) {
            Ok(file) => file,
            // Trimmed since the snapshot: everything in it is acknowledged.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(cursor.offset))?;
        let mut reader = RecordReader::new(
            BufReader::new(file.take(len - cursor.offset)),
            cursor.offset,
        );
        loop {
            match reader.next_record()? {
                Next::Record(record) => {
                    let Record {
                        id,
                        payload,
                        offset,
                        len: framed,
                    } = *record;
                    if shared.state().acked(&id.session_id) >= id.sequence {
                        cursor.offset = offset + framed;
                        continue;
                    }
                    if !gathered.fits(framed) {
                        // It starts the next request (the cursor stays on it).
                        return Ok(gathered.batch(cursor));
                    }
                    cursor.offset = offset + framed;
                    let payload = bytes::Bytes::from(payload);
                    if gathered.add(id.session_id.into(), id.sequence, payload, framed) {
                        return Ok(gathered.batch(cursor));
                    }
                }
                Next::End => break,
                Next::Torn { at } | Next::Bad { at, .. } => {
                    // Damaged after it was written and recovered: the rest
                    // of the segment waits for the next start's recovery.
                    error!(segment = %path.display(), offset = at, "audit spool segment is damaged; skipping the rest of it");
                    cursor.offset = len;
                    break;
                }
            }
        }
    }
    Ok(gathered.batch(cursor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_batch_is_told_from_an_outage() {
        let refused = StreamError::Rpc(tonic::Status::invalid_argument(
            "audit event 2 of 2 in the batch does not decode",
        ));
        assert!(refused.is_refusal());
        for outage in [
            StreamError::Rpc(tonic::Status::unavailable("connection refused")),
            StreamError::OpenTimeout,
            StreamError::AckTimeout,
            StreamError::Ended,
        ] {
            assert!(!outage.is_refusal(), "{outage}");
        }
    }
}
