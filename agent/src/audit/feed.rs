//! The feed: one task per agent that numbers every session's events and
//! hands them to the spool.
//!
//! Sessions send their events, in order, without waiting
//! ([`FeedSender::send`]). The task takes everything queued at once (up to
//! [`BATCH`] events, across sessions), gives each event the next sequence
//! of its session and records the lot with [`AuditLog::record_batch`]: one
//! wake-up and one group of spool writes for a burst of events from many
//! sessions, rather than a task and a wake-up per session and event.
//!
//! A sequence is used only once the spool holds its event, so a session's
//! numbers have no gaps (the PDP acknowledges only contiguous sequences).
//! A full or failing spool is retried with backoff, keeping the order;
//! sessions meanwhile refuse new statements ([`AuditLog::accepting`]) until
//! every held event is stored. An event that can never be stored (invalid,
//! too large, or the spool is full and configured to serve unaudited) is
//! skipped, and its number goes to the session's next event.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use palisade_proto::v1 as pb;
use tokio::sync::{mpsc, oneshot, watch};

use super::frame::Unnumbered;
use super::statement::{self, EventPrefix, StatementParts};
use super::{AuditError, AuditLog};

/// Most events recorded in one go (one batch for the writer).
const BATCH: usize = 1024;
/// The shortest time between two batches under a steady stream of events:
/// what arrives within it waits and joins the next batch. Each batch wakes
/// this task, the writer thread and this task again (the writer's answer);
/// at one busy client that was three thread wake-ups per statement on the
/// CPUs the client, the database and the session share. After a quiet
/// spell an event is recorded at once. Events are recorded after their
/// statement, so nobody waits for this.
const GATHER: Duration = Duration::from_millis(2);
/// First retry delay while the spool refuses events.
const RETRY_MIN: Duration = Duration::from_millis(50);
/// Longest retry delay.
const RETRY_MAX: Duration = Duration::from_secs(2);

enum Item {
    Event(Unnumbered),
    /// Answered once every event queued before it is in the spool.
    Flush(oneshot::Sender<()>),
}

/// The agent's feed into its audit spool.
#[derive(Clone)]
pub struct Feed {
    tx: mpsc::UnboundedSender<Item>,
    /// Fills an event's empty `agent_id`.
    agent_id: Arc<str>,
    /// Senders alive (sessions that may still record).
    senders: Arc<watch::Sender<usize>>,
}

impl Feed {
    /// Starts the feeding task for `log`; it runs while any handle lives.
    pub fn start(log: AuditLog) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let agent_id = Arc::clone(&log.agent_id);
        tokio::spawn(run(log, rx));
        Self {
            tx,
            agent_id,
            senders: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Session `session_id`'s sender; the feed counts it as live until it
    /// is dropped.
    pub fn sender(&self, session_id: &str) -> FeedSender {
        self.senders.send_modify(|n| *n += 1);
        FeedSender {
            tx: self.tx.clone(),
            agent_id: Arc::clone(&self.agent_id),
            session_id: Arc::from(session_id),
            prefix: EventPrefix::new(session_id, &self.agent_id),
            senders: Arc::clone(&self.senders),
        }
    }

    /// Waits until every sender is gone and everything sent has left the
    /// feed (stored in the spool, or dropped as unstorable or because the
    /// spool is full and configured to serve unaudited), for at most
    /// `timeout`; false when events are still held.
    pub async fn recorded(&self, timeout: Duration) -> bool {
        let all = async {
            let mut live = self.senders.subscribe();
            if live.wait_for(|n| *n == 0).await.is_err() {
                return false;
            }
            let (done, flushed) = oneshot::channel();
            self.tx.send(Item::Flush(done)).is_ok() && flushed.await.is_ok()
        };
        tokio::time::timeout(timeout, all).await.unwrap_or(false)
    }
}

/// Sends one session's events to the feed, in order.
pub struct FeedSender {
    tx: mpsc::UnboundedSender<Item>,
    agent_id: Arc<str>,
    /// The session's id: its events share it rather than each carrying a
    /// copy through the spool.
    session_id: Arc<str>,
    /// The session's ids as its statement events begin.
    prefix: EventPrefix,
    senders: Arc<watch::Sender<usize>>,
}

impl FeedSender {
    /// Encodes an event here, on the sender's thread, and queues it; its
    /// sequence is given when it is spooled.
    pub fn send(&self, event: pb::AuditEvent) {
        let event = Unnumbered::new(event, &self.agent_id, Some(&self.session_id));
        // The task runs as long as any sender lives.
        let _ = self.tx.send(Item::Event(event));
    }

    /// Encodes a statement event of this session at `time` from its parts
    /// (see [`statement`]) and queues it.
    pub fn send_statement(&self, time: &prost_types::Timestamp, parts: StatementParts<'_>) {
        let body = statement::encode(&self.prefix, time, parts);
        let event = Unnumbered::statement(Arc::clone(&self.session_id), body);
        // The task runs as long as any sender lives.
        let _ = self.tx.send(Item::Event(event));
    }
}

impl Drop for FeedSender {
    fn drop(&mut self) {
        self.senders.send_modify(|n| *n = n.saturating_sub(1));
    }
}

async fn run(log: AuditLog, mut rx: mpsc::UnboundedReceiver<Item>) {
    let mut numbers = Numbers::default();
    let mut waiting: VecDeque<Unnumbered> = VecDeque::new();
    let mut flushes: Vec<(usize, oneshot::Sender<()>)> = Vec::new();
    let mut retry = RETRY_MIN;
    let mut received = Vec::with_capacity(BATCH);
    let mut last_batch: Option<tokio::time::Instant> = None;
    loop {
        if waiting.is_empty() {
            // Nothing is held (the last held events were stored or skipped).
            log.set_held(false);
            answer(&mut flushes, 0);
            if rx.recv_many(&mut received, BATCH).await == 0 {
                return;
            }
            let due = last_batch.map(|last| last + GATHER);
            if let Some(due) = due.filter(|due| *due > tokio::time::Instant::now()) {
                // While this task sleeps, sessions' sends wake nothing.
                tokio::time::sleep_until(due).await;
            }
            take_queued(&mut rx, &mut received);
        } else {
            // Take in what arrived while the last batch was written.
            take_queued(&mut rx, &mut received);
        }
        last_batch = Some(tokio::time::Instant::now());
        for item in received.drain(..) {
            match item {
                Item::Event(e) => waiting.push_back(e),
                Item::Flush(done) => flushes.push((waiting.len(), done)),
            }
        }
        let batch = waiting.len().min(BATCH);
        numbers.assign(waiting.range_mut(..batch));
        let (stored, error) = log.record_batch(waiting.range(..batch)).await;
        for event in waiting.drain(..stored) {
            numbers.stored(&event);
        }
        answer(&mut flushes, stored);
        match error {
            // `held` stays set until the queue is empty (top of the loop):
            // a backlog larger than one batch is still only in memory.
            None => retry = RETRY_MIN,
            Some(AuditError::Stopped) => return,
            Some(AuditError::Full { .. }) if log.serves_when_full() => {
                // Configured to serve unaudited while full: the rest of the
                // batch is dropped (the spool logged it), not held in memory.
                let dropped = batch - stored;
                for event in waiting.drain(..dropped) {
                    numbers.dropped(&event);
                }
                answer(&mut flushes, dropped);
                // Nothing above waited: let the sessions run.
                tokio::task::yield_now().await;
            }
            Some(e @ (AuditError::InvalidEvent(_) | AuditError::TooLarge { .. })) => {
                // This event can never be stored; its number is reused.
                tracing::error!(error = %e, "audit event cannot be spooled; skipped");
                if let Some(event) = waiting.pop_front() {
                    numbers.dropped(&event);
                }
                answer(&mut flushes, 1);
            }
            Some(e) => {
                log.set_held(true);
                tracing::warn!(error = %e, "audit spool unavailable; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Adds what is queued, up to [`BATCH`] items in all, without waiting.
fn take_queued(rx: &mut mpsc::UnboundedReceiver<Item>, received: &mut Vec<Item>) {
    while received.len() < BATCH {
        match rx.try_recv() {
            Ok(item) => received.push(item),
            Err(_) => break,
        }
    }
}

/// Answers the flushes whose events are all stored, now that `removed`
/// more have left the front of the queue.
fn answer(flushes: &mut Vec<(usize, oneshot::Sender<()>)>, removed: usize) {
    if flushes.is_empty() {
        return;
    }
    let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(flushes)
        .into_iter()
        .map(|(before, sender)| (before.saturating_sub(removed), sender))
        .partition(|(before, _)| *before == 0);
    *flushes = keep;
    for (_, sender) in done {
        let _ = sender.send(());
    }
}

/// The next sequence of each session that has events in flight.
#[derive(Default)]
struct Numbers {
    next: foldhash::HashMap<Arc<str>, u64>,
}

impl Numbers {
    /// Numbers `events` (in queue order) as if all of them were stored;
    /// only those that are (see [`Self::stored`]) move the counters on, so
    /// a retry numbers the rest the same way again.
    fn assign<'a>(&self, events: impl Iterator<Item = &'a mut Unnumbered>) {
        let mut batch: foldhash::HashMap<&'a str, u64> = foldhash::HashMap::default();
        for event in events {
            // Split borrows: the key borrows the session id for the whole
            // batch while the sequence is written.
            let Unnumbered {
                session_id,
                sequence,
                ..
            } = event;
            let session: &'a str = session_id;
            let next = batch
                .entry(session)
                .or_insert_with(|| self.next.get(session).copied().unwrap_or(1));
            *sequence = *next;
            *next += 1;
        }
    }

    /// `event` is in the spool: its session moves on, and forgets its
    /// counter after its last event.
    fn stored(&mut self, event: &Unnumbered) {
        if event.last {
            self.next.remove(&event.session_id);
        } else {
            self.next
                .insert(Arc::clone(&event.session_id), event.sequence + 1);
        }
    }

    /// `event` was dropped: its number goes to the session's next event,
    /// and the counter is forgotten after the session's last event.
    fn dropped(&mut self, event: &Unnumbered) {
        if event.last {
            self.next.remove(&event.session_id);
        }
    }
}
