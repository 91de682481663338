//! Discovery and JWKS URLs over HTTPS against a local test issuer.

use std::time::Duration;

use serde_json::json;

use super::server::TestIssuer;
use super::support::*;
use crate::oidc::{IssuerConfig, JwksSource, OidcError, TokenError, Verifier};

fn claims_for(issuer: &str) -> serde_json::Value {
    let mut claims = github_claims(unix_now());
    claims["iss"] = json!(issuer);
    claims
}

fn config(server: &TestIssuer, jwks: JwksSource) -> IssuerConfig {
    let mut config = IssuerConfig::new(server.issuer.clone(), vec![AUDIENCE.into()], jwks);
    config.ca_file = Some(server.ca_file.clone());
    config
}

#[tokio::test]
async fn discovery_over_https_finds_the_keys() {
    let server = TestIssuer::start().await;
    let key = TestKey::ec("d-1");
    server.set_jwks(jwks(&[&key]));
    let verifier = Verifier::new(vec![config(&server, JwksSource::Discovery)]).unwrap();
    assert_eq!(
        server.jwks_hits(),
        0,
        "url sources are fetched on first use"
    );

    let verified = verifier
        .verify(&key.sign(&claims_for(&server.issuer)))
        .await
        .unwrap();
    assert_eq!(verified.issuer, server.issuer);
    assert_eq!(verified.groups, Vec::<String>::new());
    assert_eq!(server.jwks_hits(), 1);

    // cached: no new fetch
    verifier
        .verify(&key.sign(&claims_for(&server.issuer)))
        .await
        .unwrap();
    assert_eq!(server.jwks_hits(), 1);
}

#[tokio::test]
async fn rotation_is_fetched_once_the_refresh_interval_has_passed() {
    let server = TestIssuer::start().await;
    let key = TestKey::ec("d-1");
    server.set_jwks(jwks(&[&key]));
    let mut config = config(&server, JwksSource::Discovery);
    config.min_refresh_interval = Duration::from_millis(1500);
    let verifier = Verifier::new(vec![config]).unwrap();
    verifier
        .verify(&key.sign(&claims_for(&server.issuer)))
        .await
        .unwrap();
    assert_eq!(server.jwks_hits(), 1);

    // the first fetch counts: a rotation right after it waits for the interval
    let rotated = TestKey::ed("d-2");
    server.set_jwks(jwks(&[&key, &rotated]));
    let token = rotated.sign(&claims_for(&server.issuer));
    let err = verifier.verify(&token).await.unwrap_err();
    assert_eq!(
        err,
        TokenError::UnknownKey {
            kid: Some("d-2".into())
        }
    );
    assert_eq!(server.jwks_hits(), 1);

    tokio::time::sleep(Duration::from_millis(1600)).await;
    verifier.verify(&token).await.unwrap();
    assert_eq!(server.jwks_hits(), 2);
}

#[tokio::test]
async fn an_aged_key_set_is_refetched_and_kept_if_the_fetch_fails() {
    let server = TestIssuer::start().await;
    let key = TestKey::ec("d-1");
    server.set_jwks(jwks(&[&key]));
    let mut config = config(&server, JwksSource::Discovery);
    config.jwks_max_age = Duration::from_millis(1000);
    config.min_refresh_interval = Duration::ZERO;
    let verifier = Verifier::new(vec![config]).unwrap();
    let token = key.sign(&claims_for(&server.issuer));
    verifier.verify(&token).await.unwrap();
    verifier.verify(&token).await.unwrap();
    assert_eq!(server.jwks_hits(), 1);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    verifier.verify(&token).await.unwrap();
    assert_eq!(
        server.jwks_hits(),
        2,
        "a set past its max age is fetched again"
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    server.set_jwks("<html>gateway timeout</html>".into());
    verifier.verify(&token).await.unwrap();
    assert_eq!(
        server.jwks_hits(),
        3,
        "the failed fetch happened, and the old set still served"
    );
}

#[tokio::test]
async fn a_fixed_jwks_url_works() {
    let server = TestIssuer::start().await;
    let key = TestKey::rsa(RSA_A, "u-1");
    server.set_jwks(jwks(&[&key]));
    let url = format!("{}/jwks", server.issuer);
    let verifier = Verifier::new(vec![config(&server, JwksSource::Url(url))]).unwrap();
    assert!(
        verifier
            .verify(&key.sign(&claims_for(&server.issuer)))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn plain_http_is_refused() {
    let url = JwksSource::Url("http://127.0.0.1:9/jwks".into());
    let err =
        Verifier::new(vec![IssuerConfig::new("https://i", vec!["a".into()], url)]).unwrap_err();
    assert!(matches!(err, OidcError::InvalidConfig(_)), "{err}");
    assert!(err.to_string().contains("must use https"), "{err}");

    let err = Verifier::new(vec![IssuerConfig::new(
        "http://127.0.0.1:9",
        vec!["a".into()],
        JwksSource::Discovery,
    )])
    .unwrap_err();
    assert!(err.to_string().contains("must use https"), "{err}");

    // a discovery document pointing at a plain-http jwks_uri is not followed
    let server = TestIssuer::start().await;
    let key = TestKey::ec("d-1");
    server.set_jwks(jwks(&[&key]));
    let http_jwks = server.issuer.replacen("https://", "http://", 1) + "/jwks";
    server.set_discovery(json!({"issuer": server.issuer, "jwks_uri": http_jwks}).to_string());
    let verifier = Verifier::new(vec![config(&server, JwksSource::Discovery)]).unwrap();
    let err = verifier
        .verify(&key.sign(&claims_for(&server.issuer)))
        .await
        .unwrap_err();
    assert_eq!(err, TokenError::KeysUnavailable(server.issuer.clone()));
    assert_eq!(server.jwks_hits(), 0);
}

#[tokio::test]
async fn an_untrusted_certificate_makes_keys_unavailable() {
    let server = TestIssuer::start().await;
    let key = TestKey::ec("d-1");
    server.set_jwks(jwks(&[&key]));
    let mut config = config(&server, JwksSource::Discovery);
    config.ca_file = None;
    let verifier = Verifier::new(vec![config]).unwrap();
    let err = verifier
        .verify(&key.sign(&claims_for(&server.issuer)))
        .await
        .unwrap_err();
    assert_eq!(err, TokenError::KeysUnavailable(server.issuer.clone()));
    assert_eq!(err.code(), crate::oidc::TokenErrorCode::KeysUnavailable);

    // failures are rate limited too: the next caller is refused without a fetch
    let err = verifier
        .verify(&key.sign(&claims_for(&server.issuer)))
        .await
        .unwrap_err();
    assert_eq!(err, TokenError::KeysUnavailable(server.issuer.clone()));
}

#[tokio::test]
async fn a_discovery_document_for_another_issuer_is_refused() {
    let server = TestIssuer::start().await;
    let key = TestKey::ec("d-1");
    server.set_jwks(jwks(&[&key]));
    server.set_discovery(
        json!({"issuer": "https://elsewhere", "jwks_uri": format!("{}/jwks", server.issuer)})
            .to_string(),
    );
    let verifier = Verifier::new(vec![config(&server, JwksSource::Discovery)]).unwrap();
    let err = verifier
        .verify(&key.sign(&claims_for(&server.issuer)))
        .await
        .unwrap_err();
    assert_eq!(err, TokenError::KeysUnavailable(server.issuer.clone()));
}

#[tokio::test]
async fn a_missing_ca_file_is_a_startup_error() {
    let server = TestIssuer::start().await;
    let mut config = config(&server, JwksSource::Discovery);
    config.ca_file = Some("/nonexistent/palisade-ca.pem".into());
    let err = Verifier::new(vec![config]).unwrap_err();
    assert!(matches!(err, OidcError::CaFile { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/palisade-ca.pem"));
}
