//! [`Verifier`]: the per-PDP handle that turns a presented token into a
//! [`VerifiedToken`] or a [`TokenError`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use super::claims;
use super::config::{IssuerConfig, IssuerPolicy, KeySourceSpec};
use super::error::{OidcError, TokenError, display_safe};
use super::keys::IssuerKeys;
use super::principal::{self, VerifiedToken};
use super::source::KeySource;
use super::token::{self, UnverifiedToken};

/// Verifies OIDC tokens (JWTs) against the configured trusted issuers.
///
/// Built once per PDP and cloned into every request handler: clones share
/// the issuers and their cached key sets, so a key refresh triggered by one
/// request serves all of them.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<HashMap<String, Issuer>>,
}

struct Issuer {
    policy: IssuerPolicy,
    keys: IssuerKeys,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut issuers: Vec<&String> = self.inner.keys().collect();
        issuers.sort();
        f.debug_struct("Verifier")
            .field("issuers", &issuers)
            .finish()
    }
}

impl Verifier {
    /// Checks the issuer list and loads every `jwks_file` now, so a bad
    /// configuration fails start-up instead of the first caller. URL and
    /// discovery key sets are fetched on first use.
    pub fn new(issuers: Vec<IssuerConfig>) -> Result<Self, OidcError> {
        let mut problems = Vec::new();
        let mut checked = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for config in &issuers {
            if !seen.insert(config.issuer.as_str()) {
                problems.push(format!("issuer `{}` is configured twice", config.issuer));
            }
            if let Some((policy, spec)) = config.check(&mut problems) {
                checked.push((config, policy, spec));
            }
        }
        if !problems.is_empty() {
            return Err(OidcError::InvalidConfig(problems));
        }

        let mut map = HashMap::new();
        for (config, policy, spec) in checked {
            let initial = match &spec {
                KeySourceSpec::File(path) => Some(KeySource::read_file(path).map_err(
                    |reason| OidcError::JwksFile {
                        path: path.clone(),
                        reason,
                    },
                )?),
                KeySourceSpec::Url(_) | KeySourceSpec::Discovery(_) => None,
            };
            let source = KeySource::build(spec, config)?;
            let keys = IssuerKeys::new(config, source, initial);
            map.insert(policy.issuer.clone(), Issuer { policy, keys });
        }
        Ok(Verifier {
            inner: Arc::new(map),
        })
    }

    /// Verifies `token` and returns the identity it proves.
    ///
    /// May wait for a key set fetch (bounded by the issuer's `fetch_timeout`)
    /// when the token names a key not seen yet.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        self.verify_at(token, SystemTime::now()).await
    }

    /// [`Verifier::verify`] with the clock passed in, for tests.
    pub(crate) async fn verify_at(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<VerifiedToken, TokenError> {
        let token = token::parse(token)?;
        let issuer = self
            .inner
            .get(&token.issuer)
            .ok_or_else(|| TokenError::UnknownIssuer(display_safe(&token.issuer, 256)))?;
        let policy = &issuer.policy;
        if !policy.algorithms.contains(&token.alg) {
            return Err(TokenError::UnsupportedAlgorithm(
                token.alg.name().to_owned(),
            ));
        }
        let key = issuer.keys.key_for(token.kid.as_deref(), token.alg).await?;
        check_signature(&token, &key.key, &policy.issuer)?;

        let expires_at = claims::check_times(&token.claims, now, policy.leeway)?;
        claims::check_audience(&token.claims, &policy.audiences)?;
        principal::build(policy, &token.claims, expires_at)
    }

    /// The cached keys of `issuer`, for tests that count refreshes.
    #[cfg(test)]
    pub(crate) fn issuer_keys(&self, issuer: &str) -> Option<&IssuerKeys> {
        self.inner.get(issuer).map(|i| &i.keys)
    }
}

fn check_signature(
    token: &UnverifiedToken<'_>,
    key: &jsonwebtoken::DecodingKey,
    issuer: &str,
) -> Result<(), TokenError> {
    match jsonwebtoken::crypto::verify(
        token.signature,
        token.signing_input.as_bytes(),
        key,
        token.alg.to_jwt(),
    ) {
        Ok(true) => Ok(()),
        Ok(false) => Err(TokenError::BadSignature),
        Err(e) => {
            // The key type matches the algorithm (see `jwks::KeySet::select`),
            // so this is broken key material published by the issuer.
            tracing::warn!(issuer, kid = ?token.kid, error = %e, "issuer key cannot verify");
            Err(TokenError::BadSignature)
        }
    }
}
