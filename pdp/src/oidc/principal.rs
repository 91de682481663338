//! Turning a verified token's claims into the principal Cedar sees.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Map, Value};

use super::config::IssuerPolicy;
use super::error::TokenError;

/// The identity proven by a verified token, ready to become a Cedar principal.
///
/// Everything here comes from a token whose signature, issuer, audience and
/// validity period have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The configured issuer the token came from (its `iss`).
    pub issuer: String,
    /// The token's `sub`.
    pub subject: String,
    /// `"<issuer>|<sub>"`: unique across issuers, since a `sub` is only unique within one.
    pub principal_id: String,
    /// Values of the issuer's `groups_claim` (an array, or one scalar), for group-based policies.
    pub groups: Vec<String>,
    /// The configured claims present in the token. Strings are copied as they
    /// are; other values are rendered as JSON text (numbers as digits).
    pub claims: BTreeMap<String, String>,
    /// The token's `exp`; callers may cache the decision no longer than this.
    pub expires_at: SystemTime,
}

/// Builds the principal from verified claims.
pub(crate) fn build(
    policy: &IssuerPolicy,
    claims: &Map<String, Value>,
    expires_at: SystemTime,
) -> Result<VerifiedToken, TokenError> {
    let subject = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(TokenError::MissingClaim("sub"));
        }
        Some(_) => return Err(TokenError::Malformed("claim `sub` is not a string")),
    };
    let groups = match lookup(claims, &policy.groups_claim) {
        Some(Value::Array(items)) => items.iter().filter_map(scalar_text).collect(),
        Some(value) => scalar_text(value).into_iter().collect(),
        None => Vec::new(),
    };
    let selected = policy
        .claims
        .iter()
        .filter_map(|name| {
            let value = lookup(claims, name)?;
            let text = match value {
                Value::Null => return None,
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some((name.clone(), text))
        })
        .collect();
    Ok(VerifiedToken {
        principal_id: format!("{}|{}", policy.issuer, subject),
        issuer: policy.issuer.clone(),
        subject,
        groups,
        claims: selected,
        expires_at,
    })
}

/// Finds a claim by exact name first (names may contain dots, e.g. URL-style
/// claims), then as a dotted path through nested objects.
fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut segments = path.split('.');
    let first = claims.get(segments.next()?)?;
    segments.try_fold(first, |value, segment| value.as_object()?.get(segment))
}

/// A group name from a scalar claim value; objects, arrays and null give none.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::oidc::config::{IssuerConfig, JwksSource};

    fn policy(groups_claim: &str, claims: &[&str]) -> IssuerPolicy {
        let mut config = IssuerConfig::new(
            "https://issuer",
            vec!["a".into()],
            JwksSource::File("f".into()),
        );
        config.groups_claim = groups_claim.into();
        config.claims = claims.iter().map(|c| (*c).to_owned()).collect();
        config.check(&mut Vec::new()).unwrap().0
    }

    fn build_from(policy: &IssuerPolicy, claims: Value) -> Result<VerifiedToken, TokenError> {
        build(
            policy,
            claims.as_object().unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(9),
        )
    }

    #[test]
    fn groups_from_array_scalar_and_nested_path() {
        let p = policy("groups", &[]);
        let t = build_from(
            &p,
            json!({"sub": "u", "groups": ["a", "", 7, {"x": 1}, "b"]}),
        )
        .unwrap();
        assert_eq!(t.groups, ["a", "7", "b"]);
        assert_eq!(t.principal_id, "https://issuer|u");

        let p = policy("repository_owner", &[]);
        let t = build_from(&p, json!({"sub": "u", "repository_owner": "acme"})).unwrap();
        assert_eq!(t.groups, ["acme"]);

        let p = policy("realm_access.roles", &[]);
        let t = build_from(
            &p,
            json!({"sub": "u", "realm_access": {"roles": ["admin"]}}),
        )
        .unwrap();
        assert_eq!(t.groups, ["admin"]);
        let t = build_from(&p, json!({"sub": "u", "realm_access": "flat"})).unwrap();
        assert!(t.groups.is_empty());

        let p = policy("https://example.com/groups", &[]);
        let t = build_from(&p, json!({"sub": "u", "https://example.com/groups": ["g"]})).unwrap();
        assert_eq!(t.groups, ["g"]);
    }

    #[test]
    fn selected_claims_are_rendered_as_text() {
        let p = policy(
            "groups",
            &["repository", "run_id", "flag", "obj", "absent", "nil"],
        );
        let t = build_from(
            &p,
            json!({"sub": "u", "repository": "acme/app", "run_id": 12345, "flag": true,
                   "obj": {"k": [1]}, "nil": null, "unselected": "x"}),
        )
        .unwrap();
        let expected: BTreeMap<String, String> = [
            ("repository", "acme/app"),
            ("run_id", "12345"),
            ("flag", "true"),
            ("obj", r#"{"k":[1]}"#),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(t.claims, expected);
    }

    #[test]
    fn sub_is_required() {
        let p = policy("groups", &[]);
        assert_eq!(
            build_from(&p, json!({})).unwrap_err(),
            TokenError::MissingClaim("sub")
        );
        assert_eq!(
            build_from(&p, json!({"sub": ""})).unwrap_err(),
            TokenError::MissingClaim("sub")
        );
        assert!(matches!(
            build_from(&p, json!({"sub": 1})).unwrap_err(),
            TokenError::Malformed(_)
        ));
    }
}
