//! Property tests of token verification (`Verifier::verify`) against a
//! fixed issuer with a local JWKS file: no token string makes it panic;
//! nothing verifies without the issuer key's signature; and a signed token
//! verifies only if its claims satisfy the issuer policy (issuer,
//! audience, expiry, `alg`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test on a broken assumption"
)]

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use palisade_pdp::oidc::{IssuerConfig, JwksSource, Verifier};
use proptest::prelude::*;
use serde_json::{Value, json};

const ISSUER: &str = "https://token.example";
const AUDIENCE: &str = "palisade";
const KID: &str = "ed";
const PRIVATE_PEM: &str = include_str!("fixtures/oidc/test-only-ed25519.pem");
const PUBLIC_X: &str = "CaUeBULGQNLEqn5n-I_pthgfue7u3tC79AX3k_z9swM";

struct World {
    rt: tokio::runtime::Runtime,
    verifier: Verifier,
    key: EncodingKey,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        let set = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": KID, "x": PUBLIC_X}]});
        std::fs::write(&jwks, set.to_string()).unwrap();
        let config = IssuerConfig::new(ISSUER, vec![AUDIENCE.to_owned()], JwksSource::File(jwks));
        World {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            verifier: Verifier::new(vec![config]).unwrap(),
            key: EncodingKey::from_ed_pem(PRIVATE_PEM.as_bytes()).unwrap(),
            _dir: dir,
        }
    })
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// `header.payload.signature`, signed with the issuer's key whatever the
/// header says.
fn signed(header: &Value, payload: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let sig = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &world().key,
        jsonwebtoken::Algorithm::EdDSA,
    )
    .unwrap();
    format!("{input}.{sig}")
}

fn verify(token: &str) -> Result<palisade_pdp::oidc::VerifiedToken, String> {
    let w = world();
    w.rt.block_on(w.verifier.verify(token))
        .map_err(|e| e.to_string())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn alg() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => Just(json!("EdDSA")),
        1 => prop::sample::select(vec!["none", "NONE", "HS256", "RS256", "ES256", "eddsa", ""]).prop_map(|a| json!(a)),
        1 => Just(json!(null)),
        1 => Just(json!(["EdDSA"])),
    ]
}

fn audience() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => Just(json!(AUDIENCE)),
        1 => Just(json!([AUDIENCE, "other"])),
        1 => Just(json!("other")),
        1 => Just(json!([])),
        1 => Just(json!(null)),
        1 => Just(json!(7)),
    ]
}

/// Seconds from now, or something that is not a time.
fn time(centre: i64) -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (-100_000i64..100_000).prop_map(move |d| json!(centre + d)),
        1 => Just(json!("soon")),
        1 => Just(json!(null)),
        1 => Just(json!(1e300)),
        1 => Just(json!(-1)),
    ]
}

fn claims() -> impl Strategy<Value = (Value, Value)> {
    let n = now();
    (
        alg(),
        prop::option::of(prop::sample::select(vec![KID, "other", ""])),
        prop_oneof![3 => Just(json!(ISSUER)), 1 => Just(json!("https://evil.example")), 1 => Just(json!(null))],
        audience(),
        time(n + 3600),
        prop::option::of(time(n - 60)),
        prop_oneof![3 => Just(json!("repo:acme/app")), 1 => Just(json!("")), 1 => Just(json!(5)), 1 => Just(json!(null))],
        prop_oneof![Just(json!(["acme"])), Just(json!("acme")), Just(json!([1, {"a": 2}])), Just(json!(null))],
    )
        .prop_map(|(alg, kid, iss, aud, exp, nbf, sub, groups)| {
            let mut header = json!({"alg": alg, "typ": "JWT"});
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            let mut payload = json!({"iss": iss, "aud": aud, "exp": exp, "sub": sub, "groups": groups, "iat": now() - 5});
            if let Some(nbf) = nbf {
                payload["nbf"] = nbf;
            }
            (header, payload)
        })
}

#[test]
fn a_well_formed_token_verifies() {
    let token = signed(
        &json!({"alg": "EdDSA", "kid": KID}),
        &json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "repo:acme/app", "exp": now() + 600, "groups": ["acme"]}),
    );
    let v = verify(&token).unwrap();
    assert_eq!(v.principal_id, format!("{ISSUER}|repo:acme/app"));
    assert_eq!(v.groups, ["acme"]);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_strings_never_verify(token in "\\PC{0,200}") {
        prop_assert!(verify(&token).is_err());
    }

    #[test]
    fn arbitrary_parts_never_verify(
        parts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 1..5),
    ) {
        let token = parts.iter().map(|p| URL_SAFE_NO_PAD.encode(p)).collect::<Vec<_>>().join(".");
        prop_assert!(verify(&token).is_err());
    }

    /// Tokens signed by the issuer's key with arbitrary claims verify only
    /// when the claims satisfy the policy.
    #[test]
    fn signed_tokens_verify_only_when_the_policy_holds((header, payload) in claims()) {
        let token = signed(&header, &payload);
        if let Ok(v) = verify(&token) {
            prop_assert_eq!(&header["alg"], "EdDSA");
            prop_assert_eq!(&payload["iss"], ISSUER);
            prop_assert_eq!(v.issuer.as_str(), ISSUER);
            let aud_ok = match &payload["aud"] {
                Value::String(a) => a == AUDIENCE,
                Value::Array(a) => a.iter().any(|x| x == AUDIENCE),
                _ => false,
            };
            prop_assert!(aud_ok, "audience {}", payload["aud"]);
            let exp = payload["exp"].as_i64();
            prop_assert!(exp.is_some_and(|e| e + 60 > now()), "exp {}", payload["exp"]);
            // `nbf: null` counts as no `nbf` (as for `iat`), by design.
            if let Some(nbf) = payload.get("nbf").filter(|n| !n.is_null()) {
                prop_assert!(nbf.as_i64().is_some_and(|n| n - 60 < now()), "nbf {}", nbf);
            }
            prop_assert!(payload["sub"].as_str().is_some_and(|s| !s.is_empty()));
        }
        // Any change to a signed token breaks it.
        let mut bytes = token.into_bytes();
        let i = bytes.len() / 2;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        if let Ok(t) = String::from_utf8(bytes) {
            prop_assert!(verify(&t).is_err());
        }
    }
}
