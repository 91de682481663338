//! One client session: open it at the PDP, connect upstream, greet the
//! client, then run the two directions until either side ends.

mod cancel;
mod forward;
mod hold;
mod record;
mod relay;
mod shared;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

pub use cancel::{CancelHandle, CancelRegistry};
use shared::Shared;

use crate::backend::{self, UpstreamParams};
use crate::codec::backend::TransactionStatus;
use crate::codec::write;
use crate::context::AgentContext;
use crate::enforce::Enforcer;
use crate::error::AgentError;
use crate::frontend::{Hello, refuse};
use crate::pdp::{ClientFacts, OpenOutcome};

/// How a session ended (for logs and, later, the audit trail).
#[derive(Debug)]
pub enum End {
    /// The client sent Terminate.
    ClientTerminated,
    /// The client closed its socket.
    ClientGone,
    /// The client broke the protocol.
    ClientProtocol(String),
    /// The database closed the connection.
    UpstreamGone,
    /// The database broke the protocol.
    UpstreamProtocol(String),
    /// No client message for too long.
    IdleTimeout,
}

/// Startup parameters passed on to the database. Others (notably `options`,
/// which can set any setting, and `replication`) are not: what the session
/// is must be decided by policy, not by a startup packet.
const PASSED_PARAMETERS: &[&str] = &[
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "extra_float_digits",
    "standard_conforming_strings",
];

/// PostgreSQL truncates identifiers (and application_name) to 63 bytes.
const NAME_LIMIT: usize = 63;

/// Runs a session from a client's hello to its end.
pub async fn run(mut hello: Hello, peer: SocketAddr, ctx: AgentContext) {
    let target_name = hello
        .parameter("database")
        .or_else(|| hello.parameter("user"))
        .unwrap_or_default()
        .to_owned();
    let Some(target) = ctx.config.targets.get(&target_name).cloned() else {
        let known: Vec<&str> = ctx.config.targets.keys().map(String::as_str).collect();
        let e = AgentError::UnknownTarget(target_name, known.join(", "));
        ctx.metrics.session_refused();
        refuse(&mut hello.stream, &e).await;
        return;
    };
    let application_name = hello
        .parameter("application_name")
        .unwrap_or_default()
        .to_owned();
    let facts = ClientFacts {
        address: peer.to_string(),
        application_name: application_name.clone(),
        database_user: hello.parameter("user").unwrap_or_default().to_owned(),
        tls: hello.stream.is_tls(),
        parameters: hello.parameters.clone(),
    };
    let outcome = ctx
        .pdp
        .open_session(
            &hello.token,
            &target_name,
            &facts,
            &target.grantable_roles,
            None,
        )
        .await;
    let grant = match outcome {
        Ok(OpenOutcome::Granted(g)) => g,
        Ok(OpenOutcome::Refused { message, bad_token }) => {
            ctx.metrics.session_refused();
            record_refusal(&ctx, &target_name, &facts, &message);
            info!(%peer, target = %target_name, reason = %message, "session refused");
            let e = AgentError::SessionRefused(message);
            let code = if bad_token { "28P01" } else { "28000" };
            refuse_with(&mut hello.stream, code, &e).await;
            return;
        }
        Err(e) => {
            ctx.metrics.session_refused();
            ctx.metrics.pdp_error();
            warn!(%peer, error = %e, "session refused: pdp unavailable");
            refuse(
                &mut hello.stream,
                &AgentError::PdpUnavailable(e.to_string()),
            )
            .await;
            return;
        }
    };

    // Just-in-time credential: a login role made for this session, member of
    // the granted roles only; else the target's static credential.
    let minted = match ctx.minters.get(&target_name) {
        None => None,
        Some(minter) => match minter
            .mint(&grant.session_id, &grant.granted_roles, grant.deadline)
            .await
        {
            Ok(role) => Some((minter.clone(), role)),
            Err(e) => {
                ctx.metrics.upstream_error();
                warn!(session = %grant.session_id, error = %e, "session role could not be created");
                ctx.pdp
                    .close_session(&grant.session_id, "upstream_error")
                    .await;
                refuse(
                    &mut hello.stream,
                    &AgentError::Unsupported(format!(
                        "the session's database role could not be created: {e}"
                    )),
                )
                .await;
                return;
            }
        },
    };
    let (database_user, password) = match &minted {
        Some((_, role)) => (role.name.clone(), Ok(role.password.expose().to_owned())),
        None => (target.user.clone(), target.password()),
    };
    let password = match password {
        Ok(p) => p,
        Err(e) => {
            ctx.metrics.upstream_error();
            ctx.pdp
                .close_session(&grant.session_id, "upstream_error")
                .await;
            refuse(
                &mut hello.stream,
                &AgentError::Upstream(backend::BackendError::Credential(e)),
            )
            .await;
            return;
        }
    };
    // The database's own logs and pg_stat_activity say who is behind each
    // backend.
    let mut tag = format!("palisade:{}:{}", short(&grant.session_id), grant.principal);
    truncate(&mut tag, NAME_LIMIT);
    let mut parameters: Vec<(String, String)> = hello
        .parameters
        .iter()
        .filter(|(k, _)| PASSED_PARAMETERS.contains(&k.as_str()))
        .cloned()
        .collect();
    parameters.push(("application_name".to_owned(), tag));
    let upstream = backend::connect(UpstreamParams {
        target: &target,
        target_name: &target_name,
        user: &database_user,
        password: &password,
        parameters: &parameters,
        tls: ctx.upstream_tls.clone(),
        timeout: ctx.config.limits.upstream_connect_timeout,
    })
    .await;
    drop(password);
    let upstream = match upstream {
        Ok(u) => u,
        Err(e) => {
            ctx.metrics.upstream_error();
            warn!(session = %grant.session_id, error = %e, "upstream connection failed");
            retire(minted.as_ref()).await;
            ctx.pdp
                .close_session(&grant.session_id, "upstream_error")
                .await;
            refuse(&mut hello.stream, &AgentError::Upstream(e)).await;
            return;
        }
    };

    // Greet the client as the database would, with the agent's own cancel key.
    let cancel = upstream
        .key
        .clone()
        .map(|k| ctx.cancel.register(upstream.addr.clone(), k));
    let mut greeting = BytesMut::new();
    write::authentication_ok(&mut greeting);
    for (name, value) in &upstream.parameters {
        let value = if name == "application_name" {
            &application_name
        } else {
            value
        };
        let _ = write::parameter_status(&mut greeting, name, value);
    }
    if let Some(c) = &cancel {
        let _ = write::backend_key_data(&mut greeting, c.process_id, &c.secret);
    }
    write::ready_for_query(&mut greeting, TransactionStatus::Idle);
    if hello.stream.write_all(&greeting).await.is_err() || hello.stream.flush().await.is_err() {
        ctx.pdp
            .close_session(&grant.session_id, "client_disconnected")
            .await;
        return;
    }

    ctx.metrics.session_started();
    info!(
        session = %grant.session_id,
        principal = %grant.principal,
        target = %target_name,
        %peer,
        roles = ?grant.granted_roles,
        "session started"
    );
    let reopen = {
        let pdp = ctx.pdp.clone();
        let token = hello.token.clone();
        let target_name = target_name.clone();
        let facts = facts.clone();
        let roles = target.grantable_roles.clone();
        let session_id = grant.session_id.clone();
        Box::new(move || {
            let (pdp, token, target_name, facts, roles, session_id) = (
                pdp.clone(),
                token.clone(),
                target_name.clone(),
                facts.clone(),
                roles.clone(),
                session_id.clone(),
            );
            Box::pin(async move {
                match pdp
                    .open_session(&token, &target_name, &facts, &roles, Some(&session_id))
                    .await?
                {
                    OpenOutcome::Granted(g) => Ok(g.session_id),
                    OpenOutcome::Refused { message, .. } => {
                        Err(crate::pdp::PdpError::BadAnswer(message))
                    }
                }
            }) as futures::future::BoxFuture<'static, _>
        })
    };
    let enforcer = Enforcer::new(
        ctx.pdp.clone(),
        grant.session_id.clone(),
        ctx.version.clone(),
        ctx.metrics.clone(),
        target.user.clone(),
        reopen,
    );
    let shared = Arc::new(Shared::new());
    let recorder = record::Recorder::new(
        grant.session_id.clone(),
        ctx.redact_literals,
        ctx.audit_sender(&grant.session_id),
    );
    recorder.emit(session_started(
        &grant,
        &target_name,
        &facts,
        &database_user,
    ));
    let (mut client_rd, mut client_wr) = tokio::io::split(hello.stream);
    let (mut upstream_rd, mut upstream_wr) = tokio::io::split(upstream.stream);
    let (inject_tx, inject_rx) = tokio::sync::mpsc::channel(16);
    let mut forward = forward::Forward::new(
        enforcer,
        shared.clone(),
        recorder.clone(),
        ctx.audit.clone(),
        ctx.config.limits.max_message_bytes,
        ctx.config.limits.idle_timeout,
    );
    forward.hold = Some(hold::Hold::new(
        ctx.pdp.clone(),
        inject_tx,
        cancel.as_ref().map(|c| c.cancelled.clone()),
        recorder.clone(),
    ));
    let catalog = ctx.masking.catalog(&target_name);
    forward.catalog = catalog.clone();
    let result_masking = relay::ResultMasking {
        masking: ctx.masking.clone(),
        catalog,
    };
    let end = tokio::select! {
        end = forward.run(&mut client_rd, hello.read_buf, &mut upstream_wr) => end,
        end = relay::run(&mut upstream_rd, upstream.read_buf, &mut client_wr, shared, recorder.clone(), inject_rx, result_masking) => end,
    };
    say_goodbye(&end, &mut client_wr, &mut upstream_wr).await;
    drop(cancel);
    ctx.metrics.session_ended();
    let session_id = forward.enforcer.session_id().to_owned();
    info!(session = %session_id, end = ?end, "session ended");
    retire(minted.as_ref()).await;
    recorder.emit(palisade_proto::v1::audit_event::Event::SessionEnded(
        palisade_proto::v1::SessionEnded {
            reason: end_reason(&end).to_owned(),
            statements: 0,
            denied: 0,
        },
    ));
    ctx.pdp.close_session(&session_id, end_reason(&end)).await;
}

/// Removes the session's own database role (its backends, its grants; its
/// objects go to the first granted role).
async fn retire(minted: Option<&(crate::credentials::Minter, crate::credentials::SessionRole)>) {
    if let Some((minter, role)) = minted
        && let Err(e) = minter.retire(role).await
    {
        warn!(role = %role.name, error = %e, "session role could not be removed; the reaper will retry");
    }
}

fn client_info(facts: &ClientFacts) -> palisade_proto::v1::ClientInfo {
    palisade_proto::v1::ClientInfo {
        address: facts.address.clone(),
        application_name: facts.application_name.clone(),
        database_user: facts.database_user.clone(),
        tls: facts.tls,
        startup_parameters: facts.parameters.iter().cloned().collect(),
        protocol_version: "3.0".to_owned(),
    }
}

fn session_started(
    grant: &crate::pdp::Grant,
    target: &str,
    facts: &ClientFacts,
    database_role: &str,
) -> palisade_proto::v1::audit_event::Event {
    palisade_proto::v1::audit_event::Event::SessionStarted(palisade_proto::v1::SessionStarted {
        principal: Some(grant.principal_pb.clone()),
        target: target.to_owned(),
        client: Some(client_info(facts)),
        granted_roles: grant.granted_roles.clone(),
        database_role: database_role.to_owned(),
        deadline: Some(record::time(grant.deadline)),
    })
}

/// A refused connection attempt, on record under an id of its own.
fn record_refusal(ctx: &AgentContext, target: &str, facts: &ClientFacts, reason: &str) {
    let id = uuid_like();
    let sender = ctx.audit_sender(&id);
    let recorder = record::Recorder::new(id, ctx.redact_literals, sender);
    recorder.emit(palisade_proto::v1::audit_event::Event::SessionRefused(
        palisade_proto::v1::SessionRefused {
            target: target.to_owned(),
            client: Some(client_info(facts)),
            reason: reason.to_owned(),
            principal: None,
        },
    ));
}

/// A random id in UUID form for refused attempts (they have no PDP session).
fn uuid_like() -> String {
    use rand::Rng;
    let b: [u8; 16] = rand::rng().random();
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Tells each side that is still there why the session ends.
async fn say_goodbye(
    end: &End,
    client: &mut tokio::io::WriteHalf<crate::net::Stream>,
    upstream: &mut tokio::io::WriteHalf<crate::net::Stream>,
) {
    let mut out = BytesMut::new();
    let fatal = |out: &mut BytesMut, code: &str, message: &str| {
        let _ = write::error_response(
            out,
            crate::codec::backend::Severity::Fatal,
            code,
            message,
            None,
            None,
        );
    };
    match end {
        End::ClientProtocol(m) => fatal(
            &mut out,
            crate::error::sqlstate::PROTOCOL_VIOLATION,
            &format!("palisade: protocol violation: {m}"),
        ),
        End::IdleTimeout => fatal(
            &mut out,
            crate::error::sqlstate::IDLE_SESSION_TIMEOUT,
            "palisade: the session was idle for too long",
        ),
        End::UpstreamGone => fatal(
            &mut out,
            crate::error::sqlstate::CONNECTION_FAILURE,
            "palisade: the database closed the connection",
        ),
        End::UpstreamProtocol(m) => fatal(
            &mut out,
            crate::error::sqlstate::CONNECTION_FAILURE,
            &format!("palisade: the database broke the protocol: {m}"),
        ),
        End::ClientTerminated | End::ClientGone => {}
    }
    if !out.is_empty() {
        let _ = client.write_all(&out).await;
    }
    let _ = client.shutdown().await;
    let mut bye = BytesMut::new();
    write::terminate(&mut bye);
    let _ = upstream.write_all(&bye).await;
    let _ = upstream.shutdown().await;
}

fn end_reason(end: &End) -> &'static str {
    match end {
        End::ClientTerminated => "client_terminated",
        End::ClientGone => "client_disconnected",
        End::ClientProtocol(_) => "protocol_error",
        End::UpstreamGone | End::UpstreamProtocol(_) => "upstream_error",
        End::IdleTimeout => "idle_timeout",
    }
}

async fn refuse_with(stream: &mut crate::net::Stream, code: &str, e: &AgentError) {
    let mut out = BytesMut::new();
    if write::error_response(
        &mut out,
        crate::codec::backend::Severity::Fatal,
        code,
        &e.client_message(),
        None,
        e.hint(),
    )
    .is_ok()
    {
        let _ = stream.write_all(&out).await;
    }
    let _ = stream.shutdown().await;
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn truncate(s: &mut String, limit: usize) {
    if s.len() > limit {
        let mut cut = limit;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}
