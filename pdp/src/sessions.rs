//! Open sessions: the verified principal and facts of each, with its Cedar
//! scope rebuilt whenever the policy set changes.

use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use dashmap::DashMap;

use crate::engine::{EngineError, Principal, Scope, SessionFacts};
use crate::policy::PolicyStore;

/// One open session.
pub struct Session {
    /// The session id (a UUIDv7: sortable by start time).
    pub id: String,
    /// Who is behind it.
    pub principal: Principal,
    /// The client facts.
    pub facts: SessionFacts,
    /// The session ends by then (never after the token's expiry).
    pub deadline: SystemTime,
    /// The agent that opened it (from its certificate), for logs and audit.
    pub agent: String,
    /// The scope and the policy-store generation it was made at (or later).
    scope: RwLock<(u64, Arc<Scope>)>,
}

impl Session {
    /// Whether the deadline has passed.
    pub fn expired(&self, now: SystemTime) -> bool {
        now >= self.deadline
    }
}

/// Every open session of this PDP.
#[derive(Clone)]
pub struct Sessions {
    open: Arc<DashMap<String, Arc<Session>>>,
    policies: PolicyStore,
}

impl Sessions {
    /// An empty registry deciding with `policies`.
    pub fn new(policies: PolicyStore) -> Self {
        Self {
            open: Arc::new(DashMap::new()),
            policies,
        }
    }

    /// The policy store sessions decide with.
    pub fn policies(&self) -> &PolicyStore {
        &self.policies
    }

    /// A scope for a principal on the current policy set (not registered).
    pub fn scope_for(
        &self,
        principal: &Principal,
        facts: &SessionFacts,
    ) -> Result<Arc<Scope>, EngineError> {
        Scope::new(self.policies.current(), principal, facts).map(Arc::new)
    }

    /// Registers a session with the scope it was opened with.
    pub fn insert(
        &self,
        id: String,
        principal: Principal,
        facts: SessionFacts,
        deadline: SystemTime,
        agent: String,
        scope: Arc<Scope>,
    ) -> Arc<Session> {
        // The scope may predate a swap that happened since it was made: a
        // generation that cannot match makes the first decision check it.
        // The generation is read before the set, so it is never newer than it.
        let generation = self.policies.generation();
        let generation = if Arc::ptr_eq(scope.snapshot(), &self.policies.current()) {
            generation
        } else {
            u64::MAX
        };
        let session = Arc::new(Session {
            id: id.clone(),
            principal,
            facts,
            deadline,
            agent,
            scope: RwLock::new((generation, scope)),
        });
        self.open.insert(id, session.clone());
        session
    }

    /// An open session.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.open.get(id).map(|s| s.clone())
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        self.open.remove(id).map(|(_, s)| s)
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The session's scope on the current policy set, rebuilt if the set
    /// changed since the scope was made.
    pub fn scope(&self, session: &Session) -> Result<Arc<Scope>, EngineError> {
        // The common case takes no lock shared with other sessions: an
        // atomic load of the store's generation and this session's own lock.
        let generation = self.policies.generation();
        {
            let scope = session
                .scope
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if scope.0 == generation {
                return Ok(scope.1.clone());
            }
        }
        let current = self.policies.current();
        let mut scope = session
            .scope
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if Arc::ptr_eq(scope.1.snapshot(), &current) {
            scope.0 = generation;
            return Ok(scope.1.clone());
        }
        let fresh = Arc::new(Scope::new(current, &session.principal, &session.facts)?);
        *scope = (generation, fresh.clone());
        Ok(fresh)
    }

    /// Forgets sessions past their deadline (agents that never said goodbye).
    pub fn sweep(&self, now: SystemTime) -> usize {
        let before = self.open.len();
        self.open.retain(|_, s| !s.expired(now));
        before - self.open.len()
    }
}
