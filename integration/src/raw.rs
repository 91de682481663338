//! A client that speaks the protocol byte by byte, for what drivers never
//! send: hand-made pipelines, malformed messages, the fastpath, direct TLS.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::BytesMut;
use palisade_agent::codec::{Frame, FrameCodec, write};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

/// Any byte stream (TLS or not).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A raw protocol client.
pub struct RawClient {
    io: Box<dyn Io>,
    buf: BytesMut,
    codec: FrameCodec,
}

fn tls_config(ca: &Path, alpn: Option<&[u8]>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    crate::stack::install_crypto();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if let Some(alpn) = alpn {
        config.alpn_protocols = vec![alpn.to_vec()];
    }
    Ok(Arc::new(config))
}

impl RawClient {
    /// Wraps any stream.
    pub fn new(io: Box<dyn Io>) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            codec: FrameCodec::new(1 << 30),
        }
    }

    /// TCP only, nothing sent.
    pub async fn tcp(addr: std::net::SocketAddr) -> anyhow::Result<TcpStream> {
        Ok(TcpStream::connect(addr).await?)
    }

    /// SSLRequest, then TLS verified against `ca`.
    pub async fn tls(addr: std::net::SocketAddr, ca: &Path) -> anyhow::Result<Self> {
        let mut tcp = TcpStream::connect(addr).await?;
        let mut out = BytesMut::new();
        write::ssl_request(&mut out);
        tcp.write_all(&out).await?;
        if tcp.read_u8().await? != b'S' {
            bail!("the agent declined TLS");
        }
        let connector = tokio_rustls::TlsConnector::from(tls_config(ca, None)?);
        let tls = connector
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        Ok(Self::new(Box::new(tls)))
    }

    /// PostgreSQL 17 direct TLS: the TLS handshake first, ALPN `postgresql`.
    pub async fn direct_tls(addr: std::net::SocketAddr, ca: &Path) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        let connector = tokio_rustls::TlsConnector::from(tls_config(ca, Some(b"postgresql"))?);
        let tls = connector
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        Ok(Self::new(Box::new(tls)))
    }

    /// Sends a startup message with `params` (protocol 3.`minor`) and the
    /// token as password; returns every message up to the first
    /// ReadyForQuery (or the error that ended startup).
    pub async fn startup(
        &mut self,
        minor: u16,
        params: &[(&str, &str)],
        token: &str,
    ) -> anyhow::Result<Vec<Frame>> {
        let mut out = BytesMut::new();
        write::startup_message_with_minor(&mut out, minor, params)?;
        self.send(&out).await?;
        let mut seen = Vec::new();
        loop {
            let f = self.recv().await?;
            match f.tag() {
                b'R' if f.body().get(..4) == Some(&3i32.to_be_bytes()) => {
                    let mut out = BytesMut::new();
                    write::password_message(&mut out, token.as_bytes())?;
                    self.send(&out).await?;
                }
                b'Z' | b'E' => {
                    seen.push(f);
                    return Ok(seen);
                }
                _ => seen.push(f),
            }
        }
    }

    /// Writes bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// The next message, within 10 s.
    pub async fn recv(&mut self) -> anyhow::Result<Frame> {
        self.recv_within(Duration::from_secs(10))
            .await?
            .context("no message within 10 s")
    }

    /// The next message, or `None` when none comes within `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> anyhow::Result<Option<Frame>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(f) = self.codec.decode(&mut self.buf)? {
                return Ok(Some(f));
            }
            match tokio::time::timeout_at(deadline, self.io.read_buf(&mut self.buf)).await {
                Err(_) => return Ok(None),
                Ok(Ok(0)) => bail!("connection closed"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Messages up to and including the next ReadyForQuery.
    pub async fn until_ready(&mut self) -> anyhow::Result<Vec<Frame>> {
        let mut out = Vec::new();
        loop {
            let f = self.recv().await?;
            let done = f.tag() == b'Z';
            out.push(f);
            if done {
                return Ok(out);
            }
        }
    }

    /// Whether the peer closed the connection (reads until EOF, bounded).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.io.read_buf(&mut self.buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// The tags of a run of messages, as text ("1tTZ").
pub fn tags(frames: &[Frame]) -> String {
    frames.iter().map(|f| f.tag() as char).collect()
}

/// The SQLSTATE of an ErrorResponse frame.
pub fn sqlstate(frame: &Frame) -> Option<String> {
    palisade_agent::codec::backend::ErrorResponse::from_body(frame.body())
        .ok()
        .and_then(|e| e.code().map(str::to_owned))
}
