//! Statement events encoded from their parts, without a message tree for
//! what every execution repeats.
//!
//! A statement event is mostly the same from one execution to the next:
//! the session's ids, the statement's attributes (shared by every string of
//! the same literal shape), the policies that allowed it. Building the
//! `pb::AuditEvent` tree copied each of them into owned strings, encoded
//! them and freed them again, per statement and on the session's thread.
//! Here the session's ids are encoded once per session ([`EventPrefix`]),
//! the attributes once per analysis (by the caller, with
//! [`encode_attributes`]), and the borrowed text, policies and protocol are
//! written straight from where they live. Only what differs per execution
//! (rows, tag, columns, duration, error) goes through a small message.
//!
//! Protobuf readers take fields in any order and a length-delimited field
//! is the same bytes whether it holds a message or a string, so the result
//! decodes as the `pb::AuditEvent` the tree would have encoded (a test
//! holds the two equal).

use bytes::BufMut;
use palisade_proto::v1 as pb;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

/// `AuditEvent.time`.
const EVENT_TIME: u32 = 3;
/// `AuditEvent.statement` (of the `event` oneof).
const EVENT_STATEMENT: u32 = 11;
/// `StatementExecuted.text`.
const STATEMENT_TEXT: u32 = 1;
/// `StatementExecuted.attributes`.
const STATEMENT_ATTRIBUTES: u32 = 2;
/// `StatementExecuted.determining_policies`.
const STATEMENT_POLICIES: u32 = 4;
/// `StatementExecuted.protocol`.
const STATEMENT_PROTOCOL: u32 = 15;

/// A session's `session_id` and `agent_id` fields, encoded once.
#[derive(Debug, Clone)]
pub(super) struct EventPrefix(Vec<u8>);

impl EventPrefix {
    pub(super) fn new(session_id: &str, agent_id: &str) -> Self {
        let ids = pb::AuditEvent {
            session_id: session_id.to_owned(),
            agent_id: agent_id.to_owned(),
            ..Default::default()
        };
        Self(ids.encode_to_vec())
    }
}

/// A statement's attributes as `StatementAttributes` bytes, to encode once
/// and reuse for every event of the same analysis.
pub fn encode_attributes(attributes: &palisade_sql::Attributes) -> Vec<u8> {
    palisade_proto::convert::attributes_to_pb(attributes).encode_to_vec()
}

/// The parts of a statement event.
#[derive(Debug)]
pub struct StatementParts<'a> {
    /// `text`, as kept (verbatim or normalized).
    pub text: &'a str,
    /// `attributes`, encoded ([`encode_attributes`]).
    pub attributes: &'a [u8],
    /// `determining_policies`.
    pub policies: &'a [String],
    /// `protocol`.
    pub protocol: &'a str,
    /// Every other field; its `text`, `attributes`, `determining_policies`
    /// and `protocol` are ignored (the parts above stand for them).
    pub rest: pb::StatementExecuted,
}

/// The `AuditEvent` (without its sequence, as [`super::frame::Unnumbered`]
/// holds it) of a statement at `time`.
pub(super) fn encode(
    prefix: &EventPrefix,
    time: &prost_types::Timestamp,
    parts: StatementParts<'_>,
) -> Vec<u8> {
    let StatementParts {
        text,
        attributes,
        policies,
        protocol,
        mut rest,
    } = parts;
    // Cleared, not trusted to be empty: a field written twice would decode
    // as the later one (strings) or as both (the repeated policies).
    rest.text.clear();
    rest.attributes = None;
    rest.determining_policies.clear();
    rest.protocol.clear();

    let statement_len = rest.encoded_len()
        + str_field_len(STATEMENT_TEXT, text)
        + bytes_field_len(STATEMENT_ATTRIBUTES, attributes)
        + prost::encoding::string::encoded_len_repeated(STATEMENT_POLICIES, policies)
        + str_field_len(STATEMENT_PROTOCOL, protocol);
    let len = prefix.0.len()
        + prost::encoding::message::encoded_len(EVENT_TIME, time)
        + key_len(EVENT_STATEMENT)
        + encoded_len_varint(statement_len as u64)
        + statement_len;

    let mut body = Vec::with_capacity(len);
    body.put_slice(&prefix.0);
    prost::encoding::message::encode(EVENT_TIME, time, &mut body);
    encode_key(EVENT_STATEMENT, WireType::LengthDelimited, &mut body);
    encode_varint(statement_len as u64, &mut body);
    rest.encode_raw(&mut body);
    put_str_field(STATEMENT_TEXT, text, &mut body);
    put_bytes_field(STATEMENT_ATTRIBUTES, attributes, &mut body);
    prost::encoding::string::encode_repeated(STATEMENT_POLICIES, policies, &mut body);
    put_str_field(STATEMENT_PROTOCOL, protocol, &mut body);
    debug_assert_eq!(body.len(), len);
    body
}

/// A length-delimited field's encoded length.
fn bytes_field_len(tag: u32, bytes: &[u8]) -> usize {
    key_len(tag) + encoded_len_varint(bytes.len() as u64) + bytes.len()
}

/// A string field's encoded length; proto3 leaves an empty one out.
fn str_field_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        bytes_field_len(tag, s.as_bytes())
    }
}

fn put_bytes_field(tag: u32, bytes: &[u8], buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(bytes.len() as u64, buf);
    buf.put_slice(bytes);
}

fn put_str_field(tag: u32, s: &str, buf: &mut Vec<u8>) {
    if !s.is_empty() {
        put_bytes_field(tag, s.as_bytes(), buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_sql::{Attributes, ColumnRef, Relation, StatementKind};

    fn attributes() -> Attributes {
        let orders = Relation {
            schema: "public".to_owned(),
            name: "orders".to_owned(),
        };
        Attributes {
            kind: StatementKind::Update,
            reads: vec![orders.clone()],
            writes: vec![orders.clone()],
            functions: vec!["now".to_owned()],
            has_where: true,
            has_limit: false,
            is_ddl: false,
            fingerprint: "0123456789abcdef".to_owned(),
            normalized: "UPDATE orders SET total = $1 WHERE id = $2".to_owned(),
            copy_program: false,
            filtered_columns: vec![ColumnRef {
                relation: Some(orders),
                column: "id".to_owned(),
            }],
            inner_kind: Some(StatementKind::Select),
            object_name: Some("orders".to_owned()),
        }
    }

    /// Every other field set, so that a field the parts would drop or
    /// double shows.
    fn rest() -> pb::StatementExecuted {
        pb::StatementExecuted {
            text: String::new(),
            attributes: None,
            effect: pb::Effect::Allow.into(),
            determining_policies: Vec::new(),
            reason: "because".to_owned(),
            approval_id: "ap-1".to_owned(),
            rows: 3,
            command_tag: "UPDATE 3".to_owned(),
            masked_columns: vec![pb::ColumnRef {
                relation: None,
                column: "email".to_owned(),
            }],
            duration: Some(prost_types::Duration {
                seconds: 1,
                nanos: 5,
            }),
            error: "oops".to_owned(),
            sqlstate: "23505".to_owned(),
            result_columns: vec!["id".to_owned(), "total".to_owned()],
            cached_decision: true,
            protocol: String::new(),
        }
    }

    fn time() -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: 1_764_000_000,
            nanos: 42,
        }
    }

    #[test]
    fn the_parts_decode_as_the_whole_event() {
        let attributes = attributes();
        let policies = vec!["dba-all".to_owned(), "orders-writers".to_owned()];
        let text = "UPDATE orders SET total = 0 WHERE id = 1";
        let body = encode(
            &EventPrefix::new("session-1", "agent-a"),
            &time(),
            StatementParts {
                text,
                attributes: &encode_attributes(&attributes),
                policies: &policies,
                protocol: "extended",
                rest: rest(),
            },
        );
        let whole = pb::AuditEvent {
            session_id: "session-1".to_owned(),
            sequence: 0,
            time: Some(time()),
            agent_id: "agent-a".to_owned(),
            event: Some(pb::audit_event::Event::Statement(pb::StatementExecuted {
                text: text.to_owned(),
                attributes: Some(palisade_proto::convert::attributes_to_pb(&attributes)),
                determining_policies: policies.clone(),
                protocol: "extended".to_owned(),
                ..rest()
            })),
        };
        assert_eq!(pb::AuditEvent::decode(body.as_slice()).unwrap(), whole);
    }

    #[test]
    fn fields_the_parts_stand_for_are_not_written_twice() {
        let mut rest = rest();
        rest.text = "stale".to_owned();
        rest.determining_policies = vec!["stale".to_owned()];
        rest.protocol = "stale".to_owned();
        rest.attributes = Some(pb::StatementAttributes::default());
        let body = encode(
            &EventPrefix::new("s", ""),
            &time(),
            StatementParts {
                text: "",
                attributes: &encode_attributes(&attributes()),
                policies: &[],
                protocol: "simple",
                rest,
            },
        );
        let event = pb::AuditEvent::decode(body.as_slice()).unwrap();
        let Some(pb::audit_event::Event::Statement(s)) = event.event else {
            panic!("not a statement event: {event:?}");
        };
        assert_eq!(s.text, "");
        assert!(s.determining_policies.is_empty());
        assert_eq!(s.protocol, "simple");
        assert_eq!(
            s.attributes,
            Some(palisade_proto::convert::attributes_to_pb(&attributes()))
        );
        assert_eq!(event.agent_id, "");
    }
}
