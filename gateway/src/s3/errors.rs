//! The one place where errors of the lower layers become S3 errors with the codes AWS documents.

use s3s::{S3Error, S3ErrorCode, s3_error};

use crate::bucket_config::ConfigError;
use crate::data::DataError;
use crate::index::IndexError;

impl From<ConfigError> for S3Error {
    fn from(e: ConfigError) -> Self {
        let code: S3ErrorCode = e.code().parse().unwrap_or(S3ErrorCode::MalformedXML);
        let mut out = S3Error::with_message(code, e.to_string());
        out.set_status_code(http::StatusCode::BAD_REQUEST);
        out
    }
}
use crate::index::version::InvalidVersionId;
use crate::s3::tag_set::TagError;

impl From<TagError> for S3Error {
    fn from(e: TagError) -> Self {
        let msg = e.to_string();
        match e {
            TagError::TooMany => custom("BadRequest", 400, msg),
            TagError::InvalidKey
            | TagError::InvalidValue
            | TagError::SystemKey
            | TagError::DuplicateKey => S3Error::with_message(S3ErrorCode::InvalidTag, msg),
            TagError::MalformedHeader => S3Error::with_message(S3ErrorCode::InvalidArgument, msg),
            TagError::MalformedXml => S3Error::with_message(S3ErrorCode::MalformedXML, msg),
        }
    }
}

impl From<InvalidVersionId> for S3Error {
    fn from(_: InvalidVersionId) -> Self {
        s3_error!(InvalidArgument, "Invalid version id specified")
    }
}

/// An S3 error whose code s3s does not define, with the status AWS uses.
pub fn custom(code: &str, status: u16, message: impl Into<String>) -> S3Error {
    let code: S3ErrorCode = code.parse().unwrap_or(S3ErrorCode::InternalError);
    let mut e = S3Error::with_message(code, message.into());
    e.set_status_code(http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST));
    e
}

impl From<IndexError> for S3Error {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::NoSuchBucket(b) => {
                s3_error!(NoSuchBucket, "The specified bucket {b} does not exist")
            }
            IndexError::BucketExists { .. } => s3_error!(BucketAlreadyExists),
            IndexError::BucketNotEmpty(b) => {
                s3_error!(
                    BucketNotEmpty,
                    "The bucket {b} you tried to delete is not empty"
                )
            }
            IndexError::DeletionAborted(b) => custom(
                "OperationAborted",
                409,
                format!("A conflicting operation is under way on bucket {b}; please retry"),
            ),
            IndexError::Engine(cairn_kv::EngineError::Moved) => {
                tracing::warn!("index keys kept moving between groups; the request gave up");
                S3Error::with_message(
                    S3ErrorCode::ServiceUnavailable,
                    "The index is rebalancing; please retry",
                )
            }
            IndexError::Engine(cairn_kv::EngineError::Unavailable(_))
            | IndexError::Consensus(_) => {
                tracing::warn!(error = %e, "index unavailable");
                S3Error::with_message(
                    S3ErrorCode::ServiceUnavailable,
                    "The index is unavailable (no leader reachable); please retry",
                )
            }
            IndexError::NoSuchUpload(_) => s3_error!(
                NoSuchUpload,
                "The specified multipart upload does not exist"
            ),
            IndexError::IntentExpired => s3_error!(
                RequestTimeout,
                "The upload took longer than the gateway's upload timeout; please retry"
            ),
            IndexError::PreconditionFailed => s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ),
            IndexError::VersioningIrreversible(_) => custom(
                "IllegalVersioningConfigurationException",
                400,
                "Versioning cannot be turned off once enabled; suspend it instead",
            ),
            IndexError::ReplicationNeedsVersioning(_) => s3_error!(
                InvalidRequest,
                "Versioning must be 'Enabled' on the bucket to apply a replication configuration"
            ),
            IndexError::ReplicationBlocksSuspend(_) => custom(
                "InvalidBucketState",
                409,
                "A replication configuration is present on this bucket, so the versioning state cannot be changed.",
            ),
            IndexError::UnknownVersionMarker => {
                s3_error!(InvalidArgument, "Invalid version id specified")
            }
            other => {
                tracing::error!(error = %other, "index failure");
                S3Error::with_message(S3ErrorCode::InternalError, other.to_string())
            }
        }
    }
}

/// Maps a data-path failure; `body_error` turns a failed request body into the right client error.
pub fn data_error(e: DataError) -> S3Error {
    match e {
        DataError::Placement(_) | DataError::WriteQuorum { .. } => {
            tracing::error!(error = %e, "write failed: storage unavailable");
            S3Error::with_message(
                S3ErrorCode::ServiceUnavailable,
                format!("Not enough storage nodes are available: {e}"),
            )
        }
        DataError::Unavailable { .. } => {
            tracing::error!(error = %e, "read failed: too few shards");
            S3Error::with_message(
                S3ErrorCode::ServiceUnavailable,
                "Too few shards of the object are available; try again later",
            )
        }
        DataError::Body(msg) => body_error(&msg),
        DataError::LengthMismatch { expected, got } => s3_error!(
            IncompleteBody,
            "You did not provide the number of bytes specified by the Content-Length header ({got} of {expected})"
        ),
        DataError::Codec(c) => {
            tracing::error!(error = %c, "codec failure");
            S3Error::with_message(S3ErrorCode::InternalError, c.to_string())
        }
        DataError::Integrity { .. } => {
            tracing::error!(error = %e, "read failed: shards do not give the data written");
            S3Error::with_message(
                S3ErrorCode::InternalError,
                "The stored data failed its integrity check; try again later",
            )
        }
    }
}

/// s3s reports body verification failures only as stream errors whose types are private; their
/// text says which check failed.
pub fn body_error(msg: &str) -> S3Error {
    if msg.contains("SignatureMismatch") {
        s3_error!(
            SignatureDoesNotMatch,
            "The chunk signature does not match the one calculated"
        )
    } else if msg.contains("Sha256Mismatch") {
        custom(
            "XAmzContentSHA256Mismatch",
            400,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
    } else if msg.contains(super::BODY_STALLED) {
        s3_error!(
            RequestTimeout,
            "Your socket connection to the server was not read from or written to within the timeout period."
        )
    } else {
        s3_error!(IncompleteBody, "The request body ended early: {msg}")
    }
}
