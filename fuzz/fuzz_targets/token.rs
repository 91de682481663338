//! Token parsing and verification (`palisade_pdp::oidc::Verifier::verify`)
//! against a fixed issuer whose key set is a local JWKS file (no network).
//!
//! The first byte picks the mode:
//! - even: the rest is a token string, verified as presented;
//! - odd: the rest is `header JSON` NUL `payload JSON`, signed here with the
//!   issuer's own (test-only) Ed25519 key, so the fuzzer reaches the claim
//!   checks behind the signature.
//!
//! Invariants: a token verifies only if its signature is the issuer key's
//! signature over its first two parts (Ed25519 is deterministic, so this
//! holds byte for byte); and a verified token names the configured issuer,
//! carries the configured audience, and has not expired.
#![no_main]
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a fuzz target fails by panicking"
)]

use std::sync::OnceLock;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use libfuzzer_sys::fuzz_target;
use palisade_pdp::oidc::{IssuerConfig, JwksSource, Verifier};
use serde_json::Value;

const ISSUER: &str = "https://token.fuzz.example";
const AUDIENCE: &str = "palisade";
const KID: &str = "fuzz-ed25519";
/// Test-only key, generated for these fuzz targets; never trusted anywhere.
const PRIVATE_PEM: &str = include_str!("../../pdp/tests/fixtures/oidc/test-only-ed25519.pem");
const PUBLIC_X: &str = "CaUeBULGQNLEqn5n-I_pthgfue7u3tC79AX3k_z9swM";

struct World {
    runtime: tokio::runtime::Runtime,
    verifier: Verifier,
    key: EncodingKey,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("palisade-fuzz-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let jwks = dir.join("jwks.json");
        let set = serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": KID, "x": PUBLIC_X}
        ]});
        std::fs::write(&jwks, set.to_string()).unwrap();
        let config = IssuerConfig::new(ISSUER, vec![AUDIENCE.to_owned()], JwksSource::File(jwks));
        World {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            verifier: Verifier::new(vec![config]).unwrap(),
            key: EncodingKey::from_ed_pem(PRIVATE_PEM.as_bytes()).unwrap(),
        }
    })
}

fn sign(world: &World, signing_input: &str) -> Vec<u8> {
    let sig = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &world.key,
        jsonwebtoken::Algorithm::EdDSA,
    )
    .unwrap();
    URL_SAFE_NO_PAD.decode(sig).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let world = world();
    let token = if mode % 2 == 0 {
        match std::str::from_utf8(rest) {
            Ok(t) => t.to_owned(),
            Err(_) => return,
        }
    } else {
        let mut parts = rest.splitn(2, |&b| b == 0);
        let header = parts.next().unwrap_or_default();
        let payload = parts.next().unwrap_or_default();
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let sig = URL_SAFE_NO_PAD.encode(sign(world, &input));
        format!("{input}.{sig}")
    };
    let result = world.runtime.block_on(world.verifier.verify(&token));
    let Ok(verified) = result else {
        return;
    };
    // Only the key holder could have made it.
    let (input, signature) = token.rsplit_once('.').expect("three parts");
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .expect("a verified signature is base64url");
    assert_eq!(
        signature,
        sign(world, input),
        "verified a signature the key did not make"
    );
    // And it says what the issuer policy requires.
    let payload = input.split('.').nth(1).expect("a payload");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
            .expect("a verified payload is JSON");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(verified.issuer, ISSUER);
    let audience_ok = match &claims["aud"] {
        Value::String(a) => a == AUDIENCE,
        Value::Array(a) => a.iter().any(|v| v == AUDIENCE),
        _ => false,
    };
    assert!(
        audience_ok,
        "verified a token for another audience: {}",
        claims["aud"]
    );
    assert!(!verified.subject.is_empty() || claims.get("sub").is_some());
    assert!(
        verified.expires_at + std::time::Duration::from_secs(60) > SystemTime::now(),
        "verified an expired token"
    );
    assert_eq!(
        verified.principal_id,
        format!("{}|{}", verified.issuer, verified.subject)
    );
});
