//! The suite every [`ApprovalStore`] passes (run on the embedded store by
//! unit tests and on PostgreSQL by the integration tests).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use palisade_proto::v1 as pb;

use super::transition::{self, timestamp};
use super::{ApprovalError, ApprovalStore, Change};

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what.to_owned()) }
}

/// Applies `change` to approval `id`: it must succeed and leave the approval
/// in `state`, which is returned for further checks.
async fn step(
    store: &dyn ApprovalStore,
    id: &str,
    change: Change<'_>,
    state: pb::ApprovalState,
    what: &str,
) -> Result<pb::Approval, String> {
    let approval = store.update(id, change).await.map_err(|e| e.to_string())?;
    check(approval.state() == state, what)?;
    Ok(approval)
}

/// Applies `change` to approval `id`: the store must refuse it with the kind
/// of error `kind` builds (`ApprovalError::Conflict`, `ApprovalError::Forbidden`,
/// ...; only the variant is compared, not the message).
async fn refused(
    store: &dyn ApprovalStore,
    id: &str,
    change: Change<'_>,
    kind: fn(String) -> ApprovalError,
    what: &str,
) -> Result<(), String> {
    let expected = std::mem::discriminant(&kind(String::new()));
    check(
        matches!(store.update(id, change).await, Err(e) if std::mem::discriminant(&e) == expected),
        what,
    )
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
    refused(
        store,
        "no-such-id",
        &|_| Ok(()),
        ApprovalError::NotFound,
        "update of an unknown id is NotFound",
    )
    .await?;

    // the requester never reviews; a refused change writes nothing
    refused(
        store,
        &a.id,
        &|x| transition::review(x, "ci", true, "me", now),
        ApprovalError::Forbidden,
        "self-approval is refused",
    )
    .await?;
    check(
        store.get(&a.id).await.map_err(e)?.map(|x| x.state()) == Some(pb::ApprovalState::Pending),
        "a refused change leaves the approval pending",
    )?;

    // approve, then a second decision conflicts
    let approved = step(
        store,
        &a.id,
        &|x| transition::review(x, "bob", true, "looks fine", now),
        pb::ApprovalState::Approved,
        "approve sets approved",
    )
    .await?;
    check(
        approved.decided_by == "bob" && approved.reason == "looks fine",
        "reviewer and reason kept",
    )?;
    refused(
        store,
        &a.id,
        &|x| transition::review(x, "carol", false, "no", now),
        ApprovalError::Conflict,
        "a decided approval cannot be decided again",
    )
    .await?;

    // consume: bound to session and text, single use
    refused(
        store,
        &a.id,
        &|x| transition::consume(x, "s2", "DELETE FROM t", now),
        ApprovalError::Forbidden,
        "another session cannot consume",
    )
    .await?;
    refused(
        store,
        &a.id,
        &|x| transition::consume(x, "s1", "DELETE FROM u", now),
        ApprovalError::Forbidden,
        "another statement cannot consume",
    )
    .await?;
    step(
        store,
        &a.id,
        &|x| transition::consume(x, "s1", "DELETE FROM t", now),
        pb::ApprovalState::Consumed,
        "consume sets consumed",
    )
    .await?;
    refused(
        store,
        &a.id,
        &|x| transition::consume(x, "s1", "DELETE FROM t", now),
        ApprovalError::Conflict,
        "an approval is used once",
    )
    .await?;

    // deny, withdraw, expire
    let d = sample("s1", "ci", "UPDATE t SET x = 1", hour);
    store.insert(d.clone()).await.map_err(e)?;
    step(
        store,
        &d.id,
        &|x| transition::review(x, "bob", false, "not now", now),
        pb::ApprovalState::Denied,
        "deny sets denied",
    )
    .await?;
    refused(
        store,
        &d.id,
        &|x| transition::consume(x, "s1", "UPDATE t SET x = 1", now),
        ApprovalError::Conflict,
        "a denied approval cannot be consumed",
    )
    .await?;
    let w = sample("s1", "ci", "DELETE FROM w", hour);
    store.insert(w.clone()).await.map_err(e)?;
    refused(
        store,
        &w.id,
        &|x| transition::withdraw(x, "s9", "gone", now),
        ApprovalError::Forbidden,
        "another session cannot withdraw",
    )
    .await?;
    step(
        store,
        &w.id,
        &|x| transition::withdraw(x, "s1", "client gone", now),
        pb::ApprovalState::Withdrawn,
        "withdraw sets withdrawn",
    )
    .await?;
    let x = sample("s1", "ci", "DELETE FROM x", Duration::from_millis(1));
    store.insert(x.clone()).await.map_err(e)?;
    let later = now + Duration::from_secs(1);
    step(
        store,
        &x.id,
        &|y| transition::review(y, "bob", true, "late", later),
        pb::ApprovalState::Expired,
        "a late review finds it expired",
    )
    .await?;

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
