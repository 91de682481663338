//! Database → client: relay every message as it comes (notifications and
//! notices too, while the client is idle), swap stand-in errors for their
//! refusals, and track the transaction status.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;

use super::End;
use super::shared::Shared;
use crate::codec::backend::{ErrorResponse, ReadyForQuery, Severity};
use crate::codec::{BackendTag, FrameCodec, write};
use crate::net::Stream;

/// Runs until either side closes.
pub async fn run(
    upstream: &mut ReadHalf<Stream>,
    mut buf: BytesMut,
    client: &mut WriteHalf<Stream>,
    shared: Arc<Shared>,
    mut injected: mpsc::Receiver<Bytes>,
) -> End {
    // The database is trusted to frame its messages; the limit only guards
    // against a corrupted stream.
    let mut codec = FrameCodec::new(1 << 30);
    let mut out = BytesMut::with_capacity(16 * 1024);
    loop {
        loop {
            let frame = match codec.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return End::UpstreamProtocol(e.to_string()),
            };
            match BackendTag::from_u8(frame.tag()) {
                Some(BackendTag::ErrorResponse) => {
                    let refusal = ErrorResponse::from_body(frame.body())
                        .ok()
                        .and_then(|e| shared.take_refusal(e.code(), e.message()));
                    if let Some(r) = refusal
                        && write::error_response(
                            &mut out,
                            Severity::Error,
                            r.code,
                            &r.message,
                            r.detail.as_deref(),
                            None,
                        )
                        .is_ok()
                    {
                        continue;
                    }
                }
                Some(BackendTag::ReadyForQuery) => {
                    if let Ok(r) = ReadyForQuery::from_body(frame.body()) {
                        shared.ready(r.status);
                    }
                }
                _ => {}
            }
            out.extend_from_slice(frame.raw());
        }
        if !out.is_empty() {
            if client.write_all(&out).await.is_err() {
                return End::ClientGone;
            }
            out.clear();
        }
        tokio::select! {
            read = upstream.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => return End::UpstreamGone,
                Ok(_) => {}
            },
            message = injected.recv() => match message {
                Some(bytes) => {
                    if client.write_all(&bytes).await.is_err() {
                        return End::ClientGone;
                    }
                }
                None => return End::ClientGone,
            },
        }
    }
}
