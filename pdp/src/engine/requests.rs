//! Which (action, resource) pairs a statement puts to policy.

use cedar_policy::EntityUid;
use palisade_sql::{Attributes, StatementKind};

use super::uid;

/// One Cedar request to make: action, resource, and a label for reasons.
pub type ActionOnResource = (EntityUid, EntityUid, String);

/// Kinds whose action applies to the relations they read.
fn acts_on_reads(kind: StatementKind) -> bool {
    matches!(
        kind,
        StatementKind::Select
            | StatementKind::CopyTo
            | StatementKind::Cursor
            | StatementKind::Explain
    )
}

/// The statement's own action on each relation it writes (or, for read kinds,
/// reads), `select` on every other relation it reads, and the action on the
/// database when it touches no relation at all.
pub fn for_statement(target: &str, a: &Attributes) -> Vec<ActionOnResource> {
    let action_name = a.kind.as_str();
    let action = uid::action(action_name);
    let select = uid::action("select");
    let reads_action = if acts_on_reads(a.kind) {
        &action
    } else {
        &select
    };
    let reads_name = if acts_on_reads(a.kind) {
        action_name
    } else {
        "select"
    };
    let mut out: Vec<ActionOnResource> = Vec::with_capacity(a.reads.len() + a.writes.len() + 1);
    for w in &a.writes {
        out.push((
            action.clone(),
            uid::table(target, &w.schema, &w.name),
            format!("{action_name} on {}.{}", w.schema, w.name),
        ));
    }
    for r in &a.reads {
        if !acts_on_reads(a.kind) && a.writes.contains(r) {
            continue;
        }
        out.push((
            reads_action.clone(),
            uid::table(target, &r.schema, &r.name),
            format!("{reads_name} on {}.{}", r.schema, r.name),
        ));
    }
    let own_action_used = !a.writes.is_empty() || (acts_on_reads(a.kind) && !a.reads.is_empty());
    if !own_action_used {
        out.push((
            action,
            uid::database(target),
            format!("{action_name} on {target}"),
        ));
    }
    out
}
