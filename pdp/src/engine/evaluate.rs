//! The two-pass evaluation of DESIGN.md, with fail-closed error handling.

use cedar_policy::{
    Authorizer, Context, Decision, Effect as CedarEffect, Entities, EntityUid, PolicyId, PolicySet,
    Request,
};
use tracing::warn;

use super::requests::ActionOnResource;
use super::slices::Slices;
use super::{Effect, Verdict};
use crate::policy::PolicySnapshot;

/// Evaluates requests of one principal against one snapshot.
pub struct Evaluator<'a> {
    pub snapshot: &'a PolicySnapshot,
    pub principal: &'a EntityUid,
    pub slices: &'a Slices,
}

/// The outcome of one Cedar request against one policy set.
struct Outcome {
    allowed: bool,
    /// Determining policies (Cedar's "reason").
    policies: Vec<PolicyId>,
    /// Forbid policies whose evaluation failed: Cedar skipped them, we refuse.
    failed_forbids: Vec<PolicyId>,
}

impl Evaluator<'_> {
    fn authorize(
        &self,
        set: &PolicySet,
        (action, resource, _): &ActionOnResource,
        context: &Context,
        entities: &Entities,
    ) -> Result<Outcome, String> {
        if set.is_empty() {
            // What Cedar answers for an empty set: no policy, no error, deny.
            return Ok(Outcome {
                allowed: false,
                policies: Vec::new(),
                failed_forbids: Vec::new(),
            });
        }
        let request = Request::new(
            self.principal.clone(),
            action.clone(),
            resource.clone(),
            context.clone(),
            None,
        )
        .map_err(|e| e.to_string())?;
        let response = Authorizer::new().is_authorized(&request, set, entities);
        let mut failed_forbids = Vec::new();
        for error in response.diagnostics().errors() {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = error;
            let id = e.policy_id().clone();
            let is_forbid = set
                .policy(&id)
                .is_some_and(|p| p.effect() == CedarEffect::Forbid);
            warn!(policy = %id, error = %e, "policy evaluation error");
            if is_forbid {
                failed_forbids.push(id);
            }
        }
        // Cedar reports the determining policies as a set: sorted, the
        // reasons built from them read the same on every run.
        let mut policies: Vec<PolicyId> = response.diagnostics().reason().cloned().collect();
        policies.sort_unstable();
        failed_forbids.sort_unstable();
        Ok(Outcome {
            allowed: response.decision() == Decision::Allow,
            policies,
            failed_forbids,
        })
    }

    fn reason_of(&self, ids: &[PolicyId]) -> Vec<String> {
        ids.iter()
            .filter_map(|id| self.snapshot.meta(id).and_then(|m| m.reason.clone()))
            .collect()
    }

    /// Decides a list of (action, resource) requests that together stand for
    /// one statement or one session step.
    pub fn decide(
        &self,
        requests: &[ActionOnResource],
        context: &Context,
        entities: &Entities,
    ) -> Verdict {
        let mut permits: Vec<PolicyId> = Vec::new();
        let mut denies: Vec<PolicyId> = Vec::new();
        let mut reasons: Vec<String> = Vec::new();
        for request in requests {
            let sets = self.slices.get(self.snapshot, &request.0);
            match self.authorize(sets.base(), request, context, entities) {
                Err(e) => reasons.push(format!("the request could not be evaluated: {e}")),
                Ok(o) if !o.failed_forbids.is_empty() => {
                    reasons.push(format!(
                        "a forbid policy could not be evaluated ({}); refusing",
                        join(&o.failed_forbids)
                    ));
                    denies.extend(o.failed_forbids);
                }
                Ok(o) if o.allowed => permits.extend(o.policies),
                Ok(o) if o.policies.is_empty() => {
                    reasons.push(format!("no policy permits {}", request.2));
                }
                Ok(o) => {
                    let r = self.reason_of(&o.policies);
                    if r.is_empty() {
                        reasons.push(format!("{} is forbidden", request.2));
                    }
                    reasons.extend(r);
                    denies.extend(o.policies);
                }
            }
        }
        if !reasons.is_empty() || !denies.is_empty() {
            return verdict(Effect::Deny, denies, reasons, Vec::new());
        }

        let mut approvals: Vec<PolicyId> = Vec::new();
        for request in requests {
            let sets = self.slices.get(self.snapshot, &request.0);
            // No approval forbid can apply to this principal and action: the
            // permit-all baseline alone allows, without error.
            let Some(approval) = sets.approval() else {
                continue;
            };
            match self.authorize(approval, request, context, entities) {
                Err(e) => reasons.push(format!("the request could not be evaluated: {e}")),
                Ok(o) if !o.failed_forbids.is_empty() => {
                    reasons.push(format!(
                        "an approval policy could not be evaluated ({}); refusing",
                        join(&o.failed_forbids)
                    ));
                    denies.extend(o.failed_forbids);
                }
                Ok(o) if o.allowed => {}
                Ok(o) => approvals.extend(o.policies),
            }
        }
        if !reasons.is_empty() {
            return verdict(Effect::Deny, denies, reasons, Vec::new());
        }
        if !approvals.is_empty() {
            let mut reviewers: Vec<String> = approvals
                .iter()
                .filter_map(|id| self.snapshot.meta(id))
                .flat_map(|m| m.approval.iter().cloned())
                .collect();
            reviewers.sort();
            reviewers.dedup();
            let reasons = self.reason_of(&approvals);
            return verdict(Effect::RequireApproval, approvals, reasons, reviewers);
        }
        let reasons = self.reason_of(&permits);
        verdict(Effect::Allow, permits, reasons, Vec::new())
    }
}

fn join(ids: &[PolicyId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn verdict(
    effect: Effect,
    policies: Vec<PolicyId>,
    mut reasons: Vec<String>,
    reviewers: Vec<String>,
) -> Verdict {
    let mut policies: Vec<String> = policies.iter().map(ToString::to_string).collect();
    policies.sort();
    policies.dedup();
    reasons.dedup();
    Verdict {
        effect,
        policies,
        reason: reasons.join("; "),
        reviewers,
    }
}
