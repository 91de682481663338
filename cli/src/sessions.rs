//! `palisade sessions list`, `palisade replay SESSION` and `palisade audit
//! verify [SESSION]`: reading the recorded trail.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use palisade_pdp::audit::{GENESIS_HASH, StoredEvent, chain_hash};
use palisade_proto::v1 as pb;
use pb::session_service_client::SessionServiceClient;

use crate::remote::PdpArgs;

/// Filters of `sessions list`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pdp: PdpArgs,
    /// Only this principal (`issuer|subject`).
    #[arg(long)]
    principal: Option<String>,
    /// Only this target.
    #[arg(long)]
    target: Option<String>,
    /// Only sessions of CI jobs of this repository.
    #[arg(long)]
    repository: Option<String>,
    /// Started at or after (RFC 3339, e.g. 2026-11-28T10:00:00Z).
    #[arg(long)]
    since: Option<humantime::Timestamp>,
    /// Started before.
    #[arg(long)]
    until: Option<humantime::Timestamp>,
    /// Only sessions with a refused statement.
    #[arg(long)]
    denied_only: bool,
    /// At most this many.
    #[arg(long, default_value = "100")]
    limit: u32,
}

/// Arguments of `replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pdp: PdpArgs,
    /// The session id.
    session: String,
    /// Keep following a live session until it ends.
    #[arg(long)]
    follow: bool,
    /// Replay at the recorded pace instead of at once.
    #[arg(long)]
    recorded_pace: bool,
}

/// Arguments of `audit verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pdp: PdpArgs,
    /// One session; all when absent.
    session: Option<String>,
}

fn timestamp(t: Option<humantime::Timestamp>) -> Option<prost_types::Timestamp> {
    let t: SystemTime = t?.into();
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    Some(prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).ok()?,
        nanos: 0,
    })
}

fn time(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| {
        let secs = u64::try_from(t.seconds).ok()?;
        let when = UNIX_EPOCH + Duration::new(secs, u32::try_from(t.nanos).unwrap_or(0));
        Some(humantime::format_rfc3339_millis(when).to_string())
    })
    .unwrap_or_else(|| "-".to_owned())
}

fn seconds(t: Option<&prost_types::Timestamp>) -> f64 {
    t.map_or(0.0, |t| t.seconds as f64 + f64::from(t.nanos) / 1e9)
}

/// `sessions list`.
pub async fn list(args: &ListArgs) -> anyhow::Result<()> {
    let mut client = SessionServiceClient::new(args.pdp.channel().await?);
    let sessions = client
        .list_sessions(pb::ListSessionsRequest {
            principal: args.principal.clone().unwrap_or_default(),
            target: args.target.clone().unwrap_or_default(),
            repository: args.repository.clone().unwrap_or_default(),
            since: timestamp(args.since),
            until: timestamp(args.until),
            denied_only: args.denied_only,
            limit: args.limit,
        })
        .await?
        .into_inner()
        .sessions;
    println!(
        "{:<36}  {:<24}  {:<8}  {:>5}  {:>6}  {:<18}  principal",
        "session", "started", "target", "stmts", "denied", "ended"
    );
    for s in sessions {
        let principal = s.principal.as_ref().map_or("-", |p| p.id.as_str());
        let ended = if s.end_reason.is_empty() {
            "(live)".to_owned()
        } else {
            s.end_reason.clone()
        };
        println!(
            "{:<36}  {:<24}  {:<8}  {:>5}  {:>6}  {:<18}  {principal}",
            s.session_id,
            time(s.started.as_ref()),
            s.target,
            s.statements,
            s.denied,
            ended
        );
    }
    Ok(())
}

fn format_time(t: &prost_types::Timestamp) -> String {
    humantime::format_rfc3339_seconds(
        UNIX_EPOCH + Duration::from_secs(t.seconds.max(0).unsigned_abs()),
    )
    .to_string()
}

fn effect(e: i32) -> &'static str {
    match pb::Effect::try_from(e) {
        Ok(pb::Effect::Allow) => "ALLOW",
        Ok(pb::Effect::Deny) => "DENY",
        Ok(pb::Effect::RequireApproval) => "HOLD",
        _ => "?",
    }
}

/// One event as a line of the timeline.
pub fn describe(e: &pb::AuditEvent) -> String {
    use pb::audit_event::Event;
    let mut line = String::new();
    match &e.event {
        Some(Event::SessionStarted(s)) => {
            let p = s.principal.clone().unwrap_or_default();
            let client = s.client.clone().unwrap_or_default();
            let _ = write!(
                line,
                "session started: {} on {} from {} ({}) as {}",
                p.id, s.target, client.address, client.application_name, s.database_role
            );
            for key in ["repository", "sha", "run_id", "pipeline_id", "ref"] {
                if let Some(v) = p.claims.get(key) {
                    let _ = write!(line, " {key}={v}");
                }
            }
        }
        Some(Event::SessionRefused(s)) => {
            let _ = write!(line, "session refused on {}: {}", s.target, s.reason);
        }
        Some(Event::Statement(s)) => {
            let duration = s
                .duration
                .as_ref()
                .map(|d| d.seconds as f64 * 1e3 + f64::from(d.nanos) / 1e6)
                .unwrap_or(0.0);
            let _ = write!(
                line,
                "{:<5} {}",
                effect(s.effect),
                s.text.replace('\n', " ")
            );
            if !s.determining_policies.is_empty() {
                let _ = write!(line, "  [{}]", s.determining_policies.join(", "));
            }
            if !s.command_tag.is_empty() {
                let _ = write!(
                    line,
                    "  {} ({} rows, {duration:.1} ms)",
                    s.command_tag, s.rows
                );
            }
            if !s.error.is_empty() {
                let _ = write!(line, "  error {}: {}", s.sqlstate, s.error);
            }
            if !s.reason.is_empty() && s.effect != pb::Effect::Allow as i32 {
                let _ = write!(line, "  — {}", s.reason);
            }
            if !s.approval_id.is_empty() {
                let _ = write!(line, "  approval {}", s.approval_id);
            }
        }
        Some(Event::Approval(a)) => {
            let state = crate::approvals::state_name(a.state());
            let _ = write!(line, "APPROVAL {state:<9} {}", a.approval_id);
            match a.state() {
                pb::ApprovalState::Pending => {
                    let _ = write!(
                        line,
                        "  requested: reviewers {} [{}]",
                        a.reviewers.join(", "),
                        a.policies.join(", ")
                    );
                    if let Some(d) = &a.deadline {
                        let _ = write!(line, " until {}", format_time(d));
                    }
                }
                pb::ApprovalState::Approved | pb::ApprovalState::Denied => {
                    let _ = write!(line, "  by {}", a.reviewer);
                }
                _ => {}
            }
            if !a.reason.is_empty() {
                let _ = write!(line, "  — {}", a.reason);
            }
            for f in &a.notification_failures {
                let _ = write!(line, "  (notification failed: {f})");
            }
        }
        Some(Event::SessionEnded(s)) => {
            let _ = write!(line, "session ended: {}", s.reason);
        }
        None => line.push_str("(empty event)"),
    }
    line
}

/// Checks replayed events against their hash chain from the bytes the PDP
/// sends with each, so a replay does not have to trust the store: each
/// payload must hash to the event's hash on top of the one before, and
/// decode to the event shown.
#[derive(Debug)]
struct LinkCheck {
    previous: [u8; 32],
    /// An event came without its bytes (a PDP older than `payload`).
    unchecked: bool,
    /// The first broken link: its sequence and what is wrong.
    broken: Option<(u64, &'static str)>,
}

impl Default for LinkCheck {
    fn default() -> Self {
        Self {
            previous: GENESIS_HASH,
            unchecked: false,
            broken: None,
        }
    }
}

impl LinkCheck {
    /// Checks the next event; returns what is wrong with its link, if this
    /// is the first broken one.
    fn next(&mut self, item: &pb::GetSessionEventsResponse) -> Option<&'static str> {
        if self.broken.is_some() {
            return None;
        }
        if item.payload.is_empty() {
            self.unchecked = true;
            return None;
        }
        // A copy: replay is not a hot path, and the reply is printed after.
        let problem = match StoredEvent::try_from(item.clone()) {
            Err(problem) => Some(problem),
            Ok(stored) if stored.previous_hash != self.previous => {
                Some("it does not link to the event before")
            }
            Ok(stored) => stored.link_fault(),
        };
        self.previous = chain_hash(&self.previous, &item.payload);
        if let Some(problem) = problem {
            let sequence = item.event.as_ref().map_or(0, |e| e.sequence);
            self.broken = Some((sequence, problem));
        }
        problem
    }
}

/// `replay SESSION`: fails when an event does not match its hash chain.
pub async fn replay(args: &ReplayArgs) -> anyhow::Result<()> {
    let mut client = SessionServiceClient::new(args.pdp.channel().await?);
    let mut stream = client
        .get_session_events(pb::GetSessionEventsRequest {
            session_id: args.session.clone(),
            follow: args.follow,
        })
        .await
        .with_context(|| format!("cannot replay session {}", args.session))?
        .into_inner();
    let mut first: Option<f64> = None;
    let mut previous = 0.0;
    let mut links = LinkCheck::default();
    while let Some(item) = stream.message().await? {
        let broken = links.next(&item);
        let Some(event) = item.event else { continue };
        let at = seconds(event.time.as_ref());
        let start = *first.get_or_insert(at);
        if args.recorded_pace && at > previous && previous > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64((at - previous).min(60.0))).await;
        }
        previous = at;
        println!(
            "+{:>9.3}s  #{:<4} {}",
            at - start,
            event.sequence,
            describe(&event)
        );
        if let Some(problem) = broken {
            println!("BROKEN: event #{}: {problem}", event.sequence);
        }
    }
    if links.unchecked {
        eprintln!(
            "note: the policy service sent events without their bytes; hash links not checked"
        );
    }
    match links.broken {
        Some((sequence, problem)) => anyhow::bail!(
            "session {} does not match its hash chain at event #{sequence}: {problem}",
            args.session
        ),
        None => Ok(()),
    }
}

/// `audit verify [SESSION]`: exits non-zero when a chain is broken.
pub async fn verify(args: &VerifyArgs) -> anyhow::Result<bool> {
    let mut client = SessionServiceClient::new(args.pdp.channel().await?);
    let r = client
        .verify_audit(pb::VerifyAuditRequest {
            session_id: args.session.clone().unwrap_or_default(),
        })
        .await?
        .into_inner();
    if r.intact {
        println!(
            "intact: {} sessions, {} events, every hash chain verified",
            r.sessions_checked, r.events_checked
        );
    } else {
        println!(
            "BROKEN: session {} event #{}: {} ({} sessions, {} events checked)",
            r.broken_session_id, r.broken_sequence, r.problem, r.sessions_checked, r.events_checked
        );
    }
    Ok(r.intact)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use palisade_pdp::audit::testkit;
    use prost::Message as _;

    use super::*;

    /// The replies of a session as the PDP sends them.
    fn chain(events: &[pb::AuditEvent]) -> Vec<pb::GetSessionEventsResponse> {
        let mut previous = GENESIS_HASH;
        events
            .iter()
            .map(|event| {
                let payload = Bytes::from(event.encode_to_vec());
                let stored = StoredEvent {
                    event: event.clone(),
                    previous_hash: previous,
                    hash: chain_hash(&previous, &payload),
                    payload,
                };
                previous = stored.hash;
                stored.into()
            })
            .collect()
    }

    fn first_broken(replies: &[pb::GetSessionEventsResponse]) -> Option<(u64, &'static str)> {
        let mut links = LinkCheck::default();
        for reply in replies {
            links.next(reply);
        }
        links.broken
    }

    #[test]
    fn a_replay_checks_every_link_from_the_bytes() {
        let events: Vec<pb::AuditEvent> = (1..=3)
            .map(|n| testkit::statement("s", n, 100, "select 1", pb::Effect::Deny))
            .collect();
        let intact = chain(&events);
        assert_eq!(first_broken(&intact), None);

        // The store shows another event than the one it hashed.
        let mut shown = intact.clone();
        if let Some(pb::audit_event::Event::Statement(s)) =
            shown[1].event.as_mut().and_then(|e| e.event.as_mut())
        {
            s.effect = pb::Effect::Allow as i32;
        }
        assert_eq!(
            first_broken(&shown),
            Some((2, "the event shown is not the one hashed"))
        );

        // Edited bytes, the stored hash kept.
        let mut edited = intact.clone();
        let mut bytes = edited[1].payload.to_vec();
        bytes[3] ^= 1;
        edited[1].payload = Bytes::from(bytes);
        assert_eq!(first_broken(&edited), Some((2, "hash mismatch")));

        // An event left out.
        let gap = [intact[0].clone(), intact[2].clone()];
        assert_eq!(
            first_broken(&gap),
            Some((3, "it does not link to the event before"))
        );

        // Without bytes (an older PDP), nothing can be checked or claimed.
        let mut bare = intact;
        for reply in &mut bare {
            reply.payload = Bytes::new();
        }
        let mut links = LinkCheck::default();
        for reply in &bare {
            assert_eq!(links.next(reply), None);
        }
        assert!(links.unchecked && links.broken.is_none());
    }
}
