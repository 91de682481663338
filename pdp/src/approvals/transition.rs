//! The steps of an approval's life, as changes for [`ApprovalStore::update`]
//! (checked against the stored value, so every replica applies the same
//! rules atomically).
//!
//! ```text
//! pending ──approve──▶ approved ──consume──▶ consumed
//!    ├──────deny─────▶ denied
//!    ├──deadline─────▶ expired
//!    └──withdraw─────▶ withdrawn
//! ```
//!
//! [`ApprovalStore::update`]: super::ApprovalStore::update

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palisade_proto::v1 as pb;
use pb::ApprovalState as S;

use super::{ApprovalError, state_name};

/// A protobuf timestamp as a time (the epoch for none).
pub fn time_of(t: Option<&prost_types::Timestamp>) -> SystemTime {
    match t {
        Some(t) if t.seconds >= 0 => {
            UNIX_EPOCH
                + Duration::from_secs(t.seconds.unsigned_abs())
                + Duration::from_nanos(u64::try_from(t.nanos).unwrap_or(0))
        }
        _ => UNIX_EPOCH,
    }
}

/// A time as a protobuf timestamp.
pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// Whether a pending approval's deadline has passed.
pub fn due(a: &pb::Approval, now: SystemTime) -> bool {
    a.state() == S::Pending && time_of(a.deadline.as_ref()) <= now
}

fn finish(a: &mut pb::Approval, state: S, by: &str, reason: &str, now: SystemTime) {
    a.set_state(state);
    a.decided_by = by.to_owned();
    a.reason = reason.to_owned();
    a.decided = Some(timestamp(now));
}

/// Pending past its deadline → expired; anything else unchanged.
pub fn expire(a: &mut pb::Approval, now: SystemTime) -> Result<(), ApprovalError> {
    if due(a, now) {
        finish(
            a,
            S::Expired,
            "",
            "no reviewer decided before the deadline",
            now,
        );
    }
    Ok(())
}

/// A reviewer's decision. Refused for the requester; refused unless pending.
/// Past the deadline the approval expires instead (the caller sees it).
pub fn review(
    a: &mut pb::Approval,
    reviewer: &str,
    approve: bool,
    reason: &str,
    now: SystemTime,
) -> Result<(), ApprovalError> {
    let requester = a.requester.as_ref().map(|p| p.id.as_str()).unwrap_or("");
    if reviewer == requester {
        return Err(ApprovalError::Forbidden(
            "nobody approves their own request".to_owned(),
        ));
    }
    if due(a, now) {
        return expire(a, now);
    }
    still_pending(a)?;
    let state = if approve { S::Approved } else { S::Denied };
    finish(a, state, reviewer, reason, now);
    Ok(())
}

/// Only a pending approval can be decided or withdrawn: anything else has
/// already been settled, and the first step wins.
fn still_pending(a: &pb::Approval) -> Result<(), ApprovalError> {
    if a.state() == S::Pending {
        return Ok(());
    }
    Err(ApprovalError::Conflict(format!(
        "approval {} is already {}",
        a.id,
        state_name(a.state())
    )))
}

/// The requesting session withdraws a pending approval.
pub fn withdraw(
    a: &mut pb::Approval,
    session_id: &str,
    reason: &str,
    now: SystemTime,
) -> Result<(), ApprovalError> {
    if !session_id.is_empty() && a.session_id != session_id {
        return Err(ApprovalError::Forbidden(
            "only the session that asked may withdraw an approval".to_owned(),
        ));
    }
    still_pending(a)?;
    finish(a, S::Withdrawn, "", reason, now);
    Ok(())
}

/// Single use: an approved approval runs once, in its session, for exactly
/// its statement text.
pub fn consume(
    a: &mut pb::Approval,
    session_id: &str,
    statement: &str,
    now: SystemTime,
) -> Result<(), ApprovalError> {
    if a.session_id != session_id {
        return Err(ApprovalError::Forbidden(format!(
            "approval {} belongs to another session",
            a.id
        )));
    }
    if a.statement != statement {
        return Err(ApprovalError::Forbidden(format!(
            "approval {} was given for another statement",
            a.id
        )));
    }
    match a.state() {
        S::Approved => {
            a.set_state(S::Consumed);
            a.decided = Some(timestamp(now));
            Ok(())
        }
        S::Consumed => Err(ApprovalError::Conflict(format!(
            "approval {} was already used",
            a.id
        ))),
        other => Err(ApprovalError::Conflict(format!(
            "approval {} is {}, not approved",
            a.id,
            state_name(other)
        ))),
    }
}

/// Records a webhook delivery that failed after every retry.
pub fn notification_failed(a: &mut pb::Approval, failure: &str) -> Result<(), ApprovalError> {
    a.notification_failures.push(failure.to_owned());
    Ok(())
}
