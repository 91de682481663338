//! The agent's own TLS certificate for clients.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Largest TLS record the agent sends clients, as rustls's
/// `max_fragment_size` counts it (header and plaintext: the plaintext of a
/// record is at most this minus 5 bytes).
///
/// libpq reads with at least 8 KiB of free buffer, one `SSL_read` per
/// socket wake-up. A full 16 KiB record can leave the end of a result
/// decrypted inside OpenSSL while the socket is empty; a client that then
/// waits on the socket (pgbench does) waits forever. Records that fit in
/// 8 KiB are always read whole. Seen as a 100k-row result through the agent
/// that never completed; pgbouncer writes 4 KiB records.
pub const MAX_RECORD_BYTES: usize = 8192;

/// ring's suites with AES-128-GCM first. Every result row is encrypted here
/// and decrypted by the client; AES-128 takes 10 rounds per block to
/// AES-256's 14, at the 128-bit security TLS 1.3 requires of every
/// implementation (its one mandatory suite, RFC 8446 9.1). Go's TLS stack
/// prefers it the same way on hardware with AES instructions.
fn provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    // Stable: the relative order of the others stays ring's.
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    provider
}

/// ALPN protocol name of PostgreSQL 17's direct TLS.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// A rustls server configuration from PEM files. Clients that negotiate with
/// SSLRequest send no ALPN; PostgreSQL 17 direct-TLS clients send
/// `postgresql`, which the agent accepts.
pub fn server_config(cert: &Path, key: &Path) -> std::io::Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| std::io::Error::other(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    // The agent's order, not the client's: libpq (OpenSSL) asks for
    // AES-256-GCM first.
    config.ignore_client_order = true;
    config.max_fragment_size = Some(MAX_RECORD_BYTES);
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that asks for AES-256-GCM first, as libpq does, handshaking
    /// in memory with the agent's configuration.
    #[test]
    fn clients_get_aes_128_gcm_whatever_they_ask_first() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let server_config = server_config(&cert_path, &key_path).unwrap();

        let client_provider = rustls::crypto::ring::default_provider();
        assert_eq!(
            client_provider.cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
        );
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(client_provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut client =
            rustls::ClientConnection::new(Arc::new(client_config), "localhost".try_into().unwrap())
                .unwrap();
        let mut server = rustls::ServerConnection::new(server_config).unwrap();
        while client.is_handshaking() || server.is_handshaking() {
            let mut wire = Vec::new();
            client.write_tls(&mut wire).unwrap();
            server.read_tls(&mut wire.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            wire.clear();
            server.write_tls(&mut wire).unwrap();
            client.read_tls(&mut wire.as_slice()).unwrap();
            client.process_new_packets().unwrap();
        }
        let negotiated = client.negotiated_cipher_suite().unwrap().suite();
        assert_eq!(negotiated, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    }
}
