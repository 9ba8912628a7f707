//! The on-disk shard file format (version 1). See `docs/shard-format.md`.
//!
//! A shard file is a header followed by the shard's blocks. Block `i` of a shard holds this shard's
//! share of stripe `i` of the object, so every block can be verified (and repaired) on its own.
//! The header carries a CRC32C of every block and a CRC32C of itself, so no byte of a shard is
//! ever trusted without a check.

use crate::codec::{CodecError, ErasureProfile, shard_len};
use crate::ids::{NodeId, ObjectId, ShardIndex};

/// First bytes of every shard file.
pub const MAGIC: &[u8; 8] = b"CAIRNSHD";
/// The format version this code writes.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before the variable part: magic, version, header length.
pub const PREAMBLE_LEN: usize = 8 + 2 + 4;
/// Upper bound on a header, which bounds the memory a corrupt length field can make us allocate.
pub const MAX_HEADER_LEN: usize = 64 << 20;
/// Smallest and largest stripe (data bytes per stripe across the k data shards).
pub const MIN_STRIPE_SIZE: u32 = 2;
/// Largest stripe; keeps per-request memory bounded to a few stripes.
pub const MAX_STRIPE_SIZE: u32 = 64 << 20;
/// Longest endpoint accepted in a placement entry.
pub const MAX_ENDPOINT_LEN: usize = 255;

/// Why a shard header could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The bytes are not a shard header, or fail their checksum.
    #[error("corrupt shard header: {0}")]
    Corrupt(&'static str),
    /// Written by a newer (or unknown) format version.
    #[error("unsupported shard format version {0}")]
    UnsupportedVersion(u16),
    /// The erasure profile is not valid.
    #[error(transparent)]
    Profile(#[from] CodecError),
    /// The fields do not describe a valid shard.
    #[error("invalid shard layout: {0}")]
    Invalid(String),
}

/// Where one shard index of an object lives.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlacementEntry {
    /// The storage node holding the shard.
    pub node: NodeId,
    /// Base URL of that node's API (`http://host:port`), a hint for peer repair.
    pub endpoint: String,
}

impl PlacementEntry {
    /// Checks the endpoint is a plain http(s) URL without separators we use in headers.
    pub fn validate(&self) -> Result<(), FormatError> {
        let e = &self.endpoint;
        let ok = e.len() <= MAX_ENDPOINT_LEN
            && (e.starts_with("http://") || e.starts_with("https://"))
            && e.bytes()
                .all(|b| b.is_ascii_graphic() && b != b',' && b != b'=');
        if ok {
            Ok(())
        } else {
            Err(FormatError::Invalid(format!(
                "bad endpoint {e:?} for node {}",
                self.node
            )))
        }
    }
}

/// How an object's bytes map onto the blocks of each shard. Pure arithmetic, shared by writers,
/// readers, the scrubber and the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Data shards per stripe.
    pub data_shards: usize,
    /// Object bytes per full stripe.
    pub stripe_size: u64,
    /// Total object bytes.
    pub object_length: u64,
}

impl Geometry {
    /// Number of stripes (and so blocks in every shard); 0 for an empty object.
    pub fn block_count(&self) -> u64 {
        self.object_length.div_ceil(self.stripe_size)
    }

    /// Object bytes held by stripe `i`.
    pub fn stripe_data_len(&self, i: u64) -> u64 {
        let start = i * self.stripe_size;
        (self.object_length - start).min(self.stripe_size)
    }

    /// Bytes of block `i` in each shard.
    pub fn block_len(&self, i: u64) -> u64 {
        shard_len(self.stripe_data_len(i) as usize, self.data_shards) as u64
    }

    /// Bytes of a full block.
    pub fn full_block_len(&self) -> u64 {
        shard_len(self.stripe_size as usize, self.data_shards) as u64
    }

    /// Offset of block `i` within the shard payload.
    pub fn block_offset(&self, i: u64) -> u64 {
        i * self.full_block_len()
    }

    /// Bytes of one shard's payload (all blocks).
    pub fn shard_payload_len(&self) -> u64 {
        match self.block_count() {
            0 => 0,
            n => (n - 1) * self.full_block_len() + self.block_len(n - 1),
        }
    }

    /// The block holding payload byte `offset`.
    pub fn block_of(&self, offset: u64) -> u64 {
        offset / self.full_block_len()
    }
}

/// Everything that describes a shard except its block checksums: what a writer supplies.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardSpec {
    /// The object this shard belongs to.
    pub object_id: ObjectId,
    /// Which shard of the stripe set this is.
    pub shard_index: ShardIndex,
    /// The erasure profile the object was encoded with.
    pub profile: ErasureProfile,
    /// Object bytes per stripe.
    pub stripe_size: u32,
    /// Total object bytes.
    pub object_length: u64,
    /// Holder of every shard index, `k + m` entries.
    pub placement: Vec<PlacementEntry>,
}

impl ShardSpec {
    /// Checks every field against the others.
    pub fn validate(&self) -> Result<(), FormatError> {
        let n = self.profile.total_shards();
        if usize::from(self.shard_index.0) >= n {
            return Err(FormatError::Invalid(format!(
                "shard index {} out of range for {} (0..{n})",
                self.shard_index, self.profile
            )));
        }
        if !(MIN_STRIPE_SIZE..=MAX_STRIPE_SIZE).contains(&self.stripe_size) {
            return Err(FormatError::Invalid(format!(
                "stripe size {} outside {MIN_STRIPE_SIZE}..={MAX_STRIPE_SIZE}",
                self.stripe_size
            )));
        }
        if self.placement.len() != n {
            return Err(FormatError::Invalid(format!(
                "placement has {} entries, {} needs {n}",
                self.placement.len(),
                self.profile
            )));
        }
        for entry in &self.placement {
            entry.validate()?;
        }
        let header_len = header_len(n, &self.placement, self.geometry().block_count());
        if header_len > MAX_HEADER_LEN as u64 {
            return Err(FormatError::Invalid(format!(
                "object of {} bytes in stripes of {} needs too many blocks",
                self.object_length, self.stripe_size
            )));
        }
        Ok(())
    }

    /// The block layout this spec implies.
    pub fn geometry(&self) -> Geometry {
        Geometry {
            data_shards: self.profile.data_shards(),
            stripe_size: u64::from(self.stripe_size),
            object_length: self.object_length,
        }
    }

    /// Exact length of the encoded header for this spec.
    pub fn header_len(&self) -> u64 {
        header_len(
            self.profile.total_shards(),
            &self.placement,
            self.geometry().block_count(),
        )
    }

    /// The same object and layout, for another shard index (used by repair).
    pub fn for_index(&self, shard_index: ShardIndex) -> ShardSpec {
        ShardSpec {
            shard_index,
            ..self.clone()
        }
    }
}

fn header_len(_shards: usize, placement: &[PlacementEntry], blocks: u64) -> u64 {
    let fixed = PREAMBLE_LEN + 16 + 4 + 4 + 8 + 2;
    let placement: usize = placement
        .iter()
        .map(|p| 1 + p.node.as_str().len() + 2 + p.endpoint.len())
        .sum();
    // Saturating: a spec is measured before it is validated, and its length may be absurd.
    ((fixed + placement + 4) as u64)
        .saturating_add(blocks.saturating_mul(4))
        .saturating_add(4)
}

/// A complete, verified shard header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardHeader {
    /// The shard's description.
    pub spec: ShardSpec,
    /// CRC32C of every block, in order.
    pub block_checksums: Vec<u32>,
}

impl ShardHeader {
    /// Serialises the header, ending with its own CRC32C.
    pub fn encode(&self) -> Vec<u8> {
        let spec = &self.spec;
        let len = spec.header_len() as usize;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.extend_from_slice(spec.object_id.as_bytes());
        out.push(spec.shard_index.0);
        out.push(spec.profile.data_shards() as u8);
        out.push(spec.profile.parity_shards() as u8);
        out.push(0); // reserved
        out.extend_from_slice(&spec.stripe_size.to_le_bytes());
        out.extend_from_slice(&spec.object_length.to_le_bytes());
        out.extend_from_slice(&(spec.placement.len() as u16).to_le_bytes());
        for p in &spec.placement {
            out.push(p.node.as_str().len() as u8);
            out.extend_from_slice(p.node.as_str().as_bytes());
            out.extend_from_slice(&(p.endpoint.len() as u16).to_le_bytes());
            out.extend_from_slice(p.endpoint.as_bytes());
        }
        out.extend_from_slice(&(self.block_checksums.len() as u32).to_le_bytes());
        for c in &self.block_checksums {
            out.extend_from_slice(&c.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(out.len(), len);
        out
    }

    /// Reads the total header length from the preamble, so a reader knows how much to load.
    pub fn header_len_from_preamble(preamble: &[u8]) -> Result<usize, FormatError> {
        if preamble.len() < PREAMBLE_LEN {
            return Err(FormatError::Corrupt(
                "file shorter than the header preamble",
            ));
        }
        if &preamble[..8] != MAGIC {
            return Err(FormatError::Corrupt("bad magic"));
        }
        let version = u16::from_le_bytes([preamble[8], preamble[9]]);
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let len = u32::from_le_bytes(preamble[10..14].try_into().expect("4 bytes")) as usize;
        if !(PREAMBLE_LEN + 4..=MAX_HEADER_LEN).contains(&len) {
            return Err(FormatError::Corrupt("header length out of range"));
        }
        Ok(len)
    }

    /// Parses and verifies a whole header (`bytes` is exactly the header).
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let len = Self::header_len_from_preamble(bytes)?;
        if bytes.len() != len {
            return Err(FormatError::Corrupt("header length mismatch"));
        }
        let (body, crc) = bytes.split_at(len - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(FormatError::Corrupt("header checksum mismatch"));
        }
        let mut r = Reader {
            buf: body,
            pos: PREAMBLE_LEN,
        };
        let object_id = ObjectId::from_bytes(r.take(16)?.try_into().expect("16 bytes"));
        let shard_index = ShardIndex(r.u8()?);
        let k = r.u8()?;
        let m = r.u8()?;
        let _reserved = r.u8()?;
        let profile = ErasureProfile::new(k, m)?;
        let stripe_size = r.u32()?;
        let object_length = r.u64()?;
        let count = r.u16()? as usize;
        let mut placement = Vec::with_capacity(count.min(256));
        for _ in 0..count {
            let nlen = r.u8()? as usize;
            let node = std::str::from_utf8(r.take(nlen)?)
                .ok()
                .and_then(|s| s.parse::<NodeId>().ok())
                .ok_or(FormatError::Corrupt("bad node id in placement"))?;
            let elen = r.u16()? as usize;
            let endpoint = std::str::from_utf8(r.take(elen)?)
                .map_err(|_| FormatError::Corrupt("bad endpoint in placement"))?
                .to_string();
            placement.push(PlacementEntry { node, endpoint });
        }
        let blocks = r.u32()? as usize;
        let mut block_checksums = Vec::with_capacity(blocks);
        for _ in 0..blocks {
            block_checksums.push(r.u32()?);
        }
        if r.pos != body.len() {
            return Err(FormatError::Corrupt("trailing bytes in header"));
        }
        let spec = ShardSpec {
            object_id,
            shard_index,
            profile,
            stripe_size,
            object_length,
            placement,
        };
        spec.validate()?;
        if spec.geometry().block_count() != blocks as u64 {
            return Err(FormatError::Corrupt(
                "block count does not match the object length",
            ));
        }
        Ok(Self {
            spec,
            block_checksums,
        })
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(FormatError::Corrupt("header truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_spec(k: u8, m: u8, stripe: u32, len: u64) -> ShardSpec {
        let n = usize::from(k + m);
        ShardSpec {
            object_id: ObjectId::from_bytes([7; 16]),
            shard_index: ShardIndex(1),
            profile: ErasureProfile::new(k, m).unwrap(),
            stripe_size: stripe,
            object_length: len,
            placement: (0..n)
                .map(|i| PlacementEntry {
                    node: format!("node-{i}").parse().unwrap(),
                    endpoint: format!("http://127.0.0.1:{}", 7000 + i),
                })
                .collect(),
        }
    }

    #[test]
    fn geometry_covers_the_object_exactly() {
        let g = Geometry {
            data_shards: 4,
            stripe_size: 1000,
            object_length: 2500,
        };
        assert_eq!(g.block_count(), 3);
        assert_eq!(g.full_block_len(), 250);
        assert_eq!(g.block_len(2), 126); // 500 bytes / 4 = 125, rounded up to even
        assert_eq!(g.shard_payload_len(), 250 + 250 + 126);
        assert_eq!(g.block_of(499), 1);
        let empty = Geometry {
            object_length: 0,
            ..g
        };
        assert_eq!(empty.block_count(), 0);
        assert_eq!(empty.shard_payload_len(), 0);
    }

    #[test]
    fn header_round_trips() {
        let spec = sample_spec(4, 2, 1 << 20, 3 * (1 << 20) + 17);
        let header = ShardHeader {
            block_checksums: vec![1, 2, 3, 4],
            spec,
        };
        let bytes = header.encode();
        assert_eq!(bytes.len() as u64, header.spec.header_len());
        assert_eq!(ShardHeader::decode(&bytes).unwrap(), header);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let spec = sample_spec(2, 1, 64, 200);
        let header = ShardHeader {
            block_checksums: vec![9; 4],
            spec,
        };
        let bytes = header.encode();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(
                ShardHeader::decode(&bad).is_err(),
                "flip at {i} not detected"
            );
        }
    }

    #[test]
    fn unknown_version_is_refused() {
        let header = ShardHeader {
            block_checksums: vec![0; 4],
            spec: sample_spec(2, 1, 64, 200),
        };
        let mut bytes = header.encode();
        bytes[8] = 2;
        assert!(matches!(
            ShardHeader::decode(&bytes),
            Err(FormatError::UnsupportedVersion(2))
        ));
    }

    #[test]
    fn invalid_specs_are_rejected() {
        let mut s = sample_spec(4, 2, 1024, 10);
        s.shard_index = ShardIndex(6);
        assert!(s.validate().is_err());
        let mut s = sample_spec(4, 2, 1024, 10);
        s.placement.pop();
        assert!(s.validate().is_err());
        let mut s = sample_spec(4, 2, 1, 10);
        s.stripe_size = 1;
        assert!(s.validate().is_err());
        let mut s = sample_spec(4, 2, 1024, 10);
        s.placement[0].endpoint = "ftp://x".into();
        assert!(s.validate().is_err());
        // 2^40 bytes in 2-byte stripes would need a header far beyond the cap; so would the
        // largest length there is (whose block arithmetic must not overflow).
        let s = sample_spec(1, 1, 2, 1 << 40);
        assert!(s.validate().is_err());
        let s = sample_spec(1, 1, 2, u64::MAX);
        assert!(s.validate().is_err());
    }

    proptest::proptest! {
        /// Any bytes: decoding a header never panics, and whatever decodes re-encodes to itself.
        #[test]
        fn arbitrary_headers_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            if let Ok(h) = ShardHeader::decode(&bytes) {
                proptest::prop_assert_eq!(h.encode(), bytes);
            }
        }

        /// A valid header with arbitrary bytes spliced in after its preamble: never a panic.
        #[test]
        fn mangled_headers_never_panic(at in 14usize..200, junk in proptest::collection::vec(proptest::num::u8::ANY, 1..40)) {
            let header = ShardHeader { block_checksums: vec![3; 4], spec: sample_spec(2, 1, 64, 200) };
            let mut bytes = header.encode();
            let at = at.min(bytes.len());
            bytes.splice(at..at, junk);
            let _ = ShardHeader::decode(&bytes);
        }

        /// Any numbers in a spec: validation never panics (no overflow), and a valid spec's
        /// geometry adds up.
        #[test]
        fn arbitrary_specs_never_panic(k in 1u8..20, m in 0u8..10, stripe in proptest::num::u32::ANY, len in proptest::num::u64::ANY) {
            if let Ok(profile) = ErasureProfile::new(k, m) {
                let mut s = sample_spec(1, 1, 64, 0);
                s.profile = profile;
                s.stripe_size = stripe;
                s.object_length = len;
                s.placement = (0..profile.total_shards()).map(|i| PlacementEntry {
                    node: format!("n{i}").parse().unwrap(),
                    endpoint: "http://h:1".into(),
                }).collect();
                if s.validate().is_ok() && s.geometry().block_count() < 10_000 {
                    let g = s.geometry();
                    let total: u64 = (0..g.block_count()).map(|b| g.block_len(b)).sum();
                    proptest::prop_assert_eq!(total, g.shard_payload_len());
                }
            }
        }
    }
}
