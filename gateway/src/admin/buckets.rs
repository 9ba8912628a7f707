//! Buckets: create, describe, delete (emptying first if asked), versioning, quota and default
//! storage class; the fleet's storage classes.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{AdminError, AdminResult, AdminState, bucket_record, json_body};
use crate::index::list::{ListEntry, VersionQuery};
use crate::index::records::{self, BucketRecord, Versioning};
use crate::index::{BucketUsage, Index, IndexError, Stamp, now_ms};
pub use cairn_admin_api::{
    BucketInfo, ClassInfo, CreateBucket, DefaultClass, Quota, VersioningStatus,
};

/// The admin API's name of a versioning state (the `Bucket` resource's vocabulary).
pub(super) fn versioning_name(v: Versioning) -> &'static str {
    match v {
        Versioning::Unversioned => "Off",
        Versioning::Enabled => "Enabled",
        Versioning::Suspended => "Suspended",
    }
}

/// A quota as the admin API shows it (the index record's shape, kept apart from it: one is a
/// wire format, the other a disk format).
fn wire_quota(q: records::Quota) -> Quota {
    Quota {
        max_bytes: q.max_bytes,
        max_objects: q.max_objects,
    }
}

pub(super) fn info(b: BucketRecord, usage: Option<BucketUsage>) -> BucketInfo {
    let u = usage.as_ref();
    BucketInfo {
        name: b.name,
        created_ms: b.created_ms,
        owner: b.owner,
        versioning: versioning_name(b.versioning).to_string(),
        quota: b.quota.map(wire_quota),
        default_storage_class: b.default_storage_class,
        objects: u.map(|u| u.objects),
        bytes: u.map(|u| u.bytes),
        noncurrent_versions: u.map(|u| u.noncurrent_versions),
        noncurrent_bytes: u.map(|u| u.noncurrent_bytes),
        delete_markers: u.map(|u| u.delete_markers),
        storage_classes: u.map(|u| {
            u.classes
                .iter()
                .map(|(name, c)| {
                    let info = ClassInfo {
                        versions: c.versions,
                        bytes: c.bytes,
                        stored_bytes: c.stored_bytes,
                        overhead: if c.bytes == 0 {
                            0.0
                        } else {
                            c.stored_bytes as f64 / c.bytes as f64
                        },
                    };
                    (name.clone(), info)
                })
                .collect()
        }),
    }
}

pub(super) async fn list_buckets(
    State(state): State<Arc<AdminState>>,
) -> AdminResult<Vec<BucketInfo>> {
    let buckets = state.index.list_buckets().await?;
    Ok(axum::Json(
        buckets.into_iter().map(|b| info(b, None)).collect(),
    ))
}

pub(super) async fn create_bucket(
    State(state): State<Arc<AdminState>>,
    axum::Json(req): axum::Json<CreateBucket>,
) -> Result<(StatusCode, axum::Json<BucketInfo>), AdminError> {
    if !s3s::path::check_bucket_name(&req.name) {
        return Err(AdminError(
            StatusCode::BAD_REQUEST,
            "InvalidBucketName",
            format!("{:?} is not a valid bucket name", req.name),
        ));
    }
    let rec = BucketRecord::new(&req.name, &state.owner, now_ms());
    match state.index.create_bucket(rec.clone()).await {
        Ok(()) => Ok((
            StatusCode::CREATED,
            axum::Json(info(rec, Some(BucketUsage::default()))),
        )),
        Err(IndexError::BucketExists { .. }) if req.exist_ok => {
            let b = state
                .index
                .get_bucket(&req.name)
                .await?
                .ok_or_else(|| IndexError::NoSuchBucket(req.name.clone()))?;
            let usage = state.index.bucket_usage(&req.name).await?;
            Ok((StatusCode::OK, axum::Json(info(b, Some(usage)))))
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn bucket_info(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> AdminResult<BucketInfo> {
    let b = state
        .index
        .get_bucket(&name)
        .await?
        .ok_or(IndexError::NoSuchBucket(name.clone()))?;
    let usage = state.index.bucket_usage(&name).await?;
    Ok(axum::Json(info(b, Some(usage))))
}

/// Query of `DELETE /admin/v1/buckets/{name}`.
#[derive(Debug, Deserialize)]
pub struct DeleteBucketQuery {
    /// Delete every object and abort every upload first.
    #[serde(default)]
    pub force: bool,
}

pub(super) async fn delete_bucket(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    Query(q): Query<DeleteBucketQuery>,
) -> Result<StatusCode, AdminError> {
    if q.force {
        empty_bucket(&state.index, &name).await?;
    }
    state.index.delete_bucket(&name).await?;
    tracing::info!(bucket = %name, force = q.force, "bucket deleted through the admin API");
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes every version of every object and aborts every upload of a bucket.
pub(super) async fn empty_bucket(index: &Index, name: &str) -> Result<(), IndexError> {
    loop {
        let page = index
            .list_versions(
                name,
                VersionQuery {
                    max_keys: 1000,
                    ..Default::default()
                },
            )
            .await?;
        if page.entries.is_empty() {
            break;
        }
        let mut last = None;
        for e in page.entries {
            if let ListEntry::Object(key, _) = e
                && last.as_ref() != Some(&key)
            {
                index.purge_object(name, &key, Stamp::now()).await?;
                last = Some(key);
            }
        }
    }
    loop {
        let uploads = index.list_uploads(name, "", None, None, 1000).await?;
        if uploads.is_empty() {
            return Ok(());
        }
        for u in uploads {
            index.abort_upload(&u, now_ms()).await?;
        }
    }
}

pub(super) async fn get_default_class(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> AdminResult<DefaultClass> {
    let b = bucket_record(&state, name).await?;
    Ok(axum::Json(DefaultClass {
        storage_class: b.default_storage_class,
    }))
}

pub(super) async fn put_default_class(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> AdminResult<DefaultClass> {
    let req: DefaultClass = json_body(&body)?;
    if let Some(class) = &req.storage_class
        && !state.storage_classes.contains(class)
    {
        return Err(AdminError(
            StatusCode::BAD_REQUEST,
            "InvalidStorageClass",
            format!("the storage class {class} is not configured in this fleet"),
        ));
    }
    state
        .index
        .set_default_storage_class(&name, req.storage_class.clone())
        .await?;
    Ok(axum::Json(req))
}

pub(super) async fn delete_default_class(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, AdminError> {
    state.index.set_default_storage_class(&name, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn get_quota(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> AdminResult<Quota> {
    let b = bucket_record(&state, name).await?;
    Ok(axum::Json(b.quota.map(wire_quota).unwrap_or_default()))
}

pub(super) async fn put_quota(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> AdminResult<Quota> {
    let quota: Quota = json_body(&body)?;
    if quota.max_bytes.is_none() && quota.max_objects.is_none() {
        return Err(AdminError(
            StatusCode::BAD_REQUEST,
            "InvalidQuota",
            "a quota needs maxBytes or maxObjects (DELETE removes it)".into(),
        ));
    }
    let record = records::Quota {
        max_bytes: quota.max_bytes,
        max_objects: quota.max_objects,
    };
    state.index.set_quota(&name, Some(record)).await?;
    Ok(axum::Json(quota))
}

pub(super) async fn delete_quota(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, AdminError> {
    state.index.set_quota(&name, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn get_versioning(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> AdminResult<VersioningStatus> {
    let b = bucket_record(&state, name).await?;
    Ok(axum::Json(VersioningStatus {
        status: versioning_name(b.versioning).to_string(),
    }))
}

pub(super) async fn put_versioning(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> AdminResult<VersioningStatus> {
    let req: VersioningStatus = json_body(&body)?;
    let target = match req.status.as_str() {
        "Enabled" => Versioning::Enabled,
        "Suspended" => Versioning::Suspended,
        "Off" => Versioning::Unversioned,
        other => {
            return Err(AdminError(
                StatusCode::BAD_REQUEST,
                "InvalidVersioningStatus",
                format!("status must be Enabled or Suspended, not {other:?}"),
            ));
        }
    };
    state.index.set_versioning(&name, target).await?;
    tracing::info!(bucket = %name, status = %req.status, "bucket versioning set through the admin API");
    Ok(axum::Json(req))
}

/// A storage class as `GET /admin/v1/storage-classes` shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct StorageClassInfo {
    /// Name.
    pub name: String,
    /// Data shards (k).
    pub data_shards: usize,
    /// Parity shards (m).
    pub parity_shards: usize,
    /// Object bytes per stripe, when not the fleet's default.
    pub stripe_size: Option<u32>,
    /// The one zone of a single-zone class.
    pub zone: Option<String>,
    /// Raw bytes per object byte ((k+m)/k).
    pub overhead: f64,
}

pub(super) async fn storage_classes(
    State(state): State<Arc<AdminState>>,
) -> AdminResult<Vec<StorageClassInfo>> {
    Ok(axum::Json(
        state
            .storage_classes
            .iter()
            .map(|c| StorageClassInfo {
                name: c.name.clone(),
                data_shards: c.profile.data_shards(),
                parity_shards: c.profile.parity_shards(),
                stripe_size: c.stripe_size,
                zone: c.zone.clone(),
                overhead: c.overhead(),
            })
            .collect(),
    ))
}
