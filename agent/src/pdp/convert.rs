//! The PDP's answers as the agent's domain types (protobuf stays here).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palisade_proto::v1 as pb;

use super::{Grant, OpenOutcome, PdpError};

/// The answer of policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Forward.
    Allow,
    /// Refuse.
    Deny,
    /// Hold for a reviewer.
    RequireApproval,
}

pub use crate::masking::MaskMethod;
pub use crate::masking::catalog::MaskedColumn as Mask;

/// One statement's decision.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Allow, deny, hold.
    pub effect: Effect,
    /// Determining policy ids.
    pub policies: std::sync::Arc<[String]>,
    /// The reason for the user.
    pub reason: String,
    /// Reviewer groups (hold).
    pub reviewers: Vec<String>,
    /// Columns to mask in results, sorted (a catalog snapshot is cached
    /// per set).
    pub masks: Arc<Vec<Mask>>,
    /// How long the answer may be reused.
    pub ttl: Duration,
}

pub fn decision(d: pb::StatementDecision) -> Result<Decision, PdpError> {
    let effect = match d.effect() {
        pb::Effect::Allow => Effect::Allow,
        pb::Effect::Deny => Effect::Deny,
        pb::Effect::RequireApproval => Effect::RequireApproval,
        pb::Effect::Unspecified => {
            return Err(PdpError::BadAnswer("a decision without effect".into()));
        }
    };
    let mut masks: Vec<Mask> = d
        .masks
        .iter()
        .map(|m| {
            let column = m.column.clone().unwrap_or_default();
            let relation = column.relation.unwrap_or_default();
            let method = match m.method() {
                pb::MaskMethod::Last4 => MaskMethod::Last4,
                pb::MaskMethod::Email => MaskMethod::Email,
                pb::MaskMethod::Hash => MaskMethod::Hash,
                pb::MaskMethod::Null => MaskMethod::Null,
                // Unknown or unspecified: the strictest visible masking.
                pb::MaskMethod::Redact | pb::MaskMethod::Unspecified => MaskMethod::Redact,
            };
            Mask {
                schema: relation.schema,
                table: relation.name,
                column: column.column,
                method,
            }
        })
        .collect();
    masks.sort();
    let ttl = d
        .cache_ttl
        .map(|t| {
            Duration::new(
                u64::try_from(t.seconds).unwrap_or(0),
                u32::try_from(t.nanos).unwrap_or(0),
            )
        })
        .unwrap_or_default();
    Ok(Decision {
        effect,
        policies: d.determining_policies.into(),
        reason: d.reason,
        reviewers: d.reviewers,
        masks: Arc::new(masks),
        ttl,
    })
}

pub fn open_outcome(r: pb::OpenSessionResponse) -> Result<OpenOutcome, PdpError> {
    match r.outcome {
        None => Err(PdpError::BadAnswer(
            "an OpenSession answer without outcome".into(),
        )),
        Some(pb::open_session_response::Outcome::Refused(refusal)) => {
            let bad_token = !matches!(
                refusal.code(),
                pb::RefusalCode::ConnectDenied
                    | pb::RefusalCode::NoRole
                    | pb::RefusalCode::UnknownTarget
                    | pb::RefusalCode::KeysUnavailable
            );
            Ok(OpenOutcome::Refused {
                message: refusal.message,
                bad_token,
            })
        }
        Some(pb::open_session_response::Outcome::Granted(g)) => {
            let principal = g.principal.unwrap_or_default();
            let deadline = g
                .deadline
                .map(|t| {
                    UNIX_EPOCH
                        + Duration::new(
                            u64::try_from(t.seconds).unwrap_or(0),
                            u32::try_from(t.nanos).unwrap_or(0),
                        )
                })
                .unwrap_or_else(SystemTime::now);
            Ok(OpenOutcome::Granted(Box::new(Grant {
                session_id: g.session_id,
                principal: principal.id.clone(),
                groups: principal.groups.clone(),
                principal_pb: principal,
                granted_roles: g.granted_roles,
                deadline,
                policy_version: g.policy_version,
            })))
        }
    }
}
