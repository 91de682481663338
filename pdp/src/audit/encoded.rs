//! An audit event with the bytes it arrived as: what a store keeps and the
//! chain hashes.

use bytes::{Bytes, BytesMut};
use palisade_proto::v1 as pb;
use prost::Message as _;

/// `AuditEvent.agent_id`'s field number.
const AGENT_ID_TAG: u32 = 4;

/// An event and its encoding, which decodes to it.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedEvent {
    /// The decoded event (grouping, summaries, the index).
    pub event: pb::AuditEvent,
    /// Its bytes, as they will be stored and hashed.
    pub payload: Bytes,
}

impl EncodedEvent {
    /// Decodes `payload`, keeping it as it is: a malformed event is an
    /// error, and nothing about a valid one is re-encoded. Fields this
    /// schema does not know (an agent newer than the PDP) stay in the bytes
    /// and the chain, unread; a field the PDP sets, as it sets `agent_id`,
    /// must be appended the same way so that it is the value decoded.
    pub fn decode(payload: Bytes) -> Result<Self, prost::DecodeError> {
        let event = pb::AuditEvent::decode(payload.clone())?;
        Ok(Self { event, payload })
    }

    /// Encodes an event produced here (tests, tools).
    pub fn encode(event: pb::AuditEvent) -> Self {
        let payload = Bytes::from(event.encode_to_vec());
        Self { event, payload }
    }

    /// The event as observed by `agent`, whatever its sender claimed.
    ///
    /// An event that names another agent (or none) gets `agent_id` appended
    /// to its bytes: protobuf decoders take the last value of a singular
    /// field, so the stored bytes decode to the attributed event without
    /// re-encoding the rest, and the chain covers the attribution.
    pub fn attributed_to(self, agent: &str) -> Self {
        if self.event.agent_id == agent {
            return self;
        }
        let Self { mut event, payload } = self;
        let mut attributed = BytesMut::with_capacity(payload.len() + agent.len() + 8);
        attributed.extend_from_slice(&payload);
        prost::encoding::string::encode(AGENT_ID_TAG, &agent.to_owned(), &mut attributed);
        agent.clone_into(&mut event.agent_id);
        Self {
            event,
            payload: attributed.freeze(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::testkit;

    #[test]
    fn an_encoding_is_kept_as_it_came() {
        // Fields out of number order (the agent appends the sequence last):
        // valid protobuf, and not what prost would write.
        let mut event = testkit::statement("s", 0, 101, "select 1", pb::Effect::Allow);
        let mut bytes = event.encode_to_vec();
        prost::encoding::uint64::encode(2, &7, &mut bytes);
        event.sequence = 7;
        assert_ne!(bytes, event.encode_to_vec());

        let decoded = EncodedEvent::decode(Bytes::from(bytes.clone())).unwrap();
        assert_eq!(decoded.event, event);
        assert_eq!(decoded.payload, bytes);
    }

    /// `StreamEventsRequest.events` is `repeated bytes` so the PDP gets each
    /// event's bytes; agents and PDPs of either schema must agree on the wire.
    #[test]
    fn encoded_events_are_a_request_of_events_on_the_wire() {
        #[derive(Clone, PartialEq, prost::Message)]
        struct Typed {
            #[prost(message, repeated, tag = "1")]
            events: Vec<pb::AuditEvent>,
        }
        let events: Vec<pb::AuditEvent> = (1..=3)
            .map(|n| testkit::statement("s", n, 100, "select 1", pb::Effect::Allow))
            .collect();
        let raw = pb::StreamEventsRequest {
            events: events
                .iter()
                .map(|e| Bytes::from(e.encode_to_vec()))
                .collect(),
        };
        let typed = Typed {
            events: events.clone(),
        };
        assert_eq!(raw.encode_to_vec(), typed.encode_to_vec());
        let decoded = Typed::decode(raw.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.events, events);
    }

    #[test]
    fn malformed_bytes_are_refused() {
        assert!(EncodedEvent::decode(Bytes::from_static(&[0x0a, 0x05, b'a'])).is_err());
    }

    #[test]
    fn the_sending_agent_is_recorded_in_the_bytes() {
        let mut claimed = testkit::statement("s", 1, 101, "select 1", pb::Effect::Allow);
        claimed.agent_id = "someone-else".into();
        let sent = EncodedEvent::encode(claimed);

        let attributed = sent.clone().attributed_to("agent-1");
        assert_eq!(attributed.event.agent_id, "agent-1");
        assert!(attributed.payload.starts_with(&sent.payload));
        let stored = pb::AuditEvent::decode(attributed.payload.clone()).unwrap();
        assert_eq!(stored, attributed.event);

        // Already right: the bytes stay exactly as sent.
        let right = attributed.clone().attributed_to("agent-1");
        assert_eq!(right, attributed);
    }
}
