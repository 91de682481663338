//! Test support for held statements: a client that collects the notices
//! the agent sends, the `palisade approvals` command, and a local webhook
//! receiver.

use std::path::Path;

use anyhow::Context;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tokio_postgres::error::DbError;

use crate::stack::{Fixture, bin_dir};

/// A tokio-postgres client over TLS whose notices (NoticeResponse) arrive on
/// the returned channel.
pub async fn connect_with_notices(
    conninfo: &str,
    ca: &Path,
) -> anyhow::Result<(tokio_postgres::Client, mpsc::UnboundedReceiver<DbError>)> {
    let tls = crate::clients::tls_connector(ca)?;
    let (client, mut connection) = tokio_postgres::connect(conninfo, tls).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notice(n)) => {
                    let _ = tx.send(n);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    Ok((client, rx))
}

/// Waits for the notice of a held statement and returns it with the
/// approval id it names.
pub async fn held_notice(
    notices: &mut mpsc::UnboundedReceiver<DbError>,
) -> anyhow::Result<(String, DbError)> {
    loop {
        let notice = tokio::time::timeout(std::time::Duration::from_secs(20), notices.recv())
            .await
            .context("no notice within 20 s")?
            .context("the connection ended")?;
        if let Some(id) = approval_id_in(notice.message()) {
            return Ok((id, notice));
        }
    }
}

/// The approval id a held-statement notice names (`... held for review:
/// approval ID ...`), in whatever text carries the notice.
pub fn approval_id_in(text: &str) -> Option<String> {
    let rest = text.split("held for review: approval ").nth(1)?;
    Some(
        rest.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Runs `palisade ARGS` against the PDP at `pdp_url` with the admin client
/// certificate and `token` as PALISADE_TOKEN; success and everything printed.
pub async fn palisade(
    fixture: &Fixture,
    pdp_url: &str,
    token: &str,
    args: &[&str],
) -> anyhow::Result<(bool, String)> {
    let admin = fixture
        .certs
        .client("admin")
        .context("no admin client certificate")?;
    let out = tokio::process::Command::new(bin_dir()?.join("palisade"))
        .args(args)
        .env("PALISADE_PDP", pdp_url)
        .env("PALISADE_CA", &fixture.certs.ca.cert)
        .env("PALISADE_CERT", &admin.paths.cert)
        .env("PALISADE_KEY", &admin.paths.key)
        .env("PALISADE_TOKEN", token)
        .output()
        .await
        .context("cannot run palisade (run `cargo build --bins` first)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// An HTTP listener on 127.0.0.1 that takes webhook POSTs: each JSON body
/// arrives on `bodies`. The first `fail_first` requests get a 500.
pub struct WebhookSink {
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    /// Bodies received (including those answered with 500).
    pub bodies: mpsc::UnboundedReceiver<serde_json::Value>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WebhookSink {
    /// Starts listening.
    pub async fn start(fail_first: usize) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let (tx, bodies) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut served = 0usize;
            while let Ok((mut socket, _)) = listener.accept().await {
                let Some(body) = read_request(&mut socket).await else {
                    continue;
                };
                served += 1;
                let status = if served <= fail_first {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let _ = tx.send(body);
                let reply =
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = socket.write_all(reply.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        Ok(Self { url, bodies, task })
    }

    /// The next body, within 20 s.
    pub async fn next(&mut self) -> anyhow::Result<serde_json::Value> {
        tokio::time::timeout(std::time::Duration::from_secs(20), self.bodies.recv())
            .await
            .context("no webhook within 20 s")?
            .context("the webhook listener stopped")
    }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<serde_json::Value> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(chunk.get(..n)?);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(buf.get(..header_end)?).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(chunk.get(..n)?);
    }
    serde_json::from_slice(buf.get(header_end..header_end + length)?).ok()
}
