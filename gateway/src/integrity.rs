//! End-to-end integrity of erasure-coded data: when a gateway writes a blob it records a digest
//! of every stripe's data in the blob's index entry; when it reads one back, each stripe it
//! assembles (from data shards, or decoded from parity) must match its digest before a byte of
//! it reaches the client. Storage nodes check their own per-block CRCs, which catch bit rot;
//! these digests catch what a CRC cannot: a node (or anyone who can write its disk) returning
//! well-formed but wrong bytes. A mismatch makes the reader find which shards lie and decode
//! around them (`data/reader.rs`), never return them.
//!
//! The digest is BLAKE3 truncated to 128 bits: collision-resistant enough that an uploader
//! cannot craft two stripes with one digest, and fast enough (several GB/s on one core) not to
//! show in throughput.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes of one stripe digest.
pub const DIGEST_LEN: usize = 16;

/// One stripe's digest.
pub type StripeDigest = [u8; DIGEST_LEN];

/// The digest of a stripe's data.
pub fn digest(data: &[u8]) -> StripeDigest {
    let mut out = [0u8; DIGEST_LEN];
    out.copy_from_slice(&blake3::hash(data).as_bytes()[..DIGEST_LEN]);
    out
}

/// The digests of a blob's stripes, in order. Empty for blobs written before digests were
/// recorded: those are read unchecked (their nodes' CRCs still apply).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StripeDigests(Vec<StripeDigest>);

/// What a stripe's data says against its recorded digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// No digest was recorded for it (an older blob).
    Unrecorded,
    /// It matches.
    Match,
    /// It does not: the bytes are wrong.
    Mismatch,
}

impl StripeDigests {
    /// Records the next stripe's data.
    pub fn push_stripe(&mut self, data: &[u8]) {
        self.0.push(digest(data));
    }

    /// Stripes recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `true` when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks stripe `i`'s data.
    pub fn check(&self, i: u64, data: &[u8]) -> Check {
        match self.0.get(i as usize) {
            None => Check::Unrecorded,
            Some(d) if *d == digest(data) => Check::Match,
            Some(_) => Check::Mismatch,
        }
    }
}

impl Serialize for StripeDigests {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        let bytes: Vec<u8> = self.0.iter().flatten().copied().collect();
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }
}

impl<'de> Deserialize<'de> for StripeDigests {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine;
        let s = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)?;
        if bytes.len() % DIGEST_LEN != 0 {
            return Err(serde::de::Error::custom(
                "stripe digests are not a whole number of digests",
            ));
        }
        Ok(Self(
            bytes
                .chunks_exact(DIGEST_LEN)
                .map(|c| c.try_into().expect("exact chunks"))
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_check_round_trip_and_refuse_ragged_input() {
        let mut d = StripeDigests::default();
        d.push_stripe(b"first stripe");
        d.push_stripe(b"second stripe");
        assert_eq!(d.check(0, b"first stripe"), Check::Match);
        assert_eq!(d.check(1, b"second stripe"), Check::Match);
        assert_eq!(d.check(1, b"second stripE"), Check::Mismatch);
        assert_eq!(d.check(2, b"anything"), Check::Unrecorded);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<StripeDigests>(&json).unwrap(), d);
        assert!(serde_json::from_str::<StripeDigests>("\"AAAA\"").is_err());
        assert_eq!(StripeDigests::default().check(0, b""), Check::Unrecorded);
    }
}
