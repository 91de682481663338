//! Protobuf ↔ domain conversions, kept at the edge (STYLE.md convention 6).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palisade_proto::v1 as pb;
use palisade_sql::{Attributes, ColumnRef, Relation, StatementKind};

use crate::engine::{ColumnMask, Effect, MaskMethod, Principal, SessionFacts, StatementVerdict};

/// A statement kind on the wire.
pub fn kind_to_pb(kind: StatementKind) -> pb::StatementKind {
    use StatementKind as K;
    use pb::StatementKind as P;
    match kind {
        K::Select => P::Select,
        K::Insert => P::Insert,
        K::Update => P::Update,
        K::Delete => P::Delete,
        K::Merge => P::Merge,
        K::CopyFrom => P::CopyFrom,
        K::CopyTo => P::CopyTo,
        K::Create => P::Create,
        K::Alter => P::Alter,
        K::Drop => P::Drop,
        K::Truncate => P::Truncate,
        K::Grant => P::Grant,
        K::Revoke => P::Revoke,
        K::Role => P::Role,
        K::Set => P::Set,
        K::Show => P::Show,
        K::Transaction => P::Transaction,
        K::Call => P::Call,
        K::Do => P::Do,
        K::Prepare => P::Prepare,
        K::Execute => P::Execute,
        K::Deallocate => P::Deallocate,
        K::Listen => P::Listen,
        K::Notify => P::Notify,
        K::Explain => P::Explain,
        K::Maintenance => P::Maintenance,
        K::Cursor => P::Cursor,
        K::Other => P::Other,
    }
}

/// A statement kind from the wire; unknown or unspecified is refused.
pub fn kind_from_pb(kind: i32) -> Option<StatementKind> {
    use StatementKind as K;
    use pb::StatementKind as P;
    Some(match P::try_from(kind).ok()? {
        P::Unspecified => return None,
        P::Select => K::Select,
        P::Insert => K::Insert,
        P::Update => K::Update,
        P::Delete => K::Delete,
        P::Merge => K::Merge,
        P::CopyFrom => K::CopyFrom,
        P::CopyTo => K::CopyTo,
        P::Create => K::Create,
        P::Alter => K::Alter,
        P::Drop => K::Drop,
        P::Truncate => K::Truncate,
        P::Grant => K::Grant,
        P::Revoke => K::Revoke,
        P::Role => K::Role,
        P::Set => K::Set,
        P::Show => K::Show,
        P::Transaction => K::Transaction,
        P::Call => K::Call,
        P::Do => K::Do,
        P::Prepare => K::Prepare,
        P::Execute => K::Execute,
        P::Deallocate => K::Deallocate,
        P::Listen => K::Listen,
        P::Notify => K::Notify,
        P::Explain => K::Explain,
        P::Maintenance => K::Maintenance,
        P::Cursor => K::Cursor,
        P::Other => K::Other,
    })
}

fn relation_to_pb(r: &Relation) -> pb::Relation {
    pb::Relation {
        schema: r.schema.clone(),
        name: r.name.clone(),
    }
}

fn relation_from_pb(r: pb::Relation) -> Result<Relation, String> {
    let pb::Relation { schema, name } = r;
    if schema.is_empty() || name.is_empty() {
        return Err("a relation needs a schema and a name".to_owned());
    }
    Ok(Relation { schema, name })
}

/// Statement attributes on the wire.
pub fn attributes_to_pb(a: &Attributes) -> pb::StatementAttributes {
    pb::StatementAttributes {
        kind: kind_to_pb(a.kind).into(),
        reads: a.reads.iter().map(relation_to_pb).collect(),
        writes: a.writes.iter().map(relation_to_pb).collect(),
        functions: a.functions.clone(),
        has_where: a.has_where,
        has_limit: a.has_limit,
        is_ddl: a.is_ddl,
        fingerprint: a.fingerprint.clone(),
        normalized: a.normalized.clone(),
        copy_program: a.copy_program,
        filtered_columns: a
            .filtered_columns
            .iter()
            .map(|c| pb::ColumnRef {
                relation: c.relation.as_ref().map(relation_to_pb),
                column: c.column.clone(),
            })
            .collect(),
        inner_kind: a.inner_kind.map_or(pb::StatementKind::Unspecified, kind_to_pb).into(),
        object_name: a.object_name.clone().unwrap_or_default(),
    }
}

/// Statement attributes from the wire, checked: a caller that sends
/// attributes it parsed itself gets them decided exactly as sent.
pub fn attributes_from_pb(a: pb::StatementAttributes) -> Result<Attributes, String> {
    let pb::StatementAttributes {
        kind,
        reads,
        writes,
        functions,
        has_where,
        has_limit,
        is_ddl,
        fingerprint,
        normalized,
        copy_program,
        filtered_columns,
        inner_kind,
        object_name,
    } = a;
    let kind = kind_from_pb(kind).ok_or("the statement kind is missing or unknown")?;
    let relations = |rs: Vec<pb::Relation>| -> Result<Vec<Relation>, String> {
        let mut out = rs.into_iter().map(relation_from_pb).collect::<Result<Vec<_>, _>>()?;
        out.sort();
        out.dedup();
        Ok(out)
    };
    Ok(Attributes {
        kind,
        reads: relations(reads)?,
        writes: relations(writes)?,
        functions: functions.into_iter().map(|f| f.to_lowercase()).collect(),
        has_where,
        has_limit,
        is_ddl,
        fingerprint,
        normalized,
        copy_program,
        filtered_columns: filtered_columns
            .into_iter()
            .map(|c| {
                Ok(ColumnRef {
                    relation: c.relation.map(relation_from_pb).transpose()?,
                    column: c.column,
                })
            })
            .collect::<Result<Vec<_>, String>>()?,
        inner_kind: kind_from_pb(inner_kind),
        object_name: (!object_name.is_empty()).then_some(object_name),
    })
}

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
