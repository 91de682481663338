//! Checks of the registered claims of a signature-verified token:
//! `exp` (required), `nbf` and `iat` (optional), all with leeway, and `aud`.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::error::TokenError;

/// Checks the token's validity period at `now` and returns its expiry.
///
/// Times are whole seconds since the epoch; a fractional NumericDate is
/// rounded down. `leeway` widens the window on both ends.
pub(crate) fn check_times(
    claims: &Map<String, Value>,
    now: SystemTime,
    leeway: Duration,
) -> Result<SystemTime, TokenError> {
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let leeway = leeway.as_secs();

    let exp = numeric_date(claims.get("exp"), "claim `exp` is not a valid time")?
        .ok_or(TokenError::MissingClaim("exp"))?;
    let expired_at = UNIX_EPOCH + Duration::from_secs(exp);
    if now > exp.saturating_add(leeway) {
        return Err(TokenError::Expired { expired_at });
    }
    let nbf = numeric_date(claims.get("nbf"), "claim `nbf` is not a valid time")?;
    let iat = numeric_date(claims.get("iat"), "claim `iat` is not a valid time")?;
    for start in [nbf, iat].into_iter().flatten() {
        if start > now.saturating_add(leeway) {
            return Err(TokenError::NotYetValid);
        }
    }
    Ok(expired_at)
}

/// Reads an optional NumericDate claim. `null` counts as absent.
fn numeric_date(value: Option<&Value>, invalid: &'static str) -> Result<Option<u64>, TokenError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(secs) = n.as_u64() {
                return Ok(Some(secs));
            }
            match n.as_f64() {
                // `as` saturates on out-of-range floats; the range is checked first anyway
                Some(f) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => Ok(Some(f as u64)),
                _ => Err(TokenError::Malformed(invalid)),
            }
        }
        Some(_) => Err(TokenError::Malformed(invalid)),
    }
}

/// Checks that `aud` (a string or an array of strings) names one of `accepted`.
///
/// A missing `aud` fails too: a token that names no audience was not minted for us.
pub(crate) fn check_audience(
    claims: &Map<String, Value>,
    accepted: &BTreeSet<String>,
) -> Result<(), TokenError> {
    let matched = match claims.get("aud") {
        Some(Value::String(aud)) => accepted.contains(aud),
        Some(Value::Array(auds)) => auds
            .iter()
            .any(|a| a.as_str().is_some_and(|a| accepted.contains(a))),
        Some(_) | None => false,
    };
    if matched {
        Ok(())
    } else {
        Err(TokenError::WrongAudience)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;
    const LEEWAY: Duration = Duration::from_secs(30);

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn times(claims: Value) -> Result<SystemTime, TokenError> {
        check_times(claims.as_object().unwrap(), at(NOW), LEEWAY)
    }

    #[test]
    fn exp_is_required_and_leeway_applies() {
        assert_eq!(times(json!({"exp": NOW + 60})).unwrap(), at(NOW + 60));
        assert_eq!(times(json!({"exp": NOW - 30})).unwrap(), at(NOW - 30));
        assert_eq!(
            times(json!({"exp": NOW - 31})).unwrap_err(),
            TokenError::Expired {
                expired_at: at(NOW - 31)
            }
        );
        assert_eq!(
            times(json!({})).unwrap_err(),
            TokenError::MissingClaim("exp")
        );
        assert_eq!(
            times(json!({"exp": null})).unwrap_err(),
            TokenError::MissingClaim("exp")
        );
        assert!(matches!(
            times(json!({"exp": "soon"})).unwrap_err(),
            TokenError::Malformed(_)
        ));
        assert!(matches!(
            times(json!({"exp": -5})).unwrap_err(),
            TokenError::Malformed(_)
        ));
        assert_eq!(
            times(json!({"exp": (NOW + 5) as f64 + 0.5})).unwrap(),
            at(NOW + 5)
        );
    }

    #[test]
    fn nbf_and_iat_are_optional_with_leeway() {
        let exp = NOW + 600;
        assert!(times(json!({"exp": exp, "nbf": NOW + 30, "iat": NOW + 30})).is_ok());
        assert_eq!(
            times(json!({"exp": exp, "nbf": NOW + 31})).unwrap_err(),
            TokenError::NotYetValid
        );
        assert_eq!(
            times(json!({"exp": exp, "iat": NOW + 31})).unwrap_err(),
            TokenError::NotYetValid
        );
        assert!(matches!(
            times(json!({"exp": exp, "iat": "x"})).unwrap_err(),
            TokenError::Malformed(_)
        ));
    }

    #[test]
    fn audience_string_or_array() {
        let accepted: BTreeSet<String> = ["palisade".to_owned(), "db".to_owned()].into();
        let aud = |v: Value| check_audience(json!({ "aud": v }).as_object().unwrap(), &accepted);
        assert!(aud(json!("palisade")).is_ok());
        assert!(aud(json!(["other", "db"])).is_ok());
        assert_eq!(aud(json!("other")).unwrap_err(), TokenError::WrongAudience);
        assert_eq!(aud(json!([])).unwrap_err(), TokenError::WrongAudience);
        assert_eq!(
            aud(json!(["palisadeX", 1])).unwrap_err(),
            TokenError::WrongAudience
        );
        assert_eq!(aud(json!(null)).unwrap_err(), TokenError::WrongAudience);
        assert_eq!(
            check_audience(&Map::new(), &accepted).unwrap_err(),
            TokenError::WrongAudience
        );
    }
}
