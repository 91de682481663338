//! The HTTPS client for discovery documents and JWKS: HTTPS only, bounded in
//! time and size.

use std::path::Path;
use std::time::Duration;

use url::Url;

use super::error::OidcError;
use super::jwks::MAX_JWKS_BYTES;

/// Builds the client one issuer fetches with. Plain `http://` URLs, also in
/// redirects, are refused by the client itself.
pub(crate) fn build_client(
    issuer: &str,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<reqwest::Client, OidcError> {
    // reqwest (built without a bundled provider) panics if no process-wide
    // rustls provider exists. Palisade uses ring throughout; installing it
    // here when nothing else did is a no-op otherwise.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .https_only(true)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("palisade-pdp/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let ca_error = |reason: String| OidcError::CaFile {
            path: path.to_owned(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_error("no pem certificate found".into()));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| OidcError::HttpClient {
        issuer: issuer.to_owned(),
        reason: e.to_string(),
    })
}

/// GETs `url` and returns the body, refusing non-2xx answers and bodies over
/// [`MAX_JWKS_BYTES`].
pub(crate) async fn get(client: &reqwest::Client, url: &Url) -> Result<Vec<u8>, String> {
    let mut response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("request to `{url}` failed: {}", error_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("`{url}` answered {status}"));
    }
    if response
        .content_length()
        .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
    {
        return Err(format!("`{url}` answered more than {MAX_JWKS_BYTES} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading `{url}` failed: {}", error_chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!("`{url}` answered more than {MAX_JWKS_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// reqwest's top-level message hides the cause (e.g. the TLS failure); logs need it.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
