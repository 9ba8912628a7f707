//! Conversions between index records and the metadata fields of S3 requests and responses.

use std::collections::BTreeMap;

use s3s::dto::*;
use s3s::{S3Result, s3_error};

use crate::index::records::{ContentHeaders, ObjectRecord};

/// A record time as an S3 timestamp.
pub fn timestamp(ms: i64) -> Timestamp {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    Timestamp::from(t)
}

/// Unix milliseconds of an S3 timestamp.
pub fn millis(t: &Timestamp) -> i64 {
    let t: time::OffsetDateTime = t.clone().into();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The quoted ETag of a record.
pub fn etag(rec: &ObjectRecord) -> ETag {
    ETag::Strong(rec.etag.clone())
}

/// Formats an HTTP date (for `Expires`, stored as sent).
pub fn http_date(t: &Timestamp) -> Option<String> {
    let mut out = Vec::new();
    t.format(TimestampFormat::HttpDate, &mut out).ok()?;
    String::from_utf8(out).ok()
}

/// Parses a stored `Expires` back.
pub fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, s).ok()
}

/// User metadata as s3s carries it.
pub fn metadata_out(m: &BTreeMap<String, String>) -> Option<Metadata> {
    (!m.is_empty()).then(|| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Most bytes of user metadata (names and values, UTF-8) on one object (S3: 2 KB).
pub const MAX_METADATA_SIZE: usize = 2 * 1024;

/// User metadata from a request (names lowercased); `MetadataTooLarge` beyond S3's 2 KB, which
/// is checked before any data is stored.
pub fn metadata_in(m: Option<Metadata>) -> S3Result<BTreeMap<String, String>> {
    let m: BTreeMap<String, String> = m
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let size: usize = m.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_METADATA_SIZE {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size of {MAX_METADATA_SIZE} bytes"
        ));
    }
    Ok(m)
}

/// The `Content-Encoding` to store: without `aws-chunked`, which only describes how the request
/// body travelled (S3 does not store it), and absent if nothing else is left.
fn stored_content_encoding(v: Option<String>) -> Option<String> {
    let v = v?;
    if !v
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("aws-chunked"))
    {
        return Some(v);
    }
    let rest: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!rest.is_empty()).then(|| rest.join(","))
}

/// Content headers from request fields.
pub fn headers_in(
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<&Timestamp>,
) -> ContentHeaders {
    ContentHeaders {
        content_type,
        content_encoding: stored_content_encoding(content_encoding),
        content_disposition,
        content_language,
        cache_control,
        expires: expires.and_then(http_date),
    }
}

#[cfg(test)]
mod tests {
    use super::stored_content_encoding as enc;

    #[test]
    fn aws_chunked_is_not_stored() {
        assert_eq!(enc(None), None);
        assert_eq!(enc(Some("aws-chunked".into())), None);
        assert_eq!(enc(Some("gzip,aws-chunked".into())), Some("gzip".into()));
        assert_eq!(enc(Some("aws-chunked, gzip".into())), Some("gzip".into()));
        assert_eq!(enc(Some("gzip, br".into())), Some("gzip, br".into()));
    }
}
