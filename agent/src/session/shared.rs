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

use rand::Rng;

use super::record::{Completions, Outcome, Pending};
use crate::enforce::Refusal;

/// Which request a queued item belongs to: requests end with a ReadyForQuery
/// (a Query, a Sync, a fastpath call), and are numbered as they are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The request just counted by [`Shared::sent_sync`] (a Query).
    Current,
    /// The request the next Sync will end (extended-protocol messages).
    Next,
}

/// Shared by the two tasks of one session (never across sessions).
pub struct Shared {
    marker: String,
    state: Mutex<State>,
}

struct State {
    /// Refusals waiting for their stand-in's error, with their request.
    refusals: VecDeque<(u64, Refusal)>,
    /// Describe messages sent upstream, waiting for their RowDescription or
    /// NoData, with their request; `true` for those the agent added itself
    /// (their answers are the agent's, not the client's).
    describes: VecDeque<(u64, bool)>,
    /// Forwarded statements in protocol order, waiting for their outcome.
    pending: VecDeque<(u64, Pending)>,
    /// Requests sent upstream (Queries, Syncs, fastpath calls).
    sent: u64,
    /// ReadyForQuery messages received: requests answered.
    answered: u64,
    /// The database entered copy-in mode (CopyInResponse) and the client
    /// has not ended the copy yet.
    copy_in: bool,
}

impl State {
    fn request(&self, which: Request) -> u64 {
        match which {
            Request::Current => self.sent,
            Request::Next => self.sent + 1,
        }
    }
}

impl Shared {
    /// State for a new session with its own random marker.
    pub fn new() -> Self {
        let n: u64 = rand::rng().random();
        Self {
            marker: format!("palisade_refused_{n:016x}"),
            state: Mutex::new(State {
                refusals: VecDeque::new(),
                describes: VecDeque::new(),
                pending: VecDeque::new(),
                sent: 0,
                answered: 0,
                copy_in: false,
            }),
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
    pub fn push_refusal(&self, refusal: Refusal, which: Request) {
        let mut s = self.lock();
        let request = s.request(which);
        s.refusals.push_back((request, refusal));
    }

    /// If `message` is the stand-in's syntax error, the refusal to show
    /// instead.
    pub fn take_refusal(&self, code: Option<&str>, message: Option<&str>) -> Option<Refusal> {
        if code != Some("42601") || !message.is_some_and(|m| m.contains(&self.marker)) {
            return None;
        }
        self.lock().refusals.pop_front().map(|(_, r)| r)
    }

    /// ReadyForQuery ends the oldest request still open. Refusals and
    /// statements of that request still queued stood after an earlier
    /// error: the database skipped them, as it skips every message after an
    /// error, so they are dropped (the statements recorded as not executed).
    /// Those of later requests (already sent by a pipelining client) stay.
    pub fn ready(&self, completions: &mut Completions) {
        let mut s = self.lock();
        s.answered += 1;
        let answered = s.answered;
        while s.refusals.front().is_some_and(|(r, _)| *r <= answered) {
            s.refusals.pop_front();
        }
        while s.describes.front().is_some_and(|(r, _)| *r <= answered) {
            s.describes.pop_front();
        }
        while s.pending.front().is_some_and(|(r, _)| *r <= answered) {
            if let Some((_, p)) = s.pending.pop_front() {
                completions.push(
                    p,
                    Outcome {
                        error: Some(
                            "not executed: an earlier message of the same request failed"
                                .to_owned(),
                        ),
                        ..Outcome::default()
                    },
                );
            }
        }
    }

    /// Queues a forwarded statement for its outcome.
    pub fn forwarded(&self, pending: Pending, which: Request) {
        let mut s = self.lock();
        let request = s.request(which);
        s.pending.push_back((request, pending));
    }

    /// A Describe was sent upstream (`injected`: by the agent itself, to
    /// learn the shape of the rows an Execute is about to return).
    pub fn describing(&self, injected: bool) {
        let mut s = self.lock();
        let request = s.request(Request::Next);
        s.describes.push_back((request, injected));
    }

    /// A RowDescription or NoData arrived: whether it answers a Describe of
    /// the request being answered, and if so whether the agent sent it.
    pub fn described(&self) -> Option<bool> {
        let mut s = self.lock();
        let answering = s.answered + 1;
        if s.describes.front().is_some_and(|(r, _)| *r == answering) {
            s.describes.pop_front().map(|(_, injected)| injected)
        } else {
            None
        }
    }

    /// Runs `f` on the statement at the front (the one whose results are
    /// arriving).
    pub fn with_front<R>(&self, f: impl FnOnce(&mut Pending) -> R) -> Option<R> {
        self.lock().pending.front_mut().map(|(_, p)| f(p))
    }

    /// The statement at the front finished; whether it was DDL.
    pub fn finished(&self, outcome: Outcome, completions: &mut Completions) -> bool {
        let front = self.lock().pending.pop_front();
        front.is_some_and(|(_, p)| {
            let ddl = p.statement.attributes.is_ddl;
            completions.push(p, outcome);
            ddl
        })
    }

    /// The database entered copy-in mode.
    pub fn copy_in_started(&self) {
        self.lock().copy_in = true;
    }

    /// The client ended a copy (CopyDone, CopyFail) after sending `syncs`
    /// Syncs since its Execute: if the database was in copy-in mode it
    /// ignored them, and they end no request.
    pub fn copy_in_ended(&self, syncs: u64) {
        let mut s = self.lock();
        if std::mem::take(&mut s.copy_in) {
            s.sent = s.sent.saturating_sub(syncs).max(s.answered);
        }
    }

    /// A request (Query, Sync, fastpath call) was sent upstream.
    pub fn sent_sync(&self) {
        self.lock().sent += 1;
    }

    /// Whether every request has been answered (the client is idle).
    pub fn idle(&self) -> bool {
        let s = self.lock();
        s.sent == s.answered
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}
