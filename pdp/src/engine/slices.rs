//! The policy sets one principal can meet, per action: the snapshot's
//! per-action slices cut down further by each policy's principal scope.
//!
//! A policy whose principal scope is false for the principal (`principal in
//! Group::"dba"` for a CI job) can be neither satisfied nor fail: Cedar
//! evaluates the scope before the conditions and stops at the first false
//! conjunct. Leaving it out changes no answer and saves its evaluation on
//! every request of the session. The principal's entity and its ancestors are
//! fixed for the life of a scope (tables added later are never ancestors of a
//! user), so the cut is made once per (scope, action), on first use.

use std::collections::HashSet;
use std::sync::OnceLock;

use cedar_policy::{Effect as CedarEffect, EntityUid, PolicySet, PrincipalConstraint};

use crate::policy::PolicySnapshot;

/// The sets of one action for one principal.
pub struct PrincipalSets {
    /// Permits and plain forbids whose principal scope can hold.
    pub base: PolicySet,
    /// The approval forbids whose principal scope can hold, beside the
    /// permit-all baseline; `None` when no such forbid is left, since the
    /// baseline alone always allows without error and the pass can be skipped.
    pub approval: Option<PolicySet>,
}

/// Which sets to evaluate a request with.
pub enum Sets<'a> {
    /// An action of the schema: the sets cut for the principal.
    Sliced(&'a PrincipalSets),
    /// An action the schema does not know: the whole sets (which then fail
    /// to match, as before).
    Whole {
        base: &'a PolicySet,
        approval: &'a PolicySet,
    },
}

impl Sets<'_> {
    /// The base set.
    pub fn base(&self) -> &PolicySet {
        match self {
            Sets::Sliced(s) => &s.base,
            Sets::Whole { base, .. } => base,
        }
    }

    /// The approval set, if its pass can change the answer.
    pub fn approval(&self) -> Option<&PolicySet> {
        match self {
            Sets::Sliced(s) => s.approval.as_ref(),
            Sets::Whole { approval, .. } => Some(approval),
        }
    }
}

/// Per-scope slices, built lazily (lock-free reads once built).
pub struct Slices {
    principal: EntityUid,
    /// The principal's ancestors (groups), transitively closed.
    ancestors: HashSet<EntityUid>,
    by_action: Box<[OnceLock<PrincipalSets>]>,
}

impl Slices {
    /// Slices for `principal`, whose ancestors in the scope's entities are
    /// `ancestors`.
    pub fn new(
        snapshot: &PolicySnapshot,
        principal: EntityUid,
        ancestors: HashSet<EntityUid>,
    ) -> Self {
        let by_action = (0..snapshot.by_action.len())
            .map(|_| OnceLock::new())
            .collect();
        Self {
            principal,
            ancestors,
            by_action,
        }
    }

    /// No slicing: every action evaluated with the snapshot's per-action
    /// sets and both passes, as before slices existed (the reference the
    /// tests compare with).
    #[cfg(test)]
    pub fn disabled(principal: EntityUid) -> Self {
        Self {
            principal,
            ancestors: HashSet::new(),
            by_action: Box::new([]),
        }
    }

    /// The sets to evaluate `action` with.
    pub fn get<'a>(&'a self, snapshot: &'a PolicySnapshot, action: &EntityUid) -> Sets<'a> {
        let Some(sets) = snapshot.action_sets(action) else {
            return Sets::Whole {
                base: &snapshot.base,
                approval: &snapshot.approval,
            };
        };
        let Some(cell) = self.by_action.get(sets.index) else {
            return Sets::Whole {
                base: &sets.base,
                approval: &sets.approval,
            };
        };
        Sets::Sliced(cell.get_or_init(|| PrincipalSets {
            base: self.cut(&sets.base).unwrap_or_else(|| sets.base.clone()),
            approval: self.cut_approval(&sets.approval),
        }))
    }

    /// Whether a principal scope can hold for this principal.
    fn may_hold(&self, constraint: &PrincipalConstraint) -> bool {
        let is_in = |e: &EntityUid| e == &self.principal || self.ancestors.contains(e);
        match constraint {
            PrincipalConstraint::Any => true,
            PrincipalConstraint::Eq(e) => e == &self.principal,
            PrincipalConstraint::In(e) => is_in(e),
            PrincipalConstraint::Is(t) => self.principal.type_name() == t,
            PrincipalConstraint::IsIn(t, e) => self.principal.type_name() == t && is_in(e),
        }
    }

    /// `set` without the policies whose principal scope cannot hold; `None`
    /// if the set cannot be rebuilt (then the whole set is used).
    fn cut(&self, set: &PolicySet) -> Option<PolicySet> {
        let mut out = PolicySet::new();
        for p in set.policies() {
            if self.may_hold(&p.principal_constraint()) {
                out.add(p.clone()).ok()?;
            }
        }
        Some(out)
    }

    fn cut_approval(&self, set: &PolicySet) -> Option<PolicySet> {
        let Some(cut) = self.cut(set) else {
            return Some(set.clone());
        };
        let has_forbid = cut.policies().any(|p| p.effect() == CedarEffect::Forbid);
        has_forbid.then_some(cut)
    }
}
