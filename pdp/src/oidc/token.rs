//! Reading a compact JWS without trusting it (pure, no I/O).
//!
//! [`parse`] splits the token, decodes the header and payload, rejects
//! `alg: none` before anything else and any algorithm outside
//! [`Algorithm`], and reads `iss` only so the verifier can pick the issuer
//! whose keys will then check the signature. Nothing here is trusted yet.
//! Header members that carry or point at keys (`jwk`, `jku`, `x5u`, `x5c`)
//! are ignored: keys only ever come from the issuer's configured source.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::algorithm::Algorithm;
use super::error::{TokenError, display_safe};

/// Longest token accepted. CI tokens are 1–2 KiB; this bounds decoding work
/// for hostile input.
pub(crate) const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A token split into its parts, with header and payload decoded but nothing verified.
#[derive(Debug)]
pub(crate) struct UnverifiedToken<'a> {
    /// `base64url(header) "." base64url(payload)`, the bytes the signature covers.
    pub(crate) signing_input: &'a str,
    /// The signature, still base64url (checked to decode).
    pub(crate) signature: &'a str,
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    /// The `iss` claim, untrusted until the signature is checked.
    pub(crate) issuer: String,
    pub(crate) claims: Map<String, Value>,
}

/// Splits and decodes `token`. See the module docs for the order of checks.
pub(crate) fn parse(token: &str) -> Result<UnverifiedToken<'_>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed("token is too long"));
    }
    let mut parts = token.split('.');
    let (header_b64, payload_b64, signature) =
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(p), Some(s), None) => (h, p, s),
            (Some(_), Some(_), Some(_), Some(_)) => {
                return Err(TokenError::Malformed(
                    "token has more than three parts (encrypted tokens are not supported)",
                ));
            }
            _ => {
                return Err(TokenError::Malformed(
                    "token is not three dot-separated parts",
                ));
            }
        };
    let signing_input = token
        .get(..header_b64.len() + 1 + payload_b64.len())
        .ok_or(TokenError::Malformed(
            "token is not three dot-separated parts",
        ))?;

    let header = decode_object(
        header_b64,
        "token header is not base64url",
        "token header is not a json object",
    )?;
    let alg_text = match header.get("alg") {
        Some(Value::String(alg)) => alg.as_str(),
        Some(_) => return Err(TokenError::Malformed("token header `alg` is not a string")),
        None => return Err(TokenError::Malformed("token header has no `alg`")),
    };
    // INVARIANT: `none` is refused before any other header or payload check,
    // whatever its case, so no later branch can ever accept an unsigned token.
    if alg_text.eq_ignore_ascii_case("none") {
        return Err(TokenError::Unsigned);
    }
    let alg = Algorithm::from_name(alg_text)
        .ok_or_else(|| TokenError::UnsupportedAlgorithm(display_safe(alg_text, 32)))?;
    if header.contains_key("crit") {
        return Err(TokenError::Malformed(
            "token header has critical extensions",
        ));
    }
    let kid = match header.get("kid") {
        Some(Value::String(kid)) => Some(kid.clone()),
        None | Some(Value::Null) => None,
        Some(_) => return Err(TokenError::Malformed("token header `kid` is not a string")),
    };

    let claims = decode_object(
        payload_b64,
        "token payload is not base64url",
        "token payload is not a json object",
    )?;
    let issuer = match claims.get("iss") {
        Some(Value::String(iss)) => iss.clone(),
        Some(_) => return Err(TokenError::Malformed("claim `iss` is not a string")),
        None => return Err(TokenError::MissingClaim("iss")),
    };

    if signature.is_empty() {
        return Err(TokenError::Malformed("token has no signature"));
    }
    if URL_SAFE_NO_PAD.decode(signature).is_err() {
        return Err(TokenError::Malformed("token signature is not base64url"));
    }

    Ok(UnverifiedToken {
        signing_input,
        signature,
        alg,
        kid,
        issuer,
        claims,
    })
}

fn decode_object(
    part: &str,
    not_base64: &'static str,
    not_object: &'static str,
) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(not_base64))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::Malformed(not_object)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use serde_json::json;

    use super::*;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn token(header: Value, payload: Value, sig: &str) -> String {
        format!("{}.{}.{sig}", b64(&header), b64(&payload))
    }

    fn payload() -> Value {
        json!({"iss": "https://issuer", "sub": "s", "exp": 1})
    }

    #[test]
    fn well_formed_token_is_split() {
        let t = token(json!({"alg": "ES256", "kid": "k"}), payload(), "c2ln");
        let parsed = parse(&t).unwrap();
        assert_eq!(parsed.alg, Algorithm::ES256);
        assert_eq!(parsed.kid.as_deref(), Some("k"));
        assert_eq!(parsed.issuer, "https://issuer");
        assert_eq!(parsed.signature, "c2ln");
        assert_eq!(format!("{}.c2ln", parsed.signing_input), t);
    }

    #[test]
    fn alg_none_in_any_case_is_unsigned() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            let t = token(json!({"alg": alg}), payload(), "");
            assert_eq!(parse(&t).unwrap_err(), TokenError::Unsigned, "{alg}");
        }
        // even with a bogus payload, `none` is what gets reported
        let t = format!("{}.!!!.", b64(&json!({"alg": "none"})));
        assert_eq!(parse(&t).unwrap_err(), TokenError::Unsigned);
    }

    #[test]
    fn hmac_and_unknown_algorithms_are_unsupported() {
        for alg in ["HS256", "HS512", "rs256", "ES384", "XX"] {
            let t = token(json!({"alg": alg}), payload(), "c2ln");
            assert_eq!(
                parse(&t).unwrap_err(),
                TokenError::UnsupportedAlgorithm(alg.into())
            );
        }
        let t = token(json!({"alg": "\u{1b}[31mHS256"}), payload(), "c2ln");
        let TokenError::UnsupportedAlgorithm(shown) = parse(&t).unwrap_err() else {
            unreachable!()
        };
        assert!(!shown.contains('\u{1b}'));
    }

    #[test]
    fn garbage_is_malformed() {
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        let cases = [
            "",
            "garbage",
            "a.b",
            "a.b.c.d.e",
            "!!!.e30.c2ln",
            "e30.e30.c2ln",
            "W10.e30.c2ln",
            long.as_str(),
        ];
        for case in cases {
            assert_eq!(
                parse(case).unwrap_err().code(),
                super::super::TokenErrorCode::Malformed,
                "{case:.20}"
            );
        }
        let h = json!({"alg": "RS256"});
        for (t, what) in [
            (format!("{}.!!!.c2ln", b64(&h)), "payload not base64"),
            (
                format!("{}.{}.c2ln", b64(&h), b64(&json!([1]))),
                "payload not object",
            ),
            (token(h.clone(), payload(), ""), "no signature"),
            (token(h.clone(), payload(), "c2ln!"), "signature not base64"),
            (
                token(json!({"alg": 1}), payload(), "c2ln"),
                "alg not string",
            ),
            (
                token(json!({"alg": "RS256", "kid": 5}), payload(), "c2ln"),
                "kid not string",
            ),
            (
                token(json!({"alg": "RS256", "crit": ["x"]}), payload(), "c2ln"),
                "crit",
            ),
            (
                token(h.clone(), json!({"iss": 5}), "c2ln"),
                "iss not string",
            ),
        ] {
            assert!(
                matches!(parse(&t).unwrap_err(), TokenError::Malformed(_)),
                "{what}"
            );
        }
        assert_eq!(
            parse(&token(h, json!({"sub": "x"}), "c2ln")).unwrap_err(),
            TokenError::MissingClaim("iss")
        );
    }
}
