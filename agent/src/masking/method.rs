//! Masking methods, the keyed hash, and the type OIDs they care about.
//!
//! Every writer here appends to a [`BufMut`] and allocates nothing of its
//! own: the hash works on pre-keyed SHA-256 states, and character-aware
//! methods walk the value in place.

use std::fmt;
use std::str::FromStr;

use bytes::BufMut;
use sha2::{Digest, Sha256};

/// PostgreSQL type OIDs the masking rules distinguish.
pub mod oid {
    /// `"char"`: a single byte.
    pub const CHAR: u32 = 18;
    /// `name`: an identifier of at most 63 bytes.
    pub const NAME: u32 = 19;
    /// `text`.
    pub const TEXT: u32 = 25;
    /// `json`: text that must stay valid JSON.
    pub const JSON: u32 = 114;
    /// `unknown`: an untyped literal, sent as text.
    pub const UNKNOWN: u32 = 705;
    /// `bpchar` (`char(n)`).
    pub const BPCHAR: u32 = 1042;
    /// `varchar`.
    pub const VARCHAR: u32 = 1043;
    /// `jsonb`: text in text format; a version byte then text in binary.
    pub const JSONB: u32 = 3802;
}

/// Whether values of `type_oid` are plain text (in both formats) that a
/// masking method may rewrite; everything else is masked to NULL.
pub fn is_text_like(type_oid: u32) -> bool {
    matches!(
        type_oid,
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::UNKNOWN | oid::CHAR
    )
}

/// What a redacted value becomes.
pub const REDACTED: &[u8] = b"********";

/// How a refused `unmask` hides a value (from the PDP's `@mask` annotation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MaskMethod {
    /// A fixed marker, [`REDACTED`].
    Redact,
    /// Every character but the last four starred; short values fully starred.
    Last4,
    /// `***@domain`.
    Email,
    /// `h:` and 24 hex digits of a keyed hash: equal values stay equal, so
    /// masked columns can still be joined and grouped.
    Hash,
    /// SQL NULL.
    Null,
}

impl MaskMethod {
    /// The annotation spelling: `redact`, `last4`, `email`, `hash`, `null`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redact => "redact",
            Self::Last4 => "last4",
            Self::Email => "email",
            Self::Hash => "hash",
            Self::Null => "null",
        }
    }
}

impl fmt::Display for MaskMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `@mask` annotation names no known method.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mask method (expected redact, last4, email, hash or null)")]
pub struct UnknownMethod;

impl FromStr for MaskMethod {
    type Err = UnknownMethod;

    /// Parses the annotation spelling, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, UnknownMethod> {
        [
            Self::Redact,
            Self::Last4,
            Self::Email,
            Self::Hash,
            Self::Null,
        ]
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(s.trim()))
        .ok_or(UnknownMethod)
    }
}

/// A configured hash key is too short to be a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mask hash key has {len} bytes; at least {min} are required")]
pub struct KeyError {
    /// Bytes given.
    pub len: usize,
    /// Bytes required.
    pub min: usize,
}

/// SHA-256 block size, the HMAC pad length.
const BLOCK: usize = 64;

/// Secret key of the keyed hash (HMAC-SHA256).
///
/// Equal inputs give equal outputs, so masked values stay joinable across
/// rows, queries and sessions that share the key; without the key a value
/// cannot be confirmed by hashing guesses. The key is kept only as the two
/// SHA-256 states after absorbing the padded key (the usual HMAC
/// precomputation), so hashing a value costs two state copies and no
/// allocation. `Debug` never prints it.
#[derive(Clone)]
pub struct HashKey {
    inner: Sha256,
    outer: Sha256,
}

impl HashKey {
    /// Shortest key [`HashKey::from_bytes`] accepts.
    pub const MIN_LEN: usize = 16;

    /// A fresh random 256-bit key: hashes are stable for this process only.
    pub fn random() -> Self {
        let key: [u8; 32] = rand::random();
        Self::new_unchecked(&key)
    }

    /// A key from configuration, so hashes stay stable across restarts and
    /// agents. Fails below [`HashKey::MIN_LEN`] bytes.
    pub fn from_bytes(key: &[u8]) -> Result<Self, KeyError> {
        if key.len() < Self::MIN_LEN {
            return Err(KeyError {
                len: key.len(),
                min: Self::MIN_LEN,
            });
        }
        Ok(Self::new_unchecked(key))
    }

    /// HMAC key schedule: keys longer than a block are hashed first.
    fn new_unchecked(key: &[u8]) -> Self {
        let mut block = [0u8; BLOCK];
        if key.len() > BLOCK {
            let digest = Sha256::digest(key);
            for (b, k) in block.iter_mut().zip(digest.iter()) {
                *b = *k;
            }
        } else {
            for (b, k) in block.iter_mut().zip(key) {
                *b = *k;
            }
        }
        let mut ipad = [0x36u8; BLOCK];
        let mut opad = [0x5cu8; BLOCK];
        for ((i, o), k) in ipad.iter_mut().zip(opad.iter_mut()).zip(block) {
            *i ^= k;
            *o ^= k;
        }
        let mut inner = Sha256::new();
        inner.update(ipad);
        let mut outer = Sha256::new();
        outer.update(opad);
        Self { inner, outer }
    }

    /// HMAC-SHA256 of `value` under this key.
    pub fn mac(&self, value: &[u8]) -> [u8; 32] {
        let mut inner = self.inner.clone();
        inner.update(value);
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        outer.finalize().into()
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(..)")
    }
}

/// Bytes of the MAC shown by [`MaskMethod::Hash`].
pub const HASH_BYTES: usize = 12;

/// Appends `h:` and the lowercase hex of the first [`HASH_BYTES`] bytes of
/// the value's MAC.
pub(crate) fn put_hash(key: &HashKey, value: &[u8], out: &mut impl BufMut) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mac = key.mac(value);
    let mut text = *b"h:000000000000000000000000";
    if let Some(digits) = text.get_mut(2..) {
        for (pair, byte) in digits.chunks_exact_mut(2).zip(mac.iter()) {
            if let [hi, lo] = pair {
                *hi = HEX.get(usize::from(byte >> 4)).copied().unwrap_or(b'0');
                *lo = HEX.get(usize::from(byte & 0x0f)).copied().unwrap_or(b'0');
            }
        }
    }
    out.put_slice(&text);
}

/// Appends `n` stars.
fn put_stars(n: usize, out: &mut impl BufMut) {
    const STARS: &[u8; 32] = b"********************************";
    let mut left = n;
    while left > 0 {
        let take = left.min(STARS.len());
        out.put_slice(STARS.get(..take).unwrap_or_default());
        left -= take;
    }
}

/// Appends the masked form of a non-NULL text value (any method but
/// [`MaskMethod::Null`], which the caller turns into NULL).
///
/// Character-aware methods need UTF-8 to find character boundaries; a value
/// that is not UTF-8 (another client encoding, or garbage) is redacted
/// rather than risk revealing or splitting a character. `single_byte` is
/// for `"char"`, whose values must stay one byte: every method gives `*`.
pub(crate) fn put_masked_text(
    method: MaskMethod,
    value: &[u8],
    key: &HashKey,
    single_byte: bool,
    out: &mut impl BufMut,
) {
    if single_byte {
        out.put_u8(b'*');
        return;
    }
    match method {
        MaskMethod::Redact | MaskMethod::Null => out.put_slice(REDACTED),
        MaskMethod::Hash => put_hash(key, value, out),
        MaskMethod::Last4 => match std::str::from_utf8(value) {
            Ok(s) => put_last4(s, out),
            Err(_) => out.put_slice(REDACTED),
        },
        MaskMethod::Email => match std::str::from_utf8(value) {
            Ok(s) => match s.rfind('@') {
                Some(at) if at > 0 && at + 1 < s.len() => {
                    out.put_slice(b"***");
                    out.put_slice(s.as_bytes().get(at..).unwrap_or_default());
                }
                _ => out.put_slice(REDACTED),
            },
            Err(_) => out.put_slice(REDACTED),
        },
    }
}

/// Stars every character but the last four; four or fewer are all starred.
fn put_last4(s: &str, out: &mut impl BufMut) {
    let chars = s.chars().count();
    if chars <= 4 {
        put_stars(chars, out);
        return;
    }
    let hidden = chars - 4;
    let keep_from = s.char_indices().nth(hidden).map_or(s.len(), |(i, _)| i);
    put_stars(hidden, out);
    out.put_slice(s.as_bytes().get(keep_from..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(method: MaskMethod, value: &str) -> String {
        let key = HashKey::from_bytes(b"0123456789abcdef").unwrap();
        let mut out = Vec::new();
        put_masked_text(method, value.as_bytes(), &key, false, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        let key = HashKey::new_unchecked(b"Jefe");
        assert_eq!(
            hex::encode(key.mac(b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than a block.
        let key = HashKey::new_unchecked(&[0xaa; 131]);
        assert_eq!(
            hex::encode(key.mac(b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn keys() {
        assert_eq!(
            HashKey::from_bytes(b"short").unwrap_err(),
            KeyError { len: 5, min: 16 }
        );
        let a = HashKey::random();
        let b = HashKey::random();
        assert_ne!(a.mac(b"x"), b.mac(b"x"));
        assert_eq!(a.mac(b"x"), a.clone().mac(b"x"));
        assert_eq!(format!("{a:?}"), "HashKey(..)");
    }

    #[test]
    fn methods_parse() {
        assert_eq!("Last4".parse(), Ok(MaskMethod::Last4));
        assert_eq!(" hash ".parse(), Ok(MaskMethod::Hash));
        assert_eq!("nope".parse::<MaskMethod>(), Err(UnknownMethod));
        for m in ["redact", "last4", "email", "hash", "null"] {
            assert_eq!(m.parse::<MaskMethod>().unwrap().to_string(), m);
        }
    }

    #[test]
    fn redact() {
        assert_eq!(masked(MaskMethod::Redact, "secret"), "********");
        assert_eq!(masked(MaskMethod::Redact, ""), "********");
    }

    #[test]
    fn last4_ascii_and_multibyte() {
        assert_eq!(
            masked(MaskMethod::Last4, "4111111111111111"),
            "************1111"
        );
        assert_eq!(masked(MaskMethod::Last4, "abcde"), "*bcde");
        assert_eq!(masked(MaskMethod::Last4, "abcd"), "****");
        assert_eq!(masked(MaskMethod::Last4, "ab"), "**");
        assert_eq!(masked(MaskMethod::Last4, ""), "");
        assert_eq!(
            masked(MaskMethod::Last4, "日本語のテキスト"),
            "****テキスト"
        );
        assert_eq!(masked(MaskMethod::Last4, "é😀ab"), "****");
        assert_eq!(masked(MaskMethod::Last4, "xé😀ab"), "*é😀ab");
        assert_eq!(masked(MaskMethod::Last4, &"z".repeat(100)).len(), 100);
    }

    #[test]
    fn email() {
        assert_eq!(
            masked(MaskMethod::Email, "alice@example.com"),
            "***@example.com"
        );
        assert_eq!(
            masked(MaskMethod::Email, "a@b@exämple.de"),
            "***@exämple.de"
        );
        assert_eq!(masked(MaskMethod::Email, "no at sign"), "********");
        assert_eq!(masked(MaskMethod::Email, "trailing@"), "********");
        assert_eq!(masked(MaskMethod::Email, "@example.com"), "********");
    }

    #[test]
    fn hash_is_keyed_stable_and_short() {
        let h = masked(MaskMethod::Hash, "alice");
        assert_eq!(h.len(), 26);
        assert!(h.starts_with("h:"));
        assert!(
            h[2..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(h, masked(MaskMethod::Hash, "alice"));
        assert_ne!(h, masked(MaskMethod::Hash, "alicf"));
        let key = HashKey::from_bytes(b"0123456789abcdef").unwrap();
        assert_eq!(h[2..], hex::encode(&key.mac(b"alice")[..12]));
    }

    #[test]
    fn non_utf8_is_redacted_by_char_methods() {
        let key = HashKey::random();
        for m in [MaskMethod::Last4, MaskMethod::Email] {
            let mut out = Vec::new();
            put_masked_text(m, b"\xff\xfeab@cdefgh", &key, false, &mut out);
            assert_eq!(out, REDACTED);
        }
        let mut out = Vec::new();
        put_masked_text(MaskMethod::Hash, b"x", &key, true, &mut out);
        assert_eq!(out, b"*");
    }
}
