//! Loading an issuer's key set from where its configuration says: a file,
//! a fixed HTTPS URL, or OIDC discovery.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use url::Url;

use super::config::{IssuerConfig, KeySourceSpec, https_url};
use super::error::OidcError;
use super::http;
use super::jwks::{KeySet, MAX_JWKS_BYTES};

/// A ready-to-use key source; URL sources carry their HTTPS client.
pub(crate) enum KeySource {
    File(PathBuf),
    Url {
        client: reqwest::Client,
        url: Url,
    },
    Discovery {
        client: reqwest::Client,
        issuer: String,
        config_url: Url,
    },
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::File(path) => write!(f, "file `{}`", path.display()),
            KeySource::Url { url, .. } => write!(f, "url `{url}`"),
            KeySource::Discovery { config_url, .. } => write!(f, "discovery `{config_url}`"),
        }
    }
}

/// The fields of an OpenID Provider configuration this verifier reads.
#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    jwks_uri: String,
}

impl KeySource {
    /// Builds the source for a checked spec, with an HTTPS client for URL sources.
    pub(crate) fn build(spec: KeySourceSpec, config: &IssuerConfig) -> Result<Self, OidcError> {
        let client = || {
            http::build_client(
                &config.issuer,
                config.ca_file.as_deref(),
                config.fetch_timeout,
            )
        };
        Ok(match spec {
            KeySourceSpec::File(path) => KeySource::File(path),
            KeySourceSpec::Url(url) => KeySource::Url {
                client: client()?,
                url,
            },
            KeySourceSpec::Discovery(config_url) => KeySource::Discovery {
                client: client()?,
                issuer: config.issuer.clone(),
                config_url,
            },
        })
    }

    /// Whether keys come over the network (and so age out).
    pub(crate) fn is_remote(&self) -> bool {
        !matches!(self, KeySource::File(_))
    }

    /// Reads a JWKS file synchronously, for start-up.
    pub(crate) fn read_file(path: &std::path::Path) -> Result<KeySet, String> {
        let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
        if len > MAX_JWKS_BYTES as u64 {
            return Err(format!("file is larger than {MAX_JWKS_BYTES} bytes"));
        }
        KeySet::parse(&std::fs::read(path).map_err(|e| e.to_string())?)
    }

    /// Loads the current key set. Errors are for the logs: they name the
    /// file or URL and what went wrong.
    pub(crate) async fn load(&self) -> Result<KeySet, String> {
        match self {
            KeySource::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || Self::read_file(&path))
                    .await
                    .map_err(|e| format!("jwks file read did not finish: {e}"))?
            }
            KeySource::Url { client, url } => KeySet::parse(&http::get(client, url).await?),
            KeySource::Discovery {
                client,
                issuer,
                config_url,
            } => {
                let body = http::get(client, config_url).await?;
                let doc: DiscoveryDocument = serde_json::from_slice(&body)
                    .map_err(|e| format!("`{config_url}` is not an openid configuration: {e}"))?;
                if doc.issuer != *issuer {
                    return Err(format!(
                        "`{config_url}` names issuer `{}`, expected `{issuer}`",
                        doc.issuer
                    ));
                }
                let jwks_url = https_url(&doc.jwks_uri)
                    .map_err(|e| format!("`jwks_uri` of `{config_url}`: {e}"))?;
                KeySet::parse(&http::get(client, &jwks_url).await?)
            }
        }
    }
}
