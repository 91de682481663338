//! Protobuf ↔ domain conversions, kept at the edge (STYLE.md convention 6).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use palisade_proto::convert::{attributes_from_pb, attributes_to_pb, kind_from_pb, kind_to_pb};
use palisade_proto::v1 as pb;
use palisade_sql::Attributes;

use crate::engine::{ColumnMask, Effect, MaskMethod, Principal, SessionFacts, StatementVerdict};

/// An effect on the wire.
pub fn effect_to_pb(e: Effect) -> pb::Effect {
    match e {
        Effect::Allow => pb::Effect::Allow,
        Effect::Deny => pb::Effect::Deny,
        Effect::RequireApproval => pb::Effect::RequireApproval,
    }
}

fn mask_method_to_pb(m: MaskMethod) -> pb::MaskMethod {
    match m {
        MaskMethod::Redact => pb::MaskMethod::Redact,
        MaskMethod::Last4 => pb::MaskMethod::Last4,
        MaskMethod::Email => pb::MaskMethod::Email,
        MaskMethod::Hash => pb::MaskMethod::Hash,
        MaskMethod::Null => pb::MaskMethod::Null,
    }
}

fn mask_to_pb(m: &ColumnMask) -> pb::ColumnMask {
    pb::ColumnMask {
        column: Some(pb::ColumnRef {
            relation: Some(pb::Relation {
                schema: m.schema.clone(),
                name: m.table.clone(),
            }),
            column: m.column.clone(),
        }),
        method: mask_method_to_pb(m.method).into(),
        classification: m.classification.clone(),
        policy_id: m.policy_id.clone(),
    }
}

/// A statement decision on the wire.
pub fn decision_to_pb(
    v: &StatementVerdict,
    attributes: Option<&Attributes>,
    cache_ttl: Duration,
) -> pb::StatementDecision {
    // A held statement needs its own review every time: never cached.
    let ttl = if v.verdict.effect == Effect::RequireApproval {
        Duration::ZERO
    } else {
        cache_ttl
    };
    pb::StatementDecision {
        effect: effect_to_pb(v.verdict.effect).into(),
        determining_policies: v.verdict.policies.clone(),
        reason: v.verdict.reason.clone(),
        reviewers: v.verdict.reviewers.clone(),
        masks: v.masks.iter().map(mask_to_pb).collect(),
        cache_ttl: Some(duration_to_pb(ttl)),
        attributes: attributes.map(attributes_to_pb),
    }
}

/// A principal on the wire.
pub fn principal_to_pb(p: &Principal) -> pb::Principal {
    pb::Principal {
        id: p.id.clone(),
        issuer: p.issuer.clone(),
        subject: p.subject.clone(),
        groups: p.groups.clone(),
        claims: p.claims.clone().into_iter().collect(),
    }
}

/// Session facts from the wire.
pub fn facts_from_pb(target: String, client: Option<pb::ClientInfo>) -> SessionFacts {
    let pb::ClientInfo {
        address,
        application_name,
        database_user,
        tls,
        startup_parameters: _,
        protocol_version: _,
    } = client.unwrap_or_default();
    SessionFacts {
        target,
        application_name,
        client_address: address,
        database_user,
        tls,
    }
}

/// A time on the wire.
pub fn timestamp_to_pb(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// A duration on the wire.
pub fn duration_to_pb(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}
