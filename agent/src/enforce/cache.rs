//! Decisions reused within a session, for as long as the PDP allowed and
//! only while the policy version they were made under is current.

use std::sync::Arc;
use std::time::Instant;

use palisade_sql::Attributes;

use crate::pdp::Decision;

use super::HashMap;

/// Most decisions a session keeps.
const ENTRIES: usize = 1024;

#[derive(Clone)]
struct Entry {
    decision: Arc<Decision>,
    expires: Instant,
    version: u64,
}

/// Per-session decision cache keyed by statement attributes (shared with
/// the analysis they came from, not copied).
#[derive(Default)]
pub struct DecisionCache {
    entries: HashMap<Arc<Attributes>, Entry>,
    /// The last entry found, found again by pointer: every execution of a
    /// statement shape (or of a prepared statement) passes the same shared
    /// attributes, and comparing pointers saves hashing and comparing the
    /// attributes (their normalized text with them) each time. Cleared
    /// whenever the entries change.
    last: Option<(Arc<Attributes>, Entry)>,
}

impl DecisionCache {
    /// A decision still valid for `version`.
    pub fn get(
        &mut self,
        attributes: &Arc<Attributes>,
        version: u64,
    ) -> Option<(Arc<Decision>, Instant)> {
        let e = match &self.last {
            Some((a, e)) if Arc::ptr_eq(a, attributes) => e,
            _ => {
                let e = self.entries.get(&**attributes)?;
                &self.last.insert((Arc::clone(attributes), e.clone())).1
            }
        };
        (e.version == version && Instant::now() < e.expires)
            .then(|| (Arc::clone(&e.decision), e.expires))
    }

    /// Keeps a decision if the PDP allowed caching it.
    pub fn put(&mut self, attributes: Arc<Attributes>, decision: Arc<Decision>, version: u64) {
        if decision.ttl.is_zero() {
            return;
        }
        self.last = None;
        if self.entries.len() >= ENTRIES {
            let now = Instant::now();
            self.entries.retain(|_, e| e.expires > now);
            if self.entries.len() >= ENTRIES {
                self.entries.clear();
            }
        }
        let expires = Instant::now() + decision.ttl;
        self.entries.insert(
            attributes,
            Entry {
                decision,
                expires,
                version,
            },
        );
    }
}
