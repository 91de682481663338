//! The suite every [`ApprovalStore`] passes (run on the embedded store by
//! unit tests and on PostgreSQL by the integration tests).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use palisade_proto::v1 as pb;

use super::transition::{self, timestamp};
use super::{ApprovalError, ApprovalStore};

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what.to_owned()) }
}

/// A pending approval for tests, requested by `requester` in `session`.
pub fn sample(session: &str, requester: &str, statement: &str, ttl: Duration) -> pb::Approval {
    let now = SystemTime::now();
    pb::Approval {
        id: uuid::Uuid::now_v7().to_string(),
        session_id: session.to_owned(),
        requester: Some(pb::Principal {
            id: requester.to_owned(),
            ..Default::default()
        }),
        target: "prod".to_owned(),
        statement: statement.to_owned(),
        reviewers: vec!["dba".to_owned()],
        policies: vec!["unbounded-write-needs-review".to_owned()],
        state: pb::ApprovalState::Pending as i32,
        created: Some(timestamp(now)),
        deadline: Some(timestamp(now + ttl)),
        ..Default::default()
    }
}

/// Runs the suite; the error names the first broken expectation.
pub async fn conformance(store: &dyn ApprovalStore) -> Result<(), String> {
    let e = |e: ApprovalError| e.to_string();
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);

    // insert, get, duplicate id
    let a = sample("s1", "ci", "DELETE FROM t", hour);
    store.insert(a.clone()).await.map_err(e)?;
    check(
        store.get(&a.id).await.map_err(e)? == Some(a.clone()),
        "get returns what was inserted",
    )?;
    check(
        matches!(
            store.insert(a.clone()).await,
            Err(ApprovalError::Conflict(_))
        ),
        "a second insert of the same id is refused",
    )?;
    check(
        store.get("no-such-id").await.map_err(e)?.is_none(),
        "unknown id is None",
    )?;
    check(
        matches!(
            store.update("no-such-id", &|_| Ok(())).await,
            Err(ApprovalError::NotFound(_))
        ),
        "update of an unknown id is NotFound",
    )?;

    // the requester never reviews; a refused change writes nothing
    let r = store
        .update(&a.id, &|x| transition::review(x, "ci", true, "me", now))
        .await;
    check(
        matches!(r, Err(ApprovalError::Forbidden(_))),
        "self-approval is refused",
    )?;
    check(
        store.get(&a.id).await.map_err(e)?.map(|x| x.state()) == Some(pb::ApprovalState::Pending),
        "a refused change leaves the approval pending",
    )?;

    // approve, then a second decision conflicts
    let approved = store
        .update(&a.id, &|x| {
            transition::review(x, "bob", true, "looks fine", now)
        })
        .await
        .map_err(e)?;
    check(
        approved.state() == pb::ApprovalState::Approved,
        "approve sets approved",
    )?;
    check(
        approved.decided_by == "bob" && approved.reason == "looks fine",
        "reviewer and reason kept",
    )?;
    check(
        matches!(
            store
                .update(&a.id, &|x| transition::review(x, "carol", false, "no", now))
                .await,
            Err(ApprovalError::Conflict(_))
        ),
        "a decided approval cannot be decided again",
    )?;

    // consume: bound to session and text, single use
    check(
        matches!(
            store
                .update(&a.id, &|x| transition::consume(
                    x,
                    "s2",
                    "DELETE FROM t",
                    now
                ))
                .await,
            Err(ApprovalError::Forbidden(_))
        ),
        "another session cannot consume",
    )?;
    check(
        matches!(
            store
                .update(&a.id, &|x| transition::consume(
                    x,
                    "s1",
                    "DELETE FROM u",
                    now
                ))
                .await,
            Err(ApprovalError::Forbidden(_))
        ),
        "another statement cannot consume",
    )?;
    let used = store
        .update(&a.id, &|x| {
            transition::consume(x, "s1", "DELETE FROM t", now)
        })
        .await
        .map_err(e)?;
    check(
        used.state() == pb::ApprovalState::Consumed,
        "consume sets consumed",
    )?;
    check(
        matches!(
            store
                .update(&a.id, &|x| transition::consume(
                    x,
                    "s1",
                    "DELETE FROM t",
                    now
                ))
                .await,
            Err(ApprovalError::Conflict(_))
        ),
        "an approval is used once",
    )?;

    // deny, withdraw, expire
    let d = sample("s1", "ci", "UPDATE t SET x = 1", hour);
    store.insert(d.clone()).await.map_err(e)?;
    let denied = store
        .update(&d.id, &|x| {
            transition::review(x, "bob", false, "not now", now)
        })
        .await
        .map_err(e)?;
    check(
        denied.state() == pb::ApprovalState::Denied,
        "deny sets denied",
    )?;
    check(
        matches!(
            store
                .update(&d.id, &|x| transition::consume(
                    x,
                    "s1",
                    "UPDATE t SET x = 1",
                    now
                ))
                .await,
            Err(ApprovalError::Conflict(_))
        ),
        "a denied approval cannot be consumed",
    )?;
    let w = sample("s1", "ci", "DELETE FROM w", hour);
    store.insert(w.clone()).await.map_err(e)?;
    check(
        matches!(
            store
                .update(&w.id, &|x| transition::withdraw(x, "s9", "gone", now))
                .await,
            Err(ApprovalError::Forbidden(_))
        ),
        "another session cannot withdraw",
    )?;
    let withdrawn = store
        .update(&w.id, &|x| {
            transition::withdraw(x, "s1", "client gone", now)
        })
        .await
        .map_err(e)?;
    check(
        withdrawn.state() == pb::ApprovalState::Withdrawn,
        "withdraw sets withdrawn",
    )?;
    let x = sample("s1", "ci", "DELETE FROM x", Duration::from_millis(1));
    store.insert(x.clone()).await.map_err(e)?;
    let later = now + Duration::from_secs(1);
    let reviewed = store
        .update(&x.id, &|y| {
            transition::review(y, "bob", true, "late", later)
        })
        .await
        .map_err(e)?;
    check(
        reviewed.state() == pb::ApprovalState::Expired,
        "a late review finds it expired",
    )?;

    // notification failures are kept
    let n = store
        .update(&d.id, &|y| transition::notification_failed(y, "hook: 500"))
        .await
        .map_err(e)?;
    check(
        n.notification_failures == vec!["hook: 500".to_owned()],
        "failure recorded",
    )?;

    // list by state, oldest first
    let pending = sample("s3", "ci", "DELETE FROM p", hour);
    store.insert(pending.clone()).await.map_err(e)?;
    let listed = store.list(&[pb::ApprovalState::Pending]).await.map_err(e)?;
    check(listed.iter().any(|y| y.id == pending.id), "pending listed")?;
    check(
        listed
            .iter()
            .all(|y| y.state() == pb::ApprovalState::Pending),
        "only pending listed",
    )?;
    let all = store.list(&[]).await.map_err(e)?;
    let pos = |id: &str| all.iter().position(|y| y.id == id);
    check(
        pos(&a.id) < pos(&pending.id) && pos(&a.id).is_some(),
        "all listed, oldest first",
    )?;
    Ok(())
}

/// Many concurrent reviewers of one approval: exactly one decision wins.
pub async fn one_decision_wins(store: Arc<dyn ApprovalStore>) -> Result<(), String> {
    let a = sample("race", "ci", "DELETE FROM race", Duration::from_secs(3600));
    store.insert(a.clone()).await.map_err(|e| e.to_string())?;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let id = a.id.clone();
        tasks.push(tokio::spawn(async move {
            let who = format!("reviewer-{i}");
            store
                .update(&id, &|x| {
                    transition::review(x, &who, i % 2 == 0, "race", SystemTime::now())
                })
                .await
                .is_ok()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.map_err(|e| e.to_string())? {
            wins += 1;
        }
    }
    check(
        wins == 1,
        &format!("exactly one decision wins (got {wins})"),
    )
}
