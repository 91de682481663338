//! The hash chain: the canonical encoding of an event, the link hash, and the
//! checker `verify` walks stored chains with.
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

use super::Broken;

/// The `previous_hash` of the first event of every session.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// The bytes an event is hashed over: its protobuf encoding with map entries
/// in key order. Stores keep exactly these bytes.
pub fn canonical_bytes(event: &pb::AuditEvent) -> Vec<u8> {
    CanonicalEvent::from(event).encode_to_vec()
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

/// Walks stored records, session by session in sequence order (sessions may
/// interleave), and finds the first broken link.
///
/// The checker trusts nothing but the records it is given: each record's
/// hash is recomputed from its payload, and each must link to the one
/// before. [`finish`](Self::finish) then compares every chain's end with the
/// head the store keeps, which catches records deleted from a chain's end.
#[derive(Debug, Default)]
pub(crate) struct ChainChecker {
    only: Option<String>,
    links: HashMap<String, Head>,
    events_checked: u64,
}

/// A record to check: the stored payload and hashes, and the session and
/// sequence the container says it holds (a database row's key), if any.
pub(crate) struct StoredRecord<'a> {
    pub payload: &'a [u8],
    pub previous_hash: &'a [u8],
    pub hash: &'a [u8],
    pub claimed: Option<(&'a str, u64)>,
}

impl ChainChecker {
    /// A checker for every session, or for `only` that one.
    pub fn new(only: Option<&str>) -> Self {
        Self {
            only: only.map(str::to_owned),
            ..Self::default()
        }
    }

    /// Checks one record.
    ///
    /// A fault of the record itself (it does not decode, is not canonical,
    /// or its hash is wrong) is named by its claimed key, else by what
    /// `locate` says was stored there, else by its own content. A fault of
    /// the chain (a sequence gap, a link to the wrong hash) names the first
    /// event missing or the event that does not link.
    pub fn check(
        &mut self,
        record: &StoredRecord<'_>,
        locate: impl FnOnce() -> Option<(String, u64)>,
    ) -> Result<(), Broken> {
        let event = pb::AuditEvent::decode(record.payload);
        let record_fault = |problem: String| {
            let (session_id, sequence) = match (record.claimed, &event) {
                (Some((session, sequence)), _) => (session.to_owned(), sequence),
                (None, event) => locate().unwrap_or_else(|| match event {
                    Ok(event) => (event.session_id.clone(), event.sequence),
                    Err(_) => (String::new(), 0),
                }),
            };
            Broken {
                session_id,
                sequence,
                problem,
            }
        };
        let event = match &event {
            Ok(event) => event,
            Err(e) => return Err(record_fault(format!("event does not decode: {e}"))),
        };
        let (session_id, sequence) = (event.session_id.as_str(), event.sequence);
        if let Some(only) = self.only.as_deref()
            && only != session_id
            && record.claimed.is_none_or(|(claimed, _)| claimed != only)
        {
            return Ok(());
        }
        if let Some((claimed_session, claimed_sequence)) = record.claimed
            && (claimed_session != session_id || claimed_sequence != sequence)
        {
            return Err(record_fault(format!(
                "stored event is another one (session `{session_id}` sequence {sequence})"
            )));
        }
        let (Some(previous_hash), Some(hash)) = (
            hash_from_slice(record.previous_hash),
            hash_from_slice(record.hash),
        ) else {
            return Err(record_fault("malformed hash".to_owned()));
        };
        if canonical_bytes(event) != record.payload {
            return Err(record_fault(
                "event is not in canonical encoding".to_owned(),
            ));
        }
        if chain_hash(&previous_hash, record.payload) != hash {
            return Err(record_fault("hash mismatch".to_owned()));
        }
        self.events_checked += 1;
        let link = self.links.entry(session_id.to_owned()).or_default();
        let expected = link.last_sequence.saturating_add(1);
        let chain_fault = |sequence: u64, problem: String| Broken {
            session_id: session_id.to_owned(),
            sequence,
            problem,
        };
        if sequence > expected {
            let problem = if link.last_sequence == 0 {
                format!("event missing (chain starts at {sequence})")
            } else {
                format!(
                    "event missing (chain continues from {} to {sequence})",
                    link.last_sequence
                )
            };
            return Err(chain_fault(expected, problem));
        }
        if sequence < expected {
            return Err(chain_fault(
                sequence,
                format!(
                    "event repeated or out of order (sequence {sequence} after {})",
                    link.last_sequence
                ),
            ));
        }
        if previous_hash != link.last_hash {
            let problem = if link.last_sequence == 0 {
                "first event does not start the chain (previous hash is not zero)".to_owned()
            } else {
                format!(
                    "previous hash mismatch (chain broken after {})",
                    link.last_sequence
                )
            };
            return Err(chain_fault(sequence, problem));
        }
        *link = Head {
            last_sequence: sequence,
            last_hash: hash,
        };
        Ok(())
    }

    /// `(sessions, events)` checked so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.links.len() as u64, self.events_checked)
    }

    /// Compares every chain walked with the store's heads (for the checked
    /// sessions) and returns `(sessions, events)` checked.
    pub fn finish(
        self,
        heads: impl IntoIterator<Item = (String, Head)>,
    ) -> Result<(u64, u64), (u64, u64, Broken)> {
        let counts = self.counts();
        let fail = |session_id: String, sequence: u64, problem: String| {
            Err((
                counts.0,
                counts.1,
                Broken {
                    session_id,
                    sequence,
                    problem,
                },
            ))
        };
        let mut heads: Vec<(String, Head)> = heads
            .into_iter()
            .filter(|(id, _)| self.only.as_deref().is_none_or(|only| only == id))
            .collect();
        heads.sort_by(|a, b| a.0.cmp(&b.0));
        for (session_id, head) in &heads {
            let walked = self.links.get(session_id).copied().unwrap_or_default();
            if walked.last_sequence < head.last_sequence {
                let problem = if walked.last_sequence == 0 {
                    format!(
                        "event missing (no stored event, head at {})",
                        head.last_sequence
                    )
                } else {
                    format!(
                        "event missing (chain ends at {}, head at {})",
                        walked.last_sequence, head.last_sequence
                    )
                };
                return fail(session_id.clone(), walked.last_sequence + 1, problem);
            }
            if walked.last_sequence > head.last_sequence {
                return fail(
                    session_id.clone(),
                    head.last_sequence + 1,
                    format!(
                        "event beyond the chain head (head at {})",
                        head.last_sequence
                    ),
                );
            }
            if walked.last_hash != head.last_hash {
                return fail(
                    session_id.clone(),
                    head.last_sequence,
                    "chain head hash mismatch".to_owned(),
                );
            }
        }
        let mut unknown: Vec<&String> = self
            .links
            .keys()
            .filter(|id| heads.binary_search_by(|(h, _)| h.cmp(id)).is_err())
            .collect();
        unknown.sort();
        if let Some(session_id) = unknown.first() {
            return fail(
                (*session_id).clone(),
                1,
                "session has no chain head".to_owned(),
            );
        }
        Ok(counts)
    }
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
            testkit::started("s", 1, 100, "alice", "db", Some("org/repo")),
            pb::AuditEvent::default(),
        ] {
            assert_eq!(canonical_bytes(&event), event.encode_to_vec());
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

    fn record(event: &pb::AuditEvent, previous: [u8; 32]) -> (Vec<u8>, [u8; 32], [u8; 32]) {
        let payload = canonical_bytes(event);
        let hash = chain_hash(&previous, &payload);
        (payload, previous, hash)
    }

    #[test]
    fn checker_accepts_a_chain_and_names_the_missing_event() {
        let e1 = testkit::started("s", 1, 100, "alice", "db", None);
        let e2 = testkit::statement("s", 2, 101, "select 1", pb::Effect::Allow);
        let e3 = testkit::statement("s", 3, 102, "select 2", pb::Effect::Allow);
        let (p1, h0, h1) = record(&e1, GENESIS_HASH);
        let (p2, _, h2) = record(&e2, h1);
        let (p3, _, h3) = record(&e3, h2);
        let rec = |p: &'static [u8], prev: &'static [u8; 32], h: &'static [u8; 32]| StoredRecord {
            payload: p,
            previous_hash: prev,
            hash: h,
            claimed: None,
        };
        let leak = |v: Vec<u8>| -> &'static [u8] { Vec::leak(v) };
        let leak32 = |v: [u8; 32]| -> &'static [u8; 32] { Box::leak(Box::new(v)) };
        let (p1, p2, p3) = (leak(p1), leak(p2), leak(p3));
        let (h0, h1, h2, h3) = (leak32(h0), leak32(h1), leak32(h2), leak32(h3));

        let mut intact = ChainChecker::new(None);
        for r in [rec(p1, h0, h1), rec(p2, h1, h2), rec(p3, h2, h3)] {
            intact.check(&r, || None).unwrap();
        }
        let head = Head {
            last_sequence: 3,
            last_hash: *h3,
        };
        assert_eq!(intact.finish([("s".to_owned(), head)]).unwrap(), (1, 3));

        let mut gap = ChainChecker::new(None);
        gap.check(&rec(p1, h0, h1), || None).unwrap();
        let broken = gap.check(&rec(p3, h2, h3), || None).unwrap_err();
        assert_eq!((broken.session_id.as_str(), broken.sequence), ("s", 2));
        assert_eq!(
            broken.problem,
            "event missing (chain continues from 1 to 3)"
        );

        let mut short = ChainChecker::new(None);
        short.check(&rec(p1, h0, h1), || None).unwrap();
        short.check(&rec(p2, h1, h2), || None).unwrap();
        let (_, _, broken) = short.finish([("s".to_owned(), head)]).unwrap_err();
        assert_eq!(broken.sequence, 3);
        assert_eq!(broken.problem, "event missing (chain ends at 2, head at 3)");

        let mut tampered = ChainChecker::new(None);
        tampered.check(&rec(p1, h0, h1), || None).unwrap();
        let e2b = testkit::statement("s", 2, 101, "select 666", pb::Effect::Allow);
        let p2b = leak(canonical_bytes(&e2b));
        let broken = tampered.check(&rec(p2b, h1, h2), || None).unwrap_err();
        assert_eq!(
            (broken.sequence, broken.problem.as_str()),
            (2, "hash mismatch")
        );

        let mut wrong_row = ChainChecker::new(None);
        let broken = wrong_row
            .check(
                &StoredRecord {
                    claimed: Some(("other", 9)),
                    ..rec(p1, h0, h1)
                },
                || None,
            )
            .unwrap_err();
        assert_eq!((broken.session_id.as_str(), broken.sequence), ("other", 9));
    }
}
