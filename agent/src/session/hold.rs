//! Holding a statement for a human reviewer.
//!
//! When policy answers require-approval, the client-reading direction does
//! not refuse at once: it asks the PDP to open an approval, tells the client
//! right away with a NoticeResponse (injected through the relaying
//! direction: approval id, reviewers, deadline, the commands to approve or
//! deny) and waits. Meanwhile it keeps reading the client, so a client that
//! disconnects withdraws the request; a CancelRequest for the session
//! withdraws it too.
//!
//! - Approved: the approval is consumed (single use, bound by the PDP to this
//!   session and this exact text) and the statement is forwarded; the client
//!   gets its normal result.
//! - Denied, expired, withdrawn, or the PDP unreachable while waiting: a
//!   refusal, delivered by the stand-in mechanism of [`super::shared`].
//!
//! Every step is an approval event on the session's audit trail.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use palisade_proto::v1 as pb;
use palisade_sql::{Attributes, Statement};
use tokio::io::{AsyncReadExt, ReadHalf};
use tokio::sync::{Notify, mpsc};
use tracing::{info, warn};

use super::End;
use super::record::{Recorder, approval_event};
use crate::codec::backend::Severity;
use crate::codec::write;
use crate::enforce::{Enforcer, Note, Refusal, Verdict};
use crate::error::sqlstate;
use crate::net::Stream;
use crate::pdp::{PdpClient, PdpError};

/// SQLSTATE of a statement the client cancelled.
const QUERY_CANCELED: &str = "57014";
/// SQLSTATE of the notice (a warning: the statement waits).
const WARNING: &str = "01000";
/// How long past the deadline the agent waits for the PDP's word before it
/// gives up on its own (fail closed).
const DEADLINE_GRACE: Duration = Duration::from_secs(10);
/// Re-watch attempts when the watch stream breaks.
const REWATCH_ATTEMPTS: u32 = 5;
/// Most client bytes buffered while a statement waits.
const HELD_READ_CAP: usize = 8 << 20;

/// A session's approval state, owned by its client-reading direction.
pub struct Hold {
    pdp: PdpClient,
    inject: mpsc::Sender<Bytes>,
    cancelled: Option<Arc<Notify>>,
    recorder: Arc<Recorder>,
    /// Prepared statements released by an approval: their next Bind passes
    /// once (the decision was taken, and consumed, at Parse).
    released: HashSet<String>,
}

/// How a wait ended.
enum Outcome {
    Approved(Box<pb::Approval>),
    Refused(Refusal),
}

impl Hold {
    /// The hold of a session.
    pub fn new(
        pdp: PdpClient,
        inject: mpsc::Sender<Bytes>,
        cancelled: Option<Arc<Notify>>,
        recorder: Arc<Recorder>,
    ) -> Self {
        Self {
            pdp,
            inject,
            cancelled,
            recorder,
            released: HashSet::new(),
        }
    }

    /// A Bind of a prepared statement released by an approval passes once.
    pub fn release_bind(&mut self, statement: &str) -> bool {
        self.released.remove(statement)
    }

    /// Forgets a release (the prepared statement was replaced or closed).
    pub fn forget(&mut self, statement: &str) {
        self.released.remove(statement);
    }

    /// Turns a held refusal into a wait for a reviewer; any other verdict
    /// passes unchanged. `prepared` names the statement of a Parse (extended
    /// protocol). `Err` ends the session (the client went away).
    pub async fn settle(
        &mut self,
        verdict: Verdict,
        sql: &str,
        prepared: Option<&str>,
        enforcer: &Enforcer,
        client: &mut ReadHalf<Stream>,
        buf: &mut BytesMut,
    ) -> Result<Verdict, End> {
        let (refusal, statements) = match verdict {
            Verdict::Refuse(r, Some(statements)) if r.held => (r, statements),
            other => return Ok(other),
        };
        let session_id = enforcer.session_id().to_owned();
        match self
            .wait(&session_id, sql, &statements, &refusal, client, buf)
            .await?
        {
            Outcome::Approved(approval) => {
                if let Some(name) = prepared {
                    self.released.insert(name.to_owned());
                }
                let note = Note {
                    policies: approval.policies.as_slice().into(),
                    approval_id: Some(approval.id.clone()),
                    // The columns policy masks apply to the approved statement too.
                    masks: refusal.masks.clone(),
                    ..Note::default()
                };
                let notes = statements.iter().map(|_| note.clone()).collect();
                Ok(Verdict::Forward(statements, notes))
            }
            Outcome::Refused(r) => Ok(Verdict::Refuse(r, Some(statements))),
        }
    }

    async fn wait(
        &mut self,
        session_id: &str,
        sql: &str,
        statements: &Arc<Vec<Statement>>,
        held: &Refusal,
        client: &mut ReadHalf<Stream>,
        buf: &mut BytesMut,
    ) -> Result<Outcome, End> {
        let attributes: Vec<&Attributes> = statements.iter().map(|s| &*s.attributes).collect();
        let approval = match self
            .pdp
            .request_approval(session_id, sql, &attributes)
            .await
        {
            Ok(a) => a,
            Err(e) => {
                warn!(session = %session_id, error = %e, "approval could not be requested; refusing");
                let code = match e {
                    PdpError::BadAnswer(_) => sqlstate::INSUFFICIENT_PRIVILEGE,
                    _ => sqlstate::SYSTEM_ERROR,
                };
                return Ok(Outcome::Refused(refusal(
                    code,
                    format!("{}; the review could not be requested: {e}", held.message),
                    held.detail.clone(),
                    held.policies.clone(),
                )));
            }
        };
        info!(session = %session_id, approval = %approval.id, reviewers = ?approval.reviewers, "statement held for review");
        self.recorder.emit(approval_event(
            &approval,
            pb::ApprovalState::Pending,
            &approval.policy_reason,
        ));
        self.notify_client(&approval).await;

        let deadline = time_of(approval.deadline.as_ref());
        let give_up = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            + DEADLINE_GRACE;
        let give_up = tokio::time::Instant::now() + give_up;
        // Registered before the wait starts, so a cancel that comes at any
        // point of it is seen.
        let notify = self
            .cancelled
            .clone()
            .unwrap_or_else(|| Arc::new(Notify::new()));
        let cancelled = notify.notified();
        tokio::pin!(cancelled);
        cancelled.as_mut().enable();
        let mut stream = self.pdp.watch_approval(&approval.id).await.ok();
        let mut failures = 0u32;
        let mut last = approval.clone();
        loop {
            let next = async {
                match stream.as_mut() {
                    Some(s) => s.message().await,
                    None => Err(tonic::Status::unavailable("no watch stream")),
                }
            };
            tokio::select! {
                message = next => match message {
                    Ok(Some(pb::WatchApprovalResponse { approval: Some(a) })) => {
                        failures = 0;
                        last = a;
                        if let Some(outcome) = self.resolved(session_id, sql, &last, held).await {
                            return Ok(outcome);
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        failures += 1;
                        if failures > REWATCH_ATTEMPTS {
                            warn!(session = %session_id, approval = %approval.id, "the pdp is unreachable while a statement waits for approval; refusing");
                            let _ = self.pdp.withdraw_approval(&approval.id, session_id, "the agent lost the policy service").await;
                            return Ok(Outcome::Refused(Refusal::plain(
                                sqlstate::SYSTEM_ERROR,
                                format!(
                                    "palisade: statement refused: the policy service became unreachable while approval {} was pending",
                                    approval.id
                                ),
                                Some("the agent refuses statements it cannot put to policy".to_owned()),
                            )));
                        }
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(failures))).await;
                        stream = self.pdp.watch_approval(&approval.id).await.ok();
                    }
                },
                // Bounded: past the cap the client is not read until the
                // verdict (a pipelining client cannot fill the agent's memory).
                read = client.read_buf(buf), if buf.len() < HELD_READ_CAP => match read {
                    Ok(0) | Err(_) => {
                        self.withdraw(session_id, &last, "the client disconnected").await;
                        return Err(End::ClientGone);
                    }
                    // Pipelined messages wait in the buffer for the
                    // verdict; a Terminate among them is the client leaving.
                    Ok(_) if terminates(buf) => {
                        self.withdraw(session_id, &last, "the client disconnected").await;
                        return Err(End::ClientTerminated);
                    }
                    Ok(_) => {}
                },
                () = &mut cancelled => {
                    self.withdraw(session_id, &last, "the client cancelled the statement").await;
                    return Ok(Outcome::Refused(Refusal::plain(
                        QUERY_CANCELED,
                        format!(
                            "palisade: canceling statement due to user request (approval {} withdrawn)",
                            approval.id
                        ),
                        None,
                    )));
                }
                () = tokio::time::sleep_until(give_up) => {
                    self.withdraw(session_id, &last, "the agent stopped waiting past the deadline").await;
                    return Ok(Outcome::Refused(expired(&last, held)));
                }
            }
        }
    }

    /// The outcome of a final state; `None` while pending.
    async fn resolved(
        &self,
        session_id: &str,
        sql: &str,
        a: &pb::Approval,
        held: &Refusal,
    ) -> Option<Outcome> {
        use pb::ApprovalState as S;
        match a.state() {
            S::Pending | S::Unspecified => None,
            S::Approved => {
                self.recorder
                    .emit(approval_event(a, S::Approved, &a.reason));
                match self.pdp.consume_approval(&a.id, session_id, sql).await {
                    Ok(used) => {
                        self.recorder.emit(approval_event(&used, S::Consumed, ""));
                        info!(session = %session_id, approval = %a.id, reviewer = %a.decided_by, "approved statement released");
                        Some(Outcome::Approved(Box::new(used)))
                    }
                    Err(e) => Some(Outcome::Refused(Refusal::plain(
                        sqlstate::INSUFFICIENT_PRIVILEGE,
                        format!(
                            "palisade: statement refused: approval {} could not be used: {e}",
                            a.id
                        ),
                        None,
                    ))),
                }
            }
            S::Denied => {
                self.recorder.emit(approval_event(a, S::Denied, &a.reason));
                let why = if a.reason.is_empty() {
                    "no reason given".to_owned()
                } else {
                    a.reason.clone()
                };
                Some(Outcome::Refused(refusal(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    format!(
                        "palisade: statement denied by {}: {why} (approval {})",
                        a.decided_by, a.id
                    ),
                    held.detail.clone(),
                    a.policies.clone(),
                )))
            }
            S::Expired => {
                self.recorder.emit(approval_event(a, S::Expired, &a.reason));
                Some(Outcome::Refused(expired(a, held)))
            }
            S::Withdrawn | S::Consumed => {
                self.recorder.emit(approval_event(a, a.state(), &a.reason));
                Some(Outcome::Refused(Refusal::plain(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    format!(
                        "palisade: statement refused: approval {} is {}",
                        a.id,
                        state_name(a.state())
                    ),
                    None,
                )))
            }
        }
    }

    async fn withdraw(&self, session_id: &str, a: &pb::Approval, reason: &str) {
        match self.pdp.withdraw_approval(&a.id, session_id, reason).await {
            Ok(w) => {
                info!(session = %session_id, approval = %a.id, %reason, "approval withdrawn");
                self.recorder
                    .emit(approval_event(&w, pb::ApprovalState::Withdrawn, reason));
            }
            Err(e) => {
                warn!(session = %session_id, approval = %a.id, error = %e, "approval could not be withdrawn");
                self.recorder.emit(approval_event(
                    a,
                    pb::ApprovalState::Withdrawn,
                    &format!("{reason} (the policy service was not told: {e})"),
                ));
            }
        }
    }

    async fn notify_client(&self, a: &pb::Approval) {
        let mut out = BytesMut::new();
        let message = format!(
            "palisade: statement held for review: approval {} needs the approval of {}; waiting until {}",
            a.id,
            a.reviewers.join(", "),
            crate::credentials::sql::rfc3339(time_of(a.deadline.as_ref()))
        );
        let detail = format!(
            "policy {}: {}",
            a.policies.join(", "),
            if a.policy_reason.is_empty() {
                "this statement needs a review"
            } else {
                &a.policy_reason
            }
        );
        let hint = format!(
            "a reviewer runs `palisade approvals approve {id}` (or `palisade approvals deny {id} --reason ...`); cancel the statement to withdraw the request",
            id = a.id
        );
        if write::notice_response(
            &mut out,
            Severity::Warning,
            WARNING,
            &message,
            Some(&detail),
            Some(&hint),
        )
        .is_ok()
        {
            let _ = self.inject.send(out.freeze()).await;
        }
    }
}

fn expired(a: &pb::Approval, held: &Refusal) -> Refusal {
    refusal(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        format!(
            "palisade: statement not run: approval {} expired at {} without a review",
            a.id,
            crate::credentials::sql::rfc3339(time_of(a.deadline.as_ref()))
        ),
        held.detail.clone(),
        a.policies.clone(),
    )
}

/// A refusal (not held) naming `policies`.
fn refusal(
    code: &'static str,
    message: String,
    detail: Option<String>,
    policies: Vec<String>,
) -> Refusal {
    let mut r = Refusal::plain(code, message, detail);
    r.policies = policies;
    r
}

/// Whether the buffered client messages include a Terminate (walked frame by
/// frame from the start of the buffer, which is at a message boundary).
fn terminates(buf: &[u8]) -> bool {
    let mut at = 0usize;
    while let (Some(&tag), Some(len)) = (buf.get(at), buf.get(at + 1..at + 5)) {
        if tag == b'X' {
            return true;
        }
        let len = len.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
        if len < 4 {
            return false;
        }
        at += 1 + len;
    }
    false
}

fn state_name(s: pb::ApprovalState) -> &'static str {
    use pb::ApprovalState as S;
    match s {
        S::Unspecified => "unknown",
        S::Pending => "pending",
        S::Approved => "approved",
        S::Denied => "denied",
        S::Expired => "expired",
        S::Withdrawn => "withdrawn",
        S::Consumed => "already used",
    }
}

fn time_of(t: Option<&prost_types::Timestamp>) -> SystemTime {
    match t {
        Some(t) if t.seconds >= 0 => {
            UNIX_EPOCH
                + Duration::from_secs(t.seconds.unsigned_abs())
                + Duration::from_nanos(u64::try_from(t.nanos).unwrap_or(0))
        }
        _ => UNIX_EPOCH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminate_is_found_among_buffered_messages() {
        let mut buf = vec![b'S', 0, 0, 0, 4];
        assert!(!terminates(&buf));
        buf.extend_from_slice(&[b'X', 0, 0, 0, 4]);
        assert!(terminates(&buf));
        assert!(!terminates(&[b'Q', 0, 0, 0, 9, b'X']));
    }

    #[test]
    fn rfc3339_formats_utc() {
        use crate::credentials::sql::rfc3339;
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_913_123)),
            "2026-11-29T00:45:23Z"
        );
    }
}
