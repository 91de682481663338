//! The generated password, kept out of every log line, error and `Debug`
//! output by its type.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;

/// Bytes of randomness in a generated password (base64url, 43 characters).
pub const PASSWORD_BYTES: usize = 32;

/// A password the agent generated for a session role. Its `Debug` and
/// `Display` print `[redacted]`, so it cannot leak through `tracing` fields,
/// error messages or `{:?}` of a struct that holds it; only
/// [`Secret::expose`] reads it, at the one place that authenticates.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A fresh password of [`PASSWORD_BYTES`] random bytes from the OS-seeded
    /// CSPRNG, base64url without padding (no quoting issues anywhere).
    pub fn generate() -> Self {
        let mut bytes = [0u8; PASSWORD_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The password itself, for authenticating upstream. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_and_random() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        assert_eq!(format!("{a:?}"), "[redacted]");
        assert_eq!(a.to_string(), "[redacted]");
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
