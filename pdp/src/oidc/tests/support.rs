//! Test keys, token minting and JWKS files for the `oidc` tests.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use crate::oidc::{IssuerConfig, JwksSource, Verifier};

pub const GITHUB: &str = "https://token.actions.githubusercontent.com";
pub const GITLAB: &str = "https://gitlab.example.com";
pub const AUDIENCE: &str = "palisade";

/// Test-only RSA keys (see `tests/fixtures/oidc/README.md`): generating RSA
/// keys in a debug build takes seconds, so two are committed.
pub const RSA_A: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/oidc/test-only-rsa-a.pem"
));
pub const RSA_B: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/oidc/test-only-rsa-b.pem"
));
pub const RSA_A_PUBLIC: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/oidc/test-only-rsa-a.pub.pem"
));

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A private signing key with its public JWK.
pub struct TestKey {
    pub kid: String,
    pub alg: jsonwebtoken::Algorithm,
    encoding: EncodingKey,
    pub jwk: Value,
}

impl TestKey {
    pub fn rsa(pem: &str, kid: &str) -> Self {
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        let jwk = Jwk::from_encoding_key(&encoding, jsonwebtoken::Algorithm::RS256).unwrap();
        let AlgorithmParameters::RSA(params) = jwk.algorithm else {
            unreachable!()
        };
        TestKey {
            kid: kid.into(),
            alg: jsonwebtoken::Algorithm::RS256,
            encoding,
            jwk: json!({"kty": "RSA", "use": "sig", "kid": kid, "n": params.n, "e": params.e}),
        }
    }

    pub fn ec(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = pair.public_key_raw();
        let (x, y) = raw[1..].split_at(32);
        TestKey {
            kid: kid.into(),
            alg: jsonwebtoken::Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pair.serialized_der()),
            jwk: json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                        "x": b64(x), "y": b64(y)}),
        }
    }

    pub fn ed(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        TestKey {
            kid: kid.into(),
            alg: jsonwebtoken::Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pair.serialized_der()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                        "x": b64(pair.public_key_raw())}),
        }
    }

    /// Signs with this key's algorithm, naming this key's kid.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.alg, Some(&self.kid), claims)
    }

    /// Signs with `alg`, naming `kid` in the header.
    pub fn sign_as(
        &self,
        alg: jsonwebtoken::Algorithm,
        kid: Option<&str>,
        claims: &Value,
    ) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

pub fn jwks(keys: &[&TestKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A GitHub Actions token's claims (values are strings, as GitHub sends them).
pub fn github_claims(now: u64) -> Value {
    json!({
        "iss": GITHUB, "aud": AUDIENCE,
        "sub": "repo:acme/app:environment:prod",
        "iat": now - 5, "nbf": now - 5, "exp": now + 300,
        "jti": "e6b1", "ref": "refs/heads/main", "sha": "a1b2c3",
        "repository": "acme/app", "repository_owner": "acme", "repository_owner_id": "99",
        "run_id": "4242", "run_number": "7", "run_attempt": "1",
        "actor": "octocat", "workflow": "deploy", "event_name": "push",
        "environment": "prod",
        "job_workflow_ref": "acme/app/.github/workflows/deploy.yml@refs/heads/main",
        "runner_environment": "github-hosted"
    })
}

/// A GitLab CI token's claims.
pub fn gitlab_claims(now: u64) -> Value {
    json!({
        "iss": GITLAB, "aud": [AUDIENCE, "other"],
        "sub": "project_path:acme/infra:ref_type:branch:ref:main",
        "iat": now, "nbf": now, "exp": now + 300,
        "namespace_id": "1", "namespace_path": "acme",
        "project_id": "22", "project_path": "acme/infra",
        "user_login": "alice", "user_email": "alice@example.com",
        "pipeline_id": 1001, "pipeline_source": "push", "job_id": "2002",
        "ref": "main", "ref_type": "branch", "sha": "d4e5f6",
        "environment": "staging",
        "groups_direct": ["acme", "acme/dba"]
    })
}

/// A temporary directory holding one JWKS file per issuer.
pub struct Files {
    pub dir: tempfile::TempDir,
}

impl Files {
    pub fn new() -> Self {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn write(&self, name: &str, keys: &[&TestKey]) -> PathBuf {
        self.write_raw(name, &jwks(keys))
    }

    pub fn write_raw(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        // write-then-rename so a concurrent refresh never reads half a file
        let tmp = self.dir.path().join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }
}

pub fn file_issuer(issuer: &str, path: PathBuf) -> IssuerConfig {
    IssuerConfig::new(issuer, vec![AUDIENCE.into()], JwksSource::File(path))
}

/// A verifier trusting GitHub (RSA `a`, groups from `repository_owner`),
/// GitLab (an EC key, groups from `groups_direct`) and a generic issuer
/// (an Ed25519 key), each from its own JWKS file.
pub struct World {
    pub files: Files,
    pub rsa: TestKey,
    pub ec: TestKey,
    pub ed: TestKey,
    pub verifier: Verifier,
}

pub const GENERIC: &str = "https://login.example.com/realms/corp";

impl World {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    pub fn with(tweak: impl Fn(&mut IssuerConfig)) -> Self {
        let files = Files::new();
        let rsa = TestKey::rsa(RSA_A, "gh-1");
        let ec = TestKey::ec("gl-1");
        let ed = TestKey::ed("idp-1");
        let mut github = file_issuer(GITHUB, files.write("github.json", &[&rsa]));
        github.groups_claim = "repository_owner".into();
        let mut gitlab = file_issuer(GITLAB, files.write("gitlab.json", &[&ec]));
        gitlab.groups_claim = "groups_direct".into();
        let generic = file_issuer(GENERIC, files.write("generic.json", &[&ed]));
        let mut issuers = vec![github, gitlab, generic];
        issuers.iter_mut().for_each(&tweak);
        let verifier = Verifier::new(issuers).unwrap();
        World {
            files,
            rsa,
            ec,
            ed,
            verifier,
        }
    }

    pub fn loads(&self, issuer: &str) -> u64 {
        self.verifier.issuer_keys(issuer).unwrap().loads()
    }
}
