//! The hash chain: the canonical encoding of an event and the link hash.
//!
//! # Canonical encoding
//!
//! prost encodes a message deterministically except for map fields, which it
//! writes in `HashMap` iteration order (different in every process). Two
//! messages reachable from `AuditEvent` have maps: `Principal.claims` and
//! `ClientInfo.startup_parameters`. The canonical bytes are the protobuf
//! encoding with those entries sorted by key, produced by mirror messages
//! that use `BTreeMap`. The result is still a valid `AuditEvent` encoding:
//! decoding it gives the same event, and encoding that again gives the same
//! bytes. Any map added later to a message reachable from `AuditEvent` must be
//! mirrored here; `tests::maps_are_mirrored` reads the proto files to catch it.

use std::collections::{BTreeMap, HashMap};

use palisade_proto::v1 as pb;
use pb::audit_event::Event;
use prost::Message as _;
use sha2::{Digest as _, Sha256};

/// The `previous_hash` of the first event of every session.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// The bytes an event is hashed over: its protobuf encoding with map entries
/// in key order. Stores keep exactly these bytes.
pub fn canonical_bytes(event: &pb::AuditEvent) -> Vec<u8> {
    match &event.event {
        // Their canonical messages are the generated ones themselves (see
        // `CanonicalKind`): no map is reachable, so prost's own encoding is
        // already canonical, and the event need not be copied into the
        // mirror first (statements are almost every event).
        Some(Event::Statement(_) | Event::Approval(_) | Event::SessionEnded(_)) | None => {
            event.encode_to_vec()
        }
        Some(Event::SessionStarted(_) | Event::SessionRefused(_)) => {
            CanonicalEvent::from(event).encode_to_vec()
        }
    }
}

/// The chain link: `SHA-256(previous || canonical)`.
pub fn chain_hash(previous: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(canonical);
    hasher.finalize().into()
}

/// The end of a session's chain as a store keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    /// The last stored sequence (0: nothing stored).
    pub last_sequence: u64,
    /// The hash of that event ([`GENESIS_HASH`] when nothing is stored).
    pub last_hash: [u8; 32],
}

impl Default for Head {
    fn default() -> Self {
        Self {
            last_sequence: 0,
            last_hash: GENESIS_HASH,
        }
    }
}

/// A 32-byte hash from stored bytes.
pub(crate) fn hash_from_slice(bytes: &[u8]) -> Option<[u8; 32]> {
    bytes.try_into().ok()
}

// ---- Mirror messages: the protobuf layout of `AuditEvent`, maps ordered. ----

#[derive(Clone, PartialEq, prost::Message)]
struct CanonicalEvent {
    #[prost(string, tag = "1")]
    session_id: String,
    #[prost(uint64, tag = "2")]
    sequence: u64,
    #[prost(message, optional, tag = "3")]
    time: Option<prost_types::Timestamp>,
    #[prost(string, tag = "4")]
    agent_id: String,
    #[prost(oneof = "CanonicalKind", tags = "10, 11, 12, 13, 14")]
    event: Option<CanonicalKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum CanonicalKind {
    #[prost(message, tag = "10")]
    SessionStarted(CanonicalStarted),
    #[prost(message, tag = "11")]
    Statement(pb::StatementExecuted),
    #[prost(message, tag = "12")]
    Approval(pb::ApprovalEvent),
    #[prost(message, tag = "13")]
    SessionEnded(pb::SessionEnded),
    #[prost(message, tag = "14")]
    SessionRefused(CanonicalRefused),
}

#[derive(Clone, PartialEq, prost::Message)]
struct CanonicalStarted {
    #[prost(message, optional, tag = "1")]
    principal: Option<CanonicalPrincipal>,
    #[prost(string, tag = "2")]
    target: String,
    #[prost(message, optional, tag = "3")]
    client: Option<CanonicalClient>,
    #[prost(string, repeated, tag = "4")]
    granted_roles: Vec<String>,
    #[prost(string, tag = "5")]
    database_role: String,
    #[prost(message, optional, tag = "6")]
    deadline: Option<prost_types::Timestamp>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CanonicalRefused {
    #[prost(string, tag = "1")]
    target: String,
    #[prost(message, optional, tag = "2")]
    client: Option<CanonicalClient>,
    #[prost(string, tag = "3")]
    reason: String,
    #[prost(message, optional, tag = "4")]
    principal: Option<CanonicalPrincipal>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CanonicalPrincipal {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    issuer: String,
    #[prost(string, tag = "3")]
    subject: String,
    #[prost(string, repeated, tag = "4")]
    groups: Vec<String>,
    #[prost(btree_map = "string, string", tag = "5")]
    claims: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CanonicalClient {
    #[prost(string, tag = "1")]
    address: String,
    #[prost(string, tag = "2")]
    application_name: String,
    #[prost(string, tag = "3")]
    database_user: String,
    #[prost(bool, tag = "4")]
    tls: bool,
    #[prost(btree_map = "string, string", tag = "5")]
    startup_parameters: BTreeMap<String, String>,
    #[prost(string, tag = "6")]
    protocol_version: String,
}

// The conversions destructure every field, so a field added to one of these
// messages fails to compile here until it is mirrored.

impl From<&pb::AuditEvent> for CanonicalEvent {
    fn from(event: &pb::AuditEvent) -> Self {
        let pb::AuditEvent {
            session_id,
            sequence,
            time,
            agent_id,
            event,
        } = event;
        Self {
            session_id: session_id.clone(),
            sequence: *sequence,
            time: *time,
            agent_id: agent_id.clone(),
            event: event.as_ref().map(|event| match event {
                Event::SessionStarted(started) => CanonicalKind::SessionStarted(started.into()),
                Event::Statement(statement) => CanonicalKind::Statement(statement.clone()),
                Event::Approval(approval) => CanonicalKind::Approval(approval.clone()),
                Event::SessionEnded(ended) => CanonicalKind::SessionEnded(ended.clone()),
                Event::SessionRefused(refused) => CanonicalKind::SessionRefused(refused.into()),
            }),
        }
    }
}

impl From<&pb::SessionStarted> for CanonicalStarted {
    fn from(started: &pb::SessionStarted) -> Self {
        let pb::SessionStarted {
            principal,
            target,
            client,
            granted_roles,
            database_role,
            deadline,
        } = started;
        Self {
            principal: principal.as_ref().map(Into::into),
            target: target.clone(),
            client: client.as_ref().map(Into::into),
            granted_roles: granted_roles.clone(),
            database_role: database_role.clone(),
            deadline: *deadline,
        }
    }
}

impl From<&pb::SessionRefused> for CanonicalRefused {
    fn from(refused: &pb::SessionRefused) -> Self {
        let pb::SessionRefused {
            target,
            client,
            reason,
            principal,
        } = refused;
        Self {
            target: target.clone(),
            client: client.as_ref().map(Into::into),
            reason: reason.clone(),
            principal: principal.as_ref().map(Into::into),
        }
    }
}

impl From<&pb::Principal> for CanonicalPrincipal {
    fn from(principal: &pb::Principal) -> Self {
        let pb::Principal {
            id,
            issuer,
            subject,
            groups,
            claims,
        } = principal;
        Self {
            id: id.clone(),
            issuer: issuer.clone(),
            subject: subject.clone(),
            groups: groups.clone(),
            claims: sorted(claims),
        }
    }
}

impl From<&pb::ClientInfo> for CanonicalClient {
    fn from(client: &pb::ClientInfo) -> Self {
        let pb::ClientInfo {
            address,
            application_name,
            database_user,
            tls,
            startup_parameters,
            protocol_version,
        } = client;
        Self {
            address: address.clone(),
            application_name: application_name.clone(),
            database_user: database_user.clone(),
            tls: *tls,
            startup_parameters: sorted(startup_parameters),
            protocol_version: protocol_version.clone(),
        }
    }
}

fn sorted(map: &HashMap<String, String>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::testkit;

    fn principal_with_claims(n: usize) -> pb::Principal {
        pb::Principal {
            id: "https://issuer|alice".into(),
            issuer: "https://issuer".into(),
            subject: "alice".into(),
            groups: vec!["dba".into()],
            claims: (0..n)
                .map(|i| (format!("claim{i}"), format!("v{i}")))
                .collect(),
        }
    }

    fn rich_event() -> pb::AuditEvent {
        let mut event = testkit::started("s", 1, 100, "alice", "db", Some("org/repo"));
        if let Some(Event::SessionStarted(started)) = &mut event.event {
            started.principal = Some(principal_with_claims(40));
            started.client = Some(pb::ClientInfo {
                address: "10.0.0.1:5000".into(),
                startup_parameters: (0..40).map(|i| (format!("p{i}"), format!("{i}"))).collect(),
                ..Default::default()
            });
        }
        event
    }

    #[test]
    fn canonical_bytes_do_not_depend_on_map_order() {
        let event = rich_event();
        let bytes = canonical_bytes(&event);
        // Fresh HashMaps (new random state, new insertion order) every time.
        for _ in 0..20 {
            let mut copy = event.clone();
            if let Some(Event::SessionStarted(started)) = &mut copy.event
                && let Some(principal) = &mut started.principal
            {
                let mut claims: Vec<_> = principal.claims.drain().collect();
                claims.reverse();
                principal.claims = claims.into_iter().collect();
            }
            assert_eq!(canonical_bytes(&copy), bytes);
        }
        // The canonical bytes are a valid encoding of the same event, and a
        // fixed point.
        let decoded = pb::AuditEvent::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded, event);
        assert_eq!(canonical_bytes(&decoded), bytes);
    }

    #[test]
    fn canonical_bytes_equal_prost_bytes_without_maps() {
        for event in [
            testkit::statement("s", 2, 101, "select 1", pb::Effect::Deny),
            testkit::ended("s", 3, 102, "client_terminated"),
            pb::AuditEvent {
                event: Some(Event::SessionStarted(pb::SessionStarted {
                    principal: Some(principal_with_claims(1)),
                    ..Default::default()
                })),
                ..Default::default()
            },
            pb::AuditEvent::default(),
        ] {
            assert_eq!(canonical_bytes(&event), event.encode_to_vec());
        }
    }

    #[test]
    fn the_shortcut_for_kinds_without_maps_matches_the_mirror() {
        let approval = pb::AuditEvent {
            session_id: "s".into(),
            sequence: 4,
            event: Some(Event::Approval(pb::ApprovalEvent {
                approval_id: "a1".into(),
                reviewer: "bob".into(),
                reviewers: vec!["dba".into()],
                ..Default::default()
            })),
            ..Default::default()
        };
        for event in [
            testkit::statement("s", 2, 101, "select 1", pb::Effect::Allow),
            testkit::ended("s", 3, 102, "client_terminated"),
            approval,
        ] {
            assert_eq!(
                canonical_bytes(&event),
                CanonicalEvent::from(&event).encode_to_vec()
            );
        }
    }

    #[test]
    fn chain_hash_is_sha256_of_both() {
        let previous = [7u8; 32];
        let mut hasher = Sha256::new();
        hasher.update([7u8; 32]);
        hasher.update(b"abc");
        let expected: [u8; 32] = hasher.finalize().into();
        assert_eq!(chain_hash(&previous, b"abc"), expected);
    }

    /// Every `map<` in the messages an `AuditEvent` reaches is one the mirror
    /// types above order.
    #[test]
    fn maps_are_mirrored() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/palisade/v1");
        let mut found = Vec::new();
        for file in ["common.proto", "audit.proto"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            let mut message = String::new();
            for line in text.lines() {
                let line = line.trim();
                if let Some(rest) = line.strip_prefix("message ") {
                    message = rest.trim_end_matches(" {").trim().to_owned();
                }
                if line.starts_with("map<") {
                    let field = line.split_whitespace().nth(2).unwrap_or_default();
                    found.push(format!("{message}.{field}"));
                }
            }
        }
        found.sort();
        assert_eq!(
            found,
            ["ClientInfo.startup_parameters", "Principal.claims"],
            "a map field must be mirrored in audit/chain.rs"
        );
    }
}
