//! Typed identifiers shared by the shard store, the HTTP API and the client.

use std::fmt;
use std::str::FromStr;

/// Why an identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Object ids are 32 lowercase hex characters (16 bytes).
    #[error("object id must be 32 lowercase hex characters, got {0:?}")]
    ObjectId(String),
    /// Node ids are 1..=63 characters of `[a-z0-9._-]`, starting with a letter or digit.
    #[error(
        "node id must be 1-63 characters of [a-z0-9._-] starting with a letter or digit, got {0:?}"
    )]
    NodeId(String),
    /// Shard indexes are small decimal integers.
    #[error("shard index must be a decimal integer below 256, got {0:?}")]
    ShardIndex(String),
}

/// 128-bit identifier of one stored object generation; every shard of it carries the same id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId([u8; 16]);

impl ObjectId {
    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Lowercase hex, the form used in URLs and file names.
    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(32);
        for b in self.0 {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 0xf) as usize] as char);
        }
        s
    }
}

impl FromStr for ObjectId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IdError::ObjectId(s.chars().take(80).collect());
        let bytes = s.as_bytes();
        if bytes.len() != 32 {
            return Err(err());
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 16];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = nibble(pair[0]).ok_or_else(err)?;
            let lo = nibble(pair[1]).ok_or_else(err)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.to_hex())
    }
}

impl serde::Serialize for ObjectId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for ObjectId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Position of a shard within its stripe set: `0..k` are data shards, `k..k+m` parity.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ShardIndex(pub u8);

impl FromStr for ShardIndex {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::ShardIndex(s.chars().take(80).collect()));
        }
        s.parse::<u8>()
            .map(ShardIndex)
            .map_err(|_| IdError::ShardIndex(s.to_string()))
    }
}

impl fmt::Display for ShardIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Name of a storage node, stable across restarts (in Kubernetes: the pod name).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, serde::Serialize)]
#[serde(transparent)]
pub struct NodeId(String);

impl NodeId {
    /// Longest accepted node id; keeps headers and metric labels small.
    pub const MAX_LEN: usize = 63;

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NodeId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            });
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(IdError::NodeId(s.chars().take(80).collect()))
        }
    }
}

impl<'de> serde::Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_id_round_trips_through_hex() {
        let id = ObjectId::from_bytes([0xab; 16]);
        assert_eq!(id.to_hex(), "ab".repeat(16));
        assert_eq!(id.to_hex().parse::<ObjectId>().unwrap(), id);
    }

    #[test]
    fn object_id_rejects_bad_text() {
        for bad in [
            "",
            "abc",
            &"AB".repeat(16),
            &"zz".repeat(16),
            &"a".repeat(33),
            "../../etc/passwd",
        ] {
            assert!(bad.parse::<ObjectId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn shard_index_parses_only_small_decimals() {
        assert_eq!("7".parse::<ShardIndex>().unwrap(), ShardIndex(7));
        assert_eq!("255".parse::<ShardIndex>().unwrap(), ShardIndex(255));
        for bad in ["", "-1", "256", "1000", "+1", "0x1", " 1"] {
            assert!(bad.parse::<ShardIndex>().is_err(), "{bad}");
        }
    }

    #[test]
    fn node_id_rules() {
        assert!("node-a1".parse::<NodeId>().is_ok());
        assert!("cairn-store-a-0.cairn".parse::<NodeId>().is_ok());
        for bad in [
            "",
            "-x",
            "Node",
            "a b",
            "a/b",
            &"x".repeat(64),
            "a=b",
            "a,b",
        ] {
            assert!(bad.parse::<NodeId>().is_err(), "{bad}");
        }
    }
}
