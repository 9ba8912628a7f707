//! Version ids and the inputs that make a mutation deterministic.
//!
//! A version id is 32 lowercase hex digits: the version's sequence number among the versions of
//! its key (16 digits), then a nonce the caller chose (16 digits). The sequence makes a lookup by
//! id one point read of the noncurrent version (`keys::version`) and gives paging by
//! version-id-marker a position even if that version has since been deleted; the nonce keeps ids
//! unique when sequence numbers are reused after every version of a key was deleted.

use std::fmt;

/// The name S3 gives the version written while versioning was off or suspended.
pub const NULL: &str = "null";

/// A version id other than `null`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionId {
    seq: u64,
    text: String,
}

impl VersionId {
    /// The id of version `seq` written with `nonce`.
    pub fn new(seq: u64, nonce: u64) -> Self {
        Self {
            seq,
            text: format!("{seq:016x}{nonce:016x}"),
        }
    }

    /// Parses an id this index made; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let seq = u64::from_str_radix(&s[..16], 16).ok()?;
        Some(Self {
            seq,
            text: s.to_string(),
        })
    }

    /// The sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The id as clients see it.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A version named by a client: `null` or an id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VersionRef {
    /// The null version.
    Null,
    /// A version with an id.
    Id(VersionId),
}

/// A version id that is neither `null` nor one this index makes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version id {0:?}")]
pub struct InvalidVersionId(pub String);

impl VersionRef {
    /// Parses a client's version id.
    pub fn parse(s: &str) -> Result<Self, InvalidVersionId> {
        if s == NULL {
            return Ok(VersionRef::Null);
        }
        VersionId::parse(s)
            .map(VersionRef::Id)
            .ok_or_else(|| InvalidVersionId(s.to_string()))
    }

    /// `true` if a version stored with `version_id` (`None` = null) is this one.
    pub fn matches(&self, version_id: Option<&str>) -> bool {
        match self {
            VersionRef::Null => version_id.is_none(),
            VersionRef::Id(id) => version_id == Some(id.as_str()),
        }
    }
}

/// A stored version id as clients see it (`None` is the null version).
pub fn display(version_id: Option<&str>) -> &str {
    version_id.unwrap_or(NULL)
}

/// The caller's inputs to a mutation: the time and a random nonce. A mutation computes everything
/// else from them and the state it reads, so a replicated index can apply the same mutation on
/// every replica and get the same result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Unix milliseconds: last-modified time of what the mutation creates, base of garbage due times.
    pub now_ms: i64,
    /// Randomness for version ids.
    pub nonce: u64,
}

impl Stamp {
    /// Now, with a fresh random nonce.
    pub fn now() -> Self {
        Self {
            now_ms: super::now_ms(),
            nonce: rand::random(),
        }
    }

    /// A stamp at `now_ms` with `nonce` (tests, lifecycle runs on a test clock).
    pub fn at(now_ms: i64, nonce: u64) -> Self {
        Self { now_ms, nonce }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_junk_is_refused() {
        let id = VersionId::new(7, 0xdead_beef);
        assert_eq!(id.as_str(), "000000000000000700000000deadbeef");
        assert_eq!(VersionId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(
            VersionRef::parse(id.as_str()).unwrap(),
            VersionRef::Id(id.clone())
        );
        assert_eq!(VersionRef::parse("null").unwrap(), VersionRef::Null);
        for junk in [
            "",
            "NULL",
            "xyz",
            &"0".repeat(31),
            &"G".repeat(32),
            &"A".repeat(32),
        ] {
            assert!(VersionRef::parse(junk).is_err(), "{junk}");
        }
        assert!(VersionRef::Null.matches(None));
        assert!(!VersionRef::Null.matches(Some(id.as_str())));
        assert!(VersionRef::Id(id.clone()).matches(Some(id.as_str())));
        assert!(!VersionRef::Id(id).matches(None));
    }
}
