//! Decisions reused within a session, for as long as the PDP allowed and
//! only while the policy version they were made under is current.

use std::sync::Arc;
use std::time::Instant;

use palisade_sql::Attributes;

use crate::pdp::Decision;

use super::HashMap;

/// Most decisions a session keeps.
const ENTRIES: usize = 1024;

struct Entry {
    decision: Decision,
    expires: Instant,
    version: u64,
}

/// Per-session decision cache keyed by statement attributes (shared with
/// the analysis they came from, not copied).
#[derive(Default)]
pub struct DecisionCache {
    entries: HashMap<Arc<Attributes>, Entry>,
}

impl DecisionCache {
    /// A decision still valid for `version`.
    pub fn get(&self, attributes: &Attributes, version: u64) -> Option<(Decision, Instant)> {
        let e = self.entries.get(attributes)?;
        (e.version == version && Instant::now() < e.expires)
            .then(|| (e.decision.clone(), e.expires))
    }

    /// Keeps a decision if the PDP allowed caching it.
    pub fn put(&mut self, attributes: Arc<Attributes>, decision: Decision, version: u64) {
        if decision.ttl.is_zero() {
            return;
        }
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
