//! JSON Web Key Set parsing and key selection (pure, no I/O).
//!
//! Only public signing keys the verifier can use survive parsing: RSA
//! (2048–4096 bits), EC P-256 and OKP Ed25519. Everything else (encryption
//! keys, symmetric keys, other curves, broken entries) is skipped with a
//! debug log, so one odd key does not take the issuer's whole set down.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;

use super::algorithm::Algorithm;

/// Largest JWKS document accepted, from a file or the network.
pub(crate) const MAX_JWKS_BYTES: usize = 1 << 20;
/// Most keys kept from one set; real issuers publish a handful.
const MAX_KEYS: usize = 64;
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 4096;

/// The family of a public key; an algorithm may only use keys of its own kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    EcP256,
    Ed25519,
}

/// One usable public key.
#[derive(Debug)]
pub(crate) struct SigningKey {
    pub(crate) kid: Option<String>,
    pub(crate) kind: KeyKind,
    /// The JWK's `alg`, if it pins one; the key then verifies only that algorithm.
    pub(crate) alg: Option<String>,
    pub(crate) key: DecodingKey,
}

impl SigningKey {
    fn fits(&self, alg: Algorithm) -> bool {
        self.kind == alg.key_kind() && self.alg.as_deref().is_none_or(|a| a == alg.name())
    }
}

/// The usable keys of one issuer.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    keys: Vec<Arc<SigningKey>>,
}

/// Result of looking a token's key up in a [`KeySet`].
#[derive(Debug)]
pub(crate) enum Selection {
    Found(Arc<SigningKey>),
    /// Nothing matches; a refreshed set may have it.
    Missing,
    /// The token names no `kid` and several keys would fit.
    Ambiguous,
}

/// The JWK members this verifier reads; all others are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    key_use: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// Parses a JWKS document. Fails only if the document as a whole is
    /// unusable: too large, not JSON, no `keys` array, or no usable key in it.
    pub(crate) fn parse(bytes: &[u8]) -> Result<KeySet, String> {
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(format!("jwks is larger than {MAX_JWKS_BYTES} bytes"));
        }
        let raw: RawJwks = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a jwks document (json object with a `keys` array): {e}"))?;
        let mut keys = Vec::new();
        for (index, value) in raw.keys.into_iter().enumerate() {
            match parse_key(value) {
                Ok(key) if keys.len() < MAX_KEYS => keys.push(Arc::new(key)),
                Ok(_) => {
                    tracing::debug!(index, "jwks key skipped: more than {MAX_KEYS} usable keys");
                }
                Err(reason) => tracing::debug!(index, reason, "jwks key skipped"),
            }
        }
        if keys.is_empty() {
            return Err("jwks holds no usable signing key (RSA, EC P-256 or Ed25519)".into());
        }
        Ok(KeySet { keys })
    }

    /// Number of usable keys.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key (a URL source before its first fetch).
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Finds the key for a token: by `kid` when the token has one, otherwise
    /// the single key that fits the algorithm. The key's type always has to
    /// match the algorithm, so an RSA key can never check an EC signature.
    pub(crate) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Selection {
        let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
        match kid {
            Some(kid) => match fitting.find(|k| k.kid.as_deref() == Some(kid)) {
                Some(key) => Selection::Found(Arc::clone(key)),
                None => Selection::Missing,
            },
            None => match (fitting.next(), fitting.next()) {
                (Some(key), None) => Selection::Found(Arc::clone(key)),
                (None, _) => Selection::Missing,
                (Some(_), Some(_)) => Selection::Ambiguous,
            },
        }
    }
}

fn parse_key(value: serde_json::Value) -> Result<SigningKey, String> {
    let raw: RawJwk = serde_json::from_value(value).map_err(|e| format!("not a jwk: {e}"))?;
    if let Some(key_use) = raw.key_use.as_deref()
        && key_use != "sig"
    {
        return Err(format!("`use` is `{key_use}`, not `sig`"));
    }
    let (kind, key) = match (raw.kty.as_str(), raw.crv.as_deref()) {
        ("RSA", _) => (KeyKind::Rsa, rsa_key(raw.n.as_deref(), raw.e.as_deref())?),
        ("EC", Some("P-256")) => (KeyKind::EcP256, ec_key(raw.x.as_deref(), raw.y.as_deref())?),
        ("OKP", Some("Ed25519")) => (KeyKind::Ed25519, ed_key(raw.x.as_deref())?),
        (kty, crv) => {
            return Err(format!("unsupported key type `{kty}` (curve {crv:?})"));
        }
    };
    Ok(SigningKey {
        kid: raw.kid,
        kind,
        alg: raw.alg,
        key,
    })
}

fn member(value: Option<&str>, name: &str) -> Result<Vec<u8>, String> {
    let text = value.ok_or_else(|| format!("`{name}` is missing"))?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| format!("`{name}` is not base64url"))
}

fn rsa_key(n: Option<&str>, e: Option<&str>) -> Result<DecodingKey, String> {
    let n = member(n, "n")?;
    let e = member(e, "e")?;
    let significant = n.iter().skip_while(|b| **b == 0).count();
    let bits = significant * 8;
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(format!(
            "rsa modulus has {bits} bits, outside {RSA_MIN_BITS}..={RSA_MAX_BITS}"
        ));
    }
    if e.is_empty() || e.len() > 8 {
        return Err("rsa exponent has an implausible size".into());
    }
    Ok(DecodingKey::from_rsa_raw_components(&n, &e))
}

fn ec_key(x: Option<&str>, y: Option<&str>) -> Result<DecodingKey, String> {
    let x = member(x, "x")?;
    let y = member(y, "y")?;
    if x.len() != 32 || y.len() != 32 {
        return Err("p-256 coordinates must be 32 bytes each".into());
    }
    let mut point = Vec::with_capacity(65);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(DecodingKey::from_ec_der(&point))
}

fn ed_key(x: Option<&str>) -> Result<DecodingKey, String> {
    let x = member(x, "x")?;
    if x.len() != 32 {
        return Err("ed25519 public key must be 32 bytes".into());
    }
    Ok(DecodingKey::from_ed_der(&x))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use serde_json::json;

    use super::*;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn rsa(kid: &str) -> serde_json::Value {
        let mut n = vec![0xC1_u8; 256];
        n.insert(0, 0);
        json!({"kty": "RSA", "kid": kid, "n": b64(&n), "e": "AQAB"})
    }

    fn ec(kid: &str) -> serde_json::Value {
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&[1; 32]), "y": b64(&[2; 32])})
    }

    fn ed(kid: &str) -> serde_json::Value {
        json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(&[3; 32])})
    }

    fn set(keys: Vec<serde_json::Value>) -> Result<KeySet, String> {
        KeySet::parse(json!({ "keys": keys }).to_string().as_bytes())
    }

    #[test]
    fn parses_the_three_key_types_and_skips_the_rest() {
        let keys = set(vec![
            rsa("r"),
            ec("e"),
            ed("o"),
            json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}),
            json!({"kty": "EC", "crv": "P-384", "x": b64(&[1; 48]), "y": b64(&[1; 48])}),
            json!({"kty": "OKP", "crv": "X25519", "x": b64(&[1; 32])}),
            json!({"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}),
            json!({"kty": "RSA", "n": b64(&[0xC1; 128]), "e": "AQAB", "kid": "small"}),
            json!({"kty": "EC", "crv": "P-256", "x": b64(&[1; 31]), "y": b64(&[2; 32])}),
            json!({"kty": "RSA", "n": "not base64!", "e": "AQAB"}),
            json!({"no": "kty"}),
            json!("not an object"),
        ])
        .unwrap();
        assert_eq!(keys.len(), 3);
    }

    #[test]
    fn documents_without_usable_keys_are_errors() {
        assert!(KeySet::parse(b"not json").is_err());
        assert!(KeySet::parse(b"{\"keys\": 1}").is_err());
        assert!(KeySet::parse(b"{}").is_err());
        let err = set(vec![json!({"kty": "oct", "k": "c2VjcmV0"})]).unwrap_err();
        assert!(err.contains("no usable signing key"), "{err}");
        assert!(KeySet::parse(&vec![b' '; MAX_JWKS_BYTES + 1]).is_err());
    }

    #[test]
    fn selection_matches_kid_and_key_type() {
        let keys = set(vec![rsa("r1"), rsa("r2"), ec("e1"), ed("o1")]).unwrap();
        assert!(
            matches!(keys.select(Some("r2"), Algorithm::RS256), Selection::Found(k) if k.kid.as_deref() == Some("r2"))
        );
        assert!(matches!(
            keys.select(Some("r2"), Algorithm::PS512),
            Selection::Found(_)
        ));
        // an EC token can never be checked with an RSA key, whatever its kid says
        assert!(matches!(
            keys.select(Some("r1"), Algorithm::ES256),
            Selection::Missing
        ));
        assert!(matches!(
            keys.select(Some("e1"), Algorithm::EdDSA),
            Selection::Missing
        ));
        assert!(matches!(
            keys.select(Some("nope"), Algorithm::RS256),
            Selection::Missing
        ));
        // no kid: only a single fitting key is used
        assert!(matches!(
            keys.select(None, Algorithm::ES256),
            Selection::Found(_)
        ));
        assert!(matches!(
            keys.select(None, Algorithm::RS256),
            Selection::Ambiguous
        ));
    }

    #[test]
    fn a_key_pinned_to_an_algorithm_verifies_only_that_one() {
        let mut key = rsa("r");
        if let Some(obj) = key.as_object_mut() {
            obj.insert("alg".into(), json!("RS256"));
        }
        let keys = set(vec![key]).unwrap();
        assert!(matches!(
            keys.select(Some("r"), Algorithm::RS256),
            Selection::Found(_)
        ));
        assert!(matches!(
            keys.select(Some("r"), Algorithm::PS256),
            Selection::Missing
        ));
    }
}
