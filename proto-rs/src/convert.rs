//! Conversions between the wire's statement types and `palisade_sql`'s, shared
//! by the PDP and the agent so both sides read attributes the same way.

use palisade_sql::{Attributes, ColumnRef, Relation, StatementKind};

use crate::v1 as pb;

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
        inner_kind: a
            .inner_kind
            .map_or(pb::StatementKind::Unspecified, kind_to_pb)
            .into(),
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
        let mut out = rs
            .into_iter()
            .map(relation_from_pb)
            .collect::<Result<Vec<_>, _>>()?;
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
