//! Tests of the development issuer: tokens verified the way the PDP will, with
//! jsonwebtoken and the JWKS file the issuer wrote.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

use super::command::{parse_claim, parse_ttl};
use super::*;

const ISSUER: &str = "https://dev.palisade.local";

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn jwks_of(issuer: &DevIssuer) -> JwkSet {
    serde_json::from_str(&fs::read_to_string(issuer.jwks_path()).unwrap()).unwrap()
}

fn validation(aud: &str) -> Validation {
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_audience(&[aud]);
    v.set_issuer(&[ISSUER]);
    v.validate_nbf = true;
    // jsonwebtoken checks `aud`/`iss`/`nbf` only when present unless they are
    // required: the PDP must require them too (see `missing_audience_…`).
    v.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
    v
}

/// Verifies `token` as the PDP would: pick the JWK by the header's kid.
fn verify(jwks: &JwkSet, token: &str, v: &Validation) -> jsonwebtoken::errors::Result<Value> {
    let header = jsonwebtoken::decode_header(token)?;
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let key = DecodingKey::from_jwk(jwk)?;
    jsonwebtoken::decode::<Value>(token, &key, v).map(|data| data.claims)
}

fn kind(result: jsonwebtoken::errors::Result<Value>) -> ErrorKind {
    result.unwrap_err().into_kind()
}

#[test]
fn files_modes_and_jwks_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev-issuer");
    let issuer = DevIssuer::create_or_load(&dir, ISSUER).unwrap();

    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("dev-issuer.key")), 0o600);
    assert_eq!(mode(&dir.join("dev-issuer.jwks.json")), 0o644);
    assert_eq!(mode(&dir.join("dev-issuer.json")), 0o644);
    assert_eq!(issuer.jwks_path(), dir.join("dev-issuer.jwks.json"));
    let pem = fs::read_to_string(dir.join("dev-issuer.key")).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));

    let jwks: Value =
        serde_json::from_str(&fs::read_to_string(issuer.jwks_path()).unwrap()).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "EdDSA");
    let x = URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap();
    assert_eq!(x.len(), 32);
    let expected_kid: String = URL_SAFE_NO_PAD.encode(Sha256::digest(&x))[..16].to_owned();
    assert_eq!(key["kid"], expected_kid.as_str());
    assert_eq!(issuer.kid(), expected_kid);

    let meta: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("dev-issuer.json")).unwrap()).unwrap();
    assert_eq!(meta["issuer"], ISSUER);
    assert_eq!(meta["kid"], expected_kid.as_str());
}

#[test]
fn minted_token_verifies_against_the_written_jwks() {
    let tmp = tempfile::tempdir().unwrap();
    let issuer = DevIssuer::create_or_load(tmp.path(), ISSUER).unwrap();
    let mut claims = DevClaims::new("alice", "palisade");
    claims.groups = vec!["dba".into(), "oncall".into()];
    claims.ttl = Duration::from_secs(600);
    claims.extra.insert("repository".into(), json!("acme/app"));
    claims.extra.insert("run_id".into(), json!("42"));
    let token = issuer.mint(&claims).unwrap();

    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), Some(issuer.kid()));
    assert_eq!(header.typ.as_deref(), Some("JWT"));

    let body = verify(&jwks_of(&issuer), &token, &validation("palisade")).unwrap();
    assert_eq!(body["iss"], ISSUER);
    assert_eq!(body["sub"], "alice");
    assert_eq!(body["aud"], "palisade");
    assert_eq!(body["groups"], json!(["dba", "oncall"]));
    assert_eq!(body["repository"], "acme/app");
    assert_eq!(body["run_id"], "42");
    let iat = body["iat"].as_u64().unwrap();
    assert_eq!(body["nbf"].as_u64().unwrap(), iat);
    assert_eq!(body["exp"].as_u64().unwrap(), iat + 600);
    assert_eq!(body["jti"].as_str().unwrap().len(), 32);

    // Every token has its own jti.
    let again = verify(
        &jwks_of(&issuer),
        &issuer.mint(&claims).unwrap(),
        &validation("palisade"),
    )
    .unwrap();
    assert_ne!(again["jti"], body["jti"]);
}

#[test]
fn reload_keeps_the_key_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    let first = DevIssuer::create_or_load(tmp.path(), ISSUER).unwrap();
    let jwks_before = fs::read(first.jwks_path()).unwrap();
    let token = first.mint(&DevClaims::new("bob", "palisade")).unwrap();

    let second = DevIssuer::create_or_load(tmp.path(), ISSUER).unwrap();
    assert_eq!(second.kid(), first.kid());
    assert_eq!(fs::read(second.jwks_path()).unwrap(), jwks_before);
    // Tokens of either instance verify with the same JWKS.
    let jwks = jwks_of(&second);
    verify(&jwks, &token, &validation("palisade")).unwrap();
    let token = second.mint(&DevClaims::new("bob", "palisade")).unwrap();
    verify(&jwks, &token, &validation("palisade")).unwrap();

    // A lost JWKS is rebuilt from the key.
    fs::remove_file(second.jwks_path()).unwrap();
    let third = DevIssuer::create_or_load(tmp.path(), ISSUER).unwrap();
    assert_eq!(fs::read(third.jwks_path()).unwrap(), jwks_before);
}

#[test]
fn bad_tokens_for_negative_tests() {
    let tmp = tempfile::tempdir().unwrap();
    let issuer = DevIssuer::create_or_load(tmp.path(), ISSUER).unwrap();
    let jwks = jwks_of(&issuer);
    let v = validation("palisade");
    let hour = Duration::from_secs(3600);

    let mut expired = DevClaims::new("alice", "palisade");
    expired.issued_at = Some(SystemTime::now() - 2 * hour);
    expired.expires_at = Some(SystemTime::now() - hour);
    let token = issuer.mint(&expired).unwrap();
    assert_eq!(kind(verify(&jwks, &token, &v)), ErrorKind::ExpiredSignature);

    let mut early = DevClaims::new("alice", "palisade");
    early.not_before = Some(SystemTime::now() + hour);
    early.ttl = 2 * hour;
    let token = issuer.mint(&early).unwrap();
    assert_eq!(
        kind(verify(&jwks, &token, &v)),
        ErrorKind::ImmatureSignature
    );

    let token = issuer
        .mint(&DevClaims::new("alice", "someone-else"))
        .unwrap();
    assert_eq!(kind(verify(&jwks, &token, &v)), ErrorKind::InvalidAudience);

    let mut no_aud = DevClaims::new("alice", "palisade");
    no_aud.aud.clear();
    let token = issuer.mint(&no_aud).unwrap();
    assert!(
        matches!(kind(verify(&jwks, &token, &v)), ErrorKind::MissingRequiredClaim(c) if c == "aud")
    );
    // The pitfall this guards against: with only `set_audience`, jsonwebtoken
    // accepts a token that has no `aud` at all.
    let mut lax = Validation::new(Algorithm::EdDSA);
    lax.set_audience(&["palisade"]);
    assert!(verify(&jwks, &token, &lax).is_ok());

    let mut wrong_iss = DevClaims::new("alice", "palisade");
    wrong_iss.issuer = Some("https://evil.example".into());
    let token = issuer.mint(&wrong_iss).unwrap();
    assert_eq!(kind(verify(&jwks, &token, &v)), ErrorKind::InvalidIssuer);

    // Several audiences become an array the PDP accepts if one matches.
    let mut many = DevClaims::new("alice", "palisade");
    many.aud.push("other".into());
    let body = verify(&jwks, &issuer.mint(&many).unwrap(), &v).unwrap();
    assert_eq!(body["aud"], json!(["palisade", "other"]));

    // A token of another development issuer does not verify with this JWKS.
    let other_dir = tempfile::tempdir().unwrap();
    let other = DevIssuer::create_or_load(other_dir.path(), ISSUER).unwrap();
    let token = other.mint(&DevClaims::new("alice", "palisade")).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert!(jwks.find(header.kid.as_deref().unwrap()).is_none());
    let key = DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
    let err = jsonwebtoken::decode::<Value>(&token, &key, &v).unwrap_err();
    assert_eq!(err.into_kind(), ErrorKind::InvalidSignature);

    // The encoding key lets tests craft what mint refuses, e.g. no exp at all.
    let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
    header.kid = Some(issuer.kid().to_owned());
    let token = jsonwebtoken::encode(
        &header,
        &json!({"iss": ISSUER, "sub": "alice", "aud": "palisade", "nbf": 0}),
        issuer.encoding_key(),
    )
    .unwrap();
    assert!(
        matches!(kind(verify(&jwks, &token, &v)), ErrorKind::MissingRequiredClaim(c) if c == "exp")
    );
}

#[test]
fn extra_claims_cannot_replace_standard_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let issuer = DevIssuer::create_or_load(tmp.path(), ISSUER).unwrap();
    let mut claims = DevClaims::new("alice", "palisade");
    claims.extra.insert("exp".into(), json!(1));
    let err = issuer.mint(&claims).unwrap_err();
    assert!(err.to_string().contains("`exp`"), "{err}");
}

#[test]
fn refuses_another_issuer_url_and_a_readable_key() {
    let tmp = tempfile::tempdir().unwrap();
    DevIssuer::create_or_load(tmp.path(), ISSUER).unwrap();
    let err = DevIssuer::create_or_load(tmp.path(), "https://other.example").unwrap_err();
    assert!(format!("{err:#}").contains(ISSUER), "{err:#}");

    let key = tmp.path().join("dev-issuer.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let err = DevIssuer::create_or_load(tmp.path(), ISSUER).unwrap_err();
    assert!(
        format!("{err:#}").contains("readable by other users"),
        "{err:#}"
    );
}

#[test]
fn ttl_parser() {
    assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
    assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
    assert_eq!(parse_ttl("1h30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(parse_ttl("2d").unwrap(), Duration::from_secs(172_800));
    assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_ttl("45s").unwrap(), Duration::from_secs(45));
    for bad in [
        "",
        "0",
        "0m",
        "m",
        "15x",
        "1h30",
        "-5m",
        "1.5h",
        "99999999999999999999d",
        "15 m",
    ] {
        assert!(parse_ttl(bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn claim_parser() {
    assert_eq!(
        parse_claim("ref=refs/heads/x").unwrap(),
        ("ref".into(), json!("refs/heads/x"))
    );
    assert_eq!(
        parse_claim("run_id=12").unwrap(),
        ("run_id".into(), json!("12"))
    );
    assert_eq!(parse_claim("a=b=c").unwrap(), ("a".into(), json!("b=c")));
    assert_eq!(
        parse_claim("attempt:=2").unwrap(),
        ("attempt".into(), json!(2))
    );
    assert_eq!(
        parse_claim("tags:=[\"x\"]").unwrap(),
        ("tags".into(), json!(["x"]))
    );
    assert_eq!(parse_claim("empty=").unwrap(), ("empty".into(), json!("")));
    for bad in ["novalue", "=x", "k:=not json"] {
        assert!(parse_claim(bad).is_err(), "{bad} accepted");
    }
}

mod command_line {
    use clap::Parser;

    use super::super::command::*;
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        token: TokenArgs,
    }

    fn args(extra: &[&str]) -> Result<TokenArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("palisade").chain(extra.iter().copied()))
            .map(|c| c.token)
    }

    #[test]
    fn defaults() {
        let a = args(&["--sub", "alice"]).unwrap();
        assert_eq!(a.dir, Path::new("./.palisade/dev-issuer"));
        assert_eq!(a.issuer, ISSUER);
        assert_eq!(a.aud, ["palisade"]);
        assert_eq!(a.ttl, Duration::from_secs(900));
        let c = claims_for(&a).unwrap();
        assert_eq!(c.sub, "alice");
        assert!(c.extra.is_empty());
        assert!(
            claims_for(&args(&[]).unwrap()).is_err(),
            "--sub is required"
        );
        assert!(args(&["--github-actions", "--gitlab-ci"]).is_err());
    }

    #[test]
    fn github_actions_preset_with_overrides() {
        let a = args(&[
            "--github-actions",
            "--claim",
            "repository=corp/api",
            "--claim",
            "actor=carol",
            "--group",
            "ci",
            "--ttl",
            "1h",
        ])
        .unwrap();
        let c = claims_for(&a).unwrap();
        assert_eq!(c.sub, "repo:corp/api:ref:refs/heads/main");
        assert_eq!(c.groups, ["ci"]);
        assert_eq!(c.ttl, Duration::from_secs(3600));
        let e = &c.extra;
        assert_eq!(e["repository"], "corp/api");
        assert_eq!(e["repository_owner"], "corp");
        assert_eq!(e["actor"], "carol");
        assert_eq!(e["ref"], "refs/heads/main");
        assert_eq!(e["event_name"], "push");
        assert_eq!(e["workflow"], "ci");
        assert_eq!(
            e["job_workflow_ref"],
            "corp/api/.github/workflows/ci.yml@refs/heads/main"
        );
        let sha = e["sha"].as_str().unwrap();
        assert!(sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(e["run_id"].as_str().unwrap().parse::<u64>().is_ok());

        // An explicit --sub wins over the preset's.
        let a = args(&["--github-actions", "--sub", "me"]).unwrap();
        assert_eq!(claims_for(&a).unwrap().sub, "me");
    }

    #[test]
    fn gitlab_preset() {
        let c = claims_for(&args(&["--gitlab-ci"]).unwrap()).unwrap();
        assert_eq!(c.sub, "project_path:acme/app:ref_type:branch:ref:main");
        for key in [
            "project_path",
            "ref",
            "sha",
            "pipeline_id",
            "job_id",
            "user_login",
        ] {
            assert!(c.extra.contains_key(key), "{key} missing");
        }
        assert_eq!(c.extra["namespace_path"], "acme");
    }

    #[test]
    fn run_mints_into_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("iss");
        let a = args(&["--dir", dir.to_str().unwrap(), "--gitlab-ci"]).unwrap();
        run(&a).unwrap();
        assert!(dir.join("dev-issuer.jwks.json").exists());
    }
}
