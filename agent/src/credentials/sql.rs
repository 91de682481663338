//! SQL text for the role statements: identifier and literal quoting, UTC
//! timestamp literals and session role names. Pure functions, no I/O.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Prefix of every role the agent mints; the reaper looks for it.
pub const ROLE_PREFIX: &str = "palisade_s_";

/// PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// A double-quoted identifier (always quoted, so case and any character
/// survive; embedded quotes doubled). Callers reject NUL beforehand.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal that means the same whatever
/// `standard_conforming_strings` is: quotes doubled, and backslashes
/// doubled under an `E''` prefix when there are any (as `quote_literal`).
pub fn quote_literal(value: &str) -> String {
    let doubled = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", doubled.replace('\\', "\\\\"))
    } else {
        format!("'{doubled}'")
    }
}

/// Whether `name` can be a role name: non-empty, at most 63 bytes (longer
/// names would be silently truncated by the server), no NUL.
pub fn valid_role_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_IDENTIFIER_BYTES && !name.contains('\0')
}

/// `palisade_s_<first 12 hex digits of the session id>_<suffix>`: says what
/// it is and which session it serves, unique through the random suffix.
pub fn role_name(session_id: &str, suffix: &str) -> String {
    let session: String = session_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .take(12)
        .collect();
    format!("{ROLE_PREFIX}{session}_{suffix}")
}

/// `t` rounded down to whole seconds (so `VALID UNTIL` is never later than
/// asked).
pub fn floor_to_second(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Broken-down UTC time: (year, month, day, hour, minute, second).
fn civil(t: SystemTime) -> (i64, u32, u32, u64, u64, u64) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
    )
}

/// A `timestamptz` literal body in UTC, whole seconds:
/// `2025-01-31 23:59:59+00`.
pub fn pg_timestamp(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}+00")
}

/// RFC 3339 in UTC, whole seconds: `2025-01-31T23:59:59Z` (for comments).
pub fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("palisade_ci_reader"), "\"palisade_ci_reader\"");
        assert_eq!(quote_ident("a\"b; drop role x"), "\"a\"\"b; drop role x\"");
        assert_eq!(quote_ident("Mixed Case"), "\"Mixed Case\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(
            quote_literal("{\"a\":\"b\\\"c\"}"),
            "E'{\"a\":\"b\\\\\"c\"}'"
        );
        assert_eq!(quote_literal(""), "''");
    }

    #[test]
    fn role_names() {
        assert!(valid_role_name("r"));
        assert!(!valid_role_name(""));
        assert!(!valid_role_name("a\0b"));
        assert!(!valid_role_name(&"x".repeat(64)));
        assert!(valid_role_name(&"é".repeat(31)));
        let n = role_name("0123ABCD-4567-89ab-cdef-0123456789ab", "a1b2c3");
        assert_eq!(n, "palisade_s_0123abcd4567_a1b2c3");
        assert!(valid_role_name(&n));
        // Hostile session ids cannot inject anything into the name.
        let n = role_name("\"; drop role postgres; --", "000000");
        assert_eq!(n, "palisade_s_dee_000000");
    }

    #[test]
    fn timestamps() {
        assert_eq!(pg_timestamp(UNIX_EPOCH), "1970-01-01 00:00:00+00");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // leap day 2000
        assert_eq!(pg_timestamp(t), "2000-02-29 00:00:00+00");
        let t = UNIX_EPOCH + Duration::from_millis(1_767_225_599_900);
        assert_eq!(pg_timestamp(t), "2025-12-31 23:59:59+00");
        assert_eq!(rfc3339(t), "2025-12-31T23:59:59Z");
        assert_eq!(
            floor_to_second(t),
            UNIX_EPOCH + Duration::from_secs(1_767_225_599)
        );
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_800); // 2100-01-01
        assert_eq!(pg_timestamp(t), "2100-01-01 00:00:00+00");
    }
}
