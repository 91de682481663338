//! Who may review: the Cedar action `review` on `Approval::"<id>"`, with the
//! approval's requester, reviewer groups, policies and target as attributes
//! and the reviewer's groups in the context (see `policies/approvals.cedar`).
//! Only the base set decides (permits and plain forbids); a forbid that fails
//! to evaluate refuses, as everywhere else.

use std::str::FromStr as _;

use cedar_policy::{
    Authorizer, Context, Decision, Effect as CedarEffect, Entities, Entity, EntityId,
    EntityTypeName, EntityUid, Request, RestrictedExpression,
};
use palisade_proto::v1 as pb;

use crate::engine::uid::{self, NAMESPACE};
use crate::engine::{Effect, Principal, Verdict};
use crate::policy::PolicySnapshot;

/// `Approval::"<id>"`.
pub fn approval_uid(id: &str) -> Result<EntityUid, String> {
    let ty =
        EntityTypeName::from_str(&format!("{NAMESPACE}::Approval")).map_err(|e| e.to_string())?;
    Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
}

fn strings(values: &[String]) -> RestrictedExpression {
    RestrictedExpression::new_set(
        values
            .iter()
            .map(|v| RestrictedExpression::new_string(v.clone())),
    )
}

fn deny(reason: String) -> Verdict {
    Verdict {
        effect: Effect::Deny,
        policies: Vec::new(),
        reason,
        reviewers: Vec::new(),
    }
}

/// May `reviewer` approve or deny `approval`?
pub fn decide(snapshot: &PolicySnapshot, reviewer: &Principal, approval: &pb::Approval) -> Verdict {
    match evaluate(snapshot, reviewer, approval) {
        Ok(v) => v,
        Err(e) => deny(format!("the review could not be put to policy: {e}")),
    }
}

fn evaluate(
    snapshot: &PolicySnapshot,
    reviewer: &Principal,
    approval: &pb::Approval,
) -> Result<Verdict, String> {
    let principal = uid::user(&reviewer.id);
    let resource = approval_uid(&approval.id)?;
    let action = uid::action("review");
    let requester = approval
        .requester
        .as_ref()
        .map(|p| p.id.clone())
        .unwrap_or_default();
    let kind = approval
        .attributes
        .as_ref()
        .and_then(|a| palisade_proto::convert::kind_from_pb(a.kind))
        .map(|k| k.as_str().to_owned())
        .unwrap_or_default();
    let mut added: Vec<Entity> = reviewer
        .groups
        .iter()
        .map(|g| Entity::with_uid(uid::group(g)))
        .collect();
    let user = Entity::new_with_tags(
        principal.clone(),
        [
            (
                "issuer".to_owned(),
                RestrictedExpression::new_string(reviewer.issuer.clone()),
            ),
            (
                "subject".to_owned(),
                RestrictedExpression::new_string(reviewer.subject.clone()),
            ),
        ],
        reviewer.groups.iter().map(|g| uid::group(g)),
        reviewer
            .claims
            .iter()
            .map(|(k, v)| (k.clone(), RestrictedExpression::new_string(v.clone()))),
    )
    .map_err(|e| e.to_string())?;
    added.push(user);
    let resource_entity = Entity::new_with_tags(
        resource.clone(),
        [
            (
                "requester".to_owned(),
                RestrictedExpression::new_entity_uid(uid::user(&requester)),
            ),
            ("reviewers".to_owned(), strings(&approval.reviewers)),
            ("policies".to_owned(), strings(&approval.policies)),
            (
                "target".to_owned(),
                RestrictedExpression::new_string(approval.target.clone()),
            ),
            ("kind".to_owned(), RestrictedExpression::new_string(kind)),
        ],
        [],
        [],
    )
    .map_err(|e| e.to_string())?;
    added.push(resource_entity);
    let entities: Entities = snapshot
        .entities
        .clone()
        .add_entities(added, None)
        .map_err(|e| e.to_string())?;
    let context = Context::from_pairs([("principal_groups".to_owned(), strings(&reviewer.groups))])
        .map_err(|e| e.to_string())?;
    let request = Request::new(principal, action.clone(), resource, context, None)
        .map_err(|e| e.to_string())?;
    let (set, _) = snapshot.sets_for(&action);
    let response = Authorizer::new().is_authorized(&request, set, &entities);
    let mut failed = Vec::new();
    for error in response.diagnostics().errors() {
        let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = error;
        tracing::warn!(policy = %e.policy_id(), error = %e, "review policy evaluation error");
        if set
            .policy(e.policy_id())
            .is_some_and(|p| p.effect() == CedarEffect::Forbid)
        {
            failed.push(e.policy_id().to_string());
        }
    }
    let mut policies: Vec<String> = response
        .diagnostics()
        .reason()
        .map(ToString::to_string)
        .collect();
    policies.sort();
    if !failed.is_empty() {
        return Ok(Verdict {
            effect: Effect::Deny,
            reason: format!(
                "a review policy could not be evaluated ({}); refusing",
                failed.join(", ")
            ),
            policies: failed,
            reviewers: Vec::new(),
        });
    }
    let reasons: Vec<String> = response
        .diagnostics()
        .reason()
        .filter_map(|id| snapshot.meta(id).and_then(|m| m.reason.clone()))
        .collect();
    if response.decision() == Decision::Allow {
        return Ok(Verdict {
            effect: Effect::Allow,
            policies,
            reason: reasons.join("; "),
            reviewers: Vec::new(),
        });
    }
    let reason = if policies.is_empty() {
        format!(
            "no policy permits {} to review this approval (reviewers: {})",
            reviewer.id,
            approval.reviewers.join(", ")
        )
    } else if reasons.is_empty() {
        "the review is forbidden".to_owned()
    } else {
        reasons.join("; ")
    };
    Ok(Verdict {
        effect: Effect::Deny,
        policies,
        reason,
        reviewers: Vec::new(),
    })
}
