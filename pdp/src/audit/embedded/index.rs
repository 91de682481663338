//! The in-memory index of the embedded store, rebuilt from the segments at
//! open: per session its chain head, summary and where each event is.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use palisade_proto::v1 as pb;

use crate::audit::SessionFilter;
use crate::audit::chain::Head;
use crate::audit::summary::{SortKey, SummaryState};

/// Where a record is: its frame's offset in a segment and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Location {
    pub segment: u32,
    pub offset: u64,
    pub len: u32,
}

/// One session's entry.
#[derive(Debug, Default)]
struct SessionEntry {
    head: Head,
    summary: SummaryState,
    // INVARIANT: ascending by sequence, and so by (segment, offset): records
    // of a session are only ever appended after its earlier ones.
    events: Vec<(u64, Location)>,
}

/// Sessions with stored events, and the committed length of each segment.
#[derive(Debug, Default)]
pub(super) struct Index {
    sessions: HashMap<String, SessionEntry>,
    // INVARIANT: one key per session, `summary.sort_key(id)`.
    order: BTreeSet<SortKey>,
    // INVARIANT: ascending ids; bytes past a length are not yet durable (or
    // are being written) and are never read.
    segments: Vec<(u32, u64)>,
}

impl Index {
    /// The head of a session (zero when it has no stored event).
    pub fn head(&self, session_id: &str) -> Head {
        self.sessions
            .get(session_id)
            .map(|entry| entry.head)
            .unwrap_or_default()
    }

    /// Records a stored event. Events of a session must come in ascending
    /// sequence; the open scan skips others before calling this.
    pub fn insert(&mut self, event: &pb::AuditEvent, hash: [u8; 32], location: Location) {
        // Looked up before inserting: most events belong to a known
        // session, and its id need not be copied for them.
        if !self.sessions.contains_key(&event.session_id) {
            self.sessions
                .insert(event.session_id.clone(), SessionEntry::default());
        }
        // Inserted just above: the `else` cannot happen.
        let Some(entry) = self.sessions.get_mut(&event.session_id) else {
            return;
        };
        let old_start = entry.summary.start_key();
        let was_new = entry.events.is_empty();
        entry.summary.apply(event);
        entry.head = Head {
            last_sequence: event.sequence,
            last_hash: hash,
        };
        entry.events.push((event.sequence, location));
        // The sort key is (start, id): it moves only when the start does.
        let new_start = entry.summary.start_key();
        if was_new || new_start != old_start {
            let old_key = (Reverse(old_start), event.session_id.clone());
            self.order.remove(&old_key);
            self.order.insert(entry.summary.sort_key(&event.session_id));
        }
    }

    /// Sets the committed length of a segment (adding it if new).
    pub fn set_segment_len(&mut self, segment: u32, len: u64) {
        match self.segments.binary_search_by_key(&segment, |(id, _)| *id) {
            Ok(at) => {
                if let Some(entry) = self.segments.get_mut(at) {
                    entry.1 = len;
                }
            }
            Err(at) => self.segments.insert(at, (segment, len)),
        }
    }

    /// Every segment with its committed length.
    pub fn segments(&self) -> Vec<(u32, u64)> {
        self.segments.clone()
    }

    /// The summaries matching `filter`, in listing order.
    pub fn list(&self, filter: &SessionFilter) -> Vec<pb::SessionSummary> {
        let limit = filter.limit.unwrap_or(usize::MAX);
        self.order
            .iter()
            .filter_map(|(_, id)| Some((id, &self.sessions.get(id)?.summary)))
            .filter(|(_, summary)| summary.matches(filter))
            .take(limit)
            .map(|(id, summary)| summary.to_summary(id))
            .collect()
    }

    /// Where the events of a session after `after_sequence` are.
    pub fn events_after(&self, session_id: &str, after_sequence: u64) -> Vec<(u64, Location)> {
        let Some(entry) = self.sessions.get(session_id) else {
            return Vec::new();
        };
        let from = entry
            .events
            .partition_point(|(seq, _)| *seq <= after_sequence);
        entry.events.get(from..).unwrap_or_default().to_vec()
    }

    /// Where one event is.
    pub fn location(&self, session_id: &str, sequence: u64) -> Option<Location> {
        let entry = self.sessions.get(session_id)?;
        let at = entry
            .events
            .binary_search_by_key(&sequence, |(seq, _)| *seq)
            .ok()?;
        entry.events.get(at).map(|(_, location)| *location)
    }

    /// Which event the index holds at a place in a segment, to name a damaged
    /// record. Slow (every session is searched): only for reporting.
    pub fn event_at(&self, segment: u32, offset: u64) -> Option<(String, u64)> {
        self.sessions.iter().find_map(|(id, entry)| {
            let at = entry
                .events
                .binary_search_by_key(&(segment, offset), |(_, l)| (l.segment, l.offset))
                .ok()?;
            entry.events.get(at).map(|(seq, _)| (id.clone(), *seq))
        })
    }

    /// The first event the index holds in a segment, to name a missing one.
    pub fn first_event_in(&self, segment: u32) -> Option<(String, u64)> {
        self.sessions
            .iter()
            .filter_map(|(id, entry)| {
                let at = entry.events.partition_point(|(_, l)| l.segment < segment);
                let (seq, location) = entry.events.get(at)?;
                (location.segment == segment).then(|| (location.offset, id.clone(), *seq))
            })
            .min()
            .map(|(_, id, seq)| (id, seq))
    }

    /// The heads of every session, or of `only`.
    pub fn heads(&self, only: Option<&str>) -> Vec<(String, Head)> {
        self.sessions
            .iter()
            .filter(|(id, _)| only.is_none_or(|only| only == id.as_str()))
            .map(|(id, entry)| (id.clone(), entry.head))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::testkit::{started, statement};

    fn at(segment: u32, offset: u64) -> Location {
        Location {
            segment,
            offset,
            len: 10,
        }
    }

    #[test]
    fn keeps_order_heads_and_locations() {
        let mut index = Index::default();
        index.insert(
            &started("a", 1, 100, "alice", "db", None),
            [1; 32],
            at(1, 8),
        );
        index.insert(&started("b", 1, 200, "bob", "db", None), [2; 32], at(1, 30));
        index.insert(
            &statement("a", 2, 300, "x", pb::Effect::Deny),
            [3; 32],
            at(2, 8),
        );
        let ids: Vec<String> = index
            .list(&SessionFilter::default())
            .into_iter()
            .map(|s| s.session_id)
            .collect();
        assert_eq!(ids, ["b", "a"]);
        assert_eq!(index.head("a").last_sequence, 2);
        assert_eq!(index.head("a").last_hash, [3; 32]);
        assert_eq!(index.head("zzz"), Head::default());
        assert_eq!(index.events_after("a", 1), [(2, at(2, 8))]);
        assert_eq!(index.location("a", 1), Some(at(1, 8)));
        assert_eq!(index.event_at(1, 30), Some(("b".into(), 1)));
        assert_eq!(index.event_at(1, 31), None);
        assert_eq!(index.first_event_in(2), Some(("a".into(), 2)));
        assert_eq!(index.order.len(), 2);
    }
}
