//! From accept to a token: everything before the agent asks the PDP.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use crate::codec::backend::Severity;
use crate::codec::{FrameCodec, FrontendTag, PasswordMessage, StartupCodec, StartupPacket, write};
use crate::error::AgentError;
use crate::net::Stream;

/// A client that completed startup and sent its token.
pub struct Hello {
    /// The client socket.
    pub stream: Stream,
    /// Bytes read past the password message (a pipelining client).
    pub read_buf: BytesMut,
    /// Startup parameters, in order.
    pub parameters: Vec<(String, String)>,
    /// The requested protocol minor version.
    pub protocol_minor: u16,
    /// The OIDC token from the password message.
    pub token: String,
}

impl Hello {
    /// A startup parameter.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a new connection turned out to be.
pub enum Knock {
    /// A session wants to start.
    Session(Hello),
    /// A request to cancel the query of another session.
    Cancel {
        /// Process id the agent gave that session.
        process_id: i32,
        /// Its secret.
        secret: Vec<u8>,
    },
}

/// Runs the client side of startup. Errors that the client should see are
/// returned as [`AgentError`]s for the caller to send as a FATAL response.
pub async fn accept(
    tcp: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    insecure_allow_plaintext: bool,
    max_message: usize,
) -> Result<Knock, (Option<Stream>, AgentError)> {
    let _ = tcp.set_nodelay(true);
    // PostgreSQL 17 direct TLS: the first byte is a TLS handshake record.
    let mut first = [0u8; 1];
    let direct_tls = matches!(tcp.peek(&mut first).await, Ok(1) if first[0] == 0x16);
    let mut stream = if direct_tls {
        let Some(config) = tls.clone() else {
            return Err((None, AgentError::TlsUnavailable));
        };
        match tokio_rustls::TlsAcceptor::from(config).accept(tcp).await {
            Ok(s) => Stream::ServerTls(Box::new(s)),
            Err(e) => return Err((None, AgentError::Io(e))),
        }
    } else {
        Stream::Plain(tcp)
    };
    let mut buf = BytesMut::with_capacity(1024);
    let startup = loop {
        let packet = match read_startup(&mut stream, &mut buf).await {
            Ok(p) => p,
            Err(e) => return Err((Some(stream), e)),
        };
        match packet {
            StartupPacket::SslRequest => {
                let Stream::Plain(tcp) = stream else {
                    return Err((
                        Some(stream),
                        AgentError::Protocol("SSLRequest inside TLS".into()),
                    ));
                };
                let mut tcp = tcp;
                match &tls {
                    Some(config) => {
                        if let Err(e) = tcp.write_all(b"S").await {
                            return Err((None, AgentError::Io(e)));
                        }
                        match tokio_rustls::TlsAcceptor::from(config.clone())
                            .accept(tcp)
                            .await
                        {
                            Ok(s) => stream = Stream::ServerTls(Box::new(s)),
                            Err(e) => return Err((None, AgentError::Io(e))),
                        }
                    }
                    None => {
                        if let Err(e) = tcp.write_all(b"N").await {
                            return Err((None, AgentError::Io(e)));
                        }
                        stream = Stream::Plain(tcp);
                    }
                }
            }
            // GSSAPI encryption is not offered: the client falls back.
            StartupPacket::GssEncRequest => {
                if let Err(e) = stream.write_all(b"N").await {
                    return Err((None, AgentError::Io(e)));
                }
            }
            StartupPacket::CancelRequest {
                process_id,
                secret_key,
            } => {
                return Ok(Knock::Cancel {
                    process_id,
                    secret: secret_key,
                });
            }
            StartupPacket::Startup {
                version_minor,
                parameters,
                ..
            } => break (version_minor, parameters),
        }
    };
    let (protocol_minor, parameters) = startup;
    if !stream.is_tls() && !insecure_allow_plaintext {
        return Err((Some(stream), AgentError::PlaintextToken));
    }
    if let Some((_, v)) = parameters.iter().find(|(k, _)| k == "replication")
        && !matches!(v.as_str(), "false" | "off" | "no" | "0")
    {
        return Err((
            Some(stream),
            AgentError::Unsupported(
                "the replication protocol bypasses SQL and is not available".into(),
            ),
        ));
    }

    let mut out = BytesMut::new();
    // The agent speaks protocol 3.0 towards the database: tell newer clients,
    // and name every protocol option it does not honour.
    let options: Vec<&str> = parameters
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("_pq_."))
        .collect();
    if (protocol_minor > 0 || !options.is_empty())
        && let Err(e) = write::negotiate_protocol_version(&mut out, 0, &options)
    {
        return Err((Some(stream), AgentError::Codec(e)));
    }
    write::authentication_cleartext_password(&mut out);
    if let Err(e) = write_flushed(&mut stream, &out).await {
        return Err((None, AgentError::Io(e)));
    }
    let mut codec = FrameCodec::new(max_message.min(64 * 1024));
    let frame = loop {
        match codec.decode(&mut buf) {
            Ok(Some(f)) => break f,
            Ok(None) => {}
            Err(e) => return Err((Some(stream), AgentError::Codec(e))),
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) => return Err((None, AgentError::ClientGone)),
            Ok(_) => {}
            Err(e) => return Err((None, AgentError::Io(e))),
        }
    };
    if FrontendTag::from_u8(frame.tag()) != Some(FrontendTag::Password) {
        return Err((
            Some(stream),
            AgentError::Protocol("expected a password message".into()),
        ));
    }
    let token = match PasswordMessage::from_body(frame.body()).and_then(|p| p.cleartext_password())
    {
        Ok(bytes) => String::from_utf8_lossy(bytes).trim().to_owned(),
        Err(e) => return Err((Some(stream), AgentError::Codec(e))),
    };
    if token.is_empty() {
        return Err((Some(stream), AgentError::NoToken));
    }
    Ok(Knock::Session(Hello {
        stream,
        read_buf: buf,
        parameters,
        protocol_minor,
        token,
    }))
}

async fn read_startup(
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<StartupPacket, AgentError> {
    let mut codec = StartupCodec;
    loop {
        if let Some(packet) = codec.decode(buf).map_err(AgentError::Codec)? {
            return Ok(packet);
        }
        let n = stream.read_buf(buf).await.map_err(AgentError::Io)?;
        if n == 0 {
            return Err(AgentError::ClientGone);
        }
    }
}

/// Writes a FATAL ErrorResponse for `error` and closes the stream.
pub async fn refuse(stream: &mut Stream, error: &AgentError) {
    let mut out = BytesMut::new();
    let (code, message) = (error.sqlstate(), error.client_message());
    if write::error_response(
        &mut out,
        Severity::Fatal,
        code,
        &message,
        None,
        error.hint(),
    )
    .is_ok()
    {
        let _ = stream.write_all(&out).await;
    }
    let _ = stream.shutdown().await;
}

/// Writes `bytes` and flushes them onto the socket (TLS buffers what the
/// socket cannot take yet).
async fn write_flushed(stream: &mut Stream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}
