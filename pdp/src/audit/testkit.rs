//! The suite every [`AuditStore`] must pass, and event builders for tests.
//!
//! Not part of the PDP's API: it is public so the `integration` crate can run
//! [`conformance`] and [`replicas`] against [`super::PostgresStore`] on a real
//! PostgreSQL, while the unit tests run them against
//! [`super::EmbeddedStore`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, bail, ensure};
use bytes::Bytes;
use palisade_proto::v1 as pb;
use pb::audit_event::Event;
use prost::Message as _;
use prost_types::Timestamp;

use super::{AuditStore, EncodedEvent, GENESIS_HASH, SessionFilter, StoredEvent, chain_hash};

/// Seconds since the epoch around which the suite's sessions start.
const T0: i64 = 1_600_000_000;
/// The filter cases' sessions start after this, apart from all others.
const T1: i64 = 1_700_000_000;
/// How long a subscriber may take to wake.
const WAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// A subscription without changes for this long is taken as settled.
const QUIET: Duration = Duration::from_millis(300);

/// The issuer of the principals built here.
pub const ISSUER: &str = "https://issuer.example";

/// A timestamp `secs` after the epoch.
pub fn at(secs: i64) -> Timestamp {
    Timestamp {
        seconds: secs,
        nanos: 0,
    }
}

/// A principal `<ISSUER>|<subject>` with a few claims (a map, which prost
/// encodes in no fixed order), `repository` among them if given.
pub fn principal(subject: &str, repository: Option<&str>) -> pb::Principal {
    let mut claims: HashMap<String, String> = [
        ("sha", "0123456789abcdef"),
        ("run_id", "42"),
        ("actor", subject),
        ("ref", "refs/heads/main"),
        ("pipeline", "deploy"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Some(repository) = repository {
        claims.insert("repository".to_owned(), repository.to_owned());
    }
    pb::Principal {
        id: format!("{ISSUER}|{subject}"),
        issuer: ISSUER.to_owned(),
        subject: subject.to_owned(),
        groups: vec!["engineering".to_owned()],
        claims,
    }
}

fn event(session_id: &str, sequence: u64, time: Timestamp, event: Event) -> pb::AuditEvent {
    pb::AuditEvent {
        session_id: session_id.to_owned(),
        sequence,
        time: Some(time),
        agent_id: "agent-test".to_owned(),
        event: Some(event),
    }
}

fn client() -> pb::ClientInfo {
    pb::ClientInfo {
        address: "127.0.0.1:50000".to_owned(),
        application_name: "psql".to_owned(),
        database_user: "ci".to_owned(),
        tls: true,
        startup_parameters: [
            ("user", "ci"),
            ("database", "app"),
            ("client_encoding", "UTF8"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        protocol_version: "3.0".to_owned(),
    }
}

/// A `session_started` event at `secs`.
pub fn started(
    session_id: &str,
    sequence: u64,
    secs: i64,
    subject: &str,
    target: &str,
    repository: Option<&str>,
) -> pb::AuditEvent {
    started_at(session_id, sequence, at(secs), subject, target, repository)
}

/// A `session_started` event at `time`.
pub fn started_at(
    session_id: &str,
    sequence: u64,
    time: Timestamp,
    subject: &str,
    target: &str,
    repository: Option<&str>,
) -> pb::AuditEvent {
    event(
        session_id,
        sequence,
        time,
        Event::SessionStarted(pb::SessionStarted {
            principal: Some(principal(subject, repository)),
            target: target.to_owned(),
            client: Some(client()),
            granted_roles: vec!["app_read".to_owned()],
            database_role: "palisade_jit_1".to_owned(),
            deadline: Some(Timestamp {
                seconds: time.seconds + 3600,
                nanos: 0,
            }),
        }),
    )
}

/// A `statement` event at `secs` with `effect`.
pub fn statement(
    session_id: &str,
    sequence: u64,
    secs: i64,
    text: &str,
    effect: pb::Effect,
) -> pb::AuditEvent {
    event(
        session_id,
        sequence,
        at(secs),
        Event::Statement(pb::StatementExecuted {
            text: text.to_owned(),
            attributes: Some(pb::StatementAttributes {
                kind: pb::StatementKind::Select as i32,
                reads: vec![pb::Relation {
                    schema: "public".to_owned(),
                    name: "t".to_owned(),
                }],
                ..Default::default()
            }),
            effect: effect as i32,
            determining_policies: vec!["policy0".to_owned()],
            rows: 1,
            command_tag: "SELECT 1".to_owned(),
            protocol: "simple".to_owned(),
            ..Default::default()
        }),
    )
}

/// A `session_ended` event at `secs`.
pub fn ended(session_id: &str, sequence: u64, secs: i64, reason: &str) -> pb::AuditEvent {
    event(
        session_id,
        sequence,
        at(secs),
        Event::SessionEnded(pb::SessionEnded {
            reason: reason.to_owned(),
            statements: 0,
            denied: 0,
        }),
    )
}

/// A `session_refused` event at `secs`, with a principal when the token was
/// valid.
pub fn refused(
    session_id: &str,
    sequence: u64,
    secs: i64,
    subject: Option<&str>,
    target: &str,
) -> pb::AuditEvent {
    event(
        session_id,
        sequence,
        at(secs),
        Event::SessionRefused(pb::SessionRefused {
            target: target.to_owned(),
            client: Some(client()),
            reason: "policy refused connect".to_owned(),
            principal: subject.map(|s| principal(s, None)),
        }),
    )
}

/// A whole session: started at `secs`, one statement per effect (a second
/// apart), ended when `end` is given.
pub fn session(
    session_id: &str,
    secs: i64,
    subject: &str,
    target: &str,
    repository: Option<&str>,
    effects: &[pb::Effect],
    end: Option<&str>,
) -> Vec<pb::AuditEvent> {
    let mut events = vec![started(session_id, 1, secs, subject, target, repository)];
    for (effect, sequence) in effects.iter().zip(2u64..) {
        let secs = secs + i64::try_from(sequence).unwrap_or(0);
        events.push(statement(
            session_id,
            sequence,
            secs,
            "select * from t",
            *effect,
        ));
    }
    if let Some(reason) = end {
        let sequence = events.len() as u64 + 1;
        events.push(ended(session_id, sequence, secs + 100, reason));
    }
    events
}

/// Events encoded here, as an agent would send them.
pub fn encoded(events: impl IntoIterator<Item = pb::AuditEvent>) -> Vec<EncodedEvent> {
    events.into_iter().map(EncodedEvent::encode).collect()
}

/// `(session_id, sequence)` pairs, to compare acks.
pub fn acks(acks: &[pb::EventAck]) -> Vec<(String, u64)> {
    acks.iter()
        .map(|a| (a.session_id.clone(), a.sequence))
        .collect()
}

fn pairs(expected: &[(&str, u64)]) -> Vec<(String, u64)> {
    expected
        .iter()
        .map(|(s, n)| ((*s).to_owned(), *n))
        .collect()
}

/// Appends and checks the acks.
async fn append_expect(
    store: &dyn AuditStore,
    events: Vec<pb::AuditEvent>,
    expected: &[(&str, u64)],
) -> Result<()> {
    let got = acks(&store.append(encoded(events)).await?);
    ensure!(
        got == pairs(expected),
        "acks {got:?}, expected {expected:?}"
    );
    Ok(())
}

/// Checks a session's stored events: their sequences, and that they form a
/// chain from genesis whose every hash is recomputed here.
pub fn check_chain(events: &[StoredEvent], sequences: &[u64]) -> Result<()> {
    let got: Vec<u64> = events.iter().map(|e| e.event.sequence).collect();
    ensure!(
        got == sequences,
        "sequences {got:?}, expected {sequences:?}"
    );
    let mut previous = GENESIS_HASH;
    for stored in events {
        if stored.event.sequence == 1 {
            previous = GENESIS_HASH;
        }
        ensure!(
            stored.previous_hash == previous,
            "event {} does not link to the one before",
            stored.event.sequence
        );
        let hash = chain_hash(&previous, &stored.payload);
        ensure!(
            stored.hash == hash,
            "event {} has a wrong hash",
            stored.event.sequence
        );
        ensure!(stored.link_is_valid());
        previous = stored.hash;
    }
    Ok(())
}

async fn stored(store: &dyn AuditStore, session_id: &str) -> Result<Vec<StoredEvent>> {
    Ok(store.session_events(session_id, 0).await?)
}

/// The suite every store passes. `store` must be empty; the suite leaves it
/// holding a few dozen sessions.
pub async fn conformance(store: &dyn AuditStore) -> Result<()> {
    let existing = store.list_sessions(&SessionFilter::default()).await?;
    ensure!(
        existing.is_empty(),
        "the conformance suite needs an empty store"
    );
    append_and_read(store).await.context("append and read")?;
    payloads_are_kept_as_sent(store)
        .await
        .context("payloads kept as sent")?;
    repeats_are_ignored(store).await.context("repeats")?;
    gaps_are_not_stored(store).await.context("gaps")?;
    out_of_order_batch(store)
        .await
        .context("out of order batch")?;
    several_sessions_in_one_batch(store)
        .await
        .context("several sessions")?;
    large_batch(store).await.context("large batch")?;
    summaries_and_filters(store)
        .await
        .context("summaries and filters")?;
    concurrent_appends(store, store, "conf-concurrent")
        .await
        .context("concurrent appends")?;
    subscribe_wakes(store, store).await.context("subscribe")?;
    verify_intact(store).await.context("verify")?;
    Ok(())
}

/// What two stores sharing one backend (PDP replicas) must agree on: both see
/// each other's events, wake on each other's appends, and never fork a
/// chain appended from both at once. Runs on stores already holding data.
pub async fn replicas(a: &dyn AuditStore, b: &dyn AuditStore) -> Result<()> {
    subscribe_wakes(a, b)
        .await
        .context("b wakes on a's append")?;
    subscribe_wakes(b, a)
        .await
        .context("a wakes on b's append")?;
    concurrent_appends(a, b, "rep-concurrent")
        .await
        .context("appends from both")?;
    let events = session("rep-shared", T0 + 900, "alice", "conf-db", None, &[], None);
    append_expect(a, events, &[("rep-shared", 1)]).await?;
    let from_b = stored(b, "rep-shared").await?;
    check_chain(&from_b, &[1])?;
    let report = b.verify(None).await?;
    ensure!(report.intact(), "verify from b: {report:?}");
    Ok(())
}

async fn append_and_read(store: &dyn AuditStore) -> Result<()> {
    let id = "conf-read";
    let events = session(
        id,
        T0,
        "alice",
        "conf-db",
        Some("org/conf"),
        &[pb::Effect::Allow, pb::Effect::Deny],
        Some("client_terminated"),
    );
    append_expect(store, events.clone(), &[(id, 4)]).await?;
    let got = stored(store, id).await?;
    check_chain(&got, &[1, 2, 3, 4])?;
    let got_events: Vec<pb::AuditEvent> = got.into_iter().map(|e| e.event).collect();
    ensure!(
        got_events == events,
        "stored events differ from the appended ones"
    );
    let tail = store.session_events(id, 2).await?;
    let tail_sequences: Vec<u64> = tail.iter().map(|e| e.event.sequence).collect();
    ensure!(tail_sequences == [3, 4], "after 2: {tail_sequences:?}");
    ensure!(store.session_events(id, 4).await?.is_empty());
    ensure!(store.session_events(id, u64::MAX).await?.is_empty());
    ensure!(store.session_events("conf-nothing", 0).await?.is_empty());
    Ok(())
}

/// The chain covers the bytes as they came, in whatever field order the
/// sender wrote them (the agent appends each event's sequence last).
async fn payloads_are_kept_as_sent(store: &dyn AuditStore) -> Result<()> {
    let id = "conf-bytes";
    let events = session(
        id,
        T0 + 5,
        "alice",
        "conf-db",
        None,
        &[pb::Effect::Allow],
        None,
    );
    let sent: Vec<EncodedEvent> = events
        .iter()
        .map(|event| {
            let mut unnumbered = event.clone();
            unnumbered.sequence = 0;
            let mut bytes = unnumbered.encode_to_vec();
            prost::encoding::uint64::encode(2, &event.sequence, &mut bytes);
            EncodedEvent::decode(Bytes::from(bytes))
        })
        .collect::<Result<_, _>>()?;
    ensure!(
        sent.iter()
            .zip(&events)
            .all(|(s, e)| s.event == *e && s.payload != e.encode_to_vec()),
        "the test's encoding should differ from prost's"
    );
    let got = acks(&store.append(sent.clone()).await?);
    ensure!(got == pairs(&[(id, 2)]), "acks {got:?}");
    let stored = stored(store, id).await?;
    check_chain(&stored, &[1, 2])?;
    for (stored, sent) in stored.iter().zip(&sent) {
        ensure!(
            stored.payload == sent.payload,
            "event {} was re-encoded",
            sent.event.sequence
        );
        ensure!(
            stored.event == sent.event,
            "event {} changed",
            sent.event.sequence
        );
    }
    let report = store.verify(Some(id)).await?;
    ensure!(report.intact() && report.events_checked == 2, "{report:?}");
    Ok(())
}

async fn repeats_are_ignored(store: &dyn AuditStore) -> Result<()> {
    let id = "conf-repeat";
    let events = session(
        id,
        T0 + 10,
        "alice",
        "conf-db",
        None,
        &[pb::Effect::Allow; 2],
        None,
    );
    append_expect(store, events.clone(), &[(id, 3)]).await?;
    let before = stored(store, id).await?;
    append_expect(store, events.clone(), &[(id, 3)]).await?;
    let forged = statement(id, 2, T0 + 11, "select 'forged'", pb::Effect::Allow);
    append_expect(store, vec![forged], &[(id, 3)]).await?;
    ensure!(
        stored(store, id).await? == before,
        "a repeat changed stored events"
    );
    let mut more = events[1..].to_vec();
    more.push(statement(id, 4, T0 + 12, "select 4", pb::Effect::Allow));
    append_expect(store, more, &[(id, 4)]).await?;
    let after = stored(store, id).await?;
    check_chain(&after, &[1, 2, 3, 4])?;
    ensure!(after[..3] == before[..], "earlier events changed");
    // Two copies in one batch: the first counts.
    let first = statement(id, 5, T0 + 13, "select 'first'", pb::Effect::Allow);
    let second = statement(id, 5, T0 + 13, "select 'second'", pb::Effect::Allow);
    append_expect(store, vec![first.clone(), second], &[(id, 5)]).await?;
    let last = store.session_events(id, 4).await?;
    ensure!(
        last.len() == 1 && last[0].event == first,
        "first copy not kept"
    );
    Ok(())
}

async fn gaps_are_not_stored(store: &dyn AuditStore) -> Result<()> {
    let id = "conf-gap";
    let e = |n: u64| statement(id, n, T0 + 20 + n as i64, "select 1", pb::Effect::Allow);
    let start = started(id, 1, T0 + 20, "alice", "conf-db", None);
    append_expect(store, vec![start, e(2)], &[(id, 2)]).await?;
    append_expect(store, vec![e(4), e(5)], &[(id, 2)]).await?;
    check_chain(&stored(store, id).await?, &[1, 2])?;
    append_expect(store, vec![e(3)], &[(id, 3)]).await?;
    append_expect(store, vec![e(4), e(5)], &[(id, 5)]).await?;
    check_chain(&stored(store, id).await?, &[1, 2, 3, 4, 5])?;
    // A session whose first batch starts after a gap stores nothing.
    let late = "conf-gap-only";
    let event = statement(late, 3, T0 + 25, "select 1", pb::Effect::Allow);
    append_expect(store, vec![event], &[(late, 0)]).await?;
    ensure!(stored(store, late).await?.is_empty());
    let listed = store.list_sessions(&SessionFilter::default()).await?;
    ensure!(
        listed.iter().all(|s| s.session_id != late),
        "a session without stored events is listed"
    );
    Ok(())
}

async fn out_of_order_batch(store: &dyn AuditStore) -> Result<()> {
    let id = "conf-shuffle";
    let mut events = session(
        id,
        T0 + 30,
        "alice",
        "conf-db",
        None,
        &[pb::Effect::Allow; 2],
        None,
    );
    events.push(statement(id, 5, T0 + 35, "select 5", pb::Effect::Allow));
    events.reverse();
    append_expect(store, events, &[(id, 3)]).await?;
    check_chain(&stored(store, id).await?, &[1, 2, 3])?;
    Ok(())
}

async fn several_sessions_in_one_batch(store: &dyn AuditStore) -> Result<()> {
    let (a, b, c, d) = (
        "conf-multi-a",
        "conf-multi-b",
        "conf-multi-c",
        "conf-multi-d",
    );
    let s = |id: &str, n: u64| statement(id, n, T0 + 40 + n as i64, "select 1", pb::Effect::Allow);
    let batch = vec![
        started(a, 1, T0 + 40, "alice", "conf-db", None),
        started(b, 1, T0 + 41, "bob", "conf-db", None),
        s(a, 2),
        s(c, 2),
        s(b, 2),
        s(d, 0),
        s(a, 3),
    ];
    append_expect(store, batch, &[(a, 3), (b, 2), (c, 0), (d, 0)]).await?;
    check_chain(&stored(store, a).await?, &[1, 2, 3])?;
    check_chain(&stored(store, b).await?, &[1, 2])?;
    ensure!(stored(store, c).await?.is_empty());
    ensure!(stored(store, d).await?.is_empty());
    ensure!(
        store.append(Vec::new()).await?.is_empty(),
        "empty batch acked"
    );
    Ok(())
}

async fn large_batch(store: &dyn AuditStore) -> Result<()> {
    let id = "conf-large";
    let mut events = vec![started(id, 1, T0 + 50, "alice", "conf-db", None)];
    for n in 2..=1000u64 {
        let text = format!("select {n} from a_table_with_a_long_name where x = {n}");
        events.push(statement(id, n, T0 + 50, &text, pb::Effect::Allow));
    }
    append_expect(store, events, &[(id, 1000)]).await?;
    let got = stored(store, id).await?;
    let sequences: Vec<u64> = (1..=1000).collect();
    check_chain(&got, &sequences)?;
    let tail = store.session_events(id, 990).await?;
    ensure!(tail.len() == 10 && tail[0].event.sequence == 991);
    Ok(())
}

async fn summaries_and_filters(store: &dyn AuditStore) -> Result<()> {
    use pb::Effect::{Allow, Deny};
    let time = |secs: i64, nanos: i32| Timestamp {
        seconds: T1 + secs,
        nanos,
    };
    let mut f1 = vec![started_at(
        "f1",
        1,
        time(10, 123_456_789),
        "alice",
        "conf-prod",
        Some("org/app"),
    )];
    f1.push(statement("f1", 2, T1 + 11, "select 1", Allow));
    f1.push(statement("f1", 3, T1 + 12, "drop table t", Deny));
    f1.push(ended("f1", 4, T1 + 20, "client_terminated"));
    let f2 = session(
        "f2",
        T1 + 30,
        "bob",
        "conf-dev",
        Some("org/lib"),
        &[Allow],
        None,
    );
    let f3 = vec![refused("f3", 1, T1 + 40, Some("carol"), "conf-prod")];
    let mut f4 = session(
        "f4",
        T1 + 50,
        "alice",
        "conf-dev",
        Some("org/app"),
        &[Deny],
        None,
    );
    f4[0].time = Some(time(50, 1));
    let f5b = session("f5b", T1 + 60, "dave", "conf-tie", None, &[], None);
    let f5a = session("f5a", T1 + 60, "dave", "conf-tie", None, &[], None);
    // Without a start event, a session starts with its first event.
    let f6 = vec![statement("f6", 1, T1 + 70, "select 1", Allow)];
    let batch: Vec<pb::AuditEvent> = [f1, f2, f3, f4, f5b, f5a, f6].concat();
    store.append(encoded(batch)).await?;

    let since = |secs: i64| SystemTime::UNIX_EPOCH + Duration::from_secs((T1 + secs) as u64);
    let list = |filter: SessionFilter| async move {
        let sessions = store.list_sessions(&filter).await?;
        Ok::<_, anyhow::Error>(
            sessions
                .into_iter()
                .map(|s| s.session_id)
                .collect::<Vec<_>>(),
        )
    };
    let recent = || SessionFilter {
        since: Some(since(0)),
        ..SessionFilter::default()
    };
    let expect = |got: Vec<String>, want: &[&str], what: &str| {
        ensure!(got == want, "{what}: got {got:?}, want {want:?}");
        Ok::<_, anyhow::Error>(())
    };

    expect(
        list(recent()).await?,
        &["f6", "f5a", "f5b", "f4", "f3", "f2", "f1"],
        "newest first",
    )?;
    let prod = SessionFilter {
        target: Some("conf-prod".into()),
        ..recent()
    };
    expect(list(prod).await?, &["f3", "f1"], "target")?;
    for who in ["alice", "https://issuer.example|alice"] {
        let by_principal = SessionFilter {
            principal: Some(who.into()),
            ..recent()
        };
        expect(list(by_principal).await?, &["f4", "f1"], "principal")?;
    }
    let by_repository = SessionFilter {
        repository: Some("org/app".into()),
        ..SessionFilter::default()
    };
    expect(list(by_repository).await?, &["f4", "f1"], "repository")?;
    let window = SessionFilter {
        since: Some(since(30)),
        until: Some(since(50)),
        ..SessionFilter::default()
    };
    expect(list(window).await?, &["f3", "f2"], "since/until")?;
    // Nanoseconds count: f4 starts 1 ns after T1 + 50.
    let exact = SessionFilter {
        since: Some(since(50)),
        until: Some(since(50) + Duration::from_nanos(2)),
        ..SessionFilter::default()
    };
    expect(list(exact).await?, &["f4"], "nanosecond bounds")?;
    let denied = SessionFilter {
        denied_only: true,
        ..recent()
    };
    expect(list(denied).await?, &["f4", "f1"], "denied only")?;
    let limited = SessionFilter {
        limit: Some(2),
        ..recent()
    };
    expect(list(limited).await?, &["f6", "f5a"], "limit")?;
    let none = SessionFilter {
        limit: Some(0),
        ..recent()
    };
    expect(list(none).await?, &[], "limit 0")?;

    let summaries = store
        .list_sessions(&SessionFilter {
            target: Some("conf-prod".into()),
            ..SessionFilter::default()
        })
        .await?;
    let [f3, f1] = summaries.as_slice() else {
        bail!("expected f3 and f1, got {summaries:?}");
    };
    let want_f1 = pb::SessionSummary {
        session_id: "f1".into(),
        principal: Some(principal("alice", Some("org/app"))),
        target: "conf-prod".into(),
        started: Some(time(10, 123_456_789)),
        ended: Some(at(T1 + 20)),
        statements: 2,
        denied: 1,
        end_reason: "client_terminated".into(),
    };
    ensure!(*f1 == want_f1, "summary of f1: {f1:?}");
    let want_f3 = pb::SessionSummary {
        session_id: "f3".into(),
        principal: Some(principal("carol", None)),
        target: "conf-prod".into(),
        started: Some(at(T1 + 40)),
        ended: Some(at(T1 + 40)),
        statements: 0,
        denied: 0,
        end_reason: "refused".into(),
    };
    ensure!(*f3 == want_f3, "summary of f3: {f3:?}");
    let f6 = store
        .list_sessions(&SessionFilter {
            since: Some(since(70)),
            ..SessionFilter::default()
        })
        .await?;
    ensure!(
        f6.len() == 1 && f6[0].started == Some(at(T1 + 70)) && f6[0].principal.is_none(),
        "summary of f6: {f6:?}"
    );

    // The whole listing is in order.
    let all = store.list_sessions(&SessionFilter::default()).await?;
    let keys: Vec<_> = all
        .iter()
        .map(|s| {
            let start = s.started.map(super::summary::time_key);
            (std::cmp::Reverse(start), s.session_id.clone())
        })
        .collect();
    ensure!(keys.is_sorted(), "listing out of order: {keys:?}");
    Ok(())
}

async fn concurrent_appends(a: &dyn AuditStore, b: &dyn AuditStore, id: &str) -> Result<()> {
    let mut events = vec![started(id, 1, T0 + 60, "alice", "conf-db", None)];
    for n in 2..=60u64 {
        events.push(statement(
            id,
            n,
            T0 + 60,
            &format!("select {n}"),
            pb::Effect::Allow,
        ));
    }
    // Eight senders, each resending overlapping runs in its own batch sizes.
    let mut calls = Vec::new();
    for sender in 0..8usize {
        let store = if sender % 2 == 0 { a } else { b };
        let events = events.clone();
        calls.push(async move {
            let mut acked = 0u64;
            for chunk in events.chunks(sender + 3) {
                let acks = store.append(encoded(chunk.iter().cloned())).await?;
                let ack = acks.first().map_or(0, |a| a.sequence);
                ensure!(ack >= acked, "ack went back from {acked} to {ack}");
                acked = ack;
            }
            Ok::<_, anyhow::Error>(acked)
        });
    }
    let results = futures::future::join_all(calls).await;
    for result in results {
        let acked = result?;
        ensure!(acked == 60, "a sender's last ack was {acked}");
    }
    // Whoever came last, one more full resend completes the chain.
    append_expect(a, events.clone(), &[(id, 60)]).await?;
    let sequences: Vec<u64> = (1..=60).collect();
    let got = stored(b, id).await?;
    check_chain(&got, &sequences)?;
    let got_events: Vec<pb::AuditEvent> = got.into_iter().map(|e| e.event).collect();
    ensure!(got_events == events, "events changed");
    let report = a.verify(Some(id)).await?;
    ensure!(report.intact() && report.events_checked == 60, "{report:?}");
    Ok(())
}

async fn subscribe_wakes(writer: &dyn AuditStore, watcher: &dyn AuditStore) -> Result<()> {
    static WAKES: AtomicU64 = AtomicU64::new(0);
    let mut rx = watcher.subscribe();
    // Let wake-ups not caused by this append (a replica's change feed
    // connecting) pass first, so the one awaited below is this append's.
    for _ in 0..10 {
        rx.borrow_and_update();
        if tokio::time::timeout(QUIET, rx.changed()).await.is_err() {
            break;
        }
    }
    let id = format!("conf-wake-{}", WAKES.fetch_add(1, Ordering::Relaxed));
    let event = started(&id, 1, T0 + 70, "alice", "conf-db", None);
    writer.append(encoded([event])).await?;
    tokio::time::timeout(WAKE_TIMEOUT, rx.changed())
        .await
        .context("no wake-up after an append")?
        .context("subscription closed")?;
    Ok(())
}

async fn verify_intact(store: &dyn AuditStore) -> Result<()> {
    let sessions = store.list_sessions(&SessionFilter::default()).await?;
    let mut events = 0u64;
    for summary in &sessions {
        events += stored(store, &summary.session_id).await?.len() as u64;
    }
    let report = store.verify(None).await?;
    ensure!(report.intact(), "verify: {report:?}");
    ensure!(
        report.sessions_checked == sessions.len() as u64 && report.events_checked == events,
        "verify counted {report:?}, the store lists {} sessions and {events} events",
        sessions.len()
    );
    let one = store.verify(Some("conf-read")).await?;
    ensure!(
        one.intact() && one.sessions_checked == 1 && one.events_checked == 4,
        "verify of one session: {one:?}"
    );
    let unknown = store.verify(Some("conf-unknown")).await?;
    ensure!(
        unknown.intact() && unknown.sessions_checked == 0 && unknown.events_checked == 0,
        "verify of an unknown session: {unknown:?}"
    );
    Ok(())
}
