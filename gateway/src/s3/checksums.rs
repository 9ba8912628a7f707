//! Integrity of request bodies: MD5 (the ETag, and `Content-MD5`), and the additional checksums
//! (CRC32, CRC32C, SHA1, SHA256, CRC64NVME) sent as headers or as `aws-chunked` trailers.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum, Crc32, Crc32c, Crc64Nvme, Md5, Sha1, Sha256};
use s3s::dto::{ChecksumAlgorithm, ChecksumType};
use s3s::{S3Error, S3Result, s3_error};

use crate::index::records::StoredChecksum;

/// The checksum values a request may carry in headers, by algorithm.
#[derive(Debug, Clone, Default)]
pub struct ChecksumFields {
    /// `x-amz-checksum-crc32`.
    pub crc32: Option<String>,
    /// `x-amz-checksum-crc32c`.
    pub crc32c: Option<String>,
    /// `x-amz-checksum-sha1`.
    pub sha1: Option<String>,
    /// `x-amz-checksum-sha256`.
    pub sha256: Option<String>,
    /// `x-amz-checksum-crc64nvme`.
    pub crc64nvme: Option<String>,
}

impl ChecksumFields {
    fn values(&self) -> [(&'static str, &Option<String>); 5] {
        [
            (ChecksumAlgorithm::CRC32, &self.crc32),
            (ChecksumAlgorithm::CRC32C, &self.crc32c),
            (ChecksumAlgorithm::SHA1, &self.sha1),
            (ChecksumAlgorithm::SHA256, &self.sha256),
            (ChecksumAlgorithm::CRC64NVME, &self.crc64nvme),
        ]
    }

    /// The fields holding `c` (for responses).
    pub fn from_stored(c: Option<&StoredChecksum>) -> Self {
        let mut f = Self::default();
        if let Some(c) = c {
            let v = Some(c.value.clone());
            match c.algorithm.as_str() {
                ChecksumAlgorithm::CRC32 => f.crc32 = v,
                ChecksumAlgorithm::CRC32C => f.crc32c = v,
                ChecksumAlgorithm::SHA1 => f.sha1 = v,
                ChecksumAlgorithm::SHA256 => f.sha256 = v,
                ChecksumAlgorithm::CRC64NVME => f.crc64nvme = v,
                _ => {}
            }
        }
        f
    }

    fn from_trailers(h: &http::HeaderMap) -> Self {
        let get = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Self {
            crc32: get("x-amz-checksum-crc32"),
            crc32c: get("x-amz-checksum-crc32c"),
            sha1: get("x-amz-checksum-sha1"),
            sha256: get("x-amz-checksum-sha256"),
            crc64nvme: get("x-amz-checksum-crc64nvme"),
        }
    }
}

/// The checksum type for a stored checksum (for responses).
pub fn checksum_type(c: Option<&StoredChecksum>) -> Option<ChecksumType> {
    c.map(|c| ChecksumType::from(c.kind.clone()))
}

fn known(algorithm: &str) -> S3Result<&'static str> {
    [
        ChecksumAlgorithm::CRC32,
        ChecksumAlgorithm::CRC32C,
        ChecksumAlgorithm::SHA1,
        ChecksumAlgorithm::SHA256,
        ChecksumAlgorithm::CRC64NVME,
    ]
    .into_iter()
    .find(|a| a.eq_ignore_ascii_case(algorithm))
    .ok_or_else(|| s3_error!(InvalidRequest, "Unsupported checksum algorithm {algorithm}"))
}

fn hasher_for(algorithm: &str) -> ChecksumHasher {
    let mut h = ChecksumHasher::default();
    match algorithm {
        ChecksumAlgorithm::CRC32 => h.crc32 = Some(Crc32::new()),
        ChecksumAlgorithm::CRC32C => h.crc32c = Some(Crc32c::new()),
        ChecksumAlgorithm::SHA1 => h.sha1 = Some(Sha1::new()),
        ChecksumAlgorithm::SHA256 => h.sha256 = Some(Sha256::new()),
        ChecksumAlgorithm::CRC64NVME => h.crc64nvme = Some(Crc64Nvme::new()),
        _ => {}
    }
    h
}

fn pick(fields: &ChecksumFields, algorithm: &str) -> Option<String> {
    fields
        .values()
        .into_iter()
        .find(|(a, _)| *a == algorithm)
        .and_then(|(_, v)| v.clone())
}

/// Hashes of a body computed while it streams.
pub struct BodyDigests {
    md5: Md5,
    length: u64,
    algorithm: Option<&'static str>,
    hasher: ChecksumHasher,
    expected: Option<String>,
    content_md5: Option<String>,
}

/// What a verified body yields.
#[derive(Debug, Clone)]
pub struct VerifiedBody {
    /// Raw MD5.
    pub md5: [u8; 16],
    /// Hex MD5 (the ETag of a simple object).
    pub etag: String,
    /// The additional checksum, if one was requested.
    pub checksum: Option<StoredChecksum>,
}

impl BodyDigests {
    /// Prepares for a body announcing `algorithm` and/or header checksum values and
    /// `Content-MD5`. At most one additional checksum may be given.
    pub fn new(
        algorithm: Option<&ChecksumAlgorithm>,
        provided: ChecksumFields,
        content_md5: Option<String>,
    ) -> S3Result<Self> {
        let given: Vec<(&'static str, String)> = provided
            .values()
            .into_iter()
            .filter_map(|(a, v)| v.clone().map(|v| (a, v)))
            .collect();
        if given.len() > 1 {
            return Err(s3_error!(
                InvalidRequest,
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
            ));
        }
        let algorithm = match (given.first(), algorithm) {
            (Some((a, _)), _) => Some(*a),
            (None, Some(a)) => Some(known(a.as_str())?),
            (None, None) => None,
        };
        if let Some(md5) = &content_md5
            && STANDARD.decode(md5).map(|d| d.len()) != Ok(16)
        {
            return Err(s3_error!(
                InvalidDigest,
                "The Content-MD5 you specified is not valid."
            ));
        }
        Ok(Self {
            md5: Md5::new(),
            length: 0,
            hasher: algorithm.map(hasher_for).unwrap_or_default(),
            algorithm,
            expected: given.into_iter().next().map(|(_, v)| v),
            content_md5,
        })
    }

    /// Feeds body bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.length += data.len() as u64;
        self.md5.update(data);
        self.hasher.update(data);
    }

    /// Checks every expected digest; `trailers` are the aws-chunked trailing headers, read after
    /// the body ended.
    pub fn finish(self, trailers: Option<http::HeaderMap>) -> S3Result<VerifiedBody> {
        let md5: [u8; 16] = self
            .md5
            .finalize()
            .as_ref()
            .try_into()
            .expect("md5 is 16 bytes");
        if let Some(given) = &self.content_md5
            && STANDARD.encode(md5) != *given
        {
            return Err(s3_error!(
                BadDigest,
                "The Content-MD5 you specified did not match what we received."
            ));
        }
        let checksum = match self.algorithm {
            None => None,
            Some(algorithm) => {
                let all = self.hasher.finalize();
                let computed = pick(
                    &ChecksumFields {
                        crc32: all.checksum_crc32,
                        crc32c: all.checksum_crc32c,
                        sha1: all.checksum_sha1,
                        sha256: all.checksum_sha256,
                        crc64nvme: all.checksum_crc64nvme,
                    },
                    algorithm,
                )
                .unwrap_or_default();
                let expected = self.expected.or_else(|| {
                    trailers
                        .as_ref()
                        .and_then(|t| pick(&ChecksumFields::from_trailers(t), algorithm))
                });
                if expected.is_some_and(|e| e != computed) {
                    return Err(mismatch(algorithm));
                }
                Some(StoredChecksum {
                    algorithm: algorithm.to_string(),
                    value: computed,
                    kind: ChecksumType::FULL_OBJECT.to_string(),
                })
            }
        };
        Ok(VerifiedBody {
            md5,
            etag: hex(&md5),
            checksum,
        })
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s
}

/// The raw digest of `data` under `algorithm` (for composite multipart checksums).
pub fn digest(algorithm: &str, data: &[u8]) -> Vec<u8> {
    match algorithm {
        ChecksumAlgorithm::CRC32 => Crc32::checksum(data).as_ref().to_vec(),
        ChecksumAlgorithm::CRC32C => Crc32c::checksum(data).as_ref().to_vec(),
        ChecksumAlgorithm::SHA1 => Sha1::checksum(data).as_ref().to_vec(),
        ChecksumAlgorithm::SHA256 => Sha256::checksum(data).as_ref().to_vec(),
        ChecksumAlgorithm::CRC64NVME => Crc64Nvme::checksum(data).as_ref().to_vec(),
        _ => Vec::new(),
    }
}

/// Error for a checksum that does not match the body.
pub fn mismatch(algorithm: &str) -> S3Error {
    s3_error!(
        BadDigest,
        "The {algorithm} you specified did not match the calculated checksum."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests(
        alg: Option<&str>,
        fields: ChecksumFields,
        md5: Option<&str>,
    ) -> S3Result<BodyDigests> {
        let alg = alg.map(|a| ChecksumAlgorithm::from(a.to_string()));
        BodyDigests::new(alg.as_ref(), fields, md5.map(str::to_string))
    }

    #[test]
    fn md5_etag_and_content_md5() {
        let mut d = digests(
            None,
            ChecksumFields::default(),
            Some("XUFAKrxLKna5cZ2REBfFkg=="),
        )
        .unwrap();
        d.update(b"hello");
        let v = d.finish(None).unwrap();
        assert_eq!(v.etag, "5d41402abc4b2a76b9719d911017c592");
        assert!(v.checksum.is_none());
        let mut d = digests(
            None,
            ChecksumFields::default(),
            Some("XUFAKrxLKna5cZ2REBfFkg=="),
        )
        .unwrap();
        d.update(b"hellO");
        assert_eq!(
            d.finish(None).unwrap_err().code(),
            &s3s::S3ErrorCode::BadDigest
        );
        assert!(digests(None, ChecksumFields::default(), Some("bm90IG1kNQ==")).is_err());
    }

    #[test]
    fn header_and_trailer_checksums_are_verified() {
        // CRC32 of "hello" is 0x3610a686.
        let good = STANDARD.encode(0x3610_a686u32.to_be_bytes());
        let mut d = digests(
            None,
            ChecksumFields {
                crc32: Some(good.clone()),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        d.update(b"hello");
        assert_eq!(d.finish(None).unwrap().checksum.unwrap().value, good);

        let mut d = digests(Some("CRC32"), ChecksumFields::default(), None).unwrap();
        d.update(b"hello");
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-amz-checksum-crc32", "AAAAAA==".parse().unwrap());
        assert_eq!(
            d.finish(Some(trailers)).unwrap_err().code(),
            &s3s::S3ErrorCode::BadDigest
        );

        let mut d = digests(Some("CRC32"), ChecksumFields::default(), None).unwrap();
        d.update(b"hello");
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-amz-checksum-crc32", good.parse().unwrap());
        assert_eq!(
            d.finish(Some(trailers)).unwrap().checksum.unwrap().value,
            good
        );

        let two = ChecksumFields {
            crc32: Some(good.clone()),
            sha1: Some(good),
            ..Default::default()
        };
        assert!(digests(None, two, None).is_err());
    }
}
