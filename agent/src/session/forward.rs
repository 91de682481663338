//! Client → database: every statement is decided before anything of it is
//! sent. Allowed messages are forwarded as they came (batched per read);
//! a refused statement is replaced by the session's stand-in (see
//! [`super::shared`]) and the rest of its pipeline is dropped up to Sync.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use palisade_sql::{CopyDirection, CopyFormat, Statement};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio_util::codec::Decoder;

use super::End;
use super::record::{Pending, Recorder, StatementRef};
use super::shared::{Request, Shared};
use crate::SessionMap as HashMap;
use crate::codec::{Bind, Close, Execute, FrameCodec, FrontendTag, Parse, Query, Target, write};
use crate::enforce::{Enforcer, Note, Refusal, Verdict};
use crate::error::sqlstate;
use crate::masking::catalog::{Catalog, Snapshot};
use crate::net::Stream;

/// A statement prepared through the agent, as decided.
/// Shared between the prepared statement and each portal bound from it.
type Prepared = Arc<(Arc<Vec<Statement>>, Vec<Note>)>;

/// The client-reading direction of a session.
pub struct Forward {
    /// The enforcer of the session.
    pub enforcer: Enforcer,
    /// State shared with the relaying direction.
    pub shared: Arc<Shared>,
    /// Largest message accepted.
    pub max_message: usize,
    /// Idle clients are disconnected after this.
    pub idle_timeout: Duration,
    /// Audit events of the session.
    pub recorder: Arc<Recorder>,
    /// The agent's audit spool (to refuse while it is full).
    pub audit: Option<crate::audit::AuditLog>,
    /// Prepared statements (extended protocol) and how they were decided.
    prepared: HashMap<String, Prepared>,
    /// Bound portals and the statement each runs.
    portals: HashMap<String, Prepared>,
    /// After a refused Parse or Bind: drop messages until Sync, as the
    /// database does after an error.
    skipping: bool,
    /// Holding statements for a reviewer (see [`super::hold`]); without it a
    /// held statement is refused.
    pub hold: Option<super::hold::Hold>,
    /// The target's catalog, for masking results; without it a statement
    /// whose results policy masks is refused.
    pub catalog: Option<Arc<Catalog>>,
    /// Syncs sent since the last Execute: those that follow the Execute of
    /// a COPY FROM STDIN reach a database in copy-in mode.
    copy_syncs: u64,
}

impl Forward {
    /// The direction's state for a new session.
    pub fn new(
        enforcer: Enforcer,
        shared: Arc<Shared>,
        recorder: Arc<Recorder>,
        audit: Option<crate::audit::AuditLog>,
        max_message: usize,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            enforcer,
            shared,
            max_message,
            idle_timeout,
            recorder,
            audit,
            prepared: HashMap::default(),
            portals: HashMap::default(),
            skipping: false,
            hold: None,
            catalog: None,
            copy_syncs: 0,
        }
    }

    /// Runs until the client leaves, breaks the protocol, or a socket fails.
    pub async fn run(
        &mut self,
        client: &mut ReadHalf<Stream>,
        mut buf: BytesMut,
        upstream: &mut WriteHalf<Stream>,
    ) -> End {
        let mut codec = FrameCodec::new(self.max_message);
        let mut out = BytesMut::with_capacity(16 * 1024);
        loop {
            loop {
                let frame = match codec.decode(&mut buf) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => return End::ClientProtocol(e.to_string()),
                };
                let Some(tag) = FrontendTag::from_u8(frame.tag()) else {
                    return End::ClientProtocol(format!(
                        "unknown message type `{}`",
                        frame.tag().escape_ascii()
                    ));
                };
                match tag {
                    FrontendTag::Query => {
                        if self.skipping {
                            continue;
                        }
                        let sql = match Query::from_body(frame.body()) {
                            Ok(q) => q.sql,
                            Err(e) => return End::ClientProtocol(e.to_string()),
                        };
                        if !flush(upstream, &mut out).await {
                            return End::UpstreamGone;
                        }
                        self.shared.sent_sync();
                        self.copy_syncs = 0;
                        if let Some(r) = self.audit_refusal() {
                            self.stand_in_query(&mut out, r);
                            continue;
                        }
                        let verdict = self.enforcer.check(sql).await;
                        // Approvals hook: a held statement waits for a reviewer.
                        let verdict = match &mut self.hold {
                            Some(h) => match h
                                .settle(verdict, sql, None, &self.enforcer, client, &mut buf)
                                .await
                            {
                                Ok(v) => v,
                                Err(end) => return end,
                            },
                            None => verdict,
                        };
                        match verdict {
                            Verdict::Forward(statements, notes) => {
                                let masking = match self.masking(&statements, &notes).await {
                                    Ok(m) => m,
                                    Err(r) => {
                                        self.recorder.refused(&statements, &r, "simple", sql);
                                        self.stand_in_query(&mut out, r);
                                        continue;
                                    }
                                };
                                for (index, (note, masking)) in
                                    notes.into_iter().zip(masking).enumerate()
                                {
                                    let Some(statement) = StatementRef::new(&statements, index)
                                    else {
                                        continue;
                                    };
                                    self.shared.forwarded(
                                        Pending {
                                            statement,
                                            note,
                                            started: Instant::now(),
                                            protocol: "simple",
                                            columns: Vec::new(),
                                            masking,
                                            masked: Vec::new(),
                                        },
                                        Request::Current,
                                    );
                                }
                                out.extend_from_slice(frame.raw());
                            }
                            Verdict::Refuse(r, statements) => {
                                let statements = statements.as_deref().map_or(&[][..], |s| &s[..]);
                                self.recorder.refused(statements, &r, "simple", sql);
                                self.stand_in_query(&mut out, r);
                            }
                        }
                    }
                    FrontendTag::Parse => {
                        if self.skipping {
                            continue;
                        }
                        let parse = match Parse::from_body(frame.body()) {
                            Ok(p) => p,
                            Err(e) => return End::ClientProtocol(e.to_string()),
                        };
                        if !flush(upstream, &mut out).await {
                            return End::UpstreamGone;
                        }
                        if let Some(r) = self.audit_refusal() {
                            self.stand_in_parse(&mut out, r);
                            continue;
                        }
                        let verdict = self.enforcer.check(parse.sql).await;
                        // Approvals hook: a held statement waits for a reviewer.
                        let verdict = match &mut self.hold {
                            Some(h) => {
                                h.forget(parse.name);
                                match h
                                    .settle(
                                        verdict,
                                        parse.sql,
                                        Some(parse.name),
                                        &self.enforcer,
                                        client,
                                        &mut buf,
                                    )
                                    .await
                                {
                                    Ok(v) => v,
                                    Err(end) => return end,
                                }
                            }
                            None => verdict,
                        };
                        match verdict {
                            Verdict::Forward(statements, notes) => {
                                self.prepared
                                    .insert(parse.name.to_owned(), Arc::new((statements, notes)));
                                out.extend_from_slice(frame.raw());
                            }
                            Verdict::Refuse(r, statements) => {
                                let statements = statements.as_deref().map_or(&[][..], |s| &s[..]);
                                self.recorder.refused(statements, &r, "extended", parse.sql);
                                self.prepared.remove(parse.name);
                                self.stand_in_parse(&mut out, r);
                            }
                        }
                    }
                    FrontendTag::Bind => {
                        if self.skipping {
                            continue;
                        }
                        let bind = match Bind::from_body(frame.body()) {
                            Ok(b) => b,
                            Err(e) => return End::ClientProtocol(e.to_string()),
                        };
                        // The decision was taken at Parse; it is re-checked
                        // (from the cache unless the policy set changed).
                        let prepared = self.prepared.get(bind.statement).cloned();
                        if let Some(p) = &prepared
                            && let (statements, notes) = &**p
                            && let Err(r) = self.enforcer.recheck(statements, notes).await
                            // Approvals hook: the approved Parse binds once.
                            && !(r.held
                                && self
                                    .hold
                                    .as_mut()
                                    .is_some_and(|h| h.release_bind(bind.statement)))
                        {
                            self.recorder.refused(statements, &r, "extended", "");
                            self.stand_in_parse(&mut out, r);
                            continue;
                        }
                        match prepared {
                            Some(p) => {
                                self.portals.insert(bind.portal.to_owned(), p);
                            }
                            None => {
                                self.portals.remove(bind.portal);
                            }
                        }
                        out.extend_from_slice(frame.raw());
                    }
                    FrontendTag::Close => {
                        if self.skipping {
                            continue;
                        }
                        if let Ok(c) = Close::from_body(frame.body()) {
                            match c.kind {
                                Target::Statement => self.prepared.remove(c.name),
                                Target::Portal => self.portals.remove(c.name),
                            };
                        }
                        out.extend_from_slice(frame.raw());
                    }
                    FrontendTag::Describe => {
                        if !self.skipping {
                            self.shared.describing(false);
                            out.extend_from_slice(frame.raw());
                        }
                    }
                    FrontendTag::Execute => {
                        if self.skipping {
                            continue;
                        }
                        self.copy_syncs = 0;
                        let execute = match Execute::from_body(frame.body()) {
                            Ok(e) => e,
                            Err(e) => return End::ClientProtocol(e.to_string()),
                        };
                        let portal = self
                            .portals
                            .get(execute.portal)
                            .and_then(|p| Some((p.0.clone(), p.1.first()?.clone())));
                        if let Some((statements, note)) = portal
                            && let Some(statement) = statements.first()
                        {
                            let masking = match self
                                .masking(
                                    std::slice::from_ref(statement),
                                    std::slice::from_ref(&note),
                                )
                                .await
                            {
                                Ok(mut m) => m.pop().flatten(),
                                Err(r) => {
                                    self.recorder.refused(&statements, &r, "extended", "");
                                    self.stand_in_parse(&mut out, r);
                                    continue;
                                }
                            };
                            if masking.is_some() {
                                // The rows' shape (and result formats) must be
                                // known to mask them, whatever the client
                                // described earlier: ask right before them.
                                self.shared.describing(true);
                                let _ = write::describe(&mut out, Target::Portal, execute.portal);
                            }
                            let Some(statement) = StatementRef::new(&statements, 0) else {
                                continue;
                            };
                            self.shared.forwarded(
                                Pending {
                                    statement,
                                    note,
                                    started: Instant::now(),
                                    protocol: "extended",
                                    columns: Vec::new(),
                                    masking,
                                    masked: Vec::new(),
                                },
                                Request::Next,
                            );
                        }
                        out.extend_from_slice(frame.raw());
                    }
                    FrontendTag::Sync => {
                        self.skipping = false;
                        self.shared.sent_sync();
                        self.copy_syncs += 1;
                        out.extend_from_slice(frame.raw());
                    }
                    FrontendTag::Flush => out.extend_from_slice(frame.raw()),
                    FrontendTag::CopyData => out.extend_from_slice(frame.raw()),
                    FrontendTag::CopyDone | FrontendTag::CopyFail => {
                        // The database ignores a Sync sent while it is in
                        // copy-in mode (drivers send one with the Execute of
                        // a COPY FROM STDIN): it ends no request.
                        self.shared.copy_in_ended(self.copy_syncs);
                        self.copy_syncs = 0;
                        out.extend_from_slice(frame.raw());
                    }
                    FrontendTag::FunctionCall => {
                        // The fastpath calls a function by OID, outside SQL
                        // and so outside policy.
                        self.shared.sent_sync();
                        let r = Refusal::plain(
                            sqlstate::INSUFFICIENT_PRIVILEGE,
                            "palisade: the fastpath function call interface is refused: it bypasses SQL"
                                .to_owned(),
                            None,
                        );
                        self.recorder
                            .refused(&[], &r, "fastpath", "<fastpath function call>");
                        self.stand_in_query(&mut out, r);
                    }
                    FrontendTag::Terminate => {
                        out.extend_from_slice(frame.raw());
                        let _ = flush(upstream, &mut out).await;
                        return End::ClientTerminated;
                    }
                    FrontendTag::Password => {
                        return End::ClientProtocol("unexpected password message".to_owned());
                    }
                }
            }
            if !flush(upstream, &mut out).await {
                return End::UpstreamGone;
            }
            let read = client.read_buf(&mut buf);
            let n = if self.shared.idle() {
                match tokio::time::timeout(self.idle_timeout, read).await {
                    Ok(r) => r,
                    Err(_) => return End::IdleTimeout,
                }
            } else {
                read.await
            };
            match n {
                Ok(0) | Err(_) => return End::ClientGone,
                Ok(_) => {}
            }
        }
    }

    /// Where masked columns are, for each statement whose results policy
    /// masks. A catalog that cannot be read refuses the statements (fail
    /// closed), as does a binary `COPY` out, whose rows cannot be masked.
    async fn masking(
        &self,
        statements: &[Statement],
        notes: &[Note],
    ) -> Result<Vec<Option<Arc<Snapshot>>>, Refusal> {
        let mut out = Vec::with_capacity(notes.len());
        for (statement, note) in statements.iter().zip(notes) {
            if note.masks.is_empty() {
                out.push(None);
                continue;
            }
            if statement
                .copy
                .as_ref()
                .is_some_and(|c| c.direction == CopyDirection::To && c.format == CopyFormat::Binary)
            {
                return Err(Refusal::plain(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    "palisade: statement refused: binary COPY cannot be masked; use the text or csv format".to_owned(),
                    None,
                ));
            }
            let Some(catalog) = &self.catalog else {
                return Err(Refusal::plain(
                    sqlstate::SYSTEM_ERROR,
                    "palisade: statement refused: results need masking and the target has no catalog".to_owned(),
                    None,
                ));
            };
            let snapshot = catalog.snapshot(&note.masks).await.map_err(|e| {
                Refusal::plain(
                    sqlstate::SYSTEM_ERROR,
                    format!("palisade: statement refused: its results need masking and {e}"),
                    Some("the agent does not return results it cannot mask".to_owned()),
                )
            })?;
            out.push(Some(snapshot));
        }
        Ok(out)
    }

    /// Fail closed: no statement runs while its audit event could not be
    /// stored.
    fn audit_refusal(&self) -> Option<Refusal> {
        use crate::audit::Closed;
        let (why, hint) = match self.audit.as_ref()?.closed()? {
            Closed::Full => (
                "the audit spool is full",
                "the policy service has not acknowledged audit events for a while; retry later",
            ),
            Closed::Unwritable => (
                "the audit spool cannot be written (the agent's disk is full or failing)",
                "statements run again once the agent can write its audit spool; tell the agent's operator",
            ),
            Closed::CatchingUp => (
                "the audit spool is still writing events held during an outage",
                "retry in a moment",
            ),
        };
        Some(Refusal::plain(
            sqlstate::SYSTEM_ERROR,
            format!("palisade: statement refused: {why}, and statements do not run unaudited"),
            Some(hint.to_owned()),
        ))
    }

    /// Simple protocol (and fastpath): a stand-in query, answered by an
    /// error and ReadyForQuery.
    fn stand_in_query(&mut self, out: &mut BytesMut, refusal: Refusal) {
        self.shared.push_refusal(refusal, Request::Current);
        // INVARIANT: the stand-in is a short ASCII identifier; encoding it
        // cannot fail.
        let _ = write::query(out, self.shared.stand_in());
    }

    /// Extended protocol: a stand-in Parse of the unnamed statement; the
    /// database answers with an error at this point of the pipeline and
    /// skips to Sync, and so does the agent.
    fn stand_in_parse(&mut self, out: &mut BytesMut, refusal: Refusal) {
        self.shared.push_refusal(refusal, Request::Next);
        let _ = write::parse(out, "", self.shared.stand_in(), &[]);
        // The client must see the error now, not at its Sync.
        write::flush(out);
        self.skipping = true;
    }
}

async fn flush(upstream: &mut WriteHalf<Stream>, out: &mut BytesMut) -> bool {
    if out.is_empty() {
        return true;
    }
    // Flushed too: a TLS upstream buffers what the socket cannot take yet.
    let ok = upstream.write_all(out).await.is_ok() && upstream.flush().await.is_ok();
    out.clear();
    ok
}
