//! What the two directions of a session share: the transaction status the
//! database last reported, and the refusals waiting for their stand-in error.
//!
//! How a refusal reaches the client: the client-reading direction sends the
//! database a stand-in statement that cannot parse (a bare identifier unique
//! to this connection) instead of the refused one, and queues the refusal.
//! The database answers with a syntax error at exactly the point in the
//! message stream where the refused statement stood, aborting a transaction
//! block and skipping the rest of an extended-protocol pipeline up to Sync,
//! precisely as a real error would. The relaying direction swaps that error
//! for the refusal. Ordering, pipelining and transaction state stay the
//! database's own; nothing of the refused statement reaches it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use rand::Rng;

use super::record::{Outcome, Pending, Recorder};
use crate::codec::backend::TransactionStatus;
use crate::enforce::Refusal;

/// Shared by the two tasks of one session (never across sessions).
pub struct Shared {
    marker: String,
    state: Mutex<State>,
    /// Queries and Syncs sent whose ReadyForQuery has not come back: the
    /// session is busy, not idle, while this is above zero.
    in_flight: AtomicU32,
}

struct State {
    refusals: VecDeque<Refusal>,
    status: TransactionStatus,
    /// Forwarded statements in protocol order, waiting for their outcome.
    pending: VecDeque<Pending>,
}

impl Shared {
    /// State for a new session with its own random marker.
    pub fn new() -> Self {
        let n: u64 = rand::rng().random();
        Self {
            marker: format!("palisade_refused_{n:016x}"),
            state: Mutex::new(State {
                refusals: VecDeque::new(),
                status: TransactionStatus::Idle,
                pending: VecDeque::new(),
            }),
            in_flight: AtomicU32::new(0),
        }
    }

    /// The stand-in statement text: a syntax error naming the marker.
    pub fn stand_in(&self) -> &str {
        &self.marker
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a refusal; call before sending its stand-in.
    pub fn push_refusal(&self, refusal: Refusal) {
        self.lock().refusals.push_back(refusal);
    }

    /// If `message` is the stand-in's syntax error, the refusal to show
    /// instead.
    pub fn take_refusal(&self, code: Option<&str>, message: Option<&str>) -> Option<Refusal> {
        if code != Some("42601") || !message.is_some_and(|m| m.contains(&self.marker)) {
            return None;
        }
        self.lock().refusals.pop_front()
    }

    /// ReadyForQuery: refusals still queued stood after an earlier error in
    /// the same pipeline; the database skipped them, as it skips any message
    /// after an error, so they are dropped too.
    pub fn ready(&self, status: TransactionStatus, recorder: &Recorder) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        let skipped: Vec<Pending> = {
            let mut s = self.lock();
            s.refusals.clear();
            s.status = status;
            s.pending.drain(..).collect()
        };
        for p in skipped {
            recorder.completed(
                &p,
                Outcome {
                    error: Some(
                        "not executed: an earlier message of the same request failed".to_owned(),
                    ),
                    ..Outcome::default()
                },
            );
        }
    }

    /// Queues a forwarded statement for its outcome.
    pub fn forwarded(&self, pending: Pending) {
        self.lock().pending.push_back(pending);
    }

    /// Result columns of the statement at the front.
    pub fn columns(&self, names: Vec<String>) {
        if let Some(p) = self.lock().pending.front_mut() {
            p.columns = names;
        }
    }

    /// The statement at the front finished.
    pub fn finished(&self, outcome: Outcome, recorder: &Recorder) {
        let front = self.lock().pending.pop_front();
        if let Some(p) = front {
            recorder.completed(&p, outcome);
        }
    }

    /// A message that ends with ReadyForQuery was sent upstream.
    pub fn sent_sync(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether every request has been answered (the client is idle).
    pub fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}
