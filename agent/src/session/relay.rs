//! Database → client: relay every message as it comes (notifications and
//! notices too, while the client is idle), mask the result values policy
//! keeps from the principal, swap stand-in errors for their refusals, and
//! track the transaction status.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;

use super::End;
use super::record::{Completions, Outcome, Pending, Recorder};
use super::shared::Shared;
use crate::codec::backend::{
    CommandComplete, CopyResponse, ErrorResponse, ReadyForQuery, RowDescription, Severity,
    TransactionStatus,
};
use crate::codec::{BackendTag, FrameCodec, write};
use crate::masking::catalog::Catalog;
use crate::masking::plan::{self, Provenance};
use crate::masking::{ColumnAction, ColumnPlan, CopyText, Masking, RowMasker};
use crate::net::Stream;

/// What the relay needs to mask results.
pub struct ResultMasking {
    /// The agent's masking machinery.
    pub masking: Arc<Masking>,
    /// The target's catalog (DDL passing through invalidates it).
    pub catalog: Option<Arc<Catalog>>,
}

/// How the rows now arriving are treated.
enum Rows {
    /// No description seen since the last result ended.
    Unplanned,
    /// Nothing to mask.
    Pass,
    /// Rows of a query.
    Mask(RowMasker),
    /// Rows of a `COPY … TO STDOUT` (text or csv); whether a header line
    /// (column names, relayed as they are) is still to come.
    Copy(RowMasker, CopyText, bool),
}

/// Room made for each read from the database. Large results arrive as
/// many small DataRows: reading (and so encrypting and writing towards the
/// client) in large chunks keeps the per-row cost down. The buffer is only
/// resident as far as a read fills it.
const READ_CHUNK: usize = 64 * 1024;

/// Runs until either side closes.
pub async fn run(
    upstream: &mut ReadHalf<Stream>,
    mut buf: BytesMut,
    client: &mut WriteHalf<Stream>,
    shared: Arc<Shared>,
    recorder: Arc<Recorder>,
    mut injected: mpsc::Receiver<Bytes>,
    masking: ResultMasking,
) -> End {
    // DataRows since the last completion (counted here, not under a lock).
    let mut rows: u64 = 0;
    let mut current = Rows::Unplanned;
    // Once any result of the session was masked, rows without a plan are a
    // protocol anomaly, never passed through.
    let mut masking_seen = false;
    // DDL ran inside a transaction block: the catalog sees it at the end.
    let mut ddl_in_transaction = false;
    // The database is trusted to frame its messages; the limit only guards
    // against a corrupted stream.
    let mut codec = FrameCodec::new(1 << 30);
    let mut out = BytesMut::with_capacity(16 * 1024);
    let mut completions = Completions::new(recorder);
    loop {
        loop {
            if matches!(current, Rows::Pass) {
                // Rows that pass as they are: the whole run at once.
                let (len, count) = codec.run_of(&buf, BackendTag::DataRow.as_u8());
                if count > 0 {
                    rows += count;
                    if out.is_empty() {
                        // Nothing waits before the run (a large result
                        // read in chunks): sent from the read buffer as
                        // it is, not copied into `out` first.
                        if send_then_record(client, &buf[..len], &mut completions)
                            .await
                            .is_err()
                        {
                            return End::ClientGone;
                        }
                    } else {
                        out.extend_from_slice(&buf[..len]);
                    }
                    buf.advance(len);
                }
            }
            let frame = match codec.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return End::UpstreamProtocol(e.to_string()),
            };
            match BackendTag::from_u8(frame.tag()) {
                Some(BackendTag::DataRow) => {
                    rows += 1;
                    match &current {
                        Rows::Mask(m) => {
                            if let Err(e) = m.data_row(frame.body(), &mut out) {
                                return End::UpstreamProtocol(format!("cannot mask a row: {e}"));
                            }
                            continue;
                        }
                        Rows::Unplanned
                            if masking_seen
                                && shared.with_front(|p| p.masking.is_some()) != Some(false) =>
                        {
                            return End::UpstreamProtocol(
                                "result rows arrived without a description to mask them by"
                                    .to_owned(),
                            );
                        }
                        _ => {}
                    }
                }
                Some(BackendTag::CopyData) => {
                    if let Rows::Copy(_, _, header) = &mut current
                        && *header
                    {
                        *header = false;
                    } else if let Rows::Copy(m, text, _) = &current {
                        if let Err(e) = m.copy_row(frame.body(), text, &mut out) {
                            return End::UpstreamProtocol(format!("cannot mask a copy row: {e}"));
                        }
                        continue;
                    }
                }
                Some(BackendTag::RowDescription) => {
                    let injected = shared.described() == Some(true);
                    let Ok(d) = RowDescription::from_body(frame.body()) else {
                        return End::UpstreamProtocol("a malformed RowDescription".to_owned());
                    };
                    let planned = shared.with_front(|p| {
                        p.columns = d.fields.iter().map(|f| f.name.to_owned()).collect();
                        let snapshot = p.masking.clone()?;
                        let plan = plan::for_rows(&d.fields, &snapshot, provenance(p));
                        p.masked = masked_names(&plan, d.fields.iter().map(|f| f.name));
                        Some(plan)
                    });
                    current = rows_for(planned.flatten(), &masking, &mut masking_seen, None);
                    if injected {
                        // The agent asked; the client did not.
                        continue;
                    }
                }
                Some(BackendTag::NoData) if shared.described() == Some(true) => continue,
                Some(BackendTag::CopyOutResponse) => {
                    let Ok(c) = CopyResponse::from_body(frame.body()) else {
                        return End::UpstreamProtocol("a malformed CopyOutResponse".to_owned());
                    };
                    let count = c.column_formats.len();
                    let planned = shared.with_front(|p| {
                        let snapshot = p.masking.clone()?;
                        let plan = plan::for_copy(count, &snapshot, provenance(p));
                        p.masked = masked_names(&plan, p.columns.iter().map(String::as_str));
                        let copy = p.statement.copy.as_ref();
                        let text = copy.map(copy_text).unwrap_or_default();
                        let header = copy.is_some_and(|c| c.header);
                        Some((plan, (text, header)))
                    });
                    let (plan, text) = planned.flatten().unzip();
                    current = rows_for(plan, &masking, &mut masking_seen, text);
                    if c.format != 0 && !matches!(current, Rows::Pass | Rows::Unplanned) {
                        // Refused before it ran (see `Forward::masking`);
                        // this is the last line of defence.
                        return End::UpstreamProtocol(
                            "binary COPY rows cannot be masked".to_owned(),
                        );
                    }
                }
                Some(BackendTag::CopyDone) => current = Rows::Unplanned,
                Some(BackendTag::CopyInResponse) => shared.copy_in_started(),
                Some(BackendTag::CommandComplete) => {
                    current = Rows::Unplanned;
                    if let Ok(c) = CommandComplete::from_body(frame.body()) {
                        let outcome = Outcome {
                            tag: c.tag.to_owned(),
                            rows: c.rows().unwrap_or(rows),
                            ..Outcome::default()
                        };
                        if shared.finished(outcome, &mut completions)
                            && let Some(catalog) = &masking.catalog
                        {
                            // Views may have appeared or changed; in a
                            // transaction block, other connections see them
                            // only once it ends.
                            catalog.invalidate();
                            ddl_in_transaction = true;
                        }
                    }
                    rows = 0;
                }
                Some(BackendTag::EmptyQueryResponse) | Some(BackendTag::PortalSuspended) => {
                    current = Rows::Unplanned;
                    let tag = if frame.tag() == b's' { "suspended" } else { "" };
                    shared.finished(
                        Outcome {
                            tag: tag.to_owned(),
                            rows,
                            ..Outcome::default()
                        },
                        &mut completions,
                    );
                    rows = 0;
                }
                Some(BackendTag::ErrorResponse) => {
                    current = Rows::Unplanned;
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
                            &mut completions,
                        );
                        rows = 0;
                    }
                }
                Some(BackendTag::ReadyForQuery) => {
                    current = Rows::Unplanned;
                    if let Ok(r) = ReadyForQuery::from_body(frame.body()) {
                        shared.ready(&mut completions);
                        if ddl_in_transaction && r.status == TransactionStatus::Idle {
                            ddl_in_transaction = false;
                            if let Some(catalog) = &masking.catalog {
                                catalog.invalidate();
                            }
                        }
                    }
                    rows = 0;
                }
                _ => {}
            }
            out.extend_from_slice(frame.raw());
        }
        if !out.is_empty() {
            if send_then_record(client, &out, &mut completions)
                .await
                .is_err()
            {
                return End::ClientGone;
            }
            out.clear();
        }
        completions.record();
        buf.reserve(READ_CHUNK);
        tokio::select! {
            read = upstream.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => return End::UpstreamGone,
                Ok(_) => {}
            },
            message = injected.recv() => match message {
                Some(bytes) => {
                    if send(client, &bytes).await.is_err() {
                        return End::ClientGone;
                    }
                }
                None => return End::ClientGone,
            },
        }
    }
}

/// Writes `bytes` (see [`send`]) and then records `completions`; first, if
/// the write has to wait (a client not reading), so that no client can hold
/// back the record of what already ran.
async fn send_then_record(
    client: &mut WriteHalf<Stream>,
    bytes: &[u8],
    completions: &mut Completions,
) -> std::io::Result<()> {
    let mut sending = std::pin::pin!(send(client, bytes));
    let sent = match futures::poll!(sending.as_mut()) {
        std::task::Poll::Ready(sent) => sent,
        std::task::Poll::Pending => {
            completions.record();
            sending.await
        }
    };
    completions.record();
    sent
}

/// Writes `bytes` and flushes them onto the socket. Flushed too: TLS
/// accepts what it cannot send yet into its own buffer, where the end of a
/// large result would otherwise wait for a write that never comes.
async fn send(client: &mut WriteHalf<Stream>, bytes: &[u8]) -> std::io::Result<()> {
    client.write_all(bytes).await?;
    client.flush().await
}

fn provenance(p: &Pending) -> Provenance<'_> {
    Provenance {
        lineage: p.statement.lineage.as_deref(),
        kind: p.statement.attributes.kind,
        functions: &p.statement.attributes.functions,
    }
}

/// The treatment of the rows a plan describes.
fn rows_for(
    plan: Option<Vec<ColumnPlan>>,
    masking: &ResultMasking,
    seen: &mut bool,
    copy: Option<(CopyText, bool)>,
) -> Rows {
    let Some(plan) = plan else {
        return Rows::Pass;
    };
    *seen = true;
    let masker = masking.masking.row_masker(plan);
    if masker.is_noop() {
        return Rows::Pass;
    }
    match copy {
        Some((text, header)) => Rows::Copy(masker, text, header),
        None => Rows::Mask(masker),
    }
}

/// The names of the columns a plan masks, for the audit event.
fn masked_names<'a>(plan: &[ColumnPlan], names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut names = names;
    plan.iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let name = names.next();
            matches!(c.action, ColumnAction::Mask(_))
                .then(|| name.map_or_else(|| format!("#{}", i + 1), str::to_owned))
        })
        .collect()
}

/// How a COPY's rows are written, from its statement.
fn copy_text(copy: &palisade_sql::CopyInfo) -> CopyText {
    let mut text = if copy.format == palisade_sql::CopyFormat::Csv {
        CopyText::csv()
    } else {
        CopyText::text()
    };
    if let Some(d) = copy.delimiter.and_then(ascii) {
        text.delimiter = d;
    }
    if let Some(q) = copy.quote.and_then(ascii) {
        text.quote = q;
    }
    if let Some(e) = copy.escape.and_then(ascii) {
        text.escape = e;
    }
    if let Some(n) = &copy.null {
        text.null = n.as_bytes().to_vec();
    }
    text
}

fn ascii(c: char) -> Option<u8> {
    u8::try_from(c).ok().filter(u8::is_ascii)
}
