//! A loopback TCP relay that keeps a copy of every byte the server side
//! sends, so a test can show what a client received on the wire (used with
//! a plaintext agent listener, where those bytes are the protocol itself).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Relays connections to `upstream`, recording the bytes sent back.
pub struct Tap {
    /// Where clients connect.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Tap {
    /// Starts relaying to `upstream` on a free loopback port.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, sink).await;
                    }
                });
            }
        });
        Ok(Self {
            addr,
            received,
            task,
        })
    }

    /// Everything the server side sent so far, over all connections.
    pub fn received(&self) -> Vec<u8> {
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether `needle` appears anywhere in what the server side sent.
    pub fn saw(&self, needle: &str) -> bool {
        let hay = self.received();
        hay.windows(needle.len()).any(|w| w == needle.as_bytes())
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, server: TcpStream, sink: Arc<Mutex<Vec<u8>>>) {
    let (mut client_rd, mut client_wr) = client.into_split();
    let (mut server_rd, mut server_wr) = server.into_split();
    let up = async move {
        let _ = tokio::io::copy(&mut client_rd, &mut server_wr).await;
        let _ = server_wr.shutdown().await;
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match server_rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let Some(chunk) = buf.get(..n) else { break };
                    sink.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .extend_from_slice(chunk);
                    if client_wr.write_all(chunk).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = client_wr.shutdown().await;
    };
    tokio::join!(up, down);
}
