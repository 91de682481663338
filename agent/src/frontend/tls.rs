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
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    config.max_fragment_size = Some(MAX_RECORD_BYTES);
    Ok(Arc::new(config))
}
