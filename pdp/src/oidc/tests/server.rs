//! A tiny HTTPS issuer on 127.0.0.1 for discovery and JWKS tests: a dev CA
//! from rcgen, tokio-rustls, and just enough HTTP/1.1 to answer one GET per
//! connection.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the server answers; tests change it between requests.
#[derive(Default)]
pub struct Content {
    pub discovery: String,
    pub jwks: String,
}

pub struct TestIssuer {
    /// `https://127.0.0.1:<port>`, also the issuer name.
    pub issuer: String,
    /// PEM of the dev CA that signed the server certificate.
    pub ca_file: PathBuf,
    pub content: Arc<Mutex<Content>>,
    /// Requests for `/jwks` so far.
    pub jwks_hits: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
    task: JoinHandle<()>,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestIssuer {
    /// Starts the server. Its discovery document points at its own `/jwks`.
    pub async fn start() -> TestIssuer {
        let _ = rustls::crypto::ring::default_provider().install_default();

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "palisade test-only ca");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("test-ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        );
        let content = Arc::new(Mutex::new(Content {
            discovery: json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")}).to_string(),
            jwks: String::new(),
        }));
        let jwks_hits = Arc::new(AtomicUsize::new(0));

        let task = tokio::spawn({
            let content = Arc::clone(&content);
            let jwks_hits = Arc::clone(&jwks_hits);
            async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        return;
                    };
                    let acceptor = acceptor.clone();
                    let content = Arc::clone(&content);
                    let jwks_hits = Arc::clone(&jwks_hits);
                    tokio::spawn(async move {
                        // a client that rejects our certificate ends the handshake here
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let mut request = Vec::new();
                        let mut buf = [0_u8; 1024];
                        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192
                        {
                            match tls.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => request.extend_from_slice(&buf[..n]),
                            }
                        }
                        let request = String::from_utf8_lossy(&request);
                        let path = request.split_whitespace().nth(1).unwrap_or("");
                        let body = {
                            let content = content.lock().unwrap();
                            match path {
                                "/.well-known/openid-configuration" => {
                                    Some(content.discovery.clone())
                                }
                                "/jwks" => {
                                    jwks_hits.fetch_add(1, Ordering::SeqCst);
                                    Some(content.jwks.clone())
                                }
                                _ => None,
                            }
                        };
                        let response = match body {
                            Some(body) => format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            ),
                            None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\
                                     connection: close\r\n\r\n"
                                .to_owned(),
                        };
                        let _ = tls.write_all(response.as_bytes()).await;
                        let _ = tls.shutdown().await;
                    });
                }
            }
        });

        TestIssuer {
            issuer,
            ca_file,
            content,
            jwks_hits,
            _dir: dir,
            task,
        }
    }

    pub fn set_jwks(&self, jwks: String) {
        self.content.lock().unwrap().jwks = jwks;
    }

    pub fn set_discovery(&self, discovery: String) {
        self.content.lock().unwrap().discovery = discovery;
    }

    pub fn jwks_hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}
