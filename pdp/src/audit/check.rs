//! The chain checker both stores' `verify` walk their stored records with.

use std::collections::HashMap;

use palisade_proto::v1 as pb;
use prost::Message as _;

use super::Broken;
use super::chain::{Head, chain_hash, hash_from_slice};

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
    /// A fault of the record itself (it does not decode, or its hash is
    /// wrong) is named by its claimed key, else by what
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::GENESIS_HASH;
    use crate::audit::testkit;

    /// A stored record: payload, previous hash, hash.
    struct Owned(Vec<u8>, [u8; 32], [u8; 32]);

    impl Owned {
        fn link(event: &pb::AuditEvent, previous: [u8; 32]) -> Self {
            let payload = event.encode_to_vec();
            let hash = chain_hash(&previous, &payload);
            Self(payload, previous, hash)
        }

        fn stored(&self) -> StoredRecord<'_> {
            StoredRecord {
                payload: &self.0,
                previous_hash: &self.1,
                hash: &self.2,
                claimed: None,
            }
        }
    }

    #[test]
    fn checker_accepts_a_chain_and_names_what_breaks_it() {
        let r1 = Owned::link(
            &testkit::started("s", 1, 100, "alice", "db", None),
            GENESIS_HASH,
        );
        let r2 = Owned::link(
            &testkit::statement("s", 2, 101, "select 1", pb::Effect::Allow),
            r1.2,
        );
        let r3 = Owned::link(
            &testkit::statement("s", 3, 102, "select 2", pb::Effect::Allow),
            r2.2,
        );
        let head = Head {
            last_sequence: 3,
            last_hash: r3.2,
        };

        let mut intact = ChainChecker::new(None);
        for r in [&r1, &r2, &r3] {
            intact.check(&r.stored(), || None).unwrap();
        }
        assert_eq!(intact.finish([("s".to_owned(), head)]).unwrap(), (1, 3));

        let mut gap = ChainChecker::new(None);
        gap.check(&r1.stored(), || None).unwrap();
        let broken = gap.check(&r3.stored(), || None).unwrap_err();
        assert_eq!((broken.session_id.as_str(), broken.sequence), ("s", 2));
        assert_eq!(
            broken.problem,
            "event missing (chain continues from 1 to 3)"
        );

        let mut short = ChainChecker::new(None);
        short.check(&r1.stored(), || None).unwrap();
        short.check(&r2.stored(), || None).unwrap();
        let (_, _, broken) = short.finish([("s".to_owned(), head)]).unwrap_err();
        assert_eq!(broken.sequence, 3);
        assert_eq!(broken.problem, "event missing (chain ends at 2, head at 3)");

        let mut tampered = ChainChecker::new(None);
        tampered.check(&r1.stored(), || None).unwrap();
        let edited = testkit::statement("s", 2, 101, "select 666", pb::Effect::Allow);
        let forged = Owned(edited.encode_to_vec(), r2.1, r2.2);
        let broken = tampered.check(&forged.stored(), || None).unwrap_err();
        assert_eq!(
            (broken.sequence, broken.problem.as_str()),
            (2, "hash mismatch")
        );
        // A record fault is named where the container says it is.
        let mut located = ChainChecker::new(None);
        let broken = located
            .check(&forged.stored(), || Some(("elsewhere".to_owned(), 7)))
            .unwrap_err();
        assert_eq!(
            (broken.session_id.as_str(), broken.sequence),
            ("elsewhere", 7)
        );

        let relinked = Owned::link(&edited, r1.2);
        let mut next_link = ChainChecker::new(None);
        next_link.check(&r1.stored(), || None).unwrap();
        next_link.check(&relinked.stored(), || None).unwrap();
        let broken = next_link.check(&r3.stored(), || None).unwrap_err();
        assert_eq!(
            (broken.sequence, broken.problem.as_str()),
            (3, "previous hash mismatch (chain broken after 2)")
        );

        let mut wrong_row = ChainChecker::new(None);
        let claimed = StoredRecord {
            claimed: Some(("other", 9)),
            ..r1.stored()
        };
        let broken = wrong_row.check(&claimed, || None).unwrap_err();
        assert_eq!((broken.session_id.as_str(), broken.sequence), ("other", 9));

        let mut only_t = ChainChecker::new(Some("t"));
        only_t.check(&r3.stored(), || None).unwrap();
        assert_eq!(only_t.finish([("s".to_owned(), head)]).unwrap(), (0, 0));
    }
}
