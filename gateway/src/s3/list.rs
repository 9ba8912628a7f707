//! ListObjects (v1) and ListObjectsV2.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::object_meta::timestamp;
use super::{CairnS3, STANDARD};
use crate::index::list::{ListEntry, ListPage, ListQuery};
use crate::index::records::ListedObject;

/// S3's page size cap.
const MAX_KEYS: i32 = 1000;

pub(super) fn max_keys(m: Option<i32>) -> S3Result<usize> {
    match m {
        None => Ok(MAX_KEYS as usize),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok(n.min(MAX_KEYS) as usize),
    }
}

pub(super) fn url_encoded(encoding: Option<&EncodingType>) -> S3Result<bool> {
    match encoding.map(|e| e.as_str()) {
        None => Ok(false),
        Some(e) if e.eq_ignore_ascii_case(EncodingType::URL) => Ok(true),
        Some(e) => Err(s3_error!(
            InvalidArgument,
            "Invalid Encoding Method specified in Request: {e}"
        )),
    }
}

/// Percent-encodes like S3's `encoding-type=url` (unreserved characters and `/` stay).
pub(super) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Rendered {
    contents: Vec<Object>,
    prefixes: Vec<CommonPrefix>,
}

impl CairnS3 {
    fn render(&self, page: ListPage<ListedObject>, url: bool, owner: bool) -> Rendered {
        let enc = |s: String| if url { encode(&s) } else { s };
        let mut contents = Vec::new();
        let mut prefixes = Vec::new();
        for e in page.entries {
            match e {
                ListEntry::Object(key, rec) => contents.push(Object {
                    key: Some(enc(key)),
                    e_tag: Some(ETag::Strong(rec.etag)),
                    last_modified: Some(timestamp(rec.last_modified_ms)),
                    size: Some(rec.size as i64),
                    storage_class: Some(ObjectStorageClass::from(
                        if rec.storage_class.is_empty() {
                            STANDARD.to_string()
                        } else {
                            rec.storage_class
                        },
                    )),
                    owner: owner.then(|| self.owner()),
                    checksum_algorithm: rec
                        .checksum
                        .map(|c| vec![ChecksumAlgorithm::from(c.algorithm)]),
                    ..Default::default()
                }),
                ListEntry::Prefix(p) => prefixes.push(CommonPrefix {
                    prefix: Some(enc(p)),
                }),
            }
        }
        Rendered { contents, prefixes }
    }

    pub(super) async fn list_objects_v2_op(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let url = url_encoded(input.encoding_type.as_ref())?;
        let max = max_keys(input.max_keys)?;
        let marker = match &input.continuation_token {
            Some(t) => Some(
                URL_SAFE_NO_PAD
                    .decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        s3_error!(
                            InvalidArgument,
                            "The continuation token provided is incorrect"
                        )
                    })?,
            ),
            None => input.start_after.clone().filter(|s| !s.is_empty()),
        };
        let q = ListQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            marker,
            max_keys: max,
        };
        let page = self.index.list_objects(&input.bucket, q).await?;
        let truncated = page.truncated;
        let next = page.next_marker.clone().map(|m| URL_SAFE_NO_PAD.encode(m));
        let r = self.render(page, url, input.fetch_owner == Some(true));
        let enc = |s: Option<String>| if url { s.map(|s| encode(&s)) } else { s };
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: enc(input.prefix),
            delimiter: enc(input.delimiter),
            start_after: enc(input.start_after),
            max_keys: Some(max as i32),
            key_count: Some((r.contents.len() + r.prefixes.len()) as i32),
            continuation_token: input.continuation_token,
            next_continuation_token: next,
            is_truncated: Some(truncated),
            contents: Some(r.contents),
            common_prefixes: Some(r.prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    pub(super) async fn list_objects_op(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let url = url_encoded(input.encoding_type.as_ref())?;
        let max = max_keys(input.max_keys)?;
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let q = ListQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: delimiter.clone(),
            marker: input.marker.clone().filter(|m| !m.is_empty()),
            max_keys: max,
        };
        let page = self.index.list_objects(&input.bucket, q).await?;
        let truncated = page.truncated;
        // v1 returns NextMarker only with a delimiter; clients use the last key otherwise.
        let next_marker = delimiter.as_ref().and(page.next_marker.clone());
        let r = self.render(page, url, true);
        let enc = |s: Option<String>| if url { s.map(|s| encode(&s)) } else { s };
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: enc(input.prefix),
            delimiter: enc(input.delimiter),
            marker: enc(input.marker),
            next_marker: enc(next_marker),
            max_keys: Some(max as i32),
            is_truncated: Some(truncated),
            contents: Some(r.contents),
            common_prefixes: Some(r.prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_encoding_keeps_slashes_and_unreserved() {
        assert_eq!(super::encode("a b/c+d%é"), "a%20b/c%2Bd%25%C3%A9");
    }
}
