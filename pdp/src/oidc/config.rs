//! Issuer configuration as the operator writes it, and its checked form.
//!
//! [`IssuerConfig`] is the serde shape; [`IssuerConfig::check`] turns it into
//! an [`IssuerPolicy`] (what claims validation needs) plus a [`KeySourceSpec`]
//! (where the keys come from), collecting every problem rather than the first.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::algorithm::Algorithm;

/// Configuration of one trusted token issuer (a CI system or an identity provider).
///
/// The PDP accepts a token only if its `iss` equals one of these issuers
/// exactly, its signature verifies with one of that issuer's keys and its
/// `aud` contains one of the issuer's audiences.
///
/// ```toml
/// [[oidc.issuers]]
/// issuer = "https://token.actions.githubusercontent.com"
/// audiences = ["palisade"]
/// jwks = { discovery = true }
/// groups_claim = "repository_owner"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Exact `iss` value of tokens from this issuer (also the discovery base URL).
    pub issuer: String,
    /// Accepted audiences: the token's `aud` must contain at least one. Must not be empty.
    pub audiences: Vec<String>,
    /// Where the issuer's public keys come from.
    pub jwks: JwksSource,
    /// Claim whose value becomes the principal's groups; a dotted path reaches
    /// nested claims. An array of strings or a single scalar is accepted, so
    /// GitLab's `groups_direct` and GitHub's `repository_owner` both work.
    /// Default: `"groups"`.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Claims copied onto the principal for policies to use. Default: the
    /// GitHub Actions, GitLab CI and generic OIDC set in [`DEFAULT_CLAIMS`].
    #[serde(default = "default_claims")]
    pub claims: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`. Default: `30s`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Signing algorithms accepted from this issuer. HMAC algorithms do not
    /// exist here on purpose. Default: `["RS256", "ES256", "EdDSA"]`.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Algorithm>,
    /// Extra CA certificates (PEM) trusted for this issuer's HTTPS fetches,
    /// besides the built-in web roots. Default: none.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Least time between two on-demand key set refreshes (triggered by an
    /// unknown `kid`), so forged key ids cannot make the PDP hammer the
    /// issuer. Default: `30s`.
    #[serde(default = "default_min_refresh_interval", with = "humantime_serde")]
    pub min_refresh_interval: Duration,
    /// Age after which a fetched (URL or discovery) key set is fetched again
    /// on next use; if that fetch fails the old set stays in use. Default: `1h`.
    #[serde(default = "default_jwks_max_age", with = "humantime_serde")]
    pub jwks_max_age: Duration,
    /// Timeout of one HTTPS request (discovery document or JWKS). Default: `5s`.
    #[serde(default = "default_fetch_timeout", with = "humantime_serde")]
    pub fetch_timeout: Duration,
}

/// Where an issuer's JSON Web Key Set is read from.
///
/// Written as a one-key table: `{ jwks_file = "path" }`, `{ discovery = true }`
/// or `{ jwks_url = "https://..." }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawJwksSource")]
pub enum JwksSource {
    /// A local JWKS file, read at start-up and re-read when an unknown `kid` shows up.
    File(PathBuf),
    /// OIDC discovery: `{issuer}/.well-known/openid-configuration`, then its `jwks_uri`, HTTPS only.
    Discovery,
    /// A fixed JWKS URL, HTTPS only.
    Url(String),
}

/// The serde shape of [`JwksSource`], checked for "exactly one key" by `TryFrom`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwksSource {
    jwks_file: Option<PathBuf>,
    discovery: Option<bool>,
    jwks_url: Option<String>,
}

impl TryFrom<RawJwksSource> for JwksSource {
    type Error = String;

    fn try_from(raw: RawJwksSource) -> Result<Self, Self::Error> {
        let RawJwksSource {
            jwks_file,
            discovery,
            jwks_url,
        } = raw;
        match (jwks_file, discovery, jwks_url) {
            (Some(path), None, None) => Ok(JwksSource::File(path)),
            (None, Some(true), None) => Ok(JwksSource::Discovery),
            (None, Some(false), None) => {
                Err("`discovery = false` names no key source; use `jwks_file` or `jwks_url`".into())
            }
            (None, None, Some(url)) => Ok(JwksSource::Url(url)),
            _ => Err(
                "jwks needs exactly one of `jwks_file`, `discovery = true` or `jwks_url`".into(),
            ),
        }
    }
}

/// Claims copied onto the principal when `claims` is not configured.
pub const DEFAULT_CLAIMS: &[&str] = &[
    // GitHub Actions
    "repository",
    "repository_owner",
    "ref",
    "sha",
    "run_id",
    "run_attempt",
    "workflow",
    "job_workflow_ref",
    "actor",
    "environment",
    "event_name",
    // GitLab CI (`ref`, `sha`, `environment` shared with GitHub)
    "project_path",
    "namespace_path",
    "pipeline_id",
    "job_id",
    "user_login",
    // generic OIDC
    "email",
    "name",
    "preferred_username",
];

fn default_groups_claim() -> String {
    "groups".to_owned()
}

fn default_claims() -> Vec<String> {
    DEFAULT_CLAIMS.iter().map(|c| (*c).to_owned()).collect()
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
}

fn default_min_refresh_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_jwks_max_age() -> Duration {
    Duration::from_secs(3600)
}

fn default_fetch_timeout() -> Duration {
    Duration::from_secs(5)
}

impl IssuerConfig {
    /// An issuer with every optional field at its documented default.
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>, jwks: JwksSource) -> Self {
        IssuerConfig {
            issuer: issuer.into(),
            audiences,
            jwks,
            groups_claim: default_groups_claim(),
            claims: default_claims(),
            leeway: default_leeway(),
            algorithms: default_algorithms(),
            ca_file: None,
            min_refresh_interval: default_min_refresh_interval(),
            jwks_max_age: default_jwks_max_age(),
            fetch_timeout: default_fetch_timeout(),
        }
    }

    /// Checks this issuer, pushing every problem found onto `problems`.
    /// Returns `None` if there was any.
    pub(crate) fn check(
        &self,
        problems: &mut Vec<String>,
    ) -> Option<(IssuerPolicy, KeySourceSpec)> {
        let before = problems.len();
        let name = &self.issuer;
        let mut problem = |p: String| problems.push(format!("issuer `{name}`: {p}"));

        if self.issuer.trim().is_empty() {
            problem("`issuer` must not be empty".into());
        }
        if self.audiences.is_empty() {
            problem("`audiences` must name at least one audience".into());
        }
        if self.audiences.iter().any(|a| a.is_empty()) {
            problem("`audiences` must not contain an empty string".into());
        }
        if self.algorithms.is_empty() {
            problem("`algorithms` must name at least one algorithm".into());
        }
        if self.groups_claim.is_empty() {
            problem("`groups_claim` must not be empty".into());
        }
        if self.claims.iter().any(|c| c.is_empty()) {
            problem("`claims` must not contain an empty name".into());
        }
        if self.fetch_timeout.is_zero() {
            problem("`fetch_timeout` must be more than zero".into());
        }

        let source = match &self.jwks {
            JwksSource::File(path) => {
                if self.ca_file.is_some() {
                    problem("`ca_file` is only used with `discovery` or `jwks_url`".into());
                }
                Some(KeySourceSpec::File(path.clone()))
            }
            JwksSource::Url(url) => match https_url(url) {
                Ok(url) => Some(KeySourceSpec::Url(url)),
                Err(e) => {
                    problem(format!("`jwks_url`: {e}"));
                    None
                }
            },
            JwksSource::Discovery => {
                let base = self.issuer.trim_end_matches('/');
                match https_url(&format!("{base}/.well-known/openid-configuration")) {
                    Ok(url) => Some(KeySourceSpec::Discovery(url)),
                    Err(e) => {
                        problem(format!("discovery needs an https issuer url: {e}"));
                        None
                    }
                }
            }
        };

        if problems.len() > before {
            return None;
        }
        let policy = IssuerPolicy {
            issuer: self.issuer.clone(),
            audiences: self.audiences.iter().cloned().collect(),
            groups_claim: self.groups_claim.clone(),
            claims: self.claims.clone(),
            leeway: self.leeway,
            algorithms: self.algorithms.clone(),
        };
        source.map(|s| (policy, s))
    }
}

/// Parses `text` as a URL and insists on `https`.
pub(crate) fn https_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a url ({e})"))?;
    if url.scheme() != "https" {
        return Err(format!("`{text}` must use https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{text}` has no host"));
    }
    Ok(url)
}

/// What claims validation needs to know about one issuer, checked at load.
#[derive(Debug, Clone)]
pub(crate) struct IssuerPolicy {
    pub(crate) issuer: String,
    pub(crate) audiences: BTreeSet<String>,
    pub(crate) groups_claim: String,
    pub(crate) claims: Vec<String>,
    pub(crate) leeway: Duration,
    pub(crate) algorithms: Vec<Algorithm>,
}

/// Where keys come from, with URLs already checked to be HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySourceSpec {
    File(PathBuf),
    Url(Url),
    /// The discovery document's URL.
    Discovery(Url),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[derive(Deserialize)]
    struct Wrapper {
        issuers: Vec<IssuerConfig>,
    }

    fn parse(text: &str) -> Result<Vec<IssuerConfig>, String> {
        toml::from_str::<Wrapper>(text)
            .map(|w| w.issuers)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_documented_values() {
        let issuers = parse(
            r#"
            [[issuers]]
            issuer = "https://token.actions.githubusercontent.com"
            audiences = ["palisade"]
            jwks = { discovery = true }
            "#,
        )
        .unwrap();
        let expected = IssuerConfig::new(
            "https://token.actions.githubusercontent.com",
            vec!["palisade".into()],
            JwksSource::Discovery,
        );
        assert_eq!(issuers, vec![expected.clone()]);
        assert_eq!(expected.leeway, Duration::from_secs(30));
        assert_eq!(expected.groups_claim, "groups");
        assert!(expected.claims.iter().any(|c| c == "job_workflow_ref"));
        assert!(expected.claims.iter().any(|c| c == "namespace_path"));
    }

    #[test]
    fn every_field_parses() {
        let issuers = parse(
            r#"
            [[issuers]]
            issuer = "https://gitlab.example.com"
            audiences = ["palisade", "db"]
            jwks = { jwks_url = "https://gitlab.example.com/oauth/discovery/keys" }
            groups_claim = "groups_direct"
            claims = ["project_path"]
            leeway = "10s"
            algorithms = ["RS256", "PS256", "EdDSA"]
            ca_file = "/etc/palisade/ca.pem"
            min_refresh_interval = "1m"
            jwks_max_age = "15m"
            fetch_timeout = "2s"

            [[issuers]]
            issuer = "local"
            audiences = ["x"]
            jwks = { jwks_file = "/etc/palisade/jwks.json" }
            "#,
        )
        .unwrap();
        assert_eq!(issuers.len(), 2);
        let gl = issuers.first().unwrap();
        assert_eq!(gl.leeway, Duration::from_secs(10));
        assert_eq!(gl.min_refresh_interval, Duration::from_secs(60));
        assert_eq!(
            gl.algorithms,
            vec![Algorithm::RS256, Algorithm::PS256, Algorithm::EdDSA]
        );
        assert_eq!(
            issuers.get(1).unwrap().jwks,
            JwksSource::File("/etc/palisade/jwks.json".into())
        );
    }

    #[test]
    fn hmac_and_unknown_fields_are_rejected() {
        let base = r#"
            [[issuers]]
            issuer = "https://i"
            audiences = ["a"]
            jwks = { discovery = true }
        "#;
        let err = parse(&format!("{base}algorithms = [\"HS256\"]")).unwrap_err();
        assert!(err.contains("HS256"), "{err}");
        let err = parse(&format!("{base}audience = \"a\"")).unwrap_err();
        assert!(err.contains("audience"), "{err}");
    }

    #[test]
    fn jwks_source_needs_exactly_one_key() {
        let with = |jwks: &str| {
            parse(&format!(
                "[[issuers]]\nissuer = \"https://i\"\naudiences = [\"a\"]\njwks = {jwks}\n"
            ))
        };
        assert!(with("{ jwks_file = \"f\", jwks_url = \"https://u\" }").is_err());
        assert!(with("{}").is_err());
        assert!(
            with("{ discovery = false }")
                .unwrap_err()
                .contains("discovery = false")
        );
        assert!(with("{ jwks_uri = \"https://u\" }").is_err());
        assert_eq!(with("{ jwks_url = \"https://u\" }").unwrap().len(), 1);
    }

    #[test]
    fn check_reports_every_problem_and_refuses_plain_http() {
        let mut config = IssuerConfig::new("http://issuer", vec![], JwksSource::Discovery);
        config.algorithms.clear();
        let mut problems = Vec::new();
        assert!(config.check(&mut problems).is_none());
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("must use https")));

        let config = IssuerConfig::new(
            "https://issuer",
            vec!["a".into()],
            JwksSource::Url("http://issuer/jwks".into()),
        );
        let mut problems = Vec::new();
        assert!(config.check(&mut problems).is_none());
        assert!(
            problems.iter().any(|p| p.contains("must use https")),
            "{problems:?}"
        );

        let config = IssuerConfig::new("https://issuer/", vec!["a".into()], JwksSource::Discovery);
        let (_, source) = config.check(&mut Vec::new()).unwrap();
        assert_eq!(
            source,
            KeySourceSpec::Discovery(
                Url::parse("https://issuer/.well-known/openid-configuration").unwrap()
            )
        );
    }
}
