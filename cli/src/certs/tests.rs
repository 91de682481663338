//! Tests of `palisade certs init`: files and modes, chains and usages checked by
//! rustls' own verifiers (ring provider), extensions read back with x509-parser.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use x509_parser::extensions::GeneralName;

use super::*;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn cert_der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(paths: &CertPaths) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(cert_der(&paths.ca.cert)).unwrap();
    Arc::new(roots)
}

/// Verifies `cert` as a TLS client certificate (clientAuth) under the CA.
fn verify_as_client(paths: &CertPaths, cert: &Path) -> Result<(), rustls::Error> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(paths), provider())
        .build()
        .unwrap();
    verifier
        .verify_client_cert(&cert_der(cert), &[], UnixTime::now())
        .map(|_| ())
}

/// Verifies `cert` as a TLS server certificate (serverAuth) for `host`.
fn verify_as_server(paths: &CertPaths, cert: &Path, host: &str) -> Result<(), rustls::Error> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(paths), provider())
        .build()
        .unwrap();
    verifier
        .verify_server_cert(
            &cert_der(cert),
            &[],
            &ServerName::try_from(host.to_owned()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
}

/// The SANs of a certificate, rendered as `DNS:…`, `IP:…`, `URI:…`.
fn sans(path: &Path) -> Vec<String> {
    let der = cert_der(path);
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let Some(ext) = cert.subject_alternative_name().unwrap() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(d) => format!("DNS:{d}"),
            GeneralName::URI(u) => format!("URI:{u}"),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => format!(
                    "IP:{}",
                    std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*bytes).unwrap())
                ),
                16 => format!(
                    "IP:{}",
                    std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*bytes).unwrap())
                ),
                _ => panic!("bad IP SAN"),
            },
            other => format!("{other:?}"),
        })
        .collect()
}

fn common_name(path: &Path) -> String {
    let der = cert_der(path);
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    cert.subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

fn agent_paths<'a>(paths: &'a CertPaths, name: &str) -> &'a AgentCertPaths {
    paths.agent(name).unwrap()
}

fn client_paths<'a>(paths: &'a CertPaths, name: &str) -> &'a ClientCertPaths {
    paths.client(name).unwrap()
}

fn all_files(paths: &CertPaths) -> Vec<(&Path, u32)> {
    paths
        .pairs()
        .into_iter()
        .flat_map(|(p, _)| [(p.cert.as_path(), 0o644), (p.key.as_path(), 0o600)])
        .collect()
}

#[test]
fn default_layout_names_and_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let paths = init_dir(&dir, &CertOptions::default()).unwrap();

    assert_eq!(mode(&dir), 0o700);
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(
        names,
        [
            "agent-agent-1-server.key",
            "agent-agent-1-server.pem",
            "agent-agent-1.key",
            "agent-agent-1.pem",
            "ca.key",
            "ca.pem",
            "client-admin.key",
            "client-admin.pem",
            "pdp.key",
            "pdp.pem",
        ]
    );
    for (file, expected) in all_files(&paths) {
        assert_eq!(mode(file), expected, "{}", file.display());
    }
    assert_eq!(
        agent_paths(&paths, "agent-1").pdp_client.cert,
        dir.join("agent-agent-1.pem")
    );
    assert_eq!(
        client_paths(&paths, "admin").paths.key,
        dir.join("client-admin.key")
    );
    let key = fs::read_to_string(&paths.ca.key).unwrap();
    assert!(
        key.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8 expected"
    );
}

#[test]
fn leaves_chain_to_the_ca_for_their_usage_only() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = init_dir(tmp.path(), &CertOptions::default()).unwrap();
    let agent = agent_paths(&paths, "agent-1");
    let client = client_paths(&paths, "admin");

    // Client certificates: accepted by the PDP's client verifier...
    verify_as_client(&paths, &agent.pdp_client.cert).unwrap();
    verify_as_client(&paths, &client.paths.cert).unwrap();
    // ...and useless as server certificates.
    assert!(verify_as_server(&paths, &agent.pdp_client.cert, "localhost").is_err());
    assert!(verify_as_server(&paths, &client.paths.cert, "localhost").is_err());

    // Server certificates: valid for every requested name...
    for host in ["localhost", "127.0.0.1", "::1"] {
        verify_as_server(&paths, &paths.pdp.cert, host).unwrap();
    }
    for host in ["localhost", "127.0.0.1"] {
        verify_as_server(&paths, &agent.listener.cert, host).unwrap();
    }
    // ...not for others, and not as client certificates.
    assert!(verify_as_server(&paths, &paths.pdp.cert, "pdp.example.com").is_err());
    assert!(verify_as_server(&paths, &agent.listener.cert, "::1").is_err());
    assert!(verify_as_client(&paths, &paths.pdp.cert).is_err());
    assert!(verify_as_client(&paths, &agent.listener.cert).is_err());

    // A leaf of another CA does not chain.
    let other = tempfile::tempdir().unwrap();
    let other = init_dir(other.path(), &CertOptions::default()).unwrap();
    let foreign = &agent_paths(&other, "agent-1").pdp_client.cert;
    assert!(verify_as_client(&paths, foreign).is_err());
}

#[test]
fn keys_match_their_certificates_in_rustls_configs() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = init_dir(tmp.path(), &CertOptions::default()).unwrap();
    let agent = agent_paths(&paths, "agent-1");
    for pair in [&paths.pdp, &agent.listener] {
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert_der(&pair.cert)],
                PrivateKeyDer::from_pem_file(&pair.key).unwrap(),
            )
            .unwrap();
    }
    for pair in [&agent.pdp_client, &client_paths(&paths, "admin").paths] {
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots(&paths))
            .with_client_auth_cert(
                vec![cert_der(&pair.cert)],
                PrivateKeyDer::from_pem_file(&pair.key).unwrap(),
            )
            .unwrap();
    }
    // A mismatched key is refused, so the check above means something.
    let mismatched = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert_der(&paths.pdp.cert)],
            PrivateKeyDer::from_pem_file(&agent.listener.key).unwrap(),
        );
    assert!(mismatched.is_err());
}

#[test]
fn ca_is_constrained_p256() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = init_dir(tmp.path(), &CertOptions::default()).unwrap();
    let der = cert_der(&paths.ca.cert);
    let (_, ca) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();

    let constraints = ca.basic_constraints().unwrap().unwrap().value;
    assert!(constraints.ca);
    assert_eq!(constraints.path_len_constraint, Some(0));
    let usage = ca.key_usage().unwrap().unwrap().value;
    assert!(usage.key_cert_sign());
    assert!(!usage.digital_signature());
    // id-ecPublicKey with the prime256v1 curve.
    let spki = ca.public_key();
    assert_eq!(spki.algorithm.algorithm.to_id_string(), "1.2.840.10045.2.1");
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .unwrap()
        .as_oid()
        .unwrap();
    assert_eq!(curve.to_id_string(), "1.2.840.10045.3.1.7");

    // Leaves say CA:FALSE explicitly and name their usage.
    let der = cert_der(&paths.pdp.cert);
    let (_, pdp) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    assert!(!pdp.basic_constraints().unwrap().unwrap().value.ca);
    let eku = pdp.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    let days =
        (pdp.validity().not_after.timestamp() - pdp.validity().not_before.timestamp()) / 86_400;
    assert_eq!(days, 365);
}

#[test]
fn sans_and_names() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = CertOptions {
        pdp_hosts: vec!["pdp.internal".into(), "10.0.0.5".into(), "[fd00::5]".into()],
        agents: vec!["edge-1".into(), "edge-2".into()],
        clients: vec!["ops".into()],
        agent_listener_hosts: vec!["db.internal".into(), "*.db.internal".into()],
        ..CertOptions::default()
    };
    let paths = init_dir(tmp.path(), &opts).unwrap();

    assert_eq!(
        sans(&paths.pdp.cert),
        ["DNS:pdp.internal", "IP:10.0.0.5", "IP:fd00::5"]
    );
    for name in ["edge-1", "edge-2"] {
        let agent = agent_paths(&paths, name);
        assert_eq!(
            sans(&agent.pdp_client.cert),
            [format!("URI:{AGENT_URI_PREFIX}{name}")]
        );
        assert_eq!(common_name(&agent.pdp_client.cert), name);
        assert_eq!(
            sans(&agent.listener.cert),
            ["DNS:db.internal", "DNS:*.db.internal"]
        );
        verify_as_server(&paths, &agent.listener.cert, "replica.db.internal").unwrap();
    }
    let ops = client_paths(&paths, "ops");
    assert_eq!(
        sans(&ops.paths.cert),
        [format!("URI:{CLIENT_URI_PREFIX}ops")]
    );
    assert_eq!(common_name(&ops.paths.cert), "ops");
    assert!(tmp.path().join("client-ops.key").exists());
    assert!(tmp.path().join("agent-edge-2-server.pem").exists());
}

#[test]
fn refuses_to_overwrite_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = init_dir(tmp.path(), &CertOptions::default()).unwrap();
    let ca_before = fs::read(&paths.ca.cert).unwrap();

    let err = init_dir(tmp.path(), &CertOptions::default()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("ca.pem") && msg.contains("9 more") && msg.contains("--force"),
        "{msg}"
    );
    assert_eq!(fs::read(&paths.ca.cert).unwrap(), ca_before);

    let forced = CertOptions {
        force: true,
        ..CertOptions::default()
    };
    init_dir(tmp.path(), &forced).unwrap();
    assert_ne!(fs::read(&paths.ca.cert).unwrap(), ca_before);
    for (file, expected) in all_files(&paths) {
        assert_eq!(mode(file), expected, "{}", file.display());
    }
    // Atomic replacement leaves no temporary files behind.
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 10);
}

#[test]
fn one_existing_file_blocks_everything() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("client-admin.key"), "mine").unwrap();
    let err = init_dir(tmp.path(), &CertOptions::default()).unwrap_err();
    assert!(format!("{err:#}").contains("client-admin.key"), "{err:#}");
    // Nothing else was written.
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    assert_eq!(
        fs::read_to_string(tmp.path().join("client-admin.key")).unwrap(),
        "mine"
    );
}

#[test]
fn invalid_inputs_are_all_reported_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let opts = CertOptions {
        pdp_hosts: vec!["bad host".into()],
        agents: vec!["../escape".into(), "a".into(), "a".into()],
        clients: vec![String::new()],
        days: 0,
        ..CertOptions::default()
    };
    let msg = format!("{:#}", init_dir(&dir, &opts).unwrap_err());
    for needle in [
        "`bad host`",
        "`../escape`",
        "`a` is listed twice",
        "client name must not be empty",
        "--days",
    ] {
        assert!(msg.contains(needle), "{needle} missing from: {msg}");
    }
    assert!(!dir.exists());
}

#[test]
fn clap_defaults_match_the_documented_defaults() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        init: InitArgs,
    }
    let cli = Cli::try_parse_from(["palisade"]).unwrap();
    assert_eq!(cli.init.options(), CertOptions::default());
    assert_eq!(cli.init.dir, Path::new("./certs"));

    let cli = Cli::try_parse_from([
        "palisade",
        "--agent",
        "a",
        "--agent",
        "b",
        "--pdp-host",
        "pdp",
        "--force",
        "--days",
        "7",
    ])
    .unwrap();
    let opts = cli.init.options();
    assert_eq!(opts.agents, ["a", "b"]);
    assert_eq!(opts.pdp_hosts, ["pdp"]);
    assert!(opts.force);
    assert_eq!(opts.days, 7);
}

#[test]
fn summary_lists_every_file() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = CertOptions::default();
    let paths = init_dir(tmp.path(), &opts).unwrap();
    let text = summary(&paths, &opts);
    for (file, _) in all_files(&paths) {
        assert!(text.contains(&file.display().to_string()), "{text}");
    }
    assert!(text.contains("DEVELOPMENT"));
}
