//! Conditional requests (RFC 7232 as S3 applies them) and write conditions.

use s3s::dto::{ETagCondition, Timestamp};
use s3s::{S3Error, S3Result, s3_error};

use super::object_meta::{etag, millis, timestamp};
use crate::index::WriteCondition;
use crate::index::records::ObjectRecord;

fn matches(cond: &ETagCondition, rec: &ObjectRecord) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == rec.etag,
    }
}

/// HTTP dates have one-second resolution: compare at that resolution.
fn modified_after(rec: &ObjectRecord, t: &Timestamp) -> bool {
    rec.last_modified_ms / 1000 > millis(t) / 1000
}

/// The four read conditions of GET and HEAD.
#[derive(Default)]
pub struct ReadConditions<'a> {
    /// `If-Match`.
    pub if_match: Option<&'a ETagCondition>,
    /// `If-None-Match`.
    pub if_none_match: Option<&'a ETagCondition>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<&'a Timestamp>,
    /// `If-Unmodified-Since`.
    pub if_unmodified_since: Option<&'a Timestamp>,
}

/// Evaluates read conditions: 412 PreconditionFailed or 304 NotModified (with ETag and
/// Last-Modified headers), or `Ok` to serve the object.
pub fn check_read(rec: &ObjectRecord, c: &ReadConditions<'_>) -> S3Result<()> {
    match c.if_match {
        Some(m) if !matches(m, rec) => return Err(precondition_failed()),
        Some(_) => {}
        None => {
            if c.if_unmodified_since
                .is_some_and(|t| modified_after(rec, t))
            {
                return Err(precondition_failed());
            }
        }
    }
    match c.if_none_match {
        Some(m) if matches(m, rec) => return Err(not_modified(rec)),
        Some(_) => {}
        None => {
            if c.if_modified_since.is_some_and(|t| !modified_after(rec, t)) {
                return Err(not_modified(rec));
            }
        }
    }
    Ok(())
}

/// Copy-source conditions: every failing one is a 412, as S3 answers for CopyObject.
pub fn check_copy_source(rec: &ObjectRecord, c: &ReadConditions<'_>) -> S3Result<()> {
    check_read(rec, c).map_err(|e| {
        if e.code() == &s3s::S3ErrorCode::NotModified {
            precondition_failed()
        } else {
            e
        }
    })
}

fn precondition_failed() -> S3Error {
    s3_error!(
        PreconditionFailed,
        "At least one of the pre-conditions you specified did not hold"
    )
}

fn not_modified(rec: &ObjectRecord) -> S3Error {
    let mut e = s3_error!(NotModified);
    let mut h = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(&format!("\"{}\"", etag(rec).value())) {
        h.insert(http::header::ETAG, v);
    }
    if let Some(d) = super::object_meta::http_date(&timestamp(rec.last_modified_ms))
        && let Ok(v) = http::HeaderValue::from_str(&d)
    {
        h.insert(http::header::LAST_MODIFIED, v);
    }
    e.set_headers(h);
    e
}

/// The write condition of a PUT or Complete: `If-None-Match: *` or `If-Match: "etag"`.
pub fn write_condition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<WriteCondition> {
    match (if_match, if_none_match) {
        (Some(_), Some(_)) => Err(s3_error!(
            NotImplemented,
            "If-Match and If-None-Match together are not supported on writes"
        )),
        (None, Some(ETagCondition::Any)) => Ok(WriteCondition::IfAbsent),
        (None, Some(ETagCondition::ETag(_))) => Err(s3_error!(
            NotImplemented,
            "If-None-Match on writes only supports *"
        )),
        (Some(ETagCondition::ETag(e)), None) => Ok(WriteCondition::IfEtag(e.value().to_string())),
        (Some(ETagCondition::Any), None) => Err(s3_error!(
            NotImplemented,
            "If-Match: * on writes is not supported"
        )),
        (None, None) => Ok(WriteCondition::None),
    }
}
