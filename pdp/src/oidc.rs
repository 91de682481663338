//! OIDC token verification: who is calling, proven by a JWT from a trusted issuer.
//!
//! CI jobs and people present an OIDC token (GitHub Actions, GitLab CI, an
//! identity provider) as their database password. Before any Cedar policy
//! is evaluated, [`Verifier::verify`] checks it and yields a
//! [`VerifiedToken`] to build the principal from, or a [`TokenError`] whose
//! [`TokenError::code`] the gRPC layer maps to a refusal.
//!
//! The data flows through the submodules in this order:
//!
//! 1. `token`: split and decode without trusting anything; refuse
//!    `alg: none` first, then any algorithm outside [`Algorithm`] (so HMAC
//!    never, which defeats public-key-as-HMAC-secret confusion); read `iss`
//!    only to pick the issuer.
//! 2. `keys` (with `jwks`, `source`, `http`): find the issuer key by `kid`
//!    and key type, refreshing the cached JWKS on demand, single-flight and
//!    rate-limited.
//! 3. signature check (`verifier`, via `jsonwebtoken::crypto::verify`).
//! 4. `claims`: `exp` (required), `nbf`, `iat` with leeway; `aud`.
//! 5. `principal`: `sub`, groups and selected claims.
//!
//! Tokens and signatures are never logged; values quoted from a token in an
//! error (algorithm, issuer, key id) are length-capped and made printable.

mod algorithm;
mod claims;
mod config;
mod error;
mod http;
mod jwks;
mod keys;
mod principal;
mod source;
mod token;
mod verifier;

#[cfg(test)]
mod tests;

pub use algorithm::Algorithm;
pub use config::{DEFAULT_CLAIMS, IssuerConfig, JwksSource};
pub use error::{OidcError, TokenError, TokenErrorCode};
pub use principal::VerifiedToken;
pub use verifier::Verifier;
