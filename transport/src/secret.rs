//! Secrets (tokens, keys): never printed by `Debug` or `Display`, and never shorter than their
//! purpose needs.

use std::sync::Arc;

/// Shortest fleet secret, admin token or sealing key accepted: 32 characters (a random
/// alphanumeric string of that length carries about 190 bits).
pub const MIN_SECRET_LEN: usize = 32;

/// Why a secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Shorter than its minimum.
    #[error("{what} must be at least {min} characters long (got {got})")]
    TooShort {
        what: &'static str,
        min: usize,
        got: usize,
    },
    /// Not set where it is required.
    #[error("{0} must be set")]
    Missing(&'static str),
}

/// A secret string. Cheap to clone; its `Debug` says `<redacted>`, and it has no `Display`, so
/// a log line or a config dump can only show it through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// `value` as a secret named `what` (for the error), if it is at least `min` characters.
    pub fn new(what: &'static str, value: &str, min: usize) -> Result<Self, SecretError> {
        let got = value.chars().count();
        if got < min {
            return Err(SecretError::TooShort { what, min, got });
        }
        Ok(Self(value.into()))
    }

    /// The secret itself: for keys and comparisons, never for output.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The secret in the environment variable `var`, if set and not empty, checked for `min`.
    pub fn from_env(var: &'static str, min: usize) -> Result<Option<Self>, SecretError> {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => Self::new(var, &v, min).map(Some),
            _ => Ok(None),
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Parses a secret of at least [`MIN_SECRET_LEN`] characters (a `clap` value parser).
pub fn parse_secret(value: &str) -> Result<Secret, String> {
    Secret::new("the secret", value, MIN_SECRET_LEN).map_err(|e| e.to_string())
}

/// Random bytes as lowercase hex: `n` bytes give `2n` characters.
pub fn random_hex(n: usize) -> String {
    use ring::rand::SecureRandom;
    let mut bytes = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    hex(&bytes)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Equality of two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_itself_and_refuses_to_be_short() {
        let s = Secret::new("token", "0123456789abcdef0123456789abcdef", 32).unwrap();
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(<redacted>)");
        assert_eq!(s.expose(), "0123456789abcdef0123456789abcdef");
        let e = Secret::new("token", "short", 32).unwrap_err();
        assert_eq!(
            e,
            SecretError::TooShort {
                what: "token",
                min: 32,
                got: 5
            }
        );
        assert!(!e.to_string().contains("short"), "{e}");
        assert!(parse_secret("x").is_err());
    }

    #[test]
    fn hex_and_comparison() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(random_hex(16).len(), 32);
        assert_ne!(random_hex(16), random_hex(16));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
