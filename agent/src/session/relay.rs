//! Database → client: relay every message as it comes (notifications and
//! notices too, while the client is idle), swap stand-in errors for their
//! refusals, and track the transaction status.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;

use super::End;
use super::record::{Outcome, Recorder};
use super::shared::Shared;
use crate::codec::backend::{
    CommandComplete, ErrorResponse, ReadyForQuery, RowDescription, Severity,
};
use crate::codec::{BackendTag, FrameCodec, write};
use crate::net::Stream;

/// Runs until either side closes.
pub async fn run(
    upstream: &mut ReadHalf<Stream>,
    mut buf: BytesMut,
    client: &mut WriteHalf<Stream>,
    shared: Arc<Shared>,
    recorder: Arc<Recorder>,
    mut injected: mpsc::Receiver<Bytes>,
) -> End {
    // DataRows since the last completion (counted here, not under a lock).
    let mut rows: u64 = 0;
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
                Some(BackendTag::DataRow) => rows += 1,
                Some(BackendTag::RowDescription) => {
                    if let Ok(d) = RowDescription::from_body(frame.body()) {
                        shared.columns(d.fields.iter().map(|f| f.name.to_owned()).collect());
                    }
                }
                Some(BackendTag::CommandComplete) => {
                    if let Ok(c) = CommandComplete::from_body(frame.body()) {
                        let outcome = Outcome {
                            tag: c.tag.to_owned(),
                            rows: c.rows().unwrap_or(rows),
                            ..Outcome::default()
                        };
                        shared.finished(outcome, &recorder);
                    }
                    rows = 0;
                }
                Some(BackendTag::EmptyQueryResponse) | Some(BackendTag::PortalSuspended) => {
                    let tag = if frame.tag() == b's' { "suspended" } else { "" };
                    shared.finished(
                        Outcome {
                            tag: tag.to_owned(),
                            rows,
                            ..Outcome::default()
                        },
                        &recorder,
                    );
                    rows = 0;
                }
                Some(BackendTag::ErrorResponse) => {
                    let error = ErrorResponse::from_body(frame.body()).ok();
                    let refusal = error
                        .as_ref()
                        .and_then(|e| shared.take_refusal(e.code(), e.message()));
                    if let Some(r) = refusal {
                        if write::error_response(
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
                    } else if let Some(e) = &error {
                        shared.finished(
                            Outcome {
                                rows,
                                error: e.message().map(str::to_owned),
                                sqlstate: e.code().map(str::to_owned),
                                ..Outcome::default()
                            },
                            &recorder,
                        );
                        rows = 0;
                    }
                }
                Some(BackendTag::ReadyForQuery) => {
                    if ReadyForQuery::from_body(frame.body()).is_ok() {
                        shared.ready(&recorder);
                    }
                    rows = 0;
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
