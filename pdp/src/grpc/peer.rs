//! Who is calling: the common name of the client certificate that mutual TLS
//! verified.

use tonic::Request;

/// The caller's certificate common name, or "unknown" (mutual TLS guarantees
/// a certificate from the configured CA; the name is for logs and audit).
pub fn agent_name<T>(request: &Request<T>) -> String {
    request
        .peer_certs()
        .and_then(|certs| certs.first().and_then(|c| common_name(c.as_ref())))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}
