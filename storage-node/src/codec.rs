//! Erasure coding of stripes: k data shards + m parity shards (Reed-Solomon over GF(2^8)).
//!
//! The engine is `reed-solomon-erasure` (Vandermonde-derived matrix, SIMD multiply), which
//! `benches/codec.rs` measured faster than `reed-solomon-simd` for every profile Cairn uses, and
//! 5-10x faster to reconstruct. It supports k + m <= 256, so every profile within
//! [`MAX_DATA_SHARDS`] x [`MAX_PARITY_SHARDS`] (including k = 1) works; our limits are a policy
//! choice (header size, per-stripe fan-out). Shard sizes stay even ([`shard_len`]) because shard
//! format version 1 defines them so.
//!
//! Every length and count is validated here before the engine is called, so a caller error is
//! reported as a precise [`CodecError`] and never turns into wrong bytes.

use std::fmt;

use reed_solomon_erasure::galois_8::ReedSolomon;

/// Largest data-shard count a profile may have.
pub const MAX_DATA_SHARDS: u8 = 32;
/// Largest parity-shard count a profile may have.
pub const MAX_PARITY_SHARDS: u8 = 16;

/// Errors from profile validation, shard validation, and the Reed-Solomon engine.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The (data, parity) pair is outside the supported limits.
    #[error(
        "invalid erasure profile RS({data},{parity}): data shards must be 1..={max_data}, parity shards 1..={max_parity}"
    )]
    InvalidProfile {
        /// Requested data-shard count.
        data: u8,
        /// Requested parity-shard count.
        parity: u8,
        /// Largest allowed data-shard count.
        max_data: u8,
        /// Largest allowed parity-shard count.
        max_parity: u8,
    },
    /// More shards are missing than there are parity shards.
    #[error(
        "{missing} shards missing but only {parity} parity shards: the stripe cannot be reconstructed"
    )]
    TooManyMissing {
        /// Number of missing shards.
        missing: usize,
        /// Number of parity shards in the profile.
        parity: usize,
    },
    /// The shard slice does not have k+m entries.
    #[error("expected {expected} shards, got {got}")]
    WrongShardCount {
        /// k+m.
        expected: usize,
        /// Number of entries passed.
        got: usize,
    },
    /// A shard's length differs from the others, or is odd or zero.
    #[error("shard {index} has {got} bytes, expected {expected}")]
    WrongShardLength {
        /// Index of the offending shard within the stripe.
        index: usize,
        /// Length it should have had.
        expected: usize,
        /// Length it had.
        got: usize,
    },
    /// The requested data length exceeds the data shards' capacity.
    #[error("stripe of {got} bytes exceeds what the shards can hold ({max})")]
    StripeTooLarge {
        /// Requested data length.
        got: usize,
        /// k * shard length.
        max: usize,
    },
    /// The Reed-Solomon engine reported an error (its Display text).
    #[error("reed-solomon engine: {0}")]
    Engine(String),
}

/// Converts an engine error; kept as text so `CodecError` stays `Eq` and engine-agnostic.
fn engine_err(e: reed_solomon_erasure::Error) -> CodecError {
    CodecError::Engine(e.to_string())
}

/// k data + m parity shards. Validated on construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
// Deserialization goes through `new` so a stored/received profile can never bypass validation.
#[serde(try_from = "RawProfile")]
pub struct ErasureProfile {
    data: u8,
    parity: u8,
}

/// Unvalidated wire form of [`ErasureProfile`] (same field names, so the format is unchanged).
#[derive(serde::Deserialize)]
struct RawProfile {
    data: u8,
    parity: u8,
}

impl TryFrom<RawProfile> for ErasureProfile {
    type Error = CodecError;

    fn try_from(raw: RawProfile) -> Result<Self, CodecError> {
        Self::new(raw.data, raw.parity)
    }
}

impl ErasureProfile {
    /// Validates `1 <= data <= MAX_DATA_SHARDS` and `1 <= parity <= MAX_PARITY_SHARDS`.
    pub fn new(data: u8, parity: u8) -> Result<Self, CodecError> {
        // parity = 0 would be plain striping: no redundancy, and the engine rejects it anyway.
        if data == 0 || parity == 0 || data > MAX_DATA_SHARDS || parity > MAX_PARITY_SHARDS {
            return Err(CodecError::InvalidProfile {
                data,
                parity,
                max_data: MAX_DATA_SHARDS,
                max_parity: MAX_PARITY_SHARDS,
            });
        }
        Ok(Self { data, parity })
    }

    /// Number of data shards (k).
    pub fn data_shards(&self) -> usize {
        usize::from(self.data)
    }

    /// Number of parity shards (m).
    pub fn parity_shards(&self) -> usize {
        usize::from(self.parity)
    }

    /// k + m.
    pub fn total_shards(&self) -> usize {
        self.data_shards() + self.parity_shards()
    }
}

impl fmt::Display for ErasureProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RS({},{})", self.data, self.parity)
    }
}

/// Bytes each shard gets for a stripe holding `data_len` bytes: ceil(data_len / k), rounded up to an even number, at least 2.
pub fn shard_len(data_len: usize, data_shards: usize) -> usize {
    // k = 0 is never a valid profile; treat it as 1 rather than panic on division by zero.
    let per_shard = data_len.div_ceil(data_shards.max(1));
    // The engine needs even, non-zero shard sizes. Saturation only matters for lengths no
    // slice can have (> isize::MAX), so it cannot under-size a real stripe.
    (per_shard.saturating_add(1) & !1).max(2)
}

/// Encoder/decoder for one profile. Backed by reed-solomon-erasure (GF(2^8), SIMD), which measured
/// 1.2-10x faster than reed-solomon-simd for the small profiles Cairn uses (see benches/codec.rs).
pub struct Codec {
    profile: ErasureProfile,
    // Built lazily: holds the encoding matrix and a cache of inverted matrices per erasure pattern.
    engine: Option<ReedSolomon>,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// What [`Codec::check_shards`] learned about a partially present stripe.
struct StripeShape {
    /// Common length of the present shards.
    shard_len: usize,
    /// Indexes of `None` slots, ascending.
    missing: Vec<usize>,
}

impl Codec {
    /// Creates a codec for `profile`; engine buffers are allocated on first use.
    pub fn new(profile: ErasureProfile) -> Self {
        Self {
            profile,
            engine: None,
        }
    }

    /// The profile this codec encodes and decodes.
    pub fn profile(&self) -> ErasureProfile {
        self.profile
    }

    /// Splits `data` into k zero-padded data shards of `shard_len(data.len(), k)` bytes and appends m parity shards.
    pub fn encode_stripe(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, CodecError> {
        let k = self.profile.data_shards();
        let len = shard_len(data.len(), k);

        let mut shards = Vec::with_capacity(self.profile.total_shards());
        let mut chunks = data.chunks(len);
        for _ in 0..k {
            // Trailing shards past the end of `data` (or partly past it) are zero-padded.
            // Copy then pad, rather than zero-fill then copy: each byte is written once.
            let mut shard = Vec::with_capacity(len);
            shard.extend_from_slice(chunks.next().unwrap_or_default());
            shard.resize(len, 0);
            shards.push(shard);
        }

        let parity = self.compute_parity(&shards, len)?;
        shards.extend(parity);
        Ok(shards)
    }

    /// Fills every `None` slot (data and parity) with its reconstructed shard; on error `shards` is unchanged.
    pub fn reconstruct(&mut self, shards: &mut [Option<Vec<u8>>]) -> Result<(), CodecError> {
        let shape = self.check_shards(shards)?;
        if shape.missing.is_empty() {
            return Ok(());
        }
        let k = self.profile.data_shards();

        let restored = self.restore_data(shards, &shape)?;
        let parity_missing = shape.missing.iter().any(|&i| i >= k);
        let parity = if parity_missing {
            // The engine only restores originals; missing parity is re-encoded from the
            // (now complete) data shards. Borrow present data from `shards`, restored from
            // `restored`, so nothing is written into `shards` until everything succeeded.
            let mut restored_iter = restored.iter();
            let data: Vec<&[u8]> = (0..k)
                .map(|i| match &shards[i] {
                    Some(s) => Ok(s.as_slice()),
                    None => match restored_iter.next() {
                        Some((j, s)) if *j == i => Ok(s.as_slice()),
                        _ => Err(CodecError::Engine(format!(
                            "data shard {i} was not restored"
                        ))),
                    },
                })
                .collect::<Result<_, _>>()?;
            Some(self.compute_parity(&data, shape.shard_len)?)
        } else {
            None
        };

        for (i, shard) in restored {
            shards[i] = Some(shard);
        }
        if let Some(parity) = parity {
            for (j, shard) in parity.into_iter().enumerate() {
                let slot = &mut shards[k + j];
                if slot.is_none() {
                    *slot = Some(shard);
                }
            }
        }
        Ok(())
    }

    /// Restores only missing data shards (parity slots stay `None`) and returns the first `data_len` bytes of the data.
    pub fn decode_stripe(
        &mut self,
        shards: &mut [Option<Vec<u8>>],
        data_len: usize,
    ) -> Result<Vec<u8>, CodecError> {
        let shape = self.check_shards(shards)?;
        let k = self.profile.data_shards();
        let max = k.saturating_mul(shape.shard_len);
        if data_len > max {
            return Err(CodecError::StripeTooLarge { got: data_len, max });
        }

        for (i, shard) in self.restore_data(shards, &shape)? {
            shards[i] = Some(shard);
        }

        let mut out = Vec::with_capacity(data_len);
        for slot in &shards[..k] {
            let remaining = data_len - out.len();
            if remaining == 0 {
                break;
            }
            let shard = slot
                .as_deref()
                .ok_or_else(|| CodecError::Engine("data shard was not restored".into()))?;
            out.extend_from_slice(&shard[..remaining.min(shard.len())]);
        }
        Ok(out)
    }

    /// With all k+m shards present, recomputes parity from the data shards; `Ok(true)` if it matches.
    pub fn verify(&mut self, shards: &[&[u8]]) -> Result<bool, CodecError> {
        let expected = self.profile.total_shards();
        if shards.len() != expected {
            return Err(CodecError::WrongShardCount {
                expected,
                got: shards.len(),
            });
        }
        let len = common_len(shards.iter().map(|s| Some(s.len())))?
            .ok_or(CodecError::WrongShardCount { expected, got: 0 })?;

        let k = self.profile.data_shards();
        let parity = self.compute_parity(&shards[..k], len)?;
        Ok(parity
            .iter()
            .zip(&shards[k..])
            .all(|(p, s)| p.as_slice() == *s))
    }

    /// Validates count and lengths of a partially present stripe and that it is recoverable.
    fn check_shards(&self, shards: &[Option<Vec<u8>>]) -> Result<StripeShape, CodecError> {
        let expected = self.profile.total_shards();
        if shards.len() != expected {
            return Err(CodecError::WrongShardCount {
                expected,
                got: shards.len(),
            });
        }
        let len = common_len(shards.iter().map(|s| s.as_ref().map(Vec::len)))?;
        let missing: Vec<usize> = (0..shards.len()).filter(|&i| shards[i].is_none()).collect();
        let parity = self.profile.parity_shards();
        // Also covers "all shards missing" (then `len` is None), since k+m > m.
        if missing.len() > parity {
            return Err(CodecError::TooManyMissing {
                missing: missing.len(),
                parity,
            });
        }
        match len {
            Some(shard_len) => Ok(StripeShape { shard_len, missing }),
            None => Err(CodecError::TooManyMissing {
                missing: missing.len(),
                parity,
            }),
        }
    }

    /// Decodes the missing data shards of a checked stripe; returns `(index, shard)` ascending.
    fn restore_data(
        &mut self,
        shards: &[Option<Vec<u8>>],
        shape: &StripeShape,
    ) -> Result<Vec<(usize, Vec<u8>)>, CodecError> {
        let k = self.profile.data_shards();
        let m = self.profile.parity_shards();
        let data_missing: Vec<usize> = shape.missing.iter().copied().filter(|&i| i < k).collect();
        if data_missing.is_empty() {
            return Ok(Vec::new());
        }

        // The engine rebuilds in place; it needs exactly k present shards, extras only cost copying.
        let mut work: Vec<Option<Vec<u8>>> = vec![None; k + m];
        let mut have = 0;
        for (i, shard) in shards.iter().enumerate() {
            if let Some(s) = shard
                && have < k
            {
                work[i] = Some(s.clone());
                have += 1;
            }
        }
        self.engine()?
            .reconstruct_data(&mut work)
            .map_err(engine_err)?;
        data_missing
            .into_iter()
            .map(|i| {
                let shard = work[i].take().ok_or_else(|| {
                    CodecError::Engine(format!("engine did not restore data shard {i}"))
                })?;
                Ok((i, shard))
            })
            .collect()
    }

    /// The engine for this profile, built on first use.
    fn engine(&mut self) -> Result<&ReedSolomon, CodecError> {
        if self.engine.is_none() {
            let (k, m) = (self.profile.data_shards(), self.profile.parity_shards());
            self.engine = Some(ReedSolomon::new(k, m).map_err(engine_err)?);
        }
        Ok(self.engine.as_ref().expect("just set"))
    }

    /// Computes the m parity shards for k data shards of `len` bytes each (caller checked lengths).
    fn compute_parity<S: AsRef<[u8]>>(
        &mut self,
        data: &[S],
        len: usize,
    ) -> Result<Vec<Vec<u8>>, CodecError> {
        let k = self.profile.data_shards();
        let m = self.profile.parity_shards();
        let mut parity = vec![vec![0u8; len]; m];
        debug_assert_eq!(data.len(), k);
        self.engine()?
            .encode_sep(data, &mut parity)
            .map_err(engine_err)?;
        Ok(parity)
    }
}

/// Common length of the present shards (`None` entries are skipped); `Ok(None)` if none present.
///
/// A length that differs from the first present shard's, or a first length that is odd or
/// zero (never produced by [`shard_len`], refused by the engine), is a `WrongShardLength`.
fn common_len(lens: impl Iterator<Item = Option<usize>>) -> Result<Option<usize>, CodecError> {
    let mut expected = None;
    for (index, got) in lens.enumerate() {
        let Some(got) = got else { continue };
        match expected {
            None => {
                if got == 0 || !got.is_multiple_of(2) {
                    // Report the nearest valid size so the message says what would be accepted.
                    let want = got.saturating_add(1) & !1;
                    return Err(CodecError::WrongShardLength {
                        index,
                        expected: want.max(2),
                        got,
                    });
                }
                expected = Some(got);
            }
            Some(e) if e != got => {
                return Err(CodecError::WrongShardLength {
                    index,
                    expected: e,
                    got,
                });
            }
            Some(_) => {}
        }
    }
    Ok(expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{RngCore, SeedableRng, rngs::StdRng};

    fn profile(k: u8, m: u8) -> ErasureProfile {
        ErasureProfile::new(k, m).unwrap()
    }

    fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut data = vec![0u8; len];
        StdRng::seed_from_u64(seed).fill_bytes(&mut data);
        data
    }

    fn present(shards: &[Vec<u8>]) -> Vec<Option<Vec<u8>>> {
        shards.iter().cloned().map(Some).collect()
    }

    #[test]
    fn shard_len_edges() {
        assert_eq!(shard_len(0, 4), 2);
        assert_eq!(shard_len(1, 4), 2);
        assert_eq!(shard_len(1, 1), 2);
        assert_eq!(shard_len(2, 1), 2);
        assert_eq!(shard_len(3, 1), 4);
        assert_eq!(shard_len(8, 4), 2);
        assert_eq!(shard_len(9, 4), 4);
        assert_eq!(shard_len(12, 4), 4);
        assert_eq!(shard_len(13, 4), 4);
        assert_eq!(shard_len(17, 4), 6);
        assert_eq!(shard_len(1 << 20, 4), 1 << 18);
        assert_eq!(shard_len(1 << 20, 6), 174_764); // ceil(1048576/6) = 174763 -> even
        assert_eq!(shard_len(100, 0), 100);
        assert_eq!(shard_len(usize::MAX, 1), usize::MAX - 1);
        for k in 1..=32 {
            for n in 0..200 {
                let l = shard_len(n, k);
                assert!(
                    l >= 2 && l.is_multiple_of(2) && l * k >= n,
                    "n={n} k={k} l={l}"
                );
                assert!(l == 2 || (l - 2) * k < n, "not minimal: n={n} k={k} l={l}");
            }
        }
    }

    #[test]
    fn profile_limits() {
        for k in 1..=MAX_DATA_SHARDS {
            for m in 1..=MAX_PARITY_SHARDS {
                let p = profile(k, m);
                assert_eq!(
                    (p.data_shards(), p.parity_shards()),
                    (k as usize, m as usize)
                );
                assert_eq!(p.total_shards(), (k + m) as usize);
            }
        }
        for (k, m) in [(0, 1), (1, 0), (0, 0), (33, 1), (1, 17), (255, 255)] {
            assert_eq!(
                ErasureProfile::new(k, m),
                Err(CodecError::InvalidProfile {
                    data: k,
                    parity: m,
                    max_data: MAX_DATA_SHARDS,
                    max_parity: MAX_PARITY_SHARDS
                })
            );
        }
        assert_eq!(profile(4, 2).to_string(), "RS(4,2)");
    }

    #[test]
    fn engine_supports_every_allowed_profile() {
        // Encode + lose m shards + reconstruct for the full allowed range, including k = 1.
        for k in 1..=MAX_DATA_SHARDS {
            for m in 1..=MAX_PARITY_SHARDS {
                let mut codec = Codec::new(profile(k, m));
                let data = random_bytes(3 * k as usize + 1, u64::from(k) * 100 + u64::from(m));
                let shards = codec.encode_stripe(&data).unwrap();
                let mut partial = present(&shards);
                // Lose the first m shards: data-heavy erasures for k >= m, all data + some parity otherwise.
                for slot in partial.iter_mut().take(m as usize) {
                    *slot = None;
                }
                codec.reconstruct(&mut partial).unwrap();
                assert_eq!(partial, present(&shards), "RS({k},{m})");
            }
        }
    }

    #[test]
    fn serde_roundtrip_validates() {
        let p = profile(10, 4);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"data":10,"parity":4}"#);
        assert_eq!(serde_json::from_str::<ErasureProfile>(&json).unwrap(), p);
        assert!(serde_json::from_str::<ErasureProfile>(r#"{"data":0,"parity":4}"#).is_err());
        assert!(serde_json::from_str::<ErasureProfile>(r#"{"data":4,"parity":17}"#).is_err());
    }

    #[test]
    fn encode_empty() {
        let mut codec = Codec::new(profile(4, 2));
        let shards = codec.encode_stripe(&[]).unwrap();
        assert_eq!(shards.len(), 6);
        // Parity of all-zero data is all-zero (the code is linear).
        assert!(shards.iter().all(|s| s == &[0, 0]));
        let mut partial = present(&shards);
        partial[0] = None;
        assert_eq!(
            codec.decode_stripe(&mut partial, 0).unwrap(),
            Vec::<u8>::new()
        );
    }

    #[test]
    fn encode_layout_is_data_then_padding() {
        let mut codec = Codec::new(profile(3, 2));
        let data: Vec<u8> = (1..=7).collect();
        let shards = codec.encode_stripe(&data).unwrap();
        assert_eq!(shards[0], [1, 2, 3, 4]);
        assert_eq!(shards[1], [5, 6, 7, 0]);
        assert_eq!(shards[2], [0, 0, 0, 0]);
        assert!(shards.iter().all(|s| s.len() == 4));
    }

    #[test]
    fn verify_detects_flipped_bytes() {
        let mut codec = Codec::new(profile(4, 2));
        let data = random_bytes(10_001, 1);
        let shards = codec.encode_stripe(&data).unwrap();
        fn refs(s: &[Vec<u8>]) -> Vec<&[u8]> {
            s.iter().map(Vec::as_slice).collect()
        }
        assert!(codec.verify(&refs(&shards)).unwrap());
        for (i, at) in [(0usize, 0usize), (3, 1000), (4, 5), (5, 2499)] {
            let mut bad = shards.clone();
            bad[i][at] ^= 0x40;
            assert!(
                !codec.verify(&refs(&bad)).unwrap(),
                "flip in shard {i} not detected"
            );
        }
        assert_eq!(
            codec.verify(&refs(&shards[..5])),
            Err(CodecError::WrongShardCount {
                expected: 6,
                got: 5
            })
        );
        let mut short = shards.clone();
        short[2].pop();
        assert!(matches!(
            codec.verify(&refs(&short)),
            Err(CodecError::WrongShardLength { index: 2, .. })
        ));
    }

    #[test]
    fn reconstruct_exactly_m_missing() {
        let mut codec = Codec::new(profile(6, 3));
        let data = random_bytes(54_321, 2);
        let shards = codec.encode_stripe(&data).unwrap();
        for lost in [[0, 1, 2], [3, 6, 8], [6, 7, 8], [0, 4, 7]] {
            let mut partial = present(&shards);
            for i in lost {
                partial[i] = None;
            }
            codec.reconstruct(&mut partial).unwrap();
            assert_eq!(partial, present(&shards), "lost {lost:?}");

            let mut partial = present(&shards);
            for i in lost {
                partial[i] = None;
            }
            assert_eq!(codec.decode_stripe(&mut partial, data.len()).unwrap(), data);
            // decode_stripe fills data slots only.
            for i in lost {
                assert_eq!(partial[i].is_some(), i < 6, "slot {i}");
            }
        }
    }

    #[test]
    fn too_many_missing_leaves_shards_untouched() {
        let mut codec = Codec::new(profile(4, 2));
        let shards = codec.encode_stripe(&random_bytes(4096, 3)).unwrap();
        let mut partial = present(&shards);
        for i in [0, 2, 5] {
            partial[i] = None;
        }
        let before = partial.clone();
        let err = || CodecError::TooManyMissing {
            missing: 3,
            parity: 2,
        };
        assert_eq!(codec.reconstruct(&mut partial), Err(err()));
        assert_eq!(partial, before);
        assert_eq!(codec.decode_stripe(&mut partial, 4096), Err(err()));
        assert_eq!(partial, before);

        let mut none: Vec<Option<Vec<u8>>> = vec![None; 6];
        assert_eq!(
            codec.reconstruct(&mut none),
            Err(CodecError::TooManyMissing {
                missing: 6,
                parity: 2
            })
        );
    }

    #[test]
    fn nothing_missing_is_a_no_op() {
        let mut codec = Codec::new(profile(4, 2));
        let shards = codec.encode_stripe(&random_bytes(1000, 4)).unwrap();
        let mut all = present(&shards);
        codec.reconstruct(&mut all).unwrap();
        assert_eq!(all, present(&shards));
    }

    #[test]
    fn wrong_counts_and_lengths() {
        let mut codec = Codec::new(profile(4, 2));
        let shards = codec.encode_stripe(&random_bytes(1000, 5)).unwrap();
        let len = shards[0].len();

        let mut short = present(&shards[..5]);
        assert_eq!(
            codec.reconstruct(&mut short),
            Err(CodecError::WrongShardCount {
                expected: 6,
                got: 5
            })
        );

        let mut uneven = present(&shards);
        uneven[0] = None;
        uneven[3].as_mut().unwrap().truncate(len - 2);
        let before = uneven.clone();
        assert_eq!(
            codec.reconstruct(&mut uneven),
            Err(CodecError::WrongShardLength {
                index: 3,
                expected: len,
                got: len - 2
            })
        );
        assert_eq!(uneven, before);

        let mut odd = present(&shards);
        odd[0] = None;
        for s in odd.iter_mut().flatten() {
            s.pop();
        }
        assert_eq!(
            codec.decode_stripe(&mut odd, 10),
            Err(CodecError::WrongShardLength {
                index: 1,
                expected: len,
                got: len - 1
            })
        );

        let mut empty: Vec<Option<Vec<u8>>> = vec![Some(Vec::new()); 6];
        empty[0] = None;
        assert_eq!(
            codec.reconstruct(&mut empty),
            Err(CodecError::WrongShardLength {
                index: 1,
                expected: 2,
                got: 0
            })
        );

        let mut ok = present(&shards);
        assert_eq!(
            codec.decode_stripe(&mut ok, 4 * len + 1),
            Err(CodecError::StripeTooLarge {
                got: 4 * len + 1,
                max: 4 * len
            })
        );
        assert_eq!(
            codec.decode_stripe(&mut ok, 4 * len).unwrap().len(),
            4 * len
        );
    }

    #[test]
    fn codec_reuses_buffers_across_sizes() {
        // reset() must handle shrinking and growing shard sizes between stripes.
        let mut codec = Codec::new(profile(10, 4));
        for (n, seed) in [(1_000_000, 6), (10, 7), (333_333, 8), (0, 9)] {
            let data = random_bytes(n, seed);
            let shards = codec.encode_stripe(&data).unwrap();
            let mut partial = present(&shards);
            for i in [1, 5, 9, 12] {
                partial[i] = None;
            }
            assert_eq!(codec.decode_stripe(&mut partial.clone(), n).unwrap(), data);
            codec.reconstruct(&mut partial).unwrap();
            assert_eq!(partial, present(&shards));
        }
    }

    /// (k, m, data length, data seed, erased indexes) with at most m erasures.
    fn recoverable_case() -> impl Strategy<Value = (u8, u8, usize, u64, Vec<usize>)> {
        (1u8..=16, 1u8..=8, 0usize..=200_000, any::<u64>()).prop_flat_map(|(k, m, len, seed)| {
            let n = usize::from(k + m);
            let lost =
                proptest::sample::subsequence((0..n).collect::<Vec<_>>(), 0..=usize::from(m));
            (Just(k), Just(m), Just(len), Just(seed), lost)
        })
    }

    /// Same, but with m+1..=k+m erasures.
    fn unrecoverable_case() -> impl Strategy<Value = (u8, u8, usize, u64, Vec<usize>)> {
        (1u8..=16, 1u8..=8, 0usize..=20_000, any::<u64>()).prop_flat_map(|(k, m, len, seed)| {
            let n = usize::from(k + m);
            let lost =
                proptest::sample::subsequence((0..n).collect::<Vec<_>>(), usize::from(m) + 1..=n);
            (Just(k), Just(m), Just(len), Just(seed), lost)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn prop_roundtrip((k, m, len, seed, lost) in recoverable_case()) {
            let mut codec = Codec::new(profile(k, m));
            let data = random_bytes(len, seed);
            let shards = codec.encode_stripe(&data).unwrap();
            prop_assert_eq!(shards.len(), usize::from(k + m));
            let slen = shard_len(len, usize::from(k));
            prop_assert!(shards.iter().all(|s| s.len() == slen));
            let refs: Vec<&[u8]> = shards.iter().map(Vec::as_slice).collect();
            prop_assert!(codec.verify(&refs).unwrap());

            let mut partial = present(&shards);
            for &i in &lost {
                partial[i] = None;
            }
            let mut for_decode = partial.clone();
            prop_assert_eq!(codec.decode_stripe(&mut for_decode, len).unwrap(), data);
            for (i, slot) in for_decode.iter().enumerate() {
                if i < usize::from(k) || !lost.contains(&i) {
                    prop_assert_eq!(slot.as_ref(), Some(&shards[i]));
                } else {
                    prop_assert!(slot.is_none());
                }
            }

            codec.reconstruct(&mut partial).unwrap();
            prop_assert_eq!(partial, present(&shards));
        }

        #[test]
        fn prop_too_many_missing((k, m, len, seed, lost) in unrecoverable_case()) {
            let mut codec = Codec::new(profile(k, m));
            let shards = codec.encode_stripe(&random_bytes(len, seed)).unwrap();
            let mut partial = present(&shards);
            for &i in &lost {
                partial[i] = None;
            }
            let before = partial.clone();
            let err = || CodecError::TooManyMissing { missing: lost.len(), parity: usize::from(m) };
            prop_assert_eq!(codec.reconstruct(&mut partial), Err(err()));
            prop_assert_eq!(&partial, &before);
            prop_assert_eq!(codec.decode_stripe(&mut partial, len), Err(err()));
            prop_assert_eq!(&partial, &before);
        }
    }
}
