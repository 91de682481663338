//! What an `append` stores: the batch grouped by session, and per session the
//! events that continue its chain. Both stores share this, so they
//! acknowledge the same batch the same way.

use std::collections::HashMap;

use super::EncodedEvent;
use super::chain::{Head, chain_hash};

/// The events of one session in one batch, by ascending sequence, each
/// sequence once.
#[derive(Debug)]
pub(crate) struct SessionBatch {
    pub session_id: String,
    pub events: Vec<EncodedEvent>,
}

/// Groups a batch by session, in order of each session's first appearance.
///
/// Within a session the events are sorted by sequence; a sequence repeated
/// inside the batch keeps its first copy (a differing copy is logged), and
/// sequence 0 (never valid) is dropped with a warning.
pub(crate) fn group_by_session(events: Vec<EncodedEvent>) -> Vec<SessionBatch> {
    let mut order: HashMap<String, usize> = HashMap::new();
    let mut batches: Vec<SessionBatch> = Vec::new();
    for encoded in events {
        let event = &encoded.event;
        let slot = match order.get(&event.session_id) {
            Some(&slot) => slot,
            None => {
                order.insert(event.session_id.clone(), batches.len());
                batches.push(SessionBatch {
                    session_id: event.session_id.clone(),
                    events: Vec::new(),
                });
                batches.len() - 1
            }
        };
        if event.sequence == 0 {
            tracing::warn!(
                session_id = %event.session_id,
                "audit event with sequence 0 ignored"
            );
            continue;
        }
        if let Some(batch) = batches.get_mut(slot) {
            batch.events.push(encoded);
        }
    }
    for batch in &mut batches {
        // Stable: the first copy of a repeated sequence stays first. Agents
        // send each session in order, so this is usually a check only.
        if !batch.events.is_sorted_by_key(|e| e.event.sequence) {
            batch.events.sort_by_key(|e| e.event.sequence);
        }
        batch.events.dedup_by(|later, first| {
            let same_sequence = later.event.sequence == first.event.sequence;
            if same_sequence && later.payload != first.payload {
                tracing::warn!(
                    session_id = %first.event.session_id,
                    sequence = first.event.sequence,
                    "audit event sent twice in one batch with different content; the first copy counts"
                );
            }
            same_sequence
        });
    }
    batches
}

/// An event linked into its chain, ready to store.
#[derive(Debug, Clone)]
pub(crate) struct Linked {
    pub event: EncodedEvent,
    pub previous_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// What to do with one session's batch, given its stored head.
#[derive(Debug)]
pub(crate) struct Plan {
    pub session_id: String,
    /// The events that come next, linked; store them in this order.
    pub new: Vec<Linked>,
    /// Events already stored (sequence at or below the head): not stored
    /// again, but compared with the stored copy so a differing resend is
    /// logged.
    pub repeated: Vec<EncodedEvent>,
    /// The head once `new` is stored: its sequence is the ack.
    pub head: Head,
}

/// Splits a session's batch against its stored head: repeats, the events
/// that continue the chain, and (dropped) events after a gap.
pub(crate) fn plan(batch: SessionBatch, stored: Head) -> Plan {
    let SessionBatch { session_id, events } = batch;
    let mut head = stored;
    let mut new = Vec::new();
    let mut repeated = Vec::new();
    for event in events {
        let sequence = event.event.sequence;
        if sequence <= stored.last_sequence {
            repeated.push(event);
        } else if sequence == head.last_sequence.saturating_add(1) {
            let hash = chain_hash(&head.last_hash, &event.payload);
            new.push(Linked {
                event,
                previous_hash: head.last_hash,
                hash,
            });
            head.last_sequence += 1;
            head.last_hash = hash;
        } else {
            tracing::debug!(
                session_id = %session_id,
                sequence,
                acked = head.last_sequence,
                "audit events after a gap not stored; the agent resends them"
            );
            break;
        }
    }
    Plan {
        session_id,
        new,
        repeated,
        head,
    }
}

/// Logs a resent event whose bytes differ from the stored copy's.
pub(crate) fn warn_if_differs(resent: &EncodedEvent, stored_payload: &[u8]) {
    if resent.payload != stored_payload {
        tracing::warn!(
            session_id = %resent.event.session_id,
            sequence = resent.event.sequence,
            "audit event resent with different content; the stored copy is kept"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::GENESIS_HASH;
    use crate::audit::testkit;
    use palisade_proto::v1 as pb;

    fn seqs(events: &[EncodedEvent]) -> Vec<u64> {
        events.iter().map(|e| e.event.sequence).collect()
    }

    fn statement(session: &str, sequence: u64, text: &str) -> EncodedEvent {
        EncodedEvent::encode(testkit::statement(
            session,
            sequence,
            1,
            text,
            pb::Effect::Allow,
        ))
    }

    #[test]
    fn groups_in_first_appearance_order_sorted_and_deduplicated() {
        let batch = vec![
            statement("b", 2, "x"),
            statement("a", 3, "x"),
            statement("a", 1, "first"),
            statement("b", 0, "x"),
            statement("a", 1, "second"),
            statement("a", 2, "x"),
        ];
        let groups = group_by_session(batch);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].session_id, "b");
        assert_eq!(seqs(&groups[0].events), [2]);
        assert_eq!(groups[1].session_id, "a");
        assert_eq!(seqs(&groups[1].events), [1, 2, 3]);
        let kept = &groups[1].events[0];
        assert_eq!(kept, &statement("a", 1, "first"));
    }

    #[test]
    fn plans_next_events_only() {
        let events = [1, 2, 3, 5, 6].map(|s| statement("a", s, "x")).to_vec();
        let plan = plan(
            SessionBatch {
                session_id: "a".into(),
                events,
            },
            Head {
                last_sequence: 1,
                last_hash: [9; 32],
            },
        );
        assert_eq!(seqs(&plan.repeated), [1]);
        let new: Vec<u64> = plan.new.iter().map(|l| l.event.event.sequence).collect();
        assert_eq!(new, [2, 3]);
        assert_eq!(plan.new[0].previous_hash, [9; 32]);
        assert_eq!(plan.new[1].previous_hash, plan.new[0].hash);
        assert_eq!(plan.head.last_sequence, 3);
        assert_eq!(plan.head.last_hash, plan.new[1].hash);
        assert_ne!(plan.head.last_hash, GENESIS_HASH);
    }
}
