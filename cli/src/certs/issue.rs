//! Building certificates with rcgen: the CA and the leaf profiles.
//!
//! Pure in-memory work; [`super::init_dir`] decides where the results go.

use std::net::IpAddr;

use anyhow::{Context, Result, bail, ensure};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

/// URI SAN prefix of agent certificates: the agent `edge-7` carries
/// `spiffe://palisade/agent/edge-7`. The PDP reads the agent's identity from it.
pub const AGENT_URI_PREFIX: &str = "spiffe://palisade/agent/";
/// URI SAN prefix of operator / CLI client certificates: the client `admin`
/// carries `spiffe://palisade/client/admin`, which no agent certificate has.
pub const CLIENT_URI_PREFIX: &str = "spiffe://palisade/client/";

/// Longest validity accepted, in days (about 100 years).
pub(super) const MAX_DAYS: u32 = 36_500;
/// Longest agent or client name, so names fit comfortably in CNs and paths.
const MAX_NAME_LEN: usize = 64;
/// Backdating of `notBefore`, so hosts whose clocks lag a little accept a
/// freshly issued certificate.
const CLOCK_SKEW: time::Duration = time::Duration::minutes(5);

/// The validity window shared by every certificate of one run.
pub(super) struct Validity {
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl Validity {
    pub(super) fn days_from_now(days: u32) -> Result<Self> {
        let now = OffsetDateTime::now_utc();
        let not_after = now
            .checked_add(time::Duration::days(i64::from(days)))
            .context("--days is too large")?;
        let not_before = now.checked_sub(CLOCK_SKEW).context("the clock is broken")?;
        Ok(Self {
            not_before,
            not_after,
        })
    }

    fn apply(&self, params: &mut CertificateParams) {
        params.not_before = self.not_before;
        params.not_after = self.not_after;
    }
}

/// A PEM certificate and its PEM PKCS#8 private key.
pub(super) struct Issued {
    pub(super) cert_pem: String,
    pub(super) key_pem: String,
}

/// The development CA: self-signed, may sign leaves only (pathlen 0).
pub(super) struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub(super) fn new(validity: &Validity) -> Result<Self> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name("Palisade development CA", None);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity.apply(&mut params);
        let key = KeyPair::generate().context("cannot generate the CA key")?;
        let issuer = CertifiedIssuer::self_signed(params, key)
            .context("cannot self-sign the CA certificate")?;
        Ok(Self { issuer })
    }

    pub(super) fn material(&self) -> Issued {
        Issued {
            cert_pem: self.issuer.pem(),
            key_pem: self.issuer.key().serialize_pem(),
        }
    }

    /// Signs a fresh P-256 key for `profile`.
    pub(super) fn issue(&self, profile: &Profile, validity: &Validity) -> Result<Issued> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&profile.common_name, Some(profile.unit));
        params.subject_alt_names = profile.sans.clone();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![profile.usage.clone()];
        params.use_authority_key_identifier_extension = true;
        validity.apply(&mut params);
        let key = KeyPair::generate()
            .with_context(|| format!("cannot generate a key for `{}`", profile.common_name))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("cannot sign the certificate of `{}`", profile.common_name))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What distinguishes one leaf certificate from another.
pub(super) struct Profile {
    common_name: String,
    unit: &'static str,
    sans: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
}

impl Profile {
    pub(super) fn pdp(hosts: &[String]) -> Result<Self> {
        Ok(Self {
            common_name: "palisade-pdp".to_owned(),
            unit: "pdp",
            sans: sans(hosts)?,
            usage: ExtendedKeyUsagePurpose::ServerAuth,
        })
    }

    pub(super) fn agent(name: &str) -> Result<Self> {
        check_name("agent", name)?;
        Ok(Self {
            common_name: name.to_owned(),
            unit: "agent",
            sans: vec![uri(AGENT_URI_PREFIX, name)?],
            usage: ExtendedKeyUsagePurpose::ClientAuth,
        })
    }

    pub(super) fn agent_listener(name: &str, hosts: &[String]) -> Result<Self> {
        check_name("agent", name)?;
        Ok(Self {
            common_name: name.to_owned(),
            unit: "agent-listener",
            sans: sans(hosts)?,
            usage: ExtendedKeyUsagePurpose::ServerAuth,
        })
    }

    pub(super) fn client(name: &str) -> Result<Self> {
        check_name("client", name)?;
        Ok(Self {
            common_name: name.to_owned(),
            unit: "client",
            sans: vec![uri(CLIENT_URI_PREFIX, name)?],
            usage: ExtendedKeyUsagePurpose::ClientAuth,
        })
    }
}

fn name(common_name: &str, unit: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Palisade");
    if let Some(unit) = unit {
        dn.push(DnType::OrganizationalUnitName, unit);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn uri(prefix: &str, name: &str) -> Result<SanType> {
    let uri = format!("{prefix}{name}");
    Ok(SanType::URI(uri.as_str().try_into().with_context(
        || format!("`{uri}` is not a valid URI SAN"),
    )?))
}

fn sans(hosts: &[String]) -> Result<Vec<SanType>> {
    hosts.iter().map(|h| san(h)).collect()
}

/// One host argument as a SAN: an IP literal (optionally in `[...]`) becomes an
/// IP SAN, anything else must be a DNS name (a leading `*.` wildcard allowed).
pub(super) fn san(host: &str) -> Result<SanType> {
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let labels = host.strip_prefix("*.").unwrap_or(host);
    let valid = !labels.is_empty()
        && labels.len() <= 253
        && labels.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    ensure!(valid, "`{host}` is neither an IP address nor a DNS name");
    Ok(SanType::DnsName(host.try_into().with_context(|| {
        format!("`{host}` is not a valid DNS name")
    })?))
}

/// Agent and client names end up in file names, CNs and URIs: keep them to
/// `[A-Za-z0-9._-]`, starting with a letter or digit.
pub(super) fn check_name(kind: &str, name: &str) -> Result<()> {
    let Some(first) = name.bytes().next() else {
        bail!("{kind} name must not be empty");
    };
    ensure!(
        name.len() <= MAX_NAME_LEN,
        "{kind} name `{name}` is longer than {MAX_NAME_LEN} characters"
    );
    ensure!(
        first.is_ascii_alphanumeric()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')),
        "{kind} name `{name}` may contain only letters, digits, `.`, `_` and `-`, \
         and must start with a letter or digit"
    );
    Ok(())
}
