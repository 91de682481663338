//! End-to-end tests of [`Verifier`] with real keys and signatures.
//! Key refresh is in `tests/refresh.rs`, HTTPS sources in `tests/https.rs`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod https;
mod refresh;
mod server;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::{TokenError, TokenErrorCode, Verifier};
use support::*;

fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}

#[test]
fn verifier_is_a_shareable_handle() {
    assert_send_sync_clone::<Verifier>();
}

/// Verifies at the real clock and checks that a refusal never quotes the token.
async fn verify(world: &World, token: &str) -> Result<super::VerifiedToken, TokenError> {
    let result = world.verifier.verify(token).await;
    if let Err(e) = &result {
        let msg = e.to_string();
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(!msg.contains(part), "message `{msg}` quotes the token");
        }
    }
    result
}

#[tokio::test]
async fn rs256_github_token_gives_principal_with_github_claims() {
    let world = World::new();
    let now = unix_now();
    let token = world.rsa.sign(&github_claims(now));
    let verified = verify(&world, &token).await.unwrap();

    assert_eq!(verified.issuer, GITHUB);
    assert_eq!(verified.subject, "repo:acme/app:environment:prod");
    assert_eq!(
        verified.principal_id,
        format!("{GITHUB}|repo:acme/app:environment:prod")
    );
    assert_eq!(verified.groups, ["acme"]);
    assert_eq!(verified.expires_at, at(now + 300));
    let expected: BTreeMap<String, String> = [
        ("actor", "octocat"),
        ("environment", "prod"),
        ("event_name", "push"),
        (
            "job_workflow_ref",
            "acme/app/.github/workflows/deploy.yml@refs/heads/main",
        ),
        ("ref", "refs/heads/main"),
        ("repository", "acme/app"),
        ("repository_owner", "acme"),
        ("run_attempt", "1"),
        ("run_id", "4242"),
        ("sha", "a1b2c3"),
        ("workflow", "deploy"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(verified.claims, expected);
}

#[tokio::test]
async fn es256_gitlab_token_gives_principal_with_gitlab_claims() {
    let world = World::new();
    let now = unix_now();
    let verified = verify(&world, &world.ec.sign(&gitlab_claims(now)))
        .await
        .unwrap();

    assert_eq!(
        verified.principal_id,
        format!("{GITLAB}|project_path:acme/infra:ref_type:branch:ref:main")
    );
    assert_eq!(verified.groups, ["acme", "acme/dba"]);
    let claims = &verified.claims;
    assert_eq!(claims["project_path"], "acme/infra");
    assert_eq!(claims["namespace_path"], "acme");
    assert_eq!(claims["user_login"], "alice");
    assert_eq!(
        claims["pipeline_id"], "1001",
        "numbers are rendered as digits"
    );
    assert_eq!(claims["job_id"], "2002");
    assert_eq!(claims["ref"], "main");
    assert_eq!(claims["environment"], "staging");
    assert!(
        !claims.contains_key("user_email"),
        "only configured claims are copied"
    );
}

#[tokio::test]
async fn eddsa_token_with_generic_claims_verifies() {
    let world = World::new();
    let now = unix_now();
    let claims = json!({
        "iss": GENERIC, "aud": ["account", AUDIENCE], "sub": "f3a1", "exp": now + 60,
        "email": "bob@example.com", "name": "Bob", "preferred_username": "bob",
        "groups": ["dba", "oncall"]
    });
    let verified = verify(&world, &world.ed.sign(&claims)).await.unwrap();
    assert_eq!(verified.groups, ["dba", "oncall"]);
    assert_eq!(verified.claims["preferred_username"], "bob");
    assert_eq!(verified.claims["email"], "bob@example.com");
}

#[tokio::test]
async fn token_without_kid_uses_the_single_key_of_its_type() {
    let world = World::new();
    let token = world
        .rsa
        .sign_as(world.rsa.alg, None, &github_claims(unix_now()));
    assert!(verify(&world, &token).await.is_ok());
}

#[tokio::test]
async fn time_claims_are_enforced() {
    let world = World::new();
    let now = unix_now();

    let mut claims = github_claims(now);
    claims["exp"] = json!(now - 120);
    claims["iat"] = json!(now - 600);
    claims["nbf"] = json!(now - 600);
    let err = verify(&world, &world.rsa.sign(&claims)).await.unwrap_err();
    assert_eq!(
        err,
        TokenError::Expired {
            expired_at: at(now - 120)
        }
    );
    assert_eq!(err.code(), TokenErrorCode::Expired);

    let mut claims = github_claims(now);
    claims["nbf"] = json!(now + 120);
    let err = verify(&world, &world.rsa.sign(&claims)).await.unwrap_err();
    assert_eq!(err, TokenError::NotYetValid);
    assert_eq!(err.code(), TokenErrorCode::NotYetValid);

    let mut claims = github_claims(now);
    claims["iat"] = json!(now + 120);
    assert_eq!(
        verify(&world, &world.rsa.sign(&claims)).await.unwrap_err(),
        TokenError::NotYetValid
    );

    let mut claims = github_claims(now);
    claims.as_object_mut().unwrap().remove("exp");
    let err = verify(&world, &world.rsa.sign(&claims)).await.unwrap_err();
    assert_eq!(err, TokenError::MissingClaim("exp"));
    assert_eq!(err.code(), TokenErrorCode::Malformed);
}

#[tokio::test]
async fn leeway_is_honoured_on_both_ends() {
    let world = World::new(); // default leeway: 30 s
    let now = 1_900_000_000;
    let token_with = |exp: u64, nbf: u64| {
        let mut claims = github_claims(now);
        claims["exp"] = json!(exp);
        claims["nbf"] = json!(nbf);
        claims["iat"] = json!(nbf);
        world.rsa.sign(&claims)
    };
    let verify_now = |token: String| {
        let verifier = world.verifier.clone();
        async move { verifier.verify_at(&token, at(now)).await }
    };
    assert!(verify_now(token_with(now - 30, now - 60)).await.is_ok());
    assert!(matches!(
        verify_now(token_with(now - 31, now - 60)).await,
        Err(TokenError::Expired { .. })
    ));
    assert!(verify_now(token_with(now + 60, now + 30)).await.is_ok());
    assert_eq!(
        verify_now(token_with(now + 60, now + 31))
            .await
            .unwrap_err(),
        TokenError::NotYetValid
    );

    let strict = World::with(|c| c.leeway = Duration::ZERO);
    let mut claims = github_claims(now);
    claims["exp"] = json!(now - 1);
    let token = strict.rsa.sign(&claims);
    assert!(matches!(
        strict.verifier.verify_at(&token, at(now)).await,
        Err(TokenError::Expired { .. })
    ));
}

#[tokio::test]
async fn wrong_audience_and_unknown_issuer_are_refused() {
    let world = World::new();
    let now = unix_now();

    let mut claims = github_claims(now);
    claims["aud"] = json!("someone-else");
    let err = verify(&world, &world.rsa.sign(&claims)).await.unwrap_err();
    assert_eq!(err, TokenError::WrongAudience);
    assert_eq!(err.code(), TokenErrorCode::WrongAudience);

    claims.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        verify(&world, &world.rsa.sign(&claims)).await.unwrap_err(),
        TokenError::WrongAudience
    );

    let mut claims = github_claims(now);
    claims["iss"] = json!("https://token.actions.githubusercontent.com.evil.example");
    let err = verify(&world, &world.rsa.sign(&claims)).await.unwrap_err();
    assert_eq!(
        err,
        TokenError::UnknownIssuer(
            "https://token.actions.githubusercontent.com.evil.example".into()
        )
    );
    assert_eq!(err.code(), TokenErrorCode::WrongIssuer);

    // an issuer is matched exactly: no trailing-slash or case folding
    claims["iss"] = json!(format!("{GITHUB}/"));
    assert!(matches!(
        verify(&world, &world.rsa.sign(&claims)).await,
        Err(TokenError::UnknownIssuer(_))
    ));
}

#[tokio::test]
async fn alg_none_is_refused_before_anything_else() {
    let world = World::new();
    let claims = github_claims(unix_now());
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": "gh-1"});
        let token = format!(
            "{}.{}.",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let err = verify(&world, &token).await.unwrap_err();
        assert_eq!(err, TokenError::Unsigned, "{alg}");
        assert_eq!(err.code(), TokenErrorCode::Unsigned);
        // and with a signature copied from a real token
        let real = world.rsa.sign(&claims);
        let stolen_sig = real.rsplit('.').next().unwrap();
        assert_eq!(
            verify(&world, &format!("{token}{stolen_sig}"))
                .await
                .unwrap_err(),
            TokenError::Unsigned
        );
    }
    assert_eq!(
        world.loads(GITHUB),
        0,
        "an unsigned token must not reach key lookup"
    );
}

/// The classic key-confusion attack: take the issuer's RSA public key, use
/// it as an HMAC secret, and sign with HS256 under the RSA key's kid.
#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let world = World::new();
    let claims = github_claims(unix_now());
    for secret in [
        RSA_A_PUBLIC.as_bytes(),
        world.rsa.jwk["n"].as_str().unwrap().as_bytes(),
    ] {
        for alg in [
            jsonwebtoken::Algorithm::HS256,
            jsonwebtoken::Algorithm::HS512,
        ] {
            let mut header = jsonwebtoken::Header::new(alg);
            header.kid = Some(world.rsa.kid.clone());
            let key = jsonwebtoken::EncodingKey::from_secret(secret).unwrap();
            let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
            let err = verify(&world, &token).await.unwrap_err();
            assert_eq!(err, TokenError::UnsupportedAlgorithm(format!("{alg:?}")));
            assert_eq!(err.code(), TokenErrorCode::UnsupportedAlgorithm);
        }
    }
    assert_eq!(world.loads(GITHUB), 0);
}

#[tokio::test]
async fn algorithms_outside_the_issuer_list_are_refused() {
    let world = World::new(); // default list: RS256, ES256, EdDSA
    let claims = github_claims(unix_now());
    let token = world
        .rsa
        .sign_as(jsonwebtoken::Algorithm::PS256, Some("gh-1"), &claims);
    assert_eq!(
        verify(&world, &token).await.unwrap_err(),
        TokenError::UnsupportedAlgorithm("PS256".into())
    );

    let world = World::with(|c| c.algorithms.push(super::Algorithm::PS256));
    let token = world
        .rsa
        .sign_as(jsonwebtoken::Algorithm::PS256, Some("gh-1"), &claims);
    assert!(verify(&world, &token).await.is_ok());
}

#[tokio::test]
async fn key_type_must_match_the_algorithm() {
    let world = World::new();
    let now = unix_now();
    // an EC signature under the kid of GitHub's RSA key
    let mut claims = gitlab_claims(now);
    claims["iss"] = json!(GITHUB);
    let token = world
        .ec
        .sign_as(jsonwebtoken::Algorithm::ES256, Some("gh-1"), &claims);
    let err = verify(&world, &token).await.unwrap_err();
    assert_eq!(
        err,
        TokenError::UnknownKey {
            kid: Some("gh-1".into())
        }
    );
    assert_eq!(err.code(), TokenErrorCode::UnknownKey);
}

#[tokio::test]
async fn a_signature_by_another_key_under_the_same_kid_is_bad() {
    let world = World::new();
    let impostor = TestKey::rsa(RSA_B, "gh-1");
    let err = verify(&world, &impostor.sign(&github_claims(unix_now())))
        .await
        .unwrap_err();
    assert_eq!(err, TokenError::BadSignature);
    assert_eq!(err.code(), TokenErrorCode::BadSignature);

    let impostor = TestKey::ec("gl-1");
    let err = verify(&world, &impostor.sign(&gitlab_claims(unix_now())))
        .await
        .unwrap_err();
    assert_eq!(err, TokenError::BadSignature);
}

#[tokio::test]
async fn a_tampered_payload_is_a_bad_signature() {
    let world = World::new();
    let now = unix_now();
    let token = world.rsa.sign(&github_claims(now));
    let mut forged = github_claims(now);
    forged["repository_owner"] = json!("evil");
    let forged_payload = b64(forged.to_string().as_bytes());
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[1] = &forged_payload;
    assert_eq!(
        verify(&world, &parts.join(".")).await.unwrap_err(),
        TokenError::BadSignature
    );
}

#[tokio::test]
async fn garbage_is_malformed() {
    let world = World::new();
    let valid = world.rsa.sign(&github_claims(unix_now()));
    let cases: Vec<String> = vec![
        String::new(),
        "hunter2".into(),
        "md5a3f2c1".into(),
        "a.b.c".into(),
        "...".into(),
        "eyJhbGciOiJSUzI1NiJ9".into(),
        format!("{valid}.extra"),
        valid.replacen('.', "", 1),
        "x".repeat(20_000),
        "\u{0}\u{1}\u{2}.\u{3}.\u{4}".into(),
        format!("{}.{}.sig", b64(b"{\"alg\":\"RS256\"}"), b64(b"not json")),
    ];
    for case in cases {
        let err = verify(&world, &case).await.unwrap_err();
        assert_eq!(err.code(), TokenErrorCode::Malformed, "{case:.40}: {err}");
    }
}

#[tokio::test]
async fn subject_is_required() {
    let world = World::new();
    let mut claims = github_claims(unix_now());
    claims.as_object_mut().unwrap().remove("sub");
    assert_eq!(
        verify(&world, &world.rsa.sign(&claims)).await.unwrap_err(),
        TokenError::MissingClaim("sub")
    );
}

#[tokio::test]
async fn a_bad_jwks_file_is_a_startup_error_naming_the_file() {
    let files = Files::new();
    let missing = files.dir.path().join("absent.json");
    let err = Verifier::new(vec![file_issuer(GITHUB, missing.clone())]).unwrap_err();
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );

    for (name, text) in [
        ("garbage.json", "not json"),
        ("empty.json", r#"{"keys": []}"#),
        (
            "hmac.json",
            r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#,
        ),
    ] {
        let path = files.write_raw(name, text);
        let err = Verifier::new(vec![file_issuer(GITHUB, path)]).unwrap_err();
        assert!(
            matches!(err, super::OidcError::JwksFile { .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[tokio::test]
async fn configuration_problems_are_reported_together() {
    let files = Files::new();
    let path = files.write("k.json", &[&TestKey::ec("k")]);
    let mut no_audience = file_issuer(GITLAB, path.clone());
    no_audience.audiences.clear();
    let err = Verifier::new(vec![
        file_issuer(GITHUB, path.clone()),
        file_issuer(GITHUB, path),
        no_audience,
    ])
    .unwrap_err();
    let super::OidcError::InvalidConfig(problems) = &err else {
        panic!("{err}")
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(err.to_string().contains("configured twice"));
    assert!(err.to_string().contains("audiences"));
}

#[test]
fn token_error_codes_are_distinct_per_cause() {
    let codes: Vec<TokenErrorCode> = [
        TokenError::Malformed("x"),
        TokenError::Unsigned,
        TokenError::UnsupportedAlgorithm("HS256".into()),
        TokenError::UnknownIssuer("i".into()),
        TokenError::UnknownKey { kid: None },
        TokenError::BadSignature,
        TokenError::Expired { expired_at: at(0) },
        TokenError::NotYetValid,
        TokenError::WrongAudience,
        TokenError::KeysUnavailable("i".into()),
    ]
    .iter()
    .map(TokenError::code)
    .collect();
    for (i, a) in codes.iter().enumerate() {
        for b in &codes[i + 1..] {
            assert_ne!(a, b);
        }
    }
}
