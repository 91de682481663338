//! Errors of the `oidc` module: start-up problems ([`OidcError`]) and
//! per-token refusals ([`TokenError`], [`TokenErrorCode`]).

use std::path::PathBuf;
use std::time::SystemTime;

use humantime_serde::re::humantime;

/// A problem that stops the verifier from being built.
///
/// These surface at PDP start-up (or configuration reload), so an operator
/// learns about a missing JWKS file or a bad CA bundle before any caller is
/// refused for it.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The issuer list has problems; every one found is listed, not just the first.
    #[error("invalid oidc issuer configuration: {}", .0.join("; "))]
    InvalidConfig(Vec<String>),
    /// A configured JWKS file cannot be read or holds no usable signing key.
    #[error("cannot load jwks file `{}`: {reason}", path.display())]
    JwksFile {
        /// The file named in the configuration.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A configured CA file cannot be read or holds no certificate.
    #[error("cannot load ca file `{}`: {reason}", path.display())]
    CaFile {
        /// The file named in the configuration.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTPS client used for discovery and JWKS fetches cannot be built.
    #[error("cannot build the https client for issuer `{issuer}`: {reason}")]
    HttpClient {
        /// The issuer the client was for.
        issuer: String,
        /// What the TLS stack reported.
        reason: String,
    },
}

/// Why a presented token was refused.
///
/// Each cause is distinct so audit records and operators can tell a clock
/// problem from an attack. Messages are lowercase and safe to show to the
/// caller: they never contain the token or its signature, and the few
/// values taken from the token (algorithm, issuer, key id) are length-capped
/// and stripped of unprintable characters first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The text is not a compact JWS with a JSON header and payload.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header says `alg: none`; unsigned tokens are never accepted.
    #[error("unsigned tokens (`alg: none`) are not accepted")]
    Unsigned,
    /// The header names an algorithm that is not allowed (HMAC ones never are).
    #[error("signing algorithm `{0}` is not accepted")]
    UnsupportedAlgorithm(String),
    /// The `iss` claim names no configured issuer.
    #[error("token issuer `{0}` is not trusted")]
    UnknownIssuer(String),
    /// No key of the issuer matches the token, even after refreshing the key set.
    #[error("{}", unknown_key_message(.kid.as_deref()))]
    UnknownKey {
        /// The `kid` from the token header, if it had one.
        kid: Option<String>,
    },
    /// The signature does not verify with the issuer's key.
    #[error("token signature is invalid")]
    BadSignature,
    /// The token's `exp` (plus leeway) has passed.
    #[error("token expired at {}", humantime::format_rfc3339_seconds(*.expired_at))]
    Expired {
        /// The token's `exp`.
        expired_at: SystemTime,
    },
    /// The token's `nbf` or `iat` lies in the future (beyond the leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// The `aud` claim contains none of the configured audiences.
    #[error("token is not meant for this service (audience mismatch)")]
    WrongAudience,
    /// A claim the verifier needs is absent.
    #[error("token lacks the required claim `{0}`")]
    MissingClaim(&'static str),
    /// The issuer's key set could not be fetched; holds the issuer, details are logged.
    #[error("signing keys of issuer `{0}` are unavailable, try again later")]
    KeysUnavailable(String),
}

fn unknown_key_message(kid: Option<&str>) -> String {
    match kid {
        Some(kid) => format!("signing key `{kid}` is not known for this issuer"),
        None => "token names no signing key and the issuer has no single matching key".to_owned(),
    }
}

/// The category of a [`TokenError`], for the gRPC layer to map onto its refusal codes.
///
/// Kept separate from `TokenError` so the mapping is one exhaustive match
/// over a small `Copy` enum that does not change when messages do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenErrorCode {
    /// Not a well-formed token, or a required claim is missing.
    Malformed,
    /// `alg: none`.
    Unsigned,
    /// Signature does not verify.
    BadSignature,
    /// No matching key.
    UnknownKey,
    /// Past `exp`.
    Expired,
    /// Before `nbf` / `iat`.
    NotYetValid,
    /// Issuer not trusted.
    WrongIssuer,
    /// Audience not accepted.
    WrongAudience,
    /// Algorithm not allowed.
    UnsupportedAlgorithm,
    /// Issuer keys could not be fetched; retrying later may succeed.
    KeysUnavailable,
}

impl TokenError {
    /// The refusal category, stable across message wording.
    pub fn code(&self) -> TokenErrorCode {
        match self {
            TokenError::Malformed(_) => TokenErrorCode::Malformed,
            TokenError::Unsigned => TokenErrorCode::Unsigned,
            TokenError::UnsupportedAlgorithm(_) => TokenErrorCode::UnsupportedAlgorithm,
            TokenError::UnknownIssuer(_) => TokenErrorCode::WrongIssuer,
            TokenError::UnknownKey { .. } => TokenErrorCode::UnknownKey,
            TokenError::BadSignature => TokenErrorCode::BadSignature,
            TokenError::Expired { .. } => TokenErrorCode::Expired,
            TokenError::NotYetValid => TokenErrorCode::NotYetValid,
            TokenError::WrongAudience => TokenErrorCode::WrongAudience,
            TokenError::MissingClaim(_) => TokenErrorCode::Malformed,
            TokenError::KeysUnavailable(_) => TokenErrorCode::KeysUnavailable,
        }
    }
}

/// Makes a value taken from an untrusted token fit to appear in a message:
/// printable ASCII only, at most `max` characters.
pub(crate) fn display_safe(value: &str, max: usize) -> String {
    let clean = !value.is_empty()
        && value.len() <= max
        && value.chars().all(|c| c.is_ascii_graphic() || c == ' ');
    if clean {
        value.to_owned()
    } else {
        let mut shown: String = value
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(max)
            .collect();
        shown.push('…');
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_safe_caps_and_strips() {
        assert_eq!(display_safe("RS256", 32), "RS256");
        assert_eq!(display_safe("a\nb", 32), "ab…");
        assert_eq!(
            display_safe(&"x".repeat(40), 8),
            format!("{}…", "x".repeat(8))
        );
        assert_eq!(display_safe("", 8), "…");
    }

    #[test]
    fn every_error_has_a_lowercase_message() {
        let errors = [
            TokenError::Malformed("token is not three dot-separated parts"),
            TokenError::Unsigned,
            TokenError::UnsupportedAlgorithm("HS256".into()),
            TokenError::UnknownIssuer("https://evil".into()),
            TokenError::UnknownKey {
                kid: Some("k1".into()),
            },
            TokenError::UnknownKey { kid: None },
            TokenError::BadSignature,
            TokenError::Expired {
                expired_at: SystemTime::UNIX_EPOCH,
            },
            TokenError::NotYetValid,
            TokenError::WrongAudience,
            TokenError::MissingClaim("exp"),
            TokenError::KeysUnavailable("https://issuer".into()),
        ];
        for e in errors {
            let msg = e.to_string();
            let first = msg.chars().next().unwrap_or('X');
            assert!(first.is_lowercase(), "{msg}");
        }
        assert_eq!(
            TokenError::Expired {
                expired_at: SystemTime::UNIX_EPOCH
            }
            .to_string(),
            "token expired at 1970-01-01T00:00:00Z"
        );
    }
}
