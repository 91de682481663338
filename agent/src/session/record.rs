//! The session's audit events: session start and end, and one event per
//! statement with its decision and outcome (rows, command tag, columns,
//! duration, error). Events are numbered per session (the stable id is
//! session id + sequence) and handed, in order, to the audit spool.
//!
//! Statement outcomes are matched to statements in protocol order: the
//! client-reading direction queues each statement it forwards
//! ([`Pending`]); the relaying direction completes the front of the queue at
//! CommandComplete, EmptyQueryResponse, PortalSuspended or ErrorResponse, and
//! at ReadyForQuery marks what is left as not executed (skipped after an
//! earlier error, as the database does).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use palisade_proto::v1 as pb;
use palisade_sql::{Attributes, Statement, StatementKind};

use crate::audit::{StatementParts, encode_attributes};
use crate::enforce::{Note, Refusal};

/// One statement of an analysed query string, shared rather than copied:
/// every execution of a prepared statement refers to the same analysis.
#[derive(Debug, Clone)]
pub struct StatementRef {
    all: std::sync::Arc<Vec<Statement>>,
    index: usize,
}

impl StatementRef {
    /// The statement at `index` of `all`, if there is one.
    pub fn new(all: &std::sync::Arc<Vec<Statement>>, index: usize) -> Option<Self> {
        (index < all.len()).then(|| Self {
            all: all.clone(),
            index,
        })
    }
}

impl std::ops::Deref for StatementRef {
    type Target = Statement;

    fn deref(&self) -> &Statement {
        // INVARIANT: `new` checked the index; the vector never changes.
        &self.all[self.index]
    }
}

/// A forwarded statement waiting for its outcome.
#[derive(Debug)]
pub struct Pending {
    /// The statement.
    pub statement: StatementRef,
    /// How it was decided.
    pub note: Note,
    /// When it was forwarded.
    pub started: Instant,
    /// "simple" or "extended".
    pub protocol: &'static str,
    /// Result column names (from RowDescription).
    pub columns: Vec<String>,
    /// Where the masked columns are, when policy masks anything for this
    /// principal (`None`: results pass as they are).
    pub masking: Option<std::sync::Arc<crate::masking::catalog::Snapshot>>,
    /// Result columns that were masked, for the audit event.
    pub masked: Vec<String>,
}

/// How a statement ended upstream.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The command tag.
    pub tag: String,
    /// Rows returned or affected.
    pub rows: u64,
    /// The database's error message, if it failed.
    pub error: Option<String>,
    /// Its SQLSTATE.
    pub sqlstate: Option<String>,
}

/// Statements whose outcome is known, waiting to be recorded until the
/// results that ended them are written to the client: building an event is
/// then off the statement's critical path. When and how long each took is
/// taken as it ends, not when it is recorded. What is left when this is
/// dropped (the session ended in between) is recorded then.
pub struct Completions {
    recorder: Arc<Recorder>,
    done: Vec<(Pending, Outcome, Ended)>,
    attributes: EncodedAttributes,
}

/// When a statement ended, and how long it ran.
struct Ended {
    at: SystemTime,
    took: Duration,
}

impl Completions {
    /// Completions recorded through `recorder`.
    pub fn new(recorder: Arc<Recorder>) -> Self {
        Self {
            recorder,
            done: Vec::new(),
            attributes: EncodedAttributes::default(),
        }
    }

    /// `pending` ended (now) with `outcome`.
    pub fn push(&mut self, pending: Pending, outcome: Outcome) {
        let ended = Ended {
            at: SystemTime::now(),
            took: pending.started.elapsed(),
        };
        self.done.push((pending, outcome, ended));
    }

    /// Records every completion so far, in order.
    pub fn record(&mut self) {
        for (pending, outcome, ended) in self.done.drain(..) {
            self.recorder
                .completed(pending, outcome, ended.at, ended.took, &mut self.attributes);
        }
    }
}

/// How many analyses' encoded attributes a session keeps.
const ENCODED_ATTRIBUTES: usize = 16;

/// Statements' attributes as their events carry them, encoded once per
/// analysis: every execution of a prepared statement, and every string of
/// the same literal shape, shares one `Arc<Attributes>`. Looked up by that
/// pointer (the entry holds the `Arc`, so the pointer cannot be reused for
/// other attributes while it is here); the oldest entry makes room.
#[derive(Default)]
struct EncodedAttributes {
    entries: Vec<(Arc<Attributes>, Vec<u8>)>,
    /// The entry replaced next once all are in use.
    next: usize,
}

impl EncodedAttributes {
    fn get(&mut self, attributes: &Arc<Attributes>) -> &[u8] {
        let found = self
            .entries
            .iter()
            .position(|(a, _)| Arc::ptr_eq(a, attributes));
        let index = found.unwrap_or_else(|| {
            let entry = (Arc::clone(attributes), encode_attributes(attributes));
            if self.entries.len() < ENCODED_ATTRIBUTES {
                self.entries.push(entry);
                self.entries.len() - 1
            } else {
                let index = self.next;
                self.next = (index + 1) % ENCODED_ATTRIBUTES;
                self.entries[index] = entry;
                index
            }
        });
        &self.entries[index].1
    }
}

impl Drop for Completions {
    fn drop(&mut self) {
        self.record();
    }
}

/// Ships a session's events, in order, to the feed that numbers and
/// spools them (see [`crate::audit::Feed`]).
pub struct Recorder {
    session_id: String,
    redact_literals: bool,
    tx: Option<crate::audit::FeedSender>,
}

impl Recorder {
    /// A recorder for a session; events go to `tx` in order (none when the
    /// agent runs without an audit spool).
    pub fn new(
        session_id: String,
        redact_literals: bool,
        tx: Option<crate::audit::FeedSender>,
    ) -> Arc<Self> {
        Arc::new(Self {
            session_id,
            redact_literals,
            tx,
        })
    }

    /// Emits one event; its sequence number is given when it is spooled.
    pub fn emit(&self, event: pb::audit_event::Event) {
        let Some(tx) = &self.tx else {
            return;
        };
        tx.send(pb::AuditEvent {
            session_id: self.session_id.clone(),
            sequence: 0,
            time: Some(timestamp(SystemTime::now())),
            // The feed fills in the agent's id.
            agent_id: String::new(),
            event: Some(event),
        });
    }

    /// The text kept of a statement: verbatim, or normalized (literals
    /// replaced) when redaction is on. Role statements are always
    /// normalized: `ALTER ROLE x PASSWORD '...'` must never be stored.
    pub fn text_of<'a>(&self, statement: &'a Statement) -> &'a str {
        if self.redact_literals || statement.attributes.kind == StatementKind::Role {
            if statement.attributes.normalized.is_empty() {
                "<redacted>"
            } else {
                &statement.attributes.normalized
            }
        } else {
            &statement.text
        }
    }

    /// A statement that ran (or failed upstream), ended at `at` after
    /// running for `took`. Takes `p` whole: its column lists move into the
    /// event rather than being copied for every statement; the text,
    /// policies and attributes (`encoded` once per analysis) are written
    /// from where they live.
    fn completed(
        &self,
        p: Pending,
        outcome: Outcome,
        at: SystemTime,
        took: Duration,
        encoded: &mut EncodedAttributes,
    ) {
        let Some(tx) = &self.tx else {
            return;
        };
        tx.send_statement(
            &timestamp(at),
            StatementParts {
                text: self.text_of(&p.statement),
                attributes: encoded.get(&p.statement.attributes),
                policies: &p.note.policies,
                protocol: p.protocol,
                rest: pb::StatementExecuted {
                    effect: pb::Effect::Allow.into(),
                    approval_id: p.note.approval_id.unwrap_or_default(),
                    rows: outcome.rows,
                    command_tag: outcome.tag,
                    masked_columns: p
                        .masked
                        .into_iter()
                        .map(|column| pb::ColumnRef {
                            relation: None,
                            column,
                        })
                        .collect(),
                    duration: Some(duration(took)),
                    error: outcome.error.unwrap_or_default(),
                    sqlstate: outcome.sqlstate.unwrap_or_default(),
                    result_columns: p.columns,
                    cached_decision: p.note.cached,
                    ..Default::default()
                },
            },
        );
    }

    /// Statements refused by policy (or because no decision could be had);
    /// nothing of them reached the database.
    pub fn refused(
        &self,
        statements: &[Statement],
        refusal: &Refusal,
        protocol: &'static str,
        fallback_text: &str,
    ) {
        if self.tx.is_none() {
            return;
        }
        let effect = if refusal.held {
            pb::Effect::RequireApproval
        } else {
            pb::Effect::Deny
        };
        let event = |text: String, attributes: Option<pb::StatementAttributes>| {
            pb::audit_event::Event::Statement(pb::StatementExecuted {
                text,
                attributes,
                effect: effect.into(),
                determining_policies: refusal.policies.clone(),
                reason: refusal.message.clone(),
                protocol: protocol.to_owned(),
                sqlstate: refusal.code.to_owned(),
                ..Default::default()
            })
        };
        if statements.is_empty() {
            // Unparsable: the text cannot be normalized, so it is kept only
            // when literals are not to be redacted.
            let text = if self.redact_literals {
                "<unparsable statement>".to_owned()
            } else {
                fallback_text.to_owned()
            };
            self.emit(event(text, None));
        }
        for s in statements {
            self.emit(event(
                self.text_of(s).to_owned(),
                Some(palisade_proto::convert::attributes_to_pb(&s.attributes)),
            ));
        }
    }
}

/// A step of a held statement's approval (requested, approved, denied,
/// expired, withdrawn, consumed).
pub fn approval_event(
    approval: &pb::Approval,
    state: pb::ApprovalState,
    reason: &str,
) -> pb::audit_event::Event {
    pb::audit_event::Event::Approval(pb::ApprovalEvent {
        approval_id: approval.id.clone(),
        state: state.into(),
        reviewer: approval.decided_by.clone(),
        reason: reason.to_owned(),
        reviewers: approval.reviewers.clone(),
        policies: approval.policies.clone(),
        deadline: approval.deadline,
        notification_failures: approval.notification_failures.clone(),
    })
}

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// A duration on the wire.
pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// A time on the wire.
pub fn time(t: SystemTime) -> prost_types::Timestamp {
    timestamp(t)
}
