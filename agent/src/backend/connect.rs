//! Connecting to the database as the target's credential: TLS when the target
//! asks for it, SCRAM-SHA-256 (or what the server requests), then the
//! parameters and key data the client will be given.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use crate::codec::backend::{Authentication, BackendKeyData, ParameterStatus};
use crate::codec::{BackendTag, CodecError, Frame, FrameCodec, write};
use crate::config::{TargetConfig, UpstreamTls};
use crate::net::Stream;

/// Why the upstream connection could not be made. Messages are for the
/// client and the logs; none carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// TCP or TLS failed.
    #[error("cannot reach the database at {addr}: {source}")]
    Unreachable {
        /// host:port.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The connection took longer than allowed.
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
    /// The server refused TLS that the target requires.
    #[error("the database refused TLS, which the target requires")]
    TlsRefused,
    /// The server sent an ErrorResponse during startup.
    #[error("the database refused the connection: {message}")]
    Refused {
        /// SQLSTATE.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The server asked for an authentication method the agent does not do.
    #[error("the database asked for an unsupported authentication method ({0})")]
    UnsupportedAuth(String),
    /// SCRAM failed (e.g. the server's proof did not verify).
    #[error("scram authentication with the database failed: {0}")]
    Scram(std::io::Error),
    /// The credential could not be read.
    #[error("the target's credential is unavailable: {0}")]
    Credential(std::io::Error),
    /// The server broke the protocol.
    #[error("the database sent an invalid message: {0}")]
    Protocol(#[from] CodecError),
    /// The connection closed during startup.
    #[error("the database closed the connection during startup")]
    Closed,
}

/// The key a client needs to cancel a query on this backend.
#[derive(Clone, PartialEq, Eq)]
pub struct BackendKey {
    /// Backend process id.
    pub process_id: i32,
    /// Secret key (4 bytes in protocol 3.0).
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for BackendKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendKey")
            .field("process_id", &self.process_id)
            .finish_non_exhaustive()
    }
}

/// What to connect as.
pub struct UpstreamParams<'a> {
    /// The target's configuration.
    pub target: &'a TargetConfig,
    /// The target's name (the default database name).
    pub target_name: &'a str,
    /// Login role.
    pub user: &'a str,
    /// Its password (held only by the agent).
    pub password: &'a str,
    /// Startup parameters to pass on (application_name, client_encoding, ...).
    pub parameters: &'a [(String, String)],
    /// TLS client configuration for targets that require TLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Bound on the whole connection setup.
    pub timeout: Duration,
}

/// An authenticated upstream connection, ready for queries.
pub struct Upstream {
    /// The socket.
    pub stream: Stream,
    /// Bytes read past the first ReadyForQuery (normally none).
    pub read_buf: BytesMut,
    /// ParameterStatus values the server reported, in order.
    pub parameters: Vec<(String, String)>,
    /// The server's cancel key.
    pub key: Option<BackendKey>,
    /// host:port, for cancel requests.
    pub addr: String,
}

/// Opens and authenticates an upstream connection.
pub async fn connect(params: UpstreamParams<'_>) -> Result<Upstream, BackendError> {
    let timeout = params.timeout;
    tokio::time::timeout(timeout, connect_inner(params))
        .await
        .map_err(|_| BackendError::Timeout(timeout))?
}

async fn open_socket(
    target: &TargetConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<(Stream, String), BackendError> {
    let addr = format!("{}:{}", target.host, target.port);
    let unreachable = |source| BackendError::Unreachable {
        addr: addr.clone(),
        source,
    };
    let mut tcp = TcpStream::connect(&addr).await.map_err(unreachable)?;
    tcp.set_nodelay(true).map_err(unreachable)?;
    match target.tls {
        UpstreamTls::Disable => Ok((Stream::Plain(tcp), addr)),
        UpstreamTls::Require => {
            let config = tls.ok_or_else(|| {
                unreachable(std::io::Error::other("no TLS configuration for the target"))
            })?;
            let mut buf = BytesMut::new();
            write::ssl_request(&mut buf);
            tcp.write_all(&buf).await.map_err(unreachable)?;
            let answer = tcp.read_u8().await.map_err(unreachable)?;
            if answer != b'S' {
                return Err(BackendError::TlsRefused);
            }
            let name = target
                .tls_server_name
                .clone()
                .unwrap_or_else(|| target.host.clone());
            let server_name = ServerName::try_from(name)
                .map_err(|e| unreachable(std::io::Error::other(e.to_string())))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(server_name, tcp)
                .await
                .map_err(unreachable)?;
            Ok((Stream::ClientTls(Box::new(tls)), addr))
        }
    }
}

async fn connect_inner(p: UpstreamParams<'_>) -> Result<Upstream, BackendError> {
    let (mut stream, addr) = open_socket(p.target, p.tls.clone()).await?;
    let mut out = BytesMut::new();
    let mut startup: Vec<(&str, &str)> = vec![
        ("user", p.user),
        ("database", p.target.database(p.target_name)),
    ];
    startup.extend(p.parameters.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    write::startup_message(&mut out, &startup)?;
    stream.write_all(&out).await.map_err(io(&addr))?;
    stream.flush().await.map_err(io(&addr))?;
    out.clear();

    let mut conn = FrameReader::new(stream);
    let mut scram: Option<ScramSha256> = None;
    let mut parameters = Vec::new();
    let mut key = None;
    loop {
        let frame = conn.next().await.map_err(|e| match e {
            ReadError::Io(source) => BackendError::Unreachable {
                addr: addr.clone(),
                source,
            },
            ReadError::Codec(c) => BackendError::Protocol(c),
            ReadError::Closed => BackendError::Closed,
        })?;
        match BackendTag::from_u8(frame.tag()) {
            Some(BackendTag::Authentication) => {
                match Authentication::from_body(frame.body())? {
                    Authentication::Ok => {}
                    Authentication::CleartextPassword => {
                        write::password_message(&mut out, p.password.as_bytes())?;
                    }
                    Authentication::Md5Password { salt } => {
                        let hash = postgres_protocol::authentication::md5_hash(
                            p.user.as_bytes(),
                            p.password.as_bytes(),
                            salt,
                        );
                        write::password_message(&mut out, hash.as_bytes())?;
                    }
                    Authentication::Sasl { mechanisms } => {
                        if !mechanisms.contains(&SCRAM_SHA_256) {
                            return Err(BackendError::UnsupportedAuth(mechanisms.join(", ")));
                        }
                        let s =
                            ScramSha256::new(p.password.as_bytes(), ChannelBinding::unsupported());
                        write::sasl_initial_response(&mut out, SCRAM_SHA_256, s.message())?;
                        scram = Some(s);
                    }
                    Authentication::SaslContinue { data } => {
                        let mut s = scram.take().ok_or_else(|| {
                            BackendError::UnsupportedAuth("SASL continue without start".into())
                        })?;
                        // PBKDF2 (4,096 rounds or more, about a millisecond):
                        // off the session thread, which other sessions share.
                        let data = data.to_vec();
                        let s = crate::threads::offload(move || s.update(&data).map(|()| s))
                            .await
                            .map_err(|e| BackendError::Scram(std::io::Error::other(e)))?
                            .map_err(BackendError::Scram)?;
                        write::sasl_response(&mut out, s.message())?;
                        scram = Some(s);
                    }
                    Authentication::SaslFinal { data } => {
                        let mut s = scram.take().ok_or_else(|| {
                            BackendError::UnsupportedAuth("SASL final without start".into())
                        })?;
                        s.finish(data).map_err(BackendError::Scram)?;
                    }
                    Authentication::Other { code, .. } => {
                        return Err(BackendError::UnsupportedAuth(format!("code {code}")));
                    }
                }
                if !out.is_empty() {
                    conn.stream.write_all(&out).await.map_err(io(&addr))?;
                    conn.stream.flush().await.map_err(io(&addr))?;
                    out.clear();
                }
            }
            Some(BackendTag::ParameterStatus) => {
                let ps = ParameterStatus::from_body(frame.body())?;
                parameters.push((ps.name.to_owned(), ps.value.to_owned()));
            }
            Some(BackendTag::BackendKeyData) => {
                let k = BackendKeyData::from_body(frame.body())?;
                key = Some(BackendKey {
                    process_id: k.process_id,
                    secret: k.secret_key.to_vec(),
                });
            }
            Some(BackendTag::ErrorResponse) => {
                let e = crate::codec::backend::ErrorResponse::from_body(frame.body())?;
                return Err(BackendError::Refused {
                    code: e.code().unwrap_or("XX000").to_owned(),
                    message: e.message().unwrap_or("no message").to_owned(),
                });
            }
            Some(BackendTag::ReadyForQuery) => {
                return Ok(Upstream {
                    stream: conn.stream,
                    read_buf: conn.buf,
                    parameters,
                    key,
                    addr,
                });
            }
            // Notices and protocol negotiation during startup need no answer.
            _ => {}
        }
    }
}

fn io(addr: &str) -> impl Fn(std::io::Error) -> BackendError + '_ {
    move |source| BackendError::Unreachable {
        addr: addr.to_owned(),
        source,
    }
}

/// Sends a CancelRequest for `key` to the server at `addr` (plain TCP, as
/// PostgreSQL accepts cancels before any TLS negotiation).
pub async fn cancel(addr: &str, key: &BackendKey) -> Result<(), BackendError> {
    let mut tcp = TcpStream::connect(addr).await.map_err(io(addr))?;
    let mut buf = BytesMut::new();
    write::cancel_request(&mut buf, key.process_id, &key.secret)?;
    tcp.write_all(&buf).await.map_err(io(addr))?;
    // The server closes the connection without a reply.
    let mut sink = [0u8; 1];
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut sink)).await;
    Ok(())
}

enum ReadError {
    Io(std::io::Error),
    Codec(CodecError),
    Closed,
}

/// Reads whole frames from a stream during startup.
struct FrameReader {
    stream: Stream,
    buf: BytesMut,
    codec: FrameCodec,
}

impl FrameReader {
    fn new(stream: Stream) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(8192),
            codec: FrameCodec::new(16 * 1024 * 1024),
        }
    }

    async fn next(&mut self) -> Result<Frame, ReadError> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf).map_err(ReadError::Codec)? {
                return Ok(frame);
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(ReadError::Io)?;
            if n == 0 {
                return Err(ReadError::Closed);
            }
        }
    }
}
