//! `palisade token`: a DEVELOPMENT OIDC token issuer.
//!
//! The PDP trusts a user because an OIDC provider signed their JWT. Locally
//! and in tests there is no provider, so this module plays one: an Ed25519
//! (EdDSA) signing key in a directory, the JWKS the PDP is pointed at, and a
//! minting function that produces tokens shaped like those of real CI systems
//! (GitHub Actions, GitLab CI).
//!
//! Never configure a production PDP to trust it: whoever can read the key file
//! can become anybody.
//!
//! Files in the issuer directory (created with mode 0700):
//!
//! | file | mode | content |
//! | --- | --- | --- |
//! | `dev-issuer.key` | 0600 | the signing key, PKCS#8 PEM |
//! | `dev-issuer.jwks.json` | 0644 | `{"keys":[{"kty":"OKP","crv":"Ed25519",…}]}` for the PDP |
//! | `dev-issuer.json` | 0644 | the issuer URL and key id, so a reload cannot silently change `iss` |

mod command;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::certs::files::{self, PUBLIC_MODE, SECRET_MODE};

pub use self::command::{TokenArgs, run};

/// File name of the signing key (PKCS#8 PEM, mode 0600).
const KEY_FILE: &str = "dev-issuer.key";
/// File name of the public JWKS the PDP loads.
const JWKS_FILE: &str = "dev-issuer.jwks.json";
/// File name of the issuer metadata.
const META_FILE: &str = "dev-issuer.json";
/// Length of the key id: a prefix of base64url(SHA-256(public key)).
const KID_LEN: usize = 16;
/// Claims [`DevIssuer::mint`] sets itself; [`DevClaims::extra`] may not set them.
const RESERVED_CLAIMS: [&str; 8] = ["iss", "sub", "aud", "iat", "nbf", "exp", "jti", "groups"];

/// A development token issuer backed by files, so the CLI, the demo and the
/// integration tests mint tokens a PDP verifies against a real JWKS.
pub struct DevIssuer {
    dir: PathBuf,
    issuer: String,
    kid: String,
    encoding_key: EncodingKey,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("dir", &self.dir)
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The issuer metadata file.
#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    issuer: String,
    kid: String,
    jwks_file: String,
    warning: String,
}

impl DevIssuer {
    /// Loads the issuer kept in `dir`, creating the key and files on first use
    /// so repeated runs (and every test sharing a directory) sign with one key.
    ///
    /// Fails if `dir` already holds an issuer for another URL, or a key that
    /// other users can read.
    pub fn create_or_load(dir: &Path, issuer_url: &str) -> Result<Self> {
        ensure!(!issuer_url.is_empty(), "the issuer URL must not be empty");
        files::create_private_dir(dir)?;
        check_recorded_issuer(dir, issuer_url)?;

        let key_path = dir.join(KEY_FILE);
        let key = match load_key(&key_path)? {
            Some(key) => key,
            None => create_key(&key_path)?,
        };
        let public = key.public_key_raw();
        let kid = kid(public);
        let encoding_key = EncodingKey::from_ed_pem(key.serialize_pem().as_bytes())
            .with_context(|| format!("cannot use `{}` for signing", key_path.display()))?;

        let jwks = serde_json::to_string_pretty(&jwks(public, &kid))?;
        write_if_changed(&dir.join(JWKS_FILE), &jwks)?;
        let meta = Meta {
            issuer: issuer_url.to_owned(),
            kid: kid.clone(),
            jwks_file: JWKS_FILE.to_owned(),
            warning: "DEVELOPMENT token issuer: never trust it in production".to_owned(),
        };
        write_if_changed(&dir.join(META_FILE), &serde_json::to_string_pretty(&meta)?)?;

        Ok(Self {
            dir: dir.to_path_buf(),
            issuer: issuer_url.to_owned(),
            kid,
            encoding_key,
        })
    }

    /// The `iss` of minted tokens, which the PDP must be configured with.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key id in every token header and in the JWKS, so a PDP that caches
    /// several keys picks this one.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWKS file to point the PDP at.
    pub fn jwks_path(&self) -> PathBuf {
        self.dir.join(JWKS_FILE)
    }

    /// The signing key, for tests that must craft tokens [`DevIssuer::mint`]
    /// refuses to make (a wrong `alg`, malformed claims).
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding_key
    }

    /// Signs a token for `claims`.
    ///
    /// The overrides in [`DevClaims`] let tests build expired, not-yet-valid,
    /// wrong-audience and wrong-issuer tokens that are still correctly signed.
    pub fn mint(&self, claims: &DevClaims) -> Result<String> {
        if let Some(name) = RESERVED_CLAIMS
            .iter()
            .find(|c| claims.extra.contains_key(**c))
        {
            bail!("claim `{name}` is set by the issuer and cannot be passed as an extra claim");
        }
        let iat = match claims.issued_at {
            Some(at) => at,
            None => SystemTime::now(),
        };
        let exp = match claims.expires_at {
            Some(at) => at,
            None => iat
                .checked_add(claims.ttl)
                .context("the token lifetime is too long")?,
        };
        let nbf = claims.not_before.unwrap_or(iat);

        let mut body = Map::new();
        let iss = claims.issuer.as_deref().unwrap_or(&self.issuer);
        body.insert("iss".into(), iss.into());
        body.insert("sub".into(), claims.sub.as_str().into());
        match claims.aud.as_slice() {
            [] => {}
            [one] => {
                body.insert("aud".into(), one.as_str().into());
            }
            many => {
                body.insert("aud".into(), many.into());
            }
        }
        body.insert("iat".into(), unix_seconds(iat)?.into());
        body.insert("nbf".into(), unix_seconds(nbf)?.into());
        body.insert("exp".into(), unix_seconds(exp)?.into());
        body.insert(
            "jti".into(),
            format!("{:032x}", rand::random::<u128>()).into(),
        );
        body.insert("groups".into(), claims.groups.as_slice().into());
        body.extend(claims.extra.iter().map(|(k, v)| (k.clone(), v.clone())));

        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".to_owned());
        jsonwebtoken::encode(&header, &Value::Object(body), self.encoding_key())
            .context("cannot sign the token")
    }
}

/// What a development token says, so callers choose the subject, audience,
/// groups, lifetime and CI metadata of the token they need.
#[derive(Debug, Clone, PartialEq)]
pub struct DevClaims {
    /// `sub`: the subject the PDP names the principal after.
    pub sub: String,
    /// `aud`: one entry is written as a string, several as an array, none
    /// omits the claim (to test that the PDP requires it).
    pub aud: Vec<String>,
    /// `groups`: the principal's groups (always written, possibly empty).
    pub groups: Vec<String>,
    /// Lifetime: `exp = iat + ttl` unless `expires_at` is set.
    pub ttl: Duration,
    /// `iat` override; default now.
    pub issued_at: Option<SystemTime>,
    /// `nbf` override; default `iat`.
    pub not_before: Option<SystemTime>,
    /// `exp` override, e.g. in the past for expired tokens; default `iat + ttl`.
    pub expires_at: Option<SystemTime>,
    /// `iss` override, for wrong-issuer tests; default the issuer's URL.
    pub issuer: Option<String>,
    /// Further claims (repository, sha, run_id, ref, …). They may not set the
    /// claims above.
    pub extra: Map<String, Value>,
}

impl DevClaims {
    /// Claims for `sub` and audience `aud`, no groups, a 15-minute lifetime.
    pub fn new(sub: impl Into<String>, aud: impl Into<String>) -> Self {
        Self {
            sub: sub.into(),
            aud: vec![aud.into()],
            groups: Vec::new(),
            ttl: Duration::from_secs(15 * 60),
            issued_at: None,
            not_before: None,
            expires_at: None,
            issuer: None,
            extra: Map::new(),
        }
    }
}

/// `kid`: the first 16 characters of base64url(SHA-256(raw public key)).
fn kid(public_key: &[u8]) -> String {
    let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(public_key));
    digest.chars().take(KID_LEN).collect()
}

fn jwks(public_key: &[u8], kid: &str) -> Value {
    json!({
        "keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(public_key),
            "kid": kid,
            "use": "sig",
            "alg": "EdDSA",
        }]
    })
}

fn unix_seconds(at: SystemTime) -> Result<u64> {
    Ok(at
        .duration_since(UNIX_EPOCH)
        .context("token times must be after 1970")?
        .as_secs())
}

/// Refuses a directory that was set up for a different issuer URL: tokens
/// would silently stop matching the PDP's configuration.
fn check_recorded_issuer(dir: &Path, issuer_url: &str) -> Result<()> {
    let path = dir.join(META_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    };
    let meta: Meta = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not issuer metadata", path.display()))?;
    ensure!(
        meta.issuer == issuer_url,
        "the development issuer in `{}` was created for `{}`, not `{issuer_url}`; \
         pass --issuer {} or use another --dir",
        dir.display(),
        meta.issuer,
        meta.issuer
    );
    Ok(())
}

/// Loads an Ed25519 key, or `None` if there is no key file yet.
fn load_key(path: &Path) -> Result<Option<rcgen::KeyPair>> {
    let pem = match fs::read_to_string(path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(path)
            .with_context(|| format!("cannot stat `{}`", path.display()))?
            .permissions()
            .mode();
        ensure!(
            mode & 0o077 == 0,
            "`{}` is readable by other users (mode {:o}); anyone who reads it can mint \
             tokens: `chmod 600` it or delete it to make a new key",
            path.display(),
            mode & 0o777
        );
    }
    let key = rcgen::KeyPair::from_pem(&pem)
        .with_context(|| format!("`{}` holds no usable private key", path.display()))?;
    ensure!(
        key.algorithm() == &rcgen::PKCS_ED25519,
        "`{}` is not an Ed25519 key",
        path.display()
    );
    Ok(Some(key))
}

/// Makes a new key file; if another process made one meanwhile, uses that.
fn create_key(path: &Path) -> Result<rcgen::KeyPair> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .context("cannot generate an Ed25519 key")?;
    match files::write_file(path, key.serialize_pem().as_bytes(), SECRET_MODE, false) {
        Ok(()) => Ok(key),
        Err(err) => match load_key(path) {
            Ok(Some(theirs)) => Ok(theirs),
            _ => Err(err),
        },
    }
}

/// Writes a public file unless it already says exactly `contents`.
fn write_if_changed(path: &Path, contents: &str) -> Result<()> {
    if fs::read_to_string(path).is_ok_and(|existing| existing == contents) {
        return Ok(());
    }
    files::write_file(path, contents.as_bytes(), PUBLIC_MODE, true)
}

#[cfg(test)]
mod tests;
