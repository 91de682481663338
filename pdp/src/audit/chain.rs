//! The hash chain's link: `SHA-256(previous hash || stored bytes)`.
//!
//! The bytes are the event as it was encoded where it was observed (the
//! agent's spool record), kept unchanged by the store (see
//! [`super::EncodedEvent`]). Hashing what is stored, rather than a
//! re-encoding of the decoded event, needs no canonical form: protobuf
//! promises none (map entries come in any order), and re-encoding every
//! event was a sixth of the PDP's cost per audit event.

use sha2::{Digest as _, Sha256};

/// The `previous_hash` of the first event of every session.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// The chain link: `SHA-256(previous || payload)`, `payload` being the
/// event's stored bytes.
pub fn chain_hash(previous: &[u8; 32], payload: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(payload);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_hash_is_sha256_of_both() {
        let previous = [7u8; 32];
        let mut hasher = Sha256::new();
        hasher.update([7u8; 32]);
        hasher.update(b"abc");
        let expected: [u8; 32] = hasher.finalize().into();
        assert_eq!(chain_hash(&previous, b"abc"), expected);
    }
}
