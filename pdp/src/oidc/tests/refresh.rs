//! Key rotation: an unknown `kid` re-reads the key source, at most once per
//! `min_refresh_interval`, and concurrent callers share one refresh.

use std::time::Duration;

use super::support::*;
use crate::oidc::TokenError;

#[tokio::test]
async fn unknown_kid_refreshes_once_then_is_rate_limited() {
    let world = World::new();
    let now = unix_now();
    assert_eq!(world.loads(GITLAB), 0);

    // the issuer rotates in a new key; the file is rewritten
    let rotated = TestKey::ec("gl-2");
    world.files.write("gitlab.json", &[&world.ec, &rotated]);
    let verified = world
        .verifier
        .verify(&rotated.sign(&gitlab_claims(now)))
        .await
        .unwrap();
    assert_eq!(verified.groups, ["acme", "acme/dba"]);
    assert_eq!(world.loads(GITLAB), 1);

    // keys already known need no refresh
    assert!(
        world
            .verifier
            .verify(&world.ec.sign(&gitlab_claims(now)))
            .await
            .is_ok()
    );
    assert_eq!(world.loads(GITLAB), 1);

    // a second rotation within the interval is not read
    let again = TestKey::ec("gl-3");
    world
        .files
        .write("gitlab.json", &[&world.ec, &rotated, &again]);
    let err = world
        .verifier
        .verify(&again.sign(&gitlab_claims(now)))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        TokenError::UnknownKey {
            kid: Some("gl-3".into())
        }
    );
    assert_eq!(
        world.loads(GITLAB),
        1,
        "the file must not be re-read within the interval"
    );

    // nor do forged kids cause reads
    for i in 0..20 {
        let forged = TestKey::ec(&format!("forged-{i}"));
        assert!(
            world
                .verifier
                .verify(&forged.sign(&gitlab_claims(now)))
                .await
                .is_err()
        );
    }
    assert_eq!(world.loads(GITLAB), 1);
}

#[tokio::test]
async fn with_no_interval_every_rotation_is_picked_up() {
    let world = World::with(|c| c.min_refresh_interval = Duration::ZERO);
    let now = unix_now();
    for i in 2..5 {
        let key = TestKey::ec(&format!("gl-{i}"));
        world.files.write("gitlab.json", &[&key]);
        assert!(
            world
                .verifier
                .verify(&key.sign(&gitlab_claims(now)))
                .await
                .is_ok()
        );
    }
    assert_eq!(world.loads(GITLAB), 3);
    // the old key was rotated out of the file
    let err = world
        .verifier
        .verify(&world.ec.sign(&gitlab_claims(now)))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        TokenError::UnknownKey {
            kid: Some("gl-1".into())
        }
    );
}

#[tokio::test]
async fn a_broken_file_on_refresh_keeps_the_old_keys() {
    let world = World::with(|c| c.min_refresh_interval = Duration::ZERO);
    let now = unix_now();
    world.files.write_raw("gitlab.json", "{ truncated");
    let stranger = TestKey::ec("gl-9");
    assert!(matches!(
        world
            .verifier
            .verify(&stranger.sign(&gitlab_claims(now)))
            .await,
        Err(TokenError::KeysUnavailable(_))
    ));
    assert!(
        world
            .verifier
            .verify(&world.ec.sign(&gitlab_claims(now)))
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unknown_kids_share_one_refresh() {
    let world = World::new();
    let now = unix_now();
    let rotated = TestKey::ec("gl-2");
    world.files.write("gitlab.json", &[&world.ec, &rotated]);
    let token = rotated.sign(&gitlab_claims(now));

    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let verifier = world.verifier.clone();
            let token = token.clone();
            tokio::spawn(async move { verifier.verify(&token).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().is_ok());
    }
    assert_eq!(world.loads(GITLAB), 1);
}
