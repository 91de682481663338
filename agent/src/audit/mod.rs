//! The audit trail: every session and statement event reaches the PDP's
//! store, or the agent stops serving. None is lost to a crash or an outage.
//!
//! The data flows in one direction:
//!
//! 1. Sessions send their events to the agent's [`Feed`], which numbers
//!    them per session and records everything queued across sessions in
//!    one batch (`AuditLog::record_batch`; [`AuditLog::record`] for one).
//!    Each session encodes its own events (`frame::Unnumbered`); recording
//!    frames them under their numbers (length, crc32, protobuf) and hands
//!    the batch to the writer.
//! 2. The writer thread (`writer`) appends batches to the active segment of
//!    the spool directory with a group commit: batches queued together share
//!    one `write` and one `fdatasync`, and syncs are at least
//!    [`SpoolConfig::sync_interval`] apart under load. A batch is answered
//!    once, when durable; what is stored of it is always a prefix.
//! 3. The streamer task (`streamer`) keeps one `StreamEvents` call open to
//!    the PDP and sends the spool in order, oldest first, as the bytes the
//!    spool holds (the PDP stores and hashes those very bytes): from memory
//!    while it keeps up (`recent`), read back from disk otherwise.
//! 4. The PDP acknowledges per session ("every event of S up to N is
//!    stored"); `spool` records that and deletes each segment whose events
//!    are all acknowledged.
//!
//! At open, `recover` reads what a previous run left (it may have been
//! killed mid-write); those events are sent first. When the PDP is away,
//! events accumulate up to [`SpoolConfig::max_bytes`]; past it recording
//! fails and [`AuditLog::closed`] says why, so sessions refuse statements
//! instead of running them unaudited (unless configured otherwise, see
//! [`OnFull`]). So they do while the disk refuses writes, and until the
//! events the feed held meanwhile are written.
//!
//! Spool format: files `spool-<16-digit n>.log`; records are
//! `u32 length (LE) | u32 crc32 of the payload (LE) | prost AuditEvent`.

mod error;
mod feed;
mod frame;
mod recent;
mod recover;
mod seqset;
mod spool;
mod statement;
mod streamer;
mod writer;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use palisade_proto::v1 as pb;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot, watch};
use tonic::transport::Channel;

pub use error::AuditError;
pub use feed::{Feed, FeedSender};
use frame::{EncodeError, Unnumbered};
use spool::Shared;
pub use statement::{StatementParts, encode_attributes};
use writer::{Active, Batch, Record};

/// Batches that may wait for the writer at once; past it `record` waits for
/// the disk (never for the network).
const QUEUE_DEPTH: usize = 256;

/// Where and how much the agent spools audit events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// The spool directory; created (mode 0700) when missing. One agent per
    /// directory.
    pub dir: PathBuf,
    /// Cap on the spool's bytes on disk; past it events are refused.
    /// Default 1 GiB.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Size at which a new segment file starts. Space comes back a whole
    /// segment at a time, once all its events are acknowledged. Default
    /// 16 MiB; at least 1 KiB and at most half of `max_bytes`.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// What sessions do while the spool is full. Default `refuse`.
    #[serde(default)]
    pub on_full: OnFull,
    /// The shortest time between two disk syncs (`fdatasync`). Under a
    /// steady stream of events, records arriving within it wait for the
    /// next sync and share it, so the spool syncs at most once per
    /// interval instead of once per event; after a quiet spell an event is
    /// synced at once. No statement waits for it: events are recorded after
    /// the statement. Default 10 ms; `0s` syncs every group as it comes.
    #[serde(default = "default_sync_interval", with = "humantime_serde")]
    pub sync_interval: Duration,
}

fn default_sync_interval() -> Duration {
    Duration::from_millis(10)
}

fn default_max_bytes() -> u64 {
    1 << 30
}

fn default_segment_bytes() -> u64 {
    16 << 20
}

impl SpoolConfig {
    /// The defaults, spooling to `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: default_max_bytes(),
            segment_bytes: default_segment_bytes(),
            on_full: OnFull::default(),
            sync_interval: default_sync_interval(),
        }
    }

    /// Reports every problem at once.
    fn validate(&self) -> Result<(), AuditError> {
        let mut problems = Vec::new();
        if self.dir.as_os_str().is_empty() {
            problems.push("`dir` is empty".to_owned());
        }
        if self.segment_bytes < 1024 {
            problems.push(format!(
                "`segment_bytes` is {}, below 1 KiB",
                self.segment_bytes
            ));
        }
        if self.sync_interval > Duration::from_secs(1) {
            problems.push(format!(
                "`sync_interval` is {:?}, above 1 s",
                self.sync_interval
            ));
        }
        if self.max_bytes < self.segment_bytes.saturating_mul(2) {
            // The active segment is never trimmed, so the cap must leave
            // room beside a full one.
            problems.push(format!(
                "`max_bytes` ({}) must be at least twice `segment_bytes` ({})",
                self.max_bytes, self.segment_bytes
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(AuditError::Config(problems.join("; ")))
        }
    }
}

/// What sessions do when the spool is full (the PDP has been unreachable
/// for long enough to fill `max_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFull {
    /// Fail closed: [`AuditLog::accepting`] turns false and sessions refuse
    /// statements until acknowledgements make room.
    #[default]
    Refuse,
    /// Keep serving without audit: `accepting` stays true, `record` still
    /// fails (nothing is stored), and the agent logs an error each time the
    /// spool fills.
    Allow,
}

/// Why the audit log takes no new statements (see [`AuditLog::closed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The spool is at (or within its headroom of) `max_bytes` the PDP
    /// has not acknowledged, or refused an event for space since a segment
    /// was last freed.
    Full,
    /// The spool's disk refuses writes (full, failing, or broken).
    Unwritable,
    /// Writes work again; events held meanwhile are still being written.
    CatchingUp,
}

/// What waits for the PDP, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Events recorded and not yet acknowledged.
    pub events: u64,
    /// Bytes of the spool on disk, counted against `max_bytes`. Segments are
    /// deleted whole, so this includes acknowledged events that share a
    /// segment with unacknowledged ones, and the active segment.
    pub bytes: u64,
    /// Segment files, the active one included.
    pub segments: usize,
    /// Events refused for lack of room since open.
    pub refused: u64,
}

/// The agent's audit log. Cheap to clone; shared by every session.
/// Recording never waits for the network. The writer and the streamer stop
/// when the last clone is dropped.
#[derive(Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
    queue: mpsc::Sender<Batch>,
    agent_id: Arc<str>,
    /// Dropped with the last clone, which stops the streamer.
    _stop: Arc<watch::Sender<()>>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.shared.config.dir)
            .field("agent_id", &self.agent_id)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (recovers) the spool directory and starts the writer and the
    /// streamer. Events recovered from a previous run are sent first.
    /// `channel` reaches the PDP (see `PdpClient::channel`); it may connect
    /// lazily: while the PDP is away, events wait in the spool.
    pub async fn open(
        config: SpoolConfig,
        channel: Channel,
        agent_id: String,
    ) -> Result<Self, AuditError> {
        config.validate()?;
        let dir = config.dir.clone();
        let recovered = tokio::task::spawn_blocking(move || recover::recover(&dir))
            .await
            .map_err(|_| AuditError::Stopped)??;
        let recover::Recovered {
            state,
            used,
            active_id,
            active,
        } = recovered;
        let dir = config.dir.clone();
        let shared = Arc::new(Shared::new(config, state, used));
        let (queue, queued) = mpsc::channel(QUEUE_DEPTH);
        writer::spawn(Arc::clone(&shared), queued, Active::new(active_id, active))
            .map_err(|source| AuditError::Open { path: dir, source })?;
        let (stop, stopped) = watch::channel(());
        tokio::spawn(streamer::run(Arc::clone(&shared), channel, stopped));
        Ok(Self {
            shared,
            queue,
            agent_id: agent_id.into(),
            _stop: Arc::new(stop),
        })
    }

    /// Appends one event and resolves once it is durable in the spool.
    /// Records made at the same time share one disk sync. An empty
    /// `agent_id` is filled with this agent's.
    ///
    /// On error nothing was stored, whatever [`OnFull`] says: the caller must
    /// reuse the event's sequence number for the session's next event (see
    /// [`AuditError`]). Fails when the spool is full, the disk fails, or the
    /// event has no `(session_id, sequence)` id or is too large. Dropping the
    /// future after the event was queued does not withdraw it.
    ///
    /// Record each session's events in sequence order, awaiting each before
    /// the next (different sessions may record concurrently): the spool
    /// keeps commit order, and the PDP acknowledges contiguous sequences only.
    pub async fn record(&self, event: pb::AuditEvent) -> Result<(), AuditError> {
        let event = Unnumbered::new(event, &self.agent_id, None);
        match self.record_batch([&event]).await {
            (_, Some(error)) => Err(error),
            (_, None) => Ok(()),
        }
    }

    /// Appends events, in order, sharing disk syncs: the whole batch is
    /// written together, with whatever else is queued at the time.
    /// Returns how many were stored — always a prefix of `events`, even when
    /// the disk fails midway — and the error that stopped the rest, if any;
    /// the caller retries the rest under the same sequence numbers. Each
    /// session's events must come in sequence order (see [`Self::record`]).
    async fn record_batch<'a>(
        &self,
        events: impl IntoIterator<Item = &'a Unnumbered>,
    ) -> (usize, Option<AuditError>) {
        // The queue slot first: once room is reserved in the spool, nothing
        // is awaited until the batch is with the writer, which releases
        // what it does not write (dropping this future cannot leak room).
        let Ok(slot) = self.queue.reserve().await else {
            return (0, Some(AuditError::Stopped));
        };
        let mut records = Vec::new();
        let mut stopped = None;
        for event in events {
            match self.prepare(event) {
                Ok(record) => records.push(record),
                Err(e) => {
                    stopped = Some(e);
                    break;
                }
            }
        }
        if records.is_empty() {
            return (0, stopped);
        }
        let (done, written) = oneshot::channel();
        slot.send(Batch { records, done });
        match written.await {
            // A write error stopped the batch before an event that could
            // not be framed would have.
            Ok((stored, error)) => (stored, error.or(stopped)),
            Err(_) => (0, Some(AuditError::Stopped)),
        }
    }

    /// Frames `event` and reserves its room in the spool.
    fn prepare(&self, event: &Unnumbered) -> Result<Record, AuditError> {
        let frame = event.frame().map_err(|e| match e {
            EncodeError::TooLarge(len) => AuditError::TooLarge {
                len,
                max: frame::MAX_PAYLOAD,
            },
            EncodeError::Invalid(reason) => AuditError::InvalidEvent(reason),
        })?;
        if self.shared.broken.load(Ordering::Acquire) {
            return Err(AuditError::Broken);
        }
        if !self.shared.reserve(frame.len() as u64) {
            return Err(AuditError::Full {
                max_bytes: self.shared.config.max_bytes,
            });
        }
        Ok(Record {
            frame,
            session: Arc::clone(&event.session_id),
            seq: event.sequence,
        })
    }

    /// Whether new statements may run: [`Self::closed`] is `None`.
    pub fn accepting(&self) -> bool {
        self.closed().is_none()
    }

    /// Why new statements may not run now, if they may not. With
    /// [`OnFull::Refuse`]: once the spool is within 1/16 (at most 64 KiB) of
    /// its cap, after a record was refused for space (until acknowledgements
    /// free a segment), while writes fail or the feed holds events the spool
    /// refused (until they are stored), or after a disk failure that could
    /// not be undone. The session then refuses with a clear error instead of
    /// running unaudited. Always `None` with [`OnFull::Allow`].
    pub fn closed(&self) -> Option<Closed> {
        if self.serves_when_full() {
            return None;
        }
        let shared = &self.shared;
        let max = shared.config.max_bytes;
        let headroom = (max / 16).min(64 * 1024);
        if shared.broken.load(Ordering::Acquire) || shared.write_failed.load(Ordering::Acquire) {
            Some(Closed::Unwritable)
        } else if shared.is_full()
            || shared.used.load(Ordering::Acquire).saturating_add(headroom) > max
        {
            Some(Closed::Full)
        } else if shared.held.load(Ordering::Acquire) {
            Some(Closed::CatchingUp)
        } else {
            None
        }
    }

    /// The feed holds events the spool refused and retries them; while it
    /// does, sessions refuse statements (see [`Self::closed`]).
    fn set_held(&self, held: bool) {
        self.shared.held.store(held, Ordering::Release);
    }

    /// Whether sessions keep serving, unaudited, while the spool is full.
    fn serves_when_full(&self) -> bool {
        self.shared.config.on_full == OnFull::Allow
    }

    /// Bytes and events waiting for the PDP's acknowledgement.
    pub fn backlog(&self) -> Backlog {
        let state = self.shared.state();
        let (segments, bytes) = state.disk();
        Backlog {
            events: state.unacked(),
            bytes,
            segments,
            refused: self.shared.refused.load(Ordering::Relaxed),
        }
    }

    /// Waits until every event recorded before the call is acknowledged by
    /// the PDP, for at most `timeout` (tests, graceful shutdown).
    pub async fn flush(&self, timeout: Duration) -> Result<(), AuditError> {
        let targets = self.shared.state().flush_targets();
        let mut acked = self.shared.acked.subscribe();
        let all_acked = async {
            loop {
                acked.borrow_and_update();
                let done = {
                    let state = self.shared.state();
                    targets.iter().all(|(s, seq)| state.acked(s) >= *seq)
                };
                if done {
                    return;
                }
                if acked.changed().await.is_err() {
                    // The sender lives in `shared`, which this handle holds.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, all_acked)
            .await
            .map_err(|_| AuditError::FlushTimeout {
                events: self.backlog().events,
                timeout,
            })
    }
}

#[cfg(test)]
mod tests;
