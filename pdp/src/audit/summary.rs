//! A session's summary, folded from its events in sequence order, and the
//! filter and order of `list_sessions`. Both stores fold with
//! [`SummaryState::apply`]; the PostgreSQL store keeps the state encoded in
//! its sessions table and copies the filtered fields into columns.

use std::cmp::Reverse;
use std::time::SystemTime;

use palisade_proto::v1 as pb;
use pb::audit_event::Event;
use prost_types::Timestamp;

use super::SessionFilter;

/// The claim the `repository` filter matches.
pub(crate) const REPOSITORY_CLAIM: &str = "repository";

/// What a session's events say about it so far.
///
/// `started` comes from `session_started` (or `session_refused`), `ended`
/// and `end_reason` from `session_ended` (a refused session ends when it is
/// refused, with reason `refused`); `statements` and `denied` count
/// `statement` events (denied: effect DENY). A session without a start event
/// is placed by the time of its first event.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SummaryState {
    #[prost(message, optional, tag = "1")]
    pub principal: Option<pb::Principal>,
    #[prost(string, tag = "2")]
    pub target: String,
    #[prost(message, optional, tag = "3")]
    pub started: Option<Timestamp>,
    #[prost(message, optional, tag = "4")]
    pub first_time: Option<Timestamp>,
    #[prost(message, optional, tag = "5")]
    pub ended: Option<Timestamp>,
    #[prost(string, tag = "6")]
    pub end_reason: String,
    #[prost(uint64, tag = "7")]
    pub statements: u64,
    #[prost(uint64, tag = "8")]
    pub denied: u64,
}

/// The end reason of a refused session.
const REFUSED: &str = "refused";

/// Where a session sorts: newest start first, sessions without any time
/// last, then by id. Ascending order of this key is `list_sessions` order.
pub(crate) type SortKey = (Reverse<Option<(i64, i32)>>, String);

impl SummaryState {
    /// Folds the next stored event of the session in.
    pub fn apply(&mut self, event: &pb::AuditEvent) {
        if self.first_time.is_none() {
            self.first_time = event.time;
        }
        match &event.event {
            Some(Event::SessionStarted(started)) => {
                if started.principal.is_some() {
                    self.principal.clone_from(&started.principal);
                }
                self.target.clone_from(&started.target);
                self.started = event.time;
            }
            Some(Event::SessionRefused(refused)) => {
                if refused.principal.is_some() {
                    self.principal.clone_from(&refused.principal);
                }
                self.target.clone_from(&refused.target);
                if self.started.is_none() {
                    self.started = event.time;
                }
                self.ended = event.time;
                REFUSED.clone_into(&mut self.end_reason);
            }
            Some(Event::SessionEnded(ended)) => {
                self.ended = event.time;
                self.end_reason.clone_from(&ended.reason);
            }
            Some(Event::Statement(statement)) => {
                self.statements += 1;
                if statement.effect == pb::Effect::Deny as i32 {
                    self.denied += 1;
                }
            }
            Some(Event::Approval(_)) | None => {}
        }
    }

    /// The start shown and filtered on: the start event's time, else the
    /// first event's.
    pub fn start_time(&self) -> Option<Timestamp> {
        self.started.or(self.first_time)
    }

    /// [`start_time`](Self::start_time) as `(seconds, nanos)`, normalized.
    pub fn start_key(&self) -> Option<(i64, i32)> {
        self.start_time().map(time_key)
    }

    /// Where the session sorts in `list_sessions`.
    pub fn sort_key(&self, session_id: &str) -> SortKey {
        (Reverse(self.start_key()), session_id.to_owned())
    }

    /// The principal's id, empty when unknown.
    pub fn principal_id(&self) -> &str {
        self.principal.as_ref().map_or("", |p| p.id.as_str())
    }

    /// The principal's subject, empty when unknown.
    pub fn principal_subject(&self) -> &str {
        self.principal.as_ref().map_or("", |p| p.subject.as_str())
    }

    /// The principal's `repository` claim.
    pub fn repository(&self) -> Option<&str> {
        self.principal
            .as_ref()
            .and_then(|p| p.claims.get(REPOSITORY_CLAIM))
            .map(String::as_str)
    }

    /// Whether the session passes `filter` (its `limit` aside).
    pub fn matches(&self, filter: &SessionFilter) -> bool {
        let SessionFilter {
            principal,
            target,
            repository,
            since,
            until,
            denied_only,
            limit: _,
        } = filter;
        if let Some(principal) = principal
            && self.principal_id() != principal
            && self.principal_subject() != principal
        {
            return false;
        }
        if target.as_ref().is_some_and(|t| *t != self.target) {
            return false;
        }
        if repository
            .as_deref()
            .is_some_and(|r| self.repository() != Some(r))
        {
            return false;
        }
        let start = self.start_key();
        if let Some(since) = since
            && start.is_none_or(|s| s < system_time_key(*since))
        {
            return false;
        }
        if let Some(until) = until
            && start.is_none_or(|s| s >= system_time_key(*until))
        {
            return false;
        }
        !denied_only || self.denied > 0
    }

    /// The summary `list_sessions` returns.
    pub fn to_summary(&self, session_id: &str) -> pb::SessionSummary {
        pb::SessionSummary {
            session_id: session_id.to_owned(),
            principal: self.principal.clone(),
            target: self.target.clone(),
            started: self.start_time(),
            ended: self.ended,
            statements: self.statements,
            denied: self.denied,
            end_reason: self.end_reason.clone(),
        }
    }
}

/// A timestamp as comparable `(seconds, nanos)`.
pub(crate) fn time_key(mut time: Timestamp) -> (i64, i32) {
    time.normalize();
    (time.seconds, time.nanos)
}

/// A filter bound as comparable `(seconds, nanos)`.
pub(crate) fn system_time_key(time: SystemTime) -> (i64, i32) {
    time_key(Timestamp::from(time))
}

/// The `kind` column of an event.
pub(crate) fn event_kind(event: &pb::AuditEvent) -> &'static str {
    match &event.event {
        Some(Event::SessionStarted(_)) => "session_started",
        Some(Event::Statement(_)) => "statement",
        Some(Event::Approval(_)) => "approval",
        Some(Event::SessionEnded(_)) => "session_ended",
        Some(Event::SessionRefused(_)) => "session_refused",
        None => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::audit::testkit::{ended, refused, started, statement};

    fn fold(events: &[pb::AuditEvent]) -> SummaryState {
        let mut state = SummaryState::default();
        for event in events {
            state.apply(event);
        }
        state
    }

    #[test]
    fn folds_a_session() {
        let state = fold(&[
            started("s", 1, 100, "alice", "prod", Some("org/app")),
            statement("s", 2, 101, "select 1", pb::Effect::Allow),
            statement("s", 3, 102, "drop table t", pb::Effect::Deny),
            ended("s", 4, 110, "client_terminated"),
        ]);
        let summary = state.to_summary("s");
        assert_eq!(summary.target, "prod");
        assert_eq!(summary.started.map(|t| t.seconds), Some(100));
        assert_eq!(summary.ended.map(|t| t.seconds), Some(110));
        assert_eq!((summary.statements, summary.denied), (2, 1));
        assert_eq!(summary.end_reason, "client_terminated");
        assert_eq!(state.principal_subject(), "alice");
        assert_eq!(state.repository(), Some("org/app"));
    }

    #[test]
    fn refused_session_ends_when_refused() {
        let summary = fold(&[refused("r", 1, 50, Some("bob"), "prod")]).to_summary("r");
        assert_eq!(summary.started, summary.ended);
        assert_eq!(summary.end_reason, "refused");
        assert_eq!(summary.principal.map(|p| p.subject), Some("bob".into()));
    }

    #[test]
    fn filters() {
        let state = fold(&[
            started("s", 1, 100, "alice", "prod", Some("org/app")),
            statement("s", 2, 101, "x", pb::Effect::Deny),
        ]);
        let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let yes = |f: SessionFilter| assert!(state.matches(&f), "{f:?}");
        let no = |f: SessionFilter| assert!(!state.matches(&f), "{f:?}");
        yes(SessionFilter::default());
        yes(SessionFilter {
            principal: Some("alice".into()),
            ..Default::default()
        });
        yes(SessionFilter {
            principal: Some("https://issuer.example|alice".into()),
            ..Default::default()
        });
        no(SessionFilter {
            principal: Some("ali".into()),
            ..Default::default()
        });
        no(SessionFilter {
            target: Some("dev".into()),
            ..Default::default()
        });
        no(SessionFilter {
            repository: Some("org/other".into()),
            ..Default::default()
        });
        yes(SessionFilter {
            since: Some(at(100)),
            until: Some(at(101)),
            denied_only: true,
            ..Default::default()
        });
        no(SessionFilter {
            until: Some(at(100)),
            ..Default::default()
        });
        no(SessionFilter {
            since: Some(at(100) + Duration::from_nanos(1)),
            ..Default::default()
        });
    }
}
